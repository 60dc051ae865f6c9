//! Which storage a side is: its resolved [`Location`] (what the pair id is built from) and
//! its [`RootIdentity`] (what the state records and checks on every run).
//!
//! # Why both
//! A URL or a path does not say which storage answers there: another server can sit behind
//! the same endpoint, another disk can be mounted at the same path, a folder can be deleted
//! and re-created, and a state file can be copied next to another pair's. Applying a base to
//! storage it does not describe turns every file the base knows but the storage lacks into a
//! deletion on the other side. So:
//!
//! - the pair id is a hash of both sides' [`Location`]s: scheme, endpoint `host:port`, bucket
//!   or container (and the Azure account), prefix; SFTP and WebDAV `host:port` and canonical
//!   path; the canonical local path. Never credentials: rotating a key keeps the pair.
//! - each root holds a random id in `<root>/.syncengine/root-id` (written once, create-only),
//!   which the state records. Where no id file can be written (a read-only root), the
//!   backend's persistent volume id stands in ([`StorageClient::volume_id`]); where there is
//!   none either, the run warns and goes on without an identity for that side.
//! - a run whose root does not show the recorded identity stops before planning
//!   ([`SyncError::RootChanged`], a safety stop), naming both identities. Accepting the new
//!   root ([`AcceptNewRoot`], `--accept-new-root`) makes that run ignore the base and delete
//!   nothing; the new identity is recorded (and the stale base dropped) just before the run
//!   changes anything.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::client::{StorageClient, WriteMode, WriteOptions, bytes_stream};
use crate::error::{Error, SyncError};
use crate::ignore_rules::STATE_DIR_NAME;
use crate::mode::Side;
use crate::pair::SyncPair;
use crate::path::RelPath;
use crate::state::{RootRecord, StateStore};
use crate::verify::read_own_file;

/// Name of the id file in a root's `.syncengine/` folder.
pub const ROOT_ID_FILE: &str = "root-id";

/// Id files longer than this are not ids someone wrote on purpose; they are hashed.
const MAX_ID_LEN: usize = 128;

/// Where a client's root is, resolved to what selects the storage: the input of the pair id.
///
/// Its text form is `scheme://authority/path`, e.g. `file:///home/me/notes`,
/// `s3://127.0.0.1:9000/bucket/prefix`, `sftp://nas.local:22/home/me/vault`. It never holds
/// credentials.
///
/// ```
/// use syncengine_core::identity::Location;
///
/// let loc = Location::new("S3", "127.0.0.1:9000", "/bucket//photos/");
/// assert_eq!(loc.to_string(), "s3://127.0.0.1:9000/bucket/photos");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Location {
    /// The scheme, lower case: `file`, `s3`, `az`, `gs`, `webdav`, `sftp`, `memory`…
    pub scheme: String,
    /// What is reached before the path: endpoint `host:port` (and any path the endpoint
    /// itself has), an account host; empty for local disk.
    pub authority: String,
    /// The canonical path below the authority, without leading or trailing `/` and without
    /// empty segments: the bucket and prefix, or the directory.
    pub path: String,
}

impl Location {
    /// Builds a location; the scheme and authority are lower-cased (hosts are case-insensitive)
    /// and the path loses empty segments and outer `/`.
    pub fn new(
        scheme: impl Into<String>,
        authority: impl Into<String>,
        path: impl AsRef<str>,
    ) -> Location {
        let path = path
            .as_ref()
            .split('/')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        Location {
            scheme: scheme.into().to_ascii_lowercase(),
            authority: authority.into().to_ascii_lowercase(),
            path,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/{}", self.scheme, self.authority, self.path)
    }
}

/// Replaces the password of a `scheme://user:password@host/…` URL with `<redacted>`, for
/// messages and logs: a URL a user typed may carry credentials.
///
/// ```
/// use syncengine_core::identity::redact_url;
/// assert_eq!(
///     redact_url("webdav://dav:s3cret@host:8080/a"),
///     "webdav://dav:<redacted>@host:8080/a"
/// );
/// assert_eq!(redact_url("s3://bucket/prefix"), "s3://bucket/prefix");
/// ```
pub fn redact_url(url: &str) -> String {
    crate::redact::redact(url).into_owned()
}

/// `host:port` of a URL, with the scheme's default port when it has none, lower case. For
/// endpoints given as URLs (`http://127.0.0.1:9000`, `https://s3.example.com/base`), the
/// path of the endpoint is kept after the port: it can select the storage too (Azurite's
/// `/devstoreaccount1`).
///
/// ```
/// use syncengine_core::identity::endpoint_authority;
///
/// assert_eq!(endpoint_authority("http://LOCALHOST:9000/"), "localhost:9000");
/// assert_eq!(endpoint_authority("https://s3.example.com"), "s3.example.com:443");
/// assert_eq!(endpoint_authority("http://127.0.0.1:10000/acct/"), "127.0.0.1:10000/acct");
/// ```
pub fn endpoint_authority(url: &str) -> String {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    // Credentials in a URL (`user:pass@host`) never take part.
    let (host_port, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, h)| h);
    let has_port = match host_port.rsplit_once(':') {
        // `[::1]:9000` has a port, `[::1]` does not.
        Some((_, port)) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    };
    let mut out = host_port.to_ascii_lowercase();
    if !has_port {
        match scheme.to_ascii_lowercase().as_str() {
            "http" | "webdav" => out.push_str(":80"),
            "https" | "webdavs" => out.push_str(":443"),
            _ => {}
        }
    }
    let path = path
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    if !path.is_empty() {
        out.push('/');
        out.push_str(&path);
    }
    out
}

