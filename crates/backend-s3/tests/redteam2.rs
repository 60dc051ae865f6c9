//! Red-team (issue 8, round 2): a delete on S3 racing another machine's upload.
//!
//! On object stores a move to the trash is a server-side copy, then a `DELETE` of the object.
//! The `DELETE` is unconditional: a version another machine uploads between the copy and the
//! delete (laptop A ↔ S3 ↔ laptop B is a supported topology) is removed from the bucket, and
//! the trash holds only the version A listed. The propagated delete destroys an edit the
//! engine never saw ("a delete never destroys an edit the engine has not seen on both sides").
//!
//! A proxy on 127.0.0.1 in front of moto holds the delete of the user's object until the
//! test has uploaded B's version directly to moto.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use syncengine_backend_local::LocalClient;
use syncengine_backend_s3::{S3Builder, StoreKind};
use syncengine_core::{
    RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair, WriteMode,
    WriteOptions, bytes_stream,
};
use syncengine_test_proxy::{Matcher, Proxy, edit};

use common::MOTO;

/// The next PUT of the user's `x.txt` (not the engine's own files).
fn put_of_x() -> Matcher {
    Matcher::method("PUT")
        .path_ends_with("/x.txt")
        .path_lacks(".syncengine")
}

fn moto_at(endpoint: &str, prefix: &str) -> syncengine_backend_s3::S3Client {
    let (id, secret) = common::s3_keys();
    S3Builder::for_store(StoreKind::S3, "test")
        .with_prefix(prefix)
        .with_endpoint(endpoint)
        .with_region("us-east-1")
        .with_credentials(id, secret)
        .with_allow_http(true)
        .build()
        .unwrap()
}

/// Every object under the prefix, the trash included, as contents.
async fn all_contents(client: &dyn StorageClient) -> Vec<String> {
    use futures::StreamExt;
    let mut out = Vec::new();
    for prefix in [None, Some(RelPath::new(".syncengine/trash").unwrap())] {
        let mut list = client.list(prefix.as_ref());
        while let Some(e) = list.next().await {
            let Ok(e) = e else { break };
            let body = client.read_to_bytes(&e.path).await.unwrap();
            out.push(String::from_utf8_lossy(&body).into_owned());
        }
    }
    out
}

#[tokio::test]
async fn a_version_uploaded_while_the_engine_trashes_the_object_survives() {
    if !common::up(MOTO) {
        return;
    }
    let endpoint = common::endpoint(MOTO);
    let proxy = Proxy::start(&endpoint).unwrap();
    let prefix = common::fresh_prefix("redteam2");
    let through_proxy = Arc::new(moto_at(&proxy.url(), &prefix));
    let laptop_b = moto_at(&endpoint, &prefix);

    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(&local_root).unwrap();
    std::fs::write(local_root.join("notes.txt"), "version 1\n").unwrap();
    std::fs::write(local_root.join("other.txt"), "keeps the side non-empty\n").unwrap();
    std::fs::write(local_root.join("third.txt"), "and under max-delete\n").unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        through_proxy.clone(),
        SyncMode::TwoWay,
    );
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 3, "{stats:?}");

    // Laptop A deletes notes.txt; its next run moves the object to the trash.
    std::fs::remove_file(local_root.join("notes.txt")).unwrap();
    // object_store deletes one object with a bulk `POST ?delete` (DeleteObjects).
    proxy.hold(
        Matcher::method("DELETE")
            .path_ends_with("/notes.txt")
            .or(Matcher::method("POST").path_contains("?delete")),
    );
    let run = {
        let (engine, pair) = (engine.clone(), pair.clone());
        tokio::spawn(async move { engine.sync_pair(&pair).await })
    };
    assert!(
        proxy.held_within(1, Duration::from_secs(30)).await,
        "the engine never deleted notes.txt"
    );
    // Laptop B saves its edit of notes.txt now (after A's copy to the trash).
    let edit = "version 2, saved on laptop B\n";
    laptop_b
        .write_opts(
            &RelPath::new("notes.txt").unwrap(),
            bytes_stream(Bytes::from(edit)),
            WriteOptions::default().with_mode(WriteMode::Overwrite),
        )
        .await
        .unwrap();
    proxy.release();
    let stats = run.await.unwrap();
    let on_server = all_contents(&laptop_b).await;
    assert!(
        on_server.iter().any(|c| c == edit),
        "laptop B's version, uploaded while A trashed notes.txt, is gone from the bucket \
         (not at its path, not in the trash); A's run: {stats:?}; bucket holds {on_server:?}"
    );
}

