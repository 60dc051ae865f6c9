//! Local-disk specifics the shared conformance suite cannot see: symlinks, odd names, leftover
//! temporary files, directory pruning and the on-disk shape of the tree.

// Helpers outside `#[test]` fns are test code too; clippy's in-tests allowance misses them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use syncengine_backend_local::{LocalClient, TEMP_PREFIX};
use syncengine_core::{
    ByteStream, Error, RelPath, StorageClient, StorageClientExt, WriteMode, WriteOptions,
    bytes_stream,
};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn touch(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

async fn paths(client: &LocalClient, prefix: Option<&str>) -> Vec<String> {
    client
        .list_all(prefix.map(p).as_ref())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path.into_string())
        .collect()
}

/// Every file below `dir`, found by a plain recursive walk, as sorted relative paths.
fn walk_sorted(dir: &Path, rel: &str, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type().unwrap().is_dir() {
            walk_sorted(&entry.path(), &child, out);
        } else {
            out.push(child);
        }
    }
}

/// Names of temporary files anywhere below `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    let mut all = Vec::new();
    if dir.exists() {
        walk_sorted(dir, "", &mut all);
    }
    all.into_iter()
        .filter(|path| path.rsplit('/').next().unwrap().starts_with(TEMP_PREFIX))
        .collect()
}

/// Every item of a listing: `Ok(path)`, or `Err((path, contents_only, reason))` for what the
/// listing could not see.
async fn items(
    client: &LocalClient,
    prefix: Option<&str>,
) -> Vec<Result<String, (String, bool, String)>> {
    client
        .list(prefix.map(p).as_ref())
        .map(|item| match item {
            Ok(e) => Ok(e.path.into_string()),
            Err(Error::Unlisted {
                path,
                contents_only,
                reason,
                ..
            }) => Err((path, contents_only, reason)),
            Err(e) => panic!("listing failed: {e}"),
        })
        .collect()
        .await
}

#[tokio::test]
async fn symlinks_are_reported_as_unlisted_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    touch(&root.join("real/file"), "x");
    touch(&root.join("dir-link.txt"), "x");
    touch(&dir.path().join("outside/secret"), "s");
    std::os::unix::fs::symlink(root.join("real/file"), root.join("file-link")).unwrap();
    std::os::unix::fs::symlink(root.join("outside"), root.join("dir-link")).unwrap();
    std::os::unix::fs::symlink(root.join("nowhere"), root.join("real/dangling")).unwrap();
    let client = LocalClient::new(root);

    let got = items(&client, None).await;
    let unlisted = |p: &str| Err((p.to_owned(), false, "a symlink (not followed)".to_owned()));
    assert_eq!(
        got,
        vec![
            // `dir-link` before `dir-link.txt`: the engine must know it before anything
            // at or below it.
            unlisted("dir-link"),
            Ok("dir-link.txt".to_owned()),
            unlisted("file-link"),
            Ok("outside/secret".to_owned()),
            unlisted("real/dangling"),
            Ok("real/file".to_owned()),
        ]
    );
    assert!(
        client.list_all(None).await.unwrap_err().is_unlisted(),
        "collecting stops at an unlisted item"
    );
    assert!(
        paths(&client, Some("dir-link")).await.is_empty(),
        "a prefix through a symlink lists nothing"
    );
    assert!(
        client
            .stat(&p("file-link"))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn special_files_and_vanished_entries_are_unlisted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    touch(&root.join("a"), "a");
    let status = std::process::Command::new("mkfifo")
        .arg(root.join("fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    let client = LocalClient::new(root);
    assert_eq!(
        items(&client, None).await,
        vec![
            Ok("a".to_owned()),
            Err((
                "fifo".to_owned(),
                false,
                "a special file (socket, FIFO or device)".to_owned()
            )),
        ]
    );
}

#[tokio::test]
async fn non_utf8_names_make_their_folder_partly_unknown() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(OsStr::from_bytes(b"bad-\xff-name")), "x").unwrap();
    fs::create_dir(dir.path().join(OsStr::from_bytes(b"bad-dir-\xfe"))).unwrap();
    touch(
        &dir.path()
            .join(OsStr::from_bytes(b"bad-dir-\xfe"))
            .join("inner"),
        "y",
    );
    touch(&dir.path().join("good"), "g");
    touch(&dir.path().join("sub/ok"), "g");
    fs::write(dir.path().join("sub").join(OsStr::from_bytes(b"\xe9")), "x").unwrap();
    touch(&dir.path().join("sub.txt"), "g");
    let client = LocalClient::new(dir.path());
    let got = items(&client, None).await;
    assert_eq!(got.len(), 5, "{got:?}");
    // The root's own members first, as the root's contents (key "").
    assert!(matches!(&got[0], Err((p, true, why)) if p.is_empty() && why.contains("not UTF-8")));
    assert_eq!(got[1], Ok("good".to_owned()));
    assert_eq!(got[2], Ok("sub.txt".to_owned()));
    // `sub/` right before its first member.
    assert!(
        matches!(&got[3], Err((p, true, _)) if p == "sub"),
        "{got:?}"
    );
    assert_eq!(got[4], Ok("sub/ok".to_owned()));
}

