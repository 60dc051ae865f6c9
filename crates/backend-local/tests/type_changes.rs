//! Type changes on real disks (issue 8, behaviour 10): a file replaced by a folder, or the
//! reverse, converges local ↔ local — the old entry goes to the trash before the new one is
//! written, which a disk requires (a file cannot hold children; a file cannot replace a
//! folder).

// Test helpers outside #[test] fns unwrap freely: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use syncengine_backend_local::LocalClient;
use syncengine_core::{SyncEngine, SyncMode, SyncOptions, SyncPair, SyncStats};

fn write(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, body).unwrap();
}

/// Every file below `root` outside `.syncengine/`, with its content.
fn tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.retain(|(p, _)| !p.starts_with(".syncengine/"));
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        if e.file_type().unwrap().is_dir() {
            walk(root, &path, out);
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((rel, fs::read_to_string(&path).unwrap()));
        }
    }
}

/// The contents of the files in `root`'s trash named `name` (any stamp folder).
fn trashed(root: &Path, name: &str) -> Vec<String> {
    let trash = root.join(".syncengine/trash");
    let mut out = Vec::new();
    if let Ok(stamps) = fs::read_dir(&trash) {
        for stamp in stamps.flatten() {
            let p = stamp.path().join(name);
            if p.is_file() {
                out.push(fs::read_to_string(p).unwrap());
            }
        }
    }
    out
}

struct Fixture {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    dst: PathBuf,
    engine: SyncEngine,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let dst = tmp.path().join("dst");
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&dst).unwrap();
        Fixture {
            engine: SyncEngine::new(tmp.path().join("state")),
            src,
            dst,
            _tmp: tmp,
        }
    }

    async fn two_way(&self) -> SyncStats {
        let pair = SyncPair::new(
            Arc::new(LocalClient::new(&self.src)),
            Arc::new(LocalClient::new(&self.dst)),
            SyncMode::TwoWay,
        )
        .with_options(SyncOptions::default().with_force(true));
        let stats = self.engine.sync_pair(&pair).await.unwrap();
        assert_eq!(stats.errors, 0, "{:?}", stats.error_messages);
        stats
    }

    async fn assert_converged(&self) {
        assert_eq!(tree(&self.src), tree(&self.dst));
        let again = self.two_way().await;
        assert!(again.is_noop(), "not idle: {again:?}");
    }
}

#[tokio::test]
async fn file_replaced_by_a_folder_on_disk() {
    let f = Fixture::new();
    write(&f.src, "notes", "the notes");
    write(&f.src, "notes.txt", "sorts between notes and notes/");
    f.two_way().await;
    assert_eq!(tree(&f.src), tree(&f.dst));

    fs::remove_file(f.src.join("notes")).unwrap();
    write(&f.src, "notes/today.txt", "new notes");
    let stats = f.two_way().await;
    assert_eq!(
        (stats.deleted_destination, stats.uploaded),
        (1, 1),
        "{stats:?}"
    );
    assert!(f.dst.join("notes").is_dir());
    assert_eq!(
        fs::read_to_string(f.dst.join("notes/today.txt")).unwrap(),
        "new notes"
    );
    assert_eq!(trashed(&f.dst, "notes"), vec!["the notes".to_owned()]);
    f.assert_converged().await;
}

#[tokio::test]
async fn folder_replaced_by_a_file_on_disk() {
    let f = Fixture::new();
    write(&f.dst, "build/a.o", "object a");
    write(&f.dst, "build/sub/b.o", "object b");
    f.two_way().await;

    fs::remove_dir_all(f.dst.join("build")).unwrap();
    write(&f.dst, "build", "a file now");
    let stats = f.two_way().await;
    assert_eq!(
        (stats.deleted_source, stats.downloaded),
        (2, 1),
        "{stats:?}"
    );
    assert!(f.src.join("build").is_file());
    assert_eq!(trashed(&f.src, "build/a.o"), vec!["object a".to_owned()]);
    assert_eq!(
        trashed(&f.src, "build/sub/b.o"),
        vec!["object b".to_owned()]
    );
    f.assert_converged().await;
}

#[tokio::test]
async fn file_replaced_by_a_folder_while_the_other_side_edited_it_on_disk() {
    let f = Fixture::new();
    write(&f.src, "notes", "the notes");
    f.two_way().await;

    fs::remove_file(f.src.join("notes")).unwrap();
    write(&f.src, "notes/today.txt", "new notes");
    write(&f.dst, "notes", "the notes, edited on the destination");
    let stats = f.two_way().await;
    assert_eq!(stats.conflicts, 1, "{stats:?}");
    for root in [&f.src, &f.dst] {
        assert_eq!(
            fs::read_to_string(root.join("notes/today.txt")).unwrap(),
            "new notes"
        );
        let copies: Vec<(String, String)> = tree(root)
            .into_iter()
            .filter(|(p, _)| p.starts_with("notes.conflict-") && p.ends_with("-destination"))
            .collect();
        assert_eq!(copies.len(), 1, "{:?}", tree(root));
        assert_eq!(copies[0].1, "the notes, edited on the destination");
    }
    f.assert_converged().await;
}
