//! [`ProgressEvent`]: what a run reports while it works.

use crate::mode::Side;
use crate::path::RelPath;

/// The kind of work an action does, for progress displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ActionKind {
    /// Copy source → destination.
    Upload,
    /// Copy destination → source.
    Download,
    /// Delete on a side.
    Delete(Side),
    /// Rename on a side.
    Rename(Side),
    /// Rename a conflict loser aside on a side.
    ConflictRename(Side),
}

/// An event from a running sync, sent on the channel given to
/// [`SyncEngine::with_progress`](crate::SyncEngine::with_progress).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// Planning finished: this many actions moving this many bytes will run.
    Planned {
        /// Number of actions (transfers, deletes, renames).
        actions: u64,
        /// Bytes to transfer.
        bytes: u64,
    },
    /// An action started.
    Started {
        /// The path acted on.
        path: RelPath,
        /// What is being done.
        kind: ActionKind,
        /// Bytes this action will move (0 for deletes and renames).
        bytes: u64,
    },
    /// More bytes of a transfer were written.
    Bytes {
        /// The path being transferred.
        path: RelPath,
        /// Bytes written since the previous event for this path.
        delta: u64,
    },
    /// An action finished.
    Done {
        /// The path acted on.
        path: RelPath,
        /// What was done.
        kind: ActionKind,
    },
    /// An action failed (after retries).
    Failed {
        /// The path acted on.
        path: RelPath,
        /// What was attempted.
        kind: ActionKind,
        /// The error, as text.
        error: String,
    },
    /// A warning for the user.
    Warning(String),
}
