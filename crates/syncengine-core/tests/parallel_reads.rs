//! Large files read as parallel ranges ([`syncengine_core::parallel_read`]), over
//! `MemoryClient`s listed like an Apache WebDAV server (no hash, an ETag of size and mtime, so
//! only the length and the version check guard a copy): the copy arrives byte-identical, a
//! file changed between two ranges fails the copy and leaves the destination as it was, and a
//! range that delivers fewer bytes fails it too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use syncengine_core::client::WriteMode;
use syncengine_core::parallel_read::read_for_copy;
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::{
    ByteStream, Capabilities, Error, MemoryClient, ParallelReads, ReadOptions, RelPath, Result,
    StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncOptions, SyncPair, WriteOptions,
};

const PART: u64 = 64 << 10;

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// `len` bytes that differ at every offset and between `seed`s.
fn data(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u64 * 31 + u64::from(seed) * 7 + (i as u64 >> 9)) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// What happens when the range starting at an offset is read.
#[derive(Clone)]
enum Hook {
    /// Before the range is read, the file is replaced by this content (same size, new mtime).
    Replace(Bytes),
    /// The range's stream ends this many bytes early.
    Short(usize),
}

/// A memory client that offers parallel reads (tiny cutoff and parts), with hooks on ranges.
struct Ranged {
    inner: Arc<MemoryClient>,
    hooks: Mutex<Vec<(u64, Hook)>>,
    ranges: AtomicUsize,
    versioned: AtomicUsize,
    whole: AtomicUsize,
    /// Range reads going on now, by path, and the most paths read in ranges at one time.
    active: Mutex<std::collections::HashMap<String, usize>>,
    most_files_at_once: AtomicUsize,
}

impl Ranged {
    fn new(inner: Arc<MemoryClient>) -> Arc<Forwarding<Ranged>> {
        Arc::new(Forwarding::new(Ranged {
            inner,
            hooks: Mutex::new(Vec::new()),
            ranges: AtomicUsize::new(0),
            versioned: AtomicUsize::new(0),
            whole: AtomicUsize::new(0),
            active: Mutex::default(),
            most_files_at_once: AtomicUsize::new(0),
        }))
    }

    fn hook(&self, at: u64, hook: Hook) {
        self.hooks.lock().unwrap().push((at, hook));
    }
}

impl std::fmt::Debug for Ranged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ranged({:?})", self.inner)
    }
}

#[async_trait]
impl Hooks for Ranged {
    fn inner(&self) -> &dyn StorageClient {
        &*self.inner
    }
    fn capabilities(&self) -> Capabilities {
        let mut caps = self.inner.capabilities();
        caps.local_reads = false;
        caps.parallel_reads = Some(
            ParallelReads::default()
                .with_cutoff(4 * PART)
                .with_streams(3)
                .with_part_size(PART),
        );
        caps
    }
    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        let Some(range) = opts.range.clone() else {
            // The engine's own small files are read whole too.
            if path.as_str() == "big" {
                self.whole.fetch_add(1, Ordering::SeqCst);
            }
            return self.inner.read_opts(path, opts).await;
        };
        self.ranges.fetch_add(1, Ordering::SeqCst);
        if opts.version.is_some() {
            self.versioned.fetch_add(1, Ordering::SeqCst);
        }
        {
            let mut active = self.active.lock().unwrap();
            *active.entry(path.as_str().to_owned()).or_default() += 1;
            self.most_files_at_once
                .fetch_max(active.len(), Ordering::SeqCst);
        }
        // Long enough for other copies of the run to overlap this one.
        tokio::time::sleep(Duration::from_millis(2)).await;
        {
            let mut active = self.active.lock().unwrap();
            if let Some(n) = active.get_mut(path.as_str()) {
                *n -= 1;
                if *n == 0 {
                    active.remove(path.as_str());
                }
            }
        }
        let hook = {
            let mut hooks = self.hooks.lock().unwrap();
            let found = hooks.iter().position(|(at, _)| *at == range.start);
            found.map(|i| hooks.remove(i).1)
        };
        match hook {
            None => self.inner.read_opts(path, opts).await,
            Some(Hook::Replace(content)) => {
                // Another version of the same size, saved while the copy reads the file.
                let mtime = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
                self.inner
                    .write_opts(
                        path,
                        syncengine_core::client::bytes_stream(content),
                        WriteOptions::default().with_mtime(mtime),
                    )
                    .await?;
                self.inner.read_opts(path, opts).await
            }
            Some(Hook::Short(by)) => {
                let body: Vec<Bytes> = self
                    .inner
                    .read_opts(path, opts)
                    .await?
                    .try_collect()
                    .await?;
                let mut all = body.concat();
                all.truncate(all.len().saturating_sub(by));
                Ok(futures::stream::iter([Ok(Bytes::from(all))]).boxed())
            }
        }
    }
}

