//! Red-team cases (issue 8, round 6) through the `syncengine` binary, on local disk.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

#[path = "support/cli.rs"]
mod cli;
use cli::sync;

/// A synced folder of photos replaced on the source by a symlink, under the common
/// "only these files" `.syncignore` (`*`, `!*/`, `!*.jpg`: ignore everything, re-include
/// folders, re-include JPEGs).
///
/// The user moves `~/Sync/photos` to a bigger disk and leaves a symlink in its place (the
/// usual way to free space). The local listing does not follow symlinks: it reports
/// `photos` as unknown ("a symlink (not followed)"), and SEMANTICS says an unknown path and
/// everything below it is left alone on both sides and reported (exit 1). But the listing
/// filter drops an unknown item when the patterns exclude it as a file *or* as a folder,
/// and `*` excludes `photos` as a file. The photos then look deleted on the source, and the
/// two-way run deletes every one of them from the destination (into its trash), exits 0,
/// and reports nothing unknown. Severity: loss (the destination copies, out of sight in the
/// trash, which is pruned after 30 days).
#[test]
fn a_photo_folder_replaced_by_a_symlink_is_not_deleted_on_the_other_side() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (src, dst, state, moved) = (t.join("src"), t.join("dst"), t.join("state"), t.join("big"));
    fs::create_dir_all(src.join("photos")).unwrap();
    fs::create_dir_all(&dst).unwrap();
    fs::write(src.join(".syncignore"), "*\n!*/\n!*.jpg\n!.syncignore\n").unwrap();
    fs::write(src.join("photos/a.jpg"), "photo a").unwrap();
    fs::write(src.join("photos/b.jpg"), "photo b").unwrap();
    for top in ["t1.jpg", "t2.jpg", "t3.jpg", "t4.jpg"] {
        fs::write(src.join(top), top).unwrap();
    }
    let (code, out) = sync(&src, &dst, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        fs::read_to_string(dst.join("photos/a.jpg")).unwrap(),
        "photo a"
    );

    // The photos move to another disk; a symlink takes their place.
    fs::rename(src.join("photos"), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, src.join("photos")).unwrap();
    let (code, out) = sync(&src, &dst, &state, &[]);
    assert!(
        dst.join("photos/a.jpg").exists() && dst.join("photos/b.jpg").exists(),
        "the destination's photos were deleted because the source's folder became a \
         symlink: exit {code:?}, {out}"
    );
    assert_eq!(code, Some(1), "the unknown path is reported: {out}");
}

/// Every file below `dir` (relative paths), the engine's own `.syncengine/` folder left out.
fn user_files(dir: &Path) -> Vec<String> {
    cli::disk_files(dir).into_keys().collect()
}

/// The state directory *is* a synced root (`--state-dir ~/Sync`, or `--state-dir .` run from
/// inside the folder).
///
/// A state directory inside a local root is left out of the sync (`add_own_dir`), but
/// `own_dir_below` returns `None` when the state directory is the root itself (the relative
/// path is empty), so nothing is left out: the pair's SQLite database, its WAL and its lock
/// file are ordinary user files. The run uploads the live database (a torn copy of a file it
/// is writing), and every later run uploads it again; in a mirror towards that root the
/// engine would move its own open database to the trash. The engine's state must never be
/// synced: SEMANTICS, "Always ignored: … state if the user puts it there". Severity: garbage
/// (the base's database published to the other side, re-uploaded every run). Fixed by a
/// refusal (exit 2): the state directory may lie inside a root, not be one.
#[test]
fn a_state_dir_that_is_the_root_itself_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (src, dst) = (t.join("src"), t.join("dst"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&dst).unwrap();
    fs::write(src.join("notes.txt"), "notes").unwrap();
    // Which `*.db` files are the engine's cannot be told from a user's: the run refuses to
    // start, names the cause and the fix, and copies nothing.
    for _ in 0..2 {
        let (code, out) = sync(&src, &dst, &src, &[]);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains("the state directory is the source root itself")
                && out.contains("--state-dir"),
            "{out}"
        );
        assert!(user_files(&dst).is_empty(), "{:?}; {out}", user_files(&dst));
        // Nor is any state created in the root.
        assert_eq!(user_files(&src), ["notes.txt"], "{out}");
    }
}

/// Every file below `dir` with its content, the engine's own folder left out.
fn contents(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    user_files(dir)
        .into_iter()
        .map(|p| {
            let body = fs::read(dir.join(&p)).unwrap();
            (p, body)
        })
        .collect()
}

fn body(tag: &str, i: usize) -> Vec<u8> {
    let mut v = format!("{tag} {i} ").into_bytes();
    v.resize(48 * 1024, b'.');
    v
}

