//! The conformance and sync-scenario suites against a Digest-only wsgidav (127.0.0.1:8084),
//! and the Digest specifics: wrong credentials, forced modes, an upload as the first request.

// Helpers here are test code but not `#[test]` fns, so clippy's in-tests allowance misses them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use syncengine_backend_webdav::{WebDavAuth, WebDavBuilder, WebDavClient};
use syncengine_core::{Error, RelPath, StorageClient, StorageClientExt, WriteOptions};

use common::{DIGEST, WSGIDAV};

mod conformance {
    syncengine_core::conformance_tests!(|| super::common::fresh(super::common::DIGEST));
}

mod scenarios {
    use super::common::{DIGEST, fresh};
    syncengine_core::sync_scenario_tests!(|| fresh(DIGEST), || fresh(DIGEST));
}

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// A client of `url` (plus `root`) with the given password and mode.
fn client_for(url: &str, root: &str, password: &str, auth: WebDavAuth) -> WebDavClient {
    WebDavBuilder::new()
        .with_url(format!("{}/{root}", url.trim_end_matches('/')))
        .with_credentials("dav", password)
        .with_auth(auth)
        // The test servers speak Basic over plain http on loopback.
        .with_allow_insecure_basic(true)
        .build()
        .unwrap()
}

/// Runs `fut`, failing the test if it takes longer than a minute (a hang or a retry loop).
async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("finished within a minute")
}

fn assert_denied(err: &Error, what: &str) {
    assert!(
        matches!(err, Error::PermissionDenied { .. }),
        "{what}: {err:?}"
    );
}

#[tokio::test]
async fn wrong_password_is_permission_denied() {
    let Some(url) = common::server_url(DIGEST) else {
        return;
    };
    for auth in [WebDavAuth::Auto, WebDavAuth::Digest] {
        let client = client_for(&url, "syncengine-tests", "not-the-password", auth);
        // Twice: the second request starts from the cached challenge.
        for _ in 0..2 {
            let err = bounded(client.list_all(None)).await.unwrap_err();
            assert_denied(&err, "list");
        }
        let err = bounded(client.put(&p("x/f"), Bytes::from("data")))
            .await
            .unwrap_err();
        assert_denied(&err, "put");
        let err = bounded(client.stat(&p("f"))).await.unwrap_err();
        assert_denied(&err, "stat");
        assert!(!format!("{err:?}{err}{client:?}").contains("not-the-password"));
    }
}

#[tokio::test]
async fn forcing_basic_against_a_digest_only_server_is_permission_denied() {
    let Some(url) = common::server_url(DIGEST) else {
        return;
    };
    let client = client_for(&url, "syncengine-tests", "davpass", WebDavAuth::Basic);
    let err = bounded(client.list_all(None)).await.unwrap_err();
    assert_denied(&err, "list");
    let err = bounded(client.put(&p("f"), Bytes::from("data")))
        .await
        .unwrap_err();
    assert_denied(&err, "put");
}

#[tokio::test]
async fn forcing_digest_against_a_basic_only_server_is_permission_denied() {
    let Some(url) = common::server_url(WSGIDAV) else {
        return;
    };
    // A fresh root of its own: the whole shared test area is too big to list in a minute.
    let root = format!(
        "syncengine-tests/digest-denied-{:016x}",
        rand::random::<u64>()
    );
    let client = client_for(&url, &root, "davpass", WebDavAuth::Digest);
    let err = bounded(client.list_all(None)).await.unwrap_err();
    assert_denied(&err, "list");
    // Auto falls back to Basic there.
    let client = client_for(&url, &root, "davpass", WebDavAuth::Auto);
    client.put(&p("f"), Bytes::from("data")).await.unwrap();
    let listed = bounded(client.list_all(None)).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
}

#[tokio::test]
async fn forced_digest_works() {
    let Some(url) = common::server_url(DIGEST) else {
        return;
    };
    let root = format!("syncengine-tests/forced-{:016x}", rand::random::<u64>());
    let client = client_for(&url, &root, "davpass", WebDavAuth::Digest);
    client
        .put(&p("a/b.txt"), Bytes::from("hello"))
        .await
        .unwrap();
    let listed = client.list_all(None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].path.as_str(), "a/b.txt");
    assert_eq!(listed[0].size, 5);
}

