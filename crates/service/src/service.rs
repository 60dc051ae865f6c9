//! [`SyncService`]: many pairs kept in sync at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncengine_core::bandwidth::Bandwidth;
use syncengine_core::{Location, Side};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::ServiceError;

use crate::paused::PausedPairs;
use crate::spec::PairSpec;
use crate::status::{PairStatus, ServiceEvent};
use crate::worker::{Command, Shared, Worker, lock};

/// How the service as a whole behaves. Every field has a default.
///
/// ```
/// use std::time::Duration;
/// use syncengine_service::ServiceOptions;
///
/// let opts = ServiceOptions::default()
///     .with_max_concurrent_runs(4)
///     .with_pause_grace(Duration::from_secs(30));
/// assert_eq!(opts.max_concurrent_runs, 4);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServiceOptions {
    /// Runs in progress at once, over all pairs (default 2). Each run has its own
    /// [`SyncOptions::transfers`](syncengine_core::SyncOptions::transfers) actions in flight,
    /// so at most `max_concurrent_runs × transfers` transfers run at once.
    pub max_concurrent_runs: usize,
    /// How long the transfers in flight of a run may go on after its pair is paused (the run
    /// starts no new one) before they are cancelled (default 10 s).
    pub pause_grace: Duration,
    /// How long after a run its own writes may still be reported by the watcher (default
    /// 1 s): changes seen then at paths the run wrote are taken as its own.
    pub settle: Duration,
    /// The first wait after a failed run (default 5 s); it doubles with each failure in a row.
    pub backoff_initial: Duration,
    /// The longest wait between failed runs (default 10 min).
    pub backoff_max: Duration,
    /// Events kept for a slow subscriber before it misses some (default 4096).
    pub event_capacity: usize,
    /// Acts as if every watch hit the inotify watch limit, so every pair falls back to
    /// polling (for testing that fallback without exhausting the system's limit).
    pub simulate_watch_limit: bool,
    /// The bandwidth budget every transfer of every pair spends together (unlimited by
    /// default): `--bwlimit` for the whole service. See [`syncengine_core::bandwidth`].
    pub bandwidth: Bandwidth,
    /// How long a run may show no progress (no event of the engine: no action started,
    /// advanced or ended, and no plan) before it gives its run slot to the other pairs
    /// (default 5 min, the backends' idle timeout). A hung local disk or mount (a frozen
    /// filesystem, an NFS server gone) has no timeout that would end its run: it then holds
    /// up its own pair only, not every pair behind the
    /// [`max_concurrent_runs`](Self::max_concurrent_runs) limit. The run itself goes on when
    /// its storage answers ([`PairStatus::no_progress_since`](crate::PairStatus::no_progress_since)
    /// says since when it has not; pausing the pair cancels it after
    /// [`pause_grace`](Self::pause_grace)). A run still listing a very large remote tree
    /// shows no progress either: each run that gives its slot away lets one more run start
    /// beside it, over the limit for a while; it takes a slot back as soon as one is free
    /// once it moves again.
    pub stalled_after: Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            max_concurrent_runs: 2,
            pause_grace: Duration::from_secs(10),
            settle: Duration::from_secs(1),
            backoff_initial: Duration::from_secs(5),
            backoff_max: Duration::from_secs(600),
            event_capacity: 4096,
            simulate_watch_limit: false,
            bandwidth: Bandwidth::unlimited(),
            stalled_after: Duration::from_secs(300),
        }
    }
}

