//! Runs interrupted after their copies landed (issue 8, behaviour 12), over `MemoryClient`s
//! wrapped in the testing feature's `FaultClient`: what the durability barrier's failures
//! leave for the next run, with and without an edit in between.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

#[path = "support/files.rs"]
mod files;
use files::{put, rel, state_db, text, user_files};

use syncengine_core::testing::{Fault, FaultClient, FaultConfig, Op};
use syncengine_core::{
    MemoryClient, Recovery, Side, StorageClient, StorageClientExt, SyncEngine, SyncError, SyncMode,
    SyncOptions, SyncPair, SyncStats,
};

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
    two_way_with(engine, source, destination, options()).await
}

async fn two_way_with(
    engine: &SyncEngine,
    source: Arc<dyn StorageClient>,
    destination: Arc<dyn StorageClient>,
    options: SyncOptions,
) -> Result<SyncStats, SyncError> {
    engine
        .sync_pair(&SyncPair::new(source, destination, SyncMode::TwoWay).with_options(options))
        .await
}

/// User files whose name contains `part`.
fn named(c: &MemoryClient, part: &str) -> Vec<String> {
    user_files(c)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.contains(part))
        .collect()
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
    assert_eq!(fd.injected().len(), 1, "{:?}", fd.injected());
    // The copy is recognised in its own run (see the tests below).
    assert_eq!((stats.uploaded, stats.errors), (1, 0), "{stats:?}");
    assert_eq!(text(&dst, "b.txt").as_deref(), Some("v1 from the source"));

    put(&src, "b.txt", "v2, the source's edit").await;
    let next = two_way(&engine, src.clone(), dst.clone()).await.unwrap();
    assert_eq!(next.conflicts, 0, "a spurious conflict: {next:?}");
    assert_eq!((next.uploaded, next.errors), (1, 0), "{next:?}");
    assert_eq!(user_files(&src), user_files(&dst));
}

#[tokio::test(start_paused = true)]
async fn a_failed_copys_intent_stays_when_the_rest_of_its_batch_is_done() {
    // Intents are recorded and settled a batch at a time: the batch of a run's copies goes
    // once they are all done, but keeps the intent of one that failed. Here `b.txt` landed,
    // its reply was lost and the check that follows failed too, so the run counts an error;
    // `c.txt`, in the same batch, was copied. The next run must still recognise `b.txt`.
    let (_state, engine, src, dst, fd) = pair_with_an_addition().await;
    put(&src, "c.txt", "c from the source").await;
    fd.fail_path(&rel("b.txt"), Fault::ErrorAfter, 1);
    fd.fail_path(&rel("b.txt"), Fault::Error, 10);
    let stats = two_way(&engine, src.clone(), fd.clone()).await.unwrap();
    assert_eq!((stats.uploaded, stats.errors), (1, 1), "{stats:?}");
    assert_eq!(text(&dst, "b.txt").as_deref(), Some("v1 from the source"));
    assert_eq!(text(&dst, "c.txt").as_deref(), Some("c from the source"));

    put(&src, "b.txt", "v2, the source's edit").await;
    put(&src, "c.txt", "c2, the source's edit").await;
    let next = two_way(&engine, src.clone(), dst.clone()).await.unwrap();
    assert_eq!(next.conflicts, 0, "a spurious conflict: {next:?}");
    assert_eq!((next.uploaded, next.errors), (2, 0), "{next:?}");
    assert_eq!(user_files(&src), user_files(&dst));
    let idle = two_way(&engine, src.clone(), dst.clone()).await.unwrap();
    assert!(idle.is_noop(), "{idle:?}");
}

// Lost replies in runs that end normally (issue 8, behaviour 12). The intent kept after a
// failed copy lets the next run recognise the copy only while the written side still holds
// it; a user who edits the copy before that run made the next run see two changed sides, a
// conflict. The executor now checks the target right after a failed write (size and MD5)
// and records a copy that is in place in the same run.

