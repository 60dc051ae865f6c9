//! SSH connections, host-key checks, authentication and the small pool of SFTP channels.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll};

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpProtoError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Mutex;

use crate::config::SftpConfig;
use crate::error::SftpError;

const POSIX_RENAME: &str = "posix-rename@openssh.com";
const HARDLINK: &str = "hardlink@openssh.com";
const LIMITS: &str = "limits@openssh.com";

/// The ciphers offered, best first: AES-GCM (hardware AES on the client, and OpenSSH's
/// AES-GCM through OpenSSL is several times faster than its own ChaCha20-Poly1305, which
/// russh would pick first and which made the server's CPU the limit of a big transfer),
/// then ChaCha20-Poly1305 and AES-CTR, russh's defaults. All are authenticated ciphers or
/// encrypt-then-MAC modes russh considers safe.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_128_GCM,
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_128_CTR,
];

/// Bytes the server may send on a channel before the client acknowledges them.
const WINDOW_SIZE: u32 = 8 * 1024 * 1024;

/// What the host-key check decided, kept for the error message (russh only says "unknown key").
#[derive(Default)]
struct HostKeyVerdict {
    problem: Option<String>,
}

/// russh callbacks: verifies the server's host key against known_hosts.
struct HostKeyCheck {
    cfg: Arc<SftpConfig>,
    verdict: Arc<StdMutex<HostKeyVerdict>>,
}

impl HostKeyCheck {
    fn verify(&self, key: &PublicKey) -> Result<(), String> {
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        let algorithm = key.algorithm();
        let who = self.cfg.known_hosts_name();
        let Some(path) = self.cfg.known_hosts_path() else {
            return Err(format!(
                "cannot verify the host key of {who} ({algorithm} {fingerprint}): no known_hosts \
                 file (HOME is not set); set SYNCENGINE_SFTP_KNOWN_HOSTS"
            ));
        };
        let shown = path.display();
        match russh::keys::check_known_hosts_path(&self.cfg.host, self.cfg.port, key, &path) {
            Ok(true) => Ok(()),
            // The host is recorded, but only with keys of other algorithms (russh calls that
            // "unknown"): a known host, whose new key is refused like a changed one, and
            // never recorded beside the old ones by trust on first use.
            Ok(false) if !self.recorded(&path).is_empty() => {
                let recorded = self.recorded(&path);
                let lines = recorded
                    .iter()
                    .map(|(line, alg)| format!("{shown}:{line} ({alg})"))
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(format!(
                    "host key verification failed: {who} is recorded with a key of another \
                     type at {lines}, but the server presents an {algorithm} key with \
                     fingerprint {fingerprint}; it is not trusted (trust on first use never \
                     adds a second key for a known host). Someone may be intercepting the \
                     connection; if the server's keys changed on purpose, remove those lines \
                     and add the new key (`ssh-keyscan -p {port} {host}`, and compare the \
                     fingerprint)",
                    port = self.cfg.port,
                    host = self.cfg.host,
                ))
            }
            Ok(false) if self.cfg.trust_on_first_use => {
                russh::keys::known_hosts::learn_known_hosts_path(
                    &self.cfg.host,
                    self.cfg.port,
                    key,
                    &path,
                )
                .map_err(|e| format!("cannot record the host key of {who} in {shown}: {e}"))?;
                tracing::warn!(
                    host = %who, %fingerprint, known_hosts = %shown,
                    "trust on first use: recorded a new host key"
                );
                Ok(())
            }
            Ok(false) => Err(format!(
                "host key verification failed: {who} is not in {shown}; its {algorithm} key has \
                 fingerprint {fingerprint}. If that is right, add the key with \
                 `ssh-keyscan -p {port} {host} >> {shown}` (and compare the fingerprint), \
                 or opt into trust on first use (SYNCENGINE_SFTP_TOFU=1)",
                port = self.cfg.port,
                host = self.cfg.host,
            )),
            Err(russh::keys::Error::KeyChanged { line }) => Err(format!(
                "host key verification failed: the host key of {who} CHANGED: the server now \
                 presents an {algorithm} key with fingerprint {fingerprint}, which differs from \
                 the one recorded at {shown}:{line}. Someone may be intercepting the \
                 connection; if the server's key was changed on purpose, remove that line"
            )),
            Err(e) => Err(format!(
                "cannot verify the host key of {who} ({algorithm} {fingerprint}) against \
                 {shown}: {e}"
            )),
        }
    }
}

