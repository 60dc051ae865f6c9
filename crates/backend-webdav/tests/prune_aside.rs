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

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use syncengine_backend_local::LocalClient;
use syncengine_backend_webdav::{WebDavBuilder, WebDavClient};
use syncengine_core::{
    RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair, SyncStats,
};

use common::{APACHE, Server, WSGIDAV};

fn dav(url: &str) -> WebDavClient {
    let mut builder = WebDavBuilder::from_env().with_url(url);
    if std::env::var(syncengine_backend_webdav::ENV_USER).is_err() {
        builder = builder.with_credentials("dav", "davpass");
    }
    builder.build().unwrap()
}

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// `host:port` of a server URL.
fn authority(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned()
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
