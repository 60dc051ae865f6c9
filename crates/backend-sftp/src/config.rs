//! [`SftpConfig`]: where to connect and how to authenticate, with secrets kept out of `Debug`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Everything an [`SftpClient`](crate::SftpClient) needs to connect.
///
/// Build one with [`SftpBuilder`](crate::SftpBuilder). `Debug` prints `<redacted>` for the
/// password and the key passphrase; `Display` of the client shows only
/// `sftp://user@host:port/path`.
#[derive(Clone)]
#[non_exhaustive]
pub struct SftpConfig {
    /// Server host name or IP address (without brackets for IPv6).
    pub host: String,
    /// TCP port (22 unless the URL says otherwise).
    pub port: u16,
    /// User to log in as.
    pub user: String,
    /// The client's root directory on the server. Absolute (`/srv/data`), or relative to the
    /// user's login directory (`data`); empty means the login directory itself.
    pub root: String,
    /// Private key file to authenticate with.
    pub key_file: Option<PathBuf>,
    /// Passphrase of an encrypted private key file.
    pub key_passphrase: Option<String>,
    /// Password; only tried when set explicitly.
    pub password: Option<String>,
    /// Try the keys of the ssh-agent at `SSH_AUTH_SOCK`.
    pub use_agent: bool,
    /// known_hosts file the host key is checked against (default `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// Accept (and append to known_hosts) the key of a host that has no entry yet. A key that
    /// differs from a recorded one is refused even then.
    pub trust_on_first_use: bool,
    /// Most SFTP channels open at once (at least 1).
    pub max_sessions: usize,
    /// Time limit for connecting (TCP and the SSH handshake). Default 60 s.
    pub connect_timeout: Duration,
    /// Time limit for each SFTP request (at most one chunk of a transfer: a limit on time
    /// without progress, never on a whole file). Default 5 minutes.
    pub timeout: Duration,
    /// Use `posix-rename@openssh.com` when the server offers it. Turning it off forces the
    /// portable replace (old file moved aside until the new one is in place); for tests.
    pub use_posix_rename: bool,
    /// Reads large files as several ranges at once (each on its own open handle, whose size
    /// and mtime must still be the listed ones), or as one stream (`None`, the default: one
    /// SFTP read already keeps many requests in flight). See
    /// [`syncengine_core::parallel_read`].
    pub parallel_reads: Option<syncengine_core::ParallelReads>,
}

impl Default for SftpConfig {
    fn default() -> Self {
        SftpConfig {
            host: String::new(),
            port: 22,
            user: String::new(),
            root: String::new(),
            key_file: None,
            key_passphrase: None,
            password: None,
            use_agent: true,
            known_hosts: None,
            trust_on_first_use: false,
            max_sessions: 4,
            connect_timeout: syncengine_core::timeouts::Timeouts::default().connect,
            timeout: syncengine_core::timeouts::Timeouts::default().idle,
            use_posix_rename: true,
            parallel_reads: None,
        }
    }
}

impl SftpConfig {
    /// `host:port` as known_hosts and error messages spell it (`[host]:port` off port 22).
    pub(crate) fn host_port(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{host}:{}", self.port)
    }

    /// The host as known_hosts names it: `host` on port 22, else `[host]:port`.
    pub(crate) fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }

    /// The URL this config connects to, without secrets.
    pub fn url(&self) -> String {
        let root = if self.root.starts_with('/') {
            self.root.clone()
        } else if self.root.is_empty() {
            "/~".to_owned()
        } else {
            format!("/~/{}", self.root)
        };
        format!("sftp://{}@{}{}", self.user, self.host_port(), root)
    }

    /// The known_hosts file to use.
    pub(crate) fn known_hosts_path(&self) -> Option<PathBuf> {
        self.known_hosts.clone().or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh").join("known_hosts"))
        })
    }
}

impl fmt::Debug for SftpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("SftpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("root", &self.root)
            .field("key_file", &self.key_file)
            .field("key_passphrase", &redact(&self.key_passphrase))
            .field("password", &redact(&self.password))
            .field("use_agent", &self.use_agent)
            .field("known_hosts", &self.known_hosts)
            .field("trust_on_first_use", &self.trust_on_first_use)
            .field("max_sessions", &self.max_sessions)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("use_posix_rename", &self.use_posix_rename)
            .field("parallel_reads", &self.parallel_reads)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let cfg = SftpConfig {
            password: Some("hunter2".into()),
            key_passphrase: Some("open sesame".into()),
            ..SftpConfig::default()
        };
        let dbg = format!("{cfg:?}");
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("open sesame"),
            "{dbg}"
        );
        assert!(dbg.contains("<redacted>"), "{dbg}");
    }

    #[test]
    fn url_forms() {
        let mut cfg = SftpConfig {
            host: "h".into(),
            port: 2222,
            user: "u".into(),
            root: "/srv/x".into(),
            ..SftpConfig::default()
        };
        assert_eq!(cfg.url(), "sftp://u@h:2222/srv/x");
        cfg.root = "rel".into();
        assert_eq!(cfg.url(), "sftp://u@h:2222/~/rel");
        cfg.host = "::1".into();
        cfg.root = String::new();
        assert_eq!(cfg.url(), "sftp://u@[::1]:2222/~");
    }
}
