//! Azure (Azurite) blob names: the listing keeps the order it claims even with names that
//! are stored encoded (`\` → `＼`, rclone's way), and blobs whose names cannot be a path
//! here (`a//b`, a `/` right after the root's prefix, a folder marker with content) are reported as unknown and skipped while the rest syncs. Folder markers
//! (`dir/`, and the root's own) are folders, not files. Odd names are put with raw requests
//! signed by object_store's `AzureAuthorizer` (object_store's `Path` cannot hold them).

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::azure::{AzureAccessKey, AzureAuthorizer, AzureCredential};
use object_store::client::HttpRequestBody;
use syncengine_backend_local::LocalClient;
use syncengine_core::{RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair};

use common::AZURITE;

/// Azurite's well-known account and key.
const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Percent-encodes a blob name for a URL path, keeping `/` and `.` (curl `--path-as-is`
/// sends `a//b` literally).
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

/// Signs `method` on the raw blob `key` and runs it with curl; returns (status, body).
fn raw(method: &str, key: &str, body: Option<&str>) -> (u16, String) {
    let url = format!(
        "{}/{ACCOUNT}/test/{}",
        common::endpoint(AZURITE),
        url_path(key)
    );
    let mut request = http::Request::builder()
        .method(method)
        .uri(url.as_str())
        .header("x-ms-blob-type", "BlockBlob");
    if let Some(b) = body {
        request = request.header("content-length", b.len().to_string());
    }
    let mut request = request.body(HttpRequestBody::empty()).unwrap();
    let credential = AzureCredential::AccessKey(AzureAccessKey::try_new(KEY).unwrap());
    AzureAuthorizer::new(&credential, ACCOUNT)
        .try_authorize(&mut request)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new("curl");
    // No Content-Type (curl adds one to a body): it is part of what is signed.
    cmd.args(["-s", "-w", "\n%{http_code}", "--path-as-is", "-X", method]);
    cmd.args(["-H", "Content-Type:"]);
    for (name, value) in request.headers() {
        if name != "content-length" {
            cmd.arg("-H")
                .arg(format!("{name}: {}", value.to_str().unwrap()));
        }
    }
    if let Some(b) = body {
        let file = dir.path().join("body");
        std::fs::write(&file, b).unwrap();
        cmd.arg("--data-binary").arg(format!("@{}", file.display()));
    }
    let out = cmd.arg(&url).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_owned())
}

fn put(key: &str, body: &str) {
    let (status, answer) = raw("PUT", key, Some(body));
    assert_eq!(status, 201, "PUT {key:?}: {answer}");
}

fn get(key: &str) -> String {
    let (status, body) = raw("GET", key, None);
    assert_eq!(status, 200, "GET {key:?}: {body}");
    body
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

/// (paths listed, unknown paths reported), leaving out the engine's own folder.
async fn listing(client: &dyn StorageClient) -> (Vec<String>, Vec<String>) {
    let mut listed = Vec::new();
    let mut unknown = Vec::new();
    let mut list = client.list(None);
    while let Some(item) = list.next().await {
        match item {
            Ok(e) if !e.path.as_str().starts_with(".syncengine") => {
                listed.push(e.path.into_string());
            }
            Ok(_) => {}
            Err(e) if e.is_unlisted() => unknown.push(e.unlisted_key().unwrap_or_default()),
            Err(e) => panic!("the listing failed: {e}"),
        }
    }
    (listed, unknown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backslash_names_keep_the_claimed_order() {
    let Some(builder) = common::azurite_builder() else {
        return;
    };
    let client: Arc<dyn StorageClient> = Arc::new(builder.build().unwrap());
    // Stored as `a＼b` (U+FF3C, bytes EF BC BC) and `‛＼` for a literal `＼`: after `a]`
    // and `a^` on the server, before them once decoded (`\` is 0x5C).
    let names = ["a\\b", "a]", "a^", "b\u{FF3C}x", "b\\y", "b]"];
    for name in names {
        client
            .put(&RelPath::new(name).unwrap(), Bytes::from(name))
            .await
            .unwrap();
    }
    let (listed, unknown) = listing(client.as_ref()).await;
    assert!(unknown.is_empty(), "{unknown:?}");
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(
        sorted.len(),
        names.len(),
        "every name listed once: {listed:?}"
    );
    if client.capabilities().ordered_listing {
        assert_eq!(
            listed, sorted,
            "a listing that claims canonical order is in canonical order"
        );
    }

    // Two runs in a row sync everything and stop nowhere.
    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(&local_root).unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        client.clone(),
        Arc::new(LocalClient::new(&local_root)),
        SyncMode::TwoWay,
    );
    for run in 0..2 {
        let stats = engine
            .sync_pair(&pair)
            .await
            .unwrap_or_else(|e| panic!("run {run} stopped: {e}"));
        assert!(
            !stats
                .warnings
                .iter()
                .any(|w| w.contains("out of canonical order")),
            "run {run}: {:?}",
            stats.warnings
        );
        let mut want: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        assert_eq!(local_files(&local_root), want, "run {run}");
    }
    for name in names {
        assert_eq!(
            std::fs::read_to_string(local_root.join(name)).unwrap(),
            name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_blob_names_are_unknown_and_markers_are_folders() {
    let Some(builder) = common::azurite_builder() else {
        return;
    };
    let client = builder.build().unwrap();
    let prefix = client.config().prefix.clone();
    let client: Arc<dyn StorageClient> = Arc::new(client);
    let good = [
        ("a/b", "the real a/b"),
        ("ok.txt", "ok"),
        ("zz/last.txt", "last"),
    ];
    for (path, body) in good {
        client
            .put(&RelPath::new(path).unwrap(), Bytes::from(body))
            .await
            .unwrap();
    }
    // Folder markers: the root's own and two folders', one of a folder with files.
    for marker in ["", "a/", "empty/"] {
        put(&format!("{prefix}/{marker}"), "");
    }
    // Control characters: Azurite 3.37 answers every listing of a container holding one with
    // 500 (real Azure sends such names `Encoded="true"`), so they are not seeded here.
    let odd = ["a//b", "/lead", "full/"];
    for key in odd {
        put(&format!("{prefix}/{key}"), &format!("odd:{key}"));
    }

    let (mut listed, mut unknown) = listing(client.as_ref()).await;
    listed.sort();
    unknown.sort();
    assert_eq!(
        listed,
        ["a/b", "ok.txt", "zz/last.txt"],
        "markers are no files"
    );
    let mut want: Vec<&str> = odd.to_vec();
    want.sort();
    assert_eq!(unknown, want, "each odd name reported under its own name");

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
            "run {run}: {:?}",
            stats.warnings
        );
        assert_eq!(stats.deleted_source + stats.deleted_destination, 0);
        assert_eq!(
            local_files(&local_root),
            ["a/b", "ok.txt", "zz/last.txt"],
            "run {run}: the rest syncs"
        );
        assert_eq!(
            std::fs::read_to_string(local_root.join("a/b")).unwrap(),
            "the real a/b",
            "run {run}: `a//b` is never taken for `a/b`"
        );
    }
    // A local delete deletes only that file; odd blobs stay untouched.
    std::fs::remove_file(local_root.join("zz/last.txt")).unwrap();
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.unknown, odd.len() as u64);
    let (mut listed, _) = listing(client.as_ref()).await;
    listed.sort();
    assert_eq!(listed, ["a/b", "ok.txt"]);
    for key in odd {
        assert_eq!(get(&format!("{prefix}/{key}")), format!("odd:{key}"));
    }
}
