//! WebDAV-specific behaviour beyond the shared suites: authentication and connection errors,
//! no temporary file left by a failed upload, and a hostile server's listing.

// Helpers here are test code but not `#[test]` fns, so clippy's in-tests allowance misses them.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use syncengine_backend_webdav::WebDavBuilder;
use syncengine_core::{Error, RelPath, StorageClient, StorageClientExt, WriteOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{APACHE, WSGIDAV};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

#[tokio::test]
async fn wrong_password_is_permission_denied() {
    for server in [APACHE, WSGIDAV] {
        let Some(url) = common::server_url(server) else {
            continue;
        };
        let client = WebDavBuilder::new()
            .with_url(format!("{url}/syncengine-tests"))
            .with_credentials("dav", "not-the-password")
            .with_allow_insecure_basic(true)
            .build()
            .unwrap();
        let err = client.list_all(None).await.unwrap_err();
        assert!(
            matches!(err, Error::PermissionDenied { .. }),
            "{server:?}: {err:?}"
        );
        assert!(!format!("{err:?}{client:?}").contains("not-the-password"));
    }
}

#[tokio::test]
async fn nothing_listening_is_transient() {
    let client = WebDavBuilder::new()
        .with_url("webdav://127.0.0.1:1/x")
        .build()
        .unwrap();
    let err = client.stat(&p("a")).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

/// Lists the raw member hrefs of a collection, temporary files included.
async fn raw_members(client: &syncengine_backend_webdav::WebDavClient) -> Vec<String> {
    let resp = reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(b"PROPFIND").unwrap(),
            client.url().as_str(),
        )
        .basic_auth("dav", Some("davpass"))
        .header("Depth", "infinity")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 207);
    let body = resp.bytes().await.unwrap();
    syncengine_backend_webdav::multistatus::parse(&body, client.url())
        .unwrap()
        .into_iter()
        .map(|r| r.segments.join("/"))
        .collect()
}

#[tokio::test]
async fn failed_upload_leaves_no_temporary_file() {
    for server in [APACHE, WSGIDAV] {
        let Some(client) = common::client(server) else {
            continue;
        };
        client.put(&p("d/keep"), Bytes::from("keep")).await.unwrap();
        let body = stream::iter(vec![
            Ok(Bytes::from(vec![7u8; 300_000])),
            Err(Error::other("test", "d/f", "body failed on purpose")),
        ])
        .boxed();
        let err = client
            .write_opts(&p("d/f"), body, WriteOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("on purpose"), "{server:?}: {err}");
        let members = raw_members(&client).await;
        assert!(
            members.iter().all(|m| !m.contains(".syncengine-tmp-")),
            "{server:?}: temporary file left behind: {members:?}"
        );
        assert!(members.iter().any(|m| m.ends_with("d/keep")), "{members:?}");
    }
}

/// Serves one canned PROPFIND answer per connection on a loopback port.
async fn hostile_server(body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 65536];
            let _ = sock.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 207 Multi-Status\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    format!("webdav://{addr}/root")
}

#[tokio::test]
async fn hostile_listing_is_an_error_never_an_escape() {
    for href in [
        "/root/../etc/passwd",
        "/root/%2e%2e/secret",
        "/elsewhere/file",
        "http://evil.example/root/x",
        "/root/sub/deeper/file",
    ] {
        let body: &'static str = Box::leak(
            format!(
                r#"<?xml version="1.0"?><D:multistatus xmlns:D="DAV:"><D:response><D:href>{href}</D:href><D:propstat><D:prop><D:resourcetype/><D:getcontentlength>1</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"#
            )
            .into_boxed_str(),
        );
        let client: Arc<dyn StorageClient> = Arc::new(
            WebDavBuilder::new()
                .with_url(hostile_server(body).await)
                .build()
                .unwrap(),
        );
        let err = match client.list_all(None).await {
            Ok(listed) => panic!("{href}: listed {listed:?}"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("refused href") || err.contains("outside the listed collection"),
            "{href}: {err}"
        );
    }
}

