//! [`MemoryClient`]: the reference implementation of [`StorageClient`] and the engine's test
//! double.
//!
//! Everything lives in one `BTreeMap` behind a mutex, so a listing is naturally in canonical
//! order and every operation is trivially atomic. The client keeps every promise of the trait
//! contract and passes the whole conformance suite; it also has a few test hooks
//! ([`MemoryClient::set_mtime`], [`MemoryClient::fail_listing_after`], [`MemoryClient::files`])
//! that let engine tests stage situations a real backend makes hard to reproduce.
//!
//! ```
//! use bytes::Bytes;
//! use syncengine_core::{MemoryClient, RelPath, StorageClientExt};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let client = MemoryClient::new();
//! let path = RelPath::new("docs/a.txt")?;
//! client.put(&path, Bytes::from("hello")).await?;
//! assert_eq!(client.read_to_bytes(&path).await?, "hello");
//! assert_eq!(client.files().len(), 1);
//! # Ok::<(), syncengine_core::Error>(())
//! # }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use md5::{Digest, Md5};

use crate::capabilities::Capabilities;
use crate::client::{
    ByteStream, DeleteOptions, EntryStream, ReadOptions, StorageClient, TransferOptions, WriteMode,
    WriteOptions,
};
use crate::entry::{ContentHash, Entry, HashKind};
use crate::error::{Error, Result};
use crate::identity::Location;
use crate::path::RelPath;

const BACKEND: &str = "memory";

/// Size of the chunks `read` yields, so readers see a real multi-chunk stream.
const READ_CHUNK: usize = 64 * 1024;

/// Source of the per-instance ids shown by `Display`.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An in-memory [`StorageClient`]: the reference implementation and the engine's test double.
///
/// # Behavior
/// - Listings are in canonical order ([`MemoryClient::new`]) or, to exercise the engine's
///   sorting path, in a scrambled but deterministic order ([`MemoryClient::unordered`]).
/// - Every write gets a fresh etag (`v<n>`, from a per-client counter) and an MD5 computed on
///   write; writes keep the given mtime at full nanosecond precision (else the time of the
///   write).
/// - `Create` and `Update(etag)` are checked and applied under one lock, so they are truly
///   conditional.
/// - A file keeps its `file_id` and birth time across renames; writes and copies make a new
///   file with a new id and a later birth time, unless the reuse switches
///   ([`MemoryClient::reuse_file_ids`], [`MemoryClient::reuse_birth_times`]) make it take those
///   of the file freed last, as filesystems reuse inodes.
/// - There are no real directories: `a/x` and `a` may both be files.
pub struct MemoryClient {
    id: u64,
    /// The name [`location`](StorageClient::location) reports; the instance id by default.
    location: Option<String>,
    ordered: bool,
    /// Refuse what a disk refuses: a file below a file, a file where a folder is.
    folders: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    files: BTreeMap<RelPath, Stored>,
    /// Counter behind etags and file ids; bumped on every write, copy and rename.
    version: u64,
    fail_listing_after: Option<usize>,
    /// Paths listings report as [`Error::Unlisted`] (test hook [`MemoryClient::set_unlisted`]).
    unlisted: BTreeMap<RelPath, String>,
    /// Identity switches (see [`MemoryClient::reuse_file_ids`]).
    identity: IdentitySwitches,
    /// Identities of deleted or replaced files, the last freed last.
    freed: Vec<(u64, Option<SystemTime>)>,
    /// The last birth time handed out, so birth times strictly increase.
    last_birth: Option<SystemTime>,
}

/// How new files get their `file_id` and birth time.
#[derive(Clone, Copy, Default)]
struct IdentitySwitches {
    reuse_file_ids: bool,
    reuse_birth_times: bool,
    no_birth_times: bool,
    webdav_like: bool,
}

#[derive(Clone)]
struct Stored {
    data: Bytes,
    mtime: SystemTime,
    etag: String,
    md5: [u8; 16],
    file_id: u64,
    birth: Option<SystemTime>,
    /// Listed like on an Apache WebDAV server (see [`MemoryClient::webdav_like_metadata`]).
    webdav_like: bool,
}