impl HostKeyCheck {
    /// The known_hosts lines recorded for this host (any algorithm), with their algorithm.
    /// A line that cannot be parsed counts as recorded: the host is not unknown then.
    fn recorded(&self, path: &std::path::Path) -> Vec<(usize, String)> {
        match russh::keys::known_hosts::known_host_keys_path(&self.cfg.host, self.cfg.port, path) {
            Ok(keys) => keys
                .into_iter()
                .map(|(line, key)| (line, key.algorithm().to_string()))
                .collect(),
            Err(e) => vec![(0, format!("unreadable: {e}"))],
        }
    }
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = server_public_key.public_key();
        match self.verify(&key) {
            Ok(()) => Ok(true),
            Err(problem) => {
                if let Ok(mut v) = self.verdict.lock() {
                    v.problem = Some(problem);
                }
                Ok(false)
            }
        }
    }
}

/// One authenticated SSH connection; its channels carry the SFTP sessions.
pub(crate) struct Conn {
    handle: Handle<HostKeyCheck>,
    /// Set when opening a channel on it got no answer within the idle timeout: the
    /// connection is stalled, and taken for closed (its sessions too).
    stalled: AtomicBool,
}

impl Conn {
    fn is_closed(&self) -> bool {
        self.stalled.load(Ordering::Relaxed) || self.handle.is_closed()
    }
}

/// Connects, verifies the host key and authenticates.
async fn connect(cfg: &Arc<SftpConfig>) -> Result<Conn, SftpError> {
    let target = cfg.host_port();
    let verdict = Arc::new(StdMutex::new(HostKeyVerdict::default()));
    let handler = HostKeyCheck {
        cfg: cfg.clone(),
        verdict: verdict.clone(),
    };
    let ssh_config = client::Config {
        inactivity_timeout: None,
        keepalive_interval: Some(std::time::Duration::from_secs(15)),
        keepalive_max: 3,
        nodelay: true,
        // A 32 KiB SFTP read answer is 32 KiB plus its header: with russh's default of
        // 32768 every answer took two SSH packets. 65535 is the most russh accepts.
        maximum_packet_size: 65535,
        // The server may send this much before we acknowledge it: room for the reads in
        // flight of every channel's transfer (see `client::IN_FLIGHT`).
        window_size: WINDOW_SIZE,
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(CIPHERS),
            ..russh::Preferred::default()
        },
        ..client::Config::default()
    };
    let addr = (cfg.host.clone(), cfg.port);
    let connected = tokio::time::timeout(
        cfg.connect_timeout,
        client::connect(Arc::new(ssh_config), addr, handler),
    )
    .await;
    let mut handle = match connected {
        Ok(Ok(handle)) => handle,
        Ok(Err(e)) => {
            let problem = verdict.lock().ok().and_then(|mut v| v.problem.take());
            return Err(match problem {
                Some(problem) => SftpError::HostKey(problem),
                None => SftpError::Connect {
                    target,
                    message: e.to_string(),
                },
            });
        }
        Err(_) => {
            return Err(SftpError::Connect {
                target,
                message: format!("timed out after {:?}", cfg.connect_timeout),
            });
        }
    };
    authenticate(&mut handle, cfg).await?;
    Ok(Conn {
        handle,
        stalled: AtomicBool::new(false),
    })
}

