//! Red team 32: the trash's dropping of "identical" earlier copies (`drop_identical_copies`)
//! and the deletes for one version (`DeleteOptions::if_version`), on real local folders.
//!
//! Mounting needs CAP_SYS_ADMIN (and `mkfs.ext4`, `chattr` for the loop image): where the
//! test may not mount it says so and checks nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use syncengine_backend_local::LocalClient;
use syncengine_core::client::{DeleteOptions, TransferOptions};
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::trash::{RestoreOptions, RestoreWhat, Trash};
use syncengine_core::{Entry, RelPath, Result, StorageClient, SyncEngine, SyncMode, SyncPair};

mod support;
use support::{Mounted, files_below, mount, whole_second_ext4};

/// Over the engine's hash limit for trash copies (64 MiB): compared by size and time only.
const BIG: usize = 64 * 1024 * 1024 + 4096;

/// Writes `BIG` bytes of `byte` to `path`, with the modification time `t`.
fn write_big(path: &Path, byte: u8, t: SystemTime) {
    fs::write(path, vec![byte; BIG]).unwrap();
    let times = fs::FileTimes::new().set_modified(t).set_accessed(t);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(times)
        .unwrap();
}

/// The first byte of each file named `name` in the trash of `root`.
fn trashed_versions(root: &Path, name: &str) -> Vec<u8> {
    files_below(&root.join(".syncengine/trash"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == name))
        .map(|p| {
            use std::io::Read;
            let mut b = [0u8; 1];
            fs::File::open(&p).unwrap().read_exact(&mut b).unwrap();
            b[0]
        })
        .collect()
}

/// The destination root keeps whole seconds (ext4 with 128-byte inodes; FAT keeps two,
/// exFAT 10 ms, SMB shares often one). A big file (over the 64 MiB hash limit) saved twice
/// within one second on the source, at the same size (a disk image, a database, a
/// preallocated recording), is two versions with two times on the source, and one time on
/// the destination. The engine overwrote the first version (kept in the trash), and the
/// run had an error elsewhere (so it is not a completed run); the next run overwrites the
/// second version, keeps it in the trash, and `drop_identical_copies` takes the first
/// version's trash copy for an identical copy (same size, same whole-second time) and
/// deletes it: the only copy of that version anywhere is gone.
#[tokio::test]
async fn a_big_file_version_whose_time_matches_another_only_in_whole_seconds_stays_in_the_trash() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("root.img");
    let dst = tmp.path().join("dst");
    fs::create_dir_all(&dst).unwrap();
    let Some(_root) = whole_second_ext4(&image, "400M", &dst) else {
        return;
    };
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for name in ["k1", "k2", "k3", "stuck"] {
        fs::write(src.join(name), name).unwrap();
    }
    let second = 1_700_000_000;
    write_big(
        &src.join("disk.img"),
        1,
        SystemTime::UNIX_EPOCH + Duration::new(second, 200_000_000),
    );
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::SourceToDestination,
    );
    let first = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(first.errors, 0, "{first:?}");
    // A file on the destination that cannot be changed (immutable): every run from now on
    // has one error, so none is a completed run.
    let chattr = Command::new("chattr")
        .arg("+i")
        .arg(dst.join("stuck"))
        .status()
        .unwrap();
    assert!(chattr.success(), "chattr +i");
    fs::write(src.join("stuck"), "changed").unwrap();

    // Version 2, saved 0.4 s after version 1, the same size.
    write_big(
        &src.join("disk.img"),
        2,
        SystemTime::UNIX_EPOCH + Duration::new(second, 600_000_000),
    );
    let run1 = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(run1.errors, 1, "only the immutable file fails: {run1:?}");
    assert_eq!(
        trashed_versions(&dst, "disk.img"),
        vec![1],
        "version 1 in the trash"
    );

    // Version 3, later.
    write_big(
        &src.join("disk.img"),
        3,
        SystemTime::UNIX_EPOCH + Duration::new(second + 100, 0),
    );
    let run2 = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(run2.errors, 1, "only the immutable file fails: {run2:?}");
    let _ = Command::new("chattr")
        .arg("-i")
        .arg(dst.join("stuck"))
        .status();
    let mut kept = trashed_versions(&dst, "disk.img");
    kept.sort_unstable();
    assert_eq!(
        kept,
        vec![1, 2],
        "versions 1 and 2 were both overwritten by the engine and exist nowhere else; the \
         trash holds {kept:?}"
    );
}

