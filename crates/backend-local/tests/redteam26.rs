//! Red team 26: kernel copies (`copy_from_same_store`) kick writeback only per 8 MiB copied
//! (commit a7391d1). Sizes on and around the 8 MiB chunk, sparse files whose data straddles a
//! chunk edge, and copies across two filesystems (a disk folder and `/dev/shm`) must all land
//! byte for byte, and a sparse source must stay sparse.

// Helpers outside `#[test]` fns are test code too; clippy's in-tests allowance misses them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use syncengine_backend_local::{LocalClient, TEMP_PREFIX};
use syncengine_core::{StorageClient, WriteMode, WriteOptions};

mod support;
use support::{Mounted, listed, mount, p};

const MIB: u64 = 1 << 20;
const CHUNK: u64 = 8 * MIB;

/// Names of temporary files anywhere below `dir`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        if entry.file_type().unwrap().is_dir() {
            out.extend(temp_files(&entry.path()));
        } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            out.push(entry.path());
        }
    }
    out
}

/// A byte at `offset` that differs from its neighbours and from the same offset of the next
/// chunk (a chunk copied to the wrong place shows).
fn byte_at(offset: u64) -> u8 {
    (offset % 251) as u8 ^ ((offset / CHUNK) as u8).wrapping_mul(37)
}

/// Writes `len` pattern bytes at `at` of `file`.
fn write_at(file: &fs::File, at: u64, len: u64) {
    let mut done = 0;
    while done < len {
        let n = (len - done).min(MIB);
        let buf: Vec<u8> = (at + done..at + done + n).map(byte_at).collect();
        file.write_all_at(&buf, at + done).unwrap();
        done += n;
    }
}

/// The files the test copies: dense ones of every size at and around the chunk's multiples,
/// and sparse ones whose data segments straddle chunk edges. Returns their names.
fn make_sources(a: &Path) -> Vec<String> {
    fs::create_dir_all(a).unwrap();
    let mut names = Vec::new();
    for len in [
        0,
        1,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        2 * CHUNK - 1,
        2 * CHUNK,
        2 * CHUNK + 5,
        3 * CHUNK + 4097,
    ] {
        let name = format!("dense-{len}");
        let file = fs::File::create(a.join(&name)).unwrap();
        write_at(&file, 0, len);
        names.push(name);
    }
    // (data segments as (offset, length), file length)
    let sparse: [(&[(u64, u64)], u64); 4] = [
        // Data across the first chunk edge, a hole across the second, data at the end.
        (&[(CHUNK - 3, 7), (3 * CHUNK - 1, 2)], 3 * CHUNK + 1),
        // A trailing hole that ends exactly on a chunk edge.
        (&[(0, MIB), (CHUNK + MIB, CHUNK)], 4 * CHUNK),
        // Data exactly one chunk long, starting on an edge, then more after a hole.
        (&[(CHUNK, CHUNK), (3 * CHUNK, 5)], 3 * CHUNK + 5),
        // A leading hole of more than a chunk, data straddling two edges.
        (&[(CHUNK + CHUNK / 2, 2 * CHUNK)], 4 * CHUNK + 3),
    ];
    for (i, (segments, len)) in sparse.iter().enumerate() {
        let name = format!("sparse-{i}");
        let file = fs::File::create(a.join(&name)).unwrap();
        file.set_len(*len).unwrap();
        for &(at, n) in *segments {
            write_at(&file, at, n);
        }
        names.push(name);
    }
    names
}