fn webdav_like() -> Arc<MemoryClient> {
    let c = Arc::new(MemoryClient::new());
    c.webdav_like_metadata(true);
    c
}

async fn put(c: &MemoryClient, path: &str, content: Bytes, secs: u64) {
    c.write_opts(
        &rel(path),
        syncengine_core::client::bytes_stream(content),
        WriteOptions::default()
            .with_mode(WriteMode::Overwrite)
            .with_mtime(UNIX_EPOCH + Duration::from_secs(secs)),
    )
    .await
    .unwrap();
}

fn pair(src: Arc<Forwarding<Ranged>>, dst: Arc<MemoryClient>) -> SyncPair {
    SyncPair::new(src, dst, SyncMode::SourceToDestination)
        .with_options(SyncOptions::default().with_attempts(2))
}

/// A source with `big` (`len` bytes, seed 1) and a destination holding an older, small `big`.
async fn setup(
    len: usize,
) -> (
    tempfile::TempDir,
    SyncEngine,
    Arc<Forwarding<Ranged>>,
    Arc<MemoryClient>,
) {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = webdav_like();
    let dst = webdav_like();
    put(&src, "big", Bytes::from_static(b"old"), 1_000_000_000).await;
    let ranged = Ranged::new(src.clone());
    let stats = engine
        .sync_pair(&pair(ranged.clone(), dst.clone()))
        .await
        .unwrap();
    assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
    put(&src, "big", data(1, len), 1_500_000_000).await;
    ranged.whole.store(0, Ordering::SeqCst);
    ranged.ranges.store(0, Ordering::SeqCst);
    ranged.versioned.store(0, Ordering::SeqCst);
    (state, engine, ranged, dst)
}

#[tokio::test]
async fn a_large_file_arrives_byte_identical_through_parallel_ranges() {
    // Not a multiple of the part size: the last range is short on purpose.
    let len = (10 * PART + 4321) as usize;
    let (_state, engine, ranged, dst) = setup(len).await;
    let stats = engine
        .sync_pair(&pair(ranged.clone(), dst.clone()))
        .await
        .unwrap();
    assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
    assert_eq!(dst.read_to_bytes(&rel("big")).await.unwrap(), data(1, len));
    assert_eq!(
        ranged.ranges.load(Ordering::SeqCst),
        11,
        "one read per 64 KiB part"
    );
    assert_eq!(
        ranged.versioned.load(Ordering::SeqCst),
        11,
        "every range names the version"
    );
    assert_eq!(
        ranged.whole.load(Ordering::SeqCst),
        0,
        "no whole read of big"
    );
}