impl State {
    fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    /// The file id and birth time of a new file made at `version`.
    fn new_identity(&mut self, version: u64) -> (u64, Option<SystemTime>) {
        let switches = self.identity;
        let reused = if switches.reuse_file_ids {
            self.freed.pop()
        } else {
            None
        };
        let birth = match reused {
            Some((_, birth)) if switches.reuse_birth_times => birth,
            _ if switches.no_birth_times => None,
            _ => {
                let now = SystemTime::now();
                let birth = match self.last_birth {
                    Some(last) if now <= last => last + Duration::from_nanos(1),
                    _ => now,
                };
                self.last_birth = Some(birth);
                Some(birth)
            }
        };
        (reused.map_or(version, |(id, _)| id), birth)
    }

    /// Remembers the identity of a file that is gone (deleted, or replaced at its path).
    fn free(&mut self, stored: Option<Stored>) {
        if let Some(stored) = stored {
            self.freed.push((stored.file_id, stored.birth));
        }
    }
}

impl Stored {
    fn entry(&self, path: &RelPath) -> Entry {
        let size = self.data.len() as u64;
        let entry = Entry::new(path.clone(), size)
            .with_mtime(self.mtime)
            .with_file_id(self.file_id);
        let entry = if self.webdav_like {
            // Apache's default `FileETag MTime Size`: hex size and microseconds.
            let micros = self
                .mtime
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            entry.with_etag(format!("\"{size:x}-{micros:x}\""))
        } else {
            entry
                .with_etag(self.etag.clone())
                .with_hash(ContentHash::Md5(self.md5))
        };
        match self.birth {
            Some(birth) => entry.with_birth_time(birth),
            None => entry,
        }
    }
}

impl MemoryClient {
    /// Creates an empty client whose listings are in canonical order.
    pub fn new() -> Self {
        MemoryClient {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            location: None,
            ordered: true,
            folders: false,
            state: Mutex::new(State::default()),
        }
    }

    /// Makes writes, copies and renames refuse what a disk refuses: a file at `a/b` while
    /// `a` is a file, or a file at `a` while files exist below `a/` (an error, as a disk
    /// would give). Lets engine tests reproduce type changes (a file replaced by a folder).
    pub fn with_disk_folders(mut self) -> Self {
        self.folders = true;
        self
    }

    /// Creates an empty client that reports `ordered_listing: false` and lists in a scrambled
    /// (but deterministic) order, so tests exercise the engine's sorting path.
    pub fn unordered() -> Self {
        MemoryClient {
            ordered: false,
            ..MemoryClient::new()
        }
    }

    /// Makes [`location`](StorageClient::location) report `memory:///<name>` instead of this
    /// instance's own `memory:///<id>`: two clients with the same name stand for two
    /// storages behind the same URL (another server behind an endpoint, another disk at a
    /// mount point), which share a pair id and must be told apart by their root identity.
    pub fn with_location(mut self, name: impl Into<String>) -> Self {
        self.location = Some(name.into());
        self
    }

    /// Sets the modification time of an existing file without changing its content or etag
    /// (a `touch`).
    ///
    /// # Errors
    /// [`Error::NotFound`] when no file is at `path`.
    pub fn set_mtime(&self, path: &RelPath, mtime: SystemTime) -> Result<()> {
        let mut state = self.lock();
        match state.files.get_mut(path) {
            Some(stored) => {
                stored.mtime = mtime;
                Ok(())
            }
            None => Err(Error::not_found(BACKEND, path.as_str())),
        }
    }

    /// Sets the `file_id` and birth time an existing file lists with, without changing its
    /// content, mtime or etag: a file from another filesystem mounted at `path` that happens
    /// to carry the inode number of a file beside it.
    ///
    /// Lets tests check that an equal `file_id` alone never passes for the same file.
    ///
    /// # Errors
    /// [`Error::NotFound`] when no file is at `path`.
    pub fn set_identity(
        &self,
        path: &RelPath,
        file_id: u64,
        birth_time: Option<SystemTime>,
    ) -> Result<()> {
        let mut state = self.lock();
        match state.files.get_mut(path) {
            Some(stored) => {
                stored.file_id = file_id;
                stored.birth = birth_time;
                Ok(())
            }
            None => Err(Error::not_found(BACKEND, path.as_str())),
        }
    }

