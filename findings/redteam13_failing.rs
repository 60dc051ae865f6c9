//! FAILING red-team cases (issue 9, round 13): NOT compiled (not under tests/). The tests
//! below fail on commit 317dc80 + the red-team commits (`Proxy::cut_after`, the intent fix).
//! To run them: `cp findings/redteam13_failing.rs tests/redteam13_failing.rs` and
//! `cargo test -p syncengine --all-features --test redteam13_failing` (servers running).
//!
//! F2 (CORRUPT): on wsgidav, names with `?` or `;` are written with one direct PUT, which
//!    wsgidav writes in place as the body arrives; a link cut mid-upload leaves a half file at
//!    the name. The next run takes it for a version of its own, a conflict: when the half
//!    file is newer (a first upload: no stale mtime property) it wins, replaces the source's
//!    file on both sides, and the good file survives only as `a?b.conflict-…-source.bin`;
//!    otherwise the half file is spread to the source as a conflict copy. Also the trash copies of the old
//!    version (`transfer_through_client` is a direct PUT too) can be half files.
//!    `wsgidav_cut_direct_upload_leaves_no_half_file_that_the_rerun_spreads`.
//! F3 (CORRUPT, wrong conflict winner): the WebDAV backend reports our mtime dead property,
//!    which survives another client's overwrite; newest-wins then prefers an older local
//!    edit. `a_foreign_overwrite_on_webdav_is_newer_than_an_old_local_edit`.
#![cfg(all(feature = "cli", feature = "webdav"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use syncengine_test_proxy::{Direction, Matcher, Proxy};

#[path = "support/cli.rs"]
mod cli;

const APACHE: (&str, u16) = ("apache", 8082);
const WSGIDAV: (&str, u16) = ("wsgidav", 8083);

/// The loopback test servers' state folder.
fn ts_dir() -> PathBuf {
    std::env::var_os("TS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/syncengine-test-servers"))
}

/// Where `server` keeps the collection `/<root>` on this machine's disk.
fn server_disk(server: (&str, u16), root: &str) -> PathBuf {
    match server.0 {
        "apache" => ts_dir().join("apache/dav").join(root),
        _ => ts_dir().join("wsgidav-root").join(root),
    }
}

/// True when `server` listens; otherwise skips (or fails under `CI=true`).
fn up(server: (&str, u16)) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], server.1));
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok() {
        return true;
    }
    let msg = format!(
        "WebDAV test server {} is not reachable on {addr}; start the servers with \
         `bash scripts/test-servers.sh start`",
        server.0
    );
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{msg} (CI=true)"
    );
    eprintln!("SKIPPED: {msg}");
    false
}

fn fresh_root(tag: &str) -> String {
    format!("syncengine-tests/rt13-{tag}-{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// A `syncengine` command with the WebDAV test credentials in its environment.
fn command(sub: &str) -> Command {
    let mut c = Command::new(cli::BIN);
    c.arg(sub)
        .env("SYNCENGINE_WEBDAV_USER", "dav")
        .env("SYNCENGINE_WEBDAV_PASSWORD", "davpass")
        .env("SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// Runs `syncengine sync <a> <b> <extra…>`; returns (exit code, stdout + stderr).
fn sync(a: &str, b: &str, state: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = command("sync")
        .args([a, b])
        .args(extra)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    text(out)
}

fn text(out: Output) -> (Option<i32>, String) {
    let mut t = String::from_utf8_lossy(&out.stdout).into_owned();
    t.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), t)
}

/// A deterministic body of `size` bytes, different per `seed`.
fn body(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| ((i % 251) as u8).wrapping_add(seed))
        .collect()
}

/// Every file below `dir` (relative paths, any name) with its size.
fn all_files(dir: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut found = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                found.insert(rel, e.metadata().unwrap().len());
            }
        }
    }
    found
}

/// The files below `dir` whose name marks an unfinished write of ours (`.syncengine-tmp-…`).
/// (Apache's own `.davfs.tmp…` of a stalled `PUT` stay until its `Timeout`: the proxy keeps
/// the stalled connection to it open.)
fn temps(dir: &Path) -> Vec<String> {
    all_files(dir)
        .into_keys()
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap_or(p);
            name.starts_with(".syncengine-tmp-")
        })
        .collect()
}

