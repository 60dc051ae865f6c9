//! Red team 14: a move out of a folder this process cannot write to (a read-only `0o500`
//! folder, as a trash move meets it in a two-way run). The rename fails, the no-replace
//! fallback links the file at its new name, and the unlink of the old name fails: old code
//! left that link (a second name of the live file) at the target, so every run that retried
//! the delete added another "trash copy" of a file still in place.
//!
//! The permission check only bites for a user other than root: run as root, the test runs
//! itself again as `nobody` (through `runuser`) and asserts that run passed.

// Test code: panicking with a message is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;

use syncengine_backend_local::LocalClient;
use syncengine_core::{RelPath, StorageClientExt};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// This process's effective user id, from `/proc/self/status`.
fn effective_uid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_move_out_of_a_read_only_folder_fails_and_leaves_no_link_behind() {
    if effective_uid() == 0 {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .arg(&exe)
            .args([
                "a_move_out_of_a_read_only_folder_fails_and_leaves_no_link_behind",
                "--exact",
                "--nocapture",
            ])
            .env("TMPDIR", "/tmp")
            .output()
            .expect("runuser (util-linux) to run the test as nobody");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "the run as nobody failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("ro")).unwrap();
    fs::write(root.join("ro/f"), b"only copy").unwrap();
    fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o500)).unwrap();
    let client = LocalClient::new(root);
    let moved = client.rename(&p("ro/f"), &p("aside/f")).await;
    fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o700)).unwrap();
    assert!(moved.is_err(), "the move cannot succeed: {moved:?}");
    assert_eq!(fs::read(root.join("ro/f")).unwrap(), b"only copy");
    assert!(
        !root.join("aside/f").exists(),
        "the failed move left a second name of the file at its target"
    );
}
