//! Removing what killed or interrupted runs left behind under a root: the engine's own temp
//! files (local disk, SFTP, WebDAV) and unfinished multipart uploads (S3). See
//! [`StorageClient::clean_up`].
//!
//! Only leftovers of the engine's own writes are ever candidates: a temp file in the exact
//! format [`temp_file_name`](crate::ignore_rules::temp_file_name) makes (a user file that
//! merely resembles it stays) or an empty temp folder in the exact format
//! [`temp_dir_name`](crate::ignore_rules::temp_dir_name) makes (SFTP's anchors, removed only
//! while empty), outside any trash folder (`.syncengine/trash/`, which the
//! engine prunes by age itself), and a multipart upload under the root's prefix that was
//! never completed (it is not an object: nothing reads it, and it costs storage until
//! aborted). Nothing else is touched: not user files, not the trash, not the pair state.
//!
//! ```
//! use std::time::Duration;
//! use syncengine_core::cleanup::CleanupOptions;
//! use syncengine_core::{MemoryClient, StorageClient};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let client = MemoryClient::new();
//! let opts = CleanupOptions::new(Duration::from_secs(3600)).with_dry_run(true);
//! let report = client.clean_up(&opts).await?;
//! // The in-memory client writes no temp files and has no multipart uploads.
//! assert!(report.found.is_empty() && report.failed.is_empty());
//! # Ok::<(), syncengine_core::Error>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;

use crate::client::StorageClient;
use crate::error::Result;
use crate::ignore_rules::{STALE_TEMP_AGE, STATE_DIR_NAME, StaleTemps};
use crate::path::RelPath;

/// Starts `job`, the removal of what a cancelled operation leaves behind (a temporary file, an
/// anchor folder, an unfinished multipart upload), in the background on the current tokio
/// runtime. For `Drop` implementations, which cannot await: a write whose future is dropped
/// (a cancelled run, a timeout) cleans up after itself this way. Wrap `job` in a
/// [`TaskTracker`](tokio_util::task::TaskTracker)'s `track_future` when the client's
/// [`settle`](StorageClient::settle) should wait for it.
///
/// Outside a runtime (a process already shutting down) nothing can run: `what` is logged as
/// left behind, for [`StorageClient::clean_up`] and the next run's removal of stale temps.
/// Returns whether the job was started.
pub fn remove_in_background(what: &str, job: impl Future<Output = ()> + Send + 'static) -> bool {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(job);
            true
        }
        Err(_) => {
            tracing::warn!(
                what,
                "no async runtime to remove it: left for `syncengine cleanup`"
            );
            false
        }
    }
}

/// The name of the trash folder inside a root's `.syncengine/` folder.
pub const TRASH_DIR_NAME: &str = "trash";

/// What [`StorageClient::clean_up`] removes and how.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupOptions {
    /// Only leftovers untouched (temp files) or started (multipart uploads) longer ago than
    /// this are removed. Default: a day ([`STALE_TEMP_AGE`]), the age after which the engine
    /// itself removes temp files it comes across. A younger leftover may be a write still in
    /// progress, on this machine or another one syncing with the same root.
    pub older_than: Duration,
    /// Only find and report; remove nothing.
    pub dry_run: bool,
}

impl Default for CleanupOptions {
    fn default() -> Self {
        CleanupOptions {
            older_than: STALE_TEMP_AGE,
            dry_run: false,
        }
    }
}

impl CleanupOptions {
    /// Removes leftovers older than `older_than`.
    pub fn new(older_than: Duration) -> Self {
        CleanupOptions {
            older_than,
            dry_run: false,
        }
    }

    /// Only reports what would be removed.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

/// What kind of thing a [`Leftover`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeftoverKind {
    /// A temp file of an atomic write (temp name, then rename) that never finished, or an
    /// empty temp folder an interrupted operation left (SFTP's anchors, see
    /// [`temp_dir_name`](crate::ignore_rules::temp_dir_name)).
    TempFile,
    /// An S3 multipart upload that was started and never completed or aborted.
    MultipartUpload,
}

impl fmt::Display for LeftoverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeftoverKind::TempFile => "temp file",
            LeftoverKind::MultipartUpload => "multipart upload",
        })
    }
}

/// One thing an interrupted run left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leftover {
    /// What it is.
    pub kind: LeftoverKind,
    /// Where it is, in the backend's own terms: a path on disk or on the SFTP server, a
    /// WebDAV URL, `s3://bucket/key (upload <id>)`.
    pub location: String,
    /// When it was last touched (temp files) or started (multipart uploads).
    pub since: Option<SystemTime>,
}

impl Leftover {
    /// A leftover of `kind` at `location`, touched or started at `since`.
    pub fn new(kind: LeftoverKind, location: impl Into<String>, since: Option<SystemTime>) -> Self {
        Leftover {
            kind,
            location: location.into(),
            since,
        }
    }
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.location)
    }
}

/// What [`StorageClient::clean_up`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupReport {
    /// The leftovers removed, or with [`CleanupOptions::dry_run`] those that would be.
    pub found: Vec<Leftover>,
    /// Leftovers whose removal failed, each with the error's message. The rest were still
    /// tried.
    pub failed: Vec<(Leftover, String)>,
    /// Nothing was removed: [`found`](Self::found) is what would be.
    pub dry_run: bool,
}

