//! Engine-level tests of settled deletions and of the initial-sync preference applying once
//! (issue 8, behaviours 1 and 4), over `MemoryClient`s and a temporary state directory.

// Test helpers outside #[test] fns unwrap freely: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::{
    ByteStream, Error, InitialSyncPreference, MemoryClient, ReadOptions, Recovery, RelPath, Result,
    Side, StorageClient, StorageClientExt, SyncEngine, SyncError, SyncMode, SyncOptions, SyncPair,
    SyncStats,
};
use tokio_util::sync::CancellationToken;

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn files(client: &MemoryClient) -> BTreeMap<String, String> {
    client
        .files()
        .into_iter()
        .map(|(p, b)| (p.to_string(), String::from_utf8_lossy(&b).into_owned()))
        .collect()
}

/// The files outside the engine's own `.syncengine/` folder.
fn user_files(client: &MemoryClient) -> BTreeMap<String, String> {
    files(client)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(".syncengine/"))
        .collect()
}

async fn put(client: &dyn StorageClient, path: &str, data: &str) {
    client
        .put(&rel(path), Bytes::from(data.to_owned()))
        .await
        .unwrap();
}

async fn run(
    engine: &SyncEngine,
    s: Arc<dyn StorageClient>,
    d: Arc<dyn StorageClient>,
    mode: SyncMode,
    opts: SyncOptions,
) -> std::result::Result<SyncStats, SyncError> {
    engine
        .sync_pair(&SyncPair::new(s, d, mode).with_options(opts))
        .await
}

/// Two memory clients with `n` files `f0.txt`… on the source, synced once in `mode`.
async fn synced_pair(
    engine: &SyncEngine,
    mode: SyncMode,
    n: usize,
) -> (Arc<MemoryClient>, Arc<MemoryClient>) {
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    for i in 0..n {
        put(s.as_ref(), &format!("f{i}.txt"), &format!("content {i}")).await;
    }
    let stats = run(engine, s.clone(), d.clone(), mode, SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(stats.uploaded, n as u64);
    (s, d)
}

// ---------------------------------------------------------------------------------------
// Behaviour 1: settled deletions are remembered
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn source_backup_deletion_then_two_way_copies_the_backup_back() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (s, d) = synced_pair(&engine, SyncMode::SourceBackup, 4).await;
    s.delete(&rel("f1.txt")).await.unwrap();
    s.delete(&rel("f2.txt")).await.unwrap();

    // "Delete file at source: no action (backup preserved)", run after run.
    for _ in 0..2 {
        let stats = run(
            &engine,
            s.clone(),
            d.clone(),
            SyncMode::SourceBackup,
            SyncOptions::default(),
        )
        .await
        .unwrap();
        assert!(stats.is_noop(), "{stats:?}");
        assert_eq!(user_files(&d).len(), 4);
    }

    // Switching to TWO_WAY: the backups are one-sided files, copied back, never deleted.
    let stats = run(
        &engine,
        s.clone(),
        d.clone(),
        SyncMode::TwoWay,
        SyncOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(stats.deleted_destination, 0, "{stats:?}");
    assert_eq!(stats.downloaded, 2, "{stats:?}");
    assert_eq!(user_files(&d).len(), 4, "backups intact");
    assert_eq!(user_files(&s), user_files(&d));
    assert_eq!(files(&s)["f1.txt"], "content 1");

    let again = run(
        &engine,
        s.clone(),
        d.clone(),
        SyncMode::TwoWay,
        SyncOptions::default(),
    )
    .await
    .unwrap();
    assert!(again.is_noop(), "{again:?}");
}

#[tokio::test]
async fn destination_backup_deletion_then_two_way_copies_the_backup_back() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    for i in 0..3 {
        put(d.as_ref(), &format!("f{i}.txt"), &format!("content {i}")).await;
    }
    let db = SyncMode::DestinationBackup;
    run(&engine, s.clone(), d.clone(), db, SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(user_files(&s).len(), 3);
    d.delete(&rel("f0.txt")).await.unwrap();
    let stats = run(&engine, s.clone(), d.clone(), db, SyncOptions::default())
        .await
        .unwrap();
    assert!(stats.is_noop(), "{stats:?}");

    let stats = run(
        &engine,
        s.clone(),
        d.clone(),
        SyncMode::TwoWay,
        SyncOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!((stats.uploaded, stats.deleted_source), (1, 0), "{stats:?}");
    assert_eq!(files(&d)["f0.txt"], "content 0");
    assert_eq!(user_files(&s), user_files(&d));
}

#[tokio::test]
async fn source_backup_deletion_then_mirror_removes_it_like_any_extra_file() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (s, d) = synced_pair(&engine, SyncMode::SourceBackup, 10).await;
    s.delete(&rel("f3.txt")).await.unwrap();
    let stats = run(
        &engine,
        s.clone(),
        d.clone(),
        SyncMode::SourceBackup,
        SyncOptions::default(),
    )
    .await
    .unwrap();
    assert!(stats.is_noop(), "{stats:?}");

    let trash = SyncOptions::default().with_recovery(Side::Destination, Recovery::Trash);
    let std = SyncMode::SourceToDestination;
    // The dry run lists the delete and changes nothing.
    let dry = run(
        &engine,
        s.clone(),
        d.clone(),
        std,
        trash.clone().with_dry_run(true),
    )
    .await
    .unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.deleted_destination, 1, "{dry:?}");
    assert_eq!(files(&d)["f3.txt"], "content 3");

    let stats = run(&engine, s.clone(), d.clone(), std, trash.clone())
        .await
        .unwrap();
    assert_eq!(stats.deleted_destination, 1, "{stats:?}");
    assert_eq!(user_files(&s), user_files(&d));
    // Through the trash, not gone.
    let trashed: Vec<(String, String)> = files(&d)
        .into_iter()
        .filter(|(p, _)| p.starts_with(".syncengine/trash/") && p.ends_with("/f3.txt"))
        .collect();
    assert_eq!(trashed.len(), 1, "{:?}", files(&d));
    assert_eq!(trashed[0].1, "content 3");
}

