//! Red team 35: a run cancelled while a filesystem mounted below its root hangs (a FUSE
//! filesystem whose server never answers, as a frozen network mount) ends (c110ce2 says so
//! for "a listing of a hung disk or mount").
//!
//! Mounting needs CAP_SYS_ADMIN and `/dev/fuse`: where the test cannot mount it says so and
//! checks nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use syncengine_backend_local::LocalClient;
use syncengine_core::testing::HungMount;
use syncengine_core::{SyncEngine, SyncError, SyncMode, SyncPair};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_while_a_mount_below_its_root_hangs_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, state) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("state"),
    );
    fs::create_dir_all(src.join("m")).unwrap();
    fs::create_dir_all(&dst).unwrap();
    fs::write(src.join("a.txt"), "a").unwrap();
    let Some(mut hung) = HungMount::mount(&src.join("m")) else {
        return;
    };
    let token = CancellationToken::new();
    let engine = SyncEngine::new(&state).with_cancellation(token.clone());
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::TwoWay,
    );
    let run = tokio::spawn(async move { engine.sync_pair(&pair).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hanging = !run.is_finished();
    token.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(10), run).await;
    // Whatever happened, the calls waiting on the mount are let go before the test ends.
    hung.release();
    assert!(hanging, "the run did not wait on the hung mount");
    let ended = ended
        .expect("the cancelled run ends although a mount below its root hangs")
        .unwrap();
    assert!(matches!(ended, Err(SyncError::Cancelled)), "{ended:?}");
    assert!(!dst.join("a.txt").exists(), "nothing was copied");
}
