//! [`ParallelReads`]: a large file read as several byte ranges at once and handed on as one
//! ordered stream ([`read_for_copy`]).
//!
//! One stream of a large file goes as fast as one connection (one server worker, one TCP
//! window) can carry it; rclone reads files above 256 MiB as 4 ranges at once
//! (`--multi-thread-cutoff`, `--multi-thread-streams`) and writes them at their offsets. Our
//! writers take one ordered stream (atomic writes, checked inside the stream), so here the
//! file is cut into parts of [`ParallelReads::part_size`] read by up to
//! [`ParallelReads::streams`] spawned tasks at once, each collecting its part; the parts are
//! handed on in file order. Memory stays bounded: at most `streams` parts wait in flight
//! beside the one being handed on.
//!
//! # One version, or no copy
//! Every part is read with [`ReadOptions::version`] set to the version that was listed, so the
//! backend refuses (with [`Error::PreconditionFailed`]) a part of any other version: a file
//! replaced or edited between two parts fails the copy instead of arriving as a mix of two
//! versions. Only backends whose [`Capabilities::parallel_reads`] is set — they honour both
//! [`ReadOptions::range`] (transferring only the range) and [`ReadOptions::version`] — are
//! read this way; the rest are read as one stream. A part that delivers fewer or more bytes
//! than its range fails the stream at once ([`Error::Transient`]: worth another try), and the
//! caller's [`verify_body`](crate::verify::verify_body) still checks the whole length and MD5,
//! so a short or mixed read is never committed.
//!
//! [`Capabilities::parallel_reads`]: crate::capabilities::Capabilities::parallel_reads

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream;
use tokio_util::task::AbortOnDropHandle;

use crate::client::{ByteStream, ReadOptions, StorageClient};
use crate::entry::{Entry, Version};
use crate::error::{Error, Result};
use crate::path::RelPath;

/// How a large file is read as several ranges at once (rclone's `--multi-thread-*`).
///
/// A backend offers it through [`Capabilities::parallel_reads`](crate::Capabilities); its
/// builder may change or clear it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParallelReads {
    /// Files of at least this many bytes are read in ranges; smaller ones as one stream.
    /// Default 256 MiB (rclone's `--multi-thread-cutoff`).
    pub cutoff: u64,
    /// Ranges read at once. Default 4 (rclone's `--multi-thread-streams`); below 2 the file
    /// is read as one stream.
    pub streams: usize,
    /// Bytes per range. Default 4 MiB: at most `streams + 1` parts are held in memory
    /// (20 MiB at the defaults; a whole 1 GiB download peaks near 50 MiB of RSS).
    pub part_size: u64,
}

impl Default for ParallelReads {
    fn default() -> Self {
        ParallelReads {
            cutoff: 256 << 20,
            streams: 4,
            part_size: 4 << 20,
        }
    }
}

/// Variable holding the number of ranges read at once ([`ParallelReads::from_env`]).
pub const STREAMS_ENV: &str = "SYNCENGINE_MULTI_THREAD_STREAMS";

/// Variable holding the smallest file read in ranges ([`ParallelReads::from_env`]).
pub const CUTOFF_ENV: &str = "SYNCENGINE_MULTI_THREAD_CUTOFF";

/// Variable holding the bytes per range ([`ParallelReads::from_env`]).
pub const CHUNK_SIZE_ENV: &str = "SYNCENGINE_MULTI_THREAD_CHUNK_SIZE";

