//! Root identity on local disk: a folder deleted and re-created (or another disk mounted at
//! the same path) is not the storage the base describes, and two spellings of one folder are
//! one pair.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::sync::Arc;

use syncengine_backend_local::LocalClient;
use syncengine_core::{
    AcceptNewRoot, StorageClient, SyncEngine, SyncError, SyncMode, SyncOptions, SyncPair,
};

fn write(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, body).unwrap();
}

fn count_files(root: &Path) -> usize {
    fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .count()
}

fn pair(src: &Path, dst: &Path, mode: SyncMode) -> SyncPair {
    SyncPair::new(
        Arc::new(LocalClient::new(src)),
        Arc::new(LocalClient::new(dst)),
        mode,
    )
}

#[tokio::test]
async fn a_recreated_root_stops_the_run_until_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    for i in 0..10 {
        write(&src, &format!("f{i}.txt"), &format!("file {i}"));
    }
    let engine = SyncEngine::new(tmp.path().join("state"));
    engine
        .sync_pair(&pair(&src, &dst, SyncMode::TwoWay))
        .await
        .unwrap();
    assert_eq!(count_files(&dst), 10);
    let recorded = fs::read_to_string(dst.join(".syncengine/root-id")).unwrap();

    // The destination is replaced: the folder removed and re-created with 6 of the files
    // (another disk mounted at the same path looks the same).
    fs::remove_dir_all(&dst).unwrap();
    for i in 0..6 {
        write(&dst, &format!("f{i}.txt"), &format!("file {i}"));
    }
    let err = engine
        .sync_pair(&pair(&src, &dst, SyncMode::TwoWay))
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::RootChanged { .. }), "{err}");
    assert!(err.is_safety_stop());
    let msg = err.to_string();
    assert!(msg.contains(recorded.trim()), "{msg}");
    assert!(msg.contains("--accept-new-root destination"), "{msg}");
    assert!(msg.contains(&dst.display().to_string()), "{msg}");
    assert_eq!(count_files(&src), 10, "the source lost files");
    assert!(!dst.join(".syncengine/root-id").exists());

    // Accepted: nothing deleted, the missing files come back, the new id is recorded.
    let accepted = pair(&src, &dst, SyncMode::TwoWay)
        .with_options(SyncOptions::default().with_accept_new_root(AcceptNewRoot::Destination));
    let stats = engine.sync_pair(&accepted).await.unwrap();
    assert_eq!(stats.deleted_source + stats.deleted_destination, 0);
    assert_eq!(stats.uploaded, 4);
    assert_eq!(count_files(&src), 10);
    assert_eq!(count_files(&dst), 10);
    let new_id = fs::read_to_string(dst.join(".syncengine/root-id")).unwrap();
    assert_ne!(new_id, recorded);

    // Then ordinary runs: a deletion propagates again.
    fs::remove_file(dst.join("f9.txt")).unwrap();
    let stats = engine
        .sync_pair(&pair(&src, &dst, SyncMode::TwoWay))
        .await
        .unwrap();
    assert_eq!(stats.deleted_source, 1);
    assert_eq!(count_files(&src), 9);
}

#[tokio::test]
async fn spellings_of_one_folder_are_one_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    fs::create_dir_all(real.join("sub")).unwrap();
    std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
    let a = LocalClient::new(&real).location().await.unwrap();
    let b = LocalClient::new(tmp.path().join("link"))
        .location()
        .await
        .unwrap();
    let c = LocalClient::new(real.join("sub/.."))
        .location()
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a.scheme, "file");
    // A root that does not exist yet resolves through its existing ancestor.
    let d = LocalClient::new(tmp.path().join("link/new/deeper"))
        .location()
        .await
        .unwrap();
    assert_eq!(d.to_string(), format!("{a}/new/deeper"));
    assert_ne!(
        LocalClient::new(tmp.path().join("other"))
            .location()
            .await
            .unwrap(),
        a
    );
}

#[tokio::test]
async fn the_volume_id_is_stable_and_never_a_bare_device_number() {
    let tmp = tempfile::tempdir().unwrap();
    let a = LocalClient::new(tmp.path().join("a"));
    let b = LocalClient::new(tmp.path().join("b/c"));
    let va = a.volume_id().await.unwrap();
    assert_eq!(va, a.volume_id().await.unwrap());
    assert_eq!(va, b.volume_id().await.unwrap(), "one filesystem, one id");
    if let Some(v) = &va {
        assert!(v.starts_with("uuid:") || v.starts_with("fsid:"), "{v}");
    }
    eprintln!("volume id of the temp dir here: {va:?}");
}
