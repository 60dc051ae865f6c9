//! The [`StorageClient`] contract and the [`StorageClientExt`] conveniences.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};

use crate::capabilities::Capabilities;
use crate::cleanup::{CleanupOptions, CleanupReport};
use crate::entry::{ContentHash, Entry, Version};
use crate::error::{Error, Result};
use crate::identity::Location;
use crate::path::RelPath;
use crate::verify::{Expected, verify_body};

/// A stream of file content, chunk by chunk. Nothing in the engine buffers a whole file.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// A listing: entries in canonical order (see [`StorageClient::list`]).
pub type EntryStream = BoxStream<'static, Result<Entry>>;

/// The folders a listing may leave unread (see [`StorageClient::list_pruned`]): true for a
/// folder whose contents the caller does not want.
pub type PruneFn = std::sync::Arc<dyn Fn(&RelPath) -> bool + Send + Sync>;

/// How a write treats an existing file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteMode {
    /// Replace whatever is there.
    #[default]
    Overwrite,
    /// Fail with [`Error::AlreadyExists`] if the path exists.
    Create,
    /// Replace only the version whose etag is given; otherwise
    /// [`Error::PreconditionFailed`].
    Update(String),
    /// Replace only while the file at the path is still the given version (see
    /// [`Version::matches`]); a missing file or another version gives
    /// [`Error::PreconditionFailed`] and the write leaves it as it is.
    ///
    /// For backends without version tokens (local disk, SFTP). The check is made after the
    /// body is complete, right before the new content is put in place, so a file the user
    /// saved while the body was being transferred is never replaced. (What remains is the
    /// moment between that check and the rename that commits; a backend that cannot check
    /// at all answers [`Error::Unsupported`].)
    IfUnchanged(Version),
}

/// Options for [`StorageClient::read_opts`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadOptions {
    /// Byte range to read; the whole file when `None`. A range past the end is clamped.
    pub range: Option<Range<u64>>,
    /// Read only while the file is still this version: a backend whose
    /// [`Capabilities::parallel_reads`] is set checks it when the read starts (an ETag
    /// condition on the request, or the size and mtime of the file it opened) and fails with
    /// [`Error::PreconditionFailed`] for another version, or with [`Error::Unsupported`] when
    /// it cannot tell versions of this file apart (no ETag listed). Other backends ignore it.
    /// The engine sets it on every range of a file it reads in parallel
    /// ([`crate::parallel_read`]), so the ranges of one copy all come from one version.
    pub version: Option<Version>,
}

impl ReadOptions {
    /// Reads only `range`.
    pub fn with_range(mut self, range: Range<u64>) -> Self {
        self.range = Some(range);
        self
    }

    /// Reads only while the file is still `version` (see [`ReadOptions::version`]).
    pub fn with_version(mut self, version: Version) -> Self {
        self.version = Some(version);
        self
    }
}

/// Options for [`StorageClient::write_opts`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOptions {
    /// What to do about an existing file.
    pub mode: WriteMode,
    /// Modification time to record, where the backend can (see
    /// [`Capabilities::set_mtime`](crate::Capabilities::set_mtime)).
    pub mtime: Option<SystemTime>,
    /// Expected size of the body, when known; lets object stores choose single PUT or multipart.
    pub size_hint: Option<u64>,
    /// Unix permission bits for a file this write creates, where the backend keeps them
    /// (local disk, SFTP; others ignore them): the engine passes the source's
    /// [`Entry::permissions`]. Only `bits & 0o777` is used (never setuid, setgid or sticky),
    /// less the destination's umask, and the file (its temporary name included) never has
    /// more than that at any moment. `None`: the backend's default for a new file.
    ///
    /// A write that replaces an existing file keeps that file's permission bits instead.
    pub permissions: Option<u32>,
    /// Unix permission bits for the folders this write has to create, where the backend
    /// keeps them: entry `i` is for the `i`-th folder above the file (`a`, then `a/b` for
    /// `a/b/f`), `None` or a missing entry for the backend's default. The engine passes the
    /// source's folder bits ([`StorageClient::folder_permissions`]), so a private folder
    /// stays private. Only `bits & 0o777` is used, the owner's `rwx` always added (the
    /// engine writes into the folder), less the destination's umask. Folders that exist
    /// already are left as they are.
    pub folder_permissions: Vec<Option<u32>>,
}

