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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use syncengine_backend_local::LocalClient;
use syncengine_backend_webdav::WebDavBuilder;
use syncengine_core::{
    RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair, WriteMode,
    WriteOptions, bytes_stream,
};

use common::APACHE;

/// What the proxy shares with the test.
#[derive(Default)]
struct Control {
    /// Strip ETags from answers.
    no_etags: AtomicBool,
    /// Hold the next PUT of a temporary file until `released`.
    hold_temp_put: AtomicBool,
    /// Hold the next DELETE of a collection (`…/sub/`) until `released`.
    hold_collection_delete: AtomicBool,
    /// (a temp PUT is being held, the test released it)
    gate: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl Control {
    fn wait_held(&self) {
        let mut g = self.gate.lock().unwrap();
        while !g.0 {
            let (next, timeout) = self.cv.wait_timeout(g, Duration::from_secs(30)).unwrap();
            assert!(
                !timeout.timed_out(),
                "the engine never uploaded a temp file"
            );
            g = next;
        }
    }

    fn release(&self) {
        let mut g = self.gate.lock().unwrap();
        g.1 = true;
        self.cv.notify_all();
    }
}

/// Blanks every `<…getetag>…</…getetag>` element (same length, so framing stays valid).
fn strip_getetag(body: &mut [u8]) {
    let needle = b"getetag>";
    let mut i = 0;
    while let Some(pos) = find(&body[i..], needle).map(|p| p + i) {
        // The opening tag starts at the `<` before the needle.
        let Some(open) = body[..pos].iter().rposition(|&b| b == b'<') else {
            break;
        };
        if body.get(open + 1) == Some(&b'/') {
            i = pos + needle.len();
            continue;
        }
        let after_open = pos + needle.len();
        let Some(close_needle) = find(&body[after_open..], needle).map(|p| p + after_open) else {
            break;
        };
        let end = close_needle + needle.len();
        for b in &mut body[open..end] {
            *b = b' ';
        }
        i = end;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn proxy(client: TcpStream, upstream: &str, control: &Control) {
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
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let held = (method == "PUT"
        && path.contains(".syncengine-tmp-")
        && control.hold_temp_put.swap(false, Ordering::SeqCst))
        || (method == "DELETE"
            && path.ends_with("/sub/")
            && control.hold_collection_delete.swap(false, Ordering::SeqCst));
    if held {
        let mut g = control.gate.lock().unwrap();
        g.0 = true;
        control.cv.notify_all();
        while !g.1 {
            g = control.cv.wait(g).unwrap();
        }
    }
    let strip = control.no_etags.load(Ordering::SeqCst);
    let mut up = TcpStream::connect(upstream).unwrap();
    for (i, line) in head.iter().enumerate() {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            up.write_all(b"Connection: close\r\n").unwrap();
        }
        if i == 0 && strip && method == "PROPFIND" {
            // HTTP/1.0: no chunked answer, so the body can be edited in place.
            up.write_all(line.replace("HTTP/1.1", "HTTP/1.0").as_bytes())
                .unwrap();
            continue;
        }
        up.write_all(line.as_bytes()).unwrap();
    }
    let mut up_write = up.try_clone().unwrap();
    thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut up_write);
    });
    let mut answer = Vec::new();
    let _ = up.read_to_end(&mut answer);
    if strip {
        let split = find(&answer, b"\r\n\r\n").map_or(answer.len(), |p| p + 4);
        let (headers, body) = answer.split_at_mut(split);
        // `ETag:` → `X-Tg:` (same length).
        let mut at = 0;
        while let Some(p) = find(&headers[at..], b"\r\nETag:").map(|p| p + at) {
            headers[p + 2..p + 7].copy_from_slice(b"X-Tg:");
            at = p + 7;
        }
        let mut lower = 0;
        while let Some(p) = find(&headers[lower..], b"\r\netag:").map(|p| p + lower) {
            headers[p + 2..p + 7].copy_from_slice(b"X-Tg:");
            lower = p + 7;
        }
        strip_getetag(body);
    }
    let mut client = client;
    let _ = client.write_all(&answer);
    let _ = client.shutdown(std::net::Shutdown::Both);
}

fn start_proxy(upstream: String, control: Arc<Control>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (upstream, control) = (upstream.clone(), control.clone());
            thread::spawn(move || proxy(stream, &upstream, &control));
        }
    });
    addr
}

fn dav(url: String) -> syncengine_backend_webdav::WebDavClient {
    let mut builder = WebDavBuilder::from_env().with_url(url);
    if std::env::var(syncengine_backend_webdav::ENV_USER).is_err() {
        builder = builder.with_credentials("dav", "davpass");
    }
    builder.build().unwrap()
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
    let upstream = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let control = Arc::new(Control::default());
    control.no_etags.store(no_etags, Ordering::SeqCst);
    let addr = start_proxy(upstream, control.clone());
    let dir = format!("syncengine-tests/redteam2-{:016x}", rand::random::<u64>());
    let through_proxy = Arc::new(dav(format!("http://{addr}/{dir}")));
    let other_machine = dav(format!("{}/{dir}", url.trim_end_matches('/')));

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
    control.hold_temp_put.store(true, Ordering::SeqCst);
    let run = {
        let (engine, pair) = (engine.clone(), pair.clone());
        tokio::spawn(async move { engine.sync_pair(&pair).await })
    };
    let waiter = control.clone();
    tokio::task::spawn_blocking(move || waiter.wait_held())
        .await
        .unwrap();
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
    control.release();
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
    let upstream = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let control = Arc::new(Control::default());
    let addr = start_proxy(upstream, control.clone());
    let dir = format!(
        "syncengine-tests/redteam2-prune-{:016x}",
        rand::random::<u64>()
    );
    let through_proxy = Arc::new(dav(format!("http://{addr}/{dir}")));
    let other_machine = dav(format!("{}/{dir}", url.trim_end_matches('/')));

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
    control.hold_collection_delete.store(true, Ordering::SeqCst);
    let run = {
        let (engine, pair) = (engine.clone(), pair.clone());
        tokio::spawn(async move { engine.sync_pair(&pair).await })
    };
    let waiter = control.clone();
    tokio::task::spawn_blocking(move || waiter.wait_held())
        .await
        .unwrap();
    let upload = "uploaded by the other machine into sub/";
    other_machine
        .write_opts(
            &RelPath::new("sub/new.txt").unwrap(),
            bytes_stream(Bytes::from(upload)),
            WriteOptions::default().with_mode(WriteMode::Create),
        )
        .await
        .unwrap();
    control.release();
    let stats = run.await.unwrap();
    let remote = remote_files(&other_machine).await;
    assert!(
        remote.iter().any(|(_, c)| c == upload),
        "sub/new.txt, uploaded while the engine pruned sub/, was deleted with the folder; \
         run: {stats:?}; server holds {remote:?}"
    );
}
