//! Red-team cases (issue 8, round 2) through the `syncengine` binary.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_syncengine");

/// Runs `syncengine sync <args>` and returns (exit code, stdout + stderr).
fn sync(args: &[&str], state: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("sync")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// A password given in a WebDAV or SFTP URL (the WebDAV builder takes `user:password@` as
/// credentials) must never be printed. The usage errors for a `--trash-dir`/`--backup-dir`
/// inside a remote root, and for nested remote roots (red-team R2's fix), echo the raw URLs,
/// password and all, to stderr — and from there into CI logs and terminal scrollback. No
/// server is contacted: these checks run before any connection.
#[test]
fn usage_errors_never_print_a_password_from_a_url() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let local = local.to_str().unwrap();
    let state = tmp.path().join("state");
    let mut cases: Vec<Vec<String>> = Vec::new();
    #[cfg(feature = "webdav")]
    {
        let root = "webdav://dav:S3CRETPW@127.0.0.1:8082/syncengine-tests/leak";
        cases.push(vec![
            local.into(),
            root.into(),
            "--trash-dir".into(),
            format!("{root}/trash"),
        ]);
        cases.push(vec![
            local.into(),
            root.into(),
            "--backup-dir".into(),
            format!("{root}/old"),
        ]);
        cases.push(vec![root.into(), format!("{root}/inner")]);
    }
    #[cfg(feature = "sftp")]
    {
        let root = "sftp://me:S3CRETPW@127.0.0.1:2222/tmp/leak";
        cases.push(vec![
            local.into(),
            root.into(),
            "--trash-dir".into(),
            format!("{root}/trash"),
        ]);
    }
    for args in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, text) = sync(&args, &state);
        assert_eq!(code, Some(2), "{args:?}: {text}");
        assert!(
            !text.contains("S3CRETPW"),
            "{args:?}: the password is printed: {text}"
        );
    }
}
