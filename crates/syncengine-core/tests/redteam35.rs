//! Red team 35: a run cancelled at any call outside its actions is dropped where it waits
//! (c110ce2). Each test cancels a run at call N of its clients, for every N a run makes, and
//! checks what the next runs find: every version still somewhere (in place or in the
//! trash), no error (no lock left held, no false "root changed" stop), a third run with
//! nothing to do, no probe or stepped file left, the first-sync preference honoured.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::{
    ByteStream, Capabilities, DeleteOptions, Entry, EntryStream, InitialSyncPreference,
    MemoryClient, ProgressEvent, ReadOptions, Recovery, RelPath, Result, Side, StorageClient,
    SyncEngine, SyncError, SyncMode, SyncOptions, SyncPair, TransferOptions, WriteOptions,
};
use tokio_util::sync::CancellationToken;

#[path = "support/files.rs"]
mod files;
use files::{all_files, put, rel, user_files};

/// The calls both sides of a pair make, counted together; at call `cut` the token is
/// cancelled and the call waits once (the run's future is then dropped right there, where
/// that is allowed).
#[derive(Debug)]
struct Counter {
    calls: AtomicU64,
    cut: AtomicU64,
    token: std::sync::Mutex<CancellationToken>,
}

impl Counter {
    fn new() -> Arc<Counter> {
        Arc::new(Counter {
            calls: AtomicU64::new(0),
            cut: AtomicU64::new(u64::MAX),
            token: std::sync::Mutex::new(CancellationToken::new()),
        })
    }

    /// Counts from 0 again; cancels `token` at call `cut` (`None`: never).
    fn arm(&self, cut: Option<u64>, token: CancellationToken) {
        self.calls.store(0, Ordering::SeqCst);
        self.cut.store(cut.unwrap_or(u64::MAX), Ordering::SeqCst);
        *self.token.lock().unwrap() = token;
    }

    async fn call(&self) {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n == self.cut.load(Ordering::SeqCst) {
            self.token.lock().unwrap().cancel();
            tokio::task::yield_now().await;
        }
    }
}

/// A memory client whose calls go through a shared [`Counter`]; it does not declare its
/// folding, so a run probes it.
#[derive(Debug)]
struct Cut {
    inner: Arc<MemoryClient>,
    counter: Arc<Counter>,
}

#[async_trait]
impl Hooks for Cut {
    fn inner(&self) -> &dyn StorageClient {
        self.inner.as_ref()
    }
    fn capabilities(&self) -> Capabilities {
        let mut caps = self.inner.capabilities();
        caps.folding_known = false;
        caps
    }
    async fn root_exists(&self) -> Result<bool> {
        self.counter.call().await;
        self.inner.root_exists().await
    }
    async fn sync_written(&self) -> Result<()> {
        self.counter.call().await;
        self.inner.sync_written().await
    }
    async fn remove_stale_temps(&self) -> Result<u64> {
        self.counter.call().await;
        self.inner.remove_stale_temps().await
    }
    fn list(&self, prefix: Option<&RelPath>) -> EntryStream {
        let (inner, counter, prefix) = (self.inner.clone(), self.counter.clone(), prefix.cloned());
        let listing = async move {
            counter.call().await;
            inner.list(prefix.as_ref())
        };
        Box::pin(futures::stream::StreamExt::flatten(futures::stream::once(
            listing,
        )))
    }
    async fn stat(&self, path: &RelPath) -> Result<Entry> {
        self.counter.call().await;
        self.inner.stat(path).await
    }
    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        self.counter.call().await;
        self.inner.read_opts(path, opts).await
    }
    async fn write_opts(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        self.counter.call().await;
        self.inner.write_opts(path, body, opts).await
    }
    async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> Result<()> {
        self.counter.call().await;
        self.inner.delete_opts(path, opts).await
    }
    async fn copy_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.counter.call().await;
        self.inner.copy_opts(from, to, opts).await
    }
    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.counter.call().await;
        self.inner.rename_opts(from, to, opts).await
    }
}

