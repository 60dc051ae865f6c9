//! Watching local roots with `notify` (recursive inotify on Linux), filtered down to the
//! changes a run could care about.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use notify::event::{CreateKind, EventKind, Flag};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use syncengine_core::ignore_rules::is_always_ignored;
use syncengine_core::{RelPath, Side};
use tokio::sync::mpsc;

/// Messages are dropped (and `overflow` set) rather than queued without bound when the pair's
/// task falls behind: a burst of a million creations must not hold a million events.
pub(crate) const QUEUE: usize = 16_384;

/// What the watcher tells the pair's task.
#[derive(Debug)]
pub(crate) enum WatchMsg {
    /// Something changed at `path` (relative to the side's root, `""` for the root itself).
    /// `folder_created`: a folder was created there, whose first files may have been written
    /// before its own watch was in place (and so were never reported).
    Changed {
        side: Side,
        path: String,
        folder_created: bool,
    },
    /// Changes were lost (the kernel's queue or ours overflowed): the pair must run.
    Overflow,
    /// Watching broke (the watch limit reached while adding a new folder, an error): the pair
    /// falls back to polling.
    Broken(String),
}

/// A running watch; dropping it stops watching.
pub(crate) struct Watch {
    _watcher: RecommendedWatcher,
    /// Each root's folder as it was when the watch started ([`folder_id`]), by root.
    folders: Vec<(PathBuf, Option<(u64, u64)>)>,
}

impl Watch {
    /// True when a root is now another folder than the one watched (deleted and made
    /// again, or replaced by a rename): the watch follows the old folder and sees nothing
    /// of the new one. A root that is missing now is not (the pair's run stops on it).
    pub(crate) fn root_replaced(&self) -> bool {
        self.folders
            .iter()
            .any(|(root, watched)| folder_id(root).is_some_and(|now| *watched != Some(now)))
    }
}

/// The device and inode of the folder at `path` (following symbolic links); `None` when it
/// cannot be read, and where the platform has no inodes.
fn folder_id(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The shared end of the watcher's queue.
#[derive(Clone)]
struct Sink {
    tx: mpsc::Sender<WatchMsg>,
    overflow: Arc<AtomicBool>,
}

impl Sink {
    fn send(&self, msg: WatchMsg) {
        if self.tx.try_send(msg).is_err() {
            self.overflow.store(true, Ordering::Relaxed);
        }
    }
}

/// Starts watching `roots` (each a side and its local folder), sending what changes to `tx`.
/// Paths below `state_dir` (the engine's state, when it lies inside a root) and the engine's
/// own files (`.syncengine/`, temp files) are left out; so are pure accesses (opens, reads).
///
/// # Errors
/// A message for the user when a root cannot be watched (missing, the watch limit reached,
/// `simulate_limit`): the pair is then polled.
pub(crate) fn start(
    roots: &[(Side, PathBuf)],
    state_dir: &Path,
    tx: mpsc::Sender<WatchMsg>,
    overflow: Arc<AtomicBool>,
    simulate_limit: bool,
) -> Result<Watch, String> {
    if simulate_limit {
        return Err("the inotify watch limit was reached (simulated by \
                    ServiceOptions::simulate_watch_limit)"
            .to_owned());
    }
    // Taken before the watch is set up: a root replaced while it is set up is seen as
    // replaced afterwards.
    let folders = roots
        .iter()
        .map(|(_, root)| (root.clone(), folder_id(root)))
        .collect();
    let mut canon = Vec::new();
    for (side, root) in roots {
        let c = root
            .canonicalize()
            .map_err(|e| format!("cannot watch {}: {e}", root.display()))?;
        canon.push((*side, c));
    }
    let state_dir = state_dir
        .canonicalize()
        .unwrap_or_else(|_| state_dir.to_path_buf());
    let sink = Sink { tx, overflow };
    let roots_for_handler = canon.clone();
    let handler_sink = sink.clone();
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(event) => {
            if event.flag() == Some(Flag::Rescan) {
                handler_sink.send(WatchMsg::Overflow);
                return;
            }
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            let folder_created = matches!(event.kind, EventKind::Create(CreateKind::Folder));
            for path in &event.paths {
                if path.starts_with(&state_dir) {
                    continue;
                }
                if let Some((side, rel)) = relative(&roots_for_handler, path) {
                    handler_sink.send(WatchMsg::Changed {
                        side,
                        path: rel,
                        folder_created,
                    });
                }
            }
        }
        Err(e) => handler_sink.send(WatchMsg::Broken(describe(&e))),
    };
    // Symbolic links are not followed, as runs do not follow them: a link to a big tree
    // elsewhere would take one inotify watch per folder of it (of the user's limit, shared
    // with every program) and start runs for changes that are not the pair's.
    let mut watcher = RecommendedWatcher::new(
        handler,
        notify::Config::default().with_follow_symlinks(false),
    )
    .map_err(|e| describe(&e))?;
    for (_, root) in &canon {
        watcher
            .watch(root, RecursiveMode::Recursive)
            .map_err(|e| describe(&e))?;
    }
    Ok(Watch {
        _watcher: watcher,
        folders,
    })
}

/// The side and relative path of `path`, unless it is one of the engine's own files.
fn relative(roots: &[(Side, PathBuf)], path: &Path) -> Option<(Side, String)> {
    for (side, root) in roots {
        let Ok(rest) = path.strip_prefix(root) else {
            continue;
        };
        let rel = rest
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if !rel.is_empty()
            && let Ok(p) = RelPath::new(rel.clone())
            && is_always_ignored(&p)
        {
            return None;
        }
        return Some((*side, rel));
    }
    None
}

fn describe(e: &notify::Error) -> String {
    match e.kind {
        notify::ErrorKind::MaxFilesWatch => format!(
            "the inotify watch limit was reached ({e}); raise fs.inotify.max_user_watches to \
             watch again"
        ),
        _ => format!("watching failed: {e}"),
    }
}
