//! The seed's sync scenarios end to end between two local directories, and local ↔ memory.

// The factories are test code but not `#[test]` fns, so clippy's in-tests allowance misses them.
#![allow(clippy::expect_used)]

use std::sync::Arc;

use syncengine_backend_local::LocalClient;
use syncengine_core::{MemoryClient, StorageClient};

async fn local() -> (Arc<dyn StorageClient>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    (Arc::new(LocalClient::new(dir.path().join("root"))), dir)
}

async fn memory() -> Arc<dyn StorageClient> {
    Arc::new(MemoryClient::new())
}

mod local_to_local {
    syncengine_core::sync_scenario_tests!(super::local, super::local);
}

mod local_to_memory {
    syncengine_core::sync_scenario_tests!(super::local, super::memory);
}

mod memory_to_local {
    syncengine_core::sync_scenario_tests!(super::memory, super::local);
}
