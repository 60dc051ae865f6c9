//! A sub-collection the server will not list is unknown, never empty (issue 8, behaviour 8).
//!
//! A tiny hostile server on 127.0.0.1 lists a root with `a.txt`, `sub/` and `sub.txt`, then
//! answers `sub/`'s own PROPFIND with an error status, a redirect, or a 207 whose self-entry
//! is not a collection. Old code listed `sub` as empty (its files looked deleted, and the
//! engine deleted their copies on the other side) or ended the whole listing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use futures::StreamExt;
use syncengine_backend_webdav::WebDavBuilder;
use syncengine_core::{Error, StorageClient};

const FILE_PROPS: &str = "<D:resourcetype/><D:getcontentlength>3</D:getcontentlength>\
    <D:getlastmodified>Mon, 01 Jan 2024 00:00:00 GMT</D:getlastmodified>";
const DIR_PROPS: &str = "<D:resourcetype><D:collection/></D:resourcetype>";

fn multistatus(entries: &[(&str, &str)]) -> String {
    let mut body =
        String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><D:multistatus xmlns:D=\"DAV:\">");
    for (href, props) in entries {
        body.push_str(&format!(
            "<D:response><D:href>{href}</D:href><D:propstat><D:prop>{props}</D:prop>\
             <D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
        ));
    }
    body.push_str("</D:multistatus>");
    body
}

/// How the server answers `sub/`'s PROPFIND.
#[derive(Clone, Copy, Debug)]
enum Sub {
    Healthy,
    Status(u16),
    Redirect,
    NotACollection,
    NoSelfEntry,
    /// The root itself fails.
    RootFails,
}

fn respond(stream: &mut TcpStream, status: u16, extra: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/xml; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
}

fn serve(mut stream: TcpStream, sub: Sub) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    if method != "PROPFIND" {
        return respond(&mut stream, 405, "", "");
    }
    match (path.as_str(), sub) {
        ("/dav/", Sub::RootFails) => respond(&mut stream, 500, "", ""),
        ("/dav/", _) => {
            let root = multistatus(&[
                ("/dav/", DIR_PROPS),
                ("/dav/a.txt", FILE_PROPS),
                ("/dav/sub/", DIR_PROPS),
                ("/dav/sub.txt", FILE_PROPS),
            ]);
            respond(&mut stream, 207, "", &root);
        }
        ("/dav/sub/", Sub::Healthy) => {
            let ms = multistatus(&[("/dav/sub/", DIR_PROPS), ("/dav/sub/x", FILE_PROPS)]);
            respond(&mut stream, 207, "", &ms);
        }
        ("/dav/sub/", Sub::Status(code)) => respond(&mut stream, code, "", ""),
        ("/dav/sub/", Sub::Redirect) => {
            respond(&mut stream, 301, "Location: /dav/elsewhere/\r\n", "")
        }
        ("/dav/sub/", Sub::NotACollection) => {
            let ms = multistatus(&[("/dav/sub/", FILE_PROPS)]);
            respond(&mut stream, 207, "", &ms);
        }
        ("/dav/sub/", Sub::NoSelfEntry) => {
            let ms = multistatus(&[("/dav/sub/x", FILE_PROPS)]);
            respond(&mut stream, 207, "", &ms);
        }
        _ => respond(&mut stream, 404, "", ""),
    }
}

/// Starts the server; returns the root URL.
fn hostile_server(sub: Sub) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream, sub));
        }
    });
    format!("http://{addr}/dav/")
}

/// Lists the whole tree: `Ok(path)` for files, `Err(path)` for unlisted items; a terminal
/// error fails the test.
async fn listing(sub: Sub) -> Vec<Result<String, String>> {
    let client = WebDavBuilder::new()
        .with_url(hostile_server(sub))
        .build()
        .unwrap();
    let mut out = Vec::new();
    let mut stream = client.list(None);
    while let Some(item) = stream.next().await {
        match item {
            Ok(entry) => out.push(Ok(entry.path.as_str().to_owned())),
            Err(Error::Unlisted {
                path,
                contents_only: false,
                ..
            }) => out.push(Err(path)),
            Err(e) => panic!("{sub:?}: the listing ended with {e}"),
        }
    }
    out
}

/// The control: a healthy server's tree lists in canonical order.
#[tokio::test]
async fn healthy_sub_collection_lists_its_files() {
    assert_eq!(
        listing(Sub::Healthy).await,
        vec![
            Ok("a.txt".to_owned()),
            Ok("sub.txt".to_owned()),
            Ok("sub/x".to_owned())
        ]
    );
}

/// Every failed or doubtful sub-collection listing is an unlisted `sub`, at `sub`'s place
/// (before `sub.txt`), and the rest of the tree still lists.
#[tokio::test]
async fn failing_sub_collection_is_unlisted_not_empty() {
    for sub in [
        Sub::Status(500),
        Sub::Status(503),
        Sub::Status(404),
        Sub::Status(409),
        Sub::Status(400),
        Sub::Status(403),
        Sub::Status(200),
        Sub::Redirect,
        Sub::NotACollection,
        Sub::NoSelfEntry,
    ] {
        assert_eq!(
            listing(sub).await,
            vec![
                Ok("a.txt".to_owned()),
                Err("sub".to_owned()),
                Ok("sub.txt".to_owned())
            ],
            "{sub:?}"
        );
    }
}

/// The root's own failure still ends the listing with an error.
#[tokio::test]
async fn failing_root_fails_the_listing() {
    let client = WebDavBuilder::new()
        .with_url(hostile_server(Sub::RootFails))
        .build()
        .unwrap();
    let items: Vec<_> = client.list(None).collect().await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(matches!(&items[0], Err(e) if !e.is_unlisted()), "{items:?}");
}
