//! Shared test support: loopback server checks and factories for fresh clients.
//!
//! Every factory roots its client at a fresh random prefix, so cases run in parallel and
//! never see each other's objects. Clients are built explicitly, never from the environment
//! (this machine sets `AWS_CA_BUNDLE`, and the tests must never reach a real cloud).

// Test support: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used, dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use syncengine_backend_s3::{S3Builder, S3Client, StoreKind};
use syncengine_core::StorageClient;

/// A test server: display name, the variable holding its endpoint, the default endpoint.
pub type Server = (&'static str, &'static str, &'static str);

/// The primary S3 server: moto (or MinIO, see the README: same variables).
pub const MOTO: Server = (
    "S3 (moto)",
    "SYNCENGINE_TEST_S3_ENDPOINT",
    "http://127.0.0.1:9100",
);
/// SeaweedFS's S3 gateway (lists out of byte order).
pub const SEAWEED: Server = (
    "SeaweedFS",
    "SYNCENGINE_TEST_SEAWEEDFS_ENDPOINT",
    "http://127.0.0.1:9400",
);
/// Azurite's blob service.
pub const AZURITE: Server = (
    "Azurite",
    "SYNCENGINE_TEST_AZURITE_ENDPOINT",
    "http://127.0.0.1:10000",
);
/// fake-gcs-server.
pub const FAKE_GCS: Server = (
    "fake-gcs-server",
    "SYNCENGINE_TEST_GCS_ENDPOINT",
    "http://127.0.0.1:4443",
);

/// A variable's value, or `default` when unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The endpoint URL of `server` (from its variable, else the loopback default).
pub fn endpoint(server: Server) -> String {
    env_or(server.1, server.2)
}

/// The S3 test credentials: `SYNCENGINE_TEST_S3_ACCESS_KEY_ID` / `_SECRET_ACCESS_KEY`
/// (moto accepts anything; MinIO wants its root user).
pub fn s3_keys() -> (String, String) {
    (
        env_or("SYNCENGINE_TEST_S3_ACCESS_KEY_ID", "a"),
        env_or("SYNCENGINE_TEST_S3_SECRET_ACCESS_KEY", "b"),
    )
}

/// The one skip-or-fail rule: true when `server` accepts TCP connections. Otherwise: with
/// `CI=true` the test fails; elsewhere it prints how to start the servers and returns false,
/// and the caller skips (a factory returns `None`, which the core's test macros report as a
/// skipped case; a plain test returns early).
pub fn up(server: Server) -> bool {
    let name = server.0;
    let url = endpoint(server);
    let authority = url
        .split("://")
        .nth(1)
        .unwrap_or(&url)
        .split('/')
        .next()
        .unwrap_or("");
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{name} is not reachable on {addr} and CI=true: the S3/Azure/GCS tests need it");
    }
    eprintln!(
        "SKIPPED: {name} is not running on {addr} (set {} to use another endpoint). \
         Start the test servers with:\n    \
         bash scripts/test-servers.sh install && bash scripts/test-servers.sh start",
        server.1
    );
    false
}

/// A random prefix that no other case uses.
pub fn fresh_prefix(tag: &str) -> String {
    format!("t-{tag}-{:016x}", rand::random::<u64>())
}

/// An S3 builder for moto at a fresh prefix, or `None` when moto is down (see [`up`]).
pub fn moto_builder() -> Option<S3Builder> {
    if !up(MOTO) {
        return None;
    }
    let (id, secret) = s3_keys();
    Some(
        S3Builder::for_store(StoreKind::S3, "test")
            .with_prefix(fresh_prefix("moto"))
            .with_endpoint(endpoint(MOTO))
            .with_region("us-east-1")
            .with_credentials(id, secret)
            .with_allow_http(true),
    )
}

/// A client on moto.
pub async fn moto() -> Option<Arc<dyn StorageClient>> {
    let builder = moto_builder()?;
    Some(Arc::new(builder.build().expect("moto client")))
}

