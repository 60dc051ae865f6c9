//! Unfinished multipart uploads: `clean_up` aborts those under the root's prefix older than
//! the age, and nothing else; a run cancelled in the middle of a multipart upload aborts it
//! before it returns, even when the program drops its runtime right after (the CLI on
//! Ctrl-C). Needs moto (and SeaweedFS for the age check: moto reports a fixed initiation
//! time of 2010 for every upload).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use syncengine_backend_local::LocalClient;
use syncengine_backend_s3::{S3Builder, S3Client, StoreKind};
use syncengine_core::cleanup::{CleanupOptions, LeftoverKind};
use syncengine_core::timeouts::Timeouts;
use syncengine_core::{
    RelPath, StorageClient, StorageClientExt, SyncEngine, SyncError, SyncMode, SyncPair,
};
use syncengine_test_proxy::{Matcher, Proxy};

use common::MOTO;

/// Starts a multipart upload of `key` (under the client's bucket, raw) and leaves it
/// unfinished: object_store does not abort an upload it drops.
async fn start_upload(client: &S3Client, key: &str) {
    let store = client.object_store();
    let upload = store
        .put_multipart(&Path::parse(key).unwrap())
        .await
        .unwrap();
    drop(upload);
}

/// The keys of the uploads `clean_up` would abort (any age).
async fn pending(client: &S3Client) -> Vec<String> {
    let opts = CleanupOptions::new(Duration::from_millis(1)).with_dry_run(true);
    let mut keys: Vec<String> = client
        .clean_up(&opts)
        .await
        .unwrap()
        .found
        .into_iter()
        .map(|l| {
            assert_eq!(l.kind, LeftoverKind::MultipartUpload);
            l.location
        })
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn unfinished_uploads_under_the_root_are_aborted_and_nothing_else() {
    let Some(builder) = common::moto_builder() else {
        return;
    };
    let client = builder.build().unwrap();
    let prefix = client.config().prefix.clone();
    // A sibling root whose prefix starts with this one's: not under it.
    let (id, secret) = common::s3_keys();
    let sibling = S3Builder::for_store(StoreKind::S3, "test")
        .with_prefix(format!("{prefix}x"))
        .with_endpoint(common::endpoint(MOTO))
        .with_region("us-east-1")
        .with_credentials(id, secret)
        .with_allow_http(true)
        .build()
        .unwrap();
    let user = RelPath::new("user.bin").unwrap();
    client.put(&user, Bytes::from("mine")).await.unwrap();
    start_upload(&client, &format!("{prefix}/a b.bin")).await;
    start_upload(&client, &format!("{prefix}/.syncengine/trash/x.bin")).await;
    start_upload(&client, &format!("{prefix}x/b.bin")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let opts = CleanupOptions::new(Duration::from_secs(1));
    let dry = client
        .clean_up(&opts.clone().with_dry_run(true))
        .await
        .unwrap();
    assert!(dry.dry_run && dry.failed.is_empty(), "{dry:?}");
    assert_eq!(dry.found.len(), 2, "{dry:?}");
    assert_eq!(
        pending(&client).await.len(),
        2,
        "a dry run aborted something"
    );

    let done = client.clean_up(&opts).await.unwrap();
    assert!(!done.dry_run && done.failed.is_empty(), "{done:?}");
    let mut found: Vec<&str> = done.found.iter().map(|l| l.location.as_str()).collect();
    found.sort();
    assert!(
        found[0].starts_with(&format!(
            "s3://test/{prefix}/.syncengine/trash/x.bin (upload "
        )) && found[1].starts_with(&format!("s3://test/{prefix}/a b.bin (upload ")),
        "{found:?}"
    );
    assert!(pending(&client).await.is_empty(), "uploads were left");
    assert_eq!(
        pending(&sibling).await.len(),
        1,
        "another root's upload was aborted"
    );
    assert_eq!(client.read_to_bytes(&user).await.unwrap(), "mine");
    // Again: nothing left to do.
    assert!(client.clean_up(&opts).await.unwrap().found.is_empty());
    sibling.clean_up(&opts).await.unwrap();
}

/// An upload started less than the age ago stays (SeaweedFS reports real initiation times;
/// this also checks the requests' signatures, which SeaweedFS verifies).
#[tokio::test]
async fn a_young_upload_stays() {
    let Some(builder) = common::seaweed_builder(false) else {
        return;
    };
    let client = builder.build().unwrap();
    let prefix = client.config().prefix.clone();
    start_upload(&client, &format!("{prefix}/big.bin")).await;
    let hour = CleanupOptions::new(Duration::from_secs(3600));
    let report = client.clean_up(&hour).await.unwrap();
    assert!(
        report.found.is_empty() && report.failed.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        pending(&client).await.len(),
        1,
        "a young upload was aborted"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let report = client
        .clean_up(&CleanupOptions::new(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(
        (report.found.len(), report.failed.len()),
        (1, 0),
        "{report:?}"
    );
    assert!(pending(&client).await.is_empty());
}

/// A run cancelled while a multipart upload is in flight aborts it before it returns: the
/// runtime is dropped right after, as the CLI's is when Ctrl-C ends a run, and no upload is
/// left on the server.
#[test]
fn a_cancelled_run_leaves_no_multipart_upload() {
    if !common::up(MOTO) {
        return;
    }
    let src_dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // 30 MiB in 5 MiB parts at 2 MiB/s: still uploading when the run is cancelled.
    let content: Vec<u8> = (0..30u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(src_dir.path().join("big.bin"), &content).unwrap();
    let proxy = Proxy::start(&common::endpoint(MOTO)).unwrap();
    proxy.throttle(Matcher::method("PUT"), 2 << 20);
    // The abort takes a while to reach the server: the run must wait for it, and the check
    // below, made at once, sees whether it did.
    proxy.delay(Matcher::method("DELETE"), Duration::from_millis(1500));
    let (id, secret) = common::s3_keys();
    let prefix = common::fresh_prefix("cancel");
    let build = |endpoint: String| {
        S3Builder::for_store(StoreKind::S3, "test")
            .with_prefix(prefix.clone())
            .with_endpoint(endpoint)
            .with_region("us-east-1")
            .with_credentials(id.clone(), secret.clone())
            .with_allow_http(true)
            .with_timeouts(Timeouts {
                connect: Duration::from_secs(5),
                idle: Duration::from_secs(30),
            })
            .with_multipart(5 << 20, 1)
            .build()
            .unwrap()
    };
    let s3 = Arc::new(build(proxy.url()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let result = runtime.block_on(async {
        let cancel = tokio_util::sync::CancellationToken::new();
        let engine = SyncEngine::new(state.path()).with_cancellation(cancel.clone());
        let pair = SyncPair::new(
            Arc::new(LocalClient::new(src_dir.path())),
            s3.clone(),
            SyncMode::SourceBackup,
        );
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            cancel.cancel();
        });
        engine.sync_pair(&pair).await
    });
    assert!(matches!(result, Err(SyncError::Cancelled)), "{result:?}");
    // What the CLI does next: the program ends, and its runtime with every task on it.
    drop(runtime);

    let direct = build(common::endpoint(MOTO));
    let check = tokio::runtime::Runtime::new().unwrap();
    let left = check.block_on(pending(&direct));
    assert!(
        left.is_empty(),
        "uploads left by the cancelled run: {left:?}"
    );
    let listed = check.block_on(direct.list_all(None)).unwrap();
    assert!(
        listed.iter().all(|e| e.path.as_str() != "big.bin"),
        "{listed:?}"
    );
    proxy.clear();
}

/// A same-store copy probe left by a killed run (a temp-named object at the root) is
/// removed once older than the age; names that only look alike, and deeper temp names
/// (not where probes go), stay.
#[tokio::test]
async fn a_copy_probe_left_at_the_root_is_removed_and_nothing_else() {
    let Some(builder) = common::moto_builder() else {
        return;
    };
    let client = builder.build().unwrap();
    let prefix = client.config().prefix.clone();
    let store = client.object_store().clone();
    let probe = format!("{prefix}/.syncengine-tmp-0123456789abcdef");
    let kept = [
        format!("{prefix}/.syncengine-tmp-notours"),
        format!("{prefix}/sub/.syncengine-tmp-0123456789abcdef"),
        format!("{prefix}/file.txt"),
        format!("{prefix}-sibling/.syncengine-tmp-0123456789abcdef"),
    ];
    for key in std::iter::once(&probe).chain(&kept) {
        store
            .put(&Path::parse(key).unwrap(), Bytes::from_static(b"x").into())
            .await
            .unwrap();
    }
    // Younger than the age: kept.
    let young = client
        .clean_up(&CleanupOptions::new(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(young.found.is_empty(), "{young:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let dry = client
        .clean_up(&CleanupOptions::new(Duration::from_millis(1)).with_dry_run(true))
        .await
        .unwrap();
    assert_eq!(dry.found.len(), 1, "{dry:?}");
    assert_eq!(dry.found[0].kind, LeftoverKind::TempFile);
    assert!(store.head(&Path::parse(&probe).unwrap()).await.is_ok());
    let report = client
        .clean_up(&CleanupOptions::new(Duration::from_millis(1)))
        .await
        .unwrap();
    assert_eq!(report.found.len(), 1, "{report:?}");
    assert!(
        report.found[0]
            .location
            .ends_with(".syncengine-tmp-0123456789abcdef")
    );
    assert!(store.head(&Path::parse(&probe).unwrap()).await.is_err());
    for key in &kept {
        assert!(
            store.head(&Path::parse(key).unwrap()).await.is_ok(),
            "{key} was removed"
        );
    }
}
