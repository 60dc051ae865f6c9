//! `SyncEngine::with_stop_starting`: a run told to wind down starts no new action, lets the
//! ones in flight finish, and ends as cancelled; the next run does the rest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::testing::{FaultClient, FaultConfig, Op};
use syncengine_core::{
    MemoryClient, RelPath, StorageClientExt, SyncEngine, SyncError, SyncMode, SyncOptions, SyncPair,
};
use tokio_util::sync::CancellationToken;

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// The files synced to `side` (not the engine's own `.syncengine` folder).
fn synced(side: &MemoryClient) -> Vec<RelPath> {
    side.files()
        .into_keys()
        .filter(|p| !p.as_str().starts_with(".syncengine/"))
        .collect()
}

#[tokio::test]
async fn the_copy_in_flight_finishes_and_nothing_new_starts() {
    let state = tempfile::tempdir().unwrap();
    let source = Arc::new(MemoryClient::new());
    for i in 0..20 {
        source
            .put(
                &rel(&format!("f{i:02}.txt")),
                Bytes::from(format!("content {i}")),
            )
            .await
            .unwrap();
    }
    let inner = Arc::new(MemoryClient::new());
    let destination = Arc::new(FaultClient::new(inner.clone(), FaultConfig::none()));
    let stop = CancellationToken::new();
    // The stop comes while the first copy is being written.
    destination.before(Op::Write, rel("f00.txt"), {
        let stop = stop.clone();
        Arc::new(move |_: &RelPath| stop.cancel())
    });
    let pair = SyncPair::new(
        source.clone(),
        destination.clone(),
        SyncMode::SourceToDestination,
    )
    .with_options(SyncOptions::default().with_transfers(1));
    let result = SyncEngine::new(state.path())
        .with_stop_starting(stop)
        .sync_pair(&pair)
        .await;
    assert!(
        matches!(result, Err(SyncError::Cancelled)),
        "a wound-down run ends as cancelled: {result:?}"
    );
    // The copy in flight landed whole (a cancel would have abandoned it); none after it.
    assert_eq!(
        synced(&inner),
        [rel("f00.txt")],
        "only the copy in flight when the stop came"
    );
    assert_eq!(inner.files()[&rel("f00.txt")].as_ref(), b"content 0");

    // The next run copies the rest, and f00 is not copied again (its record was kept).
    let writes_before = destination.calls();
    let stats = SyncEngine::new(state.path())
        .sync_pair(&pair)
        .await
        .expect("the next run");
    assert_eq!(stats.uploaded, 19, "{stats:?}");
    assert_eq!(synced(&inner).len(), 20);
    assert!(destination.calls() > writes_before);
}

#[tokio::test]
async fn a_stop_before_the_run_starts_changes_nothing() {
    let state = tempfile::tempdir().unwrap();
    let source = Arc::new(MemoryClient::new());
    source
        .put(&rel("a.txt"), Bytes::from_static(b"a"))
        .await
        .unwrap();
    let destination = Arc::new(MemoryClient::new());
    let stop = CancellationToken::new();
    stop.cancel();
    let pair = SyncPair::new(
        source.clone(),
        destination.clone(),
        SyncMode::SourceToDestination,
    );
    let result = SyncEngine::new(state.path())
        .with_stop_starting(stop)
        .sync_pair(&pair)
        .await;
    assert!(matches!(result, Err(SyncError::Cancelled)), "{result:?}");
    assert!(synced(&destination).is_empty());
}
