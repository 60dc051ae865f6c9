//! What a killed run can leave in the tree besides temp files: a file *moved aside* by a
//! move on a filesystem without `RENAME_NOREPLACE`, and how the next run recovers it.
//!
//! There a move is a hard link at the target, then the removal of the old name. So that the
//! removal never takes a save that replaced the file in between, the old name is first
//! renamed to an aside name in its folder and removed only if it is the file linked
//! (`remove_linked` in `client.rs`). A kill between those two steps leaves the aside
//! name. It is usually a second name of the moved file; but if a save landed at the old name
//! in that same moment, it is the only name of the user's new version. So an aside name is
//! never taken for a stale temp file: it has a format of its own, and the run after a
//! listing found one ([`Leftovers::recover_asides`]) removes it only while it is a second
//! name (link count above one) or was one when listed (the run may have deleted the other
//! name since: a deletion with no trash must not bring the file back under its old name),
//! and otherwise puts the file back at its old name, or, where something is there by then,
//! at a visible recovery name.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use syncengine_core::RelPath;
use syncengine_core::ignore_rules::StaleTemps;

use crate::TEMP_PREFIX;
use crate::beneath;

/// What follows [`TEMP_PREFIX`] in an aside name: never the 16 hex digits of a temp file,
/// so the stale-temp rule never matches it.
const ASIDE_TAG: &str = "aside-";

/// The longest file name of common Linux filesystems (bytes).
const NAME_MAX: usize = 255;

/// The prefix of the visible name a file moved aside gets when its old name is taken.
pub(crate) const RECOVERED_PREFIX: &str = "recovered-by-syncengine-";

/// The aside name for the file `name` in the same folder, unique by `unique`:
/// `.syncengine-tmp-aside-<16 hex>-<name>`, or without `-<name>` where that would be longer
/// than a file name may be (the recovery then cannot tell the old name).
pub(crate) fn aside_name(name: &OsStr, unique: u64) -> OsString {
    let mut aside = format!("{TEMP_PREFIX}{ASIDE_TAG}{unique:016x}").into_bytes();
    if aside.len() + 1 + name.len() <= NAME_MAX && !name.is_empty() {
        aside.push(b'-');
        aside.extend_from_slice(name.as_bytes());
    }
    OsString::from_vec(aside)
}

/// For an aside name ([`aside_name`]): `Some(Some(old name))`, or `Some(None)` when the name
/// does not say; `None` for any other name.
pub(crate) fn aside_origin(name: &OsStr) -> Option<Option<&OsStr>> {
    let tail = name
        .as_bytes()
        .strip_prefix(TEMP_PREFIX.as_bytes())?
        .strip_prefix(ASIDE_TAG.as_bytes())?;
    let (hex, rest) = (tail.get(..16)?, tail.get(16..)?);
    if !hex
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return None;
    }
    match rest {
        [] => Some(None),
        [b'-', old @ ..] if !old.is_empty() && !old.contains(&b'/') => {
            Some(Some(OsStr::from_bytes(old)))
        }
        _ => None,
    }
}

/// What listings found that the engine's own writes and moves left behind: temp files
/// (removed by the core's stale-temp rule) and files moved aside ([`aside_name`]), until the
/// run after the listing asks for them. Listings only note: a dry run lists too.
#[derive(Debug, Default)]
pub(crate) struct Leftovers {
    /// Temp files, by the core's one rule.
    pub(crate) temps: StaleTemps,
    /// Files moved aside, by path: the file listed there.
    asides: Mutex<BTreeMap<PathBuf, Noted>>,
}

/// The file a listing found under an aside name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Noted {
    /// Its device and inode: the recovery acts only on that file.
    id: (u64, u64),
    /// It had another name then (a link count above one): the file a move linked at its
    /// target, never a save. The run may remove that other name since (a deletion with no
    /// trash, or a trash elsewhere); the aside name is still no file of its own.
    second_name: bool,
}

