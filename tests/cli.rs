//! End-to-end tests of the `syncengine` binary on local folders.
//!
//! Every test runs the built binary on its own temporary folders with its own `--state-dir`.
#![cfg(feature = "cli")]
// Test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_syncengine");

/// The keys of the `--json` object, in the CLI contract's order.
const JSON_KEYS: [&str; 19] = [
    "uploaded",
    "downloaded",
    "deleted_source",
    "deleted_destination",
    "renamed_source",
    "renamed_destination",
    "conflicts",
    "skipped",
    "errors",
    "unknown",
    "protected",
    "bytes_uploaded",
    "bytes_downloaded",
    "trashed_files",
    "trashed_bytes",
    "dry_run",
    "warnings",
    "conflict_paths",
    "error_list",
];

/// A source folder `a`, a destination folder `b` and a state folder, all temporary.
struct Fixture {
    _tmp: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
    state: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        let state = tmp.path().join("state");
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

    fn root(&self) -> &Path {
        self.a.parent().unwrap()
    }

    /// `syncengine sync a b --state-dir state <extra>`.
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

    fn run(&self, extra: &[&str]) -> Output {
        self.cmd(extra).output().unwrap()
    }

    /// Runs and asserts the exit status, showing stderr when it differs.
    fn run_expect(&self, extra: &[&str], code: i32) -> Output {
        let out = self.run(extra);
        assert_eq!(
            out.status.code(),
            Some(code),
            "args {extra:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs with `--json`, asserts exit 0 and returns the parsed object.
    fn run_json(&self, extra: &[&str]) -> Value {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let out = self.run_expect(&args, 0);
        json_of(&out)
    }
}

fn json_of(out: &Output) -> Value {
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "exactly one line on stdout: {stdout:?}"
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}

/// A run that failed or stopped still prints one JSON object with --json: its error and
/// exit status.
fn assert_json_failure(out: &Output, code: u64) {
    let v = json_of(out);
    assert_eq!(v["exit_status"], code, "{v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(root: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// Every file below `root` (relative path → content), leaving out the root's `.syncengine/`
/// folder (trash) and in-progress temp files, which are never synced (tests that care about
/// leftover temp files look for them with [`all_paths`]).
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == ".syncengine"
                || e.file_name()
                    .to_string_lossy()
                    .starts_with(".syncengine-tmp-")
            {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Asserts two trees hold the same files with the same contents, naming the differences
/// (not dumping the contents).
fn assert_same_tree(a: &Path, b: &Path, what: &str) {
    let (ta, tb) = (tree(a), tree(b));
    let only_a: Vec<&String> = ta.keys().filter(|k| !tb.contains_key(*k)).collect();
    let only_b: Vec<&String> = tb.keys().filter(|k| !ta.contains_key(*k)).collect();
    let differ: Vec<&String> = ta
        .iter()
        .filter(|(k, v)| tb.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        only_a.is_empty() && only_b.is_empty() && differ.is_empty(),
        "{what}: only in {}: {only_a:?}; only in {}: {only_b:?}; contents differ: {differ:?}",
        a.display(),
        b.display()
    );
}

fn names(root: &Path) -> BTreeSet<String> {
    tree(root).into_keys().collect()
}

/// Every path below `root`, `.syncengine/` included, for leftovers such as temp files.
fn all_paths(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            out.push(e.path());
        }
    }
    out
}

/// The state folder's files and contents. Lock files are compared by name only: a run
/// writes its pid into the lock it holds, which is not pair state.
fn state_snapshot(state: &Path) -> BTreeMap<String, Vec<u8>> {
    all_paths(state)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p
                .strip_prefix(state)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let content = if name.ends_with(".lock") {
                Vec::new()
            } else {
                std::fs::read(&p).unwrap()
            };
            (name, content)
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn help_mentions_every_flag_modes_and_exit_codes() {
    let out = Command::new(BIN).args(["sync", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--mode",
        "--initial",
        "--conflict ",
        "--conflict-loser",
        "--exclude",
        "--state-dir",
        "--dry-run",
        "--json",
        "--transfers",
        "--max-delete",
        "--force",
        "--checksum",
        "--no-trash",
        "--backup-dir",
        "--trash-keep",
        "--trash-dir",
        "forever",
        "copy and a delete request",
        "--sort-listings",
        "--accept-new-root",
        "--verbose",
        "--quiet",
        "SOURCE",
        "DESTINATION",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    for mode in SYNC_MODES {
        assert!(help.contains(mode), "--help lacks mode {mode}");
    }
    for section in [
        "EXAMPLES",
        "EXIT STATUS",
        "CREDENTIALS",
        "AWS_",
        "SYNCENGINE_STATE_DIR",
    ] {
        assert!(help.contains(section), "--help lacks {section}");
    }
    let top = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(top.status.code(), Some(0));
    assert!(String::from_utf8(top.stdout).unwrap().contains("sync"));
}

const SYNC_MODES: [&str; 5] = [
    "two-way",
    "source-to-destination",
    "source-backup",
    "destination-to-source",
    "destination-backup",
];

#[test]
fn usage_errors_exit_2_and_touch_nothing() {
    let f = Fixture::new();
    write(&f.a, "x.txt", "x");

    let out = f.run_expect(&["--mode", "sideways"], 2);
    let err = stderr_of(&out);
    for valid in SYNC_MODES {
        assert!(err.contains(valid), "the error should list {valid}: {err}");
    }
    f.run_expect(&["--bogus-flag"], 2);
    f.run_expect(&["--conflict", "coin-toss"], 2);
    f.run_expect(&["--max-delete", "101"], 2);
    f.run_expect(&["--transfers", "0"], 2);
    f.run_expect(&["-v", "-q"], 2);

    let run = |src: &str, dst: &str| {
        Command::new(BIN)
            .args(["sync", src, dst, "--state-dir"])
            .arg(&f.state)
            .output()
            .unwrap()
    };
    let a = f.a.to_str().unwrap();
    let out = run(a, "ftp://127.0.0.1/x");
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("ftp://"), "{}", stderr_of(&out));

    let out = run("nosuch://bucket", a);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));

    // Nothing was synced and no state was written by any of these.
    assert!(names(&f.b).is_empty());
    assert!(state_snapshot(&f.state).is_empty());
}

// Under --all-features this is compiled out; scripts/test.sh also runs the default features.
#[cfg(not(feature = "s3"))]
#[test]
fn s3_without_its_feature_is_a_usage_error_naming_the_feature() {
    let f = Fixture::new();
    let out = Command::new(BIN)
        .args([
            "sync",
            f.a.to_str().unwrap(),
            "s3://bucket/prefix",
            "--state-dir",
        ])
        .arg(&f.state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("s3:// needs the \"s3\" feature: cargo install syncengine --features s3"),
        "{err}"
    );
}

#[test]
fn json_has_exactly_the_contract_keys_with_the_right_types() {
    let f = Fixture::new();
    write(&f.a, "one.txt", "hello");
    write(&f.a, "dir/two.txt", "world!");
    write(&f.b, "three.txt", "from b");
    let v = f.run_json(&[]);
    let obj = v.as_object().unwrap();
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, JSON_KEYS.into_iter().collect::<BTreeSet<_>>());
    for k in &JSON_KEYS[..15] {
        assert!(obj[*k].is_u64(), "{k} should be a count: {v}");
    }
    assert_eq!(obj["dry_run"], Value::Bool(false));
    for k in ["warnings", "conflict_paths"] {
        let arr = obj[k]
            .as_array()
            .unwrap_or_else(|| panic!("{k} should be an array"));
        assert!(arr.iter().all(Value::is_string), "{k}: {v}");
    }
    assert_eq!(obj["uploaded"], 2);
    assert_eq!(obj["downloaded"], 1);
    assert_eq!(obj["bytes_uploaded"], 11);
    assert_eq!(obj["bytes_downloaded"], 6);
    assert_eq!(obj["errors"], 0);
    assert_same_tree(&f.a, &f.b, "after the run");
}

#[test]
fn human_summary_and_exit_0_on_success() {
    let f = Fixture::new();
    write(&f.a, "hello.txt", "hi\n");
    let out = f.run_expect(&[], 0);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("synced: 1 uploaded, 0 downloaded"),
        "{stdout}"
    );
    assert_eq!(std::fs::read(f.b.join("hello.txt")).unwrap(), b"hi\n");

    // -q: nothing on stdout.
    let out = f.run_expect(&["-q"], 0);
    assert!(out.stdout.is_empty());
}

#[test]
fn a_missing_destination_folder_is_created_but_not_in_a_dry_run() {
    let f = Fixture::new();
    write(&f.a, "x.txt", "x");
    let dst = f.root().join("new/dest");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .arg("sync")
            .arg(&f.a)
            .arg(&dst)
            .arg("--state-dir")
            .arg(&f.state)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(!dst.exists());
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(std::fs::read(dst.join("x.txt")).unwrap(), b"x");
}

/// Base: f1..f8 on both sides. Then: `s_new` added at the source, `d_new` added at the
/// destination, `f1` deleted at the source, `f2` deleted at the destination. Runs `mode` and
/// checks both sides against the seed's scenario table; `f3`..`f8` stay on both sides.
fn mode_case(mode: &str, want_a: &[&str], want_b: &[&str]) {
    let f = Fixture::new();
    for i in 1..=8 {
        write(&f.a, &format!("f{i}.txt"), format!("base {i}"));
    }
    f.run_expect(&["--mode", "two-way"], 0);
    assert_same_tree(&f.a, &f.b, "base sync");

    write(&f.a, "s_new.txt", "added at source");
    write(&f.b, "d_new.txt", "added at destination");
    std::fs::remove_file(f.a.join("f1.txt")).unwrap();
    std::fs::remove_file(f.b.join("f2.txt")).unwrap();

    f.run_expect(&["--mode", mode], 0);

    let unchanged: Vec<String> = (3..=8).map(|i| format!("f{i}.txt")).collect();
    for (side, root, want) in [("source", &f.a, want_a), ("destination", &f.b, want_b)] {
        let mut want = set(want);
        want.extend(unchanged.iter().cloned());
        assert_eq!(names(root), want, "mode {mode}: {side}");
    }
    // Whatever exists on both sides has the same content.
    let (ta, tb) = (tree(&f.a), tree(&f.b));
    for (k, v) in &ta {
        if let Some(w) = tb.get(k) {
            assert!(v == w, "mode {mode}: {k} differs");
        }
    }
}

#[test]
fn two_way_scenarios() {
    // Adds both ways, deletes both ways.
    mode_case(
        "two-way",
        &["s_new.txt", "d_new.txt"],
        &["s_new.txt", "d_new.txt"],
    );
}

#[test]
fn source_to_destination_scenarios() {
    // Upload the source add, delete the destination add, delete at destination what the
    // source deleted, re-upload what the destination deleted.
    mode_case("std", &["s_new.txt", "f2.txt"], &["s_new.txt", "f2.txt"]);
}

#[test]
fn source_backup_scenarios() {
    // Upload, download the destination add, keep the backup of the source delete,
    // re-upload the destination delete.
    mode_case(
        "sourceBackup",
        &["s_new.txt", "d_new.txt", "f2.txt"],
        &["s_new.txt", "d_new.txt", "f1.txt", "f2.txt"],
    );
}

#[test]
fn destination_to_source_scenarios() {
    // Delete the source add, download the destination add, re-download the source delete,
    // delete at source what the destination deleted.
    mode_case(
        "CLOUD_TO_LOCAL",
        &["d_new.txt", "f1.txt"],
        &["d_new.txt", "f1.txt"],
    );
}

#[test]
fn destination_backup_scenarios() {
    // Ignore the source add, download the destination add, re-download the source delete,
    // keep the source copy of the destination delete.
    mode_case(
        "db",
        &["s_new.txt", "d_new.txt", "f1.txt", "f2.txt"],
        &["d_new.txt", "f1.txt"],
    );
}

#[test]
fn dry_run_changes_nothing_and_predicts_the_real_run() {
    let f = Fixture::new();
    for i in 1..=6 {
        write(&f.a, &format!("f{i}.txt"), format!("base {i}"));
    }
    f.run_json(&[]);
    write(&f.a, "new_a.txt", "new on a");
    write(&f.b, "sub/new_b.txt", "new on b");
    write(&f.a, "f3.txt", "modified on a, longer");
    std::fs::remove_file(f.b.join("f4.txt")).unwrap();

    let before = (tree(&f.a), tree(&f.b), state_snapshot(&f.state));
    let dry = f.run_json(&["--dry-run"]);
    let after = (tree(&f.a), tree(&f.b), state_snapshot(&f.state));
    assert!(before.0 == after.0, "a dry run changed the source");
    assert!(before.1 == after.1, "a dry run changed the destination");
    assert_eq!(
        before.2.keys().collect::<Vec<_>>(),
        after.2.keys().collect::<Vec<_>>(),
        "a dry run added or removed state files"
    );
    for (k, v) in &before.2 {
        assert!(after.2[k] == *v, "a dry run changed the state file {k}");
    }
    assert_eq!(dry["dry_run"], Value::Bool(true));
    // A second dry run plans the same (it recorded nothing).
    let dry2 = f.run_json(&["--dry-run"]);
    assert_eq!(dry, dry2);

    let real = f.run_json(&[]);
    assert_eq!(real["dry_run"], Value::Bool(false));
    // A dry run moves nothing to the trash (its trash counts are 0, not a prediction).
    let predicted = |k: &&&str| !["dry_run", "trashed_files", "trashed_bytes"].contains(*k);
    for k in JSON_KEYS.iter().filter(predicted) {
        assert_eq!(dry[*k], real[*k], "{k}: dry {dry} vs real {real}");
    }
    assert_eq!(real["uploaded"], 2, "{real}");
    assert_eq!(real["downloaded"], 1, "{real}");
    assert_eq!(real["deleted_source"], 1, "{real}");
    assert_same_tree(&f.a, &f.b, "after the run");
}

#[test]
fn max_delete_stops_with_exit_3_and_force_overrides_it() {
    let f = Fixture::new();
    for i in 0..10 {
        write(&f.a, &format!("f{i}.txt"), format!("{i}"));
    }
    f.run_expect(&[], 0);
    for i in 0..8 {
        std::fs::remove_file(f.a.join(format!("f{i}.txt"))).unwrap();
    }
    let out = f.run_expect(&["--json"], 3);
    assert_json_failure(&out, 3);
    assert!(
        stderr_of(&out).contains("max-delete"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(names(&f.b).len(), 10, "nothing deleted on the destination");
    assert_eq!(names(&f.a).len(), 2, "nothing restored either");

    // A higher limit lets it through too, but check --force as the contract's override.
    f.run_expect(&["--force"], 0);
    assert_eq!(names(&f.b), set(&["f8.txt", "f9.txt"]));
}

#[test]
fn an_emptied_side_stops_with_exit_3() {
    let f = Fixture::new();
    for i in 0..10 {
        write(&f.a, &format!("f{i}.txt"), format!("{i}"));
    }
    f.run_expect(&[], 0);
    for i in 0..10 {
        std::fs::remove_file(f.a.join(format!("f{i}.txt"))).unwrap();
    }
    f.run_expect(&[], 3);
    // Even with max-delete out of the way, the empty-side rule stops it.
    let out = f.run_expect(&["--max-delete", "100"], 3);
    assert!(stderr_of(&out).contains("empty"), "{}", stderr_of(&out));
    assert_eq!(names(&f.b).len(), 10);
    f.run_expect(&["--max-delete", "100", "--force"], 0);
    assert!(names(&f.b).is_empty());
}

#[test]
fn a_replaced_root_exits_3_naming_both_ids_until_accepted() {
    let f = Fixture::new();
    for i in 0..10 {
        write(&f.a, &format!("f{i}.txt"), format!("{i}"));
    }
    f.run_expect(&[], 0);
    let recorded = std::fs::read_to_string(f.b.join(".syncengine/root-id")).unwrap();
    // Another folder takes the destination's place: six of the files, and an id of its own.
    std::fs::remove_dir_all(&f.b).unwrap();
    for i in 0..6 {
        write(&f.b, &format!("f{i}.txt"), format!("{i}"));
    }
    write(&f.b, ".syncengine/root-id", "0123456789abcdef\n");
    let out = f.run_expect(&["--json"], 3);
    assert_json_failure(&out, 3);
    let err = stderr_of(&out);
    assert!(err.contains(recorded.trim()), "{err}");
    assert!(err.contains("0123456789abcdef"), "{err}");
    assert!(err.contains("--accept-new-root destination"), "{err}");
    assert_eq!(names(&f.a).len(), 10, "the source lost files");
    assert_eq!(names(&f.b).len(), 6);
    // A dry run says the same and writes nothing.
    f.run_expect(&["--dry-run"], 3);

    let out = f.run_expect(&["--accept-new-root", "destination", "--json"], 0);
    let json = json_of(&out);
    assert_eq!(json["deleted_source"], 0);
    assert_eq!(json["deleted_destination"], 0);
    assert_eq!(json["uploaded"], 4);
    assert_same_tree(&f.a, &f.b, "after accepting the new root");
    // Recorded: the next run is an ordinary one.
    std::fs::remove_file(f.b.join("f0.txt")).unwrap();
    let json = json_of(&f.run_expect(&["--json"], 0));
    assert_eq!(json["deleted_source"], 1);
    assert!(!f.a.join("f0.txt").exists());

    let bad = f.run_expect(&["--accept-new-root", "sideways"], 2);
    assert!(stderr_of(&bad).contains("both"), "{}", stderr_of(&bad));
}

#[test]
fn a_held_pair_lock_makes_a_second_run_exit_3() {
    let f = Fixture::new();
    write(&f.a, "x.txt", "x");
    f.run_expect(&[], 0);
    let locks: Vec<PathBuf> = all_paths(&f.state)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "lock"))
        .collect();
    assert_eq!(locks.len(), 1, "one lock file per pair: {locks:?}");

    let held = File::options()
        .read(true)
        .write(true)
        .open(&locks[0])
        .unwrap();
    held.try_lock().unwrap();
    write(&f.a, "y.txt", "y");
    let out = f.run_expect(&[], 3);
    assert!(stderr_of(&out).contains("lock"), "{}", stderr_of(&out));
    assert!(!f.b.join("y.txt").exists());

    held.unlock().unwrap();
    f.run_expect(&[], 0);
    assert!(f.b.join("y.txt").exists());
}

#[test]
fn an_unreadable_intent_batch_exits_1_naming_the_state_file_and_changes_nothing() {
    let f = Fixture::new();
    write(&f.a, "edited.txt", "v1");
    write(&f.a, "deleted.txt", "deleted on the source later");
    f.run_expect(&[], 0);
    let dbs: Vec<PathBuf> = all_paths(&f.state)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        .collect();
    assert_eq!(dbs.len(), 1, "one state file per pair: {dbs:?}");
    let db = &dbs[0];
    // A batch of copy intents this syncengine cannot read (a damaged disk block, another
    // program writing the database).
    rusqlite::Connection::open(db)
        .unwrap()
        .execute(
            "INSERT INTO intent_batches(intents) VALUES ('not json')",
            [],
        )
        .unwrap();
    // Changes the run would sync if it went on: an edit, an addition, a deletion.
    write(&f.a, "edited.txt", "v2, edited on the source");
    write(&f.b, "added.txt", "added on the destination");
    std::fs::remove_file(f.a.join("deleted.txt")).unwrap();
    let (a_before, b_before) = (tree(&f.a), tree(&f.b));

    let out = f.run_expect(&["--json"], 1);
    assert_json_failure(&out, 1);
    let err = stderr_of(&out);
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("copy intents"), "{err}");
    assert!(err.contains("move the state file away"), "{err}");
    assert_eq!(tree(&f.a), a_before, "the source was changed");
    assert_eq!(tree(&f.b), b_before, "the destination was changed");

