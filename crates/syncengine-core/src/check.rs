//! [`SyncEngine::check_pair`]: verifies that both sides of a pair hold the same files with the
//! same content, without changing anything (like `rclone check`).
//!
//! # Behavior
//! - Both sides are listed through the engine's own listing
//!   (`SyncEngine::listing`): the pair's excludes and each root's `.syncignore` apply, the
//!   engine's `.syncengine/` folders, temp files and a state directory inside a root are never
//!   compared, and unordered listings are sorted with bounded memory. Whatever filter `sync`
//!   applies there (future `--include`, `--max-size`…) applies here too.
//! - The two listings (and the pair's base, when the state directory has one) are merged in
//!   one pass in canonical path order: memory stays flat however many files there are; only
//!   the differences are handed to the caller, one at a time, in path order.
//! - How content is compared ([`CheckMethod`]): with `download`, the bytes of both files;
//!   otherwise a hash kind both sides provide ([`side_hash`]: listed, an MD5 ETag, or computed
//!   on demand where reads are local); otherwise the size only. Files whose sizes differ are
//!   different without reading them.
//! - A file present on one side only, whose base record says the other side deleted it and a
//!   backup mode kept this copy on purpose (a *settled absence*, see
//!   [`BaseRecord::settled`](crate::state::BaseRecord::settled)), is reported as
//!   [`DifferenceKind::KeptByBackup`] and not counted as a difference.
//! - Nothing is written: no lock is taken and no state is created (an older state file may be
//!   migrated in place when it is read, as a dry run does).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use futures::StreamExt;

use crate::capabilities::Capabilities;
use crate::client::{EntryStream, StorageClient, StorageClientExt};
use crate::engine::SyncEngine;
use crate::entry::{Entry, HashKind};
use crate::entry_filter::EntryFilter;
use crate::error::{Error, SyncError};
use crate::identity;
use crate::mode::Side;
use crate::order::OutOfOrder;
use crate::pair::SyncPair;
use crate::path::RelPath;
use crate::state::{BaseRecord, StateStore};

/// Files compared (hashed or read) at once by default.
pub const DEFAULT_CHECKERS: usize = 8;

/// What [`SyncEngine::check_pair`] is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckOptions {
    /// Compare the bytes of both files (reads every file present on both sides with the same
    /// size) instead of hashes.
    pub download: bool,
    /// Only check that the destination holds the source's files (with the same content):
    /// files found on the destination only are not differences.
    pub one_way: bool,
    /// Sort both listings in the engine even where a backend claims ordered listings.
    pub sort_listings: bool,
    /// Files compared at once.
    pub checkers: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            download: false,
            one_way: false,
            sort_listings: false,
            checkers: DEFAULT_CHECKERS,
        }
    }
}

impl CheckOptions {
    /// Compares bytes instead of hashes.
    pub fn with_download(mut self, download: bool) -> Self {
        self.download = download;
        self
    }

    /// Checks only that the destination holds the source's files.
    pub fn with_one_way(mut self, one_way: bool) -> Self {
        self.one_way = one_way;
        self
    }

    /// Sorts both listings in the engine.
    pub fn with_sort_listings(mut self, sort: bool) -> Self {
        self.sort_listings = sort;
        self
    }

    /// Files compared at once (at least 1).
    pub fn with_checkers(mut self, n: usize) -> Self {
        self.checkers = n.max(1);
        self
    }
}

/// How file contents were compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckMethod {
    /// By a content hash of this kind, which both sides provide.
    Hash(HashKind),
    /// By size only: no hash kind both sides provide.
    Size,
    /// By reading both files (`download`).
    Bytes,
}

impl CheckMethod {
    /// `md5`, `size` or `bytes`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckMethod::Hash(HashKind::Md5) => "md5",
            CheckMethod::Size => "size",
            CheckMethod::Bytes => "bytes",
        }
    }
}

