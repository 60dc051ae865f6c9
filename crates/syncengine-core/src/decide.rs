//! [`decide`]: the pure, table-driven heart of the engine.
//!
//! Given the mode, the policies and what happened to one path on each side since the base,
//! `decide` says what to do. It touches no storage and no state, so every row of the seed's
//! scenario tables (and every case `SEMANTICS.md` adds) is a unit test of this one function.
//!
//! # Decisions beyond the seed's tables
//! - **Modified on one side, deleted on the other**: in `TWO_WAY` and the backup modes the
//!   modified version wins and is restored to the deleting side, when the mode can copy that
//!   way; otherwise nothing happens. A delete never destroys an edit the engine has not seen.
//! - **Mirror modes** have no conflicts: the authoritative side wins every difference,
//!   including an edit on the other side meeting a delete on the authoritative side (the
//!   edit is removed, into the trash or backup dir where one is configured).
//! - **Identical changes** on both sides are recorded as synced, never a conflict.
//! - **Both sides added a path with different content** is a conflict (`TWO_WAY`: by strategy;
//!   backup modes: the backed-up side wins; mirrors: the authoritative side wins outright).
//! - **Settled deletions**: a backup mode's "no action (backup preserved)" is
//!   [`Decision::Settle`]: the base records the deleting side as absent on purpose. From then
//!   on ([`Observation::settled`]) the kept copy is one-sided: `TWO_WAY` copies it back; a
//!   mirror mode copies it or deletes it like any other one-sided file; the backup mode whose
//!   primary side deleted it keeps it where it is (even when the kept copy is edited: the
//!   deletion stays settled); the other backup mode copies it from its primary side to its
//!   backup side. A new file at that path on the deleting side is [`Decision::SetAside`]: the
//!   new file keeps the path, the kept copy is renamed to a conflict name on its own side and
//!   inherits the settled absence (deleted photos never come back to the source). Where the
//!   mode copies such a kept copy back ([`kept_copy_goes_back`]: `TWO_WAY`, and the backup
//!   mode whose primary side holds it), the executor copies the conflict copy to the other
//!   side in the same run instead of one run later. `DESTINATION_BACKUP` never uploads, so
//!   a new file on the source at a path the destination keeps is left alone (nothing is
//!   copied; the settlement stands).
//! - **Type changes** (a file `x` on one side, files below `x/` on the other) are decided per
//!   path first, then as a whole by [`decide_type_change`]: the side that changed wins and the
//!   other side's old entry is deleted (an ordinary delete, run before the writes it makes room
//!   for); when both are to stay (the other side edited the file, both added, a mode that
//!   never deletes) the folder keeps the path and the file becomes a conflict copy.

use crate::mode::{ConflictStrategy, InitialSyncPreference, Side, SyncMode};

/// What happened to a path on one side, relative to the base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    /// Not present now, not in the base.
    Absent,
    /// Present now, not in the base.
    Added,
    /// Present now and in the base, same content token.
    Unchanged,
    /// Present now and in the base, different content token.
    Modified,
    /// Not present now, but in the base.
    Deleted,
}

impl Change {
    /// The path exists on this side now.
    pub fn is_present(self) -> bool {
        matches!(self, Change::Added | Change::Unchanged | Change::Modified)
    }

    /// The path changed on this side since the base (added, modified or deleted).
    pub fn is_changed(self) -> bool {
        matches!(self, Change::Added | Change::Modified | Change::Deleted)
    }
}

/// Everything `decide` needs to know about one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// What happened on the source.
    pub source: Change,
    /// What happened on the destination.
    pub destination: Change,
    /// Whether the two current versions are known to have the same content. Only consulted
    /// when both are present and at least one changed; `None` counts as different.
    pub contents_equal: Option<bool>,
    /// The side whose current version has the newer mtime; `None` for a tie or unknown.
    pub newer: Option<Side>,
    /// The side whose absence the base records as settled (see
    /// [`BaseRecord::settled`](crate::state::BaseRecord::settled)). That side's change is then
    /// `Absent` (still gone) or `Added` (a new file at the path); the other side's change is
    /// relative to the kept copy.
    pub settled: Option<Side>,
}

impl Observation {
    /// An observation with unknown equality and no newer side.
    pub fn new(source: Change, destination: Change) -> Self {
        Observation {
            source,
            destination,
            contents_equal: None,
            newer: None,
            settled: None,
        }
    }