/// A local root that notes its copies, preserves and deletes, in order.
#[derive(Debug)]
struct Noting {
    inner: LocalClient,
    calls: Mutex<Vec<String>>,
}

#[async_trait]
impl Hooks for Noting {
    fn inner(&self) -> &dyn StorageClient {
        &self.inner
    }
    async fn copy_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.calls.lock().unwrap().push(format!("copy_opts {to}"));
        self.inner.copy_opts(from, to, opts).await
    }
    async fn preserve(
        &self,
        _client: &dyn StorageClient,
        from: &RelPath,
        to: &RelPath,
    ) -> Result<Entry> {
        self.calls.lock().unwrap().push(format!("preserve {to}"));
        self.inner.preserve(from, to).await
    }
    async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> Result<()> {
        self.calls.lock().unwrap().push(format!("delete {path}"));
        self.inner.delete_opts(path, opts).await
    }
}

/// A file deleted on a filesystem mounted inside the root is restored from the root's trash
/// by a copy (the move back would cross filesystems), and then the trash copy is deleted.
/// The copy was made by `copy_opts`, which does not flush it (the local client's `fsync` is
/// off by default): the trash copy's unlink, on another filesystem, may reach its disk
/// before the restored bytes reach theirs, and a crash between leaves the file empty and no
/// trash copy. The trash's own copies across a mount are made by `preserve`, flushed to
/// disk before the original goes; the restore must be as careful before the trash copy goes.
#[tokio::test]
async fn a_restore_across_a_mount_flushes_its_copy_before_the_trash_copy_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir_all(src.join("media")).unwrap();
    fs::create_dir_all(dst.join("media")).unwrap();
    if !mount(&["-t", "tmpfs", "tmpfs"], &dst.join("media")) {
        return;
    }
    let _mounted = Mounted(dst.join("media"));
    fs::write(src.join("media/a.txt"), b"only copy of a").unwrap();
    for name in ["k1", "k2", "k3"] {
        fs::write(src.join(name), name).unwrap();
    }
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::SourceToDestination,
    );
    let first = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(first.errors, 0, "{first:?}");
    fs::remove_file(src.join("media/a.txt")).unwrap();
    let second = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(second.errors, 0, "{second:?}");
    assert!(!dst.join("media/a.txt").exists());

    let noting = Arc::new(Forwarding::new(Noting {
        inner: LocalClient::new(&dst),
        calls: Mutex::new(Vec::new()),
    }));
    let root: Arc<dyn StorageClient> = noting.clone();
    let trash = Trash::of_root(root.clone());
    let listing = trash.list().await.unwrap();
    let files: Vec<_> = listing
        .runs
        .iter()
        .flat_map(|r| &r.files)
        .filter(|f| f.path.as_str() == "media/a.txt")
        .collect();
    assert_eq!(files.len(), 1, "{listing:?}");
    let report = trash
        .restore(&root, &files, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(report.failed(), 0, "{report:?}");
    assert_eq!(
        fs::read(dst.join("media/a.txt")).unwrap(),
        b"only copy of a"
    );
    let calls = noting.calls.lock().unwrap().clone();
    let deleted = calls
        .iter()
        .position(|c| c.starts_with("delete .syncengine/trash/"))
        .expect("the trash copy is deleted");
    assert!(
        calls[..deleted].iter().any(|c| c == "preserve media/a.txt"),
        "the restored copy was not flushed (made by preserve) before the trash copy was \
         deleted: {calls:?}"
    );
}