#[tokio::test(start_paused = true)]
async fn a_lost_reply_of_an_upload_is_recorded_in_its_run_so_an_edit_of_the_copy_is_no_conflict() {
    let (_state, engine, src, dst, fd) = pair_with_an_addition().await;
    fd.fail_path(&rel("b.txt"), Fault::ErrorAfter, 1);
    let stats = two_way(&engine, src.clone(), fd.clone()).await.unwrap();
    assert_eq!(fd.injected().len(), 1, "{:?}", fd.injected());
    assert_eq!((stats.uploaded, stats.errors), (1, 0), "{stats:?}");

    // The destination's user edits the copy before the next run.
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
    assert!(named(&src, ".conflict-").is_empty());
    assert_eq!(user_files(&src), user_files(&dst));
}

#[tokio::test(start_paused = true)]
async fn a_lost_reply_of_an_overwrite_is_recorded_in_its_run_so_an_edit_of_the_copy_is_no_conflict()
{
    let (_state, engine, src, dst, fd) = pair_with_an_addition().await;
    let first = two_way(&engine, src.clone(), dst.clone()).await.unwrap();
    assert_eq!(first.uploaded, 1, "{first:?}");
    put(&src, "b.txt", "v2, the source's edit, longer").await;
    // Both mutating calls on b.txt: the copy of the old version into the trash, then the
    // write of the new one.
    fd.fail_path(&rel("b.txt"), Fault::ErrorAfter, 2);
    let stats = two_way(&engine, src.clone(), fd.clone()).await.unwrap();
    let ops: Vec<Op> = fd.injected().iter().map(|i| i.op).collect();
    assert_eq!(ops, [Op::Copy, Op::Write], "{:?}", fd.injected());
    assert_eq!((stats.uploaded, stats.errors), (1, 0), "{stats:?}");
    assert_eq!(
        text(&dst, "b.txt").as_deref(),
        Some("v2, the source's edit, longer")
    );

    put(&dst, "b.txt", "v3, the destination's edit of v2").await;
    let next = two_way(&engine, src.clone(), dst.clone()).await.unwrap();
    assert_eq!(next.conflicts, 0, "a spurious conflict: {next:?}");
    assert_eq!((next.downloaded, next.errors), (1, 0), "{next:?}");
    assert_eq!(
        text(&src, "b.txt").as_deref(),
        Some("v3, the destination's edit of v2")
    );
    assert!(named(&src, ".conflict-").is_empty());
    assert_eq!(user_files(&src), user_files(&dst));
}

#[tokio::test(start_paused = true)]
async fn a_lost_reply_of_a_keep_both_conflict_copy_is_recorded_so_an_edit_of_it_is_no_conflict() {
    let (_state, engine, src, dst, fd) = pair_with_an_addition().await;
    assert_eq!(
        two_way(&engine, src.clone(), dst.clone())
            .await
            .unwrap()
            .uploaded,
        1
    );
    put(&src, "b.txt", "the source's version").await;
    put(&dst, "b.txt", "the destination's version").await;
    // The upload of the source's conflict copy lands; its reply is lost.
    fd.fail_paths_containing(".conflict-", Fault::ErrorAfter, 1);
    let keep_both = options().with_conflict(syncengine_core::ConflictStrategy::KeepBoth);
    let stats = two_way_with(&engine, src.clone(), fd.clone(), keep_both)
        .await
        .unwrap();
    assert_eq!(fd.injected().len(), 1, "{:?}", fd.injected());
    assert_eq!((stats.conflicts, stats.errors), (1, 0), "{stats:?}");
    let copies = named(&dst, ".conflict-");
    assert_eq!(copies.len(), 2, "{copies:?}");
    assert_eq!(user_files(&src), user_files(&dst));

    // The destination's user edits the source's conflict copy before the next run.
    let source_copy = copies.iter().find(|p| p.ends_with("-source.txt")).unwrap();
    put(&dst, source_copy, "an edit of the source's conflict copy").await;
    let next = two_way(&engine, src.clone(), dst.clone()).await.unwrap();
    assert_eq!(next.conflicts, 0, "a spurious conflict: {next:?}");
    assert_eq!((next.downloaded, next.errors), (1, 0), "{next:?}");
    assert_eq!(
        text(&src, source_copy).as_deref(),
        Some("an edit of the source's conflict copy")
    );
    assert_eq!(named(&src, ".conflict-").len(), 2);
    assert_eq!(user_files(&src), user_files(&dst));
}

