//! Red team 25: the local chunked read (`read_chunks`) feeding S3 uploads, and the multipart
//! loop's tail budget (the next part's reservation sized by the size hint).
//!
//! - Size hints that lie (too small, zero, too large, none) for several multipart uploads at
//!   once under a budget smaller than their parts: all finish, each object is exactly its body.
//! - A local file truncated while it is being uploaded: the checked body fails and the old
//!   object stays.
//! - Local ranged reads at odd offsets and past the end; streams dropped part way leave no
//!   descriptor open.

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use syncengine_backend_local::LocalClient;
use syncengine_core::verify::{Expected, verify_body};
use syncengine_core::{
    ByteStream, ReadOptions, RelPath, StorageClient, StorageClientExt, WriteOptions,
};

const MIB: usize = 1024 * 1024;

/// Asserts that the object `name` holds exactly `want`.
async fn assert_holds(client: &dyn StorageClient, name: &str, want: Vec<u8>, label: &str) {
    let got = client
        .read_to_bytes(&RelPath::new(name).unwrap())
        .await
        .unwrap();
    assert!(got[..] == want[..], "{label}: holds other bytes");
}

/// Uploads `body` (read from `local` at `path`, listed as `listed`) to `s3` as the engine
/// does: checked inside the stream against the listing, with the listed size as the hint.
async fn upload_checked(
    s3: &dyn StorageClient,
    local: &LocalClient,
    path: &RelPath,
    listed: &syncengine_core::Entry,
    body: ByteStream,
) -> syncengine_core::Result<syncengine_core::Entry> {
    let body = verify_body(
        body,
        Expected::of(listed, &local.capabilities()),
        local.backend(),
        path.as_str(),
    );
    s3.write_opts(
        path,
        body,
        WriteOptions::default().with_size_hint(listed.size),
    )
    .await
}

/// `len` bytes of a pattern that differs per `seed` and per position, in odd-sized chunks.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect()
}

fn chunked(data: Vec<u8>, chunk: usize) -> ByteStream {
    let data = Bytes::from(data);
    let mut at = 0;
    futures::stream::iter(std::iter::from_fn(move || {
        if at >= data.len() {
            return None;
        }
        let n = chunk.min(data.len() - at);
        let c = data.slice(at..at + n);
        at += n;
        Some(Ok(c))
    }))
    .boxed()
}

/// Several multipart uploads at once, each with a size hint that is wrong in its own way,
/// under a budget of little more than one part: none hangs, none commits a wrong object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_size_hints_under_a_tight_budget_neither_hang_nor_corrupt() {
    let Some(builder) = common::moto_builder() else {
        return;
    };
    let part = 5 * MIB;
    let client = Arc::new(
        builder
            .with_multipart(part, 2)
            .with_upload_buffer(part + MIB)
            .build()
            .unwrap(),
    );
    let size = 2 * part + 777_777;
    let hints: Vec<Option<u64>> = vec![
        Some(0),
        Some(1),
        Some(part as u64),
        Some(size as u64 - 1),
        Some(size as u64),
        Some(size as u64 + 1),
        Some(3 * size as u64),
        None,
    ];
    let mut uploads = Vec::new();
    for (i, hint) in hints.iter().enumerate() {
        let client = client.clone();
        let hint = *hint;
        let seed = u8::try_from(i).unwrap() + 1;
        uploads.push(tokio::spawn(async move {
            let path = RelPath::new(format!("f{i}")).unwrap();
            let mut opts = WriteOptions::default();
            if let Some(h) = hint {
                opts = opts.with_size_hint(h);
            }
            // 100 003-byte chunks: never a part boundary.
            client
                .write_opts(&path, chunked(pattern(seed, size), 100_003), opts)
                .await
        }));
    }
    // A hang guard, not a speed check: a budget deadlock never finishes.
    let all = tokio::time::timeout(Duration::from_secs(300), futures::future::join_all(uploads))
        .await
        .expect("uploads with wrong size hints hung (budget deadlock?)");
    for (i, up) in all.into_iter().enumerate() {
        let entry = up
            .unwrap()
            .unwrap_or_else(|e| panic!("f{i} ({:?}): {e}", hints[i]));
        assert_eq!(entry.size, size as u64, "f{i} hint {:?}", hints[i]);
        let label = format!("f{i} (hint {:?})", hints[i]);
        assert_holds(
            client.as_ref(),
            &format!("f{i}"),
            pattern(u8::try_from(i).unwrap() + 1, size),
            &label,
        )
        .await;
    }
}

