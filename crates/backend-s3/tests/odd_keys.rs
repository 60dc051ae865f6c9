//! Object keys that cannot be a path here (`a//b`, `.` and `..` segments, a `/` right after
//! the root's prefix, control characters) are reported as unknown and skipped: the rest of
//! the root syncs, they are never taken for another path (`a//b` is not `a/b`), and nothing
//! is deleted on either side. object_store's `Path` cannot hold such keys, so they are put
//! with signed raw requests (curl).

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use syncengine_backend_local::LocalClient;
use syncengine_backend_s3::{S3Builder, StoreKind};
use syncengine_core::{RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair};

use common::{MOTO, SEAWEED, Server};

fn keys(server: Server) -> (String, String) {
    if server == SEAWEED {
        ("weedak".to_owned(), "weedsk".to_owned())
    } else {
        common::s3_keys()
    }
}

/// Percent-encodes a key for a URL path, keeping `/` and `.` as they are (with
/// `--path-as-is`, curl sends `a//b` and `a/../d` literally).
fn url_path(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// PUTs `body` under the raw `key` with a signed request; returns the HTTP status.
fn raw_put(server: Server, key: &str, body: &str) -> u16 {
    let (id, secret) = keys(server);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    std::fs::write(&file, body).unwrap();
    let url = format!("{}/test/{}", common::endpoint(server), url_path(key));
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--path-as-is",
        ])
        .args(["--aws-sigv4", "aws:amz:us-east-1:s3"])
        .args(["--user", &format!("{id}:{secret}"), "-T"])
        .arg(&file)
        .arg(&url)
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout)
        .parse()
        .expect("status")
}

/// GETs the raw `key`; returns the body (panics unless 200).
fn raw_get(server: Server, key: &str) -> String {
    let (id, secret) = keys(server);
    let url = format!("{}/test/{}", common::endpoint(server), url_path(key));
    common::curl(&[
        "--path-as-is",
        "--aws-sigv4",
        "aws:amz:us-east-1:s3",
        "--user",
        &format!("{id}:{secret}"),
        &url,
    ])
}

