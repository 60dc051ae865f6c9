//! A side that cannot be reached or logged into is its own failure (issue 9): the run checks
//! each side before it reads anything else and exits 4, naming the side and the cause, with
//! nothing changed and no state created.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

#[path = "support/cli.rs"]
mod cli;

/// A port nothing listens on: one just bound and released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs `sync <local> <remote>` with `env`; returns (exit code, stderr).
fn sync_with(local: &Path, remote: &str, state: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(cli::BIN);
    cmd.arg("sync")
        .arg(local)
        .arg(remote)
        .arg("--state-dir")
        .arg(state)
        .arg("--json")
        .env_remove("RUST_LOG")
        .env_remove("AWS_CA_BUNDLE")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    if !out.status.success() {
        // A run that never started prints no summary, only its error and exit status.
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(
            v.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["error", "exit_status"],
            "{v}"
        );
        assert_eq!(v["exit_status"], out.status.code().unwrap(), "{v}");
    }
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A local folder with one file, and a state directory that must stay empty.
fn local_side() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("only-copy.txt"), "precious").unwrap();
    let state = tmp.path().join("state");
    (tmp, local, state)
}

/// Nothing was created in the state directory and the local file is as it was.
fn assert_nothing_changed(local: &Path, state: &Path) {
    assert_eq!(
        std::fs::read_to_string(local.join("only-copy.txt")).unwrap(),
        "precious"
    );
    let entries: Vec<_> = std::fs::read_dir(local).unwrap().collect();
    assert_eq!(entries.len(), 1, "nothing written into the local root");
    let state_files = std::fs::read_dir(state).map_or(0, |d| d.count());
    assert_eq!(state_files, 0, "no state for a run that never started");
}

#[cfg(feature = "sftp")]
#[test]
fn an_sftp_server_that_refuses_connections_exits_4_naming_the_side() {
    let (_tmp, local, state) = local_side();
    let url = format!("sftp://me@127.0.0.1:{}/data", closed_port());
    let (code, err) = sync_with(&local, &url, &state, &[]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("cannot reach the destination"), "{err}");
    assert!(err.contains("refused"), "the cause is named: {err}");
    assert_nothing_changed(&local, &state);
}

#[cfg(feature = "webdav")]
#[test]
fn a_webdav_server_that_refuses_connections_exits_4_naming_the_side() {
    let (_tmp, local, state) = local_side();
    let url = format!("webdav://127.0.0.1:{}/data", closed_port());
    // Reversed: the unreachable side is the source.
    let out = Command::new(cli::BIN)
        .args(["sync", &url])
        .arg(&local)
        .arg("--state-dir")
        .arg(&state)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (code, err) = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("cannot reach the source"), "{err}");
    assert_nothing_changed(&local, &state);
}

/// A bucket that does not exist is not an empty root: the run exits 4 with the server's
/// reason instead of treating the side as empty. Needs moto (`scripts/test-servers.sh
/// start`); in CI a missing server fails the test.
#[cfg(feature = "s3")]
#[test]
fn a_missing_bucket_exits_4_with_the_servers_reason() {
    let endpoint = std::env::var("SYNCENGINE_TEST_S3_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:9100".to_owned());
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    if std::net::TcpStream::connect(authority).is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "moto is not running on {authority} (CI needs it)"
        );
        eprintln!("moto is not running on {authority}: skipped (scripts/test-servers.sh start)");
        return;
    }
    let (_tmp, local, state) = local_side();
    let env = [
        ("AWS_ACCESS_KEY_ID", "a"),
        ("AWS_SECRET_ACCESS_KEY", "b"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let (code, err) = sync_with(
        &local,
        "s3://no-such-bucket-syncengine/prefix",
        &state,
        &env,
    );
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("cannot reach the destination"), "{err}");
    assert!(err.contains("NoSuchBucket"), "the server's reason: {err}");
    assert_nothing_changed(&local, &state);

    // The same bucket that exists, with a prefix that does not yet: a first run fills it.
    let prefix = format!("s3://test/unreachable-{}", std::process::id());
    let (code, err) = sync_with(&local, &prefix, &state, &env);
    assert_eq!(code, 0, "a missing prefix is an empty root: {err}");
}

/// A password in a URL never reaches the terminal, even in trace logs of a failed connection.
#[cfg(all(feature = "sftp", feature = "webdav"))]
#[test]
fn passwords_in_urls_stay_out_of_errors_and_trace_logs() {
    for url in [
        format!("sftp://me:S3CRETPW@127.0.0.1:{}/data", closed_port()),
        format!("webdav://me:S3CRETPW@127.0.0.1:{}/data", closed_port()),
    ] {
        let (_tmp, local, state) = local_side();
        let out = Command::new(cli::BIN)
            .arg("sync")
            .arg(&local)
            .arg(&url)
            .arg("--state-dir")
            .arg(&state)
            .arg("-vv")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(4), "{all}");
        assert!(!all.contains("S3CRETPW"), "a password was printed: {all}");
        assert!(
            all.contains("127.0.0.1"),
            "the server is still named: {all}"
        );
    }
}

