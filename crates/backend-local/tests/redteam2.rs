//! Red-team (issue 8, round 2) on local disk: what an interrupted run's copy intents make of
//! a conflict whose two versions agree on size and mtime.
//!
//! Behaviour 6: when both sides changed a path and their size and mtime agree, the contents
//! are hashed before they are called equal. Behaviour 12: the intent of each copy is recorded
//! before it starts, and the next run records a copy that landed. `recover_intents` decides
//! "landed" by size and mtime when the intended version has no hash (local files have none
//! without `--checksum`) — so after an interrupted conflict resolution, the destination's
//! *own, different* version passes for the winner's copy. The base then says synced, the two
//! sides keep different content, and every later run is idle.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use syncengine_backend_local::LocalClient;
use syncengine_core::testing::{Fault, FaultClient, FaultConfig, Op};
use syncengine_core::{SyncEngine, SyncError, SyncMode, SyncPair};
use tokio_util::sync::CancellationToken;

fn set_mtime(path: &Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Every file's content below `root` (the trash included).
fn contents(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    out
}

#[tokio::test]
async fn an_interrupted_conflict_is_not_taken_for_a_landed_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&dst).unwrap();
    fs::write(src.join("f.txt"), "original").unwrap();
    let state = tmp.path().join("state");
    let plain = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::TwoWay,
    );
    SyncEngine::new(&state).sync_pair(&plain).await.unwrap();

    // Both sides change f.txt: same size, same mtime (both restored from archives that keep
    // whole-second times, say), different bytes. Behaviour 6 hashes them: a conflict.
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    fs::write(src.join("f.txt"), "SOURCE-1").unwrap();
    fs::write(dst.join("f.txt"), "DEST---2").unwrap();
    set_mtime(&src.join("f.txt"), when);
    set_mtime(&dst.join("f.txt"), when);

    // The conflict run is interrupted once the executor starts on the destination (its first
    // stat, when it looks for a free conflict name): the intent of the winner's copy is
    // recorded, nothing was written.
    let cancel = CancellationToken::new();
    let faulty = Arc::new(
        FaultClient::new(
            Arc::new(LocalClient::new(&dst)),
            FaultConfig::seeded(1)
                .with_rate(1.0)
                .with_faults([Fault::Cancel])
                .with_ops([Op::Stat]),
        )
        .with_cancel_token(cancel.clone()),
    );
    let interrupted = SyncPair::new(Arc::new(LocalClient::new(&src)), faulty, SyncMode::TwoWay);
    let result = SyncEngine::new(&state)
        .with_cancellation(cancel)
        .sync_pair(&interrupted)
        .await;
    assert!(
        matches!(result, Err(SyncError::Cancelled)),
        "the run should have been cancelled: {result:?}"
    );
    assert_eq!(fs::read_to_string(dst.join("f.txt")).unwrap(), "DEST---2");

    // The next runs, uninterrupted.
    let engine = SyncEngine::new(&state);
    let first = engine.sync_pair(&plain).await.unwrap();
    let second = engine.sync_pair(&plain).await.unwrap();
    let (s, d) = (
        fs::read_to_string(src.join("f.txt")).unwrap(),
        fs::read_to_string(dst.join("f.txt")).unwrap(),
    );
    assert_eq!(
        s, d,
        "the sides differ and the pair calls itself synced (after: {first:?}, then {second:?})"
    );
    let all: Vec<String> = contents(&src).into_iter().chain(contents(&dst)).collect();
    for v in ["SOURCE-1", "DEST---2"] {
        assert!(all.iter().any(|c| c == v), "{v} is gone: {all:?}");
    }
}

/// A run cancelled while the winner of a conflict is being committed over the loser.
///
/// `Executor::replace` first keeps the loser under its conflict name (a hard link), then
/// writes the winner. A cancellation drops the write future; `Undo`'s `Drop` then spawns
/// `undo_copy`, which removes the conflict copy if the loser still sits at its path. But the
/// local write's last step (write the temp, check, rename) runs in `spawn_blocking` and goes
/// on after the future is dropped: when `undo_copy` looks before that rename, it deletes the
/// conflict copy, and the rename then replaces the loser. The loser — a user's edit — is at
/// neither name, nor in the trash. (A race: tried a number of times; one loss fails the test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_while_a_conflict_winner_commits_never_loses_the_loser() {
    let mut lost = Vec::new();
    for round in 0..40 {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&dst).unwrap();
        fs::write(src.join("x.bin"), "original").unwrap();
        let state = tmp.path().join("state");
        let plain = SyncPair::new(
            Arc::new(LocalClient::new(&src)),
            Arc::new(LocalClient::new(&dst)),
            SyncMode::TwoWay,
        );
        SyncEngine::new(&state).sync_pair(&plain).await.unwrap();

        // The destination's edit (older) loses to the source's (newer, ~1 MB, written in
        // one blocking call).
        let loser = format!("the destination's edit, round {round}");
        fs::write(dst.join("x.bin"), &loser).unwrap();
        set_mtime(
            &dst.join("x.bin"),
            SystemTime::now() - Duration::from_secs(3600),
        );
        fs::write(src.join("x.bin"), vec![b'S'; 1_000_000]).unwrap();

        let cancel = CancellationToken::new();
        let faulty = Arc::new(
            FaultClient::new(Arc::new(LocalClient::new(&dst)), FaultConfig::none())
                .with_cancel_token(cancel.clone()),
        );
        let token = cancel.clone();
        faulty.at_body_end(
            syncengine_core::RelPath::new("x.bin").unwrap(),
            Arc::new(move |_| token.cancel()),
        );
        let pair = SyncPair::new(Arc::new(LocalClient::new(&src)), faulty, SyncMode::TwoWay);
        let _ = SyncEngine::new(&state)
            .with_cancellation(cancel)
            .sync_pair(&pair)
            .await;
        // Let the background clean-up and the blocking commit finish.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let all: Vec<String> = contents(&src).into_iter().chain(contents(&dst)).collect();
        if !all.iter().any(|c| c == &loser) {
            lost.push(round);
        }
    }
    assert!(
        lost.is_empty(),
        "the losing edit vanished in rounds {lost:?} of 40 (not at its path, no conflict copy, \
         not in the trash)"
    );
}

