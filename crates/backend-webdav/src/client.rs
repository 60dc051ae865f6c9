//! [`WebDavClient`]: the [`StorageClient`] implementation over WebDAV.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::stream::{self, StreamExt, TryStreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};
use syncengine_core::cleanup::{
    CleanupOptions, CleanupReport, clean_up_temps, remove_in_background,
};
use syncengine_core::entry::{nanos_to_system_time, normalize_etag, system_time_to_nanos};
use syncengine_core::identity::Location;
use syncengine_core::ignore_rules::{StaleTemps, TEMP_FILE_PREFIX, temp_file_name};
use syncengine_core::prune::prune_empty_parents;
use syncengine_core::stall::{MarkProgress, Progress, until_stalled};
use syncengine_core::{
    ByteStream, Capabilities, DeleteOptions, Entry, EntryStream, Error, ParallelReads, ReadOptions,
    RelPath, Result, StorageClient, TransferOptions, Version, WriteMode, WriteOptions,
};
use tokio::task::JoinHandle;
use url::Url;

use crate::auth::{Auth, Verdict};
use crate::error::{BACKEND, Ctx, DavError, map_error};
use crate::multistatus::{
    self, MAX_BODY_BYTES, MTIME_NAMESPACE, MTIME_PROPERTY, ParseError, Resource,
};

/// Characters left unescaped in a path segment: RFC 3986 unreserved. Everything else,
/// including `+`, `%`, `#`, `?` and non-ASCII, is percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The properties every PROPFIND asks for.
const PROPFIND_BODY: &str = concat!(
    r#"<?xml version="1.0" encoding="utf-8"?>"#,
    r#"<D:propfind xmlns:D="DAV:" xmlns:S="urn:syncengine:"><D:prop>"#,
    "<D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:getetag/><S:mtime/>",
    "</D:prop></D:propfind>"
);

/// The known-collections cache is cleared rather than grown past this many entries.
const KNOWN_DIRS_MAX: usize = 10_000;

/// [`Inner::put_etag_listed`]: not seen yet.
const PUT_ETAG_UNKNOWN: u8 = 0;
/// [`Inner::put_etag_listed`]: a `PUT` answer's ETag is the one a `PROPFIND` lists.
const PUT_ETAG_LISTED: u8 = 1;
/// [`Inner::put_etag_listed`]: it was not; every upload looks its ETag up.
const PUT_ETAG_DIFFERS: u8 = 2;

/// Given-up temporary uploads remembered for [`StorageClient::settle`] at most.
const GIVEN_UP_MAX: usize = 10_000;

/// How many stacked items a listing scans for directories to prefetch.
const PREFETCH_SCAN: usize = 256;

/// A [`StorageClient`] rooted at a WebDAV collection.
///
/// Build one with [`WebDavBuilder`](crate::WebDavBuilder). Cheap to clone (shares one HTTP
/// connection pool). See the [crate docs](crate) for how each operation maps onto WebDAV.
#[derive(Clone)]
pub struct WebDavClient {
    inner: Arc<Inner>,
}

/// The HTTP clients of one WebDAV client: uploads go through their own, timed by progress.
pub(crate) struct HttpClients {
    /// Every request but uploads: reqwest's connect and read timeouts.
    pub(crate) plain: reqwest::Client,
    /// Uploads: no read timeout; [`Inner::send_upload`] fails one after `idle` without a byte
    /// of its body taken or of its answer arriving.
    pub(crate) uploads: reqwest::Client,
    /// [`Timeouts::idle`](syncengine_core::timeouts::Timeouts::idle).
    pub(crate) idle: Duration,
}

struct Inner {
    http: HttpClients,
    /// The root collection, `http(s)://host:port/path/`, always ending in `/`.
    base: Url,
    /// The decoded segments of the root's path, to compare decoded hrefs against.
    base_segments: Vec<String>,
    /// Credentials and the server's cached challenge; every request is authorized in
    /// [`Inner::send`].
    auth: Auth,
    mtime_property: bool,
    list_concurrency: usize,
    /// See [`WebDavBuilder::with_parallel_reads`](crate::WebDavBuilder::with_parallel_reads).
    parallel_reads: Option<ParallelReads>,
    /// Collection URLs known to exist, so that a write costs no MKCOL in the common case.
    known_dirs: Mutex<HashSet<String>>,
    /// Whether the server mangles `Destination` names with `?`, `;` or control characters
    /// (see [`risky_name`]):
    /// 0 not yet probed, 1 no, 2 yes.
    destination_mangles: AtomicU8,
    /// Whether this server's `PUT` answers carry the ETag a `PROPFIND` of the file then
    /// lists: [`PUT_ETAG_UNKNOWN`], [`PUT_ETAG_LISTED`] or [`PUT_ETAG_DIFFERS`] (see
    /// [`Inner::set_mtime_after_put`]).
    put_etag_listed: AtomicU8,
    /// Stale temp files the listings came across (by URL), removed when the engine asks.
    stale: StaleTemps,
    /// Collections (by URL) a write or transfer of this client is putting a file into, with
    /// how many: [`Inner::prune`] leaves them (and every collection above them) alone, so the
    /// engine's own concurrent actions never race its removal of an emptied folder.
    busy_dirs: Mutex<HashMap<String, usize>>,
    /// Folders moved aside to be removed that listings found empty (by URL; see [`Inner::prune`]),
    /// removed when the engine asks.
    empty_asides: Mutex<BTreeSet<(String, Vec<String>)>>,
    /// Temporary files (by URL) of uploads this client gave up on (stalled, failed mid-body or
    /// cancelled): deleted right away, and again by [`StorageClient::settle`], because the
    /// server may still complete such an upload later from what the link had buffered.
    given_up: Mutex<BTreeSet<String>>,
}

impl WebDavClient {
    pub(crate) fn new(
        http: HttpClients,
        base: Url,
        auth: Auth,
        mtime_property: bool,
        list_concurrency: usize,
        parallel_reads: Option<ParallelReads>,
    ) -> Self {
        let base_segments = multistatus::decode_href(base.path(), &base)
            .map(|(segments, _)| segments)
            // The builder's URL parser already refused what decode_href refuses, except
            // names it cannot decode; those simply never match an href (listing errors out).
            .unwrap_or_default();
        WebDavClient {
            inner: Arc::new(Inner {
                http,
                base,
                base_segments,
                auth,
                mtime_property,
                list_concurrency,
                parallel_reads,
                known_dirs: Mutex::new(HashSet::new()),
                destination_mangles: AtomicU8::new(0),
                put_etag_listed: AtomicU8::new(PUT_ETAG_UNKNOWN),
                stale: StaleTemps::default(),
                empty_asides: Mutex::default(),
                given_up: Mutex::default(),
                busy_dirs: Mutex::default(),
            }),
        }
    }

    /// Returns the root collection's URL (`http(s)://…/`, without credentials).
    pub fn url(&self) -> &Url {
        &self.inner.base
    }
}

impl fmt::Display for WebDavClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebDavClient({})", self.inner.base)
    }
}

impl fmt::Debug for WebDavClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebDavClient")
            .field("url", &self.inner.base.as_str())
            .field("auth", &self.inner.auth)
            .field("mtime_property", &self.inner.mtime_property)
            .field("list_concurrency", &self.inner.list_concurrency)
            .finish()
    }
}

fn method(name: &'static str) -> Method {
    match Method::from_bytes(name.as_bytes()) {
        Ok(m) => m,
        // Only called with the WebDAV method names below, all valid HTTP tokens.
        Err(_) => unreachable!("{name} is a valid HTTP method token"),
    }
}

fn status_err(method: &'static str, url: &str, status: StatusCode) -> DavError {
    DavError::Status {
        method,
        url: url.to_owned(),
        status,
    }
}

/// True when the mtime dead property of `res` describes the version listed: it names no
/// ETag (written unbound), or the one the listing gives.
fn mtime_still_bound(res: &Resource) -> bool {
    match (&res.mtime_etag, &res.etag) {
        (None, _) => true,
        (Some(bound), Some(now)) => normalize_etag(bound) == normalize_etag(now),
        (Some(_), None) => false,
    }
}

/// The etag exactly as the server reports it, quoted, for an `If:` header state token.
fn if_etag(raw: &str) -> String {
    let t = raw.trim();
    if t.starts_with('"') || t.starts_with("W/\"") {
        t.to_owned()
    } else {
        format!("\"{t}\"")
    }
}

/// Names that a server which percent-decodes the `Destination` header *before* splitting off
/// a query (`?`) or parameters (`;`) moves to the wrong place: wsgidav 4.4 turns a MOVE to
/// `q%3F` into a MOVE to `q`, and drops control characters (a MOVE to `tab%09x` lands on
/// `tabx`, replacing whatever file had that name). For such names the client probes the server
/// once (see [`Inner::destination_mangles`]) and, on a server that does it, writes them with a
/// direct `PUT` (not atomic) and copies/renames them through the client.
fn risky_name(path: &RelPath) -> bool {
    let name = path.as_str();
    name.contains(['?', ';']) || name.chars().any(char::is_control)
}

/// Refuses a name the engine must not write here: our temporary names, and names longer
/// than a server's file system holds (the core's one rule,
/// [`check_name_lengths`](syncengine_core::path::check_name_lengths)).
fn check_not_temp(path: &RelPath) -> Result<()> {
    if path.file_name().starts_with(TEMP_FILE_PREFIX) {
        return Err(Error::InvalidPath {
            path: path.to_string(),
            reason: format!(
                "names starting with {TEMP_FILE_PREFIX} are reserved for temporary files"
            ),
        });
    }
    syncengine_core::path::check_name_lengths(path, syncengine_core::path::NAME_MAX)
}

/// What follows [`TEMP_FILE_PREFIX`] in the name of a folder moved aside to be removed.
const ASIDE_TAG: &str = "dir-";

/// The longest name common server file systems take (bytes).
const NAME_MAX: usize = 255;

/// A fresh name, in the same parent, for moving the emptied folder `dir` aside before it is
/// deleted: `.syncengine-tmp-dir-<16 hex>-<its name>`, so that a listing which finds it left
/// behind (a run killed between the move and the delete) can report it at the folder's path;
/// just `.syncengine-tmp-dir-<16 hex>` when the name would be too long or is one a server's
/// `MOVE` may mangle ([`risky_name`]). It never has the upload temp format, so the stale-temp
/// rule never removes it: it is removed only when found empty.
fn aside_dir_name(dir: &RelPath) -> String {
    let name = dir.file_name();
    let unique = format!(
        "{TEMP_FILE_PREFIX}{ASIDE_TAG}{:016x}",
        rand::random::<u64>()
    );
    if unique.len() + 1 + name.len() <= NAME_MAX && !risky_name(dir) {
        format!("{unique}-{name}")
    } else {
        unique
    }
}

/// For the name of a folder moved aside by [`aside_dir_name`]: `Some(Some(name))` naming the
/// folder it was moved from, `Some(None)` when its name does not say; `None` for any other
/// name.
fn aside_target(name: &str) -> Option<Option<&str>> {
    let tail = name
        .strip_prefix(TEMP_FILE_PREFIX)?
        .strip_prefix(ASIDE_TAG)?;
    let (hex, rest) = (tail.get(..16)?, tail.get(16..)?);
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if rest.is_empty() {
        return Some(None);
    }
    // Anything but `-<name>` after the hex is not a name this client made.
    rest.strip_prefix('-').filter(|t| !t.is_empty()).map(Some)
}

/// What a collection moved aside holds now.
enum AsideState {
    /// Its own entry and nothing else.
    Empty,
    /// It is not there (any more).
    Gone,
    /// It holds members (the count).
    Holds(usize),
    /// It could not be read.
    Unreadable(String),
}