/// A server on 127.0.0.1 that accepts and holds every connection, never answering, as an
/// SFTP and a WebDAV URL, each with the timeout flag (2 s) that must bound waiting on it.
#[cfg(all(feature = "sftp", feature = "webdav"))]
fn silent_server_cases() -> [(String, [&'static str; 2]); 2] {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    [
        (
            format!("sftp://me@127.0.0.1:{port}/x"),
            ["--contimeout", "2s"],
        ),
        (format!("webdav://127.0.0.1:{port}/x"), ["--timeout", "2s"]),
    ]
}

/// A server that accepts connections and then says nothing: `--contimeout` bounds the SSH
/// handshake, `--timeout` a WebDAV request without progress; both end in exit 4, promptly.
#[cfg(all(feature = "sftp", feature = "webdav"))]
#[test]
fn a_silent_server_is_given_up_on_after_the_timeouts_given() {
    for (url, flags) in silent_server_cases() {
        let (_tmp, local, state) = local_side();
        let started = std::time::Instant::now();
        let out = Command::new(cli::BIN)
            .arg("sync")
            .arg(&local)
            .arg(&url)
            .arg("--state-dir")
            .arg(&state)
            .args(flags)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{url}: {err}");
        // Retries may repeat the wait a few times; without the flags it would be minutes.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(50),
            "{url} took {:?}: {err}",
            started.elapsed()
        );
        assert_nothing_changed(&local, &state);
    }
}

/// `cleanup` takes the same `--timeout` and `--contimeout` as `sync` (red team 11: it had
/// neither, so a silent server held it for the default 5 minutes per request, retries
/// included): on a server that accepts connections and says nothing, it gives up after the
/// timeout given, with exit 4 (unreachable, nothing removed).
#[cfg(all(feature = "sftp", feature = "webdav"))]
#[test]
fn cleanup_gives_up_on_a_silent_server_after_the_timeouts_given() {
    for (url, flags) in silent_server_cases() {
        let mut child = Command::new(cli::BIN)
            .arg("cleanup")
            .arg(&url)
            .args(flags)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A safety net, not a measurement: without the flags each wait would be minutes.
        let mut waited = 0;
        while child.try_wait().unwrap().is_none() {
            if waited > 1200 {
                child.kill().unwrap();
                panic!("{url}: cleanup still waiting after 2 minutes");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            waited += 1;
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{url}: {err}");
        assert!(err.contains("cannot reach"), "{url}: {err}");
    }
}

/// The same on S3: `--timeout` reaches object stores too (object_store's own timeouts are
/// off; a request without progress fails after it, and the side is unreachable).
#[cfg(feature = "s3")]
#[test]
fn a_silent_object_store_is_given_up_on_after_the_timeout_given() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let (_tmp, local, state) = local_side();
    let started = std::time::Instant::now();
    let out = Command::new(cli::BIN)
        .arg("sync")
        .arg(&local)
        .arg("s3://bucket/x")
        .arg("--state-dir")
        .arg(&state)
        .args(["--timeout", "2s"])
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "id")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("no progress"), "the cause is not named: {err}");
    // object_store retries twice; without the flag each wait would be 5 minutes.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(50),
        "took {:?}: {err}",
        started.elapsed()
    );
    assert_nothing_changed(&local, &state);
}

#[test]
fn a_timeout_of_nothing_is_a_usage_error() {
    let (_tmp, local, state) = local_side();
    let other = local.with_file_name("other");
    for flag in ["--timeout", "--contimeout"] {
        let out = Command::new(cli::BIN)
            .arg("sync")
            .arg(&local)
            .arg(&other)
            .arg("--state-dir")
            .arg(&state)
            .args([flag, "0s"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} 0s");
    }
}

/// Credentials that were given but cannot be used are a side that cannot be logged into
/// (exit 4, the variable and the cause named), not a usage error (exit 2: the command line
/// is right). Here `GOOGLE_APPLICATION_CREDENTIALS` points at a file that is not JSON, with
/// fake-gcs-server as the endpoint (the run never gets as far as asking it).
#[cfg(feature = "gcs")]
#[test]
fn unparsable_google_credentials_exit_4_naming_the_variable() {
    let endpoint = std::env::var("SYNCENGINE_TEST_GCS_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:4443".to_owned());
    let (tmp, local, state) = local_side();
    let key = tmp.path().join("adc.json");
    std::fs::write(&key, "this is not a key file").unwrap();
    let key = key.to_str().unwrap();
    let env = [
        ("GOOGLE_APPLICATION_CREDENTIALS", key),
        ("GOOGLE_BASE_URL", endpoint.as_str()),
        ("GOOGLE_ALLOW_HTTP", "true"),
    ];
    let (code, err) = sync_with(&local, "gs://test/unparsable-adc", &state, &env);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("cannot reach the destination"), "{err}");
    assert!(err.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{err}");
    assert!(err.contains(key), "the file is named: {err}");
    assert!(err.contains("decode"), "the cause is named: {err}");
    assert_nothing_changed(&local, &state);
}
