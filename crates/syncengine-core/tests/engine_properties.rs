//! Engine-level properties over `MemoryClient`s: random trees and random edits converge
//! without losing a version; a second run is idle; cancellation and failed listings are safe.

// Test helpers outside #[test] fns unwrap freely: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use proptest::prelude::*;
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::{
    ByteStream, Entry, MemoryClient, RelPath, Result, StorageClient, StorageClientExt, SyncEngine,
    SyncError, SyncMode, SyncOptions, SyncPair, WriteOptions,
};
use tokio_util::sync::CancellationToken;

static VERSION: AtomicU64 = AtomicU64::new(0);

/// A unique content for every version written, so versions can be traced.
fn fresh_content() -> String {
    format!("version-{}", VERSION.fetch_add(1, Ordering::Relaxed))
}

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// The synced files of a side: everything but the engine's own `.syncengine/` (the trash).
async fn contents(client: &MemoryClient) -> BTreeMap<String, String> {
    client
        .files()
        .into_iter()
        .filter(|(p, _)| !p.as_str().starts_with(".syncengine/"))
        .map(|(p, b)| (p.to_string(), String::from_utf8_lossy(&b).into_owned()))
        .collect()
}

#[derive(Clone, Debug)]
enum Edit {
    Keep,
    Modify,
    Delete,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![4 => Just(Edit::Keep), 1 => Just(Edit::Modify), 1 => Just(Edit::Delete)]
}

fn path() -> impl Strategy<Value = String> {
    // Few names and shallow trees, so edits collide often (conflicts, modify-vs-delete).
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "a b", "a.b", "é", "c-d"]),
        1..=3,
    )
    .prop_map(|segs| segs.join("/"))
}

/// Paths where one is a strict prefix directory of another would make the local backend
/// impossible; MemoryClient allows them, but keep trees realistic anyway.
fn tree() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(path(), 0..12).prop_map(|set| {
        let all: Vec<String> = set.iter().cloned().collect();
        set.into_iter()
            .filter(|p| !all.iter().any(|q| q.starts_with(&format!("{p}/"))))
            .collect()
    })
}

fn mode() -> impl Strategy<Value = SyncMode> {
    prop::sample::select(SyncMode::ALL.to_vec())
}

async fn sync(
    engine: &SyncEngine,
    s: &Arc<MemoryClient>,
    d: &Arc<MemoryClient>,
    mode: SyncMode,
) -> syncengine_core::SyncStats {
    let pair = SyncPair::new(s.clone(), d.clone(), mode)
        .with_options(SyncOptions::default().with_force(true));
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
    stats
}

/// Applies edits to one side's copy of the base; returns the new versions it wrote.
async fn apply_edits(
    client: &MemoryClient,
    base: &BTreeMap<String, String>,
    edits: &[Edit],
    additions: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut written = BTreeSet::new();
    for ((path, _), edit) in base.iter().zip(edits.iter().cycle()) {
        match edit {
            Edit::Keep => {}
            Edit::Modify => {
                let c = fresh_content();
                client
                    .put(&rel(path), Bytes::from(c.clone()))
                    .await
                    .unwrap();
                written.insert(c);
            }
            Edit::Delete => client.delete(&rel(path)).await.unwrap(),
        }
    }
    for path in additions {
        let clashes = base
            .keys()
            .any(|b| b.starts_with(&format!("{path}/")) || path.starts_with(&format!("{b}/")));
        if clashes || base.contains_key(path) {
            continue;
        }
        let c = fresh_content();
        client
            .put(&rel(path), Bytes::from(c.clone()))
            .await
            .unwrap();
        written.insert(c);
    }
    written
}

/// A pair synced once two-way from `initial`, then edited on both sides.
struct Edited {
    _state: tempfile::TempDir,
    engine: SyncEngine,
    s: Arc<MemoryClient>,
    d: Arc<MemoryClient>,
    base: BTreeMap<String, String>,
    new_versions: BTreeSet<String>,
}

