//! [`LocalClient`]: the [`StorageClient`] implementation for a local directory.

use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::StreamExt;
use syncengine_core::{
    ByteStream, Capabilities, DeleteOptions, Entry, EntryStream, Error, PruneFn, ReadOptions,
    RelPath, Result, StorageClient, TransferOptions, Version, WriteMode, WriteOptions,
    bytes_stream,
};

use syncengine_core::cleanup::{CleanupOptions, CleanupReport, clean_up_temps};
use syncengine_core::identity::Location;
use syncengine_core::ignore_rules::temp_file_name;

use crate::TEMP_PREFIX;
use crate::aside::{Leftovers, Recovered, aside_name};
use crate::beneath;
use crate::chunked_read::read_chunks;
use crate::error::{BACKEND, io_on, map_io};
use crate::kernel_copy::{Abandon, KernelCopy, copy_bytes};
use crate::lane::Lane;
use crate::list::list_stream;

/// Files up to this size are read whole in one blocking call.
const SMALL_READ: u64 = 256 * 1024;
/// Same-store copies of files up to this size run on the client's [`Lane`]; larger ones take
/// a blocking thread of their own (a long copy would hold a lane runner, and queued small
/// copies behind it).
const LANE_COPY: u64 = 1 << 20;
/// Actions in flight between two local roots ([`Capabilities::same_kind_transfers`]): enough
/// that the lane's runners find the next small copy queued when they finish one.
pub const SAME_KIND_TRANSFERS: usize = 32;
/// Same-store copies larger than [`LANE_COPY`] that run at once, however many the run keeps
/// in flight: a disk seeks between them, and a copy between filesystems the kernel cannot
/// copy between holds a 1 MiB buffer each (8 was the run's own number before
/// [`SAME_KIND_TRANSFERS`]).
const BIG_COPIES: usize = 8;

/// An opened file: small ones already read, larger ones to stream.
enum Opened {
    Whole(Bytes),
    Stream(File, u64),
}
/// Bytes of body collected before one blocking write call. A write holds two batches at
/// most (one being written while the next is received): 1 MiB, as one 1 MiB batch did when
/// the body waited for each write.
const WRITE_BATCH: usize = 512 * 1024;

/// Starts the disk writes of a large streamed file while it is still being received, so that
/// the barrier that makes it durable ([`StorageClient::sync_written`]) finds little left to
/// write: a 1 GiB download otherwise ended with the whole gigabyte to flush.
///
/// Every [`WRITE_BEHIND`](crate::kernel_copy::WRITE_BEHIND) bytes, the range written since
/// the last kick is handed to the kernel's writeback (`posix_fadvise(POSIX_FADV_DONTNEED)`,
/// which starts writing dirty pages without waiting for them, and drops the file's pages once
/// clean: a big copy does not push the user's working set out of the page cache), as kernel
/// copies do ([`Kicks`](crate::kernel_copy::Kicks)). Nothing about what is committed changes.
#[derive(Debug)]
struct WriteBehind {
    /// Bytes written so far, and where writeback was last kicked.
    at: std::sync::Mutex<(u64, crate::kernel_copy::Kicks)>,
}

impl WriteBehind {
    fn new(written: u64) -> Self {
        WriteBehind {
            at: std::sync::Mutex::new((written, crate::kernel_copy::Kicks::from(0))),
        }
    }

    /// Counts `len` more bytes written to `file`; kicks writeback when enough are waiting.
    fn wrote(&self, file: &File, len: u64) {
        let mut at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        at.0 += len;
        let written = at.0;
        at.1.wrote(file, written);
    }
}

/// A [`StorageClient`] over a local directory.
///
/// See the [crate docs](crate) for the behaviour of each operation. Cloning is cheap. Its
/// calls run within a tokio runtime with the time driver (`#[tokio::main]` and
/// `Builder::enable_all` have it, as the other backends' HTTP and SSH clients need too): a
/// call that waits on the filesystem for long gets help on a timer (see `lane.rs`).
///
/// ```
/// use syncengine_backend_local::LocalClient;
///
/// let client = LocalClient::new("/srv/photos");
/// assert_eq!(client.to_string(), "LocalClient(/srv/photos)");
/// ```
#[derive(Clone, Debug)]
pub struct LocalClient {
    root: PathBuf,
    fsync: bool,
    /// Temp files and files moved aside that listings found ([`Leftovers`]).
    leftovers: Arc<Leftovers>,
    /// Folders' permission bits already looked up ([`StorageClient::folder_permissions`] is
    /// asked for every folder above every file a run copies; files of one folder come
    /// together). Bounded: cleared when full.
    folder_bits: Arc<std::sync::Mutex<std::collections::HashMap<RelPath, Option<u32>>>>,
    /// What the kernel could not copy between the filesystems of a same-store copy's source
    /// and this root ([`StorageClient::copy_from_same_store`]).
    kernel_copy: Arc<KernelCopy>,
    /// Set once this root's filesystem refused an unnamed temporary file (`O_TMPFILE`):
    /// later writes go straight to named ones.
    unnamed_refused: Arc<AtomicBool>,
    /// A descriptor on the root's filesystem opened before the client's first write, through
    /// which [`StorageClient::sync_written`] flushes it (see [`WritebackWatch`]).
    writeback: Arc<WritebackWatch>,
    /// Short blocking calls (stats, small reads, writes and copies, deletes) run one after
    /// another on a few blocking threads instead of one hand-off each (see [`Lane`]).
    lane: Lane,
    /// Permits for same-store copies larger than [`LANE_COPY`] ([`BIG_COPIES`]).
    big_copies: Arc<tokio::sync::Semaphore>,
}

/// A descriptor held on a root's filesystem from before any write to it, for `syncfs`.
///
/// Since Linux 5.8 `syncfs` fails with the filesystem's writeback error only if the error
/// happened after the descriptor it is given was opened. A descriptor opened at each barrier
/// would miss an error of the background writeback of files copied before it (the kernel
/// writes dirty pages back on its own), and the engine would then record those files as
/// durable. So the client opens one descriptor when it first looks at its root (listing,
/// `root_exists`, `check_access`, or at the latest its first barrier), on the root or, while
/// the root does not exist yet, its nearest existing folder above, and keeps it.
///
/// Another filesystem mounted below the root is listed and written like the rest, but
/// `syncfs` on the root's does not flush it: the barrier also flushes each filesystem
/// mounted below the root (`/proc/self/mountinfo`), through descriptors held the same way
/// (the second field, by mount point).
///
/// The third field is set once the root's descriptor is held: the callers on the runtime's
/// threads then skip [`WritebackWatch::start`], which they otherwise run on a blocking thread
/// ([`LocalClient::watch_writeback`]): its opens wait on the filesystem, and one mounted
/// below the root that hangs (a frozen network mount) would hold the runtime's thread, and
/// with it the run's cancellation.
#[derive(Debug, Default)]
pub(crate) struct WritebackWatch(
    std::sync::Mutex<Option<File>>,
    std::sync::Mutex<std::collections::HashMap<PathBuf, File>>,
    std::sync::atomic::AtomicBool,
);

/// Opens the folder `dir` for `syncfs`: folders only (`O_DIRECTORY`), as opening anything
/// else for reading may block (a named pipe waits for a writer).
fn open_folder(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::DIRECTORY.bits() as i32)
        .open(dir)
}

/// The mount points strictly below `root` (made canonical), from `/proc/self/mountinfo`;
/// `None` where that cannot be read (no `/proc`, not Linux).
fn mounts_below(root: &Path) -> Option<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStringExt;
    let root = fs::canonicalize(root).ok()?;
    let info = fs::read("/proc/self/mountinfo").ok()?;
    let mut below = Vec::new();
    for line in info.split(|&b| b == b'\n') {
        // The fifth field is the mount point, with space, tab, newline and backslash
        // written as octal escapes (`\040`).
        let Some(field) = line.split(|&b| b == b' ').nth(4) else {
            continue;
        };
        let mut path = Vec::with_capacity(field.len());
        let mut i = 0;
        while i < field.len() {
            let octal = field
                .get(i + 1..i + 4)
                .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
                .and_then(|d| {
                    let v = d.iter().fold(0u16, |v, c| v * 8 + u16::from(c - b'0'));
                    u8::try_from(v).ok()
                });
            match (field[i], octal) {
                (b'\\', Some(byte)) => {
                    path.push(byte);
                    i += 4;
                }
                (b, _) => {
                    path.push(b);
                    i += 1;
                }
            }
        }
        let path = PathBuf::from(std::ffi::OsString::from_vec(path));
        if path != root && path.starts_with(&root) {
            below.push(path);
        }
    }
    Some(below)
}

impl WritebackWatch {
    /// Opens the descriptor if none is held yet. Waits on the filesystem: never on the
    /// runtime's threads (see [`LocalClient::watch_writeback`]).
    pub(crate) fn start(&self, root: &Path) {
        use std::sync::atomic::Ordering;
        if self.2.load(Ordering::Acquire) {
            return;
        }
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_some() {
            self.2.store(true, Ordering::Release);
            return;
        }
        let mut below = self.1.lock().unwrap_or_else(|e| e.into_inner());
        for mount in mounts_below(root).unwrap_or_default() {
            if let Ok(file) = open_folder(&mount) {
                below.insert(mount, file);
            }
        }
        let mut dir = Some(root);
        while let Some(d) = dir {
            // Folders only: a named pipe would block.
            if let Ok(file) = open_folder(d) {
                *held = Some(file);
                self.2.store(true, Ordering::Release);
                return;
            }
            dir = d.parent();
        }
    }

    /// Flushes the filesystem of `root` (an open descriptor on it): through the held
    /// descriptor when it is on the same filesystem, which reports every writeback error
    /// since it was opened; else through `root` itself, which is held from then on.
    fn syncfs(&self, root: File, root_path: &Path) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let root_dev = root.metadata()?.dev();
        let same = match held.as_ref() {
            Some(file) => file
                .metadata()
                .map(|m| m.dev() == root_dev)
                .unwrap_or(false),
            None => false,
        };
        if !same {
            // A root made on another filesystem than the folder held (a mount point created
            // meanwhile): errors from before this call are not seen there, as before.
            *held = Some(root);
        }
        let file = held.as_ref().unwrap_or_else(|| unreachable!("set above"));
        rustix::fs::syncfs(file).map_err(io::Error::from)?;
        drop(held);
        self.sync_mounts_below(root_path, root_dev)
    }

    /// Flushes each other filesystem mounted below `root` (whose own is `root_dev`), each
    /// once, through the descriptor held on its mount point when it is still that
    /// filesystem. Where the mounts cannot be read, flushes every filesystem (`sync`, which
    /// reports no error).
    fn sync_mounts_below(&self, root: &Path, root_dev: u64) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let Some(mounts) = mounts_below(root) else {
            rustix::fs::sync();
            return Ok(());
        };
        let mut below = self.1.lock().unwrap_or_else(|e| e.into_inner());
        let mut flushed = std::collections::HashSet::from([root_dev]);
        for mount in mounts {
            // Unmounted meanwhile, or not ours to open: nothing of the run can be there.
            let Ok(now) = open_folder(&mount) else {
                continue;
            };
            let dev = now.metadata()?.dev();
            if !flushed.insert(dev) {
                continue;
            }
            let same = below
                .get(&mount)
                .is_some_and(|held| held.metadata().is_ok_and(|m| m.dev() == dev));
            if !same {
                below.insert(mount.clone(), now);
            }
            let file = below
                .get(&mount)
                .unwrap_or_else(|| unreachable!("set above"));
            rustix::fs::syncfs(file).map_err(io::Error::from)?;
        }
        Ok(())
    }
}

/// How many folders' bits [`LocalClient`] keeps before it forgets them all.
const FOLDER_BITS_KEPT: usize = 1024;

impl LocalClient {
    /// Creates a client rooted at `root`, without touching the disk.
    ///
    /// A relative root is made absolute against the current directory now, so later changes
    /// of the current directory do not move the client. A missing root lists nothing; the
    /// first write creates it.
    pub fn new(root: impl Into<PathBuf>) -> LocalClient {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        LocalClient {
            root,
            fsync: false,
            leftovers: Arc::default(),
            folder_bits: Arc::default(),
            kernel_copy: Arc::default(),
            unnamed_refused: Arc::default(),
            writeback: Arc::default(),
            lane: Lane::default(),
            big_copies: Arc::new(tokio::sync::Semaphore::new(BIG_COPIES)),
        }
    }

    /// Sets whether each write and copy is flushed to disk (`fsync`) before it is renamed
    /// into place. Off by default.
    ///
    /// # Behavior
    /// Durability does not depend on it: before the engine records completed copies in its
    /// state, it calls [`sync_written`](StorageClient::sync_written), which flushes the whole
    /// filesystem once (`syncfs`). So a power loss can at worst lose copies the state does
    /// not claim yet, and the next run re-plans them. Flushing every file as well makes each
    /// file durable the moment its write returns, for embedders that need that without the
    /// engine, at a high price: a 100 000-file first sync took 2.3× as long with it
    /// (measured here on ext4).
    pub fn with_fsync(mut self, fsync: bool) -> LocalClient {
        self.fsync = fsync;
        self
    }

    /// Returns the root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn abs(&self, path: &RelPath) -> PathBuf {
        self.root.join(path.as_str())
    }
}

