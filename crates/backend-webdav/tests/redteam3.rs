//! Red-team (issue 8, round 3): a delete propagated to a WebDAV server moves the file to the
//! trash with a `MOVE` that names no version (no `If` header), so a version another machine
//! saves between the engine's check and the `MOVE` goes to the trash instead — the D1 race
//! that S3 fixed with a conditional delete (2221032).
//!
//! A small proxy on 127.0.0.1 in front of the Apache test server holds the engine's `MOVE` of
//! `doc.txt` until the other machine's save (sent straight to the server) is done.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use syncengine_backend_local::LocalClient;
use syncengine_core::{
    RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair, WriteMode,
    WriteOptions, bytes_stream,
};
use syncengine_test_proxy::{Matcher, Proxy};

use common::{APACHE, dav};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_saved_during_a_trash_move_stays_at_its_path() {
    let Some(url) = common::server_url(APACHE) else {
        return;
    };
    let proxy = Proxy::start(&url).unwrap();
    let dir = format!("syncengine-tests/redteam3-{:016x}", rand::random::<u64>());
    let through_proxy = Arc::new(dav(&format!("{}/{dir}", proxy.url())));
    let other_machine = dav(&format!("{}/{dir}", url.trim_end_matches('/')));

    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(&local_root).unwrap();
    for i in 0..5 {
        std::fs::write(local_root.join(format!("keep{i}.txt")), "k").unwrap();
    }
    std::fs::write(local_root.join("doc.txt"), "version 1\n").unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        through_proxy.clone(),
        SyncMode::TwoWay,
    );
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 6, "{stats:?}");

    // The laptop deletes doc.txt; the run checks the server's doc.txt (still version 1) and
    // moves it to the trash — held by the proxy while another machine saves version 2.
    std::fs::remove_file(local_root.join("doc.txt")).unwrap();
    proxy.hold(Matcher::method("MOVE").path_ends_with("/doc.txt"));
    let run = {
        let (engine, pair) = (engine.clone(), pair.clone());
        tokio::spawn(async move { engine.sync_pair(&pair).await })
    };
    assert!(
        proxy.held_within(1, Duration::from_secs(30)).await,
        "the engine never moved doc.txt"
    );
    let saved = "version 2, saved on the other machine meanwhile\n";
    other_machine
        .write_opts(
            &RelPath::new("doc.txt").unwrap(),
            bytes_stream(Bytes::from(saved)),
            WriteOptions::default().with_mode(WriteMode::Overwrite),
        )
        .await
        .unwrap();
    proxy.release();
    let stats = run.await.unwrap();
    let at_path = other_machine
        .read_to_bytes(&RelPath::new("doc.txt").unwrap())
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    assert_eq!(
        at_path.as_deref(),
        Some(saved),
        "the version saved during the delete went to the trash and the delete was reported \
         (run: {stats:?})"
    );
}