#[tokio::test(start_paused = true)]
async fn a_move_aside_conflict_copy_has_an_intent_so_a_run_that_records_nothing_leaves_no_conflict()
{
    // A type change where the folder keeps the path: the destination's edited file becomes a
    // conflict copy, shared with the source. Its name is chosen as the action runs, so it had
    // no intent; a run whose base is then not written (here its final durability barrier
    // fails for good) left an unrecorded copy on both sides, and an edit of it a conflict.
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    put(&src, "x", "x, synced").await;
    assert_eq!(
        two_way(&engine, src.clone(), dst.clone())
            .await
            .unwrap()
            .uploaded,
        1
    );
    src.delete(&rel("x")).await.unwrap();
    put(&src, "x/y", "the source made x a folder").await;
    put(&dst, "x", "the destination's edit of x").await;
    let fs = Arc::new(FaultClient::new(src.clone(), FaultConfig::none()));
    fs.fail_next(Op::SyncWritten, Fault::Error);
    let failed = two_way(&engine, fs.clone(), dst.clone()).await;
    assert!(
        matches!(
            failed,
            Err(SyncError::Storage {
                side: Side::Source,
                ..
            })
        ),
        "{failed:?}"
    );
    let copies = named(&src, ".conflict-");
    assert_eq!(copies.len(), 1, "the conflict copy was shared: {copies:?}");
    assert_eq!(
        text(&src, &copies[0]).as_deref(),
        Some("the destination's edit of x")
    );
    assert_eq!(named(&dst, ".conflict-"), copies);

    // The destination's user edits the conflict copy before the next run.
    put(&dst, &copies[0], "an edit of the conflict copy").await;
    let next = two_way(&engine, src.clone(), dst.clone()).await.unwrap();
    assert_eq!(next.conflicts, 0, "a spurious conflict: {next:?}");
    assert_eq!(next.errors, 0, "{next:?}");
    assert_eq!(
        text(&src, &copies[0]).as_deref(),
        Some("an edit of the conflict copy")
    );
    assert_eq!(named(&src, ".conflict-"), copies);
    assert_eq!(user_files(&src), user_files(&dst));
}

