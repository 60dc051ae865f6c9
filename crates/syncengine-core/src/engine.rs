//! [`SyncEngine`]: runs a [`SyncPair`] end to end.
//!
//! One run: take the pair's lock, open its state, read ignore rules, stream both listings
//! and the base through the [`Reconciler`], check the plan
//! against the safety rules, then (unless it is a dry run) execute it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::{EntryStream, StorageClient, StorageClientExt};
use crate::decide::Policy;
use crate::error::{Error, SyncError};
use crate::exec::{Executor, ResolvedRecovery};
use crate::ignore_rules::{IgnoreRules, STATE_DIR_NAME, SYNCIGNORE_FILE, is_always_ignored};
use crate::mode::{InitialSyncPreference, Side, SyncMode};
use crate::order::{check_order, sort_listing};
use crate::pair::{Recovery, SyncPair};
use crate::path::RelPath;
use crate::plan::Plan;
use crate::progress::ProgressEvent;
use crate::reconcile::Reconciler;
use crate::state::{PairLock, StateStore};
use crate::stats::SyncStats;

/// Entries kept in memory per sorted run when a listing has to be sorted.
const SORT_RUN_SIZE: usize = 100_000;

/// Runs syncs. Holds where pair state lives, the progress channel and the cancellation token.
///
/// ```
/// use std::sync::Arc;
/// use syncengine_core::{MemoryClient, SyncEngine, SyncMode, SyncOptions, SyncPair};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let state = tempfile::tempdir().unwrap();
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let engine = SyncEngine::new(state.path()).with_progress(tx);
/// let pair = SyncPair::new(Arc::new(MemoryClient::new()), Arc::new(MemoryClient::new()), SyncMode::TwoWay)
///     .with_options(SyncOptions::default().with_dry_run(true));
/// let stats = engine.sync_pair(&pair).await.unwrap();
/// assert!(stats.dry_run && stats.is_noop());
/// drop(engine);
/// while let Ok(event) = rx.try_recv() { println!("{event:?}"); }
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SyncEngine {
    state_dir: PathBuf,
    progress: Option<UnboundedSender<ProgressEvent>>,
    cancel: CancellationToken,
}

impl SyncEngine {
    /// Creates an engine keeping each pair's state database under `state_dir`.
    pub fn new(state_dir: impl AsRef<Path>) -> Self {
        SyncEngine {
            state_dir: state_dir.as_ref().to_path_buf(),
            progress: None,
            cancel: CancellationToken::new(),
        }
    }

    /// Sends progress events to `tx`.
    pub fn with_progress(mut self, tx: UnboundedSender<ProgressEvent>) -> Self {
        self.progress = Some(tx);
        self
    }

    /// Stops runs cleanly when `token` is cancelled: no new action starts, actions in flight
    /// are abandoned (atomic writes leave the old content), deletes do not run, and the base
    /// is true for what was done. The run then returns [`SyncError::Cancelled`].
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The directory holding pair state.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Syncs `pair` once.
    ///
    /// # Errors
    /// See [`SyncError`]. Failures of single files do not fail the run: they are counted in
    /// [`SyncStats::errors`] and described in [`SyncStats::error_messages`].
    pub async fn sync_pair(&self, pair: &SyncPair) -> Result<SyncStats, SyncError> {
        let span = tracing::info_span!(
            "sync_pair",
            source = %pair.source,
            destination = %pair.destination,
            mode = %pair.mode,
            dry_run = pair.options.dry_run,
        );
        self.run(pair).instrument(span).await
    }

