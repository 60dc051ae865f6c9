//! The configuration file: named remotes and the pairs `syncengine run` syncs.
//!
//! The file is TOML, at `$XDG_CONFIG_HOME/syncengine/config.toml` (else
//! `~/.config/syncengine/config.toml`; see [`default_path`]); the command line's `--config PATH`
//! and the `SYNCENGINE_CONFIG` variable name another one. It has two kinds of tables:
//!
//! - `[remotes.NAME]`: a remote location with its settings. `url` is required (a remote URL,
//!   or an absolute local path); the other keys are the backend's settings ([`REMOTE_KEYS`]),
//!   e.g. `endpoint`, `region` and `profile` for S3. A secret is best left out of the file:
//!   write `KEY_env = "VARIABLE"` to read it from an environment variable when the remote is
//!   opened (`secret_access_key_env = "HOME_AWS_SECRET"`), or rely on the backend's own
//!   variables and credential files as on the command line. A secret written in the file
//!   works, with a warning ([`Config::warnings`]).
//! - `[pairs.NAME]`: a pair to sync. Its keys are the long flags of `syncengine sync`, with
//!   `_` for `-` ([`PAIR_KEYS`]): `source` and `destination` (required), `mode`, `conflict`,
//!   `exclude`, `max_delete`, `transfers`, … The keys `watch`, `poll_interval`,
//!   `rescan_interval` and `paused` are for the continuous service ([`PairConfig::watch`]…).
//!
//! A location is a path, a URL or `NAME:path` for a remote defined in the file
//! (`photos-bucket:2026` is the remote's URL with `/2026` appended). `~` at the start of a
//! local path is the home directory; a relative local path is refused (it would depend on
//! where the command runs). Durations are written `"90s"`, `"5m"`, `"1h"`.
//!
//! Mistakes are errors naming the file, the line and the column, with a suggestion for a
//! misspelt key, as cargo does:
//!
//! ```
//! use syncengine::config::Config;
//!
//! let text = "[pairs.photos]\nsource = \"/home/me/Pictures\"\ndestination = \"/mnt/usb\"\nexlude = [\"*.tmp\"]\n";
//! let err = Config::parse(text, "config.toml".as_ref()).unwrap_err();
//! assert_eq!(err.line, Some(4));
//! assert!(err.to_string().contains("did you mean `exclude`?"), "{err}");
//! ```
//!
//! A pair is run by the same code as `syncengine sync`: [`PairConfig::sync_flags`] gives the
//! flags, which the command parses with the `sync` command's own parser, so a pair in the
//! file and the same command line build the same options. A pair's state is keyed by where
//! its sides really are (see [`SyncPair::id`](crate::SyncPair::id)), so a pair run by a
//! remote's name and the same pair run by the remote's URL share one state.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use syncengine_core::redact::redact;
use syncengine_core::{ConflictLoser, ConflictStrategy, InitialSyncPreference, SyncMode};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::location::{self, EnvOverlay, Location, LocationError};

/// The environment variable that names the config file (the command line's `--config` wins).
pub const CONFIG_ENV: &str = "SYNCENGINE_CONFIG";

/// The default config file: `$XDG_CONFIG_HOME/syncengine/config.toml` when that variable is an
/// absolute path, else `$HOME/.config/syncengine/config.toml`; `None` when neither is set.
pub fn default_path() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| home_dir().map(|h| h.join(".config")))?;
    Some(base.join("syncengine").join("config.toml"))
}

/// `$HOME`, when set to an absolute path.
fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// A mistake in the config file: where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// The line (from 1), when the mistake is at a place in the file.
    pub line: Option<usize>,
    /// The column (from 1, in characters), with `line`.
    pub column: Option<usize>,
    /// What is wrong and the fix.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(
                f,
                "config file {}, line {line}, column {column}: {}",
                self.file.display(),
                self.message
            ),
            (Some(line), None) => write!(
                f,
                "config file {}, line {line}: {}",
                self.file.display(),
                self.message
            ),
            _ => write!(f, "config file {}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// What a remote's key sets: text, a path (`~` expanded) or a switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueKind {
    Text,
    Path,
    Bool,
}

/// One key a `[remotes.NAME]` table may hold for remotes of some schemes.
#[derive(Clone, Copy, Debug)]
pub struct RemoteKey {
    /// The key, e.g. `endpoint`.
    pub key: &'static str,
    /// The URL schemes it applies to.
    pub schemes: &'static [&'static str],
    /// The backend's environment variable it sets for this remote.
    pub variable: &'static str,
    /// Whether the value is a secret (written in the file, it gets a warning).
    pub secret: bool,
    kind: ValueKind,
}

const S3: &[&str] = &["s3"];
const AZ: &[&str] = &["az"];
const GS: &[&str] = &["gs"];
const DAV: &[&str] = &["webdav", "webdavs"];
const SFTP: &[&str] = &["sftp"];

const fn key(
    key: &'static str,
    schemes: &'static [&'static str],
    variable: &'static str,
    secret: bool,
    kind: ValueKind,
) -> RemoteKey {
    RemoteKey {
        key,
        schemes,
        variable,
        secret,
        kind,
    }
}

