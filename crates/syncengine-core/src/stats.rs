//! [`SyncStats`]: what a run did (or, in a dry run, would do).

use serde::Serialize;

use crate::path::RelPath;

/// The summary of one run. Serialises to the JSON object the CLI prints with `--json`.
///
/// In a dry run the counts are the planned counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SyncStats {
    /// Files copied source → destination (new, modified, restored, conflict winners).
    pub uploaded: u64,
    /// Files copied destination → source.
    pub downloaded: u64,
    /// Files deleted on the source.
    pub deleted_source: u64,
    /// Files deleted on the destination.
    pub deleted_destination: u64,
    /// Renames carried out on the source (mirroring a destination rename).
    pub renamed_source: u64,
    /// Renames carried out on the destination (mirroring a source rename).
    pub renamed_destination: u64,
    /// Conflicts found (each resolved by the strategy).
    pub conflicts: u64,
    /// Paths left alone on purpose: ignored, or skipped because they changed during the run.
    pub skipped: u64,
    /// Actions that failed. A run with errors leaves the base true for what was done.
    pub errors: u64,
    /// Paths a listing could not see — a symlink, a special file, an unreadable or vanished
    /// folder, a name that cannot be decoded, names that collide on a side that cannot hold
    /// them apart. Nothing at or below them was deleted, copied or recorded; each is named in
    /// [`SyncStats::warnings`]. A run with unknown paths did not sync everything: the CLI
    /// exits 1, as for errors.
    pub unknown: u64,
    /// Changes not made because they would have written, deleted or renamed something on a
    /// protected side ([`SyncOptions::protected`](crate::SyncOptions::protected), `--protect`):
    /// not recorded in the base, so the next run reports them again. The first few are named
    /// in [`SyncStats::warnings`].
    pub protected: u64,
    /// Bytes copied source → destination.
    pub bytes_uploaded: u64,
    /// Bytes copied destination → source.
    pub bytes_downloaded: u64,
    /// Files this run moved to a trash (or copied to a backup dir) before deleting or
    /// replacing them: deletes and overwrites, conflict losers with `--conflict-loser
    /// delete`. 0 in a dry run.
    pub trashed_files: u64,
    /// The bytes of [`SyncStats::trashed_files`].
    pub trashed_bytes: u64,
    /// True when nothing was changed because this was a dry run.
    pub dry_run: bool,
    /// Warnings for the user (risky first sync, skipped symlinks, …).
    pub warnings: Vec<String>,
    /// The paths of the conflicts.
    pub conflict_paths: Vec<RelPath>,
    /// One message per failed action (not part of the CLI's JSON summary).
    #[serde(skip)]
    pub error_messages: Vec<String>,
}

impl SyncStats {
    /// True when the run changed nothing and had nothing to change.
    pub fn is_noop(&self) -> bool {
        self.uploaded == 0
            && self.downloaded == 0
            && self.deleted_source == 0
            && self.deleted_destination == 0
            && self.renamed_source == 0
            && self.renamed_destination == 0
            && self.conflicts == 0
    }
}
