//! [`SpillVec`]: a list that keeps its first items in a temporary file once it grows long,
//! so a plan of a million actions does not hold a million actions in memory.
//!
//! The reconciler pushes actions in canonical order and the executor reads them back in the
//! same order, so the list needs no random access to most of its items: only the last few
//! pushed (which stay in memory) are edited in place. An item already written out can still
//! be replaced or removed: the change is kept aside ([`SpillVec::replace`],
//! [`SpillVec::remove`]) and applied as the item is read back. The file is created unlinked
//! ([`tempfile::tempfile_in`]), so nothing is left behind whatever ends the run.
//!
//! Items are written in a compact binary form ([`Spill`]). Reading one back can fail only
//! when the temporary file cannot be read; that is an error of the run, never a shorter list.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::entry::{ContentHash, Entry};
use crate::mode::Side;
use crate::path::RelPath;
use crate::plan::Action;
use crate::state::{BaseRecord, BaseUpdate, SideRecord};

/// The error of a run whose plan's temporary file failed: it cannot go on from a plan it
/// cannot read.
pub(crate) fn spill_error(e: io::Error) -> crate::error::SyncError {
    crate::error::SyncError::State(format!(
        "could not keep the plan in a temporary file ({e}); check the free space and \
         permissions of the state directory (--state-dir), where a long plan's temporary \
         files go, and of the temporary folder (TMPDIR), where they go when the state \
         directory refuses them"
    ))
}

/// Items a [`SpillVec`] keeps in memory before it writes them out: 4096 (a few MiB of
/// actions). Debug builds keep 3, so every test of the engine that plans more than a few
/// actions runs through the temporary file and its edits.
pub const IN_MEMORY: usize = if cfg!(debug_assertions) { 3 } else { 4096 };

/// An item a [`SpillVec`] can write out and read back.
pub trait Spill: Sized + Clone {
    /// Appends the item's encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads one item from the front of `input`, advancing it.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidData`] when `input` does not hold an item written by
    /// [`Spill::encode`].
    fn decode(input: &mut &[u8]) -> io::Result<Self>;
}

/// A list of items in push order, of which all but the last [`IN_MEMORY`] (or so) may live in
/// a temporary file.
pub struct SpillVec<T: Spill> {
    /// The items pushed after the last write-out.
    memory: Vec<T>,
    /// How many items the file holds (the first `written` of the list).
    written: usize,
    /// The file and its length in bytes.
    file: Option<(BufWriter<File>, u64)>,
    /// The folder the file was created in, named by the errors of writing and reading it.
    place: Option<PathBuf>,
    /// Replacements (`Some`) and removals (`None`) of items the file holds, by index.
    changed: BTreeMap<usize, Option<T>>,
    /// Where the file goes (the system's temporary folder when `None`).
    dir: Option<PathBuf>,
    /// Items kept in memory before a write-out.
    limit: usize,
    /// Items removed (they keep their index, so `len` counts them; `count` does not).
    removed: usize,
}

impl<T: Spill> Default for SpillVec<T> {
    fn default() -> Self {
        SpillVec::new()
    }
}

impl<T: Spill + std::fmt::Debug> std::fmt::Debug for SpillVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillVec")
            .field("len", &self.len())
            .field("written", &self.written)
            .field("in_memory", &self.memory)
            .finish_non_exhaustive()
    }
}

impl<T: Spill> Clone for SpillVec<T> {
    /// Clones the items into a new list. The file's items are read back, so a list that
    /// spilled is cloned at the cost of reading it; a read error leaves them out of the clone
    /// and is logged (clones serve reports and tests, never the executor).
    fn clone(&self) -> Self {
        let mut copy = SpillVec::new();
        copy.dir = self.dir.clone();
        copy.limit = self.limit;
        for item in self.iter() {
            match item {
                Ok(item) => {
                    copy.push(item.into_owned());
                    // A clone that cannot write out keeps its items in memory.
                    if let Err(e) = copy.relieve() {
                        tracing::warn!("cloning a spilled list: {e}");
                    }
                }
                Err(e) => {
                    tracing::warn!("cloning a spilled list: {e}");
                    break;
                }
            }
        }
        copy
    }
}

