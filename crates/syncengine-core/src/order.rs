//! Canonical order for listings: [`check_order`] guards an "ordered" listing, and
//! [`sort_listing`] sorts an unordered one with bounded memory.
//!
//! The reconciler merges both listings and the base in one pass, which is only right if all
//! three are in canonical (byte-wise) path order. A client whose
//! [`Capabilities::ordered_listing`](crate::Capabilities::ordered_listing) is true is trusted
//! but checked: the first path out of order or repeated ends the listing with an error,
//! never a silently wrong plan. Other clients' listings (or all of them, with
//! [`SyncOptions::sort_listings`](crate::SyncOptions::sort_listings)) go through
//! [`sort_listing`].
//!
//! ```
//! use futures::{StreamExt, TryStreamExt};
//! use syncengine_core::order::{check_order, sort_listing};
//! use syncengine_core::{Entry, RelPath};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let entries = ["b", "a/x", "a-b"].map(|p| Ok(Entry::new(RelPath::new(p).unwrap(), 1)));
//! let scratch = tempfile::tempdir()?;
//! let sorted = sort_listing(futures::stream::iter(entries).boxed(), scratch.path(), 50_000).await;
//! let paths: Vec<String> = check_order(sorted, "example".into())
//!     .map_ok(|e| e.path.into_string())
//!     .try_collect()
//!     .await?;
//! assert_eq!(paths, ["a-b", "a/x", "b"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use futures::stream::{self, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::EntryStream;
use crate::entry::{ContentHash, Entry, nanos_to_system_time};
use crate::error::{Error, Result};
use crate::path::RelPath;

/// The `backend` named in errors raised here: they come from the engine, not a client.
const BACKEND: &str = "syncengine";

/// Most spill files merged at once; more runs are first merged into bigger runs, so the
/// number of open files stays bounded however long the listing.
const MAX_FAN_IN: usize = 64;

/// Entries per message from the merge thread to the output stream.
const MERGE_BATCH: usize = 1024;

/// Messages buffered between the merge thread and the output stream.
const MERGE_CHANNEL: usize = 2;

/// Passes an ordered listing through, ending it with an error at the first path that is not
/// strictly greater than the one before.
///
/// # Errors
/// An out-of-order path yields [`Error::Other`] whose source is an [`OutOfOrder`] naming both
/// paths and `client`, a repeated one an [`Error::Other`] naming it; the stream ends after
/// either. The engine then
/// sorts that client's listings itself (as `SyncOptions::sort_listings` would). `Err`
/// items of the input pass through unchanged.
pub fn check_order(stream: EntryStream, client: String) -> EntryStream {
    let state = CheckState {
        inner: stream,
        prev: None,
        client,
        done: false,
    };
    stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let item = st.inner.next().await?;
        // Unlisted items (unknown paths) are ordered too: the engine must meet an unknown
        // path before anything at or below it.
        let key = match &item {
            Ok(entry) => Some(entry.path.as_str().to_owned()),
            Err(e) => e.unlisted_key(),
        };
        let Some(key) = key else {
            return Some((item, st));
        };
        if let Some(prev) = &st.prev
            && key.as_bytes() <= prev.as_bytes()
        {
            st.done = true;
            return Some((Err(order_error(&st.client, prev, &key)), st));
        }
        st.prev = Some(key);
        Some((item, st))
    })
    .boxed()
}

struct CheckState {
    inner: EntryStream,
    /// The sort key of the last item (a path, or an unlisted item's key).
    prev: Option<String>,
    client: String,
    done: bool,
}

/// The error [`check_order`] ends a listing with when a path comes out of canonical order (a
/// repeated path is a plain [`Error::Other`]: sorting would not mend it).
///
/// It is the `source` of an [`Error::Other`]; the engine recognises it (`source.is::<OutOfOrder>()`),
/// sorts that side's listing and plans again.
#[derive(Debug)]
pub struct OutOfOrder {
    /// What the listing did, naming the client and both paths.
    pub what: String,
}

impl std::fmt::Display for OutOfOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for OutOfOrder {}