impl WriteOptions {
    /// Sets the write mode.
    pub fn with_mode(mut self, mode: WriteMode) -> Self {
        self.mode = mode;
        self
    }
    /// Sets the modification time to record.
    pub fn with_mtime(mut self, mtime: SystemTime) -> Self {
        self.mtime = Some(mtime);
        self
    }
    /// Sets the expected size.
    pub fn with_size_hint(mut self, size: u64) -> Self {
        self.size_hint = Some(size);
        self
    }
    /// Sets the permission bits of a file the write creates (see
    /// [`WriteOptions::permissions`]).
    pub fn with_permissions(mut self, bits: u32) -> Self {
        self.permissions = Some(bits);
        self
    }
    /// Sets the permission bits of the folders the write creates (see
    /// [`WriteOptions::folder_permissions`]).
    pub fn with_folder_permissions(mut self, bits: Vec<Option<u32>>) -> Self {
        self.folder_permissions = bits;
        self
    }
    /// The bits to create the `depth`-th folder above the written file with (see
    /// [`WriteOptions::folder_permissions`]): the requested ones, owner `rwx` added, or
    /// `None` for the backend's default.
    pub fn folder_mode(&self, depth: usize) -> Option<u32> {
        self.folder_permissions
            .get(depth)
            .copied()
            .flatten()
            .map(|bits| (bits & 0o777) | 0o700)
    }

    /// For backends that compare version tokens (ETags) themselves: turns
    /// [`WriteMode::IfUnchanged`] into [`WriteMode::Update`] with the version's ETag, so the
    /// server checks it when the write commits.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the version has no ETag to compare.
    pub fn by_etag(mut self, backend: &'static str) -> Result<Self> {
        if let WriteMode::IfUnchanged(version) = &self.mode {
            let Some(etag) = version.etag.clone() else {
                return Err(Error::Unsupported {
                    backend,
                    operation: "a checked replace of a file listed without an ETag",
                });
            };
            self.mode = WriteMode::Update(etag);
        }
        Ok(self)
    }
}

/// Options for [`StorageClient::delete_opts`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteOptions {
    /// Report a missing file as [`Error::NotFound`] instead of `Ok`, where the backend can
    /// tell (its delete fails on a missing file: local disk, SFTP, WebDAV, memory). A
    /// backend that cannot (S3's `DeleteObject` answers alike either way) returns `Ok`. The
    /// engine sets it for deletes without a trash, so a file deleted by someone else between
    /// its check and the delete is not counted as the engine's delete.
    pub report_missing: bool,
    /// Delete only if the file is still this version ([`Version::matches`]), checked by the
    /// backend right before its delete where it can (local disk: in the file's folder, just
    /// before the unlink); another version gives [`Error::PreconditionFailed`] and stays. A
    /// backend that cannot check ignores it: the engine checks the file before it asks for
    /// the delete anyway, and this only narrows the moment between the two.
    pub if_version: Option<Version>,
}

impl DeleteOptions {
    /// Sets [`report_missing`](DeleteOptions::report_missing).
    pub fn with_report_missing(mut self, report: bool) -> Self {
        self.report_missing = report;
        self
    }

    /// Sets [`if_version`](DeleteOptions::if_version).
    pub fn with_if_version(mut self, version: Version) -> Self {
        self.if_version = Some(version);
        self
    }
}

/// Options for [`StorageClient::copy_opts`] and [`StorageClient::rename_opts`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferOptions {
    /// Replace an existing target. When false an existing target gives
    /// [`Error::AlreadyExists`].
    pub overwrite: bool,
}

impl TransferOptions {
    /// Sets whether an existing target is replaced.
    pub fn with_overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }
}

