//! [`Plan`] and [`Action`]: what a run will do, decided before anything is changed.
//!
//! The reconciler produces a plan; the safety checks read it; a dry run reports it; the
//! executor carries it out. One accounting function ([`Action::count_into`]) serves both the
//! dry run's prediction and the real run's tally, so the two cannot drift apart.

use crate::entry::Entry;
use crate::ignore_rules::IgnoreRules;
use crate::mode::{ConflictLoser, Side, SyncMode};
use crate::path::RelPath;
use crate::progress::ActionKind;
use crate::spill::SpillVec;
use crate::state::BaseUpdate;
use crate::stats::SyncStats;

/// One change to make to the storage.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Copy `entry` from side `from` to the same path on the other side.
    Copy {
        /// Side the content comes from.
        from: Side,
        /// The listed entry being copied.
        entry: Entry,
        /// What the target side holds at that path now (replaced by the copy), if anything.
        target: Option<Entry>,
    },
    /// Delete `entry` on `side`.
    Delete {
        /// The side to delete on.
        side: Side,
        /// The entry as listed; a file that changed since is not deleted.
        entry: Entry,
    },
    /// Mirror a rename seen on `seen_on` by renaming `from` to `to.path` on the other side.
    /// With `keep_old` (backup modes) the old name stays: a copy, not a move.
    Rename {
        /// The side where the rename was observed.
        seen_on: Side,
        /// The old path on the other side.
        from: Entry,
        /// The new entry on `seen_on`.
        to: Entry,
        /// Copy instead of move (backup modes keep the old backup).
        keep_old: bool,
    },
    /// Both sides changed `path` differently: settle it.
    Conflict {
        /// The source's version.
        source: Entry,
        /// The destination's version.
        destination: Entry,
        /// The winner, or `None` to keep both.
        winner: Option<Side>,
    },
    /// A new file took the path of a settled deletion (a camera restarting at
    /// `IMG_0001.JPG`): rename the kept copy to a conflict name on `kept_side`, then copy
    /// `new` from the other side to `kept_side` at the path. The renamed copy stays on
    /// `kept_side`, its base keeping the settled absence of the other side — unless the mode
    /// copies such a kept copy back ([`crate::decide::kept_copy_goes_back`]): then the
    /// executor copies it to the other side in the same run.
    SetAside {
        /// The side holding the kept copy.
        kept_side: Side,
        /// The kept copy, as listed on `kept_side`.
        kept: Entry,
        /// The new file, as listed on the other side.
        new: Entry,
    },
    /// A type change where the folder keeps the path: rename the file `entry` on `side` to a
    /// conflict name there (and with `share` copy it to the other side under that name).
    ///
    /// Makes room: it must finish before anything is written below `entry.path` on `side`
    /// (the copies of the folder's files); if it fails, those copies fail too and nothing is
    /// lost. See [`Action::makes_room`].
    MoveAside {
        /// The side holding the file.
        side: Side,
        /// The file, as listed.
        entry: Entry,
        /// Also copy the renamed file to the other side.
        share: bool,
        /// The renamed file's base records the other side as absent on purpose (it was the
        /// kept copy of a settled deletion).
        settled: bool,
    },
}

impl Action {
    /// The path the action is about (the new path for renames).
    pub fn path(&self) -> &RelPath {
        match self {
            Action::Copy { entry, .. } | Action::Delete { entry, .. } => &entry.path,
            Action::Rename { to, .. } => &to.path,
            Action::Conflict { source, .. } => &source.path,
            Action::SetAside { new, .. } => &new.path,
            Action::MoveAside { entry, .. } => &entry.path,
        }
    }

