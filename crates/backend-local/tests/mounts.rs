//! A folder holding only empty folders is removed to make room for a file — but never across a
//! mount: what is mounted there (another filesystem, or a bind mount of a folder elsewhere on
//! the same one) is not the root's to empty (red team 9, finding 03).
//!
//! Mounting needs CAP_SYS_ADMIN: where the test may not mount (an unprivileged user, a
//! container without that capability) it says so and checks nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::sync::Arc;

use bytes::Bytes;
use syncengine_backend_local::LocalClient;
use syncengine_core::trash::{RestoreOptions, Trash};
use syncengine_core::{
    Error, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair,
};

mod support;
use support::{Mounted, files_below, mount};

#[tokio::test]
async fn empty_folders_are_not_removed_across_a_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
    // A bind mount of a folder elsewhere on the same filesystem, below the folder in the way.
    fs::create_dir_all(root.join("x/m")).unwrap();
    fs::create_dir_all(outside.join("keep/me")).unwrap();
    let outside_arg = outside.to_str().unwrap();
    if !mount(&["--bind", outside_arg], &root.join("x/m")) {
        return;
    }
    let _bind = Mounted(root.join("x/m"));
    // A tmpfs mounted right at the path of the file, holding empty folders.
    fs::create_dir_all(root.join("y")).unwrap();
    assert!(
        mount(&["-t", "tmpfs", "tmpfs"], &root.join("y")),
        "bind mounts work but tmpfs does not"
    );
    let _tmpfs = Mounted(root.join("y"));
    fs::create_dir_all(root.join("y/a/b")).unwrap();

    let client = LocalClient::new(&root);
    for name in ["x", "y"] {
        let path = RelPath::new(name).unwrap();
        let written = client.put(&path, Bytes::from("a file")).await;
        assert!(written.is_err(), "{name}: written over a mount");
    }
    assert!(
        outside.join("keep/me").is_dir(),
        "a folder outside the root was removed through a bind mount"
    );
    assert!(root.join("y/a/b").is_dir(), "the mounted tmpfs was emptied");

    // Control: the same tree without a mount is removed and the file written.
    fs::create_dir_all(root.join("z/m/keep/me")).unwrap();
    client
        .put(&RelPath::new("z").unwrap(), Bytes::from("a file"))
        .await
        .unwrap();
    assert!(root.join("z").is_file());
}

/// A file on a filesystem mounted below the root cannot be moved into the root's trash (a
/// rename cannot cross filesystems): the move is `Unsupported`, and the file stays where it
/// is, whole, with nothing in the trash — the engine then keeps it by a flushed copy (see
/// `a_delete_on_a_mount_below_the_root_keeps_a_copy_in_the_trash`).
#[tokio::test]
async fn a_move_off_a_mount_below_the_root_is_unsupported_and_leaves_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("photos/disk")).unwrap();
    if !mount(&["-t", "tmpfs", "tmpfs"], &root.join("photos/disk")) {
        return;
    }
    let _mounted = Mounted(root.join("photos/disk"));
    fs::create_dir_all(root.join("photos/disk/2024")).unwrap();
    fs::write(root.join("photos/disk/2024/a.jpg"), b"only copy").unwrap();
    let client = LocalClient::new(&root);
    let from = RelPath::new("photos/disk/2024/a.jpg").unwrap();
    let trash = RelPath::new(".syncengine/trash/20261206T000000Z/photos/disk/2024/a.jpg").unwrap();
    for overwrite in [false, true] {
        let opts = syncengine_core::TransferOptions::default().with_overwrite(overwrite);
        let err = client
            .rename_opts(&from, &trash, opts)
            .await
            .expect_err("a rename cannot cross filesystems");
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        assert_eq!(
            fs::read(root.join("photos/disk/2024/a.jpg")).unwrap(),
            b"only copy",
            "the file stays, whole"
        );
        assert!(!root.join(trash.as_str()).exists(), "nothing in the trash");
    }
    // Moving onto the mount from the root's own filesystem is the same.
    fs::write(root.join("b.jpg"), b"b").unwrap();
    let into = RelPath::new("photos/disk/b.jpg").unwrap();
    let err = client
        .rename_opts(
            &RelPath::new("b.jpg").unwrap(),
            &into,
            syncengine_core::TransferOptions::default(),
        )
        .await
        .expect_err("a rename cannot cross filesystems");
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert_eq!(fs::read(root.join("b.jpg")).unwrap(), b"b");
    assert!(!root.join("photos/disk/b.jpg").exists());
}

