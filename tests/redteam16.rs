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