/// A local file cut short while it is being uploaded (after the first part went out): the
/// checked body fails, the multipart upload is aborted, the old object stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_file_truncated_mid_upload_leaves_the_old_object() {
    let Some(builder) = common::moto_builder() else {
        return;
    };
    let part = 5 * MIB;
    let s3 = builder.with_multipart(part, 2).build().unwrap();
    let path = RelPath::new("big.bin").unwrap();
    let old = pattern(7, 1000);
    s3.write_opts(
        &path,
        chunked(old.clone(), 1000),
        WriteOptions::default().with_size_hint(1000),
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let size = 2 * part + 12_345;
    std::fs::write(dir.path().join("big.bin"), pattern(9, size)).unwrap();
    let local = LocalClient::new(dir.path());
    let listed = local.stat(&path).await.unwrap();
    let body = local.read(&path).await.unwrap();
    // Cut the file to half once 6 MiB went past (the first part is already sent).
    let file = dir.path().join("big.bin");
    let mut seen = 0usize;
    let body = body
        .inspect(move |c| {
            if let Ok(c) = c {
                let before = seen;
                seen += c.len();
                if before < 6 * MIB && seen >= 6 * MIB {
                    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
                    f.set_len((size / 2) as u64).unwrap();
                }
            }
        })
        .boxed();
    let result = upload_checked(&s3, &local, &path, &listed, body).await;
    assert!(
        result.is_err(),
        "a truncated read was committed: {result:?}"
    );
    let now = s3.read_to_bytes(&path).await.unwrap();
    assert_eq!(&now[..], &old[..], "the old object was replaced");
}

/// Ranged local reads: odd offsets inside and across chunk boundaries, ranges running past
/// the end, ranges starting past the end.
#[tokio::test]
async fn local_ranged_reads_at_odd_offsets_and_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let size = 3 * MIB + 4321;
    let data = pattern(3, size);
    std::fs::write(dir.path().join("f"), &data).unwrap();
    let local = LocalClient::new(dir.path());
    let path = RelPath::new("f").unwrap();
    let s = size as u64;
    // A reversed range (end before start) is read as empty too.
    #[allow(clippy::reversed_empty_ranges)]
    let ranges = [
        0..s,
        1..s,
        131_071..s - 1,
        131_072..131_072 + 262_145,
        262_143..s + 10,
        s - 300_000..s + 1_000_000,
        s - 1..s + 5,
        s..s + 300_000,
        s + 1..s + 400_000,
        5..5,
        7..3,
    ];
    for r in ranges {
        let got: Vec<Bytes> = local
            .read_opts(&path, ReadOptions::default().with_range(r.clone()))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let got = got.concat();
        let start = (r.start.min(s)) as usize;
        let end = (r.end.min(s).max(r.start.min(s))) as usize;
        assert_eq!(got.len(), end - start, "range {r:?}");
        assert!(got[..] == data[start..end], "range {r:?}: other bytes");
    }
}

/// Descriptors under `dir` this process holds open.
fn open_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// Streams dropped before their first poll, after one chunk, and with a read in flight
/// leave no descriptor open once their reads are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_local_streams_close_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(5, 2 * MIB);
    for i in 0..3 {
        std::fs::write(dir.path().join(format!("f{i}")), &data).unwrap();
    }
    let local = LocalClient::new(dir.path());
    // The count sees a stream's descriptor (so that 0 below means closed, not unseen).
    let held = local.read(&RelPath::new("f0").unwrap()).await.unwrap();
    assert_eq!(
        open_under(dir.path()),
        1,
        "an open stream's file is counted"
    );
    drop(held);
    for round in 0..50 {
        let p = RelPath::new(format!("f{}", round % 3)).unwrap();
        // Never polled.
        drop(local.read(&p).await.unwrap());
        // One chunk taken.
        let mut s = local.read(&p).await.unwrap();
        assert!(!s.next().await.unwrap().unwrap().is_empty());
        drop(s);
        // A read started and abandoned: polled once, then dropped.
        let mut s = local.read(&p).await.unwrap();
        let _ = futures::poll!(s.next());
        drop(s);
        // A ranged read dropped half way.
        let mut s = local
            .read_opts(&p, ReadOptions::default().with_range(1000..1_500_000))
            .await
            .unwrap();
        let _ = s.next().await;
        let _ = futures::poll!(s.next());
        drop(s);
    }
    // Reads in flight finish on their blocking threads, then close: wait for that (a hang
    // guard, not a timing check).
    let mut open = open_under(dir.path());
    for _ in 0..200 {
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        open = open_under(dir.path());
    }
    assert_eq!(open, 0, "{open} descriptors of dropped streams still open");
}