    // The way out the message names: with the state moved away, the next run syncs the pair
    // as its first, and every version is still there.
    let moved = f.root().join("moved-state");
    std::fs::create_dir(&moved).unwrap();
    for p in all_paths(&f.state) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(&*db.file_name().unwrap().to_string_lossy()) {
            std::fs::rename(&p, moved.join(&name)).unwrap();
        }
    }
    f.run_expect(&[], 0);
    assert_same_tree(&f.a, &f.b, "after starting afresh");
    let bodies: BTreeSet<Vec<u8>> = tree(&f.a).into_values().collect();
    for body in [
        "v1",
        "v2, edited on the source",
        "added on the destination",
        "deleted on the source later",
    ] {
        assert!(
            bodies.contains(body.as_bytes()),
            "{body:?} is gone: {:?}",
            names(&f.a)
        );
    }
}

#[test]
fn backup_dir_receives_deleted_files_per_side() {
    let f = Fixture::new();
    for i in 0..4 {
        write(&f.a, &format!("f{i}.txt"), format!("content {i}"));
    }
    f.run_expect(&[], 0);
    std::fs::remove_file(f.a.join("f0.txt")).unwrap();
    let backup = f.root().join("backup");
    f.run_expect(&["--backup-dir", backup.to_str().unwrap()], 0);
    assert!(!f.b.join("f0.txt").exists());
    let kept: Vec<PathBuf> = all_paths(&backup.join("destination"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "f0.txt"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), b"content 0");

    // A backup folder inside a synced root is refused.
    let inside = f.b.join("bak");
    f.run_expect(&["--backup-dir", inside.to_str().unwrap()], 2);
    // --no-trash and --backup-dir contradict each other.
    f.run_expect(&["--no-trash", "--backup-dir", backup.to_str().unwrap()], 2);
}

