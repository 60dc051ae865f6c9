//! Red-team (issue 8, round 3) on the engine with in-memory sides: renames on a side that
//! folds names (7be46c7: a rename that frees a name runs before the copy that takes it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::testing::QuirkClient;
use syncengine_core::{
    MemoryClient, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncOptions,
    SyncPair, SyncStats,
};

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

fn user_files(c: &MemoryClient) -> Vec<(String, String)> {
    let mut v: Vec<_> = c
        .files()
        .iter()
        .filter(|(p, _)| !p.as_str().starts_with(".syncengine"))
        .map(|(p, b)| {
            (
                p.as_str().to_owned(),
                String::from_utf8_lossy(b).into_owned(),
            )
        })
        .collect();
    v.sort();
    v
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

/// A case-only rename of a file (`Report.txt` → `report.txt`) converges (held). With
/// QuirkClient's folding the first run fails it ("already exists: Report.txt", exit 1) and
/// the next converges; whether a real folding filesystem refuses a no-replace case-only
/// rename too was not tested (no casefold mount here), so only convergence is required.
#[tokio::test]
async fn a_case_only_rename_reaches_a_folding_side() {
    let (runs, problems) = converges(
        &[("Report.txt", "the report")],
        &[("Report.txt", "report.txt")],
        false,
    )
    .await;
    assert!(problems.is_empty(), "{problems} runs: {runs:?}");
}

/// A case-only rename of a folder (`Docs/` → `docs/`) converges (held; the first run fails
/// each file with QuirkClient's folding, see above).
#[tokio::test]
async fn a_case_only_folder_rename_reaches_a_folding_side() {
    let (runs, problems) = converges(
        &[("Docs/a.txt", "doc a"), ("Docs/b.txt", "doc b, longer")],
        &[("Docs/a.txt", "docs/a.txt"), ("Docs/b.txt", "docs/b.txt")],
        false,
    )
    .await;
    assert!(problems.is_empty(), "{problems} runs: {runs:?}");
}
