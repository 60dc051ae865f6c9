//! Red team 12 findings on the anchor folders (`.syncengine-tmp-anchor-<16 hex>`).

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use futures::StreamExt;

fn set_age(path: &Path, age: Duration) {
    let t = SystemTime::now() - age;
    let file = fs::File::open(path).unwrap();
    file.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

/// An engine anchor is always empty; a folder with that name holding files is the user's.
/// Its files are neither listed nor reported, so no run ever syncs them, silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_folder_named_like_an_anchor_is_not_silently_skipped() {
    let Some((client, guard)) = support::sshd().await else {
        return;
    };
    let dir = guard.0.join("d/.syncengine-tmp-anchor-0123456789abcdef");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("keep.txt"), "precious").unwrap();
    let listed: Vec<String> = client
        .list(None)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|item| match item {
            Ok(e) => e.path.into_string(),
            Err(e) => format!("error: {e}"),
        })
        .collect();
    assert!(
        !listed.is_empty(),
        "a folder named like an anchor holding a user file was neither listed nor reported"
    );
}

/// Removing a stale anchor prunes the folders above it that are left empty, even those
/// the user made and the engine never emptied (`cleanup --help`: "Never removed: any other
/// file or object").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_stale_anchor_keeps_the_users_empty_folders() {
    let Some((client, guard)) = support::sshd().await else {
        return;
    };
    let anchor = guard
        .0
        .join("e/sub/.syncengine-tmp-anchor-0123456789abcdee");
    fs::create_dir_all(&anchor).unwrap();
    fs::write(guard.0.join("top.txt"), "x").unwrap();
    set_age(&anchor, Duration::from_secs(3 * 24 * 3600));
    let _: Vec<_> = client.list(None).collect().await;
    assert_eq!(client.remove_stale_temps().await.unwrap(), 1);
    assert!(!anchor.exists());
    assert!(
        guard.0.join("e/sub").is_dir(),
        "the user's empty folder e/sub was removed with the stale anchor"
    );
}
