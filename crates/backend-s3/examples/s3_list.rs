//! Lists a root the way a sync reads it (the client's own `list`), printing one line per
//! file (`size path`), and the count and time on stderr: the figure `bench/s3_speed.sh`
//! puts beside `s5cmd ls`.
//!
//! `cargo run --release -p syncengine-backend-s3 --example s3_list -- s3://bucket/prefix`;
//! the store's settings come from the environment, as the CLI reads them
//! ([`S3Builder::from_env`]).

// An example: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;
use std::time::Instant;

use futures::StreamExt;
use syncengine_backend_s3::S3Builder;
use syncengine_core::StorageClient;

#[tokio::main]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .expect("usage: s3_list s3://bucket/prefix");
    let client = S3Builder::from_env(&url)
        .expect("settings")
        .build()
        .expect("client");
    let started = Instant::now();
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let (mut files, mut unknown) = (0u64, 0u64);
    let mut listing = client.list(None);
    while let Some(item) = listing.next().await {
        match item {
            Ok(e) => {
                files += 1;
                writeln!(out, "{} {}", e.size, e.path).unwrap();
            }
            Err(e) if e.is_unlisted() => unknown += 1,
            Err(e) => panic!("listing failed: {e}"),
        }
    }
    out.flush().unwrap();
    eprintln!(
        "{files} files, {unknown} unknown, in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}
