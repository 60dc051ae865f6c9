//! A listing split by folder and listed concurrently (S3, `with_list_concurrency`) gives exactly what
//! a sequential listing (one page after another) gives: the same entries, and on a server
//! that lists in byte order (moto) in the same order. The tree has keys at the top level,
//! many folders, nested folders, names that sort trickily around `/` (`a`, `a-b`, `a.b`,
//! `a/…`, `a0`), Unicode, and characters a listing URL-encodes (`+`, `%`, space) in folder
//! names; it is listed whole and below several folders, in pages of 1000 and of 5 keys (so
//! that folders and the root's own listing take many pages).

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use syncengine_backend_s3::{S3Builder, S3Client};
use syncengine_core::{RelPath, StorageClient, StorageClientExt};

/// The tree: every key below the client's root.
fn tree() -> Vec<String> {
    let mut keys: Vec<String> = [
        // Top level, around the folder `a/` and others.
        "a",
        "a-b",
        "a.b",
        "a0",
        "a b",
        "b",
        "z",
        "é",
        "~x",
        "日本",
        // Nested folders, with names that sort around `/` inside them.
        "a/b",
        "a/c/d",
        "a/c-d",
        "a/c.d",
        "a/c0/e",
        "a/c/f/g/h",
        // Folder names a listing URL-encodes.
        "p+q/r",
        "p%41/s",
        "sp ace/t",
        "ü/v",
        "日本語/w",
    ]
    .map(String::from)
    .to_vec();
    // Few top-level folders with subfolders: the root is split one level deeper.
    for d in 0..10 {
        for f in 0..3 {
            keys.push(format!("d{d:02}/f{f}"));
        }
        for s in 0..2 {
            for f in 0..2 {
                keys.push(format!("d{d:02}/s{s}/f{f}"));
            }
        }
    }
    // A folder with many folders (more than the split's expansion threshold).
    for m in 0..70 {
        keys.push(format!("many/m{m:02}/x"));
    }
    keys.push("many/top".into());
    keys.push("many/m05-z".into());
    // A folder with few folders, each of many keys (many pages of 5).
    for s in 0..3 {
        for f in 0..12 {
            keys.push(format!("small/s{s}/f{f:02}"));
        }
    }
    keys
}

/// What a listing gave, one line per item (an unknown path is an item too).
async fn listed(client: &S3Client, prefix: Option<&str>) -> Vec<String> {
    let prefix = prefix.map(|p| RelPath::new(p).unwrap());
    client
        .list(prefix.as_ref())
        .map(|item| match item {
            Ok(e) => format!("{} {} {:?} {:?}", e.path, e.size, e.etag, e.mtime),
            Err(e) => format!("error: {e}"),
        })
        .collect()
        .await
}

/// Puts the tree under a fresh root, then compares the sequential listing with split ones
/// (4 and 16 folders at once) for the whole root and below three folders, in pages of 1000
/// and of 5 keys. `ordered`: the server lists in byte order, so the order must match too.
async fn split_matches_sequential(builder: S3Builder, ordered: bool) {
    let writer = builder.clone().build().unwrap();
    let keys = tree();
    futures::stream::iter(keys.iter())
        .map(|k| {
            let writer = &writer;
            async move {
                writer
                    .put(&RelPath::new(k.as_str()).unwrap(), Bytes::from(k.clone()))
                    .await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    for page_keys in [1000, 5] {
        let client = |folders| {
            builder
                .clone()
                .with_list_page_keys(page_keys)
                .with_list_concurrency(folders)
                .build()
                .unwrap()
        };
        let sequential = client(1);
        for prefix in [None, Some("many"), Some("small"), Some("a")] {
            let want = listed(&sequential, prefix).await;
            let under = |k: &&String| prefix.is_none_or(|p| k.starts_with(&format!("{p}/")));
            let expected = keys.iter().filter(under).count();
            assert_eq!(
                want.len(),
                expected,
                "sequential listing of {prefix:?} (pages of {page_keys}): {want:#?}"
            );
            assert!(want.iter().all(|l| !l.starts_with("error")), "{want:#?}");
            for folders in [4, 16] {
                let got = listed(&client(folders), prefix).await;
                if ordered {
                    assert_eq!(
                        got, want,
                        "split listing of {prefix:?}, {folders} folders at once, pages of \
                         {page_keys}"
                    );
                } else {
                    let (mut got, mut want) = (got, want.clone());
                    got.sort();
                    want.sort();
                    assert_eq!(
                        got, want,
                        "split listing of {prefix:?}, {folders} folders at once, pages of \
                         {page_keys} (any order)"
                    );
                }
            }
        }
        if ordered {
            // And that order is byte order (what the engine's reconciler needs).
            let paths: Vec<String> = sequential
                .list_all(None)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.path.into_string())
                .collect();
            let mut sorted = paths.clone();
            sorted.sort();
            assert_eq!(paths, sorted);
        }
    }
}

#[tokio::test]
async fn split_listing_matches_sequential_on_moto() {
    let Some(builder) = common::moto_builder() else {
        return;
    };
    split_matches_sequential(builder, true).await;
}

#[tokio::test]
async fn split_listing_matches_sequential_on_seaweedfs() {
    let Some(builder) = common::seaweed_builder(false) else {
        return;
    };
    split_matches_sequential(builder, false).await;
}
