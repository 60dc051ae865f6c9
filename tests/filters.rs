//! The filter flags of `syncengine sync` on the built binary, on local folders:
//! `--exclude-from`, `--include`, `--max-size`, `--min-age`. A filtered file is left alone
//! on both sides (never copied, deleted or overwritten) and keeps its base, so lifting the
//! filter later syncs what changed meanwhile as an ordinary edit.
#![cfg(feature = "cli")]
// Test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use cli::{BIN, disk_files, sync};
use serde_json::Value;

const MODES: [&str; 5] = [
    "two-way",
    "source-to-destination",
    "source-backup",
    "destination-to-source",
    "destination-backup",
];

/// A source `a`, a destination `b` and a state folder, all temporary.
struct Fixture {
    tmp: tempfile::TempDir,
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
        Fixture { tmp, a, b, state }
    }

    /// Runs a sync with `--json -q` and `extra`; returns (exit code, stdout + stderr).
    fn run(&self, extra: &[&str]) -> (Option<i32>, String) {
        sync(&self.a, &self.b, &self.state, extra)
    }

    /// Runs a sync that must succeed and returns its JSON result.
    fn ok(&self, extra: &[&str]) -> Value {
        let (code, out) = self.run(extra);
        assert_eq!(code, Some(0), "{extra:?}: {out}");
        let line = out.lines().next().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

/// Writes `data` to `root/rel`, creating folders, with an mtime `age` ago.
fn write_aged(root: &Path, rel: &str, data: &[u8], age: Duration) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, data).unwrap();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

