//! `syncengine trash list|restore|empty` on the built binary (issue 10): the trash that real
//! two-way syncs filled, listed by run and path, restored without overwriting a live file
//! (a conflict copy, or with --force the live file trashed first), whole runs restored,
//! old runs emptied, dry runs changing nothing; local folders, a --trash-dir, and S3 (moto).
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

/// An odd name: spaces, `%`, `#`, non-ASCII.
const ODD: &str = "notes/x y %#é.txt";

/// Runs `syncengine trash <args…>` with stdin closed and `env` set; returns (exit code,
/// stdout, stderr).
fn trash_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(cli::BIN);
    cmd.arg("trash")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn trash(args: &[&str]) -> (i32, String, String) {
    trash_env(args, &[])
}

fn write(root: &Path, path: &str, body: &str) {
    let p = root.join(path);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, body).unwrap();
}

fn read(root: &Path, path: &str) -> Option<String> {
    fs::read_to_string(root.join(path)).ok()
}

/// The trash listing as JSON.
fn listed(root: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["list", root, "--json"];
    args.extend(extra);
    let (code, out, err) = trash(&args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// `(run, path, size)` for every file in a JSON listing.
fn files_of(listing: &serde_json::Value) -> Vec<(String, String, u64)> {
    let mut all = Vec::new();
    for run in listing["runs"].as_array().unwrap() {
        for f in run["files"].as_array().unwrap() {
            all.push((
                run["run"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
                f["size"].as_u64().unwrap(),
            ));
        }
    }
    all
}

/// Two folders synced both ways, then on `a`: `ODD` and `gone.txt` deleted, `keep.txt`
/// rewritten, and synced again: `b`'s trash holds the three old versions (one run).
/// Returns (tempdir, a, b, state).
fn synced_pair() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, state) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("st"),
    );
    write(&a, ODD, "odd name, first version");
    write(&a, "gone.txt", "gone");
    write(&a, "keep.txt", "keep v1");
    let (code, out) = cli::sync(&a, &b, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    fs::remove_file(a.join(ODD)).unwrap();
    fs::remove_file(a.join("gone.txt")).unwrap();
    write(&a, "keep.txt", "keep, the second version");
    let (code, out) = cli::sync(&a, &b, &state, &["--max-delete", "100"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!b.join(ODD).exists() && !b.join("gone.txt").exists());
    (tmp, a, b)
}

/// Every file below `dir`, the trash included, with its content.
fn everything(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                found.push((rel, fs::read_to_string(e.path()).unwrap_or_default()));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn list_shows_what_a_sync_trashed_by_run_and_path() {
    let (_tmp, _a, b) = synced_pair();
    let root = b.to_str().unwrap();
    let listing = listed(root, &[]);
    let files = files_of(&listing);
    let run = files[0].0.clone();
    assert_eq!(
        files,
        [
            (run.clone(), "gone.txt".to_owned(), 4),
            (run.clone(), "keep.txt".to_owned(), 7),
            (run.clone(), ODD.to_owned(), 23),
        ],
        "{listing}"
    );
    assert_eq!(listing["file_count"], 3);
    assert_eq!(listing["bytes"], 34);
    let time = listing["runs"][0]["time"].as_str().unwrap();
    assert_eq!(time.len(), 20, "{time}");
    assert!(time.ends_with('Z') && time.contains('T'), "{time}");

    let (code, out, err) = trash(&["list", root]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("run {run} (")), "{out}");
    assert!(out.contains(" UTC): 3 files, 34 B"), "{out}");
    assert!(
        out.contains(&format!("  {ODD}\n")),
        "odd names as they are: {out}"
    );
    assert!(
        out.contains("1 run, 3 files, 34 B in the trash of "),
        "{out}"
    );

    let (code, out, _) = trash(&["list", root, "--run", &run, "--json"]);
    assert_eq!(code, 0);
    let one: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(one["file_count"], 3);
    let (code, _, err) = trash(&["list", root, "--run", "20000101T000000Z"]);
    assert_eq!(code, 1, "an unknown run: {err}");
    assert!(err.contains("no run 20000101T000000Z"), "{err}");

    // A folder without a trash: empty, not an error.
    let fresh = b.parent().unwrap().join("fresh");
    let (code, out, err) = trash(&["list", fresh.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("is empty"), "{out}");
}

#[test]
fn restore_puts_a_folder_back_and_the_next_two_way_sync_copies_it_over() {
    let (tmp, a, b) = synced_pair();
    let root = b.to_str().unwrap();
    let before = everything(&b);

    let (code, out, err) = trash(&["restore", root, "notes/", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("would restore {ODD}\n")), "{out}");
    assert!(out.contains("dry run, nothing changed"), "{out}");
    assert_eq!(everything(&b), before, "a dry run changes nothing");

    let (code, out, err) = trash(&["restore", root, "notes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("restored {ODD}\n")), "{out}");
    assert!(out.contains("restored 1 file from run "), "{out}");
    assert!(
        out.contains("next sync") && out.contains("copy them to the other side"),
        "{out}"
    );
    assert_eq!(read(&b, ODD).as_deref(), Some("odd name, first version"));
    let left: Vec<_> = files_of(&listed(root, &[]))
        .into_iter()
        .map(|f| f.1)
        .collect();
    assert_eq!(left, ["gone.txt", "keep.txt"], "moved out of the trash");

    // Nothing of it left in the trash: a second restore finds nothing.
    let (code, _, err) = trash(&["restore", root, ODD]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nothing at or below"), "{err}");

    // The next two-way sync copies the restored file to the other side.
    let (code, out) = cli::sync(&a, &b, &tmp.path().join("st"), &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(read(&a, ODD).as_deref(), Some("odd name, first version"));
}

#[test]
fn a_live_file_is_never_overwritten_without_force() {
    let (_tmp, _a, b) = synced_pair();
    let root = b.to_str().unwrap();
    let (code, out, err) = trash(&["restore", root, "keep.txt"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("a live file is at keep.txt and stays"),
        "{out}"
    );
    assert_eq!(
        read(&b, "keep.txt").as_deref(),
        Some("keep, the second version")
    );
    let copies: Vec<String> = fs::read_dir(&b)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("keep.conflict-") && n.ends_with("-restored.txt"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(out.contains(&format!("as {}", copies[0])), "{out}");
    assert_eq!(read(&b, &copies[0]).as_deref(), Some("keep v1"));
}

#[test]
fn force_moves_the_live_file_to_the_trash_and_restores_in_its_place() {
    let (_tmp, _a, b) = synced_pair();
    let root = b.to_str().unwrap();
    let run = files_of(&listed(root, &[]))[0].0.clone();

    let before = everything(&b);
    let (code, out, err) = trash(&["restore", root, "keep.txt", "--force", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("would move the live file to"), "{out}");
    assert_eq!(everything(&b), before, "a dry run changes nothing");

    // A second apart from the sync's run, so the live file gets a run of its own.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, out, err) = trash(&["restore", root, "keep.txt", "--force", "--run", &run]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("moved the live file to .syncengine/trash/"),
        "{out}"
    );
    assert_eq!(read(&b, "keep.txt").as_deref(), Some("keep v1"));
    let files = files_of(&listed(root, &[]));
    let live: Vec<_> = files.iter().filter(|f| f.1 == "keep.txt").collect();
    assert_eq!(live.len(), 1, "{files:?}");
    assert_ne!(live[0].0, run, "the live file is in a new run");
    assert_eq!(
        read(&b, &format!(".syncengine/trash/{}/keep.txt", live[0].0)).as_deref(),
        Some("keep, the second version"),
        "never destroyed"
    );
}

#[test]
fn a_whole_run_is_restored() {
    let (_tmp, _a, b) = synced_pair();
    let root = b.to_str().unwrap();
    let run = files_of(&listed(root, &[]))[0].0.clone();
    let (code, out, err) = trash(&["restore", root, "--run", &run, "--json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["run"], run.as_str());
    assert_eq!(report["errors"].as_array().unwrap().len(), 0, "{report}");
    let restored = report["restored"].as_array().unwrap();
    assert_eq!(restored.len(), 3, "{report}");
    assert_eq!(read(&b, ODD).as_deref(), Some("odd name, first version"));
    assert_eq!(read(&b, "gone.txt").as_deref(), Some("gone"));
    let keep = restored.iter().find(|r| r["path"] == "keep.txt").unwrap();
    assert_eq!(keep["live"], "kept", "{keep}");
    let copy = keep["restored_as"].as_str().unwrap();
    assert_eq!(read(&b, copy).as_deref(), Some("keep v1"));
    assert_eq!(listed(root, &[])["file_count"], 0);
}

#[test]
fn empty_removes_old_runs_only_and_asks_first() {
    let (_tmp, _a, b) = synced_pair();
    let root = b.to_str().unwrap();
    write(&b, ".syncengine/trash/20200101T000000Z/old/a.txt", "old a");
    write(&b, ".syncengine/trash/20200101T000000Z-2/old", "old file");
    write(&b, ".syncengine/trash/someone-elses/x.txt", "not a run");
    let before = everything(&b);
    assert_eq!(listed(root, &[])["runs"].as_array().unwrap().len(), 3);

    let (code, out, err) = trash(&["empty", root, "--older-than", "30", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("would remove run 20200101T000000Z (2020-01-01 00:00:00 UTC): 1 file"),
        "{out}"
    );
    assert!(out.contains("would remove 2 runs (2 files, 13 B)"), "{out}");
    assert_eq!(everything(&b), before, "a dry run removes nothing");

    // Not a terminal, no --yes: refused, nothing removed.
    let (code, _, err) = trash(&["empty", root, "--older-than", "30"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(everything(&b), before);

    let (code, out, err) = trash(&["empty", root, "--older-than", "30", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed 2 runs (2 files, 13 B)"), "{out}");
    let runs: Vec<_> = listed(root, &[])["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(runs.len(), 1, "the sync's recent run stays: {runs:?}");
    assert_eq!(
        read(&b, ".syncengine/trash/someone-elses/x.txt").as_deref(),
        Some("not a run")
    );
    assert!(
        b.join(".syncengine/root-id").exists(),
        "nothing outside the trash"
    );
    assert_eq!(
        read(&b, "keep.txt").as_deref(),
        Some("keep, the second version")
    );

    let (code, out, _) = trash(&["empty", root, "--older-than", "30", "--yes"]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing older than 30 days"), "{out}");
}

#[test]
fn usage_errors_exit_2_and_nothing_to_restore_exits_1() {
    let (_tmp, _a, b) = synced_pair();
    let root = b.to_str().unwrap();
    let (code, _, err) = trash(&["restore", root]);
    assert_eq!(code, 2, "neither PATH nor --run: {err}");
    let (code, _, err) = trash(&["restore", root, "a/../b"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = trash(&["empty", root]);
    assert_eq!(code, 2, "--older-than is required: {err}");
    let (code, _, err) = trash(&["list", root, "--trash-dir", "/tmp/x"]);
    assert_eq!(code, 2, "--trash-dir needs --side: {err}");
    let (code, _, err) = trash(&[
        "restore",
        root,
        "x",
        "--force",
        "--trash-dir",
        "/tmp/x",
        "--side",
        "source",
    ]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = trash(&["list", "nosuch://x"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = trash(&["restore", root, "no/such/path"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = trash(&["restore", root, "--run", "20000101T000000Z"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no run 20000101T000000Z"), "{err}");

    let (code, out, _) = trash(&["restore", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("EXAMPLES:") && out.contains("syncengine trash restore"));
    assert!(out.contains("next sync"), "{out}");
    // ROOT comes first, as the command takes it (clap's own usage put PATH first).
    let usage = out
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap_or_default();
    let (root_at, path_at) = (usage.find("<ROOT>"), usage.find("<PATH>"));
    assert!(
        root_at.is_some() && path_at.is_some() && root_at < path_at,
        "{usage}"
    );
}

#[test]
fn a_trash_dir_is_listed_and_restored_from() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, dir) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("trash"),
    );
    let state = tmp.path().join("st");
    write(&a, ODD, "odd");
    write(&a, "stay.txt", "stays");
    let (code, out) = cli::sync(&a, &b, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    fs::remove_file(a.join(ODD)).unwrap();
    let trash_dir = ["--trash-dir", dir.to_str().unwrap(), "--max-delete", "100"];
    let (code, out) = cli::sync(&a, &b, &state, &trash_dir);
    assert_eq!(code, Some(0), "{out}");

    let root = b.to_str().unwrap();
    let elsewhere = [
        "--trash-dir",
        dir.to_str().unwrap(),
        "--side",
        "destination",
    ];
    assert_eq!(
        listed(root, &[])["file_count"],
        0,
        "not in the root's trash"
    );
    let files = files_of(&listed(root, &elsewhere));
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].1, ODD);

    let mut args = vec!["restore", root, ODD];
    args.extend(elsewhere);
    let (code, out, err) = trash(&args);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("restored {ODD}")), "{out}");
    assert_eq!(read(&b, ODD).as_deref(), Some("odd"));
    assert_eq!(listed(root, &elsewhere)["file_count"], 0);
}

/// Against moto: a local folder synced with a bucket prefix, files deleted and replaced
/// locally, the bucket's trash listed, restored (copy, check, delete of the trash copy),
/// a live object kept with a conflict copy beside it, and old runs emptied.
#[cfg(feature = "s3")]
#[test]
fn s3_trash_is_listed_restored_and_emptied() {
    let Some(endpoint) = cli::moto() else { return };
    let env = [
        ("AWS_ACCESS_KEY_ID", "a"),
        ("AWS_SECRET_ACCESS_KEY", "b"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let sync = |a: &str, b: &str, state: &Path| {
        let out = Command::new(cli::BIN)
            .args([
                "sync",
                a,
                b,
                "--json",
                "-q",
                "--max-delete",
                "100",
                "--state-dir",
            ])
            .arg(state)
            .envs(env)
            .env_remove("AWS_PROFILE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    };
    let tmp = tempfile::tempdir().unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!("s3://test/trash-cli-{}-{nanos}", std::process::id());
    let a = tmp.path().join("a");
    let state = tmp.path().join("st");
    write(&a, ODD, "odd name on s3");
    write(&a, "keep.txt", "keep v1");
    sync(a.to_str().unwrap(), &url, &state);
    fs::remove_file(a.join(ODD)).unwrap();
    write(&a, "keep.txt", "keep, the second version");
    sync(a.to_str().unwrap(), &url, &state);

    let s3 = |args: &[&str]| trash_env(args, &env);
    let (code, out, err) = s3(&["list", &url, "--json"]);
    assert_eq!(code, 0, "{err}");
    let listing: serde_json::Value = serde_json::from_str(&out).unwrap();
    let files = files_of(&listing);
    let paths: Vec<_> = files.iter().map(|f| (f.1.as_str(), f.2)).collect();
    assert_eq!(paths, [("keep.txt", 7), (ODD, 14)], "{listing}");

    let (code, out, err) = s3(&["restore", &url, ODD]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("restored {ODD}")), "{out}");
    let (code, out, err) = s3(&["restore", &url, "keep.txt"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("a live file is at keep.txt and stays"),
        "{out}"
    );
    let (code, out, _) = s3(&["list", &url, "--json"]);
    assert_eq!(code, 0);
    let after: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        after["file_count"], 0,
        "the trash copies are removed: {after}"
    );

    // What the bucket holds now, seen through a fresh sync to an empty folder.
    let check = tmp.path().join("check");
    sync(&url, check.to_str().unwrap(), &tmp.path().join("st2"));
    assert_eq!(read(&check, ODD).as_deref(), Some("odd name on s3"));
    assert_eq!(
        read(&check, "keep.txt").as_deref(),
        Some("keep, the second version")
    );
    let copies: Vec<_> = cli::disk_files(&check)
        .into_keys()
        .filter(|n| n.starts_with("keep.conflict-") && n.ends_with("-restored.txt"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(read(&check, &copies[0]).as_deref(), Some("keep v1"));

    // A run to empty: the local side's next sync trashes the old keep.txt in the bucket.
    write(&a, "keep.txt", "keep, the third version");
    sync(a.to_str().unwrap(), &url, &state);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, out, err) = s3(&["empty", &url, "--older-than", "0", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("emptied: removed 1 run"), "{out}");
    let (code, out, _) = s3(&["list", &url]);
    assert_eq!(code, 0);
    assert!(out.contains("is empty"), "{out}");

    // An endpoint nobody listens on: unreachable, exit 4.
    let dead = [
        ("AWS_ACCESS_KEY_ID", "a"),
        ("AWS_SECRET_ACCESS_KEY", "b"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let (code, _, err) = trash_env(&["list", &url, "--contimeout", "2s"], &dead);
    assert_eq!(code, 4, "{err}");
}

/// Against Apache's WebDAV (MOVE back out of the trash): a whole run restored with --force,
/// the live file moved to the trash first. Skipped (with a note) when the server is not
/// running outside CI.
#[cfg(feature = "webdav")]
#[test]
fn webdav_trash_is_restored_with_force() {
    let authority = "127.0.0.1:8082";
    if std::net::TcpStream::connect(authority).is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "Apache WebDAV is not running (CI needs it)"
        );
        eprintln!("Apache WebDAV is not running on {authority}: skipped");
        return;
    }
    let env = [
        ("SYNCENGINE_WEBDAV_USER", "dav"),
        ("SYNCENGINE_WEBDAV_PASSWORD", "davpass"),
        ("SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC", "1"),
    ];
    let sync = |a: &str, b: &str, state: &Path| {
        let out = Command::new(cli::BIN)
            .args(["sync", a, b, "-q", "--max-delete", "100", "--state-dir"])
            .arg(state)
            .envs(env)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    };
    let tmp = tempfile::tempdir().unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!(
        "webdav://{authority}/syncengine-tests/trash-cli-{}-{nanos}",
        std::process::id()
    );
    let a = tmp.path().join("a");
    let state = tmp.path().join("st");
    write(&a, ODD, "odd on webdav");
    write(&a, "keep.txt", "keep v1");
    sync(a.to_str().unwrap(), &url, &state);
    fs::remove_file(a.join(ODD)).unwrap();
    write(&a, "keep.txt", "keep, the second version");
    sync(a.to_str().unwrap(), &url, &state);

    let dav = |args: &[&str]| trash_env(args, &env);
    let (code, out, err) = dav(&["list", &url, "--json"]);
    assert_eq!(code, 0, "{err}");
    let files = files_of(&serde_json::from_str(&out).unwrap());
    assert_eq!(files.len(), 2, "{files:?}");
    let run = files[0].0.clone();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, out, err) = dav(&["restore", &url, "--run", &run, "--force"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("restored {ODD}\n")), "{out}");
    assert!(
        out.contains("restored keep.txt (moved the live file to "),
        "{out}"
    );

    let (code, out, _) = dav(&["list", &url, "--json"]);
    assert_eq!(code, 0);
    let left = files_of(&serde_json::from_str(&out).unwrap());
    assert_eq!(left.len(), 1, "only the live keep.txt: {left:?}");
    assert_eq!(left[0].1, "keep.txt");
    assert_ne!(left[0].0, run);

    let check = tmp.path().join("check");
    sync(&url, check.to_str().unwrap(), &tmp.path().join("st2"));
    assert_eq!(read(&check, ODD).as_deref(), Some("odd on webdav"));
    assert_eq!(read(&check, "keep.txt").as_deref(), Some("keep v1"));
}
