//! `syncengine sync --protect source|destination` (issue 10) on the built binary: the protected
//! root is byte-for-byte what it was — every file and folder, `.syncengine/` included, with
//! its content, modification time and permission bits, and nothing created (a folder's mtime
//! would show even a file created and removed again) — in all five modes, on a first run and
//! after new files, edits, deletes, renames and conflicts on both sides. And against a remote
//! side (moto's S3): no object written or removed under the protected prefix.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const MODES: [&str; 5] = [
    "two-way",
    "source-to-destination",
    "source-backup",
    "destination-to-source",
    "destination-backup",
];

/// One entry of a snapshot: kind, permission bits, mtime (ns), and a file's content.
type Snap = BTreeMap<String, (char, u32, i128, Option<Vec<u8>>)>;

/// Everything below `root` and `root` itself, `.syncengine/` included.
fn snapshot(root: &Path) -> Snap {
    let mut out = Snap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        let mode = meta.mode();
        if meta.is_dir() {
            out.insert(rel, ('d', mode, mtime, None));
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else {
            out.insert(rel, ('f', mode, mtime, Some(std::fs::read(&p).unwrap())));
        }
    }
    out
}

fn write(root: &Path, rel: &str, content: &str, age_secs: u64) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(age_secs))
        .unwrap();
}

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs a sync with `--json -q` and the extra arguments; returns the exit code, the parsed
/// JSON summary (when there is one) and the whole output.
fn sync(
    src: &Path,
    dst: &Path,
    state: &Path,
    extra: &[&str],
) -> (Option<i32>, Option<serde_json::Value>, String) {
    let (code, out) = cli::sync(src, dst, state, extra);
    let json = out
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok());
    (code, json, out)
}

