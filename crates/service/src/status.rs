//! What the service reports: [`PairStatus`] per pair and one stream of [`ServiceEvent`]s.

use std::time::{Duration, SystemTime};

use syncengine_core::{AcceptNewRoot, ProgressEvent, Side, SyncError, SyncStats};

/// What a pair is doing now.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PairState {
    /// Waiting for a change, a poll or a rescan.
    Idle,
    /// A run is due and waits for a free slot (see
    /// [`ServiceOptions::max_concurrent_runs`](crate::ServiceOptions::max_concurrent_runs)).
    Waiting,
    /// A run is listing both sides and planning.
    Scanning,
    /// A run is carrying out its plan.
    Syncing,
    /// Paused by the user: no run starts until it is resumed.
    Paused,
    /// Stopped by a safety rule: no run starts until the user resumes it.
    Stopped(StopReason),
    /// The last run failed; the next attempt is at `retry_at`.
    BackingOff {
        /// When the next attempt starts.
        retry_at: SystemTime,
    },
}

/// Why a pair was stopped: a safety rule of the engine, or a configuration no retry can fix.
/// Nothing was changed by the stopped run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StopReason {
    /// Which rule stopped it.
    pub kind: StopKind,
    /// The engine's message, which says what to check.
    pub message: String,
}

/// The rule behind a [`StopReason`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopKind {
    /// The run would delete more than the max-delete share of a side
    /// ([`SyncError::MaxDelete`]). `resume_force_once` runs once allowed to delete the share
    /// the stopped run would have (no more, and not past an emptied side).
    MaxDelete,
    /// A side is empty or its root is missing although it held files
    /// ([`SyncError::EmptySide`]). `resume_force_once` runs once with `force`.
    EmptySide,
    /// A root is not the storage the state recorded ([`SyncError::RootChanged`]).
    /// `resume_force_once` runs once accepting these sides' new roots.
    RootChanged(AcceptNewRoot),
    /// A root the mode reads from does not exist on the pair's first run
    /// ([`SyncError::MissingRoot`]). Resuming tries again; there is nothing to force.
    MissingRoot,
    /// The pair's options are unusable ([`SyncError::Config`]).
    Config,
}

impl StopKind {
    /// The stop `err` is, if it is one: an error no retry can get past.
    pub fn of(err: &SyncError) -> Option<StopKind> {
        Some(match err {
            SyncError::MaxDelete { .. } => StopKind::MaxDelete,
            SyncError::EmptySide { .. } => StopKind::EmptySide,
            SyncError::RootChanged { changes } => {
                let src = changes.iter().any(|c| c.side == Side::Source);
                let dst = changes.iter().any(|c| c.side == Side::Destination);
                StopKind::RootChanged(match (src, dst) {
                    (true, false) => AcceptNewRoot::Source,
                    (false, true) => AcceptNewRoot::Destination,
                    _ => AcceptNewRoot::Both,
                })
            }
            SyncError::MissingRoot { .. } => StopKind::MissingRoot,
            SyncError::Config(_) => StopKind::Config,
            _ => return None,
        })
    }

    /// True when `resume_force_once` has an override for this stop.
    pub fn can_force(&self) -> bool {
        matches!(
            self,
            StopKind::MaxDelete | StopKind::EmptySide | StopKind::RootChanged(_)
        )
    }
}

/// How a pair's changes are noticed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Watching {
    /// Every local root is watched; remote roots (if any) are polled.
    Watched,
    /// Nothing is watched: every root is polled (remote pair, or watching disabled).
    Polled,
    /// Watching a local root failed (the inotify watch limit, a full event queue, a missing
    /// root): the pair is polled instead until it is resumed or added again.
    FellBack(String),
}

/// A run that ended, with its statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompletedRun {
    /// When it ended.
    pub finished_at: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// What it did.
    pub stats: SyncStats,
}

