//! [`WebDavBuilder`]: turns a URL, credentials and options into a [`WebDavClient`].

use syncengine_core::{Error, ParallelReads, Result};
use url::Url;

use crate::auth::{Auth, Credentials};
use crate::client::{HttpClients, WebDavClient};
use crate::config::{WebDavAuth, WebDavConfig};
use crate::error::BACKEND;

/// Environment variable holding the user name ([`WebDavBuilder::from_env`]).
pub const ENV_USER: &str = "SYNCENGINE_WEBDAV_USER";
/// Environment variable holding the password ([`WebDavBuilder::from_env`]).
pub const ENV_PASSWORD: &str = "SYNCENGINE_WEBDAV_PASSWORD";
/// Environment variable choosing the authentication mode, `basic`, `digest` or `auto`
/// ([`WebDavBuilder::from_env`], [`WebDavAuth`]).
pub const ENV_AUTH: &str = "SYNCENGINE_WEBDAV_AUTH";

/// Environment variable that lets Basic credentials go over plain `http://`: `1` (or
/// `true`, `yes`) opts in, `0` (or `false`, `no`, empty) does not
/// ([`WebDavBuilder::from_env`], [`WebDavBuilder::with_allow_insecure_basic`]).
pub const ENV_ALLOW_INSECURE_BASIC: &str = "SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC";
/// Environment variable naming a PEM file of CA certificates to trust for `https://`
/// ([`WebDavBuilder::from_env`], [`WebDavBuilder::with_ca_file`]); `SSL_CERT_FILE` is read
/// when it is not set.
pub const ENV_CA_FILE: &str = "SYNCENGINE_WEBDAV_CA_FILE";

/// Builds a [`WebDavClient`].
///
/// ```no_run
/// use syncengine_backend_webdav::WebDavBuilder;
///
/// let client = WebDavBuilder::from_env()
///     .with_url("webdav://127.0.0.1:8082/backups/laptop")
///     .build()?;
/// assert_eq!(client.to_string(), "WebDavClient(http://127.0.0.1:8082/backups/laptop/)");
/// # Ok::<(), syncengine_core::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct WebDavBuilder {
    config: WebDavConfig,
    /// An unparseable `SYNCENGINE_WEBDAV_AUTH`, reported by [`WebDavBuilder::build`].
    env_error: Option<String>,
    /// An unparseable `SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC`, reported by
    /// [`WebDavBuilder::build`] unless [`WebDavBuilder::with_allow_insecure_basic`] replaces it.
    env_insecure_error: Option<String>,
    /// Parallel range reads of large files; `None` until set: the default settings.
    parallel_reads: Option<Option<ParallelReads>>,
}

impl WebDavBuilder {
    /// Starts from the default configuration: no URL, no credentials.
    pub fn new() -> Self {
        WebDavBuilder::default()
    }

    /// Starts from the default configuration plus credentials from `SYNCENGINE_WEBDAV_USER`
    /// and `SYNCENGINE_WEBDAV_PASSWORD` and the authentication mode from
    /// `SYNCENGINE_WEBDAV_AUTH` (`basic`, `digest` or `auto`), where set. An unknown mode
    /// fails [`WebDavBuilder::build`] unless [`WebDavBuilder::with_auth`] replaces it.
    ///
    /// Also reads `SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC` (`1` lets Basic credentials go over
    /// plain http, see [`WebDavBuilder::with_allow_insecure_basic`]) and a CA file from
    /// `SYNCENGINE_WEBDAV_CA_FILE`, else `SSL_CERT_FILE` (see [`WebDavBuilder::with_ca_file`]),
    /// and the parallel reads of large files from `SYNCENGINE_MULTI_THREAD_STREAMS` and
    /// `SYNCENGINE_MULTI_THREAD_CUTOFF` ([`ParallelReads::from_env`]).
    pub fn from_env() -> Self {
        let mut b = WebDavBuilder::new();
        if let Ok(v) = std::env::var(ENV_ALLOW_INSECURE_BASIC) {
            match parse_flag(&v) {
                Some(allow) => b.config.allow_insecure_basic = allow,
                None => {
                    b.env_insecure_error = Some(format!(
                        "{ENV_ALLOW_INSECURE_BASIC}: expected 1 or 0, got {v:?}"
                    ));
                }
            }
        }
        match syncengine_core::timeouts::Timeouts::from_env() {
            Ok(t) => b.config.timeouts = t,
            Err(e) => b.env_error = Some(e),
        }
        match ParallelReads::from_env(Some(ParallelReads::default())) {
            Ok(p) => b.parallel_reads = Some(p),
            Err(e) => b.env_error = Some(e),
        }
        b.config.ca_file = [ENV_CA_FILE, "SSL_CERT_FILE"]
            .iter()
            .find_map(|k| std::env::var_os(k).filter(|v| !v.is_empty()))
            .map(std::path::PathBuf::from);
        b.config.username = std::env::var(ENV_USER).ok().filter(|s| !s.is_empty());
        b.config.password = std::env::var(ENV_PASSWORD).ok().filter(|s| !s.is_empty());
        if let Some(mode) = std::env::var(ENV_AUTH)
            .ok()
            .filter(|s| !s.trim().is_empty())
        {
            match mode.parse::<WebDavAuth>() {
                Ok(mode) => b.config.auth = mode,
                Err(e) => b.env_error = Some(format!("{ENV_AUTH}: {e}")),
            }
        }
        b
    }

