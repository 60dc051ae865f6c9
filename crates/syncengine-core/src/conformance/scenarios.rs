//! Sync-scenario cases: the seed's Scenarios tables, run end to end over two real clients.
//!
//! Each case takes a fresh source and destination client (empty roots), builds a base with a
//! first sync, makes one change, runs the mode under test, checks both sides against the
//! seed's table, and then checks that a second run has nothing left to do.

// Test-support code: panicking with a message is how a case fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::client::{StorageClient, StorageClientExt};
use crate::engine::SyncEngine;
use crate::mode::{ConflictStrategy, InitialSyncPreference, Side, SyncMode};
use crate::pair::{SyncOptions, SyncPair};
use crate::path::RelPath;
use crate::stats::SyncStats;

/// A client as the scenarios take it.
pub type Client = Arc<dyn StorageClient>;

/// What a scenario factory may return: a client, or a client with a guard that must live as
/// long as the case (a temp dir, a server handle).
///
/// A factory may also return `Option` of those: `None` (its server is not running) makes the
/// case report that it skipped.
pub trait ScenarioClient: Send {
    /// The client under test.
    fn client(&self) -> Client;

    /// The client under test, or `None` when the case must be skipped.
    fn try_client(&self) -> Option<Client> {
        Some(self.client())
    }
}

impl<C: ScenarioClient> ScenarioClient for Option<C> {
    fn client(&self) -> Client {
        match self {
            Some(c) => c.client(),
            None => panic!("no client: the factory returned None (server not running?)"),
        }
    }

    fn try_client(&self) -> Option<Client> {
        self.as_ref().map(ScenarioClient::client)
    }
}

impl ScenarioClient for Client {
    fn client(&self) -> Client {
        self.clone()
    }
}

impl<C: StorageClient> ScenarioClient for Arc<C> {
    fn client(&self) -> Client {
        self.clone()
    }
}

impl<G: Send> ScenarioClient for (Client, G) {
    fn client(&self) -> Client {
        self.0.clone()
    }
}

