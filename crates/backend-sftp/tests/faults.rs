//! Host-key refusal, trust on first use, hashed known_hosts, and a connection killed in the
//! middle of a transfer. Uses the sshd server (real paths, so the disk can be inspected).

// Test code: panicking with a message is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use support::{Cleanup, Server, available, builder, fresh_name, keys_dir, temp_files_below};
use syncengine_core::{
    ByteStream, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair,
    WriteOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// An ed25519 key that is not the test server's.
const OTHER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIgPjtM2vFzYH8Qj5k0bS1Ok9pLqN0bcVYhCqgP0cW1e";

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// The server's host key fingerprint as `ssh-keygen -l` prints it (`SHA256:…`).
fn server_fingerprint() -> String {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(keys_dir().join("host_ed25519.pub"))
        .output()
        .expect("run ssh-keygen");
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint in {text:?}"))
        .to_owned()
}

fn server_key_line(port: u16) -> String {
    let pubkey = std::fs::read_to_string(keys_dir().join("host_ed25519.pub")).unwrap();
    let mut parts = pubkey.split_whitespace();
    let (alg, key) = (parts.next().unwrap(), parts.next().unwrap());
    format!("[127.0.0.1]:{port} {alg} {key}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_refused_and_nothing_is_transferred() {
    if !available(Server::Sshd) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("[127.0.0.1]:2222 {OTHER_KEY}\n")).unwrap();
    let name = fresh_name();
    let _cleanup = Cleanup(Server::Sshd.local_root(&name));
    // Trust on first use must not override a *changed* key.
    let client: Arc<dyn StorageClient> = Arc::new(
        builder(Server::Sshd, &name)
            .with_known_hosts(&known_hosts)
            .with_trust_on_first_use(true)
            .build()
            .unwrap(),
    );
    let err = client
        .put(&p("secret.txt"), Bytes::from("x"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&server_fingerprint()),
        "fingerprint missing: {msg}"
    );
    assert!(msg.contains("CHANGED"), "{msg}");
    assert!(
        !err.is_transient(),
        "a host key problem must not be retried: {err:?}"
    );

    // A whole sync run refuses too, and nothing reaches the server.
    let local_dir = tempfile::tempdir().unwrap();
    let local = Arc::new(syncengine_backend_local::LocalClient::new(local_dir.path()));
    local.put(&p("a.txt"), Bytes::from("a")).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let pair = SyncPair::new(local, client.clone(), SyncMode::SourceToDestination);
    let outcome = SyncEngine::new(state.path()).sync_pair(&pair).await;
    match outcome {
        Err(e) => assert!(e.to_string().contains("SHA256:"), "{e}"),
        Ok(stats) => assert!(stats.errors > 0 && stats.uploaded == 0, "{stats:?}"),
    }
    assert!(
        !Server::Sshd.local_root(&name).exists(),
        "something was written despite the refused host key"
    );
    assert_eq!(
        std::fs::read_to_string(&known_hosts).unwrap(),
        format!("[127.0.0.1]:2222 {OTHER_KEY}\n"),
        "known_hosts must not be changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_is_refused_unless_trusted_on_first_use() {
    if !available(Server::Sshd) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    let name = fresh_name();
    let _cleanup = Cleanup(Server::Sshd.local_root(&name));
    let strict = builder(Server::Sshd, &name)
        .with_known_hosts(&known_hosts)
        .build()
        .unwrap();
    let err = strict.check().await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&server_fingerprint()) && msg.contains("not in"),
        "{msg}"
    );
    assert!(!known_hosts.exists(), "a refused key must not be recorded");

    let tofu = builder(Server::Sshd, &name)
        .with_known_hosts(&known_hosts)
        .with_trust_on_first_use(true)
        .build()
        .unwrap();
    tofu.put(&p("f"), Bytes::from("first use")).await.unwrap();
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(
        recorded
            .trim_start()
            .starts_with("[127.0.0.1]:2222 ssh-ed25519 "),
        "{recorded:?}"
    );
    // The recorded key now satisfies a strict client.
    let strict = builder(Server::Sshd, &name)
        .with_known_hosts(&known_hosts)
        .build()
        .unwrap();
    assert_eq!(strict.read_to_bytes(&p("f")).await.unwrap(), "first use");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_known_hosts_entries_are_understood() {
    if !available(Server::Sshd) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, server_key_line(2222)).unwrap();
    let status = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&known_hosts)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let hashed = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(hashed.starts_with("|1|"), "not hashed: {hashed:?}");
    let name = fresh_name();
    let _cleanup = Cleanup(Server::Sshd.local_root(&name));
    let client = builder(Server::Sshd, &name)
        .with_known_hosts(&known_hosts)
        .build()
        .unwrap();
    client.check().await.unwrap();
}

