//! S3 credentials the way AWS users keep them: `AWS_PROFILE` and the shared
//! `~/.aws/config` / `~/.aws/credentials` files, through the `syncengine` binary against moto
//! (127.0.0.1:9100, S3 and STS). Each run gets a cleared environment and its own `HOME`, so
//! nothing of the machine's own AWS setup takes part and the tests run in parallel.
//! Needs moto (`scripts/test-servers.sh start`); in CI a missing server fails the tests.
#![cfg(all(feature = "cli", feature = "s3"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A home folder with `.aws/config` and `.aws/credentials` as given (`None`: no file).
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new(config: Option<&str>, credentials: Option<&str>) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join("home/.aws");
        std::fs::create_dir_all(&aws).unwrap();
        if let Some(text) = config {
            std::fs::write(aws.join("config"), text).unwrap();
        }
        if let Some(text) = credentials {
            std::fs::write(aws.join("credentials"), text).unwrap();
        }
        Home { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A local folder under this temp dir, with `hello.txt` when `with_file`.
    fn folder(&self, name: &str, with_file: bool) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        if with_file {
            std::fs::write(p.join("hello.txt"), "hello from a profile").unwrap();
        }
        p
    }

    /// Runs `syncengine sync a b` with only `HOME`, `PATH` and `vars` in the environment.
    fn sync(&self, a: &str, b: &str, state: &str, vars: &[(&str, &str)]) -> (i32, String) {
        let out = Command::new(cli::BIN)
            .arg("sync")
            .arg(a)
            .arg(b)
            .arg("--state-dir")
            .arg(self.dir.path().join(state))
            .env_clear()
            .env("HOME", self.home())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// Uploads `hello.txt` to `url`, downloads it into a fresh folder, and checks it arrived:
    /// both runs with only `vars` (and the home's files) to go by.
    fn round_trip(&self, url: &str, vars: &[(&str, &str)]) {
        let up = self.folder("up", true);
        let (code, out) = self.sync(s(&up), url, "state-up", vars);
        assert_eq!(code, 0, "upload through the profile: {out}");
        let down = self.folder("down", false);
        let (code, out) = self.sync(url, s(&down), "state-down", vars);
        assert_eq!(code, 0, "download through the profile: {out}");
        assert_eq!(
            std::fs::read_to_string(down.join("hello.txt")).unwrap(),
            "hello from a profile"
        );
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn unique(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "s3://test/aws-profiles-{test}-{}-{nanos}",
        std::process::id()
    )
}

/// `[profile x]` with region and `endpoint_url`, keys in the credentials file: `AWS_PROFILE=x`
/// is all a run needs (no AWS_ENDPOINT_URL, no AWS_ALLOW_HTTP, no keys in the environment).
#[test]
fn a_named_profile_gives_keys_region_and_endpoint() {
    let Some(endpoint) = cli::moto() else { return };
    let home = Home::new(
        Some(&format!(
            "[default]\nregion = eu-west-3\n\n[profile x]\nregion = us-east-1\nendpoint_url = {endpoint}\n"
        )),
        Some("[x]\naws_access_key_id = profile-x-key\naws_secret_access_key = profile-x-secret\n"),
    );
    home.round_trip(&unique("named"), &[("AWS_PROFILE", "x")]);
}

/// A home whose default profile gets its credentials from a `credential_process` script
/// with `body` (written into `dir`), against `endpoint`.
fn credential_process_home(endpoint: &str, dir: &std::path::Path, body: &str) -> Home {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("creds.sh");
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    Home::new(
        Some(&format!(
            "[default]\nregion = us-east-1\nendpoint_url = {endpoint}\ncredential_process = {}\n",
            script.display()
        )),
        None,
    )
}

/// `credential_process`: the SDK runs the command and takes the JSON it prints.
#[test]
fn credential_process_is_run_for_the_profile() {
    let Some(endpoint) = cli::moto() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("ran");
    let home = credential_process_home(
        &endpoint,
        tmp.path(),
        &format!(
            "#!/bin/sh\ntouch '{}'\necho '{{\"Version\": 1, \"AccessKeyId\": \"proc-key\", \
             \"SecretAccessKey\": \"proc-secret\"}}'\n",
            marker.display()
        ),
    );
    // No AWS_PROFILE: the default profile.
    home.round_trip(&unique("process"), &[]);
    assert!(
        marker.exists(),
        "the credential_process command was not run"
    );
}

/// `role_arn` + `source_profile`: the source profile's keys are exchanged for the role's
/// with STS AssumeRole (moto's STS, reached through the profile's `endpoint_url`).
#[test]
fn role_arn_with_source_profile_is_assumed_through_sts() {
    let Some(endpoint) = cli::moto() else { return };
    let home = Home::new(
        Some(&format!(
            "[profile base]\nregion = us-east-1\nendpoint_url = {endpoint}\n\n\
             [profile deploy]\nrole_arn = arn:aws:iam::123456789012:role/syncengine-test\n\
             source_profile = base\nregion = us-east-1\nendpoint_url = {endpoint}\n"
        )),
        Some("[base]\naws_access_key_id = base-key\naws_secret_access_key = base-secret\n"),
    );
    home.round_trip(&unique("role"), &[("AWS_PROFILE", "deploy")]);

    // The same role with STS unreachable (a closed port): the run fails on the credentials,
    // so the success above did go through STS.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let local = home.folder("up2", true);
    let sts = format!("http://127.0.0.1:{port}");
    let (code, out) = home.sync(
        s(&local),
        &unique("role-no-sts"),
        "state-no-sts",
        &[("AWS_PROFILE", "deploy"), ("AWS_ENDPOINT_URL_STS", &sts)],
    );
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("profile `deploy`"), "names the profile: {out}");
}

