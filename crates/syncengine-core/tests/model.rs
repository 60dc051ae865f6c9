//! Model-based state-machine test of the engine (issue 8's test kit).
//!
//! Random schedules of user operations on both sides of a pair of `MemoryClient`s,
//! interleaved with runs in random modes (mode switches included), conflict strategies and
//! initial preferences, some of them with faults injected by [`FaultClient`] (errors, lost
//! replies, short/corrupt/failing reads and write bodies, failing listings, cancellation at a
//! random call). After every run the result is checked against a **reference model written
//! from SEMANTICS.md and the seed's tables; it calls no engine code** (not `decide`, not the
//! reconciler). The model keeps its own base — per path, the *set* of records the engine may
//! hold (a faulted run may or may not have recorded a no-op settle) — and predicts, per path,
//! the outcomes a run may have.
//!
//! Properties checked after every run:
//! - **registry**: every file on either side, and every file in a trash, holds exactly a
//!   version some user wrote (contents are unique per version, so a torn, short or corrupted
//!   copy is caught);
//! - **no version lost**: every version that was on a side or in a trash before a run is on
//!   a side or in a trash after it (trash is on for both sides);
//! - **Unison's invariants**: after a fault-free run every path holds the outcome the model
//!   predicts; after a faulted run every path holds its old state or a predicted one (the
//!   base moves only for paths that reached a predicted outcome: later runs are predicted
//!   from it, which checks what the engine recorded);
//! - **conflicts**: every predicted losing version is kept in a conflict copy on the
//!   predicted sides, and no conflict copy appears that the model did not predict;
//! - **no garbage**: no new path appears other than predicted conflict copies;
//! - **idle**: after a fault-free run, a dry run in the same mode plans nothing;
//! - **convergence**: every schedule ends with a fault-free two-way run, after which both
//!   sides are equal.
//!
//! The generator has switches per operation kind and per fault kind ([`Kinds`]); the CI run
//! enables the kinds whose behaviours are fixed on main (see [`Kinds::ci`]); the others are
//! listed there with the reason, and `scripts/model-campaign.sh` runs everything at length.
//!
//! Environment: `MODEL_CASES` or `PROPTEST_CASES` (default 300), `MODEL_SEED` or
//! `PROPTEST_RNG_SEED` (default fixed), `MODEL_KINDS` (`ci` or `all`, or a comma list of
//! kind names added to the CI kinds), `MODEL_CONTINUE=1` (count every failing schedule
//! instead of stopping at the first), `MODEL_REPORT=<file>` (append each minimal failing
//! schedule there).
#![cfg(feature = "testing")]
// Test code: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Counters for the summary line: runs, faulted runs, injected faults, cancelled and crashed
/// runs (so a campaign shows that its faults fired).
static RUNS: AtomicU64 = AtomicU64::new(0);
static FAULTED_RUNS: AtomicU64 = AtomicU64::new(0);
static INJECTED: AtomicU64 = AtomicU64::new(0);
static CANCELLED: AtomicU64 = AtomicU64::new(0);
static CRASHED: AtomicU64 = AtomicU64::new(0);

use bytes::Bytes;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use syncengine_core::testing::{Fault, FaultClient, FaultConfig, QuirkClient};
use syncengine_core::{
    ConflictStrategy, InitialSyncPreference, MemoryClient, Recovery, RelPath, Side, StorageClient,
    StorageClientExt, SyncEngine, SyncMode, SyncOptions, SyncPair,
};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------
// Switches
// ---------------------------------------------------------------------------------------

/// What the generator may produce. One switch per operation kind and per fault kind.
#[derive(Clone, Debug)]
struct Kinds {
    add: bool,
    edit: bool,
    delete: bool,
    rename: bool,
    /// A file replaced by a folder and the reverse; both sides refuse a file where a folder
    /// is, as disks do (behaviour 10).
    type_change: bool,
    /// The destination folds letter case, and users make names differing only in case
    /// (behaviour 9).
    case_fold: bool,
    /// Freed inode numbers and birth times are reused (both memory clients), and users
    /// delete a file and create another of the same size and mtime (behaviour 3).
    inode_reuse: bool,
    /// Files list like on a WebDAV server (ETag from size and mtime, no hash), users make
    /// edits that keep size and mtime, and runs use `--checksum` (behaviour 6). The source
    /// reads locally and the destination does not (local disk ↔ WebDAV): as decided (README,
    /// `--checksum`; SEMANTICS: "hashes kept in the base"), such an edit is seen on the source
    /// (hashed every run, compared with the hash the base keeps) and not on the destination
    /// (remote files are never downloaded to be hashed, as with rclone), except where both
    /// sides changed (their contents are then hashed before they are called equal).
    same_size_mtime: bool,
    /// Runs change mode within a schedule (settled deletions meet other modes: behaviour 1).
    mode_switch: bool,
    /// First-run preferences other than merge (behaviour 4).
    initial_prefs: bool,
    /// Conflict strategies other than the default (newest wins).
    strategies: bool,
    /// A file or folder a listing cannot see for one run (a folder swapped for a symlink,
    /// an unreadable folder, a name that cannot be read: behaviour 8): nothing at or below it
    /// changes on either side, and the base keeps what it had.
    unlisted: bool,
    /// Fault kinds that runs may get (empty: no faulted runs).
    faults: Vec<Fault>,
    /// Cancellation at a random call of a faulted run.
    cancel: bool,
    /// A crash at a random call of a faulted run: the run's future is dropped there, as in
    /// a killed process (behaviours 5 and 12).
    crash: bool,
    /// Users may change files between a faulted run and the next run (behaviour 12: an
    /// interrupted copy must not turn the next edit into a conflict). When off, every faulted
    /// run is followed at once by a fault-free run of the same spec.
    edit_after_crash: bool,
    /// Runs use the default recovery (`Recovery::Auto`) instead of forcing a trash on both
    /// sides: every delete and overwrite must still be recoverable (behaviour 13).
    default_recovery: bool,
    /// Check that a path is never absent after a failed or cancelled overwrite (behaviour 5).
    check_never_absent: bool,
    /// Check that a kept conflict loser reaches the other side in the same run where the
    /// mode copies additions that way (behaviour 12), hence idle right after a conflict.
    check_same_run_spread: bool,
    /// Check that a run that ended normally with per-file errors consumes `--initial`
    /// (behaviour 4).
    check_initial_once: bool,
}

impl Kinds {
    fn all() -> Self {
        Kinds {
            add: true,
            edit: true,
            delete: true,
            rename: true,
            type_change: true,
            case_fold: true,
            inode_reuse: true,
            same_size_mtime: true,
            mode_switch: true,
            initial_prefs: true,
            strategies: true,
            unlisted: true,
            faults: vec![
                Fault::Error,
                Fault::Transient,
                Fault::ErrorAfter,
                Fault::ShortRead,
                Fault::CorruptRead,
                Fault::ReadErrorMidStream,
                Fault::WriteBodyError,
                Fault::ListError,
            ],
            cancel: true,
            crash: true,
            edit_after_crash: true,
            default_recovery: true,
            check_never_absent: true,
            check_same_run_spread: true,
            check_initial_once: true,
        }
    }

    /// The kinds the CI-sized run enables: every kind whose behaviour is fixed on main
    /// (mode switches with settled deletions, behaviour 1, and the initial preference that
    /// applies once, behaviour 4, since 1eedbeb), with errors, lost replies, failing reads,
    /// write bodies and listings, cancellations and crashes (each faulted run followed by
    /// whatever the schedule does next: user changes, other modes, more faults); confirmed
    /// renames with reused inodes and birth times (behaviour 3), the default recovery (trash
    /// on every side, behaviour 13), kept conflict losers (set-aside kept copies of settled
    /// deletions included) reaching the other side in the run that made them (behaviour 12,
    /// second sentence), short and corrupt reads (behaviour 7: transfers and the engine's own
    /// files are read verified), and users changing files between a faulted run and the next
    /// (behaviour 12: a copy that landed is recognised while its side still holds it; an edit
    /// of it before the next run may be a conflict, with both versions kept), and type
    /// changes on sides that refuse a file where a folder is (behaviour 10).
    ///
    /// Off, and why (see /work/notes/testkit-findings.md for the reproducing schedules):
    /// - `check_never_absent`: behaviour 5 — 0 of 700 (seed 6107) and of 300 (seeds 44, 55)
    ///   fail, but with the CI kinds seed 66 ends in a conflict copy the model does not
    ///   predict after a destination-backup run cancelled early (not analysed yet);
    /// - `same_size_mtime`: behaviour 6 — a file the engine has just written, renamed or
    ///   kept under a conflict name on a side that reads locally gets no hash in the base
    ///   where the listing gave none, so an edit keeping size and mtime before the next run
    ///   is never seen (finding F13, executor; the remote side's limit, F10, is decided and
    ///   modelled);
    /// - `Fault::ListTruncated` is never on: a listing that ends early without an error looks
    ///   complete to any client, so the model cannot say what the engine should do; the fault
    ///   client's own tests cover it, and the trash keeps what such a run deletes.
    fn ci() -> Self {
        Kinds {
            same_size_mtime: false,
            faults: vec![
                Fault::Error,
                Fault::Transient,
                Fault::ListError,
                Fault::ErrorAfter,
                Fault::ReadErrorMidStream,
                Fault::WriteBodyError,
                Fault::ShortRead,
                Fault::CorruptRead,
            ],
            check_never_absent: false,
            ..Kinds::all()
        }
    }

