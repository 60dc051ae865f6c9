//! The core of syncengine: the [`StorageClient`] contract every backend implements, the
//! streaming three-way reconciler, the planner and executor, and the state store.
//!
//! Most users want the `syncengine` facade crate, which re-exports this one together with
//! the backends. Backend authors implement [`StorageClient`] and run the conformance suite
//! (feature `conformance`). Feature `testing` adds adversarial test tools: a fault-injecting
//! client wrapper (errors, lost replies, short or corrupt reads, failing listings,
//! cancellation at a chosen call) and a wrapper with the name rules of real disks; the
//! crate's `tests/model.rs` drives them from a reference model of the sync semantics.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use syncengine_core::{MemoryClient, RelPath, StorageClientExt, SyncEngine, SyncMode, SyncPair};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let src = Arc::new(MemoryClient::new());
//! src.put(&RelPath::new("notes/todo.txt")?, Bytes::from("milk")).await?;
//! let dst = Arc::new(MemoryClient::new());
//!
//! let state = tempfile::tempdir()?;
//! let engine = SyncEngine::new(state.path());
//! let stats = engine.sync_pair(&SyncPair::new(src, dst.clone(), SyncMode::TwoWay)).await?;
//! assert_eq!(stats.uploaded, 1);
//! assert_eq!(dst.read_to_bytes(&RelPath::new("notes/todo.txt")?).await?, "milk");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

pub mod bandwidth;
pub mod capabilities;
pub mod check;
pub mod cleanup;
pub mod client;
pub mod collide;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod decide;
pub mod engine;
pub mod entry;
pub mod entry_filter;
pub mod error;
pub mod exec;
pub mod folding;
pub mod identity;
pub mod ignore_rules;
pub mod memory;
pub mod mode;
pub mod order;
pub mod pair;
pub mod parallel_read;
pub mod path;
pub mod plan;
pub mod progress;
pub mod protect;
pub mod prune;
pub mod reconcile;
pub mod redact;
pub(crate) mod shared_flush;
pub mod spill;
pub mod stall;
pub mod state;
pub mod stats;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timeouts;
pub mod trash;
pub(crate) mod unknown;
pub mod verify;

pub use capabilities::Capabilities;
pub use client::{
    ByteStream, DeleteOptions, EntryStream, PruneFn, ReadOptions, StorageClient, StorageClientExt,
    TransferOptions, WriteMode, WriteOptions, bytes_stream, check_access_by_listing,
    checked_by_etag,
};
pub use engine::{DEFAULT_CANCEL_GRACE, SyncEngine, default_state_dir};
pub use entry::{ContentHash, Entry, HashKind, Version};
pub use error::{BoxError, Error, Result, SyncError};
pub use identity::{AcceptNewRoot, Location, RootChange, RootIdentity};
pub use ignore_rules::IgnoreRules;
pub use memory::MemoryClient;
pub use mode::{ConflictLoser, ConflictStrategy, InitialSyncPreference, Side, SyncMode};
pub use pair::{DEFAULT_TRASH_KEEP_DAYS, Recovery, SyncOptions, SyncPair};
pub use parallel_read::ParallelReads;
pub use path::RelPath;
pub use progress::{ActionKind, ActionReport, Change, ConflictCause, PlanGroup, ProgressEvent};
pub use stats::SyncStats;
