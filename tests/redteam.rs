//! Red-team cases (issue 8) through the `syncengine` binary on local folders.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_syncengine");

fn sync(a: &Path, b: &Path, state: &Path) {
    let out = Command::new(BIN)
        .arg("sync")
        .arg(a)
        .arg(b)
        .arg("--state-dir")
        .arg(state)
        .arg("-q")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `~/photos` is the root of one pair and lies inside the root `~` of another. The inner
/// root's `.syncengine/` (its root-id file, its trash) is the engine's own: the outer pair
/// must not copy it, or the copy carries the inner root's identity (a replaced or copied root
/// is then not recognised) and the inner trash is published as user files (behaviour 11, 2).
#[test]
fn a_nested_roots_engine_folder_is_not_synced_by_an_outer_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, photos, photo_backup, home_backup) = (
        tmp.path().join("home"),
        tmp.path().join("home/photos"),
        tmp.path().join("photo-backup"),
        tmp.path().join("home-backup"),
    );
    for d in [&photos, &photo_backup, &home_backup] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(photos.join("p1.jpg"), b"one").unwrap();
    sync(&photos, &photo_backup, &tmp.path().join("state-photos"));
    assert!(
        photos.join(".syncengine").exists(),
        "the inner pair made its folder"
    );
    sync(&home, &home_backup, &tmp.path().join("state-home"));
    assert_eq!(
        std::fs::read(home_backup.join("photos/p1.jpg")).unwrap(),
        b"one"
    );
    assert!(
        !home_backup.join("photos/.syncengine").exists(),
        "the outer pair copied the inner root's .syncengine/"
    );
}