/// Sizes at and around part boundaries, with true hints, several at once under budgets
/// smaller than one part (down to one byte): all finish, each object exactly its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_boundary_sizes_under_budgets_below_one_part() {
    for (server, budget) in [("moto", 1usize), ("moto", MIB), ("seaweed", 3 * MIB)] {
        let builder = match server {
            "moto" => common::moto_builder(),
            _ => common::seaweed_builder(false),
        };
        let Some(builder) = builder else {
            continue;
        };
        let part = 5 * MIB;
        let client = Arc::new(
            builder
                .with_multipart(part, 2)
                .with_upload_buffer(budget)
                .build()
                .unwrap(),
        );
        let sizes = [
            part - 1,
            part,
            part + 1,
            2 * part,
            2 * part + 1,
            3 * part - 1,
        ];
        let mut uploads = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let client = client.clone();
            let seed = u8::try_from(i).unwrap() + 11;
            uploads.push(tokio::spawn(async move {
                let path = RelPath::new(format!("b{i}")).unwrap();
                // 128 KiB chunks, as the local read yields: boundaries fall on a part.
                client
                    .write_opts(
                        &path,
                        chunked(pattern(seed, size), 128 * 1024),
                        WriteOptions::default().with_size_hint(size as u64),
                    )
                    .await
            }));
        }
        let all =
            tokio::time::timeout(Duration::from_secs(300), futures::future::join_all(uploads))
                .await
                .unwrap_or_else(|_| panic!("{server} budget {budget}: uploads hung"));
        for (i, up) in all.into_iter().enumerate() {
            let entry = up
                .unwrap()
                .unwrap_or_else(|e| panic!("{server} budget {budget} b{i}: {e}"));
            assert_eq!(entry.size, sizes[i] as u64);
            let label = format!("{server} budget {budget} b{i}");
            assert_holds(
                client.as_ref(),
                &format!("b{i}"),
                pattern(u8::try_from(i).unwrap() + 11, sizes[i]),
                &label,
            )
            .await;
        }
    }
}

/// A local file that grows, or is replaced by a rename, while it is uploaded: what is
/// committed is exactly the listed version or nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_file_grown_or_replaced_mid_upload_commits_the_listed_version_or_nothing() {
    for how in ["grow", "rename-over", "grow-before-open"] {
        let Some(builder) = common::moto_builder() else {
            return;
        };
        let part = 5 * MIB;
        let s3 = builder.with_multipart(part, 2).build().unwrap();
        let path = RelPath::new("f.bin").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.bin");
        let size = part + 3 * MIB + 17;
        let listed_data = pattern(21, size);
        std::fs::write(&file, &listed_data).unwrap();
        let local = LocalClient::new(dir.path());
        let listed = local.stat(&path).await.unwrap();
        if how == "grow-before-open" {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&file)
                .unwrap();
            std::io::Write::write_all(&mut f, &[1u8; 300_000]).unwrap();
        }
        let body = local.read(&path).await.unwrap();
        let (file2, dir2) = (file.clone(), dir.path().to_owned());
        let mut seen = 0usize;
        let body = body
            .inspect(move |c| {
                if let Ok(c) = c {
                    let before = seen;
                    seen += c.len();
                    if before < MIB && seen >= MIB {
                        match how {
                            "grow" => {
                                let mut f = std::fs::OpenOptions::new()
                                    .append(true)
                                    .open(&file2)
                                    .unwrap();
                                std::io::Write::write_all(&mut f, &[2u8; 500_000]).unwrap();
                            }
                            "rename-over" => {
                                let tmp = dir2.join("new");
                                std::fs::write(&tmp, pattern(99, size)).unwrap();
                                std::fs::rename(&tmp, &file2).unwrap();
                            }
                            _ => {}
                        }
                    }
                }
            })
            .boxed();
        let result = upload_checked(&s3, &local, &path, &listed, body).await;
        match result {
            Ok(entry) => {
                assert_eq!(entry.size, size as u64, "{how}");
                let got = s3.read_to_bytes(&path).await.unwrap();
                assert!(got[..] == listed_data[..], "{how}: committed other bytes");
            }
            Err(_) => {
                assert!(
                    s3.stat(&path).await.is_err(),
                    "{how}: failed, yet an object is there"
                );
            }
        }
    }
}
