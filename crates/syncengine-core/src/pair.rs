//! [`SyncPair`] and [`SyncOptions`]: what to sync, and how.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::client::StorageClient;
use crate::error::SyncError;
use crate::identity::{AcceptNewRoot, Location, pair_id};
use crate::mode::{ConflictLoser, ConflictStrategy, InitialSyncPreference, Side, SyncMode};

/// How many days trash folders are kept by default (like the cloud drives people know).
pub const DEFAULT_TRASH_KEEP_DAYS: u32 = 30;

/// Where a file goes before the engine deletes or overwrites it on a side.
///
/// # Behavior
/// The trash is `<root>/.syncengine/trash/<YYYYMMDDTHHMMSSZ>/<path>` on the side's own
/// storage, reached by a native rename on local disk, SFTP and WebDAV and by a server-side
/// copy and delete on object stores (S3, Azure, GCS: each trashed object costs a copy and a
/// delete request, and its storage until the trash is pruned). It is never synced, and
/// folders older than [`SyncOptions::trash_keep_days`] are removed at the end of each run.
/// A backend that can neither rename nor copy fails its deletes (`Unsupported`) rather than
/// lose a file: give it [`Recovery::None`] or a [`Recovery::TrashDir`].
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Recovery {
    /// The side's own trash, on every backend. The default.
    #[default]
    Auto,
    /// Deleted and overwritten files are gone (for versioned buckets, whose versions already
    /// keep them).
    None,
    /// The side's own trash, `.syncengine/trash/<YYYYMMDDTHHMMSSZ>/<path>` under its root.
    Trash,
    /// Copied to this client (rclone's `--backup-dir`) under
    /// `<YYYYMMDDTHHMMSSZ>/<path>` before being deleted or overwritten; never pruned.
    BackupDir(Arc<dyn StorageClient>),
    /// A trash kept elsewhere: copied to this client under `<YYYYMMDDTHHMMSSZ>/<path>` before
    /// being deleted or overwritten, and pruned like the side's own trash. For roots whose
    /// own folder must not hold it (a root served as a website would publish its trash).
    TrashDir(Arc<dyn StorageClient>),
}

impl fmt::Debug for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recovery::Auto => f.write_str("Auto"),
            Recovery::None => f.write_str("None"),
            Recovery::Trash => f.write_str("Trash"),
            Recovery::BackupDir(c) => write!(f, "BackupDir({c})"),
            Recovery::TrashDir(c) => write!(f, "TrashDir({c})"),
        }
    }
}

