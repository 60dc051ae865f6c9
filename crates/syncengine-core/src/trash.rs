//! A root's trash, read back: what runs moved there, restoring it, and emptying old runs.
//!
//! A run moves every file it deletes or overwrites on a side to
//! `<root>/.syncengine/trash/<run>/<path>` (with [`Recovery::TrashDir`](crate::Recovery) or
//! a backup dir: `<dir>/<run>/<path>`), where `<run>` is the run's UTC time
//! `YYYYMMDDTHHMMSSZ`, with `-N` appended when that folder could not take the file (another
//! run of the same second, a file where a folder of the path had to be). [`Trash`] reads that
//! layout back:
//!
//! - [`Trash::list`]: the runs, oldest first, each with the files it holds;
//! - [`Trash::restore`]: puts files back at their paths without ever overwriting a live file:
//!   one in the way is kept and the restored version gets a conflict name next to it
//!   (`<stem>.conflict-<UTC time>-restored[-N][.ext]`), or, with
//!   [`RestoreOptions::force`], the live file is first moved to the trash itself;
//! - [`Trash::remove_runs`] with [`TrashListing::older_than`]: empties old runs.
//!
//! A restored file is an ordinary new or changed file for the next sync of its pair.
//! Nothing here deletes anything outside the trash folder: only files its own listing
//! found in run folders.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use syncengine_core::{MemoryClient, RelPath, StorageClient, StorageClientExt};
//! use syncengine_core::trash::{RestoreOptions, RestoreWhat, Trash};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let root: Arc<dyn StorageClient> = Arc::new(MemoryClient::new());
//! let trashed = RelPath::new(".syncengine/trash/20260101T120000Z/notes/a.txt")?;
//! root.put(&trashed, Bytes::from("old")).await?;
//!
//! let trash = Trash::of_root(root.clone());
//! let listing = trash.list().await?;
//! assert_eq!(listing.runs[0].name, "20260101T120000Z");
//! assert_eq!(listing.runs[0].files[0].path.as_str(), "notes/a.txt");
//!
//! let what = RestoreWhat::Path { path: RelPath::new("notes")?, run: None };
//! let (_, files) = listing.select(&what)?;
//! let report = trash.restore(&root, &files, &RestoreOptions::default()).await?;
//! assert!(report.outcomes[0].result.is_ok());
//! assert_eq!(root.read_to_bytes(&RelPath::new("notes/a.txt")?).await?, "old");
//! assert!(trash.list().await?.runs.is_empty(), "moved out of the trash");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use futures::StreamExt;

use crate::client::{
    DeleteOptions, StorageClient, StorageClientExt, TransferOptions, WriteMode, WriteOptions,
};
use crate::engine::{is_stamp, stamp_at};
use crate::entry::{Entry, Version};
use crate::error::{Error, Result};
use crate::exec::{ends_with_conflict_tag, in_the_way};
use crate::ignore_rules::STATE_DIR_NAME;
use crate::path::{NAME_MAX, RelPath};
use crate::verify::{Expected, verify_body};

/// The tag a restored version's conflict name carries in place of a side:
/// `<stem>.conflict-<UTC time>-restored[.ext]`.
pub const RESTORED_TAG: &str = "restored";

/// Where a root keeps its trash, relative to the root: `.syncengine/trash`.
pub fn trash_folder() -> RelPath {
    // A constant, valid path.
    RelPath::new(format!("{STATE_DIR_NAME}/trash")).unwrap_or_else(|_| unreachable!())
}

/// A trash: run folders `<run>/<path>` under a folder of a storage client.
#[derive(Clone, Debug)]
pub struct Trash {
    client: Arc<dyn StorageClient>,
    folder: Option<RelPath>,
    in_root: bool,
}

impl Trash {
    /// The root's own trash, `<root>/.syncengine/trash/`: restores move files back within
    /// the same storage.
    pub fn of_root(root: Arc<dyn StorageClient>) -> Self {
        Trash {
            client: root,
            folder: Some(trash_folder()),
            in_root: true,
        }
    }

    /// A trash kept elsewhere: run folders at the root of `client` (what
    /// [`Recovery::TrashDir`](crate::Recovery::TrashDir) and
    /// [`Recovery::BackupDir`](crate::Recovery::BackupDir) write; the CLI's
    /// `--trash-dir URL` gives each side `URL/source` and `URL/destination`). Restores copy
    /// files across to the root, then remove them here.
    pub fn elsewhere(client: Arc<dyn StorageClient>) -> Self {
        Trash {
            client,
            folder: None,
            in_root: false,
        }
    }

    /// The client that holds the trash.
    pub fn client(&self) -> &Arc<dyn StorageClient> {
        &self.client
    }

    /// True for a root's own trash ([`Trash::of_root`]).
    pub fn is_in_root(&self) -> bool {
        self.in_root
    }