/// Source-backup runs SIGKILLed at many points, then run to the end: deleted photos never
/// return to the source, no version is lost, no file is torn, no conflict copy appears for
/// paths only one side changed. (This one holds; it is kept as a guard.)
#[test]
fn killed_source_backup_runs_converge_without_resurrection() {
    const N: usize = 120;
    for (round, delays) in [[15u64, 40, 80, 130, 220], [25, 60, 100, 170, 300]]
        .into_iter()
        .enumerate()
    {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let (src, dst, state) = (t.join("src"), t.join("dst"), t.join("state"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&dst).unwrap();
        for i in 0..N {
            fs::write(src.join(format!("p{i:03}.jpg")), body("photo", i)).unwrap();
        }
        let sb = ["--mode", "source-backup"];
        let (code, out) = sync(&src, &dst, &state, &sb);
        assert_eq!(code, Some(0), "{out}");
        // The source deletes a third of its photos, edits a third; the destination gains
        // files of its own.
        for i in 0..N {
            let p = src.join(format!("p{i:03}.jpg"));
            match i % 3 {
                0 => fs::remove_file(&p).unwrap(),
                1 => fs::write(&p, body("edited", i)).unwrap(),
                _ => {}
            }
            if i % 4 == 0 {
                fs::write(dst.join(format!("d{i:03}.txt")), body("dest", i)).unwrap();
            }
        }
        for ms in delays {
            cli::killed_source_backup(&src, &dst, &state, ms);
        }
        let (code, out) = sync(&src, &dst, &state, &sb);
        assert_eq!(code, Some(0), "round {round}: {out}");
        let (code, out) = sync(&src, &dst, &state, &sb);
        assert_eq!(code, Some(0), "round {round}: {out}");
        assert!(
            out.contains("\"uploaded\":0") && out.contains("\"downloaded\":0"),
            "{out}"
        );

        let (s, d) = (contents(&src), contents(&dst));
        for i in 0..N {
            let name = format!("p{i:03}.jpg");
            let expected = match i % 3 {
                0 => None,
                1 => Some(body("edited", i)),
                _ => Some(body("photo", i)),
            };
            assert_eq!(
                s.get(&name),
                expected.as_ref(),
                "round {round}: source {name}"
            );
            if expected.is_none() {
                assert_eq!(
                    d.get(&name),
                    Some(&body("photo", i)),
                    "round {round}: backup {name}"
                );
            } else {
                assert_eq!(
                    d.get(&name),
                    expected.as_ref(),
                    "round {round}: dest {name}"
                );
            }
            if i % 4 == 0 {
                let n = format!("d{i:03}.txt");
                assert_eq!(s.get(&n), Some(&body("dest", i)), "round {round}: {n}");
            }
        }
        let conflicts: Vec<&String> = s
            .keys()
            .chain(d.keys())
            .filter(|p| p.contains(".conflict-"))
            .collect();
        assert!(conflicts.is_empty(), "round {round}: {conflicts:?}");
    }
}

/// The CLI form of the library test `a_failed_set_aside_upload_does_not_leave_a_second_conflict_copy`
/// (crates/syncengine-core/tests/redteam6.rs): source-backup, twenty photos deleted on the
/// source (settled), then new, unrelated files of 4 MiB appear at their names (a camera
/// restarting its numbering). Each set aside links the photo to a conflict name (recorded
/// ahead), then uploads the new file over the path. Runs SIGKILLed while those uploads are
/// in flight leave the linked conflict copy, and the next run, finding the path still
/// settled, links the photo aside once more: the backup ends with two or more conflict
/// copies of the same photo. Every photo should be kept once. Severity: garbage.
#[test]
fn killed_set_asides_keep_each_deleted_photo_once_on_the_backup() {
    const N: usize = 20;
    let big = |i: usize| {
        let mut v = format!("new {i} ").into_bytes();
        v.resize(4 << 20, b'n');
        v
    };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (src, dst, state) = (t.join("src"), t.join("dst"), t.join("state"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&dst).unwrap();
    for i in 0..N {
        fs::write(src.join(format!("p{i:03}.jpg")), body("photo", i)).unwrap();
        fs::write(src.join(format!("keep{i:03}.jpg")), body("keep", i)).unwrap();
    }
    let sb = ["--mode", "source-backup"];
    assert_eq!(sync(&src, &dst, &state, &sb).0, Some(0));
    for i in 0..N {
        fs::remove_file(src.join(format!("p{i:03}.jpg"))).unwrap();
    }
    assert_eq!(sync(&src, &dst, &state, &sb).0, Some(0));
    for i in 0..N {
        fs::write(src.join(format!("p{i:03}.jpg")), big(i)).unwrap();
    }
    for ms in [60u64, 120, 200, 300, 450, 650] {
        cli::killed_source_backup(&src, &dst, &state, ms);
    }
    let (code, out) = sync(&src, &dst, &state, &sb);
    assert_eq!(code, Some(0), "{out}");
    let (s, d) = (contents(&src), contents(&dst));
    let mut duplicated = Vec::new();
    for i in 0..N {
        let name = format!("p{i:03}.jpg");
        assert_eq!(s.get(&name), Some(&big(i)), "{name}");
        assert_eq!(d.get(&name), Some(&big(i)), "{name}");
        let photo = body("photo", i);
        assert!(
            !s.values().any(|b| *b == photo),
            "deleted {name} is back on the source"
        );
        let copies: Vec<&String> = d
            .iter()
            .filter(|(_, b)| **b == photo)
            .map(|(p, _)| p)
            .collect();
        assert!(!copies.is_empty(), "the backup of {name} is lost");
        if copies.len() > 1 {
            duplicated.push(copies);
        }
    }
    assert!(
        duplicated.is_empty(),
        "deleted photos kept more than once on the backup: {duplicated:?}"
    );
}
