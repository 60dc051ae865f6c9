//! The sync-scenario suite over two `MemoryClient`s, ordered and unordered.

use std::sync::Arc;

use syncengine_core::{MemoryClient, StorageClient};

async fn ordered() -> Arc<dyn StorageClient> {
    Arc::new(MemoryClient::new())
}

async fn unordered() -> Arc<dyn StorageClient> {
    Arc::new(MemoryClient::unordered())
}

mod ordered_pair {
    syncengine_core::sync_scenario_tests!(super::ordered, super::ordered);
}

mod unordered_pair {
    syncengine_core::sync_scenario_tests!(super::unordered, super::ordered);
}
