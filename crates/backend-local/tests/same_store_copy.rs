//! `LocalClient::copy_from_same_store`: a copy from one local root to another by the kernel
//! (reflink, `copy_file_range`, or reads and writes), with the guarantees of a streamed
//! write: only the listed version lands, the write mode is honoured, mtime and permission bits
//! are kept, and nothing partial is ever visible.

// Helpers outside `#[test]` fns are test code too; clippy's in-tests allowance misses them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use syncengine_backend_local::{LocalClient, TEMP_PREFIX};
use syncengine_core::memory::MemoryClient;
use syncengine_core::{
    Entry, Error, StorageClient, StorageClientExt, Version, WriteMode, WriteOptions,
};

mod support;
use support::{listed, p};

/// The options the engine's transfer gives a copy of `listed`.
fn opts_for(listed: &Entry, mode: WriteMode) -> WriteOptions {
    let mut opts = WriteOptions::default()
        .with_mode(mode)
        .with_size_hint(listed.size);
    opts.mtime = listed.mtime;
    opts.permissions = listed.permissions;
    opts
}

/// Names of temporary files anywhere below `dir`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            out.extend(temp_files(&entry.path()));
        } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            out.push(entry.path());
        }
    }
    out
}

/// Writes `len` bytes of a pattern that differs at every offset modulo 251 (so a misplaced
/// block shows).
fn write_pattern(path: &Path, len: usize) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let block: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut file = fs::File::create(path).unwrap();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len());
        file.write_all(&block[..n]).unwrap();
        left -= n;
    }
}

fn set_mtime(path: &Path, when: SystemTime) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_times(fs::FileTimes::new().set_modified(when))
        .unwrap();
}

/// Two roots (`a`, `b`) side by side in one temp folder.
struct Pair {
    _dir: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
    src: LocalClient,
    dst: LocalClient,
}

fn pair_in(base: &Path) -> Pair {
    let dir = tempfile::tempdir_in(base).unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fs::create_dir_all(&a).unwrap();
    Pair {
        src: LocalClient::new(&a),
        dst: LocalClient::new(&b),
        _dir: dir,
        a,
        b,
    }
}

fn pair() -> Pair {
    pair_in(&std::env::temp_dir())
}

/// A copy of a listed file lands whole, with the source's mtime and permission bits, in
/// folders created as asked, and its entry describes it.
#[tokio::test]
async fn a_copy_keeps_content_mtime_and_bits() {
    let t = pair();
    let src_file = t.a.join("docs/deep/report.txt");
    fs::create_dir_all(src_file.parent().unwrap()).unwrap();
    fs::write(&src_file, "quarterly figures").unwrap();
    fs::set_permissions(&src_file, fs::Permissions::from_mode(0o640)).unwrap();
    let when = SystemTime::UNIX_EPOCH + Duration::new(1_500_000_000, 123_456_789);
    set_mtime(&src_file, when);
    let entry = listed(&t.src, "docs/deep/report.txt").await;
    let opts = opts_for(&entry, WriteMode::Create).with_folder_permissions(vec![Some(0o750)]);

    let written = t
        .dst
        .copy_from_same_store(&t.src, &entry.path, &entry, &entry.path, &opts)
        .await
        .unwrap()
        .expect("a local source is copied by the kernel");

    let copy = t.b.join("docs/deep/report.txt");
    assert_eq!(fs::read(&copy).unwrap(), b"quarterly figures");
    let md = fs::metadata(&copy).unwrap();
    assert_eq!(md.modified().unwrap(), when, "the mtime was not kept");
    assert_eq!(md.permissions().mode() & 0o777, 0o640);
    assert_eq!(
        fs::metadata(t.b.join("docs")).unwrap().permissions().mode() & 0o777,
        0o750,
        "the new folder did not get the asked bits"
    );
    assert_eq!(written.size, 17);
    assert_eq!(written.mtime, Some(when));
    assert_eq!(written.file_id, Some(md.ino()));
    assert!(temp_files(&t.b).is_empty());
    // The source is untouched.
    assert_eq!(fs::read(&src_file).unwrap(), b"quarterly figures");
}

