//! A folder holding only empty folders is removed to make room for a file — but never across a
//! mount: what is mounted there (another filesystem, or a bind mount of a folder elsewhere on
//! the same one) is not the root's to empty (red team 9, finding 03).
//!
//! Mounting needs CAP_SYS_ADMIN: where the test may not mount (an unprivileged user, a
//! container without that capability) it says so and checks nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

use bytes::Bytes;
use syncengine_backend_local::LocalClient;
use syncengine_core::{RelPath, StorageClient, StorageClientExt};

mod support;
use support::{Mounted, mount};

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
/// rename cannot cross filesystems): it stays where it is, whole, and the error says where the
/// mount is and what to do, instead of the bare "Invalid cross-device link" (red team 26).
#[tokio::test]
async fn a_move_off_a_mount_below_the_root_names_the_mount_and_leaves_the_file() {
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
        let msg = err.to_string();
        assert!(
            msg.contains("mounted at photos/disk inside the root") && msg.contains("exclude"),
            "the error names the mount and the fix: {msg}"
        );
        assert_eq!(
            fs::read(root.join("photos/disk/2024/a.jpg")).unwrap(),
            b"only copy",
            "the file stays, whole"
        );
        assert!(!root.join(trash.as_str()).exists(), "nothing in the trash");
    }
    // Moving onto the mount from the root's own filesystem names it too.
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
    assert!(err.to_string().contains("mounted at photos/disk"), "{err}");
    assert_eq!(fs::read(root.join("b.jpg")).unwrap(), b"b");
}
