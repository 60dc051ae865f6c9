//! HTTP reads that end early are errors (issue 9, data safety): a `GET` body that ends before
//! the file's size — one without `Content-Length` that ends when the connection closes, or one
//! whose `Content-Length` is cut short — fails the read as transient, never returns a short
//! stream (which a caller without its own length check would store as the file).
//!
//! A proxy on 127.0.0.1 in front of the real Apache test server answers the `GET` itself with
//! the first bytes of the file; the `PROPFIND`s go to Apache, which knows the real size.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use syncengine_core::{ReadOptions, RelPath, StorageClient, StorageClientExt};
use syncengine_test_proxy::{Matcher, Proxy};

use common::{APACHE, dav};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

const CONTENT: &str = "0123456789abcdefghijklmnopqrstuvwxyz";

/// Reads `x.txt` (holding [`CONTENT`] on Apache) through a proxy that answers its `GET` with
/// `answer`; returns the read's outcome, or `None` when Apache is down.
async fn read_through(
    answer: &'static str,
    opts: ReadOptions,
) -> Option<Result<Vec<u8>, syncengine_core::Error>> {
    let url = common::server_url(APACHE)?;
    let path = format!("syncengine-tests/short-read-{:016x}", rand::random::<u64>());
    let direct = dav(&format!("{}/{path}", url.trim_end_matches('/')));
    direct.put(&p("x.txt"), Bytes::from(CONTENT)).await.unwrap();
    let proxy = Proxy::start(&url).unwrap();
    proxy.answer(Matcher::method("GET").path_ends_with("/x.txt"), move |_| {
        answer.to_owned()
    });
    let through = dav(&format!("{}/{path}", proxy.url()));
    let result = async {
        let mut out = Vec::new();
        let mut body = through.read_opts(&p("x.txt"), opts).await?;
        while let Some(chunk) = futures::StreamExt::next(&mut body).await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }
    .await;
    Some(result)
}

fn assert_transient(result: Option<Result<Vec<u8>, syncengine_core::Error>>, what: &str) {
    let Some(result) = result else { return };
    match result {
        Err(e) => assert!(e.is_transient(), "{what}: not transient: {e}"),
        Ok(got) => panic!(
            "{what}: a short read returned {} of {} bytes",
            got.len(),
            CONTENT.len()
        ),
    }
}

/// No `Content-Length`, no chunked framing: the body ends when the connection closes, after
/// 10 of the file's 36 bytes.
#[tokio::test]
async fn a_body_that_ends_at_the_close_before_the_size_is_an_error() {
    let answer =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n0123456789";
    assert_transient(
        read_through(answer, ReadOptions::default()).await,
        "whole file",
    );
    // A range read answered with the whole (short) file: sliced, still short.
    assert_transient(
        read_through(answer, ReadOptions::default().with_range(5..30)).await,
        "range",
    );
}

/// A partial answer without `Content-Length` whose body ends before its `Content-Range`.
#[tokio::test]
async fn a_partial_body_that_ends_before_its_range_is_an_error() {
    let answer = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 5-29/36\r\n\
                  Connection: close\r\n\r\n56789";
    assert_transient(
        read_through(answer, ReadOptions::default().with_range(5..30)).await,
        "206",
    );
}

/// `Content-Length` says 36, the connection closes after 10.
#[tokio::test]
async fn a_body_cut_short_of_its_content_length_is_an_error() {
    let answer = "HTTP/1.1 200 OK\r\nContent-Length: 36\r\nConnection: close\r\n\r\n0123456789";
    assert_transient(
        read_through(answer, ReadOptions::default()).await,
        "Content-Length",
    );
}

/// The control: a whole body without `Content-Length` that ends at the close is read whole.
#[tokio::test]
async fn a_whole_body_that_ends_at_the_close_is_read() {
    let answer = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n0123456789abcdefghijklmnopqrstuvwxyz";
    let Some(result) = read_through(answer, ReadOptions::default()).await else {
        return;
    };
    assert_eq!(result.unwrap(), CONTENT.as_bytes());
}
