//! The task that drives one pair: its triggers, its runs one at a time, pause, back-off and
//! safety stops.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use syncengine_core::ignore_rules::is_always_ignored;
use syncengine_core::{
    ActionKind, Change, ProgressEvent, RelPath, Side, SyncEngine, SyncError, SyncStats,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ServiceOptions;
use crate::spec::PairSpec;
use crate::status::{
    CompletedRun, PairState, PairStatus, RunOutcome, RunReason, ServiceEvent, StopKind, StopReason,
    Watching,
};
use crate::watch::{self, Watch, WatchMsg};

/// At most this many distinct changed paths are remembered while a run is in progress; past
/// it the run is followed by another one (the details are lost, not the change).
const MAX_PENDING_PATHS: usize = 100_000;
/// At most this many paths written by a run are remembered; past it, any change seen during
/// the run is taken as the user's (one extra run rather than a missed change).
const MAX_WRITTEN_PATHS: usize = 200_000;

/// What the service shares with every pair's task.
pub(crate) struct Shared {
    pub(crate) state_dir: PathBuf,
    pub(crate) options: ServiceOptions,
    pub(crate) runs: Arc<Semaphore>,
    pub(crate) events: broadcast::Sender<ServiceEvent>,
}

impl Shared {
    pub(crate) fn emit(&self, event: ServiceEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }
}

/// A request to a pair's task.
#[derive(Debug)]
pub(crate) enum Command {
    Trigger,
    Pause,
    Resume { force_once: bool },
}

/// What a path a run wrote should look like once the run is done with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// The action started and its end was not seen: any change there is taken as the run's.
    Unknown,
    /// The action ended at this time, leaving the path in a state not known here (it failed,
    /// it settled a conflict, a kind of change this code does not know): a file there changed
    /// after that time is a user's edit; a missing or untouched one is the run's doing.
    Touched(SystemTime),
    /// The run put a file there, done at this time: the engine gives it the other side's
    /// modification time, so a later one is a user's edit.
    Present(SystemTime),
    /// The run deleted or renamed away what was there.
    Absent,
}

/// The paths a run wrote, per side, with their parent folders (created or removed by it).
#[derive(Default)]
pub(crate) struct Written {
    paths: HashMap<(Side, String), Expect>,
    dirs: HashSet<(Side, String)>,
    saturated: bool,
}

impl Written {
    fn add(&mut self, side: Side, path: &str, expect: Expect) {
        if self.saturated {
            return;
        }
        if self.paths.len() + self.dirs.len() >= MAX_WRITTEN_PATHS {
            self.saturated = true;
            self.paths.clear();
            self.dirs.clear();
            return;
        }
        self.paths.insert((side, path.to_owned()), expect);
        if !path.contains('/') {
            // Something was written at the top of the root (see `covers`).
            self.dirs.insert((side, String::new()));
        }
        let mut p = path;
        while let Some((parent, _)) = p.rsplit_once('/') {
            if !self.dirs.insert((side, parent.to_owned())) {
                break;
            }
            p = parent;
        }
    }

    /// Notes an action started at `path` (known only once it is done).
    fn touch(&mut self, side: Side, path: &str) {
        if !self.paths.contains_key(&(side, path.to_owned())) {
            self.add(side, path, Expect::Unknown);
        }
    }

    /// True when a change seen at `path` can be the run's own write.
    fn covers(&self, side: Side, path: &str) -> bool {
        if path.is_empty() {
            return false;
        }
        let key = (side, path.to_owned());
        if self.paths.contains_key(&key) || self.dirs.contains(&key) {
            return true;
        }
        // A write through an unnamed temporary file (`O_TMPFILE`, the local backend's
        // first choice) is reported by inotify as `#<inode>` in its folder until it is
        // linked under its name: the run's own when it wrote into that folder.
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        is_unnamed_temp(name) && self.dirs.contains(&(side, parent.to_owned()))
    }

    /// What the run left at `path`, when it wrote a file there.
    fn expect(&self, side: Side, path: &str) -> Expect {
        self.paths
            .get(&(side, path.to_owned()))
            .copied()
            .unwrap_or(Expect::Unknown)
    }

