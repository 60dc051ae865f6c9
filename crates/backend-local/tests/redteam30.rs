//! Red team 30: what red team 29 left by path. A trash link (`preserve`), a server-side copy
//! (`copy_opts`), a delete and the pruning of the folders it empties checked each folder
//! with `lstat` and then acted by path: a folder swapped for a symlink between the check and
//! the act led them outside the root. For a trash link that is a lost version: the trash
//! holds a file from outside (or a link to user data is planted outside), and the engine
//! then overwrites or deletes the original believing its old version is safe.
//!
//! Each race keeps swapping the top folders of the paths used (atomically, with
//! `RENAME_EXCHANGE`: the folder is never missing) for symlinks to look-alike folders outside
//! the root that hold the same names with other content, while 32 operations are in flight.
//! Whatever fails, nothing outside may be created, linked, changed or removed, and whatever
//! is made inside holds exactly the content of the file inside the root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use syncengine_backend_local::LocalClient;
use syncengine_core::{RelPath, StorageClient, StorageClientExt, TransferOptions};

/// Top folders of each kind (sources `d*`, targets `t*`).
const TOPS: usize = 4;
/// Operations in flight per round.
const PER_ROUND: usize = 32;
/// How long each symlink stays in a folder's place.
const HOLD: Duration = Duration::from_micros(200);

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn write(path: &Path, body: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
}

