//! Red-team cases (round 8) through the `syncengine` binary, on local disk.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

#[path = "support/cli.rs"]
mod cli;
use cli::sync;

/// Found by a long mode-switch chain (random edits, renames and type changes between runs in
/// every mode): a folder that holds nothing but empty folders blocks a file at its path for
/// good.
///
/// Two-way. The pair holds `g/h/i`. On the destination the user has made an empty folder
/// `g/empty` (listings show files only, so the engine never sees it). The source replaces the
/// folder `g` with a file `g`. The run moves `g/h/i` to the destination's trash, but the
/// folder `g` is not empty, so the new file cannot be put there: "already exists: g". Every
/// later run fails the same way (exit 1), and the source's file never reaches the
/// destination: the pair never converges, although the folder in its way holds no file
/// (nothing in it could be lost by removing it). The same happens when only an empty folder
/// `g` is in the way of a file added on the other side.
#[test]
fn an_empty_folder_does_not_block_a_file_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (src, dst, state) = (t.join("src"), t.join("dst"), t.join("state"));
    fs::create_dir_all(src.join("g/h")).unwrap();
    fs::create_dir_all(&dst).unwrap();
    fs::write(src.join("g/h/i"), "in the folder").unwrap();
    fs::write(src.join("other"), "another file").unwrap();
    assert_eq!(sync(&src, &dst, &state, &[]).0, Some(0));
    fs::create_dir_all(dst.join("g/empty/deeper")).unwrap();
    fs::create_dir_all(dst.join("lone/empty")).unwrap();
    fs::remove_dir_all(src.join("g")).unwrap();
    fs::write(src.join("g"), "now a file").unwrap();
    fs::write(
        src.join("lone"),
        "a new file where the destination has an empty folder",
    )
    .unwrap();
    let first = sync(&src, &dst, &state, &[]);
    let (code, out) = sync(&src, &dst, &state, &[]);
    assert_eq!(code, Some(0), "first run: {first:?}\nsecond run: {out}");
    assert_eq!(fs::read_to_string(dst.join("g")).unwrap(), "now a file");
    assert_eq!(
        fs::read_to_string(dst.join("lone")).unwrap(),
        "a new file where the destination has an empty folder"
    );
    let trash = dst.join(".syncengine/trash");
    let trashed: Vec<_> = fs::read_dir(&trash)
        .unwrap()
        .map(|e| e.unwrap().path().join("g/h/i"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(trashed.len(), 1, "g/h/i is not in the trash once");
}