    fn from_env() -> Self {
        let spec = std::env::var("MODEL_KINDS").unwrap_or_else(|_| "ci".into());
        match spec.as_str() {
            "ci" => Kinds::ci(),
            "all" => Kinds::all(),
            list => {
                let mut k = Kinds::ci();
                for name in list.split(',').map(str::trim) {
                    match name {
                        "mode_switch" => k.mode_switch = true,
                        "type_change" => k.type_change = true,
                        "case_fold" => k.case_fold = true,
                        "inode_reuse" => k.inode_reuse = true,
                        "same_size_mtime" => k.same_size_mtime = true,
                        "initial_prefs" => k.initial_prefs = true,
                        "unlisted" => k.unlisted = true,
                        "cancel" => k.cancel = true,
                        "crash" => k.crash = true,
                        "edit_after_crash" => k.edit_after_crash = true,
                        "default_recovery" => k.default_recovery = true,
                        "never_absent" => k.check_never_absent = true,
                        "same_run_spread" => k.check_same_run_spread = true,
                        "initial_once" => k.check_initial_once = true,
                        "ErrorAfter" => k.faults.push(Fault::ErrorAfter),
                        "ShortRead" => k.faults.push(Fault::ShortRead),
                        "CorruptRead" => k.faults.push(Fault::CorruptRead),
                        "ReadErrorMidStream" => k.faults.push(Fault::ReadErrorMidStream),
                        "WriteBodyError" => k.faults.push(Fault::WriteBodyError),
                        // The list adds to the CI kinds already.
                        "" | "ci" => {}
                        other => panic!("MODEL_KINDS: unknown kind {other:?}"),
                    }
                }
                k
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------

/// Names users create. Few, so operations collide often.
const POOL: [&str; 6] = ["a", "b.txt", "c/d", "c/e.txt", "f/g/h", "r.txt"];
/// Names that collide with pool names on a case-insensitive side.
const CASE_POOL: [&str; 2] = ["A", "B.txt"];
/// Children of a file turned into a folder.
const CHILDREN: [&str; 2] = ["x", "y.txt"];
/// Paths a listing may fail to see for a run: files and folders of the pool.
const HIDE_POOL: [&str; 5] = ["a", "c", "c/d", "f/g", "r.txt"];
/// Content lengths: few, so edits often keep the size.
const LENS: [usize; 3] = [3, 8, 20];

#[derive(Clone, Debug)]
enum Step {
    /// Writes a new version at a pool path (an overwrite if something is there).
    Add { side: Side, path: usize, len: usize },
    /// Writes a new version over an existing file.
    Edit {
        side: Side,
        pick: prop::sample::Index,
        len: usize,
    },
    /// Deletes an existing file.
    Delete {
        side: Side,
        pick: prop::sample::Index,
    },
    /// Renames an existing file to a free pool path.
    Rename {
        side: Side,
        pick: prop::sample::Index,
        to: usize,
    },
    /// Writes a new version at a name that differs from a pool name only in case.
    AddCase { side: Side, path: usize, len: usize },
    /// Replaces an existing file by a folder holding one new file.
    FileToFolder {
        side: Side,
        pick: prop::sample::Index,
        child: usize,
        len: usize,
    },
    /// Replaces the folder of an existing file (all of it) by a new file.
    FolderToFile {
        side: Side,
        pick: prop::sample::Index,
        len: usize,
    },
    /// Deletes an existing file, then creates a new one of the same size and mtime at a free
    /// pool path (it may get the freed inode).
    DeleteThenCreate {
        side: Side,
        pick: prop::sample::Index,
        to: usize,
    },
    /// Writes a new version with the size and mtime of the old one.
    EditKeep {
        side: Side,
        pick: prop::sample::Index,
    },
    /// Makes a pool path (a file or a folder, present or not) invisible to the next run's
    /// listing of one side, as a symlink or an unreadable folder is.
    Hide { side: Side, path: usize },
    /// Runs the engine.
    Run(RunSpec),
}

#[derive(Clone, Debug)]
struct RunSpec {
    mode: SyncMode,
    strategy: ConflictStrategy,
    initial: Option<InitialSyncPreference>,
    fault: Option<FaultSpec>,
}

#[derive(Clone, Debug)]
struct FaultSpec {
    seed: u64,
    /// Percent of calls that get a fault.
    rate: u8,
    /// Which sides are wrapped: 1 source, 2 destination, 3 both.
    sides: u8,
    /// Cancel at this call of each wrapped client.
    cancel_at: Option<u16>,
    /// The cancellations crash the run instead: the engine's future is dropped at the await
    /// where the cancel happens (nothing of the run's own clean-up runs).
    crash: bool,
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Source), Just(Side::Destination)]
}

fn run_spec(kinds: &Kinds) -> impl Strategy<Value = RunSpec> + use<> {
    let modes: Vec<SyncMode> = if kinds.mode_switch {
        SyncMode::ALL.to_vec()
    } else {
        vec![SyncMode::TwoWay]
    };
    let strategies: Vec<ConflictStrategy> = if kinds.strategies {
        vec![
            ConflictStrategy::NewestWins,
            ConflictStrategy::SourceWins,
            ConflictStrategy::DestinationWins,
            ConflictStrategy::KeepBoth,
        ]
    } else {
        vec![ConflictStrategy::NewestWins]
    };
    let prefs: Vec<Option<InitialSyncPreference>> = if kinds.initial_prefs {
        vec![
            None,
            Some(InitialSyncPreference::Merge),
            Some(InitialSyncPreference::SourceWins),
            Some(InitialSyncPreference::DestinationWins),
        ]
    } else {
        vec![None]
    };
    let faulted = !kinds.faults.is_empty() || kinds.cancel || kinds.crash;
    let cancel = kinds.cancel || kinds.crash;
    let (cancel_on, crash_on) = (kinds.cancel, kinds.crash);
    let fault = (
        any::<u64>(),
        1u8..40,
        1u8..=3,
        0u16..12,
        prop::bool::weighted(0.7),
        any::<bool>(),
    )
        .prop_map(move |(seed, rate, sides, at, cancels, crashes)| FaultSpec {
            seed,
            rate,
            sides,
            cancel_at: (cancel && cancels).then_some(at),
            // With both on, half the cancellations are crashes.
            crash: crash_on && (!cancel_on || crashes),
        });
    let fault = if faulted {
        prop_oneof![2 => Just(None), 1 => fault.prop_map(Some)].boxed()
    } else {
        Just(None).boxed()
    };
    (
        prop::sample::select(modes),
        prop::sample::select(strategies),
        prop::sample::select(prefs),
        fault,
    )
        .prop_map(|(mode, strategy, initial, fault)| RunSpec {
            mode,
            strategy,
            initial,
            fault,
        })
}

fn step(kinds: &Kinds) -> BoxedStrategy<Step> {
    let len = || prop::sample::select(LENS.to_vec());
    let mut options: Vec<(u32, BoxedStrategy<Step>)> = Vec::new();
    if kinds.add {
        options.push((
            4,
            (side(), 0..POOL.len(), len())
                .prop_map(|(side, path, len)| Step::Add { side, path, len })
                .boxed(),
        ));
    }
    if kinds.edit {
        options.push((
            3,
            (side(), any::<prop::sample::Index>(), len())
                .prop_map(|(side, pick, len)| Step::Edit { side, pick, len })
                .boxed(),
        ));
    }
    if kinds.delete {
        options.push((
            2,
            (side(), any::<prop::sample::Index>())
                .prop_map(|(side, pick)| Step::Delete { side, pick })
                .boxed(),
        ));
    }
    if kinds.rename {
        options.push((
            2,
            (side(), any::<prop::sample::Index>(), 0..POOL.len())
                .prop_map(|(side, pick, to)| Step::Rename { side, pick, to })
                .boxed(),
        ));
    }
    if kinds.case_fold {
        options.push((
            2,
            (side(), 0..CASE_POOL.len(), len())
                .prop_map(|(side, path, len)| Step::AddCase { side, path, len })
                .boxed(),
        ));
    }
    if kinds.type_change {
        options.push((
            1,
            (
                side(),
                any::<prop::sample::Index>(),
                0..CHILDREN.len(),
                len(),
            )
                .prop_map(|(side, pick, child, len)| Step::FileToFolder {
                    side,
                    pick,
                    child,
                    len,
                })
                .boxed(),
        ));
        options.push((
            1,
            (side(), any::<prop::sample::Index>(), len())
                .prop_map(|(side, pick, len)| Step::FolderToFile { side, pick, len })
                .boxed(),
        ));
    }
    if kinds.inode_reuse {
        options.push((
            2,
            (side(), any::<prop::sample::Index>(), 0..POOL.len())
                .prop_map(|(side, pick, to)| Step::DeleteThenCreate { side, pick, to })
                .boxed(),
        ));
    }
    if kinds.same_size_mtime {
        options.push((
            2,
            (side(), any::<prop::sample::Index>())
                .prop_map(|(side, pick)| Step::EditKeep { side, pick })
                .boxed(),
        ));
    }
    if kinds.unlisted {
        options.push((
            1,
            (side(), 0..HIDE_POOL.len())
                .prop_map(|(side, path)| Step::Hide { side, path })
                .boxed(),
        ));
    }
    options.push((3, run_spec(kinds).prop_map(Step::Run).boxed()));
    prop::strategy::Union::new_weighted(options).boxed()
}

fn schedule(kinds: &Kinds) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(kinds), 1..24)
}

// ---------------------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------------------

type Ver = u64;

/// Every version any user wrote: unique content, so a file's bytes name its version.
#[derive(Default)]
struct Registry {
    by_bytes: BTreeMap<Bytes, Ver>,
    mtimes: Vec<SystemTime>,
    lens: Vec<usize>,
}

impl Registry {
    fn new_version(&mut self, len: usize) -> (Ver, Bytes, SystemTime) {
        let id = self.mtimes.len() as Ver;
        let mut text = format!("<{id}:{len}:");
        while text.len() < len + 12 {
            text.push(char::from(b'a' + (id % 26) as u8));
        }
        text.push('>');
        let bytes = Bytes::from(text);
        // Whole seconds, each version one second newer: newest-wins has a clear answer.
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + id);
        self.by_bytes.insert(bytes.clone(), id);
        self.mtimes.push(mtime);
        self.lens.push(len);
        (id, bytes, mtime)
    }

    /// A new version with the size and modification time of `like`.
    fn new_version_like(&mut self, like: Ver) -> (Ver, Bytes, SystemTime) {
        let (len, mtime) = (self.lens[like as usize], self.mtimes[like as usize]);
        let (id, bytes, _) = self.new_version(len);
        self.mtimes[id as usize] = mtime;
        (id, bytes, mtime)
    }
}

/// One side as the model reads it: live files and trashed files, by version.
#[derive(Clone, Debug, Default, PartialEq)]
struct View {
    live: BTreeMap<String, Ver>,
    trash: BTreeMap<String, Ver>,
}

fn is_internal(path: &str) -> bool {
    path == ".syncengine" || path.starts_with(".syncengine/")
}

/// Reads a client; bytes that are no user's version are reported as violations.
fn view(client: &MemoryClient, reg: &Registry, label: &str, violations: &mut Vec<String>) -> View {
    let mut v = View::default();
    for (path, bytes) in client.files() {
        let path = path.to_string();
        let in_trash = path.starts_with(".syncengine/trash/");
        if is_internal(&path) && !in_trash {
            continue; // the engine's own files (ids, …)
        }
        match reg.by_bytes.get(&bytes) {
            Some(ver) => {
                if in_trash {
                    v.trash.insert(path, *ver);
                } else {
                    v.live.insert(path, *ver);
                }
            }
            None => violations.push(format!(
                "[registry] {label} {path}: content is no version a user wrote (torn, short or corrupt): {:?}",
                String::from_utf8_lossy(&bytes)
            )),
        }
    }
    v
}

// ---------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------

/// A base record as SEMANTICS defines it: per side, the version when the pair last settled
/// the path, or `None` for a settled absence. No record at all is `Rec = None`.
type Rec = Option<(Option<Ver>, Option<Ver>)>;

