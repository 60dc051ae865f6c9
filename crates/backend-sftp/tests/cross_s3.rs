//! Cross-backend syncs, every mode and scenario: SFTP (OpenSSH sshd) ↔ S3 (moto on
//! 127.0.0.1:9100), both directions. Servers: `bash scripts/test-servers.sh start`.

// Test code: panicking with a message is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use syncengine_backend_s3::{S3Builder, StoreKind};
use syncengine_core::StorageClient;

/// A client on moto at a fresh prefix, or `None` (outside CI) when moto is down.
pub async fn moto() -> Option<(Arc<dyn StorageClient>, ())> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 9100));
    if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).is_err() {
        let msg = "S3 test server moto is unavailable (nothing listens on 127.0.0.1:9100). \
                   Start the servers with:\n    bash scripts/test-servers.sh install && bash \
                   scripts/test-servers.sh start";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
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
    Some((Arc::new(client), ()))
}

mod sshd_to_s3 {
    crate::scenario_cases!(crate::support::sshd, crate::moto);
}

mod s3_to_sshd {
    crate::scenario_cases!(crate::moto, crate::support::sshd);
}
