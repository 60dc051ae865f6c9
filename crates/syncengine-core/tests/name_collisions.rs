//! Name collisions (issue 8, behaviour 9): names that one side folds into one file
//! (`Readme`/`readme`, NFC/NFD `café`) are reported and kept apart: never copied onto each
//! other, never deleted on either side because one of them seemed to vanish.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::testing::QuirkClient;
use syncengine_core::{
    MemoryClient, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncOptions,
    SyncPair, SyncStats,
};

const NFC: &str = "caf\u{e9}";
const NFD: &str = "cafe\u{301}";

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

async fn put(c: &MemoryClient, path: &str, data: &str) {
    c.put(&rel(path), Bytes::from(data.to_owned()))
        .await
        .unwrap();
}

fn text(c: &MemoryClient, path: &str) -> Option<String> {
    c.files()
        .get(&rel(path))
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Paths stored in `c` outside the engine's own folder.
fn user_paths(c: &MemoryClient) -> Vec<String> {
    c.files()
        .keys()
        .map(|p| p.as_str().to_string())
        .filter(|p| !p.starts_with(".syncengine"))
        .collect()
}

async fn run(
    engine: &SyncEngine,
    src: Arc<dyn StorageClient>,
    dst: Arc<dyn StorageClient>,
    mode: SyncMode,
) -> SyncStats {
    let pair = SyncPair::new(src, dst, mode).with_options(SyncOptions::default());
    engine.sync_pair(&pair).await.unwrap()
}

/// `names` collide on a folding side. For each direction (the folding side as destination,
/// then as source): the plain side holds both names plus an unrelated file; runs in several
/// modes, with the user editing one of the colliding files in between, must report both
/// names as unknown, copy neither onto the other, and delete neither anywhere.
async fn colliding_names_are_kept_apart(names: [&str; 2], folding: fn(QuirkClient) -> QuirkClient) {
    for folding_is_destination in [true, false] {
        let state = tempfile::tempdir().unwrap();
        let engine = SyncEngine::new(state.path());
        let plain = Arc::new(MemoryClient::new());
        let folded_inner = Arc::new(MemoryClient::new());
        let folded: Arc<dyn StorageClient> =
            Arc::new(folding(QuirkClient::new(folded_inner.clone())));
        put(&plain, &format!("docs/{}", names[0]), "first").await;
        put(&plain, &format!("docs/{}", names[1]), "second").await;
        put(&plain, "docs/other", "other").await;
        let (src, dst): (Arc<dyn StorageClient>, Arc<dyn StorageClient>) = if folding_is_destination
        {
            (plain.clone(), folded.clone())
        } else {
            (folded.clone(), plain.clone())
        };
        for (i, mode) in [
            SyncMode::TwoWay,
            SyncMode::TwoWay,
            SyncMode::SourceToDestination,
            SyncMode::DestinationToSource,
            SyncMode::TwoWay,
        ]
        .into_iter()
        .enumerate()
        {
            let stats = run(&engine, src.clone(), dst.clone(), mode).await;
            assert_eq!(stats.unknown, 2, "run {i} ({mode:?}): {stats:?}");
            assert!(
                stats
                    .warnings
                    .iter()
                    .any(|w| w.contains(&format!("`docs/{}`", names[1]))),
                "the collision is named: {:?}",
                stats.warnings
            );
            // Nothing was copied onto the folding side, and both files are intact.
            assert_eq!(
                user_paths(&folded_inner),
                ["docs/other"],
                "run {i} ({mode:?}), folding side is destination: {folding_is_destination}"
            );
            let second = if i == 0 {
                "second".to_string()
            } else {
                format!("edit {}", i - 1)
            };
            assert_eq!(
                text(&plain, &format!("docs/{}", names[0])).as_deref(),
                Some("first")
            );
            assert_eq!(
                text(&plain, &format!("docs/{}", names[1])).as_deref(),
                Some(second.as_str())
            );
            // The user keeps editing one of them.
            put(&plain, &format!("docs/{}", names[1]), &format!("edit {i}")).await;
        }
    }
}

#[tokio::test]
async fn case_colliding_names_are_reported_and_never_deleted_or_merged() {
    colliding_names_are_kept_apart(["Readme", "readme"], |q| q.with_case_insensitive(true)).await;
}

#[tokio::test]
async fn nfc_nfd_colliding_names_are_reported_and_never_deleted_or_merged() {
    colliding_names_are_kept_apart([NFC, NFD], |q| q.with_normalization_insensitive(true)).await;
}

/// A file already synced to a case-insensitive destination keeps its content there when the
/// user adds a name colliding with it on the source; neither is deleted later.
#[tokio::test]
async fn a_new_colliding_name_does_not_overwrite_the_synced_file() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst_inner = Arc::new(MemoryClient::new());
    let dst: Arc<dyn StorageClient> =
        Arc::new(QuirkClient::new(dst_inner.clone()).with_case_insensitive(true));
    put(&src, "Readme", "old").await;
    let stats = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay).await;
    assert_eq!((stats.uploaded, stats.unknown), (1, 0));
    put(&src, "readme", "new").await;
    for mode in [
        SyncMode::TwoWay,
        SyncMode::SourceToDestination,
        SyncMode::TwoWay,
    ] {
        let stats = run(&engine, src.clone(), dst.clone(), mode).await;
        assert_eq!(stats.unknown, 2, "{mode:?}: {stats:?}");
        assert_eq!(text(&dst_inner, "Readme").as_deref(), Some("old"));
        assert_eq!(user_paths(&dst_inner), ["Readme"]);
        assert_eq!(text(&src, "Readme").as_deref(), Some("old"));
        assert_eq!(text(&src, "readme").as_deref(), Some("new"));
    }
    // Once the user renames one, the pair syncs again.
    src.delete(&rel("readme")).await.unwrap();
    put(&src, "readme-2", "new").await;
    let stats = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay).await;
    assert_eq!(stats.unknown, 0, "{stats:?}");
    assert_eq!(text(&dst_inner, "readme-2").as_deref(), Some("new"));
    assert_eq!(text(&dst_inner, "Readme").as_deref(), Some("old"));
}