#[tokio::test]
async fn settled_deletions_count_in_a_mirrors_max_delete() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (s, d) = synced_pair(&engine, SyncMode::SourceBackup, 10).await;
    for i in 0..6 {
        s.delete(&rel(&format!("f{i}.txt"))).await.unwrap();
    }
    run(
        &engine,
        s.clone(),
        d.clone(),
        SyncMode::SourceBackup,
        SyncOptions::default(),
    )
    .await
    .unwrap();
    let err = run(
        &engine,
        s.clone(),
        d.clone(),
        SyncMode::SourceToDestination,
        SyncOptions::default(),
    )
    .await
    .unwrap_err();
    match err {
        SyncError::MaxDelete {
            side, would_delete, ..
        } => assert_eq!((side, would_delete), (Side::Destination, 6)),
        other => panic!("expected a max-delete stop, got {other}"),
    }
    assert_eq!(user_files(&d).len(), 10, "nothing changed");
}

/// Finds the conflict copies of `stem`…`ext` on a client.
fn conflict_copies(client: &MemoryClient, stem: &str, ext: &str) -> Vec<(String, String)> {
    files(client)
        .into_iter()
        .filter(|(p, _)| p.starts_with(&format!("{stem}.conflict-")) && p.ends_with(ext))
        .collect()
}

#[tokio::test]
async fn new_file_at_a_settled_path_keeps_it_and_the_backup_becomes_a_conflict_copy() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let sb = SyncMode::SourceBackup;
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    put(s.as_ref(), "DCIM/IMG_0001.JPG", "the first photo").await;
    put(s.as_ref(), "DCIM/IMG_0002.JPG", "the second photo").await;
    // (An emptied side would be a safety stop of its own.)
    put(s.as_ref(), "notes.txt", "n").await;
    run(&engine, s.clone(), d.clone(), sb, SyncOptions::default())
        .await
        .unwrap();
    // Photos offloaded from the phone; the backup keeps them.
    s.delete(&rel("DCIM/IMG_0001.JPG")).await.unwrap();
    s.delete(&rel("DCIM/IMG_0002.JPG")).await.unwrap();
    run(&engine, s.clone(), d.clone(), sb, SyncOptions::default())
        .await
        .unwrap();
    // The camera restarts its numbering.
    put(s.as_ref(), "DCIM/IMG_0001.JPG", "a brand new photo").await;

    let stats = run(&engine, s.clone(), d.clone(), sb, SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(stats.conflicts, 1, "{stats:?}");
    assert_eq!(stats.conflict_paths, vec![rel("DCIM/IMG_0001.JPG")]);
    assert_eq!((stats.uploaded, stats.downloaded), (1, 0), "{stats:?}");
    assert_eq!(files(&d)["DCIM/IMG_0001.JPG"], "a brand new photo");
    let kept = conflict_copies(&d, "DCIM/IMG_0001", "-destination.JPG");
    assert_eq!(kept.len(), 1, "{:?}", files(&d));
    assert_eq!(kept[0].1, "the first photo");
    assert_eq!(files(&d)["DCIM/IMG_0002.JPG"], "the second photo");
    // The source has only its new photo: deleted photos never come back.
    let source_files = user_files(&s);
    assert_eq!(source_files.len(), 2, "{source_files:?}");
    assert_eq!(source_files["DCIM/IMG_0001.JPG"], "a brand new photo");

    // Later runs leave it so.
    let again = run(&engine, s.clone(), d.clone(), sb, SyncOptions::default())
        .await
        .unwrap();
    assert!(again.is_noop(), "{again:?}");
    assert_eq!(user_files(&s).len(), 2);
    assert_eq!(user_files(&d).len(), 4);
}

