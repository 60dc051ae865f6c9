//! Red-team round 6: failing tests for what this session's changes (settle-ahead of a set
//! aside, `renamed_anyway`, `--checksum` renames, the listing filter fast paths) still let
//! through. Each test asserts the safe behaviour and fails on the code it was written against.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

#[path = "support/files.rs"]
mod files;
#[path = "support/runs.rs"]
mod runs;
use files::{put, rel, text, user_files};
use runs::{
    assert_spare_left_alone, failed_set_aside, holding, kept_copy_meets_a_new_file, options, run,
    the_spare,
};

use syncengine_core::{MemoryClient, StorageClient, StorageClientExt, SyncEngine, SyncMode};

/// A set aside whose upload fails after the photo was linked aside (a transient error that
/// outlasts the retries: a flaky link, a timeout), or whose run is killed at that point.
///
/// Source-backup. The photo `x` was backed up, then deleted on the source (the deletion is
/// settled: the destination keeps `x`). Later an unrelated new file appears at `x` on the
/// source (a camera restarting at `IMG_0001.JPG`), so the run sets the backup aside: it
/// records the conflict name as settled *ahead* (`settle_ahead`), links the photo to
/// `x.conflict-…-destination`, then uploads the new `x` over the path. That upload fails
/// with a transient error (retries exhausted). As documented, the spare copy stays (the write
/// might still land), and the settle-ahead record keeps it settled. But the path still holds
/// the photo with its settled base, so the next run sees the same "new file at a settled
/// path" and sets the photo aside a second time, under a second conflict name.
///
/// Result: two conflict copies of the same photo on the backup, one more per failed attempt
/// (a link that times out on big uploads every run keeps multiplying them). The engine
/// wrote the record of the first conflict copy itself; it should reuse it (or drop the spare
/// once the path is found unchanged) rather than leave an unexplained duplicate.
/// Severity: garbage.
#[tokio::test(start_paused = true)]
async fn a_failed_set_aside_upload_does_not_leave_a_second_conflict_copy() {
    const PHOTO: &str = "v1, a photo, 40 bytes of it ..........";
    const NEW: &str = "a new, unrelated file at the photo's old name";
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    let sb = SyncMode::SourceBackup;
    kept_copy_meets_a_new_file(&engine, &src, &dst, PHOTO, NEW).await;

    // Every attempt (`with_attempts(2)`) of the upload of `x` fails transiently.
    failed_set_aside(&engine, &src, &dst).await;
    let after_failure = user_files(&dst);

    run(&engine, src.clone(), dst.clone(), sb, options()).await;
    let last = run(&engine, src.clone(), dst.clone(), sb, options()).await;
    assert!(last.is_noop(), "{last:?}");
    assert!(
        holding(&src, PHOTO).is_empty(),
        "the deleted photo came back"
    );
    assert_eq!(text(&dst, "x").as_deref(), Some(NEW));
    let kept = holding(&dst, PHOTO);
    assert_eq!(
        kept.len(),
        1,
        "the photo should be kept once on the backup, not once per failed attempt: {:?} \
         (after the failed run: {after_failure:?})",
        user_files(&dst)
    );
}

