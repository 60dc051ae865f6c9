//! `syncengine trash list|restore|empty ROOT`: what runs moved to a root's trash, put back,
//! or emptied. The work is the core's ([`syncengine::trash`]); this is its command line.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use clap::{ArgGroup, Args, Subcommand};
use syncengine::StorageClient;
use syncengine::location;
use syncengine::trash::{
    Live, RestoreOptions, RestoreReport, RestoreWhat, Trash, TrashListing, TrashRun,
};

use super::{
    EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, TimeoutArgs, Verbosity, human_bytes,
    open_side, plural, timeouts_of,
};

/// What the next sync does with a restored file, for the output and `--help`.
const NEXT_SYNC: &str = "the next sync of the pair sees restored files as new or changed \
    files on this side: two-way and the backup modes that copy from this side copy them to \
    the other side; a mirror from the other side to this one removes them again (to its trash)";

pub(crate) const AFTER_HELP: &str = "\
WHERE THE TRASH IS:
  Every sync run moves the files it deletes or overwrites on a side, local or remote, to
  ROOT/.syncengine/trash/<UTC time of the run>/<path> (a folder <time>-2, -3 … when one run
  folder cannot take them all). A run is named by that folder: 20261204T163005Z. Runs older
  than the sync's --trash-keep days (default 30) are removed by later syncs.
  A trash kept elsewhere (sync --trash-dir URL or --backup-dir URL) is read with
  --trash-dir URL --side source|destination: the runs are then at URL/<side>/<time>/<path>.

RESTORING:
  A restore puts files back at their paths and never overwrites anything. A live file at the
  path stays, and the restored version is written next to it as
  <name>.conflict-<UTC time>-restored.<ext>; with --force the live file is first moved to the
  trash itself (a run of the restore's time), then the old version takes its place. Within a
  root's own trash on local disk, SFTP and WebDAV a restored file is moved back; on S3, Azure
  and GCS (and from a trash kept elsewhere) it is copied back, checked (size, and MD5 where
  known), and only then removed from the trash. It keeps its modification time.
  After a restore, the next sync of the pair sees restored files as new or changed files on
  this side: two-way and the backup modes that copy from this side copy them to the other
  side (a conflict if the other side changed the same file meanwhile); a mirror from the
  other side to this one removes them again (to its trash). Run it when no sync of the root
  is running.

EXIT STATUS:
  0  success (also: nothing to list or remove)
  1  a file could not be restored or removed, nothing in the trash matches, the trash could
     not be listed, or Ctrl-C
  2  usage error (bad option, unknown URL scheme, backend not compiled in; `empty` without
     --yes when stdin is not a terminal)
  4  the root or the trash could not be reached or logged into (nothing was changed)

EXAMPLES:
  What is in the trash of a folder, and of one run:
    syncengine trash list ~/notes
    syncengine trash list s3://my-bucket/photos --run 20261204T163005Z --json
  Put back one file, or a whole folder, from the newest run that holds it:
    syncengine trash restore ~/notes 'todo/list of things.md'
    syncengine trash restore ~/notes todo --dry-run
  Put back everything one run deleted or overwrote, replacing what is there now (the files
  there now go to the trash):
    syncengine trash restore ~/notes --run 20261204T163005Z --force
  Remove runs older than a week (asks first on a terminal):
    syncengine trash empty ~/notes --older-than 7
    syncengine trash empty sftp://me@nas/vault --older-than 90 --yes
  A trash kept elsewhere with sync --trash-dir /srv/trash:
    syncengine trash list /var/www/site --trash-dir /srv/trash --side destination
";

/// `syncengine trash`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct TrashArgs {
    #[command(subcommand)]
    action: TrashAction,
}

#[derive(Debug, Subcommand)]
enum TrashAction {
    /// List the runs in ROOT's trash and the files each moved there, with sizes and totals.
    #[command(after_help = AFTER_HELP)]
    List(ListArgs),
    /// Put back a file, a folder or a whole run from ROOT's trash, never overwriting.
    // clap would put the required PATH-or-RUN group before ROOT in the usage line.
    #[command(
        after_help = AFTER_HELP,
        override_usage = "syncengine trash restore [OPTIONS] <ROOT> <PATH>\n       \
                          syncengine trash restore [OPTIONS] --run <RUN> <ROOT> [PATH]"
    )]
    Restore(RestoreArgs),
    /// Remove the runs older than DAYS days from ROOT's trash for good.
    #[command(after_help = AFTER_HELP)]
    Empty(EmptyArgs),
}