/// How one side changed against the base.
#[derive(Clone, Copy, Debug, PartialEq)]
enum St {
    /// Absent now, and absent (or settled absent) in the base.
    Nothing,
    /// Present now, no record of this side (or no record at all).
    Added(Ver),
    /// Present now where the base holds a settled absence of this side.
    AddedAtSettled(Ver),
    Unchanged(Ver),
    Modified(Ver),
    Deleted,
}

impl St {
    fn of(cur: Option<Ver>, rec: Rec, side: Side) -> St {
        let base = rec.map(|(s, d)| match side {
            Side::Source => s,
            Side::Destination => d,
        });
        match (cur, base) {
            (None, None | Some(None)) => St::Nothing,
            (Some(v), None) => St::Added(v),
            (Some(v), Some(None)) => St::AddedAtSettled(v),
            (None, Some(Some(_))) => St::Deleted,
            (Some(v), Some(Some(b))) if v == b => St::Unchanged(v),
            (Some(v), Some(Some(_))) => St::Modified(v),
        }
    }
    fn changed(self) -> Option<Ver> {
        match self {
            St::Added(v) | St::AddedAtSettled(v) | St::Modified(v) => Some(v),
            _ => None,
        }
    }
    fn cur(self) -> Option<Ver> {
        match self {
            St::Added(v) | St::AddedAtSettled(v) | St::Modified(v) | St::Unchanged(v) => Some(v),
            _ => None,
        }
    }
}

/// Where a kept conflict loser must be after the run.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Spread {
    /// On both sides, under the same conflict name.
    Both,
    /// On the loser's side (the other side may have it too).
    LoserSide,
    /// Kept either as a conflict copy or in the trash: the model does not say which.
    Optional,
}

#[derive(Clone, Debug, PartialEq)]
struct Loser {
    ver: Ver,
    side: Side,
    spread: Spread,
    /// The conflict copy's base record: settled absence on the other side (a kept copy's
    /// conflict copy "inherits the settled absence").
    settled: bool,
}

/// One outcome a run may have for a path.
#[derive(Clone, Debug, PartialEq)]
struct Outcome {
    s: Option<Ver>,
    d: Option<Ver>,
    rec: Rec,
    losers: Vec<Loser>,
}

impl Outcome {
    /// The version the outcome puts on `side`.
    fn on(&self, side: Side) -> Option<Ver> {
        match side {
            Side::Source => self.s,
            Side::Destination => self.d,
        }
    }
}

fn out(s: Option<Ver>, d: Option<Ver>) -> Outcome {
    // Both present: the base records them; one side absent: a settled absence is recorded
    // only where a rule says so (callers use `settled`).
    let rec = match (s, d) {
        (None, None) => None,
        (Some(a), Some(b)) => Some((Some(a), Some(b))),
        _ => None,
    };
    Outcome {
        s,
        d,
        rec,
        losers: Vec::new(),
    }
}

fn settled(s: Option<Ver>, d: Option<Ver>) -> Outcome {
    Outcome {
        rec: Some((s, d)),
        ..out(s, d)
    }
}

fn with_loser(mut o: Outcome, ver: Ver, side: Side, spread: Spread, settled: bool) -> Outcome {
    o.losers.push(Loser {
        ver,
        side,
        spread,
        settled,
    });
    o
}

/// What the model knows about a run's circumstances.
struct Ctx<'a> {
    mode: SyncMode,
    initial: bool,
    pref: InitialSyncPreference,
    strategy: ConflictStrategy,
    reg: &'a Registry,
    same_run_spread: bool,
}

impl Ctx<'_> {
    fn spread(&self) -> Spread {
        if self.same_run_spread {
            Spread::Both
        } else {
            Spread::LoserSide
        }
    }

    /// The winner of a two-way conflict between `v` (source) and `w` (destination), or
    /// `None` for keep-both.
    fn winner(&self, v: Ver, w: Ver) -> Option<Side> {
        match self.strategy {
            ConflictStrategy::SourceWins => Some(Side::Source),
            ConflictStrategy::DestinationWins => Some(Side::Destination),
            ConflictStrategy::KeepBoth => None,
            _ => {
                let (ms, md) = (self.reg.mtimes[v as usize], self.reg.mtimes[w as usize]);
                // Newer wins; a tie goes to the source.
                Some(if md > ms {
                    Side::Destination
                } else {
                    Side::Source
                })
            }
        }
    }

    /// A two-way conflict between `v` (source) and `w` (destination).
    fn conflict(&self, v: Ver, w: Ver) -> Outcome {
        match self.winner(v, w) {
            Some(Side::Source) => with_loser(
                out(Some(v), Some(v)),
                w,
                Side::Destination,
                self.spread(),
                false,
            ),
            Some(Side::Destination) => {
                with_loser(out(Some(w), Some(w)), v, Side::Source, self.spread(), false)
            }
            None => {
                // Keep both: no winner, both versions under conflict names on both sides.
                let o = with_loser(out(None, None), v, Side::Source, Spread::Both, false);
                with_loser(o, w, Side::Destination, Spread::Both, false)
            }
        }
    }

    /// Every outcome SEMANTICS allows for one path.
    fn predict(&self, rec: Rec, s_cur: Option<Ver>, d_cur: Option<Ver>) -> Vec<Outcome> {
        let s = St::of(s_cur, rec, Side::Source);
        let d = St::of(d_cur, rec, Side::Destination);
        let (sv, dv) = (s.cur(), d.cur());
        use St::*;

        // Both sides hold the same version: nothing to do, the base records it.
        if let (Some(a), Some(b)) = (sv, dv)
            && a == b
        {
            return vec![out(sv, dv)];
        }
        // Neither side changed as the engine sees it (an edit that kept size and mtime where
        // content is not compared: see `World::as_seen`): nothing to do, in every mode.
        if let (Unchanged(_), Unchanged(_)) = (s, d) {
            return vec![out(sv, dv)];
        }
        // The preference is for paths the pair has no record of (SEMANTICS: "Initial sync
        // (no base for the pair)"). A first run that was cancelled or crashed may have
        // recorded some paths; an edit of one since is an ordinary change.
        if self.initial && self.mode == SyncMode::TwoWay && rec.is_none() {
            match self.pref {
                InitialSyncPreference::SourceWins => {
                    let mut o = out(sv, sv);
                    if let Some(w) = dv {
                        o = with_loser(o, w, Side::Destination, Spread::Optional, false);
                    }
                    return vec![o];
                }
                InitialSyncPreference::DestinationWins => {
                    let mut o = out(dv, dv);
                    if let Some(v) = sv {
                        o = with_loser(o, v, Side::Source, Spread::Optional, false);
                    }
                    return vec![o];
                }
                _ => {}
            }
        }
        match self.mode {
            SyncMode::SourceToDestination => vec![out(sv, sv)],
            SyncMode::DestinationToSource => vec![out(dv, dv)],
            SyncMode::TwoWay => vec![match (s, d) {
                (Nothing | Deleted, Nothing | Deleted) => out(None, None),
                (Unchanged(v), Nothing) => out(Some(v), Some(v)), // a kept copy is copied back
                (Nothing, Unchanged(w)) => out(Some(w), Some(w)),
                (Deleted, Unchanged(_)) | (Unchanged(_), Deleted) => out(None, None),
                (Deleted, _) => out(dv, dv), // modify beats delete
                (_, Deleted) => out(sv, sv),
                // A new file where a kept copy was: the new file keeps the path, the kept
                // copy (edited since or not: SEMANTICS' rule does not depend on it, nor does
                // the engine's) becomes a conflict copy. It inherits the settled absence, which
                // TWO_WAY copies back (the `(Unchanged, Nothing)` rows above): so it reaches
                // the other side in the same run (behaviour 12), not one run later.
                (AddedAtSettled(v), Unchanged(k) | Modified(k)) => with_loser(
                    out(Some(v), Some(v)),
                    k,
                    Side::Destination,
                    self.spread(),
                    false,
                ),
                (Unchanged(k) | Modified(k), AddedAtSettled(w)) => {
                    with_loser(out(Some(w), Some(w)), k, Side::Source, self.spread(), false)
                }
                (_, Nothing) | (_, Unchanged(_)) if s.changed().is_some() => out(sv, sv),
                (Nothing, _) | (Unchanged(_), _) if d.changed().is_some() => out(dv, dv),
                _ => match (sv, dv) {
                    (Some(v), Some(w)) => self.conflict(v, w),
                    _ => out(sv.or(dv), sv.or(dv)),
                },
            }],
            SyncMode::SourceBackup => match (s, d) {
                (Nothing | Deleted, Nothing | Deleted) => vec![out(None, None)],
                // Settled: the kept copy stays on the destination only.
                (Nothing, Unchanged(w)) => vec![settled(None, Some(w))],
                (Nothing, Modified(w)) => vec![out(Some(w), Some(w)), settled(None, Some(w))],
                (Unchanged(v), Nothing) => vec![out(Some(v), Some(v)), settled(Some(v), None)],
                (Deleted, Unchanged(w)) => vec![settled(None, Some(w))], // backup preserved
                (Unchanged(v), Deleted) => vec![out(Some(v), Some(v))],  // re-upload
                (Deleted, _) => vec![out(dv, dv)],
                (_, Deleted) => vec![out(sv, sv)],
                (AddedAtSettled(v), Unchanged(k) | Modified(k)) => vec![with_loser(
                    out(Some(v), Some(v)),
                    k,
                    Side::Destination,
                    Spread::LoserSide,
                    true,
                )],
                // A new destination file where the source kept a copy (settled in another
                // mode): the new file keeps the path, the kept copy is set aside on the source.
                // The source is primary here, and SOURCE_BACKUP backs up a primary file the
                // destination lacks (the `(Unchanged, Nothing)` row above): the conflict copy
                // reaches the destination in the same run (behaviour 12).
                (Unchanged(k) | Modified(k), AddedAtSettled(w)) => vec![with_loser(
                    out(Some(w), Some(w)),
                    k,
                    Side::Source,
                    self.spread(),
                    false,
                )],
                (_, Nothing | Unchanged(_)) if s.changed().is_some() => vec![out(sv, sv)],
                (Nothing | Unchanged(_), _) if d.changed().is_some() => vec![out(dv, dv)],
                _ => match (sv, dv) {
                    // Source modifications win conflicts; the loser is kept.
                    (Some(v), Some(w)) => vec![with_loser(
                        out(Some(v), Some(v)),
                        w,
                        Side::Destination,
                        self.spread(),
                        false,
                    )],
                    _ => vec![out(sv.or(dv), sv.or(dv))],
                },
            },
            SyncMode::DestinationBackup => match (s, d) {
                (Nothing | Deleted, Nothing | Deleted) => vec![out(None, None)],
                (Unchanged(v), Nothing) => vec![settled(Some(v), None)],
                (Modified(v), Nothing) => vec![settled(Some(v), None), out(Some(v), None)],
                (Nothing, Unchanged(w)) => vec![out(Some(w), Some(w)), settled(None, Some(w))],
                (Unchanged(v), Deleted) => vec![settled(Some(v), None)], // backup preserved
                (Modified(v), Deleted) | (AddedAtSettled(v), Deleted) => {
                    vec![settled(Some(v), None), out(Some(v), None)]
                }
                (Added(v), Deleted | Nothing) => vec![out(Some(v), None)], // never uploads
                (Deleted, Unchanged(w)) => vec![out(Some(w), Some(w))],    // re-download
                (Deleted, _) => vec![out(dv, dv)],
                (Modified(_), Unchanged(w)) => vec![out(Some(w), Some(w))], // overwritten
                // A new source file where the destination keeps a copy of a settled source
                // deletion: this mode never uploads, so the new file cannot take the path on
                // the destination, and the kept copy must not overwrite it. Nothing is copied
                // and the settlement stands: the base is left as it was (recording the two
                // different versions as in sync would hide the conflict from later runs;
                // model seed 8509, case 809).
                (AddedAtSettled(v), Unchanged(k) | Modified(k)) => vec![Outcome {
                    rec,
                    ..out(Some(v), Some(k))
                }],
                (Unchanged(k) | Modified(k), AddedAtSettled(w)) => vec![with_loser(
                    out(Some(w), Some(w)),
                    k,
                    Side::Source,
                    Spread::LoserSide,
                    true,
                )],
                (Nothing | Unchanged(_), _) if d.changed().is_some() => vec![out(dv, dv)],
                _ => match (sv, dv) {
                    // Destination modifications win; the source's loser stays on the source.
                    (Some(v), Some(w)) => vec![with_loser(
                        out(Some(w), Some(w)),
                        v,
                        Side::Source,
                        Spread::LoserSide,
                        false,
                    )],
                    _ => vec![out(dv, dv)],
                },
            },
            _ => vec![out(sv, dv)],
        }
    }
}

