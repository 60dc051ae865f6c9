//! Red-team round 7: failing tests for what this session's changes (copy intents recorded a
//! batch at a time, spare conflict copies reused only on equal content, folders whose only
//! members are unknown) still let through. Each test asserts the safe behaviour and fails on
//! the code it was written against.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

#[path = "support/files.rs"]
mod files;
#[path = "support/runs.rs"]
mod runs;
use files::{put, rel, state_db, text, user_files};
use runs::{
    assert_spare_left_alone, failed_set_aside, holding, kept_copy_meets_a_new_file, options, run,
    the_spare,
};

use syncengine_core::{MemoryClient, Side, StorageClient, SyncEngine, SyncMode};

/// A failed set aside of a photo bigger than 64 MiB, on a backup that lists no hash.
///
/// The scenario of redteam6's `a_failed_set_aside_upload_does_not_leave_a_second_conflict_copy`
/// (source-backup; the photo `x` was deleted on the source, the deletion settled; a new,
/// unrelated file appears at `x`; the set aside links the photo to a conflict name, then the
/// upload of the new `x` fails transiently and the spare stays), with two differences: the
/// backup lists like an Apache WebDAV server or a local disk (size and mtime, no hash), and
/// the photo is a 65 MiB video. `spare_of` now wants an MD5 of both the kept file and the
/// spare, and `md5_within_limit` gives up above 64 MiB when none is listed: the spare is never
/// reused, and every failed attempt leaves one more full copy of the video on the backup
/// (a link that times out on big uploads fails on exactly the big files). Re-making the copy
/// costs a whole server-side copy of the file anyway; reading both to compare would cost
/// about the same and leave no duplicate. Severity: garbage (documented as a trade-off in
/// `spare_of`, but it brings back the duplicate redteam6 fixed, for exactly the big files).
#[tokio::test(start_paused = true)]
async fn a_failed_set_aside_of_a_big_file_does_not_leave_a_second_copy() {
    let mut video = String::from("v1, a video ");
    video.extend(std::iter::repeat_n('v', (65 << 20) - video.len()));
    const NEW: &str = "a new, unrelated file at the video's old name";
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    dst.webdav_like_metadata(true);
    let sb = SyncMode::SourceBackup;
    kept_copy_meets_a_new_file(&engine, &src, &dst, &video, NEW).await;

    for _attempt in 0..2 {
        failed_set_aside(&engine, &src, &dst).await;
    }
    run(&engine, src.clone(), dst.clone(), sb, options()).await;
    let last = run(&engine, src.clone(), dst.clone(), sb, options()).await;
    assert!(last.is_noop(), "{last:?}");
    assert_eq!(text(&dst, "x").as_deref(), Some(NEW));
    assert!(
        holding(&src, &video).is_empty(),
        "the deleted video came back"
    );
    let kept = holding(&dst, &video);
    assert_eq!(
        kept.len(),
        1,
        "the video should be kept once on the backup, not once per failed attempt: {kept:?}"
    );
}