/// An unknown path dropped by a folder-only pattern although it is a file.
///
/// Two-way, `--exclude build/` (the user means build *folders*). A plain file named `build`
/// (a Makefile target's stamp, a script) is synced to both sides: the pattern, folder-only,
/// does not match it. Then on the source `build` becomes something the listing cannot read
/// — a symlink (the user links it to a shared copy), or a file that vanished or changed type
/// while it was walked. SEMANTICS: an unknown path is never deleted, on either side; it is
/// left alone and reported. But the listing filter drops an unknown item when the patterns
/// exclude it *either* as a file *or* as a folder (`matches_patterns(p, false) ||
/// matches_patterns(p, true)`), and a listing cannot tell whether a symlink is one or the
/// other. The unknown `build` vanishes from the source listing without a trace, the base
/// says `build` was there, so the source "deleted" it, and two-way deletes the
/// destination's `build` (into the trash), reporting nothing unknown.
///
/// An unknown path should be dropped only when the patterns exclude it whatever it turns out
/// to be (as a file *and* as a folder). Severity: loss (of the destination copy, recoverable
/// from the trash only if the user notices).
#[tokio::test]
async fn an_unknown_file_matched_only_by_a_folder_pattern_is_not_deleted_on_the_other_side() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    put(&src, "build", "#!/bin/sh\nmake all\n").await;
    put(&src, "a", "a").await;
    put(&src, "b", "b").await;
    let opts = || options().with_excludes(vec!["build/".to_string()]);
    let first = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay, opts()).await;
    assert_eq!(
        first.uploaded, 3,
        "a folder pattern does not exclude a file: {first:?}"
    );
    assert_eq!(
        text(&dst, "build").as_deref(),
        Some("#!/bin/sh\nmake all\n")
    );

    src.set_unlisted(&rel("build"), Some("a symlink (not followed)"));
    let stats = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay, opts()).await;
    assert_eq!(
        text(&dst, "build").as_deref(),
        Some("#!/bin/sh\nmake all\n"),
        "the destination's file was deleted because the source's became unreadable: {stats:?}"
    );
    assert_eq!(stats.deleted_destination, 0, "{stats:?}");
    assert_eq!(stats.unknown, 1, "the unknown path is reported: {stats:?}");
}

/// The same filter, worse: an unreadable *folder* under the common "only these files"
/// pattern idiom.
///
/// Two-way with `--exclude '*' --exclude '!*/' --exclude '!*.jpg'` (gitignore's idiom for
/// "sync only the JPEGs, in every folder": ignore everything, re-include folders, re-include
/// `*.jpg`). `photos/a.jpg` and `photos/b.jpg` are synced. Then the source's `photos`
/// folder cannot be read this run (permissions changed, a symlink to another disk, an NFS
/// mount that errors): the listing reports `photos` as unknown. The filter asks whether the
/// patterns exclude `photos` as a *file* — `*` does — and drops the unknown item. The
/// source now looks as if both photos were deleted, and two-way deletes them on the
/// destination (into its trash): every photo in a folder the source could not read is gone
/// from the destination, and nothing is reported as unknown.
///
/// SEMANTICS: "Unknown paths are never deleted … and everything below it is left alone on
/// both sides for that run". An unknown folder must only be dropped when the patterns
/// exclude it as a folder (everything below it is then excluded too). Severity: loss.
#[tokio::test]
async fn an_unreadable_folder_under_an_only_these_files_pattern_keeps_its_files() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    put(&src, "photos/a.jpg", "photo a").await;
    put(&src, "photos/b.jpg", "photo b").await;
    for top in ["t1.jpg", "t2.jpg", "t3.jpg", "t4.jpg"] {
        put(&src, top, top).await;
    }
    put(&src, "notes.txt", "excluded").await;
    let opts = || {
        options().with_excludes(vec![
            "*".to_string(),
            "!*/".to_string(),
            "!*.jpg".to_string(),
        ])
    };
    let first = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay, opts()).await;
    assert_eq!(first.uploaded, 6, "{first:?}");
    assert_eq!(text(&dst, "photos/a.jpg").as_deref(), Some("photo a"));

    src.set_unlisted(&rel("photos"), Some("an unreadable folder"));
    let stats = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay, opts()).await;
    assert_eq!(
        (
            text(&dst, "photos/a.jpg").as_deref(),
            text(&dst, "photos/b.jpg").as_deref()
        ),
        (Some("photo a"), Some("photo b")),
        "the destination's photos were deleted because the source's folder could not be \
         read: {stats:?}"
    );
    assert_eq!(
        stats.unknown, 1,
        "the unknown folder is reported: {stats:?}"
    );
}