/// A file deleted on one side whose copy on the other lies on a filesystem mounted below
/// that root goes to the root's trash by a copy (flushed to disk first), then is deleted;
/// a rename of a file onto the mount is a copy and a delete too. Before, such deletes and
/// renames failed every run (red team 26, item 2).
#[tokio::test]
async fn a_delete_on_a_mount_below_the_root_keeps_a_copy_in_the_trash() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir_all(src.join("photos/disk/2024")).unwrap();
    fs::create_dir_all(dst.join("photos/disk")).unwrap();
    if !mount(&["-t", "tmpfs", "tmpfs"], &dst.join("photos/disk")) {
        return;
    }
    let _mounted = Mounted(dst.join("photos/disk"));
    fs::write(src.join("photos/disk/2024/a.jpg"), b"only copy of a").unwrap();
    fs::write(src.join("photos/disk/2024/b.jpg"), b"b").unwrap();
    fs::write(src.join("top.jpg"), b"top").unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::SourceToDestination,
    );
    let first = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(first.errors, 0, "{first:?}");
    // A delete on the mount, and a rename from the root's filesystem onto it.
    fs::remove_file(src.join("photos/disk/2024/a.jpg")).unwrap();
    fs::rename(src.join("top.jpg"), src.join("photos/disk/top.jpg")).unwrap();
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert!(!dst.join("photos/disk/2024/a.jpg").exists(), "deleted");
    assert!(!dst.join("top.jpg").exists(), "renamed away");
    assert_eq!(fs::read(dst.join("photos/disk/top.jpg")).unwrap(), b"top");
    let trashed: Vec<Vec<u8>> = files_below(&dst.join(".syncengine/trash"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "a.jpg"))
        .map(|p| fs::read(p).unwrap())
        .collect();
    assert_eq!(
        trashed,
        vec![b"only copy of a".to_vec()],
        "the trash keeps it"
    );
    // Nothing left to do.
    let again = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(
        (again.errors, again.deleted_destination),
        (0, 0),
        "{again:?}"
    );
    // Restored from the trash onto the mount: by a copy too, the trash copy removed after.
    let root: Arc<dyn StorageClient> = Arc::new(LocalClient::new(&dst));
    let trash = Trash::of_root(root.clone());
    let listing = trash.list().await.unwrap();
    let files: Vec<_> = listing
        .runs
        .iter()
        .flat_map(|r| &r.files)
        .filter(|f| f.path.as_str() == "photos/disk/2024/a.jpg")
        .collect();
    assert_eq!(files.len(), 1, "{listing:?}");
    let report = trash
        .restore(&root, &files, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(report.failed(), 0, "{report:?}");
    assert_eq!(
        fs::read(dst.join("photos/disk/2024/a.jpg")).unwrap(),
        b"only copy of a"
    );
    let left: Vec<_> = files_below(&dst.join(".syncengine/trash"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "a.jpg"))
        .collect();
    assert!(
        left.is_empty(),
        "the trash copy goes once restored: {left:?}"
    );
}

/// A trash copy that does not fit (the trash's filesystem is full) fails naming the copy,
/// not the file it copies, and leaves that file as it was, and no folder it made for the
/// copy: each failed run left an empty folder tree in the trash, which nothing removed.
/// A folder that was there before stays, empty as it is.
#[tokio::test]
async fn a_copy_into_a_full_filesystem_names_the_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join(".syncengine/trash")).unwrap();
    if !mount(
        &["-t", "tmpfs", "-o", "size=64k", "tmpfs"],
        &root.join(".syncengine/trash"),
    ) {
        return;
    }
    let _mounted = Mounted(root.join(".syncengine/trash"));
    let big = vec![7u8; 1 << 20];
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(root.join("a/b/big.bin"), &big).unwrap();
    let run = root.join(".syncengine/trash/20261206T000000Z");
    fs::create_dir_all(&run).unwrap();
    let client = LocalClient::new(&root);
    let to = RelPath::new(".syncengine/trash/20261206T000000Z/a/b/big.bin").unwrap();
    let err = client
        .preserve(&RelPath::new("a/b/big.bin").unwrap(), &to)
        .await
        .expect_err("1 MiB does not fit in 64 KiB");
    let msg = err.to_string();
    assert!(
        msg.contains(".syncengine/trash/20261206T000000Z/a/b/big.bin"),
        "the error names the copy: {msg}"
    );
    assert_eq!(fs::read(root.join("a/b/big.bin")).unwrap(), big);
    assert!(!run.join("a").exists(), "the folders made for the copy go");
    assert!(run.is_dir(), "the run folder that was there stays");
}