/// Copy intents left by this version outlive runs of an earlier version, and come back
/// stale after an upgrade.
///
/// Two-way. A copy of `p` to the destination lands but its reply is lost (the run counts an
/// error): its intent stays in `intent_batches`, as designed, for the next run. The next runs
/// are made by the previous release (a rollback: the distribution package, a pinned
/// container), which knows only the one-row-per-intent `intents` table. It neither reads nor
/// clears `intent_batches` (its `clear_all_intents` is `DELETE FROM intents`); it records
/// `p` as synced, the user switches to source-backup and deletes `p` on the source, and that
/// deletion is settled: the destination keeps the only copy of `p`. Then the user upgrades
/// again and runs two-way. The old intent is still there: `recover_intents` finds the
/// destination still holding that version and overlays the base of `p` with "both sides hold
/// it". The settled deletion is gone from the plan's view: the source "deleted" `p`, and two-way
/// deletes the destination's only copy (into the trash, which is purged after 30 days).
/// SEMANTICS: a later two-way run never turns a settled deletion into a delete (it copies the
/// kept copy back). An intent is only true for the run after the one that recorded it; one
/// that an unknown version may have outlived must not be applied (a version stamp or a
/// generation in the row, or a schema version bump that older versions refuse). Severity:
/// loss (of the only copy, to the trash).
///
/// Fixed by schema version 3: a release that knows only the `intents` table knows schema
/// versions up to 2 and refuses a newer database ("schema version 3 was written by a newer
/// syncengine") instead of running against it. What this test can check without that
/// release: the database that holds the batch says version 3, and the batch is read back.
#[tokio::test(start_paused = true)]
async fn intents_that_an_older_version_outlived_do_not_undo_a_settled_deletion() {
    use syncengine_core::testing::{Fault, FaultClient, FaultConfig};
    const P: &str = "the only copy, once the source deleted it";
    let state = tempfile::tempdir().unwrap();
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    put(&src, "a", "a from the source").await;
    let engine = SyncEngine::new(state.path());
    run(
        &engine,
        src.clone(),
        dst.clone(),
        SyncMode::TwoWay,
        options(),
    )
    .await;
    put(&src, "p", P).await;
    let fd = Arc::new(FaultClient::new(dst.clone(), FaultConfig::none()));
    fd.fail_path(&rel("p"), Fault::ErrorAfter, 1);
    fd.fail_path(&rel("p"), Fault::Error, 10);
    let lost = run(
        &engine,
        src.clone(),
        fd.clone(),
        SyncMode::TwoWay,
        options(),
    )
    .await;
    assert_eq!(lost.errors, 1, "{lost:?}");
    assert_eq!(text(&dst, "p").as_deref(), Some(P));

    let db = rusqlite::Connection::open(state_db(state.path())).unwrap();
    let left: i64 = db
        .query_row("SELECT count(*) FROM intent_batches", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 1, "the lost copy's intent stays, as designed");
    let version: i64 = db
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        version > 2,
        "a database with intent batches must be refused by a release that knows only \
         schema 2 (one row per intent), which would leave the batches stale: version {version}"
    );
    drop(db);

    // The lost copy is recognised by the next run (the same release): the source's edit is
    // an ordinary upload.
    put(&src, "p", "p, edited on the source").await;
    let next = run(
        &engine,
        src.clone(),
        dst.clone(),
        SyncMode::TwoWay,
        options(),
    )
    .await;
    assert_eq!((next.conflicts, next.uploaded), (0, 1), "{next:?}");
}

/// A mirror mode renames a file on its authoritative side because the mirror holds a folder
/// of that name whose only member is unknown.
///
/// Source-to-destination (and the reverse, destination-to-source). The authoritative side
/// holds a file `x`; the mirror holds a folder `x` whose only member is a symlink `x/link`
/// (unknown: never followed, never deleted). Since "a folder whose only members are unknown
/// counts as a folder in a type change", the run decides `MoveAside` on the file's side —
/// the authoritative one: the user's `x` is renamed to `x.conflict-…-source` on the source,
/// and counted as a conflict. SEMANTICS: mirror modes have no conflicts, the authoritative side
/// wins every difference, and a one-way mode never writes its authoritative side (`allows_download`
/// is false for source-to-destination); an unknown path is left alone on both sides and
/// reported. The mirror cannot be made to match here (the folder cannot go), so the run should
/// leave `x` alone on both sides and report it, not move the user's file on the side the mode
/// treats as read-only (an application that opens `x` there no longer finds it; on a read-only
/// source the rename fails every run instead). No content is lost. Severity: noise (a
/// contract violation of the mirror modes: an unasked write on the authoritative side).
#[tokio::test]
async fn a_mirror_never_renames_a_file_on_its_authoritative_side() {
    for (mode, auth) in [
        (SyncMode::SourceToDestination, Side::Source),
        (SyncMode::DestinationToSource, Side::Destination),
    ] {
        let state = tempfile::tempdir().unwrap();
        let engine = SyncEngine::new(state.path());
        let src = Arc::new(MemoryClient::new().with_disk_folders());
        let dst = Arc::new(MemoryClient::new().with_disk_folders());
        let (file, folder) = match auth {
            Side::Source => (&src, &dst),
            Side::Destination => (&dst, &src),
        };
        put(file, "x", "the user's file").await;
        put(file, "a", "another file").await;
        put(folder, "x/link/inner", "behind a symlink").await;
        folder.set_unlisted(&rel("x/link"), Some("a symlink (not followed)"));
        let stats = run(&engine, src.clone(), dst.clone(), mode, options()).await;
        assert_eq!(stats.unknown, 1, "{mode:?}: {stats:?}");
        assert_eq!(
            text(folder, "x/link/inner").as_deref(),
            Some("behind a symlink"),
            "{mode:?}"
        );
        assert_eq!(
            stats.conflicts, 0,
            "{mode:?}: a mirror mode has no conflicts: {stats:?}"
        );
        assert_eq!(
            user_files(file),
            vec![
                ("a".to_owned(), "another file".to_owned()),
                ("x".to_owned(), "the user's file".to_owned()),
            ],
            "{mode:?}: the authoritative side was changed"
        );
    }
}

