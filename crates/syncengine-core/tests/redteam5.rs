//! Red team round 5: attacks on 241c709 (stepping folder, exact names, --checksum borrowed
//! hashes), ba045aa (renames onto names new on a folding side) and eee5779 (settlements
//! recorded by the move aside). Each test here fails on 35bc710 for the reason its doc
//! comment gives.
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
use syncengine_core::testing::{Fault, FaultClient, FaultConfig};
use syncengine_core::{
    MemoryClient, StorageClient, StorageClientExt, SyncMode, SyncPair, SyncStats,
};

use files::all_files;
use folding_pair::*;

/// The files waiting in the root's stepping folder.
fn stepping_files(c: &MemoryClient) -> Vec<(String, String)> {
    all_files(c)
        .into_iter()
        .filter(|(p, _)| p.starts_with(".syncengine/stepping"))
        .collect()
}

fn pair_of(setup: &Setup, dry_run: bool) -> SyncPair {
    SyncPair::new(setup.src.clone(), setup.dst.clone(), setup.cfg.mode)
        .with_options(setup.options().with_dry_run(dry_run))
}

// ---------------------------------------------------------------- RT5-1 (241c709)

/// RT5-1. README: "`--dry-run` plans exactly what a real run would do". A run killed between
/// the two steps of a case-only folder rename (`Photos/` -> `photos/`, file by file) leaves
/// the destination's files in `.syncengine/stepping/`. `return_stepped_files` does nothing
/// in a dry run, so the dry run lists the destination without them: it sees an emptied side
/// and stops with `EmptySide` (exit 3, "the destination looks unmounted, use --force"),
/// while the real run right after puts the files back and just renames 2. The dry run tells
/// the user the opposite of what will happen and steers them to `--force`; in smaller cases
/// (other files present) it plans uploads and forgets where the real run plans renames.
#[tokio::test]
async fn rt5_1_dry_run_after_a_kill_between_the_steps_does_not_plan_what_the_real_run_does() {
    let setup = synced(
        Cfg::default(),
        &[
            ("Photos/a.jpg", "photo a"),
            ("Photos/b.jpg", "photo b, longer"),
        ],
    )
    .await;
    for (f, t) in [
        ("Photos/a.jpg", "photos/a.jpg"),
        ("Photos/b.jpg", "photos/b.jpg"),
    ] {
        setup.src_inner.rename(&rel(f), &rel(t)).await.unwrap();
    }
    assert!(kill_between_steps(&setup, &["Photos/a.jpg", "Photos/b.jpg"]).await);
    let dry = setup.engine.sync_pair(&pair_of(&setup, true)).await;
    let real = setup.engine.sync_pair(&pair_of(&setup, false)).await;
    let planned = |r: &Result<SyncStats, syncengine_core::SyncError>| {
        r.as_ref()
            .map(|s| {
                (
                    s.uploaded,
                    s.downloaded,
                    s.deleted_source,
                    s.deleted_destination,
                    s.renamed_source,
                    s.renamed_destination,
                )
            })
            .map_err(|e| format!("{e:?}"))
    };
    assert_eq!(
        planned(&dry),
        planned(&real),
        "the dry run planned something else than the real run did\ndry: {dry:?}\nreal: {real:?}\n{}",
        show(&setup)
    );
}

// ---------------------------------------------------------------- RT5-2 (ba045aa)

/// A `DESTINATION_BACKUP` pair whose source folds case: the destination brings `a.txt` (by
/// `rename`: a rename of `c.txt`, else as an addition) while the source added its own
/// `A.txt`. Returns the stats of the clean runs that follow and the state.
async fn destination_backup_names_cross(rename: bool) -> (Vec<SyncStats>, Setup) {
    let cfg = Cfg {
        src_folds: true,
        dst_folds: false,
        mode: SyncMode::DestinationBackup,
        ..Cfg::default()
    };
    let setup = synced_on(cfg, &[("c.txt", "the c file"), ("keep.txt", "k")], true).await;
    if rename {
        setup
            .dst_inner
            .rename(&rel("c.txt"), &rel("a.txt"))
            .await
            .unwrap();
    } else {
        setup
            .dst_inner
            .put(&rel("a.txt"), Bytes::from("dest a"))
            .await
            .unwrap();
    }
    setup
        .src
        .put(&rel("A.txt"), Bytes::from("source's own A"))
        .await
        .unwrap();
    let runs = setup.settle().await;
    (runs, setup)
}

fn crossing_problems(runs: &[SyncStats], setup: &Setup) -> String {
    let mut problems = String::new();
    let last = runs.last().unwrap();
    if last.errors != 0 {
        problems.push_str(&format!(
            "{} clean runs, the last still fails: {:?}; ",
            runs.len(),
            last.error_messages
        ));
    }
    if !last
        .warnings
        .iter()
        .any(|w| w.contains("A.txt") || w.contains("a.txt"))
    {
        problems.push_str(&format!(
            "no warning names the collision: {:?}; ",
            last.warnings
        ));
    }
    if !all_files(&setup.src_inner)
        .iter()
        .any(|(_, c)| c == "source's own A")
    {
        problems.push_str("the source's A.txt is gone; ");
    }
    problems
}