    /// The kind of the action, for progress displays.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Copy {
                from: Side::Source, ..
            } => ActionKind::Upload,
            Action::Copy {
                from: Side::Destination,
                ..
            } => ActionKind::Download,
            Action::Delete { side, .. } => ActionKind::Delete(*side),
            Action::Rename { seen_on, .. } => ActionKind::Rename(seen_on.other()),
            Action::Conflict { winner, .. } => match winner {
                Some(Side::Source) => ActionKind::Upload,
                Some(Side::Destination) => ActionKind::Download,
                None => ActionKind::ConflictRename(Side::Source),
            },
            Action::SetAside { kept_side, .. } => match kept_side {
                Side::Source => ActionKind::Download,
                Side::Destination => ActionKind::Upload,
            },
            Action::MoveAside { side, .. } => ActionKind::ConflictRename(*side),
        }
    }

    /// Bytes this action moves through the engine.
    pub fn bytes(&self) -> u64 {
        match self {
            Action::Copy { entry, .. } => entry.size,
            Action::Delete { .. } | Action::Rename { .. } => 0,
            Action::Conflict {
                source,
                destination,
                winner,
            } => match winner {
                Some(Side::Source) => source.size,
                Some(Side::Destination) => destination.size,
                None => source.size + destination.size,
            },
            Action::SetAside { new, .. } => new.size,
            Action::MoveAside { entry, share, .. } => {
                if *share {
                    entry.size
                } else {
                    0
                }
            }
        }
    }

    /// True for deletes (they run last, and only if every transfer succeeded).
    pub fn is_delete(&self) -> bool {
        matches!(self, Action::Delete { .. })
    }

    /// True for the actions the executor takes out of the plan to run apart from the rest:
    /// those that make room for a type change ([`makes_room`](Action::makes_room)) go first,
    /// renames after the rest, deletes last.
    pub fn runs_apart(&self) -> bool {
        self.makes_room() || self.is_delete() || matches!(self, Action::Rename { .. })
    }

    /// The side this action changes, or `None` for one that may change both (a conflict,
    /// a file set or moved aside).
    pub fn changed_side(&self) -> Option<Side> {
        match self {
            Action::Copy { from, .. } => Some(from.other()),
            Action::Delete { side, .. } => Some(*side),
            Action::Rename { seen_on, .. } => Some(seen_on.other()),
            Action::Conflict { .. } | Action::SetAside { .. } | Action::MoveAside { .. } => None,
        }
    }

    /// True for actions that clear a path for a type change and must finish before the other
    /// actions start ([`Action::MoveAside`]). Deletes that make room for a type change (file
    /// `x` deleted on the side that receives `x/…`, or `x/…` deleted on the side that
    /// receives `x`) are ordinary [`Action::Delete`]s; the executor recognises them by path
    /// and runs them first too.
    pub fn makes_room(&self) -> bool {
        matches!(self, Action::MoveAside { .. })
    }

    /// Adds what this action does, once done, to `stats`.
    pub fn count_into(&self, stats: &mut SyncStats) {
        match self {
            Action::Copy { from, entry, .. } => count_copy(stats, *from, entry.size),
            Action::Delete { side, .. } => match side {
                Side::Source => stats.deleted_source += 1,
                Side::Destination => stats.deleted_destination += 1,
            },
            Action::Rename { seen_on, .. } => match seen_on.other() {
                Side::Source => stats.renamed_source += 1,
                Side::Destination => stats.renamed_destination += 1,
            },
            Action::Conflict {
                source,
                destination,
                winner,
            } => {
                stats.conflicts += 1;
                stats.conflict_paths.push(source.path.clone());
                match winner {
                    Some(Side::Source) => count_copy(stats, Side::Source, source.size),
                    Some(Side::Destination) => {
                        count_copy(stats, Side::Destination, destination.size)
                    }
                    None => {
                        count_copy(stats, Side::Source, source.size);
                        count_copy(stats, Side::Destination, destination.size);
                    }
                }
            }
            Action::SetAside { kept_side, new, .. } => {
                stats.conflicts += 1;
                stats.conflict_paths.push(new.path.clone());
                count_copy(stats, kept_side.other(), new.size);
            }
            Action::MoveAside {
                side, entry, share, ..
            } => {
                stats.conflicts += 1;
                stats.conflict_paths.push(entry.path.clone());
                if *share {
                    count_copy(stats, *side, entry.size);
                }
            }
        }
    }
}

