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

/// Sends a raw signed request (`method`, empty body) for `key` and returns the HTTP status.
fn raw_status(server: Server, method: &str, key: &str) -> u16 {
    let (id, secret) = keys(server);
    let url = format!("{}/test/{key}", common::endpoint(server));
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--aws-sigv4"])
        .args(["aws:amz:us-east-1:s3", "--user", &format!("{id}:{secret}")])
        .args(["-X", method, "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .args(if method == "PUT" {
            &["-H", "Content-Length: 0", "--data-binary", ""][..]
        } else if method == "HEAD" {
            &["-I"][..]
        } else {
            &[][..]
        })
        .arg(&url)
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout)
        .parse()
        .expect("status")
}

async fn listed_sizes(client: &dyn StorageClient) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut list = client.list(None);
    while let Some(item) = list.next().await {
        let e = item.unwrap();
        // The engine's own files (the root's identity) are not the user's.
        if !e.path.as_str().starts_with(".syncengine/") {
            out.push((e.path.into_string(), e.size));
        }
    }
    out.sort();
    out
}

/// Objects next to folder markers of the same name (`photos` + `photos/`, and a zero-byte
/// `empty` + `empty/`: two tools marking folders differently), with `photos.txt` between
/// the twins in key order. Each name lists once, as the object; the pair syncs; deleting
/// the files locally deletes exactly those objects (the markers stay, and are not listed
/// afterwards); the real empty file is never dropped from a listing or deleted while it
/// exists locally. SeaweedFS keeps a folder and a file of one name apart (it refuses the
/// second or replaces the first): there the same runs must work with whatever it kept.
async fn objects_next_to_their_markers(server: Server, mtime_from_metadata: bool) {
    if !common::up(server) {
        return;
    }
    let prefix = common::fresh_prefix("twins");
    let (id, secret) = keys(server);
    let client: Arc<dyn StorageClient> = Arc::new(
        S3Builder::for_store(StoreKind::S3, "test")
            .with_prefix(&prefix)
            .with_endpoint(common::endpoint(server))
            .with_region("us-east-1")
            .with_credentials(id, secret)
            .with_allow_http(true)
            .with_ordered_listing(server != SEAWEED)
            .with_encode_backslash(server == SEAWEED)
            .with_mtime_from_metadata(mtime_from_metadata)
            .build()
            .unwrap(),
    );
    let photos = "a file named photos";
    client.put(&p("photos"), Bytes::from(photos)).await.unwrap();
    client.put(&p("empty"), Bytes::new()).await.unwrap();
    client
        .put(&p("photos.txt"), Bytes::from("t"))
        .await
        .unwrap();
    client
        .put(&p("report.txt"), Bytes::from("unrelated"))
        .await
        .unwrap();
    let mut markers = Vec::new();
    for name in ["photos/", "empty/"] {
        let key = format!("{prefix}/{name}");
        if raw_status(server, "PUT", &key) == 200 && raw_status(server, "HEAD", &key) == 200 {
            markers.push(key);
        }
    }
    if server == MOTO {
        assert_eq!(markers.len(), 2, "moto holds both twins");
    }
    let files = vec![
        ("empty".to_owned(), 0),
        ("photos".to_owned(), photos.len() as u64),
        ("photos.txt".to_owned(), 1),
        ("report.txt".to_owned(), 9),
    ];
    assert_eq!(listed_sizes(client.as_ref()).await, files);
    let empty = client.stat(&p("empty")).await.unwrap();
    let listed_empty = {
        let mut list = client.list(None);
        let mut found = None;
        while let Some(item) = list.next().await {
            let e = item.unwrap();
            if e.path.as_str() == "empty" {
                found = Some(e);
            }
        }
        found.unwrap()
    };
    assert_eq!(
        listed_empty.etag, empty.etag,
        "the empty file as stat sees it"
    );

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
        std::fs::read_to_string(local_root.join("photos")).unwrap(),
        photos
    );
    assert_eq!(std::fs::read(local_root.join("empty")).unwrap(), b"");
    assert_eq!(listed_sizes(client.as_ref()).await, files);

    // Deleting `photos` locally deletes the object `photos` only.
    std::fs::remove_file(local_root.join("photos")).unwrap();
    for run in 0..2 {
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(stats.errors, 0, "run {run}: {:?}", stats.error_messages);
    }
    assert_eq!(
        listed_sizes(client.as_ref()).await,
        files[0..1]
            .iter()
            .chain(&files[2..])
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(std::fs::read(local_root.join("empty")).unwrap(), b"");
    // And `empty` too: then nothing of either name is listed or comes back.
    std::fs::remove_file(local_root.join("empty")).unwrap();
    for run in 0..2 {
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(stats.errors, 0, "run {run}: {:?}", stats.error_messages);
    }
    assert_eq!(listed_sizes(client.as_ref()).await, files[2..].to_vec());
    assert!(!local_root.join("photos").exists() && !local_root.join("empty").exists());
    assert_eq!(
        std::fs::read_to_string(local_root.join("report.txt")).unwrap(),
        "unrelated"
    );
    for key in &markers {
        assert_eq!(raw_status(server, "HEAD", key), 200, "marker {key} stays");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_next_to_their_markers_moto() {
    objects_next_to_their_markers(MOTO, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_next_to_their_markers_moto_mtime_metadata() {
    objects_next_to_their_markers(MOTO, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_next_to_their_markers_seaweedfs() {
    objects_next_to_their_markers(SEAWEED, false).await;
}
