//! The base is written in batches, each after a durability barrier on both sides, in the
//! background while the copies go on (issue 11): a barrier (`syncfs` on a local disk) can
//! take seconds, and a run that waited for each one stalled every copy meanwhile. What the
//! base records must still be what the barriers covered, and a failed barrier must still end
//! the run with nothing past it recorded.

// Test helpers outside #[test] fns unwrap freely: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use syncengine_core::state::StateStore;
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::{
    ByteStream, Entry, MemoryClient, RelPath, Result, Side, StorageClient, StorageClientExt,
    SyncEngine, SyncError, SyncMode, SyncPair, WriteOptions,
};

/// More files than one batch of base updates holds (4096), so a batch is cut part way.
const FILES: usize = 6000;

/// Copies from this number on wait for the first barrier to start when the watch is patient:
/// past the first batch (4096) and the copies in flight with it.
const HELD_FROM: u64 = 5000;

/// How long the first barrier waits for a copy to land while it runs: far longer than a copy
/// takes, short enough that a run whose copies wait for the barrier still ends.
const PATIENCE: Duration = Duration::from_secs(20);

/// Wraps a client and watches its durability barriers: made [`patient`](Self::patient), the
/// first one waits until a write lands while it runs (or [`PATIENCE`] passes) and counts the
/// writes that did; barriers from number `fail_from` on fail as a disk's failed flush does.
#[derive(Debug)]
struct WatchedBarrier {
    inner: Arc<MemoryClient>,
    writes: AtomicU64,
    barriers: AtomicU64,
    writes_during_first: AtomicU64,
    fail_from: Option<u64>,
    /// Writes from this number on never end (a run killed in the middle of them); the
    /// first one to start wakes [`WatchedBarrier::hung`].
    hang_from: Option<u64>,
    hung: tokio::sync::Notify,
    /// The first barrier waits for a write to land while it runs ([`PATIENCE`]).
    patient: bool,
}

impl WatchedBarrier {
    fn new(inner: Arc<MemoryClient>, fail_from: Option<u64>) -> Self {
        WatchedBarrier {
            inner,
            writes: AtomicU64::new(0),
            barriers: AtomicU64::new(0),
            writes_during_first: AtomicU64::new(0),
            fail_from,
            hang_from: None,
            hung: tokio::sync::Notify::new(),
            patient: false,
        }
    }

    fn patient(mut self) -> Self {
        self.patient = true;
        self
    }

    fn hanging_from(mut self, write: u64) -> Self {
        self.hang_from = Some(write);
        self
    }
}

