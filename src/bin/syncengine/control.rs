//! How `syncengine pause`, `resume` and `status` reach a running `syncengine watch`: a Unix
//! socket in the state directory, one JSON request and one JSON reply per connection; and the
//! status file a watch leaves there for `status` to show when none runs.
//!
//! Only one watch runs per state directory: it holds an exclusive lock on `watch.lock` for
//! as long as it runs (released by the kernel when it dies, however it dies), and a stale
//! socket left by a killed watch is replaced. The socket is the owner's only (mode 0600, in
//! the owner's state directory), and a watch answers no connection from another user.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use syncengine::service::{PairState, PairStatus, StopKind, Watching};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The socket's name in the state directory.
pub(crate) const SOCKET_FILE: &str = "watch.sock";
/// The lock a running watch holds.
const LOCK_FILE: &str = "watch.lock";
/// The status a watch last saw, kept for `syncengine status` when no watch runs.
pub(crate) const STATUS_FILE: &str = "watch-status.json";
/// The longest request a watch reads.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long either end waits for the other.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections read at once; more wait to be accepted (in the socket's backlog, then in
/// their `connect`).
const MAX_CLIENTS: usize = 64;
/// How long `pause` and `resume` wait for a watch that holds the lock to answer (one that is
/// starting listens within moments), and a starting watch for a `pause` or `resume` that
/// holds the lock while it changes the recorded state.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The control end of a running watch: its lock and its listening socket.
pub(crate) struct Control {
    /// Held (locked) for as long as the watch runs.
    _lock: std::fs::File,
    listener: UnixListener,
    socket: PathBuf,
    owner: u32,
    /// One permit per connection being read.
    readers: Arc<Semaphore>,
}

/// A request read from a control connection, with the connection to answer on.
pub(crate) type Request = (UnixStream, Value);

/// Why [`Control::bind`] failed.
pub(crate) struct BindError {
    /// A usage error (exit 2: another watch runs there, or the path is too long for a
    /// socket); else the state directory cannot be used (exit 1).
    pub(crate) usage: bool,
    pub(crate) message: String,
}

impl From<String> for BindError {
    fn from(message: String) -> Self {
        BindError {
            usage: false,
            message,
        }
    }
}

impl Control {
    /// Takes the state directory's watch lock and listens on its socket.
    ///
    /// # Errors
    /// A usage error saying another watch runs on `state_dir` (with how to reach or stop
    /// it), or that its path is too long for a socket; else why the state directory, the
    /// lock or the socket could not be set up.
    pub(crate) fn bind(state_dir: &Path) -> Result<Control, BindError> {
        let (lock_path, lock) = open_lock(state_dir)?;
        match lock_within(&lock, LOCK_WAIT / 5) {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(BindError {
                    usage: true,
                    message: format!(
                        "another `syncengine watch` is running with the state directory {}; \
                     `syncengine status` shows its pairs, and `syncengine pause` / `resume` act \
                     on it. Stop it first (SIGTERM), or give this one another --state-dir",
                        state_dir.display()
                    ),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", lock_path.display()).into());
            }
        }
        let socket = state_dir.join(SOCKET_FILE);
        check_socket_path(&socket).map_err(|message| BindError {
            usage: true,
            message,
        })?;
        // Ours now: a socket file still there was left by a watch that died.
        match std::fs::remove_file(&socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!("cannot remove the stale {}: {e}", socket.display()).into());
            }
        }
        let listener = UnixListener::bind(&socket)
            .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot restrict {}: {e}", socket.display()))?;
        let owner = std::fs::metadata(&socket)
            .map_err(|e| format!("cannot read {}: {e}", socket.display()))?
            .uid();
        Ok(Control {
            _lock: lock,
            listener,
            socket,
            owner,
            readers: Arc::new(Semaphore::new(MAX_CLIENTS)),
        })
    }

    /// Accepts the next connection once fewer than [`MAX_CLIENTS`] are being read. Cancel
    /// safe (for `select!`): a connection is accepted only when the future completes.
    pub(crate) async fn accept(&self) -> std::io::Result<(UnixStream, OwnedSemaphorePermit)> {
        let permit = self
            .readers
            .clone()
            .acquire_owned()
            .await
            .map_err(std::io::Error::other)?;
        let (stream, _) = self.listener.accept().await?;
        Ok((stream, permit))
    }

    /// Reads the request of an accepted connection in a task of its own, and sends it with
    /// the connection to `requests`: a client slow to send (or sending nothing) holds up
    /// neither the watch (its signals, its log) nor other clients.
    pub(crate) fn read_in_background(
        &self,
        (mut stream, permit): (UnixStream, OwnedSemaphorePermit),
        requests: tokio::sync::mpsc::Sender<Request>,
    ) {
        let owner = self.owner;
        tokio::spawn(async move {
            let request = read_request(owner, &mut stream).await;
            drop(permit);
            if let Some(request) = request {
                let _ = requests.send((stream, request)).await;
            }
        });
    }
}