/// The settings a remote may carry besides `url`, by scheme, and the backend variable each one
/// sets (see each backend's documentation for what the variable does). Every key `K` may
/// instead be written `K_env = "VARIABLE"`: the value is then read from that environment
/// variable when the remote is opened.
pub const REMOTE_KEYS: &[RemoteKey] = &[
    key(
        "endpoint",
        S3,
        "AWS_ENDPOINT_URL_S3",
        false,
        ValueKind::Text,
    ),
    key("region", S3, "AWS_REGION", false, ValueKind::Text),
    key("profile", S3, "AWS_PROFILE", false, ValueKind::Text),
    key(
        "access_key_id",
        S3,
        "AWS_ACCESS_KEY_ID",
        false,
        ValueKind::Text,
    ),
    key(
        "secret_access_key",
        S3,
        "AWS_SECRET_ACCESS_KEY",
        true,
        ValueKind::Text,
    ),
    key(
        "session_token",
        S3,
        "AWS_SESSION_TOKEN",
        true,
        ValueKind::Text,
    ),
    key("allow_http", S3, "AWS_ALLOW_HTTP", false, ValueKind::Bool),
    key(
        "endpoint",
        AZ,
        "AZURE_STORAGE_ENDPOINT",
        false,
        ValueKind::Text,
    ),
    key(
        "account",
        AZ,
        "AZURE_STORAGE_ACCOUNT_NAME",
        false,
        ValueKind::Text,
    ),
    key(
        "account_key",
        AZ,
        "AZURE_STORAGE_ACCOUNT_KEY",
        true,
        ValueKind::Text,
    ),
    key(
        "sas_token",
        AZ,
        "AZURE_STORAGE_SAS_TOKEN",
        true,
        ValueKind::Text,
    ),
    key("allow_http", AZ, "AZURE_ALLOW_HTTP", false, ValueKind::Bool),
    key("endpoint", GS, "GOOGLE_BASE_URL", false, ValueKind::Text),
    key(
        "application_credentials",
        GS,
        "GOOGLE_APPLICATION_CREDENTIALS",
        false,
        ValueKind::Path,
    ),
    key(
        "service_account_key",
        GS,
        "GOOGLE_SERVICE_ACCOUNT_KEY",
        true,
        ValueKind::Text,
    ),
    key(
        "allow_http",
        GS,
        "GOOGLE_ALLOW_HTTP",
        false,
        ValueKind::Bool,
    ),
    key(
        "user",
        DAV,
        "SYNCENGINE_WEBDAV_USER",
        false,
        ValueKind::Text,
    ),
    key(
        "password",
        DAV,
        "SYNCENGINE_WEBDAV_PASSWORD",
        true,
        ValueKind::Text,
    ),
    key(
        "auth",
        DAV,
        "SYNCENGINE_WEBDAV_AUTH",
        false,
        ValueKind::Text,
    ),
    key(
        "ca_file",
        DAV,
        "SYNCENGINE_WEBDAV_CA_FILE",
        false,
        ValueKind::Path,
    ),
    key(
        "key_file",
        SFTP,
        "SYNCENGINE_SFTP_KEY",
        false,
        ValueKind::Path,
    ),
    key(
        "key_passphrase",
        SFTP,
        "SYNCENGINE_SFTP_KEY_PASSPHRASE",
        true,
        ValueKind::Text,
    ),
    key(
        "password",
        SFTP,
        "SYNCENGINE_SFTP_PASSWORD",
        true,
        ValueKind::Text,
    ),
    key(
        "known_hosts",
        SFTP,
        "SYNCENGINE_SFTP_KNOWN_HOSTS",
        false,
        ValueKind::Path,
    ),
];

/// The `allow_http` variable of an object store whose `endpoint` is `http://`.
fn allow_http_variable(scheme: &str) -> Option<&'static str> {
    match scheme {
        "s3" => Some("AWS_ALLOW_HTTP"),
        "az" => Some("AZURE_ALLOW_HTTP"),
        "gs" => Some("GOOGLE_ALLOW_HTTP"),
        _ => None,
    }
}

/// Names no remote may take: URL schemes (`s3:x` would read as a typo of `s3://x`).
const RESERVED_REMOTE_NAMES: &[&str] = &[
    "file", "s3", "gs", "az", "webdav", "webdavs", "sftp", "http", "https", "ftp",
];

/// Where a remote setting's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SettingValue {
    /// Written in the file.
    Given(String),
    /// Read from this environment variable when the remote is opened.
    FromEnv(String),
}

/// A `[remotes.NAME]` table. `Debug` shows no secret: the values of secret settings and the
/// password of a URL are `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Remote {
    /// The remote's name.
    pub name: String,
    /// Its location, as `url` gives it (`~` expanded).
    pub location: Location,
    /// The line of its table in the file.
    pub line: usize,
    /// Its settings: (key, backend variable, value).
    settings: Vec<(&'static str, &'static str, SettingValue)>,
}

/// `{value:?}` with secrets in it (a URL's password) replaced, for `Debug` prints.
fn redacted_debug(value: &dyn fmt::Debug) -> String {
    redact(&format!("{value:?}")).into_owned()
}

/// Shows a pre-formatted text as is inside a `Debug` print.
struct Shown(String);

impl fmt::Debug for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings: Vec<Shown> = self
            .settings
            .iter()
            .map(|(key, variable, value)| {
                let secret = REMOTE_KEYS
                    .iter()
                    .any(|k| k.key == *key && k.variable == *variable && k.secret);
                Shown(match value {
                    SettingValue::Given(_) if secret => format!("{key}=<redacted>"),
                    SettingValue::Given(v) => format!("{key}={}", redacted_debug(v)),
                    SettingValue::FromEnv(var) => format!("{key}_env={var:?}"),
                })
            })
            .collect();
        f.debug_struct("Remote")
            .field("name", &self.name)
            .field("location", &Shown(redacted_debug(&self.location)))
            .field("line", &self.line)
            .field("settings", &settings)
            .finish()
    }
}