/// A file of 0 bytes is copied (a new empty file with the source's mtime).
#[tokio::test]
async fn an_empty_file_is_copied() {
    let t = pair();
    fs::write(t.a.join("empty"), "").unwrap();
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    set_mtime(&t.a.join("empty"), when);
    let entry = listed(&t.src, "empty").await;
    let written = t
        .dst
        .copy_from_same_store(
            &t.src,
            &entry.path,
            &entry,
            &entry.path,
            &opts_for(&entry, WriteMode::Create),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(written.size, 0);
    let md = fs::metadata(t.b.join("empty")).unwrap();
    assert_eq!(md.len(), 0);
    assert_eq!(md.modified().unwrap(), when);
}

/// A 100 MiB file (several `copy_file_range` chunks) arrives byte for byte.
#[tokio::test]
async fn a_100_mib_file_arrives_whole() {
    let t = pair();
    let len = 100 << 20;
    write_pattern(&t.a.join("big.bin"), len);
    // A marker near the end: a copy that stopped a chunk short would miss it.
    fs::File::options()
        .write(true)
        .open(t.a.join("big.bin"))
        .unwrap()
        .write_all_at(b"THE END", len as u64 - 7)
        .unwrap();
    let entry = listed(&t.src, "big.bin").await;
    let written = t
        .dst
        .copy_from_same_store(
            &t.src,
            &entry.path,
            &entry,
            &p("copy/big.bin"),
            &opts_for(&entry, WriteMode::Create),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(written.size, len as u64);
    let (want, got) = (
        fs::read(t.a.join("big.bin")).unwrap(),
        fs::read(t.b.join("copy/big.bin")).unwrap(),
    );
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the copy differs from the source");
    assert_eq!(&got[len - 7..], b"THE END");
}

/// Writes a sparse file at `path`: 64 MiB long, data at 1 MiB and 40 MiB only. Returns its
/// content.
fn write_sparse(path: &Path) -> Vec<u8> {
    let len = 64u64 << 20;
    let mut file = fs::File::create(path).unwrap();
    file.set_len(len).unwrap();
    file.write_all_at(&[7u8; 5000], 1 << 20).unwrap();
    file.seek(SeekFrom::Start(40 << 20)).unwrap();
    file.write_all(b"island in the middle").unwrap();
    drop(file);
    fs::read(path).unwrap()
}

/// A sparse file is copied with its holes read as zeros — and, where the filesystem keeps
/// holes (the source's own allocation says so), stays sparse.
#[tokio::test]
async fn a_sparse_file_is_copied_and_stays_sparse() {
    let t = pair();
    let want = write_sparse(&t.a.join("disk.img"));
    let entry = listed(&t.src, "disk.img").await;
    t.dst
        .copy_from_same_store(
            &t.src,
            &entry.path,
            &entry,
            &entry.path,
            &opts_for(&entry, WriteMode::Create),
        )
        .await
        .unwrap()
        .unwrap();
    let got = fs::read(t.b.join("disk.img")).unwrap();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the copy differs from the sparse source");
    let src_blocks = fs::metadata(t.a.join("disk.img")).unwrap().blocks();
    let dst_blocks = fs::metadata(t.b.join("disk.img")).unwrap().blocks();
    if src_blocks * 512 < 8 << 20 {
        assert!(
            dst_blocks * 512 < 8 << 20,
            "the copy of a sparse file was filled in: {dst_blocks} blocks for {src_blocks}"
        );
    }
}

/// A source changed since it was listed (new content of another size; or the same size
/// with a new mtime) is refused with `PreconditionFailed`: nothing lands, no temp stays.
#[tokio::test]
async fn a_source_changed_since_the_listing_is_refused() {
    let t = pair();
    fs::write(t.a.join("grown"), "v1").unwrap();
    fs::write(t.a.join("same-size"), "v1").unwrap();
    let grown = listed(&t.src, "grown").await;
    let same = listed(&t.src, "same-size").await;
    fs::write(t.a.join("grown"), "version 2").unwrap();
    fs::write(t.a.join("same-size"), "v2").unwrap();
    set_mtime(
        &t.a.join("same-size"),
        SystemTime::now() + Duration::from_secs(5),
    );
    for entry in [grown, same] {
        let err = t
            .dst
            .copy_from_same_store(
                &t.src,
                &entry.path,
                &entry,
                &entry.path,
                &opts_for(&entry, WriteMode::Create),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::PreconditionFailed { .. }),
            "{}: {err:?}",
            entry.path
        );
        assert!(!t.b.join(entry.path.as_str()).exists());
    }
    assert!(temp_files(&t.b).is_empty(), "{:?}", temp_files(&t.b));
    // A source that is gone is not found.
    let gone = listed(&t.src, "grown").await;
    fs::remove_file(t.a.join("grown")).unwrap();
    let err = t
        .dst
        .copy_from_same_store(
            &t.src,
            &gone.path,
            &gone,
            &gone.path,
            &opts_for(&gone, WriteMode::Create),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

/// A listed file swapped for a FIFO before it is copied or read is refused at once: the copy
/// and the read open it without waiting for a writer. Before, the open blocked until
/// something wrote to the FIFO, and the run could never end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_swapped_for_a_fifo_is_refused_without_waiting() {
    let t = pair();
    fs::write(t.a.join("pipe"), "v1").unwrap();
    let entry = listed(&t.src, "pipe").await;
    fs::remove_file(t.a.join("pipe")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(t.a.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    let opts = opts_for(&entry, WriteMode::Create);
    let copy = t
        .dst
        .copy_from_same_store(&t.src, &entry.path, &entry, &entry.path, &opts);
    let fifo = t.a.join("pipe");
    // On failure, a writer releases the blocked open, so the test fails instead of hanging
    // in the runtime's shutdown.
    let release = || {
        let fifo = fifo.clone();
        std::thread::spawn(move || drop(fs::OpenOptions::new().write(true).open(fifo)));
    };
    let Ok(copied) = tokio::time::timeout(Duration::from_secs(10), copy).await else {
        release();
        panic!("the copy waited for a writer to the FIFO");
    };
    let err = copied.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
    assert!(!t.b.join("pipe").exists());
    assert!(temp_files(&t.b).is_empty(), "{:?}", temp_files(&t.b));
    let Ok(read) = tokio::time::timeout(Duration::from_secs(10), t.src.read(&entry.path)).await
    else {
        release();
        panic!("the read waited for a writer to the FIFO");
    };
    assert!(read.is_err_and(|e| e.is_not_found()));
}

/// A source under a write lease (as Samba's oplocks or an NFS server's delegations take) is
/// copied once the lease's holder lets it go: the open that does not wait for a FIFO's writer
/// is refused while the lease is broken (`EWOULDBLOCK`), and the copy then waits for the
/// holder as it always did, instead of failing the file for the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_under_a_lease_is_copied_once_its_holder_lets_go() {
    use std::io::BufRead;
    let t = pair();
    fs::write(t.a.join("leased"), "held by a file server").unwrap();
    let entry = listed(&t.src, "leased").await;
    // The holder, another process as a file server is: takes a write lease, says so, and
    // lets go 300 ms after it is asked to (the kernel's SIGIO).
    let holder = r#"
import fcntl, signal, sys, time
asked = []
signal.signal(signal.SIGIO, lambda *_: asked.append(1))
f = open(sys.argv[1])
fcntl.fcntl(f, fcntl.F_SETLEASE, fcntl.F_WRLCK)
print("held", flush=True)
while not asked:
    time.sleep(0.01)
time.sleep(0.3)
fcntl.fcntl(f, fcntl.F_SETLEASE, fcntl.F_UNLCK)
"#;
    let mut holder = std::process::Command::new("python3")
        .args(["-c", holder])
        .arg(t.a.join("leased"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the lease holder");
    let mut said = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert_eq!(said.trim(), "held", "the holder could not take its lease");
    let opts = opts_for(&entry, WriteMode::Create);
    let copied = tokio::time::timeout(
        Duration::from_secs(60),
        t.dst
            .copy_from_same_store(&t.src, &entry.path, &entry, &entry.path, &opts),
    )
    .await;
    let _ = holder.kill();
    let _ = holder.wait();
    let copied = copied.expect("the copy waited longer than the kernel's lease break time");
    assert!(copied.is_ok(), "{copied:?}");
    assert_eq!(
        fs::read(t.b.join("leased")).unwrap(),
        b"held by a file server"
    );
}

/// A source written to while its bytes are copied is refused: the copy is not committed, so
/// the listed version is never claimed for content that is not it. The writes start once the
/// copy's temporary file is open (the first look at the source has passed); a copy that
/// finished before the first write is correct too, so the test tries until one is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_changed_while_it_is_copied_is_refused() {
    let t = pair();
    let len = 256usize << 20;
    write_pattern(&t.a.join("live.bin"), len);
    let mut refused = 0;
    for attempt in 0..5 {
        let entry = listed(&t.src, "live.bin").await;
        let target = p(&format!("try{attempt}/live.bin"));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (stop, src, dir) = (
                stop.clone(),
                t.a.join("live.bin"),
                t.b.join(format!("try{attempt}")),
            );
            std::thread::spawn(move || {
                while !writes_below(std::process::id(), &dir) {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    std::thread::yield_now();
                }
                let file = fs::File::options().write(true).open(&src).unwrap();
                // Same bytes, same size: only the mtime tells the file was written.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    file.write_all_at(&[0u8], 0).unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let result = t
            .dst
            .copy_from_same_store(
                &t.src,
                &entry.path,
                &entry,
                &target,
                &opts_for(&entry, WriteMode::Create),
            )
            .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        match result {
            Err(Error::PreconditionFailed { .. }) => {
                refused += 1;
                assert!(
                    !t.b.join(target.as_str()).exists(),
                    "a refused copy was committed"
                );
            }
            Ok(Some(written)) => {
                // Finished before the first write: it holds the listed version.
                assert_eq!(written.size, entry.size);
                assert_eq!(
                    fs::metadata(t.b.join(target.as_str())).unwrap().len(),
                    len as u64
                );
            }
            other => panic!("unexpected: {other:?}"),
        }
        assert!(temp_files(&t.b).is_empty(), "{:?}", temp_files(&t.b));
        if refused > 0 {
            break;
        }
    }
    assert!(refused > 0, "no copy met a write in 5 tries");
}

/// `Create` never replaces an existing file; `IfUnchanged` replaces only the version it
/// names; `Overwrite` replaces and keeps the old file's bits; `Update` is not done here.
#[tokio::test]
async fn the_write_mode_is_honoured() {
    let t = pair();
    fs::write(t.a.join("f"), "new content").unwrap();
    fs::create_dir_all(&t.b).unwrap();
    fs::write(t.b.join("f"), "theirs").unwrap();
    fs::set_permissions(t.b.join("f"), fs::Permissions::from_mode(0o600)).unwrap();
    let entry = listed(&t.src, "f").await;
    let copy = |mode: WriteMode| {
        let (src, dst, entry) = (t.src.clone(), t.dst.clone(), entry.clone());
        async move {
            dst.copy_from_same_store(
                &src,
                &entry.path,
                &entry,
                &entry.path,
                &opts_for(&entry, mode),
            )
            .await
        }
    };

    let err = copy(WriteMode::Create).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert_eq!(fs::read(t.b.join("f")).unwrap(), b"theirs");

    let theirs = listed(&t.dst, "f").await;
    let stale = Version {
        size: theirs.size,
        mtime: Some(SystemTime::UNIX_EPOCH),
        etag: None,
        file_id: theirs.file_id,
    };
    let err = copy(WriteMode::IfUnchanged(stale)).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
    assert_eq!(fs::read(t.b.join("f")).unwrap(), b"theirs");

    assert!(
        copy(WriteMode::Update("etag".into()))
            .await
            .unwrap()
            .is_none(),
        "a local file has no etag to check"
    );
    assert_eq!(fs::read(t.b.join("f")).unwrap(), b"theirs");

    copy(WriteMode::IfUnchanged(Version::of(&theirs)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fs::read(t.b.join("f")).unwrap(), b"new content");
    assert_eq!(
        fs::metadata(t.b.join("f")).unwrap().permissions().mode() & 0o777,
        0o600,
        "an overwrite keeps the old file's bits"
    );

    fs::write(t.a.join("f"), "third").unwrap();
    let entry = listed(&t.src, "f").await;
    t.dst
        .copy_from_same_store(
            &t.src,
            &entry.path,
            &entry,
            &entry.path,
            &opts_for(&entry, WriteMode::Overwrite),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fs::read(t.b.join("f")).unwrap(), b"third");
    assert!(temp_files(&t.b).is_empty(), "{:?}", temp_files(&t.b));
}

/// Only another local client is a source of a kernel copy: from any other backend the answer
/// is `None` and nothing is written.
#[tokio::test]
async fn other_sources_are_not_copied_here() {
    let t = pair();
    let memory = MemoryClient::new();
    let entry = memory
        .put(&p("m.txt"), Bytes::from("in memory"))
        .await
        .unwrap();
    let got = t
        .dst
        .copy_from_same_store(
            &memory,
            &entry.path,
            &entry,
            &entry.path,
            &opts_for(&entry, WriteMode::Create),
        )
        .await
        .unwrap();
    assert!(got.is_none());
    assert!(!t.b.join("m.txt").exists());
}

/// Between two filesystems (tmpfs at /dev/shm and the disk of the temp folder), where the
/// kernel may refuse reflinks and `copy_file_range`, each copy still arrives whole, in both
/// directions, for an empty, a small, a multi-chunk and a sparse file.
#[tokio::test]
async fn a_copy_across_two_filesystems_falls_back() {
    let shm = Path::new("/dev/shm");
    let disk = std::env::temp_dir();
    let (Ok(shm_md), Ok(disk_md)) = (fs::metadata(shm), fs::metadata(&disk)) else {
        panic!("this test needs /dev/shm and a temp folder");
    };
    assert_ne!(
        shm_md.dev(),
        disk_md.dev(),
        "/dev/shm and {} are one filesystem here: set TMPDIR to a disk folder",
        disk.display()
    );
    let on_shm = tempfile::tempdir_in(shm).unwrap();
    let on_disk = tempfile::tempdir_in(&disk).unwrap();
    for (from, to) in [
        (on_shm.path(), on_disk.path()),
        (on_disk.path(), on_shm.path()),
    ] {
        let (a, b) = (from.join("a"), to.join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::write(a.join("empty"), "").unwrap();
        fs::write(a.join("small"), "a few bytes").unwrap();
        write_pattern(&a.join("chunks.bin"), (17 << 20) + 3);
        let sparse = write_sparse(&a.join("sparse.img"));
        let (src, dst) = (LocalClient::new(&a), LocalClient::new(&b));
        // Twice: the second round goes the way the first one found to work.
        for round in ["one", "two"] {
            for name in ["empty", "small", "chunks.bin", "sparse.img"] {
                let entry = listed(&src, name).await;
                let to_path = p(&format!("{round}/{name}"));
                let written = dst
                    .copy_from_same_store(
                        &src,
                        &entry.path,
                        &entry,
                        &to_path,
                        &opts_for(&entry, WriteMode::Create),
                    )
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(written.size, entry.size, "{name}");
                let got = fs::read(b.join(to_path.as_str())).unwrap();
                assert!(got == fs::read(a.join(name)).unwrap(), "{name} differs");
                assert_eq!(written.mtime, entry.mtime, "{name}: mtime");
            }
        }
        assert_eq!(fs::read(b.join("one/sparse.img")).unwrap(), sparse);
        assert!(temp_files(&b).is_empty());
    }
}

/// The environment variable that makes [`a_killed_copy_leaves_nothing_partial`] the child
/// process that copies (its value: `create` or `overwrite`, then the folder of the two roots).
const KILL_CHILD: &str = "SYNCENGINE_SAME_STORE_KILL_CHILD";

/// True when process `pid` has a file open below `dir` (named, or unnamed: `#<inode>
/// (deleted)`): its copy has begun.
fn writes_below(pid: u32, dir: &Path) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .any(|to| to.starts_with(dir) && to != dir)
}

/// Kills a child process in the middle of a copy of a 512 MiB file to `b/big.bin` (over the
/// file there when `overwrite`). Returns the folder of the two roots.
fn kill_mid_copy(overwrite: bool) -> Pair {
    let t = pair();
    fs::create_dir_all(&t.b).unwrap();
    if overwrite {
        fs::write(t.b.join("big.bin"), "the old version").unwrap();
    }
    write_pattern(&t.a.join("big.bin"), 512 << 20);
    let how = if overwrite { "overwrite" } else { "create" };
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_copy_leaves_nothing_partial",
            "--nocapture",
        ])
        .env(
            KILL_CHILD,
            format!("{how}:{}", t.a.parent().unwrap().display()),
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !writes_below(child.id(), &t.b) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child ended before its copy began"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "no copy began");
        std::thread::sleep(Duration::from_micros(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    t
}

/// A process killed in the middle of a copy leaves no partial file at the target. A copy that
/// creates the file writes it unnamed (`O_TMPFILE`, where the filesystem has it): nothing at
/// all remains. One that replaces a file leaves the old version in place and its temporary
/// file, which no listing shows and `remove_stale_temps` removes once it is a day old. (The
/// test runs itself as the child it kills.)
#[tokio::test]
async fn a_killed_copy_leaves_nothing_partial() {
    if let Ok(arg) = std::env::var(KILL_CHILD) {
        let (how, dir) = arg.split_once(':').unwrap();
        let dir = Path::new(dir);
        let (src, dst) = (
            LocalClient::new(dir.join("a")),
            LocalClient::new(dir.join("b")),
        );
        let entry = listed(&src, "big.bin").await;
        let mode = if how == "overwrite" {
            WriteMode::Overwrite
        } else {
            WriteMode::Create
        };
        dst.copy_from_same_store(
            &src,
            &entry.path,
            &entry,
            &entry.path,
            &opts_for(&entry, mode),
        )
        .await
        .unwrap();
        return;
    }

    let t = kill_mid_copy(false);
    assert!(
        !t.b.join("big.bin").exists(),
        "the copy finished before it was killed, or a partial file is visible"
    );
    assert!(t.dst.list_all(None).await.unwrap().is_empty());
    // Where the filesystem has no unnamed files, a named temp stays: the cleanup below
    // covers it as for an overwrite.
    let left = temp_files(&t.b);
    assert!(left.len() <= 1, "{left:?}");

    let t2 = kill_mid_copy(true);
    assert_eq!(
        fs::read(t2.b.join("big.bin")).unwrap(),
        b"the old version",
        "the copy finished before it was killed, or the old version is gone"
    );
    let temps = temp_files(&t2.b);
    assert_eq!(temps.len(), 1, "{temps:?}");
    let listed_now: Vec<String> = t2
        .dst
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path.into_string())
        .collect();
    assert_eq!(listed_now, ["big.bin"]);

    // A day and an hour later, the next run's cleanup removes the temps.
    let old = SystemTime::now() - Duration::from_secs(25 * 3600);
    for (t, temps) in [(&t, &left), (&t2, &temps)] {
        for temp in temps {
            fs::File::options()
                .write(true)
                .open(temp)
                .unwrap()
                .set_times(fs::FileTimes::new().set_modified(old).set_accessed(old))
                .unwrap();
        }
        t.dst.list_all(None).await.unwrap();
        assert_eq!(
            t.dst.remove_stale_temps().await.unwrap(),
            temps.len() as u64
        );
        assert!(temp_files(&t.b).is_empty());
    }
    assert_eq!(fs::read(t2.b.join("big.bin")).unwrap(), b"the old version");
}

/// A root whose probed folding differs from what the backend declares (a FAT stick, a
/// casefolded folder) runs behind the core's folding wrapper, which changes names, never
/// content: a kernel copy to and from it still happens, and the source folders' bits are
/// still read through it. (Before, the wrapper answered neither: such roots streamed every
/// file and created folders with default bits.)
#[tokio::test]
async fn the_folding_wrapper_keeps_kernel_copies_and_folder_bits() {
    use std::sync::Arc;
    use syncengine_core::folding::{Folding, with_folding};
    let t = pair();
    fs::create_dir_all(t.a.join("private")).unwrap();
    fs::set_permissions(t.a.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(t.a.join("private/f"), "content").unwrap();
    let folds = Folding {
        case_insensitive: true,
        normalization_insensitive: true,
    };
    let src: Arc<dyn StorageClient> = with_folding(Arc::new(t.src.clone()), folds);
    let dst: Arc<dyn StorageClient> = with_folding(Arc::new(t.dst.clone()), folds);
    assert!(src.capabilities().case_insensitive, "not wrapped");
    assert_eq!(
        src.folder_permissions(&p("private")).await.unwrap(),
        Some(0o700)
    );
    let entry = listed(&t.src, "private/f").await;
    let written = dst
        .copy_from_same_store(
            src.as_ref(),
            &entry.path,
            &entry,
            &entry.path,
            &opts_for(&entry, WriteMode::Create),
        )
        .await
        .unwrap();
    assert_eq!(written.map(|w| w.size), Some(7));
    assert_eq!(fs::read(t.b.join("private/f")).unwrap(), b"content");
}

/// How many of this process's descriptors are open on files below `dir` (not on `dir`
/// itself, which the client holds for its barrier).
fn open_below(dir: &Path) -> usize {
    fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.flatten()
                .filter(|fd| {
                    fs::read_link(fd.path()).is_ok_and(|to| to.starts_with(dir) && to != dir)
                })
                .count()
        })
        .unwrap_or(0)
}

/// Copies of large files run 8 at a time whatever the run keeps in flight (32 between two
/// local roots): a disk seeks between them, and a copy between filesystems the kernel
/// cannot copy between holds a buffer each. Sixteen 16 MiB copies asked at once never have
/// more than 8 sources open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_copies_run_eight_at_a_time() {
    let pair = pair();
    for i in 0..16 {
        write_pattern(&pair.a.join(format!("big{i:02}")), 16 << 20);
    }
    let listed = pair.src.list_all(None).await.unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (done, a) = (done.clone(), pair.a.canonicalize().unwrap());
        std::thread::spawn(move || {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(open_below(&a));
                std::thread::sleep(Duration::from_micros(200));
            }
            most
        })
    };
    let copies = listed.iter().map(|entry| {
        let opts = opts_for(entry, WriteMode::Create);
        let (src, dst) = (&pair.src, &pair.dst);
        async move {
            dst.copy_from_same_store(src, &entry.path, entry, &entry.path, &opts)
                .await
        }
    });
    let copied = futures::future::join_all(copies).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = watcher.join().unwrap();
    for (entry, copied) in listed.iter().zip(copied) {
        assert!(copied.unwrap().is_some(), "{} was not copied", entry.path);
        let to = pair.b.join(entry.path.as_str());
        assert_eq!(fs::metadata(&to).unwrap().len(), 16 << 20);
    }
    assert!(most <= 8, "{most} large copies ran at once");
    assert!(
        most >= 2,
        "the copies ran one by one ({most} at most): the test saw nothing"
    );
}
