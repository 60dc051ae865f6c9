//! `syncengine sync` killed (SIGKILL) in the middle of a move into the trash on a filesystem
//! without `RENAME_NOREPLACE` (NFS, FUSE), then two normal runs: nothing lost, nothing hidden
//! left.
//!
//! There a move is a hard link at the target, then the old name is renamed to an aside name
//! `.syncengine-tmp-aside-<hex>-<name>` and removed only if it is the file linked, else put
//! back (`remove_linked` in `crates/backend-local/src/client.rs`). A kill between the aside
//! rename and that removal or put-back leaves the aside name; the next run recovers it
//! (`crates/backend-local/src/aside.rs`). The backend's own tests make that state by hand;
//! these reach it with the real program, killed at the real moment.
//!
//! The run to kill goes under `strace`, which makes `renameat2` fail with `EINVAL` (no
//! `RENAME_NOREPLACE` here), and holds each `linkat` before and after it runs and each
//! `unlinkat` before it runs, so the test can act between the steps of the move. In CI a
//! missing `strace` fails the test; elsewhere it is skipped with a message.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/cli.rs"]
mod cli;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `strace` holds each `linkat` (before and after) and each `unlinkat` (before), in
/// microseconds: the test's time to act between the steps of the move.
const HOLD_US: u64 = 1_000_000;

/// The prefix of the name a move sets the old name aside under.
const ASIDE: &str = ".syncengine-tmp-aside-";

/// The prefix of the visible name a recovered file gets where its old name is taken.
const RECOVERED: &str = "recovered-by-syncengine-";

/// The two roots and the state folder of a pair.
struct Pair {
    _tmp: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
    state: PathBuf,
}

impl Pair {
    /// A pair where `x` holds "v1" and a few other files keep either side from looking
    /// emptied (and the delete of `x` under max-delete), synced once by a plain run.
    fn synced() -> Pair {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, state) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("state"),
        );
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        fs::write(a.join("x"), "v1").unwrap();
        for i in 0..4 {
            fs::write(a.join(format!("keep{i}")), format!("keep {i}")).unwrap();
        }
        let pair = Pair {
            _tmp: tmp,
            a,
            b,
            state,
        };
        let (code, out) = pair.sync(true);
        assert_eq!(code, Some(0), "run 1: {out}");
        assert_eq!(fs::read_to_string(pair.b.join("x")).unwrap(), "v1");
        pair
    }

    /// A plain two-way run (`--json`, and `-q` if `quiet`); (exit code, stdout + stderr).
    fn sync(&self, quiet: bool) -> (Option<i32>, String) {
        let mut args = vec![
            self.a.as_os_str(),
            self.b.as_os_str(),
            "--mode".as_ref(),
            "two-way".as_ref(),
            "--json".as_ref(),
        ];
        if quiet {
            args.push("-q".as_ref());
        }
        cli::run_sync(&args, &self.state)
    }

    /// Deletes `a/x` and starts a run under `strace` that moves `b/x` into the trash; returns
    /// once the link into the trash is made, with the trash's name (`None` as
    /// [`Self::sync_under_strace`]).
    fn delete_x_until_its_trash_link(&self) -> Option<(Traced, PathBuf)> {
        fs::remove_file(self.a.join("x")).unwrap();
        let mut traced = self.sync_under_strace()?;
        let trashed = wait_for(&mut traced, "the link into the trash", || {
            trashed_x(&self.b).pop()
        });
        Some((traced, trashed))
    }

    /// Starts a two-way run under `strace` (see the module's docs), or `None` where strace
    /// cannot run (outside CI).
    fn sync_under_strace(&self) -> Option<Traced> {
        let hold = format!("delay_enter={HOLD_US}");
        let spawned = Command::new("strace")
            .args(["-f", "-qq", "-o", "/dev/null"])
            .args(["-e", "trace=renameat,renameat2,linkat,unlinkat"])
            .args(["-e", "inject=renameat2:error=EINVAL"])
            .args(["-e", &format!("inject=linkat:{hold}:delay_exit={HOLD_US}")])
            .args(["-e", &format!("inject=unlinkat:{hold}")])
            .arg(cli::BIN)
            .arg("sync")
            .arg(&self.a)
            .arg(&self.b)
            .args(["--mode", "two-way", "-q", "--state-dir"])
            .arg(&self.state)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let strace = match spawned {
            Ok(child) => child,
            Err(e) => {
                assert!(
                    !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
                    "strace is needed in CI: {e}"
                );
                eprintln!("skipped: strace could not run ({e})");
                return None;
            }
        };
        Some(Traced {
            strace: Some(strace),
            program: None,
        })
    }
}

