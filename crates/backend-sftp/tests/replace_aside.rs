//! The checked replace (`WriteMode::IfUnchanged`) and the portable replace (sshd with
//! `posix-rename@openssh.com` turned off). The file at the target is moved aside to
//! `.syncengine-tmp-old-<hex>-<name>` while the new one is renamed in. A checked replace
//! checks the file it moved aside (with posix-rename too), so a save that lands after the
//! first check is put back, never removed; and a file left aside (a kill between the renames)
//! is reported by listings at the path it was moved from, so the engine neither deletes the
//! other side's copy nor writes there.
//!
//! The race tests put a TCP proxy with a fixed latency between the client and sshd, watch the
//! server's folder, and save the user's version at a chosen moment of the replace.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use syncengine_backend_local::LocalClient;
use syncengine_backend_sftp::{SftpBuilder, SftpClient};
use syncengine_core::{
    Error, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncMode, SyncPair, Version,
    WriteMode, WriteOptions,
};

use support::{Cleanup, Server};

/// One-way latency of the proxy: every step of the replace is a round trip (2 × DELAY) apart.
const DELAY: Duration = Duration::from_millis(80);

/// A client without posix-rename on a fresh sshd root, through the delay proxy; the root's
/// directory on disk and its guard.
fn slow_portable_client(tmp: &Path) -> Option<(SftpClient, PathBuf, Cleanup)> {
    slow_client(tmp, false, DELAY)
}

/// A client (with `posix-rename` where `posix`) on a fresh sshd root, through a proxy adding
/// `delay` each way; the root's directory on disk and its guard.
fn slow_client(tmp: &Path, posix: bool, delay: Duration) -> Option<(SftpClient, PathBuf, Cleanup)> {
    if !support::available(Server::Sshd) {
        return None;
    }
    let port = support::start_delay_proxy(Server::Sshd.port(), delay);
    let name = support::fresh_name();
    let dir = Server::Sshd.local_root(&name);
    let known_hosts = tmp.join("known_hosts");
    fs::write(&known_hosts, "").unwrap();
    let client = SftpBuilder::new()
        .with_url(format!(
            "sftp://{}@127.0.0.1:{port}{}",
            Server::Sshd.user(),
            Server::Sshd.remote_root(&name)
        ))
        .with_key_file(support::keys_dir().join("client_ed25519"))
        .with_known_hosts(&known_hosts)
        .with_trust_on_first_use(true)
        .with_agent(false)
        .with_posix_rename(posix)
        .with_max_sessions(1)
        .build()
        .unwrap();
    Some((client, dir.clone(), Cleanup(dir)))
}

/// Names in `dir` starting with `prefix`.
fn names_with(dir: &Path, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    out.sort();
    out
}

/// Saves `content` at `path` the way editors do: a new file renamed over the old one.
fn save(path: &Path, content: &str) {
    let swap = path.with_file_name(".swap");
    fs::write(&swap, content).unwrap();
    fs::rename(&swap, path).unwrap();
}

/// Puts `doc.txt` (v1) on the server, then writes v2 over it with `IfUnchanged` of the listed
/// v1, calling `user` from a watcher thread once `moment` (polled on the root's folder) is
/// true. Returns the write's result.
async fn checked_replace_with_a_user(
    client: &SftpClient,
    dir: &Path,
    moment: impl Fn(&Path) -> bool + Send + 'static,
    user: impl FnOnce(&Path) + Send + 'static,
) -> Result<(), Error> {
    let path = RelPath::new("doc.txt").unwrap();
    let listed = client.put(&path, Bytes::from("version 1")).await.unwrap();
    // The upload's distinctive mtime: its temp file gets it (setstat) right after the check
    // (which also reads the permission bits the setstat gives it) and before the move aside.
    let marker = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let watcher = {
        let dir = dir.to_path_buf();
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if moment(&dir) {
                    user(&dir);
                    return true;
                }
                thread::sleep(Duration::from_micros(300));
            }
            false
        })
    };
    let result = client
        .write_opts(
            &path,
            syncengine_core::bytes_stream(Bytes::from("version 2, from the other side")),
            WriteOptions::default()
                .with_mode(WriteMode::IfUnchanged(Version::of(&listed)))
                .with_mtime(marker),
        )
        .await;
    assert!(
        watcher.join().unwrap(),
        "the moment for the user's save never came"
    );
    result.map(|_| ())
}