#[tokio::test]
async fn leftover_temp_files_are_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    touch(&dir.path().join("a/b"), "b");
    // What a crashed write leaves behind, at the root and below.
    touch(
        &dir.path().join(format!("{TEMP_PREFIX}0123456789abcdef")),
        "partial",
    );
    touch(
        &dir.path().join(format!("a/{TEMP_PREFIX}fedcba9876543210")),
        "partial",
    );
    let client = LocalClient::new(dir.path());
    assert_eq!(paths(&client, None).await, ["a/b"]);
    let reserved = client
        .put(&p(&format!("x/{TEMP_PREFIX}mine")), Bytes::from("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(reserved, Error::InvalidPath { .. }),
        "{reserved:?}"
    );
}

/// Sets both the modification and the access time of `path` to `age` ago.
fn age(path: &Path, age: Duration) {
    let t = std::time::SystemTime::now() - age;
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

/// Listings never remove temp files; `remove_stale_temps` removes only files in the exact temp
/// format untouched for more than a day. A younger one may be another machine's write in
/// progress; a file that only resembles the format is the user's.
#[tokio::test]
async fn only_exact_temps_older_than_a_day_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    touch(&dir.path().join("a/b"), "b");
    let day = Duration::from_secs(24 * 3600);
    let stale = dir.path().join(format!("a/{TEMP_PREFIX}0123456789abcdef"));
    let young = dir.path().join(format!("a/{TEMP_PREFIX}fedcba9876543210"));
    // Old content, but its access time says a writer created it an hour ago (a write about to
    // be renamed into place has set its mtime to the source's).
    let renaming = dir.path().join(format!("{TEMP_PREFIX}00000000000000ff"));
    let lookalikes = [
        dir.path().join(format!("a/{TEMP_PREFIX}notes.txt")),
        dir.path().join(format!("a/{TEMP_PREFIX}0123456789ABCDEF")),
        dir.path()
            .join(format!("a/{TEMP_PREFIX}old-0123456789abcdef")),
        dir.path()
            .join(format!("a/{TEMP_PREFIX}999999999-0123456789abcdef")),
    ];
    for path in [&stale, &young, &renaming].into_iter().chain(&lookalikes) {
        touch(path, "partial");
    }
    for path in [&stale].into_iter().chain(&lookalikes) {
        age(path, day + Duration::from_secs(3600));
    }
    age(&young, day - Duration::from_secs(3600));
    {
        let file = fs::File::options().write(true).open(&renaming).unwrap();
        let old = std::time::SystemTime::now() - 400 * day;
        file.set_times(fs::FileTimes::new().set_modified(old))
            .unwrap();
    }
    let client = LocalClient::new(dir.path());
    assert_eq!(paths(&client, None).await, ["a/b"]);
    assert!(
        stale.exists(),
        "a listing removed a file (a dry run lists too)"
    );
    assert_eq!(client.remove_stale_temps().await.unwrap(), 1);
    assert!(!stale.exists(), "a day-old temp file was left behind");
    assert!(young.exists(), "a temp younger than a day was removed");
    assert!(
        renaming.exists(),
        "a temp being renamed into place was removed"
    );
    for path in &lookalikes {
        assert!(path.exists(), "{} only resembles a temp", path.display());
    }
    assert_eq!(client.remove_stale_temps().await.unwrap(), 0);
}

