//! Red team round 4: attacks on 3b24137 (renames in two steps on folding sides, exact-name
//! intent recovery). Each test failed on 3b24137; the old names now wait in
//! `.syncengine/stepping/`, which the next run empties before it lists the side.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/files.rs"]
mod files;
#[path = "support/folding_pair.rs"]
mod folding_pair;
#[path = "support/stamps.rs"]
mod stamps;

use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::{MemoryClient, Recovery, StorageClientExt, SyncMode, SyncPair};

use files::{all_files, user_files};
use folding_pair::*;

/// What the root holds in its trash or its stepping folder (old names between the steps).
fn trash_files(c: &MemoryClient) -> Vec<(String, String)> {
    all_files(c)
        .into_iter()
        .filter(|(p, _)| {
            p.starts_with(".syncengine/trash") || p.starts_with(".syncengine/stepping")
        })
        .collect()
}

// ---------------------------------------------------------------- RT4-1

/// RT4-1. `SOURCE_BACKUP` onto a destination that folds case: the source renames
/// `Report.txt` → `report.txt` (case only). A backup-mode rename keeps the old name
/// (`keep_old`), so it is not taken through the trash; it is carried out as a copy of
/// `report.txt` next to `Report.txt`, which on the folding destination is the same file: the
/// write meets `Report.txt`, the lost-reply check finds the same content and records
/// `report.txt` as landed. The base now claims two destination files where the disk holds one.
///
/// What goes wrong: (a) the pair never goes idle — every later run "uploads" `report.txt`
/// again (the destination's listing never shows it); (b) once the source edits `report.txt`,
/// every run fails with "already exists: Report.txt" and the new version never reaches the
/// backup. The backup silently stops taking versions of that file (only an error line each
/// run); if the source is then lost, the edit is lost with it.
#[tokio::test]
async fn rt4_1_backup_mode_case_only_rename_on_a_folding_backup_never_settles_nor_backs_up_edits() {
    let cfg = Cfg {
        mode: SyncMode::SourceBackup,
        ..Cfg::default()
    };
    let setup = synced(cfg, &[("Report.txt", "the report"), ("keep.txt", "k")]).await;
    setup
        .src_inner
        .rename(&rel("Report.txt"), &rel("report.txt"))
        .await
        .unwrap();
    let runs = setup.settle().await;
    let mut problems = String::new();
    if !idle(&runs) {
        problems.push_str(&format!(
            "after the rename, 4 runs never went idle: {:?}; ",
            runs.iter()
                .map(|s| (s.uploaded, s.renamed_destination, s.errors))
                .collect::<Vec<_>>()
        ));
    }
    setup
        .src_inner
        .put(&rel("report.txt"), Bytes::from("the report, edited"))
        .await
        .unwrap();
    let runs = setup.settle().await;
    let backed_up = all_files(&setup.dst_inner)
        .iter()
        .any(|(p, c)| p.to_lowercase() == "report.txt" && c == "the report, edited");
    if !backed_up {
        problems.push_str(&format!(
            "the edit never reached the backup; errors of the runs: {:?}; ",
            runs.iter()
                .map(|s| s.error_messages.clone())
                .collect::<Vec<_>>()
        ));
    }
    assert!(problems.is_empty(), "{problems}\n{}", show(&setup));
}

// ---------------------------------------------------------------- RT4-2

/// Kill between the two steps, then clean runs: the source keeps its files, every run
/// succeeds and the pair converges.
async fn kill_then_settle(files: &[(&str, &str)], renames: &[(&str, &str)]) {
    let setup = synced(Cfg::default(), files).await;
    for (f, t) in renames {
        setup.src_inner.rename(&rel(f), &rel(t)).await.unwrap();
    }
    let expected = user_files(&setup.src_inner);
    let olds: Vec<&str> = renames.iter().map(|(f, _)| *f).collect();
    assert!(
        kill_between_steps(&setup, &olds).await,
        "the kill did not happen"
    );
    let after_kill = show(&setup);
    let mut problems = String::new();
    for _ in 0..3 {
        let pair = SyncPair::new(setup.src.clone(), setup.dst.clone(), setup.cfg.mode)
            .with_options(setup.options());
        if let Err(e) = setup.engine.sync_pair(&pair).await {
            problems.push_str(&format!("a clean run after the kill failed: {e:?}; "));
        }
    }
    if user_files(&setup.src_inner) != expected {
        problems.push_str("the source changed; ");
    }
    let fold = |v: Vec<(String, String)>| {
        let mut v: Vec<_> = v.into_iter().map(|(p, c)| (p.to_lowercase(), c)).collect();
        v.sort();
        v
    };
    if fold(user_files(&setup.src_inner)) != fold(user_files(&setup.dst_inner)) {
        problems.push_str("the sides differ; ");
    }
    assert!(
        problems.is_empty(),
        "{problems}\nafter the kill: {after_kill}\nnow: {}",
        show(&setup)
    );
}

