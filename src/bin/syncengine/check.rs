//! `syncengine check SOURCE DESTINATION`: do both sides hold the same files with the same
//! content? (See [`syncengine::check`].)

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use syncengine::check::{CheckOptions, CheckReport, Difference, DifferenceKind};
use syncengine::{SyncEngine, SyncError, SyncMode, SyncOptions, SyncPair};

use super::{
    EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, TimeoutArgs, Verbosity, default_state_dir,
    output, timeouts_of, usage_error_in,
};

pub(crate) const CHECK_AFTER_HELP: &str = "\
WHAT IS COMPARED:
  The files of both roots, after the pair's filters, the same flags as sync's and applied as
  sync applies them: --exclude, --exclude-from, --include and each root's .syncignore, and
  --max-size / --min-age (a path where either side's file is too large or too young is left
  out on both sides, counted as skipped). Excluded files never appear; the engine's .syncengine/
  folders (trash, root id) and temp files are never compared. Content is compared by a hash
  both sides provide (MD5: listed by S3 for files uploaded in one part; computed on demand on
  local disk, which reads every local file of equal size), else by size only, and the summary
  says which. --download reads both files and compares their bytes (every file present on
  both sides with equal sizes is read in full: slow and, on cloud storage, billed). Files of
  different sizes differ without being read. Modification times are not compared; but where
  only sizes could be compared and the pair's state shows that one side's file changed since
  the last sync while the other's did not, it differs (\"changed on the source since the last
  sync\"): the next sync would copy it.

KEPT BY BACKUP:
  A file on one side only whose deletion on the other side a backup mode kept on purpose
  (the pair's state, found by its two roots in --state-dir as sync finds it, records that the
  other side deleted it) is listed as 'kept by backup' and is not a difference.

OUTPUT:
  One line per difference on stdout, in path order:
    missing on destination: PATH
    missing on source: PATH           (not with --one-way)
    differs (md5|size|bytes): PATH
    kept by backup (deleted on source|destination): PATH
  Paths that could not be listed, hashed or read are errors on stderr. Then one summary line.
  -q prints errors only. --json prints exactly one JSON object on stdout:
  {\"equal\", \"method\", \"one_way\", \"missing_on_destination\": [..], \"missing_on_source\": [..],
   \"differs\": [{\"path\", \"by\"}], \"kept_by_backup\": [{\"path\", \"deleted_on\"}],
   \"errors\": [{\"path\", \"side\", \"message\"}], \"counts\": {\"source_files\",
   \"destination_files\", \"compared\", \"size_only\", \"matched\", \"missing_on_destination\",
   \"missing_on_source\", \"differs\", \"kept_by_backup\", \"errors\", \"skipped\"}}

EXIT STATUS:
  0  both sides hold the same files with the same content
  1  differences found, or a path could not be listed, hashed or read, or a listing failed
  2  usage error (bad option or pattern, unknown URL scheme, backend not compiled in)
  4  a side could not be reached or logged into

EXAMPLES:
  After a sync, verify the copy on a USB disk:
    syncengine check ~/photos /mnt/usb/photos
  Verify a backup in S3 holds every local file (extra files in the bucket are fine):
    syncengine check ~/photos s3://my-bucket/photos --one-way
  Compare the bytes where no hash helps (WebDAV, SFTP):
    syncengine check ./site webdavs://dav.example.com/site --download
  The same filters as the sync, machine-readable:
    syncengine check ./a ./b --exclude '*.tmp' --json
";

/// The `check` subcommand's arguments.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The source: a local path or a URL (see `syncengine sync --help`, LOCATIONS).
    #[arg(value_name = "SOURCE")]
    source: String,
    /// The destination: a local path or a URL.
    #[arg(value_name = "DESTINATION")]
    destination: String,
    #[command(flatten)]
    filters: crate::filters::FilterArgs,
    /// Compare the bytes of both files instead of hashes (reads every file present on both
    /// sides with equal sizes).
    #[arg(long)]
    download: bool,
    /// Only check that the destination holds every source file with the same content;
    /// destination-only files are fine.
    #[arg(long)]
    one_way: bool,
    /// Where pair state is kept, as for sync (used to recognise files a backup mode keeps)
    /// [default: $SYNCENGINE_STATE_DIR, else $XDG_STATE_HOME/syncengine, else
    /// ~/.local/state/syncengine].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Print the result as one JSON object on stdout (see OUTPUT).
    #[arg(long)]
    json: bool,
    /// Sort both listings in the engine even when a backend claims ordered listings (needed
    /// only when a check said a side listed out of order).
    #[arg(long)]
    sort_listings: bool,
    #[command(flatten)]
    timeouts: TimeoutArgs,
}

