//! The paused pairs, kept in `<state dir>/service-paused.json` so a pause survives restarts.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::ServiceError;

/// The file's name in the state directory.
pub const PAUSED_FILE: &str = "service-paused.json";

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct PausedFile {
    paused: BTreeSet<String>,
}

/// The set of paused pair names and the file that keeps it.
#[derive(Debug)]
pub(crate) struct PausedPairs {
    path: PathBuf,
    names: BTreeSet<String>,
}

fn state_error(path: &Path, source: std::io::Error) -> ServiceError {
    ServiceError::State {
        path: path.display().to_string(),
        source,
    }
}

impl PausedPairs {
    /// Reads the file in `state_dir`; a missing file means nothing is paused. A damaged file
    /// is an error: starting every pair it paused would override the user's pause.
    pub(crate) fn load(state_dir: &Path) -> Result<Self, ServiceError> {
        let path = state_dir.join(PAUSED_FILE);
        let names = read_names(&path)?;
        Ok(PausedPairs { path, names })
    }

    /// Reads the file again: another writer of the state directory (another service, the
    /// command line) may have paused or resumed pairs since. On error the set is unchanged.
    pub(crate) fn refresh(&mut self) -> Result<(), ServiceError> {
        self.names = read_names(&self.path)?;
        Ok(())
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Marks `name` paused or not and writes the file if that changed it.
    ///
    /// Several writers may share a state directory (two services with two config files, the
    /// command line): the change is made to the file as it is now, read again while holding
    /// an advisory lock on `service-paused.json.lock`, not to this service's copy of it, so
    /// no writer drops the pauses and resumes of another. The set then matches the file.
    pub(crate) fn set(&mut self, name: &str, paused: bool) -> Result<(), ServiceError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let err = |e| state_error(&self.path, e);
        std::fs::create_dir_all(dir).map_err(err)?;
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{PAUSED_FILE}.lock")))
            .map_err(err)?;
        // Released when `lock` is closed, also on an error below.
        lock.lock().map_err(err)?;
        let mut names = read_names(&self.path)?;
        let changed = if paused {
            names.insert(name.to_owned())
        } else {
            names.remove(name)
        };
        if changed {
            self.write(&names)?;
        }
        self.names = names;
        Ok(())
    }

    /// Writes the file atomically: a temp file, flushed, renamed over the old one, and the
    /// folder flushed, so a crash leaves the old set or the new one, never a torn file.
    fn write(&self, names: &BTreeSet<String>) -> Result<(), ServiceError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let err = |e| state_error(&self.path, e);
        let body = serde_json::to_vec_pretty(&PausedFile {
            paused: names.clone(),
        })
        .map_err(|e| err(std::io::Error::other(e)))?;
        let tmp = dir.join(format!("{PAUSED_FILE}.tmp-{}", std::process::id()));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(err)
    }
}

/// The pairs recorded as paused in `state_dir` (by [`SyncService::pause`](crate::SyncService::pause)
/// or [`set_paused`]), for a tool that shows or changes them while no service runs there.
///
/// # Errors
/// [`ServiceError::State`] when the file cannot be read or is damaged.
pub fn paused_pairs(state_dir: &Path) -> Result<BTreeSet<String>, ServiceError> {
    Ok(PausedPairs::load(state_dir)?.names)
}

/// Records the pair `name` as paused (or not) in `state_dir`, as
/// [`SyncService::pause`](crate::SyncService::pause) and
/// [`resume`](crate::SyncService::resume) do, for when no service runs there: a service
/// started later finds the pair paused. The file is replaced atomically and flushed.
///
/// A service running on the same state directory keeps the change (its own pauses and
/// resumes rewrite the file under a lock, from what is on disk), but acts on it only for a
/// pair added after it: change a running service's pairs through its own
/// [`pause`](crate::SyncService::pause) and [`resume`](crate::SyncService::resume).
///
/// ```
/// let state = tempfile::tempdir()?;
/// syncengine_service::set_paused(state.path(), "photos", true)?;
/// assert!(syncengine_service::paused_pairs(state.path())?.contains("photos"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`ServiceError::State`] when the file cannot be read, is damaged or cannot be written.
pub fn set_paused(state_dir: &Path, name: &str, paused: bool) -> Result<(), ServiceError> {
    PausedPairs::load(state_dir)?.set(name, paused)
}

/// The names in the paused file at `path`; a missing file holds none, a damaged one is an
/// error.
fn read_names(path: &Path) -> Result<BTreeSet<String>, ServiceError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let file: PausedFile = serde_json::from_slice(&bytes).map_err(|e| {
                state_error(
                    path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            })?;
            Ok(file.paused)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(state_error(path, e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_set_survives_a_reload_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = PausedPairs::load(dir.path()).unwrap();
        assert!(!p.contains("a"));
        p.set("a", true).unwrap();
        p.set("b", true).unwrap();
        p.set("b", false).unwrap();
        let again = PausedPairs::load(dir.path()).unwrap();
        assert!(again.contains("a") && !again.contains("b"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(
            names,
            [PAUSED_FILE.to_owned(), format!("{PAUSED_FILE}.lock")]
        );
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PAUSED_FILE), b"{\"paused\": [\"a\"").unwrap();
        assert!(matches!(
            PausedPairs::load(dir.path()),
            Err(ServiceError::State { .. })
        ));
    }

    #[test]
    fn a_failed_write_leaves_the_set_as_the_file_says() {
        let dir = tempfile::tempdir().unwrap();
        // The state "directory" is a file: nothing can be written below it.
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"x").unwrap();
        let mut p = PausedPairs {
            path: not_a_dir.join(PAUSED_FILE),
            names: BTreeSet::new(),
        };
        assert!(p.set("a", true).is_err());
        assert!(!p.contains("a"));
    }
}