/// Every file below `dir` whose name is `name`, with its content.
fn found(dir: &Path, name: &str) -> Vec<Vec<u8>> {
    all_paths(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == name))
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

#[test]
fn trash_flags_no_trash_trash_dir_and_trash_keep() {
    let f = Fixture::new();
    for i in 0..6 {
        write(&f.a, &format!("f{i}.txt"), format!("content {i}"));
    }
    f.run_expect(&[], 0);

    // Default: the deleted file is in the destination's trash.
    std::fs::remove_file(f.a.join("f0.txt")).unwrap();
    f.run_expect(&[], 0);
    assert_eq!(
        found(&f.b.join(".syncengine/trash"), "f0.txt"),
        [b"content 0"]
    );

    // --trash-dir: in URL/destination/<stamp>/, not in the root's trash.
    let elsewhere = f.root().join("trash-elsewhere");
    std::fs::remove_file(f.a.join("f1.txt")).unwrap();
    f.run_expect(&["--trash-dir", elsewhere.to_str().unwrap()], 0);
    assert_eq!(
        found(&elsewhere.join("destination"), "f1.txt"),
        [b"content 1"]
    );
    assert!(found(&f.b.join(".syncengine/trash"), "f1.txt").is_empty());

    // --no-trash: gone outright.
    std::fs::remove_file(f.a.join("f2.txt")).unwrap();
    f.run_expect(&["--no-trash"], 0);
    assert!(!f.b.join("f2.txt").exists());
    assert!(
        found(f.root(), "f2.txt").is_empty(),
        "--no-trash kept a copy"
    );

    // Old trash is pruned after 30 days by default, kept with `forever`, and pruned after
    // DAYS with --trash-keep DAYS.
    let old = f.b.join(".syncengine/trash/20000101T000000Z/ancient.txt");
    write(
        &f.b,
        ".syncengine/trash/20000101T000000Z/ancient.txt",
        "old",
    );
    f.run_expect(&["--trash-keep", "forever"], 0);
    assert!(old.exists(), "--trash-keep forever pruned");
    f.run_expect(&[], 0);
    assert!(
        !old.exists(),
        "the default 30 days kept a 2000 trash folder"
    );
    let stamp = {
        // A trash folder from this run's own day stays with --trash-keep 1.
        std::fs::remove_file(f.a.join("f3.txt")).unwrap();
        f.run_expect(&["--trash-keep", "1"], 0);
        found(&f.b.join(".syncengine/trash"), "f3.txt")
    };
    assert_eq!(stamp, [b"content 3"]);

    // Usage errors: a bad value, and flags that contradict each other.
    for bad in [
        vec!["--trash-keep", "soon"],
        vec!["--trash-keep", "-1"],
        vec!["--no-trash", "--trash-dir", "/tmp/x"],
        vec!["--backup-dir", "/tmp/x", "--trash-dir", "/tmp/y"],
    ] {
        f.run_expect(&bad, 2);
    }
    // A trash dir inside a synced root is refused.
    let inside = f.b.join("trash");
    f.run_expect(&["--trash-dir", inside.to_str().unwrap()], 2);
}

