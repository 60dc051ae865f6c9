//! The `syncengine` command-line tool: `syncengine sync <SOURCE> <DESTINATION> [OPTIONS]`.
//!
//! Exit status: 0 success, 1 the run failed or had errors, 2 usage error, 3 stopped by a
//! safety rule (max-delete, empty side, lock held, a root that is not the one recorded), 4 a
//! side could not be reached or logged into.

// The binary's own modules live beside it in `src/bin/syncengine/`.
#[path = "syncengine/check.rs"]
mod check;
#[path = "syncengine/children.rs"]
mod children;
#[cfg(unix)]
#[path = "syncengine/control.rs"]
mod control;
#[path = "syncengine/filters.rs"]
mod filters;
#[path = "syncengine/output.rs"]
mod output;
#[path = "syncengine/pairs.rs"]
mod pairs;
#[path = "syncengine/progress.rs"]
mod progress;
#[path = "syncengine/run.rs"]
mod run;
#[path = "syncengine/trash.rs"]
mod trash;
#[cfg(unix)]
#[path = "syncengine/watch.rs"]
mod watch;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{ArgAction, Args, Parser, Subcommand};
use syncengine::{
    AcceptNewRoot, ConflictLoser, ConflictStrategy, InitialSyncPreference, Recovery, Side,
    StorageClient, SyncEngine, SyncError, SyncMode, SyncOptions, SyncPair, SyncStats,
    default_state_dir,
};
use tokio_util::sync::CancellationToken;

use syncengine::location::{self, Location, LocationError};
use syncengine::timeouts::Timeouts;

/// Success.
const EXIT_OK: u8 = 0;
/// The run failed, was cancelled, or some actions failed.
const EXIT_FAILED: u8 = 1;
/// Bad command line.
const EXIT_USAGE: u8 = 2;
/// Stopped by a safety rule before changing anything.
const EXIT_SAFETY_STOP: u8 = 3;
/// Exit status: a side could not be reached or logged into (connection, credentials, missing
/// bucket), found by the check before the run reads anything.
const EXIT_UNREACHABLE: u8 = 4;

/// Set when Ctrl-C stops a sync run: `syncengine run` starts no further pair.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// `eprintln!` with every secret the core's redaction helper recognises replaced: nothing the
/// CLI prints shows a password, a signature or a token (see `syncengine::redact`).
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("{}", syncengine::redact::redact(&format!($($arg)*)))
    };
}

const SYNC_AFTER_HELP: &str = "\
MODES (--mode; case-insensitive, - and _ ignored; aliases in brackets):
  two-way [twoWay, tw]             changes flow both ways; conflicts resolved by --conflict
  source-to-destination [std, ltc] destination mirrors source; destination-only changes are undone
  source-backup [sb, lb]           upload, and download destination additions; never deletes
  destination-to-source [dts, ctl] source mirrors destination; source-only changes are undone
  destination-backup [db, cb]      download only; never uploads or deletes
  (also accepted: sourceToDestination, localtocloud, sourceBackup, localbackup,
   destinationToSource, cloudtolocal, destinationBackup, cloudbackup)

LOCATIONS:
  A local path or file:///path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix,
  webdav://host[:port]/path, webdavs://host[:port]/path, sftp://user@host[:port]/path.
  Remote schemes need the backend's cargo feature (s3, gcs, azure, webdav, sftp).
  NAME:path is the url of the remote NAME that the config file defines ([remotes.NAME], with
  its settings; see `syncengine run --help`) with /path appended; ./NAME:path is local.
  A missing local folder counts as empty; the first file written creates it.

CREDENTIALS:
  Never on the command line. S3 reads AWS_* (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
  AWS_REGION, AWS_ENDPOINT…), Google Cloud Storage reads GOOGLE_* (GOOGLE_APPLICATION_CREDENTIALS…),
  Azure reads AZURE_* (AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY…); WebDAV and SFTP
  read SYNCENGINE_* variables (see each backend's documentation). WebDAV never sends Basic
  credentials over plain webdav:// (HTTP) unless SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC=1;
  use webdavs:// or Digest instead. Trust your own CA with SYNCENGINE_WEBDAV_CA_FILE=PEM (or
  SSL_CERT_FILE); certificate checks stay on. No secret is ever printed: URL passwords,
  signatures and tokens show as <redacted>.

SAFETY AND RECOVERY:
  Nothing is deleted on the basis of a failed listing. A run that would delete more than
  --max-delete percent of either side, or that finds one side empty although it had files at
  the last sync, stops before changing anything (exit 3) unless --force is given. Only one run
  of a pair at a time (a second one exits 3). On every side, local or remote, deleted and
  overwritten files are moved to <root>/.syncengine/trash/<UTC time>/<path> (never synced) and
  kept --trash-keep days (default 30; 'forever' keeps them). On S3, Azure and GCS each trashed
  file costs a server-side copy and a delete request, and its storage for those days; use
  --no-trash on versioned buckets, whose versions already keep old copies. A root served as a
  website would publish its trash: a warning says so when a remote root has an index.html;
  --trash-dir URL keeps the trash elsewhere (URL/source/<UTC time>/<path> and
  URL/destination/<UTC time>/<path>, pruned the same way). --backup-dir URL receives them
  instead, in the same layout, and is never pruned. `syncengine trash list|restore|empty ROOT`
  lists the trash by run, puts files back (never overwriting) and empties old runs.
  Pair state is keyed by where each side really is (canonical local path; endpoint host:port,
  bucket and prefix; server host:port and canonical path), never by credentials, and each
  root gets a random id in <root>/.syncengine/root-id that the state records. A root that does
  not show the recorded id (another disk mounted at the same path, another server behind the
  same URL, a deleted and re-created folder, a state file copied from another pair) stops the
  run (exit 3) naming both ids; --accept-new-root source|destination|both accepts it: that
  run deletes nothing, copies what is missing and records the new id.
  Conflict losers are kept as <name>.conflict-<UTC time>-<side>.<ext> unless
  --conflict-loser delete. The state directory is never synced, even inside a synced folder.