/// What is below `dir`, without following symlinks: each entry's kind, its content for a
/// file, and its link count (a file outside linked from inside has two).
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let rel = e
                .path()
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let md = fs::symlink_metadata(e.path()).unwrap();
            let what = if md.is_dir() {
                walk(base, &e.path(), out);
                "folder".to_owned()
            } else if md.is_file() {
                format!(
                    "file {:?}, {} links",
                    fs::read_to_string(e.path()).unwrap_or_default(),
                    md.nlink()
                )
            } else {
                "other".to_owned()
            };
            out.insert(rel, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What changed outside the root since `before`, one line each.
fn changes(before: &BTreeMap<String, String>, outside: &Path) -> Vec<String> {
    let after = snapshot(outside);
    let mut changed = Vec::new();
    for (rel, was) in before {
        match after.get(rel) {
            None => changed.push(format!("removed outside: {rel} ({was})")),
            Some(now) if now != was => {
                changed.push(format!("changed outside: {rel}: {was} -> {now}"))
            }
            Some(_) => {}
        }
    }
    for (rel, now) in &after {
        if !before.contains_key(rel) {
            changed.push(format!("made outside: {rel} ({now})"));
        }
    }
    changed
}

/// Fails with every problem found (the first 20 of them shown), and how many operations
/// succeeded (`done`) and failed.
fn assert_none(problems: &[String], done: usize, failed: usize) {
    assert!(
        problems.is_empty(),
        "{} problems ({done} operations done, {failed} failed):\n{}",
        problems.len(),
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(done > 0, "no operation succeeded at all ({failed} failed)");
}

/// Every file below `dir` (relative path, content), without following symlinks.
fn files(dir: &Path) -> Vec<(String, String)> {
    snapshot(dir)
        .into_iter()
        .filter(|(_, what)| what.starts_with("file"))
        .map(|(rel, _)| {
            let content = fs::read_to_string(dir.join(&rel)).unwrap();
            (rel, content)
        })
        .collect()
}

/// A root whose top folders `names` each have a look-alike of the same name in `outside`,
/// and the folder `spare` that holds the symlinks to them while they are not swapped in.
struct Tree {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    spare: PathBuf,
    names: Vec<String>,
}

impl Tree {
    fn new(names: &[&str]) -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let (root, outside, spare) = (
            tmp.path().join("root"),
            tmp.path().join("outside"),
            tmp.path().join("spare"),
        );
        fs::create_dir_all(&spare).unwrap();
        for name in names {
            fs::create_dir_all(root.join(name)).unwrap();
            fs::create_dir_all(outside.join(name)).unwrap();
            std::os::unix::fs::symlink(outside.join(name), spare.join(name)).unwrap();
        }
        Tree {
            _tmp: tmp,
            root,
            outside,
            spare,
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    /// Runs `op(round, k)` `PER_ROUND` times at once per round, for `rounds` rounds, while a
    /// thread keeps exchanging each top folder with its symlink (`RENAME_EXCHANGE`, so the
    /// path is always the folder or the symlink) and back, each symlink in place for
    /// [`HOLD`]. Every folder is back in the root when this returns. Returns each
    /// operation's result, by (round, k).
    async fn race<T, F, Fut>(
        &self,
        rounds: usize,
        op: F,
    ) -> Vec<((usize, usize), Result<T, String>)>
    where
        T: Send + 'static,
        F: Fn(usize, usize) -> Fut,
        Fut: std::future::Future<Output = syncengine_core::Result<T>> + Send + 'static,
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = std::thread::spawn({
            let (root, spare, names, stop) = (
                self.root.clone(),
                self.spare.clone(),
                self.names.clone(),
                stop.clone(),
            );
            move || {
                let mut swaps = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for name in &names {
                        let (top, link) = (root.join(name), spare.join(name));
                        renameat_with(CWD, &top, CWD, &link, RenameFlags::EXCHANGE).unwrap();
                        swaps += 1;
                        std::thread::sleep(HOLD);
                        renameat_with(CWD, &top, CWD, &link, RenameFlags::EXCHANGE).unwrap();
                        std::thread::yield_now();
                    }
                }
                swaps
            }
        });
        let mut results = Vec::new();
        for round in 0..rounds {
            let ops = (0..PER_ROUND).map(|k| tokio::spawn(op(round, k)));
            for (k, done) in futures::future::join_all(ops).await.into_iter().enumerate() {
                results.push(((round, k), done.unwrap().map_err(|e| e.to_string())));
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(swapper.join().unwrap() > 0);
        for name in &self.names {
            assert!(fs::symlink_metadata(self.root.join(name)).unwrap().is_dir());
        }
        results
    }
}

/// The source of operation `k` of `round`, its content inside the root and its look-alike's
/// outside.
fn source(round: usize, k: usize) -> (String, String, String) {
    (
        format!("d{}/b/c/f{round}-{k}", k % TOPS),
        format!("inside {round}-{k}"),
        format!("outside {round}-{k}"),
    )
}

/// The target of operation `k` of `round`, in a folder made for the round.
fn target(round: usize, k: usize) -> String {
    format!("t{}/b/c/r{round}/f{k}", k % TOPS)
}

/// The sources inside the root and their look-alikes outside (`d*/b/c/…`), and the folders
/// that hold the targets inside and outside (`t*/b/c`, empty).
fn sources(rounds: usize) -> Tree {
    let tree = Tree::new(&["d0", "d1", "d2", "d3", "t0", "t1", "t2", "t3"]);
    for round in 0..rounds {
        for k in 0..PER_ROUND {
            let (from, inside, outside) = source(round, k);
            write(&tree.root.join(&from), &inside);
            write(&tree.outside.join(&from), &outside);
        }
    }
    for i in 0..TOPS {
        fs::create_dir_all(tree.root.join(format!("t{i}/b/c"))).unwrap();
        fs::create_dir_all(tree.outside.join(format!("t{i}/b/c"))).unwrap();
    }
    tree
}

/// The files in the target folders inside the root that are not named as a target or do
/// not hold the content of their source inside the root.
fn targets_not_holding_the_sources_inside(tree: &Tree, what: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for i in 0..TOPS {
        let top = format!("t{i}");
        for (rel, content) in files(&tree.root.join(&top)) {
            let parsed = rel
                .strip_prefix("b/c/r")
                .and_then(|rest| rest.split_once("/f"))
                .and_then(|(r, k)| Some((r.parse().ok()?, k.parse().ok()?)));
            let Some((round, k)) = parsed else {
                problems.push(format!("{top}/{rel}: not a {what} this test made"));
                continue;
            };
            let (from, inside, _) = source(round, k);
            if content != inside {
                problems.push(format!(
                    "{top}/{rel}, the {what} of {from}, holds {content:?}, not the file inside \
                     the root"
                ));
            }
        }
    }
    problems
}

/// 32 trash links in flight from nested folders into new nested folders while the top
/// folders of both are swapped for symlinks to look-alikes outside the root: no file
/// outside may be linked into the trash, no link or folder planted outside, and each link
/// `preserve` returns must be the file at `from` inside the root (its `Entry` too: the engine
/// takes it for the old version it is about to overwrite or delete).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trash_links_racing_folder_swaps_hold_the_file_inside() {
    const ROUNDS: usize = 300;
    let tree = sources(ROUNDS);
    let before = snapshot(&tree.outside);
    let client = Arc::new(LocalClient::new(&tree.root));
    let results = tree
        .race(ROUNDS, |round, k| {
            let client = client.clone();
            async move {
                let (from, to) = (p(&source(round, k).0), p(&target(round, k)));
                client.preserve(&from, &to).await
            }
        })
        .await;
    let mut problems = changes(&before, &tree.outside);
    let mut kept = 0;
    for ((round, k), result) in &results {
        let (from, inside, _) = source(*round, *k);
        let to = target(*round, *k);
        let original = fs::symlink_metadata(tree.root.join(&from)).unwrap();
        if fs::read_to_string(tree.root.join(&from)).unwrap() != inside {
            problems.push(format!("{from} changed"));
        }
        let Ok(entry) = result else { continue };
        kept += 1;
        let Ok(at_to) = fs::symlink_metadata(tree.root.join(&to)) else {
            problems.push(format!("{to}: preserve returned Ok, and nothing is there"));
            continue;
        };
        if at_to.ino() != original.ino() {
            problems.push(format!("{to} is not a link of {from}"));
        }
        if entry.file_id != Some(original.ino()) || entry.size != inside.len() as u64 {
            problems.push(format!(
                "{to}: preserve's entry describes another file than {from}"
            ));
        }
    }
    problems.extend(targets_not_holding_the_sources_inside(&tree, "trash link"));
    assert_none(&problems, kept, results.len() - kept);
}

/// The same for server-side copies (`copy_opts`): the source was opened by path, the
/// target's folders made and its temporary file created and renamed by path.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_racing_folder_swaps_copy_nothing_from_or_to_outside() {
    const ROUNDS: usize = 300;
    let tree = sources(ROUNDS);
    let before = snapshot(&tree.outside);
    let client = Arc::new(LocalClient::new(&tree.root));
    let results = tree
        .race(ROUNDS, |round, k| {
            let client = client.clone();
            async move {
                let (from, to) = (p(&source(round, k).0), p(&target(round, k)));
                client
                    .copy_opts(&from, &to, TransferOptions::default())
                    .await
            }
        })
        .await;
    let mut problems = changes(&before, &tree.outside);
    let mut copied = 0;
    for ((round, k), result) in &results {
        let (from, inside, _) = source(*round, *k);
        let to = target(*round, *k);
        if fs::read_to_string(tree.root.join(&from)).unwrap() != inside {
            problems.push(format!("{from} changed"));
        }
        if result.is_ok() {
            copied += 1;
            if !tree.root.join(&to).is_file() {
                problems.push(format!("{to}: copy_opts returned Ok, and nothing is there"));
            }
        }
    }
    problems.extend(targets_not_holding_the_sources_inside(&tree, "copy"));
    assert_none(&problems, copied, results.len() - copied);
}

/// 32 deletes in flight, each round emptying a folder of its own (`d*/b/c/r<round>`), while
/// the top folders are swapped for symlinks to look-alikes outside that hold, in even
/// rounds, the same folder empty (which pruning by path removed) and in odd ones the same
/// files (which a delete by path removed). Nothing outside may go; what a delete removed is
/// gone inside, what a failed one did not is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_racing_folder_swaps_remove_nothing_outside() {
    const ROUNDS: usize = 300;
    let tree = Tree::new(&["d0", "d1", "d2", "d3"]);
    let file = |round: usize, k: usize| format!("d{}/b/c/r{round}/f{k}", k % TOPS);
    for i in 0..TOPS {
        // Pruning stops at `c`, which the race then keeps swapping.
        write(&tree.root.join(format!("d{i}/b/c/keep")), "keep");
        write(&tree.outside.join(format!("d{i}/b/c/keep")), "keep");
    }
    for round in 0..ROUNDS {
        for k in 0..PER_ROUND {
            write(&tree.root.join(file(round, k)), "inside");
            if round % 2 == 1 {
                write(&tree.outside.join(file(round, k)), "outside");
            } else {
                fs::create_dir_all(tree.outside.join(file(round, k)).parent().unwrap()).unwrap();
            }
        }
    }
    let before = snapshot(&tree.outside);
    let client = Arc::new(LocalClient::new(&tree.root));
    let results = tree
        .race(ROUNDS, |round, k| {
            let client = client.clone();
            async move { client.delete(&p(&file(round, k))).await }
        })
        .await;
    let mut problems = changes(&before, &tree.outside);
    let mut deleted = 0;
    for ((round, k), result) in &results {
        let (rel, at) = (file(*round, *k), tree.root.join(file(*round, *k)));
        match result {
            Ok(()) => {
                deleted += 1;
                if fs::symlink_metadata(&at).is_ok() {
                    problems.push(format!("{rel}: deleted, and still there"));
                }
            }
            Err(_) if fs::read_to_string(&at).ok().as_deref() != Some("inside") => {
                problems.push(format!("{rel}: not deleted, and gone"));
            }
            Err(_) => {}
        }
    }
    assert_none(&problems, deleted, results.len() - deleted);
}

