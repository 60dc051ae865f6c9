//! Renames must be proven and double edits hashed (issue 8, behaviours 3 and 6), end to end
//! over `MemoryClient`s whose switches reproduce what real storage does: inodes and birth
//! times reused by new files, WebDAV-style listings without hashes whose ETags derive from
//! size and mtime.

// Test helpers outside #[test] fns unwrap freely: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use syncengine_core::client::bytes_stream;
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::{
    ByteStream, Entry, MemoryClient, ReadOptions, RelPath, Result, StorageClient, StorageClientExt,
    SyncEngine, SyncMode, SyncOptions, SyncPair, SyncStats, WriteOptions,
};

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

async fn write(client: &MemoryClient, path: &str, body: &str, mtime: SystemTime) -> Entry {
    client
        .write_opts(
            &rel(path),
            bytes_stream(Bytes::from(body.to_owned())),
            WriteOptions::default().with_mtime(mtime),
        )
        .await
        .unwrap()
}

/// The synced files (the engine's own `.syncengine/` folder left out).
fn contents(client: &MemoryClient) -> BTreeMap<String, String> {
    client
        .files()
        .into_iter()
        .filter(|(p, _)| !p.as_str().starts_with(".syncengine/"))
        .map(|(p, b)| (p.to_string(), String::from_utf8_lossy(&b).into_owned()))
        .collect()
}

/// The contents in the trash.
fn trashed(client: &MemoryClient) -> Vec<String> {
    client
        .files()
        .into_iter()
        .filter(|(p, _)| p.as_str().starts_with(".syncengine/trash/"))
        .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(p, b)| ((*p).to_owned(), (*b).to_owned()))
        .collect()
}

struct Fixture {
    _state: tempfile::TempDir,
    engine: SyncEngine,
    src: Arc<MemoryClient>,
    dst: Arc<MemoryClient>,
}

fn fixture() -> Fixture {
    let state = tempfile::tempdir().unwrap();
    Fixture {
        engine: SyncEngine::new(state.path()),
        _state: state,
        src: Arc::new(MemoryClient::new()),
        dst: Arc::new(MemoryClient::new()),
    }
}

/// Files nobody touches, so the one deletion a test plans stays under max-delete.
const OTHERS: [&str; 3] = ["other/1", "other/2", "other/3"];

async fn write_others(client: &MemoryClient) {
    for path in OTHERS {
        write(client, path, path, at(500)).await;
    }
}

/// `pairs` plus the untouched [`OTHERS`].
fn with_others(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m = map(pairs);
    m.extend(OTHERS.iter().map(|p| ((*p).to_owned(), (*p).to_owned())));
    m
}

impl Fixture {
    async fn sync_with(&self, opts: SyncOptions) -> SyncStats {
        let pair =
            SyncPair::new(self.src.clone(), self.dst.clone(), SyncMode::TwoWay).with_options(opts);
        let stats = self.engine.sync_pair(&pair).await.unwrap();
        assert_eq!(stats.errors, 0, "{stats:?}");
        stats
    }

    async fn sync(&self) -> SyncStats {
        self.sync_with(SyncOptions::default()).await
    }
}