    /// Makes every later listing yield `n` entries and then an [`Error::Other`] (when `Some(n)`),
    /// or list normally again (when `None`).
    ///
    /// Lets tests check that a listing which ends early never leads to deletes.
    pub fn fail_listing_after(&self, n: Option<usize>) {
        self.lock().fail_listing_after = n;
    }

    /// Makes every later new file (a write, a copy) take the `file_id` of the file deleted or
    /// replaced last, when there is one, the way ext4 and other filesystems reuse a freed
    /// inode number (when `on`); or hand out fresh ids again (when not).
    ///
    /// Lets tests check that a reused inode alone never passes for a rename.
    pub fn reuse_file_ids(&self, on: bool) {
        self.lock().identity.reuse_file_ids = on;
    }

    /// Makes a new file that reuses a freed `file_id` (see [`MemoryClient::reuse_file_ids`])
    /// take that file's birth time too (when `on`), as on a filesystem whose birth times are
    /// too coarse to tell two files apart. Such birth times identify nothing, so the client
    /// then reports [`Capabilities::birth_time`] off although entries carry them: the engine
    /// must go by the capability, and only content can confirm a rename.
    pub fn reuse_birth_times(&self, on: bool) {
        self.lock().identity.reuse_birth_times = on;
    }

    /// Gives later new files no birth time and reports the capability off (when `on`), like
    /// a filesystem or server that keeps none.
    pub fn without_birth_times(&self, on: bool) {
        self.lock().identity.no_birth_times = on;
    }

    /// Makes files written from now on list like on an Apache WebDAV server (when `on`): with
    /// no hash and an ETag derived from size and mtime, so two different files of equal size
    /// and mtime share one. Copies and renames keep the way a file lists.
    pub fn webdav_like_metadata(&self, on: bool) {
        self.lock().identity.webdav_like = on;
    }

    /// Makes listings report `path` as a path they cannot see (a symlink, an unreadable
    /// folder…) with `reason`, hiding every file at or below it, as a real backend would
    /// (when `Some`); or lists it normally again (when `None`).
    ///
    /// The files stay stored and readable: lets tests check that an unknown path is never
    /// deleted or overwritten, on either side.
    pub fn set_unlisted(&self, path: &RelPath, reason: Option<&str>) {
        let mut state = self.lock();
        match reason {
            Some(r) => state.unlisted.insert(path.clone(), r.to_owned()),
            None => state.unlisted.remove(path),
        };
    }

    /// Returns a snapshot of every file and its content.
    pub fn files(&self) -> BTreeMap<RelPath, Bytes> {
        self.lock()
            .files
            .iter()
            .map(|(path, stored)| (path.clone(), stored.data.clone()))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock with the map half-updated (every mutation
        // is a single insert/remove), so a poisoned lock still guards consistent data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// With [`with_disk_folders`](MemoryClient::with_disk_folders), checks that a file can
    /// exist at `path`: no file at a folder above it, no files below it.
    fn check_folders(&self, state: &State, path: &RelPath) -> Result<()> {
        if !self.folders {
            return Ok(());
        }
        let p = path.as_str();
        for (i, _) in p.match_indices('/') {
            if state.files.contains_key(&p[..i]) {
                return Err(Error::other(
                    BACKEND,
                    p,
                    format!("{} is a file, not a folder", &p[..i]),
                ));
            }
        }
        let lower = format!("{p}/");
        let upper = format!("{p}0");
        if state
            .files
            .range::<str, _>((
                Bound::Included(lower.as_str()),
                Bound::Excluded(upper.as_str()),
            ))
            .next()
            .is_some()
        {
            return Err(Error::other(BACKEND, p, "a folder is in the way"));
        }
        Ok(())
    }

    /// Checks `opts.overwrite` against `to`, under the caller's lock.
    fn check_target(state: &State, to: &RelPath, opts: &TransferOptions) -> Result<()> {
        if !opts.overwrite && state.files.contains_key(to) {
            return Err(Error::already_exists(BACKEND, to.as_str()));
        }
        Ok(())
    }
}

impl Default for MemoryClient {
    fn default() -> Self {
        MemoryClient::new()
    }
}

impl fmt::Display for MemoryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemoryClient({})", self.id)
    }
}