/// How a run behaves. Every field has a safe default.
///
/// ```
/// use syncengine_core::{ConflictStrategy, SyncOptions};
///
/// let opts = SyncOptions::default()
///     .with_conflict(ConflictStrategy::KeepBoth)
///     .with_excludes(["*.tmp", "build/"])
///     .with_dry_run(true);
/// assert_eq!(opts.transfers, 8);
/// assert_eq!(opts.max_delete_percent, 50);
/// assert_eq!(opts.trash_keep_days, Some(30));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SyncOptions {
    /// The first-sync preference; `None` means `MERGE` with a risk warning where it applies.
    pub initial_preference: Option<InitialSyncPreference>,
    /// How `TWO_WAY` conflicts are resolved.
    pub conflict: ConflictStrategy,
    /// What happens to a conflict's losing version.
    pub conflict_loser: ConflictLoser,
    /// Extra ignore patterns (gitignore syntax), on top of each root's `.syncignore`.
    pub excludes: Vec<String>,
    /// Include patterns (gitignore syntax, see [`SyncOptions::with_includes`]): when any is
    /// given, only files matching one are synced.
    pub includes: Vec<String>,
    /// Files larger than this many bytes are left alone (see [`SyncOptions::with_max_size`]).
    pub max_size: Option<u64>,
    /// Files modified less than this long ago are left alone (see
    /// [`SyncOptions::with_min_age`]).
    pub min_age: Option<Duration>,
    /// Plan and report, change nothing (not even the state).
    pub dry_run: bool,
    /// Actions in flight at once, at least: the run raises it to the sides' own preference
    /// ([`Capabilities::preferred_transfers`](crate::Capabilities::preferred_transfers): 64
    /// for object stores, whose every request waits a round trip; between two roots of one
    /// backend, [`Capabilities::same_kind_transfers`](crate::Capabilities::same_kind_transfers):
    /// 32 for two local folders) unless it was set with [`SyncOptions::with_transfers`]. See
    /// [`SyncOptions::transfers_for`].
    pub transfers: usize,
    /// Set by [`SyncOptions::with_transfers`]: `transfers` is exactly what runs.
    transfers_chosen: bool,
    /// Stop before changing anything if a run would delete more than this percentage of the
    /// files on either side (counted after rename matching).
    pub max_delete_percent: u8,
    /// Override the safety stops (max-delete, empty side).
    pub force: bool,
    /// Compare content hashes, not just size and mtime, when deciding whether a side changed
    /// a file: every file of a side whose reads are local
    /// ([`Capabilities::local_reads`](crate::Capabilities::local_reads)) that its listing
    /// gives no hash is hashed on every run, and hashes are kept in the base, so an edit that
    /// keeps size and mtime is seen. Remote sides use the hashes their listings carry (S3
    /// single-part MD5 ETags); their files are never downloaded just to be hashed, as with
    /// rclone's `--checksum`. Without this option no file is read on a run where nothing
    /// changed.
    pub checksum: bool,
    /// Attempts per action for transient errors (1 = no retry).
    pub attempts: u32,
    /// Always sort listings in the engine, even from clients that claim ordered listings.
    pub sort_listings: bool,
    /// Recovery of deleted/overwritten files on the source.
    pub source_recovery: Recovery,
    /// Recovery of deleted/overwritten files on the destination.
    pub destination_recovery: Recovery,
    /// Trash folders older than this many days are removed at the end of a run (default
    /// [`DEFAULT_TRASH_KEEP_DAYS`]); `None` keeps them forever. Applies to each side's own
    /// trash and to [`Recovery::TrashDir`], never to a [`Recovery::BackupDir`].
    pub trash_keep_days: Option<u32>,
    /// Accept a root that is not the storage the state recorded (see
    /// [`SyncError::RootChanged`]): the run ignores the old base, deletes nothing, and
    /// records the new root's identity.
    pub accept_new_root: Option<AcceptNewRoot>,
    /// Sides the run never writes to, whatever the mode (see [`crate::protect`]): no copy,
    /// delete, rename, trash move or conflict rename there, and nothing under its
    /// `.syncengine/` folder. What the run would have changed there is counted in
    /// [`SyncStats::protected`](crate::SyncStats::protected) and not recorded; the protected
    /// side wins its conflicts. Both sides protected is refused
    /// ([`SyncError::Config`]): use a dry run instead.
    pub protected: Vec<Side>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            initial_preference: None,
            conflict: ConflictStrategy::NewestWins,
            conflict_loser: ConflictLoser::Keep,
            excludes: Vec::new(),
            includes: Vec::new(),
            max_size: None,
            min_age: None,
            dry_run: false,
            transfers: 8,
            transfers_chosen: false,
            max_delete_percent: 50,
            force: false,
            checksum: false,
            attempts: 4,
            sort_listings: false,
            source_recovery: Recovery::Auto,
            destination_recovery: Recovery::Auto,
            trash_keep_days: Some(DEFAULT_TRASH_KEEP_DAYS),
            accept_new_root: None,
            protected: Vec::new(),
        }
    }
}

