//! Nothing is written, moved or deleted through a symlinked folder inside the root (issue 9,
//! data safety): such a folder may lead outside the root, where a write would land in a
//! place no listing sees (and the next run would delete the source's copy) and a delete would
//! remove a file that was never synced. A symlinked root itself is fine.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use syncengine_backend_local::LocalClient;
use syncengine_core::testing::{FaultClient, FaultConfig, Op};
use syncengine_core::{
    Error, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair,
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
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
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

/// A root whose folder `a` (and `deep/b`) is a symlink to `outside`, which holds `x`.
struct Linked {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    client: LocalClient,
}

fn linked() -> Linked {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    write(&outside.join("x"), "not synced: outside the root");
    write(&root.join("real/y"), "y");
    write(&root.join("deep/kept"), "kept");
    std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("deep/b")).unwrap();
    let client = LocalClient::new(&root);
    Linked {
        _tmp: tmp,
        root,
        outside,
        client,
    }
}

/// The error names the symlink and says it is not followed.
fn assert_refused(result: syncengine_core::Result<impl std::fmt::Debug>, link: &str) {
    let err = result.expect_err("an operation through a symlinked folder must fail");
    assert!(!err.is_transient(), "not worth a retry: {err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("{link:?}")) && msg.contains("symlink"),
        "the error names the symlink: {msg}"
    );
}

#[tokio::test]
async fn writes_through_a_symlinked_folder_are_refused() {
    let l = linked();
    let before = files(&l.outside);
    assert_refused(l.client.put(&p("a/new.txt"), Bytes::from("n")).await, "a");
    assert_refused(
        l.client
            .put(&p("a/sub/dir/new.txt"), Bytes::from("n"))
            .await,
        "a",
    );
    assert_refused(l.client.put(&p("a/x"), Bytes::from("over")).await, "a");
    assert_refused(
        l.client.put(&p("deep/b/new.txt"), Bytes::from("n")).await,
        "deep/b",
    );
    // A large body (streamed in batches) too.
    let big = Bytes::from(vec![7u8; 3 << 20]);
    assert_refused(l.client.put(&p("a/big.bin"), big).await, "a");
    assert_eq!(
        files(&l.outside),
        before,
        "nothing was written outside the root"
    );
    assert_eq!(
        fs::read_to_string(l.outside.join("x")).unwrap(),
        "not synced: outside the root"
    );
    // Beside the symlink, writes work as before.
    l.client.put(&p("real/z"), Bytes::from("z")).await.unwrap();
    l.client
        .put(&p("deep/new/z"), Bytes::from("z"))
        .await
        .unwrap();
}

#[tokio::test]
async fn deletes_through_a_symlinked_folder_are_refused() {
    let l = linked();
    assert_refused(l.client.delete(&p("a/x")).await, "a");
    assert_refused(l.client.delete(&p("deep/b/x")).await, "deep/b");
    assert!(l.outside.join("x").is_file(), "the file outside survives");
    // A delete beside it still prunes the folders it empties, and never the symlink.
    l.client.delete(&p("real/y")).await.unwrap();
    assert!(!l.root.join("real").exists());
    assert!(fs::symlink_metadata(l.root.join("a")).is_ok());
}

#[tokio::test]
async fn renames_copies_and_trash_links_through_a_symlinked_folder_are_refused() {
    let l = linked();
    // Out of it (which would move a file from outside into the root)…
    assert_refused(l.client.rename(&p("a/x"), &p("real/x")).await, "a");
    // …and into it.
    assert_refused(l.client.rename(&p("real/y"), &p("a/y")).await, "a");
    assert_refused(
        l.client
            .copy_opts(&p("real/y"), &p("a/y"), Default::default())
            .await,
        "a",
    );
    assert_refused(l.client.preserve(&p("real/y"), &p("a/y")).await, "a");
    assert_refused(
        l.client
            .preserve(&p("a/x"), &p(".syncengine/trash/t/a/x"))
            .await,
        "a",
    );
    // A move into the trash out of it is refused before the trash's folders are made: no
    // empty run folder is left behind by a refused move.
    assert_refused(
        l.client
            .rename(&p("a/x"), &p(".syncengine/trash/t/a/x"))
            .await,
        "a",
    );
    assert!(!l.root.join(".syncengine").exists());
    assert_eq!(files(&l.outside), vec!["x".to_owned()]);
    assert_eq!(fs::read_to_string(l.root.join("real/y")).unwrap(), "y");

    // A symlinked trash folder is a symlinked folder too.
    fs::create_dir_all(l.root.join(".syncengine")).unwrap();
    std::os::unix::fs::symlink(&l.outside, l.root.join(".syncengine/trash")).unwrap();
    assert_refused(
        l.client
            .rename(&p("real/y"), &p(".syncengine/trash/t/real/y"))
            .await,
        ".syncengine/trash",
    );
    assert_eq!(fs::read_to_string(l.root.join("real/y")).unwrap(), "y");
    assert_refused(
        l.client
            .preserve(&p("real/y"), &p(".syncengine/trash/t/real/y"))
            .await,
        ".syncengine/trash",
    );
    assert_eq!(files(&l.outside), vec!["x".to_owned()]);
}

