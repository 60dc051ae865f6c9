//! How long a backend waits: to connect, and without progress.
//!
//! A transfer is limited by lack of progress, never by its total duration: a 375 MB download
//! over a slow link must succeed as long as bytes keep coming. Every backend takes a
//! [`Timeouts`] (rclone's `--contimeout` and `--timeout`; defaults 60 s and 5 minutes), which
//! the CLI fills from its flags and the library from the environment
//! (`SYNCENGINE_CONTIMEOUT`, `SYNCENGINE_TIMEOUT`).
//!
//! ```
//! use std::time::Duration;
//! use syncengine_core::timeouts::{Timeouts, parse_duration};
//!
//! let t = Timeouts::default();
//! assert_eq!((t.connect, t.idle), (Duration::from_secs(60), Duration::from_secs(300)));
//! assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
//! assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
//! assert!(parse_duration("soon").is_err());
//! ```

use std::time::Duration;

/// The environment variable for [`Timeouts::connect`].
pub const CONTIMEOUT_ENV: &str = "SYNCENGINE_CONTIMEOUT";
/// The environment variable for [`Timeouts::idle`].
pub const TIMEOUT_ENV: &str = "SYNCENGINE_TIMEOUT";

/// How long a backend waits to connect, and how long a request or transfer may go without
/// progress (no byte sent or received) before it fails as transient (and is retried).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Time to open a connection (TCP, TLS, SSH handshake). Default 60 s.
    pub connect: Duration,
    /// Time a request may wait without progress. Default 5 minutes. Never a limit on a
    /// whole transfer.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(60),
            idle: Duration::from_secs(300),
        }
    }
}

impl Timeouts {
    /// The defaults, overridden by `SYNCENGINE_CONTIMEOUT` and `SYNCENGINE_TIMEOUT` where set
    /// (durations as [`parse_duration`] reads them).
    ///
    /// # Errors
    /// A message naming the variable and its value when one cannot be read.
    pub fn from_env() -> Result<Timeouts, String> {
        Timeouts::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), with the variables looked up by `var` (for
    /// embedders that keep settings elsewhere, and tests).
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Timeouts, String> {
        let mut t = Timeouts::default();
        for (name, slot) in [(CONTIMEOUT_ENV, &mut t.connect), (TIMEOUT_ENV, &mut t.idle)] {
            if let Some(v) = var(name)
                && !v.trim().is_empty()
            {
                *slot = parse_duration(&v).map_err(|e| format!("{name}={v:?}: {e}"))?;
            }
        }
        Ok(t)
    }
}

/// Reads a duration as rclone and the config file write them: a number with a unit (`ms`,
/// `s`, `m`, `h`, `d`, `w`), several in a row (`1h30m`), or a bare number of seconds. Zero
/// is refused: a timeout of nothing would fail everything (and `--min-age 0` filters
/// nothing).
///
/// # Errors
/// A message saying what is wrong, with an example.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let bad = || format!("{text:?} is not a duration (examples: 90s, 5m, 1h30m, 250ms)");
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return positive(Duration::from_secs(secs), text);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            "w" => Duration::from_secs(n.saturating_mul(7 * 86_400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(unit);
        rest = &rest[unit_len..];
    }
    positive(total, text)
}

fn positive(d: Duration, text: &str) -> Result<Duration, String> {
    if d.is_zero() {
        Err(format!("{text:?}: a duration must be longer than zero"))
    } else {
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_rclone_style() {
        for (text, secs) in [
            ("90", 90),
            ("90s", 90),
            ("5m", 300),
            ("1h30m", 5400),
            ("2d", 172_800),
            ("1w", 604_800),
        ] {
            assert_eq!(
                parse_duration(text).unwrap(),
                Duration::from_secs(secs),
                "{text}"
            );
        }
        for bad in ["", "0", "0s", "m", "5x", "-5s", "1.5m", "s5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
