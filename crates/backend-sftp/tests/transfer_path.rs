//! The transfer path tuned for speed (issue 11), against both loopback servers:
//! - reads and writes use the request size the server states (`limits@openssh.com`: OpenSSH
//!   allows 255 KiB) or 32 KiB (rclone's server states none), with more requests in flight:
//!   a big file and ranges of it still come back byte for byte;
//! - a write's mtime and permission bits go out as an `fsetstat` with its last writes and
//!   its close (one round trip); the first write of a client checks that the server keeps
//!   them, and every file, the first and the later ones, lands with the mtime and bits asked.

// Test code: panicking with a message is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use support::{Server, available, fixture_with};
use syncengine_core::{
    ReadOptions, RelPath, StorageClientExt, WriteMode, WriteOptions, bytes_stream,
};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// Pseudo-random bytes (no two 32 KiB requests alike), reproducible.
fn content(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn big_file_round_trip(server: Server) {
    if !available(server) {
        return;
    }
    let (client, _cleanup) = fixture_with(server, |b| b);
    // Several of OpenSSH's 255 KiB requests and many 32 KiB ones, with a ragged end; the
    // body arrives in odd pieces.
    let data = content(5 * 1024 * 1024 + 12_345);
    let pieces: Vec<syncengine_core::Result<Bytes>> = data
        .chunks(100_003)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let path = p("dir/big.bin");
    let written = client
        .write_opts(
            &path,
            futures::stream::iter(pieces).boxed(),
            WriteOptions::default()
                .with_mode(WriteMode::Create)
                .with_size_hint(data.len() as u64),
        )
        .await
        .unwrap();
    assert_eq!(written.size, data.len() as u64, "{server:?}");
    let back = client.read_to_bytes(&path).await.unwrap();
    assert!(back == data, "{server:?}: the file came back different");
    for range in [
        0..1,
        32_767..300_001,
        261_119..261_121,
        4_000_000..data.len() as u64,
    ] {
        let mut body = client
            .read_opts(&path, ReadOptions::default().with_range(range.clone()))
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = body.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        let (a, b) = (range.start as usize, range.end as usize);
        assert!(
            got == data[a..b],
            "{server:?}: range {range:?} came back different"
        );
    }
}

async fn every_write_keeps_its_attributes(server: Server) {
    if !available(server) {
        return;
    }
    let (client, cleanup) = fixture_with(server, |b| b);
    let disk = cleanup.0.clone();
    let old = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    let names = [
        "one.txt",
        "a/two.txt",
        "a/b/three.txt",
        "four.txt",
        "a/five.txt",
    ];
    for (i, name) in names.iter().enumerate() {
        let body = format!("file number {i}");
        let mut opts = WriteOptions::default()
            .with_mode(WriteMode::Create)
            .with_mtime(old)
            .with_size_hint(body.len() as u64);
        if server == Server::Sshd {
            // rclone's server keeps no permission bits, and a write that asks for private
            // ones fails there by design (`PermissionsIgnored`).
            opts = opts.with_permissions(0o640);
        }
        let written = client
            .write_opts(&p(name), bytes_stream(Bytes::from(body.clone())), opts)
            .await
            .unwrap();
        assert_eq!(written.mtime, Some(old), "{server:?}: {name} as written");
    }
    // Overwrites (unchecked) take the same path.
    let newer = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    client
        .write_opts(
            &p("four.txt"),
            bytes_stream(Bytes::from("four, again")),
            WriteOptions::default()
                .with_mode(WriteMode::Overwrite)
                .with_mtime(newer),
        )
        .await
        .unwrap();
    let listed = client.list_all(None).await.unwrap();
    assert_eq!(listed.len(), names.len(), "{server:?}: {listed:?}");
    for e in &listed {
        let want = if e.path.as_str() == "four.txt" {
            newer
        } else {
            old
        };
        assert_eq!(e.mtime, Some(want), "{server:?}: {} listed", e.path);
        let meta = std::fs::metadata(disk.join(e.path.as_str())).unwrap();
        let secs = want.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(meta.mtime() as u64, secs, "{server:?}: {} on disk", e.path);
        if server == Server::Sshd {
            // sshd keeps permission bits (rclone's server does not store them).
            assert_eq!(
                meta.permissions().mode() & 0o777,
                0o640,
                "{server:?}: {} on disk",
                e.path
            );
        }
    }
    assert_eq!(
        client.read_to_bytes(&p("four.txt")).await.unwrap(),
        Bytes::from_static(b"four, again")
    );
    assert!(
        support::temp_files_below(&disk).is_empty(),
        "{server:?}: temp files left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_big_file_round_trip() {
    big_file_round_trip(Server::Sshd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_big_file_round_trip() {
    big_file_round_trip(Server::Rclone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_every_write_keeps_its_attributes() {
    every_write_keeps_its_attributes(Server::Sshd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_every_write_keeps_its_attributes() {
    every_write_keeps_its_attributes(Server::Rclone).await;
}
