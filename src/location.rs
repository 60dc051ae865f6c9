//! Opening a storage location from a URL or a path, with settings from the environment, as
//! the `syncengine` command does: an embedding service needs no backend-specific code.
//!
//! A plain path or a `file://` URL is local disk; `s3://bucket/prefix`, `gs://…`,
//! `az://container/…`, `webdav://host[:port]/path`, `webdavs://…` and
//! `sftp://user@host[:port]/path` are the remote backends, each configured from its own
//! ecosystem's environment variables (`AWS_*`, `AZURE_STORAGE_*`, `GOOGLE_*`,
//! `SYNCENGINE_WEBDAV_*`, `SYNCENGINE_SFTP_*`; see each backend's crate docs). The remote
//! schemes are recognised even when their backend is not compiled in, so the error names the
//! cargo feature to enable instead of calling the scheme unknown.
//!
//! ```
//! use syncengine::location::{self, Location};
//! use syncengine::{SyncEngine, SyncMode, SyncPair};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let tmp = tempfile::tempdir()?;
//! let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
//! std::fs::create_dir_all(&a)?;
//! std::fs::write(a.join("hello.txt"), "hi")?;
//! let source = location::open_url(a.to_str().unwrap())?;
//! let destination = location::open_url(&format!("file://{}", b.display()))?;
//! let engine = SyncEngine::new(tmp.path().join("state"));
//! let pair = SyncPair::new(source, destination, SyncMode::TwoWay);
//! let stats = engine.sync_pair(&pair).await?;
//! assert_eq!(stats.uploaded, 1);
//! // Messages never show a password given in a URL.
//! let remote = location::parse("webdav://me:secret@127.0.0.1:8080/dav")?;
//! assert!(!remote.to_string().contains("secret"));
//! assert!(matches!(remote, Location::Remote { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! Adding a backend: add an arm to the `match` in [`open`] above the fallback, gated by the
//! backend's cargo feature, e.g. `#[cfg(feature = "s3")] "s3" => …`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use syncengine_core::StorageClient;
use syncengine_core::identity::redact_url;
use syncengine_core::path::percent_decode;
#[cfg(any(
    feature = "s3",
    feature = "azure",
    feature = "gcs",
    feature = "webdav",
    feature = "sftp"
))]
use syncengine_core::redact::REDACTED;
use syncengine_core::timeouts::Timeouts;

/// The remote schemes of the CLI contract and the cargo feature that brings each one in.
const REMOTE_SCHEMES: &[(&str, &str)] = &[
    ("s3", "s3"),
    ("gs", "gcs"),
    ("az", "azure"),
    ("webdav", "webdav"),
    ("webdavs", "webdav"),
    ("sftp", "sftp"),
];

/// A parsed location, not yet opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local directory (absolute or relative to the working directory, as given).
    Local(PathBuf),
    /// A URL of one of the remote schemes (`s3`, `gs`, `az`, `webdav`, `webdavs`, `sftp`).
    Remote {
        /// The scheme, lowercase, without `://`.
        scheme: String,
        /// The whole URL as given.
        url: String,
    },
}

/// Why a location could not be parsed or opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocationError {
    /// A `scheme://` that no backend knows.
    UnknownScheme {
        /// The scheme as given.
        scheme: String,
    },
    /// A known scheme whose backend is not compiled into this binary.
    MissingFeature {
        /// The scheme, e.g. `s3`.
        scheme: String,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
    /// A malformed URL.
    Invalid {
        /// The argument as given.
        given: String,
        /// What is wrong with it (the backend's own reason where it gave one).
        reason: String,
    },
    /// An rclone-style `NAME:path` argument (a remote name of two or more characters, a
    /// colon, a path). syncengine takes URLs, not rclone's configured remote names; read as
    /// a local path it would become a folder named `NAME:path`. `./NAME:path` is a local path.
    RemoteName {
        /// The argument as given.
        given: String,
        /// The remote name before the colon.
        name: String,
    },
    /// A well-formed location whose credentials, as given, cannot be used (a key file that
    /// does not parse): the side cannot be logged into. Not a usage error: the command line
    /// is right, the credentials are not.
    CannotLogIn {
        /// The argument as given (a password in it redacted).
        given: String,
        /// Why, and the fix (the backend's own words).
        reason: String,
    },
}

