//! Red team 24: `syncengine watch`, `pause`, `resume` and `status` pushed where they may
//! break: the control socket, signals, racing commands. Real `syncengine` binary, local
//! folders; each wait is bounded (ten times the 2 s debounce, with room for a debug build),
//! nothing asserts how fast anything is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli;
#[path = "support/watch.rs"]
mod harness;

use std::io::{BufRead, BufReader, Read as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use harness::{Sandbox, read, write};

/// Ten times the debounce's 2 s quiet time (a local change), with room for a slow debug
/// build's run.
const WAIT: Duration = Duration::from_secs(40);

/// True while the watch has neither answered nor closed `stream` (a client that sent
/// nothing).
fn still_waiting(stream: &UnixStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let waiting = matches!(
        (&*stream).read(&mut buf),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    );
    stream.set_nonblocking(false).unwrap();
    waiting
}

/// A client that connects to the control socket and sends nothing holds nothing up: `status`
/// from another client is answered while the silent one is still connected (and not yet
/// given up on), and SIGTERM stops the watch with three silent clients connected (each was
/// waited on for 30 s in turn, one after the other, before anything else was looked at).
#[test]
fn a_silent_control_client_does_not_stall_the_watch() {
    let sb = Sandbox::new();
    sb.config(&sb.pair("p", "a", "b", ""));
    let w = sb.watch(&[]);
    w.wait("the first run", WAIT, || w.runs("p") == 1);
    let socket = sb.path("state/watch.sock");
    // Connected first: the watch accepts it before the `status` below.
    let silent = UnixStream::connect(&socket).unwrap();
    let (code, out, err) = sb.run(&["status", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["running"], true, "{out}{err}");
    assert!(
        still_waiting(&silent),
        "`status` was answered only after the watch gave up on a silent client"
    );
    // A burst of requests beside it: each is answered (none closed unanswered).
    let answered: Vec<bool> = (0..100)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                use std::io::Write as _;
                let mut s = UnixStream::connect(&socket).unwrap();
                s.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
                let mut line = String::new();
                BufReader::new(s).read_line(&mut line).unwrap();
                line.contains("\"ok\":true")
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(answered.iter().all(|a| *a), "{answered:?}");
    assert!(still_waiting(&silent));
    // Changes still arrive and are reported.
    write(&sb.path("a/new.txt"), "new");
    w.wait("a change", WAIT, || {
        read(&sb.path("b/new.txt")).as_deref() == Some("new")
    });
    let _more: Vec<UnixStream> = (0..3)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(!socket.exists(), "{log}");
    drop(silent);
}

/// Copies the files of the folder `from` into `to` (a fresh folder), recursively.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A watched root replaced by a new folder at the same path (deleted and put back from a
/// copy, as a restore from a backup does) is watched again: a file created in it afterwards
/// arrives with the debounce, not with the hourly rescan. (The watch stayed on the deleted
/// folder; status still said "watched".)
#[test]
fn a_root_replaced_by_a_new_folder_is_watched_again() {
    let sb = Sandbox::new();
    write(&sb.path("a/one.txt"), "1");
    sb.config(&sb.pair("p", "a", "b", ""));
    let w = sb.watch(&[]);
    w.wait("the first run", WAIT, || {
        w.runs("p") == 1 && read(&sb.path("b/one.txt")).as_deref() == Some("1")
    });
    copy_tree(&sb.path("a"), &sb.path("a.new"));
    std::fs::remove_dir_all(sb.path("a")).unwrap();
    std::fs::rename(sb.path("a.new"), sb.path("a")).unwrap();
    // The replacement is a change: the run it starts finds the same files.
    w.wait("the run after the replacement", WAIT, || w.runs("p") >= 2);
    assert_eq!(w.count("p", "STOPPED"), 0, "{}", w.log());
    write(&sb.path("a/after.txt"), "after");
    w.wait("a file created in the new root", WAIT, || {
        read(&sb.path("b/after.txt")).as_deref() == Some("after")
    });
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// `pause` decides whether a watch runs by the state directory's watch lock, not by the
/// socket alone: with the socket gone (removed by a cleaner of temporary files; or not yet
/// made by a watch that is starting), it used to record the pause in the file, say "no
/// watch is running ... the next one starts it paused" and exit 0, while the running
/// watch went on running the pair and later wrote its own set of paused pairs over the
/// file. Now it reports that it cannot reach the watch (exit 1) and records nothing.
#[test]
fn pause_does_not_go_behind_a_running_watch_whose_socket_is_gone() {
    let sb = Sandbox::new();
    sb.config(&sb.pair("p", "a", "b", ""));
    let w = sb.watch(&[]);
    w.wait("the first run", WAIT, || w.runs("p") == 1);
    std::fs::remove_file(sb.path("state/watch.sock")).unwrap();
    let (code, out, err) = sb.run(&["pause", "p"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("does not answer"), "{out}{err}");
    assert!(
        !read(&sb.path("state/service-paused.json")).is_some_and(|t| t.contains("\"p\"")),
        "the pause was recorded behind the running watch's back"
    );
    // The watch still runs the pair, as `pause` said it would.
    write(&sb.path("a/new.txt"), "new");
    w.wait("a change", WAIT, || {
        read(&sb.path("b/new.txt")).as_deref() == Some("new")
    });
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");

    // With no watch, the pause is recorded, and the next watch starts the pair paused.
    let (code, out, err) = sb.run(&["pause", "p"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("no `syncengine watch` is running"), "{out}");
    let w = sb.watch(&[]);
    w.wait("the watch to start", WAIT, || w.count("p", "added") == 1);
    let (_, out, _) = sb.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["pairs"][0]["status"]["state"], "paused", "{out}");
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// `resume --force-once` after a max-delete stop passes that stop, not a bigger one: when the
/// source is emptied between the stop and the resume (its disk unmounted, leaving an empty
/// mount point), the forced run stops again on the empty side instead of deleting every file
/// of the destination. (It ran as `sync --force`, which passes the empty-side rule too.)
#[test]
fn force_once_after_a_max_delete_stop_does_not_pass_an_emptied_side() {
    let sb = Sandbox::new();
    for i in 0..5 {
        write(&sb.path(&format!("a/f{i}.txt")), "keep");
    }
    sb.config(&sb.pair("p", "a", "b", "mode = \"source-to-destination\""));
    let w = sb.watch(&[]);
    w.wait("the first run", WAIT, || {
        w.runs("p") == 1 && cli::disk_files(&sb.path("b")).len() == 5
    });
    // 3 of 5 (60%) is past the default max-delete of 50%.
    for i in 0..3 {
        std::fs::remove_file(sb.path(&format!("a/f{i}.txt"))).unwrap();
    }
    w.wait("the stop", WAIT, || w.count("p", "STOPPED") == 1);
    // The user checks the stop ("3 of 5"); meanwhile the source empties.
    let (_, out, _) = sb.run(&["status", "p"]);
    assert!(out.contains("3 of 5"), "{out}");
    for i in 3..5 {
        std::fs::remove_file(sb.path(&format!("a/f{i}.txt"))).unwrap();
    }
    let runs = w.runs("p");
    let (code, out, err) = sb.run(&["resume", "p", "--force-once"]);
    assert_eq!(code, Some(0), "{out}{err}");
    w.wait("the forced run's end", WAIT, || {
        w.count("p", "STOPPED") == 2 || w.runs("p") > runs
    });
    let left: Vec<String> = cli::disk_files(&sb.path("b"))
        .into_keys()
        .filter(|k| k.ends_with(".txt") && !k.contains(".syncengine"))
        .collect();
    assert_eq!(
        left.len(),
        5,
        "the run forced past a 3-of-5 max-delete stop deleted {} files of the destination \
         when the source was empty: {left:?}\n{}",
        5 - left.len(),
        w.log()
    );
    assert!(w.log().contains("empty"), "{}", w.log());

    // The source back as it was when the first stop was seen: run as it is, the pair stops
    // on the same 3 of 5 again, and the forced run deletes those 3 files (to the trash).
    for i in 3..5 {
        write(&sb.path(&format!("a/f{i}.txt")), "keep");
    }
    let (code, out, err) = sb.run(&["resume", "p"]);
    assert_eq!(code, Some(0), "{out}{err}");
    w.wait("the third stop", WAIT, || w.count("p", "STOPPED") == 3);
    assert!(w.log().matches("3 of 5").count() >= 2, "{}", w.log());
    let (code, out, err) = sb.run(&["resume", "p", "--force-once"]);
    assert_eq!(code, Some(0), "{out}{err}");
    w.wait("the forced run", WAIT, || {
        (0..3).all(|i| !sb.path(&format!("b/f{i}.txt")).exists())
    });
    assert!((3..5).all(|i| sb.path(&format!("b/f{i}.txt")).exists()));
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// A pair with `paused = true` in the file, resumed on the running watch, runs: `status`
/// says so (it said "idle (paused)" and `"paused": true`, from the file, while the pair ran).
#[test]
fn status_of_a_pair_paused_in_the_file_and_resumed_says_it_runs() {
    let sb = Sandbox::new();
    sb.config(&sb.pair("p", "a", "b", "paused = true"));
    let w = sb.watch(&[]);
    w.wait("the watch to start", WAIT, || w.count("p", "added") == 1);
    let (_, out, _) = sb.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["pairs"][0]["paused"], true, "{out}");

    let (code, out, err) = sb.run(&["resume", "p"]);
    assert_eq!(code, Some(0), "{out}{err}");
    write(&sb.path("a/x.txt"), "x");
    w.wait("the resumed pair's run", WAIT, || {
        read(&sb.path("b/x.txt")).as_deref() == Some("x")
    });
    w.wait("its report", WAIT, || w.runs("p") >= 1);
    let (_, out, _) = sb.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["pairs"][0]["status"]["paused"], false, "{out}");
    assert_eq!(status["pairs"][0]["paused"], false, "{out}");
    let (_, out, _) = sb.run(&["status"]);
    assert!(!out.contains("paused"), "{out}");

    // When the watch stops, the file pauses the pair again for the next one: so says status.
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
    let (_, out, _) = sb.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["pairs"][0]["paused"], true, "{out}");
}

/// `pause` of a pair of the file that the running watch could not start (here its root
/// overlaps another pair's) is taken: the pair starts paused once the file is fixed and
/// reloaded, and stays paused across a restart. (It was refused with "the running watch has
/// no pair", so the pair ran as soon as it started.)
#[test]
fn a_pair_not_started_yet_can_be_paused() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("a/sub")).unwrap();
    write(&sb.path("d/x.txt"), "x");
    let outer = sb.pair("a-outer", "a", "b", "");
    sb.config(&format!("{outer}{}", sb.pair("b-inner", "a/sub", "c", "")));
    let w = sb.watch(&[]);
    w.wait("the refusal", WAIT, || {
        w.count("b-inner", "not started") == 1
    });

    let (code, out, err) = sb.run(&["pause", "b-inner"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("b-inner: paused"), "{out}");
    // Kept when the watch stops before the pair could start.
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
    let (_, out, _) = sb.run(&["status", "--json", "b-inner"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["pairs"][0]["paused"], true, "{out}");
    let w = sb.watch(&[]);
    w.wait("the refusal again", WAIT, || {
        w.count("b-inner", "not started") == 1
    });
    // Fixed and reloaded: the pair starts, paused.
    sb.config(&format!("{outer}{}", sb.pair("b-inner", "d", "c", "")));
    w.signal("HUP");
    w.wait("the fixed pair's start", WAIT, || {
        w.count("b-inner", "added") == 1
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !sb.path("c/x.txt").exists(),
        "a paused pair ran\n{}",
        w.log()
    );
    let (_, out, _) = sb.run(&["status", "--json", "b-inner"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["pairs"][0]["status"]["state"], "paused", "{out}");
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
    // Recorded: the next watch starts it paused too; resume lets it run.
    let w = sb.watch(&[]);
    w.wait("the restart", WAIT, || w.count("b-inner", "added") == 1);
    let (_, out, _) = sb.run(&["status", "--json", "b-inner"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["pairs"][0]["status"]["state"], "paused", "{out}");
    let (code, out, err) = sb.run(&["resume", "b-inner"]);
    assert_eq!(code, Some(0), "{out}{err}");
    w.wait("the resumed pair's run", WAIT, || {
        read(&sb.path("c/x.txt")).as_deref() == Some("x")
    });
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// SIGTERM during a run: the log says the run was cancelled, and the status left for
/// `status` says the pair was idle, not "syncing" (the run was cut short; it said "when the
/// watch stopped: syncing" and the log ended at "SIGTERM: stopping cleanly"). Nothing half
/// copied is left on the destination.
#[test]
fn sigterm_during_a_run_is_logged_and_leaves_no_run_in_the_status() {
    let sb = Sandbox::new();
    // 64 MiB at 4 MiB/s: a run of some 16 s.
    write(&sb.path("a/small.txt"), "s");
    std::fs::write(sb.path("a/big.bin"), vec![7u8; 64 << 20]).unwrap();
    sb.config(&sb.pair(
        "p",
        "a",
        "b",
        "mode = \"source-to-destination\"\nbwlimit = \"4M\"",
    ));
    let w = sb.watch(&[]);
    let state = || {
        let (_, out, _) = sb.run(&["status", "--json"]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["pairs"][0]["status"]["state"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    w.wait("the run to sync", WAIT, || state() == "syncing");
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("p: run cancelled"), "{log}");
    let (_, out, _) = sb.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["running"], false, "{out}");
    assert_eq!(status["pairs"][0]["status"]["state"], "idle", "{out}");
    assert!(
        read(&sb.path("b/big.bin")).is_none_or(|t| t.len() == 64 << 20),
        "half a file on the destination"
    );
}

/// A state directory that cannot be made (a file is in its way) is exit status 1, as the
/// help says ("the state directory cannot be written"), not a usage error (2); a second
/// watch on the same state directory is still a usage error.
#[test]
fn a_state_directory_that_cannot_be_made_is_exit_status_1() {
    let sb = Sandbox::new();
    sb.config(&sb.pair("p", "a", "b", ""));
    write(&sb.path("state"), "a file, not a folder");
    let (code, out, err) = sb.run(&["watch"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("cannot create the state directory"), "{err}");
}

/// inotify watches the watch process holds (Linux: the `inotify` lines of its descriptors'
/// fdinfo).
fn inotify_watches(pid: u32) -> usize {
    let mut n = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == "anon_inode:inotify")
        {
            let info = std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            n += info.lines().filter(|l| l.starts_with("inotify")).count();
        }
    }
    n
}

/// A symbolic link inside a root to a folder elsewhere is not followed by the watch, as the
/// runs do not follow it ("a symlink (not followed)"): the watch held one inotify watch per
/// folder of the linked tree (a link to /usr: 15 000 of the user's fs.inotify.max_user_watches,
/// shared with every other program), and a change out there started runs of the pair.
#[test]
#[cfg(target_os = "linux")]
fn a_symlink_in_a_root_is_not_followed_by_the_watch() {
    let sb = Sandbox::new();
    write(&sb.path("a/mine.txt"), "mine");
    for i in 0..300 {
        std::fs::create_dir_all(sb.path(&format!("elsewhere/d{i}"))).unwrap();
    }
    std::os::unix::fs::symlink(sb.path("elsewhere"), sb.path("a/link")).unwrap();
    sb.config(&sb.pair("p", "a", "b", "mode = \"source-to-destination\""));
    let w = sb.watch(&[]);
    w.wait("the first run", WAIT, || w.runs("p") == 1);
    let watches = inotify_watches(w.child.id());
    assert!(
        watches < 50,
        "{watches} inotify watches for a pair of a few folders"
    );
    write(&sb.path("elsewhere/d7/x.txt"), "not the pair's");
    // Three times the debounce: a change the watch saw would have started a run by then.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(w.runs("p"), 1, "{}", w.log());
    // The pair's own changes still arrive.
    write(&sb.path("a/new.txt"), "new");
    w.wait("a change in the root", WAIT, || {
        read(&sb.path("b/new.txt")).as_deref() == Some("new")
    });
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
}
