//! `syncengine sync --bwlimit` end to end: local to local, and to real SFTP and WebDAV
//! servers (`scripts/test-servers.sh start`; skipped with a message when they are not up).
//!
//! Each run moves 1 MiB at 256 KiB/s: the bucket starts empty and holds at most one second's
//! worth, so no run can take less than (1 MiB − 256 KiB) / 256 KiB/s = 3 s. That lower bound
//! is the assertion; how close the rate comes to the limit is measured by `bench/bwlimit.sh`.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_syncengine");
/// The least time 1 MiB can take at 256 KiB/s.
const AT_LEAST: Duration = Duration::from_secs(3);

fn big() -> Vec<u8> {
    (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Runs the binary; returns its exit code, its output and how long it took.
fn run(args: &[&str], envs: &[(&str, &Path)]) -> (Option<i32>, String, Duration) {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("RUST_LOG")
        .env("SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC", "1")
        .stdin(Stdio::null());
    for (k, v) in envs {
        c.env(k, v);
    }
    let start = Instant::now();
    let out = c.output().unwrap();
    let took = start.elapsed();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text, took)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Local to local: the destination plays the remote side, and the kernel copy between the
/// two roots does not go around the limit.
#[test]
fn local_to_local_copies_are_held_to_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, state) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("s"),
    );
    std::fs::create_dir_all(a.join("sub")).unwrap();
    std::fs::write(a.join("sub/big.bin"), big()).unwrap();
    std::fs::write(a.join("small.txt"), "small").unwrap();
    let (code, out, took) = run(
        &[
            "sync",
            s(&a),
            s(&b),
            "--state-dir",
            s(&state),
            "--bwlimit",
            "256k",
            "-q",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(std::fs::read(b.join("sub/big.bin")).unwrap(), big());
    assert_eq!(std::fs::read(b.join("small.txt")).unwrap(), b"small");
    assert!(took >= AT_LEAST, "1 MiB at 256k took {took:?}: {out}");
}

/// Two-way, local to local: a copy from the destination to the source spends DOWN.
#[test]
fn local_copies_from_the_destination_spend_down() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, state) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("s"),
    );
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(b.join("big.bin"), big()).unwrap();
    let (code, out, took) = run(
        &[
            "sync",
            s(&a),
            s(&b),
            "--state-dir",
            s(&state),
            "--bwlimit",
            "off:256k",
            "-q",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(std::fs::read(a.join("big.bin")).unwrap(), big());
    assert!(took >= AT_LEAST, "1 MiB at off:256k took {took:?}: {out}");
}

#[test]
fn a_bad_rate_is_a_usage_error_that_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    for (rate, says) in [
        ("10MB", "write 10M or 10MiB"),
        ("-1M", "negative"),
        ("", "empty"),
        ("1M:2X", "unknown unit"),
        ("08:00,512k", "timetables"),
    ] {
        let flag = format!("--bwlimit={rate}");
        let (code, out, _) = run(&["sync", s(&a), s(&b), &flag], &[]);
        assert_eq!(code, Some(2), "{rate:?}: {out}");
        assert!(out.contains(says), "{rate:?}: {out}");
    }
    assert!(!b.exists(), "a refused run created the destination");
}

fn server_up(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .is_ok()
}

