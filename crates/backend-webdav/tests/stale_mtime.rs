//! Red-team (issue 9, F3): the mtime dead property must describe the version it was set for.
//! Apache and wsgidav keep dead properties when another client overwrites the file with a
//! plain `PUT`; a listing that still reported our old mtime for the foreign new content let a
//! local edit from an hour ago win a newest-wins conflict against a server edit made just now.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use syncengine_core::{
    RelPath, StorageClient, StorageClientExt, TransferOptions, WriteMode, WriteOptions,
    bytes_stream,
};

use common::{APACHE, Server, WSGIDAV, dav};

async fn foreign_overwrite_is_listed_with_the_server_time(server: Server) {
    let Some(url) = common::server_url(server) else {
        return;
    };
    let dir = format!(
        "{}/syncengine-tests/stale-mtime-{:016x}",
        url.trim_end_matches('/'),
        rand::random::<u64>()
    );
    let client = dav(&dir);
    let f = RelPath::new("f.txt").unwrap();
    let old = SystemTime::now() - Duration::from_secs(7200);
    client
        .write_opts(
            &f,
            bytes_stream(Bytes::from("local edit, long ago")),
            WriteOptions::default()
                .with_mode(WriteMode::Overwrite)
                .with_mtime(old),
        )
        .await
        .unwrap();
    let age = |e: &syncengine_core::Entry| {
        SystemTime::now()
            .duration_since(e.mtime.expect("an mtime"))
            .unwrap_or_default()
    };
    assert!(
        age(&client.stat(&f).await.unwrap()) > Duration::from_secs(3600),
        "{}: our own write keeps the mtime we gave it",
        server.name
    );
    // A server-side copy and rename keep it too (the copy is a new file with a new ETag).
    let g = RelPath::new("g.txt").unwrap();
    let h = RelPath::new("h.txt").unwrap();
    client
        .copy_opts(&f, &g, TransferOptions::default())
        .await
        .unwrap();
    client.rename(&g, &h).await.unwrap();
    let listed = client.list_all(None).await.unwrap();
    let h_entry = listed.iter().find(|e| e.path == h).expect("h.txt listed");
    assert!(
        age(h_entry) > Duration::from_secs(3600),
        "{}: a copied and renamed file keeps its mtime: {h_entry:?}",
        server.name
    );

    // Another client overwrites f.txt with a plain PUT (no PROPPATCH), other size.
    let resp = reqwest::Client::new()
        .put(format!("{dir}/f.txt"))
        .basic_auth("dav", Some("davpass"))
        .body("server edit, just now, by another client")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "foreign PUT: {}", resp.status());

    let listed = client.list_all(None).await.unwrap();
    let entry = listed.iter().find(|e| e.path == f).expect("f.txt listed");
    assert!(
        age(entry) < Duration::from_secs(600),
        "{}: the foreign overwrite is listed with our old mtime, so an older local edit \
         would win the conflict: {entry:?}",
        server.name
    );
    let stat = client.stat(&f).await.unwrap();
    assert!(
        age(&stat) < Duration::from_secs(600),
        "{}: stat {stat:?}",
        server.name
    );
    client.delete(&f).await.unwrap();
    client.delete(&h).await.unwrap();
}

#[tokio::test]
async fn apache_foreign_overwrite_is_listed_with_the_server_time() {
    foreign_overwrite_is_listed_with_the_server_time(APACHE).await;
}

#[tokio::test]
async fn wsgidav_foreign_overwrite_is_listed_with_the_server_time() {
    foreign_overwrite_is_listed_with_the_server_time(WSGIDAV).await;
}