impl SyncOptions {
    /// Sets the first-sync preference.
    pub fn with_initial_preference(mut self, p: InitialSyncPreference) -> Self {
        self.initial_preference = Some(p);
        self
    }
    /// Sets the conflict strategy.
    pub fn with_conflict(mut self, c: ConflictStrategy) -> Self {
        self.conflict = c;
        self
    }
    /// Sets what happens to a conflict's loser.
    pub fn with_conflict_loser(mut self, l: ConflictLoser) -> Self {
        self.conflict_loser = l;
        self
    }
    /// Adds ignore patterns.
    pub fn with_excludes<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.excludes.extend(patterns.into_iter().map(Into::into));
        self
    }
    /// Adds include patterns, as rclone's `--include`: once any is given, a file is synced
    /// only when it, or one of its parent folders, matches one, and every other file is left
    /// alone on both sides (never copied, never deleted, its base kept). Excludes still apply
    /// to included files: an exclude always wins. Folders are always traversed.
    ///
    /// Patterns are gitignore syntax, as for [`with_excludes`](Self::with_excludes): `*.jpg`
    /// matches at any depth, a pattern with a `/` is anchored at the root (`/todo.txt`,
    /// `docs/*.md`), `photos/` takes everything below each folder of that name, `**` crosses
    /// folders. A pattern cannot start with `!`.
    ///
    /// ```
    /// use syncengine_core::SyncOptions;
    ///
    /// // Only photos, wherever they are, and never the thumbnails.
    /// let opts = SyncOptions::default()
    ///     .with_includes(["*.jpg", "*.png"])
    ///     .with_excludes(["thumbs/"]);
    /// assert_eq!(opts.includes, ["*.jpg", "*.png"]);
    /// ```
    pub fn with_includes<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.includes.extend(patterns.into_iter().map(Into::into));
        self
    }
    /// Leaves files larger than `bytes` alone, as rclone's `--max-size`.
    ///
    /// # Behavior
    /// Decided per path once both listings are read: when the file is over the limit on
    /// either side, the path is skipped on both sides for the run (counted in
    /// [`SyncStats::skipped`](crate::SyncStats::skipped)) and its base is kept. A file that
    /// grew past the limit on one side is therefore never read as deleted, nor is the other
    /// side's copy deleted or overwritten; a file deleted on one side while the other side's
    /// copy is over the limit is not deleted there. A skipped file is never half of a rename.
    ///
    /// ```
    /// use syncengine_core::SyncOptions;
    ///
    /// let opts = SyncOptions::default().with_max_size(100 * 1024 * 1024); // 100 MiB
    /// assert_eq!(opts.max_size, Some(104_857_600));
    /// ```
    pub fn with_max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }
    /// Leaves files modified less than `age` ago alone, as rclone's `--min-age`: only files
    /// older than `age` are synced (say, files still being written).
    ///
    /// # Behavior
    /// As [`with_max_size`](Self::with_max_size): a path whose file is too young on either
    /// side is skipped on both sides and keeps its base, so a file just edited on one side
    /// is never read as deleted and never makes the other side's copy go. Ages are measured
    /// from the start of the run against each side's listed modification time; a file
    /// whose listing has no modification time, or one in the future, counts as too young.
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncengine_core::SyncOptions;
    ///
    /// let opts = SyncOptions::default().with_min_age(Duration::from_secs(10 * 60));
    /// assert_eq!(opts.min_age, Some(Duration::from_secs(600)));
    /// ```
    pub fn with_min_age(mut self, age: Duration) -> Self {
        self.min_age = Some(age);
        self
    }
    /// Sets dry-run.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
    /// Sets the number of actions in flight (at least 1), exactly: the sides' preference no
    /// longer raises it.
    pub fn with_transfers(mut self, n: usize) -> Self {
        self.transfers = n.max(1);
        self.transfers_chosen = true;
        self
    }

    /// The actions a run between `source` and `destination` keeps in flight: the number
    /// given to [`with_transfers`](Self::with_transfers), else the larger of
    /// [`transfers`](Self::transfers) (8 by default) and the sides'
    /// [`preferred_transfers`](crate::Capabilities::preferred_transfers), and, between two
    /// roots of the same backend, their
    /// [`same_kind_transfers`](crate::Capabilities::same_kind_transfers).
    ///
    /// ```
    /// use syncengine_core::{MemoryClient, SyncOptions};
    ///
    /// let (a, b) = (MemoryClient::new(), MemoryClient::new());
    /// assert_eq!(SyncOptions::default().transfers_for(&a, &b), 8);
    /// assert_eq!(SyncOptions::default().with_transfers(3).transfers_for(&a, &b), 3);
    /// ```
    pub fn transfers_for(
        &self,
        source: &dyn crate::StorageClient,
        destination: &dyn crate::StorageClient,
    ) -> usize {
        if self.transfers_chosen {
            return self.transfers.max(1);
        }
        let (from, to) = (source.capabilities(), destination.capabilities());
        let same_kind = (source.backend() == destination.backend())
            .then(|| from.same_kind_transfers.min(to.same_kind_transfers))
            .flatten();
        [from.preferred_transfers, to.preferred_transfers, same_kind]
            .into_iter()
            .flatten()
            .fold(self.transfers.max(1), usize::max)
    }
    /// Sets the max-delete percentage.
    pub fn with_max_delete_percent(mut self, p: u8) -> Self {
        self.max_delete_percent = p.min(100);
        self
    }
    /// Overrides the safety stops.
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }
    /// Compares content hashes (see [`SyncOptions::checksum`]).
    pub fn with_checksum(mut self, checksum: bool) -> Self {
        self.checksum = checksum;
        self
    }
    /// Sets attempts per action for transient errors.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }
    /// Always sorts listings in the engine.
    pub fn with_sort_listings(mut self, sort: bool) -> Self {
        self.sort_listings = sort;
        self
    }
    /// Sets the recovery policy of one side.
    pub fn with_recovery(mut self, side: Side, recovery: Recovery) -> Self {
        match side {
            Side::Source => self.source_recovery = recovery,
            Side::Destination => self.destination_recovery = recovery,
        }
        self
    }
    /// Accepts a new root on the given side(s) (see [`SyncOptions::accept_new_root`]).
    pub fn with_accept_new_root(mut self, sides: AcceptNewRoot) -> Self {
        self.accept_new_root = Some(sides);
        self
    }
    /// Prunes trash folders older than `days` at the end of each run.
    pub fn with_trash_keep_days(mut self, days: u32) -> Self {
        self.trash_keep_days = Some(days);
        self
    }
    /// Protects `side`: the run never writes to it (see [`SyncOptions::protected`]).
    ///
    /// ```
    /// use syncengine_core::{Side, SyncOptions};
    ///
    /// // A backup that never touches the original: with `SyncMode::SourceBackup`, new and
    /// // changed source files are uploaded, and nothing comes back to the source.
    /// let opts = SyncOptions::default().with_protected(Side::Source);
    /// assert!(opts.is_protected(Side::Source));
    /// assert!(!opts.is_protected(Side::Destination));
    /// ```
    pub fn with_protected(mut self, side: Side) -> Self {
        if !self.protected.contains(&side) {
            self.protected.push(side);
        }
        self
    }
    /// Whether `side` is protected (see [`SyncOptions::protected`]).
    pub fn is_protected(&self, side: Side) -> bool {
        self.protected.contains(&side)
    }
    /// Keeps trash folders forever (no pruning).
    pub fn with_trash_kept_forever(mut self) -> Self {
        self.trash_keep_days = None;
        self
    }
}

