//! Red-team (issue 8, round 3) on the engine with in-memory sides: renames on a side that
//! folds names (7be46c7: a rename that frees a name runs before the copy that takes it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/files.rs"]
mod files;

use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::testing::QuirkClient;
use syncengine_core::{
    MemoryClient, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncOptions,
    SyncPair, SyncStats,
};

use files::user_files;

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

async fn put(c: &MemoryClient, path: &str, data: &str) {
    c.put(&rel(path), Bytes::from(data.to_owned()))
        .await
        .unwrap();
}

/// Every stored file's content, the engine's own folder (trash) included.
fn all_contents(c: &MemoryClient) -> Vec<String> {
    c.files()
        .values()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

async fn run(
    engine: &SyncEngine,
    src: Arc<dyn StorageClient>,
    dst: Arc<dyn StorageClient>,
) -> SyncStats {
    let pair = SyncPair::new(src, dst, SyncMode::TwoWay).with_options(SyncOptions::default());
    engine.sync_pair(&pair).await.unwrap()
}

/// Builds a synced pair (source plain, destination folding case) from `files`, applies
/// `change` to the source, runs until idle (at most 4 runs) and checks that every version
/// the source holds reached the destination under the same name, and nothing was lost.
async fn converges(
    files: &[(&str, &str)],
    change: &[(&str, &str)],
    first_run_clean: bool,
) -> (Vec<SyncStats>, String) {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst_inner = Arc::new(MemoryClient::new());
    let dst: Arc<dyn StorageClient> =
        Arc::new(QuirkClient::new(dst_inner.clone()).with_case_insensitive(true));
    for (p, d) in files {
        put(&src, p, d).await;
    }
    for i in 0..4 {
        put(&src, &format!("keep{i}.txt"), "k").await;
    }
    let first = run(&engine, src.clone(), dst.clone()).await;
    assert_eq!(first.errors, 0, "{first:?}");
    for (from, to) in change {
        src.rename(&rel(from), &rel(to)).await.unwrap();
    }
    let expected = user_files(&src);
    let mut runs = Vec::new();
    for _ in 0..4 {
        let s = run(&engine, src.clone(), dst.clone()).await;
        let idle = s.is_noop() && s.errors == 0;
        runs.push(s);
        if idle {
            break;
        }
    }
    let mut problems = String::new();
    let (s, d) = (user_files(&src), user_files(&dst_inner));
    // Only the source changed: it must keep every file it held (the trash is no excuse).
    for file in &expected {
        if !s.contains(file) {
            problems.push_str(&format!("the source lost {file:?}; "));
        }
    }
    if s != d {
        problems.push_str(&format!("sides differ: source {s:?}, destination {d:?}; "));
    }
    let everything: Vec<String> = all_contents(&src)
        .into_iter()
        .chain(all_contents(&dst_inner))
        .collect();
    for (_, content) in files {
        if !everything.iter().any(|c| c == content) {
            problems.push_str(&format!("{content:?} is gone; "));
        }
    }
    if first_run_clean
        && let Some(first) = runs.first()
        && first.errors > 0
    {
        problems.push_str(&format!(
            "the first run failed {} actions: {:?}; ",
            first.errors, first.error_messages
        ));
    }
    if !runs.last().is_some_and(|s| s.is_noop() && s.errors == 0) {
        problems.push_str("never idle; ");
    }
    (runs, problems)
}

/// A rename takes the name another rename frees: `B.txt` → `r.txt`, then `q.txt` → `b.txt`.
#[tokio::test]
async fn a_rename_taking_a_name_another_rename_frees_on_a_folding_side_converges() {
    let (runs, problems) = converges(
        &[("B.txt", "the B file"), ("q.txt", "the q file, longer")],
        &[("B.txt", "r.txt"), ("q.txt", "b.txt")],
        true,
    )
    .await;
    assert!(problems.is_empty(), "{problems} runs: {runs:?}");
}

/// A case-only rename of a file (`Report.txt` → `report.txt`) converges in one run: it goes
/// through the trash (a no-replace rename onto a name the disk holds as the same file fails).
/// Before, the first run failed it, and the next, reading that run's intent, took
/// `Report.txt` for a landed `report.txt` and deleted it (F17): the run after that deleted
/// the source's file.
#[tokio::test]
async fn a_case_only_rename_reaches_a_folding_side() {
    let (runs, problems) = converges(
        &[("Report.txt", "the report")],
        &[("Report.txt", "report.txt")],
        true,
    )
    .await;
    assert!(problems.is_empty(), "{problems} runs: {runs:?}");
}

/// A case-only rename of a folder (`Docs/` → `docs/`) converges in one run with
/// QuirkClient's folding, which keeps each file's spelling (a real folding disk keeps the
/// folder's: a known limit, see `folding_faults.rs`).
#[tokio::test]
async fn a_case_only_folder_rename_reaches_a_folding_side() {
    let (runs, problems) = converges(
        &[("Docs/a.txt", "doc a"), ("Docs/b.txt", "doc b, longer")],
        &[("Docs/a.txt", "docs/a.txt"), ("Docs/b.txt", "docs/b.txt")],
        true,
    )
    .await;
    assert!(problems.is_empty(), "{problems} runs: {runs:?}");
}

/// N1: two renames swap names a folding side holds as one (`A.txt` → `b.txt`, `B.txt` →
/// `a.txt`). Each new name is held by the other's old one, so neither can go first without a
/// temporary name. Failed before: exit 1 on every run, never converging.
#[tokio::test]
async fn renames_swapping_folded_names_converge_in_one_run() {
    let (runs, problems) = converges(
        &[("A.txt", "the A file"), ("B.txt", "the B file, longer")],
        &[("A.txt", "b.txt"), ("B.txt", "a.txt")],
        true,
    )
    .await;
    assert!(problems.is_empty(), "{problems} runs: {runs:?}");
}

/// N2: a chain of renames, each taking the name the next one frees (`A.txt` → `b.txt`,
/// `B.txt` → `c.txt`, `C.txt` → `d.txt`). Failed before: two of the three failed in the
/// first run (the next run converged).
#[tokio::test]
async fn a_chain_of_renames_over_folded_names_converges_in_one_run() {
    let (runs, problems) = converges(
        &[
            ("A.txt", "the A file"),
            ("B.txt", "the B file, longer"),
            ("C.txt", "C"),
        ],
        &[("A.txt", "b.txt"), ("B.txt", "c.txt"), ("C.txt", "d.txt")],
        true,
    )
    .await;
    assert!(problems.is_empty(), "{problems} runs: {runs:?}");
}
