//! A server that goes away in the middle of a run (after planning, while the copies run):
//! the executor notices the side is gone after the first failures, starts nothing more, runs
//! no deletion and ends with `SyncError::Unreachable` (CLI exit 1) naming the side. Old code
//! tried every planned action, each with its own retries (about a minute for the red team's
//! run), and ended "successfully" with one error per action.
//!
//! The server is Apache behind a proxy (`syncengine-test-proxy`) that holds every upload;
//! the test lets a few through, then drops the proxy: held uploads are cut off, and every
//! new connection is refused, as by a server that was killed. A proxy started again at the
//! same address is the server coming back: the next run converges.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use syncengine_backend_local::LocalClient;
use syncengine_core::progress::ProgressEvent;
use syncengine_core::{
    RelPath, Side, StorageClient, StorageClientExt, SyncEngine, SyncError, SyncMode, SyncOptions,
    SyncPair,
};
use syncengine_test_proxy::{Matcher, Proxy};

use common::APACHE;

const NEW_FILES: usize = 40;
const TRANSFERS: usize = 4;
/// Uploads let through before the server goes away.
const LET_THROUGH: u32 = 3;

#[tokio::test]
async fn a_server_lost_mid_run_stops_the_run_as_unreachable() {
    let Some(url) = common::server_url(APACHE) else {
        return;
    };
    let proxy = Proxy::start(&url).unwrap();
    let addr = proxy.addr();
    let path = format!("syncengine-tests/side-lost-{:016x}", rand::random::<u64>());
    let direct = common::dav(&format!("{url}/{path}"));
    let remote = Arc::new(common::dav(&format!("{}/{path}", proxy.url())));

    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(&local_root).unwrap();
    for i in 0..3 {
        std::fs::write(
            local_root.join(format!("keep-{i}.txt")),
            format!("keep {i}"),
        )
        .unwrap();
    }
    let options = SyncOptions::default().with_transfers(TRANSFERS);
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        remote,
        SyncMode::TwoWay,
    )
    .with_options(options);
    let state = tmp.path().join("state");
    let stats = SyncEngine::new(&state).sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 3, "{stats:?}");

    // Deleted on the server: the next run would delete the local copy. New local files:
    // the next run uploads them.
    direct
        .delete(&RelPath::new("keep-0.txt").unwrap())
        .await
        .unwrap();
    for i in 0..NEW_FILES {
        std::fs::write(
            local_root.join(format!("new-{i:02}.txt")),
            format!("new {i}"),
        )
        .unwrap();
    }

    // Every upload is held; a few are let through, then the server goes away.
    for _ in 0..NEW_FILES * 2 {
        proxy.hold(Matcher::method("PUT"));
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = SyncEngine::new(&state).with_progress(tx);
    let run = tokio::spawn({
        let pair = pair.clone();
        async move { engine.sync_pair(&pair).await }
    });
    assert!(
        proxy.held_within(1, Duration::from_secs(30)).await,
        "no upload came"
    );
    for _ in 0..LET_THROUGH {
        proxy.release();
    }
    // The released ones finish, and their slots take the next uploads, which are held.
    assert!(
        proxy
            .held_within(LET_THROUGH + TRANSFERS as u32, Duration::from_secs(30))
            .await,
        "the uploads let through did not finish"
    );
    drop(proxy);
    let lost_at = std::time::Instant::now();

    let result = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the run ends")
        .unwrap();
    let (mut started, mut done) = (0, 0);
    while let Ok(event) = rx.try_recv() {
        match event {
            ProgressEvent::Started { .. } => started += 1,
            ProgressEvent::Done { .. } => done += 1,
            _ => {}
        }
    }
    eprintln!(
        "ended {:?} after the server went: {started} started, {done} done",
        lost_at.elapsed()
    );
    match &result {
        Err(
            e @ SyncError::Unreachable {
                side: Side::Destination,
                during_run: true,
                ..
            },
        ) => assert!(e.is_unreachable(), "{e}"),
        other => panic!(
            "expected the destination to be unreachable, got {other:?} \
             ({started} actions started, {done} done)"
        ),
    }
    // The uploads let through, then at most one round of `TRANSFERS` cut off (plus the slot
    // of each one let through, taken before the server went); old code started all of them.
    assert!(
        started <= LET_THROUGH as usize + 2 * TRANSFERS,
        "{started} of {NEW_FILES} actions started after the server went away"
    );
    assert!(done >= 1, "{done} done");
    // What the run reported done is what the server holds, no more and no less.
    let on_server = direct
        .list(None)
        .filter(|e| {
            std::future::ready(
                e.as_ref()
                    .is_ok_and(|e| e.path.as_str().starts_with("new-")),
            )
        })
        .count()
        .await;
    assert_eq!(on_server, done, "uploads on the server");

    // Nothing was deleted on the side that stayed, and nothing local was touched.
    assert_eq!(
        std::fs::read_to_string(local_root.join("keep-0.txt")).unwrap(),
        "keep 0",
        "a deletion ran after the server went away"
    );
    for i in 0..NEW_FILES {
        assert_eq!(
            std::fs::read_to_string(local_root.join(format!("new-{i:02}.txt"))).unwrap(),
            format!("new {i}")
        );
    }

    // The server comes back at the same address: the next run converges. A copy that the
    // base claimed but that never landed would now look deleted on the server, and the
    // local file would be deleted: every new file must be on both sides.
    let proxy = loop {
        match Proxy::start_on(&url, addr) {
            Ok(p) => break p,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let stats = SyncEngine::new(&state).sync_pair(&pair).await.unwrap();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(stats.conflicts, 0, "{stats:?}");
    assert_eq!(stats.deleted_source, 1, "keep-0 goes now: {stats:?}");
    assert!(!local_root.join("keep-0.txt").exists());
    for i in 0..NEW_FILES {
        let name = format!("new-{i:02}.txt");
        assert_eq!(
            std::fs::read_to_string(local_root.join(&name)).unwrap(),
            format!("new {i}")
        );
        assert_eq!(
            direct
                .read_to_bytes(&RelPath::new(&name).unwrap())
                .await
                .unwrap(),
            format!("new {i}").as_bytes(),
            "{name} on the server"
        );
    }
    let stats = SyncEngine::new(&state).sync_pair(&pair).await.unwrap();
    assert_eq!(
        stats.uploaded + stats.downloaded + stats.deleted_source + stats.deleted_destination,
        0,
        "settled: {stats:?}"
    );
    drop(proxy);
}