/// Copies every source of `a` to `b/<round>/` twice (the second round goes the way the first
/// found to work between these filesystems) and checks each copy byte for byte, sparse
/// sources staying sparse where the source is.
async fn copies_hold(a: &Path, b: &Path) {
    let names = make_sources(a);
    let (src, dst) = (LocalClient::new(a), LocalClient::new(b));
    for round in ["one", "two"] {
        for name in &names {
            let entry = listed(&src, name).await;
            let mut opts = WriteOptions::default()
                .with_mode(WriteMode::Create)
                .with_size_hint(entry.size);
            opts.mtime = entry.mtime;
            let to = p(&format!("{round}/{name}"));
            let written = dst
                .copy_from_same_store(&src, &entry.path, &entry, &to, &opts)
                .await
                .unwrap()
                .expect("a local copy is made by the kernel");
            assert_eq!(written.size, entry.size, "{name}: size recorded");
            let (want, got) = (
                fs::read(a.join(name)).unwrap(),
                fs::read(b.join(to.as_str())).unwrap(),
            );
            assert_eq!(got.len(), want.len(), "{round}/{name}: length");
            if let Some(at) = got.iter().zip(&want).position(|(g, w)| g != w) {
                panic!("{round}/{name}: first wrong byte at {at}");
            }
            let (src_md, dst_md) = (
                fs::metadata(a.join(name)).unwrap(),
                fs::metadata(b.join(to.as_str())).unwrap(),
            );
            assert_eq!(
                dst_md.modified().unwrap(),
                src_md.modified().unwrap(),
                "{name}: mtime"
            );
            if name.starts_with("sparse") && src_md.blocks() * 512 + CHUNK <= src_md.len() {
                assert!(
                    dst_md.blocks() * 512 + CHUNK <= dst_md.len(),
                    "{round}/{name}: the holes were filled: {} blocks for {} of the source",
                    dst_md.blocks(),
                    src_md.blocks()
                );
            }
        }
    }
    assert!(temp_files(b).is_empty(), "{:?}", temp_files(b));
}

/// Within one filesystem (the temp folder): `copy_file_range` (or a reflink).
#[tokio::test]
async fn chunk_edge_sizes_and_sparse_files_copy_within_one_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    copies_hold(&dir.path().join("a"), &dir.path().join("b")).await;
}

/// Between the temp folder and `/dev/shm`, both ways: `copy_file_range` across filesystems
/// where the kernel allows it, else reads and writes.
#[tokio::test]
async fn chunk_edge_sizes_and_sparse_files_copy_across_filesystems() {
    let shm = Path::new("/dev/shm");
    let disk = std::env::temp_dir();
    assert_ne!(
        fs::metadata(shm).unwrap().dev(),
        fs::metadata(&disk).unwrap().dev(),
        "/dev/shm and {} are one filesystem here: set TMPDIR to a disk folder",
        disk.display()
    );
    let (on_shm, on_disk) = (
        tempfile::tempdir_in(shm).unwrap(),
        tempfile::tempdir_in(&disk).unwrap(),
    );
    copies_hold(&on_disk.path().join("a"), &on_shm.path().join("b")).await;
    copies_hold(&on_shm.path().join("a"), &on_disk.path().join("b")).await;
}

/// Whether `filefrag -v` shows blocks of `path` not yet allocated (ext4's delayed
/// allocation: written to the page cache only, not to disk). `None` where `filefrag` is
/// missing.
fn delayed_allocation(path: &Path) -> Option<bool> {
    let out = std::process::Command::new("filefrag")
        .arg("-v")
        .arg(path)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).contains("delalloc"))
}

/// The copy `preserve` makes where it cannot hard-link (the file is on another filesystem
/// mounted below the root, and the trash is on the root's) is on disk when `preserve`
/// returns. The engine overwrites the original right after it (an atomic rename on the
/// mount's filesystem, whose journal commits on its own): a copy still in the page cache of
/// the root's filesystem could be lost to a power cut while the overwrite is not, and the old
/// version, kept nowhere else (in mirror mode, the destination's own edit), would be gone.
/// Observed through ext4's delayed allocation; where the temp folder is not ext4 (a freshly
/// written file shows no `delalloc`), the test can tell nothing and says so.
#[tokio::test]
async fn a_preserved_copy_across_a_mount_is_on_disk_when_preserve_returns() {
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("control");
    fs::write(&control, vec![1u8; 100_000]).unwrap();
    if delayed_allocation(&control) != Some(true) {
        eprintln!("skipped: no ext4 delayed allocation to observe in the temp folder");
        return;
    }
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("t")).unwrap();
    if !mount(&["-t", "tmpfs", "tmpfs"], &root.join("t")) {
        return;
    }
    let _mounted = Mounted(root.join("t"));
    let client = LocalClient::new(&root);
    let body: Vec<u8> = (0..MIB + 7).map(byte_at).collect();
    fs::write(root.join("t/f.bin"), &body).unwrap();
    let trash = p(".syncengine/trash/20261206T000000Z/t/f.bin");
    client.preserve(&p("t/f.bin"), &trash).await.unwrap();
    let kept = root.join(trash.as_str());
    assert!(
        fs::read(&kept).unwrap() == body,
        "the copy holds other bytes"
    );
    assert_eq!(
        delayed_allocation(&kept),
        Some(false),
        "the preserved copy is still only in the page cache when preserve returns"
    );
}
