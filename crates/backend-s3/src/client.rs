//! [`S3Client`]: the [`StorageClient`] implementation over object_store.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, CopyMode, CopyOptions, GetOptions, GetRange, MultipartUpload,
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    UpdateVersion,
};
use syncengine_core::cleanup::{CleanupOptions, CleanupReport, remove_in_background};
use syncengine_core::entry::{md5_of_etag, normalize_etag};
use syncengine_core::identity::{Location, endpoint_authority};
use syncengine_core::{
    ByteStream, Capabilities, ContentHash, DeleteOptions, Entry, EntryStream, Error, HashKind,
    ReadOptions, RelPath, Result, StorageClient, TransferOptions, WriteMode, WriteOptions,
    check_access_by_listing, checked_by_etag,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;

use crate::big_copy::BigCopy;
use crate::config::{S3Config, StoreKind};
use crate::error::StoreError;
use crate::mtime;

/// How many HEAD requests a listing runs at once (mtime metadata; zero-byte objects, which
/// may be folder markers).
const METADATA_HEADS_IN_FLIGHT: usize = 16;

/// How many actions a run keeps in flight on an object store when the user named no
/// number (see [`Capabilities::preferred_transfers`]).
pub const DEFAULT_TRANSFERS: usize = 64;

/// The largest upload budget (a tokio semaphore's limit, and `u32` permits per request).
const MAX_BUDGET: usize = u32::MAX as usize;

/// Holds at least `want` bytes of the upload budget in `held` (never more than the whole
/// budget, `total`). Takes what is free at once; otherwise gives back what it holds before it
/// waits for the whole amount, so uploads never wait on each other while holding part of
/// the budget (no deadlock; the bytes already buffered are then briefly unaccounted).
async fn reserve(
    budget: &Arc<Semaphore>,
    total: usize,
    held: &mut Option<OwnedSemaphorePermit>,
    want: usize,
) -> Result<()> {
    let want = want.min(total);
    let have = held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
    if have >= want {
        return Ok(());
    }
    let more = u32::try_from(want - have).unwrap_or(u32::MAX);
    let closed = |_| Error::other("s3", "", "the upload buffer budget was closed");
    match budget.clone().try_acquire_many_owned(more) {
        Ok(p) => match held {
            Some(h) => h.merge(p),
            None => *held = Some(p),
        },
        Err(_) => {
            drop(held.take());
            let all = u32::try_from(want).unwrap_or(u32::MAX);
            *held = Some(
                budget
                    .clone()
                    .acquire_many_owned(all)
                    .await
                    .map_err(closed)?,
            );
        }
    }
    Ok(())
}

/// A [`StorageClient`] for one bucket (or container) and prefix on S3, Azure Blob or GCS.
///
/// Build one with [`S3Builder`](crate::S3Builder). Keys are `prefix/` + the [`RelPath`],
/// stored literally (no percent-encoding), so other tools see the same names.
#[derive(Clone)]
pub struct S3Client {
    store: Arc<dyn ObjectStore>,
    config: Arc<S3Config>,
    /// S3 only: copies objects larger than CopyObject allows.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    big_copy: Option<Arc<BigCopy>>,
    /// Lists keys raw (S3 and GCS always; Azure with a credential it can sign with), so keys that
    /// object_store's `Path` cannot hold are reported one by one instead of failing the
    /// whole listing. `None`: object_store lists.
    #[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
    raw_lister: Option<crate::raw_list::RawLister>,
    /// Set once an upload's single-part ETag was not the MD5 of what was sent (SSE-KMS,
    /// SSE-C, a server that never sends MD5s): ETags are then not taken for MD5s any more,
    /// by this client and its clones.
    etag_not_md5: Arc<AtomicBool>,
    /// The bytes all uploads of this client (and its clones) may hold in part buffers at
    /// once: [`S3Config::upload_buffer`] permits, one per byte.
    upload_budget: Arc<Semaphore>,
    /// Aborts of multipart uploads whose write was dropped (a cancelled run), running in the
    /// background; [`StorageClient::settle`] waits for them. Shared by clones.
    aborts: TaskTracker,
    /// Whether this endpoint refuses a `CopyObject` whose source is not the version named
    /// (`x-amz-copy-source-if-match`), found out by the first same-store copy; shared by
    /// clones. moto ignores the header, AWS, MinIO and SeaweedFS honour it.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    copy_source_checked: Arc<tokio::sync::OnceCell<bool>>,
}

impl fmt::Debug for S3Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for S3Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        if c.prefix.is_empty() {
            write!(f, "S3Client({}://{})", c.kind.scheme(), c.bucket)
        } else {
            write!(
                f,
                "S3Client({}://{}/{})",
                c.kind.scheme(),
                c.bucket,
                c.prefix
            )
        }
    }
}

/// Converts object_store's Last-Modified to whole seconds: S3 lists it with milliseconds but
/// HEAD reports seconds, and `stat` must agree with `list`.
fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

/// rclone's replacement for `\` on stores that turn it into `/` (Azure, SeaweedFS): U+FF3C.
const FULLWIDTH_BACKSLASH: char = '\u{FF3C}';
/// rclone's quote for a literal replacement character.
const QUOTE: char = '\u{201B}';

/// Encodes a relative path for a store that mangles `\` (the way rclone does).
fn encode_backslash(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains(['\\', FULLWIDTH_BACKSLASH]) {
        return path.into();
    }
    let mut out = String::with_capacity(path.len() + 8);
    for ch in path.chars() {
        match ch {
            '\\' => out.push(FULLWIDTH_BACKSLASH),
            FULLWIDTH_BACKSLASH => {
                out.push(QUOTE);
                out.push(FULLWIDTH_BACKSLASH);
            }
            c => out.push(c),
        }
    }
    out.into()
}

/// Reverses [`encode_backslash`].
fn decode_backslash(key: &str) -> std::borrow::Cow<'_, str> {
    if !key.contains(FULLWIDTH_BACKSLASH) {
        return key.into();
    }
    let mut out = String::with_capacity(key.len());
    let mut chars = key.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            QUOTE if chars.peek() == Some(&FULLWIDTH_BACKSLASH) => {
                chars.next();
                out.push(FULLWIDTH_BACKSLASH);
            }
            FULLWIDTH_BACKSLASH => out.push('\\'),
            c => out.push(c),
        }
    }
    out.into()
}

/// Drops the folder marker `name/` listed next to an object `name` (object_store lists both
/// as `name`).
///
/// Listings come in key order (S3, Azure, GCS), and `name` < `name/`: the object comes
/// first, then keys that extend `name` with a byte below `/` (`name-2`, `name.txt`), then
/// the marker. So the marker twin of an object can only follow while every key since the
/// object starts with its name. This keeps the names passed that are prefixes of the latest
/// key (a chain, as long as a key at most) and drops a zero-byte entry whose location is one
/// of them.
///
/// Only a zero-byte entry is ever dropped, and only when the same location was passed
/// before: that location stays listed once, so no object goes missing from a listing (which
/// the engine would read as a delete). A store that lists out of order may put the marker
/// first: then the marker passes as an empty `name` and the object after it is not dropped
/// when it has content (a repeated path, which the engine refuses with an error); an empty
/// object after it is dropped, and the path is listed once, empty, as the object is.
#[derive(Debug, Default)]
struct MarkerTwins {
    /// Locations passed, each a prefix of the next; the last one is the latest passed.
    open: Vec<String>,
}

impl MarkerTwins {
    /// Whether the entry listed at `location` (`zero`: listed with zero bytes) is kept.
    fn keep(&mut self, location: &str, zero: bool) -> bool {
        while let Some(top) = self.open.last() {
            if location.starts_with(top.as_str()) {
                break;
            }
            self.open.pop();
        }
        if self.open.last().is_some_and(|top| top == location) {
            // The same location again: the marker twin when empty. One with content (an
            // object `name/` with bytes in it) passes, and the engine reports the repeat.
            return !zero;
        }
        self.open.push(location.to_owned());
        true
    }
}

