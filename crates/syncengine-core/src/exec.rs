//! The executor: carries out a [`Plan`] with bounded concurrency, keeping the base true after
//! every completed action.
//!
//! Order of work: base-only updates; then what makes room for a type change
//! ([`Action::makes_room`], and the deletes of a file `x` on the side that receives `x/…`, or
//! of `x/…` on the side that receives `x`); then renames, conflicts and copies (up to
//! `transfers` at once); then — only if all of those succeeded and the run was not
//! cancelled — deletes. Before the engine deletes or overwrites a file it checks that the file
//! is still what was listed (a file changed since is left alone and reported), and hands the
//! old version to the side's [`Recovery`](crate::Recovery) (trash or backup dir).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::client::{StorageClient, StorageClientExt, TransferOptions, WriteMode, WriteOptions};
use crate::entry::Entry;
use crate::error::{Error, SyncError};
use crate::ignore_rules::STATE_DIR_NAME;
use crate::mode::{ConflictLoser, Side};
use crate::path::RelPath;
use crate::plan::{Action, Plan};
use crate::progress::ProgressEvent;
use crate::state::{BaseRecord, BaseUpdate, SideRecord, StateStore};
use crate::stats::SyncStats;

/// Where a side's deleted and overwritten files go, resolved from
/// [`Recovery`](crate::Recovery) for one run.
#[derive(Clone, Debug)]
pub enum ResolvedRecovery {
    /// Gone for good.
    None,
    /// Moved to `.syncengine/trash/<stamp>/<path>` on the same side.
    Trash,
    /// Copied to `<stamp>/<path>` on this client first.
    BackupDir(Arc<dyn StorageClient>),
}

/// Runs a plan.
pub struct Executor {
    /// Source client.
    pub source: Arc<dyn StorageClient>,
    /// Destination client.
    pub destination: Arc<dyn StorageClient>,
    /// Where updates to the base go.
    pub store: StateStore,
    /// Progress channel.
    pub progress: Option<UnboundedSender<ProgressEvent>>,
    /// Cancellation.
    pub cancel: CancellationToken,
    /// UTC time of the run as `YYYYMMDDTHHMMSSZ`, used in trash and conflict names.
    pub stamp: String,
    /// Recovery of the source side.
    pub source_recovery: ResolvedRecovery,
    /// Recovery of the destination side.
    pub destination_recovery: ResolvedRecovery,
    /// What happens to conflict losers.
    pub conflict_loser: ConflictLoser,
    /// Actions in flight.
    pub transfers: usize,
    /// Attempts per primitive operation for transient errors.
    pub attempts: u32,
}

enum Outcome {
    Done(Vec<BaseUpdate>),
    Failed(Error),
    Cancelled,
}

/// How many base updates are written per transaction, and how long they may wait.
const FLUSH_EVERY: usize = 4096;
const FLUSH_AFTER: Duration = Duration::from_secs(2);

impl Executor {
    fn client(&self, side: Side) -> &Arc<dyn StorageClient> {
        match side {
            Side::Source => &self.source,
            Side::Destination => &self.destination,
        }
    }

    fn recovery(&self, side: Side) -> &ResolvedRecovery {
        match side {
            Side::Source => &self.source_recovery,
            Side::Destination => &self.destination_recovery,
        }
    }

    fn emit(&self, event: ProgressEvent) {
        if let Some(tx) = &self.progress {
            let _ = tx.send(event);
        }
    }

    /// Carries out `plan`, adding what was done to `stats`.
    ///
    /// # Errors
    /// [`SyncError::Cancelled`] after a cancellation (the base is true for what was done),
    /// [`SyncError::State`] when the base cannot be written. Failed actions are counted in
    /// `stats.errors`, not returned.
    pub async fn run(&self, plan: Plan, stats: &mut SyncStats) -> Result<(), SyncError> {
        let mut writer = BaseWriter::new(
            self.store.clone(),
            [self.source.clone(), self.destination.clone()],
        );
        writer.extend(plan.state_updates).await?;

        let (first, actions): (Vec<Action>, Vec<Action>) =
            plan.actions.into_iter().partition(Action::makes_room);
        let (deletes, others): (Vec<Action>, Vec<Action>) =
            actions.into_iter().partition(Action::is_delete);
        // Type changes: what stands in the way of a new file or folder goes first.
        let (room, deletes) = deletes_making_room(deletes, &others);
        let first: Vec<Action> = first.into_iter().chain(room).collect();
        if self.run_batch(first, stats, &mut writer).await? {
            writer.flush().await?;
            return Err(SyncError::Cancelled);
        }

        let cancelled = self.run_batch(others, stats, &mut writer).await?;
        if cancelled {
            writer.flush().await?;
            return Err(SyncError::Cancelled);
        }
        if stats.errors > 0 {
            if !deletes.is_empty() {
                stats.skipped += deletes.len() as u64;
                stats.warnings.push(format!(
                    "{} deletion(s) postponed because {} action(s) failed; the next run retries them",
                    deletes.len(),
                    stats.errors
                ));
            }
        } else if self.run_batch(deletes, stats, &mut writer).await? {
            writer.flush().await?;
            return Err(SyncError::Cancelled);
        }
        writer.flush().await
    }

