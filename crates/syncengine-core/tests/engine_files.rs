//! The engine's own small files — each root's `.syncengine/root-id` and `.syncignore` — are
//! read verified, like transfers (behaviour 7): a short or corrupt read is retried and, if it
//! stays bad, fails the run with an error naming the file. It is never taken for a missing
//! file, a changed root (exit 3) or a file without rules.
#![cfg(feature = "testing")]
// Test code: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::testing::{Fault, FaultClient, FaultConfig};
use syncengine_core::{
    MemoryClient, Recovery, RelPath, Side, StorageClient, StorageClientExt, SyncEngine, SyncError,
    SyncMode, SyncOptions, SyncPair, SyncStats,
};

const ROOT_ID: &str = ".syncengine/root-id";
const SYNCIGNORE: &str = ".syncignore";

/// Rules whose every proper prefix loses some exclusion: a cut anywhere in the file lets at
/// least one excluded path through.
const RULES: &str = "# build output and editor leftovers are never synced\n\
                     build/\n\
                     *.tmp\n\
                     *.log\n\
                     cache/\n";

/// Paths [`RULES`] exclude, on the source.
const EXCLUDED: [&str; 4] = ["build/out.o", "draft.tmp", "run.log", "cache/blob"];

/// Paths [`RULES`] exclude, on the destination: a mirror run that lost the rules would
/// delete them.
const DEST_EXCLUDED: [&str; 4] = ["build/local.o", "local.tmp", "local.log", "cache/local"];

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// Every file of a side except the engine's own folder.
fn user_files(c: &MemoryClient) -> BTreeMap<String, Bytes> {
    c.files()
        .into_iter()
        .filter(|(p, _)| !p.as_str().starts_with(".syncengine/"))
        .map(|(p, b)| (p.to_string(), b))
        .collect()
}

/// Everything in a side's trash.
fn trash(c: &MemoryClient) -> Vec<String> {
    c.files()
        .into_keys()
        .map(|p| p.to_string())
        .filter(|p| p.starts_with(".syncengine/trash/"))
        .collect()
}

async fn put(c: &MemoryClient, path: &str, data: &str) {
    c.put(&rel(path), Bytes::copy_from_slice(data.as_bytes()))
        .await
        .unwrap();
}

/// Two memory sides; `hashless` makes them list like WebDAV (no content hash), so a corrupt
/// read of the same length can only be told by reading twice.
fn sides(hashless: bool) -> (Arc<MemoryClient>, Arc<MemoryClient>) {
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    s.webdav_like_metadata(hashless);
    d.webdav_like_metadata(hashless);
    (s, d)
}

fn faulty(inner: &Arc<MemoryClient>, seed: u64) -> Arc<FaultClient> {
    Arc::new(FaultClient::new(
        inner.clone(),
        FaultConfig::seeded(seed).with_rate(0.0),
    ))
}

async fn run(
    state: &std::path::Path,
    s: Arc<dyn StorageClient>,
    d: Arc<dyn StorageClient>,
    mode: SyncMode,
) -> Result<SyncStats, SyncError> {
    SyncEngine::new(state)
        .sync_pair(&SyncPair::new(s, d, mode))
        .await
}

