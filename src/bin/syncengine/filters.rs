//! The filter flags of `syncengine sync` and `check`: `--exclude-from` files, `--include` and
//! `--exclude` patterns checked before the run, and `--max-size` values in rclone's units.

use std::path::PathBuf;
use std::time::Duration;

use syncengine::{IgnoreRules, SyncOptions};

/// The filter flags, shared by `sync` and `check` (a check compares what a sync with the
/// same flags would sync).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct FilterArgs {
    /// Ignore paths matching PATTERN (gitignore syntax) on both sides; repeatable. Adds to
    /// each root's .syncignore.
    #[arg(long, value_name = "PATTERN")]
    pub(crate) exclude: Vec<String>,
    /// Read --exclude patterns from FILE, one per line (# comments and blank lines
    /// skipped); repeatable. A missing FILE is a usage error.
    #[arg(long, value_name = "FILE")]
    pub(crate) exclude_from: Vec<PathBuf>,
    /// Sync only files matching PATTERN (gitignore syntax: any depth unless it holds a /),
    /// as rclone's --include; repeatable. Other files are left alone on both sides; an
    /// --exclude or .syncignore pattern still wins (see FILTERS).
    #[arg(long, value_name = "PATTERN")]
    pub(crate) include: Vec<String>,
    /// Leave alone files larger than SIZE on either side: KiB, or with a suffix B, K, M,
    /// G, T, P (binary units, as rclone: 500K, 100M, 1.5G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) max_size: Option<u64>,
    /// Leave alone files modified less than DURATION ago on either side (only older files
    /// are synced, as rclone). Units: ms, s, m, h, d, w (e.g. 10m, 2h, 1d).
    #[arg(long, value_name = "DURATION", value_parser = syncengine::timeouts::parse_duration)]
    pub(crate) min_age: Option<Duration>,
}

impl FilterArgs {
    /// `options` with these filters: the `--exclude-from` files read, every pattern checked.
    ///
    /// # Errors
    /// A usage message: an `--exclude-from` file that cannot be read, or a pattern that does
    /// not parse (named with its flag, file and line).
    pub(crate) fn apply(&self, options: SyncOptions) -> Result<SyncOptions, String> {
        let mut excludes = self.exclude.clone();
        excludes.extend(read_exclude_from(&self.exclude_from)?);
        check_patterns(&excludes, &self.include)?;
        let mut options = options
            .with_excludes(excludes)
            .with_includes(self.include.iter().cloned());
        if let Some(bytes) = self.max_size {
            options = options.with_max_size(bytes);
        }
        if let Some(age) = self.min_age {
            options = options.with_min_age(age);
        }
        Ok(options)
    }
}

/// The patterns of `--exclude-from` files, in the order the files were given, each file's
/// lines top to bottom: one pattern per line, leading whitespace, blank lines and `#`
/// comments skipped (as in a `.syncignore`).
///
/// # Errors
/// A message naming the file when one cannot be read (missing, a folder, not UTF-8), or
/// naming the file and line when a pattern does not parse.
pub(crate) fn read_exclude_from(files: &[PathBuf]) -> Result<Vec<String>, String> {
    let mut patterns = Vec::new();
    for file in files {
        let shown = file.display();
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("--exclude-from {shown}: cannot read the file: {e}"))?;
        for (i, line) in text.lines().enumerate() {
            let pattern = line.trim_start();
            if pattern.is_empty() || pattern.starts_with('#') {
                continue;
            }
            IgnoreRules::new(&[pattern.to_owned()])
                .map_err(|e| format!("--exclude-from {shown}, line {}: {e}", i + 1))?;
            patterns.push(pattern.to_owned());
        }
    }
    Ok(patterns)
}

/// Checks `--exclude` and `--include` patterns before anything is opened, so a typo is a
/// usage error (exit 2) rather than a failed run.
///
/// # Errors
/// The message of the first pattern that does not parse (it names the pattern and flag).
pub(crate) fn check_patterns(excludes: &[String], includes: &[String]) -> Result<(), String> {
    IgnoreRules::new(excludes)
        .and_then(|r| r.with_includes(includes))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Reads a size as rclone does (`--max-size`): a number of KiB, or a number with a suffix
/// `B` (bytes), `K`, `M`, `G`, `T` or `P` (binary units: KiB, MiB, GiB, TiB, PiB; any case,
/// `Ki`/`KiB` spellings accepted). Fractions are allowed (`1.5G`); the result is rounded
/// down to whole bytes.
///
/// # Errors
/// A message saying what is wrong, with examples.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a size: a number of KiB, or with a suffix B, K, M, G, T or P \
             (binary units: 500K, 100M, 1.5G, 4096B)"
        )
    };
    let s = text.trim();
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    if number.is_empty() || number.starts_with('.') {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let unit = suffix
        .strip_suffix("iB")
        .or_else(|| suffix.strip_suffix('i'))
        .filter(|u| u.len() == 1 && !u.eq_ignore_ascii_case("b"))
        .unwrap_or(suffix);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "k" => 10,
        "b" => 0,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad()),
    };
    let bytes = (value * 2f64.powi(shift)).floor();
    // u64::MAX as f64 rounds up to 2^64, so `<` keeps the cast in range.
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large a size"));
    }
    // In range and non-negative (checked above; the text has no sign), so the cast is exact
    // up to f64's precision.
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_rclone_units() {
        for (text, bytes) in [
            ("0", 0),
            ("1", 1024),
            ("100", 102_400),
            ("10b", 10),
            ("4096B", 4096),
            ("1k", 1024),
            ("500K", 512_000),
            ("100M", 104_857_600),
            ("100m", 104_857_600),
            ("1.5G", 1_610_612_736),
            ("2T", 2 << 40),
            ("1P", 1 << 50),
            ("10MiB", 10 << 20),
            ("3Ki", 3072),
            (" 7M ", 7 << 20),
            ("0.5K", 512),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in [
            "",
            "M",
            "-1M",
            "1.2.3M",
            "10MB",
            "10X",
            "1 M",
            ".5M",
            "1Bi",
            "1e3",
            "99999999P",
        ] {
            let err = parse_size(bad).err().unwrap_or_default();
            assert!(err.contains(&format!("{bad:?}")), "{bad:?}: {err}");
        }
    }

    #[test]
    fn exclude_from_skips_comments_and_blank_lines_and_names_bad_lines() {
        let dir = std::env::temp_dir().join(format!("se-filters-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let good = dir.join("good");
        let bad = dir.join("bad");
        std::fs::write(
            &good,
            "# build output\n\n  build/\n*.tmp\r\n   # indented\n!keep.tmp\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&bad, "ok\n[z-a]\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            read_exclude_from(std::slice::from_ref(&good)),
            Ok(vec!["build/".into(), "*.tmp".into(), "!keep.tmp".into()])
        );
        let err = read_exclude_from(&[good.clone(), bad.clone()])
            .err()
            .unwrap_or_default();
        assert!(err.contains(&format!("{}, line 2", bad.display())), "{err}");
        let missing = dir.join("missing");
        let err = read_exclude_from(std::slice::from_ref(&missing))
            .err()
            .unwrap_or_default();
        assert!(err.contains(&missing.display().to_string()), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
