//! Upload memory: all uploads of one client share one budget of part buffers (default 32
//! MiB, four 8 MiB parts), so concurrent transfers do not multiply it. A proxy in front of
//! moto holds every part upload: the parts that reach it at once are the parts buffered at
//! once.

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use syncengine_backend_s3::{DEFAULT_PART_SIZE, S3Builder, S3Client, StoreKind};
use syncengine_core::{ByteStream, RelPath, StorageClient, StorageClientExt, WriteOptions};
use syncengine_test_proxy::{Matcher, Proxy};

use common::MOTO;

const UPLOADS: usize = 8;
const SIZE: usize = 3 * DEFAULT_PART_SIZE - 1024;

fn body(seed: u8) -> ByteStream {
    let chunk = Bytes::from(vec![seed; 64 * 1024]);
    let mut left = SIZE;
    futures::stream::iter(std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(chunk.len());
        left -= n;
        Some(Ok(chunk.slice(0..n)))
    }))
    .boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_share_one_buffer_budget() {
    if !common::up(MOTO) {
        return;
    }
    let proxy = Proxy::start(&common::endpoint(MOTO)).unwrap();
    let parts = Matcher::method("PUT").path_contains("partNumber=");
    // Every part upload of all the uploads: 3 parts each.
    for _ in 0..UPLOADS * 3 {
        proxy.hold(parts.clone());
    }
    let (id, secret) = common::s3_keys();
    let client: S3Client = S3Builder::for_store(StoreKind::S3, "test")
        .with_prefix(common::fresh_prefix("budget"))
        .with_endpoint(proxy.url())
        .with_region("us-east-1")
        .with_credentials(id, secret)
        .with_allow_http(true)
        .with_timeouts(syncengine_core::timeouts::Timeouts {
            connect: Duration::from_secs(60),
            idle: Duration::from_secs(120),
        })
        .build()
        .unwrap();
    let client = Arc::new(client);
    let mut uploads = Vec::new();
    for i in 0..UPLOADS {
        let client = client.clone();
        uploads.push(tokio::spawn(async move {
            let path = RelPath::new(format!("f{i}")).unwrap();
            let opts = WriteOptions::default().with_size_hint(SIZE as u64);
            client
                .write_opts(&path, body(b'a' + u8::try_from(i).unwrap()), opts)
                .await
        }));
    }
    // Whatever reaches the proxy while it holds every part is all that may be buffered.
    proxy.held_within(64, Duration::from_secs(5)).await;
    let at_once = proxy.held();
    // The default budget is four default parts; the old code let each upload hold two
    // parts uploading and one filling (8 × 2 parts reached the server).
    assert!(
        (1..=4).contains(&at_once),
        "{at_once} parts of {} MiB were held in memory at once",
        DEFAULT_PART_SIZE >> 20
    );
    for _ in 0..UPLOADS * 3 {
        proxy.release();
    }
    for (i, up) in uploads.into_iter().enumerate() {
        let entry = up.await.unwrap().unwrap();
        assert_eq!(entry.size, SIZE as u64, "f{i}");
    }
    for i in 0..UPLOADS {
        let got = client
            .read_to_bytes(&RelPath::new(format!("f{i}")).unwrap())
            .await
            .unwrap();
        assert_eq!(got.len(), SIZE);
        assert!(got.iter().all(|&b| b == b'a' + u8::try_from(i).unwrap()));
    }
}
