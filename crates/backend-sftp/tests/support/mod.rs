//! Shared test support: the two loopback SFTP servers, fresh clients on fresh roots, and the
//! skip-or-fail rule. The factories return `None` when their server is down (outside CI), and
//! the core's `conformance_tests!` / `sync_scenario_tests!` then report each case as skipped.
//!
//! Servers (started by `bash scripts/test-servers.sh start`):
//! - OpenSSH sshd on 127.0.0.1:2222, user root, real absolute paths;
//! - `rclone serve sftp` on 127.0.0.1:2223, user `sync`, paths below its virtual root
//!   `$TS_DIR/rclone-sftp-root`.
//!
//! Keys and known_hosts come from `$SYNCENGINE_TEST_SFTP_DIR` (default
//! `$TS_DIR/sshd`, `TS_DIR` defaulting to /tmp/syncengine-test-servers).

// Test support: panicking with a message is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    missing_docs
)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use syncengine_backend_sftp::{SftpBuilder, SftpClient};
use syncengine_core::StorageClient;

/// Which loopback server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// OpenSSH sshd, real paths.
    Sshd,
    /// rclone serve sftp, virtual root.
    Rclone,
}

impl Server {
    pub fn port(self) -> u16 {
        match self {
            Server::Sshd => 2222,
            Server::Rclone => 2223,
        }
    }

    pub fn user(self) -> &'static str {
        match self {
            Server::Sshd => "root",
            Server::Rclone => "sync",
        }
    }

    /// The server path of a fresh test root named `name`.
    pub fn remote_root(self, name: &str) -> String {
        match self {
            Server::Sshd => format!("/tmp/syncengine-sftp-tests/{name}"),
            Server::Rclone => format!("/syncengine-sftp-tests/{name}"),
        }
    }

    /// Where that root lives on this machine's disk (both servers serve local directories).
    pub fn local_root(self, name: &str) -> PathBuf {
        match self {
            Server::Sshd => PathBuf::from(self.remote_root(name)),
            Server::Rclone => ts_dir()
                .join("rclone-sftp-root")
                .join("syncengine-sftp-tests")
                .join(name),
        }
    }
}

pub fn ts_dir() -> PathBuf {
    std::env::var_os("TS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/syncengine-test-servers"))
}

/// Directory holding `client_ed25519`, `known_hosts` and `host_ed25519.pub`.
pub fn keys_dir() -> PathBuf {
    std::env::var_os("SYNCENGINE_TEST_SFTP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ts_dir().join("sshd"))
}

/// The one skip-or-fail rule, for every server these tests use (the SFTP servers and the
/// cross-backend peers): returns true when something listens on 127.0.0.1:`port` and
/// `missing` is `None`. Otherwise, under `CI=true` it panics (a missing server fails CI);
/// elsewhere it prints how to start the servers and returns false, and the caller skips.
pub fn server_up(name: &str, port: u16, missing: Option<String>) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let why = if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        format!("nothing listens on {addr}")
    } else if let Some(missing) = missing {
        missing
    } else {
        return true;
    };
    let msg = format!(
        "test server {name} is unavailable ({why}). Start the servers with:\n    \
         bash scripts/test-servers.sh install && bash scripts/test-servers.sh start"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg} (CI=true: a missing test server fails the run)");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// [`server_up`] for an SFTP server, whose keys and known_hosts must exist too.
pub fn available(server: Server) -> bool {
    let keys = keys_dir();
    let keys_ok = keys.join("client_ed25519").is_file() && keys.join("known_hosts").is_file();
    let missing = (!keys_ok).then(|| format!("its keys are missing from {}", keys.display()));
    server_up(&format!("SFTP {server:?}"), server.port(), missing)
}

/// A random directory name for one test case.
pub fn fresh_name() -> String {
    format!("t-{:016x}", rand::random::<u64>())
}

/// A builder for `server` with the test keys and known_hosts, rooted at `name`.
pub fn builder(server: Server, name: &str) -> SftpBuilder {
    let keys = keys_dir();
    SftpBuilder::new()
        .with_url(format!(
            "sftp://{}@127.0.0.1:{}{}",
            server.user(),
            server.port(),
            server.remote_root(name)
        ))
        .with_key_file(keys.join("client_ed25519"))
        .with_known_hosts(keys.join("known_hosts"))
        .with_agent(false)
}

/// Removes a test root from disk when the case ends.
pub struct Cleanup(pub PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A client on a fresh root plus the guard that removes it.
pub type Fixture = (Arc<dyn StorageClient>, Cleanup);

pub fn fixture_with(server: Server, configure: impl FnOnce(SftpBuilder) -> SftpBuilder) -> Fixture {
    let name = fresh_name();
    let client: SftpClient = configure(builder(server, &name)).build().unwrap();
    (Arc::new(client), Cleanup(server.local_root(&name)))
}

pub async fn sshd() -> Option<Fixture> {
    available(Server::Sshd).then(|| fixture_with(Server::Sshd, |b| b))
}

/// sshd with `posix-rename@openssh.com` turned off: exercises the portable replace.
pub async fn sshd_portable_rename() -> Option<Fixture> {
    available(Server::Sshd).then(|| fixture_with(Server::Sshd, |b| b.with_posix_rename(false)))
}

pub async fn rclone() -> Option<Fixture> {
    available(Server::Rclone).then(|| fixture_with(Server::Rclone, |b| b))
}

/// A local-disk client on a fresh temporary directory.
pub async fn local() -> Option<(Arc<dyn StorageClient>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let client = syncengine_backend_local::LocalClient::new(dir.path().join("root"));
    Some((Arc::new(client), dir))
}

/// Lists the temporary files left anywhere below `dir` on disk.
pub fn temp_files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name()
                .to_string_lossy()
                .starts_with(syncengine_backend_sftp::TEMP_PREFIX)
            {
                out.push(p.clone());
            }
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// Copies `from` to `to`, each chunk delivered `delay` after it was read.
fn delayed_pipe(mut from: std::net::TcpStream, mut to: std::net::TcpStream, delay: Duration) {
    use std::io::{Read, Write};
    use std::time::Instant;
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

/// A TCP proxy on a free loopback port in front of `upstream` that delays every chunk by
/// `delay` each way (a slow link: each request is a `2 × delay` round trip). Returns its port.
pub fn start_delay_proxy(upstream: u16, delay: Duration) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            delayed_pipe(
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                delay,
            );
            delayed_pipe(server, client, delay);
        }
    });
    port
}

/// Every file's content below `root`, the engine's own folder included.
pub fn contents(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    out
}
