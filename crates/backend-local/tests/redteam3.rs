//! Red-team (issue 8, round 3) on local disk: root generations (C1's fix, b85f081).
//!
//! Each real run writes a new generation into every root (`.syncengine/generation/<pair
//! hash>`) *before* it changes anything, and a root that holds the recorded id but another
//! generation is stopped as an older copy. These tests put back copies of a root that the
//! generation does not tell apart from the root the last run left.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use syncengine_backend_local::LocalClient;
use syncengine_core::testing::{Fault, FaultClient, FaultConfig};
use syncengine_core::{RelPath, SyncEngine, SyncError, SyncMode, SyncOptions, SyncPair};

/// `cp -a from to` (a backup tool's copy: mtimes, the `.syncengine/` folder and all).
fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a failed");
}

/// Replaces `root` by the copy at `snapshot` (a disk restored from its last snapshot).
fn restore(root: &Path, snapshot: &Path) {
    fs::remove_dir_all(root).unwrap();
    copy_tree(snapshot, root);
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

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("laptop"), tmp.path().join("nas"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&dst).unwrap();
    for i in 0..6 {
        fs::write(src.join(format!("keep{i}.txt")), format!("keep {i}")).unwrap();
    }
    fs::write(src.join("report.txt"), "report v1").unwrap();
    let state = tmp.path().join("state");
    (tmp, src, dst, state)
}

/// A snapshot of the destination taken while a run was writing into it (hourly snapshots of a
/// NAS, a backup job that runs while a long sync does), restored after that run ended.
///
/// The snapshot holds the generation this run wrote at its start, so it passes as the root
/// the run left — but it lacks what the run wrote after the snapshot. The base says those
/// files are on both sides: the next run takes the restored (older) destination's state as
/// the user's edits and rolls the laptop back: `new.txt`, which the run had just copied to the
/// NAS, is deleted on the laptop, and `report.txt` goes back to v1 there.
#[tokio::test]
async fn a_snapshot_taken_during_a_run_is_an_older_copy_once_the_run_ended() {
    let (tmp, src, dst, state) = setup();
    let plain = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::TwoWay,
    );
    SyncEngine::new(&state).sync_pair(&plain).await.unwrap();

    // The laptop adds new.txt and edits report.txt; while the run copies them to the NAS, the
    // NAS takes a snapshot (here: when the body of the last of them has been read).
    fs::write(src.join("new.txt"), "written on the laptop").unwrap();
    fs::write(src.join("report.txt"), "report v2 final").unwrap();
    let snapshot = tmp.path().join("nas-snapshot");
    let faulty = FaultClient::new(Arc::new(LocalClient::new(&dst)), FaultConfig::none());
    let taken = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for name in ["new.txt", "report.txt"] {
        let (dst, snapshot, taken) = (dst.clone(), snapshot.clone(), taken.clone());
        faulty.at_body_end(
            RelPath::new(name).unwrap(),
            Arc::new(move |_p: &RelPath| {
                if !taken.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    copy_tree(&dst, &snapshot);
                }
            }),
        );
    }
    let during = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(faulty),
        SyncMode::TwoWay,
    )
    .with_options(SyncOptions::default().with_transfers(1));
    let stats = SyncEngine::new(&state).sync_pair(&during).await.unwrap();
    assert_eq!(stats.uploaded, 2, "{stats:?}");
    assert!(snapshot.exists(), "the snapshot hook did not run");

    // The NAS disk dies; the admin restores the last snapshot.
    restore(&dst, &snapshot);

    let result = SyncEngine::new(&state).sync_pair(&plain).await;
    let src_report = fs::read_to_string(src.join("report.txt")).unwrap_or_default();
    assert!(
        matches!(result, Err(SyncError::RootChanged { .. })),
        "the restored snapshot was synced as the current NAS: {result:?}; laptop report.txt = \
         {src_report:?}, laptop new.txt exists: {}",
        src.join("new.txt").exists()
    );
    let all = contents(&src);
    assert!(all.iter().any(|c| c == "written on the laptop"));
}

/// A run whose generation could not be written into the destination (a transient error on
/// that one small write: the run only warns) goes on to change the destination. A copy of
/// the destination taken before that run still holds the recorded generation, so once it is
/// put back, it passes — and it rolls the laptop back.
#[tokio::test]
async fn a_run_that_could_not_write_its_generation_does_not_change_the_root() {
    let (tmp, src, dst, state) = setup();
    let plain = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::TwoWay,
    );
    let engine = SyncEngine::new(&state);
    engine.sync_pair(&plain).await.unwrap();
    engine.sync_pair(&plain).await.unwrap();

    // A backup of the NAS, taken now (its generation is the recorded one).
    let snapshot = tmp.path().join("nas-backup");
    copy_tree(&dst, &snapshot);
    let generation_dir = dst.join(".syncengine/generation");
    let gen_name = fs::read_dir(&generation_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let gen_path = RelPath::new(format!(
        ".syncengine/generation/{}",
        gen_name.to_string_lossy()
    ))
    .unwrap();

    // The laptop adds new.txt and edits report.txt; this run's generation write to the NAS
    // fails once (a dropped connection), everything else works.
    fs::write(src.join("new.txt"), "written on the laptop").unwrap();
    fs::write(src.join("report.txt"), "report v2 final").unwrap();
    let faulty = FaultClient::new(Arc::new(LocalClient::new(&dst)), FaultConfig::none());
    faulty.fail_path(&gen_path, Fault::WriteBodyError, 1);
    let flaky = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(faulty),
        SyncMode::TwoWay,
    );
    let stats = engine.sync_pair(&flaky).await;
    let changed_nas = fs::read_to_string(dst.join("report.txt")).unwrap() == "report v2 final";
    eprintln!("flaky run: {stats:?}, changed NAS: {changed_nas}");

    // The NAS is restored from the backup.
    restore(&dst, &snapshot);
    let result = engine.sync_pair(&plain).await;
    eprintln!("after restore: {result:?}");
    let src_report = fs::read_to_string(src.join("report.txt")).unwrap_or_default();
    assert!(
        !changed_nas || matches!(result, Err(SyncError::RootChanged { .. })),
        "the run changed the NAS without a new generation ({stats:?}), and the older copy \
         passed: {result:?}; laptop report.txt = {src_report:?}, laptop new.txt exists: {}",
        src.join("new.txt").exists()
    );
}

