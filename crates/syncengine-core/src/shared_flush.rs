//! [`SharedFlush`]: one [`sync_written`](crate::StorageClient::sync_written) barrier for the
//! writes of many actions waiting on it at once.
//!
//! A copy into a backup dir must be durable before its original is deleted or overwritten,
//! so each such action waits for a barrier after its copy. One barrier per file made a mass
//! deletion with a backup dir pay one `syncfs` per file. Here the actions that wait together
//! share one: a barrier serves every write that had returned before it started, and an
//! action whose write an earlier barrier already covered does not wait for a new one.
//!
//! A failed barrier fails every write it covered (a filesystem reports a writeback error
//! once: a second barrier would succeed without the data), and every write that was under
//! way while it ran, counted or not yet ([`SharedFlush::starting`]). A barrier runs to its end in a
//! task of its own, so its outcome is kept even when the action that started it is dropped.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;

/// What the barriers so far showed: the writes a successful barrier covered (tickets up to
/// this one), and the writes a failed one may have lost, with its error message.
#[derive(Debug, Default)]
struct Outcomes {
    /// Tickets up to this one were covered by a barrier that succeeded.
    flushed: u64,
    /// Tickets up to this one had returned by the end of a barrier that failed: that barrier
    /// covered them, or ran while they were written back, and the filesystem reports a
    /// writeback error once, so a later barrier's success says nothing about them.
    failed: Option<(u64, String)>,
}

/// Shared barriers over one client's writes. See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct SharedFlush {
    /// Writes that returned so far; a write's ticket is the count once it is counted.
    written: Arc<AtomicU64>,
    /// Barriers that failed so far.
    failures: Arc<AtomicU64>,
    outcomes: Arc<tokio::sync::Mutex<Outcomes>>,
}

/// A write's place among the barriers: see [`SharedFlush::starting`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    /// The count of writes once this one was counted.
    number: u64,
    /// Barriers that had failed when the write started.
    failures_before: u64,
}

/// What [`SharedFlush::starting`] noted before a write: pass it to
/// [`written`](SharedFlush::written).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Starting(u64);

impl SharedFlush {
    /// Notes the barriers failed so far, before a write starts: a barrier that fails while
    /// the write runs, or before it is counted, may have taken its writeback error (reported
    /// once), so its ticket fails with it whatever a later barrier says.
    pub(crate) fn starting(&self) -> Starting {
        Starting(self.failures.load(Ordering::SeqCst))
    }

    /// Counts a write that returned; pass the ticket to [`flushed`](Self::flushed).
    pub(crate) fn written(&self, started: Starting) -> Ticket {
        Ticket {
            number: self.written.fetch_add(1, Ordering::SeqCst) + 1,
            failures_before: started.0,
        }
    }

    /// Returns once a barrier (`barrier`, of the client `backend` names) that started after
    /// the write with `ticket` returned has succeeded; the error of a failed barrier that
    /// covered it, or ran while it was written, otherwise (also when this write asks only after
    /// a later barrier succeeded). `barrier` is called only when no finished barrier answers
    /// for the write.
    pub(crate) async fn flushed<F>(
        &self,
        ticket: Ticket,
        backend: &'static str,
        barrier: impl FnOnce() -> F,
    ) -> Result<(), Error>
    where
        F: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let mut guard = self.outcomes.clone().lock_owned().await;
        let failed_since = self.failures.load(Ordering::SeqCst) > ticket.failures_before;
        if let Some((upto, message)) = &guard.failed
            && (*upto >= ticket.number || failed_since)
        {
            return Err(Error::other(backend, "", message.clone()));
        }
        let ticket = ticket.number;
        if guard.flushed >= ticket {
            return Ok(());
        }
        // Under the lock: every write counted by now has returned, and this barrier starts
        // after them.
        let covers = self.written.load(Ordering::SeqCst);
        let barrier = barrier();
        let (written, failures) = (self.written.clone(), self.failures.clone());
        let task = tokio::spawn(async move {
            let outcome = barrier.await.map_err(|e| e.to_string());
            match &outcome {
                Ok(()) => guard.flushed = guard.flushed.max(covers),
                Err(message) => {
                    // Also the writes that returned while it ran (see `Outcomes::failed`),
                    // and those still running or not counted yet (see `starting`).
                    let upto = written.load(Ordering::SeqCst);
                    guard.failed = Some((upto, message.clone()));
                    failures.fetch_add(1, Ordering::SeqCst);
                }
            }
            outcome
        });
        match task.await {
            Ok(outcome) => rebuilt(backend, &outcome),
            Err(e) => Err(Error::other(backend, "", format!("the flush failed: {e}"))),
        }
    }
}

