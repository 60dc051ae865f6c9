//! The conformance suite over [`MemoryClient`], with ordered and unordered listings.

mod ordered {
    use std::sync::Arc;

    use syncengine_core::{MemoryClient, StorageClient};

    async fn fresh() -> Arc<dyn StorageClient> {
        Arc::new(MemoryClient::new())
    }

    syncengine_core::conformance_tests!(fresh);
}

mod unordered {
    use syncengine_core::MemoryClient;

    syncengine_core::conformance_tests!(|| async {
        std::sync::Arc::new(MemoryClient::unordered())
    });
}
