//! Engine behaviour that only shows on real directories: the trash, its pruning, backup dirs,
//! skipped symlinks, and the canonical order of deep trees.

// Test helpers outside #[test] fns unwrap freely: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::sync::Arc;

use syncengine_backend_local::LocalClient;
use syncengine_core::{Recovery, Side, StorageClient, SyncEngine, SyncMode, SyncOptions, SyncPair};

fn write(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, body).unwrap();
}

fn trash_files(root: &Path) -> Vec<String> {
    let trash = root.join(".syncengine/trash");
    let mut out = Vec::new();
    if let Ok(stamps) = fs::read_dir(&trash) {
        for stamp in stamps.flatten() {
            for f in walk(&stamp.path()) {
                out.push(fs::read_to_string(f).unwrap());
            }
        }
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

struct Fixture {
    _tmp: tempfile::TempDir,
    src: std::path::PathBuf,
    dst: std::path::PathBuf,
    engine: SyncEngine,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    fs::create_dir_all(&src).unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    Fixture {
        src,
        dst,
        engine,
        _tmp: tmp,
    }
}

impl Fixture {
    fn pair(&self, mode: SyncMode, opts: SyncOptions) -> SyncPair {
        SyncPair::new(
            Arc::new(LocalClient::new(&self.src)),
            Arc::new(LocalClient::new(&self.dst)),
            mode,
        )
        .with_options(opts)
    }
}

/// Deleted and overwritten files go to the trash on a local side; `--no-trash` deletes outright.
#[tokio::test]
async fn deleted_and_overwritten_files_are_trashed() {
    let f = fixture();
    for i in 0..4 {
        write(&f.src, &format!("k{i}.txt"), "keep");
    }
    write(&f.src, "gone.txt", "to be deleted");
    write(&f.src, "over.txt", "original");
    let opts = SyncOptions::default();
    f.engine
        .sync_pair(&f.pair(SyncMode::SourceToDestination, opts.clone()))
        .await
        .unwrap();

    fs::remove_file(f.src.join("gone.txt")).unwrap();
    write(
        &f.dst,
        "over.txt",
        "destination edit that the mirror overwrites",
    );
    let stats = f
        .engine
        .sync_pair(&f.pair(SyncMode::SourceToDestination, opts))
        .await
        .unwrap();
    assert_eq!(
        (stats.deleted_destination, stats.uploaded),
        (1, 1),
        "{stats:?}"
    );
    assert!(!f.dst.join("gone.txt").exists());
    assert_eq!(
        fs::read_to_string(f.dst.join("over.txt")).unwrap(),
        "original"
    );
    assert_eq!(
        trash_files(&f.dst),
        vec![
            "destination edit that the mirror overwrites".to_string(),
            "to be deleted".to_string()
        ]
    );

    // Without the trash the file is simply gone.
    fs::remove_file(f.src.join("k0.txt")).unwrap();
    let no_trash = SyncOptions::default().with_recovery(Side::Destination, Recovery::None);
    f.engine
        .sync_pair(&f.pair(SyncMode::SourceToDestination, no_trash))
        .await
        .unwrap();
    assert!(!f.dst.join("k0.txt").exists());
    assert_eq!(trash_files(&f.dst).len(), 2, "--no-trash still trashed");
}

/// `--trash-keep DAYS` removes trash folders older than DAYS and keeps recent ones.
#[tokio::test]
async fn old_trash_is_pruned() {
    let f = fixture();
    write(&f.src, "a.txt", "a");
    write(
        &f.src,
        ".syncengine/trash/20000101T000000Z/old.txt",
        "ancient",
    );
    write(
        &f.src,
        ".syncengine/trash/29990101T000000Z/new.txt",
        "recent",
    );
    // Not a stamp (and multi-byte at the 16th byte): not ours to prune, and no panic.
    write(&f.src, ".syncengine/trash/aééééééééé/mine.txt", "user's");
    let opts = SyncOptions::default().with_trash_keep_days(7);
    let stats = f
        .engine
        .sync_pair(&f.pair(SyncMode::TwoWay, opts))
        .await
        .unwrap();
    assert_eq!(
        stats.uploaded, 1,
        "the trash itself is never synced: {stats:?}"
    );
    assert!(
        !f.src
            .join(".syncengine/trash/20000101T000000Z/old.txt")
            .exists()
    );
    assert!(
        f.src
            .join(".syncengine/trash/29990101T000000Z/new.txt")
            .exists()
    );
    assert!(f.src.join(".syncengine/trash/aééééééééé/mine.txt").exists());
    assert!(!f.dst.join(".syncengine").exists());
}

/// A backup dir receives deleted files instead of the trash.
#[tokio::test]
async fn backup_dir_receives_deleted_files() {
    let f = fixture();
    for i in 0..4 {
        write(&f.src, &format!("k{i}.txt"), "keep");
    }
    write(&f.src, "gone.txt", "precious");
    f.engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    fs::remove_file(f.src.join("gone.txt")).unwrap();
    let backup_root = f.src.parent().unwrap().join("backup");
    let backup: Arc<dyn StorageClient> = Arc::new(LocalClient::new(&backup_root));
    let opts = SyncOptions::default().with_recovery(Side::Destination, Recovery::BackupDir(backup));
    let stats = f
        .engine
        .sync_pair(&f.pair(SyncMode::TwoWay, opts))
        .await
        .unwrap();
    assert_eq!(stats.deleted_destination, 1);
    assert!(!f.dst.join("gone.txt").exists());
    let saved: Vec<String> = walk(&backup_root)
        .into_iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(saved, vec!["precious".to_string()]);
    assert!(
        trash_files(&f.dst).is_empty(),
        "backup dir replaces the trash"
    );
}

/// Symlinks are not followed or synced; they are counted as skipped with a warning.
#[tokio::test]
async fn symlinks_are_skipped_and_reported() {
    let f = fixture();
    write(&f.src, "real.txt", "data");
    std::os::unix::fs::symlink(f.src.join("real.txt"), f.src.join("link.txt")).unwrap();
    std::os::unix::fs::symlink("/etc", f.src.join("etc-link")).unwrap();
    let stats = f
        .engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    assert_eq!(stats.skipped, 2, "{stats:?}");
    assert!(
        stats
            .warnings
            .iter()
            .any(|w| w.contains("2 entries on the source were skipped")),
        "{stats:?}"
    );
    assert!(!f.dst.join("link.txt").exists() && !f.dst.join("etc-link").exists());
}

/// A second run over an unchanged tree reads no file content and writes nothing: mtimes and
/// inodes on both sides stay as they were.
#[tokio::test]
async fn no_change_run_touches_nothing() {
    let f = fixture();
    for i in 0..50 {
        write(
            &f.src,
            &format!("d{}/f{i}.txt", i % 5),
            &format!("content {i}"),
        );
    }
    f.engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    let before: Vec<_> = walk(&f.dst)
        .into_iter()
        .map(|p| {
            let m = fs::metadata(&p).unwrap();
            (
                p,
                m.modified().unwrap(),
                std::os::unix::fs::MetadataExt::ino(&m),
            )
        })
        .collect();
    let stats = f
        .engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    assert!(stats.is_noop(), "{stats:?}");
    for (p, mtime, ino) in before {
        let m = fs::metadata(&p).unwrap();
        assert_eq!(m.modified().unwrap(), mtime, "{} rewritten", p.display());
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&m),
            ino,
            "{} replaced",
            p.display()
        );
    }
}

