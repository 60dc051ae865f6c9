//! Tools for testing the engine adversarially (feature `testing`).
//!
//! - [`FaultClient`]: wraps any [`StorageClient`](crate::StorageClient) and injects errors,
//!   transient errors, lost replies, short/corrupted/failing read streams, failing write
//!   bodies, failing and truncated listings and cancellation, from a seeded (reproducible)
//!   schedule or a script of "fault at call N".
//! - [`QuirkClient`]: gives any client case-insensitive names or exclusive file/folder names,
//!   the name rules of real filesystems that `MemoryClient` lacks.
//! - [`Forwarding`] and [`Hooks`]: a test double that forwards every call to an inner client
//!   and overrides only the calls it changes (a barrier that fails, writes counted or lost).
//! - [`HungMount`] (Linux): a real mounted filesystem that never answers, as a hung disk or
//!   network mount.
//!
//! The model-based state-machine test of the engine (`tests/model.rs` in this crate) and the
//! campaign scripts under `scripts/` are built on it.

pub mod fault;
pub mod forwarding;
#[cfg(target_os = "linux")]
pub mod hung_mount;
pub mod quirks;

pub use fault::{BodyEndHook, Fault, FaultClient, FaultConfig, Injected, Op};
pub use forwarding::{Forwarding, Hooks};
#[cfg(target_os = "linux")]
pub use hung_mount::HungMount;
pub use quirks::QuirkClient;