/// Every file below `root`, relative, sorted.
fn local_files(root: &FsPath) -> Vec<String> {
    fn walk(dir: &FsPath, root: &FsPath, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel.starts_with(".syncengine") {
                continue;
            }
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

async fn odd_keys_are_unknown(server: Server) {
    if !common::up(server) {
        return;
    }
    let prefix = common::fresh_prefix("oddkeys");
    let (id, secret) = keys(server);
    let client: Arc<dyn StorageClient> = Arc::new(
        S3Builder::for_store(StoreKind::S3, "test")
            .with_prefix(&prefix)
            .with_endpoint(common::endpoint(server))
            .with_region("us-east-1")
            .with_credentials(id, secret)
            .with_allow_http(true)
            .with_ordered_listing(server != SEAWEED)
            .with_encode_backslash(server == SEAWEED)
            .with_retries(8, std::time::Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    let good = [
        ("a/b", "the real a/b"),
        ("a/c.txt", "c"),
        ("ok.txt", "ok"),
        ("zz/last.txt", "last"),
    ];
    for (path, body) in good {
        client
            .put(&RelPath::new(path).unwrap(), Bytes::from(body))
            .await
            .unwrap();
    }
    // SeaweedFS's filer folds `//` and a leading `/` into one and refuses `.` and `..`
    // segments: there only control characters make a key that is not a path.
    let mut odd = vec!["ctl\u{1}x", "a/tab\tname", "a/del\u{7f}"];
    if server == MOTO {
        odd.extend(["a//b", "/lead", "a/./c.txt", "a/../ok.txt", "./dot"]);
    }
    for key in &odd {
        let status = raw_put(server, &format!("{prefix}/{key}"), &format!("odd:{key}"));
        assert_eq!(status, 200, "PUT {key:?}");
    }

    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(&local_root).unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        client.clone(),
        SyncMode::TwoWay,
    );
    for run in 0..2 {
        let stats = engine
            .sync_pair(&pair)
            .await
            .unwrap_or_else(|e| panic!("run {run}: the listing failed: {e}"));
        assert_eq!(
            stats.unknown,
            odd.len() as u64,
            "run {run}: every odd key is reported: {:?}",
            stats.warnings
        );
        assert_eq!(
            stats.deleted_source + stats.deleted_destination,
            0,
            "run {run}: nothing deleted"
        );
        let mut want: Vec<String> = good.iter().map(|(p, _)| (*p).to_owned()).collect();
        want.sort();
        assert_eq!(local_files(&local_root), want, "run {run}: the rest syncs");
        for (path, body) in good {
            assert_eq!(
                std::fs::read_to_string(local_root.join(path)).unwrap(),
                body,
                "run {run}: {path} is the real one, never an odd key's content"
            );
        }
        for key in &odd {
            assert_eq!(
                raw_get(server, &format!("{prefix}/{key}")),
                format!("odd:{key}"),
                "run {run}: {key:?} is untouched on the bucket"
            );
        }
    }
    let report = engine.sync_pair(&pair).await.unwrap().warnings.join("\n");
    assert!(
        report.contains("ctl"),
        "the run names the odd keys: {report}"
    );

    // A local change still syncs, and a local delete of a real file deletes only that file.
    std::fs::write(local_root.join("ok.txt"), "ok, changed").unwrap();
    std::fs::remove_file(local_root.join("zz/last.txt")).unwrap();
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.unknown, odd.len() as u64);
    let mut listed = Vec::new();
    let mut unknown = 0;
    let mut list = client.list(None);
    while let Some(item) = list.next().await {
        match item {
            Ok(e) if !e.path.as_str().starts_with(".syncengine") => {
                listed.push(e.path.into_string());
            }
            Ok(_) => {}
            Err(e) if e.is_unlisted() => unknown += 1,
            Err(e) => panic!("listing failed: {e}"),
        }
    }
    listed.sort();
    assert_eq!(unknown, odd.len());
    assert_eq!(listed, ["a/b", "a/c.txt", "ok.txt"]);
    for key in &odd {
        assert_eq!(
            raw_get(server, &format!("{prefix}/{key}")),
            format!("odd:{key}")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_keys_are_unknown_moto() {
    odd_keys_are_unknown(MOTO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_keys_are_unknown_seaweedfs() {
    odd_keys_are_unknown(SEAWEED).await;
}

/// 1 100 keys with hostile names (more than one page of the default 1 000): the one name of
/// group `g` for pattern `i`.
fn hostile_name(g: usize, i: usize) -> String {
    let long = format!("long-{}", "ü".repeat(110));
    let names = [
        "a-b".to_owned(),
        "a/b".to_owned(),
        "a.b".to_owned(),
        "a0".to_owned(),
        "a b+c%41&d".to_owned(),
        "<x> \"q\" 'it'".to_owned(),
        "日本/語 é.txt".to_owned(),
        "100% + 1 = ?#".to_owned(),
        "🎉 emoji~".to_owned(),
        long,
    ];
    format!("g{g:03}/{}", names[i])
}

/// Our raw listing against object_store's own `list`, key by key: every key object_store
/// lists appears exactly once, decoded the same; keys it cannot parse (control characters:
/// its whole listing fails on them) are what ours reports as unknown, nothing else.
async fn raw_listing_matches_object_store(server: Server) {
    if !common::up(server) {
        return;
    }
    let prefix = common::fresh_prefix("rawcmp");
    let (id, secret) = keys(server);
    let client = S3Builder::for_store(StoreKind::S3, "test")
        .with_prefix(&prefix)
        .with_endpoint(common::endpoint(server))
        .with_region("us-east-1")
        .with_credentials(id, secret)
        .with_allow_http(true)
        .with_ordered_listing(false)
        .with_retries(8, std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let store = client.object_store().clone();
    let names: Vec<String> = (0..110)
        .flat_map(|g| (0..10).map(move |i| hostile_name(g, i)))
        .collect();
    futures::stream::iter(names.iter())
        .map(|name| {
            let store = store.clone();
            let location = object_store::path::Path::parse(format!("{prefix}/{name}")).unwrap();
            assert_eq!(
                location.as_ref(),
                format!("{prefix}/{name}"),
                "kept literally"
            );
            async move {
                object_store::ObjectStoreExt::put(&*store, &location, name.clone().into())
                    .await
                    .unwrap_or_else(|e| panic!("put {name:?}: {e}"));
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;

    let root = object_store::path::Path::parse(&prefix).unwrap();
    let strip = format!("{prefix}/");
    let theirs = |store: Arc<dyn object_store::ObjectStore>| {
        let root = root.clone();
        let strip = strip.clone();
        async move {
            let mut out = Vec::new();
            let mut list = store.list(Some(&root));
            while let Some(m) = list.next().await {
                let m = m?;
                out.push(m.location.as_ref().strip_prefix(&strip).unwrap().to_owned());
            }
            out.sort();
            Ok::<_, object_store::Error>(out)
        }
    };
    let ours = |client: &syncengine_backend_s3::S3Client| {
        let mut list = client.list(None);
        async move {
            let mut listed = Vec::new();
            let mut unknown = Vec::new();
            while let Some(item) = list.next().await {
                match item {
                    Ok(e) => listed.push(e.path.into_string()),
                    Err(e) if e.is_unlisted() => unknown.push(e.unlisted_key().unwrap()),
                    Err(e) => panic!("our listing failed: {e}"),
                }
            }
            listed.sort();
            unknown.sort();
            (listed, unknown)
        }
    };
    let mut want = names.clone();
    want.sort();
    let theirs_before = theirs(store.clone()).await.unwrap();
    assert_eq!(
        theirs_before, want,
        "object_store lists every key literally"
    );
    let (listed, unknown) = ours(&client).await;
    assert_eq!(listed.len(), want.len(), "each key once");
    assert_eq!(listed, theirs_before, "key by key, decoded the same");
    assert!(unknown.is_empty(), "{unknown:?}");

    // Keys object_store cannot parse: its listing fails as a whole, ours reports just them.
    let odd = ["g000/ctl\u{1}x", "g100/tab\tname", "g249/del\u{7f}"];
    for key in odd {
        assert_eq!(
            raw_put(server, &format!("{prefix}/{key}"), key),
            200,
            "{key:?}"
        );
    }
    assert!(
        theirs(store.clone()).await.is_err(),
        "object_store's list fails on a control character (why the raw listing exists)"
    );
    let (listed, unknown) = ours(&client).await;
    assert_eq!(listed, want, "the rest lists exactly as before");
    assert_eq!(
        unknown, odd,
        "only the keys object_store cannot parse are unknown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_listing_matches_object_store_moto() {
    raw_listing_matches_object_store(MOTO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_listing_matches_object_store_seaweedfs() {
    raw_listing_matches_object_store(SEAWEED).await;
}