/// The faults a test injected on `path`, as `op fault` strings.
fn hits(client: &FaultClient, path: &str) -> Vec<String> {
    client
        .injected()
        .iter()
        .filter(|i| i.path == path)
        .map(|i| format!("{:?} {:?}", i.op, i.fault))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_short_corrupt_or_failed_root_id_read_is_not_a_changed_root() {
    for hashless in [false, true] {
        for fault in [Fault::ShortRead, Fault::CorruptRead, Fault::Transient] {
            for side in [Side::Source, Side::Destination] {
                let what = format!("{fault:?} on the {side}'s id file, hashless {hashless}");
                let state = tempfile::tempdir().unwrap();
                let (s, d) = sides(hashless);
                for i in 0..5 {
                    put(&s, &format!("f{i}.txt"), &format!("content {i}")).await;
                }
                run(state.path(), s.clone(), d.clone(), SyncMode::TwoWay)
                    .await
                    .unwrap();
                let (before_s, before_d) = (user_files(&s), user_files(&d));
                assert_eq!(before_d.len(), 5);

                let (fs, fd) = (faulty(&s, 1), faulty(&d, 2));
                let target = if side == Side::Source { &fs } else { &fd };
                target.fail_path(&rel(ROOT_ID), fault, 1);
                let result = run(state.path(), fs.clone(), fd.clone(), SyncMode::TwoWay).await;
                assert_eq!(
                    hits(target, ROOT_ID).len(),
                    1,
                    "{what}: the fault did not fire"
                );
                // One bad read is retried: the run goes on as if nothing happened.
                let stats = result.unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(
                    (stats.deleted_source, stats.deleted_destination),
                    (0, 0),
                    "{what}"
                );
                assert_eq!(user_files(&s), before_s, "{what}");
                assert_eq!(user_files(&d), before_d, "{what}");
                // And the next clean run sees the same roots.
                run(state.path(), s.clone(), d.clone(), SyncMode::TwoWay)
                    .await
                    .unwrap_or_else(|e| panic!("{what}, then a clean run: {e}"));
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_root_id_that_never_reads_right_fails_the_run_with_a_clear_error() {
    for hashless in [false, true] {
        for fault in [Fault::ShortRead, Fault::CorruptRead] {
            let what = format!("{fault:?} on every read, hashless {hashless}");
            let state = tempfile::tempdir().unwrap();
            let (s, d) = sides(hashless);
            put(&s, "a.txt", "alpha").await;
            put(&d, "b.txt", "beta").await;
            run(state.path(), s.clone(), d.clone(), SyncMode::TwoWay)
                .await
                .unwrap();
            // The source drops b.txt: a real run would delete it on the destination.
            s.delete(&rel("b.txt")).await.unwrap();
            let (before_s, before_d) = (user_files(&s), user_files(&d));

            let fd = faulty(&d, 3);
            fd.fail_path(&rel(ROOT_ID), fault, 1000);
            let err = run(state.path(), s.clone(), fd.clone(), SyncMode::TwoWay)
                .await
                .expect_err(&what);
            assert!(
                !matches!(err, SyncError::RootChanged { .. }) && !err.is_safety_stop(),
                "{what}: {err}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(ROOT_ID),
                "{what}: the error names no file: {msg}"
            );
            assert!(
                msg.contains("short or corrupt"),
                "{what}: the error does not say why: {msg}"
            );
            assert!(hits(&fd, ROOT_ID).len() >= 2, "{what}: retried");
            assert_eq!(user_files(&s), before_s, "{what}");
            assert_eq!(user_files(&d), before_d, "{what}");
            assert!(trash(&d).is_empty(), "{what}");
            // The file itself was left alone: a clean run then syncs as usual.
            let stats = run(state.path(), s.clone(), d.clone(), SyncMode::TwoWay)
                .await
                .unwrap_or_else(|e| panic!("{what}, then a clean run: {e}"));
            assert_eq!(stats.deleted_destination, 1, "{what}");
        }
    }
}

/// The case the model test found (seed 4242): a root whose base is still empty adopts the
/// id it reads, so a corrupt read recorded a wrong identity and the next clean run stopped
/// with "the root changed".
#[tokio::test(start_paused = true)]
async fn a_corrupt_root_id_read_never_records_a_wrong_identity() {
    for fault in [Fault::ShortRead, Fault::CorruptRead] {
        let state = tempfile::tempdir().unwrap();
        let (s, d) = sides(false);
        run(state.path(), s.clone(), d.clone(), SyncMode::TwoWay)
            .await
            .unwrap();
        put(&d, "a", "new on the destination").await;
        let fd = faulty(&d, 4);
        fd.fail_path(&rel(ROOT_ID), fault, 1);
        run(state.path(), s.clone(), fd.clone(), SyncMode::SourceBackup)
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(hits(&fd, ROOT_ID).len(), 1, "{fault:?}");
        run(state.path(), s.clone(), d.clone(), SyncMode::SourceBackup)
            .await
            .unwrap_or_else(|e| panic!("{fault:?}, then a clean run: {e}"));
    }
}

/// A source with [`RULES`] in its `.syncignore`, files the rules exclude on both sides, and
/// a file they keep; synced once, cleanly, in `mode`.
async fn ignoring_pair(
    state: &std::path::Path,
    hashless: bool,
    mode: SyncMode,
) -> (Arc<MemoryClient>, Arc<MemoryClient>) {
    let (s, d) = sides(hashless);
    put(&s, SYNCIGNORE, RULES).await;
    // Enough kept files that a run deleting every excluded destination file stays below
    // the max-delete limit: the safety net must not hide the cause.
    for i in 0..8 {
        put(&s, &format!("keep{i}.txt"), &format!("kept {i}")).await;
    }
    for path in EXCLUDED {
        put(&s, path, &format!("source's own {path}")).await;
    }
    for path in DEST_EXCLUDED {
        put(&d, path, &format!("destination's own {path}")).await;
    }
    let stats = run(state, s.clone(), d.clone(), mode).await.unwrap();
    assert_eq!(stats.deleted_destination, 0);
    for path in EXCLUDED {
        assert!(
            !d.files().contains_key(&rel(path)),
            "{path} was synced by a clean run"
        );
    }
    for path in DEST_EXCLUDED {
        assert!(
            d.files().contains_key(&rel(path)),
            "a clean run removed {path}"
        );
        assert!(!s.files().contains_key(&rel(path)), "{path} was synced");
    }
    assert!(d.files().contains_key(&rel(SYNCIGNORE)));
    (s, d)
}

#[tokio::test(start_paused = true)]
async fn a_short_or_corrupt_syncignore_read_never_syncs_or_deletes_an_excluded_file() {
    // Several seeds: each cuts or corrupts the file at another place.
    for seed in 0..6u64 {
        for hashless in [false, true] {
            for fault in [Fault::ShortRead, Fault::CorruptRead] {
                for mode in [SyncMode::TwoWay, SyncMode::SourceToDestination] {
                    let what = format!("{fault:?} seed {seed} hashless {hashless} {mode}");
                    let state = tempfile::tempdir().unwrap();
                    let (s, d) = ignoring_pair(state.path(), hashless, mode).await;
                    let (before_s, before_d) = (user_files(&s), user_files(&d));
                    // Both sides hold the rules (`.syncignore` syncs), so both reads go wrong.
                    let (fs, fd) = (faulty(&s, seed), faulty(&d, seed + 100));
                    fs.fail_path(&rel(SYNCIGNORE), fault, 1);
                    fd.fail_path(&rel(SYNCIGNORE), fault, 1);
                    let result = run(state.path(), fs.clone(), fd.clone(), mode).await;
                    assert_eq!(hits(&fs, SYNCIGNORE), [format!("Read {fault:?}")], "{what}");
                    assert_eq!(hits(&fd, SYNCIGNORE), [format!("Read {fault:?}")], "{what}");
                    let stats = result.unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(
                        (stats.uploaded, stats.downloaded, stats.deleted_destination),
                        (0, 0, 0),
                        "{what}: {stats:?}"
                    );
                    assert_eq!(user_files(&s), before_s, "{what}");
                    assert_eq!(user_files(&d), before_d, "{what}");
                    assert!(trash(&d).is_empty() && trash(&s).is_empty(), "{what}");
                }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_syncignore_that_never_reads_right_fails_the_run_with_a_clear_error() {
    for fault in [
        Fault::ShortRead,
        Fault::CorruptRead,
        Fault::ReadErrorMidStream,
    ] {
        let state = tempfile::tempdir().unwrap();
        let mode = SyncMode::SourceToDestination;
        let (s, d) = ignoring_pair(state.path(), true, mode).await;
        let (before_s, before_d) = (user_files(&s), user_files(&d));
        let fd = faulty(&d, 5);
        fd.fail_path(&rel(SYNCIGNORE), fault, 1000);
        let err = run(state.path(), s.clone(), fd.clone(), mode)
            .await
            .expect_err(&format!("{fault:?}"));
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                SyncError::Storage {
                    side: Side::Destination,
                    ..
                }
            ),
            "{fault:?}: {msg}"
        );
        assert!(msg.contains(SYNCIGNORE), "{fault:?}: {msg}");
        assert!(msg.contains("short or corrupt"), "{fault:?}: {msg}");
        assert!(hits(&fd, SYNCIGNORE).len() >= 2, "{fault:?}: retried");
        assert_eq!(user_files(&s), before_s, "{fault:?}");
        assert_eq!(user_files(&d), before_d, "{fault:?}");
        assert!(trash(&d).is_empty(), "{fault:?}");
    }
}

/// The copy a `--backup-dir` (or `--trash-dir`) keeps of a file before it is deleted or
/// overwritten is the only version left afterwards: it is checked like any transfer, so a
/// short or corrupt read never leaves a torn backup behind a completed delete.
#[tokio::test(start_paused = true)]
async fn a_short_or_corrupt_read_never_leaves_a_torn_backup() {
    for fault in [Fault::ShortRead, Fault::CorruptRead] {
        for edit in [false, true] {
            let what = format!("{fault:?}, {}", if edit { "overwrite" } else { "delete" });
            let state = tempfile::tempdir().unwrap();
            let (s, d) = sides(false);
            let old = "the only other copy of this version, long enough to cut";
            put(&s, "x.txt", old).await;
            // Enough other files that the delete stays below the max-delete limit.
            for i in 0..4 {
                put(&s, &format!("other{i}.txt"), "other").await;
            }
            run(
                state.path(),
                s.clone(),
                d.clone(),
                SyncMode::SourceToDestination,
            )
            .await
            .unwrap();
            if edit {
                put(&s, "x.txt", "a new version").await;
            } else {
                s.delete(&rel("x.txt")).await.unwrap();
            }
            let backup = Arc::new(MemoryClient::new());
            let fd = faulty(&d, 6);
            fd.fail_path(&rel("x.txt"), fault, 1);
            let pair = SyncPair::new(s.clone(), fd.clone(), SyncMode::SourceToDestination)
                .with_options(
                    SyncOptions::default()
                        .with_recovery(Side::Destination, Recovery::BackupDir(backup.clone())),
                );
            let result = SyncEngine::new(state.path()).sync_pair(&pair).await;
            assert_eq!(hits(&fd, "x.txt"), [format!("Read {fault:?}")], "{what}");
            let kept: Vec<Bytes> = backup
                .files()
                .into_iter()
                .filter(|(p, _)| p.as_str().ends_with("/x.txt"))
                .map(|(_, b)| b)
                .collect();
            let at_path = d.files().get(&rel("x.txt")).cloned();
            // The old version is either still at its path or whole in the backup dir.
            assert!(
                at_path.as_deref() == Some(old.as_bytes()) || kept.iter().any(|b| b == old),
                "{what}: the old version is lost ({result:?}); backup holds {kept:?}"
            );
            // And no torn copy is left in the backup dir.
            assert!(kept.iter().all(|b| b == old), "{what}: {kept:?}");
        }
    }
}

/// A run that wrote its new generation into a root but was stopped before it recorded it
/// (here: the write's reply is lost) leaves the root holding the pending generation, which
/// the next run accepts: no false "older copy" stop.
#[tokio::test]
async fn a_generation_written_but_not_recorded_is_no_false_alarm() {
    let state = tempfile::tempdir().unwrap();
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    s.put(&RelPath::new("a.txt").unwrap(), Bytes::from("a"))
        .await
        .unwrap();
    let engine = SyncEngine::new(state.path());
    engine
        .sync_pair(&SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay))
        .await
        .unwrap();
    let generation = d
        .files()
        .into_keys()
        .find(|p| p.as_str().starts_with(".syncengine/generation/"))
        .expect("a generation file");
    // A run that changes the destination writes it a new generation, whose reply is lost
    // (the file holds it): the run checks the file and goes on.
    s.put(&RelPath::new("b.txt").unwrap(), Bytes::from("b"))
        .await
        .unwrap();
    let faulty = Arc::new(FaultClient::new(d.clone(), FaultConfig::none()));
    faulty.fail_path(&generation, Fault::ErrorAfter, 1);
    let stats = engine
        .sync_pair(&SyncPair::new(s.clone(), faulty.clone(), SyncMode::TwoWay))
        .await
        .unwrap();
    assert_eq!(faulty.injected().len(), 1, "the fault fired");
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    assert!(
        !stats.warnings.iter().any(|w| w.contains("generation")),
        "{stats:?}"
    );
    for _ in 0..2 {
        engine
            .sync_pair(&SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay))
            .await
            .unwrap();
    }
}
