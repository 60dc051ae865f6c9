//! Red team 21: sorted listing runs spilled to the state directory (c844eef). A state disk
//! that fills up before an unordered destination's listing is sorted (40 000 entries: more
//! than one run of 32 768) stops the run with an error naming the state folder; nothing is
//! planned from the part sorted, nothing deleted (100 deletions were due on the destination).
//!
//! Mounting needs CAP_SYS_ADMIN: where the test may not mount it says so and checks nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::memory::MemoryClient;
use syncengine_core::{RelPath, StorageClientExt, SyncEngine, SyncMode, SyncPair};

const FILES: usize = 40_000;

fn fill(dir: &Path, spare: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![7u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(spare)).unwrap();
    let _ = f.sync_all();
}

#[tokio::test]
async fn a_full_state_dir_stops_an_unordered_listing_run_cleanly() {
    let mnt = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96m", "tmpfs"])
        .arg(mnt.path())
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "skipped: cannot mount a small state disk here ({}); run as root",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.path().to_path_buf());
    let state = mnt.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let src = Arc::new(MemoryClient::new());
    let dst = Arc::new(MemoryClient::unordered());
    for i in 0..FILES {
        src.put(
            &RelPath::new(format!("d{}/f{i}", i % 97)).unwrap(),
            Bytes::from_static(b"x"),
        )
        .await
        .unwrap();
    }
    let pair = SyncPair::new(src.clone(), dst.clone(), SyncMode::TwoWay);
    SyncEngine::new(&state).sync_pair(&pair).await.unwrap();
    let data = |v: Vec<syncengine_core::Entry>| {
        v.into_iter()
            .filter(|e| e.path.as_str().starts_with('d'))
            .count()
    };
    assert_eq!(data(dst.list_all(None).await.unwrap()), FILES);
    // 100 deletions on the source: a two-way run would make them on the destination.
    for i in 0..100 {
        src.delete(&RelPath::new(format!("d{}/f{i}", i % 97)).unwrap())
            .await
            .unwrap();
    }
    // Room for the base to open, not for one spilled run of the listing (~2.5 MB).
    let spare: u64 = 700 * 1024;
    fill(mnt.path(), spare);
    let res = SyncEngine::new(&state).sync_pair(&pair).await;
    let left = data(dst.list_all(None).await.unwrap());
    let src_left = data(src.list_all(None).await.unwrap());
    let message = res.as_ref().map(|_| ()).unwrap_err().to_string();
    assert!(
        message.contains("listing the destination failed")
            && message.contains(state.to_str().unwrap())
            && message.contains("spill file"),
        "{message}"
    );
    assert_eq!(left, FILES, "the destination lost files");
    assert_eq!(src_left, FILES - 100);
    // The control: with room again the same run makes the 100 deletions.
    std::fs::remove_file(mnt.path().join("filler")).unwrap();
    SyncEngine::new(&state).sync_pair(&pair).await.unwrap();
    assert_eq!(data(dst.list_all(None).await.unwrap()), FILES - 100);
}
