//! Run stamps for tests that must predict the names a run makes. Included with
//! `#[path = "support/stamps.rs"] mod stamps;`.

/// The stamps (`YYYYMMDDTHHMMSSZ`, UTC) a run starting now may give its trash, stepping
/// and conflict names: from 2 s before to 30 s after.
pub fn stamps_around_now() -> Vec<String> {
    let now = time::OffsetDateTime::now_utc();
    (-2i64..30)
        .map(|s| {
            let t = now + time::Duration::seconds(s);
            format!(
                "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .collect()
}
