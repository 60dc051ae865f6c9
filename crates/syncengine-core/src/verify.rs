//! [`verify_body`]: a body stream that checks its own length (and MD5 where known) before it
//! ends, so a short or corrupt read aborts the write it feeds instead of being committed.
//!
//! Every [`StorageClient::write_opts`] aborts when its body
//! yields an error, and a backend only commits after the body has ended. So the check has to
//! happen *inside* the stream: the verifier yields an `Err` in place of the end of the stream
//! when the bytes seen do not match what the source listed, and the write never commits. A
//! check after the write returns would come too late — the old file would already be gone.
//!
//! [`read_own_file`] reads the engine's own small files (each root's `.syncengine/root-id`
//! and `.syncignore`) through the same check: a short or corrupt read of them is retried, and
//! never taken for a missing file, a changed root or a file without rules.
//!
//! ```
//! use bytes::Bytes;
//! use futures::TryStreamExt;
//! use syncengine_core::client::bytes_stream;
//! use syncengine_core::verify::{Expected, verify_body};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // A source listed at 1 200 bytes that delivers only 500.
//! let body = bytes_stream(Bytes::from(vec![7u8; 500]));
//! let checked = verify_body(body, Expected::size(1200), "memory", "a.txt");
//! let result: Result<Vec<Bytes>, _> = checked.try_collect().await;
//! assert!(result.unwrap_err().to_string().contains("500 of 1200"));
//! # });
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::StreamExt;
use futures::{Stream, TryStreamExt};
use md5::{Digest, Md5};

use crate::capabilities::Capabilities;
use crate::client::{ByteStream, StorageClient, StorageClientExt};
use crate::entry::{ContentHash, Entry};
use crate::error::{Error, Result};
use crate::path::RelPath;

/// What a body must deliver: an exact length and, where the source knows it, an MD5.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Expected {
    /// The exact number of bytes.
    pub size: u64,
    /// The MD5 of the whole content, when the source side knows it.
    pub md5: Option<[u8; 16]>,
}

impl Expected {
    /// Expects exactly `size` bytes, content unchecked.
    pub fn size(size: u64) -> Self {
        Expected { size, md5: None }
    }

    /// Expects what a listed entry describes: its size, and its MD5 where the entry's
    /// backend knows it for certain ([`Entry::content_hash`]: a listed hash, or an ETag only
    /// where [`Capabilities::etag_is_md5`] says ETags are MD5s — never a multipart `…-N` ETag).
    pub fn of(entry: &Entry, caps: &Capabilities) -> Self {
        Expected {
            size: entry.size,
            md5: entry.content_hash(caps).map(|h| match h {
                ContentHash::Md5(b) => b,
            }),
        }
    }
}

/// Wraps `body` so that it yields an error instead of ending when the bytes it delivered do
/// not match `expected`.
///
/// # Behavior
/// - More bytes than expected: an error as soon as the excess arrives.
/// - Fewer bytes, or a different MD5: an error in place of the end of the stream.
/// - An error of `body` itself passes through; the stream ends after the first error.
///
/// The errors are [`Error::Transient`]: a server that closed early is worth another try, and
/// a source that really changed fails every try and is reported. `backend` and `path` name
/// the source in the error.
pub fn verify_body(
    body: ByteStream,
    expected: Expected,
    backend: &'static str,
    path: impl Into<String>,
) -> ByteStream {
    verified(
        body,
        expected,
        backend,
        path.into(),
        "; the copy was not committed",
    )
}

fn verified(
    body: ByteStream,
    expected: Expected,
    backend: &'static str,
    path: String,
    consequence: &'static str,
) -> ByteStream {
    Verified {
        inner: body,
        expected,
        seen: 0,
        hasher: None,
        done: false,
        backend,
        path,
        consequence,
    }
    .with_hasher()
    .boxed()
}

/// How many times [`read_own_file`] reads a file before it gives up.
pub const OWN_FILE_ATTEMPTS: u32 = 3;

/// The largest file [`read_own_file`] reads (the engine's files are a few bytes to a few
/// kilobytes; this bounds the memory a wrong file can take).
pub const OWN_FILE_LIMIT: u64 = 16 << 20;

