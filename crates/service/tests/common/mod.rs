//! Shared helpers of the service tests: local pairs, waiting for a condition.

#![allow(clippy::expect_used, clippy::unwrap_used, dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use syncengine_backend_local::LocalClient;
use syncengine_core::{SyncMode, SyncPair};
use syncengine_service::{Debounce, PairSpec, ServiceEvent, ServiceOptions};
use tokio::sync::broadcast;

/// The short debounce every test uses: runs start 100 ms after the last event, at most
/// 500 ms after the first.
pub fn debounce() -> Debounce {
    Debounce::new(Duration::from_millis(100), Duration::from_millis(500))
}

/// How long a test waits for something that should happen: 10x the longest configured
/// interval (the debounce's 500 ms max, the 1 s poll), rounded up.
pub const WAIT: Duration = Duration::from_secs(20);

/// Service options for tests: quick settle and back-off. Also sends the service's logs to
/// the test output when `RUST_LOG` is set.
pub fn options() -> ServiceOptions {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    ServiceOptions::default()
        .with_settle(Duration::from_millis(300))
        .with_backoff(Duration::from_millis(200), Duration::from_millis(800))
        .with_pause_grace(Duration::from_millis(200))
        .with_event_capacity(1 << 16)
}

/// A two-way local pair between `a` and `b`.
pub fn local_pair(a: &Path, b: &Path) -> SyncPair {
    SyncPair::new(
        Arc::new(LocalClient::new(a)),
        Arc::new(LocalClient::new(b)),
        SyncMode::TwoWay,
    )
}

/// A spec of a local pair with the test debounce, polling every second where it polls.
pub fn spec(name: &str, a: &Path, b: &Path) -> PairSpec {
    PairSpec::new(name, local_pair(a, b))
        .with_debounce(debounce())
        .with_poll_interval(Duration::from_secs(1))
}

/// Three fresh folders: state, source, destination.
pub struct Dirs {
    /// Holds the folders (removed when dropped).
    pub _tmp: tempfile::TempDir,
    /// The state directory.
    pub state: PathBuf,
    /// The source root.
    pub a: PathBuf,
    /// The destination root.
    pub b: PathBuf,
}

/// Makes fresh [`Dirs`].
pub fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    for d in [&state, &a, &b] {
        std::fs::create_dir_all(d).unwrap();
    }
    Dirs {
        _tmp: tmp,
        state,
        a,
        b,
    }
}

/// Waits until `cond` holds, checking every 50 ms, up to [`WAIT`]; panics with `what` then.
pub async fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_within(WAIT, what, cond).await
}

/// [`wait_until`] with another limit.
pub async fn wait_until_within(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for an event matching `pred` on `rx`, up to [`WAIT`].
pub async fn next_event(
    rx: &mut broadcast::Receiver<ServiceEvent>,
    what: &str,
    mut pred: impl FnMut(&ServiceEvent) -> bool,
) -> ServiceEvent {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Ok(ev) if pred(&ev) => return ev,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event stream closed"),
            }
        }
    })
    .await;
    match found {
        Ok(ev) => ev,
        Err(_) => panic!("timed out after {WAIT:?} waiting for event: {what}"),
    }
}

/// Reads a file, `None` when missing.
pub fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// Writes a file, creating its folder.
pub fn write(p: &Path, body: &str) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(p, body).unwrap();
}

/// Runs `f` on a blocking thread (bulk file work).
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Files (not folders) below `dir`, outside `.syncengine`.
pub fn count_files(dir: &Path) -> usize {
    fn walk(d: &Path, n: &mut usize) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            if e.file_name() == ".syncengine" {
                continue;
            }
            let t = e.file_type().unwrap();
            if t.is_dir() {
                walk(&e.path(), n);
            } else {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(dir, &mut n);
    n
}

/// Awaits `f`, failing after [`WAIT`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?}: {what}"))
}