impl fmt::Display for LocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocationError::UnknownScheme { scheme }
                if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
            {
                let dav = if scheme.eq_ignore_ascii_case("https") {
                    "webdavs"
                } else {
                    "webdav"
                };
                write!(
                    f,
                    "{scheme}:// is not a storage location; for a WebDAV server write \
                     {dav}://host[:port]/path (the same address with {dav}:// in front: \
                     webdav:// speaks http, webdavs:// https)"
                )
            }
            LocationError::RemoteName { given, name } => {
                let rest = given.split_once(':').map_or("", |(_, r)| r);
                write!(
                    f,
                    "{given:?} looks like a named remote or an rclone remote ({name}:path), but \
                     no remote `{name}` is defined: define it in the config file as \
                     [remotes.{name}] with url = \"s3://bucket/prefix\" (see `syncengine run \
                     --help`), or give the location as a URL: s3://bucket/{rest}, \
                     gs://bucket/…, az://container/…, webdav://host/…, sftp://user@host/…. For a \
                     local folder whose name contains a colon, write ./{given}",
                    rest = rest.trim_start_matches('/')
                )
            }
            LocationError::UnknownScheme { scheme } => {
                let known: Vec<String> = REMOTE_SCHEMES
                    .iter()
                    .map(|(s, _)| format!("{s}://"))
                    .collect();
                write!(
                    f,
                    "unknown URL scheme {scheme}://; use a local path, file://, or one of {} \
                     (write ./{scheme}://… for a local path that contains ://)",
                    known.join(", ")
                )
            }
            LocationError::MissingFeature { scheme, feature } => write!(
                f,
                "{scheme}:// needs the \"{feature}\" feature: \
                 cargo install syncengine --features {feature}"
            ),
            LocationError::Invalid { given, reason } => {
                write!(f, "invalid location {given:?}: {reason}")
            }
            LocationError::CannotLogIn { given, reason } => {
                write!(f, "cannot log in to {given}: {reason}")
            }
        }
    }
}

impl std::error::Error for LocationError {}