/// What a fail-closed lookup ([`Inner::presence`]) found at a path.
enum Presence {
    /// Nothing: the server said so.
    Absent,
    /// A file.
    File,
    /// A collection.
    Collection,
}

/// Turns "no such file" (as [`map_error`] with [`Ctx::Lookup`] judges it) into `None`.
fn found<T>(result: std::result::Result<T, DavError>, path: &RelPath) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) => match map_error(e, path.as_str(), Ctx::Lookup) {
            Error::NotFound { .. } => Ok(None),
            other => Err(other),
        },
    }
}

impl Inner {
    fn file_url(&self, path: &RelPath) -> String {
        let mut url = self.base.as_str().to_owned();
        for (i, segment) in path.segments().enumerate() {
            if i > 0 {
                url.push('/');
            }
            url.extend(utf8_percent_encode(segment, SEGMENT));
        }
        url
    }

    fn dir_url(&self, dir: Option<&RelPath>) -> String {
        match dir {
            None => self.base.as_str().to_owned(),
            Some(d) => format!("{}/", self.file_url(d)),
        }
    }

    fn segments_of(&self, path: Option<&RelPath>) -> Vec<String> {
        let mut segments = self.base_segments.clone();
        if let Some(p) = path {
            segments.extend(p.segments().map(str::to_owned));
        }
        segments
    }

