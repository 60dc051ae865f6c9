//! Red-team cases (round 7) through the `syncengine` binary, on local disk.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

#[path = "support/cli.rs"]
mod cli;
use cli::sync;

/// Every file below `dir` (relative paths) with its size, the engine's own `.syncengine/`
/// folder left out.
fn user_files(dir: &Path) -> std::collections::BTreeMap<String, u64> {
    cli::disk_files(dir)
}

/// Bytes that do not repeat (so no two files are alike by accident).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The CLI form of the library test `a_failed_set_aside_of_a_big_file_does_not_leave_a_second_copy`
/// (crates/syncengine-core/tests/redteam7.rs), on local disk, which lists no hash.
///
/// Source-backup. A 70 MB video `p.mov` was backed up, then deleted on the source (settled:
/// the backup keeps it). A new, unrelated `p.mov` appears on the source (a camera restarting
/// its numbering). Each run sets the backup's video aside — a conflict copy recorded ahead —
/// then uploads the new file over the path. Runs SIGKILLed during that upload leave the
/// conflict copy. Since `spare_of` wants an MD5 of both files and gives up above 64 MiB
/// without a listed hash, no run reuses the copy an earlier one made: one more conflict copy
/// of the video per killed run (redteam6 fixed this for small files only). Here they are hard
/// links; on a remote backup they are whole server-side copies. Severity: garbage.
#[test]
fn killed_set_asides_of_a_big_video_keep_it_once_on_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (src, dst, state) = (t.join("src"), t.join("dst"), t.join("state"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&dst).unwrap();
    let video = noise(70_000_000, 7);
    fs::write(src.join("p.mov"), &video).unwrap();
    fs::write(src.join("other"), "another file").unwrap();
    let sb = ["--mode", "source-backup"];
    assert_eq!(sync(&src, &dst, &state, &sb).0, Some(0));
    fs::remove_file(src.join("p.mov")).unwrap();
    assert_eq!(sync(&src, &dst, &state, &sb).0, Some(0));
    fs::write(src.join("p.mov"), noise(200_000_000, 11)).unwrap();
    for ms in [300u64, 600, 900] {
        cli::killed_source_backup(&src, &dst, &state, ms);
    }
    let (code, out) = sync(&src, &dst, &state, &sb);
    assert_eq!(code, Some(0), "{out}");
    let files = user_files(&dst);
    assert_eq!(files.get("p.mov"), Some(&200_000_000), "{files:?}");
    let copies: Vec<&String> = files
        .iter()
        .filter(|(_, len)| **len == 70_000_000)
        .map(|(p, _)| p)
        .collect();
    assert!(!copies.is_empty(), "the video is lost: {files:?}");
    assert_eq!(
        copies.len(),
        1,
        "the deleted video should be kept once on the backup, not once per killed run: \
         {copies:?}"
    );
    assert!(
        !user_files(&src).values().any(|len| *len == 70_000_000),
        "the deleted video came back to the source"
    );
}
