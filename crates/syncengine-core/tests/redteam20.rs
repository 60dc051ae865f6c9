//! Red team 20: the base written in the background (dba1b2a, issue 11). A destination that
//! models a disk cache: what its durability barrier covered (a snapshot taken when the
//! barrier starts, kept once it ends) is what a power loss leaves. Runs are dropped at random
//! moments (mid-barrier, mid-write of a batch) or cancelled, the barrier fails, fails
//! transiently or panics; the base must never record a file the last completed barrier did
//! not cover, and the next run, started at once on the same state, must converge without a
//! conflict and without copying again what the base recorded.

// Test helpers outside #[test] fns unwrap freely: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use syncengine_core::state::StateStore;
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::{
    DeleteOptions, MemoryClient, RelPath, Result, StorageClient, StorageClientExt, SyncEngine,
    SyncError, SyncMode, SyncPair,
};
use tokio_util::sync::CancellationToken;

/// More files than one batch of base updates (4096): batches are cut while copies go on.
const FILES: usize = 9000;

/// How the barrier behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Barrier {
    /// Ends after a short sleep.
    Normal,
    /// Barrier number `n` never ends (signals `hanging` first).
    HangAt(u64),
    /// Barrier number `n` fails with a transient error once, then works.
    TransientAt(u64),
    /// Barrier number `n` panics.
    PanicAt(u64),
    /// Barrier number `n` and all later fail as a failed disk flush.
    FailFrom(u64),
}

/// A destination whose writes are volatile until a barrier covers them.
#[derive(Debug)]
struct CachedDisk {
    inner: Arc<MemoryClient>,
    /// What a power loss would leave: the files as of the start of the last completed
    /// barrier.
    durable: Mutex<BTreeMap<RelPath, Bytes>>,
    barriers: AtomicU64,
    mode: Mutex<Barrier>,
    hanging: tokio::sync::Notify,
    hung: AtomicBool,
    /// Barrier duration, microseconds.
    sleep_us: AtomicU64,
}

impl CachedDisk {
    fn new(mode: Barrier) -> Self {
        CachedDisk {
            inner: Arc::new(MemoryClient::new()),
            durable: Mutex::new(BTreeMap::new()),
            barriers: AtomicU64::new(0),
            mode: Mutex::new(mode),
            hanging: tokio::sync::Notify::new(),
            hung: AtomicBool::new(false),
            sleep_us: AtomicU64::new(2000),
        }
    }
    /// A disk that already holds `inner`'s files, durably.
    fn holding(inner: Arc<MemoryClient>) -> Self {
        let disk = CachedDisk {
            inner,
            ..CachedDisk::new(Barrier::Normal)
        };
        *disk.durable.lock().unwrap() = disk.inner.files();
        disk
    }
    fn set_mode(&self, mode: Barrier) {
        *self.mode.lock().unwrap() = mode;
    }
}

#[async_trait]
impl Hooks for CachedDisk {
    fn inner(&self) -> &dyn StorageClient {
        &*self.inner
    }
    fn backend(&self) -> &'static str {
        "cached"
    }
    async fn sync_written(&self) -> Result<()> {
        let number = self.barriers.fetch_add(1, Ordering::SeqCst) + 1;
        // What the barrier covers: what was written before it started.
        let snapshot = self.inner.files();
        let mode = *self.mode.lock().unwrap();
        match mode {
            Barrier::HangAt(n) if n == number => {
                self.hung.store(true, Ordering::SeqCst);
                self.hanging.notify_one();
                // Until the test changes the mode (never, for a run it drops).
                while *self.mode.lock().unwrap() == mode {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Barrier::TransientAt(n) if n == number => {
                return Err(syncengine_core::Error::transient(
                    "cached",
                    "",
                    "connection reset during flush",
                ));
            }
            Barrier::PanicAt(n) if n == number => panic!("barrier {n} panics"),
            Barrier::FailFrom(n) if number >= n => {
                return Err(syncengine_core::Error::other(
                    "cached",
                    "",
                    "disk flush failed",
                ));
            }
            _ => {}
        }
        let us = self.sleep_us.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_micros(us)).await;
        let mut durable = self.durable.lock().unwrap();
        for (path, body) in snapshot {
            durable.insert(path, body);
        }
        Ok(())
    }
}

async fn source_with_files() -> Arc<MemoryClient> {
    let source = Arc::new(MemoryClient::new());
    for i in 0..FILES {
        let path = RelPath::new(format!("d{}/f{i}", i % 50)).unwrap();
        source
            .put(
                &path,
                Bytes::from(format!("content {i} {}", "x".repeat(i % 7))),
            )
            .await
            .unwrap();
    }
    source
}