#[test]
fn a_state_dir_inside_the_source_is_not_synced() {
    let f = Fixture::new();
    write(&f.a, "x.txt", "x");
    let state = f.a.join(".local/state/syncengine");
    let out = Command::new(BIN)
        .arg("sync")
        .arg(&f.a)
        .arg(&f.b)
        .env("SYNCENGINE_STATE_DIR", &state)
        .env_remove("RUST_LOG")
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let json = json_of(&out);
    assert_eq!(json["uploaded"], 1, "{json}");
    assert!(state.is_dir());
    assert_eq!(names(&f.b), set(&["x.txt"]));
}

#[test]
fn a_killed_run_converges_on_the_next_run_without_leftovers() {
    const FILES: usize = 2000;
    let f = Fixture::new();
    let body = vec![b'z'; 8 * 1024];
    for i in 0..FILES {
        write(&f.a, &format!("d{:02}/file{i:05}.bin", i % 40), &body);
    }
    let mut child = f
        .cmd(&["--transfers", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some files have arrived, well before all of them.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let arrived = all_paths(&f.b).iter().filter(|p| p.is_file()).count();
        if arrived >= 50 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no progress within 120 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = names(&f.b).len();
    assert!(
        partial < FILES,
        "the kill came too late to test anything ({partial} files)"
    );

    f.run_expect(&[], 0);
    assert_same_tree(&f.a, &f.b, "after the run");
    let temps = |root: &Path| -> Vec<PathBuf> {
        all_paths(root)
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".syncengine-tmp-"))
            })
            .collect()
    };
    // The killed run's temps stay for a day (another machine's write into a shared root
    // looks the same), then the next run removes them.
    let day_old = std::time::SystemTime::now() - Duration::from_secs(25 * 3600);
    for temp in temps(&f.b) {
        let file = File::options().write(true).open(&temp).unwrap();
        file.set_times(
            std::fs::FileTimes::new()
                .set_modified(day_old)
                .set_accessed(day_old),
        )
        .unwrap();
    }
    f.run_expect(&[], 0);
    for root in [&f.a, &f.b] {
        let leftovers = temps(root);
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }
    // And a third run has nothing to do.
    let v = f.run_json(&[]);
    for k in &JSON_KEYS[..9] {
        assert_eq!(v[*k], 0, "{k}: {v}");
    }
}

