//! A call that never answers (a hung disk or mount, which no timeout ends) does not hold a
//! cancelled run: a listing (nothing is changed before the plan, so the run ends at once), nor
//! the flush that records what its actions did (the run ends after its grace).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::{
    EntryStream, MemoryClient, RelPath, Result, StorageClient, StorageClientExt, SyncEngine,
    SyncError, SyncMode, SyncPair,
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

/// A memory client whose flush (the barrier before the base records a copy) cancels the run
/// and then never answers.
#[derive(Debug)]
struct HungFlush {
    inner: MemoryClient,
    cancel: CancellationToken,
}

#[async_trait]
impl Hooks for HungFlush {
    fn inner(&self) -> &dyn StorageClient {
        &self.inner
    }
    async fn sync_written(&self) -> Result<()> {
        self.cancel.cancel();
        std::future::pending().await
    }
}

async fn run_with_hung_flush(grace: Duration) -> Option<std::result::Result<(), SyncError>> {
    let state = tempfile::tempdir().unwrap();
    let source = Arc::new(MemoryClient::new());
    source
        .put(&RelPath::new("a.txt").unwrap(), Bytes::from("a"))
        .await
        .unwrap();
    let token = CancellationToken::new();
    let destination = Arc::new(Forwarding::new(HungFlush {
        inner: MemoryClient::new(),
        cancel: token.clone(),
    }));
    let engine = SyncEngine::new(state.path())
        .with_cancellation(token.clone())
        .with_cancel_grace(grace);
    let pair = SyncPair::new(source, destination, SyncMode::TwoWay);
    let ended = tokio::time::timeout(Duration::from_secs(5), engine.sync_pair(&pair)).await;
    assert!(
        token.is_cancelled(),
        "the copy was made, and its flush began"
    );
    ended.ok().map(|r| r.map(|_| ()))
}

/// The flush that records the copies a cancelled run made never answers: the run waits for
/// its grace, then is dropped where it waits and ends as cancelled. Longer than the grace, it
/// waits (a flush of a healthy disk may take a while after a big copy).
#[tokio::test]
async fn a_cancelled_run_whose_flush_hangs_ends_after_its_grace() {
    let ended = run_with_hung_flush(Duration::from_millis(300)).await;
    assert!(
        matches!(ended, Some(Err(SyncError::Cancelled))),
        "{ended:?}"
    );
    let held = run_with_hung_flush(Duration::from_secs(60)).await;
    assert!(held.is_none(), "within its grace the run waits: {held:?}");
}
