//! A listing that never answers (a hung disk or mount, which no timeout ends) does not hold a
//! cancelled run: nothing is changed before the plan, so the run ends at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::{
    EntryStream, MemoryClient, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncError,
    SyncMode, SyncPair,
};
use tokio_util::sync::CancellationToken;

/// A memory client whose listing never answers.
#[derive(Debug)]
struct Hung(MemoryClient);

#[async_trait]
impl Hooks for Hung {
    fn inner(&self) -> &dyn StorageClient {
        &self.0
    }
    fn list(&self, _prefix: Option<&RelPath>) -> EntryStream {
        Box::pin(futures::stream::pending())
    }
}

#[tokio::test]
async fn a_run_whose_listing_hangs_ends_when_cancelled() {
    let state = tempfile::tempdir().unwrap();
    let source = Arc::new(MemoryClient::new());
    source
        .put(&RelPath::new("a.txt").unwrap(), Bytes::from("a"))
        .await
        .unwrap();
    let destination = Arc::new(Forwarding::new(Hung(MemoryClient::new())));
    let token = CancellationToken::new();
    let engine = SyncEngine::new(state.path()).with_cancellation(token.clone());
    let pair = SyncPair::new(source, destination.clone(), SyncMode::TwoWay);
    let run = tokio::spawn(async move { engine.sync_pair(&pair).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!run.is_finished(), "the listing does not answer");
    token.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the cancelled run ends although its listing still hangs")
        .unwrap();
    assert!(matches!(ended, Err(SyncError::Cancelled)), "{ended:?}");
    assert!(
        destination
            .0
            .stat(&RelPath::new("a.txt").unwrap())
            .await
            .is_err(),
        "nothing was copied"
    );
}