impl Remote {
    /// The settings of this remote as the backend's variables (see [`EnvOverlay`]).
    ///
    /// # Errors
    /// A message when a `KEY_env` names an environment variable that is not set.
    pub fn overlay(&self) -> Result<EnvOverlay, String> {
        let mut overlay = EnvOverlay::default();
        let scheme = match &self.location {
            Location::Remote { scheme, .. } => scheme.as_str(),
            Location::Local(_) => return Ok(overlay),
        };
        for (key, variable, value) in &self.settings {
            let value = match value {
                SettingValue::Given(v) => v.clone(),
                SettingValue::FromEnv(var) => std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        format!(
                            "remote `{}`: {key}_env names the environment variable {var}, \
                             which is not set; set it, or remove {key}_env",
                            self.name
                        )
                    })?,
            };
            overlay.set(*variable, value);
        }
        let has = |key: &str| self.settings.iter().any(|(k, _, _)| *k == key);
        // A remote with its own endpoint over http:// means it (as the AWS CLI does).
        if let Some(var) = allow_http_variable(scheme)
            && !has("allow_http")
            && overlay
                .var(self.endpoint_variable().unwrap_or_default())
                .is_some_and(|e| e.starts_with("http://"))
            && self.settings.iter().any(|(k, _, _)| *k == "endpoint")
        {
            overlay.set(var, "true");
        }
        // A profile names the remote's credentials: keys in the environment, meant for
        // other stores, do not override it.
        if scheme == "s3" && has("profile") && !has("access_key_id") {
            for var in [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
                "AWS_TOKEN",
            ] {
                overlay.hide(var);
            }
        }
        Ok(overlay)
    }

    /// The backend variable of this remote's `endpoint`.
    fn endpoint_variable(&self) -> Option<&'static str> {
        self.settings
            .iter()
            .find(|(k, _, _)| *k == "endpoint")
            .map(|(_, v, _)| *v)
    }
}

/// The keys of a `[pairs.NAME]` table: the long flags of `syncengine sync` with `_` for `-`,
/// then the service's own keys (`watch`, `poll_interval`, `rescan_interval`, `paused`).
pub const PAIR_KEYS: &[&str] = &[
    "source",
    "destination",
    "mode",
    "initial",
    "conflict",
    "conflict_loser",
    "exclude",
    "exclude_from",
    "include",
    "max_size",
    "min_age",
    "transfers",
    "bwlimit",
    "max_delete",
    "checksum",
    "no_trash",
    "backup_dir",
    "trash_dir",
    "trash_keep",
    "sort_listings",
    "timeout",
    "contimeout",
    "protect",
    "log_file",
    "watch",
    "poll_interval",
    "rescan_interval",
    "paused",
];

/// `sync` flags that apply to one run, not to a pair: refused in the file, with where to give
/// them instead.
const RUN_ONLY_KEYS: &[(&str, &str)] = &[
    (
        "force",
        "it lifts a safety stop for one run: `syncengine sync … --force`",
    ),
    (
        "accept_new_root",
        "it accepts a new root for one run: `syncengine sync … --accept-new-root SIDE`",
    ),
    ("dry_run", "`syncengine run --dry-run`"),
    ("json", "`syncengine sync … --json`"),
    ("list", "`syncengine sync … --json --list`"),
    ("progress", "`syncengine sync … --progress`"),
    ("stats", "`syncengine sync … --stats DURATION`"),
    (
        "state_dir",
        "`syncengine run --state-dir DIR` or SYNCENGINE_STATE_DIR",
    ),
];

/// A `[pairs.NAME]` table. `Debug` shows no URL's password.
#[derive(Clone, PartialEq, Eq)]
pub struct PairConfig {
    /// The pair's name.
    pub name: String,
    /// The line of its table in the file.
    pub line: usize,
    /// The source: a path (`~` expanded), a URL or `REMOTE:path`.
    pub source: String,
    /// The destination, written as the source is.
    pub destination: String,
    /// The mode (default two-way, as for `sync`).
    pub mode: SyncMode,
    /// Under `syncengine watch`, watch the pair's local roots for changes (`watch`, default
    /// true); `false` polls them every `poll_interval` like remote roots (for network
    /// filesystems, where change notifications do not arrive).
    pub watch: bool,
    /// How often `syncengine watch` polls a remote root, or a local one with `watch = false`
    /// (`poll_interval`); `None`: the service's default (60 s).
    pub poll_interval: Option<Duration>,
    /// How often `syncengine watch` runs the pair in full even when nothing was seen to
    /// change (`rescan_interval`); `None`: the service's default (1 h).
    pub rescan_interval: Option<Duration>,
    /// The pair is paused (`paused`, default false): `syncengine watch` starts it paused
    /// until `syncengine resume NAME`, and `syncengine run` skips it unless it is named.
    pub paused: bool,
    /// The `sync` flags other than `--mode`, in key order.
    flags: Vec<String>,
}

impl fmt::Debug for PairConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairConfig")
            .field("name", &self.name)
            .field("line", &self.line)
            .field("source", &Shown(redacted_debug(&self.source)))
            .field("destination", &Shown(redacted_debug(&self.destination)))
            .field("mode", &self.mode)
            .field("watch", &self.watch)
            .field("poll_interval", &self.poll_interval)
            .field("rescan_interval", &self.rescan_interval)
            .field("paused", &self.paused)
            .field("flags", &Shown(redacted_debug(&self.flags)))
            .finish()
    }
}

impl PairConfig {
    /// The flags of `syncengine sync` this pair stands for (`--mode=…`, `--exclude=…`, …), each
    /// one word `--flag=value` or a bare switch; the source and destination are not in it.
    /// The command line tool parses them with the `sync` command's own parser, so a pair run
    /// from the file and the same `sync` command line build the same options.
    pub fn sync_flags(&self) -> Vec<String> {
        let mut flags = vec![format!("--mode={}", self.mode)];
        flags.extend(self.flags.iter().cloned());
        flags
    }
}

/// A parsed config file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The remotes, by name.
    pub remotes: BTreeMap<String, Remote>,
    /// The pairs, by name (so in name order).
    pub pairs: BTreeMap<String, PairConfig>,
    warnings: Vec<String>,
}

/// A location resolved by [`Config::resolve`]: where it is, and the settings to open it with.
/// `Debug` shows no secret (a URL's password is `<redacted>`, settings show names only).
#[derive(Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The location (a `REMOTE:path` turned into the remote's URL joined with the path).
    pub location: Location,
    /// The remote it came through, if any.
    pub remote: Option<String>,
    /// The remote's settings (empty for a plain path or URL).
    pub settings: EnvOverlay,
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolved")
            .field("location", &Shown(redacted_debug(&self.location)))
            .field("remote", &self.remote)
            .field("settings", &self.settings)
            .finish()
    }
}