    async fn run(&self, pair: &SyncPair) -> Result<SyncStats, SyncError> {
        let opts = &pair.options;
        let id = pair.id();
        let dry_run = opts.dry_run;

        // A dry run takes no lock and creates no state: it must change nothing.
        let _lock = if dry_run {
            None
        } else {
            let dir = self.state_dir.clone();
            let lock_id = id.clone();
            Some(blocking(move || PairLock::acquire(&dir, &lock_id)).await?)
        };
        let store = {
            let dir = self.state_dir.clone();
            let id = id.clone();
            if dry_run {
                blocking(move || StateStore::open_existing(&dir, &id))
                    .await?
                    .map_or_else(StateStore::open_in_memory, Ok)?
            } else {
                blocking(move || StateStore::open(&dir, &id)).await?
            }
        };
        // The initial-sync preference holds until the pair's first plan has ended normally;
        // a safety stop, a dry run, a kill or a cancellation does not consume it.
        let initial = {
            let s = store.clone();
            blocking(move || s.initial_sync_pending()).await?
        };

        let policy = Policy {
            mode: pair.mode,
            initial,
            initial_preference: opts.initial_preference.unwrap_or_default(),
            conflict: opts.conflict,
        };

        let rules = Arc::new(self.ignore_rules(pair).await?);
        let ignored = Arc::new(AtomicU64::new(0));
        let skipped_before = [
            pair.source.skipped_count(),
            pair.destination.skipped_count(),
        ];
        let source_list = self.listing(pair, Side::Source, &rules, &ignored).await;
        let destination_list = self
            .listing(pair, Side::Destination, &rules, &ignored)
            .await;

        let reconciler = Reconciler::new(
            policy,
            opts.checksum,
            pair.source.clone(),
            pair.destination.clone(),
        );
        let mut plan = reconciler
            .plan(source_list, destination_list, store.stream())
            .await?;

        plan.skipped += ignored.load(Ordering::Relaxed);
        for (side, before) in [Side::Source, Side::Destination]
            .into_iter()
            .zip(skipped_before)
        {
            let n = pair.client(side).skipped_count().saturating_sub(before);
            if n > 0 {
                plan.skipped += n;
                plan.warnings.push(format!(
                    "{n} entries on the {side} were skipped (symlinks or other non-files are not synced)"
                ));
            }
        }
        if initial
            && opts.initial_preference.is_none()
            && pair.mode == SyncMode::TwoWay
            && let Some(w) = risk_warning(plan.source_files, plan.destination_files)
        {
            plan.warnings.push(w);
        }
        if !initial
            && let Some(p) = opts.initial_preference
            && p != InitialSyncPreference::Merge
        {
            plan.warnings.push(format!(
                "the initial-sync preference {p} was ignored: this pair's first sync already ran, \
                 so files found on one side only are ordinary additions"
            ));
        }
        for w in &plan.warnings {
            tracing::debug!("{w}");
            self.emit(ProgressEvent::Warning(w.clone()));
        }

        check_safety(&plan, opts.force, opts.max_delete_percent)?;

        if dry_run {
            let mut stats = plan.predicted_stats();
            stats.dry_run = true;
            return Ok(stats);
        }

        self.emit(ProgressEvent::Planned {
            actions: plan.actions.len() as u64,
            bytes: plan.actions.iter().map(|a| a.bytes()).sum(),
        });
        let mut stats = SyncStats {
            skipped: plan.skipped,
            warnings: plan.warnings.clone(),
            ..SyncStats::default()
        };
        let executor = Executor {
            source: pair.source.clone(),
            destination: pair.destination.clone(),
            store: store.clone(),
            progress: self.progress.clone(),
            cancel: self.cancel.clone(),
            stamp: run_stamp(),
            source_recovery: resolve_recovery(&opts.source_recovery, &pair.source),
            destination_recovery: resolve_recovery(&opts.destination_recovery, &pair.destination),
            conflict_loser: opts.conflict_loser,
            transfers: opts.transfers,
            attempts: opts.attempts,
        };
        executor.run(plan, &mut stats).await?;
        // The plan ended normally (per-file errors allowed): the initial sync is over.
        if initial {
            let s = store.clone();
            blocking(move || s.mark_initial_sync_done()).await?;
        }

        if stats.errors == 0 {
            let s = store.clone();
            blocking(move || s.mark_completed()).await?;
        }
        if let Some(days) = opts.trash_keep_days {
            for (side, recovery) in [
                (Side::Source, &executor.source_recovery),
                (Side::Destination, &executor.destination_recovery),
            ] {
                if matches!(recovery, ResolvedRecovery::Trash)
                    && let Err(e) = prune_trash(pair.client(side).as_ref(), days).await
                {
                    stats
                        .warnings
                        .push(format!("pruning the {side} trash failed: {e}"));
                }
            }
        }
        Ok(stats)
    }