/// What differs at one path.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DifferenceKind {
    /// The source has the file, the destination does not.
    MissingOnDestination,
    /// The destination has the file, the source does not.
    MissingOnSource,
    /// Both have it, with different content, found by this comparison: `size`, `md5` or
    /// `bytes`.
    Differs {
        /// What told them apart.
        by: &'static str,
    },
    /// Present on one side only because the other side deleted it and a backup mode keeps
    /// this copy on purpose (the base records it). Not a difference.
    KeptByBackup {
        /// The side that deleted the file.
        deleted_on: Side,
    },
    /// The path could not be listed, hashed or read on `side`; what it holds is unknown.
    Error {
        /// The side concerned.
        side: Side,
        /// What went wrong.
        message: String,
    },
}

/// One path the check found not equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The path, relative to both roots.
    pub path: String,
    /// What differs.
    pub kind: DifferenceKind,
}

/// The counts of a check; the differences themselves went to the caller's sink.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CheckReport {
    /// How contents were compared (`md5`, `size`, `bytes`).
    pub method: &'static str,
    /// Files listed on the source (after filters).
    pub source_files: u64,
    /// Files listed on the destination (after filters).
    pub destination_files: u64,
    /// Files present on both sides whose contents were compared.
    pub compared: u64,
    /// Of those, files compared by size only although the method is a hash: one side listed
    /// no hash for them (S3 multipart uploads, for example).
    pub size_only: u64,
    /// Files found equal.
    pub matched: u64,
    /// Files on the source missing on the destination.
    pub missing_on_destination: u64,
    /// Files on the destination missing on the source (0 with `one_way`).
    pub missing_on_source: u64,
    /// Files on both sides with different contents.
    pub differs: u64,
    /// One-sided files a backup mode keeps on purpose (not differences).
    pub kept_by_backup: u64,
    /// Paths that could not be listed, hashed or read.
    pub errors: u64,
    /// Paths left out on both sides by the pair's size or age filter
    /// ([`SyncOptions::with_max_size`](crate::SyncOptions::with_max_size),
    /// [`with_min_age`](crate::SyncOptions::with_min_age)), as a sync leaves them.
    pub skipped: u64,
}

impl CheckReport {
    /// Whether both sides hold the same files with the same content (no difference, no
    /// error).
    pub fn is_equal(&self) -> bool {
        self.missing_on_destination == 0
            && self.missing_on_source == 0
            && self.differs == 0
            && self.errors == 0
    }

    fn count(&mut self, kind: &DifferenceKind) {
        match kind {
            DifferenceKind::MissingOnDestination => self.missing_on_destination += 1,
            DifferenceKind::MissingOnSource => self.missing_on_source += 1,
            DifferenceKind::Differs { .. } => self.differs += 1,
            DifferenceKind::KeptByBackup { .. } => self.kept_by_backup += 1,
            DifferenceKind::Error { .. } => self.errors += 1,
        }
    }
}

/// The hash kind a side provides for its files: listed for free ([`Capabilities::listed_hash`],
/// MD5 ETags), or computed on demand where reads are local ([`Capabilities::local_reads`]).
pub fn side_hash(caps: &Capabilities) -> Option<HashKind> {
    caps.listed_hash
        .or_else(|| (caps.etag_is_md5 || caps.local_reads).then_some(HashKind::Md5))
}

/// The method a check uses for two sides.
pub fn method_for(
    source: &Capabilities,
    destination: &Capabilities,
    download: bool,
) -> CheckMethod {
    if download {
        return CheckMethod::Bytes;
    }
    match (side_hash(source), side_hash(destination)) {
        (Some(a), Some(b)) if a == b => CheckMethod::Hash(a),
        _ => CheckMethod::Size,
    }
}

