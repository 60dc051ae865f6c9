//! Red-team (issue 8, round 2): a WebDAV server that lists no ETags (nginx's dav-ext module
//! has no `getetag`) and a version another machine saves on the server while the engine's new
//! content is on its way.
//!
//! The engine replaces a file only while it is still the listed version
//! (`WriteMode::IfUnchanged`): local disk and SFTP check size, mtime and inode right before the
//! rename, WebDAV maps it to an ETag comparison. A file listed without an ETag cannot be
//! compared that way, the WebDAV client answers `Unsupported`, and the executor then falls
//! back to a plain `Overwrite` — which `MOVE`s over whatever the server holds by then. The
//! version the other machine saved during the upload is neither at its path nor in the trash
//! (the trash got the listed version, copied before the upload).
//!
//! A small proxy on 127.0.0.1 in front of the Apache test server removes `getetag` from every
//! `PROPFIND` answer (and `ETag` headers), and can hold the upload of the engine's temporary
//! file until the test lets it go.

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

/// The upload of one of the engine's temporary files.
fn temp_put() -> Matcher {
    Matcher::method("PUT").path_contains(".syncengine-tmp-")
}

/// Every file under the remote root (trash included), as (path, content).
async fn remote_files(client: &dyn StorageClient) -> Vec<(String, String)> {
    use futures::StreamExt;
    let mut out = Vec::new();
    let mut list = client.list(None);
    while let Some(e) = list.next().await {
        let e = e.unwrap();
        let body = client.read_to_bytes(&e.path).await.unwrap();
        out.push((
            e.path.to_string(),
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    // The trash is the engine's own folder: listings leave it out, so read it by prefix.
    let trash = RelPath::new(".syncengine/trash").unwrap();
    let mut list = client.list(Some(&trash));
    while let Some(e) = list.next().await {
        let Ok(e) = e else { break };
        let body = client.read_to_bytes(&e.path).await.unwrap();
        out.push((
            e.path.to_string(),
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    out
}

/// Local ↔ WebDAV, two-way. The local side edits `notes.txt`; while the engine uploads the new
/// content, another machine saves its own version of `notes.txt` on the server. That version
/// must survive: at its path, as a conflict copy, in the trash, or downloaded — anywhere.
async fn save_on_server_during_upload(no_etags: bool) {
    let Some(url) = common::server_url(APACHE) else {
        return;
    };
    let proxy = Proxy::start(&url).unwrap();
    if no_etags {
        common::hide_etags(&proxy);
    }
    let dir = format!("syncengine-tests/redteam2-{:016x}", rand::random::<u64>());
    let through_proxy = Arc::new(dav(&format!("{}/{dir}", proxy.url())));
    let other_machine = dav(&format!("{}/{dir}", url.trim_end_matches('/')));

    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(&local_root).unwrap();
    std::fs::write(local_root.join("notes.txt"), "version 1\n").unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        through_proxy.clone(),
        SyncMode::TwoWay,
    );
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    if no_etags {
        let listed = through_proxy
            .stat(&RelPath::new("notes.txt").unwrap())
            .await
            .unwrap();
        assert_eq!(listed.etag, None, "the proxy should hide ETags");
    }

    // The local edit, to be uploaded by the next run.
    std::fs::write(
        local_root.join("notes.txt"),
        "version 2, saved on this laptop\n",
    )
    .unwrap();
    proxy.hold(temp_put());
    let run = {
        let (engine, pair) = (engine.clone(), pair.clone());
        tokio::spawn(async move { engine.sync_pair(&pair).await })
    };
    assert!(
        proxy.held_within(1, Duration::from_secs(30)).await,
        "the engine never uploaded a temp file"
    );
    // Another machine (laptop B ↔ the same server) saves its version now.
    let other = "version 3, saved on the other machine meanwhile\n";
    other_machine
        .write_opts(
            &RelPath::new("notes.txt").unwrap(),
            bytes_stream(Bytes::from(other)),
            WriteOptions::default().with_mode(WriteMode::Overwrite),
        )
        .await
        .unwrap();
    proxy.release();
    let stats = run.await.unwrap();

    let remote = remote_files(&other_machine).await;
    let mut local = Vec::new();
    for entry in walk(&local_root) {
        local.push(std::fs::read_to_string(&entry).unwrap_or_default());
    }
    let survives = remote.iter().any(|(_, c)| c == other) || local.iter().any(|c| c == other);
    assert!(
        survives,
        "no_etags={no_etags}: the version saved on the server during the upload is gone \
         (neither at its path, nor a conflict copy, nor in the trash); run: {stats:?}; \
         server now holds {remote:?}"
    );
}

fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Control: with ETags, Apache's tagged `If` on the `MOVE` refuses the replace (412), and
/// the other machine's version stays.
#[tokio::test]
async fn a_version_saved_on_the_server_during_an_upload_survives_with_etags() {
    save_on_server_during_upload(false).await;
}

/// Without ETags the executor falls back to a plain overwrite: the other machine's version
/// is replaced and is nowhere (fails on 08c8d4b).
#[tokio::test]
async fn a_version_saved_on_the_server_during_an_upload_survives_without_etags() {
    save_on_server_during_upload(true).await;
}

/// After the last file of a folder is deleted (here: moved to the trash), the client removes
/// the folder if it is empty: a `PROPFIND` (empty?), then a `DELETE` of the collection — which
/// WebDAV servers carry out recursively. The delete is guarded by the collection's ETag only
/// "on servers that give collections one"; wsgidav gives none, so a file another machine
/// uploads into the folder between the check and the delete is deleted with it (not moved to
/// the trash, not reported).
#[tokio::test]
async fn a_file_uploaded_into_a_folder_being_pruned_survives_on_wsgidav() {
    let Some(url) = common::server_url(common::WSGIDAV) else {
        return;
    };
    let proxy = Proxy::start(&url).unwrap();
    let dir = format!(
        "syncengine-tests/redteam2-prune-{:016x}",
        rand::random::<u64>()
    );
    let through_proxy = Arc::new(dav(&format!("{}/{dir}", proxy.url())));
    let other_machine = dav(&format!("{}/{dir}", url.trim_end_matches('/')));

    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(local_root.join("sub")).unwrap();
    std::fs::write(local_root.join("sub/a.txt"), "a").unwrap();
    for n in ["x.txt", "y.txt", "z.txt"] {
        std::fs::write(local_root.join(n), n).unwrap();
    }
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        through_proxy.clone(),
        SyncMode::TwoWay,
    );
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 4, "{stats:?}");

    std::fs::remove_file(local_root.join("sub/a.txt")).unwrap();
    proxy.hold(Matcher::method("DELETE").path_ends_with("/sub/"));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let run = {
        let (engine, pair) = (engine.clone(), pair.clone());
        tokio::spawn(async move {
            let stats = engine.sync_pair(&pair).await;
            let _ = done_tx.send(());
            stats
        })
    };
    // A client that never deletes an unguarded collection sends no DELETE of `sub/` at all
    // (it moves the collection aside and deletes it there: `prune_aside.rs` holds those
    // requests): then the other machine's upload comes after the run, and makes `sub/` anew.
    let held = tokio::select! {
        biased;
        held = proxy.held_within(1, Duration::from_secs(60)) => {
            assert!(held, "the run neither sent the request nor ended");
            true
        }
        _ = done_rx => false,
    };
    let upload = "uploaded by the other machine into sub/";
    other_machine
        .write_opts(
            &RelPath::new("sub/new.txt").unwrap(),
            bytes_stream(Bytes::from(upload)),
            WriteOptions::default().with_mode(WriteMode::Create),
        )
        .await
        .unwrap();
    proxy.release();
    let stats = run.await.unwrap();
    let remote = remote_files(&other_machine).await;
    assert!(
        remote.iter().any(|(_, c)| c == upload),
        "(DELETE of sub/ sent: {held}) sub/new.txt, uploaded while the engine pruned sub/, was deleted with the folder; \
         run: {stats:?}; server holds {remote:?}"
    );
}

/// The raw members of the collection at `url` (its own entry included, temporary files too),
/// or `None` when the server answers 404.
async fn raw_members(url: &str) -> Option<Vec<String>> {
    let resp = reqwest::Client::new()
        .request(reqwest::Method::from_bytes(b"PROPFIND").unwrap(), url)
        .basic_auth("dav", Some("davpass"))
        .header("Depth", "1")
        .send()
        .await
        .unwrap();
    if resp.status().as_u16() == 404 {
        return None;
    }
    assert_eq!(resp.status().as_u16(), 207, "PROPFIND {url}");
    let body = resp.bytes().await.unwrap();
    let base = url::Url::parse(url).unwrap();
    Some(
        syncengine_backend_webdav::multistatus::parse(&body, &base)
            .unwrap()
            .into_iter()
            .map(|r| r.segments.join("/"))
            .collect(),
    )
}

fn precondition_failed<T>(result: &syncengine_core::Result<T>) -> bool {
    matches!(
        result,
        Err(syncengine_core::Error::PreconditionFailed { .. })
    )
}

/// `WriteMode::IfUnchanged` of a file listed without an ETag (the proxy hides Apache's) is
/// checked by size and mtime once the body is on the server, right before the `MOVE`: a
/// version another machine saved while the body was on its way is `PreconditionFailed` and
/// stays, with no temporary file left; the version that is there is replaced; a missing file
/// is not created. Never `Unsupported` (which made the engine overwrite unchecked).
#[tokio::test]
async fn if_unchanged_without_etags_is_checked_before_the_move() {
    let Some(url) = common::server_url(APACHE) else {
        return;
    };
    let proxy = Proxy::start(&url).unwrap();
    common::hide_etags(&proxy);
    let dir = format!(
        "syncengine-tests/redteam2-ifunchanged-{:016x}",
        rand::random::<u64>()
    );
    let client = dav(&format!("{}/{dir}", proxy.url()));
    let other_machine = dav(&format!("{}/{dir}", url.trim_end_matches('/')));
    let doc = RelPath::new("w/doc").unwrap();
    let if_unchanged = |entry: &syncengine_core::Entry| {
        WriteOptions::default()
            .with_mode(WriteMode::IfUnchanged(syncengine_core::Version::of(entry)))
    };

    client
        .put(&doc, Bytes::from("the listed version"))
        .await
        .unwrap();
    let listed = client.stat(&doc).await.unwrap();
    assert_eq!(listed.etag, None, "the proxy should hide ETags");

    // The body stops half way until the other machine has saved its version.
    let (reached_tx, reached_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let first = futures::stream::once(async { Ok(Bytes::from("the engine's new ")) });
    let rest = futures::stream::once(async move {
        let _ = reached_tx.send(());
        let _ = go_rx.await;
        Ok(Bytes::from("content"))
    });
    let body: syncengine_core::ByteStream =
        futures::StreamExt::boxed(futures::StreamExt::chain(first, rest));
    let write = client.write_opts(&doc, body, if_unchanged(&listed));
    let other = async {
        let _ = reached_rx.await;
        other_machine
            .put(&doc, Bytes::from("saved by the other machine meanwhile"))
            .await
            .unwrap();
        let _ = go_tx.send(());
    };
    let (written, ()) = futures::join!(write, other);
    assert!(precondition_failed(&written), "{written:?}");
    let now = client.read_to_bytes(&doc).await.unwrap();
    assert_eq!(&now[..], b"saved by the other machine meanwhile");
    let members = raw_members(&format!("{}/{dir}/w/", url.trim_end_matches('/')))
        .await
        .unwrap();
    assert!(
        members.iter().all(|m| !m.contains(".syncengine-tmp-")),
        "a refused IfUnchanged left its temporary file: {members:?}"
    );

    // The version that is there now is replaced.
    let current = client.stat(&doc).await.unwrap();
    client
        .write_opts(
            &doc,
            bytes_stream(Bytes::from("replaced")),
            if_unchanged(&current),
        )
        .await
        .unwrap();
    assert_eq!(&client.read_to_bytes(&doc).await.unwrap()[..], b"replaced");

    // A missing file is not created.
    let missing = RelPath::new("w/missing").unwrap();
    let mut gone = current.clone();
    gone.path = missing.clone();
    let result = client
        .write_opts(
            &missing,
            bytes_stream(Bytes::from("x")),
            if_unchanged(&gone),
        )
        .await;
    assert!(precondition_failed(&result), "{result:?}");
    assert!(client.stat(&missing).await.unwrap_err().is_not_found());
}

/// A rename onto a name wsgidav's `MOVE` mangles (`?`, `;`) goes through the client: copy,
/// then delete the source. A version another machine saves at the source while the copy is
/// on its way is not deleted: the rename fails with `PreconditionFailed` and the source keeps
/// the new version (the unconditional delete lost it).
#[tokio::test]
async fn a_rename_through_the_client_keeps_a_source_saved_during_the_copy_on_wsgidav() {
    let Some(url) = common::server_url(common::WSGIDAV) else {
        return;
    };
    let proxy = Proxy::start(&url).unwrap();
    let dir = format!(
        "syncengine-tests/redteam2-rename-{:016x}",
        rand::random::<u64>()
    );
    let client = Arc::new(dav(&format!("{}/{dir}", proxy.url())));
    let other_machine = dav(&format!("{}/{dir}", url.trim_end_matches('/')));
    let from = RelPath::new("src.txt").unwrap();
    let to = RelPath::new("q?;x.txt").unwrap();
    client.put(&from, Bytes::from("version 1")).await.unwrap();

    // Hold the copy's PUT to the mangled name (`?` is sent as %3F).
    proxy.hold(
        Matcher::method("PUT")
            .path_contains("%3F")
            .path_lacks(".syncengine-tmp-"),
    );
    let rename = {
        let (client, from, to) = (client.clone(), from.clone(), to.clone());
        tokio::spawn(async move {
            client
                .rename_opts(&from, &to, syncengine_core::TransferOptions::default())
                .await
        })
    };
    assert!(
        proxy.held_within(1, Duration::from_secs(30)).await,
        "the engine never uploaded a temp file"
    );
    let saved = "version 2, saved by the other machine during the copy";
    other_machine.put(&from, Bytes::from(saved)).await.unwrap();
    proxy.release();
    let result = rename.await.unwrap();
    assert!(precondition_failed(&result), "{result:?}");
    let source = other_machine.read_to_bytes(&from).await;
    assert!(
        source.as_deref().is_ok_and(|b| b == saved.as_bytes()),
        "the source saved during the copy was deleted: {source:?}"
    );
}

/// Pruning removes a folder the last delete emptied, both where the server gives collections
/// an ETag to guard the delete with (Apache: a `DELETE` with an `If` on it) and where it gives
/// none (wsgidav: moved aside, checked empty there, then deleted), leaving nothing aside.
#[tokio::test]
async fn an_emptied_folder_is_removed_with_or_without_a_collection_etag() {
    for server in [APACHE, common::WSGIDAV] {
        let Some(url) = common::server_url(server) else {
            continue;
        };
        let dir = format!(
            "syncengine-tests/redteam2-emptied-{:016x}",
            rand::random::<u64>()
        );
        let base = format!("{}/{dir}", url.trim_end_matches('/'));
        let client = dav(&base);
        let a = RelPath::new("sub/a.txt").unwrap();
        client.put(&a, Bytes::from("a")).await.unwrap();
        client
            .put(&RelPath::new("top.txt").unwrap(), Bytes::from("top"))
            .await
            .unwrap();
        client.delete(&a).await.unwrap();
        let sub = raw_members(&format!("{base}/sub/")).await;
        assert!(sub.is_none(), "{server:?}: sub/ now {sub:?}");
        let root = raw_members(&format!("{base}/")).await.unwrap();
        assert!(
            root.iter().all(|m| !m.contains(".syncengine-tmp-")),
            "{server:?}: something was left aside: {root:?}"
        );
    }
}
