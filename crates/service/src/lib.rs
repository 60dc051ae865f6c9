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
//! A run writes to the roots it watches, and must not trigger a run of its own. Changes seen
//! while a run is in progress, and for [`ServiceOptions::settle`] after it, are compared with
//! what the run itself did, taken from its progress events:
//!
//! - a change at a path the run did not touch (nor a parent folder of one) is the user's and
//!   starts the next run: a user's edit made during a run is not lost;
//! - a change at a path the run wrote counts as the run's own only while the path still looks
//!   as the run left it: a file it put there must still exist with a modification time from
//!   before the run finished with it (the engine gives copies the other side's time), a path
//!   it deleted or renamed away must still be absent. A user who deletes, edits or re-creates
//!   the file right after the run starts the next run;
//! - a folder created where the run wrote is its own only if everything in it is: a user's
//!   new folder may hold files written before its watch was in place, which the watcher never
//!   reports.
//!
//! Why not drop everything seen during a run, then rescan? A rescan after every run is a
//! second full listing of both sides for each change; comparing costs a set of the run's
//! written paths (at most 200 000; past that, a change seen during the run makes one more
//! run) and a `stat` per path the run wrote and saw change. What it cannot tell apart: an
//! edit of a file the run wrote, made in the few milliseconds between the run's write and
//! its report of it; the hourly rescan catches that.
//!
//! # Pause, safety stops and errors
//! [`SyncService::pause`] holds a pair (a run in progress starts no new transfer and gets
//! [`ServiceOptions::pause_grace`] to finish those in flight, then is cancelled cleanly); the
//! pause is written to the state directory and survives restarts. A run stopped by a safety rule of the engine (max-delete, an emptied or
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
pub use paused::{PAUSED_FILE, paused_pairs, set_paused};
pub use service::{ServiceOptions, SyncService, default_state_dir};
pub use spec::{DEFAULT_POLL_INTERVAL, DEFAULT_RESCAN_INTERVAL, Debounce, PairBuilder, PairSpec};
pub use status::{
    CompletedRun, PairState, PairStatus, RunOutcome, RunReason, ServiceEvent, StopKind, StopReason,
    Watching,
};