impl fmt::Display for LocalClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalClient({})", self.root.display())
    }
}

/// Builds an entry from a file's metadata.
pub(crate) fn entry_from_metadata(path: RelPath, metadata: &Metadata) -> Entry {
    let mut entry = Entry::new(path, metadata.len())
        .with_file_id(metadata.ino())
        .with_permissions(metadata.mode());
    if let Ok(mtime) = metadata.modified() {
        entry = entry.with_mtime(mtime);
    }
    // std asks statx for the birth time along with the rest (no extra syscall); filesystems
    // that keep none report an error here and the entry goes without.
    if let Ok(birth) = metadata.created() {
        entry = entry.with_birth_time(birth);
    }
    entry
}

/// `path` with symlinks and `..` resolved as far as it exists; missing trailing components
/// are appended as given (a root the first write will create). A dangling symlink on the way
/// is followed to where it points (a link to an unmounted disk's folder is that folder: the
/// same pair as when the disk was there).
fn canonical_path(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut followed: PathBuf;
    let mut cur = path;
    // As many links as the kernel follows in one lookup.
    let mut links_left = 40;
    loop {
        if let Ok(real) = fs::canonicalize(cur) {
            let mut out = real;
            for part in missing.iter().rev() {
                out.push(part);
            }
            return out;
        }
        let dangling = fs::symlink_metadata(cur).is_ok_and(|m| m.file_type().is_symlink());
        if dangling
            && links_left > 0
            && let Ok(target) = fs::read_link(cur)
        {
            links_left -= 1;
            // A relative target is relative to the link's folder.
            followed = cur.parent().map_or(target.clone(), |p| p.join(&target));
            cur = &followed;
            continue;
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                cur = parent;
            }
            // Nothing of it exists (or it ends in `..`): keep the absolute path as given.
            _ => return path.to_path_buf(),
        }
    }
}

/// See [`LocalClient::volume_id`](StorageClient::volume_id).
fn volume_id(root: &Path) -> Option<String> {
    // The root may not exist yet: ask about the deepest existing ancestor's filesystem.
    let mut at = root;
    let meta = loop {
        match fs::metadata(at) {
            Ok(m) => break m,
            Err(_) => at = at.parent()?,
        }
    };
    if let Ok(links) = fs::read_dir("/dev/disk/by-uuid") {
        for link in links.flatten() {
            // `metadata` follows the link to the device node.
            if let Ok(dev) = link.metadata()
                && std::os::unix::fs::FileTypeExt::is_block_device(&dev.file_type())
                && dev.rdev() == meta.dev()
                && let Some(name) = link.file_name().to_str()
            {
                return Some(format!("uuid:{name}"));
            }
        }
    }
    const EXT_MAGIC: i64 = 0xEF53;
    const BTRFS_MAGIC: i64 = 0x9123_683E;
    let fs_type = rustix::fs::statfs(at).ok()?.f_type;
    #[allow(clippy::useless_conversion)]
    let fs_type = i64::from(fs_type);
    if fs_type != EXT_MAGIC && fs_type != BTRFS_MAGIC {
        return None;
    }
    let fsid = rustix::fs::statvfs(at).ok()?.f_fsid;
    (fsid != 0).then(|| format!("fsid:{fsid:016x}"))
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::other(BACKEND, "", format!("blocking filesystem task failed: {e}")))?
}

/// The file of a batch write started with `spawn_blocking`, once the batch is written.
async fn joined_write(handle: tokio::task::JoinHandle<Result<File>>) -> Result<File> {
    handle
        .await
        .map_err(|e| Error::other(BACKEND, "", format!("blocking filesystem task failed: {e}")))?
}

/// The error of a failed `syncfs` barrier: never transient, whatever the errno. The
/// filesystem reports a writeback error once per descriptor, and the barrier's descriptor is
/// held ([`WritebackWatch`]): a retry would succeed without the data (an `ETIMEDOUT` of a
/// soft NFS mount or a FUSE daemon's `ECONNRESET` mapped to a transient error was retried,
/// and the base then recorded the batch as durable).
fn flush_failed(e: io::Error) -> Error {
    Error::other(
        BACKEND,
        "",
        format!(
            "flushing the disk failed ({e}); files written since the last good flush may not \
             be on disk: check the disk (the kernel log names the device) before the next \
             run, which writes those files again"
        ),
    )
}

/// Refuses names the backend reserves for its temporary files: they could never be listed.
fn check_not_reserved(path: &RelPath) -> Result<()> {
    if path.file_name().starts_with(TEMP_PREFIX) {
        return Err(Error::InvalidPath {
            path: path.as_str().to_owned(),
            reason: format!("names starting with {TEMP_PREFIX} are reserved for temporary files"),
        });
    }
    Ok(())
}

/// Refuses `rel` when a folder on its way below the root is a symlink: nothing is written,
/// moved or deleted through one, since it may lead outside the root (a write would land where
/// no listing sees it, a delete would remove a file that was never synced). Each existing
/// folder from the root down is checked with `lstat`; missing ones are created as real
/// folders by the caller. The root itself may be a symlink (it is resolved); the last
/// component is the caller's business. A symlink made between this check and the operation
/// is caught where the operation then opens its folders beneath the root ([`beneath`],
/// [`Spot`]); elsewhere it is not.
fn check_no_symlinked_folder(root: &Path, rel: &RelPath) -> Result<()> {
    let Some((folders, _)) = rel.as_str().rsplit_once('/') else {
        return Ok(());
    };
    let mut at = root.to_path_buf();
    let mut end = 0;
    for name in folders.split('/') {
        end += name.len();
        at.push(name);
        match fs::symlink_metadata(&at) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(symlinked_folder(rel.as_str(), &folders[..end]));
            }
            Ok(_) => {}
            // Missing (or a file in the way, which the operation itself reports).
            Err(_) => return Ok(()),
        }
        end += 1;
    }
    Ok(())
}

/// [`check_no_symlinked_folder`] where the operation's own lookups cannot refuse a
/// symlinked folder: where [`beneath::available`], each folder is opened without following
/// one ([`Spot`]), which refuses it and names it ([`folder_not_opened`]) in the same step
/// that finds the folder, so a check by path first would only repeat it.
fn check_folders_by_path(root: &Path, rel: &RelPath) -> Result<()> {
    if beneath::available() {
        return Ok(());
    }
    check_no_symlinked_folder(root, rel)
}

/// The error for an operation on `rel` refused because the folder `link` is a symlink.
fn symlinked_folder(rel: &str, link: &str) -> Error {
    Error::other(
        BACKEND,
        rel,
        format!(
            "{link:?} is a symlink: nothing is written, moved or deleted through a symlinked \
             folder inside the root (it may lead outside it); replace the link by the folder \
             it points to (or, for a folder of your own, exclude it)"
        ),
    )
}

/// The metadata of the regular file at `abs`, without following a final symlink; anything
/// else there (a directory, a symlink, nothing) is `NotFound`.
fn file_metadata(abs: &Path, rel: &str) -> Result<Metadata> {
    match fs::symlink_metadata(abs) {
        Ok(md) if md.is_file() => Ok(md),
        Ok(_) => Err(Error::not_found(BACKEND, rel)),
        Err(e) => Err(map_io(rel, e)),
    }
}

/// Makes temp names unique within this process (the pid in the name covers the others, and
/// `O_EXCL` catches anything else).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary file that is removed when dropped, unless [`TempFile::keep`] was called.
///
/// Held across the whole write, so an error, a failing body or a dropped (cancelled) future
/// all remove it; the target is only ever touched by the final rename or link.
///
/// An unnamed one ([`TempFile::create_unnamed`], `O_TMPFILE`) has no name at all until it is
/// linked at its target: the kernel frees it when its last descriptor closes, so a failed,
/// cancelled or killed write leaves nothing behind, not even a temp to clean up.
struct TempFile {
    path: Option<PathBuf>,
    unnamed: bool,
    /// The folder the file was made in and is linked or renamed into, where it was opened
    /// without following symlinks ([`beneath::open_folder_of`]); a named one's `path` then
    /// goes through it ([`in_folder`]).
    folder: Option<OwnedFd>,
}

/// The pid in temp names, looked up once (`getpid` is a syscall per call).
fn temp_pid() -> u64 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    u64::from(*PID.get_or_init(std::process::id))
}