impl<T: Spill> SpillVec<T> {
    /// An empty list whose file (if it needs one) goes to the system's temporary folder.
    pub fn new() -> Self {
        SpillVec {
            memory: Vec::new(),
            written: 0,
            file: None,
            place: None,
            changed: BTreeMap::new(),
            dir: None,
            limit: IN_MEMORY,
            removed: 0,
        }
    }

    /// Puts the file (if the list needs one) in `dir` rather than the temporary folder.
    pub fn in_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// An empty list whose file goes where this one's does, with the same limit.
    pub fn sibling<U: Spill>(&self) -> SpillVec<U> {
        let mut list = SpillVec::new().with_limit(self.limit);
        list.dir = self.dir.clone();
        list
    }

    /// Keeps at most `limit` items in memory (tests use small limits).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// The index the next pushed item gets: items pushed so far, removed ones included.
    pub fn next_index(&self) -> usize {
        self.written + self.memory.len()
    }

    /// True when the list holds no items (removed ones do not count).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items the list holds (removed ones do not count).
    pub fn len(&self) -> usize {
        self.next_index() - self.removed
    }

    /// True when some items live in the file.
    pub fn spilled(&self) -> bool {
        self.written > 0
    }

    /// Appends `item` and returns its index. It stays in memory until the next
    /// [`SpillVec::relieve`].
    pub fn push(&mut self, item: T) -> usize {
        let index = self.next_index();
        self.memory.push(item);
        index
    }

    /// Writes the items in memory out to the file once there are more than the limit.
    /// Called at points where no index into the in-memory part is held for editing (the
    /// reconciler calls it between paths), so that [`SpillVec::get_mut`] and
    /// [`SpillVec::split_off_memory`] always find what the current step pushed.
    ///
    /// # Errors
    /// When the temporary file cannot be created or written.
    pub fn relieve(&mut self) -> io::Result<()> {
        self.write_out().map_err(|e| self.located(e))
    }

    /// `e` with the folder of the file it concerns, so that the run's error says where the
    /// space or the permission is missing.
    fn located(&self, e: io::Error) -> io::Error {
        match &self.place {
            Some(place) => io::Error::new(e.kind(), format!("{e}, in {}", place.display())),
            None => e,
        }
    }

