//! An engine run local ↔ WebDAV where the server stops listing a sub-collection: the local
//! copies of its files stay, and the run reports the unknown path (issue 8, behaviour 8).
//!
//! A small proxy on 127.0.0.1 passes every request to the Apache test server, except, once
//! turned hostile, the `PROPFIND` of the sub-collection `sub/`, which it answers with an error
//! status or a redirect. Old code listed `sub` as empty: `sub/x` looked deleted on the server,
//! and the two-way run deleted the local copy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread;

use syncengine_backend_local::LocalClient;
use syncengine_backend_webdav::WebDavBuilder;
use syncengine_core::{SyncEngine, SyncMode, SyncPair};

use common::APACHE;

/// Forwards one request (the connection is closed after it) or answers it with `hostile`.
fn proxy(client: TcpStream, upstream: &str, hostile: &AtomicU16) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let done = line == "\r\n";
        head.push(line);
        if done {
            break;
        }
    }
    let mut parts = head[0].split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let status = hostile.load(Ordering::SeqCst);
    if status != 0 && method == "PROPFIND" && path.ends_with("/sub/") {
        let location = if (300..400).contains(&status) {
            format!("Location: {path}elsewhere/\r\n")
        } else {
            String::new()
        };
        let mut client = client;
        let _ = write!(
            client,
            "HTTP/1.1 {status} X\r\n{location}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    }
    // One request per connection, so the next PROPFIND comes through here again.
    let mut up = TcpStream::connect(upstream).unwrap();
    for line in &head {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            up.write_all(b"Connection: close\r\n").unwrap();
        }
        up.write_all(line.as_bytes()).unwrap();
    }
    let mut up_write = up.try_clone().unwrap();
    thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut up_write);
    });
    let mut client = client;
    let _ = std::io::copy(&mut up, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Both);
}

/// Starts the proxy in front of `upstream` (host:port); returns its address.
fn start_proxy(upstream: String, hostile: Arc<AtomicU16>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (upstream, hostile) = (upstream.clone(), hostile.clone());
            thread::spawn(move || proxy(stream, &upstream, &hostile));
        }
    });
    addr
}

#[tokio::test]
async fn unlistable_sub_collection_keeps_local_copies() {
    let Some(url) = common::server_url(APACHE) else {
        return;
    };
    let upstream = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    for status in [500, 404, 409, 301] {
        let hostile = Arc::new(AtomicU16::new(0));
        let addr = start_proxy(upstream.clone(), hostile.clone());
        let root = format!(
            "http://{addr}/syncengine-tests/unlisted-{:016x}",
            rand::random::<u64>()
        );
        let mut builder = WebDavBuilder::from_env().with_url(root);
        if std::env::var(syncengine_backend_webdav::ENV_USER).is_err() {
            builder = builder.with_credentials("dav", "davpass");
        }
        let remote = Arc::new(builder.build().unwrap());
        let tmp = tempfile::tempdir().unwrap();
        let local_root = tmp.path().join("local");
        std::fs::create_dir_all(local_root.join("sub")).unwrap();
        std::fs::write(local_root.join("sub/x"), "x").unwrap();
        std::fs::write(local_root.join("top.txt"), "top").unwrap();
        let engine = SyncEngine::new(tmp.path().join("state"));
        let pair = SyncPair::new(
            Arc::new(LocalClient::new(&local_root)),
            remote,
            SyncMode::TwoWay,
        );
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(stats.uploaded, 2, "{status}: {stats:?}");

        hostile.store(status, Ordering::SeqCst);
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(local_root.join("sub/x"))
                .ok()
                .as_deref(),
            Some("x"),
            "{status}: {stats:?}"
        );
        assert_eq!(stats.deleted_source, 0, "{status}: {stats:?}");
        assert!(stats.unknown > 0, "{status}: {stats:?}");
        assert!(
            stats.warnings.iter().any(|w| w.contains("sub")),
            "{status}: {stats:?}"
        );
    }
}