    /// Marks `side`'s absence as settled in the base.
    pub fn with_settled(mut self, side: Side) -> Self {
        self.settled = Some(side);
        self
    }

    /// The change on `side`.
    pub fn change(&self, side: Side) -> Change {
        match side {
            Side::Source => self.source,
            Side::Destination => self.destination,
        }
    }

    /// Sets whether the contents are equal.
    pub fn with_equal(mut self, equal: bool) -> Self {
        self.contents_equal = Some(equal);
        self
    }

    /// Sets the side with the newer mtime.
    pub fn with_newer(mut self, side: Side) -> Self {
        self.newer = Some(side);
        self
    }
}

/// The policies of a run that `decide` applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The sync mode.
    pub mode: SyncMode,
    /// True until the pair's first plan has ended normally (see
    /// [`StateStore::initial_sync_pending`](crate::state::StateStore::initial_sync_pending)).
    pub initial: bool,
    /// The initial-sync preference (only `TWO_WAY` first runs consult it).
    pub initial_preference: InitialSyncPreference,
    /// How `TWO_WAY` conflicts are resolved.
    pub conflict: ConflictStrategy,
}

impl Policy {
    /// A policy for `mode` with defaults: not initial, `MERGE`, `NEWEST_WINS`.
    pub fn new(mode: SyncMode) -> Self {
        Policy {
            mode,
            initial: false,
            initial_preference: InitialSyncPreference::Merge,
            conflict: ConflictStrategy::NewestWins,
        }
    }
}

/// How a conflict is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// This side's version is copied over the other; the loser is kept under a conflict name
    /// unless the run says to drop it.
    Winner(Side),
    /// Both versions are kept under conflict names on both sides.
    KeepBoth,
}

/// What to do about one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Leave both sides and the base alone.
    Nothing,
    /// Both sides hold the same content: record the path as synced.
    Record,
    /// Gone from both sides: drop the path from the base.
    Forget,
    /// Copy this side's version to the other side (creating or replacing).
    Copy(Side),
    /// Delete the path on this side.
    Delete(Side),
    /// Both sides changed the path differently; settle it as given.
    Conflict(Resolution),
    /// This side deleted the path and the mode does not propagate that ("no action (backup
    /// preserved)"): change no storage, and record the side's absence as settled, with the
    /// other side's current version as the kept copy.
    Settle(Side),
    /// A new file appeared on the side whose absence was settled, while this side still
    /// holds the kept copy: rename the kept copy to a conflict name on this side (its base
    /// keeps the settled absence of the other side), then copy the new file here at the path.
    SetAside(Side),
}

/// Decides what to do about one path. Pure: same inputs, same answer.
///
/// ```
/// use syncengine_core::decide::{decide, Change, Decision, Observation, Policy};
/// use syncengine_core::{Side, SyncMode};
///
/// let policy = Policy::new(SyncMode::TwoWay);
/// let obs = Observation::new(Change::Unchanged, Change::Deleted);
/// assert_eq!(decide(&policy, &obs), Decision::Delete(Side::Source));
/// ```
pub fn decide(policy: &Policy, obs: &Observation) -> Decision {
    use Change::*;
    if let Some(absent) = obs.settled {
        return settled(policy, obs, absent);
    }
    let (s, d) = (obs.source, obs.destination);

    // Facts independent of the mode.
    match (s, d) {
        (Absent | Deleted, Absent | Deleted) => {
            return if s == Deleted || d == Deleted {
                Decision::Forget
            } else {
                Decision::Nothing
            };
        }
        (Unchanged, Unchanged) => return Decision::Nothing,
        _ => {}
    }
    let both_present = s.is_present() && d.is_present();
    if both_present && obs.contents_equal == Some(true) {
        return Decision::Record;
    }

    match policy.mode {
        SyncMode::TwoWay => two_way(policy, obs),
        SyncMode::SourceToDestination => mirror(Side::Source, s, d),
        SyncMode::DestinationToSource => mirror(Side::Destination, d, s),
        SyncMode::SourceBackup => source_backup(s, d),
        SyncMode::DestinationBackup => destination_backup(s, d),
    }
}

