//! Modification times travel through S3 as rclone's `mtime` metadata: a file synced
//! local → S3 → another local folder keeps its original time, although S3 listings only carry
//! the upload time (the engine asks for the recorded time of each file it copies).

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use syncengine_backend_local::LocalClient;
use syncengine_core::{StorageClientExt, SyncEngine, SyncMode, SyncPair};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_keeps_the_original_mtime() {
    let Some(s3) = common::moto().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    let old = UNIX_EPOCH + Duration::from_secs(1_000_000_000); // 2001-09-09
    let file = a.join("photo.jpg");
    std::fs::write(&file, b"pixels").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(old)
        .unwrap();

    let engine = SyncEngine::new(tmp.path().join("state"));
    let up = SyncPair::new(
        Arc::new(LocalClient::new(&a)),
        s3.clone(),
        SyncMode::SourceToDestination,
    );
    assert_eq!(engine.sync_pair(&up).await.unwrap().uploaded, 1);
    let listed = s3.list_all(None).await.unwrap();
    assert!(
        listed[0].mtime.unwrap() > SystemTime::now() - Duration::from_secs(3600),
        "the listing carries the upload time, not the file's own"
    );

    let down = SyncPair::new(
        s3.clone(),
        Arc::new(LocalClient::new(&b)),
        SyncMode::SourceToDestination,
    );
    assert_eq!(engine.sync_pair(&down).await.unwrap().uploaded, 1);
    let got = std::fs::metadata(b.join("photo.jpg"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(got, old, "the download lost the original modification time");
}
