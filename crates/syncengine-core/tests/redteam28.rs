//! Red team 28: the copies a failed flush covered (`StateStore::mark_unflushed`) are made
//! again by the next run (`Recovered::rewrites`, `Reconciler::with_rewrites`). What may they
//! not do: leave a file the disk lost taken for synced, however that next run goes (a
//! re-copy that fails, a run stopped before its re-copies, a run that may not write there,
//! a rename on the other side, a second failed flush), or mark only one of two failing sides.
//!
//! The sides are [`LossyDisk`]s: a memory store with a page cache in front of a disk. A
//! write lands in the cache (it reads back whole at once) and is dirty until a barrier; a
//! barrier of a failing disk loses every dirty write (the disk lost it, the cache still
//! serves it) and fails, once, as `syncfs` reports a writeback error. [`LossyDisk::lost`]
//! names the files whose content the disk does not hold: what a reader finds once the cache
//! is dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use syncengine_core::state::StateStore;
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::{
    ByteStream, DeleteOptions, Entry, Error, MemoryClient, RelPath, Result, Side, StorageClient,
    StorageClientExt, SyncEngine, SyncError, SyncMode, SyncOptions, SyncPair, TransferOptions,
    WriteOptions,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// A memory store behind a page cache (see the module's doc).
#[derive(Debug)]
struct LossyDisk {
    inner: Arc<MemoryClient>,
    /// Files written since the last barrier: in the cache only.
    dirty: Mutex<BTreeSet<RelPath>>,
    /// Files whose content the disk lost (they read back whole from the cache).
    lost: Mutex<BTreeSet<RelPath>>,
    /// The disk fails its writeback: a barrier loses what is dirty and fails.
    failing: AtomicBool,
    /// Paths whose writes fail (a permission error, say).
    failing_writes: Mutex<HashSet<RelPath>>,
    /// Barriers asked so far, and the number of the first to fail (0: none), besides
    /// `failing`.
    barriers: AtomicU64,
    fail_from_barrier: AtomicU64,
    /// Once this many more writes of the user's files have returned, `killed` is notified.
    kill_after: Mutex<Option<(usize, Arc<Notify>)>>,
    name: &'static str,
}

impl LossyDisk {
    fn new(inner: Arc<MemoryClient>, name: &'static str) -> Arc<Forwarding<Self>> {
        Arc::new(Forwarding::new(LossyDisk {
            inner,
            dirty: Mutex::default(),
            lost: Mutex::default(),
            failing: AtomicBool::new(false),
            failing_writes: Mutex::default(),
            barriers: AtomicU64::new(0),
            fail_from_barrier: AtomicU64::new(0),
            kill_after: Mutex::default(),
            name,
        }))
    }

    fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    fn fail_write(&self, path: &str) {
        self.failing_writes.lock().unwrap().insert(rel(path));
    }

    fn heal_writes(&self) {
        self.failing_writes.lock().unwrap().clear();
    }

    /// The kernel's own writeback between runs: what is dirty reaches the disk, or is lost
    /// if the disk fails (nobody is told: no barrier asked).
    fn writeback(&self) {
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap());
        if self.failing.load(Ordering::SeqCst) {
            self.lost.lock().unwrap().extend(dirty);
        }
    }

    /// The user's files (not the engine's own folder) whose content the disk lost.
    fn lost(&self) -> Vec<String> {
        self.lost
            .lock()
            .unwrap()
            .iter()
            .filter(|p| !p.as_str().starts_with(".syncengine"))
            .map(|p| p.as_str().to_owned())
            .collect()
    }

    /// Notes a write of `path` that returned; true when the run is to be killed now.
    fn wrote(&self, path: &RelPath) -> bool {
        self.lost.lock().unwrap().remove(path);
        self.dirty.lock().unwrap().insert(path.clone());
        if path.as_str().starts_with(".syncengine") {
            return false;
        }
        let mut kill = self.kill_after.lock().unwrap();
        if let Some((left, killed)) = kill.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                killed.notify_one();
                *kill = None;
                return true;
            }
        }
        false
    }
}

