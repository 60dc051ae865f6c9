//! A move killed midway on a filesystem without `RENAME_NOREPLACE` leaves the old name set
//! aside (`.syncengine-tmp-aside-<hex>-<name>`). It is usually a second name of the moved
//! file; if a save landed at the old name in that same moment, it is the save's only name.
//! Before, it had the stale-temp format and was removed a day later either way.
//!
//! The state a kill leaves is made here directly (the kill itself needs the moment between
//! two system calls of a filesystem without `RENAME_NOREPLACE`; red team 34's strace test
//! covers the move's own steps).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use support::names;
use syncengine_backend_local::LocalClient;
use syncengine_core::{StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair};

const ASIDE: &str = ".syncengine-tmp-aside-0000123400000001-notes.txt";

/// A day and an hour ago: older than any age rule.
fn long_ago() -> SystemTime {
    SystemTime::now() - Duration::from_secs(25 * 3600)
}

fn make_old(path: &Path) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_times(
        fs::FileTimes::new()
            .set_accessed(long_ago())
            .set_modified(long_ago()),
    )
    .unwrap();
}

/// The kill came with no save: the aside name is a second name of the file the move linked
/// at its target. The run after removes it; the target keeps the file.
#[tokio::test]
async fn a_second_name_left_aside_is_removed_after_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("docs")).unwrap();
    fs::create_dir_all(root.join("moved")).unwrap();
    fs::write(root.join("moved/notes.txt"), b"version 1").unwrap();
    fs::hard_link(root.join("moved/notes.txt"), root.join("docs").join(ASIDE)).unwrap();
    let client = LocalClient::new(&root);

    let listed = client.list_all(None).await.unwrap();
    let paths: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["moved/notes.txt"], "an aside name is never listed");
    // A listing alone (a dry run lists too) changes nothing.
    assert_eq!(names(&root.join("docs")), [ASIDE]);

    assert_eq!(client.remove_stale_temps().await.unwrap(), 1);
    assert!(names(&root.join("docs")).is_empty());
    assert_eq!(
        fs::read(root.join("moved/notes.txt")).unwrap(),
        b"version 1"
    );
}

/// The kill came with a save at the old name (between the move's link and its setting the
/// old name aside): the aside name is the save's only name. Even a day later it goes back
/// to its name, never away.
#[tokio::test]
async fn a_save_left_aside_goes_back_to_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("docs")).unwrap();
    let aside = root.join("docs").join(ASIDE);
    fs::write(&aside, b"the save").unwrap();
    make_old(&aside);
    let client = LocalClient::new(&root);

    assert!(client.list_all(None).await.unwrap().is_empty());
    assert_eq!(
        names(&root.join("docs")),
        [ASIDE],
        "a listing changes nothing"
    );
    assert_eq!(
        client.remove_stale_temps().await.unwrap(),
        0,
        "nothing removed"
    );
    assert_eq!(names(&root.join("docs")), ["notes.txt"]);
    assert_eq!(fs::read(root.join("docs/notes.txt")).unwrap(), b"the save");
    let listed = client.list_all(None).await.unwrap();
    assert_eq!(listed[0].path.as_str(), "docs/notes.txt");
}

/// The save's old name is taken by now (a later save): the one set aside gets a visible
/// name beside it, and neither is replaced.
#[tokio::test]
async fn a_save_left_aside_whose_name_is_taken_gets_a_visible_name() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("docs")).unwrap();
    fs::write(root.join("docs").join(ASIDE), b"the first save").unwrap();
    fs::write(root.join("docs/notes.txt"), b"a later save").unwrap();
    let client = LocalClient::new(&root);

    client.list_all(None).await.unwrap();
    assert_eq!(client.remove_stale_temps().await.unwrap(), 0);
    let recovered = "recovered-by-syncengine-0000123400000001-notes.txt";
    assert_eq!(names(&root.join("docs")), ["notes.txt", recovered]);
    assert_eq!(
        fs::read(root.join("docs/notes.txt")).unwrap(),
        b"a later save"
    );
    assert_eq!(
        fs::read(root.join("docs").join(recovered)).unwrap(),
        b"the first save"
    );
}

/// A name too long to carry its old name (`.syncengine-tmp-aside-<hex>` only): the save set
/// aside gets a visible name.
#[tokio::test]
async fn a_save_left_aside_without_its_old_name_gets_a_visible_name() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join(".syncengine-tmp-aside-00000000000000ff"), b"kept").unwrap();
    let client = LocalClient::new(&root);

    client.list_all(None).await.unwrap();
    client.remove_stale_temps().await.unwrap();
    assert_eq!(names(&root), ["recovered-by-syncengine-00000000000000ff"]);
}

/// Names that only resemble an aside name, and a folder with one, are left alone.
#[tokio::test]
async fn what_only_resembles_an_aside_name_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let lookalikes = [
        ".syncengine-tmp-aside-00000000000000AB-x",
        ".syncengine-tmp-aside-00000000000000ab",
    ];
    fs::write(root.join(lookalikes[0]), b"a").unwrap();
    // A folder with the exact format.
    fs::create_dir(root.join(lookalikes[1])).unwrap();
    fs::write(root.join(lookalikes[1]).join("inside"), b"b").unwrap();
    let client = LocalClient::new(&root);

    client.list_all(None).await.unwrap();
    client.remove_stale_temps().await.unwrap();
    let mut expected = lookalikes.map(String::from).to_vec();
    expected.sort();
    assert_eq!(names(&root), expected);
    assert_eq!(
        fs::read(root.join(lookalikes[1]).join("inside")).unwrap(),
        b"b"
    );
}

/// End to end, two-way: what a run killed in a move's window left at `b` (a save under
/// its aside name) is back at its name after the next run, and synced to `a` by the one
/// after.
#[tokio::test]
async fn a_save_left_aside_by_a_killed_delete_survives_the_next_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    fs::write(a.join("keep.txt"), b"keep").unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&a)),
        Arc::new(LocalClient::new(&b)),
        SyncMode::TwoWay,
    );
    let first = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(first.errors, 0, "{first:?}");
    // What the kill left at `b`: the save under its aside name.
    fs::write(
        b.join(".syncengine-tmp-aside-0000123400000002-notes.txt"),
        b"the save",
    )
    .unwrap();

    let second = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(second.errors, 0, "{second:?}");
    assert_eq!(fs::read(b.join("notes.txt")).unwrap(), b"the save");
    let third = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(third.errors, 0, "{third:?}");
    assert_eq!(
        fs::read(a.join("notes.txt")).unwrap(),
        b"the save",
        "synced"
    );
    assert_eq!(fs::read(b.join("notes.txt")).unwrap(), b"the save");
}