/// Writes `data` to `root/rel` with an mtime an hour ago.
fn write(root: &Path, rel: &str, data: &[u8]) {
    write_aged(root, rel, data, Duration::from_secs(3600));
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn names(root: &Path) -> Vec<String> {
    disk_files(root).into_keys().collect()
}

/// Whether anything went to a side's trash.
fn trashed(root: &Path) -> bool {
    root.join(".syncengine/trash").exists()
        && std::fs::read_dir(root.join(".syncengine/trash"))
            .unwrap()
            .next()
            .is_some()
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing: {v}"))
}

#[test]
fn exclude_from_reads_one_pattern_per_line_in_every_mode() {
    for mode in MODES {
        let f = Fixture::new();
        let list = f.tmp.path().join("excludes.txt");
        std::fs::write(
            &list,
            "# editor and build leftovers\n\n*.tmp\n   build/\n# !not-a-rule\n",
        )
        .unwrap();
        for side in [&f.a, &f.b] {
            let tag = if side == &f.a { "a" } else { "b" };
            write(side, &format!("{tag}.txt"), b"kept");
            write(side, &format!("{tag}.tmp"), b"excluded");
            write(side, &format!("build/{tag}.o"), b"excluded");
        }
        let list_arg = list.to_str().unwrap();
        // A mirror deletes the other side's only kept file: 100%.
        let v = f.ok(&[
            "--mode",
            mode,
            "--exclude-from",
            list_arg,
            "--max-delete",
            "100",
        ]);
        assert_eq!(n(&v, "errors"), 0, "{mode}");
        for (side, tag) in [(&f.a, "a"), (&f.b, "b")] {
            let files = names(side);
            for excluded in [format!("{tag}.tmp"), format!("build/{tag}.o")] {
                assert!(
                    files.contains(&excluded),
                    "{mode}: {excluded} gone: {files:?}"
                );
            }
            let other = if tag == "a" { "b" } else { "a" };
            for never in [format!("{other}.tmp"), format!("build/{other}.o")] {
                assert!(!files.contains(&never), "{mode}: {never} copied: {files:?}");
            }
        }
    }
}

#[test]
fn a_missing_exclude_from_file_is_a_usage_error_naming_it() {
    let f = Fixture::new();
    write(&f.a, "a.txt", b"a");
    let missing = f.tmp.path().join("no-such-list.txt");
    let (code, out) = f.run(&["--exclude-from", missing.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("no-such-list.txt") && out.contains("--exclude-from"),
        "{out}"
    );
    assert!(names(&f.b).is_empty(), "a run happened: {:?}", names(&f.b));
    // A bad pattern in the file names the file and the line.
    let bad = f.tmp.path().join("bad.txt");
    std::fs::write(&bad, "*.tmp\n[z-a]\n").unwrap();
    let (code, out) = f.run(&["--exclude-from", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("bad.txt, line 2") && out.contains("[z-a]"),
        "{out}"
    );
}

#[test]
fn include_syncs_only_matching_files_at_any_depth() {
    for mode in MODES {
        let f = Fixture::new();
        write(&f.a, "top.jpg", b"1");
        write(&f.a, "deep/er/still.jpg", b"2");
        write(&f.a, "deep/er/notes.txt", b"3");
        write(&f.a, "thumbs/t.jpg", b"4");
        write(&f.b, "dest.jpg", b"5");
        write(&f.b, "deep/dest-only.txt", b"6");
        let v = f.ok(&[
            "--mode",
            mode,
            "--include",
            "*.jpg",
            "--exclude",
            "thumbs/",
            "--max-delete",
            "100",
        ]);
        assert_eq!(n(&v, "errors"), 0, "{mode}");
        let (a, b) = (names(&f.a), names(&f.b));
        let uploads = matches!(mode, "two-way" | "source-to-destination" | "source-backup");
        let downloads = matches!(
            mode,
            "two-way" | "source-backup" | "destination-to-source" | "destination-backup"
        );
        assert_eq!(b.contains(&"top.jpg".into()), uploads, "{mode}: {b:?}");
        assert_eq!(
            b.contains(&"deep/er/still.jpg".into()),
            uploads,
            "{mode}: {b:?}"
        );
        assert!(!b.contains(&"deep/er/notes.txt".into()), "{mode}: {b:?}");
        assert!(
            !b.contains(&"thumbs/t.jpg".into()),
            "{mode}: exclude wins: {b:?}"
        );
        // What is not included is never deleted, not even by a mirror.
        assert!(b.contains(&"deep/dest-only.txt".into()), "{mode}: {b:?}");
        assert!(!a.contains(&"deep/dest-only.txt".into()), "{mode}: {a:?}");
        assert!(a.contains(&"deep/er/notes.txt".into()), "{mode}: {a:?}");
        // dest.jpg is included: a mirror to the destination removes it, others copy it.
        let mirror_to_b = mode == "source-to-destination";
        assert_eq!(
            b.contains(&"dest.jpg".into()),
            !mirror_to_b,
            "{mode}: {b:?}"
        );
        assert_eq!(a.contains(&"dest.jpg".into()), downloads, "{mode}: {a:?}");
    }
}

#[test]
fn a_file_that_grew_past_max_size_keeps_the_other_copy_and_syncs_later_without_conflict() {
    let f = Fixture::new();
    write(&f.a, "small.txt", b"small");
    write(&f.a, "video.bin", b"first version");
    f.ok(&[]);
    assert_eq!(read(&f.b, "video.bin"), "first version");

    // The source's copy grows past 1 KiB; the destination's is untouched.
    write(&f.a, "video.bin", &[b'v'; 4096]);
    for mode in MODES {
        let v = f.ok(&["--mode", mode, "--max-size", "1K"]);
        assert_eq!(n(&v, "skipped"), 1, "{mode}: {v}");
        for key in [
            "uploaded",
            "downloaded",
            "deleted_source",
            "deleted_destination",
            "conflicts",
        ] {
            assert_eq!(n(&v, key), 0, "{mode}: {key}: {v}");
        }
        assert_eq!(read(&f.b, "video.bin"), "first version", "{mode}");
        assert_eq!(
            std::fs::metadata(f.a.join("video.bin")).unwrap().len(),
            4096
        );
        assert!(!trashed(&f.a) && !trashed(&f.b), "{mode}");
    }
    // Without the limit the growth is an ordinary edit of a known file.
    let v = f.ok(&[]);
    assert_eq!((n(&v, "uploaded"), n(&v, "conflicts")), (1, 0), "{v}");
    assert_eq!(
        std::fs::metadata(f.b.join("video.bin")).unwrap().len(),
        4096
    );
    assert!(!names(&f.b).iter().any(|p| p.contains("conflict")));
}

#[test]
fn a_delete_is_not_carried_out_on_a_copy_over_max_size() {
    let f = Fixture::new();
    write(&f.a, "big.bin", &[b'x'; 3000]);
    write(&f.a, "small.txt", b"keeps the source from looking emptied");
    f.ok(&[]);
    std::fs::remove_file(f.a.join("big.bin")).unwrap();
    let v = f.ok(&["--max-size", "2K"]);
    assert_eq!(n(&v, "deleted_destination"), 0, "{v}");
    assert!(f.b.join("big.bin").exists());
    // Within the limit the deletion goes through, to the trash.
    let v = f.ok(&["--max-size", "3K"]);
    assert_eq!(n(&v, "deleted_destination"), 1, "{v}");
    assert!(!f.b.join("big.bin").exists() && trashed(&f.b));
}

#[test]
fn min_age_syncs_only_files_older_than_the_age() {
    let f = Fixture::new();
    write(&f.a, "old.txt", b"an hour old");
    // Keeps the source from looking emptied once old.txt goes (a side with no file the run
    // manages, that had some at the last sync, stops the run).
    write(&f.a, "other.txt", b"an hour old too");
    write_aged(&f.a, "fresh.txt", b"being written", Duration::ZERO);
    let v = f.ok(&["--min-age", "10m"]);
    assert_eq!((n(&v, "uploaded"), n(&v, "skipped")), (2, 1), "{v}");
    assert_eq!(names(&f.b), ["old.txt", "other.txt"]);

    // Just edited on the destination, deleted on the source: neither happens yet.
    write_aged(&f.b, "old.txt", b"edited just now", Duration::ZERO);
    std::fs::remove_file(f.a.join("old.txt")).unwrap();
    let v = f.ok(&["--min-age", "10m", "--mode", "source-to-destination"]);
    assert_eq!(n(&v, "deleted_destination"), 0, "{v}");
    assert_eq!(read(&f.b, "old.txt"), "edited just now");
    let v = f.ok(&["--min-age", "10m"]);
    assert_eq!(n(&v, "deleted_destination") + n(&v, "downloaded"), 0, "{v}");
    assert!(!f.a.join("old.txt").exists());

    // Once it is older than the age, the two-way run keeps the edit over the deletion.
    write(&f.b, "old.txt", b"edited just now");
    let v = f.ok(&["--min-age", "10m"]);
    assert_eq!(n(&v, "deleted_destination"), 0, "{v}");
    assert_eq!(read(&f.a, "old.txt"), "edited just now");
}

#[test]
fn bad_filter_values_are_usage_errors() {
    let f = Fixture::new();
    for (args, says) in [
        (&["--max-size", "10MB"][..], "is not a size"),
        (&["--max-size=-1"][..], "is not a size"),
        (&["--min-age", "soon"][..], "is not a duration"),
        (&["--min-age", "0"][..], "longer than zero"),
        (&["--include", "!*.jpg"][..], "cannot be negated"),
        (&["--include", "[z-a]"][..], "--include"),
        (&["--exclude", "[z-a]"][..], "--exclude"),
    ] {
        let (code, out) = f.run(args);
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert!(out.contains(says), "{args:?}: {out}");
    }
}

#[test]
fn help_documents_the_filters_with_examples() {
    let out = Command::new(BIN).args(["sync", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--exclude-from <FILE>",
        "--include <PATTERN>",
        "--max-size <SIZE>",
        "--min-age <DURATION>",
        "FILTERS:",
        "an exclude always wins",
        "--include '*.jpg' --max-size 200M --min-age 10m",
        "--exclude-from ~/",
    ] {
        assert!(help.contains(needle), "{needle:?} missing from --help");
    }
}