    /// [`SpillVec::relieve`]'s work, its errors not yet [`located`](Self::located).
    fn write_out(&mut self) -> io::Result<()> {
        if self.memory.len() < self.limit {
            return Ok(());
        }
        let (file, length) = match &mut self.file {
            Some(f) => f,
            None => {
                // `place` is set before each attempt, so a failed one is named too.
                let f = match &self.dir {
                    Some(dir) => {
                        self.place = Some(dir.clone());
                        match tempfile::tempfile_in(dir) {
                            Ok(f) => f,
                            Err(_) => {
                                self.place = Some(std::env::temp_dir());
                                tempfile::tempfile()?
                            }
                        }
                    }
                    None => {
                        self.place = Some(std::env::temp_dir());
                        tempfile::tempfile()?
                    }
                };
                self.file
                    .insert((BufWriter::with_capacity(256 * 1024, f), 0))
            }
        };
        let mut record = Vec::with_capacity(256);
        for item in self.memory.drain(..) {
            record.clear();
            record.extend_from_slice(&[0; 4]);
            item.encode(&mut record);
            let body = u32::try_from(record.len() - 4)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "item too large"))?;
            record[..4].copy_from_slice(&body.to_le_bytes());
            file.write_all(&record)?;
            *length += record.len() as u64;
            self.written += 1;
        }
        file.flush()?;
        Ok(())
    }

    /// The item at `index` when it is still in memory.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        let i = index.checked_sub(self.written)?;
        self.memory.get_mut(i)
    }

    /// Replaces the item at `index` (in memory or in the file).
    pub fn replace(&mut self, index: usize, item: T) {
        if let Some(slot) = self.get_mut(index) {
            *slot = item;
            if let Some(None) = self.changed.remove(&index) {
                self.removed -= 1;
            }
        } else if index < self.written
            && let Some(None) = self.changed.insert(index, Some(item))
        {
            self.removed -= 1;
        }
    }

    /// Removes the item at `index`; later items keep their indices.
    pub fn remove(&mut self, index: usize) {
        if index >= self.next_index() {
            return;
        }
        if index >= self.written {
            // Kept as a removal too, so indices stay put; dropped as it is read.
            if !matches!(self.changed.get(&index), Some(None)) {
                self.changed.insert(index, None);
                self.removed += 1;
            }
            return;
        }
        if !matches!(self.changed.insert(index, None), Some(None)) {
            self.removed += 1;
        }
    }

    /// Takes out every item from `from` on, which must all be in memory (pushed since the
    /// last [`SpillVec::relieve`]).
    ///
    /// # Errors
    /// When an item from `from` on was written out already (nothing is taken then).
    pub fn split_off_memory(&mut self, from: usize) -> io::Result<Vec<T>> {
        let Some(i) = from.checked_sub(self.written) else {
            return Err(io::Error::other(
                "items written out to the temporary file cannot be taken back",
            ));
        };
        let tail = self.memory.split_off(i.min(self.memory.len()));
        let gone: Vec<usize> = self.changed.range(from..).map(|(k, _)| *k).collect();
        let mut dropped = std::collections::HashSet::new();
        for k in gone {
            if let Some(None) = self.changed.remove(&k) {
                self.removed -= 1;
                dropped.insert(k);
            }
        }
        // Items removed meanwhile are not handed back.
        Ok(tail
            .into_iter()
            .enumerate()
            .filter(|(n, _)| !dropped.contains(&(from + n)))
            .map(|(_, item)| item)
            .collect())
    }

    /// The items in order, read back from the file as needed.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            list: self,
            index: 0,
            offset: 0,
            chunk: Vec::new(),
            at: 0,
            failed: false,
        }
    }

    /// The items in order with their indices (those [`SpillVec::push`] returned): removed
    /// items are skipped, and the others keep their indices.
    pub fn iter_indexed(&self) -> Indexed<'_, T> {
        Indexed(self.iter())
    }

    /// Reads every item into a `Vec`.
    ///
    /// # Errors
    /// When the temporary file cannot be read.
    pub fn to_vec(&self) -> io::Result<Vec<T>> {
        self.iter().map(|r| r.map(Cow::into_owned)).collect()
    }

    /// Consumes the list, yielding its items in order.
    pub fn into_items(self) -> IntoItems<T> {
        IntoItems {
            list: self,
            index: 0,
            offset: 0,
            chunk: Vec::new(),
            at: 0,
            failed: false,
            tail: None,
        }
    }

    /// Keeps the items for which `keep` returns true, writing the kept ones into a new list.
    ///
    /// # Errors
    /// When the temporary file cannot be read or the new one written.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> io::Result<()> {
        self.rewrite(|item| if keep(&item) { vec![item] } else { Vec::new() })
    }

    /// Replaces each item by what `f` makes of it (none, itself, or several), in order.
    ///
    /// # Errors
    /// When the temporary file cannot be read or the new one written.
    pub fn rewrite(&mut self, mut f: impl FnMut(T) -> Vec<T>) -> io::Result<()> {
        let mut out = self.sibling();
        let old = std::mem::take(self);
        for item in old.into_items() {
            for made in f(item?) {
                out.push(made);
                out.relieve()?;
            }
        }
        *self = out;
        Ok(())
    }

    /// Reads the record starting at byte `offset` of the file into `chunk`: the records of
    /// up to 256 KiB from there. Returns the new offset.
    fn read_chunk(&self, offset: u64, chunk: &mut Vec<u8>) -> io::Result<u64> {
        let Some((file, length)) = &self.file else {
            return Err(io::Error::other("spilled items without a file"));
        };
        let left = length.saturating_sub(offset);
        let want = left.min(256 * 1024) as usize;
        chunk.clear();
        chunk.resize(want, 0);
        file.get_ref().read_exact_at(chunk, offset)?;
        // Keep whole records only; a record longer than the chunk is read on its own.
        let mut end = 0;
        while end + 4 <= chunk.len() {
            let body = u32::from_le_bytes(chunk[end..end + 4].try_into().unwrap_or_default());
            let next = end + 4 + body as usize;
            if next > chunk.len() {
                break;
            }
            end = next;
        }
        if end == 0 && want > 0 {
            let mut head = [0u8; 4];
            file.get_ref().read_exact_at(&mut head, offset)?;
            let body = u32::from_le_bytes(head) as usize;
            chunk.resize(4 + body, 0);
            file.get_ref().read_exact_at(chunk, offset)?;
            end = chunk.len();
        }
        chunk.truncate(end);
        Ok(offset + end as u64)
    }
}