/// Two long names that differ only near their end get the same conflict name once it is cut
/// to 255 bytes (`with_stem_suffix_max` cuts the stem). The engine checks the name is free on
/// both sides, then preserves each loser there; on S3 that preserve is a HEAD, then a
/// CopyObject — so two conflicts settled at the same time both find the name free and the
/// second copy replaces the first kept loser. (On local disk the hard link is create-only and
/// the second conflict just fails.) A race between concurrent actions: tried a few times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_conflicts_whose_cut_conflict_names_collide_keep_both_losers() {
    if !common::up(MOTO) {
        return;
    }
    let endpoint = common::endpoint(MOTO);
    let mut lost = Vec::new();
    for round in 0..5 {
        let prefix = common::fresh_prefix("redteam2-long");
        let remote = Arc::new(moto_at(&endpoint, &prefix));
        let tmp = tempfile::tempdir().unwrap();
        let local_root = tmp.path().join("local");
        std::fs::create_dir_all(&local_root).unwrap();
        let stem = "x".repeat(240);
        let names: Vec<String> = (0..6).map(|i| format!("{stem}-{i}.txt")).collect();
        for n in &names {
            std::fs::write(local_root.join(n), "base").unwrap();
        }
        let engine = SyncEngine::new(tmp.path().join("state"));
        let pair = SyncPair::new(
            Arc::new(LocalClient::new(&local_root)),
            remote.clone(),
            SyncMode::TwoWay,
        );
        engine.sync_pair(&pair).await.unwrap();
        // Both sides edit every file; the local edits are newer and win.
        let mut losers = Vec::new();
        for n in &names {
            let loser = format!("remote edit of {n}");
            remote
                .write_opts(
                    &RelPath::new(n.as_str()).unwrap(),
                    bytes_stream(Bytes::from(loser.clone())),
                    WriteOptions::default().with_mode(WriteMode::Overwrite),
                )
                .await
                .unwrap();
            losers.push(loser);
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        for n in &names {
            std::fs::write(local_root.join(n), format!("local edit of {n}")).unwrap();
        }
        let stats = engine.sync_pair(&pair).await.unwrap();
        let mut everywhere = all_contents(remote.as_ref()).await;
        for e in std::fs::read_dir(&local_root).unwrap().flatten() {
            if e.path().is_file() {
                everywhere.push(std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        for l in &losers {
            if !everywhere.contains(l) {
                lost.push(format!("round {round}: {l:.40}… ({stats:?})"));
            }
        }
    }
    assert!(lost.is_empty(), "kept conflict losers vanished: {lost:#?}");
}

/// PUTs a zero-byte object with a raw, unsigned request (moto accepts them): the way the AWS
/// console's "Create folder" (and many S3 GUIs) make a folder marker `photos/`.
fn put_raw(endpoint: &str, key: &str) {
    let authority = endpoint.split("://").nth(1).unwrap().trim_end_matches('/');
    let mut s = TcpStream::connect(authority).unwrap();
    write!(
        s,
        "PUT /test/{key} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Folder markers (`photos/`, zero bytes) are everywhere on S3. The listing reports them as
/// files named `photos`, next to the folder `photos/…` — a pair of names no local disk can
/// hold — and every run fails on them ("photos: s3: not found"), exit 1 forever: the pair never
/// has a clean run, so a real error hides among these. A marker is not a file to sync.
#[tokio::test]
async fn folder_markers_do_not_fail_every_run() {
    if !common::up(MOTO) {
        return;
    }
    let endpoint = common::endpoint(MOTO);
    let prefix = common::fresh_prefix("redteam2-marker");
    put_raw(&endpoint, &format!("{prefix}/photos/"));
    put_raw(&endpoint, &format!("{prefix}/empty/"));
    let remote = Arc::new(moto_at(&endpoint, &prefix));
    remote
        .write_opts(
            &RelPath::new("photos/1.jpg").unwrap(),
            bytes_stream(Bytes::from("one")),
            WriteOptions::default().with_mode(WriteMode::Create),
        )
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(&local_root).unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        remote,
        SyncMode::TwoWay,
    );
    let first = engine.sync_pair(&pair).await.unwrap();
    let second = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(local_root.join("photos/1.jpg")).unwrap(),
        "one"
    );
    assert!(
        first.errors == 0 && second.errors == 0,
        "folder markers fail every run: {:?} / then {:?}",
        first.error_messages,
        second.error_messages
    );
}

/// U1 on S3: a run cancelled while the winner of a conflict is being PUT. The PUT has left
/// the client (the server finishes it whatever the client does next); the executor drops the
/// write future, and the background undo finds the loser still at its path and deletes the
/// kept conflict copy; then the PUT lands. The loser — the remote user's edit — is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_while_a_conflict_winner_is_put_keeps_the_loser() {
    if !common::up(MOTO) {
        return;
    }
    let endpoint = common::endpoint(MOTO);
    let proxy = Proxy::start(&endpoint).unwrap();
    let prefix = common::fresh_prefix("redteam2-cancel");
    let through_proxy = Arc::new(moto_at(&proxy.url(), &prefix));
    let direct = moto_at(&endpoint, &prefix);

    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(&local_root).unwrap();
    std::fs::write(local_root.join("x.txt"), "base").unwrap();
    let state = tmp.path().join("state");
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        through_proxy.clone(),
        SyncMode::TwoWay,
    );
    SyncEngine::new(&state).sync_pair(&pair).await.unwrap();

    let loser = "the remote user's edit";
    direct
        .write_opts(
            &RelPath::new("x.txt").unwrap(),
            bytes_stream(Bytes::from(loser)),
            WriteOptions::default().with_mode(WriteMode::Overwrite),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(local_root.join("x.txt"), "the local edit, newer").unwrap();

    proxy.hold(put_of_x());
    let cancel = tokio_util::sync::CancellationToken::new();
    let run = {
        let engine = SyncEngine::new(&state).with_cancellation(cancel.clone());
        let pair = pair.clone();
        tokio::spawn(async move { engine.sync_pair(&pair).await })
    };
    assert!(
        proxy.held_within(1, Duration::from_secs(30)).await,
        "the engine never PUT x.txt"
    );
    // Ctrl-C (or a GUI's stop button) while the PUT is on its way.
    cancel.cancel();
    let result = run.await.unwrap();
    // The background clean-up runs; then the server finishes the PUT.
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.release();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let on_server = all_contents(&direct).await;
    assert!(
        on_server.iter().any(|c| c == loser),
        "the conflict's loser is gone after the cancelled run ({result:?}): server holds \
         {on_server:?}"
    );
}

/// W1 on S3-compatible stores whose listings carry no ETag: the executor asks for
/// `WriteMode::IfUnchanged`, the S3 client turns it into an ETag condition (`by_etag`), finds
/// none and answers `Unsupported`, and the executor falls back to an unconditional PUT — over
/// a version another machine uploaded while the new content was on its way.
#[tokio::test]
async fn a_version_uploaded_during_an_overwrite_survives_when_listings_carry_no_etag() {
    if !common::up(MOTO) {
        return;
    }
    let endpoint = common::endpoint(MOTO);
    let proxy = Proxy::start(&endpoint).unwrap();
    // A store whose listings carry no ETags.
    proxy.edit_answers(Matcher::any().path_contains("list-type=2"), |answer| {
        edit::blank_elements(answer, b"<ETag>", b"</ETag>");
    });
    let prefix = common::fresh_prefix("redteam2-noetag");
    let through_proxy = Arc::new(moto_at(&proxy.url(), &prefix));
    let laptop_b = moto_at(&endpoint, &prefix);

    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(&local_root).unwrap();
    std::fs::write(local_root.join("x.txt"), "version 1").unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        through_proxy.clone(),
        SyncMode::TwoWay,
    );
    engine.sync_pair(&pair).await.unwrap();
    {
        use futures::StreamExt;
        let listed = through_proxy.list(None).next().await.unwrap().unwrap();
        assert_eq!(listed.etag, None, "the proxy should hide listing ETags");
    }

    std::fs::write(local_root.join("x.txt"), "version 2, from laptop A").unwrap();
    proxy.hold(put_of_x());
    let run = {
        let (engine, pair) = (engine.clone(), pair.clone());
        tokio::spawn(async move { engine.sync_pair(&pair).await })
    };
    assert!(
        proxy.held_within(1, Duration::from_secs(30)).await,
        "the engine never PUT x.txt"
    );
    let edit = "version 3, uploaded by laptop B meanwhile";
    laptop_b
        .write_opts(
            &RelPath::new("x.txt").unwrap(),
            bytes_stream(Bytes::from(edit)),
            WriteOptions::default().with_mode(WriteMode::Overwrite),
        )
        .await
        .unwrap();
    proxy.release();
    let stats = run.await.unwrap();
    let on_server = all_contents(&laptop_b).await;
    assert!(
        on_server.iter().any(|c| c == edit),
        "laptop B's upload was overwritten without a check (run: {stats:?}); bucket holds \
         {on_server:?}"
    );
}
