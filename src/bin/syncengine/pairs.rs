//! `syncengine pairs [show PAIR | forget PAIR]`: the pairs a state directory knows (see
//! [`syncengine::state::pairs`]).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use syncengine::SyncError;
use syncengine::state::pairs::{self, PairInfo, utc_text};

use super::{
    EXIT_FAILED, EXIT_OK, EXIT_SAFETY_STOP, EXIT_UNREACHABLE, EXIT_USAGE, TimeoutArgs, Verbosity,
    default_state_dir, open_side, output, timeouts_of, usage_error_in,
};

pub(crate) const PAIRS_AFTER_HELP: &str = "\
Each pair synced with a state directory has one state file there, named by an id the sync
derives from the pair's two roots. These commands show which pair is which, so nobody has to
guess the hash-named files.

PAIR (for show and forget):
  The pair's id as listed, or a prefix of it that only one pair has, or the pair's two roots
  as given to sync (SOURCE DESTINATION; local paths or URLs, resolved the way sync does).

OUTPUT:
  pairs: per pair its id, last mode, last run (UTC) and whether it completed without errors,
  the files in its base, and its two roots; pairs whose state is from an older syncengine
  show 'roots unknown (recorded at the next run)'. Roots are shown as the sync resolved them
  (file:///path, s3://endpoint/bucket/prefix…): never credentials.
  --json: {\"state_dir\", \"pairs\": [{\"id\", \"file\", \"source_root\", \"destination_root\",
  \"last_mode\", \"last_run\", \"last_completed\", \"created\", \"files\", \"kept_by_backup\",
  \"initial_sync_pending\", \"last_counts\"}], \"unreadable\": [{\"id\", \"file\", \"error\"}]};
  pairs show --json prints one pair object. Unknown values are null.

FORGET:
  Deletes the pair's state (its database and lock files in the state directory; nothing in
  either root). The next sync of the pair is its first sync again: nothing is known about
  earlier deletions, so a two-way first sync merges (copies one-sided files both ways, deletes
  nothing), and files a backup mode kept on purpose count as one-sided files. Asks for
  confirmation on a terminal; --yes skips the question (needed when stdin is not a terminal).
  Refused while a sync of the pair is running (its lock is held).

EXIT STATUS:
  0  success
  1  a state file could not be read or removed
  2  usage error, no such pair, an ambiguous prefix, or forget without --yes off a terminal
  3  forget refused: a sync of the pair is running
  4  show/forget by roots: a side could not be reached to resolve its location

EXAMPLES:
  List the pairs of the default state directory:
    syncengine pairs
  Details of one pair, by id prefix or by its roots:
    syncengine pairs show 3f2a
    syncengine pairs show ~/notes /mnt/usb/notes
  Start a pair afresh (its next sync is a first sync):
    syncengine pairs forget 3f2a9c --yes
";

/// The `pairs` subcommand's arguments.
#[derive(Debug, Args)]
pub(crate) struct PairsArgs {
    #[command(subcommand)]
    action: Option<PairsAction>,
    /// Where pair state is kept, as for sync [default: $SYNCENGINE_STATE_DIR, else
    /// $XDG_STATE_HOME/syncengine, else ~/.local/state/syncengine].
    #[arg(long, value_name = "DIR", global = true)]
    state_dir: Option<PathBuf>,
    /// Print JSON on stdout (see OUTPUT).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum PairsAction {
    /// Show everything recorded about one pair.
    #[command(after_help = PAIRS_AFTER_HELP)]
    Show(PairRef),
    /// Delete one pair's state: its next sync is a first sync (asks first; --yes to skip).
    #[command(after_help = PAIRS_AFTER_HELP)]
    Forget {
        #[command(flatten)]
        pair: PairRef,
        /// Do not ask; required when stdin is not a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// Which pair: an id, a unique id prefix, or the two roots.
#[derive(Debug, Args)]
struct PairRef {
    /// The pair's id or a unique prefix of it, or its SOURCE and DESTINATION as given to sync.
    #[arg(value_name = "PAIR", num_args = 1..=2, required = true)]
    pair: Vec<String>,
    #[command(flatten)]
    timeouts: TimeoutArgs,
}

/// Runs `syncengine pairs …` and returns the exit status.
pub(crate) fn run_pairs(args: PairsArgs, verbosity: Verbosity) -> u8 {
    let Some(state_dir) = args.state_dir.clone().or_else(default_state_dir) else {
        return fail(
            "pairs",
            args.json,
            EXIT_USAGE,
            "no state directory: pass --state-dir DIR or set SYNCENGINE_STATE_DIR \
             (neither XDG_STATE_HOME nor HOME is set)",
        );
    };
    match &args.action {
        None => list(&state_dir, args.json, verbosity),
        Some(PairsAction::Show(which)) => match find(&state_dir, which) {
            Ok(id) => show(&state_dir, &id, args.json),
            Err((code, msg)) => fail("pairs show", args.json, code, &msg),
        },
        Some(PairsAction::Forget { pair, yes }) => match find(&state_dir, pair) {
            Ok(id) => forget(&state_dir, &id, *yes, verbosity),
            Err((code, msg)) => fail("pairs forget", args.json, code, &msg),
        },
    }
}

/// `eprintln!` with secrets redacted.
fn say(msg: &str) {
    eprintln!("{}", syncengine::redact::redact(msg));
}

/// A failed `pairs` command: with `--json`, one `{"error", "exit_status"}` object on stdout
/// (as `sync --json` prints), and the message on stderr.
fn fail(command: &str, json: bool, code: u8, msg: &str) -> u8 {
    if json {
        output::print_json_failure(msg, code, false);
    }
    if code == EXIT_USAGE {
        usage_error_in(command, msg)
    } else {
        say(&format!("error: {msg}"));
        code
    }
}

/// The id of the pair `which` names.
fn find(state_dir: &Path, which: &PairRef) -> Result<String, (u8, String)> {
    match which.pair.as_slice() {
        [query] => pairs::resolve(state_dir, query).map_err(|e| (EXIT_USAGE, message(&e))),
        [source, destination] => {
            let timeouts = timeouts_of(&which.timeouts)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| (EXIT_FAILED, format!("cannot start the async runtime: {e}")))?;
            let locations = runtime.block_on(async {
                let mut found = Vec::new();
                for (what, arg) in [("source", source), ("destination", destination)] {
                    let opened = open_side(what, arg, timeouts)?;
                    let loc = opened.client.location().await.map_err(|e| {
                        (
                            EXIT_UNREACHABLE,
                            format!("cannot resolve the {what} {arg}: {e}"),
                        )
                    })?;
                    found.push(loc);
                }
                Ok::<_, (u8, String)>(found)
            })?;
            let id = syncengine::identity::pair_id(&locations[0], &locations[1]);
            if syncengine::state::StateStore::file_for(state_dir, &id).is_file() {
                Ok(id)
            } else {
                Err((
                    EXIT_USAGE,
                    format!(
                        "no state for the pair {} → {} (id {id}) in {}: it was never synced \
                         with this state directory; `syncengine pairs` lists the pairs there",
                        locations[0],
                        locations[1],
                        state_dir.display()
                    ),
                ))
            }
        }
        _ => Err((
            EXIT_USAGE,
            "give a pair id, or SOURCE and DESTINATION".into(),
        )),
    }
}

/// A core error as a message: `invalid configuration: …` says nothing here.
fn message(e: &SyncError) -> String {
    match e {
        SyncError::Config(m) => m.clone(),
        other => other.to_string(),
    }
}

fn time_text(t: Option<std::time::SystemTime>) -> String {
    t.map_or_else(
        || "never".to_owned(),
        |t| utc_text(t).replace('T', " ").replace('Z', " UTC"),
    )
}

fn roots_text(p: &PairInfo) -> Vec<String> {
    match (&p.source_root, &p.destination_root) {
        (None, None) => vec!["roots unknown (recorded at the next run)".to_owned()],
        (s, d) => vec![
            format!(
                "source:      {}",
                s.as_deref().unwrap_or("unknown (recorded at the next run)")
            ),
            format!(
                "destination: {}",
                d.as_deref().unwrap_or("unknown (recorded at the next run)")
            ),
        ],
    }
}

fn json_of(p: &PairInfo) -> serde_json::Value {
    let t = |t: Option<std::time::SystemTime>| t.map(utc_text);
    serde_json::json!({
        "id": p.id,
        "file": p.file.display().to_string(),
        "source_root": p.source_root,
        "destination_root": p.destination_root,
        "last_mode": p.last_mode,
        "last_run": t(p.last_run),
        "last_completed": t(p.last_completed),
        "created": t(p.created),
        "files": p.files,
        "kept_by_backup": p.kept_by_backup,
        "initial_sync_pending": p.initial_sync_pending,
        "last_counts": p.last_counts,
    })
}

fn print(text: &str) -> u8 {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", syncengine::redact::redact(text)).and_then(|()| out.flush()) {
        Ok(()) => EXIT_OK,
        Err(_) => EXIT_FAILED,
    }
}

fn list(state_dir: &Path, json: bool, verbosity: Verbosity) -> u8 {
    let all = match pairs::list(state_dir) {
        Ok(all) => all,
        Err(e) => return fail("pairs", json, EXIT_FAILED, &e.to_string()),
    };
    let unreadable: Vec<_> = all.iter().filter_map(|p| p.as_ref().err()).collect();
    for u in &unreadable {
        say(&format!(
            "error: the state file {} cannot be read: {}",
            u.file.display(),
            u.error
        ));
    }
    let code = if unreadable.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    };
    if json {
        let value = serde_json::json!({
            "state_dir": state_dir.display().to_string(),
            "pairs": all.iter().filter_map(|p| p.as_ref().ok()).map(json_of).collect::<Vec<_>>(),
            "unreadable": unreadable.iter().map(|u| serde_json::json!({
                "id": u.id, "file": u.file.display().to_string(), "error": u.error,
            })).collect::<Vec<_>>(),
        });
        return print(&value.to_string()).max(code);
    }
    if verbosity == Verbosity::Quiet {
        return code;
    }
    let mut text = String::new();
    let readable: Vec<&PairInfo> = all.iter().filter_map(|p| p.as_ref().ok()).collect();
    for p in &readable {
        let errors = p.last_counts.as_ref().map_or(0, |c| c.errors);
        let run = match p.last_run.or(p.last_completed) {
            None => "no run completed yet".to_owned(),
            Some(t) if errors > 0 => format!(
                "last run {} with {errors} errors (last completed without errors: {})",
                time_text(Some(t)),
                time_text(p.last_completed)
            ),
            Some(t) => format!("last run {}", time_text(Some(t))),
        };
        text.push_str(&format!(
            "{}  {}  {run}, {} files",
            p.id,
            p.last_mode.as_deref().unwrap_or("mode unknown"),
            p.files
        ));
        if p.kept_by_backup > 0 {
            text.push_str(&format!(" ({} kept by backup)", p.kept_by_backup));
        }
        text.push('\n');
        for line in roots_text(p) {
            text.push_str(&format!("  {line}\n"));
        }
    }
    text.push_str(&format!(
        "{} pair{} in {}",
        readable.len(),
        if readable.len() == 1 { "" } else { "s" },
        state_dir.display()
    ));
    if !unreadable.is_empty() {
        text.push_str(&format!(", {} unreadable", unreadable.len()));
    }
    print(&text).max(code)
}