/// Splits `scheme://rest` when `arg` starts with a URL scheme (RFC 3986 characters).
fn split_scheme(arg: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = arg.split_once("://")?;
    let mut chars = scheme.chars();
    let first_is_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let valid =
        first_is_letter && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// The remote name of a `NAME:path` argument (a remote of the config file, or an rclone-style
/// one): a bare identifier of two or more ASCII characters (letters, digits, `_`, `-`,
/// starting with a letter or `_`) before the first colon; `None` for anything else. A single
/// letter is a Windows drive (`C:\data`) and is left alone, as is anything starting with `.`
/// or `/` (`./name:path`) and a URL (`s3://…`).
pub fn remote_name(arg: &str) -> Option<&str> {
    if split_scheme(arg).is_some() {
        return None;
    }
    let (name, _) = arg.split_once(':')?;
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let identifier =
        starts_well && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    (identifier && name.len() >= 2).then_some(name)
}

/// Parses a command-line location: a path, a `file://` URL or a remote URL.
///
/// # Errors
/// [`LocationError::UnknownScheme`] for a scheme no backend knows, [`LocationError::Invalid`]
/// for a URL without a host or bucket.
pub fn parse(arg: &str) -> Result<Location, LocationError> {
    if arg.is_empty() {
        return Err(LocationError::Invalid {
            given: arg.to_owned(),
            reason: "empty location".into(),
        });
    }
    let Some((scheme, rest)) = split_scheme(arg) else {
        if let Some(name) = remote_name(arg) {
            return Err(LocationError::RemoteName {
                given: arg.to_owned(),
                name: name.to_owned(),
            });
        }
        return Ok(Location::Local(PathBuf::from(arg)));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "file" {
        // file:///abs/path or file://localhost/abs/path; other hosts are not local.
        // The host is everything up to the first `/`: `file://localhost.backup/x` names the
        // host `localhost.backup`, not the relative path `.backup/x`. Host names are
        // case-insensitive.
        let host_end = rest.find('/').unwrap_or(rest.len());
        let path = if rest.starts_with('/') {
            rest
        } else if rest[..host_end].eq_ignore_ascii_case("localhost") {
            &rest[host_end..]
        } else {
            return Err(LocationError::Invalid {
                given: arg.to_owned(),
                reason: "a file:// URL needs an absolute path (file:///path) or the host localhost"
                    .into(),
            });
        };
        if path.is_empty() {
            return Err(LocationError::Invalid {
                given: arg.to_owned(),
                reason: "a file:// URL needs a path".into(),
            });
        }
        let decoded = percent_decode(path).map_err(|e| LocationError::Invalid {
            given: arg.to_owned(),
            reason: format!("the path: {e}"),
        })?;
        return Ok(Location::Local(PathBuf::from(decoded)));
    }
    if REMOTE_SCHEMES.iter().any(|(s, _)| *s == scheme) {
        let authority = rest.split('/').next().unwrap_or_default();
        // `user@` alone (sftp) or `:port` alone is not a host either.
        let host = authority.rsplit('@').next().unwrap_or_default();
        if host.is_empty() || host.starts_with(':') {
            return Err(LocationError::Invalid {
                given: arg.to_owned(),
                reason: "the URL needs a bucket, container or host after ://".into(),
            });
        }
        return Ok(Location::Remote {
            scheme,
            url: arg.to_owned(),
        });
    }
    Err(LocationError::UnknownScheme {
        scheme: scheme.to_owned(),
    })
}

impl Location {
    /// The location of a sub-folder `name` of this one.
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Local(p) => Location::Local(p.join(name)),
            Location::Remote { scheme, url } => Location::Remote {
                scheme: scheme.clone(),
                url: format!("{}/{name}", url.trim_end_matches('/')),
            },
        }
    }

    /// The local directory, if this is local disk.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::Remote { .. } => None,
        }
    }

    /// A remote URL as the scheme and its path segments (the authority first, lower-cased;
    /// empty and `.` segments dropped, a query cut off), for telling whether two remote
    /// locations are the same folder or nested. `None` for local disk. Spellings this does not
    /// fold (percent-escapes, another alias of the host) compare as different.
    pub fn remote_segments(&self) -> Option<(String, Vec<String>)> {
        let Location::Remote { scheme, url } = self else {
            return None;
        };
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let mut segments: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .map(str::to_owned)
            .collect();
        if let Some(first) = segments.first_mut() {
            *first = first.to_lowercase();
        }
        Some((scheme.to_lowercase(), segments))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            // Shown in messages: a password in the URL stays out of them.
            Location::Remote { url, .. } => f.write_str(&redact_url(url)),
        }
    }
}

/// Makes a local root absolute and, where it exists, free of symlinks and `..`, so that the
/// same folder spelled two ways gets the same pair id (and so the same base state).
pub fn normalize_local(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (abs.parent().map(Path::canonicalize), abs.file_name()) {
        (Some(Ok(parent)), Some(name)) => parent.join(name),
        _ => abs,
    }
}

/// Opens a client for `loc`.
///
/// # Errors
/// [`LocationError::MissingFeature`] for a remote scheme whose backend is not compiled in.
// The inner `match` has only the fallback arm until the first remote backend adds its own.
#[allow(clippy::match_single_binding)]
pub fn open(loc: &Location) -> Result<Arc<dyn StorageClient>, LocationError> {
    let timeouts = Timeouts::from_env().map_err(|reason| LocationError::Invalid {
        given: loc.to_string(),
        reason,
    })?;
    open_with_timeouts(loc, timeouts)
}

/// Opens a client for `loc` as [`open`] does, with `timeouts` instead of the ones the
/// environment gives (`SYNCENGINE_CONTIMEOUT`, `SYNCENGINE_TIMEOUT`); local disk has none.
///
/// # Errors
/// As [`open`].
pub fn open_with_timeouts(
    loc: &Location,
    timeouts: Timeouts,
) -> Result<Arc<dyn StorageClient>, LocationError> {
    open_with_settings(loc, timeouts, &EnvOverlay::default())
}

