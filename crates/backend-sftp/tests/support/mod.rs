//! Shared test support: the two loopback SFTP servers, fresh clients on fresh roots, the
//! skip-or-fail rule, and case-list macros that can skip when a server is down.
//!
//! Servers (started by `bash scripts/test-servers.sh start`):
//! - OpenSSH sshd on 127.0.0.1:2222, user root, real absolute paths;
//! - `rclone serve sftp` on 127.0.0.1:2223, user `sync`, paths below its virtual root
//!   `$TS_DIR/rclone-sftp-root`.
//!
//! Keys and known_hosts come from `$SYNCENGINE_TEST_SFTP_DIR` (default
//! `$TS_DIR/sshd`, `TS_DIR` defaulting to /tmp/syncengine-test-servers).

// Test support: panicking with a message is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    missing_docs
)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use syncengine_backend_sftp::{SftpBuilder, SftpClient};
use syncengine_core::StorageClient;

/// Which loopback server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// OpenSSH sshd, real paths.
    Sshd,
    /// rclone serve sftp, virtual root.
    Rclone,
}

impl Server {
    pub fn port(self) -> u16 {
        match self {
            Server::Sshd => 2222,
            Server::Rclone => 2223,
        }
    }

    pub fn user(self) -> &'static str {
        match self {
            Server::Sshd => "root",
            Server::Rclone => "sync",
        }
    }

    /// The server path of a fresh test root named `name`.
    pub fn remote_root(self, name: &str) -> String {
        match self {
            Server::Sshd => format!("/tmp/syncengine-sftp-tests/{name}"),
            Server::Rclone => format!("/syncengine-sftp-tests/{name}"),
        }
    }

    /// Where that root lives on this machine's disk (both servers serve local directories).
    pub fn local_root(self, name: &str) -> PathBuf {
        match self {
            Server::Sshd => PathBuf::from(self.remote_root(name)),
            Server::Rclone => ts_dir()
                .join("rclone-sftp-root")
                .join("syncengine-sftp-tests")
                .join(name),
        }
    }
}

pub fn ts_dir() -> PathBuf {
    std::env::var_os("TS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/syncengine-test-servers"))
}

