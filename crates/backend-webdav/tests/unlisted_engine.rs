//! An engine run local ↔ WebDAV where the server stops listing a sub-collection: the local
//! copies of its files stay, and the run reports the unknown path (issue 8, behaviour 8).
//!
//! A small proxy on 127.0.0.1 passes every request to the Apache test server, except, once
//! turned hostile, the `PROPFIND` of the sub-collection `sub/`, which it answers with an error
//! status or a redirect. Old code listed `sub` as empty: `sub/x` looked deleted on the server,
//! and the two-way run deleted the local copy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use syncengine_backend_local::LocalClient;
use syncengine_core::{SyncEngine, SyncMode, SyncPair};
use syncengine_test_proxy::{Matcher, Proxy};

use common::APACHE;

#[tokio::test]
async fn unlistable_sub_collection_keeps_local_copies() {
    let Some(url) = common::server_url(APACHE) else {
        return;
    };
    for status in [500, 404, 409, 301] {
        let proxy = Proxy::start(&url).unwrap();
        let root = format!(
            "{}/syncengine-tests/unlisted-{:016x}",
            proxy.url(),
            rand::random::<u64>()
        );
        let remote = Arc::new(common::dav(&root));
        let tmp = tempfile::tempdir().unwrap();
        let local_root = tmp.path().join("local");
        std::fs::create_dir_all(local_root.join("sub")).unwrap();
        std::fs::write(local_root.join("sub/x"), "x").unwrap();
        std::fs::write(local_root.join("top.txt"), "top").unwrap();
        let engine = SyncEngine::new(tmp.path().join("state"));
        let pair = SyncPair::new(
            Arc::new(LocalClient::new(&local_root)),
            remote,
            SyncMode::TwoWay,
        );
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(stats.uploaded, 2, "{status}: {stats:?}");

        // Hostile from now on: the PROPFIND of `sub/` is answered here, not forwarded.
        proxy.answer(Matcher::method("PROPFIND").path_ends_with("/sub/"), move |r| {
            let location = if (300..400).contains(&status) {
                format!("Location: {}elsewhere/\r\n", r.target)
            } else {
                String::new()
            };
            format!(
                "HTTP/1.1 {status} X\r\n{location}Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
        });
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(local_root.join("sub/x"))
                .ok()
                .as_deref(),
            Some("x"),
            "{status}: {stats:?}"
        );
        assert_eq!(stats.deleted_source, 0, "{status}: {stats:?}");
        assert!(stats.unknown > 0, "{status}: {stats:?}");
        assert!(
            stats.warnings.iter().any(|w| w.contains("sub")),
            "{status}: {stats:?}"
        );
    }
}
