//! The pairs a state directory knows: what each state file says about its pair (its two
//! roots, last mode, last run, counts), and forgetting one (see `syncengine pairs`).
//!
//! # Behavior
//! - A sync records, at the end of every run that executed its plan (see
//!   [`StateStore::record_run`]), the two roots as their resolved locations
//!   ([`Location`](crate::identity::Location): `file:///…`, `s3://host:port/bucket/prefix`,
//!   never credentials, and redacted once more before they are stored), the mode, the time
//!   and the run's counts, as keys of the `meta` table. Older state files lack those keys and
//!   stay readable: their roots come from the recorded root identities when there are any,
//!   else they are unknown until the next run records them. No schema version changes, so
//!   older syncengine versions keep reading files that have the keys.
//! - Reading ([`list`], [`read`]) opens each file read-only: nothing is migrated or created.
//! - [`forget`] takes the pair's run lock first, so it never deletes the state of a running
//!   sync ([`SyncError::Locked`]).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{BUSY_TIMEOUT, PairLock, StateStore};
use crate::entry::{nanos_to_system_time, system_time_to_nanos};
use crate::error::SyncError;
use crate::mode::SyncMode;
use crate::stats::SyncStats;

/// The counts of a pair's last run, as recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RunCounts {
    /// Files copied source → destination.
    pub uploaded: u64,
    /// Files copied destination → source.
    pub downloaded: u64,
    /// Files deleted on either side.
    pub deleted: u64,
    /// Renames on either side.
    pub renamed: u64,
    /// Conflicts.
    pub conflicts: u64,
    /// Failed actions.
    pub errors: u64,
}

impl RunCounts {
    /// The counts of a run's stats.
    pub fn of(stats: &SyncStats) -> Self {
        RunCounts {
            uploaded: stats.uploaded,
            downloaded: stats.downloaded,
            deleted: stats.deleted_source + stats.deleted_destination,
            renamed: stats.renamed_source + stats.renamed_destination,
            conflicts: stats.conflicts,
            errors: stats.errors,
        }
    }
}

/// What a pair's state file says about the pair.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PairInfo {
    /// The pair's id: the state file's name without `.db` (the id a sync derives from the
    /// two roots).
    pub id: String,
    /// The state database.
    pub file: PathBuf,
    /// The source root, as last recorded (`None`: not recorded yet).
    pub source_root: Option<String>,
    /// The destination root, as last recorded.
    pub destination_root: Option<String>,
    /// The mode of the last run that recorded it.
    pub last_mode: Option<String>,
    /// When a run last executed its plan (with or without errors).
    pub last_run: Option<SystemTime>,
    /// When a run last completed without errors.
    pub last_completed: Option<SystemTime>,
    /// The counts of the last run, when recorded.
    pub last_counts: Option<RunCounts>,
    /// When the state file was created.
    pub created: Option<SystemTime>,
    /// Files in the base (synced paths, kept-by-backup ones included).
    pub files: u64,
    /// Of those, files one side deleted and a backup mode keeps on the other side.
    pub kept_by_backup: u64,
    /// The pair's first sync has not finished yet.
    pub initial_sync_pending: bool,
}

/// A state file that could not be read, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// The pair id (file name without `.db`).
    pub id: String,
    /// The file.
    pub file: PathBuf,
    /// Why it could not be read.
    pub error: String,
}

const SOURCE_ROOT: &str = "source_root";
const DESTINATION_ROOT: &str = "destination_root";
const LAST_MODE: &str = "last_mode";
const LAST_RUN: &str = "last_run";
const LAST_COUNTS: &str = "last_run_counts";

impl StateStore {
    /// Records what `syncengine pairs` shows about the pair: its two roots (redacted again
    /// here, so no secret can reach the file), the mode, the time now and the run's counts.
    ///
    /// # Errors
    /// [`SyncError::State`] when the database cannot be written.
    pub fn record_run(
        &self,
        mode: SyncMode,
        roots: &[String; 2],
        counts: &RunCounts,
    ) -> Result<(), SyncError> {
        let ctx = |e| self.err("recording the pair's roots and last run", e);
        let counts = serde_json::to_string(counts)
            .map_err(|e| SyncError::State(format!("recording the last run's counts: {e}")))?;
        let now = system_time_to_nanos(SystemTime::now());
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(ctx)?;
        {
            let mut put = tx
                .prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")
                .map_err(ctx)?;
            for (key, value) in [
                (SOURCE_ROOT, crate::redact::redact(&roots[0]).into_owned()),
                (
                    DESTINATION_ROOT,
                    crate::redact::redact(&roots[1]).into_owned(),
                ),
                (LAST_MODE, mode.to_string()),
                (LAST_COUNTS, counts),
            ] {
                put.execute(params![key, value]).map_err(ctx)?;
            }
            put.execute(params![LAST_RUN, now]).map_err(ctx)?;
        }
        tx.commit().map_err(ctx)
    }
}

