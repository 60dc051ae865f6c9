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
//!
//! A call that waits longer than [`HELP_AFTER`] helps itself: it sends the answers runners
//! hold back and, while work is queued, starts another runner (up to [`MAX_HELPERS`]). So a
//! call that hangs (a FIFO swapped in where a file was listed, a hung network mount) holds
//! up only itself, and on a slow filesystem (NFS, FUSE) as many calls wait on it at once as
//! before the lane, when each had a thread of its own.

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
    // Looked up once: `available_parallelism` reads the cgroup's files on every call.
    static RUNNERS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *RUNNERS.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4)))
}

/// Replies held back at most while more work is queued (see [`Lane`]). With 32 copies in
/// flight between two local roots, 8 at a time wake the run a quarter as often as 1 at a
/// time and still leave work queued for the runners meanwhile (4 took 5% longer on a
/// 100 000-file first copy; 16, as long).
const REPLY_BATCH: usize = 8;
/// How long a call waits for its answer before it helps (see the module docs).
pub(crate) const HELP_AFTER: std::time::Duration = std::time::Duration::from_millis(20);
/// Runners at most, counting those started by waiting calls: the engine's default number
/// of actions in flight (8), twice.
pub(crate) const MAX_HELPERS: usize = 16;

/// A queued call: runs the work and returns the sending of its reply.
type Job = Box<dyn FnOnce() -> Reply + Send>;
/// The sending of a finished call's answer to its caller.
type Reply = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    runners: usize,
    /// Answers of finished calls, held back to be sent a few at a time.
    outbox: Vec<Reply>,
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
            self.start_runner();
        }
        let mut answer = answer;
        loop {
            tokio::select! {
                got = &mut answer => {
                    return got.map_err(|_| {
                        Error::other(
                            BACKEND,
                            "",
                            "blocking filesystem task failed: it panicked (a bug: please \
                             report it)",
                        )
                    })?;
                }
                () = tokio::time::sleep(HELP_AFTER) => self.help(),
            }
        }
    }

    /// What a call that waited [`HELP_AFTER`] does: sends the answers held back (a runner
    /// may be stuck in a call that hangs), and starts another runner while work is queued.
    fn help(&self) {
        let (replies, start_runner) = {
            let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let start = !queue.jobs.is_empty() && queue.runners < MAX_HELPERS;
            if start {
                queue.runners += 1;
            }
            (std::mem::take(&mut queue.outbox), start)
        };
        replies.into_iter().for_each(|reply| reply());
        if start_runner {
            self.start_runner();
        }
    }

    /// Starts a runner, already counted in `runners`.
    fn start_runner(&self) {
        let lane = self.clone();
        tokio::task::spawn_blocking(move || lane.work_through());
    }

    /// A runner: takes queued jobs until there are none, then ends.
    ///
    /// Answers go out a few at a time ([`REPLY_BATCH`], or fewer once the queue is empty):
    /// the callers of one run usually wait in one task, which then wakes once for several
    /// answers instead of once for each. They wait in the queue's outbox, where a caller that
    /// waits too long takes them ([`Lane::help`]), not in this runner, which may hang in its
    /// next job.
    fn work_through(&self) {
        let mut finished: Option<Reply> = None;
        loop {
            let (job, replies) = {
                let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(reply) = finished.take() {
                    queue.outbox.push(reply);
                }
                let job = queue.jobs.pop_front();
                if job.is_none() && queue.outbox.is_empty() {
                    queue.runners -= 1;
                    return;
                }
                let replies = if job.is_none() || queue.outbox.len() >= REPLY_BATCH {
                    std::mem::take(&mut queue.outbox)
                } else {
                    Vec::new()
                };
                (job, replies)
            };
            // Nothing queued: answer now (the answers may bring more work).
            replies.into_iter().for_each(|reply| reply());
            if let Some(job) = job {
                // A panicking job drops its reply (its caller gets an error); the runner goes
                // on.
                finished = std::panic::catch_unwind(AssertUnwindSafe(job)).ok();
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
        let busy: Vec<_> = (0..MAX_HELPERS)
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
        for _ in 0..MAX_HELPERS {
            let _ = release.send(());
        }
        for job in busy {
            let _ = job.await;
        }
        // The lane still answers, and the dropped call never ran.
        assert_eq!(lane.run(|| Ok(1)).await.ok(), Some(1));
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    /// Red team 33: a call that hangs in the kernel (here a blocking read of a socket no one
    /// writes to, as a read on a disk or network mount that went silent) leaves its caller
    /// cancellable, even in the middle of a stream of quick calls on a multi-threaded runtime
    /// of two workers, as the CLI's run is. A caller that ran such a call itself, on its own
    /// thread, was stuck in it: the run's future (all its copies in flight and its
    /// cancellation) could not be polled until the disk answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_that_hangs_amid_quick_calls_leaves_its_caller_cancellable() {
        use futures::StreamExt;
        use std::io::Read;
        use std::os::unix::net::UnixStream;
        use std::sync::atomic::AtomicBool;

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, "x").expect("write");
        let (silent, writer) = UnixStream::pair().expect("socket pair");
        let silent = Arc::new(silent);
        // Releases every hung read (end of stream) once the run should have been cancelled
        // long before; noted first, so the test fails instead of hanging.
        let released = Arc::new(AtomicBool::new(false));
        let watchdog = std::thread::spawn({
            let released = released.clone();
            move || {
                std::thread::sleep(std::time::Duration::from_secs(10));
                released.store(true, Ordering::SeqCst);
                let _ = writer.shutdown(std::net::Shutdown::Both);
            }
        });
        let lane = Lane::default();
        // Quick calls (a stat of a real file), 32 in flight, as the engine's copies are;
        // from the 3000th on, each call waits on the silent socket.
        let run = futures::stream::iter(0..6000u32)
            .map(|i| {
                let (lane, file, silent) = (lane.clone(), file.clone(), silent.clone());
                async move {
                    lane.run(move || {
                        if i < 3000 {
                            std::fs::metadata(&file)
                                .map_err(|e| Error::from_io(BACKEND, "f", e))?;
                        } else {
                            let _ = (&*silent).read(&mut [0u8; 1]);
                        }
                        Ok(())
                    })
                    .await
                }
            })
            .buffer_unordered(32)
            .for_each(|_| async {});
        // The cancellation: the run is dropped after a while.
        let cancelled = tokio::time::timeout(std::time::Duration::from_secs(2), run).await;
        let stuck = released.load(Ordering::SeqCst);
        watchdog.join().expect("watchdog");
        assert!(cancelled.is_err(), "the run ended although its calls hang");
        assert!(
            !stuck,
            "the run could not be cancelled until the silent calls were released"
        );
    }

    /// Deadlock detector only (not a speed check): a call that never answers fails the test
    /// instead of hanging it.
    async fn answered<T>(call: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(30), call)
            .await
            .expect("the call never got its answer: the lane stalled behind a hung call")
    }

    /// A job that blocks until `release` is sent (a FIFO opened where a file was listed, a
    /// hung network mount).
    fn hung(
        gate: &Arc<Mutex<std::sync::mpsc::Receiver<()>>>,
    ) -> impl FnOnce() -> Result<()> + Send + 'static {
        let gate = gate.clone();
        move || {
            let _ = gate.lock().map(|rx| rx.recv());
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_call_is_not_stuck_behind_a_hung_call() {
        let lane = Lane::default();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(hold));
        let stuck = tokio::spawn({
            let (lane, job) = (lane.clone(), hung(&gate));
            async move { lane.run(job).await }
        });
        while !lane
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .jobs
            .is_empty()
        {
            tokio::task::yield_now().await;
        }
        // One runner is in the hung call; a single call comes next (the run's last stat).
        let lone = answered(lane.run(|| Ok(5))).await;
        let _ = release.send(());
        assert_eq!(lone.ok(), Some(5));
        assert!(stuck.await.expect("joined").is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_finished_call_is_answered_while_the_next_call_hangs() {
        let lane = Lane::default();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(hold));
        let first = tokio::spawn({
            let (lane, job) = (lane.clone(), hung(&gate));
            async move { lane.run(job).await }
        });
        while !lane
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .jobs
            .is_empty()
        {
            tokio::task::yield_now().await;
        }
        // A quick call, then a hung one, queued behind the first: a second runner takes both.
        // The quick call finishes only once the hung one is queued (else a runner may answer
        // it before the hung call exists, and the test proves nothing; once it answered
        // before its first poll returned, and the assertion below failed).
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let mut quick = Box::pin(lane.run(move || {
            let _ = wait.recv();
            Ok(3)
        }));
        assert!(futures::poll!(&mut quick).is_pending());
        let second = tokio::spawn({
            let (lane, job) = (lane.clone(), hung(&gate));
            async move { lane.run(job).await }
        });
        // Queued, or already taken by a runner its caller started after waiting (HELP_AFTER).
        let queued = || {
            let queue = lane.0.lock().unwrap_or_else(PoisonError::into_inner);
            !queue.jobs.is_empty() || queue.runners > 2
        };
        while !queued() {
            tokio::task::yield_now().await;
        }
        let _ = go.send(());
        let quick = answered(quick).await;
        let _ = release.send(());
        let _ = release.send(());
        assert_eq!(quick.ok(), Some(3));
        assert!(first.await.expect("joined").is_ok());
        assert!(second.await.expect("joined").is_ok());
    }

    /// On a slow filesystem (each call waits on a network mount) calls are not queued behind
    /// two or four runners: waiting calls start more, as many as before the lane, when each
    /// call had a thread of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_calls_run_side_by_side() {
        let lane = Lane::default();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let calls = (0..MAX_HELPERS).map(|_| {
            let (lane, running, most) = (lane.clone(), running.clone(), most.clone());
            async move {
                lane.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
            }
        });
        let answers = futures::future::join_all(calls).await;
        assert!(answers.iter().all(Result::is_ok));
        let most = most.load(Ordering::SeqCst);
        assert!(
            most >= 8,
            "at most {most} slow calls ran at once (the engine keeps 8 in flight)"
        );
    }
}