/// Runs `syncengine check` and returns the exit status.
pub(crate) fn run_check(args: CheckArgs, verbosity: Verbosity) -> u8 {
    let Some(state_dir) = args.state_dir.clone().or_else(default_state_dir) else {
        return stopped(
            &args,
            EXIT_USAGE,
            "no state directory: pass --state-dir DIR or set SYNCENGINE_STATE_DIR \
             (neither XDG_STATE_HOME nor HOME is set)",
        );
    };
    crate::block_on(check_async(&args, state_dir, verbosity), true)
}

/// A check that stopped before its report: with `--json`, stdout still gets one object,
/// `{"error", "exit_status"}`, as for `sync --json`.
fn stopped(args: &CheckArgs, code: u8, msg: &str) -> u8 {
    if args.json {
        output::print_json_failure(msg, code, false);
    }
    if code == EXIT_USAGE {
        usage_error_in("check", msg)
    } else {
        say(&format!("error: {msg}"));
        code
    }
}

/// `eprintln!` with secrets redacted.
fn say(msg: &str) {
    eprintln!("{}", syncengine::redact::redact(msg));
}

fn build_pair(args: &CheckArgs) -> Result<SyncPair, (u8, String)> {
    // The mode plays no part in a check (the pair's id is its two roots); the options carry
    // the pair's filters, the same flags as sync's.
    let options = args
        .filters
        .apply(SyncOptions::default())
        .map_err(|e| (EXIT_USAGE, e))?;
    let timeouts = timeouts_of(&args.timeouts)?;
    let (source, destination) = crate::open_sides(&args.source, &args.destination, timeouts)?;
    Ok(SyncPair::new(source.client, destination.client, SyncMode::TwoWay).with_options(options))
}

async fn check_async(args: &CheckArgs, state_dir: PathBuf, verbosity: Verbosity) -> u8 {
    let pair = match build_pair(args) {
        Ok(p) => p,
        Err((code, msg)) => return stopped(args, code, &msg),
    };
    let engine = SyncEngine::new(&state_dir);
    let opts = CheckOptions::default()
        .with_download(args.download)
        .with_one_way(args.one_way)
        .with_sort_listings(args.sort_listings);
    let mut collected: Vec<Difference> = Vec::new();
    let (json, quiet) = (args.json, verbosity == Verbosity::Quiet);
    let mut broken_pipe = false;
    let mut sink = |d: Difference| {
        if let DifferenceKind::Error { side, message } = &d.kind {
            say(&format!("error: {} on the {side}: {message}", d.path));
        }
        if json {
            collected.push(d);
        } else if !quiet
            && !broken_pipe
            && let Some(line) = line_of(&d)
        {
            let mut out = std::io::stdout().lock();
            broken_pipe = writeln!(out, "{}", output::one_line(&line)).is_err();
        }
    };
    let result = engine.check_pair(&pair, &opts, &mut sink).await;
    let report = match result {
        Ok(r) => r,
        Err(e @ SyncError::Unreachable { .. }) => {
            return stopped(args, EXIT_UNREACHABLE, &e.to_string());
        }
        Err(SyncError::Config(msg)) => return stopped(args, EXIT_USAGE, &msg),
        Err(e) => return stopped(args, EXIT_FAILED, &e.to_string()),
    };
    if json {
        let value = json_of(&report, &collected, args.one_way);
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{value}").and_then(|()| out.flush()).is_err() {
            return EXIT_FAILED;
        }
    } else if !quiet {
        println!("{}", summary(&report, args.one_way));
    }
    if broken_pipe {
        return EXIT_FAILED;
    }
    if report.is_equal() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// The stdout line of one difference; errors go to stderr only.