    /// Lists the trash: its runs oldest first, each file with the path it was trashed from.
    /// Files outside run folders (not named by a run's time) are someone else's and left
    /// out; paths the listing could not read are reported in
    /// [`TrashListing::unlisted`].
    ///
    /// # Errors
    /// A listing that failed (the root or the transport): nothing is returned then.
    pub async fn list(&self) -> Result<TrashListing> {
        let mut runs: BTreeMap<(String, u32), TrashRun> = BTreeMap::new();
        let mut unlisted = Vec::new();
        let mut listing = self.client.list(self.folder.as_ref());
        while let Some(item) = listing.next().await {
            let entry = match item {
                Ok(entry) => entry,
                Err(e) if e.is_unlisted() => {
                    unlisted.push(e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(rest) = self.inside(&entry.path) else {
                continue;
            };
            let Some((run, original)) = rest.split_once('/') else {
                continue;
            };
            let Some(key) = parse_run_name(run) else {
                continue;
            };
            let Ok(path) = RelPath::new(original) else {
                continue;
            };
            let run = run.to_owned();
            runs.entry(key)
                .or_insert_with(|| TrashRun {
                    name: run,
                    files: Vec::new(),
                })
                .files
                .push(TrashedFile {
                    path,
                    stored: entry.path.clone(),
                    entry,
                });
        }
        let mut runs: Vec<TrashRun> = runs.into_values().collect();
        for run in &mut runs {
            run.files.sort_by(|a, b| a.path.cmp(&b.path));
        }
        Ok(TrashListing { runs, unlisted })
    }

    /// The part of `stored` below the trash folder, or `None` when it is not below it.
    fn inside<'a>(&self, stored: &'a RelPath) -> Option<&'a str> {
        match &self.folder {
            Some(f) => stored
                .as_str()
                .strip_prefix(f.as_str())
                .and_then(|r| r.strip_prefix('/')),
            None => Some(stored.as_str()),
        }
    }

    /// Puts `files` (from one listing of this trash, see [`TrashListing::select`]) back at
    /// their paths on `root`, one by one; a file that fails is reported in its outcome and
    /// the others are still restored.
    ///
    /// # Behavior
    /// - Never overwrites anything: every write or move back is a no-overwrite one, so a
    ///   file that appears at the place meanwhile is kept too.
    /// - A live file at the path stays; the restored version gets a free conflict name next
    ///   to it ([`Live::KeptConflictCopy`]). With [`RestoreOptions::force`] the live file is
    ///   first moved to this trash under the time of the restore ([`Live::MovedToTrash`]),
    ///   then the trashed version takes its path. A folder at the path always stays
    ///   ([`Live::FolderInTheWay`]).
    /// - Within the root's own trash on a backend that renames natively (local disk, SFTP,
    ///   WebDAV) the file is moved back; elsewhere it is copied (server-side where the
    ///   backend can, else streamed and checked against its size and MD5 where known), the
    ///   copy checked (size, and hash where both sides know one), and only then the trash
    ///   copy removed.
    /// - The file keeps the modification time it had when it was trashed.
    /// - A dry run decides the same, and changes nothing.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for [`RestoreOptions::force`] on a trash kept elsewhere
    /// (moving the live file there would take it across storages); nothing was done then.
    pub async fn restore(
        &self,
        root: &Arc<dyn StorageClient>,
        files: &[&TrashedFile],
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        if opts.force && !self.in_root {
            return Err(Error::Unsupported {
                backend: self.client.backend(),
                operation: "moving a live file to a trash kept elsewhere (restore without \
                            force: the restored file gets a conflict name)",
            });
        }
        let stamp = stamp_at(time::OffsetDateTime::now_utc());
        let mut taken = HashSet::new();
        let mut outcomes = Vec::with_capacity(files.len());
        for file in files {
            let result = self
                .restore_one(root, file, opts, &stamp, &mut taken)
                .await
                .map_err(|e| e.to_string());
            outcomes.push(RestoreOutcome {
                file: (*file).clone(),
                result,
            });
        }
        Ok(RestoreReport {
            outcomes,
            dry_run: opts.dry_run,
        })
    }

    async fn restore_one(
        &self,
        root: &Arc<dyn StorageClient>,
        file: &TrashedFile,
        opts: &RestoreOptions,
        stamp: &str,
        taken: &mut HashSet<RelPath>,
    ) -> Result<Restored> {
        // The engine's own folder (id file, generation, trash) is never restored into: a
        // trash that holds such a path was not filled by a sync run of this root.
        let first = file.path.as_str().split('/').next().unwrap_or_default();
        if first.eq_ignore_ascii_case(STATE_DIR_NAME) {
            return Err(Error::other(
                root.backend(),
                file.path.as_str(),
                format!(
                    "not restored: {STATE_DIR_NAME}/ at the root is syncengine's own folder, \
                     which a restore never writes"
                ),
            ));
        }
        let listed = match self.client.stat(&file.stored).await {
            Ok(now) => now,
            Err(e) if e.is_not_found() => {
                return Err(Error::other(
                    self.client.backend(),
                    file.stored.as_str(),
                    "no longer in the trash (restored or removed meanwhile)",
                ));
            }
            Err(e) => return Err(e),
        };
        let mut live = Live::None;
        let mut place = file.path.clone();
        match occupant(root.as_ref(), &file.path).await? {
            Occupant::Free => {}
            Occupant::FileAbove(folder) => {
                return Err(Error::other(
                    root.backend(),
                    file.path.as_str(),
                    format!(
                        "`{folder}` is a file here, where the restored path needs a folder: \
                         move or rename it, then restore again"
                    ),
                ));
            }
            Occupant::Folder => {
                live = Live::FolderInTheWay;
                place = conflict_name(root.as_ref(), &file.path, stamp, taken).await?;
            }
            Occupant::File if opts.force => {
                if opts.dry_run {
                    live = Live::MovedToTrash(self.trash_path(stamp, 1, &file.path)?);
                } else {
                    live = Live::MovedToTrash(self.set_aside(root, &file.path, stamp).await?);
                }
            }
            Occupant::File => {
                live = Live::KeptConflictCopy;
                place = conflict_name(root.as_ref(), &file.path, stamp, taken).await?;
            }
        }
        if opts.dry_run {
            return Ok(Restored {
                at: place,
                live,
                warning: None,
            });
        }
        // Something may take the place between the look and the move: it stays, and the
        // restored version takes a conflict name.
        let mut failed = None;
        for _ in 0..3 {
            match self.put_back(root, file, &listed, &place).await {
                Ok(warning) => {
                    return Ok(Restored {
                        at: place,
                        live,
                        warning,
                    });
                }
                Err(Error::AlreadyExists { .. }) => {
                    if live == Live::None {
                        live = Live::KeptConflictCopy;
                    }
                    match conflict_name(root.as_ref(), &file.path, stamp, taken).await {
                        Ok(name) => place = name,
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let failed =
            failed.unwrap_or_else(|| Error::already_exists(root.backend(), place.as_str()));
        // The live file set aside for nothing: back to its path, if that is still free.
        if let Live::MovedToTrash(kept) = &live {
            let back = self.put_live_back(root, kept, &file.path).await;
            let what = match back {
                Ok(_) => "the live file was put back".to_owned(),
                Err(_) => format!("the live file stays in the trash as {kept}"),
            };
            return Err(Error::other(
                root.backend(),
                file.path.as_str(),
                format!("{failed}; {what}"),
            ));
        }
        Err(failed)
    }

    /// Puts the live file that a forced restore set aside at `kept` back at `path` once the
    /// restore failed, never over a file: by a move, else (where the root cannot move it
    /// there: `path` is on a filesystem mounted inside a local root) by
    /// [`StorageClient::preserve`], a copy flushed to disk, after which the trash copy goes
    /// if it is still the one copied.
    async fn put_live_back(
        &self,
        root: &Arc<dyn StorageClient>,
        kept: &RelPath,
        path: &RelPath,
    ) -> Result<()> {
        match root
            .rename_opts(kept, path, TransferOptions::default())
            .await
        {
            Err(Error::Unsupported { .. }) => {}
            moved => return moved.map(|_| ()),
        }
        let copied = root.stat(kept).await?;
        let back = root.preserve(kept, path).await?;
        if back.size != copied.size {
            return Err(Error::other(
                root.backend(),
                path.as_str(),
                format!(
                    "the copy put back at its path has {} bytes where the live file had {} (it \
                     changed in the trash meanwhile?)",
                    back.size, copied.size
                ),
            ));
        }
        let opts = DeleteOptions::default().with_if_version(Version::of(&copied));
        if let Err(e) = root.delete_opts(kept, opts).await {
            // The live file is back; a spare copy in the trash loses nothing.
            tracing::warn!(path = %kept, "the live file was put back, but its copy in the trash stays: {e}");
        }
        Ok(())
    }

    /// `<trash>/<stamp>[-n]/<path>`.
    fn trash_path(&self, stamp: &str, n: u32, path: &RelPath) -> Result<RelPath> {
        let run = if n == 1 {
            stamp.to_owned()
        } else {
            format!("{stamp}-{n}")
        };
        match &self.folder {
            Some(f) => RelPath::new(format!("{f}/{run}/{path}")),
            None => RelPath::new(format!("{run}/{path}")),
        }
    }

    /// Moves the live file at `path` into this (the root's own) trash under `stamp`, as a
    /// run would; returns where it went.
    async fn set_aside(
        &self,
        root: &Arc<dyn StorageClient>,
        path: &RelPath,
        stamp: &str,
    ) -> Result<RelPath> {
        for n in 1u32..100 {
            let target = self.trash_path(stamp, n, path)?;
            match root
                .rename_opts(path, &target, TransferOptions::default())
                .await
            {
                Ok(_) => return Ok(target),
                Err(Error::AlreadyExists { .. }) => {}
                // No move into the trash (a file on a filesystem mounted inside a local
                // root): kept there by a flushed copy, then deleted if still as looked at.
                Err(Error::Unsupported { .. }) => {
                    if self.set_aside_by_copy(root, path, &target).await? {
                        return Ok(target);
                    }
                }
                Err(e) => {
                    if !in_the_way(root.as_ref(), &target).await {
                        return Err(e);
                    }
                }
            }
        }
        Err(Error::other(
            root.backend(),
            path.as_str(),
            "no free name in the trash for the live file",
        ))
    }

    /// Sets the live file at `path` aside at `target` in the trash where it cannot be moved
    /// there: a copy by [`StorageClient::preserve`] (flushed to disk), then the file is
    /// deleted only if it is still the version looked at before the copy, and the copy has
    /// its size. False when `target` is taken (the caller tries the next name); an error,
    /// with the live file in place, when it changed meanwhile.
    async fn set_aside_by_copy(
        &self,
        root: &Arc<dyn StorageClient>,
        path: &RelPath,
        target: &RelPath,
    ) -> Result<bool> {
        let live = root.stat(path).await?;
        let kept = match root.preserve(path, target).await {
            Ok(kept) => kept,
            Err(Error::AlreadyExists { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let changed = || {
            Error::other(
                root.backend(),
                path.as_str(),
                format!(
                    "the live file changed while it was set aside; it stays, and a copy of it \
                     is in the trash as {target}"
                ),
            )
        };
        if kept.size != live.size {
            return Err(changed());
        }
        let opts = DeleteOptions::default().with_if_version(Version::of(&live));
        match root.delete_opts(path, opts).await {
            Ok(()) => Ok(true),
            Err(Error::PreconditionFailed { .. }) => Err(changed()),
            Err(e) => Err(e),
        }
    }

    /// Puts the trashed `file` (now `listed`) at `place` on `root`, never overwriting, and
    /// checks it; removes the trash copy once the restored file is checked. Returns the
    /// restored file, and a warning when the trash copy could not be removed.
    async fn put_back(
        &self,
        root: &Arc<dyn StorageClient>,
        file: &TrashedFile,
        listed: &Entry,
        place: &RelPath,
    ) -> Result<Option<String>> {
        let caps = root.capabilities();
        // A move the root cannot make (a place on a filesystem mounted inside a local root)
        // is a copy below, as where the root has no native rename — one flushed to disk
        // (with its name) before the trash copy goes: the two are on different filesystems,
        // and the trash copy's removal could otherwise reach its disk before the restored
        // bytes reach theirs (red team 32).
        let mut across = false;
        let moved = if self.in_root && caps.native_rename {
            match root
                .rename_opts(&file.stored, place, TransferOptions::default())
                .await
            {
                Err(Error::Unsupported { .. }) => {
                    across = true;
                    None
                }
                moved => Some(moved?),
            }
        } else {
            None
        };
        if let Some(moved) = moved {
            if moved.size != listed.size {
                return Err(Error::other(
                    root.backend(),
                    place.as_str(),
                    format!(
                        "restored with {} bytes, but the trash copy had {}",
                        moved.size, listed.size
                    ),
                ));
            }
            return Ok(None);
        }
        if across {
            // Never over a file: the preserve makes `place` only where it is free.
            root.preserve(&file.stored, place).await?;
        } else if self.in_root && caps.server_side_copy {
            match root
                .copy_opts(&file.stored, place, TransferOptions::default())
                .await
            {
                Err(Error::Unsupported { .. }) => self.stream_to(root, listed, place).await?,
                other => other?,
            };
        } else {
            self.stream_to(root, listed, place).await?;
        }
        let now = root.stat(place).await?;
        let hashes = (
            listed.content_hash(&self.client.capabilities()),
            now.content_hash(&caps),
        );
        let differs = now.size != listed.size || matches!(&hashes, (Some(a), Some(b)) if a != b);
        if differs {
            return Err(Error::other(
                root.backend(),
                place.as_str(),
                format!(
                    "the restored copy does not match the trash copy ({} bytes, {} expected, or \
                     another hash); the trash copy is kept",
                    now.size, listed.size
                ),
            ));
        }
        let warning = match self.client.delete(&file.stored).await {
            Ok(()) => None,
            Err(e) => Some(format!(
                "restored, but its copy in the trash could not be removed: {e}"
            )),
        };
        Ok(warning)
    }

    /// Streams the trashed `listed` from the trash into a create-only write at `place`,
    /// checked against its size and MD5 where known, keeping its modification time and
    /// permission bits.
    async fn stream_to(
        &self,
        root: &Arc<dyn StorageClient>,
        listed: &Entry,
        place: &RelPath,
    ) -> Result<Entry> {
        let mtime = self.client.recorded_mtime(listed).await?;
        let body = self.client.read(&listed.path).await?;
        let body = verify_body(
            body,
            Expected::of(listed, &self.client.capabilities()),
            self.client.backend(),
            listed.path.as_str(),
        );
        let mut opts = WriteOptions::default()
            .with_mode(WriteMode::Create)
            .with_size_hint(listed.size);
        opts.mtime = mtime;
        opts.permissions = listed.permissions;
        root.write_opts(place, body, opts).await
    }

    /// Removes every file of `runs` (from a listing of this trash) from the trash. A dry
    /// run removes nothing and reports what it would remove. Files that could not be
    /// removed are reported; the others are still removed.
    pub async fn remove_runs(&self, runs: &[&TrashRun], dry_run: bool) -> EmptyReport {
        let mut report = EmptyReport {
            runs: runs.iter().map(|r| r.name.clone()).collect(),
            files: 0,
            bytes: 0,
            failed: Vec::new(),
            dry_run,
        };
        for run in runs {
            for file in &run.files {
                // Only what this trash's own listing found in a run folder.
                let inside = self
                    .inside(&file.stored)
                    .and_then(|rest| rest.strip_prefix(run.name.as_str()))
                    .is_some_and(|rest| rest.starts_with('/'));
                if !inside {
                    report.failed.push((
                        file.stored.clone(),
                        "not in this trash's run folder; left alone".to_owned(),
                    ));
                    continue;
                }
                if !dry_run && let Err(e) = self.client.delete(&file.stored).await {
                    report.failed.push((file.stored.clone(), e.to_string()));
                    continue;
                }
                report.files += 1;
                report.bytes += file.entry.size;
            }
        }
        report
    }
}

/// What is at a path on a root.
enum Occupant {
    /// Nothing.
    Free,
    /// A file.
    File,
    /// A folder (files below it).
    Folder,
    /// A file where a folder of the path must be.
    FileAbove(String),
}

async fn occupant(root: &dyn StorageClient, path: &RelPath) -> Result<Occupant> {
    let failed = match root.stat(path).await {
        Ok(_) => return Ok(Occupant::File),
        Err(e) if e.is_not_found() => None,
        // Some backends fail so when a folder of the path is a file: looked at first.
        Err(e) => Some(e),
    };
    let text = path.as_str();
    for (at, _) in text.match_indices('/') {
        let Ok(folder) = RelPath::new(&text[..at]) else {
            continue;
        };
        match root.stat(&folder).await {
            Ok(_) => return Ok(Occupant::FileAbove(folder.into_string())),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    match root.list(Some(path)).next().await {
        None => Ok(Occupant::Free),
        Some(Err(e)) if e.is_not_found() => Ok(Occupant::Free),
        Some(_) => Ok(Occupant::Folder),
    }
}

/// A free name next to `path` for a restored version: `<stem>.conflict-<stamp>-restored
/// [-N][.ext]`, free on `root` and not handed out before (`taken`).
async fn conflict_name(
    root: &dyn StorageClient,
    path: &RelPath,
    stamp: &str,
    taken: &mut HashSet<RelPath>,
) -> Result<RelPath> {
    for n in 1u32..1000 {
        let suffix = if n == 1 {
            format!(".conflict-{stamp}-{RESTORED_TAG}")
        } else {
            format!(".conflict-{stamp}-{RESTORED_TAG}-{n}")
        };
        let candidate = if ends_with_conflict_tag(path) {
            path.with_name_suffix_max(&suffix, NAME_MAX)?
        } else {
            path.with_stem_suffix_max(&suffix, NAME_MAX)?
        };
        if taken.contains(&candidate) {
            continue;
        }
        if matches!(occupant(root, &candidate).await?, Occupant::Free) {
            taken.insert(candidate.clone());
            return Ok(candidate);
        }
    }
    Err(Error::other(
        root.backend(),
        path.as_str(),
        "no free conflict name for the restored version",
    ))
}

/// `YYYYMMDDTHHMMSSZ` or `YYYYMMDDTHHMMSSZ-N` (N ≥ 2): the run's stamp and N (1 without).
fn parse_run_name(name: &str) -> Option<(String, u32)> {
    let stamp = name.get(..16)?;
    if !is_stamp(stamp) {
        return None;
    }
    let rest = &name[16..];
    let n = if rest.is_empty() {
        1
    } else {
        let digits = rest.strip_prefix('-')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()?
    };
    Some((stamp.to_owned(), n))
}

/// The UTC time of a run stamp `YYYYMMDDTHHMMSSZ`, or `None` for no valid time.
pub fn stamp_time(stamp: &str) -> Option<time::OffsetDateTime> {
    let stamp = stamp.get(..16)?;
    if !is_stamp(stamp) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| stamp[r].parse::<u16>().ok();
    let month = time::Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::from(num(0..4)?),
        month,
        u8::try_from(num(6..8)?).ok()?,
    )
    .ok()?;
    let t = time::Time::from_hms(
        u8::try_from(num(9..11)?).ok()?,
        u8::try_from(num(11..13)?).ok()?,
        u8::try_from(num(13..15)?).ok()?,
    )
    .ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc())
}

/// One run's folder in a trash.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TrashRun {
    /// The folder's name: `YYYYMMDDTHHMMSSZ`, or `YYYYMMDDTHHMMSSZ-N` for a second folder of
    /// the same second.
    pub name: String,
    /// The files it holds, by the path they were trashed from.
    pub files: Vec<TrashedFile>,
}

impl TrashRun {
    /// The run's stamp (the name without a `-N`).
    pub fn stamp(&self) -> &str {
        self.name.get(..16).unwrap_or(&self.name)
    }

    /// The run's UTC time, written for people: `2026-12-04 16:30:05 UTC`.
    pub fn time_text(&self) -> String {
        match stamp_time(self.stamp()) {
            Some(t) => crate::engine::utc_written(t, ["-", " ", ":", " UTC"]),
            None => self.name.clone(),
        }
    }

    /// The bytes its files hold.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.entry.size).sum()
    }
}

/// One trashed file.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TrashedFile {
    /// The path it was trashed from (where a restore puts it back), relative to the root.
    pub path: RelPath,
    /// Where it is, relative to the trash's client.
    pub stored: RelPath,
    /// The trash copy as listed (size, time, hash where known).
    pub entry: Entry,
}

/// What [`Trash::list`] found.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TrashListing {
    /// The runs, oldest first.
    pub runs: Vec<TrashRun>,
    /// Paths in the trash that could not be listed (the listing's messages).
    pub unlisted: Vec<String>,
}

/// What to restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreWhat {
    /// Every file of the run named so.
    Run(String),
    /// A file, or every file below a folder, from the named run or else from the newest run
    /// holding any of them.
    Path {
        /// The file or folder, relative to the root.
        path: RelPath,
        /// The run's name; `None` for the newest run holding the path.
        run: Option<String>,
    },
}

/// Why [`TrashListing::select`] found nothing to restore.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// No run of that name.
    #[error("no run {0} in the trash (see `syncengine trash list`)")]
    NoSuchRun(String),
    /// No run holds the path.
    #[error("nothing at or below {0} in the trash (see `syncengine trash list`)")]
    NotInTrash(String),
    /// The named run does not hold the path.
    #[error("nothing at or below {path} in run {run} (see `syncengine trash list --run {run}`)")]
    NotInRun {
        /// The path asked for.
        path: String,
        /// The run asked for.
        run: String,
    },
}

impl TrashListing {
    /// The run named `name`.
    pub fn run(&self, name: &str) -> Option<&TrashRun> {
        self.runs.iter().find(|r| r.name == name)
    }

    /// The run and its files that `what` names. For a path: the file itself and every file
    /// below it as a folder, from the named run or the newest run holding any of them.
    ///
    /// # Errors
    /// [`SelectError`] when there is no such run or nothing at the path.
    pub fn select(
        &self,
        what: &RestoreWhat,
    ) -> std::result::Result<(&TrashRun, Vec<&TrashedFile>), SelectError> {
        fn matching<'a>(run: &'a TrashRun, path: &RelPath) -> Vec<&'a TrashedFile> {
            run.files
                .iter()
                .filter(|f| f.path == *path || f.path.is_below(path))
                .collect()
        }
        match what {
            RestoreWhat::Run(name) => {
                let run = self
                    .run(name)
                    .ok_or_else(|| SelectError::NoSuchRun(name.clone()))?;
                Ok((run, run.files.iter().collect()))
            }
            RestoreWhat::Path {
                path,
                run: Some(name),
            } => {
                let run = self
                    .run(name)
                    .ok_or_else(|| SelectError::NoSuchRun(name.clone()))?;
                let files = matching(run, path);
                if files.is_empty() {
                    return Err(SelectError::NotInRun {
                        path: path.to_string(),
                        run: name.clone(),
                    });
                }
                Ok((run, files))
            }
            RestoreWhat::Path { path, run: None } => self
                .runs
                .iter()
                .rev()
                .map(|run| (run, matching(run, path)))
                .find(|(_, files)| !files.is_empty())
                .ok_or_else(|| SelectError::NotInTrash(path.to_string())),
        }
    }