/// The next item of a spilled list: shared by [`Iter`] and [`IntoItems`].
fn next_record<T: Spill>(
    list: &SpillVec<T>,
    offset: &mut u64,
    chunk: &mut Vec<u8>,
    at: &mut usize,
) -> io::Result<T> {
    if *at >= chunk.len() {
        *offset = list
            .read_chunk(*offset, chunk)
            .map_err(|e| list.located(e))?;
        *at = 0;
        if chunk.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the spilled list's file ended early",
            ));
        }
    }
    let mut rest = &chunk[*at + 4..];
    let before = rest.len();
    let item = T::decode(&mut rest)?;
    *at += 4 + (before - rest.len());
    Ok(item)
}

/// Iterator over a [`SpillVec`]'s items with their indices ([`SpillVec::iter_indexed`]).
pub struct Indexed<'a, T: Spill>(Iter<'a, T>);

impl<'a, T: Spill> Iterator for Indexed<'a, T> {
    type Item = io::Result<(usize, Cow<'a, T>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_indexed()
    }
}

/// Iterator over a [`SpillVec`]'s items ([`SpillVec::iter`]).
pub struct Iter<'a, T: Spill> {
    list: &'a SpillVec<T>,
    index: usize,
    offset: u64,
    chunk: Vec<u8>,
    at: usize,
    failed: bool,
}

impl<'a, T: Spill> Iterator for Iter<'a, T> {
    type Item = io::Result<Cow<'a, T>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_indexed().map(|r| r.map(|(_, item)| item))
    }
}

impl<'a, T: Spill> Iter<'a, T> {
    /// The next item with its index (removed items keep theirs, so indices skip them).
    fn next_indexed(&mut self) -> Option<io::Result<(usize, Cow<'a, T>)>> {
        loop {
            if self.failed {
                return None;
            }
            let i = self.index;
            if i >= self.list.next_index() {
                return None;
            }
            self.index += 1;
            if i < self.list.written {
                let item =
                    match next_record(self.list, &mut self.offset, &mut self.chunk, &mut self.at) {
                        Ok(item) => item,
                        Err(e) => {
                            self.failed = true;
                            return Some(Err(e));
                        }
                    };
                match self.list.changed.get(&i) {
                    None => return Some(Ok((i, Cow::Owned(item)))),
                    Some(Some(changed)) => return Some(Ok((i, Cow::Borrowed(changed)))),
                    Some(None) => continue,
                }
            }
            if let Some(None) = self.list.changed.get(&i) {
                continue;
            }
            return Some(Ok((
                i,
                Cow::Borrowed(&self.list.memory[i - self.list.written]),
            )));
        }
    }
}

/// Consuming iterator over a [`SpillVec`]'s items ([`SpillVec::into_items`]).
pub struct IntoItems<T: Spill> {
    list: SpillVec<T>,
    index: usize,
    offset: u64,
    chunk: Vec<u8>,
    at: usize,
    failed: bool,
    /// The in-memory part, once the file's items are all read.
    tail: Option<std::vec::IntoIter<T>>,
}

impl<T: Spill> Iterator for IntoItems<T> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            let i = self.index;
            if i >= self.list.written {
                // The file is read: the rest is in memory, in order.
                if self.tail.is_none() {
                    self.list.file = None;
                    self.tail = Some(std::mem::take(&mut self.list.memory).into_iter());
                }
                let item = self.tail.as_mut()?.next()?;
                self.index += 1;
                if let Some(None) = self.list.changed.get(&i) {
                    continue;
                }
                return Some(Ok(item));
            }
            self.index += 1;
            let item =
                match next_record(&self.list, &mut self.offset, &mut self.chunk, &mut self.at) {
                    Ok(item) => item,
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                };
            match self.list.changed.remove(&i) {
                None => return Some(Ok(item)),
                Some(Some(changed)) => return Some(Ok(changed)),
                Some(None) => continue,
            }
        }
    }
}

