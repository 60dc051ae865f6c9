//! SFTP locations: the server's canonical path of the root, so that spellings of one folder
//! (a symlink, a path relative to the login directory) are one pair and another server is
//! another.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Cleanup, Server, available, builder, fresh_name};
use syncengine_core::StorageClient;

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