/// Reads one request from `stream`: `None` for a peer of another user than `owner`, a
/// request too long or not JSON (answered with an error), or one that took too long.
async fn read_request(owner: u32, stream: &mut UnixStream) -> Option<Value> {
    if stream.peer_cred().map(|c| c.uid()).ok() != Some(owner) {
        tracing::warn!("refused a control connection from another user");
        return None;
    }
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(&mut *stream).take(MAX_REQUEST);
    let read = tokio::time::timeout(IO_TIMEOUT, reader.read_line(&mut line)).await;
    match read {
        Ok(Ok(_)) => {}
        _ => return None,
    }
    match serde_json::from_str(&line) {
        Ok(v) => Some(v),
        Err(e) => {
            reply(
                stream,
                &json!({"ok": false, "error": format!("bad request: {e}")}),
            )
            .await;
            None
        }
    }
}

impl Drop for Control {
    /// The socket goes with the watch (the lock is released by closing its file).
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Takes the lock on `file`, trying again for up to `wait` while it is held (by a `pause` or
/// `resume` changing the recorded state: a few milliseconds).
fn lock_within(file: &std::fs::File, wait: Duration) -> Result<(), std::fs::TryLockError> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// How `pause` and `resume` reach a state directory.
pub(crate) enum Reached {
    /// The running watch's reply.
    Reply(Value),
    /// No watch runs there, and none starts while this lock is held: the recorded state is
    /// the caller's to change.
    NoWatch(#[allow(dead_code, reason = "held, not read")] std::fs::File),
}

/// Sends `request` to the watch running on `state_dir`; with no watch running, takes the
/// watch lock instead, so that none starts (and reads the recorded state) while the caller
/// changes that state. Whether a watch runs is the lock's to say: a socket that is missing
/// while a watch holds the lock (one starting, or a socket removed by hand) is waited for,
/// then reported.
///
/// # Errors
/// A watch runs but did not answer, or the lock could not be taken.
pub(crate) fn request_or_lock(state_dir: &Path, request: &Value) -> Result<Reached, String> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        if let Some(reply) = self::request(state_dir, request)? {
            return Ok(Reached::Reply(reply));
        }
        let (lock_path, lock) = open_lock(state_dir)?;
        match lock.try_lock() {
            Ok(()) => return Ok(Reached::NoWatch(lock)),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", lock_path.display()));
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "a `syncengine watch` runs with the state directory {} (it holds {}) but does \
                 not answer on {}: was the socket removed? Stop that watch (SIGTERM) and start \
                 it again",
                state_dir.display(),
                lock_path.display(),
                state_dir.join(SOCKET_FILE).display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Creates the state directory if needed and opens (creating) its watch lock file, not
/// locked yet: its path and the file.
fn open_lock(state_dir: &Path) -> Result<(PathBuf, std::fs::File), String> {
    std::fs::create_dir_all(state_dir).map_err(|e| {
        format!(
            "cannot create the state directory {}: {e}",
            state_dir.display()
        )
    })?;
    let lock_path = state_dir.join(LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    Ok((lock_path, lock))
}

/// Writes `value` as one line to `stream` (giving up after a while on a peer that reads
/// nothing).
pub(crate) async fn reply(stream: &mut UnixStream, value: &Value) {
    let mut text = value.to_string();
    text.push('\n');
    let _ = tokio::time::timeout(IO_TIMEOUT, stream.write_all(text.as_bytes())).await;
}

/// A Unix socket path is at most 107 bytes on Linux (103 on macOS).
fn check_socket_path(socket: &Path) -> Result<(), String> {
    if socket.as_os_str().len() > 100 {
        return Err(format!(
            "the state directory's path is too long for the control socket {} (Unix sockets \
             take at most about 100 bytes); give a shorter --state-dir or SYNCENGINE_STATE_DIR",
            socket.display()
        ));
    }
    Ok(())
}

/// Sends `request` to the watch running on `state_dir` and returns its reply; `Ok(None)`
/// when no watch runs there.
///
/// # Errors
/// A watch runs but did not answer, or answered something that is not JSON.
pub(crate) fn request(state_dir: &Path, request: &Value) -> Result<Option<Value>, String> {
    let socket = state_dir.join(SOCKET_FILE);
    let mut stream = match StdStream::connect(&socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(format!(
                "cannot reach the watch at {}: {e}",
                socket.display()
            ));
        }
    };
    let failed = |e: std::io::Error| {
        format!(
            "the watch at {} did not answer: {e}; is it hung? (`kill -TERM` its process)",
            socket.display()
        )
    };
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(failed)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(failed)?;
    let mut text = request.to_string();
    text.push('\n');
    stream.write_all(text.as_bytes()).map_err(failed)?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST * 64))
        .read_line(&mut line)
        .map_err(failed)?;
    if line.is_empty() {
        return Err(format!(
            "the watch at {} closed the connection without an answer",
            socket.display()
        ));
    }
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| format!("the watch at {} answered garbage: {e}", socket.display()))
}

/// Seconds since 1970 of `t`, for JSON.
fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The machine-readable name of a state.
fn state_name(state: &PairState) -> &'static str {
    match state {
        PairState::Idle => "idle",
        PairState::Waiting => "waiting",
        PairState::Scanning => "scanning",
        PairState::Syncing => "syncing",
        PairState::Paused => "paused",
        PairState::Stopped(_) => "stopped",
        PairState::BackingOff { .. } => "backing-off",
        _ => "unknown",
    }
}

