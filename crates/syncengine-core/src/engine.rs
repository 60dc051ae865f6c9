//! [`SyncEngine`]: runs a [`SyncPair`] end to end.
//!
//! One run: take the pair's lock, open its state, read ignore rules, stream both listings
//! and the base through the [`Reconciler`], check the plan
//! against the safety rules, then (unless it is a dry run) execute it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bandwidth::Bandwidth;
use crate::capabilities::Capabilities;
use crate::client::{EntryStream, PruneFn, StorageClient, StorageClientExt};
use crate::collide::{Collisions, drop_crossing_collisions, find_collisions, mark_collisions};
use crate::decide::Policy;
use crate::entry::Entry;
use crate::entry_filter::EntryFilter;
use crate::error::{Error, SyncError};
use crate::exec::{
    Executor, ResolvedRecovery, Suspects, overlay_base, recover_intents, return_stepped_files,
    with_waiting_files,
};
use crate::folding;
use crate::identity;
use crate::ignore_rules::{IgnoreRules, STATE_DIR_NAME, SYNCIGNORE_FILE};
use crate::mode::{InitialSyncPreference, Side, SyncMode};
use crate::order::{OutOfOrder, check_order, sort_listing};
use crate::pair::{Recovery, SyncPair};
use crate::path::RelPath;
use crate::plan::{Action, Plan, PlanTally};
use crate::progress::{ActionReport, PlanGroup, ProgressEvent};
use crate::protect;
use crate::reconcile::Reconciler;
use crate::spill::spill_error;
use crate::state::{BaseRecord, BaseUpdate, Intent, PairLock, StateStore};
use crate::stats::SyncStats;
use crate::verify::read_own_file;

/// Entries kept in memory per sorted run when a listing has to be sorted. Two runs may be
/// alive at once (one filling while the last is written out): at ~140 bytes an entry plus
/// its strings, 32 768 keep a million-object no-change run of an unordered store (SeaweedFS)
/// well inside the 64 MiB budget; 100 000 took 62 MiB (issue 11).
const SORT_RUN_SIZE: usize = 32_768;

/// How long a run waits, before it returns, for the clients' background clean-up (see
/// [`StorageClient::settle`]).
pub const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs syncs. Holds where pair state lives, the progress channel and the cancellation token.
///
/// ```
/// use std::sync::Arc;
/// use syncengine_core::{MemoryClient, SyncEngine, SyncMode, SyncOptions, SyncPair};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let state = tempfile::tempdir().unwrap();
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let engine = SyncEngine::new(state.path()).with_progress(tx);
/// let pair = SyncPair::new(Arc::new(MemoryClient::new()), Arc::new(MemoryClient::new()), SyncMode::TwoWay)
///     .with_options(SyncOptions::default().with_dry_run(true));
/// let stats = engine.sync_pair(&pair).await.unwrap();
/// assert!(stats.dry_run && stats.is_noop());
/// drop(engine);
/// while let Ok(event) = rx.try_recv() { println!("{event:?}"); }
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SyncEngine {
    state_dir: PathBuf,
    progress: Option<UnboundedSender<ProgressEvent>>,
    listing: Option<tokio::sync::mpsc::Sender<ProgressEvent>>,
    cancel: CancellationToken,
    stop_starting: Option<CancellationToken>,
    bandwidth: Bandwidth,
    cancel_grace: std::time::Duration,
}

/// How long a cancelled run may take to end the actions it had in flight (abandoning them,
/// then recording what was done) before it is dropped where it waits: see
/// [`SyncEngine::with_cancel_grace`].
pub const DEFAULT_CANCEL_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

impl SyncEngine {
    /// Creates an engine keeping each pair's state database under `state_dir`.
    pub fn new(state_dir: impl AsRef<Path>) -> Self {
        SyncEngine {
            state_dir: state_dir.as_ref().to_path_buf(),
            progress: None,
            listing: None,
            cancel: CancellationToken::new(),
            stop_starting: None,
            bandwidth: Bandwidth::unlimited(),
            cancel_grace: DEFAULT_CANCEL_GRACE,
        }
    }

