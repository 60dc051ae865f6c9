//! Red-team cases (issue 10, round 15) through the `syncengine` binary: root existence and
//! the empty-side stop's restore hint, location arguments, protected sides and the trash
//! command. Each failing case names what went wrong; the passing ones are cheap regressions.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

#[path = "support/cli.rs"]
mod cli;

/// Runs the binary with `args` in the working directory `cwd`; returns (exit code, output).
fn run_in(cwd: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(cli::BIN)
        .current_dir(cwd)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// Every path below `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `file://localhost.backup/x` is not a local URL (its host is `localhost.backup`), yet it
/// was read as the relative path `.backup/x`: a two-way run created and filled a hidden
/// folder `.backup/x` in the working directory and exited 0.
#[test]
fn file_url_with_a_host_starting_with_localhost_creates_no_hidden_local_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    fs::create_dir(cwd.join("s")).unwrap();
    fs::write(cwd.join("s/a.txt"), "hi").unwrap();
    for url in [
        "file://localhost.backup/x",
        "file://localhost:8080/x",
        "file://localhostx/y",
    ] {
        let (code, out) = run_in(
            cwd,
            &["sync", "s", url, "--mode", "std", "--state-dir", "st", "-q"],
        );
        assert_eq!(code, Some(2), "{url} must be a usage error: {out}");
        let made: Vec<String> = tree(cwd)
            .into_iter()
            .filter(|p| !p.starts_with('s'))
            .collect();
        assert!(made.is_empty(), "{url} created {made:?}: {out}");
    }
}

/// `file://LOCALHOST/abs` names the same local folder as `file://localhost/abs` (host names
/// are case-insensitive), but was refused as a URL with another host.
#[test]
fn file_url_host_localhost_is_case_insensitive() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    fs::create_dir(cwd.join("s")).unwrap();
    fs::write(cwd.join("s/a.txt"), "hi").unwrap();
    let dst = format!("file://LOCALHOST{}", cwd.join("d").display());
    let (code, out) = run_in(
        cwd,
        &[
            "sync",
            "s",
            &dst,
            "--mode",
            "std",
            "--state-dir",
            "st",
            "-q",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(fs::read_to_string(cwd.join("d/a.txt")).unwrap(), "hi");
}

/// The empty-side stop's restore hint printed a WebDAV URL's password when the password holds
/// a `,` (a character the redaction takes for the end of a URL): `syncengine sync s2
/// webdav://dav:top,secret@…`. The password in the URL is not the one used (the environment's
/// wins), so the run reaches the stop.
#[cfg(feature = "webdav")]
#[test]
fn restore_hint_does_not_print_a_url_password_with_a_comma() {
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;
    let addr = SocketAddr::from(([127, 0, 0, 1], 8083));
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "wsgidav is not reachable on {addr} (CI=true)"
        );
        eprintln!("SKIPPED: wsgidav is not reachable on {addr}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("s");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f.txt"), "x").unwrap();
    let url = format!(
        "webdav://dav:top,secret@127.0.0.1:8083/syncengine-tests/rt15-{}",
        std::process::id()
    );
    let run = || {
        let out = Command::new(cli::BIN)
            .arg("sync")
            .arg(&src)
            .arg(&url)
            .arg("--state-dir")
            .arg(tmp.path().join("st"))
            .env("SYNCENGINE_WEBDAV_USER", "dav")
            .env("SYNCENGINE_WEBDAV_PASSWORD", "davpass")
            .env("SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let (code, out) = run();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        !out.contains("secret"),
        "first run printed the password: {out}"
    );
    fs::remove_dir_all(&src).unwrap();
    let (code, out) = run();
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("hint:"), "{out}");
    assert!(
        !out.contains("secret"),
        "the stop printed the password: {out}"
    );
}