impl TempFile {
    /// Creates a new, empty temporary file in `dir` (which must exist), with permission bits
    /// `mode & 0o777` less the umask: given at creation, so the file never has more.
    fn create(dir: &Path, mode: u32) -> io::Result<(TempFile, File)> {
        loop {
            // The pid keeps processes apart; the core's exact temp format lets a later run
            // recognise the temps of a write killed midway (SIGKILL, power loss) and remove
            // them once they are a day old.
            let path = dir.join(temp_file_name(
                (temp_pid() << 32) | (TEMP_COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff),
            ));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode & 0o777)
                .open(&path)
            {
                Ok(file) => {
                    return Ok((
                        TempFile {
                            path: Some(path),
                            unnamed: false,
                            folder: None,
                        },
                        file,
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates a new, empty file without a name (`O_TMPFILE`) in `folder` where it was
    /// opened ([`beneath::open_folder_of`]), else in `dir`, with permission bits as
    /// [`create`](Self::create) gives them; placed by [`link_unnamed`]. `Ok(None)` where the
    /// filesystem (or the kernel, or a missing `/proc`) cannot: `refused` then remembers it
    /// for the client's later writes.
    #[cfg(target_os = "linux")]
    fn create_unnamed(
        dir: &Path,
        folder: &mut Option<OwnedFd>,
        mode: u32,
        refused: &AtomicBool,
    ) -> io::Result<Option<(TempFile, File)>> {
        use rustix::fs::{Mode, OFlags};
        // Where linking by descriptor (`AT_EMPTY_PATH`) is refused, the link goes through
        // /proc/self/fd.
        if refused.load(Ordering::Relaxed) || !proc_fd_available() {
            return Ok(None);
        }
        let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
        let opened = match &*folder {
            Some(folder) => {
                rustix::fs::openat(folder, ".", flags, Mode::from_raw_mode(mode & 0o777))
                    .map(File::from)
                    .map_err(io::Error::from)
            }
            None => OpenOptions::new()
                .write(true)
                .custom_flags(OFlags::TMPFILE.bits() as i32)
                .mode(mode & 0o777)
                .open(dir),
        };
        match opened {
            Ok(file) => Ok(Some((
                TempFile {
                    path: None,
                    unnamed: true,
                    folder: folder.take(),
                },
                file,
            ))),
            // The folder was removed since it was opened (a concurrent delete or move pruned
            // it as empty): ext4 refuses an unnamed file in a removed folder with `EPERM`,
            // where a named one gets `ENOENT`. Not found, as for a named one, so the caller
            // makes the folder again (red team 27's race, seen by CI in session 24).
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error())
                    && folder
                        .as_ref()
                        .is_some_and(|f| rustix::fs::fstat(f).is_ok_and(|st| st.st_nlink == 0)) =>
            {
                Err(io::Error::from(io::ErrorKind::NotFound))
            }
            // Not here: a filesystem without it (EOPNOTSUPP), a kernel before 3.11 (which
            // took the flag for O_DIRECTORY: EISDIR), or EINVAL.
            Err(e)
                if matches!(
                    e.raw_os_error().map(rustix::io::Errno::from_raw_os_error),
                    Some(
                        rustix::io::Errno::OPNOTSUPP
                            | rustix::io::Errno::ISDIR
                            | rustix::io::Errno::INVAL
                    )
                ) =>
            {
                tracing::debug!(dir = %dir.display(), "no unnamed temporary files here ({e}); using named ones");
                refused.store(true, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn create_unnamed(
        _dir: &Path,
        _folder: &mut Option<OwnedFd>,
        _mode: u32,
        _refused: &AtomicBool,
    ) -> io::Result<Option<(TempFile, File)>> {
        Ok(None)
    }

    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// The temporary file became the target: nothing to remove.
    fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take()
            && let Err(e) = fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), "could not remove temporary file: {e}");
        }
    }
}

/// Gives the unnamed file `file` ([`TempFile::create_unnamed`]) the name `to`, failing with
/// `AlreadyExists` if `to` exists: `linkat(2)` checks and links in one step.
///
/// Into `folder` where the file was made in one opened without following symlinks: by the
/// file's descriptor (`AT_EMPTY_PATH`), which kernels before 6.10 refuse without
/// `CAP_DAC_READ_SEARCH` (`ENOENT`); those link through `/proc/self/fd`, as everywhere
/// without `folder`.
#[cfg(target_os = "linux")]
fn link_unnamed(file: &File, folder: Option<&OwnedFd>, to: &Path) -> io::Result<()> {
    use rustix::fs::{AtFlags, linkat};
    /// Whether linking by descriptor works here: not tried yet, yes, or refused.
    static BY_FD: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    const WORKS: u8 = 1;
    const REFUSED: u8 = 2;
    let (Some(folder), Some(name)) = (folder, to.file_name()) else {
        return link_through_proc(file, None, to);
    };
    let tried = BY_FD.load(Ordering::Relaxed);
    if tried != REFUSED {
        match linkat(file, "", folder, name, AtFlags::EMPTY_PATH) {
            Ok(()) => {
                BY_FD.store(WORKS, Ordering::Relaxed);
                return Ok(());
            }
            // Refused by an older kernel, or the folder is gone: the link through /proc
            // tells which.
            Err(e) if e == rustix::io::Errno::NOENT && tried != WORKS => {}
            Err(e) => return Err(e.into()),
        }
    }
    link_through_proc(file, Some(folder), to)?;
    if tried != REFUSED {
        tracing::debug!("linking by descriptor is refused here; linking through /proc");
        BY_FD.store(REFUSED, Ordering::Relaxed);
    }
    Ok(())
}

/// Links the unnamed `file` at `to` through `/proc/self/fd` (`linkat` following the magic
/// link, which every kernel allows its owner): into `folder` by its descriptor where the
/// file was made in one, else by path.
#[cfg(target_os = "linux")]
fn link_through_proc(file: &File, folder: Option<&OwnedFd>, to: &Path) -> io::Result<()> {
    use rustix::fs::{AtFlags, CWD, linkat};
    use std::os::fd::AsRawFd;
    let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
    match (folder, to.file_name()) {
        (Some(folder), Some(name)) => linkat(CWD, proc, folder, name, AtFlags::SYMLINK_FOLLOW),
        _ => linkat(CWD, proc, CWD, to, AtFlags::SYMLINK_FOLLOW),
    }
    .map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn link_unnamed(_file: &File, _folder: Option<&OwnedFd>, _to: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// How [`link_noreplace`] put the file in place.
pub(crate) enum Placed {
    /// A second name was made; the caller removes the old one.
    Linked,
    /// The file was renamed: atomically with `RENAME_NOREPLACE` where the filesystem has it,
    /// else (no hard links either) after a racy existence check.
    Renamed,
}

/// Gives `from` the new name `to`, failing with `AlreadyExists` if `to` exists. Each is a
/// name in a folder's descriptor, or a path (in [`rustix::fs::CWD`]), as [`Spot::at`]
/// gives them.
///
/// `renameat2(RENAME_NOREPLACE)` and `link(2)` check and create in one step, so no concurrent
/// writer can slip in between.
pub(crate) fn link_noreplace(
    from: (BorrowedFd<'_>, &Path),
    to: (BorrowedFd<'_>, &Path),
) -> io::Result<Placed> {
    use rustix::fs::{AtFlags, RenameFlags, linkat, renameat, renameat_with, statat};
    let ((from_folder, from), (to_folder, to)) = (from, to);
    // One atomic step where the filesystem supports it (ext4, XFS, btrfs, tmpfs).
    match renameat_with(from_folder, from, to_folder, to, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(Placed::Renamed),
        Err(e) if e == rustix::io::Errno::EXIST => {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        // Not supported here (EINVAL on some filesystems, ENOSYS on old kernels): link instead.
        Err(_) => {}
    }
    match linkat(from_folder, from, to_folder, to, AtFlags::empty()).map_err(io::Error::from) {
        Ok(()) => Ok(Placed::Linked),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::Unsupported
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::CrossesDevices
            ) =>
        {
            tracing::debug!(
                to = %to.display(),
                "hard link failed ({e}); falling back to a check-then-rename"
            );
            match statat(to_folder, to, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(_) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
                Err(rustix::io::Errno::NOENT) => renameat(from_folder, from, to_folder, to)
                    .map(|()| Placed::Renamed)
                    .map_err(io::Error::from),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e),
    }
}

/// How [`commit`] places a write of `path` in `mode`: whether it replaces an existing file,
/// and the version it may replace only. `None` for a mode this backend cannot check
/// ([`WriteMode::Update`]: a local file has no version token).
fn commit_mode(path: &RelPath, mode: &WriteMode) -> Option<(bool, Option<(RelPath, Version)>)> {
    match mode {
        WriteMode::Overwrite => Some((true, None)),
        WriteMode::Create => Some((false, None)),
        WriteMode::IfUnchanged(version) => Some((true, Some((path.clone(), version.clone())))),
        _ => None,
    }
}

/// Creates the temporary file of a write of `path` (at `target`, below `root`): refused
/// through a symlinked folder, its missing folders created with `folders`' bits.
///
/// An overwrite keeps the file's permission bits (not setuid, setgid or sticky); a new file
/// gets the `requested` bits (the source's), else the process's default. The temp is created
/// with them (less the umask), before any of the new content is written: a private file
/// stays private, and is never readable by others under its temporary name either.
fn open_temp(
    root: &Path,
    path: &RelPath,
    target: &Path,
    rel: &str,
    requested: Option<u32>,
    folders: &WriteOptions,
    unnamed: Option<&AtomicBool>,
) -> Result<(TempFile, File)> {
    // Where it can, one lookup refuses a symlinked folder on the way and opens the folder
    // the file is made and linked in (`beneath`); elsewhere each folder is checked first.
    let by_folder = beneath::available();
    check_folders_by_path(root, path)?;
    let dir = target.parent().unwrap_or(Path::new("/"));
    let create = || -> io::Result<(TempFile, File, Option<u32>)> {
        let mut folder = if by_folder {
            Some(beneath::open_folder_of(root, path)?)
        } else {
            None
        };
        // A write that only creates has no old file whose bits it would keep (one there
        // fails it). An overwrite looks at the old file in the folder looked up, never by a
        // path a symlink swapped in meanwhile would lead outside the root (red team 30).
        let old = match &folder {
            _ if unnamed.is_some() => None,
            Some(folder) => metadata_in(folder, Path::new(path.file_name())).ok(),
            None => fs::symlink_metadata(target).ok(),
        }
        .filter(Metadata::is_file)
        .map(|old| old.permissions().mode() & 0o777);
        let mode = old.or(requested).map_or(0o666, |bits| bits & 0o777);
        if let Some(refused) = unnamed
            && let Some((temp, file)) = TempFile::create_unnamed(dir, &mut folder, mode, refused)?
        {
            return Ok((temp, file, old));
        }
        let (temp, file) = named_temp(folder, dir, mode)?;
        Ok((temp, file, old))
    };
    let failed = |e| folder_not_opened(root, path, target, rel, e);
    // The parent usually exists: try first, create it only when missing.
    let (temp, file, old) = match create() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if by_folder {
                beneath::make_folders_of(root, path, |depth| folders.folder_mode(depth))
                    .map_err(failed)?;
            } else {
                create_parent_with(target, rel, folders)?;
            }
            create().map_err(failed)
        }
        other => other.map_err(failed),
    }?;
    if let Some(old) = old {
        // Exactly the old bits, which the umask may have cut at creation (never more).
        file.set_permissions(fs::Permissions::from_mode(old))
            .map_err(io_on(rel))?;
    }
    Ok((temp, file))
}

/// A named temporary file ([`TempFile::create`]) in `folder` where it was opened beneath the
/// root, by its descriptor (through /proc), renamed or linked there by [`commit`]: a folder
/// moved out of the root and linked back meanwhile leads the new version nowhere outside it
/// (red team 29). Else (or without /proc) in `dir`, by path.
fn named_temp(folder: Option<OwnedFd>, dir: &Path, mode: u32) -> io::Result<(TempFile, File)> {
    match folder.and_then(|folder| in_folder(&folder, Path::new(".")).map(|at| (at, folder))) {
        Some((at, folder)) => {
            let (mut temp, file) = TempFile::create(&at, mode)?;
            temp.folder = Some(folder);
            Ok((temp, file))
        }
        None => TempFile::create(dir, mode),
    }
}

/// The error of a write of `path` (at `target`, below `root`) whose temporary file could not
/// be made: a file in a folder's place, or a symlinked folder on the way, named.
fn folder_not_opened(root: &Path, path: &RelPath, target: &Path, rel: &str, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotADirectory {
        in_the_folders_way(target, rel, e)
    } else if beneath::is_symlinked_folder(&e) {
        // Name the link; if it is gone already (swapped in and out meanwhile), the folders
        // one of which it was.
        check_no_symlinked_folder(root, path)
            .err()
            .unwrap_or_else(|| {
                let folders = rel.rsplit_once('/').map_or("", |(folders, _)| folders);
                Error::other(
                    BACKEND,
                    rel,
                    format!(
                        "a folder of {folders:?} was a symlink when this file was written, and is \
                     none now (replaced meanwhile): nothing is written through a symlinked \
                     folder inside the root (it may lead outside it), and nothing was ({e})"
                    ),
                )
            })
    } else {
        map_io(rel, e)
    }
}

/// Opens the file at `abs` for reading ([`open_to_read`]), never through a symlink at its
/// last component (symlinks are not synced: one there is not found). Its callers check the
/// opened handle is a regular file (the path may have been swapped for a directory or a
/// FIFO).
fn open_source(abs: &Path, rel: &str) -> Result<File> {
    match open_to_read(abs) {
        Ok(file) => Ok(file),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            Err(Error::not_found(BACKEND, rel))
        }
        Err(e) => Err(map_io(rel, e)),
    }
}

/// Opens the file at `abs` to read it, never through a symlink at its last component
/// (`ELOOP`). Without waiting: a FIFO swapped in where a file was listed opens at once (and
/// its caller, which checks the opened handle is a file, refuses it) instead of blocking
/// until something writes to it. Reads then block as usual.
///
/// A file under a lease (Samba's oplocks, an NFS server's delegations) refuses such an open
/// (`EWOULDBLOCK`) while its holder is asked to let go; it is then opened the usual way, which
/// waits for that, as before. A FIFO never answers so.
fn open_to_read(abs: &Path) -> io::Result<File> {
    use rustix::fs::OFlags;
    let open = |flags: OFlags| {
        OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits() as i32)
            .open(abs)
    };
    match open(OFlags::NOFOLLOW | OFlags::NONBLOCK) {
        Ok(file) => {
            rustix::fs::fcntl_setfl(&file, OFlags::empty())?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => open(OFlags::NOFOLLOW),
        Err(e) => Err(e),
    }
}

/// The error of a same-store copy whose source is not the version listed (`when`: "since it
/// was listed", "while it was copied"): nothing was committed.
fn source_changed(rel: &str, when: &str) -> Error {
    Error::PreconditionFailed {
        backend: BACKEND,
        path: rel.to_owned(),
        source: Some(
            format!(
                "the source file changed {when}; nothing was copied, and the next run syncs \
                 its new version"
            )
            .into(),
        ),
    }
}

/// Finishes a temporary file: mtime, flush, then rename (or no-replace link) onto `target` —
/// with `unless_changed`, only while `target` is still that version. Returns the metadata of
/// the file now at `target`.
///
/// An unnamed file whose folder was removed meanwhile (a delete beside this write pruned
/// the folder it left empty: an unnamed file is no entry of it) is linked into the folder
/// made again, looked up as [`open_temp`] does, its missing folders created with `folders`'
/// bits; without `folders`, that fails as a missing folder.
#[allow(clippy::too_many_arguments)]
fn commit(
    temp: TempFile,
    file: File,
    target: &Path,
    rel: &str,
    mtime: Option<SystemTime>,
    fsync: bool,
    replace: bool,
    unless_changed: Option<(RelPath, Version)>,
    folders: Option<&WriteOptions>,
) -> Result<Metadata> {
    if let Some(mtime) = mtime {
        file.set_modified(mtime).map_err(io_on(rel))?;
    }
    if fsync {
        file.sync_all().map_err(io_on(rel))?;
    }
    let metadata = file.metadata().map_err(io_on(rel))?;
    // A named temporary file made in an opened folder is renamed or linked there, and what
    // is at the target is looked at there, never by a path a symlink swapped in meanwhile
    // would lead outside the root.
    let named_at = match (&temp.folder, target.file_name()) {
        (Some(folder), Some(name)) if !temp.unnamed => in_folder(folder, Path::new(name)),
        _ => None,
    };
    let at = named_at.as_deref().unwrap_or(target);
    if let Some((path, expected)) = unless_changed {
        // The last moment before the rename: a file saved meanwhile (new inode, mtime or
        // size) is left in place and the temporary file is removed when `temp` drops.
        let unchanged = match fs::symlink_metadata(at) {
            Ok(now) => now.is_file() && expected.matches(&entry_from_metadata(path, &now)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(map_io(rel, e)),
        };
        if !unchanged {
            return Err(Error::precondition_failed(BACKEND, rel));
        }
    }
    // A folder holding nothing but empty folders is nothing a listing shows (listings are
    // files only), so nothing can be lost by removing it; left there, it would block the file
    // at its path on every run ("already exists").
    // `folder`: the unnamed file's folder looked up again (see below), else the one it was
    // made in.
    let place = |temp: &TempFile, folder: Option<&OwnedFd>| -> io::Result<bool> {
        if temp.unnamed {
            // Never replaces: unnamed files are only made for writes that create.
            link_unnamed(&file, folder.or(temp.folder.as_ref()), target).map(|()| true)
        } else if replace {
            fs::rename(temp.path(), at).map(|()| true)
        } else {
            // On `Linked` the temporary name is still there and `temp` removes it when dropped.
            link_noreplace((rustix::fs::CWD, temp.path()), (rustix::fs::CWD, at))
                .map(|placed| matches!(placed, Placed::Renamed))
        }
    };
    let mut again = None;
    let placed = match (place(&temp, None), folders) {
        (Err(e), Some(folders))
            if temp.unnamed && e.kind() == io::ErrorKind::NotFound && folder_gone(&temp) =>
        {
            tracing::debug!(
                path = rel,
                "the folder of a new file was removed meanwhile; made again"
            );
            again = Some(find_folder_again(target, rel, folders)?);
            place(&temp, again.as_ref())
        }
        (placed, _) => placed,
    };
    // An unnamed file is linked into the folder it was made in, wherever that is now: what
    // is in its way is looked up there too (through the folder's descriptor), never by a
    // path a symlink swapped in meanwhile would lead outside the root.
    let in_its_way = match (again.as_ref().or(temp.folder.as_ref()), target.file_name()) {
        (Some(folder), Some(name)) if temp.unnamed => in_folder(folder, Path::new(name)),
        _ => None,
    }
    .unwrap_or_else(|| at.to_path_buf());
    let renamed = match placed {
        Err(e) if remove_empty_folders(&in_its_way) => {
            tracing::debug!(
                path = rel,
                "removed empty folders in the way of a file ({e})"
            );
            place(&temp, again.as_ref())
        }
        other => other,
    }
    .map_err(|e| in_the_way(target, rel, e))?;
    drop(file);
    if renamed {
        temp.keep();
    }
    Ok(metadata)
}

/// `name` in the opened `folder`, as a path through `/proc/self/fd` (the folder itself,
/// wherever it is now: its path is not looked up again); `None` without `/proc`.
fn in_folder(folder: &OwnedFd, name: &Path) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    proc_fd_available().then(|| {
        Path::new("/proc/self/fd")
            .join(folder.as_raw_fd().to_string())
            .join(name)
    })
}

/// Whether `/proc/self/fd` is there (looked up once): the links through it that unnamed
/// files and [`in_folder`] need.
fn proc_fd_available() -> bool {
    static PROC_FD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PROC_FD.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

/// Where an operation acts on a file below the root: by its name in its folder, opened
/// without following a symlink ([`beneath::open_folder_of`]), so a symlinked folder on the
/// way, there at the lookup or swapped in later, leads nothing outside the root (red team
/// 30); else, where [`beneath::available`] is not, by its path, checked first
/// ([`check_folders_by_path`]).
struct Spot {
    /// The file's folder, where it was opened beneath the root.
    folder: Option<OwnedFd>,
    /// The file's name in `folder`, else its whole path.
    name: PathBuf,
}

impl Spot {
    /// The spot of `rel` (at `abs`) below `root`: its folder opened where it can be.
    ///
    /// # Errors
    /// The lookup's ([`beneath::open_folder_of`]).
    fn of(root: &Path, rel: &RelPath, abs: &Path) -> io::Result<Spot> {
        if !beneath::available() {
            return Ok(Spot::by_path(abs));
        }
        Ok(Spot {
            folder: Some(beneath::open_folder_of(root, rel)?),
            name: PathBuf::from(rel.file_name()),
        })
    }

    /// The spot of the source `rel` (at `abs`) below `root`: a missing folder, or a file in
    /// a folder's place, is `NotFound` (no file there), a symlinked one named.
    fn source(root: &Path, rel: &RelPath, abs: &Path) -> Result<Spot> {
        Spot::of(root, rel, abs).map_err(|e| {
            if beneath::is_symlinked_folder(&e) {
                folder_not_opened(root, rel, abs, rel.as_str(), e)
            } else {
                map_io(rel.as_str(), e)
            }
        })
    }

    /// The spot of the new file `rel` (at `abs`) below `root`, its missing folders made
    /// (with the default bits) as a write makes them: each in the one above it where the
    /// folders are opened beneath the root ([`beneath::make_folders_of`]).
    fn made(root: &Path, rel: &RelPath, abs: &Path) -> Result<Spot> {
        if !beneath::available() {
            create_parent(abs, rel.as_str())?;
            return Ok(Spot::by_path(abs));
        }
        // Where the folders are there already (every file after the first of a folder), one
        // lookup finds them; only a missing one takes the walk that makes it. So does a path
        // too long for one lookup (`ENAMETOOLONG`: 4096 bytes with the root's path): a file
        // near that length moved into the trash gets a longer folder there (red team 34).
        // The writes that found their folder missing call the walk at once.
        let folder = match beneath::open_folder_of(root, rel) {
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(rustix::io::Errno::NAMETOOLONG.raw_os_error()) =>
            {
                beneath::make_folders_of(root, rel, |_| None)
            }
            found => found,
        }
        .map_err(|e| folder_not_opened(root, rel, abs, rel.as_str(), e))?;
        Ok(Spot {
            folder: Some(folder),
            name: PathBuf::from(rel.file_name()),
        })
    }

    fn by_path(abs: &Path) -> Spot {
        Spot {
            folder: None,
            name: abs.to_path_buf(),
        }
    }

    /// The folder to look `name` up in (the working directory for a whole path) and `name`.
    fn at(&self) -> (std::os::fd::BorrowedFd<'_>, &Path) {
        use std::os::fd::AsFd;
        let folder = self
            .folder
            .as_ref()
            .map_or(rustix::fs::CWD, |folder| folder.as_fd());
        (folder, &self.name)
    }

    /// What is there, without following a symlink.
    fn metadata(&self) -> io::Result<Metadata> {
        match &self.folder {
            Some(folder) => metadata_in(folder, &self.name),
            None => fs::symlink_metadata(&self.name),
        }
    }

    /// The regular file there; anything else (a folder, a symlink, nothing) is `NotFound`,
    /// as [`file_metadata`] says.
    fn file_metadata(&self, rel: &str) -> Result<Metadata> {
        match self.metadata() {
            Ok(md) if md.is_file() => Ok(md),
            Ok(_) => Err(Error::not_found(BACKEND, rel)),
            Err(e) => Err(map_io(rel, e)),
        }
    }

    /// Opens the file here for reading, never through a symlink here (`ELOOP`), as
    /// [`open_source`] does.
    fn open_read(&self) -> io::Result<File> {
        use rustix::fs::{Mode, OFlags, openat};
        let (folder, name) = self.at();
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        Ok(File::from(openat(folder, name, flags, Mode::empty())?))
    }

    /// Gives the file here the second name `to` (`linkat(2)`, failing if `to` exists), not
    /// following a symlink here: one is linked as itself.
    fn link_to(&self, to: &Spot) -> io::Result<()> {
        let ((from_folder, from), (to_folder, to)) = (self.at(), to.at());
        rustix::fs::linkat(
            from_folder,
            from,
            to_folder,
            to,
            rustix::fs::AtFlags::empty(),
        )
        .map_err(io::Error::from)
    }

    /// Removes the name (`unlinkat(2)`).
    fn remove(&self) -> io::Result<()> {
        let (folder, name) = self.at();
        rustix::fs::unlinkat(folder, name, rustix::fs::AtFlags::empty()).map_err(io::Error::from)
    }
}

/// Links the file at `from_at` (`from`, whose look was `source`) at `to_at` (`to`) for
/// [`StorageClient::preserve`], and returns what is now at `to_at`: the very file `source`
/// described. `None` where the filesystem has no hard links or `to_at` is on another device
/// (the caller copies instead).
///
/// # Errors
/// `PreconditionFailed` when another file (or a symlink, linked as itself) was put at `from`
/// between the look and the link: the link is removed, as the engine would take it for the
/// version at `from` it is about to overwrite or delete. Else the link's.
fn link_checked(
    from_at: &Spot,
    source: &Metadata,
    to_at: &Spot,
    from: &str,
    to: &str,
) -> Result<Option<Metadata>> {
    match from_at.link_to(to_at) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::Unsupported
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::CrossesDevices
            ) =>
        {
            tracing::debug!(to, "hard link failed ({e}); copying instead");
            return Ok(None);
        }
        Err(e) => return Err(map_io(to, e)),
    }
    let linked = to_at.metadata().map_err(io_on(to))?;
    if !linked.is_file() || (linked.dev(), linked.ino()) != (source.dev(), source.ino()) {
        if let Err(e) = to_at.remove() {
            tracing::warn!(path = to, "could not remove the link of another file: {e}");
        }
        return Err(source_changed(from, "while it was linked"));
    }
    Ok(Some(linked))
}

/// A server-side copy of `from` to `to` below `root` ([`StorageClient::copy_opts`]): the
/// source's bytes, mtime and permission bits (less setuid, setgid, sticky and the umask).
///
/// Where it can, the source is opened in its folder and the copy made in its own, both
/// opened without following a symlink (the target's made where missing), by their
/// descriptors: a symlinked folder, there at the lookup or swapped in later, copies nothing
/// from outside the root in, and nothing out (red team 30). Else by path, checked first.
///
/// `flush`: for [`StorageClient::preserve`] where it cannot link. A link shares the old
/// version's blocks, on disk as they were; a copy is new data. The engine replaces the
/// original right after `preserve` returns, with no barrier between (on another filesystem,
/// whose journal commits on its own): the copy, its name and the folders made for it are
/// flushed first (`fsync`, `syncfs`), or a power cut could keep the replacement and lose the
/// only other copy of the old version. A copy that cannot be flushed is removed again.
fn copy_in_root(
    root: &Path,
    from: &RelPath,
    to: &RelPath,
    overwrite: bool,
    fsync: bool,
    flush: bool,
) -> Result<Entry> {
    let (src, target) = (root.join(from.as_str()), root.join(to.as_str()));
    let (from_rel, rel) = (from.as_str(), to.as_str());
    check_folders_by_path(root, from)?;
    check_folders_by_path(root, to)?;
    let mut reader = Spot::source(root, from, &src)?.open_read().map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            Error::not_found(BACKEND, from_rel)
        } else {
            map_io(from_rel, e)
        }
    })?;
    let source = reader.metadata().map_err(io_on(from_rel))?;
    if !source.is_file() {
        return Err(Error::not_found(BACKEND, from_rel));
    }
    let to_at = Spot::made(root, to, &target)?;
    // Where the copy is removed again if it cannot be flushed.
    let folder = match (&to_at.folder, flush) {
        (Some(folder), true) => Some(folder.try_clone().map_err(io_on(rel))?),
        _ => None,
    };
    let dir = target.parent().unwrap_or(Path::new("/"));
    // The copy gets the source's permission bits (less setuid, setgid, sticky and the
    // umask) from its creation on, never more while the content goes in.
    let (temp, mut file) =
        named_temp(to_at.folder, dir, source.permissions().mode()).map_err(io_on(rel))?;
    // copy_file_range(2) where the filesystem has it: no bytes through user space. A full,
    // over-quota or read-only target is named as the copy's, not the source's, fault.
    io::copy(&mut reader, &mut file).map_err(|e| match e.kind() {
        io::ErrorKind::StorageFull
        | io::ErrorKind::QuotaExceeded
        | io::ErrorKind::ReadOnlyFilesystem => map_io(rel, e),
        _ => map_io(from_rel, e),
    })?;
    let copy = if flush {
        Some(file.try_clone().map_err(io_on(rel))?)
    } else {
        None
    };
    let mtime = source.modified().ok();
    let metadata = commit(
        temp, file, &target, rel, mtime, fsync, overwrite, None, None,
    )?;
    if let Some(copy) = copy {
        let flushed = copy
            .sync_all()
            .and_then(|()| rustix::fs::syncfs(&copy).map_err(io::Error::from));
        if let Err(e) = flushed {
            // Not left for the engine to take as made: nothing replaces the original. Only
            // the copy itself, in the folder it was put in.
            let at = match folder {
                Some(folder) => Spot {
                    folder: Some(folder),
                    name: PathBuf::from(to.file_name()),
                },
                None => Spot::by_path(&target),
            };
            if let (Ok(there), Ok(made)) = (at.metadata(), copy.metadata())
                && (there.dev(), there.ino()) == (made.dev(), made.ino())
            {
                let _ = at.remove();
            }
            return Err(Error::other(
                BACKEND,
                rel,
                format!("the copy of the old version could not be flushed to disk: {e}"),
            ));
        }
    }
    Ok(entry_from_metadata(to.clone(), &metadata))
}

/// The metadata of `name` in `folder`, not following a symlink there: opened `O_PATH` and
/// looked at through its descriptor, so it is std's (with the birth time, as
/// [`fs::symlink_metadata`] gives it).
#[cfg(target_os = "linux")]
fn metadata_in(folder: &OwnedFd, name: &Path) -> io::Result<Metadata> {
    use rustix::fs::{Mode, OFlags, openat};
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    File::from(openat(folder, name, flags, Mode::empty())?).metadata()
}

#[cfg(not(target_os = "linux"))]
fn metadata_in(_folder: &OwnedFd, _name: &Path) -> io::Result<Metadata> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Whether the folder an unnamed file was made in is gone (removed: no name links it).
/// False where it was not opened: a link by path reports a missing folder itself.
fn folder_gone(temp: &TempFile) -> bool {
    match &temp.folder {
        Some(folder) => rustix::fs::fstat(folder).is_ok_and(|st| st.st_nlink == 0),
        None => false,
    }
}

/// The folder of `rel` (at `target`) looked up again, as [`open_temp`] does (a symlinked
/// folder on the way is refused and named), its missing folders created with `folders`'
/// bits: where an unnamed file whose folder was removed meanwhile is linked instead. Only
/// asked where the file was made in an opened folder ([`beneath::available`]).
fn find_folder_again(target: &Path, rel: &str, folders: &WriteOptions) -> Result<OwnedFd> {
    let path = RelPath::new(rel)?;
    let Some(root) = target.ancestors().nth(rel.split('/').count()) else {
        return Err(Error::not_found(BACKEND, rel));
    };
    beneath::make_folders_of(root, &path, |depth| folders.folder_mode(depth))
        .map_err(|e| folder_not_opened(root, &path, target, rel, e))
}

/// The error for a file that could not be put at `target`. When a folder that could not be
/// cleared is there, says why and what to do: it still holds entries — ones no listing
/// shows (excluded or temporary files, symlinks, special files, a mount) or ones not deleted
/// — and nothing is deleted to make room for a file.
fn in_the_way(target: &Path, rel: &str, e: io::Error) -> Error {
    if !fs::symlink_metadata(target).is_ok_and(|md| md.is_dir()) {
        return map_io(rel, e);
    }
    Error::other(
        BACKEND,
        rel,
        format!(
            "a folder is in the way of this file; it still holds entries (excluded or \
             temporary files, symlinks, special files, a mount, or files not deleted), and \
             nothing is deleted to make room: move the folder away, or exclude {rel} ({e})"
        ),
    )
}

/// The error of a move of `from` (at `src`, below `root`) to `to` (at `target`) that would
/// cross filesystems (`EXDEV`): one of them is on a filesystem mounted inside the root.
/// [`Error::Unsupported`], so the engine does it another way: a file it deletes is kept in
/// the trash by [`preserve`](StorageClient::preserve) (a flushed copy there) instead of a
/// move, and a rename is a copy and a delete. Where the mount is goes to the log.
fn across_filesystems(
    root: &Path,
    src: &Path,
    target: &Path,
    from: &str,
    to: &str,
    e: io::Error,
) -> Error {
    tracing::info!(
        "{}; the engine copies instead",
        mount_in_the_way(root, src, target, from, to, e)
    );
    Error::Unsupported {
        backend: BACKEND,
        operation: "a move between filesystems (one is mounted inside the root)",
    }
}

/// What [`across_filesystems`] logs: the mount inside the root that a move from `from` to
/// `to` crosses, where the mount table names it.
fn mount_in_the_way(
    root: &Path,
    src: &Path,
    target: &Path,
    from: &str,
    to: &str,
    e: io::Error,
) -> String {
    // The deepest mount point (from the mount table, as the barrier finds them) holding
    // either end.
    let mount = fs::canonicalize(root)
        .ok()
        .zip(mounts_below(root))
        .and_then(|(root, mounts)| {
            [src, target]
                .iter()
                .filter_map(|p| p.parent().and_then(|dir| fs::canonicalize(dir).ok()))
                .find_map(|dir| {
                    let mount = mounts
                        .iter()
                        .filter(|m| dir.starts_with(m))
                        .max_by_key(|m| m.as_os_str().len())?;
                    mount.strip_prefix(&root).ok().map(Path::to_path_buf)
                })
        });
    match mount {
        Some(mount) => format!(
            "{from} cannot be moved to {to}: a filesystem is mounted at {} inside the root, and \
             a file cannot be moved between filesystems ({e})",
            mount.display()
        ),
        None => format!("{from} cannot be moved to {to}: {e}"),
    }
}

/// Removes `dir` if it is a real directory (not a symlink) holding nothing but directories
/// with the same property; true if it did. Anything else below it (a file, a symlink, an
/// unreadable folder, another filesystem mounted there) keeps it all in place. A file created
/// below it meanwhile stops the removal there: `remove_dir` only removes empty directories
/// (and never a mount point).
fn remove_empty_folders(dir: &Path) -> bool {
    fn only_folders(dir: &Path, device: u64, order: &mut Vec<PathBuf>) -> bool {
        let Ok(entries) = fs::read_dir(dir) else {
            return false;
        };
        for entry in entries {
            let Ok(entry) = entry else { return false };
            match entry.metadata() {
                Ok(md) if md.is_dir() && md.dev() == device && !is_mount_root(&entry.path()) => {
                    if !only_folders(&entry.path(), device, order) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        order.push(dir.to_path_buf());
        true
    }
    let device = match fs::symlink_metadata(dir) {
        Ok(md) if md.is_dir() && !is_mount_root(dir) => md.dev(),
        _ => return false,
    };
    let mut order = Vec::new();
    only_folders(dir, device, &mut order) && order.iter().all(|d| fs::remove_dir(d).is_ok())
}

/// True when `dir` is the root of a mount: another filesystem, or a bind mount of a folder
/// of the same one (which the device number does not tell apart). Unknown (a kernel before
/// 5.8, not Linux) counts as not: the device check and `remove_dir`'s refusal to remove a
/// mount point still hold.
fn is_mount_root(dir: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags, statx};
        match statx(CWD, dir, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS) {
            Ok(st) => {
                st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
                    && st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
            }
            Err(_) => false,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        false
    }
}

/// Removes the folders of `rel` below `root` that are empty, bottom up, up to (not
/// including) the root: each by its name in the folder above it, opened without following
/// a symlink, where it can ([`beneath::open_folder_of`]), so a folder swapped for a symlink
/// meanwhile leads to no empty folder outside the root (red team 30). Else by path.
fn prune_empty_dirs(root: &Path, rel: &RelPath) {
    remove_empty_folders_above(root, rel, usize::MAX);
}

/// Removes up to `limit` folders above `rel` below `root`, nearest first, each only while it
/// is empty; stops at the first that is not (see [`prune_empty_dirs`]).
fn remove_empty_folders_above(root: &Path, rel: &RelPath, limit: usize) {
    let mut below = rel.as_str();
    for _ in 0..limit {
        let Some((dir, _)) = below.rsplit_once('/') else {
            return;
        };
        let removed = if beneath::available() {
            RelPath::new(dir).map_err(io::Error::other).and_then(|dir| {
                let up = beneath::open_folder_of(root, &dir)?;
                rustix::fs::unlinkat(&up, dir.file_name(), rustix::fs::AtFlags::REMOVEDIR)
                    .map_err(io::Error::from)
            })
        } else {
            fs::remove_dir(root.join(dir))
        };
        match removed {
            // Gone already (or a folder above it): a concurrent delete pruned it; its parent
            // may still be empty.
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Not empty (or not ours to remove): stop here.
            Err(_) => return,
        }
        below = dir;
    }
}

fn create_parent(target: &Path, rel: &str) -> Result<()> {
    create_parent_with(target, rel, &WriteOptions::default())
}

/// Creates the missing folders above `target` (the file `rel`), each with the bits `opts`
/// asks for it ([`WriteOptions::folder_mode`]: the source folder's), less the umask, else
/// the default; folders that exist are left as they are.
fn create_parent_with(target: &Path, rel: &str, opts: &WriteOptions) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let Some(parent) = target.parent() else {
        return Ok(());
    };
    let folders = rel.split('/').count() - 1;
    if opts.folder_permissions.is_empty() || folders == 0 {
        return fs::create_dir_all(parent).map_err(|e| in_the_folders_way(target, rel, e));
    }
    // Missing folders, nearest the root first (depth 0 is the top one).
    let mut missing = Vec::new();
    let mut dir = parent;
    for depth in (0..folders).rev() {
        if fs::symlink_metadata(dir).is_ok() {
            break;
        }
        missing.push((depth, dir));
        match dir.parent() {
            Some(up) => dir = up,
            None => break,
        }
    }
    // The root, when it is missing too (a no-op when `dir` is a folder that exists).
    fs::create_dir_all(dir).map_err(|e| in_the_folders_way(target, rel, e))?;
    for (depth, dir) in missing.into_iter().rev() {
        let mut builder = fs::DirBuilder::new();
        if let Some(mode) = opts.folder_mode(depth) {
            builder.mode(mode);
        }
        match builder.create(dir) {
            Ok(()) => {}
            // Made meanwhile by another write.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(in_the_folders_way(target, rel, e)),
        }
    }
    Ok(())
}

/// The error for a file that could not be put at `target` because a folder it needs is in
/// the way. When one of the folders `rel` needs is a file here (an object store can hold a
/// key `x` and keys under `x/` side by side; a disk cannot), names that clash and what to do
/// instead of a bare "not found"; nothing is deleted or overwritten to make room. Any other
/// failure maps as usual.
fn in_the_folders_way(target: &Path, rel: &str, e: io::Error) -> Error {
    if matches!(
        e.kind(),
        io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
    ) && let Some(file) = file_among_folders(target, rel)
    {
        return Error::other(
            BACKEND,
            rel,
            format!(
                "`{file}` is a file here, so it cannot also be the folder that holds \
                 `{rel}` (the other side, or an object store, has a folder `{file}/`); a \
                 path cannot be a file and a folder at once on this side, and nothing is \
                 deleted or overwritten to make room: rename or move away the file `{file}` \
                 or the folder `{file}/` on the side that holds it, or exclude one of them \
                 ({e})"
            ),
        );
    }
    map_io(rel, e)
}

/// The first of the folders `rel` needs (`a`, `a/b`, … below the root `target` is in) that
/// is something other than a folder here (not following symlinks), as a relative path.
fn file_among_folders(target: &Path, rel: &str) -> Option<String> {
    let depth = rel.split('/').count();
    let root = target.ancestors().nth(depth)?;
    let mut prefix = String::new();
    for part in rel.split('/').take(depth - 1) {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        match fs::symlink_metadata(root.join(&prefix)) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => return Some(prefix),
            Err(_) => return None,
        }
    }
    None
}

#[async_trait]
impl StorageClient for LocalClient {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.ordered_listing = true;
        caps.set_mtime = true;
        // ext4 (with 256-byte inodes), XFS, btrfs and tmpfs keep nanoseconds; a coarser
        // filesystem (FAT: 2 s) makes mtimes compare unequal and files re-transfer once.
        caps.mtime_precision = Duration::from_nanos(1);
        caps.listed_hash = None;
        caps.etag = false;
        caps.file_id = true;
        // Where the filesystem keeps one (ext4, XFS, btrfs, tmpfs on current kernels).
        caps.birth_time = true;
        caps.local_reads = true;
        caps.server_side_copy = true;
        caps.native_rename = true;
        caps.conditional_write = false;
        // The platform's default (macOS disks fold both); whether this root's file system
        // folds (a FAT stick, a casefolded ext4 folder, an SMB mount) only a probe can tell:
        // the engine probes it in `.syncengine/probe/` once per root identity
        // (`syncengine_core::folding`), so `folding_known` stays false.
        caps.case_insensitive = cfg!(target_os = "macos");
        caps.normalization_insensitive = cfg!(target_os = "macos");
        caps.real_directories = true;
        caps.same_kind_transfers = Some(SAME_KIND_TRANSFERS);
        caps
    }

    fn local_root(&self) -> Option<PathBuf> {
        Some(self.root.clone())
    }

    /// The folder's permission bits (`0o777` of them), not following a symlink; `None` for
    /// anything but a folder.
    async fn folder_permissions(&self, path: &RelPath) -> Result<Option<u32>> {
        if let Some(bits) = self
            .folder_bits
            .lock()
            .ok()
            .and_then(|kept| kept.get(path).copied())
        {
            return Ok(bits);
        }
        let dir = self.abs(path);
        let rel = path.as_str().to_owned();
        let bits = self
            .lane
            .run(move || match fs::symlink_metadata(&dir) {
                Ok(md) if md.is_dir() => Ok(Some(md.permissions().mode() & 0o777)),
                Ok(_) => Ok(None),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    Ok(None)
                }
                Err(e) => Err(map_io(&rel, e)),
            })
            .await?;
        if let Ok(mut kept) = self.folder_bits.lock() {
            if kept.len() >= FOLDER_BITS_KEPT {
                kept.clear();
            }
            kept.insert(path.clone(), bits);
        }
        Ok(bits)
    }

