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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_endpoint_and_key_copies_on_the_server() {
    let (Some(a), Some(b)) = (common::moto_builder(), common::moto_builder()) else {
        return;
    };
    let src: Arc<dyn StorageClient> = Arc::new(a.build().unwrap());
    let dst: Arc<dyn StorageClient> = Arc::new(b.build().unwrap());
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
