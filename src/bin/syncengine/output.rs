//! What `syncengine sync` shows while it runs: the dry run's plan, group by group; each
//! action as it completes (`-v`, `--log-file`); `--json --list`'s actions array, written as
//! the actions come; failures, kept per file for `error_list` and summarised by cause;
//! `--stats` status lines. Nothing here holds a list of actions: each is printed (or
//! written) as it arrives and forgotten.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use syncengine::{
    ActionReport, Change, ConflictCause, PlanGroup, ProgressEvent, RelPath, Side, SyncStats,
};
use tokio::sync::mpsc::{Receiver, UnboundedReceiver};

use crate::progress::Bars;

/// Paths named per cause in the summary of failures.
const PATHS_PER_CAUSE: usize = 3;
/// Causes told apart in the summary of failures; failures with further causes are counted
/// together.
const MAX_CAUSES: usize = 20;

/// How the run is shown, from the command line.
pub struct Config {
    /// `--json`: stdout is one JSON object.
    pub json: bool,
    /// `--list` (with `--json`): the object holds the actions.
    pub list: bool,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `-q`.
    pub quiet: bool,
    /// `-v`: each action on stderr as it completes, each failure as it happens.
    pub verbose: bool,
    /// The live display: bars on a terminal.
    pub bars: bool,
    /// One status line every so often (`--stats`, or `--progress` without a terminal).
    pub stats_every: Option<Duration>,
    /// What happens to a replaced conflict loser (`--conflict-loser delete`): "goes to the
    /// trash", "goes to the backup dir", "is deleted".
    pub loser_fate: &'static str,
    /// `--log-file`.
    pub log: Option<LogFile>,
}

/// The `--log-file`: action lines, warnings and errors, each with its UTC time, never with
/// colour codes. Appended to, so that a cron job's runs follow each other.
pub struct LogFile {
    out: BufWriter<File>,
    /// The file as given, for messages.
    path: std::path::PathBuf,
    /// The first write that failed: the log is incomplete from there on.
    failed: Option<String>,
}

impl LogFile {
    /// Opens (creates, appends to) `path`.
    pub fn open(path: &Path) -> Result<LogFile, String> {
        File::options()
            .create(true)
            .append(true)
            .open(path)
            .map(|f| LogFile {
                out: BufWriter::new(f),
                path: path.to_path_buf(),
                failed: None,
            })
            .map_err(|e| format!("--log-file {}: cannot open it: {e}", path.display()))
    }

    /// Writes one line, secrets redacted. A log that cannot be written does not stop the run;
    /// the first failure is kept for [`LogFile::failure`].
    pub fn line(&mut self, text: &str) {
        let text = one_line(&syncengine::redact::redact(text)).into_owned();
        let written = writeln!(self.out, "{} {text}", utc_now());
        self.note(written);
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) {
        let flushed = self.out.flush();
        self.note(flushed);
    }

    fn note(&mut self, result: std::io::Result<()>) {
        if let (Err(e), None) = (result, &self.failed) {
            self.failed = Some(e.to_string());
        }
    }

    /// Why the log is incomplete (a full disk, a removed mount), naming the file; `None` when
    /// every line was written.
    pub fn failure(&self) -> Option<String> {
        self.failed.as_ref().map(|e| {
            format!(
                "--log-file {}: could not write to it ({e}); the log of this run is incomplete",
                self.path.display()
            )
        })
    }
}

/// `text` with its control characters (escape sequences, carriage returns, newlines…) written
/// as Rust escapes (`\u{1b}`, `\r`, `\n`), so a file name cannot drive the terminal or forge a
/// line of a log; other text is unchanged.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// What the run's events left for the final report.
#[derive(Default)]
pub struct Collected {
    /// Warnings already printed above the bars.
    pub printed_warnings: HashSet<String>,
    /// Every failed action, for `error_list` and the summary by cause.
    pub failures: Failures,
    /// The log file, to receive the end of the run.
    pub log: Option<LogFile>,
    /// `--json --list`: the object is open on stdout, its actions array too.
    pub json_open: bool,
    /// Writing to stdout failed.
    pub stdout_failed: bool,
}

