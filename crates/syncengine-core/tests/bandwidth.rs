//! The bandwidth limit (`syncengine_core::bandwidth`) on real runs of the engine, with the
//! in-memory client (which is not local disk, so the engine throttles it as a remote side).
//!
//! Durations are asserted only as lower bounds the limit implies (bytes beyond one burst,
//! divided by the rate), or on tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use syncengine_core::bandwidth::{Bandwidth, BandwidthLimit};
use syncengine_core::testing::{Fault, FaultClient, FaultConfig};
use syncengine_core::{
    MemoryClient, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncError, SyncMode,
    SyncPair,
};
use tokio_util::sync::CancellationToken;

fn path(p: &str) -> RelPath {
    RelPath::new(p).unwrap()
}

fn content(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

fn budget(text: &str) -> Bandwidth {
    Bandwidth::new(text.parse::<BandwidthLimit>().unwrap())
}

#[tokio::test(start_paused = true)]
async fn the_wrapper_keeps_the_bytes_and_spends_up_on_writes_and_down_on_reads() {
    let inner = Arc::new(MemoryClient::new());
    // UP 100 KiB/s, DOWN 50 KiB/s.
    let throttled = budget("100k:50k").throttle(inner.clone());
    let data = content(300 << 10, 7);

    let start = tokio::time::Instant::now();
    throttled.put(&path("f.bin"), data.clone()).await.unwrap();
    let wrote = start.elapsed();
    // 300 KiB at 100 KiB/s from an empty bucket.
    assert!(wrote >= Duration::from_secs(3), "{wrote:?}");
    assert_eq!(inner.read_to_bytes(&path("f.bin")).await.unwrap(), data);

    let start = tokio::time::Instant::now();
    let read = throttled.read_to_bytes(&path("f.bin")).await.unwrap();
    let took = start.elapsed();
    assert_eq!(read, data);
    // 300 KiB at 50 KiB/s, less the one-second burst gathered while writing.
    assert!(took >= Duration::from_secs(5), "{took:?}");

    // Metadata calls are not throttled and answer as the inner client.
    let start = tokio::time::Instant::now();
    assert_eq!(
        throttled.stat(&path("f.bin")).await.unwrap().size,
        300 << 10
    );
    assert_eq!(throttled.list_all(None).await.unwrap().len(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(throttled.to_string(), inner.to_string());
    assert_eq!(
        throttled.location().await.unwrap(),
        inner.location().await.unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn one_direction_off_leaves_it_unthrottled() {
    let inner = Arc::new(MemoryClient::new());
    let throttled = budget("off:1k").throttle(inner.clone());
    let start = tokio::time::Instant::now();
    // 1 MiB up, unlimited.
    throttled
        .put(&path("big"), content(1 << 20, 1))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    // 4 KiB down at 1 KiB/s.
    throttled
        .put(&path("small"), content(4 << 10, 2))
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    throttled.read_to_bytes(&path("small")).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn an_unlimited_budget_changes_nothing() {
    let inner: Arc<dyn StorageClient> = Arc::new(MemoryClient::new());
    for text in ["off", "off:off", "0", "0:off"] {
        let b = budget(text);
        assert!(b.is_unlimited(), "{text}");
        assert!(Arc::ptr_eq(&b.throttle(inner.clone()), &inner), "{text}");
        let pair = SyncPair::new(inner.clone(), inner.clone(), SyncMode::TwoWay);
        let same = b.throttle_pair(&pair);
        assert!(Arc::ptr_eq(&same.source, &inner) && Arc::ptr_eq(&same.destination, &inner));
    }
}

#[test]
fn remote_sides_and_remote_backup_dirs_are_throttled() {
    let remote = || -> Arc<dyn StorageClient> { Arc::new(MemoryClient::new()) };
    let b = budget("1M");
    let opts = syncengine_core::SyncOptions::default().with_recovery(
        syncengine_core::Side::Source,
        syncengine_core::pair::Recovery::BackupDir(remote()),
    );
    let pair = SyncPair::new(remote(), remote(), SyncMode::TwoWay)
        .with_options(opts)
        .with_id("kept");
    let t = b.throttle_pair(&pair);
    assert!(format!("{:?}", t.source).starts_with("Throttled"));
    assert!(format!("{:?}", t.destination).starts_with("Throttled"));
    match &t.options.source_recovery {
        syncengine_core::pair::Recovery::BackupDir(c) => {
            assert!(format!("{c:?}").starts_with("Throttled"))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        t.options.destination_recovery,
        syncengine_core::pair::Recovery::Auto
    ));
    assert_eq!(t.mode, SyncMode::TwoWay);
}

/// A run copies 256 KiB from one "remote" side to the other at 64 KiB/s: it cannot take less
/// than (256 − 64 KiB of burst) / 64 KiB/s = 3 s, and the content arrives whole.
#[tokio::test]
async fn a_run_holds_the_limit_and_delivers_the_content() {
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    let data = content(256 << 10, 3);
    src.put(&path("dir/f.bin"), data.clone()).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path()).with_bandwidth(budget("64k"));
    let pair = SyncPair::new(src.clone(), dst.clone(), SyncMode::TwoWay);

    let start = std::time::Instant::now();
    let stats = engine.sync_pair(&pair).await.unwrap();
    let took = start.elapsed();
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    assert_eq!(dst.read_to_bytes(&path("dir/f.bin")).await.unwrap(), data);
    assert!(took >= Duration::from_secs(3), "{took:?}");

    // The pair keeps one state with or without a limit: the next run, unlimited, has
    // nothing to do.
    let again = SyncEngine::new(state.path())
        .sync_pair(&pair)
        .await
        .unwrap();
    assert!(again.is_noop(), "{again:?}");
}

/// Two pairs run at once on engines given one budget: their uploads share it, so both
/// finish, and not before the shared limit allows.
#[tokio::test]
async fn pairs_sharing_a_budget_share_the_rate_and_both_progress() {
    let shared = budget("64k");
    let state = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    let mut dests = Vec::new();
    for seed in 0..2u8 {
        let src = Arc::new(MemoryClient::new());
        let dst = Arc::new(MemoryClient::new());
        src.put(&path("f.bin"), content(128 << 10, seed))
            .await
            .unwrap();
        dests.push(dst.clone());
        let engine = SyncEngine::new(state.path()).with_bandwidth(shared.clone());
        let pair =
            SyncPair::new(src, dst, SyncMode::SourceToDestination).with_id(format!("pair-{seed}"));
        runs.push(tokio::spawn(async move { engine.sync_pair(&pair).await }));
    }
    let start = std::time::Instant::now();
    for run in runs {
        assert_eq!(run.await.unwrap().unwrap().uploaded, 1);
    }
    // 256 KiB through one 64 KiB/s bucket: at least 3 s.
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    for (seed, dst) in dests.iter().enumerate() {
        assert_eq!(
            dst.read_to_bytes(&path("f.bin")).await.unwrap(),
            content(128 << 10, seed as u8)
        );
    }
}

/// A read that fails mid-stream while throttled is retried, a file whose reads keep
/// failing is reported, and the other transfers of the run still get the budget: nothing
/// a failed transfer was waiting for is lost.
#[tokio::test]
async fn a_transfer_failing_mid_way_leaks_nothing_and_the_others_run() {
    let inner = Arc::new(MemoryClient::new());
    for i in 0..6u8 {
        inner
            .put(&path(&format!("f{i}")), content(32 << 10, i))
            .await
            .unwrap();
    }
    let src = Arc::new(FaultClient::new(inner.clone(), FaultConfig::none()));
    // f1 fails once mid-stream (retried); f4 fails on every attempt of this run (reported).
    src.fail_path(&path("f1"), Fault::ReadErrorMidStream, 1);
    let attempts = syncengine_core::SyncOptions::default().attempts;
    src.fail_path(&path("f4"), Fault::ReadErrorMidStream, attempts);
    let dst = Arc::new(MemoryClient::new());
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path()).with_bandwidth(budget("128k"));
    let pair = SyncPair::new(src, dst.clone(), SyncMode::SourceToDestination);
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 5, "{stats:?}");
    assert_eq!(stats.errors, 1, "{stats:?}");
    for i in [0u8, 1, 2, 3, 5] {
        assert_eq!(
            dst.read_to_bytes(&path(&format!("f{i}"))).await.unwrap(),
            content(32 << 10, i)
        );
    }
    assert!(dst.stat(&path("f4")).await.unwrap_err().is_not_found());
    // The budget still serves the next run at its rate.
    let again = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(again.uploaded, 1, "{again:?}");
    assert_eq!(
        dst.read_to_bytes(&path("f4")).await.unwrap(),
        content(32 << 10, 4)
    );
}

/// Cancelling a run whose transfer waits for tokens (8 MiB at 1 KiB/s: over two hours) stops
/// it at once: the run returns `Cancelled`, nothing half-written is left, and the next run
/// with a usable limit completes.
#[tokio::test]
async fn a_cancel_while_waiting_for_tokens_stops_the_run_promptly() {
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::new());
    let data = content(8 << 20, 9);
    src.put(&path("big.bin"), data.clone()).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let engine = SyncEngine::new(state.path())
        .with_bandwidth(budget("1k"))
        .with_cancellation(cancel.clone());
    let pair = SyncPair::new(src.clone(), dst.clone(), SyncMode::SourceToDestination);
    let run = tokio::spawn({
        let pair = pair.clone();
        async move { engine.sync_pair(&pair).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel();
    // Not a speed assertion: a run that waited for its tokens would take hours.
    let result = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the cancelled run kept waiting for bandwidth")
        .unwrap();
    assert!(matches!(result, Err(SyncError::Cancelled)), "{result:?}");
    assert!(dst.stat(&path("big.bin")).await.unwrap_err().is_not_found());
    let left: Vec<_> = dst.list_all(None).await.unwrap();
    assert!(
        left.iter()
            .all(|e| e.path.as_str().starts_with(".syncengine/")),
        "{left:?}"
    );

    let engine = SyncEngine::new(state.path()).with_bandwidth(budget("64M"));
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    assert_eq!(dst.read_to_bytes(&path("big.bin")).await.unwrap(), data);
}
