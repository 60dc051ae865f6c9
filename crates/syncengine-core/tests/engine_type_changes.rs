//! Engine-level tests of type changes (issue 8, behaviour 10, planning half): a file replaced
//! by a folder or the reverse converges, over `MemoryClient`s that refuse what a disk refuses
//! (a file below a file, a file over a folder).

// Test helpers outside #[test] fns unwrap freely: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/stamps.rs"]
mod stamps;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::{
    MemoryClient, Recovery, RelPath, Side, StorageClientExt, SyncEngine, SyncMode, SyncOptions,
    SyncPair, SyncStats,
};

use stamps::stamps_around_now;

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn files(client: &MemoryClient) -> BTreeMap<String, String> {
    client
        .files()
        .into_iter()
        .map(|(p, b)| (p.to_string(), String::from_utf8_lossy(&b).into_owned()))
        .collect()
}

fn user_files(client: &MemoryClient) -> BTreeMap<String, String> {
    files(client)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(".syncengine/"))
        .collect()
}

fn trashed(client: &MemoryClient, name: &str) -> Vec<String> {
    files(client)
        .into_iter()
        .filter(|(p, _)| p.starts_with(".syncengine/trash/") && p.ends_with(&format!("/{name}")))
        .map(|(_, c)| c)
        .collect()
}

async fn put(client: &MemoryClient, path: &str, data: &str) {
    client
        .put(&rel(path), Bytes::from(data.to_owned()))
        .await
        .unwrap();
}

struct Pair {
    _state: tempfile::TempDir,
    engine: SyncEngine,
    s: Arc<MemoryClient>,
    d: Arc<MemoryClient>,
}

impl Pair {
    fn new() -> Pair {
        let state = tempfile::tempdir().unwrap();
        Pair {
            engine: SyncEngine::new(state.path()),
            _state: state,
            s: Arc::new(MemoryClient::new().with_disk_folders()),
            d: Arc::new(MemoryClient::new().with_disk_folders()),
        }
    }

    fn side(&self, side: Side) -> &MemoryClient {
        match side {
            Side::Source => &self.s,
            Side::Destination => &self.d,
        }
    }

    async fn sync(&self, mode: SyncMode) -> SyncStats {
        let opts = SyncOptions::default()
            .with_recovery(Side::Source, Recovery::Trash)
            .with_recovery(Side::Destination, Recovery::Trash)
            .with_force(true);
        let pair = SyncPair::new(self.s.clone(), self.d.clone(), mode).with_options(opts);
        let stats = self.engine.sync_pair(&pair).await.unwrap();
        assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
        stats
    }

    async fn two_way(&self) -> SyncStats {
        self.sync(SyncMode::TwoWay).await
    }

    /// Both sides equal, and a further run plans nothing.
    async fn assert_converged(&self) {
        assert_eq!(user_files(&self.s), user_files(&self.d));
        let again = self.two_way().await;
        assert!(again.is_noop(), "not idle: {again:?}");
    }
}

/// Conflict copies of `stem` on a side: `stem.conflict-…`.
fn conflict_copies(client: &MemoryClient, stem: &str) -> Vec<(String, String)> {
    user_files(client)
        .into_iter()
        .filter(|(p, _)| p.starts_with(&format!("{stem}.conflict-")))
        .collect()
}

#[tokio::test]
async fn file_replaced_by_a_folder_in_two_way_both_directions() {
    for changer in [Side::Source, Side::Destination] {
        for same_content in [false, true] {
            let p = Pair::new();
            put(&p.s, "notes", "the notes").await;
            put(&p.s, "other.txt", "o").await;
            p.two_way().await;
            let a = p.side(changer);
            a.delete(&rel("notes")).await.unwrap();
            let inner = if same_content {
                "the notes"
            } else {
                "new notes"
            };
            put(a, "notes/today.txt", inner).await;

            let stats = p.two_way().await;
            assert_eq!(stats.conflicts, 0, "{stats:?}");
            let other = p.side(changer.other());
            assert_eq!(files(other).get("notes"), None, "{changer} {same_content}");
            assert_eq!(files(other)["notes/today.txt"], inner);
            assert_eq!(trashed(other, "notes"), vec!["the notes".to_owned()]);
            p.assert_converged().await;
        }
    }
}