/// Two runs in a row whose generation write fails, the first after the write landed (a lost
/// reply: the root holds the new generation, the state keeps it as pending), the second before
/// it lands: the second run's `begin_root_generation` replaces the pending generation — the one
/// the root holds — with its own, which never reaches the root. The third run finds a
/// generation that is neither current nor pending and calls the root an older copy of itself
/// (exit 3), though nobody touched it.
#[tokio::test]
async fn two_failed_generation_writes_do_not_make_the_root_an_older_copy() {
    let (_tmp, src, dst, state) = setup();
    let plain = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::TwoWay,
    );
    let engine = SyncEngine::new(&state);
    engine.sync_pair(&plain).await.unwrap();
    let gen_name = fs::read_dir(dst.join(".syncengine/generation"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let gen_path = RelPath::new(format!(
        ".syncengine/generation/{}",
        gen_name.to_string_lossy()
    ))
    .unwrap();

    // Generations are written by runs that act: each faulted run has a new file to copy.
    // A lost reply (the write landed) is recognised and the run goes on; a write that
    // failed stops the run before it changes the destination.
    for (i, fault) in [Fault::ErrorAfter, Fault::WriteBodyError]
        .into_iter()
        .enumerate()
    {
        fs::write(src.join(format!("new{i}.txt")), "new").unwrap();
        let faulty = Arc::new(FaultClient::new(
            Arc::new(LocalClient::new(&dst)),
            FaultConfig::none(),
        ));
        faulty.fail_path(&gen_path, fault, 1);
        let flaky = SyncPair::new(
            Arc::new(LocalClient::new(&src)),
            faulty.clone(),
            SyncMode::TwoWay,
        );
        let result = engine.sync_pair(&flaky).await;
        assert_eq!(
            faulty.injected().len(),
            1,
            "{fault:?} did not hit the generation write: {result:?}"
        );
        match fault {
            Fault::ErrorAfter => assert!(result.is_ok(), "{result:?}"),
            _ => assert!(result.is_err(), "{result:?}"),
        }
    }
    let result = engine.sync_pair(&plain).await;
    assert!(
        result.is_ok(),
        "an untouched root is called an older copy after two failed generation writes: \
         {result:?}"
    );
}

/// A run killed while it writes its generation leaves the write's temp file in
/// `.syncengine/generation/` (seen after a SIGKILL campaign: `.syncengine/generation/
/// .syncengine-tmp-0000627300000000`). Stale temps are collected from the listing, which
/// prunes `.syncengine/`, so this one is never removed: one more per such kill, for ever
/// (on WebDAV and SFTP roots too, whose writes also go through a temp).
#[tokio::test]
async fn a_temp_left_by_a_killed_generation_write_is_removed_once_stale() {
    let (_tmp, src, dst, state) = setup();
    let plain = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::TwoWay,
    );
    let engine = SyncEngine::new(&state);
    engine.sync_pair(&plain).await.unwrap();
    // What a kill during the generation write leaves, two days ago.
    let temp = dst.join(".syncengine/generation/.syncengine-tmp-0000627300000000");
    fs::write(&temp, "0123456789abcdef0123456789abcdef\n").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
    fs::File::options()
        .write(true)
        .open(&temp)
        .unwrap()
        .set_times(fs::FileTimes::new().set_accessed(old).set_modified(old))
        .unwrap();
    // The same kind of temp in the user's tree is removed by the next run (the control).
    let user_temp = dst.join(".syncengine-tmp-0000627300000001");
    fs::write(&user_temp, "partial").unwrap();
    fs::File::options()
        .write(true)
        .open(&user_temp)
        .unwrap()
        .set_times(fs::FileTimes::new().set_accessed(old).set_modified(old))
        .unwrap();
    // Generations (and the listing that notes their stale temps) come with runs that act.
    fs::write(src.join("new.txt"), "new").unwrap();
    engine.sync_pair(&plain).await.unwrap();
    engine.sync_pair(&plain).await.unwrap();
    assert!(
        !user_temp.exists(),
        "control: a stale temp in the tree is removed"
    );
    assert!(
        !temp.exists(),
        "the stale temp in .syncengine/generation/ is never removed"
    );
}
