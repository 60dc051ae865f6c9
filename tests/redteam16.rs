//! Red team (issue 10 features): filters, output, `check`, `pairs`, on the built binary.
#![cfg(feature = "cli")]
// Test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli;

use std::path::PathBuf;

use cli::{disk_files, sync};

/// A source `a`, a destination `b` and a state folder, all temporary.
struct Fixture {
    _tmp: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
    state: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let [a, b, state] = ["a", "b", "state"].map(|n| tmp.path().join(n));
        for d in [&a, &b, &state] {
            std::fs::create_dir(d).unwrap();
        }
        Fixture {
            _tmp: tmp,
            a,
            b,
            state,
        }
    }
}

/// A `--log-file` inside a synced root was synced like any file: a mirror into the root
/// holding the log overwrote the log the run was writing (its lines went to the trash with
/// the replaced version), and every run put one more copy of the log in the trash. It is
/// refused as `--backup-dir` inside a root is (exit 2), before the log file is created.
#[test]
fn a_log_file_inside_a_synced_root_is_refused_before_it_is_created() {
    for (side, mode) in [("a", "two-way"), ("b", "source-to-destination")] {
        let f = Fixture::new();
        std::fs::write(f.a.join("f1"), "1").unwrap();
        let root = if side == "a" { &f.a } else { &f.b };
        let log = root.join("sync.log");
        let log_arg = log.to_str().unwrap().to_owned();
        let (code, out) = sync(
            &f.a,
            &f.b,
            &f.state,
            &["--mode", mode, "--log-file", &log_arg],
        );
        assert_eq!(code, Some(2), "{side} {mode}: {out}");
        assert!(out.contains("--log-file"), "{side} {mode}: {out}");
        assert!(
            !log.exists(),
            "{side} {mode}: the refused log file was created"
        );
        assert!(disk_files(&f.b).is_empty(), "{side} {mode}: {out}");
        // Under the root's .syncengine/ folder it is not synced: allowed.
        let inner = root.join(".syncengine").join("sync.log");
        std::fs::create_dir_all(inner.parent().unwrap()).unwrap();
        let inner_arg = inner.to_str().unwrap().to_owned();
        for _ in 0..2 {
            let (code, out) = sync(
                &f.a,
                &f.b,
                &f.state,
                &["--mode", mode, "--log-file", &inner_arg],
            );
            assert_eq!(code, Some(0), "{side} {mode}: {out}");
        }
        let text = std::fs::read_to_string(&inner).unwrap();
        assert!(text.contains("uploaded f1"), "{text}");
        assert_eq!(text.matches("synced:").count(), 2, "{text}");
    }
}

