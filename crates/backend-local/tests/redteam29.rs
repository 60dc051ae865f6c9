//! Red team 29: the folders a write makes (6a568e4), the /proc link (e7a376a) and the
//! backup dir's barriers (c6365a5), seen from a local client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backup_barrier_after_another_flush {
    //! The backup dir's barrier is all that stands between a backup copy and the delete or
    //! overwrite of its original (c6365a5). A backup dir client is never listed and its
    //! root is never asked for (only the two sides' are), so its held `syncfs` descriptor
    //! (`WritebackWatch`) was opened at its first barrier only. A descriptor opened after a
    //! writeback error was reported elsewhere on the filesystem (the destination side's own
    //! barrier, the other side's backup client, any other program's `syncfs`) samples that
    //! error as seen, and its `syncfs` reports nothing: the backup copy the error lost passes
    //! for durable and its original is deleted.
    //!
    //! Mounting needs CAP_SYS_ADMIN: where the test may not mount it says so and checks
    //! nothing (as tests/mounts.rs and redteam21.rs).

    use std::path::Path;
    use std::process::Command;

    use bytes::Bytes;
    use syncengine_backend_local::LocalClient;
    use syncengine_core::{RelPath, StorageClient, StorageClientExt};

    struct Mounted<'a>(&'a Path);

    impl Drop for Mounted<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }

    fn mount(args: &[&str], what: &Path, at: &Path) -> Result<(), String> {
        let out = Command::new("mount")
            .args(args)
            .arg(what)
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Skips the test with `why`, except in CI (`CI=true`), where the machine is set up to
    /// run it (root, loop devices, tmpfs, mkfs.ext4) and a skip would hide that it did not.
    fn skip(why: &str) {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{why}: this test needs root, loop devices, tmpfs and mkfs.ext4 in CI");
        }
        eprintln!("{why}; run as root on Linux with e2fsprogs to run it");
    }

    /// A real writeback error: ext4 (no journal) on a loop image in an 8 MiB tmpfs, so the
    /// disk's writeback of a 24 MiB backup copy fails while the page cache holds it all. The
    /// destination side's client (its root on the same disk, listed before the run's writes
    /// as every side is) takes the error at its barrier; the backup client's barrier must
    /// report it too.
    #[tokio::test]
    async fn a_backup_barrier_after_another_flush_took_the_error_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let (back, mnt) = (tmp.path().join("back"), tmp.path().join("mnt"));
        std::fs::create_dir_all(&back).unwrap();
        std::fs::create_dir_all(&mnt).unwrap();
        if let Err(e) = mount(&["-t", "tmpfs", "-o", "size=8M"], Path::new("tmpfs"), &back) {
            skip(&format!("skipped: cannot mount a tmpfs here ({e})"));
            return;
        }
        let _back = Mounted(&back);
        let image = back.join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(128 << 20)
            .unwrap();
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-O", "^has_journal"])
            .arg(&image)
            .output();
        if !mkfs.is_ok_and(|o| o.status.success()) {
            skip("skipped: no mkfs.ext4 here");
            return;
        }
        if let Err(e) = mount(&["-o", "loop,errors=continue"], &image, &mnt) {
            skip(&format!("skipped: cannot mount a loop image here ({e})"));
            return;
        }
        let _mnt = Mounted(&mnt);
        std::fs::create_dir_all(mnt.join("dst")).unwrap();
        std::fs::create_dir_all(mnt.join("backup/destination")).unwrap();
        rustix::fs::syncfs(std::fs::File::open(&mnt).unwrap()).unwrap();

        // The run: the destination side is listed first (its watch opens), then the backup
        // copy of a file about to be overwritten is written into the backup dir.
        let side = LocalClient::new(mnt.join("dst"));
        assert!(side.root_exists().await.unwrap());
        let backup = LocalClient::new(mnt.join("backup/destination"));
        let body: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
        backup
            .put(
                &RelPath::new("stamp/only-copy.bin").unwrap(),
                Bytes::from(body),
            )
            .await
            .unwrap();
        // The destination's barrier (its own writes, or the run's checkpoint) runs first and
        // takes the writeback error of the full disk.
        if side.sync_written().await.is_ok() {
            skip("skipped: the disk's writeback did not fail here");
            return;
        }
        let backup_barrier = backup.sync_written().await;
        assert!(
            backup_barrier.is_err(),
            "the backup dir's barrier passed although the disk lost the backup copy's \
             writeback (reported to the destination side's barrier just before): the engine \
             would now delete or overwrite the original, whose only other copy is gone"
        );
    }
}

mod folders_swapped_under_many_writes {
    //! 32 writes in flight into new nested folders (a first copy) while the top folders are
    //! moved out of the root and replaced by symlinks to folders outside that already hold
    //! the same subfolders (6a568e4's `make_folders_of`, e7a376a's link): no file and no
    //! folder of a write may appear outside the root, whatever fails. Holds for writes that
    //! create (an unnamed file linked by its folder's descriptor); failed for overwrites.

