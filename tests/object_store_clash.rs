//! An object store holds a key `x` and keys under `x/` side by side; a disk cannot hold a
//! file `x` and a folder `x` at once. Such a clash, met while syncing with a side that keeps
//! real folders, is an error for that path naming the clash and the fix (red team 13: it read
//! "not found: x/y"), and nothing is deleted or overwritten because of it. Through the
//! `syncengine` binary against moto; in CI a missing server fails the test.
#![cfg(all(feature = "cli", feature = "s3"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli;

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `syncengine sync a b --json --state-dir state <extra…>` with moto's keys; returns
/// (exit code, stdout, stderr).
fn sync(endpoint: &str, a: &str, b: &str, state: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(cli::BIN)
        .args(["sync", a, b, "--json", "--state-dir"])
        .arg(state)
        .args(extra)
        .env("AWS_ACCESS_KEY_ID", "a")
        .env("AWS_SECRET_ACCESS_KEY", "b")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A local folder `name` under `dir` holding `files` (path, content).
fn folder(dir: &Path, name: &str, files: &[(&str, &str)]) -> String {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    for (path, content) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    root.to_str().unwrap().to_owned()
}

/// The bucket gets an object `x` (synced to a local folder), then keys under `x/`: the next
/// run cannot put `x/y` on the disk where `x` is a file. It says so — the path, that `x` is
/// a file here and a folder there, what to do — and leaves both versions alone.
#[test]
fn a_file_and_a_folder_of_one_name_on_an_object_store_is_a_named_clash() {
    let Some(endpoint) = cli::moto() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!("s3://test/clash-{}-{nanos}", std::process::id());

    let a = folder(t, "a", &[("x", "the file x")]);
    let (code, _, err) = sync(&endpoint, &a, &url, &t.join("state-a"), &[]);
    assert_eq!(code, 0, "{err}");
    let local = folder(t, "local", &[]);
    let (code, _, err) = sync(&endpoint, &url, &local, &t.join("state-l"), &[]);
    assert_eq!(code, 0, "{err}");
    // Another tool writes `x/y` next to the object `x` (here: a sync rooted at `…/x`).
    let b = folder(t, "b", &[("y", "in the folder x")]);
    let (code, _, err) = sync(&endpoint, &b, &format!("{url}/x"), &t.join("state-b"), &[]);
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = sync(&endpoint, &url, &local, &t.join("state-l"), &[]);
    assert_eq!(code, 1, "the clash is an error for its path: {err}");
    assert!(!err.contains("not found"), "{err}");
    assert!(err.contains("x/y"), "the path is named: {err}");
    assert!(
        err.contains("`x` is a file here") && err.contains("folder `x/`"),
        "the clash is named: {err}"
    );
    assert!(
        err.contains("rename or move away"),
        "the fix is named: {err}"
    );
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["deleted_source"], 0, "{out}");
    assert_eq!(summary["deleted_destination"], 0, "{out}");
    // Nothing was deleted or overwritten: the local file, and both keys in the bucket.
    let local = Path::new(&local);
    assert_eq!(
        std::fs::read_to_string(local.join("x")).unwrap(),
        "the file x"
    );
    let check = folder(t, "check", &[]);
    let (code, _, err) = sync(
        &endpoint,
        &format!("{url}/x"),
        &check,
        &t.join("state-c"),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(Path::new(&check).join("y")).unwrap(),
        "in the folder x"
    );
    let again = folder(t, "again", &[]);
    let (code, _, err) = sync(
        &endpoint,
        &url,
        &again,
        &t.join("state-again"),
        &["--exclude", "x/*"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(Path::new(&again).join("x")).unwrap(),
        "the file x",
        "the object x is still there"
    );
}