/// The root is the server's root, so the write needs no MKCOL first: the streamed PUT would be
/// the very first request, and must not go out before the client has answered the challenge
/// (it could not be replayed after a 401).
#[tokio::test]
async fn large_upload_as_the_first_request_succeeds() {
    let Some(url) = common::server_url(DIGEST) else {
        return;
    };
    const CHUNK: usize = 256 * 1024;
    const CHUNKS: usize = 80; // 20 MiB
    let name = format!(
        "syncengine-tests-first-upload-{:016x}",
        rand::random::<u64>()
    );
    let client = client_for(&url, "", "davpass", WebDavAuth::Auto);
    let body =
        stream::iter((0..CHUNKS).map(|i| Ok(Bytes::from(vec![(i % 251) as u8; CHUNK])))).boxed();
    let written = bounded(client.write_opts(&p(&name), body, WriteOptions::default()))
        .await
        .unwrap();
    assert_eq!(written.size, (CHUNK * CHUNKS) as u64);
    let back = client.read_to_bytes(&p(&name)).await.unwrap();
    assert_eq!(back.len(), CHUNK * CHUNKS);
    assert!(
        back.chunks(CHUNK)
            .enumerate()
            .all(|(i, c)| c.iter().all(|&b| b == (i % 251) as u8))
    );
    client.delete(&p(&name)).await.unwrap();
    assert!(matches!(
        client.stat(&p(&name)).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn debug_shows_no_password() {
    let builder = WebDavBuilder::new()
        .with_url("webdav://127.0.0.1:8084/x")
        .with_credentials("dav", "digest-secret-pw")
        .with_auth(WebDavAuth::Digest);
    let shown = format!("{builder:?}");
    assert!(
        !shown.contains("digest-secret-pw") && shown.contains("Digest"),
        "{shown}"
    );
    let client = builder.build().unwrap();
    let shown = format!("{client:?} {client}");
    assert!(
        !shown.contains("digest-secret-pw") && shown.contains("<redacted>"),
        "{shown}"
    );
    // After a challenge has been answered, too.
    if let Some(url) = common::server_url(DIGEST) {
        let client = client_for(
            &url,
            "syncengine-tests",
            "digest-secret-pw",
            WebDavAuth::Auto,
        );
        let err = client.list_all(None).await.unwrap_err();
        let shown = format!("{client:?} {err:?} {err}");
        assert!(!shown.contains("digest-secret-pw"), "{shown}");
    }
}

/// A Digest server on a loopback port that calls the first nonce stale and then accepts
/// anything signed with the second; returns its URL and the `Authorization` headers it saw.
async fn stale_nonce_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&req).into_owned();
            let auth = head
                .lines()
                .find_map(|l| l.strip_prefix("authorization: "))
                .unwrap_or("")
                .to_owned();
            log.lock().unwrap().push(auth.clone());
            let (status, extra, body) = if auth.contains(r#"nonce="n2""#) {
                ("207 Multi-Status", "", r#"<D:multistatus xmlns:D="DAV:"/>"#)
            } else if auth.contains(r#"nonce="n1""#) {
                let c = "WWW-Authenticate: Digest realm=\"r\", nonce=\"n2\", qop=\"auth\", stale=true\r\n";
                ("401 Unauthorized", c, "")
            } else {
                let c = "WWW-Authenticate: Digest realm=\"r\", nonce=\"n1\", qop=\"auth\", algorithm=MD5\r\n";
                ("401 Unauthorized", c, "")
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (format!("webdav://{addr}/root"), seen)
}

#[tokio::test]
async fn a_stale_nonce_is_answered_and_the_challenge_cached() {
    let (url, seen) = stale_nonce_server().await;
    let client = WebDavBuilder::new()
        .with_url(url)
        .with_credentials("dav", "stale-secret")
        .build()
        .unwrap();
    assert!(bounded(client.list_all(None)).await.unwrap().is_empty());
    // Unauthenticated, challenged; answered with n1, called stale; answered with n2.
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen[0].is_empty(), "{seen:?}");
        assert!(seen[1].contains(r#"nonce="n1""#) && seen[1].contains("nc=00000001"));
        assert!(seen[2].contains(r#"nonce="n2""#) && seen[2].contains("nc=00000001"));
        assert!(seen.iter().all(|a| !a.contains("stale-secret")));
    }
    // Later requests answer the cached challenge straight away: no extra round trip.
    assert!(bounded(client.list_all(None)).await.unwrap().is_empty());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen[3].contains(r#"nonce="n2""#) && seen[3].contains("nc=00000002"));
}
