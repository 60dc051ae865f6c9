//! Issue 9 on SFTP, against the real sshd (real paths, so the disk can be staged and
//! inspected): nothing is written or deleted through a symlinked folder inside the root, a
//! read whose data ends early is an error, trust on first use refuses a host recorded with a
//! key of another type, and overwrites keep the file's permission bits.

// Test code: panicking with a message is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use support::{Cleanup, Server, available, builder, fixture_with, fresh_name, keys_dir};
use syncengine_backend_local::LocalClient;
use syncengine_core::testing::{FaultClient, FaultConfig, Op};
use syncengine_core::{
    RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair, Version, WriteMode,
    WriteOptions, bytes_stream,
};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn write(path: &Path, body: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
}

/// Every file below `dir` (relative paths, sorted), without following symlinks.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                walk(base, &e.path(), out);
            } else {
                let rel = e.path().strip_prefix(base).unwrap().to_owned();
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The error names the symlink, says it is one, and is not worth a retry.
fn assert_refused<T: std::fmt::Debug>(result: syncengine_core::Result<T>, link: &str) {
    let err = result.expect_err("an operation through a symlinked folder must fail");
    assert!(!err.is_transient(), "not worth a retry: {err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("{link:?}")) && msg.contains("symlink"),
        "the error names the symlink: {msg}"
    );
}

// --- Symlinked folders -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_written_or_deleted_through_a_symlinked_folder() {
    if !available(Server::Sshd) {
        return;
    }
    let (client, cleanup) = fixture_with(Server::Sshd, |b| b);
    let root = cleanup.0.clone();
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    write(&outside.join("x"), "outside the root");
    write(&root.join("real/y"), "y");
    write(&root.join("deep/kept"), "kept");
    std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("deep/b")).unwrap();

    assert_refused(client.put(&p("a/new.txt"), Bytes::from("n")).await, "a");
    assert_refused(
        client.put(&p("a/sub/dir/new.txt"), Bytes::from("n")).await,
        "a",
    );
    assert_refused(client.put(&p("a/x"), Bytes::from("over")).await, "a");
    assert_refused(
        client.put(&p("deep/b/new.txt"), Bytes::from("n")).await,
        "deep/b",
    );
    assert_refused(client.delete(&p("a/x")).await, "a");
    assert_refused(client.delete(&p("deep/b/x")).await, "deep/b");
    assert_refused(client.rename(&p("a/x"), &p("real/x")).await, "a");
    assert_refused(client.rename(&p("real/y"), &p("a/y")).await, "a");
    assert_refused(client.preserve(&p("real/y"), &p("a/y")).await, "a");
    assert_refused(
        client
            .preserve(&p("a/x"), &p(".syncengine/trash/t/a/x"))
            .await,
        "a",
    );
    assert_eq!(files(&outside), vec!["x".to_owned()]);
    assert_eq!(
        fs::read_to_string(outside.join("x")).unwrap(),
        "outside the root"
    );
    assert_eq!(fs::read_to_string(root.join("real/y")).unwrap(), "y");

    // Beside the symlinks everything works as before, the emptied folder is pruned, the
    // symlink is not.
    client
        .put(&p("deep/new/z"), Bytes::from("z"))
        .await
        .unwrap();
    client.rename(&p("real/y"), &p("moved/y")).await.unwrap();
    client.delete(&p("moved/y")).await.unwrap();
    assert!(!root.join("moved").exists() && !root.join("real").exists());
    assert!(fs::symlink_metadata(root.join("a")).unwrap().is_symlink());
}

