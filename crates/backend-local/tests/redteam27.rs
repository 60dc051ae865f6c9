//! Red team 27: writes that create a file make it unnamed (`O_TMPFILE`) in a folder looked up
//! once without following symlinks, and link it there by descriptor (commits 464a0c7,
//! 4bb155d); between two local roots the run keeps 32 actions in flight.

// Helpers outside `#[test]` fns are test code too; clippy's in-tests allowance misses them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use syncengine_backend_local::LocalClient;
use syncengine_core::{StorageClient, StorageClientExt, WriteMode, WriteOptions};

mod support;
use support::p;

/// Whether this process holds an unnamed file made in `folder` (`/proc/self/fd` shows it as
/// `folder/#N (deleted)`).
fn holds_unnamed_file_in(folder: &Path) -> bool {
    fs::read_dir("/proc/self/fd").unwrap().flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|to| {
            to.parent() == Some(folder)
                && to.to_string_lossy().ends_with(" (deleted)")
                && to
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('#'))
        })
    })
}

/// A file being created in a folder while the engine moves the folder's only other file away
/// (its delete, or its move to the trash, prunes the folder it leaves empty: an unnamed file
/// is no entry of it) still lands: the run's own delete of a sibling must not fail a copy
/// that was in flight beside it (32 are, between two local roots). With a named temporary
/// file, the folder was not empty and stayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_lands_though_a_sibling_delete_pruned_its_folder_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("a")).unwrap();
    fs::write(root.join("a/old"), b"old").unwrap();
    let client = std::sync::Arc::new(LocalClient::new(&root));
    let (mut tx, rx) = futures::channel::mpsc::channel::<syncengine_core::Result<Bytes>>(1);
    let writer = client.clone();
    let write = tokio::spawn(async move {
        writer
            .write_opts(
                &p("a/new"),
                rx.boxed(),
                WriteOptions::default().with_mode(WriteMode::Create),
            )
            .await
    });
    // More than one batch: the file is made, and the first batch written, before the rest.
    tx.send(Ok(Bytes::from(vec![7u8; 1 << 20]))).await.unwrap();
    let folder = fs::canonicalize(root.join("a")).unwrap();
    let mut waited = 0;
    while !holds_unnamed_file_in(&folder) {
        assert!(waited < 2000, "the unnamed file never appeared");
        tokio::time::sleep(Duration::from_millis(5)).await;
        waited += 1;
    }
    client.delete(&p("a/old")).await.unwrap();
    tx.send(Ok(Bytes::from(vec![7u8; 1 << 20]))).await.unwrap();
    drop(tx);
    let written = write.await.unwrap();
    let written = written.expect("the new file is written");
    assert_eq!(written.size, 2 << 20);
    assert_eq!(fs::read(root.join("a/new")).unwrap().len(), 2 << 20);
}

/// The same through the engine: a run that moves each folder's only file to another folder
/// (a detected rename: the move prunes the folder it leaves empty) while it copies a new
/// large file into that folder, with the 32 actions in flight of two local roots, copies
/// every new file. Before the fix, a few of 60 such copies failed with "not found" (their
/// folder pruned between their lookup and their link), run after run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_moves_a_folders_only_file_away_still_copies_new_files_into_it() {
    use syncengine_core::{SyncEngine, SyncMode, SyncOptions, SyncPair};
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let engine = SyncEngine::new(dir.path().join("state"));
    let pair = || {
        SyncPair::new(
            std::sync::Arc::new(LocalClient::new(&src)),
            std::sync::Arc::new(LocalClient::new(&dst)),
            SyncMode::SourceToDestination,
        )
        .with_options(SyncOptions::default())
    };
    const FOLDERS: usize = 60;
    for i in 0..FOLDERS {
        fs::create_dir_all(src.join(format!("d{i}"))).unwrap();
        let body: Vec<u8> = (0..5000u32).map(|b| (b * 7 + i as u32) as u8).collect();
        fs::write(src.join(format!("d{i}/x")), body).unwrap();
    }
    fs::create_dir_all(&dst).unwrap();
    engine.sync_pair(&pair()).await.unwrap();
    for i in 0..FOLDERS {
        fs::create_dir_all(src.join(format!("m{i}"))).unwrap();
        fs::rename(src.join(format!("d{i}/x")), src.join(format!("m{i}/x"))).unwrap();
        fs::write(src.join(format!("d{i}/new")), vec![i as u8; 3 << 20]).unwrap();
    }
    let stats = engine.sync_pair(&pair()).await.unwrap();
    assert_eq!(stats.errors, 0, "{stats:?}");
    for i in 0..FOLDERS {
        assert_eq!(
            fs::read(dst.join(format!("d{i}/new"))).unwrap(),
            vec![i as u8; 3 << 20]
        );
        assert!(dst.join(format!("m{i}/x")).is_file());
    }
}