/// Tries, in order: the configured key file (or the default ones), the agent, the password.
async fn authenticate(
    handle: &mut Handle<HostKeyCheck>,
    cfg: &SftpConfig,
) -> Result<(), SftpError> {
    let user = cfg.user.clone();
    let mut tried: Vec<String> = Vec::new();
    let conn_err = |e: russh::Error| SftpError::Connect {
        target: cfg.host_port(),
        message: format!("during authentication: {e}"),
    };

    let key_files: Vec<(std::path::PathBuf, bool)> = match &cfg.key_file {
        Some(path) => vec![(path.clone(), true)],
        None => std::env::var_os("HOME")
            .map(|home| {
                let ssh = std::path::PathBuf::from(home).join(".ssh");
                ["id_ed25519", "id_ecdsa", "id_rsa"]
                    .into_iter()
                    .map(|n| (ssh.join(n), false))
                    .filter(|(p, _)| p.is_file())
                    .collect()
            })
            .unwrap_or_default(),
    };
    for (path, explicit) in key_files {
        let key = match russh::keys::load_secret_key(&path, cfg.key_passphrase.as_deref()) {
            Ok(key) => key,
            Err(e) => {
                if explicit {
                    let hint = if cfg.key_passphrase.is_none() {
                        " (if it is encrypted, set SYNCENGINE_SFTP_KEY_PASSPHRASE)"
                    } else {
                        ""
                    };
                    return Err(SftpError::Auth(format!(
                        "cannot load the private key {}: {e}{hint}",
                        path.display()
                    )));
                }
                tracing::debug!(key = %path.display(), "skipping default key: {e}");
                continue;
            }
        };
        let hash = if key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(conn_err)?
                .flatten()
        } else {
            None
        };
        let result = handle
            .authenticate_publickey(&user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(conn_err)?;
        if result.success() {
            return Ok(());
        }
        tried.push(format!("key {}", path.display()));
    }

    if cfg.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match russh::keys::agent::client::AgentClient::connect_env().await {
            Ok(mut agent) => {
                let identities = agent.request_identities().await.unwrap_or_default();
                for identity in identities {
                    let russh::keys::agent::AgentIdentity::PublicKey { key, .. } = identity else {
                        continue;
                    };
                    let hash = if key.algorithm().is_rsa() {
                        handle
                            .best_supported_rsa_hash()
                            .await
                            .map_err(conn_err)?
                            .flatten()
                    } else {
                        None
                    };
                    match handle
                        .authenticate_publickey_with(&user, key, hash, &mut agent)
                        .await
                    {
                        Ok(r) if r.success() => return Ok(()),
                        Ok(_) => {}
                        Err(e) => tracing::debug!("agent signing failed: {e}"),
                    }
                }
                tried.push("ssh-agent keys".to_owned());
            }
            Err(e) => tracing::debug!("cannot reach the ssh-agent: {e}"),
        }
    }

    if let Some(password) = &cfg.password {
        let result = handle
            .authenticate_password(&user, password)
            .await
            .map_err(conn_err)?;
        if result.success() {
            return Ok(());
        }
        tried.push("password".to_owned());
    }

    let tried = if tried.is_empty() {
        "no credentials were available: set SYNCENGINE_SFTP_KEY, run an ssh-agent, or give a \
         password"
            .to_owned()
    } else {
        format!("tried {}", tried.join(", "))
    };
    Err(SftpError::Auth(format!(
        "authentication as {user} on {} failed ({tried})",
        cfg.host_port()
    )))
}