/// The root itself may be a symlink: it is resolved, as before.
#[tokio::test]
async fn a_symlinked_root_is_still_written() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    fs::create_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
    let client = LocalClient::new(tmp.path().join("link"));
    client.put(&p("d/f"), Bytes::from("f")).await.unwrap();
    client.rename(&p("d/f"), &p("e/f")).await.unwrap();
    assert_eq!(fs::read_to_string(real.join("e/f")).unwrap(), "f");
    client.delete(&p("e/f")).await.unwrap();
    assert!(files(&real).is_empty());
}

/// The source, destination and outside folders of an engine case, under `tmp`.
fn roots(tmp: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (tmp.join("src"), tmp.join("dst"), tmp.join("outside"))
}

/// One side has `a -> outside`, the other `a/b.txt`: repeated two-way runs write nothing
/// outside, and the other side's file survives every run.
#[tokio::test]
async fn engine_never_writes_into_a_symlinked_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, outside) = roots(tmp.path());
    write(&src.join("a/b.txt"), "precious");
    write(&src.join("top.txt"), "top");
    write(&outside.join("other.txt"), "other");
    fs::create_dir_all(&dst).unwrap();
    std::os::unix::fs::symlink(&outside, dst.join("a")).unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(LocalClient::new(&dst)),
        SyncMode::TwoWay,
    );
    for run in 0..3 {
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(files(&outside), vec!["other.txt".to_owned()], "run {run}");
        assert_eq!(
            fs::read_to_string(src.join("a/b.txt")).unwrap(),
            "precious",
            "run {run}: {stats:?}"
        );
        assert_eq!(fs::read_to_string(dst.join("top.txt")).unwrap(), "top");
    }
}

/// Swaps the real folder `root/a` for a symlink to `outside` (the user moved it to another
/// disk and linked it back) — here between the engine's listing and its action.
fn swap_in_symlink(root: &Path, outside: &Path) {
    fs::rename(root.join("a"), root.with_extension("moved-a")).unwrap();
    std::os::unix::fs::symlink(outside, root.join("a")).unwrap();
}

/// The folder becomes a symlink after the listing, right before the engine writes into it:
/// the write fails with an error naming the symlink instead of landing outside the root; the
/// next runs see the symlink (unknown) and the source's copy survives them all.
#[tokio::test]
async fn engine_write_racing_a_swapped_in_symlink_fails_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, outside) = roots(tmp.path());
    write(&src.join("a/b.txt"), "precious");
    write(&src.join("top.txt"), "top");
    write(&dst.join("a/keep.txt"), "keep");
    fs::create_dir_all(&outside).unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let faulty = Arc::new(FaultClient::new(
        Arc::new(LocalClient::new(&dst)),
        FaultConfig::none(),
    ));
    {
        let (dst, outside) = (dst.clone(), outside.clone());
        faulty.before(
            Op::Write,
            p("a/b.txt"),
            Arc::new(move |_| swap_in_symlink(&dst, &outside)),
        );
    }
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
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
            fs::read_to_string(src.join("a/b.txt")).unwrap(),
            "precious",
            "run {run}: {stats:?}"
        );
    }
}

/// The delete direction: `a/x` was synced and deleted on the source; before the engine
/// deletes the destination's copy, the user moves the destination's folder `a` out of the
/// root and links it back (`a -> outside`). The file now outside the root is not deleted
/// (nor moved into the trash), and later runs leave it alone.
#[tokio::test]
async fn engine_delete_racing_a_swapped_in_symlink_deletes_nothing_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, outside) = roots(tmp.path());
    write(&src.join("a/x"), "synced");
    for i in 0..6 {
        write(&src.join(format!("f{i}")), "f");
    }
    let engine = SyncEngine::new(tmp.path().join("state"));
    let faulty = Arc::new(FaultClient::new(
        Arc::new(LocalClient::new(&dst)),
        FaultConfig::none(),
    ));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        faulty.clone() as Arc<dyn StorageClient>,
        SyncMode::TwoWay,
    );
    engine.sync_pair(&pair).await.unwrap();
    assert!(dst.join("a/x").is_file());

    fs::remove_file(src.join("a/x")).unwrap();
    // The engine checks the file and moves it to the trash before it deletes it: move the
    // folder out at whichever call on the path comes first.
    for op in [Op::Stat, Op::Read, Op::Delete, Op::Rename, Op::Copy] {
        let (dst, outside) = (dst.clone(), outside.clone());
        faulty.before(
            op,
            p("a/x"),
            Arc::new(move |_| {
                if !outside.exists() {
                    fs::rename(dst.join("a"), &outside).unwrap();
                    std::os::unix::fs::symlink(&outside, dst.join("a")).unwrap();
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

/// `Error::Unlisted` is not what a refused write reports: it is a plain per-file error.
#[tokio::test]
async fn the_refusal_is_a_plain_error() {
    let l = linked();
    let err = l
        .client
        .put(&p("a/new.txt"), Bytes::from("n"))
        .await
        .unwrap_err();
    assert!(!matches!(err, Error::Unlisted { .. }), "{err:?}");
}
