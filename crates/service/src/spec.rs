//! [`PairSpec`]: one pair the service keeps in sync, and how its runs are triggered.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use syncengine_core::{SyncError, SyncOptions, SyncPair};

/// Builds the [`SyncPair`] of one run. Called once when the pair is added (to find its roots)
/// and once before every run, so a builder may hand out fresh clients or credentials.
pub type PairBuilder =
    Arc<dyn Fn() -> BoxFuture<'static, Result<SyncPair, SyncError>> + Send + Sync>;

/// How watch events are gathered into one run: the run starts `quiet` after the last event,
/// and at the latest `max` after the first one, however busy the root stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Debounce {
    /// Quiet time after the last event before the run starts.
    pub quiet: Duration,
    /// Longest wait after the first event of a burst.
    pub max: Duration,
}

impl Debounce {
    /// A debounce of `quiet` after the last event, at most `max` after the first.
    pub fn new(quiet: Duration, max: Duration) -> Self {
        Debounce {
            quiet,
            max: max.max(quiet),
        }
    }
}

impl Default for Debounce {
    /// 2 s after the last event, at most 10 s after the first.
    fn default() -> Self {
        Debounce::new(Duration::from_secs(2), Duration::from_secs(10))
    }
}

/// The default interval between two polls of a root that is not watched.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The default interval between two full rescans of a watched pair.
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(3600);

/// One pair kept in sync by a [`SyncService`](crate::SyncService): its name, how to build its
/// [`SyncPair`], and when it runs.
///
/// # Behavior
/// - Local roots (clients with a [`local_root`](syncengine_core::StorageClient::local_root))
///   are watched recursively unless [`with_watch(false)`](Self::with_watch); a watch event
///   starts a run after the [`Debounce`].
/// - A pair with a side that is not watched (a remote root, or a local one whose watch could
///   not be set up) runs every [`poll_interval`](Self::with_poll_interval) (default 60 s).
/// - Every pair also runs every [`rescan_interval`](Self::with_rescan_interval) (default
///   1 h), to catch what a watcher missed.
///
/// Every run is an ordinary full [`SyncEngine::sync_pair`](syncengine_core::SyncEngine::sync_pair)
/// run: a watch event does not narrow the listing to the changed folders (yet).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use syncengine_core::{MemoryClient, SyncMode, SyncPair};
/// use syncengine_service::{Debounce, PairSpec};
///
/// let pair = SyncPair::new(Arc::new(MemoryClient::new()), Arc::new(MemoryClient::new()), SyncMode::TwoWay);
/// let spec = PairSpec::new("notes", pair)
///     .with_poll_interval(Duration::from_secs(30))
///     .with_debounce(Debounce::new(Duration::from_millis(500), Duration::from_secs(5)));
/// assert_eq!(spec.name(), "notes");
/// ```
#[derive(Clone)]
pub struct PairSpec {
    pub(crate) name: String,
    pub(crate) build: PairBuilder,
    pub(crate) options: Option<SyncOptions>,
    pub(crate) watch: bool,
    pub(crate) poll_interval: Duration,
    pub(crate) rescan_interval: Duration,
    pub(crate) debounce: Debounce,
    pub(crate) start_paused: bool,
}

impl fmt::Debug for PairSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairSpec")
            .field("name", &self.name)
            .field("options", &self.options)
            .field("watch", &self.watch)
            .field("poll_interval", &self.poll_interval)
            .field("rescan_interval", &self.rescan_interval)
            .field("debounce", &self.debounce)
            .field("start_paused", &self.start_paused)
            .finish_non_exhaustive()
    }
}

impl PairSpec {
    /// A pair named `name` that runs a clone of `pair` each time.
    pub fn new(name: impl Into<String>, pair: SyncPair) -> Self {
        Self::with_builder(name, move || {
            let pair = pair.clone();
            async move { Ok(pair) }
        })
    }

    /// A pair named `name` whose [`SyncPair`] is built by `build` before each run (and once
    /// when it is added, to find its roots). An error of `build` counts as a failed run.
    pub fn with_builder<F, Fut>(name: impl Into<String>, build: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<SyncPair, SyncError>> + Send + 'static,
    {
        PairSpec {
            name: name.into(),
            build: Arc::new(move || Box::pin(build())),
            options: None,
            watch: true,
            poll_interval: DEFAULT_POLL_INTERVAL,
            rescan_interval: DEFAULT_RESCAN_INTERVAL,
            debounce: Debounce::default(),
            start_paused: false,
        }
    }

    /// The pair's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs with these options in place of the built pair's own.
    pub fn with_sync_options(mut self, options: SyncOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// Watches local roots (the default) or, with `false`, polls them like remote ones.
    pub fn with_watch(mut self, watch: bool) -> Self {
        self.watch = watch;
        self
    }

    /// Sets how often a pair with an unwatched root runs (default 60 s).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Sets how often the pair runs even when nothing was seen to change (default 1 h).
    pub fn with_rescan_interval(mut self, interval: Duration) -> Self {
        self.rescan_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Sets how watch events are gathered into runs (default 2 s quiet, 10 s at most).
    pub fn with_debounce(mut self, debounce: Debounce) -> Self {
        self.debounce = debounce;
        self
    }

    /// Adds the pair paused (`true`) without recording a pause in the state directory: a
    /// pause that comes from the pair's configuration (`paused = true` in the config file)
    /// rather than from [`SyncService::pause`](crate::SyncService::pause). No run starts
    /// until [`SyncService::resume`](crate::SyncService::resume). A pair paused with
    /// `pause` stays paused whatever this says.
    pub fn with_paused(mut self, paused: bool) -> Self {
        self.start_paused = paused;
        self
    }

    /// Builds the pair for a run, with [`with_sync_options`](Self::with_sync_options) applied.
    pub(crate) async fn build(&self) -> Result<SyncPair, SyncError> {
        let pair = (self.build)().await?;
        Ok(match &self.options {
            Some(o) => pair.with_options(o.clone()),
            None => pair,
        })
    }
}