/// A storage location the engine can sync: local disk, a bucket prefix, a WebDAV collection…
///
/// A client is rooted somewhere; every path it takes or returns is a [`RelPath`] relative to
/// that root. Implementations must be cheap to share (`Arc<dyn StorageClient>`); every
/// returned future and stream is `Send + 'static`.
///
/// The conformance suite (`syncengine_core::conformance`, feature `conformance`) has a case
/// for every promise below; a backend runs it to prove it keeps them.
#[async_trait]
pub trait StorageClient: Send + Sync + fmt::Debug + fmt::Display + 'static {
    /// Short backend name used in errors and logs, e.g. `local`, `s3`, `memory`.
    fn backend(&self) -> &'static str;

    /// Facts about this client. Must not change over the client's life.
    fn capabilities(&self) -> Capabilities;

    /// Where this client's root is, resolved to what selects the storage: scheme, endpoint
    /// `host:port`, bucket or container (and account), prefix; `host:port` and canonical path
    /// for SFTP and WebDAV; the canonical path on local disk. The engine builds the pair id
    /// from it, so it must name everything that could put another storage behind the same
    /// root, and nothing that can change while the storage stays (credentials, timeouts):
    /// rotating a key keeps the pair and its base.
    ///
    /// The default is the client's `Display` form under the scheme [`backend`](Self::backend);
    /// every backend of this project resolves its own.
    ///
    /// # Errors
    /// The backend's error when resolving needs the server and fails (SFTP asks the server
    /// for the canonical path).
    async fn location(&self) -> Result<Location> {
        Ok(Location::new(self.backend(), "", self.to_string()))
    }

    /// A persistent id of the volume that holds the root (local disk: the filesystem UUID),
    /// or `None` where the backend has none. The engine records it as the root's identity
    /// only where it cannot write the root's id file (a read-only root); a device number is
    /// never such an id (it changes across reboots and hot-plugs).
    ///
    /// # Errors
    /// The backend's error when asking fails.
    async fn volume_id(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// Checks once, before a run reads anything else, that the root can be reached and read
    /// with the credentials given: the engine turns a failure into
    /// [`SyncError::Unreachable`](crate::SyncError::Unreachable) (CLI exit 4), naming the side,
    /// instead of a first failing request somewhere later (`permission denied: .syncignore`).
    ///
    /// A root folder that does not exist yet is reachable (a pair's first run fills it); a
    /// missing bucket or container is not. The default reads the first item of the root's
    /// listing, with every folder pruned (nothing below the root is read: not the engine's
    /// own folder, whose stale temps only the engine's pruned listing may note): a missing
    /// root ([`Error::NotFound`]) or an unreadable entry ([`Error::Unlisted`], which the
    /// listing reports in its place) passes, any other error fails. Backends whose "not
    /// found" can also mean a missing bucket, or that have a cheaper probe (one key,
    /// `PROPFIND` depth 0, a `stat` of the root), override it.
    ///
    /// # Errors
    /// The backend's error, with the server's own reason where it gave one.
    async fn check_access(&self) -> Result<()> {
        check_access_by_listing(self).await
    }

    /// Whether the root folder exists. A missing root is not an error of its own (a pair's
    /// first run may create the receiving side), but the engine refuses a missing root the
    /// mode reads from, and a missing root of a pair that synced before (an unmounted disk, a
    /// typo): see [`SyncError::MissingRoot`](crate::SyncError::MissingRoot).
    ///
    /// Object stores have no folders: their root is the bucket or container, which
    /// [`StorageClient::check_access`] already requires, and a prefix with no objects exists
    /// (it is empty): the default says yes for a client without
    /// [`Capabilities::real_directories`]. For others it reads the first item of the root's
    /// listing with every folder pruned: [`Error::NotFound`] there means a missing root.
    /// Backends whose listing of a missing root is empty (local disk, SFTP, WebDAV) override it
    /// with a look at the root itself.
    ///
    /// # Errors
    /// Any other error of that listing.
    async fn root_exists(&self) -> Result<bool> {
        if !self.capabilities().real_directories {
            return Ok(true);
        }
        let mut listing = self.list_pruned(None, Arc::new(|_: &RelPath| true));
        match listing.next().await {
            Some(Err(e)) if e.is_not_found() => Ok(false),
            Some(Err(e)) if !e.is_unlisted() => Err(e),
            _ => Ok(true),
        }
    }

    /// How many entries this client's listings have left out on purpose so far, counting
    /// since the client was created. The engine reads it before and after listing to report
    /// them; backends that never skip keep the default. Paths a listing could not see are
    /// not skipped: they are reported as [`Error::Unlisted`] items
    /// (see [`StorageClient::list`]).
    fn skipped_count(&self) -> u64 {
        0
    }

    /// Makes every file this client has written so far durable: after it returns, a power
    /// loss cannot take them back.
    ///
    /// The engine calls it before it records completed copies in the base, so the base never
    /// claims a file that could still vanish or come back empty. Backends whose writes are
    /// durable when they return (remote servers answer after storing) keep the default,
    /// which does nothing. Local disk flushes the filesystem once here instead of once per
    /// file.
    ///
    /// # Errors
    /// The backend's error when the flush fails; the engine then records nothing.
    async fn sync_written(&self) -> Result<()> {
        Ok(())
    }

    /// The Unix permission bits of the folder at `path`, where the backend keeps them (local
    /// disk); `None` (the default) where it has none, or when `path` is no folder here. The
    /// engine gives them to the folders a copy creates on the other side
    /// ([`WriteOptions::folder_permissions`]). Only new folders get them: a later change of
    /// a folder's bits is not synced, as for files.
    ///
    /// # Errors
    /// The backend's error when asking fails.
    async fn folder_permissions(&self, path: &RelPath) -> Result<Option<u32>> {
        let _ = path;
        Ok(None)
    }

    /// The folder on this machine's filesystem that the client is rooted at, for clients of
    /// local disk; `None` (the default) for everything else.
    ///
    /// The engine uses it to keep its own state directory out of the sync when that lies
    /// inside a synced root (the default state directory is under the home folder).
    fn local_root(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// Removes the stale temp files (see
    /// [`is_stale_temp`](crate::ignore_rules::is_stale_temp)) this client's listings came
    /// across, and returns how many it removed.
    ///
    /// Listings only note such files; the engine calls this after a run that was not a dry
    /// run, so a dry run removes nothing. Only files in the exact temp format and untouched
    /// for [`STALE_TEMP_AGE`](crate::ignore_rules::STALE_TEMP_AGE) are removed: a younger
    /// one may be another machine's write in progress. Backends that write no temp files
    /// (object stores stage uploads as multipart uploads) keep the default, which does
    /// nothing.
    ///
    /// # Errors
    /// The backend's error for a removal that failed; the engine reports it as a warning.
    async fn remove_stale_temps(&self) -> Result<u64> {
        Ok(0)
    }

    /// Finds, and unless [`CleanupOptions::dry_run`] removes, what killed or interrupted
    /// writes left under this client's root, older than [`CleanupOptions::older_than`]:
    ///
    /// - backends that write through temp files (local disk, SFTP, WebDAV): the engine's temp
    ///   files, only in the exact format
    ///   [`temp_file_name`](crate::ignore_rules::temp_file_name) makes (a user file that only
    ///   resembles it stays), never inside a trash folder (`.syncengine/trash/`, pruned by
    ///   age by the engine itself); see [`clean_up_temps`](crate::cleanup::clean_up_temps);
    /// - S3: multipart uploads under the root's prefix that were started and never completed
    ///   (`ListMultipartUploads`, then `AbortMultipartUpload`).
    ///
    /// Nothing else is touched: no user file, no trash, no state. The default finds nothing
    /// and returns an empty report: right for a backend that leaves no such garbage (the
    /// in-memory client; Azure and GCS, whose uncommitted uploads the service expires by
    /// itself). The `syncengine cleanup URL` command calls it.
    ///
    /// ```
    /// # async fn demo(client: &dyn syncengine_core::StorageClient) -> syncengine_core::Result<()> {
    /// use std::time::Duration;
    /// use syncengine_core::cleanup::CleanupOptions;
    ///
    /// let report = client.clean_up(&CleanupOptions::new(Duration::from_secs(86_400))).await?;
    /// for leftover in &report.found {
    ///     println!("removed {leftover}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// A failure to find the leftovers (a listing that failed): nothing was removed then. A
    /// removal that fails is reported in [`CleanupReport::failed`], and the others are still
    /// tried.
    async fn clean_up(&self, opts: &CleanupOptions) -> Result<CleanupReport> {
        Ok(CleanupReport::empty(opts))
    }

    /// Waits until the clean-up work this client started in the background has finished, or
    /// for `limit` at most: the S3 client aborts the multipart upload of a write whose future
    /// was dropped (a cancelled run) from a spawned task, which a program that exits or drops
    /// its runtime right after the run would otherwise cut short, leaving the upload's parts
    /// stored (and billed); the WebDAV client deletes again the temporary files of uploads it
    /// gave up on, which the server may still have completed after the first delete. The
    /// engine calls it on both sides before a run returns, cancelled or not. The default has
    /// nothing to wait for.
    async fn settle(&self, limit: std::time::Duration) {
        let _ = limit;
    }

    /// Returns the modification time recorded with the file (the one
    /// [`WriteOptions::mtime`] set), for a file as listed.
    ///
    /// Listings of some backends carry another time: object stores list the upload time and
    /// keep the file's own time in metadata that only a per-object request returns. The engine
    /// calls this only where the real time matters — for each file it copies (so the copy
    /// keeps the original time) and for both versions of a `NEWEST_WINS` conflict — never per
    /// listed file. The default returns the listed time, which is right for backends whose
    /// listings carry it.
    ///
    /// # Errors
    /// As [`StorageClient::stat`].
    async fn recorded_mtime(&self, listed: &Entry) -> Result<Option<SystemTime>> {
        Ok(listed.mtime)
    }

    /// Lists every file strictly below `prefix` (the whole root when `None`), recursively.
    ///
    /// # Behavior
    /// - Yields files only; directories are implied.
    /// - In canonical (byte-wise) order of the path when
    ///   [`Capabilities::ordered_listing`] is true; otherwise in any order, each path once.
    /// - `prefix` is a directory: `a` lists `a/x` but neither `a` itself nor `ab`.
    /// - A missing prefix lists nothing (not an error).
    /// - The backend's own temporary files (in-progress atomic writes) are never listed.
    /// - **Unknown paths are reported, never left out silently.** A path the listing cannot
    ///   see into — a symlink (never followed), a special file, a folder that cannot be read,
    ///   answers an error, or vanished or changed while it was walked, a name that cannot be
    ///   decoded — is yielded as an `Err(`[`Error::Unlisted`]`)` item
    ///   at its place in canonical order ([`Error::unlisted_key`](crate::Error::unlisted_key))
    ///   and the listing **goes on**. Leaving such a path out would make its files look
    ///   deleted, and the engine would delete the other side's copies. Nothing at or below an
    ///   unlisted path is listed.
    ///
    /// # Errors
    /// Any other failure is yielded as an `Err` item, after which the stream ends: a failure
    /// of the root itself, of the transport, or of a flat (paginated) listing. The engine
    /// treats a listing that failed as an error for the whole run: nothing is deleted on its
    /// basis.
    fn list(&self, prefix: Option<&RelPath>) -> EntryStream;

    /// Lists like [`list`](StorageClient::list), but need not read the folders for which
    /// `prune` returns true: nothing at or below such a folder needs to be listed, and a
    /// folder that cannot be read is not reported when it is pruned.
    ///
    /// The engine prunes the folders its ignore rules exclude and its own `.syncengine/`
    /// folders, so an excluded folder that is huge, unreadable or on a dead mount costs
    /// nothing and blocks nothing. Entries below a pruned folder that a backend lists anyway
    /// are dropped by the caller: the default simply calls `list`. Backends that walk a tree
    /// of folders (local disk, SFTP) skip pruned folders unread.
    fn list_pruned(&self, prefix: Option<&RelPath>, prune: PruneFn) -> EntryStream {
        let _ = prune;
        self.list(prefix)
    }

    /// Returns the entry for one file.
    ///
    /// # Errors
    /// [`Error::NotFound`] when no file is at `path` (a directory is
    /// not a file).
    async fn stat(&self, path: &RelPath) -> Result<Entry>;

    /// Opens the content of `path` (or a byte range of it) as a stream.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the file does not exist. Errors during
    /// streaming are yielded as `Err` items.
    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream>;

    /// Writes `body` to `path` atomically and returns the new entry.
    ///
    /// # Behavior
    /// - Atomic: readers see the old content or the new, never a part. A failed or cancelled
    ///   write (the future dropped) leaves the old content, and no temporary file visible in
    ///   listings.
    /// - Missing parent directories are created.
    /// - [`WriteOptions::mtime`] is recorded where [`Capabilities::set_mtime`] says so.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] for [`WriteMode::Create`] on an
    /// existing file; [`Error::PreconditionFailed`] for
    /// [`WriteMode::Update`] when the etag does not match (or the file is missing), and for
    /// [`WriteMode::IfUnchanged`] when the file is missing or another version; an error
    /// yielded by `body` aborts the write and is returned.
    async fn write_opts(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry>;

    /// Deletes the file at `path`.
    ///
    /// # Behavior
    /// - Deleting a missing file is `Ok` (idempotent: re-planning after a crash is safe),
    ///   unless [`DeleteOptions::report_missing`] asks for `NotFound` and the backend can
    ///   tell.
    /// - On backends with [`Capabilities::real_directories`], parent directories the delete
    ///   left empty are removed, up to (not including) the root.
    async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> Result<()>;

    /// Copies `from` to `to` on the server, without moving bytes through the client.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when
    /// [`Capabilities::server_side_copy`] is false; `NotFound` for a missing source;
    /// `AlreadyExists` when `to` exists and `opts.overwrite` is false.
    async fn copy_opts(&self, from: &RelPath, to: &RelPath, opts: TransferOptions)
    -> Result<Entry>;

    /// Moves `from` to `to`, natively where [`Capabilities::native_rename`] says so, else by
    /// server-side copy and delete.
    ///
    /// # Behavior
    /// - On backends with [`Capabilities::real_directories`], directories the move left empty
    ///   are removed, up to (not including) the root, as [`delete_opts`](Self::delete_opts)
    ///   does: a file can then take an emptied folder's name (a folder replaced by a file).
    ///
    /// # Errors
    /// `NotFound` for a missing source; `AlreadyExists` when `to` exists and
    /// `opts.overwrite` is false; `Unsupported` when the backend can do neither.
    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry>;

    /// This client as [`Any`](std::any::Any), for a backend's
    /// [`copy_from_same_store`](Self::copy_from_same_store) to recognise another client of its
    /// own kind. `None` (the default): the client takes part in no same-store copy. A wrapper
    /// that changes no content may forward its inner client's answer.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// Writes the version `listed` of `from` on `source` (another client) to `to` on this
    /// client without moving its bytes through this machine, where both are clients of the
    /// same store with the same credentials (an S3 `CopyObject` between two buckets or
    /// prefixes of one endpoint). The engine tries it before it streams a file from one side
    /// to the other.
    ///
    /// # Behavior
    /// - `Ok(None)` (the default): not possible here; nothing was written, and the caller
    ///   streams the file instead.
    /// - `Ok(Some(entry))`: `to` now holds exactly the version `listed` (a source changed
    ///   since it was listed is never copied), with `opts.mtime` recorded as
    ///   [`write_opts`](Self::write_opts) would, and `entry` is the new file.
    /// - `opts.mode` is honoured as [`write_opts`](Self::write_opts) honours it, with the
    ///   same errors; a mode the server cannot check in a copy gives `Ok(None)`.
    ///
    /// # Errors
    /// As [`write_opts`](Self::write_opts); `PreconditionFailed` also when the source is no
    /// longer the version `listed`.
    async fn copy_from_same_store(
        &self,
        source: &dyn StorageClient,
        from: &RelPath,
        listed: &Entry,
        to: &RelPath,
        opts: &WriteOptions,
    ) -> Result<Option<Entry>> {
        let _ = (source, from, listed, to, opts);
        Ok(None)
    }

    /// Keeps the current version of the file at `from` also at `to`, as cheaply as the
    /// backend can: a hard link where it has them, else a server-side copy, else a copy
    /// through the client. `from` is left as it is.
    ///
    /// The engine calls it before it replaces or deletes a file, to keep the old version in
    /// the trash (or under a conflict name) while the path itself is never absent: the old
    /// version stays at `from` until an atomic write replaces it.
    ///
    /// # Behavior
    /// - Never replaces anything: `to` must not exist.
    /// - Missing parent directories of `to` are created.
    /// - After it returns, `to` holds what `from` held, and an atomic write or a rename onto
    ///   `from` later leaves `to` as it is. (A hard link shares the file: an edit made *in
    ///   place* to `from` shows at `to` too — the edit is kept, not lost.)
    /// - The default makes a server-side copy ([`copy_opts`](StorageClient::copy_opts)
    ///   without overwrite) and, where that is `Unsupported`, streams the file through the
    ///   client into a create-only write, checked against the size `stat` reported.
    ///
    /// # Errors
    /// `NotFound` for a missing `from`; `AlreadyExists` when `to` exists.
    async fn preserve(&self, from: &RelPath, to: &RelPath) -> Result<Entry> {
        preserve_by_copy(self, from, to).await
    }
}

/// Conveniences over [`StorageClient`], available on every client.
#[async_trait]
pub trait StorageClientExt: StorageClient {
    /// Reads the whole file.
    async fn read(&self, path: &RelPath) -> Result<ByteStream> {
        self.read_opts(path, ReadOptions::default()).await
    }

    /// Reads the whole file into memory. For tests and small files only.
    async fn read_to_bytes(&self, path: &RelPath) -> Result<Bytes> {
        let chunks: Vec<Bytes> = self.read(path).await?.try_collect().await?;
        Ok(chunks.concat().into())
    }

    /// Writes `data` with default options (overwrite).
    async fn put(&self, path: &RelPath, data: Bytes) -> Result<Entry> {
        let size = data.len() as u64;
        self.write_opts(
            path,
            bytes_stream(data),
            WriteOptions::default().with_size_hint(size),
        )
        .await
    }

    /// Deletes with default options.
    async fn delete(&self, path: &RelPath) -> Result<()> {
        self.delete_opts(path, DeleteOptions::default()).await
    }

    /// Renames, failing if the target exists.
    async fn rename(&self, from: &RelPath, to: &RelPath) -> Result<Entry> {
        self.rename_opts(from, to, TransferOptions::default()).await
    }

    /// Computes the MD5 of a file by streaming it.
    async fn md5(&self, path: &RelPath) -> Result<ContentHash> {
        let mut stream = self.read(path).await?;
        let mut hasher = Md5::new();
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk?);
        }
        Ok(ContentHash::Md5(hasher.finalize().into()))
    }

    /// Computes the MD5 of the listed `entry` by streaming it, checked against its listed
    /// size: a read that ends early or runs long is an error, never the hash of a part (a
    /// wrong hash would be compared, and kept in the base, as if it were the file's).
    async fn md5_of(&self, entry: &Entry) -> Result<ContentHash> {
        let body = self.read(&entry.path).await?;
        let mut stream = verify_body(
            body,
            Expected::size(entry.size),
            self.backend(),
            entry.path.as_str(),
        );
        let mut hasher = Md5::new();
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk?);
        }
        Ok(ContentHash::Md5(hasher.finalize().into()))
    }

    /// Collects a whole listing. For tests and small trees only. Stops with the error at the
    /// first [`Error::Unlisted`] item, as at any other error.
    async fn list_all(&self, prefix: Option<&RelPath>) -> Result<Vec<Entry>> {
        self.list(prefix).try_collect().await
    }
}