impl S3Client {
    pub(crate) fn new(
        config: S3Config,
        store: Arc<dyn ObjectStore>,
        big_copy: Option<Arc<BigCopy>>,
    ) -> Self {
        #[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
        let raw_lister = {
            use crate::raw_list::RawLister;
            let lister: Option<RawLister> = None;
            #[cfg(feature = "s3")]
            let lister = lister.or_else(|| big_copy.clone().map(RawLister::S3));
            #[cfg(feature = "azure")]
            let lister = lister.or_else(|| {
                (config.kind == StoreKind::Azure)
                    .then(|| crate::azure_list::AzureLister::new(&config))
                    .flatten()
                    .map(|l| RawLister::Azure(Arc::new(l)))
            });
            #[cfg(feature = "gcs")]
            let lister = lister.or_else(|| {
                (config.kind == StoreKind::Gcs)
                    .then(|| crate::gcs_list::GcsLister::new(&config))
                    .flatten()
                    .map(|l| RawLister::Gcs(Arc::new(l)))
            });
            lister
        };
        S3Client {
            store,
            #[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
            raw_lister,
            big_copy,
            etag_not_md5: Arc::new(AtomicBool::new(false)),
            upload_budget: Arc::new(Semaphore::new(config.upload_buffer.clamp(1, MAX_BUDGET))),
            aborts: TaskTracker::new(),
            copy_source_checked: Arc::new(tokio::sync::OnceCell::new()),
            config: Arc::new(config),
        }
    }

    /// Whether single-part ETags are taken for the content's MD5: the configured
    /// [`S3Config::etag_is_md5`], until an upload showed otherwise.
    pub fn etag_is_md5(&self) -> bool {
        self.config.etag_is_md5 && !self.etag_not_md5.load(Ordering::Relaxed)
    }

