//! Protected sides (`SyncOptions::with_protected`, the CLI's `--protect`, issue 10): in every
//! mode, with the source or the destination protected, no action touches the protected side
//! (not even its `.syncengine/` folder), what would have touched it is counted as protected
//! and not recorded (the next run reports it again), and the protected side wins conflicts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use syncengine_core::{
    ConflictStrategy, MemoryClient, RelPath, Side, StorageClient, StorageClientExt, SyncEngine,
    SyncError, SyncMode, SyncOptions, SyncPair, SyncStats, WriteOptions,
};

const MODES: [SyncMode; 5] = [
    SyncMode::TwoWay,
    SyncMode::SourceToDestination,
    SyncMode::SourceBackup,
    SyncMode::DestinationToSource,
    SyncMode::DestinationBackup,
];

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

async fn write(c: &MemoryClient, path: &str, data: &str, mtime: SystemTime) {
    c.write_opts(
        &rel(path),
        syncengine_core::bytes_stream(Bytes::from(data.to_owned())),
        WriteOptions::default().with_mtime(mtime),
    )
    .await
    .unwrap();
}

fn text(c: &MemoryClient, path: &str) -> Option<String> {
    c.files()
        .get(&rel(path))
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

fn user_files(c: &MemoryClient) -> Vec<String> {
    c.files()
        .into_keys()
        .map(|p| p.to_string())
        .filter(|p| !p.starts_with(".syncengine/"))
        .collect()
}

/// Everything a side holds, `.syncengine/` included: each file's content and its full entry
/// (size, mtime, ETag, ids) as `stat` reports it.
async fn snapshot(c: &MemoryClient) -> BTreeMap<RelPath, (Bytes, String)> {
    let mut out = BTreeMap::new();
    for (path, data) in c.files() {
        let entry = c.stat(&path).await.unwrap();
        out.insert(path, (data, format!("{entry:?}")));
    }
    out
}

fn client(c: &Arc<MemoryClient>) -> Arc<dyn StorageClient> {
    c.clone()
}

async fn sync(
    engine: &SyncEngine,
    src: &Arc<MemoryClient>,
    dst: &Arc<MemoryClient>,
    mode: SyncMode,
    protected: Option<Side>,
) -> Result<SyncStats, SyncError> {
    let mut opts = SyncOptions::default().with_conflict(ConflictStrategy::NewestWins);
    if let Some(side) = protected {
        opts = opts.with_protected(side);
    }
    engine
        .sync_pair(&SyncPair::new(client(src), client(dst), mode).with_options(opts))
        .await
}

/// Whether `mode` ever writes to `side`.
fn mode_writes(mode: SyncMode, side: Side) -> bool {
    match side {
        Side::Source => mode.allows_download() || mode.allows_source_delete(),
        Side::Destination => mode.allows_upload() || mode.allows_destination_delete(),
    }
}

/// A pair synced once (two-way, unprotected), then changed on both sides: new files, edits,
/// deletes and renames on each side, and a file both sides edited (the destination's edit is
/// newer).
async fn changed_pair(engine: &SyncEngine) -> (Arc<MemoryClient>, Arc<MemoryClient>) {
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    for (i, name) in [
        "keep.txt",
        "edit-s.txt",
        "edit-d.txt",
        "del-s.txt",
        "del-d.txt",
        "ren-s.txt",
        "ren-d.txt",
        "both.txt",
        "dir/inner.txt",
    ]
    .iter()
    .enumerate()
    {
        write(&src, name, &format!("original {name} {i}"), at(0)).await;
    }
    let first = sync(engine, &src, &dst, SyncMode::TwoWay, None)
        .await
        .unwrap();
    assert_eq!(first.uploaded, 9, "{first:?}");

    write(&src, "new-s.txt", "new on the source", at(100)).await;
    write(&dst, "new-d.txt", "new on the destination", at(100)).await;
    write(&src, "edit-s.txt", "edited on the source", at(100)).await;
    write(&dst, "edit-d.txt", "edited on the destination", at(100)).await;
    src.delete(&rel("del-s.txt")).await.unwrap();
    dst.delete(&rel("del-d.txt")).await.unwrap();
    src.rename(&rel("ren-s.txt"), &rel("renamed-s.txt"))
        .await
        .unwrap();
    dst.rename(&rel("ren-d.txt"), &rel("renamed-d.txt"))
        .await
        .unwrap();
    write(&src, "both.txt", "both: the source's edit", at(200)).await;
    write(
        &dst,
        "both.txt",
        "both: the destination's edit, newer",
        at(300),
    )
    .await;
    (src, dst)
}

#[tokio::test]
async fn in_every_mode_a_protected_side_is_never_changed_and_its_skipped_changes_come_back() {
    for mode in MODES {
        for protected in [Side::Source, Side::Destination] {
            let state = tempfile::tempdir().unwrap();
            let engine = SyncEngine::new(state.path());
            let (src, dst) = changed_pair(&engine).await;
            let (guarded, other) = match protected {
                Side::Source => (&src, &dst),
                Side::Destination => (&dst, &src),
            };
            let before = snapshot(guarded).await;
            let other_before = snapshot(other).await;
            let what = format!("{mode}, {protected} protected");

            let mut counts = Vec::new();
            for run in 0..3 {
                let stats = sync(&engine, &src, &dst, mode, Some(protected))
                    .await
                    .unwrap_or_else(|e| panic!("{what}, run {run}: {e}"));
                assert_eq!(stats.errors, 0, "{what}, run {run}: {stats:?}");
                assert_eq!(
                    snapshot(guarded).await,
                    before,
                    "{what}, run {run}: the protected side changed"
                );
                counts.push(stats.protected);
                if stats.protected > 0 {
                    assert!(
                        stats
                            .warnings
                            .iter()
                            .any(|w| w.contains(&format!("--protect {protected}"))),
                        "{what}: protected changes are named: {:?}",
                        stats.warnings
                    );
                }
                let json = serde_json::to_value(&stats).unwrap();
                assert_eq!(json["protected"], stats.protected, "{what}: in the JSON");
            }
            // Not recorded: every later run finds and reports the same changes again.
            assert_eq!(counts[0], counts[1], "{what}: {counts:?}");
            assert_eq!(counts[1], counts[2], "{what}: {counts:?}");
            if mode_writes(mode, protected) {
                assert!(
                    counts[0] > 0,
                    "{what}: changes for the protected side are reported"
                );
            } else {
                assert_eq!(counts[0], 0, "{what}: the mode never writes there");
            }
            // The other side still gets what the mode sends it.
            if mode_writes(mode, protected.other()) {
                assert_ne!(
                    snapshot(other).await,
                    other_before,
                    "{what}: the unprotected side was synced"
                );
                let new_on_protected = match protected {
                    Side::Source => "new-s.txt",
                    Side::Destination => "new-d.txt",
                };
                assert!(
                    text(other, new_on_protected).is_some(),
                    "{what}: a new file of the protected side reaches the other side"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_protected_side_wins_its_conflicts_and_the_loser_stays_on_the_other_side() {
    // The destination's edit of both.txt is newer: newest-wins would pick it. Protected, the
    // source wins in the modes that copy from the source to the destination.
    for mode in [SyncMode::TwoWay, SyncMode::SourceBackup] {
        let state = tempfile::tempdir().unwrap();
        let engine = SyncEngine::new(state.path());
        let (src, dst) = changed_pair(&engine).await;
        let stats = sync(&engine, &src, &dst, mode, Some(Side::Source))
            .await
            .unwrap();
        assert_eq!(stats.conflicts, 1, "{mode}: {stats:?}");
        assert_eq!(
            text(&dst, "both.txt").as_deref(),
            Some("both: the source's edit"),
            "{mode}"
        );
        let losers: Vec<String> = user_files(&dst)
            .into_iter()
            .filter(|p| p.starts_with("both.conflict-"))
            .collect();
        assert_eq!(losers.len(), 1, "{mode}: {:?}", user_files(&dst));
        assert_eq!(
            text(&dst, &losers[0]).as_deref(),
            Some("both: the destination's edit, newer")
        );
        assert!(
            !user_files(&src).iter().any(|p| p.contains(".conflict-")),
            "{mode}: the protected source gets no conflict copy"
        );
        // Settled: the next run has no conflict left, only the changes it cannot make.
        let again = sync(&engine, &src, &dst, mode, Some(Side::Source))
            .await
            .unwrap();
        assert_eq!(again.conflicts, 0, "{mode}: {again:?}");
    }
    // The destination protected, newest-wins would pick it anyway; source-wins would not.
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (src, dst) = changed_pair(&engine).await;
    let opts = SyncOptions::default()
        .with_conflict(ConflictStrategy::SourceWins)
        .with_protected(Side::Destination);
    let stats = engine
        .sync_pair(&SyncPair::new(client(&src), client(&dst), SyncMode::TwoWay).with_options(opts))
        .await
        .unwrap();
    assert_eq!(stats.conflicts, 1, "{stats:?}");
    assert_eq!(
        text(&src, "both.txt").as_deref(),
        Some("both: the destination's edit, newer")
    );
    assert!(
        user_files(&src)
            .iter()
            .any(|p| p.starts_with("both.conflict-") && p.ends_with("-source.txt")),
        "{:?}",
        user_files(&src)
    );
}

#[tokio::test]
async fn keep_both_conflicts_go_to_the_protected_side_too() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (src, dst) = changed_pair(&engine).await;
    let before = snapshot(&dst).await;
    let opts = SyncOptions::default()
        .with_conflict(ConflictStrategy::KeepBoth)
        .with_protected(Side::Destination);
    let stats = engine
        .sync_pair(&SyncPair::new(client(&src), client(&dst), SyncMode::TwoWay).with_options(opts))
        .await
        .unwrap();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(snapshot(&dst).await, before);
    assert_eq!(
        text(&src, "both.txt").as_deref(),
        Some("both: the destination's edit, newer")
    );
}

#[tokio::test]
async fn source_backup_with_the_source_protected_leaves_a_destination_edit_alone() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    write(&src, "report.txt", "the original", at(0)).await;
    let first = sync(
        &engine,
        &src,
        &dst,
        SyncMode::SourceBackup,
        Some(Side::Source),
    )
    .await
    .unwrap();
    assert_eq!(first.uploaded, 1, "{first:?}");
    let source_before = snapshot(&src).await;

    write(&dst, "report.txt", "edited in the backup", at(100)).await;
    write(&dst, "extra.txt", "added in the backup", at(100)).await;
    for _ in 0..2 {
        let stats = sync(
            &engine,
            &src,
            &dst,
            SyncMode::SourceBackup,
            Some(Side::Source),
        )
        .await
        .unwrap();
        assert_eq!(stats.protected, 2, "{stats:?}");
        assert_eq!((stats.uploaded, stats.downloaded), (0, 0), "{stats:?}");
        assert_eq!(
            text(&dst, "report.txt").as_deref(),
            Some("edited in the backup")
        );
        assert_eq!(snapshot(&src).await, source_before);
    }
    // A new source file still goes to the backup.
    write(&src, "later.txt", "written later", at(200)).await;
    let source_before = snapshot(&src).await;
    let stats = sync(
        &engine,
        &src,
        &dst,
        SyncMode::SourceBackup,
        Some(Side::Source),
    )
    .await
    .unwrap();
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    assert_eq!(text(&dst, "later.txt").as_deref(), Some("written later"));
    assert_eq!(snapshot(&src).await, source_before);
}

#[tokio::test]
async fn a_first_run_writes_nothing_to_the_protected_side_not_even_an_id_file() {
    for mode in MODES {
        let state = tempfile::tempdir().unwrap();
        let engine = SyncEngine::new(state.path());
        let src = Arc::new(MemoryClient::new());
        let dst = Arc::new(MemoryClient::new());
        write(&src, "a.txt", "source file", at(0)).await;
        write(&dst, "b.txt", "destination file", at(0)).await;
        let before = snapshot(&dst).await;
        // A mirror onto the source deletes its only file: past --max-delete.
        let opts = SyncOptions::default()
            .with_force(true)
            .with_protected(Side::Destination);
        let stats = engine
            .sync_pair(&SyncPair::new(client(&src), client(&dst), mode).with_options(opts))
            .await
            .unwrap();
        assert_eq!(stats.errors, 0, "{mode}: {stats:?}");
        assert_eq!(snapshot(&dst).await, before, "{mode}");
        assert!(
            stats.warnings.iter().any(|w| w.contains("identity file")),
            "{mode}: the missing identity is reported: {:?}",
            stats.warnings
        );
        if mode.allows_download() {
            assert_eq!(text(&src, "b.txt").as_deref(), Some("destination file"));
        }
    }
}

#[tokio::test]
async fn a_dry_run_predicts_the_protected_count_and_both_sides_protected_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (src, dst) = changed_pair(&engine).await;
    let opts = SyncOptions::default()
        .with_dry_run(true)
        .with_protected(Side::Destination);
    let predicted = engine
        .sync_pair(&SyncPair::new(client(&src), client(&dst), SyncMode::TwoWay).with_options(opts))
        .await
        .unwrap();
    let real = sync(
        &engine,
        &src,
        &dst,
        SyncMode::TwoWay,
        Some(Side::Destination),
    )
    .await
    .unwrap();
    assert!(predicted.protected > 0, "{predicted:?}");
    // The real run also counts the kept conflict loser it does not copy over.
    assert!(
        real.protected >= predicted.protected,
        "{predicted:?} {real:?}"
    );

    let both = SyncOptions::default()
        .with_protected(Side::Source)
        .with_protected(Side::Destination);
    let before = (snapshot(&src).await, snapshot(&dst).await);
    let err = engine
        .sync_pair(&SyncPair::new(client(&src), client(&dst), SyncMode::TwoWay).with_options(both))
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Config(_)), "{err}");
    assert!(err.to_string().contains("dry run"), "{err}");
    assert_eq!((snapshot(&src).await, snapshot(&dst).await), before);
}

/// A protected root whose client does not know how it folds names is probed with reads only:
/// no probe file is written, and the folding is found all the same.
#[tokio::test]
async fn a_protected_root_is_probed_for_name_folding_without_a_write() {
    use syncengine_core::protect::read_only_folding;
    use syncengine_core::testing::QuirkClient;

    let inner = Arc::new(MemoryClient::new());
    write(&inner, "Readme.txt", "read me", at(0)).await;
    write(&inner, "docs/caf\u{e9}.txt", "NFC", at(0)).await;
    let folding_side = |case: bool, nfc: bool| {
        Arc::new(
            QuirkClient::new(inner.clone())
                .with_case_insensitive(case)
                .with_normalization_insensitive(nfc)
                .with_declared_folding(false),
        )
    };
    let before = snapshot(&inner).await;
    for (case, nfc) in [(true, false), (false, true), (true, true), (false, false)] {
        let client = folding_side(case, nfc);
        let found = read_only_folding(client.as_ref(), 1000).await.unwrap();
        assert_eq!(
            (found.case_insensitive, found.normalization_insensitive),
            (case, nfc)
        );
    }
    assert_eq!(snapshot(&inner).await, before, "nothing written");

    // In a run: the protected side gets no probe file and no warning about a failed probe.
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    write(&src, "new.txt", "from the source", at(10)).await;
    let dst: Arc<dyn StorageClient> = folding_side(true, false);
    let opts = SyncOptions::default().with_protected(Side::Destination);
    let stats = engine
        .sync_pair(&SyncPair::new(client(&src), dst, SyncMode::TwoWay).with_options(opts))
        .await
        .unwrap();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(stats.downloaded, 2, "{stats:?}");
    assert_eq!(stats.protected, 1, "{stats:?}");
    assert!(
        !stats.warnings.iter().any(|w| w.contains("probe")),
        "{:?}",
        stats.warnings
    );
    assert_eq!(snapshot(&inner).await, before, "nothing written in the run");
}

/// A type change against an edit: the folder keeps the path and the edited file moves aside.
/// With the folder's side protected, the file moves aside on its own side only (it is not
/// copied to the protected side) and the folder's files still arrive.
#[tokio::test]
async fn a_file_moved_aside_for_a_protected_folder_stays_on_its_side() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new().with_disk_folders());
    let dst = Arc::new(MemoryClient::new().with_disk_folders());
    write(&src, "x", "a file", at(0)).await;
    write(&src, "keep.txt", "kept", at(0)).await;
    let first = sync(&engine, &src, &dst, SyncMode::TwoWay, None)
        .await
        .unwrap();
    assert_eq!(first.uploaded, 2, "{first:?}");
    write(&src, "x", "the file, edited on the source", at(100)).await;
    dst.delete(&rel("x")).await.unwrap();
    write(
        &dst,
        "x/inside.txt",
        "the destination made x a folder",
        at(100),
    )
    .await;
    let before = snapshot(&dst).await;
    for run in 0..2 {
        let stats = sync(
            &engine,
            &src,
            &dst,
            SyncMode::TwoWay,
            Some(Side::Destination),
        )
        .await
        .unwrap();
        assert_eq!(stats.errors, 0, "run {run}: {stats:?}");
        assert_eq!(snapshot(&dst).await, before, "run {run}");
        assert!(stats.protected >= 1, "run {run}: {stats:?}");
    }
    assert_eq!(
        text(&src, "x/inside.txt").as_deref(),
        Some("the destination made x a folder")
    );
    let aside: Vec<String> = user_files(&src)
        .into_iter()
        .filter(|p| p.starts_with("x.conflict-"))
        .collect();
    assert_eq!(aside.len(), 1, "{:?}", user_files(&src));
    assert_eq!(
        text(&src, &aside[0]).as_deref(),
        Some("the file, edited on the source")
    );
}

