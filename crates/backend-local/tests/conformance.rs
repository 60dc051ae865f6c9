//! The shared conformance suite over [`LocalClient`]s rooted in fresh temporary directories.

// The factory is test code but not a `#[test]` fn, so clippy's in-tests allowance misses it.
#![allow(clippy::expect_used)]

use std::sync::Arc;

use syncengine_backend_local::LocalClient;
use syncengine_core::StorageClient;

async fn fresh() -> (Arc<dyn StorageClient>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    (Arc::new(LocalClient::new(dir.path().join("root"))), dir)
}

syncengine_core::conformance_tests!(fresh);
