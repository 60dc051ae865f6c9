//! Interoperability with rclone on S3 (moto): the names and modification times each tool
//! writes read back the same in the other.

// Test code: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::Command;

use bytes::Bytes;
use syncengine_core::entry::nanos_to_system_time;
use syncengine_core::{RelPath, StorageClient, StorageClientExt, WriteOptions, bytes_stream};

const NAMES: [&str; 8] = [
    "a b",
    "é/ü",
    "100%",
    "a~",
    "#x",
    "it's",
    "q?",
    "日本/語.txt",
];

fn rclone(args: &[&str]) -> String {
    let out = Command::new("rclone")
        .env_remove("AWS_CA_BUNDLE") // Debian's rclone fails with it set
        .args(["--config", "/dev/null"])
        .args(args)
        .output()
        .expect("run rclone (installed by scripts/test-servers.sh install)");
    assert!(
        out.status.success(),
        "rclone {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn remote(prefix: &str) -> String {
    let (id, secret) = common::s3_keys();
    format!(
        ":s3,provider=Other,access_key_id={id},secret_access_key={secret},endpoint='{}':test/{prefix}",
        common::endpoint(common::MOTO)
    )
}

#[tokio::test]
async fn rclone_sees_our_names_and_mtimes() {
    let Some(builder) = common::moto_builder() else {
        return;
    };
    let prefix = builder.config().prefix.clone();
    let client = builder.build().unwrap();
    let mtime = nanos_to_system_time(1_600_000_000_500_000_000);
    for name in NAMES {
        client
            .write_opts(
                &RelPath::new(name).unwrap(),
                bytes_stream(Bytes::from(name)),
                WriteOptions::default().with_mtime(mtime),
            )
            .await
            .unwrap();
    }
    // `lsl`: size, date, time, name; rclone reads the `mtime` metadata for the time.
    let listing = rclone(&["lsl", &remote(&prefix)]);
    let mut names = Vec::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 4, "{line}");
        assert_eq!(
            (fields[1], &fields[2][..10]),
            ("2020-09-13", "12:26:40.5"),
            "rclone must read our mtime metadata: {line}"
        );
        names.push(fields[3..].join(" "));
    }
    names.sort();
    let mut want: Vec<String> = NAMES.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(names, want, "rclone must see the names literally");
}

#[tokio::test]
async fn we_read_rclones_names_and_mtimes() {
    let Some(builder) = common::moto_builder() else {
        return;
    };
    let builder = builder.with_mtime_from_metadata(true);
    let prefix = builder.config().prefix.clone();
    let client = builder.build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["x y.txt", "é", "100%"] {
        let file = dir.path().join(name);
        std::fs::write(&file, name).unwrap();
        // 2021-01-01T00:00:00.25Z
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_609_459_200_250);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    rclone(&["copy", dir.path().to_str().unwrap(), &remote(&prefix)]);
    let entries = client.list_all(None).await.unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, ["100%", "x y.txt", "é"]);
    for e in &entries {
        let nanos = syncengine_core::entry::system_time_to_nanos(e.mtime.unwrap());
        // rclone writes seconds through a float64: exact to well under a microsecond.
        assert!(
            (nanos - 1_609_459_200_250_000_000).abs() < 1_000,
            "{}: {nanos}",
            e.path
        );
        assert_eq!(
            client.read_to_bytes(&e.path).await.unwrap(),
            e.path.as_str()
        );
    }
}
