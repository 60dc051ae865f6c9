//! Issue 9: a sync between two prefixes of one S3 endpoint, with the same credentials, is
//! copied by the server (`CopyObject`): no byte is read through the client; other
//! credentials fall back to a streamed copy.

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use syncengine_core::identity::Location;
use syncengine_core::{
    ByteStream, Capabilities, DeleteOptions, Entry, EntryStream, ReadOptions, RelPath, Result,
    StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair, TransferOptions, WriteOptions,
};

/// Delegates everything to `inner` and counts the reads of file content.
#[derive(Debug)]
struct CountingReads {
    inner: Arc<dyn StorageClient>,
    reads: AtomicU64,
}

impl fmt::Display for CountingReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl StorageClient for CountingReads {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        self.inner.as_any()
    }
    async fn location(&self) -> Result<Location> {
        self.inner.location().await
    }
    async fn check_access(&self) -> Result<()> {
        self.inner.check_access().await
    }
    async fn recorded_mtime(&self, listed: &Entry) -> Result<Option<SystemTime>> {
        self.inner.recorded_mtime(listed).await
    }
    fn list(&self, prefix: Option<&RelPath>) -> EntryStream {
        self.inner.list(prefix)
    }
    async fn stat(&self, path: &RelPath) -> Result<Entry> {
        self.inner.stat(path).await
    }
    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_opts(path, opts).await
    }
    async fn write_opts(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        self.inner.write_opts(path, body, opts).await
    }
    async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> Result<()> {
        self.inner.delete_opts(path, opts).await
    }
    async fn copy_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.inner.copy_opts(from, to, opts).await
    }
    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.inner.rename_opts(from, to, opts).await
    }
}

const FILES: usize = 4;

/// Seeds `FILES` files with old mtimes into `src`, syncs it to `dst`, and returns how many
/// content reads the source saw. Checks contents and mtimes, and that a second run is idle.
async fn sync_and_count(src: Arc<dyn StorageClient>, dst: Arc<dyn StorageClient>) -> u64 {
    let old = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for i in 0..FILES {
        let path = RelPath::new(format!("d/f{i}.txt")).unwrap();
        let opts = WriteOptions::default().with_mtime(old + Duration::from_secs(i as u64));
        src.write_opts(
            &path,
            syncengine_core::bytes_stream(Bytes::from(format!("content {i}"))),
            opts,
        )
        .await
        .unwrap();
    }
    let counting = Arc::new(CountingReads {
        inner: src.clone(),
        reads: AtomicU64::new(0),
    });
    let tmp = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(counting.clone(), dst.clone(), SyncMode::SourceToDestination);
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, FILES as u64, "{stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");
    for i in 0..FILES {
        let path = RelPath::new(format!("d/f{i}.txt")).unwrap();
        assert_eq!(
            dst.read_to_bytes(&path).await.unwrap(),
            Bytes::from(format!("content {i}"))
        );
        let listed = dst.stat(&path).await.unwrap();
        assert_eq!(
            dst.recorded_mtime(&listed).await.unwrap(),
            Some(old + Duration::from_secs(i as u64)),
            "the copy lost the file's mtime"
        );
    }
    let reads = counting.reads.load(Ordering::SeqCst);
    let again = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(
        (
            again.uploaded,
            again.downloaded,
            again.deleted_destination,
            again.errors
        ),
        (0, 0, 0, 0),
        "a second run changed something: {again:?}"
    );
    reads
}

/// Makes `bucket` on SeaweedFS (signed by curl) if it is missing.
fn seaweed_bucket(bucket: &str) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .args([
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            "weedak:weedsk",
        ])
        .arg(format!("{}/{bucket}", common::endpoint(common::SEAWEED)))
        .output()
        .expect("run curl");
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        code == "200" || code == "409",
        "making bucket {bucket}: {code}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_endpoint_and_key_copies_on_the_server() {
    let (Some(a), Some(b)) = (
        common::seaweed_builder(false),
        common::seaweed_builder(false),
    ) else {
        return;
    };
    let src: Arc<dyn StorageClient> = Arc::new(a.build().unwrap());
    let dst: Arc<dyn StorageClient> = Arc::new(b.build().unwrap());
    let reads = sync_and_count(src, dst).await;
    assert_eq!(reads, 0, "file content passed through the client");
}