/// True once the upload's temp file has the marker mtime (its setstat reached the server).
fn temp_has_its_mtime(dir: &Path) -> bool {
    let marker = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs::read_dir(dir).unwrap().flatten().any(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        n.starts_with(".syncengine-tmp-")
            && !n.starts_with(".syncengine-tmp-old-")
            && e.metadata().and_then(|m| m.modified()).ok() == Some(marker)
    })
}

/// A save that reaches the server after the first check (lstat of the target, 2 one-way
/// trips before the setstat) and before the move aside (2 trips after it): the file moved
/// aside is not the listed version, so it is put back and the write fails as a changed file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_after_the_check_is_put_back_and_the_write_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((client, dir, _guard)) = slow_portable_client(tmp.path()) else {
        return;
    };
    let saved = "version 3, saved on the server by its user";
    let result = checked_replace_with_a_user(&client, &dir, temp_has_its_mtime, move |dir| {
        thread::sleep(DELAY);
        save(&dir.join("doc.txt"), saved);
    })
    .await;
    assert_eq!(
        fs::read_to_string(dir.join("doc.txt")).unwrap(),
        saved,
        "the user's save is not at its path (write: {result:?})"
    );
    assert!(
        matches!(result, Err(Error::PreconditionFailed { .. })),
        "{result:?}"
    );
    assert!(
        support::temp_files_below(&dir).is_empty(),
        "left behind: {:?}",
        support::temp_files_below(&dir)
    );
}

/// A save that reaches the server right after the move aside: the new file is not renamed
/// over it, the listed version cannot go back, so it stays aside and the error names it; the
/// next listing reports the path as unknown, naming the aside file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_right_after_the_move_aside_is_not_replaced_and_the_old_version_stays_named() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((client, dir, _guard)) = slow_portable_client(tmp.path()) else {
        return;
    };
    let saved = "version 3, saved on the server by its user";
    let result = checked_replace_with_a_user(
        &client,
        &dir,
        |dir| !names_with(dir, ".syncengine-tmp-old-").is_empty(),
        move |dir| save(&dir.join("doc.txt"), saved),
    )
    .await;
    assert_eq!(
        fs::read_to_string(dir.join("doc.txt")).unwrap(),
        saved,
        "the user's save was replaced (write: {result:?})"
    );
    let asides = names_with(&dir, ".syncengine-tmp-old-");
    assert_eq!(asides.len(), 1, "{asides:?}");
    assert!(asides[0].ends_with("-doc.txt"), "{asides:?}");
    assert_eq!(
        fs::read_to_string(dir.join(&asides[0])).unwrap(),
        "version 1",
        "the version moved aside is not the listed one"
    );
    let message = result.expect_err("the write succeeded").to_string();
    assert!(message.contains(&asides[0]), "{message}");
    assert_eq!(
        names_with(&dir, ".syncengine-tmp-").len(),
        1,
        "the upload's temp file was left behind"
    );

    let items: Vec<_> = client.list(None).collect().await;
    assert_eq!(items.len(), 1, "{items:?}");
    match &items[0] {
        Err(Error::Unlisted {
            path,
            contents_only: false,
            reason,
            ..
        }) => {
            assert_eq!(path, "doc.txt");
            assert!(reason.contains(&asides[0]), "{reason}");
        }
        other => panic!("doc.txt is not reported as unknown: {other:?}"),
    }
}

fn unlisted(item: &Result<syncengine_core::Entry, Error>) -> Option<(&str, bool, &str)> {
    match item {
        Err(Error::Unlisted {
            path,
            contents_only,
            reason,
            ..
        }) => Some((path.as_str(), *contents_only, reason.as_str())),
        _ => None,
    }
}