/// Settings for one remote given as the environment variables its backend reads, over the
/// process environment: a variable set here wins over the environment, one hidden here is
/// read as unset, any other comes from the environment. A named remote of the config file
/// ([`crate::config`]) is opened this way, so its `endpoint`, `profile` or credentials apply
/// to it alone. `Debug` shows the names, never the values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvOverlay {
    vars: std::collections::BTreeMap<String, Option<String>>,
}

impl EnvOverlay {
    /// Sets `name` to `value` for this remote.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), Some(value.into()));
    }

    /// Makes `name` read as unset for this remote, whatever the environment says.
    pub fn hide(&mut self, name: impl Into<String>) {
        self.vars.insert(name.into(), None);
    }

    /// Whether `name` is set or hidden here (not left to the environment).
    pub fn overrides(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// The value of `name`: this overlay's, else the environment's; empty reads as unset.
    pub fn var(&self, name: &str) -> Option<String> {
        match self.vars.get(name) {
            Some(value) => value.clone(),
            None => std::env::var(name).ok(),
        }
        .filter(|v| !v.is_empty())
    }

    /// Whether nothing is set or hidden.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

impl fmt::Debug for EnvOverlay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.vars.iter().map(|(k, v)| match v {
                Some(_) => format!("{k}=<set>"),
                None => format!("{k} hidden"),
            }))
            .finish()
    }
}

/// Opens a client for `loc` as [`open_with_timeouts`] does, reading the backend's variables
/// through `settings` (see [`EnvOverlay`]) instead of straight from the environment.
///
/// # Errors
/// As [`open`].
pub fn open_with_settings(
    loc: &Location,
    #[allow(unused_variables)] timeouts: Timeouts,
    #[allow(unused_variables)] settings: &EnvOverlay,
) -> Result<Arc<dyn StorageClient>, LocationError> {
    match loc {
        #[cfg(feature = "local")]
        Location::Local(path) => Ok(Arc::new(crate::LocalClient::new(path.clone()))),
        #[cfg(not(feature = "local"))]
        Location::Local(_) => Err(LocationError::MissingFeature {
            scheme: "file".into(),
            feature: "local",
        }),
        Location::Remote { scheme, url: _url } => match scheme.as_str() {
            // Remote backends add their feature-gated arm here, above the fallback.
            #[cfg(feature = "s3")]
            "s3" => open_object_store(_url, timeouts, settings),
            #[cfg(feature = "azure")]
            "az" => open_object_store(_url, timeouts, settings),
            #[cfg(feature = "gcs")]
            "gs" => open_object_store(_url, timeouts, settings),
            #[cfg(feature = "webdav")]
            "webdav" | "webdavs" => open_webdav(_url, timeouts, settings),
            #[cfg(feature = "sftp")]
            "sftp" => open_sftp(_url, timeouts, settings),
            other => Err(missing_feature(other)),
        },
    }
}

/// Opens `sftp://user@host[:port]/path` with settings from `SYNCENGINE_SFTP_*` (through
/// `settings`).
#[cfg(feature = "sftp")]
fn open_sftp(
    url: &str,
    timeouts: Timeouts,
    settings: &EnvOverlay,
) -> Result<Arc<dyn StorageClient>, LocationError> {
    use syncengine_backend_sftp as sftp;
    let mut builder = sftp::SftpBuilder::from_env();
    // Only what the remote sets: the rest was read from the environment already.
    let given = |name| {
        settings
            .overrides(name)
            .then(|| settings.var(name))
            .flatten()
    };
    if let Some(v) = given(sftp::ENV_KEY) {
        builder = builder.with_key_file(v);
    }
    if let Some(v) = given(sftp::ENV_KEY_PASSPHRASE) {
        builder = builder.with_key_passphrase(v);
    }
    if let Some(v) = given(sftp::ENV_PASSWORD) {
        builder = builder.with_password(v);
    }
    if let Some(v) = given(sftp::ENV_KNOWN_HOSTS) {
        builder = builder.with_known_hosts(v);
    }
    builder
        .with_timeouts(timeouts)
        .with_url(url)
        .build()
        .map(|c| Arc::new(c) as Arc<dyn StorageClient>)
        .map_err(|e| LocationError::Invalid {
            given: scrub(url, url),
            reason: format!(
                "not a usable sftp:// URL (sftp://user@host[:port]/path): {}",
                scrub(&e.to_string(), url)
            ),
        })
}

