//! What an SFTP listing cannot see is unknown, never "deleted": symlinks, special files,
//! names that are not UTF-8, folders the server will not list. Uses the sshd server (real
//! paths, so the tree can be staged on disk).

// Test code: panicking with a message is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use support::{Server, available, fixture_with};
use syncengine_backend_local::LocalClient;
use syncengine_core::{Error, SyncEngine, SyncMode, SyncPair};

fn touch(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next().map(|uid| uid == "0"))
        .unwrap_or(false)
}

#[tokio::test]
async fn symlinks_special_files_and_bad_names_are_unlisted_in_order() {
    if !available(Server::Sshd) {
        return;
    }
    let (client, cleanup) = fixture_with(Server::Sshd, |b| b);
    let root = cleanup.0.clone();
    touch(&root.join("a.txt"), "a");
    touch(&root.join("link.d/x"), "x");
    std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(root.join("pipe"))
            .status()
            .unwrap()
            .success()
    );
    touch(&root.join("sub/ok"), "ok");
    fs::write(
        root.join("sub").join(OsStr::from_bytes(b"caf\xe9")),
        "latin-1",
    )
    .unwrap();
    let locked = root.join("zlocked");
    touch(&locked.join("f"), "f");
    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    }

    let got: Vec<String> = client
        .list(None)
        .map(|item| match item {
            Ok(e) => e.path.into_string(),
            Err(Error::Unlisted {
                path,
                contents_only,
                ..
            }) => format!("?{path}{}", if contents_only { "/" } else { "" }),
            Err(e) => panic!("the listing failed: {e}"),
        })
        .collect()
        .await;
    let mut want = vec!["a.txt", "?link", "link.d/x", "?pipe", "?sub/", "sub/ok"];
    if is_root() {
        eprintln!("running as root: mode 000 does not stop sshd's reads, so zlocked is listed");
        want.push("zlocked/f");
    } else {
        want.push("?zlocked");
    }
    assert_eq!(got, want);
    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// A folder on the SFTP side replaced by a symlink: the local copies of its files stay.
#[tokio::test]
async fn symlinked_folder_on_the_server_keeps_the_other_sides_copies() {
    if !available(Server::Sshd) {
        return;
    }
    let (sftp, cleanup) = fixture_with(Server::Sshd, |b| b);
    let root = cleanup.0.clone();
    touch(&root.join("docs/a"), "a");
    touch(&root.join("docs/b"), "b");
    for i in 0..6 {
        touch(&root.join(format!("f{i}")), "x");
    }
    let tmp = tempfile::tempdir().unwrap();
    let local: Arc<LocalClient> = Arc::new(LocalClient::new(tmp.path().join("local")));
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(sftp.clone(), local.clone(), SyncMode::TwoWay);
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 8, "{stats:?}");

    let moved = tmp.path().join("elsewhere");
    fs::rename(root.join("docs"), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, root.join("docs")).unwrap();
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.deleted_destination, 0, "{stats:?}");
    assert_eq!(stats.unknown, 1, "{stats:?}");
    assert_eq!(
        fs::read_to_string(tmp.path().join("local/docs/a")).unwrap(),
        "a"
    );
    assert_eq!(
        fs::read_to_string(tmp.path().join("local/docs/b")).unwrap(),
        "b"
    );
}

/// `list_pruned` does not read a pruned folder: nothing below it is listed and what it holds
/// that the walk would report (a symlink, a FIFO) is never seen; other folders are walked.
#[tokio::test]
async fn pruned_folders_are_not_read() {
    if !available(Server::Sshd) {
        return;
    }
    let (client, cleanup) = fixture_with(Server::Sshd, |b| b);
    let root = cleanup.0.clone();
    touch(&root.join("a.txt"), "a");
    touch(&root.join("skip/x.txt"), "x");
    touch(&root.join("skip/deep/y.txt"), "y");
    std::os::unix::fs::symlink("/etc", root.join("skip/link")).unwrap();
    touch(&root.join("z/skip/w.txt"), "w");
    let prune: syncengine_core::PruneFn = Arc::new(|dir| dir.as_str() == "skip");
    let got: Vec<String> = client
        .list_pruned(None, prune)
        .map(|item| match item {
            Ok(e) => e.path.into_string(),
            Err(e) => panic!("the listing reported {e}"),
        })
        .collect()
        .await;
    assert_eq!(got, ["a.txt", "z/skip/w.txt"]);
}
