//! Permission bits of files the engine creates over SFTP, against the real sshd (real paths,
//! so the disk can be inspected): a new file gets the source's bits (`0o777` of them, less the
//! server's umask), a source without any (memory, like the object stores) gives the server's
//! default, listings carry the bits, and the temporary file never has more than the final
//! file. Old code created every new file with the server's default (`0o644` under sshd's
//! usual umask): a `0o600` private key became world-readable.

// Test code: panicking with a message is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use support::{Server, available, fixture_with};
use syncengine_backend_local::LocalClient;
use syncengine_core::{
    MemoryClient, RelPath, StorageClientExt, SyncEngine, SyncMode, SyncPair, WriteOptions,
};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn write_with_mode(path: &Path, body: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// `got` is `wanted` less some umask: no bit beyond it, and the owner's bits all there
/// (no umask takes those).
fn assert_bits(got: u32, wanted: u32, what: &str) {
    assert_eq!(
        got & !wanted,
        0,
        "{what}: {got:o} has bits beyond {wanted:o}"
    );
    assert_eq!(
        got & 0o700,
        wanted & 0o700,
        "{what}: {got:o} lacks owner bits of {wanted:o}"
    );
}

/// local → SFTP: a private key stays private and a script stays executable; the SFTP
/// listing carries the bits, and SFTP → local keeps them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_files_get_the_source_permission_bits() {
    if !available(Server::Sshd) {
        return;
    }
    let (sftp, cleanup) = fixture_with(Server::Sshd, |b| b);
    let remote = cleanup.0.clone();
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    write_with_mode(&local.join("keys/id_ed25519"), "secret", 0o600);
    write_with_mode(&local.join("bin/run.sh"), "#!/bin/sh\n", 0o755);
    write_with_mode(&local.join("bin/suid"), "x", 0o4750);
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local)),
        sftp.clone(),
        SyncMode::TwoWay,
    );
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 3, "{stats:?}");
    assert_eq!(mode_of(&remote.join("keys/id_ed25519")), 0o600);
    assert_bits(mode_of(&remote.join("bin/run.sh")), 0o755, "script");
    assert_bits(mode_of(&remote.join("bin/suid")), 0o750, "setuid file");

    // The listing carries them.
    let key = sftp.stat(&p("keys/id_ed25519")).await.unwrap();
    assert_eq!(key.permissions, Some(0o600));
    let listed: Vec<_> = sftp
        .list(None)
        .map(|e| e.unwrap())
        .filter(|e| futures::future::ready(e.path.as_str() == "bin/run.sh"))
        .collect()
        .await;
    assert_eq!(
        listed[0].permissions,
        Some(mode_of(&remote.join("bin/run.sh")))
    );

    // SFTP → local.
    write_with_mode(&remote.join("keys/id_rsa"), "other secret", 0o600);
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.downloaded, 1, "{stats:?}");
    assert_eq!(mode_of(&local.join("keys/id_rsa")), 0o600);

    // A change of permissions alone is not synced.
    fs::set_permissions(local.join("bin/run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!((stats.uploaded, stats.downloaded), (0, 0), "{stats:?}");
}

/// A source that keeps no permission bits (memory, like the object stores) gives a new file
/// the server's default, as before: the same as a write that asks for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_permission_bits_gives_the_server_default() {
    if !available(Server::Sshd) {
        return;
    }
    let (sftp, cleanup) = fixture_with(Server::Sshd, |b| b);
    let remote = cleanup.0.clone();
    let memory = MemoryClient::new();
    memory
        .put(&p("from-memory.txt"), Bytes::from("hi"))
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(memory),
        sftp.clone(),
        SyncMode::SourceToDestination,
    );
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    sftp.put(&p("plain"), Bytes::from("p")).await.unwrap();
    let default = mode_of(&remote.join("plain"));
    assert_eq!(mode_of(&remote.join("from-memory.txt")), default);
}