impl ServiceOptions {
    /// Sets the number of runs in progress at once (at least 1).
    pub fn with_max_concurrent_runs(mut self, n: usize) -> Self {
        self.max_concurrent_runs = n.max(1);
        self
    }
    /// Sets the grace period of a pause.
    pub fn with_pause_grace(mut self, grace: Duration) -> Self {
        self.pause_grace = grace;
        self
    }
    /// Sets the settle window after a run.
    pub fn with_settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }
    /// Sets the first and the longest back-off after failures.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }
    /// Sets the event stream's capacity per subscriber (at least 16).
    pub fn with_event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n.max(16);
        self
    }
    /// Makes every watch fail as if the inotify watch limit were reached (see
    /// [`ServiceOptions::simulate_watch_limit`]).
    pub fn with_simulated_watch_limit(mut self, on: bool) -> Self {
        self.simulate_watch_limit = on;
        self
    }
    /// Shares `budget` among all transfers of all pairs (e.g. `"1M:4M".parse()` into
    /// [`Bandwidth::new`]).
    pub fn with_bandwidth(mut self, budget: Bandwidth) -> Self {
        self.bandwidth = budget;
        self
    }
    /// Sets how long a run may show no progress before it gives its slot to the other pairs
    /// (see [`ServiceOptions::stalled_after`]).
    pub fn with_stalled_after(mut self, after: Duration) -> Self {
        self.stalled_after = after;
        self
    }
}

struct Handle {
    cmds: mpsc::UnboundedSender<(Command, Option<oneshot::Sender<()>>)>,
    status: Arc<Mutex<PairStatus>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    roots: [Location; 2],
    /// The local roots' folder identities, for roots that are one folder under two paths.
    local_ids: Vec<(PathBuf, FolderChain)>,
}

/// Keeps many pairs in sync continuously, each with the ordinary
/// [`SyncEngine`](syncengine_core::SyncEngine) run.
///
/// See the [crate documentation](crate) for an example and for how runs are triggered.
///
/// # Behavior
/// - Each pair runs in its own task, one run at a time (the engine's pair lock keeps other
///   processes out too); at most [`ServiceOptions::max_concurrent_runs`] runs over all pairs
///   are in progress at once.
/// - A failed run is retried after a back-off that doubles up to
///   [`ServiceOptions::backoff_max`]; other pairs go on. A run stopped by a safety rule
///   (max-delete, an emptied or missing side, a changed root) stops that pair until
///   [`resume`](Self::resume) or [`resume_force_once`](Self::resume_force_once).
/// - Must be created and used inside a tokio runtime.
pub struct SyncService {
    shared: Arc<Shared>,
    pairs: Mutex<HashMap<String, Handle>>,
    paused: Arc<Mutex<PausedPairs>>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for SyncService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncService")
            .field("state_dir", &self.shared.state_dir)
            .field("pairs", &self.pair_names())
            .finish_non_exhaustive()
    }
}

impl SyncService {
    /// Creates a service keeping pair state (and which pairs are paused) in `state_dir`.
    ///
    /// # Errors
    /// [`ServiceError::State`] when the paused-pairs file there cannot be read.
    pub fn new(state_dir: impl AsRef<Path>) -> Result<Self, ServiceError> {
        Self::with_options(state_dir, ServiceOptions::default())
    }

    /// Creates a service with `options`.
    ///
    /// # Errors
    /// As [`SyncService::new`].
    pub fn with_options(
        state_dir: impl AsRef<Path>,
        options: ServiceOptions,
    ) -> Result<Self, ServiceError> {
        let state_dir = state_dir.as_ref().to_path_buf();
        let paused = PausedPairs::load(&state_dir)?;
        let (events, _) = broadcast::channel(options.event_capacity.max(16));
        Ok(SyncService {
            shared: Arc::new(Shared {
                state_dir,
                runs: Arc::new(Semaphore::new(options.max_concurrent_runs.max(1))),
                options,
                events,
            }),
            pairs: Mutex::new(HashMap::new()),
            paused: Arc::new(Mutex::new(paused)),
            shutdown: CancellationToken::new(),
        })
    }

    /// The directory holding pair state.
    pub fn state_dir(&self) -> &Path {
        &self.shared.state_dir
    }