/// Two-way, newest-wins, --conflict-loser delete, --protect destination: both sides edited
/// `f.txt`, the source's edit is the newer one. The protected destination's older version wins
/// (it cannot be written), and the source's newer edit is moved to the source's trash, while
/// the warning says the source's own version "is kept as the conflict loser there". The newer
/// edit should stay a live file on the source (a conflict copy), as the warning promises.
#[test]
fn protected_destination_newest_wins_does_not_trash_the_newer_source_edit() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, st) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("st"),
    );
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    fs::write(a.join("f.txt"), "base").unwrap();
    let (code, out) = cli::sync(&a, &b, &st, &[]);
    assert_eq!(code, Some(0), "{out}");
    fs::write(b.join("f.txt"), "dest-edit-older").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(b.join("f.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    fs::write(a.join("f.txt"), "SOURCE-NEWER").unwrap();
    let (code, out) = cli::sync(
        &a,
        &b,
        &st,
        &[
            "--conflict",
            "newest-wins",
            "--conflict-loser",
            "delete",
            "--protect",
            "destination",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        fs::read_to_string(b.join("f.txt")).unwrap(),
        "dest-edit-older"
    );
    let live: Vec<String> = tree(&a)
        .into_iter()
        .filter(|p| !p.starts_with(".syncengine"))
        .filter(|p| fs::read_to_string(a.join(p)).is_ok_and(|t| t == "SOURCE-NEWER"))
        .collect();
    assert!(
        !live.is_empty(),
        "the newer source edit is no live file on the source any more (only in its trash: \
         {:?}): {out}",
        tree(&a)
    );
}

/// Regression: a restore never writes through a symlinked folder at the target (it could lead
/// outside the root), and `trash empty` removes only folders named like runs.
#[test]
fn trash_restore_refuses_a_symlinked_target_folder_and_empty_keeps_odd_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("b");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(root.join(".syncengine/trash/20261204T172748Z/sub")).unwrap();
    fs::write(
        root.join(".syncengine/trash/20261204T172748Z/sub/h.txt"),
        "old",
    )
    .unwrap();
    fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("sub")).unwrap();
    let r = root.to_str().unwrap();
    let (code, out) = run_in(tmp.path(), &["trash", "restore", r, "sub/h.txt"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(tree(&outside).is_empty(), "{out}");
    assert!(
        root.join(".syncengine/trash/20261204T172748Z/sub/h.txt")
            .exists()
    );
    for odd in ["notes", "20200101T000000Z-x", "2020"] {
        fs::create_dir_all(root.join(".syncengine/trash").join(odd)).unwrap();
        fs::write(root.join(".syncengine/trash").join(odd).join("n"), "n").unwrap();
    }
    let (code, out) = run_in(
        tmp.path(),
        &["trash", "empty", r, "--older-than", "0", "--yes"],
    );
    assert_eq!(code, Some(0), "{out}");
    for odd in ["notes", "20200101T000000Z-x", "2020"] {
        assert!(
            root.join(".syncengine/trash").join(odd).join("n").exists(),
            "{odd}: {out}"
        );
    }
}

/// The state files in `st` (one per pair id).
fn state_files(st: &Path) -> Vec<String> {
    tree(st)
        .into_iter()
        .filter(|p| p.ends_with(".db"))
        .collect()
}

/// A destination given as a symlink (`link -> mnt/usb/backup`) whose target is gone (the disk
/// unmounted) was spelled by its link path instead of the canonical path of the earlier runs:
/// another pair id, so a "first run" that made a second state file, wrote a generation file
/// into the source root and failed every copy with "already exists" (exit 1) instead of the
/// empty-side stop (exit 3) that names the mount.
#[test]
fn a_dangling_symlinked_root_is_the_empty_side_stop_of_the_same_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (a, st) = (t.join("a"), t.join("st"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(t.join("mnt/usb/backup")).unwrap();
    fs::write(a.join("f1"), "1").unwrap();
    std::os::unix::fs::symlink(t.join("mnt/usb/backup"), t.join("link")).unwrap();
    let (code, out) = cli::sync(&a, &t.join("link"), &st, &[]);
    assert_eq!(code, Some(0), "{out}");
    let states = state_files(&st);
    let source_before = tree(&a);
    fs::remove_dir_all(t.join("mnt/usb/backup")).unwrap();
    let (code, out) = cli::sync(&a, &t.join("link"), &st, &[]);
    assert_eq!(code, Some(3), "{out}");
    assert_eq!(state_files(&st), states, "a second pair state: {out}");
    assert_eq!(tree(&a), source_before, "the source root changed: {out}");
    assert!(tree(&t.join("mnt/usb")).is_empty(), "{out}");
}

/// A destination below a symlinked folder (`link/photos/2024`, `link -> mnt/usb`) whose own
/// parent is gone (the disk unmounted, its mount point `mnt/usb` left empty) got another pair
/// id than the canonical `mnt/usb/photos/2024` of the earlier runs: a "first run" re-created
/// the folder on the mount point and filled it from the source, instead of the empty-side
/// stop.
#[test]
fn a_missing_root_below_a_symlinked_folder_is_the_empty_side_stop_of_the_same_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (a, st) = (t.join("a"), t.join("st"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(t.join("mnt/usb")).unwrap();
    fs::write(a.join("f1"), "1").unwrap();
    std::os::unix::fs::symlink(t.join("mnt/usb"), t.join("link")).unwrap();
    let dest = t.join("link/photos/2024");
    let (code, out) = cli::sync(&a, &dest, &st, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(t.join("mnt/usb/photos/2024/f1").exists(), "{out}");
    let states = state_files(&st);
    fs::remove_dir_all(t.join("mnt/usb/photos")).unwrap();
    let (code, out) = cli::sync(&a, &dest, &st, &[]);
    assert_eq!(code, Some(3), "{out}");
    assert_eq!(state_files(&st), states, "a second pair state: {out}");
    assert!(
        tree(&t.join("mnt/usb")).is_empty(),
        "the unmounted disk's folder was re-created on the mount point: {:?} {out}",
        tree(&t.join("mnt/usb"))
    );
}

/// A trash run holding a root-level `.syncengine/root-id` (a crafted run, or a `--trash-dir`
/// pointed at the wrong folder) restored with `--force` moved the root's live id file to the
/// trash and put the other one in its place: the pair then saw another storage at the root.
/// A restore never writes into the engine's own folder.
#[test]
fn a_forced_whole_run_restore_never_writes_the_roots_own_syncengine_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (a, b, st) = (t.join("a"), t.join("b"), t.join("st"));
    fs::create_dir_all(&a).unwrap();
    fs::write(a.join("f"), "1").unwrap();
    let (code, out) = cli::sync(&a, &b, &st, &[]);
    assert_eq!(code, Some(0), "{out}");
    let id = fs::read(b.join(".syncengine/root-id")).unwrap();
    let run = b.join(".syncengine/trash/20261204T100000Z");
    fs::create_dir_all(run.join(".syncengine")).unwrap();
    fs::write(run.join(".syncengine/root-id"), "EVIL").unwrap();
    fs::write(run.join("kept.txt"), "k").unwrap();
    let r = b.to_str().unwrap();
    for force in [false, true] {
        let mut args = vec!["trash", "restore", r, "--run", "20261204T100000Z"];
        if force {
            args.push("--force");
        }
        let (_, out) = run_in(t, &args);
        assert_eq!(
            fs::read(b.join(".syncengine/root-id")).unwrap(),
            id,
            "force {force}: {out}"
        );
        let written: Vec<String> = tree(&b.join(".syncengine"))
            .into_iter()
            .filter(|p| !p.starts_with("trash") && !p.starts_with("generation"))
            .collect();
        assert_eq!(written, ["root-id"], "force {force}: {out}");
    }
    assert_eq!(fs::read_to_string(b.join("kept.txt")).unwrap(), "k");
    let (code, out) = cli::sync(&a, &b, &st, &[]);
    assert_eq!(code, Some(0), "{out}");
}

/// `--backup-dir`/`--trash-dir` under a protected root's `.syncengine/` folder was accepted
/// (as for any root), and the destination's deleted and overwritten files were written there:
/// into the protected side, which gets nothing under its `.syncengine/`.
#[test]
fn a_backup_dir_inside_a_protected_roots_syncengine_folder_is_refused() {
    for flag in ["--backup-dir", "--trash-dir"] {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let (b, c, st) = (t.join("b"), t.join("c"), t.join("st"));
        fs::create_dir_all(&b).unwrap();
        fs::create_dir_all(&c).unwrap();
        fs::write(b.join("f"), "1").unwrap();
        fs::write(c.join("f"), "x").unwrap();
        fs::write(c.join("extra"), "old").unwrap();
        let bk = b.join(".syncengine/bk");
        let (code, out) = cli::sync(
            &b,
            &c,
            &st,
            &[
                "--mode",
                "std",
                "--protect",
                "source",
                flag,
                bk.to_str().unwrap(),
            ],
        );
        assert_eq!(code, Some(2), "{flag}: {out}");
        assert_eq!(
            tree(&b),
            ["f"],
            "{flag}: the protected root was written: {out}"
        );
        assert_eq!(fs::read_to_string(c.join("extra")).unwrap(), "old");
    }
}

/// The empty-side stop's hint is a command to paste: a root given as `-- -src` was printed
/// as a bare `-src`, which the pasted command reads as options (and `--state-dir -st` the
/// same way). It is printed as `./-src` and `--state-dir=…`. And for a root folder that is
/// missing altogether (not only emptied) the printed command only met the next stop: the
/// re-created root has no id file, "not the storage this pair was last synced with".
#[test]
fn the_restore_hint_for_a_missing_root_runs_as_printed_even_for_a_dash_name() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    fs::create_dir_all(t.join("-src")).unwrap();
    fs::create_dir_all(t.join("dst")).unwrap();
    fs::write(t.join("-src/f"), "1").unwrap();
    let sync = |extra: &[&str]| {
        let mut args = vec!["sync", "--state-dir=-st"];
        args.extend(extra);
        args.extend(["--", "-src", "dst"]);
        run_in(t, &args)
    };
    let (code, out) = sync(&[]);
    assert_eq!(code, Some(0), "{out}");
    fs::remove_dir_all(t.join("-src")).unwrap();
    let (code, out) = sync(&[]);
    assert_eq!(code, Some(3), "{out}");
    let hint = out
        .lines()
        .find_map(|l| l.split_once("from the destination: syncengine "))
        .map(|(_, cmd)| cmd.to_owned())
        .unwrap_or_else(|| panic!("no hint: {out}"));
    // Run the hint as a shell would (no word in it needs quotes here).
    let words: Vec<&str> = hint.split_whitespace().collect();
    let (code, out2) = run_in(t, &words);
    assert_eq!(code, Some(0), "the hint `{hint}` did not run: {out2}");
    assert_eq!(fs::read_to_string(t.join("-src/f")).unwrap(), "1");
}

/// The empty-side stop names the root as the user wrote it, not as a Rust debug form
/// (`the source (LocalClient(/tmp/…/s)) does not exist`).
#[test]
fn the_empty_side_stop_names_a_local_root_by_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (a, b, st) = (t.join("a"), t.join("b"), t.join("st"));
    fs::create_dir_all(&a).unwrap();
    fs::write(a.join("f"), "1").unwrap();
    let (code, out) = cli::sync(&a, &b, &st, &[]);
    assert_eq!(code, Some(0), "{out}");
    fs::remove_dir_all(&a).unwrap();
    let (code, out) = cli::sync(&a, &b, &st, &[]);
    assert_eq!(code, Some(3), "{out}");
    assert!(!out.contains("LocalClient("), "{out}");
}

/// The restore hint dropped the run's `--exclude` patterns: run as printed, the forced
/// mirror towards the emptied side saw the user's excluded files there as extra and moved
/// them to the trash (and would copy the other side's excluded files over).
#[test]
fn the_restore_hint_keeps_the_runs_exclude_patterns() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    fs::create_dir_all(t.join("a")).unwrap();
    fs::write(t.join("a/f"), "1").unwrap();
    fs::write(t.join("a/notes.tmp"), "mine").unwrap();
    let args = ["sync", "a", "b", "--state-dir=st", "--exclude", "*.tmp"];
    let (code, out) = run_in(t, &args);
    assert_eq!(code, Some(0), "{out}");
    fs::remove_file(t.join("a/f")).unwrap();
    let (code, out) = run_in(t, &args);
    assert_eq!(code, Some(3), "{out}");
    let hint = out
        .lines()
        .find_map(|l| l.split_once("from the destination: syncengine "))
        .map(|(_, cmd)| cmd.to_owned())
        .unwrap_or_else(|| panic!("no hint: {out}"));
    // `--exclude='*.tmp'` as a shell passes it.
    let words: Vec<String> = hint
        .split_whitespace()
        .map(|w| w.replace('\'', ""))
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let (code, out2) = run_in(t, &words);
    assert_eq!(code, Some(0), "`{hint}`: {out2}");
    assert_eq!(fs::read_to_string(t.join("a/f")).unwrap(), "1");
    assert_eq!(
        fs::read_to_string(t.join("a/notes.tmp")).ok().as_deref(),
        Some("mine"),
        "the hint `{hint}` moved the excluded file to the trash: {out2}"
    );
}

/// A run that stops at the identity check of one side ("stopped before changing anything")
/// had already created the other, missing, root folder and written a new id file into it
/// (that side given to --accept-new-root): the state does not record that id, so the next
/// run finds that root changed as well and asks to accept both.
#[test]
fn a_run_stopped_by_the_identity_check_creates_no_root_and_writes_no_id_file() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (a, b, st) = (t.join("a"), t.join("b"), t.join("st"));
    fs::create_dir_all(&a).unwrap();
    fs::write(a.join("f"), "1").unwrap();
    let (code, out) = cli::sync(&a, &b, &st, &[]);
    assert_eq!(code, Some(0), "{out}");
    fs::remove_file(a.join(".syncengine/root-id")).unwrap();
    fs::remove_dir_all(&b).unwrap();
    let (code, out) = cli::sync(
        &a,
        &b,
        &st,
        &[
            "--mode",
            "std",
            "--force",
            "--accept-new-root",
            "destination",
        ],
    );
    assert_eq!(code, Some(3), "{out}");
    assert!(!b.exists(), "the stopped run created {:?}: {out}", tree(&b));
}