fn rebuilt(backend: &'static str, outcome: &Result<(), String>) -> Result<(), Error> {
    outcome
        .as_ref()
        .map(|_| ())
        .map_err(|message| Error::other(backend, "", message.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// A barrier that counts its calls, takes `pause`, and fails when `fail` is set.
    fn barrier(
        calls: &Arc<AtomicUsize>,
        pause: Duration,
        fail: bool,
    ) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> {
        let calls = calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(pause).await;
                if fail {
                    Err(Error::other("test", "", "writeback error"))
                } else {
                    Ok(())
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn writes_waiting_together_share_a_barrier_and_a_later_write_gets_its_own() {
        let flush = SharedFlush::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let tickets: Vec<Ticket> = (0..10).map(|_| flush.written(flush.starting())).collect();
        let waits = tickets.iter().map(|&t| {
            flush.flushed(
                t,
                "test",
                barrier(&calls, Duration::from_millis(100), false),
            )
        });
        let outcomes = futures::future::join_all(waits).await;
        assert!(outcomes.iter().all(Result::is_ok));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "ten waiting writes, one barrier"
        );
        // A write that returns after that barrier started is not covered by it.
        let later = flush.written(flush.starting());
        flush
            .flushed(later, "test", barrier(&calls, Duration::ZERO, false))
            .await
            .expect("flushed");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_made_while_a_barrier_runs_waits_for_the_next_one() {
        let flush = Arc::new(SharedFlush::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let first = flush.written(flush.starting());
        let running = tokio::spawn({
            let (flush, calls) = (flush.clone(), calls.clone());
            async move {
                flush
                    .flushed(
                        first,
                        "test",
                        barrier(&calls, Duration::from_secs(1), false),
                    )
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let during = flush.written(flush.starting());
        flush
            .flushed(during, "test", barrier(&calls, Duration::ZERO, false))
            .await
            .expect("flushed");
        assert!(running.await.expect("joined").is_ok());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the second write needed its own barrier"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_barrier_fails_every_write_it_covered_even_if_its_starter_went_away() {
        let flush = Arc::new(SharedFlush::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let (a, b) = (
            flush.written(flush.starting()),
            flush.written(flush.starting()),
        );
        // The action that starts the barrier is dropped while it runs.
        let starter = tokio::spawn({
            let (flush, calls) = (flush.clone(), calls.clone());
            async move {
                flush
                    .flushed(a, "test", barrier(&calls, Duration::from_secs(1), true))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        starter.abort();
        // The other write it covered gets its error, not a fresh barrier's success.
        let covered = flush
            .flushed(b, "test", barrier(&calls, Duration::ZERO, false))
            .await;
        assert!(covered.is_err_and(|e| e.to_string().contains("writeback error")));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A later write gets a new barrier.
        let later = flush.written(flush.starting());
        assert!(
            flush
                .flushed(later, "test", barrier(&calls, Duration::ZERO, false))
                .await
                .is_ok()
        );
    }

    /// A write covered by a failed barrier gets its error even when it asks only after a
    /// later barrier succeeded (its action was slow to reach the lock: another thread took a
    /// later ticket and the lock first): that later barrier ran after the filesystem had
    /// reported the error, so its success says nothing about this write.
    #[tokio::test(start_paused = true)]
    async fn a_write_covered_by_a_failed_barrier_fails_also_after_a_later_barrier_succeeded() {
        let flush = SharedFlush::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let (slow, failing) = (
            flush.written(flush.starting()),
            flush.written(flush.starting()),
        );
        let failed = flush
            .flushed(failing, "test", barrier(&calls, Duration::ZERO, true))
            .await;
        assert!(failed.is_err());
        let later = flush.written(flush.starting());
        flush
            .flushed(later, "test", barrier(&calls, Duration::ZERO, false))
            .await
            .expect("a later write, a later barrier");
        let covered = flush
            .flushed(slow, "test", barrier(&calls, Duration::ZERO, false))
            .await;
        assert!(
            covered.is_err_and(|e| e.to_string().contains("writeback error")),
            "the write the failed barrier covered was taken as flushed"
        );
    }

    /// A write that returned while a barrier ran and failed: the filesystem may have reported
    /// this write's writeback error to that barrier (once), so a next barrier's success does
    /// not show it durable.
    #[tokio::test(start_paused = true)]
    async fn a_write_made_while_a_barrier_failed_is_not_taken_as_flushed_by_the_next_one() {
        let flush = Arc::new(SharedFlush::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let first = flush.written(flush.starting());
        let running = tokio::spawn({
            let (flush, calls) = (flush.clone(), calls.clone());
            async move {
                flush
                    .flushed(first, "test", barrier(&calls, Duration::from_secs(1), true))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let during = flush.written(flush.starting());
        let outcome = flush
            .flushed(during, "test", barrier(&calls, Duration::ZERO, false))
            .await;
        assert!(running.await.expect("joined").is_err());
        assert!(
            outcome.is_err_and(|e| e.to_string().contains("writeback error")),
            "a write made during the failed barrier was taken as flushed"
        );
        // A write after the failure gets a barrier of its own again.
        let after = flush.written(flush.starting());
        assert!(
            flush
                .flushed(after, "test", barrier(&calls, Duration::ZERO, false))
                .await
                .is_ok()
        );
    }

    /// A write that started before a barrier failed but was counted only after it (its
    /// action was slow between the write's return and its ticket): the failed barrier may
    /// have taken its writeback error, so it fails too, where a next barrier's success
    /// passed it before. A write started after the failure gets a barrier of its own.
    #[tokio::test(start_paused = true)]
    async fn a_write_counted_after_a_failed_barrier_it_overlapped_fails_too() {
        let flush = SharedFlush::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let slow = flush.starting();
        let failing = flush.written(flush.starting());
        let failed = flush
            .flushed(failing, "test", barrier(&calls, Duration::ZERO, true))
            .await;
        assert!(failed.is_err());
        let slow = flush.written(slow);
        let covered = flush
            .flushed(slow, "test", barrier(&calls, Duration::ZERO, false))
            .await;
        assert!(
            covered.is_err_and(|e| e.to_string().contains("writeback error")),
            "a write the failed barrier overlapped was taken as flushed"
        );
        let later = flush.written(flush.starting());
        flush
            .flushed(later, "test", barrier(&calls, Duration::ZERO, false))
            .await
            .expect("a write started after the failure, a barrier of its own");
    }
}