/// Every pair with a state file in `state_dir`, by id; files that cannot be read come as
/// [`Unreadable`]. A missing directory holds no pairs.
///
/// # Errors
/// [`SyncError::State`] when the directory exists but cannot be read.
pub fn list(state_dir: &Path) -> Result<Vec<Result<PairInfo, Unreadable>>, SyncError> {
    let mut ids = ids(state_dir)?;
    ids.sort();
    Ok(ids
        .into_iter()
        .map(|id| {
            read(state_dir, &id).map_err(|e| Unreadable {
                file: file_of(state_dir, &id),
                id,
                error: e.to_string(),
            })
        })
        .collect())
}

/// The ids (state file names without `.db`) in `state_dir`, unsorted.
///
/// # Errors
/// [`SyncError::State`] when the directory exists but cannot be read.
pub fn ids(state_dir: &Path) -> Result<Vec<String>, SyncError> {
    let read_dir = match std::fs::read_dir(state_dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(SyncError::State(format!(
                "reading the state directory {}: {e}",
                state_dir.display()
            )));
        }
    };
    let mut ids = Vec::new();
    for item in read_dir {
        let item = item.map_err(|e| {
            SyncError::State(format!(
                "reading the state directory {}: {e}",
                state_dir.display()
            ))
        })?;
        let name = item.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".db")) else {
            continue;
        };
        if !id.is_empty() && item.file_type().is_ok_and(|t| t.is_file()) {
            ids.push(id.to_owned());
        }
    }
    Ok(ids)
}

