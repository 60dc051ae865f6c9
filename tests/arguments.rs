//! Arguments that cannot hurt (issue 10): a missing root the mode reads from is refused, a
//! missing receiving root is created only on a pair's first run, a root lost later is the
//! empty-side stop with a hint that restores it, and rclone-style `NAME:path` and `http://`
//! arguments are refused with the URL form to use instead.
#![cfg(feature = "cli")]
// Test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli;

use std::path::Path;
use std::process::{Command, Stdio};

use cli::{BIN, disk_files, sync};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Runs the binary with `args` in `cwd`; returns (exit code, stdout, stderr).
fn run_in(cwd: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_typod_source_in_two_way_is_refused_and_nothing_is_created_or_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let (typo, dst, state) = (
        tmp.path().join("dcouments"),
        tmp.path().join("dst"),
        tmp.path().join("state"),
    );
    write(&dst, "kept.txt", "mine");
    for dry in [true, false] {
        let extra: &[&str] = if dry { &["--dry-run"] } else { &[] };
        let (code, out) = sync(&typo, &dst, &state, extra);
        assert_eq!(code, Some(4), "dry run {dry}: {out}");
        assert!(out.contains("does not exist"), "{out}");
        assert!(out.contains("typo"), "{out}");
        assert!(!typo.exists(), "the typo'd source was created");
        assert_eq!(disk_files(&dst).len(), 1);
        // No state is left for a pair that never ran.
        let states: Vec<_> = std::fs::read_dir(&state)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            !states.iter().any(|n| n.to_string_lossy().ends_with(".db")),
            "{states:?}"
        );
    }
}

#[test]
fn the_side_a_mirror_or_backup_reads_from_must_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let (missing, full, state) = (
        tmp.path().join("missing"),
        tmp.path().join("full"),
        tmp.path().join("state"),
    );
    write(&full, "a.txt", "a");
    for mode in ["source-to-destination", "source-backup"] {
        let (code, out) = sync(&missing, &full, &state, &["--mode", mode]);
        assert_eq!(code, Some(4), "{mode}: {out}");
        assert!(!missing.exists());
    }
    for mode in ["destination-to-source", "destination-backup"] {
        let (code, out) = sync(&full, &missing, &state, &["--mode", mode]);
        assert_eq!(code, Some(4), "{mode}: {out}");
        assert!(!missing.exists());
    }
    assert_eq!(disk_files(&full).len(), 1);
}

#[test]
fn a_missing_receiving_root_is_created_on_the_first_run_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, state) = (
        tmp.path().join("src"),
        tmp.path().join("new/dst"),
        tmp.path().join("state"),
    );
    write(&src, "a.txt", "a");
    write(&src, "sub/b.txt", "b");
    let (code, out) = sync(&src, &dst, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(disk_files(&dst).len(), 2);

    // Later the destination disappears (an unmounted disk at a path that is gone): the run
    // stops, whatever the mode, and creates nothing.
    std::fs::remove_dir_all(&dst).unwrap();
    for mode in ["two-way", "source-to-destination", "source-backup"] {
        let (code, out) = sync(&src, &dst, &state, &["--mode", mode]);
        assert_eq!(code, Some(3), "{mode}: {out}");
        assert!(out.contains("does not exist"), "{out}");
        assert!(out.contains("mounted"), "{out}");
        assert!(!dst.exists(), "{mode} re-created the lost destination");
    }
    assert_eq!(disk_files(&src).len(), 2, "the source lost files");
}

