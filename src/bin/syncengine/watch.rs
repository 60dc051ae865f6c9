//! `syncengine watch`: the config file's pairs kept in sync by the library's
//! [`SyncService`] until SIGINT/SIGTERM, reloading the file on SIGHUP; and `pause`, `resume`
//! and `status`, which act on a running watch through its control socket
//! ([`control`](crate::control)), or on the state it left when none runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use syncengine::bandwidth::{Bandwidth, BandwidthLimit};
use syncengine::config::{Config, PairConfig};
use syncengine::location;
use syncengine::service::{
    PairSpec, PairState, RunOutcome, ServiceError, ServiceEvent, ServiceOptions, SyncService,
    Watching,
};
use syncengine::{Side, SyncError};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast::error::RecvError;

use crate::control::{self, Control};
use crate::run::{self, sync_args_of};
use crate::{
    EXIT_FAILED, EXIT_OK, Verbosity, block_on, build_pair, human_bytes, parse_duration_arg,
    summary, usage_error_in,
};

pub(crate) const WATCH_AFTER_HELP: &str = "\
WHAT IT DOES:
  Runs every pair of the config file (or the PAIRs named) once at start, then again whenever
  it may have changed, until SIGINT or SIGTERM:
  - local roots are watched (inotify): a run starts 2 s after the last change, at most 10 s
    after the first, so a burst of changes makes one or two runs; the runs' own writes do
    not start a run. With watch = false in the pair, or when a watch cannot be set up (the
    inotify watch limit: raise fs.inotify.max_user_watches), local roots are polled;
  - remote roots are polled every poll_interval (default 60s);
  - every pair runs in full every rescan_interval (default 1h), for what a watch missed.
  Each run is an ordinary `syncengine sync` run of the pair, with its flags from the file.
  One run at a time per pair; at most --max-runs runs at once over all pairs.

  A run stopped by a safety rule (--max-delete, an emptied side, a changed root) stops only
  its pair, which is never retried into the rule: check what the log says, then
  `syncengine resume PAIR` (runs again as it is) or `syncengine resume PAIR --force-once`
  (one run past the stop). A failed run (a server down, the pair's lock held) is retried
  after a back-off that doubles from 5s up to 10m, without holding up the other pairs.

SIGNALS:
  SIGINT, SIGTERM  stop cleanly: runs in progress start no new transfer and end with the
                   state true for what was done; exit 0. A second SIGINT aborts (exit 1).
  SIGHUP           read the config file again: added pairs start, removed ones stop, changed
                   ones restart; a file with a mistake is reported and the old one kept.

OUTPUT:
  One line per pair event on stdout, with its UTC time: added, each run's result (what it
  synced, or \"up to date\"), paused, resumed, stopped by a safety rule, failed (with the
  retry), watch fallbacks; and every --status-interval one status line per pair. Warnings
  and errors of files go to stderr. -v also shows when each run starts.

CONTROL:
  `syncengine pause PAIR`, `syncengine resume PAIR [--force-once]` and `syncengine status`
  reach the running watch through a socket in the state directory (watch.sock). One watch
  runs per state directory. Pauses are kept in the state directory (service-paused.json)
  and hold across restarts; paused = true in the file starts the pair paused.

EXIT STATUS:
  0 after SIGINT or SIGTERM; 2 for a config file with a mistake, an unknown PAIR, no pair
  that could be started, or another watch running with the same state directory; 1 when
  the service cannot run (the state directory cannot be written).

RUNNING IT AS A SYSTEMD USER SERVICE:
  ~/.config/systemd/user/syncengine.service:
    [Unit]
    Description=syncengine: keep the pairs of ~/.config/syncengine/config.toml in sync

    [Service]
    ExecStart=%h/.cargo/bin/syncengine watch
    ExecReload=/bin/kill -HUP $MAINPID
    Restart=on-failure

    [Install]
    WantedBy=default.target
  then: systemctl --user daemon-reload && systemctl --user enable --now syncengine
  (logs: journalctl --user -u syncengine; after editing the config: systemctl --user
  reload syncengine).

EXAMPLES:
  Keep every configured pair in sync:
    syncengine watch
  Only two of them, sharing 2 MiB/s up and 8 MiB/s down:
    syncengine watch photos notes --bwlimit 2M:8M
  Hold one pair back for a while, then let it go:
    syncengine pause photos
    syncengine resume photos
";

pub(crate) const PAUSE_AFTER_HELP: &str = "\
Acts on the `syncengine watch` running with the same state directory: the pair's run in
progress starts no new transfer and gets 10 s to finish those in flight, then is cancelled
cleanly; no run starts until `syncengine resume PAIR`. The pause is recorded in the state
directory and holds across restarts of the watch. With no watch running, the pause is only
recorded: the next `syncengine watch` starts the pair paused.

EXIT STATUS:
  0 paused; 1 the watch did not answer or the state could not be written; 2 no such pair.
";

pub(crate) const RESUME_AFTER_HELP: &str = "\
Acts on the `syncengine watch` running with the same state directory: a paused pair, or one
stopped by a safety rule, runs again at once. A stopped pair that runs into the same rule
stops again; --force-once runs it once past the stop it waits at: a --max-delete stop (as
`sync --max-delete` with the share that run would have deleted: more deleted since, or a side
emptied, stops it again), an empty-side stop (as `sync --force`) or a changed root (as `sync
--accept-new-root`), after which the rules hold again.
Check what the stop said first (`syncengine status PAIR`): it stopped because the run would
have deleted or overwritten many files. With no watch running, the pause recorded for the
pair is removed.

