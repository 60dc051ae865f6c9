#![doc = include_str!("../README.md")]

pub use syncengine_core::*;

pub mod config;
pub mod location;

/// The local-disk backend (feature `local`, on by default).
#[cfg(feature = "local")]
pub use syncengine_backend_local as local;

#[cfg(feature = "local")]
pub use syncengine_backend_local::LocalClient;

/// S3, Azure Blob and Google Cloud Storage through `object_store` (features `s3`, `azure`,
/// `gcs`).
#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
pub use syncengine_backend_s3 as s3;

/// The WebDAV backend (feature `webdav`).
#[cfg(feature = "webdav")]
pub use syncengine_backend_webdav as webdav;

/// The SFTP backend (feature `sftp`).
#[cfg(feature = "sftp")]
pub use syncengine_backend_sftp as sftp;

/// Keeps many pairs in sync continuously: watched local roots, polled remote roots, pause and
/// resume, back-off and safety stops per pair (feature `service`, on by default).
#[cfg(feature = "service")]
pub use syncengine_service as service;