/// A spare conflict copy that carries the kept file's inode number without being that file.
///
/// The scenario of redteam6's `an_edited_spare_copy_is_not_taken_for_the_kept_version`
/// (source-backup; the photo `x` was deleted on the source, the deletion settled; a new,
/// unrelated file appears at `x`; the set aside copies the photo to a conflict name, then the
/// upload of the new `x` fails transiently and the spare stays; the backup lists no hash),
/// except that the spare path now holds another file that *stats* like the photo: the same
/// inode number, size and mtime, other content. On disk that is a file bind-mounted onto the
/// conflict name, or any file of another filesystem mounted in that folder: inode numbers are
/// per filesystem. `spare_of` took an equal `file_id` for a hard link ("one folder, one
/// filesystem"), reused the spare as the kept copy, and the new file then replaced `x`: the
/// photo was nowhere. A hard link shares the whole inode, birth time included; a spare whose
/// birth time differs, or that has none, must be judged by its content. Severity: loss.
#[tokio::test(start_paused = true)]
async fn a_spare_copy_that_only_shares_the_kept_files_inode_is_not_taken_for_it() {
    for birth in [Birth::Own, Birth::None] {
        spare_with_the_kept_files_inode(birth).await;
    }
}

/// What birth time the look-alike spare of
/// `a_spare_copy_that_only_shares_the_kept_files_inode_is_not_taken_for_it` lists with.
#[derive(Clone, Copy, Debug)]
enum Birth {
    /// Its own (another file's).
    Own,
    /// None (a filesystem that keeps none).
    None,
}

async fn spare_with_the_kept_files_inode(birth: Birth) {
    const PHOTO: &str = "v1, a photo, 40 bytes of it ..........";
    const OTHER: &str = "another filesystem's file, same length";
    const NEW: &str = "a new, unrelated file at the photo's old name";
    assert_eq!(PHOTO.len(), OTHER.len());
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    dst.webdav_like_metadata(true);
    kept_copy_meets_a_new_file(&engine, &src, &dst, PHOTO, NEW).await;

    let spare = the_spare(&engine, &src, &dst, PHOTO).await;
    let kept = dst.stat(&rel("x")).await.unwrap();
    put(&dst, spare.as_str(), OTHER).await;
    dst.set_mtime(&spare, kept.mtime.unwrap()).unwrap();
    let own = dst.stat(&spare).await.unwrap().birth_time;
    let birth_time = match birth {
        Birth::Own => own,
        Birth::None => None,
    };
    dst.set_identity(&spare, kept.file_id.unwrap(), birth_time)
        .unwrap();
    let look_alike = dst.stat(&spare).await.unwrap();
    assert_eq!(
        (look_alike.size, look_alike.mtime, look_alike.file_id),
        (kept.size, kept.mtime, kept.file_id),
        "{birth:?}: the spare stats like the kept file"
    );
    assert_ne!(look_alike.birth_time, kept.birth_time, "{birth:?}");

    let context = format!("{birth:?}");
    assert_spare_left_alone(&engine, &src, &dst, &spare, PHOTO, NEW, OTHER, &context).await;
}
