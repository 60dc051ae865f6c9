//! Red-team (issue 8, round 3) on S3 (moto): folder markers (2221032) next to a file of the
//! same name.

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use syncengine_backend_local::LocalClient;
use syncengine_backend_s3::{S3Builder, StoreKind};
use syncengine_core::{RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair};

use common::MOTO;

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// PUTs a zero-byte object under `key` with a signed raw request (object_store cannot: its
/// paths drop a trailing `/`).
fn put_marker(key: &str) {
    let (id, secret) = common::s3_keys();
    let url = format!("{}/test/{key}", common::endpoint(MOTO));
    common::curl(&[
        "--aws-sigv4",
        "aws:amz:us-east-1:s3",
        "--user",
        &format!("{id}:{secret}"),
        "-X",
        "PUT",
        "-H",
        "Content-Length: 0",
        "--data-binary",
        "",
        &url,
    ]);
}

/// A bucket holding an object `photos` and a folder marker `photos/` (two tools that mark
/// folders differently: old s3fs-style `photos`, the console's `photos/`; or a file named like
/// a folder). The marker lists as a second `photos` (object_store drops the `/`), and the HEAD
/// that is meant to tell a marker from a real empty file finds the real `photos`, so the marker
/// is kept: the listing has `photos` twice, and every run of the pair fails before planning —
/// nothing syncs at all, unrelated files included — with advice (`--sort-listings`) that
/// does not help.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_next_to_a_file_of_the_same_name_does_not_block_the_pair() {
    if !common::up(MOTO) {
        return;
    }
    let prefix = common::fresh_prefix("marker-twin");
    let (id, secret) = common::s3_keys();
    let client: Arc<dyn StorageClient> = Arc::new(
        S3Builder::for_store(StoreKind::S3, "test")
            .with_prefix(&prefix)
            .with_endpoint(common::endpoint(MOTO))
            .with_region("us-east-1")
            .with_credentials(id, secret)
            .with_allow_http(true)
            .build()
            .unwrap(),
    );
    client
        .put(&p("photos"), Bytes::from("a file named photos"))
        .await
        .unwrap();
    put_marker(&format!("{prefix}/photos/"));
    client
        .put(&p("report.txt"), Bytes::from("unrelated"))
        .await
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(&local_root).unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        client.clone(),
        SyncMode::TwoWay,
    );
    let result = engine.sync_pair(&pair).await;
    assert!(
        result.is_ok(),
        "the whole run failed on a folder marker next to a file: {result:?}"
    );
    assert_eq!(
        std::fs::read_to_string(local_root.join("report.txt")).unwrap(),
        "unrelated"
    );
    assert_eq!(
        std::fs::read_to_string(local_root.join("photos")).unwrap(),
        "a file named photos"
    );
}
