//! Red team 31: deletes and overwrites of files on a filesystem mounted inside a local root,
//! whose old version the engine keeps in the root's trash by a copy (the move into the trash
//! would cross filesystems), on real mounts.
//!
//! Mounting needs CAP_SYS_ADMIN (and `mkfs.ext4` for the loop image): where the test may not
//! mount it says so and checks nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use syncengine_backend_local::LocalClient;
use syncengine_core::{SyncEngine, SyncMode, SyncPair};

mod support;
use support::{Mounted, files_below, mount, whole_second_ext4};

/// The files named `name` in the trash of `root`.
fn trash_copies(root: &Path, name: &str) -> Vec<PathBuf> {
    files_below(&root.join(".syncengine/trash"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == name))
        .collect()
}

/// Files that stay, so that a delete is not the side emptied (a safety stop).
fn keepers(root: &Path) {
    for name in ["k1", "k2", "k3"] {
        fs::write(root.join(name), name).unwrap();
    }
}

/// Sets the modification and access times of `path` (to a time with a fraction of a
/// second, or long ago).
fn set_mtime(path: &Path, t: SystemTime) {
    let times = fs::FileTimes::new().set_modified(t).set_accessed(t);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(times)
        .unwrap();
}

/// A file deleted on the source whose copy on the destination lies on a read-only filesystem
/// mounted inside the destination root (a read-only bind mount, a squashfs, a read-only
/// share): the delete fails there on every run, as it should. But each run first keeps the
/// file in the trash by a copy — one more full copy per run, none ever dropped, until the
/// trash fills the disk. The trash keeps a version once, however often its delete failed
/// (as it does for the copy-and-delete moves of object stores).
#[tokio::test]
async fn a_delete_that_fails_on_every_run_keeps_one_trash_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(dst.join("media")).unwrap();
    if !mount(&["-t", "tmpfs", "tmpfs"], &dst.join("media")) {
        return;
    }
    let _mounted = Mounted(dst.join("media"));
    fs::create_dir_all(src.join("media")).unwrap();
    fs::write(src.join("media/film.mkv"), vec![7u8; 256 * 1024]).unwrap();
    keepers(&src);
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::SourceToDestination,
    );
    let first = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(first.errors, 0, "{first:?}");
    assert!(dst.join("media/film.mkv").is_file());
    // The mount turns read-only; the file is deleted on the source.
    let remounted = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(dst.join("media"))
        .status()
        .unwrap();
    assert!(remounted.success(), "remount read-only");
    fs::remove_file(src.join("media/film.mkv")).unwrap();
    for run in 1..=3 {
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(stats.errors, 1, "run {run}: the delete fails: {stats:?}");
        assert!(dst.join("media/film.mkv").is_file(), "run {run}: kept");
    }
    let copies = trash_copies(&dst, "film.mkv");
    assert_eq!(
        copies.len(),
        1,
        "three runs whose delete failed left {} full copies in the trash: {copies:?}",
        copies.len()
    );
}

/// The same for an overwrite: the old version is kept in the trash by a copy before the new
/// one is written, and the write fails on the read-only mount on every run.
#[tokio::test]
async fn an_overwrite_that_fails_on_every_run_keeps_one_trash_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir_all(src.join("media")).unwrap();
    fs::create_dir_all(dst.join("media")).unwrap();
    if !mount(&["-t", "tmpfs", "tmpfs"], &dst.join("media")) {
        return;
    }
    let _mounted = Mounted(dst.join("media"));
    fs::write(src.join("media/film.mkv"), vec![7u8; 256 * 1024]).unwrap();
    keepers(&src);
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::SourceToDestination,
    );
    let first = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(first.errors, 0, "{first:?}");
    let remounted = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(dst.join("media"))
        .status()
        .unwrap();
    assert!(remounted.success(), "remount read-only");
    fs::write(src.join("media/film.mkv"), vec![8u8; 256 * 1024]).unwrap();
    for run in 1..=3 {
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(stats.errors, 1, "run {run}: the write fails: {stats:?}");
        assert_eq!(
            fs::read(dst.join("media/film.mkv")).unwrap(),
            vec![7u8; 256 * 1024],
            "run {run}: the old version stays"
        );
    }
    let copies = trash_copies(&dst, "film.mkv");
    assert!(
        copies.len() <= 1,
        "three runs whose overwrite failed left {} full copies in the trash: {copies:?}",
        copies.len()
    );
}