impl SyncEngine {
    /// Compares the two sides of `pair` and hands each difference to `sink`, in path order;
    /// returns the counts. Changes nothing (see the [module docs](crate::check)).
    ///
    /// The pair's excludes ([`SyncOptions::excludes`](crate::SyncOptions::excludes)) and
    /// each root's `.syncignore` apply as in a sync; its mode is not used (the pair's base,
    /// found by its two roots as a sync finds it, tells which one-sided files a backup mode
    /// keeps).
    ///
    /// # Errors
    /// [`SyncError::Unreachable`] when a side cannot be reached before anything is listed;
    /// [`SyncError::Listing`] when a listing fails (an out-of-order listing says to sort);
    /// [`SyncError::State`] when the pair's state exists but cannot be read;
    /// [`SyncError::Config`] for bad exclude patterns.
    pub async fn check_pair(
        &self,
        pair: &SyncPair,
        opts: &CheckOptions,
        sink: &mut (dyn FnMut(Difference) + Send),
    ) -> Result<CheckReport, SyncError> {
        crate::engine::check_reachable(pair).await?;
        let store = self.existing_store(pair).await?;
        let sort = match &store {
            Some(s) => {
                let s = s.clone();
                let remembered = tokio::task::spawn_blocking(move || s.unordered_listings())
                    .await
                    .map_err(|e| SyncError::State(format!("blocking task failed: {e}")))??;
                remembered.map(|r| r || opts.sort_listings)
            }
            None => [opts.sort_listings; 2],
        };
        let rules = Arc::new(self.ignore_rules(pair).await?);
        let ignored = Arc::new(AtomicU64::new(0));
        let source = self
            .listing(pair, Side::Source, &rules, &ignored, sort[0])
            .await;
        let destination = self
            .listing(pair, Side::Destination, &rules, &ignored, sort[1])
            .await;
        let base = store.map(|s| s.stream());
        let caps = [pair.source.capabilities(), pair.destination.capabilities()];
        let method = method_for(&caps[0], &caps[1], opts.download);
        let mut report = CheckReport {
            method: method.as_str(),
            ..CheckReport::default()
        };
        let walk = Walk {
            heads: [None, None],
            streams: [source, destination],
            base,
            base_head: None,
            started: false,
            ended: [false; 2],
            unknown: [Vec::new(), Vec::new()],
        };
        let items = futures::stream::unfold(walk, |mut walk| async move {
            match walk.next().await {
                Ok(Some(item)) => Some((Ok(item), walk)),
                Ok(None) => None,
                Err(e) => Some((Err(e), walk)),
            }
        });
        let clients = [pair.source.clone(), pair.destination.clone()];
        let one_way = opts.one_way;
        // The pair's size and age filters, as a sync applies them: a path where either side's
        // file is too large or too young is left out on both sides.
        let filter = Arc::new(EntryFilter::from_options(&pair.options));
        let mut outcomes = items
            .map(move |item| {
                let clients = clients.clone();
                let caps = caps.clone();
                let filter = filter.clone();
                async move {
                    let item = item?;
                    if let Item::Path { entries, .. } = &item
                        && !filter.admits_path([entries[0].as_ref(), entries[1].as_ref()])
                    {
                        return Ok(Outcome {
                            skipped: true,
                            ..Outcome::default()
                        });
                    }
                    Ok::<_, SyncError>(judge(item, &clients, &caps, method, one_way).await)
                }
            })
            .buffered(opts.checkers.max(1))
            .boxed();
        while let Some(outcome) = outcomes.next().await {
            let outcome = outcome.map_err(explain_order)?;
            report.skipped += u64::from(outcome.skipped);
            report.source_files += u64::from(outcome.on[0]);
            report.destination_files += u64::from(outcome.on[1]);
            if outcome.compared {
                report.compared += 1;
                report.size_only += u64::from(outcome.size_only);
            }
            match outcome.difference {
                Some(d) => {
                    report.count(&d.kind);
                    sink(d);
                }
                None if outcome.compared => report.matched += 1,
                None => {}
            }
        }
        Ok(report)
    }

    /// The pair's state, if the state directory has one (under its id or the older one);
    /// creates nothing.
    async fn existing_store(&self, pair: &SyncPair) -> Result<Option<StateStore>, SyncError> {
        let locations = pair.locations().await?;
        let id = match pair.explicit_id() {
            Some(id) => id.to_owned(),
            None => identity::pair_id(&locations[0], &locations[1]),
        };
        let older = pair.explicit_id().is_none().then(|| pair.older_id());
        crate::engine::existing_state(self.state_dir(), &id, older.as_deref()).await
    }
}

