//! [`SftpBuilder`]: settings from code, the environment and an `sftp://` URL.

use std::path::PathBuf;
use std::time::Duration;

use syncengine_core::{Error, Result};

use crate::BACKEND;
use crate::client::SftpClient;
use crate::config::SftpConfig;

/// Environment variable: private key file.
pub const ENV_KEY: &str = "SYNCENGINE_SFTP_KEY";
/// Environment variable: passphrase of the private key file.
pub const ENV_KEY_PASSPHRASE: &str = "SYNCENGINE_SFTP_KEY_PASSPHRASE";
/// Environment variable: password (tried only when set).
pub const ENV_PASSWORD: &str = "SYNCENGINE_SFTP_PASSWORD";
/// Environment variable: known_hosts file.
pub const ENV_KNOWN_HOSTS: &str = "SYNCENGINE_SFTP_KNOWN_HOSTS";
/// Environment variable: `1` (or `true`, `yes`) trusts an unknown host key on first use.
pub const ENV_TOFU: &str = "SYNCENGINE_SFTP_TOFU";

/// Builds an [`SftpClient`].
///
/// ```no_run
/// use syncengine_backend_sftp::SftpBuilder;
///
/// let client = SftpBuilder::from_env()
///     .with_url("sftp://me@nas.local:2222/srv/photos")
///     .with_key_file("/home/me/.ssh/id_ed25519")
///     .build()?;
/// # Ok::<(), syncengine_core::Error>(())
/// ```
///
/// # URL
/// `sftp://[user[:password]@]host[:port][/path]`, percent-encoded where needed. The path is
/// absolute (`/srv/photos`); `/~/photos` is relative to the login directory and no path (or
/// `/~`) is the login directory itself. The user defaults to `$USER`.
#[derive(Clone, Debug, Default)]
pub struct SftpBuilder {
    url: Option<String>,
    cfg: SftpConfig,
}

impl SftpBuilder {
    /// Creates a builder with defaults: port 22, key files from `~/.ssh` and the ssh-agent,
    /// `~/.ssh/known_hosts`, no trust on first use, up to 4 SFTP channels.
    pub fn new() -> Self {
        SftpBuilder::default()
    }

