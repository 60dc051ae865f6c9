//! Shared test fixtures: fresh WebDAV clients on a fresh random collection of a loopback server.

// Fixture code, not `#[test]` fns: clippy's in-tests allowance does not reach it.
#![allow(clippy::expect_used, dead_code)]

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use syncengine_backend_webdav::{WebDavBuilder, WebDavClient};
use syncengine_core::StorageClient;
use syncengine_test_proxy::{Matcher, Proxy, edit};

/// One of the loopback servers `scripts/test-servers.sh start` runs.
#[derive(Clone, Copy, Debug)]
pub struct Server {
    pub name: &'static str,
    pub env: &'static str,
    pub default_url: &'static str,
}

/// Apache 2 + mod_dav_fs on :8082.
pub const APACHE: Server = Server {
    name: "apache",
    env: "SYNCENGINE_TEST_WEBDAV_APACHE",
    default_url: "http://127.0.0.1:8082",
};

/// wsgidav + cheroot on :8083.
pub const WSGIDAV: Server = Server {
    name: "wsgidav",
    env: "SYNCENGINE_TEST_WEBDAV_WSGIDAV",
    default_url: "http://127.0.0.1:8083",
};

/// wsgidav + cheroot on :8084, accepting Digest authentication only.
pub const DIGEST: Server = Server {
    name: "wsgidav-digest",
    env: "SYNCENGINE_TEST_WEBDAV_DIGEST",
    default_url: "http://127.0.0.1:8084",
};

impl Server {
    pub fn url(&self) -> String {
        std::env::var(self.env).unwrap_or_else(|_| self.default_url.to_owned())
    }
}

/// The one skip-or-fail rule: returns the server's URL when it accepts connections. When it
/// does not: with `CI=true` the test fails; otherwise this prints how to start the servers
/// and returns `None`, and the caller skips (a factory returns `None`, which the core's test
/// macros report as a skipped case).
pub fn server_url(server: Server) -> Option<String> {
    static CHECKED: OnceLock<std::sync::Mutex<Vec<&'static str>>> = OnceLock::new();
    let url = server.url();
    let checked = CHECKED.get_or_init(Default::default);
    if checked.lock().expect("lock").contains(&server.name) {
        return Some(url);
    }
    let authority = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("server URL has an authority")
        .to_owned();
    let reachable = authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    if reachable {
        checked.lock().expect("lock").push(server.name);
        return Some(url);
    }
    let msg = format!(
        "WebDAV test server {} is not reachable at {url} (set {} to use another).\n\
         Start the loopback test servers with:\n    \
         bash scripts/test-servers.sh install && bash scripts/test-servers.sh start\n",
        server.name, server.env
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}(CI=true: a missing test server fails the run)");
    }
    eprint!("SKIPPED: {msg}");
    None
}

/// A client rooted at a fresh random collection on `server` (created by the first write), or
/// `None` when the server is down (see [`server_url`]).
pub fn client(server: Server) -> Option<WebDavClient> {
    let url = server_url(server)?;
    let root = format!(
        "{}/syncengine-tests/{}-{:016x}",
        url.trim_end_matches('/'),
        server.name,
        rand::random::<u64>()
    );
    Some(dav(&root))
}

/// A client rooted at `url` (a test server's, or a proxy's in front of it), with the test
/// servers' credentials unless the environment names others. The servers are on loopback and
/// speak Basic over plain http, so the client opts in to that.
pub fn dav(url: &str) -> WebDavClient {
    let mut builder = WebDavBuilder::from_env()
        .with_url(url)
        .with_allow_insecure_basic(true);
    if std::env::var(syncengine_backend_webdav::ENV_USER).is_err() {
        builder = builder.with_credentials("dav", "davpass");
    }
    builder.build().expect("build the WebDAV client")
}

/// Makes `proxy` hide ETags, as a server that has none (nginx's dav-ext module): `ETag`
/// headers renamed, `getetag` properties blanked (a `PROPFIND` goes as HTTP/1.0, so that its
/// answer comes unchunked and is edited in place).
pub fn hide_etags(proxy: &Proxy) {
    proxy.send_as_http10(Matcher::method("PROPFIND"));
    proxy.edit_answers(Matcher::any(), |answer| {
        edit::rename_header(answer, "ETag", "X-Tg");
        edit::blank_dav_property(answer, "getetag");
    });
}

/// The same, as the conformance and scenario macros take it.
pub async fn fresh(server: Server) -> Option<Arc<dyn StorageClient>> {
    Some(Arc::new(client(server)?))
}

/// A local client on a fresh temporary directory, with the guard that removes it.
pub async fn fresh_local() -> (Arc<dyn StorageClient>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let client = syncengine_backend_local::LocalClient::new(dir.path().join("root"));
    (Arc::new(client), dir)
}
