//! A rename (the trash move) on S3 is a server-side copy, then a delete of the source. A
//! version another machine uploads in between must survive: the delete removes only the
//! version that was copied (`DeleteObject` with `If-Match`), and the rename then fails with
//! `PreconditionFailed`. A proxy on 127.0.0.1 holds one chosen request while the test
//! replaces the source directly on the server (moto and SeaweedFS).

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use syncengine_backend_s3::{S3Builder, S3Client, StoreKind};
use syncengine_core::{Error, RelPath, StorageClient, StorageClientExt};
use syncengine_test_proxy::{Matcher, Proxy};

use common::{MOTO, SEAWEED, Server};

/// Waits until the request the proxy holds has come.
async fn wait_held(proxy: &Proxy) {
    assert!(
        proxy.held_within(1, Duration::from_secs(30)).await,
        "the held request never came"
    );
}

fn client_at(server: Server, endpoint: &str, prefix: &str, copy_threshold: u64) -> S3Client {
    let (id, secret) = if server == SEAWEED {
        ("weedak".to_owned(), "weedsk".to_owned())
    } else {
        common::s3_keys()
    };
    S3Builder::for_store(StoreKind::S3, "test")
        .with_prefix(prefix)
        .with_endpoint(endpoint)
        .with_region("us-east-1")
        .with_credentials(id, secret)
        .with_allow_http(true)
        .with_ordered_listing(server != SEAWEED)
        .with_multipart_copy_threshold(copy_threshold)
        .build()
        .unwrap()
}

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// The source is replaced while the rename's delete is on its way: the new version stays,
/// the rename fails with `PreconditionFailed`, and the copy holds the version it copied.
async fn replaced_before_the_delete(server: Server) {
    if !common::up(server) {
        return;
    }
    let proxy = Proxy::start(&common::endpoint(server)).unwrap();
    let proxied = proxy.url();
    let prefix = common::fresh_prefix("rename-race");
    let limit = syncengine_backend_s3::COPY_OBJECT_LIMIT;
    let engine_side = Arc::new(client_at(server, &proxied, &prefix, limit));
    let other_machine = client_at(server, &common::endpoint(server), &prefix, limit);

    engine_side
        .put(&p("src.txt"), Bytes::from("version 1\n"))
        .await
        .unwrap();
    // Undisturbed, a rename removes its source.
    engine_side
        .put(&p("plain.txt"), Bytes::from("plain\n"))
        .await
        .unwrap();
    engine_side
        .rename(&p("plain.txt"), &p("plain-moved.txt"))
        .await
        .unwrap();
    assert!(
        engine_side
            .stat(&p("plain.txt"))
            .await
            .unwrap_err()
            .is_not_found()
    );

    // object_store's own delete: a bulk `POST ?delete` (DeleteObjects).
    proxy.hold(
        Matcher::method("DELETE")
            .path_contains("/src.txt")
            .or(Matcher::method("POST").path_contains("?delete")),
    );
    let rename = {
        let c = engine_side.clone();
        tokio::spawn(async move { c.rename(&p("src.txt"), &p("trash/src.txt")).await })
    };
    wait_held(&proxy).await;
    other_machine
        .put(&p("src.txt"), Bytes::from("version 2, another machine\n"))
        .await
        .unwrap();
    proxy.release();
    let result = rename.await.unwrap();
    assert!(
        matches!(result, Err(Error::PreconditionFailed { .. })),
        "{result:?}"
    );
    assert_eq!(
        other_machine.read_to_bytes(&p("src.txt")).await.unwrap(),
        Bytes::from("version 2, another machine\n"),
        "the version uploaded during the rename was deleted"
    );
    assert_eq!(
        other_machine
            .read_to_bytes(&p("trash/src.txt"))
            .await
            .unwrap(),
        Bytes::from("version 1\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_keeps_a_source_replaced_before_its_delete_moto() {
    replaced_before_the_delete(MOTO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_keeps_a_source_replaced_before_its_delete_seaweedfs() {
    replaced_before_the_delete(SEAWEED).await;
}

/// An object above the multipart-copy threshold is copied in parts. The source is replaced
/// (same size, other bytes) while the second part is on its way: the copy is aborted (no
/// target, not a mix of two versions), the rename fails and the new version stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_copy_of_a_source_replaced_midway_is_aborted() {
    if !common::up(MOTO) {
        return;
    }
    let proxy = Proxy::start(&common::endpoint(MOTO)).unwrap();
    let proxied = proxy.url();
    let prefix = common::fresh_prefix("rename-race-big");
    let part = 5 * 1024 * 1024;
    let engine_side = Arc::new(client_at(MOTO, &proxied, &prefix, part));
    let other_machine = client_at(MOTO, &common::endpoint(MOTO), &prefix, part);
    let len = 2 * part as usize + 7;
    let v1 = Bytes::from(vec![1u8; len]);
    let v2 = Bytes::from(vec![2u8; len]);
    other_machine.put(&p("big.bin"), v1).await.unwrap();

    proxy.hold(Matcher::method("PUT").path_contains("partNumber=2"));
    let rename = {
        let c = engine_side.clone();
        tokio::spawn(async move { c.rename(&p("big.bin"), &p("moved.bin")).await })
    };
    wait_held(&proxy).await;
    other_machine.put(&p("big.bin"), v2.clone()).await.unwrap();
    proxy.release();
    let result = rename.await.unwrap();
    assert!(
        matches!(result, Err(Error::PreconditionFailed { .. })),
        "{result:?}"
    );
    assert_eq!(
        other_machine.read_to_bytes(&p("big.bin")).await.unwrap(),
        v2
    );
    let moved = other_machine.stat(&p("moved.bin")).await;
    assert!(
        moved.as_ref().is_err_and(Error::is_not_found),
        "a copy mixing two versions was completed: {moved:?}"
    );
}