/// A side cannot hold a file at `p` and files below `p/`: where the outcomes below surely
/// put a file on a side, the folder keeps the path there, and the file's version is kept (a
/// conflict copy or the trash; the no-version-lost check sees to it).
///
/// `unknown` lists what a listing cannot see this run, per side (behaviour 8): something is
/// there (a symlink, an unreadable folder) and stays, whether or not the model knows of files
/// below it, so a folder above it holds the path on that side, listed members or not.
/// `left_alone` tells the paths at or below an unknown one: the run changes nothing there,
/// and their outcomes (already their old state) are not resolved again.
fn resolve_type_clashes(
    predicted: &mut BTreeMap<String, Vec<Outcome>>,
    unknown: &[(Side, String)],
    left_alone: impl Fn(&str) -> bool,
) {
    let paths: Vec<String> = predicted.keys().cloned().collect();
    for p in &paths {
        if left_alone(p) {
            continue;
        }
        let prefix = format!("{p}/");
        let below = || {
            predicted
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(_, outs)| outs)
        };
        // A folder below `p` is certain on a side where every outcome of some path below
        // keeps a file there, and only possible where some outcomes do: the engine may hold
        // one of several records for the paths below (a faulted run may or may not have
        // recorded a no-op settle), and which outcome comes follows the record it holds.
        let surely = |side: Side| below().any(|outs| outs.iter().all(|o| o.on(side).is_some()));
        let maybe = |side: Side| below().any(|outs| outs.iter().any(|o| o.on(side).is_some()));
        let mut sure = [surely(Side::Source), surely(Side::Destination)];
        let mut possible = [maybe(Side::Source), maybe(Side::Destination)];
        for (side, h) in unknown {
            if h.starts_with(&prefix) {
                let i = usize::from(*side == Side::Destination);
                sure[i] = true;
                possible[i] = true;
            }
        }
        if possible == [false, false] {
            continue;
        }
        let Some(outs) = predicted.get_mut(p) else {
            continue;
        };
        let mut resolved = clash(outs, sure);
        if possible != sure {
            for o in clash(outs, possible) {
                if !resolved.contains(&o) {
                    resolved.push(o);
                }
            }
        }
        *outs = resolved;
    }
}

/// The outcomes of a file's path where a folder holds the path on the sides `folder`
/// (`[source, destination]`): the folder keeps the path there, and the file's version is kept.
fn clash(outs: &[Outcome], folder: [bool; 2]) -> Vec<Outcome> {
    let mut resolved: Vec<Outcome> = Vec::new();
    let mut moved_aside = Vec::new();
    for o in outs {
        let mut o = o.clone();
        let mut clashed = false;
        // The kept copy of a settled deletion keeps its settlement under its conflict name
        // (behaviour 1: deleted photos never come back to the side that deleted them).
        let settled_on = |side: Side| {
            matches!(
                (o.rec, side),
                (Some((None, Some(_))), Side::Destination) | (Some((Some(_), None)), Side::Source)
            )
        };
        let settled = [settled_on(Side::Source), settled_on(Side::Destination)];
        if folder[0]
            && let Some(v) = o.s.take()
        {
            o.losers.push(Loser {
                ver: v,
                side: Side::Source,
                spread: Spread::Optional,
                settled: settled[0],
            });
            clashed = true;
        }
        if folder[1]
            && let Some(v) = o.d.take()
        {
            o.losers.push(Loser {
                ver: v,
                side: Side::Destination,
                spread: Spread::Optional,
                settled: settled[1],
            });
            clashed = true;
        }
        if clashed {
            o.rec = None;
            // Behaviour 10: where both are to stay, "the folder keeps the path and the
            // file becomes a conflict copy" — on the file's own side too (the engine moves
            // it aside there and shares it), so the pair converges instead of clashing
            // again on the next run.
            let mut aside = Outcome {
                s: None,
                d: None,
                rec: None,
                losers: o.losers.clone(),
            };
            for (v, side) in [(o.s, Side::Source), (o.d, Side::Destination)] {
                if let Some(v) = v {
                    aside.losers.push(Loser {
                        ver: v,
                        side,
                        spread: Spread::Optional,
                        settled: false,
                    });
                }
            }
            moved_aside.push(aside);
        }
        if !resolved.contains(&o) {
            resolved.push(o);
        }
    }
    for a in moved_aside {
        if !resolved.contains(&a) {
            resolved.push(a);
        }
    }
    resolved
}

/// If `path` is a conflict copy, the path it was made from.
fn conflict_origin(path: &str) -> Option<String> {
    let (dir, name) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    // The last marker: a conflict copy of a conflict copy names the copy it was made from.
    let at = name.rfind(".conflict-")?;
    let stem = &name[..at];
    let rest = &name[at + ".conflict-".len()..];
    // <16-char stamp>-<source|destination>[-N][.ext]
    let rest = rest.get(16..)?;
    let rest = rest
        .strip_prefix("-source")
        .or_else(|| rest.strip_prefix("-destination"))?;
    let rest = rest.trim_start_matches(|c: char| c == '-' || c.is_ascii_digit());
    Some(format!("{dir}{stem}{rest}"))
}

// ---------------------------------------------------------------------------------------
// Running a schedule
// ---------------------------------------------------------------------------------------

struct World {
    kinds: Kinds,
    reg: Registry,
    s: Arc<MemoryClient>,
    d: Arc<MemoryClient>,
    /// What users and the engine see of each side: the memory client with the name rules
    /// of a disk where the kinds ask for them.
    s_view: Arc<dyn StorageClient>,
    d_view: Arc<dyn StorageClient>,
    state: tempfile::TempDir,
    /// The model's base: per path, every record the engine may hold.
    base: BTreeMap<String, Vec<Rec>>,
    /// Paths a faulted run changed: the records they had before it, and what each side held
    /// after it. Such a run may have recorded nothing for them (a failed durability barrier,
    /// a crash, a cancel, a write whose reply was lost after it committed); the next run
    /// recognises a copy that landed only
    /// while the side written still holds exactly that copy (behaviour 12; README: a file
    /// edited between the crash and the next run cannot be told from an edit of the version
    /// it replaced, so it is a conflict with both versions kept). When a user changes a
    /// written side before the next run, the old records stay possible.
    unconfirmed: BTreeMap<String, Unconfirmed>,
    /// True until a run of the pair has ended normally.
    initial: bool,
    /// A crashed run may have consumed the initial preference: the crash can come after its
    /// plan ended normally (the engine then records the end of the initial sync).
    initial_maybe_consumed: bool,
    /// Paths whose record may lack the source's content hash (`same_size_mtime`): a faulted
    /// run may have failed to hash a file it then recorded. A fault-free `--checksum` run
    /// hashes every source file and records the hash of every file it settles.
    maybe_hashless: BTreeSet<String>,
    /// Paths hidden from the next run's listings (`Step::Hide`), per side.
    hidden: Vec<(Side, String)>,
    log: String,
    violations: Vec<String>,
}

/// A path that a faulted run changed (see `World::unconfirmed`).
struct Unconfirmed {
    /// The records the engine may have held before that run.
    old_recs: Vec<Rec>,
    /// Per side (source, destination): what the run left there, if it changed that side.
    written: [Option<Option<Ver>>; 2],
}

fn client(world: &World, side: Side) -> &Arc<dyn StorageClient> {
    match side {
        Side::Source => &world.s_view,
        Side::Destination => &world.d_view,
    }
}

fn memory(world: &World, side: Side) -> &Arc<MemoryClient> {
    match side {
        Side::Source => &world.s,
        Side::Destination => &world.d,
    }
}

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

impl World {
    fn new(kinds: Kinds) -> Self {
        let s = Arc::new(MemoryClient::new());
        let d = Arc::new(MemoryClient::new());
        for m in [&s, &d] {
            if kinds.inode_reuse {
                m.reuse_file_ids(true);
                m.reuse_birth_times(true);
            }
            if kinds.same_size_mtime {
                m.webdav_like_metadata(true);
            }
        }
        let s_view: Arc<dyn StorageClient> =
            Arc::new(QuirkClient::new(s.clone()).with_exclusive_names(kinds.type_change));
        let d_view: Arc<dyn StorageClient> = Arc::new(
            QuirkClient::new(d.clone())
                .with_exclusive_names(kinds.type_change)
                .with_case_insensitive(kinds.case_fold)
                .with_remote_reads(kinds.same_size_mtime),
        );
        World {
            kinds,
            reg: Registry::default(),
            s,
            d,
            s_view,
            d_view,
            state: tempfile::tempdir().unwrap(),
            base: BTreeMap::new(),
            unconfirmed: BTreeMap::new(),
            initial: true,
            initial_maybe_consumed: false,
            maybe_hashless: BTreeSet::new(),
            hidden: Vec::new(),
            log: String::new(),
            violations: Vec::new(),
        }
    }