    /// Records what `event` changes.
    fn record(&mut self, event: &ProgressEvent) {
        let (path, kind, report, done) = match event {
            ProgressEvent::Started { path, kind, .. } => (path, kind, None, false),
            ProgressEvent::Done {
                path, kind, report, ..
            } => (path, kind, Some(report), true),
            ProgressEvent::Failed {
                path, kind, report, ..
            } => (path, kind, Some(report), false),
            _ => return,
        };
        let side = match kind {
            ActionKind::Upload => Some(Side::Destination),
            ActionKind::Download => Some(Side::Source),
            ActionKind::Delete(s) | ActionKind::Rename(s) | ActionKind::ConflictRename(s) => {
                Some(*s)
            }
            // A later kind: it may write either side.
            _ => None,
        };
        let sides: Vec<Side> = match side {
            Some(s) => vec![s],
            None => vec![Side::Source, Side::Destination],
        };
        let Some(report) = report else {
            for s in &sides {
                self.touch(*s, path.as_str());
            }
            return;
        };
        let report_sides: Vec<Side> = match report.side {
            Some(s) => vec![s],
            None => vec![Side::Source, Side::Destination],
        };
        let now = SystemTime::now();
        // A failed action may have done anything, or nothing: no expectation.
        let known = |e: Expect| if done { e } else { Expect::Touched(now) };
        match &report.change {
            Change::Upload { .. } | Change::Download { .. } => {
                for s in &sides {
                    self.add(*s, path.as_str(), known(Expect::Present(now)));
                }
            }
            Change::Delete => {
                for s in &report_sides {
                    self.add(*s, report.path.as_str(), known(Expect::Absent));
                }
            }
            Change::Rename { from, keep_old } => {
                for s in &report_sides {
                    self.add(*s, report.path.as_str(), known(Expect::Present(now)));
                    let old = if *keep_old {
                        Expect::Touched(now)
                    } else {
                        known(Expect::Absent)
                    };
                    self.add(*s, from.as_str(), old);
                }
            }
            Change::Conflict { kept_as, .. } => {
                for (s, p) in kept_as {
                    self.add(*s, p.as_str(), Expect::Touched(now));
                }
                // The winner's version lands at the path on the other side too.
                for s in [Side::Source, Side::Destination] {
                    self.add(s, report.path.as_str(), Expect::Touched(now));
                }
            }
            _ => {
                for s in sides.iter().chain(&report_sides) {
                    self.add(*s, path.as_str(), Expect::Touched(now));
                    self.add(*s, report.path.as_str(), Expect::Touched(now));
                }
            }
        }
    }
}

/// True when the file `m` describes was changed after `t`, when the run was done with it: its
/// modification time is later (an edit), or, on Unix, its inode's change time is (which no
/// user sets: a file put back with an old modification time by `cp -p`, `rsync -t`, `tar`
/// or a restore from a backup has a new change time). The engine's own write, rename and
/// time setting all come before the run reports the action done.
fn changed_after(m: &std::fs::Metadata, t: SystemTime) -> bool {
    if m.modified().is_ok_and(|modified| modified > t) {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let changed = u64::try_from(m.ctime())
            .ok()
            .zip(u32::try_from(m.ctime_nsec()).ok())
            .and_then(|(s, ns)| {
                std::time::UNIX_EPOCH.checked_add(Duration::new(s, ns.min(999_999_999)))
            });
        if changed.is_some_and(|c| c > t) {
            return true;
        }
    }
    false
}

/// `#` and digits: how inotify names a file opened with `O_TMPFILE`.
fn is_unnamed_temp(name: &str) -> bool {
    name.strip_prefix('#')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// What a run task hands back.
struct RunEnd {
    result: Result<SyncStats, SyncError>,
    written: Written,
    duration: Duration,
    /// The run's slot, given back once the pair's status says the run is over (so the
    /// statuses never show more runs in progress than the limit).
    _permit: Option<OwnedSemaphorePermit>,
}

/// A run in progress.
struct Running {
    handle: JoinHandle<RunEnd>,
    token: CancellationToken,
    /// Cancelled on pause: the run starts no new action and lets those in flight finish
    /// (`SyncEngine::with_stop_starting`).
    stop_starting: CancellationToken,
    /// Set on pause: the run is cancelled if it has not ended by then.
    cancel_at: Option<Instant>,
    /// Changes seen while it runs, judged against its writes when it ends.
    seen: HashSet<(Side, String)>,
    /// Which of `seen` were folders created.
    seen_folders: HashSet<(Side, String)>,
    /// Changes were seen whose paths were not kept (too many, a queue overflow, a root event).
    seen_lost: bool,
    /// A trigger arrived meanwhile: run again after it.
    retrigger: bool,
}

/// A run that is due.
#[derive(Clone, Copy)]
struct Pending {
    first: Instant,
    last: Instant,
    reason: RunReason,
    immediate: bool,
}

/// The window after a run in which changes are still matched against its writes.
struct Settle {
    until: Instant,
    written: Written,
}

pub(crate) struct Worker {
    pub(crate) name: String,
    pub(crate) spec: PairSpec,
    pub(crate) shared: Arc<Shared>,
    pub(crate) status: Arc<Mutex<PairStatus>>,
    /// Requests, each with an optional acknowledgement sent once it is carried out.
    pub(crate) cmds: mpsc::UnboundedReceiver<(Command, Option<oneshot::Sender<()>>)>,
    pub(crate) cancel: CancellationToken,
    /// The local roots to watch, by side.
    pub(crate) local_roots: Vec<(Side, PathBuf)>,
    /// A side that cannot be watched (a remote root): the pair is polled.
    pub(crate) has_remote: bool,
    pub(crate) paused: bool,
}

/// Locks `status`, which is only ever held for a field update (a poisoned lock still holds a
/// usable status).
pub(crate) fn lock(status: &Mutex<PairStatus>) -> std::sync::MutexGuard<'_, PairStatus> {
    status.lock().unwrap_or_else(|p| p.into_inner())
}

