//! S3, Azure Blob and Google Cloud Storage backends for syncengine, over [`object_store`].
//!
//! One client type, [`S3Client`], serves all three stores (cargo features `s3`, `azure`,
//! `gcs`); [`S3Builder`] configures it from code, from a URL (`s3://bucket/prefix`,
//! `az://container/prefix`, `gs://bucket/prefix`) or from the ecosystem's own environment
//! variables.
//!
//! ```no_run
//! # async fn demo() -> syncengine_core::Result<()> {
//! use std::sync::Arc;
//! use syncengine_backend_s3::S3Builder;
//! use syncengine_core::{StorageClient, StorageClientExt};
//!
//! let client: Arc<dyn StorageClient> = Arc::new(S3Builder::from_env("s3://my-bucket/photos")?.build()?);
//! for entry in client.list_all(None).await? {
//!     println!("{} {} bytes", entry.path, entry.size);
//! }
//! # Ok(()) }
//! ```
//!
//! # Behavior
//! - **Keys** are `prefix/` + the relative path, stored literally: `é`, `~`, `%`, `#`, spaces
//!   and quotes are not percent-encoded, so rclone and the cloud consoles show the same names.
//!   Names with ASCII control characters are refused ([`Error::InvalidPath`](syncengine_core::Error)).
//! - **Uploads** stream. A body that fits in one part (8 MiB by default) is one PUT; a longer
//!   one is a multipart upload with at most `parts_in_flight` parts uploading. Part buffers
//!   (being filled or uploading) of all uploads of a client and its clones share one budget,
//!   [`S3Config::upload_buffer`] (default 32 MiB): an upload reserves a part's worth (a
//!   small file, by its size hint: its size) before it buffers and waits while the budget is
//!   spent, so memory does not grow with the number of transfers in flight. A body error, a server error or a dropped
//!   write future aborts the upload, so no parts remain.
//! - **Content-Type**: every upload (single PUT or multipart) carries one guessed from the
//!   file name's extension (`index.html` → `text/html`), `application/octet-stream` when
//!   unknown, so a site published with the mirror mode serves HTML as HTML. Server-side
//!   copies (renames, the trash) keep the source's.
//! - **Conditional writes**: `WriteMode::Create` and `Update(etag)` map to object_store's
//!   `PutMode::Create`/`Update` for single PUTs. object_store has no conditional multipart
//!   complete, so for multipart bodies the condition is checked with a HEAD before the upload
//!   and again before completing it (a race window of one request). SeaweedFS keeps a
//!   folder after its last file goes and refuses a `Create` PUT of the folder's name; where
//!   S3 refuses one and a HEAD finds no object, the file is written with a plain PUT (a race
//!   window of one request; a folder's files stay), so a folder can become a file.
//! - **Modification times** are written as metadata under rclone's key and format (see
//!   [`mtime`]): S3 `mtime` = decimal seconds, Azure `mtime` = RFC 3339 with nanoseconds,
//!   GCS `mtime` = RFC 3339 (gsutil's `goog-reserved-file-mtime` is read too). Listings do not
//!   carry metadata, so by default entries report the store's Last-Modified time (whole
//!   seconds) and change detection uses the ETag against the base;
//!   [`S3Builder::with_mtime_from_metadata`] reads the metadata instead, at one HEAD per
//!   listed object, and then promises `set_mtime`.
//! - **Hashes**: a single-part S3 ETag is the content's MD5 and is reported as such
//!   (`Capabilities::etag_is_md5`); a multipart ETag (`…-N`) never is, nor any ETag with
//!   `with_etag_is_md5(false)` (`SYNCENGINE_S3_ETAG_IS_MD5=0`), which buckets with SSE-KMS
//!   or SSE-C encryption need. Where it is not declared, the client finds out from its first
//!   single-part upload whose ETag is not the MD5 of what it sent, and from then on (it and
//!   its clones, see [`S3Client::etag_is_md5`]) takes no ETag for a hash; listings made
//!   before that upload still did. Azure ETags are opaque and GCS ones are not MD5s for composite objects (which carry no marker):
//!   Azure and GCS entries carry no hash, and their ETags are version tokens only.
//! - **Copy and rename** are server-side copies (rename = copy + delete). On S3 a copy without
//!   overwrite checks the target with a HEAD first (S3 has no conditional copy that keeps the
//!   MD5 ETag); Azure and GCS enforce it on the server. A rename (the trash move) deletes
//!   only the version it copied: a HEAD checks the version right before the delete, and on
//!   S3 the delete is a `DeleteObject` with `If-Match` (AWS, moto and SeaweedFS honour it);
//!   on Azure and GCS, and on S3 servers that answer it with 501, the delete is
//!   unconditional after the HEAD (a window of one request). A
//!   version another machine uploaded meanwhile stays, nothing is removed, and the rename
//!   fails with [`Error::PreconditionFailed`](syncengine_core::Error) (the copy is then an
//!   extra). Copies over 5 GiB (S3, in `UploadPartCopy` parts) name the source's ETag in
//!   every part and check it again before completing: a source replaced midway aborts the
//!   copy.
//! - **Folder markers** (zero-byte objects named `folder/`, made by the AWS and GCS consoles
//!   and many GUIs, the root prefix's own `prefix/` included) are not listed: they are not
//!   files. The listing reads raw keys (its own `ListObjectsV2` on S3 and GCS, with
//!   `encoding-type=url`; List Blobs on Azure), so a marker is told by its trailing `/` at no
//!   extra cost. Only an Azure client whose credential this crate cannot sign with (one
//!   object_store finds by itself) lists through object_store, which drops the trailing `/`
//!   of listed keys: there each zero-byte object costs one HEAD in a listing to tell a marker
//!   from an empty file of the same name, and a marker next to an object of its name
//!   (`photos` and `photos/`) lists right after it in key order and is left out.
//! - **Keys that cannot be a path here**: an empty segment (`a//b`), a `.` or `..` segment,
//!   a `/` right after the root's prefix, a control character, an object with content whose
//!   key ends in `/`, or a name a server sent unencoded with U+FFFD in place of a character
//!   it could not put in XML. Each is reported as an unknown path
//!   ([`Error::Unlisted`](syncengine_core::Error), under its own name, where it sorts) and
//!   the listing goes on: the engine leaves the object alone, syncs the rest and reports it;
//!   it is never read as another path (`a//b` is not `a/b`).
//! - **Deletes** of missing objects are `Ok` on every store (Azure's 404 included).
//! - **Listing order**: AWS S3, MinIO, moto, Azure and GCS list in byte order, but a client
//!   that encodes `\` (Azure by default) never claims it: encoded names list in the order
//!   of their keys, not of their decoded paths, so the engine sorts. Servers that do
//!   not (SeaweedFS) must be declared with [`S3Builder::with_ordered_listing`]`(false)` (or
//!   `SYNCENGINE_UNORDERED_LISTING=1`): the engine then sorts the listing. Declared ordered
//!   but not ordered, the engine's order check catches the listing out of order before
//!   anything changes; the engine then sorts it, plans again with a note, and remembers it
//!   for the pair (`SyncOptions::sort_listings` sorts from the first run).
//! - **Retries**: object_store retries each HTTP request itself; this crate turns that down
//!   to 2 retries within 30 s (see [`S3Builder::with_retries`]) because the engine retries
//!   whole operations on [`Error::Transient`](syncengine_core::Error) (timeouts, connection
//!   failures, 429 and 5xx). Worst case per operation: engine attempts × 3 requests.
//!
//! # GCS and the emulator
//! object_store talks to GCS through its XML API. The loopback emulator used in tests,
//! fake-gcs-server, only implements the JSON API for writes and rejects object_store's
//! uploads, copies and multipart calls (`400 invalid uploadType`). The test suite therefore
//! runs every read-side case (list, stat, read, ranges, delete, download-direction syncs)
//! against objects seeded through the emulator's JSON API, and reports the write cases as not
//! runnable there (asserting that the emulator really rejects them). Writes to real GCS use
//! the same code path as S3 and Azure.

#[cfg(feature = "s3")]
mod big_copy;
/// Stands in for the S3-only big-object copier when S3 is not built in.
#[cfg(not(feature = "s3"))]
mod big_copy {
    /// Never constructed without the `s3` feature.
    pub(crate) struct BigCopy;
}
#[cfg(feature = "s3")]
mod aws_profile;
#[cfg(feature = "azure")]
mod azure_list;
mod builder;
mod client;
mod config;
mod error;
#[cfg(feature = "gcs")]
mod gcs_list;
pub mod mtime;
mod progress_http;
#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
mod raw_list;
#[cfg(feature = "s3")]
mod split_list;
#[cfg(feature = "s3")]
mod uploads;

#[cfg(feature = "s3")]
pub use aws_profile::AwsShared;
pub use builder::S3Builder;
pub use client::{DEFAULT_TRANSFERS, S3Client};
pub use config::{
    COPY_OBJECT_LIMIT, DEFAULT_LIST_CONCURRENCY, DEFAULT_PART_SIZE, DEFAULT_UPLOAD_BUFFER,
    S3Config, Secret, StoreKind,
};

/// The URL schemes this crate serves: `s3`, `az`, `gs`.
pub const SCHEMES: [&str; 3] = ["s3", "az", "gs"];
