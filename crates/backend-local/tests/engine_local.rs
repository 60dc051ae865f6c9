//! Engine behaviour that only shows on real directories: the trash, its pruning, backup dirs,
//! unknown paths (symlinks, special files), and the canonical order of deep trees.

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
    // The destination's .syncengine/ holds only its own root id, no synced trash.
    assert!(!f.dst.join(".syncengine/trash").exists());
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

/// Writes `n` filler files so that the deletes old code planned stay under max-delete.
fn filler(root: &Path, n: usize) {
    for i in 0..n {
        write(root, &format!("other/f{i}.txt"), &format!("f{i}"));
    }
}

/// A folder moved to another disk and linked back is unknown: the destination's copies of its
/// files are not deleted (old code skipped the symlink, saw its files as deleted and deleted
/// them on the other side), the rest syncs, and the run reports the path.
#[tokio::test]
async fn symlinked_folder_is_unknown_and_its_copies_stay() {
    for mode in [SyncMode::TwoWay, SyncMode::SourceToDestination] {
        let f = fixture();
        write(&f.src, "photos/a.jpg", "a");
        write(&f.src, "photos/b.jpg", "b");
        write(&f.src, "top.txt", "v1");
        filler(&f.src, 10);
        let stats = f
            .engine
            .sync_pair(&f.pair(mode, SyncOptions::default()))
            .await
            .unwrap();
        assert_eq!(stats.uploaded, 13);

        let elsewhere = f._tmp.path().join("other-disk");
        fs::create_dir_all(&elsewhere).unwrap();
        fs::rename(f.src.join("photos"), elsewhere.join("photos")).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("photos"), f.src.join("photos")).unwrap();
        write(&f.src, "top.txt", "v2");
        let stats = f
            .engine
            .sync_pair(&f.pair(mode, SyncOptions::default()))
            .await
            .unwrap();
        assert_eq!(stats.deleted_destination, 0, "{mode:?}: {stats:?}");
        assert_eq!(fs::read_to_string(f.dst.join("photos/a.jpg")).unwrap(), "a");
        assert_eq!(fs::read_to_string(f.dst.join("photos/b.jpg")).unwrap(), "b");
        assert_eq!(fs::read_to_string(f.dst.join("top.txt")).unwrap(), "v2");
        assert_eq!(stats.unknown, 1, "{stats:?}");
        assert!(
            stats
                .warnings
                .iter()
                .any(|w| w.contains("\"photos\"") && w.contains("symlink")),
            "{stats:?}"
        );
        // Nothing was written through the link either.
        assert_eq!(walk(&elsewhere.join("photos")).len(), 2);
    }
}

/// A file replaced by a FIFO (or socket, device) is unknown: the other side's copy stays.
#[tokio::test]
async fn special_file_is_unknown_and_the_other_copy_stays() {
    let f = fixture();
    write(&f.src, "data", "precious");
    filler(&f.src, 4);
    f.engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    fs::remove_file(f.src.join("data")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(f.src.join("data"))
        .status()
        .unwrap();
    assert!(status.success());
    let stats = f
        .engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    assert_eq!(stats.deleted_destination, 0, "{stats:?}");
    assert_eq!(stats.unknown, 1, "{stats:?}");
    assert_eq!(fs::read_to_string(f.dst.join("data")).unwrap(), "precious");
    assert!(
        stats
            .warnings
            .iter()
            .any(|w| w.contains("\"data\"") && w.contains("special file")),
        "{stats:?}"
    );
}

/// Symlinks to files are unknown too, and an excluded one blocks nothing.
#[tokio::test]
async fn symlinks_are_reported_unless_excluded() {
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
    assert_eq!(stats.unknown, 2, "{stats:?}");
    assert!(!f.dst.join("link.txt").exists() && !f.dst.join("etc-link").exists());
    let stats = f
        .engine
        .sync_pair(&f.pair(
            SyncMode::TwoWay,
            SyncOptions::default().with_excludes(["link.txt", "etc-link"]),
        ))
        .await
        .unwrap();
    assert_eq!(stats.unknown, 0, "{stats:?}");
}

/// A `.syncignore` the engine cannot read as a file — here a symlink, which is never followed
/// — is not a root without rules: a mirror that ran without them would delete what they
/// exclude on the destination. The run stops before changing anything, naming the file.
#[tokio::test]
async fn a_syncignore_that_cannot_be_read_stops_the_run() {
    let f = fixture();
    let rules = f.src.parent().unwrap().join("rules");
    fs::write(&rules, "*.log\n").unwrap();
    std::os::unix::fs::symlink(&rules, f.src.join(".syncignore")).unwrap();
    for i in 0..6 {
        write(&f.src, &format!("k{i}.txt"), "kept");
        write(&f.dst, &format!("k{i}.txt"), "kept");
    }
    write(&f.src, "build.log", "the source's log");
    write(&f.dst, "local.log", "the destination's own log");
    let err = f
        .engine
        .sync_pair(&f.pair(SyncMode::SourceToDestination, SyncOptions::default()))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(".syncignore") && msg.contains("symlink"),
        "{msg}"
    );
    assert_eq!(
        fs::read_to_string(f.dst.join("local.log")).unwrap(),
        "the destination's own log"
    );
    assert!(!f.dst.join("build.log").exists());
    assert!(trash_files(&f.dst).is_empty());
    // A regular file in its place: the rules apply and the run goes through.
    fs::remove_file(f.src.join(".syncignore")).unwrap();
    fs::copy(&rules, f.src.join(".syncignore")).unwrap();
    f.engine
        .sync_pair(&f.pair(SyncMode::SourceToDestination, SyncOptions::default()))
        .await
        .unwrap();
    assert!(f.dst.join("local.log").exists() && !f.dst.join("build.log").exists());
    assert!(trash_files(&f.dst).is_empty());
}

