//! Red team 34: moves by folder descriptors (a614076).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use syncengine_backend_local::LocalClient;
use syncengine_core::{RelPath, StorageClient, StorageClientExt};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// Folders below `root` whose joined path (`root/folders`) is `len` bytes long.
fn deep_folders(root: &Path, len: usize) -> String {
    let mut folders = String::new();
    let base = root.as_os_str().len() + 1;
    while base + folders.len() < len {
        let left = len - base - folders.len() - usize::from(!folders.is_empty());
        let n = left.min(200);
        if !folders.is_empty() {
            folders.push('/');
        }
        folders.push_str(&"d".repeat(n.max(1)));
    }
    folders
}

/// A file whose path is near the kernel's limit (4096 bytes) moves into the trash, whose
/// folders for it are 35 bytes longer: a614076's one lookup of the target's folder before
/// the walk (`make_folders_of`) failed with `ENAMETOOLONG` and the delete failed at every
/// run, where the walk, a name at a time, had worked.
#[tokio::test]
async fn a_file_near_path_max_moves_into_the_trash() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(&root).unwrap();
    // The file's own path fits (under 4096 bytes); its folder in the trash does not.
    let folders = deep_folders(&root, 4070);
    let abs: PathBuf = root.join(&folders);
    fs::create_dir_all(&abs).unwrap();
    fs::write(abs.join("f"), b"only copy").unwrap();
    let client = LocalClient::new(&root);
    let from = p(&format!("{folders}/f"));
    let to = p(&format!(".syncengine/trash/20260101T000000Z/{folders}/f"));
    let moved = client.rename(&from, &to).await;
    assert!(moved.is_ok(), "{moved:?}");
    assert!(!abs.join("f").exists());
    assert_eq!(read_deep(&root, to.as_str()), b"only copy");
}

/// The content of `rel` below `root`, opened a name at a time (its path may be too long for
/// one lookup).
fn read_deep(root: &Path, rel: &str) -> Vec<u8> {
    use rustix::fs::{Mode, OFlags, openat};
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut at = rustix::fs::open(root, flags, Mode::empty()).unwrap();
    let (folders, name) = rel.rsplit_once('/').unwrap();
    for folder in folders.split('/') {
        at = openat(&at, folder, flags, Mode::empty()).unwrap();
    }
    let file = openat(&at, name, OFlags::RDONLY | OFlags::NOFOLLOW, Mode::empty()).unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut fs::File::from(file), &mut out).unwrap();
    out
}