#[test]
fn ctrl_c_stops_cleanly_with_exit_1_and_the_next_run_finishes() {
    const FILES: usize = 2000;
    let f = Fixture::new();
    let body = vec![b'q'; 8 * 1024];
    for i in 0..FILES {
        write(&f.a, &format!("d{:02}/file{i:05}.bin", i % 40), &body);
    }
    let child = f
        .cmd(&["--transfers", "1", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while all_paths(&f.b).iter().filter(|p| p.is_file()).count() < 50 {
        assert!(Instant::now() < deadline, "no progress within 120 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("cancelled"), "{}", stderr_of(&out));
    assert_json_failure(&out, 1);
    let partial = names(&f.b).len();
    assert!(
        partial < FILES,
        "the interrupt came too late ({partial} files)"
    );
    let temps = all_paths(&f.b)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".syncengine-tmp-"))
        })
        .count();
    assert_eq!(temps, 0, "a clean stop leaves no temp files");

    // The next run copies only what is missing.
    let v = f.run_json(&[]);
    assert_eq!(
        v["uploaded"].as_u64().unwrap() as usize,
        FILES - partial,
        "{v}"
    );
    assert_same_tree(&f.a, &f.b, "after the resumed run");
}

/// True when this process runs as root (where mode 000 does not stop reads).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next().map(|uid| uid == "0"))
        .unwrap_or(false)
}