/// While a write is under way, its temporary file on the server already has the final,
/// restrictive bits: never readable by others, not even for a moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_temporary_file_is_never_more_permissive_than_the_final_one() {
    if !available(Server::Sshd) {
        return;
    }
    let (sftp, cleanup) = fixture_with(Server::Sshd, |b| b);
    let remote = cleanup.0.clone();
    sftp.put(&p("keys/other"), Bytes::from("o")).await.unwrap();
    let (tx, rx) = futures::channel::mpsc::unbounded::<syncengine_core::Result<Bytes>>();
    tx.unbounded_send(Ok(Bytes::from(vec![b'k'; 64 << 10])))
        .unwrap();
    let client = sftp.clone();
    let write = tokio::spawn(async move {
        client
            .write_opts(
                &p("keys/id_ed25519"),
                rx.boxed(),
                WriteOptions::default().with_permissions(0o600),
            )
            .await
    });
    let temp = loop {
        let found = support::temp_files_below(&remote)
            .into_iter()
            .find(|t| fs::metadata(t).is_ok_and(|m| m.len() > 0));
        if let Some(t) = found {
            break t;
        }
        assert!(!write.is_finished(), "the write ended before its body did");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        mode_of(&temp) & 0o077,
        0,
        "the temp holding content is private"
    );
    drop(tx);
    write.await.unwrap().unwrap();
    assert_eq!(mode_of(&remote.join("keys/id_ed25519")), 0o600);
}

/// A server that keeps new files more open than asked (`rclone serve sftp` applies its own
/// file permissions, 0644 here) never gets a private file's content: the write fails with the
/// cause, nothing is left at the path. A file whose bits the server's default already covers
/// goes through, and does not make the client trust the server for the next private file
/// (before, one 0644 file that matched made it skip the check from then on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_permission_bits_never_gets_a_private_file() {
    if !available(Server::Rclone) {
        return;
    }
    let (sftp, cleanup) = fixture_with(Server::Rclone, |b| b);
    let remote = cleanup.0.clone();
    let write = |name: &'static str, mode: u32| {
        let sftp = sftp.clone();
        async move {
            let opts = WriteOptions::default().with_permissions(mode);
            let body = futures::stream::iter([Ok(Bytes::from_static(b"secret"))]).boxed();
            sftp.write_opts(&p(name), body, opts).await
        }
    };
    write("public.txt", 0o644).await.expect("a 0644 file");
    let e = write("id_key", 0o600)
        .await
        .expect_err("a private file went to a server that keeps it 0644");
    let text = e.to_string();
    assert!(
        text.contains("more open than the source's 0600") && text.contains("--file-perms"),
        "{text}"
    );
    assert!(!e.is_transient(), "retrying cannot help: {e}");
    assert!(!remote.join("id_key").exists(), "the private file landed");
    let leftovers: Vec<_> = fs::read_dir(&remote)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "public.txt")
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

/// local → SFTP: folders the engine creates get the source folder's bits (less the server's
/// umask, the owner's `rwx` always kept): a private `0o700` folder stays private instead of
/// becoming the server's default `0o755` (red team 13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_folders_get_the_source_folder_bits() {
    if !available(Server::Sshd) {
        return;
    }
    let (sftp, cleanup) = fixture_with(Server::Sshd, |b| b);
    let remote = cleanup.0.clone();
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    write_with_mode(&local.join("private/deeper/key"), "secret", 0o600);
    write_with_mode(&local.join("shared/notes.txt"), "plain", 0o644);
    fs::set_permissions(local.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(
        local.join("private/deeper"),
        fs::Permissions::from_mode(0o710),
    )
    .unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&local)),
        sftp.clone(),
        SyncMode::TwoWay,
    );
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!((stats.uploaded, stats.errors), (2, 0), "{stats:?}");
    assert_eq!(mode_of(&remote.join("private")), 0o700);
    assert_bits(
        mode_of(&remote.join("private/deeper")),
        0o710,
        "nested folder",
    );
    assert_bits(mode_of(&remote.join("shared")), 0o755, "a plain folder");
}
