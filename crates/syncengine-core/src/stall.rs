//! Noticing a transfer that stopped making progress: how backends apply
//! [`Timeouts::idle`](crate::timeouts::Timeouts::idle).
//!
//! An HTTP client's own timeouts measure the wrong thing for a sync engine. A total timeout
//! fails a big transfer on a slow link however steadily it moves; reqwest's read timeout also
//! runs, unreset, from the moment a request starts until its answer's head arrives, so an
//! upload that takes longer than it to *send* fails while every byte is still flowing. What a
//! user means by "5 minutes" is: 5 minutes in which not one byte moved. So a backend:
//!
//! - passes each request body through [`MarkProgress`] (large chunks are cut into pieces of
//!   [`PIECE`] bytes, so sending a 16 MiB buffer shows progress as it goes),
//! - runs the request until the answer's head arrives under [`until_stalled`], which fails
//!   only after `idle` passes with no piece of the body taken,
//! - and reads the answer's body through [`FailWhenStalled`], which fails when `idle` passes
//!   between two chunks while the reader is waiting (time the reader spends elsewhere, such as
//!   writing to a slow disk, does not count).
//!
//! What the operating system has buffered (a socket's send buffer, up to a few MiB) counts as
//! sent: the tail of an upload drains unseen, so on a link slower than that buffer per `idle`
//! the last request of an upload can time out while still moving. rclone's `--timeout` has the
//! same limit; the answer is a longer idle timeout.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use futures::{StreamExt, stream};
//! use syncengine_core::stall::{FailWhenStalled, MarkProgress, Progress, until_stalled};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let progress = Progress::new();
//! // A body of one 1 MiB chunk is sent as 16 pieces, each marking progress.
//! let body = stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 1 << 20]))]);
//! let pieces: Vec<_> = MarkProgress::new(body, progress.clone()).collect().await;
//! assert_eq!(pieces.len(), 16);
//!
//! // A request that makes no progress for 50 ms fails as stalled.
//! let silent = std::future::pending::<()>();
//! let stalled = until_stalled(silent, &progress, Duration::from_millis(50)).await;
//! assert!(stalled.is_err());
//!
//! // An answer whose body stops coming fails too.
//! let answer = stream::iter([Ok::<_, String>(Bytes::from_static(b"head"))])
//!     .chain(stream::pending());
//! let mut body = FailWhenStalled::new(answer, Duration::from_millis(50), |s| s.to_string());
//! assert!(body.next().await.unwrap().is_ok());
//! assert!(body.next().await.unwrap().unwrap_err().contains("no progress"));
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::time::{Instant, Sleep};

/// The most a body hands its HTTP client at once, so that progress is seen while a big
/// buffer is sent.
pub const PIECE: usize = 64 * 1024;

/// A transfer went [`Timeouts::idle`](crate::timeouts::Timeouts::idle) without progress.
/// Transient: the request may be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "no progress for {}s (raise --timeout or SYNCENGINE_TIMEOUT for a slower link)",
    idle.as_secs_f32()
)]
pub struct Stalled {
    /// How long nothing moved.
    pub idle: Duration,
}

/// The last moment a request made progress, shared between the body that marks it and the
/// watchdog ([`until_stalled`]) that reads it. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Progress {
    origin: Instant,
    /// Milliseconds after `origin` of the last progress.
    last: Arc<AtomicU64>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    /// Starts the clock: now counts as progress.
    pub fn new() -> Self {
        Progress {
            origin: Instant::now(),
            last: Arc::default(),
        }
    }

    /// Records progress now.
    pub fn mark(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(ms, Ordering::Relaxed);
    }

    /// When progress was last recorded.
    pub fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// Runs `request` to its end, or fails once `idle` passes with no [`Progress::mark`] (counted
/// from the last mark, or from when `progress` was made).
///
/// # Errors
/// [`Stalled`] when nothing moved for `idle`; `request` is dropped (cancelled) then.
pub async fn until_stalled<F: Future>(
    request: F,
    progress: &Progress,
    idle: Duration,
) -> Result<F::Output, Stalled> {
    tokio::pin!(request);
    loop {
        let deadline = progress.last() + idle;
        tokio::select! {
            biased;
            out = &mut request => return Ok(out),
            () = tokio::time::sleep_until(deadline) => {
                if progress.last() + idle <= Instant::now() {
                    return Err(Stalled { idle });
                }
            }
        }
    }
}