fn two_way(policy: &Policy, obs: &Observation) -> Decision {
    use Change::*;
    use Side::{Destination as Dst, Source as Src};
    let conflict = || Decision::Conflict(resolve(policy.conflict, obs.newer));
    match (obs.source, obs.destination) {
        // First sighting of a path (no base for it).
        (Added, Absent) => match initial_preference(policy) {
            InitialSyncPreference::DestinationWins => Decision::Delete(Src),
            _ => Decision::Copy(Src),
        },
        (Absent, Added) => match initial_preference(policy) {
            InitialSyncPreference::SourceWins => Decision::Delete(Dst),
            _ => Decision::Copy(Dst),
        },
        (Added, Added) => match initial_preference(policy) {
            InitialSyncPreference::SourceWins => Decision::Copy(Src),
            InitialSyncPreference::DestinationWins => Decision::Copy(Dst),
            _ => conflict(),
        },
        // One side changed.
        (Modified, Unchanged) => Decision::Copy(Src),
        (Unchanged, Modified) => Decision::Copy(Dst),
        (Deleted, Unchanged) => Decision::Delete(Dst),
        (Unchanged, Deleted) => Decision::Delete(Src),
        // Modify vs delete: the edit wins and is restored.
        (Modified, Deleted) => Decision::Copy(Src),
        (Deleted, Modified) => Decision::Copy(Dst),
        (Modified, Modified) => conflict(),
        // A path present on one side and recorded in the base cannot be "absent" on the
        // other, nor "added": the base covers both sides. Treat a malformed pairing safely
        // by copying the present version, which deletes nothing.
        (Added | Unchanged | Modified, _) => Decision::Copy(Src),
        (_, Added | Unchanged | Modified) => Decision::Copy(Dst),
        _ => Decision::Nothing,
    }
}

/// The preference that applies: only the first run consults it.
fn initial_preference(policy: &Policy) -> InitialSyncPreference {
    if policy.initial {
        policy.initial_preference
    } else {
        // After the first sync, a path new on one side is an addition to copy.
        InitialSyncPreference::Merge
    }
}

fn resolve(strategy: ConflictStrategy, newer: Option<Side>) -> Resolution {
    match strategy {
        ConflictStrategy::NewestWins => Resolution::Winner(newer.unwrap_or(Side::Source)),
        ConflictStrategy::SourceWins => Resolution::Winner(Side::Source),
        ConflictStrategy::DestinationWins => Resolution::Winner(Side::Destination),
        ConflictStrategy::KeepBoth => Resolution::KeepBoth,
    }
}

/// Mirror modes: `auth` is the authoritative side, `a` its change, `o` the other side's.
/// The other side is made equal to the authoritative side, whatever happened there.
fn mirror(auth: Side, a: Change, o: Change) -> Decision {
    use Change::*;
    match (a, o) {
        (Added | Unchanged | Modified, _) => Decision::Copy(auth),
        (Absent | Deleted, Added | Unchanged | Modified) => Decision::Delete(auth.other()),
        _ => Decision::Nothing,
    }
}

/// `SOURCE_BACKUP`: uploads and downloads, never deletes; source edits win conflicts.
fn source_backup(s: Change, d: Change) -> Decision {
    use Change::*;
    use Side::{Destination as Dst, Source as Src};
    match (s, d) {
        (Added, Absent) | (Modified, Unchanged) | (Modified, Deleted) => Decision::Copy(Src),
        // "Delete file at destination: re-upload from source".
        (Unchanged, Deleted) => Decision::Copy(Src),
        // "Add/modify file at destination: download to source"; a destination edit also
        // survives a source delete (modify beats delete).
        (Absent, Added) | (Unchanged, Modified) | (Deleted, Modified) => Decision::Copy(Dst),
        // "Delete file at source: no action (backup preserved)": settled from now on.
        (Deleted, Unchanged) => Decision::Settle(Src),
        (Added, Added) | (Modified, Modified) => Decision::Conflict(Resolution::Winner(Src)),
        _ => Decision::Nothing,
    }
}

/// `DESTINATION_BACKUP`: downloads only, never deletes; destination edits win.
fn destination_backup(s: Change, d: Change) -> Decision {
    use Change::*;
    use Side::Destination as Dst;
    match (s, d) {
        // "Add file at destination: download"; "modify file at destination: download".
        (Absent, Added) | (Unchanged, Modified) | (Deleted, Modified) => Decision::Copy(Dst),
        // "Modify file at source: overwrite with destination version".
        (Modified, Unchanged) => Decision::Copy(Dst),
        // "Delete file at source: re-download from destination".
        (Deleted, Unchanged) => Decision::Copy(Dst),
        // "Add file at source: no action".
        (Added, Absent) => Decision::Nothing,
        // "Delete file at destination: no action (backup preserved)"; a source edit of a file
        // the destination deleted stays where it is. Either way the deletion is settled.
        (Unchanged, Deleted) | (Modified, Deleted) => Decision::Settle(Dst),
        (Added, Added) | (Modified, Modified) => Decision::Conflict(Resolution::Winner(Dst)),
        _ => Decision::Nothing,
    }
}

