//! The canonical-order tree walk behind [`LocalClient::list`](crate::LocalClient).
//!
//! One blocking thread walks the tree depth-first, sorting each directory's children by name
//! (a directory as `name/`), which yields the whole tree in byte-wise path order while holding
//! only one directory's names per level. Entries go to the async side in batches through a
//! bounded channel, so a slow consumer pauses the walk instead of growing a buffer.
//!
//! What the walk cannot see is reported, never left out: a symlink, a special file, a
//! sub-directory that cannot be read or that vanished or changed while it was walked, a file
//! that vanished or changed between readdir and stat, is an `Error::Unlisted` item at its
//! place in canonical order; a directory holding names that are not UTF-8 (or not valid
//! paths) is reported as `Error::unlisted_contents` before its first member. Only a failure
//! of the start directory itself ends the listing with an error.
//!
//! To report an unreadable directory `d` at `d`'s place (before `d.txt`, which sorts between
//! `d` and `d/`), the walk reads each directory's members when it reaches the name `d`, and
//! keeps them until it reaches `d/`: usually the very next step.

use std::fs::{self, DirEntry};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::aside::Leftovers;
use futures::stream::{self, StreamExt};
use syncengine_core::{EntryStream, Error, PruneFn, RelPath, Result};
use tokio::sync::mpsc;

