//! The issue-9 figure for slow links: uploads `SIZE_MIB` (default 12) MiB to S3 (moto on
//! 127.0.0.1:9100, or `SYNCENGINE_TEST_S3_ENDPOINT`) through the test proxy throttled to
//! `RATE_KIB` (default 256) KiB/s per connection, with the client's default timeouts and
//! part size, reads it back through the same link, and prints both durations.
//!
//! Run by `bench/slow_link.sh`: `cargo run -p syncengine-backend-s3 --example
//! slow_link_figure -- [SIZE_MIB] [RATE_KIB]`.

// An example: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Instant;

use bytes::Bytes;
use syncengine_backend_s3::{S3Builder, StoreKind};
use syncengine_core::{RelPath, StorageClientExt};
use syncengine_test_proxy::{Matcher, Proxy};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let size_mib: usize = args.next().map_or(12, |a| a.parse().expect("SIZE_MIB"));
    let rate_kib: u64 = args.next().map_or(256, |a| a.parse().expect("RATE_KIB"));
    let endpoint = std::env::var("SYNCENGINE_TEST_S3_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:9100".to_owned());
    let proxy = Proxy::start(&endpoint).expect("start the proxy");
    let client = S3Builder::for_store(StoreKind::S3, "test")
        .with_prefix(format!("bench-slow-{:016x}", std::process::id()))
        .with_endpoint(proxy.url())
        .with_region("us-east-1")
        .with_credentials("a", "b")
        .with_allow_http(true)
        .build()
        .expect("client");
    let content: Bytes = (0..size_mib << 20)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let path = RelPath::new("slow.bin").unwrap();
    proxy.throttle(Matcher::any(), rate_kib * 1024);
    let started = Instant::now();
    let up = client.put(&path, content.clone()).await;
    let up_took = started.elapsed();
    println!(
        "upload {size_mib} MiB at {rate_kib} KiB/s per connection: {:.1} s, {}",
        up_took.as_secs_f64(),
        if up.is_ok() { "succeeded" } else { "FAILED" }
    );
    if let Err(e) = &up {
        println!("  error: {e}");
    }
    let started = Instant::now();
    let down = client.read_to_bytes(&path).await;
    let down_took = started.elapsed();
    let same = down.as_ref().is_ok_and(|d| *d == content);
    println!(
        "download {size_mib} MiB at {rate_kib} KiB/s per connection: {:.1} s, {}",
        down_took.as_secs_f64(),
        if same {
            "succeeded, content equal"
        } else {
            "FAILED"
        }
    );
    proxy.clear();
    let _ = client.delete(&path).await;
    if up.is_err() || !same {
        std::process::exit(1);
    }
}
