//! A synced pair of in-memory sides, one of them folding names, and a kill between the two
//! steps of a rename there: the setup shared by the red-team tests of the two-step renames
//! (`redteam4.rs`, `redteam5.rs`). Included with `#[path = "support/folding_pair.rs"] mod
//! folding_pair;` next to `mod files;` and `mod stamps;`.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::testing::{FaultClient, FaultConfig, Op, QuirkClient};
use syncengine_core::{
    MemoryClient, Recovery, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode,
    SyncOptions, SyncPair, SyncStats,
};

use crate::files::all_files;
use crate::stamps::stamps_around_now;

pub fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

#[derive(Clone)]
pub struct Cfg {
    pub src_folds: bool,
    pub dst_folds: bool,
    pub mode: SyncMode,
    pub dst_recovery: Recovery,
    pub src_recovery: Recovery,
}

impl Default for Cfg {
    fn default() -> Self {
        Cfg {
            src_folds: false,
            dst_folds: true,
            mode: SyncMode::TwoWay,
            dst_recovery: Recovery::Auto,
            src_recovery: Recovery::Auto,
        }
    }
}

pub struct Setup {
    pub engine: SyncEngine,
    pub _state: tempfile::TempDir,
    pub cfg: Cfg,
    pub src_inner: Arc<MemoryClient>,
    pub dst_inner: Arc<MemoryClient>,
    pub src: Arc<dyn StorageClient>,
    pub dst: Arc<dyn StorageClient>,
}

pub fn side(inner: &Arc<MemoryClient>, folds: bool) -> Arc<dyn StorageClient> {
    if folds {
        Arc::new(QuirkClient::new(inner.clone()).with_case_insensitive(true))
    } else {
        inner.clone()
    }
}

impl Setup {
    pub fn options(&self) -> SyncOptions {
        let mut o = SyncOptions::default();
        o.source_recovery = self.cfg.src_recovery.clone();
        o.destination_recovery = self.cfg.dst_recovery.clone();
        o
    }

    pub async fn run_with(
        &self,
        src: Arc<dyn StorageClient>,
        dst: Arc<dyn StorageClient>,
    ) -> SyncStats {
        let pair = SyncPair::new(src, dst, self.cfg.mode).with_options(self.options());
        self.engine.sync_pair(&pair).await.unwrap()
    }

    pub async fn run(&self) -> SyncStats {
        self.run_with(self.src.clone(), self.dst.clone()).await
    }

    /// Clean runs until idle (at most 4); returns the stats of each.
    pub async fn settle(&self) -> Vec<SyncStats> {
        let mut runs = Vec::new();
        for _ in 0..4 {
            let s = self.run().await;
            let idle = s.is_noop() && s.errors == 0;
            runs.push(s);
            if idle {
                break;
            }
        }
        runs
    }
}

pub async fn synced(cfg: Cfg, files: &[(&str, &str)]) -> Setup {
    synced_on(cfg, files, false).await
}

/// As [`synced`]; with `both`, the files are written on both sides before the first run
/// (modes that never upload).
pub async fn synced_on(cfg: Cfg, files: &[(&str, &str)], both: bool) -> Setup {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src_inner = Arc::new(MemoryClient::new());
    let dst_inner = Arc::new(MemoryClient::new());
    let src = side(&src_inner, cfg.src_folds);
    let dst = side(&dst_inner, cfg.dst_folds);
    for (p, d) in files {
        src_inner
            .put(&rel(p), Bytes::from((*d).to_owned()))
            .await
            .unwrap();
        if both {
            dst_inner
                .put(&rel(p), Bytes::from((*d).to_owned()))
                .await
                .unwrap();
        }
    }
    let setup = Setup {
        engine,
        _state: state,
        cfg,
        src_inner,
        dst_inner,
        src,
        dst,
    };
    let first = setup.run().await;
    assert_eq!(first.errors, 0, "{first:?}");
    setup
}
// ---------------------------------------------------------------- kill between the steps

/// Runs once on the destination and kills the process (a panic unwinding out of the run:
/// nothing after it happens) right before the first second step of a two-step rename
/// reaches the destination, i.e. after every old name of `olds` moved aside. Returns true
/// when the kill happened.
pub async fn kill_between_steps(setup: &Setup, olds: &[&str]) -> bool {
    let faulty = Arc::new(FaultClient::new(setup.dst.clone(), FaultConfig::none()));
    for stamp in stamps_around_now() {
        for old in olds {
            faulty.before(
                Op::Rename,
                rel(&format!(".syncengine/stepping/{stamp}/{old}")),
                Arc::new(|p| panic!("killed before the second step of {p}")),
            );
        }
    }
    let dst: Arc<dyn StorageClient> = faulty;
    let pair = SyncPair::new(setup.src.clone(), dst, setup.cfg.mode).with_options(setup.options());
    let run = std::panic::AssertUnwindSafe(setup.engine.sync_pair(&pair));
    futures::FutureExt::catch_unwind(run).await.is_err()
}

pub fn show(setup: &Setup) -> String {
    format!(
        "source {:?}, destination {:?}",
        all_files(&setup.src_inner),
        all_files(&setup.dst_inner)
    )
}

/// True when the last of `runs` was idle: nothing to do, no error.
pub fn idle(runs: &[SyncStats]) -> bool {
    runs.last().is_some_and(|s| s.is_noop() && s.errors == 0)
}
