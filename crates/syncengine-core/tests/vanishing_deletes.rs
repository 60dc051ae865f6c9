//! Red team 10, finding 5: a folder renamed away and back during a mirror run. The deletes
//! under it found nothing (the folder was elsewhere at that moment) and were counted and
//! recorded as done: the base forgot the files, which then came back as new files once the
//! folder was back (a later two-way run copied them to the side that had deleted them).
//! A delete that finds its file gone since the listing did nothing: it is neither counted nor
//! recorded, so the next run looks at the path again.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::testing::{FaultClient, FaultConfig, Op};
use syncengine_core::{
    MemoryClient, Recovery, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode,
    SyncOptions, SyncPair,
};

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

const MOVED: usize = 10;

async fn exists(client: &MemoryClient, path: &str) -> bool {
    client.stat(&rel(path)).await.is_ok()
}

/// Moves every `dir/…` file of `client` to `to/…`.
fn move_dir(client: &MemoryClient, from: &str, to: &str) {
    futures::executor::block_on(async {
        for i in 0..MOVED {
            let name = format!("f{i}.txt");
            client
                .rename(
                    &rel(&format!("{from}/{name}")),
                    &rel(&format!("{to}/{name}")),
                )
                .await
                .unwrap();
        }
    });
}

async fn run(
    mode: SyncMode,
    s: &Arc<MemoryClient>,
    d: Arc<dyn StorageClient>,
    engine: &SyncEngine,
) -> syncengine_core::SyncStats {
    let mut pair = SyncPair::new(s.clone(), d, mode);
    pair.options = SyncOptions::default().with_transfers(1);
    engine.sync_pair(&pair).await.unwrap()
}

#[tokio::test]
async fn deletes_under_a_folder_renamed_away_and_back_are_not_recorded_as_done() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    for i in 0..MOVED {
        s.put(&rel(&format!("dir/f{i}.txt")), Bytes::from(format!("f{i}")))
            .await
            .unwrap();
    }
    for i in 0..30 {
        s.put(&rel(&format!("keep{i}.txt")), Bytes::from("kept"))
            .await
            .unwrap();
    }
    run(SyncMode::SourceToDestination, &s, d.clone(), &engine).await;
    assert!(exists(&d, "dir/f0.txt").await);

    // The source deletes the folder's files; on the destination someone renames the folder
    // away right as the mirror starts deleting under it.
    for i in 0..MOVED {
        s.delete(&rel(&format!("dir/f{i}.txt"))).await.unwrap();
    }
    let faulty = Arc::new(FaultClient::new(d.clone(), FaultConfig::none()));
    let mover = d.clone();
    faulty.before(
        Op::Stat,
        rel("dir/f0.txt"),
        Arc::new(move |_| move_dir(&mover, "dir", "dir2")),
    );
    let stats = run(SyncMode::SourceToDestination, &s, faulty, &engine).await;
    assert_eq!(
        stats.deleted_destination, 0,
        "deletes that found nothing were reported done: {stats:?}"
    );
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert!(
        stats
            .warnings
            .iter()
            .any(|w| w.starts_with("10 file(s) to delete were gone")),
        "{stats:?}"
    );

    // ... and back. The base still knows the files: the next run deletes them (the source
    // deleted them), where old code had forgotten them and a two-way run copied them back.
    move_dir(&d, "dir2", "dir");
    let stats = run(SyncMode::TwoWay, &s, d.clone(), &engine).await;
    assert!(
        !exists(&s, "dir/f0.txt").await,
        "a file the source deleted came back: {stats:?}"
    );
    assert!(!exists(&d, "dir/f0.txt").await, "{stats:?}");
    assert_eq!(stats.deleted_destination, MOVED as u64, "{stats:?}");
}

/// A pair of memory sides synced by a mirror from the source: `dir/old.txt` and 30 other
/// files (so one delete stays far below the max-delete limit).
async fn mirrored(engine: &SyncEngine) -> (Arc<MemoryClient>, Arc<MemoryClient>) {
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    s.put(
        &rel("dir/old.txt"),
        Bytes::from("the content of the renamed file"),
    )
    .await
    .unwrap();
    for i in 0..30 {
        s.put(&rel(&format!("keep{i}.txt")), Bytes::from("kept"))
            .await
            .unwrap();
    }
    let stats = run(SyncMode::SourceToDestination, &s, d.clone(), engine).await;
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert!(exists(&d, "dir/old.txt").await);
    (s, d)
}

