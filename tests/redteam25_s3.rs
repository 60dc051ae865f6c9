//! Red team 25 through the real engine: `syncengine sync` of a local folder to S3 (moto,
//! behind a proxy), with the local file cut short while its upload is under way (the local
//! side streams it with `read_chunks`). Nothing short may be committed, the old object
//! stays, and the next run uploads the file as it is now.

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]
#![cfg(feature = "s3")]

#[path = "support/cli.rs"]
mod cli;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use syncengine_test_proxy::{Matcher, Proxy};

fn body(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| ((i % 251) as u8).wrapping_add(seed))
        .collect()
}

fn run(a: &Path, url: &str, endpoint: &str, state: &Path) -> std::process::Child {
    Command::new(cli::BIN)
        .args(["sync", a.to_str().unwrap(), url, "-q", "--state-dir"])
        .arg(state)
        .env("AWS_ACCESS_KEY_ID", "a")
        .env("AWS_SECRET_ACCESS_KEY", "b")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: std::process::Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    let mut t = String::from_utf8_lossy(&out.stdout).into_owned();
    t.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), t)
}

/// The object's bytes on moto, read straight from the server (not through the proxy).
fn object(endpoint: &str, bucket_key: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args([
            "-sf",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            "a:b",
            &format!("{endpoint}/{bucket_key}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {bucket_key}: {out:?}");
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_file_cut_short_mid_upload_never_replaces_the_object() {
    let Some(endpoint) = cli::moto() else { return };
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    std::fs::create_dir(&a).unwrap();
    let state = t.path().join("state");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("rt25-{}-{nanos}", std::process::id());
    let url = format!("s3://test/{prefix}");
    let old = body(1000, 1);
    std::fs::write(a.join("big.bin"), &old).unwrap();
    let (code, out) = finish(run(&a, &url, &endpoint, &state));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(object(&endpoint, &format!("test/{prefix}/big.bin")), old);

    // A new 40 MiB version, uploaded in parts; the first part is held at the proxy.
    let size = 40 << 20;
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(a.join("big.bin"), body(size, 2)).unwrap();
    let proxy = Proxy::start(&endpoint).unwrap();
    let parts = Matcher::method("PUT").path_contains("partNumber=");
    proxy.hold(parts.clone());
    let child = run(&a, &url, &proxy.url(), &state);
    assert!(
        proxy.held_within(1, Duration::from_secs(120)).await,
        "no part upload reached the proxy"
    );
    // Cut the file to a quarter while the upload is under way, then let it go on.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(a.join("big.bin"))
        .unwrap();
    f.set_len((size / 4) as u64).unwrap();
    drop(f);
    proxy.release();
    let (code, out) = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    eprintln!("cut run: {code:?}\n{out}");
    assert_ne!(
        code,
        Some(0),
        "a run that read a short file succeeded: {out}"
    );
    assert_eq!(
        object(&endpoint, &format!("test/{prefix}/big.bin")),
        old,
        "the object was replaced by a short read: {out}"
    );

    // The next run uploads the file as it is now, whole.
    let (code, out) = finish(run(&a, &url, &endpoint, &state));
    assert_eq!(code, Some(0), "{out}");
    let got = object(&endpoint, &format!("test/{prefix}/big.bin"));
    assert_eq!(got.len(), size / 4);
    assert!(got == body(size, 2)[..size / 4], "other bytes uploaded");
}
