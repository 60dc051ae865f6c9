//! Red-team (issue 9, F2): wsgidav mangles `?` and `;` in a MOVE's `Destination`, so names
//! with them are written with one direct PUT to the final name, and wsgidav writes the body in
//! place as it arrives. An upload that fails half-way must not leave the half at the name,
//! where the next run would take it for a user's change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use syncengine_backend_webdav::{WebDavBuilder, WebDavClient};
use syncengine_core::timeouts::Timeouts;
use syncengine_core::{
    Error, RelPath, StorageClient, StorageClientExt, WriteMode, WriteOptions, bytes_stream,
};
use syncengine_test_proxy::{Direction, Matcher, Proxy};

use common::{WSGIDAV, dav};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn dav_through(proxy: &Proxy, root: &str) -> WebDavClient {
    let mut builder = WebDavBuilder::from_env()
        .with_url(format!("{}/{root}", proxy.url()))
        .with_allow_insecure_basic(true)
        .with_timeouts(Timeouts {
            connect: Duration::from_secs(5),
            idle: Duration::from_secs(2),
        });
    if std::env::var(syncengine_backend_webdav::ENV_USER).is_err() {
        builder = builder.with_credentials("dav", "davpass");
    }
    builder.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wsgidav_a_direct_upload_cut_half_way_leaves_no_half_file() {
    let Some(url) = common::server_url(WSGIDAV) else {
        return;
    };
    let root = format!("syncengine-tests/cut-direct-{:016x}", rand::random::<u64>());
    let proxy = Proxy::start(&url).unwrap();
    let client = dav_through(&proxy, &root);
    let direct = dav(&format!("{}/{root}", url.trim_end_matches('/')));
    direct.put(&p("c;d.bin"), Bytes::from("old")).await.unwrap();
    let full: Bytes = (0..1usize << 20)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    // The server gets the head and about 200 KB of the body, then nothing more.
    proxy.stall_after(Matcher::method("PUT"), Direction::Request, 200_000);
    for (name, mode) in [
        ("a?b.bin", WriteMode::Create),
        ("c;d.bin", WriteMode::Overwrite),
    ] {
        let put = tokio::time::timeout(
            Duration::from_secs(60),
            client.write_opts(
                &p(name),
                bytes_stream(full.clone()),
                WriteOptions::default()
                    .with_mode(mode)
                    .with_size_hint(full.len() as u64),
            ),
        )
        .await
        .expect("a silent upload hung instead of failing");
        assert!(put.is_err(), "{name}: an upload cut half-way succeeded");
        match direct.read_to_bytes(&p(name)).await {
            Err(Error::NotFound { .. }) => {}
            Ok(b) => assert!(
                b == full || b == "old",
                "{name}: a half file ({} of {} bytes) was left at the name",
                b.len(),
                full.len()
            ),
            Err(e) => panic!("{name}: {e}"),
        }
    }
    drop(proxy);
    for name in ["a?b.bin", "c;d.bin"] {
        let _ = direct.delete(&p(name)).await;
    }
}

/// The run after a cut upload copies the file again, and the half file never reaches the
/// other side as a version of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wsgidav_the_run_after_a_cut_direct_upload_copies_the_file_again() {
    let Some(url) = common::server_url(WSGIDAV) else {
        return;
    };
    let root = format!("syncengine-tests/cut-rerun-{:016x}", rand::random::<u64>());
    let proxy = Proxy::start(&url).unwrap();
    let remote = std::sync::Arc::new(dav_through(&proxy, &root));
    let direct = dav(&format!("{}/{root}", url.trim_end_matches('/')));
    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(&local_root).unwrap();
    let full: Vec<u8> = (0..1usize << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(local_root.join("a?b.bin"), &full).unwrap();
    std::fs::write(local_root.join("plain.txt"), "plain").unwrap();
    let engine = syncengine_core::SyncEngine::new(tmp.path().join("state"));
    let pair = syncengine_core::SyncPair::new(
        std::sync::Arc::new(syncengine_backend_local::LocalClient::new(&local_root)),
        remote,
        syncengine_core::SyncMode::TwoWay,
    );
    proxy.stall_after(
        Matcher::method("PUT").path_contains("/a%3Fb.bin"),
        Direction::Request,
        200_000,
    );
    let first = tokio::time::timeout(Duration::from_secs(120), engine.sync_pair(&pair))
        .await
        .expect("the run hung");
    proxy.clear();
    let stats = engine.sync_pair(&pair).await.unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&local_root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".syncengine")
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["a?b.bin", "plain.txt"],
        "the half file came back as a version of its own (first run {first:?}, second {stats:?})"
    );
    assert_eq!(std::fs::read(local_root.join("a?b.bin")).unwrap(), full);
    assert_eq!(
        direct.read_to_bytes(&p("a?b.bin")).await.unwrap(),
        full,
        "second run {stats:?}"
    );
    drop(proxy);
    for name in ["a?b.bin", "plain.txt"] {
        let _ = direct.delete(&p(name)).await;
    }
}