/// A TCP proxy to sshd that can cut every open connection once `armed` bytes have gone
/// upstream; new connections keep working afterwards.
struct Proxy {
    port: u16,
    cut_after: Arc<AtomicU64>,
    cuts: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    /// While set, nothing is passed on either way, and connections stay open: a stalled
    /// server or link.
    frozen: Arc<AtomicBool>,
}

/// Waits while `frozen` is set.
async fn thaw(frozen: &AtomicBool) {
    while frozen.load(Ordering::Relaxed) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut_after = Arc::new(AtomicU64::new(u64::MAX));
        let cuts = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let frozen = Arc::new(AtomicBool::new(false));
        let kill = Arc::new(Notify::new());
        let (ca, cu, st, fr) = (
            cut_after.clone(),
            cuts.clone(),
            stop.clone(),
            frozen.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (ca, cu, kill, fr) = (ca.clone(), cu.clone(), kill.clone(), fr.clone());
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            thaw(&fr).await;
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            let left = ca.load(Ordering::Relaxed);
                            if left != u64::MAX {
                                if left <= n as u64 {
                                    ca.store(u64::MAX, Ordering::Relaxed);
                                    cu.fetch_add(1, Ordering::Relaxed);
                                    kill.notify_waiters();
                                    break;
                                }
                                ca.store(left - n as u64, Ordering::Relaxed);
                            }
                        }
                    };
                    let down = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            thaw(&fr).await;
                            if cw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = kill.notified() => {}
                    }
                    // Dropping both halves of both sockets cuts the connection.
                });
            }
        });
        Proxy {
            port,
            cut_after,
            cuts,
            stop,
            frozen,
        }
    }

    /// Cuts all open connections once `bytes` more bytes have gone upstream.
    fn arm(&self, bytes: u64) {
        self.cut_after.store(bytes, Ordering::Relaxed);
    }

    /// Stalls (or resumes) every connection, open or new.
    fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::Relaxed);
    }

    fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(u64::from(seed)) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn chunked(data: Bytes, chunk: usize) -> ByteStream {
    let pieces: Vec<syncengine_core::Result<Bytes>> = (0..data.len())
        .step_by(chunk)
        .map(|at| Ok(data.slice(at..(at + chunk).min(data.len()))))
        .collect();
    futures::stream::iter(pieces).boxed()
}

