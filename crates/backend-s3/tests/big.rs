//! Large bodies on moto: a 64 MiB local → S3 → local round trip through the engine, and a
//! multipart upload killed midway that must leave nothing behind.

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use syncengine_core::{
    ByteStream, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair,
    WriteOptions,
};

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761) as u8 ^ (i >> 17) as u8)
        .collect()
}

/// 64 MiB: local → S3 (multipart) → another local directory, compared by MD5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_64_mib_through_s3() {
    let Some(s3) = common::moto().await else {
        return;
    };
    let (src, _d1) = common::local().await;
    let (dst, _d2) = common::local().await;
    let data = pattern(64 * 1024 * 1024);
    let want: [u8; 16] = Md5::digest(&data).into();
    let path = RelPath::new("big/64mib.bin").unwrap();
    src.put(&path, Bytes::from(data)).await.unwrap();

    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let up = engine
        .sync_pair(&SyncPair::new(
            src.clone(),
            s3.clone(),
            SyncMode::SourceToDestination,
        ))
        .await
        .unwrap();
    assert_eq!((up.uploaded, up.errors), (1, 0), "{up:?}");
    let listed = s3.stat(&path).await.unwrap();
    assert_eq!(listed.size, 64 * 1024 * 1024);
    assert!(
        listed.etag.as_deref().is_some_and(|e| e.contains('-')),
        "a 64 MiB body must go up as multipart: etag {:?}",
        listed.etag
    );
    assert_eq!(
        listed.hash, None,
        "a multipart ETag is never taken for an MD5"
    );

    let down = engine
        .sync_pair(&SyncPair::new(
            s3.clone(),
            dst.clone(),
            SyncMode::SourceToDestination,
        ))
        .await
        .unwrap();
    assert_eq!(
        (down.downloaded + down.uploaded, down.errors),
        (1, 0),
        "{down:?}"
    );
    let got = dst.md5(&path).await.unwrap();
    assert_eq!(
        got,
        syncengine_core::ContentHash::Md5(want),
        "MD5 after local → S3 → local"
    );
}

/// Lists the in-progress multipart uploads (S3 ListMultipartUploads, signed by curl so MinIO
/// answers too) in bucket `test` whose key starts with `prefix`.
fn open_uploads(prefix: &str) -> usize {
    let (id, secret) = common::s3_keys();
    let xml = common::curl(&[
        "--aws-sigv4",
        "aws:amz:us-east-1:s3",
        "--user",
        &format!("{id}:{secret}"),
        &format!(
            "{}/test?uploads&prefix={}",
            common::endpoint(common::MOTO),
            common::query_encode(prefix)
        ),
    ]);
    assert!(
        xml.contains("ListMultipartUploadsResult"),
        "unexpected answer: {xml}"
    );
    xml.matches("<UploadId>").count()
}

/// A multipart upload whose write future is dropped after a few parts: nothing appears under
/// the final key, the old content stays, and no multipart upload is left open on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_multipart_upload_leaves_nothing() {
    let Some(builder) = common::moto_builder() else {
        return;
    };
    let builder = builder.with_multipart(5 * 1024 * 1024, 2);
    let prefix = builder.config().prefix.clone();
    let client = builder.build().unwrap();
    let path = RelPath::new("killed.bin").unwrap();
    let fresh = RelPath::new("fresh.bin").unwrap();
    client.put(&path, Bytes::from_static(b"old")).await.unwrap();

    for target in [&path, &fresh] {
        // Four 5 MiB parts' worth, then a body that never ends.
        let chunks: Vec<syncengine_core::Result<Bytes>> = (0..4)
            .map(|_| Ok(Bytes::from(vec![7u8; 5 * 1024 * 1024])))
            .collect();
        let body: ByteStream = futures::stream::iter(chunks)
            .chain(futures::stream::pending())
            .boxed();
        let write = client.write_opts(target, body, WriteOptions::default());
        let mut write = Box::pin(write);
        // Let it start the upload and send parts.
        let started = tokio::time::timeout(Duration::from_secs(3), &mut write).await;
        assert!(started.is_err(), "a body that never ends cannot complete");
        assert!(
            open_uploads(&prefix) >= 1,
            "the test must kill a multipart upload that really started"
        );
        drop(write);
    }
    // The abort runs on a spawned task; give it a moment.
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = open_uploads(&prefix);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "killed multipart uploads must be aborted");
    assert_eq!(
        client.read_to_bytes(&path).await.unwrap(),
        "old",
        "old content kept"
    );
    assert!(
        client.stat(&fresh).await.unwrap_err().is_not_found(),
        "nothing under the new key"
    );
    let names: Vec<String> = client
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path.into_string())
        .collect();
    assert_eq!(names, ["killed.bin"]);
}

/// A body that fails after several parts: the write fails, and the upload is aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_multipart_body_aborts_the_upload() {
    let Some(builder) = common::moto_builder() else {
        return;
    };
    let builder = builder.with_multipart(5 * 1024 * 1024, 2);
    let prefix = builder.config().prefix.clone();
    let client = builder.build().unwrap();
    let mut chunks: Vec<syncengine_core::Result<Bytes>> = (0..3)
        .map(|_| Ok(Bytes::from(vec![1u8; 5 * 1024 * 1024])))
        .collect();
    chunks.push(Err(syncengine_core::Error::other(
        "test",
        "x",
        "body failed on purpose",
    )));
    let body: ByteStream = futures::stream::iter(chunks).boxed();
    let path = RelPath::new("x").unwrap();
    let err = client
        .write_opts(&path, body, WriteOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("on purpose"),
        "the body's error is returned: {err}"
    );
    assert_eq!(open_uploads(&prefix), 0, "the upload was aborted");
    assert!(client.stat(&path).await.unwrap_err().is_not_found());
}
