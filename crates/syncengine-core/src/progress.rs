//! [`ProgressEvent`]: what a run reports while it works.

use crate::mode::{ConflictLoser, Side};
use crate::path::RelPath;
use crate::plan::Action;

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
        /// What was done, described for a listing (with the names conflict copies got).
        report: ActionReport,
    },
    /// An action failed (after retries).
    Failed {
        /// The path acted on.
        path: RelPath,
        /// What was attempted.
        kind: ActionKind,
        /// The error, as text.
        error: String,
        /// What was attempted, described for a listing.
        report: ActionReport,
    },
    /// A warning for the user.
    Warning(String),
    /// A dry run lists `count` actions of `group` next, each as a [`ProgressEvent::WouldDo`]
    /// (sent on the channel given to
    /// [`SyncEngine::with_listing`](crate::SyncEngine::with_listing)).
    GroupPlanned {
        /// The group that follows.
        group: PlanGroup,
        /// How many actions it holds.
        count: u64,
    },
    /// One action a dry run would carry out.
    WouldDo(ActionReport),
}

/// The groups a dry run lists its actions in, in the order of [`PlanGroup::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PlanGroup {
    /// Copies source → destination.
    Uploads,
    /// Copies destination → source.
    Downloads,
    /// Renames (and, in backup modes, copies under a new name) mirrored on a side.
    Renames,
    /// Conflicts, each with its winner and the names the kept versions get.
    Conflicts,
    /// Deletes on a side.
    Deletes(Side),
}

impl PlanGroup {
    /// Every group, in listing order.
    pub const ALL: [PlanGroup; 6] = [
        PlanGroup::Uploads,
        PlanGroup::Downloads,
        PlanGroup::Renames,
        PlanGroup::Conflicts,
        PlanGroup::Deletes(Side::Source),
        PlanGroup::Deletes(Side::Destination),
    ];

    /// The group `action` is listed in.
    pub fn of(action: &Action) -> PlanGroup {
        match action {
            Action::Copy {
                from: Side::Source, ..
            } => PlanGroup::Uploads,
            Action::Copy {
                from: Side::Destination,
                ..
            } => PlanGroup::Downloads,
            Action::Rename { .. } => PlanGroup::Renames,
            Action::Delete { side, .. } => PlanGroup::Deletes(*side),
            Action::Conflict { .. } | Action::SetAside { .. } | Action::MoveAside { .. } => {
                PlanGroup::Conflicts
            }
        }
    }

    /// The position of the group in [`PlanGroup::ALL`].
    pub fn index(self) -> usize {
        match self {
            PlanGroup::Uploads => 0,
            PlanGroup::Downloads => 1,
            PlanGroup::Renames => 2,
            PlanGroup::Conflicts => 3,
            PlanGroup::Deletes(Side::Source) => 4,
            PlanGroup::Deletes(Side::Destination) => 5,
        }
    }
}

/// What one action does (or would do), described for a listing: a dry run's plan, the
/// actions of a run as they complete.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActionReport {
    /// The path acted on (the new path of a rename).
    pub path: RelPath,
    /// The side that is changed; `None` when both are (a keep-both conflict).
    pub side: Option<Side>,
    /// What is done there.
    pub change: Change,
}

/// What an action changes, in an [`ActionReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// Copy source → destination; `replaces` when the destination holds another version.
    Upload {
        /// The destination's version is replaced.
        replaces: bool,
    },
    /// Copy destination → source; `replaces` when the source holds another version.
    Download {
        /// The source's version is replaced.
        replaces: bool,
    },
    /// Delete the file.
    Delete,
    /// Rename `from` to the report's path; with `keep_old` (backup modes) a copy that keeps
    /// the old name.
    Rename {
        /// The old path.
        from: RelPath,
        /// The old name stays (a copy, not a move).
        keep_old: bool,
    },
    /// Settle a conflict.
    Conflict {
        /// Why the path is in conflict.
        cause: ConflictCause,
        /// The side whose version takes the path; `None` for keep-both and type changes.
        winner: Option<Side>,
        /// The versions kept under conflict names: on which side, under which name. Empty
        /// when the loser is not kept (`--conflict-loser delete`: it goes the way of a
        /// deleted file, to the trash where there is one). In a dry run the names show
        /// `YYYYMMDDTHHMMSSZ` where the real run puts its UTC time.
        kept_as: Vec<(Side, RelPath)>,
    },
}