// The encoding: integers little-endian, strings and optional values with a leading length
// or tag. Only this module writes and reads it, within one run.

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_opt<V>(out: &mut Vec<u8>, v: Option<V>, put: impl FnOnce(&mut Vec<u8>, V)) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put(out, v);
        }
    }
}

fn put_time(out: &mut Vec<u8>, t: SystemTime) {
    // Exact for every time, before the epoch too: a sign, whole seconds and nanoseconds.
    let (sign, d) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (0u8, d),
        Err(e) => (1u8, e.duration()),
    };
    out.push(sign);
    put_u64(out, d.as_secs());
    out.extend_from_slice(&d.subsec_nanos().to_le_bytes());
}

fn put_hash(out: &mut Vec<u8>, h: &ContentHash) {
    match h {
        ContentHash::Md5(b) => {
            out.push(0);
            out.extend_from_slice(b);
        }
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("spilled list: bad {what}"),
    )
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> io::Result<&'a [u8]> {
    if input.len() < n {
        return Err(bad("length"));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn get_u8(input: &mut &[u8]) -> io::Result<u8> {
    Ok(take(input, 1)?[0])
}

fn get_u64(input: &mut &[u8]) -> io::Result<u64> {
    let b = take(input, 8)?;
    Ok(u64::from_le_bytes(
        b.try_into().map_err(|_| bad("integer"))?,
    ))
}

fn get_string(input: &mut &[u8]) -> io::Result<String> {
    let n = usize::try_from(get_u64(input)?).map_err(|_| bad("length"))?;
    String::from_utf8(take(input, n)?.to_vec()).map_err(|_| bad("string"))
}

fn get_opt<V>(
    input: &mut &[u8],
    get: impl FnOnce(&mut &[u8]) -> io::Result<V>,
) -> io::Result<Option<V>> {
    match get_u8(input)? {
        0 => Ok(None),
        1 => get(input).map(Some),
        _ => Err(bad("option")),
    }
}

fn get_time(input: &mut &[u8]) -> io::Result<SystemTime> {
    let sign = get_u8(input)?;
    let secs = get_u64(input)?;
    let nanos = u32::from_le_bytes(take(input, 4)?.try_into().map_err(|_| bad("time"))?);
    let d = Duration::new(secs, nanos);
    match sign {
        0 => UNIX_EPOCH.checked_add(d),
        1 => UNIX_EPOCH.checked_sub(d),
        _ => None,
    }
    .ok_or_else(|| bad("time"))
}

fn get_hash(input: &mut &[u8]) -> io::Result<ContentHash> {
    match get_u8(input)? {
        0 => {
            let b: [u8; 16] = take(input, 16)?.try_into().map_err(|_| bad("hash"))?;
            Ok(ContentHash::Md5(b))
        }
        _ => Err(bad("hash kind")),
    }
}

fn get_path(input: &mut &[u8]) -> io::Result<RelPath> {
    RelPath::new(get_string(input)?).map_err(|_| bad("path"))
}

fn put_side(out: &mut Vec<u8>, side: Side) {
    out.push(match side {
        Side::Source => 0,
        Side::Destination => 1,
    });
}

impl Spill for Side {
    fn encode(&self, out: &mut Vec<u8>) {
        put_side(out, *self);
    }

    fn decode(input: &mut &[u8]) -> io::Result<Self> {
        get_side(input)
    }
}

impl Spill for Option<u64> {
    fn encode(&self, out: &mut Vec<u8>) {
        put_opt(out, *self, put_u64);
    }

    fn decode(input: &mut &[u8]) -> io::Result<Self> {
        get_opt(input, get_u64)
    }
}

fn get_side(input: &mut &[u8]) -> io::Result<Side> {
    match get_u8(input)? {
        0 => Ok(Side::Source),
        1 => Ok(Side::Destination),
        _ => Err(bad("side")),
    }
}

fn get_bool(input: &mut &[u8]) -> io::Result<bool> {
    match get_u8(input)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(bad("flag")),
    }
}

impl Spill for Entry {
    fn encode(&self, out: &mut Vec<u8>) {
        put_str(out, self.path.as_str());
        put_u64(out, self.size);
        put_opt(out, self.mtime, put_time);
        put_opt(out, self.etag.as_deref(), put_str);
        put_opt(out, self.hash.as_ref(), put_hash);
        put_opt(out, self.file_id, put_u64);
        put_opt(out, self.birth_time, put_time);
        put_opt(out, self.permissions, |o, p| {
            o.extend_from_slice(&p.to_le_bytes())
        });
    }

    fn decode(input: &mut &[u8]) -> io::Result<Self> {
        let mut e = Entry::new(get_path(input)?, get_u64(input)?);
        e.mtime = get_opt(input, get_time)?;
        e.etag = get_opt(input, get_string)?;
        e.hash = get_opt(input, get_hash)?;
        e.file_id = get_opt(input, get_u64)?;
        e.birth_time = get_opt(input, get_time)?;
        e.permissions = get_opt(input, |i| {
            Ok(u32::from_le_bytes(
                take(i, 4)?.try_into().map_err(|_| bad("permissions"))?,
            ))
        })?;
        Ok(e)
    }
}

impl Spill for Action {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Action::Copy {
                from,
                entry,
                target,
            } => {
                out.push(0);
                put_side(out, *from);
                entry.encode(out);
                put_opt(out, target.as_ref(), |o, t| t.encode(o));
            }
            Action::Delete { side, entry } => {
                out.push(1);
                put_side(out, *side);
                entry.encode(out);
            }
            Action::Rename {
                seen_on,
                from,
                to,
                keep_old,
            } => {
                out.push(2);
                put_side(out, *seen_on);
                from.encode(out);
                to.encode(out);
                out.push(u8::from(*keep_old));
            }
            Action::Conflict {
                source,
                destination,
                winner,
            } => {
                out.push(3);
                source.encode(out);
                destination.encode(out);
                put_opt(out, *winner, put_side);
            }
            Action::SetAside {
                kept_side,
                kept,
                new,
            } => {
                out.push(4);
                put_side(out, *kept_side);
                kept.encode(out);
                new.encode(out);
            }
            Action::MoveAside {
                side,
                entry,
                share,
                settled,
            } => {
                out.push(5);
                put_side(out, *side);
                entry.encode(out);
                out.push(u8::from(*share));
                out.push(u8::from(*settled));
            }
        }
    }

    fn decode(input: &mut &[u8]) -> io::Result<Self> {
        Ok(match get_u8(input)? {
            0 => Action::Copy {
                from: get_side(input)?,
                entry: Entry::decode(input)?,
                target: get_opt(input, Entry::decode)?,
            },
            1 => Action::Delete {
                side: get_side(input)?,
                entry: Entry::decode(input)?,
            },
            2 => Action::Rename {
                seen_on: get_side(input)?,
                from: Entry::decode(input)?,
                to: Entry::decode(input)?,
                keep_old: get_bool(input)?,
            },
            3 => Action::Conflict {
                source: Entry::decode(input)?,
                destination: Entry::decode(input)?,
                winner: get_opt(input, get_side)?,
            },
            4 => Action::SetAside {
                kept_side: get_side(input)?,
                kept: Entry::decode(input)?,
                new: Entry::decode(input)?,
            },
            5 => Action::MoveAside {
                side: get_side(input)?,
                entry: Entry::decode(input)?,
                share: get_bool(input)?,
                settled: get_bool(input)?,
            },
            _ => return Err(bad("action")),
        })
    }
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn get_i64(input: &mut &[u8]) -> io::Result<i64> {
    Ok(get_u64(input)?.cast_signed())
}