/// The id of a pair whose sides are at these locations (the mode is not part of it, so
/// switching modes keeps the base).
pub fn pair_id(source: &Location, destination: &Location) -> String {
    let mut h = Sha256::new();
    // A version tag keeps these ids apart from the older ids made from display strings.
    h.update(b"syncengine-pair-v2\n");
    h.update(source.to_string().as_bytes());
    h.update(b"\n");
    h.update(destination.to_string().as_bytes());
    hex::encode(&h.finalize()[..12])
}

/// What the state records to recognise a root.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RootIdentity {
    /// The random id in `<root>/.syncengine/root-id`.
    IdFile(String),
    /// A persistent id of the volume holding the root ([`StorageClient::volume_id`]), used
    /// where no id file can be written.
    Volume(String),
}

impl RootIdentity {
    /// The form kept in the state database: `id:<id>` or `volume:<id>`.
    pub fn to_token(&self) -> String {
        match self {
            RootIdentity::IdFile(id) => format!("id:{id}"),
            RootIdentity::Volume(id) => format!("volume:{id}"),
        }
    }

    /// Parses [`to_token`](RootIdentity::to_token)'s form.
    pub fn from_token(token: &str) -> Option<RootIdentity> {
        if let Some(id) = token.strip_prefix("id:") {
            Some(RootIdentity::IdFile(id.to_owned()))
        } else {
            token
                .strip_prefix("volume:")
                .map(|id| RootIdentity::Volume(id.to_owned()))
        }
    }
}

impl fmt::Display for RootIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootIdentity::IdFile(id) => write!(f, "root id {id}"),
            RootIdentity::Volume(id) => write!(f, "volume id {id}"),
        }
    }
}

/// Which sides' new roots the user accepts (`--accept-new-root`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AcceptNewRoot {
    /// The source's.
    Source,
    /// The destination's.
    Destination,
    /// Both.
    Both,
}

impl AcceptNewRoot {
    /// True when `side`'s new root is accepted.
    pub fn covers(self, side: Side) -> bool {
        matches!(
            (self, side),
            (AcceptNewRoot::Both, _)
                | (AcceptNewRoot::Source, Side::Source)
                | (AcceptNewRoot::Destination, Side::Destination)
        )
    }

    /// The CLI spelling: `source`, `destination` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            AcceptNewRoot::Source => "source",
            AcceptNewRoot::Destination => "destination",
            AcceptNewRoot::Both => "both",
        }
    }
}

impl fmt::Display for AcceptNewRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AcceptNewRoot {
    type Err = String;

    /// Parses `source`, `destination` or `both` (any case).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "source" | "src" => Ok(AcceptNewRoot::Source),
            "destination" | "dest" | "dst" => Ok(AcceptNewRoot::Destination),
            "both" => Ok(AcceptNewRoot::Both),
            _ => Err(format!(
                "unknown side {s:?}; valid values: source, destination, both"
            )),
        }
    }
}

/// One root that is not the storage the state describes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RootChange {
    /// The side.
    pub side: Side,
    /// Its resolved location.
    pub location: String,
    /// The identity the state recorded.
    pub recorded: RootIdentity,
    /// The identity the root shows now; `None` when it has no id file (and no volume id).
    pub found: Option<RootIdentity>,
    /// The root shows the recorded id, but not the generation the last run of this pair
    /// wrote into it: an older copy of the root (a restored backup, a rolled-back snapshot,
    /// a copied folder), whose files would roll the other side back.
    pub older_copy: bool,
    /// The root holds no file now (outside `.syncengine/`) although the base recorded this
    /// many files for it: an emptied or unmounted side as well as a changed one. Both causes
    /// are reported; `None` when the root holds files or the base recorded none.
    pub empty_with_files: Option<u64>,
}