impl CleanupReport {
    /// An empty report for a clean-up run with `opts`.
    pub fn empty(opts: &CleanupOptions) -> Self {
        CleanupReport {
            dry_run: opts.dry_run,
            ..CleanupReport::default()
        }
    }

    /// Adds `other`'s leftovers to this report.
    pub fn merge(&mut self, other: CleanupReport) {
        self.found.extend(other.found);
        self.failed.extend(other.failed);
    }
}

/// True for a trash folder of the engine: a folder `trash` right inside a `.syncengine`
/// folder (the root's own, or that of another pair whose root lies inside this one).
///
/// ```
/// use syncengine_core::RelPath;
/// use syncengine_core::cleanup::is_trash_dir;
///
/// assert!(is_trash_dir(&RelPath::new(".syncengine/trash").unwrap()));
/// assert!(is_trash_dir(&RelPath::new("inner/.syncengine/trash").unwrap()));
/// assert!(!is_trash_dir(&RelPath::new("trash").unwrap()));
/// assert!(!is_trash_dir(&RelPath::new(".syncengine/trash/2026").unwrap()));
/// ```
pub fn is_trash_dir(dir: &RelPath) -> bool {
    let mut segments = dir.as_str().rsplit('/');
    segments.next() == Some(TRASH_DIR_NAME) && segments.next() == Some(STATE_DIR_NAME)
}

/// True when a backend location string (a path with `/` or `\` separators, or a URL) lies in
/// an engine trash folder: it holds a `.syncengine` segment followed by a `trash` segment.
fn in_trash(location: &str) -> bool {
    let segments: Vec<&str> = location.split(['/', '\\']).collect();
    segments
        .windows(2)
        .any(|w| w[0] == STATE_DIR_NAME && w[1] == TRASH_DIR_NAME)
}

/// The [`StorageClient::clean_up`] of a backend that writes temp files (local disk, SFTP,
/// WebDAV): walks the whole root once (trash folders pruned), which makes the backend's
/// listing note every temp file (and temp folder) in the exact temp format in `found`; then takes those
/// untouched for longer than [`CleanupOptions::older_than`] and, unless it is a dry run,
/// removes each with `remove` (its location string as noted; `Ok(false)`: it was already
/// gone, and is not reported).
///
/// # Errors
/// A listing that failed (an unreadable folder, reported as
/// [`Error::Unlisted`](crate::Error::Unlisted), is skipped, not an error): nothing is
/// removed then.
pub async fn clean_up_temps<C, F, Fut>(
    client: &C,
    found: &StaleTemps,
    opts: &CleanupOptions,
    remove: F,
) -> Result<CleanupReport>
where
    C: StorageClient + ?Sized,
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let mut listing = client.list_pruned(None, Arc::new(is_trash_dir));
    while let Some(item) = listing.next().await {
        match item {
            Ok(_) => {}
            Err(e) if e.is_unlisted() => {
                tracing::debug!(error = %e, "clean-up: a path could not be listed");
            }
            Err(e) => return Err(e),
        }
    }
    let mut report = CleanupReport::empty(opts);
    for (location, since) in found.take_older_than(opts.older_than) {
        if in_trash(&location) {
            continue;
        }
        let leftover = Leftover::new(LeftoverKind::TempFile, location.clone(), Some(since));
        if opts.dry_run {
            report.found.push(leftover);
            continue;
        }
        match remove(location).await {
            Ok(true) => {
                tracing::info!(location = %leftover.location, "removed a left-behind temp file");
                report.found.push(leftover);
            }
            Ok(false) => {}
            Err(e) => report.failed.push((leftover, e.to_string())),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_run_in_the_background_only_inside_a_runtime() {
        // Outside a runtime: not started (and logged as left behind).
        assert!(!remove_in_background("t", async {}));
        // Inside one: started, and it runs although nobody awaits it.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        rt.block_on(async move {
            assert!(remove_in_background("t", async move {
                tx.send(()).unwrap();
            }));
            rx.await.expect("the job ran");
        });
    }

    #[test]
    fn trash_locations_are_recognised_in_every_form() {
        for inside in [
            "/r/.syncengine/trash/20260101T000000Z/.syncengine-tmp-0000000000000001",
            "http://h/dav/r/.syncengine/trash/x/.syncengine-tmp-0000000000000001",
            r"C:\r\.syncengine\trash\x\.syncengine-tmp-0000000000000001",
            "/r/inner/.syncengine/trash/.syncengine-tmp-0000000000000001",
        ] {
            assert!(in_trash(inside), "{inside}");
        }
        for outside in [
            "/r/.syncengine/.syncengine-tmp-0000000000000001",
            "/r/trash/.syncengine-tmp-0000000000000001",
            "/r/.syncengine/trashy/.syncengine-tmp-0000000000000001",
            "/r/my.syncengine/trash/.syncengine-tmp-0000000000000001",
        ] {
            assert!(!in_trash(outside), "{outside}");
        }
    }

    #[test]
    fn options_default_to_a_day() {
        let o = CleanupOptions::default();
        assert_eq!(o.older_than, STALE_TEMP_AGE);
        assert!(!o.dry_run);
        assert!(
            CleanupOptions::new(Duration::from_secs(1))
                .with_dry_run(true)
                .dry_run
        );
    }
}
