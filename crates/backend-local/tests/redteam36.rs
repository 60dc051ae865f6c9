//! Red team 36: what a move killed midway on a filesystem without `RENAME_NOREPLACE` leaves
//! (`.syncengine-tmp-aside-<hex>-<name>`, see `moved_aside.rs`) and its recovery after the
//! next run (`remove_stale_temps`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use support::names;
use syncengine_backend_local::LocalClient;
use syncengine_core::{
    Recovery, RelPath, Side, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncOptions,
    SyncPair,
};

/// The longest old name an aside name still carries (38 bytes of prefix and hex, a dash,
/// 216 bytes: 255). Its recovery name (`recovered-by-syncengine-`, two bytes longer than
/// `.syncengine-tmp-aside-`) would be 257 bytes: too long for any file name. Where the old
/// name is taken, the save under the aside name must still get a visible name, not stay
/// hidden (and unsynced) for good with a warning every run.
#[tokio::test]
async fn a_save_aside_with_a_216_byte_name_whose_name_is_taken_gets_a_visible_name() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("docs")).unwrap();
    let long = "n".repeat(216);
    let aside = format!(".syncengine-tmp-aside-0000123400000001-{long}");
    assert_eq!(aside.len(), 255);
    fs::write(root.join("docs").join(&aside), b"the save").unwrap();
    fs::write(root.join("docs").join(&long), b"something else").unwrap();
    let client = LocalClient::new(&root);

    for _ in 0..2 {
        client.list_all(None).await.unwrap();
        client.remove_stale_temps().await.unwrap();
    }
    let left = names(&root.join("docs"));
    assert!(
        !left.contains(&aside),
        "the save is still hidden under its aside name: {left:?}"
    );
    let visible: Vec<&String> = left.iter().filter(|n| **n != long).collect();
    assert_eq!(visible.len(), 1, "{left:?}");
    assert!(
        visible[0].starts_with("recovered-by-syncengine-"),
        "{left:?}"
    );
    assert_eq!(
        fs::read(root.join("docs").join(visible[0])).unwrap(),
        b"the save"
    );
    assert_eq!(
        fs::read(root.join("docs").join(&long)).unwrap(),
        b"something else"
    );
    // And the listing shows it, so the next run syncs it.
    let listed = client.list_all(None).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|e| e.path.as_str() == format!("docs/{}", visible[0])),
        "{listed:?}"
    );
}

/// The aside name was a second name of the moved file when the run listed it; the run then
/// deleted that file (its other name) for a deletion on the other side, with no trash (or a
/// trash elsewhere: copied, then removed). After the run the aside is the file's only name,
/// and recovery put the deleted file back under its *old* name, where the next run
/// uploaded it: a file deleted on the other side came back. What the listing saw (a second
/// name) decides: it was never a save.
#[tokio::test]
async fn a_second_name_whose_other_name_the_run_deleted_does_not_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("docs")).unwrap();
    fs::create_dir_all(root.join("moved")).unwrap();
    fs::write(root.join("moved/notes.txt"), b"version 1").unwrap();
    let aside = ".syncengine-tmp-aside-0000123400000001-notes.txt";
    fs::hard_link(root.join("moved/notes.txt"), root.join("docs").join(aside)).unwrap();
    let client = LocalClient::new(&root);

    // The run: lists, then deletes the moved file.
    client.list_all(None).await.unwrap();
    client
        .delete(&RelPath::new("moved/notes.txt").unwrap())
        .await
        .unwrap();
    client.remove_stale_temps().await.unwrap();

    assert!(
        names(&root.join("docs")).is_empty(),
        "the deleted file came back: {:?}",
        names(&root.join("docs"))
    );
}

/// The same end to end, two-way, with no trash at `b`: the aside at `b` (a second name of
/// `moved.txt`, left by a move killed long ago) outlives a run that deletes `moved.txt`
/// (deleted at `a`). The file must stay deleted on both sides after two more runs.
#[tokio::test]
async fn a_file_deleted_on_the_other_side_stays_deleted_with_an_aside_left() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    fs::write(a.join("moved.txt"), b"version 1").unwrap();
    fs::write(a.join("keep.txt"), b"keep").unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&a)),
        Arc::new(LocalClient::new(&b)),
        SyncMode::TwoWay,
    )
    .with_options(SyncOptions::default().with_recovery(Side::Destination, Recovery::None));
    let first = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(first.errors, 0, "{first:?}");
    // What a move notes.txt -> moved.txt killed at `b` left: the old name aside.
    let aside = b.join(".syncengine-tmp-aside-0000123400000003-notes.txt");
    fs::hard_link(b.join("moved.txt"), &aside).unwrap();
    assert_eq!(fs::metadata(&aside).unwrap().nlink(), 2);
    fs::remove_file(a.join("moved.txt")).unwrap();

    for _ in 0..3 {
        let run = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(run.errors, 0, "{run:?}");
    }
    let visible = |dir: &Path| -> Vec<String> {
        names(dir)
            .into_iter()
            .filter(|n| n != ".syncengine")
            .collect()
    };
    assert_eq!(visible(&a), ["keep.txt"], "at a");
    assert_eq!(visible(&b), ["keep.txt"], "at b");
}