use crate::TEMP_PREFIX;
use crate::client::{WritebackWatch, entry_from_metadata};
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
/// Folders for which `prune` is true are not read. `watch` is started
/// ([`WritebackWatch::start`]) on the walker's thread before the walk.
pub(crate) fn list_stream(
    root: PathBuf,
    prefix: Option<RelPath>,
    leftovers: Arc<Leftovers>,
    prune: Option<PruneFn>,
    watch: Option<Arc<WritebackWatch>>,
) -> EntryStream {
    type Start = (
        PathBuf,
        Option<RelPath>,
        Arc<Leftovers>,
        Option<PruneFn>,
        Option<Arc<WritebackWatch>>,
    );
    enum State {
        Start(Box<Start>),
        Running(mpsc::Receiver<Batch>),
        Done,
    }
    // The worker starts on first poll, so `list` itself needs no runtime.
    stream::unfold(
        State::Start(Box::new((root, prefix, leftovers, prune, watch))),
        |state| async move {
            let mut rx = match state {
                State::Start(start) => {
                    let (root, prefix, leftovers, prune, watch) = *start;
                    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
                    tokio::task::spawn_blocking(move || {
                        if let Some(watch) = watch {
                            watch.start(&root);
                        }
                        let mut out = Sender {
                            tx,
                            buf: Vec::with_capacity(BATCH),
                        };
                        walk(&root, prefix.as_ref(), &leftovers, prune.as_ref(), &mut out);
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

/// One step of a directory's walk, in canonical order of `key`.
enum Step {
    /// A regular file (as readdir saw it).
    File(DirEntry),
    /// A directory: read it now (at `name`), descend later (at `name/`).
    Probe(DirEntry),
    /// Descend into the directory read by the matching `Probe`.
    Descend,
    /// Something the walk does not follow or read: reported as unlisted.
    Unknown(&'static str),
}

struct Child {
    /// The sort key: the name, with `/` appended for a `Descend` step.
    key: String,
    name_len: usize,
    step: Step,
}

impl Child {
    fn name(&self) -> &str {
        &self.key[..self.name_len]
    }
}

/// One directory's members, sorted for the walk.
struct Members {
    children: Vec<Child>,
    /// Why some members could not be named (not UTF-8, not a valid path segment), if so.
    unnamed: Option<String>,
}

/// Reads one directory's members, sorted in canonical order.
fn read_children(dir: &Path, leftovers: &Leftovers) -> io::Result<Members> {
    let mut children = Vec::new();
    let mut unnamed: Vec<String> = Vec::new();
    for dirent in fs::read_dir(dir)? {
        let dirent = dirent?;
        let os_name = dirent.file_name();
        if os_name
            .as_encoded_bytes()
            .starts_with(TEMP_PREFIX.as_bytes())
        {
            leftovers.note(&dirent.path(), &os_name);
            continue;
        }
        let Some(name) = os_name.to_str() else {
            tracing::warn!(path = %dirent.path().display(), "a name that is not UTF-8");
            unnamed.push(format!("{:?} is not UTF-8", os_name));
            continue;
        };
        if let Err(e) = RelPath::new(name) {
            unnamed.push(format!("{name:?} is not a valid name: {e}"));
            continue;
        }
        let file_type = match dirent.file_type() {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                children.push(child(name, Step::Unknown("vanished while it was listed")));
                continue;
            }
            Err(e) => return Err(e),
        };
        if file_type.is_symlink() {
            children.push(child(name, Step::Unknown("a symlink (not followed)")));
        } else if file_type.is_dir() {
            children.push(Child {
                key: format!("{name}/"),
                name_len: name.len(),
                step: Step::Descend,
            });
            children.push(child(name, Step::Probe(dirent)));
        } else if file_type.is_file() {
            children.push(child(name, Step::File(dirent)));
        } else {
            children.push(child(
                name,
                Step::Unknown("a special file (socket, FIFO or device)"),
            ));
        }
    }
    children.sort_unstable_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
    let unnamed = (!unnamed.is_empty()).then(|| {
        let n = unnamed.len();
        let mut why = unnamed.into_iter().take(3).collect::<Vec<_>>().join(", ");
        if n > 3 {
            why.push_str(&format!(" and {} more", n - 3));
        }
        format!("names that cannot be synced: {why}")
    });
    Ok(Members { children, unnamed })
}

fn child(name: &str, step: Step) -> Child {
    Child {
        key: name.to_owned(),
        name_len: name.len(),
        step,
    }
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
    /// Members of probed sub-directories waiting for their `Descend` step: usually none or
    /// one; more only while names like `d-x` (between `d` and `d/`) are walked.
    probed: Vec<(String, Members)>,
}

fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Why a sub-directory could not be read, for the user.
fn unreadable(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "vanished while it was listed".into(),
        io::ErrorKind::NotADirectory => "changed while it was listed (no longer a folder)".into(),
        io::ErrorKind::PermissionDenied => {
            "a folder that cannot be read (permission denied)".into()
        }
        _ => format!("a folder that cannot be read: {e}"),
    }
}

/// Pushes a frame for a directory's members, reporting first any members it could not name.
fn enter(stack: &mut Vec<Frame>, rel: String, members: Members, out: &mut Sender) -> bool {
    if let Some(why) = members.unnamed
        && !out.push(Err(Error::unlisted_contents(BACKEND, rel.as_str(), why)))
    {
        return false;
    }
    stack.push(Frame {
        rel,
        children: members.children.into_iter(),
        probed: Vec::new(),
    });
    true
}

/// Walks the tree, pushing entries, unlisted items and at most one (final) error into `out`;
/// folders for which `prune` is true are left unread.
fn walk(
    root: &Path,
    prefix: Option<&RelPath>,
    leftovers: &Leftovers,
    prune: Option<&PruneFn>,
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
    let members = match read_children(&start, leftovers) {
        Ok(members) => members,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            out.push(Err(map_io(&start_rel, e)));
            return;
        }
    };
    let mut stack = Vec::new();
    if !enter(&mut stack, start_rel, members, out) {
        return;
    }
    loop {
        let Some(frame) = stack.last_mut() else {
            return;
        };
        let Some(child) = frame.children.next() else {
            stack.pop();
            continue;
        };
        let name = child.name().to_owned();
        let rel = join_rel(&frame.rel, &name);
        let item = match child.step {
            Step::Unknown(why) => Err(Error::unlisted(BACKEND, rel, why)),
            // A pruned folder is never read; without a probe its `Descend` step is skipped.
            Step::Probe(_)
                if prune
                    .is_some_and(|prune| RelPath::new(rel.as_str()).is_ok_and(|p| prune(&p))) =>
            {
                continue;
            }
            Step::Probe(dirent) => match read_children(&dirent.path(), leftovers) {
                Ok(members) => {
                    frame.probed.push((name, members));
                    continue;
                }
                Err(e) => Err(Error::unlisted(BACKEND, rel, unreadable(&e))),
            },
            Step::Descend => {
                // No members kept means the probe reported the directory as unlisted.
                if let Some(i) = frame.probed.iter().rposition(|(n, _)| *n == name) {
                    let (_, members) = frame.probed.swap_remove(i);
                    if !enter(&mut stack, rel, members, out) {
                        return;
                    }
                }
                continue;
            }
            Step::File(dirent) => match dirent.metadata() {
                Ok(md) if md.is_file() => match RelPath::new(rel.as_str()) {
                    Ok(path) => Ok(entry_from_metadata(path, &md)),
                    // Unreachable in practice: every segment was validated above.
                    Err(e) => Err(Error::unlisted(
                        BACKEND,
                        rel,
                        format!("an invalid path: {e}"),
                    )),
                },
                Ok(_) => Err(Error::unlisted(
                    BACKEND,
                    rel,
                    "changed while it was listed (no longer a file)",
                )),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::unlisted(
                    BACKEND,
                    rel,
                    "vanished while it was listed",
                )),
                Err(e) => Err(Error::unlisted(
                    BACKEND,
                    rel,
                    format!("a file that cannot be read: {e}"),
                )),
            },
        };
        if !out.push(item) {
            return;
        }
    }
}
