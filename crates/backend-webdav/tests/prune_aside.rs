//! Emptied folders on WebDAV servers that give collections no ETag (wsgidav), and a folder a
//! file replaces (issue 8: nothing lost, and it converges).
//!
//! A `DELETE` of a collection is recursive, so the client never sends one to a collection a
//! file could still arrive in unseen. Where the server gives the collection no ETag to guard
//! the delete with, the client moves the emptied collection aside to a name of its own
//! (`.syncengine-tmp-dir-<hex>-<name>`), checks that it is still empty there, and only then
//! deletes it; a collection that is not empty there is moved back (or, when its name has been
//! taken meanwhile, left aside and reported at its name by every listing).
//!
//! The hostile cases run through a small proxy on 127.0.0.1 that can hold one chosen request
//! until the test has done what another machine would do in that moment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use syncengine_backend_local::LocalClient;
use syncengine_backend_webdav::WebDavClient;
use syncengine_core::{
    RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair, SyncStats,
};
use syncengine_test_proxy::{Matcher, Proxy};

use common::{APACHE, Server, WSGIDAV, dav};

/// Waits until `n` requests in all have been held.
async fn wait_held(proxy: &Proxy, n: u32) {
    assert!(
        proxy.held_within(n, Duration::from_secs(60)).await,
        "request {n} to hold never came"
    );
}

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// The raw members of the collection at `url` (temporary and engine names included, its own
/// entry left out) as (name, is a collection), or `None` when the server answers 404.
async fn raw_members(url: &str) -> Option<Vec<(String, bool)>> {
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
    let own = syncengine_backend_webdav::multistatus::decode_href(base.path(), &base)
        .unwrap()
        .0;
    Some(
        syncengine_backend_webdav::multistatus::parse(&body, &base)
            .unwrap()
            .into_iter()
            .filter(|r| r.segments != own)
            .map(|r| {
                (
                    r.segments.last().cloned().unwrap_or_default(),
                    r.is_collection,
                )
            })
            .collect(),
    )
}

/// Names below the collection at `url` that the client itself made (temp files and folders
/// moved aside), at any depth.
async fn leftovers(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![url.trim_end_matches('/').to_owned()];
    while let Some(d) = dirs.pop() {
        for (name, collection) in raw_members(&format!("{d}/")).await.unwrap_or_default() {
            if name.starts_with(".syncengine-tmp-") {
                out.push(format!("{d}/{name}"));
            } else if collection {
                dirs.push(format!("{d}/{name}"));
            }
        }
    }
    out
}

/// Removes a test's collection when the test fails half way, so that the folders it left
/// aside (which listings report as unknown) do not trouble other tests that list the shared
/// test area. A passing test leaves nothing aside anyway.
struct RemoveOnPanic(String);

impl Drop for RemoveOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let url = format!("{}/", self.0);
        // A thread of its own: this may run inside the test's runtime.
        let _ = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let _ = reqwest::Client::new()
                    .delete(url)
                    .basic_auth("dav", Some("davpass"))
                    .send()
                    .await;
            });
        })
        .join();
    }
}

/// A fresh random collection URL on `server`, or `None` when the server is down.
fn fresh_url(server: Server, tag: &str) -> Option<String> {
    let url = common::server_url(server)?;
    Some(format!(
        "{}/syncengine-tests/{tag}-{:016x}",
        url.trim_end_matches('/'),
        rand::random::<u64>()
    ))
}

