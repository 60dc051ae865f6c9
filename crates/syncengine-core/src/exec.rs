//! The executor: carries out a [`Plan`] with bounded concurrency, keeping the base true after
//! every completed action.
//!
//! Order of work: base-only updates; then what makes room for a type change
//! ([`Action::makes_room`], and the deletes of a file `x` on the side that receives `x/…`, or
//! of `x/…` on the side that receives `x`, or, on a side that folds names, of a name that
//! folds to one written there, and the renames that free a name written there or a folder
//! written into); then renames,
//! conflicts and copies (up to `transfers` at once); then the copies those asked for (a kept
//! conflict loser going to the other side); then — unless the run was cancelled — the other
//! deletes. A failed action postpones only the deletes that depend on it (its path, the
//! folders above and below it, its rename pair); a systemic failure (disk full, lost
//! credentials, 10 failures in a row, more than half of at least 20 actions) postpones all.
//!
//! Before the engine deletes or overwrites a file it checks that the file is still what was
//! listed (a file changed since is left alone and reported), and hands the old version to the
//! side's [`Recovery`](crate::Recovery) (trash or backup dir).
//!
//! # Overwrites are staged; the path is never absent
//! The old version is first *preserved* ([`StorageClient::preserve`]: a hard link on local
//! disk and where SFTP servers offer one, a server-side copy elsewhere) into the trash or under
//! its conflict name; then the new content is written with an atomic write (temp file + rename
//! on local, SFTP and WebDAV; the PUT or multipart-complete on object stores) that replaces the
//! old one in one step. Each body is checked inside the stream ([`verify_body`]) for the listed
//! length and MD5, so a short, long or corrupt read makes the write abort before it commits. A
//! failed, short or cancelled transfer leaves the old version at its path. The spare copy made
//! for it is removed again only when the write failed for certain; after a cancellation or a
//! transient error (the write may still land) it stays, in the trash or under its conflict
//! name.
//!
//! The write replaces only the version that was listed ([`WriteMode::Update`] with its ETag,
//! else [`WriteMode::IfUnchanged`]): a file saved meanwhile is left in place and reported.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::client::{
    DeleteOptions, EntryStream, StorageClient, StorageClientExt, TransferOptions, WriteMode,
    WriteOptions,
};
use crate::collide::fold_name;
use crate::decide::kept_copy_goes_back;
use crate::entry::{ContentHash, Entry, Version, truncate_nanos};
use crate::error::{Error, SyncError};
use crate::ignore_rules::STATE_DIR_NAME;
use crate::mode::{ConflictLoser, Side, SyncMode};
use crate::path::RelPath;
use crate::plan::{Action, Plan};
use crate::progress::{ActionReport, ProgressEvent};
use crate::reconcile::BaseStream;
use crate::shared_flush::SharedFlush;
use crate::spill::{SpillVec, spill_error};
use crate::state::{BaseRecord, BaseUpdate, Intent, IntentBatch, SideRecord, StateStore};
use crate::stats::SyncStats;
use crate::verify::{Expected, verify_body};

/// Where a side's deleted and overwritten files go, resolved from
/// [`Recovery`](crate::Recovery) for one run.
#[derive(Clone, Debug)]
pub enum ResolvedRecovery {
    /// Gone for good.
    None,
    /// Moved to `.syncengine/trash/<stamp>/<path>` on the same side.
    Trash,
    /// Copied to `<stamp>/<path>` on this client first.
    BackupDir(Arc<dyn StorageClient>),
}

/// Runs a plan.
pub struct Executor {
    /// Source client.
    pub source: Arc<dyn StorageClient>,
    /// Destination client.
    pub destination: Arc<dyn StorageClient>,
    /// Where updates to the base go.
    pub store: StateStore,
    /// Progress channel.
    pub progress: Option<UnboundedSender<ProgressEvent>>,
    /// Cancellation.
    pub cancel: CancellationToken,
    /// UTC time of the run as `YYYYMMDDTHHMMSSZ`, used in trash and conflict names.
    pub stamp: String,
    /// Recovery of the source side.
    pub source_recovery: ResolvedRecovery,
    /// Recovery of the destination side.
    pub destination_recovery: ResolvedRecovery,
    /// What happens to conflict losers.
    pub conflict_loser: ConflictLoser,
    /// Actions in flight.
    pub transfers: usize,
    /// Attempts per primitive operation for transient errors.
    pub attempts: u32,
    /// The pair's mode: a kept conflict loser goes to the other side in the same run when the
    /// mode copies additions in that direction.
    pub mode: SyncMode,
    /// The state holds intents of an earlier, interrupted run (see [`recover_intents`]):
    /// they are cleared once the plan's base updates (which include what was recovered from
    /// them) are written, all but the [`suspects`](Executor::suspects).
    pub stale_intents: bool,
    /// The plan's actions that run apart from the rest ([`PlanTally::apart`](crate::plan::PlanTally::apart)): with none, the
    /// plan is read once, in order, instead of once more to take them out first.
    pub(crate) actions_apart: u64,
    /// The copies a failed flush covered that this run makes again ([`Recovered::suspects`]).
    pub suspects: Suspects,
    /// `--checksum`: the base keeps a content hash for every file it records where one is
    /// cheap to have, so an edit that keeps size and mtime is seen.
    pub checksum: bool,
    /// Conflict names handed out in this run: two long names cut to the same conflict name,
    /// resolved at the same time, must not both take it (on a store whose create-only copy
    /// is a check then a copy, the second would replace the first kept loser).
    pub(crate) conflict_names: std::sync::Mutex<HashSet<RelPath>>,
    /// Whether both sides are still there, checked after an action fails with a transient
    /// error ([`Reach`]).
    pub(crate) reach: Reach,
    /// Deletes that found their file gone since the listing (moved or deleted during the
    /// run): neither counted nor recorded (see [`Executor::remove`]).
    pub(crate) vanished: std::sync::atomic::AtomicU64,
    /// Per side (source, destination), the trash copies that runs since the last completed
    /// one left, by the path they were trashed from; listed once, at the side's first trash
    /// move by copy (see [`Executor::drop_extra_copies`]).
    pub(crate) recent_trash: [tokio::sync::OnceCell<HashMap<RelPath, Vec<RelPath>>>; 2],
    /// Per side (source, destination), the barriers of its backup dir, shared by the copies
    /// waiting on one at the same time ([`SharedFlush`]).
    pub(crate) backup_flushes: [SharedFlush; 2],
    /// Once cancelled, no new action starts; those in flight finish, and the run then ends
    /// as cancelled ([`crate::SyncEngine::with_stop_starting`]).
    pub(crate) stop_starting: Option<CancellationToken>,
    /// The side the run never writes to ([`crate::protect`]). The plan holds no action that
    /// changes it; the copies actions ask for as they run (a kept conflict loser going to the
    /// other side) are left out here, and counted as protected.
    pub protected: Option<Side>,
    /// Follow-up copies left out because they would write to the protected side.
    pub(crate) protected_follow_ups: std::sync::atomic::AtomicU64,
    /// Files (and their bytes) this run moved to a trash or copied to a backup dir before
    /// deleting or replacing them, counted as the action succeeds
    /// ([`SyncStats::trashed_files`]).
    pub(crate) trashed: Trashed,
    /// The run's ignore rules: a kept conflict loser whose name they exclude stays on its side.
    pub(crate) rules: Arc<crate::ignore_rules::IgnoreRules>,
    /// Files read in parallel ranges at once: one, so the run's largest buffers are held
    /// for one file however many large files it copies at once
    /// ([`crate::parallel_read::read_for_copy_bounded`]).
    pub(crate) ranged_files: Arc<tokio::sync::Semaphore>,
}

/// Counts of what a run moved to a trash or a backup dir.
#[derive(Debug, Default)]
pub(crate) struct Trashed {
    files: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

impl Trashed {
    fn add(&self, size: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.files.fetch_add(1, Relaxed);
        self.bytes.fetch_add(size, Relaxed);
    }

    /// Adds the counts to `stats`.
    pub(crate) fn count_into(&self, stats: &mut SyncStats) {
        use std::sync::atomic::Ordering::Relaxed;
        stats.trashed_files += self.files.load(Relaxed);
        stats.trashed_bytes += self.bytes.load(Relaxed);
    }
}

/// Whether a side was lost during the run.
///
/// A server that goes away mid-run makes every action fail, each after its own retries. So
/// when an action fails with a transient error (a refused or dropped connection, a timeout),
/// the executor checks both sides once with [`StorageClient::check_access`] (with the usual
/// retries). While it checks, no action starts; if a side fails the check it is *lost*: no
/// further action starts, those in flight finish or fail, no deletion runs, and the run ends
/// with [`SyncError::Unreachable`]. A failure that a check started after it already
/// answered for checks nothing again.
#[derive(Default)]
pub(crate) struct Reach {
    /// Held while a check runs; holds the time the last check started.
    checking: tokio::sync::Mutex<Option<Instant>>,
    /// Set once a side is lost.
    lost_flag: std::sync::atomic::AtomicBool,
    /// The side lost, and what its check met.
    lost: std::sync::Mutex<Option<(Side, Error)>>,
}

impl Reach {
    fn is_lost(&self) -> bool {
        self.lost_flag.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits for a check that is running; true when a side is lost (the action must not
    /// start).
    async fn lost_before_start(&self) -> bool {
        if self.is_lost() {
            return true;
        }
        drop(self.checking.lock().await);
        self.is_lost()
    }

    fn set_lost(&self, side: Side, error: Error) {
        let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        if lost.is_none() {
            *lost = Some((side, error));
        }
        self.lost_flag
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn take_lost(&self) -> Option<(Side, Error)> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The copies a failed flush covered, which a run makes again ([`Recovered::suspects`]):
/// they stay in the state, suspect, until the run has replaced each of them (made it again,
/// or overwritten or deleted it for a change of the other side) and a barrier has passed
/// after ([`StateStore::settle_suspects`]).
#[derive(Debug, Default)]
pub struct Suspects {
    /// The suspect copies' intents, in path order (one per path).
    intents: Vec<Intent>,
    /// The batch the state keeps them in, once the run has cleared the other intents.
    batch: std::sync::Mutex<Option<IntentBatch>>,
    /// Which of `intents` this run replaced.
    replaced: std::sync::Mutex<Vec<bool>>,
}

impl Suspects {
    /// The suspects of `intents`, which must be in path order with one intent per path (as
    /// [`Recovered::suspects`] is).
    pub fn new(intents: Vec<Intent>) -> Self {
        let replaced = std::sync::Mutex::new(vec![false; intents.len()]);
        Suspects {
            intents,
            batch: Default::default(),
            replaced,
        }
    }

    fn find(&self, side: Side, path: &RelPath) -> Option<usize> {
        let at = self.intents.binary_search_by(|i| i.path.cmp(path)).ok()?;
        (self.intents[at].to == side).then_some(at)
    }

    /// True when `path` on `side` holds a suspect copy this run has not replaced: it may be
    /// what the disk lost, so it never passes for a copy just made (see
    /// [`Executor::holds_copy`]).
    fn holds(&self, side: Side, path: &RelPath) -> bool {
        if self.intents.is_empty() {
            return false;
        }
        self.find(side, path).is_some_and(|at| {
            !self
                .replaced
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)[at]
        })
    }

    /// Notes the suspects `action`, done, replaced: a file written over one, or one deleted.
    fn done(&self, action: &Action) {
        if self.intents.is_empty() {
            return;
        }
        let mut hit: Vec<(Side, &RelPath)> = written_paths(action);
        if let Action::Delete { side, entry } = action {
            hit.push((*side, &entry.path));
        }
        for (side, path) in hit {
            if let Some(at) = self.find(side, path) {
                self.replaced
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)[at] = true;
            }
        }
    }

    /// The suspects not replaced.
    fn remaining(&self) -> Vec<Intent> {
        let replaced = self
            .replaced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.intents
            .iter()
            .zip(replaced.iter())
            .filter(|(_, r)| !**r)
            .map(|(i, _)| i.clone())
            .collect()
    }
}

/// What a finished action hands back.
struct Done {
    /// Base updates for what it did.
    updates: Vec<BaseUpdate>,
    /// Actions to run after this batch (the copy of a kept conflict loser).
    follow_ups: Vec<Action>,
    /// Intents the action recorded itself (the copies of conflict copies, whose names are
    /// chosen as it runs), cleared once its updates are written.
    intents: Vec<IntentBatch>,
    /// A delete that found its file gone since the listing: nothing was done, so it is not
    /// counted as done.
    vanished: bool,
    /// The versions a conflict kept under conflict names (side, name), for its report.
    kept_as: Vec<(Side, RelPath)>,
}

impl Done {
    fn updates(updates: Vec<BaseUpdate>) -> Self {
        Done {
            updates,
            follow_ups: Vec::new(),
            intents: Vec::new(),
            vanished: false,
            kept_as: Vec::new(),
        }
    }
}

enum Outcome {
    Done(Done),
    Failed(Error),
    Cancelled,
    /// Not started: a side was lost ([`Reach`]).
    NotStarted,
    /// Not started: the run is winding down ([`Executor::stop_starting`]).
    HeldBack,
    /// Recording intents failed: the run cannot go on safely.
    Fatal(SyncError),
}

/// Copies whose intents are recorded in one transaction, ahead of the copies.
const INTENT_BATCH: usize = 512;

/// The batch an action's intent was recorded in, and how many intents that batch holds.
#[derive(Clone, Copy)]
struct BatchShare {
    id: IntentBatch,
    count: usize,
}

/// The intent batches of a [`Executor::run_batch`] whose copies are not all finished: for
/// each, how many are still running and the intents that stay (failed or cancelled copies).
#[derive(Default)]
struct OpenBatches(std::collections::HashMap<IntentBatch, (usize, Vec<Intent>)>);

impl OpenBatches {
    /// Accounts for a finished copy of batch `share`, whose intent `stays` when the copy
    /// failed or was cancelled; returns the batch and the intents that stay once all of its
    /// copies are done.
    fn finished(
        &mut self,
        share: BatchShare,
        stays: Option<Intent>,
    ) -> Option<(IntentBatch, Vec<Intent>)> {
        let (left, remaining) = self
            .0
            .entry(share.id)
            .or_insert_with(|| (share.count, Vec::new()));
        *left = left.saturating_sub(1);
        remaining.extend(stays);
        if *left > 0 {
            return None;
        }
        self.0
            .remove(&share.id)
            .map(|(_, remaining)| (share.id, remaining))
    }
}

/// Failures in a row after which every delete of the run is postponed.
const SYSTEMIC_IN_A_ROW: u32 = 10;
/// With at least this many actions finished, more than half of them failing is systemic.
const SYSTEMIC_SHARE_MIN: u64 = 20;

/// How many base updates are written per transaction, and how long they may wait.
const FLUSH_EVERY: usize = 4096;
const FLUSH_AFTER: Duration = Duration::from_secs(2);

impl Executor {
    fn client(&self, side: Side) -> &Arc<dyn StorageClient> {
        match side {
            Side::Source => &self.source,
            Side::Destination => &self.destination,
        }
    }

    fn recovery(&self, side: Side) -> &ResolvedRecovery {
        match side {
            Side::Source => &self.source_recovery,
            Side::Destination => &self.destination_recovery,
        }
    }

    fn emit(&self, event: ProgressEvent) {
        if let Some(tx) = &self.progress {
            let _ = tx.send(event);
        }
    }

    /// Carries out `plan`, adding what was done to `stats`. The base updates `recovered`
    /// (copies an interrupted run landed, found again) are written first, then the plan's.
    ///
    /// # Errors
    /// [`SyncError::Cancelled`] after a cancellation (the base is true for what was done),
    /// [`SyncError::State`] when the base cannot be written. Failed actions are counted in
    /// `stats.errors`, not returned.
    pub async fn run(
        &self,
        plan: Plan,
        recovered: Vec<BaseUpdate>,
        stats: &mut SyncStats,
    ) -> Result<(), SyncError> {
        let mut writer = BaseWriter::new(
            self.store.clone(),
            [self.source.clone(), self.destination.clone()],
            self.attempts,
        );
        let result = self.run_with(&mut writer, plan, recovered, stats).await;
        if result.is_err() {
            // A run that ends by an error leaves no batch behind it: the one in flight is
            // written (or fails) before the run returns, never after, when the next run may
            // already have read the base. Its own error matters less than the run's.
            if let Err(e) = writer.wait_in_flight().await {
                tracing::warn!(error = %e, "a batch of base updates failed as the run ended");
            }
        }
        result
    }

    async fn run_with(
        &self,
        writer: &mut BaseWriter,
        plan: Plan,
        recovered: Vec<BaseUpdate>,
        stats: &mut SyncStats,
    ) -> Result<(), SyncError> {
        writer.extend(recovered).await?;
        for update in plan.state_updates.into_items() {
            writer
                .extend(std::iter::once(update.map_err(spill_error)?))
                .await?;
        }
        if self.stale_intents {
            // What the old intents told us is in the updates above: once those are written,
            // the intents have served.
            writer.flush().await?;
            // Except the copies a failed flush covered, which stay suspect (with the mark)
            // until this run has made them again.
            let store = self.store.clone();
            let suspects = self.suspects.intents.clone();
            let batch = blocking(move || store.restart_intents(&suspects)).await?;
            *self
                .suspects
                .batch
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = batch;
        }

        // One pass over the plan takes out the groups that run apart: the few that must go
        // first and the renames (which the pairing appended last) into memory, the deletes
        // into a temporary file like the plan's. The rest (the copies: all of a first run)
        // stays in the plan's file and is read from there as it runs. A plan with no such
        // group (one of copies only, as a first run's) skips this pass.
        let mut first = Vec::new();
        let mut renames = Vec::new();
        let mut deletes = plan.actions.sibling();
        let apart = (self.actions_apart > 0).then(|| plan.actions.iter());
        for action in apart.into_iter().flatten() {
            let action = action.map_err(spill_error)?;
            if action.makes_room() {
                first.push(action.into_owned());
            } else if action.is_delete() {
                deletes.push(action.into_owned());
                deletes.relieve().map_err(spill_error)?;
            } else if matches!(&*action, Action::Rename { .. }) {
                renames.push(action.into_owned());
            }
        }
        let others = plan.actions;
        let folds = [Side::Source, Side::Destination].map(|side| {
            let caps = self.client(side).capabilities();
            caps.case_insensitive || caps.normalization_insensitive
        });
        let (room, deletes) =
            split_making_room(deletes, &others, &renames, folds).map_err(spill_error)?;
        let mut vacating =
            take_renames_making_room(&mut renames, &others, folds).map_err(spill_error)?;
        let stepped = take_renames_in_two_steps([&mut vacating, &mut renames], folds);
        let early: Vec<Action> = first.into_iter().chain(room).chain(vacating).collect();
        let mut failures = Failures::default();
        let mut follow_ups = Vec::new();

        // Type changes: the old file (or folder) must go before the new entry can be written.
        // A side lost during a batch ends the run after it ([`Reach`]): nothing later runs,
        // the deletes least of all.
        let mut cancelled = self
            .run_batch(
                early.into_iter().map(Ok),
                stats,
                writer,
                &mut failures,
                &mut follow_ups,
            )
            .await?;
        self.stop_if_lost(writer).await?;
        if !cancelled && !stepped.is_empty() {
            cancelled = self
                .run_stepped(stepped, stats, writer, &mut failures, &mut follow_ups)
                .await?;
        }
        if !cancelled {
            // The renames go after the other actions, where the pairing put them.
            let none_apart = self.actions_apart == 0;
            let actions = others
                .into_items()
                .filter(move |a| {
                    let with_the_others = a.as_ref().map_or(true, runs_with_the_others);
                    // The engine's tally said there are none: one here would not run at all.
                    debug_assert!(with_the_others || !none_apart, "an action the tally missed");
                    with_the_others
                })
                .chain(renames.into_iter().map(Ok));
            cancelled = self
                .run_batch(actions, stats, writer, &mut failures, &mut follow_ups)
                .await?;
            self.stop_if_lost(writer).await?;
        }
        if !cancelled && !follow_ups.is_empty() {
            let batch = std::mem::take(&mut follow_ups);
            cancelled = self
                .run_batch(
                    batch.into_iter().map(Ok),
                    stats,
                    writer,
                    &mut failures,
                    &mut follow_ups,
                )
                .await?;
            self.stop_if_lost(writer).await?;
        }
        if cancelled {
            writer.flush().await?;
            self.settle_suspects().await?;
            return Err(SyncError::Cancelled);
        }

        let deletes = if let Some(reason) = failures.systemic() {
            if !deletes.is_empty() {
                stats.skipped += deletes.len() as u64;
                stats.warnings.push(format!(
                    "all {} deletion(s) postponed because {reason}; the next run retries them",
                    deletes.len()
                ));
            }
            SpillVec::new()
        } else {
            let mut deletes = deletes;
            let mut blocked = 0u64;
            deletes
                .retain(|d| {
                    let blocks = failures.blocks(d.path());
                    blocked += u64::from(blocks);
                    !blocks
                })
                .map_err(spill_error)?;
            if blocked > 0 {
                stats.skipped += blocked;
                stats.warnings.push(format!(
                    "{blocked} deletion(s) postponed because an action they depend on (same \
                     path, a folder above or below, a rename pair) failed; the next run \
                     retries them"
                ));
            }
            deletes
        };
        let cancelled = self
            .run_batch(
                deletes.into_items(),
                stats,
                writer,
                &mut failures,
                &mut follow_ups,
            )
            .await?;
        self.stop_if_lost(writer).await?;
        writer.flush().await?;
        self.settle_suspects().await?;
        if cancelled {
            return Err(SyncError::Cancelled);
        }
        Ok(())
    }

    /// Once the run's last barrier has passed: the suspect copies it replaced are no longer
    /// suspect, and a side left with none loses its mark ([`StateStore::settle_suspects`]).
    async fn settle_suspects(&self) -> Result<(), SyncError> {
        let batch = *self
            .suspects
            .batch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(batch) = batch else {
            return Ok(());
        };
        let remaining = self.suspects.remaining();
        let store = self.store.clone();
        blocking(move || store.settle_suspects(batch, &remaining)).await
    }

    /// Runs `work` unless the run is cancelled first (or while it runs): `None` then. A
    /// token cancelled already wins before `work` is polled at all.
    async fn unless_cancelled<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => None,
            r = work => Some(r),
        }
    }