    /// The runs older than `days` days (by the run's time in its name, as a sync run's
    /// `--trash-keep` pruning reads it).
    pub fn older_than(&self, days: u32) -> Vec<&TrashRun> {
        let cutoff =
            stamp_at(time::OffsetDateTime::now_utc() - time::Duration::days(i64::from(days)));
        self.runs
            .iter()
            .filter(|r| r.stamp() < cutoff.as_str())
            .collect()
    }

    /// How many files the runs hold.
    pub fn files(&self) -> usize {
        self.runs.iter().map(|r| r.files.len()).sum()
    }

    /// How many bytes the runs hold.
    pub fn bytes(&self) -> u64 {
        self.runs.iter().map(TrashRun::bytes).sum()
    }
}

/// How [`Trash::restore`] treats a live file at the path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Move a live file at the path to the trash first, and restore in its place; without
    /// it the restored version gets a conflict name next to it.
    pub force: bool,
    /// Decide and report, change nothing.
    pub dry_run: bool,
}

impl RestoreOptions {
    /// Sets [`force`](RestoreOptions::force).
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Sets [`dry_run`](RestoreOptions::dry_run).
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

/// What was at a restored file's path.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Live {
    /// Nothing: the file is back at its path.
    None,
    /// A live file, which stays; the restored version has a conflict name.
    KeptConflictCopy,
    /// A folder, which stays; the restored version has a conflict name.
    FolderInTheWay,
    /// A live file, moved to the trash here (relative to the trash's client) first.
    MovedToTrash(RelPath),
}