#[async_trait]
impl Hooks for WatchedBarrier {
    fn inner(&self) -> &dyn StorageClient {
        &*self.inner
    }
    fn backend(&self) -> &'static str {
        "watched"
    }
    async fn write_opts(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        if self
            .hang_from
            .is_some_and(|from| self.writes.load(Ordering::SeqCst) >= from)
        {
            self.hung.notify_one();
            std::future::pending::<()>().await;
        }
        // Made patient, the copies after the first batch's wait (up to PATIENCE) until its
        // barrier has started: on a loaded machine they could all be done before it starts,
        // and none could land while it runs.
        if self.patient && self.writes.load(Ordering::SeqCst) >= HELD_FROM {
            let started = Instant::now();
            while self.barriers.load(Ordering::SeqCst) == 0 && started.elapsed() < PATIENCE {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let entry = self.inner.write_opts(path, body, opts).await?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(entry)
    }
    async fn sync_written(&self) -> Result<()> {
        let number = self.barriers.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_from.is_some_and(|from| number >= from) {
            return Err(syncengine_core::Error::other(
                "watched",
                "",
                "disk flush failed",
            ));
        }
        if number == 1 && self.patient {
            let before = self.writes.load(Ordering::SeqCst);
            let started = Instant::now();
            while self.writes.load(Ordering::SeqCst) == before && started.elapsed() < PATIENCE {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            self.writes_during_first.store(
                self.writes.load(Ordering::SeqCst) - before,
                Ordering::SeqCst,
            );
        }
        Ok(())
    }
}

async fn source_with_files() -> Arc<MemoryClient> {
    let source = Arc::new(MemoryClient::new());
    for i in 0..FILES {
        let path = RelPath::new(format!("d{}/f{i}", i % 50)).unwrap();
        source
            .put(&path, Bytes::from(format!("content {i}")))
            .await
            .unwrap();
    }
    source
}

fn recorded(state: &std::path::Path, pair_id: &str) -> u64 {
    StateStore::open(state, pair_id).unwrap().count().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_go_on_while_a_batch_is_made_durable() {
    let state = tempfile::tempdir().unwrap();
    let source = source_with_files().await;
    let destination = Arc::new(Forwarding::new(
        WatchedBarrier::new(Arc::new(MemoryClient::new()), None).patient(),
    ));
    let pair = SyncPair::new(
        source.clone(),
        destination.clone(),
        SyncMode::SourceToDestination,
    );
    let engine = SyncEngine::new(state.path());
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, FILES as u64, "{stats:?}");
    assert!(
        destination.barriers.load(Ordering::SeqCst) >= 2,
        "expected a batch cut part way and a last one at the end"
    );
    assert!(
        destination.writes_during_first.load(Ordering::SeqCst) > 0,
        "no copy landed while the first batch was made durable: the copies waited for it"
    );
    let pair_id = pair.id().await.unwrap();
    assert_eq!(recorded(state.path(), &pair_id), FILES as u64);
    let again = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(again.uploaded + again.downloaded, 0, "{again:?}");
}

/// A barrier that fails in the background ends the run, and the base records nothing the
/// failed barrier was to cover: with the first barrier failing, nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_background_barrier_records_nothing_it_covered() {
    for fail_from in [1, 2] {
        let state = tempfile::tempdir().unwrap();
        let source = source_with_files().await;
        let destination = Arc::new(Forwarding::new(WatchedBarrier::new(
            Arc::new(MemoryClient::new()),
            Some(fail_from),
        )));
        let pair = SyncPair::new(
            source.clone(),
            destination.clone(),
            SyncMode::SourceToDestination,
        );
        let err = SyncEngine::new(state.path())
            .sync_pair(&pair)
            .await
            .unwrap_err();
        assert!(matches!(err, SyncError::Storage { .. }), "{err}");
        let count = recorded(state.path(), &pair.id().await.unwrap());
        if fail_from == 1 {
            assert_eq!(count, 0, "the base recorded copies no barrier covered");
        } else {
            // The first batch passed its barrier; the rest never did.
            assert!(
                count > 0 && count < FILES as u64,
                "expected only the first batch recorded, found {count} of {FILES}"
            );
        }
    }
}

/// A failed barrier leaves copies that read back whole from the page cache while the disk
/// may have lost them (`syncfs` reports a writeback error once, and the pages stay cached).
/// The next run must not record them as landed by their size and mtime, as it does after a
/// kill: it copies each of them again, says so, and the run after that has nothing to do.
/// Both directions: the destination's barrier failing under a mirror, the source's under a
/// two-way run whose files come from the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_made_before_a_failed_barrier_are_made_again() {
    for written in [Side::Destination, Side::Source] {
        let state = tempfile::tempdir().unwrap();
        let origin = source_with_files().await;
        let target = Arc::new(MemoryClient::new());
        let sides = |barrier: Arc<Forwarding<WatchedBarrier>>| -> [Arc<dyn StorageClient>; 2] {
            match written {
                Side::Destination => [origin.clone(), barrier],
                Side::Source => [barrier, origin.clone()],
            }
        };
        let mode = match written {
            Side::Destination => SyncMode::SourceToDestination,
            Side::Source => SyncMode::TwoWay,
        };
        let failing = Arc::new(Forwarding::new(WatchedBarrier::new(
            target.clone(),
            Some(1),
        )));
        let [source, destination] = sides(failing.clone());
        let pair = SyncPair::new(source, destination, mode);
        let engine = SyncEngine::new(state.path());
        let err = engine.sync_pair(&pair).await.unwrap_err();
        assert!(
            matches!(err, SyncError::Storage { side, .. } if side == written),
            "{err}"
        );
        let landed = failing.writes.load(Ordering::SeqCst);
        assert!(landed > 0, "no copy was made before the barrier failed");
        let pair_id = pair.id().await.unwrap();
        let store = StateStore::open(state.path(), &pair_id).unwrap();
        let mut marked = [false; 2];
        marked[written.index()] = true;
        assert_eq!(store.unflushed_sides().unwrap(), marked);
        drop(store);

        let healthy = Arc::new(Forwarding::new(WatchedBarrier::new(target.clone(), None)));
        let [source, destination] = sides(healthy.clone());
        let pair = SyncPair::new(source, destination, mode);
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(
            stats.uploaded + stats.downloaded,
            FILES as u64,
            "the {landed} copies made before the failed barrier were taken for landed: {stats:?}"
        );
        // Every copy made before the failure is named in the count (the failed run's
        // writes also hold the roots' generation files).
        let again: Vec<u64> = stats
            .warnings
            .iter()
            .filter_map(|w| {
                let (count, rest) = w.split_once(' ')?;
                rest.starts_with("files an earlier run copied before its flush failed")
                    .then(|| count.parse().ok())?
            })
            .collect();
        assert!(
            again.len() == 1 && again[0] > 0 && again[0] <= landed,
            "{landed} writes, warnings {:?}",
            stats.warnings
        );
        let store = StateStore::open(state.path(), &pair_id).unwrap();
        assert_eq!(store.unflushed_sides().unwrap(), [false; 2]);
        assert_eq!(store.count().unwrap(), FILES as u64);
        drop(store);
        let again = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(again.uploaded + again.downloaded, 0, "{again:?}");
    }
}

