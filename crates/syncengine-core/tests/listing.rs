//! What a run reports about its actions: a dry run's plan through the bounded listing
//! channel (grouped, every action once, conflict names as the executor makes them), the
//! reports of finished actions, and the trash counts of a real run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use syncengine_core::{
    Change, ConflictCause, MemoryClient, PlanGroup, ProgressEvent, RelPath, Side, StorageClient,
    StorageClientExt, SyncEngine, SyncMode, SyncOptions, SyncPair, WriteOptions,
};

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

async fn put(c: &MemoryClient, path: &str, body: &str, age_secs: u64) {
    let opts =
        WriteOptions::default().with_mtime(SystemTime::now() - Duration::from_secs(age_secs));
    c.write_opts(
        &rel(path),
        syncengine_core::bytes_stream(Bytes::from(body.to_owned())),
        opts,
    )
    .await
    .unwrap();
}

/// A synced pair with c.txt, d.txt and e.txt, then: a.txt new on the source, b.txt new on the
/// destination, c.txt edited on both (the source's edit newer), d.txt deleted on the source,
/// e.txt edited on the source.
async fn scenario() -> (tempfile::TempDir, Arc<MemoryClient>, Arc<MemoryClient>) {
    let state = tempfile::tempdir().unwrap();
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    for p in ["c.txt", "d.txt", "e.txt"] {
        put(&src, p, "base", 100).await;
    }
    let pair = SyncPair::new(src.clone(), dst.clone(), SyncMode::TwoWay);
    SyncEngine::new(state.path())
        .sync_pair(&pair)
        .await
        .unwrap();
    put(&src, "a.txt", "new a", 10).await;
    put(&dst, "b.txt", "new b", 10).await;
    put(&src, "c.txt", "source edit", 5).await;
    put(&dst, "c.txt", "destination edit", 20).await;
    src.delete(&rel("d.txt")).await.unwrap();
    put(&src, "e.txt", "edited e", 5).await;
    (state, src, dst)
}

#[tokio::test]
async fn a_dry_run_lists_its_plan_group_by_group_through_a_bounded_channel() {
    let (state, src, dst) = scenario().await;
    // Capacity 1: the engine must wait for the reader, not pile the plan up.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let engine = SyncEngine::new(state.path()).with_listing(tx);
    let pair = SyncPair::new(src.clone(), dst.clone(), SyncMode::TwoWay)
        .with_options(SyncOptions::default().with_dry_run(true));
    let reader = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let stats = engine.sync_pair(&pair).await.unwrap();
    drop(engine);
    let events = reader.await.unwrap();

    let mut seen = Vec::new();
    for e in &events {
        match e {
            ProgressEvent::GroupPlanned { group: g, .. } => {
                seen.push((*g, Vec::new()));
            }
            ProgressEvent::WouldDo(r) => seen.last_mut().unwrap().1.push(r.clone()),
            other => panic!("unexpected event {other:?}"),
        }
    }
    let groups: Vec<PlanGroup> = seen.iter().map(|(g, _)| *g).collect();
    assert_eq!(
        groups,
        [
            PlanGroup::Uploads,
            PlanGroup::Downloads,
            PlanGroup::Conflicts,
            PlanGroup::Deletes(Side::Destination)
        ]
    );
    let paths =
        |i: usize| -> Vec<String> { seen[i].1.iter().map(|r| r.path.to_string()).collect() };
    assert_eq!(paths(0), ["a.txt", "e.txt"]);
    assert_eq!(paths(1), ["b.txt"]);
    // The conflict, then the copy of its kept loser that two-way makes in the same run.
    assert_eq!(
        paths(2),
        ["c.txt", "c.conflict-YYYYMMDDTHHMMSSZ-destination.txt"]
    );
    assert_eq!(paths(3), ["d.txt"]);
    assert_eq!(seen[0].1[1].change, Change::Upload { replaces: true });
    assert_eq!(seen[0].1[0].side, Some(Side::Destination));
    let conflict = &seen[2].1[0];
    assert_eq!(
        conflict.change,
        Change::Conflict {
            cause: ConflictCause::BothChanged,
            winner: Some(Side::Source),
            kept_as: vec![(
                Side::Destination,
                rel("c.conflict-YYYYMMDDTHHMMSSZ-destination.txt")
            )],
        }
    );
    // The listing says what the counts say.
    assert_eq!(stats.uploaded, 3);
    // b.txt, and the conflict's kept loser, which two-way copies to the source in the same
    // run (the dry run counts what the real run does).
    assert_eq!(stats.downloaded, 2);
    assert_eq!(stats.deleted_destination, 1);
    assert_eq!(stats.trashed_files, 0, "a dry run trashes nothing");
}

#[tokio::test]
async fn a_real_run_reports_each_action_and_counts_what_it_trashed() {
    let (state, src, dst) = scenario().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = SyncEngine::new(state.path()).with_progress(tx);
    let pair = SyncPair::new(src.clone(), dst.clone(), SyncMode::TwoWay);
    let stats = engine.sync_pair(&pair).await.unwrap();
    drop(engine);
    let mut done = Vec::new();
    while let Some(e) = rx.recv().await {
        assert!(
            !matches!(e, ProgressEvent::WouldDo(_)),
            "a real run lists no plan"
        );
        if let ProgressEvent::Done { report, .. } = e {
            done.push(report);
        }
    }
    // The overwritten e.txt ("base", 4 bytes) and the deleted d.txt ("base") went to the
    // trash; the conflict's loser was kept under its conflict name, not trashed.
    assert_eq!(
        (stats.trashed_files, stats.trashed_bytes),
        (2, 8),
        "{stats:?}"
    );
    let conflict = done.iter().find(|r| r.path == rel("c.txt")).unwrap();
    let Change::Conflict { kept_as, .. } = &conflict.change else {
        panic!("{conflict:?}")
    };
    assert_eq!(kept_as.len(), 1);
    let (side, name) = &kept_as[0];
    assert_eq!(*side, Side::Destination);
    assert!(
        name.as_str().starts_with("c.conflict-") && !name.as_str().contains("YYYY"),
        "{name}"
    );
    assert_eq!(
        dst.read_to_bytes(name).await.unwrap(),
        "destination edit",
        "the name reported is where the loser is"
    );
    let deleted = done.iter().find(|r| r.path == rel("d.txt")).unwrap();
    assert_eq!(
        (deleted.side, &deleted.change),
        (Some(Side::Destination), &Change::Delete)
    );
}