/// The records of the base whose destination file a power loss now would take back or
/// leave with other content: none may exist.
fn claims_not_durable(state: &std::path::Path, pair_id: &str, disk: &CachedDisk) -> Vec<String> {
    let store = StateStore::open(state, pair_id).unwrap();
    let records = store.records_with_prefix("").unwrap();
    let durable = disk.durable.lock().unwrap();
    records
        .iter()
        .filter(|r| durable.get(&r.path).map(|b| b.len() as u64) != Some(r.destination.size))
        .map(|r| r.path.to_string())
        .collect()
}

fn recorded(state: &std::path::Path, pair_id: &str) -> u64 {
    StateStore::open(state, pair_id).unwrap().count().unwrap()
}

/// After an interrupted run: the next run, at once on the same state, finishes with no
/// conflict, copies nothing the base recorded, and a third does nothing; the trees match.
async fn converges(
    state: &std::path::Path,
    pair: &SyncPair,
    source: &MemoryClient,
    disk: &CachedDisk,
    what: &str,
) {
    let pair_id = pair.id().await.unwrap();
    disk.set_mode(Barrier::Normal);
    let before = recorded(state, &pair_id);
    let stats = SyncEngine::new(state).sync_pair(pair).await.unwrap();
    assert_eq!(stats.conflicts, 0, "{what}: {stats:?}");
    assert_eq!(stats.errors, 0, "{what}: {stats:?}");
    assert!(
        stats.uploaded <= FILES as u64 - before.min(FILES as u64),
        "{what}: {} uploaded with {before} of {FILES} recorded before",
        stats.uploaded
    );
    let again = SyncEngine::new(state).sync_pair(pair).await.unwrap();
    assert_eq!(again.uploaded + again.conflicts, 0, "{what}: {again:?}");
    let user_files = |c: &MemoryClient| -> BTreeMap<RelPath, Bytes> {
        c.files()
            .into_iter()
            .filter(|(p, _)| !p.as_str().starts_with(".syncengine/"))
            .collect()
    };
    let (src, dst) = (user_files(source), user_files(&disk.inner));
    let differ = src.iter().filter(|(p, b)| dst.get(*p) != Some(*b)).count();
    assert!(
        differ == 0 && src.len() == dst.len(),
        "{what}: {differ} files differ, {} vs {}",
        src.len(),
        dst.len()
    );
    assert_eq!(recorded(state, &pair_id), FILES as u64, "{what}");
    let store = StateStore::open(state, &pair_id).unwrap();
    assert!(store.intents().unwrap().is_empty(), "{what}: intents left");
    assert!(
        claims_not_durable(state, &pair_id, disk).is_empty(),
        "{what}"
    );
}

/// A run dropped while a barrier hangs (the first, or one cut part way), then a second run
/// started at once on the same state: nothing the hung barrier was to cover is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_dropped_mid_barrier_records_nothing_the_barrier_did_not_cover() {
    for hang in [1, 2, 3] {
        let state = tempfile::tempdir().unwrap();
        let source = source_with_files().await;
        let disk = Arc::new(Forwarding::new(CachedDisk::new(Barrier::HangAt(hang))));
        let pair = SyncPair::new(source.clone(), disk.clone(), SyncMode::SourceToDestination);
        let engine = SyncEngine::new(state.path());
        tokio::select! {
            r = engine.sync_pair(&pair) => {
                // Fewer barriers than `hang`: the run ended without it.
                assert!(!disk.hung.load(Ordering::SeqCst), "{r:?}");
                continue;
            }
            () = disk.hanging.notified() => {}
        }
        // The run is dropped here, its barrier hanging.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pair_id = pair.id().await.unwrap();
        let bad = claims_not_durable(state.path(), &pair_id, &disk);
        assert!(
            bad.is_empty(),
            "hang at barrier {hang}: {} records not durable, e.g. {:?}",
            bad.len(),
            &bad[..bad.len().min(3)]
        );
        converges(state.path(), &pair, &source, &disk, &format!("hang {hang}")).await;
    }
}