/// The root and where its trash is, shared by the three actions.
#[derive(Debug, Args)]
struct Place {
    /// The synced root: a local path or a URL, as for sync (see `syncengine sync --help`,
    /// LOCATIONS).
    #[arg(value_name = "ROOT")]
    root: String,
    /// Read the trash kept at URL by sync --trash-dir URL (or --backup-dir URL) instead of
    /// ROOT/.syncengine/trash; needs --side.
    #[arg(
        long,
        value_name = "URL",
        visible_alias = "backup-dir",
        requires = "side"
    )]
    trash_dir: Option<String>,
    /// Which side of the pair ROOT was, with --trash-dir: source or destination (the runs
    /// are at URL/<side>/).
    #[arg(long, value_name = "SIDE", value_parser = ["source", "destination"],
          requires = "trash_dir")]
    side: Option<String>,
    #[command(flatten)]
    timeouts: TimeoutArgs,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    place: Place,
    /// Only this run (a name as listed, e.g. 20261204T163005Z).
    #[arg(long, value_name = "RUN")]
    run: Option<String>,
    /// Print one JSON object on stdout: {"root", "runs": [{"run", "time", "files": [{"path",
    /// "size"}], "file_count", "bytes"}], "file_count", "bytes", "unlisted": [..]}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).multiple(true).args(["path", "run"])))]
struct RestoreArgs {
    #[command(flatten)]
    place: Place,
    /// The file or folder to restore, relative to ROOT, as `trash list` shows it; from the
    /// newest run that holds it, or from --run.
    #[arg(value_name = "PATH")]
    path: Option<String>,
    /// The run to restore from; without PATH, every file of the run.
    #[arg(long, value_name = "RUN")]
    run: Option<String>,
    /// Move a live file at a restored path to the trash first and restore in its place
    /// (without it the restored version gets a conflict name next to the live file).
    #[arg(long)]
    force: bool,
    /// Only say what would be restored where; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object on stdout: {"run", "dry_run", "restored": [{"path",
    /// "restored_as", "live", "live_moved_to"}], "errors": [{"path", "error"}]}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct EmptyArgs {
    #[command(flatten)]
    place: Place,
    /// Remove the runs older than this many days (by the run's time; 0: every run made
    /// before this second).
    #[arg(long, value_name = "DAYS", required = true)]
    older_than: u32,
    /// Only list what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask: needed when stdin is not a terminal.
    #[arg(long)]
    yes: bool,
}

/// Prints a line on stderr with its secrets redacted.
fn say(msg: &str) {
    eprintln!("{}", syncengine::redact::redact(msg));
}

/// Runs `syncengine trash …` and returns the exit status.
pub(crate) fn run(args: TrashArgs, verbosity: Verbosity) -> u8 {
    crate::block_on(run_async(args, verbosity), true)
}

/// A usage error of `syncengine trash ACTION`: exit 2.
fn usage(action: &str, msg: &str) -> u8 {
    say(&format!(
        "error: {msg}\n\nFor more information, try 'syncengine trash {action} --help'."
    ));
    EXIT_USAGE
}

/// The opened root and trash.
struct Opened {
    root: Arc<dyn StorageClient>,
    trash: Trash,
    /// How the trash is named in messages.
    shown: String,
}