    /// Removes the stale temp files the run's listings found, and recovers the files an
    /// interrupted move left aside (see the crate's docs): a second name is removed (and
    /// counted), a file's only name goes back to where it was.
    async fn remove_stale_temps(&self) -> Result<u64> {
        let found = self.leftovers.temps.take();
        let (leftovers, root) = (self.leftovers.clone(), self.root.clone());
        blocking(move || {
            let mut removed = leftovers
                .recover_asides(&root)
                .iter()
                .filter(|(_, done)| *done == Recovered::SecondNameRemoved)
                .count() as u64;
            for path in found {
                match fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(%path, "removed a temp file untouched for a day");
                        removed += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(map_io("", e)),
                }
            }
            Ok(removed)
        })
        .await
    }

    /// The engine's temp files anywhere under the root (trash folders excepted) untouched
    /// (modified or read) for longer than the given age, by the core's
    /// [`clean_up_temps`](syncengine_core::cleanup::clean_up_temps).
    async fn clean_up(&self, opts: &CleanupOptions) -> Result<CleanupReport> {
        clean_up_temps(self, &self.leftovers.temps, opts, |path| {
            blocking(move || match fs::remove_file(&path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(map_io(&path, e)),
            })
        })
        .await
    }

    /// `file:///<canonical path>`: the root with symlinks and `..` resolved (a root that does
    /// not exist yet: its deepest existing ancestor resolved, the rest appended), so two
    /// spellings of one folder are one pair.
    async fn location(&self) -> Result<Location> {
        let root = self.root.clone();
        blocking(move || {
            Ok(Location::new(
                crate::SCHEME,
                "",
                canonical_path(&root).to_string_lossy(),
            ))
        })
        .await
    }

    /// The UUID of the filesystem holding the root, where one can be found without root
    /// privileges: the `/dev/disk/by-uuid/` link whose block device is the root's device;
    /// else, on ext2/3/4 and btrfs (whose `statfs` `f_fsid` is derived from the filesystem
    /// UUID), `f_fsid`. Other filesystems (xfs, tmpfs, overlayfs, network mounts) derive
    /// `f_fsid` from the device number, which changes across reboots and hot-plugs, so they
    /// have no volume id here. The engine uses it only where it cannot write the root's id file.
    async fn volume_id(&self) -> Result<Option<String>> {
        let root = self.root.clone();
        blocking(move || Ok(volume_id(&root))).await
    }

    async fn sync_written(&self) -> Result<()> {
        let root = self.root.clone();
        let writeback = self.writeback.clone();
        blocking(move || {
            // A missing root has nothing written under it.
            let dir = match File::open(&root) {
                Ok(dir) => dir,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(map_io("", e)),
            };
            writeback.syncfs(dir, &root).map_err(flush_failed)
        })
        .await
    }

    fn list(&self, prefix: Option<&RelPath>) -> EntryStream {
        list_stream(
            self.root.clone(),
            prefix.cloned(),
            self.leftovers.clone(),
            None,
            Some(self.writeback.clone()),
        )
    }

    fn list_pruned(&self, prefix: Option<&RelPath>, prune: PruneFn) -> EntryStream {
        list_stream(
            self.root.clone(),
            prefix.cloned(),
            self.leftovers.clone(),
            Some(prune),
            Some(self.writeback.clone()),
        )
    }

    /// The root folder exists (a symlink to a folder counts, as the root may be one).
    async fn root_exists(&self) -> Result<bool> {
        let root = self.root.clone();
        let watch = self.writeback.clone();
        blocking(move || {
            watch.start(&root);
            match fs::metadata(&root) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(map_io("", e)),
            }
        })
        .await
    }

    async fn stat(&self, path: &RelPath) -> Result<Entry> {
        let abs = self.abs(path);
        let path = path.clone();
        self.lane
            .run(move || {
                let metadata = file_metadata(&abs, path.as_str())?;
                Ok(entry_from_metadata(path, &metadata))
            })
            .await
    }

    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        let abs = self.abs(path);
        let rel = path.as_str().to_owned();
        let range = opts.range;
        let opened = self
            .lane
            .run(move || {
                let mut file = open_source(&abs, &rel)?;
                // Check the opened handle too: the path may have been swapped for a directory.
                let size = match file.metadata() {
                    Ok(md) if md.is_file() => md.len(),
                    Ok(_) => return Err(Error::not_found(BACKEND, rel)),
                    Err(e) => return Err(map_io(&rel, e)),
                };
                let (start, end) = match range {
                    None => (0, size),
                    Some(r) => (r.start.min(size), r.end.min(size).max(r.start.min(size))),
                };
                if start > 0 {
                    file.seek(SeekFrom::Start(start)).map_err(io_on(&rel))?;
                }
                let len = end - start;
                if len <= SMALL_READ {
                    // Small files (most of a typical tree) are read in the same blocking call.
                    let mut data = Vec::with_capacity(len as usize);
                    (&mut file)
                        .take(len)
                        .read_to_end(&mut data)
                        .map_err(io_on(&rel))?;
                    return Ok(Opened::Whole(Bytes::from(data)));
                }
                Ok(Opened::Stream(file, len))
            })
            .await?;
        let (file, len) = match opened {
            Opened::Whole(data) => return Ok(bytes_stream(data)),
            Opened::Stream(file, len) => (file, len),
        };
        Ok(read_chunks(file, len, path.as_str().to_owned()))
    }

    async fn write_opts(
        &self,
        path: &RelPath,
        mut body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        check_not_reserved(path)?;
        // A client that never looked at its root (a backup dir's: only the sides are listed)
        // holds its barrier's descriptor from before its first write, not from its first
        // barrier: one opened after another flush on the disk took a writeback error would
        // not report it (red team 29).
        self.watch_writeback().await;
        let Some((replace, unless_changed)) = commit_mode(path, &opts.mode) else {
            return Err(Error::Unsupported {
                backend: BACKEND,
                operation: "conditional write (WriteMode::Update)",
            });
        };
        let target = self.abs(path);
        let rel = path.as_str().to_owned();
        let fsync = self.fsync;

        // Gather the first batch before touching the disk: a small body (the common case)
        // is then created, written and committed in a single blocking call.
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batched = 0usize;
        let mut done = false;
        while batched < WRITE_BATCH {
            match body.next().await.transpose()? {
                Some(chunk) => {
                    batched += chunk.len();
                    batch.push(chunk);
                }
                None => {
                    done = true;
                    break;
                }
            }
        }
        let root = self.root.clone();
        let checked = path.clone();
        let requested = opts.permissions;
        let folders =
            WriteOptions::default().with_folder_permissions(opts.folder_permissions.clone());
        // A write that only creates stages its content in an unnamed file.
        let unnamed = (!replace).then(|| self.unnamed_refused.clone());
        let open_temp =
            move |target: &Path, rel: &str, folders: &WriteOptions| -> Result<(TempFile, File)> {
                open_temp(
                    &root,
                    &checked,
                    target,
                    rel,
                    requested,
                    folders,
                    unnamed.as_deref(),
                )
            };
        if done {
            let path = path.clone();
            return self
                .lane
                .run(move || {
                    let (temp, mut file) = open_temp(&target, &rel, &folders)?;
                    for chunk in &batch {
                        file.write_all(chunk).map_err(io_on(&rel))?;
                    }
                    let metadata = commit(
                        temp,
                        file,
                        &target,
                        &rel,
                        opts.mtime,
                        fsync,
                        replace,
                        unless_changed,
                        Some(&folders),
                    )?;
                    Ok(entry_from_metadata(path, &metadata))
                })
                .await;
        }

        // A large body: stream it in batches. `temp` lives in this future until `commit`: if
        // the body fails or the future is dropped, it removes the temporary file and the
        // target is never touched.
        let behind = Arc::new(WriteBehind::new(batched as u64));
        let (temp, file, folders) = {
            let (target, rel) = (target.clone(), rel.clone());
            blocking(move || {
                let (temp, mut file) = open_temp(&target, &rel, &folders)?;
                for chunk in &batch {
                    file.write_all(chunk).map_err(io_on(&rel))?;
                }
                Ok((temp, file, folders))
            })
            .await?
        };
        // One batch is written while the next is received: the body (a download) is not
        // paused for the disk. Batches are written in order, one at a time. A failed body
        // or a dropped call leaves the write in flight to finish into the temporary file,
        // which `temp` removes; nothing is committed.
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batched = 0usize;
        let mut writing: Option<tokio::task::JoinHandle<Result<File>>> = None;
        let mut idle = Some(file);
        loop {
            let chunk = body.next().await.transpose()?;
            let done = chunk.is_none();
            if let Some(chunk) = chunk {
                batched += chunk.len();
                batch.push(chunk);
            }
            if batched >= WRITE_BATCH || (done && !batch.is_empty()) {
                let chunks = std::mem::take(&mut batch);
                batched = 0;
                let mut file = match (writing.take(), idle.take()) {
                    (Some(previous), _) => joined_write(previous).await?,
                    (None, Some(file)) => file,
                    (None, None) => unreachable!("the file is either idle or being written"),
                };
                let rel = rel.clone();
                let behind = behind.clone();
                writing = Some(tokio::task::spawn_blocking(move || {
                    for chunk in &chunks {
                        file.write_all(chunk).map_err(io_on(&rel))?;
                    }
                    behind.wrote(&file, chunks.iter().map(|c| c.len() as u64).sum());
                    Ok(file)
                }));
            }
            if done {
                break;
            }
        }
        let file = match (writing.take(), idle.take()) {
            (Some(last), _) => joined_write(last).await?,
            (None, Some(file)) => file,
            (None, None) => unreachable!("the file is either idle or being written"),
        };

        let path = path.clone();
        blocking(move || {
            let metadata = commit(
                temp,
                file,
                &target,
                &rel,
                opts.mtime,
                fsync,
                replace,
                unless_changed,
                Some(&folders),
            )?;
            Ok(entry_from_metadata(path, &metadata))
        })
        .await
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    /// From another [`LocalClient`] (any root, any filesystem of this machine): the kernel
    /// copies the bytes — a reflink where the filesystem shares blocks (btrfs, XFS), else
    /// `copy_file_range(2)`, else reads and writes — into the same temporary file, commit and
    /// checks as [`write_opts`](StorageClient::write_opts), in one blocking call. A sparse
    /// source stays sparse.
    ///
    /// # Behavior
    /// - The source is opened once (never through a symlink at its last component) and must be
    ///   the version `listed` (size, mtime, inode) when opened and still be it, unchanged,
    ///   after its bytes are copied: else nothing is committed and the copy fails with
    ///   `PreconditionFailed`.
    /// - `opts.mode`, `opts.mtime`, `opts.permissions` and `opts.folder_permissions` as in
    ///   `write_opts`; [`WriteMode::Update`] gives `Ok(None)` (it is not supported either way).
    /// - A dropped (cancelled) call stops the copy at its next 8 MiB and commits nothing; a
    ///   killed process leaves only the temporary file, which `remove_stale_temps` removes
    ///   once it is a day old.
    /// - Any other source: `Ok(None)`.
    async fn copy_from_same_store(
        &self,
        source: &dyn StorageClient,
        from: &RelPath,
        listed: &Entry,
        to: &RelPath,
        opts: &WriteOptions,
    ) -> Result<Option<Entry>> {
        let Some(src) = source
            .as_any()
            .and_then(|any| any.downcast_ref::<LocalClient>())
        else {
            return Ok(None);
        };
        let Some((replace, unless_changed)) = commit_mode(to, &opts.mode) else {
            return Ok(None);
        };
        check_not_reserved(to)?;
        self.watch_writeback().await;
        let (src_abs, target) = (src.abs(from), self.abs(to));
        let (from, to, expected) = (from.clone(), to.clone(), Version::of(listed));
        let (root, fsync, memo) = (self.root.clone(), self.fsync, self.kernel_copy.clone());
        let unnamed = (!replace).then(|| self.unnamed_refused.clone());
        let (mtime, requested) = (opts.mtime, opts.permissions);
        let folders =
            WriteOptions::default().with_folder_permissions(opts.folder_permissions.clone());
        let abandon = Abandon::default();
        let abandoned = abandon.flag();
        let work = move || {
            let from_rel = from.as_str();
            let rel = to.as_str();
            let reader = open_source(&src_abs, from_rel)?;
            let before = reader.metadata().map_err(io_on(from_rel))?;
            let changed = |now: &Metadata| {
                !now.is_file() || !expected.matches(&entry_from_metadata(from.clone(), now))
            };
            if changed(&before) {
                return Err(source_changed(from_rel, "since it was listed"));
            }
            let (temp, file) = open_temp(
                &root,
                &to,
                &target,
                rel,
                requested,
                &folders,
                unnamed.as_deref(),
            )?;
            let got = copy_bytes(
                &reader,
                &file,
                before.len(),
                before.dev(),
                before.blocks(),
                &memo,
                &abandoned,
            )
            .map_err(io_on(from_rel))?;
            // The second look: a source written to while it was copied (its mtime moves on
            // every write) is not the version listed, whatever the copy holds.
            let after = reader.metadata().map_err(io_on(from_rel))?;
            if got != before.len() || changed(&after) {
                return Err(source_changed(from_rel, "while it was copied"));
            }
            if abandoned.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(map_io(rel, crate::kernel_copy::abandoned()));
            }
            let metadata = commit(
                temp,
                file,
                &target,
                rel,
                mtime,
                fsync,
                replace,
                unless_changed,
                Some(&folders),
            )?;
            Ok(entry_from_metadata(to, &metadata))
        };
        let copied = if listed.size <= LANE_COPY {
            self.lane.run(work).await?
        } else {
            // Never closed: the client holds it.
            let _permit = self.big_copies.acquire().await.ok();
            blocking(work).await?
        };
        drop(abandon);
        Ok(Some(copied))
    }

    async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> Result<()> {
        let abs = self.abs(path);
        let root = self.root.clone();
        let rel = path.as_str().to_owned();
        let checked = path.clone();
        self.lane
            .run(move || {
                check_folders_by_path(&root, &checked)?;
                // Where it can, the file is removed by its name in its folder, opened without
                // following a symlink, and so are the folders it empties: a symlinked folder,
                // there at the lookup or swapped in later, removes nothing outside the root
                // (red team 30).
                let removed = match Spot::of(&root, &checked, &abs) {
                    // Still the version the engine checked, looked at in the folder just
                    // before the unlink: a save that landed since is not deleted.
                    Ok(at) => match (&opts.if_version, at.metadata()) {
                        (Some(want), Ok(md))
                            if !want.matches(&entry_from_metadata(checked.clone(), &md)) =>
                        {
                            return Err(Error::PreconditionFailed {
                                backend: BACKEND,
                                path: rel,
                                source: Some(
                                    "the file changed since it was checked; not deleted".into(),
                                ),
                            });
                        }
                        _ => at.remove(),
                    },
                    Err(e) if beneath::is_symlinked_folder(&e) => {
                        return Err(folder_not_opened(&root, &checked, &abs, &rel, e));
                    }
                    Err(e) => Err(e),
                };
                match removed {
                    Ok(()) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::NotFound
                            | io::ErrorKind::NotADirectory
                            // A directory is not a file: there is no file here to delete.
                            | io::ErrorKind::IsADirectory
                        ) =>
                    {
                        if opts.report_missing {
                            return Err(Error::not_found("local", &rel));
                        }
                        return Ok(());
                    }
                    Err(e) => return Err(map_io(&rel, e)),
                }
                prune_empty_dirs(&root, &checked);
                Ok(())
            })
            .await
    }

    async fn copy_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        check_not_reserved(to)?;
        self.watch_writeback().await;
        let (root, from, to, fsync) = (self.root.clone(), from.clone(), to.clone(), self.fsync);
        blocking(move || copy_in_root(&root, &from, &to, opts.overwrite, fsync, false)).await
    }

    /// A hard link: no bytes copied, and the old version keeps its inode. Where the
    /// filesystem has no hard links (FAT, some network mounts) or `to` is on another device,
    /// a copy, flushed to disk (with its name) before this returns. One that fails removes
    /// the folders it made for `to` again, each while it is empty.
    async fn preserve(&self, from: &RelPath, to: &RelPath) -> Result<Entry> {
        check_not_reserved(to)?;
        self.watch_writeback().await;
        // The folders a failed preserve made go again (a copy that did not fit in the trash
        // left an empty run folder per run): only those missing before it, each while empty.
        let (root, to_path) = (self.root.clone(), to.clone());
        let missing = blocking(move || Ok(missing_folders(&root, &to_path))).await?;
        let kept = self.preserve_in_place(from, to).await;
        if kept.is_err() && missing > 0 {
            let (root, to_path) = (self.root.clone(), to.clone());
            blocking(move || {
                remove_empty_folders_above(&root, &to_path, missing);
                Ok(())
            })
            .await?;
        }
        kept
    }

    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        check_not_reserved(to)?;
        let (root, from, to) = (self.root.clone(), from.clone(), to.clone());
        self.lane
            .run(move || rename_in_root(&root, &from, &to, opts.overwrite))
            .await
    }
}