/// Expands to one `#[tokio::test]` per sync scenario: every row of every seed Scenarios
/// table, each conflict strategy, each initial preference, and the safety cases. Takes two
/// async factories returning fresh, empty clients (or `(client, guard)` pairs): the source
/// and the destination.
///
/// ```no_run
/// use std::sync::Arc;
/// use syncengine_core::{MemoryClient, StorageClient};
///
/// async fn fresh() -> Arc<dyn StorageClient> {
///     Arc::new(MemoryClient::new())
/// }
/// syncengine_core::sync_scenario_tests!(fresh, fresh);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! sync_scenario_tests {
    ($source:expr, $destination:expr) => {
        $crate::sync_scenario_tests!(@rows $source, $destination;
            two_way_add_at_source: TwoWay AddSource,
            two_way_add_at_destination: TwoWay AddDestination,
            two_way_modify_at_source: TwoWay ModifySource,
            two_way_modify_at_destination: TwoWay ModifyDestination,
            two_way_delete_at_source: TwoWay DeleteSource,
            two_way_delete_at_destination: TwoWay DeleteDestination,
            two_way_rename_at_source: TwoWay RenameSource,
            two_way_rename_at_destination: TwoWay RenameDestination,
            std_add_at_source: SourceToDestination AddSource,
            std_add_at_destination: SourceToDestination AddDestination,
            std_modify_at_source: SourceToDestination ModifySource,
            std_modify_at_destination: SourceToDestination ModifyDestination,
            std_delete_at_source: SourceToDestination DeleteSource,
            std_delete_at_destination: SourceToDestination DeleteDestination,
            std_rename_at_source: SourceToDestination RenameSource,
            std_rename_at_destination: SourceToDestination RenameDestination,
            sb_add_at_source: SourceBackup AddSource,
            sb_add_at_destination: SourceBackup AddDestination,
            sb_modify_at_source: SourceBackup ModifySource,
            sb_modify_at_destination: SourceBackup ModifyDestination,
            sb_delete_at_source: SourceBackup DeleteSource,
            sb_delete_at_destination: SourceBackup DeleteDestination,
            sb_rename_at_source: SourceBackup RenameSource,
            sb_rename_at_destination: SourceBackup RenameDestination,
            dts_add_at_source: DestinationToSource AddSource,
            dts_add_at_destination: DestinationToSource AddDestination,
            dts_modify_at_source: DestinationToSource ModifySource,
            dts_modify_at_destination: DestinationToSource ModifyDestination,
            dts_delete_at_source: DestinationToSource DeleteSource,
            dts_delete_at_destination: DestinationToSource DeleteDestination,
            dts_rename_at_source: DestinationToSource RenameSource,
            dts_rename_at_destination: DestinationToSource RenameDestination,
            db_add_at_source: DestinationBackup AddSource,
            db_add_at_destination: DestinationBackup AddDestination,
            db_modify_at_source: DestinationBackup ModifySource,
            db_modify_at_destination: DestinationBackup ModifyDestination,
            db_delete_at_source: DestinationBackup DeleteSource,
            db_delete_at_destination: DestinationBackup DeleteDestination,
            db_rename_at_source: DestinationBackup RenameSource,
            db_rename_at_destination: DestinationBackup RenameDestination,
        );
        $crate::sync_scenario_tests!(@pair $source, $destination;
            conflict_newest_wins: |s, d| $crate::conformance::scenarios::conflict_strategy($crate::ConflictStrategy::NewestWins, s, d),
            conflict_source_wins: |s, d| $crate::conformance::scenarios::conflict_strategy($crate::ConflictStrategy::SourceWins, s, d),
            conflict_destination_wins: |s, d| $crate::conformance::scenarios::conflict_strategy($crate::ConflictStrategy::DestinationWins, s, d),
            conflict_keep_both: |s, d| $crate::conformance::scenarios::conflict_strategy($crate::ConflictStrategy::KeepBoth, s, d),
            initial_merge: |s, d| $crate::conformance::scenarios::initial_preference($crate::InitialSyncPreference::Merge, s, d),
            initial_source_wins: |s, d| $crate::conformance::scenarios::initial_preference($crate::InitialSyncPreference::SourceWins, s, d),
            initial_destination_wins: |s, d| $crate::conformance::scenarios::initial_preference($crate::InitialSyncPreference::DestinationWins, s, d),
            modify_beats_delete: |s, d| $crate::conformance::scenarios::modify_beats_delete(s, d),
            dry_run_changes_nothing: |s, d| $crate::conformance::scenarios::dry_run_changes_nothing(s, d),
            max_delete_guard: |s, d| $crate::conformance::scenarios::max_delete_guard(s, d),
            empty_side_guard: |s, d| $crate::conformance::scenarios::empty_side_guard(s, d),
            ignore_rules_apply_to_both_sides: |s, d| $crate::conformance::scenarios::ignore_rules_apply_to_both_sides(s, d),
            deletes_and_overwrites_go_to_the_trash: |s, d| $crate::conformance::scenarios::deletes_and_overwrites_go_to_the_trash(s, d),
            old_trash_is_pruned_on_both_sides: |s, d| $crate::conformance::scenarios::old_trash_is_pruned_on_both_sides(s, d),
        );
    };
    (@rows $source:expr, $destination:expr; $($name:ident: $mode:ident $edit:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                use $crate::conformance::scenarios::ScenarioClient as _;
                let s = ($source)().await;
                let d = ($destination)().await;
                let (Some(s), Some(d)) = (s.try_client(), d.try_client()) else {
                    eprintln!("skipped {}: a factory has no client (server not running)", stringify!($name));
                    return;
                };
                $crate::conformance::scenarios::table_row(
                    $crate::SyncMode::$mode,
                    $crate::conformance::scenarios::Edit::$edit,
                    s,
                    d,
                )
                .await;
            }
        )*
    };
    (@pair $source:expr, $destination:expr; $($name:ident: |$s:ident, $d:ident| $body:expr,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                use $crate::conformance::scenarios::ScenarioClient as _;
                let source_guard = ($source)().await;
                let destination_guard = ($destination)().await;
                let (Some($s), Some($d)) = (source_guard.try_client(), destination_guard.try_client()) else {
                    eprintln!("skipped {}: a factory has no client (server not running)", stringify!($name));
                    return;
                };
                $body.await;
            }
        )*
    };
}