/// Listings report files left aside at the path they were moved from (in canonical order,
/// instead of a file still at that path), and those whose names do not say as their folder's
/// partly unknown contents; nothing is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_left_aside_are_reported_where_they_came_from() {
    let Some((client, guard)) = support::sshd_portable_rename().await else {
        return;
    };
    for (path, body) in [
        ("a/b.txt", "b"),
        ("a/c.txt", "c new"),
        ("a/doc.txt", "doc"),
        ("a/doc.txt.bak", "bak"),
        ("d/e.txt", "e"),
    ] {
        client
            .put(&RelPath::new(path).unwrap(), Bytes::from(body))
            .await
            .unwrap();
    }
    let a = guard.0.join("a");
    // Killed between the renames: doc.txt is only at its aside name.
    let doc_aside = a.join(".syncengine-tmp-old-0123456789abcdef-doc.txt");
    fs::rename(a.join("doc.txt"), &doc_aside).unwrap();
    // Killed before the removal: c.txt is in place, its old version aside.
    let c_aside = a.join(".syncengine-tmp-old-00000000000000aa-c.txt");
    fs::write(&c_aside, "c old").unwrap();
    // An aside file whose name does not say where it came from.
    let legacy = guard
        .0
        .join("d")
        .join(".syncengine-tmp-old-fedcba9876543210");
    fs::write(&legacy, "who knows").unwrap();

    let items: Vec<_> = client.list(None).collect().await;
    let shown: Vec<String> = items
        .iter()
        .map(|i| match (i, unlisted(i)) {
            (Ok(e), _) => e.path.to_string(),
            (_, Some((p, true, _))) => format!("?{p}/"),
            (_, Some((p, false, _))) => format!("?{p}"),
            (Err(e), None) => panic!("listing failed: {e}"),
        })
        .collect();
    assert_eq!(
        shown,
        [
            "a/b.txt",
            "?a/c.txt",
            "?a/doc.txt",
            "a/doc.txt.bak",
            "?d/",
            "d/e.txt"
        ]
    );
    let reason = |i: usize| unlisted(&items[i]).unwrap().2.to_owned();
    assert!(reason(1).contains(".syncengine-tmp-old-00000000000000aa-c.txt"));
    assert!(reason(2).contains(".syncengine-tmp-old-0123456789abcdef-doc.txt"));
    assert!(reason(4).contains(".syncengine-tmp-old-fedcba9876543210"));
    for f in [&doc_aside, &c_aside, &legacy] {
        assert!(f.exists(), "a listing removed {}", f.display());
    }
    assert_eq!(client.remove_stale_temps().await.unwrap(), 0);
    for f in [&doc_aside, &c_aside, &legacy] {
        assert!(f.exists(), "removed as a stale temp: {}", f.display());
    }
}

/// A replace killed between its renames leaves the path absent and the old version aside:
/// the next sync neither deletes the other side's copy (the path only looks deleted) nor
/// copies it back, and reports the aside file; once the user renames it back, all is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_left_aside_by_a_killed_replace_is_left_alone_and_reported() {
    let Some((sftp, guard)) = support::sshd_portable_rename().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("doc.txt"), "version 1").unwrap();
    fs::write(src.join("other.txt"), "other").unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        sftp.clone(),
        SyncMode::TwoWay,
    );
    engine.sync_pair(&pair).await.unwrap();
    let remote = guard.0.join("doc.txt");
    assert_eq!(fs::read_to_string(&remote).unwrap(), "version 1");

    let aside = guard.0.join(".syncengine-tmp-old-0123456789abcdef-doc.txt");
    fs::rename(&remote, &aside).unwrap();
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(
        fs::read_to_string(src.join("doc.txt")).ok().as_deref(),
        Some("version 1"),
        "the other side's copy was removed: {stats:?}"
    );
    assert!(!remote.exists(), "the path was written over: {stats:?}");
    assert_eq!(fs::read_to_string(&aside).unwrap(), "version 1");
    assert_eq!(stats.unknown, 1, "{stats:?}");
    assert!(
        stats
            .warnings
            .iter()
            .any(|w| w.contains(".syncengine-tmp-old-0123456789abcdef-doc.txt")),
        "{stats:?}"
    );

    fs::rename(&aside, &remote).unwrap();
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!((stats.unknown, stats.errors), (0, 0), "{stats:?}");
    assert!(stats.is_noop(), "{stats:?}");
    assert_eq!(
        fs::read_to_string(src.join("doc.txt")).unwrap(),
        "version 1"
    );
}

/// A checked replace of an unchanged file goes through and leaves no file aside; one whose
/// file was saved during the upload is refused before anything moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checked_replaces_without_posix_rename() {
    let Some((client, guard)) = support::sshd_portable_rename().await else {
        return;
    };
    let path = RelPath::new("x/doc.txt").unwrap();
    let listed = client.put(&path, Bytes::from("one")).await.unwrap();
    let checked = |v: &syncengine_core::Entry| {
        WriteOptions::default().with_mode(WriteMode::IfUnchanged(Version::of(v)))
    };
    let second = client
        .write_opts(
            &path,
            syncengine_core::bytes_stream(Bytes::from("two")),
            checked(&listed),
        )
        .await
        .unwrap();
    let file = guard.0.join("x/doc.txt");
    assert_eq!(fs::read_to_string(&file).unwrap(), "two");
    assert!(support::temp_files_below(&guard.0).is_empty());

    // The user's save since `second` was listed: another size.
    save(&file, "three, the user's");
    let err = client
        .write_opts(
            &path,
            syncengine_core::bytes_stream(Bytes::from("four")),
            checked(&second),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "three, the user's");
    assert!(support::temp_files_below(&guard.0).is_empty());

    // Removed since listed: refused too, nothing written.
    fs::remove_file(&file).unwrap();
    let err = client
        .write_opts(
            &path,
            syncengine_core::bytes_stream(Bytes::from("five")),
            checked(&second),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");
    assert!(!file.exists());
    assert!(support::temp_files_below(&guard.0).is_empty());
}