fn order_error(client: &str, prev: &str, path: &str) -> Error {
    if path == prev {
        // Sorting would not help: the sorted listing has it twice too.
        return Error::other(
            BACKEND,
            path,
            format!(
                "{client} listed {path:?} twice; the run stops rather than plan from a \
                 listing it cannot trust"
            ),
        );
    }
    let what =
        format!("{client} listed {path:?} after {prev:?}, out of canonical (byte-wise) order");
    Error::Other {
        backend: BACKEND,
        path: path.to_owned(),
        source: Box::new(OutOfOrder { what }),
    }
}

/// Sorts a listing into canonical order with bounded memory.
///
/// # Behavior
/// Entries are collected in runs of `run_size` (at least 1). A listing of at most `run_size`
/// entries is sorted in memory and never touches the disk. Longer listings spill each sorted
/// run to an anonymous temporary file in `scratch_dir` (created if missing; the files vanish
/// when dropped, even after a crash), and the returned stream merges the runs lazily on a
/// thread of its own. Memory stays around two runs while collecting and a few thousand
/// entries while merging. All file I/O runs off the async runtime.
///
/// Modification times are kept to the nanosecond within ±292 years of 1970 (they are
/// stored as `i64` nanoseconds on the way through the disk).
///
/// # Errors
/// The returned stream yields an `Err` and ends when the input yields one (that same error,
/// and nothing sorted before it), when a path occurs twice (naming it), or when spilling or
/// merging fails. [`Error::Unlisted`] items (unknown paths) are not failures: they are sorted
/// with the entries, by [`Error::unlisted_key`], and come out in their place.
pub async fn sort_listing(
    mut stream: EntryStream,
    scratch_dir: &Path,
    run_size: usize,
) -> EntryStream {
    let run_size = run_size.max(1);
    let mut run: Vec<Listed> = Vec::new();
    let mut spilled: Vec<File> = Vec::new();
    let mut pending: Option<JoinHandle<Result<File>>> = None;
    // Unlisted items lose their `&'static` backend name in spill files; one listing comes
    // from one backend, so the first one seen names them all.
    let mut backend = BACKEND;
    while let Some(item) = stream.next().await {
        let entry = match item {
            Ok(entry) => Listed::File(entry),
            Err(Error::Unlisted {
                backend: b,
                path,
                contents_only,
                reason,
            }) => {
                backend = b;
                Listed::Unlisted {
                    path,
                    contents_only,
                    reason,
                }
            }
            Err(e) => return error_stream(e),
        };
        // Spill only once an entry arrives that does not fit: a listing of exactly
        // `run_size` entries stays in memory.
        if run.len() >= run_size {
            if let Some(handle) = pending.take() {
                match join(handle).await {
                    Ok(file) => spilled.push(file),
                    Err(e) => return error_stream(e),
                }
            }
            let full = std::mem::replace(&mut run, Vec::with_capacity(run_size));
            let dir = scratch_dir.to_path_buf();
            pending = Some(tokio::task::spawn_blocking(move || spill(full, &dir)));
        }
        run.push(entry);
    }
    if let Some(handle) = pending.take() {
        match join(handle).await {
            Ok(file) => spilled.push(file),
            Err(e) => return error_stream(e),
        }
    }
    if spilled.is_empty() {
        run.sort_unstable_by(Listed::cmp_key);
        return dedup_checked(
            stream::iter(run.into_iter().map(move |l| l.into_item(backend))).boxed(),
        );
    }
    if spilled.len() > MAX_FAN_IN {
        let dir = scratch_dir.to_path_buf();
        match join(tokio::task::spawn_blocking(move || {
            reduce_runs(spilled, &dir)
        }))
        .await
        {
            Ok(files) => spilled = files,
            Err(e) => return error_stream(e),
        }
    }
    // The last, partial run stays in memory as one more merge input.
    run.sort_unstable_by(Listed::cmp_key);
    dedup_checked(merge_stream(
        spilled,
        run,
        scratch_dir.to_path_buf(),
        backend,
    ))
}

