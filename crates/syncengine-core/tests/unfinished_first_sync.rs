//! Red team 11: after a first run that stopped partway (a side lost mid-run, exit 4; or a
//! cancel), the next run printed the initial-sync note again as if nothing had run. It is
//! still the initial sync (SEMANTICS, "Initial sync": the preference holds until the pair's
//! first plan has run; one cut short has not, so an explicit `--initial` keeps applying to
//! the files not synced yet instead of half of them being deleted and half copied back), but
//! the note now says the first sync did not finish, and that this run goes on with it.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::testing::{FaultClient, FaultConfig, Op};
use syncengine_core::{
    MemoryClient, RelPath, StorageClientExt, SyncEngine, SyncError, SyncMode, SyncOptions, SyncPair,
};
use tokio_util::sync::CancellationToken;

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

const FILES: usize = 30;

/// The synced files on `client` (the engine's own files left out).
fn synced(client: &MemoryClient) -> usize {
    client
        .files()
        .keys()
        .filter(|p| p.as_str().starts_with('f'))
        .count()
}

#[tokio::test]
async fn the_run_after_an_unfinished_first_sync_says_it_goes_on_with_it() {
    let state = tempfile::tempdir().unwrap();
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    for i in 0..FILES {
        s.put(&rel(&format!("f{i:02}.txt")), Bytes::from(format!("{i}")))
            .await
            .unwrap();
    }
    let options = SyncOptions::default().with_transfers(1);

    // The first run stops partway, after a few copies were done and recorded.
    let token = CancellationToken::new();
    let faulty = Arc::new(FaultClient::new(d.clone(), FaultConfig::none()));
    let stop = token.clone();
    faulty.before(Op::Write, rel("f05.txt"), Arc::new(move |_| stop.cancel()));
    let first = SyncEngine::new(state.path())
        .with_cancellation(token)
        .sync_pair(
            &SyncPair::new(s.clone(), faulty, SyncMode::TwoWay).with_options(options.clone()),
        )
        .await;
    assert!(matches!(first, Err(SyncError::Cancelled)), "{first:?}");
    let copied = synced(&d);
    assert!((1..FILES).contains(&copied), "{copied} copied");

    // The next run: still the initial sync, and it says so.
    let stats = SyncEngine::new(state.path())
        .sync_pair(&SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay).with_options(options))
        .await
        .unwrap();
    assert!(
        stats
            .warnings
            .iter()
            .any(|w| w.contains("Initial TWO_WAY sync")),
        "{:?}",
        stats.warnings
    );
    assert!(
        stats
            .warnings
            .iter()
            .any(|w| w.contains("first sync did not finish")),
        "the note reads as if nothing had run: {:?}",
        stats.warnings
    );
    assert_eq!(synced(&d), FILES);
}
