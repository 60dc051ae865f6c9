//! `syncengine check`: the built binary on temporary local folders (and S3 on moto), each
//! test with its own `--state-dir`.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Runs `syncengine check <a> <b> --state-dir <state> <extra…>` with `vars`; returns (exit
/// code, stdout, stderr).
fn check_with(
    a: &str,
    b: &str,
    state: &Path,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> (i32, String, String) {
    let out = Command::new(cli::BIN)
        .args(["check", a, b, "--state-dir"])
        .arg(state)
        .args(extra)
        .envs(vars.iter().copied())
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

fn check(a: &Path, b: &Path, state: &Path, extra: &[&str]) -> (i32, String, String) {
    check_with(a.to_str().unwrap(), b.to_str().unwrap(), state, extra, &[])
}

/// A folder `name` under `dir` holding `files` (path, content).
fn folder(dir: &Path, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    for (path, content) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    root
}

#[test]
fn equal_folders_exit_0_and_say_how_they_were_compared() {
    let t = tempfile::tempdir().unwrap();
    let files = [("a.txt", "alpha"), ("sub/b.txt", "beta")];
    let a = folder(t.path(), "a", &files);
    let b = folder(t.path(), "b", &files);
    let (code, out, err) = check(&a, &b, &t.path().join("state"), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "equal; compared 2 files by MD5", "{err}");
    // A check creates no state.
    assert!(!t.path().join("state").exists());
}

#[test]
fn each_difference_is_listed_and_the_exit_status_is_1() {
    let t = tempfile::tempdir().unwrap();
    let a = folder(
        t.path(),
        "a",
        &[
            ("same", "x"),
            ("only-src", "s"),
            ("content", "aaaa"),
            ("size", "1"),
        ],
    );
    let b = folder(
        t.path(),
        "b",
        &[
            ("same", "x"),
            ("only-dst", "d"),
            ("content", "bbbb"),
            ("size", "22"),
        ],
    );
    let (code, out, err) = check(&a, &b, &t.path().join("state"), &[]);
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "differs (md5): content",
            "missing on source: only-dst",
            "missing on destination: only-src",
            "differs (size): size",
            "not equal: 1 missing on destination, 1 missing on source, 2 differ; compared 3 \
             files by MD5",
        ],
        "{err}"
    );
}

