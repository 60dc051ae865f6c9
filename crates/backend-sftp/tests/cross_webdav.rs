//! Cross-backend syncs, every mode and scenario: SFTP (OpenSSH sshd) ↔ WebDAV (Apache
//! mod_dav on 127.0.0.1:8082, user `dav`), both directions. Servers:
//! `bash scripts/test-servers.sh start`.

// Test code: panicking with a message is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use syncengine_backend_webdav::WebDavBuilder;
use syncengine_core::StorageClient;

/// A client on a fresh Apache collection, or `None` (outside CI) when Apache is down.
pub async fn apache() -> Option<(Arc<dyn StorageClient>, ())> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 8082));
    if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).is_err() {
        let msg = "WebDAV test server apache is unavailable (nothing listens on \
                   127.0.0.1:8082). Start the servers with:\n    bash scripts/test-servers.sh \
                   install && bash scripts/test-servers.sh start";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return None;
    }
    let client = WebDavBuilder::new()
        .with_url(format!(
            "http://127.0.0.1:8082/syncengine-tests/sftp-{}",
            support::fresh_name()
        ))
        .with_credentials("dav", "davpass")
        .build()
        .unwrap();
    Some((Arc::new(client), ()))
}

mod sshd_to_webdav {
    crate::scenario_cases!(crate::support::sshd, crate::apache);
}

mod webdav_to_sshd {
    crate::scenario_cases!(crate::apache, crate::support::sshd);
}