/// The message of [`SyncError::RootChanged`].
pub(crate) fn root_changed_message(changes: &[RootChange]) -> String {
    let mut msg = String::from("stopped before changing anything: ");
    for (i, c) in changes.iter().enumerate() {
        if i > 0 {
            msg.push_str("; and ");
        }
        if c.older_copy {
            msg.push_str(&format!(
                "the {} root {} holds this pair's root id ({}) but not the generation the \
                 last run wrote into it: it looks like an older copy of the root (a restored \
                 backup, a rolled-back snapshot, a copied folder), and syncing it would roll \
                 the other side back and delete what was added since",
                c.side, c.location, c.recorded
            ));
            continue;
        }
        let found = match &c.found {
            Some(id) => format!("it now has {id}"),
            None => format!("it now has no {STATE_DIR_NAME}/{ROOT_ID_FILE} file"),
        };
        msg.push_str(&format!(
            "the {} root {} is not the storage this pair was last synced with (the state \
             recorded {}, {found})",
            c.side, c.location, c.recorded
        ));
        if let Some(files) = c.empty_with_files {
            msg.push_str(&format!(
                ", and it is empty although it held {files} files at the last sync: check first \
                 that its disk or share is mounted and that the path or prefix is right"
            ));
        }
    }
    let accept = match changes {
        [one] => AcceptNewRoot::from(one.side),
        _ => AcceptNewRoot::Both,
    };
    msg.push_str(&format!(
        ". It may be another disk mounted at the same path (or an unmounted one), another \
         server behind the same URL, a folder that was deleted and re-created, or a state file copied from another \
         pair. If this root is the right one, re-run with --accept-new-root {accept}: that run \
         deletes nothing on either side, copies what is missing, and records the new identity"
    ));
    msg
}

impl From<Side> for AcceptNewRoot {
    fn from(side: Side) -> Self {
        match side {
            Side::Source => AcceptNewRoot::Source,
            Side::Destination => AcceptNewRoot::Destination,
        }
    }
}

/// The path of the id file, relative to a root: `.syncengine/root-id`.
///
/// # Errors
/// None in practice (the path is a valid constant); typed so that no code path can panic.
pub fn root_id_path() -> Result<RelPath, Error> {
    RelPath::new(format!("{STATE_DIR_NAME}/{ROOT_ID_FILE}"))
}

/// Reads a root's id file: `None` when there is none.
///
/// The read is verified and retried ([`read_own_file`]): a short or corrupt read of the id
/// would look like another root — a false [`SyncError::RootChanged`], or, on a pair whose base
/// is still empty, a wrong identity recorded for good.
///
/// # Errors
/// The backend's error for anything but a missing file; an error naming the file when its
/// reads stay short or corrupt.
pub async fn read_root_id(client: &dyn StorageClient) -> Result<Option<String>, Error> {
    Ok(read_own_file(client, &root_id_path()?)
        .await?
        .map(|bytes| id_from_bytes(&bytes)))
}

/// The id an id file's content stands for: its trimmed text when that looks like an id,
/// else a hash of the bytes (so any content still identifies the root).
fn id_from_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes).map(str::trim) {
        Ok(s)
            if !s.is_empty()
                && s.len() <= MAX_ID_LEN
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            s.to_owned()
        }
        _ => format!("sha256-{}", hex::encode(&Sha256::digest(bytes)[..16])),
    }
}

/// Where a root keeps the generation one state's runs of one pair write into it:
/// `.syncengine/generation/<hash of the pair id and the state id>`. One file per pair *and*
/// state: several machines (or state folders) may sync one shared root with the same pair
/// id (the same local path on each), and each must see only its own generations.
fn generation_path(pair_id: &str, state_id: &str) -> Result<RelPath, Error> {
    let mut hash = Sha256::new();
    hash.update(pair_id.as_bytes());
    hash.update(b"\n");
    hash.update(state_id.as_bytes());
    let name = hex::encode(&hash.finalize()[..12]);
    RelPath::new(format!("{STATE_DIR_NAME}/generation/{name}"))
}

