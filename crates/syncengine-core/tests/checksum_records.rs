//! `--checksum` and the hashes kept in the base (issue 8, behaviour 6; model findings F10,
//! F13).
//!
//! README: with `--checksum`, "local files are hashed on every run and compared with the
//! hashes kept in the state; remote sides use the hashes they list, remote files are never
//! downloaded to be hashed". The memory clients here list like an Apache WebDAV server (no
//! hash, an ETag made of size and mtime: `MemoryClient::webdav_like_metadata`); wrapped with
//! `QuirkClient::with_remote_reads` they are a network backend, else a local disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use syncengine_core::testing::QuirkClient;
use syncengine_core::{
    ConflictStrategy, MemoryClient, Recovery, RelPath, Side, StorageClient, SyncEngine, SyncMode,
    SyncOptions, SyncPair, SyncStats, WriteOptions,
};

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

/// A local-reads memory client that lists like an Apache WebDAV server: no hash, an ETag
/// made of size and mtime.
fn client() -> Arc<MemoryClient> {
    let c = Arc::new(MemoryClient::new());
    c.webdav_like_metadata(true);
    c
}

/// What a user's editor does: writes `data` at `path` with the modification time `mtime`.
async fn write(c: &MemoryClient, path: &str, data: &str, mtime: SystemTime) {
    c.write_opts(
        &rel(path),
        syncengine_core::bytes_stream(Bytes::from(data.to_owned())),
        WriteOptions::default().with_mtime(mtime),
    )
    .await
    .unwrap();
}

fn text(c: &MemoryClient, path: &str) -> Option<String> {
    c.files()
        .get(&rel(path))
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

async fn run_clients(
    engine: &SyncEngine,
    s: Arc<dyn StorageClient>,
    d: Arc<dyn StorageClient>,
    mode: SyncMode,
) -> SyncStats {
    let opts = SyncOptions::default()
        .with_checksum(true)
        .with_conflict(ConflictStrategy::NewestWins)
        .with_recovery(Side::Source, Recovery::Trash)
        .with_recovery(Side::Destination, Recovery::Trash);
    let stats = engine
        .sync_pair(&SyncPair::new(s, d, mode).with_options(opts))
        .await
        .unwrap();
    assert_eq!(stats.errors, 0, "{stats:?}");
    stats
}

#[tokio::test]
async fn an_edit_keeping_size_and_mtime_on_a_remote_side_without_hashes_is_not_seen_as_decided() {
    // The decided limit (README, `--checksum`): remote files are never downloaded to be
    // hashed. The remote edit stays where it is, the local file is not overwritten, and a
    // later edit of the local file replaces the remote one through the trash.
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (src, dst) = (client(), client());
    let remote: Arc<dyn StorageClient> =
        Arc::new(QuirkClient::new(dst.clone()).with_remote_reads(true));
    write(&src, "a", "one", at(0)).await;
    let first = run_clients(&engine, src.clone(), remote.clone(), SyncMode::TwoWay).await;
    assert_eq!(first.uploaded, 1, "{first:?}");
    write(&dst, "a", "two", at(0)).await;
    let second = run_clients(&engine, src.clone(), remote.clone(), SyncMode::TwoWay).await;
    assert!(second.is_noop(), "{second:?}");
    assert_eq!(text(&src, "a").as_deref(), Some("one"));
    assert_eq!(text(&dst, "a").as_deref(), Some("two"));

    write(&src, "a", "three", at(5)).await;
    let third = run_clients(&engine, src.clone(), remote.clone(), SyncMode::TwoWay).await;
    assert_eq!(third.uploaded, 1, "{third:?}");
    assert_eq!(text(&dst, "a").as_deref(), Some("three"));
    let trashed: Vec<String> = dst
        .files()
        .into_iter()
        .filter(|(p, _)| p.as_str().starts_with(".syncengine/trash/"))
        .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
        .collect();
    assert!(
        trashed.contains(&"two".to_owned()),
        "the unseen remote edit is in no trash: {trashed:?}"
    );
}