/// A moto client that reads rclone's mtime metadata (one HEAD per listed object).
pub async fn moto_mtime() -> Option<Arc<dyn StorageClient>> {
    let builder = moto_builder()?.with_mtime_from_metadata(true);
    Some(Arc::new(builder.build().expect("moto client")))
}

/// An S3 builder for SeaweedFS at a fresh prefix, declared ordered or not, or `None` when
/// SeaweedFS is down (see [`up`]).
pub fn seaweed_builder(ordered: bool) -> Option<S3Builder> {
    if !up(SEAWEED) {
        return None;
    }
    Some(
        S3Builder::for_store(StoreKind::S3, "test")
            .with_prefix(fresh_prefix("weed"))
            .with_endpoint(endpoint(SEAWEED))
            .with_region("us-east-1")
            .with_credentials("weedak", "weedsk")
            .with_allow_http(true)
            .with_ordered_listing(ordered)
            // SeaweedFS's filer turns `\\` into `/`, like Azure.
            .with_encode_backslash(true)
            // SeaweedFS answers 500 InternalError for a moment while it grows a volume (seen
            // in CI, on a test's own setup writes): object_store's default of two quick
            // retries is not enough for that.
            .with_retries(8, std::time::Duration::from_secs(30)),
    )
}

/// A SeaweedFS client, declared unordered: the engine sorts its listings.
pub async fn seaweed() -> Option<Arc<dyn StorageClient>> {
    let builder = seaweed_builder(false)?;
    Some(Arc::new(builder.build().expect("SeaweedFS client")))
}

/// An Azure builder for Azurite at a fresh prefix, or `None` when Azurite is down.
pub fn azurite_builder() -> Option<S3Builder> {
    if !up(AZURITE) {
        return None;
    }
    Some(
        S3Builder::for_store(StoreKind::Azure, "test")
            .with_prefix(fresh_prefix("az"))
            .with_use_emulator(true)
            .with_endpoint(endpoint(AZURITE))
            .with_allow_http(true),
    )
}

/// A client on Azurite.
pub async fn azurite() -> Option<Arc<dyn StorageClient>> {
    let builder = azurite_builder()?;
    Some(Arc::new(builder.build().expect("Azurite client")))
}

/// A GCS client on fake-gcs-server at `prefix` (read side only, see the crate docs), or
/// `None` when fake-gcs-server is down.
pub fn gcs_at(prefix: &str) -> Option<S3Client> {
    if !up(FAKE_GCS) {
        return None;
    }
    let client = S3Builder::for_store(StoreKind::Gcs, "test")
        .with_prefix(prefix)
        .with_service_account_key(format!(
            r#"{{"gcs_base_url":"{}","disable_oauth":true,"client_email":"","private_key":"","private_key_id":""}}"#,
            endpoint(FAKE_GCS)
        ))
        .with_allow_http(true)
        .build()
        .expect("GCS client");
    Some(client)
}

/// A local-disk client in a fresh temporary directory.
pub async fn local() -> (Arc<dyn StorageClient>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let client = syncengine_backend_local::LocalClient::new(dir.path().join("root"));
    (Arc::new(client), dir)
}

/// Percent-encodes a query value (for the fake-gcs-server JSON API).
pub fn query_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs curl with `args` and returns its stdout; panics when curl fails.
pub fn curl(args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "-S", "--fail-with-body"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?} failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Uploads `body` to fake-gcs-server's bucket `test` under `key`, through its JSON API.
pub fn gcs_seed(key: &str, body: &[u8]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("body");
    std::fs::write(&file, body).expect("write body");
    let url = format!(
        "{}/upload/storage/v1/b/test/o?uploadType=media&name={}",
        endpoint(FAKE_GCS),
        query_encode(key)
    );
    curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", file.display()),
        &url,
    ]);
}
