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

/// Makes an empty anchor folder (as a killed delete or rename leaves) `age` old.
fn anchor_left(dir: &Path, name: &str, age: Duration) -> std::path::PathBuf {
    let anchor = dir.join(name);
    fs::create_dir_all(&anchor).unwrap();
    let t = SystemTime::now() - age;
    fs::File::open(&anchor)
        .unwrap()
        .set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
    anchor
}

/// Anchors left by killed deletes (a day and more old) after the next run: where the run's
/// delete empties the folder, the prune takes it, anchor and all; where the killed delete
/// had already removed the file, the stale removal takes the anchor and leaves the folder,
/// empty, as it would a user's own (red team 12). A young anchor (maybe another machine's
/// operation in progress) stays, and keeps its folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_anchor_does_not_keep_a_deleted_folder_alive() {
    use syncengine_core::SyncMode;
    use syncengine_core::engine::SyncEngine;
    use syncengine_core::pair::{SyncOptions, SyncPair};

    let Some((dest, guard)) = support::sshd().await else {
        return;
    };
    let (source, _src_dir) = support::local().await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let pair = SyncPair::new(source.clone(), dest.clone(), SyncMode::SourceToDestination)
        .with_options(SyncOptions::default().with_max_delete_percent(100));
    for f in ["keep.txt", "gone/a.txt", "emptied/b.txt", "young/c.txt"] {
        source
            .put(&RelPath::new(f).unwrap(), Bytes::from(f))
            .await
            .unwrap();
    }
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!((stats.uploaded, stats.errors), (4, 0), "{stats:?}");

    let root = guard.0.clone();
    let day = Duration::from_secs(24 * 3600);
    let old = day + Duration::from_secs(3600);
    // A killed delete of gone/a.txt left its anchor, the file still there.
    anchor_left(
        &root.join("gone"),
        ".syncengine-tmp-anchor-0123456789abcdef",
        old,
    );
    // One of emptied/b.txt got as far as removing the file.
    fs::remove_file(root.join("emptied/b.txt")).unwrap();
    anchor_left(
        &root.join("emptied"),
        ".syncengine-tmp-anchor-00000000000000ee",
        old,
    );
    // Young: kept, with its folder.
    let young = anchor_left(
        &root.join("young"),
        ".syncengine-tmp-anchor-00000000000000aa",
        day / 2,
    );
    for f in ["gone/a.txt", "emptied/b.txt", "young/c.txt"] {
        source.delete(&RelPath::new(f).unwrap()).await.unwrap();
    }
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert!(
        !root.join("gone").exists(),
        "a stale anchor kept gone/ alive"
    );
    // Its file was gone already, so no delete of this run prunes it: the stale anchor goes,
    // and the folder stays, empty, as a user's own empty folder would (red team 12: removing
    // a stale anchor never prunes the folders above it).
    assert!(
        !root
            .join("emptied/.syncengine-tmp-anchor-00000000000000ee")
            .exists(),
        "the stale anchor in emptied/ stayed"
    );
    assert!(root.join("emptied").is_dir(), "emptied/ was pruned");
    assert!(young.exists(), "a young anchor was removed");
    assert!(!root.join("young/c.txt").exists());
    assert!(root.join("keep.txt").exists());
}

/// `clean_up` removes left-behind anchors older than its age (not the folders this leaves
/// empty: they may be the user's), never a younger one, never a folder with that name that
/// holds something (no recursion: it is the user's), never a file with that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_up_removes_old_empty_anchors_only() {
    use syncengine_core::cleanup::CleanupOptions;

    let Some((client, guard)) = support::sshd().await else {
        return;
    };
    client
        .put(&RelPath::new("a/b.txt").unwrap(), Bytes::from("b"))
        .await
        .unwrap();
    let root = guard.0.clone();
    let hour = Duration::from_secs(3600);
    let old = anchor_left(
        &root.join("a"),
        ".syncengine-tmp-anchor-0123456789abcdef",
        2 * hour,
    );
    let alone = anchor_left(
        &root.join("x/y"),
        ".syncengine-tmp-anchor-00000000000000bb",
        2 * hour,
    );
    let young = anchor_left(
        &root.join("a"),
        ".syncengine-tmp-anchor-fedcba9876543210",
        hour / 6,
    );
    let full = anchor_left(
        &root.join("a"),
        ".syncengine-tmp-anchor-00000000000000cc",
        2 * hour,
    );
    fs::write(full.join("keep"), "mine").unwrap();
    let file = root.join("a/.syncengine-tmp-anchor-00000000000000dd");
    fs::write(&file, "mine").unwrap();
    set_age(&file, 2 * hour);
    anchor_left(
        &root.join("a"),
        ".syncengine-tmp-anchor-00000000000000cc",
        2 * hour,
    );

    let opts = CleanupOptions::new(hour);
    let dry = client
        .clean_up(&opts.clone().with_dry_run(true))
        .await
        .unwrap();
    // The anchor-named folder that holds a file is the user's: not a candidate at all
    // (listings report it; red team 12), so only the two empty old anchors are found.
    assert_eq!(dry.found.len(), 2, "{dry:?}");
    assert!(
        old.exists() && alone.exists(),
        "a dry run removed an anchor"
    );
    let done = client.clean_up(&opts).await.unwrap();
    let mut found: Vec<&str> = done.found.iter().map(|l| l.location.as_str()).collect();
    found.sort();
    assert!(
        found.len() == 2
            && found[0].ends_with("/a/.syncengine-tmp-anchor-0123456789abcdef")
            && found[1].ends_with("/x/y/.syncengine-tmp-anchor-00000000000000bb"),
        "{done:?}"
    );
    assert!(done.failed.is_empty(), "{done:?}");
    assert!(!old.exists(), "an old anchor was left");
    // The folders it leaves empty stay: they may be the user's own (red team 12).
    assert!(
        !alone.exists() && root.join("x/y").is_dir(),
        "the anchor stayed, or its (now empty) folders were pruned"
    );
    assert!(young.exists(), "a young anchor was removed");
    assert_eq!(fs::read_to_string(full.join("keep")).unwrap(), "mine");
    assert_eq!(fs::read_to_string(&file).unwrap(), "mine");
    assert!(root.join("a/b.txt").exists());
}