/// Every file of a local tree (the engine's own folder left out), as (path, content).
fn local_files(root: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel.starts_with(".syncengine") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Every file the WebDAV client lists (the engine's own folder left out), as (path, content).
async fn remote_files(client: &dyn StorageClient) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in client.list_all(None).await.unwrap() {
        if e.path.as_str().starts_with(".syncengine/") {
            continue;
        }
        let body = client.read_to_bytes(&e.path).await.unwrap();
        out.push((
            e.path.to_string(),
            String::from_utf8(body.to_vec()).unwrap(),
        ));
    }
    out
}

fn quiet(stats: &SyncStats) -> bool {
    stats.uploaded == 0
        && stats.downloaded == 0
        && stats.deleted_source == 0
        && stats.deleted_destination == 0
        && stats.renamed_source == 0
        && stats.renamed_destination == 0
        && stats.conflicts == 0
        && stats.errors == 0
        && stats.unknown == 0
}

/// Local ↔ WebDAV, two-way. The local side empties the folder `sub` (its only file deleted);
/// `one_step`: in the same run a file named `sub` takes its place; else one run later. The
/// pair converges (both sides hold the file `sub`, the old `sub/a.txt` is in the server's
/// trash) within the runs the change needs, and a further run is idle.
async fn folder_emptied_then_replaced_by_a_file(server: Server, one_step: bool) {
    let Some(url) = fresh_url(server, "prune-typechange") else {
        return;
    };
    let remote = Arc::new(dav(&url));
    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(local_root.join("sub")).unwrap();
    std::fs::write(local_root.join("sub/a.txt"), "a in sub").unwrap();
    std::fs::write(local_root.join("keep.txt"), "keep").unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        remote.clone(),
        SyncMode::TwoWay,
    );
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 2, "{stats:?}");

    std::fs::remove_dir_all(local_root.join("sub")).unwrap();
    if !one_step {
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(
            (stats.deleted_destination, stats.errors),
            (1, 0),
            "{server:?}: the folder's last file goes: {stats:?}"
        );
    }
    std::fs::write(local_root.join("sub"), "a file where the folder was").unwrap();
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(
        (stats.uploaded, stats.errors, stats.unknown),
        (1, 0, 0),
        "{server:?} one_step={one_step}: the file replacing the emptied folder is uploaded \
         in this run: {stats:?}"
    );
    let want = vec![
        ("keep.txt".to_owned(), "keep".to_owned()),
        ("sub".to_owned(), "a file where the folder was".to_owned()),
    ];
    assert_eq!(local_files(&local_root), want);
    assert_eq!(remote_files(remote.as_ref()).await, want);
    // Nothing lost: the folder's file is in the server's trash.
    let trash = remote
        .list_all(Some(&p(".syncengine/trash")))
        .await
        .unwrap();
    assert!(
        trash
            .iter()
            .any(|e| e.path.as_str().ends_with("/sub/a.txt")),
        "sub/a.txt is not in the trash: {trash:?}"
    );
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert!(
        quiet(&stats),
        "{server:?}: a further run is idle: {stats:?}"
    );
    assert_eq!(leftovers(&url).await, Vec::<String>::new());
}

/// Fails before the fix: wsgidav kept the emptied collection, and every run failed to
/// upload `sub` onto it.
#[tokio::test]
async fn a_file_replacing_an_emptied_folder_converges_on_wsgidav() {
    folder_emptied_then_replaced_by_a_file(WSGIDAV, false).await;
}

/// The same change made in one go (folder emptied and replaced by a file before one run).
#[tokio::test]
async fn a_file_replacing_a_folder_in_one_run_converges_on_wsgidav() {
    folder_emptied_then_replaced_by_a_file(WSGIDAV, true).await;
}

/// Apache gives collections ETags: its guarded `DELETE` path still converges.
#[tokio::test]
async fn a_file_replacing_an_emptied_folder_converges_on_apache() {
    folder_emptied_then_replaced_by_a_file(APACHE, false).await;
    folder_emptied_then_replaced_by_a_file(APACHE, true).await;
}

/// A two-way pair local ↔ WebDAV through the proxy, after a first run that put `sub/a.txt`
/// and `keep.txt` on both sides, and a client straight to the server (another machine).
struct Setup {
    server: Server,
    proxy: Proxy,
    /// The root collection, straight to the server.
    url: String,
    other: WebDavClient,
    local_root: std::path::PathBuf,
    engine: SyncEngine,
    pair: SyncPair,
    _tmp: tempfile::TempDir,
    _cleanup: RemoveOnPanic,
}