#[tokio::test]
async fn folder_replaced_by_a_file_in_two_way_both_directions() {
    for changer in [Side::Source, Side::Destination] {
        for same_content in [false, true] {
            let p = Pair::new();
            put(&p.s, "build/a.o", "object a").await;
            put(&p.s, "build/sub/b.o", "object b").await;
            put(&p.s, "other.txt", "o").await;
            p.two_way().await;
            let a = p.side(changer);
            a.delete(&rel("build/a.o")).await.unwrap();
            a.delete(&rel("build/sub/b.o")).await.unwrap();
            let inner = if same_content {
                "object a"
            } else {
                "a file now"
            };
            put(a, "build", inner).await;

            let stats = p.two_way().await;
            assert_eq!(stats.conflicts, 0, "{stats:?}");
            let other = p.side(changer.other());
            assert_eq!(files(other)["build"], inner, "{changer} {same_content}");
            assert!(!files(other).keys().any(|k| k.starts_with("build/")));
            assert_eq!(trashed(other, "build/a.o"), vec!["object a".to_owned()]);
            assert_eq!(trashed(other, "build/sub/b.o"), vec!["object b".to_owned()]);
            p.assert_converged().await;
        }
    }
}

#[tokio::test]
async fn file_replaced_by_a_folder_while_the_other_side_edited_it() {
    for changer in [Side::Source, Side::Destination] {
        let p = Pair::new();
        put(&p.s, "notes", "the notes").await;
        put(&p.s, "other.txt", "o").await;
        p.two_way().await;
        let a = p.side(changer);
        let b = p.side(changer.other());
        a.delete(&rel("notes")).await.unwrap();
        put(a, "notes/today.txt", "new notes").await;
        put(b, "notes", "the notes, edited").await;

        let stats = p.two_way().await;
        assert_eq!(stats.conflicts, 1, "{stats:?}");
        assert_eq!(stats.conflict_paths, vec![rel("notes")]);
        // The folder keeps the path; the edited file is a conflict copy on both sides.
        for side in [&p.s, &p.d] {
            assert_eq!(files(side)["notes/today.txt"], "new notes");
            let copies = conflict_copies(side, "notes");
            assert_eq!(copies.len(), 1, "{changer}: {:?}", files(side));
            assert_eq!(copies[0].1, "the notes, edited");
            assert!(
                copies[0].0.ends_with(changer.other().as_str()),
                "{copies:?}"
            );
        }
        p.assert_converged().await;
    }
}

#[tokio::test]
async fn folder_replaced_by_a_file_while_the_other_side_edited_a_file_in_it() {
    for changer in [Side::Source, Side::Destination] {
        let p = Pair::new();
        put(&p.s, "build/a.o", "object a").await;
        put(&p.s, "build/b.o", "object b").await;
        put(&p.s, "other.txt", "o").await;
        p.two_way().await;
        let a = p.side(changer);
        let b = p.side(changer.other());
        a.delete(&rel("build/a.o")).await.unwrap();
        a.delete(&rel("build/b.o")).await.unwrap();
        put(a, "build", "a file now").await;
        put(b, "build/a.o", "object a, edited").await;

        let stats = p.two_way().await;
        assert_eq!(stats.conflicts, 1, "{stats:?}");
        for side in [&p.s, &p.d] {
            // The edit survives at its path (modify beats delete) and the folder keeps the
            // path; the unchanged file the changer deleted goes.
            assert_eq!(files(side)["build/a.o"], "object a, edited", "{changer}");
            assert_eq!(files(side).get("build/b.o"), None);
            let copies = conflict_copies(side, "build");
            assert_eq!(copies.len(), 1, "{changer}: {:?}", files(side));
            assert_eq!(copies[0].1, "a file now");
        }
        assert_eq!(trashed(b, "build/b.o"), vec!["object b".to_owned()]);
        p.assert_converged().await;
    }
}