/// Runs the binary where a folder of mode 000 really cannot be read: as is for an ordinary
/// user; as root, through `setpriv` without the capabilities that bypass file permissions.
/// `None` (and a message) only when running as root without `setpriv`.
fn run_without_dac_override(f: &Fixture, extra: &[&str]) -> Option<Output> {
    let mut c = if is_root() {
        let found = Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!(
                "skipped: running as root and `setpriv` is missing, so mode 000 cannot make a folder unreadable"
            );
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

/// Restores a folder's mode when dropped, so the temporary tree can be removed.
struct Unlock(PathBuf);

impl Drop for Unlock {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

fn lock_folder(dir: &Path) -> Unlock {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o000)).unwrap();
    Unlock(dir.to_path_buf())
}

/// An unreadable folder is unknown: the destination keeps its copies, the rest syncs, and the
/// run exits 1 naming the folder. (Old code failed the whole run on it.)
#[test]
fn unreadable_folder_is_left_alone_and_exits_1() {
    let f = Fixture::new();
    write(&f.a, "private/a.txt", "a");
    write(&f.a, "private/b.txt", "b");
    write(&f.a, "top.txt", "v1");
    for i in 0..10 {
        write(&f.a, &format!("other/f{i}"), "x");
    }
    f.run_expect(&[], 0);
    write(&f.a, "top.txt", "v2");
    write(&f.b, "private/new.txt", "new on the destination");
    let _unlock = lock_folder(&f.a.join("private"));
    let Some(out) = run_without_dac_override(&f, &[]) else {
        return;
    };
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("\"private\"") && err.contains("cannot be read"),
        "{err}"
    );
    assert_eq!(std::fs::read(f.b.join("private/a.txt")).unwrap(), b"a");
    assert_eq!(std::fs::read(f.b.join("private/b.txt")).unwrap(), b"b");
    assert_eq!(
        std::fs::read(f.b.join("top.txt")).unwrap(),
        b"v2",
        "the rest syncs"
    );
    drop(_unlock);
    assert!(
        !f.a.join("private/new.txt").exists(),
        "nothing was copied into the unreadable folder"
    );
}

