//! The name-folding probe (issue 8, behaviour 9) against real WebDAV servers: Apache 2 +
//! mod_dav_fs and wsgidav, both on Linux disks that keep `Readme`/`readme` and NFC/NFD `café`
//! apart. The probe must find them sensitive, leave no probe file on the server, run once per
//! root (the answer is cached in the state), and fall back with a warning where the server
//! refuses its write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use syncengine_backend_local::LocalClient;
use syncengine_core::folding::{Folding, probe_dir, probe_folding};
use syncengine_core::identity::pair_id;
use syncengine_core::state::StateStore;
use syncengine_core::{
    RelPath, Side, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair,
};

use common::{APACHE, WSGIDAV};

/// Probe files anywhere in `client`'s root (the raw listing shows the engine's folder too).
async fn probe_files(client: &dyn StorageClient) -> Vec<String> {
    let dir = format!("{}/", probe_dir().unwrap());
    client
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path.into_string())
        .filter(|p| p.starts_with(&dir))
        .collect()
}

/// The probe on a real server: a case- and normalisation-sensitive root (both servers here
/// store names on a Linux disk) is found sensitive, and nothing of the probe stays.
async fn probe_finds_a_sensitive_root_and_leaves_nothing(client: Arc<dyn StorageClient>) {
    client
        .put(&RelPath::new("keep.txt").unwrap(), Bytes::from("k"))
        .await
        .unwrap();
    let folding = probe_folding(client.as_ref()).await.unwrap();
    assert_eq!(folding, Folding::default(), "{client}");
    let left: Vec<String> = client
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path.into_string())
        .collect();
    assert_eq!(left, ["keep.txt"], "{client}");
}

/// An engine run local → server probes the server root once (no warning), keeps no probe
/// file there, and a second run finds the answer in its state (still no warning, no file).
async fn an_engine_run_probes_the_root_cleanly(remote: Arc<dyn StorageClient>) {
    let local_dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let local = Arc::new(LocalClient::new(local_dir.path().join("root")));
    local
        .put(&RelPath::new("Readme").unwrap(), Bytes::from("one"))
        .await
        .unwrap();
    local
        .put(&RelPath::new("caf\u{e9}").unwrap(), Bytes::from("two"))
        .await
        .unwrap();
    let engine = SyncEngine::new(state.path());
    let pair = SyncPair::new(local.clone(), remote.clone(), SyncMode::TwoWay);
    for run in 0..2 {
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert!(
            !stats.warnings.iter().any(|w| w.contains("probe")),
            "run {run}: {stats:?}"
        );
        assert_eq!(stats.errors, 0, "run {run}: {stats:?}");
        assert!(probe_files(remote.as_ref()).await.is_empty(), "run {run}");
        assert!(probe_files(local.as_ref()).await.is_empty(), "run {run}");
    }
    assert_eq!(
        remote
            .read_to_bytes(&RelPath::new("Readme").unwrap())
            .await
            .unwrap(),
        "one"
    );
    // Both roots were probed and the answers kept with their identities.
    let id = pair_id(
        &local.location().await.unwrap(),
        &remote.location().await.unwrap(),
    );
    let store = StateStore::open_existing(state.path(), &id)
        .unwrap()
        .unwrap();
    for side in [Side::Source, Side::Destination] {
        let (identity, folding) = store.root_folding(side).unwrap().unwrap();
        assert!(identity.starts_with("id:"), "{side}: {identity}");
        assert_eq!(folding, Folding::default(), "{side}");
    }
}

/// A root where the probe cannot write (a file sits where its folder must go, so the server
/// refuses the write, as a read-only share would): the run says it could not probe, assumes
/// what the client declares, and syncs the rest; the blocking file stays as it was.
async fn a_probe_the_server_refuses_falls_back_with_a_warning(remote: Arc<dyn StorageClient>) {
    let blocker = probe_dir().unwrap();
    remote
        .put(&blocker, Bytes::from("in the way"))
        .await
        .unwrap();
    assert!(probe_folding(remote.as_ref()).await.is_err());
    let local_dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let local = Arc::new(LocalClient::new(local_dir.path().join("root")));
    local
        .put(&RelPath::new("a.txt").unwrap(), Bytes::from("a"))
        .await
        .unwrap();
    let engine = SyncEngine::new(state.path());
    let pair = SyncPair::new(local, remote.clone(), SyncMode::TwoWay);
    let stats = engine.sync_pair(&pair).await.unwrap();
    let warnings: Vec<&String> = stats
        .warnings
        .iter()
        .filter(|w| w.contains("could not probe"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stats:?}");
    assert!(
        warnings[0].contains("destination")
            && warnings[0].contains("assuming what the backend declares"),
        "{}",
        warnings[0]
    );
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    assert_eq!(remote.read_to_bytes(&blocker).await.unwrap(), "in the way");
}

#[tokio::test]
async fn apache_root_is_probed_sensitive_and_keeps_no_probe_file() {
    let Some(client) = common::fresh(APACHE).await else {
        return;
    };
    probe_finds_a_sensitive_root_and_leaves_nothing(client).await;
}

#[tokio::test]
async fn wsgidav_root_is_probed_sensitive_and_keeps_no_probe_file() {
    let Some(client) = common::fresh(WSGIDAV).await else {
        return;
    };
    probe_finds_a_sensitive_root_and_leaves_nothing(client).await;
}

#[tokio::test]
async fn an_engine_run_probes_an_apache_root_cleanly() {
    let Some(client) = common::fresh(APACHE).await else {
        return;
    };
    an_engine_run_probes_the_root_cleanly(client).await;
}

#[tokio::test]
async fn an_engine_run_probes_a_wsgidav_root_cleanly() {
    let Some(client) = common::fresh(WSGIDAV).await else {
        return;
    };
    an_engine_run_probes_the_root_cleanly(client).await;
}

#[tokio::test]
async fn a_probe_apache_refuses_falls_back_with_a_warning() {
    let Some(client) = common::fresh(APACHE).await else {
        return;
    };
    a_probe_the_server_refuses_falls_back_with_a_warning(client).await;
}

#[tokio::test]
async fn a_probe_wsgidav_refuses_falls_back_with_a_warning() {
    let Some(client) = common::fresh(WSGIDAV).await else {
        return;
    };
    a_probe_the_server_refuses_falls_back_with_a_warning(client).await;
}