/// Opens ROOT and its trash and checks that both can be reached; the exit status otherwise.
async fn open(action: &str, place: &Place) -> Result<Opened, u8> {
    let timeouts = timeouts_of(&place.timeouts).map_err(|(_, e)| usage(action, &e))?;
    let root = match open_side("the root", &place.root, timeouts) {
        Ok(o) => o,
        Err((EXIT_USAGE, msg)) => return Err(usage(action, &msg)),
        Err((code, msg)) => {
            say(&format!("error: {msg}"));
            return Err(code);
        }
    };
    let (trash, shown) =
        match (&place.trash_dir, &place.side) {
            (Some(url), Some(side)) => {
                // NAME:path through the config file's remotes, as for sync's --trash-dir.
                let resolved = crate::run::resolve(url)
                    .map_err(|e| usage(action, &format!("--trash-dir: {e}")))?;
                let mut base = resolved.location;
                if let Some(path) = base.local_path() {
                    base = location::Location::Local(location::normalize_local(path));
                }
                let loc = base.join(side);
                let client = location::open_with_settings(&loc, timeouts, &resolved.settings)
                    .map_err(|e| match e {
                        location::LocationError::CannotLogIn { .. } => {
                            say(&format!("error: cannot reach the trash {loc}: {e}"));
                            EXIT_UNREACHABLE
                        }
                        _ => usage(action, &format!("--trash-dir: {e}")),
                    })?;
                (Trash::elsewhere(client), loc.to_string())
            }
            _ => (
                Trash::of_root(root.client.clone()),
                format!("the trash of {}", root.location),
            ),
        };
    for client in [&root.client, trash.client()] {
        if let Err(e) = client.check_access().await {
            say(&format!("error: cannot reach {client}: {e}"));
            return Err(EXIT_UNREACHABLE);
        }
    }
    Ok(Opened {
        root: root.client,
        trash,
        shown,
    })
}

async fn run_async(args: TrashArgs, verbosity: Verbosity) -> u8 {
    match args.action {
        TrashAction::List(a) => list(a, verbosity).await,
        TrashAction::Restore(a) => restore(a, verbosity).await,
        TrashAction::Empty(a) => empty(a, verbosity).await,
    }
}

/// Lists the trash; reports what could not be listed. `None` after a failed listing.
async fn listing(opened: &Opened) -> Option<TrashListing> {
    match opened.trash.list().await {
        Ok(listing) => {
            for u in &listing.unlisted {
                say(&format!("warning: {u}"));
            }
            Some(listing)
        }
        Err(e) => {
            say(&format!("error: listing {} failed: {e}", opened.shown));
            None
        }
    }
}

/// Writes `lines` to stdout; false when stdout is gone.
fn print_lines(lines: &[String]) -> bool {
    let mut out = std::io::stdout().lock();
    lines.iter().all(|l| writeln!(out, "{l}").is_ok()) && out.flush().is_ok()
}

/// `2026-12-04T16:30:05Z` for JSON.
fn iso_time(run: &TrashRun) -> String {
    let s = run.stamp();
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    )
}