#[tokio::test]
async fn delete_prunes_emptied_directories_but_not_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let client = LocalClient::new(&root);
    client
        .put(&p("a/b/c/file"), Bytes::from("1"))
        .await
        .unwrap();
    client.put(&p("a/keep"), Bytes::from("2")).await.unwrap();
    client.put(&p("top"), Bytes::from("3")).await.unwrap();

    client.delete(&p("a/b/c/file")).await.unwrap();
    assert!(
        !root.join("a/b").exists(),
        "emptied a/b/c and a/b are removed"
    );
    assert!(root.join("a/keep").exists(), "a still holds a file");

    client.delete(&p("a/keep")).await.unwrap();
    client.delete(&p("top")).await.unwrap();
    assert!(!root.join("a").exists());
    assert!(root.is_dir(), "the root stays even when empty");
    assert!(paths(&client, None).await.is_empty());

    // Renames prune the directories they empty too.
    client.put(&p("x/y/z"), Bytes::from("4")).await.unwrap();
    client.rename(&p("x/y/z"), &p("moved")).await.unwrap();
    assert!(!root.join("x").exists());
    assert!(root.join("moved").is_file());
}

#[tokio::test]
async fn nested_tree_lists_in_canonical_order() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["a", "a b", "a-", "a.b", "a0", "aB", "a~", "é", "#", "z"];
    // Three levels, where every level mixes files and directories with names that sort
    // differently as `name` and `name/`.
    for (i, first) in names.iter().enumerate() {
        if i % 2 == 0 {
            for (j, second) in names.iter().enumerate() {
                if j % 3 == 0 {
                    for third in ["f", "f.txt", "f-x", "f0"] {
                        touch(&dir.path().join(first).join(second).join(third), third);
                    }
                } else {
                    touch(&dir.path().join(first).join(second), second);
                }
            }
        } else {
            touch(&dir.path().join(first), first);
        }
    }
    let mut expected = Vec::new();
    walk_sorted(dir.path(), "", &mut expected);
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert!(expected.len() > 100, "the tree is big enough to matter");
    let client = LocalClient::new(dir.path());
    assert_eq!(paths(&client, None).await, expected);

    let below: Vec<String> = expected
        .iter()
        .filter(|path| path.starts_with("a/"))
        .cloned()
        .collect();
    assert_eq!(paths(&client, Some("a")).await, below);
}

#[tokio::test]
async fn big_listing_crosses_batches_and_can_stop_early() {
    let dir = tempfile::tempdir().unwrap();
    for d in 0..10 {
        for f in 0..300 {
            touch(&dir.path().join(format!("d{d}/f{f:04}")), "");
        }
    }
    let client = LocalClient::new(dir.path());
    let listed = paths(&client, None).await;
    assert_eq!(listed.len(), 3000);
    assert!(listed.is_sorted_by(|a, b| a.as_bytes() < b.as_bytes()));
    // Dropping a listing early stops the worker instead of blocking it forever.
    let first: Vec<_> = client.list(None).take(10).collect().await;
    assert_eq!(first.len(), 10);
    let again = tokio::time::timeout(Duration::from_secs(10), client.list_all(None))
        .await
        .expect("a later listing is not blocked by the dropped one")
        .unwrap();
    assert_eq!(again.len(), 3000);
}

#[tokio::test]
async fn missing_root_lists_nothing_and_writes_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("not/yet/there");
    let client = LocalClient::new(&root);
    assert!(paths(&client, None).await.is_empty());
    assert!(!root.exists(), "listing must not create the root");
    client.put(&p("f"), Bytes::from("x")).await.unwrap();
    assert!(root.join("f").is_file());
}

#[tokio::test]
async fn root_that_is_a_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    touch(&dir.path().join("file"), "x");
    let client = LocalClient::new(dir.path().join("file"));
    assert!(client.list_all(None).await.is_err());
}