/// The root itself may be a symlink: it is resolved, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_root_is_still_written() {
    if !available(Server::Sshd) {
        return;
    }
    let name = fresh_name();
    let real = Server::Sshd.local_root(&format!("{name}-real"));
    let _real = Cleanup(real.clone());
    let link = Server::Sshd.local_root(&name);
    let _link = Cleanup(link.clone());
    fs::create_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let client = builder(Server::Sshd, &name).build().unwrap();
    client.put(&p("d/f"), Bytes::from("f")).await.unwrap();
    client.rename(&p("d/f"), &p("e/f")).await.unwrap();
    assert_eq!(fs::read_to_string(real.join("e/f")).unwrap(), "f");
    client.delete(&p("e/f")).await.unwrap();
    assert!(files(&real).is_empty());
    let _ = fs::remove_file(&link);
}

/// One side (local) has `a/b.txt`, the SFTP side has `a -> outside`: repeated two-way runs
/// write nothing outside, and the local file survives them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_never_writes_into_a_symlinked_folder() {
    if !available(Server::Sshd) {
        return;
    }
    let (sftp, cleanup) = fixture_with(Server::Sshd, |b| b);
    let root = cleanup.0.clone();
    let tmp = tempfile::tempdir().unwrap();
    let (local, outside) = (tmp.path().join("local"), tmp.path().join("outside"));
    write(&local.join("a/b.txt"), "precious");
    write(&local.join("top.txt"), "top");
    write(&outside.join("other.txt"), "other");
    fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(Arc::new(LocalClient::new(&local)), sftp, SyncMode::TwoWay);
    for run in 0..3 {
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(files(&outside), vec!["other.txt".to_owned()], "run {run}");
        assert_eq!(
            fs::read_to_string(local.join("a/b.txt")).unwrap(),
            "precious",
            "run {run}: {stats:?}"
        );
        assert_eq!(fs::read_to_string(root.join("top.txt")).unwrap(), "top");
    }
}

/// The SFTP side's folder becomes a symlink after the listing, right before the engine writes
/// into it: the write fails naming the symlink instead of landing outside the root, and the
/// local file survives the next runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_write_racing_a_swapped_in_symlink_fails_and_loses_nothing() {
    if !available(Server::Sshd) {
        return;
    }
    let (sftp, cleanup) = fixture_with(Server::Sshd, |b| b);
    let root = cleanup.0.clone();
    let tmp = tempfile::tempdir().unwrap();
    let (local, outside) = (tmp.path().join("local"), tmp.path().join("outside"));
    write(&local.join("a/b.txt"), "precious");
    write(&local.join("top.txt"), "top");
    write(&root.join("a/keep.txt"), "keep");
    fs::create_dir_all(&outside).unwrap();
    let faulty = Arc::new(FaultClient::new(sftp, FaultConfig::none()));
    {
        let (root, outside, aside) = (root.clone(), outside.clone(), tmp.path().join("a-moved"));
        faulty.before(
            Op::Write,
            p("a/b.txt"),
            Arc::new(move |_| {
                fs::rename(root.join("a"), &aside).unwrap();
                std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
            }),
        );
    }
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local)),
        faulty.clone() as Arc<dyn StorageClient>,
        SyncMode::TwoWay,
    );
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert!(stats.errors >= 1, "the write must fail: {stats:?}");
    assert!(
        files(&outside).is_empty(),
        "written outside the root: {:?}",
        files(&outside)
    );
    for run in 1..3 {
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert!(files(&outside).is_empty(), "run {run}: {stats:?}");
        assert_eq!(
            fs::read_to_string(local.join("a/b.txt")).unwrap(),
            "precious",
            "run {run}: {stats:?}"
        );
    }
}