/// 32 overwrites in flight of files inside the root (bits `0o600`) whose look-alikes outside
/// have other bits (`0o755`), while the top folders are swapped: an overwrite keeps the
/// bits of the file it replaces, which were read by path (after the folder's lookup), so a
/// swap between the two gave the new version the bits of the file outside (a private file
/// made world-readable and executable).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overwrites_racing_folder_swaps_keep_the_bits_of_the_file_inside() {
    use std::os::unix::fs::PermissionsExt;
    const ROUNDS: usize = 300;
    let tree = sources(ROUNDS);
    for round in 0..ROUNDS {
        for k in 0..PER_ROUND {
            let from = source(round, k).0;
            let bits =
                |at: PathBuf, mode| fs::set_permissions(at, fs::Permissions::from_mode(mode));
            bits(tree.root.join(&from), 0o600).unwrap();
            bits(tree.outside.join(&from), 0o755).unwrap();
        }
    }
    let before = snapshot(&tree.outside);
    let client = Arc::new(LocalClient::new(&tree.root));
    let results = tree
        .race(ROUNDS, |round, k| {
            let client = client.clone();
            async move {
                let from = p(&source(round, k).0);
                client
                    .put(&from, bytes::Bytes::from(format!("new {round}-{k}")))
                    .await
            }
        })
        .await;
    let mut problems = changes(&before, &tree.outside);
    let mut written = 0;
    for ((round, k), result) in &results {
        let (from, inside, _) = source(*round, *k);
        let at = tree.root.join(&from);
        let content = fs::read_to_string(&at).unwrap();
        let expected = if result.is_ok() {
            written += 1;
            format!("new {round}-{k}")
        } else {
            inside
        };
        if content != expected {
            problems.push(format!("{from} holds {content:?}, not {expected:?}"));
        }
        let mode = fs::metadata(&at).unwrap().permissions().mode() & 0o7777;
        if mode != 0o600 {
            problems.push(format!("{from} has the bits {mode:o}, not 600"));
        }
    }
    assert_none(&problems, written, results.len() - written);
}