/// A body stream that marks [`Progress`] for each piece its HTTP client takes, cutting chunks
/// larger than [`PIECE`] (without copying). See the [module docs](self).
pub struct MarkProgress<S> {
    inner: Pin<Box<S>>,
    rest: Bytes,
    progress: Progress,
}

impl<S> MarkProgress<S> {
    /// Wraps `body`; each item it yields marks `progress`.
    pub fn new(body: S, progress: Progress) -> Self {
        MarkProgress {
            inner: Box::pin(body),
            rest: Bytes::new(),
            progress,
        }
    }
}

impl<S, E> Stream for MarkProgress<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if !this.rest.is_empty() {
                let piece = this.rest.split_to(this.rest.len().min(PIECE));
                this.progress.mark();
                return Poll::Ready(Some(Ok(piece)));
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.rest = chunk,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// An answer's body stream that fails when `idle` passes without a chunk while its reader
/// waits for one. See the [module docs](self).
pub struct FailWhenStalled<S, F> {
    inner: Pin<Box<S>>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// Whether `timer` runs for the chunk being waited for (it starts at the first poll after
    /// a chunk, so time the reader spends elsewhere is not counted).
    armed: bool,
    on_stall: F,
    done: bool,
}

impl<S, F> FailWhenStalled<S, F> {
    /// Wraps `body`; a stall ends it with the error `on_stall` makes.
    pub fn new<E>(body: S, idle: Duration, on_stall: F) -> Self
    where
        F: Fn(Stalled) -> E,
    {
        FailWhenStalled {
            inner: Box::pin(body),
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            armed: false,
            on_stall,
            done: false,
        }
    }
}

impl<S, F, T, E> Stream for FailWhenStalled<S, F>
where
    S: Stream<Item = Result<T, E>>,
    F: Fn(Stalled) -> E + Unpin,
{
    type Item = Result<T, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if !this.armed {
            let deadline = Instant::now() + this.idle;
            this.timer.as_mut().reset(deadline);
            this.armed = true;
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(item) => {
                this.armed = false;
                this.done = item.is_none();
                Poll::Ready(item)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.done = true;
                    Poll::Ready(Some(Err((this.on_stall)(Stalled { idle: this.idle }))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::{StreamExt, stream};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn steady_progress_is_never_a_stall_however_long() {
        let progress = Progress::new();
        let p = progress.clone();
        // 20 minutes in all, a mark every minute: never 5 minutes without one.
        let slow = async move {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_secs(60)).await;
                p.mark();
            }
            "done"
        };
        let out = until_stalled(slow, &progress, Duration::from_secs(300)).await;
        assert_eq!(out, Ok("done"));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_after_progress_is_a_stall_counted_from_the_last_mark() {
        let progress = Progress::new();
        let p = progress.clone();
        let start = Instant::now();
        let stops = async move {
            tokio::time::sleep(Duration::from_secs(100)).await;
            p.mark();
            std::future::pending::<()>().await;
        };
        let out = until_stalled(stops, &progress, Duration::from_secs(300)).await;
        assert_eq!(
            out,
            Err(Stalled {
                idle: Duration::from_secs(300)
            })
        );
        assert_eq!(start.elapsed(), Duration::from_secs(400));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_busy_elsewhere_is_not_a_stalled_body() {
        let chunks = stream::iter([Ok::<_, String>(Bytes::from_static(b"a")), Ok("b".into())]);
        let mut body = FailWhenStalled::new(chunks, Duration::from_secs(1), |s| s.to_string());
        assert!(body.next().await.is_some());
        // The reader spends a minute elsewhere; the next chunk is still there, not a stall.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(body.next().await, Some(Ok(Bytes::from_static(b"b"))));
        assert_eq!(body.next().await, None);
        assert_eq!(body.next().await, None);
    }

    #[tokio::test]
    async fn pieces_keep_every_byte_in_order() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let body = stream::iter([
            Ok::<_, ()>(Bytes::from(data[..150_000].to_vec())),
            Ok(Bytes::new()),
            Ok(Bytes::from(data[150_000..].to_vec())),
        ]);
        let pieces: Vec<Bytes> = MarkProgress::new(body, Progress::new())
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert!(pieces.iter().all(|p| !p.is_empty() && p.len() <= PIECE));
        assert_eq!(pieces.concat(), data);
    }
}