#[test]
fn one_way_only_asks_the_destination_to_hold_the_source_files() {
    let t = tempfile::tempdir().unwrap();
    let a = folder(t.path(), "a", &[("f", "1")]);
    let b = folder(t.path(), "b", &[("f", "1"), ("extra", "2")]);
    let state = t.path().join("state");
    let (code, out, _) = check(&a, &b, &state, &["--one-way"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("extra"), "{out}");
    assert!(out.starts_with("equal (one way"), "{out}");
    // Swapped, the source-only file is missing on the destination.
    let (code, out, _) = check(&b, &a, &state, &["--one-way"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("missing on destination: extra"), "{out}");
}

#[test]
fn download_compares_bytes() {
    let t = tempfile::tempdir().unwrap();
    let a = folder(t.path(), "a", &[("f", "same size A"), ("g", "equal")]);
    let b = folder(t.path(), "b", &[("f", "same size B"), ("g", "equal")]);
    let (code, out, err) = check(&a, &b, &t.path().join("state"), &["--download"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "differs (bytes): f",
            "not equal: 1 differs; compared 2 files byte by byte (--download)"
        ]
    );
}

#[test]
fn excluded_files_and_the_engines_own_folder_never_appear() {
    let t = tempfile::tempdir().unwrap();
    let a = folder(
        t.path(),
        "a",
        &[
            ("keep", "k"),
            ("x.tmp", "temp"),
            ("cache/big", "c"),
            (".syncignore", "cache/\n"),
        ],
    );
    let b = folder(
        t.path(),
        "b",
        &[
            ("keep", "k"),
            (".syncignore", "cache/\n"),
            (".syncengine/trash/20260101T000000Z/old", "o"),
        ],
    );
    let state = t.path().join("state");
    let (code, out, err) = check(&a, &b, &state, &["--exclude", "*.tmp"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("tmp") && !out.contains("cache") && !out.contains(".syncengine"));
    // Without the pattern, the temp file is a difference (the .syncignore still applies).
    let (code, out, _) = check(&a, &b, &state, &[]);
    assert_eq!(code, 1);
    assert!(out.contains("missing on destination: x.tmp"), "{out}");
    assert!(!out.contains("cache"), "{out}");
}

#[test]
fn the_sync_filters_apply_as_a_sync_applies_them() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let big = "x".repeat(4096);
    let a = folder(
        tmp.path(),
        "a",
        &[("doc.md", "same"), ("pic.jpg", "a"), ("big.md", &big)],
    );
    let b = folder(tmp.path(), "b", &[("doc.md", "same"), ("pic.jpg", "b")]);
    let patterns = tmp.path().join("patterns");
    std::fs::write(&patterns, "# pictures are not compared\n*.jpg\n").unwrap();

    // Unfiltered: the picture differs and the big file is missing.
    let (code, out, _) = check(&a, &b, &state, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("pic.jpg") && out.contains("big.md"), "{out}");

    // --exclude-from drops the picture; --max-size 1K the big file, on both sides.
    let p = patterns.to_str().unwrap();
    let (code, out, err) = check(&a, &b, &state, &["--exclude-from", p, "--max-size", "1K"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 left out by --max-size"), "{out}");
    // --include keeps only the markdown files: the picture is not compared either.
    let (code, out, err) = check(&a, &b, &state, &["--include", "*.md", "--max-size", "1K"]);
    assert_eq!(code, 0, "{out}{err}");
    // --min-age: a file just written on either side is left out.
    let (code, out, _) = check(&a, &b, &state, &["--min-age", "1h"]);
    assert_eq!(code, 0, "{out}");
    // A bad filter is a usage error, as for sync.
    let (code, _, err) = check(&a, &b, &state, &["--exclude-from", "/no/such/file"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_copy_kept_by_a_backup_mode_is_labelled_and_not_a_difference() {
    let t = tempfile::tempdir().unwrap();
    let a = folder(t.path(), "a", &[("old", "o"), ("stays", "s")]);
    let b = t.path().join("b");
    let state = t.path().join("state");
    let (code, out) = cli::sync(&a, &b, &state, &["--mode", "source-backup"]);
    assert_eq!(code, Some(0), "{out}");
    std::fs::remove_file(a.join("old")).unwrap();
    let (code, out) = cli::sync(&a, &b, &state, &["--mode", "source-backup"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(b.join("old").exists(), "the backup keeps it");

    let (code, out, err) = check(&a, &b, &state, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "kept by backup (deleted on source): old",
            "equal; compared 1 file by MD5; 1 kept by backup (not differences)"
        ]
    );
    // Another state directory knows nothing of it: a plain difference.
    let (code, out, _) = check(&a, &b, &t.path().join("other"), &[]);
    assert_eq!(code, 1);
    assert!(out.contains("missing on source: old"), "{out}");
}

#[test]
fn json_is_one_object_with_the_lists_and_counts() {
    let t = tempfile::tempdir().unwrap();
    let a = folder(t.path(), "a", &[("s", "1"), ("d", "aa"), ("e", "e")]);
    let b = folder(t.path(), "b", &[("x", "2"), ("d", "bb"), ("e", "e")]);
    let (code, out, err) = check(&a, &b, &t.path().join("state"), &["--json"]);
    assert_eq!(code, 1, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["equal"], false);
    assert_eq!(v["method"], "md5");
    assert_eq!(v["one_way"], false);
    assert_eq!(v["missing_on_destination"], serde_json::json!(["s"]));
    assert_eq!(v["missing_on_source"], serde_json::json!(["x"]));
    assert_eq!(
        v["differs"],
        serde_json::json!([{"path": "d", "by": "md5"}])
    );
    assert_eq!(v["kept_by_backup"], serde_json::json!([]));
    assert_eq!(v["errors"], serde_json::json!([]));
    let c = &v["counts"];
    for (key, n) in [
        ("source_files", 3),
        ("destination_files", 3),
        ("compared", 2),
        ("matched", 1),
        ("missing_on_destination", 1),
        ("missing_on_source", 1),
        ("differs", 1),
        ("kept_by_backup", 0),
        ("errors", 0),
    ] {
        assert_eq!(c[key], n, "{key}: {c}");
    }
}

#[test]
fn help_has_examples_and_bad_usage_exits_2() {
    let out = Command::new(cli::BIN)
        .args(["check", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("EXAMPLES:") && help.contains("--one-way"),
        "{help}"
    );
    let t = tempfile::tempdir().unwrap();
    let (code, _, err) = check_with("a", "nosuch://x", t.path(), &[], &[]);
    assert_eq!(code, 2, "{err}");
}

/// moto's environment for the S3 cases.
#[cfg(feature = "s3")]
fn s3_vars(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "a".into()),
        ("AWS_SECRET_ACCESS_KEY", "b".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ]
}

/// A local folder against an S3 prefix: S3 lists MD5 ETags, local disk hashes on demand, so
/// a same-size edit is found by MD5; an unreachable endpoint is exit 4.
#[cfg(feature = "s3")]
#[test]
fn local_against_s3_compares_by_md5() {
    let Some(endpoint) = cli::moto() else { return };
    let t = tempfile::tempdir().unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!("s3://test/check-{}-{nanos}", std::process::id());
    let a = folder(t.path(), "a", &[("f.txt", "content A"), ("dir/g", "gee")]);
    let state = t.path().join("state");
    let vars = s3_vars(&endpoint);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = Command::new(cli::BIN)
        .args(["sync", a.to_str().unwrap(), &url, "-q", "--state-dir"])
        .arg(&state)
        .envs(vars.iter().copied())
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let (code, out, err) = check_with(a.to_str().unwrap(), &url, &state, &[], &vars);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "equal; compared 2 files by MD5", "{err}");

    std::fs::write(a.join("f.txt"), "content B").unwrap();
    let (code, out, err) = check_with(a.to_str().unwrap(), &url, &state, &["--json"], &vars);
    assert_eq!(code, 1, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["differs"],
        serde_json::json!([{"path": "f.txt", "by": "md5"}])
    );
    let (code, out, _) = check_with(a.to_str().unwrap(), &url, &state, &["--download"], &vars);
    assert_eq!(code, 1);
    assert!(out.contains("differs (bytes): f.txt"), "{out}");

    let mut closed = vars.clone();
    closed.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
    closed.push(("AWS_ENDPOINT_URL", "http://127.0.0.1:9"));
    let (code, _, err) = check_with(
        a.to_str().unwrap(),
        &url,
        &state,
        &["--contimeout", "2s"],
        &closed,
    );
    assert_eq!(code, 4, "{err}");
}
