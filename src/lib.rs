#![doc = include_str!("../README.md")]

pub use syncengine_core::*;

/// The local-disk backend (feature `local`, on by default).
#[cfg(feature = "local")]
pub use syncengine_backend_local as local;

#[cfg(feature = "local")]
pub use syncengine_backend_local::LocalClient;