/// The suspicion a failed barrier leaves must outlive a run killed before the copies it
/// makes again are durable: that run's copies are no better than the first ones until a
/// barrier covers them. Here the run that copies again stops for good at its 100th write,
/// before any barrier, and is dropped (a kill). The run after it must still copy every
/// file again (none of them was recorded durably), then the pair is in sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_while_copying_again_leaves_the_suspicion_in_place() {
    let state = tempfile::tempdir().unwrap();
    let source = source_with_files().await;
    let target = Arc::new(MemoryClient::new());
    let engine = SyncEngine::new(state.path());
    let run = |destination: Arc<Forwarding<WatchedBarrier>>| {
        let pair = SyncPair::new(source.clone(), destination, SyncMode::SourceToDestination);
        let engine = &engine;
        async move { engine.sync_pair(&pair).await }
    };
    let failing = Arc::new(Forwarding::new(WatchedBarrier::new(
        target.clone(),
        Some(1),
    )));
    run(failing.clone()).await.unwrap_err();
    assert!(failing.writes.load(Ordering::SeqCst) > 100);

    let killed = Arc::new(Forwarding::new(
        WatchedBarrier::new(target.clone(), None).hanging_from(100),
    ));
    tokio::select! {
        result = run(killed.clone()) => panic!("the run was to hang: {result:?}"),
        () = killed.hung.notified() => {}
    }

    let healthy = Arc::new(Forwarding::new(WatchedBarrier::new(target.clone(), None)));
    let stats = run(healthy.clone()).await.unwrap();
    assert_eq!(
        stats.uploaded, FILES as u64,
        "files taken for landed after the killed run: {stats:?}"
    );
    let again = run(healthy).await.unwrap();
    assert_eq!(again.uploaded + again.downloaded, 0, "{again:?}");
}
