//! The canonical-order tree walk behind [`LocalClient::list`](crate::LocalClient).
//!
//! One blocking thread walks the tree depth-first, sorting each directory's children by name
//! (a directory as `name/`), which yields the whole tree in byte-wise path order while holding
//! only one directory's names per level. Entries go to the async side in batches through a
//! bounded channel, so a slow consumer pauses the walk instead of growing a buffer.

use std::fs::{self, DirEntry};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::stream::{self, StreamExt};
use syncengine_core::ignore_rules::StaleTemps;
use syncengine_core::{EntryStream, Error, RelPath, Result};
use tokio::sync::mpsc;

use crate::TEMP_PREFIX;
use crate::client::entry_from_metadata;
use crate::error::{BACKEND, map_io};

/// Entries per message on the channel.
const BATCH: usize = 256;
/// Messages the channel holds before the walker waits for the consumer.
const CHANNEL_BATCHES: usize = 4;

/// One message from the walker: a batch, and whether the walk is complete after it.
struct Batch {
    items: Vec<Result<syncengine_core::Entry>>,
    last: bool,
}

/// Lists `prefix` (or the whole root) below `root` as a lazily started stream.
pub(crate) fn list_stream(
    root: PathBuf,
    prefix: Option<RelPath>,
    skipped: Arc<AtomicU64>,
    stale: Arc<StaleTemps>,
) -> EntryStream {
    enum State {
        Start(PathBuf, Option<RelPath>, Arc<AtomicU64>, Arc<StaleTemps>),
        Running(mpsc::Receiver<Batch>),
        Done,
    }
    // The worker starts on first poll, so `list` itself needs no runtime.
    stream::unfold(
        State::Start(root, prefix, skipped, stale),
        |state| async move {
            let mut rx = match state {
                State::Start(root, prefix, skipped, stale) => {
                    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
                    tokio::task::spawn_blocking(move || {
                        let mut out = Sender {
                            tx,
                            buf: Vec::with_capacity(BATCH),
                        };
                        walk(&root, prefix.as_ref(), &skipped, &stale, &mut out);
                        out.finish();
                    });
                    rx
                }
                State::Running(rx) => rx,
                State::Done => return None,
            };
            match rx.recv().await {
                Some(batch) if batch.last => Some((stream::iter(batch.items), State::Done)),
                Some(batch) => Some((stream::iter(batch.items), State::Running(rx))),
                // The worker died (panicked) before saying it was done: never pass a truncated
                // listing off as complete.
                None => Some((
                    stream::iter(vec![Err(Error::other(
                        BACKEND,
                        "",
                        "the listing worker ended before the listing was complete",
                    ))]),
                    State::Done,
                )),
            }
        },
    )
    .flatten()
    .boxed()
}

/// Batches items onto the channel; `push` returns false once the consumer is gone.
struct Sender {
    tx: mpsc::Sender<Batch>,
    buf: Vec<Result<syncengine_core::Entry>>,
}

impl Sender {
    fn push(&mut self, item: Result<syncengine_core::Entry>) -> bool {
        self.buf.push(item);
        if self.buf.len() < BATCH {
            return true;
        }
        let items = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH));
        self.tx.blocking_send(Batch { items, last: false }).is_ok()
    }

    fn finish(self) {
        // A failed send means nobody listens any more; nothing to do about it.
        let _ = self.tx.blocking_send(Batch {
            items: self.buf,
            last: true,
        });
    }
}

enum Kind {
    File,
    Dir,
}

struct Child {
    /// The sort key: the name, with `/` appended for a directory.
    key: String,
    name_len: usize,
    kind: Kind,
    dirent: DirEntry,
}

impl Child {
    fn name(&self) -> &str {
        &self.key[..self.name_len]
    }
}

/// Notes a temp file for removal when it is stale by the core's one rule
/// ([`is_stale_temp`](syncengine_core::ignore_rules::is_stale_temp)): the exact temp format,
/// untouched for a day. The access time counts as a touch: a write in progress sets its
/// temp's modification time to the source's (often years ago) just before renaming it into
/// place, and leaves the access time at the temp's creation. Nothing is removed here: a dry
/// run lists too.
fn note_if_stale(stale: &StaleTemps, path: &Path, name: &std::ffi::OsStr) {
    let Some(name) = name.to_str() else { return };
    let Ok(md) = fs::symlink_metadata(path) else {
        return;
    };
    if !md.is_file() {
        return;
    }
    let newest = [md.modified().ok(), md.accessed().ok()]
        .into_iter()
        .flatten()
        .max();
    stale.consider(path.to_string_lossy().into_owned(), name, newest);
}