impl ParallelReads {
    /// `default`, changed by `SYNCENGINE_MULTI_THREAD_STREAMS` (a count; `0` or `1`: one
    /// stream per file, `None`), `SYNCENGINE_MULTI_THREAD_CUTOFF` and
    /// `SYNCENGINE_MULTI_THREAD_CHUNK_SIZE` (bytes, or with a binary unit: `64M`, `1G`,
    /// `512K`) where set — rclone's `--multi-thread-streams`, `--multi-thread-cutoff` and
    /// `--multi-thread-chunk-size`. Backend builders' `from_env` read it.
    ///
    /// # Errors
    /// A message naming the variable and its value when one cannot be read.
    pub fn from_env(default: Option<ParallelReads>) -> Result<Option<ParallelReads>, String> {
        ParallelReads::from_vars(default, |name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), with the variables looked up by `var`.
    ///
    /// ```
    /// use syncengine_core::ParallelReads;
    ///
    /// let vars = |name: &str| match name {
    ///     "SYNCENGINE_MULTI_THREAD_CUTOFF" => Some("64M".to_string()),
    ///     _ => None,
    /// };
    /// let got = ParallelReads::from_vars(Some(ParallelReads::default()), vars).unwrap();
    /// assert_eq!(got.unwrap().cutoff, 64 << 20);
    /// let off = |name: &str| (name == "SYNCENGINE_MULTI_THREAD_STREAMS").then(|| "0".to_string());
    /// assert_eq!(ParallelReads::from_vars(Some(ParallelReads::default()), off).unwrap(), None);
    /// ```
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_vars(
        default: Option<ParallelReads>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ParallelReads>, String> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let mut settings = default;
        if let Some(v) = get(STREAMS_ENV) {
            let n: usize = v
                .trim()
                .parse()
                .map_err(|_| format!("{STREAMS_ENV}={v:?}: not a count (0 or 1 turns it off)"))?;
            settings = (n >= 2).then(|| settings.unwrap_or_default().with_streams(n));
        }
        if let Some(v) = get(CUTOFF_ENV) {
            let cutoff = parse_bytes(&v).ok_or_else(|| {
                format!("{CUTOFF_ENV}={v:?}: not a size (examples: 268435456, 256M, 1G)")
            })?;
            settings = settings.map(|s| s.with_cutoff(cutoff));
        }
        if let Some(v) = get(CHUNK_SIZE_ENV) {
            let part = parse_bytes(&v)
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{CHUNK_SIZE_ENV}={v:?}: not a size (examples: 4M, 16M)"))?;
            settings = settings.map(|s| s.with_part_size(part));
        }
        Ok(settings)
    }

    /// Reads files of at least `cutoff` bytes in ranges.
    pub fn with_cutoff(mut self, cutoff: u64) -> Self {
        self.cutoff = cutoff;
        self
    }

    /// Reads `streams` ranges at once.
    pub fn with_streams(mut self, streams: usize) -> Self {
        self.streams = streams;
        self
    }

    /// Reads ranges of `part_size` bytes (at least 1).
    pub fn with_part_size(mut self, part_size: u64) -> Self {
        self.part_size = part_size.max(1);
        self
    }

    /// Whether a file of `size` bytes is read in ranges.
    pub fn applies_to(&self, size: u64) -> bool {
        self.streams >= 2 && size >= self.cutoff && size > self.part_size.max(1)
    }
}

/// Opens the content of `path` on `client`, the version `listed`, for a copy: in parallel
/// ranges where the client offers [`Capabilities::parallel_reads`](crate::Capabilities) and
/// the file is at least its cutoff, else as one stream ([`StorageClient::read_opts`]).
///
/// # Behavior
/// - The stream yields the file's bytes in order, `listed.size` of them when all goes well.
/// - A part of another version than `listed` (the backend's
///   [`ReadOptions::version`] check) or a part of the wrong length ends the stream with an
///   error; nothing after it is yielded. The caller verifies the whole body as for any read.
/// - A backend that answers [`Error::Unsupported`] for the version check (it cannot tell
///   versions of this file apart) is read as one stream.
/// - Dropping the stream stops every range still being read.
///
/// # Errors
/// As [`StorageClient::read_opts`] for the first part: `NotFound` for a missing file,
/// `PreconditionFailed` for a file that is no longer the version `listed`.
pub async fn read_for_copy(
    client: &Arc<dyn StorageClient>,
    path: &RelPath,
    listed: &Entry,
) -> Result<ByteStream> {
    read_ranged(client, path, listed, None).await
}

/// [`read_for_copy`], reading at most as many files in ranges at once as `files` has
/// permits: a file that finds none is read as one stream. A run copies several files at
/// once, and the parts of a file read in ranges are the largest buffers it holds; the
/// executor allows one such file at a time, so a run's memory stays within its budget
/// however many large files it copies.
///
/// # Errors
/// As [`read_for_copy`].
pub async fn read_for_copy_bounded(
    client: &Arc<dyn StorageClient>,
    path: &RelPath,
    listed: &Entry,
    files: &Arc<tokio::sync::Semaphore>,
) -> Result<ByteStream> {
    read_ranged(client, path, listed, Some(files)).await
}

async fn read_ranged(
    client: &Arc<dyn StorageClient>,
    path: &RelPath,
    listed: &Entry,
    files: Option<&Arc<tokio::sync::Semaphore>>,
) -> Result<ByteStream> {
    let Some(settings) = client
        .capabilities()
        .parallel_reads
        .filter(|p| p.applies_to(listed.size))
    else {
        return client.read_opts(path, ReadOptions::default()).await;
    };
    // Where the caller bounds the files read in ranges at once, a file without a permit is
    // read as one stream.
    let permit = match files {
        Some(files) => match files.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => return client.read_opts(path, ReadOptions::default()).await,
        },
        None => None,
    };
    let mut reader = Parts {
        client: client.clone(),
        path: path.clone(),
        version: Version::of(listed),
        size: listed.size,
        part_size: settings.part_size.max(1),
        next: 0,
        in_flight: VecDeque::new(),
    };
    for _ in 0..settings.streams {
        reader.spawn_next();
    }
    // The first part decides whether the backend can check versions at all.
    let first = match reader.in_flight.pop_front() {
        Some(task) => joined(task, &reader).await,
        None => Ok(Vec::new()),
    };
    let first = match first {
        Err(Error::Unsupported { .. }) => {
            drop(reader);
            return client.read_opts(path, ReadOptions::default()).await;
        }
        other => other?,
    };
    reader.spawn_next();
    let state = (reader, VecDeque::from(first), false, permit);
    let body = stream::unfold(
        state,
        |(mut reader, mut current, failed, permit)| async move {
            if failed {
                return None;
            }
            loop {
                if let Some(chunk) = current.pop_front() {
                    return Some((Ok(chunk), (reader, current, false, permit)));
                }
                let task = reader.in_flight.pop_front()?;
                match joined(task, &reader).await {
                    Ok(chunks) => {
                        current = VecDeque::from(chunks);
                        reader.spawn_next();
                    }
                    Err(e) => {
                        // Stop the other ranges now, not when the stream is dropped.
                        reader.in_flight.clear();
                        return Some((Err(e), (reader, current, true, permit)));
                    }
                }
            }
        },
    );
    Ok(body.boxed())
}