    fn emit(&self, event: ProgressEvent) {
        if let Some(tx) = &self.progress {
            let _ = tx.send(event);
        }
    }

    /// Builds the ignore rules: the options' patterns plus `.syncignore` at either root.
    async fn ignore_rules(&self, pair: &SyncPair) -> Result<IgnoreRules, SyncError> {
        let mut rules = IgnoreRules::new(&pair.options.excludes)
            .map_err(|e| SyncError::Config(e.to_string()))?;
        let file = RelPath::new(SYNCIGNORE_FILE).map_err(|e| SyncError::Config(e.to_string()))?;
        for side in [Side::Source, Side::Destination] {
            let client = pair.client(side);
            match client.read_to_bytes(&file).await {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    rules
                        .add_file(&format!("{client}/{SYNCIGNORE_FILE}"), &text)
                        .map_err(|e| SyncError::Config(e.to_string()))?;
                }
                Err(e) if e.is_not_found() => {}
                Err(source) => return Err(SyncError::Storage { side, source }),
            }
        }
        Ok(rules)
    }

    /// One side's listing: without our own files and ignored paths, in canonical order.
    async fn listing(
        &self,
        pair: &SyncPair,
        side: Side,
        rules: &Arc<IgnoreRules>,
        ignored: &Arc<AtomicU64>,
    ) -> EntryStream {
        let client = pair.client(side);
        let rules = rules.clone();
        let ignored = ignored.clone();
        let filtered = client
            .list(None)
            .filter(move |item| {
                let keep = match item {
                    Ok(entry) if is_always_ignored(&entry.path) => false,
                    Ok(entry) if rules.is_ignored(&entry.path) => {
                        ignored.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                    _ => true,
                };
                futures::future::ready(keep)
            })
            .boxed();
        if client.capabilities().ordered_listing && !pair.options.sort_listings {
            check_order(filtered, client.to_string())
        } else {
            sort_listing(filtered, &std::env::temp_dir(), SORT_RUN_SIZE).await
        }
    }
}

/// The seed's risk warning for a first `TWO_WAY` run without an explicit preference.
fn risk_warning(source_files: u64, destination_files: u64) -> Option<String> {
    let (big, big_n, small, small_n, pref, flag) = if destination_files > source_files {
        (
            "Destination",
            destination_files,
            "source",
            source_files,
            "InitialSyncPreference::DestinationWins",
            "--initial destination-wins",
        )
    } else {
        (
            "Source",
            source_files,
            "destination",
            destination_files,
            "InitialSyncPreference::SourceWins",
            "--initial source-wins",
        )
    };
    if big_n > 10 && big_n > 2 * small_n {
        let authoritative = big.to_lowercase();
        Some(format!(
            "⚠ WARNING: {big} has {big_n} files but {small} has only {small_n}. Initial TWO_WAY sync \
             will default to MERGE mode (no deletions). To make {authoritative} authoritative and \
             delete {small}-only files: initial_sync_preference={pref} ({flag})"
        ))
    } else {
        None
    }
}

/// The safety rules that stop a run before it changes anything.
fn check_safety(plan: &Plan, force: bool, max_delete_percent: u8) -> Result<(), SyncError> {
    if force {
        return Ok(());
    }
    for (side, files) in [
        (Side::Source, plan.source_files),
        (Side::Destination, plan.destination_files),
    ] {
        // Only records where the side held a version count: a side whose every file was
        // deleted on purpose under a backup mode (settled) may be empty.
        let base_files = plan.base_files_on(side);
        if files == 0 && base_files > 0 {
            return Err(SyncError::EmptySide { side, base_files });
        }
    }
    for (side, files) in [
        (Side::Source, plan.source_files),
        (Side::Destination, plan.destination_files),
    ] {
        let deletes = plan.deletes_on(side);
        if files > 0 && deletes * 100 > u64::from(max_delete_percent) * files {
            return Err(SyncError::MaxDelete {
                side,
                would_delete: deletes,
                total: files,
                percent: deletes as f64 * 100.0 / files as f64,
                limit: max_delete_percent,
            });
        }
    }
    Ok(())
}

