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

/// A plain store, a folding side's inner store, the source and the destination.
type PlainAndFolding = (
    Arc<MemoryClient>,
    Arc<MemoryClient>,
    Arc<dyn StorageClient>,
    Arc<dyn StorageClient>,
);

/// A plain side and a side folding letter case, as (plain, folding's inner store, source,
/// destination) with the folding side on `folding_is_destination`.
fn plain_and_folding(folding_is_destination: bool) -> PlainAndFolding {
    let plain = Arc::new(MemoryClient::new());
    let folded_inner = Arc::new(MemoryClient::new());
    let folded: Arc<dyn StorageClient> =
        Arc::new(QuirkClient::new(folded_inner.clone()).with_case_insensitive(true));
    let (src, dst): (Arc<dyn StorageClient>, Arc<dyn StorageClient>) = if folding_is_destination {
        (plain.clone(), folded)
    } else {
        (folded, plain.clone())
    };
    (plain, folded_inner, src, dst)
}

/// Files stored in `c` outside the engine's folder, with their contents.
fn user_files(c: &MemoryClient) -> Vec<(String, String)> {
    c.files()
        .into_iter()
        .filter(|(p, _)| !p.as_str().starts_with(".syncengine"))
        .map(|(p, b)| (p.into_string(), String::from_utf8_lossy(&b).into_owned()))
        .collect()
}

/// Runs `modes` one after the other; each must report exactly `unknown` unknown paths, no
/// error, name `names` in a warning, and leave both sides as they were (plus `m`, which
/// syncs).
async fn left_alone(
    engine: &SyncEngine,
    (src, dst): (&Arc<dyn StorageClient>, &Arc<dyn StorageClient>),
    (plain, folded_inner): (&MemoryClient, &MemoryClient),
    modes: &[SyncMode],
    unknown: u64,
    names: [&str; 2],
    what: &str,
) {
    let mut before_plain = user_files(plain);
    let mut before_folded = user_files(folded_inner);
    for list in [&mut before_plain, &mut before_folded] {
        if !list.iter().any(|(p, _)| p == "m") {
            list.push(("m".into(), "m".into()));
            list.sort();
        }
    }
    for mode in modes {
        let stats = run(engine, src.clone(), dst.clone(), *mode).await;
        assert_eq!(
            (stats.unknown, stats.errors),
            (unknown, 0),
            "{what}, {mode:?}: {stats:?}"
        );
        assert!(
            stats
                .warnings
                .iter()
                .any(|w| w.contains(&format!("\"{}\"", names[0]))
                    && w.contains(&format!("`{}`", names[1]))),
            "{what}, {mode:?}: the folded twin is named: {:?}",
            stats.warnings
        );
        assert_eq!(
            user_files(plain),
            before_plain,
            "{what}, {mode:?}: plain side"
        );
        assert_eq!(
            user_files(folded_inner),
            before_folded,
            "{what}, {mode:?}: folding side"
        );
    }
}

const ALL_DIRECTIONS: [SyncMode; 4] = [
    SyncMode::TwoWay,
    SyncMode::SourceToDestination,
    SyncMode::DestinationToSource,
    SyncMode::TwoWay,
];