    /// Checks the ETag of a single PUT against the MD5 of what was sent: one that has an
    /// MD5's form but another value turns [`Self::etag_is_md5`] off for good.
    fn check_put_etag(&self, etag: Option<&str>, md5: &[u8; 16]) {
        if !self.etag_is_md5() {
            return;
        }
        if let Some(ContentHash::Md5(listed)) = etag.and_then(md5_of_etag)
            && &listed != md5
            && !self.etag_not_md5.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                client = %self,
                "this bucket's ETags are not MD5s of the content (SSE-KMS or SSE-C \
                 encryption?): they are no longer taken for hashes; set \
                 SYNCENGINE_S3_ETAG_IS_MD5=0 (S3Builder::with_etag_is_md5(false)) to say so \
                 from the start"
            );
        }
    }

    /// Returns the configuration this client was built with.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// Returns the underlying object_store client (for embedders that need more).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn backend_name(&self) -> &'static str {
        self.config.kind.backend()
    }

    fn err(&self, path: &RelPath, e: object_store::Error) -> Error {
        StoreError::Store(e).into_core(self.backend_name(), path.as_str())
    }

    /// The object key of `path`: `prefix/path`, parsed raw (never percent-encoded).
    fn key(&self, path: &RelPath) -> Result<Path> {
        let rel = self.encode(path.as_str());
        let full = if self.config.prefix.is_empty() {
            rel.into_owned()
        } else {
            format!("{}/{}", self.config.prefix, rel)
        };
        Path::parse(&full).map_err(|e| {
            StoreError::Store(object_store::Error::InvalidPath { source: e })
                .into_core(self.backend_name(), path.as_str())
        })
    }

    fn encode<'a>(&self, rel: &'a str) -> std::borrow::Cow<'a, str> {
        if self.config.encode_backslash {
            encode_backslash(rel)
        } else {
            rel.into()
        }
    }

    fn entry(&self, path: RelPath, meta: &ObjectMeta, attrs: Option<&Attributes>) -> Entry {
        let mut e = Entry::new(path, meta.size);
        let mtime = attrs
            .and_then(mtime::from_attributes)
            .unwrap_or_else(|| whole_seconds(meta.last_modified.into()));
        e = e.with_mtime(mtime);
        if let Some(tag) = &meta.e_tag {
            if self.etag_is_md5()
                && let Some(h) = md5_of_etag(tag)
            {
                e = e.with_hash(h);
            }
            e = e.with_etag(normalize_etag(tag));
        }
        e
    }

    /// HEAD that also returns the object's metadata (GET with `head: true`).
    async fn head_with_attrs(&self, key: &Path) -> object_store::Result<(ObjectMeta, Attributes)> {
        let r = self
            .store
            .get_opts(
                key,
                GetOptions {
                    head: true,
                    ..GetOptions::default()
                },
            )
            .await?;
        Ok((r.meta, r.attributes))
    }

    async fn stat_key(&self, path: &RelPath, key: &Path) -> Result<Entry> {
        if self.config.mtime_from_metadata {
            let (meta, attrs) = self
                .head_with_attrs(key)
                .await
                .map_err(|e| self.err(path, e))?;
            Ok(self.entry(path.clone(), &meta, Some(&attrs)))
        } else {
            let meta = self.store.head(key).await.map_err(|e| self.err(path, e))?;
            Ok(self.entry(path.clone(), &meta, None))
        }
    }

    /// Fails unless `mode` allows writing `key` now. Used for multipart uploads, where
    /// object_store has no conditional complete: a best-effort check, racy by a few requests.
    async fn check_mode(&self, path: &RelPath, key: &Path, mode: &WriteMode) -> Result<()> {
        let backend = self.backend_name();
        match mode {
            WriteMode::Create => match self.store.head(key).await {
                Ok(_) => Err(Error::already_exists(backend, path.as_str())),
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.err(path, e)),
            },
            WriteMode::Update(etag) => match self.store.head(key).await {
                Ok(meta)
                    if meta.e_tag.as_deref().map(normalize_etag).as_deref()
                        == Some(etag.as_str()) =>
                {
                    Ok(())
                }
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {
                    Err(Error::precondition_failed(backend, path.as_str()))
                }
                Err(e) => Err(self.err(path, e)),
            },
            _ => Ok(()),
        }
    }

    /// True when S3 answers a HEAD of `key` with "not found" (only S3: a create-only PUT
    /// refused there without an object is a filer's folder; see `write_opts`).
    async fn object_absent(&self, key: &Path) -> bool {
        self.config.kind == StoreKind::S3
            && matches!(
                self.store.head(key).await,
                Err(object_store::Error::NotFound { .. })
            )
    }

    fn put_mode(mode: &WriteMode) -> PutMode {
        match mode {
            WriteMode::Create => PutMode::Create,
            WriteMode::Update(etag) => PutMode::Update(UpdateVersion {
                e_tag: Some(etag.clone()),
                version: None,
            }),
            _ => PutMode::Overwrite,
        }
    }

    async fn copy_impl(&self, from: &RelPath, to: &RelPath, overwrite: bool) -> Result<Entry> {
        let fk = self.key(from)?;
        let tk = self.key(to)?;
        let mode = if overwrite {
            CopyMode::Overwrite
        } else if self.config.kind == StoreKind::S3 {
            // S3 has no conditional CopyObject; object_store's emulation (a multipart copy)
            // would turn the MD5 ETag into a `-1` ETag. Check, then copy: racy by one request.
            match self.store.head(&tk).await {
                Ok(_) => return Err(Error::already_exists(self.backend_name(), to.as_str())),
                Err(object_store::Error::NotFound { .. }) => CopyMode::Overwrite,
                Err(e) => return Err(self.err(to, e)),
            }
        } else {
            CopyMode::Create
        };
        #[cfg(feature = "s3")]
        if let Some(big) = &self.big_copy {
            // CopyObject stops at 5 GiB: bigger objects (moves, the trash) go in parts.
            let (meta, attributes) = self
                .head_with_attrs(&fk)
                .await
                .map_err(|e| self.err(from, e))?;
            if meta.size > big.threshold {
                big.copy(&fk, &tk, meta.size, meta.e_tag.as_deref(), attributes)
                    .await
                    .map_err(|e| self.err(from, e))?;
                return self.stat_key(to, &tk).await;
            }
        }
        let result = self
            .store
            .copy_opts(&fk, &tk, CopyOptions::new().with_mode(mode))
            .await;
        match result {
            Ok(()) => {}
            Err(e @ object_store::Error::AlreadyExists { .. }) => return Err(self.err(to, e)),
            Err(e) => return Err(self.err(from, e)),
        }
        self.stat_key(to, &tk).await
    }

    /// True when `other` reaches the same S3 endpoint and region with the same access key
    /// (signed requests only): a `CopyObject` from its bucket, signed with this client's
    /// key, reads nothing that key could not read through `other`.
    #[cfg(feature = "s3")]
    fn same_store_as(&self, other: &S3Client) -> bool {
        let (a, b) = (&*self.config, &*other.config);
        a.kind == StoreKind::S3
            && b.kind == StoreKind::S3
            && !a.skip_signature
            && !b.skip_signature
            // Both `None`: AWS itself, one region.
            && a.endpoint == b.endpoint
            && a.region == b.region
            // Keys given: the shared profile's credential sources are not used (see the
            // builder), so a client made from the environment (the CLI's) qualifies too.
            && a.access_key_id.is_some()
            && a.access_key_id == b.access_key_id
    }

    /// [`StorageClient::copy_from_same_store`] on S3: a `CopyObject` from `source`'s bucket,
    /// of the listed version only, with the write's mtime metadata and its mode checked as a
    /// multipart write checks it (a HEAD before) and also sent as a condition the server
    /// checks where it can. `Ok(None)` whenever that is not possible or the server declines.
    #[cfg(feature = "s3")]
    async fn copy_within_store(
        &self,
        source: &dyn StorageClient,
        from: &RelPath,
        listed: &Entry,
        to: &RelPath,
        opts: &WriteOptions,
    ) -> Result<Option<Entry>> {
        let Some(big) = &self.big_copy else {
            return Ok(None);
        };
        let Some(other) = source.as_any().and_then(|a| a.downcast_ref::<S3Client>()) else {
            return Ok(None);
        };
        let Some(e_tag) = listed.etag.as_deref() else {
            return Ok(None);
        };
        if !self.same_store_as(other) || listed.size > crate::config::COPY_OBJECT_LIMIT {
            return Ok(None);
        }
        let opts = checked_by_etag(self, to, opts.clone()).await?;
        let condition = match &opts.mode {
            WriteMode::Overwrite => None,
            WriteMode::Create => Some((http::header::IF_NONE_MATCH, "*".to_owned())),
            WriteMode::Update(etag) => Some((http::header::IF_MATCH, etag.clone())),
            _ => return Ok(None),
        };
        let fk = other.key(from)?;
        let tk = self.key(to)?;
        if !self
            .honours_copy_source_condition(big, &other.config.bucket, &fk)
            .await
        {
            return Ok(None);
        }
        self.check_mode(to, &tk, &opts.mode).await?;
        let meta: Vec<(&str, String)> = opts
            .mtime
            .map(|t| (mtime::MTIME_KEY, mtime::format(StoreKind::S3, t)))
            .into_iter()
            .collect();
        let copied = big
            .copy_object(
                &other.config.bucket,
                &fk,
                &tk,
                &normalize_etag(e_tag),
                content_type(to),
                &meta,
                condition,
            )
            .await
            .map_err(|e| other.err(from, e))?;
        let new_etag = match copied {
            crate::big_copy::Copied::Yes(etag) => etag,
            crate::big_copy::Copied::ConditionFailed(why)
            | crate::big_copy::Copied::Declined(why) => {
                // A changed source, a target that appeared, a header the server lacks: the
                // streamed write decides, with its own checks.
                tracing::debug!(from = %from, to = %to, %why, "server-side copy declined; streaming");
                return Ok(None);
            }
        };
        // A plain MD5 ETag is the content's digest, in the copy as in the source: one that
        // differs means another version was copied, whatever the server said of the condition.
        if let Some(tag) = &new_etag
            && self.etag_is_md5()
            && let (Some(copied), Some(wanted)) = (md5_of_etag(tag), md5_of_etag(e_tag))
            && copied != wanted
        {
            return Err(Error::other(
                self.backend_name(),
                to.as_str(),
                format!(
                    "the server-side copy of {from} is not the version listed: it changed during the copy; the next run copies it again"
                ),
            ));
        }
        let mut e = Entry::new(to.clone(), listed.size);
        if let Some(h) = listed.hash.clone() {
            e = e.with_hash(h);
        }
        if let Some(tag) = new_etag {
            if e.hash.is_none()
                && self.etag_is_md5()
                && let Some(h) = md5_of_etag(&tag)
            {
                e = e.with_hash(h);
            }
            e = e.with_etag(normalize_etag(&tag));
        }
        if self.config.mtime_from_metadata {
            e = e.with_mtime(
                opts.mtime
                    .unwrap_or_else(|| whole_seconds(SystemTime::now())),
            );
        }
        Ok(Some(e))
    }

    /// The temp-named objects at the root (the leftovers of copy probes, see
    /// [`Self::honours_copy_source_condition`]) older than the clean-up's age: removed, or
    /// listed on a dry run.
    #[cfg(feature = "s3")]
    async fn clean_up_probes(
        &self,
        opts: &CleanupOptions,
        report: &mut CleanupReport,
    ) -> Result<()> {
        use syncengine_core::cleanup::{Leftover, LeftoverKind};
        let backend = self.backend_name();
        let root =
            (!self.config.prefix.is_empty()).then(|| Path::from(self.config.prefix.as_str()));
        let listed = self
            .store
            .list_with_delimiter(root.as_ref())
            .await
            .map_err(|e| StoreError::Store(e).into_core(backend, ""))?;
        let now = SystemTime::now();
        for object in listed.objects {
            let Some(name) = object.location.filename() else {
                continue;
            };
            let started = SystemTime::from(object.last_modified);
            if !syncengine_core::ignore_rules::is_temp_file_name(name)
                || !now
                    .duration_since(started)
                    .is_ok_and(|age| age > opts.older_than)
            {
                continue;
            }
            let leftover = Leftover::new(
                LeftoverKind::TempFile,
                format!("s3://{}/{}", self.config.bucket, object.location),
                Some(started),
            );
            if opts.dry_run {
                report.found.push(leftover);
                continue;
            }
            match self.store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => report.found.push(leftover),
                Err(e) => {
                    let e = StoreError::Store(e).into_core(backend, object.location.as_ref());
                    report.failed.push((leftover, e.to_string()));
                }
            }
        }
        Ok(())
    }

    /// True when this endpoint refuses a `CopyObject` whose source is not the version
    /// named: without that, a file changed since the listing would be copied unchecked, so
    /// the engine streams (and verifies) instead. Found out once per client, by copying
    /// `from` under a wrong `x-amz-copy-source-if-match` to a temp name of this root, which
    /// must fail with 412; a copy the server makes anyway is deleted at once (a run killed in
    /// between leaves a temp-named object, which `cleanup` removes). A failed probe (the
    /// source gone, a lost connection) is not remembered: this file streams and the next
    /// copy asks again.
    #[cfg(feature = "s3")]
    async fn honours_copy_source_condition(
        &self,
        big: &BigCopy,
        source_bucket: &str,
        from: &Path,
    ) -> bool {
        let probe = self
            .copy_source_checked
            .get_or_try_init(|| async {
                let name = syncengine_core::ignore_rules::temp_file_name(rand::random::<u64>());
                let rel = RelPath::new(name).map_err(|_| ())?;
                let key = self.key(&rel).map_err(|_| ())?;
                let copied = big
                    .copy_object(
                        source_bucket,
                        from,
                        &key,
                        "\"00000000000000000000000000000000\"",
                        "application/octet-stream",
                        &[],
                        None,
                    )
                    .await;
                match copied {
                    Ok(crate::big_copy::Copied::ConditionFailed(_)) => Ok(true),
                    Ok(crate::big_copy::Copied::Declined(why)) => {
                        tracing::debug!(%why, "server-side copies declined; streaming");
                        Ok(false)
                    }
                    Ok(crate::big_copy::Copied::Yes(_)) => {
                        tracing::debug!(
                            "the server ignores x-amz-copy-source-if-match; streaming copies"
                        );
                        if let Err(e) = self.store.delete(&key).await {
                            tracing::warn!(key = %key, error = %e, "could not remove a copy probe; `syncengine cleanup` removes it");
                        }
                        Ok(false)
                    }
                    Err(_) => Err(()),
                }
            })
            .await;
        matches!(probe, Ok(true))
    }

    /// True when `copy` (the target of a copy, as stat'ed) is the version `source` was: same
    /// size, and the same MD5 where both ETags are MD5s (S3 single-part objects). Other ETags
    /// differ between an object and its copy by design (Azure, GCS, multipart).
    fn copied_version(&self, source: &ObjectMeta, copy: &Entry) -> bool {
        if source.size != copy.size {
            return false;
        }
        if !self.etag_is_md5() {
            return true;
        }
        let source_md5 = source.e_tag.as_deref().and_then(md5_of_etag);
        let copy_md5 = copy.etag.as_deref().and_then(md5_of_etag);
        match (source_md5, copy_md5) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// After a copy onto `to` failed: the object at `to`, when it is the copy of `source`
    /// that the failed request made after all (its answer lost). Only where both ETags are
    /// MD5s and equal (S3 single-part objects): the same size alone could be another
    /// object, and taking it for the copy would delete the only copy of the source.
    async fn landed_copy(&self, to: &RelPath, source: &ObjectMeta) -> Option<Entry> {
        let source_md5 = source.e_tag.as_deref().and_then(md5_of_etag)?;
        if !self.etag_is_md5() {
            return None;
        }
        let key = self.key(to).ok()?;
        let copy = self.stat_key(to, &key).await.ok()?;
        let copy_md5 = copy.etag.as_deref().and_then(md5_of_etag)?;
        (copy.size == source.size && copy_md5 == source_md5).then(|| {
            tracing::info!(path = %to, "the copy failed but is in place (its answer was lost); the rename goes on");
            copy
        })
    }

    /// Deletes `key` only if it is still `version` (the version a rename just copied), so a
    /// version another machine uploaded since stays. Fails with [`Error::PreconditionFailed`]
    /// and deletes nothing when the object changed. A missing object is `Ok` (already gone).
    ///
    /// A HEAD first (also for S3 servers that ignore the condition); then, on S3, a
    /// `DeleteObject` with `If-Match` (object_store has no conditional delete). Azure, GCS and
    /// S3 servers that answer the condition with 501 get an unconditional delete after the
    /// HEAD, which leaves a window of one request.
    ///
    /// A failure says whether the server *refused* the delete (answered it with an error
    /// status, so the object stays as it was and no request of this delete can still land):
    /// see [`NotDeleted`].
    async fn delete_version(
        &self,
        path: &RelPath,
        key: &Path,
        version: &ObjectMeta,
    ) -> std::result::Result<(), NotDeleted> {
        let failed = |error| NotDeleted {
            error,
            refused: false,
        };
        let changed = || {
            failed(Error::precondition_failed(
                self.backend_name(),
                path.as_str(),
            ))
        };
        match self.store.head(key).await {
            Ok(now) if same_meta(&now, version) => {}
            Ok(_) => return Err(changed()),
            Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(failed(self.err(path, e))),
        }
        #[cfg(feature = "s3")]
        if let (Some(big), Some(tag)) = (&self.big_copy, version.e_tag.as_deref()) {
            use crate::big_copy::Deleted;
            match big.delete_if_match(key, tag).await {
                Ok(Deleted::Yes) => return Ok(()),
                Ok(Deleted::Changed) => return Err(changed()),
                Ok(Deleted::Unsupported) => {}
                Ok(Deleted::Refused(e)) => {
                    return Err(NotDeleted {
                        error: self.err(path, e),
                        refused: true,
                    });
                }
                Err(e) => return Err(failed(self.err(path, e))),
            }
        }
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            // object_store retries on its own: an earlier attempt may still land.
            Err(e) => Err(failed(self.err(path, e))),
        }
    }

    /// Removes `copy` (at `copy_key`), the copy a rename made of `from` before the server
    /// refused to delete `from`: the rename then leaves nothing behind, as if it had not
    /// begun, and a retry (or the next run) copies afresh. Without this, each retry found its
    /// own copy in the way of the trash path and made another one under the next free name.
    ///
    /// Only while `from` is still exactly `version`, the version copied (else the copy may be
    /// the last of that version, and stays); the copy itself is deleted only while it is the
    /// one this rename made (`If-Match` on its ETag, where the server supports it). Best
    /// effort: a failure is logged, and the copy stays (an extra, never a loss).
    async fn drop_own_copy(
        &self,
        from: &RelPath,
        from_key: &Path,
        version: &ObjectMeta,
        copy: &Entry,
        copy_key: &Path,
    ) {
        match self.store.head(from_key).await {
            Ok(now) if same_meta(&now, version) => {}
            _ => return,
        }
        #[cfg(feature = "s3")]
        if let (Some(big), Some(tag)) = (&self.big_copy, copy.etag.as_deref()) {
            use crate::big_copy::Deleted;
            match big.delete_if_match(copy_key, tag).await {
                // Gone, or not the copy made here any more: nothing to remove.
                Ok(Deleted::Yes | Deleted::Changed) => return,
                Ok(Deleted::Unsupported) => {}
                Ok(Deleted::Refused(e)) | Err(e) => {
                    tracing::warn!(path = %copy.path, source = %from, error = %e, "could not remove the copy a failed rename made; it stays");
                    return;
                }
            }
        }
        if let Err(e) = self.store.delete(copy_key).await {
            tracing::warn!(path = %copy.path, source = %from, error = %e, "could not remove the copy a failed rename made; it stays");
        }
    }
}

