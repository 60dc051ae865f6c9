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
//! name (link count above one), and otherwise puts the file back at its old name, or, where
//! something is there by then, at a visible recovery name.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use syncengine_core::ignore_rules::StaleTemps;

use crate::TEMP_PREFIX;

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
    /// Files moved aside, by path.
    asides: Mutex<BTreeSet<PathBuf>>,
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
            if let Ok(mut asides) = self.asides.lock() {
                asides.insert(path.to_path_buf());
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
    pub(crate) fn recover_asides(&self) -> Vec<(PathBuf, Recovered)> {
        let found = match self.asides.lock() {
            Ok(mut asides) => std::mem::take(&mut *asides),
            Err(_) => return Vec::new(),
        };
        let mut done = Vec::new();
        for path in found {
            match recover_aside(&path) {
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

/// Recovers one file moved aside at `path` (see [`Leftovers::recover_asides`]).
///
/// Only a name of a file with other names is removed: the link count is read from the file
/// itself just before, and a file with one name is only ever renamed, never replacing
/// anything ([`crate::client::link_noreplace`]).
pub(crate) fn recover_aside(path: &Path) -> io::Result<Recovered> {
    use rustix::fs::CWD;
    let (Some(folder), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(Recovered::Left);
    };
    let Some(origin) = aside_origin(name) else {
        return Ok(Recovered::Left);
    };
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Recovered::Left),
        Err(e) => return Err(e),
    };
    if !md.is_file() {
        return Ok(Recovered::Left);
    }
    if md.nlink() > 1 {
        return match std::fs::remove_file(path) {
            Ok(()) => Ok(Recovered::SecondNameRemoved),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Recovered::Left),
            Err(e) => Err(e),
        };
    }
    let place = |to: &Path| -> io::Result<bool> {
        match crate::client::link_noreplace((CWD, path), (CWD, to)) {
            Ok(crate::client::Placed::Linked) => {
                std::fs::remove_file(path)?;
                Ok(true)
            }
            Ok(crate::client::Placed::Renamed) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    };
    if let Some(origin) = origin {
        let to = folder.join(origin);
        if place(&to)? {
            return Ok(Recovered::PutBack(to));
        }
    }
    // The 16 hex digits of the aside name keep the recovery name unique.
    let tail = &name.as_bytes()[TEMP_PREFIX.len() + ASIDE_TAG.len()..];
    let mut visible = RECOVERED_PREFIX.as_bytes().to_vec();
    visible.extend_from_slice(tail);
    let to = folder.join(OsStr::from_bytes(&visible));
    if place(&to)? {
        return Ok(Recovered::Renamed(to));
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{} is taken", to.display()),
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
