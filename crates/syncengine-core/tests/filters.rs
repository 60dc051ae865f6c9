//! Filters (excludes, includes, `max_size`, `min_age`) against the base: a path a run leaves
//! out is never read as deleted on either side, and its base is kept, so lifting the filter
//! later syncs what changed meanwhile as an ordinary edit (no false conflict, no resurrected
//! or lost file).
// Test code: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use syncengine_core::{
    MemoryClient, RelPath, StorageClientExt, SyncEngine, SyncMode, SyncOptions, SyncPair, SyncStats,
};

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

async fn put(c: &MemoryClient, path: &str, data: &str) {
    c.put(&rel(path), Bytes::copy_from_slice(data.as_bytes()))
        .await
        .unwrap();
}

/// Every file of a side except the engine's own folder, as text.
fn user_files(c: &MemoryClient) -> BTreeMap<String, String> {
    c.files()
        .into_iter()
        .filter(|(p, _)| !p.as_str().starts_with(".syncengine/"))
        .map(|(p, b)| (p.to_string(), String::from_utf8_lossy(&b).into_owned()))
        .collect()
}

/// Everything in a side's trash.
fn trash(c: &MemoryClient) -> Vec<String> {
    c.files()
        .into_keys()
        .map(|p| p.to_string())
        .filter(|p| p.starts_with(".syncengine/trash/"))
        .collect()
}

struct Pair {
    state: tempfile::TempDir,
    s: Arc<MemoryClient>,
    d: Arc<MemoryClient>,
}

impl Pair {
    fn new() -> Pair {
        Pair {
            state: tempfile::tempdir().unwrap(),
            s: Arc::new(MemoryClient::new()),
            d: Arc::new(MemoryClient::new()),
        }
    }

    async fn run(&self, mode: SyncMode, opts: SyncOptions) -> SyncStats {
        let pair = SyncPair::new(self.s.clone(), self.d.clone(), mode).with_options(opts);
        let stats = SyncEngine::new(self.state.path())
            .sync_pair(&pair)
            .await
            .unwrap();
        assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
        stats
    }

    /// Both sides hold `files` after a first two-way run.
    async fn synced(files: &[(&str, &str)]) -> Pair {
        let p = Pair::new();
        for (path, data) in files {
            put(&p.s, path, data).await;
        }
        p.run(SyncMode::TwoWay, SyncOptions::default()).await;
        assert_eq!(user_files(&p.s), user_files(&p.d));
        p
    }
}

#[tokio::test]
async fn an_excluded_file_edited_meanwhile_syncs_as_an_edit_once_included_again() {
    let p = Pair::synced(&[("a.txt", "a"), ("notes.tmp", "v1")]).await;
    // Excluded for a while; the destination edits it meanwhile.
    put(&p.d, "notes.tmp", "v2 edited on the destination").await;
    let stats = p
        .run(
            SyncMode::TwoWay,
            SyncOptions::default().with_excludes(["*.tmp"]),
        )
        .await;
    assert_eq!(
        (stats.uploaded, stats.downloaded, stats.conflicts),
        (0, 0, 0)
    );
    assert_eq!(user_files(&p.s)["notes.tmp"], "v1");
    // The exclusion lifted: the edit is an ordinary edit of a known file.
    let stats = p.run(SyncMode::TwoWay, SyncOptions::default()).await;
    assert_eq!(stats.conflicts, 0, "a false conflict: {stats:?}");
    assert_eq!(stats.downloaded, 1, "{stats:?}");
    assert_eq!(
        user_files(&p.s)["notes.tmp"],
        "v2 edited on the destination"
    );
    assert_eq!(user_files(&p.s), user_files(&p.d));
}

#[tokio::test]
async fn a_file_deleted_while_excluded_is_deleted_on_the_other_side_once_included_again() {
    let p = Pair::synced(&[("a.txt", "a"), ("old.tmp", "old")]).await;
    p.s.delete(&rel("old.tmp")).await.unwrap();
    let stats = p
        .run(
            SyncMode::TwoWay,
            SyncOptions::default().with_excludes(["*.tmp"]),
        )
        .await;
    assert_eq!(stats.deleted_destination, 0, "{stats:?}");
    assert!(user_files(&p.d).contains_key("old.tmp"));
    // Without its base, the destination's copy would look new and come back to the source.
    let stats = p.run(SyncMode::TwoWay, SyncOptions::default()).await;
    assert_eq!(stats.uploaded + stats.downloaded, 0, "{stats:?}");
    assert_eq!(stats.deleted_destination, 1, "{stats:?}");
    assert!(!user_files(&p.s).contains_key("old.tmp"));
    assert!(!user_files(&p.d).contains_key("old.tmp"));
    assert_eq!(trash(&p.d).len(), 1, "{:?}", trash(&p.d));
}

#[tokio::test]
async fn an_excluded_folder_keeps_its_base_in_every_mode() {
    for mode in [
        SyncMode::TwoWay,
        SyncMode::SourceToDestination,
        SyncMode::SourceBackup,
        SyncMode::DestinationToSource,
        SyncMode::DestinationBackup,
    ] {
        let p = Pair::synced(&[("a.txt", "a"), ("build/x.o", "x1")]).await;
        put(&p.s, "build/x.o", "x2 on the source").await;
        put(&p.d, "build/x.o", "x2 on the destination").await;
        let stats = p
            .run(mode, SyncOptions::default().with_excludes(["build/"]))
            .await;
        assert!(stats.is_noop(), "{mode}: {stats:?}");
        assert_eq!(user_files(&p.s)["build/x.o"], "x2 on the source", "{mode}");
        assert_eq!(
            user_files(&p.d)["build/x.o"],
            "x2 on the destination",
            "{mode}"
        );
        assert!(trash(&p.s).is_empty() && trash(&p.d).is_empty(), "{mode}");
    }
}

#[tokio::test]
async fn a_mirror_does_not_delete_what_is_excluded_even_when_the_source_lost_it() {
    let p = Pair::synced(&[("a.txt", "a"), ("keep.log", "log")]).await;
    p.s.delete(&rel("keep.log")).await.unwrap();
    let stats = p
        .run(
            SyncMode::SourceToDestination,
            SyncOptions::default().with_excludes(["*.log"]),
        )
        .await;
    assert_eq!(stats.deleted_destination, 0, "{stats:?}");
    assert_eq!(user_files(&p.d)["keep.log"], "log");
}

#[allow(dead_code)]
fn hour_ago() -> SystemTime {
    SystemTime::now() - Duration::from_secs(3600)
}