impl<T: StorageClient + ?Sized> StorageClientExt for T {}

/// The default [`StorageClient::check_access`]: the first item of the root's listing, every
/// folder pruned; a missing root or an unreadable entry passes, any other error fails. For
/// backends that override the check only to explain its failure better.
///
/// # Errors
/// The listing's error, as the default check returns it.
pub async fn check_access_by_listing<C: StorageClient + ?Sized>(client: &C) -> Result<()> {
    let mut listing = client.list_pruned(None, Arc::new(|_: &RelPath| true));
    match listing.next().await {
        Some(Err(e)) if !e.is_not_found() && !e.is_unlisted() => Err(e),
        _ => Ok(()),
    }
}

/// The default [`StorageClient::preserve`]: a server-side copy without overwrite, else a
/// copy through the client, checked against the size (and MD5, where listed) of `from`.
///
/// Backends that override `preserve` with something cheaper (a hard link) call this where
/// that is not possible.
///
/// # Errors
/// As [`StorageClient::preserve`].
pub async fn preserve_by_copy<C: StorageClient + ?Sized>(
    client: &C,
    from: &RelPath,
    to: &RelPath,
) -> Result<Entry> {
    match client.copy_opts(from, to, TransferOptions::default()).await {
        Err(Error::Unsupported { .. }) => {}
        other => return other,
    }
    let listed = client.stat(from).await?;
    let mtime = client.recorded_mtime(&listed).await?;
    let body = client.read_opts(from, ReadOptions::default()).await?;
    let body = verify_body(
        body,
        Expected::of(&listed, &client.capabilities()),
        client.backend(),
        from.as_str(),
    );
    let mut opts = WriteOptions::default()
        .with_mode(WriteMode::Create)
        .with_size_hint(listed.size);
    opts.mtime = mtime;
    // The kept copy is as private as the file.
    opts.permissions = listed.permissions;
    client.write_opts(to, body, opts).await
}