    /// Runs actions with bounded concurrency; returns true if the run was cancelled.
    async fn run_batch(
        &self,
        actions: Vec<Action>,
        stats: &mut SyncStats,
        writer: &mut BaseWriter,
    ) -> Result<bool, SyncError> {
        let mut cancelled = false;
        let mut results = futures::stream::iter(actions)
            .map(|action| async move {
                if self.cancel.is_cancelled() {
                    return (action, Outcome::Cancelled);
                }
                let outcome = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => Outcome::Cancelled,
                    r = self.perform(&action) => match r {
                        Ok(updates) => Outcome::Done(updates),
                        Err(e) => Outcome::Failed(e),
                    },
                };
                (action, outcome)
            })
            .buffer_unordered(self.transfers.max(1));
        while let Some((action, outcome)) = results.next().await {
            match outcome {
                Outcome::Done(updates) => {
                    action.count_into(stats);
                    self.emit(ProgressEvent::Done {
                        path: action.path().clone(),
                        kind: action.kind(),
                    });
                    writer.extend(updates).await?;
                }
                Outcome::Failed(error) => {
                    stats.errors += 1;
                    let message = format!("{}: {}", action.path(), error);
                    tracing::error!(path = %action.path(), %error, "action failed");
                    stats.error_messages.push(message);
                    self.emit(ProgressEvent::Failed {
                        path: action.path().clone(),
                        kind: action.kind(),
                        error: error.to_string(),
                    });
                }
                Outcome::Cancelled => cancelled = true,
            }
        }
        Ok(cancelled)
    }

    async fn perform(&self, action: &Action) -> Result<Vec<BaseUpdate>, Error> {
        self.emit(ProgressEvent::Started {
            path: action.path().clone(),
            kind: action.kind(),
            bytes: action.bytes(),
        });
        let span = tracing::debug_span!("action", path = %action.path(), kind = ?action.kind());
        let _enter = span.enter();
        match action {
            Action::Copy {
                from,
                entry,
                target,
            } => {
                let written = self.copy_over(*from, entry, target.as_ref()).await?;
                Ok(vec![BaseUpdate::Put(record(*from, entry, &written))])
            }
            Action::Delete { side, entry } => {
                self.remove(*side, entry).await?;
                Ok(vec![BaseUpdate::Remove(entry.path.clone())])
            }
            Action::Rename {
                seen_on,
                from,
                to,
                keep_old,
            } => self.mirror_rename(*seen_on, from, to, *keep_old).await,
            Action::Conflict {
                source,
                destination,
                winner,
            } => match winner {
                Some(w) => {
                    let (win, lose) = match w {
                        Side::Source => (source, destination),
                        Side::Destination => (destination, source),
                    };
                    self.settle_conflict(*w, win, lose).await
                }
                None => self.keep_both(source, destination).await,
            },
            Action::SetAside {
                kept_side,
                kept,
                new,
            } => self.set_aside(*kept_side, kept, new).await,
            Action::MoveAside {
                side,
                entry,
                share,
                settled,
            } => self.move_aside(*side, entry, *share, *settled).await,
        }
    }

    /// Copies `entry` from side `from` over whatever the other side has (`target`).
    async fn copy_over(
        &self,
        from: Side,
        entry: &Entry,
        target: Option<&Entry>,
    ) -> Result<Entry, Error> {
        let to = from.other();
        let mode = match target {
            None => WriteMode::Create,
            Some(t) => self.prepare_overwrite(to, t).await?,
        };
        self.transfer(from, &entry.path, to, &entry.path, mode, entry)
            .await
    }

    /// Makes sure `existing` on `side` is still as listed, hands it to recovery, and returns
    /// the write mode that replaces it safely.
    async fn prepare_overwrite(&self, side: Side, existing: &Entry) -> Result<WriteMode, Error> {
        if !self.still_as_listed(side, existing).await? {
            return Ok(WriteMode::Create);
        }
        match self.recovery(side) {
            ResolvedRecovery::Trash => {
                self.move_to_trash(side, &existing.path).await?;
                Ok(WriteMode::Create)
            }
            ResolvedRecovery::BackupDir(backup) => {
                self.copy_to_backup(side, existing, backup).await?;
                Ok(self.overwrite_mode(side, existing))
            }
            ResolvedRecovery::None => Ok(self.overwrite_mode(side, existing)),
        }
    }

    fn overwrite_mode(&self, side: Side, existing: &Entry) -> WriteMode {
        match (
            &existing.etag,
            self.client(side).capabilities().conditional_write,
        ) {
            (Some(etag), true) => WriteMode::Update(etag.clone()),
            _ => WriteMode::Overwrite,
        }
    }

    /// Returns true when the file is still the listed version, false when it is gone, and
    /// `PreconditionFailed` when it changed since it was listed (it is then left alone).
    async fn still_as_listed(&self, side: Side, listed: &Entry) -> Result<bool, Error> {
        let client = self.client(side);
        match self.retry(|| client.stat(&listed.path)).await {
            Ok(now) => {
                let same = now.size == listed.size
                    && now.mtime == listed.mtime
                    && (now.etag.is_none() || listed.etag.is_none() || now.etag == listed.etag);
                if same {
                    Ok(true)
                } else {
                    Err(Error::PreconditionFailed {
                        backend: client.backend(),
                        path: listed.path.to_string(),
                        source: Some("the file changed during the sync; left alone".into()),
                    })
                }
            }
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes `entry` on `side`, through the side's recovery.
    async fn remove(&self, side: Side, entry: &Entry) -> Result<(), Error> {
        if !self.still_as_listed(side, entry).await? {
            return Ok(());
        }
        let client = self.client(side);
        match self.recovery(side) {
            ResolvedRecovery::Trash => self.move_to_trash(side, &entry.path).await,
            ResolvedRecovery::BackupDir(backup) => {
                self.copy_to_backup(side, entry, backup).await?;
                self.retry(|| client.delete(&entry.path)).await
            }
            ResolvedRecovery::None => self.retry(|| client.delete(&entry.path)).await,
        }
    }

    /// The run's folder name in the trash or backup dir; `n` > 1 picks a fresh one when the
    /// first is taken (never overwriting an earlier copy).
    fn stamped_folder(&self, n: u32) -> String {
        if n == 1 {
            self.stamp.clone()
        } else {
            format!("{}-{n}", self.stamp)
        }
    }

    async fn move_to_trash(&self, side: Side, path: &RelPath) -> Result<(), Error> {
        let client = self.client(side);
        for n in 1u32.. {
            let target = RelPath::new(format!(
                "{STATE_DIR_NAME}/trash/{}/{path}",
                self.stamped_folder(n)
            ))?;
            match self
                .retry(|| client.rename_opts(path, &target, TransferOptions::default()))
                .await
            {
                Ok(_) => return Ok(()),
                Err(Error::AlreadyExists { .. }) if n < 100 => continue,
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn copy_to_backup(
        &self,
        side: Side,
        entry: &Entry,
        backup: &Arc<dyn StorageClient>,
    ) -> Result<(), Error> {
        let client = self.client(side);
        for n in 1u32..100 {
            let target = RelPath::new(format!("{}/{}", self.stamped_folder(n), entry.path))?;
            let result = self
                .retry(|| async {
                    let target = &target;
                    let body = client.read(&entry.path).await?;
                    let mut opts = WriteOptions::default()
                        .with_mode(WriteMode::Create)
                        .with_size_hint(entry.size);
                    opts.mtime = entry.mtime;
                    backup.write_opts(target, body, opts).await
                })
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::other(
            backup.backend(),
            entry.path.to_string(),
            "no free name in the backup dir",
        ))
    }

    /// Streams `from_path` on side `from` to `to_path` on side `to`.
    async fn transfer(
        &self,
        from: Side,
        from_path: &RelPath,
        to: Side,
        to_path: &RelPath,
        mode: WriteMode,
        listed: &Entry,
    ) -> Result<Entry, Error> {
        let src = self.client(from);
        let dst = self.client(to);
        let mode = &mode;
        // The copy keeps the file's own modification time, which some listings lack.
        let mtime = self.retry(|| src.recorded_mtime(listed)).await?;
        let written = self
            .retry(|| async move {
                let body = src.read(from_path).await?;
                let progress = self.progress.clone();
                let path = to_path.clone();
                let body = body
                    .inspect(move |chunk| {
                        if let (Some(tx), Ok(bytes)) = (&progress, chunk) {
                            let _ = tx.send(ProgressEvent::Bytes {
                                path: path.clone(),
                                delta: bytes.len() as u64,
                            });
                        }
                    })
                    .boxed();
                let mut opts = WriteOptions::default()
                    .with_mode(mode.clone())
                    .with_size_hint(listed.size);
                opts.mtime = mtime;
                dst.write_opts(to_path, body, opts).await
            })
            .await?;
        if written.size != listed.size {
            // The source changed while it was read. The copy is whole and atomic, but the base
            // must not claim the listed version arrived; the next run will see the change.
            return Err(Error::other(
                src.backend(),
                from_path.to_string(),
                format!(
                    "the file changed while it was copied ({} bytes listed, {} copied); it will be synced again next run",
                    listed.size, written.size
                ),
            ));
        }
        Ok(written)
    }

    async fn mirror_rename(
        &self,
        seen_on: Side,
        old: &Entry,
        new: &Entry,
        keep_old: bool,
    ) -> Result<Vec<BaseUpdate>, Error> {
        let target_side = seen_on.other();
        let target = self.client(target_side);
        let copy_new = || {
            self.transfer(
                seen_on,
                &new.path,
                target_side,
                &new.path,
                WriteMode::Create,
                new,
            )
        };
        if !self.still_as_listed(target_side, old).await? {
            // The old file vanished meanwhile: copy the new one instead.
            let written = copy_new().await?;
            return Ok(vec![
                BaseUpdate::Remove(old.path.clone()),
                BaseUpdate::Put(record(seen_on, new, &written)),
            ]);
        }
        let opts = TransferOptions::default();
        let moved = if keep_old {
            self.retry(|| target.copy_opts(&old.path, &new.path, opts.clone()))
                .await
        } else {
            self.retry(|| target.rename_opts(&old.path, &new.path, opts.clone()))
                .await
        };
        let written = match moved {
            Ok(e) => e,
            Err(Error::Unsupported { .. }) => {
                let written = copy_new().await?;
                if !keep_old {
                    self.remove(target_side, old).await?;
                }
                written
            }
            Err(e) => return Err(e),
        };
        let mut updates = Vec::with_capacity(2);
        if !keep_old {
            updates.push(BaseUpdate::Remove(old.path.clone()));
        }
        updates.push(BaseUpdate::Put(record(seen_on, new, &written)));
        Ok(updates)
    }

    /// A free conflict name for `path`: free on both sides, since it will be synced.
    async fn conflict_name(&self, path: &RelPath, loser: Side) -> Result<RelPath, Error> {
        for n in 1u32..1000 {
            let suffix = if n == 1 {
                format!(".conflict-{}-{}", self.stamp, loser)
            } else {
                format!(".conflict-{}-{}-{n}", self.stamp, loser)
            };
            let candidate = path.with_stem_suffix_max(&suffix, crate::path::NAME_MAX)?;
            let mut free = true;
            for side in [Side::Source, Side::Destination] {
                match self.client(side).stat(&candidate).await {
                    Ok(_) => free = false,
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            if free {
                return Ok(candidate);
            }
        }
        Err(Error::other(
            self.client(loser).backend(),
            path.to_string(),
            "no free conflict name",
        ))
    }

    async fn settle_conflict(
        &self,
        winner: Side,
        win: &Entry,
        lose: &Entry,
    ) -> Result<Vec<BaseUpdate>, Error> {
        let loser = winner.other();
        let mode = match self.conflict_loser {
            ConflictLoser::Keep => {
                if self.still_as_listed(loser, lose).await? {
                    let aside = self.conflict_name(&lose.path, loser).await?;
                    let client = self.client(loser);
                    self.retry(|| {
                        client.rename_opts(&lose.path, &aside, TransferOptions::default())
                    })
                    .await?;
                    tracing::info!(path = %lose.path, kept_as = %aside, "conflict: losing version kept");
                }
                WriteMode::Create
            }
            ConflictLoser::Delete => self.prepare_overwrite(loser, lose).await?,
        };
        let written = self
            .transfer(winner, &win.path, loser, &win.path, mode, win)
            .await?;
        Ok(vec![BaseUpdate::Put(record(winner, win, &written))])
    }

    async fn keep_both(
        &self,
        source: &Entry,
        destination: &Entry,
    ) -> Result<Vec<BaseUpdate>, Error> {
        let mut renamed = Vec::with_capacity(2);
        for (side, entry) in [(Side::Source, source), (Side::Destination, destination)] {
            if !self.still_as_listed(side, entry).await? {
                return Err(Error::PreconditionFailed {
                    backend: self.client(side).backend(),
                    path: entry.path.to_string(),
                    source: Some("the file vanished during the sync".into()),
                });
            }
            let name = self.conflict_name(&entry.path, side).await?;
            let client = self.client(side);
            let moved = self
                .retry(|| client.rename_opts(&entry.path, &name, TransferOptions::default()))
                .await?;
            renamed.push((side, moved));
        }
        let mut updates = vec![BaseUpdate::Remove(source.path.clone())];
        for (side, moved) in renamed {
            let written = self
                .transfer(
                    side,
                    &moved.path,
                    side.other(),
                    &moved.path,
                    WriteMode::Create,
                    &moved,
                )
                .await?;
            updates.push(BaseUpdate::Put(record(side, &moved, &written)));
        }
        Ok(updates)
    }

    /// Carries out [`Action::SetAside`]: the kept copy of a settled deletion moves to a free
    /// conflict name on its own side and the new file takes the path. The renamed copy keeps
    /// the settled absence of the other side. If the new file cannot be copied, the kept copy
    /// is moved back, so the next run finds what this one found instead of a renamed copy
    /// without a base.
    async fn set_aside(
        &self,
        kept_side: Side,
        kept: &Entry,
        new: &Entry,
    ) -> Result<Vec<BaseUpdate>, Error> {
        let new_side = kept_side.other();
        if !self.still_as_listed(kept_side, kept).await? {
            return Err(Error::PreconditionFailed {
                backend: self.client(kept_side).backend(),
                path: kept.path.to_string(),
                source: Some("the file vanished during the sync".into()),
            });
        }
        let aside = self.conflict_name(&kept.path, kept_side).await?;
        let client = self.client(kept_side);
        let moved = self
            .retry(|| client.rename_opts(&kept.path, &aside, TransferOptions::default()))
            .await?;
        tracing::info!(path = %kept.path, kept_as = %aside, "a new file took the path of a settled deletion; the kept copy is set aside");
        let written = match self
            .transfer(
                new_side,
                &new.path,
                kept_side,
                &new.path,
                WriteMode::Create,
                new,
            )
            .await
        {
            Ok(w) => w,
            Err(e) => {
                if let Err(undo) = self
                    .retry(|| client.rename_opts(&aside, &kept.path, TransferOptions::default()))
                    .await
                {
                    tracing::error!(path = %kept.path, kept_as = %aside, error = %undo, "could not move the kept copy back");
                }
                return Err(e);
            }
        };
        let updates = vec![
            BaseUpdate::Put(record(new_side, new, &written)),
            BaseUpdate::Put(BaseRecord::settled_absence(
                moved.path.clone(),
                new_side,
                SideRecord::from_entry(&moved),
            )),
        ];
        Ok(updates)
    }

    /// Carries out [`Action::MoveAside`]: a type change where the folder keeps the path; the
    /// file moves to a free conflict name on its side (and, with `share`, is copied to the
    /// other side under that name).
    async fn move_aside(
        &self,
        side: Side,
        entry: &Entry,
        share: bool,
        settled: bool,
    ) -> Result<Vec<BaseUpdate>, Error> {
        if !self.still_as_listed(side, entry).await? {
            return Err(Error::PreconditionFailed {
                backend: self.client(side).backend(),
                path: entry.path.to_string(),
                source: Some("the file vanished during the sync".into()),
            });
        }
        let aside = self.conflict_name(&entry.path, side).await?;
        let client = self.client(side);
        let moved = self
            .retry(|| client.rename_opts(&entry.path, &aside, TransferOptions::default()))
            .await?;
        tracing::info!(path = %entry.path, kept_as = %aside, "type change: the folder keeps the path, the file is kept under a conflict name");
        let mut updates = vec![BaseUpdate::Remove(entry.path.clone())];
        if share {
            let written = self
                .transfer(
                    side,
                    &moved.path,
                    side.other(),
                    &moved.path,
                    WriteMode::Create,
                    &moved,
                )
                .await?;
            updates.push(BaseUpdate::Put(record(side, &moved, &written)));
        } else if settled {
            updates.push(BaseUpdate::Put(BaseRecord::settled_absence(
                moved.path.clone(),
                side.other(),
                SideRecord::from_entry(&moved),
            )));
        }
        Ok(updates)
    }

    /// Runs `op`, retrying transient errors with exponential backoff.
    async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut attempt = 1u32;
        loop {
            match op().await {
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    let wait = Duration::from_millis(100u64 << attempt.min(6));
                    tracing::debug!(error = %e, attempt, ?wait, "transient error; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// The base record of a path after copying `from_entry` from side `from`, which produced
/// `written` on the other side.
fn record(from: Side, from_entry: &Entry, written: &Entry) -> BaseRecord {
    let (source, destination) = match from {
        Side::Source => (from_entry, written),
        Side::Destination => (written, from_entry),
    };
    BaseRecord::new(
        from_entry.path.clone(),
        SideRecord::from_entry(source),
        SideRecord::from_entry(destination),
    )
}

/// Splits off the deletes that make room for a type change: a file `x` deleted on the side
/// where something below `x/` is written, or something below `x/` deleted on the side where
/// `x` is written. They run before the writes (which would fail on a disk: a file cannot hold
/// children, a folder cannot be overwritten by a file).
fn deletes_making_room(deletes: Vec<Action>, others: &[Action]) -> (Vec<Action>, Vec<Action>) {
    if deletes.is_empty() {
        return (Vec::new(), deletes);
    }
    let side_index = |side: Side| match side {
        Side::Source => 0,
        Side::Destination => 1,
    };
    let mut written: [HashSet<&str>; 2] = [HashSet::new(), HashSet::new()];
    let mut folders: [HashSet<&str>; 2] = [HashSet::new(), HashSet::new()];
    for action in others {
        let (side, path) = match action {
            Action::Copy { from, entry, .. } => (from.other(), &entry.path),
            Action::Rename { seen_on, to, .. } => (seen_on.other(), &to.path),
            Action::SetAside { kept_side, new, .. } => (*kept_side, &new.path),
            _ => continue,
        };
        let i = side_index(side);
        written[i].insert(path.as_str());
        folders[i].extend(ancestors(path.as_str()));
    }
    deletes.into_iter().partition(|d| match d {
        Action::Delete { side, entry } => {
            let i = side_index(*side);
            let p = entry.path.as_str();
            folders[i].contains(p) || ancestors(p).any(|a| written[i].contains(a))
        }
        _ => false,
    })
}

/// The folders above a path, nearest last: `a/b/c` gives `a`, `a/b`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Batches base updates into transactions, each after a durability barrier on both sides.
struct BaseWriter {
    store: StateStore,
    clients: [Arc<dyn StorageClient>; 2],
    pending: Vec<BaseUpdate>,
    last_flush: Instant,
}

impl BaseWriter {
    fn new(store: StateStore, clients: [Arc<dyn StorageClient>; 2]) -> Self {
        BaseWriter {
            store,
            clients,
            pending: Vec::new(),
            last_flush: Instant::now(),
        }
    }

    async fn extend(&mut self, updates: Vec<BaseUpdate>) -> Result<(), SyncError> {
        self.pending.extend(updates);
        if self.pending.len() >= FLUSH_EVERY || self.last_flush.elapsed() >= FLUSH_AFTER {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SyncError> {
        self.last_flush = Instant::now();
        if self.pending.is_empty() {
            return Ok(());
        }
        // The base may only claim what a power loss cannot take back.
        for (client, side) in self.clients.iter().zip([Side::Source, Side::Destination]) {
            client
                .sync_written()
                .await
                .map_err(|source| SyncError::Storage { side, source })?;
        }
        let batch = std::mem::take(&mut self.pending);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.apply(&batch))
            .await
            .map_err(|e| SyncError::State(format!("state writer panicked: {e}")))?
    }
}
