//! `syncengine pairs`, `pairs show`, `pairs forget`: the built binary on temporary local
//! folders, each test with its own `--state-dir`.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// Runs `syncengine pairs <args…> --state-dir <state>`; returns (exit code, stdout, stderr).
fn pairs(args: &[&str], state: &Path) -> (i32, String, String) {
    let out = Command::new(cli::BIN)
        .arg("pairs")
        .args(args)
        .arg("--state-dir")
        .arg(state)
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

fn folder(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    for (path, content) in files {
        std::fs::write(root.join(path), content).unwrap();
    }
    root
}

fn canonical(p: &Path) -> String {
    format!("file://{}", p.canonicalize().unwrap().display())
}

/// The `--json` listing's pairs.
fn listed(state: &Path) -> Vec<Value> {
    let (code, out, err) = pairs(&["--json"], state);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["unreadable"], serde_json::json!([]));
    v["pairs"].as_array().unwrap().clone()
}

#[test]
fn two_synced_pairs_are_listed_with_roots_mode_time_and_counts() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let a = folder(t.path(), "a", &[("1", "x"), ("2", "y")]);
    let b = t.path().join("b");
    let c = folder(t.path(), "c", &[("3", "z")]);
    let d = t.path().join("d");
    let (code, out) = cli::sync(&a, &b, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = cli::sync(&c, &d, &state, &["--mode", "source-backup"]);
    assert_eq!(code, Some(0), "{out}");

    let all = listed(&state);
    assert_eq!(all.len(), 2, "{all:?}");
    let ab = all
        .iter()
        .find(|p| p["source_root"] == canonical(&a))
        .expect("the pair a → b");
    assert_eq!(ab["destination_root"], canonical(&b));
    assert_eq!(ab["last_mode"], "two-way");
    assert_eq!(ab["files"], 2);
    assert_eq!(ab["last_counts"]["uploaded"], 2);
    assert_eq!(ab["initial_sync_pending"], false);
    let when = ab["last_completed"].as_str().unwrap();
    assert!(when.ends_with('Z') && when.starts_with("20"), "{when}");
    let cd = all
        .iter()
        .find(|p| p["source_root"] == canonical(&c))
        .expect("the pair c → d");
    assert_eq!(cd["last_mode"], "source-backup");
    assert_eq!(cd["files"], 1);

    let (code, out, err) = pairs(&[], &state);
    assert_eq!(code, 0, "{err}");
    for id in [&ab["id"], &cd["id"]] {
        assert!(out.contains(id.as_str().unwrap()), "{out}");
    }
    assert!(
        out.contains(&format!("source:      {}", canonical(&a))),
        "{out}"
    );
    assert!(
        out.contains(&format!("destination: {}", canonical(&d))),
        "{out}"
    );
    assert!(
        out.contains("source-backup") && out.contains("2 files"),
        "{out}"
    );
    assert!(
        out.trim_end()
            .ends_with(&format!("2 pairs in {}", state.display())),
        "{out}"
    );
}

#[test]
fn show_finds_a_pair_by_id_prefix_or_by_its_roots() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let a = folder(t.path(), "a", &[("1", "x")]);
    let b = t.path().join("b");
    let (code, out) = cli::sync(&a, &b, &state, &["--mode", "source-to-destination"]);
    assert_eq!(code, Some(0), "{out}");
    let id = listed(&state)[0]["id"].as_str().unwrap().to_owned();

    let (code, out, err) = pairs(&["show", &id[..6]], &state);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("pair {id}")), "{out}");
    assert!(out.contains("last mode:   source-to-destination"), "{out}");
    assert!(out.contains(&canonical(&a)), "{out}");

    let (code, out, err) = pairs(
        &["show", a.to_str().unwrap(), b.to_str().unwrap(), "--json"],
        &state,
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["files"], 1);

    // Roots never synced, an unknown id: usage errors that say what to do.
    let (code, _, err) = pairs(&["show", b.to_str().unwrap(), a.to_str().unwrap()], &state);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("never synced"), "{err}");
    let (code, _, err) = pairs(&["show", "zzz"], &state);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("syncengine pairs"), "{err}");
}