/// The state of one pair, from [`SyncService::status`](crate::SyncService::status).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PairStatus {
    /// What the pair is doing.
    pub state: PairState,
    /// Paused by the user (persisted). A run in progress when it was paused may still be
    /// finishing: `state` then says so.
    pub paused: bool,
    /// How changes are noticed.
    pub watching: Watching,
    /// The safety stop the pair waits at, also while it is paused; `None` when not stopped.
    pub stopped: Option<StopReason>,
    /// The last error (a failed run, or the first failed file of a run), cleared by a clean run.
    pub last_error: Option<String>,
    /// The last run that completed (not cancelled, not failed).
    pub last_run: Option<CompletedRun>,
    /// Runs started since the pair was added (completed, failed or cancelled).
    pub runs: u64,
    /// Since when the run in progress has shown no progress, once that has lasted
    /// [`ServiceOptions::stalled_after`](crate::ServiceOptions::stalled_after) (it then gave
    /// its run slot to the other pairs): its storage does not answer, or a listing is very
    /// long. `None` while it moves, and when no run is in progress.
    pub no_progress_since: Option<SystemTime>,
}

impl PairStatus {
    pub(crate) fn new(paused: bool) -> Self {
        PairStatus {
            state: if paused {
                PairState::Paused
            } else {
                PairState::Idle
            },
            paused,
            watching: Watching::Polled,
            stopped: None,
            last_error: None,
            last_run: None,
            runs: 0,
            no_progress_since: None,
        }
    }
}

/// Why a run started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunReason {
    /// The pair was just added (or the service started).
    Added,
    /// Watch events (debounced).
    Changed,
    /// The poll interval passed.
    Poll,
    /// The rescan interval passed.
    Rescan,
    /// [`SyncService::trigger`](crate::SyncService::trigger).
    Trigger,
    /// The pair was resumed.
    Resumed,
    /// The pair was resumed with `resume_force_once`: this run is forced past its stop.
    ForcedOnce,
    /// A retry after a failure (or a held pair lock).
    Retry,
}

/// How a run ended, in [`ServiceEvent::RunFinished`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunOutcome {
    /// The run completed (some files may have failed: see [`SyncStats::errors`]).
    Completed(SyncStats),
    /// The run was cancelled (pause, removal, shutdown); the base is true for what was done.
    Cancelled,
    /// A safety rule stopped it before anything was changed.
    Stopped(StopReason),
    /// It failed; the pair retries after `retry_in`.
    Failed {
        /// The error, as text.
        error: String,
        /// The back-off before the next attempt.
        retry_in: Duration,
    },
}

/// One event of the service's stream (see [`SyncService::subscribe`](crate::SyncService::subscribe)).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ServiceEvent {
    /// A progress event of one of the pair's runs.
    Progress {
        /// The pair.
        pair: String,
        /// The engine's event.
        event: ProgressEvent,
    },
    /// A run started.
    RunStarted {
        /// The pair.
        pair: String,
        /// Why.
        reason: RunReason,
    },
    /// A run ended.
    RunFinished {
        /// The pair.
        pair: String,
        /// How.
        outcome: RunOutcome,
    },
    /// The pair was paused.
    Paused {
        /// The pair.
        pair: String,
    },
    /// The pair was resumed.
    Resumed {
        /// The pair.
        pair: String,
        /// Its next run is forced past its safety stop.
        force_once: bool,
    },
    /// A safety rule stopped the pair; it waits for the user.
    Stopped {
        /// The pair.
        pair: String,
        /// Why.
        reason: StopReason,
    },
    /// Watching a local root failed; the pair is polled instead.
    WatchFallback {
        /// The pair.
        pair: String,
        /// Why, for the user.
        reason: String,
    },
    /// The pair was added.
    Added {
        /// The pair.
        pair: String,
    },
    /// The pair was removed.
    Removed {
        /// The pair.
        pair: String,
    },
    /// A run of the pair has shown no progress for
    /// [`ServiceOptions::stalled_after`](crate::ServiceOptions::stalled_after): it gave its
    /// run slot to the other pairs, and goes on when its storage answers.
    Stalled {
        /// The pair.
        pair: String,
        /// How long it has shown no progress.
        silent_for: Duration,
    },
}

impl ServiceEvent {
    /// The pair the event is about.
    pub fn pair(&self) -> &str {
        match self {
            ServiceEvent::Progress { pair, .. }
            | ServiceEvent::RunStarted { pair, .. }
            | ServiceEvent::RunFinished { pair, .. }
            | ServiceEvent::Paused { pair }
            | ServiceEvent::Resumed { pair, .. }
            | ServiceEvent::Stopped { pair, .. }
            | ServiceEvent::WatchFallback { pair, .. }
            | ServiceEvent::Added { pair }
            | ServiceEvent::Removed { pair }
            | ServiceEvent::Stalled { pair, .. } => pair,
        }
    }
}
