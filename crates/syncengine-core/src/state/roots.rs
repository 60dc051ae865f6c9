//! The root identities recorded with a pair's base (see [`crate::identity`]), and the move of
//! a state file from the pair's older id to its current one.
//!
//! The identities live in a table of their own, `root_identity`, created when the first
//! identity is recorded: a database without it (older, or never recorded) simply has none, so
//! opening a state file changes nothing and a dry run writes nothing.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{
    BUSY_TIMEOUT, PairLock, SETTLED_DESTINATION, SETTLED_SOURCE, StateStore, file_stem, state_err,
};
use crate::entry::system_time_to_nanos;
use crate::error::SyncError;
use crate::folding::Folding;
use crate::identity::RootIdentity;
use crate::mode::Side;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS root_identity(
    side TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    location TEXT NOT NULL,
    recorded INTEGER NOT NULL
) WITHOUT ROWID";

/// The bit of `side` in the `accept_pending` mask.
fn acceptance_bit(side: Side) -> i64 {
    match side {
        Side::Source => 1,
        Side::Destination => 2,
    }
}

/// One identity to record: the side, what identifies its root, and where the root is.
pub type RootRecord = (Side, RootIdentity, String);

/// The generation each root holds for this pair (see
/// [`check_roots`](crate::identity::RootGeneration)): the current one, and the one a run is
/// writing (accepted too, so a kill between writing it and recording it is no false alarm).
const CREATE_GENERATION_TABLE: &str = "CREATE TABLE IF NOT EXISTS root_generation(
    side TEXT PRIMARY KEY,
    current TEXT,
    pending TEXT
) WITHOUT ROWID";

/// How each root folds names, as the name-folding probe found (see [`crate::folding`]), with
/// the root identity it was probed under: a result is used only while the root shows that
/// identity.
const CREATE_FOLDING_TABLE: &str = "CREATE TABLE IF NOT EXISTS root_folding(
    side TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    case_insensitive INTEGER NOT NULL,
    normalization_insensitive INTEGER NOT NULL,
    probed INTEGER NOT NULL
) WITHOUT ROWID";

