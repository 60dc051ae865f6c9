//! What `syncengine sync` shows (issue 10, "see what happens"): the dry run's listing, `-v`
//! lines, `--log-file`, `--json` with `error_list` and `--list`, JSON for runs that stop
//! before planning, failures summarised by cause, `--stats`, `--progress` without a
//! terminal, and the summary's conflict paths and trash counts. All on the built binary,
//! with stdout and stderr piped (never a terminal).
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_syncengine");

struct Fixture {
    _tmp: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
    state: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, state) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("state"),
        );
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

    fn cmd(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("sync")
            .arg(&self.a)
            .arg(&self.b)
            .arg("--state-dir")
            .arg(&self.state)
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    fn run_expect(&self, extra: &[&str], code: i32) -> Output {
        let out = self.cmd(extra).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "args {extra:?}\nstdout: {}\nstderr: {}",
            stdout_of(&out),
            stderr_of(&out)
        );
        out
    }
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exactly one line on stdout, parsed as one JSON object.
fn json_of(out: &Output) -> Value {
    let stdout = stdout_of(out);
    assert_eq!(stdout.lines().count(), 1, "one line on stdout: {stdout:?}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(v.is_object(), "{v}");
    v
}

/// Writes `content` at `rel` below `root` with a modification time `age` seconds ago.
fn write_aged(root: &Path, rel: &str, content: &str, age: u64) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(age))
        .unwrap();
}

fn write(root: &Path, rel: &str, content: &str) {
    write_aged(root, rel, content, 0);
}

fn assert_no_escapes(what: &str, bytes: &[u8]) {
    assert!(
        !bytes.contains(&0x1b),
        "{what} holds an escape code: {}",
        String::from_utf8_lossy(bytes)
    );
}

/// A synced pair, then one change of every kind: an upload, a download, a rename on the
/// source (mirrored on the destination), a delete on each side, a keep-both conflict.
fn every_kind() -> Fixture {
    let f = Fixture::new();
    for i in 0..10 {
        write_aged(&f.a, &format!("keep/f{i}.txt"), "keep", 100);
    }
    write_aged(&f.a, "old-name.txt", "renamed content", 100);
    write_aged(&f.a, "gone-from-source.txt", "x", 100);
    write_aged(&f.a, "gone-from-destination.txt", "y", 100);
    write_aged(&f.a, "notes.txt", "base", 100);
    f.run_expect(&["-q"], 0);
    write(&f.a, "new-on-source.txt", "up");
    write(&f.b, "new-on-destination.txt", "down");
    std::fs::rename(f.a.join("old-name.txt"), f.a.join("new-name.txt")).unwrap();
    std::fs::remove_file(f.a.join("gone-from-source.txt")).unwrap();
    std::fs::remove_file(f.b.join("gone-from-destination.txt")).unwrap();
    write_aged(&f.a, "notes.txt", "source edit", 10);
    write_aged(&f.b, "notes.txt", "destination edit", 20);
    f
}