fn show(state_dir: &Path, id: &str, json: bool) -> u8 {
    let p = match pairs::read(state_dir, id) {
        Ok(p) => p,
        Err(e) => return fail("pairs show", json, EXIT_FAILED, &e.to_string()),
    };
    if json {
        return print(&json_of(&p).to_string());
    }
    let mut lines = vec![format!("pair {}", p.id)];
    lines.extend(roots_text(&p).into_iter().map(|l| format!("  {l}")));
    lines.push(format!(
        "  last mode:   {}",
        p.last_mode
            .as_deref()
            .unwrap_or("unknown (recorded at the next run)")
    ));
    lines.push(format!("  last run:    {}", time_text(p.last_run)));
    lines.push(format!(
        "  last completed without errors: {}",
        time_text(p.last_completed)
    ));
    if let Some(c) = &p.last_counts {
        lines.push(format!(
            "  last run's counts: {} uploaded, {} downloaded, {} deleted, {} renamed, {} \
             conflicts, {} errors",
            c.uploaded, c.downloaded, c.deleted, c.renamed, c.conflicts, c.errors
        ));
    }
    lines.push(format!(
        "  files in the base: {} ({} kept by backup: deleted on one side, kept on the other)",
        p.files, p.kept_by_backup
    ));
    if p.initial_sync_pending {
        lines.push("  first sync: not finished yet".to_owned());
    }
    lines.push(format!("  created:     {}", time_text(p.created)));
    lines.push(format!("  state file:  {}", p.file.display()));
    print(&lines.join("\n"))
}

