//! Red team (issue 10, round 17) on the built binary: how the newest pieces work together —
//! `--protect` with the empty-side stop's restore hint, conflicts the protected side wins in
//! every mode (dry run against real run, repeated runs), `check` by size with the pair's base,
//! and a `--log-file` that cannot be written under `--json`. Each failing case names what went
//! wrong; the passing one is a cheap regression over every mode.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

#[path = "support/cli.rs"]
mod cli;

/// Runs the binary with `args` in the working directory `cwd`; returns (exit code, stdout,
/// stderr).
fn run_in(cwd: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(cli::BIN)
        .current_dir(cwd)
        .args(args)
        .env_remove("RUST_LOG")
        .env("SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

/// The empty-side stop under `--protect source` (two-way, the destination emptied) prints a
/// forced mirror towards the destination and says "it writes only to the destination and
/// deletes nothing on the source" — but the printed command drops `--protect source`. Run as
/// printed, it wrote a root id file and a generation file into the protected source's
/// `.syncengine/` (which every `--protect` run carefully leaves alone) and pruned the source's
/// trash: an old trash run (a version the user kept there) was deleted for good, on the very
/// side that still has the files and that the user protected.
#[test]
fn the_restore_hint_under_protect_leaves_the_protected_side_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let old_run = t.join("a/.syncengine/trash/20200101T000000Z");
    fs::create_dir_all(&old_run).unwrap();
    fs::write(old_run.join("old.txt"), "an old version kept in the trash").unwrap();
    fs::write(t.join("a/f"), "1").unwrap();
    fs::write(t.join("a/g"), "2").unwrap();
    let args = ["sync", "a", "b", "--state-dir=st", "--protect", "source"];
    let (code, out, err) = run_in(t, &args);
    assert_eq!(code, Some(0), "{out}{err}");
    let protected_before = tree(&t.join("a"));
    fs::remove_file(t.join("b/f")).unwrap();
    fs::remove_file(t.join("b/g")).unwrap();
    let (code, out, err) = run_in(t, &args);
    assert_eq!(code, Some(3), "{out}{err}");
    let hint = err
        .lines()
        .find_map(|l| l.split_once("from the source: syncengine "))
        .map(|(_, cmd)| cmd.to_owned())
        .unwrap_or_else(|| panic!("no hint: {err}"));
    let words: Vec<String> = hint
        .split_whitespace()
        .map(|w| w.replace('\'', ""))
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let (code, out, err) = run_in(t, &words);
    assert_eq!(code, Some(0), "`{hint}`: {out}{err}");
    assert_eq!(fs::read_to_string(t.join("b/f")).unwrap(), "1");
    assert!(
        old_run.join("old.txt").exists(),
        "the hint `{hint}` deleted the protected source's trash run for good"
    );
    assert_eq!(
        tree(&t.join("a")),
        protected_before,
        "the hint `{hint}` wrote into the protected source"
    );
}

/// `--json` with a `--log-file` that cannot be written (a full disk: /dev/full): the run
/// exits 1 and says why on stderr, but the one JSON object is a plain success (`errors: 0`, no
/// warning, no error): a script reading the object cannot tell why the run failed, nor that
/// it failed at all.
#[test]
fn json_says_why_a_run_with_an_unwritable_log_failed() {
    if !Path::new("/dev/full").exists() {
        eprintln!("no /dev/full here: skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    fs::create_dir_all(t.join("a")).unwrap();
    fs::write(t.join("a/f"), "1").unwrap();
    let (code, out, err) = run_in(
        t,
        &[
            "sync",
            "a",
            "b",
            "--state-dir=st",
            "--json",
            "--log-file",
            "/dev/full",
        ],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        v.to_string().contains("log-file"),
        "exit 1, yet the JSON object names no failure: {out} (stderr: {err})"
    );
}

/// A conflict the protected side wins, in every mode and with either loser policy: the other
/// side's version stays a live file (never only trashed), nothing is written to the protected
/// side, the dry run counts what the real run does, and later runs neither pile up conflict
/// copies nor change anything.
#[test]
fn a_conflict_the_protected_side_wins_keeps_both_versions_in_every_mode() {
    for mode in ["tw", "std", "sb", "dts", "db"] {
        for protect in ["source", "destination"] {
            for loser in ["keep", "delete"] {
                let case = format!("{mode} --protect {protect} --conflict-loser {loser}");
                let tmp = tempfile::tempdir().unwrap();
                let t = tmp.path();
                fs::create_dir_all(t.join("a")).unwrap();
                fs::write(t.join("a/f.txt"), "base").unwrap();
                let (code, out, err) = run_in(t, &["sync", "a", "b", "--state-dir=st", "-q"]);
                assert_eq!(code, Some(0), "{case}: {out}{err}");
                fs::write(t.join("a/f.txt"), "SOURCE-EDIT").unwrap();
                fs::write(t.join("b/f.txt"), "DESTINATION-EDIT, newer").unwrap();
                let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
                let file = fs::File::options().write(true).open(t.join("b/f.txt"));
                file.unwrap().set_modified(later).unwrap();
                let root = if protect == "source" { "a" } else { "b" };
                let before = tree(&t.join(root));
                let run = |dry: bool| {
                    let mut args = vec!["sync", "a", "b", "--state-dir=st", "--json", "-q"];
                    args.extend(["--mode", mode, "--protect", protect]);
                    args.extend(["--conflict-loser", loser]);
                    if dry {
                        args.push("--dry-run");
                    }
                    let (code, out, err) = run_in(t, &args);
                    assert_eq!(code, Some(0), "{case}: {out}{err}");
                    let mut v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
                    let o = v.as_object_mut().unwrap();
                    for k in ["dry_run", "warnings", "bytes_uploaded", "bytes_downloaded"] {
                        o.remove(k);
                    }
                    o.remove("trashed_files");
                    o.remove("trashed_bytes");
                    v
                };
                let planned = run(true);
                let done = run(false);
                assert_eq!(planned, done, "{case}: dry run vs real run");
                let after_first = (tree(&t.join("a")), tree(&t.join("b")));
                run(false);
                run(false);
                assert_eq!(
                    (tree(&t.join("a")), tree(&t.join("b"))),
                    after_first,
                    "{case}: later runs changed the roots"
                );
                assert_eq!(
                    tree(&t.join(root)),
                    before,
                    "{case}: protected side written"
                );
                let live: Vec<String> = ["a", "b"]
                    .iter()
                    .flat_map(|r| {
                        tree(&t.join(r))
                            .into_iter()
                            .filter(|p| !p.starts_with(".syncengine"))
                            .filter_map(|p| fs::read_to_string(t.join(r).join(p)).ok())
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let winner = if protect == "source" {
                    "SOURCE-EDIT"
                } else {
                    "DESTINATION-EDIT, newer"
                };
                let other = if protect == "source" {
                    "DESTINATION-EDIT, newer"
                } else {
                    "SOURCE-EDIT"
                };
                assert!(live.iter().any(|c| c == winner), "{case}: {live:?}");
                // A mirror from the protected side undoes the other side's edit (to its trash,
                // no conflict there); every other mode keeps it as a live file.
                let mirror_from_protected =
                    matches!((mode, protect), ("std", "source") | ("dts", "destination"));
                if !mirror_from_protected {
                    assert!(live.iter().any(|c| c == other), "{case}: {live:?}");
                }
            }
        }
    }
}

/// Writes `body` to `path` on the Apache WebDAV test server with a plain HTTP PUT.
#[cfg(feature = "webdav")]
fn dav_put(authority: &str, path: &str, body: &str) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(authority).unwrap();
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Basic ZGF2OmRhdnBhc3M=\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 20"), "{reply}");
}

/// `check` by size only (Apache WebDAV) now reads the pair's base, and reports a file
/// "changed on the source since the last sync" — but when *both* sides changed the file
/// since the last sync, at the same size, it says "equal" (exit 0), although the two contents
/// differ and `sync --dry-run` on the same pair reports a conflict. The base it reads says
/// plainly that both copies moved away from the synced version.
#[cfg(feature = "webdav")]
#[test]
fn check_by_size_does_not_call_equal_a_file_changed_on_both_sides() {
    let Ok(base) = std::env::var("SYNCENGINE_TEST_WEBDAV_APACHE") else {
        eprintln!("SYNCENGINE_TEST_WEBDAV_APACHE unset: the Apache WebDAV server is not running");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    let unique = t.file_name().unwrap().to_string_lossy();
    let folder = format!("rt17-{}", unique.trim_start_matches('.'));
    let dav = format!("webdav://dav:davpass@{authority}/{folder}");
    fs::create_dir_all(t.join("a")).unwrap();
    fs::write(t.join("a/f"), "aaaa").unwrap();
    let (code, out, err) = run_in(t, &["sync", "a", &dav, "-q", "--state-dir=st"]);
    assert_eq!(code, Some(0), "{out}{err}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    dav_put(authority, &format!("/{folder}/f"), "cccc");
    fs::write(t.join("a/f"), "bbbb").unwrap();
    let (code, out, err) = run_in(t, &["sync", "a", &dav, "--dry-run", "--state-dir=st"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 conflict"), "{out}");
    let (code, out, err) = run_in(t, &["check", "a", &dav, "--state-dir=st"]);
    assert_ne!(
        code,
        Some(0),
        "check called equal a file both sides changed (contents differ): {out}{err}"
    );
}

/// A two-way conflict with a `keep` loser (no protection): a real run with `--list` lists the
/// conflict and then the upload of the kept loser to the other side; the dry run's `--list`
/// (and its text listing) shows only the conflict, while its counts do include that upload
/// ("1 uploaded" with no upload listed). The listing and the counts of one dry run disagree.
#[test]
fn a_dry_runs_listing_holds_the_kept_losers_copy_its_counts_include() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    fs::create_dir_all(t.join("a")).unwrap();
    fs::write(t.join("a/f.txt"), "base").unwrap();
    let (code, out, err) = run_in(t, &["sync", "a", "b", "--state-dir=st", "-q"]);
    assert_eq!(code, Some(0), "{out}{err}");
    fs::write(t.join("a/f.txt"), "SOURCE-EDIT").unwrap();
    fs::write(t.join("b/f.txt"), "DESTINATION-EDIT, newer").unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    let file = fs::File::options().write(true).open(t.join("b/f.txt"));
    file.unwrap().set_modified(later).unwrap();
    let run = |dry: bool| {
        let mut args = vec!["sync", "a", "b", "--state-dir=st", "--json", "--list", "-q"];
        if dry {
            args.push("--dry-run");
        }
        let (code, out, err) = run_in(t, &args);
        assert_eq!(code, Some(0), "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let kinds: Vec<String> = v["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| format!("{} {}", a["action"], a["side"]))
            .collect();
        (kinds, v["uploaded"].as_u64().unwrap())
    };
    let planned = run(true);
    let done = run(false);
    assert_eq!(done.1, 1, "{done:?}");
    assert_eq!(
        planned, done,
        "dry run (actions, uploaded) vs real run: the dry run counts an upload it does not list"
    );
}

/// An `--exclude` pattern for conflict copies (a natural way to keep them on the side that
/// made them): the kept loser `f.conflict-…-source.txt` is excluded on both sides, yet the run
/// copies it to the destination — README: "A filtered path is never copied". The same with
/// `--include f.txt`, which the conflict copy does not match.
#[test]
fn an_excluded_conflict_copy_is_not_copied_to_the_other_side() {
    for filter in [["--exclude", "*.conflict-*"], ["--include", "f.txt"]] {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        fs::create_dir_all(t.join("a")).unwrap();
        fs::write(t.join("a/f.txt"), "base").unwrap();
        let mut args = vec!["sync", "a", "b", "--state-dir=st", "-q"];
        args.extend(filter);
        let (code, out, err) = run_in(t, &args);
        assert_eq!(code, Some(0), "{out}{err}");
        fs::write(t.join("a/f.txt"), "SOURCE-EDIT").unwrap();
        fs::write(t.join("b/f.txt"), "DESTINATION-EDIT, newer").unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        let file = fs::File::options().write(true).open(t.join("b/f.txt"));
        file.unwrap().set_modified(later).unwrap();
        let (code, out, err) = run_in(t, &args);
        assert_eq!(code, Some(0), "{out}{err}");
        let on_b: Vec<String> = tree(&t.join("b"))
            .into_iter()
            .filter(|p| p.contains(".conflict-"))
            .collect();
        assert!(
            on_b.is_empty(),
            "{filter:?}: the filtered conflict copy was copied to the destination: {on_b:?}"
        );
    }
}

/// Under `--protect source` nothing is written under the protected root's `.syncengine/`
/// folder (README), and a `--backup-dir` there is refused ("never written (not even its
/// .syncengine/ folder)"); a `--log-file` there is accepted and written into the protected
/// root on every run.
#[test]
fn a_log_file_inside_a_protected_roots_syncengine_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    fs::create_dir_all(t.join("a/.syncengine")).unwrap();
    fs::write(t.join("a/f"), "1").unwrap();
    let mut args = vec!["sync", "a", "b", "--state-dir=st", "--mode", "sb"];
    args.extend(["--protect", "source", "-q"]);
    let mut with_backup = args.clone();
    with_backup.extend(["--backup-dir", "a/.syncengine/bk"]);
    let (code, out, err) = run_in(t, &with_backup);
    assert_eq!(code, Some(2), "{out}{err}");
    args.extend(["--log-file", "a/.syncengine/sync.log"]);
    let (code, out, err) = run_in(t, &args);
    assert!(
        !t.join("a/.syncengine/sync.log").exists(),
        "exit {code:?}: the log was written into the protected source: {out}{err}"
    );
    assert_eq!(code, Some(2), "{out}{err}");
}

/// A `--log-file` inside a synced root is refused (redteam16) — but not when given as a
/// symlink whose target inside the root does not exist yet (a dangling link: the check cannot
/// resolve it, the open follows it). A mirror run then created the log inside the destination
/// and moved it to the trash as an extra file while writing it (`1 deleted`), and as the link
/// dangles again, every run does the same: one more trashed log per run, no log where the
/// user looks.
#[cfg(unix)]
#[test]
fn a_log_file_given_as_a_symlink_into_a_synced_root_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    fs::create_dir_all(t.join("a")).unwrap();
    for i in 1..=3 {
        fs::write(t.join(format!("a/f{i}")), "x").unwrap();
    }
    let args = ["sync", "a", "b", "--state-dir=st", "--mode", "std", "-q"];
    let (code, out, err) = run_in(t, &args);
    assert_eq!(code, Some(0), "{out}{err}");
    std::os::unix::fs::symlink("b/sync.log", t.join("loglink")).unwrap();
    let mut with_log = args.to_vec();
    with_log.extend(["--log-file", "loglink", "--json"]);
    let (code, out, err) = run_in(t, &with_log);
    let trashed: Vec<String> = tree(&t.join("b/.syncengine"))
        .into_iter()
        .filter(|p| p.ends_with("sync.log"))
        .collect();
    assert!(
        trashed.is_empty(),
        "exit {code:?}: the run trashed its own log in the destination {trashed:?}: {out}{err}"
    );
    assert_eq!(code, Some(2), "{out}{err}");
}

/// Two-way under `--protect source`, the destination emptied: the empty-side stop says "re-run
/// with --force in two-way: that deletes the source's copies too (they go to its trash)". The
/// source is protected: `--force` deletes nothing there, counts the deletes as `protected` and
/// records nothing, so every later run stops again with the same advice.
#[test]
fn the_empty_side_stop_under_protect_does_not_promise_deletes_on_the_protected_side() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    fs::create_dir_all(t.join("a")).unwrap();
    fs::write(t.join("a/f"), "1").unwrap();
    fs::write(t.join("a/g"), "2").unwrap();
    let args = ["sync", "a", "b", "--state-dir=st", "--protect", "source"];
    let (code, out, err) = run_in(t, &args);
    assert_eq!(code, Some(0), "{out}{err}");
    fs::remove_file(t.join("b/f")).unwrap();
    fs::remove_file(t.join("b/g")).unwrap();
    let (code, stop_out, stop_err) = run_in(t, &args);
    assert_eq!(code, Some(3), "{stop_out}{stop_err}");
    let mut forced = args.to_vec();
    forced.push("--force");
    let (code, out, err) = run_in(t, &forced);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        t.join("a/f").exists(),
        "--force deleted on the protected source"
    );
    assert!(
        !stop_err.contains("deletes the source's copies"),
        "the stop promises what --force does not do under --protect source: {stop_err}\n\
         the forced run: {out}{err}"
    );
}
