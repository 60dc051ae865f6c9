//! Executor behaviour on real directories: staged overwrites keep the old version at its path
//! when the transfer fails, is cut short or is cancelled; the old version goes to the trash by
//! a hard link; type changes (file ↔ folder) converge in one run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../syncengine-core/tests/support/faulty.rs"]
mod faulty;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use faulty::{Faulty, ReadFault};
use syncengine_backend_local::LocalClient;
use syncengine_core::testing::Forwarding;
use syncengine_core::{
    StorageClient, SyncEngine, SyncError, SyncMode, SyncOptions, SyncPair, SyncStats,
};
use tokio_util::sync::CancellationToken;

fn write(root: &Path, rel: &str, body: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, body).unwrap();
}

fn body(tag: &str, len: usize) -> Vec<u8> {
    let mut v = tag.as_bytes().to_vec();
    v.resize(len, b'.');
    v
}

/// Every file below `root` (relative paths), the trash included (the engine's other files,
/// such as the root id, left out).
fn files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), base, out);
            } else {
                let rel = e.path().strip_prefix(base).unwrap().to_owned();
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.retain(|p| !p.starts_with(".syncengine/") || p.starts_with(".syncengine/trash/"));
    out.sort();
    out
}

struct Fixture {
    _dirs: tempfile::TempDir,
    state: std::path::PathBuf,
    src: std::path::PathBuf,
    dst: std::path::PathBuf,
    faulty_src: Arc<Forwarding<Faulty>>,
}

impl Fixture {
    fn new() -> Fixture {
        let dirs = tempfile::tempdir().unwrap();
        let (state, src, dst) = (
            dirs.path().join("state"),
            dirs.path().join("src"),
            dirs.path().join("dst"),
        );
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&dst).unwrap();
        let faulty_src = Faulty::new(Arc::new(LocalClient::new(&src)));
        Fixture {
            _dirs: dirs,
            state,
            src,
            dst,
            faulty_src,
        }
    }

    fn pair(&self) -> SyncPair {
        let dst: Arc<dyn StorageClient> = Arc::new(LocalClient::new(&self.dst));
        SyncPair::new(self.faulty_src.clone(), dst, SyncMode::TwoWay)
            .with_options(SyncOptions::default().with_attempts(2))
    }

    async fn sync(&self) -> SyncStats {
        SyncEngine::new(&self.state)
            .sync_pair(&self.pair())
            .await
            .unwrap()
    }
}

/// `x` synced with 1 200 bytes, then changed on the source; returns the fixture.
async fn overwrite_pending() -> Fixture {
    let f = Fixture::new();
    write(&f.src, "d/x", &body("old", 1200));
    assert_eq!(f.sync().await.errors, 0);
    assert_eq!(fs::read(f.dst.join("d/x")).unwrap(), body("old", 1200));
    // A different size and mtime: the change is seen without hashing.
    std::thread::sleep(Duration::from_millis(20));
    write(&f.src, "d/x", &body("new", 1300));
    f
}

#[tokio::test]
async fn failed_source_read_during_an_overwrite_keeps_the_old_file() {
    let f = overwrite_pending().await;
    f.faulty_src.break_read("d/x", ReadFault::FailAfter(100));
    let stats = f.sync().await;
    assert_eq!(stats.errors, 1, "{stats:?}");
    assert_eq!(fs::read(f.dst.join("d/x")).unwrap(), body("old", 1200));
    assert_eq!(
        files(&f.dst),
        ["d/x"],
        "spare trash copy removed, no temp left"
    );
}

#[tokio::test]
async fn short_read_does_not_replace_the_file() {
    let f = overwrite_pending().await;
    f.faulty_src.break_read("d/x", ReadFault::Truncate(500));
    let stats = f.sync().await;
    assert_eq!(stats.errors, 1, "{stats:?}");
    assert!(
        stats.error_messages[0].contains("500 of 1300"),
        "{:?}",
        stats.error_messages
    );
    assert_eq!(fs::read(f.dst.join("d/x")).unwrap(), body("old", 1200));
    f.faulty_src.heal();
    assert_eq!(f.sync().await.errors, 0);
    assert_eq!(fs::read(f.dst.join("d/x")).unwrap(), body("new", 1300));
}

#[tokio::test]
async fn cancelled_overwrite_keeps_the_old_file() {
    let f = overwrite_pending().await;
    f.faulty_src.break_read("d/x", ReadFault::Hang(100));
    let token = CancellationToken::new();
    let engine = SyncEngine::new(&f.state).with_cancellation(token.clone());
    let pair = f.pair();
    let run = tokio::spawn(async move { engine.sync_pair(&pair).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel();
    assert!(matches!(run.await.unwrap(), Err(SyncError::Cancelled)));
    assert_eq!(
        fs::read(f.dst.join("d/x")).unwrap(),
        body("old", 1200),
        "a cancelled overwrite left the path without its old version"
    );
    // The spare trash copy stays after a cancellation (the write might still land, and
    // removing the copy first could leave the old version nowhere): it is the old version.
    let all = files(&f.dst);
    assert_eq!(all.len(), 2, "{all:?}");
    let spare = all.iter().find(|p| p.as_str() != "d/x").unwrap();
    assert!(spare.starts_with(".syncengine/trash/"), "{all:?}");
    assert_eq!(fs::read(f.dst.join(spare)).unwrap(), body("old", 1200));
}

#[tokio::test]
async fn overwrite_links_the_old_version_into_the_trash() {
    let f = overwrite_pending().await;
    let old_inode = fs::metadata(f.dst.join("d/x")).unwrap().ino();
    let stats = f.sync().await;
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(fs::read(f.dst.join("d/x")).unwrap(), body("new", 1300));
    let all = files(&f.dst);
    let trashed: Vec<_> = all
        .iter()
        .filter(|p| p.starts_with(".syncengine/trash/"))
        .collect();
    assert_eq!(trashed.len(), 1, "{all:?}");
    let kept = f.dst.join(trashed[0]);
    assert_eq!(fs::read(&kept).unwrap(), body("old", 1200));
    assert_eq!(
        fs::metadata(&kept).unwrap().ino(),
        old_inode,
        "the old version is the old file itself (a link), not a copy"
    );
}

#[tokio::test]
async fn a_file_replaced_by_a_folder_converges_in_one_run() {
    let f = Fixture::new();
    write(&f.src, "x", b"a file");
    write(&f.src, "keep", b"k");
    assert_eq!(f.sync().await.errors, 0);
    fs::remove_file(f.src.join("x")).unwrap();
    write(&f.src, "x/y", b"now a folder");
    let stats = f.sync().await;
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(fs::read(f.dst.join("x/y")).unwrap(), b"now a folder");
    let again = f.sync().await;
    assert!(again.is_noop() && again.errors == 0, "{again:?}");
}

#[tokio::test]
async fn a_folder_replaced_by_a_file_converges_in_one_run() {
    let f = Fixture::new();
    write(&f.src, "x/y", b"in a folder");
    write(&f.src, "keep", b"k");
    assert_eq!(f.sync().await.errors, 0);
    fs::remove_dir_all(f.src.join("x")).unwrap();
    write(&f.src, "x", b"now a file");
    let stats = f.sync().await;
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(fs::read(f.dst.join("x")).unwrap(), b"now a file");
    let again = f.sync().await;
    assert!(again.is_noop() && again.errors == 0, "{again:?}");
}