/// An excluded folder that cannot be read blocks nothing: exit 0.
#[test]
fn excluded_unreadable_folder_blocks_nothing() {
    let f = Fixture::new();
    write(&f.a, "cache/blob", "x");
    write(&f.a, "keep.txt", "k");
    let _unlock = lock_folder(&f.a.join("cache"));
    let Some(out) = run_without_dac_override(&f, &["--exclude", "cache/"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(std::fs::read(f.b.join("keep.txt")).unwrap(), b"k");
    assert!(!f.b.join("cache").exists());
}

/// A symlinked folder: exit 1, the message names it, the destination keeps its files.
#[test]
fn symlinked_folder_exits_1_and_names_it() {
    let f = Fixture::new();
    write(&f.a, "music/a.mp3", "a");
    for i in 0..10 {
        write(&f.a, &format!("other/f{i}"), "x");
    }
    f.run_expect(&[], 0);
    let disk = f.root().join("usb");
    std::fs::create_dir(&disk).unwrap();
    std::fs::rename(f.a.join("music"), disk.join("music")).unwrap();
    std::os::unix::fs::symlink(disk.join("music"), f.a.join("music")).unwrap();
    let out = f.run_expect(&[], 1);
    let err = stderr_of(&out);
    assert!(
        err.contains("\"music\"") && err.contains("symlink"),
        "{err}"
    );
    assert_eq!(std::fs::read(f.b.join("music/a.mp3")).unwrap(), b"a");
}