/// Waits until no temporary file is left below `dir` (the cleanup runs in the background).
async fn assert_no_temp_files(dir: &Path) {
    for _ in 0..100 {
        if temp_files_below(dir).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("temporary files left behind: {:?}", temp_files_below(dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connection_mid_write_keeps_old_content_and_reconnects() {
    if !available(Server::Sshd) {
        return;
    }
    let proxy = Proxy::start(Server::Sshd.port()).await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, server_key_line(proxy.port)).unwrap();
    let name = fresh_name();
    let disk_root = Server::Sshd.local_root(&name);
    let _cleanup = Cleanup(disk_root.clone());
    let direct = builder(Server::Sshd, &name).build().unwrap();
    let via_proxy = builder(Server::Sshd, &name)
        .with_url(format!(
            "sftp://root@127.0.0.1:{}{}",
            proxy.port,
            Server::Sshd.remote_root(&name)
        ))
        .with_known_hosts(&known_hosts)
        .build()
        .unwrap();

    direct
        .put(&p("d/big.bin"), Bytes::from("old content"))
        .await
        .unwrap();
    via_proxy.check().await.unwrap();
    proxy.arm(1024 * 1024);
    let new = pattern(8 * 1024 * 1024, 7);
    let result = via_proxy
        .write_opts(
            &p("d/big.bin"),
            chunked(new.clone(), 65_536),
            WriteOptions::default(),
        )
        .await;
    assert_eq!(proxy.cuts(), 1, "the proxy never cut the connection");
    let err = result.expect_err("a write whose connection was cut must fail");
    assert!(err.is_transient(), "a cut connection is transient: {err:?}");
    assert_eq!(
        direct.read_to_bytes(&p("d/big.bin")).await.unwrap(),
        "old content",
        "the cut write damaged the old content"
    );
    assert_no_temp_files(&disk_root).await;

    // The same client reconnects and the write goes through.
    via_proxy
        .write_opts(
            &p("d/big.bin"),
            chunked(new.clone(), 65_536),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    assert!(direct.read_to_bytes(&p("d/big.bin")).await.unwrap() == new);
    assert_no_temp_files(&disk_root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_cut_mid_transfer_converges_on_the_next_run() {
    if !available(Server::Sshd) {
        return;
    }
    let proxy = Proxy::start(Server::Sshd.port()).await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, server_key_line(proxy.port)).unwrap();
    let name = fresh_name();
    let disk_root = Server::Sshd.local_root(&name);
    let _cleanup = Cleanup(disk_root.clone());
    let direct = builder(Server::Sshd, &name).build().unwrap();
    let destination: Arc<dyn StorageClient> = Arc::new(
        builder(Server::Sshd, &name)
            .with_url(format!(
                "sftp://root@127.0.0.1:{}{}",
                proxy.port,
                Server::Sshd.remote_root(&name)
            ))
            .with_known_hosts(&known_hosts)
            .build()
            .unwrap(),
    );
    let local_dir = tempfile::tempdir().unwrap();
    let source: Arc<dyn StorageClient> =
        Arc::new(syncengine_backend_local::LocalClient::new(local_dir.path()));
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let pair = SyncPair::new(
        source.clone(),
        destination.clone(),
        SyncMode::SourceToDestination,
    );

    source
        .put(&p("big.bin"), Bytes::from("old content"))
        .await
        .unwrap();
    source
        .put(&p("small.txt"), Bytes::from("small"))
        .await
        .unwrap();
    let first = engine.sync_pair(&pair).await.unwrap();
    assert_eq!((first.uploaded, first.errors), (2, 0), "{first:?}");

    let new = pattern(8 * 1024 * 1024, 9);
    source.put(&p("big.bin"), new.clone()).await.unwrap();
    proxy.arm(1024 * 1024);
    // Whatever this run reports (the engine may retry and reconnect), the destination holds
    // the old content or the whole new content, never a part.
    let cut_run = engine.sync_pair(&pair).await;
    assert_eq!(proxy.cuts(), 1, "the proxy never cut the connection");
    let now = direct.read_to_bytes(&p("big.bin")).await.unwrap();
    assert!(
        now == "old content" || now == new,
        "the destination holds a partial file ({} bytes) after {cut_run:?}",
        now.len()
    );
    assert_no_temp_files(&disk_root).await;

    let second = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(second.errors, 0, "{second:?}");
    assert!(
        direct.read_to_bytes(&p("big.bin")).await.unwrap() == new,
        "not converged"
    );
    assert_eq!(
        direct.read_to_bytes(&p("small.txt")).await.unwrap(),
        "small"
    );
    let third = engine.sync_pair(&pair).await.unwrap();
    assert!(
        third.is_noop() && third.errors == 0,
        "not idle after converging: {third:?}"
    );
}

/// A stalled connection (nothing comes back, nothing is closed) fails a request after the
/// idle timeout, and the next request, which has to open a new SFTP channel on the same SSH
/// connection, fails after the idle timeout too: it does not wait for the keepalive to give
/// up on the connection (about a minute), nor hold every other request behind it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_fails_within_the_idle_timeout_twice() {
    if !available(Server::Sshd) {
        return;
    }
    let proxy = Proxy::start(Server::Sshd.port()).await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, server_key_line(proxy.port)).unwrap();
    let name = fresh_name();
    let _cleanup = Cleanup(Server::Sshd.local_root(&name));
    let client = builder(Server::Sshd, &name)
        .with_url(format!(
            "sftp://root@127.0.0.1:{}{}",
            proxy.port,
            Server::Sshd.remote_root(&name)
        ))
        .with_known_hosts(&known_hosts)
        .with_timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap();
    client.put(&p("a.txt"), Bytes::from("a")).await.unwrap();
    proxy.freeze(true);
    // Safety net only: the keepalive gives up on a dead connection after about a minute.
    let net = std::time::Duration::from_secs(25);
    let first = tokio::time::timeout(net, client.stat(&p("a.txt"))).await;
    assert!(matches!(first, Ok(Err(_))), "{first:?}");
    let second = tokio::time::timeout(net, client.stat(&p("a.txt"))).await;
    assert!(
        matches!(second, Ok(Err(_))),
        "reopening the channel on the stalled connection did not give up: {second:?}"
    );
    proxy.freeze(false);
    // A new connection works again.
    let back = tokio::time::timeout(net, client.stat(&p("a.txt"))).await;
    assert!(matches!(back, Ok(Ok(_))), "{back:?}");
}