/// A listing caught out of canonical order ends the check with a hint to sort (a sync sorts
/// and plans again by itself; a check has already reported paths by then).
fn explain_order(e: SyncError) -> SyncError {
    match e {
        SyncError::Listing {
            side,
            source:
                Error::Other {
                    backend,
                    path,
                    source,
                },
        } if source.is::<OutOfOrder>() => SyncError::Listing {
            side,
            source: Error::other(
                backend,
                path,
                format!(
                    "{source}; check again with --sort-listings (the engine then sorts both \
                     listings itself)"
                ),
            ),
        },
        other => other,
    }
}

/// One path of the merged walk.
// Few are alive at once (one per comparison in flight): boxing would cost an allocation per path.
#[allow(clippy::large_enum_variant)]
enum Item {
    /// The path with what each side (source, destination) lists there, and which side's
    /// absence the base settled.
    Path {
        path: RelPath,
        entries: [Option<Entry>; 2],
        /// The path's base record, if the pair's state has one.
        base: Option<BaseRecord>,
    },
    /// A path a side could not list.
    Unknown {
        side: Side,
        path: String,
        reason: String,
    },
}

/// The merge of both listings and the base, in canonical path order.
struct Walk {
    heads: [Option<Entry>; 2],
    streams: [EntryStream; 2],
    base: Option<futures::stream::BoxStream<'static, Result<BaseRecord, SyncError>>>,
    base_head: Option<BaseRecord>,
    started: bool,
    /// Listings that have ended (never polled again).
    ended: [bool; 2],
    /// Paths each side could not list (`path`, contents only): one-sided files below them are
    /// not reported missing on that side.
    unknown: [Vec<(String, bool)>; 2],
}

/// A side's next listed item: an entry, or an unlisted path.
enum Listed {
    Entry(Entry),
    Unlisted {
        path: String,
        reason: String,
        contents_only: bool,
    },
}

impl Walk {
    async fn pull(&mut self, i: usize) -> Result<Option<Listed>, SyncError> {
        let side = [Side::Source, Side::Destination][i];
        if self.ended[i] {
            return Ok(None);
        }
        match self.streams[i].next().await {
            None => {
                self.ended[i] = true;
                Ok(None)
            }
            Some(Ok(e)) => Ok(Some(Listed::Entry(e))),
            Some(Err(Error::Unlisted {
                path,
                reason,
                contents_only,
                ..
            })) => Ok(Some(Listed::Unlisted {
                path,
                reason,
                contents_only,
            })),
            Some(Err(source)) => Err(SyncError::Listing { side, source }),
        }
    }

    /// Fills `heads[i]`; an unlisted path on the way is returned as an item.
    async fn fill(&mut self, i: usize) -> Result<Option<Item>, SyncError> {
        if self.heads[i].is_some() {
            return Ok(None);
        }
        match self.pull(i).await? {
            None => Ok(None),
            Some(Listed::Entry(e)) => {
                self.heads[i] = Some(e);
                Ok(None)
            }
            Some(Listed::Unlisted {
                path,
                reason,
                contents_only,
            }) => {
                self.unknown[i].push((path.clone(), contents_only));
                Ok(Some(Item::Unknown {
                    side: [Side::Source, Side::Destination][i],
                    path,
                    reason,
                }))
            }
        }
    }

    async fn next(&mut self) -> Result<Option<Item>, SyncError> {
        if !self.started {
            self.started = true;
            if let Some(base) = &mut self.base {
                self.base_head = base.next().await.transpose()?;
            }
        }
        // Unlisted items come out as soon as they are read; the heads are filled before a
        // path is chosen, so no side's entry is skipped.
        for i in 0..2 {
            if self.heads[i].is_none()
                && let Some(item) = self.fill(i).await?
            {
                return Ok(Some(item));
            }
        }
        let Some(path) = self.heads.iter().flatten().map(|e| &e.path).min().cloned() else {
            return Ok(None);
        };
        let mut entries: [Option<Entry>; 2] = [None, None];
        for (i, slot) in entries.iter_mut().enumerate() {
            if self.heads[i].as_ref().is_some_and(|e| e.path == path) {
                *slot = self.heads[i].take();
            }
        }
        // The base moves along: records before this path concern paths neither side has.
        let mut base = None;
        while let Some(record) = &self.base_head {
            if record.path < path {
                self.base_head = self.next_base().await?;
                continue;
            }
            if record.path == path {
                let next = self.next_base().await?;
                base = std::mem::replace(&mut self.base_head, next);
            }
            break;
        }
        // A file missing on a side that could not list its folder is unknown, not missing.
        for (i, entry) in entries.iter().enumerate() {
            let other = 1 - i;
            if entry.is_some()
                && entries[other].is_none()
                && let Some((below, _)) = self.unknown[other]
                    .iter()
                    .find(|(u, contents_only)| covers(u, *contents_only, path.as_str()))
            {
                return Ok(Some(Item::Unknown {
                    side: [Side::Source, Side::Destination][other],
                    path: path.to_string(),
                    reason: format!("below {below}, which could not be listed"),
                }));
            }
        }
        Ok(Some(Item::Path {
            path,
            entries,
            base,
        }))
    }