/// Directory holding `client_ed25519`, `known_hosts` and `host_ed25519.pub`.
pub fn keys_dir() -> PathBuf {
    std::env::var_os("SYNCENGINE_TEST_SFTP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ts_dir().join("sshd"))
}

/// The one skip-or-fail rule: returns true when `server` is reachable and its keys exist.
/// Otherwise, under `CI=true` it panics (a missing server fails CI); elsewhere it prints how
/// to start the servers and returns false, and the caller returns without testing.
pub fn available(server: Server) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port()));
    let reachable = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok();
    let keys = keys_dir();
    let keys_ok = keys.join("client_ed25519").is_file() && keys.join("known_hosts").is_file();
    if reachable && keys_ok {
        return true;
    }
    let why = if reachable {
        format!("its keys are missing from {}", keys.display())
    } else {
        format!("nothing listens on {addr}")
    };
    let msg = format!(
        "SFTP test server {server:?} is unavailable ({why}). Start the servers with:\n    \
         bash scripts/test-servers.sh install && bash scripts/test-servers.sh start"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// A random directory name for one test case.
pub fn fresh_name() -> String {
    format!("t-{:016x}", rand::random::<u64>())
}

/// A builder for `server` with the test keys and known_hosts, rooted at `name`.
pub fn builder(server: Server, name: &str) -> SftpBuilder {
    let keys = keys_dir();
    SftpBuilder::new()
        .with_url(format!(
            "sftp://{}@127.0.0.1:{}{}",
            server.user(),
            server.port(),
            server.remote_root(name)
        ))
        .with_key_file(keys.join("client_ed25519"))
        .with_known_hosts(keys.join("known_hosts"))
        .with_agent(false)
}

/// Removes a test root from disk when the case ends.
pub struct Cleanup(pub PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A client on a fresh root plus the guard that removes it.
pub type Fixture = (Arc<dyn StorageClient>, Cleanup);

pub fn fixture_with(server: Server, configure: impl FnOnce(SftpBuilder) -> SftpBuilder) -> Fixture {
    let name = fresh_name();
    let client: SftpClient = configure(builder(server, &name)).build().unwrap();
    (Arc::new(client), Cleanup(server.local_root(&name)))
}

pub async fn sshd() -> Option<Fixture> {
    available(Server::Sshd).then(|| fixture_with(Server::Sshd, |b| b))
}

/// sshd with `posix-rename@openssh.com` turned off: exercises the portable replace.
pub async fn sshd_portable_rename() -> Option<Fixture> {
    available(Server::Sshd).then(|| fixture_with(Server::Sshd, |b| b.with_posix_rename(false)))
}

pub async fn rclone() -> Option<Fixture> {
    available(Server::Rclone).then(|| fixture_with(Server::Rclone, |b| b))
}

/// A local-disk client on a fresh temporary directory.
pub async fn local() -> Option<(Arc<dyn StorageClient>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let client = syncengine_backend_local::LocalClient::new(dir.path().join("root"));
    Some((Arc::new(client), dir))
}

/// Lists the temporary files left anywhere below `dir` on disk.
pub fn temp_files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name()
                .to_string_lossy()
                .starts_with(syncengine_backend_sftp::TEMP_PREFIX)
            {
                out.push(p.clone());
            }
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// Expands to one test per storage conformance case over `$factory`, an async fn returning
/// `Option<(client, guard)>`; `None` (server down, outside CI) ends the test early.
///
/// The core's `conformance_tests!` cannot skip: its factory must return a client. The case
/// list is checked against the core's by `case_lists_match_the_core` so it cannot drift.
#[macro_export]
macro_rules! storage_cases {
    ($factory:path) => {
        $crate::storage_cases!(@expand $factory;
            round_trip_empty,
            round_trip_one_byte,
            round_trip_multi_mib,
            overwrite_replaces,
            stat_matches_listing,
            range_reads,
            canonical_order_hostile_names,
            canonical_order_nested,
            prefix_boundaries,
            missing_paths,
            directory_is_not_a_file,
            write_creates_parents,
            write_create_mode,
            write_update_mode,
            write_sets_mtime,
            failed_write_keeps_old_content,
            cancelled_write_keeps_old_content,
            delete_is_idempotent,
            copy_semantics,
            rename_semantics,
            etag_changes_on_rewrite,
            file_id_survives_rename,
        );
    };
    (@expand $factory:path; $($case:ident),+ $(,)?) => {
        /// The cases this module runs, for the drift check.
        #[allow(dead_code)]
        pub const CASES: &[&str] = &[$(stringify!($case)),+];
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(fixture) = $factory().await else { return };
                syncengine_core::conformance::$case(fixture.0.as_ref()).await;
            }
        )+
    };
}