#[tokio::test]
async fn failed_and_cancelled_writes_leave_no_temp_files_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let client = LocalClient::new(dir.path());
    client.put(&p("d/f"), Bytes::from("old")).await.unwrap();

    let failing: ByteStream = stream::iter(vec![
        Ok(Bytes::from(vec![1u8; 3 * 1024 * 1024])),
        Err(Error::other("test", "d/f", "boom")),
    ])
    .boxed();
    assert!(
        client
            .write_opts(&p("d/f"), failing, WriteOptions::default())
            .await
            .is_err()
    );
    assert_eq!(temp_files(dir.path()), Vec::<String>::new());

    let hanging: ByteStream = stream::iter(vec![Ok(Bytes::from(vec![2u8; 3 * 1024 * 1024]))])
        .chain(stream::pending())
        .boxed();
    let path = p("d/f");
    let write = client.write_opts(&path, hanging, WriteOptions::default());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), write)
            .await
            .is_err()
    );
    // A blocking write batch may still be running on its thread; it writes to the already
    // unlinked file, so nothing reappears.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(temp_files(dir.path()), Vec::<String>::new());
    assert_eq!(fs::read(dir.path().join("d/f")).unwrap(), b"old");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_let_exactly_one_win() {
    let dir = tempfile::tempdir().unwrap();
    let client = Arc::new(LocalClient::new(dir.path()));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .write_opts(
                        &p("race/target"),
                        bytes_stream(Bytes::from(format!("writer {i}"))),
                        WriteOptions::default().with_mode(WriteMode::Create),
                    )
                    .await
            })
        })
        .collect();
    let mut won = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(_) => won.push(i),
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one Create wins");
    let content = fs::read_to_string(dir.path().join("race/target")).unwrap();
    assert_eq!(content, format!("writer {}", won[0]));
    assert_eq!(temp_files(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn update_mode_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let client = LocalClient::new(dir.path());
    client.put(&p("f"), Bytes::from("x")).await.unwrap();
    let err = client
        .write_opts(
            &p("f"),
            bytes_stream(Bytes::from("y")),
            WriteOptions::default().with_mode(WriteMode::Update("anything".into())),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(!client.capabilities().conditional_write);
    assert_eq!(client.read_to_bytes(&p("f")).await.unwrap(), "x");
}

#[tokio::test]
async fn display_is_absolute_and_mtime_keeps_nanoseconds() {
    let client = LocalClient::new("relative/dir");
    let shown = client.to_string();
    assert!(shown.starts_with("LocalClient(/"), "{shown}");
    assert!(shown.ends_with("relative/dir)"), "{shown}");

    let dir = tempfile::tempdir().unwrap();
    let client = LocalClient::new(dir.path());
    let mtime = std::time::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
    client
        .write_opts(
            &p("t"),
            bytes_stream(Bytes::from("t")),
            WriteOptions::default().with_mtime(mtime),
        )
        .await
        .unwrap();
    assert_eq!(
        fs::metadata(dir.path().join("t"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    // Copies keep the source's mtime.
    let copied = client
        .copy_opts(&p("t"), &p("c"), Default::default())
        .await
        .unwrap();
    assert_eq!(copied.mtime, Some(mtime));
}

#[tokio::test]
async fn hostile_names_round_trip_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let client = LocalClient::new(dir.path());
    let names = [
        "sp ace",
        "qu'ote",
        "dq\"uote",
        "#hash",
        "what?",
        "100%",
        "back\\slash",
        "-dash",
        "ünï/cødé",
        "tab\there",
        "new\nline",
    ];
    for name in names {
        client.put(&p(name), Bytes::from(name)).await.unwrap();
        assert!(
            dir.path().join(name).is_file(),
            "{name:?} is stored under its own name"
        );
    }
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(paths(&client, None).await, want);
    for name in names {
        assert_eq!(client.read_to_bytes(&p(name)).await.unwrap(), name);
    }
}

/// The durability barrier the engine calls before recording copies works on a written tree
/// and on a root that does not exist yet.
#[tokio::test]
async fn sync_written_flushes_and_tolerates_a_missing_root() {
    let dir = tempfile::tempdir().unwrap();
    let missing = LocalClient::new(dir.path().join("not-yet"));
    missing.sync_written().await.unwrap();
    let client = LocalClient::new(dir.path().join("root"));
    client
        .put(&p("a/b.txt"), Bytes::from("data"))
        .await
        .unwrap();
    client.sync_written().await.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("root/a/b.txt")).unwrap(),
        b"data"
    );
}

/// The name-folding probe (issue 8, behaviour 9) is the core's, made with ordinary client
/// calls: on a Linux file system that keeps names apart it reports no folding, agrees with
/// what the client declares, and leaves neither a probe file nor its folder behind.
#[tokio::test]
async fn folding_probe_is_clean_and_reports_linux_filesystems_as_case_sensitive() {
    use syncengine_core::folding::{Folding, probe_folding};
    let dir = tempfile::tempdir().unwrap();
    let client = LocalClient::new(dir.path());
    let caps = client.capabilities();
    assert!(!caps.folding_known, "local disk is probed by the engine");
    let probed = probe_folding(&client).await.unwrap();
    assert_eq!(probed, Folding::default());
    assert_eq!(probed, Folding::declared(&caps));
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the probe left files or folders behind"
    );
    fs::create_dir(dir.path().join(".syncengine")).unwrap();
    fs::write(dir.path().join(".syncengine/root-id"), "id").unwrap();
    assert_eq!(probe_folding(&client).await.unwrap(), Folding::default());
    let left: Vec<_> = fs::read_dir(dir.path().join(".syncengine"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["root-id"], "probe files left behind");
}

/// An overwrite keeps the file's permission bits: a private file stays private, an
/// executable stays executable (issue 9, security). Old code gave every replaced file the
/// default mode (0644 under the usual umask).
#[tokio::test]
async fn overwrites_keep_the_files_permission_bits() {
    use std::os::unix::fs::PermissionsExt;
    use syncengine_core::Version;

    let dir = tempfile::tempdir().unwrap();
    let client = LocalClient::new(dir.path());
    let mode_of = |name: &str| {
        std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    for (name, mode) in [("private", 0o600), ("script.sh", 0o755), ("shared", 0o664)] {
        let path = RelPath::new(name).unwrap();
        client.put(&path, Bytes::from("v1")).await.unwrap();
        std::fs::set_permissions(dir.path().join(name), std::fs::Permissions::from_mode(mode))
            .unwrap();
        // A plain overwrite, and the checked one the engine makes.
        client.put(&path, Bytes::from("v2")).await.unwrap();
        assert_eq!(mode_of(name), mode, "{name} after an overwrite");
        let listed = client.stat(&path).await.unwrap();
        let big = Bytes::from(vec![1u8; 3 << 20]);
        client
            .write_opts(
                &path,
                syncengine_core::bytes_stream(big),
                WriteOptions::default().with_mode(WriteMode::IfUnchanged(Version::of(&listed))),
            )
            .await
            .unwrap();
        assert_eq!(mode_of(name), mode, "{name} after a checked overwrite");
    }
}

/// A delete asked for one version (`DeleteOptions::if_version`) checks the file in its folder
/// right before the unlink: a version saved since stays, and the delete fails.
#[tokio::test]
async fn a_delete_for_one_version_leaves_another() {
    let tmp = tempfile::tempdir().unwrap();
    let client = LocalClient::new(tmp.path());
    let path = RelPath::new("d/a.txt").unwrap();
    client.put(&path, Bytes::from("old")).await.unwrap();
    let checked = client.stat(&path).await.unwrap();
    // Saved again, as an editor does: a new file under the name.
    fs::write(tmp.path().join("d/a.txt.new"), b"new and longer").unwrap();
    fs::rename(tmp.path().join("d/a.txt.new"), tmp.path().join("d/a.txt")).unwrap();
    let opts = syncengine_core::DeleteOptions::default()
        .with_if_version(syncengine_core::Version::of(&checked));
    let err = client
        .delete_opts(&path, opts)
        .await
        .expect_err("another version is not deleted");
    assert!(
        matches!(err, syncengine_core::Error::PreconditionFailed { .. }),
        "{err}"
    );
    assert_eq!(
        fs::read(tmp.path().join("d/a.txt")).unwrap(),
        b"new and longer"
    );
    // The version asked for goes, and its emptied folder with it.
    let now = client.stat(&path).await.unwrap();
    let opts = syncengine_core::DeleteOptions::default()
        .with_if_version(syncengine_core::Version::of(&now));
    client.delete_opts(&path, opts).await.unwrap();
    assert!(!tmp.path().join("d").exists());
}
