//! Red-team (issue 8, round 3): the checked replace (`WriteMode::IfUnchanged`) on an SFTP
//! server *with* `posix-rename@openssh.com` — OpenSSH, the common case.
//!
//! f0675d5 made the portable replace (servers without posix-rename) check the file it moved
//! aside, so a save landing after the check is put back. With posix-rename, `rename_replace`
//! still does check-then-rename: `write_opts` lstat's the target (still the listed version),
//! then `posix-rename` replaces whatever is there one round trip later. A file the server's
//! user saves between the two is replaced and is nowhere: not at its path, not in the trash
//! (which got the listed version before the upload).
//!
//! Found by a SIGKILL campaign over sshd (scripts/kill_campaign.py with an SFTP side, seed
//! 4242: 2 of 1859 versions written on the server lost), made deterministic here with a TCP
//! proxy adding 15 ms each way (a server across a continent is slower).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use syncengine_backend_local::LocalClient;
use syncengine_backend_sftp::SftpBuilder;
use syncengine_core::{SyncEngine, SyncMode, SyncPair};

use support::{Server, contents};

const DELAY: Duration = Duration::from_millis(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_after_the_check_survives_a_posix_rename_replace() {
    if !support::available(Server::Sshd) {
        return;
    }
    let port = support::start_delay_proxy(Server::Sshd.port(), DELAY);
    let name = support::fresh_name();
    let remote_dir = Server::Sshd.local_root(&name);
    let _cleanup = support::Cleanup(remote_dir.clone());
    let tmp = tempfile::tempdir().unwrap();
    let known_hosts = tmp.path().join("known_hosts");
    fs::write(&known_hosts, "").unwrap();
    let sftp = SftpBuilder::new()
        .with_url(format!(
            "sftp://{}@127.0.0.1:{port}{}",
            Server::Sshd.user(),
            Server::Sshd.remote_root(&name)
        ))
        .with_key_file(support::keys_dir().join("client_ed25519"))
        .with_known_hosts(&known_hosts)
        .with_trust_on_first_use(true)
        .with_agent(false)
        .with_max_sessions(1)
        .build()
        .unwrap();

    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("doc.txt"), "version 1").unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(sftp),
        SyncMode::TwoWay,
    );
    engine.sync_pair(&pair).await.unwrap();
    let remote = remote_dir.join("doc.txt");
    assert_eq!(fs::read_to_string(&remote).unwrap(), "version 1");

    let mut lost = Vec::new();
    // The save lands 2.5, 3 or 3.5 one-way delays after the temp file got its mtime: after the
    // lstat check reached the server (~2 delays), before the posix-rename does (~4 delays).
    for (round, tenths) in [25u32, 30, 35].into_iter().enumerate() {
        // The source's edit, with a distinctive mtime: the temp file gets it with `setstat`,
        // right before the check.
        fs::write(
            src.join("doc.txt"),
            format!("laptop edit {round}, longer than the rest"),
        )
        .unwrap();
        let marker = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000 + round as u64);
        fs::File::options()
            .write(true)
            .open(src.join("doc.txt"))
            .unwrap()
            .set_modified(marker)
            .unwrap();
        let saved = format!("server save {round}");
        let watcher = {
            let (dir, remote, saved) = (remote_dir.clone(), remote.clone(), saved.clone());
            thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline {
                    for e in fs::read_dir(&dir).unwrap().flatten() {
                        let n = e.file_name().to_string_lossy().into_owned();
                        if n.starts_with(".syncengine-tmp-")
                            && e.metadata().and_then(|m| m.modified()).ok() == Some(marker)
                        {
                            thread::sleep(DELAY * tenths / 10);
                            let swap = dir.join(".doc.txt.swp");
                            fs::write(&swap, &saved).unwrap();
                            fs::rename(&swap, &remote).unwrap();
                            return true;
                        }
                    }
                    thread::sleep(Duration::from_micros(300));
                }
                false
            })
        };
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert!(
            watcher.join().unwrap(),
            "the upload's temp file was never seen"
        );
        let everywhere: Vec<String> = contents(&remote_dir)
            .into_iter()
            .chain(contents(&src))
            .collect();
        if !everywhere.contains(&saved) {
            lost.push(format!(
                "round {round} (+{tenths} tenths of a delay): {stats:?}"
            ));
        }
        // A save that reached the server after the replace grabbed the listed version (a
        // late round under load) leaves that version aside, named by the run's error, and the
        // path unknown until the user removes it or puts it back: here the user removes it,
        // or the next rounds could not upload.
        for e in fs::read_dir(&remote_dir).unwrap().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(".syncengine-tmp-old-")
            {
                assert_ne!(fs::read_to_string(e.path()).unwrap(), saved);
                fs::remove_file(e.path()).unwrap();
            }
        }
        // Converge before the next round.
        engine.sync_pair(&pair).await.unwrap();
        engine.sync_pair(&pair).await.unwrap();
    }
    assert!(
        lost.is_empty(),
        "a version saved on the server after the check was replaced and is nowhere: {lost:#?}"
    );
}