impl Config {
    /// Reads and parses the config file at `path`.
    ///
    /// # Errors
    /// A [`ConfigError`]: the file cannot be read (missing, a folder, unreadable, not UTF-8),
    /// or a mistake in it (see [`Config::parse`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let whole = |message: String| ConfigError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            message,
        };
        if path.is_dir() {
            return Err(whole(
                "is a folder, not a file; name the config file itself (config.toml)".into(),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| {
            let fix = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    " (create it, or name another file with --config or SYNCENGINE_CONFIG)"
                }
                std::io::ErrorKind::PermissionDenied => {
                    " (make it readable by this user: chmod u+r)"
                }
                _ => "",
            };
            whole(format!("cannot read the file: {e}{fix}"))
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| whole("is not UTF-8 text; a TOML file must be UTF-8".into()))?;
        Config::parse(&text, path)
    }

    /// Parses `text`, the content of the config file `path` (`path` is only used in messages
    /// and warnings).
    ///
    /// # Errors
    /// A [`ConfigError`] with the line and column: TOML syntax, an unknown key (with the
    /// closest known key as a suggestion), a missing `url`, `source` or `destination`, a
    /// value of the wrong type, a bad mode, duration or location, an undefined remote in
    /// `NAME:path`, a relative local path, a name that cannot be used.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let p = Parser {
            text,
            file: path,
            warnings: std::cell::RefCell::default(),
        };
        let doc = DeTable::parse(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim_end();
            let message = if message == "duplicate key" {
                "duplicate key: this key or table is already defined above; keep one".to_owned()
            } else {
                message.to_owned()
            };
            p.error(span, message)
        })?;
        let mut config = Config {
            path: path.to_path_buf(),
            ..Config::default()
        };
        let doc = doc.get_ref();
        for (k, v) in doc {
            match k.get_ref().as_ref() {
                "remotes" | "pairs" => {
                    if v.get_ref().as_table().is_none() {
                        return Err(p.error(
                            v.span(),
                            format!(
                                "`{}` must be a table of [{}.NAME] tables",
                                k.get_ref(),
                                k.get_ref()
                            ),
                        ));
                    }
                }
                other => {
                    return Err(p.unknown_key(k, other, "the top level", &["remotes", "pairs"]));
                }
            }
        }
        let table = |name: &str| {
            doc.iter()
                .find(|(k, _)| k.get_ref().as_ref() == name)
                .and_then(|(_, v)| v.get_ref().as_table())
        };
        if let Some(remotes) = table("remotes") {
            for (name, body) in remotes {
                let remote = p.remote(name, body)?;
                config.remotes.insert(remote.name.clone(), remote);
            }
        }
        if let Some(pairs) = table("pairs") {
            for (name, body) in pairs {
                let pair = p.pair(name, body, &config.remotes)?;
                config.pairs.insert(pair.name.clone(), pair);
            }
        }
        config.warnings = p.warnings.into_inner();
        Ok(config)
    }

    /// Warnings about the file: secrets written in it (each names the key and the variable
    /// to use instead). The file works as written.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Resolves a location argument: `NAME:path` for a remote defined here becomes the
    /// remote's location joined with `path` (a leading `/` is dropped: the path is inside the
    /// remote's folder), with the remote's settings; anything else is parsed by
    /// [`location::parse`], which refuses `NAME:path` for a name not defined here.
    ///
    /// # Errors
    /// As [`location::parse`]; [`LocationError::Invalid`] for a path with `..` (it would
    /// leave the remote's folder) or a `KEY_env` naming an unset variable.
    pub fn resolve(&self, arg: &str) -> Result<Resolved, LocationError> {
        let remote = location::remote_name(arg).and_then(|name| self.remotes.get(name));
        let Some(remote) = remote else {
            return Ok(Resolved {
                location: location::parse(arg)?,
                remote: None,
                settings: EnvOverlay::default(),
            });
        };
        let invalid = |reason: String| LocationError::Invalid {
            given: arg.to_owned(),
            reason,
        };
        let rest = arg.split_once(':').map_or("", |(_, r)| r);
        if leaves_folder(rest) {
            return Err(invalid(format!(
                "`..` would leave the folder of the remote `{}`; name a path inside it",
                remote.name
            )));
        }
        let mut location = remote.location.clone();
        for segment in rest.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    return Err(invalid(format!(
                        "`..` would leave the folder of the remote `{}`; name a path inside it",
                        remote.name
                    )));
                }
                s => location = location.join(s),
            }
        }
        let settings = remote.overlay().map_err(invalid)?;
        Ok(Resolved {
            location,
            remote: Some(remote.name.clone()),
            settings,
        })
    }

    /// The pairs named `names` (all of them, in name order, when `names` is empty), each once.
    ///
    /// # Errors
    /// A message naming an unknown pair and listing the defined ones.
    pub fn select(&self, names: &[String]) -> Result<Vec<&PairConfig>, String> {
        if names.is_empty() {
            return Ok(self.pairs.values().collect());
        }
        let mut chosen: Vec<&PairConfig> = Vec::new();
        for name in names {
            let Some(pair) = self.pairs.get(name) else {
                let defined: Vec<&str> = self.pairs.keys().map(String::as_str).collect();
                let hint = suggest(name, defined.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(if defined.is_empty() {
                    format!("no pair `{name}`: {} defines no pairs", self.path.display())
                } else {
                    format!(
                        "no pair `{name}` in {}{hint}; the defined pairs: {}",
                        self.path.display(),
                        defined.join(", ")
                    )
                });
            };
            if !chosen.iter().any(|p| p.name == pair.name) {
                chosen.push(pair);
            }
        }
        Ok(chosen)
    }
}

