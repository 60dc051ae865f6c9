//! Red-team (issue 8, round 3): a delete propagated to a WebDAV server moves the file to the
//! trash with a `MOVE` that names no version (no `If` header), so a version another machine
//! saves between the engine's check and the `MOVE` goes to the trash instead — the D1 race
//! that S3 fixed with a conditional delete (2221032).
//!
//! A small proxy on 127.0.0.1 in front of the Apache test server holds the engine's `MOVE` of
//! `doc.txt` until the other machine's save (sent straight to the server) is done.

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

#[derive(Default)]
struct Control {
    /// Hold the next MOVE of a path ending in `/doc.txt`.
    hold_move: AtomicBool,
    /// (a MOVE is held, the test released it)
    gate: Mutex<(bool, bool)>,
    cv: Condvar,
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
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method == "MOVE"
        && path.ends_with("/doc.txt")
        && control.hold_move.swap(false, Ordering::SeqCst)
    {
        let mut g = control.gate.lock().unwrap();
        g.0 = true;
        control.cv.notify_all();
        while !g.1 {
            g = control.cv.wait(g).unwrap();
        }
    }
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
    let mut answer = Vec::new();
    let _ = up.read_to_end(&mut answer);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_saved_during_a_trash_move_stays_at_its_path() {
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
    let addr = start_proxy(upstream, control.clone());
    let dir = format!("syncengine-tests/redteam3-{:016x}", rand::random::<u64>());
    let through_proxy = Arc::new(dav(format!("http://{addr}/{dir}")));
    let other_machine = dav(format!("{}/{dir}", url.trim_end_matches('/')));

    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(&local_root).unwrap();
    for i in 0..5 {
        std::fs::write(local_root.join(format!("keep{i}.txt")), "k").unwrap();
    }
    std::fs::write(local_root.join("doc.txt"), "version 1\n").unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        through_proxy.clone(),
        SyncMode::TwoWay,
    );
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 6, "{stats:?}");

    // The laptop deletes doc.txt; the run checks the server's doc.txt (still version 1) and
    // moves it to the trash — held by the proxy while another machine saves version 2.
    std::fs::remove_file(local_root.join("doc.txt")).unwrap();
    control.hold_move.store(true, Ordering::SeqCst);
    let run = {
        let (engine, pair) = (engine.clone(), pair.clone());
        tokio::spawn(async move { engine.sync_pair(&pair).await })
    };
    let waiter = control.clone();
    tokio::task::spawn_blocking(move || {
        let mut g = waiter.gate.lock().unwrap();
        while !g.0 {
            let (next, t) = waiter.cv.wait_timeout(g, Duration::from_secs(30)).unwrap();
            assert!(!t.timed_out(), "the engine never moved doc.txt");
            g = next;
        }
    })
    .await
    .unwrap();
    let saved = "version 2, saved on the other machine meanwhile\n";
    other_machine
        .write_opts(
            &RelPath::new("doc.txt").unwrap(),
            bytes_stream(Bytes::from(saved)),
            WriteOptions::default().with_mode(WriteMode::Overwrite),
        )
        .await
        .unwrap();
    {
        let mut g = control.gate.lock().unwrap();
        g.1 = true;
        control.cv.notify_all();
    }
    let stats = run.await.unwrap();
    let at_path = other_machine
        .read_to_bytes(&RelPath::new("doc.txt").unwrap())
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    assert_eq!(
        at_path.as_deref(),
        Some(saved),
        "the version saved during the delete went to the trash and the delete was reported \
         (run: {stats:?})"
    );
}