    /// How long a cancelled run ([`with_cancellation`](Self::with_cancellation)) may take to
    /// end the actions it had in flight, abandoning them and recording what was done
    /// (default [`DEFAULT_CANCEL_GRACE`], 30 s), before it is dropped where it waits, as a
    /// kill would stop it. Past the grace the run returns [`SyncError::Cancelled`] even if a
    /// call does not answer (a flush of a hung disk, which no timeout ends); what it did not
    /// record, the next run finds and records. Outside its actions (listing, planning) a
    /// cancelled run is dropped at once.
    pub fn with_cancel_grace(mut self, grace: std::time::Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Limits the bandwidth of every run to `budget` (rclone's `--bwlimit`): each pair's
    /// remote sides (or a local↔local pair's destination) are throttled with
    /// [`Bandwidth::throttle_pair`] for the run. The budget is shared with every clone of it,
    /// so runs of several pairs, concurrent or not, in this engine or in others given the
    /// same budget, spend one limit together. See [`crate::bandwidth`].
    ///
    /// ```
    /// use syncengine_core::SyncEngine;
    /// use syncengine_core::bandwidth::Bandwidth;
    ///
    /// let budget = Bandwidth::new("10M:1M".parse().unwrap());
    /// let engine = SyncEngine::new("/tmp/state").with_bandwidth(budget.clone());
    /// assert_eq!(engine.bandwidth().limit().to_string(), "10Mi:1Mi");
    /// ```
    pub fn with_bandwidth(mut self, budget: Bandwidth) -> Self {
        self.bandwidth = budget;
        self
    }

    /// The bandwidth budget runs spend ([`Bandwidth::unlimited`] by default).
    pub fn bandwidth(&self) -> &Bandwidth {
        &self.bandwidth
    }

    /// Sends progress events to `tx`.
    pub fn with_progress(mut self, tx: UnboundedSender<ProgressEvent>) -> Self {
        self.progress = Some(tx);
        self
    }

    /// Sends a dry run's plan to `tx` before the run returns: for each [`PlanGroup`] in
    /// order that has actions, a [`ProgressEvent::GroupPlanned`], then one
    /// [`ProgressEvent::WouldDo`] per action of the group. The channel is bounded and the
    /// engine waits while it is full, so a plan of a million actions is listed without a
    /// second copy of it in memory. Real runs send nothing here (their actions are reported
    /// by [`ProgressEvent::Done`] on the progress channel).
    pub fn with_listing(mut self, tx: tokio::sync::mpsc::Sender<ProgressEvent>) -> Self {
        self.listing = Some(tx);
        self
    }

    /// Stops runs cleanly when `token` is cancelled: no new action starts, actions in flight
    /// are abandoned (atomic writes leave the old content), deletes do not run, and the base
    /// is true for what was done. The run then returns [`SyncError::Cancelled`].
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Winds runs down gently when `token` is cancelled: no new action starts, and the
    /// actions in flight finish (a pause that lets transfers end). The run then returns
    /// [`SyncError::Cancelled`], the base true for what was done; what it did not start, the
    /// next run does. Cancel the [`with_cancellation`](Self::with_cancellation) token as
    /// well to abandon the actions in flight (after a grace period, say).
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncengine_core::SyncEngine;
    /// use tokio_util::sync::CancellationToken;
    ///
    /// let (stop_starting, cancel) = (CancellationToken::new(), CancellationToken::new());
    /// let engine = SyncEngine::new("/var/lib/myapp/sync")
    ///     .with_stop_starting(stop_starting.clone())
    ///     .with_cancellation(cancel.clone());
    /// // To pause: let the transfers in flight finish, abandon them after 10 s.
    /// let pause = async move {
    ///     stop_starting.cancel();
    ///     tokio::time::sleep(Duration::from_secs(10)).await;
    ///     cancel.cancel();
    /// };
    /// # drop((engine, pause));
    /// ```
    pub fn with_stop_starting(mut self, token: CancellationToken) -> Self {
        self.stop_starting = Some(token);
        self
    }

    /// The directory holding pair state.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Syncs `pair` once.
    ///
    /// # Errors
    /// See [`SyncError`]. Failures of single files do not fail the run: they are counted in
    /// [`SyncStats::errors`] and described in [`SyncStats::error_messages`].
    pub async fn sync_pair(&self, pair: &SyncPair) -> Result<SyncStats, SyncError> {
        // Throttled clients forward everything but the bytes of reads and writes: the pair's
        // id, state and checks are those of the pair as given.
        let throttled;
        let pair = if self.bandwidth.is_unlimited() {
            pair
        } else {
            throttled = self.bandwidth.throttle_pair(pair);
            &throttled
        };
        let span = tracing::info_span!(
            "sync_pair",
            source = %pair.source,
            destination = %pair.destination,
            mode = %pair.mode,
            dry_run = pair.options.dry_run,
        );
        // A call that never answers (a hung disk or mount, which no timeout ends) must not
        // hold a cancelled run. While actions are in flight the executor abandons them
        // itself, for the grace at most (its record of what was done ends with a flush,
        // which a hung disk never ends); at any other time (the checks, listings and
        // planning before them, the notes after them) the run is dropped where it waits, as
        // a kill would stop it there: every step is made to survive that, and the next run
        // takes over.
        let (actions, mut actions_watch) = tokio::sync::watch::channel(false);
        let cancelled_outside_actions = async {
            self.cancel.cancelled().await;
            let ended = actions_watch.wait_for(|in_flight| !in_flight);
            let _ = tokio::time::timeout(self.cancel_grace, ended).await;
        };
        let result = tokio::select! {
            biased;
            result = self.run(pair, &actions).instrument(span.clone()) => result,
            () = cancelled_outside_actions => Err(SyncError::Cancelled),
        };
        // Writes dropped by a cancellation may have left clean-up (an S3 multipart abort)
        // running in the background: it finishes before the run returns, so a program that
        // exits right after (the CLI on Ctrl-C) does not cut it short.
        futures::future::join(
            pair.source.settle(SETTLE_LIMIT),
            pair.destination.settle(SETTLE_LIMIT),
        )
        .instrument(span)
        .await;
        result
    }

    /// One run; `actions` is set while the executor has actions in flight (see
    /// [`sync_pair`](Self::sync_pair)).
    async fn run(
        &self,
        pair: &SyncPair,
        actions: &tokio::sync::watch::Sender<bool>,
    ) -> Result<SyncStats, SyncError> {
        // A protected side is read through a view that refuses every change (`protect`).
        let guarded = protect::guard(pair)?;
        let pair = guarded.as_ref().unwrap_or(pair);
        let opts = &pair.options;
        check_reachable(pair).await?;
        // Before any state is created: a state directory that is a root is refused.
        for side in [Side::Source, Side::Destination] {
            let place = self.state_dir_place(pair, side).await?;
            if let OwnDir::Below(dir) = place
                && opts.is_protected(side)
                && !opts.dry_run
            {
                return Err(SyncError::Config(format!(
                    "the state directory lies inside the protected {side} root (at {dir}): a \
                     run writes its state there; pass a --state-dir outside that root"
                )));
            }
        }
        let locations = pair.locations().await?;
        let id = match pair.explicit_id() {
            Some(id) => id.to_owned(),
            None => identity::pair_id(&locations[0], &locations[1]),
        };
        // State kept under the id older versions derived from display strings is adopted.
        let older_id = pair.explicit_id().is_none().then(|| pair.older_id());
        let dry_run = opts.dry_run;

        // Before the state is created: a run refused for a missing root leaves no state file.
        self.check_roots_exist(pair, &locations, &id, older_id.as_deref())
            .await?;

        // A dry run takes no lock and creates no state: it must change nothing.
        // Taken here, not on a blocking thread: a run dropped at this point (a caller's
        // timeout, a crash test) must not leave the lock held by a thread that finishes
        // later, where the next run would find it "held by another run". A few syscalls;
        // adopting an older id's files happens once per pair.
        let _lock = if dry_run {
            None
        } else {
            let lock = PairLock::acquire(&self.state_dir, &id)?;
            if let Some(old) = &older_id {
                StateStore::adopt_older_id(&self.state_dir, old, &id)?;
            }
            Some(lock)
        };
        let store = {
            let dir = self.state_dir.clone();
            let id = id.clone();
            if dry_run {
                existing_state(&dir, &id, older_id.as_deref())
                    .await?
                    .map_or_else(StateStore::open_in_memory, Ok)?
            } else {
                blocking(move || StateStore::open(&dir, &id)).await?
            }
        };
        let roots = match identity::check_roots(pair, &locations, &store, &id, dry_run).await {
            Err(SyncError::RootChanged { mut changes }) => {
                note_empty_roots(pair, &store, &mut changes).await?;
                return Err(SyncError::RootChanged { changes });
            }
            other => other?,
        };
        // The initial-sync preference holds until the pair's first plan has ended normally;
        // a safety stop, a dry run, a kill or a cancellation does not consume it.
        let initial = {
            let s = store.clone();
            blocking(move || s.initial_sync_pending()).await?
        };
        // Records with the initial sync still pending: a first run stopped partway (a side
        // lost, a cancel, a kill). It is still the initial sync, and the notes say so.
        let resumed = initial && {
            let s = store.clone();
            blocking(move || s.count()).await? > 0
        };

        let policy = Policy {
            mode: pair.mode,
            initial,
            initial_preference: opts.initial_preference.unwrap_or_default(),
            conflict: opts.conflict,
        };

        // How each root folds names: declared, cached with its identity, or probed now. The
        // clients below carry the answer in their capabilities, which is where the
        // collision check, the reconciler and the executor read it.
        let folding = folding::resolve(pair, &roots, &store, dry_run).await?;
        let [source, destination] = folding.clients;
        // What a run killed between the two steps of a rename on a folding side left aside
        // goes back first: the side must not look emptied, and nothing may stay behind.
        // A dry run moves nothing: it lists the waiting files where the real run puts them.
        let mut stepped_warnings = Vec::new();
        let mut waiting: [Vec<Entry>; 2] = Default::default();
        for (i, (side, client)) in [(Side::Source, &source), (Side::Destination, &destination)]
            .into_iter()
            .enumerate()
        {
            let caps = client.capabilities();
            if !(caps.case_insensitive || caps.normalization_insensitive) {
                continue;
            }
            // A protected side's waiting files stay where they are; the run lists them.
            let found =
                return_stepped_files(client.as_ref(), side, dry_run || opts.is_protected(side))
                    .await
                    .map_err(|source| SyncError::Listing { side, source })?;
            stepped_warnings.extend(found.warnings);
            waiting[i] = found.waiting;
        }

        let rules = Arc::new(self.ignore_rules(pair).await?);
        // A side caught listing out of canonical order once is sorted by the engine from then
        // on: the run plans again with its listing sorted, and the state remembers it.
        let remembered = {
            let s = store.clone();
            blocking(move || s.unordered_listings()).await?
        };
        let mut sort = remembered.map(|r| r || opts.sort_listings);
        let mut order_notes = Vec::new();
        let (mut plan, ignored, skipped_before, recovered, stale_intents, suspects) = loop {
            let attempt = self
                .plan_once(
                    PlanInputs {
                        pair,
                        policy,
                        rules: &rules,
                        clients: [&source, &destination],
                        waiting: &waiting,
                        store: &store,
                        roots: &roots,
                    },
                    sort,
                )
                .await;
            match attempt {
                Err(SyncError::Listing { side, source: e })
                    if is_out_of_order(&e) && !sort[side.index()] =>
                {
                    sort[side.index()] = true;
                    let note = format!(
                        "the {side} ({}) listed out of canonical order ({e}); the engine \
                         sorted its listing and planned again, and sorts it from now on for \
                         this pair",
                        pair.client(side)
                    );
                    tracing::info!("{note}");
                    order_notes.push(note);
                    if !dry_run {
                        let s = store.clone();
                        blocking(move || s.record_unordered_listing(side)).await?;
                    }
                }
                other => break other?,
            }
        };
        plan.warnings.extend(order_notes);
        let caps = [source.capabilities(), destination.capabilities()];
        if let Some(note) = folding_note(&caps) {
            let folds = caps.map(|c| c.case_insensitive || c.normalization_insensitive);
            drop_crossing_collisions(&mut plan, folds, &note).map_err(spill_error)?;
        }
        plan.warnings.extend(roots.warnings.iter().cloned());
        plan.warnings.extend(folding.warnings);
        plan.warnings.extend(stepped_warnings);
        if roots.accepted {
            skip_deletions(&mut plan).map_err(spill_error)?;
        }
        for side in opts.protected.iter().copied() {
            protect::protect_plan(&mut plan, side, pair.mode).map_err(spill_error)?;
        }

        plan.skipped += ignored.load(Ordering::Relaxed);
        for (side, before) in [Side::Source, Side::Destination]
            .into_iter()
            .zip(skipped_before)
        {
            let n = pair.client(side).skipped_count().saturating_sub(before);
            if n > 0 {
                plan.skipped += n;
                plan.warnings
                    .push(format!("{n} entries on the {side} were skipped"));
            }
        }
        if initial
            && opts.initial_preference.is_none()
            && pair.mode == SyncMode::TwoWay
            && let Some(w) = risk_warning(plan.source_files, plan.destination_files)
        {
            plan.warnings.push(w);
            if resumed {
                plan.warnings.push(UNFINISHED_FIRST_SYNC.to_owned());
            }
        }
        if !initial
            && let Some(p) = opts.initial_preference
            && p != InitialSyncPreference::Merge
        {
            plan.warnings.push(format!(
                "the initial-sync preference {p} was ignored: this pair's first sync already ran, \
                 so files found on one side only are ordinary additions"
            ));
        }
        for side in [Side::Source, Side::Destination] {
            let recovery = match side {
                Side::Source => &opts.source_recovery,
                Side::Destination => &opts.destination_recovery,
            };
            // A protected side gets no trash: nothing of it can be published.
            if opts.is_protected(side) {
                continue;
            }
            if let Some(w) = served_root_warning(side, pair.client(side), recovery).await {
                plan.warnings.push(w);
            }
        }
        for w in &plan.warnings {
            tracing::debug!("{w}");
            self.emit(ProgressEvent::Warning(w.clone()));
        }

        // One pass over the actions for all that must be known before the first one starts.
        let tally = plan.tally().map_err(spill_error)?;
        check_safety(&plan, &tally, pair, &locations)?;

        if dry_run {
            self.list_plan(&plan, pair, &rules)
                .await
                .map_err(spill_error)?;
            let mut stats = plan
                .predicted_stats_in(
                    pair.mode,
                    opts.conflict_loser,
                    opts.protected.first().copied(),
                    &rules,
                )
                .map_err(spill_error)?;
            stats.dry_run = true;
            return Ok(stats);
        }

        if roots.accepted || !roots.record.is_empty() {
            let s = store.clone();
            let (record, accepted) = (roots.record.clone(), roots.accepted_sides.clone());
            blocking(move || s.record_root_identities(&record, &accepted)).await?;
        }
        // Each real run that acts leaves a new generation in each root before and after its
        // actions, so an older copy of a root put back later (same id file) is recognised
        // and stopped — also a copy taken while the run was changing it. Both roots: the base
        // moves on for the side copies come from as well (an older copy of it would look like
        // deletions and old edits). A root the run changes but whose generation cannot be
        // written is not changed: the run stops here. A run that changes neither the roots
        // nor the base writes none. One that changes only the base (the same edit made on
        // both sides, a deletion a backup mode keeps, a landed copy recovered) does: a copy
        // of a root taken before it would otherwise pass for current under the new base. So
        // does one that accepted a root: an accepted older copy is current from now on.
        let (changed, planned_bytes) = (tally.changes, tally.bytes);
        let mut generations = Vec::new();
        let moves_on = !plan.actions.is_empty()
            || !plan.state_updates.is_empty()
            || !recovered.is_empty()
            || roots.accepted;
        if let Some(file) = roots.generation_file.as_ref().filter(|_| moves_on) {
            for (side, floor) in roots.generations.iter().copied() {
                if opts.is_protected(side) {
                    let w = format!(
                        "this run's generation was not written into the protected {side} \
                         root: an older copy of that root put back later would not be \
                         recognised as one"
                    );
                    tracing::info!("{w}");
                    plan.warnings.push(w);
                    continue;
                }
                let client = pair.client(side).as_ref();
                match identity::advance_generation(client, side, file, floor, &store).await {
                    Ok(written) => generations.push((side, written)),
                    Err(e) if changed[side.index()] => return Err(e),
                    Err(e) => {
                        let w = format!(
                            "could not write this run's generation into the {side} root ({e}); \
                             this run does not change that root, but an older copy of it put \
                             back later would not be recognised"
                        );
                        tracing::warn!("{w}");
                        plan.warnings.push(w);
                    }
                }
            }
        }

        self.emit(ProgressEvent::Planned {
            actions: plan.actions.len() as u64,
            bytes: planned_bytes,
        });
        let mut stats = SyncStats {
            skipped: plan.skipped,
            unknown: plan.source_unknown + plan.destination_unknown,
            protected: plan.protected,
            warnings: plan.warnings.clone(),
            ..SyncStats::default()
        };
        let transfers = opts.transfers_for(source.as_ref(), destination.as_ref());
        let executor = Executor {
            source,
            destination,
            store: store.clone(),
            progress: self.progress.clone(),
            cancel: self.cancel.clone(),
            stamp: run_stamp(),
            source_recovery: resolve_recovery(&opts.source_recovery),
            destination_recovery: resolve_recovery(&opts.destination_recovery),
            conflict_loser: opts.conflict_loser,
            transfers,
            attempts: opts.attempts,
            mode: pair.mode,
            stale_intents,
            actions_apart: tally.apart,
            suspects: Suspects::new(suspects),
            checksum: opts.checksum,
            conflict_names: Default::default(),
            reach: Default::default(),
            vanished: Default::default(),
            recent_trash: Default::default(),
            backup_flushes: Default::default(),
            protected: opts.protected.first().copied(),
            protected_follow_ups: Default::default(),
            trashed: Default::default(),
            rules: rules.clone(),
            ranged_files: Arc::new(tokio::sync::Semaphore::new(1)),
            stop_starting: self.stop_starting.clone(),
        };
        let recovered = recovered.into_iter().map(BaseUpdate::Put).collect();
        actions.send_replace(true);
        let executed = executor.run(plan, recovered, &mut stats).await;
        actions.send_replace(false);
        executor.trashed.count_into(&mut stats);
        let vanished = executor.vanished.load(Ordering::Relaxed);
        if vanished > 0 {
            stats.warnings.push(format!(
                "{vanished} file(s) to delete were gone by the time of the delete (moved or \
                 deleted during the run); not counted as deleted, and the next run looks at \
                 them again"
            ));
        }
        // A side lost during the run is not written to again.
        let lost = match &executed {
            Err(SyncError::Unreachable { side, .. }) => Some(*side),
            _ => None,
        };
        if let Some(file) = &roots.generation_file {
            // (`generations` holds no protected side: none was written there.)
            for (side, floor) in generations.into_iter().filter(|(s, _)| Some(*s) != lost) {
                let client = pair.client(side).as_ref();
                identity::note_engine_temps(client, file).await;
                if let Err(e) =
                    identity::advance_generation(client, side, file, floor, &store).await
                {
                    let w = format!(
                        "could not write the {side} root's end-of-run generation ({e}): a copy \
                         of that root taken during this run would not be recognised as older"
                    );
                    tracing::warn!("{w}");
                    stats.warnings.push(w);
                }
            }
        }
        executed?;
        // The plan ended normally (per-file errors allowed): an accepted root's no-deletion
        // run is over, and so is the initial sync.
        if roots.accepted {
            let s = store.clone();
            blocking(move || s.acceptance_done()).await?;
        }
        if initial {
            let s = store.clone();
            blocking(move || s.mark_initial_sync_done()).await?;
        }

        if stats.errors == 0 {
            let s = store.clone();
            blocking(move || s.mark_completed()).await?;
        }
        // What `syncengine pairs` shows: never worth failing the run for.
        let (s, mode) = (store.clone(), pair.mode);
        let (roots, counts) = (
            locations.clone().map(|l| l.to_string()),
            crate::state::pairs::RunCounts::of(&stats),
        );
        if let Err(e) = blocking(move || s.record_run(mode, &roots, &counts)).await {
            stats
                .warnings
                .push(format!("could not record the pair's roots and mode: {e}"));
        }
        for side in [Side::Source, Side::Destination] {
            if opts.is_protected(side) {
                continue;
            }
            let client = pair.client(side);
            match client.remove_stale_temps().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(%side, removed = n, "removed temp files untouched for a day")
                }
                Err(e) => stats.warnings.push(format!(
                    "removing stale temp files on the {side} failed: {e}"
                )),
            }
        }
        if let Some(days) = opts.trash_keep_days {
            for side in [Side::Source, Side::Destination] {
                let recovery = match side {
                    Side::Source => &opts.source_recovery,
                    Side::Destination => &opts.destination_recovery,
                };
                let Some((client, folder)) = trash_of(recovery, pair.client(side)) else {
                    continue;
                };
                if opts.is_protected(side) {
                    continue;
                }
                match prune_trash(client.as_ref(), folder.as_ref(), days).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(%side, removed = n, days, "pruned old trash"),
                    Err(e) => stats
                        .warnings
                        .push(format!("pruning the {side} trash failed: {e}")),
                }
                // The pruning's listing of the whole trash noted the temp files that runs
                // killed while they copied into it left there, untouched for a day: no other
                // listing sees them (the removal of stale temps above ran before this one,
                // and a backup dir is not listed otherwise), and no pruning by files listed
                // takes them.
                match client.remove_stale_temps().await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(%side, removed = n, "removed temp files left in the trash")
                    }
                    Err(e) => stats.warnings.push(format!(
                        "removing stale temp files in the {side} trash failed: {e}"
                    )),
                }
            }
        }
        Ok(stats)
    }

    /// Lists both sides (sorting the listings `sort` marks) and plans once; see `run`.
    async fn plan_once(
        &self,
        inputs: PlanInputs<'_>,
        sort: [bool; 2],
    ) -> Result<Planned, SyncError> {
        let PlanInputs {
            pair,
            policy,
            rules,
            clients: [source, destination],
            waiting,
            store,
            roots,
        } = inputs;
        let opts = &pair.options;
        // Names that collide on a side that folds them (`Readme`/`readme`, NFC/NFD), and
        // names that fold to an unknown one on the other side (`A` against an unlisted `a`),
        // are unknown for the run: found in a pre-pass over both listings, so it costs
        // nothing when neither side folds names.
        let mut collisions: [Collisions; 2] = Default::default();
        if let Some(note) = folding_note(&[source.capabilities(), destination.capabilities()]) {
            let scratch = Arc::new(AtomicU64::new(0));
            let source_pre = with_waiting_files(
                self.listing(pair, Side::Source, rules, &scratch, sort[0])
                    .await,
                waiting[0].clone(),
            );
            let destination_pre = with_waiting_files(
                self.listing(pair, Side::Destination, rules, &scratch, sort[1])
                    .await,
                waiting[1].clone(),
            );
            collisions = find_collisions([source_pre, destination_pre], &note).await;
        }
        let [source_collisions, destination_collisions] = collisions;
        let ignored = Arc::new(AtomicU64::new(0));
        let skipped_before = [
            pair.source.skipped_count(),
            pair.destination.skipped_count(),
        ];
        let [source_waiting, destination_waiting] = waiting.clone();
        let source_list = mark_collisions(
            with_waiting_files(
                self.listing(pair, Side::Source, rules, &ignored, sort[0])
                    .await,
                source_waiting,
            ),
            source_collisions,
        );
        let destination_list = mark_collisions(
            with_waiting_files(
                self.listing(pair, Side::Destination, rules, &ignored, sort[1])
                    .await,
                destination_waiting,
            ),
            destination_collisions,
        );

        // Copies an interrupted run left behind: those that landed count as synced, those
        // a failed flush may have lost are made again. An accepted new root is not what the
        // base describes: plan as if there were none.
        let found = recover_intents(store, source, destination).await?;
        let stale_intents = found.found > 0 || found.unflushed;
        let (recovered, rewrites, suspects) = if roots.accepted {
            // The copies a failed flush covered on a side that was not replaced stay
            // suspect: this run (which plans as if nothing was recorded) does not make them
            // again, a later one does.
            let kept = found
                .suspects
                .into_iter()
                .filter(|i| !roots.accepted_sides.contains(&i.to))
                .collect();
            (Vec::new(), Vec::new(), kept)
        } else {
            let rewrites = found
                .suspects
                .iter()
                .map(|i| (i.path.clone(), i.to))
                .collect();
            (found.records, rewrites, found.suspects)
        };
        // A side this run may not write to (protected, or not written by the mode) keeps
        // its suspect copies for a run that may: said, not counted as copied again.
        let mut rewrites: Vec<(RelPath, Side)> = rewrites;
        let mut held = [0u64; 2];
        rewrites.retain(|(_, side)| {
            let writes = pair.mode.copies_to(*side) && !opts.is_protected(*side);
            held[side.index()] += u64::from(!writes);
            writes
        });
        let reconciler =
            Reconciler::new(policy, opts.checksum, source.clone(), destination.clone())
                .with_filter(EntryFilter::from_options(opts))
                .with_spill_dir(&self.state_dir)
                .with_rewrites(rewrites);
        let base = if roots.accepted {
            // What a side that was not replaced deleted on purpose stays deleted.
            let replaced = roots.accepted_sides.clone();
            store
                .stream()
                .filter(move |r| {
                    let keep = match r {
                        Ok(r) => r.settled.is_some_and(|side| !replaced.contains(&side)),
                        Err(_) => true,
                    };
                    futures::future::ready(keep)
                })
                .boxed()
        } else {
            overlay_base(store.stream(), recovered.clone())
        };
        // The base of a path the rules exclude stays as it is, unseen by the reconciler: it
        // is in neither listing, and would be read as deleted on both sides and forgotten, so
        // lifting the exclusion later turned an edit made meanwhile into a conflict, and a
        // deletion into a file copied back.
        let base = {
            let rules = rules.clone();
            base.filter(move |r| {
                futures::future::ready(!matches!(r, Ok(r) if rules.is_ignored(&r.path)))
            })
            .boxed()
        };
        let mut plan = reconciler.plan(source_list, destination_list, base).await?;
        for side in [Side::Source, Side::Destination] {
            let n = held[side.index()];
            if n > 0 {
                plan.warnings.push(format!(
                    "{n} files an earlier run copied to the {side} before its flush failed may \
                     not be on its disk; this run does not write to the {side}, and the next \
                     run that does copies them again"
                ));
            }
        }
        Ok((
            plan,
            ignored,
            skipped_before,
            recovered,
            stale_intents,
            suspects,
        ))
    }

    /// Sends the plan, group by group, to the listing channel (see
    /// [`SyncEngine::with_listing`]): one walk of the actions to count the groups, then one
    /// per group that has actions. Stops when the receiver is gone.
    async fn list_plan(
        &self,
        plan: &Plan,
        pair: &SyncPair,
        rules: &IgnoreRules,
    ) -> std::io::Result<()> {
        let Some(tx) = &self.listing else {
            return Ok(());
        };
        let loser = pair.options.conflict_loser;
        let protected = pair.options.protected.first().copied();
        // A conflict whose kept loser the run then copies over lists that copy right after
        // it, as the real run reports it (not a copy to a protected side: it is not made).
        let follow_up = |a: &Action| {
            crate::plan::kept_loser_copy(a, pair.mode, loser, protected, rules).filter(
                |c| !matches!(c, Action::Copy { from, .. } if protected == Some(from.other())),
            )
        };
        let mut counts = [0u64; PlanGroup::ALL.len()];
        for a in plan.actions.iter() {
            let a = a?;
            counts[PlanGroup::of(&a).index()] += 1 + u64::from(follow_up(&a).is_some());
        }
        for (group, count) in PlanGroup::ALL.into_iter().zip(counts) {
            if count == 0 {
                continue;
            }
            if tx
                .send(ProgressEvent::GroupPlanned { group, count })
                .await
                .is_err()
            {
                return Ok(());
            }
            for a in plan.actions.iter() {
                let a = a?;
                if PlanGroup::of(&a) != group {
                    continue;
                }
                let report = ActionReport::planned(&a, loser);
                if tx.send(ProgressEvent::WouldDo(report)).await.is_err() {
                    return Ok(());
                }
                if let Some(copy) = follow_up(&a) {
                    let report = ActionReport::planned(&copy, loser);
                    if tx.send(ProgressEvent::WouldDo(report)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    fn emit(&self, event: ProgressEvent) {
        if let Some(tx) = &self.progress {
            let _ = tx.send(event);
        }
    }

    /// Refuses a missing root where creating it could hurt. On the pair's first run (no run
    /// has planned yet and the base is empty) the side the mode reads from must exist
    /// ([`SyncError::MissingRoot`]: a typo'd source must not be created and filled from the
    /// destination, or in a mirror empty the destination); a missing receiving root is created
    /// by the run's first write. Once the pair has synced, a missing root is the empty-side
    /// stop ([`SyncError::EmptySide`] with `missing`), which `--force` overrides like an empty
    /// side: an unmounted disk must not be re-created as an empty folder and read as deletions.
    async fn check_roots_exist(
        &self,
        pair: &SyncPair,
        locations: &[crate::identity::Location; 2],
        id: &str,
        older_id: Option<&str>,
    ) -> Result<(), SyncError> {
        let store = existing_state(&self.state_dir, id, older_id).await?;
        let first_run = match &store {
            None => true,
            Some(store) => {
                let s = store.clone();
                blocking(move || Ok(s.initial_sync_pending()? && s.count()? == 0)).await?
            }
        };
        for side in [Side::Source, Side::Destination] {
            let client = pair.client(side);
            let exists = client
                .root_exists()
                .await
                .map_err(|source| unreachable_before_run(side, client.as_ref(), source))?;
            if exists {
                continue;
            }
            // Named by its location (`file:///…`, a URL without secrets), as the user gave it.
            let root = locations[side.index()].to_string();
            if first_run {
                if side == read_side(pair.mode) {
                    return Err(SyncError::MissingRoot {
                        side,
                        root,
                        mode: pair.mode,
                    });
                }
                continue;
            }
            if pair.options.force {
                continue;
            }
            let base_files = match &store {
                Some(store) => {
                    let s = store.clone();
                    blocking(move || s.files_on(side)).await?
                }
                None => 0,
            };
            return Err(SyncError::EmptySide {
                side,
                base_files,
                root,
                missing: true,
                mode: pair.mode,
                protected: pair.options.protected.first().copied(),
            });
        }
        Ok(())
    }

    /// Where the state directory lies relative to `side`'s root, when that is a local one.
    ///
    /// # Errors
    /// [`SyncError::Config`] when the state directory is the root itself: its databases, WAL
    /// and lock files would be the root's user files — synced (a live WAL fails every run),
    /// and in a mirror towards that root moved to the trash while open. Which names are the
    /// engine's cannot be told from a user's `*.db` files, so the run must not start (and is
    /// asked before it creates any state there).
    async fn state_dir_place(&self, pair: &SyncPair, side: Side) -> Result<OwnDir, SyncError> {
        let Some(root) = pair.client(side).local_root() else {
            return Ok(OwnDir::Outside);
        };
        let state_dir = self.state_dir.clone();
        let shown = root.display().to_string();
        let place = tokio::task::spawn_blocking(move || own_dir_below(&root, &state_dir))
            .await
            .unwrap_or(OwnDir::Outside);
        if place == OwnDir::IsRoot {
            return Err(SyncError::Config(format!(
                "the state directory is the {side} root itself ({shown}): its databases would \
                 be synced as user files; pass another --state-dir (a folder inside the root \
                 is fine: it is left out)"
            )));
        }
        Ok(place)
    }

    /// Builds the ignore rules: the options' patterns plus `.syncignore` at either root.
    pub(crate) async fn ignore_rules(&self, pair: &SyncPair) -> Result<IgnoreRules, SyncError> {
        let mut rules = IgnoreRules::new(&pair.options.excludes)
            .and_then(|r| r.with_includes(&pair.options.includes))
            .map_err(|e| SyncError::Config(e.to_string()))?;
        // The default state directory lies inside the home folder, which people sync: its
        // database, WAL and lock files are ours, never synced.
        for side in [Side::Source, Side::Destination] {
            if let OwnDir::Below(dir) = self.state_dir_place(pair, side).await? {
                tracing::debug!(%side, %dir, "the state directory lies inside this root; left out");
                rules.add_own_dir(dir);
            }
        }
        let file = RelPath::new(SYNCIGNORE_FILE).map_err(|e| SyncError::Config(e.to_string()))?;
        for side in [Side::Source, Side::Destination] {
            let client = pair.client(side);
            // Verified and retried: a short read would drop rules, and the excluded files
            // would be synced, or deleted by a mirror.
            match read_own_file(client.as_ref(), &file).await {
                Ok(Some(bytes)) => {
                    let text = String::from_utf8_lossy(&bytes);
                    rules
                        .add_file(&format!("{client}/{SYNCIGNORE_FILE}"), &text)
                        .map_err(|e| SyncError::Config(e.to_string()))?;
                }
                Ok(None) => rules.note_missing_file(side),
                Err(source) => return Err(SyncError::Storage { side, source }),
            }
        }
        Ok(rules)
    }

    /// One side's listing: without our own files and ignored paths, in canonical order. Also
    /// what `syncengine check` compares ([`crate::check`]): a filter added here applies there.
    pub(crate) async fn listing(
        &self,
        pair: &SyncPair,
        side: Side,
        rules: &Arc<IgnoreRules>,
        ignored: &Arc<AtomicU64>,
        sort: bool,
    ) -> EntryStream {
        let client = pair.client(side);
        // Excluded folders (and the engine's own) are not even read: one that is huge,
        // unreadable or on a dead mount costs nothing. Each counts once as skipped.
        let prune: PruneFn = {
            let (rules, ignored) = (rules.clone(), ignored.clone());
            Arc::new(move |dir: &RelPath| {
                if rules.is_own(dir) {
                    return true;
                }
                let pruned = rules.matches_patterns(dir, true);
                if pruned {
                    ignored.fetch_add(1, Ordering::Relaxed);
                }
                pruned
            })
        };
        let rules = rules.clone();
        let ignored = ignored.clone();
        // A `.syncignore` that could not be read as a file (a symlink, a special file) but
        // is there: the run does not have its rules, so it must not sync (or, in a mirror,
        // delete) what they exclude. The listing fails, and the run with it, before planning.
        let rules_unread = rules.file_missing(side);
        let filtered = client
            .list_pruned(None, prune)
            .map(move |item| match item {
                Err(Error::Unlisted {
                    backend,
                    path,
                    reason,
                    ..
                }) if rules_unread && path == SYNCIGNORE_FILE => Err(Error::other(
                    backend,
                    path,
                    format!(
                        "the ignore rules file is {reason}: its rules cannot be read, and a \
                         run without them would sync (or, mirroring, delete) what they \
                         exclude; make it a regular file, or remove it"
                    ),
                )),
                other => other,
            })
            .filter(move |item| {
                let keep = match item {
                    Ok(entry) if rules.is_own(&entry.path) => false,
                    Ok(entry) if rules.matches_patterns(&entry.path, false) => {
                        ignored.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                    // An unknown path the rules exclude blocks nothing: it would not be
                    // synced even if it could be read. The listing cannot tell what it is (a
                    // symlink may stand for a file or a folder), so only a path excluded
                    // both as a file and as a folder is dropped: `build/` (folders only)
                    // does not exclude a file `build`, and a whitelist (`*`, `!*/`,
                    // `!*.jpg`) excludes a name as a file but keeps it as a folder, whose
                    // photos must not be deleted on the other side.
                    Err(Error::Unlisted { path, .. }) => match RelPath::new(path.as_str()) {
                        Ok(p) if rules.is_own(&p) => false,
                        Ok(p)
                            if rules.matches_patterns(&p, false)
                                && rules.matches_patterns(&p, true) =>
                        {
                            ignored.fetch_add(1, Ordering::Relaxed);
                            false
                        }
                        _ => true,
                    },
                    _ => true,
                };
                futures::future::ready(keep)
            })
            .boxed();
        if client.capabilities().ordered_listing && !sort {
            check_order(filtered, client.to_string())
        } else {
            // Sorted runs go where the plan's temporary files go: the state directory (the
            // system's temporary folder may be memory), or that folder if it is not there.
            let scratch = if self.state_dir.is_dir() {
                self.state_dir.clone()
            } else {
                std::env::temp_dir()
            };
            sort_listing(filtered, &scratch, SORT_RUN_SIZE).await
        }
    }
}

/// What one planning pass reads, besides the sorting choice (see `Engine::plan_once`).
struct PlanInputs<'a> {
    pair: &'a SyncPair,
    policy: Policy,
    rules: &'a Arc<IgnoreRules>,
    clients: [&'a Arc<dyn StorageClient>; 2],
    waiting: &'a [Vec<Entry>; 2],
    store: &'a StateStore,
    roots: &'a identity::RootCheck,
}

/// A plan and what the run needs from its planning pass: the ignored-entry counter, the
/// clients' skipped counts before it, the copies recovered from intents, whether intents
/// (or the mark of a failed flush) were left to clear, and the copies a failed flush covered
/// (kept suspect until the run has made them again).
type Planned = (
    Plan,
    Arc<AtomicU64>,
    [u64; 2],
    Vec<BaseRecord>,
    bool,
    Vec<Intent>,
);

/// Whether a listing error is the order check's (see [`check_order`]).
fn is_out_of_order(e: &Error) -> bool {
    matches!(e, Error::Other { source, .. } if source.is::<OutOfOrder>())
}

/// How the pair's folding sides fold names (`caps` of the source, then the destination), for
/// collision reasons; `None` when neither side folds names (then no collision check runs).
fn folding_note(caps: &[Capabilities; 2]) -> Option<String> {
    let mut parts = Vec::new();
    for (side, caps) in [Side::Source, Side::Destination].into_iter().zip(caps) {
        let what = match (caps.case_insensitive, caps.normalization_insensitive) {
            (true, true) => "letter case and Unicode normalisation",
            (true, false) => "letter case",
            (false, true) => "Unicode normalisation",
            (false, false) => continue,
        };
        parts.push(format!("the {side}, which does not tell {what} apart"));
    }
    if parts.is_empty() {
        None
    } else {
        Some(format!("on {}", parts.join(" and on ")))
    }
}

/// The seed's risk warning for a first `TWO_WAY` run without an explicit preference.
/// Said with the risk warning of a first sync that an earlier run began and did not finish.
const UNFINISHED_FIRST_SYNC: &str = "this pair's first sync did not finish (an earlier run \
    stopped partway, after syncing some files): this run goes on with it, so the initial-sync \
    rules above (and --initial) apply to the files not synced yet";

fn risk_warning(source_files: u64, destination_files: u64) -> Option<String> {
    let (big, big_n, small, small_n, pref, flag) = if destination_files > source_files {
        (
            "Destination",
            destination_files,
            "source",
            source_files,
            "InitialSyncPreference::DestinationWins",
            "--initial destination-wins",
        )
    } else {
        (
            "Source",
            source_files,
            "destination",
            destination_files,
            "InitialSyncPreference::SourceWins",
            "--initial source-wins",
        )
    };
    if big_n > 10 && big_n > 2 * small_n {
        let authoritative = big.to_lowercase();
        Some(format!(
            "⚠ WARNING: {big} has {big_n} files but {small} has only {small_n}. Initial TWO_WAY sync \
             will default to MERGE mode (no deletions). To make {authoritative} authoritative and \
             delete {small}-only files: initial_sync_preference={pref} ({flag})"
        ))
    } else {
        None
    }
}

/// An accepted new root's run deletes nothing ([`identity`]): drops the plan's deletions,
/// and with them the actions that need one first (a type change whose old file or folder
/// stays in the way), so that they wait for the next run instead of failing on a path
/// that is still taken.
fn skip_deletions(plan: &mut Plan) -> std::io::Result<()> {
    let mut skipped = std::collections::BTreeSet::new();
    let mut deletions = 0;
    for a in plan.actions.iter() {
        let a = a?;
        if a.is_delete() {
            deletions += 1;
            skipped.insert(a.path().clone());
        }
    }
    if skipped.is_empty() {
        return Ok(());
    }
    let in_the_way = |path: &RelPath| {
        // A skipped deletion at or above the path (a file where a folder should go), or
        // below it (a folder where a file should go).
        std::iter::successors(Some(path.clone()), RelPath::parent).any(|p| skipped.contains(&p))
            || skipped
                .range(path.clone()..)
                .take_while(|p| p.as_str().starts_with(path.as_str()))
                .any(|p| p.is_below(path))
    };
    let before = plan.actions.len();
    plan.actions
        .retain(|a| !a.is_delete() && !in_the_way(a.path()))?;
    let waiting = before - plan.actions.len() - deletions;
    plan.warnings.push(format!(
        "{deletions} deletions the mode would make were skipped because a new root was \
         accepted{}; later runs apply them as usual",
        if waiting > 0 {
            format!(
                " ({waiting} copies that need one of them first, type changes, wait with \
                 them)"
            )
        } else {
            String::new()
        }
    ));
    Ok(())
}

/// The safety rules that stop a run before it changes anything.
/// Checks each side once, before anything else reads it: an unreachable server, wrong
/// credentials or a missing bucket is its own failure ([`SyncError::Unreachable`]), named for
/// its side.
pub(crate) async fn check_reachable(pair: &SyncPair) -> Result<(), SyncError> {
    for side in [Side::Source, Side::Destination] {
        let client = pair.client(side);
        client
            .check_access()
            .await
            .map_err(|source| unreachable_before_run(side, client.as_ref(), source))?;
    }
    Ok(())
}

/// A side found unreachable by a check before the run read anything (CLI exit 4).
fn unreachable_before_run(side: Side, client: &dyn StorageClient, source: Error) -> SyncError {
    SyncError::Unreachable {
        side,
        root: client.to_string(),
        source,
        during_run: false,
    }
}

/// The pair's state as it is: opened only if it exists, under `id`, else under the `older_id`
/// a real run would adopt. Creates nothing (dry runs, checks, the missing-root check).
pub(crate) async fn existing_state(
    state_dir: &Path,
    id: &str,
    older_id: Option<&str>,
) -> Result<Option<StateStore>, SyncError> {
    let dir = state_dir.to_path_buf();
    let (id, older_id) = (id.to_owned(), older_id.map(str::to_owned));
    blocking(move || {
        Ok(match StateStore::open_existing(&dir, &id)? {
            Some(store) => Some(store),
            None => match older_id {
                Some(old) => StateStore::open_existing(&dir, &old)?,
                None => None,
            },
        })
    })
    .await
}

/// Marks the changed roots that are also empty while the base recorded files for them, so the
/// stop names both causes: a root that is another storage *and* empty is most likely an
/// unmounted disk or a wrong prefix, and the first thing to check is the mount.
async fn note_empty_roots(
    pair: &SyncPair,
    store: &StateStore,
    changes: &mut [identity::RootChange],
) -> Result<(), SyncError> {
    for change in changes.iter_mut().filter(|c| !c.older_copy) {
        let side = change.side;
        let base_files = {
            let s = store.clone();
            blocking(move || s.files_on(side)).await?
        };
        if base_files == 0 {
            continue;
        }
        let own: PruneFn = Arc::new(|p: &RelPath| p.as_str() == STATE_DIR_NAME);
        let mut listing = pair.client(side).list_pruned(None, own);
        let mut empty = true;
        while let Some(item) = listing.next().await {
            match item {
                Ok(e) if e.path.as_str().starts_with(&format!("{STATE_DIR_NAME}/")) => {}
                // A file, or a path the listing could not read: not empty. A listing
                // error leaves the stop as it was.
                _ => {
                    empty = false;
                    break;
                }
            }
        }
        if empty {
            change.empty_with_files = Some(base_files);
        }
    }
    Ok(())
}

/// The side whose root a mode reads from and never creates: the source in two-way (only a
/// missing destination is created, on a pair's first run) and the authoritative side of a
/// mirror or backup.
fn read_side(mode: SyncMode) -> Side {
    match mode {
        SyncMode::DestinationToSource | SyncMode::DestinationBackup => Side::Destination,
        _ => Side::Source,
    }
}

fn check_safety(
    plan: &Plan,
    tally: &PlanTally,
    pair: &SyncPair,
    locations: &[crate::identity::Location; 2],
) -> Result<(), SyncError> {
    let opts = &pair.options;
    if opts.force {
        return Ok(());
    }
    for (side, files, unknown) in [
        (Side::Source, plan.source_files, plan.source_unknown),
        (
            Side::Destination,
            plan.destination_files,
            plan.destination_unknown,
        ),
    ] {
        // Only records where the side held a version count: a side whose every file was
        // deleted on purpose under a backup mode (settled) may be empty. A side with paths it
        // could not list is not empty (a root holding only a symlinked folder); nothing below
        // those paths is deleted anyway.
        let base_files = plan.base_files_on(side);
        if files == 0 && unknown == 0 && base_files > 0 {
            return Err(SyncError::EmptySide {
                side,
                base_files,
                root: locations[side.index()].to_string(),
                missing: false,
                mode: pair.mode,
                protected: pair.options.protected.first().copied(),
            });
        }
    }
    let max_delete_percent = opts.max_delete_percent;
    let deletes_on = tally.deletes;
    for (side, files) in [
        (Side::Source, plan.source_files),
        (Side::Destination, plan.destination_files),
    ] {
        let deletes = deletes_on[side.index()];
        if files > 0 && deletes * 100 > u64::from(max_delete_percent) * files {
            return Err(SyncError::MaxDelete {
                side,
                would_delete: deletes,
                total: files,
                percent: deletes as f64 * 100.0 / files as f64,
                limit: max_delete_percent,
            });
        }
    }
    Ok(())
}

/// Where one side's deleted and overwritten files go this run. Every backend gets its own
/// trash by default: rename where it is native, server-side copy and delete on object stores.
fn resolve_recovery(recovery: &Recovery) -> ResolvedRecovery {
    match recovery {
        Recovery::None => ResolvedRecovery::None,
        Recovery::Trash | Recovery::Auto => ResolvedRecovery::Trash,
        Recovery::BackupDir(c) | Recovery::TrashDir(c) => ResolvedRecovery::BackupDir(c.clone()),
    }
}

/// The trash a side's recovery keeps, as (client, folder holding the stamp folders), for
/// pruning; `None` for recoveries that are not a trash.
fn trash_of<'a>(
    recovery: &'a Recovery,
    side_client: &'a Arc<dyn StorageClient>,
) -> Option<(&'a Arc<dyn StorageClient>, Option<RelPath>)> {
    match recovery {
        Recovery::Auto | Recovery::Trash => Some((side_client, trash_folder().ok())),
        Recovery::TrashDir(c) => Some((c, None)),
        _ => None,
    }
}

/// `.syncengine/trash`.
fn trash_folder() -> Result<RelPath, Error> {
    RelPath::new(format!("{STATE_DIR_NAME}/trash"))
}

/// Files whose presence at a root suggests a web server publishes it.
const WEBSITE_INDEX_FILES: [&str; 2] = ["index.html", "index.htm"];

/// Warns about a remote root that looks served as a website (an index page at its root) while
/// the side's trash lies inside it: the web server would publish deleted files too.
async fn served_root_warning(
    side: Side,
    client: &Arc<dyn StorageClient>,
    recovery: &Recovery,
) -> Option<String> {
    if !matches!(recovery, Recovery::Auto | Recovery::Trash) || client.local_root().is_some() {
        return None;
    }
    for name in WEBSITE_INDEX_FILES {
        let Ok(path) = RelPath::new(name) else {
            continue;
        };
        if client.stat(&path).await.is_ok() {
            return Some(format!(
                "the {side} root {client} has an {name}: if it is served as a website, its trash \
                 ({STATE_DIR_NAME}/trash/, deleted and overwritten files) is published too; \
                 keep the trash elsewhere with --trash-dir URL, or block {STATE_DIR_NAME}/ in the \
                 server"
            ));
        }
    }
    None
}

/// Where the state directory lies relative to a local root.
#[derive(Debug, PartialEq)]
enum OwnDir {
    /// Outside the root (or not to be told).
    Outside,
    /// Strictly inside it, at this path.
    Below(RelPath),
    /// It is the root itself.
    IsRoot,
}

/// The state directory's place relative to a local root.
fn own_dir_below(root: &Path, state_dir: &Path) -> OwnDir {
    let canonical = |p: &Path| {
        p.canonicalize()
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let (root, state) = (canonical(root), canonical(state_dir));
    let Some(rel) = state.strip_prefix(&root).ok().and_then(Path::to_str) else {
        return OwnDir::Outside;
    };
    if rel.is_empty() {
        return OwnDir::IsRoot;
    }
    RelPath::new(rel).map_or(OwnDir::Outside, OwnDir::Below)
}

/// The UTC time now as `YYYYMMDDTHHMMSSZ`.
fn run_stamp() -> String {
    stamp_at(time::OffsetDateTime::now_utc())
}

/// `time` (in UTC) as `YYYYMMDDTHHMMSSZ`, the form of the trash's stamp folders.
pub(crate) fn stamp_at(time: time::OffsetDateTime) -> String {
    utc_written(time, ["", "T", "", "Z"])
}

/// `time` in UTC, to the second, written with `marks`: between the date's fields, between
/// date and time, between the time's fields, and at the end (`["-", "T", ":", "Z"]` is RFC
/// 3339). The one writer of the run stamps, the pairs' recorded times and the trash's runs.
pub(crate) fn utc_written(time: time::OffsetDateTime, marks: [&str; 4]) -> String {
    let t = time.to_offset(time::UtcOffset::UTC);
    let [date, mid, clock, end] = marks;
    format!(
        "{:04}{date}{:02}{date}{:02}{mid}{:02}{clock}{:02}{clock}{:02}{end}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Deletes the stamp folders older than `days` in `folder` (the client's root when `None`).
/// Folders whose name is not a stamp are someone else's and stay.
async fn prune_trash(
    client: &dyn StorageClient,
    folder: Option<&RelPath>,
    days: u32,
) -> Result<u64, Error> {
    let cutoff = stamp_at(time::OffsetDateTime::now_utc() - time::Duration::days(i64::from(days)));
    let mut listing = client.list(folder);
    let mut old = Vec::new();
    while let Some(entry) = listing.next().await {
        let entry = entry?;
        let rest = match folder {
            Some(f) => entry
                .path
                .as_str()
                .strip_prefix(f.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or_default(),
            None => entry.path.as_str(),
        };
        let Some((stamp_folder, _)) = rest.split_once('/') else {
            continue;
        };
        // Folder names are stamps (optionally with a -N suffix), which sort like times.
        if let Some(stamp) = stamp_folder.get(..16)
            && is_stamp(stamp)
            && (stamp_folder.len() == 16 || stamp_folder.as_bytes()[16] == b'-')
            && stamp < cutoff.as_str()
        {
            old.push(entry.path);
        }
    }
    let removed = old.len() as u64;
    for path in old {
        client.delete(&path).await?;
    }
    Ok(removed)
}

/// True for `YYYYMMDDTHHMMSSZ`.
pub(crate) fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

async fn blocking<T, F>(f: F) -> Result<T, SyncError>
where
    F: FnOnce() -> Result<T, SyncError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::State(format!("blocking task failed: {e}")))?
}

/// The default state directory: `$SYNCENGINE_STATE_DIR`, else `$XDG_STATE_HOME/syncengine`,
/// else `~/.local/state/syncengine`.
pub fn default_state_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SYNCENGINE_STATE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("syncengine"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|h| PathBuf::from(h).join(".local/state/syncengine"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ignore_rules::is_always_ignored;

    #[test]
    fn risk_warning_thresholds() {
        assert!(
            risk_warning(5, 100)
                .unwrap()
                .contains("Destination has 100 files but source has only 5")
        );
        assert!(
            risk_warning(100, 5)
                .unwrap()
                .contains("--initial source-wins")
        );
        assert!(risk_warning(10, 0).is_none(), "needs more than 10 files");
        assert!(risk_warning(11, 0).is_some());
        assert!(
            risk_warning(20, 10).is_none(),
            "needs more than twice the files"
        );
    }

    #[test]
    fn stamp_shape() {
        let s = run_stamp();
        assert!(is_stamp(&s), "{s}");
        assert!(!is_stamp("2024010xT000000Z"));
        assert!(!is_stamp("ééééééééT0000Z"));
        assert!(!is_stamp("20240101T000000"));
    }

    #[test]
    fn internal_paths() {
        assert!(is_always_ignored(
            &RelPath::new(".syncengine/trash/x").unwrap()
        ));
        assert!(is_always_ignored(
            &RelPath::new("a/.syncengine-tmp-123").unwrap()
        ));
        assert!(!is_always_ignored(
            &RelPath::new(".syncengine-notes").unwrap()
        ));
        assert!(!is_always_ignored(&RelPath::new("a/.syncengine").unwrap()));
        assert!(is_always_ignored(
            &RelPath::new("photos/.syncengine/root-id").unwrap()
        ));
        assert!(is_always_ignored(
            &RelPath::new("a/b/.syncengine/trash/20260101T000000Z/x").unwrap()
        ));
        assert!(!is_always_ignored(
            &RelPath::new("a/.syncengine.txt").unwrap()
        ));
    }
}