/// Finds the pair whose id is `query` or starts with it.
///
/// # Errors
/// [`SyncError::Config`] when no pair or more than one matches (naming them).
pub fn resolve(state_dir: &Path, query: &str) -> Result<String, SyncError> {
    // An empty prefix would name the only pair there is, whichever it is.
    if query.is_empty() {
        return Err(SyncError::Config(
            "no pair id given; `syncengine pairs` lists them".to_owned(),
        ));
    }
    let ids = ids(state_dir)?;
    if ids.iter().any(|id| id == query) {
        return Ok(query.to_owned());
    }
    let mut matching: Vec<&String> = ids.iter().filter(|id| id.starts_with(query)).collect();
    matching.sort();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(SyncError::Config(format!(
            "no pair with an id starting with {query:?} in {}; `syncengine pairs` lists them",
            state_dir.display()
        ))),
        many => Err(SyncError::Config(format!(
            "{} pairs have ids starting with {query:?} ({}); give more of the id",
            many.len(),
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn file_of(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join(format!("{id}.db"))
}

/// What the state file of pair `id` (its file name without `.db`) says, read without
/// changing the file.
///
/// # Errors
/// [`SyncError::State`] when the file is missing, cannot be opened, or is not a syncengine
/// state database.
pub fn read(state_dir: &Path, id: &str) -> Result<PairInfo, SyncError> {
    let file = file_of(state_dir, id);
    if !file.is_file() {
        return Err(SyncError::State(format!(
            "{} does not exist",
            file.display()
        )));
    }
    let ctx = |e: rusqlite::Error| SyncError::State(format!("reading {}: {e}", file.display()));
    let conn = Connection::open_with_flags(
        &file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(ctx)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(ctx)?;
    let has = |table: &str| -> Result<bool, SyncError> {
        conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            params![table],
            |r| r.get(0),
        )
        .map_err(ctx)
    };
    if !has("meta")? || !has("base")? {
        return Err(SyncError::State(format!(
            "{} is not a syncengine state database (no meta or base table)",
            file.display()
        )));
    }
    let meta = |key: &str| -> Result<Option<rusqlite::types::Value>, SyncError> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
            r.get(0)
        })
        .optional()
        .map_err(ctx)
    };
    let text = |key: &str| -> Result<Option<String>, SyncError> {
        Ok(match meta(key)? {
            Some(rusqlite::types::Value::Text(s)) => Some(s),
            _ => None,
        })
    };
    let time = |key: &str| -> Result<Option<SystemTime>, SyncError> {
        Ok(match meta(key)? {
            Some(rusqlite::types::Value::Integer(n)) => Some(nanos_to_system_time(n)),
            _ => None,
        })
    };
    let mut source_root = text(SOURCE_ROOT)?;
    let mut destination_root = text(DESTINATION_ROOT)?;
    // Files from before the roots were recorded: the root identities name the locations.
    if (source_root.is_none() || destination_root.is_none()) && has("root_identity")? {
        let location = |side: &str| -> Result<Option<String>, SyncError> {
            conn.query_row(
                "SELECT location FROM root_identity WHERE side = ?1",
                params![side],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(ctx)
        };
        if source_root.is_none() {
            source_root = location("source")?;
        }
        if destination_root.is_none() {
            destination_root = location("destination")?;
        }
    }
    let count = |sql: &str| -> Result<u64, SyncError> {
        let n: i64 = conn.query_row(sql, [], |r| r.get(0)).map_err(ctx)?;
        Ok(u64::try_from(n).unwrap_or_default())
    };
    let has_settled: bool = conn
        .query_row(
            "SELECT EXISTS(SELECT 1 FROM pragma_table_info('base') WHERE name = 'settled')",
            [],
            |r| r.get(0),
        )
        .map_err(ctx)?;
    Ok(PairInfo {
        id: id.to_owned(),
        file: file.clone(),
        source_root: source_root.map(|s| crate::redact::redact(&s).into_owned()),
        destination_root: destination_root.map(|s| crate::redact::redact(&s).into_owned()),
        last_mode: text(LAST_MODE)?,
        last_run: time(LAST_RUN)?,
        last_completed: time("last_completed")?,
        last_counts: text(LAST_COUNTS)?.and_then(|s| serde_json::from_str(&s).ok()),
        created: time("created")?,
        files: count("SELECT COUNT(*) FROM base")?,
        kept_by_backup: if has_settled {
            count("SELECT COUNT(*) FROM base WHERE settled IS NOT NULL")?
        } else {
            0
        },
        initial_sync_pending: meta("initial_sync_done")?.is_none(),
    })
}

/// Deletes the state of pair `id` (its database with its WAL and shared-memory files, then
/// its lock file), holding the pair's run lock meanwhile; returns the files removed. The next
/// sync of the pair is a first sync.
///
/// A `*.db` file that is not a syncengine state database (another program's file in a shared
/// state directory) is left alone, with its neighbours; an empty, unreadable or corrupt state
/// database can still be forgotten.
///
/// # Errors
/// [`SyncError::Locked`] when a run of the pair holds the lock (nothing is removed);
/// [`SyncError::State`] when a file cannot be removed, or the `.db` file is not a syncengine
/// state database (nothing is removed).
pub fn forget(state_dir: &Path, id: &str) -> Result<Vec<PathBuf>, SyncError> {
    let db = file_of(state_dir, id);
    if let Some(why) = foreign(&db) {
        return Err(SyncError::State(format!(
            "{} is not a syncengine state database ({why}); nothing removed (delete it by hand \
             if it really is a pair's state)",
            db.display()
        )));
    }
    let lock_path = state_dir.join(format!("{id}.lock"));
    let _lock = PairLock::acquire_at(lock_path.clone())?;
    let mut removed = Vec::new();
    // The database after its log files: a crash half way leaves a database without its log
    // (a base that may miss the last batches, as after a crash), never a log without its
    // database, which a new database of that name would pick up.
    let mut files: Vec<PathBuf> = ["-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| {
            let mut f = db.clone().into_os_string();
            f.push(suffix);
            PathBuf::from(f)
        })
        .collect();
    files.push(db);
    files.push(lock_path);
    for f in files {
        match std::fs::remove_file(&f) {
            Ok(()) => removed.push(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(SyncError::State(format!("removing {}: {e}", f.display())));
            }
        }
    }
    Ok(removed)
}

/// Why `file` is surely not a syncengine state database, or `None` when it may be one: an
/// empty file (a state that was never written), an SQLite database with the `meta` and `base`
/// tables or no tables at all, or one SQLite cannot read (a corrupt state). Another program's
/// file is not SQLite, or is an SQLite database with other tables.
fn foreign(file: &Path) -> Option<&'static str> {
    use std::io::Read;
    let mut header = [0u8; 16];
    let mut f = std::fs::File::open(file).ok()?;
    let n = f.read(&mut header).ok()?;
    if n == 0 {
        return None;
    }
    if n < header.len() || &header != b"SQLite format 3\0" {
        return Some("not an SQLite database");
    }
    let conn = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .ok()?;
    let ours = |t: &str| tables.iter().any(|n| n == t);
    let maybe_ours = tables.is_empty() || (ours("meta") && ours("base"));
    (!maybe_ours).then_some("an SQLite database without syncengine's meta and base tables")
}

