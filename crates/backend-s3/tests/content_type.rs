//! Uploads carry a Content-Type from the file name (a site published with the mirror mode
//! must serve HTML as HTML): single PUTs and multipart uploads alike, on moto.

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use object_store::path::Path;
use object_store::{Attribute, GetOptions, ObjectStore};
use syncengine_backend_local::LocalClient;
use syncengine_core::{StorageClient, SyncEngine, SyncMode, SyncPair};

async fn content_type(store: &Arc<dyn ObjectStore>, key: &str) -> Option<String> {
    let r = store
        .get_opts(
            &Path::parse(key).unwrap(),
            GetOptions {
                head: true,
                ..GetOptions::default()
            },
        )
        .await
        .unwrap();
    r.attributes
        .get(&Attribute::ContentType)
        .map(|v| v.as_ref().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_carry_a_content_type_moto() {
    let Some(builder) = common::moto_builder() else {
        return;
    };
    // 5 MiB parts: a 6 MiB file goes up as a multipart upload.
    let client = builder.with_multipart(5 * 1024 * 1024, 2).build().unwrap();
    let prefix = client.config().prefix.clone();
    let store = client.object_store().clone();
    let client: Arc<dyn StorageClient> = Arc::new(client);

    let tmp = tempfile::tempdir().unwrap();
    let local_root = tmp.path().join("site");
    std::fs::create_dir_all(local_root.join("css")).unwrap();
    std::fs::write(local_root.join("index.html"), "<html></html>").unwrap();
    std::fs::write(local_root.join("css/site.css"), "body{}").unwrap();
    std::fs::write(local_root.join("logo.PNG"), [0x89, b'P', b'N', b'G']).unwrap();
    std::fs::write(local_root.join("README"), "no extension").unwrap();
    std::fs::write(local_root.join("blob.zzunknown"), "?").unwrap();
    std::fs::write(local_root.join("big.html"), vec![b'x'; 6 * 1024 * 1024]).unwrap();

    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local_root)),
        client,
        SyncMode::SourceToDestination,
    );
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
    assert_eq!(stats.uploaded, 6);

    for (path, want) in [
        ("index.html", "text/html"),
        ("css/site.css", "text/css"),
        ("logo.PNG", "image/png"),
        ("README", "application/octet-stream"),
        ("blob.zzunknown", "application/octet-stream"),
        ("big.html", "text/html"),
    ] {
        assert_eq!(
            content_type(&store, &format!("{prefix}/{path}"))
                .await
                .as_deref(),
            Some(want),
            "{path}"
        );
    }
}