    /// The records as the engine compares them with what the sides hold now (kind
    /// `same_size_mtime`). Where a side's content is not compared, an edit that kept size and
    /// mtime looks unchanged (its listing differs in nothing the engine reads): the record then
    /// counts as naming the version that is there now. That is always so on the destination
    /// (remote reads: `--checksum` uses listed hashes only, and it lists none), and may be so
    /// on the source where its record may lack a hash (`maybe_hashless`) or the run is
    /// faulted (hashing a file may fail; it then keeps to size and mtime).
    fn as_seen(
        &self,
        p: &str,
        recs: Vec<Rec>,
        cur: [Option<Ver>; 2],
        faulted: bool,
        notes: &mut Vec<String>,
    ) -> Vec<Rec> {
        if !self.kinds.same_size_mtime {
            return recs;
        }
        let like = |a: Ver, b: Ver| {
            self.reg.lens[a as usize] == self.reg.lens[b as usize]
                && self.reg.mtimes[a as usize] == self.reg.mtimes[b as usize]
        };
        let mut seen: Vec<Rec> = Vec::new();
        for rec in recs {
            let mut variants = vec![rec];
            for (i, side) in [Side::Source, Side::Destination].into_iter().enumerate() {
                let always = side == Side::Destination;
                let maybe = faulted || self.maybe_hashless.contains(p);
                if !always && !maybe {
                    continue;
                }
                let mut next = Vec::new();
                for v in variants {
                    let recorded = v.and_then(|(s, d)| if i == 0 { s } else { d });
                    let blind = match (recorded, cur[i]) {
                        (Some(b), Some(c)) if b != c && like(b, c) => {
                            v.map(|(s, d)| if i == 0 { (Some(c), d) } else { (s, Some(c)) })
                        }
                        _ => None,
                    };
                    match blind {
                        Some(b) => {
                            let note = format!(
                                "  (model: the {side}'s edit of {p} kept size and mtime; the engine {} see it)",
                                if always { "does not" } else { "may not" }
                            );
                            if !notes.contains(&note) {
                                notes.push(note);
                            }
                            if !always && !next.contains(&v) {
                                next.push(v);
                            }
                            if !next.contains(&Some(b)) {
                                next.push(Some(b));
                            }
                        }
                        None => {
                            if !next.contains(&v) {
                                next.push(v);
                            }
                        }
                    }
                }
                variants = next;
            }
            for v in variants {
                if !seen.contains(&v) {
                    seen.push(v);
                }
            }
        }
        seen
    }

    /// Leaves out paths whose sides differ by design (kind `same_size_mtime`): the destination
    /// holds an edit that kept size and mtime, which the engine does not see on a side it does
    /// not hash (README, `--checksum`), and the model's base says the run left it so.
    fn drop_unseen(&self, s: &mut View, d: &mut View) {
        if !self.kinds.same_size_mtime {
            return;
        }
        let unseen: Vec<String> = s
            .live
            .iter()
            .filter_map(|(p, &sv)| {
                let dv = *d.live.get(p)?;
                let like = sv != dv
                    && self.reg.lens[sv as usize] == self.reg.lens[dv as usize]
                    && self.reg.mtimes[sv as usize] == self.reg.mtimes[dv as usize];
                let recorded = self
                    .base
                    .get(p)
                    .is_some_and(|recs| recs.contains(&Some((Some(sv), Some(dv)))));
                (like && recorded).then(|| p.clone())
            })
            .collect();
        for p in unseen {
            s.live.remove(&p);
            d.live.remove(&p);
        }
    }

    fn views(&mut self) -> (View, View) {
        let mut v = Vec::new();
        let s = view(&self.s, &self.reg, "source", &mut v);
        let d = view(&self.d, &self.reg, "destination", &mut v);
        self.violations.extend(v);
        (s, d)
    }

    fn live_paths(&self, side: Side) -> Vec<String> {
        memory(self, side)
            .files()
            .into_keys()
            .map(|p| p.to_string())
            .filter(|p| !is_internal(p))
            .collect()
    }

    async fn write(&mut self, side: Side, path: &str, len: usize) {
        let version = self.reg.new_version(len);
        self.write_version(side, path, version).await;
    }

    /// The version at `path` on `side`, if a user's.
    fn version_at(&self, side: Side, path: &str) -> Option<Ver> {
        let bytes = memory(self, side).files().get(path)?.clone();
        self.reg.by_bytes.get(&bytes).copied()
    }

    async fn write_version(&mut self, side: Side, path: &str, version: (Ver, Bytes, SystemTime)) {
        let (id, bytes, mtime) = version;
        let c = client(self, side).clone();
        let opts = syncengine_core::WriteOptions::default().with_mtime(mtime);
        // A disk may refuse (a folder is there): the user's write then fails, as it would.
        match c
            .write_opts(&rel(path), syncengine_core::bytes_stream(bytes), opts)
            .await
        {
            Ok(_) => {
                let _ = writeln!(self.log, "  {side}: write v{id} at {path}");
            }
            Err(e) => {
                let _ = writeln!(self.log, "  {side}: write v{id} at {path} refused: {e}");
            }
        }
    }

    async fn user(&mut self, step: &Step) {
        match step {
            Step::Add { side, path, len } => {
                let path = POOL[*path];
                // A file cannot sit where a folder is, nor below a file: keep trees possible
                // on real disks.
                let live = self.live_paths(*side);
                if live.iter().any(|p| {
                    p.starts_with(&format!("{path}/")) || path.starts_with(&format!("{p}/"))
                }) {
                    return;
                }
                self.write(*side, path, *len).await;
            }
            Step::Edit { side, pick, len } => {
                let live = self.live_paths(*side);
                if live.is_empty() {
                    return;
                }
                let path = live[pick.index(live.len())].clone();
                self.write(*side, &path, *len).await;
            }
            Step::Delete { side, pick } => {
                let live = self.live_paths(*side);
                if live.is_empty() {
                    return;
                }
                let path = &live[pick.index(live.len())];
                client(self, *side).delete(&rel(path)).await.unwrap();
                let _ = writeln!(self.log, "  {side}: delete {path}");
            }
            Step::Rename { side, pick, to } => {
                let live = self.live_paths(*side);
                if live.is_empty() {
                    return;
                }
                let from = &live[pick.index(live.len())];
                let to = POOL[*to];
                if live.iter().any(|p| {
                    p == to || p.starts_with(&format!("{to}/")) || to.starts_with(&format!("{p}/"))
                }) {
                    return;
                }
                match client(self, *side).rename(&rel(from), &rel(to)).await {
                    Ok(_) => {
                        let _ = writeln!(self.log, "  {side}: rename {from} -> {to}");
                    }
                    Err(e) => {
                        let _ = writeln!(self.log, "  {side}: rename {from} -> {to} refused: {e}");
                    }
                }
            }
            Step::AddCase { side, path, len } => {
                let path = CASE_POOL[*path];
                let live = self.live_paths(*side);
                if live.iter().any(|p| p.starts_with(&format!("{path}/"))) {
                    return;
                }
                self.write(*side, path, *len).await;
            }
            Step::FileToFolder {
                side,
                pick,
                child,
                len,
            } => {
                let live = self.live_paths(*side);
                if live.is_empty() {
                    return;
                }
                let path = live[pick.index(live.len())].clone();
                client(self, *side).delete(&rel(&path)).await.unwrap();
                let _ = writeln!(self.log, "  {side}: delete {path} (file to folder)");
                let child = format!("{path}/{}", CHILDREN[*child]);
                self.write(*side, &child, *len).await;
            }
            Step::FolderToFile { side, pick, len } => {
                let live = self.live_paths(*side);
                let nested: Vec<&String> = live.iter().filter(|p| p.contains('/')).collect();
                if nested.is_empty() {
                    return;
                }
                let file = nested[pick.index(nested.len())];
                let folder = file.split('/').next().unwrap_or_default().to_owned();
                for p in live.iter().filter(|p| p.starts_with(&format!("{folder}/"))) {
                    client(self, *side).delete(&rel(p)).await.unwrap();
                }
                let _ = writeln!(
                    self.log,
                    "  {side}: delete folder {folder} (folder to file)"
                );
                self.write(*side, &folder, *len).await;
            }
            Step::DeleteThenCreate { side, pick, to } => {
                let live = self.live_paths(*side);
                if live.is_empty() {
                    return;
                }
                let from = live[pick.index(live.len())].clone();
                let to = POOL[*to];
                if live.iter().any(|p| {
                    p == to || p.starts_with(&format!("{to}/")) || to.starts_with(&format!("{p}/"))
                }) {
                    return;
                }
                let Some(old) = self.version_at(*side, &from) else {
                    return;
                };
                client(self, *side).delete(&rel(&from)).await.unwrap();
                let _ = writeln!(self.log, "  {side}: delete {from} (then create at {to})");
                let version = self.reg.new_version_like(old);
                self.write_version(*side, to, version).await;
            }
            Step::EditKeep { side, pick } => {
                let live = self.live_paths(*side);
                if live.is_empty() {
                    return;
                }
                let path = live[pick.index(live.len())].clone();
                let Some(old) = self.version_at(*side, &path) else {
                    return;
                };
                let version = self.reg.new_version_like(old);
                let _ = writeln!(self.log, "  {side}: edit keeping size and mtime:");
                self.write_version(*side, &path, version).await;
            }
            Step::Hide { side, path } => {
                let path = HIDE_POOL[*path];
                // Hidden only while the run lists (`World::run`): users still reach it.
                let _ = writeln!(self.log, "  {side}: {path} cannot be listed next run");
                self.hidden.push((*side, path.to_owned()));
            }
            Step::Run(_) => unreachable!(),
        }
    }

    /// Lists the hidden paths again (after the run they were hidden from).
    fn reveal(&mut self) {
        for (side, path) in std::mem::take(&mut self.hidden) {
            memory(self, side).set_unlisted(&rel(&path), None);
        }
    }

    /// True when a hidden path covers `path` (it or a folder above it). When the destination
    /// folds case, names equal but for case are one name there: a path that folds to a hidden
    /// one (on either side) may be it, and is left alone too.
    fn is_hidden(&self, path: &str) -> bool {
        self.hidden.iter().any(|(_, h)| {
            let folds = self.kinds.case_fold;
            let (path, h) = if folds {
                (path.to_lowercase(), h.to_lowercase())
            } else {
                (path.to_owned(), h.clone())
            };
            path == h || path.starts_with(&format!("{h}/"))
        })
    }

    fn pair(
        &self,
        spec: &RunSpec,
        dry_run: bool,
        s: Arc<dyn StorageClient>,
        d: Arc<dyn StorageClient>,
    ) -> SyncPair {
        let mut opts = SyncOptions::default()
            .with_force(true)
            .with_conflict(spec.strategy)
            .with_checksum(self.kinds.same_size_mtime)
            .with_dry_run(dry_run);
        if !self.kinds.default_recovery {
            opts = opts
                .with_recovery(Side::Source, Recovery::Trash)
                .with_recovery(Side::Destination, Recovery::Trash);
        }
        if let Some(p) = spec.initial {
            opts = opts.with_initial_preference(p);
        }
        SyncPair::new(s, d, spec.mode).with_options(opts)
    }

