//! [`Lane`]: short blocking filesystem calls run one after another by a few long-lived
//! blocking jobs, instead of one `spawn_blocking` each.
//!
//! A first copy of many small files spends more time handing each file's work to a blocking
//! thread and back than copying it: every `spawn_blocking` wakes an idle thread of tokio's
//! pool (a futex wake, a context switch), which goes back to sleep when its one file is done.
//! Measured on a 10 000-file local copy, those hand-offs were ten futex calls per file and a
//! fifth of the run's CPU. A lane keeps its jobs queued: a runner (a `spawn_blocking` job)
//! takes queued work until the queue is empty, so while copies keep coming, no thread sleeps
//! or is woken between them. Only the reply still wakes the caller.
//!
//! Runners are added while work waits and fewer than [`max_runners`] run (several copies of
//! cold files wait on the disk at once, as before), and a runner ends as soon as the queue is
//! empty, so an idle lane holds no thread. A call whose caller went away (its future was
//! dropped: the run was cancelled) before a runner reached it is skipped, not run.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use syncengine_core::{Error, Result};
use tokio::sync::oneshot;

use crate::error::BACKEND;

/// Runners a lane starts at most: one per core, 2 to 4. More hand work to each other (each
/// runner that finds the queue empty ends, and a new one is started for the next call): on a
/// 2-core machine, 4 runners took 20% more CPU than 2 for the same 10 000-file copy. At least
/// 2, so that a few reads of cold files wait on the disk at once.
fn max_runners() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

/// Replies a runner holds back at most while more work is queued (see [`Lane`]).
const REPLY_BATCH: usize = 4;

/// A queued call: runs the work and returns the sending of its reply.
type Job = Box<dyn FnOnce() -> Reply + Send>;
/// The sending of a finished call's answer to its caller.
type Reply = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    runners: usize,
}

/// A queue of short blocking calls and the runners that work through it. Cloning shares it.
#[derive(Clone, Default)]
pub(crate) struct Lane(Arc<Mutex<Queue>>);

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Lane")
            .field("queued", &queue.jobs.len())
            .field("runners", &queue.runners)
            .finish()
    }
}

impl Lane {
    /// Runs `work` on a blocking thread of this lane and returns its result. Must be called
    /// within a tokio runtime (it may start a runner with `spawn_blocking`).
    ///
    /// # Errors
    /// `work`'s own errors, or an error when it panicked.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            // Its caller is gone (dropped: the run was cancelled): nothing to do.
            if reply.is_closed() {
                return Box::new(|| ());
            }
            let answer = work();
            Box::new(move || {
                let _ = reply.send(answer);
            })
        });
        let start_runner = {
            let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            queue.jobs.push_back(job);
            // A new runner when none runs, or when work piles up behind the ones that do.
            let wanted =
                queue.runners == 0 || (queue.jobs.len() > 1 && queue.runners < max_runners());
            if wanted {
                queue.runners += 1;
            }
            wanted
        };
        if start_runner {
            let lane = self.clone();
            tokio::task::spawn_blocking(move || lane.work_through());
        }
        answer.await.map_err(|_| {
            Error::other(
                BACKEND,
                "",
                "blocking filesystem task failed: it panicked (a bug: please report it)",
            )
        })?
    }

    /// A runner: takes queued jobs until there are none, then ends.
    ///
    /// Answers go out a few at a time ([`REPLY_BATCH`], or fewer once the queue is empty):
    /// the callers of one run usually wait in one task, which then wakes once for several
    /// answers instead of once for each.
    fn work_through(&self) {
        let mut replies: Vec<Reply> = Vec::with_capacity(REPLY_BATCH);
        loop {
            let job = {
                let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                match queue.jobs.pop_front() {
                    Some(job) => Some(job),
                    None if replies.is_empty() => {
                        queue.runners -= 1;
                        return;
                    }
                    None => None,
                }
            };
            let Some(job) = job else {
                // Nothing queued: answer now (the answers may bring more work).
                replies.drain(..).for_each(|reply| reply());
                continue;
            };
            // A panicking job drops its reply (its caller gets an error); the runner goes on.
            if let Ok(reply) = std::panic::catch_unwind(AssertUnwindSafe(job)) {
                replies.push(reply);
            }
            if replies.len() >= REPLY_BATCH {
                replies.drain(..).for_each(|reply| reply());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_call_gets_its_own_answer() {
        let lane = Lane::default();
        let answers = futures::future::join_all((0..500u32).map(|i| {
            let lane = lane.clone();
            async move { lane.run(move || Ok(i * 2)).await }
        }))
        .await;
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.ok(), Some(i as u32 * 2));
        }
        // Every runner ended once the queue was empty.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let queue = lane.0.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!((queue.jobs.len(), queue.runners), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_and_panics_reach_their_caller_and_the_lane_goes_on() {
        let lane = Lane::default();
        let failed = lane
            .run(|| -> Result<()> { Err(Error::other(BACKEND, "x", "refused")) })
            .await;
        assert!(failed.is_err_and(|e| e.to_string().contains("refused")));
        let panicked = lane.run(|| -> Result<()> { panic!("boom") }).await;
        assert!(panicked.is_err_and(|e| e.to_string().contains("panicked")));
        assert_eq!(lane.run(|| Ok(7)).await.ok(), Some(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_dropped_before_it_ran_is_skipped() {
        let lane = Lane::default();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let ran = Arc::new(AtomicUsize::new(0));
        // Every runner busy with a job that waits for `release`: the next call stays queued.
        let gate = Arc::new(Mutex::new(hold));
        let busy: Vec<_> = (0..max_runners())
            .map(|_| {
                let (lane, gate) = (lane.clone(), gate.clone());
                tokio::spawn(async move {
                    lane.run(move || {
                        let _ = gate.lock().map(|rx| rx.recv());
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let counted = ran.clone();
        let dropped = tokio::spawn({
            let lane = lane.clone();
            async move {
                lane.run(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        dropped.abort();
        let _ = dropped.await;
        for _ in 0..max_runners() {
            let _ = release.send(());
        }
        for job in busy {
            let _ = job.await;
        }
        // The lane still answers, and the dropped call never ran.
        assert_eq!(lane.run(|| Ok(1)).await.ok(), Some(1));
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }
}