    /// Creates a builder with the settings from `SYNCENGINE_SFTP_KEY`,
    /// `SYNCENGINE_SFTP_KEY_PASSPHRASE`, `SYNCENGINE_SFTP_PASSWORD`,
    /// `SYNCENGINE_SFTP_KNOWN_HOSTS` and `SYNCENGINE_SFTP_TOFU` (where set), and parallel
    /// reads from `SYNCENGINE_MULTI_THREAD_*` ([`syncengine_core::ParallelReads::from_env`]).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut b = SftpBuilder::new();
        if let Some(key) = var(ENV_KEY) {
            b = b.with_key_file(key);
        }
        if let Some(p) = var(ENV_KEY_PASSPHRASE) {
            b = b.with_key_passphrase(p);
        }
        if let Some(p) = var(ENV_PASSWORD) {
            b = b.with_password(p);
        }
        if let Some(k) = var(ENV_KNOWN_HOSTS) {
            b = b.with_known_hosts(k);
        }
        // An unreadable value keeps the default: `location::open` reads the same variables
        // first and reports it.
        if let Ok(t) = syncengine_core::timeouts::Timeouts::from_env() {
            b = b.with_timeouts(t);
        }
        // As for the timeouts: an unreadable value keeps the default.
        if let Ok(p) = syncengine_core::ParallelReads::from_env(b.cfg.parallel_reads.clone()) {
            b.cfg.parallel_reads = p;
        }
        if let Some(t) = var(ENV_TOFU) {
            b = b.with_trust_on_first_use(matches!(
                t.to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            ));
        }
        b
    }

    /// Reads large files as several ranges at once with these settings, or as one stream
    /// (`None`, the default); see [`SftpConfig::parallel_reads`](crate::SftpConfig).
    pub fn with_parallel_reads(mut self, settings: Option<syncengine_core::ParallelReads>) -> Self {
        self.cfg.parallel_reads = settings;
        self
    }

    /// Sets host, port, user, root (and a password, if the URL has one) from an `sftp://` URL.
    /// The URL is parsed by [`SftpBuilder::build`].
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Sets the private key file to log in with.
    pub fn with_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cfg.key_file = Some(path.into());
        self
    }

    /// Sets the passphrase of an encrypted private key file.
    pub fn with_key_passphrase(mut self, passphrase: impl Into<String>) -> Self {
        self.cfg.key_passphrase = Some(passphrase.into());
        self
    }

    /// Sets a password; it is tried after keys and the agent.
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.cfg.password = Some(password.into());
        self
    }

    /// Sets whether the ssh-agent at `SSH_AUTH_SOCK` is asked for keys (default true).
    pub fn with_agent(mut self, use_agent: bool) -> Self {
        self.cfg.use_agent = use_agent;
        self
    }

    /// Sets the known_hosts file host keys are checked against (default `~/.ssh/known_hosts`).
    pub fn with_known_hosts(mut self, path: impl Into<PathBuf>) -> Self {
        self.cfg.known_hosts = Some(path.into());
        self
    }

    /// Accepts the key of a host that has no known_hosts entry yet and appends it there.
    /// A key that differs from a recorded one is still refused. Off by default.
    pub fn with_trust_on_first_use(mut self, tofu: bool) -> Self {
        self.cfg.trust_on_first_use = tofu;
        self
    }

    /// Sets the most SFTP channels open at once (default 4, at least 1).
    pub fn with_max_sessions(mut self, n: usize) -> Self {
        self.cfg.max_sessions = n.max(1);
        self
    }

    /// Sets the time limit for each SFTP request (default 5 minutes): a chunk of a transfer
    /// at most, so a limit on time without progress, never on a whole file.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.timeout = timeout;
        self
    }

    /// Sets both limits from a [`Timeouts`](syncengine_core::timeouts::Timeouts): `connect`
    /// for the TCP connection and SSH handshake, `idle` for each request (see
    /// [`with_timeout`](SftpBuilder::with_timeout)). [`from_env`](SftpBuilder::from_env)
    /// reads them from `SYNCENGINE_CONTIMEOUT` and `SYNCENGINE_TIMEOUT`.
    pub fn with_timeouts(mut self, timeouts: syncengine_core::timeouts::Timeouts) -> Self {
        self.cfg.connect_timeout = timeouts.connect;
        self.cfg.timeout = timeouts.idle;
        self
    }

    /// Sets whether `posix-rename@openssh.com` is used where offered (default true). Off, a
    /// replacing write moves the old file aside until the new one is in place.
    pub fn with_posix_rename(mut self, enabled: bool) -> Self {
        self.cfg.use_posix_rename = enabled;
        self
    }

    /// Validates the settings and returns the client. Nothing connects until the first
    /// operation (or [`SftpClient::check`]).
    ///
    /// # Errors
    /// [`Error::InvalidPath`] for a malformed URL or a missing host or user.
    pub fn build(self) -> Result<SftpClient> {
        let mut cfg = self.cfg;
        if let Some(url) = &self.url {
            let parsed = parse_url(url).map_err(|reason| Error::InvalidPath {
                path: redact_url(url),
                reason,
            })?;
            cfg.host = parsed.host;
            if let Some(port) = parsed.port {
                cfg.port = port;
            }
            if let Some(user) = parsed.user {
                cfg.user = user;
            }
            if parsed.password.is_some() {
                cfg.password = parsed.password;
            }
            cfg.root = parsed.root;
        }
        if cfg.host.is_empty() {
            return Err(Error::other(BACKEND, "", "no host: give an sftp:// URL"));
        }
        if cfg.user.is_empty() {
            cfg.user = std::env::var("USER").unwrap_or_default();
        }
        if cfg.user.is_empty() {
            return Err(Error::other(
                BACKEND,
                "",
                "no user: give one in the URL (sftp://user@host/path)",
            ));
        }
        Ok(SftpClient::from_config(cfg))
    }
}

