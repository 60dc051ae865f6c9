//! A folder holding only empty folders is removed to make room for a file — but never across a
//! mount: what is mounted there (another filesystem, or a bind mount of a folder elsewhere on
//! the same one) is not the root's to empty (red team 9, finding 03).
//!
//! Mounting needs CAP_SYS_ADMIN: where the test may not mount (an unprivileged user, a
//! container without that capability) it says so and checks nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use syncengine_backend_local::LocalClient;
use syncengine_core::{RelPath, StorageClientExt};

/// Mounts with `mount ARGS… target`; false when this process may not mount.
fn mount(args: &[&str], target: &Path) -> bool {
    let out = Command::new("mount")
        .args(args)
        .arg(target)
        .output()
        .expect("run mount");
    if !out.status.success() {
        eprintln!(
            "skipped: cannot mount here ({}); run as root with CAP_SYS_ADMIN to check that \
             empty-folder removal stops at mounts",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status.success()
}

/// Unmounts on drop, also when an assertion fails.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

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
    let _bind = Mounted(&root.join("x/m"));
    // A tmpfs mounted right at the path of the file, holding empty folders.
    fs::create_dir_all(root.join("y")).unwrap();
    assert!(
        mount(&["-t", "tmpfs", "tmpfs"], &root.join("y")),
        "bind mounts work but tmpfs does not"
    );
    let _tmpfs = Mounted(&root.join("y"));
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