    async fn run(&mut self, spec: &RunSpec) {
        let (s0, d0) = self.views();
        // A hidden path stands for something a listing cannot see (a symlink, an unreadable
        // folder), there whether or not files are stored below it. A disk cannot hold one
        // below a file of its own side (`c/d` while `c` is a file), so there is nothing to
        // hide then.
        let hidden = std::mem::take(&mut self.hidden);
        for (side, path) in hidden {
            let view = match side {
                Side::Source => &s0,
                Side::Destination => &d0,
            };
            let below_a_file = path
                .match_indices('/')
                .any(|(i, _)| view.live.contains_key(&path[..i]));
            if below_a_file {
                let _ = writeln!(
                    self.log,
                    "  ({side}: {path} is below a file there: nothing to hide)"
                );
            } else {
                self.hidden.push((side, path));
            }
        }
        for (side, path) in &self.hidden {
            memory(self, *side).set_unlisted(&rel(path), Some("a symlink (model)"));
        }
        // An unconfirmed change whose written side a user changed since: the engine cannot
        // tell the landed copy any more, so it may plan from the old record. One not yet
        // touched stays unconfirmed through a faulted run (which may record nothing at all,
        // e.g. one that fails at its first call); a fault-free run records it.
        let mut carried: BTreeMap<String, Unconfirmed> = BTreeMap::new();
        for (p, u) in std::mem::take(&mut self.unconfirmed) {
            let now = [s0.live.get(&p).copied(), d0.live.get(&p).copied()];
            let touched = u
                .written
                .iter()
                .zip(now)
                .any(|(after, now)| after.is_some_and(|after| after != now));
            if !touched {
                if spec.fault.is_some() {
                    carried.insert(p, u);
                }
                continue;
            }
            let _ = writeln!(
                self.log,
                "  (model: {p} was changed by a faulted run and edited since: its old record {} stays possible)",
                show_recs(&u.old_recs)
            );
            let recs = self.base.entry(p).or_insert_with(|| vec![None]);
            for r in u.old_recs {
                if !recs.contains(&r) {
                    recs.push(r);
                }
            }
        }
        // A crashed first run may have finished its plan before it was stopped, which
        // consumes the initial preference (behaviour 4): then both are possible.
        let initials: Vec<bool> = if self.initial && self.initial_maybe_consumed {
            vec![true, false]
        } else {
            vec![self.initial]
        };
        let ctxs: Vec<Ctx> = initials
            .into_iter()
            .map(|initial| Ctx {
                mode: spec.mode,
                initial,
                pref: spec.initial.unwrap_or_default(),
                strategy: spec.strategy,
                reg: &self.reg,
                same_run_spread: self.kinds.check_same_run_spread,
            })
            .collect();
        // Predictions per path, for every record the engine may hold.
        let mut paths: BTreeSet<String> = s0.live.keys().chain(d0.live.keys()).cloned().collect();
        paths.extend(self.base.keys().cloned());
        let mut predicted: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
        let mut notes: Vec<String> = Vec::new();
        for p in &paths {
            let recs = self.base.get(p).cloned().unwrap_or_else(|| vec![None]);
            let cur = [s0.live.get(p).copied(), d0.live.get(p).copied()];
            let recs = self.as_seen(p, recs, cur, spec.fault.is_some(), &mut notes);
            let mut outs: Vec<Outcome> = Vec::new();
            for ctx in &ctxs {
                for rec in &recs {
                    for o in ctx.predict(*rec, s0.live.get(p).copied(), d0.live.get(p).copied()) {
                        if !outs.contains(&o) {
                            outs.push(o);
                        }
                    }
                }
            }
            predicted.insert(p.clone(), outs);
        }
        drop(ctxs);
        for n in notes {
            let _ = writeln!(self.log, "{n}");
        }
        // What a listing cannot see is unknown for the run: nothing at or below it changes
        // on either side, and the base keeps what it had (behaviour 8). Decided before type
        // clashes: a folder above an unknown path keeps what the run leaves there.
        if !self.hidden.is_empty() {
            for (p, outs) in predicted.iter_mut() {
                if self.is_hidden(p) {
                    let (s, d) = (s0.live.get(p).copied(), d0.live.get(p).copied());
                    let recs = self.base.get(p).cloned().unwrap_or_else(|| vec![None]);
                    *outs = recs
                        .into_iter()
                        .map(|rec| Outcome {
                            s,
                            d,
                            rec,
                            losers: Vec::new(),
                        })
                        .collect();
                }
            }
        }
        if self.kinds.type_change {
            resolve_type_clashes(&mut predicted, &self.hidden, |p| self.is_hidden(p));
        }
        // Names one side cannot hold apart (case): each side keeps what it had or takes the
        // path's own predicted version, never a sibling's.
        let collisions: BTreeSet<String> = if self.kinds.case_fold {
            colliding(paths.iter())
        } else {
            BTreeSet::new()
        };

        let token = CancellationToken::new();
        let engine = SyncEngine::new(self.state.path()).with_cancellation(token.clone());
        let crash_token = CancellationToken::new();
        let client_token = match &spec.fault {
            Some(f) if f.crash => crash_token.clone(),
            _ => token.clone(),
        };
        let faulted = spec.fault.is_some();
        let mut fault_clients: Vec<(Side, Arc<FaultClient>)> = Vec::new();
        let (sc, dc): (Arc<dyn StorageClient>, Arc<dyn StorageClient>) = match &spec.fault {
            None => (self.s_view.clone(), self.d_view.clone()),
            Some(f) => {
                // A read corrupted at equal length is caught only against a known MD5
                // (behaviour 7: "the MD5 where the source side knows it"). With WebDAV-like
                // listings (`same_size_mtime`) none is listed, and the hash `--checksum`
                // computes may itself fail (the file then keeps to size and mtime), so such
                // a corruption cannot be told from content: not injected there.
                let faults: Vec<Fault> = self
                    .kinds
                    .faults
                    .iter()
                    .copied()
                    .filter(|f| !(self.kinds.same_size_mtime && *f == Fault::CorruptRead))
                    .collect();
                let config = FaultConfig::seeded(f.seed)
                    .with_rate(f64::from(f.rate) / 100.0)
                    .with_faults(faults);
                let mut wrap = |c: &Arc<dyn StorageClient>,
                                on: bool,
                                seed_shift: u64|
                 -> Arc<dyn StorageClient> {
                    if on {
                        let mut cfg = config.clone();
                        cfg.seed ^= seed_shift;
                        let fc = FaultClient::new(c.clone(), cfg)
                            .with_cancel_token(client_token.clone());
                        if let Some(at) = f.cancel_at {
                            fc.cancel_at(u64::from(at));
                        }
                        let fc = Arc::new(fc);
                        let side = if seed_shift == 1 {
                            Side::Source
                        } else {
                            Side::Destination
                        };
                        fault_clients.push((side, fc.clone()));
                        fc
                    } else {
                        c.clone()
                    }
                };
                (
                    wrap(&self.s_view, f.sides & 1 != 0, 1),
                    wrap(&self.d_view, f.sides & 2 != 0, 2),
                )
            }
        };
        let pair = self.pair(spec, false, sc, dc);
        let result = tokio::select! {
            biased;
            _ = crash_token.cancelled() => Err(syncengine_core::SyncError::State("crashed (the test dropped the run)".into())),
            r = engine.sync_pair(&pair) => r,
        };
        RUNS.fetch_add(1, Ordering::Relaxed);
        if faulted {
            FAULTED_RUNS.fetch_add(1, Ordering::Relaxed);
        }
        if crash_token.is_cancelled() {
            CRASHED.fetch_add(1, Ordering::Relaxed);
        } else if token.is_cancelled() {
            CANCELLED.fetch_add(1, Ordering::Relaxed);
        }
        let injected: Vec<String> = fault_clients
            .iter()
            .flat_map(|(side, c)| c.injected().into_iter().map(move |i| format!("{side} {i}")))
            .collect();
        INJECTED.fetch_add(injected.len() as u64, Ordering::Relaxed);
        let _ = writeln!(
            self.log,
            "  run {} strategy {:?} initial {:?} (model initial {}){} -> {}",
            spec.mode,
            spec.strategy,
            spec.initial,
            self.initial,
            if faulted { " FAULTED" } else { "" },
            match &result {
                Ok(st) => format!(
                    "ok: up {} down {} del s/d {}/{} ren s/d {}/{} conflicts {} errors {} {:?}",
                    st.uploaded,
                    st.downloaded,
                    st.deleted_source,
                    st.deleted_destination,
                    st.renamed_source,
                    st.renamed_destination,
                    st.conflicts,
                    st.errors,
                    st.error_messages
                ),
                Err(e) => format!("error: {e}"),
            }
        );
        for i in &injected {
            let _ = writeln!(self.log, "    injected: {i}");
        }
        let ended_normally = result.is_ok();
        let clean = matches!(&result, Ok(st) if st.errors == 0);
        // Colliding names are reported (an error for the run is a report); otherwise a
        // fault-free run must end clean.
        if !faulted && !clean && collisions.is_empty() {
            self.violations
                .push(format!("[run] a fault-free run failed: {result:?}"));
        }

        let (s1, d1) = self.views();
        let label = if faulted { "faulted run" } else { "run" };

        // No version lost: everything that was anywhere is still somewhere.
        let everywhere = |s: &View, d: &View| -> BTreeSet<Ver> {
            s.live
                .values()
                .chain(s.trash.values())
                .chain(d.live.values())
                .chain(d.trash.values())
                .copied()
                .collect()
        };
        let after = everywhere(&s1, &d1);
        for v in everywhere(&s0, &d0) {
            if !after.contains(&v) {
                self.violations.push(format!(
                    "[lost] version v{v} vanished from both sides and both trashes in a {label}"
                ));
            }
        }

        // Per path: a predicted outcome (or, after faults, the old state).
        let mut new_base: BTreeMap<String, Vec<Rec>> = BTreeMap::new();
        let mut unconfirmed: BTreeMap<String, Unconfirmed> = BTreeMap::new();
        let mut expected_losers: BTreeMap<String, Vec<Loser>> = BTreeMap::new();
        for p in &paths {
            let (bs, bd) = (s0.live.get(p).copied(), d0.live.get(p).copied());
            let (as_, ad) = (s1.live.get(p).copied(), d1.live.get(p).copied());
            let outs = &predicted[p];
            let mut matching: Vec<&Outcome> =
                outs.iter().filter(|o| o.s == as_ && o.d == ad).collect();
            // Kind `same_size_mtime`: an edit that kept size and mtime is unseen where no hash
            // tells it (README, `--checksum`), so a side may hold it where the model predicts
            // the version it replaced — a rename the engine mirrored carries it to the new
            // name, where the model (which sees a delete and an add) predicts a copy. Such an
            // outcome matches, and the path is recorded as holding the unseen pair.
            let unseen_match = matching.is_empty() && self.kinds.same_size_mtime && {
                let like = |a: Option<Ver>, b: Option<Ver>| match (a, b) {
                    (Some(x), Some(y)) => {
                        self.reg.lens[x as usize] == self.reg.lens[y as usize]
                            && self.reg.mtimes[x as usize] == self.reg.mtimes[y as usize]
                    }
                    _ => a == b,
                };
                matching = outs
                    .iter()
                    .filter(|o| like(o.s, as_) && like(o.d, ad))
                    .collect();
                !matching.is_empty()
            };
            let mut recs: Vec<Rec> = Vec::new();
            if unseen_match {
                recs.push(Some((as_, ad)));
            }
            for o in &matching {
                if !recs.contains(&o.rec) {
                    recs.push(o.rec);
                }
                // Several outcomes may match (the engine may hold one of several records, or
                // a crashed first run may or may not have consumed `--initial`): a loser is
                // required only if every matching outcome requires it; otherwise it may be
                // kept or trashed (the no-version-lost check still sees to it).
                expected_losers
                    .entry(p.clone())
                    .or_default()
                    .extend(o.losers.iter().map(|l| {
                        let everywhere = matching.iter().all(|m| {
                            m.losers.iter().any(|k| {
                                k.ver == l.ver && k.side == l.side && k.spread != Spread::Optional
                            })
                        });
                        if everywhere {
                            l.clone()
                        } else {
                            Loser {
                                spread: Spread::Optional,
                                ..l.clone()
                            }
                        }
                    }));
            }
            let old_recs = self.base.get(p).cloned().unwrap_or_else(|| vec![None]);
            if faulted && (as_, ad) != (bs, bd) {
                unconfirmed.insert(
                    p.clone(),
                    Unconfirmed {
                        old_recs: old_recs.clone(),
                        written: [(as_ != bs).then_some(as_), (ad != bd).then_some(ad)],
                    },
                );
            }
            if collisions.contains(p) && (as_, ad) == (bs, bd) {
                // A colliding path the run left as it was may be one the engine could not
                // tell apart (an unknown path: SEMANTICS, "it neither copies, deletes nor
                // forgets anything at or below it"), so its base may still hold the old
                // record, even where a predicted outcome matches what the sides hold (a file
                // kept beside a folder of its name: model seed 7003, case 1467).
                for r in &old_recs {
                    if !recs.contains(r) {
                        recs.push(*r);
                    }
                }
            }
            if collisions.contains(p) && matching.is_empty() {
                // A case-only rename that a backup mode carries to a folding side moves the
                // kept version to the new spelling there (both names are one file; README):
                // the version is then under its case twin on that side.
                let moved_to_twin = |now: Option<Ver>, before: Option<Ver>, view: &View| {
                    now.is_none()
                        && before.is_some_and(|v| {
                            view.live.iter().any(|(q, &w)| {
                                q != p && q.to_lowercase() == p.to_lowercase() && w == v
                            })
                        })
                };
                let s_ok =
                    as_ == bs || outs.iter().any(|o| o.s == as_) || moved_to_twin(as_, bs, &s1);
                let d_ok = ad == bd || outs.iter().any(|o| o.d == ad) || moved_to_twin(ad, bd, &d1);
                if !(s_ok && d_ok) {
                    self.violations.push(format!(
                        "[collision] {p} (its name collides on the case-insensitive destination) holds source {} destination {}: neither its old state (source {} destination {}) nor its own predicted version {}",
                        show(as_), show(ad), show(bs), show(bd), show_outs(outs)
                    ));
                }
                let mut recs = old_recs.clone();
                recs.retain(|r| r.is_some());
                if !recs.is_empty() {
                    new_base.insert(p.clone(), recs);
                }
                continue;
            }
            // Conflict names carry the second of the run: a conflict copy deleted from both
            // sides may see its name handed out again (another conflict in the same second).
            // Such a path is new after the run, and is checked below like every new path: it
            // must be a conflict copy the model predicts.
            if matching.is_empty() && (bs, bd) == (None, None) && conflict_origin(p).is_some() {
                continue;
            }
            if faulted {
                let untouched = (as_, ad) == (bs, bd);
                // A side may have lost the path part way where the run meant to remove it
                // there (a delete, both versions of a keep-both conflict moved to conflict
                // names, a file moved aside for a folder), and, with the never-absent check
                // off, anywhere (an overwrite that failed after the old version went to the
                // trash). Behaviour 5 is about overwrites: their path is never absent.
                let may_vanish = |side: Side| {
                    !self.kinds.check_never_absent || outs.iter().any(|o| o.on(side).is_none())
                };
                let half = (as_ == bs || (as_.is_none() && may_vanish(Side::Source)))
                    && (ad == bd || (ad.is_none() && may_vanish(Side::Destination)));
                if untouched || (matching.is_empty() && half) {
                    for r in &old_recs {
                        if !recs.contains(r) {
                            recs.push(*r);
                        }
                    }
                    // Losers of a conflict the run may have begun.
                    for o in outs {
                        expected_losers
                            .entry(p.clone())
                            .or_default()
                            .extend(o.losers.iter().map(|l| Loser {
                                spread: Spread::Optional,
                                ..l.clone()
                            }));
                    }
                } else if matching.is_empty() {
                    self.violations.push(format!(
                        "[invariant] after a faulted run {p} holds source {} destination {}: neither its old state (source {} destination {}) nor a predicted outcome {}",
                        show(as_), show(ad), show(bs), show(bd), show_outs(outs)
                    ));
                    recs = old_recs.clone();
                }
            } else if matching.is_empty() {
                self.violations.push(format!(
                    "[outcome] {p}: source {} destination {} (before: source {} destination {}, base {}) but the model predicts {}",
                    show(as_), show(ad), show(bs), show(bd), show_recs(&old_recs), show_outs(outs)
                ));
                // Go on from what the engine did, with whatever it may have recorded.
                recs = vec![None, Some((as_, ad))];
                if as_.is_none() && ad.is_none() {
                    recs = vec![None];
                }
            }
            let recs: Vec<Rec> = recs
                .into_iter()
                .map(|r| r.filter(|(a, b)| a.is_some() || b.is_some()))
                .collect();
            if recs != vec![None] {
                new_base.insert(p.clone(), recs);
            }
        }

        // Paths that are new after the run: only predicted conflict copies may appear.
        let before_paths: BTreeSet<&String> = s0.live.keys().chain(d0.live.keys()).collect();
        let new_paths: BTreeSet<String> = s1
            .live
            .keys()
            .chain(d1.live.keys())
            .filter(|p| !before_paths.contains(p))
            .cloned()
            .collect();
        let mut explained: BTreeSet<String> = BTreeSet::new();
        for (origin, losers) in &expected_losers {
            for l in losers {
                let (own, other) = match l.side {
                    Side::Source => (&s1, &d1),
                    Side::Destination => (&d1, &s1),
                };
                let found: Vec<&String> = new_paths
                    .iter()
                    .filter(|n| conflict_origin(n).as_deref() == Some(origin.as_str()))
                    .filter(|n| own.live.get(*n) == Some(&l.ver))
                    .collect();
                for n in &found {
                    explained.insert((*n).clone());
                    if faulted {
                        // A conflict copy a faulted run made may be unrecorded too.
                        unconfirmed.insert(
                            (*n).clone(),
                            Unconfirmed {
                                old_recs: vec![None],
                                written: [
                                    s1.live.get(*n).map(|v| Some(*v)),
                                    d1.live.get(*n).map(|v| Some(*v)),
                                ],
                            },
                        );
                    }
                    let on_both = other.live.get(*n) == Some(&l.ver);
                    let rec = if on_both {
                        Some((Some(l.ver), Some(l.ver)))
                    } else if l.settled {
                        Some(match l.side {
                            Side::Source => (Some(l.ver), None),
                            Side::Destination => (None, Some(l.ver)),
                        })
                    } else {
                        None
                    };
                    if rec.is_some() {
                        new_base.insert((*n).clone(), vec![rec]);
                    }
                    if !faulted && l.spread == Spread::Both && !on_both {
                        self.violations.push(format!(
                            "[conflict] the kept loser v{} of {origin} is on the {} only as {n}; it should be on both sides after the run",
                            l.ver, l.side
                        ));
                    }
                    if !faulted && l.settled && l.spread == Spread::LoserSide && on_both {
                        self.violations.push(format!(
                            "[conflict] the kept copy v{} of {origin} (a settled deletion) came back to the deleting side as {n}",
                            l.ver
                        ));
                    }
                }
                let in_trash = s1
                    .trash
                    .values()
                    .chain(d1.trash.values())
                    .any(|v| *v == l.ver);
                if found.is_empty() && !faulted && l.spread != Spread::Optional {
                    self.violations.push(format!(
                        "[conflict] no conflict copy holds the losing version v{} of {origin} on the {}{}",
                        l.ver,
                        l.side,
                        if in_trash { " (it went to the trash)" } else { "" }
                    ));
                }
            }
        }
        for n in &new_paths {
            if explained.contains(n) {
                continue;
            }
            // A conflict copy made by a faulted run may spread in a later one: carry on.
            let kind = if conflict_origin(n).is_some() {
                "[spurious conflict] a conflict copy the model does not predict"
            } else {
                "[garbage] a new path nobody created"
            };
            self.violations.push(format!(
                "{kind}: {n} (source {} destination {})",
                show(s1.live.get(n).copied()),
                show(d1.live.get(n).copied())
            ));
        }

        if faulted {
            self.maybe_hashless.extend(new_base.keys().cloned());
        } else {
            self.maybe_hashless.clear();
        }
        self.base = new_base;
        for (p, u) in carried {
            unconfirmed.entry(p).or_insert(u);
        }
        self.unconfirmed = unconfirmed;
        if crash_token.is_cancelled() {
            self.initial_maybe_consumed = true;
        }
        if ended_normally && (self.kinds.check_initial_once || clean) {
            self.initial = false;
        }

        // Idle: a dry run right after a fault-free run plans nothing.
        if clean && !faulted {
            let conflicts_pending = !self.kinds.check_same_run_spread
                && expected_losers
                    .values()
                    .flatten()
                    .any(|l| l.spread != Spread::Optional);
            let dry = self.pair(spec, true, self.s_view.clone(), self.d_view.clone());
            match SyncEngine::new(self.state.path()).sync_pair(&dry).await {
                Ok(st) if st.is_noop() || conflicts_pending || !collisions.is_empty() => {}
                Ok(st) => self.violations.push(format!(
                    "[idle] a dry run after a fault-free {} run plans work: up {} down {} del s/d {}/{} ren s/d {}/{} conflicts {} {:?}",
                    spec.mode, st.uploaded, st.downloaded, st.deleted_source, st.deleted_destination,
                    st.renamed_source, st.renamed_destination, st.conflicts, st.conflict_paths
                )),
                Err(e) => self.violations.push(format!("[idle] the dry run failed: {e}")),
            }
        }
        self.reveal();
    }
}