async fn setup(server: Server, no_etags: bool, tag: &str) -> Option<Setup> {
    let url = fresh_url(server, tag)?;
    let proxy = Proxy::start(&url).unwrap();
    if no_etags {
        common::hide_etags(&proxy);
    }
    let path = url.splitn(4, '/').nth(3).unwrap().to_owned();
    let remote = Arc::new(dav(&format!("{}/{path}", proxy.url())));
    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(local_root.join("sub")).unwrap();
    std::fs::write(local_root.join("sub/a.txt"), "a in sub").unwrap();
    std::fs::write(local_root.join("keep.txt"), "keep").unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        remote.clone(),
        SyncMode::TwoWay,
    );
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 2, "{stats:?}");
    Some(Setup {
        server,
        proxy,
        other: dav(&url),
        url: url.clone(),
        local_root,
        engine,
        pair,
        _tmp: tmp,
        _cleanup: RemoveOnPanic(url),
    })
}

impl Setup {
    /// Starts a run in the background.
    fn spawn_run(&self) -> tokio::task::JoinHandle<SyncStats> {
        let (engine, pair) = (self.engine.clone(), self.pair.clone());
        tokio::spawn(async move { engine.sync_pair(&pair).await.unwrap() })
    }

    /// Waits until `n` requests in all have been held.
    async fn wait_held(&self, n: u32) {
        wait_held(&self.proxy, n).await;
    }

    async fn run(&self) -> SyncStats {
        self.engine.sync_pair(&self.pair).await.unwrap()
    }

    /// The folders moved aside below the root, as (URL, the names of their members).
    async fn asides(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for url in leftovers(&self.url).await {
            let members = raw_members(&format!("{url}/")).await.unwrap_or_default();
            out.push((url, members.into_iter().map(|(n, _)| n).collect()));
        }
        out
    }
}

/// Another machine uploads `sub/new.txt` while the client's `MOVE` of the emptied `sub/` aside
/// is on its way (after the emptiness check): the file goes aside with the folder, the check
/// there finds it, and the folder is moved back with it. Nothing is deleted, nothing is left
/// aside, and the next run brings the file to the local side.
async fn upload_before_the_move_aside(server: Server, no_etags: bool) {
    let Some(s) = setup(server, no_etags, "prune-before-move").await else {
        return;
    };
    std::fs::remove_file(s.local_root.join("sub/a.txt")).unwrap();
    s.proxy
        .hold(Matcher::method("MOVE").path_ends_with("/sub/"));
    let run = s.spawn_run();
    s.wait_held(1).await;
    let new = "uploaded by the other machine into sub/";
    s.other
        .put(&p("sub/new.txt"), Bytes::from(new))
        .await
        .unwrap();
    s.proxy.release();
    let stats = run.await.unwrap();
    assert_eq!(
        (stats.deleted_destination, stats.errors),
        (1, 0),
        "{server:?}: {stats:?}"
    );
    let on_server = s.other.read_to_bytes(&p("sub/new.txt")).await;
    assert!(
        on_server.as_deref().is_ok_and(|b| b == new.as_bytes()),
        "{server:?}: sub/new.txt was not kept at its path: {on_server:?}; aside: {:?}",
        s.asides().await
    );
    assert_eq!(s.asides().await, vec![], "{server:?}");
    let stats = s.run().await;
    assert_eq!(
        (stats.downloaded, stats.errors),
        (1, 0),
        "{server:?}: {stats:?}"
    );
    assert_eq!(
        std::fs::read_to_string(s.local_root.join("sub/new.txt")).unwrap(),
        new
    );
    let stats = s.run().await;
    assert!(quiet(&stats), "{server:?}: {stats:?}");
}

#[tokio::test]
async fn a_file_uploaded_before_the_move_aside_is_moved_back_on_wsgidav() {
    upload_before_the_move_aside(WSGIDAV, false).await;
}

/// Apache with its ETags hidden takes the same path as wsgidav.
#[tokio::test]
async fn a_file_uploaded_before_the_move_aside_is_moved_back_on_apache_without_etags() {
    upload_before_the_move_aside(APACHE, true).await;
}