/// A profile that the files do not define: exit 4, the message names the profile, the files
/// read and the profiles they do define, and nothing is asked of instance metadata.
#[test]
fn a_missing_profile_is_named_with_the_files_read() {
    let Some(endpoint) = cli::moto() else { return };
    let home = Home::new(
        Some(&format!(
            "[profile x]\nregion = us-east-1\nendpoint_url = {endpoint}\n"
        )),
        Some("[x]\naws_access_key_id = a\naws_secret_access_key = b\n"),
    );
    let local = home.folder("local", true);
    let (code, out) = home.sync(
        s(&local),
        &unique("missing"),
        "state",
        &[("AWS_PROFILE", "nope")],
    );
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("cannot reach the destination"), "{out}");
    assert!(out.contains("`nope`"), "names the profile: {out}");
    let config = home.home().join(".aws/config");
    assert!(
        out.contains(&config.display().to_string()),
        "names the file read: {out}"
    );
    assert!(out.contains("they define: x"), "lists what is there: {out}");
    assert!(
        !out.contains("169.254"),
        "instance metadata is beside the point: {out}"
    );
}

/// No credentials anywhere (an empty home, no variables): exit 4 with what was tried, in
/// order, and how to fix it. With instance metadata off (`AWS_EC2_METADATA_DISABLED`) it
/// says so; with it on and nothing answering (a closed port stands in for a laptop, where
/// nothing answers at 169.254.169.254) it says there was no answer.
#[test]
fn no_credentials_anywhere_says_what_was_tried_and_the_fix() {
    let Some(endpoint) = cli::moto() else { return };
    let home = Home::new(None, None);
    let local = home.folder("local", true);
    let vars = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let (code, out) = home.sync(s(&local), &unique("none"), "state", &vars);
    assert_eq!(code, 4, "{out}");
    for words in [
        "no AWS credentials found",
        "AWS_ACCESS_KEY_ID",
        "profile `default`",
        "not defined",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "EC2 instance metadata: off",
        "Fix: set AWS_PROFILE",
    ] {
        assert!(out.contains(words), "missing {words:?}: {out}");
    }
    assert!(!out.contains("169.254.169.254"), "{out}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let imds = format!("http://127.0.0.1:{port}");
    let vars = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.as_str()),
    ];
    let (code, out) = home.sync(s(&local), &unique("none-imds"), "state2", &vars);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("EC2 instance metadata: no answer"), "{out}");
}

