//! `syncengine watch`, `pause`, `resume` and `status` with real clients: local folders, and a
//! local ↔ S3 (moto) pair. Each wait is bounded by ten times the interval that should make
//! the change arrive (the 2 s debounce, or the poll interval); how fast changes arrive is a
//! figure of `bench/watch.sh`, not an assertion here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli;
#[path = "support/watch.rs"]
mod harness;

use std::time::Duration;

use harness::{Sandbox, read, write};

/// Ten times the interval that makes a change arrive: the debounce's 2 s quiet time for a
/// watched root, the 2 s poll of the S3 pair's bucket.
const WAIT: Duration = Duration::from_secs(20);

/// A file created, edited, renamed and deleted on either side of a two-way local pair
/// arrives on the other; the runs' own writes start no run of their own; SIGTERM stops
/// cleanly with exit 0 and leaves no socket behind.
#[test]
fn changes_on_either_side_arrive_and_own_writes_start_no_run() {
    let sb = Sandbox::new();
    write(&sb.path("a/first.txt"), "1");
    sb.config(&sb.pair("p", "a", "b", ""));
    let w = sb.watch(&[]);
    w.wait("the first run", WAIT, || {
        read(&sb.path("b/first.txt")).as_deref() == Some("1")
    });
    w.wait("the first run's report", WAIT, || w.runs("p") == 1);

    for (here, there) in [("a", "b"), ("b", "a")] {
        let at = |side: &str, name: &str| sb.path(&format!("{side}/dir/{name}"));
        let before = w.runs("p");
        write(&at(here, "new.txt"), here);
        w.wait(&format!("a file created in {here}"), WAIT, || {
            read(&at(there, "new.txt")).as_deref() == Some(here)
        });
        // The run wrote `there`: its own writes start no second run. (Its report may come a
        // moment after the file: wait for it, not for any earlier one.)
        w.wait("the run's report", WAIT, || w.runs("p") > before);
        let runs = w.runs("p");
        std::thread::sleep(Duration::from_secs(5));
        assert_eq!(
            w.runs("p"),
            runs,
            "the run's own writes started a run:\n{}",
            w.log()
        );

        // Each change below also waits for its run's report, which can come a moment after
        // the file: the next side counts runs from after the last one (on a loaded machine a
        // late report of the delete was once counted as the next creation's run).
        let before = w.runs("p");
        write(&at(here, "new.txt"), &format!("{here} edited"));
        w.wait(&format!("an edit in {here}"), WAIT, || {
            read(&at(there, "new.txt")) == Some(format!("{here} edited"))
        });
        w.wait("the edit's report", WAIT, || w.runs("p") > before);
        let before = w.runs("p");
        std::fs::rename(at(here, "new.txt"), at(here, "renamed.txt")).unwrap();
        w.wait(&format!("a rename in {here}"), WAIT, || {
            !at(there, "new.txt").exists()
                && read(&at(there, "renamed.txt")) == Some(format!("{here} edited"))
        });
        w.wait("the rename's report", WAIT, || w.runs("p") > before);
        let before = w.runs("p");
        std::fs::remove_file(at(here, "renamed.txt")).unwrap();
        w.wait(&format!("a delete in {here}"), WAIT, || {
            !at(there, "renamed.txt").exists()
        });
        w.wait("the delete's report", WAIT, || w.runs("p") > before);
    }
    // The deleted and overwritten versions are in the trash, not lost.
    let trashed = |side: &str| {
        cli::disk_files(&sb.path(&format!("{side}/.syncengine/trash")))
            .keys()
            .filter(|k| !k.is_empty())
            .count()
    };
    assert!(trashed("a") >= 2 && trashed("b") >= 2, "{}", w.log());

    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("watch stopped"), "{log}");
    assert!(!sb.path("state/watch.sock").exists());
}