/// The same race for a plain overwrite: the old version's copy in the trash is removed by the
/// background undo, then the blocking commit replaces the file — the overwritten version is
/// unrecoverable (behaviour 13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_while_an_overwrite_commits_keeps_the_old_version_recoverable() {
    let mut lost = Vec::new();
    for round in 0..40 {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&dst).unwrap();
        let old = format!("the old version, round {round}");
        fs::write(src.join("x.bin"), &old).unwrap();
        let state = tmp.path().join("state");
        let plain = SyncPair::new(
            Arc::new(LocalClient::new(&src)),
            Arc::new(LocalClient::new(&dst)),
            SyncMode::TwoWay,
        );
        SyncEngine::new(&state).sync_pair(&plain).await.unwrap();
        fs::write(src.join("x.bin"), vec![b'S'; 1_000_000]).unwrap();

        let cancel = CancellationToken::new();
        let faulty = Arc::new(
            FaultClient::new(Arc::new(LocalClient::new(&dst)), FaultConfig::none())
                .with_cancel_token(cancel.clone()),
        );
        let token = cancel.clone();
        faulty.at_body_end(
            syncengine_core::RelPath::new("x.bin").unwrap(),
            Arc::new(move |_| token.cancel()),
        );
        let pair = SyncPair::new(Arc::new(LocalClient::new(&src)), faulty, SyncMode::TwoWay);
        let _ = SyncEngine::new(&state)
            .with_cancellation(cancel)
            .sync_pair(&pair)
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if !contents(&dst).iter().any(|c| c == &old) {
            lost.push(round);
        }
    }
    assert!(
        lost.is_empty(),
        "the overwritten version is neither at its path nor in the destination's trash in \
         rounds {lost:?} of 40"
    );
}

/// `--backup-dir` / `--trash-dir` (API: `Recovery::BackupDir`): a delete first copies the file
/// into the backup dir, then deletes it — unconditionally. `remove()` checked the file was
/// the listed version *before* the copy, so a version the user saves while the copy runs (a
/// large file takes a while) is the one deleted, and the backup dir holds the old one. The
/// user's save is nowhere.
#[tokio::test]
async fn a_save_while_a_delete_copies_to_the_backup_dir_is_not_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, backup) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("backup"),
    );
    for d in [&src, &dst, &backup] {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(src.join("doc.txt"), "version 1").unwrap();
    fs::write(src.join("a.txt"), "other file").unwrap();
    fs::write(src.join("b.txt"), "another file").unwrap();
    let state = tmp.path().join("state");
    let backup_client = Arc::new(FaultClient::new(
        Arc::new(LocalClient::new(&backup)),
        FaultConfig::none(),
    ));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::TwoWay,
    )
    .with_options(syncengine_core::SyncOptions::default().with_recovery(
        syncengine_core::Side::Destination,
        syncengine_core::Recovery::BackupDir(backup_client.clone()),
    ));
    SyncEngine::new(&state).sync_pair(&pair).await.unwrap();
    assert_eq!(
        fs::read_to_string(dst.join("doc.txt")).unwrap(),
        "version 1"
    );

    // The source deletes doc.txt; while the engine copies the destination's doc.txt into the
    // backup dir, the destination's user saves a new version of it (by rename).
    fs::remove_file(src.join("doc.txt")).unwrap();
    let saved = "version 2, saved on the destination during the run";
    let now = SystemTime::now();
    for secs in 0..4 {
        // The backup path is `<run stamp>/doc.txt`; the stamp is the run's start, to the second.
        let t = time::OffsetDateTime::from(now + Duration::from_secs(secs));
        let stamp = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let target = dst.join("doc.txt");
        backup_client.at_body_end(
            syncengine_core::RelPath::new(format!("{stamp}/doc.txt")).unwrap(),
            Arc::new(move |_| {
                let swap = target.with_file_name(".doc.txt.swp");
                fs::write(&swap, saved).unwrap();
                fs::rename(&swap, &target).unwrap();
            }),
        );
    }
    let stats = SyncEngine::new(&state).sync_pair(&pair).await.unwrap();
    let all: Vec<String> = contents(&src)
        .into_iter()
        .chain(contents(&dst))
        .chain(contents(&backup))
        .collect();
    assert!(
        all.iter().any(|c| c == saved),
        "the version saved during the backup copy was deleted and is nowhere (run: {stats:?}; \
         backup dir holds {:?})",
        contents(&backup)
    );
}