/// Expands to one test per sync scenario (every seed table row, conflict strategy, initial
/// preference and safety case) over a source and a destination factory returning
/// `Option<(client, guard)>`. Checked against the core's `sync_scenario_tests!` list.
#[macro_export]
macro_rules! scenario_cases {
    ($source:path, $destination:path) => {
        $crate::scenario_cases!(@rows $source, $destination;
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
        $crate::scenario_cases!(@pair $source, $destination;
            conflict_newest_wins: |s, d| syncengine_core::conformance::scenarios::conflict_strategy(syncengine_core::ConflictStrategy::NewestWins, s, d),
            conflict_source_wins: |s, d| syncengine_core::conformance::scenarios::conflict_strategy(syncengine_core::ConflictStrategy::SourceWins, s, d),
            conflict_destination_wins: |s, d| syncengine_core::conformance::scenarios::conflict_strategy(syncengine_core::ConflictStrategy::DestinationWins, s, d),
            conflict_keep_both: |s, d| syncengine_core::conformance::scenarios::conflict_strategy(syncengine_core::ConflictStrategy::KeepBoth, s, d),
            initial_merge: |s, d| syncengine_core::conformance::scenarios::initial_preference(syncengine_core::InitialSyncPreference::Merge, s, d),
            initial_source_wins: |s, d| syncengine_core::conformance::scenarios::initial_preference(syncengine_core::InitialSyncPreference::SourceWins, s, d),
            initial_destination_wins: |s, d| syncengine_core::conformance::scenarios::initial_preference(syncengine_core::InitialSyncPreference::DestinationWins, s, d),
            modify_beats_delete: |s, d| syncengine_core::conformance::scenarios::modify_beats_delete(s, d),
            dry_run_changes_nothing: |s, d| syncengine_core::conformance::scenarios::dry_run_changes_nothing(s, d),
            max_delete_guard: |s, d| syncengine_core::conformance::scenarios::max_delete_guard(s, d),
            empty_side_guard: |s, d| syncengine_core::conformance::scenarios::empty_side_guard(s, d),
            ignore_rules_apply_to_both_sides: |s, d| syncengine_core::conformance::scenarios::ignore_rules_apply_to_both_sides(s, d),
        );
    };
    (@rows $source:path, $destination:path; $($name:ident: $mode:ident $edit:ident,)*) => {
        /// The table rows this module runs, for the drift check.
        #[allow(dead_code)]
        pub const ROWS: &[&str] = &[$(stringify!($name)),*];
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(s) = $source().await else { return };
                let Some(d) = $destination().await else { return };
                $crate::support::table_row(
                    syncengine_core::SyncMode::$mode,
                    syncengine_core::conformance::scenarios::Edit::$edit,
                    s.0.clone(),
                    d.0.clone(),
                )
                .await;
            }
        )*
    };
    (@pair $source:path, $destination:path; $($name:ident: |$s:ident, $d:ident| $body:expr,)*) => {
        /// The other scenarios this module runs, for the drift check.
        #[allow(dead_code)]
        pub const PAIRS: &[&str] = &[$(stringify!($name)),*];
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(source_guard) = $source().await else { return };
                let Some(destination_guard) = $destination().await else { return };
                let $s = source_guard.0.clone();
                let $d = destination_guard.0.clone();
                $body.await;
            }
        )*
    };
}

/// The names of the cases listed in a core macro: the identifiers that start the lines
/// between `start` and the closing `);` in `source`.
pub fn core_case_names(source: &str, start: &str) -> Vec<String> {
    let from = source
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not found in the core source"));
    let body = &source[from + start.len()..];
    let end = body.find(");").unwrap();
    body[..end]
        .lines()
        .map(str::trim)
        .filter_map(|line| {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let rest = &line[name.len()..];
            (!name.is_empty() && (rest.starts_with(',') || rest.starts_with(':'))).then_some(name)
        })
        .collect()
}

/// Whether the engine can tell a rename on `client` from a delete plus an add: it pairs
/// them by inode (`file_id`), listed hash or etag, and SFTP v3 offers none of the three.
fn can_identify_renames(client: &dyn StorageClient) -> bool {
    let caps = client.capabilities();
    caps.file_id || caps.listed_hash.is_some() || caps.etag
}