fn resolve_recovery(recovery: &Recovery, client: &Arc<dyn StorageClient>) -> ResolvedRecovery {
    match recovery {
        Recovery::None => ResolvedRecovery::None,
        Recovery::Trash => ResolvedRecovery::Trash,
        Recovery::BackupDir(c) => ResolvedRecovery::BackupDir(c.clone()),
        Recovery::Auto => {
            let caps = client.capabilities();
            if caps.real_directories && caps.native_rename {
                ResolvedRecovery::Trash
            } else {
                ResolvedRecovery::None
            }
        }
    }
}

/// The UTC time now as `YYYYMMDDTHHMMSSZ`.
fn run_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Deletes trash folders older than `days`.
async fn prune_trash(client: &dyn StorageClient, days: u32) -> Result<(), Error> {
    let trash = RelPath::new(format!("{STATE_DIR_NAME}/trash"))?;
    let cutoff = time::OffsetDateTime::now_utc() - time::Duration::days(i64::from(days));
    let cutoff = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        cutoff.year(),
        u8::from(cutoff.month()),
        cutoff.day(),
        cutoff.hour(),
        cutoff.minute(),
        cutoff.second()
    );
    let mut listing = client.list(Some(&trash));
    let mut old = Vec::new();
    while let Some(entry) = listing.next().await {
        let entry = entry?;
        let rest = entry
            .path
            .as_str()
            .strip_prefix(trash.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or_default();
        let folder = rest.split('/').next().unwrap_or_default();
        // Folder names are stamps (optionally with a -N suffix), which sort like times; a
        // folder that is not a stamp is someone else's and stays.
        if let Some(stamp) = folder.get(..16)
            && is_stamp(stamp)
            && stamp < cutoff.as_str()
        {
            old.push(entry.path);
        }
    }
    for path in old {
        client.delete(&path).await?;
    }
    Ok(())
}

/// True for `YYYYMMDDTHHMMSSZ`.
fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

async fn blocking<T, F>(f: F) -> Result<T, SyncError>
where
    F: FnOnce() -> Result<T, SyncError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::State(format!("blocking task failed: {e}")))?
}

/// The default state directory: `$SYNCENGINE_STATE_DIR`, else `$XDG_STATE_HOME/syncengine`,
/// else `~/.local/state/syncengine`.
pub fn default_state_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SYNCENGINE_STATE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("syncengine"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|h| PathBuf::from(h).join(".local/state/syncengine"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_warning_thresholds() {
        assert!(
            risk_warning(5, 100)
                .unwrap()
                .contains("Destination has 100 files but source has only 5")
        );
        assert!(
            risk_warning(100, 5)
                .unwrap()
                .contains("--initial source-wins")
        );
        assert!(risk_warning(10, 0).is_none(), "needs more than 10 files");
        assert!(risk_warning(11, 0).is_some());
        assert!(
            risk_warning(20, 10).is_none(),
            "needs more than twice the files"
        );
    }

    #[test]
    fn stamp_shape() {
        let s = run_stamp();
        assert!(is_stamp(&s), "{s}");
        assert!(!is_stamp("2024010xT000000Z"));
        assert!(!is_stamp("ééééééééT0000Z"));
        assert!(!is_stamp("20240101T000000"));
    }

    #[test]
    fn internal_paths() {
        assert!(is_always_ignored(
            &RelPath::new(".syncengine/trash/x").unwrap()
        ));
        assert!(is_always_ignored(
            &RelPath::new("a/.syncengine-tmp-123").unwrap()
        ));
        assert!(!is_always_ignored(
            &RelPath::new(".syncengine-notes").unwrap()
        ));
        assert!(!is_always_ignored(&RelPath::new("a/.syncengine").unwrap()));
    }
}