/// A new file takes the path of a settled deletion (source-backup: the source deleted it, the
/// backup kept it). With the backup protected, nothing happens there and it is reported; with
/// the source protected, the kept copy is set aside on the backup and the new file copied.
#[tokio::test]
async fn a_set_aside_never_touches_the_protected_side() {
    for protected in [Side::Source, Side::Destination] {
        let state = tempfile::tempdir().unwrap();
        let engine = SyncEngine::new(state.path());
        let src = Arc::new(MemoryClient::new());
        let dst = Arc::new(MemoryClient::new());
        write(&src, "IMG_0001.JPG", "the first photo", at(0)).await;
        write(&src, "other.JPG", "another photo", at(0)).await;
        sync(&engine, &src, &dst, SyncMode::SourceBackup, None)
            .await
            .unwrap();
        src.delete(&rel("IMG_0001.JPG")).await.unwrap();
        sync(&engine, &src, &dst, SyncMode::SourceBackup, None)
            .await
            .unwrap();
        write(&src, "IMG_0001.JPG", "a new photo, same name", at(100)).await;
        let guarded = match protected {
            Side::Source => &src,
            Side::Destination => &dst,
        };
        let before = snapshot(guarded).await;
        let stats = sync(&engine, &src, &dst, SyncMode::SourceBackup, Some(protected))
            .await
            .unwrap();
        assert_eq!(stats.errors, 0, "{protected}: {stats:?}");
        assert_eq!(snapshot(guarded).await, before, "{protected}");
        match protected {
            Side::Destination => {
                assert_eq!(stats.protected, 1, "{stats:?}");
                assert_eq!(
                    text(&dst, "IMG_0001.JPG").as_deref(),
                    Some("the first photo")
                );
            }
            Side::Source => {
                assert_eq!(
                    text(&dst, "IMG_0001.JPG").as_deref(),
                    Some("a new photo, same name")
                );
                let kept: Vec<String> = user_files(&dst)
                    .into_iter()
                    .filter(|p| p.starts_with("IMG_0001.conflict-"))
                    .collect();
                assert_eq!(kept.len(), 1, "{:?}", user_files(&dst));
                assert_eq!(text(&dst, &kept[0]).as_deref(), Some("the first photo"));
            }
        }
    }
}