/// One listing item on its way through the sorter: a file, or an unknown path
/// ([`Error::Unlisted`] without its backend name).
enum Listed {
    File(Entry),
    Unlisted {
        path: String,
        contents_only: bool,
        reason: String,
    },
}

impl Listed {
    /// The canonical-order key: the path, or the unlisted item's key.
    fn key(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Listed::File(e) => e.path.as_str().into(),
            Listed::Unlisted {
                path,
                contents_only: true,
                ..
            } if !path.is_empty() => format!("{path}/").into(),
            Listed::Unlisted { path, .. } => path.as_str().into(),
        }
    }

    fn cmp_key(a: &Listed, b: &Listed) -> Ordering {
        a.key().as_bytes().cmp(b.key().as_bytes())
    }

    fn into_item(self, backend: &'static str) -> Result<Entry> {
        match self {
            Listed::File(e) => Ok(e),
            Listed::Unlisted {
                path,
                contents_only,
                reason,
            } => Err(Error::Unlisted {
                backend,
                path,
                contents_only,
                reason,
            }),
        }
    }
}

fn error_stream(e: Error) -> EntryStream {
    stream::once(async move { Err(e) }).boxed()
}

async fn join<T: Send + 'static>(handle: JoinHandle<Result<T>>) -> Result<T> {
    match handle.await {
        Ok(r) => r,
        Err(e) => Err(Error::other(
            BACKEND,
            "",
            format!("sorting a listing: task failed: {e}"),
        )),
    }
}

/// Ends a sorted stream with an error at the first repeated path (or unlisted key).
fn dedup_checked(sorted: EntryStream) -> EntryStream {
    stream::unfold(
        (sorted, None::<String>, false),
        |(mut inner, prev, done)| async move {
            if done {
                return None;
            }
            let item = inner.next().await?;
            let key = match &item {
                Ok(entry) => entry.path.as_str().to_owned(),
                Err(e) => match e.unlisted_key() {
                    Some(key) => key,
                    None => return Some((item, (inner, prev, true))),
                },
            };
            if prev.as_ref() == Some(&key) {
                let err = Error::other(
                    BACKEND,
                    key.as_str(),
                    format!(
                        "the listing has {key:?} twice; the run stops rather than plan from a \
                         listing it cannot trust"
                    ),
                );
                return Some((Err(err), (inner, prev, true)));
            }
            Some((item, (inner, Some(key), false)))
        },
    )
    .boxed()
}

/// An [`Entry`] as it is written to a spill file: one JSON object per line.
#[derive(serde::Serialize, serde::Deserialize)]
struct SpillEntry {
    p: String,
    s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    h: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    f: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<i64>,
    /// Unix permission bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<u32>,
    /// For an unlisted item: why (and `p` may then be empty, for the root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    /// For an unlisted item: only the folder's contents are unknown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    c: bool,
}

impl SpillEntry {
    fn from_listed(l: &Listed) -> Self {
        match l {
            Listed::File(e) => SpillEntry {
                p: e.path.as_str().to_owned(),
                s: e.size,
                m: e.mtime_nanos(),
                e: e.etag.clone(),
                h: e.hash.as_ref().map(ContentHash::to_token),
                f: e.file_id,
                b: e.birth_nanos(),
                x: e.permissions,
                u: None,
                c: false,
            },
            Listed::Unlisted {
                path,
                contents_only,
                reason,
            } => SpillEntry {
                p: path.clone(),
                s: 0,
                m: None,
                e: None,
                h: None,
                f: None,
                b: None,
                x: None,
                u: Some(reason.clone()),
                c: *contents_only,
            },
        }
    }

    fn into_listed(self) -> Result<Listed> {
        if let Some(reason) = self.u {
            return Ok(Listed::Unlisted {
                path: self.p,
                contents_only: self.c,
                reason,
            });
        }
        self.into_entry().map(Listed::File)
    }