/// Red team 14: clients made from the environment, as the CLI makes them (`AWS_*` keys;
/// the shared-profile lookup is noted even when the keys come from the variables). Old code
/// took any client with a shared profile for "other credentials", so a CLI run never copied
/// on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_made_from_the_environment_copy_on_the_server() {
    if common::seaweed_builder(false).is_none() {
        return;
    }
    let endpoint = common::endpoint(common::SEAWEED);
    let var = |name: &str| match name {
        "AWS_ACCESS_KEY_ID" => Some("weedak".to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some("weedsk".to_owned()),
        "AWS_REGION" => Some("us-east-1".to_owned()),
        "AWS_ENDPOINT" => Some(endpoint.clone()),
        "AWS_ALLOW_HTTP" => Some("true".to_owned()),
        // No shared files of this machine's user.
        "AWS_CONFIG_FILE" | "AWS_SHARED_CREDENTIALS_FILE" => Some("/nonexistent".to_owned()),
        _ => None,
    };
    let prefix = common::fresh_prefix("env");
    let build = |side: &str| {
        syncengine_backend_s3::S3Builder::from_env_with(&format!("s3://test/{prefix}/{side}"), var)
            .unwrap()
            .build()
            .unwrap()
    };
    let src: Arc<dyn StorageClient> = Arc::new(build("src"));
    let dst: Arc<dyn StorageClient> = Arc::new(build("dst"));
    let reads = sync_and_count(src, dst).await;
    assert_eq!(reads, 0, "file content passed through the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_bucket_of_the_same_endpoint_copies_on_the_server() {
    let (Some(a), Some(b)) = (
        common::seaweed_builder(false),
        common::seaweed_builder(false),
    ) else {
        return;
    };
    seaweed_bucket("test-same-store");
    let src: Arc<dyn StorageClient> = Arc::new(a.build().unwrap());
    let dst = b.with_bucket("test-same-store").build().unwrap();
    assert_eq!(dst.config().bucket, "test-same-store");
    let dst: Arc<dyn StorageClient> = Arc::new(dst);
    let reads = sync_and_count(src, dst).await;
    assert_eq!(reads, 0, "file content passed through the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_credentials_stream_the_files() {
    let (Some(a), Some(b)) = (common::moto_builder(), common::moto_builder()) else {
        return;
    };
    let src: Arc<dyn StorageClient> = Arc::new(a.build().unwrap());
    let dst: Arc<dyn StorageClient> = Arc::new(
        b.with_credentials("another-key", "another-secret")
            .build()
            .unwrap(),
    );
    let reads = sync_and_count(src, dst).await;
    assert_eq!(
        reads, FILES as u64,
        "other credentials must stream each file"
    );
}

/// moto copies whatever the source holds, ignoring `x-amz-copy-source-if-match`: a copy
/// there could not be held to the version listed, so every file streams (and is verified),
/// and the probe that found it out leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_the_source_condition_streams_the_files() {
    let (Some(a), Some(b)) = (common::moto_builder(), common::moto_builder()) else {
        return;
    };
    let src: Arc<dyn StorageClient> = Arc::new(a.build().unwrap());
    let dst = b.build().unwrap();
    let (store, prefix) = (dst.object_store().clone(), dst.config().prefix.clone());
    let dst: Arc<dyn StorageClient> = Arc::new(dst);
    let reads = sync_and_count(src, dst).await;
    assert_eq!(
        reads, FILES as u64,
        "a copy the server cannot hold to the listed version"
    );
    let root = object_store::path::Path::from(prefix.as_str());
    let keys: Vec<String> = futures::TryStreamExt::try_collect::<Vec<_>>(
        object_store::ObjectStore::list(store.as_ref(), Some(&root)),
    )
    .await
    .unwrap()
    .into_iter()
    .map(|m| m.location.to_string())
    .collect();
    assert!(
        !keys.iter().any(|k| k.contains(".syncengine-tmp-")),
        "the probe left something: {keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| k.contains("/d/")).count(),
        FILES,
        "{keys:?}"
    );
}

/// Two clients of one store, the source holding `f.txt`: on SeaweedFS (which honours the
/// source condition), and with `moto` also on moto (which ignores it).
async fn pairs_with_a_source_file(
    moto: bool,
) -> Vec<(Arc<dyn StorageClient>, Arc<dyn StorageClient>, Entry)> {
    let mut pairs = Vec::new();
    let mut builders = vec![(
        common::seaweed_builder(false),
        common::seaweed_builder(false),
    )];
    if moto {
        builders.push((common::moto_builder(), common::moto_builder()));
    }
    for (a, b) in builders {
        let (Some(a), Some(b)) = (a, b) else { continue };
        let src: Arc<dyn StorageClient> = Arc::new(a.build().unwrap());
        let dst: Arc<dyn StorageClient> = Arc::new(b.build().unwrap());
        let path = RelPath::new("f.txt").unwrap();
        src.write_opts(
            &path,
            syncengine_core::bytes_stream(Bytes::from_static(b"version one")),
            WriteOptions::default(),
        )
        .await
        .unwrap();
        let listed = src.stat(&path).await.unwrap();
        pairs.push((src, dst, listed));
    }
    pairs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_changed_since_it_was_listed_is_never_copied() {
    for (src, dst, listed) in pairs_with_a_source_file(true).await {
        let path = listed.path.clone();
        // Same size, other content: only the version check can tell.
        src.write_opts(
            &path,
            syncengine_core::bytes_stream(Bytes::from_static(b"version two")),
            WriteOptions::default(),
        )
        .await
        .unwrap();
        let opts = WriteOptions::default().with_mode(syncengine_core::WriteMode::Create);
        let copied = dst
            .copy_from_same_store(src.as_ref(), &path, &listed, &path, &opts)
            .await;
        assert!(
            matches!(copied, Ok(None)),
            "{src}: a changed source was copied: {copied:?}"
        );
        let err = dst.stat(&path).await.unwrap_err();
        assert!(err.is_not_found(), "{src}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_never_replaces_a_target_other_than_the_one_expected() {
    // SeaweedFS only: where copies are made on the server.
    for (src, dst, listed) in pairs_with_a_source_file(false).await {
        let path = listed.path.clone();
        dst.write_opts(
            &path,
            syncengine_core::bytes_stream(Bytes::from_static(b"the user's own file")),
            WriteOptions::default(),
        )
        .await
        .unwrap();
        let theirs = dst.stat(&path).await.unwrap();
        // Create: the target must not exist.
        let create = WriteOptions::default().with_mode(syncengine_core::WriteMode::Create);
        let copied = dst
            .copy_from_same_store(src.as_ref(), &path, &listed, &path, &create)
            .await;
        assert!(
            matches!(&copied, Err(syncengine_core::Error::AlreadyExists { .. })),
            "{dst}: {copied:?}"
        );
        // Update: only the version named.
        let update = WriteOptions::default().with_mode(syncengine_core::WriteMode::Update(
            "\"not-its-etag\"".into(),
        ));
        let copied = dst
            .copy_from_same_store(src.as_ref(), &path, &listed, &path, &update)
            .await;
        assert!(
            matches!(
                &copied,
                Err(syncengine_core::Error::PreconditionFailed { .. })
            ),
            "{dst}: {copied:?}"
        );
        assert_eq!(
            dst.read_to_bytes(&path).await.unwrap(),
            Bytes::from_static(b"the user's own file"),
            "{dst}: the user's file was replaced"
        );
        assert_eq!(dst.stat(&path).await.unwrap().etag, theirs.etag);
        // Update with its ETag: the copy replaces exactly that version.
        let update = WriteOptions::default().with_mode(syncengine_core::WriteMode::Update(
            theirs.etag.clone().unwrap(),
        ));
        let copied = dst
            .copy_from_same_store(src.as_ref(), &path, &listed, &path, &update)
            .await
            .unwrap();
        assert!(copied.is_some(), "{dst}: declined a copy it can make");
        assert_eq!(
            dst.read_to_bytes(&path).await.unwrap(),
            Bytes::from_static(b"version one")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_side_copy_carries_the_content_type() {
    let (Some(a), Some(b)) = (
        common::seaweed_builder(false),
        common::seaweed_builder(false),
    ) else {
        return;
    };
    let src: Arc<dyn StorageClient> = Arc::new(a.build().unwrap());
    let dst = b.build().unwrap();
    let (store, prefix) = (dst.object_store().clone(), dst.config().prefix.clone());
    let dst: Arc<dyn StorageClient> = Arc::new(dst);
    let path = RelPath::new("site/index.html").unwrap();
    src.write_opts(
        &path,
        syncengine_core::bytes_stream(Bytes::from_static(b"<html></html>")),
        WriteOptions::default(),
    )
    .await
    .unwrap();
    let listed = src.stat(&path).await.unwrap();
    let copied = dst
        .copy_from_same_store(
            src.as_ref(),
            &path,
            &listed,
            &path,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert!(copied.is_some());
    let head = object_store::ObjectStore::get_opts(
        store.as_ref(),
        &object_store::path::Path::parse(format!("{prefix}/site/index.html")).unwrap(),
        object_store::GetOptions {
            head: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        head.attributes
            .get(&object_store::Attribute::ContentType)
            .map(|v| v.as_ref()),
        Some("text/html")
    );
}
