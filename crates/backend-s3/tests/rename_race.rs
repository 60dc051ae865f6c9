//! A rename (the trash move) on S3 is a server-side copy, then a delete of the source. A
//! version another machine uploads in between must survive: the delete removes only the
//! version that was copied (`DeleteObject` with `If-Match`), and the rename then fails with
//! `PreconditionFailed`. A proxy on 127.0.0.1 holds one chosen request while the test
//! replaces the source directly on the server (moto and SeaweedFS).

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use syncengine_backend_s3::{S3Builder, S3Client, StoreKind};
use syncengine_core::{Error, RelPath, StorageClient, StorageClientExt};

use common::{MOTO, SEAWEED, Server};

/// Which request to hold: its method and a piece of its path (query included).
#[derive(Default)]
struct Control {
    hold: Mutex<Option<(&'static str, String)>>,
    /// (a request is being held, released)
    gate: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl Control {
    fn hold(&self, method: &'static str, path_part: &str) {
        *self.hold.lock().unwrap() = Some((method, path_part.to_owned()));
    }

    fn wait_held(&self) {
        let mut g = self.gate.lock().unwrap();
        while !g.0 {
            let (next, t) = self.cv.wait_timeout(g, Duration::from_secs(30)).unwrap();
            assert!(!t.timed_out(), "the held request never came");
            g = next;
        }
    }

    fn release(&self) {
        let mut g = self.gate.lock().unwrap();
        g.1 = true;
        self.cv.notify_all();
    }
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
    let matches = {
        let mut hold = control.hold.lock().unwrap();
        let hit = hold.as_ref().is_some_and(|(m, p)| {
            (*m == method && path.contains(p.as_str()))
                    // object_store's own delete: a bulk `POST ?delete` (DeleteObjects).
                    || (*m == "DELETE" && method == "POST" && path.contains("?delete"))
        });
        if hit {
            *hold = None;
        }
        hit
    };
    if matches {
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

/// Starts a proxy in front of `server`; returns its `http://` endpoint.
fn start_proxy(server: Server, control: Arc<Control>) -> String {
    let endpoint = common::endpoint(server);
    let upstream = endpoint
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (upstream, control) = (upstream.clone(), control.clone());
            thread::spawn(move || proxy(stream, &upstream, &control));
        }
    });
    format!("http://{addr}")
}

fn client_at(server: Server, endpoint: &str, prefix: &str, copy_threshold: u64) -> S3Client {
    let (id, secret) = if server == SEAWEED {
        ("weedak".to_owned(), "weedsk".to_owned())
    } else {
        common::s3_keys()
    };
    S3Builder::for_store(StoreKind::S3, "test")
        .with_prefix(prefix)
        .with_endpoint(endpoint)
        .with_region("us-east-1")
        .with_credentials(id, secret)
        .with_allow_http(true)
        .with_ordered_listing(server != SEAWEED)
        .with_multipart_copy_threshold(copy_threshold)
        .build()
        .unwrap()
}

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// The source is replaced while the rename's delete is on its way: the new version stays,
/// the rename fails with `PreconditionFailed`, and the copy holds the version it copied.
async fn replaced_before_the_delete(server: Server) {
    if !common::up(server) {
        return;
    }
    let control = Arc::new(Control::default());
    let proxied = start_proxy(server, control.clone());
    let prefix = common::fresh_prefix("rename-race");
    let limit = syncengine_backend_s3::COPY_OBJECT_LIMIT;
    let engine_side = Arc::new(client_at(server, &proxied, &prefix, limit));
    let other_machine = client_at(server, &common::endpoint(server), &prefix, limit);

    engine_side
        .put(&p("src.txt"), Bytes::from("version 1\n"))
        .await
        .unwrap();
    // Undisturbed, a rename removes its source.
    engine_side
        .put(&p("plain.txt"), Bytes::from("plain\n"))
        .await
        .unwrap();
    engine_side
        .rename(&p("plain.txt"), &p("plain-moved.txt"))
        .await
        .unwrap();
    assert!(
        engine_side
            .stat(&p("plain.txt"))
            .await
            .unwrap_err()
            .is_not_found()
    );

    control.hold("DELETE", "/src.txt");
    let rename = {
        let c = engine_side.clone();
        tokio::spawn(async move { c.rename(&p("src.txt"), &p("trash/src.txt")).await })
    };
    let waiter = control.clone();
    tokio::task::spawn_blocking(move || waiter.wait_held())
        .await
        .unwrap();
    other_machine
        .put(&p("src.txt"), Bytes::from("version 2, another machine\n"))
        .await
        .unwrap();
    control.release();
    let result = rename.await.unwrap();
    assert!(
        matches!(result, Err(Error::PreconditionFailed { .. })),
        "{result:?}"
    );
    assert_eq!(
        other_machine.read_to_bytes(&p("src.txt")).await.unwrap(),
        Bytes::from("version 2, another machine\n"),
        "the version uploaded during the rename was deleted"
    );
    assert_eq!(
        other_machine
            .read_to_bytes(&p("trash/src.txt"))
            .await
            .unwrap(),
        Bytes::from("version 1\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_keeps_a_source_replaced_before_its_delete_moto() {
    replaced_before_the_delete(MOTO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_keeps_a_source_replaced_before_its_delete_seaweedfs() {
    replaced_before_the_delete(SEAWEED).await;
}

/// An object above the multipart-copy threshold is copied in parts. The source is replaced
/// (same size, other bytes) while the second part is on its way: the copy is aborted (no
/// target, not a mix of two versions), the rename fails and the new version stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_copy_of_a_source_replaced_midway_is_aborted() {
    if !common::up(MOTO) {
        return;
    }
    let control = Arc::new(Control::default());
    let proxied = start_proxy(MOTO, control.clone());
    let prefix = common::fresh_prefix("rename-race-big");
    let part = 5 * 1024 * 1024;
    let engine_side = Arc::new(client_at(MOTO, &proxied, &prefix, part));
    let other_machine = client_at(MOTO, &common::endpoint(MOTO), &prefix, part);
    let len = 2 * part as usize + 7;
    let v1 = Bytes::from(vec![1u8; len]);
    let v2 = Bytes::from(vec![2u8; len]);
    other_machine.put(&p("big.bin"), v1).await.unwrap();

    control.hold("PUT", "partNumber=2");
    let rename = {
        let c = engine_side.clone();
        tokio::spawn(async move { c.rename(&p("big.bin"), &p("moved.bin")).await })
    };
    let waiter = control.clone();
    tokio::task::spawn_blocking(move || waiter.wait_held())
        .await
        .unwrap();
    other_machine.put(&p("big.bin"), v2.clone()).await.unwrap();
    control.release();
    let result = rename.await.unwrap();
    assert!(
        matches!(result, Err(Error::PreconditionFailed { .. })),
        "{result:?}"
    );
    assert_eq!(
        other_machine.read_to_bytes(&p("big.bin")).await.unwrap(),
        v2
    );
    let moved = other_machine.stat(&p("moved.bin")).await;
    assert!(
        moved.as_ref().is_err_and(Error::is_not_found),
        "a copy mixing two versions was completed: {moved:?}"
    );
}