/// A file deleted and a new one written under another name that reuses its inode (and, on
/// coarse filesystems, its birth time), with the same size and mtime: not a rename. The new
/// name gets the new content; the old code renamed the old content onto it and called the
/// pair clean.
#[tokio::test]
async fn a_reused_inode_with_equal_size_and_mtime_is_not_a_rename() {
    for (reuse_birth, webdav_like) in [(false, false), (true, false), (false, true), (true, true)] {
        let f = fixture();
        f.src.reuse_file_ids(true);
        f.src.reuse_birth_times(reuse_birth);
        f.src.webdav_like_metadata(webdav_like);
        write_others(&f.src).await;
        let old = write(&f.src, "a.txt", "old!", at(1_000)).await;
        f.sync().await;
        f.src.delete(&rel("a.txt")).await.unwrap();
        let new = write(&f.src, "b.txt", "new!", at(1_000)).await;
        assert_eq!(new.file_id, old.file_id, "the switch reuses the inode");
        if reuse_birth {
            assert_eq!(new.birth_time, old.birth_time);
        }

        let stats = f.sync().await;
        let case = format!("reuse_birth {reuse_birth}, webdav_like {webdav_like}: {stats:?}");
        assert_eq!(stats.renamed_destination, 0, "{case}");
        assert_eq!(
            contents(&f.dst),
            with_others(&[("b.txt", "new!")]),
            "{case}"
        );
        assert_eq!(
            contents(&f.src),
            with_others(&[("b.txt", "new!")]),
            "{case}"
        );
        assert_eq!(trashed(&f.dst), ["old!"], "{case}: the old version is kept");
        assert!(f.sync().await.is_noop(), "{case}");
    }
}

/// A real rename is still carried out as a rename: proven by the hash the listing gives, by
/// inode + birth time where there is no hash, and by a hash computed on demand where there
/// is neither a hash nor a birth time.
#[tokio::test]
async fn a_genuine_rename_is_still_a_rename() {
    for (webdav_like, no_birth) in [(false, false), (true, false), (true, true)] {
        let f = fixture();
        f.src.webdav_like_metadata(webdav_like);
        f.src.without_birth_times(no_birth);
        write(&f.src, "a.txt", "content", at(1_000)).await;
        f.sync().await;
        f.src.rename(&rel("a.txt"), &rel("d/b.txt")).await.unwrap();
        let stats = f.sync().await;
        let case = format!("webdav_like {webdav_like}, no_birth {no_birth}: {stats:?}");
        assert_eq!(stats.renamed_destination, 1, "{case}");
        assert_eq!(
            (stats.uploaded, stats.deleted_destination),
            (0, 0),
            "{case}"
        );
        assert_eq!(contents(&f.dst), map(&[("d/b.txt", "content")]), "{case}");
        assert!(f.sync().await.is_noop(), "{case}");
    }
}

/// An ETag that servers derive from size and mtime (Apache) names two different files of
/// equal size and mtime alike: it nominates a rename, content decides it is none.
#[tokio::test]
async fn an_etag_nominated_rename_with_other_content_is_not_a_rename() {
    let f = fixture();
    f.src.webdav_like_metadata(true);
    write_others(&f.src).await;
    let old = write(&f.src, "a.txt", "aaa", at(1_000)).await;
    f.sync().await;
    f.src.delete(&rel("a.txt")).await.unwrap();
    let new = write(&f.src, "b.txt", "bbb", at(1_000)).await;
    assert_eq!(new.etag, old.etag, "the ETags agree");
    assert_ne!(new.file_id, old.file_id);

    let stats = f.sync().await;
    assert_eq!(stats.renamed_destination, 0, "{stats:?}");
    assert_eq!(
        contents(&f.dst),
        with_others(&[("b.txt", "bbb")]),
        "{stats:?}"
    );
    assert_eq!(trashed(&f.dst), ["aaa"]);
}

/// Both sides edited one file to the same size and mtime: the contents are hashed, so it is
/// a conflict and both versions survive (the old code called them equal and kept each side's
/// own version, for good).
#[tokio::test]
async fn a_double_edit_keeping_size_and_mtime_is_a_conflict_and_the_loser_is_kept() {
    let f = fixture();
    f.src.webdav_like_metadata(true);
    f.dst.webdav_like_metadata(true);
    write(&f.src, "a.txt", "base", at(1_000)).await;
    f.sync().await;
    write(&f.src, "a.txt", "srcE", at(2_000)).await;
    write(&f.dst, "a.txt", "dstE", at(2_000)).await;

    let stats = f.sync().await;
    assert_eq!(stats.conflicts, 1, "{stats:?}");
    let (s, d) = (contents(&f.src), contents(&f.dst));
    assert_eq!(s.get("a.txt"), d.get("a.txt"), "{s:?} {d:?}");
    for version in ["srcE", "dstE"] {
        assert!(
            s.values().chain(d.values()).any(|b| b == version),
            "{version} lost: {s:?} {d:?}"
        );
    }
}