EXIT STATUS:
  0 resumed; 1 the watch did not answer or the state could not be written; 2 no such pair,
  or --force-once for a pair that is not stopped by a rule it can pass.
";

pub(crate) const STATUS_AFTER_HELP: &str = "\
Shows each pair of the config file: from the `syncengine watch` running with the same state
directory, what it is doing now (idle, scanning, syncing, paused, stopped by a safety rule,
backing off after an error), how changes are noticed, its last error and its last completed
run; with no watch running, whether it is paused and what the last watch saw of it.
`syncengine pairs` shows the stored state of every pair ever synced.

EXIT STATUS:
  0 shown; 2 the config file has a mistake, or a PAIR is unknown.
";

/// The `watch` subcommand's arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct WatchArgs {
    /// The pairs to keep in sync, by name ([pairs.NAME] in the config file); all of them
    /// when none is given.
    #[arg(value_name = "PAIR")]
    pairs: Vec<String>,
    /// Where pair state is kept [default: $SYNCENGINE_STATE_DIR, else
    /// $XDG_STATE_HOME/syncengine, else ~/.local/state/syncengine].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Limit all transfers of all pairs together to RATE bytes per second (as `sync
    /// --bwlimit`: RATE each way or UP:DOWN, e.g. 1M, 10M:off, 512k:2M). A pair's own
    /// bwlimit in the file limits that pair further.
    #[arg(long, value_name = "RATE", value_parser = str::parse::<BandwidthLimit>)]
    bwlimit: Option<BandwidthLimit>,
    /// Runs in progress at once over all pairs.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    max_runs: u16,
    /// Print one status line per pair every DURATION (e.g. 10m, 1h); 0 only on events.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration_arg)]
    status_interval: Duration,
}

/// The `pause` subcommand's arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct PauseArgs {
    /// The pair to pause ([pairs.NAME] in the config file).
    #[arg(value_name = "PAIR")]
    pair: String,
    /// The state directory of the watch [default: as for watch].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

/// The `resume` subcommand's arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ResumeArgs {
    /// The pair to resume.
    #[arg(value_name = "PAIR")]
    pair: String,
    /// Run the pair once past the safety stop it waits at (a running watch only).
    #[arg(long)]
    force_once: bool,
    /// The state directory of the watch [default: as for watch].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

/// The `status` subcommand's arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Only these pairs.
    #[arg(value_name = "PAIR")]
    pairs: Vec<String>,
    /// Print one JSON object: {"running": bool, "pairs": [...]}.
    #[arg(long)]
    json: bool,
    /// The state directory of the watch [default: as for watch].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

/// Prints one line of the watch's log on stdout, with the UTC time.
fn log_line(text: &str) {
    use std::io::Write as _;
    let line = format!(
        "{} {}\n",
        crate::output::utc_now(),
        syncengine::redact::redact(text)
    );
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
}

/// Prints `text` on stderr, secrets redacted.
fn say(text: &str) {
    eprintln!("{}", syncengine::redact::redact(text));
}

/// The state directory: the flag, else the default one.
fn state_dir_of(flag: Option<&PathBuf>, command: &str) -> Result<PathBuf, u8> {
    flag.cloned()
        .or_else(syncengine::default_state_dir)
        .ok_or_else(|| {
            usage_error_in(
                command,
                "no state directory: pass --state-dir DIR or set SYNCENGINE_STATE_DIR \
                 (neither XDG_STATE_HOME nor HOME is set)",
            )
        })
}

/// Runs `syncengine watch` and returns its exit status.
pub(crate) fn run_watch(args: WatchArgs, verbosity: Verbosity) -> u8 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    with_fewer_malloc_arenas();
    block_on(watch_async(args, verbosity), false)
}

/// Starts this watch again in place (`exec`: the same process id, arguments and environment)
/// with glibc's malloc limited to 2 arenas, unless the user set `arena_max` already.
///
/// glibc gives busy threads arenas of their own (up to 8 per core) and keeps what is freed
/// in them: after the first runs of three 100 000-file pairs a watch held 77 MiB while idle
/// (65 MiB of it freed memory kept by the arenas); with 2 arenas 58 MiB
/// (bench/results/watch.md). A watch lives for weeks, so what it keeps matters more than the
/// little contention two arenas add. Where the `exec` fails, the watch runs as it is.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn with_fewer_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    const DONE: &str = "SYNCENGINE_WATCH_ARENAS";
    const TUNABLE: &str = "glibc.malloc.arena_max";
    if std::env::var_os(DONE).is_some() {
        return;
    }
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if tunables.contains(TUNABLE) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let value = if tunables.is_empty() {
        format!("{TUNABLE}=2")
    } else {
        format!("{tunables}:{TUNABLE}=2")
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(argv0) = args.next() {
        command.arg0(argv0);
    }
    let err = command
        .args(args)
        .env("GLIBC_TUNABLES", value)
        .env(DONE, "1")
        .exec();
    tracing::debug!("watch: could not restart itself with fewer malloc arenas: {err}");
}