#[tokio::test]
async fn new_file_at_a_settled_path_in_two_way_keeps_the_path_and_the_copy_reaches_both_sides_in_the_same_run()
 {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    put(s.as_ref(), "IMG_0001.JPG", "old").await;
    put(s.as_ref(), "other.txt", "x").await;
    let sb = SyncMode::SourceBackup;
    run(&engine, s.clone(), d.clone(), sb, SyncOptions::default())
        .await
        .unwrap();
    s.delete(&rel("IMG_0001.JPG")).await.unwrap();
    run(&engine, s.clone(), d.clone(), sb, SyncOptions::default())
        .await
        .unwrap();
    put(s.as_ref(), "IMG_0001.JPG", "new, and longer").await;
    let tw = SyncMode::TwoWay;
    let stats = run(&engine, s.clone(), d.clone(), tw, SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(stats.conflicts, 1, "{stats:?}");
    assert_eq!(stats.deleted_destination + stats.deleted_source, 0);
    assert_eq!(files(&d)["IMG_0001.JPG"], "new, and longer");
    assert_eq!(files(&s)["IMG_0001.JPG"], "new, and longer");
    let kept = conflict_copies(&d, "IMG_0001", "-destination.JPG");
    assert_eq!(kept.len(), 1, "{:?}", files(&d));
    assert_eq!(kept[0].1, "old");
    // The set-aside copy inherited the settled absence, which TWO_WAY copies back: it reaches
    // the source in this run (behaviour 12), not one run later.
    assert_eq!(stats.downloaded, 1, "{stats:?}");
    assert_eq!(user_files(&s), user_files(&d));
    let dry = SyncOptions::default().with_dry_run(true);
    let idle = run(&engine, s.clone(), d.clone(), tw, dry).await.unwrap();
    assert!(idle.is_noop(), "{idle:?}");
}

#[tokio::test]
async fn new_file_where_the_primary_side_keeps_a_copy_backs_the_conflict_copy_up_in_the_same_run() {
    // The destination deleted `a` under destination-backup (the destination is primary
    // there): the source keeps it, settled. Under source-backup the source is primary, and a
    // primary file missing on the backup side is backed up — so when the destination adds
    // a new `a`, the source's kept copy becomes a conflict copy that is backed up at once.
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    put(s.as_ref(), "a.txt", "kept on the source").await;
    put(s.as_ref(), "other.txt", "x").await;
    let tw = SyncMode::TwoWay;
    run(&engine, s.clone(), d.clone(), tw, SyncOptions::default())
        .await
        .unwrap();
    d.delete(&rel("a.txt")).await.unwrap();
    let db = SyncMode::DestinationBackup;
    let settle = run(&engine, s.clone(), d.clone(), db, SyncOptions::default())
        .await
        .unwrap();
    assert!(settle.is_noop(), "{settle:?}");
    put(d.as_ref(), "a.txt", "a new file on the destination").await;

    let sb = SyncMode::SourceBackup;
    let stats = run(&engine, s.clone(), d.clone(), sb, SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(stats.conflicts, 1, "{stats:?}");
    assert_eq!((stats.uploaded, stats.downloaded), (1, 1), "{stats:?}");
    assert_eq!(files(&s)["a.txt"], "a new file on the destination");
    let kept = conflict_copies(&s, "a", "-source.txt");
    assert_eq!(kept.len(), 1, "{:?}", files(&s));
    assert_eq!(kept[0].1, "kept on the source");
    assert_eq!(user_files(&s), user_files(&d));
    let dry = SyncOptions::default().with_dry_run(true);
    let idle = run(&engine, s.clone(), d.clone(), sb, dry).await.unwrap();
    assert!(idle.is_noop(), "{idle:?}");
}

#[tokio::test]
async fn the_same_file_back_at_a_settled_path_is_recorded_not_conflicted() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (s, d) = synced_pair(&engine, SyncMode::SourceBackup, 2).await;
    s.delete(&rel("f0.txt")).await.unwrap();
    let sb = SyncMode::SourceBackup;
    run(&engine, s.clone(), d.clone(), sb, SyncOptions::default())
        .await
        .unwrap();
    put(s.as_ref(), "f0.txt", "content 0").await;
    let stats = run(&engine, s.clone(), d.clone(), sb, SyncOptions::default())
        .await
        .unwrap();
    assert!(stats.is_noop(), "{stats:?}");
    assert_eq!(user_files(&s), user_files(&d));
    // Recorded as synced: deleting it on the source again is settled again, and TWO_WAY
    // afterwards restores it.
    s.delete(&rel("f0.txt")).await.unwrap();
    run(&engine, s.clone(), d.clone(), sb, SyncOptions::default())
        .await
        .unwrap();
    assert!(files(&d).contains_key("f0.txt"));
}

// ---------------------------------------------------------------------------------------
// Behaviour 4: --initial applies once
// ---------------------------------------------------------------------------------------

/// A client whose reads of one path fail permanently while `failing` is set.
#[derive(Debug)]
struct FailRead {
    inner: MemoryClient,
    path: RelPath,
    failing: AtomicBool,
}

#[async_trait]
impl Hooks for FailRead {
    fn inner(&self) -> &dyn StorageClient {
        &self.inner
    }
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failread+{}", self.inner)
    }
    fn backend(&self) -> &'static str {
        "failread"
    }
    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        if *path == self.path && self.failing.load(Ordering::Relaxed) {
            return Err(Error::other("failread", path.as_str(), "unreadable (test)"));
        }
        self.inner.read_opts(path, opts).await
    }
}

