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

/// Behaviour 1: in a backup mode, files the source deleted stay deleted there ("deleted photos
/// never come back to the source"). Accepting a new destination root forgets the whole base,
/// settled deletions included, so the run after `--accept-new-root destination` downloads
/// every photo the source had deleted back to it. The source's deletions are facts about the
/// source root, which did not change. A plausible path there: the user empties the trash with
/// `rm -rf <dest>/.syncengine`, the next run stops (exit 3, no id file) and says to accept.
#[test]
fn accepting_a_new_destination_root_does_not_bring_back_what_the_source_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, state) = (
        tmp.path().join("phone"),
        tmp.path().join("nas"),
        tmp.path().join("state"),
    );
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    for i in 1..=6 {
        std::fs::write(a.join(format!("IMG_{i}.JPG")), format!("photo {i}")).unwrap();
    }
    let sb = |extra: &[&str]| {
        let mut args = vec![
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--mode",
            "source-backup",
            "-q",
        ];
        args.extend_from_slice(extra);
        sync(&args, &state)
    };
    assert_eq!(sb(&[]).0, Some(0));
    std::fs::remove_file(a.join("IMG_1.JPG")).unwrap();
    std::fs::remove_file(a.join("IMG_2.JPG")).unwrap();
    assert_eq!(sb(&[]).0, Some(0));
    assert!(
        b.join("IMG_1.JPG").exists(),
        "the backup keeps deleted photos"
    );
    // The user empties the NAS's trash folder the blunt way.
    std::fs::remove_dir_all(b.join(".syncengine")).unwrap();
    let (code, out) = sb(&[]);
    assert_eq!(code, Some(3), "{out}");
    let (code, out) = sb(&["--accept-new-root", "destination"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        !a.join("IMG_1.JPG").exists() && !a.join("IMG_2.JPG").exists(),
        "photos deleted on the source came back to it after --accept-new-root destination"
    );
}