/// A file on one side meets a folder of the same name on the other (a type change: a file
/// replaced by a folder, or the reverse, or both added), after every path has been decided
/// on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeChange {
    /// The side holding the file `x` (the other side holds files below `x/`, and no `x`).
    pub file_side: Side,
    /// The decision about the file `x`.
    pub file_decision: Decision,
    /// The side whose absence of `x` the base records as settled, if any.
    pub file_settled: Option<Side>,
    /// Whether anything will be below `x/` on each side once the plan has run (`[source,
    /// destination]`): children kept there or copied there. A member the listing could not
    /// see (`crate::unknown`) is kept there: it is never deleted, so where the file would
    /// be copied onto such a folder, the folder keeps the path and the file moves aside.
    pub folder_after: [bool; 2],
}

/// What to do about a [`TypeChange`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TypeDecision {
    /// The per-path decisions agree (one side's entry is deleted to make room for the other
    /// side's): carry them out, the deletes that make room first.
    Proceed,
    /// Both the file and the folder are to stay: the folder keeps the path and the file is
    /// renamed to a conflict name on its side.
    MoveAside {
        /// Copy the renamed file to the other side as well.
        share: bool,
        /// The renamed file inherits a settled absence of the other side (it was the kept
        /// copy of a deletion a backup mode did not propagate): not shared, and its base
        /// records the other side as absent on purpose.
        settled: bool,
    },
    /// A mirror mode cannot make its mirror match: the folder there holds what it cannot
    /// delete (members its listing could not see), and renaming the file on the
    /// authoritative side is not the mirror's to do. Both stay as they are, reported.
    Hold,
}

/// Decides a type change. Pure, like [`decide`]: the side that changed wins (its decisions
/// already delete the other side's old entry, which is planned as an ordinary delete); when
/// both the file and something below the folder are to stay — the other side edited the file
/// meanwhile, both sides added, or a mode that never deletes — the folder keeps the path and
/// the file becomes a conflict copy, shared with the other side where the mode copies that
/// way. That holds in every mode but the mirrors, also where the file is on a backup mode's
/// primary side (SEMANTICS leaves this open): renaming one file loses nothing, while moving a
/// folder aside is many requests on an object store and not atomic. A mirror deletes every
/// member of the folder it can see, so it meets a clash only where the folder holds members
/// its listing could not see: it never writes its authoritative side, and leaves both alone
/// ([`TypeDecision::Hold`]).
///
/// ```
/// use syncengine_core::decide::{decide_type_change, Decision, Policy, TypeChange, TypeDecision};
/// use syncengine_core::{Side, SyncMode};
///
/// // The destination replaced file `x` by a folder; the source left `x` alone.
/// let t = TypeChange {
///     file_side: Side::Source,
///     file_decision: Decision::Delete(Side::Source),
///     file_settled: None,
///     folder_after: [true, true],
/// };
/// assert_eq!(decide_type_change(&Policy::new(SyncMode::TwoWay), &t), TypeDecision::Proceed);
/// // ...but the source edited `x` meanwhile: it is kept as a conflict copy on both sides.
/// let t = TypeChange { file_decision: Decision::Copy(Side::Source), ..t };
/// assert_eq!(
///     decide_type_change(&Policy::new(SyncMode::TwoWay), &t),
///     TypeDecision::MoveAside { share: true, settled: false }
/// );
/// ```
pub fn decide_type_change(policy: &Policy, t: &TypeChange) -> TypeDecision {
    let f = t.file_side;
    let folder_side = f.other();
    let file_after_on_f = t.file_decision != Decision::Delete(f);
    let file_after_on_folder_side = t.file_decision == Decision::Copy(f);
    let folder_after = |side: Side| match side {
        Side::Source => t.folder_after[0],
        Side::Destination => t.folder_after[1],
    };
    let clash = (file_after_on_f && folder_after(f))
        || (file_after_on_folder_side && folder_after(folder_side));
    if !clash {
        return TypeDecision::Proceed;
    }
    if policy.mode.is_mirror() {
        return TypeDecision::Hold;
    }
    let settled = t.file_decision == Decision::Settle(folder_side)
        || (t.file_settled == Some(folder_side) && t.file_decision == Decision::Nothing);
    let copies_that_way = match f {
        Side::Source => policy.mode.allows_upload(),
        Side::Destination => policy.mode.allows_download(),
    };
    TypeDecision::MoveAside {
        share: !settled && copies_that_way,
        settled,
    }
}

