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

fn hour_ago() -> SystemTime {
    SystemTime::now() - Duration::from_secs(3600)
}

/// Puts `data` at `path` with an mtime an hour ago (old enough for `min_age` of minutes).
async fn put_old(c: &MemoryClient, path: &str, data: &str) {
    put(c, path, data).await;
    c.set_mtime(&rel(path), hour_ago()).unwrap();
}

#[tokio::test]
async fn includes_sync_only_matching_files_at_any_depth_and_leave_the_rest_alone() {
    let p = Pair::new();
    put(&p.s, "a.jpg", "a").await;
    put(&p.s, "deep/er/b.jpg", "b").await;
    put(&p.s, "deep/er/b.txt", "text").await;
    put(&p.s, "thumbs/c.jpg", "c").await;
    put(&p.d, "only-here.txt", "dest").await;
    let opts = || {
        SyncOptions::default()
            .with_includes(["*.jpg"])
            .with_excludes(["thumbs/"])
    };
    let stats = p.run(SyncMode::SourceToDestination, opts()).await;
    assert_eq!(stats.uploaded, 2, "{stats:?}");
    assert_eq!(
        user_files(&p.d).into_keys().collect::<Vec<_>>(),
        ["a.jpg", "deep/er/b.jpg", "only-here.txt"],
        "a mirror deletes nothing an include leaves out"
    );
    // A file left out is skipped, not deleted, when it goes on one side.
    p.s.delete(&rel("deep/er/b.txt")).await.unwrap();
    let stats = p.run(SyncMode::SourceToDestination, opts()).await;
    assert_eq!(stats.deleted_destination, 0, "{stats:?}");
    assert!(stats.skipped >= 1, "{stats:?}");
}

#[tokio::test]
async fn a_file_that_grew_past_max_size_keeps_the_other_sides_copy_and_syncs_later() {
    let p = Pair::synced(&[("small.txt", "s"), ("video.bin", "0123456789")]).await;
    put(&p.s, "video.bin", &"x".repeat(100)).await;
    for mode in SyncMode::ALL {
        let stats = p.run(mode, SyncOptions::default().with_max_size(50)).await;
        assert!(stats.is_noop(), "{mode}: {stats:?}");
        assert_eq!(stats.skipped, 1, "{mode}: {stats:?}");
        assert_eq!(user_files(&p.d)["video.bin"], "0123456789", "{mode}");
        assert!(trash(&p.d).is_empty(), "{mode}");
    }
    // Without the limit the growth is an ordinary edit of a known file.
    let stats = p.run(SyncMode::TwoWay, SyncOptions::default()).await;
    assert_eq!((stats.uploaded, stats.conflicts), (1, 0), "{stats:?}");
    assert_eq!(user_files(&p.d)["video.bin"], "x".repeat(100));
}

#[tokio::test]
async fn a_file_just_edited_waits_for_min_age_and_is_never_a_delete() {
    let p = Pair::new();
    put_old(&p.s, "old.txt", "old").await;
    put_old(&p.s, "doc.txt", "v1").await;
    put(&p.s, "fresh.txt", "fresh").await;
    let ten_min = || SyncOptions::default().with_min_age(Duration::from_secs(600));
    let stats = p.run(SyncMode::TwoWay, ten_min()).await;
    assert_eq!(stats.uploaded, 2, "{stats:?}");
    assert!(!user_files(&p.d).contains_key("fresh.txt"));
    // The destination edits doc.txt just now; the source deletes its copy.
    put(&p.d, "doc.txt", "v2 being written").await;
    p.s.delete(&rel("doc.txt")).await.unwrap();
    let stats = p.run(SyncMode::TwoWay, ten_min()).await;
    assert_eq!(stats.deleted_destination, 0, "{stats:?}");
    assert_eq!(user_files(&p.d)["doc.txt"], "v2 being written");
    // Ten minutes on (the mtime moved back), the edit wins over the deletion as it would
    // have without the filter: a file changed on one side and deleted on the other is kept.
    p.d.set_mtime(&rel("doc.txt"), hour_ago()).unwrap();
    let stats = p.run(SyncMode::TwoWay, ten_min()).await;
    assert_eq!(stats.deleted_destination, 0, "{stats:?}");
    assert_eq!(user_files(&p.s)["doc.txt"], "v2 being written");
}

/// The safety rules count only what the run manages: files a size or age filter leaves out
/// do not dilute `max_delete_percent`, as excluded files do not.
#[tokio::test]
async fn filtered_files_do_not_dilute_the_max_delete_percentage() {
    let mut files: Vec<(String, String)> = (0..8)
        .map(|i| (format!("big{i}.bin"), "x".repeat(100)))
        .collect();
    files.extend((0..3).map(|i| (format!("s{i}.txt"), format!("small {i}"))));
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, d)| (&**p, &**d)).collect();
    let p = Pair::synced(&refs).await;
    p.s.delete(&rel("s0.txt")).await.unwrap();
    p.s.delete(&rel("s1.txt")).await.unwrap();
    let pair = SyncPair::new(p.s.clone(), p.d.clone(), SyncMode::SourceToDestination)
        .with_options(SyncOptions::default().with_max_size(50));
    let result = SyncEngine::new(p.state.path()).sync_pair(&pair).await;
    // 2 of the 3 files the run manages on the destination: 66% > 50%.
    match result {
        Err(e) => assert!(e.is_safety_stop(), "{e}"),
        Ok(stats) => panic!("deleted 2 of 3 managed files without a stop: {stats:?}"),
    }
    assert_eq!(user_files(&p.d).len(), 11);
    // Counted against the managed files only, one deletion of three passes.
    p.s.delete(&rel("s2.txt")).await.unwrap();
    put(&p.s, "s0.txt", "small 0").await;
    put(&p.s, "s1.txt", "small 1").await;
    let stats = p
        .run(
            SyncMode::SourceToDestination,
            SyncOptions::default().with_max_size(50),
        )
        .await;
    assert_eq!(stats.deleted_destination, 1, "{stats:?}");
}

/// An excluded file is never half of a rename: moving `keep.dat` (excluded) to `moved.txt`
/// on the source copies `moved.txt`; the destination's excluded `keep.dat` is not moved.
#[tokio::test]
async fn an_excluded_file_is_not_paired_as_a_rename() {
    let body = "the same bytes under both names";
    let p = Pair::synced(&[("a.txt", "a"), ("keep.dat", body)]).await;
    p.s.delete(&rel("keep.dat")).await.unwrap();
    put(&p.s, "moved.txt", body).await;
    let stats = p
        .run(
            SyncMode::TwoWay,
            SyncOptions::default().with_excludes(["*.dat"]),
        )
        .await;
    assert_eq!(
        (stats.renamed_destination, stats.uploaded),
        (0, 1),
        "{stats:?}"
    );
    assert_eq!(user_files(&p.d)["keep.dat"], body);
    assert_eq!(user_files(&p.d)["moved.txt"], body);
    // Without the exclusion the same move is a rename.
    let p = Pair::synced(&[("a.txt", "a"), ("keep.dat", body)]).await;
    p.s.delete(&rel("keep.dat")).await.unwrap();
    put(&p.s, "moved.txt", body).await;
    let stats = p.run(SyncMode::TwoWay, SyncOptions::default()).await;
    assert_eq!(stats.renamed_destination, 1, "{stats:?}");
}
