//! The conformance and sync-scenario suites against SeaweedFS, an S3 server that lists keys
//! out of byte order: the client declares its listing unordered, so the engine sorts it.

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::{
    RelPath, StorageClient, StorageClientExt, SyncEngine, SyncError, SyncMode, SyncOptions,
    SyncPair,
};

mod conformance {
    syncengine_core::conformance_tests!(super::common::seaweed);
}

mod scenarios {
    syncengine_core::sync_scenario_tests!(super::common::seaweed, super::common::seaweed);
}

/// Names whose byte order SeaweedFS does not keep (`a/b` listed before `a-b`).
const TRICKY: [&str; 5] = ["a b", "a-b", "a.b", "a/b", "a0"];

/// SeaweedFS really lists out of byte order: the reason it is declared unordered.
#[tokio::test]
async fn seaweedfs_lists_out_of_byte_order() {
    let Some(builder) = common::seaweed_builder(true) else {
        return;
    };
    let client = builder.build().unwrap();
    for name in TRICKY {
        client
            .put(&RelPath::new(name).unwrap(), Bytes::from(name))
            .await
            .unwrap();
    }
    let listed: Vec<String> = client
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path.into_string())
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, TRICKY, "every name listed once");
    assert_ne!(
        listed, sorted,
        "SeaweedFS now lists in byte order; revisit the unordered default"
    );
}

/// Declared ordered by mistake, the engine's order check stops the run with an error naming
/// the setting, before changing anything; `sort_listings` (or declaring the client
/// unordered) makes the same sync succeed.
#[tokio::test]
async fn misdeclared_ordered_listing_is_caught_and_sorting_fixes_it() {
    let Some(builder) = common::seaweed_builder(true) else {
        return;
    };
    let source: Arc<dyn StorageClient> = Arc::new(builder.build().unwrap());
    let (destination, _dir) = common::local().await;
    for name in TRICKY {
        source
            .put(&RelPath::new(name).unwrap(), Bytes::from(name))
            .await
            .unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let pair = SyncPair::new(
        source.clone(),
        destination.clone(),
        SyncMode::SourceToDestination,
    );
    let err = engine
        .sync_pair(&pair)
        .await
        .expect_err("out-of-order listing must stop the run");
    assert!(matches!(err, SyncError::Listing { .. }), "{err}");
    assert!(
        user_files(destination.as_ref()).await.is_empty(),
        "nothing may be copied on the basis of a bad listing"
    );
    let sorted = pair.with_options(SyncOptions::default().with_sort_listings(true));
    let stats = engine.sync_pair(&sorted).await.unwrap();
    assert_eq!(stats.uploaded, TRICKY.len() as u64, "{stats:?}");
    assert_eq!(user_files(destination.as_ref()).await.len(), TRICKY.len());
}

/// The files a user put there: the engine's own (`.syncengine/root-id`, the trash) left out.
async fn user_files(client: &dyn StorageClient) -> Vec<RelPath> {
    client
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .filter(|p| !syncengine_core::ignore_rules::is_always_ignored(p))
        .collect()
}

/// SeaweedFS keeps a folder after its last file is deleted, and refuses a create-only PUT of
/// the folder's name: the client then writes the file anyway (a folder becomes a file, as
/// in the conformance case `emptied_directory_becomes_a_file`). That fallback never
/// replaces an object, and never removes the files of a folder that still holds some.
#[tokio::test]
async fn create_where_a_folder_is_refuses_objects_and_keeps_the_folders_files() {
    let Some(client) = common::seaweed().await else {
        return;
    };
    let p = |s: &str| RelPath::new(s).unwrap();
    let create =
        || syncengine_core::WriteOptions::default().with_mode(syncengine_core::WriteMode::Create);
    let body = |s: &'static str| -> syncengine_core::ByteStream {
        futures::StreamExt::boxed(futures::stream::iter([Ok(Bytes::from(s))]))
    };
    client.put(&p("d/x"), Bytes::from("x")).await.unwrap();
    client
        .write_opts(&p("d"), body("file d"), create())
        .await
        .unwrap();
    assert_eq!(client.read_to_bytes(&p("d")).await.unwrap(), "file d");
    assert_eq!(client.read_to_bytes(&p("d/x")).await.unwrap(), "x");
    // An object of that name: refused, and left as it was.
    let err = client
        .write_opts(&p("d"), body("again"), create())
        .await
        .unwrap_err();
    assert!(
        matches!(err, syncengine_core::Error::AlreadyExists { .. }),
        "{err:?}"
    );
    assert_eq!(client.read_to_bytes(&p("d")).await.unwrap(), "file d");
}