/// Left-behind temp files on Apache: listings only note them, and `remove_stale_temps`
/// removes exactly those in the temp format untouched for a day (by the server's own
/// last-modified time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apache_removes_only_exact_temps_untouched_for_a_day() {
    let Some(client) = common::client(APACHE) else {
        return;
    };
    client.put(&p("a/b.txt"), Bytes::from("b")).await.unwrap();
    // Apache serves this directory (scripts/test-servers.sh); elsewhere the case cannot age
    // files and says so.
    let ts = std::env::var_os("TS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/tmp/syncengine-test-servers".into());
    let dir = ts
        .join("apache/dav")
        .join(client.url().path().trim_start_matches('/'))
        .join("a");
    if !dir.is_dir() {
        eprintln!("SKIPPED: Apache's DAV folder is not at {}", dir.display());
        return;
    }
    let day = std::time::Duration::from_secs(24 * 3600);
    let stale = dir.join(".syncengine-tmp-0123456789abcdef");
    let young = dir.join(".syncengine-tmp-fedcba9876543210");
    let lookalike = dir.join(".syncengine-tmp-notes.txt");
    for (path, age) in [
        (&stale, day + day / 24),
        (&young, day - day / 24),
        (&lookalike, day + day / 24),
    ] {
        std::fs::write(path, "partial").unwrap();
        let t = std::time::SystemTime::now() - age;
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
            .unwrap();
    }
    let listed: Vec<String> = client
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path.into_string())
        .collect();
    assert_eq!(listed, ["a/b.txt"]);
    assert!(
        stale.exists(),
        "a listing removed a file (a dry run lists too)"
    );
    assert_eq!(client.remove_stale_temps().await.unwrap(), 1);
    assert!(!stale.exists(), "a day-old temp was left behind");
    assert!(young.exists(), "a temp younger than a day was removed");
    assert!(
        lookalike.exists(),
        "a file that only resembles a temp was removed"
    );
}

/// `clean_up` on Apache (the `syncengine cleanup` command) removes exact-format temps older
/// than the age it is given (by the server's last-modified time), anywhere under the root
/// but the trash; a dry run removes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apache_clean_up_removes_old_exact_temps_outside_the_trash() {
    use syncengine_core::StorageClient;
    use syncengine_core::cleanup::CleanupOptions;

    let Some(client) = common::client(APACHE) else {
        return;
    };
    client.put(&p("a/b.txt"), Bytes::from("b")).await.unwrap();
    let ts = std::env::var_os("TS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/tmp/syncengine-test-servers".into());
    let root = ts
        .join("apache/dav")
        .join(client.url().path().trim_start_matches('/'));
    if !root.join("a").is_dir() {
        eprintln!("SKIPPED: Apache's DAV folder is not at {}", root.display());
        return;
    }
    let hour = std::time::Duration::from_secs(3600);
    let old = root.join("a/.syncengine-tmp-0123456789abcdef");
    let young = root.join("a/.syncengine-tmp-fedcba9876543210");
    let lookalike = root.join("a/.syncengine-tmp-0123456789abcdef.txt");
    let in_trash = root.join(".syncengine/trash/20260101T000000Z/.syncengine-tmp-0123456789abcdef");
    std::fs::create_dir_all(in_trash.parent().unwrap()).unwrap();
    for (path, age) in [
        (&old, 2 * hour),
        (&young, hour / 6),
        (&lookalike, 2 * hour),
        (&in_trash, 2 * hour),
    ] {
        std::fs::write(path, "partial").unwrap();
        let t = std::time::SystemTime::now() - age;
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
            .unwrap();
    }
    let opts = CleanupOptions::new(hour);
    let dry = client
        .clean_up(&opts.clone().with_dry_run(true))
        .await
        .unwrap();
    assert_eq!(dry.found.len(), 1, "{dry:?}");
    assert!(old.exists(), "a dry run removed a file");
    let done = client.clean_up(&opts).await.unwrap();
    assert!(done.failed.is_empty(), "{done:?}");
    assert_eq!(done.found.len(), 1, "{done:?}");
    assert!(
        done.found[0]
            .location
            .ends_with("/a/.syncengine-tmp-0123456789abcdef"),
        "{done:?}"
    );
    assert!(!old.exists(), "an old temp was left");
    for kept in [&young, &lookalike, &in_trash] {
        assert!(kept.exists(), "{} was removed", kept.display());
    }
    assert_eq!(client.read_to_bytes(&p("a/b.txt")).await.unwrap(), "b");
}
