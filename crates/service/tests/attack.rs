//! Attacks on the service: removal and pause during a run, shutdown, trigger storms, a root
//! deleted while watched, a root missing when the pair is added.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use syncengine_core::{ProgressEvent, SyncEngine};
use syncengine_service::{PairState, RunOutcome, ServiceEvent, StopKind, SyncService, Watching};

/// A source with `n` files, so a run takes a while to carry out.
async fn bulk(dir: &std::path::Path, n: usize) {
    let dir = dir.to_path_buf();
    blocking(move || {
        for i in 0..n {
            write(&dir.join(format!("bulk/{:02}/f{i}.txt", i % 30)), "x");
        }
    })
    .await;
}

async fn planned(events: &mut tokio::sync::broadcast::Receiver<ServiceEvent>) {
    next_event(events, "a run's plan", |e| {
        matches!(
            e,
            ServiceEvent::Progress {
                event: ProgressEvent::Planned { .. },
                ..
            }
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_pair_during_a_run_cancels_it_cleanly() {
    let d = dirs();
    bulk(&d.a, 3000).await;
    let service = SyncService::with_options(&d.state, options()).unwrap();
    let mut events = service.subscribe();
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    planned(&mut events).await;
    within("remove", service.remove("p")).await.unwrap();
    assert!(service.status("p").is_none());
    next_event(&mut events, "the cancelled run", |e| {
        matches!(
            e,
            ServiceEvent::RunFinished {
                outcome: RunOutcome::Cancelled,
                ..
            }
        )
    })
    .await;
    next_event(&mut events, "removed", |e| {
        matches!(e, ServiceEvent::Removed { .. })
    })
    .await;
    // Nothing runs any more, and the pair's lock is free: a plain run completes the copy.
    let copied = count_files(&d.b);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count_files(&d.b), copied, "a removed pair kept running");
    let stats = SyncEngine::new(&d.state)
        .sync_pair(&local_pair(&d.a, &d.b))
        .await
        .unwrap();
    assert_eq!(stats.uploaded as usize, 3000 - copied);
    assert_eq!(count_files(&d.b), 3000);
    // The name can be added again.
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_during_a_run_then_shutting_down_is_clean() {
    let d = dirs();
    bulk(&d.a, 3000).await;
    let service =
        SyncService::with_options(&d.state, options().with_pause_grace(Duration::ZERO)).unwrap();
    let mut events = service.subscribe();
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    planned(&mut events).await;
    service.pause("p").await.unwrap();
    let ev = next_event(&mut events, "the run's end", |e| {
        matches!(e, ServiceEvent::RunFinished { .. })
    })
    .await;
    // With no grace the run is cancelled, unless it ended first.
    println!("run ended: {ev:?}");
    wait_until("the pair to be paused", || {
        service.status("p").unwrap().state == PairState::Paused
    })
    .await;
    within("shutdown", service.shutdown()).await;

    // Restarted: still paused, the lock is free, no temp file is left behind.
    let service = SyncService::with_options(&d.state, options()).unwrap();
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    assert!(service.status("p").unwrap().paused);
    service.resume("p").await.unwrap();
    wait_until("the copy to complete after resume", || {
        count_files(&d.b) == 3000
    })
    .await;
    let leftovers = std::fs::read_dir(d.b.join("bulk/00"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".syncengine-tmp")
        })
        .count();
    assert_eq!(leftovers, 0);
    service.shutdown().await;
}

/// A pause lets the transfers in flight finish but starts no new one: with a grace period
/// far longer than the copy, the run still ends (as cancelled) with files left to copy, and
/// nothing more arrives while the pair is paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_run_starts_no_new_transfer_during_its_grace_period() {
    let d = dirs();
    bulk(&d.a, 3000).await;
    let service = SyncService::with_options(
        &d.state,
        options().with_pause_grace(Duration::from_secs(3600)),
    )
    .unwrap();
    let mut events = service.subscribe();
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    planned(&mut events).await;
    service.pause("p").await.unwrap();
    let ev = next_event(&mut events, "the run's end", |e| {
        matches!(e, ServiceEvent::RunFinished { .. })
    })
    .await;
    assert!(
        matches!(
            ev,
            ServiceEvent::RunFinished {
                outcome: RunOutcome::Cancelled,
                ..
            }
        ),
        "the paused run went on instead of winding down: {ev:?}"
    );
    let copied = count_files(&d.b);
    assert!(copied < 3000, "the whole copy ran after the pause");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count_files(&d.b), copied, "transfers went on while paused");
    service.resume("p").await.unwrap();
    wait_until("the copy to complete after resume", || {
        count_files(&d.b) == 3000
    })
    .await;
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_storm_makes_few_runs() {
    let d = dirs();
    bulk(&d.a, 3000).await;
    let service = SyncService::with_options(&d.state, options()).unwrap();
    let mut events = service.subscribe();
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    planned(&mut events).await;
    for _ in 0..10_000 {
        service.trigger("p").unwrap();
    }
    let during = matches!(
        service.status("p").unwrap().state,
        PairState::Scanning | PairState::Syncing
    );
    wait_until("the copy", || count_files(&d.b) == 3000).await;
    wait_until("idle", || {
        service.status("p").unwrap().state == PairState::Idle
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    wait_until("idle", || {
        service.status("p").unwrap().state == PairState::Idle
    })
    .await;
    let made = service.status("p").unwrap().runs;
    // One run at a time: triggers during a run ask for one more run, however many come.
    if during {
        assert_eq!(
            made, 2,
            "10 000 triggers during a run made {made} runs in all"
        );
    } else {
        println!("the run ended before the storm did: {made} runs");
        assert!(made <= 3, "10 000 triggers made {made} runs in all");
    }
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_deleted_while_watched_is_a_safety_stop_not_a_mass_deletion() {
    let d = dirs();
    for i in 0..20 {
        write(&d.a.join(format!("f{i}.txt")), "x");
    }
    let service = SyncService::with_options(&d.state, options()).unwrap();
    let mut events = service.subscribe();
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    wait_until("the first copy", || count_files(&d.b) == 20).await;
    wait_until("idle", || {
        service.status("p").unwrap().state == PairState::Idle
    })
    .await;
    std::fs::remove_dir_all(&d.a).unwrap();
    let ev = next_event(&mut events, "a safety stop", |e| {
        matches!(
            e,
            ServiceEvent::RunFinished {
                outcome: RunOutcome::Stopped(_),
                ..
            }
        )
    })
    .await;
    let ServiceEvent::RunFinished {
        outcome: RunOutcome::Stopped(reason),
        ..
    } = ev
    else {
        unreachable!()
    };
    assert!(
        matches!(reason.kind, StopKind::EmptySide | StopKind::RootChanged(_)),
        "{reason:?}"
    );
    let runs = service.status("p").unwrap().runs;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        service.status("p").unwrap().runs,
        runs,
        "retried into a safety stop"
    );
    assert_eq!(count_files(&d.b), 20, "the other side lost files");
    assert!(matches!(
        service.status("p").unwrap().state,
        PairState::Stopped(_)
    ));

    // The disk comes back: resume watches again and syncs.
    std::fs::create_dir_all(&d.a).unwrap();
    for i in 0..20 {
        write(&d.a.join(format!("f{i}.txt")), "x");
    }
    // The re-created root has no identity file: a changed root, stopped again on resume
    // and accepted by a forced run.
    service.resume("p").await.unwrap();
    let ev = next_event(&mut events, "the resumed run", |e| {
        matches!(e, ServiceEvent::RunFinished { .. })
    })
    .await;
    assert!(
        matches!(&ev, ServiceEvent::RunFinished { outcome: RunOutcome::Stopped(r), .. } if matches!(r.kind, StopKind::RootChanged(_))),
        "{ev:?}"
    );
    service.resume_force_once("p").await.unwrap();
    let ev = next_event(&mut events, "the forced run", |e| {
        matches!(e, ServiceEvent::RunFinished { .. })
    })
    .await;
    assert!(
        matches!(
            &ev,
            ServiceEvent::RunFinished {
                outcome: RunOutcome::Completed(_),
                ..
            }
        ),
        "{ev:?}"
    );
    wait_until("idle after the root came back", || {
        service.status("p").unwrap().state == PairState::Idle
    })
    .await;
    assert_eq!(service.status("p").unwrap().watching, Watching::Watched);
    write(&d.a.join("after.txt"), "y");
    wait_until("a change after the comeback", || {
        d.b.join("after.txt").exists()
    })
    .await;
    assert_eq!(count_files(&d.b), 21);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_missing_at_add_stops_the_pair_until_it_exists() {
    let d = dirs();
    let missing = d._tmp.path().join("not-yet");
    let service = SyncService::with_options(&d.state, options()).unwrap();
    let mut events = service.subscribe();
    service.add(spec("p", &missing, &d.b)).await.unwrap();
    // It cannot be watched, and the first run stops on the missing root.
    let ev = next_event(&mut events, "a safety stop", |e| {
        matches!(e, ServiceEvent::Stopped { .. })
    })
    .await;
    let ServiceEvent::Stopped { reason, .. } = ev else {
        unreachable!()
    };
    assert_eq!(reason.kind, StopKind::MissingRoot, "{reason:?}");
    assert!(matches!(
        service.status("p").unwrap().watching,
        Watching::FellBack(_)
    ));
    assert!(!missing.exists(), "the missing source root was created");
    // A missing root has nothing to force.
    assert!(service.resume_force_once("p").await.is_err());

    write(&missing.join("x.txt"), "x");
    service.resume("p").await.unwrap();
    wait_until("the file to arrive", || d.b.join("x.txt").exists()).await;
    assert_eq!(service.status("p").unwrap().watching, Watching::Watched);
    write(&missing.join("y.txt"), "y");
    wait_until("a watched change to arrive", || d.b.join("y.txt").exists()).await;
    service.shutdown().await;
}