    async fn next_base(&mut self) -> Result<Option<BaseRecord>, SyncError> {
        match &mut self.base {
            Some(base) => base.next().await.transpose(),
            None => Ok(None),
        }
    }
}

/// Whether an unlisted path `unknown` hides `path`.
fn covers(unknown: &str, contents_only: bool, path: &str) -> bool {
    if unknown.is_empty() {
        return true;
    }
    let below = path
        .strip_prefix(unknown)
        .is_some_and(|rest| rest.starts_with('/'));
    below || (!contents_only && path == unknown)
}

/// What one path came to.
#[derive(Default)]
struct Outcome {
    /// Left out by the pair's size or age filter.
    skipped: bool,
    /// Listed on the source, on the destination.
    on: [bool; 2],
    /// Present on both sides, contents compared.
    compared: bool,
    /// Compared by size only although the method is a hash.
    size_only: bool,
    difference: Option<Difference>,
}

async fn judge(
    item: Item,
    clients: &[Arc<dyn StorageClient>; 2],
    caps: &[Capabilities; 2],
    method: CheckMethod,
    one_way: bool,
) -> Outcome {
    let (path, entries, base) = match item {
        Item::Unknown { side, path, reason } => {
            return Outcome {
                on: [false, false],
                compared: false,
                size_only: false,
                skipped: false,
                difference: Some(Difference {
                    path,
                    kind: DifferenceKind::Error {
                        side,
                        message: format!("could not list: {reason}"),
                    },
                }),
            };
        }
        Item::Path {
            path,
            entries,
            base,
        } => (path, entries, base),
    };
    let settled = base.as_ref().and_then(|b| b.settled);
    let on = [entries[0].is_some(), entries[1].is_some()];
    let mut outcome = Outcome {
        on,
        compared: false,
        size_only: false,
        skipped: false,
        difference: None,
    };
    let kind = match entries {
        [Some(_), None] => Some(match settled {
            Some(Side::Destination) => DifferenceKind::KeptByBackup {
                deleted_on: Side::Destination,
            },
            _ => DifferenceKind::MissingOnDestination,
        }),
        [None, Some(_)] => match settled {
            Some(Side::Source) if !one_way => Some(DifferenceKind::KeptByBackup {
                deleted_on: Side::Source,
            }),
            _ if one_way => None,
            _ => Some(DifferenceKind::MissingOnSource),
        },
        [Some(s), Some(d)] => {
            outcome.compared = true;
            match compare(&s, &d, clients, caps, method).await {
                // Equal sizes say little: where the base shows one side changed since the
                // last sync and the other not, the sync would copy it — not equal.
                Compared::Equal { size_only }
                    if (size_only || method == CheckMethod::Size)
                        && let Some(by) = changed_since_the_base(base.as_ref(), [&s, &d]) =>
                {
                    Some(DifferenceKind::Differs { by })
                }
                Compared::Equal { size_only } => {
                    outcome.size_only = size_only;
                    None
                }
                Compared::Differs(by) => Some(DifferenceKind::Differs { by }),
                Compared::Failed(side, message) => Some(DifferenceKind::Error { side, message }),
            }
        }
        [None, None] => None,
    };
    outcome.difference = kind.map(|kind| Difference {
        path: path.to_string(),
        kind,
    });
    outcome
}