/// The ranges of one file still to be read, and those being read (in file order).
struct Parts {
    client: Arc<dyn StorageClient>,
    path: RelPath,
    version: Version,
    size: u64,
    part_size: u64,
    /// Where the next range not yet started begins.
    next: u64,
    in_flight: VecDeque<AbortOnDropHandle<Result<Vec<Bytes>>>>,
}

impl Parts {
    /// Starts reading the next range, if any is left.
    fn spawn_next(&mut self) {
        if self.next >= self.size {
            return;
        }
        let range = self.next..self.size.min(self.next.saturating_add(self.part_size));
        self.next = range.end;
        let task = read_part(
            self.client.clone(),
            self.path.clone(),
            range,
            self.version.clone(),
        );
        self.in_flight
            .push_back(AbortOnDropHandle::new(tokio::spawn(task)));
    }
}

async fn joined(task: AbortOnDropHandle<Result<Vec<Bytes>>>, reader: &Parts) -> Result<Vec<Bytes>> {
    match task.await {
        Ok(result) => result,
        Err(e) => Err(Error::other(
            reader.client.backend(),
            reader.path.as_str(),
            format!("a range read stopped: {e}"),
        )),
    }
}

/// Reads `range` of the version `version` of `path` whole, checking its length.
///
/// The chunks are kept as they came: gathering them into one buffer per part would cost a
/// fresh allocation of the part's size each time (page faults: measured twice the system
/// time of the whole download on Apache) and saved no memory.
async fn read_part(
    client: Arc<dyn StorageClient>,
    path: RelPath,
    range: Range<u64>,
    version: Version,
) -> Result<Vec<Bytes>> {
    let want = range.end - range.start;
    let opts = ReadOptions::default()
        .with_range(range.clone())
        .with_version(version);
    let mut body = client.read_opts(&path, opts).await?;
    let mut chunks = Vec::new();
    let mut got = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        got += chunk.len() as u64;
        if got > want {
            break;
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
    }
    if got != want {
        return Err(Error::transient(
            client.backend(),
            path.as_str(),
            format!(
                "the range {}..{} gave {} bytes, not {want}; the copy was not committed",
                range.start, range.end, got
            ),
        ));
    }
    Ok(chunks)
}

/// Bytes with an optional binary unit (`K`, `M`, `G`, `T`; `Ki`, `KiB` too), as rclone reads
/// sizes.
fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().trim_end_matches('b') {
        "" => 0,
        "k" | "ki" => 10,
        "m" | "mi" => 20,
        "g" | "gi" => 30,
        "t" | "ti" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}
