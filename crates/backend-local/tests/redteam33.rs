//! Red team 33: the lane's caller-run calls (a caller runs its own filesystem call on its own
//! thread when quick calls pile up) on a disk that stops answering mid-run.
//!
//! The disk is a real ext4 filesystem in a loop image, frozen with `fsfreeze` while a first
//! copy of many small files writes to it: every write call on it (a create, a write, a
//! rename) then waits, uninterruptibly, until it is thawed — as on a disk or a network mount
//! that has gone silent. Needs root (mount, `fsfreeze`) and `mkfs.ext4`: elsewhere the test
//! says so and checks nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use syncengine_backend_local::LocalClient;
use syncengine_core::{SyncEngine, SyncMode, SyncPair};
use tokio_util::sync::CancellationToken;

mod support;
use support::{Mounted, files_below, new_ext4};

/// Thaws a frozen filesystem on drop, also when an assertion fails, so that no test leaves
/// a frozen mount (or a process waiting on one) behind. Dropped before the [`Mounted`] guard.
struct Thaw(PathBuf);

impl Thaw {
    fn now(&self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.0).output();
    }
}

impl Drop for Thaw {
    fn drop(&mut self) {
        self.now();
    }
}

/// Mounts a new ext4 filesystem (room for 40 000 files) made in `image` at `at`.
fn ext4(image: &Path, at: &Path) -> Option<Mounted> {
    new_ext4(image, "256M", &["-N", "40000"], at)
}

/// A first copy of many small files onto a disk that goes silent mid-run is cancelled (as
/// the CLI's first Ctrl-C does) while the disk is silent. The engine runs as the CLI runs
/// it, in `block_on` on the calling thread of a multi-threaded runtime of two workers. The
/// cancelled run cannot end before the disk answers (its base waits for what it wrote to be
/// durable on that disk, with or without the lane's caller-run path); once the disk answers
/// it ends as cancelled, and what it recorded is on disk: a run to the end copies the rest,
/// every file the source's.
#[test]
fn a_run_cancelled_while_its_disk_is_silent_ends_true_once_it_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    let Some(_mounted) = ext4(&tmp.path().join("dst.img"), &dst) else {
        return;
    };
    let frozen = Command::new("fsfreeze").arg("-f").arg(&dst).output();
    if !frozen.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot freeze a filesystem here");
        return;
    }
    let thaw = Thaw(dst.clone());
    thaw.now();
    for d in 0..40 {
        fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
        for f in 0..200 {
            fs::write(src.join(format!("d{d}/f{f}")), format!("file {d}/{f}")).unwrap();
        }
    }

    let cancel = CancellationToken::new();
    let engine = SyncEngine::new(tmp.path().join("state")).with_cancellation(cancel.clone());
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::TwoWay,
    );
    let ended = Arc::new(AtomicBool::new(false));
    // Freezes the disk once the copy is well under way, cancels the run, and waits (bounded)
    // for it to end; then thaws the disk. Returns whether the run ended while frozen.
    let watcher = std::thread::spawn({
        let (dst, ended, cancel) = (dst.clone(), ended.clone(), cancel.clone());
        move || {
            let start = Instant::now();
            while files_below(&dst).len() < 400 && start.elapsed() < Duration::from_secs(120) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let copied_before = files_below(&dst).len();
            let froze = Command::new("fsfreeze").arg("-f").arg(&dst).status();
            assert!(froze.is_ok_and(|s| s.success()));
            std::thread::sleep(Duration::from_millis(300));
            cancel.cancel();
            let cancelled = Instant::now();
            while !ended.load(Ordering::SeqCst) && cancelled.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = Command::new("fsfreeze").arg("-u").arg(&dst).status();
            copied_before
        }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(engine.sync_pair(&pair));
    ended.store(true, Ordering::SeqCst);
    let copied_before = watcher.join().unwrap();
    drop(thaw);
    assert!(
        copied_before < 40 * 200,
        "the copy ended before the disk was frozen: nothing tested"
    );
    assert!(
        matches!(result, Err(syncengine_core::SyncError::Cancelled)),
        "{result:?}"
    );

    // What the cancelled run recorded is on disk: a run to the end copies the rest, and
    // every file on both sides is the source's.
    let engine = SyncEngine::new(tmp.path().join("state"));
    let last = runtime.block_on(engine.sync_pair(&pair)).unwrap();
    assert_eq!(last.errors, 0, "{last:?}");
    for d in 0..40 {
        for f in 0..200 {
            let rel = format!("d{d}/f{f}");
            assert_eq!(
                fs::read_to_string(dst.join(&rel)).unwrap(),
                format!("file {d}/{f}"),
                "{rel}"
            );
        }
    }
}