#[async_trait]
impl Hooks for LossyDisk {
    fn inner(&self) -> &dyn StorageClient {
        &*self.inner
    }
    fn describe(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lossy disk {}", self.name)
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
        if self.failing_writes.lock().unwrap().contains(path) {
            return Err(Error::other("lossy", path.as_str(), "permission denied"));
        }
        let entry = self.inner.write_opts(path, body, opts).await?;
        if self.wrote(path) {
            // Killed: the run goes no further.
            std::future::pending::<()>().await;
        }
        Ok(entry)
    }
    async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> Result<()> {
        self.inner.delete_opts(path, opts).await?;
        self.lost.lock().unwrap().remove(path);
        self.dirty.lock().unwrap().remove(path);
        Ok(())
    }
    async fn sync_written(&self) -> Result<()> {
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap());
        let number = self.barriers.fetch_add(1, Ordering::SeqCst) + 1;
        let from = self.fail_from_barrier.load(Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) || (from > 0 && number >= from) {
            self.lost.lock().unwrap().extend(dirty);
            return Err(Error::other("lossy", "", "disk flush failed (EIO)"));
        }
        Ok(())
    }
    async fn copy_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        // Read from the cache: the copy holds the whole content, and is dirty itself.
        let entry = self.inner.copy_opts(from, to, opts).await?;
        if self.wrote(to) {
            std::future::pending::<()>().await;
        }
        Ok(entry)
    }
    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        // The file moves with whatever the disk holds of it.
        let entry = self.inner.rename_opts(from, to, opts).await?;
        for set in [&self.lost, &self.dirty] {
            let mut set = set.lock().unwrap();
            let had = set.remove(from);
            set.remove(to);
            if had {
                set.insert(to.clone());
            }
        }
        Ok(entry)
    }
}

/// A source with `n` files `d/fNN` and an empty destination, both lossy.
async fn pair_of_disks(n: usize) -> (Arc<Forwarding<LossyDisk>>, Arc<Forwarding<LossyDisk>>) {
    let source = LossyDisk::new(Arc::new(MemoryClient::new()), "source");
    for i in 0..n {
        source
            .inner
            .put(
                &rel(&format!("d/f{i:02}")),
                Bytes::from(format!("content {i}")),
            )
            .await
            .unwrap();
    }
    let destination = LossyDisk::new(Arc::new(MemoryClient::new()), "destination");
    (source, destination)
}

fn pair(
    source: &Arc<Forwarding<LossyDisk>>,
    destination: &Arc<Forwarding<LossyDisk>>,
    mode: SyncMode,
) -> SyncPair {
    SyncPair::new(source.clone(), destination.clone(), mode)
}

/// Run 1 of a mirror: the destination's disk fails, so every copy is lost there while it
/// reads back whole. Returns how many copies the disk lost.
async fn failed_mirror(
    engine: &SyncEngine,
    source: &Arc<Forwarding<LossyDisk>>,
    destination: &Arc<Forwarding<LossyDisk>>,
) -> usize {
    destination.fail(true);
    let err = engine
        .sync_pair(&pair(source, destination, SyncMode::SourceToDestination))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Storage {
                side: Side::Destination,
                ..
            }
        ),
        "{err}"
    );
    destination.writeback();
    destination.fail(false);
    let lost = destination.lost().len();
    assert!(
        lost > 0,
        "the failed flush lost nothing: the test tests nothing"
    );
    lost
}

/// Runs healthy mirrors until one has nothing to do (at most three).
impl LossyDisk {
    /// Fails the test (`what` names the case) when the disk lost files the engine now takes
    /// for synced.
    fn assert_nothing_lost(&self, what: &str) {
        let lost = self.lost();
        assert!(
            lost.is_empty(),
            "{what}{}the disk lost {lost:?} and the engine takes them for synced",
            if what.is_empty() { "" } else { ": " }
        );
    }
}

async fn settle(
    engine: &SyncEngine,
    source: &Arc<Forwarding<LossyDisk>>,
    destination: &Arc<Forwarding<LossyDisk>>,
) {
    for _ in 0..3 {
        let stats = engine
            .sync_pair(&pair(source, destination, SyncMode::SourceToDestination))
            .await
            .unwrap();
        if stats.uploaded + stats.downloaded + stats.errors == 0 {
            return;
        }
    }
}

/// A re-copy that fails (a permission error on that one file) does not make the file
/// trusted: the run after it, healthy, copies it again. Before: run 2 recorded the suspect
/// copy from its intent and cleared the mark at its start, so the file was synced for good
/// while the disk held none of it.
#[tokio::test]
async fn a_recopy_that_fails_leaves_the_file_suspect() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (source, destination) = pair_of_disks(12).await;
    failed_mirror(&engine, &source, &destination).await;

    destination.fail_write("d/f07");
    let stats = engine
        .sync_pair(&pair(&source, &destination, SyncMode::SourceToDestination))
        .await
        .unwrap();
    assert_eq!(stats.errors, 1, "{stats:?}");
    assert_eq!(destination.lost(), ["d/f07"], "{stats:?}");
    destination.heal_writes();

    settle(&engine, &source, &destination).await;
    destination.assert_nothing_lost("");
}

