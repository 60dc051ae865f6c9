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
//! The folders such a write makes where they are missing are made the same way
//! ([`make_folders_of`]): each in the descriptor of the one above it.
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

/// Makes the missing folders that hold `rel` below `root` and opens (`O_PATH`) the one that
/// holds it, where [`available`]: the same folder [`open_folder_of`] finds.
///
/// Each folder is looked up in the one above it without following a symlink (a name at a
/// time: this also finds a path too long for [`open_folder_of`]'s one lookup), and a missing
/// one is made there (`mkdirat`) with the bits `mode(depth)` gives (depth 0 is the top one;
/// `None`: `0o777` less the umask). So a folder swapped for a symlink while the folders are made
/// leads no new folder outside the root, as a `mkdir` of the whole path would. A root that
/// is missing is made by path, as its own path may hold symlinks.
///
/// # Errors
/// As [`open_folder_of`]'s: `ELOOP` for a symlinked folder on the way, `NotADirectory` for
/// a file in a folder's place; or what `mkdirat` says (`PermissionDenied`, …).
#[cfg(target_os = "linux")]
pub(crate) fn make_folders_of(
    root: &Path,
    rel: &RelPath,
    mode: impl Fn(usize) -> Option<u32>,
) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags, mkdirat, open, openat2};
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut folder = match open(root, flags, Mode::empty()) {
        Err(rustix::io::Errno::NOENT) => {
            std::fs::create_dir_all(root)?;
            open(root, flags, Mode::empty())?
        }
        opened => opened?,
    };
    let Some((folders, _)) = rel.as_str().rsplit_once('/') else {
        return Ok(folder);
    };
    for (depth, name) in folders.split('/').enumerate() {
        let step =
            |at: &OwnedFd| openat2(at, name, flags, Mode::empty(), ResolveFlags::NO_SYMLINKS);
        folder = match step(&folder) {
            Err(rustix::io::Errno::NOENT) => {
                let bits = Mode::from_raw_mode(mode(depth).unwrap_or(0o777));
                match mkdirat(&folder, name, bits) {
                    // Made meanwhile by another write: looked up as any folder is.
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                step(&folder)?
            }
            opened => opened?,
        };
    }
    Ok(folder)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn make_folders_of(
    _root: &Path,
    _rel: &RelPath,
    _mode: impl Fn(usize) -> Option<u32>,
) -> io::Result<OwnedFd> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Whether an error of [`open_folder_of`] means a folder on the way is a symlink.
pub(crate) fn is_symlinked_folder(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn rel(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    /// Missing folders are made one in another: with the bits asked for per depth, and the
    /// folder opened is the one `open_folder_of` finds.
    #[test]
    fn missing_folders_are_made_with_their_bits() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let bits = |depth: usize| {
            [Some(0o750), None, Some(0o700)]
                .get(depth)
                .copied()
                .flatten()
        };
        let made = make_folders_of(&root, &rel("a/b/c/f"), bits).unwrap();
        let found = open_folder_of(&root, &rel("a/b/c/f")).unwrap();
        let (made, found) = (
            rustix::fs::fstat(&made).unwrap(),
            rustix::fs::fstat(&found).unwrap(),
        );
        assert_eq!((made.st_dev, made.st_ino), (found.st_dev, found.st_ino));
        let mode = |p: &str| {
            std::fs::metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("a"), 0o750);
        assert_eq!(mode("a/b/c"), 0o700);
        // Made again: nothing changes, nothing fails.
        make_folders_of(&root, &rel("a/b/c/g"), bits).unwrap();
        assert_eq!(mode("a"), 0o750);
    }

    /// A symlinked folder on the way (a folder swapped for one after the lookup that found
    /// a folder missing) leads no new folder outside the root: the walk refuses it. A `mkdir`
    /// of the whole path, as before, made `outside/b`.
    #[test]
    fn no_folder_is_made_through_a_symlinked_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
        let refused = make_folders_of(&root, &rel("a/b/f"), |_| None).unwrap_err();
        assert!(is_symlinked_folder(&refused), "{refused}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // A file in a folder's place is named as such.
        std::fs::write(root.join("x"), b"file").unwrap();
        let in_the_way = make_folders_of(&root, &rel("x/y/f"), |_| None).unwrap_err();
        assert_eq!(in_the_way.kind(), io::ErrorKind::NotADirectory);
        assert_eq!(std::fs::metadata(root.join("x")).unwrap().size(), 4);
    }
}
