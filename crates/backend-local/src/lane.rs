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
//! When the runners fall behind a stream of quick calls (a first copy of small files on a
//! fast disk, each copy done in tens of microseconds), a caller runs its call itself instead
//! of queuing it ([`Lane::caller_may_run`]). Queued, it would go to sleep until a runner
//! answered and be woken again: a pair of context switches every few files, while a core sat
//! idle whenever both runners waited in the kernel. On a 100 000-file first copy on 2 cores
//! (10 alternated rounds) that took 4.5 % less time and 42 % fewer context switches. It does
//! so only while the runners show that the filesystem answers quickly (their calls take
//! under [`QUICK_CALL`] on average, and one ended within [`LIVE_WITHIN`]): a call on a slow
//! or hanging filesystem is queued for a runner as before, not run where the run's own
//! thread would wait on it.
//!
//! A call that waits longer than [`HELP_AFTER`] helps itself: it sends the answers runners
//! hold back and, while work is queued, starts another runner (up to [`MAX_HELPERS`]). So a
//! call that hangs (a FIFO swapped in where a file was listed, a hung network mount) holds
//! up only itself, and on a slow filesystem (NFS, FUSE) as many calls wait on it at once as
//! before the lane, when each had a thread of its own.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// Calls waiting in the queue from which a caller runs its own call instead of queuing it
/// (see [`Lane::caller_may_run`]). Of 2, 8, 12, 16 and 24 on a 100 000-file first copy with
/// 32 copies in flight, 8 was fastest; 0 (a caller runs its call whenever the runners are
/// busy) was slower than never: the runners find the queue empty and end.
const CALLER_RUNS_AT: usize = 8;
/// The runners' average call time (a moving average) under which a caller may run its own:
/// a small file's copy or a stat on a fast disk takes tens of microseconds; a call that
/// waits on a spinning disk or a network mount, milliseconds.
const QUICK_CALL: Duration = Duration::from_micros(500);
/// How recently a runner must have ended a call for a caller to run its own: runners that
/// ended none for this long may be waiting on a filesystem that hangs.
const LIVE_WITHIN: Duration = Duration::from_millis(5);

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
    /// When a runner last ended a call.
    last_ended: Option<Instant>,
    /// The runners' call time, a moving average over about the last 8 calls (nanoseconds).
    typical_call: u64,
}

impl Queue {
    /// Whether a caller should run its call itself now (see [`Lane::caller_may_run`]).
    fn caller_should_run(&self) -> bool {
        self.jobs.len() >= CALLER_RUNS_AT
            && self.runners >= max_runners()
            && self.typical_call < QUICK_CALL.as_nanos() as u64
            && self
                .last_ended
                .is_some_and(|ended| ended.elapsed() < LIVE_WITHIN)
    }

    /// Notes that a runner ended a call that took `took`.
    fn ended(&mut self, took: Duration) {
        self.last_ended = Some(Instant::now());
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.typical_call = self.typical_call - self.typical_call / 8 + took / 8;
    }
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
        if self.caller_may_run() {
            return std::panic::catch_unwind(AssertUnwindSafe(work))
                .unwrap_or_else(|_| Err(panicked()));
        }
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
                got = &mut answer => return got.map_err(|_| panicked())?,
                () = tokio::time::sleep(HELP_AFTER) => self.help(),
            }
        }
    }

    /// Whether the caller runs its call itself, on its own thread, instead of queuing it:
    /// when [`CALLER_RUNS_AT`] calls already wait while every runner is busy, and the
    /// runners' calls are quick ([`QUICK_CALL`]) and one ended within [`LIVE_WITHIN`]. Only
    /// in a multi-threaded runtime with two workers or more, where the caller's thread is
    /// one of several: should the filesystem hang in that very call, it holds up that thread,
    /// not the whole runtime.
    fn caller_may_run(&self) -> bool {
        let should = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .caller_should_run();
        should
            && tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
                runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
                    && runtime.metrics().num_workers() >= 2
            })
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
        // The last call's answer (none if it panicked) and how long it took.
        let mut finished: Option<(Option<Reply>, Duration)> = None;
        loop {
            let (job, replies) = {
                let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((reply, took)) = finished.take() {
                    queue.ended(took);
                    queue.outbox.extend(reply);
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
                let started = Instant::now();
                let reply = std::panic::catch_unwind(AssertUnwindSafe(job)).ok();
                finished = Some((reply, started.elapsed()));
            }
        }
    }
}

/// The error of a call that panicked.
fn panicked() -> Error {
    Error::other(
        BACKEND,
        "",
        "blocking filesystem task failed: it panicked (a bug: please report it)",
    )
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

    /// Puts the lane in the state of a first copy on a fast disk: `CALLER_RUNS_AT` calls
    /// queued (placeholders, which do nothing) behind busy runners whose calls took
    /// `typical` on average, the last one ending `ago`.
    fn piled_up(lane: &Lane, typical: Duration, ago: Duration) {
        let mut queue = lane.0.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..CALLER_RUNS_AT {
            queue.jobs.push_back(Box::new(|| Box::new(|| ())));
        }
        queue.runners = max_runners();
        queue.typical_call = u64::try_from(typical.as_nanos()).unwrap_or(u64::MAX);
        queue.last_ended = Instant::now().checked_sub(ago);
    }

    /// The thread a call of `lane` runs on.
    async fn thread_of_call(lane: &Lane) -> std::thread::ThreadId {
        answered(lane.run(|| Ok(std::thread::current().id())))
            .await
            .expect("answered")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_runs_its_own_call_when_quick_calls_pile_up() {
        let lane = Lane::default();
        piled_up(&lane, Duration::from_micros(40), Duration::ZERO);
        let caller = std::thread::current().id();
        assert_eq!(thread_of_call(&lane).await, caller);
        // A panic there is its caller's error, as on a runner.
        let panicked = lane.run(|| -> Result<()> { panic!("boom") }).await;
        assert!(panicked.is_err_and(|e| e.to_string().contains("panicked")));
        // The queued calls were left to the runners.
        assert_eq!(
            lane.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .jobs
                .len(),
            CALLER_RUNS_AT
        );
    }

    /// A slow filesystem (calls of milliseconds), runners that ended no call lately (the
    /// filesystem may hang) or a runtime of one thread (current-thread, or multi-threaded
    /// with one worker): the call is queued for a runner.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_queues_its_call_when_the_runners_are_slow_or_silent() {
        let caller = std::thread::current().id();
        for (typical, ago) in [
            (Duration::from_millis(3), Duration::ZERO),
            (Duration::from_micros(40), LIVE_WITHIN * 2),
        ] {
            let lane = Lane::default();
            piled_up(&lane, typical, ago);
            assert_ne!(thread_of_call(&lane).await, caller, "{typical:?}, {ago:?}");
        }
        let one_thread = [
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build(),
        ];
        for runtime in one_thread {
            let runtime = runtime.expect("runtime");
            let (on, caller) = std::thread::spawn(move || {
                let lane = Lane::default();
                piled_up(&lane, Duration::from_micros(40), Duration::ZERO);
                let on = runtime.block_on(thread_of_call(&lane));
                (on, std::thread::current().id())
            })
            .join()
            .expect("joined");
            assert_ne!(on, caller);
        }
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