impl LocalClient {
    /// Opens the descriptors the barrier reports writeback errors through
    /// ([`WritebackWatch::start`]) if none is held yet, on a blocking thread: the opens wait
    /// on the filesystem, and a hung one (a frozen mount below the root) must hold neither
    /// the runtime's thread nor a cancelled run, which is dropped where it waits.
    async fn watch_writeback(&self) {
        if self.writeback.2.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let (watch, root) = (self.writeback.clone(), self.root.clone());
        // A panic there leaves the descriptor to the first barrier, as before any look.
        let _ = tokio::task::spawn_blocking(move || watch.start(&root)).await;
    }

    /// [`StorageClient::preserve`], all but the removal of the folders a failed one made.
    async fn preserve_in_place(&self, from: &RelPath, to: &RelPath) -> Result<Entry> {
        let (src, target) = (self.abs(from), self.abs(to));
        let (from_rel, to_path) = (from.as_str().to_owned(), to.clone());
        let (root, from_path) = (self.root.clone(), from.clone());
        let linked = blocking(move || {
            let rel = to_path.as_str();
            check_folders_by_path(&root, &from_path)?;
            check_folders_by_path(&root, &to_path)?;
            // Where it can, linked from the source's folder into the target's (made where
            // missing), both opened without following a symlink, by their descriptors: a
            // symlinked folder, there at the lookup or swapped in later, links no file from
            // outside the root into the trash, and plants no link outside it (red team 30).
            let from_at = Spot::source(&root, &from_path, &src)?;
            let source = from_at.file_metadata(&from_rel)?;
            let to_at = Spot::made(&root, &to_path, &target)?;
            let linked = link_checked(&from_at, &source, &to_at, &from_rel, rel)?;
            Ok(linked.map(|linked| entry_from_metadata(to_path, &linked)))
        })
        .await?;
        if let Some(entry) = linked {
            return Ok(entry);
        }
        // No hard links here, or `to` on another device: a copy, flushed to disk.
        let (root, from, to, fsync) = (self.root.clone(), from.clone(), to.clone(), self.fsync);
        blocking(move || copy_in_root(&root, &from, &to, false, fsync, true)).await
    }
}

