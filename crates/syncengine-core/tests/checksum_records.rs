//! `--checksum` and the hashes kept in the base (issue 8, behaviour 6; model finding F13).
//!
//! README: with `--checksum`, "local files are hashed on every run and compared with the
//! hashes kept in the state". The memory clients here read locally
//! (`Capabilities::local_reads`) but list no hash (`MemoryClient::webdav_like_metadata`), so
//! the engine hashes them itself under `--checksum`. A file the engine has just written or
//! moved is the content it listed (and verified in the stream), so its record must keep that
//! hash; otherwise an edit that keeps size and mtime before the next run is compared by ETag
//! (size and mtime) only, goes unseen, and that run records the edited content's hash: the
//! edit never reaches the other side.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use syncengine_core::testing::QuirkClient;
use syncengine_core::{
    ConflictStrategy, MemoryClient, Recovery, RelPath, Side, StorageClient, StorageClientExt,
    SyncEngine, SyncMode, SyncOptions, SyncPair, SyncStats, WriteOptions,
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

fn conflict_copies(c: &MemoryClient) -> Vec<String> {
    c.files()
        .into_keys()
        .map(|p| p.to_string())
        .filter(|p| p.contains(".conflict-") && !p.starts_with(".syncengine"))
        .collect()
}

async fn run(
    engine: &SyncEngine,
    src: &Arc<MemoryClient>,
    dst: &Arc<MemoryClient>,
    mode: SyncMode,
) -> SyncStats {
    let (s, d): (Arc<dyn StorageClient>, Arc<dyn StorageClient>) = (src.clone(), dst.clone());
    run_clients(engine, s, d, mode).await
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
async fn an_uploaded_file_keeps_its_hash_so_an_edit_keeping_size_and_mtime_is_seen_next_run() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (src, dst) = (client(), client());
    write(&src, "a", "one", at(0)).await;
    let first = run(&engine, &src, &dst, SyncMode::TwoWay).await;
    assert_eq!(first.uploaded, 1, "{first:?}");

    // The destination's copy is edited: same size, same mtime, other bytes.
    write(&dst, "a", "two", at(0)).await;
    let second = run(&engine, &src, &dst, SyncMode::TwoWay).await;
    assert_eq!(
        text(&src, "a").as_deref(),
        Some("two"),
        "the edit of the copy the engine wrote was not seen: {second:?}"
    );
    assert_eq!(second.downloaded, 1, "{second:?}");
}

#[tokio::test]
async fn a_kept_conflict_copy_keeps_its_hash_so_an_edit_keeping_size_and_mtime_is_seen_next_run() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (src, dst) = (client(), client());
    write(&src, "r.txt", "src", at(0)).await;
    write(&dst, "r.txt", "dst", at(1)).await;
    // Source-backup: the source's version wins; the destination's is kept as a conflict copy
    // (renamed on the destination, then backed up to the source).
    let first = run(&engine, &src, &dst, SyncMode::SourceBackup).await;
    assert_eq!(first.conflicts, 1, "{first:?}");
    let copies = conflict_copies(&dst);
    assert_eq!(copies.len(), 1, "{copies:?}");
    let copy = &copies[0];
    assert_eq!(text(&src, copy).as_deref(), Some("dst"), "{first:?}");

    // The destination edits its conflict copy: same size, same mtime, other bytes.
    write(&dst, copy, "DST", at(1)).await;
    let second = run(&engine, &src, &dst, SyncMode::TwoWay).await;
    assert_eq!(
        text(&src, copy).as_deref(),
        Some("DST"),
        "the edit of the kept conflict copy was not seen: {second:?}"
    );
}

#[tokio::test]
async fn a_file_downloaded_from_a_remote_side_keeps_a_hash_so_a_local_edit_keeping_size_and_mtime_is_seen()
 {
    // Local disk <- WebDAV: the destination lists no hash and is not read locally, so the
    // engine never hashes it; the source is local, so `--checksum` hashes it every run and
    // compares with the hash the base keeps. The file the engine downloaded must have one.
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (src, dst) = (client(), client());
    let remote: Arc<dyn StorageClient> =
        Arc::new(QuirkClient::new(dst.clone()).with_remote_reads(true));
    write(&dst, "a", "one", at(0)).await;
    let first = run_clients(&engine, src.clone(), remote.clone(), SyncMode::TwoWay).await;
    assert_eq!(first.downloaded, 1, "{first:?}");

    // The local copy is edited: same size, same mtime, other bytes.
    write(&src, "a", "two", at(0)).await;
    let second = run_clients(&engine, src.clone(), remote.clone(), SyncMode::TwoWay).await;
    assert_eq!(
        text(&dst, "a").as_deref(),
        Some("two"),
        "the local edit of the downloaded file was not seen: {second:?}"
    );
    assert_eq!(second.uploaded, 1, "{second:?}");
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

#[tokio::test]
async fn a_file_renamed_like_the_remote_side_keeps_its_hash_so_a_local_edit_keeping_size_and_mtime_is_seen()
 {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (src, dst) = (client(), client());
    let remote: Arc<dyn StorageClient> =
        Arc::new(QuirkClient::new(dst.clone()).with_remote_reads(true));
    write(&src, "c/d", "one", at(0)).await;
    let first = run_clients(&engine, src.clone(), remote.clone(), SyncMode::TwoWay).await;
    assert_eq!(first.uploaded, 1, "{first:?}");
    // Renamed on the remote side; the engine renames the local copy too.
    dst.rename(&rel("c/d"), &rel("a")).await.unwrap();
    let second = run_clients(&engine, src.clone(), remote.clone(), SyncMode::TwoWay).await;
    assert_eq!(second.renamed_source, 1, "{second:?}");

    // The local file is edited: same size, same mtime, other bytes.
    write(&src, "a", "two", at(0)).await;
    let third = run_clients(&engine, src.clone(), remote.clone(), SyncMode::TwoWay).await;
    assert_eq!(
        text(&dst, "a").as_deref(),
        Some("two"),
        "the local edit of the renamed file was not seen: {third:?}"
    );
}

/// A file recorded by a run *without* `--checksum` on a side that lists no hash has no hash
/// of that side in the base. When the other side's record has one (an object store listing
/// MD5s), the first `--checksum` run compares against it: the two sides held the same content
/// when the record was written. Before, that run saw only size and mtime (the residual of
/// F13), missed an edit that kept both, and recorded the edited content as synced.
#[tokio::test]
async fn a_record_without_a_hash_takes_the_other_sides_under_checksum() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = client();
    // Lists the MD5 of each file, as S3 does.
    let dst = Arc::new(MemoryClient::new());
    write(&src, "a", "one", at(0)).await;
    let (s, d): (Arc<dyn StorageClient>, Arc<dyn StorageClient>) = (src.clone(), dst.clone());
    let first = engine
        .sync_pair(&SyncPair::new(s, d, SyncMode::TwoWay))
        .await
        .unwrap();
    assert_eq!((first.uploaded, first.errors), (1, 0), "{first:?}");

    // The source's file is edited keeping size and mtime; then a `--checksum` run.
    write(&src, "a", "two", at(0)).await;
    let second = run(&engine, &src, &dst, SyncMode::TwoWay).await;
    assert_eq!(
        text(&dst, "a").as_deref(),
        Some("two"),
        "the edit was not seen: {second:?}"
    );
}
