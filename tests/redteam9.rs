//! Red-team cases (round 9) through the `syncengine` binary, on local disk.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

#[path = "support/cli.rs"]
mod cli;
use cli::sync;

/// Finding 02: the source has a file `x`; on the destination a folder `x/` holds nothing the
/// sync lists — only an excluded file, deep down. The engine must not delete excluded
/// content to make room, so the file cannot go there: every run exits 1. It used to say only
/// "already exists: x", which names neither the cause nor the way out. The error now says a
/// folder is in the way, what it may hold, and what to do; the excluded file stays.
#[test]
fn a_folder_holding_only_excluded_files_is_named_as_what_blocks_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (src, dst, state) = (t.join("src"), t.join("dst"), t.join("state"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(dst.join("x/a/b")).unwrap();
    fs::write(src.join("x"), "a file").unwrap();
    fs::write(src.join("other"), "another file").unwrap();
    fs::write(dst.join("x/a/b/keep.tmp"), "excluded, never synced").unwrap();
    let exclude = ["--exclude", "*.tmp"];
    let (code, out) = sync(&src, &dst, &state, &exclude);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("a folder is in the way"), "{out}");
    assert!(out.contains("exclude x"), "{out}");
    assert_eq!(
        fs::read_to_string(dst.join("x/a/b/keep.tmp")).unwrap(),
        "excluded, never synced"
    );
    assert_eq!(
        fs::read_to_string(dst.join("other")).unwrap(),
        "another file"
    );
    // The advice works: with the folder moved away, the file goes through.
    fs::rename(dst.join("x"), t.join("moved")).unwrap();
    let (code, out) = sync(&src, &dst, &state, &exclude);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(fs::read_to_string(dst.join("x")).unwrap(), "a file");
}