/// The permission bits of the folders above `path` on `source` (`a`, then `a/b` for
/// `a/b/f`), for the folders a copy of it creates on the other side
/// ([`WriteOptions::folder_permissions`]). Empty when the source keeps none; a folder that
/// cannot be asked about gets the destination's default.
pub(crate) async fn source_folder_permissions(
    source: &dyn StorageClient,
    path: &RelPath,
) -> Vec<Option<u32>> {
    let mut bits = Vec::new();
    let text = path.as_str();
    for (at, _) in text.match_indices('/') {
        let Ok(folder) = RelPath::new(&text[..at]) else {
            break;
        };
        match source.folder_permissions(&folder).await {
            Ok(Some(b)) => bits.push(Some(b)),
            // The first folder without bits: a source that keeps none asks no more.
            Ok(None) if bits.is_empty() => return bits,
            _ => bits.push(None),
        }
    }
    bits
}

/// For backends that compare version tokens (ETags) but may list a file without one: turns
/// [`WriteMode::IfUnchanged`] into a write the server checks. With an ETag in the version,
/// [`WriteMode::Update`] with it; without one, the file is looked up now (`stat`) and must
/// still match the version ([`Version::matches`]: size, mtime), and the write then becomes an
/// [`WriteMode::Update`] on the ETag that lookup returned — so a version saved after the lookup
/// is refused by the server too. Only where even the lookup has no ETag is the write a plain
/// overwrite after the check. Other modes are returned as they are.
///
/// # Errors
/// [`Error::PreconditionFailed`] when the file is missing or another version; errors of the
/// lookup.
pub async fn checked_by_etag<C: StorageClient + ?Sized>(
    client: &C,
    path: &RelPath,
    mut opts: WriteOptions,
) -> Result<WriteOptions> {
    let WriteMode::IfUnchanged(version) = &opts.mode else {
        return Ok(opts);
    };
    if let Some(etag) = &version.etag {
        opts.mode = WriteMode::Update(etag.clone());
        return Ok(opts);
    }
    let now = match client.stat(path).await {
        Ok(now) => now,
        Err(e) if e.is_not_found() => {
            return Err(Error::precondition_failed(client.backend(), path.as_str()));
        }
        Err(e) => return Err(e),
    };
    if !version.matches(&now) {
        return Err(Error::precondition_failed(client.backend(), path.as_str()));
    }
    opts.mode = match now.etag {
        Some(etag) => WriteMode::Update(etag),
        None => WriteMode::Overwrite,
    };
    Ok(opts)
}

/// Wraps one buffer as a [`ByteStream`].
pub fn bytes_stream(data: Bytes) -> ByteStream {
    futures::stream::once(async move { Ok(data) }).boxed()
}