async fn synced_then_edited(
    initial: &BTreeSet<String>,
    src_edits: &[Edit],
    dst_edits: &[Edit],
    src_adds: &BTreeSet<String>,
    dst_adds: &BTreeSet<String>,
) -> Edited {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    for p in initial {
        s.put(&rel(p), Bytes::from(fresh_content())).await.unwrap();
    }
    sync(&engine, &s, &d, SyncMode::TwoWay).await;
    let base = contents(&s).await;
    assert_eq!(
        base,
        contents(&d).await,
        "base sync left the sides different"
    );
    let mut new_versions = apply_edits(&s, &base, src_edits, src_adds).await;
    new_versions.extend(apply_edits(&d, &base, dst_edits, dst_adds).await);
    Edited {
        _state: state,
        engine,
        s,
        d,
        base,
        new_versions,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// TWO_WAY: after random edits on both sides, every new version survives somewhere, the
    /// sides end equal, and one more run has nothing to do.
    #[test]
    fn two_way_converges_without_losing_versions(
        initial in tree(),
        src_edits in prop::collection::vec(edit(), 1..6),
        dst_edits in prop::collection::vec(edit(), 1..6),
        src_adds in tree(),
        dst_adds in tree(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let Edited { _state, engine, s, d, base, new_versions } =
                synced_then_edited(&initial, &src_edits, &dst_edits, &src_adds, &dst_adds).await;
            let before_s = contents(&s).await;
            let before_d = contents(&d).await;

            let first = sync(&engine, &s, &d, SyncMode::TwoWay).await;
            if first.conflicts > 0 {
                // Kept losers reach the other side on the next run.
                sync(&engine, &s, &d, SyncMode::TwoWay).await;
            }
            let after_s = contents(&s).await;
            let after_d = contents(&d).await;
            assert_eq!(after_s, after_d, "sides differ after sync ({first:?})");

            let surviving: BTreeSet<&String> = after_s.values().collect();
            for v in &new_versions {
                assert!(surviving.contains(v), "new version {v} was lost ({first:?})");
            }
            // An unchanged file may only vanish if the other side deleted it.
            for (path, content) in &base {
                if after_s.contains_key(path) {
                    continue;
                }
                let s_kept = before_s.get(path) == Some(content);
                let d_kept = before_d.get(path) == Some(content);
                let s_deleted = !before_s.contains_key(path);
                let d_deleted = !before_d.contains_key(path);
                assert!(
                    (s_kept && d_deleted) || (d_kept && s_deleted) || (s_deleted && d_deleted),
                    "{path} vanished although no side deleted it"
                );
            }
            let again = sync(&engine, &s, &d, SyncMode::TwoWay).await;
            assert!(again.is_noop(), "third run not idle: {again:?}");
        });
    }

    /// Every mode: after a run, the next run does nothing.
    #[test]
    fn second_run_is_idle_in_every_mode(
        mode in mode(),
        initial in tree(),
        src_edits in prop::collection::vec(edit(), 1..6),
        dst_edits in prop::collection::vec(edit(), 1..6),
        src_adds in tree(),
        dst_adds in tree(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let Edited { _state, engine, s, d, .. } =
                synced_then_edited(&initial, &src_edits, &dst_edits, &src_adds, &dst_adds).await;
            let first = sync(&engine, &s, &d, mode).await;
            let second = sync(&engine, &s, &d, mode).await;
            // A conflict's kept loser is a new file for the next run to spread; after that
            // the pair must be idle.
            let settled = if first.conflicts > 0 { sync(&engine, &s, &d, mode).await } else { second };
            assert!(settled.is_noop(), "{mode}: not idle after sync: {settled:?} (first {first:?})");
        });
    }
}

/// A listing that fails part way is an error for the run and nothing is deleted.
#[tokio::test]
async fn failed_listing_deletes_nothing() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    for i in 0..10 {
        s.put(&rel(&format!("f{i}")), Bytes::from(fresh_content()))
            .await
            .unwrap();
    }
    sync(&engine, &s, &d, SyncMode::TwoWay).await;
    s.fail_listing_after(Some(3));
    let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::SourceToDestination)
        .with_options(SyncOptions::default().with_force(true));
    let err = engine.sync_pair(&pair).await.unwrap_err();
    assert!(
        matches!(err, SyncError::Listing { .. }),
        "expected a listing error, got {err}"
    );
    assert_eq!(
        contents(&d).await.len(),
        10,
        "a partial listing led to deletes"
    );
}