/// The paths whose names a case-insensitive side cannot hold apart: a path collides when it,
/// or a folder above it, folds to the same name as another path or folder above one but is
/// spelt otherwise (`Readme`/`readme`, and also a file `b.txt` against a folder `B.txt/`, or
/// the folders of `A/x` and `a/y`).
fn colliding<'a>(paths: impl Iterator<Item = &'a String>) -> BTreeSet<String> {
    let paths: Vec<&String> = paths.collect();
    // Every name a path takes (itself and its folders), by folded name.
    let mut spellings: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for p in &paths {
        for (i, c) in p.char_indices().chain(std::iter::once((p.len(), '/'))) {
            if c == '/' {
                let name = &p[..i];
                spellings
                    .entry(name.to_lowercase())
                    .or_default()
                    .insert(name);
            }
        }
    }
    paths
        .into_iter()
        .filter(|p| {
            p.char_indices()
                .chain(std::iter::once((p.len(), '/')))
                .filter(|(_, c)| *c == '/')
                .any(|(i, _)| spellings[&p[..i].to_lowercase()].len() > 1)
        })
        .cloned()
        .collect()
}

/// Leaves out names that a case-insensitive side cannot hold apart (see [`colliding`]).
fn drop_collisions(s: &mut View, d: &mut View) {
    let all: Vec<String> = s.live.keys().chain(d.live.keys()).cloned().collect();
    for n in colliding(all.iter()) {
        s.live.remove(&n);
        d.live.remove(&n);
    }
}