/// Another machine uploads `sub/new.txt` after the emptied `sub/` was moved aside and found
/// empty there, while its `DELETE` is on its way (the window the P1 red-team test aimed at):
/// the upload makes a new `sub/`, which the delete of the aside folder does not touch.
async fn upload_between_the_check_and_the_delete(server: Server, no_etags: bool) {
    let Some(s) = setup(server, no_etags, "prune-before-delete").await else {
        return;
    };
    std::fs::remove_file(s.local_root.join("sub/a.txt")).unwrap();
    s.proxy
        .hold(Matcher::method("DELETE").path_ends_with("-sub/"));
    let run = s.spawn_run();
    s.wait_held(1).await;
    let new = "uploaded by the other machine into sub/";
    s.other
        .put(&p("sub/new.txt"), Bytes::from(new))
        .await
        .unwrap();
    s.proxy.release();
    let stats = run.await.unwrap();
    assert_eq!(
        (stats.deleted_destination, stats.errors),
        (1, 0),
        "{server:?}: {stats:?}"
    );
    let on_server = s.other.read_to_bytes(&p("sub/new.txt")).await;
    assert!(
        on_server.as_deref().is_ok_and(|b| b == new.as_bytes()),
        "{server:?}: sub/new.txt, uploaded while the folder was being removed, is gone: \
         {on_server:?}"
    );
    assert_eq!(s.asides().await, vec![], "{server:?}");
    let stats = s.run().await;
    assert_eq!(
        (stats.downloaded, stats.errors),
        (1, 0),
        "{server:?}: {stats:?}"
    );
    let stats = s.run().await;
    assert!(quiet(&stats), "{server:?}: {stats:?}");
}

#[tokio::test]
async fn a_file_uploaded_between_the_check_and_the_delete_survives_on_wsgidav() {
    upload_between_the_check_and_the_delete(WSGIDAV, false).await;
}

#[tokio::test]
async fn a_file_uploaded_between_the_check_and_the_delete_survives_on_apache_without_etags() {
    upload_between_the_check_and_the_delete(APACHE, true).await;
}

/// The folder moved aside is not empty (a file arrived before the move), and its name is
/// taken by the time it would go back (another machine made a new `sub/` for its own upload):
/// it stays aside, the delete that pruned it says so, and listings report `sub` as unknown
/// (nothing at or below it is listed, so nothing there can look deleted) until the user has
/// put the contents back.
#[tokio::test]
async fn a_folder_that_cannot_go_back_stays_aside_and_is_reported() {
    let Some(url) = fresh_url(WSGIDAV, "prune-taken") else {
        return;
    };
    let _cleanup = RemoveOnPanic(url.clone());
    let proxy = Proxy::start(&url).unwrap();
    let path = url.splitn(4, '/').nth(3).unwrap().to_owned();
    let client = Arc::new(dav(&format!("{}/{path}", proxy.url())));
    let other = dav(&url);
    client.put(&p("sub/a.txt"), Bytes::from("a")).await.unwrap();
    client.put(&p("top.txt"), Bytes::from("top")).await.unwrap();

    proxy.hold(Matcher::method("MOVE").path_ends_with("/sub/"));
    let delete = {
        let client = client.clone();
        tokio::spawn(async move { client.delete(&p("sub/a.txt")).await })
    };
    wait_held(&proxy, 1).await;
    other
        .put(&p("sub/new.txt"), Bytes::from("new"))
        .await
        .unwrap();
    proxy.hold(Matcher::method("PROPFIND").path_ends_with("-sub/"));
    proxy.release();
    wait_held(&proxy, 2).await;
    // A fresh client: `other` still takes `sub/` for there (a retry would find out).
    dav(&url)
        .put(&p("sub/other.txt"), Bytes::from("other"))
        .await
        .unwrap();
    proxy.release();
    let result = delete.await.unwrap();
    let message = format!("{result:?}");
    assert!(
        result.is_err() && message.contains(".syncengine-tmp-dir-"),
        "the delete must report the folder it left aside: {message}"
    );

    // Nothing lost: new.txt is aside, other.txt in the new sub/.
    let asides = leftovers(&url).await;
    assert_eq!(asides.len(), 1, "{asides:?}");
    let members = raw_members(&format!("{}/", asides[0])).await.unwrap();
    assert_eq!(members, vec![("new.txt".to_owned(), false)]);
    assert_eq!(
        &other.read_to_bytes(&p("sub/other.txt")).await.unwrap()[..],
        b"other"
    );

    // A listing reports `sub` as unknown, in its place, and lists nothing below it.
    use futures::StreamExt;
    let items: Vec<_> = client.list(None).collect().await;
    let shown: Vec<String> = items
        .iter()
        .map(|i| match i {
            Ok(e) => e.path.to_string(),
            Err(e) if e.is_unlisted() => format!("?{}", e.unlisted_key().unwrap()),
            Err(e) => panic!("listing failed: {e}"),
        })
        .collect();
    assert_eq!(shown, ["?sub", "top.txt"]);
    let reason = items[0].as_ref().unwrap_err().to_string();
    assert!(
        reason.contains(asides[0].rsplit('/').next().unwrap()),
        "{reason}"
    );

    // Once the user has put the file back, the folder lists as usual.
    let aside_url = format!("{}/", asides[0]);
    let resp = reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(b"MOVE").unwrap(),
            format!("{aside_url}new.txt"),
        )
        .basic_auth("dav", Some("davpass"))
        .header("Destination", format!("{url}/sub/new.txt"))
        .header("Overwrite", "F")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let listed: Vec<String> = client
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path.to_string())
        .collect();
    assert_eq!(listed, ["sub/new.txt", "sub/other.txt", "top.txt"]);
    // The empty aside folder it left goes after a run (here: the client's own cleanup).
    client.remove_stale_temps().await.unwrap();
    assert_eq!(leftovers(&url).await, Vec::<String>::new());
}