#[tokio::test]
async fn a_file_below_the_cutoff_is_read_as_one_stream() {
    let (_state, engine, ranged, dst) = setup((3 * PART) as usize).await;
    let stats = engine
        .sync_pair(&pair(ranged.clone(), dst.clone()))
        .await
        .unwrap();
    assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
    assert_eq!(
        dst.read_to_bytes(&rel("big")).await.unwrap(),
        data(1, (3 * PART) as usize)
    );
    assert_eq!(ranged.ranges.load(Ordering::SeqCst), 0);
    assert_eq!(ranged.whole.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_file_changed_between_ranges_fails_the_copy_and_leaves_the_destination() {
    let len = (10 * PART) as usize;
    let (_state, engine, ranged, dst) = setup(len).await;
    // Same size, so the length check alone could not tell; no MD5 is listed.
    ranged.hook(6 * PART, Hook::Replace(data(2, len)));
    let stats = engine
        .sync_pair(&pair(ranged.clone(), dst.clone()))
        .await
        .unwrap();
    assert_eq!(stats.errors, 1, "{stats:?}");
    assert_eq!(
        dst.read_to_bytes(&rel("big")).await.unwrap(),
        Bytes::from_static(b"old"),
        "a copy mixing two versions replaced the destination"
    );
    assert!(
        stats.error_messages[0].contains("precondition failed")
            || stats.error_messages[0].contains("changed"),
        "{:?}",
        stats.error_messages
    );
    // The next run copies the version now there, whole.
    let stats = engine
        .sync_pair(&pair(ranged.clone(), dst.clone()))
        .await
        .unwrap();
    assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
    assert_eq!(dst.read_to_bytes(&rel("big")).await.unwrap(), data(2, len));
}

#[tokio::test]
async fn a_short_range_fails_the_copy_and_leaves_the_destination() {
    let len = (10 * PART + 17) as usize;
    let (_state, engine, ranged, dst) = setup(len).await;
    // Every attempt (the run tries twice) meets a range that ends 100 bytes early.
    ranged.hook(3 * PART, Hook::Short(100));
    ranged.hook(3 * PART, Hook::Short(100));
    let stats = engine
        .sync_pair(&pair(ranged.clone(), dst.clone()))
        .await
        .unwrap();
    assert_eq!(stats.errors, 1, "{stats:?}");
    assert!(
        stats.error_messages[0].contains("gave 65436 bytes, not 65536"),
        "{:?}",
        stats.error_messages
    );
    assert_eq!(
        dst.read_to_bytes(&rel("big")).await.unwrap(),
        Bytes::from_static(b"old"),
        "a short read was committed"
    );
}

#[tokio::test]
async fn read_for_copy_of_a_changed_file_is_refused_at_its_first_range() {
    let src = webdav_like();
    put(&src, "f", data(3, (8 * PART) as usize), 1_000_000_000).await;
    let listed = src.stat(&rel("f")).await.unwrap();
    put(&src, "f", data(4, (8 * PART) as usize), 1_100_000_000).await;
    let ranged: Arc<dyn StorageClient> = Ranged::new(src);
    let err = match read_for_copy(&ranged, &rel("f"), &listed).await {
        Ok(_) => panic!("a read of another version was opened"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
}

#[tokio::test]
async fn ranges_are_read_only_a_few_parts_ahead_of_the_writer() {
    let src = webdav_like();
    let len = (40 * PART) as usize;
    put(&src, "f", data(5, len), 1_000_000_000).await;
    let listed = src.stat(&rel("f")).await.unwrap();
    let ranged = Ranged::new(src);
    let client: Arc<dyn StorageClient> = ranged.clone();
    let mut body = read_for_copy(&client, &rel("f"), &listed).await.unwrap();
    let first = body.next().await.unwrap().unwrap();
    assert_eq!(first, data(5, len).slice(0..first.len()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The first part and the 3 in flight behind it, however long the writer takes: memory
    // stays bounded by the streams, not by the file.
    assert_eq!(ranged.ranges.load(Ordering::SeqCst), 4);
    drop(body);
}

/// A run copying several large files at once reads one of them in ranges at a time, the
/// others as one stream each: the parts of a file read in ranges are a run's largest
/// buffers, and the memory budget holds for one such file, not for every copy at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_at_a_time_is_read_in_ranges() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = webdav_like();
    let dst = webdav_like();
    let len = (8 * PART) as usize;
    for i in 0..6u8 {
        put(&src, &format!("big{i}"), data(i, len), 1_500_000_000).await;
    }
    let ranged = Ranged::new(src.clone());
    let stats = engine
        .sync_pair(
            &pair(ranged.clone(), dst.clone())
                .with_options(SyncOptions::default().with_attempts(2).with_transfers(6)),
        )
        .await
        .unwrap();
    assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
    assert_eq!(stats.uploaded, 6);
    for i in 0..6u8 {
        assert_eq!(
            dst.read_to_bytes(&rel(&format!("big{i}"))).await.unwrap(),
            data(i, len)
        );
    }
    assert!(
        ranged.ranges.load(Ordering::SeqCst) > 0,
        "no file was read in ranges"
    );
    assert_eq!(
        ranged.most_files_at_once.load(Ordering::SeqCst),
        1,
        "several files were read in ranges at once"
    );
}
