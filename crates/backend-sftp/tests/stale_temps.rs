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

/// `clean_up` (the `syncengine cleanup` command) removes exact-format temps older than the
/// age it is given, anywhere under the root but the trash; a dry run removes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_up_removes_old_exact_temps_outside_the_trash() {
    use syncengine_core::cleanup::{CleanupOptions, LeftoverKind};

    let Some((client, guard)) = support::sshd().await else {
        return;
    };
    client
        .put(&RelPath::new("a/b.txt").unwrap(), Bytes::from("b"))
        .await
        .unwrap();
    let root = guard.0.clone();
    let hour = Duration::from_secs(3600);
    let old = root.join("a/.syncengine-tmp-0123456789abcdef");
    let old_top = root.join(".syncengine-tmp-00000000000000aa");
    let young = root.join("a/.syncengine-tmp-fedcba9876543210");
    let aside = root.join("a/.syncengine-tmp-old-0123456789abcdef");
    let lookalike = root.join("a/.syncengine-tmp-0123456789ABCDEF");
    let in_trash = root.join(".syncengine/trash/20260101T000000Z/.syncengine-tmp-0123456789abcdef");
    fs::create_dir_all(in_trash.parent().unwrap()).unwrap();
    for path in [&old, &old_top, &young, &aside, &lookalike, &in_trash] {
        fs::write(path, "partial").unwrap();
    }
    for path in [&old, &old_top, &aside, &lookalike, &in_trash] {
        set_age(path, 2 * hour);
    }
    set_age(&young, Duration::from_secs(600));

    let opts = CleanupOptions::new(hour);
    let dry = client
        .clean_up(&opts.clone().with_dry_run(true))
        .await
        .unwrap();
    assert_eq!(dry.found.len(), 2, "{dry:?}");
    assert!(old.exists() && old_top.exists(), "a dry run removed a file");
    let done = client.clean_up(&opts).await.unwrap();
    assert!(done.failed.is_empty(), "{done:?}");
    let mut found: Vec<&str> = done.found.iter().map(|l| l.location.as_str()).collect();
    found.sort();
    assert!(
        found.len() == 2
            && found[0].ends_with("/.syncengine-tmp-00000000000000aa")
            && found[1].ends_with("/a/.syncengine-tmp-0123456789abcdef"),
        "{found:?}"
    );
    assert!(done.found.iter().all(|l| l.kind == LeftoverKind::TempFile));
    assert!(!old.exists() && !old_top.exists(), "old temps were left");
    for kept in [&young, &aside, &lookalike, &in_trash] {
        assert!(kept.exists(), "{} was removed", kept.display());
    }
    assert_eq!(
        client
            .read_to_bytes(&RelPath::new("a/b.txt").unwrap())
            .await
            .unwrap(),
        "b"
    );
}