/// True when `now` is the same version of an object as `then` (ETag, size and time).
fn same_meta(now: &ObjectMeta, then: &ObjectMeta) -> bool {
    now.e_tag == then.e_tag && now.size == then.size && now.last_modified == then.last_modified
}

/// A failed [`S3Client::delete_version`].
struct NotDeleted {
    /// The error to report.
    error: Error,
    /// The server answered the delete with an error status: the object is as it was, and no
    /// request of this delete is left that could still land.
    refused: bool,
}

/// An in-progress multipart upload that aborts itself when dropped unfinished (a failed or
/// cancelled write), so no orphaned parts stay behind.
struct Multipart {
    upload: Option<Box<dyn MultipartUpload>>,
    /// Where the abort of a dropped upload is tracked (the client's).
    aborts: TaskTracker,
    tasks: JoinSet<object_store::Result<()>>,
    in_flight: usize,
}

impl Multipart {
    /// Starts uploading `part`; `permit` (its share of the upload budget) is released when
    /// the part is uploaded.
    async fn put_part(
        &mut self,
        part: PutPayload,
        permit: Option<OwnedSemaphorePermit>,
    ) -> object_store::Result<()> {
        while self.tasks.len() >= self.in_flight {
            self.join_one().await?;
        }
        if let Some(upload) = self.upload.as_mut() {
            let put = upload.put_part(part);
            self.tasks.spawn(async move {
                let r = put.await;
                drop(permit);
                r
            });
        }
        Ok(())
    }

    async fn join_one(&mut self) -> object_store::Result<()> {
        match self.tasks.join_next().await {
            Some(Ok(r)) => r,
            Some(Err(join)) => Err(object_store::Error::JoinError { source: join }),
            None => Ok(()),
        }
    }

    async fn finish(&mut self) -> object_store::Result<object_store::PutResult> {
        while !self.tasks.is_empty() {
            self.join_one().await?;
        }
        let Some(upload) = self.upload.as_mut() else {
            return Err(object_store::Error::Generic {
                store: "multipart",
                source: "upload already finished".into(),
            });
        };
        let result = upload.complete().await?;
        self.upload = None; // completed: nothing to abort any more
        Ok(result)
    }

    async fn abort(&mut self) {
        self.tasks.abort_all();
        if let Some(mut upload) = self.upload.take()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(error = %e, "aborting a multipart upload failed; parts may remain");
        }
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        self.tasks.abort_all();
        if let Some(mut upload) = self.upload.take() {
            // Tracked, so the client's `settle` (which the engine awaits before a run returns)
            // can wait for it: a program that exits right after a cancelled run would
            // otherwise drop it unsent, and the parts would stay stored.
            remove_in_background(
                "a cancelled multipart upload",
                self.aborts.track_future(async move {
                    match upload.abort().await {
                        Ok(()) => tracing::debug!("aborted a cancelled multipart upload"),
                        Err(e) => tracing::warn!(
                            error = %e,
                            "aborting a cancelled multipart upload failed; `syncengine \
                             cleanup` removes it later"
                        ),
                    }
                }),
            );
        }
    }
}

/// Takes exactly `size` bytes off the front of `pending` (which holds at least that many).
fn take_part(
    pending: &mut std::collections::VecDeque<Bytes>,
    buffered: &mut usize,
    size: usize,
) -> PutPayload {
    let mut parts = Vec::new();
    let mut need = size;
    while need > 0 {
        let Some(mut front) = pending.pop_front() else {
            break;
        };
        if front.len() > need {
            let rest = front.split_off(need);
            pending.push_front(rest);
        }
        need -= front.len();
        parts.push(front);
    }
    *buffered -= size - need;
    parts.into_iter().collect()
}

/// The Content-Type an upload of `path` carries, from its file name's extension
/// (`index.html` → `text/html`); `application/octet-stream` when unknown.
fn content_type(path: &RelPath) -> &'static str {
    mime_guess::from_path(path.as_str())
        .first_raw()
        .unwrap_or("application/octet-stream")
}