/// The delete of a file the other side deleted: `Executor::remove` stats the file (still the
/// listed version), then `rename_opts` moves it to the trash (stat, mkdir of the trash folder,
/// rename) without checking what it moved. A version the server's user saves in between goes
/// to the trash, and the run reports the delete: the newest edit disappears from every live
/// folder ("a delete never destroys an edit the engine has not seen"). S3 fixed the same race
/// (red-team D1) with a conditional delete; the SFTP trash move could check the file it moved
/// and move it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_during_a_trash_move_stays_at_its_path() {
    if !support::available(Server::Sshd) {
        return;
    }
    let port = support::start_delay_proxy(Server::Sshd.port(), DELAY);
    let name = support::fresh_name();
    let remote_dir = Server::Sshd.local_root(&name);
    let _cleanup = support::Cleanup(remote_dir.clone());
    let tmp = tempfile::tempdir().unwrap();
    let known_hosts = tmp.path().join("known_hosts");
    fs::write(&known_hosts, "").unwrap();
    let sftp = SftpBuilder::new()
        .with_url(format!(
            "sftp://{}@127.0.0.1:{port}{}",
            Server::Sshd.user(),
            Server::Sshd.remote_root(&name)
        ))
        .with_key_file(support::keys_dir().join("client_ed25519"))
        .with_known_hosts(&known_hosts)
        .with_trust_on_first_use(true)
        .with_agent(false)
        .with_max_sessions(1)
        .build()
        .unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..5 {
        fs::write(src.join(format!("keep{i}.txt")), "k").unwrap();
    }
    fs::write(src.join("doc.txt"), "version 1").unwrap();
    let engine = SyncEngine::new(tmp.path().join("state"));
    let pair = SyncPair::new(
        Arc::new(LocalClient::new(&src)),
        Arc::new(sftp),
        SyncMode::TwoWay,
    );
    engine.sync_pair(&pair).await.unwrap();
    let remote = remote_dir.join("doc.txt");
    assert_eq!(fs::read_to_string(&remote).unwrap(), "version 1");

    // The laptop deletes doc.txt; the server's user saves a new version while the run moves
    // the old one to the trash: right after the trash folder is made (one round trip before
    // the rename reaches the server).
    fs::remove_file(src.join("doc.txt")).unwrap();
    let saved = "version 2, saved on the server by its user";
    let watcher = {
        let (dir, remote) = (remote_dir.clone(), remote.clone());
        thread::spawn(move || {
            let trash = dir.join(".syncengine").join("trash");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if fs::read_dir(&trash).is_ok_and(|mut d| d.next().is_some()) {
                    thread::sleep(DELAY);
                    let swap = dir.join(".doc.txt.swp");
                    fs::write(&swap, saved).unwrap();
                    fs::rename(&swap, &remote).unwrap();
                    return true;
                }
                thread::sleep(Duration::from_micros(200));
            }
            false
        })
    };
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert!(watcher.join().unwrap(), "the trash folder was never made");
    let at_path = fs::read_to_string(&remote).ok();
    assert_eq!(
        at_path.as_deref(),
        Some(saved),
        "the version saved during the delete was moved to the trash and the delete reported \
         (run: {stats:?}); the server's user finds their file gone"
    );
}