    /// True once the run starts no new action ([`Executor::stop_starting`]).
    fn winding_down(&self) -> bool {
        self.stop_starting
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }

    /// Runs actions with bounded concurrency; returns true if the run was cancelled.
    async fn run_batch(
        &self,
        actions: impl Iterator<Item = std::io::Result<Action>> + Send,
        stats: &mut SyncStats,
        writer: &mut BaseWriter,
        failures: &mut Failures,
        follow_ups: &mut Vec<Action>,
    ) -> Result<bool, SyncError> {
        let mut cancelled = false;
        // Intents are recorded a batch at a time, each batch before any of its copies starts:
        // `then` holds the next batch back until its intents are committed.
        // The batches are cut as the copies go, not all up front: a second copy of a long
        // action list would double the run's peak memory.
        let store = self.store.clone();
        let reach = &self.reach;
        let items = futures::stream::iter(actions)
            // Once a side is lost, the actions not taken yet are left: no intent is recorded
            // for them, and the next run plans them again.
            .take_while(move |_| std::future::ready(!reach.is_lost()))
            .chunks(INTENT_BATCH)
            .then(move |batch| {
                let store = store.clone();
                async move {
                    // The plan's temporary file failed: the run stops before this batch.
                    let batch: Vec<Action> = match batch.into_iter().collect() {
                        Ok(batch) => batch,
                        Err(e) => {
                            let items: Vec<Result<(Action, Option<BatchShare>), SyncError>> =
                                vec![Err(spill_error(e))];
                            return futures::stream::iter(items);
                        }
                    };
                    let intents: Vec<Intent> = batch.iter().filter_map(intent_of).collect();
                    let count = intents.len();
                    let recorded = if intents.is_empty() {
                        Ok(None)
                    } else {
                        blocking(move || store.record_intents(&intents))
                            .await
                            .map(|id| Some(BatchShare { id, count }))
                    };
                    let items: Vec<Result<(Action, Option<BatchShare>), SyncError>> = match recorded
                    {
                        Ok(share) => batch.into_iter().map(|a| Ok((a, share))).collect(),
                        Err(e) => vec![Err(e)],
                    };
                    futures::stream::iter(items)
                }
            })
            .flatten();
        let results = items
            .map(|item| async move {
                let (action, share) = match item {
                    Ok(item) => item,
                    Err(e) => return (None, Outcome::Fatal(e)),
                };
                if self.reach.lost_before_start().await {
                    return (Some((action, share)), Outcome::NotStarted);
                }
                if self.winding_down() {
                    return (Some((action, share)), Outcome::HeldBack);
                }
                let outcome = match self.unless_cancelled(self.perform(&action)).await {
                    None => Outcome::Cancelled,
                    Some(Ok(done)) => Outcome::Done(done),
                    Some(Err(e)) => {
                        if e.is_transient() {
                            // A cancel meanwhile ends the check: the run stops anyway.
                            let _ = self
                                .unless_cancelled(self.check_sides(Instant::now()))
                                .await;
                        }
                        Outcome::Failed(e)
                    }
                };
                (Some((action, share)), outcome)
            })
            .buffer_unordered(self.transfers.max(1));
        let mut results = std::pin::pin!(results);
        let mut open_batches = OpenBatches::default();
        while let Some((action, outcome)) = results.next().await {
            let ((action, share), outcome) = match (action, outcome) {
                (_, Outcome::Fatal(e)) => return Err(e),
                (None, _) => continue,
                (Some(item), outcome) => (item, outcome),
            };
            // A finished copy's intent goes once its record is written. A failed one's stays:
            // the write may have committed before its reply was lost, and the next run then
            // finds the copy in place and records it (else an edit of the other side would
            // look like a conflict); a copy that did not land leaves nothing to record. So
            // does a cancelled one's: the copy may or may not have landed.
            if let Some(share) = share.filter(|_| intended(&action).is_some()) {
                // Built again only for the few that stay: a first run's copies all go.
                let stays = (!matches!(outcome, Outcome::Done(_)))
                    .then(|| intent_of(&action))
                    .flatten();
                if let Some((id, remaining)) = open_batches.finished(share, stays) {
                    writer.settle(id, remaining);
                }
            }
            match outcome {
                Outcome::Cancelled => {
                    cancelled = true;
                    continue;
                }
                // Its intent (if any) stays, as a cancelled copy's does: the next run finds
                // nothing landed and copies it.
                Outcome::NotStarted => continue,
                // So does a held back one's; the run ends as cancelled.
                Outcome::HeldBack => {
                    cancelled = true;
                    continue;
                }
                _ => {}
            }
            self.account(action, outcome, stats, writer, failures, follow_ups)
                .await?;
        }
        Ok(cancelled)
    }

    /// Counts a finished or failed action into `stats` and `failures`, reports it, and hands
    /// its base updates to `writer`.
    async fn account(
        &self,
        action: Action,
        outcome: Outcome,
        stats: &mut SyncStats,
        writer: &mut BaseWriter,
        failures: &mut Failures,
        follow_ups: &mut Vec<Action>,
    ) -> Result<(), SyncError> {
        match outcome {
            Outcome::Done(done) => {
                for batch in done.intents {
                    writer.settle(batch, Vec::new());
                }
                self.suspects.done(&action);
                failures.succeeded();
                if done.vanished {
                    self.vanished
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // A rename whose old file was gone: the new file was copied, and counts
                    // as a copy; only the delete of the old one did not happen.
                    if let Action::Rename { seen_on, to, .. } = &action {
                        Action::Copy {
                            from: *seen_on,
                            entry: to.clone(),
                            target: None,
                        }
                        .count_into(stats);
                    }
                } else {
                    action.count_into(stats);
                }
                self.emit(ProgressEvent::Done {
                    path: action.path().clone(),
                    kind: action.kind(),
                    report: ActionReport::of(&action, done.kept_as),
                });
                for follow_up in done.follow_ups {
                    match self.protected {
                        Some(side) if crate::protect::writes_to(&follow_up, side) => {
                            self.skip_protected(&follow_up, side, stats);
                        }
                        _ => follow_ups.push(follow_up),
                    }
                }
                writer.extend(done.updates).await?;
            }
            Outcome::Failed(error) => {
                failures.failed(&action, &error);
                if let Some((side, path)) = self.folded_twin(&action, &error).await {
                    // Two names that side holds as one, which the plan could not see (the
                    // twin is new there and nothing was to be done about it): a collision,
                    // left alone and named, as for the ones found before the run.
                    stats.unknown += 1;
                    let w = format!(
                        "{path:?} could not be written on the {side}, which holds another \
                         name that differs from it only in letter case or Unicode \
                         normalisation: they are one name there; left alone this run, rename \
                         one of them"
                    );
                    tracing::warn!(%side, %path, "name collision found while writing");
                    self.emit(ProgressEvent::Warning(w.clone()));
                    stats.warnings.push(w);
                    return Ok(());
                }
                stats.errors += 1;
                let message = format!("{}: {}", action.path(), error);
                // Trace only: the error reaches the user once, through the run's result
                // and the event below (the CLI prints it, with -v as it happens, or its
                // cause's summary); -v shows debug logs, which would print it twice.
                tracing::trace!(path = %action.path(), %error, "action failed");
                stats.error_messages.push(message);
                self.emit(ProgressEvent::Failed {
                    path: action.path().clone(),
                    kind: action.kind(),
                    error: error.to_string(),
                    report: ActionReport::of(&action, Vec::new()),
                });
            }
            Outcome::Cancelled | Outcome::NotStarted | Outcome::HeldBack | Outcome::Fatal(_) => {}
        }
        Ok(())
    }

    /// Counts a follow-up copy left out because it would write to the protected `side`, and
    /// names the first few in a warning.
    fn skip_protected(&self, action: &Action, side: Side, stats: &mut SyncStats) {
        stats.protected += 1;
        let n = self
            .protected_follow_ups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(path = %action.path(), %side, "protected: the kept copy is not copied there");
        if n < crate::protect::NAMED_PROTECTED as u64 {
            let w = format!(
                "{} stays on the {} only: the protected {side} does not get it \
                 (--protect {side}); the next run reports it again",
                action.path(),
                side.other()
            );
            self.emit(ProgressEvent::Warning(w.clone()));
            stats.warnings.push(w);
        }
    }

    /// Checks both sides after an action failed with a transient error at `failed_at`; marks
    /// a side that fails the check as lost (see [`Reach`]). Actions wait while it runs.
    async fn check_sides(&self, failed_at: Instant) {
        let mut last = self.reach.checking.lock().await;
        if self.reach.is_lost() || last.is_some_and(|started| started >= failed_at) {
            return;
        }
        *last = Some(Instant::now());
        for side in [Side::Source, Side::Destination] {
            let client = self.client(side);
            match self.retry(|| client.check_access()).await {
                Ok(()) => tracing::debug!(%side, "still reachable after a transient failure"),
                Err(e) => {
                    tracing::warn!(%side, error = %e, "side lost during the run; stopping");
                    self.reach.set_lost(side, e);
                    return;
                }
            }
        }
    }

    /// Ends the run when a side was lost ([`Reach`]): what was done is written to the base,
    /// then the run fails with [`SyncError::Unreachable`].
    async fn stop_if_lost(&self, writer: &mut BaseWriter) -> Result<(), SyncError> {
        let Some((side, source)) = self.reach.take_lost() else {
            return Ok(());
        };
        // Nothing written is nothing claimed: a failure here only leaves records out, which
        // the next run makes again from what it finds.
        if let Err(e) = writer.flush().await {
            tracing::warn!(error = %e, "could not record the actions done before a side was lost");
        }
        Err(SyncError::Unreachable {
            side,
            root: self.client(side).to_string(),
            source,
            during_run: true,
        })
    }