#[tokio::test]
async fn a_name_that_folds_to_an_unknown_name_on_the_other_side_is_left_alone() {
    // Model finding (seed 7003, kinds case_fold + unlisted): `A` on the source, and on a
    // case-insensitive destination an `a` its listing cannot see (a symlink, perhaps to
    // somewhere outside the root). The engine copied `A` there: on a real disk the write
    // lands on `a`. Unknown coverage compared names byte-wise; `A` sorts before `a`, so the
    // unknown item may come only after `A` was visited (`m` keeps the listing's head between
    // them). Every combination: the folding side as destination or source, the unknown name
    // on the folding or the plain side, listed `A` before hidden `a` or hidden `A` before `a`.
    for folding_is_destination in [true, false] {
        for hidden_on_folding in [true, false] {
            for (listed, hidden) in [("A", "a"), ("a", "A")] {
                let what = format!(
                    "folding side is destination: {folding_is_destination}, hidden on the \
                     folding side: {hidden_on_folding}, listed {listed}, hidden {hidden}"
                );
                let state = tempfile::tempdir().unwrap();
                let engine = SyncEngine::new(state.path());
                let (plain, folded_inner, src, dst) = plain_and_folding(folding_is_destination);
                let (holds_hidden, holds_listed) = if hidden_on_folding {
                    (&folded_inner, &plain)
                } else {
                    (&plain, &folded_inner)
                };
                put(holds_hidden, hidden, "unseen").await;
                holds_hidden.set_unlisted(&rel(hidden), Some("a symlink (test)"));
                put(holds_hidden, "m", "m").await;
                put(holds_listed, listed, "listed").await;
                left_alone(
                    &engine,
                    (&src, &dst),
                    (&plain, &folded_inner),
                    &ALL_DIRECTIONS,
                    2,
                    [listed, hidden],
                    &what,
                )
                .await;
                // Once the hidden name can be listed again, the two are an ordinary collision
                // or pair of names; nothing of either is lost.
                holds_hidden.set_unlisted(&rel(hidden), None);
                let stats = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay).await;
                assert_eq!(stats.errors, 0, "{what}: {stats:?}");
                assert_eq!(
                    text(holds_hidden, hidden).as_deref(),
                    Some("unseen"),
                    "{what}"
                );
                assert_eq!(
                    text(holds_listed, listed).as_deref(),
                    Some("listed"),
                    "{what}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_folder_that_folds_to_an_unknown_name_is_left_alone_and_the_reverse() {
    // `A/x` against an unknown `a` (a symlink to a folder, perhaps), and a file `A` against a
    // folder `a` whose only member cannot be listed: nothing is written into or over the
    // unknown, whichever side folds and whichever side holds it.
    for folding_is_destination in [true, false] {
        for hidden_on_folding in [true, false] {
            for (listed, hidden) in [("A/x", "a"), ("A", "a/x"), ("a/y", "A")] {
                let what = format!(
                    "folding side is destination: {folding_is_destination}, hidden on the \
                     folding side: {hidden_on_folding}, listed {listed}, hidden {hidden}"
                );
                let state = tempfile::tempdir().unwrap();
                let engine = SyncEngine::new(state.path());
                let (plain, folded_inner, src, dst) = plain_and_folding(folding_is_destination);
                let (holds_hidden, holds_listed) = if hidden_on_folding {
                    (&folded_inner, &plain)
                } else {
                    (&plain, &folded_inner)
                };
                put(holds_hidden, hidden, "unseen").await;
                holds_hidden.set_unlisted(&rel(hidden), Some("a symlink (test)"));
                put(holds_hidden, "m", "m").await;
                put(holds_listed, listed, "listed").await;
                let top = |p: &str| p.split('/').next().unwrap().to_owned();
                left_alone(
                    &engine,
                    (&src, &dst),
                    (&plain, &folded_inner),
                    &ALL_DIRECTIONS,
                    2,
                    [&top(listed), &top(hidden)],
                    &what,
                )
                .await;
            }
        }
    }
}

#[tokio::test]
async fn a_synced_name_that_became_an_unknown_folded_twin_is_not_deleted_on_the_other_side() {
    // `A` synced; then one side holds, instead of `A`, an `a` its listing cannot see (a
    // case-only rename into a symlink, say). On the folding side that is the same name, so
    // `A` there is unknown, not deleted; on the plain side `a` is unknown and the folding
    // side cannot hold `A` apart from it. Either way `A` stays on the other side, in every
    // mode that would propagate a delete, and its base is kept.
    for folding_is_destination in [true, false] {
        for renamed_on_folding in [true, false] {
            let what = format!(
                "folding side is destination: {folding_is_destination}, renamed on the folding \
                 side: {renamed_on_folding}"
            );
            let state = tempfile::tempdir().unwrap();
            let engine = SyncEngine::new(state.path());
            let (plain, folded_inner, src, dst) = plain_and_folding(folding_is_destination);
            put(&plain, "A", "synced").await;
            put(&plain, "m", "m").await;
            let first = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay).await;
            assert_eq!(
                (first.uploaded + first.downloaded, first.errors),
                (2, 0),
                "{what}"
            );
            let renaming = if renamed_on_folding {
                &folded_inner
            } else {
                &plain
            };
            renaming.delete(&rel("A")).await.unwrap();
            put(renaming, "a", "unseen").await;
            renaming.set_unlisted(&rel("a"), Some("a symlink (test)"));
            let other = if renamed_on_folding {
                &plain
            } else {
                &folded_inner
            };
            // The modes that would carry a delete from the renaming side to the other.
            let renaming_is_source = renamed_on_folding != folding_is_destination;
            let mirror = if renaming_is_source {
                SyncMode::SourceToDestination
            } else {
                SyncMode::DestinationToSource
            };
            left_alone(
                &engine,
                (&src, &dst),
                (&plain, &folded_inner),
                &[SyncMode::TwoWay, mirror, SyncMode::TwoWay],
                2,
                ["A", "a"],
                &what,
            )
            .await;
            assert_eq!(text(other, "A").as_deref(), Some("synced"), "{what}");
            // Listed again, `a` and `A` are still there on their sides.
            renaming.set_unlisted(&rel("a"), None);
            let stats = run(&engine, src.clone(), dst.clone(), SyncMode::TwoWay).await;
            assert_eq!(stats.errors, 0, "{what}: {stats:?}");
            assert_eq!(text(renaming, "a").as_deref(), Some("unseen"), "{what}");
        }
    }
}
