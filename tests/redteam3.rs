//! Red-team cases (issue 8, round 3) through the `syncengine` binary: root generations
//! (b85f081) on legitimate setups.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

#[path = "support/cli.rs"]
mod cli;
use cli::{BIN, sync};

/// The most common multi-machine setup (README: laptop A ↔ shared storage ↔ laptop B): two
/// laptops whose users have the same name sync the same folder path (`/home/me/Sync`) with
/// one shared root (a NAS mounted at the same path on both, or one bucket). The pair id is a
/// hash of the two locations, so both machines' pairs have the same id — and write their
/// generations into the same file of the shared root,
/// `.syncengine/generation/<hash of the pair id>`. Each machine's run overwrites the other's
/// generation, so every run after the other machine's stops with exit 3, calling the shared
/// root "an older copy" — on every alternate run, for good, which teaches the user to pass
/// `--accept-new-root` blindly (and an accepted run ignores the base: deletions never reach
/// the other machine).
///
/// Here one path, `laptop`, holds laptop A's folder while A's runs happen (A's state dir) and
/// laptop B's folder while B's do (B's state dir).
#[test]
fn two_machines_with_the_same_folder_path_and_one_shared_root_are_no_older_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (laptop, shared) = (t.join("laptop"), t.join("shared"));
    let (folder_a, folder_b) = (t.join("folder-of-A"), t.join("folder-of-B"));
    let (state_a, state_b) = (t.join("state-A"), t.join("state-B"));
    for d in [&shared, &folder_a, &folder_b] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(folder_a.join("from-a.txt"), "written on A").unwrap();
    std::fs::write(folder_b.join("from-b.txt"), "written on B").unwrap();

    // Runs the machine's pair with its folder at the common path.
    let run_on = |folder: &Path, state: &Path| {
        std::fs::rename(folder, &laptop).unwrap();
        let r = sync(&laptop, &shared, state, &[]);
        std::fs::rename(&laptop, folder).unwrap();
        r
    };
    for round in 0..3 {
        for (name, folder, state) in [("A", &folder_a, &state_a), ("B", &folder_b, &state_b)] {
            let (code, out) = run_on(folder, state);
            assert_eq!(
                code,
                Some(0),
                "round {round}, laptop {name}: a legitimate shared root stopped the run: {out}"
            );
        }
    }
    assert!(folder_a.join("from-b.txt").exists() && folder_b.join("from-a.txt").exists());
}

/// The same file clash with one machine: a run of the same pair with another state dir (run
/// once with `sudo`, whose state dir is root's; a cron job with `SYNCENGINE_STATE_DIR`; a
/// `--state-dir` tried once) writes its own generation over the one the usual state recorded:
/// the next usual run stops with exit 3 on both roots, calling each "an older copy".
#[test]
fn a_run_with_another_state_dir_does_not_make_both_roots_older_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (a, b) = (t.join("a"), t.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(a.join("x.txt"), "x").unwrap();
    let (code, out) = sync(&a, &b, &t.join("state"), &[]);
    assert_eq!(code, Some(0), "{out}");
    // Once with another state dir (nothing changed in between: it finds both sides equal).
    let (code, out) = sync(&a, &b, &t.join("state-of-sudo"), &[]);
    assert_eq!(code, Some(0), "{out}");
    std::fs::write(a.join("y.txt"), "y").unwrap();
    let (code, out) = sync(&a, &b, &t.join("state"), &[]);
    assert_eq!(
        code,
        Some(0),
        "the usual state stops after one run with another state dir: {out}"
    );
    assert!(b.join("y.txt").exists());
}

fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A laptop restored as a whole from its backup (Time Machine, a VM snapshot): its sync
/// folder *and* the state dir go back to the same moment, so the state describes the laptop
/// folder exactly; the NAS kept working and is newer. A plain sync is what the user needs
/// (bring the NAS's newer work back to the laptop). The run stops instead (exit 3) calling
/// the *NAS* "an older copy of the root" whose sync "would roll the other side back" — the
/// opposite of the truth — and tells the user to `--accept-new-root destination`, which
/// ignores the base: every file deleted since the backup comes back and every file edited
/// since becomes a conflict copy on both sides.
///
/// The NAS holds a generation the state has never seen (newer), not one it recorded earlier
/// (older): the engine can tell the two apart if it keeps the generations it wrote.
#[test]
fn a_laptop_restored_with_its_state_does_not_call_the_newer_nas_an_older_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (laptop, nas, state) = (t.join("laptop"), t.join("nas"), t.join("state"));
    std::fs::create_dir_all(&laptop).unwrap();
    std::fs::create_dir_all(&nas).unwrap();
    for i in 0..4 {
        std::fs::write(laptop.join(format!("doc{i}.txt")), format!("doc {i}")).unwrap();
    }
    let (code, out) = sync(&laptop, &nas, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    // The laptop's backup: its folder and its state, at the same moment.
    let backup = t.join("backup");
    std::fs::create_dir_all(&backup).unwrap();
    copy_tree(&laptop, &backup.join("laptop"));
    copy_tree(&state, &backup.join("state"));
    // More work, synced to the NAS.
    std::fs::write(laptop.join("late.txt"), "written after the backup").unwrap();
    let (code, out) = sync(&laptop, &nas, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    // The laptop's disk dies; the whole laptop is restored from the backup.
    std::fs::remove_dir_all(&laptop).unwrap();
    std::fs::remove_dir_all(&state).unwrap();
    copy_tree(&backup.join("laptop"), &laptop);
    copy_tree(&backup.join("state"), &state);
    let (code, out) = sync(&laptop, &nas, &state, &[]);
    assert!(
        code == Some(0) || !out.contains("older copy"),
        "the newer NAS is called an older copy of itself (exit {code:?}): {out}"
    );
    if code == Some(0) {
        assert!(laptop.join("late.txt").exists(), "{out}");
    }
}

/// A one-way mirror (`--mode source-to-destination`) whose destination (a backup disk, a NAS)
/// was restored from an older snapshot: nothing of the destination can reach the source in
/// this mode, so the older copy can roll nothing back — the run only has to copy the newer
/// files again. It stops instead (exit 3) saying that syncing "would roll the other side back
/// and delete what was added since", and the nightly backup job fails until someone passes
/// `--accept-new-root destination` by hand.
#[test]
fn an_older_copy_of_a_mirror_destination_is_mirrored_again() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (a, b, state) = (t.join("a"), t.join("b"), t.join("state"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    for i in 0..3 {
        std::fs::write(a.join(format!("f{i}.txt")), format!("f{i}")).unwrap();
    }
    let mirror = |state: &Path| sync(&a, &b, state, &["--mode", "source-to-destination"]);
    let (code, out) = mirror(&state);
    assert_eq!(code, Some(0), "{out}");
    let snapshot = t.join("b-snapshot");
    copy_tree(&b, &snapshot);
    std::fs::write(a.join("f0.txt"), "f0 edited").unwrap();
    std::fs::write(a.join("new.txt"), "new").unwrap();
    let (code, out) = mirror(&state);
    assert_eq!(code, Some(0), "{out}");
    // The backup disk is restored from its snapshot.
    std::fs::remove_dir_all(&b).unwrap();
    std::fs::rename(&snapshot, &b).unwrap();
    let (code, out) = mirror(&state);
    assert_eq!(
        code,
        Some(0),
        "a mirror refuses to refresh an older copy of its destination: {out}"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("f0.txt")).unwrap(),
        "f0 edited"
    );
    assert!(b.join("new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(a.join("f0.txt")).unwrap(),
        "f0 edited"
    );
}

/// F1 on the README's own topology, laptop A ↔ S3 ↔ laptop B, where both laptops use the same
/// folder path (`/home/me/Sync`): the bucket prefix is the shared root. Needs moto on
/// 127.0.0.1:9100 (`scripts/test-servers.sh start`); skipped when it is not up.
#[cfg(feature = "s3")]
#[test]
fn two_laptops_with_the_same_path_and_one_bucket_are_no_older_copy() {
    let endpoint = std::env::var("SYNCENGINE_TEST_S3_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:9100".to_owned());
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    if std::net::TcpStream::connect(authority).is_err() {
        eprintln!("moto is not running on {authority}: skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let laptop = t.join("Sync");
    let (folder_a, folder_b) = (t.join("folder-of-A"), t.join("folder-of-B"));
    std::fs::create_dir_all(&folder_a).unwrap();
    std::fs::create_dir_all(&folder_b).unwrap();
    std::fs::write(folder_a.join("from-a.txt"), "written on A").unwrap();
    std::fs::write(folder_b.join("from-b.txt"), "written on B").unwrap();
    let bucket = format!("s3://test/redteam3-{}", std::process::id());
    let run_on = |folder: &Path, state: &Path| {
        std::fs::rename(folder, &laptop).unwrap();
        let out = Command::new(BIN)
            .arg("sync")
            .arg(&laptop)
            .arg(&bucket)
            .args(["--json", "-q"])
            .arg("--state-dir")
            .arg(state)
            .env_remove("RUST_LOG")
            .env_remove("AWS_CA_BUNDLE")
            .env("AWS_ACCESS_KEY_ID", "a")
            .env("AWS_SECRET_ACCESS_KEY", "b")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        std::fs::rename(&laptop, folder).unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    for round in 0..2 {
        for (name, folder, state) in [
            ("A", &folder_a, t.join("state-A")),
            ("B", &folder_b, t.join("state-B")),
        ] {
            let (code, out) = run_on(folder, &state);
            assert_eq!(
                code,
                Some(0),
                "round {round}, laptop {name}: the shared bucket stopped the run: {out}"
            );
        }
    }
}