impl fmt::Debug for MemoryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Content would drown the output; the number of files is what a reader wants.
        f.debug_struct("MemoryClient")
            .field("id", &self.id)
            .field("ordered", &self.ordered)
            .field("files", &self.lock().files.len())
            .finish()
    }
}

/// A deterministic scramble key: the MD5 of the path.
fn scramble_key(path: &str) -> [u8; 16] {
    Md5::digest(path.as_bytes()).into()
}

#[async_trait]
impl StorageClient for MemoryClient {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    /// `memory:///<id>`: every instance is a storage of its own (or `memory:///<name>`, see
    /// [`MemoryClient::with_location`]).
    async fn location(&self) -> Result<Location> {
        Ok(match &self.location {
            Some(name) => Location::new("memory", "", name),
            None => Location::new("memory", "", self.id.to_string()),
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            ordered_listing: self.ordered,
            set_mtime: true,
            mtime_precision: Duration::from_nanos(1),
            listed_hash: Some(HashKind::Md5),
            etag: true,
            // Etags are counters, not digests of the content.
            etag_is_md5: false,
            file_id: true,
            birth_time: {
                let switches = self.lock().identity;
                !switches.no_birth_times && !switches.reuse_birth_times
            },
            local_reads: true,
            server_side_copy: true,
            native_rename: true,
            conditional_write: true,
            case_insensitive: false,
            normalization_insensitive: false,
            // Keys are exact strings in a map.
            folding_known: true,
            real_directories: false,
            preferred_transfers: None,
            same_kind_transfers: None,
            // Reads cost nothing here; a test wrapper turns it on.
            parallel_reads: None,
        }
    }

    fn list(&self, prefix: Option<&RelPath>) -> EntryStream {
        let state = self.lock();
        let mut entries: Vec<Entry> = match prefix {
            None => state
                .files
                .iter()
                .map(|(path, stored)| stored.entry(path))
                .collect(),
            Some(prefix) => {
                // Everything strictly below `prefix/` sorts in ["prefix/", "prefix0"): '0' is
                // the byte right after '/'.
                let lower = format!("{prefix}/");
                let upper = format!("{prefix}0");
                state
                    .files
                    .range::<str, _>((
                        Bound::Included(lower.as_str()),
                        Bound::Excluded(upper.as_str()),
                    ))
                    .map(|(path, stored)| stored.entry(path))
                    .collect()
            }
        };
        let fail_after = state.fail_listing_after;
        let hidden = |p: &RelPath| {
            state
                .unlisted
                .keys()
                .any(|u| p == u || p.as_str().starts_with(&format!("{u}/")))
        };
        entries.retain(|e| !hidden(&e.path));
        let below_prefix =
            |u: &RelPath| prefix.is_none_or(|p| u.as_str().starts_with(&format!("{p}/")));
        let mut items: Vec<(String, Result<Entry>)> = entries
            .into_iter()
            .map(|e| (e.path.as_str().to_owned(), Ok(e)))
            .collect();
        for (u, reason) in &state.unlisted {
            if below_prefix(u) {
                items.push((
                    u.as_str().to_owned(),
                    Err(Error::unlisted(BACKEND, u.as_str(), reason.clone())),
                ));
            }
        }
        drop(state);
        items.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));

        if !self.ordered {
            items.sort_by_key(|(key, _)| scramble_key(key));
            // Two or more entries must really be out of order, or the sorting path goes untested.
            if items.len() > 1 && items.is_sorted_by(|a, b| a.0.as_bytes() <= b.0.as_bytes()) {
                items.reverse();
            }
        }