/// One failed action, for `error_list`.
pub struct Failure {
    path: RelPath,
    side: Option<Side>,
    message: String,
}

/// Failures with one cause: how many, the first few paths and the first message.
struct Cause {
    text: String,
    count: u64,
    paths: Vec<RelPath>,
    first_message: String,
}

/// The run's failures: each one (for `error_list`, kept only with `--json`), and a bounded
/// summary by cause.
#[derive(Default)]
pub struct Failures {
    /// Keep each failure for `error_list`.
    keep_list: bool,
    list: Vec<Failure>,
    causes: Vec<Cause>,
    /// Failures whose cause did not fit in [`MAX_CAUSES`].
    other: u64,
}

impl Failures {
    /// No failures yet; `keep_list` keeps each one for `error_list` (else only the bounded
    /// summary by cause is kept).
    pub fn new(keep_list: bool) -> Failures {
        Failures {
            keep_list,
            ..Failures::default()
        }
    }

    /// Adds a failure of the action `report` with the error text `error`.
    pub fn add(&mut self, report: &ActionReport, error: &str) {
        let message = syncengine::redact::redact(error).into_owned();
        let text = cause_of(report, &message);
        let full = self.causes.len() >= MAX_CAUSES;
        match self.causes.iter_mut().find(|c| c.text == text) {
            Some(c) => {
                c.count += 1;
                if c.paths.len() < PATHS_PER_CAUSE {
                    c.paths.push(report.path.clone());
                }
            }
            None if full => self.other += 1,
            None => self.causes.push(Cause {
                text,
                count: 1,
                paths: vec![report.path.clone()],
                first_message: message.clone(),
            }),
        }
        if self.keep_list {
            self.list.push(Failure {
                path: report.path.clone(),
                side: report.side,
                message,
            });
        }
    }

    /// The lines that report the failures once the run is over: a cause that failed one file
    /// as `error: <path>: <message>`, one that failed several as one line with the count
    /// and the first few paths.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for c in &self.causes {
            if c.count == 1 {
                lines.push(format!("error: {}: {}", c.paths[0], c.first_message));
                continue;
            }
            let mut named = c
                .paths
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let rest = c.count - c.paths.len() as u64;
            if rest > 0 {
                named.push_str(&format!(" and {rest} more"));
            }
            lines.push(format!(
                "error: {} files failed: {} ({named})",
                c.count, c.text
            ));
        }
        if self.other > 0 {
            lines.push(format!(
                "error: {} more files failed with other causes (run with -v or --log-file to \
                 see each)",
                self.other
            ));
        }
        lines
    }

    /// `error_list`: `[{"path", "side", "message"}]`.
    pub fn json_list(&self) -> serde_json::Value {
        self.list
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": f.path,
                    "side": side_name(f.side),
                    "message": f.message,
                })
            })
            .collect()
    }
}

/// The cause of a failure: its message with the paths of the action (and the random part of
/// temp file names) taken out, so that failures of one cause read the same.
fn cause_of(report: &ActionReport, message: &str) -> String {
    let mut text = message.to_owned();
    let mut paths = vec![report.path.as_str()];
    if let Change::Rename { from, .. } = &report.change {
        paths.push(from.as_str());
    }
    // Longest first: a path that contains another is replaced whole.
    paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in paths.into_iter().filter(|p| !p.is_empty()) {
        text = text.replace(p, "…");
    }
    strip_temp_names(&text)
}

/// `.syncengine-tmp-0123456789abcdef` → `.syncengine-tmp-…`.
fn strip_temp_names(text: &str) -> String {
    const TMP: &str = ".syncengine-tmp-";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(TMP) {
        let (head, tail) = rest.split_at(at + TMP.len());
        out.push_str(head);
        let hex = tail.bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex > 0 {
            out.push('…');
        }
        rest = &tail[hex..];
    }
    out.push_str(rest);
    out
}

/// `source`, `destination`, or `both`.
pub fn side_name(side: Option<Side>) -> &'static str {
    side.map_or("both", Side::as_str)
}