/// RT4-2a. The README promises: "A run killed in between [the two steps] leaves the old
/// version in the trash, and the next run copies the renamed file from the other side".
/// When the renamed files are all the destination holds — here the one top folder of the
/// pair renamed in case only (`Photos/` → `photos/`, which goes file by file, each file
/// through the trash) — the kill leaves the destination with no user file at all, and every
/// following run stops with `EmptySide` (the "an unmounted disk must not wipe the other side"
/// rule; exit 3 in the CLI). The pair never converges until the user passes `--force`, told
/// that the destination looks unmounted. (The sweeps in folding_faults.rs never reach this
/// state: with `MemoryClient` a cancelled run is only dropped after the second step too.)
#[tokio::test]
async fn rt4_2a_kill_between_the_steps_of_a_top_folder_case_rename_blocks_every_later_run() {
    kill_then_settle(
        &[
            ("Photos/a.jpg", "photo a"),
            ("Photos/b.jpg", "photo b, longer"),
        ],
        &[
            ("Photos/a.jpg", "photos/a.jpg"),
            ("Photos/b.jpg", "photos/b.jpg"),
        ],
    )
    .await;
}

/// RT4-2b. As RT4-2a, for a swap (`A.txt` → `b.txt`, `B.txt` → `a.txt`) of the only two
/// files of the pair: both old names are in the trash when the run dies, the destination is
/// empty, and the next runs stop with `EmptySide`.
#[tokio::test]
async fn rt4_2b_kill_between_the_steps_of_a_swap_blocks_every_later_run() {
    kill_then_settle(
        &[("A.txt", "the A file"), ("B.txt", "the B file, longer")],
        &[("A.txt", "b.txt"), ("B.txt", "a.txt")],
    )
    .await;
}

// ---------------------------------------------------------------- RT4-3

/// A kill between the steps with `recovery` on the folding destination; returns the files
/// left in the destination root's `.syncengine/trash` once clean runs converged.
async fn stones_after_kill(recovery: Recovery) -> (Vec<(String, String)>, String) {
    let cfg = Cfg {
        dst_recovery: recovery,
        ..Cfg::default()
    };
    let setup = synced(cfg, &[("Report.txt", "the report"), ("keep.txt", "k")]).await;
    setup
        .src_inner
        .rename(&rel("Report.txt"), &rel("report.txt"))
        .await
        .unwrap();
    assert!(kill_between_steps(&setup, &["Report.txt"]).await);
    let runs = setup.settle().await;
    assert!(idle(&runs), "{runs:?}");
    (trash_files(&setup.dst_inner), show(&setup))
}

/// RT4-3a. `--no-trash` (`Recovery::None`) on the folding side: the stepped rename still
/// moves the old name to `<root>/.syncengine/trash/<stamp>/` (`step_into_the_trash` calls
/// `move_to_trash` whatever the recovery). A kill between the steps leaves it there, and
/// since a side without a trash is never pruned (`trash_of` → `None`), the copy stays in the
/// root forever — a file the user asked never to be kept, that nothing will ever remove.
#[tokio::test]
async fn rt4_3a_no_trash_side_keeps_a_stepped_rename_in_its_root_trash_forever() {
    let (stones, state) = stones_after_kill(Recovery::None).await;
    assert!(
        stones.is_empty(),
        "--no-trash side holds trash that is never pruned: {stones:?}\n{state}"
    );
}

/// RT4-3b. `--trash-dir URL` (`Recovery::TrashDir`) on the folding side — chosen so that the
/// root itself holds no trash (a root served as a website publishes it): the stepped rename
/// goes through the root's own `.syncengine/trash/` anyway; after a kill between the steps
/// the old version stays there, outside the trash dir, where trash-keep pruning (which runs on
/// the trash dir only) never removes it.
#[tokio::test]
async fn rt4_3b_trash_dir_side_keeps_a_stepped_rename_in_its_root_trash_forever() {
    let elsewhere = Arc::new(MemoryClient::new());
    let (stones, state) = stones_after_kill(Recovery::TrashDir(elsewhere.clone())).await;
    assert!(
        stones.is_empty(),
        "the root's own trash holds {stones:?} (trash dir holds {:?}); nothing prunes it\n{state}",
        all_files(&elsewhere)
    );
}

/// After a kill between the steps, a new file takes the old name on the folding side before
/// the next run: the file moved aside cannot go back. It is kept where it waits, and every
/// run names it in a warning with what to do; nothing is lost or overwritten.
#[tokio::test]
async fn a_file_moved_aside_whose_old_name_was_taken_is_kept_and_named() {
    let setup = synced(
        Cfg::default(),
        &[("Report.txt", "the report"), ("keep.txt", "k")],
    )
    .await;
    setup
        .src_inner
        .rename(&rel("Report.txt"), &rel("report.txt"))
        .await
        .unwrap();
    assert!(kill_between_steps(&setup, &["Report.txt"]).await);
    setup
        .dst
        .put(&rel("REPORT.txt"), Bytes::from("a new report"))
        .await
        .unwrap();
    let stats = setup.run().await;
    let everything: Vec<String> = all_files(&setup.src_inner)
        .into_iter()
        .chain(all_files(&setup.dst_inner))
        .map(|(_, c)| c)
        .collect();
    for content in ["the report", "a new report"] {
        assert!(
            everything.iter().any(|c| c == content),
            "{content:?} is gone: {}",
            show(&setup)
        );
    }
    assert!(
        stats
            .warnings
            .iter()
            .any(|w| w.contains("Report.txt") && w.contains(".syncengine/stepping/")),
        "{:?}",
        stats.warnings
    );
}