/// `strace` and the program it runs, both ended (SIGKILL) if the test ends early.
struct Traced {
    strace: Option<Child>,
    /// The program's pid, once found.
    program: Option<u32>,
}

impl Traced {
    /// The pid of the program strace started (its child), waiting for it to start.
    fn program(&mut self) -> u32 {
        if let Some(pid) = self.program {
            return pid;
        }
        let strace = self.strace.as_ref().unwrap().id();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = child_of(strace) {
                self.program = Some(pid);
                return pid;
            }
            assert!(Instant::now() < deadline, "strace started no program");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGKILLs the program, waits for strace to end, and checks that neither is left.
    /// Returns strace's stderr (the program's: strace writes its own to /dev/null).
    fn kill(&mut self) -> String {
        let pid = self.program();
        kill9(pid);
        let mut strace = self.strace.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while strace.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "strace did not end after its program was killed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = strace.wait_with_output().unwrap();
        self.program = None;
        // strace reaped the program: nothing of either is left.
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the killed program is still there"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Whether strace (and so the program) ended by itself: the run finished before the
    /// test could act.
    fn ended(&mut self) -> bool {
        self.strace
            .as_mut()
            .is_none_or(|s| s.try_wait().unwrap().is_some())
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        if let Some(pid) = self.program.take() {
            kill9(pid);
        }
        if let Some(mut strace) = self.strace.take() {
            let _ = strace.kill();
            let _ = strace.wait();
        }
    }
}

fn kill9(pid: u32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -KILL {pid} failed");
}

/// A child of process `parent` (from `/proc/*/stat`), if there is one.
fn child_of(parent: u32) -> Option<u32> {
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: the command may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(parent) {
            return Some(pid);
        }
    }
    None
}

/// Every file below `root`, the engine's folder included: (path relative to root, content).
fn all_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                found.push((rel, fs::read(&path).unwrap_or_default()));
            }
        }
    }
    found.sort();
    found
}

/// The aside names in `root`'s top folder.
fn asides(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with(ASIDE))
        .map(|e| e.path())
        .collect()
}

/// The trashed copies of `x` below `root`'s trash.
fn trashed_x(root: &Path) -> Vec<PathBuf> {
    let Ok(runs) = fs::read_dir(root.join(".syncengine/trash")) else {
        return Vec::new();
    };
    runs.flatten()
        .map(|run| run.path().join("x"))
        .filter(|x| x.exists())
        .collect()
}