/// The heading of a group in a dry run's listing.
pub fn group_heading(group: PlanGroup, count: u64) -> String {
    let what = match group {
        PlanGroup::Uploads => "would upload to the destination".to_owned(),
        PlanGroup::Downloads => "would download to the source".to_owned(),
        PlanGroup::Renames => "would rename".to_owned(),
        PlanGroup::Conflicts => "conflicts".to_owned(),
        PlanGroup::Deletes(side) => format!("would delete on the {side}"),
        _ => "would also do".to_owned(),
    };
    format!("{what} ({count}):")
}

/// How a conflict is settled: "changed on both sides; the source's version wins; the
/// destination's is kept as …".
fn conflict_text(
    cause: ConflictCause,
    winner: Option<Side>,
    kept_as: &[(Side, RelPath)],
    loser_fate: &str,
) -> String {
    let kept = |side: Side| {
        kept_as
            .iter()
            .find(|(s, _)| *s == side)
            .map(|(_, name)| name.to_string())
    };
    match cause {
        ConflictCause::TypeChange => {
            let Some((side, name)) = kept_as.first() else {
                return "a file on one side, a folder on the other; the folder takes the path"
                    .to_owned();
            };
            format!(
                "a file on the {side}, a folder on the {}; the folder takes the path, the \
                 file is kept as {name}",
                side.other()
            )
        }
        ConflictCause::NewFileAtDeletedPath => {
            let new_side = winner.unwrap_or(Side::Source);
            let old_side = new_side.other();
            let fate = kept(old_side).map_or_else(
                || "is replaced".to_owned(),
                |name| format!("is set aside as {name}"),
            );
            format!(
                "a new file on the {new_side} takes the path of a settled deletion; the \
                 {old_side}'s kept copy {fate}"
            )
        }
        _ => match winner {
            None => format!(
                "changed on both sides; both kept: the source's as {}, the destination's as {}",
                kept(Side::Source).unwrap_or_else(|| "a conflict name".to_owned()),
                kept(Side::Destination).unwrap_or_else(|| "a conflict name".to_owned()),
            ),
            Some(w) => {
                let l = w.other();
                let fate = kept(l).map_or_else(
                    || loser_fate.to_owned(),
                    |name| format!("is kept as {name}"),
                );
                format!("changed on both sides; the {w}'s version wins, the {l}'s {fate}")
            }
        },
    }
}

/// A dry run's line for one action, under its group's heading.
pub fn planned_line(r: &ActionReport, loser_fate: &str) -> String {
    let side = side_name(r.side);
    match &r.change {
        Change::Upload { replaces: true } | Change::Download { replaces: true } => {
            format!("  {} (replacing the {side}'s version)", r.path)
        }
        Change::Rename {
            from,
            keep_old: false,
        } => format!("  on the {side}: {from} → {}", r.path),
        Change::Rename {
            from,
            keep_old: true,
        } => format!(
            "  on the {side}: {from} → {} (a copy; {from} stays)",
            r.path
        ),
        Change::Conflict {
            cause,
            winner,
            kept_as,
        } => format!(
            "  {}: {}",
            r.path,
            conflict_text(*cause, *winner, kept_as, loser_fate)
        ),
        _ => format!("  {}", r.path),
    }
}

/// A real run's line for an action that completed (`-v`, the log file).
pub fn done_line(r: &ActionReport, loser_fate: &str) -> String {
    let side = side_name(r.side);
    match &r.change {
        Change::Upload { replaces } | Change::Download { replaces } => {
            let verb = if matches!(r.change, Change::Upload { .. }) {
                "uploaded"
            } else {
                "downloaded"
            };
            let note = if *replaces {
                format!(" (replaced the {side}'s version)")
            } else {
                String::new()
            };
            format!("{verb} {}{note}", r.path)
        }
        Change::Delete => format!("deleted on the {side}: {}", r.path),
        Change::Rename {
            from,
            keep_old: false,
        } => format!("renamed on the {side}: {from} → {}", r.path),
        Change::Rename {
            from,
            keep_old: true,
        } => format!("copied on the {side}: {from} → {}", r.path),
        Change::Conflict {
            cause,
            winner,
            kept_as,
        } => format!(
            "conflict {}: {}",
            r.path,
            conflict_text(*cause, *winner, kept_as, loser_fate)
        ),
        _ => format!("did something on the {side}: {}", r.path),
    }
}