/// Source and destination folders under `t`, synced once two-way (unprotected), then changed
/// on both sides: new files, edits, deletes, renames, and a file both sides edited.
fn changed_pair(t: &Path, state: &Path) -> (PathBuf, PathBuf) {
    let (src, dst) = (t.join("src"), t.join("dst"));
    for name in [
        "keep.txt",
        "edit-s.txt",
        "edit-d.txt",
        "del-s.txt",
        "del-d.txt",
        "ren-s.txt",
        "ren-d.txt",
        "both.txt",
        "dir/inner.txt",
    ] {
        write(&src, name, &format!("original {name}"), 3600);
    }
    std::fs::set_permissions(src.join("keep.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    let (code, _, out) = sync(&src, &dst, state, &[]);
    assert_eq!(code, Some(0), "{out}");

    write(&src, "new-s.txt", "new on the source", 600);
    write(&dst, "new-d.txt", "new on the destination", 600);
    write(&dst, "dir/new-d2.txt", "another new one", 600);
    write(&src, "edit-s.txt", "edited on the source side", 600);
    write(&dst, "edit-d.txt", "edited on the destination side", 600);
    std::fs::remove_file(src.join("del-s.txt")).unwrap();
    std::fs::remove_file(dst.join("del-d.txt")).unwrap();
    std::fs::rename(src.join("ren-s.txt"), src.join("renamed-s.txt")).unwrap();
    std::fs::rename(dst.join("ren-d.txt"), dst.join("renamed-d.txt")).unwrap();
    write(&src, "both.txt", "both: the source's edit", 300);
    write(&dst, "both.txt", "both: the destination's newer edit", 60);
    (src, dst)
}

/// Whether `mode` ever writes to `side`.
fn mode_writes(mode: &str, side: &str) -> bool {
    matches!(
        (mode, side),
        ("two-way", _)
            | ("source-to-destination" | "source-backup", "destination")
            | (
                "source-backup" | "destination-to-source" | "destination-backup",
                "source"
            )
    )
}

#[test]
fn a_protected_root_stays_byte_identical_in_every_mode_after_changes_on_both_sides() {
    for mode in MODES {
        for side in ["source", "destination"] {
            let tmp = tempfile::tempdir().unwrap();
            let t = tmp.path();
            let state = t.join("state");
            let (src, dst) = changed_pair(t, &state);
            let (guarded, other) = if side == "source" {
                (&src, &dst)
            } else {
                (&dst, &src)
            };
            let before = snapshot(guarded);
            let what = format!("--mode {mode} --protect {side}");
            let mut counts = Vec::new();
            for run in 0..2 {
                let (code, json, out) =
                    sync(&src, &dst, &state, &["--mode", mode, "--protect", side]);
                assert_eq!(code, Some(0), "{what}, run {run}: {out}");
                assert_eq!(
                    snapshot(guarded),
                    before,
                    "{what}, run {run}: the protected root changed"
                );
                let json = json.unwrap_or_else(|| panic!("{what}: no JSON: {out}"));
                counts.push(json["protected"].as_u64().unwrap());
            }
            assert_eq!(counts[0], counts[1], "{what}: reported again, {counts:?}");
            assert_eq!(counts[0] > 0, mode_writes(mode, side), "{what}: {counts:?}");
            if mode_writes(
                mode,
                if side == "source" {
                    "destination"
                } else {
                    "source"
                },
            ) {
                let new_there = if side == "source" {
                    "new-s.txt"
                } else {
                    "new-d.txt"
                };
                assert!(
                    read(other, new_there).is_some(),
                    "{what}: the other side is synced"
                );
            }
        }
    }
}

#[test]
fn a_first_run_creates_nothing_in_a_protected_root() {
    for mode in MODES {
        for side in ["source", "destination"] {
            let tmp = tempfile::tempdir().unwrap();
            let t = tmp.path();
            let (src, dst) = (t.join("src"), t.join("dst"));
            write(&src, "a.txt", "only on the source", 60);
            write(&src, "sub/b.txt", "also on the source", 60);
            write(&dst, "c.txt", "only on the destination", 60);
            write(&dst, "a.txt", "the destination's a, differing", 30);
            let guarded = if side == "source" { &src } else { &dst };
            let before = snapshot(guarded);
            let (code, _, out) = sync(
                &src,
                &dst,
                &t.join("state"),
                &["--mode", mode, "--protect", side, "--force"],
            );
            assert_eq!(code, Some(0), "{mode} {side}: {out}");
            assert_eq!(snapshot(guarded), before, "{mode} {side}");
            assert!(!guarded.join(".syncengine").exists(), "{mode} {side}");
        }
    }
}

#[test]
fn source_backup_protecting_the_source_keeps_a_destination_edit() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (src, dst, state) = (t.join("src"), t.join("dst"), t.join("state"));
    write(&src, "report.txt", "the original report", 3600);
    std::fs::create_dir_all(&dst).unwrap();
    let args = ["--mode", "source-backup", "--protect", "source"];
    let (code, json, out) = sync(&src, &dst, &state, &args);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(json.unwrap()["uploaded"], 1);
    let before = snapshot(&src);

    write(&dst, "report.txt", "edited in the backup, longer", 60);
    for _ in 0..2 {
        let (code, json, out) = sync(&src, &dst, &state, &args);
        assert_eq!(code, Some(0), "{out}");
        let json = json.unwrap();
        assert_eq!(json["protected"], 1, "{out}");
        assert_eq!(json["uploaded"], 0, "{out}");
        assert_eq!(
            read(&dst, "report.txt").as_deref(),
            Some("edited in the backup, longer")
        );
        assert_eq!(snapshot(&src), before);
    }
    // The human summary says so too.
    let (code, out) = cli::run_sync(
        &[
            s(&src),
            s(&dst),
            "--mode",
            "source-backup",
            "--protect",
            "source",
        ],
        &state,
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1 protected"), "{out}");
    assert!(out.contains("report.txt"), "the path is named: {out}");
}

#[test]
fn protecting_both_sides_is_a_usage_error_that_suggests_a_dry_run() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (src, dst) = (t.join("src"), t.join("dst"));
    write(&src, "a.txt", "a", 60);
    std::fs::create_dir_all(&dst).unwrap();
    for extra in [
        &["--protect", "source", "--protect", "destination"][..],
        &["--protect", "both"][..],
    ] {
        let (code, _, out) = sync(&src, &dst, &t.join("state"), extra);
        assert_eq!(code, Some(2), "{out}");
        assert!(out.contains("--dry-run"), "{out}");
        assert!(read(&dst, "a.txt").is_none());
    }
    let (code, _, out) = sync(&src, &dst, &t.join("state"), &["--protect", "left"]);
    assert_eq!(code, Some(2), "{out}");
    let help = std::process::Command::new(cli::BIN)
        .args(["sync", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--mode source-backup --protect source"),
        "{help}"
    );
}

#[test]
fn a_state_directory_inside_a_protected_root_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (src, dst) = (t.join("src"), t.join("dst"));
    write(&src, "a.txt", "a", 60);
    std::fs::create_dir_all(&dst).unwrap();
    let before = snapshot(&src);
    let (code, _, out) = sync(&src, &dst, &src.join("state"), &["--protect", "source"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("--state-dir"), "{out}");
    assert_eq!(snapshot(&src), before);
    assert!(read(&dst, "a.txt").is_none());
}

/// A protected S3 prefix (moto): listing every object and unfinished upload under it before
/// and after runs with changes on both sides shows nothing written or removed.
#[cfg(feature = "s3")]
#[test]
fn a_protected_s3_prefix_gets_no_object() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};

    let Some(endpoint) = cli::moto() else { return };
    let authority = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let get = |query: &str| -> String {
        let mut conn = std::net::TcpStream::connect(&authority).unwrap();
        write!(
            conn,
            "GET /test?{query} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200"),
            "{text}"
        );
        text
    };
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("protect-{}-{nanos}", std::process::id());
    // Every object (key, ETag, size, time) and every unfinished multipart upload.
    let objects = || {
        let listing = get(&format!("list-type=2&prefix={prefix}/"));
        assert!(
            listing.contains("<IsTruncated>false</IsTruncated>"),
            "{listing}"
        );
        let uploads = get(&format!("uploads&prefix={prefix}/"));
        let contents: Vec<String> = listing
            .split("<Contents>")
            .skip(1)
            .map(|c| c.split("</Contents>").next().unwrap().to_owned())
            .collect();
        let pending = uploads.matches("<Upload>").count();
        (contents, pending)
    };
    let sync_s3 = |a: &str, b: &str, state: &Path, extra: &[&str]| {
        let out = Command::new(cli::BIN)
            .args(["sync", a, b, "--json", "-q", "--state-dir"])
            .arg(state)
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", "a")
            .env("AWS_SECRET_ACCESS_KEY", "b")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };

    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let url = format!("s3://test/{prefix}");
    // The bucket side is filled by an unprotected run first.
    let seed = t.join("seed");
    for name in ["keep.txt", "edit.txt", "gone.txt", "both.txt", "dir/x.txt"] {
        write(&seed, name, &format!("original {name}"), 3600);
    }
    let (code, out) = sync_s3(s(&seed), &url, &t.join("state-seed"), &[]);
    assert_eq!(code, Some(0), "{out}");
    let before = objects();
    assert!(
        before.0.len() >= 5,
        "the files (and the engine's own): {before:?}"
    );

    for mode in MODES {
        let local = t.join(format!("local-{mode}"));
        let state = t.join(format!("state-{mode}"));
        // A first run (local empty) in the mode, then changes on the local side: new,
        // edited, deleted files and a conflict with the bucket's version.
        std::fs::create_dir_all(&local).unwrap();
        let (code, out) = sync_s3(
            s(&local),
            &url,
            &state,
            &["--mode", mode, "--protect", "destination", "--force"],
        );
        assert_eq!(code, Some(0), "{mode}: {out}");
        assert_eq!(objects(), before, "{mode}: first run");
        write(&local, "new.txt", "new on the local side", 60);
        write(&local, "edit.txt", "edited on the local side", 60);
        write(&local, "both.txt", "both: the local edit", 30);
        let _ = std::fs::remove_file(local.join("gone.txt"));
        let (code, out) = sync_s3(
            s(&local),
            &url,
            &state,
            &["--mode", mode, "--protect", "destination", "--force"],
        );
        assert_eq!(code, Some(0), "{mode}: {out}");
        assert_eq!(objects(), before, "{mode}: after changes");
        if mode_writes(mode, "destination") {
            assert!(
                out.contains("\"protected\":") && !out.contains("\"protected\":0"),
                "{mode}: {out}"
            );
        }
    }
}