fn count_copy(stats: &mut SyncStats, from: Side, size: u64) {
    match from {
        Side::Source => {
            stats.uploaded += 1;
            stats.bytes_uploaded += size;
        }
        Side::Destination => {
            stats.downloaded += 1;
            stats.bytes_downloaded += size;
        }
    }
}

/// Everything a run will do, plus what planning learned on the way.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Plan {
    /// Changes to the storage, in canonical path order. A long list keeps most of its actions
    /// in a temporary file ([`SpillVec`]), so memory does not grow with the tree.
    pub actions: SpillVec<Action>,
    /// Base updates that need no storage change (identical content, both deleted, refreshed
    /// metadata).
    pub state_updates: SpillVec<BaseUpdate>,
    /// Files listed on the source (after ignore rules).
    pub source_files: u64,
    /// Files listed on the destination (after ignore rules).
    pub destination_files: u64,
    /// Records in the base.
    pub base_files: u64,
    /// Records in the base that hold a version on the source (not a settled absence).
    pub base_source_files: u64,
    /// Records in the base that hold a version on the destination.
    pub base_destination_files: u64,
    /// Paths left alone on purpose (ignored, skipped by the backend).
    pub skipped: u64,
    /// Paths the source's listing could not see (symlinks, unreadable folders, …): nothing
    /// at or below them is touched this run, and the run ends with an error status.
    pub source_unknown: u64,
    /// Paths the destination's listing could not see.
    pub destination_unknown: u64,
    /// Warnings for the user.
    pub warnings: Vec<String>,
    /// Actions (or parts of actions) left out because they would change a protected side
    /// (see [`crate::protect`]).
    pub protected: u64,
    /// Files copied again because the flush after their last copy failed (see
    /// [`Reconciler::with_rewrites`](crate::reconcile::Reconciler::with_rewrites)).
    pub copied_again: u64,
}

/// What one pass over a plan's actions finds ([`Plan::tally`]): what the safety checks, the
/// roots' generations and the executor need to know before the first action starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanTally {
    /// Files deleted on each side (`[source, destination]`; renames are not deletes).
    pub deletes: [u64; 2],
    /// Whether any action changes each side (`[source, destination]`).
    pub changes: [bool; 2],
    /// The bytes the actions move ([`Action::bytes`]).
    pub bytes: u64,
    /// Actions that run apart from the rest ([`Action::runs_apart`]): none means the
    /// executor reads the plan once, in order.
    pub apart: u64,
}

impl Plan {
    /// Base records that hold a version on `side`: what that side had after the last sync.
    pub fn base_files_on(&self, side: Side) -> u64 {
        match side {
            Side::Source => self.base_source_files,
            Side::Destination => self.base_destination_files,
        }
    }

    /// Files the plan deletes on each side (`[source, destination]`; renames are not
    /// deletes).
    ///
    /// # Errors
    /// When the plan's spilled actions cannot be read back.
    pub fn deletes(&self) -> std::io::Result<[u64; 2]> {
        Ok(self.tally()?.deletes)
    }

    /// Counts what the run needs to know of the actions before the first one starts, in one
    /// pass over them (a long plan is read back from its temporary file for each pass).
    ///
    /// ```
    /// use syncengine_core::{Entry, RelPath, Side};
    /// use syncengine_core::plan::{Action, Plan};
    ///
    /// let file = Entry::new(RelPath::new("a.txt").unwrap(), 3);
    /// let mut plan = Plan::default();
    /// plan.actions.push(Action::Copy { from: Side::Source, entry: file.clone(), target: None });
    /// plan.actions.push(Action::Delete { side: Side::Source, entry: file });
    /// let tally = plan.tally().unwrap();
    /// assert_eq!(tally.deletes, [1, 0]);
    /// assert_eq!(tally.changes, [true, true]);
    /// assert_eq!((tally.bytes, tally.apart), (3, 1));
    /// ```
    ///
    /// # Errors
    /// When the plan's spilled actions cannot be read back.
    pub fn tally(&self) -> std::io::Result<PlanTally> {
        let mut tally = PlanTally::default();
        for a in self.actions.iter() {
            let a = a?;
            tally.bytes += a.bytes();
            tally.apart += u64::from(a.runs_apart());
            if let Action::Delete { side, .. } = &*a {
                tally.deletes[side.index()] += 1;
            }
            match a.changed_side() {
                Some(side) => tally.changes[side.index()] = true,
                None => tally.changes = [true; 2],
            }
        }
        Ok(tally)
    }

