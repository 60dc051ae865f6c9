//! `syncengine cleanup` on a local folder: removes the engine's old temp files and nothing
//! else; `--dry-run` only lists them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_syncengine");

fn aged(path: &Path, age: Duration) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, "partial").unwrap();
    let t = SystemTime::now() - age;
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

#[test]
fn cleanup_removes_old_temps_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let hour = Duration::from_secs(3600);
    let old = root.join("d/.syncengine-tmp-00000000deadbeef");
    let old_own = root.join(".syncengine/.syncengine-tmp-00000000000000aa");
    let young = root.join("d/.syncengine-tmp-00000000cafef00d");
    let lookalike = root.join("d/.syncengine-tmp-my-notes");
    let in_trash =
        root.join(".syncengine/trash/20260101T000000Z/d/.syncengine-tmp-00000000deadbeef");
    let user = root.join("d/notes.txt");
    for path in [&old, &old_own, &lookalike, &in_trash, &user] {
        aged(path, 3 * hour);
    }
    aged(&young, hour / 2);
    let state = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("cleanup")
            .arg(root)
            .args(args)
            .env("SYNCENGINE_STATE_DIR", state.path())
            .output()
            .unwrap()
    };

    let out = run(&["--older-than", "1h", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(old.exists() && old_own.exists(), "a dry run removed a file");
    assert_eq!(
        stdout.matches("would remove temp file ").count(),
        2,
        "{stdout}"
    );
    assert!(
        stdout.contains("dry run, nothing removed; would remove 2 temp files"),
        "{stdout}"
    );

    let out = run(&["--older-than", "1h"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout.contains(&format!("removed temp file {}", old.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("cleaned up: removed 2 temp files and 0 multipart uploads"),
        "{stdout}"
    );
    assert!(!old.exists() && !old_own.exists(), "old temps were left");
    for kept in [&young, &lookalike, &in_trash, &user] {
        assert!(kept.exists(), "{} was removed", kept.display());
    }

    // The default age is a day: these are three hours old.
    aged(&old, 3 * hour);
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(old.exists(), "the default age removed a 3-hour-old temp");

    // A bad duration is a usage error.
    let out = run(&["--older-than", "soon"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