/// Two storage locations kept in sync in one mode.
///
/// ```
/// use std::sync::Arc;
/// use syncengine_core::{MemoryClient, SyncMode, SyncPair};
///
/// let pair = SyncPair::new(
///     Arc::new(MemoryClient::new()),
///     Arc::new(MemoryClient::new()),
///     SyncMode::TwoWay,
/// );
/// assert_eq!(pair.mode, SyncMode::TwoWay);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SyncPair {
    /// The source side.
    pub source: Arc<dyn StorageClient>,
    /// The destination side.
    pub destination: Arc<dyn StorageClient>,
    /// The mode.
    pub mode: SyncMode,
    /// The options.
    pub options: SyncOptions,
    id: Option<String>,
}

impl SyncPair {
    /// Creates a pair with default options.
    pub fn new(
        source: Arc<dyn StorageClient>,
        destination: Arc<dyn StorageClient>,
        mode: SyncMode,
    ) -> Self {
        SyncPair {
            source,
            destination,
            mode,
            options: SyncOptions::default(),
            id: None,
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: SyncOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets an explicit pair id (the key of the pair's state). By default the id is derived
    /// from both sides' resolved locations ([`StorageClient::location`]). The roots of a pair
    /// with an explicit id are identity-checked like any other.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The stable id of the pair: the explicit one, or a hash of both sides' resolved
    /// locations (endpoint, bucket, canonical path…, never credentials). The mode is not part
    /// of it, so switching modes keeps the base.
    ///
    /// # Errors
    /// [`SyncError::Storage`] when a side cannot resolve its location.
    pub async fn id(&self) -> Result<String, SyncError> {
        if let Some(id) = &self.id {
            return Ok(id.clone());
        }
        let [s, d] = self.locations().await?;
        Ok(pair_id(&s, &d))
    }

    /// Both sides' resolved locations, source first.
    ///
    /// # Errors
    /// [`SyncError::Storage`] when a side cannot resolve its location.
    pub async fn locations(&self) -> Result<[Location; 2], SyncError> {
        let resolve = |side: Side| async move {
            self.client(side)
                .location()
                .await
                .map_err(|source| SyncError::Storage { side, source })
        };
        let (s, d) = futures::try_join!(resolve(Side::Source), resolve(Side::Destination))?;
        Ok([s, d])
    }

    /// The explicit id, if one was set.
    pub(crate) fn explicit_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The id older versions gave this pair: a hash of the clients' `Display` forms, which
    /// left out endpoints, hosts and ports. Only used to find and adopt an older state file.
    pub(crate) fn older_id(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.source.to_string().as_bytes());
        h.update(b"\n");
        h.update(self.destination.to_string().as_bytes());
        hex::encode(&h.finalize()[..12])
    }

    /// The client of one side.
    pub fn client(&self, side: Side) -> &Arc<dyn StorageClient> {
        match side {
            Side::Source => &self.source,
            Side::Destination => &self.destination,
        }
    }
}