/// One generation a run wrote into a root: a counter that only grows within a state, and a
/// random tag (two copies of one state database that both went on writing reach the same
/// counter with different tags).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Generation {
    counter: u64,
    tag: String,
}

impl Generation {
    /// A new generation after `counter`.
    fn after(counter: u64) -> Generation {
        Generation {
            counter: counter.saturating_add(1),
            tag: hex::encode(rand::random::<[u8; 8]>()),
        }
    }

    /// Parses `<counter>-<tag>`; `None` for anything else (a damaged file, or the format of
    /// an earlier development version, which never shipped).
    fn parse(text: &str) -> Option<Generation> {
        let (counter, tag) = text.trim().split_once('-')?;
        let ok = !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_hexdigit());
        Some(Generation {
            counter: counter.parse().ok()?,
            tag: tag.to_owned(),
        })
        .filter(|_| ok)
    }

    fn text(&self) -> String {
        format!("{}-{}", self.counter, self.tag)
    }
}

/// How the generation a root holds compares with what the state recorded for it.
#[derive(Debug, PartialEq, Eq)]
enum Freshness {
    /// The root holds the generation the state recorded (or the one a stopped run was
    /// writing): the root as the last run left it.
    Current,
    /// The root holds a generation this state wrote before the recorded one, or none at
    /// all: an older copy of the root, whose files would roll the other side back.
    Older,
    /// The root holds a later generation, or one this state cannot place: the *state* is
    /// older than the root (a laptop restored with its state from one backup) or a copy of
    /// this state wrote it. The root's files are then not older than the base, so syncing
    /// them rolls nothing back.
    Ahead,
}

fn freshness(
    found: Option<&str>,
    recorded: &Generation,
    pending: Option<&Generation>,
) -> Freshness {
    let Some(found) = found else {
        return Freshness::Older;
    };
    let Some(found) = Generation::parse(found) else {
        return Freshness::Ahead;
    };
    if found == *recorded || Some(&found) == pending {
        return Freshness::Current;
    }
    if found.counter < recorded.counter {
        Freshness::Older
    } else {
        Freshness::Ahead
    }
}

/// Whether `mode` is a mirror whose overwritten (never read) side is `side`.
fn mirrors_onto(mode: crate::mode::SyncMode, side: Side) -> bool {
    use crate::mode::SyncMode;
    match mode {
        SyncMode::SourceToDestination => side == Side::Destination,
        SyncMode::DestinationToSource => side == Side::Source,
        _ => false,
    }
}

/// Lists the engine's own folders of a root — `.syncengine/` itself (its sub-folders pruned:
/// the trash is not read) and the folder of the generation files — so that the backend notes
/// a temp file a killed write of the id file or of a generation left there (listings of the
/// tree prune `.syncengine/`) and [`StorageClient::remove_stale_temps`] removes it once it is
/// a day old. Only where writes go through temp files at all (backends with real folders:
/// an object store's PUT leaves none), so an object store's trash is not listed twice a run.
pub(crate) async fn note_engine_temps(client: &dyn StorageClient, generation_file: &RelPath) {
    let Some(generations) = generation_file.parent() else {
        return;
    };
    let own = generations
        .parent()
        .filter(|_| client.capabilities().real_directories);
    let listings = [
        own.map(|own| client.list_pruned(Some(&own), std::sync::Arc::new(|_: &RelPath| true))),
        Some(client.list(Some(&generations))),
    ];
    for mut listing in listings.into_iter().flatten() {
        while let Some(item) = futures::StreamExt::next(&mut listing).await {
            if let Err(e) = item {
                tracing::debug!(error = %e, "listing the engine's folder");
            }
        }
    }
}

/// Reads the generation a root holds at `path` (verified, see [`read_own_file`]).
async fn read_generation(
    client: &dyn StorageClient,
    path: &RelPath,
) -> Result<Option<String>, Error> {
    Ok(read_own_file(client, path)
        .await?
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned()))
}

/// How often a generation write is tried when it fails for a transient reason.
const GENERATION_ATTEMPTS: u32 = 3;