/// What [`Leftovers::recover_asides`] did with one file moved aside.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recovered {
    /// It was a second name of a file with another name (the move had linked it): removed.
    SecondNameRemoved,
    /// Its only name: back at its old name.
    PutBack(PathBuf),
    /// Its only name, and its old name was taken or unknown: at this visible name.
    Renamed(PathBuf),
    /// Not there any more, or not a regular file: left as it is.
    Left,
}

impl Leftovers {
    /// Notes `path` (named `name`, which starts with [`TEMP_PREFIX`]): a stale temp file by
    /// the core's rule, or a regular file moved aside.
    pub(crate) fn note(&self, path: &Path, name: &OsStr) {
        let Ok(md) = std::fs::symlink_metadata(path) else {
            return;
        };
        if !md.is_file() {
            return;
        }
        if aside_origin(name).is_some() {
            let noted = Noted {
                id: (md.dev(), md.ino()),
                second_name: md.nlink() > 1,
            };
            if let Ok(mut asides) = self.asides.lock() {
                let entry = asides.entry(path.to_path_buf()).or_insert(noted);
                // Listed again (a second listing of the run): a second name once is one
                // for good, as long as it is the same file.
                if entry.id == noted.id {
                    entry.second_name |= noted.second_name;
                } else {
                    *entry = noted;
                }
            }
            return;
        }
        let Some(name) = name.to_str() else { return };
        // The access time counts as a touch: a write in progress sets its temp's
        // modification time to the source's (often years ago) just before renaming it
        // into place, and leaves the access time at the temp's creation.
        let newest = [md.modified().ok(), md.accessed().ok()]
            .into_iter()
            .flatten()
            .max();
        self.temps
            .consider(path.to_string_lossy().into_owned(), name, newest);
    }

    /// Recovers every file moved aside that listings found since the last call (see the
    /// module's docs), each by [`recover_aside`]. Returns what was done, by path; a file
    /// that could not be recovered is logged and stays for the next run.
    ///
    /// `root` is the client's root, the one the listings walked: each aside's folder is
    /// opened below it without following a symlink where it can be ([`beneath`]), so a
    /// folder swapped for a symlink since the listing leads nowhere outside the root.
    pub(crate) fn recover_asides(&self, root: &Path) -> Vec<(PathBuf, Recovered)> {
        let found = match self.asides.lock() {
            Ok(mut asides) => std::mem::take(&mut *asides),
            Err(_) => return Vec::new(),
        };
        let mut done = Vec::new();
        for (path, noted) in found {
            match recover_aside(root, &path, noted) {
                Ok(recovered) => {
                    match &recovered {
                        Recovered::SecondNameRemoved => tracing::info!(
                            path = %path.display(),
                            "removed a second name an interrupted move left"
                        ),
                        Recovered::PutBack(to) => tracing::warn!(
                            path = %to.display(),
                            "a file an interrupted move had set aside is back at its name"
                        ),
                        Recovered::Renamed(to) => tracing::warn!(
                            path = %to.display(),
                            "a file an interrupted move had set aside is kept under this \
                             name: its old name is taken or unknown"
                        ),
                        Recovered::Left => {}
                    }
                    done.push((path, recovered));
                }
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    "could not recover a file an interrupted move had set aside ({e}): \
                     it stays until the next run"
                ),
            }
        }
        done
    }
}

