//! Renames that reach a side folding names (`Report.txt` and `report.txt` are one file there),
//! with one fault or one crash injected at every call of the run that carries them out.
//!
//! Only the source changes, so whatever happens in the faulted run the source must keep every
//! file it holds, and clean runs afterwards must bring both sides to the same names and
//! contents and then go idle. (F17: a case-only rename whose run failed or crashed left an
//! intent for `report.txt`; the next run stat-ed it on the folding side, found `Report.txt`'s
//! content, recorded `report.txt` as landed, deleted `Report.txt` — the same file — and the
//! run after that deleted the source's `report.txt`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/files.rs"]
mod files;

use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::testing::{Fault, FaultClient, FaultConfig, QuirkClient};
use syncengine_core::{
    MemoryClient, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncOptions,
    SyncPair, SyncStats,
};
use tokio_util::sync::CancellationToken;

use files::user_files;

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// What the source does between the first run and the faulted one.
#[derive(Clone, Copy)]
enum Change {
    Rename(&'static str, &'static str),
    Edit(&'static str, &'static str),
}

/// How the faulted run is disturbed at its chosen call on the destination.
#[derive(Clone, Copy, Debug)]
enum Disturbance {
    Fault(Fault),
    /// The run is dropped when that call starts (a kill: nothing after it happens).
    Crash,
}

struct Setup {
    engine: SyncEngine,
    _state: tempfile::TempDir,
    src: Arc<MemoryClient>,
    dst_inner: Arc<MemoryClient>,
    dst: Arc<dyn StorageClient>,
}

async fn run(
    engine: &SyncEngine,
    src: Arc<dyn StorageClient>,
    dst: Arc<dyn StorageClient>,
) -> SyncStats {
    let pair = SyncPair::new(src, dst, SyncMode::TwoWay).with_options(SyncOptions::default());
    engine.sync_pair(&pair).await.unwrap()
}

/// A synced pair: plain source, destination folding case, holding `files`.
async fn synced(files: &[(&str, &str)]) -> Setup {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst_inner = Arc::new(MemoryClient::new());
    let dst: Arc<dyn StorageClient> =
        Arc::new(QuirkClient::new(dst_inner.clone()).with_case_insensitive(true));
    for (p, d) in files {
        src.put(&rel(p), Bytes::from((*d).to_owned()))
            .await
            .unwrap();
    }
    let first = run(&engine, src.clone(), dst.clone()).await;
    assert_eq!(first.errors, 0, "{first:?}");
    Setup {
        engine,
        _state: state,
        src,
        dst_inner,
        dst,
    }
}

async fn apply(src: &MemoryClient, changes: &[Change]) {
    for change in changes {
        match *change {
            Change::Rename(from, to) => {
                src.rename(&rel(from), &rel(to)).await.unwrap();
            }
            Change::Edit(path, data) => {
                src.put(&rel(path), Bytes::from(data.to_owned()))
                    .await
                    .unwrap();
            }
        }
    }
}

/// Runs clean until idle (at most 4 runs); returns the problems found. With `exact` the
/// destination must hold the source's names exactly and the runs go idle; without it a name
/// that differs in the case of a folder is enough (see the folder test).
async fn settle(setup: &Setup, expected: &[(String, String)], exact: bool) -> String {
    let mut problems = String::new();
    let mut runs = Vec::new();
    for _ in 0..4 {
        let s = run(&setup.engine, setup.src.clone(), setup.dst.clone()).await;
        let idle = s.is_noop() && s.errors == 0;
        runs.push(s);
        if idle {
            break;
        }
    }
    let (s, d) = (user_files(&setup.src), user_files(&setup.dst_inner));
    for file in expected {
        if !s.contains(file) {
            problems.push_str(&format!("the source lost {file:?}; "));
        }
    }
    let folded = |v: &[(String, String)]| {
        let mut v: Vec<_> = v
            .iter()
            .map(|(p, c)| (p.to_lowercase(), c.clone()))
            .collect();
        v.sort();
        v
    };
    if (exact && s != d) || folded(&s) != folded(&d) {
        problems.push_str(&format!("sides differ: source {s:?}, destination {d:?}; "));
    }
    if exact && !runs.last().is_some_and(|s| s.is_noop() && s.errors == 0) {
        problems.push_str(&format!("never idle: {runs:?}; "));
    }
    problems
}