mod unchanged {
    //! What these operations do without any race stays as it was.

    use super::*;

    /// A trash link is a second name of the very file: same inode, content, size and
    /// mtime, in folders made for it; the source stays.
    #[tokio::test]
    async fn a_trash_link_is_the_source_file() {
        let tree = Tree::new(&["a"]);
        write(&tree.root.join("a/b/f"), "old version");
        let kept = LocalClient::new(&tree.root)
            .preserve(&p("a/b/f"), &p(".syncengine/trash/x/a/b/f"))
            .await
            .unwrap();
        let (src, dst) = (
            fs::metadata(tree.root.join("a/b/f")).unwrap(),
            fs::metadata(tree.root.join(".syncengine/trash/x/a/b/f")).unwrap(),
        );
        assert_eq!(kept.path.as_str(), ".syncengine/trash/x/a/b/f");
        assert_eq!((dst.dev(), dst.ino()), (src.dev(), src.ino()));
        assert_eq!(kept.file_id, Some(src.ino()));
        assert_eq!(kept.size, 11);
        assert_eq!(kept.mtime, Some(src.modified().unwrap()));
        assert_eq!(src.nlink(), 2);
        assert_eq!(
            fs::read_to_string(tree.root.join("a/b/f")).unwrap(),
            "old version"
        );
    }

    /// What `preserve` refuses: a missing source (`NotFound`, and no folder is made for
    /// it), a symlink at the source (`NotFound`: symlinks are not synced), a target that
    /// exists (`AlreadyExists`, left as it is).
    #[tokio::test]
    async fn a_trash_link_refuses_as_before() {
        let tree = Tree::new(&["a"]);
        let client = LocalClient::new(&tree.root);
        let missing = client.preserve(&p("a/gone"), &p("t/x/gone")).await;
        assert!(missing.unwrap_err().is_not_found());
        assert!(!tree.root.join("t").exists(), "folders made for nothing");
        let missing_folder = client.preserve(&p("a/no/gone"), &p("t/x/gone")).await;
        assert!(missing_folder.unwrap_err().is_not_found());
        write(&tree.outside.join("a/secret"), "outside");
        std::os::unix::fs::symlink(tree.outside.join("a/secret"), tree.root.join("a/link"))
            .unwrap();
        let link = client.preserve(&p("a/link"), &p("t/x/link")).await;
        assert!(link.unwrap_err().is_not_found());
        assert!(!tree.root.join("t/x/link").exists());
        write(&tree.root.join("a/f"), "f");
        write(&tree.root.join("t/x/f"), "there");
        let exists = client.preserve(&p("a/f"), &p("t/x/f")).await.unwrap_err();
        assert!(
            matches!(exists, syncengine_core::Error::AlreadyExists { .. }),
            "{exists}"
        );
        assert_eq!(
            fs::read_to_string(tree.root.join("t/x/f")).unwrap(),
            "there"
        );
    }