/// Runs one seed table row, like `syncengine_core::conformance::scenarios::table_row`,
/// branching on capability for the rename rows the core case checks as "carried out as a
/// rename": when the side that renamed cannot identify renames, the row is checked by
/// [`rename_as_copy_and_delete`] instead (same end state, a copy plus a delete instead of a
/// rename), and says so.
pub async fn table_row(
    mode: syncengine_core::SyncMode,
    edit: syncengine_core::conformance::scenarios::Edit,
    source: Arc<dyn StorageClient>,
    destination: Arc<dyn StorageClient>,
) {
    use syncengine_core::SyncMode::{DestinationToSource, SourceToDestination, TwoWay};
    use syncengine_core::conformance::scenarios::Edit::{RenameDestination, RenameSource};
    let renamed_on = match (mode, edit) {
        (TwoWay | SourceToDestination, RenameSource) => Some(&source),
        (TwoWay | DestinationToSource, RenameDestination) => Some(&destination),
        _ => None,
    };
    match renamed_on {
        Some(client) if !can_identify_renames(client.as_ref()) => {
            eprintln!(
                "{client}: no file_id, listed hash or etag: checking {mode} {edit:?} as a copy \
                 plus a delete instead of a rename"
            );
            rename_as_copy_and_delete(mode, edit, source, destination).await;
        }
        _ => {
            syncengine_core::conformance::scenarios::table_row(mode, edit, source, destination)
                .await
        }
    }
}

const F: &str = "dir/f.txt";
const G: &str = "dir/g.txt";
const BASE: &str = "base content";
const BYSTANDERS: [&str; 4] = ["keep/1.txt", "keep/2.txt", "keep/3 b.txt", "keep/é.txt"];

/// The rename rows for a side that cannot identify renames: the same base and edit as the
/// core case, then: `dir/f.txt` is gone from both sides, `dir/g.txt` holds the base content
/// on both, bystanders are intact, the move happened as one copy and one delete, nothing
/// failed, and a second run is idle.
pub async fn rename_as_copy_and_delete(
    mode: syncengine_core::SyncMode,
    edit: syncengine_core::conformance::scenarios::Edit,
    source: Arc<dyn StorageClient>,
    destination: Arc<dyn StorageClient>,
) {
    use bytes::Bytes;
    use syncengine_core::conformance::scenarios::{Edit, snapshot};
    use syncengine_core::{RelPath, StorageClientExt, SyncEngine, SyncPair};

    let p = |s: &str| RelPath::new(s).unwrap();
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let run = |mode| {
        let pair = SyncPair::new(source.clone(), destination.clone(), mode);
        let engine = &engine;
        async move { engine.sync_pair(&pair).await.unwrap() }
    };
    source.put(&p(F), Bytes::from(BASE)).await.unwrap();
    for b in BYSTANDERS {
        source.put(&p(b), Bytes::from(b)).await.unwrap();
    }
    let base = run(syncengine_core::SyncMode::TwoWay).await;
    assert_eq!((base.uploaded, base.errors), (5, 0), "base sync: {base:?}");

    let renamed = if edit == Edit::RenameSource {
        &source
    } else {
        &destination
    };
    renamed.rename(&p(F), &p(G)).await.unwrap();
    let stats = run(mode).await;
    assert_eq!(
        stats.errors, 0,
        "{mode} {edit:?}: {:?}",
        stats.error_messages
    );
    assert_eq!(stats.conflicts, 0, "{mode} {edit:?}: no conflict expected");
    let (copied, deleted) = if edit == Edit::RenameSource {
        (stats.uploaded, stats.deleted_destination)
    } else {
        (stats.downloaded, stats.deleted_source)
    };
    assert_eq!(
        (copied, deleted),
        (1, 1),
        "{mode} {edit:?}: one copy, one delete: {stats:?}"
    );

    for client in [&source, &destination] {
        let snap = snapshot(client.as_ref()).await;
        assert_eq!(snap.get(F), None, "{mode} {edit:?}: {F} on {client}");
        assert_eq!(
            snap.get(G).map(String::as_str),
            Some(BASE),
            "{mode} {edit:?}: {G} on {client}"
        );
        for b in BYSTANDERS {
            assert_eq!(
                snap.get(b).map(String::as_str),
                Some(b),
                "bystander {b} on {client}"
            );
        }
    }
    let again = run(mode).await;
    assert!(
        again.is_noop() && again.errors == 0,
        "{mode} {edit:?}: second run not idle: {again:?}"
    );
}