    /// A request without credentials: [`Inner::send`] adds them.
    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.http.plain.request(method, url)
    }

    /// Sends a request with the `Authorization` header [`Auth`] gives it. On a 401 whose
    /// challenge is worth answering (the first one, a stale nonce) a request with a replayable
    /// body is sent again (twice at most); one whose body is a stream is not, and fails as
    /// [`DavError::Rechallenged`] (transient: the challenge is cached for the retry). Any other
    /// 401 is returned for the caller to map to `PermissionDenied`.
    async fn send(
        &self,
        name: &'static str,
        rb: RequestBuilder,
        url: &str,
    ) -> std::result::Result<Response, DavError> {
        self.send_via(name, rb, url, None).await
    }

    /// [`send`](Self::send) for an upload whose body marks `progress`: sent through the
    /// uploads' client, it fails as [`DavError::Stalled`] after
    /// [`HttpClients::idle`] without progress, however long it takes in all.
    async fn send_upload(
        &self,
        rb: RequestBuilder,
        url: &str,
        progress: &Progress,
    ) -> std::result::Result<Response, DavError> {
        self.send_via("PUT", rb, url, Some(progress)).await
    }

    async fn send_via(
        &self,
        name: &'static str,
        rb: RequestBuilder,
        url: &str,
        progress: Option<&Progress>,
    ) -> std::result::Result<Response, DavError> {
        tracing::debug!(method = name, url, "webdav request");
        let http_err = |source: reqwest::Error| match crate::error::tls_failure(&source) {
            Some(reason) => DavError::Tls {
                method: name,
                url: url.to_owned(),
                reason,
            },
            None => DavError::Http {
                method: name,
                url: url.to_owned(),
                source,
            },
        };
        let mut req = rb.build().map_err(http_err)?;
        // The request target as the request line carries it: path and query.
        let uri = req.url()[url::Position::BeforePath..url::Position::AfterQuery].to_owned();
        // The request as built, without credentials, to send again after a challenge.
        let spare = req.try_clone();
        let mut replays = 0;
        loop {
            let method = req.method().as_str().to_owned();
            let insecure = || DavError::InsecureBasic {
                method: name,
                url: url.to_owned(),
            };
            let sent = self
                .auth
                .authorize(&method, &uri, req.headers_mut())
                .map_err(|_| insecure())?;
            let resp = match progress {
                None => self.http.plain.execute(req).await,
                Some(progress) => {
                    until_stalled(self.http.uploads.execute(req), progress, self.http.idle)
                        .await
                        .map_err(|source| DavError::Stalled {
                            method: name,
                            url: url.to_owned(),
                            source,
                        })?
                }
            }
            .map_err(http_err)?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                self.auth.accepted();
                return Ok(resp);
            }
            let verdict = self.auth.challenged(resp.headers(), &sent);
            if verdict == Verdict::InsecureBasic {
                return Err(insecure());
            }
            // At most two replays: the first answers any new challenge, the second only one
            // that the server called stale (or changed the scheme of). No loop either way.
            let again = match verdict {
                Verdict::Refused => None,
                Verdict::NewNonce if replays > 0 => None,
                _ if replays >= 2 => None,
                _ => spare.as_ref().and_then(reqwest::Request::try_clone),
            };
            match again {
                Some(next) => {
                    tracing::debug!(method = name, url, "answering the authentication challenge");
                    replays += 1;
                    req = next;
                }
                None if spare.is_none() && verdict == Verdict::Answerable => {
                    return Err(DavError::Rechallenged {
                        method: name,
                        url: url.to_owned(),
                    });
                }
                None => return Ok(resp),
            }
        }
    }

    /// Makes sure the server has accepted the credentials before a request whose body cannot
    /// be replayed: a cheap `PROPFIND Depth: 0` of the root answers the challenge first when
    /// none is known to work ([`Auth::needs_check`]). One per client, and after each 401.
    async fn ensure_authenticated(&self) -> std::result::Result<(), DavError> {
        if !self.auth.needs_check() {
            return Ok(());
        }
        let url = self.base.as_str();
        let rb = self
            .request(method("PROPFIND"), url)
            .header("Depth", "0")
            .header(header::CONTENT_TYPE, "application/xml; charset=utf-8")
            .body(PROPFIND_BODY);
        let resp = self.send("PROPFIND", rb, url).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(status_err("PROPFIND", url, resp.status()));
        }
        Ok(())
    }

    /// Reads a whole (XML) answer, refusing more than [`MAX_BODY_BYTES`].
    async fn read_xml(
        &self,
        resp: Response,
        name: &'static str,
        url: &str,
    ) -> std::result::Result<Vec<u8>, DavError> {
        let too_large = || DavError::Parse {
            url: url.to_owned(),
            source: ParseError::TooLarge,
        };
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        let mut chunks = resp.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|source| DavError::Http {
                method: name,
                url: url.to_owned(),
                source,
            })?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn propfind(
        &self,
        url: &str,
        depth: &'static str,
    ) -> std::result::Result<Vec<Resource>, DavError> {
        let rb = self
            .request(method("PROPFIND"), url)
            .header("Depth", depth)
            .header(header::CONTENT_TYPE, "application/xml; charset=utf-8")
            .body(PROPFIND_BODY);
        let resp = self.send("PROPFIND", rb, url).await?;
        if resp.status() != StatusCode::MULTI_STATUS {
            return Err(status_err("PROPFIND", url, resp.status()));
        }
        let body = self.read_xml(resp, "PROPFIND", url).await?;
        multistatus::parse(&body, &self.base).map_err(|source| DavError::Parse {
            url: url.to_owned(),
            source,
        })
    }

    /// PROPFIND `Depth: 0` of one path; the resource whose href is exactly that path.
    async fn lookup(&self, path: &RelPath) -> std::result::Result<Resource, DavError> {
        let url = self.file_url(path);
        let want = self.segments_of(Some(path));
        let resources = self.propfind(&url, "0").await?;
        let mut matching = resources.into_iter().filter(|r| r.segments == want);
        match (matching.next(), matching.next()) {
            (Some(r), None) if r.status.is_none_or(|s| (200..300).contains(&s)) => Ok(r),
            (Some(r), None) => Err(DavError::Protocol(format!(
                "PROPFIND {url}: response status {:?}",
                r.status
            ))),
            _ => Err(DavError::Protocol(format!(
                "PROPFIND {url}: no single response for the requested path"
            ))),
        }
    }

    /// Like [`Inner::lookup`], but `None` for a missing path or a collection.
    async fn lookup_file(&self, path: &RelPath) -> Result<Option<Resource>> {
        Ok(found(self.lookup(path).await, path)?.filter(|r| !r.is_collection))
    }

    /// What is at `path`, for a delete or an overwrite, which must fail closed: only an
    /// answer that proves it is absent counts as absent, never an error.
    ///
    /// - 404 is absent.
    /// - A redirect (a server that sends a collection to `name/`) is a collection only when
    ///   `name/` then answers as one.
    /// - 400 or 409 (Apache, when a parent is a file) is absent only when the parent is
    ///   then seen to be a file.
    ///
    /// Every other failure is an error: a lookup that failed does not say "nothing here",
    /// and a delete or overwrite that went ahead on it could remove a tree or a file that
    /// was not meant.
    async fn presence(&self, path: &RelPath) -> std::result::Result<Presence, DavError> {
        let err = match self.lookup(path).await {
            Ok(r) if r.is_collection => return Ok(Presence::Collection),
            Ok(_) => return Ok(Presence::File),
            Err(e) => e,
        };
        let status = match &err {
            DavError::Status { status, .. } => status.as_u16(),
            _ => return Err(err),
        };
        let confirmed = match status {
            404 => return Ok(Presence::Absent),
            300..=399 => {
                let url = self.dir_url(Some(path));
                let own = self.segments_of(Some(path));
                match self.propfind(&url, "0").await {
                    Ok(rs) => rs.iter().any(|r| r.segments == own && r.is_collection),
                    Err(_) => false,
                }
                .then_some(Presence::Collection)
            }
            400 | 409 => match path.parent() {
                Some(parent) => match self.lookup(&parent).await {
                    Ok(r) if !r.is_collection => Some(Presence::Absent),
                    _ => None,
                },
                None => None,
            },
            _ => None,
        };
        // The caller maps the error without the lookup context: it is not "not found".
        confirmed.ok_or(err)
    }

    fn entry(&self, path: RelPath, res: &Resource) -> Entry {
        let mut entry = Entry::new(path, res.size.unwrap_or(0));
        let mtime = match res.mtime_nanos {
            Some(n) if self.mtime_property && mtime_still_bound(res) => {
                Some(nanos_to_system_time(n))
            }
            // Not set, or set for another version (another client overwrote the file and the
            // server kept the dead property): the server's time of the last write.
            _ => res.last_modified,
        };
        if let Some(m) = mtime {
            entry = entry.with_mtime(m);
        }
        if let Some(etag) = &res.etag {
            entry = entry.with_etag(normalize_etag(etag));
        }
        entry
    }

    async fn stat_entry(&self, path: &RelPath) -> Result<Entry> {
        match self.lookup_file(path).await? {
            Some(res) => Ok(self.entry(path.clone(), &res)),
            None => Err(Error::not_found(BACKEND, path.as_str())),
        }
    }

    /// Checks that the file at `path` is still `version` ([`Version::matches`]: size and
    /// mtime as a listing reports them, and the ETag where both know one), for a replace or
    /// delete that must not touch another version: `PreconditionFailed` when it is missing,
    /// a collection, or another version. Returns the ETag it has now (as an `If:` state
    /// token), so that a server which evaluates `If` closes the rest of the window.
    async fn check_unchanged(&self, path: &RelPath, version: &Version) -> Result<Option<String>> {
        match self.lookup_file(path).await? {
            Some(res) if version.matches(&self.entry(path.clone(), &res)) => {
                Ok(res.etag.as_deref().map(if_etag))
            }
            _ => Err(Error::precondition_failed(BACKEND, path.as_str())),
        }
    }

    /// After a `MOVE` of the temporary file `temp_url` over a file, answered with success:
    /// true when the server did not carry it out — the path, as stat'ed after it (`written`),
    /// is still the version `mode` replaced, and the temporary file is still there. A server
    /// (or a proxy in front of it) that answers `201` and does nothing would otherwise have the
    /// old version recorded as the new content, and the two sides never converge.
    ///
    /// Costs a request only when the path still looks like the replaced version (same ETag;
    /// or same size and mtime where it has none): a real replace gets a new ETag. Only replaces
    /// are checked (`Update`, `IfUnchanged`): a `Create` that did not happen finds no file at
    /// the path, and a plain `Overwrite` names no version to compare with.
    async fn move_not_done(&self, mode: &WriteMode, written: &Entry, temp_url: &str) -> bool {
        let unchanged = match mode {
            WriteMode::Update(expected) => written
                .etag
                .as_deref()
                .is_some_and(|e| normalize_etag(e) == normalize_etag(expected)),
            WriteMode::IfUnchanged(version) => version.matches(written),
            _ => false,
        };
        if !unchanged {
            return false;
        }
        // A PROPFIND of the temporary file: there, the MOVE did not happen. Anything else
        // (gone, or no answer) is taken as done, as before this check.
        matches!(self.propfind(temp_url, "0").await, Ok(found) if !found.is_empty())
    }

    /// How many bytes the body of the `GET` answer `resp` must have, so that a body that ends
    /// early is an error, never a short file: its `Content-Length`; for a body without one
    /// that ends when the connection closes (neither a length nor chunked framing marks its
    /// end), the length its `Content-Range` gives, or else the size a `PROPFIND` of the file
    /// reports (an ETag that differs from the answer's means it changed meanwhile: transient).
    /// `None` for a chunked body (the framing marks its end, and a cut one fails in the HTTP
    /// client) and for a server that reports no size.
    async fn expected_length(
        &self,
        resp: &Response,
        path: &RelPath,
        partial: bool,
        url: &str,
    ) -> std::result::Result<Option<u64>, DavError> {
        let headers = resp.headers();
        if let Some(n) = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return Ok(Some(n));
        }
        if headers.contains_key(header::TRANSFER_ENCODING) {
            return Ok(None);
        }
        if partial {
            // `bytes <first>-<last>/<total>`
            let range = headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('/').next())
                .and_then(|v| v.split_once('-'))
                .and_then(|(a, b)| {
                    Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?))
                })
                .filter(|(a, b)| a <= b);
            return match range {
                Some((first, last)) => Ok(Some(last - first + 1)),
                None => Err(DavError::Protocol(format!(
                    "GET {url}: a partial answer without Content-Length or a usable Content-Range"
                ))),
            };
        }
        let res = self.lookup(path).await?;
        let answer_etag = headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(normalize_etag);
        if let (Some(a), Some(listed)) = (answer_etag, res.etag.as_deref().map(normalize_etag))
            && a != listed
        {
            return Err(DavError::Truncated(format!(
                "GET {url}: the file changed while it was read (its ETag is {listed} now, the \
                 answer's was {a}), and the answer carries no length to check it against"
            )));
        }
        if res.size.is_none() {
            tracing::warn!(
                url,
                "the server answered GET without a length and reports no size: the body cannot \
                 be checked for completeness here"
            );
        }
        Ok(res.size)
    }

    /// Makes sure the collection `dir` (the root when `None`) exists, creating missing
    /// ancestors, from the deepest existing one down.
    async fn ensure_collection(&self, dir: Option<&RelPath>) -> std::result::Result<(), DavError> {
        let mut chain: Vec<String> = Vec::new();
        // The root's own path, then the directories below it.
        let root_path = self.base.path();
        let mut prefix = String::new();
        for segment in root_path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
        {
            prefix.push('/');
            prefix.push_str(segment);
            let mut url = self.base.clone();
            url.set_path(&format!("{prefix}/"));
            chain.push(url.into());
        }
        if let Some(d) = dir {
            let mut partial: Option<RelPath> = None;
            for segment in d.segments() {
                let next = match &partial {
                    None => RelPath::new(segment),
                    Some(p) => p.join(segment),
                }
                .map_err(|e| DavError::Protocol(e.to_string()))?;
                chain.push(self.dir_url(Some(&next)));
                partial = Some(next);
            }
        }
        let Some(last) = chain.last() else {
            return Ok(());
        };
        if self.known().contains(last) {
            return Ok(());
        }
        // Walk up until a MKCOL does not answer 409 (missing parent), then down again.
        let mut i = chain.len() - 1;
        loop {
            match self.mkcol(&chain[i]).await? {
                StatusCode::CONFLICT if i > 0 => i -= 1,
                StatusCode::CONFLICT => {
                    return Err(status_err("MKCOL", &chain[i], StatusCode::CONFLICT));
                }
                _ => break,
            }
        }
        for url in &chain[i + 1..] {
            if self.mkcol(url).await? == StatusCode::CONFLICT {
                return Err(DavError::Vanished(format!(
                    "MKCOL {url}: a parent collection vanished while creating it"
                )));
            }
        }
        let mut known = self.known();
        if known.len() + chain.len() > KNOWN_DIRS_MAX {
            known.clear();
        }
        known.extend(chain);
        Ok(())
    }

    /// MKCOL: `Ok` with 201 (created), 405 (already there) or 409 (parent missing).
    async fn mkcol(&self, url: &str) -> std::result::Result<StatusCode, DavError> {
        let resp = self
            .send("MKCOL", self.request(method("MKCOL"), url), url)
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(s),
            s @ (StatusCode::METHOD_NOT_ALLOWED | StatusCode::CONFLICT) => Ok(s),
            // Two MKCOLs of one collection racing each other can both pass Apache's existence
            // check; the loser's mkdir fails with EEXIST and Apache answers 403. A collection
            // that is there now counts as "already there".
            s => match self.propfind(url, "0").await {
                Ok(r) if r.iter().any(|r| r.is_collection) => Ok(StatusCode::METHOD_NOT_ALLOWED),
                _ => Err(status_err("MKCOL", url, s)),
            },
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // The set is only a cache: a panic elsewhere cannot leave it inconsistent.
        self.known_dirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn busy(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // Counts only change under the lock, one step at a time: a panic elsewhere cannot
        // leave them inconsistent.
        self.busy_dirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a write or transfer of this client is putting a file into the collection
    /// `url` or below it.
    fn is_busy(&self, url: &str) -> bool {
        self.busy().keys().any(|k| k.starts_with(url))
    }

    /// Forgets the collection `url` and everything below it.
    fn forget_dir(&self, url: &str) {
        self.known().retain(|k| !k.starts_with(url));
    }

    /// COPY or MOVE `from_url` onto the file `to`.
    ///
    /// Without `overwrite`, `Overwrite: F` (412 → `AlreadyExists` through [`Ctx::NoOverwrite`]).
    /// With it, `Overwrite: F` first (new targets need nothing else); if the target exists it
    /// must be a file — `Overwrite: T` onto a collection would delete a whole tree — and is
    /// then replaced. (A checked replace is [`Inner::replace_checked`].)
    async fn transfer(
        &self,
        name: &'static str,
        from_url: &str,
        to: &RelPath,
        overwrite: bool,
    ) -> std::result::Result<(), DavError> {
        let to_url = self.file_url(to);
        let send = |overwrite: bool| {
            let rb = self
                .request(method(name), from_url)
                .header("Destination", &to_url)
                .header("Overwrite", if overwrite { "T" } else { "F" })
                .header("Depth", "0");
            self.send(name, rb, from_url)
        };
        let check = |resp: Response| match resp.status() {
            s if s.is_success() => Ok(()),
            s => Err(status_err(name, &to_url, s)),
        };
        let resp = send(false).await?;
        if !overwrite || resp.status() != StatusCode::PRECONDITION_FAILED {
            return check(resp);
        }
        // Fails closed: only a file seen there is replaced. A lookup that fails says
        // nothing, and `Overwrite: T` onto a collection would delete a whole tree.
        match self.presence(to).await? {
            Presence::File => check(send(true).await?),
            Presence::Collection => Err(DavError::Protocol(format!(
                "{name} onto {to_url}: a directory is in the way"
            ))),
            // Gone since the 412: try again without replacing anything.
            Presence::Absent => check(send(false).await?),
        }
    }

    /// `MOVE`s `from_url` onto the file `to`, which the caller has just checked is the version
    /// it may replace (so a file, never a collection): straight `Overwrite: T`, with no extra
    /// round trip to widen the window between the check and the move. With `if_tag`, a tagged
    /// `If: <to> ([etag])` that Apache evaluates on the destination (atomic there).
    async fn replace_checked(
        &self,
        from_url: &str,
        to: &RelPath,
        if_tag: Option<&str>,
    ) -> std::result::Result<(), DavError> {
        let to_url = self.file_url(to);
        let mut rb = self
            .request(method("MOVE"), from_url)
            .header("Destination", &to_url)
            .header("Overwrite", "T")
            .header("Depth", "0");
        if let Some(etag) = if_tag {
            rb = rb.header("If", format!("<{to_url}> ([{etag}])"));
        }
        let resp = self.send("MOVE", rb, from_url).await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            s => Err(status_err("MOVE", &to_url, s)),
        }
    }

    /// Sets the mtime dead property of the file at `url`, bound to the ETag the file has now
    /// (a `PROPFIND` of it): a listing believes the property only while the file keeps that
    /// ETag, so another client's plain `PUT`, after which Apache and wsgidav keep the dead
    /// property, is listed with the server's time of that write, not with our old mtime.
    /// Apache's and wsgidav's ETags change with the content and not with a `PROPPATCH` or a
    /// `MOVE`. A server that lists no ETag gets the unbound property, as before.
    async fn set_mtime(&self, url: &str, mtime: SystemTime) -> std::result::Result<(), DavError> {
        let etag = self
            .propfind(url, "0")
            .await?
            .into_iter()
            .find(|r| !r.is_collection)
            .and_then(|r| r.etag);
        self.set_mtime_bound(url, mtime, etag.as_deref()).await
    }

    /// [`set_mtime`](Self::set_mtime) of a file just uploaded, whose `PUT` was answered
    /// with `put_etag`: once this server's `PUT` answers were seen to carry the ETag a
    /// `PROPFIND` then lists ([`Inner::put_etag_listed`]), the answer's is used and the
    /// `PROPFIND` saved. The first upload with an ETag in its answer looks and compares.
    async fn set_mtime_after_put(
        &self,
        url: &str,
        mtime: SystemTime,
        put_etag: Option<&str>,
    ) -> std::result::Result<(), DavError> {
        let Some(answered) = put_etag else {
            return self.set_mtime(url, mtime).await;
        };
        if self.put_etag_listed.load(Ordering::Relaxed) == PUT_ETAG_LISTED {
            return self.set_mtime_bound(url, mtime, Some(answered)).await;
        }
        let listed = self
            .propfind(url, "0")
            .await?
            .into_iter()
            .find(|r| !r.is_collection)
            .and_then(|r| r.etag);
        let same = listed
            .as_deref()
            .is_some_and(|l| normalize_etag(l) == normalize_etag(answered));
        // Only a first verdict is recorded: a mismatch later (another client's write in
        // between) must not undo what the first upload proved, and it never binds wrongly,
        // since the listed one is used here.
        let verdict = if same {
            PUT_ETAG_LISTED
        } else {
            PUT_ETAG_DIFFERS
        };
        let _ = self.put_etag_listed.compare_exchange(
            PUT_ETAG_UNKNOWN,
            verdict,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.set_mtime_bound(url, mtime, listed.as_deref()).await
    }

    /// `PROPPATCH`es the mtime dead property of `url` to `mtime`, followed by `etag` (the
    /// version it describes) where one is given.
    async fn set_mtime_bound(
        &self,
        url: &str,
        mtime: SystemTime,
        etag: Option<&str>,
    ) -> std::result::Result<(), DavError> {
        let value = match etag {
            Some(etag) => format!(
                "{} {}",
                system_time_to_nanos(mtime),
                quick_xml::escape::escape(normalize_etag(etag))
            ),
            None => system_time_to_nanos(mtime).to_string(),
        };
        let body = format!(
            concat!(
                r#"<?xml version="1.0" encoding="utf-8"?>"#,
                r#"<D:propertyupdate xmlns:D="DAV:" xmlns:S="{ns}"><D:set><D:prop>"#,
                "<S:{prop}>{nanos}</S:{prop}></D:prop></D:set></D:propertyupdate>"
            ),
            ns = MTIME_NAMESPACE,
            prop = MTIME_PROPERTY,
            nanos = value
        );
        let rb = self
            .request(method("PROPPATCH"), url)
            .header(header::CONTENT_TYPE, "application/xml; charset=utf-8")
            .body(body);
        let resp = self.send("PROPPATCH", rb, url).await?;
        match resp.status() {
            StatusCode::MULTI_STATUS => {}
            s if s.is_success() => return Ok(()),
            s => return Err(status_err("PROPPATCH", url, s)),
        }
        let body = self.read_xml(resp, "PROPPATCH", url).await?;
        let resources =
            multistatus::parse(&body, &self.base).map_err(|source| DavError::Parse {
                url: url.to_owned(),
                source,
            })?;
        if let Some(code) = resources
            .iter()
            .flat_map(|r| r.failed_propstats.iter())
            .next()
        {
            return Err(DavError::Protocol(format!(
                "PROPPATCH {url}: the server refused the mtime dead property (status {code}); \
                 build the client with mtime_property = false for this server"
            )));
        }
        Ok(())
    }

    /// Probes (once per client) whether a MOVE to a name with `?`, `;` and a control character
    /// lands where asked.
    async fn destination_mangles(&self, dir: Option<&RelPath>) -> bool {
        match self.destination_mangles.load(Ordering::Relaxed) {
            1 => return false,
            2 => return true,
            _ => {}
        }
        let cut = format!(
            "{}{TEMP_FILE_PREFIX}{:016x}",
            self.dir_url(dir),
            rand::random::<u64>()
        );
        let src = format!("{cut}-probe");
        // The tab comes last, so that a server which only drops control characters leaves
        // `{cut}?;probe`, removed below like the other names a probe can leave.
        let dropped = format!("{cut}%3F%3Bprobe");
        let dest = format!("{dropped}%09");
        let outcome: std::result::Result<bool, DavError> = async {
            let resp = self
                .send("PUT", self.request(Method::PUT, &src).body(""), &src)
                .await?;
            if !resp.status().is_success() {
                return Err(status_err("PUT", &src, resp.status()));
            }
            let rb = self
                .request(method("MOVE"), &src)
                .header("Destination", &dest)
                .header("Overwrite", "F");
            let resp = self.send("MOVE", rb, &src).await?;
            if !resp.status().is_success() {
                return Err(status_err("MOVE", &src, resp.status()));
            }
            Ok(self.propfind(&dest, "0").await.is_err())
        }
        .await;
        for url in [&src, &dest, &cut, &dropped] {
            self.delete_quietly(url).await;
        }
        match outcome {
            Ok(mangles) => {
                if mangles {
                    tracing::warn!(
                        url = self.base.as_str(),
                        "this WebDAV server mis-decodes '?', ';' or control characters in \
                         Destination headers: names with them are written non-atomically"
                    );
                }
                self.destination_mangles
                    .store(if mangles { 2 } else { 1 }, Ordering::Relaxed);
                mangles
            }
            // Unknown this time: assume a correct server, probe again next time.
            Err(_) => false,
        }
    }

    /// After a direct `PUT` to `url` (no temporary file) that failed: a server that writes the
    /// body in place as it arrives (wsgidav) may have left part of it at the name, which the
    /// next run would take for a user's change. Removes what is there when it is not a
    /// complete version: its ETag is not `before` (the ETag there before the PUT; `None`:
    /// nothing was there) and its size is not `expected` (the body's length, `None` when
    /// unknown). The `DELETE` carries `If-Match` on the ETag found, so a version another
    /// client writes meanwhile is never removed; it goes over a new connection (the client
    /// drops a connection whose request failed). The engine keeps the version an overwrite
    /// replaces in its trash first, so nothing is lost. Best effort: a failure is ignored (the
    /// PUT's own error is what the caller reports).
    async fn remove_partial(&self, url: &str, before: Option<&str>, expected: Option<u64>) {
        // A few rounds: the server may still be writing what reached it (a new ETag each time).
        for _ in 0..3 {
            let Ok(found) = self.propfind(url, "0").await else {
                return;
            };
            let Some(res) = found.into_iter().find(|r| !r.is_collection) else {
                return;
            };
            let Some(etag) = res.etag else {
                // Nothing to make the DELETE conditional on: leave it.
                return;
            };
            if before.is_some_and(|b| normalize_etag(b) == normalize_etag(&etag))
                || (expected.is_some() && res.size == expected)
            {
                return;
            }
            let rb = self
                .request(Method::DELETE, url)
                .header(header::IF_MATCH, normalize_etag(&etag));
            match self.send("DELETE", rb, url).await {
                Ok(resp) if resp.status() == StatusCode::PRECONDITION_FAILED => continue,
                _ => return,
            }
        }
    }

    /// Streams `body` to `url` with PUT. A failure of `body` itself is returned as it was.
    ///
    /// With `length` (the write's size hint), the request carries it as `Content-Length`
    /// instead of chunked framing (servers take a body of known length faster: wsgidav
    /// parses every chunk in Python), and a body that gives more or fewer bytes fails before
    /// its end reaches the server. Returns the answer's status and its `ETag`, if any.
    async fn upload(
        &self,
        url: &str,
        body: ByteStream,
        length: Option<u64>,
        path: &str,
        extra: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<(StatusCode, Option<String>)> {
        // The body streams and cannot be sent again after a 401.
        self.ensure_authenticated()
            .await
            .map_err(|e| map_error(e, path, Ctx::Plain))?;
        // An empty body goes chunked: with `Content-Length: 0` the HTTP client would not
        // poll it at all, and an error it gives (a failed verification) would go unseen.
        let length = length.filter(|&n| n > 0);
        let body = match length {
            Some(n) => exact_length(body, n, "PUT", url.to_owned(), path.to_owned()),
            None => body,
        };
        let body_error: Arc<Mutex<Option<Error>>> = Arc::default();
        let slot = body_error.clone();
        let body = body.map(move |chunk| {
            chunk.map_err(|e| {
                let msg = e.to_string();
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                std::io::Error::other(msg)
            })
        });
        let progress = Progress::new();
        let body = MarkProgress::new(body, progress.clone());
        let mut rb = extra(self.request(Method::PUT, url));
        if let Some(n) = length {
            rb = rb.header(header::CONTENT_LENGTH, n);
        }
        let rb = rb.body(reqwest::Body::wrap_stream(body));
        let sent = self.send_upload(rb, url, &progress).await;
        let taken = body_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(e) = taken {
            return Err(e);
        }
        sent.map(|resp| {
            let etag = resp
                .headers()
                .get(header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (resp.status(), etag)
        })
        .map_err(|e| map_error(e, path, Ctx::Plain))
    }

    /// Remembers the temporary file of an upload given up on, for [`StorageClient::settle`]
    /// to delete again (see [`Inner::given_up`]). Bounded: names past [`GIVEN_UP_MAX`] (until
    /// the next settle) are left to the stale-temp removal and `syncengine cleanup`.
    fn give_up(&self, url: &str) {
        let mut given_up = self.given_up.lock().unwrap_or_else(PoisonError::into_inner);
        if given_up.len() < GIVEN_UP_MAX {
            given_up.insert(url.to_owned());
        }
    }

    async fn delete_quietly(&self, url: &str) {
        match self
            .send("DELETE", self.request(Method::DELETE, url), url)
            .await
        {
            Ok(resp) if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND => {}
            Ok(resp) => {
                tracing::warn!(url, status = %resp.status(), "could not delete temporary file")
            }
            Err(e) => tracing::warn!(url, "could not delete temporary file: {e}"),
        }
    }

    /// Removes the collections above `path` that are now empty, bottom up, up to (not
    /// including) the root (the walk is core's [`prune_empty_parents`]).
    ///
    /// A `DELETE` of a collection is recursive: a file another machine uploads into it
    /// between the emptiness check and the delete would go with it. So a collection is never
    /// deleted while a file could still arrive in it unseen:
    /// - with an ETag (Apache), the `DELETE` carries an `If` on it: the ETag changes when a
    ///   file arrives, and the server then refuses the delete;
    /// - without one (wsgidav), it is first moved aside to a name of our own
    ///   ([`aside_dir_name`], `Overwrite: F`), where no writer can find it, checked there,
    ///   and deleted only if it is still empty (see [`Inner::remove_aside`]).
    ///
    /// Best effort: a failure, or a collection that is not empty, stops it quietly.
    ///
    /// # Errors
    /// Only when a collection moved aside turned out not to be empty and could not be moved
    /// back: its contents stay at the aside name, which the error names (and listings report
    /// the folder's path as unknown until the user puts them back).
    async fn prune(&self, path: &RelPath) -> Result<()> {
        prune_empty_parents(path, |d| async move {
            let url = self.dir_url(Some(&d));
            let Ok(resources) = self.propfind(&url, "1").await else {
                return Ok(false);
            };
            let own = self.segments_of(Some(&d));
            if resources.iter().any(|r| r.segments != own) || self.is_busy(&url) {
                return Ok(false);
            }
            let removed = match resources.iter().find_map(|r| r.etag.clone()) {
                Some(etag) => {
                    let rb = self
                        .request(Method::DELETE, &url)
                        .header("If", format!("<{url}> ([{}])", if_etag(&etag)));
                    matches!(
                        self.send("DELETE", rb, &url).await,
                        Ok(resp) if resp.status().is_success()
                    )
                }
                None => self.remove_aside(&d, &url).await?,
            };
            if removed {
                tracing::debug!(url, "removed empty collection");
                self.forget_dir(&url);
            }
            Ok(removed)
        })
        .await
    }

    /// Removes the collection `dir` (at `url`, just seen empty) on a server that gives it no
    /// ETag: `MOVE` it aside, check that it is empty there, and `DELETE` it; one that is not
    /// (a file arrived before the move) is moved back. Returns whether `dir` is gone.
    ///
    /// A file uploaded after the move finds no collection at `dir` (its upload fails or makes
    /// a new one): it is never inside the aside collection, whose name no writer knows.
    ///
    /// # Errors
    /// When the collection, not empty, could not be moved back (its name was taken in the
    /// meantime, or the server refused): it stays aside, and the error names it.
    async fn remove_aside(&self, dir: &RelPath, url: &str) -> Result<bool> {
        let parent = dir.parent();
        let aside_name = aside_dir_name(dir);
        let aside_url = format!(
            "{}{}/",
            self.dir_url(parent.as_ref()),
            utf8_percent_encode(&aside_name, SEGMENT)
        );
        if !self.move_collection(url, &aside_url).await {
            // Nothing moved (gone, or refused): the collection stays where it was.
            return Ok(false);
        }
        self.forget_dir(url);
        // From here the aside collection holds whatever was in the folder when it moved.
        let mut aside_segments = self.segments_of(parent.as_ref());
        aside_segments.push(aside_name);
        // A write of ours that started since the check may be putting a file into it.
        let state = if self.is_busy(url) {
            AsideState::Unreadable("a write of this client into it began meanwhile".into())
        } else {
            self.aside_state(&aside_url, &aside_segments).await
        };
        let why = match state {
            AsideState::Empty => {
                // No guard is needed any more: nobody else writes below our aside name.
                match self
                    .send(
                        "DELETE",
                        self.request(Method::DELETE, &aside_url),
                        &aside_url,
                    )
                    .await
                {
                    Ok(resp) if resp.status().is_success() => {}
                    // The folder is gone from its path either way; a listing that meets the
                    // empty aside collection has it removed later.
                    Ok(resp) => {
                        tracing::warn!(url = aside_url, status = %resp.status(), "could not delete an emptied folder moved aside");
                    }
                    Err(e) => {
                        tracing::warn!(
                            url = aside_url,
                            "could not delete an emptied folder moved aside: {e}"
                        );
                    }
                }
                return Ok(true);
            }
            // Removed by someone else meanwhile: nothing of it is left to lose.
            AsideState::Gone => return Ok(true),
            AsideState::Holds(n) => format!("{n} members arrived before it was moved"),
            AsideState::Unreadable(e) => format!("it could not be checked ({e})"),
        };
        if self.move_collection(&aside_url, url).await {
            tracing::debug!(url, "kept a folder that is not empty any more: {why}");
            return Ok(false);
        }
        // Its name was taken meanwhile (a write made the folder anew), or the server refused.
        // Only what it holds now decides whether anything is left aside.
        match self.aside_state(&aside_url, &aside_segments).await {
            AsideState::Empty => {
                self.delete_quietly(&aside_url).await;
                return Ok(false);
            }
            AsideState::Gone => return Ok(false),
            AsideState::Holds(_) | AsideState::Unreadable(_) => {}
        }
        tracing::warn!(
            url,
            aside = aside_url,
            "a folder moved aside could not be moved back"
        );
        Err(Error::other(
            BACKEND,
            dir.as_str(),
            format!(
                "the folder was moved aside at {aside_url} to be removed, but it is not empty                  ({why}) and could not be moved back (its name is taken): move its contents                  back to this folder, or remove it once they are not needed; until then this                  path is reported as unknown (the file operation itself was done)"
            ),
        ))
    }

    /// Notes an aside folder a listing found empty, for [`StorageClient::remove_stale_temps`]
    /// (never a listing itself: a dry run lists too).
    fn note_empty_aside(&self, url: String, segments: Vec<String>) {
        self.empty_asides
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((url, segments));
    }

    /// `MOVE` of the collection `from` to `to` (URLs ending in `/`), never replacing
    /// anything (`Overwrite: F`; no `Depth`, which for a collection means infinity). Returns
    /// whether it moved.
    async fn move_collection(&self, from: &str, to: &str) -> bool {
        let rb = self
            .request(method("MOVE"), from)
            .header("Destination", to)
            .header("Overwrite", "F");
        match self.send("MOVE", rb, from).await {
            Ok(resp) if resp.status().is_success() => true,
            Ok(resp) => {
                tracing::debug!(from, to, status = %resp.status(), "collection not moved");
                false
            }
            Err(e) => {
                tracing::debug!(from, to, "collection not moved: {e}");
                false
            }
        }
    }

    /// What the collection moved aside at `url` (whose decoded path is `own`) holds now.
    async fn aside_state(&self, url: &str, own: &[String]) -> AsideState {
        match self.propfind(url, "1").await {
            Ok(resources) => {
                let members = resources.iter().filter(|r| r.segments != own).count();
                let itself = resources
                    .iter()
                    .any(|r| r.segments == own && r.is_collection);
                match (itself, members) {
                    (true, 0) => AsideState::Empty,
                    (_, n) if n > 0 => AsideState::Holds(n),
                    _ => AsideState::Unreadable(
                        "the answer has no entry for the collection itself".into(),
                    ),
                }
            }
            Err(DavError::Status {
                status: StatusCode::NOT_FOUND,
                ..
            }) => AsideState::Gone,
            Err(e) => AsideState::Unreadable(e.to_string()),
        }
    }

    /// The children of one collection as listing items in canonical order.
    ///
    /// `start` is true for the collection a listing starts at (the root or the prefix), which
    /// may be missing or a file (no children). A sub-collection must answer with its own entry
    /// marked as a collection: anything else is an error, which the walk reports as unlisted.
    fn children(
        &self,
        dir: Option<&RelPath>,
        resources: Vec<Resource>,
        start: bool,
    ) -> Result<Vec<Item>> {
        let path_str = dir.map_or("", RelPath::as_str);
        let own = self.segments_of(dir);
        let bad = |msg: String| Error::other(BACKEND, path_str, msg);
        let mut names = HashSet::new();
        let mut items: Vec<(String, Item)> = Vec::new();
        let mut seen_self = false;
        // Folders moved aside to be removed: (the name they were moved from, if it says,
        // their own name).
        let mut asides: Vec<(Option<String>, String)> = Vec::new();
        for res in resources {
            if res.segments == own {
                if !res.is_collection {
                    if start {
                        // The prefix names a file: it has no children.
                        return Ok(Vec::new());
                    }
                    // A member listed as a collection whose own answer says otherwise: its
                    // "no children" would make every file below it look deleted.
                    return Err(bad(
                        "listed as a collection, but its own entry is not".into()
                    ));
                }
                seen_self = true;
                continue;
            }
            let is_child = res.segments.len() == own.len() + 1 && res.segments.starts_with(&own);
            let Some(name) = res.segments.last().filter(|_| is_child) else {
                return Err(bad(format!(
                    "the server listed /{} below {}, outside the listed collection",
                    res.segments.join("/"),
                    self.dir_url(dir)
                )));
            };
            if let Some(status) = res.status.filter(|s| !(200..300).contains(s)) {
                return Err(bad(format!("member {name:?} listed with status {status}")));
            }
            if res.is_collection
                && let Some(target) = aside_target(name)
            {
                asides.push((target.map(str::to_owned), name.clone()));
                continue;
            }
            if name.starts_with(TEMP_FILE_PREFIX) {
                if !res.is_collection {
                    // The server's own last-modified time (the mtime property is what the
                    // writer set from the source, often long ago).
                    let newest = [res.last_modified, res.mtime_nanos.map(nanos_to_system_time)]
                        .into_iter()
                        .flatten()
                        .max();
                    let url = format!(
                        "{}{}",
                        self.dir_url(dir),
                        utf8_percent_encode(name, SEGMENT)
                    );
                    self.stale.consider(url, name, newest);
                }
                continue;
            }
            if !names.insert(name.clone()) {
                return Err(bad(format!("member {name:?} listed twice")));
            }
            let path = match dir {
                None => RelPath::new(name.as_str()),
                Some(d) => d.join(name),
            }?;
            if res.is_collection {
                // Read at `name` (so a failure is reported at the collection's place, before
                // `name.txt`), entered at `name/`.
                items.push((name.clone(), Item::Probe(path.clone(), None)));
                items.push((format!("{name}/"), Item::Descend(path)));
            } else {
                items.push((name.clone(), Item::File(self.entry(path, &res))));
            }
        }
        if !start && !seen_self {
            return Err(bad(
                "the server's answer has no entry for the collection itself".into(),
            ));
        }
        for (target, name) in asides {
            self.place_aside(dir, &mut items, target, name);
        }
        items.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(items.into_iter().map(|(_, item)| item).collect())
    }

    /// Puts a folder moved aside to be removed (by this or another machine's run; a run killed
    /// between the move and the delete leaves it behind) among the listed items of `dir`, at
    /// the place of the folder it was moved from: the walk checks it there ([`Item::Aside`]).
    /// What the listing holds at that name itself waits behind it, and is walked as usual
    /// once the aside folder proves empty. An aside folder whose name does not say where it
    /// came from is placed first, for `dir`'s contents.
    fn place_aside(
        &self,
        dir: Option<&RelPath>,
        items: &mut Vec<(String, Item)>,
        target: Option<String>,
        name: String,
    ) {
        let url = format!(
            "{}{}/",
            self.dir_url(dir),
            utf8_percent_encode(&name, SEGMENT)
        );
        let mut segments = self.segments_of(dir);
        segments.push(name);
        let target = target.and_then(|t| {
            let path = match dir {
                None => RelPath::new(t.as_str()),
                Some(d) => d.join(&t),
            };
            // A single valid name, like every member of a listing.
            path.ok()
                .filter(|p| p.file_name() == t)
                .map(|p| (t, AsideOf::Path(p)))
        });
        let (key, of) = target.unwrap_or_else(|| (String::new(), AsideOf::Contents(dir.cloned())));
        // Whatever holds this place already (the listed file, the probe of the listed folder,
        // or another aside folder of the same name), never the `name/` step into a folder.
        let shadowed = items
            .iter()
            .position(|(k, item)| *k == key && !matches!(item, Item::Descend(_)))
            .map(|i| Box::new(items.remove(i).1));
        items.push((
            key,
            Item::Aside(Aside {
                url,
                segments,
                of,
                shadowed,
            }),
        ));
    }

    /// Lists the collection a listing starts at; a missing collection (or a file) has none.
    async fn list_start(self: Arc<Self>, dir: Option<RelPath>) -> Result<Vec<Item>> {
        let url = self.dir_url(dir.as_ref());
        let result = self.propfind(&url, "1").await;
        let resources = match dir.as_ref() {
            Some(d) => found(result, d)?,
            None => match result {
                Err(DavError::Status {
                    status: StatusCode::NOT_FOUND,
                    ..
                }) => None,
                other => Some(other.map_err(|e| map_error(e, "", Ctx::Plain))?),
            },
        };
        match resources {
            Some(resources) => self.children(dir.as_ref(), resources, true),
            None => Ok(Vec::new()),
        }
    }

    /// Lists a sub-collection some listing named. Every failure is an error here, a 404 or
    /// a redirect included: the collection was just listed by its parent, so "not found" is
    /// not "empty", and the walk reports it as unlisted.
    async fn list_sub(self: Arc<Self>, dir: RelPath) -> Result<Vec<Item>> {
        let url = self.dir_url(Some(&dir));
        let resources = self
            .propfind(&url, "1")
            .await
            .map_err(|e| map_error(e, dir.as_str(), Ctx::Plain))?;
        self.children(Some(&dir), resources, false)
    }

    /// The check before a run ([`StorageClient::check_access`]): one `PROPFIND Depth: 0` of
    /// the root collection. A root that is there as a collection passes; so does a missing
    /// one (404, or Apache's 400/409 and a redirect, which a first run's `MKCOL` then
    /// settles), as with the default check and on local disk and SFTP. A root that is a
    /// file fails: listings would find it empty, and the run would fail later at its first
    /// write. Servers answer a file's URL with a trailing slash either as the file (wsgidav)
    /// or with 400 (Apache), so a root not found as a collection is looked up once more
    /// without the slash. A missing root below a file fails too ([`Inner::check_missing_root`]):
    /// it could never be made. Any other failure (refused connection, credentials, TLS) is the
    /// request's own error.
    async fn check_root(&self) -> Result<()> {
        let url = self.dir_url(None);
        let own = self.segments_of(None);
        let not_a_folder = |url: &str| {
            Error::other(
                BACKEND,
                "",
                format!("the root {url} is a file, not a folder"),
            )
        };
        let status = match self.propfind(&url, "0").await {
            Ok(resources) => {
                return match resources.iter().find(|r| r.segments == own) {
                    Some(r) if !r.is_collection => Err(not_a_folder(&url)),
                    // A collection, or an answer without the root's own entry: the listing
                    // decides about the latter, as it always did.
                    _ => Ok(()),
                };
            }
            Err(DavError::Status { status, .. })
                if matches!(status.as_u16(), 400 | 404 | 409 | 300..=399) =>
            {
                status
            }
            Err(e) => return Err(map_error(e, "", Ctx::Plain)),
        };
        tracing::debug!(%url, %status, "the root is not a collection; is it a file?");
        let bare = url.trim_end_matches('/');
        if own.is_empty() || bare.len() == url.len() {
            return Ok(());
        }
        match self.propfind(bare, "0").await {
            Ok(resources) => match resources.iter().find(|r| r.segments == own) {
                Some(r) if !r.is_collection => Err(not_a_folder(bare)),
                _ => Ok(()),
            },
            // Not there as anything: a missing root, which the first write creates, unless
            // a file above it makes it impossible.
            Err(DavError::Status { status, .. })
                if matches!(status.as_u16(), 400 | 404 | 409 | 300..=399) =>
            {
                self.check_missing_root(bare, &own).await
            }
            Err(e) => Err(map_error(e, "", Ctx::Plain)),
        }
    }

    /// For a root that is not there (at `bare`, its URL without the trailing slash, with
    /// the decoded segments `own`): walks up its ancestors until one is found. A file there
    /// means the root can never be made (`MKCOL` below a file fails), so the check fails as
    /// for a root that is a file, naming it; a collection, or an ancestor that cannot be
    /// read (no right to list above the root is common), passes as before: the first write
    /// creates the root.
    async fn check_missing_root(&self, bare: &str, own: &[String]) -> Result<()> {
        let mut url = bare;
        for depth in (1..own.len()).rev() {
            let Some(cut) = url.rfind('/') else {
                return Ok(());
            };
            url = &url[..cut];
            let segments = &own[..depth];
            match self.propfind(url, "0").await {
                Ok(resources) => {
                    return match resources.iter().find(|r| r.segments == segments) {
                        Some(r) if !r.is_collection => Err(Error::other(
                            BACKEND,
                            "",
                            format!(
                                "the root {} cannot exist: {url} above it is a file, not a \
                                 folder",
                                self.base
                            ),
                        )),
                        _ => Ok(()),
                    };
                }
                Err(DavError::Status { status, .. })
                    if matches!(status.as_u16(), 400 | 404 | 409 | 300..=399) => {}
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }
}

/// A listing task prefetching one collection; aborted when the listing is dropped.
struct Prefetch(JoinHandle<Result<Vec<Item>>>);

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where a folder moved aside to be removed came from.
enum AsideOf {
    /// The folder at this path.
    Path(RelPath),
    /// Some folder in this one (the root when `None`): the aside name does not say which.
    Contents(Option<RelPath>),
}

/// A folder moved aside to be removed, met by a listing (see [`Inner::place_aside`]).
struct Aside {
    /// Its URL (ending in `/`).
    url: String,
    /// Its decoded path segments from the server's root.
    segments: Vec<String>,
    of: AsideOf,
    /// The item listed at the place this one took, walked if the aside folder is empty.
    shadowed: Option<Box<Item>>,
}

impl Aside {
    /// The unknown item a listing reports for an aside folder that is not known to be empty.
    fn report(&self, state: &AsideState) -> Error {
        let why = match state {
            AsideState::Holds(n) => format!(
                "a removal of this folder (by a run that was interrupted, or is still under \
                 way on another machine) moved it aside to {} with {n} members in it (they may \
                 be the only copy): move them back to this path, or remove that folder once \
                 they are not needed",
                self.url
            ),
            AsideState::Gone => format!(
                "another run was removing this folder (moved aside at {}) while this \
                 listing passed; the next run lists it again",
                self.url
            ),
            AsideState::Unreadable(e) => format!(
                "a folder moved aside to be removed, at {}, could not be read: {e}",
                self.url
            ),
            AsideState::Empty => format!("an empty folder moved aside at {}", self.url),
        };
        match &self.of {
            AsideOf::Path(path) => Error::unlisted(BACKEND, path.as_str(), why),
            AsideOf::Contents(dir) => {
                Error::unlisted_contents(BACKEND, dir.as_ref().map_or("", RelPath::as_str), why)
            }
        }
    }
}

/// What a listing walk has yet to visit.
enum Item {
    /// A folder moved aside to be removed, checked at the place of the folder it came from.
    Aside(Aside),
    File(Entry),
    /// A sub-collection to read, at its plain name's place (maybe already being prefetched).
    Probe(RelPath, Option<Prefetch>),
    /// Enter the sub-collection read by the matching `Probe`, at `name/`'s place.
    Descend(RelPath),
}

/// The state of a listing walk: a stack whose top is the next item in canonical order.
struct Walk {
    inner: Arc<Inner>,
    stack: Vec<Item>,
    prefetching: usize,
    pending_root: Option<Option<RelPath>>,
    /// Members of collections read by a `Probe`, waiting for their `Descend`.
    probed: Vec<(RelPath, Vec<Item>)>,
}

impl Walk {
    async fn next(mut self) -> Option<(Result<Entry>, Walk)> {
        if let Some(root) = self.pending_root.take() {
            // Only the start collection's own failure ends the listing.
            match self.inner.clone().list_start(root).await {
                Ok(items) => self.push(items),
                Err(e) => return Some((Err(e), self.fail())),
            }
        }
        loop {
            match self.stack.pop()? {
                Item::File(entry) => return Some((Ok(entry), self)),
                Item::Probe(path, prefetch) => {
                    let result = match prefetch {
                        Some(mut p) => {
                            self.prefetching -= 1;
                            match (&mut p.0).await {
                                Ok(r) => r,
                                Err(e) => Err(Error::other(BACKEND, path.as_str(), e.to_string())),
                            }
                        }
                        None => self.inner.clone().list_sub(path.clone()).await,
                    };
                    match result {
                        Ok(items) => self.probed.push((path, items)),
                        Err(e) => {
                            // Never "empty": its files would look deleted.
                            let why = format!("a collection that could not be listed: {e}");
                            return Some((Err(Error::unlisted(BACKEND, path.as_str(), why)), self));
                        }
                    }
                }
                Item::Aside(mut aside) => {
                    let state = self.inner.aside_state(&aside.url, &aside.segments).await;
                    match (state, aside.shadowed.take()) {
                        (AsideState::Empty, shadowed) => {
                            // Nothing is hidden there: what is listed at its place stands.
                            self.inner.note_empty_aside(aside.url, aside.segments);
                            if let Some(item) = shadowed {
                                self.stack.push(*item);
                            }
                        }
                        // Moved back or removed since the parent was listed, and a file or
                        // folder is listed at its place: that listing stands.
                        (AsideState::Gone, Some(item)) => self.stack.push(*item),
                        // Unknown, with everything below it. A folder listed at the same
                        // place is not walked: its probe goes, and its `Descend` then finds
                        // nothing to enter.
                        (state, _) => return Some((Err(aside.report(&state)), self)),
                    }
                }
                Item::Descend(path) => {
                    // No members kept means the probe reported the collection as unlisted.
                    if let Some(i) = self.probed.iter().rposition(|(p, _)| *p == path) {
                        let (_, items) = self.probed.swap_remove(i);
                        self.push(items);
                    }
                }
            }
        }
    }

    /// Pushes a collection's children (in canonical order) and starts prefetching the next
    /// few collections the walk will enter.
    fn push(&mut self, items: Vec<Item>) {
        self.stack.extend(items.into_iter().rev());
        let limit = self.inner.list_concurrency.saturating_sub(1);
        let len = self.stack.len();
        for item in self.stack[len.saturating_sub(PREFETCH_SCAN)..]
            .iter_mut()
            .rev()
        {
            if self.prefetching >= limit {
                break;
            }
            if let Item::Probe(path, slot @ None) = item {
                let inner = self.inner.clone();
                let path = path.clone();
                *slot = Some(Prefetch(tokio::spawn(inner.list_sub(path))));
                self.prefetching += 1;
            }
        }
    }

    /// Ends the walk after an error.
    fn fail(mut self) -> Walk {
        self.stack.clear();
        self.probed.clear();
        self.prefetching = 0;
        self
    }
}

/// Marks the collection a write or transfer puts a file into as busy (see
/// [`Inner::busy_dirs`]) for as long as it lives.
struct BusyDir {
    inner: Arc<Inner>,
    url: String,
}

impl BusyDir {
    fn new(inner: &Arc<Inner>, dir: Option<&RelPath>) -> BusyDir {
        let url = inner.dir_url(dir);
        *inner.busy().entry(url.clone()).or_default() += 1;
        BusyDir {
            inner: inner.clone(),
            url,
        }
    }
}

impl Drop for BusyDir {
    fn drop(&mut self) {
        let mut busy = self.inner.busy();
        if let Some(n) = busy.get_mut(&self.url) {
            *n -= 1;
            if *n == 0 {
                busy.remove(&self.url);
            }
        }
    }
}

/// Removes a temporary upload unless disarmed: awaited on known failures, spawned when the
/// write future is dropped (cancelled).
struct TempGuard {
    inner: Option<Arc<Inner>>,
    url: String,
}

impl TempGuard {
    fn disarm(&mut self) {
        self.inner = None;
    }

    async fn cleanup(mut self) {
        if let Some(inner) = self.inner.take() {
            inner.delete_quietly(&self.url).await;
        }
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        let url = std::mem::take(&mut self.url);
        // A write cancelled mid-upload may still complete on the server later.
        inner.give_up(&url);
        remove_in_background(
            &url.clone(),
            async move { inner.delete_quietly(&url).await },
        );
    }
}

/// Passes `body` on, failing it (transient) when it ends before `expected` bytes or runs past
/// them: a `GET` body cut short is never a short file, and a `PUT` body is exactly its
/// `Content-Length`. The chunk that completes `expected` is held back until `body` has
/// ended, so an error after the last byte still fails the stream before it looks complete.
fn exact_length(
    body: ByteStream,
    expected: u64,
    method: &'static str,
    url: String,
    path: String,
) -> ByteStream {
    let fail = move |got: u64, ended: bool| {
        let what = if ended {
            format!("the body ended after {got} of {expected} bytes")
        } else {
            format!("the body ran past its {expected} bytes")
        };
        map_error(
            DavError::Truncated(format!("{method} {url}: {what}")),
            &path,
            Ctx::Plain,
        )
    };
    stream::unfold((body, 0u64, false), move |(mut body, got, done)| {
        let fail = fail.clone();
        async move {
            if done {
                return None;
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    let got = got + chunk.len() as u64;
                    if got > expected {
                        return Some((Err(fail(got, false)), (body, got, true)));
                    }
                    if got == expected && !chunk.is_empty() {
                        // The last bytes are held back until `body` has ended: an upload
                        // whose `Content-Length` is reached is complete to the server (the
                        // HTTP client polls no further), so an error `body` gives after its
                        // last byte (a failed verification) must come before that byte.
                        loop {
                            match body.next().await {
                                None => return Some((Ok(chunk), (body, got, true))),
                                Some(Ok(more)) if more.is_empty() => {}
                                Some(Ok(more)) => {
                                    let past = got + more.len() as u64;
                                    return Some((Err(fail(past, false)), (body, past, true)));
                                }
                                Some(Err(e)) => return Some((Err(e), (body, got, true))),
                            }
                        }
                    }
                    Some((Ok(chunk), (body, got, false)))
                }
                Some(Err(e)) => Some((Err(e), (body, got, true))),
                None if got < expected => Some((Err(fail(got, true)), (body, got, true))),
                None => None,
            }
        }
    })
    .boxed()
}

/// Cuts `skip` bytes off the front of a stream and ends it after `len` bytes: for servers
/// that answer a range request with the whole file (200), and as a guard on 206 answers.
fn slice_stream(body: ByteStream, skip: u64, len: u64) -> ByteStream {
    stream::unfold(
        (body, skip, len),
        |(mut body, mut skip, remaining)| async move {
            if remaining == 0 {
                return None;
            }
            loop {
                match body.next().await? {
                    Err(e) => return Some((Err(e), (body, 0, 0))),
                    Ok(mut chunk) => {
                        let n = chunk.len() as u64;
                        if skip >= n {
                            skip -= n;
                            continue;
                        }
                        // Both casts are bounded by the chunk's length.
                        let chunk_rest = chunk.split_off(skip as usize);
                        let take = remaining.min(chunk_rest.len() as u64);
                        let out = chunk_rest.slice(..take as usize);
                        return Some((Ok(out), (body, 0, remaining - take)));
                    }
                }
            }
        },
    )
    .boxed()
}

#[async_trait]
impl StorageClient for WebDavClient {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    /// Removes the stale temp files the listings came across, and the folders moved aside to
    /// be removed that they found empty (left by a run killed between the move and the
    /// delete). An aside folder is deleted only if it is still empty now; it needs no age,
    /// unlike a temp file: nothing arrives in a folder under a name no writer knows, so an
    /// empty one is never another machine's work in progress. Those removals are best effort.
    async fn remove_stale_temps(&self) -> Result<u64> {
        let inner = &self.inner;
        let mut removed = 0;
        let asides = std::mem::take(
            &mut *inner
                .empty_asides
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (url, segments) in asides {
            if !matches!(inner.aside_state(&url, &segments).await, AsideState::Empty) {
                continue;
            }
            match inner
                .send("DELETE", inner.request(Method::DELETE, &url), &url)
                .await
            {
                Ok(resp) if resp.status().is_success() => {
                    tracing::info!(%url, "removed an empty folder left aside by an interrupted run");
                    removed += 1;
                }
                Ok(resp) if resp.status() == StatusCode::NOT_FOUND => {}
                Ok(resp) => {
                    tracing::warn!(%url, status = %resp.status(), "could not remove an empty folder left aside");
                }
                Err(e) => tracing::warn!(%url, "could not remove an empty folder left aside: {e}"),
            }
        }
        for url in inner.stale.take() {
            let resp = inner
                .send("DELETE", inner.request(Method::DELETE, &url), &url)
                .await
                .map_err(|e| map_error(e, "", Ctx::Plain))?;
            let status = resp.status();
            if status.is_success() {
                tracing::info!(%url, "removed a temp file untouched for a day");
                removed += 1;
            } else if status != StatusCode::NOT_FOUND {
                return Err(map_error(
                    status_err("DELETE", &url, status),
                    "",
                    Ctx::Plain,
                ));
            }
        }
        Ok(removed)
    }

    /// Deletes again the temporary files of the uploads this client gave up on (stalled,
    /// failed mid-body or cancelled), for `limit` at most: such an upload's body may have
    /// sat whole in the link's buffers and reached the server after the client's first
    /// delete, completing there as a full temporary file. Best effort; a temp file that an
    /// upload completes after this delete stays until the stale-temp removal (a day) or
    /// `syncengine cleanup`.
    async fn settle(&self, limit: Duration) {
        let inner = &self.inner;
        let urls = std::mem::take(
            &mut *inner
                .given_up
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if urls.is_empty() {
            return;
        }
        let all = futures::stream::iter(urls)
            .for_each_concurrent(4, |url| async move { inner.delete_quietly(&url).await });
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(
                "deleting the temp files of given-up uploads took too long; the stale-temp \
                 removal or `syncengine cleanup` removes what is left"
            );
        }
    }

    /// The engine's temp files anywhere under the root (trash folders excepted) whose
    /// server-side modification time is older than the given age, by the core's
    /// [`clean_up_temps`](syncengine_core::cleanup::clean_up_temps). Folders left aside
    /// are not touched here (the engine removes them after a run once they are empty).
    async fn clean_up(&self, opts: &CleanupOptions) -> Result<CleanupReport> {
        let inner = &self.inner;
        clean_up_temps(self, &inner.stale, opts, |url| async move {
            let resp = inner
                .send("DELETE", inner.request(Method::DELETE, &url), &url)
                .await
                .map_err(|e| map_error(e, "", Ctx::Plain))?;
            let status = resp.status();
            if status.is_success() {
                Ok(true)
            } else if status == StatusCode::NOT_FOUND {
                Ok(false)
            } else {
                Err(map_error(
                    status_err("DELETE", &url, status),
                    "",
                    Ctx::Plain,
                ))
            }
        })
        .await
    }

    /// `webdav://<host:port>/<decoded path of the root collection>` (the scheme of the URL
    /// does not take part: one port serves one protocol).
    async fn location(&self) -> Result<Location> {
        let base = &self.inner.base;
        let host = match base.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            Some(host) => host.to_string(),
            None => String::new(),
        };
        let port = base.port_or_known_default().unwrap_or_default();
        Ok(Location::new(
            "webdav",
            format!("{host}:{port}"),
            self.inner.base_segments.join("/"),
        ))
    }

    /// One `PROPFIND Depth: 0` of the root: a missing root passes (a first run creates it), a
    /// root that is a file does not ("the root … is a file, not a folder"), and neither does a
    /// refused connection, a TLS failure or refused credentials.
    async fn check_access(&self) -> Result<()> {
        self.inner.check_root().await
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.ordered_listing = true;
        caps.set_mtime = self.inner.mtime_property;
        caps.mtime_precision = if self.inner.mtime_property {
            Duration::from_nanos(1)
        } else {
            Duration::from_secs(1)
        };
        caps.etag = true;
        // Apache, nginx and wsgidav derive ETags from size and mtime (and inode): equal ETags
        // never prove equal content.
        caps.etag_is_md5 = false;
        caps.server_side_copy = true;
        caps.native_rename = true;
        caps.conditional_write = true;
        caps.real_directories = true;
        // Ranges carry `If-Match` on the listed ETag (see `read_opts`).
        caps.parallel_reads = self.inner.parallel_reads.clone();
        caps
    }

    fn list(&self, prefix: Option<&RelPath>) -> EntryStream {
        let walk = Walk {
            inner: self.inner.clone(),
            stack: Vec::new(),
            prefetching: 0,
            pending_root: Some(prefix.cloned()),
            probed: Vec::new(),
        };
        stream::unfold(walk, Walk::next).boxed()
    }

    /// One `PROPFIND Depth: 0` of the root folder: 404 or 409 (a parent missing too) is a
    /// missing root; any other failure is an error, never read as "missing".
    async fn root_exists(&self) -> Result<bool> {
        match self.inner.propfind(&self.inner.dir_url(None), "0").await {
            Ok(_) => Ok(true),
            Err(DavError::Status { status, .. }) if matches!(status.as_u16(), 404 | 409) => {
                Ok(false)
            }
            Err(e) => Err(map_error(e, "", Ctx::Plain)),
        }
    }

    async fn stat(&self, path: &RelPath) -> Result<Entry> {
        self.inner.stat_entry(path).await
    }

    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        let inner = &self.inner;
        let url = inner.file_url(path);
        let mut rb = inner.request(Method::GET, &url);
        // A read of one version: the answer's ETag (Apache: size and mtime; wsgidav: path,
        // mtime and size), which describes the file the server is sending, must be the listed
        // one. Not `If-Match`: Apache calls the ETag of a file changed in the last second weak
        // (`W/"…"`), and a weak ETag never matches `If-Match`, so a file just written would
        // fail every read. Without a listed ETag this read cannot tell versions apart.
        let want_etag = match opts.version.as_ref().map(|v| v.etag.as_deref()) {
            None => None,
            Some(Some(etag)) => Some(normalize_etag(etag)),
            Some(None) => {
                return Err(Error::Unsupported {
                    backend: BACKEND,
                    operation: "a read of one version without a listed ETag",
                });
            }
        };
        if let Some(range) = &opts.range {
            if range.start >= range.end {
                inner.stat_entry(path).await?;
                return Ok(stream::empty().boxed());
            }
            rb = rb.header(
                header::RANGE,
                format!("bytes={}-{}", range.start, range.end - 1),
            );
        }
        let resp = inner
            .send("GET", rb, &url)
            .await
            .map_err(|e| map_error(e, path.as_str(), Ctx::Plain))?;
        let status = resp.status();
        if status == StatusCode::RANGE_NOT_SATISFIABLE && opts.range.is_some() {
            // The file exists and ends before the range starts.
            return Ok(stream::empty().boxed());
        }
        if !status.is_success() {
            return Err(map_error(
                status_err("GET", &url, status),
                path.as_str(),
                Ctx::Lookup,
            ));
        }
        if let Some(want) = &want_etag {
            let got = resp
                .headers()
                .get(header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(normalize_etag);
            match got {
                Some(got) if &got == want => {}
                Some(got) => {
                    return Err(Error::PreconditionFailed {
                        backend: BACKEND,
                        path: path.to_string(),
                        source: Some(
                            format!("GET {url}: ETag {got}, not the listed {want}").into(),
                        ),
                    });
                }
                None => {
                    return Err(Error::Unsupported {
                        backend: BACKEND,
                        operation: "a read of one version from a server that sends no ETag",
                    });
                }
            }
        }
        let partial = status == StatusCode::PARTIAL_CONTENT;
        if partial {
            let start = resp
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let want = opts.range.as_ref().map(|r| r.start);
            if start != want {
                return Err(map_error(
                    DavError::Protocol(format!(
                        "GET {url}: Content-Range does not start at {want:?}"
                    )),
                    path.as_str(),
                    Ctx::Plain,
                ));
            }
        }
        let expected = match inner.expected_length(&resp, path, partial, &url).await {
            Ok(n) => n,
            Err(e) => return Err(map_error(e, path.as_str(), Ctx::Plain)),
        };
        let owned_path = path.to_string();
        let url_for_check = url.clone();
        let body: ByteStream = resp
            .bytes_stream()
            .map_err(move |source| {
                map_error(
                    DavError::Http {
                        method: "GET",
                        url: url.clone(),
                        source,
                    },
                    &owned_path,
                    Ctx::Plain,
                )
            })
            .boxed();
        let body = match expected {
            Some(n) => exact_length(body, n, "GET", url_for_check, path.to_string()),
            None => body,
        };
        Ok(match &opts.range {
            None => body,
            Some(r) if partial => slice_stream(body, 0, r.end - r.start),
            Some(r) => slice_stream(body, r.start, r.end - r.start),
        })
    }

    async fn write_opts(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        // A version listed with an ETag is compared by ETag (the server checks it on the
        // MOVE); one listed without (nginx's dav-ext lists none) by size and mtime, checked
        // right before the commit. Never `Unsupported`: the caller's fallback is an unchecked
        // overwrite.
        let opts = match &opts.mode {
            WriteMode::IfUnchanged(version) if version.etag.is_none() => opts,
            _ => opts.by_etag(BACKEND)?,
        };
        check_not_temp(path)?;
        let inner = &self.inner;
        let p = path.as_str();
        let parent = path.parent();
        let _busy = BusyDir::new(inner, parent.as_ref());
        inner
            .ensure_collection(parent.as_ref())
            .await
            .map_err(|e| map_error(e, p, Ctx::Plain))?;
        if risky_name(path) && inner.destination_mangles(parent.as_ref()).await {
            return self.write_direct(path, body, opts).await;
        }
        let temp_name = temp_file_name(rand::random::<u64>());
        let temp = match &parent {
            None => RelPath::new(temp_name),
            Some(d) => d.join(&temp_name),
        }?;
        let temp_url = inner.file_url(&temp);
        // From here on, the temporary file is removed however this future ends.
        let mut guard = TempGuard {
            inner: Some(inner.clone()),
            url: temp_url.clone(),
        };

        let (status, put_etag) = match inner
            .upload(&temp_url, body, opts.size_hint, p, |rb| rb)
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                // The body may sit whole in the link's buffers (a stall is seen only once
                // the client has handed everything over): the server can still complete
                // the upload after this delete finds nothing.
                inner.give_up(&temp_url);
                guard.cleanup().await;
                return Err(e);
            }
        };
        if !status.is_success() {
            guard.cleanup().await;
            let err = if status == StatusCode::CONFLICT {
                // Our cache said the parent existed; it was removed behind our back.
                inner.forget_dir(&inner.dir_url(parent.as_ref()));
                DavError::Vanished(format!("PUT {temp_url}: the parent collection vanished"))
            } else {
                status_err("PUT", &temp_url, status)
            };
            return Err(map_error(err, p, Ctx::Plain));
        }

        if let (true, Some(mtime)) = (inner.mtime_property, opts.mtime)
            && let Err(e) = inner
                .set_mtime_after_put(&temp_url, mtime, put_etag.as_deref())
                .await
        {
            guard.cleanup().await;
            return Err(map_error(e, p, Ctx::Plain));
        }

        let committed = match &opts.mode {
            WriteMode::Create => inner
                .transfer("MOVE", &temp_url, path, false)
                .await
                .map_err(|e| map_error(e, p, Ctx::NoOverwrite)),
            WriteMode::Update(expected) => match inner.lookup_file(path).await {
                Ok(Some(current))
                    if current
                        .etag
                        .as_deref()
                        .is_some_and(|e| normalize_etag(e) == normalize_etag(expected)) =>
                {
                    let tag = current.etag.as_deref().map(if_etag);
                    inner
                        .replace_checked(&temp_url, path, tag.as_deref())
                        .await
                        .map_err(|e| map_error(e, p, Ctx::Plain))
                }
                Ok(_) => Err(Error::precondition_failed(BACKEND, p)),
                Err(e) => Err(e),
            },
            // Checked now that the body is on the server, so a version saved during the
            // upload is seen; what remains is the round trip between this check and the MOVE
            // (closed on servers that give the file an ETag after all and evaluate `If`).
            WriteMode::IfUnchanged(version) => match inner.check_unchanged(path, version).await {
                Ok(tag) => inner
                    .replace_checked(&temp_url, path, tag.as_deref())
                    .await
                    .map_err(|e| map_error(e, p, Ctx::Plain)),
                Err(e) => Err(e),
            },
            _ => inner
                .transfer("MOVE", &temp_url, path, true)
                .await
                .map_err(|e| map_error(e, p, Ctx::Plain)),
        };
        // Until the path is seen to hold the new content, the guard stays armed: after a MOVE
        // that happened, its clean-up finds no temporary file (404), which is harmless.
        let written = match committed {
            Ok(()) => inner.stat_entry(path).await,
            Err(e) => Err(e),
        };
        let written = match written {
            Ok(written) => written,
            Err(e) => {
                guard.cleanup().await;
                return Err(e);
            }
        };
        if inner.move_not_done(&opts.mode, &written, &temp_url).await {
            guard.cleanup().await;
            return Err(Error::other(
                BACKEND,
                p,
                "the server answered the MOVE of the new content with success but did not \
                 carry it out (the old version is still at the path, the uploaded temporary \
                 file still beside it); nothing was replaced",
            ));
        }
        guard.disarm();
        Ok(written)
    }

    async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> Result<()> {
        let inner = &self.inner;
        let p = path.as_str();
        let missing = || {
            if opts.report_missing {
                Err(Error::not_found(BACKEND, p))
            } else {
                Ok(())
            }
        };
        // Fails closed: a lookup that fails is an error, not "already gone".
        match inner
            .presence(path)
            .await
            .map_err(|e| map_error(e, p, Ctx::Plain))?
        {
            // Missing, or a collection: there is no file to delete.
            Presence::Absent | Presence::Collection => return missing(),
            Presence::File => {}
        }
        let url = inner.file_url(path);
        let resp = inner
            .send("DELETE", inner.request(Method::DELETE, &url), &url)
            .await
            .map_err(|e| map_error(e, p, Ctx::Plain))?;
        match resp.status() {
            s if s.is_success() => {}
            // Gone since the lookup: nothing is left to delete.
            StatusCode::NOT_FOUND => return missing(),
            s => return Err(map_error(status_err("DELETE", &url, s), p, Ctx::Plain)),
        }
        inner.prune(path).await
    }

    async fn copy_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.transfer_file("COPY", from, to, opts.overwrite).await
    }

    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        let entry = self.transfer_file("MOVE", from, to, opts.overwrite).await?;
        self.inner.prune(from).await?;
        Ok(entry)
    }
}