/// Wraps the channel stream and records when it hits end-of-file or an error, so the pool
/// can tell a dead SFTP session from a live one without sending anything.
struct WatchedStream<S> {
    inner: S,
    dead: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let dead = self.dead.clone();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &poll {
            Poll::Ready(Err(_)) => dead.store(true, Ordering::Relaxed),
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                dead.store(true, Ordering::Relaxed);
            }
            _ => {}
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let dead = self.dead.clone();
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Err(_)) = &poll {
            dead.store(true, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.dead.store(true, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One SFTP session on one SSH channel. Requests on it can be pipelined.
pub(crate) struct Session {
    pub(crate) raw: RawSftpSession,
    dead: Arc<AtomicBool>,
    conn: Arc<Conn>,
    /// The server offers `posix-rename@openssh.com` (and the config allows it).
    pub(crate) posix_rename: bool,
    /// The server offers `hardlink@openssh.com`.
    pub(crate) hardlink: bool,
    /// Bytes per read request: what the server's `limits@openssh.com` allows (at most
    /// [`MAX_CHUNK`]), else the 32 KiB every server accepts.
    pub(crate) read_chunk: usize,
    /// Bytes per write request, likewise.
    pub(crate) write_chunk: usize,
}

/// The request size every SFTP server accepts (the draft's minimum packet size).
pub(crate) const MIN_CHUNK: usize = 32 * 1024;
/// The largest read or write request sent, even where a server allows more.
pub(crate) const MAX_CHUNK: usize = 256 * 1024;

/// The request size for a server's stated limit of `limit` bytes (0: none stated).
fn chunk_for(limit: u64) -> usize {
    if limit == 0 {
        return MIN_CHUNK;
    }
    usize::try_from(limit).unwrap_or(MAX_CHUNK).min(MAX_CHUNK)
}

impl Session {
    /// False once the channel or the connection under it has ended.
    pub(crate) fn is_alive(&self) -> bool {
        !self.dead.load(Ordering::Relaxed) && !self.conn.is_closed()
    }

    /// Awaits one request; a connection-level failure marks the session dead.
    pub(crate) async fn run<T>(
        &self,
        request: impl Future<Output = Result<T, SftpProtoError>>,
    ) -> Result<T, SftpError> {
        match request.await {
            Ok(v) => Ok(v),
            Err(e) => {
                if crate::error::proto_is_connection_error(&e) {
                    self.dead.store(true, Ordering::Relaxed);
                }
                Err(SftpError::Sftp(e))
            }
        }
    }
}

#[derive(Default)]
struct PoolState {
    conn: Option<Arc<Conn>>,
    sessions: Vec<Arc<Session>>,
}

/// Up to `max_sessions` SFTP channels over one SSH connection, opened on demand and
/// reopened (with a new connection if needed) when they die.
///
/// A caller gets an `Arc<Session>`: an idle one when there is one, a new channel while below
/// the limit, else the least busy one (SFTP pipelines requests, so sharing is safe). Nobody
/// ever waits for another caller to finish, so nested use (a listing open while a write
/// runs) cannot deadlock.
pub(crate) struct Pool {
    cfg: Arc<SftpConfig>,
    state: Mutex<PoolState>,
}

impl Pool {
    pub(crate) fn new(cfg: Arc<SftpConfig>) -> Self {
        Pool {
            cfg,
            state: Mutex::new(PoolState::default()),
        }
    }

    /// Returns a live session, connecting or reconnecting as needed.
    pub(crate) async fn get(&self) -> Result<Arc<Session>, SftpError> {
        let mut state = self.state.lock().await;
        state.sessions.retain(|s| s.is_alive());
        if let Some(idle) = state.sessions.iter().find(|s| Arc::strong_count(s) == 1) {
            return Ok(idle.clone());
        }
        if state.sessions.len() < self.cfg.max_sessions.max(1) {
            match self.open_session(&mut state).await {
                Ok(session) => {
                    state.sessions.push(session.clone());
                    return Ok(session);
                }
                // The server may cap channels per connection (sshd's MaxSessions): share.
                Err(e) if state.sessions.is_empty() => return Err(e),
                Err(e) => tracing::debug!("cannot open another SFTP channel, sharing: {e}"),
            }
        }
        state
            .sessions
            .iter()
            .min_by_key(|s| Arc::strong_count(s))
            .cloned()
            .ok_or_else(|| SftpError::Message("no SFTP session available".into()))
    }

    async fn open_session(&self, state: &mut PoolState) -> Result<Arc<Session>, SftpError> {
        let conn = match &state.conn {
            Some(conn) if !conn.is_closed() => conn.clone(),
            _ => {
                state.conn = None;
                let conn = Arc::new(connect(&self.cfg).await?);
                state.conn = Some(conn.clone());
                conn
            }
        };
        let target = self.cfg.host_port();
        // Opening a channel is a request on a connection already open: it gets the idle
        // timeout, not the connect timeout. Unanswered, the connection is stalled: it is
        // dropped (the next attempt connects anew) rather than waited on until the
        // keepalive gives up on it (about a minute), with every caller queued behind.
        let idle = self.cfg.timeout;
        let opened = tokio::time::timeout(idle, async {
            let channel = conn.handle.channel_open_session().await?;
            channel.request_subsystem(true, "sftp").await?;
            Ok::<_, russh::Error>(channel)
        })
        .await;
        let channel = match opened {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => {
                return Err(SftpError::Connect {
                    target,
                    message: format!("cannot open the SFTP channel: {e}"),
                });
            }
            Err(_) => {
                conn.stalled.store(true, Ordering::Relaxed);
                state.conn = None;
                return Err(SftpError::Connect {
                    target,
                    message: format!(
                        "the server did not answer the opening of an SFTP channel within \
                         {idle:?} (the idle timeout); the connection is dropped"
                    ),
                });
            }
        };
        let dead = Arc::new(AtomicBool::new(false));
        let stream = WatchedStream {
            inner: channel.into_stream(),
            dead: dead.clone(),
        };
        let sftp_config = russh_sftp::client::Config {
            request_timeout_secs: self.cfg.timeout.as_secs().max(1),
            ..russh_sftp::client::Config::default()
        };
        let raw = RawSftpSession::new_with_config(stream, sftp_config);
        let version = raw.init().await.map_err(|e| SftpError::Connect {
            target: target.clone(),
            message: format!("SFTP handshake failed: {e}"),
        })?;
        let offers = |name: &str| version.extensions.contains_key(name);
        // OpenSSH states how big a read or write may be (256 KiB less a header): fewer,
        // bigger requests move a big file with less work on both ends. Without the
        // extension, or if asking fails, 32 KiB, which every server accepts.
        let (read_chunk, write_chunk) = if offers(LIMITS) {
            match raw.limits().await {
                Ok(l) => (chunk_for(l.max_read_len), chunk_for(l.max_write_len)),
                Err(e) if crate::error::proto_is_connection_error(&e) => {
                    return Err(SftpError::Connect {
                        target,
                        message: format!("asking the server for its limits failed: {e}"),
                    });
                }
                Err(e) => {
                    tracing::debug!("limits@openssh.com failed ({e}); using 32 KiB requests");
                    (MIN_CHUNK, MIN_CHUNK)
                }
            }
        } else {
            (MIN_CHUNK, MIN_CHUNK)
        };
        Ok(Arc::new(Session {
            read_chunk,
            write_chunk,
            posix_rename: self.cfg.use_posix_rename && offers(POSIX_RENAME),
            hardlink: offers(HARDLINK),
            raw,
            dead,
            conn,
        }))
    }
}
