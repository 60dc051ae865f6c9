//! A delete takes only the version the run saw: a save that lands between the engine's check
//! and its move to the trash is not deleted (red-team round 3, S3 — found on SFTP and WebDAV,
//! whose moves take whatever is at the path; checked here once for every backend).
#![cfg(feature = "testing")]
// Test code: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::testing::{FaultClient, FaultConfig, Op};
use syncengine_core::{MemoryClient, RelPath, StorageClientExt, SyncEngine, SyncMode, SyncPair};

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

#[tokio::test]
async fn a_version_saved_during_the_trash_move_stays_at_its_path() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    s.put(&rel("notes.txt"), Bytes::from("v1")).await.unwrap();
    s.put(&rel("other.txt"), Bytes::from("other"))
        .await
        .unwrap();
    for i in 0..4 {
        s.put(&rel(&format!("keep{i}.txt")), Bytes::from("kept"))
            .await
            .unwrap();
    }
    engine
        .sync_pair(&SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay))
        .await
        .unwrap();

    // The source deletes both; on the destination someone saves notes.txt just as the
    // engine moves it to the trash (after its check that the file is as listed).
    s.delete(&rel("notes.txt")).await.unwrap();
    s.delete(&rel("other.txt")).await.unwrap();
    let faulty = Arc::new(FaultClient::new(d.clone(), FaultConfig::none()));
    let saver = d.clone();
    faulty.before(
        Op::Rename,
        rel("notes.txt"),
        Arc::new(move |path| {
            futures::executor::block_on(saver.put(path, Bytes::from("saved during the delete")))
                .unwrap();
        }),
    );
    let stats = engine
        .sync_pair(&SyncPair::new(s.clone(), faulty, SyncMode::TwoWay))
        .await
        .unwrap();
    assert_eq!(stats.errors, 1, "{stats:?}");
    assert_eq!(stats.deleted_destination, 1, "other.txt goes: {stats:?}");
    assert_eq!(
        d.read_to_bytes(&rel("notes.txt")).await.unwrap(),
        Bytes::from("saved during the delete"),
        "the save was deleted"
    );
    assert!(
        stats
            .error_messages
            .iter()
            .any(|m| m.contains("changed while it was being deleted")),
        "{stats:?}"
    );

    // The next run sees an edit against a delete: the edit wins and comes back.
    engine
        .sync_pair(&SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay))
        .await
        .unwrap();
    assert_eq!(
        s.read_to_bytes(&rel("notes.txt")).await.unwrap(),
        Bytes::from("saved during the delete")
    );
}
