//! Deletes and overwrites fail closed (issue 9, data safety): the lookup a `DELETE` or an
//! `Overwrite: T` depends on ("is there a file?", "is it a collection?") must prove its answer.
//! A lookup that fails — a redirect that leads nowhere, a 409 that no file parent explains, a
//! 5xx — is an error, never "absent" and never "not a collection".
//!
//! A proxy on 127.0.0.1 in front of the real Apache test server fails the chosen `PROPFIND`.
//! Old code took a 301 or 409 answer to the lookup before a delete as "already gone" (the
//! delete reported success and the file stayed), and went ahead with `Overwrite: T` when the
//! "is it a collection?" lookup failed — which deletes a whole folder tree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use syncengine_backend_webdav::WebDavClient;
use syncengine_core::{RelPath, StorageClient, StorageClientExt, TransferOptions};
use syncengine_test_proxy::{Matcher, Proxy};

use common::{APACHE, dav};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// A client on a fresh collection of Apache straight, one through a proxy in front of it, and
/// the proxy; `None` when Apache is down.
fn setup(tag: &str) -> Option<(WebDavClient, WebDavClient, Proxy)> {
    let url = common::server_url(APACHE)?;
    let path = format!("syncengine-tests/{tag}-{:016x}", rand::random::<u64>());
    let proxy = Proxy::start(&url).unwrap();
    let direct = dav(&format!("{}/{path}", url.trim_end_matches('/')));
    let through = dav(&format!("{}/{path}", proxy.url()));
    Some((direct, through, proxy))
}

/// The answers to a lookup that do not prove a file is absent: a delete that meets one fails,
/// and the file stays.
#[tokio::test]
async fn a_delete_whose_lookup_fails_is_an_error_not_done() {
    let Some((direct, through, proxy)) = setup("fc-delete") else {
        return;
    };
    direct.put(&p("x.txt"), Bytes::from("keep")).await.unwrap();
    for status in [301, 409, 400, 500] {
        proxy.clear();
        proxy.fail(Matcher::method("PROPFIND").path_ends_with("/x.txt"), status);
        let result = through.delete(&p("x.txt")).await;
        assert!(
            result.is_err(),
            "{status}: a delete whose lookup failed reported success"
        );
        assert_eq!(
            direct.read_to_bytes(&p("x.txt")).await.unwrap(),
            "keep",
            "{status}"
        );
    }
    // The server well-behaved again: the delete goes through.
    proxy.clear();
    through.delete(&p("x.txt")).await.unwrap();
    assert!(direct.stat(&p("x.txt")).await.unwrap_err().is_not_found());
}

/// What a lookup does prove absent stays a successful no-op: a missing file, a path below a
/// file (Apache answers 409 or 400, and the parent is seen to be a file), a collection.
#[tokio::test]
async fn deletes_of_what_is_proven_absent_still_succeed() {
    let Some((direct, through, _proxy)) = setup("fc-absent") else {
        return;
    };
    direct.put(&p("f.txt"), Bytes::from("f")).await.unwrap();
    direct
        .put(&p("dir/in.txt"), Bytes::from("in"))
        .await
        .unwrap();
    through.delete(&p("missing.txt")).await.unwrap();
    through.delete(&p("f.txt/below")).await.unwrap();
    through.delete(&p("dir")).await.unwrap();
    assert_eq!(direct.read_to_bytes(&p("f.txt")).await.unwrap(), "f");
    assert_eq!(direct.read_to_bytes(&p("dir/in.txt")).await.unwrap(), "in");
}

/// An overwrite (a write, a copy) onto a collection whose "is it a collection?" lookup fails
/// does not go ahead: `Overwrite: T` would delete the collection and everything in it.
#[tokio::test]
async fn an_overwrite_whose_collection_lookup_fails_does_not_go_ahead() {
    let Some((direct, through, proxy)) = setup("fc-overwrite") else {
        return;
    };
    direct
        .put(&p("dir/precious.txt"), Bytes::from("precious"))
        .await
        .unwrap();
    direct.put(&p("src.txt"), Bytes::from("src")).await.unwrap();
    for status in [500, 301, 409] {
        proxy.clear();
        proxy.fail(Matcher::method("PROPFIND").path_ends_with("/dir"), status);
        let write = through.put(&p("dir"), Bytes::from("new")).await;
        assert!(write.is_err(), "{status}: the write went ahead: {write:?}");
        let copy = through
            .copy_opts(
                &p("src.txt"),
                &p("dir"),
                TransferOptions::default().with_overwrite(true),
            )
            .await;
        assert!(copy.is_err(), "{status}: the copy went ahead: {copy:?}");
        assert_eq!(
            direct.read_to_bytes(&p("dir/precious.txt")).await.unwrap(),
            "precious",
            "{status}: the collection was replaced"
        );
    }
    // Well-behaved: an overwrite of a file still replaces it, one of a collection is refused.
    proxy.clear();
    through.put(&p("src.txt"), Bytes::from("v2")).await.unwrap();
    assert_eq!(direct.read_to_bytes(&p("src.txt")).await.unwrap(), "v2");
    assert!(through.put(&p("dir"), Bytes::from("new")).await.is_err());
    assert_eq!(
        direct.read_to_bytes(&p("dir/precious.txt")).await.unwrap(),
        "precious"
    );
}

/// Pruning on a server that gives collections an ETag (Apache): the `DELETE` of the emptied
/// folder carries an `If` on it, so a file another machine uploads into the folder between the
/// emptiness check and the `DELETE` makes the server refuse it, and the file survives.
#[tokio::test]
async fn pruning_never_deletes_a_folder_that_gained_a_file_on_apache() {
    let Some((direct, through, proxy)) = setup("fc-prune") else {
        return;
    };
    direct.put(&p("sub/a.txt"), Bytes::from("a")).await.unwrap();
    direct.put(&p("top.txt"), Bytes::from("top")).await.unwrap();
    proxy.hold(Matcher::method("DELETE").path_ends_with("/sub/"));
    let delete = tokio::spawn(async move { through.delete(&p("sub/a.txt")).await });
    assert!(
        proxy
            .held_within(1, std::time::Duration::from_secs(60))
            .await,
        "the DELETE of the emptied folder never came"
    );
    direct
        .put(&p("sub/new.txt"), Bytes::from("new"))
        .await
        .unwrap();
    proxy.release();
    delete.await.unwrap().unwrap();
    assert!(
        direct
            .stat(&p("sub/a.txt"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(
        direct.read_to_bytes(&p("sub/new.txt")).await.unwrap(),
        "new"
    );
}