/// A re-copy run stopped before its copies start (a pause of `watch`, Ctrl-C) leaves them
/// to the next run. Before: the mark and the intents were cleared as the run began, and
/// the next run found nothing to do.
#[tokio::test]
async fn a_recopy_run_stopped_before_its_copies_leaves_them_suspect() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (source, destination) = pair_of_disks(12).await;
    let lost = failed_mirror(&engine, &source, &destination).await;

    let stop = CancellationToken::new();
    stop.cancel();
    let stopped = SyncEngine::new(state.path()).with_stop_starting(stop);
    let err = stopped
        .sync_pair(&pair(&source, &destination, SyncMode::SourceToDestination))
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Cancelled), "{err}");
    assert_eq!(destination.lost().len(), lost);

    settle(&engine, &source, &destination).await;
    destination.assert_nothing_lost("");
}

/// A run that may not write the suspect copies (the destination protected, a mode that
/// copies the other way, the files excluded) leaves them suspect, and a later mirror makes
/// them again. Before: that run cleared the mark, and the copies were trusted from then on.
#[tokio::test]
async fn a_run_that_may_not_recopy_keeps_the_suspicion() {
    type Twist = fn(SyncPair) -> SyncPair;
    let twists: [(&str, Twist); 3] = [
        ("protected destination", |p| {
            p.with_options(SyncOptions::default().with_protected(Side::Destination))
        }),
        ("destination-to-source", |mut p| {
            p.mode = SyncMode::DestinationToSource;
            p
        }),
        ("excluded", |p| {
            p.with_options(SyncOptions::default().with_excludes(["d/"]))
        }),
    ];
    for (name, twist) in twists {
        let state = tempfile::tempdir().unwrap();
        let engine = SyncEngine::new(state.path());
        let (source, destination) = pair_of_disks(6).await;
        let lost = failed_mirror(&engine, &source, &destination).await;

        let stats = engine
            .sync_pair(&twist(pair(
                &source,
                &destination,
                SyncMode::SourceToDestination,
            )))
            .await
            .unwrap();
        assert_eq!(stats.uploaded, 0, "{name}: {stats:?}");
        // The run says what it left, and claims no copy it did not make.
        assert!(
            !stats
                .warnings
                .iter()
                .any(|w| w.contains("are copied again")),
            "{name}: {:?}",
            stats.warnings
        );
        if name != "excluded" {
            assert!(
                stats.warnings.iter().any(|w| w.starts_with(&format!(
                    "{lost} files an earlier run copied to the destination"
                ))),
                "{name}: {:?}",
                stats.warnings
            );
        }
        assert_eq!(destination.lost().len(), lost, "{name}");
        // Nothing the disk lost went to the other side.
        assert!(source.lost().is_empty(), "{name}");

        settle(&engine, &source, &destination).await;
        destination.assert_nothing_lost(name);
    }
}

/// Both sides on one failing disk (two folders of one filesystem): each side's barrier
/// fails, and both are marked. Before: the source's failure ended the barriers, the
/// destination's was never asked, and its copies were trusted by the next run.
#[tokio::test]
async fn both_failing_sides_are_marked() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let source = LossyDisk::new(Arc::new(MemoryClient::new()), "source");
    let destination = LossyDisk::new(Arc::new(MemoryClient::new()), "destination");
    for i in 0..6 {
        source
            .inner
            .put(&rel(&format!("s/f{i}")), Bytes::from(format!("s {i}")))
            .await
            .unwrap();
        destination
            .inner
            .put(&rel(&format!("d/f{i}")), Bytes::from(format!("d {i}")))
            .await
            .unwrap();
    }
    source.fail(true);
    destination.fail(true);
    let p = pair(&source, &destination, SyncMode::TwoWay);
    let err = engine.sync_pair(&p).await.unwrap_err();
    assert!(matches!(err, SyncError::Storage { .. }), "{err}");
    source.writeback();
    destination.writeback();
    source.fail(false);
    destination.fail(false);
    assert!(!source.lost().is_empty() && !destination.lost().is_empty());

    let store = StateStore::open(state.path(), &p.id().await.unwrap()).unwrap();
    assert_eq!(store.unflushed_sides().unwrap(), [true, true]);
    drop(store);

    for _ in 0..3 {
        engine.sync_pair(&p).await.unwrap();
    }
    assert!(
        source.lost().is_empty() && destination.lost().is_empty(),
        "lost and taken for synced: source {:?}, destination {:?}",
        source.lost(),
        destination.lost()
    );
}