/// Opens (`O_PATH`) the folder of `path`, below `root` without following a symlink where
/// [`beneath::available`] (else by path, as before).
fn open_folder(root: &Path, path: &Path) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, open};
    if beneath::available()
        && let Ok(below) = path.strip_prefix(root)
    {
        let rel = below
            .to_str()
            .and_then(|below| RelPath::new(below).ok())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidFilename))?;
        return beneath::open_folder_of(root, &rel);
    }
    Ok(open(
        path.parent().unwrap_or(path),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The visible name a file moved aside as `name` gets where its old name is taken or
/// unknown: `recovered-by-syncengine-<16 hex>-<old name>`, or without `-<old name>` where
/// that would be longer than a file name may be (the prefix is longer than the aside's).
fn recovery_name(name: &OsStr, origin: Option<&OsStr>) -> OsString {
    let hex = &name.as_bytes()[TEMP_PREFIX.len() + ASIDE_TAG.len()..][..16];
    let mut visible = RECOVERED_PREFIX.as_bytes().to_vec();
    visible.extend_from_slice(hex);
    if let Some(origin) = origin
        && visible.len() + 1 + origin.len() <= NAME_MAX
    {
        visible.push(b'-');
        visible.extend_from_slice(origin.as_bytes());
    }
    OsString::from_vec(visible)
}

/// Recovers one file moved aside at `path` below `root` (see [`Leftovers::recover_asides`]),
/// only if it is still the file a listing found there (`noted`).
///
/// Only a name of a file with other names is removed, or of one that had others when the
/// listing found it: the link count is read from the file itself just before, and a file
/// that never had another name is only ever renamed, never replacing anything
/// ([`crate::client::link_noreplace`]). Every step is taken in the folder opened once.
fn recover_aside(root: &Path, path: &Path, noted: Noted) -> io::Result<Recovered> {
    use rustix::fs::{AtFlags, FileType, statat, unlinkat};
    let (Some(folder), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(Recovered::Left);
    };
    let Some(origin) = aside_origin(name) else {
        return Ok(Recovered::Left);
    };
    let at = match open_folder(root, path) {
        Ok(at) => at,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Recovered::Left),
        Err(e) => return Err(e),
    };
    let md = match statat(&at, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(md) => md,
        Err(rustix::io::Errno::NOENT) => return Ok(Recovered::Left),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(md.st_mode) != FileType::RegularFile {
        return Ok(Recovered::Left);
    }
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    let id = (md.st_dev as u64, md.st_ino as u64);
    if noted.id != id {
        // Another file than the one listed: the next listing tells.
        return Ok(Recovered::Left);
    }
    if md.st_nlink > 1 || noted.second_name {
        return match unlinkat(&at, name, AtFlags::empty()) {
            Ok(()) => Ok(Recovered::SecondNameRemoved),
            Err(rustix::io::Errno::NOENT) => Ok(Recovered::Left),
            Err(e) => Err(e.into()),
        };
    }
    let place = |to: &OsStr| -> io::Result<bool> {
        let (from, to) = (Path::new(name), Path::new(to));
        match crate::client::link_noreplace((at.as_fd(), from), (at.as_fd(), to)) {
            Ok(crate::client::Placed::Linked) => {
                unlinkat(&at, from, AtFlags::empty())?;
                Ok(true)
            }
            Ok(crate::client::Placed::Renamed) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    };
    if let Some(origin) = origin
        && place(origin)?
    {
        return Ok(Recovered::PutBack(folder.join(origin)));
    }
    // The 16 hex digits of the aside name keep the recovery name unique.
    let visible = recovery_name(name, origin);
    if place(&visible)? {
        return Ok(Recovered::Renamed(folder.join(visible)));
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{} is taken", folder.join(visible).display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aside_name_says_its_old_name_when_it_fits() {
        let aside = aside_name(OsStr::new("report.txt"), 0xab);
        assert_eq!(aside, ".syncengine-tmp-aside-00000000000000ab-report.txt");
        assert_eq!(aside_origin(&aside), Some(Some(OsStr::new("report.txt"))));
        let long = "x".repeat(250);
        let aside = aside_name(OsStr::new(&long), 7);
        assert_eq!(aside, ".syncengine-tmp-aside-0000000000000007");
        assert_eq!(aside_origin(&aside), Some(None));
    }

    #[test]
    fn only_the_exact_format_is_an_aside_name() {
        for name in [
            ".syncengine-tmp-00000000000000ab",
            ".syncengine-tmp-aside-00000000000000AB-x",
            ".syncengine-tmp-aside-00000000000000ab-",
            ".syncengine-tmp-aside-00000000000000abx",
            ".syncengine-tmp-aside-0000000000000ab",
            "aside-00000000000000ab-x",
        ] {
            assert_eq!(aside_origin(OsStr::new(name)), None, "{name}");
        }
        // And never the stale-temp format, whose files are removed by age.
        let aside = aside_name(OsStr::new("a"), 1);
        assert!(!syncengine_core::ignore_rules::is_temp_file_name(
            aside.to_str().unwrap()
        ));
    }
}