    fn into_entry(self) -> Result<Entry> {
        let hash = match self.h {
            None => None,
            Some(t) => Some(ContentHash::from_token(&t).ok_or_else(|| {
                Error::other(
                    BACKEND,
                    self.p.clone(),
                    format!("spill file: bad hash {t:?}"),
                )
            })?),
        };
        Ok(Entry {
            path: RelPath::new(self.p)?,
            size: self.s,
            mtime: self.m.map(nanos_to_system_time),
            etag: self.e,
            hash,
            file_id: self.f,
            birth_time: self.b.map(nanos_to_system_time),
            permissions: self.x,
        })
    }
}

fn io_error(dir: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::other(
        BACKEND,
        dir.display().to_string(),
        format!("sorting a listing: {what}: {e}"),
    )
}

fn new_spill_file(dir: &Path) -> Result<File> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "creating the scratch directory", e))?;
    tempfile::tempfile_in(dir).map_err(|e| io_error(dir, "creating a spill file", e))
}

/// Sorts one run and writes it to a new spill file, rewound for reading.
fn spill(mut run: Vec<Listed>, dir: &Path) -> Result<File> {
    run.sort_unstable_by(Listed::cmp_key);
    let mut sink = SpillWriter::new(dir)?;
    for entry in &run {
        sink.push(entry)?;
    }
    sink.finish()
}

struct SpillWriter<'a> {
    out: BufWriter<File>,
    dir: &'a Path,
}

impl<'a> SpillWriter<'a> {
    fn new(dir: &'a Path) -> Result<Self> {
        Ok(SpillWriter {
            out: BufWriter::with_capacity(64 * 1024, new_spill_file(dir)?),
            dir,
        })
    }

    fn push(&mut self, entry: &Listed) -> Result<()> {
        serde_json::to_writer(&mut self.out, &SpillEntry::from_listed(entry))
            .map_err(|e| io_error(self.dir, "writing a spill file", e))?;
        self.out
            .write_all(b"\n")
            .map_err(|e| io_error(self.dir, "writing a spill file", e))
    }

    fn finish(self) -> Result<File> {
        let dir = self.dir;
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| io_error(dir, "writing a spill file", e.error()))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| io_error(dir, "rewinding a spill file", e))?;
        Ok(file)
    }
}

/// Reads a spill file back, entry by entry.
type RunReader = Box<dyn Iterator<Item = Result<Listed>> + Send>;

fn read_run(file: File, dir: PathBuf) -> RunReader {
    let de = serde_json::Deserializer::from_reader(BufReader::with_capacity(64 * 1024, file));
    Box::new(de.into_iter::<SpillEntry>().map(move |r| {
        r.map_err(|e| io_error(&dir, "reading a spill file", e))
            .and_then(SpillEntry::into_listed)
    }))
}

/// One head of a run in the merge heap: ordered by path, then by run index (so the merge
/// is stable and deterministic).
struct Head {
    entry: Listed,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        Listed::cmp_key(&self.entry, &other.entry).then(self.run.cmp(&other.run))
    }
}

/// K-way merges sorted runs, calling `emit` for each entry in order until it returns
/// `Ok(false)` (the consumer is gone).
fn merge(mut runs: Vec<RunReader>, mut emit: impl FnMut(Listed) -> Result<bool>) -> Result<()> {
    let mut heap = BinaryHeap::with_capacity(runs.len());
    for (i, run) in runs.iter_mut().enumerate() {
        if let Some(entry) = run.next().transpose()? {
            heap.push(Reverse(Head { entry, run: i }));
        }
    }
    while let Some(Reverse(Head { entry, run })) = heap.pop() {
        if let Some(next) = runs[run].next().transpose()? {
            heap.push(Reverse(Head { entry: next, run }));
        }
        if !emit(entry)? {
            return Ok(());
        }
    }
    Ok(())
}

