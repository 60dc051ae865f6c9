//! The config file (issue 12): parsing (the issue's sample verbatim, unknown keys with a
//! suggestion and the line, bad durations and modes, secrets written in the file), `NAME:path`
//! locations on the command line and in the file, one state for a pair run by a remote's name
//! and by its URL (local and S3 on moto), and `syncengine run [PAIR...]` with its exit status.
#![cfg(feature = "cli")]
// Test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use syncengine::config::Config;
use syncengine::location::Location;

/// The sample of issue 12, as written there.
const SAMPLE: &str = r#"[remotes.photos-bucket]
url = "s3://family-photos/archive"
endpoint = "https://s3.eu-central-1.amazonaws.com"   # optional
profile = "home"                                      # optional; or env-var names for secrets

[pairs.photos]
source = "~/Pictures"
destination = "photos-bucket:2026"
mode = "source-backup"
exclude = ["*.tmp", ".DS_Store"]
poll_interval = "60s"
watch = true

[pairs.notes]
source = "~/notes"
destination = "webdav://nas.local/notes"
mode = "two-way"
conflict = "keep-both"
"#;

/// A sandbox: a home folder (HOME), a state folder, and a config file in it.
struct Sandbox {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("home")).unwrap();
        Sandbox { _tmp: tmp, root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn p(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    /// Writes the config file `config.toml` and returns its path.
    fn config(&self, text: &str) -> PathBuf {
        let path = self.path("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs the binary with HOME in the sandbox, no config variables, the state in the
    /// sandbox, `env` added; returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
        let mut cmd = Command::new(cli::BIN);
        cmd.args(args)
            .env("HOME", self.path("home"))
            .env("SYNCENGINE_STATE_DIR", self.path("state"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SYNCENGINE_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `syncengine --config <config.toml> <args…>`.
    fn with_config(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let config = self.p("config.toml");
        let mut all = vec!["--config", config.as_str()];
        all.extend(args);
        self.run(&all, &[])
    }
}

/// Writes `files` (relative path, content) under `dir`.
fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (rel, content) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

/// The `--json` object of a sync's stdout.
fn json(stdout: &str) -> serde_json::Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in {stdout:?}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn the_issue_sample_parses_as_written() {
    let config = Config::parse(SAMPLE, Path::new("config.toml")).unwrap();
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    let remote = &config.remotes["photos-bucket"];
    assert_eq!(
        remote.location,
        Location::Remote {
            scheme: "s3".into(),
            url: "s3://family-photos/archive".into()
        }
    );
    let overlay = remote.overlay().unwrap();
    assert_eq!(
        overlay.var("AWS_ENDPOINT_URL_S3").as_deref(),
        Some("https://s3.eu-central-1.amazonaws.com")
    );
    assert_eq!(overlay.var("AWS_PROFILE").as_deref(), Some("home"));
    // The profile's credentials, not keys the environment may hold for other stores.
    assert!(overlay.overrides("AWS_ACCESS_KEY_ID"));
    assert_eq!(overlay.var("AWS_ACCESS_KEY_ID"), None);

    let names: Vec<&str> = config.pairs.keys().map(String::as_str).collect();
    assert_eq!(names, ["notes", "photos"]);
    let photos = &config.pairs["photos"];
    let home = std::env::var("HOME").unwrap();
    assert_eq!(photos.source, format!("{home}/Pictures"));
    assert_eq!(photos.destination, "photos-bucket:2026");
    assert_eq!(photos.mode, syncengine::SyncMode::SourceBackup);
    assert!(photos.watch && !photos.paused);
    assert_eq!(
        photos.poll_interval,
        Some(std::time::Duration::from_secs(60))
    );
    assert_eq!(photos.rescan_interval, None);
    assert_eq!(
        photos.sync_flags(),
        [
            "--mode=source-backup",
            "--exclude=*.tmp",
            "--exclude=.DS_Store"
        ]
    );
    let notes = &config.pairs["notes"];
    assert_eq!(notes.destination, "webdav://nas.local/notes");
    assert_eq!(
        notes.sync_flags(),
        ["--mode=two-way", "--conflict=keep-both"]
    );
    // Local roots are watched unless `watch = false`.
    assert!(notes.watch);

    // `photos-bucket:2026` is the remote's URL with /2026.
    let resolved = config.resolve("photos-bucket:2026").unwrap();
    assert_eq!(
        resolved.location,
        Location::Remote {
            scheme: "s3".into(),
            url: "s3://family-photos/archive/2026".into()
        }
    );
    assert_eq!(resolved.remote.as_deref(), Some("photos-bucket"));
}

#[test]
fn the_readme_shows_the_sample() {
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(SAMPLE.trim_end()),
        "README.md's \"Configuration file\" section must quote the sample of issue 12"
    );
}

#[test]
fn an_unknown_key_names_the_line_and_the_closest_key() {
    let text = "[pairs.photos]\n\
                source = \"/data/photos\"\n\
                destination = \"/backup/photos\"\n\
                mode = \"source-backup\"\n\
                \n\
                # a comment\n\
                exlude = [\"*.tmp\"]\n";
    let err = Config::parse(text, Path::new("/etc/x.toml")).unwrap_err();
    assert_eq!((err.line, err.column), (Some(7), Some(1)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("/etc/x.toml")
            && msg.contains("unknown key `exlude` in [pairs.photos]")
            && msg.contains("did you mean `exclude`?"),
        "{msg}"
    );
    // In a remote: the keys of its scheme.
    let text = "[remotes.bucket]\nurl = \"s3://b/p\"\nregoin = \"eu-west-1\"\n";
    let msg = Config::parse(text, Path::new("c.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("line 3") && msg.contains("did you mean `region`?"),
        "{msg}"
    );
    // A setting of another backend says so.
    let text = "[remotes.nas]\nurl = \"webdav://nas/x\"\nregion = \"eu-west-1\"\n";
    let msg = Config::parse(text, Path::new("c.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("line 3") && msg.contains("setting of s3 remotes"),
        "{msg}"
    );
    // At the top level.
    let msg = Config::parse("[pair.x]\nsource = \"/a\"\n", Path::new("c.toml"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("did you mean `pairs`?"), "{msg}");

    // The command says the same and syncs nothing.
    let sb = Sandbox::new();
    write_files(&sb.path("a"), &[("x.txt", "x")]);
    sb.config(&format!(
        "[pairs.p]\nsource = \"{}\"\ndestination = \"{}\"\nexlude = [\"*.tmp\"]\n",
        sb.p("a"),
        sb.p("b")
    ));
    let (code, _, stderr) = sb.with_config(&["run"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "line 4, column 1: unknown key `exlude` in [pairs.p]: did you mean `exclude`?"
        ),
        "{stderr}"
    );
    assert!(!sb.path("b").exists(), "a broken config synced");
}

#[test]
fn bad_values_name_the_line_and_the_fix() {
    let base = "[pairs.p]\nsource = \"/data/a\"\ndestination = \"/data/b\"\n";
    let cases = [
        (
            "poll_interval = \"5 minutes\"",
            "write it as \"90s\", \"5m\" or \"1h\"",
        ),
        ("rescan_interval = true", "must be a duration"),
        ("mode = \"sideways\"", "valid values"),
        ("conflict = \"coin-flip\"", "valid values"),
        ("max_delete = 150", "from 0 to 100"),
        ("transfers = 0", "from 1 to 1024"),
        ("bwlimit = \"10MB\"", "10MiB"),
        ("watch = \"yes\"", "true or false"),
        ("exclude = [\"*.tmp\", 3]", "list of strings"),
        ("force = true", "applies to one run"),
        ("state_dir = \"/x\"", "--state-dir"),
        ("trash_keep = \"never\"", "forever"),
        ("protect = \"both\"", "\"source\" or \"destination\""),
    ];
    for (line, expected) in cases {
        let text = format!("{base}{line}\n");
        let err = Config::parse(&text, Path::new("c.toml")).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.line, Some(4), "{line}: {msg}");
        assert!(msg.contains(expected), "{line}: {msg}");
    }
    // Missing required keys name the table's line.
    let err =
        Config::parse("\n[pairs.p]\nsource = \"/data/a\"\n", Path::new("c.toml")).unwrap_err();
    assert_eq!(err.line, Some(2));
    assert!(err.message.contains("has no `destination`"), "{err}");
    let err = Config::parse("[remotes.rr]\nregion = \"x\"\n", Path::new("c.toml")).unwrap_err();
    assert!(err.message.contains("has no `url`"), "{err}");
    // TOML syntax errors keep the file and line.
    let err = Config::parse("[pairs.p]\nsource = /data\n", Path::new("c.toml")).unwrap_err();
    assert_eq!(err.line, Some(2), "{err}");
    // Durations: the same units as the command line.
    let ok = Config::parse(
        &format!("{base}poll_interval = \"90s\"\nrescan_interval = \"1h\"\nmin_age = \"5m\"\n"),
        Path::new("c.toml"),
    )
    .unwrap();
    let p = &ok.pairs["p"];
    assert_eq!(p.poll_interval, Some(std::time::Duration::from_secs(90)));
    assert_eq!(
        p.rescan_interval,
        Some(std::time::Duration::from_secs(3600))
    );
    assert!(p.sync_flags().contains(&"--min-age=300000ms".to_owned()));
    // A bandwidth limit in rclone's form goes to the run as `--bwlimit`.
    let ok = Config::parse(
        &format!("{base}bwlimit = \"1M:off\"\n"),
        Path::new("c.toml"),
    )
    .unwrap();
    assert!(
        ok.pairs["p"]
            .sync_flags()
            .contains(&"--bwlimit=1M:off".to_owned())
    );
}

#[test]
fn a_secret_in_the_file_works_with_a_warning_that_never_shows_it() {
    let text = "[remotes.bucket]\n\
                url = \"s3://b/p\"\n\
                access_key_id = \"AKIDEXAMPLE\"\n\
                secret_access_key = \"hunter2-very-secret\"\n\
                [remotes.nas]\n\
                url = \"webdav://nas/dav\"\n\
                user = \"me\"\n\
                password_env = \"NAS_PASSWORD\"\n";
    let config = Config::parse(text, Path::new("c.toml")).unwrap();
    assert_eq!(config.warnings().len(), 1, "{:?}", config.warnings());
    let w = &config.warnings()[0];
    assert!(
        w.contains("line 4")
            && w.contains("`secret_access_key`")
            && w.contains("secret_access_key_env")
            && w.contains("AWS_SECRET_ACCESS_KEY"),
        "{w}"
    );
    assert!(!w.contains("hunter2"), "{w}");
    let overlay = config.remotes["bucket"].overlay().unwrap();
    assert_eq!(
        overlay.var("AWS_SECRET_ACCESS_KEY").as_deref(),
        Some("hunter2-very-secret")
    );
    assert!(!format!("{overlay:?}").contains("hunter2"));
    // A `_env` key names a variable, read when the remote is opened; unset, it is an error
    // that names it.
    let err = config.remotes["nas"].overlay().unwrap_err();
    assert!(
        err.contains("NAS_PASSWORD") && err.contains("not set"),
        "{err}"
    );

    // The command logs the warning (and never the secret) when it reads the file.
    let sb = Sandbox::new();
    write_files(&sb.path("a"), &[("x.txt", "x")]);
    sb.config(&format!(
        "[remotes.usb]\nurl = \"{}\"\n[remotes.bucket]\nurl = \"s3://b/p\"\nsecret_access_key = \"hunter2-very-secret\"\n",
        sb.p("usb")
    ));
    let a = sb.p("a");
    let (code, _, stderr) = sb.with_config(&["sync", &a, "usb:b", "-q"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = sb.with_config(&["sync", &a, "usb:b"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("WARN") || stderr.contains("warn"),
        "{stderr}"
    );
    assert!(stderr.contains("`secret_access_key`"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn a_defined_remote_works_on_the_sync_command_line_and_an_undefined_one_is_refused() {
    let sb = Sandbox::new();
    write_files(&sb.path("a"), &[("x.txt", "x"), ("d/y.txt", "yy")]);
    sb.config(&format!("[remotes.usb]\nurl = \"{}\"\n", sb.p("usb")));
    let a = sb.p("a");
    let (code, out, err) = sb.with_config(&["sync", &a, "usb:backup/a", "--json", "-q"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(json(&out)["uploaded"], 2);
    assert_eq!(
        std::fs::read_to_string(sb.path("usb/backup/a/d/y.txt")).unwrap(),
        "yy"
    );
    // The config may come from SYNCENGINE_CONFIG too.
    let config = sb.p("config.toml");
    let (code, out, err) = sb.run(
        &["sync", &a, "usb:backup/a", "--json", "-q"],
        &[("SYNCENGINE_CONFIG", &config)],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(json(&out)["uploaded"], 0);

    // Not defined: refused, naming [remotes.NAME]; no folder with a colon is made.
    let (code, _, err) = sb.with_config(&["sync", &a, "usbb:backup"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no remote `usbb` is defined") && err.contains("[remotes.usbb]"),
        "{err}"
    );
    // `..` would leave the remote's folder.
    let (code, _, err) = sb.with_config(&["sync", &a, "usb:../elsewhere"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("would leave the folder of the remote `usb`"),
        "{err}"
    );
    assert!(!sb.path("elsewhere").exists());
    // A config named but missing is an error for a NAME:path location…
    let missing = sb.p("missing.toml");
    let (code, _, err) = sb.run(&["--config", &missing, "sync", &a, "usb:x"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("missing.toml") && err.contains("cannot read"),
        "{err}"
    );
    // …and never read for plain paths: a broken default config does not stop them.
    std::fs::create_dir_all(sb.path("home/.config/syncengine")).unwrap();
    std::fs::write(sb.path("home/.config/syncengine/config.toml"), "[[[").unwrap();
    let b = sb.p("b");
    let (code, _, err) = sb.run(&["sync", &a, &b, "-q"], &[]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = sb.run(&["sync", &a, "usb:y"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(".config/syncengine/config.toml"), "{err}");
}

#[test]
fn a_pair_run_by_remote_name_and_by_url_shares_one_state() {
    let sb = Sandbox::new();
    write_files(&sb.path("a"), &[("keep.txt", "k"), ("gone.txt", "g")]);
    sb.config(&format!(
        "[remotes.usb]\nurl = \"{}\"\n[pairs.docs]\nsource = \"{}\"\ndestination = \"usb:docs\"\n",
        sb.p("usb"),
        sb.p("a")
    ));
    let (code, out, err) = sb.with_config(&["run"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("docs: ok"), "{out}");
    assert!(sb.path("usb/docs/gone.txt").exists());

    // By URL (the path the remote stands for): no change, on the same base.
    let (a, dest) = (sb.p("a"), format!("file://{}", sb.p("usb/docs")));
    let (code, out, err) = sb.run(&["sync", &a, &dest, "--json", "-q"], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    let stats = json(&out);
    assert_eq!(
        (stats["uploaded"].as_u64(), stats["downloaded"].as_u64()),
        (Some(0), Some(0)),
        "{out}"
    );
    // Proof that the base is the same one: a deletion on the source is carried over (a new
    // base would see a file only on the destination and copy it back).
    std::fs::remove_file(sb.path("a/gone.txt")).unwrap();
    let (code, out, err) = sb.run(&["sync", &a, &dest, "--json", "-q"], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    let stats = json(&out);
    assert_eq!(stats["deleted_destination"], 1, "{out}");
    assert_eq!(stats["downloaded"], 0, "{out}");
    assert!(!sb.path("usb/docs/gone.txt").exists());
    assert!(!sb.path("a/gone.txt").exists());
    // And back by name: nothing left to do.
    let (code, out, err) = sb.with_config(&["sync", &a, "usb:docs", "--json", "-q"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let stats = json(&out);
    for k in [
        "uploaded",
        "downloaded",
        "deleted_source",
        "deleted_destination",
    ] {
        assert_eq!(stats[k], 0, "{k}: {out}");
    }
    // One pair in the state directory.
    let (code, out, _) = sb.run(&["pairs", "--json"], &[]);
    assert_eq!(code, Some(0));
    let pairs: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(pairs["pairs"].as_array().map(Vec::len), Some(1), "{out}");
}

#[test]
fn run_syncs_every_pair_and_exits_with_the_worst_status() {
    let sb = Sandbox::new();
    let many: Vec<(String, &str)> = (0..10).map(|i| (format!("f{i}.txt"), "x")).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(p, c)| (p.as_str(), *c)).collect();
    write_files(&sb.path("one/src"), &many);
    write_files(&sb.path("two/src"), &[("a.txt", "a")]);
    sb.config(&format!(
        "[pairs.one]\nsource = \"{}\"\ndestination = \"{}\"\nmode = \"source-to-destination\"\nmax_delete = 20\n\n\
         [pairs.two]\nsource = \"{}\"\ndestination = \"{}\"\n",
        sb.p("one/src"),
        sb.p("one/dst"),
        sb.p("two/src"),
        sb.p("two/dst"),
    ));
    let (code, out, err) = sb.with_config(&["run"]);
    assert_eq!(code, Some(0), "{out}{err}");
    // In name order, each after a line naming it.
    let one = out.find("==> one:").unwrap();
    let two = out.find("==> two:").unwrap();
    assert!(one < two, "{out}");
    assert!(out.contains("one: ok") && out.contains("two: ok"), "{out}");
    assert_eq!(cli::disk_files(&sb.path("one/dst")).len(), 10);

    // Half of one's source goes: over its max_delete of 20%, that pair stops (exit 3); the
    // other pair still runs.
    for i in 0..5 {
        std::fs::remove_file(sb.path(&format!("one/src/f{i}.txt"))).unwrap();
    }
    write_files(&sb.path("two/src"), &[("b.txt", "b")]);
    let (code, out, err) = sb.with_config(&["run"]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        out.contains("one: stopped by a safety rule (exit 3)") && out.contains("two: ok"),
        "{out}"
    );
    assert!(
        err.contains("max-delete") || err.contains("max_delete") || err.contains("delete"),
        "{err}"
    );
    assert_eq!(
        cli::disk_files(&sb.path("one/dst")).len(),
        10,
        "the stopped pair deleted"
    );
    assert!(sb.path("two/dst/b.txt").exists());

    // `run PAIR` runs that pair only.
    write_files(&sb.path("two/src"), &[("c.txt", "c")]);
    let (code, out, err) = sb.with_config(&["run", "two"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains("==> one"), "{out}");
    assert!(sb.path("two/dst/c.txt").exists());
    // --dry-run changes nothing.
    write_files(&sb.path("two/src"), &[("d.txt", "d")]);
    let (code, out, err) = sb.with_config(&["run", "two", "--dry-run"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!sb.path("two/dst/d.txt").exists());

    // An unknown pair: nothing runs, the defined pairs are listed.
    let (code, out, err) = sb.with_config(&["run", "two", "tow2"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("no pair `tow2`") && err.contains("one, two"),
        "{err}"
    );
    assert!(!out.contains("==>"), "{out}");
    assert!(!sb.path("two/dst/d.txt").exists());
}

#[test]
fn run_explains_a_missing_or_empty_config() {
    let sb = Sandbox::new();
    let (code, _, err) = sb.run(&["run"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no config file") && err.contains("--config"),
        "{err}"
    );
    sb.config("");
    let (code, _, err) = sb.with_config(&["run"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("defines no pairs"), "{err}");
    sb.config("# only comments\n[remotes]\n[pairs]\n");
    let (code, _, err) = sb.with_config(&["run", "x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no pair `x`"), "{err}");
    // The help shows an example config.
    let (code, out, _) = sb.run(&["run", "--help"], &[]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("[pairs.photos]") && out.contains("destination = \"photos-bucket:2026\""),
        "{out}"
    );
}

/// The attacks of the brief: names, collisions, same roots, symlinks, unreadable and empty
/// files. Each gives a clear error, and nothing is synced to a wrong place.
#[test]
fn odd_names_and_files_give_clear_errors() {
    let parse = |text: &str| Config::parse(text, Path::new("c.toml"));
    let pair = "source = \"/data/a\"\ndestination = \"/data/b\"\n";
    // Pair names: unicode and dots are fine; spaces, slashes, colons, leading - are not.
    for good in ["\"фото\"", "\"v1.2\"", "my-notes"] {
        let config = parse(&format!("[pairs.{good}]\n{pair}")).unwrap();
        assert_eq!(config.pairs.len(), 1, "{good}");
    }
    for bad in ["\"my photos\"", "\"a/b\"", "\"a:b\"", "\"-x\"", "\"\""] {
        let err = parse(&format!("[pairs.{bad}]\n{pair}")).unwrap_err();
        assert!(err.message.contains("cannot be used"), "{bad}: {err}");
        assert_eq!(err.line, Some(1), "{bad}");
    }
    // Remote names that a location could not tell apart: a drive letter, URL schemes,
    // dots, unicode, spaces.
    for bad in [
        "C",
        "s3",
        "file",
        "https",
        "\"my.nas\"",
        "\"nas box\"",
        "\"фото\"",
        "\"9x\"",
    ] {
        let err = parse(&format!("[remotes.{bad}]\nurl = \"s3://b\"\n")).unwrap_err();
        assert!(err.message.contains("remote name"), "{bad}: {err}");
    }
    // Same source and destination, literally or through a remote.
    let err = parse("[pairs.p]\nsource = \"/data/a\"\ndestination = \"/data/a\"\n").unwrap_err();
    assert!(err.message.contains("the same location"), "{err}");
    assert_eq!(err.line, Some(3));
    // Relative paths and ~user are refused (they would depend on where the command runs).
    for bad in ["data/a", "./a", "~bob/a"] {
        let err = parse(&format!(
            "[pairs.p]\nsource = \"{bad}\"\ndestination = \"/x\"\n"
        ))
        .unwrap_err();
        assert_eq!(err.line, Some(2), "{bad}: {err}");
    }
    // A NAME:path for a remote the file does not define, with a suggestion.
    let err = parse(
        "[remotes.usb]\nurl = \"/mnt/usb\"\n[pairs.p]\nsource = \"/data/a\"\ndestination = \"ubs:x\"\n",
    )
    .unwrap_err();
    assert!(
        err.message.contains("remote `ubs`") && err.message.contains("did you mean `usb`?"),
        "{err}"
    );
    // A remote's name without its colon is a relative path: the message says so.
    let err = parse(
        "[remotes.usb]\nurl = \"/mnt/usb\"\n[pairs.p]\nsource = \"/data/a\"\ndestination = \"usb\"\n",
    )
    .unwrap_err();
    assert!(err.message.contains("write \"usb:\""), "{err}");
    // A pair defined twice.
    let err = parse(&format!("[pairs.p]\n{pair}[pairs.p]\n")).unwrap_err();
    assert_eq!(err.line, Some(4), "{err}");
    assert!(err.message.contains("already defined"), "{err}");
    // A remote's url naming another remote, or relative.
    assert!(
        parse("[remotes.aa]\nurl = \"bb:x\"\n")
            .unwrap_err()
            .message
            .contains("cannot name another remote")
    );
    assert!(
        parse("[remotes.aa]\nurl = \"rel/dir\"\n")
            .unwrap_err()
            .message
            .contains("relative")
    );
    // Both a secret and its _env.
    let err = parse("[remotes.aa]\nurl = \"s3://b\"\nsecret_access_key = \"x\"\nsecret_access_key_env = \"Y\"\n").unwrap_err();
    assert!(err.message.contains("keep one"), "{err}");

    // Through the command: a same-place pair by remote and URL is refused, nothing synced.
    let sb = Sandbox::new();
    write_files(&sb.path("a"), &[("x.txt", "x")]);
    sb.config(&format!(
        "[remotes.here]\nurl = \"{}\"\n[pairs.loop]\nsource = \"{}\"\ndestination = \"here:\"\n",
        sb.p("a"),
        sb.p("a")
    ));
    let (code, out, err) = sb.with_config(&["run"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("same folder"), "{err}");
    assert!(out.contains("loop: not run: usage error (exit 2)"), "{out}");

    // A symlinked config file is read through the link.
    let sb = Sandbox::new();
    write_files(&sb.path("a"), &[("x.txt", "x")]);
    std::fs::create_dir_all(sb.path("real")).unwrap();
    std::fs::write(
        sb.path("real/c.toml"),
        format!(
            "[pairs.p]\nsource = \"{}\"\ndestination = \"{}\"\n",
            sb.p("a"),
            sb.p("b")
        ),
    )
    .unwrap();
    std::fs::create_dir_all(sb.path("home/.config/syncengine")).unwrap();
    std::os::unix::fs::symlink(
        sb.path("real/c.toml"),
        sb.path("home/.config/syncengine/config.toml"),
    )
    .unwrap();
    let (code, out, err) = sb.run(&["run"], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(sb.path("b/x.txt").exists());
    // A dangling link is an error, not "no config".
    std::fs::remove_file(sb.path("real/c.toml")).unwrap();
    let (code, _, err) = sb.run(&["run"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot read the file"), "{err}");
    // A folder given as the config.
    let real = sb.p("real");
    let (code, _, err) = sb.run(&["--config", &real, "run"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is a folder"), "{err}");
    // Not UTF-8.
    std::fs::write(sb.path("bin.toml"), b"\xff\xfe[pairs]").unwrap();
    let bin = sb.p("bin.toml");
    let (code, _, err) = sb.run(&["--config", &bin, "run"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not UTF-8"), "{err}");
}

/// A config file that cannot be read: an error that says why and what to do. A path through
/// a file (not a folder) cannot be read by anyone, root included; a mode-000 file only by
/// other users than root (that part is skipped, with a message, when running as root).
#[test]
fn an_unreadable_config_is_an_error() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    std::fs::write(sb.path("plain"), "x").unwrap();
    let through_a_file = sb.p("plain/config.toml");
    let (code, _, err) = sb.run(&["--config", &through_a_file, "run"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("plain/config.toml") && err.contains("cannot read the file"),
        "{err}"
    );
    let path = sb.config("[pairs]\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&path).is_ok() {
        eprintln!("running as root: a mode-000 file is still readable; that part skipped");
        return;
    }
    let (code, _, err) = sb.with_config(&["run"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("cannot read the file") && err.contains("chmod"),
        "{err}"
    );
}

/// An S3 remote (moto) with its endpoint, region and keys from named variables in the file:
/// `run` backs up through it, and `sync` by the bucket URL (with the same endpoint from the
/// environment) finds the same state.
#[test]
#[cfg(feature = "s3")]
fn an_s3_remote_by_name_and_by_url_shares_one_state() {
    let Some(endpoint) = cli::moto() else { return };
    let sb = Sandbox::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("config-remote-{}-{nanos}", std::process::id());
    write_files(&sb.path("a"), &[("keep.txt", "k"), ("gone.txt", "g")]);
    sb.config(&format!(
        "[remotes.moto]\nurl = \"s3://test/{prefix}\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\
         access_key_id_env = \"MY_MOTO_KEY\"\nsecret_access_key_env = \"MY_MOTO_SECRET\"\n\n\
         [pairs.backup]\nsource = \"{}\"\ndestination = \"moto:sub\"\n",
        sb.p("a")
    ));
    let config = sb.p("config.toml");
    // No AWS_* in the environment for the run by name: the file's remote carries it all.
    let clean = [
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("AWS_ENDPOINT_URL", ""),
        ("AWS_ENDPOINT_URL_S3", ""),
        ("AWS_ENDPOINT", ""),
        ("AWS_REGION", ""),
        ("AWS_ALLOW_HTTP", ""),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let mut env = clean.to_vec();
    env.extend([("MY_MOTO_KEY", "testing"), ("MY_MOTO_SECRET", "testing")]);
    let (code, out, err) = sb.run(&["--config", &config, "run"], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("backup: ok"), "{out}");

    // By URL, with the same store from the environment: same base.
    std::fs::remove_file(sb.path("a/gone.txt")).unwrap();
    let url = format!("s3://test/{prefix}/sub");
    let a = sb.p("a");
    let mut env = clean.to_vec();
    env.extend([
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ]);
    let (code, out, err) = sb.run(&["sync", &a, &url, "--json", "-q"], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    let stats = json(&out);
    assert_eq!(stats["deleted_destination"], 1, "{out}");
    assert_eq!(stats["downloaded"], 0, "{out}");
    assert_eq!(stats["uploaded"], 0, "{out}");

    // The variable the file names, unset: an error naming it, nothing synced.
    let (code, _, err) = sb.run(&["--config", &config, "run"], &clean);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("MY_MOTO_KEY") && err.contains("not set"),
        "{err}"
    );
}

/// Found by attacking the first version: a `..` in a pair's `REMOTE:path` is refused when the
/// file is read (with its line), not only when the pair runs; a URL with a password in the
/// file gets the secret warning too; `SYNCENGINE_CONFIG` set but empty means the default file
/// (it made every command a usage error); a `paused` pair is skipped unless named.
#[test]
fn findings_of_the_attack() {
    let parse = |text: &str| Config::parse(text, Path::new("c.toml"));
    let err = parse(
        "[remotes.usb]\nurl = \"/mnt/usb\"\n[pairs.p]\nsource = \"/data/a\"\ndestination = \"usb:x/../../etc\"\n",
    )
    .unwrap_err();
    assert_eq!(err.line, Some(5), "{err}");
    assert!(err.message.contains("would leave the folder"), "{err}");

    let config = parse(
        "[remotes.nas]\nurl = \"webdav://me:pa55word@nas/dav\"\n[pairs.p]\nsource = \"/data/a\"\ndestination = \"sftp://me:other-pass@host/x\"\n",
    )
    .unwrap();
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("line 2") && warnings[0].contains("`url` of [remotes.nas]"));
    assert!(warnings[1].contains("line 5") && warnings[1].contains("`destination` of [pairs.p]"));
    assert!(
        warnings
            .iter()
            .all(|w| !w.contains("pa55word") && !w.contains("other-pass"))
    );

    let sb = Sandbox::new();
    write_files(&sb.path("a"), &[("x.txt", "x")]);
    write_files(&sb.path("c"), &[("y.txt", "y")]);
    let (a, b) = (sb.p("a"), sb.p("b"));
    let (code, _, err) = sb.run(&["sync", &a, &b, "-q"], &[("SYNCENGINE_CONFIG", "")]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = sb.run(&["run"], &[("SYNCENGINE_CONFIG", "")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no config file"), "{err}");

    sb.config(&format!(
        "[pairs.on]\nsource = \"{}\"\ndestination = \"{}\"\n[pairs.off]\nsource = \"{}\"\ndestination = \"{}\"\npaused = true\n",
        sb.p("a"),
        sb.p("b"),
        sb.p("c"),
        sb.p("d"),
    ));
    let (code, out, err) = sb.with_config(&["run"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("off: paused in the config file, not run"),
        "{out}"
    );
    assert!(!sb.path("d").exists(), "a paused pair ran");
    let (code, out, err) = sb.with_config(&["run", "off"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(sb.path("d/y.txt").exists(), "{out}");
}

/// The sample's `profile` key against moto: the remote's profile gives endpoint, region and
/// keys from ~/.aws, with no AWS_PROFILE in the environment (without it the run would go to
/// AWS itself and fail). moto takes any key, so that the profile's keys win over the
/// environment's is checked on the overlay, in `the_issue_sample_parses_as_written`.
#[test]
#[cfg(feature = "s3")]
fn a_remote_profile_gives_its_endpoint_and_keys() {
    let Some(endpoint) = cli::moto() else { return };
    let sb = Sandbox::new();
    let aws = sb.path("home/.aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("config"),
        format!("[profile home]\nregion = us-east-1\nendpoint_url = {endpoint}\n"),
    )
    .unwrap();
    std::fs::write(
        aws.join("credentials"),
        "[home]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("config-profile-{}-{nanos}", std::process::id());
    write_files(&sb.path("a"), &[("x.txt", "x")]);
    sb.config(&format!(
        "[remotes.bucket]\nurl = \"s3://test/{prefix}\"\nprofile = \"home\"\n\n\
         [pairs.p]\nsource = \"{}\"\ndestination = \"bucket:\"\nmode = \"source-backup\"\n",
        sb.p("a")
    ));
    let config = sb.p("config.toml");
    let env = [
        ("AWS_PROFILE", ""),
        ("AWS_ENDPOINT_URL", ""),
        ("AWS_ENDPOINT_URL_S3", ""),
        ("AWS_ENDPOINT", ""),
        ("AWS_REGION", ""),
        ("AWS_ALLOW_HTTP", ""),
        ("AWS_CONFIG_FILE", ""),
        ("AWS_SHARED_CREDENTIALS_FILE", ""),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        // Meant for another store (moto would accept them anyway).
        ("AWS_ACCESS_KEY_ID", "wrong-key"),
        ("AWS_SECRET_ACCESS_KEY", "wrong-secret"),
    ];
    let (code, out, err) = sb.run(&["--config", &config, "run"], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("p: ok") && out.contains("1 uploaded"), "{out}");
}

/// The empty-side hint of a pair with a `NAME:path` root names the config file that defines
/// NAME, so the printed command runs as printed; and it restores the files.
#[test]
fn the_restore_hint_of_a_named_remote_keeps_the_config() {
    let sb = Sandbox::new();
    write_files(
        &sb.path("a"),
        &[("1.txt", "1"), ("2.txt", "2"), ("3.txt", "3")],
    );
    sb.config(&format!("[remotes.usb]\nurl = \"{}\"\n", sb.p("usb")));
    let a = sb.p("a");
    let (code, _, err) = sb.with_config(&["sync", &a, "usb:b", "-q"]);
    assert_eq!(code, Some(0), "{err}");
    for i in 1..=3 {
        std::fs::remove_file(sb.path(&format!("a/{i}.txt"))).unwrap();
    }
    let (code, _, err) = sb.with_config(&["sync", &a, "usb:b"]);
    assert_eq!(code, Some(3), "{err}");
    let hint = err.lines().find(|l| l.starts_with("hint:")).unwrap();
    let command = &hint[hint.find("syncengine ").unwrap()..];
    let expected = format!("syncengine --config={} sync {a} usb:b", sb.p("config.toml"));
    assert!(command.starts_with(&expected), "{hint}");
    // Run it as printed (no quoting needed for these paths).
    let words: Vec<&str> = command.split(' ').skip(1).collect();
    let (code, _, err) = sb.run(&words, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(cli::disk_files(&sb.path("a")).len(), 3);
}

/// `--trash-dir NAME:path` on sync and on `trash list` reaches the same place: the remote's
/// folder.
#[test]
fn a_trash_dir_on_a_named_remote() {
    let sb = Sandbox::new();
    write_files(
        &sb.path("a"),
        &[("x.txt", "x"), ("y.txt", "y"), ("z.txt", "z")],
    );
    sb.config(&format!("[remotes.vault]\nurl = \"{}\"\n", sb.p("vault")));
    let (a, b) = (sb.p("a"), sb.p("b"));
    let sync = ["sync", &a, &b, "--trash-dir", "vault:trash", "-q"];
    let (code, _, err) = sb.with_config(&sync);
    assert_eq!(code, Some(0), "{err}");
    std::fs::remove_file(sb.path("a/x.txt")).unwrap();
    let (code, _, err) = sb.with_config(&sync);
    assert_eq!(code, Some(0), "{err}");
    // Under the remote's folder, the destination's side.
    let kept = cli::disk_files(&sb.path("vault/trash/destination"));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept.keys().all(|k| k.ends_with("x.txt")), "{kept:?}");
    let (code, out, err) = sb.with_config(&[
        "trash",
        "list",
        &b,
        "--trash-dir",
        "vault:trash",
        "--side",
        "destination",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("x.txt"), "{out}");
}
