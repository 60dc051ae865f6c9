//! SFTP locations: the server's canonical path of the root, so that spellings of one folder
//! (a symlink, a path relative to the login directory) are one pair and another server is
//! another.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Cleanup, Server, available, builder, fresh_name};
use syncengine_core::{StorageClient, StorageClientExt};

#[tokio::test]
async fn roots_resolve_to_the_servers_canonical_path() {
    if !available(Server::Sshd) {
        return;
    }
    let name = fresh_name();
    let real = Server::Sshd.local_root(&name);
    std::fs::create_dir_all(&real).unwrap();
    let link = Server::Sshd.local_root(&format!("{name}-link"));
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let _cleanup = (Cleanup(real.clone()), Cleanup(link.clone()));

    let direct = builder(Server::Sshd, &name).build().unwrap();
    let via_link = builder(Server::Sshd, &format!("{name}-link"))
        .build()
        .unwrap();
    let at = direct.location().await.unwrap();
    assert_eq!(
        at.to_string(),
        format!("sftp://127.0.0.1:2222{}", real.display())
    );
    assert_eq!(via_link.location().await.unwrap(), at);

    // A root relative to the login directory (root's home here) is that directory's path,
    // whether or not it exists yet.
    let keys = support::keys_dir();
    let relative = syncengine_backend_sftp::SftpBuilder::new()
        .with_url(format!("sftp://root@127.0.0.1:2222/~/{name}-rel"))
        .with_key_file(keys.join("client_ed25519"))
        .with_known_hosts(keys.join("known_hosts"))
        .with_agent(false)
        .build()
        .unwrap();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let rel = relative.location().await.unwrap();
    assert_eq!(rel.path, format!("{}/{name}-rel", home.trim_matches('/')));
    assert_ne!(rel, at);

    // Another server (port) is another storage.
    if available(Server::Rclone) {
        let other = builder(Server::Rclone, &name).build().unwrap();
        let there = other.location().await.unwrap();
        assert_eq!(there.authority, "127.0.0.1:2223");
        assert_ne!(there, at);
    }
}

/// The engine tells a missing root from an empty one (a typo'd source is refused, a lost root
/// of a synced pair stops): `root_exists` follows a symlinked root, and is false for a root
/// that is not there, on both servers.
#[tokio::test]
async fn a_missing_root_is_told_from_an_empty_one() {
    for server in [Server::Sshd, Server::Rclone] {
        if !available(server) {
            continue;
        }
        let name = fresh_name();
        let real = server.local_root(&name);
        let _cleanup = Cleanup(real.clone());
        // Two names: rclone's server caches what it found missing for a while.
        let missing = builder(server, &format!("{name}-missing")).build().unwrap();
        assert!(!missing.root_exists().await.unwrap(), "{server:?}");
        let _cleanup_missing = Cleanup(server.local_root(&format!("{name}-missing")));
        // Made through the server (rclone's does not see folders made behind its back soon).
        let client = builder(server, &name).build().unwrap();
        let file = syncengine_core::RelPath::new("a.txt").unwrap();
        client.put(&file, bytes::Bytes::from("a")).await.unwrap();
        assert!(client.root_exists().await.unwrap(), "{server:?}");
        let deeper = builder(server, &format!("{name}/no/such")).build().unwrap();
        assert!(!deeper.root_exists().await.unwrap(), "{server:?}");
        if server == Server::Rclone {
            continue;
        }
        let link = server.local_root(&format!("{name}-link"));
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let _cleanup_link = Cleanup(link);
        let via_link = builder(server, &format!("{name}-link")).build().unwrap();
        assert!(via_link.root_exists().await.unwrap(), "{server:?}");
    }
}
