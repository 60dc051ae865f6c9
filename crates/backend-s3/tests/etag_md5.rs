//! ETags that are not MD5s (SSE-KMS and SSE-C buckets): declared with
//! `with_etag_is_md5(false)` / `SYNCENGINE_S3_ETAG_IS_MD5=0`, or detected by the client when
//! an upload's single-part ETag is not the MD5 of what it sent. A proxy in front of moto
//! rewrites every ETag (headers and listings) into another hex string of the same length, as
//! an SSE-KMS bucket answers.

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use syncengine_backend_local::LocalClient;
use syncengine_backend_s3::{S3Builder, S3Client, StoreKind};
use syncengine_core::{RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair};
use syncengine_test_proxy::{Matcher, Proxy};

use common::MOTO;

fn moto_at(endpoint: &str, prefix: &str, etag_is_md5: Option<bool>) -> S3Client {
    let (id, secret) = common::s3_keys();
    let mut b = S3Builder::for_store(StoreKind::S3, "test")
        .with_prefix(prefix)
        .with_endpoint(endpoint)
        .with_region("us-east-1")
        .with_credentials(id, secret)
        .with_allow_http(true);
    if let Some(md5) = etag_is_md5 {
        b = b.with_etag_is_md5(md5);
    }
    b.build().unwrap()
}

/// Shifts every hex digit of each 32-digit ETag in `answer` (`ETag: "…"` headers and
/// `<ETag>` elements, quoted or `&quot;`-escaped): same length, not the MD5 any more.
fn scramble_etags(answer: &mut [u8]) {
    let mut i = 0;
    while i + 4 <= answer.len() {
        let at_tag = answer[i..].starts_with(b"ETag") || answer[i..].starts_with(b"etag");
        if !at_tag {
            i += 1;
            continue;
        }
        // The first run of 32 hex digits within the next 24 bytes.
        let from = i + 4;
        let window_end = (from + 24).min(answer.len());
        let Some(start) = (from..window_end).find(|&j| answer[j].is_ascii_hexdigit()) else {
            i = from;
            continue;
        };
        let run = answer[start..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if run == 32 {
            for b in &mut answer[start..start + 32] {
                *b = match *b {
                    b'0'..=b'8' | b'a'..=b'e' | b'A'..=b'E' => *b + 1,
                    b'9' => b'a',
                    _ => b'0',
                };
            }
        }
        i = start + run;
    }
}

#[test]
fn scrambling_keeps_the_length() {
    let mut a = b"HTTP/1.1 200 OK\r\nETag: \"d41d8cd98f00b204e9800998ecf8427e\"\r\n\r\n<ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag>".to_vec();
    let n = a.len();
    scramble_etags(&mut a);
    assert_eq!(a.len(), n);
    let s = String::from_utf8(a).unwrap();
    assert!(s.contains("\"e52e9dea9011c315fa911aa9fd09538f\""), "{s}");
    assert!(
        s.contains("&quot;123456789abcdef0123456789abcdef0&quot;"),
        "{s}"
    );
}

async fn hashes_listed(client: &dyn StorageClient) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut list = client.list(None);
    while let Some(item) = list.next().await {
        let e = item.unwrap();
        if !e.path.as_str().starts_with(".syncengine/") {
            out.push((e.path.into_string(), e.hash.is_some()));
        }
    }
    out
}

/// The client finds out from its first upload, and then lists no hashes: a download of a
/// file another machine put there is not checked against a "hash" that is not one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_that_are_not_md5s_are_detected() {
    if !common::up(MOTO) {
        return;
    }
    let endpoint = common::endpoint(MOTO);
    let proxy = Proxy::start(&endpoint).unwrap();
    proxy.edit_answers(Matcher::any(), scramble_etags);
    let prefix = common::fresh_prefix("kms");
    let kms = Arc::new(moto_at(&proxy.url(), &prefix, None));
    let other_machine = moto_at(&endpoint, &prefix, None);
    assert!(kms.capabilities().etag_is_md5, "S3's default");

    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(&local_root).unwrap();
    std::fs::write(local_root.join("mine.txt"), "from this machine").unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        kms.clone(),
        SyncMode::TwoWay,
    );
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
    assert_eq!(stats.uploaded, 1);
    assert!(
        !kms.capabilities().etag_is_md5 && kms.capabilities().listed_hash.is_none(),
        "the upload's ETag was not its MD5"
    );
    assert!(!kms.etag_is_md5());

    other_machine
        .put(
            &RelPath::new("theirs.txt").unwrap(),
            Bytes::from("from elsewhere"),
        )
        .await
        .unwrap();
    assert_eq!(
        hashes_listed(kms.as_ref()).await,
        [
            ("mine.txt".to_owned(), false),
            ("theirs.txt".to_owned(), false)
        ]
    );
    for run in 0..2 {
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(stats.errors, 0, "run {run}: {:?}", stats.error_messages);
    }
    assert_eq!(
        std::fs::read_to_string(local_root.join("theirs.txt")).unwrap(),
        "from elsewhere"
    );
    // Through moto directly, ETags are MD5s and stay so.
    other_machine
        .put(&RelPath::new("x").unwrap(), Bytes::from("x"))
        .await
        .unwrap();
    assert!(other_machine.etag_is_md5());
}

/// Declared from the start: no hash is ever listed, and downloads work on the first run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_declared_not_md5s() {
    if !common::up(MOTO) {
        return;
    }
    let endpoint = common::endpoint(MOTO);
    let proxy = Proxy::start(&endpoint).unwrap();
    proxy.edit_answers(Matcher::any(), scramble_etags);
    let prefix = common::fresh_prefix("kms-declared");
    let other_machine = moto_at(&endpoint, &prefix, None);
    other_machine
        .put(
            &RelPath::new("theirs.txt").unwrap(),
            Bytes::from("from elsewhere"),
        )
        .await
        .unwrap();
    let from_env = S3Builder::from_env_with(&format!("s3://test/{prefix}"), |name| match name {
        "SYNCENGINE_S3_ETAG_IS_MD5" => Some("0".to_owned()),
        "AWS_ENDPOINT_URL" => Some(proxy.url()),
        "AWS_ALLOW_HTTP" => Some("true".to_owned()),
        "AWS_ACCESS_KEY_ID" => Some(common::s3_keys().0),
        "AWS_SECRET_ACCESS_KEY" => Some(common::s3_keys().1),
        "AWS_REGION" => Some("us-east-1".to_owned()),
        _ => None,
    })
    .unwrap()
    .build()
    .unwrap();
    for kms in [
        Arc::new(moto_at(&proxy.url(), &prefix, Some(false))),
        Arc::new(from_env),
    ] {
        assert!(!kms.capabilities().etag_is_md5);
        assert_eq!(
            hashes_listed(kms.as_ref()).await,
            [("theirs.txt".to_owned(), false)]
        );
        let tmp = tempfile::tempdir().unwrap();
        let local_root = tmp.path().join("local");
        std::fs::create_dir_all(&local_root).unwrap();
        let engine = SyncEngine::new(tmp.path().join("state"));
        let pair = SyncPair::new(
            Arc::new(LocalClient::new(&local_root)),
            kms.clone(),
            SyncMode::TwoWay,
        );
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
        assert_eq!(
            std::fs::read_to_string(local_root.join("theirs.txt")).unwrap(),
            "from elsewhere"
        );
    }
}
