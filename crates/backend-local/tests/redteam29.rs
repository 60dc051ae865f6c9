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
            eprintln!("skipped: cannot mount a tmpfs here ({e})");
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
            eprintln!("skipped: no mkfs.ext4 here");
            return;
        }
        if let Err(e) = mount(&["-o", "loop,errors=continue"], &image, &mnt) {
            eprintln!("skipped: cannot mount a loop image here ({e})");
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
            eprintln!("skipped: the disk's writeback did not fail here");
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
