//! The folder that holds a path below a root, opened without following a symlink on the
//! way, in one lookup (`openat2(2)` with `RESOLVE_NO_SYMLINKS`, Linux 5.6 and later).
//!
//! Nothing is written through a symlinked folder inside a root: it may lead outside it. A
//! write that creates a file makes its unnamed temporary file in the folder this opens and
//! links it there by the same descriptor, so the check and the use are one step: a folder
//! swapped for a symlink after the lookup cannot redirect the file. It is also cheaper than
//! the check it replaces (an `lstat` of every folder from the root down, each a lookup from
//! `/`), which a first copy of many small files paid for every file.
//!
//! Where `openat2` is missing (an older kernel, another Unix, or a seccomp filter that
//! refuses it: [`available`]), the caller checks each folder with `lstat`
//! instead, as before.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::OnceLock;

use syncengine_core::RelPath;

/// Whether `openat2` works here (looked up once).
#[cfg(target_os = "linux")]
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        use rustix::fs::{CWD, Mode, OFlags, ResolveFlags, openat2};
        // Missing before Linux 5.6 (ENOSYS); a seccomp filter may refuse it (EPERM).
        let probe = openat2(
            CWD,
            "/",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS,
        );
        if let Err(e) = &probe {
            tracing::debug!("openat2 is not available ({e}); folders are checked with lstat");
        }
        probe.is_ok()
    })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn available() -> bool {
    false
}

/// Opens (`O_PATH`) the folder holding `rel` below `root`, where [`available`]. The root
/// itself is opened as any path is (it may be a symlink); no folder between it and `rel`'s
/// own name may be one.
///
/// One lookup of the whole path, refusing every symlink on it, where the root's own path
/// has none (the usual case); where it has one (the lookup fails with `ELOOP` and the
/// second way works, remembered for the process), the root is opened first, following
/// symlinks, and the folders below it are looked up from there. Both give the same answer;
/// the first saves a call and a descriptor per file.
///
/// # Errors
/// The lookup's: `ELOOP` when a folder on the way is a symlink ([`is_symlinked_folder`]),
/// `NotFound` when one is missing, `NotADirectory` when a file is in a folder's place.
#[cfg(target_os = "linux")]
pub(crate) fn open_folder_of(root: &Path, rel: &RelPath) -> io::Result<OwnedFd> {
    use rustix::fs::{CWD, Mode, OFlags, ResolveFlags, open, openat2};
    use std::sync::atomic::{AtomicBool, Ordering};
    /// Set once a root's own path held a symlink.
    static LINKED_ROOTS: AtomicBool = AtomicBool::new(false);
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let folders = rel.as_str().rsplit_once('/').map(|(folders, _)| folders);
    // Not `RESOLVE_BENEATH`: a `RelPath` has no `..` to escape by, and a scoped lookup may
    // fail with `EAGAIN` when anything on the machine is renamed meanwhile.
    let resolve = ResolveFlags::NO_SYMLINKS;
    if !LINKED_ROOTS.load(Ordering::Relaxed) {
        let whole = folders.map_or_else(|| root.to_path_buf(), |folders| root.join(folders));
        match openat2(CWD, &whole, flags, Mode::empty(), resolve) {
            Err(rustix::io::Errno::LOOP) => {}
            done => return Ok(done?),
        }
    }
    let root_fd = open(root, flags, Mode::empty())?;
    let folder = match folders {
        Some(folders) => openat2(&root_fd, folders, flags, Mode::empty(), resolve)?,
        None => root_fd,
    };
    if !LINKED_ROOTS.swap(true, Ordering::Relaxed) {
        tracing::debug!(root = %root.display(), "the root's path holds a symlink: its folders are looked up from the root");
    }
    Ok(folder)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn open_folder_of(_root: &Path, _rel: &RelPath) -> io::Result<OwnedFd> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Whether an error of [`open_folder_of`] means a folder on the way is a symlink.
pub(crate) fn is_symlinked_folder(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
}
