//! Slow and silent links: a request is limited by lack of progress, never by its duration.
//!
//! A proxy in front of moto throttles the link, or lets a transfer go silent half-way. With an
//! idle timeout of 2 s, a transfer that takes over 30 s (object_store's default total timeout,
//! which failed every such transfer before) succeeds as long as bytes keep moving; one that
//! stops moving fails as a transient error within a few idle periods, never hangs, and leaves
//! nothing half-written.

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use syncengine_backend_s3::{S3Builder, S3Client, StoreKind};
use syncengine_core::timeouts::Timeouts;
use syncengine_core::{Error, RelPath, StorageClientExt};
use syncengine_test_proxy::{Direction, Matcher, Proxy};

use common::MOTO;

/// The idle timeout of these tests.
const IDLE: Duration = Duration::from_secs(2);
/// 1 MiB at 30 KiB/s: about 34 s, longer than object_store's default total timeout.
const SIZE: usize = 1 << 20;
const RATE: u64 = 30 * 1024;

fn client_through(proxy: &Proxy, tag: &str, idle: Duration) -> S3Client {
    let (id, secret) = common::s3_keys();
    S3Builder::for_store(StoreKind::S3, "test")
        .with_prefix(common::fresh_prefix(tag))
        .with_endpoint(proxy.url())
        .with_region("us-east-1")
        .with_credentials(id, secret)
        .with_allow_http(true)
        .with_timeouts(Timeouts {
            connect: Duration::from_secs(5),
            idle,
        })
        .with_retries(1, Duration::from_secs(30))
        .build()
        .unwrap()
}

fn content(size: usize) -> Bytes {
    (0..size)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Every cause in `e`'s chain, for asserting what the error says.
fn chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(" / ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// An upload's last bytes sit in buffers (the system's send buffer: up to 4 MiB here) after
/// the client has handed them over; like rclone's, the idle timeout cannot see them drain, so
/// it must be longer than that drain here: 31 MiB in one request (parts of 32 MiB) at 1 MiB/s,
/// at least 31 s, with an idle timeout of 10 s.
const UPLOAD_SIZE: usize = 31 << 20;
const UPLOAD_RATE: u64 = 1 << 20;
const UPLOAD_IDLE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_longer_than_any_timeout_succeeds_while_bytes_move() {
    if !common::up(MOTO) {
        return;
    }
    let proxy = Proxy::start(&common::endpoint(MOTO)).unwrap();
    let (id, secret) = common::s3_keys();
    let client = S3Builder::for_store(StoreKind::S3, "test")
        .with_prefix(common::fresh_prefix("slow-up"))
        .with_endpoint(proxy.url())
        .with_region("us-east-1")
        .with_credentials(id, secret)
        .with_allow_http(true)
        .with_timeouts(Timeouts {
            connect: Duration::from_secs(5),
            idle: UPLOAD_IDLE,
        })
        .with_multipart(32 << 20, 1)
        .with_upload_buffer(64 << 20)
        .build()
        .unwrap();
    let path = RelPath::new("slow.bin").unwrap();
    proxy.throttle(Matcher::method("PUT"), UPLOAD_RATE);
    let content = content(UPLOAD_SIZE);
    let started = Instant::now();
    client
        .put(&path, content.clone())
        .await
        .expect("a slow, steady upload must succeed");
    let took = started.elapsed();
    // The link really was slow: longer than object_store's 30 s (and than the idle timeout).
    assert!(
        took > Duration::from_secs(30),
        "the upload took only {took:?}"
    );
    eprintln!("31 MiB uploaded at 1 MiB/s in {took:?}");
    proxy.clear();
    assert_eq!(client.read_to_bytes(&path).await.unwrap(), content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_longer_than_any_timeout_succeeds_while_bytes_move() {
    if !common::up(MOTO) {
        return;
    }
    let proxy = Proxy::start(&common::endpoint(MOTO)).unwrap();
    let client = client_through(&proxy, "slow-down", IDLE);
    let path = RelPath::new("slow.bin").unwrap();
    client.put(&path, content(SIZE)).await.unwrap();
    proxy.throttle(Matcher::method("GET"), RATE);
    let started = Instant::now();
    let got = client
        .read_to_bytes(&path)
        .await
        .expect("a slow, steady download must succeed");
    let took = started.elapsed();
    assert!(
        took > Duration::from_secs(30),
        "the download took only {took:?}"
    );
    assert_eq!(got, content(SIZE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_goes_silent_fails_as_transient_instead_of_hanging() {
    if !common::up(MOTO) {
        return;
    }
    let proxy = Proxy::start(&common::endpoint(MOTO)).unwrap();
    let client = client_through(&proxy, "silent-down", IDLE);
    let path = RelPath::new("silent.bin").unwrap();
    client.put(&path, content(SIZE)).await.unwrap();
    // The head and part of the body arrive, then nothing: the connection stays open.
    proxy.stall_after(Matcher::method("GET"), Direction::Answer, 200 * 1024);
    let read = tokio::time::timeout(Duration::from_secs(120), client.read_to_bytes(&path))
        .await
        .expect("a silent download hung instead of failing");
    let e = read.expect_err("a download that went silent half-way cannot succeed");
    assert!(e.is_transient(), "not transient: {e}");
    assert!(chain(&e).contains("no progress"), "{}", chain(&e));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_goes_silent_fails_as_transient_and_writes_nothing() {
    if !common::up(MOTO) {
        return;
    }
    let proxy = Proxy::start(&common::endpoint(MOTO)).unwrap();
    let client = client_through(&proxy, "silent-up", IDLE);
    let path = RelPath::new("silent.bin").unwrap();
    // The server never gets more than the head and 100 KiB of the body.
    proxy.stall_after(Matcher::method("PUT"), Direction::Request, 100 * 1024);
    let put = tokio::time::timeout(Duration::from_secs(120), client.put(&path, content(SIZE)))
        .await
        .expect("a silent upload hung instead of failing");
    let e = put.expect_err("an upload that went silent half-way cannot succeed");
    assert!(e.is_transient(), "not transient: {e}");
    assert!(chain(&e).contains("no progress"), "{}", chain(&e));
    proxy.clear();
    let after = client.read_to_bytes(&path).await;
    assert!(
        matches!(after, Err(Error::NotFound { .. })),
        "a part of the upload was committed: {:?}",
        after.map(|b| b.len())
    );
}