#[tokio::test]
async fn a_file_and_a_folder_of_the_same_name_added_on_both_sides() {
    let p = Pair::new();
    put(&p.s, "x", "a file").await;
    put(&p.d, "x/y", "in a folder").await;
    let stats = p.two_way().await;
    assert_eq!(stats.conflicts, 1, "{stats:?}");
    for side in [&p.s, &p.d] {
        assert_eq!(files(side)["x/y"], "in a folder");
        let copies = conflict_copies(side, "x");
        assert_eq!(copies.len(), 1, "{:?}", files(side));
        assert_eq!(copies[0].1, "a file");
    }
    p.assert_converged().await;
}

#[tokio::test]
async fn names_sorting_between_a_file_and_its_folder_do_not_confuse_the_planner() {
    // `x` < `x-1` < `x.txt` < `x.txt/…` < `x/…`: the planner learns about `x/` late.
    let p = Pair::new();
    put(&p.s, "x", "file x").await;
    put(&p.s, "x-1", "one").await;
    put(&p.s, "x.txt", "txt").await;
    put(&p.s, "x.d/inner", "inner").await;
    p.two_way().await;
    p.d.delete(&rel("x")).await.unwrap();
    put(&p.d, "x/y", "now a folder").await;
    put(&p.d, "x.d/inner2", "more").await;
    let stats = p.two_way().await;
    assert_eq!((stats.conflicts, stats.deleted_source), (0, 1), "{stats:?}");
    assert_eq!(files(&p.s)["x/y"], "now a folder");
    assert_eq!(files(&p.s)["x.d/inner2"], "more");
    assert_eq!(files(&p.s)["x-1"], "one");
    p.assert_converged().await;
}

#[tokio::test]
async fn source_backup_file_replaced_by_a_folder_keeps_the_backup_aside() {
    let p = Pair::new();
    put(&p.s, "notes", "the notes").await;
    put(&p.s, "other.txt", "o").await;
    let sb = SyncMode::SourceBackup;
    p.sync(sb).await;
    p.s.delete(&rel("notes")).await.unwrap();
    put(&p.s, "notes/today.txt", "new notes").await;
    let stats = p.sync(sb).await;
    assert_eq!(stats.deleted_destination, 0, "{stats:?}");
    assert_eq!(files(&p.d)["notes/today.txt"], "new notes");
    let kept = conflict_copies(&p.d, "notes");
    assert_eq!(kept.len(), 1, "{:?}", files(&p.d));
    assert_eq!(kept[0].1, "the notes");
    // The backup stays on the backup side only (a settled deletion), run after run.
    assert!(conflict_copies(&p.s, "notes").is_empty());
    let again = p.sync(sb).await;
    assert!(again.is_noop(), "{again:?}");
    assert!(conflict_copies(&p.s, "notes").is_empty());
}

#[tokio::test]
async fn mirror_mode_type_changes_follow_the_source() {
    let p = Pair::new();
    put(&p.s, "x", "file").await;
    put(&p.s, "f/inner", "in f").await;
    let std = SyncMode::SourceToDestination;
    p.sync(std).await;
    p.s.delete(&rel("x")).await.unwrap();
    put(&p.s, "x/y", "folder now").await;
    p.s.delete(&rel("f/inner")).await.unwrap();
    put(&p.s, "f", "file now").await;
    let stats = p.sync(std).await;
    assert_eq!(stats.conflicts, 0, "{stats:?}");
    assert_eq!(user_files(&p.s), user_files(&p.d));
    assert_eq!(trashed(&p.d, "x"), vec!["file".to_owned()]);
    assert_eq!(trashed(&p.d, "f/inner"), vec!["in f".to_owned()]);
}