/// Notes a skipped path: logged and counted, never fatal.
fn skip(skipped: &AtomicU64, path: &Path, why: &str) {
    skipped.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(path = %path.display(), "skipping {why}");
}

/// Reads one directory's listable children, sorted in canonical order.
fn read_children(dir: &Path, skipped: &AtomicU64, stale: &StaleTemps) -> io::Result<Vec<Child>> {
    let mut children = Vec::new();
    for dirent in fs::read_dir(dir)? {
        let dirent = dirent?;
        let os_name = dirent.file_name();
        if os_name
            .as_encoded_bytes()
            .starts_with(TEMP_PREFIX.as_bytes())
        {
            note_if_stale(stale, &dirent.path(), &os_name);
            continue;
        }
        let Some(name) = os_name.to_str() else {
            skip(skipped, &dirent.path(), "a name that is not UTF-8");
            continue;
        };
        if let Err(e) = RelPath::new(name) {
            skip(skipped, &dirent.path(), &format!("an invalid name: {e}"));
            continue;
        }
        let file_type = match dirent.file_type() {
            Ok(t) => t,
            // Removed between readdir and lstat: it is simply not there any more.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let (kind, key) = if file_type.is_symlink() {
            skip(skipped, &dirent.path(), "a symlink (not followed)");
            continue;
        } else if file_type.is_dir() {
            (Kind::Dir, format!("{name}/"))
        } else if file_type.is_file() {
            (Kind::File, name.to_owned())
        } else {
            skip(
                skipped,
                &dirent.path(),
                "a special file (socket, FIFO or device)",
            );
            continue;
        };
        children.push(Child {
            key,
            name_len: name.len(),
            kind,
            dirent,
        });
    }
    children.sort_unstable_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
    Ok(children)
}

/// Finds the directory to walk: the root, or the prefix below it if every component of the
/// prefix is a real directory (not a file, not a symlink). `None` means "lists nothing".
fn start_dir(root: &Path, prefix: Option<&RelPath>) -> Result<Option<PathBuf>> {
    // The root itself may be a symlink: the user named it.
    match fs::metadata(root) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            return Err(Error::other(
                BACKEND,
                "",
                format!("the root {} is not a directory", root.display()),
            ));
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(map_io("", e)),
    }
    let mut dir = root.to_path_buf();
    if let Some(prefix) = prefix {
        for segment in prefix.segments() {
            dir.push(segment);
            match fs::symlink_metadata(&dir) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => return Ok(None),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(map_io(prefix.as_str(), e)),
            }
        }
    }
    Ok(Some(dir))
}

struct Frame {
    /// Path of this directory relative to the root ("" for the root).
    rel: String,
    children: std::vec::IntoIter<Child>,
}

fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Walks the tree, pushing entries (and at most one error, last) into `out`.
fn walk(
    root: &Path,
    prefix: Option<&RelPath>,
    skipped: &AtomicU64,
    stale: &StaleTemps,
    out: &mut Sender,
) {
    let start = match start_dir(root, prefix) {
        Ok(Some(dir)) => dir,
        Ok(None) => return,
        Err(e) => {
            out.push(Err(e));
            return;
        }
    };
    let start_rel = prefix.map(|p| p.as_str().to_owned()).unwrap_or_default();
    let children = match read_children(&start, skipped, stale) {
        Ok(children) => children,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            out.push(Err(map_io(&start_rel, e)));
            return;
        }
    };
    let mut stack = vec![Frame {
        rel: start_rel,
        children: children.into_iter(),
    }];
    loop {
        let (rel, child) = {
            let Some(frame) = stack.last_mut() else {
                return;
            };
            match frame.children.next() {
                Some(child) => (join_rel(&frame.rel, child.name()), child),
                None => {
                    stack.pop();
                    continue;
                }
            }
        };
        match child.kind {
            Kind::File => {
                let metadata = match child.dirent.metadata() {
                    Ok(md) if md.is_file() => md,
                    // Replaced by something else, or gone, since readdir: not a file now.
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        out.push(Err(map_io(&rel, e)));
                        return;
                    }
                };
                let path = match RelPath::new(rel) {
                    Ok(path) => path,
                    Err(e) => {
                        // Unreachable in practice: every segment was validated above.
                        skip(
                            skipped,
                            &child.dirent.path(),
                            &format!("an invalid path: {e}"),
                        );
                        continue;
                    }
                };
                let entry = entry_from_metadata(path, &metadata);
                if !out.push(Ok(entry)) {
                    return;
                }
            }
            Kind::Dir => match read_children(&child.dirent.path(), skipped, stale) {
                Ok(children) => stack.push(Frame {
                    rel,
                    children: children.into_iter(),
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    out.push(Err(map_io(&rel, e)));
                    return;
                }
            },
        }
    }
}