/// `trash restore --force` of a file on a filesystem mounted inside the root, where a live
/// file holds the place: the live file is to be set aside in the trash first, by a move —
/// which crosses filesystems there, so the restore failed ("a move between filesystems")
/// where the same restore on the root's own filesystem works. The live file is kept in the
/// trash by a flushed copy, then deleted if still the version looked at.
#[tokio::test]
async fn a_forced_restore_onto_a_mount_sets_the_live_file_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir_all(src.join("media")).unwrap();
    fs::create_dir_all(dst.join("media")).unwrap();
    if !mount(&["-t", "tmpfs", "tmpfs"], &dst.join("media")) {
        return;
    }
    let _mounted = Mounted(dst.join("media"));
    fs::write(src.join("media/a.txt"), b"only copy of a").unwrap();
    for name in ["k1", "k2", "k3"] {
        fs::write(src.join(name), name).unwrap();
    }
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::SourceToDestination,
    );
    let first = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(first.errors, 0, "{first:?}");
    fs::remove_file(src.join("media/a.txt")).unwrap();
    let second = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(second.errors, 0, "{second:?}");
    fs::write(dst.join("media/a.txt"), b"a new live file").unwrap();

    let root: Arc<dyn StorageClient> = Arc::new(LocalClient::new(&dst));
    let trash = Trash::of_root(root.clone());
    let listing = trash.list().await.unwrap();
    let files: Vec<_> = listing
        .runs
        .iter()
        .flat_map(|r| &r.files)
        .filter(|f| f.path.as_str() == "media/a.txt")
        .collect();
    assert_eq!(files.len(), 1, "{listing:?}");
    let report = trash
        .restore(&root, &files, &RestoreOptions::default().with_force(true))
        .await
        .unwrap();
    let mut in_trash: Vec<Vec<u8>> = files_below(&dst.join(".syncengine/trash"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "a.txt"))
        .map(|p| fs::read(p).unwrap())
        .collect();
    in_trash.sort();
    assert_eq!(report.failed(), 0, "{report:?}; trash holds {in_trash:?}");
    assert_eq!(
        fs::read(dst.join("media/a.txt")).unwrap(),
        b"only copy of a"
    );
    assert_eq!(
        in_trash,
        vec![b"a new live file".to_vec()],
        "the live file, set aside"
    );
}

/// A forced restore onto a mount that fails after the live file was set aside (here the
/// trash copy does not fit on the mount) puts the live file back by a flushed copy, as a
/// move would on the root's own filesystem. Before, the move back crossed filesystems too:
/// the live file stayed in the trash and its place was left empty.
#[tokio::test]
async fn a_failed_forced_restore_onto_a_mount_puts_the_live_file_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("dst");
    fs::create_dir_all(dst.join("media")).unwrap();
    if !mount(
        &["-t", "tmpfs", "-o", "size=64k", "tmpfs"],
        &dst.join("media"),
    ) {
        return;
    }
    let _mounted = Mounted(dst.join("media"));
    let run = "20260101T000000Z";
    let old = dst.join(format!(".syncengine/trash/{run}/media/a.txt"));
    fs::create_dir_all(old.parent().unwrap()).unwrap();
    fs::write(&old, vec![b'o'; 1 << 20]).unwrap();
    fs::write(dst.join("media/a.txt"), b"the live file").unwrap();

    let root: Arc<dyn StorageClient> = Arc::new(LocalClient::new(&dst));
    let trash = Trash::of_root(root.clone());
    let listing = trash.list().await.unwrap();
    let (_, files) = listing.select(&RestoreWhat::Run(run.into())).unwrap();
    let report = trash
        .restore(&root, &files, &RestoreOptions::default().with_force(true))
        .await
        .unwrap();
    let err = report.outcomes[0].result.clone().unwrap_err();
    assert!(err.contains("the live file was put back"), "{err}");
    assert_eq!(fs::read(dst.join("media/a.txt")).unwrap(), b"the live file");
    // The trash holds the old version, and no second copy of the live file.
    let in_trash: Vec<u64> = files_below(&dst.join(".syncengine/trash"))
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .collect();
    assert_eq!(in_trash, vec![1 << 20]);
}
