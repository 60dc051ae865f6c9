//! Unit tests of [`decide`], derived from the seed's Scenarios tables and `SEMANTICS.md`
//! (not from the implementation).
//!
//! Mapping of the tables' words: "add at X" is `Added` on X and `Absent` on the other side
//! (no base); "modify at X" is `Modified` on X and `Unchanged` on the other; "delete at X" is
//! `Deleted` on X and `Unchanged` on the other. Upload is `Copy(Source)`, download is
//! `Copy(Destination)`. Renames are paired by a later stage, so a rename row tests the two
//! halves `decide` sees: the old path (deleted on the renaming side) and the new path (added).

use super::*;
use crate::mode::{ConflictStrategy, InitialSyncPreference, Side, SyncMode};
use Change::{Absent, Added, Deleted, Modified, Unchanged};
use Side::{Destination as Dst, Source as Src};

const ALL_CHANGES: [Change; 5] = [Absent, Added, Unchanged, Modified, Deleted];
const ALL_PREFERENCES: [InitialSyncPreference; 3] = [
    InitialSyncPreference::Merge,
    InitialSyncPreference::SourceWins,
    InitialSyncPreference::DestinationWins,
];
const ALL_STRATEGIES: [ConflictStrategy; 4] = [
    ConflictStrategy::NewestWins,
    ConflictStrategy::SourceWins,
    ConflictStrategy::DestinationWins,
    ConflictStrategy::KeepBoth,
];
const ALL_EQUAL: [Option<bool>; 3] = [None, Some(false), Some(true)];
const ALL_NEWER: [Option<Side>; 3] = [None, Some(Src), Some(Dst)];

/// Decides with the default policy of `mode` (not initial, MERGE, NEWEST_WINS) and unknown
/// equality (which counts as different).
fn run(mode: SyncMode, source: Change, destination: Change) -> Decision {
    decide(&Policy::new(mode), &Observation::new(source, destination))
}

fn initial(mode: SyncMode, preference: InitialSyncPreference) -> Policy {
    Policy {
        initial: true,
        initial_preference: preference,
        ..Policy::new(mode)
    }
}

fn with_strategy(mode: SyncMode, conflict: ConflictStrategy) -> Policy {
    Policy {
        conflict,
        ..Policy::new(mode)
    }
}

