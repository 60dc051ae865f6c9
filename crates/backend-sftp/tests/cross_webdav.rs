//! Cross-backend syncs, every mode and scenario: SFTP (OpenSSH sshd) ↔ WebDAV (Apache
//! mod_dav on 127.0.0.1:8082, user `dav`), both directions. Servers:
//! `bash scripts/test-servers.sh start`.

// Test code: panicking with a message is how a test fails.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use syncengine_backend_webdav::WebDavBuilder;
use syncengine_core::StorageClient;

/// A client on a fresh Apache collection, or `None` (outside CI) when Apache is down.
pub async fn apache() -> Option<Arc<dyn StorageClient>> {
    if !support::server_up("WebDAV apache", 8082, None) {
        return None;
    }
    let client = WebDavBuilder::new()
        .with_url(format!(
            "http://127.0.0.1:8082/syncengine-tests/sftp-{}",
            support::fresh_name()
        ))
        .with_credentials("dav", "davpass")
        // Basic over plain http on loopback: the tests' own server.
        .with_allow_insecure_basic(true)
        .build()
        .unwrap();
    Some(Arc::new(client))
}

mod sshd_to_webdav {
    syncengine_core::sync_scenario_tests!(crate::support::sshd, crate::apache);
}

mod webdav_to_sshd {
    syncengine_core::sync_scenario_tests!(crate::apache, crate::support::sshd);
}
