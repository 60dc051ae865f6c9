//! [`read_chunks`]: a large file streamed in big chunks, each read on a blocking thread when
//! it is asked for.
//!
//! `tokio::fs::File` behind a `ReaderStream` makes one blocking-thread hop per poll, with the
//! caller's buffer size (64 KiB: 16 384 hops per GiB). Here each blocking call reads
//! [`STREAM_CHUNK`] straight into the chunk it yields (no copy through a second buffer): half
//! the hops of a 64 KiB stream per byte. Bigger chunks were tried: an upload waiting for
//! budget holds the part of a chunk its last part left over, and at 256 KiB the 100 files
//! of 10 MiB of `bench/run.sh s3` peaked at 69 MiB instead of 61 MiB.
//!
//! Nothing is read before it is asked for: a stream holds no chunk while its consumer waits
//! (the kernel's own readahead keeps a sequential read ahead of the disk). A chunk read ahead
//! in the stream was tried, and cost memory where it hurt: 64 S3 uploads that had sent their
//! first part and waited for budget for the next each held the chunk read ahead (118 MiB
//! peak for those 100 files).

use std::fs::File;
use std::io::{self, Read};

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use syncengine_core::{ByteStream, Error};

use crate::error::{BACKEND, map_io};

/// Bytes read per blocking call.
pub(crate) const STREAM_CHUNK: usize = 128 * 1024;

/// Streams the next `len` bytes of `file` (from its current offset) in chunks of
/// [`STREAM_CHUNK`], each read when the stream is polled for it.
///
/// A file that ends before `len` bytes ends the stream early (the caller's length check sees
/// the short read); a failed read yields its error, named for `rel`, and ends the stream. A
/// dropped stream lets a read in flight finish on its blocking thread, then closes the file.
pub(crate) fn read_chunks(file: File, len: u64, rel: String) -> ByteStream {
    let first = (len > 0).then_some(file);
    stream::try_unfold((first, len), move |(file, left)| {
        let rel = rel.clone();
        async move {
            let Some(file) = file else {
                return Ok(None);
            };
            // The chunk's memory is taken here, on the runtime's thread, not on the blocking
            // thread: glibc gives each blocking thread an arena of its own, and chunks freed
            // into a dozen arenas kept 20-30 MiB more resident than the data.
            let want = left.min(STREAM_CHUNK as u64);
            let buffer = Vec::with_capacity(want as usize);
            let (file, read) = tokio::task::spawn_blocking(move || read_chunk(file, want, buffer))
                .await
                .map_err(|e| {
                    Error::other(BACKEND, &rel, format!("blocking read task failed: {e}"))
                })?;
            let chunk = read.map_err(|e| map_io(&rel, e))?;
            if chunk.is_empty() {
                return Ok(None);
            }
            let left = left.saturating_sub(chunk.len() as u64);
            Ok(Some((chunk, ((left > 0).then_some(file), left))))
        }
    })
    .boxed()
}

/// Reads the next `want` bytes of `file` into `buffer` (fewer at the end of the file). The
/// file comes back with them, for the next read.
fn read_chunk(mut file: File, want: u64, mut buffer: Vec<u8>) -> (File, io::Result<Bytes>) {
    let read = (&mut file)
        .take(want)
        .read_to_end(&mut buffer)
        .map(|_| Bytes::from(buffer));
    (file, read)
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
        let chunks: Vec<Bytes> = read_chunks(file_with(&data), data.len() as u64, "f".into())
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
        let got: Vec<Bytes> = read_chunks(file, 1000, "f".into())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got.concat(), &data[50..1050]);
    }

    #[tokio::test]
    async fn a_file_shorter_than_len_ends_the_stream_short() {
        let data = pattern(1000);
        let got: Vec<Bytes> = read_chunks(file_with(&data), 5000, "f".into())
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
        let stream = read_chunks(File::open(&path).unwrap(), 4, "f".into());
        // Time for a read started eagerly to have happened.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut same_file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        same_file.write_all(b"new!").unwrap();
        let got: Vec<Bytes> = stream.try_collect().await.unwrap();
        assert_eq!(got.concat(), b"new!", "read when asked for, not when made");
    }

    #[tokio::test]
    async fn no_chunk_is_read_before_it_is_asked_for() {
        use futures::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![b'a'; 2 * STREAM_CHUNK]).unwrap();
        let mut stream = read_chunks(
            File::open(&path).unwrap(),
            2 * STREAM_CHUNK as u64,
            "f".into(),
        );
        let first = stream.next().await.unwrap().unwrap();
        assert!(first.iter().all(|&b| b == b'a'));
        // Time for a read ahead of the consumer to have happened.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut same_file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        same_file
            .seek(SeekFrom::Start(STREAM_CHUNK as u64))
            .unwrap();
        same_file.write_all(&vec![b'b'; STREAM_CHUNK]).unwrap();
        let second = stream.next().await.unwrap().unwrap();
        assert!(second.iter().all(|&b| b == b'b'), "read when asked for");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn nothing_to_read_is_an_empty_stream() {
        let got: Vec<Bytes> = read_chunks(file_with(b"abc"), 0, "f".into())
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
        let err = read_chunks(file, 10, "some/file".into())
            .try_collect::<Vec<Bytes>>()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("some/file"), "{err}");
    }
}