impl WebDavClient {
    /// Writes straight to the target with one PUT, the write mode enforced by `If-None-Match`
    /// / `If-Match`: only for names a server's MOVE would mangle (see [`risky_name`]). Not
    /// atomic: a reader can see a partial file while it uploads.
    ///
    /// `IfUnchanged` of a version listed without an ETag is checked (size and mtime) right
    /// before the PUT, with `If-Match` on the ETag the check found, if any. Without one a
    /// version saved on the server while the body uploads is not seen: there is no temporary
    /// file to check before, and such a server (one that mangles names and lists no ETags)
    /// leaves nothing to make the PUT itself conditional on.
    async fn write_direct(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        let inner = &self.inner;
        let p = path.as_str();
        let url = inner.file_url(path);
        let ctx = match &opts.mode {
            WriteMode::Create => Ctx::NoOverwrite,
            _ => Ctx::Plain,
        };
        let mode = match &opts.mode {
            // Missing, a collection or another version: PreconditionFailed.
            WriteMode::IfUnchanged(version) => match inner.check_unchanged(path, version).await? {
                Some(tag) => WriteMode::Update(tag),
                None => WriteMode::Overwrite,
            },
            mode => {
                // Fails closed: a lookup that errs (other than a proven "no such file") is
                // not a free path.
                if ctx == Ctx::Plain
                    && matches!(
                        inner
                            .presence(path)
                            .await
                            .map_err(|e| map_error(e, p, Ctx::Plain))?,
                        Presence::Collection
                    )
                {
                    return Err(Error::other(BACKEND, p, "a directory is in the way"));
                }
                mode.clone()
            }
        };
        // What was at the path before (its ETag; `None`: nothing), for the clean-up of a
        // failed PUT; an unknown state (a lookup that failed) means no clean-up.
        let before: Option<Option<String>> = match &mode {
            WriteMode::Update(etag) => Some(Some(etag.clone())),
            WriteMode::Create => Some(None),
            _ => found(inner.lookup(path).await, path)
                .ok()
                .map(|r| r.and_then(|r| r.etag)),
        };
        let sent = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(AtomicBool::new(false));
        let body: ByteStream = {
            let (sent, ended) = (sent.clone(), ended.clone());
            body.inspect(move |chunk| {
                if let Ok(b) = chunk {
                    sent.fetch_add(b.len() as u64, Ordering::Relaxed);
                }
            })
            .chain(
                stream::once(async move {
                    ended.store(true, Ordering::Relaxed);
                })
                .filter_map(|()| async { None }),
            )
            .boxed()
        };
        // The body's length: the size hint, or what it gave when it reached its end.
        let size_hint = opts.size_hint;
        let expected = || {
            size_hint.or_else(|| {
                ended
                    .load(Ordering::Relaxed)
                    .then(|| sent.load(Ordering::Relaxed))
            })
        };
        let status = match inner
            .upload(&url, body, None, p, move |rb| match mode {
                WriteMode::Create => rb.header(header::IF_NONE_MATCH, "*"),
                WriteMode::Update(etag) => rb.header(header::IF_MATCH, normalize_etag(&etag)),
                _ => rb,
            })
            .await
        {
            Ok((status, _)) => status,
            Err(e) => {
                if let Some(before) = before {
                    inner
                        .remove_partial(&url, before.as_deref(), expected())
                        .await;
                }
                return Err(e);
            }
        };
        if !status.is_success() {
            // A 4xx is an answer before the body was taken (a precondition, a refusal): what
            // is there is not ours. A 5xx may come after part of it was written in place.
            if status.is_server_error()
                && let Some(before) = before
            {
                inner
                    .remove_partial(&url, before.as_deref(), expected())
                    .await;
            }
            return Err(map_error(status_err("PUT", &url, status), p, ctx));
        }
        if let (true, Some(mtime)) = (inner.mtime_property, opts.mtime) {
            inner
                .set_mtime(&url, mtime)
                .await
                .map_err(|e| map_error(e, p, Ctx::Plain))?;
        }
        inner.stat_entry(path).await
    }