/// Why two files of equal size are not the same as far as the pair's base can tell, for a
/// comparison by size only: one side's file is no longer the version the base recorded while
/// the other's still is (the next sync copies it over), or both moved away from it with
/// different modification times (the next sync finds a conflict). `None` without a base
/// record of both sides, when neither changed, or when both changed to the same size and
/// time (a copy of one another, which the sync records without a transfer).
fn changed_since_the_base(base: Option<&BaseRecord>, entries: [&Entry; 2]) -> Option<&'static str> {
    let base = base.filter(|b| b.settled.is_none())?;
    let changed = [
        !base.source.describes(entries[0]),
        !base.destination.describes(entries[1]),
    ];
    match changed {
        [true, false] => Some("changed on the source since the last sync"),
        [false, true] => Some("changed on the destination since the last sync"),
        [true, true]
            if entries[0].mtime_nanos().is_none()
                || entries[0].mtime_nanos() != entries[1].mtime_nanos() =>
        {
            Some("changed on both sides since the last sync")
        }
        _ => None,
    }
}

enum Compared {
    Equal { size_only: bool },
    Differs(&'static str),
    Failed(Side, String),
}

async fn compare(
    s: &Entry,
    d: &Entry,
    clients: &[Arc<dyn StorageClient>; 2],
    caps: &[Capabilities; 2],
    method: CheckMethod,
) -> Compared {
    if s.size != d.size {
        return Compared::Differs("size");
    }
    match method {
        CheckMethod::Size => Compared::Equal { size_only: false },
        CheckMethod::Hash(_) => {
            let entries = [s, d];
            let mut hashes = [s.content_hash(&caps[0]), d.content_hash(&caps[1])];
            // A side that lists no hash for this file and cannot compute one (an S3 multipart
            // upload): size only, without hashing the other side for nothing.
            if (0..2).any(|i| hashes[i].is_none() && !caps[i].local_reads) {
                return Compared::Equal { size_only: true };
            }
            for (i, side) in [Side::Source, Side::Destination].into_iter().enumerate() {
                if hashes[i].is_none() {
                    match clients[i].md5_of(entries[i]).await {
                        Ok(h) => hashes[i] = Some(h),
                        Err(e) => return Compared::Failed(side, format!("could not hash: {e}")),
                    }
                }
            }
            if hashes[0] == hashes[1] {
                Compared::Equal { size_only: false }
            } else {
                Compared::Differs("md5")
            }
        }
        CheckMethod::Bytes => match same_bytes(s, d, clients).await {
            Ok(true) => Compared::Equal { size_only: false },
            Ok(false) => Compared::Differs("bytes"),
            Err((side, e)) => Compared::Failed(side, format!("could not read: {e}")),
        },
    }
}

/// Reads both files side by side and compares their bytes; each read must deliver the listed
/// size (a short read is an error, never "differs").
async fn same_bytes(
    s: &Entry,
    d: &Entry,
    clients: &[Arc<dyn StorageClient>; 2],
) -> Result<bool, (Side, Error)> {
    let sides = [Side::Source, Side::Destination];
    let entries = [s, d];
    let mut bodies = Vec::with_capacity(2);
    for i in 0..2 {
        bodies.push(
            clients[i]
                .read(&entries[i].path)
                .await
                .map_err(|e| (sides[i], e))?,
        );
    }
    let mut pending = [Bytes::new(), Bytes::new()];
    let mut read = [0u64; 2];
    let mut ended = [false; 2];
    let mut equal = true;
    loop {
        for i in 0..2 {
            while pending[i].is_empty() && !ended[i] {
                match bodies[i].next().await {
                    Some(Ok(chunk)) => {
                        read[i] += chunk.len() as u64;
                        if read[i] > entries[i].size {
                            return Err((sides[i], grew(clients[i].as_ref(), entries[i])));
                        }
                        pending[i] = chunk;
                    }
                    Some(Err(e)) => return Err((sides[i], e)),
                    None => ended[i] = true,
                }
            }
        }
        for i in 0..2 {
            if ended[i] && read[i] != entries[i].size {
                return Err((
                    sides[i],
                    Error::other(
                        clients[i].backend(),
                        entries[i].path.as_str(),
                        format!(
                            "the read ended after {} of {} bytes (the file changed or the \
                             connection dropped); check again",
                            read[i], entries[i].size
                        ),
                    ),
                ));
            }
        }
        if pending[0].is_empty() || pending[1].is_empty() {
            // Both ended at the listed size (equal sizes were checked before).
            return Ok(equal);
        }
        let n = pending[0].len().min(pending[1].len());
        if pending[0][..n] != pending[1][..n] {
            // Read on to the end would prove nothing more.
            equal = false;
            return Ok(equal);
        }
        for p in &mut pending {
            *p = p.slice(n..);
        }
    }
}

fn grew(client: &dyn StorageClient, entry: &Entry) -> Error {
    Error::other(
        client.backend(),
        entry.path.as_str(),
        format!(
            "the read delivered more than the listed {} bytes (the file changed since it was \
             listed); check again",
            entry.size
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryClient;
    use crate::mode::SyncMode;
    use crate::pair::SyncOptions;

    fn rp(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    async fn run(
        engine: &SyncEngine,
        pair: &SyncPair,
        opts: CheckOptions,
    ) -> (CheckReport, Vec<Difference>) {
        let mut found = Vec::new();
        let report = engine
            .check_pair(pair, &opts, &mut |d| found.push(d))
            .await
            .unwrap();
        (report, found)
    }

    #[tokio::test]
    async fn finds_each_kind_of_difference_in_path_order() {
        let src = Arc::new(MemoryClient::new());
        let dst = Arc::new(MemoryClient::new());
        for (p, c) in [
            ("a", "same"),
            ("b", "only here"),
            ("c", "xxxx"),
            ("e", "long"),
        ] {
            src.put(&rp(p), Bytes::from(c)).await.unwrap();
        }
        for (p, c) in [
            ("a", "same"),
            ("c", "yyyy"),
            ("d", "dest only"),
            ("e", "longer"),
        ] {
            dst.put(&rp(p), Bytes::from(c)).await.unwrap();
        }
        let state = tempfile::tempdir().unwrap();
        let engine = SyncEngine::new(state.path());
        let pair = SyncPair::new(src, dst, SyncMode::TwoWay);
        let (report, found) = run(&engine, &pair, CheckOptions::default()).await;
        let kinds: Vec<(&str, DifferenceKind)> = found
            .iter()
            .map(|d| (d.path.as_str(), d.kind.clone()))
            .collect();
        // MemoryClient lists MD5s: same size, other content is told by the hash.
        assert_eq!(report.method, "md5");
        assert_eq!(
            kinds,
            vec![
                ("b", DifferenceKind::MissingOnDestination),
                ("c", DifferenceKind::Differs { by: "md5" }),
                ("d", DifferenceKind::MissingOnSource),
                ("e", DifferenceKind::Differs { by: "size" }),
            ]
        );
        assert_eq!((report.compared, report.matched), (3, 1));
        assert!(!report.is_equal());

        let (report, found) =
            run(&engine, &pair, CheckOptions::default().with_download(true)).await;
        assert_eq!(report.method, "bytes");
        assert!(found.contains(&Difference {
            path: "c".into(),
            kind: DifferenceKind::Differs { by: "bytes" }
        }));
        assert_eq!(report.differs, 2);

        let (report, found) = run(&engine, &pair, CheckOptions::default().with_one_way(true)).await;
        assert_eq!(report.missing_on_source, 0);
        assert!(found.iter().all(|d| d.path != "d"));
    }

    #[tokio::test]
    async fn excludes_apply_and_equal_sides_are_equal() {
        let src = Arc::new(MemoryClient::new());
        let dst = Arc::new(MemoryClient::new());
        src.put(&rp("keep.txt"), Bytes::from("k")).await.unwrap();
        dst.put(&rp("keep.txt"), Bytes::from("k")).await.unwrap();
        src.put(&rp("skip.tmp"), Bytes::from("t")).await.unwrap();
        dst.put(
            &rp(".syncengine/trash/20260101T000000Z/old"),
            Bytes::from("o"),
        )
        .await
        .unwrap();
        let state = tempfile::tempdir().unwrap();
        let engine = SyncEngine::new(state.path());
        let pair = SyncPair::new(src, dst, SyncMode::TwoWay)
            .with_options(SyncOptions::default().with_excludes(["*.tmp"]));
        let (report, found) = run(&engine, &pair, CheckOptions::default()).await;
        assert!(found.is_empty(), "{found:?}");
        assert!(report.is_equal());
        assert_eq!((report.source_files, report.destination_files), (1, 1));
        // Nothing was created in the state directory.
        assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_deletion_a_backup_mode_keeps_is_labelled_not_counted() {
        let src = Arc::new(MemoryClient::new());
        let dst = Arc::new(MemoryClient::new());
        src.put(&rp("gone"), Bytes::from("g")).await.unwrap();
        src.put(&rp("stays"), Bytes::from("s")).await.unwrap();
        let state = tempfile::tempdir().unwrap();
        let engine = SyncEngine::new(state.path());
        let pair = SyncPair::new(src.clone(), dst.clone(), SyncMode::SourceBackup);
        engine.sync_pair(&pair).await.unwrap();
        src.delete(&rp("gone")).await.unwrap();
        engine.sync_pair(&pair).await.unwrap();
        dst.put(&rp("extra"), Bytes::from("e")).await.unwrap();
        let (report, found) = run(&engine, &pair, CheckOptions::default()).await;
        assert_eq!(
            found
                .iter()
                .map(|d| (d.path.as_str(), d.kind.clone()))
                .collect::<Vec<_>>(),
            vec![
                ("extra", DifferenceKind::MissingOnSource),
                (
                    "gone",
                    DifferenceKind::KeptByBackup {
                        deleted_on: Side::Source
                    }
                ),
            ]
        );
        assert_eq!((report.kept_by_backup, report.missing_on_source), (1, 1));
        dst.delete(&rp("extra")).await.unwrap();
        let (report, _) = run(&engine, &pair, CheckOptions::default()).await;
        assert!(report.is_equal(), "{report:?}");
    }

    /// A folder the source cannot list is an error there, and the destination's files below
    /// it are not reported missing on the source (they may well be there).
    #[tokio::test]
    async fn an_unlisted_folder_is_an_error_not_missing_files() {
        let src = Arc::new(MemoryClient::new());
        let dst = Arc::new(MemoryClient::new());
        for c in [&src, &dst] {
            c.put(&rp("dir/a"), Bytes::from("a")).await.unwrap();
            c.put(&rp("z"), Bytes::from("z")).await.unwrap();
        }
        dst.put(&rp("dir/b"), Bytes::from("b")).await.unwrap();
        src.set_unlisted(&rp("dir"), Some("a symlink (not followed)"));
        let state = tempfile::tempdir().unwrap();
        let engine = SyncEngine::new(state.path());
        let pair = SyncPair::new(src, dst, SyncMode::TwoWay);
        let (report, found) = run(&engine, &pair, CheckOptions::default()).await;
        assert!(
            found.iter().all(|d| matches!(
                d.kind,
                DifferenceKind::Error {
                    side: Side::Source,
                    ..
                }
            )),
            "{found:?}"
        );
        assert!(found.iter().any(|d| d.path == "dir"), "{found:?}");
        assert_eq!((report.missing_on_source, report.matched), (0, 1));
        assert!(report.errors > 0 && !report.is_equal());
    }

    #[test]
    fn methods_follow_what_both_sides_provide() {
        let local = Capabilities {
            local_reads: true,
            ..Capabilities::default()
        };
        let s3 = Capabilities {
            etag_is_md5: true,
            ..Capabilities::default()
        };
        let plain = Capabilities::default();
        assert_eq!(
            method_for(&local, &s3, false),
            CheckMethod::Hash(HashKind::Md5)
        );
        assert_eq!(method_for(&local, &plain, false), CheckMethod::Size);
        assert_eq!(method_for(&local, &plain, true), CheckMethod::Bytes);
    }

    #[test]
    fn unlisted_paths_cover_what_is_below() {
        assert!(covers("a", false, "a"));
        assert!(covers("a", false, "a/b"));
        assert!(!covers("a", false, "ab"));
        assert!(!covers("a", true, "a"));
        assert!(covers("a", true, "a/b"));
        assert!(covers("", true, "x"));
    }
}