/// RT5-2a. ba045aa made a rename onto a name new on a folding side a collision "like two
/// additions" — but only where the folding side's new name is a planned copy. In
/// `DESTINATION_BACKUP` the source's additions are "no action" (never uploaded), so the
/// source's new `A.txt` is not in `drop_crossing_collisions`' list; the destination's rename
/// `c.txt` -> `a.txt` is mirrored (keep_old: a copy) onto the folding source, where `a.txt`
/// is `A.txt`: "already exists: A.txt" in every run, fault-free, forever. The README promises
/// such names are "left alone on both sides ... and named in a warning"; instead the pair
/// never converges (exit 1 every run) and no warning says why.
#[tokio::test]
async fn rt5_2a_destination_backup_rename_onto_a_name_the_folding_source_added_fails_every_run() {
    let (runs, setup) = destination_backup_names_cross(true).await;
    let problems = crossing_problems(&runs, &setup);
    assert!(problems.is_empty(), "{problems}\n{}", show(&setup));
}

/// RT5-2b. As RT5-2a with a plain addition on the destination (`a.txt` added while the
/// folding source added `A.txt`): the README's own example ("`a` added on one, `A` on the
/// other") — left alone and named in a warning in two-way, an error in every run of
/// `DESTINATION_BACKUP`.
#[tokio::test]
async fn rt5_2b_destination_backup_addition_onto_a_name_the_folding_source_added_fails_every_run() {
    let (runs, setup) = destination_backup_names_cross(false).await;
    let problems = crossing_problems(&runs, &setup);
    assert!(problems.is_empty(), "{problems}\n{}", show(&setup));
}

// ---------------------------------------------------------------- RT5-3 (241c709)

/// RT5-3. `return_stepped_files` says a failed listing of the stepping folder means "the run
/// cannot tell what the side holds", but the engine turns that error into a warning and
/// goes on: the side is listed without the file that waits there. After a kill between the
/// steps of `Report.txt` -> `report.txt`, one failed listing of
/// `.syncengine/stepping` (a transient server error) makes that run upload `report.txt`
/// afresh; from then on the old file can never go back ("already exists: report.txt") and
/// stays in `<root>/.syncengine/stepping/` forever, never pruned, with a warning in every
/// run of the pair telling the user to move it by hand. Garbage plus a pair that is never
/// quiet, from one transient error. (Nothing is lost: the content is on both sides.)
#[tokio::test]
async fn rt5_3_one_failed_listing_of_the_stepping_folder_leaves_the_old_name_there_forever() {
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
    let faulty = Arc::new(FaultClient::new(setup.dst.clone(), FaultConfig::none()));
    faulty.fail_path(&rel(".syncengine/stepping"), Fault::Error, 1);
    let dst: Arc<dyn StorageClient> = faulty;
    // The run stops (a listing of that side failed) or goes on; either way nothing may be
    // left behind once clean runs follow.
    let pair = SyncPair::new(setup.src.clone(), dst, setup.cfg.mode).with_options(setup.options());
    let disturbed = setup.engine.sync_pair(&pair).await;
    let runs = setup.settle().await;
    let last = runs.last().unwrap();
    assert!(
        stepping_files(&setup.dst_inner).is_empty() && last.warnings.is_empty(),
        "left in the stepping folder: {:?}; warnings of the last of {} clean runs: {:?}\n\
         disturbed run: {disturbed:?}\n{}",
        stepping_files(&setup.dst_inner),
        runs.len(),
        last.warnings,
        show(&setup)
    );
}

// ---------------------------------------------------------------- RT5-4 (241c709)

/// RT5-4 (cosmetic). The two warnings `return_stepped_files` writes are string literals
/// broken across source lines without a `\`, so each carries the next line's indentation:
/// "cannot go                  back (...)" and "the next run                  (not a dry
/// run)". These are the texts users see on stderr and in `--json` warnings.
#[tokio::test]
async fn rt5_4_stepping_warnings_carry_a_run_of_source_indentation() {
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
    let dry = setup
        .engine
        .sync_pair(&pair_of(&setup, true))
        .await
        .unwrap();
    setup
        .dst
        .put(&rel("REPORT.txt"), Bytes::from("a new report"))
        .await
        .unwrap();
    let real = setup.run().await;
    let bad: Vec<&String> = dry
        .warnings
        .iter()
        .chain(real.warnings.iter())
        .filter(|w| w.contains(".syncengine/stepping") && w.contains("     "))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}