/// An excluded folder is pruned before it is read: its files are not listed one by one (it
/// counts once as skipped) and what it holds that the walk would report — a symlink, a FIFO —
/// is never seen. The engine's own trash is not walked either.
#[tokio::test]
async fn excluded_folders_are_not_read() {
    let f = fixture();
    write(&f.src, "keep.txt", "data");
    for i in 0..40 {
        write(&f.src, &format!("node_modules/pkg{i}/index.js"), "x");
    }
    std::os::unix::fs::symlink("/etc", f.src.join("node_modules/etc-link")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        f.src.join("node_modules/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let opts = SyncOptions::default().with_excludes(["node_modules/"]);
    let stats = f
        .engine
        .sync_pair(&f.pair(SyncMode::TwoWay, opts.clone()))
        .await
        .unwrap();
    assert_eq!(
        (stats.uploaded, stats.unknown, stats.skipped),
        (1, 0, 1),
        "the excluded folder was read: {stats:?}"
    );
    assert!(!f.dst.join("node_modules").exists());

    // Files in the destination's trash are not walked (nor counted) on the next run.
    write(&f.dst, ".syncengine/trash/20260101T000000Z/old.txt", "old");
    let stats = f
        .engine
        .sync_pair(&f.pair(SyncMode::TwoWay, opts))
        .await
        .unwrap();
    assert_eq!(
        (
            stats.uploaded + stats.downloaded,
            stats.unknown,
            stats.skipped
        ),
        (0, 0, 1),
        "{stats:?}"
    );
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

/// Without any `--trash-keep`, trash folders older than 30 days are pruned and younger ones
/// stay.
#[tokio::test]
async fn trash_is_kept_thirty_days_by_default() {
    let f = fixture();
    write(&f.src, "a.txt", "a");
    let stamp = |days_ago: i64| {
        let t =
            std::time::SystemTime::now() - std::time::Duration::from_secs(days_ago as u64 * 86_400);
        let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        // Civil date from days since the epoch (Howard Hinnant's algorithm).
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!(
            "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    };
    let old = format!(".syncengine/trash/{}/old.txt", stamp(31));
    let old_numbered = format!(".syncengine/trash/{}-2/old2.txt", stamp(40));
    let recent = format!(".syncengine/trash/{}/recent.txt", stamp(29));
    for rel in [&old, &old_numbered, &recent] {
        write(&f.src, rel, "trashed");
    }
    f.engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    assert!(
        !f.src.join(&old).exists(),
        "a 31-day-old trash folder was kept"
    );
    assert!(!f.src.join(&old_numbered).exists());
    assert!(
        f.src.join(&recent).exists(),
        "a 29-day-old trash folder was pruned"
    );

    // Kept forever when asked.
    write(&f.src, &old, "trashed");
    f.engine
        .sync_pair(&f.pair(
            SyncMode::TwoWay,
            SyncOptions::default().with_trash_kept_forever(),
        ))
        .await
        .unwrap();
    assert!(f.src.join(&old).exists());
}

/// A trash dir (`--trash-dir`) receives deleted and overwritten files instead of the side's
/// own trash, and is pruned like it.
#[tokio::test]
async fn trash_dir_keeps_the_trash_elsewhere() {
    let f = fixture();
    for i in 0..4 {
        write(&f.src, &format!("k{i}.txt"), "keep");
    }
    write(&f.src, "gone.txt", "precious");
    write(&f.src, "over.txt", "first");
    f.engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    let elsewhere = f.src.parent().unwrap().join("elsewhere");
    write(&elsewhere, "20000101T000000Z/ancient.txt", "old");
    fs::remove_file(f.src.join("gone.txt")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&f.src, "over.txt", "second");
    let trash: Arc<dyn StorageClient> = Arc::new(LocalClient::new(&elsewhere));
    let opts = SyncOptions::default().with_recovery(Side::Destination, Recovery::TrashDir(trash));
    let stats = f
        .engine
        .sync_pair(&f.pair(SyncMode::TwoWay, opts))
        .await
        .unwrap();
    assert_eq!(
        (stats.deleted_destination, stats.uploaded),
        (1, 1),
        "{stats:?}"
    );
    let mut saved: Vec<String> = walk(&elsewhere)
        .into_iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    saved.sort();
    assert_eq!(
        saved,
        ["first", "precious"],
        "the old stamp is pruned, the new kept"
    );
    assert!(
        trash_files(&f.dst).is_empty(),
        "the trash dir replaces the trash"
    );
}

/// The state directory inside a synced root (the default one lies inside `~`) is the engine's
/// own: its database, WAL and lock files are never synced, and the run succeeds.
#[tokio::test]
async fn state_dir_inside_the_source_root_is_not_synced() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let dst = tmp.path().join("dst");
    write(&home, "notes/todo.txt", "milk");
    let state_dir = home.join(".local/state/syncengine");
    let engine = SyncEngine::new(&state_dir);
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&home)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::TwoWay,
    );
    for _ in 0..2 {
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(stats.errors, 0, "{stats:?}");
        assert_eq!(
            stats.skipped, 0,
            "our own files are not 'skipped': {stats:?}"
        );
    }
    assert!(
        fs::read_dir(&state_dir).unwrap().count() > 0,
        "the state lives there"
    );
    assert_eq!(
        fs::read_to_string(dst.join("notes/todo.txt")).unwrap(),
        "milk"
    );
    assert!(
        !dst.join(".local").exists(),
        "the state directory was synced: {:?}",
        walk(&dst)
    );
    // A state directory given by a path through a symlink is recognised too.
    let link = tmp.path().join("link-to-home");
    std::os::unix::fs::symlink(&home, &link).unwrap();
    let engine = SyncEngine::new(link.join("state"));
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert!(!dst.join("state").exists(), "{:?}", walk(&dst));
}

/// Stale temp files (exact format, untouched for a day) are removed after a real run, never
/// by a dry run; a young one and a look-alike stay.
#[tokio::test]
async fn stale_temps_are_removed_only_by_a_real_run() {
    let f = fixture();
    write(&f.src, "a.txt", "a");
    let day = std::time::Duration::from_secs(86_400);
    let old = std::time::SystemTime::now() - day - std::time::Duration::from_secs(60);
    let stale = f.src.join("d/.syncengine-tmp-00000000deadbeef");
    let young = f.src.join("d/.syncengine-tmp-00000000cafef00d");
    let lookalike = f.src.join("d/.syncengine-tmp-my-notes");
    for path in [&stale, &young, &lookalike] {
        write(
            &f.src,
            path.strip_prefix(&f.src).unwrap().to_str().unwrap(),
            "x",
        );
    }
    for path in [&stale, &lookalike] {
        let file = fs::File::options().write(true).open(path).unwrap();
        file.set_times(fs::FileTimes::new().set_modified(old).set_accessed(old))
            .unwrap();
    }
    let dry = SyncOptions::default().with_dry_run(true);
    f.engine
        .sync_pair(&f.pair(SyncMode::TwoWay, dry))
        .await
        .unwrap();
    assert!(stale.exists(), "a dry run removed a file");
    f.engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    assert!(!stale.exists(), "a day-old temp was left behind");
    assert!(young.exists(), "a temp younger than a day was removed");
    assert!(
        lookalike.exists(),
        "a file that only resembles a temp was removed"
    );
    assert!(!f.dst.join("d").exists(), "temps are never synced");
}

/// A temp file a killed write of the engine's own files left in `.syncengine/` (the id file,
/// a generation) is removed like any other once it is a day old (red team 9, finding 06). One
/// in the trash (a killed copy into it) goes too, at the trash's pruning, whose listing of the
/// whole trash finds it (red team 31): nothing else ever removed it.
#[tokio::test]
async fn stale_temps_in_the_engine_folder_are_removed() {
    let f = fixture();
    write(&f.src, "a.txt", "a");
    f.engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400 + 60);
    let stale = f.src.join(".syncengine/.syncengine-tmp-00000000deadbeef");
    let in_trash = f
        .src
        .join(".syncengine/trash/x/.syncengine-tmp-00000000cafef00d");
    for path in [&stale, &in_trash] {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "x").unwrap();
        let file = fs::File::options().write(true).open(path).unwrap();
        file.set_times(fs::FileTimes::new().set_modified(old).set_accessed(old))
            .unwrap();
    }
    write(&f.src, "b.txt", "b");
    f.engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    assert!(
        !stale.exists(),
        "a day-old temp in .syncengine/ was left behind"
    );
    assert!(
        !in_trash.exists(),
        "a day-old temp in the trash was left behind"
    );
}