/// How many of the folders that hold `rel` below `root` are missing, counted from its own
/// folder up to the first one there (by path: a symlinked one counts as there).
fn missing_folders(root: &Path, rel: &RelPath) -> usize {
    let mut missing = 0;
    let mut below = rel.as_str();
    while let Some((dir, _)) = below.rsplit_once('/') {
        if fs::symlink_metadata(root.join(dir)).is_ok() {
            break;
        }
        missing += 1;
        below = dir;
    }
    missing
}

/// Moves `from` to `to` below `root` ([`StorageClient::rename_opts`]): over a file at `to`
/// only with `overwrite`.
///
/// Where it can, the two folders are opened without following a symlink (the target's
/// made where missing) and the file is moved between them by their descriptors, so a
/// folder swapped for a symlink leads nothing outside the root (red team 29): one lookup of
/// each folder is both the check and the use. Else by path, each folder checked first.
fn rename_in_root(root: &Path, from: &RelPath, to: &RelPath, overwrite: bool) -> Result<Entry> {
    let (src, target) = (root.join(from.as_str()), root.join(to.as_str()));
    let (from_rel, rel) = (from.as_str(), to.as_str());
    check_folders_by_path(root, from)?;
    check_folders_by_path(root, to)?;
    // The source first: a missing one makes no folders for its target.
    let from_at = Spot::source(root, from, &src)?;
    from_at.file_metadata(from_rel)?;
    let to_at = Spot::made(root, to, &target)?;
    let moved = |e: io::Error| {
        if e.kind() == io::ErrorKind::CrossesDevices {
            across_filesystems(root, &src, &target, from_rel, rel, e)
        } else {
            map_io(rel, e)
        }
    };
    if overwrite {
        let ((from_folder, from_name), (to_folder, to_name)) = (from_at.at(), to_at.at());
        rustix::fs::renameat(from_folder, from_name, to_folder, to_name)
            .map_err(|e| moved(e.into()))?;
    } else if let Placed::Linked = link_noreplace(from_at.at(), to_at.at()).map_err(moved)?
        && let Err(e) = remove_linked(&from_at, &to_at)
    {
        // The old name stays (a folder this process cannot write to): the move did not
        // happen, so the link just made goes again — while it is still a second name of
        // that very file — instead of leaving a second copy at the target (a trash copy of
        // a file still in place, one more at each retry).
        if let (Ok(a), Ok(b)) = (from_at.metadata(), to_at.metadata())
            && (a.dev(), a.ino()) == (b.dev(), b.ino())
        {
            let _ = to_at.remove();
        }
        return Err(map_io(from_rel, e));
    }
    // The move takes whatever is at `from` by then: a folder, a symlink or a FIFO put there
    // since the look above (a checkout that turns a file into a folder) went into the trash
    // with all it held, and the engine, finding no file at either path, took the file as
    // gone (red team 34). Only a file is moved: anything else goes back.
    if let Ok(moved) = to_at.metadata()
        && !moved.is_file()
    {
        return Err(put_back(root, from, &from_at, to, &to_at));
    }
    if src != target {
        prune_empty_dirs(root, from);
    }
    let metadata = to_at.file_metadata(rel)?;
    Ok(entry_from_metadata(to.clone(), &metadata))
}