/// Runs `syncengine <args…>` with a dummy AWS identity; returns (exit code, stdout).
fn run_bin(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(cli::BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env("AWS_ACCESS_KEY_ID", "AKIAREDTEAM16EXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "redteam16SECRETredteam16SECRET")
        .env("AWS_REGION", "us-east-1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `check --json` printed nothing on stdout when it stopped early (a usage error found by
/// clap or after parsing, an unreachable side), where `sync --json` prints
/// `{"error", "exit_status"}`: a script reading the object got no JSON at all.
#[test]
fn check_json_prints_one_object_when_it_stops_early() {
    let f = Fixture::new();
    let (a, b, state) = (
        f.a.to_str().unwrap(),
        f.b.to_str().unwrap(),
        f.state.to_str().unwrap(),
    );
    let cases: [(&[&str], i32); 3] = [
        (
            &["check", a, b, "--json", "--state-dir", state, "--bogus"],
            2,
        ),
        (&["check", a, "foo://x", "--json", "--state-dir", state], 2),
        (
            &[
                "check",
                a,
                "s3://127.0.0.1:1/bucket",
                "--json",
                "--contimeout",
                "2s",
                "--state-dir",
                state,
            ],
            4,
        ),
    ];
    for (args, code) in cases {
        let (got, out) = run_bin(args);
        assert_eq!(got, Some(code), "{args:?}: {out}");
        let v: serde_json::Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON object ({e}): {out:?}"));
        assert_eq!(v["exit_status"], code, "{args:?}: {out}");
        assert!(v["error"].is_string(), "{args:?}: {out}");
        assert!(!out.contains("SECRET"), "{out}");
    }
}

/// `pairs forget` took any `*.db` file of the state directory for a pair ("an unreadable state
/// file can be forgotten too"): with a state directory shared with other programs, `pairs
/// forget n --yes` deleted another program's `notes.db` (and its `notes.lock`). A file that is
/// not a syncengine state database is left alone; a real pair beside it is still forgotten.
#[test]
fn pairs_forget_leaves_a_database_that_is_not_a_pair_state_alone() {
    let f = Fixture::new();
    std::fs::write(f.a.join("x"), "x").unwrap();
    let (code, out) = sync(&f.a, &f.b, &f.state, &[]);
    assert_eq!(code, Some(0), "{out}");
    let notes = f.state.join("notes.db");
    let notes_lock = f.state.join("notes.lock");
    std::fs::write(&notes, "precious: not a syncengine file").unwrap();
    std::fs::write(&notes_lock, "another program's lock").unwrap();
    let state = f.state.to_str().unwrap();
    for query in ["n", "notes"] {
        let (code, out) = run_bin(&["pairs", "forget", query, "--yes", "--state-dir", state]);
        assert_ne!(code, Some(0), "{query}: {out}");
        assert_eq!(
            std::fs::read_to_string(&notes).ok().as_deref(),
            Some("precious: not a syncengine file"),
            "{query}: {out}"
        );
        assert!(notes_lock.exists(), "{query}: {out}");
    }
    // The pair itself is still forgotten by its roots.
    let (a, b) = (f.a.to_str().unwrap(), f.b.to_str().unwrap());
    let (code, out) = run_bin(&["pairs", "forget", a, b, "--yes", "--state-dir", state]);
    assert_eq!(code, Some(0), "{out}");
    let left: Vec<String> = std::fs::read_dir(&f.state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

/// The counts of a dry run are the counts of the real run that follows. A two-way conflict
/// whose loser is kept: the real run copies the kept loser to the other side too (one more
/// upload or download), which the dry run's counts leave out (it said 0 uploaded, the run
/// then uploaded 1).
#[test]
fn a_dry_run_counts_what_the_real_run_then_does_for_a_kept_conflict() {
    let f = Fixture::new();
    std::fs::write(f.a.join("y"), "y").unwrap();
    let (code, out) = sync(&f.a, &f.b, &f.state, &[]);
    assert_eq!(code, Some(0), "{out}");
    std::fs::write(f.a.join("y"), "edited on the source").unwrap();
    std::fs::write(f.b.join("y"), "edited on the destination, later").unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(f.b.join("y"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    let counts = |extra: &[&str]| {
        let (code, out) = sync(&f.a, &f.b, &f.state, extra);
        assert_eq!(code, Some(0), "{out}");
        let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        [
            "uploaded",
            "downloaded",
            "conflicts",
            "deleted_source",
            "deleted_destination",
        ]
        .map(|k| v[k].as_u64().unwrap())
    };
    let planned = counts(&["--dry-run"]);
    let done = counts(&[]);
    assert_eq!(
        planned, done,
        "[uploaded, downloaded, conflicts, deleted_source, deleted_destination]"
    );
}

/// `check` against a side without a shared hash (Apache WebDAV: size only) said "equal",
/// exit 0, for a file whose content changed at the same size, while `sync --dry-run` on the
/// same pair says it would upload that very file (its modification time moved on). A check
/// that cannot see content should not call a pair equal that the sync itself knows differs.
#[cfg(feature = "webdav")]
#[test]
fn check_by_size_does_not_call_equal_a_file_the_sync_would_copy() {
    let Ok(base) = std::env::var("SYNCENGINE_TEST_WEBDAV_APACHE") else {
        eprintln!("SYNCENGINE_TEST_WEBDAV_APACHE unset: the Apache WebDAV server is not running");
        return;
    };
    let f = Fixture::new();
    let host = base.trim_start_matches("http://");
    let unique = f.a.parent().unwrap().file_name().unwrap().to_string_lossy();
    let dav = format!(
        "webdav://dav:davpass@{host}/rt16-{}",
        unique.trim_start_matches('.')
    );
    let state = f.state.to_str().unwrap();
    let a = f.a.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(cli::BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .env("SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    std::fs::write(f.a.join("f"), "aaaa").unwrap();
    let (code, out) = run(&["sync", a, &dav, "-q", "--state-dir", state]);
    assert_eq!(code, Some(0), "{out}");
    std::fs::write(f.a.join("f"), "bbbb").unwrap();
    let (code, out) = run(&["sync", a, &dav, "--dry-run", "--state-dir", state]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("would upload"), "{out}");
    let (code, out) = run(&["check", a, &dav, "--state-dir", state]);
    assert_ne!(
        code,
        Some(0),
        "check called equal what the sync would upload: {out}"
    );
}

/// `pairs --json` and `pairs show --json` printed nothing on stdout when they failed (an
/// unknown pair, a usage error): one `{error, exit_status}` object, as `sync --json` prints.
#[test]
fn pairs_json_prints_one_object_when_it_fails() {
    let f = Fixture::new();
    let state = f.state.to_str().unwrap();
    let cases: [(&[&str], i32); 3] = [
        (&["pairs", "show", "zz", "--json", "--state-dir", state], 2),
        (&["pairs", "--json", "--state-dir", state, "--bogus"], 2),
        (&["pairs", "show", "--json", "--state-dir", state], 2),
    ];
    for (args, code) in cases {
        let (got, out) = run_bin(args);
        assert_eq!(got, Some(code), "{args:?}: {out}");
        let v: serde_json::Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON object ({e}): {out:?}"));
        assert_eq!(v["exit_status"], code, "{args:?}: {out}");
    }
}

/// A file name holding control characters (an escape sequence, a carriage return, a
/// newline) was printed raw: in `-v` lines, the `--log-file`, the dry-run listing and
/// `check`'s lines. On a terminal the name could clear the screen or overwrite a line, and
/// in a log a newline forged a whole entry ("... deleted on the destination: precious").
/// Control characters are shown escaped.
#[test]
fn control_characters_in_a_file_name_are_escaped_in_every_text_output() {
    let f = Fixture::new();
    let name = "evil\u{1b}[2J\rname\n2026-01-01T00:00:00Z deleted on the destination: precious";
    std::fs::write(f.a.join(name), "x").unwrap();
    let log = f.state.parent().unwrap().join("run.log");
    let (a, b, state, log_s) = (
        f.a.to_str().unwrap(),
        f.b.to_str().unwrap(),
        f.state.to_str().unwrap(),
        log.to_str().unwrap(),
    );
    let full = |args: &[&str]| {
        let out = std::process::Command::new(cli::BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        text
    };
    let mut outputs = vec![
        ("check", full(&["check", a, b, "--state-dir", state])),
        (
            "dry run",
            full(&["sync", a, b, "--dry-run", "--state-dir", state]),
        ),
    ];
    outputs.push((
        "sync -v",
        full(&[
            "sync",
            a,
            b,
            "-v",
            "--log-file",
            log_s,
            "--state-dir",
            state,
        ]),
    ));
    outputs.push(("log file", std::fs::read_to_string(&log).unwrap()));
    for (what, text) in outputs {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\r'),
            "{what}: raw control characters: {text:?}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
            "{what}: a forged line: {text:?}"
        );
    }
    // The file itself was synced under its real name.
    assert!(f.b.join(name).exists());
}