fn inode(p: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap())
}

/// Writes `body` at `rel` with the given mtime.
fn write_with_mtime(root: &Path, rel: &str, body: &str, mtime: std::time::SystemTime) {
    write(root, rel, body);
    fs::File::options()
        .write(true)
        .open(root.join(rel))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

/// Real inode reuse: a file is deleted and another one, with the same size and mtime, is
/// created under a new name. ext4 hands the freed inode to the new file; the old code took
/// that for a rename and moved the old content to the new name on the other side, for good.
/// Birth times (and content) tell the two apart. Where the filesystem does not reuse the
/// inode the test still checks the outcome (the memory client's switch reproduces the reuse
/// in `syncengine-core`'s `renames` tests).
#[tokio::test]
async fn a_reused_inode_is_not_taken_for_a_rename() {
    let f = fixture();
    for i in 0..3 {
        write(&f.src, &format!("other/{i}"), "untouched");
    }
    let mtime = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    write_with_mtime(&f.src, "a.txt", "old content", mtime);
    f.engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    let old_inode = inode(&f.src.join("a.txt"));
    fs::remove_file(f.src.join("a.txt")).unwrap();
    // The freed inode goes to one of the next files created (ext4 usually gives it to the
    // very next one); create new files until one has it and name that one b.txt.
    let mut reused = false;
    for i in 0..200 {
        let name = format!("new-{i}.tmp");
        write_with_mtime(&f.src, &name, "new content", mtime);
        if inode(&f.src.join(&name)) == old_inode {
            fs::rename(f.src.join(&name), f.src.join("b.txt")).unwrap();
            reused = true;
            break;
        }
    }
    for i in 0..200 {
        let _ = fs::remove_file(f.src.join(format!("new-{i}.tmp")));
    }
    if !reused {
        eprintln!("note: this filesystem did not reuse the inode");
        write_with_mtime(&f.src, "b.txt", "new content", mtime);
    }

    let stats = f
        .engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    assert_eq!(stats.renamed_destination, 0, "{stats:?}");
    assert_eq!(
        fs::read_to_string(f.dst.join("b.txt")).unwrap(),
        "new content"
    );
    assert!(!f.dst.join("a.txt").exists());
    assert_eq!(
        trash_files(&f.dst),
        ["old content"],
        "the old version is kept"
    );
    assert!(
        f.engine
            .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
            .await
            .unwrap()
            .is_noop()
    );
}

/// A genuine rename on local disk is still mirrored as a rename (the destination's file is
/// moved, not copied), confirmed by inode and birth time.
#[tokio::test]
async fn a_genuine_rename_on_local_disk_is_a_rename() {
    let f = fixture();
    write(&f.src, "a.txt", "some content");
    write(&f.src, "keep.txt", "keep");
    f.engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    let dst_inode = inode(&f.dst.join("a.txt"));
    fs::create_dir_all(f.src.join("moved")).unwrap();
    fs::rename(f.src.join("a.txt"), f.src.join("moved/b.txt")).unwrap();

    let stats = f
        .engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    assert_eq!(stats.renamed_destination, 1, "{stats:?}");
    assert_eq!(
        (stats.uploaded, stats.deleted_destination),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(
        inode(&f.dst.join("moved/b.txt")),
        dst_inode,
        "moved, not copied"
    );
    assert!(!f.dst.join("a.txt").exists());
}

/// `--checksum` detects an edit that kept size and mtime (the hash kept in the base
/// differs) and copies it.
#[tokio::test]
async fn checksum_detects_an_edit_that_keeps_size_and_mtime() {
    let f = fixture();
    let checksum = || f.pair(SyncMode::TwoWay, SyncOptions::default().with_checksum(true));
    let mtime = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    write_with_mtime(&f.src, "a.txt", "version 1", mtime);
    f.engine.sync_pair(&checksum()).await.unwrap();
    write_with_mtime(&f.src, "a.txt", "version 2", mtime);

    let stats = f.engine.sync_pair(&checksum()).await.unwrap();
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    assert_eq!(
        fs::read_to_string(f.dst.join("a.txt")).unwrap(),
        "version 2"
    );
    assert!(f.engine.sync_pair(&checksum()).await.unwrap().is_noop());
}
