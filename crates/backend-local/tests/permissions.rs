//! Permission bits of files the engine creates on local disk: a new file gets the source's
//! bits (`0o777` of them, less the umask), a source without any (object stores, memory) gives
//! the process's default, the temporary file never has more than the final file, and a
//! change of permissions alone is not synced. Old code created every new file with the
//! default (`0o644` under the usual umask): a `0o600` private key became world-readable.

// Test code: panicking with a message is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use syncengine_backend_local::{LocalClient, TEMP_PREFIX};
use syncengine_core::{
    MemoryClient, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair,
    WriteOptions,
};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// This process's umask, read without changing it.
fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("Umask in /proc/self/status");
    u32::from_str_radix(line.trim(), 8).unwrap()
}

fn write_with_mode(path: &Path, body: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

struct Dirs {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    dst: PathBuf,
    engine: SyncEngine,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir_all(&src).unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    Dirs {
        src,
        dst,
        engine,
        _tmp: tmp,
    }
}

/// A private key stays private and a script stays executable, in a local → local sync.
#[tokio::test]
async fn new_files_get_the_source_permission_bits() {
    let d = dirs();
    write_with_mode(&d.src.join("keys/id_ed25519"), "secret", 0o600);
    write_with_mode(&d.src.join("bin/run.sh"), "#!/bin/sh\n", 0o755);
    write_with_mode(&d.src.join("notes.txt"), "plain", 0o644);
    // setuid/setgid/sticky never travel.
    write_with_mode(&d.src.join("bin/suid"), "x", 0o4750);
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&d.src)),
        Arc::new(LocalClient::new(&d.dst)),
        SyncMode::SourceToDestination,
    );
    let stats = d.engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 4, "{stats:?}");

    let umask = umask();
    assert_eq!(mode_of(&d.dst.join("keys/id_ed25519")), 0o600 & !umask);
    assert_eq!(mode_of(&d.dst.join("bin/run.sh")), 0o755 & !umask);
    assert_eq!(mode_of(&d.dst.join("notes.txt")), 0o644 & !umask);
    assert_eq!(mode_of(&d.dst.join("bin/suid")), 0o750 & !umask);
    // Whatever the umask, never more than the source.
    assert_eq!(mode_of(&d.dst.join("keys/id_ed25519")) & 0o077, 0);

    // The same in the other direction of a two-way pair (a download).
    write_with_mode(&d.dst.join("keys/id_rsa"), "other secret", 0o600);
    let two_way = SyncPair::new(
        Arc::new(LocalClient::new(&d.src)),
        Arc::new(LocalClient::new(&d.dst)),
        SyncMode::TwoWay,
    );
    let stats = d.engine.sync_pair(&two_way).await.unwrap();
    assert_eq!(stats.downloaded, 1, "{stats:?}");
    assert_eq!(mode_of(&d.src.join("keys/id_rsa")), 0o600 & !umask);
}

