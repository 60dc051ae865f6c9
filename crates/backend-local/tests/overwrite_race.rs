//! A user saves a file on local disk while the engine is overwriting it: the user's save must
//! survive, whatever way the application saves (a new file renamed over the old one, or a
//! rewrite in place), and the next run must keep both versions.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use syncengine_backend_local::LocalClient;
use syncengine_core::testing::{FaultClient, FaultConfig};
use syncengine_core::{RelPath, SyncEngine, SyncMode, SyncOptions, SyncPair};

/// Every file's content below `root`, the engine's own folder included (so the trash counts).
fn contents(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    out.sort();
    out
}

/// How the user's application saves.
#[derive(Clone, Copy, Debug)]
enum Save {
    /// Writes a new file and renames it over the old one (editors, office suites).
    ByRename,
    /// Truncates and rewrites the same file (shell redirection, simple tools).
    InPlace,
}

fn save(path: &Path, body: &str, how: Save) {
    match how {
        Save::ByRename => {
            let tmp = path.with_file_name(".doc.txt.swp");
            fs::write(&tmp, body).unwrap();
            fs::rename(&tmp, path).unwrap();
        }
        Save::InPlace => fs::write(path, body).unwrap(),
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    dst: PathBuf,
    engine: SyncEngine,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let dst = tmp.path().join("dst");
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&dst).unwrap();
        let engine = SyncEngine::new(tmp.path().join("state"));
        Fixture {
            src,
            dst,
            engine,
            _tmp: tmp,
        }
    }

    /// A two-way pair whose destination is `dst` behind a [`FaultClient`] (no faults; only
    /// the hook the test sets).
    fn pair(&self, dst: Arc<FaultClient>) -> SyncPair {
        SyncPair::new(Arc::new(LocalClient::new(&self.src)), dst, SyncMode::TwoWay)
            .with_options(SyncOptions::default())
    }

    fn hooked_destination(&self) -> Arc<FaultClient> {
        Arc::new(FaultClient::new(
            Arc::new(LocalClient::new(&self.dst)),
            FaultConfig::none(),
        ))
    }
}

async fn user_save_during_overwrite_survives(how: Save) {
    let f = Fixture::new();
    fs::write(f.src.join("doc.txt"), "version 1").unwrap();
    let dst = f.hooked_destination();
    f.engine.sync_pair(&f.pair(dst.clone())).await.unwrap();
    assert_eq!(
        fs::read_to_string(f.dst.join("doc.txt")).unwrap(),
        "version 1"
    );

    // The source edits the file; while the engine streams it to the destination, the user
    // saves the destination's copy.
    fs::write(f.src.join("doc.txt"), "version 2, edited on the source").unwrap();
    let target = f.dst.join("doc.txt");
    dst.at_body_end(
        RelPath::new("doc.txt").unwrap(),
        Arc::new(move |_| {
            save(
                &target,
                "version 2b, saved on the destination meanwhile",
                how,
            )
        }),
    );
    let stats = f.engine.sync_pair(&f.pair(dst.clone())).await.unwrap();
    assert_eq!(
        stats.errors, 1,
        "{how:?}: the overwrite was not refused: {stats:?}"
    );
    assert_eq!(
        fs::read_to_string(f.dst.join("doc.txt")).unwrap(),
        "version 2b, saved on the destination meanwhile",
        "{how:?}: the user's save was overwritten"
    );
    assert_eq!(
        fs::read_to_string(f.src.join("doc.txt")).unwrap(),
        "version 2, edited on the source"
    );

    // The next run sees both sides edited: a conflict that keeps both versions on both sides.
    let stats = f.engine.sync_pair(&f.pair(dst.clone())).await.unwrap();
    assert_eq!(
        (stats.errors, stats.conflicts),
        (0, 1),
        "{how:?}: {stats:?}"
    );
    for root in [&f.src, &f.dst] {
        let all = contents(root);
        for version in [
            "version 2, edited on the source",
            "version 2b, saved on the destination meanwhile",
        ] {
            assert!(
                all.iter().any(|c| c == version),
                "{how:?}: {version:?} is missing under {}: {all:?}",
                root.display()
            );
        }
    }
    let stats = f.engine.sync_pair(&f.pair(dst)).await.unwrap();
    assert_eq!(
        stats.uploaded + stats.downloaded + stats.conflicts + stats.errors,
        0,
        "{how:?}: not idle after the conflict: {stats:?}"
    );
}

#[tokio::test]
async fn a_save_by_rename_during_an_overwrite_is_kept() {
    user_save_during_overwrite_survives(Save::ByRename).await;
}

#[tokio::test]
async fn a_save_in_place_during_an_overwrite_is_kept() {
    user_save_during_overwrite_survives(Save::InPlace).await;
}
