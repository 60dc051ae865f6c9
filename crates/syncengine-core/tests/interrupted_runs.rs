//! Runs interrupted after their copies landed (issue 8, behaviour 12), over `MemoryClient`s
//! wrapped in the testing feature's `FaultClient`: what the durability barrier's failures
//! leave for the next run, with and without an edit in between.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::testing::{Fault, FaultClient, FaultConfig, Op};
use syncengine_core::{
    MemoryClient, Recovery, RelPath, Side, StorageClient, StorageClientExt, SyncEngine, SyncError,
    SyncMode, SyncOptions, SyncPair, SyncStats,
};

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

async fn put(c: &MemoryClient, path: &str, data: &str) {
    c.put(&rel(path), Bytes::from(data.to_owned()))
        .await
        .unwrap();
}

fn text(c: &MemoryClient, path: &str) -> Option<String> {
    c.files()
        .get(&rel(path))
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// User files (the engine's own folder left out), with their contents.
fn user_files(c: &MemoryClient) -> Vec<(String, String)> {
    c.files()
        .into_iter()
        .filter(|(p, _)| !p.as_str().starts_with(".syncengine"))
        .map(|(p, b)| (p.to_string(), String::from_utf8_lossy(&b).into_owned()))
        .collect()
}

fn options() -> SyncOptions {
    SyncOptions::default()
        .with_recovery(Side::Source, Recovery::Trash)
        .with_recovery(Side::Destination, Recovery::Trash)
}

async fn two_way(
    engine: &SyncEngine,
    source: Arc<dyn StorageClient>,
    destination: Arc<dyn StorageClient>,
) -> Result<SyncStats, SyncError> {
    engine
        .sync_pair(&SyncPair::new(source, destination, SyncMode::TwoWay).with_options(options()))
        .await
}

/// A pair where the source added `b.txt` since the last run, the destination wrapped in a
/// fault client without random faults.
async fn pair_with_an_addition() -> (
    tempfile::TempDir,
    SyncEngine,
    Arc<MemoryClient>,
    Arc<MemoryClient>,
    Arc<FaultClient>,
) {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    put(&src, "a", "a from the source").await;
    let first = two_way(&engine, src.clone(), dst.clone()).await.unwrap();
    assert_eq!(first.uploaded, 1, "{first:?}");
    put(&src, "b.txt", "v1 from the source").await;
    let fd = Arc::new(FaultClient::new(dst.clone(), FaultConfig::none()));
    (state, engine, src, dst, fd)
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_of_the_durability_barrier_is_retried_so_a_later_edit_is_no_conflict() {
    // Model finding F1 (seeds 1592590344 and 777): the upload landed, the destination's
    // barrier failed once with a transient error, and the run gave up without recording
    // anything; the destination's edit of the copy then became a conflict.
    let (_state, engine, src, dst, fd) = pair_with_an_addition().await;
    fd.fail_next(Op::SyncWritten, Fault::Transient);
    let stats = two_way(&engine, src.clone(), fd.clone()).await.unwrap();
    assert_eq!((stats.uploaded, stats.errors), (1, 0), "{stats:?}");
    assert_eq!(
        fd.injected().len(),
        1,
        "the fault fired: {:?}",
        fd.injected()
    );

    put(&dst, "b.txt", "v2, the destination's edit of v1").await;
    let next = two_way(&engine, src.clone(), dst.clone()).await.unwrap();
    assert_eq!(next.conflicts, 0, "a spurious conflict: {next:?}");
    assert_eq!(
        (next.uploaded, next.downloaded, next.errors),
        (0, 1, 0),
        "{next:?}"
    );
    assert_eq!(
        text(&src, "b.txt").as_deref(),
        Some("v2, the destination's edit of v1")
    );
    assert_eq!(user_files(&src), user_files(&dst));
}

#[tokio::test(start_paused = true)]
async fn a_copy_whose_barrier_failed_for_good_is_recognised_next_run_without_a_second_transfer() {
    // A permanent barrier failure (a flush of the disk that failed) is not retried and the
    // run records nothing; the intent recorded before the copy stays, so the next run sees
    // that the destination holds exactly the copy and records it.
    let (_state, engine, src, dst, fd) = pair_with_an_addition().await;
    fd.fail_next(Op::SyncWritten, Fault::Error);
    let failed = two_way(&engine, src.clone(), fd.clone()).await;
    assert!(
        matches!(
            failed,
            Err(SyncError::Storage {
                side: Side::Destination,
                ..
            })
        ),
        "{failed:?}"
    );
    assert_eq!(text(&dst, "b.txt").as_deref(), Some("v1 from the source"));

    // The source edits its file: an ordinary upload, no conflict.
    put(&src, "b.txt", "v2, the source's edit").await;
    let next = two_way(&engine, src.clone(), dst.clone()).await.unwrap();
    assert_eq!(next.conflicts, 0, "a spurious conflict: {next:?}");
    assert_eq!((next.uploaded, next.downloaded), (1, 0), "{next:?}");
    assert_eq!(user_files(&src), user_files(&dst));
    let idle = two_way(&engine, src.clone(), dst.clone()).await.unwrap();
    assert!(idle.is_noop(), "{idle:?}");
}

#[tokio::test(start_paused = true)]
async fn an_edit_of_a_copy_whose_barrier_failed_for_good_is_a_conflict_that_keeps_both() {
    // The decided limit (README safety section): the destination's file was edited before
    // the next run, and the copy was never confirmed durable, so the edit cannot be told from
    // an edit of what was there before. Both versions are kept; nothing is overwritten
    // without a copy.
    let (_state, engine, src, dst, fd) = pair_with_an_addition().await;
    fd.fail_next(Op::SyncWritten, Fault::Error);
    assert!(two_way(&engine, src.clone(), fd.clone()).await.is_err());
    put(&dst, "b.txt", "v2, the destination's edit").await;
    let next = two_way(&engine, src.clone(), dst.clone()).await.unwrap();
    assert_eq!((next.conflicts, next.errors), (1, 0), "{next:?}");
    let mut contents: Vec<String> = user_files(&src).into_iter().map(|(_, c)| c).collect();
    contents.sort();
    assert_eq!(
        contents,
        [
            "a from the source",
            "v1 from the source",
            "v2, the destination's edit"
        ]
    );
    assert_eq!(user_files(&src), user_files(&dst));
}

#[tokio::test(start_paused = true)]
async fn a_copy_whose_reply_was_lost_after_it_landed_is_recognised_so_an_edit_is_no_conflict() {
    // Model finding (kind type_change, seed 777): the write committed, its reply was lost
    // (the run counted an error), and the copy's intent was cleared with the failure; the
    // source's edit then met an unrecorded copy on the destination: a conflict.
    let (_state, engine, src, dst, fd) = pair_with_an_addition().await;
    // By path: the run writes the engine's own files too (the root's generation).
    fd.fail_path(
        &syncengine_core::RelPath::new("b.txt").unwrap(),
        Fault::ErrorAfter,
        1,
    );
    let stats = two_way(&engine, src.clone(), fd.clone()).await.unwrap();
    assert_eq!(stats.errors, 1, "{stats:?}");
    assert_eq!(text(&dst, "b.txt").as_deref(), Some("v1 from the source"));

    put(&src, "b.txt", "v2, the source's edit").await;
    let next = two_way(&engine, src.clone(), dst.clone()).await.unwrap();
    assert_eq!(next.conflicts, 0, "a spurious conflict: {next:?}");
    assert_eq!((next.uploaded, next.errors), (1, 0), "{next:?}");
    assert_eq!(user_files(&src), user_files(&dst));
}