    /// A server-side copy holds the source's bytes, mtime and permission bits, in folders
    /// made for it; with overwrite it replaces the target, without it fails on one.
    #[tokio::test]
    async fn a_copy_holds_the_bytes_mtime_and_bits() {
        use std::os::unix::fs::PermissionsExt;
        let tree = Tree::new(&["a"]);
        let src = tree.root.join("a/f");
        write(&src, "the content");
        fs::set_permissions(&src, fs::Permissions::from_mode(0o640)).unwrap();
        let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        fs::File::options()
            .write(true)
            .open(&src)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let client = LocalClient::new(&tree.root);
        let copied = client
            .copy_opts(&p("a/f"), &p("x/y/g"), TransferOptions::default())
            .await
            .unwrap();
        let at = tree.root.join("x/y/g");
        let md = fs::metadata(&at).unwrap();
        assert_eq!(fs::read_to_string(&at).unwrap(), "the content");
        assert_eq!(md.modified().unwrap(), mtime);
        assert_eq!(md.permissions().mode() & 0o777, 0o640);
        assert_ne!(md.ino(), fs::metadata(&src).unwrap().ino());
        assert_eq!(copied.path.as_str(), "x/y/g");
        assert_eq!(copied.size, 11);
        assert_eq!(copied.mtime, Some(mtime));
        assert_eq!(copied.file_id, Some(md.ino()));
        // Onto an existing file: refused without overwrite, replaced with it (the source's
        // bits, not the replaced file's).
        write(&tree.root.join("x/y/h"), "old");
        fs::set_permissions(tree.root.join("x/y/h"), fs::Permissions::from_mode(0o600)).unwrap();
        let refused = client
            .copy_opts(&p("a/f"), &p("x/y/h"), TransferOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(refused, syncengine_core::Error::AlreadyExists { .. }),
            "{refused}"
        );
        assert_eq!(fs::read_to_string(tree.root.join("x/y/h")).unwrap(), "old");
        client
            .copy_opts(
                &p("a/f"),
                &p("x/y/h"),
                TransferOptions::default().with_overwrite(true),
            )
            .await
            .unwrap();
        let replaced = fs::metadata(tree.root.join("x/y/h")).unwrap();
        assert_eq!(
            fs::read_to_string(tree.root.join("x/y/h")).unwrap(),
            "the content"
        );
        assert_eq!(replaced.permissions().mode() & 0o777, 0o640);
        let missing = client
            .copy_opts(&p("a/gone"), &p("x/y/gone"), TransferOptions::default())
            .await;
        assert!(missing.unwrap_err().is_not_found());
        // No temporary file is left anywhere.
        assert_eq!(
            files(&tree.root.join("x"))
                .into_iter()
                .map(|(rel, _)| rel)
                .collect::<Vec<_>>(),
            vec!["y/g".to_owned(), "y/h".to_owned()]
        );
    }

    /// A delete prunes the folders it empties up to (not including) the root, and stops at
    /// one that holds anything; an overwrite keeps the replaced file's bits.
    #[tokio::test]
    async fn deletes_prune_and_overwrites_keep_bits_as_before() {
        use std::os::unix::fs::PermissionsExt;
        let tree = Tree::new(&["a"]);
        let client = LocalClient::new(&tree.root);
        write(&tree.root.join("a/b/c/f"), "f");
        write(&tree.root.join("a/keep"), "keep");
        client.delete(&p("a/b/c/f")).await.unwrap();
        assert!(!tree.root.join("a/b").exists());
        assert!(tree.root.join("a/keep").is_file());
        client.delete(&p("a/keep")).await.unwrap();
        assert!(!tree.root.join("a").exists());
        assert!(tree.root.is_dir());
        write(&tree.root.join("p/q"), "old");
        fs::set_permissions(tree.root.join("p/q"), fs::Permissions::from_mode(0o604)).unwrap();
        client
            .put(&p("p/q"), bytes::Bytes::from_static(b"new"))
            .await
            .unwrap();
        let md = fs::metadata(tree.root.join("p/q")).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o604);
        assert_eq!(fs::read_to_string(tree.root.join("p/q")).unwrap(), "new");
    }
}