/// The watch runs with glibc's malloc limited to 2 arenas (it restarts itself in place with
/// the tunable): what a long-lived process keeps after its first runs stays small.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn the_watch_runs_with_two_malloc_arenas() {
    let sb = Sandbox::new();
    sb.config(&sb.pair("p", "a", "b", ""));
    let w = sb.watch(&[]);
    w.wait("the first run", WAIT, || w.runs("p") == 1);
    let environ = std::fs::read(format!("/proc/{}/environ", w.child.id())).unwrap();
    let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    assert!(
        vars.contains(&&b"GLIBC_TUNABLES=glibc.malloc.arena_max=2"[..]),
        "{:?}",
        String::from_utf8_lossy(&environ)
    );
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// A burst of 10 000 file creations makes at most 3 runs, and all of them arrive.
#[test]
fn a_burst_of_ten_thousand_creations_makes_at_most_three_runs() {
    let sb = Sandbox::new();
    sb.config(&sb.pair("burst", "a", "b", "mode = \"source-to-destination\""));
    let w = sb.watch(&[]);
    w.wait("the first run", WAIT, || w.runs("burst") == 1);
    for i in 0..10_000 {
        write(&sb.path(&format!("a/d{}/f{i}.txt", i % 20)), "x");
    }
    // Copying 10 000 files in a debug build: bounded by the work, not by an interval.
    w.wait("10 000 files to arrive", Duration::from_secs(300), || {
        cli::disk_files(&sb.path("b"))
            .keys()
            .filter(|k| k.ends_with(".txt"))
            .count()
            == 10_000
    });
    // Anything the watcher still holds gets its debounce to start a run.
    std::thread::sleep(Duration::from_secs(5));
    let runs = w.runs("burst") - 1;
    assert!((1..=3).contains(&runs), "{runs} runs:\n{}", w.log());
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// `pause` holds changes back (also across a restart of the watch: the pause is recorded)
/// and `resume` delivers them; `status` says paused.
#[test]
fn pause_holds_changes_back_and_resume_delivers_them() {
    let sb = Sandbox::new();
    sb.config(&sb.pair("p", "a", "b", ""));
    let w = sb.watch(&[]);
    w.wait("the first run", WAIT, || w.runs("p") == 1);

    let (code, out, err) = sb.run(&["pause", "p"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("p: paused"), "{out}");
    write(&sb.path("a/held.txt"), "held");
    // Three times the debounce: a watched pair would have run by then.
    std::thread::sleep(Duration::from_secs(6));
    assert!(!sb.path("b/held.txt").exists(), "a paused pair ran");
    let (code, out, _) = sb.run(&["status", "--json"]);
    assert_eq!(code, Some(0));
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["running"], true, "{out}");
    assert_eq!(status["pairs"][0]["status"]["state"], "paused", "{out}");

    // The pause holds across a restart.
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
    let (_, out, _) = sb.run(&["status"]);
    assert!(out.contains("no watch running"), "{out}");
    assert!(out.contains("paused"), "{out}");
    let w = sb.watch(&[]);
    w.wait("the watch to start", WAIT, || w.count("p", "added") == 1);
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        !sb.path("b/held.txt").exists(),
        "a paused pair ran after a restart"
    );
    assert_eq!(w.runs("p"), 0, "{}", w.log());

    let (code, out, err) = sb.run(&["resume", "p"]);
    assert_eq!(code, Some(0), "{out}{err}");
    w.wait("the held change after resume", WAIT, || {
        read(&sb.path("b/held.txt")).as_deref() == Some("held")
    });
    let (code, _) = w.stop();
    assert_eq!(code, Some(0));

    // With no watch running, a pause is recorded: `run` skips the pair unless named.
    let (code, out, err) = sb.run(&["pause", "p"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("no `syncengine watch` is running"), "{out}");
    write(&sb.path("a/later.txt"), "later");
    let (code, out, err) = sb.run(&["run"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("p: paused (`syncengine pause`), not run"),
        "{out}"
    );
    assert!(!sb.path("b/later.txt").exists());
    let (code, out, err) = sb.run(&["run", "p"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(sb.path("b/later.txt").exists(), "{out}");
    // A damaged record runs no unnamed pair.
    std::fs::write(sb.path("state/service-paused.json"), "{").unwrap();
    let (code, _, err) = sb.run(&["run"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("service-paused.json"), "{err}");
    std::fs::remove_file(sb.path("state/service-paused.json")).unwrap();

    // Unknown pairs are usage errors, with or without a watch.
    let (code, _, err) = sb.run(&["pause", "nope"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no pair `nope`"), "{err}");
}

/// A max-delete stop stops only its pair: the other pair goes on, nothing of the stopped
/// pair's files is deleted, and `resume --force-once` runs it once past the stop.
#[test]
fn a_max_delete_stop_stops_only_that_pair() {
    let sb = Sandbox::new();
    for i in 0..5 {
        write(&sb.path(&format!("a/f{i}.txt")), "keep");
    }
    sb.config(&format!(
        "{}{}",
        sb.pair("guarded", "a", "b", "mode = \"source-to-destination\""),
        sb.pair("other", "c", "d", "")
    ));
    let w = sb.watch(&[]);
    w.wait("the first runs", WAIT, || {
        w.runs("guarded") == 1 && w.runs("other") == 1
    });
    assert_eq!(cli::disk_files(&sb.path("b")).len(), 5);

    // 3 of 5 (60%) is past the default max-delete of 50%.
    for i in 0..3 {
        std::fs::remove_file(sb.path(&format!("a/f{i}.txt"))).unwrap();
    }
    w.wait("the stop", WAIT, || w.count("guarded", "STOPPED") == 1);
    assert!(
        (0..5).all(|i| sb.path(&format!("b/f{i}.txt")).exists()),
        "a stopped run deleted files"
    );
    // The other pair goes on.
    write(&sb.path("c/still.txt"), "on");
    w.wait("the other pair's change", WAIT, || {
        read(&sb.path("d/still.txt")).as_deref() == Some("on")
    });
    let (_, out, _) = sb.run(&["status", "guarded"]);
    assert!(out.contains("stopped by a safety rule"), "{out}");
    assert!(out.contains("--force-once"), "{out}");
    // Never retried into the rule: still one stop, no deletion, after a poll's worth.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(w.count("guarded", "STOPPED"), 1, "{}", w.log());

    let (code, out, err) = sb.run(&["resume", "guarded", "--force-once"]);
    assert_eq!(code, Some(0), "{out}{err}");
    w.wait("the forced run", WAIT, || {
        (0..3).all(|i| !sb.path(&format!("b/f{i}.txt")).exists())
    });
    // What it deleted went to the trash.
    assert_eq!(
        cli::disk_files(&sb.path("b/.syncengine/trash"))
            .keys()
            .filter(|k| k.ends_with(".txt"))
            .count(),
        3
    );
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// SIGHUP adds a pair from the edited file; a broken file is reported and the old config
/// kept (its pairs go on).
#[test]
fn sighup_adds_a_pair_and_keeps_the_old_config_when_the_new_one_is_broken() {
    let sb = Sandbox::new();
    let first = sb.pair("one", "a", "b", "");
    sb.config(&first);
    let w = sb.watch(&[]);
    w.wait("the first run", WAIT, || w.runs("one") == 1);

    write(&sb.path("c/new.txt"), "added");
    sb.config(&format!("{first}{}", sb.pair("two", "c", "d", "")));
    w.signal("HUP");
    w.wait("the added pair's run", WAIT, || {
        read(&sb.path("d/new.txt")).as_deref() == Some("added")
    });

    sb.config(&format!("{first}[pairs.two]\nsource = \n"));
    w.signal("HUP");
    w.wait("the reload error", WAIT, || {
        w.log().contains("keeping the config loaded before")
    });
    write(&sb.path("c/later.txt"), "still");
    w.wait("the kept pair's run", WAIT, || {
        read(&sb.path("d/later.txt")).as_deref() == Some("still")
    });
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// Pairs whose roots overlap are refused (the later one, with the reason), the other runs;
/// a second watch on the same state directory is refused.
#[test]
fn overlapping_roots_and_a_second_watch_are_refused() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("a/sub")).unwrap();
    write(&sb.path("a/sub/x.txt"), "x");
    // Pairs start in name order: `a-outer` first, `b-inner` is refused.
    sb.config(&format!(
        "{}{}",
        sb.pair("a-outer", "a", "b", ""),
        sb.pair("b-inner", "a/sub", "c", "")
    ));
    let w = sb.watch(&[]);
    w.wait("the refusal", WAIT, || {
        w.count("b-inner", "not started") == 1
    });
    assert!(w.log().contains("overlaps"), "{}", w.log());
    w.wait("the other pair's run", WAIT, || w.runs("a-outer") == 1);
    assert!(!sb.path("c/x.txt").exists());

    let (code, _, err) = sb.run(&["watch"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("another `syncengine watch` is running"),
        "{err}"
    );
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// A local ↔ S3 (moto) pair under watch: the local root watched, the bucket polled every
/// 2 s; a file created, edited, renamed and deleted on either side arrives.
#[test]
#[cfg(feature = "s3")]
fn a_local_and_an_s3_pair_under_watch() {
    use syncengine::{RelPath, StorageClientExt};

    let Some(endpoint) = cli::moto() else { return };
    let sb = Sandbox::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("watch-{}-{nanos}", std::process::id());
    // A file that stays: a side emptied of everything is a safety stop.
    write(&sb.path("a/anchor.txt"), "stays");
    sb.config(&format!(
        "[remotes.moto]\nurl = \"s3://test/{prefix}\"\nendpoint = \"{endpoint}\"\n\
         region = \"us-east-1\"\naccess_key_id_env = \"MY_MOTO_KEY\"\n\
         secret_access_key_env = \"MY_MOTO_SECRET\"\nallow_http = true\n\n\
         [pairs.s3]\nsource = \"{}\"\ndestination = \"moto:\"\npoll_interval = \"2s\"\n",
        sb.p("a")
    ));
    let remote = syncengine::s3::S3Builder::for_store(syncengine::s3::StoreKind::S3, "test")
        .with_prefix(prefix)
        .with_endpoint(endpoint)
        .with_region("us-east-1")
        .with_credentials("testing", "testing")
        .with_allow_http(true)
        .build()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let get = |key: &str| {
        rt.block_on(remote.read_to_bytes(&RelPath::new(key).unwrap()))
            .ok()
            .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
    };
    // The keys the file names, for the watch only.
    let w = sb.watch_with(
        &[],
        &[("MY_MOTO_KEY", "testing"), ("MY_MOTO_SECRET", "testing")],
    );
    w.wait("the first run", WAIT, || w.runs("s3") >= 1);

    // Local changes reach the bucket.
    write(&sb.path("a/local.txt"), "from disk");
    w.wait("a local file in the bucket", WAIT, || {
        get("local.txt").as_deref() == Some("from disk")
    });
    write(&sb.path("a/local.txt"), "edited on disk");
    w.wait("a local edit in the bucket", WAIT, || {
        get("local.txt").as_deref() == Some("edited on disk")
    });
    std::fs::rename(sb.path("a/local.txt"), sb.path("a/moved.txt")).unwrap();
    w.wait("a local rename in the bucket", WAIT, || {
        get("local.txt").is_none() && get("moved.txt").as_deref() == Some("edited on disk")
    });
    std::fs::remove_file(sb.path("a/moved.txt")).unwrap();
    w.wait("a local delete in the bucket", WAIT, || {
        get("moved.txt").is_none()
    });

    // Bucket changes reach the disk (polled every 2 s).
    let put = |key: &str, text: &str| {
        rt.block_on(remote.put(&RelPath::new(key).unwrap(), text.to_owned().into()))
            .unwrap();
    };
    let del = |key: &str| {
        rt.block_on(remote.delete(&RelPath::new(key).unwrap()))
            .unwrap();
    };
    put("remote.txt", "from s3");
    w.wait("a bucket object on disk", WAIT, || {
        read(&sb.path("a/remote.txt")).as_deref() == Some("from s3")
    });
    // A new modification time for the edit: S3 keeps whole seconds.
    std::thread::sleep(Duration::from_millis(1100));
    put("remote.txt", "edited in s3");
    w.wait("a bucket edit on disk", WAIT, || {
        read(&sb.path("a/remote.txt")).as_deref() == Some("edited in s3")
    });
    put("renamed.txt", "edited in s3");
    del("remote.txt");
    w.wait("a bucket rename on disk", WAIT, || {
        !sb.path("a/remote.txt").exists()
            && read(&sb.path("a/renamed.txt")).as_deref() == Some("edited in s3")
    });
    del("renamed.txt");
    w.wait("a bucket delete on disk", WAIT, || {
        !sb.path("a/renamed.txt").exists()
    });
    let (code, log) = w.stop();
    assert_eq!(code, Some(0), "{log}");
}