    /// Sets how long to wait for a connection and how long a request may go without progress
    /// (defaults 60 s and 5 minutes; `SYNCENGINE_CONTIMEOUT` and `SYNCENGINE_TIMEOUT` with
    /// [`from_env`](WebDavBuilder::from_env)). A download is limited only by time without
    /// bytes; an upload's request, sent with its body, by `idle` in all: raise it for single
    /// files that take longer to send.
    pub fn with_timeouts(mut self, timeouts: syncengine_core::timeouts::Timeouts) -> Self {
        self.config.timeouts = timeouts;
        self
    }

    /// Starts from a configuration.
    pub fn from_config(config: WebDavConfig) -> Self {
        WebDavBuilder {
            config,
            env_error: None,
            env_insecure_error: None,
            parallel_reads: None,
        }
    }

    /// Sets the root collection: `webdav://host[:port]/path`, `webdavs://…`, `http://…` or
    /// `https://…`. A `user:password@` in the URL is taken as credentials.
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.config.url = Some(url.into());
        self
    }

    /// Sets the credentials for HTTP authentication (Basic or Digest, see
    /// [`WebDavBuilder::with_auth`]).
    pub fn with_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.config.username = Some(user.into());
        self.config.password = Some(password.into());
        self
    }

    /// Sets how to authenticate: [`WebDavAuth::Auto`] (the default) answers the server's
    /// challenge, Digest when offered, else Basic; [`WebDavAuth::Basic`] sends Basic with every
    /// request; [`WebDavAuth::Digest`] answers Digest challenges only.
    pub fn with_auth(mut self, auth: WebDavAuth) -> Self {
        self.config.auth = auth;
        self.env_error = None;
        self
    }

    /// Lets Basic credentials go over plain `http://` (default: no). Without it, a client
    /// that would send Basic credentials over `http://` (in [`WebDavAuth::Basic`] mode, or
    /// answering a server that offers only Basic) fails with an error that says so, and the
    /// password never goes out. Only for a network you trust, such as loopback; `https://`
    /// and Digest authentication are not affected. Also `SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC=1`
    /// ([`WebDavBuilder::from_env`]).
    pub fn with_allow_insecure_basic(mut self, allow: bool) -> Self {
        self.config.allow_insecure_basic = allow;
        self.env_insecure_error = None;
        self
    }

    /// Trusts the CA certificates in the PEM file at `path` for `https://`, besides the
    /// platform's trust store: for a server whose certificate your own CA signed. Certificates
    /// are still checked (name, dates, chain). Also `SYNCENGINE_WEBDAV_CA_FILE` or
    /// `SSL_CERT_FILE` ([`WebDavBuilder::from_env`]).
    pub fn with_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.ca_file = Some(path.into());
        self
    }

    /// Keeps modification times in a dead property (default) or not (see
    /// [`WebDavConfig::mtime_property`]).
    pub fn with_mtime_property(mut self, enabled: bool) -> Self {
        self.config.mtime_property = enabled;
        self
    }

    /// Sets how many `PROPFIND` requests a listing keeps in flight.
    pub fn with_list_concurrency(mut self, n: usize) -> Self {
        self.config.list_concurrency = n;
        self
    }

    /// Reads large files as several ranges at once with these settings, or as one stream
    /// (`None`). Default: [`ParallelReads::default`] (files of 256 MiB and more, 4 ranges at
    /// once, like rclone's `--multi-thread-*`). Each range is a `GET` with `Range` whose
    /// answer must carry the listed ETag, so all ranges of a copy come from one version of the
    /// file (see [`syncengine_core::parallel_read`]). A server that ignores `Range` would send
    /// the whole file for every range: turn it off for such a server.
    pub fn with_parallel_reads(mut self, settings: Option<ParallelReads>) -> Self {
        self.parallel_reads = Some(settings);
        self
    }

    /// Builds the client. No request is made until the client is used.
    ///
    /// # Errors
    /// [`Error::Other`] when the URL is missing, unparseable, has another scheme, a query or a
    /// fragment, when `SYNCENGINE_WEBDAV_AUTH` names no mode, or when the HTTP client cannot be
    /// set up.
    pub fn build(self) -> Result<WebDavClient> {
        if let Some(e) = self.env_error.or(self.env_insecure_error) {
            return Err(Error::other(BACKEND, "", e));
        }
        let raw =
            self.config.url.as_deref().ok_or_else(|| {
                Error::other(BACKEND, "", "no URL given (webdav://host[:port]/path)")
            })?;
        let (base, url_user, url_password) = parse_root_url(raw)?;
        let username = self.config.username.clone().or(url_user);
        let password = self.config.password.clone().or(url_password);
        let credentials = username.map(|user| Credentials::new(user, password.unwrap_or_default()));
        let ca = match &self.config.ca_file {
            Some(path) => Some(read_ca_file(path)?),
            None => None,
        };
        let basic_allowed = base.scheme() == "https" || self.config.allow_insecure_basic;
        let timeouts = self.config.timeouts;
        let client = |read_timeout: Option<std::time::Duration>| {
            let mut http = reqwest::Client::builder()
                // Redirects could carry credentials to another origin; no WebDAV method needs
                // them.
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(timeouts.connect)
                // Bytes the system has sent may go unacknowledged this long (reqwest: 30 s).
                .tcp_user_timeout(timeouts.idle)
                .user_agent(concat!("syncengine/", env!("CARGO_PKG_VERSION")));
            if let Some(certs) = &ca {
                // Added to the platform's roots; the certificate is checked as always.
                http = http.tls_certs_merge(certs.clone());
            }
            if let Some(t) = read_timeout {
                http = http.read_timeout(t);
            }
            http.build().map_err(|e| Error::Other {
                backend: BACKEND,
                path: String::new(),
                source: Box::new(e),
            })
        };
        let clients = HttpClients {
            // reqwest's read timeout restarts with each chunk of an answer, but runs unreset
            // from a request's start to its answer's head: fine for every request but uploads.
            plain: client(Some(timeouts.idle))?,
            // Uploads are timed by progress instead (see syncengine_core::stall).
            uploads: client(None)?,
            idle: timeouts.idle,
        };
        Ok(WebDavClient::new(
            clients,
            base,
            Auth::new(credentials, self.config.auth, basic_allowed),
            self.config.mtime_property,
            self.config.list_concurrency.max(1),
            self.parallel_reads
                .unwrap_or_else(|| Some(ParallelReads::default())),
        ))
    }
}

