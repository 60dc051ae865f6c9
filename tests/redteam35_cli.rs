//! Red team 35: `syncengine sync` interrupted (SIGINT) while a filesystem mounted below its
//! source hangs (a FUSE mount whose server never answers, as a frozen network mount) ends:
//! the run is dropped where it waits (c110ce2), and the program does not then wait for good
//! on the listing thread still stuck in that mount.
//!
//! Mounting needs CAP_SYS_ADMIN and `/dev/fuse`: where the test cannot mount it says so and
//! checks nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use syncengine_core::testing::HungMount;

#[test]
fn sync_interrupted_while_a_mount_below_the_source_hangs_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, state) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("state"),
    );
    fs::create_dir_all(src.join("m")).unwrap();
    fs::create_dir_all(&dst).unwrap();
    fs::write(src.join("a.txt"), "a").unwrap();
    let Some(mut hung) = HungMount::mount(&src.join("m")) else {
        return;
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_syncengine"))
        .arg("sync")
        .arg(&src)
        .arg(&dst)
        .arg("--state-dir")
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Time to reach the mount and wait there.
    std::thread::sleep(Duration::from_secs(2));
    let still_running = child.try_wait().unwrap().is_none();
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut exited = None;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Whatever happened, the program and the calls waiting on the mount are let go.
    if exited.is_none() {
        Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    }
    hung.release();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        still_running,
        "the run did not wait on the hung mount: {stderr}"
    );
    let status = exited.unwrap_or_else(|| {
        panic!("syncengine sync did not exit after SIGINT while a mount hangs: {stderr}")
    });
    assert!(
        stderr.contains("interrupted: stopping cleanly"),
        "the SIGINT was not taken as an interruption: {stderr}"
    );
    assert!(!status.success(), "{status:?}: {stderr}");
    assert!(!dst.join("a.txt").exists(), "nothing was copied");
}