fn forget(state_dir: &Path, id: &str, yes: bool, verbosity: Verbosity) -> u8 {
    let info = match pairs::read(state_dir, id) {
        Ok(p) => Some(p),
        // An unreadable state file can be forgotten too: that is one way out of it.
        Err(e) => {
            say(&format!("warning: {e}"));
            None
        }
    };
    if !yes {
        if !std::io::stdin().is_terminal() {
            return usage_error_in(
                "pairs forget",
                format!(
                    "forgetting the pair {id} deletes its state; stdin is not a terminal to \
                     confirm it: add --yes"
                ),
            );
        }
        let unknown = "unknown";
        let roots = match &info {
            Some(p) if p.source_root.is_some() || p.destination_root.is_some() => format!(
                "{} → {}",
                p.source_root.as_deref().unwrap_or(unknown),
                p.destination_root.as_deref().unwrap_or(unknown)
            ),
            _ => "roots unknown".to_owned(),
        };
        eprint!(
            "{}",
            syncengine::redact::redact(&format!(
                "Forget the pair {id} ({roots})? Its next sync will be a first sync. [y/N] "
            ))
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        if std::io::stdin().lock().read_line(&mut answer).is_err()
            || !matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
        {
            say("not forgotten");
            return EXIT_OK;
        }
    }
    match pairs::forget(state_dir, id) {
        Ok(removed) => {
            if verbosity != Verbosity::Quiet {
                print(&format!(
                    "forgot the pair {id} (removed {} file{}); its next sync is a first sync",
                    removed.len(),
                    if removed.len() == 1 { "" } else { "s" }
                ))
            } else {
                EXIT_OK
            }
        }
        Err(e @ SyncError::Locked { .. }) => {
            say(&format!(
                "error: not forgotten: a sync of the pair {id} is running ({e}); try again \
                 once it has finished"
            ));
            EXIT_SAFETY_STOP
        }
        Err(e) => {
            say(&format!("error: {e}"));
            EXIT_FAILED
        }
    }
}
