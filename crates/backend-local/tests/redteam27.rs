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
