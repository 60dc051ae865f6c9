//! Cross-backend syncs, every mode and scenario: SFTP (OpenSSH sshd) ↔ S3 (moto on
//! 127.0.0.1:9100), both directions. Servers: `bash scripts/test-servers.sh start`.

// Test code: panicking with a message is how a test fails.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use syncengine_backend_s3::{S3Builder, StoreKind};
use syncengine_core::StorageClient;

/// A client on moto at a fresh prefix, or `None` (outside CI) when moto is down.
pub async fn moto() -> Option<Arc<dyn StorageClient>> {
    if !support::server_up("S3 moto", 9100, None) {
        return None;
    }
    let client = S3Builder::for_store(StoreKind::S3, "test")
        .with_prefix(support::fresh_name())
        .with_endpoint("http://127.0.0.1:9100")
        .with_region("us-east-1")
        .with_credentials("a", "b")
        .with_allow_http(true)
        .build()
        .unwrap();
    Some(Arc::new(client))
}

mod sshd_to_s3 {
    syncengine_core::sync_scenario_tests!(crate::support::sshd, crate::moto);
}

mod s3_to_sshd {
    syncengine_core::sync_scenario_tests!(crate::moto, crate::support::sshd);
}
