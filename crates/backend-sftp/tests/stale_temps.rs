//! Left-behind temp files on a real sshd: listings only note them, and
//! `remove_stale_temps` removes exactly those in the temp format untouched for a day.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use syncengine_core::{Error, RelPath, StorageClientExt};

fn set_age(path: &Path, age: Duration) {
    let t = SystemTime::now() - age;
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_exact_temps_untouched_for_a_day_are_removed() {
    let Some((client, guard)) = support::sshd().await else {
        return;
    };
    client
        .put(&RelPath::new("a/b.txt").unwrap(), Bytes::from("b"))
        .await
        .unwrap();
    let dir = guard.0.join("a");
    let day = Duration::from_secs(24 * 3600);
    let stale = dir.join(".syncengine-tmp-0123456789abcdef");
    let young = dir.join(".syncengine-tmp-fedcba9876543210");
    let aside = dir.join(".syncengine-tmp-old-0123456789abcdef");
    let lookalike = dir.join(".syncengine-tmp-notes.txt");
    for path in [&stale, &young, &aside, &lookalike] {
        fs::write(path, "partial").unwrap();
    }
    for path in [&stale, &aside, &lookalike] {
        set_age(path, day + Duration::from_secs(3600));
    }
    set_age(&young, day - Duration::from_secs(3600));

    // The moved-aside file (its name does not say which file it was) is reported as the
    // folder's partly unknown contents; the other temps are not listed at all.
    let listed: Vec<String> = client
        .list(None)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|item| match item {
            Ok(e) => e.path.into_string(),
            Err(Error::Unlisted {
                path,
                contents_only: true,
                reason,
                ..
            }) if reason.contains(".syncengine-tmp-old-0123456789abcdef") => format!("?{path}/"),
            Err(e) => panic!("{e}"),
        })
        .collect();
    assert_eq!(listed, ["?a/", "a/b.txt"]);
    assert!(
        stale.exists(),
        "a listing removed a file (a dry run lists too)"
    );
    assert_eq!(client.remove_stale_temps().await.unwrap(), 1);
    assert!(!stale.exists(), "a day-old temp was left behind");
    assert!(young.exists(), "a temp younger than a day was removed");
    assert!(aside.exists(), "a moved-aside old file was removed");
    assert!(
        lookalike.exists(),
        "a file that only resembles a temp was removed"
    );
}

/// An upload's temp gets its final mtime (often old) before it is renamed into place; its
/// access time says "now", so another machine never takes it for stale meanwhile. The file
/// in place keeps the source's mtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_keep_the_source_mtime_and_a_fresh_access_time() {
    let Some((client, guard)) = support::sshd().await else {
        return;
    };
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let body = syncengine_core::bytes_stream(Bytes::from("x"));
    client
        .write_opts(
            &RelPath::new("f.txt").unwrap(),
            body,
            syncengine_core::WriteOptions::default().with_mtime(old),
        )
        .await
        .unwrap();
    let md = fs::metadata(guard.0.join("f.txt")).unwrap();
    assert_eq!(md.modified().unwrap(), old);
    let accessed_ago = SystemTime::now()
        .duration_since(md.accessed().unwrap())
        .unwrap_or_default();
    assert!(accessed_ago < Duration::from_secs(3600), "{accessed_ago:?}");
}
