//! A user saves a file on the SFTP server while the engine is overwriting it: the upload is
//! not renamed over the user's save, and the next run keeps both versions.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use syncengine_backend_local::LocalClient;
use syncengine_core::testing::{FaultClient, FaultConfig};
use syncengine_core::{RelPath, SyncEngine, SyncMode, SyncPair};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_during_an_overwrite_is_kept() {
    let Some((sftp, guard)) = support::sshd().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let dst = Arc::new(FaultClient::new(sftp, FaultConfig::none()));
    let pair = || {
        SyncPair::new(
            Arc::new(LocalClient::new(&src)),
            dst.clone(),
            SyncMode::TwoWay,
        )
    };

    fs::write(src.join("doc.txt"), "version 1").unwrap();
    engine.sync_pair(&pair()).await.unwrap();
    let remote = guard.0.join("doc.txt");
    assert_eq!(fs::read_to_string(&remote).unwrap(), "version 1");

    // While the source's edit is uploaded, the user saves the server's copy (by rename, as
    // editors do; another size, as SFTP mtimes have one-second steps).
    fs::write(src.join("doc.txt"), "version 2, edited on the source").unwrap();
    let target = remote.clone();
    dst.at_body_end(
        RelPath::new("doc.txt").unwrap(),
        Arc::new(move |_| {
            let swap = target.with_file_name(".doc.txt.swp");
            fs::write(&swap, "version 2b, saved on the server meanwhile").unwrap();
            fs::rename(&swap, &target).unwrap();
        }),
    );
    let stats = engine.sync_pair(&pair()).await.unwrap();
    assert_eq!(stats.errors, 1, "the overwrite was not refused: {stats:?}");
    assert_eq!(
        fs::read_to_string(&remote).unwrap(),
        "version 2b, saved on the server meanwhile",
        "the user's save was overwritten"
    );
    assert!(
        support::temp_files_below(&guard.0).is_empty(),
        "the refused upload left its temp file"
    );

    let stats = engine.sync_pair(&pair()).await.unwrap();
    assert_eq!((stats.errors, stats.conflicts), (0, 1), "{stats:?}");
    for root in [&src, &guard.0] {
        let all = contents(root);
        for version in [
            "version 2, edited on the source",
            "version 2b, saved on the server meanwhile",
        ] {
            assert!(
                all.iter().any(|c| c == version),
                "{version:?} is missing under {}: {all:?}",
                root.display()
            );
        }
    }
}