/// Merges groups of [`MAX_FAN_IN`] runs into bigger runs until at most that many are left.
fn reduce_runs(mut files: Vec<File>, dir: &Path) -> Result<Vec<File>> {
    while files.len() > MAX_FAN_IN {
        let mut next = Vec::with_capacity(files.len().div_ceil(MAX_FAN_IN));
        let mut rest = files.into_iter().peekable();
        while rest.peek().is_some() {
            let group: Vec<RunReader> = rest
                .by_ref()
                .take(MAX_FAN_IN)
                .map(|f| read_run(f, dir.to_path_buf()))
                .collect();
            let mut sink = SpillWriter::new(dir)?;
            merge(group, |e| sink.push(&e).map(|()| true))?;
            next.push(sink.finish()?);
        }
        files = next;
    }
    Ok(files)
}

enum Batch {
    Entries(Vec<Listed>),
    Done,
    Failed(Error),
}

/// Merges spilled runs plus one in-memory run on a thread of its own, as a stream.
fn merge_stream(
    files: Vec<File>,
    last: Vec<Listed>,
    dir: PathBuf,
    backend: &'static str,
) -> EntryStream {
    let (tx, rx) = mpsc::channel::<Batch>(MERGE_CHANNEL);
    let spawned = std::thread::Builder::new()
        .name("syncengine-sort-merge".into())
        .spawn(move || {
            let mut runs: Vec<RunReader> = files
                .into_iter()
                .map(|f| read_run(f, dir.clone()))
                .collect();
            runs.push(Box::new(last.into_iter().map(Ok)));
            let mut batch = Vec::with_capacity(MERGE_BATCH);
            let result = merge(runs, |entry| {
                batch.push(entry);
                if batch.len() >= MERGE_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(MERGE_BATCH));
                    return Ok(tx.blocking_send(Batch::Entries(full)).is_ok());
                }
                Ok(true)
            });
            let _ = match result {
                Ok(()) => {
                    if !batch.is_empty() && tx.blocking_send(Batch::Entries(batch)).is_err() {
                        return;
                    }
                    tx.blocking_send(Batch::Done)
                }
                Err(e) => tx.blocking_send(Batch::Failed(e)),
            };
        });
    if let Err(e) = spawned {
        return error_stream(Error::other(
            BACKEND,
            "",
            format!("sorting a listing: starting the merge thread: {e}"),
        ));
    }
    stream::unfold((rx, false), move |(mut rx, finished)| async move {
        if finished {
            return None;
        }
        match rx.recv().await {
            Some(Batch::Entries(v)) => Some((
                v.into_iter().map(|l| l.into_item(backend)).collect(),
                (rx, false),
            )),
            Some(Batch::Done) => None,
            Some(Batch::Failed(e)) => Some((vec![Err(e)], (rx, true))),
            None => Some((
                vec![Err(Error::other(
                    BACKEND,
                    "",
                    "sorting a listing: the merge stopped before the end",
                ))],
                (rx, true),
            )),
        }
    })
    .flat_map(stream::iter)
    .boxed()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    fn rp(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn entries(paths: &[&str]) -> EntryStream {
        let v: Vec<Result<Entry>> = paths.iter().map(|p| Ok(Entry::new(rp(p), 1))).collect();
        stream::iter(v).boxed()
    }

    async fn collect(s: EntryStream) -> Vec<Result<Entry>> {
        s.collect().await
    }

    fn random_entries(n: usize, seed: u64) -> Vec<Entry> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let alphabet = ['a', 'b', '-', '.', '/', 'é', 'Z', ' ', '0'];
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let len = rng.random_range(1..12);
            let s: String = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let Ok(path) = RelPath::new(format!("{s}{}", out.len() % 7)) else {
                continue;
            };
            if !seen.insert(path.clone()) {
                continue;
            }
            let mut e = Entry::new(path, rng.random()).with_mtime(nanos_to_system_time(
                rng.random_range(-1_000_000_000_000..4_000_000_000_000_000_000),
            ));
            if rng.random_bool(0.5) {
                e = e.with_etag(format!("\"{}\"\n\u{1}", rng.random::<u32>()));
            }
            if rng.random_bool(0.5) {
                e = e.with_hash(ContentHash::Md5(rng.random()));
            }
            if rng.random_bool(0.5) {
                e = e.with_file_id(rng.random());
            }
            out.push(e);
        }
        out
    }

    #[tokio::test]
    async fn check_order_passes_ordered_input() {
        let paths = ["a b", "a-b", "a.b", "a/b", "a/b/c", "a0", "é"];
        let got: Vec<String> = check_order(entries(&paths), "C".into())
            .map_ok(|e| e.path.into_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got, paths);
    }

    #[tokio::test]
    async fn check_order_catches_out_of_order_and_ends() {
        let got = collect(check_order(
            entries(&["a", "a/b", "a-b", "z"]),
            "S3Client(b/p)".into(),
        ))
        .await;
        assert_eq!(got.len(), 3, "stream must end after the error");
        assert!(got[0].is_ok() && got[1].is_ok());
        let err = got[2].as_ref().unwrap_err();
        assert!(
            matches!(err, Error::Other { source, .. } if source.is::<OutOfOrder>()),
            "the engine must be able to tell it from other listing errors: {err:?}"
        );
        let msg = err.to_string();
        for needle in ["\"a-b\"", "\"a/b\"", "S3Client(b/p)"] {
            assert!(msg.contains(needle), "{needle} missing in: {msg}");
        }
    }

    #[tokio::test]
    async fn check_order_catches_duplicates() {
        let got = collect(check_order(entries(&["a", "b", "b", "c"]), "C".into())).await;
        assert_eq!(got.len(), 3);
        let err = got[2].as_ref().unwrap_err();
        assert!(
            matches!(err, Error::Other { source, .. } if !source.is::<OutOfOrder>()),
            "sorting cannot mend a repeated path: {err:?}"
        );
        assert!(err.to_string().contains("\"b\" twice"), "{err}");
    }

    #[tokio::test]
    async fn check_order_passes_input_errors_through() {
        let s = stream::iter(vec![
            Ok(Entry::new(rp("a"), 1)),
            Err(Error::transient("s3", "", "reset")),
        ])
        .boxed();
        let got = collect(check_order(s, "C".into())).await;
        assert_eq!(got.len(), 2);
        assert!(got[1].as_ref().unwrap_err().is_transient());
    }

    #[tokio::test]
    async fn sorts_ten_thousand_random_entries_with_spilling() {
        let input = random_entries(10_000, 7);
        let scratch = tempfile::tempdir().unwrap();
        let s = stream::iter(input.clone().into_iter().map(Ok)).boxed();
        let got: Vec<Entry> = sort_listing(s, scratch.path(), 1000)
            .await
            .try_collect()
            .await
            .unwrap();
        let mut want = input;
        want.sort_by(|a, b| a.path.as_str().as_bytes().cmp(b.path.as_str().as_bytes()));
        assert_eq!(got.len(), 10_000);
        // Whole entries survive the trip through the spill files, not just the paths.
        assert!(got == want, "sorted output differs from the sorted input");
    }

    #[tokio::test]
    async fn many_runs_are_reduced_before_merging() {
        // 3000 entries in runs of 10 is 300 runs: more than MAX_FAN_IN.
        let mut input = random_entries(3000, 11);
        let scratch = tempfile::tempdir().unwrap();
        let s = stream::iter(input.clone().into_iter().map(Ok)).boxed();
        let got: Vec<Entry> = sort_listing(s, scratch.path(), 10)
            .await
            .try_collect()
            .await
            .unwrap();
        input.sort_by(|a, b| a.path.cmp(&b.path));
        assert!(got == input);
    }

    #[tokio::test]
    async fn small_listings_stay_in_memory() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("never-created");
        let got: Vec<String> = sort_listing(entries(&["c", "a/b", "a-b", "a"]), &dir, 4)
            .await
            .map_ok(|e| e.path.into_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got, ["a", "a-b", "a/b", "c"]);
        assert!(
            !dir.exists(),
            "a small listing touched the scratch directory"
        );
        // One more entry than the run size spills, and creates the directory.
        let got: Vec<Entry> = sort_listing(entries(&["c", "a/b", "a-b", "a", "b"]), &dir, 4)
            .await
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got.len(), 5);
        assert!(dir.exists());
    }

    #[tokio::test]
    async fn duplicates_are_errors() {
        let scratch = tempfile::tempdir().unwrap();
        // In memory.
        let got = collect(sort_listing(entries(&["b", "a", "b"]), scratch.path(), 100).await).await;
        assert_eq!(got.len(), 3);
        assert!(
            got[2]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("\"b\" twice")
        );
        // Across spilled runs.
        let mut paths: Vec<String> = (0..500).map(|i| format!("f{i:04}")).collect();
        paths.push("f0123".into());
        paths.shuffle(&mut rand::rngs::StdRng::seed_from_u64(3));
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let got = collect(sort_listing(entries(&refs), scratch.path(), 50).await).await;
        let errs: Vec<_> = got.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].to_string().contains("\"f0123\" twice"),
            "{}",
            errs[0]
        );
        assert!(got.last().unwrap().is_err(), "stream must end at the error");
        assert_eq!(got.len(), 125, "f0000..=f0123 then the error");
    }

    #[tokio::test]
    async fn input_errors_propagate() {
        let scratch = tempfile::tempdir().unwrap();
        for run_size in [2, 1000] {
            let mut items: Vec<Result<Entry>> = (0..10)
                .map(|i| Ok(Entry::new(rp(&format!("f{i}")), 1)))
                .collect();
            items.insert(7, Err(Error::not_found("webdav", "gone")));
            let got =
                collect(sort_listing(stream::iter(items).boxed(), scratch.path(), run_size).await)
                    .await;
            assert_eq!(got.len(), 1, "run_size {run_size}: only the error");
            assert!(got[0].as_ref().unwrap_err().is_not_found());
        }
    }

    /// Unknown paths are ordered where a file of their name would be (a folder with
    /// undecodable members as `folder/`), survive spilling, and keep the stream going.
    #[tokio::test]
    async fn unlisted_items_are_sorted_checked_and_kept() {
        let input = || {
            stream::iter(vec![
                Ok(Entry::new(rp("d.txt"), 1)),
                Err(Error::unlisted("local", "d", "a symlink (not followed)")),
                Ok(Entry::new(rp("e/x"), 1)),
                Err(Error::unlisted_contents(
                    "local",
                    "e",
                    "names that cannot be synced",
                )),
                Ok(Entry::new(rp("a"), 1)),
                Err(Error::unlisted_contents(
                    "local",
                    "",
                    "names that cannot be synced",
                )),
            ])
            .boxed()
        };
        let keys = |items: Vec<Result<Entry>>| -> Vec<String> {
            items
                .into_iter()
                .map(|i| match i {
                    Ok(e) => e.path.into_string(),
                    Err(e) => format!("?{}", e.unlisted_key().unwrap()),
                })
                .collect()
        };
        let want = ["?", "a", "?d", "d.txt", "?e/", "e/x"];
        let scratch = tempfile::tempdir().unwrap();
        for run_size in [1, 2, 100] {
            let sorted = sort_listing(input(), scratch.path(), run_size).await;
            let got = collect(check_order(sorted, "C".into())).await;
            assert_eq!(keys(got), want, "run_size {run_size}");
        }
        // The backend name survives spilling.
        let got = collect(sort_listing(input(), scratch.path(), 1).await).await;
        assert!(
            got[0]
                .as_ref()
                .unwrap_err()
                .to_string()
                .starts_with("local:")
        );
        // Out of order: `d` (unknown) after `d.txt`.
        let bad = stream::iter(vec![
            Ok(Entry::new(rp("d.txt"), 1)),
            Err(Error::unlisted("local", "d", "x")),
        ])
        .boxed();
        let got = collect(check_order(bad, "C".into())).await;
        assert!(
            got[1]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("out of canonical")
        );
    }

    #[tokio::test]
    async fn unusable_scratch_dir_is_an_error() {
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let got = collect(sort_listing(entries(&["b", "a", "c"]), &file, 1).await).await;
        assert_eq!(got.len(), 1);
        assert!(
            got[0].as_ref().unwrap_err().to_string().contains("scratch"),
            "{:?}",
            got[0]
        );
    }
}
