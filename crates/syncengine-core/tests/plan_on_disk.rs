//! A plan longer than the few actions a debug build keeps in memory
//! ([`syncengine_core::spill::IN_MEMORY`]) runs from its temporary files: every action of a
//! first run, a run of edits, deletes and renames, and a dry run's counts come out as they
//! would from memory, and nothing of the temporary files is left in the state directory.
// Test code: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::spill::IN_MEMORY;
use syncengine_core::{
    MemoryClient, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncOptions,
    SyncPair, SyncStats,
};

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// Every file of a side except the engine's own folder.
fn user_files(c: &MemoryClient) -> BTreeMap<String, Bytes> {
    c.files()
        .into_iter()
        .filter(|(p, _)| !p.as_str().starts_with(".syncengine/"))
        .map(|(p, b)| (p.to_string(), b))
        .collect()
}

async fn run(
    state: &std::path::Path,
    s: &Arc<MemoryClient>,
    d: &Arc<MemoryClient>,
    dry_run: bool,
) -> SyncStats {
    let mut options = SyncOptions::default();
    options.dry_run = dry_run;
    options.max_delete_percent = 100;
    let (s, d): (Arc<dyn StorageClient>, Arc<dyn StorageClient>) = (s.clone(), d.clone());
    SyncEngine::new(state)
        .sync_pair(&SyncPair::new(s, d, SyncMode::TwoWay).with_options(options))
        .await
        .unwrap()
}

/// The names in the state directory.
fn state_files(state: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn long_plans_run_from_their_temporary_files() {
    // Many times the in-memory share, in several folders, on both sides.
    let n = 40 * IN_MEMORY.max(3);
    let state = tempfile::tempdir().unwrap();
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    for i in 0..n {
        s.put(
            &rel(&format!("s{}/f{i:05}", i % 7)),
            Bytes::from(format!("source {i}")),
        )
        .await
        .unwrap();
        d.put(
            &rel(&format!("d{}/g{i:05}", i % 5)),
            Bytes::from(format!("dest {i}")),
        )
        .await
        .unwrap();
    }

    // A dry run counts what the real run then does.
    let predicted = run(state.path(), &s, &d, true).await;
    assert_eq!(
        (predicted.uploaded, predicted.downloaded),
        (n as u64, n as u64)
    );
    let first = run(state.path(), &s, &d, false).await;
    assert_eq!((first.uploaded, first.downloaded), (n as u64, n as u64));
    assert_eq!(first.errors, 0);
    assert_eq!(user_files(&s), user_files(&d));
    assert_eq!(user_files(&s).len(), 2 * n);

    // Edits, deletes and renames, each many times the in-memory share.
    let third = n / 3;
    for i in 0..third {
        s.put(
            &rel(&format!("s{}/f{i:05}", i % 7)),
            Bytes::from(format!("edited {i}")),
        )
        .await
        .unwrap();
        d.delete(&rel(&format!("d{}/g{i:05}", i % 5)))
            .await
            .unwrap();
        let from = rel(&format!("s{}/f{:05}", (i + third) % 7, i + third));
        s.rename(&from, &rel(&format!("moved/f{:05}", i + third)))
            .await
            .unwrap();
    }
    let predicted = run(state.path(), &s, &d, true).await;
    let second = run(state.path(), &s, &d, false).await;
    for stats in [&predicted, &second] {
        assert_eq!(stats.uploaded, third as u64, "{stats:?}");
        assert_eq!(stats.deleted_source, third as u64, "{stats:?}");
        assert_eq!(stats.renamed_destination, third as u64, "{stats:?}");
    }
    assert_eq!(second.errors, 0);
    assert_eq!(user_files(&s), user_files(&d));
    assert_eq!(user_files(&s).len(), 2 * n - third);

    // Nothing more to do, and nothing of the temporary files left behind.
    let third_run = run(state.path(), &s, &d, false).await;
    assert_eq!(
        third_run.uploaded + third_run.downloaded + third_run.deleted_source,
        0,
        "{third_run:?}"
    );
    for name in state_files(state.path()) {
        let known = [".db", ".lock", ".db-wal", ".db-shm"]
            .iter()
            .any(|end| name.ends_with(end));
        assert!(known, "left in the state directory: {name}");
    }
}