/// Runs dropped at random moments (in a barrier, in the write of a batch, between), each
/// followed at once by a run on the same state: at every drop, the base claims only what
/// the barriers covered; the runs converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_dropped_at_random_moments_claim_only_durable_files() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    for round in 0..6 {
        let state = tempfile::tempdir().unwrap();
        let source = source_with_files().await;
        let disk = Arc::new(Forwarding::new(CachedDisk::new(Barrier::Normal)));
        disk.sleep_us
            .store(rng.random_range(0..50_000), Ordering::SeqCst);
        let pair = SyncPair::new(source.clone(), disk.clone(), SyncMode::SourceToDestination);
        let pair_id = pair.id().await.unwrap();
        // Several drops in a row on the same state, then a run to the end.
        for drop_no in 0..3 {
            let after = Duration::from_millis(rng.random_range(1..1500));
            let engine = SyncEngine::new(state.path());
            let _ = tokio::time::timeout(after, engine.sync_pair(&pair)).await;
            let bad = claims_not_durable(state.path(), &pair_id, &disk);
            assert!(
                bad.is_empty(),
                "round {round} drop {drop_no} after {after:?}: {} records not durable",
                bad.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let bad = claims_not_durable(state.path(), &pair_id, &disk);
        assert!(bad.is_empty(), "round {round}: {} not durable", bad.len());
        converges(
            state.path(),
            &pair,
            &source,
            &disk,
            &format!("round {round}"),
        )
        .await;
    }
}

/// A cancel fired while a barrier runs: the run ends cancelled, once the barrier ends; what
/// it recorded is durable, and the next run converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_mid_barrier_records_only_durable_files() {
    for hang in [1, 2] {
        let state = tempfile::tempdir().unwrap();
        let source = source_with_files().await;
        let disk = Arc::new(Forwarding::new(CachedDisk::new(Barrier::HangAt(hang))));
        let pair = SyncPair::new(source.clone(), disk.clone(), SyncMode::SourceToDestination);
        let token = CancellationToken::new();
        let engine = SyncEngine::new(state.path()).with_cancellation(token.clone());
        let run = engine.sync_pair(&pair);
        let disk2 = disk.clone();
        let cancel = async move {
            disk2.hanging.notified().await;
            token.cancel();
            // Let the hung barrier end: the run must then finish cancelled.
            tokio::time::sleep(Duration::from_millis(50)).await;
            disk2.set_mode(Barrier::Normal);
        };
        // The barrier ends once the mode changes: the cancelled run must then end.
        let (r, ()) = tokio::join!(run, cancel);
        let pair_id = pair.id().await.unwrap();
        assert!(matches!(r, Err(SyncError::Cancelled)), "hang {hang}: {r:?}");
        let bad = claims_not_durable(state.path(), &pair_id, &disk);
        assert!(bad.is_empty(), "hang {hang}: {} not durable", bad.len());
        converges(
            state.path(),
            &pair,
            &source,
            &disk,
            &format!("cancel {hang}"),
        )
        .await;
    }
}

/// A barrier that fails transiently once is retried: the run ends well and records all.
/// One that panics or fails ends the run with an error and nothing past the last good
/// barrier recorded; the next run converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_barriers_record_only_durable_files() {
    for mode in [
        Barrier::TransientAt(1),
        Barrier::TransientAt(2),
        Barrier::PanicAt(1),
        Barrier::PanicAt(2),
        Barrier::FailFrom(2),
        Barrier::FailFrom(3),
    ] {
        let state = tempfile::tempdir().unwrap();
        let source = source_with_files().await;
        let disk = Arc::new(Forwarding::new(CachedDisk::new(mode)));
        let pair = SyncPair::new(source.clone(), disk.clone(), SyncMode::SourceToDestination);
        let pair_id = pair.id().await.unwrap();
        let r = SyncEngine::new(state.path()).sync_pair(&pair).await;
        match mode {
            Barrier::TransientAt(_) => {
                let stats = r.unwrap();
                assert_eq!(stats.uploaded, FILES as u64, "{mode:?}");
                assert_eq!(recorded(state.path(), &pair_id), FILES as u64, "{mode:?}");
            }
            _ => assert!(r.is_err(), "{mode:?}: {r:?}"),
        }
        let bad = claims_not_durable(state.path(), &pair_id, &disk);
        assert!(bad.is_empty(), "{mode:?}: {} not durable", bad.len());
        converges(state.path(), &pair, &source, &disk, &format!("{mode:?}")).await;
    }
}

/// Records of the base that a power loss now would falsify on `side`'s disk in the
/// dangerous way: the side holds the recorded version (by size) now, but its disk has not
/// made it durable (absent or another version there). A file deleted since its record is
/// not counted: a base claiming a file that is gone is read as a deletion, never as a copy.
fn volatile_claims(state: &std::path::Path, pair_id: &str, disks: [&CachedDisk; 2]) -> Vec<String> {
    let store = StateStore::open(state, pair_id).unwrap();
    let records = store.records_with_prefix("").unwrap();
    let mut bad = Vec::new();
    for (i, disk) in disks.iter().enumerate() {
        let durable = disk.durable.lock().unwrap();
        let live = disk.inner.files();
        for r in &records {
            let rec = if i == 0 { &r.source } else { &r.destination };
            if r.settled.is_some() {
                continue;
            }
            let size = |m: &BTreeMap<RelPath, Bytes>| m.get(&r.path).map(|b| b.len() as u64);
            if size(&live) == Some(rec.size) && size(&durable) != Some(rec.size) {
                bad.push(format!("{} on side {i}", r.path));
            }
        }
    }
    bad
}