/// After a move by a link at `to_at` ([`Placed::Linked`]): removes the old name at
/// `from_at`, only while it is a name of the file linked.
///
/// An unlink of the old name would remove whatever is there by then: a save that replaced
/// the file since the link (an editor's rename over it) was deleted, and the trash held the
/// old version only, as the engine listed it (red team 34). So the old name is first moved
/// aside to an aside name in its folder ([`aside_name`]; one step: whatever is there goes),
/// then that name is removed if it is the file linked, else put back at the old name
/// ([`link_noreplace`], which replaces nothing: where another save came meanwhile, the one
/// moved aside keeps its aside name). Killed between the two steps, the aside name is left:
/// it is a second name of the file at `to_at`, unless a save landed in the same moment. The
/// next run recovers it by its link count (see `aside.rs`): it never has the stale-temp
/// format, so it is never removed as a temp file.
///
/// # Errors
/// The move aside's (a folder this process cannot write to): the old name is then there
/// as it was.
fn remove_linked(from_at: &Spot, to_at: &Spot) -> io::Result<()> {
    use rustix::fs::{AtFlags, renameat, statat, unlinkat};
    let (folder, name) = from_at.at();
    let aside = name.with_file_name(aside_name(
        name.file_name().unwrap_or_default(),
        (temp_pid() << 32) | (TEMP_COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff),
    ));
    renameat(folder, name, folder, &aside)?;
    let was = statat(folder, &aside, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from);
    let same = match (to_at.metadata(), was) {
        (Ok(linked), Ok(was)) => Ok((was.st_dev, was.st_ino) == (linked.dev(), linked.ino())),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    if let Ok(true) = same {
        unlinkat(folder, &aside, AtFlags::empty())?;
        return Ok(());
    }
    // Another file, or not known: back where it was (the caller then removes the link of
    // an unknown one, a second name of the file still in place).
    match link_noreplace((folder, &aside), (folder, name)) {
        Ok(Placed::Linked) => unlinkat(folder, &aside, AtFlags::empty())?,
        Ok(Placed::Renamed) => {}
        Err(e) => tracing::warn!(
            aside = %aside.display(),
            "a version saved while the file was moved could not be put back ({e}): it keeps \
             its aside name until the next run recovers it"
        ),
    }
    same.map(|_| ())
}

/// Puts back at `from` what [`rename_in_root`] moved to `to` that is not a regular file,
/// without replacing anything put at `from` since, and removes the folders made for it
/// that are empty again. Returns the move's error: `NotFound` (no file was at `from`) once
/// it is back, else one that says where it is.
fn put_back(root: &Path, from: &RelPath, from_at: &Spot, to: &RelPath, to_at: &Spot) -> Error {
    match link_noreplace(to_at.at(), from_at.at()) {
        Ok(placed) => {
            if let Placed::Linked = placed
                && let Err(e) = to_at.remove()
            {
                tracing::warn!(path = to.as_str(), "could not remove a second name: {e}");
            }
            prune_empty_dirs(root, to);
            Error::not_found(BACKEND, from.as_str())
        }
        Err(e) => Error::other(
            BACKEND,
            from.as_str(),
            format!(
                "not a file when it was moved (a folder or a link was put there meanwhile): \
                 it could not be put back ({e}) and is at {:?}",
                to.as_str()
            ),
        ),
    }
}

#[cfg(test)]
mod writeback_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use syncengine_core::StorageClientExt;

    /// The descriptor `syncfs` reports writeback errors through is opened when the client
    /// first looks at its root, before any write — on the nearest existing folder while the
    /// root is missing — and is the one each barrier uses afterwards.
    #[tokio::test]
    async fn the_barrier_descriptor_is_held_from_before_the_first_write() {
        let dir = tempfile::tempdir().unwrap();
        let client = LocalClient::new(dir.path().join("not-yet"));
        assert!(client.writeback.0.lock().unwrap().is_none());
        assert!(!client.root_exists().await.unwrap());
        let held_ino = {
            use std::os::unix::fs::MetadataExt;
            let held = client.writeback.0.lock().unwrap();
            held.as_ref()
                .expect("opened on the nearest folder")
                .metadata()
                .unwrap()
                .ino()
        };
        use std::os::unix::fs::MetadataExt;
        assert_eq!(held_ino, fs::metadata(dir.path()).unwrap().ino());
        client
            .put(
                &RelPath::new("a/b.txt").unwrap(),
                bytes::Bytes::from_static(b"x"),
            )
            .await
            .unwrap();
        client.sync_written().await.unwrap();
        // Same filesystem: the descriptor held from before the write is kept.
        let after = client
            .writeback
            .0
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .metadata()
            .unwrap()
            .ino();
        assert_eq!(
            after, held_ino,
            "the barrier replaced the descriptor held before the write"
        );
    }

    /// A failed barrier is never retried: its error is reported once, through the held
    /// descriptor, and a second `syncfs` would succeed without the data.
    #[test]
    fn a_failed_flush_is_not_transient_whatever_the_errno() {
        let errno = |e: rustix::io::Errno| io::Error::from_raw_os_error(e.raw_os_error());
        // What the barrier mapped its error with before: a timeout was retried.
        assert!(map_io("", errno(rustix::io::Errno::TIMEDOUT)).is_transient());
        for e in [
            rustix::io::Errno::TIMEDOUT,
            rustix::io::Errno::INTR,
            rustix::io::Errno::CONNRESET,
            rustix::io::Errno::PIPE,
            rustix::io::Errno::AGAIN,
            rustix::io::Errno::IO,
            rustix::io::Errno::NOSPC,
        ] {
            assert!(
                !flush_failed(errno(e)).is_transient(),
                "{e:?} would be retried"
            );
        }
    }
}

