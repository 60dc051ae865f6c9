//! Error kinds the executor acts on: a TLS failure is not transient (every retry meets the
//! same certificate or protocol mismatch), so the run names it instead of retrying it and then
//! taking the side for unreachable mid-run; a body cut short is transient.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use syncengine_backend_s3::{S3Builder, StoreKind};
use syncengine_core::{RelPath, StorageClient, StorageClientExt};
use syncengine_test_proxy::{Matcher, Proxy};

use common::MOTO;

/// `https://` to moto's plain-HTTP port: the TLS handshake meets an HTTP answer.
#[tokio::test]
async fn a_tls_failure_is_not_transient() {
    if !common::up(MOTO) {
        return;
    }
    let endpoint = common::endpoint(MOTO).replacen("http://", "https://", 1);
    let (id, secret) = common::s3_keys();
    let client = S3Builder::for_store(StoreKind::S3, "test")
        .with_prefix(common::fresh_prefix("tls"))
        .with_endpoint(&endpoint)
        .with_region("us-east-1")
        .with_credentials(id, secret)
        .with_retries(1, Duration::from_secs(2))
        .build()
        .unwrap();
    let err = client
        .stat(&RelPath::new("a.txt").unwrap())
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("TLS failed"), "{err}");
}

/// A download whose body ends before its `Content-Length` (the connection closed half way) is
/// transient: another try may get it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_is_transient() {
    if !common::up(MOTO) {
        return;
    }
    let proxy = Proxy::start(&common::endpoint(MOTO)).unwrap();
    let (id, secret) = common::s3_keys();
    let client = S3Builder::for_store(StoreKind::S3, "test")
        .with_prefix(common::fresh_prefix("cut"))
        .with_endpoint(proxy.url())
        .with_region("us-east-1")
        .with_credentials(id, secret)
        .with_allow_http(true)
        .with_retries(1, Duration::from_secs(2))
        .build()
        .unwrap();
    let path = RelPath::new("a.txt").unwrap();
    let entry = client
        .put(&path, Bytes::from(vec![b'a'; 1000]))
        .await
        .unwrap();
    let etag = entry.etag.clone().unwrap_or_default();
    proxy.answer(Matcher::method("GET").path_contains("/a.txt"), move |_| {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 1000\r\n\
             Content-Range: bytes 0-999/1000\r\nETag: \"{}\"\r\n\
             Last-Modified: Thu, 01 Jan 2026 00:00:00 GMT\r\nConnection: close\r\n\r\naaaaaaaaaa",
            etag.trim_matches('"')
        )
    });
    let err = client.read_to_bytes(&path).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}