fn show(v: Option<Ver>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("v{v}"))
}

fn show_recs(recs: &[Rec]) -> String {
    recs.iter()
        .map(|r| match r {
            None => "none".to_string(),
            Some((s, d)) => format!("({}, {})", show_settled(*s), show_settled(*d)),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn show_settled(v: Option<Ver>) -> String {
    v.map_or_else(|| "settled-absent".into(), |v| format!("v{v}"))
}

fn show_outs(outs: &[Outcome]) -> String {
    outs.iter()
        .map(|o| {
            let mut s = format!("[source {} destination {}", show(o.s), show(o.d));
            for l in &o.losers {
                let _ = write!(s, ", loser v{} kept on {} ({:?})", l.ver, l.side, l.spread);
            }
            s.push(']');
            s
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Runs one schedule; returns the violations with the log of what happened.
fn run_schedule(kinds: &Kinds, steps: &[Step]) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut w = World::new(kinds.clone());
        for (i, step) in steps.iter().enumerate() {
            let _ = writeln!(w.log, "step {i}: {step:?}");
            match step {
                Step::Run(spec) => {
                    w.run(spec).await;
                    if spec.fault.is_some() && !kinds.edit_after_crash && w.violations.is_empty() {
                        let recovery = RunSpec {
                            fault: None,
                            ..spec.clone()
                        };
                        let _ = writeln!(w.log, "recovery: {recovery:?}");
                        w.run(&recovery).await;
                    }
                }
                user => w.user(user).await,
            }
            if !w.violations.is_empty() {
                break;
            }
        }
        if w.violations.is_empty() {
            // Every schedule ends with a fault-free two-way run: the sides must be equal.
            let last = RunSpec {
                mode: SyncMode::TwoWay,
                strategy: ConflictStrategy::NewestWins,
                initial: None,
                fault: None,
            };
            let _ = writeln!(w.log, "final: {last:?}");
            // Everything is listable again: a hide before the final run does not apply.
            w.hidden.clear();
            w.run(&last).await;
            let (mut s, mut d) = w.views();
            drop_collisions(&mut s, &mut d);
            w.drop_unseen(&mut s, &mut d);
            if w.violations.is_empty() && s.live != d.live {
                let conflicts_pending = !kinds.check_same_run_spread
                    && s.live.keys().chain(d.live.keys()).any(|p| conflict_origin(p).is_some());
                if conflicts_pending {
                    // A kept loser spreads one run later (behaviour 12 not checked): one more.
                    w.run(&last).await;
                }
                let (mut s, mut d) = w.views();
                drop_collisions(&mut s, &mut d);
                w.drop_unseen(&mut s, &mut d);
                if s.live != d.live {
                    w.violations.push(format!(
                        "[convergence] after a fault-free two-way run the sides differ: source {:?} destination {:?}",
                        s.live, d.live
                    ));
                }
            }
        }
        if w.violations.is_empty() {
            Ok(())
        } else {
            Err(format!("{}\nlog:\n{}", w.violations.join("\n"), w.log))
        }
    })
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `cases` random schedules; shrinks each failure to a minimal schedule.
fn campaign(kinds: &Kinds, cases: u64, seed: u64, keep_going: bool) -> (u64, Vec<String>) {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let strategy = schedule(kinds);
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in 0..cases {
        let mut tree = strategy.new_tree(&mut runner).unwrap();
        ran += 1;
        let Err(first) = run_schedule(kinds, &tree.current()) else {
            continue;
        };
        let mut best = (tree.current(), first);
        let mut iters = 0;
        if tree.simplify() {
            loop {
                iters += 1;
                if iters > env_u64("MODEL_SHRINK_ITERS", 400) {
                    break;
                }
                match run_schedule(kinds, &tree.current()) {
                    Err(e) => {
                        best = (tree.current(), e);
                        if !tree.simplify() {
                            break;
                        }
                    }
                    Ok(()) => {
                        if !tree.complicate() {
                            break;
                        }
                    }
                }
            }
        }
        let report = format!(
            "model seed {seed} case {case} (kinds {kinds:?})\nminimal schedule ({} steps): {:#?}\n{}\n",
            best.0.len(),
            best.0,
            best.1
        );
        if let Ok(path) = std::env::var("MODEL_REPORT") {
            use std::io::Write as _;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(f, "{report}\n-----");
            }
        }
        failures.push(report);
        if !keep_going {
            break;
        }
    }
    (ran, failures)
}

/// The CI-sized run (300 schedules by default) of every kind fixed on main.
#[test]
fn model_schedules_keep_every_version() {
    let kinds = Kinds::from_env();
    let cases = env_u64("MODEL_CASES", env_u64("PROPTEST_CASES", 300));
    let seed = env_u64("MODEL_SEED", env_u64("PROPTEST_RNG_SEED", 0x5EED_0008));
    let keep_going = std::env::var("MODEL_CONTINUE").is_ok_and(|v| v == "1");
    let (ran, failures) = campaign(&kinds, cases, seed, keep_going);
    eprintln!(
        "model: {ran} schedules run, {} failing (seed {seed}, kinds {kinds:?}); {} runs, {} with faults: {} faults injected, {} runs cancelled, {} crashed",
        failures.len(),
        RUNS.load(Ordering::Relaxed),
        FAULTED_RUNS.load(Ordering::Relaxed),
        INJECTED.load(Ordering::Relaxed),
        CANCELLED.load(Ordering::Relaxed),
        CRASHED.load(Ordering::Relaxed),
    );
    assert!(failures.is_empty(), "{}", failures.join("\n=====\n"));
}

/// The reference model agrees with the seed's tables on single changes (a check of the
/// model itself, independent of the engine).
#[test]
fn the_model_follows_the_seed_tables() {
    let reg = {
        let mut r = Registry::default();
        for _ in 0..3 {
            r.new_version(3);
        }
        r
    };
    let ctx = |mode| Ctx {
        mode,
        initial: false,
        pref: InitialSyncPreference::Merge,
        strategy: ConflictStrategy::SourceWins,
        reg: &reg,
        same_run_spread: true,
    };
    let synced: Rec = Some((Some(0), Some(0)));
    let one = |mode: SyncMode, s: Option<Ver>, d: Option<Ver>, rec: Rec| {
        let outs = ctx(mode).predict(rec, s, d);
        assert_eq!(outs.len(), 1, "{mode}: {outs:?}");
        (outs[0].s, outs[0].d)
    };
    use SyncMode::*;
    // Add at source / destination.
    assert_eq!(one(TwoWay, Some(1), None, None), (Some(1), Some(1)));
    assert_eq!(one(SourceToDestination, None, Some(1), None), (None, None));
    assert_eq!(one(SourceBackup, None, Some(1), None), (Some(1), Some(1)));
    assert_eq!(one(DestinationToSource, Some(1), None, None), (None, None));
    assert_eq!(one(DestinationBackup, Some(1), None, None), (Some(1), None));
    // Delete at source.
    assert_eq!(one(TwoWay, None, Some(0), synced), (None, None));
    assert_eq!(one(SourceBackup, None, Some(0), synced), (None, Some(0)));
    assert_eq!(
        one(DestinationToSource, None, Some(0), synced),
        (Some(0), Some(0))
    );
    assert_eq!(
        one(DestinationBackup, None, Some(0), synced),
        (Some(0), Some(0))
    );
    // Delete at destination.
    assert_eq!(one(SourceBackup, Some(0), None, synced), (Some(0), Some(0)));
    assert_eq!(
        one(DestinationBackup, Some(0), None, synced),
        (Some(0), None)
    );
    // Modify at destination in a mirror from the source: overwritten.
    assert_eq!(
        one(SourceToDestination, Some(0), Some(1), synced),
        (Some(0), Some(0))
    );
    // Modify beats delete in two-way.
    assert_eq!(one(TwoWay, None, Some(1), synced), (Some(1), Some(1)));
    // Settled deletion: switching to two-way copies the kept copy back.
    assert_eq!(
        one(TwoWay, None, Some(0), Some((None, Some(0)))),
        (Some(0), Some(0))
    );
    assert_eq!(
        one(SourceBackup, None, Some(0), Some((None, Some(0)))),
        (None, Some(0))
    );
    assert_eq!(
        one(SourceToDestination, None, Some(0), Some((None, Some(0)))),
        (None, None)
    );
    // Conflict, source wins, loser kept.
    let outs = ctx(TwoWay).predict(synced, Some(1), Some(2));
    assert_eq!((outs[0].s, outs[0].d), (Some(1), Some(1)));
    assert_eq!(outs[0].losers[0].ver, 2);
    assert_eq!(
        conflict_origin("d/x.conflict-20240101T000000Z-source.txt").as_deref(),
        Some("d/x.txt")
    );
    assert_eq!(
        conflict_origin("x.conflict-20240101T000000Z-destination-2").as_deref(),
        Some("x")
    );
    assert_eq!(conflict_origin("x.txt"), None);
    assert_eq!(
        conflict_origin(
            "r.conflict-20240101T000000Z-destination.conflict-20240101T000001Z-source.txt"
        )
        .as_deref(),
        Some("r.conflict-20240101T000000Z-destination.txt")
    );
}
