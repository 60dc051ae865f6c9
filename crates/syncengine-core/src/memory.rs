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
/// - A file keeps its `file_id` across renames; copies get a new one.
/// - There are no real directories: `a/x` and `a` may both be files.
pub struct MemoryClient {
    id: u64,
    ordered: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    files: BTreeMap<RelPath, Stored>,
    /// Counter behind etags and file ids; bumped on every write, copy and rename.
    version: u64,
    fail_listing_after: Option<usize>,
}

#[derive(Clone)]
struct Stored {
    data: Bytes,
    mtime: SystemTime,
    etag: String,
    md5: [u8; 16],
    file_id: u64,
}

impl State {
    fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }
}

impl Stored {
    fn entry(&self, path: &RelPath) -> Entry {
        Entry::new(path.clone(), self.data.len() as u64)
            .with_mtime(self.mtime)
            .with_etag(self.etag.clone())
            .with_hash(ContentHash::Md5(self.md5))
            .with_file_id(self.file_id)
    }
}

impl MemoryClient {
    /// Creates an empty client whose listings are in canonical order.
    pub fn new() -> Self {
        MemoryClient {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            ordered: true,
            state: Mutex::new(State::default()),
        }
    }

    /// Creates an empty client that reports `ordered_listing: false` and lists in a scrambled
    /// (but deterministic) order, so tests exercise the engine's sorting path.
    pub fn unordered() -> Self {
        MemoryClient {
            ordered: false,
            ..MemoryClient::new()
        }
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

    /// Makes every later listing yield `n` entries and then an [`Error::Other`] (when `Some(n)`),
    /// or list normally again (when `None`).
    ///
    /// Lets tests check that a listing which ends early never leads to deletes.
    pub fn fail_listing_after(&self, n: Option<usize>) {
        self.lock().fail_listing_after = n;
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
fn scramble_key(path: &RelPath) -> [u8; 16] {
    Md5::digest(path.as_str().as_bytes()).into()
}

#[async_trait]
impl StorageClient for MemoryClient {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            ordered_listing: self.ordered,
            set_mtime: true,
            mtime_precision: Duration::from_nanos(1),
            listed_hash: Some(HashKind::Md5),
            etag: true,
            file_id: true,
            server_side_copy: true,
            native_rename: true,
            conditional_write: true,
            case_insensitive: false,
            real_directories: false,
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
        drop(state);

        if !self.ordered {
            entries.sort_by_key(|entry| scramble_key(&entry.path));
            // Two or more entries must really be out of order, or the sorting path goes untested.
            if entries.len() > 1 && entries.is_sorted_by(|a, b| a.path <= b.path) {
                entries.reverse();
            }
        }

        let mut items: Vec<Result<Entry>> = entries.into_iter().map(Ok).collect();
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
        let data = self
            .lock()
            .files
            .get(path)
            .map(|stored| stored.data.clone())
            .ok_or_else(|| Error::not_found(BACKEND, path.as_str()))?;
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
        let existing = state.files.get(path);
        match (&opts.mode, existing) {
            (WriteMode::Create, Some(_)) => {
                return Err(Error::already_exists(BACKEND, path.as_str()));
            }
            (WriteMode::Update(expected), Some(stored)) if stored.etag == *expected => {}
            (WriteMode::Update(_), _) => {
                return Err(Error::precondition_failed(BACKEND, path.as_str()));
            }
            _ => {}
        }
        let version = state.next_version();
        let stored = Stored {
            data: data.into(),
            mtime: opts.mtime.unwrap_or_else(SystemTime::now),
            etag: format!("v{version}"),
            md5,
            file_id: version,
        };
        let entry = stored.entry(path);
        state.files.insert(path.clone(), stored);
        Ok(entry)
    }

    async fn delete_opts(&self, path: &RelPath, _opts: DeleteOptions) -> Result<()> {
        self.lock().files.remove(path);
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
        let version = state.next_version();
        let copy = Stored {
            etag: format!("v{version}"),
            file_id: version,
            ..source
        };
        let entry = copy.entry(to);
        state.files.insert(to.clone(), copy);
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
        match state.files.remove(from) {
            Some(stored) => {
                let entry = stored.entry(to);
                state.files.insert(to.clone(), stored);
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
    async fn listed_hash_is_md5_of_content() {
        let client = MemoryClient::new();
        let entry = client.put(&p("a"), Bytes::from("hello")).await.unwrap();
        assert_eq!(entry.hash, Some(client.md5(&p("a")).await.unwrap()));
    }
}
