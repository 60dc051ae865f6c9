//! Red team 21: the held `syncfs` descriptor (4003cfb, `WritebackWatch`) and streamed writes
//! with one batch in flight (a34e842).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use syncengine_backend_local::LocalClient;
use syncengine_core::{StorageClient, StorageClientExt};

/// Runs `root_exists` and a listing of a client rooted at `root` on a thread of its own and
/// returns what they gave, or `None` if they had not returned after `patience` (a guard
/// against a hang, not a speed check: the calls do no I/O beyond a few syscalls).
fn probe(root: &Path, patience: Duration) -> Option<(String, String)> {
    let (tx, rx) = mpsc::channel();
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let client = LocalClient::new(&root);
            let exists = format!("{:?}", client.root_exists().await);
            let listed = format!("{:?}", client.list_all(None).await);
            (exists, listed)
        });
        let _ = tx.send(got);
    });
    rx.recv_timeout(patience).ok()
}

/// A root that is a named pipe (a typo, or a path swapped meanwhile) is an error, never a
/// hang: looking at the root opens the barrier's descriptor, and opening a FIFO for reading
/// waits for a writer (on the runtime's thread: nothing else of the run moves either).
#[test]
fn a_root_that_is_a_named_pipe_does_not_hang_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    for root in [fifo.clone(), fifo.join("below")] {
        let got = probe(&root, Duration::from_secs(60));
        if got.is_none() {
            // Release the stuck open (a writer arrives) so the thread ends, then fail.
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
        }
        assert!(
            got.is_some(),
            "root_exists/list of {} never returned: blocked opening the FIFO",
            root.display()
        );
    }
}

mod streamed_writes {
    //! a34e842: a streamed write (> 512 KiB) receives the next batch while the last one is
    //! written by a spawned blocking task. A body failing at any batch, after its last
    //! chunk, or a call dropped while a batch write is in flight, must commit nothing, leave
    //! the old version in place and no temporary file once the call returned, in every
    //! write mode (create: unnamed `O_TMPFILE` temp; overwrite and unless-changed: named).

    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use futures::StreamExt;
    use syncengine_backend_local::{LocalClient, TEMP_PREFIX};
    use syncengine_core::{
        Error, RelPath, StorageClient, StorageClientExt, Version, WriteMode, WriteOptions,
    };

    const CHUNK: usize = 256 * 1024;

    fn temps(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        for e in walk(dir) {
            if e.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(TEMP_PREFIX)
            {
                found.push(e.display().to_string());
            }
        }
        found
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    /// A body of `chunks` chunks of `CHUNK` bytes, then the error (if `fail_at` is
    /// `Some(n)`, in place of chunk n: `n == chunks` is after the last one).
    fn body(chunks: usize, fail_at: Option<usize>) -> syncengine_core::ByteStream {
        futures::stream::iter((0..=chunks).filter_map(move |i| {
            if Some(i) == fail_at {
                return Some(Err(Error::other("test", "f", "body failed")));
            }
            (i < chunks).then(|| Ok(Bytes::from(vec![b'n'; CHUNK])))
        }))
        .take_while({
            let mut failed = false;
            move |item| {
                let go = !failed;
                failed |= item.is_err();
                futures::future::ready(go)
            }
        })
        .boxed()
    }

    async fn modes(
        client: &LocalClient,
        path: &RelPath,
        old: bool,
    ) -> Vec<(&'static str, WriteMode)> {
        let mut m = vec![("overwrite", WriteMode::Overwrite)];
        if old {
            let e = client.stat(path).await.unwrap();
            m.push(("unless-changed", WriteMode::IfUnchanged(Version::of(&e))));
        } else {
            m.push(("create", WriteMode::Create));
        }
        m
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_failing_at_any_batch_commits_nothing_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let client = LocalClient::new(dir.path());
        let chunks = 9; // 2.25 MiB: the first batch, then four more of 512 KiB
        for old in [false, true] {
            for fail_at in 0..=chunks {
                let path = RelPath::new(format!("sub/f-{old}-{fail_at}")).unwrap();
                if old {
                    client.put(&path, Bytes::from_static(b"old")).await.unwrap();
                }
                for (name, mode) in modes(&client, &path, old).await {
                    let opts = WriteOptions::default()
                        .with_mode(mode)
                        .with_mtime(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
                        .with_permissions(0o600);
                    let got = client
                        .write_opts(&path, body(chunks, Some(fail_at)), opts)
                        .await;
                    assert!(
                        got.is_err(),
                        "{name}, failing at chunk {fail_at}: committed"
                    );
                    assert_eq!(
                        temps(dir.path()),
                        Vec::<String>::new(),
                        "{name} at {fail_at}"
                    );
                    let now = std::fs::read(dir.path().join(path.as_str()));
                    if old {
                        assert_eq!(now.unwrap(), b"old", "{name} at {fail_at}");
                    } else {
                        assert!(now.is_err(), "{name} at {fail_at}: a file appeared");
                    }
                }
            }
        }
        // And whole bodies land whole, with their mtime and bits, in every mode.
        for old in [false, true] {
            let path = RelPath::new(format!("sub/whole-{old}")).unwrap();
            if old {
                client.put(&path, Bytes::from_static(b"old")).await.unwrap();
            }
            let (name, mode) = modes(&client, &path, old).await.pop().unwrap();
            let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
            let opts = WriteOptions::default()
                .with_mode(mode)
                .with_mtime(mtime)
                .with_permissions(0o600);
            let e = client
                .write_opts(&path, body(chunks, None), opts)
                .await
                .unwrap();
            let md = std::fs::metadata(dir.path().join(path.as_str())).unwrap();
            assert_eq!(md.len(), (chunks * CHUNK) as u64, "{name}");
            assert_eq!(e.size, md.len());
            assert_eq!(md.modified().unwrap(), mtime, "{name}");
            use std::os::unix::fs::PermissionsExt;
            if !old {
                assert_eq!(md.permissions().mode() & 0o777, 0o600 & !0o022 & 0o777);
            }
            assert_eq!(temps(dir.path()), Vec::<String>::new());
        }
    }

    /// A call dropped while a batch write is in flight (the body waits after `given`
    /// chunks) commits nothing and, once dropped, leaves no named temporary file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_dropped_with_a_batch_in_flight_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let client = LocalClient::new(dir.path());
        for given in [2usize, 3, 4, 5, 7] {
            for old in [false, true] {
                let path = RelPath::new(format!("f-{given}-{old}")).unwrap();
                if old {
                    client.put(&path, Bytes::from_static(b"old")).await.unwrap();
                }
                for (name, mode) in modes(&client, &path, old).await {
                    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                    let mut tx = Some(tx);
                    let stream = futures::stream::iter(0..given)
                        .map(|_| Ok(Bytes::from(vec![b'n'; CHUNK])))
                        .chain(futures::stream::once(async move {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(());
                            }
                            futures::future::pending::<()>().await;
                            Ok(Bytes::new())
                        }))
                        .boxed();
                    let c = client.clone();
                    let p = path.clone();
                    let task = tokio::spawn(async move {
                        c.write_opts(&p, stream, WriteOptions::default().with_mode(mode))
                            .await
                    });
                    rx.await.unwrap();
                    task.abort();
                    assert!(task.await.unwrap_err().is_cancelled());
                    assert_eq!(temps(dir.path()), Vec::<String>::new(), "{name} {given}");
                    let now = std::fs::read(dir.path().join(path.as_str()));
                    if old {
                        assert_eq!(now.unwrap(), b"old", "{name} {given}");
                    } else {
                        assert!(now.is_err(), "{name} {given}");
                    }
                }
            }
        }
    }
}