#[tokio::test]
async fn a_name_replaced_by_one_differing_in_case_reaches_a_folding_side_and_blocks_no_delete() {
    // Model finding (kind case_fold, seed 4242): the source replaced `readme.txt` by
    // `README.txt` (new content) and deleted `r.txt`. On a case-insensitive destination the
    // copy of `README.txt` failed on the old `readme.txt` (deleted only after the copies), and
    // that failure postponed every delete of the folder — in every run, for ever.
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst_inner = Arc::new(MemoryClient::new());
    let dst: Arc<dyn StorageClient> =
        Arc::new(QuirkClient::new(dst_inner.clone()).with_case_insensitive(true));
    put(&src, "readme.txt", "old readme").await;
    put(&src, "r.txt", "r").await;
    for i in 0..4 {
        put(&src, &format!("keep{i}.txt"), "k").await;
    }
    let first = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay).await;
    assert_eq!(first.uploaded, 6, "{first:?}");

    src.delete(&rel("readme.txt")).await.unwrap();
    put(&src, "README.txt", "the new README, longer").await;
    src.delete(&rel("r.txt")).await.unwrap();
    let stats = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay).await;
    assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
    assert_eq!(
        (stats.uploaded, stats.deleted_destination),
        (1, 2),
        "{stats:?}"
    );
    assert_eq!(
        user_paths(&dst_inner),
        [
            "README.txt",
            "keep0.txt",
            "keep1.txt",
            "keep2.txt",
            "keep3.txt"
        ]
    );
    assert_eq!(
        text(&dst_inner, "README.txt").as_deref(),
        Some("the new README, longer")
    );
    let idle = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay).await;
    assert!(idle.is_noop(), "{idle:?}");
}

#[tokio::test]
async fn a_rename_freeing_a_name_on_a_folding_side_runs_before_the_copy_that_takes_it() {
    // Model finding (kind case_fold, seed 777): the source renamed `B.txt` to `r.txt` and
    // added a new `b.txt`; on a case-insensitive destination the copy of `b.txt` ran beside
    // the rename and failed on the old `B.txt`.
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst_inner = Arc::new(MemoryClient::new());
    let dst: Arc<dyn StorageClient> =
        Arc::new(QuirkClient::new(dst_inner.clone()).with_case_insensitive(true));
    put(&src, "B.txt", "the B file").await;
    for i in 0..3 {
        put(&src, &format!("keep{i}.txt"), "k").await;
    }
    run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay).await;
    src.rename(&rel("B.txt"), &rel("r.txt")).await.unwrap();
    put(&src, "b.txt", "a new b file, longer").await;
    let stats = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay).await;
    assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
    assert_eq!(
        (stats.uploaded, stats.renamed_destination),
        (1, 1),
        "{stats:?}"
    );
    assert_eq!(
        text(&dst_inner, "b.txt").as_deref(),
        Some("a new b file, longer")
    );
    assert_eq!(text(&dst_inner, "r.txt").as_deref(), Some("the B file"));
    let idle = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay).await;
    assert!(idle.is_noop(), "{idle:?}");
}