    /// For a write of a new name that failed because the name is taken, on a side that
    /// folds names: the side and path when that name is not there as spelled — another
    /// spelling of it is (`a.txt` refused for `A.txt`).
    async fn folded_twin(&self, action: &Action, error: &Error) -> Option<(Side, RelPath)> {
        if !matches!(error, Error::AlreadyExists { .. }) {
            return None;
        }
        let (side, path) = match action {
            Action::Copy {
                from,
                entry,
                target: None,
            } => (from.other(), &entry.path),
            Action::Rename { seen_on, to, .. } => (seen_on.other(), &to.path),
            _ => return None,
        };
        let client = self.client(side);
        let caps = client.capabilities();
        if !(caps.case_insensitive || caps.normalization_insensitive) {
            return None;
        }
        let exact = exact_names(client.as_ref(), std::iter::once(path)).await;
        (!exact.contains(path.as_str())).then(|| (side, path.clone()))
    }

    /// Runs renames that must go in two steps on a side that folds names (see
    /// [`take_renames_in_two_steps`]): every old name moves aside first, then each goes
    /// on to its new name. Returns true if the run was cancelled.
    ///
    /// The old names wait in `<root>/.syncengine/stepping/<stamp>/`, not in the trash: a
    /// rename whose second step fails is put back at its old name, and what a killed run left
    /// there is put back by the next run before it lists the side
    /// ([`return_stepped_files`]), so the side never looks emptied and nothing stays behind.
    /// No intent is recorded: on such a side a stat of the new name may find the old file,
    /// which an intent would take for the landed copy (F17).
    async fn run_stepped(
        &self,
        renames: Vec<Action>,
        stats: &mut SyncStats,
        writer: &mut BaseWriter,
        failures: &mut Failures,
        follow_ups: &mut Vec<Action>,
    ) -> Result<bool, SyncError> {
        let mut cancelled = false;
        // Both steps of a rename belong together: once the first has started, the second
        // runs even while the run winds down.
        if self.winding_down() {
            return Ok(true);
        }
        let transfers = self.transfers.max(1);
        let first = futures::stream::iter(renames)
            .map(|action| async move {
                let stepped = self.unless_cancelled(self.step_aside(&action)).await;
                (action, stepped)
            })
            .buffer_unordered(transfers)
            .collect::<Vec<_>>()
            .await;
        let mut second = Vec::with_capacity(first.len());
        for (action, stepped) in first {
            match stepped {
                None => cancelled = true,
                Some(Err(e)) => {
                    self.account(
                        action,
                        Outcome::Failed(e),
                        stats,
                        writer,
                        failures,
                        follow_ups,
                    )
                    .await?;
                }
                Some(Ok(at)) => second.push((action, at)),
            }
        }
        if cancelled {
            // The old names stay in the trash; the next run copies the new ones.
            return Ok(true);
        }
        let finished = futures::stream::iter(second)
            .map(|(action, at)| async move {
                let outcome = match self.step_in(&action, at).await {
                    Ok(updates) => Outcome::Done(Done::updates(updates)),
                    Err(e) => Outcome::Failed(e),
                };
                (action, outcome)
            })
            .buffer_unordered(transfers)
            .collect::<Vec<_>>()
            .await;
        for (action, outcome) in finished {
            self.account(action, outcome, stats, writer, failures, follow_ups)
                .await?;
        }
        Ok(false)
    }

    /// The first step of a two-step rename: its old name moves aside (to the stepping
    /// folder), checked to be the version listed. Returns where it went (`None` when it was
    /// gone already).
    async fn step_aside(&self, action: &Action) -> Result<Option<RelPath>, Error> {
        let Action::Rename { seen_on, from, .. } = action else {
            return Ok(None);
        };
        let side = seen_on.other();
        if !self.still_as_listed(side, from).await? {
            return Ok(None);
        }
        let at = self
            .move_into(side, &from.path, STEPPING_AREA, &mut Vec::new())
            .await?;
        self.check_trashed(side, from, at.clone()).await?;
        Ok(at)
    }

    /// The second step of a two-step rename: from the stepping folder (`at`) to the new name,
    /// or, when the old file was gone, a copy of the new one.
    async fn step_in(
        &self,
        action: &Action,
        at: Option<RelPath>,
    ) -> Result<Vec<BaseUpdate>, Error> {
        let Action::Rename {
            seen_on, from, to, ..
        } = action
        else {
            return Ok(Vec::new());
        };
        let (seen_on, side) = (*seen_on, seen_on.other());
        let client = self.client(side);
        let written = match at {
            None => {
                self.transfer(seen_on, &to.path, side, &to.path, WriteMode::Create, to)
                    .await?
            }
            Some(at) => {
                let opts = TransferOptions::default();
                match self
                    .retry(|| client.rename_opts(&at, &to.path, opts.clone()))
                    .await
                {
                    Ok(mut written) => {
                        // The renamed file holds the old file's content: it keeps its hash.
                        if written.hash.is_none() {
                            written.hash = from.hash.clone();
                        }
                        written
                    }
                    Err(e) => match self.holds_copy(seen_on, to, side, &to.path).await {
                        Some(now) if !self.exists(side, &at).await => now,
                        _ => {
                            let back = self
                                .retry(|| client.rename_opts(&at, &from.path, opts.clone()))
                                .await;
                            if let Err(back) = back {
                                tracing::warn!(path = %from.path, %side, kept_as = %at, error = %back, "a rename failed half-way; the next run puts the file back");
                            }
                            return Err(e);
                        }
                    },
                }
            }
        };
        Ok(vec![
            BaseUpdate::Remove(from.path.clone()),
            BaseUpdate::Put(record(seen_on, to, &written)),
        ])
    }

    async fn perform(&self, action: &Action) -> Result<Done, Error> {
        self.emit(ProgressEvent::Started {
            path: action.path().clone(),
            kind: action.kind(),
            bytes: action.bytes(),
        });
        let span = tracing::debug_span!("action", path = %action.path(), kind = ?action.kind());
        let _enter = span.enter();
        match action {
            Action::Copy {
                from,
                entry,
                target,
            } => {
                let written = self.copy_over(*from, entry, target.as_ref()).await?;
                Ok(Done::updates(vec![BaseUpdate::Put(record(
                    *from, entry, &written,
                ))]))
            }
            Action::Delete { side, entry } => {
                if self.remove(*side, entry).await? {
                    Ok(Done::updates(vec![BaseUpdate::Remove(entry.path.clone())]))
                } else {
                    // Gone since the listing, by someone else's hand: perhaps deleted, perhaps
                    // moved away for a moment (a folder renamed and back). The base keeps its
                    // record, so the next run looks at the path again instead of taking a
                    // file that comes back for a new one.
                    tracing::info!(%side, path = %entry.path, "the file to delete was gone already; not recorded");
                    Ok(Done {
                        vanished: true,
                        ..Done::updates(Vec::new())
                    })
                }
            }
            Action::Rename {
                seen_on,
                from,
                to,
                keep_old,
            } => self.mirror_rename(*seen_on, from, to, *keep_old).await,
            Action::Conflict {
                source,
                destination,
                winner,
            } => match winner {
                Some(w) => {
                    let (win, lose) = match w {
                        Side::Source => (source, destination),
                        Side::Destination => (destination, source),
                    };
                    self.settle_conflict(*w, win, lose).await
                }
                None => self.keep_both(source, destination).await,
            },
            Action::SetAside {
                kept_side,
                kept,
                new,
            } => self.set_aside(*kept_side, kept, new).await,
            Action::MoveAside {
                side,
                entry,
                share,
                settled,
            } => self.move_aside(*side, entry, *share, *settled).await,
        }
    }

    /// Copies `entry` from side `from` over whatever the other side has (`target`).
    async fn copy_over(
        &self,
        from: Side,
        entry: &Entry,
        target: Option<&Entry>,
    ) -> Result<Entry, Error> {
        match target {
            None => {
                self.transfer(
                    from,
                    &entry.path,
                    from.other(),
                    &entry.path,
                    WriteMode::Create,
                    entry,
                )
                .await
            }
            Some(t) => Ok(self.replace(from, entry, t, Keep::Recovery).await?.0),
        }
    }

    /// Writes `new` from side `from` over `existing` on the other side, staged so that the
    /// path is never absent: `existing` is first kept as `keep` says — at a conflict name, by
    /// a copy an earlier attempt already made, or by the side's recovery (a preserved copy in
    /// the trash, a copy in the backup dir); then an atomic write replaces it. Returns the
    /// written entry and the kept copy, if there is one.
    ///
    /// A failed or cancelled write leaves `existing` at its path, and the preserved copy is
    /// removed again while `existing` is still there.
    async fn replace(
        &self,
        from: Side,
        new: &Entry,
        existing: &Entry,
        keep: Keep<'_>,
    ) -> Result<(Entry, Option<Entry>), Error> {
        let side = from.other();
        let client = self.client(side);
        if !self.still_as_listed(side, existing).await? {
            let written = self
                .transfer(from, &new.path, side, &new.path, WriteMode::Create, new)
                .await?;
            return Ok((written, None));
        }
        let to_recovery = matches!(keep, Keep::Recovery)
            && !matches!(self.recovery(side), ResolvedRecovery::None);
        let kept = match keep {
            Keep::Already(spare) => Some(spare),
            Keep::At(aside) => Some(self.preserve_at(side, existing, aside).await?),
            Keep::Recovery => match self.recovery(side) {
                ResolvedRecovery::Trash => Some(self.preserve_in_trash(side, existing).await?),
                ResolvedRecovery::BackupDir(backup) => {
                    self.copy_to_backup(side, existing, backup).await?;
                    None
                }
                ResolvedRecovery::None => None,
            },
        };
        let undo = Undo {
            client: client.clone(),
            copy: kept.as_ref().map(|k| k.path.clone()),
            original: existing.clone(),
        };
        let mode = self.overwrite_mode(side, existing);
        let written = match self
            .transfer(from, &new.path, side, &new.path, mode.clone(), new)
            .await
        {
            // A backend of another crate that cannot check before it replaces: as before.
            Err(Error::Unsupported { .. }) if matches!(mode, WriteMode::IfUnchanged(_)) => {
                tracing::debug!(
                    backend = client.backend(),
                    "no checked replace (WriteMode::IfUnchanged); overwriting after the stat"
                );
                self.transfer(from, &new.path, side, &new.path, WriteMode::Overwrite, new)
                    .await
            }
            other => other,
        };
        match written {
            Ok(written) => {
                undo.disarm();
                if to_recovery {
                    self.trashed.add(existing.size);
                }
                Ok((written, kept))
            }
            // A transient failure (a timeout, a lost reply) may have committed on the server
            // after all: the spare copy stays, as after a cancellation.
            Err(e) if e.is_transient() => {
                undo.disarm();
                Err(e)
            }
            Err(e) => {
                undo.run().await;
                Err(e)
            }
        }
    }

    /// Preserves `existing` on `side` at `aside`, a conflict name. A call that failed after
    /// the copy was made (a lost reply) counts as made when `aside` holds exactly
    /// `existing`: else the action would fail and the next run make a second conflict copy,
    /// the first one left as a file of its own that nothing records.
    async fn preserve_at(
        &self,
        side: Side,
        existing: &Entry,
        aside: &RelPath,
    ) -> Result<Entry, Error> {
        let client = self.client(side);
        match self.retry(|| client.preserve(&existing.path, aside)).await {
            // The copy holds the listed content: it keeps the listed hash where its own
            // listing has none (the base records it; `--checksum` compares with it).
            Ok(mut kept) => {
                if kept.hash.is_none() {
                    kept.hash = existing.hash.clone();
                }
                Ok(kept)
            }
            Err(e @ Error::Unsupported { .. }) => Err(e),
            Err(e) => match self.holds_copy(side, existing, side, aside).await {
                Some(kept) => {
                    tracing::info!(path = %aside, error = %e, "the copy failed but is in place; kept");
                    Ok(kept)
                }
                None => Err(e),
            },
        }
    }

    /// How an overwrite makes sure it replaces only the version that was listed: by its
    /// version token where the backend compares one, else by a check of size, mtime and
    /// inode right before the commit ([`WriteMode::IfUnchanged`]). Either way a file the
    /// user saved while the new content was on its way is left alone and reported.
    fn overwrite_mode(&self, side: Side, existing: &Entry) -> WriteMode {
        match (
            &existing.etag,
            self.client(side).capabilities().conditional_write,
        ) {
            (Some(etag), true) => WriteMode::Update(etag.clone()),
            _ => WriteMode::IfUnchanged(Version::of(existing)),
        }
    }

