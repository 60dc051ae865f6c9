//! Pair ids follow the resolved location: the same `s3://bucket/prefix` on another endpoint is
//! another pair (its base is never applied there), and rotated credentials keep the pair.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use syncengine_backend_s3::{S3Builder, StoreKind};
use syncengine_core::{RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair};

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

#[cfg(all(feature = "s3", feature = "azure", feature = "gcs"))]
#[tokio::test]
async fn locations_name_endpoint_bucket_and_prefix_but_no_credentials() {
    let s3 = |endpoint: Option<&str>, key: &str| {
        let mut b = S3Builder::for_store(StoreKind::S3, "photos")
            .with_prefix("2024/trip")
            .with_region("eu-west-1")
            .with_credentials(key, format!("secret-{key}"))
            .with_allow_http(true);
        if let Some(e) = endpoint {
            b = b.with_endpoint(e);
        }
        b.build().unwrap()
    };
    let aws = s3(None, "AKIA1").location().await.unwrap();
    assert_eq!(
        aws.to_string(),
        "s3://s3.eu-west-1.amazonaws.com:443/photos/2024/trip"
    );
    assert_eq!(
        aws,
        s3(None, "AKIA2").location().await.unwrap(),
        "key rotation"
    );
    let moto = s3(Some("http://127.0.0.1:9100"), "a")
        .location()
        .await
        .unwrap();
    let weed = s3(Some("http://127.0.0.1:9400/"), "a")
        .location()
        .await
        .unwrap();
    assert_eq!(moto.to_string(), "s3://127.0.0.1:9100/photos/2024/trip");
    assert_ne!(moto, weed);
    assert!(!format!("{moto}{aws}").contains("secret"));

    let az = |account: &str, key: &str| {
        S3Builder::for_store(StoreKind::Azure, "box")
            .with_credentials(account, key)
            .build()
            .unwrap()
    };
    let a1 = az("acct1", "a2V5MQ==").location().await.unwrap();
    assert_eq!(
        a1.to_string(),
        "az://acct1.blob.core.windows.net:443/acct1/box"
    );
    assert_eq!(a1, az("acct1", "a2V5Mg==").location().await.unwrap());
    assert_ne!(a1, az("acct2", "a2V5MQ==").location().await.unwrap());

    let gcs = S3Builder::for_store(StoreKind::Gcs, "b")
        .with_prefix("p")
        .with_skip_signature(true)
        .build()
        .unwrap();
    assert_eq!(
        gcs.location().await.unwrap().to_string(),
        "gs://storage.googleapis.com:443/b/p"
    );
}

/// The same URL `s3://test/<prefix>` on moto and on SeaweedFS: two storages, two pairs. (With
/// ids made from the URL alone, the second run applied moto's base to SeaweedFS and deleted
/// the files SeaweedFS lacked from the local side.)
#[tokio::test]
async fn the_same_url_on_another_endpoint_is_another_pair() {
    let (Some(moto), Some(weed)) = (common::moto_builder(), common::seaweed_builder(false)) else {
        return;
    };
    let prefix = common::fresh_prefix("same-url");
    let moto: Arc<dyn StorageClient> = Arc::new(moto.with_prefix(&prefix).build().unwrap());
    let weed: Arc<dyn StorageClient> = Arc::new(weed.with_prefix(&prefix).build().unwrap());
    assert_eq!(moto.to_string(), weed.to_string(), "one URL");

    let (local, _dir) = common::local().await;
    for i in 0..10 {
        local
            .put(&rel(&format!("f{i}.txt")), Bytes::from(format!("file {i}")))
            .await
            .unwrap();
    }
    // SeaweedFS already holds six of the files at that URL.
    for i in 0..6 {
        weed.put(&rel(&format!("f{i}.txt")), Bytes::from(format!("file {i}")))
            .await
            .unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let on_moto = SyncPair::new(local.clone(), moto.clone(), SyncMode::TwoWay);
    engine.sync_pair(&on_moto).await.unwrap();

    let on_weed = SyncPair::new(local.clone(), weed.clone(), SyncMode::TwoWay);
    assert_ne!(on_moto.id().await.unwrap(), on_weed.id().await.unwrap());
    let stats = engine.sync_pair(&on_weed).await.unwrap();
    assert_eq!(
        stats.deleted_source + stats.deleted_destination,
        0,
        "{stats:?}"
    );
    assert_eq!(stats.uploaded, 4);
    let user = |c: &Arc<dyn StorageClient>| {
        let c = c.clone();
        async move {
            c.list_all(None)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| !e.path.as_str().starts_with(".syncengine/"))
                .count()
        }
    };
    assert_eq!(user(&local).await, 10);
    assert_eq!(user(&weed).await, 10);
}

/// Rotating the access key is not a new pair: the base stays and deletions propagate.
#[tokio::test]
async fn a_rotated_key_keeps_the_pair_and_its_base() {
    let Some(builder) = common::moto_builder() else {
        return;
    };
    let prefix = common::fresh_prefix("rotate");
    let with_key = |id: &str, secret: &str| -> Arc<dyn StorageClient> {
        Arc::new(
            builder
                .clone()
                .with_prefix(&prefix)
                .with_credentials(id, secret)
                .build()
                .unwrap(),
        )
    };
    let (local, _dir) = common::local().await;
    for i in 0..4 {
        local
            .put(&rel(&format!("f{i}.txt")), Bytes::from(format!("file {i}")))
            .await
            .unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let before = SyncPair::new(
        local.clone(),
        with_key("old-key", "old-secret"),
        SyncMode::TwoWay,
    );
    engine.sync_pair(&before).await.unwrap();

    let after = SyncPair::new(
        local.clone(),
        with_key("new-key", "new-secret"),
        SyncMode::TwoWay,
    );
    assert_eq!(before.id().await.unwrap(), after.id().await.unwrap());
    local.delete(&rel("f0.txt")).await.unwrap();
    let stats = engine.sync_pair(&after).await.unwrap();
    assert_eq!(stats.deleted_destination, 1, "the base was lost: {stats:?}");
}
