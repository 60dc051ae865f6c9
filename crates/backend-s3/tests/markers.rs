//! Folder markers: zero-byte objects whose key ends in `/` (`photos/`), which the AWS and GCS
//! consoles' "Create folder" and many S3 GUIs make. They are not files: a listing leaves
//! them out (as rclone does), while a real empty file is still listed (moto and SeaweedFS).

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use syncengine_backend_local::LocalClient;
use syncengine_backend_s3::{S3Builder, StoreKind};
use syncengine_core::{RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair};

use common::{MOTO, SEAWEED, Server};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn keys(server: Server) -> (String, String) {
    if server == SEAWEED {
        ("weedak".to_owned(), "weedsk".to_owned())
    } else {
        common::s3_keys()
    }
}

/// PUTs a zero-byte object under `key` with a signed raw request (object_store cannot: its
/// paths drop a trailing `/`).
fn put_marker(server: Server, key: &str) {
    let (id, secret) = keys(server);
    let url = format!("{}/test/{key}", common::endpoint(server));
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

async fn listed(client: &dyn StorageClient, prefix: Option<&str>) -> Vec<String> {
    let prefix = prefix.map(p);
    let mut out = Vec::new();
    let mut list = client.list(prefix.as_ref());
    while let Some(item) = list.next().await {
        out.push(item.unwrap().path.into_string());
    }
    out.sort();
    out
}

async fn markers_are_not_listed(server: Server, mtime_from_metadata: bool) {
    if !common::up(server) {
        return;
    }
    let prefix = common::fresh_prefix("markers");
    // The root's own marker, a folder with a marker and a file, a marker-only folder, and a
    // marker below a folder that holds nothing else.
    for marker in ["", "photos/", "empty/", "deep/er/"] {
        put_marker(server, &format!("{prefix}/{marker}"));
    }
    let (id, secret) = keys(server);
    let client: Arc<dyn StorageClient> = Arc::new(
        S3Builder::for_store(StoreKind::S3, "test")
            .with_prefix(&prefix)
            .with_endpoint(common::endpoint(server))
            .with_region("us-east-1")
            .with_credentials(id, secret)
            .with_allow_http(true)
            .with_ordered_listing(server != SEAWEED)
            .with_mtime_from_metadata(mtime_from_metadata)
            .build()
            .unwrap(),
    );
    client
        .put(&p("photos/1.jpg"), Bytes::from("one"))
        .await
        .unwrap();
    // A real empty file is a file, markers or not.
    client.put(&p("empty.txt"), Bytes::new()).await.unwrap();
    client.put(&p("photos/none"), Bytes::new()).await.unwrap();

    assert_eq!(
        listed(client.as_ref(), None).await,
        ["empty.txt", "photos/1.jpg", "photos/none"]
    );
    assert_eq!(
        listed(client.as_ref(), Some("photos")).await,
        ["photos/1.jpg", "photos/none"]
    );
    assert!(listed(client.as_ref(), Some("empty")).await.is_empty());
    assert!(listed(client.as_ref(), Some("deep")).await.is_empty());

    // A sync with a local folder is clean, twice, and brings the files only.
    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(&local_root).unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        client.clone(),
        SyncMode::TwoWay,
    );
    for run in 0..2 {
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(stats.errors, 0, "run {run}: {:?}", stats.error_messages);
    }
    assert_eq!(
        std::fs::read_to_string(local_root.join("photos/1.jpg")).unwrap(),
        "one"
    );
    assert!(!local_root.join("empty").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_markers_are_not_listed_moto() {
    markers_are_not_listed(MOTO, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_markers_are_not_listed_moto_mtime_metadata() {
    markers_are_not_listed(MOTO, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_markers_are_not_listed_seaweedfs() {
    markers_are_not_listed(SEAWEED, false).await;
}
