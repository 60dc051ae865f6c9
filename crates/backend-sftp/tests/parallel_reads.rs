//! Parallel range reads over SFTP (off by default, on here with a 1 MiB cutoff): a large file
//! arrives byte-identical through ranges, and a file replaced on the server (a new file renamed
//! over it, another mtime, the same size) before a later range fails that range with
//! `PreconditionFailed`: each range checks the size and mtime of the handle it opened.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use futures::TryStreamExt;
use support::{Cleanup, Server, available, builder, fresh_name};
use syncengine_core::parallel_read::read_for_copy;
use syncengine_core::{Error, ParallelReads, RelPath, StorageClient};

const PART: u64 = 256 << 10;

fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `content` at `path` on disk through a new file renamed over it, with mtime `secs`.
fn replace(path: &std::path::Path, content: &[u8], secs: u64) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    let f = std::fs::File::options().write(true).open(&tmp).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
    drop(f);
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn sshd_ranges_arrive_whole_and_a_replaced_file_fails_a_later_range() {
    if !available(Server::Sshd) {
        return;
    }
    let name = fresh_name();
    let root = Server::Sshd.local_root(&name);
    let _cleanup = Cleanup(root.clone());
    std::fs::create_dir_all(&root).unwrap();
    let len = (9 * PART + 12_345) as usize;
    replace(&root.join("big.bin"), &data(1, len), 1_600_000_000);
    let client: Arc<dyn StorageClient> = Arc::new(
        builder(Server::Sshd, &name)
            .with_parallel_reads(Some(
                ParallelReads::default()
                    .with_cutoff(4 * PART)
                    .with_streams(3)
                    .with_part_size(PART),
            ))
            .build()
            .unwrap(),
    );
    let path = RelPath::new("big.bin").unwrap();
    let listed = client.stat(&path).await.unwrap();

    let body: Vec<bytes::Bytes> = read_for_copy(&client, &path, &listed)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(
        body.concat() == data(1, len),
        "the ranges differ from the file"
    );

    // The first ranges are read; then another version of the same size takes the name.
    let mut body = read_for_copy(&client, &path, &listed).await.unwrap();
    let first = body.try_next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    replace(&root.join("big.bin"), &data(2, len), 1_700_000_000);
    let rest: Result<Vec<bytes::Bytes>, Error> = body.try_collect().await;
    match rest {
        Err(Error::PreconditionFailed { .. }) => {}
        other => panic!(
            "a read across two versions was not refused: {:?}",
            other.map(|v| v.len())
        ),
    }
}