fn random_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// Local to SFTP (the test sshd, which serves this machine's disk): uploads spend UP.
#[cfg(feature = "sftp")]
#[test]
fn uploads_to_sftp_are_held_to_the_limit() {
    if !server_up(2222) {
        eprintln!("sshd on 127.0.0.1:2222 is not running (scripts/test-servers.sh start): skipped");
        return;
    }
    let keys = std::path::PathBuf::from("/tmp/syncengine-test-servers/sshd");
    let tmp = tempfile::tempdir().unwrap();
    let (a, state) = (tmp.path().join("a"), tmp.path().join("s"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("big.bin"), big()).unwrap();
    let disk = std::path::PathBuf::from("/tmp/syncengine-sftp-tests").join(random_name("bwlimit"));
    let url = format!("sftp://root@127.0.0.1:2222{}", disk.display());
    let (code, out, took) = run(
        &[
            "sync",
            s(&a),
            &url,
            "--mode",
            "source-to-destination",
            "--state-dir",
            s(&state),
            "--bwlimit",
            "256k:off",
            "-q",
        ],
        &[
            ("SYNCENGINE_SFTP_KEY", &keys.join("client_ed25519")),
            ("SYNCENGINE_SFTP_KNOWN_HOSTS", &keys.join("known_hosts")),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(std::fs::read(disk.join("big.bin")).unwrap(), big());
    assert!(
        took >= AT_LEAST,
        "1 MiB to SFTP at 256k took {took:?}: {out}"
    );
    let _ = std::fs::remove_dir_all(&disk);
}

/// Local to WebDAV (Apache) spends UP; WebDAV back to another local folder spends DOWN.
#[cfg(feature = "webdav")]
#[test]
fn uploads_and_downloads_over_webdav_are_held_to_the_limit() {
    let Ok(base) = std::env::var("SYNCENGINE_TEST_WEBDAV_APACHE") else {
        eprintln!("SYNCENGINE_TEST_WEBDAV_APACHE unset: the Apache WebDAV server is not running");
        return;
    };
    let host = base.trim_start_matches("http://");
    let url = format!("webdav://dav:davpass@{host}/{}", random_name("bwlimit"));
    let tmp = tempfile::tempdir().unwrap();
    let (a, c) = (tmp.path().join("a"), tmp.path().join("c"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("big.bin"), big()).unwrap();
    let state = tmp.path().join("s");
    let sync = |from: &str, to: &str, rate: &str| {
        run(
            &[
                "sync",
                from,
                to,
                "--mode",
                "source-to-destination",
                "--state-dir",
                s(&state),
                "--bwlimit",
                rate,
                "-q",
            ],
            &[],
        )
    };
    let (code, out, took) = sync(s(&a), &url, "256k:off");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        took >= AT_LEAST,
        "1 MiB up to WebDAV at 256k took {took:?}: {out}"
    );
    let (code, out, took) = sync(&url, s(&c), "off:256k");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        took >= AT_LEAST,
        "1 MiB down from WebDAV at 256k took {took:?}: {out}"
    );
    assert_eq!(std::fs::read(c.join("big.bin")).unwrap(), big());
}

/// Ctrl-C during an overwrite that waits for tokens (4 MiB at 1 KiB/s: over an hour) stops
/// the run cleanly (exit 1, "cancelled"): the old version stays in place, no temp file is
/// left, and the next run without a limit copies the file. (An overwrite, because the old
/// version it keeps in the trash first shows when the copy is under way.)
#[test]
fn ctrl_c_while_throttled_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, state) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("s"),
    );
    std::fs::create_dir_all(&a).unwrap();
    let data: Vec<u8> = big().repeat(4);
    std::fs::write(a.join("huge.bin"), &data).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(b.join("huge.bin"), "old").unwrap();
    let mirror = ["--mode", "source-to-destination", "--state-dir", s(&state)];
    let child = Command::new(BIN)
        .args(["sync", s(&a), s(&b), "--bwlimit", "1k"])
        .args(mirror)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let temp_in_b = || {
        std::fs::read_dir(&b).is_ok_and(|d| {
            d.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".syncengine-tmp-")
            })
        })
    };
    // Until the copy is under way: the old version is kept in the trash right before it.
    let trash = b.join(".syncengine/trash");
    let kept = || {
        std::fs::read_dir(&trash)
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| d.path().join("huge.bin").exists())
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !kept() {
        assert!(
            Instant::now() < deadline,
            "the copy did not start within 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Waiting for tokens now: 4 MiB at 1 KiB/s.
    std::thread::sleep(Duration::from_secs(2));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Not a speed assertion: a run that waited for its tokens would take over an hour.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the interrupted run kept waiting for bandwidth")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cancelled"), "{err}");
    assert_eq!(std::fs::read(b.join("huge.bin")).unwrap(), b"old");
    assert!(!temp_in_b(), "a temp file was left behind");

    let mut again = vec!["sync", s(&a), s(&b), "-q"];
    again.extend(mirror);
    let (code, out, _) = run(&again, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(std::fs::read(b.join("huge.bin")).unwrap(), data);
}
