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

/// The raw names in the collection at `url` (temporary names included), its own entry left
/// out; empty when the server answers 404.
async fn raw_names(url: &str) -> Vec<String> {
    let resp = reqwest::Client::new()
        .request(reqwest::Method::from_bytes(b"PROPFIND").unwrap(), url)
        .basic_auth("dav", Some("davpass"))
        .header("Depth", "1")
        .send()
        .await
        .unwrap();
    if resp.status().as_u16() == 404 {
        return Vec::new();
    }
    assert_eq!(resp.status().as_u16(), 207, "PROPFIND {url}");
    let body = resp.bytes().await.unwrap();
    let base = url::Url::parse(url).unwrap();
    let own = syncengine_backend_webdav::multistatus::decode_href(base.path(), &base)
        .unwrap()
        .0;
    syncengine_backend_webdav::multistatus::parse(&body, &base)
        .unwrap()
        .into_iter()
        .filter(|r| r.segments != own)
        .filter_map(|r| r.segments.last().cloned())
        .collect()
}

/// Red team 11, F3: an upload given up for lack of progress whose body already sat whole in
/// the link's buffers reaches the server after all, and completes there as a full temporary
/// file after the client's delete of it (which found nothing yet). The client remembers the
/// temporary names it gave up on and deletes them again when the engine settles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_up_upload_that_completes_late_leaves_no_temp_after_settle() {
    let Some(url) = common::server_url(APACHE) else {
        return;
    };
    let root = format!("syncengine-tests/late-up-{:016x}", rand::random::<u64>());
    let root_url = format!("{}/{root}/", url.trim_end_matches('/'));
    let proxy = Proxy::start(&url).unwrap();
    let client = dav_through(&proxy, &root, Duration::from_secs(1));
    client.put(&p("other.txt"), Bytes::from("x")).await.unwrap();
    // 64 KiB fit in the loopback buffers at once (the proxy's receive buffer alone holds
    // 128 KiB); at 16 KiB/s they drain in about 4 s, so the client sees no progress for its
    // 1 s idle timeout and gives up, while the proxy still delivers the whole body.
    proxy.throttle(Matcher::method("PUT"), 16 * 1024);
    let e = tokio::time::timeout(
        Duration::from_secs(60),
        client.put(&p("late.bin"), content(64 * 1024)),
    )
    .await
    .expect("a throttled upload hung instead of giving up")
    .expect_err("the upload was not given up: the test needs a stall");
    assert!(chain(&e).contains("no progress"), "{}", chain(&e));
    // The late completion: the temp file appears on the server after the client gave up.
    let mut waited = 0;
    let temp = loop {
        let names = raw_names(&root_url).await;
        if let Some(t) = names.iter().find(|n| n.starts_with(".syncengine-tmp-")) {
            break t.clone();
        }
        waited += 1;
        assert!(
            waited < 300,
            "the given-up upload never completed late: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("late temp {temp} appeared after {} ms", waited * 100);
    proxy.clear();
    syncengine_core::StorageClient::settle(&client, Duration::from_secs(10)).await;
    let names = raw_names(&root_url).await;
    assert!(
        !names.iter().any(|n| n.starts_with(".syncengine-tmp-")),
        "the given-up upload's temp file stayed after settle: {names:?}"
    );
    assert!(names.contains(&"other.txt".to_owned()), "{names:?}");
}