impl StateStore {
    /// The name folding recorded for `side`'s root, with the identity token
    /// ([`RootIdentity::to_token`]) the root showed when it was probed; `None` when none is
    /// recorded. Reading creates nothing (a dry run may read).
    ///
    /// # Errors
    /// [`SyncError::State`] when the database cannot be read.
    pub fn root_folding(&self, side: Side) -> Result<Option<(String, Folding)>, SyncError> {
        let ctx = |e| self.err("reading the recorded name folding", e);
        let conn = self.conn()?;
        let has_table: bool = conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM sqlite_master \
                 WHERE type = 'table' AND name = 'root_folding')",
                [],
                |r| r.get(0),
            )
            .map_err(ctx)?;
        if !has_table {
            return Ok(None);
        }
        conn.query_row(
            "SELECT identity, case_insensitive, normalization_insensitive FROM root_folding \
             WHERE side = ?1",
            params![side.as_str()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Folding {
                        case_insensitive: r.get(1)?,
                        normalization_insensitive: r.get(2)?,
                    },
                ))
            },
        )
        .optional()
        .map_err(ctx)
    }

    /// Records how `side`'s root folds names, probed while it showed `identity` (a
    /// [`RootIdentity::to_token`]), replacing what was recorded before.
    ///
    /// # Errors
    /// [`SyncError::State`] when the database cannot be written.
    pub fn record_root_folding(
        &self,
        side: Side,
        identity: &str,
        folding: Folding,
    ) -> Result<(), SyncError> {
        let ctx = |e| self.err("recording the name folding", e);
        let now = system_time_to_nanos(SystemTime::now());
        let conn = self.conn()?;
        conn.execute_batch(CREATE_FOLDING_TABLE).map_err(ctx)?;
        conn.execute(
            "INSERT OR REPLACE INTO root_folding(side, identity, case_insensitive, \
             normalization_insensitive, probed) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                side.as_str(),
                identity,
                folding.case_insensitive,
                folding.normalization_insensitive,
                now
            ],
        )
        .map_err(ctx)?;
        Ok(())
    }

    /// The database file of `pair_id` under `state_dir` (whether or not it exists).
    pub fn file_for(state_dir: &Path, pair_id: &str) -> PathBuf {
        state_dir.join(format!("{}.db", file_stem(pair_id)))
    }

    /// Returns the identity recorded for `side`'s root, if any.
    ///
    /// # Errors
    /// [`SyncError::State`] when the database cannot be read or holds an identity this
    /// version cannot parse.
    pub fn root_identity(&self, side: Side) -> Result<Option<RootIdentity>, SyncError> {
        let ctx = |e| self.err("reading the recorded root identity", e);
        let conn = self.conn()?;
        let has_table: bool = conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM sqlite_master \
                 WHERE type = 'table' AND name = 'root_identity')",
                [],
                |r| r.get(0),
            )
            .map_err(ctx)?;
        if !has_table {
            return Ok(None);
        }
        let token: Option<String> = conn
            .query_row(
                "SELECT identity FROM root_identity WHERE side = ?1",
                params![side.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(ctx)?;
        token
            .map(|t| {
                RootIdentity::from_token(&t).ok_or_else(|| {
                    SyncError::State(format!("unreadable recorded root identity {t:?}"))
                })
            })
            .transpose()
    }

    /// Records root identities in one transaction. `accepted` names the sides accepted as new
    /// roots: the base no longer describes them, so it is forgotten in the same transaction —
    /// all but the settled absences of a side that was not replaced (what that side deleted
    /// on purpose stays deleted: a backup mode does not bring it back).
    ///
    /// # Errors
    /// [`SyncError::State`] when the transaction fails (then nothing of it is applied).
    pub fn record_root_identities(
        &self,
        roots: &[RootRecord],
        accepted: &[Side],
    ) -> Result<(), SyncError> {
        let ctx = |e| self.err("recording root identities", e);
        let now = system_time_to_nanos(SystemTime::now());
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(ctx)?;
        tx.execute_batch(CREATE_TABLE).map_err(ctx)?;
        if !accepted.is_empty() {
            tx.execute("DELETE FROM base WHERE settled IS NULL", [])
                .map_err(ctx)?;
            for side in accepted {
                let settled = match side {
                    Side::Source => SETTLED_SOURCE,
                    Side::Destination => SETTLED_DESTINATION,
                };
                tx.execute("DELETE FROM base WHERE settled = ?1", params![settled])
                    .map_err(ctx)?;
            }
        }
        for (side, identity, location) in roots {
            tx.execute(
                "INSERT OR REPLACE INTO root_identity(side, identity, location, recorded) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![side.as_str(), identity.to_token(), location, now],
            )
            .map_err(ctx)?;
        }
        if !accepted.is_empty() {
            let pending = accepted
                .iter()
                .fold(self.pending_acceptance_mask(&tx)?, |m, s| {
                    m | acceptance_bit(*s)
                });
            tx.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('accept_pending', ?1)",
                params![pending],
            )
            .map_err(ctx)?;
        }
        tx.commit().map_err(ctx)
    }

    /// The sides accepted as new roots by a run whose plan has not ended normally yet (it was
    /// killed, cancelled or stopped after recording the acceptance): the runs after it delete
    /// nothing either until one ends normally ([`acceptance_done`](Self::acceptance_done)),
    /// so re-running an interrupted accepted run keeps the promise it made.
    ///
    /// # Errors
    /// [`SyncError::State`] when the database cannot be read.
    pub fn pending_acceptance(&self) -> Result<Vec<Side>, SyncError> {
        let conn = self.conn()?;
        let mask = self.pending_acceptance_mask(&conn)?;
        Ok([Side::Source, Side::Destination]
            .into_iter()
            .filter(|s| mask & acceptance_bit(*s) != 0)
            .collect())
    }

    /// Records that an accepted run's plan ended normally: later runs are ordinary ones.
    ///
    /// # Errors
    /// [`SyncError::State`] when the database cannot be written.
    pub fn acceptance_done(&self) -> Result<(), SyncError> {
        let conn = self.conn()?;
        conn.execute("DELETE FROM meta WHERE key = 'accept_pending'", [])
            .map_err(|e| self.err("recording the end of an accepted run", e))?;
        Ok(())
    }

    fn pending_acceptance_mask(&self, conn: &Connection) -> Result<i64, SyncError> {
        conn.query_row(
            "SELECT value FROM meta WHERE key = 'accept_pending'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map(Option::unwrap_or_default)
        .map_err(|e| self.err("reading a pending acceptance", e))
    }

    /// The generations recorded for `side`'s root: (current, pending).
    ///
    /// # Errors
    /// [`SyncError::State`] when the database cannot be read.
    pub fn root_generation(
        &self,
        side: Side,
    ) -> Result<(Option<String>, Option<String>), SyncError> {
        let ctx = |e| self.err("reading the recorded root generation", e);
        let conn = self.conn()?;
        conn.execute_batch(CREATE_GENERATION_TABLE).map_err(ctx)?;
        let row: Option<(Option<String>, Option<String>)> = conn
            .query_row(
                "SELECT current, pending FROM root_generation WHERE side = ?1",
                params![side.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(ctx)?;
        Ok(row.unwrap_or((None, None)))
    }

    /// Records that a run is about to write generation `next` into `side`'s root (before it
    /// does), keeping the current one.
    ///
    /// # Errors
    /// [`SyncError::State`] when the transaction fails.
    pub fn begin_root_generation(&self, side: Side, next: &str) -> Result<(), SyncError> {
        let ctx = |e| self.err("recording a root generation", e);
        let conn = self.conn()?;
        conn.execute_batch(CREATE_GENERATION_TABLE).map_err(ctx)?;
        conn.execute(
            "INSERT INTO root_generation(side, current, pending) VALUES (?1, NULL, ?2)              ON CONFLICT(side) DO UPDATE SET pending = excluded.pending",
            params![side.as_str(), next],
        )
        .map_err(ctx)?;
        Ok(())
    }

    /// Records `generation` as the one `side`'s root holds now.
    ///
    /// # Errors
    /// [`SyncError::State`] when the transaction fails.
    pub fn commit_root_generation(&self, side: Side, generation: &str) -> Result<(), SyncError> {
        let ctx = |e| self.err("recording a root generation", e);
        let conn = self.conn()?;
        conn.execute_batch(CREATE_GENERATION_TABLE).map_err(ctx)?;
        conn.execute(
            "INSERT OR REPLACE INTO root_generation(side, current, pending) VALUES (?1, ?2, NULL)",
            params![side.as_str(), generation],
        )
        .map_err(ctx)?;
        Ok(())
    }

    /// The random id of this state database, which names the generation files it writes
    /// into roots (see [`crate::identity`]): two machines, or two state folders, that sync the
    /// same locations keep apart generations. Created on first use when `create` is set;
    /// `None` otherwise when there is none yet (a dry run writes nothing).
    ///
    /// # Errors
    /// [`SyncError::State`] when the database cannot be read or written.
    pub fn state_id(&self, create: bool) -> Result<Option<String>, SyncError> {
        let ctx = |e| self.err("reading the state id", e);
        let conn = self.conn()?;
        let read = |conn: &Connection| {
            conn.query_row("SELECT value FROM meta WHERE key = 'state_id'", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()
        };
        if let Some(id) = read(&conn).map_err(ctx)? {
            return Ok(Some(id));
        }
        if !create {
            return Ok(None);
        }
        let id = hex::encode(rand::random::<[u8; 12]>());
        conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('state_id', ?1)",
            params![id],
        )
        .map_err(ctx)?;
        read(&conn).map_err(ctx)
    }

    /// Moves the state of `old_id` to `new_id` when only the old one exists: pair ids used to
    /// be made from the clients' display strings, and a user upgrading keeps their base.
    /// Returns whether a file was moved.
    ///
    /// # Behavior
    /// Takes the old id's run lock (an older syncengine running that pair makes this fail
    /// with [`SyncError::Locked`]), folds the write-ahead log into the database file, then
    /// renames the file. The caller holds the new id's lock.
    ///
    /// # Errors
    /// [`SyncError::Locked`] as above; [`SyncError::State`] when the old file cannot be
    /// checkpointed or renamed (it is then left as it was).
    pub fn adopt_older_id(state_dir: &Path, old_id: &str, new_id: &str) -> Result<bool, SyncError> {
        let from = StateStore::file_for(state_dir, old_id);
        let to = StateStore::file_for(state_dir, new_id);
        if from == to || to.exists() || !from.exists() {
            return Ok(false);
        }
        let _old_lock = PairLock::acquire(state_dir, old_id)?;
        {
            let ctx = |e| state_err(&from, "checkpointing", e);
            let conn = Connection::open_with_flags(
                &from,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(ctx)?;
            conn.busy_timeout(BUSY_TIMEOUT).map_err(ctx)?;
            let busy: i64 = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .map_err(ctx)?;
            if busy != 0 {
                return Err(SyncError::State(format!(
                    "moving {} to {}: another process has it open; try again",
                    from.display(),
                    to.display()
                )));
            }
        }
        // After a full checkpoint the log holds nothing the database lacks.
        for suffix in ["-wal", "-shm"] {
            let mut side_file = from.clone().into_os_string();
            side_file.push(suffix);
            match std::fs::remove_file(&side_file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(SyncError::State(format!(
                        "removing {}: {e}",
                        Path::new(&side_file).display()
                    )));
                }
            }
        }
        std::fs::rename(&from, &to).map_err(|e| {
            SyncError::State(format!(
                "moving {} to {}: {e}",
                from.display(),
                to.display()
            ))
        })?;
        tracing::info!(
            "moved the pair's state from {} to {} (pair ids now cover each side's endpoint)",
            from.display(),
            to.display()
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::RelPath;
    use crate::state::{BaseRecord, BaseUpdate, SideRecord};

    fn rec(path: &str) -> BaseUpdate {
        BaseUpdate::Put(BaseRecord::new(
            RelPath::new(path).unwrap(),
            SideRecord::default(),
            SideRecord::default(),
        ))
    }

    #[test]
    fn identities_are_recorded_per_side() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), "p").unwrap();
        assert_eq!(store.root_identity(Side::Source).unwrap(), None);
        let a = RootIdentity::IdFile("aaa".into());
        let v = RootIdentity::Volume("vvv".into());
        store
            .record_root_identities(
                &[
                    (Side::Source, a.clone(), "file:///a".into()),
                    (Side::Destination, v.clone(), "file:///b".into()),
                ],
                &[],
            )
            .unwrap();
        drop(store);
        let store = StateStore::open(dir.path(), "p").unwrap();
        assert_eq!(store.root_identity(Side::Source).unwrap(), Some(a));
        assert_eq!(store.root_identity(Side::Destination).unwrap(), Some(v));
    }

    #[test]
    fn name_folding_is_recorded_per_side_with_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), "p").unwrap();
        assert_eq!(store.root_folding(Side::Source).unwrap(), None);
        let folds = Folding {
            case_insensitive: true,
            normalization_insensitive: false,
        };
        store
            .record_root_folding(Side::Destination, "id:aaa", folds)
            .unwrap();
        store
            .record_root_folding(Side::Source, "id:bbb", Folding::default())
            .unwrap();
        drop(store);
        let store = StateStore::open(dir.path(), "p").unwrap();
        assert_eq!(
            store.root_folding(Side::Destination).unwrap(),
            Some(("id:aaa".to_owned(), folds))
        );
        store
            .record_root_folding(Side::Destination, "id:ccc", Folding::default())
            .unwrap();
        assert_eq!(
            store.root_folding(Side::Destination).unwrap(),
            Some(("id:ccc".to_owned(), Folding::default()))
        );
        assert_eq!(
            store.root_folding(Side::Source).unwrap(),
            Some(("id:bbb".to_owned(), Folding::default()))
        );
    }

    #[test]
    fn forgetting_the_base_goes_with_the_new_identity() {
        let store = StateStore::open_in_memory().unwrap();
        store.apply(&[rec("a"), rec("b")]).unwrap();
        let b = RootIdentity::IdFile("bbb".into());
        store
            .record_root_identities(&[(Side::Destination, b.clone(), "x".into())], &[])
            .unwrap();
        assert_eq!(store.count().unwrap(), 2);
        store
            .record_root_identities(&[(Side::Destination, b, "x".into())], &[Side::Destination])
            .unwrap();
        assert_eq!(store.count().unwrap(), 0);
    }

    #[test]
    fn a_new_root_keeps_the_other_sides_settled_deletions() {
        let store = StateStore::open_in_memory().unwrap();
        let kept = SideRecord::default();
        store
            .apply(&[
                rec("a"),
                BaseUpdate::Put(BaseRecord::settled_absence(
                    RelPath::new("deleted-on-source").unwrap(),
                    Side::Source,
                    kept.clone(),
                )),
                BaseUpdate::Put(BaseRecord::settled_absence(
                    RelPath::new("deleted-on-destination").unwrap(),
                    Side::Destination,
                    kept,
                )),
            ])
            .unwrap();
        let b = RootIdentity::IdFile("bbb".into());
        store
            .record_root_identities(&[(Side::Destination, b, "x".into())], &[Side::Destination])
            .unwrap();
        assert_eq!(store.count().unwrap(), 1);
        let left = store
            .get(&RelPath::new("deleted-on-source").unwrap())
            .unwrap();
        assert_eq!(left.and_then(|r| r.settled), Some(Side::Source));
    }

    #[test]
    fn an_older_id_is_adopted_once_with_its_base() {
        let dir = tempfile::tempdir().unwrap();
        let old = StateStore::open(dir.path(), "old").unwrap();
        old.apply(&[rec("kept")]).unwrap();
        old.mark_completed().unwrap();
        drop(old);
        assert!(StateStore::adopt_older_id(dir.path(), "old", "new").unwrap());
        assert!(!StateStore::file_for(dir.path(), "old").exists());
        let new = StateStore::open(dir.path(), "new").unwrap();
        assert_eq!(new.count().unwrap(), 1);
        assert!(!new.is_initial().unwrap());
        // Nothing to adopt any more; and an existing new file is never replaced.
        assert!(!StateStore::adopt_older_id(dir.path(), "old", "new").unwrap());
        let other = StateStore::open(dir.path(), "other").unwrap();
        drop(other);
        assert!(!StateStore::adopt_older_id(dir.path(), "other", "new").unwrap());
        assert!(StateStore::file_for(dir.path(), "other").exists());
    }

    #[test]
    fn adopting_waits_for_nobody_holding_the_old_lock() {
        let dir = tempfile::tempdir().unwrap();
        drop(StateStore::open(dir.path(), "old").unwrap());
        let _held = PairLock::acquire(dir.path(), "old").unwrap();
        let err = StateStore::adopt_older_id(dir.path(), "old", "new").unwrap_err();
        assert!(matches!(err, SyncError::Locked { .. }), "{err}");
        assert!(StateStore::file_for(dir.path(), "old").exists());
    }
}
