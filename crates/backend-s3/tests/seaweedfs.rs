//! The conformance and sync-scenario suites against SeaweedFS, an S3 server that lists keys
//! out of byte order: the client declares its listing unordered, so the engine sorts it.

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::{RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair};

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
    // The server's own order: one listing, page after page. (A listing split by folder
    // puts the root's folders and keys in byte order, but each folder still lists in
    // SeaweedFS's order.)
    let client = builder.with_list_concurrency(1).build().unwrap();
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

/// Declared ordered by mistake (SeaweedFS lists `a/b` before `a-b`), the listing is caught
/// out of order, and the engine sorts it and plans again by itself, with a note; the state
/// remembers it, so later runs sort from the start and say nothing more.
#[tokio::test]
async fn misdeclared_ordered_listing_is_sorted_automatically_and_remembered() {
    let Some(builder) = common::seaweed_builder(true) else {
        return;
    };
    // A client that encodes `\` never claims an ordered listing; these names have none.
    // Listed page after page, as SeaweedFS orders it (not split by folder, which would put
    // these top-level names in byte order).
    let builder = builder
        .with_encode_backslash(false)
        .with_list_concurrency(1);
    let source: Arc<dyn StorageClient> = Arc::new(builder.build().unwrap());
    let (destination, _dir) = common::local().await;
    for name in TRICKY {
        source
            .put(&RelPath::new(name).unwrap(), Bytes::from(name))
            .await
            .unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = SyncEngine::new(state.path()).with_progress(tx);
    let pair = SyncPair::new(
        source.clone(),
        destination.clone(),
        SyncMode::SourceToDestination,
    );
    let stats = engine.sync_pair(&pair).await.expect("sorted automatically");
    assert_eq!(stats.uploaded, TRICKY.len() as u64, "{stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(user_files(destination.as_ref()).await.len(), TRICKY.len());
    let notes = order_notes(&mut rx);
    assert_eq!(notes.len(), 1, "one note on the first run: {notes:?}");
    assert!(notes[0].contains("out of canonical order"), "{notes:?}");

    // Remembered: the next run sorts from the start (no note) and has nothing to do.
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert!(stats.is_noop() && stats.errors == 0, "{stats:?}");
    assert!(
        order_notes(&mut rx).is_empty(),
        "the pair remembers the order"
    );
}

/// The order notes among the progress events received so far.
fn order_notes(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<syncengine_core::ProgressEvent>,
) -> Vec<String> {
    let mut notes = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let syncengine_core::ProgressEvent::Warning(w) = event
            && w.contains("order")
        {
            notes.push(w);
        }
    }
    notes
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