/// A change of permissions alone is not a change of the file: nothing is copied, and the
/// other side's bits stay as they are. An overwrite keeps the destination's bits.
#[tokio::test]
async fn permission_changes_alone_are_not_synced_and_overwrites_keep_the_destination_bits() {
    let d = dirs();
    write_with_mode(&d.src.join("a.sh"), "v1", 0o644);
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&d.src)),
        Arc::new(LocalClient::new(&d.dst)),
        SyncMode::TwoWay,
    );
    d.engine.sync_pair(&pair).await.unwrap();
    fs::set_permissions(d.src.join("a.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    let stats = d.engine.sync_pair(&pair).await.unwrap();
    assert_eq!(
        (stats.uploaded, stats.downloaded, stats.conflicts),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(mode_of(&d.dst.join("a.sh")), 0o644 & !umask());

    // The destination made it private; new content from the source keeps it private.
    fs::set_permissions(d.dst.join("a.sh"), fs::Permissions::from_mode(0o600)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    fs::write(d.src.join("a.sh"), "v2, longer").unwrap();
    let stats = d.engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    assert_eq!(
        fs::read_to_string(d.dst.join("a.sh")).unwrap(),
        "v2, longer"
    );
    assert_eq!(mode_of(&d.dst.join("a.sh")), 0o600);
}

/// A source that keeps no permission bits (memory, like the object stores) gives a new
/// local file the process's default, as before.
#[tokio::test]
async fn a_source_without_permission_bits_gives_the_default() {
    let d = dirs();
    let memory = MemoryClient::new();
    memory
        .put(&p("from-memory.txt"), Bytes::from("hi"))
        .await
        .unwrap();
    assert_eq!(
        memory
            .stat(&p("from-memory.txt"))
            .await
            .unwrap()
            .permissions,
        None
    );
    let pair = SyncPair::new(
        Arc::new(memory),
        Arc::new(LocalClient::new(&d.dst)),
        SyncMode::SourceToDestination,
    );
    let stats = d.engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    assert_eq!(mode_of(&d.dst.join("from-memory.txt")), 0o666 & !umask());
}

/// Listings and `stat` carry the permission bits; a write without any gives the default, a
/// write with some gives them (`0o777` of them) and a server-side copy keeps the source's.
#[tokio::test]
async fn the_client_lists_and_writes_permission_bits() {
    let d = dirs();
    let client = LocalClient::new(&d.src);
    write_with_mode(&d.src.join("key"), "k", 0o600);
    write_with_mode(&d.src.join("dir/tool"), "t", 0o2755);
    let listed: Vec<_> = client.list(None).map(|e| e.unwrap()).collect().await;
    let bits: Vec<_> = listed
        .iter()
        .map(|e| (e.path.as_str().to_owned(), e.permissions))
        .collect();
    assert_eq!(
        bits,
        [
            ("dir/tool".to_owned(), Some(0o2755)),
            ("key".to_owned(), Some(0o600))
        ]
    );
    assert_eq!(
        client.stat(&p("key")).await.unwrap().permissions,
        Some(0o600)
    );

    let umask = umask();
    let written = client
        .write_opts(
            &p("new/private"),
            syncengine_core::bytes_stream(Bytes::from("x")),
            WriteOptions::default().with_permissions(0o4700),
        )
        .await
        .unwrap();
    assert_eq!(written.permissions, Some(0o700 & !umask));
    assert_eq!(mode_of(&d.src.join("new/private")), 0o700 & !umask);
    client.put(&p("new/plain"), Bytes::from("y")).await.unwrap();
    assert_eq!(mode_of(&d.src.join("new/plain")), 0o666 & !umask);

    let copied = client
        .copy_opts(&p("key"), &p("copies/key"), Default::default())
        .await
        .unwrap();
    assert_eq!(copied.permissions, Some(0o600 & !umask));
    assert_eq!(fs::read_to_string(d.src.join("copies/key")).unwrap(), "k");
    client
        .copy_opts(&p("dir/tool"), &p("copies/tool"), Default::default())
        .await
        .unwrap();
    assert_eq!(mode_of(&d.src.join("copies/tool")), 0o755 & !umask);
}

/// While a large write is under way, its temporary file already has the final, restrictive
/// bits: never readable by others, not even for a moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_temporary_file_is_never_more_permissive_than_the_final_one() {
    let d = dirs();
    fs::create_dir_all(&d.dst).unwrap();
    let client = LocalClient::new(&d.dst);
    let (tx, rx) = futures::channel::mpsc::unbounded::<syncengine_core::Result<Bytes>>();
    // More than one write batch, so the temp is created and written before the body ends.
    tx.unbounded_send(Ok(Bytes::from(vec![b'k'; 3 << 20])))
        .unwrap();
    let write = tokio::spawn(async move {
        client
            .write_opts(
                &p("id_ed25519"),
                rx.boxed(),
                WriteOptions::default().with_permissions(0o600),
            )
            .await
    });
    let temp = loop {
        let found = fs::read_dir(&d.dst)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX));
        if let Some(e) = found
            && e.metadata().unwrap().len() > 0
        {
            break e.path();
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
    assert_eq!(mode_of(&d.dst.join("id_ed25519")), 0o600 & !umask());
}

/// Folders the engine creates get the source folder's bits (less the umask, the owner's
/// `rwx` always kept): a private `0o700` folder stays private instead of becoming `0o755`
/// (red team 13). Folders that exist keep theirs, and a later change of a folder's bits alone
/// is not synced.
#[tokio::test]
async fn new_folders_get_the_source_folder_bits() {
    let d = dirs();
    let mask = umask();
    write_with_mode(&d.src.join("private/deeper/key"), "secret", 0o600);
    write_with_mode(&d.src.join("shared/notes.txt"), "plain", 0o644);
    fs::set_permissions(d.src.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(
        d.src.join("private/deeper"),
        fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    fs::set_permissions(d.src.join("shared"), fs::Permissions::from_mode(0o775)).unwrap();
    // Read-only for its owner too: the copy's owner still gets rwx, or nothing could be
    // written into it.
    write_with_mode(&d.src.join("frozen/f"), "x", 0o444);
    fs::set_permissions(d.src.join("frozen"), fs::Permissions::from_mode(0o555)).unwrap();
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&d.src)),
        Arc::new(LocalClient::new(&d.dst)),
        SyncMode::SourceToDestination,
    );
    let stats = d.engine.sync_pair(&pair).await.unwrap();
    fs::set_permissions(d.src.join("frozen"), fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!((stats.uploaded, stats.errors), (3, 0), "{stats:?}");
    assert_eq!(mode_of(&d.dst.join("private")), 0o700);
    assert_eq!(mode_of(&d.dst.join("private/deeper")), 0o750 & !mask);
    assert_eq!(mode_of(&d.dst.join("shared")), 0o775 & !mask);
    assert_eq!(mode_of(&d.dst.join("frozen")), 0o755 & !mask);

    // A folder's bits changed alone: nothing to sync, the copy keeps its own.
    fs::set_permissions(d.src.join("shared"), fs::Permissions::from_mode(0o700)).unwrap();
    let stats = d.engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.uploaded, 0, "{stats:?}");
    assert_eq!(mode_of(&d.dst.join("shared")), 0o775 & !mask);
}