/// Every policy and observation `decide` can be given.
fn every_input() -> Vec<(Policy, Observation)> {
    let mut all = Vec::new();
    for mode in SyncMode::ALL {
        for is_initial in [false, true] {
            for initial_preference in ALL_PREFERENCES {
                for conflict in ALL_STRATEGIES {
                    let policy = Policy {
                        mode,
                        initial: is_initial,
                        initial_preference,
                        conflict,
                    };
                    for source in ALL_CHANGES {
                        for destination in ALL_CHANGES {
                            for contents_equal in ALL_EQUAL {
                                for newer in ALL_NEWER {
                                    let obs = Observation {
                                        source,
                                        destination,
                                        contents_equal,
                                        newer,
                                        settled: None,
                                    };
                                    all.push((policy, obs));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    all
}

/// True for the observations the reconciler can produce: the base records a path for both
/// sides at once, so either both sides are classified against a base record
/// (`Unchanged`/`Modified`/`Deleted`) or neither is (`Added`/`Absent`).
fn well_formed(obs: &Observation) -> bool {
    let no_base = |c: Change| matches!(c, Absent | Added);
    no_base(obs.source) == no_base(obs.destination)
}

// ---------------------------------------------------------------------------------------
// TWO_WAY Scenarios table
// ---------------------------------------------------------------------------------------

#[test]
fn two_way_add_file_at_source_uploads() {
    assert_eq!(run(SyncMode::TwoWay, Added, Absent), Decision::Copy(Src));
}

#[test]
fn two_way_add_file_at_destination_downloads() {
    assert_eq!(run(SyncMode::TwoWay, Absent, Added), Decision::Copy(Dst));
}

#[test]
fn two_way_modify_file_at_source_uploads() {
    assert_eq!(
        run(SyncMode::TwoWay, Modified, Unchanged),
        Decision::Copy(Src)
    );
}

#[test]
fn two_way_modify_file_at_destination_downloads() {
    assert_eq!(
        run(SyncMode::TwoWay, Unchanged, Modified),
        Decision::Copy(Dst)
    );
}

#[test]
fn two_way_modify_file_at_both_sides_conflicts_resolved_by_strategy() {
    let obs = Observation::new(Modified, Modified).with_equal(false);
    // Default strategy NEWEST_WINS.
    let policy = Policy::new(SyncMode::TwoWay);
    assert_eq!(
        decide(&policy, &obs.with_newer(Dst)),
        Decision::Conflict(Resolution::Winner(Dst))
    );
    assert_eq!(
        decide(&policy, &obs.with_newer(Src)),
        Decision::Conflict(Resolution::Winner(Src))
    );
    let keep_both = with_strategy(SyncMode::TwoWay, ConflictStrategy::KeepBoth);
    assert_eq!(
        decide(&keep_both, &obs),
        Decision::Conflict(Resolution::KeepBoth)
    );
}

#[test]
fn two_way_delete_file_at_source_deletes_at_destination() {
    assert_eq!(
        run(SyncMode::TwoWay, Deleted, Unchanged),
        Decision::Delete(Dst)
    );
}

#[test]
fn two_way_delete_file_at_destination_deletes_at_source() {
    assert_eq!(
        run(SyncMode::TwoWay, Unchanged, Deleted),
        Decision::Delete(Src)
    );
}

#[test]
fn two_way_rename_file_at_source_renames_at_destination() {
    // Old name: gone on the source, removed from the destination.
    assert_eq!(
        run(SyncMode::TwoWay, Deleted, Unchanged),
        Decision::Delete(Dst)
    );
    // New name: appears on the destination.
    assert_eq!(run(SyncMode::TwoWay, Added, Absent), Decision::Copy(Src));
}

#[test]
fn two_way_rename_file_at_destination_renames_at_source() {
    assert_eq!(
        run(SyncMode::TwoWay, Unchanged, Deleted),
        Decision::Delete(Src)
    );
    assert_eq!(run(SyncMode::TwoWay, Absent, Added), Decision::Copy(Dst));
}

// ---------------------------------------------------------------------------------------
// SOURCE_TO_DESTINATION Scenarios table
// ---------------------------------------------------------------------------------------

const STD: SyncMode = SyncMode::SourceToDestination;

#[test]
fn source_to_destination_add_file_at_source_uploads() {
    assert_eq!(run(STD, Added, Absent), Decision::Copy(Src));
}

#[test]
fn source_to_destination_add_file_at_destination_deletes_at_destination() {
    assert_eq!(run(STD, Absent, Added), Decision::Delete(Dst));
}

#[test]
fn source_to_destination_modify_file_at_source_uploads() {
    assert_eq!(run(STD, Modified, Unchanged), Decision::Copy(Src));
}

#[test]
fn source_to_destination_modify_file_at_destination_overwrites_with_source_version() {
    assert_eq!(run(STD, Unchanged, Modified), Decision::Copy(Src));
}

#[test]
fn source_to_destination_delete_file_at_source_deletes_at_destination() {
    assert_eq!(run(STD, Deleted, Unchanged), Decision::Delete(Dst));
}

#[test]
fn source_to_destination_delete_file_at_destination_reuploads_from_source() {
    assert_eq!(run(STD, Unchanged, Deleted), Decision::Copy(Src));
}

#[test]
fn source_to_destination_rename_file_at_source_renames_at_destination_old_file_deleted() {
    assert_eq!(run(STD, Deleted, Unchanged), Decision::Delete(Dst));
    assert_eq!(run(STD, Added, Absent), Decision::Copy(Src));
}

// ---------------------------------------------------------------------------------------
// SOURCE_BACKUP Scenarios table
// ---------------------------------------------------------------------------------------

const SB: SyncMode = SyncMode::SourceBackup;

#[test]
fn source_backup_add_file_at_source_uploads() {
    assert_eq!(run(SB, Added, Absent), Decision::Copy(Src));
}

#[test]
fn source_backup_add_file_at_destination_downloads() {
    assert_eq!(run(SB, Absent, Added), Decision::Copy(Dst));
}

#[test]
fn source_backup_modify_file_at_source_uploads() {
    assert_eq!(run(SB, Modified, Unchanged), Decision::Copy(Src));
}

#[test]
fn source_backup_modify_file_at_destination_downloads() {
    assert_eq!(run(SB, Unchanged, Modified), Decision::Copy(Dst));
}

#[test]
fn source_backup_delete_file_at_source_no_action_backup_preserved() {
    // No storage change; the base records the source's absence as settled.
    assert_eq!(run(SB, Deleted, Unchanged), Decision::Settle(Src));
}

#[test]
fn source_backup_delete_file_at_destination_reuploads_from_source() {
    assert_eq!(run(SB, Unchanged, Deleted), Decision::Copy(Src));
}

#[test]
fn source_backup_rename_file_at_source_renames_at_destination_old_backup_kept() {
    // The old name stays on the destination (settled)...
    assert_eq!(run(SB, Deleted, Unchanged), Decision::Settle(Src));
    // ...and the new name is uploaded next to it.
    assert_eq!(run(SB, Added, Absent), Decision::Copy(Src));
}

// ---------------------------------------------------------------------------------------
// DESTINATION_TO_SOURCE Scenarios table
// ---------------------------------------------------------------------------------------

const DTS: SyncMode = SyncMode::DestinationToSource;

#[test]
fn destination_to_source_add_file_at_source_deletes_at_source() {
    assert_eq!(run(DTS, Added, Absent), Decision::Delete(Src));
}

#[test]
fn destination_to_source_add_file_at_destination_downloads() {
    assert_eq!(run(DTS, Absent, Added), Decision::Copy(Dst));
}

#[test]
fn destination_to_source_modify_file_at_source_overwrites_with_destination_version() {
    assert_eq!(run(DTS, Modified, Unchanged), Decision::Copy(Dst));
}

#[test]
fn destination_to_source_modify_file_at_destination_downloads() {
    assert_eq!(run(DTS, Unchanged, Modified), Decision::Copy(Dst));
}

#[test]
fn destination_to_source_delete_file_at_source_redownloads_from_destination() {
    assert_eq!(run(DTS, Deleted, Unchanged), Decision::Copy(Dst));
}

#[test]
fn destination_to_source_delete_file_at_destination_deletes_at_source() {
    assert_eq!(run(DTS, Unchanged, Deleted), Decision::Delete(Src));
}

#[test]
fn destination_to_source_rename_file_at_destination_renames_at_source_old_file_deleted() {
    assert_eq!(run(DTS, Unchanged, Deleted), Decision::Delete(Src));
    assert_eq!(run(DTS, Absent, Added), Decision::Copy(Dst));
}

// ---------------------------------------------------------------------------------------
// DESTINATION_BACKUP Scenarios table
// ---------------------------------------------------------------------------------------

const DB: SyncMode = SyncMode::DestinationBackup;

#[test]
fn destination_backup_add_file_at_source_no_action() {
    assert_eq!(run(DB, Added, Absent), Decision::Nothing);
}

#[test]
fn destination_backup_add_file_at_destination_downloads() {
    assert_eq!(run(DB, Absent, Added), Decision::Copy(Dst));
}

#[test]
fn destination_backup_modify_file_at_source_overwrites_with_destination_version() {
    assert_eq!(run(DB, Modified, Unchanged), Decision::Copy(Dst));
}

#[test]
fn destination_backup_modify_file_at_destination_downloads() {
    assert_eq!(run(DB, Unchanged, Modified), Decision::Copy(Dst));
}

#[test]
fn destination_backup_delete_file_at_source_redownloads_from_destination() {
    assert_eq!(run(DB, Deleted, Unchanged), Decision::Copy(Dst));
}

#[test]
fn destination_backup_delete_file_at_destination_no_action_backup_preserved() {
    assert_eq!(run(DB, Unchanged, Deleted), Decision::Settle(Dst));
}

#[test]
fn destination_backup_rename_file_at_destination_renames_at_source_old_backup_kept() {
    assert_eq!(run(DB, Unchanged, Deleted), Decision::Settle(Dst));
    assert_eq!(run(DB, Absent, Added), Decision::Copy(Dst));
}

// ---------------------------------------------------------------------------------------
// Initial sync (SEMANTICS: "Initial sync (no base for the pair)")
// ---------------------------------------------------------------------------------------

#[test]
fn initial_merge_copies_both_ways_and_deletes_nothing() {
    let p = initial(SyncMode::TwoWay, InitialSyncPreference::Merge);
    assert_eq!(
        decide(&p, &Observation::new(Added, Absent)),
        Decision::Copy(Src)
    );
    assert_eq!(
        decide(&p, &Observation::new(Absent, Added)),
        Decision::Copy(Dst)
    );
    for s in [Added, Absent] {
        for d in [Added, Absent] {
            for eq in ALL_EQUAL {
                for newer in ALL_NEWER {
                    let obs = Observation {
                        source: s,
                        destination: d,
                        contents_equal: eq,
                        newer,
                        settled: None,
                    };
                    assert!(
                        !matches!(decide(&p, &obs), Decision::Delete(_)),
                        "MERGE deleted for {obs:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn initial_merge_both_sides_different_content_is_conflict_by_strategy() {
    let obs = Observation::new(Added, Added).with_equal(false);
    let expect = [
        (ConflictStrategy::NewestWins, Resolution::Winner(Dst)),
        (ConflictStrategy::SourceWins, Resolution::Winner(Src)),
        (ConflictStrategy::DestinationWins, Resolution::Winner(Dst)),
        (ConflictStrategy::KeepBoth, Resolution::KeepBoth),
    ];
    for (strategy, resolution) in expect {
        let p = Policy {
            conflict: strategy,
            ..initial(SyncMode::TwoWay, InitialSyncPreference::Merge)
        };
        assert_eq!(
            decide(&p, &obs.with_newer(Dst)),
            Decision::Conflict(resolution),
            "{strategy}"
        );
    }
}

#[test]
fn initial_merge_both_sides_same_content_is_recorded() {
    let p = initial(SyncMode::TwoWay, InitialSyncPreference::Merge);
    let obs = Observation::new(Added, Added).with_equal(true);
    assert_eq!(decide(&p, &obs), Decision::Record);
}

#[test]
fn initial_source_wins_uploads_and_deletes_destination_only_files() {
    let p = initial(SyncMode::TwoWay, InitialSyncPreference::SourceWins);
    assert_eq!(
        decide(&p, &Observation::new(Added, Absent)),
        Decision::Copy(Src)
    );
    assert_eq!(
        decide(&p, &Observation::new(Absent, Added)),
        Decision::Delete(Dst)
    );
    // The destination becomes a copy of the source: a differing version is replaced by the
    // source's, whichever is newer.
    let both = Observation::new(Added, Added)
        .with_equal(false)
        .with_newer(Dst);
    assert_eq!(decide(&p, &both), Decision::Copy(Src));
    assert_eq!(decide(&p, &both.with_equal(true)), Decision::Record);
}

#[test]
fn initial_destination_wins_downloads_and_deletes_source_only_files() {
    let p = initial(SyncMode::TwoWay, InitialSyncPreference::DestinationWins);
    assert_eq!(
        decide(&p, &Observation::new(Absent, Added)),
        Decision::Copy(Dst)
    );
    assert_eq!(
        decide(&p, &Observation::new(Added, Absent)),
        Decision::Delete(Src)
    );
    let both = Observation::new(Added, Added)
        .with_equal(false)
        .with_newer(Src);
    assert_eq!(decide(&p, &both), Decision::Copy(Dst));
    assert_eq!(decide(&p, &both.with_equal(true)), Decision::Record);
}

#[test]
fn initial_preference_has_no_effect_after_first_sync() {
    for pref in ALL_PREFERENCES {
        let p = Policy {
            initial: false,
            initial_preference: pref,
            ..Policy::new(SyncMode::TwoWay)
        };
        // New files on either side are copied to the other, never deleted.
        assert_eq!(
            decide(&p, &Observation::new(Added, Absent)),
            Decision::Copy(Src),
            "{pref}"
        );
        assert_eq!(
            decide(&p, &Observation::new(Absent, Added)),
            Decision::Copy(Dst),
            "{pref}"
        );
    }
    // And in general: same answer as MERGE for every observation.
    for (policy, obs) in every_input() {
        if policy.mode == SyncMode::TwoWay && !policy.initial {
            let merge = Policy {
                initial_preference: InitialSyncPreference::Merge,
                ..policy
            };
            assert_eq!(
                decide(&policy, &obs),
                decide(&merge, &obs),
                "{policy:?} {obs:?}"
            );
        }
    }
}

#[test]
fn initial_preference_has_no_effect_on_other_modes() {
    for (policy, obs) in every_input() {
        if policy.mode == SyncMode::TwoWay {
            continue;
        }
        let plain = Policy {
            initial: false,
            initial_preference: InitialSyncPreference::Merge,
            ..policy
        };
        assert_eq!(
            decide(&policy, &obs),
            decide(&plain, &obs),
            "{policy:?} {obs:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Conflict strategies (SEMANTICS: "Conflicts")
// ---------------------------------------------------------------------------------------

fn two_way_conflict(strategy: ConflictStrategy, newer: Option<Side>) -> Decision {
    let obs = Observation {
        newer,
        ..Observation::new(Modified, Modified).with_equal(false)
    };
    decide(&with_strategy(SyncMode::TwoWay, strategy), &obs)
}

#[test]
fn conflict_newest_wins_picks_newer_side() {
    let s = ConflictStrategy::NewestWins;
    assert_eq!(
        two_way_conflict(s, Some(Src)),
        Decision::Conflict(Resolution::Winner(Src))
    );
    assert_eq!(
        two_way_conflict(s, Some(Dst)),
        Decision::Conflict(Resolution::Winner(Dst))
    );
}

#[test]
fn conflict_newest_wins_tie_or_unknown_goes_to_source() {
    // `newer: None` stands for both a tie and an unknown mtime.
    assert_eq!(
        two_way_conflict(ConflictStrategy::NewestWins, None),
        Decision::Conflict(Resolution::Winner(Src))
    );
}

#[test]
fn conflict_source_wins_ignores_mtimes() {
    for newer in ALL_NEWER {
        assert_eq!(
            two_way_conflict(ConflictStrategy::SourceWins, newer),
            Decision::Conflict(Resolution::Winner(Src))
        );
    }
}

#[test]
fn conflict_destination_wins_ignores_mtimes() {
    for newer in ALL_NEWER {
        assert_eq!(
            two_way_conflict(ConflictStrategy::DestinationWins, newer),
            Decision::Conflict(Resolution::Winner(Dst))
        );
    }
}

#[test]
fn conflict_keep_both_has_no_winner() {
    for newer in ALL_NEWER {
        assert_eq!(
            two_way_conflict(ConflictStrategy::KeepBoth, newer),
            Decision::Conflict(Resolution::KeepBoth)
        );
    }
}

#[test]
fn conflict_unknown_equality_counts_as_different() {
    let obs = Observation::new(Modified, Modified);
    assert_eq!(
        decide(&Policy::new(SyncMode::TwoWay), &obs),
        Decision::Conflict(Resolution::Winner(Src))
    );
}

#[test]
fn both_added_different_content_after_first_sync_is_conflict() {
    let obs = Observation::new(Added, Added)
        .with_equal(false)
        .with_newer(Dst);
    assert_eq!(
        decide(&Policy::new(SyncMode::TwoWay), &obs),
        Decision::Conflict(Resolution::Winner(Dst))
    );
}

#[test]
fn source_backup_conflicts_are_won_by_source_whatever_the_strategy() {
    for strategy in ALL_STRATEGIES {
        for newer in ALL_NEWER {
            for (s, d) in [(Modified, Modified), (Added, Added)] {
                let obs = Observation {
                    newer,
                    ..Observation::new(s, d).with_equal(false)
                };
                assert_eq!(
                    decide(&with_strategy(SB, strategy), &obs),
                    Decision::Conflict(Resolution::Winner(Src)),
                    "{strategy} {obs:?}"
                );
            }
        }
    }
}

#[test]
fn destination_backup_conflicts_are_won_by_destination_whatever_the_strategy() {
    for strategy in ALL_STRATEGIES {
        for newer in ALL_NEWER {
            for (s, d) in [(Modified, Modified), (Added, Added)] {
                let obs = Observation {
                    newer,
                    ..Observation::new(s, d).with_equal(false)
                };
                assert_eq!(
                    decide(&with_strategy(DB, strategy), &obs),
                    Decision::Conflict(Resolution::Winner(Dst)),
                    "{strategy} {obs:?}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Modified on one side, deleted on the other
// ---------------------------------------------------------------------------------------

#[test]
fn two_way_modify_vs_delete_restores_the_edit() {
    assert_eq!(
        run(SyncMode::TwoWay, Modified, Deleted),
        Decision::Copy(Src)
    );
    assert_eq!(
        run(SyncMode::TwoWay, Deleted, Modified),
        Decision::Copy(Dst)
    );
}

#[test]
fn source_to_destination_modify_vs_delete_follows_the_source() {
    // Source edit, destination delete: the edit is re-uploaded.
    assert_eq!(run(STD, Modified, Deleted), Decision::Copy(Src));
    // Source delete, destination edit: the mirror cannot download, and the authoritative
    // side wins every difference, so the destination copy goes (into trash / backup dir).
    // SEMANTICS leaves this open (see decide.rs docs); this asserts the chosen behavior.
    assert_eq!(run(STD, Deleted, Modified), Decision::Delete(Dst));
}

#[test]
fn destination_to_source_modify_vs_delete_follows_the_destination() {
    assert_eq!(run(DTS, Deleted, Modified), Decision::Copy(Dst));
    // Mirror of the case above; same open question, same choice.
    assert_eq!(run(DTS, Modified, Deleted), Decision::Delete(Src));
}

#[test]
fn source_backup_modify_vs_delete_keeps_both_edits() {
    // Destination delete is never propagated: the source edit is re-uploaded.
    assert_eq!(run(SB, Modified, Deleted), Decision::Copy(Src));
    // Source delete is never propagated and destination edits are downloaded.
    assert_eq!(run(SB, Deleted, Modified), Decision::Copy(Dst));
}

#[test]
fn destination_backup_modify_vs_delete_never_uploads_or_deletes() {
    // The source edit cannot be uploaded and the destination delete is not propagated: the
    // destination's absence is settled, the source keeps its edit.
    assert_eq!(run(DB, Modified, Deleted), Decision::Settle(Dst));
    // Source delete is re-downloaded from the destination's edited version.
    assert_eq!(run(DB, Deleted, Modified), Decision::Copy(Dst));
}

// ---------------------------------------------------------------------------------------
// Mode-independent facts
// ---------------------------------------------------------------------------------------

#[test]
fn identical_changes_are_recorded_never_conflicts() {
    let pairs = [
        (Added, Added),
        (Modified, Modified),
        (Modified, Unchanged),
        (Unchanged, Modified),
        (Added, Unchanged),
        (Modified, Added),
    ];
    for mode in SyncMode::ALL {
        for strategy in ALL_STRATEGIES {
            for (s, d) in pairs {
                for newer in ALL_NEWER {
                    let obs = Observation {
                        newer,
                        ..Observation::new(s, d).with_equal(true)
                    };
                    assert_eq!(
                        decide(&with_strategy(mode, strategy), &obs),
                        Decision::Record,
                        "{mode} {obs:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn both_deleted_is_forgotten_in_every_mode() {
    for (policy, obs) in every_input() {
        let gone = |c: Change| matches!(c, Absent | Deleted);
        if gone(obs.source) && gone(obs.destination) {
            let expect = if obs.source == Deleted || obs.destination == Deleted {
                Decision::Forget
            } else {
                Decision::Nothing
            };
            assert_eq!(decide(&policy, &obs), expect, "{policy:?} {obs:?}");
        }
    }
}

#[test]
fn unchanged_on_both_sides_is_nothing_in_every_mode() {
    for (policy, obs) in every_input() {
        if obs.source == Unchanged && obs.destination == Unchanged {
            assert_eq!(
                decide(&policy, &obs),
                Decision::Nothing,
                "{policy:?} {obs:?}"
            );
        }
    }
}

#[test]
fn mirror_modes_never_return_conflict() {
    for (policy, obs) in every_input() {
        if policy.mode.is_mirror() {
            assert!(
                !matches!(decide(&policy, &obs), Decision::Conflict(_)),
                "{policy:?} {obs:?}"
            );
        }
    }
}

#[test]
fn mirror_modes_make_the_other_side_equal_to_the_authoritative_side() {
    for (policy, obs) in every_input() {
        let auth = match policy.mode {
            SyncMode::SourceToDestination => Src,
            SyncMode::DestinationToSource => Dst,
            _ => continue,
        };
        let (a, o) = match auth {
            Src => (obs.source, obs.destination),
            Dst => (obs.destination, obs.source),
        };
        let expect = if a == Unchanged && o == Unchanged {
            Decision::Nothing
        } else if a.is_present() && o.is_present() && obs.contents_equal == Some(true) {
            Decision::Record
        } else if a.is_present() {
            Decision::Copy(auth)
        } else if o.is_present() {
            Decision::Delete(auth.other())
        } else if a == Deleted || o == Deleted {
            Decision::Forget
        } else {
            Decision::Nothing
        };
        assert_eq!(decide(&policy, &obs), expect, "{policy:?} {obs:?}");
    }
}

#[test]
fn backup_modes_never_delete() {
    for (policy, obs) in every_input() {
        if matches!(
            policy.mode,
            SyncMode::SourceBackup | SyncMode::DestinationBackup
        ) {
            assert!(
                !matches!(decide(&policy, &obs), Decision::Delete(_)),
                "{policy:?} {obs:?}"
            );
        }
    }
}

#[test]
fn two_way_is_symmetric_under_swapping_sides() {
    let swap_strategy = |s: ConflictStrategy| match s {
        ConflictStrategy::SourceWins => ConflictStrategy::DestinationWins,
        ConflictStrategy::DestinationWins => ConflictStrategy::SourceWins,
        other => other,
    };
    let swap_pref = |p: InitialSyncPreference| match p {
        InitialSyncPreference::SourceWins => InitialSyncPreference::DestinationWins,
        InitialSyncPreference::DestinationWins => InitialSyncPreference::SourceWins,
        other => other,
    };
    let swap_decision = |d: Decision| match d {
        Decision::Copy(s) => Decision::Copy(s.other()),
        Decision::Delete(s) => Decision::Delete(s.other()),
        Decision::Conflict(Resolution::Winner(s)) => {
            Decision::Conflict(Resolution::Winner(s.other()))
        }
        other => other,
    };
    for (policy, obs) in every_input() {
        // NEWEST_WINS breaks ties towards the source on purpose: not symmetric.
        if policy.mode != SyncMode::TwoWay
            || !well_formed(&obs)
            || (policy.conflict == ConflictStrategy::NewestWins && obs.newer.is_none())
        {
            continue;
        }
        let swapped_policy = Policy {
            conflict: swap_strategy(policy.conflict),
            initial_preference: swap_pref(policy.initial_preference),
            ..policy
        };
        let swapped_obs = Observation {
            source: obs.destination,
            destination: obs.source,
            contents_equal: obs.contents_equal,
            newer: obs.newer.map(Side::other),
            settled: None,
        };
        assert_eq!(
            decide(&swapped_policy, &swapped_obs),
            swap_decision(decide(&policy, &obs)),
            "{policy:?} {obs:?}"
        );
    }
}

#[test]
fn source_to_destination_mirrors_destination_to_source() {
    let swap_decision = |d: Decision| match d {
        Decision::Copy(s) => Decision::Copy(s.other()),
        Decision::Delete(s) => Decision::Delete(s.other()),
        other => other,
    };
    for (policy, obs) in every_input() {
        if policy.mode != STD {
            continue;
        }
        let swapped = Observation {
            source: obs.destination,
            destination: obs.source,
            contents_equal: obs.contents_equal,
            newer: obs.newer.map(Side::other),
            settled: None,
        };
        let dts = Policy {
            mode: DTS,
            ..policy
        };
        assert_eq!(
            decide(&dts, &swapped),
            swap_decision(decide(&policy, &obs)),
            "{policy:?} {obs:?}"
        );
    }
}

/// The exhaustive property test: over every input, the decision respects the mode's
/// properties and never acts on a version that does not exist.
#[test]
fn every_decision_respects_the_mode_properties() {
    let mut checked = 0;
    for (policy, obs) in every_input() {
        let m = policy.mode;
        let (s, d) = (obs.source, obs.destination);
        let decision = decide(&policy, &obs);
        let ctx = format!("{m} {policy:?} {obs:?} -> {decision:?}");
        // Which side's version is written to the other, if any.
        let copies_from = match decision {
            Decision::Copy(side) | Decision::Conflict(Resolution::Winner(side)) => Some(side),
            _ => None,
        };
        match copies_from {
            Some(Src) => assert!(m.allows_upload(), "upload not allowed: {ctx}"),
            Some(Dst) => assert!(m.allows_download(), "download not allowed: {ctx}"),
            None => {}
        }
        if let Some(side) = copies_from {
            let present = if side == Src { s } else { d }.is_present();
            assert!(present, "copies a missing version: {ctx}");
        }
        match decision {
            Decision::Delete(Src) => {
                assert!(m.allows_source_delete(), "source delete not allowed: {ctx}");
                assert!(s.is_present(), "deletes a missing path: {ctx}");
            }
            Decision::Delete(Dst) => {
                assert!(
                    m.allows_destination_delete(),
                    "destination delete not allowed: {ctx}"
                );
                assert!(d.is_present(), "deletes a missing path: {ctx}");
            }
            Decision::Conflict(resolution) => {
                assert!(!m.is_mirror(), "conflict in a mirror mode: {ctx}");
                assert!(
                    s.is_present() && d.is_present(),
                    "conflict without two versions: {ctx}"
                );
                assert_ne!(
                    obs.contents_equal,
                    Some(true),
                    "conflict on equal contents: {ctx}"
                );
                if resolution == Resolution::KeepBoth {
                    // Both versions are synced to both sides: only a bidirectional mode can.
                    assert!(m.is_bidirectional(), "keep-both outside TWO_WAY: {ctx}");
                }
            }
            Decision::Record => {
                assert!(
                    s.is_present() && d.is_present(),
                    "record without two versions: {ctx}"
                );
                assert_eq!(
                    obs.contents_equal,
                    Some(true),
                    "record of different contents: {ctx}"
                );
            }
            Decision::Forget => {
                assert!(
                    !s.is_present() && !d.is_present(),
                    "forgets a present path: {ctx}"
                );
            }
            _ => {}
        }
        // A delete never destroys an edit the engine has not seen on both sides, outside the
        // mirror modes (where the authoritative side wins every difference) and the
        // authoritative initial-sync preferences of TWO_WAY (where one-sided files go).
        if let Decision::Delete(side) = decision {
            let victim = if side == Src { s } else { d };
            let authoritative_initial = m == SyncMode::TwoWay
                && policy.initial
                && victim == Added
                && policy.initial_preference != InitialSyncPreference::Merge;
            assert!(
                m.is_mirror() || victim == Unchanged || authoritative_initial,
                "delete destroys an unseen edit: {ctx}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 5 * 2 * 3 * 4 * 5 * 5 * 3 * 3);
}

// ---------------------------------------------------------------------------------------
// Settled deletions (SEMANTICS: "Settled deletions")
// ---------------------------------------------------------------------------------------

/// Decides with the default policy of `mode`, with `absent`'s absence settled in the base.
fn run_settled(mode: SyncMode, absent: Side, source: Change, destination: Change) -> Decision {
    decide(
        &Policy::new(mode),
        &Observation::new(source, destination).with_settled(absent),
    )
}

/// `(absent side's change, kept side's change)` as `(source, destination)`.
fn sides(absent: Side, absent_change: Change, kept_change: Change) -> (Change, Change) {
    match absent {
        Src => (absent_change, kept_change),
        Dst => (kept_change, absent_change),
    }
}

#[test]
fn settled_two_way_copies_the_kept_copy_back_never_deletes_it() {
    for absent in [Src, Dst] {
        for kept_change in [Unchanged, Modified] {
            let (s, d) = sides(absent, Absent, kept_change);
            assert_eq!(
                run_settled(SyncMode::TwoWay, absent, s, d),
                Decision::Copy(absent.other()),
                "{absent} {kept_change:?}"
            );
        }
    }
}

#[test]
fn settled_mirror_modes_treat_the_kept_copy_as_one_sided() {
    for kept_change in [Unchanged, Modified] {
        // Source-backup kept a copy on the destination; the source is authoritative: the
        // copy is an extra file on the destination and goes (through a normal delete).
        assert_eq!(
            run_settled(STD, Src, Absent, kept_change),
            Decision::Delete(Dst)
        );
        // The destination is authoritative: the copy is downloaded.
        assert_eq!(
            run_settled(DTS, Src, Absent, kept_change),
            Decision::Copy(Dst)
        );
        assert_eq!(
            run_settled(DTS, Dst, kept_change, Absent),
            Decision::Delete(Src)
        );
        assert_eq!(
            run_settled(STD, Dst, kept_change, Absent),
            Decision::Copy(Src)
        );
    }
}

#[test]
fn settled_backup_mode_of_the_deleting_side_keeps_the_copy_where_it_is() {
    assert_eq!(run_settled(SB, Src, Absent, Unchanged), Decision::Nothing);
    // An edit of the kept copy does not bring it back to the source: the base follows it.
    assert_eq!(
        run_settled(SB, Src, Absent, Modified),
        Decision::Settle(Src)
    );
    assert_eq!(run_settled(DB, Dst, Unchanged, Absent), Decision::Nothing);
    assert_eq!(
        run_settled(DB, Dst, Modified, Absent),
        Decision::Settle(Dst)
    );
}

#[test]
fn settled_other_backup_mode_backs_the_primary_copy_up() {
    // Settled under DESTINATION_BACKUP (the destination deleted, the source kept a copy),
    // now SOURCE_BACKUP: the source is primary, its file is uploaded.
    for kept_change in [Unchanged, Modified] {
        assert_eq!(
            run_settled(SB, Dst, kept_change, Absent),
            Decision::Copy(Src)
        );
        assert_eq!(
            run_settled(DB, Src, Absent, kept_change),
            Decision::Copy(Dst)
        );
    }
}

#[test]
fn settled_and_kept_copy_gone_is_forgotten_in_every_mode() {
    for mode in SyncMode::ALL {
        for absent in [Src, Dst] {
            let (s, d) = sides(absent, Absent, Deleted);
            assert_eq!(
                run_settled(mode, absent, s, d),
                Decision::Forget,
                "{mode} {absent}"
            );
        }
    }
}

#[test]
fn settled_new_file_after_the_kept_copy_went_is_an_ordinary_addition() {
    for mode in SyncMode::ALL {
        for absent in [Src, Dst] {
            let (s, d) = sides(absent, Added, Deleted);
            let (ps, pd) = sides(absent, Added, Absent);
            assert_eq!(
                run_settled(mode, absent, s, d),
                run(mode, ps, pd),
                "{mode} {absent}"
            );
            // Even while an initial preference would still apply: the path has a history.
            for pref in ALL_PREFERENCES {
                assert_eq!(
                    decide(
                        &initial(mode, pref),
                        &Observation::new(s, d).with_settled(absent)
                    ),
                    run(mode, ps, pd),
                    "{mode} {absent} {pref}"
                );
            }
        }
    }
}

#[test]
fn settled_new_file_on_the_deleting_side_keeps_the_path_and_sets_the_copy_aside() {
    // IMG_0001.JPG: the camera restarted its numbering on the source.
    for kept_change in [Unchanged, Modified] {
        for equal in [None, Some(false)] {
            let obs = |absent: Side| {
                let (s, d) = sides(absent, Added, kept_change);
                let mut o = Observation::new(s, d).with_settled(absent);
                o.contents_equal = equal;
                o
            };
            let dec = |mode: SyncMode, absent: Side| decide(&Policy::new(mode), &obs(absent));
            // The backup side keeps the old photo under a conflict name, settled.
            assert_eq!(dec(SB, Src), Decision::SetAside(Dst));
            assert_eq!(dec(DB, Dst), Decision::SetAside(Src));
            // TWO_WAY too (a later run copies the settled copy back, like any kept copy).
            assert_eq!(dec(SyncMode::TwoWay, Src), Decision::SetAside(Dst));
            assert_eq!(dec(SyncMode::TwoWay, Dst), Decision::SetAside(Src));
            // Settled under the other backup mode: the same rule.
            assert_eq!(dec(SB, Dst), Decision::SetAside(Src));
            // DESTINATION_BACKUP never uploads the new source file, and overwriting it with
            // the kept copy would undo a source addition: left alone.
            assert_eq!(dec(DB, Src), Decision::Nothing);
            // Mirrors: the authoritative side wins outright.
            assert_eq!(dec(STD, Src), Decision::Copy(Src));
            assert_eq!(dec(STD, Dst), Decision::Copy(Src));
            assert_eq!(dec(DTS, Src), Decision::Copy(Dst));
            assert_eq!(dec(DTS, Dst), Decision::Copy(Dst));
        }
        // The same photo came back: recorded as synced.
        for mode in SyncMode::ALL {
            for absent in [Src, Dst] {
                let (s, d) = sides(absent, Added, kept_change);
                let o = Observation::new(s, d).with_settled(absent).with_equal(true);
                assert_eq!(decide(&Policy::new(mode), &o), Decision::Record, "{mode}");
            }
        }
    }
}

/// Every settled observation the reconciler can produce, under every policy.
fn every_settled_input() -> Vec<(Policy, Observation)> {
    let mut all = Vec::new();
    for (policy, _) in every_input()
        .into_iter()
        .filter(|(_, o)| o.source == Absent && o.destination == Absent)
        .filter(|(_, o)| o.contents_equal.is_none() && o.newer.is_none())
    {
        for absent in [Src, Dst] {
            for absent_change in [Absent, Added] {
                for kept_change in [Unchanged, Modified, Deleted] {
                    for contents_equal in ALL_EQUAL {
                        for newer in ALL_NEWER {
                            let (s, d) = sides(absent, absent_change, kept_change);
                            let obs = Observation {
                                contents_equal,
                                newer,
                                ..Observation::new(s, d).with_settled(absent)
                            };
                            all.push((policy, obs));
                        }
                    }
                }
            }
        }
    }
    all
}

#[test]
fn every_settled_decision_respects_the_mode_and_never_deletes_outside_mirrors() {
    let mut checked = 0;
    for (policy, obs) in every_settled_input() {
        let m = policy.mode;
        let absent = obs.settled.unwrap();
        let decision = decide(&policy, &obs);
        let ctx = format!("{m} {policy:?} {obs:?} -> {decision:?}");
        let allows_copy_from = |side: Side| match side {
            Src => m.allows_upload(),
            Dst => m.allows_download(),
        };
        match decision {
            Decision::Copy(side) | Decision::Conflict(Resolution::Winner(side)) => {
                assert!(allows_copy_from(side), "copy not allowed: {ctx}");
                assert!(obs.change(side).is_present(), "copies nothing: {ctx}");
            }
            Decision::Delete(side) => {
                assert!(m.is_mirror(), "a settled deletion became a delete: {ctx}");
                assert!(obs.change(side).is_present(), "deletes nothing: {ctx}");
            }
            Decision::SetAside(kept) => {
                assert!(!m.is_mirror(), "set aside in a mirror: {ctx}");
                assert_eq!(kept, absent.other(), "{ctx}");
                assert_eq!(obs.change(absent), Added, "{ctx}");
                assert!(obs.change(kept).is_present(), "{ctx}");
                assert_ne!(obs.contents_equal, Some(true), "{ctx}");
                assert!(allows_copy_from(absent), "new file cannot be copied: {ctx}");
            }
            Decision::Settle(side) => {
                assert!(!m.is_mirror() && m != SyncMode::TwoWay, "{ctx}");
                assert_eq!(side, absent, "{ctx}");
            }
            Decision::Forget => assert!(
                !obs.source.is_present() && !obs.destination.is_present(),
                "{ctx}"
            ),
            Decision::Record => assert_eq!(obs.contents_equal, Some(true), "{ctx}"),
            Decision::Conflict(Resolution::KeepBoth) => panic!("keep-both: {ctx}"),
            Decision::Nothing => {}
        }
        // The initial preference and the conflict strategy play no part: a settled record
        // exists only once a plan has run.
        let plain = Policy {
            initial: false,
            initial_preference: InitialSyncPreference::Merge,
            conflict: ConflictStrategy::NewestWins,
            ..policy
        };
        assert_eq!(decide(&plain, &obs), decision, "{ctx}");
        checked += 1;
    }
    assert_eq!(checked, 5 * 2 * 3 * 4 * 2 * 2 * 3 * 3 * 3);
}

// ---------------------------------------------------------------------------------------
// Type changes (SEMANTICS: "Type changes")
// ---------------------------------------------------------------------------------------

fn type_change(
    mode: SyncMode,
    file_side: Side,
    file_decision: Decision,
    folder_after: [bool; 2],
) -> TypeDecision {
    decide_type_change(
        &Policy::new(mode),
        &TypeChange {
            file_side,
            file_decision,
            file_settled: None,
            folder_after,
        },
    )
}

/// `[file side, folder side]` as `[source, destination]`.
fn by_side(file_side: Side, on_file_side: bool, on_folder_side: bool) -> [bool; 2] {
    match file_side {
        Src => [on_file_side, on_folder_side],
        Dst => [on_folder_side, on_file_side],
    }
}

#[test]
fn type_change_file_replaced_by_folder_deletes_the_old_file() {
    // The folder side replaced `x` by `x/…`; the file side left `x` alone: `x` is deleted
    // there (an ordinary delete, run first) and the folder's files are copied over.
    for f in [Src, Dst] {
        assert_eq!(
            type_change(
                SyncMode::TwoWay,
                f,
                Decision::Delete(f),
                by_side(f, true, true)
            ),
            TypeDecision::Proceed
        );
    }
}

#[test]
fn type_change_folder_replaced_by_file_deletes_the_old_folder() {
    // The file side replaced `x/…` by `x`; the folder side left its files alone: they are
    // deleted there (run first) and `x` is copied over.
    for f in [Src, Dst] {
        assert_eq!(
            type_change(
                SyncMode::TwoWay,
                f,
                Decision::Copy(f),
                by_side(f, false, false)
            ),
            TypeDecision::Proceed
        );
    }
}

#[test]
fn type_change_with_an_edit_on_the_other_side_keeps_the_folder_and_a_conflict_copy() {
    for f in [Src, Dst] {
        // File replaced by a folder while the file side edited `x`: modify beats delete says
        // copy `x` back, the folder's files are copied to the file side too.
        let edited = by_side(f, true, true);
        assert_eq!(
            type_change(SyncMode::TwoWay, f, Decision::Copy(f), edited),
            TypeDecision::MoveAside {
                share: true,
                settled: false
            }
        );
        // Folder replaced by a file while the folder side edited a file in it: the edit is
        // restored to the file side and stays on the folder side.
        assert_eq!(
            type_change(
                SyncMode::TwoWay,
                f,
                Decision::Copy(f),
                by_side(f, true, true)
            ),
            TypeDecision::MoveAside {
                share: true,
                settled: false
            }
        );
        // Only the folder side keeps something below `x/` (nothing arrives on the file
        // side), while `x` is copied there: still both.
        assert_eq!(
            type_change(
                SyncMode::TwoWay,
                f,
                Decision::Copy(f),
                by_side(f, false, true)
            ),
            TypeDecision::MoveAside {
                share: true,
                settled: false
            }
        );
        // Both added (no base): the same.
        assert_eq!(
            type_change(
                SyncMode::TwoWay,
                f,
                Decision::Copy(f),
                by_side(f, true, true)
            ),
            TypeDecision::MoveAside {
                share: true,
                settled: false
            }
        );
    }
}

#[test]
fn type_change_in_mirror_modes_follows_the_authoritative_side() {
    // STD, the source holds `x`: `x` is copied, the destination's folder deleted.
    assert_eq!(
        type_change(STD, Src, Decision::Copy(Src), [false, false]),
        TypeDecision::Proceed
    );
    // STD, the source holds `x/…`: the destination's `x` is deleted.
    assert_eq!(
        type_change(STD, Dst, Decision::Delete(Dst), [true, true]),
        TypeDecision::Proceed
    );
    assert_eq!(
        type_change(DTS, Dst, Decision::Copy(Dst), [false, false]),
        TypeDecision::Proceed
    );
    assert_eq!(
        type_change(DTS, Src, Decision::Delete(Src), [true, true]),
        TypeDecision::Proceed
    );
    // The mirror's folder keeps members it cannot delete (unknown ones): the authoritative
    // file is neither written there nor renamed at home.
    assert_eq!(
        type_change(STD, Src, Decision::Copy(Src), [false, true]),
        TypeDecision::Hold
    );
    assert_eq!(
        type_change(DTS, Dst, Decision::Copy(Dst), [true, false]),
        TypeDecision::Hold
    );
}

#[test]
fn type_change_in_backup_modes_keeps_everything() {
    // SOURCE_BACKUP, the source replaced file `x` by a folder: the destination's backup of
    // `x` is the kept copy of a settled deletion; it moves aside and stays there.
    let t = TypeChange {
        file_side: Dst,
        file_decision: Decision::Settle(Src),
        file_settled: None,
        folder_after: [true, true],
    };
    assert_eq!(
        decide_type_change(&Policy::new(SB), &t),
        TypeDecision::MoveAside {
            share: false,
            settled: true
        }
    );
    // The same on a later run (already settled, nothing to decide for `x`).
    let later = TypeChange {
        file_decision: Decision::Nothing,
        file_settled: Some(Src),
        ..t
    };
    assert_eq!(
        decide_type_change(&Policy::new(SB), &later),
        TypeDecision::MoveAside {
            share: false,
            settled: true
        }
    );
    // SOURCE_BACKUP, the source replaced folder `x/` by a file: the destination keeps the
    // backups below `x/`; the new file is uploaded under a conflict name.
    assert_eq!(
        type_change(SB, Src, Decision::Copy(Src), [false, true]),
        TypeDecision::MoveAside {
            share: true,
            settled: false
        }
    );
    // DESTINATION_BACKUP never uploads: a source file in the way of a downloaded folder
    // moves aside on the source only.
    assert_eq!(
        type_change(DB, Src, Decision::Nothing, [true, true]),
        TypeDecision::MoveAside {
            share: false,
            settled: false
        }
    );
}

#[test]
fn type_change_never_moves_aside_without_a_clash() {
    // Exhaustive over decisions and folder outcomes: a move aside happens exactly when the
    // file and something below its name would end up on the same side.
    let decisions = [
        Decision::Nothing,
        Decision::Record,
        Decision::Forget,
        Decision::Copy(Src),
        Decision::Copy(Dst),
        Decision::Delete(Src),
        Decision::Delete(Dst),
        Decision::Settle(Src),
        Decision::Settle(Dst),
    ];
    for mode in SyncMode::ALL {
        for f in [Src, Dst] {
            for decision in decisions {
                for after in [[false, false], [true, false], [false, true], [true, true]] {
                    let got = type_change(mode, f, decision, after);
                    let on = |side: Side| if side == Src { after[0] } else { after[1] };
                    let file_on_f = decision != Decision::Delete(f);
                    let file_on_other = decision == Decision::Copy(f);
                    let clash = (file_on_f && on(f)) || (file_on_other && on(f.other()));
                    assert_eq!(
                        got != TypeDecision::Proceed,
                        clash,
                        "{mode} {f} {decision:?} {after:?}"
                    );
                    if let TypeDecision::MoveAside { share, .. } = got
                        && share
                    {
                        let allowed = if f == Src {
                            mode.allows_upload()
                        } else {
                            mode.allows_download()
                        };
                        assert!(allowed, "shares against the mode: {mode} {f} {decision:?}");
                    }
                }
            }
        }
    }
}
