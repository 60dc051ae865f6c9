//! Red team 34: moves by folder descriptors (a614076).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use syncengine_backend_local::LocalClient;
use syncengine_core::{RelPath, StorageClientExt};

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

/// A folder swapped in where the file was, between the move's look at the file and the move
/// itself (a checkout that turns a file into a folder; here an exchange, over and over), is
/// not taken into the trash: the move took whatever was at the path, and the engine, then
/// finding no file at either path, counted the file as gone while the folder and all it
/// held sat in the trash (at the 43rd of 3000 moves). What the trash gets is a file; the
/// folder stays in place with its content, and no empty trash folder is left for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_swapped_in_for_the_file_stays_in_place() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("a/spare")).unwrap();
    fs::write(root.join("a/spare/inner"), b"user data in a folder").unwrap();
    let client = LocalClient::new(&root);
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = std::thread::spawn({
        let (a, stop) = (root.join("a"), stop.clone());
        move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    a.join("x"),
                    rustix::fs::CWD,
                    a.join("spare"),
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .is_ok()
                {
                    n += 1;
                }
            }
            n
        }
    });
    let mut moved = 0;
    for i in 0..3000 {
        // A file at `a/x` or at `a/spare`, whichever the folder is not at.
        let free = if fs::symlink_metadata(root.join("a/x")).is_ok_and(|m| m.is_dir()) {
            "a/spare"
        } else {
            "a/x"
        };
        let _ = fs::write(root.join(free), b"file");
        let to = p(&format!(".syncengine/trash/t{i}/a/x"));
        moved += usize::from(client.rename(&p("a/x"), &to).await.is_ok());
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 0 && moved > 0, "{swaps} swaps, {moved} moves");
    // Each trash folder holds one file, `a/x`, and nothing else.
    let trash = root.join(".syncengine/trash");
    for run in fs::read_dir(&trash).unwrap() {
        let run = run.unwrap().path();
        let held: Vec<_> = fs::read_dir(run.join("a"))
            .unwrap_or_else(|e| panic!("{}: {e} ({swaps} swaps)", run.display()))
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(held, vec!["x"], "{} ({swaps} swaps)", run.display());
        let x = fs::symlink_metadata(run.join("a/x")).unwrap();
        assert!(
            x.is_file(),
            "{} holds a folder ({swaps} swaps)",
            run.display()
        );
    }
    assert_eq!(fs::read_dir(&trash).unwrap().count(), moved);
    // The folder is still in place, with its content.
    let inner = ["a/x/inner", "a/spare/inner"]
        .iter()
        .filter_map(|at| fs::read(root.join(at)).ok())
        .collect::<Vec<_>>();
    assert_eq!(inner, vec![b"user data in a folder".to_vec()]);
}

/// Where the filesystem has no `RENAME_NOREPLACE` (NFS, many FUSE filesystems: ntfs-3g,
/// sshfs), a move without overwrite is a hard link at the target and an unlink of the old
/// name. A save that replaces the file between the two (an editor's rename over it) is a
/// new file at the old name: the unlink removed it, and the trash held the old version
/// only, which the engine found as listed — the save was lost. The save must still be
/// somewhere once the move returns.
///
/// Run under `strace`, which makes `renameat2` fail with `EINVAL` (no `RENAME_NOREPLACE`
/// here) and holds each `unlinkat` for 300 ms, so the save lands between the link and the
/// unlink; the test runs itself so.
#[test]
fn a_save_between_the_link_and_the_unlink_of_a_move_is_kept() {
    const NAME: &str = "a_save_between_the_link_and_the_unlink_of_a_move_is_kept";
    if std::env::var_os("REDTEAM34_UNDER_STRACE").is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("strace")
            .args([
                "-f",
                "-qq",
                "-o",
                "/dev/null",
                "-e",
                "trace=renameat2,unlinkat",
            ])
            .args(["-e", "inject=renameat2:error=EINVAL"])
            .args(["-e", "inject=unlinkat:delay_enter=300000"])
            .arg(&exe)
            .args([NAME, "--exact", "--nocapture"])
            .env("REDTEAM34_UNDER_STRACE", "1")
            .output();
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                assert!(
                    !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
                    "strace is needed in CI: {e}"
                );
                eprintln!("skipped: strace could not run ({e})");
                return;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "the run under strace failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("a")).unwrap();
    fs::write(root.join("a/x"), b"old version").unwrap();
    let to = ".syncengine/trash/t/a/x";
    let mover = std::thread::spawn({
        let root = root.clone();
        move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async { LocalClient::new(&root).rename(&p("a/x"), &p(to)).await })
        }
    });
    // The link is made: the save lands (by rename over the old name, as editors save).
    while !root.join(to).exists() {
        std::thread::yield_now();
    }
    fs::write(root.join("a/new"), b"saved meanwhile").unwrap();
    rustix::fs::renameat(
        rustix::fs::CWD,
        root.join("a/new"),
        rustix::fs::CWD,
        root.join("a/x"),
    )
    .unwrap();
    let moved = mover.join().unwrap();
    let held: Vec<Vec<u8>> = [root.join("a/x"), root.join(to)]
        .iter()
        .filter_map(|at| fs::read(at).ok())
        .collect();
    assert!(
        held.contains(&b"saved meanwhile".to_vec()),
        "the save is gone (the move: {moved:?}); left: {:?}",
        held.iter()
            .map(|h| String::from_utf8_lossy(h))
            .collect::<Vec<_>>()
    );
    // The old version in the trash, the save in place, and no other name left.
    assert_eq!(fs::read(root.join(to)).unwrap(), b"old version");
    assert_eq!(fs::read(root.join("a/x")).unwrap(), b"saved meanwhile");
    let names: Vec<_> = fs::read_dir(root.join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["x"]);
}