/// Stamp folder names (`YYYYMMDDTHHMMSSZ`) for the next few seconds: a run started now uses
/// one of them for its trash.
fn stamps_from_now() -> Vec<String> {
    let now = time::OffsetDateTime::now_utc();
    (-1..=5)
        .map(|s| {
            let t = now + time::Duration::seconds(s);
            format!(
                "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_trash_folder_blocked_by_an_earlier_file_or_folder_of_the_same_name_takes_a_fresh_one() {
    // Model finding F11: a run trashed `a` into `.syncengine/trash/<stamp>/a`; a run of the
    // same second (or later in the same run) then trashed `a/x`, whose trash path cannot
    // exist below that file ("…/<stamp>/a is a file, not a folder"); the delete failed in
    // every such run. The reverse (a folder `<stamp>/a/` in the way of the file `a`) too.
    for (blocking, trashed_path) in [("a", "a/x"), ("a/x", "a")] {
        let p = Pair::new();
        put(&p.s, trashed_path, "to be deleted").await;
        put(&p.s, "keep.txt", "k").await;
        p.two_way().await;
        // Earlier trashed files in the stamp folders this run may use.
        for stamp in stamps_from_now() {
            put(
                &p.d,
                &format!(".syncengine/trash/{stamp}/{blocking}"),
                "trashed earlier",
            )
            .await;
        }
        p.s.delete(&rel(trashed_path)).await.unwrap();
        let stats = p.two_way().await;
        assert_eq!(stats.deleted_destination, 1, "{stats:?}");
        assert!(!user_files(&p.d).contains_key(trashed_path));
        let name = trashed_path.rsplit('/').next().unwrap();
        let kept: Vec<String> = files(&p.d)
            .into_iter()
            .filter(|(path, c)| {
                path.starts_with(".syncengine/trash/")
                    && path.ends_with(&format!("/{trashed_path}"))
                    && c == "to be deleted"
            })
            .map(|(path, _)| path)
            .collect();
        assert_eq!(kept.len(), 1, "{name}: {:?}", files(&p.d));
        assert!(kept[0].contains("Z-2/"), "a fresh stamp folder: {kept:?}");
        p.assert_converged().await;
    }
}

#[tokio::test]
async fn a_file_renamed_away_while_a_folder_takes_its_name_frees_the_name_first() {
    // Model finding (kind case_fold, seed 2): `f/g/h` renamed to `b.txt` and a folder
    // `f/g/h/` created in its place; the rename on the other side ran alongside the copy of
    // `f/g/h/x`, which failed on the file still there. The reverse too: a folder's file
    // renamed away while a file takes the folder's name.
    for changer in [Side::Source, Side::Destination] {
        let p = Pair::new();
        put(&p.s, "f/g/h", "the file h").await;
        put(&p.s, "d/inner", "the file in d").await;
        p.two_way().await;
        let a = p.side(changer);
        a.rename(&rel("f/g/h"), &rel("b.txt")).await.unwrap();
        put(a, "f/g/h/x", "x, in the new folder").await;
        a.rename(&rel("d/inner"), &rel("moved")).await.unwrap();
        put(a, "d", "d, now a file").await;

        let stats = p.two_way().await;
        let renamed = match changer.other() {
            Side::Source => stats.renamed_source,
            Side::Destination => stats.renamed_destination,
        };
        assert_eq!(renamed, 2, "{changer}: {stats:?}");
        let other = p.side(changer.other());
        assert_eq!(files(other)["b.txt"], "the file h");
        assert_eq!(files(other)["f/g/h/x"], "x, in the new folder");
        assert_eq!(files(other)["moved"], "the file in d");
        assert_eq!(files(other)["d"], "d, now a file");
        p.assert_converged().await;
    }
}

/// Model finding F14 (`never_absent`, seed 6100): the last file of a folder renamed out of it
/// while a file takes the folder's name (and the reverse: a file renamed away while a folder
/// takes its name). The other side must carry out the rename before the copy that needs the
/// name, as it does for deletes that make room; on 004946b the copy ran first and failed ("a
/// folder is in the way") in every run (fixed by 6586cb8; this covers both directions and
/// both sides).
#[tokio::test]
async fn a_rename_that_frees_a_name_for_a_type_change_runs_before_the_copy_that_takes_it() {
    for changer in [Side::Source, Side::Destination] {
        // Folder to file: r.txt/x renamed to b.txt, then a file r.txt.
        let p = Pair::new();
        put(&p.s, "r.txt/x", "the x").await;
        p.two_way().await;
        let a = p.side(changer);
        a.rename(&rel("r.txt/x"), &rel("b.txt")).await.unwrap();
        put(a, "r.txt", "a file now").await;
        p.two_way().await;
        let other = files(p.side(changer.other()));
        assert_eq!(
            other.get("b.txt").map(String::as_str),
            Some("the x"),
            "{changer}"
        );
        assert_eq!(
            other.get("r.txt").map(String::as_str),
            Some("a file now"),
            "{changer}"
        );
        p.assert_converged().await;

        // File to folder: r.txt renamed to b.txt, then a file r.txt/x.
        let p = Pair::new();
        put(&p.s, "r.txt", "the r").await;
        p.two_way().await;
        let a = p.side(changer);
        a.rename(&rel("r.txt"), &rel("b.txt")).await.unwrap();
        put(a, "r.txt/x", "below now").await;
        p.two_way().await;
        let other = files(p.side(changer.other()));
        assert_eq!(
            other.get("b.txt").map(String::as_str),
            Some("the r"),
            "{changer}"
        );
        assert_eq!(
            other.get("r.txt/x").map(String::as_str),
            Some("below now"),
            "{changer}"
        );
        p.assert_converged().await;
    }
}

/// Model finding (seed 8402, kind type_change): the destination turns the file `a` into a
/// folder; a destination-backup run (whose table keeps the source's `a` as the backup of a
/// deletion, then moves it aside for the folder) is cancelled before its first action. That
/// run's plan had recorded the settlement of `a` at its start, although the move aside it
/// belongs to never ran: the next two-way run then took the source's unchanged file for a
/// kept backup and made it a conflict copy, where a two-way run trashes it (the side that
/// changed wins). The base now moves for `a` only with the move aside.
#[tokio::test]
async fn a_settlement_waits_for_the_move_aside_it_belongs_to() {
    use syncengine_core::testing::{Fault, FaultClient, FaultConfig};
    use tokio_util::sync::CancellationToken;

    let pair = Pair::new();
    put(&pair.s, "a", "the file a").await;
    pair.two_way().await;
    pair.d.delete(&rel("a")).await.unwrap();
    put(&pair.d, "a/y.txt", "a file in the new folder a").await;

    // The destination-backup run, cancelled when it writes its first generation (right
    // before its actions).
    let token = CancellationToken::new();
    let src =
        FaultClient::new(pair.s.clone(), FaultConfig::none()).with_cancel_token(token.clone());
    src.fail_paths_containing(".syncengine/generation/", Fault::Cancel, 1);
    let engine = pair.engine.clone().with_cancellation(token);
    let opts = SyncOptions::default()
        .with_recovery(Side::Source, Recovery::Trash)
        .with_recovery(Side::Destination, Recovery::Trash);
    let cancelled = engine
        .sync_pair(
            &SyncPair::new(Arc::new(src), pair.d.clone(), SyncMode::DestinationBackup)
                .with_options(opts),
        )
        .await;
    assert!(cancelled.is_err(), "{cancelled:?}");
    assert_eq!(
        user_files(&pair.s).get("a").map(String::as_str),
        Some("the file a")
    );

    let stats = pair.two_way().await;
    assert_eq!(conflict_copies(&pair.s, "a"), [], "{stats:?}");
    assert_eq!(trashed(&pair.s, "a"), ["the file a"], "{stats:?}");
    pair.assert_converged().await;
}

/// Model finding (seed 8506): conflict names carry the run's second, so a run in the same
/// second as an earlier one may pick the name of that run's conflict copy — which the user
/// has since made a folder. The name was checked with a stat, which sees files only: the
/// copy was written onto the folder and failed in a fault-free run. A folder now takes a
/// conflict name too, and the next free one is used.
#[tokio::test]
async fn a_conflict_copy_avoids_a_folder_of_its_name() {
    let pair = Pair::new();
    put(&pair.s, "a", "base").await;
    pair.two_way().await;
    put(&pair.s, "a", "source edit").await;
    put(&pair.d, "a", "destination edit, longer").await;
    // Folders at every name the run could hand out, for every second it may run in.
    for stamp in stamps_around_now() {
        for loser in ["source", "destination"] {
            put(
                &pair.s,
                &format!("a.conflict-{stamp}-{loser}/y.txt"),
                "in a folder",
            )
            .await;
        }
    }
    let stats = pair.two_way().await;
    assert_eq!(stats.conflicts, 1, "{stats:?}");
    for version in ["source edit", "destination edit, longer"] {
        assert!(
            user_files(&pair.s).values().any(|c| c == version)
                && user_files(&pair.d).values().any(|c| c == version),
            "{version:?} is not on both sides: {stats:?}"
        );
    }
    pair.assert_converged().await;
}