#[cfg(test)]
mod create_tests {
    //! A write that creates a file, between its folder's lookup and its link: what a folder
    //! swapped, removed or made again meanwhile does (`beneath`; red team 27).
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A root below a new temp dir, holding `folders` (`../x` makes `x` beside the root), and
    /// the dir (drop it last).
    fn root_with(folders: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for folder in folders {
            fs::create_dir_all(root.join(folder)).unwrap();
        }
        (dir, root)
    }

    /// A write that creates `rel` below `root`, up to its commit: the unnamed file holds
    /// "new". Returns it with the target path.
    fn staged(root: &Path, rel: &str, folders: &WriteOptions) -> (TempFile, File, PathBuf) {
        let target = root.join(rel);
        let refused = AtomicBool::new(false);
        let path = RelPath::new(rel).unwrap();
        let (temp, mut file) =
            open_temp(root, &path, &target, rel, None, folders, Some(&refused)).unwrap();
        assert!(
            temp.unnamed && temp.folder.is_some(),
            "not made in its folder"
        );
        file.write_all(b"new").unwrap();
        (temp, file, target)
    }

    /// The folder is removed between its lookup and the unnamed file's creation in it (a
    /// concurrent move pruned it as empty): ext4 refuses with `EPERM`, which failed the write
    /// as "permission denied" (CI, session 24, 1 run in 60 of red team 27's engine test under
    /// load). It is not found, as for a named file, and `open_temp` makes the folder again.
    #[test]
    fn an_unnamed_file_in_a_folder_removed_since_its_lookup_is_not_found() {
        let (_dir, root) = root_with(&["a"]);
        let mut folder =
            Some(beneath::open_folder_of(&root, &RelPath::new("a/f").unwrap()).unwrap());
        fs::remove_dir(root.join("a")).unwrap();
        let refused = AtomicBool::new(false);
        match TempFile::create_unnamed(&root.join("a"), &mut folder, 0o600, &refused) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}"),
            // A filesystem that makes it anyway (tmpfs): nothing to map.
            Ok(made) => assert!(made.is_none() || !refused.load(Ordering::Relaxed)),
        }
    }

    /// The commit of a write that creates `rel` (`folders`: where its folder is made again).
    fn commit_new(
        (temp, file, target): (TempFile, File, PathBuf),
        rel: &str,
        folders: Option<&WriteOptions>,
    ) -> Result<Metadata> {
        commit(temp, file, &target, rel, None, false, false, None, folders)
    }

    /// A folder swapped for a symlink while a new file is written into it (after its folder
    /// was looked up, before the file is linked) cannot lead the file outside the root: the
    /// file is linked into the folder that was looked up, wherever that went. Linked by path,
    /// as before `beneath`, it followed the new symlink out of the root.
    #[test]
    fn a_folder_swapped_for_a_symlink_mid_write_leads_nowhere_outside() {
        assert!(
            !cfg!(target_os = "linux") || beneath::available(),
            "openat2 (Linux 5.6) is refused here: the folder check falls back to lstat"
        );
        let (dir, root) = root_with(&["a", "../outside"]);
        let outside = dir.path().join("outside");
        let write = staged(&root, "a/f", &WriteOptions::default());
        fs::rename(root.join("a"), root.join("moved")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
        let placed = commit_new(write, "a/f", None);
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "the file went through the symlink, out of the root"
        );
        placed.unwrap();
        assert_eq!(fs::read(root.join("moved/f")).unwrap(), b"new");
    }

    /// The link kernels before 6.10 make for an unprivileged user (by descriptor is refused
    /// there: `/proc/self/fd`, into the folder's descriptor) is as safe as the one by
    /// descriptor: a folder swapped for a symlink after the lookup leads the file nowhere
    /// outside the root. This machine's kernel links by descriptor, so the commit alone
    /// would not run this route.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_link_through_proc_follows_the_folder_not_a_symlink() {
        let (dir, root) = root_with(&["a", "../outside"]);
        let outside = dir.path().join("outside");
        let (temp, file, target) = staged(&root, "a/f", &WriteOptions::default());
        fs::rename(root.join("a"), root.join("moved")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
        link_through_proc(&file, temp.folder.as_ref(), &target).unwrap();
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "the file went through the symlink, out of the root"
        );
        assert_eq!(fs::read(root.join("moved/f")).unwrap(), b"new");
        // A name that is taken is never replaced.
        let (temp, file, _) = staged(&root, "moved/g", &WriteOptions::default());
        let taken = link_through_proc(&file, temp.folder.as_ref(), &root.join("moved/f"));
        assert_eq!(taken.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(root.join("moved/f")).unwrap(), b"new");
    }

    /// A new file whose folder is deleted and replaced by a symlink to a folder outside the
    /// root after its folder was looked up (the link then fails: the folder it was made in
    /// is gone) must not lead the clean-up that follows a failed link outside the root
    /// either: the empty folders `remove_empty_folders` clears "in the way of the file" were
    /// looked up by path, through the new symlink, and removed outside the root.
    #[test]
    fn a_failed_link_clears_no_empty_folders_outside_the_root() {
        let (dir, root) = root_with(&["a", "../outside/f/empty"]);
        let outside = dir.path().join("outside");
        let write = staged(&root, "a/f", &WriteOptions::default());
        fs::remove_dir(root.join("a")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
        let placed = commit_new(write, "a/f", None);
        assert!(
            outside.join("f/empty").is_dir(),
            "empty folders outside the root were removed through the symlink"
        );
        assert!(placed.is_err(), "the folder the file was made in is gone");
    }

    /// Empty folders in the way of a new file inside the root are still cleared (through the
    /// folder's descriptor) and the file linked in their place.
    #[test]
    fn empty_folders_in_the_way_of_a_new_file_are_still_cleared() {
        let (_dir, root) = root_with(&["a/f/empty/deeper"]);
        let write = staged(&root, "a/f", &WriteOptions::default());
        commit_new(write, "a/f", None).unwrap();
        assert_eq!(fs::read(root.join("a/f")).unwrap(), b"new");
    }

    /// A new file whose folder was removed and replaced by a symlink to a folder outside the
    /// root before it was linked is not linked through the symlink when its folder is looked
    /// up again: refused, naming the link, and nothing lands outside.
    #[test]
    fn a_folder_made_again_as_a_symlink_is_refused_and_named() {
        let (dir, root) = root_with(&["a/b", "../outside"]);
        let outside = dir.path().join("outside");
        let folders = WriteOptions::default();
        let write = staged(&root, "a/b/f", &folders);
        fs::remove_dir(root.join("a/b")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a/b")).unwrap();
        let placed = commit_new(write, "a/b/f", Some(&folders));
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "linked outside");
        let e = placed.unwrap_err().to_string();
        assert!(e.contains("\"a/b\" is a symlink"), "{e}");
    }

    /// Where the folder is made again, it gets the requested bits (a private folder stays
    /// private).
    #[test]
    fn a_folder_made_again_gets_the_requested_bits() {
        let (_dir, root) = root_with(&["a"]);
        let folders = WriteOptions::default().with_folder_permissions(vec![Some(0o700)]);
        let write = staged(&root, "a/f", &folders);
        fs::remove_dir(root.join("a")).unwrap();
        commit_new(write, "a/f", Some(&folders)).unwrap();
        assert_eq!(fs::read(root.join("a/f")).unwrap(), b"new");
        let bits = fs::metadata(root.join("a")).unwrap().permissions().mode() & 0o777;
        assert_eq!(bits, 0o700);
    }

    /// A write refused because a folder on its way was a symlink at the lookup names the
    /// folders even where the link is gone by the time the error is made (a symlink swapped
    /// in and out meanwhile): under a swapping loop a third of the refusals said only "Too
    /// many levels of symbolic links (os error 40)".
    #[test]
    fn a_refusal_names_the_folders_though_the_link_is_gone() {
        let (_dir, root) = root_with(&["a/b"]);
        let path = RelPath::new("a/b/f").unwrap();
        let e = io::Error::from_raw_os_error(rustix::io::Errno::LOOP.raw_os_error());
        let e = folder_not_opened(&root, &path, &root.join("a/b/f"), "a/b/f", e).to_string();
        assert!(e.contains("\"a/b\""), "{e}");
        assert!(
            e.contains("was a symlink when this file was written, and is none now"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod spot_tests {
    //! Trash links, copies, deletes and pruning through folders opened beneath the root
    //! ([`Spot`]; red team 30).
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    /// A root holding `a/f` ("old") and the empty folder `t`, below a new temp dir (drop it
    /// last).
    fn root_with_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("a")).unwrap();
        fs::create_dir_all(root.join("t")).unwrap();
        fs::write(root.join("a/f"), b"old").unwrap();
        (dir, root)
    }

    /// A trash link of the file looked at: the very file, in the folder opened beneath the
    /// root.
    #[test]
    fn a_trash_link_is_the_file_looked_at() {
        let (_dir, root) = root_with_file();
        let from = Spot::source(&root, &rel("a/f"), &root.join("a/f")).unwrap();
        let source = from.file_metadata("a/f").unwrap();
        let to = Spot::made(&root, &rel("t/x/f"), &root.join("t/x/f")).unwrap();
        let linked = link_checked(&from, &source, &to, "a/f", "t/x/f")
            .unwrap()
            .unwrap();
        assert_eq!(linked.ino(), source.ino());
        assert_eq!(fs::read(root.join("t/x/f")).unwrap(), b"old");
    }

    /// A file put at `from` between the look at it and the link (saved by the user: a new
    /// inode) is not left in the trash for the version the engine looked at: the link is
    /// removed and the call fails. Nor is a symlink put there (linked as itself).
    #[test]
    fn a_file_replaced_before_its_trash_link_is_not_kept_for_it() {
        let (_dir, root) = root_with_file();
        let from = Spot::source(&root, &rel("a/f"), &root.join("a/f")).unwrap();
        let source = from.file_metadata("a/f").unwrap();
        fs::write(root.join("a/new"), b"new").unwrap();
        fs::rename(root.join("a/new"), root.join("a/f")).unwrap();
        let to = Spot::made(&root, &rel("t/f"), &root.join("t/f")).unwrap();
        let e = link_checked(&from, &source, &to, "a/f", "t/f").unwrap_err();
        assert!(matches!(e, Error::PreconditionFailed { .. }), "{e}");
        assert!(fs::symlink_metadata(root.join("t/f")).is_err(), "left");
        fs::remove_file(root.join("a/f")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("a/f")).unwrap();
        let e = link_checked(&from, &source, &to, "a/f", "t/f").unwrap_err();
        assert!(matches!(e, Error::PreconditionFailed { .. }), "{e}");
        assert!(fs::symlink_metadata(root.join("t/f")).is_err(), "left");
    }

    /// A folder swapped for a symlink after the spots were found leads the link nowhere
    /// outside the root: it goes from and into the folders looked up, wherever they went.
    #[test]
    fn a_trash_link_follows_the_folders_not_a_symlink() {
        assert!(
            !cfg!(target_os = "linux") || beneath::available(),
            "openat2 (Linux 5.6) is refused here: the folder check falls back to lstat"
        );
        let (dir, root) = root_with_file();
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("x")).unwrap();
        fs::write(outside.join("f"), b"outside").unwrap();
        let from = Spot::source(&root, &rel("a/f"), &root.join("a/f")).unwrap();
        let source = from.file_metadata("a/f").unwrap();
        let to = Spot::made(&root, &rel("t/x/f"), &root.join("t/x/f")).unwrap();
        for top in ["a", "t"] {
            fs::rename(root.join(top), dir.path().join(format!("moved-{top}"))).unwrap();
            std::os::unix::fs::symlink(&outside, root.join(top)).unwrap();
        }
        link_checked(&from, &source, &to, "a/f", "t/x/f")
            .unwrap()
            .unwrap();
        assert_eq!(fs::read(dir.path().join("moved-t/x/f")).unwrap(), b"old");
        assert!(fs::symlink_metadata(outside.join("x/f")).is_err());
        assert_eq!(fs::metadata(outside.join("f")).unwrap().nlink(), 1);
    }

    /// Where the folders cannot be opened beneath the root (no `openat2`), the spots are
    /// paths and act as before, checks included: a link of the file looked at, a refused one
    /// of a file put there since, a read, a remove.
    #[test]
    fn spots_by_path_act_as_before() {
        let (_dir, root) = root_with_file();
        let (from, to) = (
            Spot::by_path(&root.join("a/f")),
            Spot::by_path(&root.join("t/f")),
        );
        let source = from.file_metadata("a/f").unwrap();
        let linked = link_checked(&from, &source, &to, "a/f", "t/f")
            .unwrap()
            .unwrap();
        assert_eq!(linked.ino(), source.ino());
        let mut read = String::new();
        to.open_read().unwrap().read_to_string(&mut read).unwrap();
        assert_eq!(read, "old");
        to.remove().unwrap();
        assert!(to.file_metadata("t/f").unwrap_err().is_not_found());
        fs::write(root.join("a/new"), b"new").unwrap();
        fs::rename(root.join("a/new"), root.join("a/f")).unwrap();
        let e = link_checked(&from, &source, &to, "a/f", "t/f").unwrap_err();
        assert!(matches!(e, Error::PreconditionFailed { .. }), "{e}");
        assert!(fs::symlink_metadata(root.join("t/f")).is_err(), "left");
    }
}