fn source_wins() -> SyncOptions {
    SyncOptions::default().with_initial_preference(InitialSyncPreference::SourceWins)
}

#[tokio::test]
async fn initial_source_wins_with_a_permanent_error_applies_once() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let s = Arc::new(Forwarding::new(FailRead {
        inner: MemoryClient::new(),
        path: rel("unreadable.txt"),
        failing: AtomicBool::new(true),
    }));
    let d = Arc::new(MemoryClient::new());
    for i in 0..4 {
        put(s.as_ref(), &format!("f{i}.txt"), "x").await;
    }
    put(s.as_ref(), "unreadable.txt", "locked").await;
    let tw = SyncMode::TwoWay;
    let first = run(&engine, s.clone(), d.clone(), tw, source_wins())
        .await
        .unwrap();
    assert_eq!((first.uploaded, first.errors), (4, 1), "{first:?}");

    // Days later a file appears on the destination; the cron line still says source-wins.
    put(d.as_ref(), "added later.txt", "keep me").await;
    let dry = run(
        &engine,
        s.clone(),
        d.clone(),
        tw,
        source_wins().with_dry_run(true),
    )
    .await
    .unwrap();
    assert_eq!((dry.deleted_destination, dry.downloaded), (0, 1), "{dry:?}");
    let later = run(&engine, s.clone(), d.clone(), tw, source_wins())
        .await
        .unwrap();
    assert_eq!(later.deleted_destination, 0, "{later:?}");
    assert_eq!(later.downloaded, 1, "{later:?}");
    assert_eq!(later.errors, 1, "the unreadable file still fails");
    assert_eq!(files(&s.inner)["added later.txt"], "keep me");
    assert_eq!(files(&d)["added later.txt"], "keep me");
    assert!(
        later.warnings.iter().any(|w| w.contains("ignored")),
        "{:?}",
        later.warnings
    );
}

#[tokio::test]
async fn initial_preference_on_a_pair_with_a_base_is_ignored_with_a_warning() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (s, d) = synced_pair(&engine, SyncMode::TwoWay, 3).await;
    put(d.as_ref(), "new.txt", "n").await;
    let stats = run(
        &engine,
        s.clone(),
        d.clone(),
        SyncMode::TwoWay,
        source_wins(),
    )
    .await
    .unwrap();
    assert_eq!((stats.downloaded, stats.deleted_destination), (1, 0));
    let warning = stats
        .warnings
        .iter()
        .find(|w| w.contains("source-wins") && w.contains("ignored"));
    assert!(warning.is_some(), "{:?}", stats.warnings);
    // An explicit MERGE is what later runs do anyway: nothing to warn about.
    let merge = SyncOptions::default().with_initial_preference(InitialSyncPreference::Merge);
    let stats = run(&engine, s.clone(), d.clone(), SyncMode::TwoWay, merge)
        .await
        .unwrap();
    assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
}