/// Both sides made the same edit (same size, mtime and bytes): synced, not a conflict.
#[tokio::test]
async fn a_double_edit_to_identical_content_is_no_conflict() {
    let f = fixture();
    f.src.webdav_like_metadata(true);
    f.dst.webdav_like_metadata(true);
    write(&f.src, "a.txt", "base", at(1_000)).await;
    f.sync().await;
    write(&f.src, "a.txt", "same", at(2_000)).await;
    write(&f.dst, "a.txt", "same", at(2_000)).await;
    let stats = f.sync().await;
    assert!(stats.is_noop(), "{stats:?}");
    assert!(f.sync().await.is_noop());
}

/// `--checksum` sees an edit that kept size and mtime on a side whose listing has no hash
/// (hashes are kept in the base), and copies it.
#[tokio::test]
async fn checksum_detects_an_edit_that_keeps_size_and_mtime() {
    let f = fixture();
    f.src.webdav_like_metadata(true);
    f.dst.webdav_like_metadata(true);
    let checksum = || SyncOptions::default().with_checksum(true);
    write(&f.src, "a.txt", "version 1", at(1_000)).await;
    f.sync_with(checksum()).await;
    write(&f.src, "a.txt", "version 2", at(1_000)).await;

    let stats = f.sync_with(checksum()).await;
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    assert_eq!(contents(&f.dst), map(&[("a.txt", "version 2")]));
    assert!(f.sync_with(checksum()).await.is_noop());
}

/// A [`MemoryClient`] that counts the reads of file content.
#[derive(Debug, Default)]
struct CountingReads {
    inner: MemoryClient,
    reads: AtomicU64,
}

#[async_trait]
impl Hooks for CountingReads {
    fn inner(&self) -> &dyn StorageClient {
        &self.inner
    }
    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        // Only reads of user files that find one count: every run looks for `.syncignore`
        // and reads each root's `.syncengine/root-id`.
        let body = self.inner.read_opts(path, opts).await?;
        if !path.as_str().starts_with(".syncengine/") {
            self.reads.fetch_add(1, Ordering::Relaxed);
        }
        Ok(body)
    }
}

/// A run over unchanged trees reads no file without `--checksum`, even where listings carry
/// no hash; with it, it reads them (and records the hashes), and a later run without it is
/// idle again and reads nothing.
#[tokio::test]
async fn a_no_change_run_reads_no_file_without_checksum() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (src, dst) = (
        Arc::new(Forwarding::new(CountingReads::default())),
        Arc::new(Forwarding::new(CountingReads::default())),
    );
    src.inner.webdav_like_metadata(true);
    dst.inner.webdav_like_metadata(true);
    for i in 0..20 {
        write(
            &src.inner,
            &format!("d{}/f{i}", i % 3),
            &format!("body {i}"),
            at(1_000),
        )
        .await;
    }
    let run = |checksum: bool| {
        let pair = SyncPair::new(src.clone(), dst.clone(), SyncMode::TwoWay)
            .with_options(SyncOptions::default().with_checksum(checksum));
        let engine = &engine;
        async move { engine.sync_pair(&pair).await.unwrap() }
    };
    run(false).await;
    let reads = || src.reads.load(Ordering::Relaxed) + dst.reads.load(Ordering::Relaxed);

    let before = reads();
    assert!(run(false).await.is_noop());
    assert_eq!(reads(), before, "a no-change run read file content");

    let stats = run(true).await;
    assert!(stats.is_noop(), "{stats:?}");
    assert!(
        reads() >= before + 40,
        "--checksum hashes every file on both sides"
    );

    let before = reads();
    assert!(run(false).await.is_noop());
    assert_eq!(reads(), before);
}