/// Wraps a client and slows its writes, so a run can be cancelled part way; optionally its
/// durability barrier fails.
#[derive(Debug)]
struct SlowWrites(Arc<MemoryClient>, bool);

#[async_trait]
impl Hooks for SlowWrites {
    fn inner(&self) -> &dyn StorageClient {
        &*self.0
    }
    fn backend(&self) -> &'static str {
        "slow"
    }
    async fn write_opts(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.0.write_opts(path, body, opts).await
    }
    async fn sync_written(&self) -> Result<()> {
        if self.1 {
            Err(syncengine_core::Error::other(
                "slow",
                "",
                "disk flush failed",
            ))
        } else {
            Ok(())
        }
    }
}

/// Cancelling part way stops cleanly: no deletes, the base is true for what was done, and
/// the next run converges without re-transferring completed files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_run_resumes_without_redoing_work() {
    let state = tempfile::tempdir().unwrap();
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    for i in 0..6 {
        s.put(&rel(&format!("old/{i}")), Bytes::from(fresh_content()))
            .await
            .unwrap();
    }
    let plain = SyncEngine::new(state.path());
    sync(&plain, &s, &d, SyncMode::TwoWay).await;
    // One deletion to propagate and 200 new files to upload.
    s.delete(&rel("old/0")).await.unwrap();
    for i in 0..200 {
        s.put(&rel(&format!("new/{i:03}")), Bytes::from(fresh_content()))
            .await
            .unwrap();
    }

    let token = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = SyncEngine::new(state.path())
        .with_progress(tx)
        .with_cancellation(token.clone());
    let slow_dst: Arc<dyn StorageClient> = Arc::new(Forwarding::new(SlowWrites(d.clone(), false)));
    let pair = SyncPair::new(s.clone(), slow_dst, SyncMode::TwoWay)
        .with_options(SyncOptions::default().with_transfers(4));
    let run = tokio::spawn(async move { engine.sync_pair(&pair).await });
    let mut done = 0u64;
    while let Some(event) = rx.recv().await {
        if let syncengine_core::ProgressEvent::Done { .. } = event {
            done += 1;
            if done == 40 {
                token.cancel();
            }
        }
    }
    let result = run.await.unwrap();
    assert!(
        matches!(result, Err(SyncError::Cancelled)),
        "expected Cancelled, got {result:?}"
    );
    assert!(
        d.files().contains_key(&rel("old/0")),
        "a delete ran after the cancel"
    );
    let uploaded_before = d
        .files()
        .keys()
        .filter(|p| p.as_str().starts_with("new/"))
        .count() as u64;
    assert!((40..200).contains(&uploaded_before), "{uploaded_before}");

    let resumed = sync(&plain, &s, &d, SyncMode::TwoWay).await;
    assert_eq!(
        resumed.uploaded,
        200 - uploaded_before,
        "completed uploads were redone or skipped"
    );
    assert_eq!(resumed.deleted_destination, 1);
    assert_eq!(contents(&s).await, contents(&d).await);
}

/// The base records a copy only after the destination's durability barrier succeeded: when the
/// flush fails, the run fails and the base claims nothing.
#[tokio::test]
async fn base_waits_for_the_durability_barrier() {
    let state = tempfile::tempdir().unwrap();
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    for i in 0..5 {
        s.put(&rel(&format!("f{i}")), Bytes::from(fresh_content()))
            .await
            .unwrap();
    }
    let failing: Arc<dyn StorageClient> = Arc::new(Forwarding::new(SlowWrites(d.clone(), true)));
    let pair = SyncPair::new(s.clone(), failing, SyncMode::TwoWay);
    let err = SyncEngine::new(state.path())
        .sync_pair(&pair)
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Storage { .. }), "{err}");
    let store =
        syncengine_core::state::StateStore::open(state.path(), &pair.id().await.unwrap()).unwrap();
    assert_eq!(
        store.count().unwrap(),
        0,
        "the base recorded unflushed copies"
    );
}