#[derive(Debug, PartialEq, Eq)]
struct ParsedUrl {
    user: Option<String>,
    password: Option<String>,
    host: String,
    port: Option<u16>,
    root: String,
}

use syncengine_core::identity::redact_url;
use syncengine_core::path::percent_decode;

/// Decodes one component of the URL; the error names the component, never its text.
fn decode(what: &str, component: &str) -> std::result::Result<String, String> {
    percent_decode(component).map_err(|e| format!("the {what}: {e}"))
}

fn parse_url(url: &str) -> std::result::Result<ParsedUrl, String> {
    let rest = url
        .strip_prefix("sftp://")
        .ok_or_else(|| "not an sftp:// URL".to_owned())?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(ui) => match ui.find(':') {
            Some(i) => (
                Some(decode("user name", &ui[..i])?),
                Some(decode("password", &ui[i + 1..])?),
            ),
            None => (Some(decode("user name", ui)?), None),
        },
        None => (None, None),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let end = v6.find(']').ok_or("unclosed '[' in the host")?;
        let port = match &v6[end + 1..] {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after ']'")?),
        };
        (v6[..end].to_owned(), port)
    } else {
        match hostport.rfind(':') {
            Some(i) => (hostport[..i].to_owned(), Some(&hostport[i + 1..])),
            None => (hostport.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?),
        None => None,
    };
    let path = decode("path", path)?;
    let root = if path.is_empty() || path == "/~" || path == "/~/" {
        String::new()
    } else if let Some(rel) = path.strip_prefix("/~/") {
        rel.trim_end_matches('/').to_owned()
    } else if path == "/" {
        "/".to_owned()
    } else {
        path.trim_end_matches('/').to_owned()
    };
    if root.contains('\0') {
        return Err("NUL in the path".into());
    }
    Ok(ParsedUrl {
        user: user.filter(|u| !u.is_empty()),
        password,
        host,
        port,
        root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let p = parse_url("sftp://me@host:2222/srv/data/").unwrap();
        assert_eq!(
            p,
            ParsedUrl {
                user: Some("me".into()),
                password: None,
                host: "host".into(),
                port: Some(2222),
                root: "/srv/data".into(),
            }
        );
        let p = parse_url("sftp://a%40b:p%3Ass@[::1]/~/my%20dir").unwrap();
        assert_eq!(p.user.as_deref(), Some("a@b"));
        assert_eq!(p.password.as_deref(), Some("p:ss"));
        assert_eq!(p.host, "::1");
        assert_eq!(p.port, None);
        assert_eq!(p.root, "my dir");
        assert_eq!(parse_url("sftp://h").unwrap().root, "");
        assert_eq!(parse_url("sftp://h/").unwrap().root, "/");
        assert!(parse_url("sftp://h:99999/x").is_err());
        assert!(parse_url("sftp:///x").is_err());
        assert!(parse_url("http://h/x").is_err());
    }

    #[test]
    fn build_keeps_password_out_of_display() {
        let c = SftpBuilder::new()
            .with_url("sftp://u:secret@h:2200/x")
            .build()
            .unwrap();
        assert_eq!(c.to_string(), "SftpClient(sftp://u@h:2200/x)");
        assert!(!format!("{c:?}").contains("secret"));
        let e = SftpBuilder::new()
            .with_url("sftp://u:secret@h:bad/x")
            .build()
            .unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        // A password whose escapes are not UTF-8: refused, and the error does not echo it.
        let e = SftpBuilder::new()
            .with_url("sftp://u:secret%FF@h/x")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("password"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