/// The `action` value of an action in `--json --list`.
fn action_name(change: &Change) -> &'static str {
    match change {
        Change::Upload { .. } => "upload",
        Change::Download { .. } => "download",
        Change::Delete => "delete",
        Change::Rename { .. } => "rename",
        Change::Conflict { .. } => "conflict",
        _ => "other",
    }
}

/// One element of `--json --list`'s `actions`: `{"path", "side", "action"}`, with `from`
/// (and `keep_old`) for renames, `winner` and `kept_as` for conflicts.
pub fn action_json(r: &ActionReport) -> serde_json::Value {
    let mut v = serde_json::json!({
        "path": r.path,
        "side": side_name(r.side),
        "action": action_name(&r.change),
    });
    match &r.change {
        Change::Rename { from, keep_old } => {
            v["from"] = serde_json::json!(from);
            if *keep_old {
                v["keep_old"] = serde_json::Value::Bool(true);
            }
        }
        Change::Conflict {
            winner, kept_as, ..
        } => {
            v["winner"] = winner.map_or(serde_json::Value::Null, |w| w.as_str().into());
            v["kept_as"] = kept_as
                .iter()
                .map(|(side, path)| serde_json::json!({"side": side.as_str(), "path": path}))
                .collect();
        }
        _ => {}
    }
    v
}

/// Counts for the `--stats` line.
#[derive(Default)]
struct Tally {
    planned: Option<(u64, u64)>,
    done: u64,
    failed: u64,
    bytes: u64,
}

/// The `--stats` status line.
fn stats_line(t: &Tally, elapsed: Duration, dry_run: bool) -> String {
    let took = crate::human_age(elapsed);
    match t.planned {
        None if dry_run => format!("stats: {took} elapsed, planning"),
        None => format!("stats: {took} elapsed, listing and planning"),
        Some((actions, bytes)) => format!(
            "stats: {took} elapsed, {}/{actions} actions done, {} failed, {} of {} transferred",
            t.done + t.failed,
            t.failed,
            crate::human_bytes(t.bytes),
            crate::human_bytes(bytes),
        ),
    }
}