PROTECTED SIDES:
  --protect source|destination: that side is never written or deleted, whatever the mode
  (Unison's -nocreation, -noupdate and -nodeletion for one root in one flag); nothing is
  written under its .syncengine/ either (no id file, no trash). What the run would have done
  there is counted as protected (\"protected\" in --json, the first few named in a warning)
  and not recorded, so each run reports it again. The protected side wins its conflicts: its
  version is copied to the other side, whose own version is kept there as the conflict loser.
  --mode source-backup --protect source is a backup that never touches the original: new and
  changed source files are uploaded, and a file edited on the destination keeps that edit
  (rclone copy would overwrite it with the source's version). The state directory, and a
  --backup-dir or --trash-dir, must lie outside a protected root. Protecting both sides is
  refused: use --dry-run.

FILTERS:
  Patterns use gitignore syntax: *.jpg matches at any depth, a pattern holding a / is anchored
  at the root (/todo.txt, docs/*.md), a trailing / matches folders only (build/), ** crosses
  folders, ! re-includes in excludes. Excludes come from --exclude, then --exclude-from files
  (in order; the last matching pattern wins), then each root's .syncignore; the command line
  wins over .syncignore. With --include, a file is synced only if it (or a folder above it)
  matches an include AND no exclude matches it: an exclude always wins, whatever the order
  on the command line (rclone tries includes first; here excludes are the safe side).
  Folders are always searched for included files. --max-size and --min-age look at each
  side's copy: when either copy is too large or too young, the path is skipped on both sides
  for the run. A filtered file is never copied, deleted, overwritten or renamed, and its
  last-sync record is kept: a file that grew past --max-size or was just edited is not read
  as deleted, and removing a filter later syncs what changed meanwhile as an ordinary edit.
  Skipped files count in \"skipped\".

OUTPUT:
  Progress bars on stderr when it is a terminal (not with --json or -q, unless --progress;
  --progress without a terminal prints one plain status line a second instead). --stats 30s
  prints a one-line status on stderr every 30 s while the bars are off (cron, logs). Nothing
  printed into a file or a pipe holds colour codes.
  --dry-run lists every planned action on stdout, grouped (uploads, downloads, renames
  old → new, conflicts with their winner and the name the loser would be kept under, deletes
  per side; YYYYMMDDTHHMMSSZ stands for the run's time), then the summary. -v prints each
  action on stderr as it completes, and each failed file as it fails; --log-file FILE
  appends them, the warnings, the errors and the summary to FILE (UTC times), whatever -v
  or -q say. Without -v, failures are summarised once the run ends: one line per cause with
  its count and first three paths.
  When the run ends, a one-line summary on stdout (it names up to 5 conflicts and what went
  to the trash), or with --json exactly one JSON object on stdout:
  {\"uploaded\", \"downloaded\", \"deleted_source\", \"deleted_destination\", \"renamed_source\",
  \"renamed_destination\", \"conflicts\", \"skipped\", \"errors\", \"unknown\", \"protected\",
  \"bytes_uploaded\", \"bytes_downloaded\", \"trashed_files\", \"trashed_bytes\", \"dry_run\",
  \"warnings\": [..], \"conflict_paths\": [..], \"error_list\": [{\"path\", \"side\", \"message\"}]}
  --json --list puts \"actions\": [{\"path\", \"side\", \"action\"}, ..] first (planned in a dry
  run, done in a real run; \"from\" for renames, \"winner\" and \"kept_as\" for conflicts),
  written as the actions come. A run that fails or stops prints {\"error\", \"exit_status\"}
  (after \"actions\" with --list) instead. Warnings, errors and logs go to stderr.

EXIT STATUS:
  0  success
  1  the run failed, was cancelled (Ctrl-C), or some files failed; also a side lost in the
     middle of the run (what was done is recorded; run again once it is back)
  2  usage error (bad option, unknown mode or URL scheme, backend not compiled in)
  3  stopped by a safety rule: --max-delete, an empty side, another run holds the pair's lock,
     or a root is not the storage the pair's state recorded (see --accept-new-root)
  4  a side could not be reached or logged into: connection refused, host not found, TLS
     certificate error, wrong credentials, missing bucket or container (nothing was changed)

EXAMPLES:
  Keep two folders in sync both ways:
    syncengine sync ~/notes /mnt/usb/notes
  See what a mirror would do, without changing anything:
    syncengine sync ./site /srv/www --mode source-to-destination --dry-run
  Back up photos to S3 (never deletes), skipping raw files:
    syncengine sync ~/photos s3://my-bucket/photos --mode source-backup --exclude '*.raw'
  Only photos, anywhere below the root, none over 200 MiB, none still being written:
    syncengine sync ~/pics s3://my-bucket/pics --include '*.jpg' --max-size 200M --min-age 10m
  Excludes kept in a file (one pattern per line, # comments):
    syncengine sync ~/code /mnt/backup/code --mode source-backup --exclude-from ~/.sync-excludes
  First sync where the destination is authoritative (a restore):
    syncengine sync ./vault sftp://me@nas:2222/vault --initial destination-wins
  Back up a folder without ever writing to it (destination edits stay where they are):
    syncengine sync ~/photos /mnt/backup/photos --mode source-backup --protect source
  Machine-readable result:
    syncengine sync ./a ./b --json -q
  Every planned action, for a script:
    syncengine sync ./a ./b --dry-run --json --list
  Nightly from cron, each action logged, a status line every 5 minutes:
    syncengine sync ~/docs s3://bucket/docs -q --log-file ~/sync.log --stats 5m
";

/// Keep two storage locations in sync: two-way, mirror and backup modes, with conflict
/// resolution and persisted state.
#[derive(Debug, Parser)]
#[command(name = "syncengine", version, propagate_version = true)]
struct Cli {
    /// More on stderr: each action as it completes, each failure as it happens, and logs
    /// (-v debug, -vv trace; RUST_LOG overrides the logs).
    #[arg(short, long, action = ArgAction::Count, global = true, display_order = 100)]
    verbose: u8,
    /// Print only errors: no progress, no warnings, no summary (--json still prints).
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        display_order = 100
    )]
    quiet: bool,
    /// The config file (remotes for NAME:path locations, pairs for `run`) [default:
    /// $SYNCENGINE_CONFIG, else $XDG_CONFIG_HOME/syncengine/config.toml, else
    /// ~/.config/syncengine/config.toml].
    // SYNCENGINE_CONFIG is read by `run::set_config_path`, not by clap: set but empty, it means
    // the default, instead of a usage error for every command.
    #[arg(long, value_name = "PATH", global = true, display_order = 100)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sync SOURCE and DESTINATION once, in one of five modes.
    // Boxed: its many flags make it far larger than the other variants.
    #[command(after_help = SYNC_AFTER_HELP)]
    Sync(Box<SyncArgs>),
    /// Remove what killed or interrupted runs left under URL: the engine's temp files
    /// (local, SFTP, WebDAV) and unfinished multipart uploads (S3).
    #[command(after_help = CLEANUP_AFTER_HELP)]
    Cleanup(CleanupArgs),
    /// List, restore or empty the trash of ROOT: the files sync runs deleted or overwrote
    /// there.
    #[command(after_help = trash::AFTER_HELP)]
    Trash(trash::TrashArgs),
    /// Verify that SOURCE and DESTINATION hold the same files with the same content,
    /// changing nothing (exit 0 when equal, 1 otherwise).
    #[command(after_help = check::CHECK_AFTER_HELP)]
    Check(check::CheckArgs),
    /// List the pairs known in the state directory; `pairs show` details one, `pairs forget`
    /// drops its state.
    #[command(after_help = pairs::PAIRS_AFTER_HELP)]
    Pairs(pairs::PairsArgs),
    /// Sync the pairs of the config file once each ([pairs.NAME]; all of them by default, in
    /// name order) and exit with the worst status.
    #[command(after_help = run::RUN_AFTER_HELP)]
    Run(run::RunArgs),
    /// Keep the pairs of the config file in sync until stopped: local roots watched, remote
    /// ones polled; SIGHUP reloads the file.
    #[cfg(unix)]
    #[command(after_help = watch::WATCH_AFTER_HELP)]
    Watch(watch::WatchArgs),
    /// Pause a pair of the running `syncengine watch` (kept across restarts).
    #[cfg(unix)]
    #[command(after_help = watch::PAUSE_AFTER_HELP)]
    Pause(watch::PauseArgs),
    /// Resume a paused pair, or one stopped by a safety rule.
    #[cfg(unix)]
    #[command(after_help = watch::RESUME_AFTER_HELP)]
    Resume(watch::ResumeArgs),
    /// Show the config file's pairs: what the running watch does with them, or what the
    /// last one saw.
    #[cfg(unix)]
    #[command(after_help = watch::STATUS_AFTER_HELP)]
    Status(watch::StatusArgs),
}

const CLEANUP_AFTER_HELP: &str = "\
WHAT IS REMOVED:
  Only leftovers of the engine's own interrupted writes, under URL only, and only those
  older than --older-than (default 24h; a younger one may be a write still in progress, here
  or on another machine syncing with the same root):
  - local folders, SFTP and WebDAV: temp files named exactly .syncengine-tmp-<16 hex digits>
    (the name every atomic write uses before it renames the file into place), by their last
    modification (or access) time. A file that only resembles that name is left alone.
  - S3: multipart uploads under the URL's prefix that were started and never completed (a
    killed upload's parts stay stored, and billed, until they are aborted), by the time
    they were started. S3 does not record which program started an upload, so this aborts
    every one under the prefix older than --older-than, another tool's included: one still
    running after that long fails (its completed objects are never touched). rclone's
    cleanup does the same with the same 24h default; give a longer age if other tools make
    day-long uploads under the prefix.
  Never removed: any other file or object, the trash (.syncengine/trash/, pruned by age by
  sync runs) and the pair state. Azure and GCS have nothing to clean (the services expire
  uncommitted uploads themselves). Sync runs already remove temp files a day old that their
  listings come across; this command also reaches folders that are excluded or not synced.

OUTPUT:
  One line per leftover on stdout (\"removed ...\", or \"would remove ...\" with --dry-run),
  then a summary line. Failed removals go to stderr as errors. -q prints errors only.

EXIT STATUS:
  0  success (also when there was nothing to remove)
  1  a leftover could not be removed, the root could not be listed, or Ctrl-C
  2  usage error (bad option or duration, unknown URL scheme, backend not compiled in)
  4  the root could not be reached or logged into (nothing was removed)

EXAMPLES:
  See what a week-old crash left in a bucket prefix:
    syncengine cleanup s3://my-bucket/photos --older-than 7d --dry-run
  Remove temp files an hour old from a folder no other machine writes to:
    syncengine cleanup ~/notes --older-than 1h
";

/// The `cleanup` subcommand's arguments.
#[derive(Debug, Args)]
struct CleanupArgs {
    /// The root to clean: a local path or a URL, as for sync (see `syncengine sync --help`,
    /// LOCATIONS).
    #[arg(value_name = "URL")]
    root: String,
    /// Remove only leftovers untouched (temp files) or started (multipart uploads) longer
    /// ago than this. Units: ms, s, m, h, d (e.g. 90m, 7d).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration_arg)]
    older_than: Duration,
    /// Only list what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    timeouts: TimeoutArgs,
}

/// `--timeout` and `--contimeout`, shared by `sync` and `cleanup`.
#[derive(Debug, Args)]
struct TimeoutArgs {
    /// Fail a request to a remote side after this long without progress (no byte sent or
    /// received), then retry it; never a limit on a whole transfer. Default 5m, or
    /// SYNCENGINE_TIMEOUT. Units: ms, s, m, h (e.g. 90s, 10m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    timeout: Option<Duration>,
    /// Give up connecting to a remote side after this long. Default 60s, or
    /// SYNCENGINE_CONTIMEOUT.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    contimeout: Option<Duration>,
}

/// The `sync` subcommand's arguments.
#[derive(Debug, Args)]
struct SyncArgs {
    /// The source: a local path or a URL (see LOCATIONS).
    #[arg(value_name = "SOURCE")]
    source: String,
    /// The destination: a local path or a URL (see LOCATIONS).
    #[arg(value_name = "DESTINATION")]
    destination: String,
    /// How the two sides relate (see MODES).
    #[arg(long, value_name = "MODE", default_value = "two-way", value_parser = parse_mode)]
    mode: SyncMode,
    /// First two-way sync of the pair: merge (copy both ways, delete nothing; the default),
    /// source-wins or destination-wins (that side becomes authoritative).
    #[arg(long, value_name = "PREFERENCE", value_parser = parse_initial)]
    initial: Option<InitialSyncPreference>,
    /// Who wins when both sides changed a file: newest-wins (newer mtime; tie → source),
    /// source-wins, destination-wins, or keep-both (both kept under conflict names).
    #[arg(long, value_name = "STRATEGY", default_value = "newest-wins", value_parser = parse_conflict)]
    conflict: ConflictStrategy,
    /// What happens to a conflict's losing version: keep (renamed aside) or delete.
    #[arg(long, value_name = "POLICY", default_value = "keep", value_parser = parse_loser)]
    conflict_loser: ConflictLoser,
    #[command(flatten)]
    filters: filters::FilterArgs,
    /// Where pair state is kept [default: $SYNCENGINE_STATE_DIR, else
    /// $XDG_STATE_HOME/syncengine, else ~/.local/state/syncengine].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Plan and report what would be done; change neither side nor the state.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as one JSON object on stdout (see OUTPUT).
    #[arg(long)]
    json: bool,
    /// With --json: add the actions (planned in a dry run, done in a real run) as
    /// "actions": [{"path", "side", "action"}, …].
    #[arg(long, requires = "json")]
    list: bool,
    /// Also write each action, warning and error to FILE (appended; UTC times; no colour
    /// codes), whatever -v or -q say. Not inside a synced local root (except its
    /// .syncengine/ folder).
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Show the live progress display even with --json or -q; without a terminal, one
    /// plain status line a second instead.
    #[arg(long)]
    progress: bool,
    /// Print a one-line status on stderr every DURATION (e.g. 30s, 5m) while the live
    /// display is off (cron jobs, logs).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    stats: Option<Duration>,
    /// Actions in flight at once [default: 8; 32 between two local folders; 64 with an S3,
    /// Azure or GCS side].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    transfers: Option<u64>,
    /// Limit transfers to RATE bytes per second, in rclone's form: RATE each way or UP:DOWN
    /// (UP = sent to a remote side, DOWN = received from one; in a local-to-local pair, to
    /// and from the destination), binary units, a bare number in KiB/s, off (or 0, as in
    /// rclone) = no limit.
    /// Examples: 1M, 10M:off, 512k:2M.
    #[arg(long, value_name = "RATE", value_parser = str::parse::<syncengine::bandwidth::BandwidthLimit>)]
    bwlimit: Option<syncengine::bandwidth::BandwidthLimit>,
    /// Stop before changing anything if the run would delete more than PERCENT of the files
    /// on either side.
    #[arg(long, value_name = "PERCENT", default_value_t = 50,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    max_delete: u8,
    /// Override the safety stops (--max-delete, empty side). Not the lock.
    #[arg(long)]
    force: bool,
    /// Compare content hashes, not just size and modification time.
    #[arg(long)]
    checksum: bool,
    /// Delete and overwrite files outright on both sides instead of moving them to the trash
    /// (for versioned buckets).
    #[arg(long, conflicts_with_all = ["backup_dir", "trash_dir"])]
    no_trash: bool,
    /// Move deleted and overwritten files of both sides to URL/source/… and
    /// URL/destination/… instead of the trash; never pruned (see SAFETY AND RECOVERY).
    #[arg(long, value_name = "URL", conflicts_with = "trash_dir")]
    backup_dir: Option<String>,
    /// Keep the trash of both sides at URL/source/… and URL/destination/… instead of under
    /// each root (e.g. for a root served as a website); pruned like the trash.
    #[arg(long, value_name = "URL")]
    trash_dir: Option<String>,
    /// Remove trash folders older than DAYS at the end of each run; 'forever' keeps them.
    #[arg(long, value_name = "DAYS|forever", default_value = "30", value_parser = parse_trash_keep)]
    trash_keep: TrashKeep,
    /// Sort listings in the engine from the first run even when a backend claims ordered
    /// listings. Not needed to make a run work: a listing caught out of order is sorted and
    /// planned again by itself, with a note, and the pair remembers it.
    #[arg(long)]
    sort_listings: bool,
    #[command(flatten)]
    timeouts: TimeoutArgs,
    /// Accept a root that is not the storage this pair last synced with (source, destination
    /// or both): this run ignores the old state, deletes nothing, and records the new root.
    #[arg(long, value_name = "SIDE", value_parser = parse_accept)]
    accept_new_root: Option<AcceptNewRoot>,
    /// Never write to SIDE (source or destination), whatever the mode: no copy, delete,
    /// rename, trash or conflict copy there, nothing under its .syncengine/ either. What the
    /// run would have changed there is reported as protected (not recorded: the next run
    /// reports it again); the protected side wins its conflicts (see PROTECTED SIDES).
    #[arg(long, value_name = "SIDE", value_parser = parse_protect, action = ArgAction::Append)]
    protect: Vec<Side>,
}

/// How long trash folders are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TrashKeep {
    /// Pruned after this many days.
    Days(u32),
    /// Never pruned.
    Forever,
}

/// Parses `--trash-keep`: a number of days, or `forever`.
fn parse_trash_keep(s: &str) -> Result<TrashKeep, String> {
    if s.eq_ignore_ascii_case("forever") {
        return Ok(TrashKeep::Forever);
    }
    s.parse()
        .map(TrashKeep::Days)
        .map_err(|_| format!("expected a number of days or 'forever', got {s:?}"))
}

/// Parses `--mode` with every alias of [`SyncMode::from_str`](std::str::FromStr).
fn parse_mode(s: &str) -> Result<SyncMode, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_initial(s: &str) -> Result<InitialSyncPreference, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_conflict(s: &str) -> Result<ConflictStrategy, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_loser(s: &str) -> Result<ConflictLoser, String> {
    s.parse().map_err(|e| format!("{e}"))
}

/// Parses `--protect`: `source` or `destination`.
fn parse_protect(s: &str) -> Result<Side, String> {
    match s.to_ascii_lowercase().as_str() {
        "source" | "src" => Ok(Side::Source),
        "destination" | "dest" | "dst" => Ok(Side::Destination),
        "both" => Err(BOTH_PROTECTED.to_owned()),
        _ => Err(format!("expected source or destination, got {s:?}")),
    }
}

/// Why both sides cannot be protected.
const BOTH_PROTECTED: &str = "both sides protected: the run could change nothing; use \
    --dry-run to see what it would do";

fn parse_accept(s: &str) -> Result<AcceptNewRoot, String> {
    s.parse()
}

/// How chatty the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verbosity {
    Quiet,
    Normal,
    Verbose(u8),
}

fn main() -> ExitCode {
    // clap prints its own errors and exits 2 (0 for --help and --version); with --json a
    // usage error also prints its JSON object, so that scripts have one to parse.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let args: Vec<_> = std::env::args_os().collect();
            // The global options: -v and -q take no value, --config takes one (unless written
            // --config=PATH); the first other word is the command.
            let mut words = args.iter().skip(1);
            let mut command = None;
            while let Some(a) = words.next() {
                if a == "--config" {
                    words.next();
                } else if !a.to_string_lossy().starts_with('-') {
                    command = Some(a);
                    break;
                }
            }
            let json_command = command.is_some_and(|c| c == "sync" || c == "check" || c == "pairs");
            let sync_json = json_command && args.iter().any(|a| a == "--json");
            if e.use_stderr() && sync_json {
                let first = e.kind().to_string();
                let text = e.to_string();
                let message = text
                    .lines()
                    .next()
                    .map_or(first, |l| l.trim_start_matches("error: ").to_owned());
                output::print_json_failure(&message, EXIT_USAGE, false);
            }
            e.exit()
        }
    };
    // Children a shell handed over by exec'ing the tool are not ours to end at exit.
    let inherited = children::inherited();
    let verbosity = match (cli.quiet, cli.verbose) {
        (true, _) => Verbosity::Quiet,
        (false, 0) => Verbosity::Normal,
        (false, n) => Verbosity::Verbose(n),
    };
    init_logging(verbosity);
    run::set_config_path(cli.config);
    let code = match cli.command {
        Command::Sync(args) => run_sync(*args, verbosity),
        Command::Cleanup(args) => run_cleanup(args, verbosity),
        Command::Trash(args) => trash::run(args, verbosity),
        Command::Check(args) => check::run_check(args, verbosity),
        Command::Pairs(args) => pairs::run_pairs(args, verbosity),
        Command::Run(args) => run::run_pairs(args, verbosity),
        #[cfg(unix)]
        Command::Watch(args) => watch::run_watch(args, verbosity),
        #[cfg(unix)]
        Command::Pause(args) => watch::run_pause(args),
        #[cfg(unix)]
        Command::Resume(args) => watch::run_resume(args),
        #[cfg(unix)]
        Command::Status(args) => watch::run_status(args),
    };
    // A credential_process the run stopped waiting for would outlive it.
    children::end_abandoned(&inherited);
    ExitCode::from(code)
}

/// Logs go to stderr: warnings by default, debug (-v) or trace (-vv) for syncengine's own
/// crates, errors only with -q. `RUST_LOG` wins when set.
fn init_logging(verbosity: Verbosity) {
    use tracing_subscriber::EnvFilter;
    let default = match verbosity {
        // The AWS SDK's own logs stay off: they quote a failing credential_process's
        // stderr, which may hold secrets; the error the run prints says what failed.
        Verbosity::Quiet => "error,aws_config=off",
        Verbosity::Normal => "warn,aws_config=off",
        // Target directives match by prefix: `syncengine` covers syncengine_core and the
        // backend crates too.
        Verbosity::Verbose(1) => "warn,aws_config=off,syncengine=debug",
        Verbosity::Verbose(_) => "warn,aws_config=off,syncengine=trace",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v).unwrap_or_else(|_| EnvFilter::new(default)),
        _ => EnvFilter::new(default),
    };
    // Fails only if a subscriber is already set, which nothing else here does.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactingStderr(Vec::new()))
        .with_target(matches!(verbosity, Verbosity::Verbose(_)))
        // Colour codes only for a person at a terminal, never into a file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// A log line on its way to stderr: collected whole, then written with its secrets replaced
/// (the subscriber makes one writer per event).
struct RedactingStderr(Vec<u8>);

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactingStderr {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        // Nowhere to report a failed write to stderr.
        let _ = std::io::stderr().write_all(syncengine::redact::redact(&text).as_bytes());
    }
}

/// Prints a usage error in clap's style and returns exit status 2.
fn usage_error(msg: impl std::fmt::Display) -> u8 {
    usage_error_in("sync", msg)
}

/// [`usage_error`] for the subcommand `command`.
fn usage_error_in(command: &str, msg: impl std::fmt::Display) -> u8 {
    say!("error: {msg}\n\nFor more information, try 'syncengine {command} --help'.");
    EXIT_USAGE
}

/// One side, parsed and opened.
pub(crate) struct Opened {
    location: Location,
    client: Arc<dyn StorageClient>,
}

/// Parses a location argument and opens its client; local paths are made absolute (see
/// [`location::normalize_local`]). A missing local folder is left to the engine, which refuses
/// it where it would read from it and otherwise lets the first write create it, on a pair's
/// first run only (a dry run creates nothing).
/// Reads a `--timeout`, `--contimeout`, `--min-age` or `--older-than` value.
fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    syncengine::timeouts::parse_duration(text)
}

/// The timeouts for remote sides: the environment's, then the flags'.
fn timeouts_of(args: &TimeoutArgs) -> Result<Timeouts, (u8, String)> {
    let mut t = Timeouts::from_env().map_err(|e| (EXIT_USAGE, e))?;
    if let Some(d) = args.timeout {
        t.idle = d;
    }
    if let Some(d) = args.contimeout {
        t.connect = d;
    }
    Ok(t)
}

fn open_side(what: &str, arg: &str, timeouts: Timeouts) -> Result<Opened, (u8, String)> {
    // `NAME:path` through the config file's remotes, with their settings.
    let resolved = run::resolve(arg).map_err(|e| (EXIT_USAGE, format!("{what}: {e}")))?;
    let mut loc = resolved.location;
    if let Location::Local(path) = &loc {
        if path.exists() && !path.is_dir() {
            return Err((
                EXIT_USAGE,
                format!("{what}: {} is not a directory", path.display()),
            ));
        }
        loc = Location::Local(location::normalize_local(path));
    }
    let client = location::open_with_settings(&loc, timeouts, &resolved.settings).map_err(|e| {
        let code = match e {
            LocationError::UnknownScheme { .. }
            | LocationError::MissingFeature { .. }
            | LocationError::RemoteName { .. }
            | LocationError::Invalid { .. } => EXIT_USAGE,
            LocationError::CannotLogIn { .. } => EXIT_UNREACHABLE,
        };
        let what = match (code, what.starts_with("the ")) {
            (EXIT_UNREACHABLE, true) => format!("cannot reach {what}"),
            (EXIT_UNREACHABLE, false) => format!("cannot reach the {what}"),
            _ => what.to_owned(),
        };
        (code, format!("{what}: {e}"))
    })?;
    Ok(Opened {
        location: loc,
        client,
    })
}

/// Refuses a local backup or trash folder that lies inside a synced local root (outside its
/// `.syncengine/` folder), or that contains one: backups would be synced, or the root would
/// receive backups.
fn check_backup_overlap(flag: &str, backup: &Path, roots: &[&Location]) -> Result<(), String> {
    let backup = location::normalize_local(backup);
    for root in roots.iter().filter_map(|r| r.local_path()) {
        let inside_root = backup.starts_with(root) && !backup.starts_with(root.join(".syncengine"));
        if inside_root || root.starts_with(&backup) {
            return Err(format!(
                "{flag} {} overlaps the synced folder {}; put it outside both roots \
                 (or under the root's .syncengine/ folder)",
                backup.display(),
                root.display()
            ));
        }
    }
    Ok(())
}

/// Refuses a `--log-file` inside a synced local root (outside its `.syncengine/` folder),
/// before the file is created: the log would be synced like any file, a run could overwrite
/// (and trash) the log it is writing, and every run would trash one more copy of it.
/// A log file under a protected root is refused even in its `.syncengine/` folder (that side
/// gets nothing). The log's path is followed through symlinks, a dangling one included: the
/// file is created where the link points.
fn check_log_overlap(args: &SyncArgs) -> Result<(), String> {
    let Some(log) = &args.log_file else {
        return Ok(());
    };
    let log = follow_links(log);
    let mut roots = Vec::new();
    for (side, arg) in [
        (Side::Source, &args.source),
        (Side::Destination, &args.destination),
    ] {
        let Ok(Location::Local(path)) = run::resolve(arg).map(|r| r.location) else {
            continue;
        };
        let root = location::normalize_local(&path);
        if args.protect.contains(&side) && location::normalize_local(&log).starts_with(&root) {
            return Err(format!(
                "--log-file {} is inside the protected {side} root {}, which is never written \
                 (not even its .syncengine/ folder); put the log outside both roots",
                log.display(),
                root.display()
            ));
        }
        roots.push(Location::Local(root));
    }
    check_backup_overlap("--log-file", &log, &roots.iter().collect::<Vec<_>>())
}

/// `path` with every symlink at its end followed, dangling ones included (relative targets
/// from the link's folder); gives up after 40 links, as the kernel does.
fn follow_links(path: &Path) -> PathBuf {
    let mut path = path.to_path_buf();
    for _ in 0..40 {
        let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        let Some(target) = is_link.then(|| std::fs::read_link(&path).ok()).flatten() else {
            break;
        };
        path = match path.parent() {
            Some(parent) => parent.join(target),
            None => target,
        };
    }
    path
}

/// Refuses a remote backup or trash folder that lies inside a synced remote root (outside its
/// `.syncengine/` folder), or that contains one, and two remote roots that are the same folder
/// or nested: the trash would be synced back as user files, or every run would copy the tree
/// into itself again. URLs are compared by their path segments
/// ([`Location::remote_segments`]).
fn check_remote_overlap(
    what: &str,
    backup: &Location,
    roots: &[&Location],
    allow_own_dir: bool,
) -> Result<(), String> {
    let Some((scheme, inner)) = backup.remote_segments() else {
        return Ok(());
    };
    for root in roots {
        let Some((root_scheme, outer)) = root.remote_segments() else {
            continue;
        };
        if root_scheme != scheme {
            continue;
        }
        let inside_root = inner.starts_with(&outer)
            && !(allow_own_dir && inner.get(outer.len()).is_some_and(|s| s == ".syncengine"));
        if inside_root || outer.starts_with(&inner) {
            return Err(format!(
                "{what} {backup} overlaps the synced folder {root}; put it outside both roots \
                 (or under the root's .syncengine/ folder)"
            ));
        }
    }
    Ok(())
}

/// Refuses two local roots that are the same folder or nested: the outer root's listing would
/// contain the inner one, and every run would copy the tree into itself again.
fn check_roots_apart(source: &Path, destination: &Path) -> Result<(), String> {
    let (s, d) = (
        location::normalize_local(source),
        location::normalize_local(destination),
    );
    if s.starts_with(&d) || d.starts_with(&s) {
        return Err(format!(
            "the source {} and the destination {} are the same folder or one contains the \
             other; choose two separate folders",
            s.display(),
            d.display()
        ));
    }
    Ok(())
}

/// Runs `syncengine sync` and returns the exit status.
fn run_sync(args: SyncArgs, verbosity: Verbosity) -> u8 {
    let Some(state_dir) = args.state_dir.clone().or_else(default_state_dir) else {
        return sync_failed(
            &args,
            EXIT_USAGE,
            "no state directory: pass --state-dir DIR or set SYNCENGINE_STATE_DIR \
             (neither XDG_STATE_HOME nor HOME is set)",
        );
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return sync_failed(
                &args,
                EXIT_FAILED,
                format!("cannot start the async runtime: {e}"),
            );
        }
    };
    let code = runtime.block_on(sync_async(args, state_dir, verbosity));
    runtime.shutdown_timeout(EXIT_WAIT);
    code
}

/// How long a command that has ended waits for calls still running on blocking threads
/// before it exits without them, as a kill would stop them: those of a run dropped on
/// Ctrl-C, where a listing of a hung mount never ends. Dropping the runtime waited for them
/// for good, and Ctrl-C, no longer listened to, could not end the program.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Reports a sync that failed before it ran (usage error, unreachable side): the message on
/// stderr, and with --json the JSON object with `error` and `exit_status` on stdout. Returns
/// the exit status.
fn sync_failed(args: &SyncArgs, code: u8, msg: impl std::fmt::Display) -> u8 {
    if args.json {
        output::print_json_failure(&msg.to_string(), code, false);
    }
    if code == EXIT_USAGE {
        usage_error(msg)
    } else {
        say!("error: {msg}");
        code
    }
}

/// Opens a pair's two sides, refusing roots that are the same folder or nested (local or
/// remote).
pub(crate) fn open_sides(
    source: &str,
    destination: &str,
    timeouts: Timeouts,
) -> Result<(Opened, Opened), (u8, String)> {
    let source = open_side("source", source, timeouts)?;
    let destination = open_side("destination", destination, timeouts)?;
    if let (Some(s), Some(d)) = (
        source.location.local_path(),
        destination.location.local_path(),
    ) {
        check_roots_apart(s, d).map_err(|e| (EXIT_USAGE, e))?;
    }
    check_remote_overlap(
        "the source",
        &source.location,
        &[&destination.location],
        false,
    )
    .map_err(|e| (EXIT_USAGE, e))?;
    Ok((source, destination))
}

/// Builds the pair from the arguments, or returns the exit status and message of the failure.
fn build_pair(args: &SyncArgs) -> Result<SyncPair, (u8, String)> {
    // The filters first: a typo in a pattern is a usage error before anything is opened.
    let filtered = args
        .filters
        .apply(SyncOptions::default())
        .map_err(|e| (EXIT_USAGE, e))?;
    let timeouts = timeouts_of(&args.timeouts)?;
    let (source, destination) = open_sides(&args.source, &args.destination, timeouts)?;

    let mut options = filtered
        .with_conflict(args.conflict)
        .with_conflict_loser(args.conflict_loser)
        .with_dry_run(args.dry_run)
        .with_max_delete_percent(args.max_delete)
        .with_force(args.force)
        .with_checksum(args.checksum)
        .with_sort_listings(args.sort_listings);
    // Not given: the engine takes the larger of its default and the sides' own preference
    // (`SyncOptions::transfers_for`).
    if let Some(n) = args.transfers {
        // The parser bounds it to 1..=1024, so it fits in usize on every platform.
        options = options.with_transfers(usize::try_from(n).unwrap_or(usize::MAX));
    }
    if let Some(p) = args.initial {
        options = options.with_initial_preference(p);
    }
    options = match args.trash_keep {
        TrashKeep::Days(days) => options.with_trash_keep_days(days),
        TrashKeep::Forever => options.with_trash_kept_forever(),
    };
    if let Some(sides) = args.accept_new_root {
        options = options.with_accept_new_root(sides);
    }
    for side in &args.protect {
        options = options.with_protected(*side);
    }
    if options.is_protected(Side::Source) && options.is_protected(Side::Destination) {
        return Err((EXIT_USAGE, format!("--protect: {BOTH_PROTECTED}")));
    }
    if args.no_trash {
        options = options
            .with_recovery(Side::Source, Recovery::None)
            .with_recovery(Side::Destination, Recovery::None);
    }
    let elsewhere = [
        (
            "--backup-dir",
            &args.backup_dir,
            Recovery::BackupDir as fn(_) -> _,
        ),
        (
            "--trash-dir",
            &args.trash_dir,
            Recovery::TrashDir as fn(_) -> _,
        ),
    ];
    for (flag, url, recovery) in elsewhere {
        let Some(url) = url else { continue };
        let resolved = run::resolve(url).map_err(|e| (EXIT_USAGE, format!("{flag}: {e}")))?;
        let base = resolved.location;
        if let Some(path) = base.local_path() {
            check_backup_overlap(flag, path, &[&source.location, &destination.location])
                .map_err(|e| (EXIT_USAGE, e))?;
        }
        // Not even under a protected root's .syncengine/ folder: that side gets nothing.
        for (side, root) in [
            (Side::Source, &source.location),
            (Side::Destination, &destination.location),
        ] {
            let local_inside = base
                .local_path()
                .zip(root.local_path())
                .is_some_and(|(b, r)| location::normalize_local(b).starts_with(r));
            let remote_inside = check_remote_overlap(flag, &base, &[root], false).is_err();
            if options.is_protected(side) && (local_inside || remote_inside) {
                return Err((
                    EXIT_USAGE,
                    format!(
                        "{flag} {base} is inside the protected {side} root {root}, which is \
                         never written (not even its .syncengine/ folder); put it outside both \
                         roots"
                    ),
                ));
            }
        }
        check_remote_overlap(
            flag,
            &base,
            &[&source.location, &destination.location],
            true,
        )
        .map_err(|e| (EXIT_USAGE, e))?;
        for side in [Side::Source, Side::Destination] {
            let loc = base.join(side.as_str());
            let client = location::open_with_settings(&loc, timeouts, &resolved.settings)
                .map_err(|e| (EXIT_USAGE, format!("{flag}: {e}")))?;
            options = options.with_recovery(side, recovery(client));
        }
    }
    Ok(SyncPair::new(source.client, destination.client, args.mode).with_options(options))
}

async fn sync_async(args: SyncArgs, state_dir: PathBuf, verbosity: Verbosity) -> u8 {
    if let Err(e) = check_log_overlap(&args) {
        return sync_failed(&args, EXIT_USAGE, e);
    }
    let log = match args.log_file.as_deref().map(output::LogFile::open) {
        Some(Err(e)) => return sync_failed(&args, EXIT_USAGE, e),
        Some(Ok(log)) => Some(log),
        None => None,
    };
    let pair = match build_pair(&args) {
        Ok(p) => p,
        Err((code, msg)) => return sync_failed(&args, code, msg),
    };

    let cancel = CancellationToken::new();
    let mut engine = SyncEngine::new(&state_dir).with_cancellation(cancel.clone());
    if let Some(limit) = args.bwlimit {
        engine = engine.with_bandwidth(syncengine::bandwidth::Bandwidth::new(limit));
    }
    let (progress_tx, progress_rx) = tokio::sync::mpsc::unbounded_channel();
    engine = engine.with_progress(progress_tx);
    // A dry run's plan comes through a bounded channel: the engine waits while the printing
    // catches up, so a long plan is never copied into the channel.
    let (listing_tx, listing_rx) = tokio::sync::mpsc::channel(256);
    if args.dry_run {
        engine = engine.with_listing(listing_tx);
    } else {
        drop(listing_tx);
    }
    let renderer = tokio::spawn(output::run(
        output_config(&args, verbosity, log),
        progress_rx,
        listing_rx,
    ));

    // First Ctrl-C: stop cleanly (the base stays true for what was done). Second: abort now.
    let interrupt = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                say!("\ninterrupted: stopping cleanly (press Ctrl-C again to abort at once)");
                INTERRUPTED.store(true, Ordering::SeqCst);
                cancel.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    say!("cancelled: aborted");
                    std::process::exit(i32::from(EXIT_FAILED));
                }
            }
        }
    });

    let started = Instant::now();
    let result = engine.sync_pair(&pair).await;
    let elapsed = started.elapsed();
    // Dropping the engine drops the progress sender, which ends the renderer.
    drop(engine);
    let collected = renderer.await.unwrap_or_default();
    interrupt.abort();

    report(
        &args,
        verbosity,
        result,
        elapsed,
        collected,
        cancel.is_cancelled(),
    )
}

/// How the run is shown: the live display when asked for or when stderr is a terminal (not
/// with --json or -q unless --progress), `--stats` lines when it is off.
fn output_config(
    args: &SyncArgs,
    verbosity: Verbosity,
    log: Option<output::LogFile>,
) -> output::Config {
    let terminal = std::io::stderr().is_terminal();
    let live = args.progress || (verbosity != Verbosity::Quiet && !args.json);
    let bars = live && terminal;
    let stats_every = if bars {
        None
    } else {
        args.stats
            .or(args.progress.then_some(Duration::from_secs(1)))
    };
    output::Config {
        json: args.json,
        list: args.list,
        dry_run: args.dry_run,
        quiet: verbosity == Verbosity::Quiet,
        verbose: matches!(verbosity, Verbosity::Verbose(_)),
        bars,
        stats_every,
        loser_fate: if args.no_trash {
            "is deleted"
        } else if args.backup_dir.is_some() {
            "goes to the backup dir"
        } else {
            "goes to the trash"
        },
        log,
    }
}

/// Where this run's deleted and replaced files went, for the summary.
fn trash_place(args: &SyncArgs) -> &'static str {
    if args.backup_dir.is_some() {
        "the backup dir"
    } else {
        "the trash"
    }
}

/// Runs `work` to its exit status on a new async runtime; exit 1 when none can be started.
/// With `interruptible`, a Ctrl-C ends the work at once ("cancelled", exit 1): for commands
/// whose steps each leave things whole (sync handles Ctrl-C itself, to stop cleanly).
pub(crate) fn block_on(work: impl std::future::Future<Output = u8>, interruptible: bool) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say!("error: cannot start the async runtime: {e}");
            return EXIT_FAILED;
        }
    };
    let code = runtime.block_on(async {
        if !interruptible {
            return work.await;
        }
        tokio::select! {
            code = work => code,
            _ = tokio::signal::ctrl_c() => {
                say!("\ncancelled: interrupted");
                EXIT_FAILED
            }
        }
    });
    runtime.shutdown_timeout(EXIT_WAIT);
    code
}

/// Runs `syncengine cleanup` and returns the exit status.
fn run_cleanup(args: CleanupArgs, verbosity: Verbosity) -> u8 {
    block_on(cleanup_async(args, verbosity), false)
}

async fn cleanup_async(args: CleanupArgs, verbosity: Verbosity) -> u8 {
    let timeouts = match timeouts_of(&args.timeouts) {
        Ok(t) => t,
        Err((_, e)) => return usage_error_in("cleanup", e),
    };
    let opened = match open_side("the root", &args.root, timeouts) {
        Ok(o) => o,
        Err((EXIT_USAGE, msg)) => return usage_error_in("cleanup", msg),
        Err((code, msg)) => {
            say!("error: {msg}");
            return code;
        }
    };
    let client = opened.client;
    let opts = syncengine::cleanup::CleanupOptions::new(args.older_than).with_dry_run(args.dry_run);
    let work = async {
        if let Err(e) = client.check_access().await {
            say!("error: cannot reach {client}: {e}");
            return EXIT_UNREACHABLE;
        }
        match client.clean_up(&opts).await {
            Ok(report) => print_cleanup(&report, &client.to_string(), verbosity),
            Err(e) => {
                say!("error: cleaning up {client} failed, nothing was removed after it: {e}");
                EXIT_FAILED
            }
        }
    };
    tokio::select! {
        code = work => code,
        _ = tokio::signal::ctrl_c() => {
            say!("\ncancelled: interrupted");
            EXIT_FAILED
        }
    }
}

/// Prints what a clean-up removed (or would remove) and returns the exit status.
fn print_cleanup(
    report: &syncengine::cleanup::CleanupReport,
    root: &str,
    verbosity: Verbosity,
) -> u8 {
    let now = std::time::SystemTime::now();
    let age = |since: Option<std::time::SystemTime>| {
        since
            .and_then(|t| now.duration_since(t).ok())
            .map(|d| format!(" ({} old)", human_age(d)))
            .unwrap_or_default()
    };
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    if verbosity != Verbosity::Quiet {
        let mut out = std::io::stdout().lock();
        for leftover in &report.found {
            let line =
                syncengine::redact::redact(&format!("{verb} {leftover}{}", age(leftover.since)))
                    .into_owned();
            if writeln!(out, "{line}").is_err() {
                return EXIT_FAILED;
            }
        }
    }
    for (leftover, why) in &report.failed {
        say!("error: could not remove {leftover}: {why}");
    }
    if verbosity != Verbosity::Quiet {
        let count = |kind| report.found.iter().filter(|l| l.kind == kind).count() as u64;
        let temps = plural(
            count(syncengine::cleanup::LeftoverKind::TempFile),
            "temp file",
        );
        let uploads = plural(
            count(syncengine::cleanup::LeftoverKind::MultipartUpload),
            "multipart upload",
        );
        let lead = if report.dry_run {
            "dry run, nothing removed; would remove"
        } else {
            "cleaned up: removed"
        };
        println!(
            "{}",
            syncengine::redact::redact(&format!(
                "{lead} {temps} and {uploads} under {root}, {}",
                plural(report.failed.len() as u64, "error")
            ))
        );
    }
    if report.failed.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// `45s`, `12m`, `5h`, `3d`: an age, roughly.
fn human_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Prints the outcome and returns the exit status.
fn report(
    args: &SyncArgs,
    verbosity: Verbosity,
    result: Result<SyncStats, SyncError>,
    elapsed: Duration,
    mut collected: output::Collected,
    cancelled: bool,
) -> u8 {
    let stats = match result {
        Ok(stats) => stats,
        Err(e) => {
            let code = match &e {
                SyncError::Cancelled => EXIT_FAILED,
                e if e.is_safety_stop() => EXIT_SAFETY_STOP,
                // Lost during the run, after actions had started: the run failed (its
                // message names the side and the cause). 4 is for a side the check before
                // the run could not reach, when nothing was changed.
                SyncError::Unreachable {
                    during_run: false, ..
                } => EXIT_UNREACHABLE,
                // A typo'd root the mode reads from, on the pair's first run: like a missing
                // bucket.
                SyncError::MissingRoot { .. } => EXIT_UNREACHABLE,
                _ => EXIT_FAILED,
            };
            let line = if matches!(e, SyncError::Cancelled) {
                format!("cancelled: {e}")
            } else {
                format!("error: {e}")
            };
            say!("{line}");
            let hint = restore_hint(args, &e);
            if let Some(hint) = &hint {
                say!("{hint}");
            }
            if let Some(log) = collected.log.as_mut() {
                log.line(&line);
                if let Some(hint) = &hint {
                    log.line(hint);
                }
                log.flush();
            }
            if args.json {
                output::print_json_failure(&e.to_string(), code, collected.json_open);
            }
            return code;
        }
    };
    if verbosity != Verbosity::Quiet {
        for w in stats
            .warnings
            .iter()
            .filter(|w| !collected.printed_warnings.contains(*w))
        {
            say!("{}", warning_line(w));
        }
    }
    // Each failure was printed as it happened with -v; else once here, by cause.
    let error_lines = collected.failures.summary_lines();
    if !matches!(verbosity, Verbosity::Verbose(_)) {
        for line in &error_lines {
            say!("{line}");
        }
    }
    let line = summary(&stats, elapsed, trash_place(args));
    if let Some(log) = collected.log.as_mut() {
        for w in &stats.warnings {
            log.line(&warning_line(w));
        }
        log.line(&line);
        log.flush();
    }
    // A log the user relies on (cron) that could not be written is an error of the run.
    let log_failure = collected.log.as_ref().and_then(output::LogFile::failure);
    if let Some(failure) = &log_failure {
        say!("error: {failure}");
    }
    if args.json {
        // Secrets can only come in through messages: redact those, before serialising (a
        // redaction of the JSON text could break its quoting, and would alter paths).
        let mut shown = stats.clone();
        // An incomplete log makes the run exit 1: the object says why.
        shown.warnings.extend(log_failure.iter().cloned());
        for w in &mut shown.warnings {
            *w = syncengine::redact::redact(w).into_owned();
        }
        if let Err(e) = output::print_json(&shown, &mut collected) {
            say!("error: cannot print the result: {e}");
            return EXIT_FAILED;
        }
    } else if verbosity != Verbosity::Quiet {
        println!("{line}");
    }
    if cancelled {
        // The engine finished despite the interrupt; still report it as the user asked.
        say!("cancelled: the run was interrupted");
        return EXIT_FAILED;
    }
    // Paths that could not be listed were left alone: the pair is not fully in sync.
    if stats.errors > 0 || stats.unknown > 0 || log_failure.is_some() {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// For an empty-side stop, the command that restores the emptied side from the other one, with
/// this run's own arguments: a forced mirror run towards the emptied side, which deletes
/// nothing on the side that still has the files.
fn restore_hint(args: &SyncArgs, e: &SyncError) -> Option<String> {
    let SyncError::EmptySide { side, missing, .. } = e else {
        return None;
    };
    // The protection stays, except on the emptied side itself, which the restore writes to.
    let kept_protection: Vec<Side> = args.protect.iter().copied().filter(|p| p != side).collect();
    let lifts = args.protect.contains(side);
    let mut command = vec!["syncengine".to_owned()];
    // A NAME:path root needs the config file that defines NAME.
    if let Some(config) = run::explicit_path()
        && [&args.source, &args.destination]
            .iter()
            .any(|a| location::remote_name(a).is_some())
    {
        command.push(format!(
            "--config={}",
            shell_quote(&config.to_string_lossy())
        ));
    }
    command.extend([
        "sync".to_owned(),
        // A root given after `--` as `-name` is a relative path: `./-name` is read as one.
        shell_quote(&hint_root(&args.source)),
        shell_quote(&hint_root(&args.destination)),
        "--mode".to_owned(),
        syncengine::error::restoring_mode(*side).to_string(),
        "--force".to_owned(),
    ]);
    // A missing root comes back without its id file: the run that re-creates it accepts it
    // as the side's new root (it deletes nothing), or it would stop at the identity check.
    if *missing {
        command.push("--accept-new-root".to_owned());
        command.push(side.to_string());
    }
    // The same files in view (an excluded file on the emptied side is no extra to remove),
    // and deletions kept where this run keeps them.
    let filters = &args.filters;
    for pattern in &filters.exclude {
        command.push(format!("--exclude={}", shell_quote(pattern)));
    }
    for file in &filters.exclude_from {
        command.push(format!(
            "--exclude-from={}",
            shell_quote(&file.to_string_lossy())
        ));
    }
    for pattern in &filters.include {
        command.push(format!("--include={}", shell_quote(pattern)));
    }
    if let Some(bytes) = filters.max_size {
        command.push(format!("--max-size={bytes}B"));
    }
    if let Some(age) = filters.min_age {
        command.push(format!("--min-age={}ms", age.as_millis()));
    }
    for (flag, dir) in [
        ("--backup-dir", &args.backup_dir),
        ("--trash-dir", &args.trash_dir),
    ] {
        if let Some(dir) = dir {
            command.push(format!("{flag}={}", shell_quote(dir)));
        }
    }
    for p in &kept_protection {
        command.push("--protect".to_owned());
        command.push(p.to_string());
    }
    if let Some(dir) = &args.state_dir {
        // One word, so that a value starting with `-` is not read as an option.
        command.push(format!(
            "--state-dir={}",
            shell_quote(&dir.to_string_lossy())
        ));
    }
    Some(
        syncengine::redact::redact(&format!(
            "hint: once you are sure the {side} lost its files, this restores them from the {}{}: {}",
            side.other(),
            if lifts {
                format!(" (it lifts --protect {side} for that run: it writes to the {side})")
            } else {
                String::new()
            },
            command.join(" ")
        ))
        .into_owned(),
    )
}

/// A root argument as the restore hint prints it: a relative path starting with `-` (given
/// after `--`) gets `./` in front, so the printed command does not read it as options.
fn hint_root(arg: &str) -> String {
    if arg.starts_with('-') {
        format!("./{arg}")
    } else {
        arg.to_owned()
    }
}

/// `arg` as a shell word: as is when it holds only characters no shell treats specially, else
/// in single quotes.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '/' | '.' | '_' | '-' | ':' | '@' | ',' | '=' | '+')
        });
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// A warning as printed: prefixed with `warning: ` unless it already says it is one (the
/// seed's risky-first-sync wording starts with `⚠ WARNING:`).
pub(crate) fn warning_line(w: &str) -> String {
    let w = syncengine::redact::redact(w);
    let head: String = w.chars().take(12).collect::<String>().to_lowercase();
    if head.starts_with('⚠') || head.starts_with("warning") {
        w.into_owned()
    } else {
        format!("warning: {w}")
    }
}

/// `1 conflict`, `2 conflicts`.
fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The one-line human summary of a run: the counts, the conflicts' paths (up to 5), what
/// went to `trash` ("the trash" or "the backup dir").
fn summary(stats: &SyncStats, elapsed: Duration, trash: &str) -> String {
    let lead = if stats.dry_run {
        "dry run, nothing changed; would sync"
    } else {
        "synced"
    };
    let mut line = format!(
        "{lead}: {} uploaded, {} downloaded, {} deleted, {} renamed, {}, {}",
        stats.uploaded,
        stats.downloaded,
        stats.deleted_source + stats.deleted_destination,
        stats.renamed_source + stats.renamed_destination,
        plural(stats.conflicts, "conflict"),
        plural(stats.errors, "error"),
    );
    if stats.unknown > 0 {
        line.push_str(&format!(", {} not listable (left alone)", stats.unknown));
    }
    if stats.skipped > 0 {
        line.push_str(&format!(", {} skipped", stats.skipped));
    }
    if stats.protected > 0 {
        line.push_str(&format!(", {} protected", stats.protected));
    }
    if stats.trashed_files > 0 {
        line.push_str(&format!(
            ", {} ({}) moved to {trash}",
            plural(stats.trashed_files, "file"),
            human_bytes(stats.trashed_bytes)
        ));
    }
    line.push_str(&format!(
        " ({} up, {} down) in {:.1}s",
        human_bytes(stats.bytes_uploaded),
        human_bytes(stats.bytes_downloaded),
        elapsed.as_secs_f64()
    ));
    if !stats.conflict_paths.is_empty() {
        const NAMED: usize = 5;
        // In path order, not the order the actions happened to finish in.
        let mut paths: Vec<&syncengine::RelPath> = stats.conflict_paths.iter().collect();
        paths.sort_unstable();
        let mut named = paths
            .iter()
            .take(NAMED)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if paths.len() > NAMED {
            named.push_str(&format!(" and {} more", paths.len() - NAMED));
        }
        line.push_str(&format!("; conflicts: {named}"));
    }
    line
}

/// `0 B`, `512 B`, `12.3 KiB`, `4.0 GiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    // Display only: the float rounding is fine.
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn transfers_default_to_the_sides_preference() {
        use syncengine::SyncOptions;
        let mem = syncengine::MemoryClient::new();
        let given = |n: u64| SyncOptions::default().with_transfers(n as usize);
        assert_eq!(SyncOptions::default().transfers_for(&mem, &mem), 8);
        assert_eq!(given(3).transfers_for(&mem, &mem), 3);
        // Between two local roots, the local disk's own number; with anything else, not.
        let (a, b) = (
            syncengine::LocalClient::new("/a"),
            syncengine::LocalClient::new("/b"),
        );
        assert_eq!(syncengine::local::SAME_KIND_TRANSFERS, 32);
        assert_eq!(SyncOptions::default().transfers_for(&a, &b), 32);
        assert_eq!(SyncOptions::default().transfers_for(&a, &mem), 8);
        assert_eq!(given(3).transfers_for(&a, &b), 3);
        // Under --bwlimit the destination streams through the budget: no more in flight.
        let limit = syncengine::bandwidth::BandwidthLimit::both(1 << 20);
        let throttled =
            syncengine::bandwidth::Bandwidth::new(limit).throttle(std::sync::Arc::new(b));
        assert_eq!(
            SyncOptions::default().transfers_for(&a, throttled.as_ref()),
            8
        );
        #[cfg(feature = "s3")]
        {
            use syncengine::s3::{DEFAULT_TRANSFERS, S3Builder, StoreKind};
            let s3 = S3Builder::for_store(StoreKind::S3, "b")
                .with_endpoint("http://127.0.0.1:9")
                .with_region("us-east-1")
                .with_credentials("a", "b")
                .with_allow_http(true)
                .build()
                .unwrap();
            assert_eq!(DEFAULT_TRANSFERS, 64);
            let default = SyncOptions::default();
            assert_eq!(default.transfers_for(&mem, &s3), DEFAULT_TRANSFERS);
            assert_eq!(default.transfers_for(&s3, &mem), DEFAULT_TRANSFERS);
            // Named on the command line: that number, larger or smaller.
            assert_eq!(given(2).transfers_for(&s3, &mem), 2);
            assert_eq!(given(200).transfers_for(&s3, &mem), 200);
        }
    }

    #[test]
    fn warnings_are_prefixed_once() {
        assert_eq!(
            warning_line("skipped a symlink"),
            "warning: skipped a symlink"
        );
        assert_eq!(warning_line("⚠ WARNING: lopsided"), "⚠ WARNING: lopsided");
    }

    #[test]
    fn cleanup_parses_its_age_with_a_day_by_default() {
        let cli = Cli::try_parse_from(["syncengine", "cleanup", "s3://b/p"]).unwrap();
        let Command::Cleanup(args) = cli.command else {
            panic!("not cleanup")
        };
        assert_eq!(args.older_than, Duration::from_secs(86_400));
        assert!(!args.dry_run);
        let cli = Cli::try_parse_from([
            "syncengine",
            "cleanup",
            "./x",
            "--older-than",
            "90m",
            "--dry-run",
        ])
        .unwrap();
        let Command::Cleanup(args) = cli.command else {
            panic!("not cleanup")
        };
        assert_eq!(
            (args.older_than, args.dry_run),
            (Duration::from_secs(5400), true)
        );
        assert!(
            Cli::try_parse_from(["syncengine", "cleanup", "x", "--older-than", "soon"]).is_err()
        );
        assert_eq!(human_age(Duration::from_secs(90_000)), "25h");
        assert_eq!(human_age(Duration::from_secs(3 * 86_400)), "3d");
    }

    #[test]
    fn human_bytes_picks_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(12_595), "12.3 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn summary_reads_well() {
        let mut s = SyncStats::default();
        s.uploaded = 3;
        s.downloaded = 1;
        s.conflicts = 1;
        s.bytes_uploaded = 12_595;
        assert_eq!(
            summary(&s, Duration::from_millis(400), "the trash"),
            "synced: 3 uploaded, 1 downloaded, 0 deleted, 0 renamed, 1 conflict, 0 errors \
             (12.3 KiB up, 0 B down) in 0.4s"
        );
        s.dry_run = true;
        assert!(summary(&s, Duration::ZERO, "the trash").starts_with("dry run, nothing changed"));
        for i in 0..7 {
            s.conflict_paths
                .push(syncengine::RelPath::new(format!("c{i}.txt")).unwrap());
        }
        s.trashed_files = 2;
        s.trashed_bytes = 2048;
        let line = summary(&s, Duration::ZERO, "the trash");
        assert!(
            line.contains(", 2 files (2.0 KiB) moved to the trash (")
                && line.ends_with("; conflicts: c0.txt, c1.txt, c2.txt, c3.txt, c4.txt and 2 more"),
            "{line}"
        );
    }

    #[test]
    fn modes_parse_with_aliases_and_list_valid_ones() {
        let cli =
            Cli::try_parse_from(["syncengine", "sync", "a", "b", "--mode", "LocalBackup"]).unwrap();
        let Command::Sync(args) = cli.command else {
            panic!("not sync")
        };
        assert_eq!(args.mode, SyncMode::SourceBackup);
        let err = Cli::try_parse_from(["syncengine", "sync", "a", "b", "--mode", "sideways"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("two-way") && err.contains("destination-backup"),
            "{err}"
        );
    }

    #[test]
    fn nested_or_equal_roots_are_refused() {
        assert!(check_roots_apart(Path::new("/data/a"), Path::new("/data/a")).is_err());
        assert!(check_roots_apart(Path::new("/data/a"), Path::new("/data/a/b")).is_err());
        assert!(check_roots_apart(Path::new("/data/a/b"), Path::new("/data/a")).is_err());
        assert!(check_roots_apart(Path::new("/data/a"), Path::new("/data/ab")).is_ok());
        assert!(check_roots_apart(Path::new("/data/a"), Path::new("/data/b")).is_ok());
    }

    #[test]
    fn backup_dir_must_not_overlap_a_root() {
        let root = Location::Local("/data/a".into());
        assert!(check_backup_overlap("--backup-dir", Path::new("/data/a/bak"), &[&root]).is_err());
        assert!(check_backup_overlap("--backup-dir", Path::new("/data"), &[&root]).is_err());
        assert!(
            check_backup_overlap(
                "--backup-dir",
                Path::new("/data/a/.syncengine/bak"),
                &[&root]
            )
            .is_ok()
        );
        assert!(check_backup_overlap("--backup-dir", Path::new("/data/bak"), &[&root]).is_ok());
    }

    #[test]
    fn remote_backup_dir_and_roots_must_not_overlap() {
        let remote = |url: &str| location::parse(url).unwrap();
        let root = remote("s3://bucket/photos");
        for inside in [
            "s3://bucket/photos/old",
            "s3://bucket/photos//old",
            "s3://bucket/./photos/old/",
            "s3://BUCKET/photos/old",
            "s3://bucket/photos",
            "s3://bucket",
        ] {
            assert!(
                check_remote_overlap("--trash-dir", &remote(inside), &[&root], true).is_err(),
                "{inside}"
            );
        }
        for apart in [
            "s3://bucket/photos-old",
            "s3://bucket/photos/.syncengine/trash",
            "s3://other/photos/old",
            "webdav://bucket/photos/old",
        ] {
            assert!(
                check_remote_overlap("--trash-dir", &remote(apart), &[&root], true).is_ok(),
                "{apart}"
            );
        }
        let inner = remote("s3://bucket/photos/inner");
        assert!(check_remote_overlap("the source", &root, &[&inner], false).is_err());
        assert!(check_remote_overlap("the source", &inner, &[&root], false).is_err());
        let dot = remote("s3://bucket/photos/.syncengine");
        assert!(check_remote_overlap("the source", &root, &[&dot], false).is_err());
        let apart = remote("s3://bucket/videos");
        assert!(check_remote_overlap("the source", &root, &[&apart], false).is_ok());
    }
}
