//! The configuration file in the command line tool: `--config`, `NAME:path` locations for the
//! remotes it defines, and `syncengine run [PAIR...]`, which syncs its pairs once each through
//! the `sync` command's own code.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use clap::Parser;
use syncengine::config::{self, Config, PairConfig, Resolved};
use syncengine::location::{self, EnvOverlay};

use crate::{
    Cli, Command, EXIT_FAILED, EXIT_OK, EXIT_SAFETY_STOP, EXIT_UNREACHABLE, EXIT_USAGE,
    INTERRUPTED, SyncArgs, Verbosity, run_sync, usage_error_in,
};

pub(crate) const RUN_AFTER_HELP: &str = "\
THE CONFIG FILE:
  $XDG_CONFIG_HOME/syncengine/config.toml (else ~/.config/syncengine/config.toml), or the file
  --config PATH or SYNCENGINE_CONFIG names. [remotes.NAME] tables name remote locations with
  their settings; [pairs.NAME] tables are the pairs this command syncs. A pair's keys are the
  long flags of `syncengine sync` with _ for - (source, destination, mode, conflict, exclude,
  include, max_delete, transfers, bwlimit, ...; see `syncengine sync --help`); watch
  (default true), poll_interval (60s), rescan_interval (1h) and paused are for
  `syncengine watch` (see its --help); a pair with paused = true is skipped by
  `syncengine run` unless named on its command line.
  Durations are written \"90s\", \"5m\", \"1h\"; ~ is your home directory; local paths must be
  absolute (or ~/...). A location written NAME:path is the remote NAME's url with /path
  appended, here and on the `sync` command line; a NAME no [remotes.NAME] defines is refused.
  A pair run by a remote's name and the same pair run by its URL share one state.

  Remote settings: url (required); s3: endpoint, region, profile, access_key_id,
  secret_access_key, session_token, allow_http; az: endpoint, account, account_key,
  sas_token, allow_http; gs: endpoint, application_credentials, service_account_key,
  allow_http; webdav(s): user, password, auth, ca_file; sftp: key_file, key_passphrase,
  password, known_hosts. Any of them may be written KEY_env = \"VARIABLE\" to read it from that
  environment variable instead: keep secrets out of the file (a secret written in it works,
  with a warning). Without them the backends read their usual variables and credential
  files (AWS_*, ~/.aws/config, ...), as on the command line.

  Unknown keys, missing keys, bad modes, durations or locations are errors naming the file,
  line and column (with the closest key for a typo); nothing is synced then.