/// Parses `arg` (see [`parse`]) and opens it (see [`open`]): the one call an embedding
/// service needs to turn a configured location into a client.
///
/// # Errors
/// As [`parse`] and [`open`].
pub fn open_url(arg: &str) -> Result<Arc<dyn StorageClient>, LocationError> {
    open(&parse(arg)?)
}

/// `message` (a builder's error about `url`) redacted, and without any piece of the
/// password `url` carries: a password a builder could not parse (an unencoded `/` in it) may
/// come back in bits (`bad port "hunt"`) that no pattern recognises.
#[cfg(any(
    feature = "s3",
    feature = "azure",
    feature = "gcs",
    feature = "webdav",
    feature = "sftp"
))]
fn scrub(message: &str, url: &str) -> String {
    let mut out = redact_url(message);
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let token = rest.split(char::is_whitespace).next().unwrap_or_default();
    if let (Some(colon), Some(at)) = (token.find(':'), token.rfind('@'))
        && colon < at
    {
        let password = &token[colon + 1..at];
        for piece in std::iter::once(password).chain(password.split(['/', '@', ':', '?', '#'])) {
            if piece.len() >= 3 {
                out = out.replace(piece, REDACTED);
            }
        }
    }
    out
}

/// Opens `s3://`, `az://` or `gs://` with settings from the store's own environment variables.
#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
fn open_object_store(
    url: &str,
    timeouts: Timeouts,
    settings: &EnvOverlay,
) -> Result<Arc<dyn StorageClient>, LocationError> {
    syncengine_backend_s3::S3Builder::from_env_with(url, |name| settings.var(name))
        .and_then(|b| b.with_timeouts(timeouts).build())
        .map(|c| Arc::new(c) as Arc<dyn StorageClient>)
        .map_err(|e| match e {
            // Credentials given but unusable: the side cannot be logged into.
            syncengine_core::Error::PermissionDenied { .. } => LocationError::CannotLogIn {
                given: scrub(url, url),
                reason: scrub(&e.to_string(), url),
            },
            e => LocationError::Invalid {
                given: scrub(url, url),
                reason: format!(
                    "not a usable bucket URL or store configuration (see the AWS_*, \
                     AZURE_STORAGE_* and GOOGLE_* variables): {}",
                    scrub(&e.to_string(), url)
                ),
            },
        })
}

/// Opens `webdav://` (HTTP) or `webdavs://` (HTTPS), with credentials from
/// `SYNCENGINE_WEBDAV_USER` / `SYNCENGINE_WEBDAV_PASSWORD` or `user:password@` in the URL.
#[cfg(feature = "webdav")]
fn open_webdav(
    url: &str,
    timeouts: Timeouts,
    settings: &EnvOverlay,
) -> Result<Arc<dyn StorageClient>, LocationError> {
    use syncengine_backend_webdav as dav;
    let mut builder = dav::WebDavBuilder::from_env();
    let overridden = |name| settings.overrides(name);
    if (overridden(dav::ENV_USER) || overridden(dav::ENV_PASSWORD))
        && let (Some(user), Some(password)) =
            (settings.var(dav::ENV_USER), settings.var(dav::ENV_PASSWORD))
    {
        builder = builder.with_credentials(user, password);
    }
    if overridden(dav::ENV_CA_FILE)
        && let Some(file) = settings.var(dav::ENV_CA_FILE)
    {
        builder = builder.with_ca_file(file);
    }
    if overridden(dav::ENV_AUTH)
        && let Some(auth) = settings.var(dav::ENV_AUTH)
    {
        let auth = auth.parse().map_err(|e| LocationError::Invalid {
            given: scrub(url, url),
            reason: format!("auth: {e}"),
        })?;
        builder = builder.with_auth(auth);
    }
    builder
        .with_timeouts(timeouts)
        .with_url(url)
        .build()
        .map(|c| Arc::new(c) as Arc<dyn StorageClient>)
        .map_err(|e| {
            LocationError::Invalid {
                // Never echo a password given in the URL.
                given: scrub(url, url),
                reason: format!(
                    "not a usable WebDAV URL (webdav://host[:port]/path or webdavs://…): {}",
                    scrub(&e.to_string(), url)
                ),
            }
        })
}

