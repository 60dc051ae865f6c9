//! The README's "Everyday use" block, run as a script on the built binary: every command a new
//! user copies from it works, in order, and does what its comment says.
#![cfg(feature = "cli")]
// Test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_syncengine");

/// The first `sh` code block after the `## Everyday use` heading.
fn everyday_script() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme
        .find("\n## Everyday use\n")
        .expect("no Everyday use section")..];
    let start = section.find("```sh\n").expect("no sh block") + "```sh\n".len();
    let len = section[start..].find("```").expect("unclosed block");
    section[start..start + len].to_owned()
}

#[test]
fn the_everyday_use_commands_work_as_written() {
    let script = everyday_script();
    for command in ["sync", "check", "trash list", "trash restore", "--dry-run"] {
        assert!(script.contains(command), "the block lost {command:?}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(tmp.path())
        .env("PATH", path)
        .env("SYNCENGINE_STATE_DIR", tmp.path().join("state"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let read = |p: &str| std::fs::read_to_string(tmp.path().join(p)).unwrap();
    // The backup has the photo; the original was not written to (no .syncengine/ in it).
    assert_eq!(read("backup/photos/cat.jpg"), "cat\n");
    assert!(!tmp.path().join("photos/.syncengine").exists());
    // The mirror is a copy of notes as they were then.
    assert_eq!(read("mirror/notes/todo.txt"), "milk\n");
    // The dry run listed the upload it would make, and changed nothing before the real run.
    assert!(stdout.contains("todo.txt"), "{stdout}");
    // The deleted file came back from the trash to both sides, with its last content.
    assert_eq!(read("notes/todo.txt"), "milk\neggs\n");
    assert_eq!(read("shared/notes/todo.txt"), "milk\neggs\n");
    assert!(stdout.ends_with("milk\neggs\n"), "{stdout}");
}
