//! Basic credentials never go over plain `http://` unless the user opts in (issue 9,
//! security): without `with_allow_insecure_basic(true)` (or
//! `SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC=1`), a client fails with an error that names the
//! cause and the fix, and the password never leaves the machine. Digest is unaffected.
//!
//! A tiny listener on 127.0.0.1 records every request head it gets and answers each with a
//! Basic-only challenge; the real Apache test server (Basic only) checks the opt-in works.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;

use syncengine_backend_webdav::{ENV_ALLOW_INSECURE_BASIC, WebDavAuth, WebDavBuilder};
use syncengine_core::StorageClientExt;

/// Starts a listener that answers every request with `401` and a Basic challenge; returns its
/// URL and the request heads it got.
fn basic_only_listener() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = heads.clone();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let seen = seen.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    let end = line == "\r\n";
                    head.push_str(&line);
                    if end {
                        break;
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                seen.lock().unwrap().push(head);
                let mut stream = stream;
                let _ = stream.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"dav\"\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    (format!("http://{addr}/dav"), heads)
}

fn assert_names_cause_and_fix(err: &syncengine_core::Error) {
    let shown = err.to_string();
    assert!(
        shown.contains("Basic")
            && shown.contains("http://")
            && shown.contains("webdavs://")
            && shown.contains(ENV_ALLOW_INSECURE_BASIC),
        "{shown}"
    );
    assert!(!err.is_transient(), "{shown}");
    assert!(!format!("{err}{err:?}").contains("s3cr3t-pw"), "{shown}");
}

/// Neither forced Basic nor Auto answering a Basic-only challenge sends the password over
/// plain http: every request the listener got lacks an `Authorization` header.
#[tokio::test]
async fn basic_credentials_never_reach_a_plain_http_server_without_the_opt_in() {
    for mode in [WebDavAuth::Auto, WebDavAuth::Basic] {
        let (url, heads) = basic_only_listener();
        let client = WebDavBuilder::new()
            .with_url(&url)
            .with_credentials("dav", "s3cr3t-pw")
            .with_auth(mode)
            .build()
            .unwrap();
        let err = client.list_all(None).await.unwrap_err();
        assert_names_cause_and_fix(&err);
        let err = client
            .put(
                &syncengine_core::RelPath::new("f").unwrap(),
                bytes::Bytes::from("x"),
            )
            .await
            .unwrap_err();
        assert_names_cause_and_fix(&err);
        let heads = heads.lock().unwrap();
        assert!(
            heads
                .iter()
                .all(|h| !h.to_ascii_lowercase().contains("authorization:")),
            "{mode}: the credentials went out: {heads:?}"
        );
        if mode == WebDavAuth::Basic {
            assert!(heads.is_empty(), "{mode}: {heads:?}");
        }
    }
}

/// With the opt-in, the same listener gets Basic credentials (the control for the test
/// above).
#[tokio::test]
async fn the_opt_in_lets_basic_go_over_plain_http() {
    let (url, heads) = basic_only_listener();
    let client = WebDavBuilder::new()
        .with_url(&url)
        .with_credentials("dav", "s3cr3t-pw")
        .with_allow_insecure_basic(true)
        .build()
        .unwrap();
    let err = client.list_all(None).await.unwrap_err();
    assert!(
        matches!(err, syncengine_core::Error::PermissionDenied { .. }),
        "{err}"
    );
    let heads = heads.lock().unwrap();
    assert!(
        heads
            .iter()
            .any(|h| h.to_ascii_lowercase().contains("authorization: basic")),
        "{heads:?}"
    );
}

/// Against the real Apache test server (Basic only, on loopback): refused without the opt-in,
/// works with it.
#[tokio::test]
async fn apache_over_plain_http_needs_the_opt_in() {
    let Some(url) = common::server_url(common::APACHE) else {
        return;
    };
    let root = format!(
        "{}/syncengine-tests/insecure-basic-{:016x}",
        url.trim_end_matches('/'),
        rand::random::<u64>()
    );
    let without = WebDavBuilder::new()
        .with_url(&root)
        .with_credentials("dav", "davpass")
        .build()
        .unwrap();
    let err = without.list_all(None).await.unwrap_err();
    assert_names_cause_and_fix(&err);
    let with = WebDavBuilder::new()
        .with_url(&root)
        .with_credentials("dav", "davpass")
        .with_allow_insecure_basic(true)
        .build()
        .unwrap();
    assert!(with.list_all(None).await.unwrap().is_empty());
}
