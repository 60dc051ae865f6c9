//! The trash on S3 (moto): a trash kept in another bucket prefix (`--trash-dir`), and the
//! warning for a root that looks served as a website.

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::{
    Recovery, RelPath, Side, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncOptions,
    SyncPair,
};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

async fn paths(client: &dyn StorageClient) -> Vec<String> {
    let mut v: Vec<String> = client
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path.into_string())
        .collect();
    v.sort();
    v
}

/// A trash dir on another prefix receives deleted and overwritten objects (content intact);
/// the synced root's `.syncengine/` holds only its root id, no trash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trash_dir_on_another_prefix() {
    let Some(s3) = common::moto().await else {
        return;
    };
    let trash: Arc<dyn StorageClient> = common::moto().await.unwrap();
    let (local, _dir) = common::local().await;
    for name in ["a.txt", "b.txt", "c.txt", "d.txt"] {
        local.put(&p(name), Bytes::from(name)).await.unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let opts =
        SyncOptions::default().with_recovery(Side::Destination, Recovery::TrashDir(trash.clone()));
    let pair =
        SyncPair::new(local.clone(), s3.clone(), SyncMode::SourceToDestination).with_options(opts);
    engine.sync_pair(&pair).await.unwrap();
    local.delete(&p("a.txt")).await.unwrap();
    local
        .put(&p("b.txt"), Bytes::from("b, edited"))
        .await
        .unwrap();
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(
        (stats.deleted_destination, stats.uploaded, stats.errors),
        (1, 1, 0),
        "{stats:?}"
    );
    // The user's files (the root's .syncengine/ also holds the engine's root id and
    // generation).
    let files: Vec<String> = paths(s3.as_ref())
        .await
        .into_iter()
        .filter(|p| !p.starts_with(".syncengine/"))
        .collect();
    assert_eq!(files, ["b.txt", "c.txt", "d.txt"]);
    let kept = paths(trash.as_ref()).await;
    assert_eq!(kept.len(), 2, "{kept:?}");
    for (path, body) in kept.iter().zip(["a.txt", "b.txt"]) {
        assert!(path.ends_with(&format!("/{body}")), "{path}");
        assert_eq!(
            trash.read_to_bytes(&p(path)).await.unwrap(),
            body.as_bytes()
        );
    }
}

/// A remote root with an index.html looks served as a website: the run warns that its trash
/// would be published, and does not with a trash dir elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_that_looks_served_gets_a_warning() {
    let Some(s3) = common::moto().await else {
        return;
    };
    let (local, _dir) = common::local().await;
    local
        .put(&p("index.html"), Bytes::from("<h1>hi</h1>"))
        .await
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let pair = SyncPair::new(local.clone(), s3.clone(), SyncMode::SourceToDestination);
    engine.sync_pair(&pair).await.unwrap();
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert!(
        stats
            .warnings
            .iter()
            .any(|w| w.contains("index.html") && w.contains("--trash-dir")),
        "{stats:?}"
    );
    assert_eq!(
        stats.warnings.len(),
        1,
        "the local side is not checked: {stats:?}"
    );
    let trash: Arc<dyn StorageClient> = common::moto().await.unwrap();
    let elsewhere = pair.with_options(
        SyncOptions::default().with_recovery(Side::Destination, Recovery::TrashDir(trash)),
    );
    let stats = engine.sync_pair(&elsewhere).await.unwrap();
    assert!(stats.warnings.is_empty(), "{stats:?}");
}

/// Objects above the multipart-copy threshold (5 GiB on S3; 5 MiB here, to test the same
/// path with a 12 MiB object) are copied server-side in `UploadPartCopy` parts: a delete
/// moves such an object to the trash with its content and mtime intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_above_the_copy_limit_are_trashed_by_multipart_copy() {
    use md5::{Digest, Md5};
    let Some(builder) = common::moto_builder() else {
        return;
    };
    let s3: Arc<dyn StorageClient> = Arc::new(
        builder
            .with_mtime_from_metadata(true)
            .with_multipart_copy_threshold(5 * 1024 * 1024)
            .build()
            .unwrap(),
    );
    let data: Vec<u8> = (0..12 * 1024 * 1024 + 7)
        .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    let want: [u8; 16] = Md5::digest(&data).into();
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000);

    // The primitive: a copy above the threshold is a 3-part multipart copy.
    let opts = syncengine_core::WriteOptions::default()
        .with_mtime(mtime)
        .with_size_hint(data.len() as u64);
    s3.write_opts(
        &p("big.bin"),
        syncengine_core::bytes_stream(Bytes::from(data.clone())),
        opts,
    )
    .await
    .unwrap();
    let copied = s3
        .copy_opts(&p("big.bin"), &p("copy.bin"), Default::default())
        .await
        .unwrap();
    assert_eq!(copied.size, data.len() as u64);
    assert!(
        copied.etag.as_deref().is_some_and(|e| e.ends_with("-3\"")),
        "not a 3-part multipart copy: {:?}",
        copied.etag
    );
    assert_eq!(
        copied.mtime,
        Some(mtime),
        "the mtime metadata was not copied"
    );
    let got: [u8; 16] = Md5::digest(s3.read_to_bytes(&p("copy.bin")).await.unwrap()).into();
    assert_eq!(got, want);
    // A small object still goes as one CopyObject (its MD5 ETag is kept).
    s3.put(&p("small.txt"), Bytes::from("small")).await.unwrap();
    let small = s3
        .copy_opts(&p("small.txt"), &p("small2.txt"), Default::default())
        .await
        .unwrap();
    assert!(small.hash.is_some(), "{small:?}");

    // Through the engine: a mirror deletes the big object, which lands in the trash intact.
    let (local, _dir) = common::local().await;
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let pair = SyncPair::new(s3.clone(), local.clone(), SyncMode::SourceToDestination);
    engine.sync_pair(&pair).await.unwrap();
    let mirror_back = SyncPair::new(local.clone(), s3.clone(), SyncMode::SourceToDestination)
        .with_options(SyncOptions::default().with_max_delete_percent(100));
    local.delete(&p("copy.bin")).await.unwrap();
    let stats = engine.sync_pair(&mirror_back).await.unwrap();
    assert_eq!(
        (stats.deleted_destination, stats.errors),
        (1, 0),
        "{stats:?}"
    );
    assert!(matches!(
        s3.stat(&p("copy.bin")).await,
        Err(syncengine_core::Error::NotFound { .. })
    ));
    let trashed: Vec<_> = s3.list_all(Some(&p(".syncengine/trash"))).await.unwrap();
    assert_eq!(trashed.len(), 1, "{trashed:?}");
    assert!(trashed[0].path.as_str().ends_with("/copy.bin"));
    let got: [u8; 16] = Md5::digest(s3.read_to_bytes(&trashed[0].path).await.unwrap()).into();
    assert_eq!(got, want, "the trashed copy differs");
}
