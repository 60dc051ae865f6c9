//! [`verify_body`]: a body stream that checks its own length (and MD5 where known) before it
//! ends, so a short or corrupt read aborts the write it feeds instead of being committed.
//!
//! Every [`StorageClient::write_opts`](crate::StorageClient::write_opts) aborts when its body
//! yields an error, and a backend only commits after the body has ended. So the check has to
//! happen *inside* the stream: the verifier yields an `Err` in place of the end of the stream
//! when the bytes seen do not match what the source listed, and the write never commits. A
//! check after the write returns would come too late — the old file would already be gone.
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

use bytes::Bytes;
use futures::Stream;
use futures::stream::StreamExt;
use md5::{Digest, Md5};

use crate::capabilities::Capabilities;
use crate::client::ByteStream;
use crate::entry::{ContentHash, Entry};
use crate::error::{Error, Result};

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
    Verified {
        inner: body,
        expected,
        seen: 0,
        hasher: None,
        done: false,
        backend,
        path: path.into(),
    }
    .with_hasher()
    .boxed()
}

struct Verified {
    inner: ByteStream,
    expected: Expected,
    seen: u64,
    hasher: Option<Md5>,
    done: bool,
    backend: &'static str,
    path: String,
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
            message,
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
                        "the read delivered more than the {want} bytes listed ({seen} so far); \
                         the file changed while it was copied, so the copy was not committed"
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
                         or the file changed); the copy was not committed"
                    ));
                }
                if let (Some(want), Some(h)) = (self.expected.md5, self.hasher.take()) {
                    let got: [u8; 16] = h.finalize().into();
                    if got != want {
                        return self.fail(format!(
                            "the content read has MD5 {} but the source lists {}; the copy was \
                             not committed",
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
    use futures::TryStreamExt;
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