/// A run killed between the move aside and the delete (the `DELETE` of the aside folder is
/// never sent) leaves an empty folder under the engine's name: it is never synced, nothing is
/// reported or deleted for it, and the next run removes it.
#[tokio::test]
async fn a_run_killed_before_the_delete_leaves_no_garbage() {
    let Some(s) = setup(WSGIDAV, false, "prune-killed").await else {
        return;
    };
    std::fs::remove_file(s.local_root.join("sub/a.txt")).unwrap();
    s.proxy
        .hold(Matcher::method("DELETE").path_ends_with("-sub/"));
    let run = s.spawn_run();
    s.wait_held(1).await;
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    s.proxy.drop_released();
    s.proxy.release();
    let asides = s.asides().await;
    assert!(
        asides.len() == 1 && asides[0].1.is_empty(),
        "an empty aside folder is left: {asides:?}"
    );
    let stats = s.run().await;
    assert!(
        stats.errors == 0 && stats.unknown == 0 && stats.uploaded == 0 && stats.downloaded == 0,
        "{stats:?}"
    );
    assert_eq!(
        local_files(&s.local_root),
        [("keep.txt".to_owned(), "keep".to_owned())]
    );
    assert_eq!(
        s.asides().await,
        vec![],
        "the next run removes the empty aside folder"
    );
    let stats = s.run().await;
    assert!(quiet(&stats), "{stats:?}");
    assert_eq!(s.server.name, "wsgidav");
}

