//! [`read_ahead`]: a large file streamed in big chunks, the next one read from disk while the
//! last one is handed on.
//!
//! `tokio::fs::File` behind a `ReaderStream` makes one blocking-thread hop per poll, with the
//! caller's buffer size (64 KiB: 16 384 hops per GiB), and starts no read before the consumer
//! asks for it: an upload of a big file waited for the disk between every two chunks it sent.
//! Here each blocking call reads [`STREAM_CHUNK`] straight into the chunk it yields (no copy
//! through a second buffer), and the next call starts as soon as a chunk is handed on. A
//! stream holds at most two chunks (1 MiB) however slow its consumer, and none before it is
//! first polled.

use std::fs::File;
use std::io::{self, Read};

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use syncengine_core::{ByteStream, Error};
use tokio::task::JoinHandle;

use crate::error::{BACKEND, map_io};

/// Bytes read per blocking call.
pub(crate) const STREAM_CHUNK: usize = 512 * 1024;

/// A chunk being read: the file comes back with it, for the next read.
type Pending = JoinHandle<(File, io::Result<Bytes>)>;

/// Streams the next `len` bytes of `file` (from its current offset) in chunks of
/// [`STREAM_CHUNK`], with one chunk read ahead once the first has been asked for.
///
/// Nothing is read before the stream is first polled: a transfer waiting for its turn (an
/// upload waiting for buffer budget) holds no chunk. A file that ends before `len` bytes
/// ends the stream early (the caller's length check sees the short read); a failed read
/// yields its error, named for `rel`, and ends the stream. A dropped stream lets a read in
/// flight finish on its blocking thread, then closes the file.
pub(crate) fn read_ahead(file: File, len: u64, rel: String) -> ByteStream {
    let first = (len > 0).then_some(Next::Idle(file));
    stream::try_unfold((first, len), move |(next, left)| {
        let rel = rel.clone();
        async move {
            let pending = match next {
                None => return Ok(None),
                Some(Next::Idle(file)) => start(file, left),
                Some(Next::Reading(pending)) => pending,
            };
            let (file, read) = pending.await.map_err(|e| {
                Error::other(BACKEND, &rel, format!("blocking read task failed: {e}"))
            })?;
            let chunk = read.map_err(|e| map_io(&rel, e))?;
            if chunk.is_empty() {
                return Ok(None);
            }
            let left = left.saturating_sub(chunk.len() as u64);
            let next = (left > 0).then(|| Next::Reading(start(file, left)));
            Ok(Some((chunk, (next, left))))
        }
    })
    .boxed()
}

/// What comes next of a [`read_ahead`] stream: the file before its first read, or the read
/// of the next chunk, under way.
enum Next {
    Idle(File),
    Reading(Pending),
}

/// Starts reading the next chunk of `file`: [`STREAM_CHUNK`] bytes, or `left` if fewer.
fn start(mut file: File, left: u64) -> Pending {
    let want = left.min(STREAM_CHUNK as u64);
    tokio::task::spawn_blocking(move || {
        let mut data = Vec::with_capacity(want as usize);
        let read = (&mut file)
            .take(want)
            .read_to_end(&mut data)
            .map(|_| Bytes::from(data));
        (file, read)
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};

    use futures::TryStreamExt;

    use super::*;

    fn file_with(data: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(data).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        file
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn streams_exactly_the_asked_bytes_in_big_chunks() {
        let data = pattern(2 * STREAM_CHUNK + 12_345);
        let chunks: Vec<Bytes> = read_ahead(file_with(&data), data.len() as u64, "f".into())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].len(), STREAM_CHUNK);
        assert_eq!(chunks.concat(), data);
    }

    #[tokio::test]
    async fn stops_at_len_from_the_current_offset() {
        let data = pattern(STREAM_CHUNK + 100);
        let mut file = file_with(&data);
        file.seek(SeekFrom::Start(50)).unwrap();
        let got: Vec<Bytes> = read_ahead(file, 1000, "f".into())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got.concat(), &data[50..1050]);
    }

    #[tokio::test]
    async fn a_file_shorter_than_len_ends_the_stream_short() {
        let data = pattern(1000);
        let got: Vec<Bytes> = read_ahead(file_with(&data), 5000, "f".into())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got.concat(), data, "what is there, and no more");
    }

    #[tokio::test]
    async fn nothing_is_read_before_the_first_poll() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"old!").unwrap();
        let stream = read_ahead(File::open(&path).unwrap(), 4, "f".into());
        // Time for a read started eagerly to have happened.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut same_file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        same_file.write_all(b"new!").unwrap();
        let got: Vec<Bytes> = stream.try_collect().await.unwrap();
        assert_eq!(got.concat(), b"new!", "read when asked for, not when made");
    }

    #[tokio::test]
    async fn nothing_to_read_is_an_empty_stream() {
        let got: Vec<Bytes> = read_ahead(file_with(b"abc"), 0, "f".into())
            .try_collect()
            .await
            .unwrap();
        assert!(got.is_empty());
    }

    #[tokio::test]
    async fn a_failed_read_is_an_error_named_for_the_path() {
        // A write-only descriptor cannot be read: EBADF.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        let file = File::create(&path).unwrap();
        let err = read_ahead(file, 10, "some/file".into())
            .try_collect::<Vec<Bytes>>()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("some/file"), "{err}");
    }
}
