//! WebDAV locations: `host:port` and the decoded path of the root collection, without
//! credentials, whatever the URL's spelling.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use syncengine_backend_webdav::WebDavBuilder;
use syncengine_core::StorageClient;

async fn location(url: &str) -> String {
    WebDavBuilder::new()
        .with_url(url)
        .build()
        .unwrap()
        .location()
        .await
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn locations_are_host_port_and_decoded_path() {
    let a = location("http://127.0.0.1:8082/dav/my%20files/").await;
    assert_eq!(a, "webdav://127.0.0.1:8082/dav/my files");
    assert_eq!(location("http://127.0.0.1:8082/dav/my%20files").await, a);
    assert_eq!(location("webdav://127.0.0.1:8082/dav/my%20files/").await, a);
    assert_eq!(
        location("http://user:secret@127.0.0.1:8082/dav/my%20files/").await,
        a,
        "credentials take no part"
    );
    assert_ne!(location("http://127.0.0.1:8083/dav/my%20files/").await, a);
    assert_eq!(
        location("https://DAV.Example.com/x/").await,
        "webdav://dav.example.com:443/x"
    );
}