/// Two-way, both sides disks with a cache: files added on both sides, edited on the
/// source, deleted on the destination between runs dropped at random moments. At each
/// drop the base claims only durable versions; in the end both sides hold every version
/// last written, with no conflict, and a further run does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_runs_dropped_at_random_moments_lose_nothing() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2020);
    for round in 0..4 {
        let state = tempfile::tempdir().unwrap();
        let source = Arc::new(Forwarding::new(CachedDisk::holding(Arc::new(
            MemoryClient::new(),
        ))));
        let destination = Arc::new(Forwarding::new(CachedDisk::holding(Arc::new(
            MemoryClient::new(),
        ))));
        for d in [&source, &destination] {
            d.sleep_us
                .store(rng.random_range(0..30_000), Ordering::SeqCst);
        }
        let pair = SyncPair::new(source.clone(), destination.clone(), SyncMode::TwoWay);
        let pair_id = pair.id().await.unwrap();
        let mut expect: BTreeMap<RelPath, Bytes> = BTreeMap::new();
        let mut n = 0u64;
        for step in 0..5 {
            // New files on both sides.
            for _ in 0..3000 {
                n += 1;
                let (disk, tag) = if rng.random_bool(0.5) {
                    (&source, "s")
                } else {
                    (&destination, "d")
                };
                let path = RelPath::new(format!("{tag}{}/f{n}", n % 30)).unwrap();
                let body = Bytes::from(format!("{n} {}", "y".repeat(rng.random_range(0..30))));
                disk.inner.put(&path, body.clone()).await.unwrap();
                expect.insert(path, body);
            }
            // Edits on the source of its own files, deletes on the destination of its own
            // files (which the runs so far may or may not have copied).
            let paths: Vec<RelPath> = expect.keys().cloned().collect();
            for _ in 0..40 {
                let path = &paths[rng.random_range(0..paths.len())];
                if path.as_str().starts_with('s') {
                    let body = Bytes::from(format!(
                        "edit {step} {}",
                        "z".repeat(rng.random_range(0..40))
                    ));
                    source.inner.put(path, body.clone()).await.unwrap();
                    expect.insert(path.clone(), body);
                } else if destination.inner.files().contains_key(path) {
                    destination
                        .inner
                        .delete_opts(path, DeleteOptions::default())
                        .await
                        .unwrap();
                    // Copied to the source or not yet, it is gone for good: an
                    // interrupted copy's intent tells the next run the copy landed.
                    expect.remove(path);
                }
            }
            let after = Duration::from_millis(rng.random_range(1..2000));
            let engine = SyncEngine::new(state.path());
            let _ = tokio::time::timeout(after, engine.sync_pair(&pair)).await;
            let bad = volatile_claims(state.path(), &pair_id, [&source, &destination]);
            assert!(
                bad.is_empty(),
                "round {round} step {step} after {after:?}: {} volatile claims, e.g. {:?}",
                bad.len(),
                &bad[..bad.len().min(3)]
            );
        }
        let stats = SyncEngine::new(state.path())
            .sync_pair(&pair)
            .await
            .unwrap();
        assert_eq!(stats.conflicts, 0, "round {round}: {stats:?}");
        let again = SyncEngine::new(state.path())
            .sync_pair(&pair)
            .await
            .unwrap();
        assert_eq!(
            again.uploaded
                + again.downloaded
                + again.conflicts
                + again.deleted_source
                + again.deleted_destination,
            0,
            "round {round}: {again:?}"
        );
        for (name, disk) in [("source", &source), ("destination", &destination)] {
            let files: BTreeMap<RelPath, Bytes> = disk
                .inner
                .files()
                .into_iter()
                .filter(|(p, _)| !p.as_str().starts_with(".syncengine/"))
                .collect();
            let wrong = expect
                .iter()
                .filter(|(p, b)| files.get(*p) != Some(*b))
                .count();
            let extra = files.keys().filter(|p| !expect.contains_key(*p)).count();
            assert!(
                wrong == 0 && extra == 0,
                "round {round} {name}: {wrong} versions wrong or missing, {extra} extra"
            );
        }
    }
}