/// The one change a scenario makes between the base sync and the sync under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    /// "Add file at source".
    AddSource,
    /// "Add file at destination".
    AddDestination,
    /// "Modify file at source".
    ModifySource,
    /// "Modify file at destination".
    ModifyDestination,
    /// "Delete file at source".
    DeleteSource,
    /// "Delete file at destination".
    DeleteDestination,
    /// "Rename file at source".
    RenameSource,
    /// "Rename file at destination".
    RenameDestination,
}

const F: &str = "dir/f.txt";
const NEW: &str = "dir/new.txt";
const G: &str = "dir/g.txt";
const BASE: &str = "base content";
const MODIFIED: &str = "modified content, longer";
const ADDED: &str = "brand new";
const BYSTANDERS: [&str; 4] = ["keep/1.txt", "keep/2.txt", "keep/3 b.txt", "keep/é.txt"];

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap_or_else(|e| panic!("test path {s:?}: {e}"))
}

/// Reads the files of a client below its root into a map (engine folders excluded).
pub async fn snapshot(client: &dyn StorageClient) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let entries = client
        .list_all(None)
        .await
        .unwrap_or_else(|e| panic!("listing {client}: {e}"));
    for e in entries {
        if e.path.as_str().starts_with(".syncengine/") {
            continue;
        }
        let body = client
            .read_to_bytes(&e.path)
            .await
            .unwrap_or_else(|err| panic!("reading {}: {err}", e.path));
        out.insert(
            e.path.to_string(),
            String::from_utf8_lossy(&body).into_owned(),
        );
    }
    out
}