/// Reads one of the engine's own small files whole (each root's `.syncengine/root-id`, its
/// `.syncignore`), checked like a transfer: `None` only when the file does not exist.
///
/// # Behavior
/// - A stat first: not found means `None` — the only way to get it. A path that is there but
///   not a file is not found too, as everywhere else.
/// - The read is checked against the stat's size and, where the backend lists it
///   ([`Expected::of`]), its MD5, inside the stream ([`verify_body`]). Where no MD5 is known, the
///   file is read a second time and both reads must agree: these files are tiny, and a
///   corrupt read of the right length would otherwise pass.
/// - A short, long or corrupt read, a read that fails part way, a transient error, or a file
///   that vanishes between the stat and the read is tried again from the stat, up to
///   [`OWN_FILE_ATTEMPTS`] times.
///
/// Why: these reads decide what the engine believes about a whole root. A short `root-id`
/// read looked like another root (a false safety stop, or a wrong identity recorded on a
/// new pair); a short `.syncignore` read dropped rules, so excluded files were synced — or
/// deleted by a mirror.
///
/// # Errors
/// The backend's error when it is not worth another try (permission denied…); otherwise,
/// after the last try, an [`Error::Other`] naming the file and saying its reads were short or
/// corrupt. Also an error for a file larger than [`OWN_FILE_LIMIT`].
pub async fn read_own_file(client: &dyn StorageClient, path: &RelPath) -> Result<Option<Bytes>> {
    let mut attempt = 1;
    loop {
        let error = match read_own_file_once(client, path).await {
            Ok(found) => return Ok(found),
            Err(e) if e.is_transient() => e,
            Err(e) => return Err(e),
        };
        if attempt >= OWN_FILE_ATTEMPTS {
            return Err(Error::other(
                client.backend(),
                path.as_str(),
                format!(
                    "could not read this file of the engine reliably: {attempt} reads in a row \
                     were short or corrupt or failed (last: {error}). The run stops rather than \
                     take the file for missing or different; check the storage and run again"
                ),
            ));
        }
        tracing::debug!(%path, attempt, %error, "reading an engine file failed; trying again");
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        attempt += 1;
    }
}