EXAMPLE CONFIG:
  [remotes.photos-bucket]
  url = \"s3://family-photos/archive\"
  endpoint = \"https://s3.eu-central-1.amazonaws.com\"   # optional
  profile = \"home\"                                      # optional; or env-var names for secrets

  [pairs.photos]
  source = \"~/Pictures\"
  destination = \"photos-bucket:2026\"
  mode = \"source-backup\"
  exclude = [\"*.tmp\", \".DS_Store\"]
  poll_interval = \"60s\"
  watch = true

  [pairs.notes]
  source = \"~/notes\"
  destination = \"webdav://nas.local/notes\"
  mode = \"two-way\"
  conflict = \"keep-both\"

OUTPUT:
  Each pair's run prints what `syncengine sync` prints, after a line naming the pair; then one
  result line per pair (\"photos: ok\", \"notes: stopped by a safety rule (exit 3)\").

EXIT STATUS:
  The highest of the pairs' exit statuses (those of `syncengine sync`: 0 success, 1 failed,
  2 usage error, 3 stopped by a safety rule, 4 a side could not be reached), so one pair
  stopped by --max-delete makes the command exit 3 while the other pairs still run.
  2 also for a config file that cannot be read or has a mistake, or an unknown PAIR.
  Ctrl-C stops the pair running (cleanly, as sync does) and runs no further pair (exit 1).

EXAMPLES:
  Sync every configured pair once, in name order:
    syncengine run
  Only the photos pair, showing what it would do:
    syncengine run photos --dry-run
  From cron, with another config file:
    syncengine --config ~/sync/nightly.toml run -q
  A configured remote on the sync command line:
    syncengine sync ~/Pictures photos-bucket:2026 --mode source-backup
";

/// The `run` subcommand's arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The pairs to sync, by name ([pairs.NAME] in the config file); all of them, in name
    /// order, when none is given.
    #[arg(value_name = "PAIR")]
    pairs: Vec<String>,
    /// Plan and report what each pair's run would do; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where pair state is kept [default: $SYNCENGINE_STATE_DIR, else
    /// $XDG_STATE_HOME/syncengine, else ~/.local/state/syncengine].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

/// The config file named by `--config` or `SYNCENGINE_CONFIG` (set once by `main`).
static EXPLICIT: OnceLock<Option<PathBuf>> = OnceLock::new();
/// The config file, read on first use and replaced by [`replace_config`] (a `watch` that
/// reloads it).
static LOADED: Mutex<Option<Result<Option<Arc<Config>>, String>>> = Mutex::new(None);

/// Records the config file `--config` names, else the one `SYNCENGINE_CONFIG` names (set and
/// not empty); `None`: the default file.
pub(crate) fn set_config_path(flag: Option<PathBuf>) {
    let path = flag.or_else(|| {
        std::env::var_os(config::CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let _ = EXPLICIT.set(path);
}

/// The config file `--config` or `SYNCENGINE_CONFIG` names, if one does.
pub(crate) fn explicit_path() -> Option<PathBuf> {
    EXPLICIT.get().cloned().flatten()
}

/// Reads the config file: `None` when none was named and the default one does not exist.
/// Its warnings (secrets written in it) are logged.
///
/// # Errors
/// The message of a config file that was named but cannot be read, or that has a mistake.
pub(crate) fn load_config() -> Result<Option<Arc<Config>>, String> {
    let path = match explicit_path() {
        Some(p) => p,
        None => match config::default_path() {
            Some(p) if p.exists() || p.is_symlink() => p,
            _ => return Ok(None),
        },
    };
    let config = Config::load(&path).map_err(|e| e.to_string())?;
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    Ok(Some(Arc::new(config)))
}

/// The config file, read on first use ([`load_config`]); after a [`replace_config`], the
/// config it set.
///
/// # Errors
/// As [`load_config`].
pub(crate) fn config() -> Result<Option<Arc<Config>>, String> {
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    loaded.get_or_insert_with(load_config).clone()
}

/// Makes `config` the one [`config`] returns (and `NAME:path` locations resolve through)
/// from now on: a `watch` that reloaded its file.
pub(crate) fn replace_config(config: Arc<Config>) {
    *LOADED.lock().unwrap_or_else(|p| p.into_inner()) = Some(Ok(Some(config)));
}

/// Resolves a location argument: `NAME:path` through the config file's remotes (the file is
/// read only for such an argument, so a plain path or URL never depends on it), anything else
/// as [`location::parse`] reads it.
///
/// # Errors
/// A usage message: a config file that cannot be used, an undefined remote name (the message
/// says how to define it), a malformed location.
pub(crate) fn resolve(arg: &str) -> Result<Resolved, String> {
    if location::remote_name(arg).is_some()
        && let Some(config) = config()?
    {
        return config.resolve(arg).map_err(|e| e.to_string());
    }
    location::parse(arg)
        .map(|location| Resolved {
            location,
            remote: None,
            settings: EnvOverlay::default(),
        })
        .map_err(|e| e.to_string())
}

/// The `sync` command's arguments for a configured pair, parsed by that command's own
/// parser (so the pair builds the options its `sync` command line would), with `extra`
/// flags (`--dry-run`, `--state-dir=…`) added.
///
/// # Errors
/// The parser's complaint, naming the file, the pair's line and the pair.
pub(crate) fn sync_args_of(
    config: &Config,
    pair: &PairConfig,
    extra: &[String],
) -> Result<SyncArgs, String> {
    let mut argv: Vec<String> = vec!["syncengine".into(), "sync".into()];
    argv.extend(pair.sync_flags());
    argv.extend(extra.iter().cloned());
    argv.extend(["--".into(), pair.source.clone(), pair.destination.clone()]);
    let complaint = |text: &str| {
        format!(
            "config file {}, line {}: [pairs.{}]: {}",
            config.path.display(),
            pair.line,
            pair.name,
            text.trim_start_matches("error: ")
        )
    };
    match Cli::try_parse_from(&argv) {
        Ok(Cli {
            command: Command::Sync(sync),
            ..
        }) => Ok(*sync),
        Ok(_) => Err(complaint("not a sync command")),
        Err(e) => {
            let text = e.to_string();
            Err(complaint(text.lines().next().unwrap_or_default()))
        }
    }
}

/// The config file, for a `command` that cannot go without one.
///
/// # Errors
/// The exit status of the usage error printed (no file, or one with a mistake).
pub(crate) fn need_config(command: &str) -> Result<Arc<Config>, u8> {
    match config() {
        Ok(Some(c)) => Ok(c),
        Ok(None) => {
            let default = config::default_path().map_or_else(
                || "~/.config/syncengine/config.toml".to_owned(),
                |p| p.display().to_string(),
            );
            Err(usage_error_in(
                command,
                format!(
                    "no config file: {default} does not exist; create it with [pairs.NAME] \
                     tables (see `syncengine run --help`), or name one with --config PATH or \
                     SYNCENGINE_CONFIG"
                ),
            ))
        }
        Err(e) => Err(usage_error_in(command, e)),
    }
}

/// The complaint about a config file without pairs.
pub(crate) fn no_pairs(config: &Config) -> String {
    format!(
        "{} defines no pairs; add a [pairs.NAME] table with source and destination (see \
         `syncengine run --help`)",
        config.path.display()
    )
}

/// What became of one pair of a `run`.
enum Outcome {
    /// It ran, with this exit status.
    Ran(u8),
    /// Not run: Ctrl-C stopped an earlier pair.
    Interrupted,
    /// Not run: `paused = true` in the file, and not named on the command line.
    Paused,
    /// Not run: paused by `syncengine pause` (recorded in the state directory), and not
    /// named on the command line.
    PausedByCommand,
}

/// What an exit status means, for the result line of a pair.
fn outcome(code: u8) -> String {
    match code {
        EXIT_OK => "ok".to_owned(),
        EXIT_FAILED => "failed (exit 1)".to_owned(),
        EXIT_USAGE => "not run: usage error (exit 2)".to_owned(),
        EXIT_SAFETY_STOP => "stopped by a safety rule (exit 3)".to_owned(),
        EXIT_UNREACHABLE => "a side could not be reached (exit 4)".to_owned(),
        other => format!("exit {other}"),
    }
}

/// Runs `syncengine run` and returns the exit status: the highest of the pairs'.
pub(crate) fn run_pairs(args: RunArgs, verbosity: Verbosity) -> u8 {
    let config = match need_config("run") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let pairs = match config.select(&args.pairs) {
        Ok(p) => p,
        Err(e) => return usage_error_in("run", e),
    };
    if pairs.is_empty() {
        return usage_error_in("run", no_pairs(&config));
    }
    // A pair marked `paused` in the file, or paused by `syncengine pause` (recorded in the
    // state directory), is left alone unless named. A record that cannot be read runs
    // nothing unnamed: it may pause any of them.
    let named = !args.pairs.is_empty();
    let recorded = match args
        .state_dir
        .clone()
        .or_else(syncengine::default_state_dir)
    {
        Some(dir) if !named => match syncengine::service::paused_pairs(&dir) {
            Ok(set) => set,
            Err(e) => {
                eprintln!(
                    "{}",
                    syncengine::redact::redact(&format!(
                        "error: {e}; it says which pairs `syncengine pause` paused, so no pair \
                         runs: fix or remove the file (removing it resumes every paused pair), \
                         or name the pairs to run"
                    ))
                );
                return EXIT_FAILED;
            }
        },
        _ => Default::default(),
    };
    let mut results: Vec<(String, Outcome)> = Vec::new();
    for pair in pairs {
        if INTERRUPTED.load(Ordering::SeqCst) {
            results.push((pair.name.clone(), Outcome::Interrupted));
            continue;
        }
        if pair.paused && !named {
            results.push((pair.name.clone(), Outcome::Paused));
            continue;
        }
        if recorded.contains(&pair.name) && !named {
            results.push((pair.name.clone(), Outcome::PausedByCommand));
            continue;
        }
        if verbosity != Verbosity::Quiet {
            println!(
                "{}",
                syncengine::redact::redact(&format!(
                    "==> {}: {} -> {} ({})",
                    pair.name, pair.source, pair.destination, pair.mode
                ))
            );
        }
        let mut extra = Vec::new();
        if args.dry_run {
            extra.push("--dry-run".into());
        }
        if let Some(dir) = &args.state_dir {
            extra.push(format!("--state-dir={}", dir.display()));
        }
        let code = match sync_args_of(&config, pair, &extra) {
            Ok(sync) => run_sync(sync, verbosity),
            Err(e) => {
                eprintln!("{}", syncengine::redact::redact(&format!("error: {e}")));
                EXIT_USAGE
            }
        };
        results.push((pair.name.clone(), Outcome::Ran(code)));
    }
    let mut worst = EXIT_OK;
    for (name, code) in &results {
        let line = match code {
            Outcome::Ran(code) => {
                worst = worst.max(*code);
                format!("{name}: {}", outcome(*code))
            }
            Outcome::Interrupted => {
                worst = worst.max(EXIT_FAILED);
                format!("{name}: not run (interrupted)")
            }
            Outcome::Paused => {
                format!(
                    "{name}: paused in the config file, not run (`syncengine run {name}` runs it)"
                )
            }
            Outcome::PausedByCommand => {
                format!(
                    "{name}: paused (`syncengine pause`), not run (`syncengine run {name}` runs \
                     it; `syncengine resume {name}` resumes it)"
                )
            }
        };
        if verbosity != Verbosity::Quiet {
            println!("{line}");
        }
    }
    worst
}
