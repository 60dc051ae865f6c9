//! A local ↔ S3 (moto) pair under the service: the local root is watched, the bucket polled.
//! Needs moto on 127.0.0.1:9100 (`bash scripts/test-servers.sh start`); with `CI=true` a
//! missing server fails the test, elsewhere it is skipped with a message.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use syncengine_backend_local::LocalClient;
use syncengine_backend_s3::{S3Builder, StoreKind};
use syncengine_core::{RelPath, StorageClient, StorageClientExt, SyncMode, SyncPair};
use syncengine_service::{PairSpec, PairState, SyncService, Watching};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A moto client at a fresh prefix, or `None` (skip) when moto is down outside CI.
fn moto() -> Option<Arc<dyn StorageClient>> {
    let url = env_or("SYNCENGINE_TEST_S3_ENDPOINT", "http://127.0.0.1:9100");
    let authority = url
        .split("://")
        .nth(1)
        .unwrap_or(&url)
        .split('/')
        .next()
        .unwrap_or("");
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9100)));
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("S3 (moto) is not reachable on {addr} and CI=true");
        }
        eprintln!(
            "SKIPPED: S3 (moto) is not running on {addr}. Start the test servers with:\n    \
             bash scripts/test-servers.sh install && bash scripts/test-servers.sh start"
        );
        return None;
    }
    let client = S3Builder::for_store(StoreKind::S3, "test")
        .with_prefix(format!("t-service-{:016x}", rand::random::<u64>()))
        .with_endpoint(url)
        .with_region("us-east-1")
        .with_credentials(
            env_or("SYNCENGINE_TEST_S3_ACCESS_KEY_ID", "a"),
            env_or("SYNCENGINE_TEST_S3_SECRET_ACCESS_KEY", "b"),
        )
        .with_allow_http(true)
        .build()
        .expect("moto client");
    Some(Arc::new(client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_and_an_s3_root_stay_in_sync() {
    let Some(remote) = moto() else { return };
    let d = dirs();
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&d.a)),
        remote.clone(),
        SyncMode::TwoWay,
    );
    let spec = PairSpec::new("s3", pair)
        .with_debounce(debounce())
        .with_poll_interval(Duration::from_secs(1));
    let service = SyncService::with_options(&d.state, options()).unwrap();
    service.add(spec).await.unwrap();
    wait_until("the first run", || {
        let s = service.status("s3").unwrap();
        s.last_run.is_some() && s.state == PairState::Idle
    })
    .await;
    assert_eq!(service.status("s3").unwrap().watching, Watching::Watched);

    // A local edit arrives in the bucket (watched side).
    write(&d.a.join("docs/local.txt"), "from disk");
    let key = RelPath::new("docs/local.txt").unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(b) = remote.read_to_bytes(&key).await
            && b.as_ref() == b"from disk"
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the local edit did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A remote edit arrives on disk (polled side).
    remote
        .put(&RelPath::new("docs/remote.txt").unwrap(), "from s3".into())
        .await
        .unwrap();
    wait_until("the remote edit to arrive", || {
        read(&d.a.join("docs/remote.txt")).as_deref() == Some("from s3")
    })
    .await;
    service.shutdown().await;
}
