// Tests: failing loudly is the point.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::{Matcher, Proxy, Request, edit};

/// A server answering every request with its own request line and a `getetag` element.
fn upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            // The whole head is read: closing with unread bytes would reset the connection.
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut rest = String::new();
            while reader.read_line(&mut rest).unwrap_or(0) > 0 && !rest.ends_with("\r\n\r\n") {}
            let body = format!("{}<D:getetag>\"e1\"</D:getetag>", line.trim_end());
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nETag: \"e1\"\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/some/root")
}

fn get(proxy: &Proxy, method: &str, target: &str) -> String {
    let mut s = TcpStream::connect(proxy.addr()).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

#[test]
fn matchers_combine_conditions_and_alternatives() {
    let m = Matcher::method("PUT")
        .path_ends_with("/x.txt")
        .or(Matcher::method("POST").path_contains("?delete"))
        .path_lacks(".tmp");
    assert!(m.matches(&Request::new("PUT", "/b/x.txt")));
    assert!(m.matches(&Request::new("POST", "/b?delete")));
    assert!(!m.matches(&Request::new("PUT", "/b/.tmp/x.txt")));
    assert!(!m.matches(&Request::new("GET", "/b/x.txt")));
    assert!(Matcher::any().matches(&Request::new("MOVE", "/")));
}

#[test]
fn forwards_and_edits_answers_in_place() {
    let proxy = Proxy::start(&upstream()).unwrap();
    assert!(get(&proxy, "GET", "/a").contains("ETag: \"e1\""));
    proxy.send_as_http10(Matcher::method("PROPFIND"));
    proxy.edit_answers(Matcher::any(), |a| {
        edit::rename_header(a, "etag", "X-Tg");
        edit::blank_dav_property(a, "getetag");
    });
    let answer = get(&proxy, "PROPFIND", "/a/");
    assert!(answer.contains("X-Tg: \"e1\""), "{answer}");
    assert!(answer.contains("PROPFIND /a/ HTTP/1.0"), "{answer}");
    assert!(!answer.contains("getetag"), "{answer}");
    let mut blanked = b"<ETag>1</ETag>,<ETag>2</ETag>".to_vec();
    edit::blank_elements(&mut blanked, b"<ETag>", b"</ETag>");
    assert_eq!(&blanked[..], &b"              ,              "[..]);
}

#[test]
fn answers_and_fails_without_the_server() {
    let proxy = Proxy::start("127.0.0.1:1").unwrap();
    proxy.fail(Matcher::method("PROPFIND"), 503);
    proxy.answer(Matcher::method("GET"), |r| {
        format!(
            "HTTP/1.1 301 X\r\nLocation: {}x/\r\nContent-Length: 0\r\n\r\n",
            r.target
        )
    });
    assert!(get(&proxy, "PROPFIND", "/").starts_with("HTTP/1.1 503 "));
    assert!(get(&proxy, "GET", "/d/").contains("Location: /d/x/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_one_request_until_released_and_delays() {
    let proxy = std::sync::Arc::new(Proxy::start(&upstream()).unwrap());
    proxy.hold(Matcher::method("PUT").path_ends_with("/x"));
    let p = proxy.clone();
    let put = thread::spawn(move || get(&p, "PUT", "/d/x"));
    assert!(proxy.held_within(1, Duration::from_secs(10)).await);
    assert!(!put.is_finished());
    // Only one request is held: the next one passes.
    let p = proxy.clone();
    let second = tokio::task::spawn_blocking(move || get(&p, "PUT", "/d/x"));
    assert!(second.await.unwrap().contains("PUT /d/x"));
    proxy.release();
    assert!(put.join().unwrap().contains("PUT /d/x"));
    assert_eq!(proxy.held(), 1);
    assert!(!proxy.held_within(2, Duration::from_millis(50)).await);

    proxy.delay(Matcher::method("GET"), Duration::from_millis(300));
    let p = proxy.clone();
    let start = Instant::now();
    let got = tokio::task::spawn_blocking(move || get(&p, "GET", "/"))
        .await
        .unwrap();
    assert!(got.contains("GET /") && start.elapsed() >= Duration::from_millis(300));
}

#[test]
fn clear_forwards_again() {
    let proxy = Proxy::start(&upstream()).unwrap();
    proxy.fail(Matcher::method("MOVE"), 500);
    proxy.edit_answers(Matcher::any(), |a| a.fill(b' '));
    assert!(get(&proxy, "MOVE", "/a").starts_with("HTTP/1.1 500 "));
    assert!(!get(&proxy, "GET", "/a").contains("HTTP/1.1"));
    proxy.clear();
    assert!(get(&proxy, "MOVE", "/a").contains("MOVE /a"));
    assert!(get(&proxy, "GET", "/a").starts_with("HTTP/1.1 200 "));
}

#[test]
fn cut_after_closes_the_connection_mid_answer() {
    let proxy = Proxy::start(&upstream()).unwrap();
    proxy.cut_after(Matcher::method("GET"), super::Direction::Answer, 20);
    // The client sees the first 20 bytes, then the end of the connection (a stall would
    // never end the read).
    let answer = get(&proxy, "GET", "/a");
    assert_eq!(answer, "HTTP/1.1 200 OK\r\nETa");
    // Other requests pass whole.
    assert!(get(&proxy, "PUT", "/a").contains("PUT /a"));
}