    /// The stats the plan would produce if every action succeeded.
    ///
    /// # Errors
    /// When the plan's spilled actions cannot be read back.
    pub fn predicted_stats(&self) -> std::io::Result<SyncStats> {
        let mut stats = SyncStats {
            skipped: self.skipped,
            unknown: self.source_unknown + self.destination_unknown,
            protected: self.protected,
            warnings: self.warnings.clone(),
            ..SyncStats::default()
        };
        for a in self.actions.iter() {
            a?.count_into(&mut stats);
        }
        Ok(stats)
    }

    /// [`predicted_stats`](Plan::predicted_stats) with the copies a run adds as it goes
    /// ([`kept_loser_copy`]): a conflict loser kept under a conflict name is an addition on
    /// its side, which the executor copies to the other side in the same run where `mode`
    /// copies additions that way and `rules` do not exclude the name (or counts as protected
    /// when that side is protected). A dry run reports these, so its counts are the real run's.
    pub fn predicted_stats_in(
        &self,
        mode: SyncMode,
        conflict_loser: ConflictLoser,
        protected: Option<Side>,
        rules: &IgnoreRules,
    ) -> std::io::Result<SyncStats> {
        let mut stats = self.predicted_stats()?;
        for a in self.actions.iter() {
            let a = a?;
            let Some(copy) = kept_loser_copy(&a, mode, conflict_loser, protected, rules) else {
                continue;
            };
            match copy {
                Action::Copy { from, .. } if protected == Some(from.other()) => {
                    stats.protected += 1;
                }
                copy => copy.count_into(&mut stats),
            }
        }
        Ok(stats)
    }
}

/// The copy a run makes after `action` when it settles a conflict whose losing version is kept
/// under a conflict name on its side and the mode copies such an addition to the other side:
/// that name (with [`PLANNED_STAMP`](crate::progress::PLANNED_STAMP) for the run's time)
/// copied from the loser's side. `None` for other actions, a loser that is deleted, a mode
/// that does not copy that way, or a conflict name `rules` exclude. Under protection the
/// protected winner's loser is always kept (the executor's rule), and its copy is returned:
/// the caller counts it as protected.
pub fn kept_loser_copy(
    action: &Action,
    mode: SyncMode,
    conflict_loser: ConflictLoser,
    protected: Option<Side>,
    rules: &IgnoreRules,
) -> Option<Action> {
    let Action::Conflict {
        source,
        destination,
        winner: Some(winner),
    } = action
    else {
        return None;
    };
    let loser = winner.other();
    let kept = conflict_loser == ConflictLoser::Keep || protected == Some(*winner);
    let copied = match loser {
        Side::Source => mode.allows_upload(),
        Side::Destination => mode.allows_download(),
    };
    if !(kept && copied) {
        return None;
    }
    let lost = match loser {
        Side::Source => source,
        Side::Destination => destination,
    };
    let name =
        crate::exec::conflict_candidate(&lost.path, crate::progress::PLANNED_STAMP, loser, 1)
            .ok()?;
    if rules.is_ignored(&name) {
        return None;
    }
    Some(Action::Copy {
        from: loser,
        entry: Entry {
            path: name,
            ..lost.clone()
        },
        target: None,
    })
}