/// A source with one file and a destination with `extra` files of its own, never synced.
async fn unsynced(extra: usize) -> (Arc<MemoryClient>, Arc<MemoryClient>) {
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    put(s.as_ref(), "keep.txt", "k").await;
    for i in 0..extra {
        put(d.as_ref(), &format!("extra{i}.txt"), "e").await;
    }
    (s, d)
}

#[tokio::test]
async fn a_safety_stopped_first_run_does_not_consume_the_initial_preference() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (s, d) = unsynced(4).await;
    let tw = SyncMode::TwoWay;
    let err = run(&engine, s.clone(), d.clone(), tw, source_wins())
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::MaxDelete { .. }), "{err}");
    // The user reviews and forces it: the preference still applies.
    let stats = run(
        &engine,
        s.clone(),
        d.clone(),
        tw,
        source_wins().with_force(true),
    )
    .await
    .unwrap();
    assert_eq!(stats.deleted_destination, 4, "{stats:?}");
    assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
    assert_eq!(user_files(&s), user_files(&d));
}

#[tokio::test]
async fn a_dry_first_run_does_not_consume_the_initial_preference() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (s, d) = unsynced(1).await;
    let tw = SyncMode::TwoWay;
    for _ in 0..2 {
        let dry = run(
            &engine,
            s.clone(),
            d.clone(),
            tw,
            source_wins().with_dry_run(true).with_force(true),
        )
        .await
        .unwrap();
        assert_eq!((dry.deleted_destination, dry.uploaded), (1, 1), "{dry:?}");
    }
    let stats = run(
        &engine,
        s.clone(),
        d.clone(),
        tw,
        source_wins().with_force(true),
    )
    .await
    .unwrap();
    assert_eq!(stats.deleted_destination, 1, "{stats:?}");
}

#[tokio::test]
async fn a_cancelled_first_run_does_not_consume_the_initial_preference() {
    let state = tempfile::tempdir().unwrap();
    let (s, d) = unsynced(1).await;
    let tw = SyncMode::TwoWay;
    let token = CancellationToken::new();
    token.cancel();
    let cancelled = SyncEngine::new(state.path()).with_cancellation(token);
    let forced = source_wins().with_force(true);
    let err = run(&cancelled, s.clone(), d.clone(), tw, forced.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Cancelled), "{err}");
    let engine = SyncEngine::new(state.path());
    let stats = run(&engine, s.clone(), d.clone(), tw, forced)
        .await
        .unwrap();
    assert_eq!(stats.deleted_destination, 1, "{stats:?}");
    assert!(!files(&d).contains_key("extra0.txt"));
    // Now it is consumed: a new destination file is an addition.
    put(d.as_ref(), "extra9.txt", "e").await;
    let stats = run(&engine, s.clone(), d.clone(), tw, source_wins())
        .await
        .unwrap();
    assert_eq!((stats.downloaded, stats.deleted_destination), (1, 0));
}

#[tokio::test]
async fn a_side_emptied_on_purpose_under_a_backup_mode_is_not_an_empty_side_stop() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let sb = SyncMode::SourceBackup;
    let (s, d) = synced_pair(&engine, sb, 3).await;
    for i in 0..3 {
        s.delete(&rel(&format!("f{i}.txt"))).await.unwrap();
    }
    // Emptied since the last sync: the safety stop asks first...
    let err = run(&engine, s.clone(), d.clone(), sb, SyncOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::EmptySide { .. }), "{err}");
    let forced = run(
        &engine,
        s.clone(),
        d.clone(),
        sb,
        SyncOptions::default().with_force(true),
    )
    .await
    .unwrap();
    assert!(forced.is_noop(), "{forced:?}");
    // ...once: the base now says the source holds nothing, on purpose.
    let stats = run(&engine, s.clone(), d.clone(), sb, SyncOptions::default())
        .await
        .unwrap();
    assert!(stats.is_noop(), "{stats:?}");
    assert_eq!(user_files(&d).len(), 3);
}