fn gone_warning(stats: &syncengine_core::SyncStats) -> bool {
    stats
        .warnings
        .iter()
        .any(|w| w.starts_with("1 file(s) to delete were gone"))
}

/// The source renames `dir/old.txt` to `dir/new.txt`; on the destination someone deletes
/// `dir/old.txt` right before the engine's `op` on it (the check, or the move itself).
/// Found: the mirror recorded the old path as removed (the check) or failed the rename (the
/// move) — it must copy the new file and leave the old path's record, as a delete that
/// finds its file gone does.
async fn rename_whose_old_file_vanishes(op: Op) {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (s, d) = mirrored(&engine).await;
    s.rename(&rel("dir/old.txt"), &rel("dir/new.txt"))
        .await
        .unwrap();
    let faulty = Arc::new(FaultClient::new(d.clone(), FaultConfig::none()));
    let other = d.clone();
    faulty.before(
        op,
        rel("dir/old.txt"),
        Arc::new(move |_| {
            futures::executor::block_on(other.delete(&rel("dir/old.txt"))).unwrap();
        }),
    );
    let stats = run(SyncMode::SourceToDestination, &s, faulty, &engine).await;
    assert_eq!(stats.errors, 0, "{op:?}: {stats:?}");
    assert!(exists(&d, "dir/new.txt").await, "{op:?}: {stats:?}");
    assert_eq!(
        (stats.renamed_destination, stats.uploaded),
        (0, 1),
        "{op:?}: a rename whose old file was gone is a copy: {stats:?}"
    );
    assert!(gone_warning(&stats), "{op:?}: {stats:?}");

    // The old file comes back (it had been moved away for a moment). The base still knows
    // it: a two-way run sees the source's delete and removes it, where a base that had
    // forgotten it took it for a new file and copied it back to the source.
    d.put(
        &rel("dir/old.txt"),
        Bytes::from("the content of the renamed file"),
    )
    .await
    .unwrap();
    let stats = run(SyncMode::TwoWay, &s, d.clone(), &engine).await;
    assert!(
        !exists(&s, "dir/old.txt").await,
        "{op:?}: the renamed-away file came back to the source: {stats:?}"
    );
    assert!(!exists(&d, "dir/old.txt").await, "{op:?}: {stats:?}");
}

#[tokio::test]
async fn a_rename_whose_old_file_vanished_before_the_check_is_not_recorded_as_done() {
    rename_whose_old_file_vanishes(Op::Stat).await;
}

#[tokio::test]
async fn a_rename_whose_old_file_vanished_before_the_move_is_not_recorded_as_done() {
    rename_whose_old_file_vanishes(Op::Rename).await;
}

/// With `--no-trash` on the destination, someone deletes the file between the engine's
/// check and its delete. Found: counted as deleted (the delete of a missing file is `Ok`).
#[tokio::test]
async fn a_delete_without_trash_whose_file_vanished_after_the_check_is_not_counted() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (s, d) = mirrored(&engine).await;
    s.delete(&rel("dir/old.txt")).await.unwrap();
    let faulty = Arc::new(FaultClient::new(d.clone(), FaultConfig::none()));
    let other = d.clone();
    faulty.before(
        Op::Delete,
        rel("dir/old.txt"),
        Arc::new(move |_| {
            futures::executor::block_on(other.delete(&rel("dir/old.txt"))).unwrap();
        }),
    );
    let mut pair = SyncPair::new(s.clone(), faulty, SyncMode::SourceToDestination);
    pair.options = SyncOptions::default()
        .with_transfers(1)
        .with_recovery(syncengine_core::Side::Destination, Recovery::None);
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(
        stats.deleted_destination, 0,
        "a delete that found nothing was counted: {stats:?}"
    );
    assert!(gone_warning(&stats), "{stats:?}");
}
