//! Keeps many syncengine pairs in sync continuously: the library behind `syncengine watch`.
//!
//! A [`SyncService`] holds named pairs ([`PairSpec`]) and runs each with the ordinary
//! [`SyncEngine`](syncengine_core::SyncEngine) whenever it may have changed:
//!
//! - **local roots are watched** (the `notify` crate: recursive inotify on Linux). Events are
//!   debounced ([`Debounce`]: a run starts 2 s after the last event, at most 10 s after the
//!   first), so a burst of thousands of creations makes one or two runs;
//! - **remote roots are polled** (every 60 s by default), and every pair is **rescanned**
//!   (run) every hour in case a watcher missed something;
//! - when a watch cannot be set up or breaks (the inotify watch limit, a full event queue, a
//!   missing root) the pair **falls back to polling** with a warning
//!   ([`ServiceEvent::WatchFallback`]).
//!
//! Each pair runs one run at a time; several pairs run concurrently, at most
//! [`ServiceOptions::max_concurrent_runs`] at once. Pairs whose roots overlap are refused.
//!
//! # The engine's own writes
//! A run writes to the roots it watches. Changes seen while a run is in progress, and for
//! [`ServiceOptions::settle`] after it, are compared with the paths the run itself wrote
//! (from its progress events, with their parent folders): a change at any other path starts
//! the next run, so a user's edit made during a run is not lost; the run's own writes start
//! nothing. A change the user makes to the very path a run wrote, during that run, is taken
//! for the run's own and is picked up by the next change or the hourly rescan.
//! (Comparing paths rather than dropping everything seen during a run costs a set of the
//! run's written paths; a post-run rescan would cost a second full listing after every run.)
//!
//! # Pause, safety stops and errors
//! [`SyncService::pause`] holds a pair (a run in progress gets [`ServiceOptions::pause_grace`]
//! to finish, then is cancelled cleanly); the pause is written to the state directory and
//! survives restarts. A run stopped by a safety rule of the engine (max-delete, an emptied or
//! missing side, a changed root: [`StopKind`]) stops only its pair, which waits for
//! [`SyncService::resume`] or [`SyncService::resume_force_once`] and is never retried into
//! the rule. Other failures (a server down, the pair's lock held by another process) are
//! retried with an exponential back-off, without holding up other pairs.
//!
//! # Example: a service with two pairs
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use syncengine_core::{MemoryClient, SyncMode, SyncPair};
//! use syncengine_service::{PairSpec, PairState, ServiceEvent, SyncService};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let state = tempfile::tempdir()?;
//! let service = SyncService::new(state.path())?;
//! let mut events = service.subscribe();
//!
//! // In real use: `LocalClient`s (watched) and remote clients (polled).
//! let notes = SyncPair::new(Arc::new(MemoryClient::new()), Arc::new(MemoryClient::new()), SyncMode::TwoWay);
//! let photos = SyncPair::new(Arc::new(MemoryClient::new()), Arc::new(MemoryClient::new()), SyncMode::SourceBackup);
//! service.add(PairSpec::new("notes", notes)).await?;
//! service
//!     .add(PairSpec::new("photos", photos).with_poll_interval(Duration::from_secs(300)))
//!     .await?;
//!
//! // Each pair runs once when added.
//! let mut finished = 0;
//! while finished < 2 {
//!     if let ServiceEvent::RunFinished { pair, outcome } = events.recv().await? {
//!         println!("{pair}: {outcome:?}");
//!         finished += 1;
//!     }
//! }
//! service.pause("photos").await?;
//! assert_eq!(service.status("photos").unwrap().state, PairState::Paused);
//! service.resume("photos").await?;
//! service.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! Not done yet: a run after a watch event lists both roots in full; narrowing it to the
//! changed folders is future work.

mod error;
mod paused;
mod service;
mod spec;
mod status;
mod watch;
mod worker;

pub use error::ServiceError;
pub use paused::PAUSED_FILE;
pub use service::{ServiceOptions, SyncService, default_state_dir};
pub use spec::{DEFAULT_POLL_INTERVAL, DEFAULT_RESCAN_INTERVAL, Debounce, PairBuilder, PairSpec};
pub use status::{
    CompletedRun, PairState, PairStatus, RunOutcome, RunReason, ServiceEvent, StopKind, StopReason,
    Watching,
};