/// A run killed while the folder it moved aside holds a file another machine (laptop B, with
/// its own engine and base) uploaded just before the move: B's next run must not take the
/// file for deleted on the server (it is not at its path) and trash its own copy. The
/// listing reports `sub` as unknown instead, on both machines, until the user moves the
/// folder back; then both converge.
#[tokio::test]
async fn a_run_killed_with_a_file_aside_deletes_nothing() {
    let Some(s) = setup(WSGIDAV, false, "prune-killed-full").await else {
        return;
    };
    let tmp_b = tempfile::tempdir().unwrap();
    let local_b = tmp_b.path().join("local");
    std::fs::create_dir_all(&local_b).unwrap();
    let engine_b = SyncEngine::new(tmp_b.path().join("state"));
    let pair_b = SyncPair::new(
        Arc::new(LocalClient::new(&local_b)),
        Arc::new(dav(&s.url)),
        SyncMode::TwoWay,
    );
    let stats = engine_b.sync_pair(&pair_b).await.unwrap();
    assert_eq!(stats.downloaded, 2, "{stats:?}");

    std::fs::remove_file(s.local_root.join("sub/a.txt")).unwrap();
    s.proxy
        .hold(Matcher::method("MOVE").path_ends_with("/sub/"));
    let run = s.spawn_run();
    s.wait_held(1).await;
    // Laptop B: sub/a.txt is gone on the server (A trashed it), and B adds sub/new.txt.
    let new = "written on laptop B";
    std::fs::write(local_b.join("sub/new.txt"), new).unwrap();
    let stats = engine_b.sync_pair(&pair_b).await.unwrap();
    assert_eq!((stats.uploaded, stats.errors), (1, 0), "{stats:?}");
    s.proxy
        .hold(Matcher::method("PROPFIND").path_ends_with("-sub/"));
    s.proxy.release();
    s.wait_held(2).await;
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    s.proxy.drop_released();
    s.proxy.release();
    let asides = s.asides().await;
    assert!(
        asides.len() == 1 && asides[0].1 == ["new.txt"],
        "the killed run left sub/ aside with new.txt in it: {asides:?}"
    );

    // Laptop B keeps its copy; `sub` is unknown for this run.
    let stats = engine_b.sync_pair(&pair_b).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(local_b.join("sub/new.txt"))
            .ok()
            .as_deref(),
        Some(new),
        "laptop B lost sub/new.txt: {stats:?}"
    );
    assert!(stats.unknown > 0 && stats.deleted_source == 0, "{stats:?}");
    assert!(
        stats.warnings.iter().any(|w| w.contains("sub")),
        "{stats:?}"
    );
    // Laptop A: the same, and nothing of the aside folder is synced.
    let stats = s.run().await;
    assert!(stats.unknown > 0 && stats.deleted_source == 0, "{stats:?}");
    assert_eq!(
        local_files(&s.local_root),
        [("keep.txt".to_owned(), "keep".to_owned())]
    );

    // The user moves the folder back: both converge.
    let resp = reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(b"MOVE").unwrap(),
            format!("{}/", asides[0].0),
        )
        .basic_auth("dav", Some("davpass"))
        .header("Destination", format!("{}/sub/", s.url))
        .header("Overwrite", "F")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let stats = s.run().await;
    assert_eq!(
        (stats.downloaded, stats.errors, stats.unknown),
        (1, 0, 0),
        "{stats:?}"
    );
    let stats = engine_b.sync_pair(&pair_b).await.unwrap();
    assert!(quiet(&stats), "{stats:?}");
    assert_eq!(local_files(&s.local_root), local_files(&local_b));
    assert_eq!(s.asides().await, vec![]);
}

/// The engine runs actions side by side through one client: an upload into `sub/` while
/// the delete of its last other file prunes it. The client never removes a folder it is
/// writing into: the upload (held by the proxy before its temporary file reaches the server,
/// so the folder looks empty) lands in `sub/`, and nothing is left aside.
#[tokio::test]
async fn the_clients_own_write_into_an_emptied_folder_keeps_it() {
    let Some(url) = fresh_url(WSGIDAV, "prune-own-write") else {
        return;
    };
    let _cleanup = RemoveOnPanic(url.clone());
    let proxy = Proxy::start(&url).unwrap();
    let path = url.splitn(4, '/').nth(3).unwrap().to_owned();
    let client = Arc::new(dav(&format!("{}/{path}", proxy.url())));
    client.put(&p("sub/a.txt"), Bytes::from("a")).await.unwrap();

    proxy.hold(Matcher::method("PUT").path_contains("/sub/.syncengine-tmp-"));
    let write = {
        let client = client.clone();
        tokio::spawn(async move { client.put(&p("sub/b.txt"), Bytes::from("b")).await })
    };
    wait_held(&proxy, 1).await;
    client.delete(&p("sub/a.txt")).await.unwrap();
    proxy.release();
    let written = write.await.unwrap();
    assert!(written.is_ok(), "the write into sub/ failed: {written:?}");
    assert_eq!(
        &client.read_to_bytes(&p("sub/b.txt")).await.unwrap()[..],
        b"b"
    );
    assert_eq!(leftovers(&url).await, Vec::<String>::new());
}