    /// Returns true when the file is still the listed version, false when it is gone, and
    /// `PreconditionFailed` when it changed since it was listed (it is then left alone).
    async fn still_as_listed(&self, side: Side, listed: &Entry) -> Result<bool, Error> {
        let client = self.client(side);
        match self.retry(|| client.stat(&listed.path)).await {
            Ok(now) => {
                if same_version(&now, listed) {
                    Ok(true)
                } else {
                    Err(Error::PreconditionFailed {
                        backend: client.backend(),
                        path: listed.path.to_string(),
                        source: Some("the file changed during the sync; left alone".into()),
                    })
                }
            }
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes `entry` on `side`, through the side's recovery. Returns false when the file
    /// was gone before this delete touched it (found missing by the check, by the move to
    /// the trash, or by the delete itself): the delete did nothing, and must not be recorded
    /// as done.
    ///
    /// Without a trash, the delete asks to be told of a missing file
    /// ([`DeleteOptions::report_missing`]); only on a backend that cannot tell (S3) does a
    /// file that goes between the check and the delete still count as deleted.
    async fn remove(&self, side: Side, entry: &Entry) -> Result<bool, Error> {
        if !self.still_as_listed(side, entry).await? {
            return Ok(false);
        }
        let client = self.client(side);
        match self.recovery(side) {
            ResolvedRecovery::Trash => {
                // Where the move is a copy and a delete, an earlier move may have failed
                // after its copy (the delete of the original failed): that copy is still in
                // the trash. Found before the move, dropped after it (below).
                let mut extra = self.earlier_trash_copies(side, &entry.path).await;
                let trashed = match self.move_to_trash(side, &entry.path, &mut extra).await {
                    // No move there (a file on a filesystem mounted inside a local root,
                    // whose trash is on the root's): kept in the trash by a link or a flushed
                    // copy, then deleted as a backup dir's original is.
                    Err(Error::Unsupported { .. }) => {
                        return self.keep_in_trash_and_delete(side, entry).await;
                    }
                    moved => moved?,
                };
                let Some(trashed) = trashed else {
                    return Ok(false);
                };
                self.drop_extra_copies(side, &trashed, extra).await;
                self.check_trashed(side, entry, Some(trashed)).await?;
                self.trashed.add(entry.size);
                Ok(true)
            }
            ResolvedRecovery::BackupDir(backup) => {
                self.copy_to_backup(side, entry, backup).await?;
                // The copy took a while: a version saved meanwhile is not the one backed up.
                if !self.still_as_listed(side, entry).await? {
                    return Ok(false);
                }
                let opts = DeleteOptions::default().with_if_version(Version::of(entry));
                self.retry(|| client.delete_opts(&entry.path, opts.clone()))
                    .await?;
                self.trashed.add(entry.size);
                Ok(true)
            }
            ResolvedRecovery::None => {
                let opts = DeleteOptions::default()
                    .with_report_missing(true)
                    .with_if_version(Version::of(entry));
                let attempts = std::sync::atomic::AtomicU32::new(0);
                match self
                    .retry(|| {
                        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        client.delete_opts(&entry.path, opts.clone())
                    })
                    .await
                {
                    Ok(()) => Ok(true),
                    // Missing at the first attempt: gone by someone else's hand. At a retry
                    // it may be the earlier attempt's doing (its reply lost): counted done.
                    Err(e) if e.is_not_found() => {
                        Ok(attempts.load(std::sync::atomic::Ordering::Relaxed) > 1)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Deletes `entry` on `side` where the backend cannot move it into the trash
    /// ([`Error::Unsupported`]): the trash keeps it by [`StorageClient::preserve`] (a link, or
    /// a copy flushed to disk before this goes on), then the file is deleted if it is still
    /// the version listed — as a backup dir's original is ([`ResolvedRecovery::BackupDir`]).
    /// A version saved after the preserve is left in place (and the trash keeps the listed
    /// one); the delete fails with the check's error so the next run sees the new version.
    async fn keep_in_trash_and_delete(&self, side: Side, entry: &Entry) -> Result<bool, Error> {
        let kept = self.preserve_in_trash(side, entry).await?;
        // The trash must hold the version listed, not one saved between the first check and
        // the preserve: a copy is a new file (its own id), so size and time are compared.
        let listed = Version {
            etag: None,
            file_id: None,
            ..Version::of(entry)
        };
        let client = self.client(side);
        if !listed.matches(&kept) && !coarser_copy_of(entry, &kept) {
            return Err(Error::PreconditionFailed {
                backend: client.backend(),
                path: entry.path.to_string(),
                source: Some("the file changed while it was kept in the trash; left alone".into()),
            });
        }
        // Changed meanwhile: the check's error; gone: not this delete's doing.
        if !self.still_as_listed(side, entry).await? {
            return Ok(false);
        }
        let opts = DeleteOptions::default().with_if_version(Version::of(entry));
        self.retry(|| client.delete_opts(&entry.path, opts.clone()))
            .await?;
        self.trashed.add(entry.size);
        Ok(true)
    }

    /// The run's folder name in the trash or backup dir; `n` > 1 picks a fresh one when the
    /// first is taken (never overwriting an earlier copy).
    fn stamped_folder(&self, n: u32) -> String {
        if n == 1 {
            self.stamp.clone()
        } else {
            format!("{}-{n}", self.stamp)
        }
    }

    /// Where `path` goes in the side's trash; `n` > 1 picks a fresh run folder.
    fn trash_path(&self, path: &RelPath, n: u32) -> Result<RelPath, Error> {
        self.area_path("trash", path, n)
    }

    /// Where `path` goes in the engine's folder `area` (`trash`, `stepping`) of its root.
    fn area_path(&self, area: &str, path: &RelPath, n: u32) -> Result<RelPath, Error> {
        RelPath::new(format!(
            "{STATE_DIR_NAME}/{area}/{}/{path}",
            self.stamped_folder(n)
        ))
    }

    /// A save can land between the check that a file is as listed and the move that takes it
    /// to the trash: then a native move (local disk, SFTP, WebDAV) took a version the run
    /// never saw, and the delete must not stand. The trashed file is compared with the listed version (size, time and file id;
    /// not the ETag, which some servers derive from the path) and, when it differs, put back
    /// where it was — or, if its path was taken again meanwhile, left in the trash — and the
    /// delete fails with [`Error::PreconditionFailed`], so the next run sees the new version.
    async fn check_trashed(
        &self,
        side: Side,
        listed: &Entry,
        trashed: Option<RelPath>,
    ) -> Result<(), Error> {
        let Some(trashed) = trashed else {
            return Ok(());
        };
        let client = self.client(side);
        // Only a native move takes whatever is at the path. Object stores move by copy and
        // delete: the copy is a new object (its own time), and their delete is already tied
        // to the listed version (S3: If-Match) or re-checked right before it.
        if !client.capabilities().native_rename {
            return Ok(());
        }
        let moved = match self.retry(|| client.stat(&trashed)).await {
            Ok(moved) => moved,
            // Nothing to compare with: the move itself was as listed-checked as before.
            Err(_) => return Ok(()),
        };
        let listed_version = Version {
            etag: None,
            ..Version::of(listed)
        };
        if listed_version.matches(&moved) {
            return Ok(());
        }
        let put_back = self
            .retry(|| client.rename_opts(&trashed, &listed.path, TransferOptions::default()))
            .await;
        let kept = match &put_back {
            Ok(_) => "put back at its path".to_owned(),
            Err(_) => format!("kept in the trash as {trashed}"),
        };
        tracing::warn!(%side, path = %listed.path, "a version saved during the delete was {kept}");
        Err(Error::other(
            client.backend(),
            listed.path.as_str(),
            format!(
                "changed while it was being deleted: the new version was {kept}; the delete \
                 is not done"
            ),
        ))
    }

    /// Moves `path` to the side's trash; returns where it went (`None` when it was gone).
    /// The trash names found taken on the way are added to `taken`.
    async fn move_to_trash(
        &self,
        side: Side,
        path: &RelPath,
        taken: &mut Vec<RelPath>,
    ) -> Result<Option<RelPath>, Error> {
        self.move_into(side, path, "trash", taken).await
    }

    /// Moves `path` into the engine's folder `area` of its root, under this run's stamp;
    /// returns where it went (`None` when it was gone). The names found taken on the way
    /// (`AlreadyExists`) are added to `taken`: one may hold the copy of a retried move by
    /// copy and delete whose delete had failed.
    async fn move_into(
        &self,
        side: Side,
        path: &RelPath,
        area: &str,
        taken: &mut Vec<RelPath>,
    ) -> Result<Option<RelPath>, Error> {
        let client = self.client(side);
        for n in 1u32.. {
            let target = self.area_path(area, path, n)?;
            match self
                .retry(|| client.rename_opts(path, &target, TransferOptions::default()))
                .await
            {
                Ok(_) => return Ok(Some(target)),
                Err(Error::AlreadyExists { .. }) if n < 100 => {
                    taken.push(target);
                    continue;
                }
                Err(e) => {
                    // The file is gone (nothing left to trash), or the trash path is in the
                    // way — which some backends report as "not found" too (a file where a
                    // folder of the path should be: ENOTDIR). The file itself tells which.
                    // Gone may be this move's own doing: an attempt that went through before
                    // its reply was lost, retried. Then the target holds it.
                    match client.stat(path).await {
                        Err(gone) if gone.is_not_found() => {
                            return Ok(self.exists(side, &target).await.then_some(target));
                        }
                        _ => {}
                    }
                    if n < 100 && in_the_way(client.as_ref(), &target).await {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    /// On a side whose moves are a copy and a delete, the trash copies of `path` that earlier
    /// moves may have left ([`recent_trash_copies`](Self::recent_trash_copies)); none where
    /// moves are native (nothing is copied, so nothing can be left).
    async fn earlier_trash_copies(&self, side: Side, path: &RelPath) -> Vec<RelPath> {
        if self.client(side).capabilities().native_rename {
            return Vec::new();
        }
        self.recent_trash_copies(side, path).await
    }

    /// The trash copies of `path` on `side` made by this run or the runs since the last
    /// completed one (all runs, if none completed): only a run that failed can have left a
    /// copy of a file it did not finish deleting. The side's trash is listed once per run, at
    /// the first call; a listing that fails finds nothing (the move then works as before).
    async fn recent_trash_copies(&self, side: Side, path: &RelPath) -> Vec<RelPath> {
        let index = self.recent_trash[side.index()]
            .get_or_init(|| self.list_recent_trash(side))
            .await;
        index.get(path).cloned().unwrap_or_default()
    }

    /// Lists the stamp folders of the side's trash from the last completed run on (see
    /// [`recent_trash_copies`](Self::recent_trash_copies)), by the path each file was
    /// trashed from.
    async fn list_recent_trash(&self, side: Side) -> HashMap<RelPath, Vec<RelPath>> {
        let mut index: HashMap<RelPath, Vec<RelPath>> = HashMap::new();
        let since = {
            let store = self.store.clone();
            blocking(move || store.last_completed()).await
        };
        let since = match since {
            Ok(since) => since.map(|t| crate::engine::stamp_at(t.into())),
            Err(e) => {
                tracing::debug!(%side, "reading the last completed run: {e}");
                return index;
            }
        };
        let Ok(folder) = RelPath::new(format!("{STATE_DIR_NAME}/trash")) else {
            return index;
        };
        let recent = Arc::new(move |stamp_folder: &str| {
            stamp_folder.get(..16).is_some_and(|stamp| {
                crate::engine::is_stamp(stamp)
                    && (stamp_folder.len() == 16 || stamp_folder.as_bytes()[16] == b'-')
                    && since.as_deref().is_none_or(|since| stamp >= since)
            })
        });
        let inside = format!("{folder}/");
        let prune: crate::client::PruneFn = {
            let (inside, recent) = (inside.clone(), recent.clone());
            Arc::new(move |dir: &RelPath| {
                dir.as_str()
                    .strip_prefix(inside.as_str())
                    .is_some_and(|rest| !rest.contains('/') && !recent(rest))
            })
        };
        let client = self.client(side);
        let mut listing = client.list_pruned(Some(&folder), prune);
        while let Some(item) = listing.next().await {
            let entry = match item {
                Ok(entry) => entry,
                Err(Error::Unlisted { .. }) => continue,
                Err(e) => {
                    tracing::debug!(%side, "listing the recent trash: {e}");
                    break;
                }
            };
            let Some((stamp_folder, from)) = entry
                .path
                .as_str()
                .strip_prefix(inside.as_str())
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            if !recent(stamp_folder) {
                continue;
            }
            if let Ok(from) = RelPath::new(from) {
                index.entry(from).or_default().push(entry.path.clone());
            }
        }
        index
    }

    /// Deletes, among the trash copies `candidates` on `side`, those that hold exactly what
    /// `kept` (the copy just made) holds — the same size and MD5 (listed, else computed for
    /// files up to [`RECOVERY_HASH_LIMIT`]): copies left by earlier moves of the same version
    /// that failed after their copy. So a version is in the trash once, however often its
    /// move failed half way, and under the newest stamp (kept the longest). A copy that cannot
    /// be compared, or whose delete fails, stays: an extra, never a loss.
    ///
    /// Nothing on a side whose moves are native: no move there leaves a copy behind, and a
    /// trash name found taken is another deletion's.
    async fn drop_extra_copies(&self, side: Side, kept: &RelPath, candidates: Vec<RelPath>) {
        if self.client(side).capabilities().native_rename {
            return;
        }
        self.drop_identical_copies(side, kept, candidates).await;
    }

    /// Deletes, among the trash copies `candidates` on `side`, those that hold exactly what
    /// `kept` holds (see [`drop_extra_copies`](Self::drop_extra_copies)), on any backend: the
    /// same size and MD5. A file too big to hash on every run is read only when its size and
    /// time are those of `kept` (as the copies of one version made by
    /// [`StorageClient::preserve`] have: a hard link, or a copy given the original's time),
    /// and not at all when it is `kept`'s own file (a hard link): a time alone can be shared
    /// by two versions. An extra at worst, never a loss.
    async fn drop_identical_copies(&self, side: Side, kept: &RelPath, candidates: Vec<RelPath>) {
        let client = self.client(side);
        if candidates.is_empty() {
            return;
        }
        let Ok(kept) = self.retry(|| client.stat(kept)).await else {
            return;
        };
        let mut kept_md5 = None;
        for extra in candidates {
            if extra == kept.path {
                continue;
            }
            let Ok(now) = self.retry(|| client.stat(&extra)).await else {
                continue;
            };
            if now.size != kept.size {
                continue;
            }
            if now.size > RECOVERY_HASH_LIMIT && kept.content_hash(&client.capabilities()).is_none()
            {
                // Too big to hash on every run: the same size and time, both known, as a
                // preserved copy of the same version has, is only a hint. Two versions saved
                // within one tick of the trash's filesystem (whole seconds on ext4 with
                // 128-byte inodes, two on FAT) have the same size and time too (red team
                // 32): the same file (a hard link) is identical, else both are read.
                if kept.mtime.is_none() || now.mtime != kept.mtime {
                    continue;
                }
                let same_file = kept.file_id.is_some() && now.file_id == kept.file_id;
                if !same_file {
                    let want = self.md5_any_size(side, &kept).await;
                    if want.is_none() || self.md5_any_size(side, &now).await != want {
                        continue;
                    }
                }
            } else {
                if kept_md5.is_none() {
                    kept_md5 = self.md5_within_limit(side, &kept).await;
                }
                let Some(want) = &kept_md5 else {
                    return;
                };
                if self.md5_within_limit(side, &now).await.as_ref() != Some(want) {
                    continue;
                }
            }
            match self.retry(|| client.delete(&extra)).await {
                Ok(()) => {
                    tracing::info!(%side, path = %extra, kept = %kept.path, "removed an extra trash copy an earlier failed move had left");
                }
                Err(e) => {
                    tracing::debug!(%side, path = %extra, "removing an extra trash copy: {e}");
                }
            }
        }
    }

    /// Keeps the current version of `existing` in the side's trash while it stays at its
    /// path (see [`StorageClient::preserve`]); returns the copy. A call that failed after the
    /// copy was made (a lost reply) counts as made when the trash holds exactly `existing`.
    ///
    /// The identical copies that earlier runs left of the same version when the write or
    /// delete after their preserve failed are dropped once this copy is made
    /// ([`drop_identical_copies`](Self::drop_identical_copies)), on every backend: a
    /// preserve is a copy on a local disk too where it cannot link (a file on a filesystem
    /// mounted inside the root), and a delete or overwrite that fails there on every run (a
    /// read-only mount) would otherwise leave one more full copy in the trash per run.
    async fn preserve_in_trash(&self, side: Side, existing: &Entry) -> Result<Entry, Error> {
        let client = self.client(side);
        let path = &existing.path;
        let mut extra = self.recent_trash_copies(side, path).await;
        for n in 1u32..100 {
            let target = self.trash_path(path, n)?;
            let kept = match self.retry(|| client.preserve(path, &target)).await {
                Err(Error::AlreadyExists { .. }) => {
                    extra.push(target);
                    continue;
                }
                Err(e @ Error::Unsupported { .. }) => return Err(e),
                Err(e) => {
                    let Some(kept) = self.holds_copy(side, existing, side, &target).await else {
                        if in_the_way(client.as_ref(), &target).await {
                            continue;
                        }
                        return Err(e);
                    };
                    tracing::info!(path = %target, error = %e, "the copy failed but is in place; kept");
                    kept
                }
                Ok(kept) => kept,
            };
            self.drop_identical_copies(side, &target, extra).await;
            return Ok(kept);
        }
        Err(Error::other(
            client.backend(),
            path.to_string(),
            "no free name in the trash",
        ))
    }

    /// The shared barriers of `side`'s backup dir client `backup`: the source's when both
    /// sides back up to the same client object, whose barrier reports a writeback error once,
    /// to whichever side's barrier asks first (separate barriers per side let the other side
    /// take its next barrier's success for writes that error lost).
    fn backup_flush(&self, side: Side, backup: &Arc<dyn StorageClient>) -> &SharedFlush {
        let shared = matches!(
            &self.source_recovery,
            ResolvedRecovery::BackupDir(c) if std::ptr::addr_eq(Arc::as_ptr(c), Arc::as_ptr(backup))
        );
        if shared {
            &self.backup_flushes[Side::Source.index()]
        } else {
            &self.backup_flushes[side.index()]
        }
    }

    async fn copy_to_backup(
        &self,
        side: Side,
        entry: &Entry,
        backup: &Arc<dyn StorageClient>,
    ) -> Result<(), Error> {
        let client = self.client(side);
        for n in 1u32..100 {
            let target = RelPath::new(format!("{}/{}", self.stamped_folder(n), entry.path))?;
            let started = self.backup_flush(side, backup).starting();
            let result = self
                .retry(|| async {
                    let target = &target;
                    let body = client.read(&entry.path).await?;
                    // This copy is all that is left once the delete or overwrite is done: a
                    // short or corrupt read must fail it, not become the backup.
                    let body = verify_body(
                        body,
                        Expected::of(entry, &client.capabilities()),
                        client.backend(),
                        entry.path.as_str(),
                    );
                    let mut opts = WriteOptions::default()
                        .with_mode(WriteMode::Create)
                        .with_size_hint(entry.size);
                    opts.mtime = entry.mtime;
                    // The backup is as private as the file.
                    opts.permissions = entry.permissions;
                    backup.write_opts(target, body, opts).await
                })
                .await;
            match result {
                // The copy is all that will be left of this version: durable before the
                // caller deletes or overwrites the original. The run's barriers flush only
                // the two sides, and the backup dir may be another disk: a barrier of the
                // backup dir's own, shared with the copies waiting at the same time (a no-op
                // where writes are durable when they return).
                Ok(_) => {
                    let flushes = self.backup_flush(side, backup);
                    let ticket = flushes.written(started);
                    let (backup, attempts) = (backup.clone(), self.attempts);
                    return flushes
                        .flushed(ticket, backup.backend(), move || async move {
                            retry_transient(attempts, || backup.sync_written()).await
                        })
                        .await;
                }
                Err(Error::AlreadyExists { .. }) => continue,
                Err(_) if in_the_way(backup.as_ref(), &target).await => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::other(
            backup.backend(),
            entry.path.to_string(),
            "no free name in the backup dir",
        ))
    }

    /// Streams `from_path` on side `from` to `to_path` on side `to`.
    async fn transfer(
        &self,
        from: Side,
        from_path: &RelPath,
        to: Side,
        to_path: &RelPath,
        mode: WriteMode,
        listed: &Entry,
    ) -> Result<Entry, Error> {
        let src = self.client(from);
        let dst = self.client(to);
        let mode = &mode;
        // The copy keeps the file's own modification time, which some listings lack.
        let mtime = self.retry(|| src.recorded_mtime(listed)).await?;
        let mut opts = WriteOptions::default()
            .with_mode(mode.clone())
            .with_size_hint(listed.size);
        opts.mtime = mtime;
        // A file this creates gets the source's permission bits (where it has them): a
        // private file stays private. An overwrite keeps the destination's own bits (the
        // backend's rule). So do the folders it creates, on a side that has folders.
        opts.permissions = listed.permissions;
        if dst.capabilities().real_directories {
            opts.folder_permissions =
                crate::client::source_folder_permissions(src.as_ref(), to_path).await;
        }
        let opts = &opts;
        // Two clients of one store (two buckets or prefixes of one S3 endpoint, the same
        // credentials): the server copies, no byte passes through here. `None`: stream it.
        let copied = self
            .retry(|| dst.copy_from_same_store(src.as_ref(), from_path, listed, to_path, opts))
            .await;
        let written = match copied {
            Ok(Some(entry)) => {
                if let Some(tx) = &self.progress {
                    let _ = tx.send(ProgressEvent::Bytes {
                        path: to_path.clone(),
                        delta: entry.size,
                    });
                }
                Ok(entry)
            }
            Err(e) => Err(e),
            Ok(None) => {
                self.stream_file(src, from_path, dst, to_path, listed, opts)
                    .await
            }
        };
        let written = match written {
            Ok(written) => written,
            // The write was not tried: the caller falls back to another mode.
            Err(e @ Error::Unsupported { .. }) => return Err(e),
            Err(e) => match self.holds_copy(from, listed, to, to_path).await {
                Some(now) => {
                    // The server committed and the reply was lost (or a retry met its own
                    // first attempt): the copy is done, and the base must say so now. Left
                    // to the next run, an edit of the copy before it would look like a
                    // change of both sides, a conflict (issue 8, behaviour 12).
                    tracing::info!(path = %to_path, side = %to, error = %e, "the write failed but the copy is in place; recorded");
                    now
                }
                None => return Err(e),
            },
        };
        // With `--checksum`, a copy to a side that reads locally, of content whose hash nobody
        // listed, is hashed now (cheap there), so the base keeps a hash to compare with.
        let mut written = written;
        if self.checksum
            && written.hash.is_none()
            && listed.hash.is_none()
            && dst.capabilities().local_reads
            && let Ok(h) = dst.md5_of(&written).await
        {
            written.hash = Some(h);
        }
        if written.size != listed.size {
            // The source changed while it was read. The copy is whole and atomic, but the base
            // must not claim the listed version arrived; the next run will see the change.
            return Err(Error::other(
                src.backend(),
                from_path.to_string(),
                format!(
                    "the file changed while it was copied ({} bytes listed, {} copied); it will be synced again next run",
                    listed.size, written.size
                ),
            ));
        }
        Ok(written)
    }

    /// Streams `from_path` on `src` through this machine into `to_path` on `dst`, written
    /// with `opts`.
    async fn stream_file(
        &self,
        src: &Arc<dyn StorageClient>,
        from_path: &RelPath,
        dst: &Arc<dyn StorageClient>,
        to_path: &RelPath,
        listed: &Entry,
        opts: &WriteOptions,
    ) -> Result<Entry, Error> {
        self.retry(|| async move {
            // A large file comes as parallel ranges where the source offers them, each of the
            // listed version; the check below covers the whole either way.
            let body = crate::parallel_read::read_for_copy_bounded(
                src,
                from_path,
                listed,
                &self.ranged_files,
            )
            .await?;
            // Checked inside the stream: a short or corrupt read fails the body before its
            // end, so the write aborts instead of committing it over the old version.
            let body = verify_body(
                body,
                Expected::of(listed, &src.capabilities()),
                src.backend(),
                from_path.as_str(),
            );
            let progress = self.progress.clone();
            let path = to_path.clone();
            let body = body
                .inspect(move |chunk| {
                    if let (Some(tx), Ok(bytes)) = (&progress, chunk) {
                        let _ = tx.send(ProgressEvent::Bytes {
                            path: path.clone(),
                            delta: bytes.len() as u64,
                        });
                    }
                })
                .boxed();
            dst.write_opts(to_path, body, opts.clone()).await
        })
        .await
    }

    /// After a write to `to_path` on side `to` failed: the entry there, when it holds
    /// exactly the version `listed` on side `from` — the same size and the same MD5. An MD5
    /// not listed is computed, for files up to [`RECOVERY_HASH_LIMIT`]: on the source that
    /// reads its current content, so a source changed since (whose new content was not what
    /// was sent) never passes for the copy.
    async fn holds_copy(
        &self,
        from: Side,
        listed: &Entry,
        to: Side,
        to_path: &RelPath,
    ) -> Option<Entry> {
        // A copy a failed flush covered reads back as the version it was to be, whether or
        // not the disk holds it: this run is making it again, and only its own write counts.
        if self.suspects.holds(to, to_path) {
            return None;
        }
        let dst = self.client(to);
        let now = self.retry(|| dst.stat(to_path)).await.ok()?;
        if now.size != listed.size {
            return None;
        }
        // A side that folds names finds `Report.txt` for `report.txt`: only the exact name
        // counts as the copy.
        let caps = dst.capabilities();
        if (caps.case_insensitive || caps.normalization_insensitive)
            && !exact_names(dst.as_ref(), std::iter::once(to_path))
                .await
                .contains(to_path.as_str())
        {
            return None;
        }
        let want = self.md5_within_limit(from, listed).await?;
        let have = self.md5_within_limit(to, &now).await?;
        (want == have).then_some(now)
    }

    /// True when `path` is on `side`, or when that cannot be told.
    async fn exists(&self, side: Side, path: &RelPath) -> bool {
        let client = self.client(side);
        !matches!(self.retry(|| client.stat(path)).await, Err(e) if e.is_not_found())
    }

    /// The MD5 of `entry` on `side`: listed, else computed when it is at most
    /// [`RECOVERY_HASH_LIMIT`] bytes.
    async fn md5_within_limit(&self, side: Side, entry: &Entry) -> Option<ContentHash> {
        let client = self.client(side);
        if let Some(hash) = entry.content_hash(&client.capabilities()) {
            return Some(hash);
        }
        if entry.size > RECOVERY_HASH_LIMIT {
            return None;
        }
        self.retry(|| client.md5_of(entry)).await.ok()
    }

    /// The MD5 of `entry` on `side`: listed, else computed by reading it, whatever its size.
    async fn md5_any_size(&self, side: Side, entry: &Entry) -> Option<ContentHash> {
        let client = self.client(side);
        if let Some(hash) = entry.content_hash(&client.capabilities()) {
            return Some(hash);
        }
        self.retry(|| client.md5_of(entry)).await.ok()
    }

    /// Carries out a rename seen on `seen_on` on the other side: `old` there becomes `new`
    /// (a copy of `old` when `keep_old`), by a server-side move or copy where the backend has
    /// one, else by copying `new` over and deleting `old`.
    ///
    /// An old file that is gone there since the listing (moved or deleted by someone else)
    /// follows the rule of vanished deletes ([`remove`](Self::remove)): the new file is
    /// copied over, but the old path is not recorded as removed, the rename is counted as a
    /// copy, and the old path counts into the run's warning about files that were gone.
    async fn mirror_rename(
        &self,
        seen_on: Side,
        old: &Entry,
        new: &Entry,
        keep_old: bool,
    ) -> Result<Done, Error> {
        let target_side = seen_on.other();
        let target = self.client(target_side);
        let copy_new = || {
            self.transfer(
                seen_on,
                &new.path,
                target_side,
                &new.path,
                WriteMode::Create,
                new,
            )
        };
        // The old file vanished meanwhile: copy the new one instead. The base keeps the old
        // path's record, so the next run looks at it again (it may come back).
        let vanished = |written: Entry| {
            tracing::info!(side = %target_side, path = %old.path, "the old file of a rename was gone already; not recorded");
            Done {
                vanished: true,
                ..Done::updates(vec![BaseUpdate::Put(record(seen_on, new, &written))])
            }
        };
        if !self.still_as_listed(target_side, old).await? {
            return Ok(vanished(copy_new().await?));
        }
        let opts = TransferOptions::default();
        let moved = if keep_old {
            self.retry(|| target.copy_opts(&old.path, &new.path, opts.clone()))
                .await
        } else {
            self.retry(|| target.rename_opts(&old.path, &new.path, opts.clone()))
                .await
        };
        let written = match moved {
            Ok(e) => e,
            Err(Error::Unsupported { .. }) => {
                let written = copy_new().await?;
                if !keep_old && !self.remove(target_side, old).await? {
                    return Ok(vanished(written));
                }
                written
            }
            // A rename (or copy) that went through before its reply was lost: the new name
            // holds the content, and for a rename the old name is gone. Recorded now, as for
            // a write (see `transfer`).
            Err(e) => match self.holds_copy(seen_on, new, target_side, &new.path).await {
                Some(now) if keep_old || !self.exists(target_side, &old.path).await => {
                    tracing::info!(path = %new.path, side = %target_side, error = %e, "the rename failed but is in place; recorded");
                    now
                }
                // The old file went between the check and the move, and the new name does
                // not hold it: someone else's doing.
                _ if e.is_not_found() && !self.exists(target_side, &old.path).await => {
                    return Ok(vanished(copy_new().await?));
                }
                _ => return Err(e),
            },
        };
        // The renamed copy holds the old file's content: it keeps its hash.
        let mut written = written;
        if written.hash.is_none() {
            written.hash = old.hash.clone();
        }
        let mut updates = Vec::with_capacity(2);
        if !keep_old {
            updates.push(BaseUpdate::Remove(old.path.clone()));
        }
        updates.push(BaseUpdate::Put(record(seen_on, new, &written)));
        Ok(Done::updates(updates))
    }

    /// A free conflict name for `path`: free on both sides, since it will be synced, and not
    /// handed out before in this run.
    async fn conflict_name(&self, path: &RelPath, loser: Side) -> Result<RelPath, Error> {
        for n in 1u32..1000 {
            let candidate = conflict_candidate(path, &self.stamp, loser, n)?;
            // Reserved before the check: a concurrent action for another path gets another
            // name even while this one is still being checked.
            let reserved = self
                .conflict_names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(candidate.clone());
            if !reserved {
                continue;
            }
            let mut free = true;
            for side in [Side::Source, Side::Destination] {
                let client = self.client(side);
                match self.retry(|| client.stat(&candidate)).await {
                    Ok(_) => free = false,
                    // A stat sees files only: a folder of that name (a conflict copy of an
                    // earlier run in the same second, since made a folder) takes it too.
                    Err(e) if e.is_not_found() => {
                        if let Some(below) = client.list(Some(&candidate)).next().await {
                            below?;
                            free = false;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            if free {
                return Ok(candidate);
            }
        }
        Err(Error::other(
            self.client(loser).backend(),
            path.to_string(),
            "no free conflict name",
        ))
    }

    async fn settle_conflict(
        &self,
        winner: Side,
        win: &Entry,
        lose: &Entry,
    ) -> Result<Done, Error> {
        let loser = winner.other();
        let mut follow_ups = Vec::new();
        let mut kept_as = Vec::new();
        // Under protection the protected side wins whatever the strategy said: the other
        // side's version is then always kept under a conflict name, never only trashed
        // (--conflict-loser delete chose between versions the strategy ranked, not this).
        let policy = if self.protected == Some(winner) {
            ConflictLoser::Keep
        } else {
            self.conflict_loser
        };
        let written = match policy {
            ConflictLoser::Keep => {
                let aside = self.conflict_name(&lose.path, loser).await?;
                let (written, kept) = self.replace(winner, win, lose, Keep::At(&aside)).await?;
                if let Some(kept) = kept {
                    tracing::info!(path = %lose.path, kept_as = %kept.path, "conflict: losing version kept");
                    kept_as.push((loser, kept.path.clone()));
                    // The kept loser is an addition on its side: where the mode copies
                    // additions that way, it reaches the other side in this run, unless the
                    // filters exclude its name (then it stays where it was kept).
                    if self.mode.copies_to(loser.other()) && !self.rules.is_ignored(&kept.path) {
                        follow_ups.push(Action::Copy {
                            from: loser,
                            entry: kept,
                            target: None,
                        });
                    }
                }
                written
            }
            ConflictLoser::Delete => self.replace(winner, win, lose, Keep::Recovery).await?.0,
        };
        Ok(Done {
            updates: vec![BaseUpdate::Put(record(winner, win, &written))],
            follow_ups,
            intents: Vec::new(),
            vanished: false,
            kept_as,
        })
    }

    async fn keep_both(&self, source: &Entry, destination: &Entry) -> Result<Done, Error> {
        let mut renamed = Vec::with_capacity(2);
        for (side, entry) in [(Side::Source, source), (Side::Destination, destination)] {
            if !self.still_as_listed(side, entry).await? {
                return Err(Error::PreconditionFailed {
                    backend: self.client(side).backend(),
                    path: entry.path.to_string(),
                    source: Some("the file vanished during the sync".into()),
                });
            }
            let name = self.conflict_name(&entry.path, side).await?;
            let client = self.client(side);
            let mut moved = self
                .retry(|| client.rename_opts(&entry.path, &name, TransferOptions::default()))
                .await?;
            if moved.hash.is_none() {
                moved.hash = entry.hash.clone();
            }
            renamed.push((side, moved));
        }
        let kept_as = renamed
            .iter()
            .map(|(side, moved)| (*side, moved.path.clone()))
            .collect();
        let mut updates = vec![BaseUpdate::Remove(source.path.clone())];
        let mut intents = Vec::with_capacity(2);
        for (side, moved) in renamed {
            let (written, batch) = self.share_copy(side, &moved).await?;
            intents.push(batch);
            updates.push(BaseUpdate::Put(record(side, &moved, &written)));
        }
        Ok(Done {
            updates,
            follow_ups: Vec::new(),
            intents,
            vanished: false,
            kept_as,
        })
    }

    /// Copies `copy`, a conflict copy just made on `side`, to the other side under its name,
    /// with its intent recorded first like every planned copy's: its name is chosen while
    /// the action runs, so it cannot be in the batch recorded ahead. A run that dies after
    /// the copy landed (or whose base is then not written) leaves the intent, and the next
    /// run records the copy instead of taking an edit of either side for a conflict.
    ///
    /// Returns the copy and the batch of its intent, to be settled once its record is written.
    async fn share_copy(&self, side: Side, copy: &Entry) -> Result<(Entry, IntentBatch), Error> {
        let intent = Intent {
            path: copy.path.clone(),
            to: side.other(),
            version: SideRecord::from_entry(copy),
        };
        let store = self.store.clone();
        let batch = blocking(move || store.record_intents(&[intent]))
            .await
            .map_err(|e| {
                Error::other(
                    self.client(side.other()).backend(),
                    copy.path.to_string(),
                    format!("the copy was not started: {e}"),
                )
            })?;
        let written = self
            .transfer(
                side,
                &copy.path,
                side.other(),
                &copy.path,
                WriteMode::Create,
                copy,
            )
            .await?;
        Ok((written, batch))
    }

    /// The conflict copy of `kept` that an earlier set aside left on `kept_side` and recorded
    /// ahead ([`settle_ahead`](Executor::settle_ahead)): a path `<kept>.conflict-…` whose
    /// record settles its absence on the other side, records `kept`'s version, and which
    /// still holds it. `None` when there is none (or it cannot be told).
    ///
    /// Only content tells that the spare still holds the kept version: the user may have
    /// edited it since, keeping its size and mtime, and reusing it would then leave the kept
    /// version nowhere once the new file takes its path. The same file under both names (a
    /// hard link, as a local set aside makes: one file id and one birth time) is that content;
    /// otherwise both are hashed, whatever their size: reading them once costs less than a
    /// full copy of a big file left behind by every failed attempt. A spare whose hash
    /// cannot be had is not reused: one more conflict copy, never a loss.
    async fn spare_of(&self, kept_side: Side, kept: &Entry) -> Option<Entry> {
        // Conflict names as `conflict_name` makes them, with the tag left empty: the part
        // before the tag and the extension after it.
        const MARK: &str = ".conflict-";
        let probe = if ends_with_conflict_tag(&kept.path) {
            kept.path.with_name_suffix_max(MARK, crate::path::NAME_MAX)
        } else {
            kept.path.with_stem_suffix_max(MARK, crate::path::NAME_MAX)
        }
        .ok()?;
        let at = probe.as_str().rfind(MARK)? + MARK.len();
        let (prefix, ext) = probe.as_str().split_at(at);
        let (prefix, ext) = (prefix.to_owned(), ext.to_owned());
        let store = self.store.clone();
        let records = blocking(move || store.records_with_prefix(&prefix))
            .await
            .ok()?;
        let want = SideRecord::from_entry(kept);
        let client = self.client(kept_side);
        let mut kept_hash = None;
        for r in records {
            let tagged = r
                .path
                .as_str()
                .strip_suffix(ext.as_str())
                .and_then(|untagged| RelPath::new(untagged).ok())
                .is_some_and(|untagged| ends_with_conflict_tag(&untagged));
            if r.settled != Some(kept_side.other()) || !tagged {
                continue;
            }
            let recorded = r.side(kept_side);
            if recorded.size != want.size || recorded.mtime_nanos != want.mtime_nanos {
                continue;
            }
            let Ok(mut now) = self.retry(|| client.stat(&r.path)).await else {
                continue;
            };
            if now.path != r.path || now.size != want.size {
                continue;
            }
            // The same file under both names, as a local set aside links it. An equal inode
            // alone does not say so: a file on another filesystem (bind-mounted onto the
            // conflict name, a mount point in the folder) can carry the same number, size and
            // mtime with other content. A hard link shares the whole inode, birth time
            // included; without birth times on both entries the content decides.
            let caps = client.capabilities();
            if caps.file_id
                && caps.birth_time
                && now.file_id.is_some()
                && now.file_id == kept.file_id
                && now.birth_time.is_some()
                && now.birth_time == kept.birth_time
            {
                if now.hash.is_none() {
                    now.hash = kept.hash.clone();
                }
                return Some(now);
            }
            if kept_hash.is_none() {
                kept_hash = Some(self.md5_any_size(kept_side, kept).await?);
            }
            if self.md5_any_size(kept_side, &now).await.as_ref() == kept_hash.as_ref() {
                now.hash = kept_hash;
                return Some(now);
            }
        }
        None
    }

    /// Records in the base, at once and ahead of the move or copy that puts it there, that
    /// `aside` (a conflict name) on `kept_side` holds `kept`'s version and that its absence
    /// on the other side is settled: the kept copy of a settled deletion keeps its
    /// settlement under its new name.
    ///
    /// The action's own update says the same after the move, but goes to the base only with
    /// the run's next batch, behind the durability barrier. A run that dies in between (or
    /// whose barrier fails) would leave the conflict copy unrecorded, and the next run would
    /// take it for a new file and copy it to the side that deleted it (source-backup: "add
    /// file at destination: download to source"). Recorded ahead, the worst case is a record
    /// for a name where nothing landed, which the next run forgets (absent on both sides).
    async fn settle_ahead(
        &self,
        aside: &RelPath,
        kept_side: Side,
        kept: &Entry,
    ) -> Result<(), Error> {
        let record = BaseRecord::settled_absence(
            aside.clone(),
            kept_side.other(),
            SideRecord::from_entry(kept),
        );
        let store = self.store.clone();
        blocking(move || store.apply(&[BaseUpdate::Put(record)]))
            .await
            .map_err(|e| {
                Error::other(
                    self.client(kept_side).backend(),
                    kept.path.to_string(),
                    format!("the file was not set aside: {e}"),
                )
            })
    }

    /// Carries out [`Action::SetAside`]: the kept copy of a settled deletion is kept under a
    /// free conflict name on its own side and the new file takes the path — staged like any
    /// overwrite, so the path is never absent and a failed copy leaves the kept copy where it
    /// was. The set-aside copy keeps the settled absence of the other side, or, where the mode
    /// copies it back ([`kept_copy_goes_back`]), goes there in this run (a follow-up copy).
    async fn set_aside(&self, kept_side: Side, kept: &Entry, new: &Entry) -> Result<Done, Error> {
        let new_side = kept_side.other();
        if !self.still_as_listed(kept_side, kept).await? {
            return Err(Error::PreconditionFailed {
                backend: self.client(kept_side).backend(),
                path: kept.path.to_string(),
                source: Some("the file vanished during the sync".into()),
            });
        }
        // A set aside that failed before (its upload, or its run killed) left the kept copy
        // under a conflict name, recorded ahead: that copy is used again, so each failed
        // attempt does not leave one more.
        let (written, moved) = match self.spare_of(kept_side, kept).await {
            Some(spare) => {
                tracing::info!(path = %kept.path, kept_as = %spare.path, "the kept copy is already set aside (an earlier attempt); used again");
                self.replace(new_side, new, kept, Keep::Already(spare))
                    .await?
            }
            None => {
                let aside = self.conflict_name(&kept.path, kept_side).await?;
                self.settle_ahead(&aside, kept_side, kept).await?;
                self.replace(new_side, new, kept, Keep::At(&aside)).await?
            }
        };
        let mut updates = vec![BaseUpdate::Put(record(new_side, new, &written))];
        let mut follow_ups = Vec::new();
        let mut kept_as = Vec::new();
        if let Some(moved) = moved {
            kept_as.push((kept_side, moved.path.clone()));
            tracing::info!(path = %kept.path, kept_as = %moved.path, "a new file took the path of a settled deletion; the kept copy is set aside");
            updates.push(BaseUpdate::Put(BaseRecord::settled_absence(
                moved.path.clone(),
                new_side,
                SideRecord::from_entry(&moved),
            )));
            // The copy inherits the settled absence; a mode that copies such a copy back
            // (two-way, the backup mode whose primary side keeps it) does so in this run, not
            // the next. If that copy fails, the settled absence stands and the next run
            // retries it.
            if kept_copy_goes_back(self.mode, new_side) {
                follow_ups.push(Action::Copy {
                    from: kept_side,
                    entry: moved,
                    target: None,
                });
            }
        }
        Ok(Done {
            updates,
            follow_ups,
            intents: Vec::new(),
            vanished: false,
            kept_as,
        })
    }

    /// Carries out [`Action::MoveAside`]: a type change where the folder keeps the path; the
    /// file moves to a free conflict name on its side (and, with `share`, is copied to the
    /// other side under that name).
    async fn move_aside(
        &self,
        side: Side,
        entry: &Entry,
        share: bool,
        settled: bool,
    ) -> Result<Done, Error> {
        if !self.still_as_listed(side, entry).await? {
            return Err(Error::PreconditionFailed {
                backend: self.client(side).backend(),
                path: entry.path.to_string(),
                source: Some("the file vanished during the sync".into()),
            });
        }
        let aside = self.conflict_name(&entry.path, side).await?;
        if settled {
            self.settle_ahead(&aside, side, entry).await?;
        }
        let client = self.client(side);
        let mut moved = match self
            .retry(|| client.rename_opts(&entry.path, &aside, TransferOptions::default()))
            .await
        {
            Ok(moved) => moved,
            Err(e @ Error::Unsupported { .. }) => return Err(e),
            // A rename that went through before its reply was lost: recorded now, as for a
            // rename of the plan (see `rename`). Left to the next run, the file under its
            // conflict name would be an unrecorded addition there: a kept copy of a settled
            // deletion would lose its settlement and go back to the side that deleted it.
            Err(e) => match self.renamed_anyway(side, entry, &aside).await {
                Some(now) => {
                    tracing::info!(path = %entry.path, kept_as = %aside, error = %e, "the move aside failed but is in place; recorded");
                    now
                }
                None => return Err(e),
            },
        };
        if moved.hash.is_none() {
            moved.hash = entry.hash.clone();
        }
        tracing::info!(path = %entry.path, kept_as = %aside, "type change: the folder keeps the path, the file is kept under a conflict name");
        let mut done = Done::updates(vec![BaseUpdate::Remove(entry.path.clone())]);
        done.kept_as.push((side, moved.path.clone()));
        if share {
            let (written, batch) = self.share_copy(side, &moved).await?;
            done.intents.push(batch);
            done.updates
                .push(BaseUpdate::Put(record(side, &moved, &written)));
        } else if settled {
            done.updates
                .push(BaseUpdate::Put(BaseRecord::settled_absence(
                    moved.path.clone(),
                    side.other(),
                    SideRecord::from_entry(&moved),
                )));
        }
        Ok(done)
    }

    /// After a rename of `entry` to `to` on `side` failed: the entry at `to` when the rename
    /// went through all the same (a lost reply) — the old name is gone and the new one holds
    /// the listed version (its size, and its hash or its modification time, which a rename
    /// keeps). `None` when that cannot be told.
    async fn renamed_anyway(&self, side: Side, entry: &Entry, to: &RelPath) -> Option<Entry> {
        if self.exists(side, &entry.path).await {
            return None;
        }
        let client = self.client(side);
        let now = self.retry(|| client.stat(to)).await.ok()?;
        landed(client.as_ref(), &now, &SideRecord::from_entry(entry))
            .await
            .then_some(now)
    }

    /// Runs `op`, retrying transient errors with exponential backoff.
    async fn retry<T, F, Fut>(&self, op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        retry_transient(self.attempts, op).await
    }
}

/// How [`Executor::replace`] keeps the version it replaces.
enum Keep<'a> {
    /// As the side's recovery says: in the trash, the backup dir, or not at all.
    Recovery,
    /// Under this conflict name.
    At(&'a RelPath),
    /// Already kept: this copy holds it (an earlier attempt's conflict copy).
    Already(Entry),
}

/// The base record of a path after copying `from_entry` from side `from`, which produced
/// `written` on the other side.
fn record(from: Side, from_entry: &Entry, written: &Entry) -> BaseRecord {
    // The written copy holds `from_entry`'s content (verified in the stream where its hash is
    // known): it keeps that hash where its own listing has none.
    let mut written = written.clone();
    if written.hash.is_none() {
        written.hash = from_entry.hash.clone();
    }
    let written = &written;
    let (source, destination) = match from {
        Side::Source => (from_entry, written),
        Side::Destination => (written, from_entry),
    };
    BaseRecord::new(
        from_entry.path.clone(),
        SideRecord::from_entry(source),
        SideRecord::from_entry(destination),
    )
}

/// The `n`th conflict name the executor tries for `path` on the side `loser` in a run whose
/// UTC time is `stamp` (`YYYYMMDDTHHMMSSZ`): `notes.conflict-<stamp>-<side>.txt`, then
/// `…-<side>-2.txt` and so on, cut to fit the longest file name.
///
/// # Errors
/// [`Error::InvalidPath`] when no such name can be made.
pub fn conflict_candidate(
    path: &RelPath,
    stamp: &str,
    loser: Side,
    n: u32,
) -> Result<RelPath, Error> {
    let suffix = if n == 1 {
        format!(".conflict-{stamp}-{loser}")
    } else {
        format!(".conflict-{stamp}-{loser}-{n}")
    };
    // The suffix goes before the extension, except where the "extension" is the tag of an
    // earlier conflict copy (`notes.conflict-…-source` has none): a copy of a copy then reads
    // as one, `notes.conflict-…-source.conflict-…-destination`.
    if ends_with_conflict_tag(path) {
        path.with_name_suffix_max(&suffix, crate::path::NAME_MAX)
    } else {
        path.with_stem_suffix_max(&suffix, crate::path::NAME_MAX)
    }
}

/// Whether the file name of `path` ends in the tag of a conflict copy,
/// `.conflict-<YYYYMMDDTHHMMSSZ>-<source|destination>[-N]`, with no extension after it.
pub(crate) fn ends_with_conflict_tag(path: &RelPath) -> bool {
    let name = path.file_name();
    let Some(at) = name.rfind(".conflict-") else {
        return false;
    };
    let tag = &name[at + ".conflict-".len()..];
    let Some((stamp, side)) = tag.split_at_checked(16) else {
        return false;
    };
    let stamp_ok = stamp.len() == 16
        && stamp.as_bytes()[8] == b'T'
        && stamp.ends_with('Z')
        && stamp[..8]
            .bytes()
            .chain(stamp[9..15].bytes())
            .all(|b| b.is_ascii_digit());
    let side = side
        .strip_prefix("-source")
        .or_else(|| side.strip_prefix("-destination"));
    stamp_ok
        && side.is_some_and(|rest| {
            rest.is_empty()
                || rest
                    .strip_prefix('-')
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// True when `now` is the version `listed` describes (size, mtime, and etag where both have
/// one).
fn same_version(now: &Entry, listed: &Entry) -> bool {
    Version::of(listed).matches(now)
}

/// Removes the copy [`Executor::replace`] preserved when the write that was to follow failed
/// for certain — but only while the old version is still at its path: if the write landed
/// after all, the copy is the only old version left and stays.
///
/// After a cancellation (the write future dropped) the copy always stays: the backend may
/// still be committing (a blocking rename already under way, a request already sent), and
/// removing the copy first would leave the old version nowhere. A spare copy in the trash or
/// under a conflict name is harmless; a missing one is not.
struct Undo {
    client: Arc<dyn StorageClient>,
    copy: Option<RelPath>,
    original: Entry,
}

impl Undo {
    fn disarm(mut self) {
        self.copy = None;
    }

    async fn run(mut self) {
        if let Some(copy) = self.copy.take() {
            undo_copy(self.client.clone(), copy, self.original.clone()).await;
        }
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        // Dropped armed: the action was cancelled mid-write, and the write may still land.
        if let Some(copy) = self.copy.take() {
            tracing::debug!(path = %copy, "kept a spare copy: the cancelled write may still land");
        }
    }
}

async fn undo_copy(client: Arc<dyn StorageClient>, copy: RelPath, original: Entry) {
    match client.stat(&original.path).await {
        Ok(now) if same_version(&now, &original) => {
            if let Err(e) = client.delete(&copy).await {
                tracing::warn!(path = %copy, "could not remove a spare copy of an unchanged file: {e}");
            }
        }
        _ => tracing::debug!(path = %copy, "kept: the original changed or could not be checked"),
    }
}

/// True when `target`, a path in a stamp folder of a trash or backup dir, cannot be written
/// because an earlier copy is in the way: a file where one of its folders must be
/// (`<stamp>/a` holds a trashed file `a`, and `a/x` comes next), or a folder at it (the
/// reverse). Both happen when one stamp folder receives a file and, later in the run or in
/// another run of the same second, a file below a folder of the same name (a type change).
/// The caller then takes a fresh stamp folder (`<stamp>-2`), as when the target exists.
pub(crate) async fn in_the_way(client: &dyn StorageClient, target: &RelPath) -> bool {
    for folder in ancestors(target.as_str()) {
        let Ok(folder) = RelPath::new(folder) else {
            continue;
        };
        // A stat succeeds for files only: a file where a folder must be.
        if client.stat(&folder).await.is_ok() {
            return true;
        }
    }
    matches!(client.list(Some(target)).next().await, Some(Ok(_)))
}

/// The folders above `path`, nearest last (`a/b/c` → `a`, `a/b`).
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// The paths an action writes, with the side they are written on.
fn written_paths(action: &Action) -> Vec<(Side, &RelPath)> {
    match action {
        Action::Copy { from, entry, .. } => vec![(from.other(), &entry.path)],
        Action::Rename { seen_on, to, .. } => vec![(seen_on.other(), &to.path)],
        Action::Conflict {
            source,
            winner: Some(w),
            ..
        } => vec![(w.other(), &source.path)],
        Action::SetAside { kept_side, new, .. } => vec![(*kept_side, &new.path)],
        _ => Vec::new(),
    }
}

/// Splits `deletes` into those that must run before `others` — a file deleted on the side
/// where an action writes below it (`x` deleted, `x/y` coming), a file deleted below a path
/// an action writes as a file (`x/y` deleted, `x` coming), or, on a side that folds names
/// (`folds`, per side), a file deleted whose name folds to one an action writes there
/// (`Readme` deleted, `README` coming: the disk holds them as one file, so the write would
/// fail on the old one) — and the rest.
fn split_making_room(
    deletes: SpillVec<Action>,
    others: &SpillVec<Action>,
    renames: &[Action],
    folds: [bool; 2],
) -> std::io::Result<(Vec<Action>, SpillVec<Action>)> {
    if deletes.is_empty() {
        return Ok((Vec::new(), deletes));
    }
    let mut targets: [HashSet<String>; 2] = Default::default();
    let mut folders: [HashSet<String>; 2] = Default::default();
    let mut folded: [HashSet<String>; 2] = Default::default();
    visit_written(others, renames, |side, path| {
        let i = side.index();
        targets[i].insert(path.to_owned());
        folders[i].extend(ancestors(path).map(str::to_owned));
        if folds[i] {
            folded[i].insert(fold_name(path));
        }
    })?;
    let mut room = Vec::new();
    let mut rest = deletes.sibling();
    for d in deletes.into_items() {
        let d = d?;
        let early = match &d {
            Action::Delete { side, entry } => {
                let i = side.index();
                let p = entry.path.as_str();
                folders[i].contains(p)
                    || ancestors(p).any(|a| targets[i].contains(a))
                    || (folds[i] && folded[i].contains(&fold_name(p)))
            }
            _ => false,
        };
        if early {
            room.push(d);
        } else {
            rest.push(d);
            rest.relieve()?;
        }
    }
    Ok((room, rest))
}

/// Whether `kept`, a copy of `listed` made on a filesystem that keeps times more coarsely
/// than the one `listed` is on, holds that version by size and time: its time is the listed
/// one cut to the precision of a common filesystem (NTFS 100 ns, UDF and those set by
/// `utimes(2)` 1 µs, 1 ms, exFAT 10 ms, whole seconds for ext4 with 128-byte inodes, two for
/// FAT). A version saved meanwhile is caught all the same by the check of the file itself
/// before its delete.
fn coarser_copy_of(listed: &Entry, kept: &Entry) -> bool {
    let (Some(listed_t), Some(kept_t)) = (listed.mtime_nanos(), kept.mtime_nanos()) else {
        return false;
    };
    listed.size == kept.size
        && [
            Duration::from_nanos(100),
            Duration::from_micros(1),
            Duration::from_millis(1),
            Duration::from_millis(10),
            Duration::from_secs(1),
            Duration::from_secs(2),
        ]
        .into_iter()
        .any(|p| kept_t == truncate_nanos(listed_t, p))
}

/// True for the actions that run in the main group: not those that make room, deletes or
/// renames, which [`Executor::run`] takes out of the plan to run apart.
fn runs_with_the_others(action: &Action) -> bool {
    !action.runs_apart()
}

/// Calls `f` with each path (and the side it is written on) that an action of the main group
/// (those of `plan` that [`runs_with_the_others`]) or of `renames` writes.
fn visit_written(
    plan: &SpillVec<Action>,
    renames: &[Action],
    mut f: impl FnMut(Side, &str),
) -> std::io::Result<()> {
    for action in plan.iter() {
        let action = action?;
        if !runs_with_the_others(&action) {
            continue;
        }
        for (side, path) in written_paths(&action) {
            f(side, path.as_str());
        }
    }
    for (side, path) in renames.iter().flat_map(written_paths) {
        f(side, path.as_str());
    }
    Ok(())
}

/// Takes out of `renames` those that free a name another action (of `others` or `renames`)
/// needs on the side they rename on, so they run first: an old name with something written
/// below it (`f` renamed to `b.txt` while `f/x` is copied in: a file where a folder must
/// be), an old name below a file written there (`x/y` renamed away while a file `x`
/// arrives), or, on a side that folds names (`folds`, per side), an old name folding to one
/// written there (`B.txt` renamed to `r.txt` while `b.txt` is copied in: the disk holds both
/// names as one file). Each time the write would fail on the old name unless the rename
/// runs first.
fn take_renames_making_room(
    renames: &mut Vec<Action>,
    others: &SpillVec<Action>,
    folds: [bool; 2],
) -> std::io::Result<Vec<Action>> {
    if renames.is_empty() {
        return Ok(Vec::new());
    }
    let mut targets: [HashSet<String>; 2] = Default::default();
    // Folder → how many written paths lie below it.
    let mut below: [std::collections::HashMap<String, usize>; 2] = Default::default();
    let mut folded: [std::collections::HashMap<String, usize>; 2] = Default::default();
    visit_written(others, renames, |side, p| {
        let i = side.index();
        targets[i].insert(p.to_owned());
        for folder in ancestors(p) {
            *below[i].entry(folder.to_owned()).or_default() += 1;
        }
        if folds[i] {
            *folded[i].entry(fold_name(p)).or_default() += 1;
        }
    })?;
    let early: Vec<bool> = renames
        .iter()
        .map(|a| match a {
            Action::Rename {
                seen_on,
                from,
                to,
                keep_old,
            } => {
                let i = seen_on.other().index();
                let (old, new) = (from.path.as_str(), to.path.as_str());
                // Its own new name does not count (`x` renamed to `x/y`, `X` to `x`).
                let own_below = usize::from(ancestors(new).any(|f| f == old));
                let written_below = below[i].get(old).copied().unwrap_or(0) > own_below;
                let written_above = ancestors(old).any(|f| f != new && targets[i].contains(f));
                let freed = fold_name(old);
                let own = usize::from(fold_name(new) == freed);
                let folded_written = folds[i] && folded[i].get(&freed).copied().unwrap_or(0) > own;
                (!keep_old && (written_below || written_above)) || folded_written
            }
            _ => false,
        })
        .collect();
    let mut next = 0;
    Ok(renames
        .extract_if(.., |_| {
            let take = early.get(next).copied().unwrap_or(false);
            next += 1;
            take
        })
        .collect())
}

/// Takes out of `lists` the renames that cannot go in one step on a side that folds names:
/// those whose new name folds to the old name of a rename there — its own (`Report.txt` →
/// `report.txt`: the disk holds both names as one file) or another's (`A.txt` → `b.txt`
/// while `B.txt` → `a.txt`, a swap, or a chain `A.txt` → `b.txt`, `B.txt` → `c.txt`). Each
/// goes in two steps ([`Executor::run_stepped`]): all the old names leave first, then
/// each takes its new name, so no order of single renames is needed and none exists for a
/// cycle. Backup modes' renames (`keep_old`) keep their old names and stay as they are,
/// except a change of case alone, which there cannot keep both names.
fn take_renames_in_two_steps(lists: [&mut Vec<Action>; 2], folds: [bool; 2]) -> Vec<Action> {
    let renames = |a: &Action| matches!(a, Action::Rename { .. });
    if !folds.contains(&true) || !lists.iter().any(|l| l.iter().any(renames)) {
        return Vec::new();
    }
    let mut olds: [HashSet<String>; 2] = Default::default();
    for action in lists.iter().flat_map(|l| l.iter()) {
        if let Action::Rename {
            seen_on,
            from,
            keep_old: false,
            ..
        } = action
        {
            let i = seen_on.other().index();
            if folds[i] {
                olds[i].insert(fold_name(from.path.as_str()));
            }
        }
    }
    let mut taken = Vec::new();
    for list in lists {
        taken.extend(list.extract_if(.., |a| match a {
            Action::Rename {
                seen_on,
                from,
                to,
                keep_old,
            } => {
                let i = seen_on.other().index();
                let new = fold_name(to.path.as_str());
                if *keep_old {
                    // A backup mode keeps the old name, but there both names are one file,
                    // with the same content: the case changes, the old name goes.
                    folds[i] && new == fold_name(from.path.as_str())
                } else {
                    olds[i].contains(&new)
                }
            }
            _ => false,
        }));
    }
    taken
}

/// What failed so far in a run, and which deletes that blocks.
///
/// A delete depends on the actions at its own path, at the folders above it and below it,
/// and on its rename pair — nothing else. A failed action in the same folder is no reason to
/// wait: a delete only removes a version the other side deleted on purpose, and no other
/// name's copy needs it. The one dependency between different names is a side that folds
/// names (`readme` deleted where `README` is written: one file there); those deletes run
/// before the copies ([`split_making_room`]), so a failure of theirs fails the copy and
/// not the reverse.
#[derive(Default)]
struct Failures {
    /// Failed paths and every folder above them.
    at_or_above: HashSet<String>,
    /// Failed paths.
    exact: HashSet<String>,
    in_a_row: u32,
    failed: u64,
    finished: u64,
    systemic: Option<String>,
}

impl Failures {
    fn succeeded(&mut self) {
        self.in_a_row = 0;
        self.finished += 1;
    }

    fn failed(&mut self, action: &Action, error: &Error) {
        self.in_a_row += 1;
        self.failed += 1;
        self.finished += 1;
        let mut paths = vec![action.path()];
        if let Action::Rename { from, .. } = action {
            paths.push(&from.path);
        }
        for path in paths {
            let p = path.as_str();
            self.exact.insert(p.to_owned());
            self.at_or_above.insert(p.to_owned());
            self.at_or_above.extend(ancestors(p).map(str::to_owned));
        }
        if self.systemic.is_none() {
            if let Some(cause) = systemic_cause(error) {
                self.systemic = Some(format!("{cause} ({error})"));
            } else if self.in_a_row >= SYSTEMIC_IN_A_ROW {
                self.systemic = Some(format!("{SYSTEMIC_IN_A_ROW} actions failed in a row"));
            }
        }
    }

    /// Why every delete must wait, if a failure was systemic.
    fn systemic(&self) -> Option<String> {
        if let Some(reason) = &self.systemic {
            return Some(reason.clone());
        }
        (self.finished >= SYSTEMIC_SHARE_MIN && self.failed * 2 > self.finished)
            .then(|| format!("{} of {} actions failed", self.failed, self.finished))
    }

    /// True when a delete of `path` depends on a failed action: the same path (a rename's
    /// old path included), a folder above it or a path below it.
    fn blocks(&self, path: &RelPath) -> bool {
        let p = path.as_str();
        self.at_or_above.contains(p) || ancestors(p).any(|a| self.exact.contains(a))
    }
}

/// Whether an error means every further action will fail too: a full disk or quota, or
/// credentials the server no longer accepts.
fn systemic_cause(error: &Error) -> Option<&'static str> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        {
            return Some("the storage is full");
        }
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("no space left")
            || text.contains("insufficient storage")
            || text.contains("quota exceeded")
        {
            return Some("the storage is full");
        }
        if matches!(error, Error::PermissionDenied { .. })
            && (text.contains("unauthenticated")
                || text.contains("unauthorized")
                || text.contains("authentication")
                || text.contains("credentials"))
        {
            return Some("the credentials were refused");
        }
        current = e.source();
    }
    None
}

/// Batches base updates into transactions, each after a durability barrier on both sides.
///
/// A batch is made durable and written in the background while the run goes on: a barrier
/// (`syncfs` on a local disk) can take seconds, and the copies need not wait for it. One
/// batch is in flight at a time, so batches are written in the order they were cut; the
/// next is cut when it is due and the one in flight has ended, or the run waits for it once
/// [`MAX_PENDING`] updates are waiting. [`BaseWriter::flush`] waits for the one in flight,
/// then writes the rest: everything handed in before it is written when it returns.
struct BaseWriter {
    store: StateStore,
    clients: [Arc<dyn StorageClient>; 2],
    /// Attempts per barrier for transient errors, as for every other storage call.
    attempts: u32,
    pending: Vec<BaseUpdate>,
    /// Intent batches whose copies are all finished, each with the intents that stay
    /// (failed copies'), settled after the next batch of updates is written.
    clears: Vec<(IntentBatch, Vec<Intent>)>,
    last_flush: Instant,
    /// The batch being made durable and written. Dropping the writer (an ended or dropped
    /// run) aborts it before its write if the barrier has not ended: its updates are then
    /// not recorded, as any update the run had not written yet.
    in_flight: Option<tokio_util::task::AbortOnDropHandle<Result<(), SyncError>>>,
}

/// Base updates that may wait while a batch is in flight before the run waits for it.
const MAX_PENDING: usize = 4 * FLUSH_EVERY;

impl BaseWriter {
    fn new(store: StateStore, clients: [Arc<dyn StorageClient>; 2], attempts: u32) -> Self {
        BaseWriter {
            store,
            clients,
            attempts,
            pending: Vec::new(),
            clears: Vec::new(),
            last_flush: Instant::now(),
            in_flight: None,
        }
    }

    async fn extend(
        &mut self,
        updates: impl IntoIterator<Item = BaseUpdate>,
    ) -> Result<(), SyncError> {
        self.pending.extend(updates);
        // A batch that failed in the background stops the run at the next update, as a
        // failed write of the base always has.
        if self.in_flight.as_ref().is_some_and(|t| t.is_finished()) {
            self.wait_in_flight().await?;
        }
        let due = self.pending.len() >= FLUSH_EVERY || self.last_flush.elapsed() >= FLUSH_AFTER;
        if due && self.in_flight.is_some() && self.pending.len() >= MAX_PENDING {
            self.wait_in_flight().await?;
        }
        if due && self.in_flight.is_none() {
            self.start_batch();
        }
        Ok(())
    }

    /// Settles intent batch `batch` with the next flush, once the records of its finished
    /// copies are written: it keeps `remaining` only.
    fn settle(&mut self, batch: IntentBatch, remaining: Vec<Intent>) {
        self.clears.push((batch, remaining));
    }

    /// Waits for the batch in flight, if any, and returns its result.
    async fn wait_in_flight(&mut self) -> Result<(), SyncError> {
        let Some(task) = self.in_flight.take() else {
            return Ok(());
        };
        let joined = task.await;
        joined.map_err(|e| SyncError::State(format!("state task failed: {e}")))?
    }

    /// Cuts a batch of everything waiting and writes it in the background.
    fn start_batch(&mut self) {
        self.last_flush = Instant::now();
        let batch = std::mem::take(&mut self.pending);
        let clears = std::mem::take(&mut self.clears);
        let write = write_batch(
            self.store.clone(),
            self.clients.clone(),
            self.attempts,
            batch,
            clears,
        );
        self.in_flight = Some(tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
            write,
        )));
    }

    /// Writes everything handed in so far: waits for the batch in flight, then writes the
    /// rest.
    async fn flush(&mut self) -> Result<(), SyncError> {
        self.wait_in_flight().await?;
        self.last_flush = Instant::now();
        let batch = std::mem::take(&mut self.pending);
        let clears = std::mem::take(&mut self.clears);
        write_batch(
            self.store.clone(),
            self.clients.clone(),
            self.attempts,
            batch,
            clears,
        )
        .await
    }
}

/// Makes both sides durable, then writes `batch` to the base and settles `clears`.
async fn write_batch(
    store: StateStore,
    clients: [Arc<dyn StorageClient>; 2],
    attempts: u32,
    batch: Vec<BaseUpdate>,
    clears: Vec<(IntentBatch, Vec<Intent>)>,
) -> Result<(), SyncError> {
    if batch.is_empty() {
        if !clears.is_empty() {
            blocking(move || settle_all(&store, &clears)).await?;
        }
        return Ok(());
    }
    // The base may only claim what a power loss cannot take back. A transient failure of
    // the barrier (a dropped connection) is retried like any other call: giving up at once
    // would leave every copy of the batch unrecorded, and a user's edit of one of them
    // before the next run would then look like a conflict (issue 8, behaviour 12). A
    // backend reports a failed flush of its own disk (EIO from fsync) as a permanent
    // error, which is never retried: a second flush could succeed without the data.
    //
    // Both sides are asked even when the first fails: two folders of one failing disk both
    // lose what was written there, and a side not asked is never told (its error goes to
    // the next `syncfs` of the same open file, and the run ends here).
    let mut failed = None;
    for (client, side) in clients.iter().zip([Side::Source, Side::Destination]) {
        if let Err(source) = retry_transient(attempts, || client.sync_written()).await {
            // What this run wrote on `side` may be lost on its disk and still read back
            // whole from the page cache: the next run must not take those copies for
            // landed by their size and mtime (see `recover_intents`).
            let marked = {
                let store = store.clone();
                blocking(move || store.mark_unflushed(side)).await
            };
            if let Err(e) = marked {
                tracing::error!(
                    %side,
                    error = %e,
                    "a flush failed and could not be noted in the state: the next run may \
                     take copies this run made for landed"
                );
            }
            failed.get_or_insert(SyncError::Storage { side, source });
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    // The intents go only after the updates that settle their copies are in: a crash in
    // between leaves an intent whose copy is recorded, which the next run re-records.
    blocking(move || {
        store.apply(&batch)?;
        settle_all(&store, &clears)
    })
    .await
}

/// Settles each intent batch of `clears` with what remains of it (see
/// [`StateStore::settle_intents`]).
fn settle_all(store: &StateStore, clears: &[(IntentBatch, Vec<Intent>)]) -> Result<(), SyncError> {
    for (batch, remaining) in clears {
        store.settle_intents(*batch, remaining)?;
    }
    Ok(())
}

/// Runs `op` up to `attempts` times while it fails with a transient error, with exponential
/// backoff.
async fn retry_transient<T, F, Fut>(attempts: u32, mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut attempt = 1u32;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < attempts => {
                let wait = Duration::from_millis(100u64 << attempt.min(6));
                tracing::debug!(error = %e, attempt, ?wait, "transient error; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn blocking<T, F>(f: F) -> Result<T, SyncError>
where
    F: FnOnce() -> Result<T, SyncError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::State(format!("state task failed: {e}")))?
}

/// The intent of an action that writes a file: what will be at which path on which side.
fn intent_of(action: &Action) -> Option<Intent> {
    intended(action).map(|(path, to, version)| Intent {
        path: path.clone(),
        to,
        version: SideRecord::from_entry(version),
    })
}

/// What `action` copies where, if it copies: the path written, the side written to, and the
/// version written there.
fn intended(action: &Action) -> Option<(&RelPath, Side, &Entry)> {
    let (path, to, version) = match action {
        Action::Copy { from, entry, .. } => (&entry.path, from.other(), entry),
        Action::Rename { seen_on, to, .. } => (&to.path, seen_on.other(), to),
        Action::Conflict {
            source,
            destination,
            winner: Some(w),
        } => {
            let win = match w {
                Side::Source => source,
                Side::Destination => destination,
            };
            (&win.path, w.other(), win)
        }
        Action::SetAside { kept_side, new, .. } => (&new.path, *kept_side, new),
        _ => return None,
    };
    Some((path, to, version))
}

/// Files up to this size are hashed to check a copy that was interrupted or whose reply was
/// lost, where a side lists no hash.
const RECOVERY_HASH_LIMIT: u64 = 64 * 1024 * 1024;

/// What [`recover_intents`] found of an interrupted run's copies.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Base records of the copies that landed, in path order.
    pub records: Vec<BaseRecord>,
    /// The intents of copies that look landed on a side whose flush failed (see
    /// [`StateStore::mark_unflushed`]), in path order: what they read back may be the page
    /// cache's alone. They are recorded like the others (an edit of either side since is
    /// then a change of one side, not a conflict), and where neither side changed since they
    /// are made again
    /// ([`Reconciler::with_rewrites`](crate::reconcile::Reconciler::with_rewrites)). The
    /// run keeps them (and the mark of the failed flush) until it has made those copies
    /// again ([`StateStore::restart_intents`]), so a run that ends before (a kill, a failed
    /// re-copy, a pause, a run that may not write there) leaves them suspect.
    pub suspects: Vec<Intent>,
    /// Intents found.
    pub found: usize,
    /// A side's flush failed since the intents were last cleared: the run clears the mark
    /// with the intents, even where none were left.
    pub unflushed: bool,
}

/// Turns the intents an interrupted run left into base records, for the copies that landed.
///
/// For each intent, the side written to is asked what it holds at the path. When that is
/// exactly the intended version — same size, and the same MD5 where both are known (the
/// target's is computed for files up to 64 MiB when only the intent has one), else the same
/// mtime at the target's precision where the target keeps mtimes — the copy landed, and the
/// returned record says both sides hold that version. The next plan then sees an edit made
/// since as a change of one side, not as a conflict. Anything else (the copy did not land, or
/// it cannot be told) yields no record: the path is planned from the old base, which is safe.
///
/// Where a durability barrier of the side written failed ([`StateStore::mark_unflushed`]),
/// a copy that looks landed is also returned in [`Recovered::suspects`], to be made again:
/// a writeback error may have lost it on the disk while the page cache still serves it
/// whole, so neither its size and mtime nor its content as read can vouch for it.
///
/// # Errors
/// [`SyncError::State`] when the intents cannot be read.
pub async fn recover_intents(
    store: &StateStore,
    source: &Arc<dyn StorageClient>,
    destination: &Arc<dyn StorageClient>,
) -> Result<Recovered, SyncError> {
    let unflushed = {
        let store = store.clone();
        blocking(move || store.unflushed_sides()).await?
    };
    let intents = {
        let store = store.clone();
        blocking(move || store.intents()).await?
    };
    let found = intents.len();
    let mut suspects = Vec::new();
    // On a side that folds names a stat of `report.txt` finds `Report.txt`: what is there
    // under the exact name is read from the folders' listings instead.
    let mut exact: [Option<HashSet<String>>; 2] = [None, None];
    for (i, client) in [source, destination].into_iter().enumerate() {
        let caps = client.capabilities();
        if caps.case_insensitive || caps.normalization_insensitive {
            let side = if i == 0 {
                Side::Source
            } else {
                Side::Destination
            };
            let paths = intents.iter().filter(|t| t.to == side).map(|t| &t.path);
            exact[i] = Some(exact_names(client.as_ref(), paths).await);
        }
    }
    let mut records = Vec::new();
    for intent in intents {
        let (client, exact) = match intent.to {
            Side::Source => (source, &exact[0]),
            Side::Destination => (destination, &exact[1]),
        };
        if exact
            .as_ref()
            .is_some_and(|names| !names.contains(intent.path.as_str()))
        {
            continue;
        }
        let now = match client.stat(&intent.path).await {
            Ok(now) => now,
            Err(e) => {
                if !e.is_not_found() {
                    tracing::debug!(path = %intent.path, "checking an interrupted copy: {e}");
                }
                continue;
            }
        };
        // The side still holds exactly the version the base recorded there (its file id or
        // ETag included): the copy did not land, however alike the two versions look by size
        // and mtime (a WebDAV server keeps the old mtime property when another client
        // overwrites a file). Planned again from the base, the copy is simply made again.
        // Not on a side whose flush failed: a copy still suspect since an earlier run
        // (which recorded it, see `StateStore::restart_intents`) is described by the base
        // too, and is made again like the others (at worst a copy of the same version).
        let before = if unflushed[intent.to.index()] {
            None
        } else {
            let store = store.clone();
            let path = intent.path.clone();
            blocking(move || store.get(&path)).await?
        };
        if before
            .as_ref()
            .and_then(|b| b.present(intent.to))
            .is_some_and(|r| r.describes(&now))
        {
            continue;
        }
        if !landed(client.as_ref(), &now, &intent.version).await {
            continue;
        }
        if unflushed[intent.to.index()] {
            tracing::info!(path = %intent.path, side = %intent.to, "a copy made before a failed flush is made again");
            suspects.push(intent.clone());
        } else {
            tracing::info!(path = %intent.path, side = %intent.to, "an interrupted copy had landed; recorded");
        }
        let (source, destination) = match intent.to {
            Side::Destination => (intent.version, SideRecord::from_entry(&now)),
            Side::Source => (SideRecord::from_entry(&now), intent.version),
        };
        records.push(BaseRecord::new(intent.path, source, destination));
    }
    Ok(Recovered {
        records,
        suspects,
        found,
        unflushed: unflushed.contains(&true),
    })
}

/// The engine's folder (below `.syncengine/`) where the old names of two-step renames wait
/// between the steps.
const STEPPING_AREA: &str = "stepping";

/// What [`return_stepped_files`] found waiting on a side.
#[derive(Debug, Default)]
pub struct SteppedFiles {
    /// Notes for the run's warnings: a file that could not go back (where it is kept and
    /// what to do), and in a dry run each file a real run would put back.
    pub warnings: Vec<String>,
    /// In a dry run, the files that wait, as entries at their old paths in canonical order:
    /// the dry run lists them there, as the real run will after putting them back
    /// ([`with_waiting_files`]), so it plans what the real run does. Empty otherwise.
    pub waiting: Vec<Entry>,
}

/// Puts back what a run killed between the two steps of a rename on a side that folds
/// names left in `<root>/.syncengine/stepping/<stamp>/<path>`: each file goes back to
/// `<path>` (a rename that never replaces), so the side is as it was before that run and
/// this run plans the rename again. A file whose old name was taken meanwhile stays, and
/// is named in a warning with what to do. A dry run moves nothing and returns the files
/// that wait instead.
///
/// # Errors
/// Listing the stepping folder failed: the run cannot tell what the side holds, and must
/// not go on as if those files were gone.
pub async fn return_stepped_files(
    client: &dyn StorageClient,
    side: Side,
    dry_run: bool,
) -> Result<SteppedFiles, Error> {
    let folder = RelPath::new(format!("{STATE_DIR_NAME}/{STEPPING_AREA}"))?;
    let left = client.list_all(Some(&folder)).await?;
    let mut found = SteppedFiles::default();
    for stone in left {
        let Some(old) = stone
            .path
            .as_str()
            .strip_prefix(folder.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(_stamp, old)| RelPath::new(old).ok())
        else {
            continue;
        };
        if dry_run {
            found.warnings.push(format!(
                "{old} on the {side} waits at {} since an interrupted rename; a real run puts \
                 it back first (this dry run plans as if it were back)",
                stone.path
            ));
            found.waiting.push(Entry { path: old, ..stone });
            continue;
        }
        let opts = TransferOptions::default().with_overwrite(false);
        match client.rename_opts(&stone.path, &old, opts).await {
            Ok(_) => {
                tracing::info!(%side, path = %old, "put back a file an interrupted rename had moved aside");
            }
            Err(e) => found.warnings.push(format!(
                "{old} on the {side} was moved aside by an interrupted rename and cannot go \
                 back ({e}); it is kept at {}: move it where you want it",
                stone.path
            )),
        }
    }
    found.waiting.sort_by(|a, b| a.path.cmp(&b.path));
    found.waiting.dedup_by(|a, b| a.path == b.path);
    Ok(found)
}

/// `listing` with the `waiting` entries (canonical order, see [`SteppedFiles::waiting`])
/// merged in at their places; a listed entry at the same path wins.
pub fn with_waiting_files(listing: EntryStream, waiting: Vec<Entry>) -> EntryStream {
    if waiting.is_empty() {
        return listing;
    }
    // The listing is dropped once it has ended (a stream must not be polled after that),
    // and after an error, which ends a listing.
    let state = (
        Some(listing),
        std::collections::VecDeque::from(waiting),
        None::<Entry>,
    );
    futures::stream::unfold(state, |(mut listing, mut waiting, mut next)| async move {
        if next.is_none()
            && let Some(stream) = listing.as_mut()
        {
            match stream.next().await {
                Some(Ok(e)) => next = Some(e),
                Some(Err(e)) => return Some((Err(e), (None, Default::default(), None))),
                None => listing = None,
            }
        }
        let item = match (&next, waiting.front()) {
            (Some(listed), Some(w)) if w.path < listed.path => waiting.pop_front(),
            (Some(listed), Some(w)) if w.path == listed.path => {
                waiting.pop_front();
                next.take()
            }
            (Some(_), _) => next.take(),
            (None, Some(_)) => waiting.pop_front(),
            (None, None) => None,
        }?;
        Some((Ok(item), (listing, waiting, next)))
    })
    .fuse()
    .boxed()
}

/// The names among `paths` that `client` lists exactly as spelled: a walk of just the folders
/// above them, compared byte for byte (a side that folds names finds `Report.txt` for a
/// stat of `report.txt`, and `Docs/a.txt` under `docs/`). A listing that fails confirms
/// nothing.
async fn exact_names<'a>(
    client: &dyn StorageClient,
    paths: impl Iterator<Item = &'a RelPath>,
) -> HashSet<String> {
    let wanted: HashSet<String> = paths.map(|p| p.as_str().to_owned()).collect();
    if wanted.is_empty() {
        return wanted;
    }
    let folders: Arc<HashSet<String>> = Arc::new(
        wanted
            .iter()
            .flat_map(|p| ancestors(p).map(str::to_owned))
            .collect(),
    );
    let prune: crate::client::PruneFn = {
        let folders = folders.clone();
        Arc::new(move |folder: &RelPath| !folders.contains(folder.as_str()))
    };
    let mut listing = client.list_pruned(None, prune);
    let mut found = HashSet::new();
    while let Some(entry) = listing.next().await {
        match entry {
            Ok(entry) => {
                if wanted.contains(entry.path.as_str()) {
                    found.insert(entry.path.as_str().to_owned());
                }
            }
            // A path the listing cannot see is not found (so not confirmed); the others
            // still are.
            Err(Error::Unlisted { .. }) => {}
            Err(e) => {
                tracing::debug!("checking interrupted copies by name: {e}");
                return HashSet::new();
            }
        }
    }
    found
}

/// True when `now` is the copy of `version`.
async fn landed(client: &dyn StorageClient, now: &Entry, version: &SideRecord) -> bool {
    if now.size != version.size {
        return false;
    }
    if let Some(want) = &version.hash {
        let have = match &now.hash {
            Some(h) => Some(h.clone()),
            None if now.size <= RECOVERY_HASH_LIMIT => client.md5_of(now).await.ok(),
            None => None,
        };
        if let Some(have) = have {
            return &have == want;
        }
    }
    let caps = client.capabilities();
    match (caps.set_mtime, now.mtime_nanos(), version.mtime_nanos) {
        (true, Some(a), Some(b)) => {
            truncate_nanos(a, caps.mtime_precision) == truncate_nanos(b, caps.mtime_precision)
        }
        _ => false,
    }
}

/// The base as `base` streams it, with `records` replacing (or adding) the records of their
/// paths. Both are in canonical order; `records` is small (one per recovered intent).
pub fn overlay_base(base: BaseStream, mut records: Vec<BaseRecord>) -> BaseStream {
    if records.is_empty() {
        return base;
    }
    records.sort_by(|a, b| a.path.cmp(&b.path));
    records.dedup_by(|a, b| a.path == b.path);
    struct State {
        base: BaseStream,
        base_done: bool,
        pending: Option<BaseRecord>,
        records: std::iter::Peekable<std::vec::IntoIter<BaseRecord>>,
    }
    let state = State {
        base,
        base_done: false,
        pending: None,
        records: records.into_iter().peekable(),
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.pending.is_none() && !st.base_done {
            match st.base.next().await {
                Some(Ok(r)) => st.pending = Some(r),
                Some(Err(e)) => {
                    st.base_done = true;
                    st.records = Vec::new().into_iter().peekable();
                    return Some((Err(e), st));
                }
                None => st.base_done = true,
            }
        }
        let next = match (&st.pending, st.records.peek()) {
            (Some(b), Some(r)) if r.path <= b.path => {
                if r.path == b.path {
                    st.pending = None;
                }
                st.records.next()
            }
            (Some(_), _) => st.pending.take(),
            (None, Some(_)) => st.records.next(),
            (None, None) => None,
        };
        next.map(|r| (Ok(r), st))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::ends_with_conflict_tag;
    use crate::RelPath;

    fn tagged(p: &str) -> bool {
        ends_with_conflict_tag(&RelPath::new(p).unwrap())
    }

    #[test]
    fn a_conflict_tag_is_no_extension() {
        assert!(tagged("c.conflict-20261202T052824Z-source"));
        assert!(tagged("d/c.conflict-20261202T052824Z-destination-12"));
        assert!(!tagged("c.conflict-20261202T052824Z-source.txt"));
        assert!(!tagged("c.conflict-20261202T052824Z-sourcery"));
        assert!(!tagged("c.conflict-2026120XT052824Z-source"));
        assert!(!tagged("c.conflict-20261202T052824Z-source-"));
        assert!(!tagged("c.conflict-short-source"));
        assert!(!tagged("report.pdf"));
    }
}
