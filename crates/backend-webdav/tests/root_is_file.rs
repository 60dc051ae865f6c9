//! The check before a run ([`StorageClient::check_access`]) against the real servers: a root
//! URL that names a file is unreachable, with the reason; a missing root passes (a first run
//! creates it), as on local disk and SFTP. Old code listed a file root as an empty folder
//! (wsgidav), so the check passed and the run failed later, at its first write (exit 1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use syncengine_backend_local::LocalClient;
use syncengine_core::{
    RelPath, Side, StorageClient, StorageClientExt, SyncEngine, SyncError, SyncMode, SyncPair,
};

use common::{APACHE, Server, WSGIDAV};

async fn a_file_root_is_unreachable(server: Server) {
    let Some(parent) = common::client(server) else {
        return;
    };
    parent
        .put(&RelPath::new("afile").unwrap(), Bytes::from("i am a file"))
        .await
        .unwrap();
    let parent_url = parent.url().as_str().trim_end_matches('/').to_owned();

    // The root is the file.
    let file_root = common::dav(&format!("{parent_url}/afile"));
    let err = file_root
        .check_access()
        .await
        .expect_err("a file is no root");
    assert!(
        err.to_string().contains("is a file, not a folder"),
        "{}: {err}",
        server.name
    );

    // An engine run ends before anything else, naming the side: exit 4 in the CLI.
    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("local");
    std::fs::create_dir_all(&local_root).unwrap();
    std::fs::write(local_root.join("keep.txt"), "local").unwrap();
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        Arc::new(file_root),
        SyncMode::TwoWay,
    );
    let result = SyncEngine::new(tmp.path().join("state"))
        .sync_pair(&pair)
        .await;
    match result {
        Err(e @ SyncError::Unreachable { .. }) => {
            assert!(e.is_unreachable());
            assert!(
                matches!(
                    e,
                    SyncError::Unreachable {
                        side: Side::Destination,
                        ..
                    }
                ),
                "{e}"
            );
            assert!(e.to_string().contains("is a file, not a folder"), "{e}");
        }
        other => panic!("{}: expected unreachable, got {other:?}", server.name),
    }
    assert_eq!(
        parent
            .read_to_bytes(&RelPath::new("afile").unwrap())
            .await
            .unwrap(),
        Bytes::from("i am a file"),
        "the file is untouched"
    );
    assert_eq!(std::fs::read_dir(&local_root).unwrap().count(), 1);

    // A root below the file cannot exist (red team 11: Apache's 400 passed as a missing
    // root, and the run failed at its first write, exit 1): unreachable, naming the file.
    for below in ["afile/sub", "afile/sub/deeper"] {
        let client = common::dav(&format!("{parent_url}/{below}"));
        let err = client
            .check_access()
            .await
            .expect_err("a root below a file cannot exist");
        let text = err.to_string();
        assert!(
            text.contains("is a file") && text.contains("afile") && text.contains("cannot exist"),
            "{}: {below}: {text}",
            server.name
        );
    }
    let below = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        Arc::new(common::dav(&format!("{parent_url}/afile/sub"))),
        SyncMode::TwoWay,
    );
    match SyncEngine::new(tmp.path().join("state2"))
        .sync_pair(&below)
        .await
    {
        Err(e @ SyncError::Unreachable { .. }) => assert!(e.to_string().contains("cannot exist")),
        other => panic!("{}: a root below a file: {other:?}", server.name),
    }

    // A root that is not there yet passes, one or two levels deep; an existing one too.
    for missing in ["missing", "missing/deeper"] {
        let client = common::dav(&format!("{parent_url}/{missing}"));
        client
            .check_access()
            .await
            .unwrap_or_else(|e| panic!("{}: {missing}: {e}", server.name));
    }
    parent.check_access().await.unwrap();

    // The engine tells a missing root from an empty one (a typo'd source is refused, a lost
    // root of a synced pair stops): `root_exists` is false until something is written there.
    for missing in ["gone", "gone/deeper"] {
        let client = common::dav(&format!("{parent_url}/{missing}"));
        assert!(
            !client.root_exists().await.unwrap(),
            "{}: {missing} exists",
            server.name
        );
    }
    let made = common::dav(&format!("{parent_url}/made"));
    made.put(&RelPath::new("a.txt").unwrap(), Bytes::from("a"))
        .await
        .unwrap();
    assert!(made.root_exists().await.unwrap(), "{}", server.name);
    assert!(parent.root_exists().await.unwrap(), "{}", server.name);
}

#[tokio::test]
async fn wsgidav_a_file_root_is_unreachable() {
    a_file_root_is_unreachable(WSGIDAV).await;
}

#[tokio::test]
async fn apache_a_file_root_is_unreachable() {
    a_file_root_is_unreachable(APACHE).await;
}