fn line_of(d: &Difference) -> Option<String> {
    let line = match &d.kind {
        DifferenceKind::MissingOnDestination => format!("missing on destination: {}", d.path),
        DifferenceKind::MissingOnSource => format!("missing on source: {}", d.path),
        DifferenceKind::Differs { by } => format!("differs ({by}): {}", d.path),
        DifferenceKind::KeptByBackup { deleted_on } => {
            format!("kept by backup (deleted on {deleted_on}): {}", d.path)
        }
        _ => return None,
    };
    Some(line)
}

/// `1 234 567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn files(n: u64) -> String {
    if n == 1 {
        "1 file".to_owned()
    } else {
        format!("{} files", grouped(n))
    }
}

/// The summary line: equal or not, what differs, and how contents were compared.
fn summary(r: &CheckReport, one_way: bool) -> String {
    let how = match r.method {
        "md5" if r.size_only > 0 => format!(
            "by MD5 ({} by size only: one side lists no MD5 for them, e.g. multipart uploads; \
             --download compares bytes)",
            grouped(r.size_only)
        ),
        "md5" => "by MD5".to_owned(),
        "bytes" => "byte by byte (--download)".to_owned(),
        _ => {
            "by size only: no hash both sides provide — use --download to compare bytes".to_owned()
        }
    };
    let mut parts = Vec::new();
    for (n, what) in [
        (r.missing_on_destination, "missing on destination"),
        (r.missing_on_source, "missing on source"),
        (r.differs, if r.differs == 1 { "differs" } else { "differ" }),
        (r.errors, "unreadable (see errors)"),
    ] {
        if n > 0 {
            parts.push(format!("{} {what}", grouped(n)));
        }
    }
    let lead = if r.is_equal() {
        if one_way {
            "equal (one way: the destination holds every source file)".to_owned()
        } else {
            "equal".to_owned()
        }
    } else {
        format!("not equal: {}", parts.join(", "))
    };
    let mut line = format!("{lead}; compared {} {how}", files(r.compared));
    if r.kept_by_backup > 0 {
        line.push_str(&format!(
            "; {} kept by backup (not differences)",
            grouped(r.kept_by_backup)
        ));
    }
    if r.skipped > 0 {
        line.push_str(&format!(
            "; {} left out by --max-size/--min-age",
            grouped(r.skipped)
        ));
    }
    line
}

fn json_of(r: &CheckReport, diffs: &[Difference], one_way: bool) -> serde_json::Value {
    let mut missing_dst = Vec::new();
    let mut missing_src = Vec::new();
    let mut differs = Vec::new();
    let mut kept = Vec::new();
    let mut errors = Vec::new();
    for d in diffs {
        match &d.kind {
            DifferenceKind::MissingOnDestination => missing_dst.push(serde_json::json!(d.path)),
            DifferenceKind::MissingOnSource => missing_src.push(serde_json::json!(d.path)),
            DifferenceKind::Differs { by } => {
                differs.push(serde_json::json!({"path": d.path, "by": by}));
            }
            DifferenceKind::KeptByBackup { deleted_on } => kept.push(serde_json::json!({
                "path": d.path, "deleted_on": deleted_on.as_str()
            })),
            DifferenceKind::Error { side, message } => errors.push(serde_json::json!({
                "path": d.path,
                "side": side.as_str(),
                "message": syncengine::redact::redact(message),
            })),
            _ => {}
        }
    }
    serde_json::json!({
        "equal": r.is_equal(),
        "method": r.method,
        "one_way": one_way,
        "missing_on_destination": missing_dst,
        "missing_on_source": missing_src,
        "differs": differs,
        "kept_by_backup": kept,
        "errors": errors,
        "counts": r,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1234), "1 234");
        assert_eq!(grouped(1_234_567), "1 234 567");
    }

    #[test]
    fn the_summary_names_the_method() {
        let mut r = CheckReport::default();
        r.method = "size";
        r.compared = 1234;
        r.matched = 1234;
        let line = summary(&r, false);
        assert!(
            line.starts_with("equal; compared 1 234 files by size only"),
            "{line}"
        );
        assert!(line.contains("--download"), "{line}");
        r.method = "md5";
        r.differs = 2;
        assert_eq!(
            summary(&r, false),
            "not equal: 2 differ; compared 1 234 files by MD5"
        );
        r.differs = 1;
        assert_eq!(
            summary(&r, false),
            "not equal: 1 differs; compared 1 234 files by MD5"
        );
    }
}