/// The delete direction: `a/x` was synced and deleted locally; before the engine deletes the
/// SFTP side's copy, that folder is moved out of the root and linked back. The file now
/// outside the root is neither deleted nor moved into the trash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_delete_racing_a_swapped_in_symlink_deletes_nothing_outside() {
    if !available(Server::Sshd) {
        return;
    }
    let (sftp, cleanup) = fixture_with(Server::Sshd, |b| b);
    let root = cleanup.0.clone();
    let tmp = tempfile::tempdir().unwrap();
    let (local, outside) = (tmp.path().join("local"), tmp.path().join("outside"));
    write(&local.join("a/x"), "synced");
    for i in 0..6 {
        write(&local.join(format!("f{i}")), "f");
    }
    let faulty = Arc::new(FaultClient::new(sftp, FaultConfig::none()));
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local)),
        faulty.clone() as Arc<dyn StorageClient>,
        SyncMode::TwoWay,
    );
    engine.sync_pair(&pair).await.unwrap();
    assert!(root.join("a/x").is_file());

    fs::remove_file(local.join("a/x")).unwrap();
    for op in [Op::Stat, Op::Read, Op::Delete, Op::Rename, Op::Copy] {
        let (root, outside) = (root.clone(), outside.clone());
        faulty.before(
            op,
            p("a/x"),
            Arc::new(move |_| {
                if !outside.exists() {
                    fs::rename(root.join("a"), &outside).unwrap();
                    std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
                }
            }),
        );
    }
    for run in 0..3 {
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert!(outside.exists(), "the hook ran");
        assert_eq!(
            fs::read_to_string(outside.join("x")).ok().as_deref(),
            Some("synced"),
            "run {run}: {stats:?}"
        );
    }
}

// --- Reads that end early ---------------------------------------------------------------

/// The file shrinks on the server while it is read: the read fails (transient) instead of
/// ending with a short body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_whose_data_ends_early_is_an_error() {
    if !available(Server::Sshd) {
        return;
    }
    let (client, cleanup) = fixture_with(Server::Sshd, |b| b);
    let root = cleanup.0.clone();
    let size = 8 << 20;
    client
        .put(&p("big.bin"), Bytes::from(vec![5u8; size]))
        .await
        .unwrap();
    let mut body = client.read(&p("big.bin")).await.unwrap();
    let first = body.next().await.unwrap().unwrap();
    let mut got = first.len();
    // Shrink it to 1 MiB: well past what the read has asked for so far (16 × 32 KiB).
    fs::File::options()
        .write(true)
        .open(root.join("big.bin"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let mut failed = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => got += c.len(),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let err = failed.unwrap_or_else(|| panic!("a short body of {got} of {size} bytes, no error"));
    assert!(err.is_transient(), "worth a retry: {err:?}");
    assert!(err.to_string().contains("ended"), "{err}");
    assert!(got < size, "{got}");
}

/// A range read that meets the end early fails too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_read_whose_data_ends_early_is_an_error() {
    if !available(Server::Sshd) {
        return;
    }
    let (client, cleanup) = fixture_with(Server::Sshd, |b| b);
    let root = cleanup.0.clone();
    let size = 8 << 20;
    client
        .put(&p("big.bin"), Bytes::from(vec![5u8; size]))
        .await
        .unwrap();
    let mut body = client
        .read_opts(
            &p("big.bin"),
            syncengine_core::ReadOptions::default().with_range(1 << 20..(6 << 20)),
        )
        .await
        .unwrap();
    body.next().await.unwrap().unwrap();
    fs::File::options()
        .write(true)
        .open(root.join("big.bin"))
        .unwrap()
        .set_len(3 << 20)
        .unwrap();
    let mut failed = false;
    while let Some(chunk) = body.next().await {
        if let Err(e) = chunk {
            assert!(e.is_transient(), "{e:?}");
            failed = true;
        }
    }
    assert!(failed, "a short range body without an error");
}

// --- Trust on first use -----------------------------------------------------------------