#[test]
fn forget_with_yes_drops_the_base_and_the_next_sync_is_a_first_sync() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let a = folder(t.path(), "a", &[("f", "x"), ("g", "y")]);
    let b = t.path().join("b");
    let (code, out) = cli::sync(&a, &b, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    let id = listed(&state)[0]["id"].as_str().unwrap().to_owned();

    // Not a terminal and no --yes: refused, nothing removed.
    let (code, _, err) = pairs(&["forget", &id], &state);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(listed(&state).len(), 1);

    // Held by a running sync: refused with 3.
    let lock = std::fs::File::create(state.join(format!("{id}.lock"))).unwrap();
    lock.lock().unwrap();
    let (code, _, err) = pairs(&["forget", &id, "--yes"], &state);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("running"), "{err}");
    assert_eq!(listed(&state).len(), 1);
    drop(lock);

    let (code, out, err) = pairs(&["forget", &id[..8], "--yes"], &state);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("forgot the pair {id}")), "{out}");
    assert!(listed(&state).is_empty());
    assert!(
        std::fs::read_dir(&state).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(&id)),
        "no file of the pair is left"
    );

    // With the base gone, a deletion on the source is not known as one: the first two-way
    // sync merges, copying f back instead of deleting it on b.
    std::fs::remove_file(a.join("f")).unwrap();
    let (code, out) = cli::sync(&a, &b, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["downloaded"], 1, "{v}");
    assert!(a.join("f").exists() && b.join("f").exists());
}

#[test]
fn a_state_file_from_an_older_version_is_listed_with_unknown_roots() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let conn = rusqlite::Connection::open(state.join("0123456789abcdef01234567.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
         CREATE TABLE base(
             path TEXT PRIMARY KEY,
             s_size INTEGER NOT NULL, s_mtime INTEGER, s_etag TEXT, s_hash TEXT,
             s_file_id INTEGER,
             d_size INTEGER NOT NULL, d_mtime INTEGER, d_etag TEXT, d_hash TEXT,
             d_file_id INTEGER
         ) WITHOUT ROWID;
         INSERT INTO meta(key, value) VALUES ('schema_version', 1), ('created', 5),
             ('last_completed', 1796401863000000000);
         INSERT INTO base(path, s_size, s_mtime, d_size, d_mtime) VALUES ('x', 1, 7, 1, 7);",
    )
    .unwrap();
    drop(conn);

    let (code, out, err) = pairs(&[], &state);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0123456789abcdef01234567"), "{out}");
    assert!(
        out.contains("roots unknown (recorded at the next run)"),
        "{out}"
    );
    assert!(out.contains("2026-12-04 16:31:03"), "{out}");
    let all = listed(&state);
    assert_eq!(all[0]["source_root"], Value::Null);
    assert_eq!(all[0]["files"], 1);
    // Listing changed nothing: the file is still schema version 1.
    let conn = rusqlite::Connection::open(state.join("0123456789abcdef01234567.db")).unwrap();
    let v: i64 = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(v, 1);
}

/// On a terminal, forget asks: anything but yes keeps the state, `y` drops it. The terminal
/// is util-linux `script`'s pseudo-terminal.
#[test]
fn forget_on_a_terminal_asks_first() {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(std::env::var("CI").is_err(), "CI needs util-linux script");
        eprintln!("no `script` to make a terminal: skipped");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let a = folder(t.path(), "a", &[("f", "x")]);
    let (code, out) = cli::sync(&a, &t.path().join("b"), &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    let id = listed(&state)[0]["id"].as_str().unwrap().to_owned();
    let forget = |answer: &str| {
        let cmd = format!(
            "{} pairs forget {id} --state-dir '{}'",
            cli::BIN,
            state.display()
        );
        let mut child = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), answer.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = forget("n\n");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("Forget the pair {id}")), "{out}");
    assert!(out.contains("not forgotten"), "{out}");
    assert_eq!(listed(&state).len(), 1);
    let (code, out) = forget("y\n");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("forgot the pair"), "{out}");
    assert!(listed(&state).is_empty());
}

#[test]
fn help_has_examples() {
    for args in [&["pairs", "--help"][..], &["pairs", "forget", "--help"]] {
        let out = Command::new(cli::BIN).args(args).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("EXAMPLES:") && help.contains("pairs forget"),
            "{help}"
        );
    }
}
