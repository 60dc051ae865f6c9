//! The upload's fast path (issue 11): a `PUT` whose size is known goes out with
//! `Content-Length`, and once a server's `PUT` answers are seen to carry the ETag a `PROPFIND`
//! lists, the mtime dead property is bound to the answer's ETag without a `PROPFIND` of the
//! temporary file. Against Apache and wsgidav:
//! - a body that gives fewer or more bytes than its size hint fails the write and leaves the
//!   old file and no temporary file;
//! - files written after the first (through the answer's ETag) keep the mtime we gave them,
//!   and a foreign overwrite of one is still listed with the server's time (the binding holds).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use syncengine_core::{
    RelPath, StorageClient, StorageClientExt, WriteMode, WriteOptions, bytes_stream,
};

use common::{APACHE, Server, WSGIDAV, dav};

fn fresh_dir(url: &str, what: &str) -> String {
    format!(
        "{}/syncengine-tests/{what}-{:016x}",
        url.trim_end_matches('/'),
        rand::random::<u64>()
    )
}

/// The names in a `PROPFIND Depth: 1` of `dir`, temporary files included.
async fn raw_names(dir: &str) -> String {
    let resp = reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(b"PROPFIND").unwrap(),
            format!("{dir}/"),
        )
        .header("Depth", "1")
        .basic_auth("dav", Some("davpass"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 207, "PROPFIND {dir}/");
    resp.text().await.unwrap()
}

async fn wrong_size_hint_fails_and_leaves_nothing(server: Server) {
    let Some(url) = common::server_url(server) else {
        return;
    };
    let dir = fresh_dir(&url, "size-hint");
    let client = dav(&dir);
    let keep = RelPath::new("keep.txt").unwrap();
    client
        .put(&keep, Bytes::from_static(b"original"))
        .await
        .unwrap();
    for (hint, body) in [(100u64, "short body"), (3, "a body longer than its hint")] {
        for (path, mode) in [
            (RelPath::new("new.txt").unwrap(), WriteMode::Create),
            (keep.clone(), WriteMode::Overwrite),
        ] {
            let written = client
                .write_opts(
                    &path,
                    bytes_stream(Bytes::from(body)),
                    WriteOptions::default()
                        .with_mode(mode.clone())
                        .with_size_hint(hint)
                        .with_mtime(SystemTime::now()),
                )
                .await;
            assert!(
                written.is_err(),
                "{}: a {}-byte body with size hint {hint} was written to {path}: {written:?}",
                server.name,
                body.len()
            );
        }
    }
    assert_eq!(
        client.read_to_bytes(&keep).await.unwrap(),
        Bytes::from_static(b"original"),
        "{}: the failed overwrites left the old content",
        server.name
    );
    let listed: Vec<String> = client
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path.to_string())
        .collect();
    assert_eq!(listed, ["keep.txt"], "{}", server.name);
    let names = raw_names(&dir).await;
    assert!(
        !names.contains(syncengine_core::ignore_rules::TEMP_FILE_PREFIX),
        "{}: a temporary file was left: {names}",
        server.name
    );
    // A right hint still writes.
    let ok = client
        .write_opts(
            &keep,
            bytes_stream(Bytes::from("new content")),
            WriteOptions::default()
                .with_mode(WriteMode::Overwrite)
                .with_size_hint(11),
        )
        .await
        .unwrap();
    assert_eq!(ok.size, 11);
    assert_eq!(
        client.read_to_bytes(&keep).await.unwrap(),
        Bytes::from_static(b"new content")
    );
    client.delete(&keep).await.unwrap();
}

async fn mtime_bound_through_the_put_answer(server: Server) {
    let Some(url) = common::server_url(server) else {
        return;
    };
    let dir = fresh_dir(&url, "put-etag");
    let client = dav(&dir);
    let old = SystemTime::now() - Duration::from_secs(7200);
    let names = ["first.txt", "a/second.txt", "a/b/third.txt", "fourth.txt"];
    for (i, name) in names.iter().enumerate() {
        let body = format!("content {i}");
        let written = client
            .write_opts(
                &RelPath::new(*name).unwrap(),
                bytes_stream(Bytes::from(body.clone())),
                WriteOptions::default()
                    .with_mode(WriteMode::Create)
                    .with_size_hint(body.len() as u64)
                    .with_mtime(old),
            )
            .await
            .unwrap();
        assert_eq!(
            written.mtime,
            Some(old),
            "{}: {name} as written",
            server.name
        );
    }
    let listed = client.list_all(None).await.unwrap();
    assert_eq!(listed.len(), names.len(), "{}: {listed:?}", server.name);
    for e in &listed {
        assert_eq!(e.mtime, Some(old), "{}: {} listed", server.name, e.path);
    }
    // Another client overwrites the last one with a plain PUT (the dead property stays on
    // the server): it must be listed with the server's time, not ours.
    let resp = reqwest::Client::new()
        .put(format!("{dir}/fourth.txt"))
        .basic_auth("dav", Some("davpass"))
        .body("server edit, just now, by another client")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "foreign PUT: {}", resp.status());
    let listed = client.list_all(None).await.unwrap();
    let fourth = listed
        .iter()
        .find(|e| e.path.as_str() == "fourth.txt")
        .expect("fourth.txt listed");
    let age = SystemTime::now()
        .duration_since(fourth.mtime.expect("an mtime"))
        .unwrap_or_default();
    assert!(
        age < Duration::from_secs(600),
        "{}: the foreign overwrite is listed with our old mtime: {fourth:?}",
        server.name
    );
    for name in names {
        client.delete(&RelPath::new(name).unwrap()).await.unwrap();
    }
}

#[tokio::test]
async fn apache_wrong_size_hint_fails_and_leaves_nothing() {
    wrong_size_hint_fails_and_leaves_nothing(APACHE).await;
}

#[tokio::test]
async fn wsgidav_wrong_size_hint_fails_and_leaves_nothing() {
    wrong_size_hint_fails_and_leaves_nothing(WSGIDAV).await;
}

#[tokio::test]
async fn apache_mtime_bound_through_the_put_answer() {
    mtime_bound_through_the_put_answer(APACHE).await;
}

#[tokio::test]
async fn wsgidav_mtime_bound_through_the_put_answer() {
    mtime_bound_through_the_put_answer(WSGIDAV).await;
}