/// A file renamed on the source after the failed run: the rename detection must not carry
/// the destination's suspect copy to the new name (it is the lost content under a new
/// name). Before: the destination's `d/f03` was renamed to `d/g03` and recorded.
#[tokio::test]
async fn a_rename_on_the_origin_does_not_carry_a_suspect_copy() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (source, destination) = pair_of_disks(6).await;
    failed_mirror(&engine, &source, &destination).await;

    source
        .inner
        .rename(&rel("d/f03"), &rel("d/g03"))
        .await
        .unwrap();
    settle(&engine, &source, &destination).await;
    assert_eq!(
        destination
            .inner
            .read_to_bytes(&rel("d/g03"))
            .await
            .unwrap(),
        Bytes::from("content 3")
    );
    destination.assert_nothing_lost("");
}

/// A dry run after the failed flush lists the copies to be made again, and leaves the mark
/// and the intents for the real run.
#[tokio::test]
async fn a_dry_run_keeps_the_mark_and_lists_the_recopies() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (source, destination) = pair_of_disks(6).await;
    let lost = failed_mirror(&engine, &source, &destination).await;

    let p = pair(&source, &destination, SyncMode::SourceToDestination)
        .with_options(SyncOptions::default().with_dry_run(true));
    let stats = engine.sync_pair(&p).await.unwrap();
    assert!(stats.dry_run);
    assert_eq!(stats.uploaded, lost as u64, "{stats:?}");
    let store = StateStore::open(state.path(), &p.id().await.unwrap()).unwrap();
    assert_eq!(store.unflushed_sides().unwrap(), [false, true]);
    assert_eq!(store.intents().unwrap().len(), lost);
    drop(store);

    settle(&engine, &source, &destination).await;
    assert!(destination.lost().is_empty(), "{:?}", destination.lost());
}

/// The re-copy run killed part way (its future dropped, as SIGKILL ends a process: no
/// state is written after). The kernel writes its re-copies back meanwhile (the disk works
/// again); the run after it must still make the others again. Before: the mark and the
/// intents went as the killed run began, and the copies it had not reached were trusted.
#[tokio::test]
async fn a_recopy_run_killed_part_way_leaves_the_rest_suspect() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (source, destination) = pair_of_disks(12).await;
    failed_mirror(&engine, &source, &destination).await;

    let killed = Arc::new(Notify::new());
    *destination.kill_after.lock().unwrap() = Some((3, killed.clone()));
    let one = SyncEngine::new(state.path());
    let p = pair(&source, &destination, SyncMode::SourceToDestination)
        .with_options(SyncOptions::default().with_transfers(1));
    tokio::select! {
        biased;
        _ = killed.notified() => {}
        r = one.sync_pair(&p) => panic!("the run ended before the kill: {r:?}"),
    }
    destination.writeback();
    let left = destination.lost().len();
    assert!(left > 0 && left < 12, "{left} lost after the kill");

    settle(&engine, &source, &destination).await;
    destination.assert_nothing_lost("");
}

/// A second failed flush while the copies are made again: the first barrier of the re-copy
/// run passes, a later one fails before every re-copy is made. The copies it had not
/// reached stay suspect. Before: they were trusted by the run after it (no intent was left
/// for them, their base records said synced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_failed_flush_during_the_recopies_leaves_the_rest_suspect() {
    // More than one batch of base updates (4096): the re-copy run's second barrier comes
    // before its last copies.
    const FILES: usize = 5000;
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let source = LossyDisk::new(Arc::new(MemoryClient::new()), "source");
    for i in 0..FILES {
        source
            .inner
            .put(
                &rel(&format!("d{}/f{i}", i % 50)),
                Bytes::from(format!("c {i}")),
            )
            .await
            .unwrap();
    }
    let destination = LossyDisk::new(Arc::new(MemoryClient::new()), "destination");
    // (The failed barrier ends the run before its last copies: some were never made.)
    failed_mirror(&engine, &source, &destination).await;

    destination.barriers.store(0, Ordering::SeqCst);
    destination.fail_from_barrier.store(2, Ordering::SeqCst);
    let p = pair(&source, &destination, SyncMode::SourceToDestination);
    let err = engine.sync_pair(&p).await.unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Storage {
                side: Side::Destination,
                ..
            }
        ),
        "{err}"
    );
    destination.writeback();
    destination.fail_from_barrier.store(0, Ordering::SeqCst);
    let store = StateStore::open(state.path(), &p.id().await.unwrap()).unwrap();
    assert_eq!(store.unflushed_sides().unwrap(), [false, true]);
    drop(store);

    settle(&engine, &source, &destination).await;
    let left = destination.lost();
    assert!(
        left.is_empty(),
        "the disk lost {} files (first {:?}) and the engine takes them for synced",
        left.len(),
        left.first()
    );
}