#[test]
fn an_emptied_side_stop_says_check_the_mount_then_how_to_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, state) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("state"),
    );
    write(&src, "a.txt", "a");
    write(&src, "b/c.txt", "c");
    let (code, out) = sync(&src, &dst, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    // Empty the destination's files (its folder, and the engine's own files, stay).
    std::fs::remove_file(dst.join("a.txt")).unwrap();
    std::fs::remove_dir_all(dst.join("b")).unwrap();

    let (code, _stdout, stderr) = run_in(
        tmp.path(),
        &[
            "sync",
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(3), "{stderr}");
    let mount = stderr.find("mounted").expect(&stderr);
    let restore = stderr
        .find("--mode source-to-destination --force")
        .expect(&stderr);
    assert!(mount < restore, "the mount is not named first: {stderr}");
    assert!(
        stderr.contains("deletes the source's copies too"),
        "--force's consequence in two-way is not named: {stderr}"
    );
    assert_eq!(disk_files(&src).len(), 2, "the source lost files");

    // The hint is a command that works as printed: take it from the output and run it.
    let hint = stderr
        .lines()
        .find(|l| l.starts_with("hint:"))
        .expect(&stderr);
    let command = &hint[hint.find("syncengine sync").expect(hint)..];
    let words: Vec<&str> = command.split_whitespace().skip(1).collect();
    let (code, _, stderr) = run_in(tmp.path(), &words);
    assert_eq!(code, Some(0), "{command}: {stderr}");
    assert_eq!(
        disk_files(&dst),
        disk_files(&src),
        "the hint did not restore"
    );
    assert_eq!(disk_files(&src).len(), 2);

    // And the two-way pair carries on normally.
    let (code, out) = sync(&src, &dst, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn an_emptied_source_is_restored_by_a_mirror_towards_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, state) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("state"),
    );
    write(&src, "a.txt", "a");
    let (code, out) = sync(&src, &dst, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    std::fs::remove_file(src.join("a.txt")).unwrap();
    let (code, out) = sync(&src, &dst, &state, &[]);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("--mode destination-to-source --force"),
        "{out}"
    );
    assert_eq!(disk_files(&dst).len(), 1);
}

#[test]
fn a_receiving_only_side_emptied_is_refilled_by_force_in_the_same_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, state) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("state"),
    );
    write(&src, "a.txt", "a");
    let mode = ["--mode", "source-to-destination"];
    let (code, out) = sync(&src, &dst, &state, &mode);
    assert_eq!(code, Some(0), "{out}");
    std::fs::remove_file(dst.join("a.txt")).unwrap();
    let (code, out) = sync(&src, &dst, &state, &mode);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("copies the source's files back"), "{out}");
    let (code, out) = sync(
        &src,
        &dst,
        &state,
        &["--mode", "source-to-destination", "--force"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(disk_files(&dst).len(), 1);
}

#[test]
fn rclone_style_remote_names_are_refused_with_the_url_form() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(tmp.path().join("src")).unwrap();
    for remote in ["moto:test/x", "my_remote:", "gdrive-2:photos"] {
        let (code, _, stderr) = run_in(
            tmp.path(),
            &[
                "sync",
                "src",
                remote,
                "--state-dir",
                state.to_str().unwrap(),
            ],
        );
        assert_eq!(code, Some(2), "{remote}: {stderr}");
        assert!(stderr.contains("rclone remote"), "{stderr}");
        assert!(stderr.contains("s3://"), "{stderr}");
        assert!(stderr.contains(&format!("./{remote}")), "{stderr}");
    }
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(':')),
        "a folder with a colon was created"
    );

    // `./name:path` is a local folder, and so is a one-letter drive-like name.
    std::fs::write(tmp.path().join("src/a.txt"), "a").unwrap();
    for local in ["./moto:test/x", "C:/x"] {
        let (code, _, stderr) = run_in(
            tmp.path(),
            &["sync", "src", local, "--state-dir", state.to_str().unwrap()],
        );
        assert_eq!(code, Some(0), "{local}: {stderr}");
        assert!(tmp.path().join(local).join("a.txt").is_file(), "{local}");
    }
}

#[test]
fn http_locations_are_refused_with_the_webdav_form() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("src")).unwrap();
    for (url, hint) in [
        ("http://127.0.0.1:8080/dav", "webdav://"),
        ("HTTPS://example.test/dav", "webdavs://"),
    ] {
        let (code, _, stderr) = run_in(tmp.path(), &["sync", "src", url, "--dry-run"]);
        assert_eq!(code, Some(2), "{url}: {stderr}");
        assert!(stderr.contains(hint), "{url}: {stderr}");
    }
}

#[test]
fn a_changed_root_that_is_also_empty_reports_both_causes() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, state) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("state"),
    );
    write(&src, "a.txt", "a");
    write(&src, "b.txt", "b");
    let (code, out) = sync(&src, &dst, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    // Another (empty) folder now stands where the destination was: no id file, no files.
    std::fs::remove_dir_all(&dst).unwrap();
    std::fs::create_dir(&dst).unwrap();
    let (code, out) = sync(&src, &dst, &state, &[]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("is not the storage"), "{out}");
    assert!(out.contains("empty although it held 2 files"), "{out}");
    assert!(out.contains("mounted"), "{out}");
    assert_eq!(disk_files(&src).len(), 2);
    assert!(disk_files(&dst).is_empty());
}