struct Pair {
    _state: tempfile::TempDir,
    state_dir: std::path::PathBuf,
    src: Arc<MemoryClient>,
    dst: Arc<MemoryClient>,
    source: Arc<dyn StorageClient>,
    destination: Arc<dyn StorageClient>,
    counter: Arc<Counter>,
    options: SyncOptions,
}

impl Pair {
    fn new(options: SyncOptions) -> Pair {
        let state = tempfile::tempdir().unwrap();
        let counter = Counter::new();
        let src = Arc::new(MemoryClient::new());
        let dst = Arc::new(MemoryClient::new());
        let wrap = |inner: &Arc<MemoryClient>| -> Arc<dyn StorageClient> {
            Arc::new(Forwarding::new(Cut {
                inner: inner.clone(),
                counter: counter.clone(),
            }))
        };
        Pair {
            state_dir: state.path().to_owned(),
            source: wrap(&src),
            destination: wrap(&dst),
            _state: state,
            src,
            dst,
            counter,
            options,
        }
    }

    /// One run, cancelled at call `cut`; returns its result, the calls it made and the
    /// actions it planned.
    async fn run(
        &self,
        cut: Option<u64>,
    ) -> (
        std::result::Result<syncengine_core::SyncStats, SyncError>,
        u64,
        u64,
    ) {
        let token = CancellationToken::new();
        self.counter.arm(cut, token.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let engine = SyncEngine::new(&self.state_dir)
            .with_cancellation(token)
            .with_progress(tx);
        let pair = SyncPair::new(
            self.source.clone(),
            self.destination.clone(),
            SyncMode::TwoWay,
        )
        .with_options(self.options.clone());
        let result = engine.sync_pair(&pair).await;
        drop(engine);
        let mut planned = 0;
        while let Some(ev) = rx.recv().await {
            if let ProgressEvent::Planned { actions, .. } = ev {
                planned += actions;
            }
        }
        (result, self.counter.calls.load(Ordering::SeqCst), planned)
    }

    /// Every content of a user's file on either side, in place or in the trash.
    fn contents(&self) -> BTreeSet<String> {
        all_files(&self.src)
            .into_iter()
            .chain(all_files(&self.dst))
            .filter(|(p, _)| !p.starts_with(".syncengine/") || p.starts_with(".syncengine/trash/"))
            .map(|(_, c)| c)
            .collect()
    }

    /// Files the engine must not leave behind once a run has ended normally.
    fn strays(&self) -> Vec<String> {
        all_files(&self.src)
            .into_iter()
            .chain(all_files(&self.dst))
            .map(|(p, _)| p)
            .filter(|p| p.starts_with(".syncengine/probe") || p.contains("stepping"))
            .collect()
    }
}

fn options() -> SyncOptions {
    SyncOptions::default()
        .with_recovery(Side::Source, Recovery::Trash)
        .with_recovery(Side::Destination, Recovery::Trash)
        .with_trash_keep_days(30)
}

/// A synced pair, then changes on both sides: edits, deletions, additions, a conflict.
async fn changed_pair() -> Pair {
    let p = Pair::new(options());
    for (path, text) in [
        ("a.txt", "a1"),
        ("b.txt", "b1"),
        ("dir/e.txt", "e1"),
        ("f.txt", "f1"),
        ("g.txt", "g1"),
    ] {
        put(&p.src, path, text).await;
    }
    let (first, _, _) = p.run(None).await;
    first.unwrap();
    put(&p.src, "a.txt", "a2 source edit").await;
    p.dst.delete(&rel("b.txt")).await.unwrap();
    put(&p.src, "c.txt", "c1 source new").await;
    put(&p.dst, "d.txt", "d1 destination new").await;
    put(&p.src, "dir/e.txt", "e2 source side").await;
    put(&p.dst, "dir/e.txt", "e2 destination side").await;
    put(&p.dst, "f.txt", "f2 destination edit").await;
    p.src.delete(&rel("g.txt")).await.unwrap();
    p
}

use syncengine_core::StorageClientExt;

/// Checks the runs after a run cancelled at `cut`: the next succeeds, nothing is lost, the
/// one after plans nothing, no stray file is left.
async fn check_after_cut(p: &Pair, cut: u64, before: &BTreeSet<String>) {
    let (cancelled, _, _) = p.run(Some(cut)).await;
    if let Err(e) = &cancelled {
        assert!(matches!(e, SyncError::Cancelled), "cut {cut}: {e:?}");
    }
    let (next, _, _) = p.run(None).await;
    let next = next.unwrap_or_else(|e| panic!("cut {cut}: the run after failed: {e:?}"));
    assert_eq!(next.errors, 0, "cut {cut}: {next:?}");
    let (third, _, planned) = p.run(None).await;
    third.unwrap_or_else(|e| panic!("cut {cut}: the third run failed: {e:?}"));
    assert_eq!(planned, 0, "cut {cut}: the third run still had work");
    let now = p.contents();
    let lost: Vec<_> = before.difference(&now).collect();
    assert!(lost.is_empty(), "cut {cut}: versions lost: {lost:?}");
    assert_eq!(
        user_files(&p.src),
        user_files(&p.dst),
        "cut {cut}: the sides differ"
    );
    assert!(
        p.strays().is_empty(),
        "cut {cut}: left behind: {:?}",
        p.strays()
    );
}

#[tokio::test]
async fn a_run_cancelled_at_any_call_leaves_the_next_runs_whole() {
    // How many calls a run of these changes makes, uncut.
    let total = {
        let p = changed_pair().await;
        let (r, calls, planned) = p.run(None).await;
        r.unwrap();
        assert!(planned > 0);
        calls
    };
    assert!(total > 10, "{total}");
    for cut in 0..=total {
        let p = changed_pair().await;
        let before = p.contents();
        check_after_cut(&p, cut, &before).await;
    }
}

#[tokio::test]
async fn a_first_run_cancelled_at_any_call_keeps_its_preference() {
    async fn first_pair() -> Pair {
        let p = Pair::new(options().with_initial_preference(InitialSyncPreference::SourceWins));
        put(&p.src, "a.txt", "a from the source").await;
        put(&p.dst, "a.txt", "a from the destination").await;
        put(&p.dst, "only-dst.txt", "only on the destination").await;
        put(&p.src, "only-src.txt", "only on the source").await;
        p
    }
    // The result of an uncut first run.
    let (total, expected) = {
        let p = first_pair().await;
        let (r, calls, _) = p.run(None).await;
        r.unwrap();
        (calls, user_files(&p.src))
    };
    for cut in 0..=total {
        let p = first_pair().await;
        let before = p.contents();
        let (cancelled, _, _) = p.run(Some(cut)).await;
        if let Err(e) = &cancelled {
            assert!(matches!(e, SyncError::Cancelled), "cut {cut}: {e:?}");
        }
        let (next, _, _) = p.run(None).await;
        next.unwrap_or_else(|e| panic!("cut {cut}: the run after failed: {e:?}"));
        let (_, _, planned) = p.run(None).await;
        assert_eq!(planned, 0, "cut {cut}");
        assert_eq!(
            user_files(&p.src),
            expected,
            "cut {cut}: not what the preference gives"
        );
        assert_eq!(user_files(&p.dst), expected, "cut {cut}");
        let lost: Vec<_> = before.difference(&p.contents()).cloned().collect();
        assert!(lost.is_empty(), "cut {cut}: versions lost: {lost:?}");
        assert!(p.strays().is_empty(), "cut {cut}: {:?}", p.strays());
    }
}