/// Waits (up to 20 s) until `dir` holds no temp file; returns those left.
fn temps_settled(dir: &Path) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let left = temps(dir);
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// wsgidav mis-decodes `?` in `Destination`, so names with it are written with one direct
/// `PUT` (not a temp file and a `MOVE`); wsgidav writes a `PUT`'s body in place as it
/// arrives. A link cut mid-upload must not leave a half file at the name, which the next
/// run then takes for a version of its own (a conflict copy, copied back to the source).
#[test]
fn wsgidav_cut_direct_upload_leaves_no_half_file_that_the_rerun_spreads() {
    if !up(WSGIDAV) {
        return;
    }
    let root = fresh_root("cut-direct");
    let disk = server_disk(WSGIDAV, &root);
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let full = body(1 << 20, 4);
    std::fs::write(local.join("a?b.bin"), &full).unwrap();
    std::fs::write(local.join("plain.txt"), "plain").unwrap();
    let state = tmp.path().join("state");
    let proxy = Proxy::start("http://127.0.0.1:8083").unwrap();
    let url = format!("webdav://{}/{root}", proxy.addr());
    proxy.cut_after(
        Matcher::method("PUT")
            .path_contains("/a%3Fb.bin")
            .path_lacks("/.syncengine/"),
        Direction::Request,
        200_000,
    );
    let (code, out) = sync(
        local.to_str().unwrap(),
        &url,
        &state,
        &["--timeout", "5s", "-q"],
    );
    assert_eq!(code, Some(1), "a cut upload fails the run: {out}");
    proxy.clear();
    let (code, out) = sync(local.to_str().unwrap(), &url, &state, &["-q"]);
    assert_eq!(code, Some(0), "{out}");
    let names: Vec<String> = cli::disk_files(&local).into_keys().collect();
    assert_eq!(
        names,
        ["a?b.bin", "plain.txt"],
        "the half file came back to the source as a version of its own"
    );
    assert_eq!(std::fs::read(local.join("a?b.bin")).unwrap(), full);
    assert_eq!(std::fs::read(disk.join("a?b.bin")).unwrap(), full);
    drop(proxy);
    let _ = std::fs::remove_dir_all(&disk);
}


/// PUTs `body` at `path` on Apache as another WebDAV client would (plain PUT, no properties).
fn foreign_put(path: &str, body: &[u8]) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", APACHE.1)).unwrap();
    write!(
        s,
        "PUT /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic ZGF2OmRhdnBhc3M=\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 20"), "{answer}");
}

/// F3 (CORRUPT: wrong conflict winner): a file another WebDAV client overwrites keeps our
/// `urn:syncengine:mtime` dead property (Apache and wsgidav keep dead properties across a
/// PUT), and the backend reports that stale time as the file's mtime. Under newest-wins, a
/// local edit from an hour ago then beats the server edit made just now: the newer version
/// becomes the conflict loser (kept as a conflict copy by default; with
/// `--conflict-loser delete` only the trash keeps it).
#[test]
fn a_foreign_overwrite_on_webdav_is_newer_than_an_old_local_edit() {
    if !up(APACHE) {
        return;
    }
    let root = fresh_root("stale-mtime");
    let disk = server_disk(APACHE, &root);
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let set_age = |path: &Path, secs: u64| {
        let t = std::time::SystemTime::now() - Duration::from_secs(secs);
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_times(std::fs::FileTimes::new().set_modified(t)).unwrap();
    };
    std::fs::write(local.join("f.txt"), "v0").unwrap();
    set_age(&local.join("f.txt"), 7200);
    let state = tmp.path().join("state");
    let url = format!("webdav://127.0.0.1:8082/{root}");
    let (code, out) = sync(local.to_str().unwrap(), &url, &state, &["-q"]);
    assert_eq!(code, Some(0), "{out}");
    std::fs::write(local.join("f.txt"), "local edit, an hour ago").unwrap();
    set_age(&local.join("f.txt"), 3600);
    foreign_put(&format!("{root}/f.txt"), b"server edit, just now");
    let (code, out) = sync(local.to_str().unwrap(), &url, &state, &["--json"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        std::fs::read_to_string(local.join("f.txt")).unwrap(),
        "server edit, just now",
        "the older local edit won the conflict: {out}"
    );
    let _ = std::fs::remove_dir_all(&disk);
}