/// The error for a recognised remote scheme whose backend is not compiled in.
fn missing_feature(scheme: &str) -> LocationError {
    match REMOTE_SCHEMES.iter().find(|(s, _)| *s == scheme) {
        Some((_, feature)) => LocationError::MissingFeature {
            scheme: scheme.to_owned(),
            feature,
        },
        None => LocationError::UnknownScheme {
            scheme: scheme.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_local() {
        assert_eq!(parse("./a").unwrap(), Location::Local("./a".into()));
        assert_eq!(
            parse("/tmp/x y").unwrap(),
            Location::Local("/tmp/x y".into())
        );
        // Not a scheme: does not start with a letter.
        assert_eq!(
            parse("./s3://x").unwrap(),
            Location::Local("./s3://x".into())
        );
        assert!(parse("").is_err());
    }

    #[test]
    fn file_urls_are_local() {
        assert_eq!(
            parse("file:///tmp/a").unwrap(),
            Location::Local("/tmp/a".into())
        );
        assert_eq!(
            parse("FILE://localhost/tmp/a%20b").unwrap(),
            Location::Local("/tmp/a b".into())
        );
        assert!(matches!(
            parse("file://host/x"),
            Err(LocationError::Invalid { .. })
        ));
        assert!(matches!(
            parse("file://"),
            Err(LocationError::Invalid { .. })
        ));
        // A malformed escape is kept as written; one that decodes to non-UTF-8 is refused.
        assert_eq!(
            parse("file:///tmp/100%").unwrap(),
            Location::Local("/tmp/100%".into())
        );
        assert!(matches!(
            parse("file:///tmp/%FF"),
            Err(LocationError::Invalid { reason, .. }) if reason.contains("UTF-8")
        ));
    }

    /// Whether the backend behind a cargo feature is compiled into this test binary.
    fn compiled_in(feature: &str) -> bool {
        let table = [
            ("s3", cfg!(feature = "s3")),
            ("gcs", cfg!(feature = "gcs")),
            ("azure", cfg!(feature = "azure")),
            ("webdav", cfg!(feature = "webdav")),
            ("sftp", cfg!(feature = "sftp")),
        ];
        table.iter().any(|(f, on)| *f == feature && *on)
    }

    #[test]
    fn remote_schemes_are_recognised_and_need_their_feature() {
        for (url, feature) in [
            ("s3://bucket/prefix", "s3"),
            ("gs://bucket", "gcs"),
            ("az://container/p", "azure"),
            ("webdav://127.0.0.1:8080/dav", "webdav"),
            ("webdavs://host/dav", "webdav"),
            ("sftp://me@host:2222/srv", "sftp"),
        ] {
            let loc = parse(url).unwrap();
            assert!(matches!(loc, Location::Remote { .. }), "{url}");
            if compiled_in(feature) {
                continue;
            }
            let err = open(&loc).err().unwrap();
            assert!(
                matches!(&err, LocationError::MissingFeature { feature: f, .. } if *f == feature),
                "{url}: {err}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&format!("--features {feature}")), "{msg}");
        }
        if !compiled_in("s3") {
            assert_eq!(
                open(&parse("s3://b/p").unwrap()).err().unwrap().to_string(),
                "s3:// needs the \"s3\" feature: cargo install syncengine --features s3"
            );
        }
    }

    #[test]
    fn bad_urls_are_rejected() {
        assert!(matches!(
            parse("ftp://host/x"),
            Err(LocationError::UnknownScheme { scheme }) if scheme == "ftp"
        ));
        assert!(matches!(parse("s3://"), Err(LocationError::Invalid { .. })));
        assert!(matches!(
            parse("sftp://me@/x"),
            Err(LocationError::Invalid { .. })
        ));
    }

    #[test]
    fn join_appends_a_folder() {
        assert_eq!(
            parse("s3://b/p/").unwrap().join("source").to_string(),
            "s3://b/p/source"
        );
        assert_eq!(
            parse("/x").unwrap().join("destination"),
            Location::Local("/x/destination".into())
        );
    }
}