impl Spill for SideRecord {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.size);
        put_opt(out, self.mtime_nanos, put_i64);
        put_opt(out, self.etag.as_deref(), put_str);
        put_opt(out, self.hash.as_ref(), put_hash);
        put_opt(out, self.file_id, put_u64);
        put_opt(out, self.birth_nanos, put_i64);
    }

    fn decode(input: &mut &[u8]) -> io::Result<Self> {
        Ok(SideRecord {
            size: get_u64(input)?,
            mtime_nanos: get_opt(input, get_i64)?,
            etag: get_opt(input, get_string)?,
            hash: get_opt(input, get_hash)?,
            file_id: get_opt(input, get_u64)?,
            birth_nanos: get_opt(input, get_i64)?,
        })
    }
}

impl Spill for BaseUpdate {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            BaseUpdate::Put(r) => {
                out.push(0);
                put_str(out, r.path.as_str());
                r.source.encode(out);
                r.destination.encode(out);
                put_opt(out, r.settled, put_side);
            }
            BaseUpdate::Remove(p) => {
                out.push(1);
                put_str(out, p.as_str());
            }
        }
    }

    fn decode(input: &mut &[u8]) -> io::Result<Self> {
        Ok(match get_u8(input)? {
            0 => {
                let path = get_path(input)?;
                let source = SideRecord::decode(input)?;
                let destination = SideRecord::decode(input)?;
                let mut r = BaseRecord::new(path, source, destination);
                r.settled = get_opt(input, get_side)?;
                BaseUpdate::Put(r)
            }
            1 => BaseUpdate::Remove(get_path(input)?),
            _ => return Err(bad("base update")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, size: u64) -> Entry {
        let mut e = Entry::new(RelPath::new(path).unwrap(), size);
        e.mtime = Some(UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789));
        e.etag = Some(format!("\"{path}\""));
        e.hash = Some(ContentHash::Md5([size as u8; 16]));
        e.file_id = Some(size * 7);
        e.birth_time = Some(UNIX_EPOCH - Duration::new(5, 1));
        e.permissions = Some(0o640);
        e
    }

    fn every_kind(i: u64) -> Vec<Action> {
        let p = |s: &str| format!("d{i}/{s}");
        vec![
            Action::Copy {
                from: Side::Source,
                entry: entry(&p("a"), i),
                target: Some(entry(&p("a"), i + 1)),
            },
            Action::Copy {
                from: Side::Destination,
                entry: Entry::new(RelPath::new(p("bare")).unwrap(), 0),
                target: None,
            },
            Action::Delete {
                side: Side::Destination,
                entry: entry(&p("b"), i),
            },
            Action::Rename {
                seen_on: Side::Source,
                from: entry(&p("old"), i),
                to: entry(&p("new é"), i),
                keep_old: true,
            },
            Action::Conflict {
                source: entry(&p("c"), 1),
                destination: entry(&p("c"), 2),
                winner: None,
            },
            Action::SetAside {
                kept_side: Side::Destination,
                kept: entry(&p("s"), 3),
                new: entry(&p("s"), 4),
            },
            Action::MoveAside {
                side: Side::Source,
                entry: entry(&p("m"), 5),
                share: true,
                settled: false,
            },
        ]
    }

    /// Pushes `items` the way the reconciler does (relieving between pushes).
    fn spilled(items: &[Action], limit: usize) -> SpillVec<Action> {
        let mut list = SpillVec::new().with_limit(limit);
        for a in items {
            list.push(a.clone());
            list.relieve().unwrap();
        }
        list
    }

    #[test]
    fn every_action_and_field_comes_back_as_it_went_in() {
        let items: Vec<Action> = (0..40).flat_map(every_kind).collect();
        for limit in [1, 3, 7, 1000] {
            let list = spilled(&items, limit);
            assert_eq!(list.spilled(), limit < items.len(), "limit {limit}");
            assert_eq!(list.to_vec().unwrap(), items, "limit {limit}");
            assert_eq!(list.len(), items.len());
            let consumed: Vec<Action> = list.into_items().map(Result::unwrap).collect();
            assert_eq!(consumed, items, "limit {limit}");
        }
    }

    #[test]
    fn base_updates_come_back_as_they_went_in() {
        let mut list = SpillVec::new().with_limit(2);
        let mut expected = Vec::new();
        for i in 0..10u64 {
            let mut r = BaseRecord::new(
                RelPath::new(format!("r/{i}")).unwrap(),
                SideRecord::from_entry(&entry("x", i)),
                SideRecord::default(),
            );
            r.settled = (i % 2 == 0).then_some(Side::Source);
            for u in [
                BaseUpdate::Put(r),
                BaseUpdate::Remove(RelPath::new(format!("gone/{i}")).unwrap()),
            ] {
                expected.push(u.clone());
                list.push(u);
                list.relieve().unwrap();
            }
        }
        assert!(list.spilled());
        assert_eq!(list.to_vec().unwrap(), expected);
    }

    #[test]
    fn replaced_and_removed_items_keep_the_others_indices() {
        let items: Vec<Action> = (0..10).flat_map(every_kind).collect();
        let mut list = spilled(&items, 4);
        let mut expected: Vec<Option<Action>> = items.iter().cloned().map(Some).collect();
        // Items in the file and in memory alike.
        for (i, n) in [(0, 69), (5, 68), (33, 2), (60, 69)] {
            list.replace(i, items[n].clone());
            expected[i] = Some(items[n].clone());
        }
        for i in [1, 2, 33, 61, 69] {
            list.remove(i);
            list.remove(i); // twice: counted once
            expected[i] = None;
        }
        let indexed: Vec<(usize, Action)> = list
            .iter_indexed()
            .map(|r| r.map(|(i, a)| (i, a.into_owned())))
            .collect::<io::Result<_>>()
            .unwrap();
        let want_indexed: Vec<(usize, Action)> = expected
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.clone().map(|a| (i, a)))
            .collect();
        assert_eq!(
            indexed, want_indexed,
            "removed items keep the others' indices"
        );
        // Replacing a removed item puts it back, in the file and in memory.
        list.replace(2, items[9].clone());
        expected[2] = Some(items[9].clone());
        list.replace(69, items[8].clone());
        expected[69] = Some(items[8].clone());
        let want: Vec<Action> = expected.into_iter().flatten().collect();
        assert_eq!(list.len(), want.len());
        assert_eq!(list.next_index(), items.len(), "indices stay put");
        assert_eq!(list.to_vec().unwrap(), want);
        let pushed = list.push(items[0].clone());
        assert_eq!(pushed, items.len());
        let mut want = want;
        want.push(items[0].clone());
        assert_eq!(
            list.into_items().collect::<io::Result<Vec<_>>>().unwrap(),
            want
        );
    }

    #[test]
    fn retain_and_rewrite_go_through_the_file() {
        let items: Vec<Action> = (0..20).flat_map(every_kind).collect();
        let mut list = spilled(&items, 5);
        list.retain(|a| a.is_delete()).unwrap();
        let deletes: Vec<Action> = items.iter().filter(|a| a.is_delete()).cloned().collect();
        assert_eq!(list.to_vec().unwrap(), deletes);
        list.rewrite(|a| vec![a.clone(), a]).unwrap();
        assert_eq!(list.len(), 2 * deletes.len());
        assert!(list.spilled());
    }

    #[test]
    fn the_tail_pushed_since_the_last_relieve_can_be_taken_back() {
        let items: Vec<Action> = (0..3).flat_map(every_kind).collect();
        let mut list = spilled(&items[..10], 4);
        let mark = list.next_index();
        for a in &items[10..] {
            list.push(a.clone());
        }
        list.remove(mark + 1);
        let tail = list.split_off_memory(mark).unwrap();
        let mut want = items[10..].to_vec();
        want.remove(1);
        assert_eq!(tail, want, "without the item removed meanwhile");
        assert_eq!(list.len(), 10, "the removal in the tail went with it");
        assert_eq!(list.to_vec().unwrap(), items[..10].to_vec());
        assert!(
            list.split_off_memory(0).is_err(),
            "written-out items cannot be taken back"
        );
        assert_eq!(list.len(), 10);
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_shorter_list() {
        let items: Vec<Action> = (0..10).flat_map(every_kind).collect();
        let mut list = spilled(&items, 2);
        // Cut the file short behind the list's back.
        if let Some((file, _)) = &mut list.file {
            file.get_ref().set_len(40).unwrap();
        }
        let read: Vec<io::Result<Cow<'_, Action>>> = list.iter().collect();
        assert!(read.iter().any(Result::is_err), "a read error must surface");
        assert!(list.to_vec().is_err());
    }

    #[test]
    fn a_record_longer_than_a_chunk_reads_back() {
        let long = "x".repeat(300 * 1024);
        let mut e = entry("big", 1);
        e.etag = Some(long);
        let items = vec![
            Action::Delete {
                side: Side::Source,
                entry: e.clone(),
            },
            every_kind(1).remove(0),
            Action::Delete {
                side: Side::Destination,
                entry: e,
            },
        ];
        let list = spilled(&items, 1);
        assert_eq!(list.to_vec().unwrap(), items);
    }
}