struct Loop {
    w: Worker,
    watch: Option<Watch>,
    watch_tx: mpsc::Sender<WatchMsg>,
    watch_rx: mpsc::Receiver<WatchMsg>,
    overflow: Arc<AtomicBool>,
    /// Local roots are polled (watching off or fallen back).
    local_polled: bool,
    run: Option<Running>,
    pending: Option<Pending>,
    settle: Option<Settle>,
    /// The last safety stop, until the next run starts.
    stop: Option<StopReason>,
    /// For a max-delete `stop`: the share of a side (percent, rounded up) that run would
    /// have deleted.
    stop_share: Option<u8>,
    /// A root itself changed (deleted, moved, made): whether it is another folder now is
    /// checked before the next run.
    root_event: bool,
    /// Stopped by `stop`, waiting for the user.
    held: bool,
    force: Option<Force>,
    backoff: Option<(Instant, u32)>,
    next_poll: Option<Instant>,
    next_rescan: Instant,
}

impl Worker {
    /// Runs the pair until it is removed or the service shuts down.
    pub(crate) async fn run(self) {
        let (watch_tx, watch_rx) = mpsc::channel(watch::QUEUE);
        let now = Instant::now();
        let rescan = self.spec.rescan_interval;
        let mut l = Loop {
            w: self,
            watch: None,
            watch_tx,
            watch_rx,
            overflow: Arc::new(AtomicBool::new(false)),
            local_polled: false,
            run: None,
            pending: Some(Pending {
                first: now,
                last: now,
                reason: RunReason::Added,
                immediate: true,
            }),
            settle: None,
            stop: None,
            stop_share: None,
            root_event: false,
            held: false,
            force: None,
            backoff: None,
            next_poll: None,
            next_rescan: now + rescan,
        };
        l.start_watch().await;
        l.main().await;
    }
}