/// Writes a new generation into `side`'s root at `path`, later than `floor` and than any
/// the store recorded, and returns its counter. The store records it as pending first, then
/// the file is written, then the store records it as current — a kill anywhere between
/// leaves the root holding one of the two generations the store accepts. A failed write is
/// checked (a lost reply may have landed it) and retried when the failure is transient.
///
/// # Errors
/// The backend's error when the file cannot be written ([`SyncError::Storage`]), or the
/// store's.
pub(crate) async fn advance_generation(
    client: &dyn StorageClient,
    side: Side,
    path: &RelPath,
    floor: u64,
    store: &StateStore,
) -> Result<u64, SyncError> {
    let (current, pending) = {
        let store = store.clone();
        blocking(move || store.root_generation(side)).await?
    };
    let top = [current, pending]
        .iter()
        .flatten()
        .filter_map(|g| Generation::parse(g))
        .map(|g| g.counter)
        .fold(floor, u64::max);
    let next = Generation::after(top).text();
    {
        let (store, next) = (store.clone(), next.clone());
        blocking(move || store.begin_root_generation(side, &next)).await?;
    }
    let body = Bytes::from(format!("{next}\n"));
    let size = body.len() as u64;
    let mut attempt = 1;
    loop {
        let written = client
            .write_opts(
                path,
                bytes_stream(body.clone()),
                WriteOptions::default().with_size_hint(size),
            )
            .await;
        let Err(e) = written else { break };
        // A reply lost after the write landed: the root holds it.
        if let Ok(Some(found)) = read_generation(client, path).await
            && found == next
        {
            break;
        }
        if !e.is_transient() || attempt >= GENERATION_ATTEMPTS {
            return Err(SyncError::Storage { side, source: e });
        }
        tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt))).await;
        attempt += 1;
    }
    let store = store.clone();
    let counter = top.saturating_add(1);
    blocking(move || store.commit_root_generation(side, &next)).await?;
    Ok(counter)
}

/// Writes a new random id file into a root (create-only, so two runs racing on a fresh root
/// agree on the first one written) and returns the id the root holds afterwards.
///
/// # Errors
/// The backend's error when the file can neither be created nor read back.
pub async fn create_root_id(client: &dyn StorageClient) -> Result<String, Error> {
    let id = hex::encode(rand::random::<[u8; 16]>());
    let body = Bytes::from(format!("{id}\n"));
    let size = body.len() as u64;
    let opts = WriteOptions::default()
        .with_mode(WriteMode::Create)
        .with_size_hint(size);
    let path = root_id_path()?;
    match client.write_opts(&path, bytes_stream(body), opts).await {
        Ok(_) => Ok(id),
        Err(Error::AlreadyExists { .. }) => match read_root_id(client).await? {
            Some(existing) => Ok(existing),
            None => Err(Error::other(
                client.backend(),
                path.as_str(),
                "the id file exists but cannot be read",
            )),
        },
        Err(e) => Err(e),
    }
}

/// What the identity check of one run decided.
#[derive(Debug, Default)]
pub(crate) struct RootCheck {
    /// The user accepted a new root: this run ignores the base (but the settled deletions
    /// of a side that was not replaced) and deletes nothing.
    pub(crate) accepted: bool,
    /// The sides accepted as new roots.
    pub(crate) accepted_sides: Vec<Side>,
    /// The sides whose root has an id file, each with the highest generation counter seen
    /// there: a real run that changes that side writes it a new, later generation.
    pub(crate) generations: Vec<(Side, u64)>,
    /// Where this state's generation file lies in each root (`None` in a dry run of a state
    /// that has never written one).
    pub(crate) generation_file: Option<RelPath>,
    /// Identities to record before the run changes anything (new, changed or accepted).
    pub(crate) record: Vec<RootRecord>,
    /// Warnings for the user.
    pub(crate) warnings: Vec<String>,
    /// The identity each root shows in this run (recorded, adopted or accepted); a side
    /// without one is missing. The name-folding cache is kept per identity.
    pub(crate) identities: Vec<(Side, RootIdentity)>,
}

impl RootCheck {
    /// The identity `side`'s root shows in this run, if it has one.
    pub(crate) fn identity(&self, side: Side) -> Option<&RootIdentity> {
        self.identities
            .iter()
            .find(|(s, _)| *s == side)
            .map(|(_, identity)| identity)
    }
}

