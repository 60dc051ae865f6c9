//! Red-team cases (issue 8, round 2) through the `syncengine` binary.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[path = "support/cli.rs"]
mod cli;

/// Runs `syncengine sync <args>` and returns (exit code, stdout + stderr).
fn sync(args: &[&str], state: &std::path::Path) -> (Option<i32>, String) {
    cli::run_sync(args, state)
}

/// A password given in a WebDAV or SFTP URL (the WebDAV builder takes `user:password@` as
/// credentials) must never be printed. The usage errors for a `--trash-dir`/`--backup-dir`
/// inside a remote root, and for nested remote roots (red-team R2's fix), echo the raw URLs,
/// password and all, to stderr — and from there into CI logs and terminal scrollback. No
/// server is contacted: these checks run before any connection.
#[test]
fn usage_errors_never_print_a_password_from_a_url() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let local = local.to_str().unwrap();
    let state = tmp.path().join("state");
    let mut cases: Vec<Vec<String>> = Vec::new();
    #[cfg(feature = "webdav")]
    {
        let root = "webdav://dav:S3CRETPW@127.0.0.1:8082/syncengine-tests/leak";
        cases.push(vec![
            local.into(),
            root.into(),
            "--trash-dir".into(),
            format!("{root}/trash"),
        ]);
        cases.push(vec![
            local.into(),
            root.into(),
            "--backup-dir".into(),
            format!("{root}/old"),
        ]);
        cases.push(vec![root.into(), format!("{root}/inner")]);
    }
    #[cfg(feature = "sftp")]
    {
        let root = "sftp://me:S3CRETPW@127.0.0.1:2222/tmp/leak";
        cases.push(vec![
            local.into(),
            root.into(),
            "--trash-dir".into(),
            format!("{root}/trash"),
        ]);
    }
    for args in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, text) = sync(&args, &state);
        assert_eq!(code, Some(2), "{args:?}: {text}");
        assert!(
            !text.contains("S3CRETPW"),
            "{args:?}: the password is printed: {text}"
        );
    }
}

/// Behaviour 1: in a backup mode, files the source deleted stay deleted there ("deleted photos
/// never come back to the source"). Accepting a new destination root forgets the whole base,
/// settled deletions included, so the run after `--accept-new-root destination` downloads
/// every photo the source had deleted back to it. The source's deletions are facts about the
/// source root, which did not change. A plausible path there: the user empties the trash with
/// `rm -rf <dest>/.syncengine`, the next run stops (exit 3, no id file) and says to accept.
#[test]
fn accepting_a_new_destination_root_does_not_bring_back_what_the_source_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, state) = (
        tmp.path().join("phone"),
        tmp.path().join("nas"),
        tmp.path().join("state"),
    );
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    for i in 1..=6 {
        std::fs::write(a.join(format!("IMG_{i}.JPG")), format!("photo {i}")).unwrap();
    }
    let sb = |extra: &[&str]| {
        let mut args = vec![
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--mode",
            "source-backup",
            "-q",
        ];
        args.extend_from_slice(extra);
        sync(&args, &state)
    };
    assert_eq!(sb(&[]).0, Some(0));
    std::fs::remove_file(a.join("IMG_1.JPG")).unwrap();
    std::fs::remove_file(a.join("IMG_2.JPG")).unwrap();
    assert_eq!(sb(&[]).0, Some(0));
    assert!(
        b.join("IMG_1.JPG").exists(),
        "the backup keeps deleted photos"
    );
    // The user empties the NAS's trash folder the blunt way.
    std::fs::remove_dir_all(b.join(".syncengine")).unwrap();
    let (code, out) = sb(&[]);
    assert_eq!(code, Some(3), "{out}");
    let (code, out) = sb(&["--accept-new-root", "destination"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        !a.join("IMG_1.JPG").exists() && !a.join("IMG_2.JPG").exists(),
        "photos deleted on the source came back to it after --accept-new-root destination"
    );
}

fn sync_local(
    a: &std::path::Path,
    b: &std::path::Path,
    state: &std::path::Path,
) -> (Option<i32>, String) {
    sync(
        &[a.to_str().unwrap(), b.to_str().unwrap(), "--json", "-q"],
        state,
    )
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Behaviour 2: "another disk mounted at the same path" must stop the run. A disk that is a
/// clone of the root made some time ago (a restored backup, `cp -a`/rsync -a, a disk image, a
/// NAS snapshot rolled back) carries the same `.syncengine/root-id`, so it passes for the root
/// the base describes. The run then reads every file the clone lacks as deleted there and
/// every older version as an edit there: the other side's newer work is deleted and rolled
/// back (into its trash), with exit 0 and no warning — and since overwrites are not counted by
/// --max-delete, a rollback of any size goes through.
#[test]
fn a_root_replaced_by_an_older_clone_of_itself_does_not_roll_back_the_other_side() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, clone, state) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("b-clone"),
        tmp.path().join("state"),
    );
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(a.join("report.txt"), "draft 1").unwrap();
    std::fs::write(a.join("g.txt"), "unchanged").unwrap();
    std::fs::write(a.join("h.txt"), "unchanged too").unwrap();
    let (code, out) = sync_local(&a, &b, &state);
    assert_eq!(code, Some(0), "{out}");
    // A backup (clone) of the destination, taken now.
    copy_tree(&b, &clone);
    // Later work on the source, synced.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(a.join("report.txt"), "final version, a week of work").unwrap();
    std::fs::write(a.join("new.txt"), "written after the backup").unwrap();
    let (code, out) = sync_local(&a, &b, &state);
    assert_eq!(code, Some(0), "{out}");
    // The destination disk dies and is replaced by the clone, mounted at the same path.
    std::fs::remove_dir_all(&b).unwrap();
    std::fs::rename(&clone, &b).unwrap();
    let (code, out) = sync_local(&a, &b, &state);
    let report = std::fs::read_to_string(a.join("report.txt")).unwrap_or_default();
    assert!(
        code == Some(3)
            || (report == "final version, a week of work" && a.join("new.txt").exists()),
        "a restored clone of the destination rolled the source back (exit {code:?}): \
         report.txt is now {report:?}, new.txt exists: {}; {out}",
        a.join("new.txt").exists()
    );
}