        let mut items: Vec<Result<Entry>> = items.into_iter().map(|(_, item)| item).collect();
        if let Some(n) = fail_after {
            items.truncate(n);
            items.push(Err(Error::other(
                BACKEND,
                prefix.map(RelPath::as_str).unwrap_or(""),
                format!("listing failed after {n} entries (test hook fail_listing_after)"),
            )));
        }
        stream::iter(items).boxed()
    }

    async fn stat(&self, path: &RelPath) -> Result<Entry> {
        self.lock()
            .files
            .get(path)
            .map(|stored| stored.entry(path))
            .ok_or_else(|| Error::not_found(BACKEND, path.as_str()))
    }

    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        let data = {
            let state = self.lock();
            let stored = state
                .files
                .get(path)
                .ok_or_else(|| Error::not_found(BACKEND, path.as_str()))?;
            if let Some(version) = &opts.version
                && !version.matches(&stored.entry(path))
            {
                return Err(Error::precondition_failed(BACKEND, path.as_str()));
            }
            stored.data.clone()
        };
        let len = data.len();
        let (start, end) = match opts.range {
            None => (0, len),
            Some(range) => {
                let clamp = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).min(len);
                let start = clamp(range.start);
                (start, clamp(range.end).max(start))
            }
        };
        let data = data.slice(start..end);
        let chunks: Vec<Result<Bytes>> = (0..data.len())
            .step_by(READ_CHUNK)
            .map(|at| Ok(data.slice(at..(at + READ_CHUNK).min(data.len()))))
            .collect();
        Ok(stream::iter(chunks).boxed())
    }

    async fn write_opts(
        &self,
        path: &RelPath,
        mut body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        // Nothing is touched until the whole body has arrived: a failed or dropped write leaves
        // the map as it was.
        let mut data = Vec::with_capacity(
            opts.size_hint
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0)
                .min(64 * 1024 * 1024),
        );
        let mut hasher = Md5::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            data.extend_from_slice(&chunk);
        }
        let md5: [u8; 16] = hasher.finalize().into();

        let mut state = self.lock();
        self.check_folders(&state, path)?;
        let existing = state.files.get(path);
        match (&opts.mode, existing) {
            (WriteMode::Create, Some(_)) => {
                return Err(Error::already_exists(BACKEND, path.as_str()));
            }
            (WriteMode::Update(expected), Some(stored))
                if stored.entry(path).etag.as_ref() == Some(expected) => {}
            (WriteMode::Update(_), _) => {
                return Err(Error::precondition_failed(BACKEND, path.as_str()));
            }
            (WriteMode::IfUnchanged(version), Some(stored))
                if version.matches(&stored.entry(path)) => {}
            (WriteMode::IfUnchanged(_), _) => {
                return Err(Error::precondition_failed(BACKEND, path.as_str()));
            }
            _ => {}
        }
        let version = state.next_version();
        let (file_id, birth) = state.new_identity(version);
        let stored = Stored {
            data: data.into(),
            mtime: opts.mtime.unwrap_or_else(SystemTime::now),
            etag: format!("v{version}"),
            md5,
            file_id,
            birth,
            webdav_like: state.identity.webdav_like,
        };
        let entry = stored.entry(path);
        let replaced = state.files.insert(path.clone(), stored);
        state.free(replaced);
        Ok(entry)
    }

    async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> Result<()> {
        let mut state = self.lock();
        if let (Some(want), Some(now)) = (&opts.if_version, state.files.get(path))
            && !want.matches(&now.entry(path))
        {
            return Err(Error::PreconditionFailed {
                backend: BACKEND,
                path: path.to_string(),
                source: Some("the file changed since it was checked; not deleted".into()),
            });
        }
        let removed = state.files.remove(path);
        let missing = removed.is_none();
        state.free(removed);
        if missing && opts.report_missing {
            return Err(Error::not_found(BACKEND, path.as_str()));
        }
        Ok(())
    }

    async fn copy_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        let mut state = self.lock();
        let source = state
            .files
            .get(from)
            .cloned()
            .ok_or_else(|| Error::not_found(BACKEND, from.as_str()))?;
        if from == to {
            return Self::check_target(&state, to, &opts).map(|()| source.entry(to));
        }
        Self::check_target(&state, to, &opts)?;
        self.check_folders(&state, to)?;
        let version = state.next_version();
        let (file_id, birth) = state.new_identity(version);
        let copy = Stored {
            etag: format!("v{version}"),
            file_id,
            birth,
            ..source
        };
        let entry = copy.entry(to);
        let replaced = state.files.insert(to.clone(), copy);
        state.free(replaced);
        Ok(entry)
    }

    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        let mut state = self.lock();
        if !state.files.contains_key(from) {
            return Err(Error::not_found(BACKEND, from.as_str()));
        }
        Self::check_target(&state, to, &opts)?;
        // As on a disk, even `a/b` cannot become `a`: the folder `a` holds it.
        self.check_folders(&state, to)?;
        match state.files.remove(from) {
            Some(stored) => {
                let entry = stored.entry(to);
                let replaced = state.files.insert(to.clone(), stored);
                state.free(replaced);
                Ok(entry)
            }
            None => Err(Error::not_found(BACKEND, from.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;

    #[tokio::test]
    async fn a_delete_for_one_version_leaves_another() {
        let client = MemoryClient::new();
        let path = RelPath::new("a.txt").unwrap();
        client.put(&path, Bytes::from("old")).await.unwrap();
        let checked = client.stat(&path).await.unwrap();
        client
            .put(&path, Bytes::from("saved meanwhile"))
            .await
            .unwrap();
        let opts = DeleteOptions::default().with_if_version(crate::Version::of(&checked));
        let err = client.delete_opts(&path, opts).await.unwrap_err();
        assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");
        assert!(client.files().contains_key(&path));
        let now = client.stat(&path).await.unwrap();
        let opts = DeleteOptions::default().with_if_version(crate::Version::of(&now));
        client.delete_opts(&path, opts).await.unwrap();
        assert!(!client.files().contains_key(&path));
    }
    use crate::client::StorageClientExt;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[tokio::test]
    async fn display_ids_are_unique() {
        let (a, b) = (MemoryClient::new(), MemoryClient::default());
        assert_ne!(a.to_string(), b.to_string());
        assert!(a.to_string().starts_with("MemoryClient("));
    }

    #[tokio::test]
    async fn unordered_lists_out_of_order_but_complete() {
        let client = MemoryClient::unordered();
        for name in ["a", "b", "c", "d/e", "f"] {
            client.put(&p(name), Bytes::from(name)).await.unwrap();
        }
        let first: Vec<RelPath> = client
            .list_all(None)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        let again: Vec<RelPath> = client
            .list_all(None)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(first, again, "the scramble is deterministic");
        assert!(!first.is_sorted());
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, ["a", "b", "c", "d/e", "f"].map(p));
        assert!(!client.capabilities().ordered_listing);
    }

    #[tokio::test]
    async fn fail_listing_after_yields_error_after_n() {
        let client = MemoryClient::new();
        for name in ["a", "b", "c"] {
            client.put(&p(name), Bytes::from(name)).await.unwrap();
        }
        client.fail_listing_after(Some(2));
        let items: Vec<Result<Entry>> = client.list(None).collect().await;
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok());
        assert!(items[2].is_err());
        assert!(client.list(None).try_collect::<Vec<_>>().await.is_err());
        client.fail_listing_after(None);
        assert_eq!(client.list_all(None).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn set_mtime_keeps_content_and_etag() {
        let client = MemoryClient::new();
        let before = client.put(&p("a"), Bytes::from("x")).await.unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_600_000_000_123_456_789);
        client.set_mtime(&p("a"), t).unwrap();
        let after = client.stat(&p("a")).await.unwrap();
        assert_eq!(after.mtime, Some(t));
        assert_eq!(after.etag, before.etag);
        assert!(
            client
                .set_mtime(&p("missing"), t)
                .unwrap_err()
                .is_not_found()
        );
        assert_eq!(client.files().get("a").map(|b| b.as_ref()), Some(&b"x"[..]));
    }

    #[tokio::test]
    async fn identities_survive_renames_and_are_reused_only_when_asked() {
        let client = MemoryClient::new();
        let a = client.put(&p("a"), Bytes::from("x")).await.unwrap();
        assert!(a.birth_time.is_some() && client.capabilities().birth_time);
        let moved = client.rename(&p("a"), &p("b")).await.unwrap();
        assert_eq!((moved.file_id, moved.birth_time), (a.file_id, a.birth_time));
        client.delete(&p("b")).await.unwrap();
        let c = client.put(&p("c"), Bytes::from("y")).await.unwrap();
        assert_ne!(c.file_id, a.file_id, "no reuse by default");
        assert!(c.birth_time > a.birth_time);

        client.reuse_file_ids(true);
        client.delete(&p("c")).await.unwrap();
        let d = client.put(&p("d"), Bytes::from("z")).await.unwrap();
        assert_eq!(d.file_id, c.file_id, "the freed id is reused");
        assert!(d.birth_time > c.birth_time, "with a new birth time");

        client.reuse_birth_times(true);
        let e = client.put(&p("d"), Bytes::from("w")).await.unwrap();
        assert_ne!(
            e.file_id, d.file_id,
            "an overwrite frees the old file only after"
        );
        let g = client.put(&p("g"), Bytes::from("u")).await.unwrap();
        assert_eq!(
            (g.file_id, g.birth_time),
            (d.file_id, d.birth_time),
            "the replaced file's identity goes to the next new file"
        );

        client.without_birth_times(true);
        let f = client.put(&p("f"), Bytes::from("v")).await.unwrap();
        assert_eq!(f.birth_time, None);
        assert!(!client.capabilities().birth_time);
    }

    #[tokio::test]
    async fn webdav_like_files_share_etags_by_size_and_mtime() {
        let client = MemoryClient::new();
        client.webdav_like_metadata(true);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        let opts = || WriteOptions::default().with_mtime(t);
        let body = |s: &'static str| crate::client::bytes_stream(Bytes::from(s));
        let a = client
            .write_opts(&p("a"), body("one"), opts())
            .await
            .unwrap();
        let b = client
            .write_opts(&p("b"), body("two"), opts())
            .await
            .unwrap();
        assert_eq!(a.hash, None);
        assert!(a.etag.is_some());
        assert_eq!(a.etag, b.etag, "equal size and mtime, different content");
        assert!(!client.capabilities().etag_is_md5);
    }

    #[tokio::test]
    async fn listed_hash_is_md5_of_content() {
        let client = MemoryClient::new();
        let entry = client.put(&p("a"), Bytes::from("hello")).await.unwrap();
        assert_eq!(entry.hash, Some(client.md5(&p("a")).await.unwrap()));
    }
    #[tokio::test]
    async fn disk_folders_refuse_a_file_below_a_file_and_over_a_folder() {
        let client = MemoryClient::new().with_disk_folders();
        client.put(&p("x"), Bytes::from("file")).await.unwrap();
        client
            .put(&p("d/y"), Bytes::from("in a folder"))
            .await
            .unwrap();
        assert!(client.put(&p("x/y"), Bytes::from("no")).await.is_err());
        assert!(client.put(&p("d"), Bytes::from("no")).await.is_err());
        assert!(client.rename(&p("x"), &p("d")).await.is_err());
        assert!(
            client
                .copy_opts(&p("x"), &p("x/z"), TransferOptions::default())
                .await
                .is_err()
        );
        // Not even the only file below `d/` can take the folder's name (a disk says no).
        assert!(client.rename(&p("d/y"), &p("d")).await.is_err());
        assert_eq!(client.files().len(), 2);
        // Without the switch, anything goes.
        let loose = MemoryClient::new();
        loose.put(&p("x"), Bytes::from("file")).await.unwrap();
        loose.put(&p("x/y"), Bytes::from("both")).await.unwrap();
    }
}
