//! Red team 22: the backup dir's barriers are shared by the copies waiting on one at the same
//! time (`shared_flush`). A filesystem reports a writeback error once, to the barrier that
//! asks first: the writes that returned before that barrier ended may be lost, and a later
//! barrier succeeds without them. No original may go whose backup copy was among them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use syncengine_core::client::{ByteStream, WriteOptions};
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::{
    Entry, Error, MemoryClient, Recovery, RelPath, Result, Side, StorageClient, StorageClientExt,
    SyncEngine, SyncMode, SyncOptions, SyncPair,
};

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// A backup disk whose first barrier fails: every write that returned before that barrier
/// ended is lost (removed), as a writeback error would lose it; a write a successful barrier
/// started after is durable.
#[derive(Debug)]
struct LossyDisk {
    inner: Arc<MemoryClient>,
    /// Writes returned and not yet made durable by a barrier, numbered in the order they
    /// returned.
    pending: Mutex<Vec<(u64, RelPath)>>,
    /// Writes returned so far.
    count: std::sync::atomic::AtomicU64,
    failed: AtomicBool,
    /// The first barrier that starts after this many writes fails.
    fail_after: u64,
}

impl LossyDisk {
    /// A disk over `inner` whose first barrier starting after `fail_after` writes fails.
    fn new(inner: Arc<MemoryClient>, fail_after: u64) -> Self {
        LossyDisk {
            inner,
            pending: Mutex::default(),
            count: Default::default(),
            failed: AtomicBool::new(false),
            fail_after,
        }
    }
}

/// The names among f000..f099 gone from the side that held them (`side_of`) with no backup
/// copy of their version in `kept`.
fn gone_without_backup<'a>(
    kept: &std::collections::BTreeMap<RelPath, Bytes>,
    side_of: impl Fn(usize) -> &'a std::collections::BTreeMap<RelPath, Bytes>,
) -> Vec<String> {
    let mut gone = Vec::new();
    for i in 0..100 {
        let name = format!("f{i:03}");
        if side_of(i).contains_key(&rel(&name)) {
            continue;
        }
        let want = format!("version of {name}");
        let backed_up = kept
            .iter()
            .any(|(p, body)| p.as_str().ends_with(&format!("/{name}")) && body == want.as_bytes());
        if !backed_up {
            gone.push(name);
        }
    }
    gone
}

#[async_trait]
impl Hooks for LossyDisk {
    fn inner(&self) -> &dyn StorageClient {
        &*self.inner
    }
    fn describe(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("lossy backup disk")
    }
    fn backend(&self) -> &'static str {
        "lossy"
    }
    async fn write_opts(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        let written = self.inner.write_opts(path, body, opts).await?;
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        self.pending.lock().unwrap().push((n, path.clone()));
        Ok(written)
    }
    async fn sync_written(&self) -> Result<()> {
        let started = self.count.load(Ordering::SeqCst);
        // The barrier takes a while: other copies return meanwhile.
        tokio::time::sleep(Duration::from_millis(20)).await;
        if started >= self.fail_after && !self.failed.swap(true, Ordering::SeqCst) {
            let lost: Vec<(u64, RelPath)> = self.pending.lock().unwrap().drain(..).collect();
            for (_, path) in lost {
                self.inner.delete(&path).await?;
            }
            return Err(Error::other("lossy", "", "writeback error"));
        }
        self.pending.lock().unwrap().retain(|(n, _)| *n > started);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_original_goes_whose_backup_copy_a_failed_barrier_lost() {
    let state = tempfile::tempdir().unwrap();
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    for i in 0..300 {
        s.put(
            &rel(&format!("f{i:03}")),
            Bytes::from(format!("version of f{i:03}")),
        )
        .await
        .unwrap();
    }
    let plain = SyncPair::new(s.clone(), d.clone(), SyncMode::SourceToDestination);
    SyncEngine::new(state.path())
        .sync_pair(&plain)
        .await
        .unwrap();
    for i in 0..100 {
        s.delete(&rel(&format!("f{i:03}"))).await.unwrap();
    }
    let disk = Arc::new(MemoryClient::new());
    let backup = Arc::new(Forwarding::new(LossyDisk::new(disk.clone(), 0)));
    let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::SourceToDestination).with_options(
        SyncOptions::default()
            .with_transfers(16)
            .with_recovery(Side::Destination, Recovery::BackupDir(backup.clone())),
    );
    let result = SyncEngine::new(state.path()).sync_pair(&pair).await;
    let at_dst = d.files();
    let gone_without_backup = gone_without_backup(&disk.files(), |_| &at_dst);
    assert!(
        gone_without_backup.is_empty(),
        "{} originals deleted although the failed barrier lost their backup copies: {:?} \
         (run: {result:?})",
        gone_without_backup.len(),
        &gone_without_backup[..gone_without_backup.len().min(10)]
    );
    assert!(
        backup.failed.load(Ordering::SeqCst),
        "the barrier was called"
    );
}

/// Both sides back up to one client (two-way, library use): its barrier reports the disk's
/// writeback error once, to whichever side's barrier asks first, so the sides must share
/// their barriers' outcomes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sides_backing_up_to_one_client_share_a_failed_barrier() {
    let state = tempfile::tempdir().unwrap();
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    for i in 0..300 {
        s.put(
            &rel(&format!("f{i:03}")),
            Bytes::from(format!("version of f{i:03}")),
        )
        .await
        .unwrap();
    }
    let plain = SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay);
    SyncEngine::new(state.path())
        .sync_pair(&plain)
        .await
        .unwrap();
    // The source deletes f000..f049 (gone from the destination by the run), the destination
    // f050..f099 (gone from the source).
    for i in 0..50 {
        s.delete(&rel(&format!("f{i:03}"))).await.unwrap();
        d.delete(&rel(&format!("f{:03}", i + 50))).await.unwrap();
    }
    let disk = Arc::new(MemoryClient::new());
    // While the copies of both sides' deletions go (each side has 50).
    let backup = Arc::new(Forwarding::new(LossyDisk::new(disk.clone(), 52)));
    let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay).with_options(
        SyncOptions::default()
            .with_transfers(16)
            .with_recovery(Side::Source, Recovery::BackupDir(backup.clone()))
            .with_recovery(Side::Destination, Recovery::BackupDir(backup.clone())),
    );
    let result = SyncEngine::new(state.path()).sync_pair(&pair).await;
    let (at_src, at_dst) = (s.files(), d.files());
    let gone_without_backup =
        gone_without_backup(&disk.files(), |i| if i < 50 { &at_dst } else { &at_src });
    assert!(
        gone_without_backup.is_empty(),
        "{} originals deleted although the failed barrier lost their backup copies: {:?} \
         (run: {result:?})",
        gone_without_backup.len(),
        &gone_without_backup[..gone_without_backup.len().min(10)]
    );
    assert!(
        backup.failed.load(Ordering::SeqCst),
        "the barrier was called"
    );
}
