//! Large files downloaded as parallel `Range` requests, each checked against the listed ETag
//! ([`syncengine_core::parallel_read`]), from the real Apache and wsgidav test servers into a
//! local folder, with the cutoff lowered so that a few MiB are enough: the copy arrives
//! byte-identical, and a file replaced on the server between two ranges fails the copy (the
//! later range's answer carries another ETag) and leaves the local file as it was. The files
//! are read right after they are written, when Apache calls their ETags weak.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use syncengine_backend_local::LocalClient;
use syncengine_backend_webdav::WebDavClient;
use syncengine_core::{
    ByteStream, Capabilities, DeleteOptions, Entry, EntryStream, ParallelReads, ReadOptions,
    RelPath, Result, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncOptions, SyncPair,
    TransferOptions, WriteOptions,
};

use common::{APACHE, Server, WSGIDAV};

const PART: u64 = 256 << 10;

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// `len` bytes that differ at every offset and between `seed`s.
fn data(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// A client on a fresh collection of `server` that reads files of 1 MiB and more as 256 KiB
/// ranges, 3 at once; `None` when the server is down.
fn ranged_client(server: Server) -> Option<WebDavClient> {
    let url = common::server_url(server)?;
    let root = format!(
        "{}/syncengine-tests/{}-ranged-{:016x}",
        url.trim_end_matches('/'),
        server.name,
        rand::random::<u64>()
    );
    let mut builder = syncengine_backend_webdav::WebDavBuilder::from_env()
        .with_url(root)
        .with_allow_insecure_basic(true)
        .with_parallel_reads(Some(
            ParallelReads::default()
                .with_cutoff(4 * PART)
                .with_streams(3)
                .with_part_size(PART),
        ));
    if std::env::var(syncengine_backend_webdav::ENV_USER).is_err() {
        builder = builder.with_credentials("dav", "davpass");
    }
    Some(builder.build().unwrap())
}

/// Counts range reads, and before the range starting at `replace_at` (if set) replaces the
/// file on the server with `replacement`.
struct Watched {
    inner: WebDavClient,
    ranges: AtomicUsize,
    replace: Mutex<Option<(u64, Bytes)>>,
}

impl std::fmt::Display for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watched({})", self.inner)
    }
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watched({:?})", self.inner)
    }
}

#[async_trait]
impl StorageClient for Watched {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
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
        if let Some(range) = &opts.range {
            assert!(opts.version.is_some(), "a range read without the version");
            self.ranges.fetch_add(1, Ordering::SeqCst);
            let replacement = {
                let mut replace = self.replace.lock().unwrap();
                match replace.as_ref() {
                    Some((at, _)) if *at == range.start => replace.take().map(|(_, b)| b),
                    _ => None,
                }
            };
            if let Some(content) = replacement {
                self.inner.put(path, content).await?;
            }
        }
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

struct Setup {
    _state: tempfile::TempDir,
    local_dir: tempfile::TempDir,
    engine: SyncEngine,
    remote: Arc<Watched>,
    local: Arc<LocalClient>,
}

impl Setup {
    async fn sync(&self) -> syncengine_core::SyncStats {
        let pair = SyncPair::new(
            self.remote.clone(),
            self.local.clone(),
            SyncMode::SourceToDestination,
        )
        .with_options(SyncOptions::default().with_attempts(2));
        self.engine.sync_pair(&pair).await.unwrap()
    }

    fn local_file(&self) -> Vec<u8> {
        std::fs::read(self.local_dir.path().join("big.bin")).unwrap()
    }
}

/// `big.bin` on the server at `content`, and a local folder holding `old`.
async fn setup(server: Server, content: Bytes) -> Option<Setup> {
    let client = ranged_client(server)?;
    let state = tempfile::tempdir().unwrap();
    let local_dir = tempfile::tempdir().unwrap();
    let local = Arc::new(LocalClient::new(local_dir.path()));
    client
        .put(&p("big.bin"), Bytes::from_static(b"old"))
        .await
        .unwrap();
    let setup = Setup {
        engine: SyncEngine::new(state.path()),
        _state: state,
        local_dir,
        remote: Arc::new(Watched {
            inner: client,
            ranges: AtomicUsize::new(0),
            replace: Mutex::new(None),
        }),
        local,
    };
    let stats = setup.sync().await;
    assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
    assert_eq!(setup.local_file(), b"old");
    setup
        .remote
        .inner
        .put(&p("big.bin"), content)
        .await
        .unwrap();
    Some(setup)
}

async fn arrives_byte_identical(server: Server) {
    // Not a multiple of the part size: the last range is short.
    let len = (9 * PART + 12_345) as usize;
    let Some(s) = setup(server, data(1, len)).await else {
        return;
    };
    let stats = s.sync().await;
    assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
    assert!(s.local_file() == data(1, len), "the copy differs");
    assert_eq!(
        s.remote.ranges.load(Ordering::SeqCst),
        10,
        "one GET per 256 KiB"
    );
}

async fn replaced_between_ranges_fails(server: Server) {
    let len = (8 * PART) as usize;
    let Some(s) = setup(server, data(1, len)).await else {
        return;
    };
    // Another version of the same size arrives while the ranges are read.
    *s.remote.replace.lock().unwrap() = Some((5 * PART, data(2, len)));
    let stats = s.sync().await;
    assert_eq!(stats.errors, 1, "{stats:?}");
    assert!(
        stats.error_messages[0].contains("precondition failed"),
        "{:?}",
        stats.error_messages
    );
    assert_eq!(
        s.local_file(),
        b"old",
        "a copy mixing two versions replaced the local file"
    );
    // The next run copies the version now on the server.
    let stats = s.sync().await;
    assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
    assert!(s.local_file() == data(2, len), "the second copy differs");
}

#[tokio::test]
async fn apache_a_large_file_arrives_byte_identical_through_ranges() {
    arrives_byte_identical(APACHE).await;
}

#[tokio::test]
async fn wsgidav_a_large_file_arrives_byte_identical_through_ranges() {
    arrives_byte_identical(WSGIDAV).await;
}

#[tokio::test]
async fn apache_a_file_replaced_between_ranges_fails_the_copy() {
    replaced_between_ranges_fails(APACHE).await;
}

#[tokio::test]
async fn wsgidav_a_file_replaced_between_ranges_fails_the_copy() {
    replaced_between_ranges_fails(WSGIDAV).await;
}
