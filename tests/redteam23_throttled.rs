//! Red team 23: the bandwidth limiter's client wrapper ([`Throttled`]) must behave as the
//! client it wraps, promise for promise: the whole conformance suite runs through it, over
//! local disk and over the in-memory client, at a limit low enough that large chunks are cut
//! into pieces and waits happen.

// The factories are test code but not `#[test]` fns.
#![allow(clippy::expect_used)]

mod local {
    use std::sync::Arc;

    use syncengine::LocalClient;
    use syncengine_core::StorageClient;
    use syncengine_core::bandwidth::Bandwidth;

    async fn fresh() -> (Arc<dyn StorageClient>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let inner: Arc<dyn StorageClient> = Arc::new(LocalClient::new(dir.path().join("root")));
        let limit = "256M".parse().expect("a limit");
        let client = Bandwidth::new(limit).throttle(inner);
        assert!(format!("{client:?}").contains("Throttled"), "not wrapped");
        (client, dir)
    }

    syncengine_core::conformance_tests!(fresh);
}

mod memory {
    use std::sync::Arc;

    use syncengine_core::bandwidth::Bandwidth;
    use syncengine_core::{MemoryClient, StorageClient};

    async fn fresh() -> Arc<dyn StorageClient> {
        // Up and down limited differently: reads and writes each spend their own bucket.
        let limit = "256M:128M".parse().expect("a limit");
        Bandwidth::new(limit).throttle(Arc::new(MemoryClient::new()))
    }

    syncengine_core::conformance_tests!(fresh);
}