/// Decides a path whose absence on side `absent` is settled in the base.
fn settled(policy: &Policy, obs: &Observation, absent: Side) -> Decision {
    use Change::*;
    let kept = absent.other();
    match (obs.change(absent), obs.change(kept)) {
        (Absent, Deleted) => Decision::Forget,
        // The kept copy is gone too: what is left is an ordinary addition (never an initial
        // sighting: the path has a history).
        (Added, Deleted) => {
            let mut plain = Observation::new(obs.source, obs.destination);
            match kept {
                Side::Source => plain.source = Absent,
                Side::Destination => plain.destination = Absent,
            }
            let later = Policy {
                initial: false,
                ..*policy
            };
            decide(&later, &plain)
        }
        (Absent, kept_change @ (Unchanged | Modified)) => {
            one_sided_kept_copy(policy.mode, absent, kept_change)
        }
        (Added, Unchanged | Modified) => {
            if obs.contents_equal == Some(true) {
                return Decision::Record;
            }
            match policy.mode {
                SyncMode::SourceToDestination => Decision::Copy(Side::Source),
                SyncMode::DestinationToSource => Decision::Copy(Side::Destination),
                // Never uploads: the new source file cannot take the path on the destination,
                // and overwriting it with the kept copy would undo a source addition.
                SyncMode::DestinationBackup if absent == Side::Source => Decision::Nothing,
                _ => Decision::SetAside(kept),
            }
        }
        // Not produced by the reconciler (a settled side is classified without a base):
        // decide as if nothing were settled.
        _ => decide(
            policy,
            &Observation {
                settled: None,
                ..*obs
            },
        ),
    }
}

/// True when `mode` copies the kept copy of a settled absence on `absent` back to that side
/// (`TWO_WAY`, and the backup mode whose primary side holds the kept copy). A kept copy set
/// aside under a conflict name ([`Decision::SetAside`]) inherits the settled absence, so such a
/// mode would copy it on the next run: the executor does it in the same run (issue 8,
/// behaviour 12), and the base then records both sides.
pub fn kept_copy_goes_back(mode: SyncMode, absent: Side) -> bool {
    one_sided_kept_copy(mode, absent, Change::Unchanged) == Decision::Copy(absent.other())
}

/// True when `mode` leaves the kept copy of a settled absence on `absent` where it is (the
/// backup mode whose primary side deleted it): such a copy that moved on its side keeps its
/// settlement under its new name, instead of being taken for a new file there.
pub fn kept_copy_stays(mode: SyncMode, absent: Side) -> bool {
    one_sided_kept_copy(mode, absent, Change::Unchanged) == Decision::Nothing
}

/// What a mode does with a kept copy on the other side of a settled absence on `absent`.
fn one_sided_kept_copy(mode: SyncMode, absent: Side, kept_change: Change) -> Decision {
    let kept = absent.other();
    match mode {
        SyncMode::TwoWay => Decision::Copy(kept),
        SyncMode::SourceToDestination | SyncMode::DestinationToSource => {
            let auth = if mode == SyncMode::SourceToDestination {
                Side::Source
            } else {
                Side::Destination
            };
            if auth == kept {
                Decision::Copy(kept)
            } else {
                // An extra file on the non-authoritative side, like any other.
                Decision::Delete(kept)
            }
        }
        SyncMode::SourceBackup | SyncMode::DestinationBackup => {
            let primary = if mode == SyncMode::SourceBackup {
                Side::Source
            } else {
                Side::Destination
            };
            if absent == primary {
                // The primary side deleted it: the backup keeps it, edited or not.
                if kept_change == Change::Modified {
                    Decision::Settle(absent)
                } else {
                    Decision::Nothing
                }
            } else {
                // The backup side lacks a file the primary holds: back it up.
                Decision::Copy(primary)
            }
        }
    }
}

#[cfg(test)]
mod tests;
