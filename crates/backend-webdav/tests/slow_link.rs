//! Slow and silent links on WebDAV uploads: an upload is limited by lack of progress, never by
//! its duration. reqwest's read timeout (the idle timeout) used to run unreset from an upload's
//! start until the server's answer, so any upload longer than it failed while bytes still
//! moved.
//!
//! A proxy in front of the real Apache test server throttles the link, or lets an upload go
//! silent half-way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use syncengine_backend_webdav::{WebDavBuilder, WebDavClient};
use syncengine_core::timeouts::Timeouts;
use syncengine_core::{Error, RelPath, StorageClientExt};
use syncengine_test_proxy::{Direction, Matcher, Proxy};

use common::{APACHE, dav};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn content(size: usize) -> Bytes {
    (0..size)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// A client of `root` through `proxy`, with an idle timeout of `idle`.
fn dav_through(proxy: &Proxy, root: &str, idle: Duration) -> WebDavClient {
    let mut builder = WebDavBuilder::from_env()
        .with_url(format!("{}/{root}", proxy.url()))
        .with_allow_insecure_basic(true)
        .with_timeouts(Timeouts {
            connect: Duration::from_secs(5),
            idle,
        });
    if std::env::var(syncengine_backend_webdav::ENV_USER).is_err() {
        builder = builder.with_credentials("dav", "davpass");
    }
    builder.build().unwrap()
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

/// The last bytes of an upload sit in buffers (the system's send buffer: several MiB on
/// loopback) after the client has handed them over; like rclone's, the idle timeout cannot see
/// them drain, so the idle timeout here must be longer than that drain: 16 MiB at 1 MiB/s
/// (at least 16 s) with an idle timeout of 10 s, which the old code applied to the whole
/// upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_longer_than_the_idle_timeout_succeeds_while_bytes_move() {
    let Some(url) = common::server_url(APACHE) else {
        return;
    };
    let root = format!("syncengine-tests/slow-up-{:016x}", rand::random::<u64>());
    let proxy = Proxy::start(&url).unwrap();
    let idle = Duration::from_secs(10);
    let client = dav_through(&proxy, &root, idle);
    let data = content(16 << 20);
    proxy.throttle(Matcher::method("PUT"), 1 << 20);
    let started = Instant::now();
    client
        .put(&p("slow.bin"), data.clone())
        .await
        .expect("a slow, steady upload must succeed");
    let took = started.elapsed();
    assert!(took > idle, "the upload took only {took:?}");
    eprintln!("16 MiB uploaded to Apache at 1 MiB/s in {took:?}");
    let direct = dav(&format!("{}/{root}", url.trim_end_matches('/')));
    assert_eq!(direct.read_to_bytes(&p("slow.bin")).await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_goes_silent_fails_as_transient_and_writes_nothing() {
    let Some(url) = common::server_url(APACHE) else {
        return;
    };
    let root = format!("syncengine-tests/silent-up-{:016x}", rand::random::<u64>());
    let proxy = Proxy::start(&url).unwrap();
    let client = dav_through(&proxy, &root, Duration::from_secs(2));
    // Creates the root folder first, so that only the upload meets the stall.
    client.put(&p("other.txt"), Bytes::from("x")).await.unwrap();
    // The server gets the head and 100 KiB of the body, then nothing more.
    proxy.stall_after(Matcher::method("PUT"), Direction::Request, 100 * 1024);
    let put = tokio::time::timeout(
        Duration::from_secs(120),
        client.put(&p("silent.bin"), content(1 << 20)),
    )
    .await
    .expect("a silent upload hung instead of failing");
    let e = put.expect_err("an upload that went silent half-way cannot succeed");
    assert!(e.is_transient(), "not transient: {e}");
    assert!(chain(&e).contains("no progress"), "{}", chain(&e));
    proxy.clear();
    let direct = dav(&format!("{}/{root}", url.trim_end_matches('/')));
    let after = direct.read_to_bytes(&p("silent.bin")).await;
    assert!(
        matches!(after, Err(Error::NotFound { .. })),
        "a part of the upload was committed: {:?}",
        after.map(|b| b.len())
    );
}