/// A conflict on a 250-byte name gets a conflict name cut to the 255-byte limit that keeps
/// the extension and the conflict suffix; both versions survive.
#[tokio::test]
async fn long_names_get_valid_conflict_names() {
    let f = fixture();
    let name = format!("{}.txt", "n".repeat(246));
    assert_eq!(name.len(), 250);
    write(&f.src, &name, "base");
    f.engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    write(&f.src, &name, "source edit");
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&f.dst, &name, "destination edit, newer");
    let stats = f
        .engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    assert_eq!((stats.conflicts, stats.errors), (1, 0), "{stats:?}");
    // The kept loser reaches the other side (in this run or the next).
    f.engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    for side in [&f.src, &f.dst] {
        let mut names: Vec<String> = fs::read_dir(side)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .filter(|n| !n.starts_with(".syncengine"))
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        let conflict = names.iter().find(|n| **n != name).unwrap();
        assert!(conflict.len() <= 255, "{}", conflict.len());
        assert!(
            conflict.contains(".conflict-") && conflict.ends_with("-source.txt"),
            "{conflict}"
        );
        assert_eq!(
            fs::read_to_string(side.join(conflict)).unwrap(),
            "source edit"
        );
        assert_eq!(
            fs::read_to_string(side.join(&name)).unwrap(),
            "destination edit, newer"
        );
    }
}