/// The calls a clean run of `changes` makes on the destination.
async fn calls_of(files: &[(&str, &str)], changes: &[Change]) -> u64 {
    let setup = synced(files).await;
    apply(&setup.src, changes).await;
    let counter = Arc::new(FaultClient::new(setup.dst.clone(), FaultConfig::none()));
    run(&setup.engine, setup.src.clone(), counter.clone()).await;
    counter.calls()
}

/// For every call of the run carrying `changes` out and every disturbance, checks that the
/// source keeps its files and that clean runs converge (see [`settle`] for `exact`).
async fn sweep(files: &[(&str, &str)], changes: &[Change], exact: bool) {
    let calls = calls_of(files, changes).await;
    let mut failures = Vec::new();
    for at in 0..calls {
        for how in [
            Disturbance::Fault(Fault::Error),
            Disturbance::Fault(Fault::ErrorAfter),
            Disturbance::Crash,
        ] {
            let setup = synced(files).await;
            apply(&setup.src, changes).await;
            let expected = user_files(&setup.src);
            let token = CancellationToken::new();
            let faulty = FaultClient::new(setup.dst.clone(), FaultConfig::none())
                .with_cancel_token(token.clone());
            match how {
                Disturbance::Fault(f) => faulty.fail_at(at, f),
                Disturbance::Crash => faulty.cancel_at(at),
            }
            let faulty: Arc<dyn StorageClient> = Arc::new(faulty);
            let pair = SyncPair::new(setup.src.clone(), faulty, SyncMode::TwoWay)
                .with_options(SyncOptions::default());
            tokio::select! {
                biased;
                _ = token.cancelled() => {}
                _ = setup.engine.sync_pair(&pair) => {}
            }
            drop(pair);
            let problems = settle(&setup, &expected, exact).await;
            if !problems.is_empty() {
                failures.push(format!("call {at}, {how:?}: {problems}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} disturbed runs went wrong:\n{}",
        failures.len(),
        calls * 3,
        failures.join("\n")
    );
}

#[tokio::test]
async fn a_case_only_rename_survives_a_fault_or_crash_at_any_call() {
    sweep(
        &[("Report.txt", "the report"), ("keep.txt", "k")],
        &[Change::Rename("Report.txt", "report.txt")],
        true,
    )
    .await;
}

#[tokio::test]
async fn a_case_only_rename_with_an_edit_survives_a_fault_or_crash_at_any_call() {
    sweep(
        &[("Report.txt", "the report"), ("keep.txt", "k")],
        &[
            Change::Rename("Report.txt", "report.txt"),
            Change::Edit("report.txt", "the report, edited"),
        ],
        true,
    )
    .await;
}

/// A folder whose name changes only in case cannot be renamed file by file on a folding
/// side: a run that fails half-way leaves `Docs/a.txt` next to `docs/b.txt`, which a real
/// folding disk holds as one folder (`QuirkClient` keeps both spellings, and the engine then
/// leaves the colliding names alone with a warning). What must hold is that nothing is lost
/// and every file reaches the destination under a name equal but for case.
#[tokio::test]
async fn a_case_only_folder_rename_survives_a_fault_or_crash_at_any_call() {
    sweep(
        &[("Docs/a.txt", "doc a"), ("Docs/b.txt", "doc b, longer")],
        &[
            Change::Rename("Docs/a.txt", "docs/a.txt"),
            Change::Rename("Docs/b.txt", "docs/b.txt"),
        ],
        false,
    )
    .await;
}

/// N1 (red team 3): two renames swapping names a folding side holds as one (`A.txt` →
/// `b.txt`, `B.txt` → `a.txt`).
#[tokio::test]
async fn renames_swapping_folded_names_survive_a_fault_or_crash_at_any_call() {
    sweep(
        &[("A.txt", "the A file"), ("B.txt", "the B file, longer")],
        &[
            Change::Rename("A.txt", "b.txt"),
            Change::Rename("B.txt", "a.txt"),
        ],
        true,
    )
    .await;
}

/// N2 (red team 3): a chain of renames, each taking the name the next one frees on a
/// folding side (`A.txt` → `b.txt`, `B.txt` → `c.txt`, `C.txt` → `d.txt`).
#[tokio::test]
async fn a_chain_of_renames_over_folded_names_survives_a_fault_or_crash_at_any_call() {
    sweep(
        &[
            ("A.txt", "the A file"),
            ("B.txt", "the B file, longer"),
            ("C.txt", "C"),
        ],
        &[
            Change::Rename("A.txt", "b.txt"),
            Change::Rename("B.txt", "c.txt"),
            Change::Rename("C.txt", "d.txt"),
        ],
        true,
    )
    .await;
}
