//! The service keeping local pairs in sync: changes on either side, bursts, its own writes,
//! pause and restart, safety stops, overlapping roots, back-off, the watch fallback.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::Dirs;
use common::*;
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::{EntryStream, ProgressEvent, RelPath, StorageClient, SyncError};
use syncengine_service::{
    Debounce, PairSpec, PairState, RunOutcome, ServiceError, ServiceEvent, StopKind, SyncService,
    Watching,
};

fn runs(service: &SyncService, name: &str) -> u64 {
    service.status(name).unwrap().runs
}

fn idle(service: &SyncService, name: &str) -> bool {
    service.status(name).unwrap().state == PairState::Idle
}

/// Waits until the pair has finished its first run (the one made when it is added).
async fn first_run_done(service: &SyncService, name: &str) {
    wait_until("the first run to complete", || {
        let s = service.status(name).unwrap();
        s.last_run.is_some() && s.state == PairState::Idle
    })
    .await;
}

/// Quiet time in which no run should start if nothing changed: the debounce's maximum, the
/// settle window and a margin, three times over.
async fn quiet_period() {
    tokio::time::sleep(Duration::from_millis(3 * (500 + 300 + 200))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_either_side_arrive() {
    let p = "either";
    let d = dirs();
    // Ballast: deleting the only file of a side is a max-delete stop.
    for i in 0..10 {
        write(&d.a.join(format!("ballast/{i}.txt")), "b");
    }
    let service = SyncService::with_options(&d.state, options()).unwrap();
    service.add(spec(p, &d.a, &d.b)).await.unwrap();
    first_run_done(&service, p).await;
    assert_eq!(service.status(p).unwrap().watching, Watching::Watched);

    for (from, to) in [(&d.a, &d.b), (&d.b, &d.a)] {
        // Created.
        write(&from.join("dir/new.txt"), "one");
        wait_until("a created file to arrive", || {
            read(&to.join("dir/new.txt")).as_deref() == Some("one")
        })
        .await;
        // Edited (another size, so no mtime granularity question).
        write(&from.join("dir/new.txt"), "edited");
        wait_until("an edit to arrive", || {
            read(&to.join("dir/new.txt")).as_deref() == Some("edited")
        })
        .await;
        // Renamed.
        std::fs::rename(from.join("dir/new.txt"), from.join("dir/renamed.txt")).unwrap();
        wait_until("a rename to arrive", || {
            read(&to.join("dir/renamed.txt")).as_deref() == Some("edited")
                && !to.join("dir/new.txt").exists()
        })
        .await;
        // Deleted.
        std::fs::remove_file(from.join("dir/renamed.txt")).unwrap();
        wait_until("a deletion to arrive", || {
            !to.join("dir/renamed.txt").exists()
        })
        .await;
    }
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_10000_creations_makes_at_most_3_runs() {
    let d = dirs();
    let service = SyncService::with_options(&d.state, options()).unwrap();
    // A short quiet time, and the default 10 s cap: the burst lasts seconds on a loaded
    // machine, and the cap bounds the wait under a stream of events that never pauses.
    let burst_debounce = Debounce::new(Duration::from_millis(200), Duration::from_secs(10));
    service
        .add(spec("p", &d.a, &d.b).with_debounce(burst_debounce))
        .await
        .unwrap();
    first_run_done(&service, "p").await;
    let before = runs(&service, "p");
    let a = d.a.clone();
    blocking(move || {
        for i in 0..10_000 {
            let dir = a.join(format!("d{:02}", i % 50));
            if i < 50 {
                std::fs::create_dir_all(&dir).unwrap();
            }
            std::fs::write(dir.join(format!("f{i:05}.txt")), i.to_string()).unwrap();
        }
    })
    .await;
    let b = d.b.clone();
    // 10x the debounce cap.
    wait_until_within(Duration::from_secs(100), "10 000 files to arrive", || {
        count_files(&b) == 10_000
    })
    .await;
    wait_until("the pair to be idle", || idle(&service, "p")).await;
    quiet_period().await;
    let made = runs(&service, "p") - before;
    assert!(made <= 3, "a burst of 10 000 creations made {made} runs");
    assert!(made >= 1);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engines_own_writes_make_no_run() {
    let d = dirs();
    let service = SyncService::with_options(&d.state, options()).unwrap();
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    first_run_done(&service, "p").await;
    for round in 0..3 {
        let before = runs(&service, "p");
        // Files on both sides, in new folders: uploads, downloads, folders created.
        write(&d.a.join(format!("r{round}/x/from-a.txt")), "a");
        write(&d.b.join(format!("r{round}/y/from-b.txt")), "b");
        wait_until("both files to arrive", || {
            d.b.join(format!("r{round}/x/from-a.txt")).exists()
                && d.a.join(format!("r{round}/y/from-b.txt")).exists()
        })
        .await;
        wait_until("the pair to be idle", || idle(&service, "p")).await;
        quiet_period().await;
        assert_eq!(
            runs(&service, "p") - before,
            1,
            "round {round}: one change on each side made one run; the run's writes none"
        );
    }
    service.shutdown().await;
}

/// The other half: a user's change made while a run is carrying out its plan (after its
/// listing) is not taken for the run's own write, and reaches the other side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_during_a_run_is_synced_by_the_next() {
    let d = dirs();
    let a = d.a.clone();
    blocking(move || {
        for i in 0..3000 {
            write(&a.join(format!("bulk/{:02}/f{i}.txt", i % 30)), "x");
        }
    })
    .await;
    let service = SyncService::with_options(&d.state, options()).unwrap();
    let mut events = service.subscribe();
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    // The first run has planned its 3000 copies: the listing is done.
    next_event(&mut events, "the first run's plan", |e| {
        matches!(
            e,
            ServiceEvent::Progress {
                event: ProgressEvent::Planned { .. },
                ..
            }
        )
    })
    .await;
    write(&d.a.join("late.txt"), "late");
    let during = service.status("p").unwrap().state == PairState::Syncing;
    wait_until("the file written during the run to arrive", || {
        read(&d.b.join("late.txt")).as_deref() == Some("late")
    })
    .await;
    assert_eq!(count_files(&d.b), 3001);
    // Reported, not asserted: on a slow machine the run may have ended before the write.
    println!("late.txt written while the run was syncing: {during}");
    assert!(runs(&service, "p") >= 2);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_changes_back_and_resume_delivers_them() {
    let d = dirs();
    let service = SyncService::with_options(&d.state, options()).unwrap();
    let mut events = service.subscribe();
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    first_run_done(&service, "p").await;
    service.pause("p").await.unwrap();
    next_event(&mut events, "paused", |e| {
        matches!(e, ServiceEvent::Paused { .. })
    })
    .await;
    assert_eq!(service.status("p").unwrap().state, PairState::Paused);
    let before = runs(&service, "p");
    write(&d.a.join("held.txt"), "held");
    service.trigger("p").unwrap();
    quiet_period().await;
    assert!(!d.b.join("held.txt").exists(), "a paused pair synced");
    assert_eq!(runs(&service, "p"), before, "a paused pair ran");
    service.resume("p").await.unwrap();
    wait_until("the held change to arrive", || {
        d.b.join("held.txt").exists()
    })
    .await;
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paused_state_survives_a_restart() {
    let d = dirs();
    let service = SyncService::with_options(&d.state, options()).unwrap();
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    first_run_done(&service, "p").await;
    service.pause("p").await.unwrap();
    service.shutdown().await;

    write(&d.a.join("while-down.txt"), "x");
    let service = SyncService::with_options(&d.state, options()).unwrap();
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    let st = service.status("p").unwrap();
    assert!(st.paused);
    assert_eq!(st.state, PairState::Paused);
    quiet_period().await;
    assert_eq!(
        runs(&service, "p"),
        0,
        "a pair paused before the restart ran"
    );
    assert!(!d.b.join("while-down.txt").exists());
    service.resume("p").await.unwrap();
    wait_until("the change to arrive after resume", || {
        d.b.join("while-down.txt").exists()
    })
    .await;
    service.shutdown().await;

    // Resumed is persisted too.
    let service = SyncService::with_options(&d.state, options()).unwrap();
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    assert!(!service.status("p").unwrap().paused);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_delete_stop_stops_only_that_pair_and_force_once_gets_past_it() {
    let d = dirs();
    let e = dirs();
    for i in 0..10 {
        write(&d.a.join(format!("f{i}.txt")), "x");
    }
    let service = SyncService::with_options(&d.state, options()).unwrap();
    let mut events = service.subscribe();
    service.add(spec("guarded", &d.a, &d.b)).await.unwrap();
    service.add(spec("other", &e.a, &e.b)).await.unwrap();
    first_run_done(&service, "guarded").await;
    first_run_done(&service, "other").await;
    assert_eq!(count_files(&d.b), 10);

    for i in 0..8 {
        std::fs::remove_file(d.a.join(format!("f{i}.txt"))).unwrap();
    }
    let ev = next_event(
        &mut events,
        "the max-delete stop",
        |e| matches!(e, ServiceEvent::Stopped { pair, .. } if pair == "guarded"),
    )
    .await;
    let ServiceEvent::Stopped { reason, .. } = ev else {
        unreachable!()
    };
    assert_eq!(reason.kind, StopKind::MaxDelete);
    assert!(reason.message.contains("max-delete"), "{}", reason.message);
    let st = service.status("guarded").unwrap();
    assert!(matches!(st.state, PairState::Stopped(ref r) if r.kind == StopKind::MaxDelete));
    assert_eq!(count_files(&d.b), 10, "a stopped run deleted");

    // The other pair keeps syncing; the stopped one is never retried into the rule.
    let stopped_runs = runs(&service, "guarded");
    write(&e.a.join("still.txt"), "y");
    wait_until("the other pair to sync", || e.b.join("still.txt").exists()).await;
    write(&d.a.join("new-on-stopped.txt"), "z");
    service.trigger("guarded").unwrap();
    quiet_period().await;
    assert_eq!(
        runs(&service, "guarded"),
        stopped_runs,
        "a stopped pair ran again"
    );
    assert!(!d.b.join("new-on-stopped.txt").exists());

    // Forced once: the deletions and the new file go through.
    service.resume_force_once("guarded").await.unwrap();
    wait_until("the forced run to delete", || count_files(&d.b) == 3).await;
    wait_until("the pair to be idle", || idle(&service, "guarded")).await;
    assert!(d.b.join("new-on-stopped.txt").exists());
    assert!(service.status("guarded").unwrap().stopped.is_none());
    // Not stopped now: nothing to force.
    assert!(matches!(
        service.resume_force_once("guarded").await,
        Err(ServiceError::NotStopped(_))
    ));

    // Only once: the next mass deletion stops again.
    for i in 0..10 {
        write(&d.a.join(format!("g{i}.txt")), "x");
    }
    wait_until("new files to arrive", || count_files(&d.b) == 13).await;
    for i in 0..10 {
        std::fs::remove_file(d.a.join(format!("g{i}.txt"))).unwrap();
    }
    wait_until("the pair to stop again", || {
        service.status("guarded").unwrap().stopped.is_some()
    })
    .await;
    assert_eq!(count_files(&d.b), 13);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_roots_are_refused() {
    let d = dirs();
    let c = d._tmp.path().join("c");
    std::fs::create_dir_all(d.a.join("sub")).unwrap();
    std::fs::create_dir_all(&c).unwrap();
    let service = SyncService::with_options(&d.state, options()).unwrap();
    service.add(spec("first", &d.a, &d.b)).await.unwrap();

    // Inside a root of another pair.
    let err = service
        .add(spec("inner", &d.a.join("sub"), &c))
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Overlap { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("\"inner\"") && msg.contains("\"first\""),
        "{msg}"
    );
    // The same root.
    let err = service.add(spec("same", &c, &d.b)).await.unwrap_err();
    assert!(matches!(err, ServiceError::Overlap { .. }), "{err}");
    // Holding a root of another pair.
    let err = service
        .add(spec("outer", d._tmp.path(), &c))
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Overlap { .. }), "{err}");
    // Through a symlink and a `..`: compared canonicalized.
    let link = d._tmp.path().join("link-to-a");
    std::os::unix::fs::symlink(&d.a, &link).unwrap();
    let err = service.add(spec("linked", &link, &c)).await.unwrap_err();
    assert!(matches!(err, ServiceError::Overlap { .. }), "{err}");
    let dotted = c.join("..").join("b");
    let err = service.add(spec("dotted", &c, &dotted)).await.unwrap_err();
    assert!(matches!(err, ServiceError::Overlap { .. }), "{err}");
    // A sibling whose name starts like a root is not inside it.
    let sibling = d._tmp.path().join("a2");
    std::fs::create_dir_all(&sibling).unwrap();
    service.add(spec("sibling", &sibling, &c)).await.unwrap();
    // A duplicate name.
    let err = service.add(spec("first", &c, &c)).await.unwrap_err();
    assert!(matches!(err, ServiceError::Duplicate(_)), "{err}");
    assert_eq!(service.pair_names(), ["first", "sibling"]);
    service.shutdown().await;
}

/// One folder under two paths that no canonicalization joins (a bind mount) is one root: the
/// second pair is refused by the folders' device and inode (RT23: only paths were compared).
/// Needs `mount --bind` (root); skipped with a note elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_bind_mounted_into_another_pair_is_refused() {
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let d = dirs();
    let (inner, view, c) = (
        d.a.join("inner"),
        d._tmp.path().join("view"),
        d._tmp.path().join("c"),
    );
    for dir in [&inner, &view, &c] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let mounted = std::process::Command::new("mount")
        .arg("--bind")
        .arg(&inner)
        .arg(&view)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: `mount --bind` is not allowed here (it needs root)");
        return;
    }
    let _unmount = Unmount(view.clone());
    let service = SyncService::with_options(&d.state, options()).unwrap();
    service.add(spec("first", &d.a, &d.b)).await.unwrap();
    // `view` is `a/inner`: inside the first pair's root.
    let err = service.add(spec("bound", &view, &c)).await.unwrap_err();
    assert!(matches!(err, ServiceError::Overlap { .. }), "{err}");
    assert!(err.to_string().contains("device and inode"), "{err}");
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pair_backs_off_and_the_other_keeps_running() {
    let d = dirs();
    let e = dirs();
    let attempts = Arc::new(AtomicU64::new(0));
    let (a, b) = (d.a.clone(), d.b.clone());
    let calls = attempts.clone();
    // Built fine once (at add), then failing: a side that cannot be reached.
    let failing = PairSpec::with_builder("failing", move || {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        let pair = local_pair(&a, &b);
        async move {
            if n == 0 {
                Ok(pair)
            } else {
                Err(SyncError::State("simulated failure".into()))
            }
        }
    })
    .with_debounce(debounce());
    let service = SyncService::with_options(&d.state, options()).unwrap();
    let mut events = service.subscribe();
    service.add(failing).await.unwrap();
    service.add(spec("healthy", &e.a, &e.b)).await.unwrap();

    let mut delays = Vec::new();
    while delays.len() < 4 {
        let ev = next_event(
            &mut events,
            "a failed run",
            |e| matches!(e, ServiceEvent::RunFinished { pair, .. } if pair == "failing"),
        )
        .await;
        match ev {
            ServiceEvent::RunFinished {
                outcome: RunOutcome::Failed { retry_in, error },
                ..
            } => {
                assert!(error.contains("simulated failure"), "{error}");
                delays.push(retry_in);
            }
            other => panic!("unexpected outcome: {other:?}"),
        }
    }
    let ms = |n| Duration::from_millis(n);
    assert_eq!(delays, [ms(200), ms(400), ms(800), ms(800)]);
    let st = service.status("failing").unwrap();
    assert!(
        matches!(st.state, PairState::BackingOff { .. }),
        "{:?}",
        st.state
    );
    assert!(st.last_error.unwrap().contains("simulated failure"));

    write(&e.a.join("fine.txt"), "ok");
    wait_until("the healthy pair to sync", || e.b.join("fine.txt").exists()).await;
    service.shutdown().await;
}

/// A client whose listing never answers: a hung disk or mount, which no timeout ends.
#[derive(Debug)]
struct Hung(Arc<dyn StorageClient>);

#[async_trait::async_trait]
impl Hooks for Hung {
    fn inner(&self) -> &dyn StorageClient {
        self.0.as_ref()
    }
    fn list(&self, _prefix: Option<&RelPath>) -> EntryStream {
        Box::pin(futures::stream::pending())
    }
}

/// A pair whose storage stops answering gives its run slot to the other pairs once it has
/// shown no progress for `stalled_after`, and its status says since when. With one slot
/// (or two hung pairs and the default two), every other pair waited behind it for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_pair_gives_its_run_slot_to_the_others() {
    let (d, e) = (dirs(), dirs());
    let (a, b) = (d.a.clone(), d.b.clone());
    let hung = PairSpec::with_builder("hung", move || {
        let mut pair = local_pair(&a, &b);
        pair.source = Arc::new(Forwarding::new(Hung(pair.source.clone())));
        async move { Ok(pair) }
    })
    .with_debounce(debounce());
    let opts = options()
        .with_max_concurrent_runs(1)
        .with_stalled_after(Duration::from_millis(300));
    let service = SyncService::with_options(&d.state, opts).unwrap();
    let mut events = service.subscribe();
    service.add(hung).await.unwrap();
    next_event(
        &mut events,
        "the hung pair's run to stall",
        |e| matches!(e, ServiceEvent::Stalled { pair, .. } if pair == "hung"),
    )
    .await;
    let st = service.status("hung").unwrap();
    assert_eq!(st.state, PairState::Scanning, "its run goes on");
    assert!(st.no_progress_since.is_some(), "{st:?}");

    write(&e.a.join("fine.txt"), "ok");
    service.add(spec("healthy", &e.a, &e.b)).await.unwrap();
    wait_until("the healthy pair to sync beside the hung one", || {
        e.b.join("fine.txt").exists()
    })
    .await;
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_pair_lock_is_retried_with_back_off() {
    let d = dirs();
    let service = SyncService::with_options(&d.state, options()).unwrap();
    let mut events = service.subscribe();
    let pair = local_pair(&d.a, &d.b);
    let id = pair.id().await.unwrap();
    let lock = syncengine_core::state::PairLock::acquire(&d.state, &id).unwrap();
    write(&d.a.join("x.txt"), "x");
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    let ev = next_event(&mut events, "a failed run", |e| {
        matches!(e, ServiceEvent::RunFinished { .. })
    })
    .await;
    assert!(
        matches!(&ev, ServiceEvent::RunFinished { outcome: RunOutcome::Failed { error, .. }, .. } if error.contains("lock")),
        "{ev:?}"
    );
    drop(lock);
    wait_until("the retry to sync", || d.b.join("x.txt").exists()).await;
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_falls_back_to_polling_when_the_watch_limit_is_hit() {
    let d = dirs();
    let service =
        SyncService::with_options(&d.state, options().with_simulated_watch_limit(true)).unwrap();
    let mut events = service.subscribe();
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    let ev = next_event(&mut events, "the fallback warning", |e| {
        matches!(e, ServiceEvent::WatchFallback { .. })
    })
    .await;
    let ServiceEvent::WatchFallback { reason, .. } = ev else {
        unreachable!()
    };
    assert!(reason.contains("watch limit"), "{reason}");
    first_run_done(&service, "p").await;
    assert!(matches!(
        service.status("p").unwrap().watching,
        Watching::FellBack(_)
    ));
    // Polled every second: the change arrives without any watch.
    write(&d.a.join("polled.txt"), "p");
    next_event(&mut events, "a poll run", |e| {
        matches!(
            e,
            ServiceEvent::RunStarted {
                reason: syncengine_service::RunReason::Poll,
                ..
            }
        )
    })
    .await;
    wait_until("the polled change to arrive", || {
        d.b.join("polled.txt").exists()
    })
    .await;
    service.shutdown().await;
}

/// The run deletes the last file of a folder (and the folder); the user makes the folder
/// again at once, with a file in it, before its watch is in place. The folder's creation
/// looks like the run's own write (the run wrote there); what it holds is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_recreated_right_after_the_run_removed_it_is_synced() {
    let d = dirs();
    for i in 0..10 {
        write(&d.a.join(format!("ballast/{i}.txt")), "b");
    }
    let service = SyncService::with_options(&d.state, options()).unwrap();
    service.add(spec("refolder", &d.a, &d.b)).await.unwrap();
    first_run_done(&service, "refolder").await;
    for round in 0..5 {
        write(&d.a.join("dir/only.txt"), "x");
        wait_until("the file to arrive", || d.b.join("dir/only.txt").exists()).await;
        std::fs::remove_dir_all(d.a.join("dir")).unwrap();
        wait_until("the deletion to arrive", || {
            !d.b.join("dir/only.txt").exists()
        })
        .await;
        // At once, on the side the run just wrote to.
        let name = format!("dir/new{round}.txt");
        write(&d.b.join(&name), "y");
        wait_until("the file in the re-created folder to arrive", || {
            d.a.join(&name).exists()
        })
        .await;
        std::fs::remove_file(d.a.join(&name)).unwrap();
        wait_until("its deletion to arrive", || !d.b.join(&name).exists()).await;
    }
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_over_all_pairs_stay_under_the_global_limit() {
    let dirs: Vec<Dirs> = (0..3).map(|_| common::dirs()).collect();
    for d in &dirs {
        let a = d.a.clone();
        blocking(move || {
            for i in 0..500 {
                write(&a.join(format!("f{i}.txt")), "x");
            }
        })
        .await;
    }
    let service =
        SyncService::with_options(&dirs[0].state, options().with_max_concurrent_runs(1)).unwrap();
    for (i, d) in dirs.iter().enumerate() {
        service
            .add(spec(&format!("p{i}"), &d.a, &d.b))
            .await
            .unwrap();
    }
    let mut most = 0;
    let mut waited = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !dirs.iter().all(|d| count_files(&d.b) == 500) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pairs did not sync"
        );
        let statuses = service.statuses();
        let active = statuses
            .iter()
            .filter(|(_, s)| matches!(s.state, PairState::Scanning | PairState::Syncing))
            .count();
        waited |= statuses.iter().any(|(_, s)| s.state == PairState::Waiting);
        most = most.max(active);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(most, 1, "runs in progress at once with a limit of 1");
    println!("a pair was seen waiting for a slot: {waited}");
    service.shutdown().await;
}

/// The service's bandwidth budget is spent by its pairs' transfers: two pairs of 512 KiB
/// each at 256 KiB/s shared take at least 3 s together (the bucket starts empty), however
/// the pairs overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_share_the_service_bandwidth_budget() {
    use syncengine_core::bandwidth::Bandwidth;
    let (one, two) = (dirs(), dirs());
    let payload = "x".repeat(512 * 1024);
    write(&one.a.join("big.bin"), &payload);
    write(&two.a.join("big.bin"), &payload);
    let budget = Bandwidth::new("256k".parse().unwrap());
    let service = SyncService::with_options(
        &one.state,
        options().with_max_concurrent_runs(2).with_bandwidth(budget),
    )
    .unwrap();
    let started = std::time::Instant::now();
    service.add(spec("one", &one.a, &one.b)).await.unwrap();
    service.add(spec("two", &two.a, &two.b)).await.unwrap();
    wait_until("both copies", || {
        read(&one.b.join("big.bin")).is_some_and(|b| b == payload)
            && read(&two.b.join("big.bin")).is_some_and(|b| b == payload)
    })
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "1 MiB at 256 KiB/s arrived in {took:?}: the budget was not applied or not shared"
    );
    service.shutdown().await;
}