/// The UTC stamp `secs` seconds from now, as the engine names trash folders.
fn stamp_in(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A file sitting where the trash needs a folder (`trash/<stamp>/p` is a file while `p/x` is
/// trashed: a file `p` trashed a moment earlier in the same second) must not stop the delete,
/// nor be mistaken for "already gone": the old version goes to the next stamp folder.
#[tokio::test]
async fn a_file_in_the_way_in_the_trash_moves_deletes_and_overwrites_to_the_next_trash_folder() {
    let f = fixture();
    for i in 0..4 {
        write(&f.src, &format!("k{i}.txt"), "keep");
    }
    write(&f.src, "p/x", "old p/x");
    write(&f.src, "p/y", "old p/y");
    f.engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    // The run below starts within the next 20 s: every stamp it can use already holds a
    // file `p` in the destination's trash.
    for s in 0..20 {
        write(
            &f.dst,
            &format!(".syncengine/trash/{}/p", stamp_in(s)),
            "an earlier trashed file p",
        );
    }
    fs::remove_file(f.src.join("p/x")).unwrap();
    write(&f.src, "p/y", "new p/y, longer");
    let stats = f
        .engine
        .sync_pair(&f.pair(SyncMode::TwoWay, SyncOptions::default()))
        .await
        .unwrap();
    assert_eq!(
        (stats.deleted_destination, stats.uploaded, stats.errors),
        (1, 1, 0),
        "{stats:?}"
    );
    assert!(!f.dst.join("p/x").exists(), "the delete did not happen");
    assert_eq!(
        fs::read_to_string(f.dst.join("p/y")).unwrap(),
        "new p/y, longer"
    );
    let trashed = trash_files(&f.dst);
    assert!(
        trashed.contains(&"old p/y".to_string()),
        "the overwritten version is not in the trash: {trashed:?}"
    );
    assert!(
        trash_files(&f.dst).contains(&"old p/x".to_string()),
        "the deleted version is not in the trash: {:?}",
        trash_files(&f.dst)
    );
}