/// An on/off environment value: `1`, `true`, `yes` or `0`, `false`, `no`, empty (any case,
/// blanks around ignored); `None` for anything else.
fn parse_flag(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Some(true),
        "" | "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// The certificates of a PEM file of CA certificates.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>> {
    let bad = |why: String| Error::other(BACKEND, "", format!("CA file {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// Parses a root URL into an `http(s)` URL ending in `/` without credentials, plus the
/// credentials it carried.
fn parse_root_url(raw: &str) -> Result<(Url, Option<String>, Option<String>)> {
    let bad = |why: &str| Error::other(BACKEND, "", format!("bad WebDAV URL: {why}"));
    let (scheme, rest) = raw
        .split_once("://")
        .ok_or_else(|| bad("expected webdav://host[:port]/path"))?;
    let http_scheme = match scheme.to_ascii_lowercase().as_str() {
        "webdav" | "http" => "http",
        "webdavs" | "https" => "https",
        _ => return Err(bad("the scheme must be webdav, webdavs, http or https")),
    };
    if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
        return Err(bad("no host"));
    }
    let mut url =
        Url::parse(&format!("{http_scheme}://{rest}")).map_err(|e| bad(&e.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a query or fragment is not allowed"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    // A credential that does not decode is refused, not mangled into a wrong one.
    let decode = |what: &str, s: &str| {
        syncengine_core::path::percent_decode(s).map_err(|e| bad(&format!("the {what}: {e}")))
    };
    let user = match Some(url.username()).filter(|u| !u.is_empty()) {
        Some(u) => Some(decode("user name", u)?),
        None => None,
    };
    let password = url.password().map(|p| decode("password", p)).transpose()?;
    // Infallible for http(s) URLs with a host, which was checked above.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok((url, user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_schemes() {
        let (u, _, _) = parse_root_url("webdav://127.0.0.1:8082/a/b").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8082/a/b/");
        let (u, _, _) = parse_root_url("webdavs://example.invalid/dav/").unwrap();
        assert_eq!(u.as_str(), "https://example.invalid/dav/");
        let (u, _, _) = parse_root_url("http://h:1").unwrap();
        assert_eq!(u.as_str(), "http://h:1/");
        let (u, user, pw) = parse_root_url("webdav://me:p%40ss@h/x").unwrap();
        assert_eq!(u.as_str(), "http://h/x/");
        assert_eq!(user.as_deref(), Some("me"));
        assert_eq!(pw.as_deref(), Some("p@ss"));
        for bad in [
            "ftp://h/x",
            "h/x",
            "webdav://h/x?q",
            "webdav://h/x#f",
            "webdav:///x",
        ] {
            assert!(parse_root_url(bad).is_err(), "{bad}");
        }
        // A password whose escapes are not UTF-8 is refused (not mangled into another
        // password), and the error does not echo it.
        let e = parse_root_url("webdav://me:secret%FF@h/x").unwrap_err();
        assert!(e.to_string().contains("password"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn builder_debug_and_display_hide_secrets() {
        let b = WebDavBuilder::new()
            .with_url("webdav://user:urlsecret@127.0.0.1:8082/root")
            .with_credentials("dav", "buildersecret");
        let shown = format!("{b:?}");
        assert!(
            !shown.contains("buildersecret") && !shown.contains("urlsecret"),
            "{shown}"
        );
        let c = b.build().unwrap();
        for shown in [format!("{c:?}"), c.to_string()] {
            assert!(
                !shown.contains("buildersecret") && !shown.contains("urlsecret"),
                "{shown}"
            );
        }
        assert_eq!(c.to_string(), "WebDavClient(http://127.0.0.1:8082/root/)");
    }

    #[test]
    fn insecure_basic_flag_values() {
        for (v, want) in [
            ("1", Some(true)),
            (" YES ", Some(true)),
            ("true", Some(true)),
            ("0", Some(false)),
            ("", Some(false)),
            ("no", Some(false)),
            ("maybe", None),
        ] {
            assert_eq!(parse_flag(v), want, "{v:?}");
        }
        let mut b = WebDavBuilder::new().with_url("webdav://127.0.0.1:1/x");
        b.env_insecure_error = Some(format!("{ENV_ALLOW_INSECURE_BASIC}: bad"));
        let err = b.clone().build().unwrap_err().to_string();
        assert!(err.contains(ENV_ALLOW_INSECURE_BASIC), "{err}");
        assert!(b.with_allow_insecure_basic(false).build().is_ok());
    }

    #[test]
    fn a_ca_file_that_is_missing_or_holds_no_certificate_fails_the_build() {
        let b = WebDavBuilder::new().with_url("webdavs://127.0.0.1:1/x");
        let err = b
            .clone()
            .with_ca_file("/nonexistent/ca.pem")
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let dir = std::env::temp_dir().join(format!("webdav-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate").unwrap();
        let err = b.with_ca_file(&dir).build().unwrap_err().to_string();
        let _ = std::fs::remove_file(&dir);
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn auth_mode_from_the_builder_and_a_bad_environment_value() {
        let b = WebDavBuilder::new()
            .with_url("webdav://127.0.0.1:8084/root")
            .with_credentials("dav", "pw")
            .with_auth(WebDavAuth::Digest);
        assert_eq!(b.config.auth, WebDavAuth::Digest);
        assert!(format!("{:?}", b.clone().build().unwrap()).contains("Digest"));
        // What from_env keeps for an unknown SYNCENGINE_WEBDAV_AUTH value.
        let mut bad = b.clone();
        bad.env_error = Some(format!("{ENV_AUTH}: unknown"));
        let err = bad.clone().build().unwrap_err().to_string();
        assert!(err.contains(ENV_AUTH), "{err}");
        // An explicit mode replaces it.
        assert!(bad.with_auth(WebDavAuth::Auto).build().is_ok());
    }
}