/// The machine-readable name of a safety stop.
fn stop_name(kind: &StopKind) -> &'static str {
    match kind {
        StopKind::MaxDelete => "max-delete",
        StopKind::EmptySide => "empty-side",
        StopKind::RootChanged(_) => "root-changed",
        StopKind::MissingRoot => "missing-root",
        StopKind::Config => "config",
        _ => "other",
    }
}

/// A pair's status as JSON, as `status --json` prints it and the status file keeps it.
pub(crate) fn status_json(name: &str, status: &PairStatus) -> Value {
    let watching = match &status.watching {
        Watching::Watched => json!("watched"),
        Watching::Polled => json!("polled"),
        Watching::FellBack(reason) => json!({ "fell_back": reason }),
        _ => json!("unknown"),
    };
    let retry_at = match &status.state {
        PairState::BackingOff { retry_at } => json!(unix_secs(*retry_at)),
        _ => Value::Null,
    };
    let stopped = status.stopped.as_ref().map_or(Value::Null, |s| {
        json!({
            "kind": stop_name(&s.kind),
            "can_force": s.kind.can_force(),
            "message": syncengine::redact::redact(&s.message),
        })
    });
    let last_run = status.last_run.as_ref().map_or(Value::Null, |r| {
        let s = &r.stats;
        json!({
            "finished_at": unix_secs(r.finished_at),
            "duration_ms": u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
            "uploaded": s.uploaded,
            "downloaded": s.downloaded,
            "deleted": s.deleted_source + s.deleted_destination,
            "renamed": s.renamed_source + s.renamed_destination,
            "conflicts": s.conflicts,
            "errors": s.errors,
            "bytes_uploaded": s.bytes_uploaded,
            "bytes_downloaded": s.bytes_downloaded,
        })
    });
    json!({
        "name": name,
        "state": state_name(&status.state),
        "paused": status.paused,
        "watching": watching,
        "stopped": stopped,
        "retry_at": retry_at,
        "no_progress_since": status.no_progress_since.map(unix_secs),
        "last_error": status.last_error.as_deref().map(syncengine::redact::redact),
        "last_run": last_run,
        "runs": status.runs,
    })
}

/// Writes the statuses a watch sees to the status file (atomically: a temp file renamed over
/// it), with whether the watch still runs. Best effort: `status` is only a view.
pub(crate) fn write_status_file(state_dir: &Path, pairs: &[Value], running: bool) {
    let body = json!({
        "written_at": unix_secs(SystemTime::now()),
        "running": running,
        "pid": std::process::id(),
        "pairs": pairs,
    });
    let path = state_dir.join(STATUS_FILE);
    let tmp = state_dir.join(format!("{STATUS_FILE}.tmp-{}", std::process::id()));
    let written =
        std::fs::write(&tmp, body.to_string()).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!("cannot write {}: {e}", path.display());
    }
}

/// The status file a watch left in `state_dir`, if any.
pub(crate) fn read_status_file(state_dir: &Path) -> Option<Value> {
    let bytes = std::fs::read(state_dir.join(STATUS_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}