/// How a checked replace raced by a save ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// The write went through; the save came after it (and replaced it, as the user's own).
    Written,
    /// Refused as a changed file, nothing left aside (the first check, or the grabbed file
    /// did not match and was put back).
    Refused,
    /// Refused, the listed version kept at an aside name the error names (the save took the
    /// name after the grab).
    KeptAside,
}

/// A save at every moment of a checked replace, half a one-way delay apart (the first check
/// reaches the server 2 delays after the temp's setstat, the grab 4, the lookups 6, the rename
/// in 8), with posix-rename (OpenSSH's default) and without: the save is always at its path
/// afterwards, the listed version is at an aside name the error names or nowhere because the
/// user's rename replaced it (never because the replace did), and no upload temp is left.
/// With posix-rename this failed before the grab was checked (red-team S2): a save that
/// reached the server between the first check and the posix-rename was replaced and lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_at_any_moment_of_a_checked_replace_stays_at_its_path() {
    const STEP: Duration = Duration::from_micros(7_500);
    let tmp = tempfile::tempdir().unwrap();
    for posix in [true, false] {
        let Some((client, root, _guard)) = slow_client(tmp.path(), posix, STEP * 2) else {
            return;
        };
        let mut seen = Vec::new();
        for steps in 0u32..=24 {
            let folder = format!("r{steps}");
            let path = RelPath::new(format!("{folder}/doc.txt")).unwrap();
            let listed = client.put(&path, Bytes::from("version 1")).await.unwrap();
            let dir = root.join(&folder);
            let saved = format!("version 3, saved {steps} half-delays after the setstat");
            let watcher = {
                let (dir, saved) = (dir.clone(), saved.clone());
                thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while Instant::now() < deadline {
                        if temp_has_its_mtime(&dir) {
                            thread::sleep(STEP * steps);
                            save(&dir.join("doc.txt"), &saved);
                            return true;
                        }
                        thread::sleep(Duration::from_micros(300));
                    }
                    false
                })
            };
            let marker = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
            let result = client
                .write_opts(
                    &path,
                    syncengine_core::bytes_stream(Bytes::from("version 2, from the other side")),
                    WriteOptions::default()
                        .with_mode(WriteMode::IfUnchanged(Version::of(&listed)))
                        .with_mtime(marker),
                )
                .await;
            assert!(watcher.join().unwrap(), "the temp's setstat was never seen");
            let round = format!("posix-rename {posix}, save at {steps} half-delays: {result:?}");
            assert_eq!(
                fs::read_to_string(dir.join("doc.txt")).ok().as_deref(),
                Some(saved.as_str()),
                "the user's save is not at its path ({round})"
            );
            let asides = names_with(&dir, ".syncengine-tmp-old-");
            let outcome = match &result {
                Ok(_) => Outcome::Written,
                Err(Error::PreconditionFailed { .. }) => Outcome::Refused,
                Err(e) => {
                    assert_eq!(asides.len(), 1, "{round}");
                    assert!(e.to_string().contains(&asides[0]), "{round}");
                    assert_eq!(
                        fs::read_to_string(dir.join(&asides[0])).unwrap(),
                        "version 1",
                        "{round}"
                    );
                    Outcome::KeptAside
                }
            };
            if outcome != Outcome::KeptAside {
                assert!(asides.is_empty(), "left aside: {asides:?} ({round})");
            }
            assert_eq!(
                names_with(&dir, ".syncengine-tmp-").len(),
                asides.len(),
                "the upload's temp file was left behind ({round})"
            );
            seen.push(outcome);
        }
        eprintln!("posix-rename {posix}: outcomes by half-delay {seen:?}");
        // The sweep reached every phase: before the check, after the grab, after the rename.
        let mut kinds = seen.clone();
        kinds.sort();
        kinds.dedup();
        assert_eq!(
            kinds,
            [Outcome::Written, Outcome::Refused, Outcome::KeptAside],
            "posix-rename {posix}: not every phase of the replace was raced: {seen:?}"
        );
    }
}