#[tokio::test(start_paused = true)]
async fn a_lost_reply_of_the_copy_that_keeps_a_conflict_loser_makes_no_second_conflict_copy() {
    // The loser is preserved under its conflict name before the winner replaces it; that
    // copy's reply was lost, the action failed, and the next run made a second conflict copy
    // of the same loser (the first one stayed as an unrecorded file).
    let (_state, engine, src, dst, fd) = pair_with_an_addition().await;
    assert_eq!(
        two_way(&engine, src.clone(), dst.clone())
            .await
            .unwrap()
            .uploaded,
        1
    );
    put(&dst, "b.txt", "the destination's version").await;
    put(&src, "b.txt", "the source's version, the winner").await;
    let src_wins = options().with_conflict(syncengine_core::ConflictStrategy::SourceWins);
    // The destination's first mutating call on b.txt is the copy that keeps the loser.
    fd.fail_path(&rel("b.txt"), Fault::ErrorAfter, 1);
    let stats = two_way_with(&engine, src.clone(), fd.clone(), src_wins.clone())
        .await
        .unwrap();
    assert_eq!(fd.injected().len(), 1, "{:?}", fd.injected());
    assert_eq!(
        fd.injected()[0].op,
        Op::Copy,
        "the fault hit the preserving copy"
    );
    assert_eq!((stats.conflicts, stats.errors), (1, 0), "{stats:?}");
    assert_eq!(
        text(&dst, "b.txt").as_deref(),
        Some("the source's version, the winner")
    );
    assert_eq!(named(&dst, ".conflict-").len(), 1);
    assert_eq!(user_files(&src), user_files(&dst));
    let next = two_way_with(&engine, src.clone(), dst.clone(), src_wins)
        .await
        .unwrap();
    assert!(next.is_noop(), "{next:?}");
    assert_eq!(named(&dst, ".conflict-").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lost_reply_of_a_rename_is_recorded_in_its_run_so_an_edit_under_the_new_name_is_no_conflict()
 {
    let (_state, engine, src, dst, fd) = pair_with_an_addition().await;
    assert_eq!(
        two_way(&engine, src.clone(), dst.clone())
            .await
            .unwrap()
            .uploaded,
        1
    );
    src.rename(&rel("b.txt"), &rel("c.txt")).await.unwrap();
    fd.fail_path(&rel("b.txt"), Fault::ErrorAfter, 1);
    let stats = two_way(&engine, src.clone(), fd.clone()).await.unwrap();
    let ops: Vec<Op> = fd.injected().iter().map(|i| i.op).collect();
    assert_eq!(ops, [Op::Rename], "{:?}", fd.injected());
    assert_eq!(
        (stats.renamed_destination, stats.errors),
        (1, 0),
        "{stats:?}"
    );

    put(
        &dst,
        "c.txt",
        "v2, the destination's edit under the new name",
    )
    .await;
    let next = two_way(&engine, src.clone(), dst.clone()).await.unwrap();
    assert_eq!(next.conflicts, 0, "a spurious conflict: {next:?}");
    assert_eq!((next.downloaded, next.errors), (1, 0), "{next:?}");
    assert_eq!(
        text(&src, "c.txt").as_deref(),
        Some("v2, the destination's edit under the new name")
    );
    assert!(named(&src, ".conflict-").is_empty());
    assert_eq!(user_files(&src), user_files(&dst));
}

/// F17: on a side that folds names, a stat of `report.txt` finds `Report.txt`. An intent
/// left for `report.txt` (a case-only rename or a copy that did not land) must not take
/// `Report.txt`, with the same content, for the landed copy: the next run would then delete
/// `Report.txt` — the same file there — and the run after it the source's `report.txt`.
/// Only a name listed exactly as spelled is recovered; the exact one still is.
#[tokio::test]
async fn an_intent_is_recovered_only_under_its_exact_name_on_a_folding_side() {
    use syncengine_core::exec::recover_intents;
    use syncengine_core::state::{Intent, SideRecord, StateStore};
    use syncengine_core::testing::QuirkClient;

    let src: Arc<dyn StorageClient> = Arc::new(MemoryClient::new());
    let inner = Arc::new(MemoryClient::new());
    put(&inner, "Docs/Report.txt", "the report").await;
    put(&inner, "Docs/exact.txt", "exact").await;
    let dst: Arc<dyn StorageClient> =
        Arc::new(QuirkClient::new(inner.clone()).with_case_insensitive(true));
    let version = |path: &str| {
        let c = inner.clone();
        let path = rel(path);
        async move { SideRecord::from_entry(&c.stat(&path).await.unwrap()) }
    };
    let store = StateStore::open_in_memory().unwrap();
    store
        .record_intents(&[
            Intent {
                path: rel("Docs/report.txt"),
                to: Side::Destination,
                version: version("Docs/Report.txt").await,
            },
            Intent {
                path: rel("docs/Report.txt"),
                to: Side::Destination,
                version: version("Docs/Report.txt").await,
            },
            Intent {
                path: rel("Docs/exact.txt"),
                to: Side::Destination,
                version: version("Docs/exact.txt").await,
            },
        ])
        .unwrap();
    let found = recover_intents(&store, &src, &dst).await.unwrap();
    assert_eq!(found.found, 3);
    let recovered: Vec<&str> = found.records.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(recovered, ["Docs/exact.txt"]);
}

async fn source_backup(
    engine: &SyncEngine,
    source: Arc<dyn StorageClient>,
    destination: Arc<dyn StorageClient>,
) -> SyncStats {
    engine
        .sync_pair(
            &SyncPair::new(source, destination, SyncMode::SourceBackup).with_options(options()),
        )
        .await
        .unwrap()
}

/// A type change's move aside whose reply was lost (the rename went through, an error came
/// back). The source deleted the photo `x` and made a folder `x/` in its place; source-backup
/// keeps the destination's `x` (backup preserved), so the folder takes the path and the
/// photo moves to a conflict name, keeping the settled deletion. Recorded in its run, as a
/// lost reply of a rename is; otherwise the next run finds an unrecorded file on the backup
/// side and ("add file at destination: download to source") brings the photo the source
/// deleted back to the source.
#[tokio::test(start_paused = true)]
async fn a_lost_reply_of_a_move_aside_keeps_the_settled_deletion() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    put(&src, "x", "v1, a photo").await;
    let first = source_backup(&engine, src.clone(), dst.clone()).await;
    assert_eq!(first.uploaded, 1, "{first:?}");

    src.delete(&rel("x")).await.unwrap();
    put(&src, "x/y", "a file in the folder that replaced the photo").await;
    let fd = Arc::new(FaultClient::new(dst.clone(), FaultConfig::none()));
    fd.fail_next(Op::Rename, Fault::ErrorAfter);
    let stats = source_backup(&engine, src.clone(), fd.clone()).await;
    let ops: Vec<Op> = fd.injected().iter().map(|i| i.op).collect();
    assert_eq!(ops, [Op::Rename], "{:?}", fd.injected());
    assert_eq!((stats.uploaded, stats.errors), (1, 0), "{stats:?}");
    let asides = named(&dst, ".conflict-");
    assert_eq!(asides.len(), 1, "{:?}", user_files(&dst));
    assert_eq!(text(&dst, &asides[0]).as_deref(), Some("v1, a photo"));
    assert_eq!(
        text(&dst, "x/y").as_deref(),
        Some("a file in the folder that replaced the photo")
    );

    let next = source_backup(&engine, src.clone(), dst.clone()).await;
    assert!(
        named(&src, ".conflict-").is_empty(),
        "the photo the source deleted came back to it: {next:?}"
    );
    assert!(next.is_noop(), "{next:?}");
    assert_eq!(named(&dst, ".conflict-"), asides, "the backup is kept");
}

/// What the source does with its photo `x` after the backup was made.
#[derive(Clone, Copy, Debug)]
enum Replacement {
    /// Deletes it and makes a folder `x/` in its place: the folder takes the path and the
    /// destination's photo moves to a conflict name (a type change's move aside).
    Folder,
    /// Deletes it, and later a new, unrelated file appears at `x` (a camera restarting at
    /// `IMG_0001.JPG`): the new file takes the path and the photo is set aside.
    NewFile,
}

/// The photo's backup through a failure at any call of the destination in the run that
/// moves it aside — an error before the call, after it went through (a lost reply), or a
/// transient one — followed by clean runs: whatever step failed, the photo never goes back
/// to the source that deleted it, its one backup stays on the destination (at `x` where the
/// move failed, else under a conflict name), the replacement reaches both sides, and the
/// pair settles. Returns the number of destination calls of the run.
async fn photo_set_aside(replacement: Replacement, fault: Option<(u64, Fault)>) -> u64 {
    const PHOTO: &str = "v1, a photo";
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    put(&src, "x", PHOTO).await;
    // Another file, so that the source is not empty once the photo is deleted.
    put(&src, "other", "another file").await;
    source_backup(&engine, src.clone(), dst.clone()).await;
    src.delete(&rel("x")).await.unwrap();
    let (path, body) = match replacement {
        Replacement::Folder => ("x/y", "in the folder"),
        Replacement::NewFile => {
            // The deletion is settled first; the new file comes later.
            source_backup(&engine, src.clone(), dst.clone()).await;
            ("x", "a new, unrelated file")
        }
    };
    put(&src, path, body).await;
    let fd = Arc::new(FaultClient::new(dst.clone(), FaultConfig::none()));
    if let Some((call, fault)) = fault {
        fd.fail_at(call, fault);
    }
    let pair =
        SyncPair::new(src.clone(), fd.clone(), SyncMode::SourceBackup).with_options(options());
    let faulted = engine.sync_pair(&pair).await;
    let calls = fd.calls();
    let case = format!(
        "{replacement:?}, {fault:?}: {faulted:?}; injected {:?}",
        fd.injected()
    );
    source_backup(&engine, src.clone(), dst.clone()).await;
    let last = source_backup(&engine, src.clone(), dst.clone()).await;
    assert!(last.is_noop(), "{case}; last run {last:?}");
    let holding = |c: &MemoryClient| -> Vec<String> {
        c.files()
            .into_iter()
            .filter(|(p, b)| {
                b.as_ref() == PHOTO.as_bytes() && !p.as_str().starts_with(".syncengine/")
            })
            .map(|(p, _)| p.to_string())
            .collect()
    };
    assert!(
        holding(&src).is_empty(),
        "back on the source: {:?}; {case}",
        holding(&src)
    );
    let kept = holding(&dst);
    // A memory client, like an object store, holds a file `x` beside `x/y`.
    assert_eq!(kept.len(), 1, "the backup: {kept:?}; {case}");
    assert!(
        kept[0] == "x" || kept[0].starts_with("x.conflict-"),
        "{kept:?}; {case}"
    );
    for c in [&src, &dst] {
        assert_eq!(text(c, path).as_deref(), Some(body), "{case}");
    }
    calls
}

#[tokio::test(start_paused = true)]
async fn a_failure_at_any_step_of_setting_a_backup_aside_keeps_it_and_its_settlement() {
    for replacement in [Replacement::Folder, Replacement::NewFile] {
        let calls = photo_set_aside(replacement, None).await;
        assert!(calls > 5, "{replacement:?}: {calls}");
        for call in 0..calls {
            for fault in [Fault::Error, Fault::ErrorAfter, Fault::Transient] {
                photo_set_aside(replacement, Some((call, fault))).await;
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_intent_batch_stops_the_run_naming_the_state_file_and_the_way_out() {
    // The intent left by a copy whose barrier failed for good is damaged before the next run
    // (a bad disk block, another program writing the database). Nothing tells which copies
    // landed any more: the run must stop before it changes anything, and say which file
    // holds the damage and what to do about it.
    let (state, engine, src, dst, fd) = pair_with_an_addition().await;
    fd.fail_next(Op::SyncWritten, Fault::Error);
    assert!(two_way(&engine, src.clone(), fd.clone()).await.is_err());
    let db_path = state_db(state.path());
    let db = rusqlite::Connection::open(&db_path).unwrap();
    let damaged = db
        .execute("UPDATE intent_batches SET intents = 'not json'", [])
        .unwrap();
    assert_eq!(damaged, 1, "the failed copy's intent batch is there");
    drop(db);

    // Changes the run would sync if it went on: an edit, an addition, a deletion.
    put(&src, "b.txt", "v2, the source's edit").await;
    put(&dst, "d.txt", "added on the destination").await;
    src.delete(&rel("a")).await.unwrap();
    let (src_before, dst_before) = (user_files(&src), user_files(&dst));

    let failed = two_way(&engine, src.clone(), dst.clone()).await;
    let Err(SyncError::State(message)) = &failed else {
        panic!("expected a state error: {failed:?}");
    };
    assert!(
        message.contains(&db_path.display().to_string()),
        "the message names the state file {}: {message}",
        db_path.display()
    );
    assert!(
        message.contains("copy intents") && message.contains("row "),
        "the message says what is unreadable: {message}"
    );
    assert!(
        message.contains("move the state file away"),
        "the message says what to do: {message}"
    );
    assert_eq!(user_files(&src), src_before, "the source was changed");
    assert_eq!(user_files(&dst), dst_before, "the destination was changed");
}
