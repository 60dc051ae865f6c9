//! The shared conformance suite: every promise of the [`StorageClient`] contract as a test case
//! any backend can run (feature `conformance`).
//!
//! Each case is a plain `pub async fn case(client: &dyn StorageClient)` that expects an
//! **empty** client (rooted at a fresh random location), exercises one part of the contract and
//! panics with a message naming the broken promise. Cases branch on
//! [`Capabilities`](crate::Capabilities), never on backend names, and print to stderr when they
//! skip something for lack of a capability.
//!
//! A backend's test file is a few lines: a factory that returns a fresh client on a fresh root,
//! and [`conformance_tests!`](crate::conformance_tests), which expands to one `#[tokio::test]`
//! per case (so failures are reported by name and cases run in parallel):
//!
//! ```no_run
//! use std::sync::Arc;
//! use syncengine_core::{MemoryClient, StorageClient};
//!
//! async fn fresh() -> Arc<dyn StorageClient> {
//!     Arc::new(MemoryClient::new())
//! }
//!
//! syncengine_core::conformance_tests!(fresh);
//! # fn main() {}
//! ```
//!
//! The factory may also return a `(client, guard)` pair; the guard (a `tempfile::TempDir`, a
//! server handle…) lives until the case ends:
//!
//! ```no_run
//! use std::sync::Arc;
//! use syncengine_core::{MemoryClient, StorageClient};
//!
//! async fn fresh() -> (Arc<dyn StorageClient>, tempfile::TempDir) {
//!     let dir = tempfile::tempdir().unwrap();
//!     // A disk backend roots its client in `dir`, e.g. `LocalClient::new(dir.path())`
//!     // (see `crates/backend-local/tests/conformance.rs`).
//!     (Arc::new(MemoryClient::new()), dir)
//! }
//! syncengine_core::conformance_tests!(fresh);
//! # fn main() {}
//! ```
//!
//! The test crate needs `tokio` (with `macros` and `rt`) as a dev-dependency.

// This module is test code shipped as a library: panicking on a broken promise is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod recovery;
pub mod scenarios;
mod storage;

use std::sync::Arc;

pub use storage::*;

use crate::client::StorageClient;

/// What a conformance factory may return: something that yields the client under test.
///
/// Implemented for `Arc<dyn StorageClient>`, `Arc<C>`, `Box<C>` and `(client, guard)` pairs,
/// where the guard is kept alive for the duration of the case, and for `Option` of any of
/// them: a factory returns `None` when its server is not running, and the case then reports
/// that it skipped (the factory decides; in CI it should panic instead).
pub trait AsClient {
    /// Returns the client under test.
    fn as_client(&self) -> &dyn StorageClient;

    /// Returns the client under test, or `None` when the case must be skipped.
    fn try_as_client(&self) -> Option<&dyn StorageClient> {
        Some(self.as_client())
    }
}

impl<C: AsClient> AsClient for Option<C> {
    fn as_client(&self) -> &dyn StorageClient {
        match self {
            Some(c) => c.as_client(),
            None => panic!("no client: the factory returned None (server not running?)"),
        }
    }

    fn try_as_client(&self) -> Option<&dyn StorageClient> {
        self.as_ref().map(AsClient::as_client)
    }
}

impl AsClient for Arc<dyn StorageClient> {
    fn as_client(&self) -> &dyn StorageClient {
        self.as_ref()
    }
}

impl<C: StorageClient> AsClient for Arc<C> {
    fn as_client(&self) -> &dyn StorageClient {
        self.as_ref()
    }
}

impl<C: StorageClient> AsClient for Box<C> {
    fn as_client(&self) -> &dyn StorageClient {
        self.as_ref()
    }
}

impl AsClient for Box<dyn StorageClient> {
    fn as_client(&self) -> &dyn StorageClient {
        self.as_ref()
    }
}

impl<C: AsClient, G> AsClient for (C, G) {
    fn as_client(&self) -> &dyn StorageClient {
        self.0.as_client()
    }
}

/// Expands to one `#[tokio::test]` per conformance case, each on a fresh client.
///
/// The argument is an async factory — a function or closure callable as `factory().await` —
/// returning anything that implements [`AsClient`](crate::conformance::AsClient), typically
/// `Arc<dyn StorageClient>` rooted at a fresh random location, or `(client, guard)`. To run
/// the suite twice in one file (e.g. over two configurations), invoke the macro in two modules.
///
/// ```no_run
/// async fn fresh() -> std::sync::Arc<dyn syncengine_core::StorageClient> {
///     std::sync::Arc::new(syncengine_core::MemoryClient::new())
/// }
/// syncengine_core::conformance_tests!(fresh);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        // The one list of cases: add a new case here and in `conformance::storage`.
        $crate::__conformance_tests_expand!(
            $factory;
            round_trip_empty,
            round_trip_one_byte,
            round_trip_multi_mib,
            overwrite_replaces,
            stat_matches_listing,
            range_reads,
            canonical_order_hostile_names,
            unholdable_names_are_refused_or_read_back,
            canonical_order_nested,
            prefix_boundaries,
            missing_paths,
            directory_is_not_a_file,
            write_creates_parents,
            emptied_directory_becomes_a_file,
            write_create_mode,
            write_update_mode,
            write_if_unchanged_mode,
            write_sets_mtime,
            failed_write_keeps_old_content,
            cancelled_write_keeps_old_content,
            trailing_body_error_aborts_write,
            preserve_keeps_a_copy,
            delete_is_idempotent,
            copy_semantics,
            rename_semantics,
            etag_changes_on_rewrite,
            file_id_survives_rename,
            birth_time_tells_renamed_from_new,
            etag_md5_is_the_content_md5,
        );
    };
}

/// Implementation detail of [`conformance_tests!`](crate::conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests_expand {
    ($factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = ($factory)().await;
                let Some(client) = $crate::conformance::AsClient::try_as_client(&fixture) else {
                    eprintln!("skipped {}: the factory has no client (server not running)", stringify!($case));
                    return;
                };
                $crate::conformance::$case(client).await;
            }
        )+
    };
}