/// True when the path of a `NAME:path` has a `..` segment as a server may read it: two dots
/// between `/`, also percent-encoded (`%2e%2e`, `.%2e`: URL parsers, the WebDAV client's
/// among them, take them as `..`) or between `\` (a separator in `http(s)` URLs, which the
/// WebDAV client makes of its URL). The path would leave the remote's folder.
fn leaves_folder(rest: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(rest).decode_utf8_lossy();
    [rest, decoded.as_ref()]
        .iter()
        .any(|text| text.split(['/', '\\']).any(|s| s == ".."))
}

/// The closest of `known` to `given`, when close enough to be a typo.
fn suggest<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (edit_distance(given, k), k))
        .filter(|(d, k)| *d <= (k.chars().count().max(3) / 3).max(1) || *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Expands `~` and `~/…` to the home directory.
fn expand_tilde(text: &str) -> Result<String, String> {
    if text == "~" || text.starts_with("~/") {
        let home = home_dir().ok_or_else(|| {
            format!("{text:?} starts with ~ but HOME is not set; write the full path")
        })?;
        return Ok(format!("{}{}", home.display(), &text[1..]));
    }
    if text.starts_with('~') {
        return Err(format!(
            "{text:?}: only ~ and ~/… (your home directory) are expanded; write the full path"
        ));
    }
    Ok(text.to_owned())
}

/// A name usable for a pair: letters (any script), digits, `_`, `-` and `.`, not starting
/// with `-` or `.` (it would read as a flag or a hidden name on the command line).
fn valid_pair_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Parsing state: the text (for line numbers) and the file name.
struct Parser<'a> {
    text: &'a str,
    file: &'a Path,
    /// Warnings so far (secrets written in the file).
    warnings: std::cell::RefCell<Vec<String>>,
}

type Key<'i> = Spanned<toml::de::DeString<'i>>;
type Value<'i> = Spanned<DeValue<'i>>;

