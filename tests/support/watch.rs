//! The harness of the `syncengine watch` tests (tests/watch.rs, tests/redteam24_watch.rs): a
//! sandbox with a config file and a state directory, and a running watch whose output lines
//! are collected. `Watch::stop` waits up to the including test file's `WAIT`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::WAIT;

/// A temporary folder with a config file and a state directory.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn p(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    pub fn config(&self, text: &str) {
        std::fs::write(self.path("config.toml"), text).unwrap();
    }

    /// A two-way pair `name` between the folders `a` and `b` of the sandbox, with `extra`
    /// keys.
    pub fn pair(&self, name: &str, a: &str, b: &str, extra: &str) -> String {
        std::fs::create_dir_all(self.path(a)).unwrap();
        std::fs::create_dir_all(self.path(b)).unwrap();
        format!(
            "[pairs.{name}]\nsource = \"{}\"\ndestination = \"{}\"\n{extra}\n",
            self.p(a),
            self.p(b)
        )
    }

    /// A syncengine command with this sandbox's config and state.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncengine"));
        cmd.arg("--config").arg(self.path("config.toml"));
        cmd.args(args);
        cmd.arg("--state-dir").arg(self.path("state"));
        cmd.env_remove("SYNCENGINE_STATE_DIR")
            .env_remove("RUST_LOG")
            .env_remove("GLIBC_TUNABLES")
            .env("HOME", self.path("home"));
        cmd
    }

    /// Runs a short command: (exit status, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self.command(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn watch(&self, args: &[&str]) -> Watch {
        self.watch_with(args, &[])
    }

    /// `syncengine watch ARGS` with `env` set, printing into the returned [`Watch`].
    pub fn watch_with(&self, args: &[&str], env: &[(&str, &str)]) -> Watch {
        let mut all = vec!["watch"];
        all.extend(args);
        let mut child = self
            .command(&all)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for (stream, tag) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                "",
            ),
            (Box::new(child.stderr.take().unwrap()), "stderr: "),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(format!("{tag}{line}"));
                }
            });
        }
        Watch { child, lines }
    }
}

/// A running `syncengine watch` and the lines it printed.
pub struct Watch {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Log lines about `pair` containing `text`.
    pub fn count(&self, pair: &str, text: &str) -> usize {
        let prefix = format!(" {pair}: ");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| {
                l.find(&prefix)
                    .is_some_and(|i| l[i + prefix.len()..].starts_with(text))
            })
            .count()
    }

    /// Runs of `pair` that ended (synced, up to date, failed or cancelled).
    pub fn runs(&self, pair: &str) -> usize {
        ["synced", "up to date", "run failed", "run cancelled"]
            .iter()
            .map(|t| self.count(pair, t))
            .sum()
    }

    /// Waits until `cond` holds; panics with the log after `limit`.
    pub fn wait(&self, what: &str, limit: Duration, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < limit,
                "{what}: not within {limit:?}\n--- watch log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> (Option<i32>, String) {
        self.signal("TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The readers drain what is left.
                std::thread::sleep(Duration::from_millis(200));
                return (status.code(), self.log());
            }
            assert!(
                start.elapsed() < WAIT,
                "watch did not stop on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}