/// Why a key (relative to the root, backslashes decoded) cannot be a path here, if it cannot.
fn odd_key(rel: &str) -> Option<String> {
    if rel.starts_with('/') {
        return Some("its key has a `/` right after the root's prefix".into());
    }
    if rel.split('/').any(str::is_empty) {
        return Some("its key has an empty segment (`//`)".into());
    }
    if rel.split('/').any(|s| s == "." || s == "..") {
        return Some("its key has a `.` or `..` segment".into());
    }
    if rel.chars().any(char::is_control) {
        return Some("its key has a control character".into());
    }
    RelPath::new(rel)
        .err()
        .map(|e| format!("its key is not a valid path: {e}"))
}

/// A listing from raw keys ([`crate::raw_list`], [`crate::azure_list`], [`crate::gcs_list`]): a zero-byte key ending in `/` is a
/// folder marker and left out (the root's own included); a key that cannot be a path here
/// (see [`odd_key`], and an object with content whose key ends in `/`) is reported as an
/// unknown path under its own name, where it sorts, and the listing goes on: it is never
/// read as another path (`a//b` is not `a/b`). Everything else lists as a file. An S3
/// listing is split by folder and listed `concurrency` folders at a time when that is more
/// than 1 (see [`crate::split_list`]); Azure and GCS list one page after another.
#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
fn raw_metas(
    raw: crate::raw_list::RawLister,
    backend: &'static str,
    request_prefix: String,
    strip: String,
    decode: bool,
    concurrency: usize,
) -> futures::stream::BoxStream<'static, Result<Option<(RelPath, ObjectMeta)>>> {
    #[cfg(feature = "s3")]
    if let crate::raw_list::RawLister::S3(s3) = &raw
        && concurrency > 1
    {
        let pages = crate::split_list::split_listing(s3.clone(), request_prefix, concurrency)
            .map_err(move |e| StoreError::Store(e).into_core(backend, ""));
        return raw_objects(pages.boxed(), backend, strip, decode);
    }
    #[cfg(not(feature = "s3"))]
    let _ = concurrency;
    // (next token, done)
    let pages = stream::try_unfold((None::<String>, false), move |(token, done)| {
        let raw = raw.clone();
        let request_prefix = request_prefix.clone();
        async move {
            if done {
                return Ok(None);
            }
            let page = raw
                .page(&request_prefix, token.as_deref())
                .await
                .map_err(|e| StoreError::Store(e).into_core(backend, ""))?;
            let done = page.next.is_none();
            Ok::<_, Error>(Some((page.objects, (page.next, done))))
        }
    });
    raw_objects(pages.boxed(), backend, strip, decode)
}

/// The entries of raw listed objects, in batches (see [`raw_metas`]).
#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
fn raw_objects(
    pages: futures::stream::BoxStream<'static, Result<Vec<crate::raw_list::RawObject>>>,
    backend: &'static str,
    strip: String,
    decode: bool,
) -> futures::stream::BoxStream<'static, Result<Option<(RelPath, ObjectMeta)>>> {
    pages
        .map_ok(|objects| stream::iter(objects.into_iter().map(Ok::<_, Error>)))
        .try_flatten()
        .map(move |item| {
            let object = item?;
            let key = object.key.as_str();
            let Some(rel_raw) = key.strip_prefix(strip.as_str()) else {
                return Err(StoreError::BadKey {
                    key: key.to_owned(),
                    reason: "outside the client's prefix".into(),
                }
                .into_core(backend, ""));
            };
            if rel_raw.is_empty() || rel_raw.ends_with('/') {
                if object.size == 0 {
                    // A folder marker: not a file.
                    return Ok(None);
                }
                let why = "an object with content whose key ends in `/` (a folder's name)";
                return Err(if rel_raw.is_empty() {
                    Error::unlisted_contents(backend, "", why)
                } else {
                    Error::unlisted(backend, rel_raw, why)
                });
            }
            if object.lossy {
                return Err(Error::unlisted(
                    backend,
                    rel_raw,
                    "the server sent this name with U+FFFD in place of a character its listing \
                     cannot carry, so the stored name is not known; the object is left alone",
                ));
            }
            let rel = if decode {
                decode_backslash(rel_raw)
            } else {
                rel_raw.into()
            };
            if let Some(why) = odd_key(&rel) {
                tracing::warn!(key, reason = %why, "skipping an object key that cannot be a path");
                return Err(Error::unlisted(
                    backend,
                    rel_raw,
                    format!("{why}; the object is left alone"),
                ));
            }
            let location = match Path::parse(key) {
                Ok(p) if p.as_ref() == key => p,
                _ => {
                    return Err(Error::unlisted(
                        backend,
                        rel_raw,
                        "its key is not a valid object path; the object is left alone",
                    ));
                }
            };
            let rel = RelPath::new(rel.into_owned()).map_err(|e| {
                StoreError::BadKey {
                    key: key.to_owned(),
                    reason: e.to_string(),
                }
                .into_core(backend, "")
            })?;
            let meta = ObjectMeta {
                location,
                last_modified: object.last_modified,
                size: object.size,
                e_tag: object.e_tag,
                version: None,
            };
            Ok(Some((rel, meta)))
        })
        .boxed()
}

impl S3Client {
    /// For Azure and GCS configured with no credentials at all: what object_store falls back
    /// to, and how to give credentials instead. `None` when any were given.
    fn no_credentials_hint(&self) -> Option<&'static str> {
        let c = &self.config;
        match c.kind {
            StoreKind::Azure
                if c.secret_access_key.is_none()
                    && c.session_token.is_none()
                    && !c.use_azure_cli
                    && c.msi_endpoint.is_none()
                    && c.client_id.is_none()
                    && c.federated_token_file.is_none()
                    && !c.use_emulator
                    && !c.skip_signature =>
            {
                Some(
                    "No Azure credentials were given (no AZURE_STORAGE_ACCOUNT_KEY, \
                     AZURE_STORAGE_SAS_TOKEN, AZURE_USE_AZURE_CLI, service principal or \
                     workload identity), so a managed identity was asked of the instance \
                     metadata service, as on an Azure VM. Fix: set AZURE_STORAGE_ACCOUNT_KEY \
                     or AZURE_STORAGE_SAS_TOKEN, or run `az login` and set \
                     AZURE_USE_AZURE_CLI=true (see docs/backends/azure.md).",
                )
            }
            StoreKind::Gcs
                if c.service_account_path.is_none()
                    && c.service_account_key.is_none()
                    && c.application_credentials.is_none()
                    && !c.skip_signature =>
            {
                Some(
                    "No Google credentials were given (no GOOGLE_APPLICATION_CREDENTIALS or \
                     GOOGLE_SERVICE_ACCOUNT, and no gcloud application default credentials \
                     file), so the metadata server was asked, as on a GCE VM. Fix: set \
                     GOOGLE_APPLICATION_CREDENTIALS to a service account key, or run `gcloud \
                     auth application-default login` (see docs/backends/gcs.md).",
                )
            }
            _ => None,
        }
    }
}

/// Whether an error text is about a request to the cloud's instance metadata service.
fn mentions_instance_metadata(text: &str) -> bool {
    text.contains("169.254.169.254") || text.contains("metadata.google.internal")
}