#[tokio::test]
async fn names_new_on_each_side_that_a_folding_side_holds_as_one_are_reported_not_copied() {
    // Model finding (kind case_fold): `a` new on the source and `A` new on a case-insensitive
    // destination. Neither listing holds both, so neither showed the collision: the copy of
    // `a` failed on `A` (an error in every run), and `A` reached the source, which then held
    // both. The same for a file `x` and a folder `X/` of one folded name.
    for folding_is_destination in [true, false] {
        let state = tempfile::tempdir().unwrap();
        let engine = SyncEngine::new(state.path());
        let plain = Arc::new(MemoryClient::new());
        let folded_inner = Arc::new(MemoryClient::new());
        let folded: Arc<dyn StorageClient> =
            Arc::new(QuirkClient::new(folded_inner.clone()).with_case_insensitive(true));
        put(&plain, "docs/a", "a on the plain side").await;
        put(&plain, "x", "a file x").await;
        put(&plain, "docs/other", "other").await;
        put(&folded_inner, "docs/A", "A on the folding side").await;
        put(&folded_inner, "X/y", "a file in folder X").await;
        let (src, dst): (Arc<dyn StorageClient>, Arc<dyn StorageClient>) = if folding_is_destination
        {
            (plain.clone(), folded.clone())
        } else {
            (folded.clone(), plain.clone())
        };
        for mode in [SyncMode::TwoWay, SyncMode::TwoWay] {
            let stats = run(&engine, src.clone(), dst.clone(), mode).await;
            assert_eq!(
                (stats.unknown, stats.errors),
                (4, 0),
                "folding side is destination: {folding_is_destination}: {stats:?}"
            );
            assert!(
                stats
                    .warnings
                    .iter()
                    .any(|w| w.contains("\"docs/a\"") && w.contains("\"docs/A\"")),
                "{:?}",
                stats.warnings
            );
            assert_eq!(user_paths(&plain), ["docs/a", "docs/other", "x"]);
            assert_eq!(user_paths(&folded_inner), ["X/y", "docs/A", "docs/other"]);
        }
        // Once the user renames one of each pair, the pair syncs.
        plain.rename(&rel("docs/a"), &rel("docs/a2")).await.unwrap();
        plain.rename(&rel("x"), &rel("x2")).await.unwrap();
        let stats = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay).await;
        assert_eq!((stats.unknown, stats.errors), (0, 0), "{stats:?}");
        assert_eq!(user_paths(&plain), user_paths(&folded_inner));
        assert_eq!(
            text(&plain, "docs/A").as_deref(),
            Some("A on the folding side")
        );
    }
}

#[tokio::test]
async fn a_rename_onto_a_name_new_on_the_folding_side_is_a_collision_and_its_old_name_goes() {
    // Model finding (seed 8402, kind type_change): the plain side renames `c/d` → `a` while
    // the folding side adds `A`. The rename's new name crosses the addition: mirroring the
    // rename failed on `A` (an error in a fault-free run, every run) and left `c/d` behind.
    // Now `a` and `A` are a reported collision like two additions, and the old name goes as
    // the plain side deleted it (to the trash).
    for folding_is_destination in [true, false] {
        let state = tempfile::tempdir().unwrap();
        let engine = SyncEngine::new(state.path());
        let plain = Arc::new(MemoryClient::new());
        let folded_inner = Arc::new(MemoryClient::new());
        let folded: Arc<dyn StorageClient> =
            Arc::new(QuirkClient::new(folded_inner.clone()).with_case_insensitive(true));
        let (src, dst): (Arc<dyn StorageClient>, Arc<dyn StorageClient>) = if folding_is_destination
        {
            (plain.clone(), folded.clone())
        } else {
            (folded.clone(), plain.clone())
        };
        put(&plain, "c/d", "the file d").await;
        put(&plain, "keep", "k").await;
        let first = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay).await;
        assert_eq!(first.errors, 0, "{first:?}");
        plain.rename(&rel("c/d"), &rel("a")).await.unwrap();
        put(&folded_inner, "A", "a new A, longer").await;
        for _ in 0..2 {
            let stats = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay).await;
            assert_eq!(
                (stats.errors, stats.unknown),
                (0, 2),
                "folding side is destination: {folding_is_destination}: {stats:?}"
            );
            assert!(
                stats
                    .warnings
                    .iter()
                    .any(|w| w.contains("\"a\"") && w.contains("\"A\"")),
                "{:?}",
                stats.warnings
            );
            assert_eq!(user_paths(&plain), ["a", "keep"]);
            assert_eq!(user_paths(&folded_inner), ["A", "keep"]);
        }
        // The old name's content is not lost: it is in the folding side's trash.
        assert!(
            folded_inner
                .files()
                .iter()
                .any(|(p, b)| p.as_str().starts_with(".syncengine/trash/") && b == "the file d"),
            "{:?}",
            folded_inner.files().keys().collect::<Vec<_>>()
        );
    }
}