/// A file put back.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Restored {
    /// Where it is now, relative to the root: its path, or a conflict name next to it.
    pub at: RelPath,
    /// What was at its path.
    pub live: Live,
    /// Something to tell about a restore that succeeded (a trash copy left behind).
    pub warning: Option<String>,
}

/// One file's restore.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RestoreOutcome {
    /// The trashed file.
    pub file: TrashedFile,
    /// Where it went, or why not.
    pub result: std::result::Result<Restored, String>,
}

/// What [`Trash::restore`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RestoreReport {
    /// One per file, in the order given.
    pub outcomes: Vec<RestoreOutcome>,
    /// Nothing was changed.
    pub dry_run: bool,
}

impl RestoreReport {
    /// How many files failed.
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_err()).count()
    }
}

/// What [`Trash::remove_runs`] removed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EmptyReport {
    /// The runs emptied.
    pub runs: Vec<String>,
    /// Files removed (or that a dry run would remove).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files that could not be removed, with why.
    pub failed: Vec<(RelPath, String)>,
    /// Nothing was removed.
    pub dry_run: bool,
}

impl fmt::Display for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Live::None => f.write_str("nothing"),
            Live::KeptConflictCopy => f.write_str("a live file, kept"),
            Live::FolderInTheWay => f.write_str("a folder, kept"),
            Live::MovedToTrash(p) => write!(f, "a live file, moved to {p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::memory::MemoryClient;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    async fn put(c: &Arc<dyn StorageClient>, path: &str, body: &str) {
        c.put(&p(path), Bytes::from(body.to_owned())).await.unwrap();
    }

    async fn read(c: &Arc<dyn StorageClient>, path: &str) -> Option<String> {
        c.read_to_bytes(&p(path))
            .await
            .ok()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    fn memory() -> Arc<dyn StorageClient> {
        Arc::new(MemoryClient::new())
    }

    const T: &str = ".syncengine/trash";

    /// A root with three runs: `a.txt` in two of them, a folder `d/` in the newest.
    async fn root_with_runs() -> Arc<dyn StorageClient> {
        let root = memory();
        put(&root, &format!("{T}/20260101T000000Z/a.txt"), "a1").await;
        put(&root, &format!("{T}/20260102T000000Z/a.txt"), "a2").await;
        put(&root, &format!("{T}/20260102T000000Z-2/d/x y %#é.txt"), "x").await;
        put(&root, &format!("{T}/20260102T000000Z-2/d/sub/z"), "zz").await;
        // Not runs: left out of the listing.
        put(&root, &format!("{T}/stray.txt"), "s").await;
        put(&root, &format!("{T}/notastamp/b.txt"), "b").await;
        put(&root, ".syncengine/root-id", "id").await;
        root
    }

    #[tokio::test]
    async fn lists_runs_oldest_first_with_their_files() {
        let trash = Trash::of_root(root_with_runs().await);
        let listing = trash.list().await.unwrap();
        let names: Vec<_> = listing.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["20260101T000000Z", "20260102T000000Z", "20260102T000000Z-2"]
        );
        let last = &listing.runs[2];
        let paths: Vec<_> = last.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["d/sub/z", "d/x y %#é.txt"]);
        assert_eq!(last.bytes(), 3);
        assert_eq!(last.stamp(), "20260102T000000Z");
        assert_eq!(last.time_text(), "2026-01-02 00:00:00 UTC");
        assert_eq!((listing.files(), listing.bytes()), (4, 7));
    }

    #[tokio::test]
    async fn selects_the_newest_run_holding_a_path_or_the_named_one() {
        let listing = Trash::of_root(root_with_runs().await).list().await.unwrap();
        let path = |s: &str, run: Option<&str>| RestoreWhat::Path {
            path: p(s),
            run: run.map(str::to_owned),
        };
        let (run, files) = listing.select(&path("a.txt", None)).unwrap();
        assert_eq!((run.name.as_str(), files.len()), ("20260102T000000Z", 1));
        let (run, _) = listing
            .select(&path("a.txt", Some("20260101T000000Z")))
            .unwrap();
        assert_eq!(run.name, "20260101T000000Z");
        let (run, files) = listing.select(&path("d", None)).unwrap();
        assert_eq!((run.name.as_str(), files.len()), ("20260102T000000Z-2", 2));
        // `d/sub` is a folder of the run; `a` is no prefix of `a.txt`.
        assert_eq!(listing.select(&path("d/sub", None)).unwrap().1.len(), 1);
        assert_eq!(
            listing.select(&path("a", None)).unwrap_err(),
            SelectError::NotInTrash("a".into())
        );
        assert!(matches!(
            listing.select(&path("d", Some("20260101T000000Z"))),
            Err(SelectError::NotInRun { .. })
        ));
        assert_eq!(
            listing
                .select(&RestoreWhat::Run("20990101T000000Z".into()))
                .unwrap_err(),
            SelectError::NoSuchRun("20990101T000000Z".into())
        );
        let (_, all) = listing
            .select(&RestoreWhat::Run("20260102T000000Z-2".into()))
            .unwrap();
        assert_eq!(all.len(), 2);
    }

    #[tokio::test]
    async fn restores_into_a_free_place_and_takes_the_file_out_of_the_trash() {
        let root = root_with_runs().await;
        let trash = Trash::of_root(root.clone());
        let listing = trash.list().await.unwrap();
        let (_, files) = listing
            .select(&RestoreWhat::Run("20260102T000000Z-2".into()))
            .unwrap();
        let report = trash
            .restore(&root, &files, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(report.failed(), 0, "{report:?}");
        for o in &report.outcomes {
            let r = o.result.as_ref().unwrap();
            assert_eq!((&r.at, &r.live), (&o.file.path, &Live::None));
        }
        assert_eq!(read(&root, "d/x y %#é.txt").await.as_deref(), Some("x"));
        assert_eq!(read(&root, "d/sub/z").await.as_deref(), Some("zz"));
        let after = trash.list().await.unwrap();
        assert!(after.run("20260102T000000Z-2").is_none(), "{after:?}");
        assert_eq!(after.files(), 2, "the other runs stay");
    }

    #[tokio::test]
    async fn a_live_file_is_kept_and_the_restored_version_gets_a_conflict_name() {
        let root = root_with_runs().await;
        put(&root, "a.txt", "live").await;
        let trash = Trash::of_root(root.clone());
        let listing = trash.list().await.unwrap();
        let what = RestoreWhat::Path {
            path: p("a.txt"),
            run: None,
        };
        let (_, files) = listing.select(&what).unwrap();

        let dry = trash
            .restore(&root, &files, &RestoreOptions::default().with_dry_run(true))
            .await
            .unwrap();
        let planned = dry.outcomes[0].result.clone().unwrap();
        assert_eq!(planned.live, Live::KeptConflictCopy);
        assert_eq!(
            trash.list().await.unwrap().files(),
            4,
            "a dry run moves nothing"
        );
        assert!(root.stat(&planned.at).await.unwrap_err().is_not_found());

        let report = trash
            .restore(&root, &files, &RestoreOptions::default())
            .await
            .unwrap();
        let done = report.outcomes[0].result.clone().unwrap();
        assert_eq!(done.live, Live::KeptConflictCopy);
        let name = done.at.as_str();
        assert!(
            name.starts_with("a.conflict-") && name.ends_with("-restored.txt"),
            "{name}"
        );
        assert_eq!(read(&root, "a.txt").await.as_deref(), Some("live"));
        assert_eq!(read(&root, name).await.as_deref(), Some("a2"));
        // The older run's copy is still there.
        assert_eq!(trash.list().await.unwrap().files(), 3);
    }

    #[tokio::test]
    async fn force_moves_the_live_file_to_the_trash_first() {
        let root = root_with_runs().await;
        put(&root, "a.txt", "live").await;
        let trash = Trash::of_root(root.clone());
        let listing = trash.list().await.unwrap();
        let what = RestoreWhat::Path {
            path: p("a.txt"),
            run: Some("20260101T000000Z".into()),
        };
        let (_, files) = listing.select(&what).unwrap();
        let opts = RestoreOptions::default().with_force(true);
        let report = trash.restore(&root, &files, &opts).await.unwrap();
        let done = report.outcomes[0].result.clone().unwrap();
        assert_eq!(done.at, p("a.txt"));
        let Live::MovedToTrash(kept) = &done.live else {
            panic!("{done:?}")
        };
        assert!(kept.as_str().starts_with(".syncengine/trash/"), "{kept}");
        assert!(kept.as_str().ends_with("/a.txt"), "{kept}");
        assert_eq!(read(&root, "a.txt").await.as_deref(), Some("a1"));
        assert_eq!(read(&root, kept.as_str()).await.as_deref(), Some("live"));
        let newest = trash.list().await.unwrap();
        let run = newest.runs.last().unwrap();
        assert_eq!(
            run.files[0].path,
            p("a.txt"),
            "the live file is a run of its own"
        );
    }

    #[tokio::test]
    async fn a_folder_in_the_way_stays_and_a_file_above_fails_the_path() {
        let root = memory();
        put(&root, &format!("{T}/20260101T000000Z/f"), "old f").await;
        put(&root, &format!("{T}/20260101T000000Z/g/h"), "old h").await;
        put(&root, "f/inner", "a folder now").await;
        put(&root, "g", "a file now").await;
        let trash = Trash::of_root(root.clone());
        let listing = trash.list().await.unwrap();
        let (_, files) = listing
            .select(&RestoreWhat::Run("20260101T000000Z".into()))
            .unwrap();
        let opts = RestoreOptions::default().with_force(true);
        let report = trash.restore(&root, &files, &opts).await.unwrap();
        let f = report.outcomes[0].result.clone().unwrap();
        assert_eq!(f.live, Live::FolderInTheWay);
        assert!(f.at.as_str().starts_with("f.conflict-"), "{f:?}");
        assert_eq!(read(&root, f.at.as_str()).await.as_deref(), Some("old f"));
        let h = report.outcomes[1].result.clone().unwrap_err();
        assert!(h.contains("`g` is a file here"), "{h}");
        assert_eq!(read(&root, "g").await.as_deref(), Some("a file now"));
        assert_eq!(
            trash.list().await.unwrap().files(),
            1,
            "g/h stays in the trash"
        );
    }

    #[tokio::test]
    async fn a_trash_elsewhere_is_copied_back_and_force_is_refused() {
        let root = memory();
        let dir = memory();
        put(&dir, "20260101T000000Z/n/o.txt", "kept elsewhere").await;
        put(&root, "n/o.txt", "live").await;
        let trash = Trash::elsewhere(dir.clone());
        let listing = trash.list().await.unwrap();
        let (_, files) = listing
            .select(&RestoreWhat::Run("20260101T000000Z".into()))
            .unwrap();
        let opts = RestoreOptions::default().with_force(true);
        assert!(matches!(
            trash.restore(&root, &files, &opts).await,
            Err(Error::Unsupported { .. })
        ));
        assert_eq!(read(&root, "n/o.txt").await.as_deref(), Some("live"));

        root.delete(&p("n/o.txt")).await.unwrap();
        let report = trash
            .restore(&root, &files, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(report.failed(), 0, "{report:?}");
        assert_eq!(
            read(&root, "n/o.txt").await.as_deref(),
            Some("kept elsewhere")
        );
        assert!(trash.list().await.unwrap().runs.is_empty());
    }

    #[tokio::test]
    async fn old_runs_are_removed_and_nothing_else() {
        let root = root_with_runs().await;
        let recent = stamp_at(time::OffsetDateTime::now_utc() - time::Duration::days(2));
        put(&root, &format!("{T}/{recent}/new.txt"), "new").await;
        let trash = Trash::of_root(root.clone());
        let listing = trash.list().await.unwrap();
        let old = listing.older_than(7);
        assert_eq!(old.len(), 3, "the 2026-01 runs");
        assert_eq!(listing.older_than(1).len(), 4);

        let dry = trash.remove_runs(&old, true).await;
        assert_eq!((dry.files, dry.bytes), (4, 7));
        assert_eq!(trash.list().await.unwrap().files(), 5);

        let done = trash.remove_runs(&old, false).await;
        assert!(done.failed.is_empty(), "{done:?}");
        let after = trash.list().await.unwrap();
        assert_eq!(after.runs.len(), 1);
        assert_eq!(after.runs[0].name, recent);
        for kept in [".syncengine/root-id", &format!("{T}/stray.txt")] {
            assert!(root.stat(&p(kept)).await.is_ok(), "{kept}");
        }
    }

    /// A copy back that reads the trash copy short or changed is not committed, and the
    /// trash copy stays.
    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn a_bad_read_of_the_trash_copy_restores_nothing_and_keeps_it() {
        use crate::testing::fault::{Fault, FaultClient, FaultConfig};
        for fault in [Fault::ShortRead, Fault::CorruptRead] {
            let inner = memory();
            put(&inner, "20260101T000000Z/n/o.txt", "kept elsewhere").await;
            let faulty = Arc::new(FaultClient::new(inner.clone(), FaultConfig::none()));
            let trash = Trash::elsewhere(faulty.clone());
            let listing = trash.list().await.unwrap();
            let (_, files) = listing
                .select(&RestoreWhat::Run("20260101T000000Z".into()))
                .unwrap();
            faulty.fail_path(&p("20260101T000000Z/n/o.txt"), fault, 1);
            let root = memory();
            let report = trash
                .restore(&root, &files, &RestoreOptions::default())
                .await
                .unwrap();
            assert_eq!(report.failed(), 1, "{fault:?}: {report:?}");
            assert_eq!(read(&root, "n/o.txt").await, None, "{fault:?}");
            assert_eq!(
                read(&inner, "20260101T000000Z/n/o.txt").await.as_deref(),
                Some("kept elsewhere"),
                "{fault:?}"
            );
        }
    }

    /// With force, a restore that fails after the live file went to the trash puts the
    /// live file back at its path.
    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn a_failed_forced_restore_puts_the_live_file_back() {
        use crate::testing::fault::{Fault, FaultClient, FaultConfig, Op};
        let inner = memory();
        let stored = format!("{T}/20260101T000000Z/a.txt");
        put(&inner, &stored, "old").await;
        put(&inner, "a.txt", "live").await;
        let faulty = Arc::new(FaultClient::new(inner.clone(), FaultConfig::none()));
        // Once the live file has been moved aside, the move back of the old one fails.
        let hook_client = faulty.clone();
        let stored_path = p(&stored);
        faulty.before(
            Op::Rename,
            p("a.txt"),
            Arc::new(move |_| hook_client.fail_path(&stored_path, Fault::Error, 1)),
        );
        let root: Arc<dyn StorageClient> = faulty.clone();
        let trash = Trash::of_root(root.clone());
        let listing = trash.list().await.unwrap();
        let (_, files) = listing
            .select(&RestoreWhat::Run("20260101T000000Z".into()))
            .unwrap();
        let opts = RestoreOptions::default().with_force(true);
        let report = trash.restore(&root, &files, &opts).await.unwrap();
        let err = report.outcomes[0].result.clone().unwrap_err();
        assert!(err.contains("the live file was put back"), "{err}");
        assert_eq!(read(&inner, "a.txt").await.as_deref(), Some("live"));
        assert_eq!(read(&inner, &stored).await.as_deref(), Some("old"));
        assert_eq!(trash.list().await.unwrap().files(), 1, "only the old copy");
    }

    #[test]
    fn run_names_and_times() {
        assert_eq!(
            parse_run_name("20261204T163005Z"),
            Some(("20261204T163005Z".into(), 1))
        );
        assert_eq!(
            parse_run_name("20261204T163005Z-12"),
            Some(("20261204T163005Z".into(), 12))
        );
        for bad in [
            "20261204T163005Z-",
            "20261204T163005Zx",
            "2026120XT163005Z",
            "x",
        ] {
            assert_eq!(parse_run_name(bad), None, "{bad}");
        }
        let t = stamp_time("20261204T163005Z").unwrap();
        assert_eq!(stamp_at(t), "20261204T163005Z");
        assert!(stamp_time("20261340T000000Z").is_none(), "month 13");
    }
}
