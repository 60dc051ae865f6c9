//! Red team (round 19) on the built binary: the plan kept in temporary files.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/cli.rs"]
mod cli;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

/// Writes `count` files with long names below `root`, each holding `tag` and its number.
fn write_files(root: &Path, count: usize, tag: &str) {
    for i in 0..count {
        let path = root
            .join(format!("d{:02}", i % 4))
            .join(format!("{}{i:04}", "n".repeat(200)));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, format!("{tag} {i}")).unwrap();
    }
}

/// A plan whose temporary file cannot grow (a full disk, a file size limit) stops the run
/// before anything changes, and the error names where the file was: the state directory,
/// where the plan's temporary files go since they left the system's temporary folder. The
/// limit is a file size limit (`ulimit -f`, with SIGXFSZ ignored so the write fails with
/// EFBIG rather than killing the process), which hits the first file that grows past it:
/// the plan's, as planning writes nothing else.
#[test]
fn a_plan_file_that_cannot_grow_names_the_state_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, state) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("state"),
    );
    write_files(&src, 400, "old");
    let (code, out) = cli::sync(&src, &dst, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    write_files(&src, 400, "edited");
    let before = cli::disk_files(&dst);
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 64; exec \"$@\"")
        .arg("sh")
        .arg(cli::BIN)
        .arg("sync")
        .arg(&src)
        .arg(&dst)
        .arg("--state-dir")
        .arg(&state)
        .args(["--json", "-q"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("could not keep the plan in a temporary file"),
        "the error says what failed: {text}"
    );
    assert!(
        text.contains(&state.display().to_string()),
        "the error names the state directory {}, where the plan's temporary file is, not \
         only TMPDIR: {text}",
        state.display()
    );
    // Nothing was copied: every destination file still holds its old content.
    assert_eq!(cli::disk_files(&dst), before);
    for (rel, _) in before {
        let body = fs::read_to_string(dst.join(&rel)).unwrap();
        assert!(body.starts_with("old "), "{rel} changed: {body}");
    }
}