mod barrier_across_mounts {
    //! `sync_written` is the barrier the base trusts: every file it reports written is on
    //! disk. A listing descends into folders where another filesystem is mounted below the
    //! root, and writes go there; `syncfs` on the root's filesystem does not flush that one.
    //!
    //! Mounting needs CAP_SYS_ADMIN: where the test may not mount it says so and checks
    //! nothing (as tests/mounts.rs).

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

    /// A file written into an ext4 filesystem mounted below the root (a loop image) is in the
    /// image once `sync_written` returned: the barrier flushed that filesystem too. The data
    /// is unique, so finding it in the image means the loop device received it; without a
    /// flush the kernel writes dirty pages back only after ~30 s (`dirty_expire_centisecs`),
    /// so the check does not pass by the kernel's own writeback within this test.
    #[tokio::test]
    async fn the_barrier_flushes_a_filesystem_mounted_below_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, image) = (tmp.path().join("root"), tmp.path().join("disk.img"));
        std::fs::create_dir_all(root.join("my usb")).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&image)
            .output();
        if !mkfs.is_ok_and(|o| o.status.success()) {
            eprintln!("skipped: no mkfs.ext4 here");
            return;
        }
        let out = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(root.join("my usb"))
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!(
                "skipped: cannot mount here ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        // A space in the mount point: mountinfo writes it as `\040`.
        let usb = root.join("my usb");
        let _mounted = Mounted(&usb);
        // The mount is fresh and synced: nothing of the data below is in the image yet.
        let marker: Vec<u8> = format!(
            "rt21-{}-{:?}-",
            std::process::id(),
            std::time::Instant::now()
        )
        .bytes()
        .cycle()
        .take(64 * 1024)
        .collect();
        let client = LocalClient::new(&root);
        assert!(client.root_exists().await.unwrap());
        client
            .put(
                &RelPath::new("my usb/photo.jpg").unwrap(),
                Bytes::from(marker.clone()),
            )
            .await
            .unwrap();
        client.sync_written().await.unwrap();
        let needle = &marker[..4096];
        let in_image = || {
            let on_disk = std::fs::read(&image).unwrap();
            on_disk.windows(needle.len()).any(|w| w == needle)
        };
        let after_barrier = in_image();
        // The harness: flushing the mounted filesystem itself puts the data in the image.
        rustix::fs::syncfs(std::fs::File::open(&usb).unwrap()).unwrap();
        assert!(
            in_image(),
            "the harness cannot see the file in the image even after syncfs"
        );
        assert!(
            after_barrier,
            "sync_written returned but the file written to the filesystem mounted at usb/ is \
             not on that disk: the base would record it as durable"
        );
    }
}
