//! Red-team (issue 8, round 2): the portable replace on an SFTP server without
//! `posix-rename@openssh.com`, and a save that lands after the `IfUnchanged` check.
//!
//! `write_opts` with `WriteMode::IfUnchanged` uploads the temp file, sets its mtime, checks
//! (lstat) that the target is still the listed version, then `rename_replace`: a plain rename
//! (refused by OpenSSH onto an existing name), an lstat, a rename of the target aside to
//! `.syncengine-tmp-old-…`, the rename of the temp into place, and a *remove* of the file moved
//! aside. A file the user saves on the server after the check and before the aside rename —
//! three round trips — is what gets moved aside and removed: it is at neither name, and not in
//! the trash (the trash got the listed version before the upload).
//!
//! The test puts a TCP proxy with 15 ms of latency each way between the client and sshd (a
//! server on another continent is slower), watches the server's folder for the moment the
//! temp file gets its mtime, and saves the user's version a few round trips later.

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
async fn a_save_after_the_check_is_not_moved_aside_and_removed() {
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
        .with_posix_rename(false)
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

    // The source's edit, with a distinctive mtime: the temp file gets it with `setstat`, right
    // before the check.
    fs::write(src.join("doc.txt"), "version 2, edited on the laptop").unwrap();
    let marker = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(src.join("doc.txt"))
        .unwrap()
        .set_modified(marker)
        .unwrap();

    let saved = "version 3, saved on the server by its user";
    let watcher = {
        let (dir, remote) = (remote_dir.clone(), remote.clone());
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                for e in fs::read_dir(&dir).unwrap().flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with(".syncengine-tmp-")
                        && !n.contains("old-")
                        && e.metadata().and_then(|m| m.modified()).ok() == Some(marker)
                    {
                        // setstat done; the lstat check reaches the server ~2 trips later and
                        // the aside rename ~6 trips later: save in between.
                        thread::sleep(DELAY * 4);
                        let swap = dir.join(".doc.txt.swp");
                        fs::write(&swap, saved).unwrap();
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
    assert!(
        everywhere.iter().any(|c| c == saved),
        "the version saved on the server after the check was moved aside and removed: it is \
         nowhere (run: {stats:?}; server holds {:?})",
        contents(&remote_dir)
    );
}