/// Why a path is in conflict, in a [`Change::Conflict`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConflictCause {
    /// Both sides changed the file differently.
    BothChanged,
    /// A new file took the path of a deletion already settled; the kept copy is set aside.
    NewFileAtDeletedPath,
    /// A file on one side, a folder on the other: the folder keeps the path.
    TypeChange,
}

impl ActionReport {
    /// Describes `action`, with `kept_as` the conflict names its kept versions get (see
    /// [`Change::Conflict`]; ignored for other actions).
    pub fn of(action: &Action, kept_as: Vec<(Side, RelPath)>) -> ActionReport {
        let (side, change) = match action {
            Action::Copy {
                from,
                entry: _,
                target,
            } => {
                let replaces = target.is_some();
                let change = match from {
                    Side::Source => Change::Upload { replaces },
                    Side::Destination => Change::Download { replaces },
                };
                (Some(from.other()), change)
            }
            Action::Delete { side, .. } => (Some(*side), Change::Delete),
            Action::Rename {
                seen_on,
                from,
                keep_old,
                ..
            } => (
                Some(seen_on.other()),
                Change::Rename {
                    from: from.path.clone(),
                    keep_old: *keep_old,
                },
            ),
            Action::Conflict { winner, .. } => (
                winner.map(Side::other),
                Change::Conflict {
                    cause: ConflictCause::BothChanged,
                    winner: *winner,
                    kept_as,
                },
            ),
            Action::SetAside { kept_side, .. } => (
                Some(*kept_side),
                Change::Conflict {
                    cause: ConflictCause::NewFileAtDeletedPath,
                    winner: Some(kept_side.other()),
                    kept_as,
                },
            ),
            Action::MoveAside { side, .. } => (
                Some(*side),
                Change::Conflict {
                    cause: ConflictCause::TypeChange,
                    winner: None,
                    kept_as,
                },
            ),
        };
        ActionReport {
            path: action.path().clone(),
            side,
            change,
        }
    }

    /// Describes `action` as a dry run plans it: the conflict names are those the executor
    /// would pick first, with `YYYYMMDDTHHMMSSZ` in place of the run's time (a name found
    /// taken at run time gets a `-2`, `-3`… suffix).
    pub fn planned(action: &Action, loser: ConflictLoser) -> ActionReport {
        let named = |path: &RelPath, side: Side| {
            crate::exec::conflict_candidate(path, PLANNED_STAMP, side, 1)
                .ok()
                .map(|name| (side, name))
        };
        let kept_as = match action {
            Action::Conflict {
                source,
                destination,
                winner,
            } => match (winner, loser) {
                (None, _) => [
                    named(&source.path, Side::Source),
                    named(&destination.path, Side::Destination),
                ]
                .into_iter()
                .flatten()
                .collect(),
                (Some(w), ConflictLoser::Keep) => {
                    named(&source.path, w.other()).into_iter().collect()
                }
                (Some(_), ConflictLoser::Delete) => Vec::new(),
            },
            Action::SetAside {
                kept_side, kept, ..
            } => named(&kept.path, *kept_side).into_iter().collect(),
            Action::MoveAside { side, entry, .. } => {
                named(&entry.path, *side).into_iter().collect()
            }
            _ => Vec::new(),
        };
        ActionReport::of(action, kept_as)
    }
}

/// The stand-in for the run's UTC time in the conflict names a dry run shows: as long as
/// the real stamp, so a long name is cut where the real run cuts it.
pub const PLANNED_STAMP: &str = "YYYYMMDDTHHMMSSZ";
