//! Running the `syncengine` binary, for the CLI tests. Included with
//! `#[path = "support/cli.rs"] mod cli;`.
// Each test file uses what it needs of these.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_syncengine");

/// Runs `syncengine sync <a> <b> --json -q --state-dir <state> <extra…>`; returns (exit code,
/// stdout + stderr).
pub fn sync(a: &Path, b: &Path, state: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("sync")
        .arg(a)
        .arg(b)
        .args(["--json", "-q"])
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}