#[test]
fn a_dry_run_lists_every_action_grouped_then_the_summary() {
    let f = every_kind();
    let out = f.run_expect(&["--dry-run", "--conflict", "keep-both"], 0);
    let stdout = stdout_of(&out);
    let want = "\
would upload to the destination (1):
  new-on-source.txt
would download to the source (1):
  new-on-destination.txt
would rename (1):
  on the destination: old-name.txt → new-name.txt
conflicts (1):
  notes.txt: changed on both sides; both kept: the source's as \
notes.conflict-YYYYMMDDTHHMMSSZ-source.txt, the destination's as \
notes.conflict-YYYYMMDDTHHMMSSZ-destination.txt
would delete on the source (1):
  gone-from-destination.txt
would delete on the destination (1):
  gone-from-source.txt
dry run, nothing changed; would sync: ";
    assert!(stdout.starts_with(want), "{stdout}");
    assert!(
        stdout.trim_end().ends_with("; conflicts: notes.txt"),
        "{stdout}"
    );
    assert_no_escapes("stdout", &out.stdout);
    assert_no_escapes("stderr", &out.stderr);
    // Nothing changed.
    assert!(f.b.join("old-name.txt").exists() && !f.b.join("new-name.txt").exists());

    // A winner: the loser's conflict name, on its side.
    let out = f.run_expect(&["--dry-run", "--conflict", "source-wins"], 0);
    assert!(
        stdout_of(&out).contains(
            "  notes.txt: changed on both sides; the source's version wins, the \
             destination's is kept as notes.conflict-YYYYMMDDTHHMMSSZ-destination.txt\n"
        ),
        "{}",
        stdout_of(&out)
    );
    let out = f.run_expect(
        &[
            "--dry-run",
            "--conflict",
            "source-wins",
            "--conflict-loser",
            "delete",
        ],
        0,
    );
    assert!(
        stdout_of(&out).contains(
            "  notes.txt: changed on both sides; the source's version wins, the \
             destination's goes to the trash\n"
        ),
        "{}",
        stdout_of(&out)
    );
    // -q lists nothing.
    let out = f.run_expect(&["--dry-run", "-q"], 0);
    assert!(out.stdout.is_empty(), "{}", stdout_of(&out));
}

#[test]
fn json_list_holds_every_action_in_one_object() {
    let f = every_kind();
    let out = f.run_expect(
        &["--dry-run", "--json", "--list", "--conflict", "keep-both"],
        0,
    );
    let v = json_of(&out);
    let actions = v["actions"].as_array().unwrap();
    let mut got: Vec<(String, String, String)> = actions
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_owned(),
                a["side"].as_str().unwrap().to_owned(),
                a["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let want = [
        ("conflict", "both", "notes.txt"),
        ("delete", "destination", "gone-from-source.txt"),
        ("delete", "source", "gone-from-destination.txt"),
        ("download", "source", "new-on-destination.txt"),
        ("rename", "destination", "new-name.txt"),
        ("upload", "destination", "new-on-source.txt"),
    ]
    .map(|(a, s, p)| (a.to_owned(), s.to_owned(), p.to_owned()));
    assert_eq!(got, want, "{v}");
    let rename = actions.iter().find(|a| a["action"] == "rename").unwrap();
    assert_eq!(rename["from"], "old-name.txt");
    let conflict = actions.iter().find(|a| a["action"] == "conflict").unwrap();
    assert_eq!(conflict["winner"], Value::Null);
    assert_eq!(conflict["kept_as"].as_array().unwrap().len(), 2, "{v}");
    // The counts follow, as without --list.
    assert_eq!(v["uploaded"], 2, "{v}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["errors"], 0);
    assert_eq!(v["error_list"], serde_json::json!([]));

    // A real run lists what it did, the conflict with the names it gave.
    let out = f.run_expect(&["--json", "--list", "--conflict", "keep-both"], 0);
    let v = json_of(&out);
    let actions = v["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 6, "{v}");
    let conflict = actions.iter().find(|a| a["action"] == "conflict").unwrap();
    for kept in conflict["kept_as"].as_array().unwrap() {
        let name = kept["path"].as_str().unwrap();
        assert!(!name.contains("YYYY"), "{v}");
        let root = if kept["side"] == "source" { &f.a } else { &f.b };
        assert!(
            root.join(name).exists(),
            "{name} is not on the {}",
            kept["side"]
        );
    }
    // --list needs --json.
    f.run_expect(&["--list"], 2);
}

#[test]
fn verbose_prints_each_action_and_the_log_file_gets_it_without_escapes() {
    let f = every_kind();
    let log = f.state.parent().unwrap().join("run.log");
    let log_arg = log.to_str().unwrap();
    let out = f.run_expect(&["-v", "--log-file", log_arg], 0);
    let err = stderr_of(&out);
    for line in [
        "uploaded new-on-source.txt",
        "downloaded new-on-destination.txt",
        "renamed on the destination: old-name.txt → new-name.txt",
        "deleted on the destination: gone-from-source.txt",
        "deleted on the source: gone-from-destination.txt",
        "conflict notes.txt: changed on both sides; the source's version wins, the \
         destination's is kept as notes.conflict-",
    ] {
        assert!(err.contains(line), "missing {line:?} in\n{err}");
    }
    assert_no_escapes("stderr with -v", &out.stderr);
    assert_no_escapes("stdout", &out.stdout);
    let logged = std::fs::read(&log).unwrap();
    assert_no_escapes("the log file", &logged);
    let logged = String::from_utf8(logged).unwrap();
    assert!(
        logged.contains("Z uploaded new-on-source.txt\n"),
        "{logged}"
    );
    assert!(logged.contains("Z synced: "), "{logged}");

    // Whatever the verbosity: -q writes the log too, and prints nothing.
    write(&f.a, "later.txt", "later");
    let out = f.run_expect(&["-q", "--log-file", log_arg], 0);
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("Z uploaded later.txt\n"), "{logged}");
    assert_eq!(
        logged.matches("Z synced: ").count(),
        2,
        "appended: {logged}"
    );

    // Without -v, no action lines on stderr.
    write(&f.a, "quiet.txt", "q");
    let out = f.run_expect(&[], 0);
    assert!(!stderr_of(&out).contains("uploaded"), "{}", stderr_of(&out));

    // A log file that cannot be opened is a usage error.
    let bad = f.state.join("no/such/dir/run.log");
    f.run_expect(&["--log-file", bad.to_str().unwrap()], 2);
}

#[test]
fn progress_without_a_terminal_prints_plain_status_lines() {
    let f = Fixture::new();
    for i in 0..5 {
        write(&f.a, &format!("f{i}"), "x");
    }
    let out = f.run_expect(&["--progress", "--json"], 0);
    assert_no_escapes("stderr with --progress", &out.stderr);
    json_of(&out);
}

/// Runs the binary where a folder's mode really stops writes: as is for an ordinary user; as
/// root through `setpriv` without the capabilities that bypass file permissions. `None` (with
/// a note) as root without `setpriv`.
fn run_without_dac_override(f: &Fixture, extra: &[&str]) -> Option<Output> {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|ids| ids.split_whitespace().next() == Some("0"));
    let mut c = if root {
        if !Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            eprintln!("skipped: running as root without `setpriv`");
            return None;
        }
        let mut c = Command::new("setpriv");
        c.args([
            "--bounding-set",
            "-dac_override,-dac_read_search",
            "--",
            BIN,
        ]);
        c
    } else {
        Command::new(BIN)
    };
    c.arg("sync")
        .arg(&f.a)
        .arg(&f.b)
        .arg("--state-dir")
        .arg(&f.state)
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    Some(c.output().unwrap())
}

