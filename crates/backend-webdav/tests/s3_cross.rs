//! Cross-backend syncs in every mode between WebDAV (Apache) and S3 (moto on 127.0.0.1:9100).

mod common;

use std::sync::Arc;

use syncengine_backend_s3::{S3Builder, StoreKind};
use syncengine_core::StorageClient;

/// A client on a fresh prefix of moto's `test` bucket (built explicitly, never from the
/// environment: this machine sets `AWS_*` variables that must not point tests at a cloud).
async fn moto() -> Option<Arc<dyn StorageClient>> {
    let server = common::Server {
        name: "moto (S3)",
        env: "SYNCENGINE_TEST_S3_ENDPOINT",
        default_url: "http://127.0.0.1:9100",
    };
    let endpoint = common::server_url(server)?;
    let client = S3Builder::for_store(StoreKind::S3, "test")
        .with_prefix(format!("t-webdav-{:016x}", rand::random::<u64>()))
        .with_endpoint(endpoint)
        .with_region("us-east-1")
        .with_credentials("a", "b")
        .with_allow_http(true)
        .build();
    match client {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => panic!("moto client: {e}"),
    }
}

mod apache_to_s3 {
    use super::common::{APACHE, fresh};
    syncengine_core::sync_scenario_tests!(|| fresh(APACHE), super::moto);
}

mod s3_to_apache {
    use super::common::{APACHE, fresh};
    syncengine_core::sync_scenario_tests!(super::moto, || fresh(APACHE));
}
