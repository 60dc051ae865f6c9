//! Running the `syncengine` binary, for the CLI tests. Included with
//! `#[path = "support/cli.rs"] mod cli;`.
// Each test file uses what it needs of these.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_syncengine");

/// Runs `syncengine sync <args…> --state-dir <state>`; returns (exit code, stdout + stderr).
pub fn run_sync<S: AsRef<std::ffi::OsStr>>(args: &[S], state: &Path) -> (Option<i32>, String) {
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

/// Runs `syncengine sync <a> <b> --json -q --state-dir <state> <extra…>`; returns (exit code,
/// stdout + stderr).
pub fn sync(a: &Path, b: &Path, state: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec![a.as_os_str(), b.as_os_str()];
    args.extend(
        ["--json", "-q"]
            .iter()
            .chain(extra)
            .map(std::ffi::OsStr::new),
    );
    run_sync(&args, state)
}

/// Starts a source-backup run of `src` and `dst` and SIGKILLs it after `ms` milliseconds.
pub fn killed_source_backup(src: &Path, dst: &Path, state: &Path, ms: u64) {
    let mut child = Command::new(BIN)
        .arg("sync")
        .arg(src)
        .arg(dst)
        .args(["--mode", "source-backup", "-q", "--state-dir"])
        .arg(state)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(ms));
    let _ = child.kill();
    let _ = child.wait();
}

/// Every file below `dir` (relative paths) with its size, the engine's own `.syncengine/`
/// folder left out.
pub fn disk_files(dir: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut found = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            if rel.starts_with(".syncengine") {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                found.insert(rel, e.metadata().unwrap().len());
            }
        }
    }
    found
}

/// moto's address, or `None` (with a note) when it is not running outside CI.
pub fn moto() -> Option<String> {
    let endpoint = std::env::var("SYNCENGINE_TEST_S3_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:9100".to_owned());
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    if std::net::TcpStream::connect(authority).is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "moto is not running on {authority} (CI needs it)"
        );
        eprintln!("moto is not running on {authority}: skipped (scripts/test-servers.sh start)");
        return None;
    }
    Some(endpoint)
}
