//! [`ServiceError`]: why a request to the service was refused.

use syncengine_core::SyncError;

/// Why a [`SyncService`](crate::SyncService) call was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A pair of that name is already in the service.
    #[error("a pair named {0:?} is already in the service")]
    Duplicate(String),
    /// No pair of that name is in the service.
    #[error("no pair named {0:?} is in the service")]
    UnknownPair(String),
    /// The new pair's root overlaps a root of a pair already in the service: each would see
    /// the other's writes as changes and trigger it.
    #[error(
        "pair {pair:?} is refused: its root {root} overlaps the root {other_root} of pair \
         {other:?} (the same folder, or one inside the other); each pair's writes would \
         trigger the other"
    )]
    Overlap {
        /// The pair refused.
        pair: String,
        /// Its overlapping root.
        root: String,
        /// The pair already in the service.
        other: String,
        /// That pair's overlapping root.
        other_root: String,
    },
    /// The pair could not be built, or its roots not resolved, when it was added.
    #[error("pair {pair:?} could not be set up: {source}")]
    Setup {
        /// The pair.
        pair: String,
        /// What failed (boxed: the error type stays small).
        #[source]
        source: Box<SyncError>,
    },
    /// `resume_force_once` on a pair that no safety rule stopped: there is nothing to force.
    #[error("pair {0:?} is not stopped by a safety rule; nothing to force")]
    NotStopped(String),
    /// The service's state file could not be read or written.
    #[error("service state file {path}: {source}")]
    State {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The service is shutting down.
    #[error("the service is shutting down")]
    ShutDown,
}