/// One try of [`read_own_file`]; the errors worth another try are transient.
async fn read_own_file_once(client: &dyn StorageClient, path: &RelPath) -> Result<Option<Bytes>> {
    let entry = match client.stat(path).await {
        Ok(entry) => entry,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    if entry.size > OWN_FILE_LIMIT {
        return Err(Error::other(
            client.backend(),
            path.as_str(),
            format!(
                "the file is {} bytes, more than the {OWN_FILE_LIMIT} bytes the engine reads \
                 of its own files",
                entry.size
            ),
        ));
    }
    let expected = Expected::of(&entry, &client.capabilities());
    let confirm = expected.md5.is_none();
    let first = read_checked(client, path, expected.clone()).await?;
    if confirm {
        let second = read_checked(client, path, expected).await?;
        if first != second {
            return Err(Error::transient(
                client.backend(),
                path.as_str(),
                "two reads of the file gave different content of the same length (a corrupt \
                 read, or the file changed meanwhile)",
            ));
        }
    }
    Ok(Some(first))
}

/// Reads `path` whole, checked against `expected`. A file that vanished after the stat is a
/// transient error: the next try's stat says whether it is really gone.
async fn read_checked(
    client: &dyn StorageClient,
    path: &RelPath,
    expected: Expected,
) -> Result<Bytes> {
    let vanished = |e: Error| {
        if e.is_not_found() {
            Error::transient(
                client.backend(),
                path.as_str(),
                "the file vanished between its stat and its read",
            )
        } else {
            e
        }
    };
    let body = client.read(path).await.map_err(vanished)?;
    let body = verified(body, expected, client.backend(), path.to_string(), "");
    let chunks: Vec<Bytes> = body.try_collect().await.map_err(vanished)?;
    Ok(chunks.concat().into())
}

struct Verified {
    inner: ByteStream,
    expected: Expected,
    seen: u64,
    hasher: Option<Md5>,
    done: bool,
    backend: &'static str,
    path: String,
    /// Appended to every error message: what the failed check prevented.
    consequence: &'static str,
}

impl Verified {
    fn with_hasher(mut self) -> Self {
        if self.expected.md5.is_some() {
            self.hasher = Some(Md5::new());
        }
        self
    }

    fn fail(&mut self, message: String) -> Poll<Option<Result<Bytes>>> {
        self.done = true;
        Poll::Ready(Some(Err(Error::transient(
            self.backend,
            self.path.clone(),
            format!("{message}{}", self.consequence),
        ))))
    }
}

impl Stream for Verified {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.expected.size {
                    let (seen, want) = (self.seen, self.expected.size);
                    return self.fail(format!(
                        "the read delivered more than the {want} bytes listed ({seen} so far): \
                         the file changed while it was read"
                    ));
                }
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                if self.seen != self.expected.size {
                    let (seen, want) = (self.seen, self.expected.size);
                    return self.fail(format!(
                        "the read ended after {seen} of {want} bytes (the connection closed early \
                         or the file changed)"
                    ));
                }
                if let (Some(want), Some(h)) = (self.expected.md5, self.hasher.take()) {
                    let got: [u8; 16] = h.finalize().into();
                    if got != want {
                        return self.fail(format!(
                            "the content read has MD5 {} but the source lists {}",
                            hex::encode(got),
                            hex::encode(want)
                        ));
                    }
                }
                self.done = true;
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures::stream;

    fn body(chunks: &[&'static [u8]]) -> ByteStream {
        stream::iter(
            chunks
                .iter()
                .map(|c| Ok(Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        )
        .boxed()
    }

    async fn collect(s: ByteStream) -> Result<Vec<u8>> {
        let v: Vec<Bytes> = s.try_collect().await?;
        Ok(v.concat())
    }

    fn md5(data: &[u8]) -> [u8; 16] {
        Md5::digest(data).into()
    }

    #[tokio::test]
    async fn exact_body_passes() {
        let e = Expected {
            size: 6,
            md5: Some(md5(b"abcdef")),
        };
        let got = collect(verify_body(body(&[b"abc", b"def"]), e, "m", "p"))
            .await
            .unwrap();
        assert_eq!(got, b"abcdef");
        assert!(
            collect(verify_body(body(&[]), Expected::size(0), "m", "p"))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn short_long_and_corrupt_bodies_fail_before_the_end() {
        let short = verify_body(body(&[b"abc"]), Expected::size(6), "m", "p");
        let items: Vec<Result<Bytes>> = short.collect().await;
        assert_eq!(
            items.len(),
            2,
            "the data, then an error in place of the end"
        );
        assert!(items[1].as_ref().unwrap_err().is_transient());

        let long = verify_body(body(&[b"abc", b"defg", b"h"]), Expected::size(6), "m", "p");
        let items: Vec<Result<Bytes>> = long.collect().await;
        assert_eq!(items.len(), 2, "stops at the chunk that goes past the size");
        assert!(items[1].is_err());

        let e = Expected {
            size: 6,
            md5: Some(md5(b"abcdef")),
        };
        let err = collect(verify_body(body(&[b"abcdeX"]), e, "m", "p"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("MD5"), "{err}");
    }

    #[tokio::test]
    async fn own_files_read_whole_or_not_at_all() {
        use crate::memory::MemoryClient;
        let c = MemoryClient::new();
        let p = |s: &str| RelPath::new(s).unwrap();
        assert_eq!(read_own_file(&c, &p("absent")).await.unwrap(), None);
        c.put(&p("rules"), Bytes::from_static(b"*.tmp\n"))
            .await
            .unwrap();
        assert_eq!(
            read_own_file(&c, &p("rules")).await.unwrap().unwrap(),
            "*.tmp\n"
        );
        // A folder is not a file of ours.
        c.put(&p("dir/x"), Bytes::new()).await.unwrap();
        assert_eq!(read_own_file(&c, &p("dir")).await.unwrap(), None);
        // Without a listed hash, the second read confirms the first.
        c.webdav_like_metadata(true);
        c.put(&p("id"), Bytes::from_static(b"abc\n")).await.unwrap();
        assert_eq!(c.stat(&p("id")).await.unwrap().hash, None);
        assert_eq!(read_own_file(&c, &p("id")).await.unwrap().unwrap(), "abc\n");
    }

    #[tokio::test]
    async fn inner_errors_pass_through_and_end_the_stream() {
        let inner: ByteStream = stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err(Error::other("m", "p", "boom")),
            Ok(Bytes::from_static(b"cd")),
        ])
        .boxed();
        let items: Vec<Result<Bytes>> = verify_body(inner, Expected::size(4), "m", "p")
            .collect()
            .await;
        assert_eq!(items.len(), 2);
        assert!(items[1].as_ref().unwrap_err().to_string().contains("boom"));
    }
}