/// `t` in UTC as `2026-12-04T16:31:03Z` (RFC 3339, whole seconds), for showing recorded times.
pub fn utc_text(t: SystemTime) -> String {
    crate::engine::utc_written(t.into(), ["-", "T", ":", "Z"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::Side;
    use crate::path::RelPath;
    use crate::state::{BaseRecord, BaseUpdate, SideRecord};

    #[test]
    fn a_recorded_run_is_listed_and_an_unrecorded_one_has_no_roots() {
        let dir = tempfile::tempdir().unwrap();
        let old = StateStore::open(dir.path(), "aaa111").unwrap();
        let side = SideRecord {
            size: 1,
            ..SideRecord::default()
        };
        old.apply(&[
            BaseUpdate::Put(BaseRecord::new(
                RelPath::new("x").unwrap(),
                side.clone(),
                side.clone(),
            )),
            BaseUpdate::Put(BaseRecord::settled_absence(
                RelPath::new("y").unwrap(),
                Side::Source,
                side,
            )),
        ])
        .unwrap();
        drop(old);
        let new = StateStore::open(dir.path(), "bbb222").unwrap();
        let counts = RunCounts {
            uploaded: 3,
            ..RunCounts::default()
        };
        new.record_run(
            SyncMode::SourceBackup,
            &[
                "file:///tmp/a".to_owned(),
                "webdav://me:s3cret@h:80/x".to_owned(),
            ],
            &counts,
        )
        .unwrap();
        new.mark_completed().unwrap();
        drop(new);
        std::fs::write(dir.path().join("junk.db"), b"not sqlite").unwrap();

        let all = list(dir.path()).unwrap();
        assert_eq!(all.len(), 3);
        let a = all[0].as_ref().unwrap();
        assert_eq!(a.id, "aaa111");
        assert_eq!(
            (a.source_root.as_deref(), a.last_mode.as_deref()),
            (None, None)
        );
        assert_eq!((a.files, a.kept_by_backup), (2, 1));
        let b = all[1].as_ref().unwrap();
        assert_eq!(b.source_root.as_deref(), Some("file:///tmp/a"));
        let dest = b.destination_root.as_deref().unwrap();
        assert!(!dest.contains("s3cret"), "{dest}");
        assert_eq!(b.last_mode.as_deref(), Some("source-backup"));
        assert!(b.last_run.is_some() && b.last_completed.is_some());
        assert_eq!(b.last_counts.as_ref().map(|c| c.uploaded), Some(3));
        assert_eq!(all[2].as_ref().unwrap_err().id, "junk");

        assert_eq!(resolve(dir.path(), "bb").unwrap(), "bbb222");
        assert!(resolve(dir.path(), "c").is_err());
        assert!(
            resolve(dir.path(), "").is_err(),
            "an empty prefix names no pair"
        );
        std::fs::write(dir.path().join("bbb333.db"), b"").unwrap();
        let err = resolve(dir.path(), "bbb").unwrap_err().to_string();
        assert!(err.contains("bbb222") && err.contains("bbb333"), "{err}");
    }

    #[test]
    fn forget_waits_for_no_run_and_removes_the_files() {
        let dir = tempfile::tempdir().unwrap();
        drop(StateStore::open(dir.path(), "p1").unwrap());
        // The only pair there is, yet an empty prefix does not name it.
        assert!(resolve(dir.path(), "").is_err());
        let held = PairLock::acquire(dir.path(), "p1").unwrap();
        assert!(matches!(
            forget(dir.path(), "p1"),
            Err(SyncError::Locked { .. })
        ));
        assert!(dir.path().join("p1.db").exists());
        drop(held);
        let removed = forget(dir.path(), "p1").unwrap();
        assert!(removed.contains(&dir.path().join("p1.db")), "{removed:?}");
        assert!(ids(dir.path()).unwrap().is_empty());
        assert!(!dir.path().join("p1.lock").exists());
    }

    #[tokio::test]
    async fn a_sync_records_its_roots_mode_and_counts() {
        use crate::client::StorageClientExt;
        let src = std::sync::Arc::new(crate::MemoryClient::new());
        src.put(&RelPath::new("a").unwrap(), bytes::Bytes::from("a"))
            .await
            .unwrap();
        let dst = std::sync::Arc::new(crate::MemoryClient::new());
        let state = tempfile::tempdir().unwrap();
        let engine = crate::SyncEngine::new(state.path());
        let pair = crate::SyncPair::new(src.clone(), dst, SyncMode::SourceToDestination);
        engine.sync_pair(&pair).await.unwrap();
        let all = list(state.path()).unwrap();
        let [Ok(info)] = all.as_slice() else {
            panic!("{all:?}")
        };
        let locations = pair.locations().await.unwrap();
        assert_eq!(info.source_root, Some(locations[0].to_string()));
        assert_eq!(info.destination_root, Some(locations[1].to_string()));
        assert_eq!(info.last_mode.as_deref(), Some("source-to-destination"));
        assert_eq!(info.last_counts.as_ref().map(|c| c.uploaded), Some(1));
        assert_eq!(info.files, 1);
        assert!(!info.initial_sync_pending && info.last_completed.is_some());
    }

    #[test]
    fn times_read_as_utc() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_401_863);
        assert_eq!(utc_text(t), "2026-12-04T16:31:03Z");
    }
}