/// The root's filesystem keeps whole seconds (ext4 with 128-byte inodes, as mke2fs made
/// small filesystems; FAT keeps two): a file on a tmpfs mounted inside it, with a fraction
/// of a second in its time, is kept in the trash by a copy whose time lost the fraction. The
/// engine took that copy for another version ("changed while it was kept in the trash"),
/// failed the delete and left the copy — on every run, one more copy each time, and the file
/// was never deleted.
#[tokio::test]
async fn a_trash_copy_on_a_filesystem_of_whole_seconds_counts_as_the_version() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("root.img");
    let dst = tmp.path().join("dst");
    fs::create_dir_all(&dst).unwrap();
    let Some(_root) = whole_second_ext4(&image, "32M", &dst) else {
        return;
    };
    fs::create_dir_all(dst.join("media")).unwrap();
    assert!(
        mount(&["-t", "tmpfs", "tmpfs"], &dst.join("media")),
        "a loop mount works but tmpfs does not"
    );
    let _media = Mounted(dst.join("media"));
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("media")).unwrap();
    fs::write(src.join("media/a.txt"), b"only copy").unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    set_mtime(&src.join("media/a.txt"), t);
    keepers(&src);
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::SourceToDestination,
    );
    let first = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(first.errors, 0, "{first:?}");
    assert_eq!(
        fs::metadata(dst.join("media/a.txt"))
            .unwrap()
            .modified()
            .unwrap(),
        t,
        "the tmpfs keeps the fraction"
    );
    fs::remove_file(src.join("media/a.txt")).unwrap();
    let stats = engine.sync_pair(&pair).await.unwrap();
    let copies = trash_copies(&dst, "a.txt");
    assert_eq!(
        (stats.errors, stats.deleted_destination),
        (0, 1),
        "{stats:?}; trash: {copies:?}"
    );
    assert!(!dst.join("media/a.txt").exists(), "deleted");
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(fs::read(&copies[0]).unwrap(), b"only copy");
}

/// A run killed while it copied a file into the trash (a delete or an overwrite on a
/// filesystem mounted inside the root) leaves the copy's temporary file in the trash's
/// stamp folder (shown with the CLI: four runs killed 30-150 ms in left 310 MiB of
/// `.syncengine-tmp-*` files there). Nothing removed them: the trash's pruning by age goes
/// by the files listed (temporary files are never listed), the removal of stale temps skips
/// the trash, and `syncengine trash list`/`empty` never show them. The pruning of an old run
/// folder takes what such a run left in it too.
#[tokio::test]
async fn the_trash_pruning_takes_the_temporary_files_killed_runs_left_there() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&dst).unwrap();
    keepers(&src);
    let old = time::OffsetDateTime::now_utc() - time::Duration::days(40);
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        old.year(),
        u8::from(old.month()),
        old.day(),
        old.hour(),
        old.minute(),
        old.second()
    );
    let folder = dst.join(".syncengine/trash").join(&stamp).join("media");
    fs::create_dir_all(&folder).unwrap();
    // What a killed copy leaves (the name form of the local backend's temporary files), and
    // a file trashed by the same run.
    let temp = folder.join(".syncengine-tmp-00005c0600000002");
    fs::write(&temp, vec![0u8; 4096]).unwrap();
    fs::write(folder.join("old.txt"), b"old").unwrap();
    let long_ago = SystemTime::now() - Duration::from_secs(40 * 86_400);
    for f in [&temp, &folder.join("old.txt")] {
        set_mtime(f, long_ago);
    }
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::SourceToDestination,
    );
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert!(
        !folder.join("old.txt").exists(),
        "the old run's file is pruned"
    );
    let left = files_below(&dst.join(".syncengine/trash"));
    assert!(
        left.is_empty(),
        "the pruning of a 40-day-old run left {left:?}"
    );
}

/// A file deleted on a filesystem mounted inside the root is in the root's trash (a copy):
/// `syncengine trash restore` moved it back by a rename, which cannot cross into the mount
/// (`Unsupported`): the restore failed ("a move between filesystems") and left the folders
/// it made for it on the mount. It is put back by a copy, checked, as a trash kept elsewhere
/// is.
#[tokio::test]
async fn a_file_trashed_from_a_mount_below_the_root_is_restored() {
    use syncengine_core::trash::{RestoreOptions, RestoreWhat, Trash};
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir_all(src.join("media/sub")).unwrap();
    fs::create_dir_all(dst.join("media")).unwrap();
    if !mount(&["-t", "tmpfs", "tmpfs"], &dst.join("media")) {
        return;
    }
    let _mounted = Mounted(dst.join("media"));
    fs::write(src.join("media/sub/a.txt"), b"only copy of a").unwrap();
    keepers(&src);
    let engine = SyncEngine::new(tmp.path().join("state"));
    let dst_client: Arc<dyn syncengine_core::StorageClient> = Arc::new(LocalClient::new(&dst));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        dst_client.clone(),
        SyncMode::SourceToDestination,
    );
    let first = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(first.errors, 0, "{first:?}");
    fs::remove_dir_all(src.join("media/sub")).unwrap();
    let second = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(
        (second.errors, second.deleted_destination),
        (0, 1),
        "{second:?}"
    );
    assert!(
        !dst.join("media/sub").exists(),
        "the emptied folder went too"
    );

    let trash = Trash::of_root(dst_client.clone());
    let listing = trash.list().await.unwrap();
    let what = RestoreWhat::Path {
        path: syncengine_core::RelPath::new("media/sub/a.txt").unwrap(),
        run: None,
    };
    let (_, files) = listing.select(&what).unwrap();
    let report = trash
        .restore(&dst_client, &files, &RestoreOptions::default())
        .await
        .unwrap();
    let results: Vec<_> = report.outcomes.iter().map(|o| &o.result).collect();
    assert_eq!(report.failed(), 0, "{results:?}");
    assert_eq!(
        fs::read(dst.join("media/sub/a.txt")).unwrap(),
        b"only copy of a",
        "restored at its path"
    );
    assert!(
        trash_copies(&dst, "a.txt").is_empty(),
        "taken out of the trash"
    );
}