#[async_trait]
impl StorageClient for S3Client {
    fn backend(&self) -> &'static str {
        self.backend_name()
    }

    /// `<scheme>://<endpoint host:port>/<bucket>/<prefix>` (Azure: the account before the
    /// container). Without an endpoint, the cloud's own host: `s3.<region>.amazonaws.com`,
    /// `<account>.blob.core.windows.net` (or Azurite's), `storage.googleapis.com`. No
    /// credentials: a rotated key is the same storage.
    async fn location(&self) -> Result<Location> {
        let c = &self.config;
        let authority = match (&c.endpoint, c.kind) {
            (Some(endpoint), _) => endpoint_authority(endpoint),
            (None, StoreKind::S3) => format!(
                "s3.{}.amazonaws.com:443",
                c.region.as_deref().unwrap_or("us-east-1")
            ),
            (None, StoreKind::Azure) if c.use_emulator => "127.0.0.1:10000".to_owned(),
            (None, StoreKind::Azure) => format!(
                "{}.blob.core.windows.net:443",
                c.access_key_id.as_deref().unwrap_or_default()
            ),
            (None, StoreKind::Gcs) => "storage.googleapis.com:443".to_owned(),
        };
        let account = match (c.kind, c.access_key_id.as_deref()) {
            (StoreKind::Azure, Some(account)) => account.to_owned(),
            (StoreKind::Azure, None) if c.use_emulator => "devstoreaccount1".to_owned(),
            _ => String::new(),
        };
        Ok(Location::new(
            c.kind.scheme(),
            authority,
            format!("{account}/{}/{}", c.bucket, c.prefix),
        ))
    }

    /// The default check (the first item of the root's listing), with the cause and the fix
    /// spelled out when Azure or GCS were given no credentials at all and the token request
    /// their fallback makes (a managed identity, the metadata server) failed: without this
    /// the user reads only about a request to 169.254.169.254.
    async fn check_access(&self) -> Result<()> {
        check_access_by_listing(self)
            .await
            .map_err(|e| match self.no_credentials_hint() {
                Some(hint) if mentions_instance_metadata(&e.to_string()) => {
                    Error::other(self.backend_name(), "", format!("{hint} That failed: {e}"))
                }
                _ => e,
            })
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    async fn copy_from_same_store(
        &self,
        source: &dyn StorageClient,
        from: &RelPath,
        listed: &Entry,
        to: &RelPath,
        opts: &WriteOptions,
    ) -> Result<Option<Entry>> {
        #[cfg(feature = "s3")]
        {
            self.copy_within_store(source, from, listed, to, opts).await
        }
        #[cfg(not(feature = "s3"))]
        {
            let _ = (source, from, listed, to, opts);
            Ok(None)
        }
    }

    fn capabilities(&self) -> Capabilities {
        let c = &self.config;
        let mut caps = Capabilities::default();
        // Names stored with `\` encoded (`＼`, `‛＼`) list in the order of their encoded
        // keys, which is not the order of the decoded paths (`a＼b` after `a]`, `a\b` before
        // it): such a listing is never claimed ordered, and the engine sorts it.
        caps.ordered_listing = c.ordered_listing && !c.encode_backslash;
        caps.set_mtime = c.mtime_from_metadata;
        caps.mtime_precision = if c.mtime_from_metadata {
            // rclone writes S3 times through a float64: exact to about a microsecond.
            Duration::from_micros(1)
        } else {
            Duration::from_secs(1)
        };
        caps.listed_hash = self.etag_is_md5().then_some(HashKind::Md5);
        caps.etag = true;
        // S3 single-part ETags are MD5s unless SSE-KMS/SSE-C (configured off then); multipart
        // ETags (`…-N`) never count, by their form. Azure ETags are opaque and GCS ones are
        // not MD5s for composite objects, which carry no marker: the builder keeps this off
        // for both.
        caps.etag_is_md5 = self.etag_is_md5();
        caps.server_side_copy = true;
        caps.native_rename = false;
        caps.conditional_write = true;
        // Object keys are exact byte strings: no folding, and no probe needed.
        caps.folding_known = true;
        // Each request waits a round trip on the server (SeaweedFS: about 40 ms for a
        // small PUT on a loaded 2-core machine), so 8 at once leave it idle: 10 000 small
        // files took 2.2× longer at 8 than at 64, and 256 gained nothing over 64 while
        // costing 15 MiB more (bench/s3_speed.sh). Part buffers stay within the upload
        // budget whatever the number.
        caps.preferred_transfers = Some(DEFAULT_TRANSFERS);
        caps
    }

    /// S3: the multipart uploads under the root's prefix that were started longer ago than
    /// the given age and never completed (`ListMultipartUploads`), aborted
    /// (`AbortMultipartUpload`) unless it is a dry run; and the temp-named objects at the root
    /// older than the age (copy probes a killed run left). No other object is touched. Azure
    /// and GCS: nothing (their services expire uncommitted uploads by themselves).
    async fn clean_up(&self, opts: &CleanupOptions) -> Result<CleanupReport> {
        #[cfg_attr(not(feature = "s3"), allow(unused_mut))]
        let mut report = CleanupReport::empty(opts);
        #[cfg(feature = "s3")]
        if let Some(raw) = &self.big_copy {
            use syncengine_core::cleanup::{Leftover, LeftoverKind};
            let backend = self.backend_name();
            let prefix = if self.config.prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", self.config.prefix)
            };
            let uploads = raw
                .list_uploads(&prefix)
                .await
                .map_err(|e| StoreError::Store(e).into_core(backend, ""))?;
            let now = SystemTime::now();
            for upload in uploads {
                // The server filtered by prefix; a server that ignores the filter must not
                // make another root's uploads ours.
                if !upload.key.starts_with(&prefix) {
                    continue;
                }
                let Some(started) = upload.initiated.map(SystemTime::from) else {
                    continue;
                };
                if !now
                    .duration_since(started)
                    .is_ok_and(|age| age > opts.older_than)
                {
                    continue;
                }
                let leftover = Leftover::new(
                    LeftoverKind::MultipartUpload,
                    format!(
                        "s3://{}/{} (upload {})",
                        raw.bucket, upload.key, upload.upload_id
                    ),
                    Some(started),
                );
                if opts.dry_run {
                    report.found.push(leftover);
                    continue;
                }
                match raw.abort_upload(&upload.key, &upload.upload_id).await {
                    Ok(true) => {
                        tracing::info!(location = %leftover.location, "aborted an unfinished multipart upload");
                        report.found.push(leftover);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        let e = StoreError::Store(e).into_core(backend, &upload.key);
                        report.failed.push((leftover, e.to_string()));
                    }
                }
            }
            self.clean_up_probes(opts, &mut report).await?;
        }
        Ok(report)
    }

    /// Waits for the aborts of multipart uploads whose write was dropped (see
    /// [`StorageClient::settle`]).
    async fn settle(&self, limit: Duration) {
        if self.aborts.is_empty() {
            return;
        }
        self.aborts.close();
        if tokio::time::timeout(limit, self.aborts.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pending = self.aborts.len(),
                "multipart upload aborts still running; `syncengine cleanup` removes what they leave"
            );
        }
        self.aborts.reopen();
    }

    fn list(&self, prefix: Option<&RelPath>) -> EntryStream {
        let backend = self.backend_name();
        let root = self.config.prefix.clone();
        let full = match (root.is_empty(), prefix) {
            (true, None) => None,
            (true, Some(p)) => Some(self.encode(p.as_str()).into_owned()),
            (false, None) => Some(root.clone()),
            (false, Some(p)) => Some(format!("{root}/{}", self.encode(p.as_str()))),
        };
        let list_prefix = match full.map(|f| Path::parse(&f)).transpose() {
            Ok(p) => p,
            Err(e) => {
                let err = StoreError::Store(object_store::Error::InvalidPath { source: e })
                    .into_core(backend, prefix.map(RelPath::as_str).unwrap_or(""));
                return stream::once(async move { Err(err) }).boxed();
            }
        };
        let strip = if root.is_empty() {
            String::new()
        } else {
            format!("{root}/")
        };
        let this = self.clone();
        let decode = self.config.encode_backslash;
        // Keys come raw (see [`crate::raw_list`]), so markers and keys that cannot be a
        // path here are told apart by their own names.
        #[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
        let raw = self.raw_lister.clone();
        #[cfg(not(any(feature = "s3", feature = "azure", feature = "gcs")))]
        let raw: Option<()> = None;
        let metas: futures::stream::BoxStream<'static, Result<Option<(RelPath, ObjectMeta)>>> =
            match raw {
                #[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
                Some(raw) => {
                    let request_prefix = match &list_prefix {
                        Some(p) => format!("{p}/"),
                        None => String::new(),
                    };
                    raw_metas(
                        raw,
                        backend,
                        request_prefix,
                        strip,
                        decode,
                        self.config.list_concurrency,
                    )
                }
                _ => {
                    let root_marker = root.clone();
                    self.store
                        .list(list_prefix.as_ref())
                        .map(move |item| {
                            let meta =
                                item.map_err(|e| StoreError::Store(e).into_core(backend, ""))?;
                            let key = meta.location.as_ref();
                            // The prefix's own folder marker (`root/`), parsed to `root`: not
                            // a file.
                            if !root_marker.is_empty() && key == root_marker && meta.size == 0 {
                                return Ok(None);
                            }
                            let rel = key
                                .strip_prefix(strip.as_str())
                                .ok_or_else(|| StoreError::BadKey {
                                    key: key.to_owned(),
                                    reason: "outside the client's prefix".into(),
                                })
                                .and_then(|r| {
                                    let r = if decode {
                                        decode_backslash(r)
                                    } else {
                                        r.into()
                                    };
                                    RelPath::new(r.into_owned()).map_err(|e| StoreError::BadKey {
                                        key: key.to_owned(),
                                        reason: e.to_string(),
                                    })
                                })
                                .map_err(|e| e.into_core(backend, ""))?;
                            Ok::<_, Error>(Some((rel, meta)))
                        })
                        .boxed()
                }
            };
        let metas = metas.try_filter_map(|item| futures::future::ready(Ok(item)));
        // Folder markers (`photos/`, zero bytes: the AWS and GCS consoles' "Create folder",
        // many GUIs) are not files. object_store parses keys into paths and drops the
        // trailing `/` (the raw key never reaches this crate), so a marker lists as a
        // zero-byte object named `photos`. Two checks tell it from a real empty file:
        // - a HEAD of that name: no such object means a marker (or an object deleted since
        //   it was listed, which is not there to list either);
        // - the object `photos` itself listed just before (a file next to a marker of the
        //   same name, two tools marking folders differently): see [`MarkerTwins`].
        // Objects with content are HEADed only where mtimes come from metadata.
        let with_mtime = self.config.mtime_from_metadata;
        #[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
        let raw_keys = self.raw_lister.is_some();
        #[cfg(not(any(feature = "s3", feature = "azure", feature = "gcs")))]
        let raw_keys = false;
        let mut twins = MarkerTwins::default();
        let entries: EntryStream = metas
            .map(move |item| {
                let this = this.clone();
                async move {
                    let (rel, meta) = item?;
                    let zero = meta.size == 0;
                    let listed = |e: Entry| Ok(Some((e, zero, meta.location.clone())));
                    if !with_mtime && (!zero || raw_keys) {
                        return listed(this.entry(rel, &meta, None));
                    }
                    let head = if with_mtime {
                        this.head_with_attrs(&meta.location).await.map(Some)
                    } else {
                        this.store.head(&meta.location).await.map(|_| None)
                    };
                    match head {
                        Ok(attrs) => listed(this.entry(rel, &meta, attrs.as_ref().map(|(_, a)| a))),
                        Err(object_store::Error::NotFound { .. }) if zero => Ok(None),
                        // Deleted since it was listed: report what the listing saw.
                        Err(object_store::Error::NotFound { .. }) => {
                            listed(this.entry(rel, &meta, None))
                        }
                        Err(e) => Err(this.err(&rel, e)),
                    }
                }
            })
            .buffered(METADATA_HEADS_IN_FLIGHT)
            .try_filter_map(move |item| {
                let kept = item.and_then(|(entry, zero, location)| {
                    twins.keep(location.as_ref(), zero).then_some(entry)
                });
                futures::future::ready(Ok(kept))
            })
            .boxed();
        // The contract: after the first error the stream ends (an unknown path is not one).
        entries
            .scan(false, |failed, item| {
                let out = if *failed {
                    None
                } else {
                    *failed = item.as_ref().is_err_and(|e| !e.is_unlisted());
                    Some(item)
                };
                futures::future::ready(out)
            })
            .boxed()
    }

    async fn stat(&self, path: &RelPath) -> Result<Entry> {
        let key = self.key(path)?;
        self.stat_key(path, &key).await
    }

    /// Listings carry the upload time; the file's own time is in its `mtime` metadata, read
    /// here with one HEAD (only for files the engine copies or compares in a conflict).
    async fn recorded_mtime(&self, listed: &Entry) -> Result<Option<SystemTime>> {
        if self.config.mtime_from_metadata {
            return Ok(listed.mtime);
        }
        let key = self.key(&listed.path)?;
        let (meta, attrs) = self
            .head_with_attrs(&key)
            .await
            .map_err(|e| self.err(&listed.path, e))?;
        Ok(Some(mtime::from_attributes(&attrs).unwrap_or_else(|| {
            whole_seconds(meta.last_modified.into())
        })))
    }

    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        let key = self.key(path)?;
        let empty = || -> ByteStream { stream::empty().boxed() };
        let mut get = GetOptions::default();
        if let Some(r) = &opts.range {
            if r.start >= r.end {
                // object_store rejects empty ranges; the contract wants an empty read.
                self.stat_key(path, &key).await?;
                return Ok(empty());
            }
            get.range = Some(GetRange::Bounded(r.clone()));
        }
        let result = match self.store.get_opts(&key, get).await {
            Ok(r) => r,
            Err(e @ object_store::Error::NotFound { .. }) => return Err(self.err(path, e)),
            Err(e) => {
                // A range starting at or past the end is an error on the wire; clamp it.
                if let Some(r) = &opts.range
                    && let Ok(meta) = self.store.head(&key).await
                    && r.start >= meta.size
                {
                    return Ok(empty());
                }
                return Err(self.err(path, e));
            }
        };
        let backend = self.backend_name();
        let p = path.to_string();
        Ok(result
            .into_stream()
            .map_err(move |e| StoreError::Store(e).into_core(backend, &p))
            .boxed())
    }

    async fn write_opts(
        &self,
        path: &RelPath,
        mut body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        // A listing without ETags (some S3-compatible stores): checked by a HEAD, then made
        // conditional on the ETag the HEAD gave.
        let opts = checked_by_etag(self, path, opts).await?;
        let key = self.key(path)?;
        let mut attributes = opts
            .mtime
            .map(|t| mtime::attributes(self.config.kind, t))
            .unwrap_or_default();
        attributes.insert(Attribute::ContentType, content_type(path).into());
        let part_size = self.config.part_size;
        // Hash what is sent. Where the ETag is not an MD5 (Azure, GCS, multipart uploads) the
        // entry the engine records in its base then still carries the MD5, which is what
        // lets it pair a later rename of this object (those ETags do not survive a copy).
        let mut hasher = Md5::new();
        let written_entry = |meta_size: u64, etag: Option<String>, md5: [u8; 16]| {
            let mut e = Entry::new(path.clone(), meta_size).with_hash(ContentHash::Md5(md5));
            if let Some(tag) = etag {
                e = e.with_etag(normalize_etag(&tag));
            }
            if self.config.mtime_from_metadata {
                e = e.with_mtime(
                    opts.mtime
                        .unwrap_or_else(|| whole_seconds(SystemTime::now())),
                );
            }
            e
        };

        // Part buffers come out of the client's shared budget: the bytes buffered are
        // reserved before they are read (the first part: as much as the size hint says).
        let budget = self.upload_budget.clone();
        let budget_total = self.config.upload_buffer.clamp(1, MAX_BUDGET);
        let mut held: Option<OwnedSemaphorePermit> = None;
        let first = opts.size_hint.map_or(part_size, |s| {
            usize::try_from(s).unwrap_or(usize::MAX).min(part_size)
        });
        reserve(&budget, budget_total, &mut held, first).await?;

        // Buffer up to one part: a body that ends before is sent as one PUT.
        let mut pending = std::collections::VecDeque::new();
        let mut buffered = 0usize;
        let mut total = 0u64;
        while buffered <= part_size {
            match body.next().await {
                Some(Ok(chunk)) => {
                    buffered += chunk.len();
                    // Longer than the hint said: the rest of the part is reserved too.
                    reserve(&budget, budget_total, &mut held, buffered.min(part_size)).await?;
                    total += chunk.len() as u64;
                    hasher.update(&chunk);
                    if !chunk.is_empty() {
                        pending.push_back(chunk);
                    }
                }
                Some(Err(e)) => return Err(e),
                None => {
                    let payload: PutPayload = pending.into_iter().collect();
                    let put = PutOptions {
                        mode: Self::put_mode(&opts.mode),
                        attributes: attributes.clone(),
                        ..PutOptions::default()
                    };
                    let mut result = self.store.put_opts(&key, payload.clone(), put).await;
                    if matches!(result, Err(object_store::Error::AlreadyExists { .. }))
                        && matches!(opts.mode, WriteMode::Create)
                        && self.object_absent(&key).await
                    {
                        // Refused though no object has this name: SeaweedFS keeps the
                        // folder its last file left (not an object: neither listed nor
                        // found by a HEAD) and refuses a create-only PUT of the folder's
                        // name, so a folder could never become a file. The folder gives
                        // way to a plain PUT (its files, if any, stay). Racy by one request
                        // against another machine creating the same object, as the
                        // multipart check is.
                        let put = PutOptions {
                            mode: PutMode::Overwrite,
                            attributes,
                            ..PutOptions::default()
                        };
                        result = self.store.put_opts(&key, payload, put).await;
                    }
                    return match result {
                        Ok(r) => {
                            let md5: [u8; 16] = hasher.finalize().into();
                            self.check_put_etag(r.e_tag.as_deref(), &md5);
                            Ok(written_entry(total, r.e_tag, md5))
                        }
                        // If-Match on a missing object answers 404 on some servers.
                        Err(object_store::Error::NotFound { .. })
                            if matches!(opts.mode, WriteMode::Update(_)) =>
                        {
                            Err(Error::precondition_failed(
                                self.backend_name(),
                                path.as_str(),
                            ))
                        }
                        Err(e) => Err(self.err(path, e)),
                    };
                }
            }
        }

        // Multipart: at most `parts_in_flight` parts uploading plus one being filled.
        self.check_mode(path, &key, &opts.mode).await?;
        let upload = self
            .store
            .put_multipart_opts(
                &key,
                PutMultipartOptions {
                    attributes,
                    ..PutMultipartOptions::default()
                },
            )
            .await
            .map_err(|e| self.err(path, e))?;
        let mut mp = Multipart {
            upload: Some(upload),
            aborts: self.aborts.clone(),
            tasks: JoinSet::new(),
            in_flight: self.config.parts_in_flight.max(1),
        };
        let mut ended = false;
        loop {
            while buffered >= part_size || (ended && buffered > 0) {
                let size = buffered.min(part_size);
                let part = take_part(&mut pending, &mut buffered, size);
                // The part takes its share of the budget along until it is uploaded.
                let permit = match held.as_mut() {
                    Some(h) if h.num_permits() > size => h.split(size),
                    _ => held.take(),
                };
                if let Err(e) = mp.put_part(part, permit).await {
                    mp.abort().await;
                    return Err(self.err(path, e));
                }
            }
            if ended {
                break;
            }
            // The next part's buffer (what is left over from the last chunk included): a part,
            // or what the size hint says is left of the body if that is less (the 2 MiB
            // tail of a 10 MiB file held 8 MiB of the budget, and uploads waiting for it
            // each held their left-over chunk meanwhile).
            // A body already longer than its hint reserves a whole part again.
            let want = match opts.size_hint {
                Some(size) if total <= size => {
                    let left = usize::try_from(size - total).unwrap_or(usize::MAX);
                    left.saturating_add(buffered).min(part_size).max(1)
                }
                _ => part_size,
            };
            if let Err(e) = reserve(&budget, budget_total, &mut held, want).await {
                mp.abort().await;
                return Err(e);
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    buffered += chunk.len();
                    total += chunk.len() as u64;
                    hasher.update(&chunk);
                    if !chunk.is_empty() {
                        pending.push_back(chunk);
                    }
                }
                Some(Err(e)) => {
                    mp.abort().await;
                    return Err(e);
                }
                None => ended = true,
            }
        }
        // Every byte read is in a part now; the parts hold their own shares of the budget.
        drop(held.take());
        if let Err(e) = self.check_mode(path, &key, &opts.mode).await {
            mp.abort().await;
            return Err(e);
        }
        match mp.finish().await {
            Ok(r) => Ok(written_entry(total, r.e_tag, hasher.finalize().into())),
            Err(e) => {
                mp.abort().await;
                Err(self.err(path, e))
            }
        }
    }

    async fn delete_opts(&self, path: &RelPath, _opts: DeleteOptions) -> Result<()> {
        let key = self.key(path)?;
        match self.store.delete(&key).await {
            // Azure answers 404 for a missing blob; deletes are idempotent here.
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(path, e)),
        }
    }

    async fn copy_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.copy_impl(from, to, opts.overwrite).await
    }

    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        // Object stores have no rename: server-side copy, then delete the source. The delete
        // removes only the version that was copied: another machine may upload a new one in
        // between (a trash move racing an edit), and that one must stay. Then the copy is an
        // extra, and the rename fails without removing anything.
        let fk = self.key(from)?;
        let before = self.store.head(&fk).await.map_err(|e| self.err(from, e))?;
        let entry = match self.copy_impl(from, to, opts.overwrite).await {
            Ok(entry) => entry,
            Err(e @ (Error::AlreadyExists { .. } | Error::NotFound { .. })) => return Err(e),
            // The copy may have landed with its answer lost (a timeout, a dropped
            // connection): then the rename goes on from there. Left failed, its copy would
            // stay behind while the source stays too, and the next trash move would copy the
            // same version once more.
            Err(e) => match self.landed_copy(to, &before).await {
                Some(entry) => entry,
                None => return Err(e),
            },
        };
        if !self.copied_version(&before, &entry) {
            return Err(Error::precondition_failed(
                self.backend_name(),
                from.as_str(),
            ));
        }
        if let Err(failed) = self.delete_version(from, &fk, &before).await {
            if failed.refused {
                let tk = self.key(to)?;
                self.drop_own_copy(from, &fk, &before, &entry, &tk).await;
            }
            return Err(failed.error);
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_md5_detection() {
        assert!(md5_of_etag("\"9e107d9d372bb6826bd81d3542a419d6\"").is_some());
        assert!(md5_of_etag("\"9e107d9d372bb6826bd81d3542a419d6-4\"").is_none());
        assert!(md5_of_etag("\"0x8DBF1234567890A\"").is_none());
    }

    #[test]
    fn backslash_encoding_round_trips() {
        for name in ["a\\b", "plain", "x\u{FF3C}y", "\u{201B}\u{FF3C}", "\\\\"] {
            let enc = encode_backslash(name);
            assert!(!enc.contains('\\'), "{enc}");
            assert_eq!(decode_backslash(&enc), name);
        }
        assert_eq!(encode_backslash("a\\b"), "a\u{FF3C}b");
    }

    #[test]
    fn a_marker_after_its_object_is_dropped_and_nothing_else() {
        let mut t = MarkerTwins::default();
        let kept: Vec<bool> = [
            ("p/empty", true),
            ("p/empty", true), // `empty/`, marker twin of an empty file
            ("p/photos", false),
            ("p/photos-2", false),
            ("p/photos.txt", true),
            ("p/photos", true), // `photos/`, after `photos.txt`
            ("p/photos/a", true),
            ("p/photos/a", false), // a repeat with content: passed, the engine refuses it
            ("p/photosynthesis", true),
            ("p/q", true),
            ("p/photos", true), // not next to `photos` any more (out of order): passed
        ]
        .into_iter()
        .map(|(loc, zero)| t.keep(loc, zero))
        .collect();
        assert_eq!(
            kept,
            [
                true, false, true, true, true, false, true, true, true, true, true
            ]
        );
    }

    #[test]
    fn content_types_come_from_the_name() {
        let ct = |p: &str| content_type(&RelPath::new(p).unwrap());
        assert_eq!(ct("site/index.html"), "text/html");
        assert_eq!(ct("a/style.CSS"), "text/css");
        assert_eq!(ct("p.jpg"), "image/jpeg");
        assert_eq!(ct("noext"), "application/octet-stream");
        assert_eq!(ct("x.unknownext"), "application/octet-stream");
    }

    #[cfg(all(feature = "azure", feature = "gcs"))]
    #[test]
    fn a_store_given_no_credentials_explains_its_metadata_fallback() {
        let client = |url: &str, vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            crate::S3Builder::from_env_with(url, |name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
            .unwrap()
            .build()
            .unwrap()
        };
        let bare = client("az://c/p", &[("AZURE_STORAGE_ACCOUNT_NAME", "acct")]);
        assert!(
            bare.no_credentials_hint()
                .unwrap()
                .contains("AZURE_STORAGE_ACCOUNT_KEY")
        );
        let keyed = client(
            "az://c/p",
            &[
                ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
                ("AZURE_STORAGE_ACCOUNT_KEY", "a2V5"),
            ],
        );
        assert!(keyed.no_credentials_hint().is_none());
        let cli = client(
            "az://c/p",
            &[
                ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
                ("AZURE_USE_AZURE_CLI", "true"),
            ],
        );
        assert!(cli.no_credentials_hint().is_none());
        let gcs = client("gs://b/p", &[]);
        assert!(
            gcs.no_credentials_hint()
                .unwrap()
                .contains("GOOGLE_APPLICATION_CREDENTIALS")
        );
        let gcs = client("gs://b/p", &[("GOOGLE_SKIP_SIGNATURE", "true")]);
        assert!(gcs.no_credentials_hint().is_none());
        assert!(mentions_instance_metadata(
            "Error performing GET http://169.254.169.254/metadata/identity/oauth2/token"
        ));
        assert!(!mentions_instance_metadata("403 AuthorizationFailure"));
    }

    #[test]
    fn parts_are_cut_exactly() {
        let mut q: std::collections::VecDeque<Bytes> =
            [Bytes::from(vec![1u8; 7]), Bytes::from(vec![2u8; 5])]
                .into_iter()
                .collect();
        let mut buffered = 12;
        let part = take_part(&mut q, &mut buffered, 10);
        assert_eq!(part.content_length(), 10);
        assert_eq!(buffered, 2);
        assert_eq!(q.iter().map(Bytes::len).sum::<usize>(), 2);
    }
}