    /// COPY or MOVE through the client, for targets a server's MOVE would mangle.
    ///
    /// A MOVE removes the source only while it is still the version that was copied (size and
    /// mtime, and its ETag where it has one, checked right before a `DELETE` that carries that
    /// ETag in an `If` header): a version saved there during the copy is left where it is and
    /// the move fails with `PreconditionFailed` (the copy it made stays at `to`).
    async fn transfer_through_client(
        &self,
        name: &'static str,
        from: &RelPath,
        to: &RelPath,
        overwrite: bool,
    ) -> Result<Entry> {
        let source = self.inner.stat_entry(from).await?;
        let body = self.read_opts(from, ReadOptions::default()).await?;
        let mut opts = WriteOptions::default().with_size_hint(source.size);
        if !overwrite {
            opts = opts.with_mode(WriteMode::Create);
        }
        if let Some(mtime) = source.mtime {
            opts = opts.with_mtime(mtime);
        }
        let entry = self.write_direct(to, body, opts).await?;
        if name == "MOVE" {
            let inner = &self.inner;
            let f = from.as_str();
            let tag = inner.check_unchanged(from, &Version::of(&source)).await?;
            let url = inner.file_url(from);
            let mut rb = inner.request(Method::DELETE, &url);
            if let Some(etag) = tag {
                rb = rb.header("If", format!("<{url}> ([{etag}])"));
            }
            let resp = inner
                .send("DELETE", rb, &url)
                .await
                .map_err(|e| map_error(e, f, Ctx::Plain))?;
            match resp.status() {
                // Gone since the check: nothing of it is left to lose.
                s if s.is_success() || s == StatusCode::NOT_FOUND => {}
                s => return Err(map_error(status_err("DELETE", &url, s), f, Ctx::Plain)),
            }
        }
        Ok(entry)
    }