/// Polls `found` every millisecond until it gives something, or panics saying `what` did
/// not happen (or the run ended first).
fn wait_for<T>(traced: &mut Traced, what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = found() {
            return v;
        }
        assert!(
            !traced.ended(),
            "the run ended before {what} (the move did not go the way this test expects)"
        );
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Checks what every run leaves: no aside name and no recovered name in either root.
fn nothing_hidden_left(pair: &Pair, after: &str) {
    for root in [&pair.a, &pair.b] {
        for (path, _) in all_files(root) {
            let name = path.rsplit('/').next().unwrap();
            assert!(
                !name.starts_with(ASIDE) && !name.starts_with(RECOVERED),
                "{after}: {path} is left in {}",
                root.display()
            );
        }
    }
}

/// Whether "v1" is held by a file in `root`'s trash.
fn v1_in_trash(root: &Path) -> bool {
    all_files(&root.join(".syncengine/trash"))
        .iter()
        .any(|(_, body)| body == b"v1")
}

/// The move of `b/x` into the trash (`a/x` was deleted) is killed after a save landed at
/// `b/x` between the link into the trash and the aside rename: the save is then held only
/// by the aside name. The next run puts it back at `x` (and says so); the run after syncs it
/// to `a`; the old version is in the trash, and no hidden name is left.
#[test]
fn a_save_held_by_an_aside_name_when_the_move_is_killed_comes_back() {
    let pair = Pair::synced();
    // The link into the trash is made (strace holds the linkat's return): an editor saves
    // over `b/x`, by a rename over it.
    let Some((mut traced, trashed)) = pair.delete_x_until_its_trash_link() else {
        return;
    };
    assert!(
        asides(&pair.b).is_empty(),
        "the old name was set aside before the save could land"
    );
    fs::write(pair.b.join("x.new"), "saved meanwhile").unwrap();
    fs::rename(pair.b.join("x.new"), pair.b.join("x")).unwrap();
    // The move sets the save aside (taking it for the file it linked): killed there, before
    // its put-back (a linkat strace holds) runs.
    let aside = wait_for(&mut traced, "the aside rename", || asides(&pair.b).pop());
    let stderr = traced.kill();
    // The state killed in: the save is held only by the aside name, `x` is gone.
    assert!(
        !pair.b.join("x").exists(),
        "the put-back ran before the kill: {stderr}"
    );
    assert_eq!(fs::read_to_string(&aside).unwrap(), "saved meanwhile");
    assert_eq!(fs::metadata(&aside).unwrap().nlink(), 1);
    assert_eq!(fs::read_to_string(&trashed).unwrap(), "v1");
    assert!(!pair.a.join("x").exists());

    // Run 3: `x` is gone on both sides (nothing to do for it); at its end the aside goes
    // back to `x`, with a warning that says so.
    let (code, out) = pair.sync(false);
    assert_eq!(code, Some(0), "run 3: {out}");
    assert!(
        out.contains("a file an interrupted move had set aside is back at its name"),
        "run 3 did not say it put a file back: {out}"
    );
    assert_eq!(
        fs::read_to_string(pair.b.join("x")).unwrap(),
        "saved meanwhile",
        "run 3: {out}"
    );
    nothing_hidden_left(&pair, "run 3");
    // Run 4: the save, new on `b`, is copied to `a`.
    let (code, out) = pair.sync(true);
    assert_eq!(code, Some(0), "run 4: {out}");
    let stats: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(stats["downloaded"], 1, "run 4: {out}");
    assert_eq!(stats["errors"], 0, "run 4: {out}");
    for root in [&pair.a, &pair.b] {
        assert_eq!(
            fs::read_to_string(root.join("x")).unwrap(),
            "saved meanwhile",
            "{}",
            root.display()
        );
    }
    nothing_hidden_left(&pair, "run 4");
    assert!(v1_in_trash(&pair.b), "v1 is not in b's trash");
    for i in 0..4 {
        for root in [&pair.a, &pair.b] {
            assert_eq!(
                fs::read_to_string(root.join(format!("keep{i}"))).unwrap(),
                format!("keep {i}")
            );
        }
    }
}

/// The move of `b/x` into the trash is killed after the aside rename of the old file
/// itself (no save): the aside name is a second name of the trashed file. The next runs
/// remove it; `x` stays deleted on both sides, and "v1" is in the trash.
#[test]
fn a_second_name_left_by_a_killed_move_is_removed_and_the_delete_stays() {
    let pair = Pair::synced();
    let Some((mut traced, trashed)) = pair.delete_x_until_its_trash_link() else {
        return;
    };
    // The old name set aside: killed before its unlinkat (held by strace) runs.
    let aside = wait_for(&mut traced, "the aside rename", || asides(&pair.b).pop());
    let stderr = traced.kill();
    assert!(
        aside.exists(),
        "the aside name was removed before the kill: {stderr}"
    );
    assert!(!pair.b.join("x").exists());
    let (held, linked) = (
        fs::metadata(&aside).unwrap(),
        fs::metadata(&trashed).unwrap(),
    );
    assert_eq!((held.dev(), held.ino()), (linked.dev(), linked.ino()));
    assert_eq!(held.nlink(), 2);
    assert_eq!(fs::read_to_string(&trashed).unwrap(), "v1");

    for run in ["run 3", "run 4"] {
        let (code, out) = pair.sync(false);
        assert_eq!(code, Some(0), "{run}: {out}");
        assert!(
            !out.contains("set aside"),
            "{run} put a file back or kept one: {out}"
        );
        let stats: serde_json::Value = serde_json::from_str(
            out.lines()
                .find(|l| l.starts_with('{'))
                .unwrap_or_else(|| panic!("{run}: no JSON: {out}")),
        )
        .unwrap();
        assert_eq!(stats["downloaded"], 0, "{run}: {out}");
        assert_eq!(stats["uploaded"], 0, "{run}: {out}");
        assert_eq!(stats["errors"], 0, "{run}: {out}");
        nothing_hidden_left(&pair, run);
        assert!(!pair.a.join("x").exists(), "{run}: x came back on a");
        assert!(!pair.b.join("x").exists(), "{run}: x came back on b");
    }
    assert!(v1_in_trash(&pair.b), "v1 is not in b's trash");
    assert_eq!(fs::read_to_string(&trashed).unwrap(), "v1");
    assert_eq!(fs::metadata(&trashed).unwrap().nlink(), 1);
}

/// The move of `b/x` into the trash is killed after the aside rename of the old file, with
/// a save landed at `b/x` after that rename: the aside name is a second name of the trashed
/// file, and `b/x` holds the save. The next run removes the aside name and, the save being
/// an edit the delete on `a` never saw, copies it to `a` (modify beats delete); the run
/// after changes nothing.
#[test]
fn a_save_after_the_aside_rename_of_a_killed_move_wins_over_the_delete() {
    let pair = Pair::synced();
    let Some((mut traced, trashed)) = pair.delete_x_until_its_trash_link() else {
        return;
    };
    let aside = wait_for(&mut traced, "the aside rename", || asides(&pair.b).pop());
    // The unlinkat of the aside name is held: the save lands at the free old name.
    fs::write(pair.b.join("x.new"), "saved meanwhile").unwrap();
    fs::rename(pair.b.join("x.new"), pair.b.join("x")).unwrap();
    let stderr = traced.kill();
    assert!(
        aside.exists(),
        "the aside name was removed before the kill: {stderr}"
    );
    assert_eq!(fs::metadata(&aside).unwrap().nlink(), 2);
    assert_eq!(fs::read_to_string(&aside).unwrap(), "v1");
    assert_eq!(
        fs::read_to_string(pair.b.join("x")).unwrap(),
        "saved meanwhile"
    );

    let (code, out) = pair.sync(true);
    assert_eq!(code, Some(0), "run 3: {out}");
    let stats: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(stats["downloaded"], 1, "run 3: {out}");
    assert_eq!(stats["errors"], 0, "run 3: {out}");
    nothing_hidden_left(&pair, "run 3");
    let (code, out) = pair.sync(true);
    assert_eq!(code, Some(0), "run 4: {out}");
    let stats: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for count in [
        "uploaded",
        "downloaded",
        "deleted_source",
        "deleted_destination",
    ] {
        assert_eq!(stats[count], 0, "run 4: {out}");
    }
    nothing_hidden_left(&pair, "run 4");
    for root in [&pair.a, &pair.b] {
        assert_eq!(
            fs::read_to_string(root.join("x")).unwrap(),
            "saved meanwhile",
            "{}",
            root.display()
        );
    }
    assert_eq!(fs::read_to_string(&trashed).unwrap(), "v1");
    assert_eq!(fs::metadata(&trashed).unwrap().nlink(), 1);
}