    use std::fs;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use bytes::Bytes;
    use futures::StreamExt;
    use syncengine_backend_local::LocalClient;
    use syncengine_core::{RelPath, StorageClient, StorageClientExt, WriteMode, WriteOptions};

    /// Every entry below `dir` (files and folders, relative), without following symlinks.
    fn entries(dir: &Path) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            let Ok(rd) = fs::read_dir(dir) else { return };
            for e in rd.flatten() {
                out.push(
                    e.path()
                        .strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
                if e.file_type().unwrap().is_dir() {
                    walk(base, &e.path(), out);
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    /// `rounds` of 32 writes; each symlink stays `hold` (else the swapper only yields).
    async fn race(mode: WriteMode, folder_bits: bool, rounds: usize, hold: Option<Duration>) {
        race_with(Some(mode), folder_bits, rounds, hold).await;
    }

    /// As [`race`]; `None`: each round renames 32 files from the root's top into the
    /// nested folders instead of writing them there.
    pub(super) async fn race_with(
        mode: Option<WriteMode>,
        folder_bits: bool,
        rounds: usize,
        hold: Option<Duration>,
    ) {
        const TOPS: usize = 4;
        let tmp = tempfile::tempdir().unwrap();
        let (root, outside, moved) = (
            tmp.path().join("root"),
            tmp.path().join("outside"),
            tmp.path().join("moved"),
        );
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&moved).unwrap();
        for i in 0..TOPS {
            fs::create_dir_all(outside.join(format!("m{i}/b/c"))).unwrap();
        }
        let before = entries(&outside);
        let client = Arc::new(LocalClient::new(&root));
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = std::thread::spawn({
            let (root, outside, moved, stop) =
                (root.clone(), outside.clone(), moved.clone(), stop.clone());
            move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..TOPS {
                        let top = root.join(format!("d{i}"));
                        n += 1;
                        if fs::rename(&top, moved.join(format!("d{i}-{n}"))).is_ok() {
                            let _ = std::os::unix::fs::symlink(outside.join(format!("m{i}")), &top);
                            match hold {
                                Some(hold) => std::thread::sleep(hold),
                                None => std::thread::yield_now(),
                            }
                            let _ = fs::remove_file(&top);
                        }
                    }
                }
                n
            }
        });
        let mut failed = 0usize;
        for round in 0..rounds {
            let writes = (0..32).map(|k| {
                let client = client.clone();
                let mode = mode.clone();
                let root = root.clone();
                tokio::spawn(async move {
                    let path = RelPath::new(format!("d{}/b/c/f{round}-{k}", k % TOPS)).unwrap();
                    let Some(mode) = mode else {
                        let from = RelPath::new(format!("top{round}-{k}")).unwrap();
                        fs::write(root.join(from.as_str()), b"moved").unwrap();
                        return client.rename(&from, &path).await.map(|_| ());
                    };
                    let mut opts = WriteOptions::default().with_mode(mode);
                    if folder_bits {
                        opts = opts.with_folder_permissions(vec![Some(0o750), Some(0o700)]);
                    }
                    let body: syncengine_core::ByteStream =
                        futures::stream::iter(vec![Ok(Bytes::from(format!("{round}-{k}")))])
                            .boxed();
                    client.write_opts(&path, body, opts).await.map(|_| ())
                })
            });
            for w in futures::future::join_all(writes).await {
                failed += usize::from(w.unwrap().is_err());
            }
        }
        stop.store(true, Ordering::Relaxed);
        let swaps = swapper.join().unwrap();
        assert!(swaps > 0);
        assert_eq!(
            entries(&outside),
            before,
            "written outside the root ({failed} writes failed, {swaps} swaps)"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn creates_racing_folder_swaps_write_nothing_outside() {
        race(WriteMode::Create, false, 40, None).await;
        race(WriteMode::Create, true, 40, None).await;
        race(
            WriteMode::Create,
            false,
            200,
            Some(Duration::from_micros(200)),
        )
        .await;
    }

    /// The same for overwrites (of files not there yet; an update's checked replace makes
    /// its temporary file the same way): the named temporary file was made in the folder by
    /// path after the folder's lookup, and renamed by path, so a swap between the two led
    /// both outside the root (two files and a temporary file in one run).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn overwrites_racing_folder_swaps_write_nothing_outside() {
        race(
            WriteMode::Overwrite,
            false,
            400,
            Some(Duration::from_micros(200)),
        )
        .await;
    }
}

mod renames_under_folder_swaps {
    //! A rename into new nested folders (the engine's move of a renamed file, a trash move)
    //! checks the folders with `lstat`, makes the missing ones with `create_dir_all` and
    //! renames, all by path: a folder swapped for a symlink between the check and the rename
    //! took the file, and the folders made, outside the root (dozens in one run).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn renames_racing_folder_swaps_move_nothing_outside() {
        super::folders_swapped_under_many_writes::race_with(
            None,
            false,
            400,
            Some(std::time::Duration::from_micros(200)),
        )
        .await;
    }
}
