//! Red team 14 (issue 9), through the CLI.
//!
//! The CLI ends, before it exits, the child processes still running below it (a
//! `credential_process` the run gave up on). A shell that starts something in the background
//! and then `exec`s the tool (`helper & exec syncengine …`, a common container entrypoint)
//! hands its children to the tool: they are children of the tool's process without being
//! anything the tool started. Old code killed them.

// Test code: panicking with a message is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[path = "support/cli.rs"]
mod cli;

/// The state letter of `pid` in `/proc/<pid>/stat`, `None` when it is gone.
fn state_of(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().next().map(str::to_owned)
}

#[test]
fn a_process_the_shell_started_before_exec_is_not_ended() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"sleep 60 </dev/null >/dev/null 2>&1 & echo "$!"; exec "$0" -q sync "$1" "$2""#)
        .arg(cli::BIN)
        .arg(&src)
        .arg(&dst)
        .env("SYNCENGINE_STATE_DIR", dir.path().join("state"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pid = stdout.lines().next().unwrap().trim().to_owned();
    let state = state_of(&pid);
    // End it ourselves: our test started it.
    let _ = Command::new("kill").arg(&pid).status();
    assert!(
        out.status.success(),
        "the run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        state.as_deref().is_some_and(|s| s != "Z" && s != "X"),
        "the tool ended the shell's own background process {pid} (state {state:?})"
    );
}