/// A pair as the watch runs it: its config, and the remotes it resolves through then.
#[derive(Clone, PartialEq)]
struct Running {
    pair: PairConfig,
    remotes: Vec<Option<syncengine::config::Remote>>,
}

impl Running {
    fn of(config: &Config, pair: &PairConfig) -> Self {
        let mut pair = pair.clone();
        // Where the table sits in the file is no change of the pair.
        pair.line = 0;
        let remotes = referenced_remotes(&pair)
            .into_iter()
            .map(|name| {
                config.remotes.get(&name).cloned().map(|mut r| {
                    r.line = 0;
                    r
                })
            })
            .collect();
        Running { pair, remotes }
    }
}

/// The remote names a pair's locations (sides, backup and trash folders) go through.
fn referenced_remotes(pair: &PairConfig) -> Vec<String> {
    let mut words = vec![pair.source.clone(), pair.destination.clone()];
    for flag in pair.sync_flags() {
        for prefix in ["--backup-dir=", "--trash-dir="] {
            if let Some(v) = flag.strip_prefix(prefix) {
                words.push(v.to_owned());
            }
        }
    }
    let mut names: Vec<String> = words
        .iter()
        .filter_map(|w| location::remote_name(w).map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The service's spec of a configured pair: its `sync` arguments, built into a fresh pair
/// (fresh clients) before each run.
fn spec_of(config: &Config, pair: &PairConfig, state_dir: &Path) -> Result<PairSpec, String> {
    let args = sync_args_of(
        config,
        pair,
        &[format!("--state-dir={}", state_dir.display())],
    )?;
    if args.log_file.is_some() {
        log_line(&format!(
            "{}: log_file is written by `syncengine run` and `sync`, not by watch; its runs \
             are reported here",
            pair.name
        ));
    }
    let own_limit = args.bwlimit.map(Bandwidth::new);
    let args = Arc::new(args);
    let mut spec = PairSpec::with_builder(pair.name.clone(), move || {
        let args = args.clone();
        let own_limit = own_limit.clone();
        async move {
            let built = build_pair(&args).map_err(|(code, msg)| setup_error(code, msg))?;
            Ok(match own_limit {
                Some(b) => b.throttle_pair(&built),
                None => built,
            })
        }
    })
    .with_watch(pair.watch)
    .with_paused(pair.paused);
    if let Some(p) = pair.poll_interval {
        spec = spec.with_poll_interval(p);
    }
    if let Some(r) = pair.rescan_interval {
        spec = spec.with_rescan_interval(r);
    }
    Ok(spec)
}

/// A pair that cannot be built, as the engine error the service sorts into a stop (a
/// mistake in the pair: no retry fixes it) or a failure it retries (a side not reached).
fn setup_error(code: u8, msg: String) -> SyncError {
    if code == crate::EXIT_UNREACHABLE {
        let side = if msg.contains("destination") {
            Side::Destination
        } else {
            Side::Source
        };
        SyncError::Unreachable {
            side,
            root: String::new(),
            source: syncengine::Error::other("open", "", msg),
            during_run: false,
        }
    } else {
        SyncError::Config(msg)
    }
}

/// The pairs a watch runs, and those it could not start (retried on reload, or every
/// minute when a side could not be reached).
struct Pairs {
    running: BTreeMap<String, Running>,
    not_started: BTreeMap<String, bool>,
    /// `pause` (true) or `resume` (false) asked for a pair not started: carried out when it
    /// starts.
    wanted: BTreeMap<String, bool>,
}

impl Pairs {
    /// Starts the pair `pair` of `config` in `service`.
    async fn start(
        &mut self,
        service: &SyncService,
        config: &Config,
        pair: &PairConfig,
        state_dir: &Path,
    ) {
        let wanted = self.wanted.get(&pair.name).copied();
        let spec = match spec_of(config, pair, state_dir) {
            // Asked to pause before it started: it starts paused (no first run).
            Ok(s) if wanted == Some(true) => s.with_paused(true),
            Ok(s) => s,
            Err(e) => {
                log_line(&format!("{}: not started: {e}", pair.name));
                self.not_started.insert(pair.name.clone(), false);
                return;
            }
        };
        match service.add(spec).await {
            Ok(()) => {
                self.not_started.remove(&pair.name);
                // The pause or resume asked for before it started, recorded as the watch
                // records its own.
                let carried = match self.wanted.remove(&pair.name) {
                    Some(true) => service.pause(&pair.name).await,
                    Some(false) => service.resume(&pair.name).await,
                    None => Ok(()),
                };
                if let Err(e) = carried {
                    log_line(&format!("{}: {e}", pair.name));
                }
                self.running
                    .insert(pair.name.clone(), Running::of(config, pair));
                log_line(&format!(
                    "{}: added: {} -> {} ({}){}",
                    pair.name,
                    pair.source,
                    pair.destination,
                    pair.mode,
                    if pair.paused {
                        ", paused in the config file"
                    } else {
                        ""
                    }
                ));
            }
            Err(e) => {
                let retry = matches!(
                    &e,
                    ServiceError::Setup { source, .. }
                        if matches!(**source, SyncError::Unreachable { .. })
                );
                let when = if retry {
                    "tried again every minute"
                } else {
                    "fix the config file, then reload it (SIGHUP)"
                };
                log_line(&format!("{}: not started: {e}; {when}", pair.name));
                self.not_started.insert(pair.name.clone(), retry);
            }
        }
    }

    /// Brings the service in line with `config`: pairs no longer selected stop, new ones
    /// start, changed ones (their table, or a remote they use) restart.
    async fn apply(
        &mut self,
        service: &SyncService,
        config: &Config,
        names: &[String],
        state_dir: &Path,
    ) {
        let selected: Vec<&PairConfig> = if names.is_empty() {
            config.pairs.values().collect()
        } else {
            names
                .iter()
                .filter_map(|n| {
                    let p = config.pairs.get(n);
                    if p.is_none() {
                        log_line(&format!(
                            "{n}: no longer in {}; stopped",
                            config.path.display()
                        ));
                    }
                    p
                })
                .collect()
        };
        let keep: Vec<&str> = selected.iter().map(|p| p.name.as_str()).collect();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|n| !keep.contains(&n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.stop(service, &name, "removed from the config file")
                .await;
        }
        self.not_started.retain(|n, _| keep.contains(&n.as_str()));
        self.wanted.retain(|n, _| keep.contains(&n.as_str()));
        // Changed pairs stop before any starts: a pair may move its root to where another
        // one was.
        let mut to_start = Vec::new();
        for pair in &selected {
            match self.running.get(&pair.name) {
                Some(r) if *r == Running::of(config, pair) => {}
                Some(_) => {
                    self.stop(
                        service,
                        &pair.name,
                        "changed in the config file; restarting",
                    )
                    .await;
                    to_start.push(*pair);
                }
                None => to_start.push(*pair),
            }
        }
        for pair in to_start {
            self.start(service, config, pair, state_dir).await;
        }
    }

    /// The answer to a `pause` or `resume` of a pair the watch could not start (yet): taken,
    /// and carried out when it starts; `None` for any other request.
    fn not_started_request(&mut self, request: &Value) -> Option<Value> {
        let cmd = request.get("cmd").and_then(Value::as_str)?;
        let pair = request.get("pair").and_then(Value::as_str)?;
        if self.running.contains_key(pair) || !self.not_started.contains_key(pair) {
            return None;
        }
        let paused = match cmd {
            "pause" => true,
            "resume" => false,
            _ => return None,
        };
        self.wanted.insert(pair.to_owned(), paused);
        let message = if paused {
            format!(
                "{pair}: paused (the watch has not started it: see its log; it starts paused, \
                 until `syncengine resume {pair}`)"
            )
        } else {
            format!(
                "{pair}: resumed (the watch has not started it: see its log; it runs once it starts)"
            )
        };
        log_line(&message);
        Some(json!({"ok": true, "message": message}))
    }

    async fn stop(&mut self, service: &SyncService, name: &str, why: &str) {
        self.running.remove(name);
        match service.remove(name).await {
            Ok(()) => log_line(&format!("{name}: {why}")),
            Err(e) => log_line(&format!("{name}: {e}")),
        }
    }
}

async fn watch_async(args: WatchArgs, verbosity: Verbosity) -> u8 {
    let state_dir = match state_dir_of(args.state_dir.as_ref(), "watch") {
        Ok(d) => d,
        Err(code) => return code,
    };
    let mut config = match run::need_config("watch") {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = config.select(&args.pairs) {
        return usage_error_in("watch", e);
    }
    if config.pairs.is_empty() {
        return usage_error_in("watch", run::no_pairs(&config));
    }
    let control = match Control::bind(&state_dir) {
        Ok(c) => c,
        Err(e) if e.usage => return usage_error_in("watch", e.message),
        Err(e) => {
            say(&format!("error: {}", e.message));
            return EXIT_FAILED;
        }
    };
    let mut options =
        ServiceOptions::default().with_max_concurrent_runs(usize::from(args.max_runs));
    if let Some(limit) = args.bwlimit {
        options = options.with_bandwidth(Bandwidth::new(limit));
    }
    let service = match SyncService::with_options(&state_dir, options) {
        Ok(s) => s,
        Err(e) => {
            say(&format!("error: {e}"));
            return EXIT_FAILED;
        }
    };
    let mut events = service.subscribe();
    let (mut sigint, mut sigterm, mut sighup) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(i), Ok(t), Ok(h)) => (i, t, h),
        _ => {
            say("error: cannot install the signal handlers");
            return EXIT_FAILED;
        }
    };
    log_line(&format!(
        "watch started: config {}, state {}",
        config.path.display(),
        state_dir.display()
    ));
    let mut pairs = Pairs {
        running: BTreeMap::new(),
        not_started: BTreeMap::new(),
        wanted: BTreeMap::new(),
    };
    pairs
        .apply(&service, &config, &args.pairs, &state_dir)
        .await;
    if pairs.running.is_empty() {
        service.shutdown().await;
        return usage_error_in(
            "watch",
            "no pair could be started (the lines above say why)",
        );
    }
    publish_status(&service, &state_dir, true);

    let mut status_tick = tokio::time::interval(if args.status_interval.is_zero() {
        Duration::from_secs(365 * 86_400)
    } else {
        args.status_interval
    });
    status_tick.tick().await;
    let mut retry_tick = tokio::time::interval(Duration::from_secs(60));
    retry_tick.tick().await;
    // Control requests, each read by a task of its own (see `Control::read_in_background`).
    let (requests_tx, mut requests) = tokio::sync::mpsc::channel::<control::Request>(16);
    loop {
        tokio::select! {
            _ = sigint.recv() => {
                log_line("SIGINT: stopping cleanly (SIGINT again aborts)");
                break;
            }
            _ = sigterm.recv() => {
                log_line("SIGTERM: stopping cleanly");
                break;
            }
            _ = sighup.recv() => {
                match run::load_config() {
                    Ok(Some(new)) => {
                        log_line(&format!("SIGHUP: reloaded {}", new.path.display()));
                        run::replace_config(new.clone());
                        config = new;
                        pairs.apply(&service, &config, &args.pairs, &state_dir).await;
                        publish_status(&service, &state_dir, true);
                    }
                    Ok(None) => log_line(
                        "SIGHUP: the config file is gone; keeping the pairs as they are",
                    ),
                    Err(e) => log_line(&format!(
                        "SIGHUP: {e}; keeping the config loaded before"
                    )),
                }
            }
            accepted = control.accept() => match accepted {
                Ok(accepted) => control.read_in_background(accepted, requests_tx.clone()),
                Err(e) => {
                    // Out of file descriptors, most likely: not a loop at full speed.
                    tracing::warn!("cannot accept a control connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some((mut stream, request)) = requests.recv() => {
                let answer = match pairs.not_started_request(&request) {
                    Some(answer) => answer,
                    None => answer(&service, &config, &request).await,
                };
                // A client slow to read its answer holds nothing up either.
                tokio::spawn(async move { control::reply(&mut stream, &answer).await });
            }
            event = events.recv() => match event {
                Ok(event) => {
                    if report_event(&service, &event, verbosity) {
                        publish_status(&service, &state_dir, true);
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!("the watch's log missed {n} events");
                }
                Err(RecvError::Closed) => break,
            },
            _ = status_tick.tick() => {
                for (name, status) in service.statuses() {
                    log_line(&format!("{name}: {}", describe(&status)));
                }
            }
            _ = retry_tick.tick() => {
                let retry: Vec<String> = pairs
                    .not_started
                    .iter()
                    .filter(|(_, retry)| **retry)
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in retry {
                    if let Some(pair) = config.pairs.get(&name) {
                        pairs.start(&service, &config, pair, &state_dir).await;
                    }
                }
            }
        }
    }
    // Requests not answered yet are closed unanswered (their clients say so) rather than
    // kept waiting while the runs wind down.
    drop(requests);
    // A second SIGINT while the runs wind down aborts.
    let abort = tokio::spawn(async move {
        if sigint.recv().await.is_some() {
            say("aborted");
            std::process::exit(i32::from(EXIT_FAILED));
        }
    });
    let mut statuses: Vec<Value> = service
        .statuses()
        .iter()
        .map(|(n, s)| control::status_json(n, s))
        .collect();
    service.shutdown().await;
    // The runs the shutdown ended, said in the log; none is in progress any more.
    loop {
        match events.try_recv() {
            Ok(ServiceEvent::RunFinished { pair, outcome }) => log_line(&match outcome {
                RunOutcome::Cancelled => format!(
                    "{pair}: run cancelled (the watch is stopping); the next run does the rest"
                ),
                RunOutcome::Completed(_) => format!("{pair}: run completed as the watch stopped"),
                RunOutcome::Failed { error, .. } => format!("{pair}: run failed: {error}"),
                _ => format!("{pair}: run ended"),
            }),
            Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    for status in &mut statuses {
        if matches!(
            status["state"].as_str(),
            Some("waiting" | "scanning" | "syncing")
        ) {
            let paused = status["paused"].as_bool() == Some(true);
            status["state"] = json!(if paused { "paused" } else { "idle" });
        }
    }
    // Pauses and resumes asked for pairs that never started, kept for the next watch (which
    // cannot start before the lock is released).
    for (name, paused) in &pairs.wanted {
        if let Err(e) = syncengine::service::set_paused(&state_dir, name, *paused) {
            say(&format!("error: {name}: {e}"));
        }
    }
    abort.abort();
    control::write_status_file(&state_dir, &statuses, false);
    drop(control);
    log_line("watch stopped");
    EXIT_OK
}

/// Writes the live statuses to the status file.
fn publish_status(service: &SyncService, state_dir: &Path, running: bool) {
    let statuses: Vec<Value> = service
        .statuses()
        .iter()
        .map(|(n, s)| control::status_json(n, s))
        .collect();
    control::write_status_file(state_dir, &statuses, running);
}

/// Logs `event`; true when it changed a pair's state worth keeping in the status file.
fn report_event(service: &SyncService, event: &ServiceEvent, verbosity: Verbosity) -> bool {
    match event {
        ServiceEvent::RunStarted { pair, reason } => {
            if matches!(verbosity, Verbosity::Verbose(_)) {
                log_line(&format!("{pair}: run started ({reason:?})"));
            }
            false
        }
        ServiceEvent::RunFinished { pair, outcome } => {
            let line = match outcome {
                RunOutcome::Completed(stats) => {
                    let elapsed = service
                        .status(pair)
                        .and_then(|s| s.last_run.map(|r| r.duration))
                        .unwrap_or_default();
                    let changed = stats.uploaded
                        + stats.downloaded
                        + stats.deleted_source
                        + stats.deleted_destination
                        + stats.renamed_source
                        + stats.renamed_destination
                        + stats.conflicts
                        + stats.errors;
                    if changed == 0 && stats.unknown == 0 && stats.protected == 0 {
                        format!("{pair}: up to date ({:.1}s)", elapsed.as_secs_f64())
                    } else {
                        let mut line = format!("{pair}: {}", summary(stats, elapsed, "the trash"));
                        if stats.errors > 0
                            && let Some(e) = service.status(pair).and_then(|s| s.last_error)
                        {
                            line.push_str(&format!("; first error: {e}"));
                        }
                        line
                    }
                }
                RunOutcome::Cancelled => format!("{pair}: run cancelled"),
                // The Stopped event that follows says it.
                RunOutcome::Stopped(_) => return true,
                RunOutcome::Failed { error, retry_in } => format!(
                    "{pair}: run failed: {error}; retrying in {}s",
                    retry_in.as_secs()
                ),
                _ => format!("{pair}: run ended"),
            };
            log_line(&line);
            true
        }
        ServiceEvent::Paused { pair } => {
            log_line(&format!("{pair}: paused"));
            true
        }
        ServiceEvent::Resumed { pair, force_once } => {
            log_line(&format!(
                "{pair}: resumed{}",
                if *force_once {
                    "; its next run is forced past its safety stop"
                } else {
                    ""
                }
            ));
            true
        }
        ServiceEvent::Stopped { pair, reason } => {
            let how = if reason.kind.can_force() {
                format!(
                    "check, then `syncengine resume {pair}` to run it as it is, or \
                     `syncengine resume {pair} --force-once` to run it once past the stop"
                )
            } else {
                format!("fix the cause, then `syncengine resume {pair}`")
            };
            log_line(&format!(
                "{pair}: STOPPED by a safety rule, nothing changed: {}; {how}",
                reason.message
            ));
            true
        }
        ServiceEvent::WatchFallback { pair, reason } => {
            log_line(&format!("{pair}: polled instead of watched: {reason}"));
            true
        }
        ServiceEvent::Stalled { pair, silent_for } => {
            log_line(&format!(
                "{pair}: no progress for {}s: its storage does not answer (a hung disk, mount or \
                 server?); its run slot goes to the other pairs, and the run goes on when the \
                 storage answers (`syncengine pause {pair}` cancels it)",
                silent_for.as_secs()
            ));
            true
        }
        ServiceEvent::Progress { pair, event } => {
            match event {
                syncengine::ProgressEvent::Failed { path, error, .. } => {
                    say(&format!("error: {pair}: {path}: {error}"));
                }
                syncengine::ProgressEvent::Warning(w) => say(&format!("warning: {pair}: {w}")),
                _ => {}
            }
            false
        }
        _ => true,
    }
}

/// A one-line description of a pair's status (after its name).
fn describe(status: &syncengine::service::PairStatus) -> String {
    let mut text = match &status.state {
        PairState::Idle => "idle".to_owned(),
        PairState::Waiting => "waiting for a free run slot".to_owned(),
        PairState::Scanning => "scanning".to_owned(),
        PairState::Syncing => "syncing".to_owned(),
        PairState::Paused => "paused".to_owned(),
        PairState::Stopped(r) => format!("stopped by a safety rule: {}", r.message),
        PairState::BackingOff { retry_at } => {
            let secs = retry_at
                .duration_since(SystemTime::now())
                .map_or(0, |d| d.as_secs());
            format!("backing off after an error, retry in {secs}s")
        }
        _ => "unknown".to_owned(),
    };
    if status.paused && status.state != PairState::Paused {
        text.push_str(" (paused; the run in progress is finishing)");
    }
    if let Some(since) = status.no_progress_since {
        text.push_str(&format!(
            " (no progress since {}: its storage does not answer?)",
            crate::output::utc_time(since)
        ));
    }
    text.push_str(match &status.watching {
        Watching::Watched => ", watched",
        Watching::Polled => ", polled",
        _ => ", polled (watch failed)",
    });
    if let Some(run) = &status.last_run {
        text.push_str(&format!(
            "; last run {}: {} up, {} down, {} errors",
            crate::output::utc_time(run.finished_at),
            human_bytes(run.stats.bytes_uploaded),
            human_bytes(run.stats.bytes_downloaded),
            run.stats.errors
        ));
    }
    if let Some(e) = &status.last_error {
        text.push_str(&format!("; last error: {e}"));
    }
    text
}

/// The watch's answer to a control request.
async fn answer(service: &SyncService, config: &Config, request: &Value) -> Value {
    let cmd = request.get("cmd").and_then(Value::as_str).unwrap_or("");
    let pair = request.get("pair").and_then(Value::as_str).unwrap_or("");
    let unknown = |e: &ServiceError| match e {
        ServiceError::UnknownPair(_) => json!({
            "ok": false,
            "unknown_pair": true,
            "error": format!(
                "the running watch has no pair `{pair}` (it runs: {})",
                service.pair_names().join(", ")
            ),
        }),
        ServiceError::NotStopped(_) => json!({
            "ok": false,
            "not_stopped": true,
            "error": format!(
                "{pair} is not stopped by a safety rule that --force-once can pass; \
                 `syncengine status {pair}` shows its state"
            ),
        }),
        other => json!({"ok": false, "error": other.to_string()}),
    };
    match cmd {
        "status" => {
            let pairs: Vec<Value> = service
                .statuses()
                .iter()
                .map(|(n, s)| control::status_json(n, s))
                .collect();
            json!({"ok": true, "pairs": pairs, "pid": std::process::id()})
        }
        "pause" => match service.pause(pair).await {
            Ok(()) => json!({
                "ok": true,
                "message": format!(
                    "{pair}: paused (a run in progress finishes its transfers in flight, then \
                     stops); `syncengine resume {pair}` resumes it"
                ),
            }),
            Err(e) => unknown(&e),
        },
        "resume" | "resume-force-once" => {
            let result = if cmd == "resume" {
                service.resume(pair).await
            } else {
                service.resume_force_once(pair).await
            };
            match result {
                Ok(()) => {
                    let mut message = format!("{pair}: resumed; a run starts now");
                    if config.pairs.get(pair).is_some_and(|p| p.paused) {
                        message.push_str(&format!(
                            " (paused = true in {} pauses it again when the watch restarts, or \
                             reloads the file with the pair changed; remove that line to resume \
                             it for good)",
                            config.path.display()
                        ));
                    }
                    json!({"ok": true, "message": message})
                }
                Err(e) => unknown(&e),
            }
        }
        other => json!({"ok": false, "error": format!("unknown request `{other}`")}),
    }
}

/// Prints a control reply's message or error; returns the exit status.
fn print_reply(command: &str, reply: &Value) -> u8 {
    if reply.get("ok").and_then(Value::as_bool) == Some(true) {
        if let Some(m) = reply.get("message").and_then(Value::as_str) {
            println!("{m}");
        }
        return EXIT_OK;
    }
    let error = reply
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("the watch refused the request");
    if reply.get("unknown_pair").is_some() || reply.get("not_stopped").is_some() {
        usage_error_in(command, error)
    } else {
        say(&format!("error: {error}"));
        EXIT_FAILED
    }
}

/// Runs `syncengine pause PAIR`.
pub(crate) fn run_pause(args: PauseArgs) -> u8 {
    set_paused("pause", &args.pair, args.state_dir.as_ref(), true, false)
}

/// Runs `syncengine resume PAIR`.
pub(crate) fn run_resume(args: ResumeArgs) -> u8 {
    set_paused(
        "resume",
        &args.pair,
        args.state_dir.as_ref(),
        false,
        args.force_once,
    )
}

/// `pause` and `resume`: through the running watch, else in the recorded state.
fn set_paused(
    command: &str,
    pair: &str,
    state_dir: Option<&PathBuf>,
    paused: bool,
    force_once: bool,
) -> u8 {
    let state_dir = match state_dir_of(state_dir, command) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let cmd = match (paused, force_once) {
        (true, _) => "pause",
        (false, false) => "resume",
        (false, true) => "resume-force-once",
    };
    // With no watch running, none starts until `_lock` is dropped: the recorded state
    // changed below is the one the next watch reads.
    let _lock = match control::request_or_lock(&state_dir, &json!({"cmd": cmd, "pair": pair})) {
        Ok(control::Reached::Reply(reply)) => return print_reply(command, &reply),
        Ok(control::Reached::NoWatch(lock)) => lock,
        Err(e) => {
            say(&format!("error: {e}"));
            return EXIT_FAILED;
        }
    };
    // No watch runs: the pair must be one the config file defines.
    let config = match run::need_config(command) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = config.select(&[pair.to_owned()]) {
        return usage_error_in(command, e);
    }
    if force_once {
        return usage_error_in(
            command,
            format!(
                "no `syncengine watch` is running with the state directory {}: --force-once \
                 acts on a pair a running watch has stopped. To sync the pair once past a \
                 safety stop without a watch, run its `syncengine sync` command with --force \
                 (or --accept-new-root SIDE)",
                state_dir.display()
            ),
        );
    }
    if let Err(e) = syncengine::service::set_paused(&state_dir, pair, paused) {
        say(&format!("error: {e}"));
        return EXIT_FAILED;
    }
    if paused {
        println!(
            "{pair}: paused (no `syncengine watch` is running with the state directory {}; the \
             next one starts it paused)",
            state_dir.display()
        );
    } else {
        let in_file = config.pairs.get(pair).is_some_and(|p| p.paused);
        println!(
            "{pair}: resumed (no `syncengine watch` is running with the state directory {}; \
             the next one runs it){}",
            state_dir.display(),
            if in_file {
                format!(
                    ", but paused = true in {} still pauses it: remove that line",
                    config.path.display()
                )
            } else {
                String::new()
            }
        );
    }
    EXIT_OK
}

/// Runs `syncengine status`.
pub(crate) fn run_status(args: StatusArgs) -> u8 {
    let state_dir = match state_dir_of(args.state_dir.as_ref(), "status") {
        Ok(d) => d,
        Err(code) => return code,
    };
    let config = match run::need_config("status") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let selected = match config.select(&args.pairs) {
        Ok(s) => s,
        Err(e) => return usage_error_in("status", e),
    };
    let (running, live) = match control::request(&state_dir, &json!({"cmd": "status"})) {
        Ok(Some(reply)) => (true, reply),
        Ok(None) => (
            false,
            control::read_status_file(&state_dir).unwrap_or(Value::Null),
        ),
        Err(e) => {
            say(&format!("warning: {e}; showing the last recorded status"));
            (
                false,
                control::read_status_file(&state_dir).unwrap_or(Value::Null),
            )
        }
    };
    let seen: BTreeMap<String, Value> = live
        .get("pairs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p.get("name")?.as_str()?.to_owned(), p.clone())))
                .collect()
        })
        .unwrap_or_default();
    let recorded = syncengine::service::paused_pairs(&state_dir).unwrap_or_default();
    let mut out = Vec::new();
    for pair in &selected {
        let mut entry = json!({
            "name": pair.name,
            "source": syncengine::redact::redact(&pair.source),
            "destination": syncengine::redact::redact(&pair.destination),
            "mode": pair.mode.to_string(),
            "paused": pair.paused || recorded.contains(&pair.name),
        });
        match seen.get(&pair.name) {
            Some(s) => {
                entry["live"] = json!(running);
                entry["status"] = s.clone();
                // A running watch knows: paused = true in the file, then `resume`, runs.
                if running && let Some(p) = s.get("paused").and_then(Value::as_bool) {
                    entry["paused"] = json!(p);
                }
            }
            None => {
                entry["live"] = json!(false);
                entry["status"] = Value::Null;
            }
        }
        out.push(entry);
    }
    if args.json {
        println!("{}", json!({"running": running, "pairs": out}));
        return EXIT_OK;
    }
    if running {
        let pid = live.get("pid").and_then(Value::as_u64).unwrap_or(0);
        println!("watch running (pid {pid}), state {}", state_dir.display());
    } else {
        println!(
            "no watch running with the state directory {}",
            state_dir.display()
        );
    }
    for entry in &out {
        println!("{}", status_text(entry, running));
    }
    EXIT_OK
}

/// One pair of `status`, as text.
fn status_text(entry: &Value, running: bool) -> String {
    let name = entry["name"].as_str().unwrap_or("");
    let paused = entry["paused"].as_bool().unwrap_or(false);
    let head = format!(
        "{name}: {} -> {} ({})",
        entry["source"].as_str().unwrap_or(""),
        entry["destination"].as_str().unwrap_or(""),
        entry["mode"].as_str().unwrap_or("")
    );
    let status = &entry["status"];
    if status.is_null() {
        let what = if running {
            "not run by this watch (not named on its command line, or not started: see its log)"
        } else {
            "never run by a watch"
        };
        return format!("{head}\n  {}{what}", if paused { "paused; " } else { "" });
    }
    let state = status["state"].as_str().unwrap_or("unknown");
    let mut lines = vec![head];
    let prefix = if running {
        ""
    } else {
        "when the watch stopped: "
    };
    let mut now = format!("  {prefix}{state}");
    if let Some(at) = status["retry_at"].as_u64() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(at);
        now.push_str(&format!(", next try {}", crate::output::utc_time(at)));
    }
    if paused && state != "paused" {
        now.push_str(" (paused)");
    }
    if let Some(since) = status["no_progress_since"].as_u64() {
        let since = SystemTime::UNIX_EPOCH + Duration::from_secs(since);
        now.push_str(&format!(
            ", no progress since {} (its storage does not answer?)",
            crate::output::utc_time(since)
        ));
    }
    match &status["watching"] {
        Value::String(w) => now.push_str(&format!(", {w}")),
        Value::Object(o) => {
            if let Some(r) = o.get("fell_back").and_then(Value::as_str) {
                now.push_str(&format!(", polled (watch failed: {r})"));
            }
        }
        _ => {}
    }
    lines.push(now);
    if let Some(stop) = status["stopped"].as_object() {
        lines.push(format!(
            "  stopped by a safety rule: {}",
            stop.get("message").and_then(Value::as_str).unwrap_or("")
        ));
        let force = stop.get("can_force").and_then(Value::as_bool) == Some(true);
        lines.push(format!(
            "  then: `syncengine resume {name}`{}",
            if force {
                format!(" or `syncengine resume {name} --force-once`")
            } else {
                String::new()
            }
        ));
    }
    if let Some(run) = status["last_run"].as_object() {
        let n = |k: &str| run.get(k).and_then(Value::as_u64).unwrap_or(0);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(n("finished_at"));
        lines.push(format!(
            "  last run {} ({:.1}s): {} uploaded, {} downloaded, {} deleted, {} renamed, {} \
             conflicts, {} errors",
            crate::output::utc_time(at),
            n("duration_ms") as f64 / 1000.0,
            n("uploaded"),
            n("downloaded"),
            n("deleted"),
            n("renamed"),
            n("conflicts"),
            n("errors")
        ));
    }
    if let Some(e) = status["last_error"].as_str() {
        lines.push(format!("  last error: {e}"));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_says_when_a_backing_off_pair_tries_again() {
        let entry = json!({
            "name": "p",
            "source": "/a",
            "destination": "s3://b/c",
            "mode": "two-way",
            "paused": false,
            "status": {
                "state": "backing-off",
                "retry_at": 1_796_506_290u64,
                "watching": "watched",
                "last_error": "s3: connection refused",
            },
        });
        let text = status_text(&entry, true);
        assert!(
            text.contains("backing-off, next try 2026-12-05T21:31:30Z"),
            "{text}"
        );
        assert!(
            text.contains("last error: s3: connection refused"),
            "{text}"
        );
    }
}