/// Red team (red12): a `credential_process` that fails prints on stderr whatever its tool
/// prints (a vault or SSO helper may echo a token or a password there); the run's error
/// message must not repeat that stderr verbatim.
#[test]
fn redteam12_credential_process_stderr_is_not_echoed() {
    let Some(endpoint) = cli::moto() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let home = credential_process_home(
        &endpoint,
        tmp.path(),
        "#!/bin/sh\necho 'vault: token=SUPERSECRETSTDERR123 rejected' >&2\nexit 1\n",
    );
    let up = home.folder("up", true);
    let (code, out) = home.sync(
        s(&up),
        &unique("process-stderr"),
        "state",
        &[("AWS_EC2_METADATA_DISABLED", "true")],
    );
    assert_eq!(code, 4, "{out}");
    assert!(
        !out.contains("SUPERSECRETSTDERR123"),
        "the credential_process's stderr is printed: {out}"
    );
}

/// Red team (red12): a `credential_process` whose credentials have already expired was run
/// again for every request (41 times for 30 uploads); now the run stops at the check with
/// the cause, having changed nothing.
#[test]
fn expired_credentials_from_a_credential_process_stop_the_run_with_the_cause() {
    let Some(endpoint) = cli::moto() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let home = credential_process_home(
        &endpoint,
        tmp.path(),
        &format!(
            "#!/bin/sh\necho run >> {}\necho '{{\"Version\":1,\"AccessKeyId\":\"a\",\"SecretAccessKey\":\"b\",\"SessionToken\":\"c\",\"Expiration\":\"2020-01-01T00:00:00Z\"}}'\n",
            runs.display()
        ),
    );
    let up = home.folder("up", true);
    let (code, out) = home.sync(
        s(&up),
        &unique("process-expired"),
        "state",
        &[("AWS_EC2_METADATA_DISABLED", "true")],
    );
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("already expired"), "{out}");
    let runs = std::fs::read_to_string(&runs).unwrap().lines().count();
    assert!(runs <= 3, "the helper ran {runs} times");
}

/// Red team (red12): a `credential_process` that never answers (a helper waiting for a
/// password prompt or an MFA push nobody sees) hangs the run forever, even with
/// `--contimeout 2s`; it should fail (exit 4) having changed nothing. The 60 s wait is a
/// safety net, not a measurement: the hang is unbounded.
///
/// Red team (red13): and the helper the run gave up on, with what it started, must not keep
/// running after the run has exited (the SDK spawns it without kill-on-drop).
#[test]
fn redteam12_hanging_credential_process_ends_the_run() {
    let Some(endpoint) = cli::moto() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pids = tmp.path().join("pids");
    let body = format!(
        "#!/bin/sh\necho $$ >> {p}\nsleep 100000 &\necho $! >> {p}\nwait\n",
        p = pids.display()
    );
    let home = credential_process_home(&endpoint, tmp.path(), &body);
    let up = home.folder("up", true);
    let mut child = Command::new(cli::BIN)
        .args([
            "sync",
            s(&up),
            &unique("process-hang"),
            "--contimeout",
            "2s",
        ])
        .arg("--state-dir")
        .arg(home.dir.path().join("state"))
        .env_clear()
        .env("HOME", home.home())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let status = status.expect("the run still hung on credential_process after 60 s");
    assert_eq!(status.code(), Some(4));
    let pids = std::fs::read_to_string(&pids).expect("the helper ran and wrote its pids");
    // The kill happens before the run exits; a few seconds' grace covers a loaded machine
    // (a safety net, not a measurement).
    for pid in pids.split_whitespace() {
        let mut waited = 0;
        while running(pid) {
            assert!(
                waited < 50,
                "the helper (pid {pid}, of {pids:?}) still runs after the run exited"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
            waited += 1;
        }
    }
}

/// True when process `pid` exists and has not ended (a zombie waiting to be reaped has).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}
