//! Red team 23 on the service: the persisted pause with more than one writer of the state
//! directory, and a user's edit that keeps an old modification time.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use syncengine_service::{PAUSED_FILE, RunOutcome, ServiceEvent, SyncService};

/// The pair names the paused file holds.
fn paused_in_file(state: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(state.join(PAUSED_FILE)).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["paused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

/// Two services on one state directory (two `syncengine watch` with two config files and
/// the default state directory), each pausing its own pair: each write of the paused file
/// wrote the writer's own set, so the second pause (or any resume) dropped the first
/// service's pause, and that pair ran again after the next restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_on_one_state_dir_keep_each_others_pauses() {
    let d = dirs();
    let (a2, b2) = (d.a.join("second"), d.b.join("second"));
    let (a1, b1) = (d.a.join("first"), d.b.join("first"));
    for p in [&a1, &b1, &a2, &b2] {
        std::fs::create_dir_all(p).unwrap();
    }
    let one = SyncService::with_options(&d.state, options()).unwrap();
    let two = SyncService::with_options(&d.state, options()).unwrap();
    // A third pair of the second service, paused and resumed, to check resumes too.
    let (a3, b3) = (d._tmp.path().join("a3"), d._tmp.path().join("b3"));
    std::fs::create_dir_all(&a3).unwrap();
    std::fs::create_dir_all(&b3).unwrap();
    one.add(spec("x", &a1, &b1)).await.unwrap();
    two.add(spec("y", &a2, &b2)).await.unwrap();
    two.add(spec("z", &a3, &b3)).await.unwrap();
    one.pause("x").await.unwrap();
    two.pause("y").await.unwrap();
    two.pause("z").await.unwrap();
    two.resume("z").await.unwrap();
    let mut names = paused_in_file(&d.state);
    names.sort();
    assert_eq!(
        names,
        ["x", "y"],
        "a service's pause was overwritten by another's"
    );
    one.shutdown().await;
    two.shutdown().await;
    // After a restart both pairs stay paused.
    let again = SyncService::with_options(&d.state, options()).unwrap();
    again.add(spec("x", &a1, &b1)).await.unwrap();
    again.add(spec("y", &a2, &b2)).await.unwrap();
    assert!(again.status("x").unwrap().paused);
    assert!(again.status("y").unwrap().paused);
    again.shutdown().await;
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(&d.state)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(PAUSED_FILE) && n != PAUSED_FILE)
        .collect();
    assert!(left.iter().all(|n| n.ends_with(".lock")), "{left:?}");
}

/// A pair paused by another writer of the state directory (another service, a future
/// `syncengine pause`) after this service read the file is paused when it is added here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_written_after_the_service_started_holds_when_the_pair_is_added() {
    let d = dirs();
    let service = SyncService::with_options(&d.state, options()).unwrap();
    let other = SyncService::with_options(&d.state, options()).unwrap();
    other.add(spec("p", &d.a, &d.b)).await.unwrap();
    other.pause("p").await.unwrap();
    other.remove("p").await.unwrap();
    other.shutdown().await;
    write(&d.a.join("f.txt"), "must not be copied while paused");
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    assert!(
        service.status("p").unwrap().paused,
        "the pause written by the other service was not seen"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(read(&d.b.join("f.txt")).is_none(), "a paused pair ran");
    service.shutdown().await;
}

/// A user who puts back an older copy of a file the run just wrote, keeping its time
/// (`cp -p`, `rsync -t`, a restore from a backup, an unpacked archive), right after the run:
/// the file's modification time is older than the run's write, so it was taken as the run's
/// own write and no run followed; the change waited for the hourly rescan, and a two-way
/// pair's other side kept the old content. The inode's change time (which no user can set)
/// tells it apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_file_with_an_old_time_after_a_run_starts_the_next_run() {
    let d = dirs();
    write(&d.a.join("doc.txt"), "version 2 from the source");
    // A long settle window: the user's restore lands inside it however slow this machine is
    // (by default the window is 1 s after a run, plus the whole run itself).
    let service =
        SyncService::with_options(&d.state, options().with_settle(Duration::from_secs(60)))
            .unwrap();
    let mut events = service.subscribe();
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    next_event(&mut events, "the first run", |e| {
        matches!(
            e,
            ServiceEvent::RunFinished {
                outcome: RunOutcome::Completed(_),
                ..
            }
        )
    })
    .await;
    assert_eq!(
        read(&d.b.join("doc.txt")).as_deref(),
        Some("version 2 from the source")
    );
    // The user restores an older version on the destination, with its old time.
    let old = SystemTime::now() - Duration::from_secs(3 * 86_400);
    // As a restore does that writes a temporary file with the old time and renames it over
    // the file: one event, when the file already has its old time. (The temporary file is
    // outside the root here: rsync's own temporary name inside it would be an event of its
    // own, at a path the run did not write.)
    let tmp = d._tmp.path().join("doc.txt.restore-tmp");
    std::fs::write(&tmp, "version 1, restored by the user").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(old)
        .unwrap();
    std::fs::rename(&tmp, d.b.join("doc.txt")).unwrap();
    // The change must start a run that takes it to the source (two-way: the destination
    // changed, the source did not).
    wait_until("the restored file reaches the source", || {
        read(&d.a.join("doc.txt")).as_deref() == Some("version 1, restored by the user")
    })
    .await;
    service.shutdown().await;
}

/// A user who edits a file right after the run settled a conflict at its path (the likely
/// moment: the user looks at the conflict): the run's conflict actions were recorded with no
/// expectation, so any change at those paths during the rest of the run and its settle window
/// was taken as the run's own, even a plain edit with a new time, and waited for the hourly
/// rescan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_right_after_a_conflict_was_settled_starts_the_next_run() {
    let d = dirs();
    // Both sides hold the file, different: the first run is a conflict.
    write(&d.a.join("doc.txt"), "the source's version");
    write(&d.b.join("doc.txt"), "the destination's own version");
    let service =
        SyncService::with_options(&d.state, options().with_settle(Duration::from_secs(60)))
            .unwrap();
    let mut events = service.subscribe();
    service.add(spec("p", &d.a, &d.b)).await.unwrap();
    let mut conflict = false;
    loop {
        let ev = next_event(&mut events, "the first run", |_| true).await;
        if let ServiceEvent::Progress { event, .. } = &ev
            && format!("{event:?}").contains("Conflict")
        {
            conflict = true;
        }
        if matches!(ev, ServiceEvent::RunFinished { .. }) {
            assert!(
                matches!(
                    ev,
                    ServiceEvent::RunFinished {
                        outcome: RunOutcome::Completed(_),
                        ..
                    }
                ),
                "{ev:?}"
            );
            break;
        }
    }
    assert!(conflict, "the first run settled no conflict");
    let same = || read(&d.a.join("doc.txt")) == read(&d.b.join("doc.txt"));
    assert!(same(), "the conflict left the two sides different");
    // The user's edit, now, with the current time.
    tokio::time::sleep(Duration::from_millis(50)).await;
    write(&d.b.join("doc.txt"), "the user's edit after the conflict");
    wait_until("the edit reaches the source", || {
        read(&d.a.join("doc.txt")).as_deref() == Some("the user's edit after the conflict")
    })
    .await;
    service.shutdown().await;
}