    /// Server-side COPY or MOVE of the file `from` onto `to`.
    async fn transfer_file(
        &self,
        name: &'static str,
        from: &RelPath,
        to: &RelPath,
        overwrite: bool,
    ) -> Result<Entry> {
        check_not_temp(to)?;
        let inner = &self.inner;
        let Some(source) = inner.lookup_file(from).await? else {
            return Err(Error::not_found(BACKEND, from.as_str()));
        };
        let _busy = BusyDir::new(inner, to.parent().as_ref());
        inner
            .ensure_collection(to.parent().as_ref())
            .await
            .map_err(|e| map_error(e, to.as_str(), Ctx::Plain))?;
        if risky_name(to) && inner.destination_mangles(to.parent().as_ref()).await {
            return self
                .transfer_through_client(name, from, to, overwrite)
                .await;
        }
        let ctx = if overwrite {
            Ctx::Plain
        } else {
            Ctx::NoOverwrite
        };
        inner
            .transfer(name, &inner.file_url(from), to, overwrite)
            .await
            .map_err(|e| match e {
                // The source vanished between the lookup and the request.
                DavError::Status {
                    status: StatusCode::NOT_FOUND,
                    ..
                } => map_error(e, from.as_str(), Ctx::Plain),
                e => map_error(e, to.as_str(), ctx),
            })?;
        // A copy is a new file with a new ETag, and the server copied the mtime property
        // bound to the source's: bind the source's mtime to the copy's ETag.
        if let (true, true, Some(nanos)) = (
            name == "COPY",
            inner.mtime_property,
            source.mtime_nanos.filter(|_| mtime_still_bound(&source)),
        ) && let Some(copy) = inner.lookup_file(to).await?
            && !(copy.mtime_nanos == Some(nanos) && mtime_still_bound(&copy))
        {
            inner
                .set_mtime_bound(
                    &inner.file_url(to),
                    nanos_to_system_time(nanos),
                    copy.etag.as_deref(),
                )
                .await
                .map_err(|e| map_error(e, to.as_str(), Ctx::Plain))?;
        }
        inner.stat_entry(to).await
    }
}