async fn join_run(run: &mut Option<Running>) -> Result<RunEnd, tokio::task::JoinError> {
    match run {
        Some(r) => (&mut r.handle).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Loop {
    fn emit(&self, event: ServiceEvent) {
        self.w.shared.emit(event);
    }

    fn set_state(&self, state: PairState) {
        lock(&self.w.status).state = state;
    }

    fn polling(&self) -> bool {
        self.w.has_remote || self.local_polled
    }

    async fn start_watch(&mut self) {
        self.watch = None;
        if !self.w.spec.watch || self.w.local_roots.is_empty() {
            self.local_polled = !self.w.local_roots.is_empty();
            lock(&self.w.status).watching = Watching::Polled;
            self.arm_poll();
            return;
        }
        let roots = self.w.local_roots.clone();
        let state_dir = self.w.shared.state_dir.clone();
        let tx = self.watch_tx.clone();
        let overflow = self.overflow.clone();
        let simulate = self.w.shared.options.simulate_watch_limit;
        // A recursive watch walks the whole tree: not on the runtime's threads.
        let started = tokio::task::spawn_blocking(move || {
            watch::start(&roots, &state_dir, tx, overflow, simulate)
        })
        .await
        .unwrap_or_else(|e| Err(format!("watching failed: {e}")));
        match started {
            Ok(w) => {
                self.watch = Some(w);
                self.local_polled = false;
                // Remote roots (if any) are polled beside the watch.
                lock(&self.w.status).watching = Watching::Watched;
                self.arm_poll();
            }
            Err(reason) => self.fall_back(reason),
        }
    }

    fn fall_back(&mut self, reason: String) {
        self.watch = None;
        self.local_polled = true;
        tracing::warn!(pair = %self.w.name, "{reason}; polling the pair every {:?} instead", self.w.spec.poll_interval);
        lock(&self.w.status).watching = Watching::FellBack(reason.clone());
        self.emit(ServiceEvent::WatchFallback {
            pair: self.w.name.clone(),
            reason,
        });
        self.arm_poll();
    }

    fn arm_poll(&mut self) {
        self.next_poll = self
            .polling()
            .then(|| Instant::now() + self.w.spec.poll_interval);
    }

    fn may_start(&self) -> bool {
        self.run.is_none() && !self.w.paused && !self.held
    }

    /// When the next run is due, with why; `None` when none is.
    fn due(&self) -> Option<(Instant, RunReason)> {
        if !self.may_start() {
            return None;
        }
        if let Some((at, _)) = self.backoff {
            // Only a trigger from the user comes before the retry.
            return match self.pending {
                Some(p) if p.immediate && p.reason == RunReason::Trigger => {
                    Some((p.first, p.reason))
                }
                _ => Some((at, RunReason::Retry)),
            };
        }
        let d = self.w.spec.debounce;
        let mut best: Option<(Instant, RunReason)> = self.pending.map(|p| {
            let at = if p.immediate {
                p.first
            } else {
                (p.last + d.quiet).min(p.first + d.max)
            };
            (at, p.reason)
        });
        for (at, reason) in [
            self.next_poll.map(|t| (t, RunReason::Poll)),
            Some((self.next_rescan, RunReason::Rescan)),
        ]
        .into_iter()
        .flatten()
        {
            if best.is_none_or(|(b, _)| at < b) {
                best = Some((at, reason));
            }
        }
        best
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.due().map(|(at, _)| at),
            self.settle.as_ref().map(|s| s.until),
            self.run.as_ref().and_then(|r| r.cancel_at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    async fn main(&mut self) {
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                _ = self.w.cancel.cancelled() => break,
                cmd = self.w.cmds.recv() => match cmd {
                    Some((cmd, mut ack)) => {
                        self.command(cmd, &mut ack).await;
                        if let Some(ack) = ack {
                            let _ = ack.send(());
                        }
                    }
                    None => break,
                },
                Some(msg) = self.watch_rx.recv() => {
                    self.on_watch(msg);
                    // A burst is taken in one go, not one select round per event.
                    for _ in 0..4096 {
                        match self.watch_rx.try_recv() {
                            Ok(msg) => self.on_watch(msg),
                            Err(_) => break,
                        }
                    }
                    if self.overflow.swap(false, Ordering::Relaxed) {
                        self.on_watch(WatchMsg::Overflow);
                    }
                }
                ended = join_run(&mut self.run) => self.run_ended(ended),
                _ = sleep_until(deadline) => {
                    // A root replaced by a new folder (a change at the root started this
                    // timer) is watched again before a run scans it: what changes in it
                    // from now on is seen.
                    if self.run.is_none() && std::mem::take(&mut self.root_event)
                        && self.watch.as_ref().is_some_and(Watch::root_replaced)
                    {
                        tracing::info!(pair = %self.w.name, "a root is a new folder: watching it again");
                        self.start_watch().await;
                    }
                    self.on_timer();
                }
            }
        }
        // Removed or shutting down: a run in progress is cancelled cleanly and awaited.
        if let Some(run) = self.run.take() {
            run.token.cancel();
            let _ = run.handle.await;
            self.emit(ServiceEvent::RunFinished {
                pair: self.w.name.clone(),
                outcome: RunOutcome::Cancelled,
            });
        }
        self.watch = None;
    }

    /// True when a change seen at `path` is the run's own write. A folder created where the
    /// run wrote is the run's own only while everything in it is: a user's new folder there
    /// (the run removed the old one) may hold files written before the watcher saw the
    /// folder, which it never reports.
    fn is_own(&self, written: &Written, side: Side, path: &str, folder_created: bool) -> bool {
        if !written.covers(side, path) {
            return false;
        }
        let Some((_, root)) = self.w.local_roots.iter().find(|(s, _)| *s == side) else {
            return true;
        };
        // The very path the run wrote: the user's change when the path no longer looks as
        // the run left it (deleted again, edited after the run put it there, re-created).
        match written.expect(side, path) {
            Expect::Unknown => {}
            Expect::Present(done_at) => match std::fs::symlink_metadata(root.join(path)) {
                Ok(m) if changed_after(&m, done_at) => return false,
                Ok(_) => {}
                Err(_) => return false,
            },
            Expect::Absent => {
                if std::fs::symlink_metadata(root.join(path)).is_ok() {
                    return false;
                }
            }
            Expect::Touched(done_at) => {
                if std::fs::symlink_metadata(root.join(path))
                    .is_ok_and(|m| changed_after(&m, done_at))
                {
                    return false;
                }
            }
        }
        if !folder_created {
            return true;
        }
        // One folder's names, only for folders a run created: cheap next to the run.
        let Ok(entries) = std::fs::read_dir(root.join(path)) else {
            // Gone again: nothing in it to miss.
            return true;
        };
        entries.flatten().all(|e| {
            let child = format!("{path}/{}", e.file_name().to_string_lossy());
            written.covers(side, &child) || RelPath::new(child).is_ok_and(|p| is_always_ignored(&p))
        })
    }

    fn mark_pending(&mut self, reason: RunReason, immediate: bool) {
        let now = Instant::now();
        self.pending = Some(match self.pending {
            Some(p) => Pending {
                first: p.first,
                last: now,
                reason: if immediate { reason } else { p.reason },
                immediate: p.immediate || immediate,
            },
            None => Pending {
                first: now,
                last: now,
                reason,
                immediate,
            },
        });
    }

    fn on_watch(&mut self, msg: WatchMsg) {
        match msg {
            WatchMsg::Changed {
                side,
                path,
                folder_created,
            } => {
                if path.is_empty() {
                    self.root_event = true;
                }
                if let Some(run) = &mut self.run {
                    if path.is_empty() || run.seen.len() >= MAX_PENDING_PATHS {
                        run.seen_lost = true;
                    } else {
                        if folder_created {
                            run.seen_folders.insert((side, path.clone()));
                        }
                        run.seen.insert((side, path));
                    }
                    return;
                }
                if let Some(settle) = &self.settle
                    && settle.until > Instant::now()
                    && !settle.written.saturated
                    && self.is_own(&settle.written, side, &path, folder_created)
                {
                    return;
                }
                tracing::debug!(pair = %self.w.name, %side, path, "change seen");
                self.mark_pending(RunReason::Changed, false);
            }
            WatchMsg::Overflow => {
                tracing::debug!(pair = %self.w.name, "watch queue overflowed");
                if let Some(run) = &mut self.run {
                    run.seen_lost = true;
                } else {
                    self.mark_pending(RunReason::Changed, false);
                }
            }
            WatchMsg::Broken(reason) => {
                self.fall_back(reason);
                if let Some(run) = &mut self.run {
                    run.seen_lost = true;
                } else {
                    self.mark_pending(RunReason::Changed, false);
                }
            }
        }
    }

    /// Carries out `cmd`; `ack` is sent (by the caller, unless sent here) once it is.
    async fn command(&mut self, cmd: Command, ack: &mut Option<oneshot::Sender<()>>) {
        match cmd {
            Command::Trigger => {
                if let Some(run) = &mut self.run {
                    run.retrigger = true;
                } else {
                    self.mark_pending(RunReason::Trigger, true);
                }
            }
            Command::Pause => {
                if self.w.paused {
                    return;
                }
                self.w.paused = true;
                lock(&self.w.status).paused = true;
                match &mut self.run {
                    Some(run) => {
                        run.stop_starting.cancel();
                        run.cancel_at = Some(Instant::now() + self.w.shared.options.pause_grace);
                    }
                    None => self.set_state(PairState::Paused),
                }
                tracing::info!(pair = %self.w.name, "paused");
                self.emit(ServiceEvent::Paused {
                    pair: self.w.name.clone(),
                });
            }
            Command::Resume { force_once } => {
                // The stop is kept until the next run starts: a `resume` followed at once by
                // `resume_force_once` still forces that run.
                let was_held = std::mem::take(&mut self.held);
                lock(&self.w.status).stopped = None;
                if !self.w.paused && !was_held && !force_once {
                    return;
                }
                self.w.paused = false;
                let force = force_once
                    .then(|| self.stop.as_ref().map(|s| s.kind.clone()))
                    .flatten()
                    .filter(StopKind::can_force);
                self.force = force.clone().map(|kind| Force {
                    kind,
                    max_delete: self.stop_share,
                });
                self.backoff = None;
                {
                    let mut st = lock(&self.w.status);
                    st.paused = false;
                    if self.run.is_none() {
                        st.state = PairState::Idle;
                    }
                }
                // The resume is taken (the status says so): the caller need not wait for
                // the watch below, a walk of the whole tree (seconds for a big one).
                if let Some(ack) = ack.take() {
                    let _ = ack.send(());
                }
                // A resumed pair watches again: the root may be back, the limit raised.
                self.start_watch().await;
                match &mut self.run {
                    // Paused during a run that is still in its grace period: it is not
                    // cancelled, but it started nothing new since the pause and ends as
                    // cancelled; the next run (marked pending when it ends) does the rest.
                    Some(run) => run.cancel_at = None,
                    None => self.mark_pending(
                        if force.is_some() {
                            RunReason::ForcedOnce
                        } else {
                            RunReason::Resumed
                        },
                        true,
                    ),
                }
                tracing::info!(pair = %self.w.name, force_once = force.is_some(), "resumed");
                self.emit(ServiceEvent::Resumed {
                    pair: self.w.name.clone(),
                    force_once: force.is_some(),
                });
            }
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if let Some(run) = &mut self.run
            && run.cancel_at.is_some_and(|t| t <= now)
        {
            run.cancel_at = None;
            tracing::info!(pair = %self.w.name, "pause grace period over: cancelling the run");
            run.token.cancel();
        }
        if self.settle.as_ref().is_some_and(|s| s.until <= now) {
            self.settle = None;
        }
        if let Some((at, reason)) = self.due()
            && at <= now
        {
            self.start_run(reason);
        }
    }

    fn start_run(&mut self, reason: RunReason) {
        self.pending = None;
        self.settle = None;
        self.stop = None;
        self.stop_share = None;
        let token = self.w.cancel.child_token();
        let stop_starting = CancellationToken::new();
        let force = self.force.take();
        {
            let mut st = lock(&self.w.status);
            st.runs += 1;
            st.state = PairState::Waiting;
        }
        tracing::info!(pair = %self.w.name, ?reason, "run starting");
        self.emit(ServiceEvent::RunStarted {
            pair: self.w.name.clone(),
            reason,
        });
        let handle = tokio::spawn(run_once(
            self.w.name.clone(),
            self.w.spec.clone(),
            self.w.shared.clone(),
            self.w.status.clone(),
            token.clone(),
            stop_starting.clone(),
            force,
        ));
        self.run = Some(Running {
            handle,
            token,
            stop_starting,
            cancel_at: None,
            seen: HashSet::new(),
            seen_folders: HashSet::new(),
            seen_lost: false,
            retrigger: false,
        });
    }

    fn run_ended(&mut self, ended: Result<RunEnd, tokio::task::JoinError>) {
        let Some(run) = self.run.take() else { return };
        let now = Instant::now();
        let end = match ended {
            Ok(end) => end,
            Err(e) => RunEnd {
                result: Err(SyncError::State(format!("the run's task failed: {e}"))),
                written: Written::default(),
                duration: Duration::ZERO,
                _permit: None,
            },
        };
        // Changes seen during the run that are not its own writes start the next one (the
        // written set is complete only now: the watcher's events and the engine's progress
        // come by different channels).
        let own = |(s, p): &&(Side, String)| {
            let folder = run.seen_folders.contains(&(*s, p.clone()));
            self.is_own(&end.written, *s, p, folder)
        };
        let own_only = !run.seen_lost && !end.written.saturated && run.seen.iter().all(|x| own(&x));
        if !own_only {
            let foreign = run.seen.iter().find(|x| !own(x));
            tracing::debug!(
                pair = %self.w.name,
                lost = run.seen_lost,
                saturated = end.written.saturated,
                ?foreign,
                "changes seen during the run were not all its own: running again"
            );
            self.mark_pending(RunReason::Changed, false);
        }
        if run.retrigger {
            self.mark_pending(RunReason::Trigger, true);
        }
        self.next_rescan = now + self.w.spec.rescan_interval;
        self.arm_poll();
        let name = self.w.name.clone();
        let outcome = match end.result {
            Ok(stats) => {
                self.settle = Some(Settle {
                    until: now + self.w.shared.options.settle,
                    written: end.written,
                });
                let retry = stats.errors > 0;
                let mut st = lock(&self.w.status);
                st.last_run = Some(CompletedRun {
                    finished_at: SystemTime::now(),
                    duration: end.duration,
                    stats: stats.clone(),
                });
                if retry {
                    // Failed files are tried again, backing off like a failed run.
                    let msg = stats
                        .error_messages
                        .first()
                        .cloned()
                        .unwrap_or_else(|| format!("{} files failed", stats.errors));
                    st.last_error = Some(msg);
                    drop(st);
                    self.back_off();
                } else {
                    st.last_error = None;
                    st.state = if self.w.paused {
                        PairState::Paused
                    } else {
                        PairState::Idle
                    };
                    drop(st);
                    self.backoff = None;
                }
                tracing::info!(pair = %name, uploaded = stats.uploaded, downloaded = stats.downloaded, errors = stats.errors, "run finished");
                RunOutcome::Completed(stats)
            }
            Err(SyncError::Cancelled) => {
                // What the cancelled run did not get to is done by the next one.
                self.mark_pending(RunReason::Changed, false);
                self.set_state(if self.w.paused {
                    PairState::Paused
                } else {
                    PairState::Idle
                });
                RunOutcome::Cancelled
            }
            Err(e) => match StopKind::of(&e) {
                Some(kind) => {
                    let reason = StopReason {
                        kind,
                        message: e.to_string(),
                    };
                    tracing::warn!(pair = %name, "stopped by a safety rule, waiting for the user: {e}");
                    self.stop = Some(reason.clone());
                    self.stop_share = match &e {
                        SyncError::MaxDelete {
                            would_delete,
                            total,
                            ..
                        } if *total > 0 => {
                            u8::try_from((would_delete * 100).div_ceil(*total).min(100)).ok()
                        }
                        _ => None,
                    };
                    self.held = true;
                    self.pending = None;
                    self.backoff = None;
                    {
                        let mut st = lock(&self.w.status);
                        st.last_error = Some(reason.message.clone());
                        st.stopped = Some(reason.clone());
                        st.state = if self.w.paused {
                            PairState::Paused
                        } else {
                            PairState::Stopped(reason.clone())
                        };
                    }
                    self.emit(ServiceEvent::Stopped {
                        pair: name.clone(),
                        reason: reason.clone(),
                    });
                    RunOutcome::Stopped(reason)
                }
                None => {
                    lock(&self.w.status).last_error = Some(e.to_string());
                    let retry_in = self.back_off();
                    tracing::warn!(pair = %name, "run failed, retrying in {retry_in:?}: {e}");
                    RunOutcome::Failed {
                        error: e.to_string(),
                        retry_in,
                    }
                }
            },
        };
        self.emit(ServiceEvent::RunFinished {
            pair: name,
            outcome,
        });
    }

    /// Schedules the next attempt after a failure; returns the delay.
    fn back_off(&mut self) -> Duration {
        let o = &self.w.shared.options;
        let attempt = self.backoff.map_or(1, |(_, n)| n + 1);
        let factor = 1u32 << (attempt - 1).min(20);
        let delay = o.backoff_initial.saturating_mul(factor).min(o.backoff_max);
        self.backoff = Some((Instant::now() + delay, attempt));
        self.set_state(if self.w.paused {
            PairState::Paused
        } else {
            PairState::BackingOff {
                retry_at: SystemTime::now() + delay,
            }
        });
        delay
    }
}

/// How a run resumed with `resume_force_once` gets past the stop its pair was held at.
#[derive(Clone, Debug)]
struct Force {
    kind: StopKind,
    /// For a max-delete stop: the share of a side (percent, rounded up) that the stopped run
    /// would have deleted, which the forced run may delete (as with that --max-delete).
    max_delete: Option<u8>,
}

/// One run: waits for a slot, builds the pair, runs the engine, forwards its progress.
async fn run_once(
    name: String,
    spec: PairSpec,
    shared: Arc<Shared>,
    status: Arc<Mutex<PairStatus>>,
    token: CancellationToken,
    stop_starting: CancellationToken,
    force: Option<Force>,
) -> RunEnd {
    let written = Written::default();
    let started = Instant::now();
    let permit = tokio::select! {
        p = shared.runs.clone().acquire_owned() => match p {
            Ok(p) => p,
            Err(_) => return RunEnd {
                result: Err(SyncError::Cancelled),
                written,
                duration: started.elapsed(),
                _permit: None,
            },
        },
        _ = token.cancelled() => return RunEnd {
            result: Err(SyncError::Cancelled),
            written,
            duration: started.elapsed(),
            _permit: None,
        },
    };
    // Given to the other pairs when the run shows no progress for `stalled_after`.
    let mut permit = Some(permit);
    let end = move |result, written, permit| RunEnd {
        result,
        written,
        duration: started.elapsed(),
        _permit: permit,
    };
    let mut written = written;
    lock(&status).state = PairState::Scanning;
    let mut pair = match spec.build().await {
        Ok(p) => p,
        Err(e) => return end(Err(e), written, permit),
    };
    match force.map(|f| (f.kind, f.max_delete)) {
        // Past the stop the user saw, not past a bigger one: the run may delete the share of
        // a side that stop reported; more deleted since, or a side emptied, stops it again.
        Some((StopKind::MaxDelete, Some(share))) => {
            pair.options.max_delete_percent = pair.options.max_delete_percent.max(share);
        }
        Some((StopKind::MaxDelete | StopKind::EmptySide, _)) => {
            pair.options.force = true;
        }
        Some((StopKind::RootChanged(sides), _)) => {
            pair.options.accept_new_root = Some(sides);
        }
        _ => {}
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = SyncEngine::new(&shared.state_dir)
        .with_progress(tx)
        .with_stop_starting(stop_starting)
        .with_bandwidth(shared.options.bandwidth.clone())
        .with_cancellation(token);
    let run = async move {
        let r = engine.sync_pair(&pair).await;
        drop(engine);
        r
    };
    let mut run = std::pin::pin!(run);
    let forward = |event: ProgressEvent, written: &mut Written| {
        if matches!(event, ProgressEvent::Planned { .. }) {
            lock(&status).state = PairState::Syncing;
        }
        written.record(&event);
        shared.emit(ServiceEvent::Progress {
            pair: name.clone(),
            event,
        });
    };
    let mut open = true;
    let stalled_after = shared.options.stalled_after;
    let mut moved = Instant::now();
    let mut stalled = false;
    let result = loop {
        tokio::select! {
            biased;
            ev = rx.recv(), if open => match ev {
                Some(ev) => {
                    moved = Instant::now();
                    if std::mem::take(&mut stalled) {
                        lock(&status).no_progress_since = None;
                        tracing::info!(pair = %name, "the stalled run moves again");
                    }
                    // A run that gave its slot away takes one back as soon as one is free.
                    if permit.is_none() {
                        permit = shared.runs.clone().try_acquire_owned().ok();
                    }
                    forward(ev, &mut written);
                }
                None => open = false,
            },
            r = &mut run => break r,
            () = tokio::time::sleep_until(moved + stalled_after), if !stalled => {
                stalled = true;
                let since = SystemTime::now().checked_sub(stalled_after);
                lock(&status).no_progress_since = since.or(Some(SystemTime::UNIX_EPOCH));
                if permit.take().is_some() {
                    tracing::warn!(
                        pair = %name,
                        "no progress for {}s (its storage does not answer?): its run slot goes \
                         to the other pairs",
                        stalled_after.as_secs()
                    );
                }
                shared.emit(ServiceEvent::Stalled {
                    pair: name.clone(),
                    silent_for: stalled_after,
                });
            }
        }
    };
    while let Ok(ev) = rx.try_recv() {
        forward(ev, &mut written);
    }
    lock(&status).no_progress_since = None;
    end(result, written, permit)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn started(path: &str, kind: ActionKind) -> ProgressEvent {
        ProgressEvent::Started {
            path: RelPath::new(path).unwrap(),
            kind,
            bytes: 1,
        }
    }

    #[test]
    fn a_runs_writes_cover_their_paths_and_folders_on_their_side_only() {
        let mut w = Written::default();
        w.record(&started("docs/a/x.txt", ActionKind::Upload));
        // The file, the folders the run created for it, its O_TMPFILE while unnamed.
        assert!(w.covers(Side::Destination, "docs/a/x.txt"));
        assert!(w.covers(Side::Destination, "docs/a"));
        assert!(w.covers(Side::Destination, "docs"));
        assert!(w.covers(Side::Destination, "docs/a/#123456"));
        // The user's changes: the same path on the side the run read from, another file in
        // the same folder, a file named like a temp elsewhere, the root itself.
        assert!(!w.covers(Side::Source, "docs/a/x.txt"));
        assert!(!w.covers(Side::Destination, "docs/a/y.txt"));
        assert!(!w.covers(Side::Destination, "other/#123456"));
        assert!(!w.covers(Side::Destination, "#123456"));
        assert!(!w.covers(Side::Destination, ""));
        assert!(!w.covers(Side::Destination, "docs/a/#12x"));
        // A download writes the source; a write at the top of the root covers its temps.
        w.record(&started("top.txt", ActionKind::Download));
        assert!(w.covers(Side::Source, "top.txt"));
        assert!(w.covers(Side::Source, "#99"));
        assert!(!w.covers(Side::Destination, "top.txt"));
        w.record(&started("gone/x.txt", ActionKind::Delete(Side::Source)));
        assert!(w.covers(Side::Source, "gone"));
    }

    #[test]
    fn too_many_writes_saturate_rather_than_grow() {
        let mut w = Written::default();
        for i in 0..MAX_WRITTEN_PATHS + 10 {
            w.add(Side::Source, &format!("f{i}"), Expect::Unknown);
        }
        assert!(w.saturated);
        assert!(w.paths.is_empty());
    }
}