/// Gives a folder back its mode when dropped, so the temporary tree can be removed.
struct Unlock(PathBuf);

impl Drop for Unlock {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

/// A read-only destination folder: `n` new files for it on the source, `other.txt` elsewhere.
fn read_only_destination(n: usize) -> (Fixture, Unlock) {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    write(&f.a, "ro/first.txt", "1");
    write(&f.a, "other0.txt", "o");
    f.run_expect(&["-q"], 0);
    for i in 0..n {
        write(&f.a, &format!("ro/f{i:02}.txt"), "new");
    }
    write(&f.a, "other1.txt", "o");
    let ro = f.b.join("ro");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    (f, Unlock(ro))
}

#[test]
fn many_failures_of_one_cause_are_one_line_and_json_lists_each() {
    let (f, _unlock) = read_only_destination(12);
    let Some(out) = run_without_dac_override(&f, &[]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one line for one cause: {err}");
    let line = lines[0];
    assert!(line.starts_with("error: 12 files failed: "), "{line}");
    // The first three to fail (they run in parallel), then the count of the rest.
    let named = line.rsplit_once(" (").unwrap().1;
    assert!(named.ends_with(" and 9 more)"), "{line}");
    assert_eq!(named.matches("ro/f").count(), 3, "{line}");
    assert!(line.to_lowercase().contains("permission denied"), "{line}");
    assert!(f.b.join("other1.txt").exists(), "the rest synced");
    assert!(stdout_of(&out).contains("12 errors"), "{}", stdout_of(&out));

    // -v: each failure once, as it happens, and no summary line after them.
    let Some(out) = run_without_dac_override(&f, &["-v"]) else {
        return;
    };
    let err = stderr_of(&out);
    for i in 0..12 {
        let path = format!("ro/f{i:02}.txt");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.contains(&path) && l.to_lowercase().contains("permission denied"))
            .collect();
        assert_eq!(lines.len(), 1, "{path} once in {err}");
        assert!(lines[0].starts_with(&format!("error: {path}: ")), "{err}");
    }
    assert!(!err.contains("files failed"), "{err}");

    // --json: the count stays, error_list names each.
    let Some(out) = run_without_dac_override(&f, &["--json"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    assert_eq!(v["errors"], 12, "{v}");
    let list = v["error_list"].as_array().unwrap();
    assert_eq!(list.len(), 12, "{v}");
    let mut paths: Vec<&str> = list.iter().map(|e| e["path"].as_str().unwrap()).collect();
    paths.sort_unstable();
    assert_eq!(paths[0], "ro/f00.txt");
    for e in list {
        assert_eq!(e["side"], "destination", "{e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("permission denied"),
            "{e}"
        );
    }
}

#[test]
fn one_failure_is_printed_once_with_its_path() {
    let (f, _unlock) = read_only_destination(1);
    let Some(out) = run_without_dac_override(&f, &[]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("ro/f00.txt")).collect();
    assert_eq!(lines.len(), 1, "printed once: {err}");
    assert!(lines[0].starts_with("error: ro/f00.txt: "), "{err}");
}

#[test]
fn runs_that_stop_before_planning_still_print_one_json_object() {
    let f = Fixture::new();
    for i in 0..10 {
        write(&f.a, &format!("f{i}.txt"), "x");
    }
    f.run_expect(&["-q"], 0);
    for i in 0..10 {
        std::fs::remove_file(f.a.join(format!("f{i}.txt"))).unwrap();
    }
    // A safety stop (an emptied side).
    let out = f.run_expect(&["--json"], 3);
    let v = json_of(&out);
    assert_eq!(v["exit_status"], 3, "{v}");
    assert!(v["error"].as_str().unwrap().contains("empty"), "{v}");
    // With --list the object has its (empty) actions too.
    let v = json_of(&f.run_expect(&["--json", "--list"], 3));
    assert_eq!(v["actions"], serde_json::json!([]), "{v}");
    assert_eq!(v["exit_status"], 3);
    // Usage errors: a bad value, an unknown flag, a bad location.
    for extra in [
        &["--json", "--mode", "sideways"][..],
        &["--json", "--no-such-flag"],
        &["--json", "--backup-dir", "nope://x"],
    ] {
        let out = f.run_expect(extra, 2);
        let v = json_of(&out);
        assert_eq!(v["exit_status"], 2, "{extra:?}: {v}");
        assert!(!v["error"].as_str().unwrap().is_empty(), "{v}");
    }
    // Without --json, stdout stays empty.
    let out = f.run_expect(&[], 3);
    assert!(out.stdout.is_empty());
    // `cleanup` has no --json: its usage error prints no JSON.
    let out = Command::new(BIN)
        .args(["cleanup", "--json"])
        .arg(&f.a)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{}", stdout_of(&out));
}

#[test]
fn stats_prints_status_lines_while_the_live_display_is_off() {
    let f = Fixture::new();
    for i in 0..1500 {
        write(&f.a, &format!("d{}/f{i}.bin", i % 20), "some content");
    }
    let out = f.run_expect(&["--stats", "10ms", "--transfers", "1"], 0);
    let err = stderr_of(&out);
    let stats: Vec<&str> = err.lines().filter(|l| l.starts_with("stats: ")).collect();
    assert!(!stats.is_empty(), "{err}");
    for l in &stats {
        assert!(
            l.ends_with("listing and planning") || l.contains(" actions done, "),
            "{l}"
        );
    }
    // Not a duration: a usage error.
    f.run_expect(&["--stats", "often"], 2);
}

#[test]
fn the_summary_names_conflicts_and_what_went_to_the_trash() {
    let f = Fixture::new();
    for i in 0..7 {
        write_aged(&f.a, &format!("c{i}.txt"), "base", 100);
    }
    for i in 0..10 {
        write_aged(&f.a, &format!("d{i}.txt"), "12345", 100);
    }
    f.run_expect(&["-q"], 0);
    for i in 0..7 {
        write_aged(&f.a, &format!("c{i}.txt"), "source", 10);
        write_aged(&f.b, &format!("c{i}.txt"), "destination", 20);
    }
    std::fs::remove_file(f.a.join("d0.txt")).unwrap();
    std::fs::remove_file(f.a.join("d1.txt")).unwrap();
    let out = f.run_expect(&[], 0);
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains("; conflicts: c0.txt, c1.txt, c2.txt, c3.txt, c4.txt and 2 more"),
        "{stdout}"
    );
    // The two deleted files (5 bytes each) went to the trash; the conflicts' losers were kept
    // under conflict names, not trashed.
    assert!(
        stdout.contains(", 2 files (10 B) moved to the trash"),
        "{stdout}"
    );
    let v = {
        std::fs::remove_file(f.a.join("d2.txt")).unwrap();
        json_of(&f.run_expect(&["--json"], 0))
    };
    assert_eq!(
        (v["trashed_files"].clone(), v["trashed_bytes"].clone()),
        (1.into(), 5.into())
    );
}

#[test]
fn help_documents_the_output_flags_with_examples() {
    let out = Command::new(BIN).args(["sync", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--list",
        "--log-file <FILE>",
        "--progress",
        "--stats <DURATION>",
        "error_list",
        "trashed_files",
        "exit_status",
        "--dry-run --json --list",
        "--log-file ~/sync.log --stats 5m",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[test]
fn a_type_change_is_listed_as_a_conflict_with_the_files_kept_name() {
    let f = Fixture::new();
    write_aged(&f.a, "t", "file", 100);
    for i in 0..6 {
        write_aged(&f.a, &format!("k{i}"), "k", 100);
    }
    f.run_expect(&["-q"], 0);
    write_aged(&f.a, "t", "edited file", 10);
    std::fs::remove_file(f.b.join("t")).unwrap();
    write(&f.b, "t/inner.txt", "in");
    let out = f.run_expect(&["--dry-run"], 0);
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains(
            "conflicts (1):\n  t: a file on the source, a folder on the destination; the \
             folder takes the path, the file is kept as t.conflict-YYYYMMDDTHHMMSSZ-source\n"
        ),
        "{stdout}"
    );
    let out = f.run_expect(&["-v"], 0);
    let err = stderr_of(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("conflict t: "))
        .unwrap_or_else(|| panic!("{err}"));
    let kept = line.rsplit_once("kept as ").unwrap().1;
    assert_eq!(
        std::fs::read_to_string(f.a.join(kept)).unwrap(),
        "edited file"
    );
}

/// A log that cannot be written (a full disk) is said, and the run exits 1: a cron job that
/// relies on its log must not go on with an incomplete one unnoticed. The sync itself is done.
#[test]
fn a_log_file_that_cannot_be_written_is_an_error_of_the_run() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let f = Fixture::new();
    write(&f.a, "a.txt", "a");
    let out = f.run_expect(&["--log-file", "/dev/full"], 1);
    let err = stderr_of(&out);
    assert!(err.contains("/dev/full"), "{err}");
    assert!(err.contains("incomplete"), "{err}");
    assert_eq!(std::fs::read_to_string(f.b.join("a.txt")).unwrap(), "a");
}