impl Parser<'_> {
    /// An error at byte `span.start`.
    fn error(&self, span: Range<usize>, message: String) -> ConfigError {
        let at = span.start.min(self.text.len());
        let before = &self.text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError {
            file: self.file.to_path_buf(),
            line: Some(line),
            column: Some(column),
            // A value quoted in the message may be a URL with its password.
            message: redact(&message).into_owned(),
        }
    }

    /// The line of byte `at`.
    fn line(&self, at: usize) -> usize {
        self.text[..at.min(self.text.len())].matches('\n').count() + 1
    }

    fn unknown_key(&self, key: &Key<'_>, given: &str, place: &str, known: &[&str]) -> ConfigError {
        let hint = match suggest(given, known.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("the known keys: {}", known.join(", ")),
        };
        self.error(
            key.span(),
            format!("unknown key `{given}` in {place}: {hint}"),
        )
    }

    /// A string value.
    fn string(&self, key: &str, place: &str, v: &Value<'_>) -> Result<String, ConfigError> {
        v.get_ref().as_str().map(str::to_owned).ok_or_else(|| {
            self.error(
                v.span(),
                format!(
                    "`{key}` in {place} must be a string (in quotes), not {}",
                    v.get_ref().type_str()
                ),
            )
        })
    }

    fn boolean(&self, key: &str, place: &str, v: &Value<'_>) -> Result<bool, ConfigError> {
        v.get_ref().as_bool().ok_or_else(|| {
            self.error(
                v.span(),
                format!(
                    "`{key}` in {place} must be true or false, not {}",
                    v.get_ref().type_str()
                ),
            )
        })
    }

    /// An integer in `range`.
    fn integer(
        &self,
        key: &str,
        place: &str,
        v: &Value<'_>,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<i64, ConfigError> {
        let bad = || {
            self.error(
                v.span(),
                format!(
                    "`{key}` in {place} must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        };
        let n = v.get_ref().as_integer().ok_or_else(bad)?;
        let digits: String = n.as_str().chars().filter(|c| *c != '_').collect();
        let (sign, digits) = match digits.strip_prefix('-') {
            Some(d) => (-1, d.to_owned()),
            None => (1, digits.trim_start_matches('+').to_owned()),
        };
        let digits = digits
            .trim_start_matches("0x")
            .trim_start_matches("0o")
            .trim_start_matches("0b");
        let value = i64::from_str_radix(digits, n.radix()).map_err(|_| bad())? * sign;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(bad())
        }
    }

    /// A duration: `"90s"`, `"5m"`, `"1h"` (or a number of seconds).
    fn duration(&self, key: &str, place: &str, v: &Value<'_>) -> Result<Duration, ConfigError> {
        let text = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(n) => n.as_str().to_owned(),
            other => {
                return Err(self.error(
                    v.span(),
                    format!(
                        "`{key}` in {place} must be a duration such as \"90s\", \"5m\" or \"1h\", \
                         not {}",
                        other.type_str()
                    ),
                ));
            }
        };
        crate::timeouts::parse_duration(&text).map_err(|e| {
            self.error(
                v.span(),
                format!("`{key}` in {place}: {e}; write it as \"90s\", \"5m\" or \"1h\""),
            )
        })
    }

    /// A string or an array of strings.
    fn strings(&self, key: &str, place: &str, v: &Value<'_>) -> Result<Vec<String>, ConfigError> {
        if let Some(s) = v.get_ref().as_str() {
            return Ok(vec![s.to_owned()]);
        }
        let bad = |span: Range<usize>| {
            self.error(
                span,
                format!("`{key}` in {place} must be a string or a list of strings"),
            )
        };
        let array = v.get_ref().as_array().ok_or_else(|| bad(v.span()))?;
        array
            .iter()
            .map(|item| {
                item.get_ref()
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(item.span()))
            })
            .collect()
    }

    /// A location value: `~` expanded; a `NAME:path` must name a remote of `remotes`; a local
    /// path must be absolute.
    fn location(
        &self,
        key: &str,
        place: &str,
        v: &Value<'_>,
        remotes: &BTreeMap<String, Remote>,
    ) -> Result<String, ConfigError> {
        let text = self.string(key, place, v)?;
        let at = |message: String| self.error(v.span(), format!("`{key}` in {place}: {message}"));
        if text.trim().is_empty() {
            return Err(at("empty location".into()));
        }
        let text = expand_tilde(&text).map_err(at)?;
        self.warn_url_password(key, place, &text, &v.span());
        if let Some(name) = location::remote_name(&text) {
            if remotes.contains_key(name) {
                let rest = text.split_once(':').map_or("", |(_, r)| r);
                if leaves_folder(rest) {
                    return Err(at(format!(
                        "{text:?}: `..` would leave the folder of the remote `{name}`; name a \
                         path inside it"
                    )));
                }
                return Ok(text);
            }
            let defined: Vec<&str> = remotes.keys().map(String::as_str).collect();
            let hint = match suggest(name, defined.iter().copied()) {
                Some(s) => format!(" (did you mean `{s}`?)"),
                None if defined.is_empty() => " (the file defines no remotes)".into(),
                None => format!(" (the defined remotes: {})", defined.join(", ")),
            };
            return Err(at(format!(
                "{text:?} names the remote `{name}`, which is not defined{hint}; add a \
                 [remotes.{name}] table with its url, or write a URL or an absolute path"
            )));
        }
        match location::parse(&text) {
            Ok(Location::Local(_)) if remotes.contains_key(&text) => Err(at(format!(
                "{text:?} is a relative path; for the root of the remote `{text}` write \
                 \"{text}:\""
            ))),
            Ok(Location::Local(path)) if !path.is_absolute() => Err(at(format!(
                "{text:?} is a relative path, which would depend on the folder the command \
                 runs in; write an absolute path or ~/…"
            ))),
            Ok(_) => Ok(text),
            Err(e) => Err(at(e.to_string())),
        }
    }

    /// A local path value (`~` expanded, absolute).
    fn path(&self, key: &str, place: &str, v: &Value<'_>) -> Result<String, ConfigError> {
        let text = self.string(key, place, v)?;
        let at = |message: String| self.error(v.span(), format!("`{key}` in {place}: {message}"));
        let text = expand_tilde(&text).map_err(at)?;
        if !Path::new(&text).is_absolute() {
            return Err(at(format!(
                "{text:?} is a relative path; write an absolute path or ~/…"
            )));
        }
        Ok(text)
    }

    /// Warns when the URL `text` (the value at `span`) holds a password.
    fn warn_url_password(&self, key: &str, place: &str, text: &str, span: &Range<usize>) {
        if syncengine_core::identity::redact_url(text) != text {
            self.warnings.borrow_mut().push(format!(
                "config file {}, line {}: the `{key}` of {place} holds a password (user:password@); \
                 it works, but anyone who can read the file can read it: keep it in an \
                 environment variable (a [remotes.NAME] table with password_env = \"VARIABLE\")",
                self.file.display(),
                self.line(span.start)
            ));
        }
    }

    fn remote(&self, name: &Key<'_>, body: &Value<'_>) -> Result<Remote, ConfigError> {
        let id = name.get_ref().to_string();
        let place = format!("[remotes.{id}]");
        let name_error = |why: &str| {
            self.error(
                name.span(),
                format!(
                    "the remote name {id:?} {why}; a remote's name is letters, digits, `_` and \
                     `-` (ASCII, two or more, starting with a letter or `_`), as it is written \
                     NAME:path in locations"
                ),
            )
        };
        if location::remote_name(&format!("{id}:")) != Some(id.as_str()) {
            return Err(name_error("cannot be used"));
        }
        if RESERVED_REMOTE_NAMES
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&id))
        {
            return Err(name_error(
                "is a URL scheme, and `NAME:path` would be mistaken for a URL",
            ));
        }
        let table = body.get_ref().as_table().ok_or_else(|| {
            self.error(
                body.span(),
                format!("{place} must be a table (url = \"…\" and settings)"),
            )
        })?;
        let line = self.line(name.span().start);
        let Some((_, url_value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == "url") else {
            return Err(self.error(
                name.span(),
                format!(
                    "{place} has no `url`; add url = \"s3://bucket/prefix\" (or another remote \
                     URL, or an absolute path)"
                ),
            ));
        };
        let url = self.string("url", &place, url_value)?;
        let at =
            |message: String| self.error(url_value.span(), format!("`url` in {place}: {message}"));
        let url = expand_tilde(&url).map_err(at)?;
        self.warn_url_password("url", &place, &url, &url_value.span());
        let location = match location::parse(&url) {
            Ok(Location::Local(path)) if !path.is_absolute() => {
                return Err(at(format!(
                    "{url:?} is a relative path; write a URL, an absolute path or ~/…"
                )));
            }
            Ok(l) => l,
            Err(LocationError::RemoteName { .. }) => {
                return Err(at(format!(
                    "{url:?} is not a URL: a remote's url cannot name another remote; write \
                     s3://bucket/prefix, webdav://host/path, … or an absolute path"
                )));
            }
            Err(e) => return Err(at(e.to_string())),
        };
        let scheme = match &location {
            Location::Remote { scheme, .. } => scheme.clone(),
            Location::Local(_) => "file".to_owned(),
        };
        let keys: Vec<&RemoteKey> = REMOTE_KEYS
            .iter()
            .filter(|k| k.schemes.contains(&scheme.as_str()))
            .collect();
        let mut known: Vec<String> = vec!["url".into()];
        for k in &keys {
            known.push(k.key.to_owned());
            known.push(format!("{}_env", k.key));
        }
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        let mut settings = Vec::new();
        for (k, v) in table {
            let given = k.get_ref().as_ref();
            if given == "url" {
                continue;
            }
            let (base, from_env) = match given.strip_suffix("_env") {
                Some(base) => (base, true),
                None => (given, false),
            };
            let Some(spec) = keys.iter().find(|s| s.key == base) else {
                if REMOTE_KEYS.iter().any(|s| s.key == base) {
                    let schemes: Vec<&str> = REMOTE_KEYS
                        .iter()
                        .filter(|s| s.key == base)
                        .flat_map(|s| s.schemes.iter().copied())
                        .collect();
                    return Err(self.error(
                        k.span(),
                        format!(
                            "`{given}` in {place} is a setting of {} remotes, not of {scheme} \
                             ones; the keys of this remote: {}",
                            schemes.join(", "),
                            known.join(", ")
                        ),
                    ));
                }
                return Err(self.unknown_key(k, given, &place, &known));
            };
            if settings.iter().any(|(key, _, _)| *key == spec.key) {
                return Err(self.error(
                    k.span(),
                    format!("{place} gives both `{0}` and `{0}_env`; keep one", spec.key),
                ));
            }
            let value = if from_env {
                let var = self.string(given, &place, v)?;
                if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "`{given}` in {place} names the environment variable that holds the \
                             value, e.g. {given} = \"MY_{}\"; {var:?} is not a variable name",
                            spec.variable
                        ),
                    ));
                }
                SettingValue::FromEnv(var)
            } else {
                let value = match spec.kind {
                    ValueKind::Text => self.string(given, &place, v)?,
                    ValueKind::Path => self.path(given, &place, v)?,
                    ValueKind::Bool => self.boolean(given, &place, v)?.to_string(),
                };
                if spec.secret {
                    let line = self.line(k.span().start);
                    self.warnings.borrow_mut().push(format!(
                        "config file {}, line {line}: the secret `{given}` of {place} is written \
                         in the file; it works, but anyone who can read the file can read it: \
                         keep it in an environment variable and write {given}_env = \"VARIABLE\" \
                         instead (or use {})",
                        self.file.display(),
                        spec.variable
                    ));
                }
                SettingValue::Given(value)
            };
            settings.push((spec.key, spec.variable, value));
        }
        Ok(Remote {
            name: id,
            location,
            line,
            settings,
        })
    }

    fn pair(
        &self,
        name: &Key<'_>,
        body: &Value<'_>,
        remotes: &BTreeMap<String, Remote>,
    ) -> Result<PairConfig, ConfigError> {
        let id = name.get_ref().to_string();
        let place = format!("[pairs.{id}]");
        if !valid_pair_name(&id) {
            return Err(self.error(
                name.span(),
                format!(
                    "the pair name {id:?} cannot be used: a pair's name is letters, digits, `_`, \
                     `-` and `.`, not starting with `-` or `.` (it is typed on the command line: \
                     syncengine run NAME)"
                ),
            ));
        }
        let table = body.get_ref().as_table().ok_or_else(|| {
            self.error(
                body.span(),
                format!("{place} must be a table (source = \"…\", destination = \"…\", …)"),
            )
        })?;
        let mut pair = PairConfig {
            name: id.clone(),
            line: self.line(name.span().start),
            source: String::new(),
            destination: String::new(),
            mode: SyncMode::TwoWay,
            watch: true,
            poll_interval: None,
            rescan_interval: None,
            paused: false,
            flags: Vec::new(),
        };
        let mut spans: BTreeMap<&str, Range<usize>> = BTreeMap::new();
        for (k, v) in table {
            let given = k.get_ref().as_ref();
            if let Some((_, instead)) = RUN_ONLY_KEYS.iter().find(|(key, _)| *key == given) {
                return Err(self.error(
                    k.span(),
                    format!(
                        "`{given}` in {place} applies to one run, not to a pair; give it on the \
                         command line instead: {instead}"
                    ),
                ));
            }
            let Some(known) = PAIR_KEYS.iter().find(|key| **key == given) else {
                return Err(self.unknown_key(k, given, &place, PAIR_KEYS));
            };
            spans.insert(known, v.span());
            let flag = format!("--{}", given.replace('_', "-"));
            let parsed = |r: Result<String, String>| {
                r.map_err(|e| self.error(v.span(), format!("`{given}` in {place}: {e}")))
            };
            match given {
                "source" => pair.source = self.location(given, &place, v, remotes)?,
                "destination" => pair.destination = self.location(given, &place, v, remotes)?,
                "backup_dir" | "trash_dir" => {
                    let loc = self.location(given, &place, v, remotes)?;
                    pair.flags.push(format!("{flag}={loc}"));
                }
                "mode" => {
                    let text = self.string(given, &place, v)?;
                    pair.mode = text
                        .parse::<SyncMode>()
                        .map_err(|e| self.error(v.span(), format!("`mode` in {place}: {e}")))?;
                }
                "initial" => {
                    let text = self.string(given, &place, v)?;
                    let p = parsed(
                        text.parse::<InitialSyncPreference>()
                            .map(|p| p.to_string())
                            .map_err(|e| e.to_string()),
                    )?;
                    pair.flags.push(format!("{flag}={p}"));
                }
                "conflict" => {
                    let text = self.string(given, &place, v)?;
                    let c = parsed(
                        text.parse::<ConflictStrategy>()
                            .map(|c| c.to_string())
                            .map_err(|e| e.to_string()),
                    )?;
                    pair.flags.push(format!("{flag}={c}"));
                }
                "conflict_loser" => {
                    let text = self.string(given, &place, v)?;
                    parsed(
                        text.parse::<ConflictLoser>()
                            .map(|_| String::new())
                            .map_err(|e| e.to_string()),
                    )?;
                    pair.flags.push(format!("{flag}={text}"));
                }
                "protect" => {
                    for side in self.strings(given, &place, v)? {
                        let ok = matches!(
                            side.to_ascii_lowercase().as_str(),
                            "source" | "src" | "destination" | "dest" | "dst"
                        );
                        if !ok {
                            return Err(self.error(
                                v.span(),
                                format!(
                                    "`protect` in {place}: expected \"source\" or \
                                     \"destination\", got {side:?}"
                                ),
                            ));
                        }
                        pair.flags.push(format!("{flag}={side}"));
                    }
                }
                "exclude" | "include" => {
                    for pattern in self.strings(given, &place, v)? {
                        crate::IgnoreRules::new(std::slice::from_ref(&pattern)).map_err(|e| {
                            self.error(v.span(), format!("`{given}` in {place}: {e}"))
                        })?;
                        pair.flags.push(format!("{flag}={pattern}"));
                    }
                }
                "exclude_from" => {
                    let files = self.strings(given, &place, v)?;
                    for file in files {
                        let file = expand_tilde(&file).map_err(|e| {
                            self.error(v.span(), format!("`{given}` in {place}: {e}"))
                        })?;
                        if !Path::new(&file).is_absolute() {
                            return Err(self.error(
                                v.span(),
                                format!(
                                    "`{given}` in {place}: {file:?} is a relative path; write an \
                                     absolute path or ~/…"
                                ),
                            ));
                        }
                        pair.flags.push(format!("{flag}={file}"));
                    }
                }
                "log_file" => {
                    let file = self.path(given, &place, v)?;
                    pair.flags.push(format!("{flag}={file}"));
                }
                "max_size" => {
                    let text = match v.get_ref() {
                        DeValue::Integer(n) => n.as_str().to_owned(),
                        _ => self.string(given, &place, v)?,
                    };
                    pair.flags.push(format!("{flag}={text}"));
                }
                "trash_keep" => {
                    let text = match v.get_ref() {
                        DeValue::Integer(_) => self
                            .integer(given, &place, v, 0..=i64::from(u32::MAX))?
                            .to_string(),
                        _ => {
                            let text = self.string(given, &place, v)?;
                            if !text.eq_ignore_ascii_case("forever") {
                                return Err(self.error(
                                    v.span(),
                                    format!(
                                        "`trash_keep` in {place}: a number of days, or \
                                         \"forever\", not {text:?}"
                                    ),
                                ));
                            }
                            text
                        }
                    };
                    pair.flags.push(format!("{flag}={text}"));
                }
                "transfers" => {
                    let n = self.integer(given, &place, v, 1..=1024)?;
                    pair.flags.push(format!("{flag}={n}"));
                }
                "bwlimit" => {
                    // rclone's form: "1M", "10M:off"; a bare number is KiB/s.
                    let text = match v.get_ref() {
                        DeValue::Integer(n) => n.as_str().to_owned(),
                        _ => self.string(given, &place, v)?,
                    };
                    if let Err(e) = text.parse::<syncengine_core::bandwidth::BandwidthLimit>() {
                        return Err(self.error(v.span(), format!("`bwlimit` in {place}: {e}")));
                    }
                    pair.flags.push(format!("{flag}={text}"));
                }
                "max_delete" => {
                    let n = self.integer(given, &place, v, 0..=100)?;
                    pair.flags.push(format!("{flag}={n}"));
                }
                "min_age" | "timeout" | "contimeout" => {
                    let d = self.duration(given, &place, v)?;
                    pair.flags.push(format!("{flag}={}ms", d.as_millis()));
                }
                "checksum" | "no_trash" | "sort_listings" => {
                    if self.boolean(given, &place, v)? {
                        pair.flags.push(flag);
                    }
                }
                "watch" => pair.watch = self.boolean(given, &place, v)?,
                "paused" => pair.paused = self.boolean(given, &place, v)?,
                "poll_interval" => pair.poll_interval = Some(self.duration(given, &place, v)?),
                "rescan_interval" => {
                    pair.rescan_interval = Some(self.duration(given, &place, v)?);
                }
                _ => unreachable!("every key of PAIR_KEYS has an arm"),
            }
        }
        for required in ["source", "destination"] {
            if !spans.contains_key(required) {
                return Err(self.error(
                    name.span(),
                    format!(
                        "{place} has no `{required}`; add {required} = \"…\" (a path, a URL or \
                         REMOTE:path)"
                    ),
                ));
            }
        }
        if pair.source == pair.destination {
            let span = spans.get("destination").cloned().unwrap_or(name.span());
            return Err(self.error(
                span,
                format!(
                    "{place}: the source and the destination are the same location ({:?}); \
                     a pair syncs two different places",
                    pair.source
                ),
            ));
        }
        // `no_trash` excludes `backup_dir` and `trash_dir`, as on the command line.
        if spans.contains_key("no_trash")
            && pair.flags.iter().any(|f| f == "--no-trash")
            && let Some(other) = ["backup_dir", "trash_dir"]
                .iter()
                .find(|k| spans.contains_key(**k))
        {
            return Err(self.error(
                spans[other].clone(),
                format!("{place}: `no_trash = true` and `{other}` cannot go together; keep one"),
            ));
        }
        if spans.contains_key("backup_dir") && spans.contains_key("trash_dir") {
            return Err(self.error(
                spans["trash_dir"].clone(),
                format!("{place}: `backup_dir` and `trash_dir` cannot go together; keep one"),
            ));
        }
        Ok(pair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_find_typos() {
        assert_eq!(
            suggest("exlude", PAIR_KEYS.iter().copied()),
            Some("exclude")
        );
        assert_eq!(suggest("sorce", PAIR_KEYS.iter().copied()), Some("source"));
        assert_eq!(
            suggest("max-delete", PAIR_KEYS.iter().copied()),
            Some("max_delete")
        );
        assert_eq!(suggest("zzzzzzzz", PAIR_KEYS.iter().copied()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn pair_names_are_checked() {
        for good in ["photos", "my-notes", "v1.2", "фото", "a_b"] {
            assert!(valid_pair_name(good), "{good}");
        }
        for bad in ["", "my photos", "-x", ".hidden", "a/b", "a:b", "tab\t"] {
            assert!(!valid_pair_name(bad), "{bad}");
        }
    }

    #[test]
    fn tilde_expands_only_home() {
        if let Some(home) = home_dir() {
            assert_eq!(
                expand_tilde("~/x").unwrap(),
                format!("{}/x", home.display())
            );
        }
        assert!(expand_tilde("~bob/x").is_err());
        assert_eq!(expand_tilde("/a/~b").unwrap(), "/a/~b");
    }
}