/// Checks that each root is the storage `store` describes.
///
/// # Behavior
/// Per side: with no recorded identity (a new pair, or state from before identities), or
/// with an empty base (nothing it could misapply), the root's current identity is adopted;
/// a missing id file is created (not in a dry run). Otherwise the root must show the recorded
/// identity; a root whose id file is missing is a changed root too (the disk was replaced or
/// the folder re-created). Changed roots stop the run, unless `accept` covers them.
///
/// # Errors
/// [`SyncError::RootChanged`] for unaccepted changes; [`SyncError::Storage`] when an id file
/// cannot be read (or created, for a transient reason); [`SyncError::State`] from the store.
pub(crate) async fn check_roots(
    pair: &SyncPair,
    locations: &[Location; 2],
    store: &StateStore,
    pair_id: &str,
    dry_run: bool,
) -> Result<RootCheck, SyncError> {
    let recorded = {
        let store = store.clone();
        blocking(move || {
            Ok((
                store.root_identity(Side::Source)?,
                store.root_identity(Side::Destination)?,
                store.pending_acceptance()?,
            ))
        })
        .await?
    };
    let (recorded_source, recorded_destination, pending) = recorded;
    let accept = pair.options.accept_new_root;
    let mut check = RootCheck::default();
    let state_id = {
        let store = store.clone();
        blocking(move || store.state_id(!dry_run)).await?
    };
    check.generation_file = state_id
        .map(|state_id| generation_path(pair_id, &state_id))
        .transpose()
        .map_err(|e| SyncError::State(format!("naming the generation file: {e}")))?;
    let mut changes = Vec::new();
    let mut to_create = Vec::new();
    for (side, recorded, location) in [
        (Side::Source, recorded_source, &locations[0]),
        (Side::Destination, recorded_destination, &locations[1]),
    ] {
        let client = pair.client(side).as_ref();
        let storage = |source| SyncError::Storage { side, source };
        let current = read_root_id(client).await.map_err(storage)?;
        // Checked with or without a base: a mirror deletes the extras of another disk even
        // with none, and so does a pending `--initial` preference (a killed first run).
        let found = match recorded {
            None => None,
            Some(RootIdentity::IdFile(r)) if current.as_deref() == Some(r.as_str()) => {
                // The right root — but is it the root as the last run left it, or an older
                // copy of it (same id file)?
                let (recorded_gen, pending) = {
                    let store = store.clone();
                    blocking(move || store.root_generation(side)).await?
                };
                check
                    .identities
                    .push((side, RootIdentity::IdFile(r.clone())));
                // No generation recorded yet (a state from before generations, or of a
                // development format), or none this run can name: start one.
                let recorded_gen = recorded_gen.as_deref().and_then(Generation::parse);
                let (Some(recorded_gen), Some(file)) = (recorded_gen, &check.generation_file)
                else {
                    check.generations.push((side, 0));
                    continue;
                };
                let pending = pending.as_deref().and_then(Generation::parse);
                let found = read_generation(client, file).await.map_err(storage)?;
                let floor = found
                    .as_deref()
                    .and_then(Generation::parse)
                    .map_or(0, |g| g.counter);
                match freshness(found.as_deref(), &recorded_gen, pending.as_ref()) {
                    Freshness::Current => {
                        check.generations.push((side, floor));
                        continue;
                    }
                    Freshness::Ahead => {
                        check.warnings.push(format!(
                            "the {side} root {location} holds a later generation than this \
                             state recorded (the state may have been restored from a backup, \
                             or copied): its files are not older than the state, so the run \
                             goes on"
                        ));
                        check.generations.push((side, floor));
                        continue;
                    }
                    // A mirror never reads the side it overwrites: an older copy there is
                    // mirrored again, and nothing flows back (the backup modes do read both
                    // sides, so they stop). Unless the user accepted that side as a new root:
                    // then, as for any accepted root, the run deletes nothing.
                    Freshness::Older
                        if mirrors_onto(pair.mode, side)
                            && !accept.is_some_and(|a| a.covers(side)) =>
                    {
                        check.warnings.push(format!(
                            "the {side} root {location} looks like an older copy of itself \
                             (a restored snapshot or backup); {} only writes to it, so this run \
                             brings it up to date",
                            pair.mode
                        ));
                        check.generations.push((side, floor));
                        continue;
                    }
                    Freshness::Older => {}
                }
                let identity = RootIdentity::IdFile(r);
                if !accept.is_some_and(|a| a.covers(side)) {
                    changes.push(RootChange {
                        side,
                        location: location.to_string(),
                        recorded: identity.clone(),
                        found: Some(identity),
                        older_copy: true,
                        empty_with_files: None,
                    });
                    continue;
                }
                check.accepted = true;
                check.accepted_sides.push(side);
                check.warnings.push(format!(
                    "the {side} root {location} was accepted although it looks like an older \
                     copy of itself: this run ignores the old base and deletes nothing"
                ));
                check.generations.push((side, floor));
                continue;
            }
            Some(r @ RootIdentity::IdFile(_)) => {
                Some((r, current.clone().map(RootIdentity::IdFile)))
            }
            Some(RootIdentity::Volume(r)) => {
                let volume = client.volume_id().await.map_err(storage)?;
                if volume.as_deref() == Some(r.as_str()) {
                    // Same volume: record an id file now if the root has become writable.
                    None
                } else {
                    let found = match &current {
                        Some(id) => Some(RootIdentity::IdFile(id.clone())),
                        None => volume.map(RootIdentity::Volume),
                    };
                    Some((RootIdentity::Volume(r), found))
                }
            }
        };
        if let Some((recorded, found)) = found {
            if !accept.is_some_and(|a| a.covers(side)) {
                changes.push(RootChange {
                    side,
                    location: location.to_string(),
                    recorded,
                    found,
                    older_copy: false,
                    empty_with_files: None,
                });
                continue;
            }
            check.accepted = true;
            check.accepted_sides.push(side);
            check.warnings.push(format!(
                "the {side} root {location} was accepted as a new root (the state recorded \
                 {recorded}): this run ignores the old base and deletes nothing"
            ));
        }
        let identity = match current {
            Some(id) => Some(RootIdentity::IdFile(id)),
            // A dry run creates nothing; the real run will.
            None if dry_run => None,
            // Nor is anything written to a protected root (`crate::protect`).
            None if pair.options.is_protected(side) => {
                let volume = client.volume_id().await.ok().flatten();
                check.warnings.push(format!(
                    "the protected {side} root {location} has no identity file \
                     ({STATE_DIR_NAME}/{ROOT_ID_FILE}) and none is written to it: {}",
                    if volume.is_some() {
                        "it is recognised by its volume id only (another folder of the same \
                         volume at that path would pass)"
                    } else {
                        "this run cannot check that it is the storage the state describes"
                    }
                ));
                volume.map(RootIdentity::Volume)
            }
            // Written once both sides passed: a run stopped by the other side's check
            // creates nothing (not even a missing root folder).
            None => {
                to_create.push((side, location));
                continue;
            }
        };
        if let Some(identity) = identity {
            if matches!(identity, RootIdentity::IdFile(_)) {
                check.generations.push((side, 0));
            }
            check.identities.push((side, identity.clone()));
            check.record.push((side, identity, location.to_string()));
        }
    }
    if !changes.is_empty() {
        to_create.clear();
    }
    for (side, location) in to_create {
        let client = pair.client(side).as_ref();
        let storage = |source| SyncError::Storage { side, source };
        let identity = match create_root_id(client).await {
            Ok(id) => Some(RootIdentity::IdFile(id)),
            Err(e) if e.is_transient() => return Err(storage(e)),
            Err(e) => match client.volume_id().await {
                Ok(Some(v)) => Some(RootIdentity::Volume(v)),
                Ok(None) | Err(_) => {
                    check.warnings.push(format!(
                        "cannot write the {side}'s identity file {STATE_DIR_NAME}/\
                         {ROOT_ID_FILE} ({e}) and the backend offers no volume id: this \
                         run cannot check that the {side} root {location} is the storage \
                         the state describes"
                    ));
                    None
                }
            },
        };
        if let Some(identity) = identity {
            if matches!(identity, RootIdentity::IdFile(_)) {
                check.generations.push((side, 0));
            }
            check.identities.push((side, identity.clone()));
            check.record.push((side, identity, location.to_string()));
        }
    }
    // An accepted run that did not end normally (killed, cancelled) already recorded the new
    // root: the runs after it keep its promise — no deletions — until one ends normally.
    for (side, location) in [Side::Source, Side::Destination].into_iter().zip(locations) {
        if pending.contains(&side)
            && !check.accepted_sides.contains(&side)
            && !changes.iter().any(|c| c.side == side)
        {
            check.accepted = true;
            check.accepted_sides.push(side);
            check.warnings.push(format!(
                "the {side} root {location} was accepted as a new root by a run that did not \
                 finish: this run, too, ignores the old base and deletes nothing"
            ));
        }
    }
    if let Some(accept) = accept {
        for (side, location) in [Side::Source, Side::Destination].into_iter().zip(locations) {
            if accept.covers(side) && !check.accepted_sides.contains(&side) {
                check.warnings.push(format!(
                    "--accept-new-root {accept} has no effect on the {side}: its root \
                     {location} is the storage the state recorded (or the pair has no base \
                     yet), so this run syncs it as usual"
                ));
            }
        }
    }
    if changes.is_empty() {
        Ok(check)
    } else {
        Err(SyncError::RootChanged { changes })
    }
}

