//! Secrets stay out of everything the CLI prints, and redaction never alters what it must
//! not (red team 10, issue 9).
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

#[path = "support/cli.rs"]
mod cli;

/// A password with an unencoded `/` makes the URL unparseable, and the error that says so
/// echoed it (whole, and in pieces: `bad port "hunt"`).
#[cfg(all(feature = "sftp", feature = "webdav"))]
#[test]
fn a_password_that_breaks_its_url_is_not_echoed_by_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("a");
    std::fs::create_dir_all(&local).unwrap();
    let local = local.to_str().unwrap().to_owned();
    let cases: Vec<Vec<String>> = vec![
        vec![
            local.clone(),
            "webdav://dav:pa/SECRETPW@127.0.0.1:8082/x".into(),
        ],
        vec![
            local.clone(),
            "sftp://root:hunt/SECRETPW@127.0.0.1:2222/p".into(),
        ],
        vec![
            local.clone(),
            tmp.path().join("b").to_str().unwrap().into(),
            "--backup-dir".into(),
            "webdav://dav:my/SECRETPW@127.0.0.1:8082/b".into(),
        ],
    ];
    for args in cases {
        let (code, out) = cli::run_sync(&args, &tmp.path().join("state"));
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert!(
            !out.contains("SECRETPW"),
            "{args:?} printed the password: {out}"
        );
        assert!(
            !out.contains("hunt"),
            "{args:?} printed a piece of it: {out}"
        );
    }
}

/// Redaction applies to messages, not to the JSON text: a file name that looks like a
/// header or a signed URL neither breaks the JSON nor is altered in it.
#[test]
fn file_names_that_look_like_secrets_keep_the_json_valid_and_unaltered() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, state) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("s"),
    );
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let names = ["Authorization:x\"y", "report?sig=v2"];
    for n in names {
        std::fs::write(a.join(n), "base").unwrap();
    }
    let (code, out) = cli::sync(&a, &b, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    // Both sides change: conflicts, whose paths the JSON lists.
    for n in names {
        std::fs::write(a.join(n), "source edit").unwrap();
        std::fs::write(b.join(n), "destination edit, longer").unwrap();
    }
    let out = Command::new(cli::BIN)
        .arg("sync")
        .arg(&a)
        .arg(&b)
        .arg("--state-dir")
        .arg(&state)
        .args(["--json", "-q"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let paths: Vec<&str> = json["conflict_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for n in names {
        assert!(paths.contains(&n), "{n:?} missing or altered in {paths:?}");
    }
}