async fn put(client: &dyn StorageClient, path: &str, body: &str) {
    client
        .put(&p(path), Bytes::from(body.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("writing {path} on {client}: {e}"));
}

async fn run(
    engine: &SyncEngine,
    source: &Client,
    destination: &Client,
    mode: SyncMode,
    options: SyncOptions,
) -> SyncStats {
    let pair = SyncPair::new(source.clone(), destination.clone(), mode).with_options(options);
    engine
        .sync_pair(&pair)
        .await
        .unwrap_or_else(|e| panic!("sync {mode} failed: {e}"))
}

/// Writes `dir/f.txt` and the bystanders on the source and syncs them two-way, so that both
/// sides and the base agree.
async fn establish_base(engine: &SyncEngine, source: &Client, destination: &Client) {
    put(source.as_ref(), F, BASE).await;
    for b in BYSTANDERS {
        put(source.as_ref(), b, b).await;
    }
    let stats = run(
        engine,
        source,
        destination,
        SyncMode::TwoWay,
        SyncOptions::default(),
    )
    .await;
    assert_eq!(stats.uploaded, 5, "base sync: {stats:?}");
    assert_eq!(stats.errors, 0, "base sync: {stats:?}");
}

async fn apply(edit: Edit, source: &Client, destination: &Client) {
    let (side, client) = match edit {
        Edit::AddSource | Edit::ModifySource | Edit::DeleteSource | Edit::RenameSource => {
            (Side::Source, source)
        }
        _ => (Side::Destination, destination),
    };
    let _ = side;
    match edit {
        Edit::AddSource | Edit::AddDestination => put(client.as_ref(), NEW, ADDED).await,
        Edit::ModifySource | Edit::ModifyDestination => put(client.as_ref(), F, MODIFIED).await,
        Edit::DeleteSource | Edit::DeleteDestination => client
            .delete(&p(F))
            .await
            .unwrap_or_else(|e| panic!("delete: {e}")),
        Edit::RenameSource | Edit::RenameDestination => {
            client
                .rename(&p(F), &p(G))
                .await
                .unwrap_or_else(|e| panic!("rename: {e}"));
        }
    }
}

/// What the seed's table says both sides hold afterwards, for the three paths involved.
fn expected(
    mode: SyncMode,
    edit: Edit,
) -> [(&'static str, Option<&'static str>, Option<&'static str>); 3] {
    use Edit::*;
    use SyncMode::*;
    // (path, on source, on destination)
    let base_f = (F, Some(BASE), Some(BASE));
    let no_new = (NEW, None, None);
    let no_g = (G, None, None);
    match (mode, edit) {
        // Additions.
        (TwoWay | SourceToDestination | SourceBackup, AddSource) => {
            [base_f, (NEW, Some(ADDED), Some(ADDED)), no_g]
        }
        (DestinationToSource, AddSource) => [base_f, no_new, no_g],
        (DestinationBackup, AddSource) => [base_f, (NEW, Some(ADDED), None), no_g],
        (TwoWay | SourceBackup | DestinationToSource | DestinationBackup, AddDestination) => {
            [base_f, (NEW, Some(ADDED), Some(ADDED)), no_g]
        }
        (SourceToDestination, AddDestination) => [base_f, no_new, no_g],
        // Modifications.
        (TwoWay | SourceToDestination | SourceBackup, ModifySource) => {
            [(F, Some(MODIFIED), Some(MODIFIED)), no_new, no_g]
        }
        (DestinationToSource | DestinationBackup, ModifySource) => [base_f, no_new, no_g],
        (TwoWay | SourceBackup | DestinationToSource | DestinationBackup, ModifyDestination) => {
            [(F, Some(MODIFIED), Some(MODIFIED)), no_new, no_g]
        }
        (SourceToDestination, ModifyDestination) => [base_f, no_new, no_g],
        // Deletions.
        (TwoWay | SourceToDestination, DeleteSource) => [(F, None, None), no_new, no_g],
        (SourceBackup, DeleteSource) => [(F, None, Some(BASE)), no_new, no_g],
        (DestinationToSource | DestinationBackup, DeleteSource) => [base_f, no_new, no_g],
        (TwoWay | DestinationToSource, DeleteDestination) => [(F, None, None), no_new, no_g],
        (DestinationBackup, DeleteDestination) => [(F, Some(BASE), None), no_new, no_g],
        (SourceToDestination | SourceBackup, DeleteDestination) => [base_f, no_new, no_g],
        // Renames.
        (TwoWay | SourceToDestination, RenameSource) => {
            [(F, None, None), no_new, (G, Some(BASE), Some(BASE))]
        }
        (SourceBackup, RenameSource) => {
            [(F, None, Some(BASE)), no_new, (G, Some(BASE), Some(BASE))]
        }
        // The seed has no such rows for these modes; the mode's add/delete rules apply: the
        // mirror undoes the source's rename, the backup restores the old name and ignores the
        // new one.
        (DestinationToSource, RenameSource) => [base_f, no_new, (G, None, None)],
        (DestinationBackup, RenameSource) => [base_f, no_new, (G, Some(BASE), None)],
        (TwoWay | DestinationToSource, RenameDestination) => {
            [(F, None, None), no_new, (G, Some(BASE), Some(BASE))]
        }
        (DestinationBackup, RenameDestination) => {
            [(F, Some(BASE), None), no_new, (G, Some(BASE), Some(BASE))]
        }
        (SourceToDestination, RenameDestination) => [base_f, no_new, (G, None, None)],
        (SourceBackup, RenameDestination) => [base_f, no_new, (G, Some(BASE), Some(BASE))],
    }
}

/// Runs one row of a seed Scenarios table for `mode` over two fresh, empty clients.
pub async fn table_row(mode: SyncMode, edit: Edit, source: Client, destination: Client) {
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let engine = SyncEngine::new(state.path());
    establish_base(&engine, &source, &destination).await;
    apply(edit, &source, &destination).await;

    let stats = run(&engine, &source, &destination, mode, SyncOptions::default()).await;
    assert_eq!(
        stats.errors, 0,
        "{mode} {edit:?}: {:?}",
        stats.error_messages
    );
    assert_eq!(stats.conflicts, 0, "{mode} {edit:?}: no conflict expected");

    let s = snapshot(source.as_ref()).await;
    let d = snapshot(destination.as_ref()).await;
    for (path, want_s, want_d) in expected(mode, edit) {
        assert_eq!(
            s.get(path).map(String::as_str),
            want_s,
            "{mode} {edit:?}: {path} on source (stats {stats:?})"
        );
        assert_eq!(
            d.get(path).map(String::as_str),
            want_d,
            "{mode} {edit:?}: {path} on destination (stats {stats:?})"
        );
    }
    for b in BYSTANDERS {
        assert_eq!(
            s.get(b).map(String::as_str),
            Some(b),
            "{mode} {edit:?}: bystander {b} on source"
        );
        assert_eq!(
            d.get(b).map(String::as_str),
            Some(b),
            "{mode} {edit:?}: bystander {b} on destination"
        );
    }
    if matches!(
        (mode, edit),
        (
            SyncMode::TwoWay | SyncMode::SourceToDestination,
            Edit::RenameSource
        )
    ) {
        assert_eq!(
            stats.renamed_destination, 1,
            "{mode}: rename carried out as a rename: {stats:?}"
        );
        assert_eq!(
            stats.uploaded, 0,
            "{mode}: a rename moves no bytes: {stats:?}"
        );
    }
    if matches!(
        (mode, edit),
        (
            SyncMode::TwoWay | SyncMode::DestinationToSource,
            Edit::RenameDestination
        )
    ) {
        assert_eq!(
            stats.renamed_source, 1,
            "{mode}: rename carried out as a rename: {stats:?}"
        );
    }

    let again = run(&engine, &source, &destination, mode, SyncOptions::default()).await;
    assert!(
        again.is_noop() && again.errors == 0,
        "{mode} {edit:?}: second run not idle: {again:?}"
    );
}

/// Both sides modify `dir/f.txt` differently; the strategy picks the winner; the loser is kept
/// under a conflict name and reaches the other side on the next run.
pub async fn conflict_strategy(strategy: ConflictStrategy, source: Client, destination: Client) {
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let engine = SyncEngine::new(state.path());
    establish_base(&engine, &source, &destination).await;
    put(source.as_ref(), F, "source edit").await;
    // Make the destination's edit clearly newer where mtimes are kept to the second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    put(destination.as_ref(), F, "destination edit!").await;

    let opts = SyncOptions::default().with_conflict(strategy);
    let stats = run(
        &engine,
        &source,
        &destination,
        SyncMode::TwoWay,
        opts.clone(),
    )
    .await;
    assert_eq!(stats.conflicts, 1, "{strategy}: {stats:?}");
    assert_eq!(stats.conflict_paths, vec![p(F)]);
    assert_eq!(stats.errors, 0, "{strategy}: {:?}", stats.error_messages);

    // One more run spreads the kept loser(s); then both sides are equal.
    let _ = run(
        &engine,
        &source,
        &destination,
        SyncMode::TwoWay,
        opts.clone(),
    )
    .await;
    let s = snapshot(source.as_ref()).await;
    let d = snapshot(destination.as_ref()).await;
    assert_eq!(s, d, "{strategy}: sides differ after conflict resolution");
    let versions: Vec<&String> = s
        .iter()
        .filter(|(k, _)| k.starts_with("dir/f"))
        .map(|(_, v)| v)
        .collect();
    assert!(
        versions.iter().any(|v| *v == "source edit"),
        "{strategy}: source version lost: {s:?}"
    );
    assert!(
        versions.iter().any(|v| *v == "destination edit!"),
        "{strategy}: destination version lost: {s:?}"
    );
    let winner = s.get(F).cloned();
    match strategy {
        ConflictStrategy::SourceWins => assert_eq!(winner.as_deref(), Some("source edit")),
        ConflictStrategy::DestinationWins | ConflictStrategy::NewestWins => {
            assert_eq!(winner.as_deref(), Some("destination edit!"))
        }
        ConflictStrategy::KeepBoth => assert_eq!(winner, None, "keep-both leaves no winner"),
    }
    let conflict_files = s.keys().filter(|k| k.contains(".conflict-")).count();
    let want = if strategy == ConflictStrategy::KeepBoth {
        2
    } else {
        1
    };
    assert_eq!(conflict_files, want, "{strategy}: {s:?}");
    let idle = run(&engine, &source, &destination, SyncMode::TwoWay, opts).await;
    assert!(idle.is_noop(), "{strategy}: not converged: {idle:?}");
}

/// First `TWO_WAY` sync with files on both sides, under each initial preference.
pub async fn initial_preference(pref: InitialSyncPreference, source: Client, destination: Client) {
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let engine = SyncEngine::new(state.path());
    for i in 0..3 {
        put(source.as_ref(), &format!("s/{i}.txt"), "from source").await;
        put(
            destination.as_ref(),
            &format!("d/{i}.txt"),
            "from destination",
        )
        .await;
    }
    put(source.as_ref(), "both.txt", "same").await;
    put(destination.as_ref(), "both.txt", "same").await;
    let opts = SyncOptions::default()
        .with_initial_preference(pref)
        .with_force(true); // the authoritative preferences delete half of a tiny tree
    let stats = run(&engine, &source, &destination, SyncMode::TwoWay, opts).await;
    assert_eq!(stats.errors, 0, "{pref}: {:?}", stats.error_messages);
    assert_eq!(
        stats.conflicts, 0,
        "{pref}: identical files are not a conflict"
    );
    let s = snapshot(source.as_ref()).await;
    let d = snapshot(destination.as_ref()).await;
    assert_eq!(s, d, "{pref}: sides differ");
    let has_s = s.contains_key("s/0.txt");
    let has_d = s.contains_key("d/0.txt");
    match pref {
        InitialSyncPreference::Merge => assert!(has_s && has_d, "merge keeps all: {s:?}"),
        InitialSyncPreference::SourceWins => assert!(has_s && !has_d, "source wins: {s:?}"),
        InitialSyncPreference::DestinationWins => {
            assert!(!has_s && has_d, "destination wins: {s:?}")
        }
    }
    assert!(s.contains_key("both.txt"));
}

/// A delete meeting an edit: the edit wins and is restored in `TWO_WAY`.
pub async fn modify_beats_delete(source: Client, destination: Client) {
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let engine = SyncEngine::new(state.path());
    establish_base(&engine, &source, &destination).await;
    source
        .delete(&p(F))
        .await
        .unwrap_or_else(|e| panic!("delete: {e}"));
    put(destination.as_ref(), F, MODIFIED).await;
    let stats = run(
        &engine,
        &source,
        &destination,
        SyncMode::TwoWay,
        SyncOptions::default(),
    )
    .await;
    assert_eq!(stats.downloaded, 1, "{stats:?}");
    assert_eq!(stats.deleted_destination, 0, "{stats:?}");
    let s = snapshot(source.as_ref()).await;
    assert_eq!(s.get(F).map(String::as_str), Some(MODIFIED));
}

/// A dry run predicts the real run's counts and changes nothing.
pub async fn dry_run_changes_nothing(source: Client, destination: Client) {
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let engine = SyncEngine::new(state.path());
    establish_base(&engine, &source, &destination).await;
    put(source.as_ref(), NEW, ADDED).await;
    put(destination.as_ref(), "dir/other.txt", ADDED).await;
    source.delete(&p(F)).await.unwrap_or_else(|e| panic!("{e}"));
    let before = (
        snapshot(source.as_ref()).await,
        snapshot(destination.as_ref()).await,
    );
    let dry = run(
        &engine,
        &source,
        &destination,
        SyncMode::TwoWay,
        SyncOptions::default().with_dry_run(true),
    )
    .await;
    assert!(dry.dry_run);
    let after = (
        snapshot(source.as_ref()).await,
        snapshot(destination.as_ref()).await,
    );
    assert_eq!(before, after, "a dry run changed a side");
    let real = run(
        &engine,
        &source,
        &destination,
        SyncMode::TwoWay,
        SyncOptions::default(),
    )
    .await;
    assert!(!real.dry_run);
    assert_eq!(
        (
            dry.uploaded,
            dry.downloaded,
            dry.deleted_source,
            dry.deleted_destination,
            dry.bytes_uploaded
        ),
        (
            real.uploaded,
            real.downloaded,
            real.deleted_source,
            real.deleted_destination,
            real.bytes_uploaded
        ),
        "dry run predicted {dry:?}, real run did {real:?}"
    );
    assert_eq!(
        (real.uploaded, real.downloaded, real.deleted_destination),
        (1, 1, 1)
    );
}

/// Deleting most files on one side stops the run before anything changes, unless forced.
pub async fn max_delete_guard(source: Client, destination: Client) {
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let engine = SyncEngine::new(state.path());
    establish_base(&engine, &source, &destination).await;
    for b in &BYSTANDERS[..3] {
        source.delete(&p(b)).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let pair = SyncPair::new(source.clone(), destination.clone(), SyncMode::TwoWay);
    let err = engine
        .sync_pair(&pair)
        .await
        .expect_err("3 of 5 deletions must trip the 50% guard");
    assert!(err.is_safety_stop(), "{err}");
    assert_eq!(
        snapshot(destination.as_ref()).await.len(),
        5,
        "nothing deleted after the stop"
    );
    let forced = pair.with_options(SyncOptions::default().with_force(true));
    let stats = engine
        .sync_pair(&forced)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.deleted_destination, 3);
}

/// An emptied side (unmounted disk, wrong prefix) stops the run instead of wiping the other.
pub async fn empty_side_guard(source: Client, destination: Client) {
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let engine = SyncEngine::new(state.path());
    establish_base(&engine, &source, &destination).await;
    // The user's files go; the engine's own folder (the root's id) stays, so this is the
    // same storage emptied, not another one.
    for e in source
        .list_all(None)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|e| !crate::ignore_rules::is_always_ignored(&e.path))
    {
        source
            .delete(&e.path)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let pair = SyncPair::new(source.clone(), destination.clone(), SyncMode::TwoWay)
        .with_options(SyncOptions::default().with_max_delete_percent(100));
    let err = engine
        .sync_pair(&pair)
        .await
        .expect_err("an emptied side must stop the run");
    assert!(
        matches!(
            err,
            crate::SyncError::EmptySide {
                side: Side::Source,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(snapshot(destination.as_ref()).await.len(), 5);
}

/// Ignore rules apply to both sides: ignored paths are neither copied nor deleted.
pub async fn ignore_rules_apply_to_both_sides(source: Client, destination: Client) {
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let engine = SyncEngine::new(state.path());
    put(source.as_ref(), ".syncignore", "*.tmp\nbuild/\n").await;
    put(source.as_ref(), "a.txt", "a").await;
    put(source.as_ref(), "x.tmp", "x").await;
    put(source.as_ref(), "build/out.o", "o").await;
    put(destination.as_ref(), "y.tmp", "y").await;
    put(destination.as_ref(), "skip.log", "l").await;
    let opts = SyncOptions::default()
        .with_excludes(["*.log"])
        .with_initial_preference(InitialSyncPreference::SourceWins);
    let stats = run(&engine, &source, &destination, SyncMode::TwoWay, opts).await;
    assert_eq!(stats.errors, 0);
    let d = snapshot(destination.as_ref()).await;
    assert!(
        d.contains_key("a.txt") && d.contains_key(".syncignore"),
        "{d:?}"
    );
    assert!(
        !d.contains_key("x.tmp") && !d.contains_key("build/out.o"),
        "ignored copied: {d:?}"
    );
    assert!(
        d.contains_key("y.tmp") && d.contains_key("skip.log"),
        "ignored deleted: {d:?}"
    );
}

/// The files in a client's trash: path below the stamp folder → contents (several when the
/// path was trashed more than once).
pub async fn trash_contents(client: &dyn StorageClient) -> BTreeMap<String, Vec<String>> {
    let trash = p(".syncengine/trash");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let entries = client
        .list_all(Some(&trash))
        .await
        .unwrap_or_else(|e| panic!("listing the trash of {client}: {e}"));
    for e in entries {
        let below = e
            .path
            .as_str()
            .strip_prefix(".syncengine/trash/")
            .and_then(|rest| rest.split_once('/'))
            .map(|(_, path)| path.to_owned())
            .unwrap_or_else(|| panic!("{} is not in a stamp folder", e.path));
        let body = client
            .read_to_bytes(&e.path)
            .await
            .unwrap_or_else(|err| panic!("reading {}: {err}", e.path));
        out.entry(below)
            .or_default()
            .push(String::from_utf8_lossy(&body).into_owned());
    }
    for contents in out.values_mut() {
        contents.sort();
    }
    out
}

/// On every backend, a file the engine deletes or overwrites lands, content intact, in the
/// side's own trash (`.syncengine/trash/<stamp>/<path>`), on either side; with
/// [`Recovery::None`](crate::Recovery::None) (`--no-trash`) it is gone.
pub async fn deletes_and_overwrites_go_to_the_trash(source: Client, destination: Client) {
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let engine = SyncEngine::new(state.path());
    establish_base(&engine, &source, &destination).await;

    // The source deletes a file and edits f: the destination trashes both old versions.
    let deleted = BYSTANDERS[1];
    source
        .delete(&p(deleted))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    put(source.as_ref(), F, MODIFIED).await;
    let stats = run(
        &engine,
        &source,
        &destination,
        SyncMode::TwoWay,
        SyncOptions::default(),
    )
    .await;
    assert_eq!(
        (stats.deleted_destination, stats.uploaded, stats.errors),
        (1, 1, 0),
        "{stats:?}"
    );
    let d = snapshot(destination.as_ref()).await;
    assert_eq!(d.get(F).map(String::as_str), Some(MODIFIED));
    assert!(!d.contains_key(deleted), "{d:?}");
    let trash = trash_contents(destination.as_ref()).await;
    assert_eq!(
        trash.get(deleted),
        Some(&vec![deleted.to_owned()]),
        "{trash:?}"
    );
    assert_eq!(trash.get(F), Some(&vec![BASE.to_owned()]), "{trash:?}");
    assert!(
        trash_contents(source.as_ref()).await.is_empty(),
        "nothing was deleted on the source"
    );

    // The other way: the destination deletes a bystander, the source trashes it.
    let gone = BYSTANDERS[3];
    destination
        .delete(&p(gone))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stats = run(
        &engine,
        &source,
        &destination,
        SyncMode::TwoWay,
        SyncOptions::default(),
    )
    .await;
    assert_eq!((stats.deleted_source, stats.errors), (1, 0), "{stats:?}");
    let trash = trash_contents(source.as_ref()).await;
    assert_eq!(trash.get(gone), Some(&vec![gone.to_owned()]), "{trash:?}");

    // --no-trash: deleted outright.
    let gone = BYSTANDERS[0];
    source
        .delete(&p(gone))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let opts = SyncOptions::default()
        .with_recovery(Side::Source, crate::Recovery::None)
        .with_recovery(Side::Destination, crate::Recovery::None);
    let stats = run(&engine, &source, &destination, SyncMode::TwoWay, opts).await;
    assert_eq!(
        (stats.deleted_destination, stats.errors),
        (1, 0),
        "{stats:?}"
    );
    assert!(!snapshot(destination.as_ref()).await.contains_key(gone));
    assert!(
        !trash_contents(destination.as_ref())
            .await
            .contains_key(gone),
        "--no-trash kept a copy"
    );
    // The trash itself is never synced.
    assert!(!trash_contents(source.as_ref()).await.contains_key(F));
}

/// The UTC time `days` ago as a trash stamp, `YYYYMMDDTHHMMSSZ`.
fn stamp_days_ago(days: i64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::days(days);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// By default trash folders are kept 30 days: older stamp folders are removed on both sides,
/// recent ones and folders that are not stamps stay.
pub async fn old_trash_is_pruned_on_both_sides(source: Client, destination: Client) {
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let engine = SyncEngine::new(state.path());
    let old = format!(".syncengine/trash/{}/dir/old.txt", stamp_days_ago(31));
    let old_numbered = format!(".syncengine/trash/{}-2/old.txt", stamp_days_ago(400));
    let recent = format!(".syncengine/trash/{}/dir/recent.txt", stamp_days_ago(29));
    let foreign = ".syncengine/trash/not-a-stamp/x.txt";
    for client in [&source, &destination] {
        for path in [old.as_str(), &old_numbered, &recent, foreign] {
            put(client.as_ref(), path, "trashed").await;
        }
    }
    put(source.as_ref(), F, BASE).await;
    let stats = run(
        &engine,
        &source,
        &destination,
        SyncMode::TwoWay,
        SyncOptions::default(),
    )
    .await;
    assert_eq!((stats.uploaded, stats.errors), (1, 0), "{stats:?}");
    assert!(stats.warnings.is_empty(), "{stats:?}");
    for client in [&source, &destination] {
        let mut left: Vec<String> = client
            .list_all(Some(&p(".syncengine/trash")))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|e| e.path.into_string())
            .collect();
        left.sort();
        assert_eq!(left, [recent.clone(), foreign.to_owned()], "{client}");
    }
}