    /// Receives every event of every pair from now on: progress of runs tagged with the pair,
    /// runs started and finished, pauses, resumes, safety stops, watch fallbacks.
    ///
    /// A subscriber that falls more than [`ServiceOptions::event_capacity`] events behind
    /// misses the oldest ([`broadcast::error::RecvError::Lagged`]); the service never waits
    /// for a subscriber.
    pub fn subscribe(&self) -> broadcast::Receiver<ServiceEvent> {
        self.shared.events.subscribe()
    }

    /// Adds a pair and starts keeping it in sync: a first run starts at once (unless the
    /// pair was paused when the service last ran, see [`pause`](Self::pause)).
    ///
    /// # Errors
    /// - [`ServiceError::Duplicate`]: a pair of that name is in the service.
    /// - [`ServiceError::Overlap`]: a root of the pair is a root of another pair, or inside
    ///   one, or holds one (compared on resolved locations: canonical local paths, normalized
    ///   remote URLs). Each pair's writes would trigger the other.
    /// - [`ServiceError::Setup`]: the pair could not be built or its roots resolved.
    /// - [`ServiceError::State`]: the paused-pairs file cannot be read (it is read again here,
    ///   as another service or the command line may have paused the pair meanwhile).
    /// - [`ServiceError::ShutDown`] after [`shutdown`](Self::shutdown).
    pub async fn add(&self, spec: PairSpec) -> Result<(), ServiceError> {
        if self.shutdown.is_cancelled() {
            return Err(ServiceError::ShutDown);
        }
        let name = spec.name.clone();
        let setup = |source| ServiceError::Setup {
            pair: name.clone(),
            source: Box::new(source),
        };
        let pair = spec.build().await.map_err(setup)?;
        let roots = pair.locations().await.map_err(setup)?;
        // The paused file as it is now: another writer of the state directory may have
        // paused this pair since the service read it.
        let file = self.paused.clone();
        tokio::task::spawn_blocking(move || lock_paused(&file).refresh())
            .await
            .map_err(|_| ServiceError::ShutDown)??;
        let mut local_roots = Vec::new();
        let mut has_remote = false;
        for side in [Side::Source, Side::Destination] {
            match pair.client(side).local_root() {
                Some(root) => local_roots.push((side, root)),
                None => has_remote = true,
            }
        }
        let local_ids = {
            let roots: Vec<PathBuf> = local_roots.iter().map(|(_, r)| r.to_path_buf()).collect();
            tokio::task::spawn_blocking(move || {
                roots
                    .into_iter()
                    .map(|r| {
                        let chain = FolderChain::of(&r);
                        (r, chain)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|_| ServiceError::ShutDown)?
        };
        let mut pairs = lock_map(&self.pairs);
        if pairs.contains_key(&name) {
            return Err(ServiceError::Duplicate(name));
        }
        let mut others: Vec<_> = pairs.iter().collect();
        others.sort_by(|a, b| a.0.cmp(b.0));
        for (other, handle) in others {
            for root in &roots {
                for other_root in &handle.roots {
                    if overlaps(root, other_root) {
                        return Err(ServiceError::Overlap {
                            pair: name,
                            root: root.to_string(),
                            other: other.clone(),
                            other_root: other_root.to_string(),
                        });
                    }
                }
            }
            // One folder under two paths (a bind mount, a case-insensitive mount, a
            // symlinked parent resolved differently): the same device and inode.
            for (root, ids) in &local_ids {
                for (other_root, other_ids) in &handle.local_ids {
                    if ids.overlaps(other_ids) {
                        return Err(ServiceError::Overlap {
                            pair: name,
                            root: format!("{} (by its device and inode)", root.display()),
                            other: other.clone(),
                            other_root: other_root.display().to_string(),
                        });
                    }
                }
            }
        }
        let paused = spec.start_paused || lock_paused(&self.paused).contains(&name);
        let status = Arc::new(Mutex::new(PairStatus::new(paused)));
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = self.shutdown.child_token();
        let worker = Worker {
            name: name.clone(),
            spec,
            shared: self.shared.clone(),
            status: status.clone(),
            cmds: rx,
            cancel: cancel.clone(),
            local_roots,
            has_remote,
            paused,
        };
        let task = tokio::spawn(worker.run());
        pairs.insert(
            name.clone(),
            Handle {
                cmds: tx,
                status,
                cancel,
                task,
                roots,
                local_ids,
            },
        );
        drop(pairs);
        tracing::info!(pair = %name, paused, "pair added");
        self.shared.emit(ServiceEvent::Added { pair: name });
        Ok(())
    }

    /// Removes a pair: a run in progress is cancelled cleanly (see
    /// [`SyncEngine::with_cancellation`](syncengine_core::SyncEngine::with_cancellation)) and
    /// awaited before this returns. Whether it was paused is kept, for when it comes back.
    ///
    /// # Errors
    /// [`ServiceError::UnknownPair`].
    pub async fn remove(&self, name: &str) -> Result<(), ServiceError> {
        let handle = lock_map(&self.pairs)
            .remove(name)
            .ok_or_else(|| ServiceError::UnknownPair(name.to_owned()))?;
        handle.cancel.cancel();
        let _ = handle.task.await;
        tracing::info!(pair = %name, "pair removed");
        self.shared.emit(ServiceEvent::Removed {
            pair: name.to_owned(),
        });
        Ok(())
    }

    /// Pauses a pair, and remembers it in the state directory: it stays paused across
    /// restarts of the service until [`resume`](Self::resume). A run in progress starts no
    /// new transfer, and those in flight get [`ServiceOptions::pause_grace`] to finish; if
    /// the run has not ended by then it is cancelled cleanly. Changes seen while paused are synced on resume. Returns once the pair's
    /// task has taken the pause (its status says `paused`).
    ///
    /// # Errors
    /// [`ServiceError::UnknownPair`]; [`ServiceError::State`] when the paused state cannot be
    /// written (the pair is then not paused).
    pub async fn pause(&self, name: &str) -> Result<(), ServiceError> {
        self.set_paused(name, true).await?;
        self.request(name, Command::Pause).await
    }

    /// Resumes a paused pair, or one stopped by a safety rule (which then runs again as it
    /// is, and stops again if the cause is still there). A run starts at once.
    ///
    /// # Errors
    /// As [`pause`](Self::pause).
    pub async fn resume(&self, name: &str) -> Result<(), ServiceError> {
        self.set_paused(name, false).await?;
        self.request(name, Command::Resume { force_once: false })
            .await
    }

    /// Resumes a pair stopped by a safety rule and runs it once past that rule: for a
    /// max-delete stop with the max-delete share raised to what the stopped run would have
    /// deleted (more deleted since, or a side emptied, stops it again: the user agreed to the
    /// stop they saw), with `force` for an empty-side stop (as the CLI's `--force`),
    /// accepting the new roots for a changed-root stop (as `--accept-new-root`). Only that one
    /// run is forced; a later stop stops the pair again.
    ///
    /// # Errors
    /// [`ServiceError::NotStopped`] when the pair is not stopped by a rule that can be forced
    /// (a missing root on a first run cannot: create it, then [`resume`](Self::resume)); and
    /// as [`pause`](Self::pause).
    pub async fn resume_force_once(&self, name: &str) -> Result<(), ServiceError> {
        let status = self
            .status(name)
            .ok_or_else(|| ServiceError::UnknownPair(name.to_owned()))?;
        if !status.stopped.is_some_and(|r| r.kind.can_force()) {
            return Err(ServiceError::NotStopped(name.to_owned()));
        }
        self.set_paused(name, false).await?;
        self.request(name, Command::Resume { force_once: true })
            .await
    }

    /// Starts a run of the pair now (after the run in progress, if any), without waiting for
    /// a change, the poll or the back-off. A paused or stopped pair does not run.
    ///
    /// # Errors
    /// [`ServiceError::UnknownPair`].
    pub fn trigger(&self, name: &str) -> Result<(), ServiceError> {
        self.send(name, Command::Trigger)
    }

    /// The state of a pair; `None` for an unknown name.
    pub fn status(&self, name: &str) -> Option<PairStatus> {
        lock_map(&self.pairs)
            .get(name)
            .map(|h| lock(&h.status).clone())
    }

    /// Every pair's state, sorted by name.
    pub fn statuses(&self) -> Vec<(String, PairStatus)> {
        let mut all: Vec<_> = lock_map(&self.pairs)
            .iter()
            .map(|(n, h)| (n.clone(), lock(&h.status).clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The names of the pairs, sorted.
    pub fn pair_names(&self) -> Vec<String> {
        let mut names: Vec<_> = lock_map(&self.pairs).keys().cloned().collect();
        names.sort();
        names
    }

    /// Stops every pair: runs in progress are cancelled cleanly and awaited. Paused states
    /// stay recorded for the next start.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let handles: Vec<_> = lock_map(&self.pairs).drain().collect();
        for (_, h) in handles {
            let _ = h.task.await;
        }
        tracing::info!("service stopped");
    }

    async fn set_paused(&self, name: &str, paused: bool) -> Result<(), ServiceError> {
        if !lock_map(&self.pairs).contains_key(name) {
            return Err(ServiceError::UnknownPair(name.to_owned()));
        }
        // A small file, written and flushed (fsync) off the runtime's threads.
        let file = self.paused.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || lock_paused(&file).set(&name, paused))
            .await
            .map_err(|_| ServiceError::ShutDown)?
    }

    fn send(&self, name: &str, cmd: Command) -> Result<(), ServiceError> {
        let pairs = lock_map(&self.pairs);
        let h = pairs
            .get(name)
            .ok_or_else(|| ServiceError::UnknownPair(name.to_owned()))?;
        h.cmds.send((cmd, None)).map_err(|_| ServiceError::ShutDown)
    }

    /// Sends `cmd` and waits until the pair's task has carried it out.
    async fn request(&self, name: &str, cmd: Command) -> Result<(), ServiceError> {
        let (tx, rx) = oneshot::channel();
        {
            let pairs = lock_map(&self.pairs);
            let h = pairs
                .get(name)
                .ok_or_else(|| ServiceError::UnknownPair(name.to_owned()))?;
            h.cmds
                .send((cmd, Some(tx)))
                .map_err(|_| ServiceError::ShutDown)?;
        }
        rx.await.map_err(|_| ServiceError::ShutDown)
    }
}

impl Drop for SyncService {
    /// A service dropped without [`shutdown`](SyncService::shutdown) still cancels its runs
    /// (cleanly), but does not wait for them.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn lock_map(
    m: &Mutex<HashMap<String, Handle>>,
) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn lock_paused(m: &Mutex<PausedPairs>) -> std::sync::MutexGuard<'_, PausedPairs> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A local folder's identity beyond its path: its device and inode (one folder under two
/// names: a case-insensitive mount, a hard-to-canonicalize path) and, on Linux, where it lies
/// in its filesystem (a bind mount shows a folder of one filesystem at another path:
/// `/proc/self/mountinfo` gives the mount's root inside the filesystem).
#[derive(Debug, Default)]
pub(crate) struct FolderChain {
    /// Device and inode, when the folder exists.
    own: Option<(u64, u64)>,
    /// The filesystem (`major:minor`) and the folder's path inside it.
    in_fs: Option<(String, PathBuf)>,
}

impl FolderChain {
    #[cfg(unix)]
    fn of(path: &Path) -> FolderChain {
        use std::os::unix::fs::MetadataExt;
        let own = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        FolderChain {
            own,
            in_fs: place_in_filesystem(path),
        }
    }

    #[cfg(not(unix))]
    fn of(_path: &Path) -> FolderChain {
        FolderChain::default()
    }

    /// True when one folder is the other or lies inside it.
    fn overlaps(&self, other: &FolderChain) -> bool {
        if self.own.is_some() && self.own == other.own {
            return true;
        }
        match (&self.in_fs, &other.in_fs) {
            (Some((fs, a)), Some((other_fs, b))) => {
                fs == other_fs && (a.starts_with(b) || b.starts_with(a))
            }
            _ => false,
        }
    }
}

/// Where `path` lies inside its filesystem: the filesystem's `major:minor` and the path from
/// the filesystem's root, through the mount (a bind mount's root is a folder inside the
/// filesystem). `None` where `/proc/self/mountinfo` cannot be read or the path resolved.
#[cfg(target_os = "linux")]
fn place_in_filesystem(path: &Path) -> Option<(String, PathBuf)> {
    // The existing part of the path, resolved; what does not exist yet is appended as is.
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    let resolved = loop {
        match std::fs::canonicalize(&existing) {
            Ok(p) => break p,
            Err(_) => {
                rest.push(existing.file_name()?.to_owned());
                existing = existing.parent()?.to_path_buf();
            }
        }
    };
    let resolved = rest.iter().rev().fold(resolved, |p, n| p.join(n));
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // The mount whose mount point holds the path and is the deepest; of equal ones the last
    // (mounted over the others).
    let mut best: Option<(usize, String, PathBuf, PathBuf)> = None;
    for line in table.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(dev), Some(root), Some(point)) = (fields.get(2), fields.get(3), fields.get(4))
        else {
            continue;
        };
        let point = PathBuf::from(unescape_mountinfo(point));
        if !resolved.starts_with(&point) {
            continue;
        }
        let depth = point.components().count();
        if best.as_ref().is_none_or(|b| depth >= b.0) {
            best = Some((
                depth,
                (*dev).to_owned(),
                PathBuf::from(unescape_mountinfo(root)),
                point,
            ));
        }
    }
    let (_, dev, root, point) = best?;
    let inside = resolved.strip_prefix(&point).ok()?;
    Some((dev, root.join(inside)))
}

#[cfg(all(unix, not(target_os = "linux")))]
fn place_in_filesystem(_path: &Path) -> Option<(String, PathBuf)> {
    None
}

/// `/proc/self/mountinfo` writes space, tab, newline and backslash as `\ooo` (octal).
#[cfg(target_os = "linux")]
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True when `a` and `b` are the same root or one lies inside the other.
pub(crate) fn overlaps(a: &Location, b: &Location) -> bool {
    if a.scheme != b.scheme || a.authority != b.authority {
        return false;
    }
    let inside = |inner: &str, outer: &str| {
        outer.is_empty()
            || inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    inside(&a.path, &b.path) || inside(&b.path, &a.path)
}

/// Where the state of a service lives when none is given: [`syncengine_core::default_state_dir`].
pub fn default_state_dir() -> Option<PathBuf> {
    syncengine_core::default_state_dir()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(
            unescape_mountinfo(r"/mnt/my\040disk\134x"),
            r"/mnt/my disk\x"
        );
        assert_eq!(unescape_mountinfo(r"/a\04"), r"/a\04");
    }

    #[test]
    fn sibling_folders_do_not_overlap_and_nested_ones_do() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(a.join("inner")).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let of = |p: &Path| FolderChain::of(p);
        assert!(!of(&a).overlaps(&of(&b)));
        assert!(of(&a).overlaps(&of(&a.join("inner"))));
        // A root that does not exist yet lies where its path says.
        assert!(of(&a).overlaps(&of(&a.join("missing/deeper"))));
        assert!(!of(&b).overlaps(&of(&a.join("missing"))));
    }
}