/// Writes to stdout; remembers a failure (a closed pipe) instead of stopping the run.
fn out(collected: &mut Collected, text: &str) {
    if collected.stdout_failed {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(text.as_bytes()).is_err() {
        collected.stdout_failed = true;
    }
}

/// A line on stderr, above the bars when they are shown.
fn err_line(bars: Option<&Bars>, line: &str) {
    let line = one_line(&syncengine::redact::redact(line)).into_owned();
    if bars.is_some_and(|b| b.println(&line)) {
        return;
    }
    eprintln!("{line}");
}

/// Waits for the next `--stats` tick; forever when there is no ticker.
async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Progress events taken from the channel at once.
const PROGRESS_BATCH: usize = 4096;
/// The pause between two batches of progress events.
const PROGRESS_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// Consumes the engine's events until both channels close (the engine is dropped), showing
/// them as `cfg` says; returns what the final report needs.
pub async fn run(
    cfg: Config,
    mut progress: UnboundedReceiver<ProgressEvent>,
    mut listing: Receiver<ProgressEvent>,
) -> Collected {
    let started = Instant::now();
    let mut collected = Collected {
        log: cfg.log,
        failures: Failures::new(cfg.json),
        ..Collected::default()
    };
    let mut bars = cfg.bars.then(Bars::new);
    let mut tally = Tally::default();
    // Items written into the open actions array so far (commas go between them).
    let mut listed = 0u64;
    if cfg.json && cfg.list {
        out(&mut collected, "{\"actions\":[");
        collected.json_open = true;
    }
    let listing_text = !cfg.json && !cfg.quiet;
    let mut ticker = cfg.stats_every.map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let (mut progress_open, mut listing_open) = (true, true);
    // Progress events are taken in batches, at most every PROGRESS_PAUSE: a run of many
    // small files sends two events per file, and waking for each one cost a thread wake-up
    // per event.
    let mut queued = std::collections::VecDeque::new();
    let mut next_batch = tokio::time::Instant::now();
    while progress_open || listing_open || !queued.is_empty() {
        let event = if let Some(e) = queued.pop_front() {
            e
        } else {
            tokio::select! {
            batch = async {
                tokio::time::sleep_until(next_batch).await;
                let mut batch = Vec::new();
                progress.recv_many(&mut batch, PROGRESS_BATCH).await;
                batch
            }, if progress_open => {
                if batch.is_empty() {
                    progress_open = false;
                } else {
                    next_batch = tokio::time::Instant::now() + PROGRESS_PAUSE;
                    queued.extend(batch);
                }
                continue;
            },
            e = listing.recv(), if listing_open => match e {
                Some(e) => e,
                None => { listing_open = false; continue; }
            },
            () = tick(&mut ticker) => {
                eprintln!("{}", stats_line(&tally, started.elapsed(), cfg.dry_run));
                continue;
            }
            }
        };
        if let Some(b) = bars.as_mut() {
            b.on_event(&event);
        }
        match event {
            ProgressEvent::Planned { actions, bytes } => tally.planned = Some((actions, bytes)),
            ProgressEvent::Bytes { delta, .. } => tally.bytes += delta,
            ProgressEvent::Done { report, .. } => {
                tally.done += 1;
                let line = done_line(&report, cfg.loser_fate);
                if cfg.verbose {
                    err_line(bars.as_ref(), &line);
                }
                if let Some(log) = collected.log.as_mut() {
                    log.line(&line);
                }
                if collected.json_open {
                    let sep = if listed > 0 { "," } else { "" };
                    listed += 1;
                    out(&mut collected, &format!("{sep}{}", action_json(&report)));
                }
            }
            ProgressEvent::Failed { error, report, .. } => {
                tally.failed += 1;
                let line = format!("error: {}: {error}", report.path);
                if cfg.verbose {
                    err_line(bars.as_ref(), &line);
                }
                if let Some(log) = collected.log.as_mut() {
                    log.line(&line);
                }
                collected.failures.add(&report, &error);
            }
            ProgressEvent::Warning(w) => {
                // Printed above the bars. If the terminal went away there is nowhere to
                // print, and the final report repeats what was not printed.
                if let Some(b) = bars.as_ref()
                    && b.println(&crate::warning_line(&w))
                {
                    collected.printed_warnings.insert(w);
                }
            }
            ProgressEvent::GroupPlanned { group, count } => {
                let heading = group_heading(group, count);
                if listing_text {
                    out(&mut collected, &format!("{}\n", one_line(&heading)));
                }
                if let Some(log) = collected.log.as_mut() {
                    log.line(&heading);
                }
            }
            ProgressEvent::WouldDo(report) => {
                let line = planned_line(&report, cfg.loser_fate);
                if listing_text {
                    out(&mut collected, &format!("{}\n", one_line(&line)));
                }
                if let Some(log) = collected.log.as_mut() {
                    log.line(line.trim_start());
                }
                if collected.json_open {
                    let sep = if listed > 0 { "," } else { "" };
                    listed += 1;
                    out(&mut collected, &format!("{sep}{}", action_json(&report)));
                }
            }
            _ => {}
        }
    }
    if let Some(b) = bars {
        b.finish();
    }
    collected
}

/// Ends the JSON object on stdout: the run's counts after the actions array when it is open,
/// else the whole object. `stats` is serialised as the CLI contract says, with `error_list`
/// added.
pub fn print_json(stats: &SyncStats, collected: &mut Collected) -> Result<(), String> {
    let body = serde_json::to_string(stats).map_err(|e| e.to_string())?;
    let errors =
        serde_json::to_string(&collected.failures.json_list()).map_err(|e| e.to_string())?;
    // `{"uploaded":…,"conflict_paths":[…]}` → its members, to follow the actions array.
    let members = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or("the result did not serialise to an object")?;
    let text = if collected.json_open {
        format!("],{members},\"error_list\":{errors}}}\n")
    } else {
        format!("{{{members},\"error_list\":{errors}}}\n")
    };
    collected.json_open = false;
    out(collected, &text);
    let _ = std::io::stdout().flush();
    if collected.stdout_failed {
        return Err("cannot write to stdout".to_owned());
    }
    Ok(())
}

/// The JSON object of a run that failed or stopped: `{"error": …, "exit_status": …}` (after
/// the actions array when `--json --list` had opened it), so that scripts always have one
/// object to parse.
pub fn print_json_failure(message: &str, exit_status: u8, json_open: bool) {
    let tail = serde_json::json!({
        "error": syncengine::redact::redact(message),
        "exit_status": exit_status,
    })
    .to_string();
    let text = if json_open {
        // `{"error":…}` → `],"error":…}`.
        format!("],{}\n", &tail[1..])
    } else {
        format!("{tail}\n")
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// The UTC time now as `2026-12-04T16:31:03Z`.
pub(crate) fn utc_now() -> String {
    utc_time(SystemTime::now())
}

/// `t` in UTC as `2026-12-04T16:31:03Z`.
pub(crate) fn utc_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(path: &str, change: Change, side: Option<Side>) -> ActionReport {
        let mut r = ActionReport::of(
            &syncengine::plan::Action::Delete {
                side: Side::Destination,
                entry: syncengine::Entry::new(RelPath::new(path).unwrap(), 1),
            },
            Vec::new(),
        );
        r.change = change;
        r.side = side;
        r
    }

    #[test]
    fn failures_of_one_cause_are_one_line_with_three_paths() {
        let mut f = Failures::new(true);
        for i in 0..10 {
            let path = format!("dir/f{i}.txt");
            let r = report(
                &path,
                Change::Upload { replaces: false },
                Some(Side::Destination),
            );
            f.add(
                &r,
                &format!(
                    "local: permission denied: /tmp/b/{path}.syncengine-tmp-0123456789abcdef \
                     (Permission denied (os error 13))"
                ),
            );
        }
        let r = report("x.txt", Change::Delete, Some(Side::Source));
        f.add(&r, "local: not found: x.txt");
        let lines = f.summary_lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            lines[0],
            "error: 10 files failed: local: permission denied: /tmp/b/….syncengine-tmp-… \
             (Permission denied (os error 13)) (dir/f0.txt, dir/f1.txt, dir/f2.txt and 7 more)"
        );
        assert_eq!(lines[1], "error: x.txt: local: not found: x.txt");
        assert_eq!(f.json_list().as_array().unwrap().len(), 11);
        assert_eq!(f.json_list()[10]["side"], "source");
    }

    #[test]
    fn causes_are_capped() {
        let mut f = Failures::new(false);
        for i in 0..(MAX_CAUSES + 5) {
            let r = report(&format!("f{i}"), Change::Delete, None);
            f.add(&r, &format!("cause number {i}"));
        }
        let lines = f.summary_lines();
        assert_eq!(lines.len(), MAX_CAUSES + 1);
        assert!(
            lines[MAX_CAUSES].contains("5 more files failed"),
            "{lines:?}"
        );
        assert_eq!(
            f.json_list(),
            serde_json::json!([]),
            "no list kept without --json"
        );
    }

    #[test]
    fn stats_lines_read_well() {
        let mut t = Tally::default();
        assert_eq!(
            stats_line(&t, Duration::from_secs(5), false),
            "stats: 5s elapsed, listing and planning"
        );
        t.planned = Some((10, 4096));
        t.done = 3;
        t.failed = 1;
        t.bytes = 2048;
        assert_eq!(
            stats_line(&t, Duration::from_secs(130), false),
            "stats: 2m elapsed, 4/10 actions done, 1 failed, 2.0 KiB of 4.0 KiB transferred"
        );
    }

    #[test]
    fn utc_time_is_iso() {
        let t = utc_now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }
}