async fn blocking<T, F>(f: F) -> Result<T, SyncError>
where
    F: FnOnce() -> Result<T, SyncError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::State(format!("blocking task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryClient;

    #[test]
    fn locations_are_canonical() {
        let a = Location::new("FILE", "", "/home//me/notes/");
        assert_eq!(a.to_string(), "file:///home/me/notes");
        assert_eq!(a, Location::new("file", "", "home/me/notes"));
        let b = Location::new("s3", "LocalHost:9000", "bucket");
        assert_eq!(b.to_string(), "s3://localhost:9000/bucket");
    }

    #[test]
    fn endpoints_reduce_to_host_and_port() {
        assert_eq!(
            endpoint_authority("http://127.0.0.1:9000"),
            "127.0.0.1:9000"
        );
        assert_eq!(
            endpoint_authority("http://key:secret@127.0.0.1:9000/"),
            "127.0.0.1:9000"
        );
        assert_eq!(endpoint_authority("http://[::1]"), "[::1]:80");
        assert_eq!(endpoint_authority("http://[::1]:81"), "[::1]:81");
        assert_eq!(
            endpoint_authority("https://h.example/x/?a=b"),
            "h.example:443/x"
        );
    }

    #[test]
    fn pair_ids_follow_locations_and_order() {
        let a = Location::new("file", "", "/a");
        let b = Location::new("s3", "127.0.0.1:9000", "bucket");
        let c = Location::new("s3", "127.0.0.1:9001", "bucket");
        assert_eq!(pair_id(&a, &b), pair_id(&a, &b));
        assert_ne!(pair_id(&a, &b), pair_id(&a, &c));
        assert_ne!(pair_id(&a, &b), pair_id(&b, &a));
    }

    #[test]
    fn identity_tokens_round_trip() {
        for id in [
            RootIdentity::IdFile("abc".into()),
            RootIdentity::Volume("1234-ABCD".into()),
        ] {
            assert_eq!(RootIdentity::from_token(&id.to_token()), Some(id));
        }
        assert_eq!(RootIdentity::from_token("what"), None);
    }

    #[test]
    fn accept_parses_and_covers() {
        let a: AcceptNewRoot = "Destination".parse().unwrap();
        assert!(a.covers(Side::Destination) && !a.covers(Side::Source));
        let b: AcceptNewRoot = "both".parse().unwrap();
        assert!(b.covers(Side::Source) && b.covers(Side::Destination));
        assert!("sideways".parse::<AcceptNewRoot>().is_err());
    }

    #[test]
    fn odd_id_files_still_identify() {
        assert_eq!(id_from_bytes(b"abc-123\n"), "abc-123");
        let odd = id_from_bytes(b"not an id: \xff");
        assert!(odd.starts_with("sha256-"), "{odd}");
        assert_ne!(odd, id_from_bytes(b"another odd one"));
        assert!(id_from_bytes(b"").starts_with("sha256-"));
    }

    #[tokio::test]
    async fn id_files_are_created_once() {
        let c = MemoryClient::new();
        assert_eq!(read_root_id(&c).await.unwrap(), None);
        let first = create_root_id(&c).await.unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(read_root_id(&c).await.unwrap(), Some(first.clone()));
        // A second creation (a racing run) keeps the first id.
        assert_eq!(create_root_id(&c).await.unwrap(), first);
    }

    #[test]
    fn messages_name_both_identities_and_the_command() {
        let msg = root_changed_message(&[RootChange {
            side: Side::Destination,
            location: "file:///mnt/usb".into(),
            recorded: RootIdentity::IdFile("aaa".into()),
            found: Some(RootIdentity::IdFile("bbb".into())),
            older_copy: false,
            empty_with_files: None,
        }]);
        assert!(
            msg.contains("root id aaa") && msg.contains("root id bbb"),
            "{msg}"
        );
        assert!(msg.contains("--accept-new-root destination"), "{msg}");
        assert!(msg.contains("file:///mnt/usb"), "{msg}");
        let both = root_changed_message(&[
            RootChange {
                side: Side::Source,
                location: "s".into(),
                recorded: RootIdentity::IdFile("a".into()),
                found: None,
                older_copy: false,
                empty_with_files: None,
            },
            RootChange {
                side: Side::Destination,
                location: "d".into(),
                recorded: RootIdentity::Volume("v".into()),
                found: None,
                older_copy: false,
                empty_with_files: None,
            },
        ]);
        assert!(both.contains("--accept-new-root both"), "{both}");
        assert!(both.contains("no .syncengine/root-id file"), "{both}");
    }
}