/// The backup side reorganises its kept copies: a settled deletion renamed on the backup.
///
/// Source-backup. The photo `2019/x.jpg` was backed up, then deleted on the source (phone
/// space): the deletion is settled and the destination keeps the backup. Later the user
/// tidies the backup drive and moves old photos into `archive/` there
/// (`2019/x.jpg` → `archive/2019/x.jpg`). The next run sees the settled path gone from the
/// destination (`Forget`) and an unknown file appear on the destination ("add file at
/// destination: download to source"): the photo the user deleted from the source is
/// downloaded back to it, under its new name. Rename detection only pairs paths whose other
/// side is an unchanged twin, so the kept copy of a settled deletion is never recognised as
/// moved, and the settled absence is dropped with the old name.
///
/// SEMANTICS: a rename is a path that disappeared and one that appeared on the same side
/// with the same content; a settled deletion is one-sided from then on, and "deleted photos
/// never come back to the source" (the set aside takes care to carry the settlement to the
/// new name for the same reason). A moved kept copy should carry its settlement to its new
/// name. Severity: resurrection.
#[tokio::test]
async fn a_kept_copy_moved_on_the_backup_side_does_not_come_back_to_the_source() {
    const PHOTO: &str = "a photo the user deleted from the source";
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    put(&src, "2019/x.jpg", PHOTO).await;
    for other in ["a.jpg", "b.jpg", "c.jpg"] {
        put(&src, other, other).await;
    }
    let sb = SyncMode::SourceBackup;
    run(&engine, src.clone(), dst.clone(), sb, options()).await;
    src.delete(&rel("2019/x.jpg")).await.unwrap();
    let settled = run(&engine, src.clone(), dst.clone(), sb, options()).await;
    assert!(settled.is_noop(), "{settled:?}");
    assert_eq!(
        text(&dst, "2019/x.jpg").as_deref(),
        Some(PHOTO),
        "backup preserved"
    );

    // The user tidies the backup drive.
    dst.rename(&rel("2019/x.jpg"), &rel("archive/2019/x.jpg"))
        .await
        .unwrap();
    let stats = run(&engine, src.clone(), dst.clone(), sb, options()).await;
    assert!(
        holding(&src, PHOTO).is_empty(),
        "the photo deleted from the source came back to it: {:?}; {stats:?}",
        holding(&src, PHOTO)
    );
    assert_eq!(text(&dst, "archive/2019/x.jpg").as_deref(), Some(PHOTO));
}

/// A spare conflict copy edited before the retry, keeping its size and mtime.
///
/// As in `a_failed_set_aside_upload_does_not_leave_a_second_conflict_copy`, a set aside on
/// the backup fails after the photo was copied to its conflict name. The backup lists like an
/// Apache WebDAV server (no hash; size and mtime are all it tells). Before the retry the user
/// edits the spare copy in a way that keeps its size and mtime (a tool that restores mtimes,
/// a metadata fix of the same length). The retry must not take the edited spare for the
/// photo: reusing it and overwriting `x` would leave no copy of the photo anywhere. Only
/// content can tell the spare still holds the kept version. Severity: loss.
#[tokio::test(start_paused = true)]
async fn an_edited_spare_copy_is_not_taken_for_the_kept_version() {
    const PHOTO: &str = "v1, a photo, 40 bytes of it ..........";
    const EDIT: &str = "v1, a PHOTO, 40 bytes of it, retouched";
    const NEW: &str = "a new, unrelated file at the photo's old name";
    assert_eq!(PHOTO.len(), EDIT.len());
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    dst.webdav_like_metadata(true);
    kept_copy_meets_a_new_file(&engine, &src, &dst, PHOTO, NEW).await;

    // Every attempt (`with_attempts(2)`) of the upload of `x` fails transiently.
    let spare = the_spare(&engine, &src, &dst, PHOTO).await;
    let mtime = dst.stat(&spare).await.unwrap().mtime.unwrap();
    put(&dst, spare.as_str(), EDIT).await;
    dst.set_mtime(&spare, mtime).unwrap();

    assert_spare_left_alone(
        &engine,
        &src,
        &dst,
        &spare,
        PHOTO,
        NEW,
        EDIT,
        "the user's edit",
    )
    .await;
}