/// The folder of an aside name listed by the run is swapped for a symlink to a folder
/// outside the root before the recovery after the run: the recovery, by path, followed it
/// and removed (or renamed) a file outside the root that only has an aside-like name.
#[tokio::test]
async fn a_folder_swapped_for_a_symlink_before_recovery_leads_nothing_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(root.join("docs")).unwrap();
    fs::create_dir_all(root.join("moved")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    let aside = ".syncengine-tmp-aside-0000123400000001-notes.txt";
    fs::write(root.join("moved/notes.txt"), b"version 1").unwrap();
    fs::hard_link(root.join("moved/notes.txt"), root.join("docs").join(aside)).unwrap();
    // Outside: a file of that name with a second name, and one with its only name.
    fs::write(outside.join("keep"), b"outside").unwrap();
    fs::hard_link(outside.join("keep"), outside.join(aside)).unwrap();
    let only = ".syncengine-tmp-aside-0000123400000002-other.txt";
    fs::write(root.join("docs").join(only), b"a save").unwrap();
    fs::write(outside.join(only), b"outside only").unwrap();
    let client = LocalClient::new(&root);

    client.list_all(None).await.unwrap();
    fs::rename(root.join("docs"), root.join("docs-real")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("docs")).unwrap();
    client.remove_stale_temps().await.unwrap();

    let mut expected = vec![aside.to_owned(), only.to_owned(), "keep".to_owned()];
    expected.sort();
    assert_eq!(names(&outside), expected, "outside the root");
}

/// Held: a save left aside whose old name is now a folder, or a symlink (dangling or not),
/// gets a visible name next to them; neither is followed nor replaced.
#[tokio::test]
async fn a_save_aside_whose_old_name_is_a_folder_or_a_symlink_gets_a_visible_name() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(root.join("docs/folder")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("docs/linked")).unwrap();
    std::os::unix::fs::symlink(outside.join("missing"), root.join("docs/dangling")).unwrap();
    for (i, old) in ["folder", "linked", "dangling"].iter().enumerate() {
        fs::write(
            root.join(format!(
                "docs/.syncengine-tmp-aside-000012340000000{i}-{old}"
            )),
            format!("save {i}"),
        )
        .unwrap();
    }
    let client = LocalClient::new(&root);
    // The listing reports the symlinks as not followed; it noted the aside names.
    let _ = client.list_all(None).await;
    assert_eq!(client.remove_stale_temps().await.unwrap(), 0);

    assert_eq!(
        names(&root.join("docs")),
        [
            "dangling",
            "folder",
            "linked",
            "recovered-by-syncengine-0000123400000000-folder",
            "recovered-by-syncengine-0000123400000001-linked",
            "recovered-by-syncengine-0000123400000002-dangling",
        ]
    );
    assert!(names(&outside).is_empty(), "{:?}", names(&outside));
    assert!(names(&root.join("docs/folder")).is_empty());
    assert_eq!(
        fs::read(root.join("docs/recovered-by-syncengine-0000123400000001-linked")).unwrap(),
        b"save 1"
    );
}

/// Held: a dry run changes nothing, neither a save left aside nor a second name.
#[tokio::test]
async fn a_dry_run_leaves_every_aside_name_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    fs::write(a.join("keep.txt"), b"keep").unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = |dry_run: bool| {
        SyncPair::new(
            Arc::new(LocalClient::new(&a)),
            Arc::new(LocalClient::new(&b)),
            SyncMode::TwoWay,
        )
        .with_options(SyncOptions::default().with_dry_run(dry_run))
    };
    let first = engine.sync_pair(&pair(false)).await.unwrap();
    assert_eq!(first.errors, 0, "{first:?}");
    let save = ".syncengine-tmp-aside-0000123400000001-notes.txt";
    let second = ".syncengine-tmp-aside-0000123400000002-keep.txt";
    fs::write(b.join(save), b"the save").unwrap();
    fs::hard_link(b.join("keep.txt"), b.join(second)).unwrap();
    let before = names(&b);

    let dry = engine.sync_pair(&pair(true)).await.unwrap();
    assert_eq!(dry.errors, 0, "{dry:?}");
    assert_eq!(names(&b), before);
    assert_eq!(fs::metadata(b.join(second)).unwrap().nlink(), 2);

    // The real run after recovers both.
    let real = engine.sync_pair(&pair(false)).await.unwrap();
    assert_eq!(real.errors, 0, "{real:?}");
    assert_eq!(fs::read(b.join("notes.txt")).unwrap(), b"the save");
    assert!(!b.join(save).exists() && !b.join(second).exists());
    assert_eq!(fs::metadata(b.join("keep.txt")).unwrap().nlink(), 1);
}