/// known_hosts records the test server under another key type (ECDSA; the server presents
/// ed25519): trust on first use refuses it, names both, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_on_first_use_refuses_a_host_recorded_with_another_key_type() {
    if !available(Server::Sshd) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("other_ecdsa");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-N", ""])
        .arg("-f")
        .arg(&keyfile)
        .status()
        .unwrap();
    assert!(status.success());
    let pubkey = fs::read_to_string(keyfile.with_extension("pub")).unwrap();
    let mut parts = pubkey.split_whitespace();
    let (alg, key) = (parts.next().unwrap(), parts.next().unwrap());
    let known_hosts = dir.path().join("known_hosts");
    let recorded = format!("[127.0.0.1]:2222 {alg} {key}\n");
    fs::write(&known_hosts, &recorded).unwrap();

    let name = fresh_name();
    let _cleanup = Cleanup(Server::Sshd.local_root(&name));
    for tofu in [true, false] {
        let client = builder(Server::Sshd, &name)
            .with_known_hosts(&known_hosts)
            .with_trust_on_first_use(tofu)
            .build()
            .unwrap();
        let err = client
            .put(&p("secret.txt"), Bytes::from("x"))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(!err.is_transient(), "{err:?}");
        assert!(
            msg.contains("another type") && msg.contains("ecdsa") && msg.contains("SHA256:"),
            "tofu {tofu}: {msg}"
        );
        assert_eq!(
            fs::read_to_string(&known_hosts).unwrap(),
            recorded,
            "tofu {tofu}: known_hosts must not be changed"
        );
    }
    assert!(
        !Server::Sshd.local_root(&name).exists(),
        "something was written despite the refused host key"
    );
    // The key files are the test's own, not the server's.
    assert_ne!(
        fs::read_to_string(keys_dir().join("host_ed25519.pub")).unwrap(),
        pubkey
    );
}

// --- Permission bits --------------------------------------------------------------------

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Overwrites (plain, and the checked ones the engine makes; with and without
/// `posix-rename`) keep the file's permission bits. Old code left each replaced file at the
/// server's default (0644 under sshd's usual umask).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrites_keep_the_files_permission_bits() {
    if !available(Server::Sshd) {
        return;
    }
    for posix_rename in [true, false] {
        let (client, cleanup) = fixture_with(Server::Sshd, |b| b.with_posix_rename(posix_rename));
        let root: PathBuf = cleanup.0.clone();
        for (name, mode) in [("private", 0o600), ("script.sh", 0o755), ("shared", 0o664)] {
            let path = p(&format!("d/{name}"));
            let disk = root.join("d").join(name);
            client.put(&path, Bytes::from("v1")).await.unwrap();
            fs::set_permissions(&disk, fs::Permissions::from_mode(mode)).unwrap();
            client.put(&path, Bytes::from("v2")).await.unwrap();
            assert_eq!(mode_of(&disk), mode, "{name} after an overwrite");
            let listed = client.stat(&path).await.unwrap();
            client
                .write_opts(
                    &path,
                    bytes_stream(Bytes::from("v3")),
                    WriteOptions::default()
                        .with_mode(WriteMode::IfUnchanged(Version::of(&listed)))
                        .with_mtime(std::time::SystemTime::now()),
                )
                .await
                .unwrap();
            assert_eq!(mode_of(&disk), mode, "{name} after a checked overwrite");
            assert_eq!(fs::read_to_string(&disk).unwrap(), "v3");
        }
    }
}

/// Through the engine: a private file on the SFTP side, edited locally, stays private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_overwrite_keeps_a_private_file_private() {
    if !available(Server::Sshd) {
        return;
    }
    let (sftp, cleanup) = fixture_with(Server::Sshd, |b| b);
    let root = cleanup.0.clone();
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    write(&local.join("keys/secret.txt"), "v1");
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local)),
        sftp,
        SyncMode::SourceToDestination,
    );
    engine.sync_pair(&pair).await.unwrap();
    let disk = root.join("keys/secret.txt");
    fs::set_permissions(&disk, fs::Permissions::from_mode(0o600)).unwrap();
    write(&local.join("keys/secret.txt"), "v2 (longer)");
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    assert_eq!(fs::read_to_string(&disk).unwrap(), "v2 (longer)");
    assert_eq!(mode_of(&disk), 0o600);
}
