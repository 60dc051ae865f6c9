//! Local-disk backend for syncengine: a [`LocalClient`] keeps a directory in sync.
//!
//! ```
//! use bytes::Bytes;
//! use syncengine_backend_local::LocalClient;
//! use syncengine_core::{RelPath, StorageClientExt};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let client = LocalClient::new(dir.path().join("root"));
//! client.put(&RelPath::new("notes/todo.txt")?, Bytes::from("milk")).await?;
//! let listed = client.list_all(None).await?;
//! assert_eq!(listed[0].path.as_str(), "notes/todo.txt");
//! assert_eq!(listed[0].size, 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Behavior
//! - **Listing** walks the tree depth-first on a blocking thread, sorting each directory's
//!   children by name, a directory as `name/`, so the stream is in canonical order without
//!   sorting the whole tree; entries travel in batches through a bounded channel, so memory
//!   stays bounded however big the tree. Entries carry size, nanosecond mtime, the inode as
//!   `file_id` and, where the filesystem keeps one, the birth time (`statx`, read with the
//!   rest of the metadata); no hash (compute one with `StorageClientExt::md5`). Inode plus
//!   birth time is what lets the engine confirm a rename without reading the file: a new file
//!   that reused a deleted file's inode has a new birth time.
//! - **Unknown, never silently left out**: symlinks (never followed), sockets, FIFOs and
//!   devices, sub-directories that cannot be read or that vanish or change while they are
//!   walked, and files that vanish or change between readdir and stat are listed as
//!   `Error::Unlisted` items at their place in canonical order; a directory holding names
//!   that are not UTF-8 or not valid [`RelPath`](syncengine_core::RelPath) segments is listed
//!   as `Error::Unlisted { contents_only: true, .. }` before its first member. The engine
//!   leaves everything at or below them alone on both sides and reports them. Only a failure
//!   to read the root (or the listed prefix) ends the listing with an error.
//! - **Writes that create a file** (`WriteMode::Create`) stage its content in an unnamed file
//!   (`O_TMPFILE`, Linux, where the filesystem has it) that `linkat(2)` gives its name at the
//!   end — failing if the name exists, so they never replace anything; a failed, cancelled or
//!   killed write leaves nothing at all behind. Elsewhere they use a named temp as below.
//! - **Copies between two local roots** (`copy_from_same_store` from another `LocalClient`)
//!   are done by the kernel: a reflink (`FICLONE`) where the filesystem shares blocks, else
//!   `copy_file_range(2)`, else reads and writes (between filesystems that cannot do better);
//!   holes stay holes. The source must be the listed version (size, mtime, inode) when it is
//!   opened and still after its bytes are copied, else nothing is committed
//!   (`PreconditionFailed`). Modes, mtime and permission bits as for a write.
//! - **Reads and copies open their file without waiting**: a FIFO swapped in where a file was
//!   listed is refused at once (it is not a file) instead of blocking until something writes
//!   to it. A file under a lease (Samba's oplocks, an NFS server's delegations) is then
//!   opened the usual way, which waits for the lease's holder to let go.
//! - **Writes** go to a hidden temporary sibling `.syncengine-tmp-<random hex>`, are flushed to
//!   disk (`fsync`, see [`LocalClient::with_fsync`]), get their mtime, and are then renamed into
//!   place: a reader sees the old or the new content, never a part. A failed or cancelled
//!   write removes its temporary file. Temporary files are never listed, so a name starting with
//!   `.syncengine-tmp-` cannot be synced (writing one is `InvalidPath`). The temp of a killed
//!   write stays until it is a day old (modification and access time; another machine may be
//!   writing into a shared folder): listings note it and `remove_stale_temps` removes it, as
//!   the engine does after every run that is not a dry run. Names that merely start with the
//!   prefix are never removed (the core's `is_stale_temp`).
//! - **A move killed midway on a filesystem without `RENAME_NOREPLACE`** (NFS, many FUSE
//!   filesystems) can leave the old name at `.syncengine-tmp-aside-<hex>-<name>`: the move
//!   sets the old name aside before removing it, so a save that landed there meanwhile is
//!   never removed. The next run removes such a name only while the file has another name
//!   (the link the move made), or had one when the run listed it (the run may delete that
//!   other name); a file's only name goes back to `<name>`, or, where that is taken, to a
//!   visible `recovered-by-syncengine-<hex>-<name>` (without `-<name>` where too long). The
//!   recovery acts only on the file the listing found, in its folder opened below the root
//!   without following a symlink.
//! - **Permissions**: listings and `stat` carry each file's permission bits
//!   (`Entry::permissions`). A file that is overwritten keeps its own bits (`0o777`; setuid,
//!   setgid and sticky are dropped). A new file gets the bits the write asks for
//!   (`WriteOptions::permissions`: the engine passes the source file's, so a `0o600` key
//!   stays private and a `0o755` script stays executable), `0o777` of them less the umask
//!   (as `rsync` does without `--perms`); without them, the process's default (`0o666` less
//!   the umask). A server-side `copy` gets the source's bits the same way. The temporary
//!   file is created with those bits, so it never has more than the final file at any
//!   moment. A change of permissions alone is not a change of the file and is not synced.
//! - `WriteMode::Create` and `rename`/`copy` without overwrite are race-free: the new name is
//!   made with `link(2)`, which fails if it exists, never by check-then-rename. (On a filesystem
//!   without hard links they fall back to check-then-rename, logged at debug level.)
//! - `WriteMode::Update(etag)` is `Unsupported`: a local file has no version token that could
//!   be compared and swapped atomically, so `Capabilities::conditional_write` is false. The
//!   engine replaces files with `WriteMode::IfUnchanged(version)` instead: the body goes to the
//!   temporary file first, and only then, right before the rename, is the target checked to
//!   be still that version (size, mtime, inode); a file saved meanwhile is left in place and
//!   the write fails with `PreconditionFailed`. Only the moment between that check and the
//!   rename remains open.
//! - **Deletes** remove the directories they leave empty, up to (not including) the root.
//! - **A move between filesystems** (a filesystem mounted inside the root, `EXDEV`) is
//!   `Error::Unsupported`, and the file stays as it was; the log names the mount. The engine
//!   then does it another way: a file it deletes there goes to the root's trash as a copy,
//!   flushed to disk before the file is deleted (and only if it is still the version listed),
//!   and a rename across the mount is a copy and a delete.
//! - **Symlinked folders inside the root** are never written, moved or deleted through:
//!   every write (and the folders it creates), delete (and the pruning of emptied folders),
//!   rename, copy and trash link first checks each existing folder on the path below the
//!   root with `lstat`, and a symlink among them fails the operation with an error naming it
//!   (such a folder may lead outside the root). Listings do not follow them either (above).
//!   A symlinked root itself is resolved and used. Reads are not checked (the engine only
//!   reads what a listing showed). Beyond the check (Linux 5.6 and later, where it replaces
//!   the check for writes), the folders each of these operations uses are opened in one
//!   lookup that refuses any symlink below the root (`openat2` with `RESOLVE_NO_SYMLINKS`),
//!   and the file is made, linked, replaced, moved, removed, or read as the source of a
//!   server-side `copy`, in those folders by descriptor (a named temporary file and a rename
//!   through `/proc/self/fd`), as are the emptied folders a delete or rename prunes, each in
//!   the one above it; the folders they make are made the same way. So a folder swapped for
//!   a symlink after the check leads nothing outside the root (red teams 29 and 30). A trash
//!   link is checked to be the very file looked at in the source's folder (device and
//!   inode), else it is removed and `preserve` fails with `PreconditionFailed`: the engine
//!   never takes another file for the old version it is about to replace. Elsewhere (no
//!   `openat2`; for renames and named temporary files, no `/proc`) they act by path after
//!   the check, and a symlink swapped in between is not caught.

mod aside;
mod beneath;
mod chunked_read;
mod client;
mod error;
mod kernel_copy;
mod lane;
mod list;

pub use client::{LocalClient, SAME_KIND_TRANSFERS};

/// URL scheme of this backend (`file:///path`); bare paths mean the same.
pub const SCHEME: &str = "file";

/// Prefix of the temporary files of in-progress writes; never listed.
pub const TEMP_PREFIX: &str = syncengine_core::ignore_rules::TEMP_FILE_PREFIX;
