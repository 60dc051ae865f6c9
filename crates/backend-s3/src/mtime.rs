//! Modification times as object metadata, under the key and in the format rclone uses.
//!
//! | store | metadata key | format |
//! |---|---|---|
//! | S3 | `mtime` (`x-amz-meta-mtime`) | seconds since the epoch, decimal: `1600000000.123456789` |
//! | Azure | `mtime` (`x-ms-meta-mtime`) | RFC 3339, 9 fraction digits: `2020-09-13T12:26:40.123456789Z` |
//! | GCS | `mtime` (`x-goog-meta-mtime`) | RFC 3339 with nanoseconds; gsutil's `goog-reserved-file-mtime` (whole seconds) is read too |
//!
//! Reading is lenient: either format is accepted on any store, so objects written by other
//! tools still read back.

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use object_store::{Attribute, AttributeValue, Attributes};
use syncengine_core::entry::{nanos_to_system_time, system_time_to_nanos};

use crate::config::StoreKind;

/// The metadata key rclone uses for the modification time on S3, Azure and GCS.
pub const MTIME_KEY: &str = "mtime";
/// gsutil's key (whole seconds), read on GCS when `mtime` is absent.
pub const GSUTIL_MTIME_KEY: &str = "goog-reserved-file-mtime";

/// Formats `t` the way rclone writes it on `kind`.
pub fn format(kind: StoreKind, t: SystemTime) -> String {
    match kind {
        StoreKind::S3 => {
            let n = system_time_to_nanos(t);
            let sign = if n < 0 { "-" } else { "" };
            let a = n.unsigned_abs();
            format!("{sign}{}.{:09}", a / 1_000_000_000, a % 1_000_000_000)
        }
        StoreKind::Azure | StoreKind::Gcs => {
            DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Nanos, true)
        }
    }
}

/// Parses a decimal-seconds or RFC 3339 time.
pub fn parse(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.with_timezone(&Utc).into());
    }
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: i64 = digits.parse().ok()?;
    let total = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    Some(nanos_to_system_time(if neg { -total } else { total }))
}

/// Returns the attributes that record `t` on `kind`.
pub fn attributes(kind: StoreKind, t: SystemTime) -> Attributes {
    Attributes::from_iter([(Attribute::Metadata(MTIME_KEY.into()), format(kind, t))])
}

/// Reads the modification time from an object's metadata, if it has one.
pub fn from_attributes(attrs: &Attributes) -> Option<SystemTime> {
    let get =
        |k: &'static str| -> Option<&AttributeValue> { attrs.get(&Attribute::Metadata(k.into())) };
    if let Some(v) = get(MTIME_KEY) {
        return parse(v.as_ref());
    }
    let secs: i64 = get(GSUTIL_MTIME_KEY)?.as_ref().trim().parse().ok()?;
    Some(nanos_to_system_time(secs.checked_mul(1_000_000_000)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_format_round_trips_exactly() {
        for n in [1_600_000_000_123_456_789_i64, 0, 5, -1_500_000_000] {
            let t = nanos_to_system_time(n);
            let s = format(StoreKind::S3, t);
            assert_eq!(parse(&s), Some(t), "{s}");
        }
        assert_eq!(
            format(
                StoreKind::S3,
                nanos_to_system_time(1_600_000_000_000_000_001)
            ),
            "1600000000.000000001"
        );
        assert_eq!(
            format(StoreKind::S3, nanos_to_system_time(-1_500_000_000)),
            "-1.500000000"
        );
    }

    #[test]
    fn rfc3339_round_trips() {
        let t = nanos_to_system_time(1_600_000_000_123_456_789);
        let s = format(StoreKind::Azure, t);
        assert_eq!(s, "2020-09-13T12:26:40.123456789Z");
        assert_eq!(parse(&s), Some(t));
        assert_eq!(format(StoreKind::Gcs, t), s);
    }

    #[test]
    fn parses_rclone_float_output() {
        // rclone formats a float64 with 9 digits; short fractions and none at all also occur.
        assert_eq!(
            parse("1600000000.5"),
            Some(nanos_to_system_time(1_600_000_000_500_000_000))
        );
        assert_eq!(
            parse("1600000000"),
            Some(nanos_to_system_time(1_600_000_000_000_000_000))
        );
        assert_eq!(parse("abc"), None);
        assert_eq!(parse("1.2.3"), None);
    }

    #[test]
    fn gsutil_key_is_read() {
        let attrs =
            Attributes::from_iter([(Attribute::Metadata(GSUTIL_MTIME_KEY.into()), "1600000000")]);
        assert_eq!(
            from_attributes(&attrs),
            Some(nanos_to_system_time(1_600_000_000_000_000_000))
        );
    }
}