async fn list(args: ListArgs, verbosity: Verbosity) -> u8 {
    let opened = match open("list", &args.place).await {
        Ok(o) => o,
        Err(code) => return code,
    };
    let Some(listing) = listing(&opened).await else {
        return EXIT_FAILED;
    };
    let runs: Vec<&TrashRun> = match &args.run {
        Some(name) => match listing.run(name) {
            Some(run) => vec![run],
            None => {
                say(&format!(
                    "error: no run {name} in {} (`syncengine trash list` shows them)",
                    opened.shown
                ));
                return EXIT_FAILED;
            }
        },
        None => listing.runs.iter().collect(),
    };
    let files: usize = runs.iter().map(|r| r.files.len()).sum();
    let bytes: u64 = runs.iter().map(|r| r.bytes()).sum();
    if args.json {
        let json = serde_json::json!({
            "root": syncengine::redact::redact(&args.place.root),
            "runs": runs.iter().map(|r| serde_json::json!({
                "run": r.name,
                "time": iso_time(r),
                "files": r.files.iter().map(|f| serde_json::json!({
                    "path": f.path.as_str(),
                    "size": f.entry.size,
                })).collect::<Vec<_>>(),
                "file_count": r.files.len(),
                "bytes": r.bytes(),
            })).collect::<Vec<_>>(),
            "file_count": files,
            "bytes": bytes,
            "unlisted": listing.unlisted,
        });
        return if print_lines(&[json.to_string()]) {
            EXIT_OK
        } else {
            EXIT_FAILED
        };
    }
    if verbosity == Verbosity::Quiet {
        return EXIT_OK;
    }
    if runs.is_empty() {
        println!(
            "{}",
            syncengine::redact::redact(&format!("{} is empty", opened.shown))
        );
        return EXIT_OK;
    }
    let mut lines = Vec::new();
    for run in &runs {
        lines.push(format!(
            "run {} ({}): {}, {}",
            run.name,
            run.time_text(),
            plural(run.files.len() as u64, "file"),
            human_bytes(run.bytes())
        ));
        for f in &run.files {
            lines.push(format!("  {:>10}  {}", human_bytes(f.entry.size), f.path));
        }
    }
    lines.push(
        syncengine::redact::redact(&format!(
            "{}, {}, {} in {}",
            plural(runs.len() as u64, "run"),
            plural(files as u64, "file"),
            human_bytes(bytes),
            opened.shown
        ))
        .into_owned(),
    );
    if print_lines(&lines) {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// PATH as given, made a path relative to the root (`./a/`, `a/` → `a`).
fn root_relative(path: &str) -> Result<syncengine::RelPath, String> {
    let mut p = path;
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    let p = p.trim_end_matches('/');
    syncengine::RelPath::new(p).map_err(|e| format!("PATH {path:?}: {e}"))
}

async fn restore(args: RestoreArgs, verbosity: Verbosity) -> u8 {
    let what = match &args.path {
        Some(path) => match root_relative(path) {
            Ok(path) => RestoreWhat::Path {
                path,
                run: args.run.clone(),
            },
            Err(e) => return usage("restore", &e),
        },
        None => match &args.run {
            Some(run) => RestoreWhat::Run(run.clone()),
            None => return usage("restore", "give a PATH, --run RUN, or both"),
        },
    };
    if args.force && args.place.trash_dir.is_some() {
        return usage(
            "restore",
            "--force cannot be used with --trash-dir: the live file would have to move to \
             another storage; restore without --force (the restored version gets a conflict \
             name next to the live file)",
        );
    }
    let opened = match open("restore", &args.place).await {
        Ok(o) => o,
        Err(code) => return code,
    };
    let Some(listing) = listing(&opened).await else {
        return EXIT_FAILED;
    };
    let (run, files) = match listing.select(&what) {
        Ok(found) => found,
        Err(e) => {
            say(&format!("error: {e}"));
            return EXIT_FAILED;
        }
    };
    let opts = RestoreOptions::default()
        .with_force(args.force)
        .with_dry_run(args.dry_run);
    let report = match opened.trash.restore(&opened.root, &files, &opts).await {
        Ok(r) => r,
        Err(e) => {
            say(&format!("error: {e}"));
            return EXIT_FAILED;
        }
    };
    for o in &report.outcomes {
        match &o.result {
            Err(e) => say(&format!("error: could not restore {}: {e}", o.file.path)),
            Ok(r) => {
                if let Some(w) = &r.warning {
                    say(&format!("warning: {}: {w}", o.file.path));
                }
            }
        }
    }
    let printed = if args.json {
        print_lines(&[restore_json(&run.name, &report).to_string()])
    } else if verbosity != Verbosity::Quiet {
        print_lines(&restore_lines(&run.name, &report))
    } else {
        true
    };
    if report.failed() > 0 || !printed {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

fn restore_json(run: &str, report: &RestoreReport) -> serde_json::Value {
    let mut restored = Vec::new();
    let mut errors = Vec::new();
    for o in &report.outcomes {
        match &o.result {
            Ok(r) => {
                let (live, moved_to) = match &r.live {
                    Live::MovedToTrash(to) => ("moved_to_trash", Some(to.as_str())),
                    Live::KeptConflictCopy => ("kept", None),
                    Live::FolderInTheWay => ("folder", None),
                    _ => ("none", None),
                };
                restored.push(serde_json::json!({
                    "path": o.file.path.as_str(),
                    "restored_as": r.at.as_str(),
                    "live": live,
                    "live_moved_to": moved_to,
                }));
            }
            Err(e) => errors.push(serde_json::json!({
                "path": o.file.path.as_str(),
                "error": syncengine::redact::redact(e),
            })),
        }
    }
    serde_json::json!({
        "run": run,
        "dry_run": report.dry_run,
        "restored": restored,
        "errors": errors,
    })
}

fn restore_lines(run: &str, report: &RestoreReport) -> Vec<String> {
    let verb = if report.dry_run {
        "would restore"
    } else {
        "restored"
    };
    let mut lines = Vec::new();
    let mut conflict_copies = 0u64;
    for o in &report.outcomes {
        let Ok(r) = &o.result else { continue };
        let path = &o.file.path;
        lines.push(match &r.live {
            Live::MovedToTrash(to) => {
                let moved = if report.dry_run {
                    "would move"
                } else {
                    "moved"
                };
                format!("{verb} {path} ({moved} the live file to {to})")
            }
            Live::KeptConflictCopy => {
                conflict_copies += 1;
                format!(
                    "{verb} {path} as {}: a live file is at {path} and stays (--force moves it \
                     to the trash and restores in its place)",
                    r.at
                )
            }
            Live::FolderInTheWay => {
                conflict_copies += 1;
                format!("{verb} {path} as {}: a folder is at {path} and stays", r.at)
            }
            _ => format!("{verb} {path}"),
        });
    }
    let ok = report.outcomes.len() - report.failed();
    let lead = if report.dry_run {
        "dry run, nothing changed; would restore"
    } else {
        "restored"
    };
    let mut summary = format!("{lead} {} from run {run}", plural(ok as u64, "file"));
    if conflict_copies > 0 {
        summary.push_str(&format!(" ({conflict_copies} under a conflict name)"));
    }
    summary.push_str(&format!(", {}", plural(report.failed() as u64, "error")));
    lines.push(summary);
    if ok > 0 {
        lines.push(format!("note: {NEXT_SYNC}"));
    }
    lines
}

async fn empty(args: EmptyArgs, verbosity: Verbosity) -> u8 {
    let interactive = std::io::stdin().is_terminal();
    if !args.dry_run && !args.yes && !interactive {
        return usage(
            "empty",
            "stdin is not a terminal, so there is no one to ask: pass --yes to remove the \
             runs for good, or --dry-run to see them",
        );
    }
    let opened = match open("empty", &args.place).await {
        Ok(o) => o,
        Err(code) => return code,
    };
    let Some(listing) = listing(&opened).await else {
        return EXIT_FAILED;
    };
    let old = listing.older_than(args.older_than);
    let files: usize = old.iter().map(|r| r.files.len()).sum();
    let bytes: u64 = old.iter().map(|r| r.bytes()).sum();
    let shown = syncengine::redact::redact(&opened.shown).into_owned();
    if old.is_empty() {
        if verbosity != Verbosity::Quiet {
            println!(
                "nothing older than {} in {shown}",
                plural(u64::from(args.older_than), "day")
            );
        }
        return EXIT_OK;
    }
    let what = format!(
        "{} ({}, {})",
        plural(old.len() as u64, "run"),
        plural(files as u64, "file"),
        human_bytes(bytes)
    );
    if !args.dry_run && !args.yes {
        eprint!(
            "remove {what} older than {} from {shown} for good? [y/N] ",
            plural(u64::from(args.older_than), "day")
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let read = std::io::stdin().lock().read_line(&mut answer);
        if read.is_err() || !matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
            if verbosity != Verbosity::Quiet {
                println!("nothing removed");
            }
            return EXIT_OK;
        }
    }
    let report = opened.trash.remove_runs(&old, args.dry_run).await;
    for (path, why) in &report.failed {
        say(&format!("error: could not remove {path}: {why}"));
    }
    if verbosity != Verbosity::Quiet {
        let verb = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let mut lines: Vec<String> = old
            .iter()
            .map(|r| {
                format!(
                    "{verb} run {} ({}): {}, {}",
                    r.name,
                    r.time_text(),
                    plural(r.files.len() as u64, "file"),
                    human_bytes(r.bytes())
                )
            })
            .collect();
        let lead = if args.dry_run {
            "dry run, nothing removed; would remove"
        } else {
            "emptied: removed"
        };
        lines.push(format!(
            "{lead} {} ({}, {}) from {shown}, {}",
            plural(old.len() as u64, "run"),
            plural(report.files, "file"),
            human_bytes(report.bytes),
            plural(report.failed.len() as u64, "error")
        ));
        if !print_lines(&lines) {
            return EXIT_FAILED;
        }
    }
    if report.failed.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}
