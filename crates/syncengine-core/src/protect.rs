//! Protected sides ([`SyncOptions::protected`](crate::SyncOptions::protected), the CLI's
//! `--protect source|destination`): a side the run never writes to, whatever the mode.
//!
//! Unison has `-nocreation`, `-noupdate` and `-nodeletion` per root; a protected side is all
//! three at once. It is read (listed, hashed, copied from) like any other side, but:
//!
//! - **no action changes it**: after the plan is made, every action that would write, delete,
//!   rename, trash, set aside or conflict-rename anything on the protected side is taken out of
//!   the plan ([`protect_plan`]) and reported as *protected*
//!   ([`SyncStats::protected`](crate::SyncStats::protected), and a warning naming the first few
//!   paths). Its base update is not made either, so the next run sees the same difference and
//!   reports it again — the base never claims a state the protected side does not have;
//! - **the protected side wins its conflicts**: its version is copied over the other side's
//!   (where the mode copies in that direction at all; otherwise the conflict is left as it is
//!   and reported as protected), and the other side's version is kept as the conflict loser on
//!   its own side, under the usual loser rules (`--conflict-loser`). A kept loser is not copied
//!   to the protected side;
//! - **nothing is written under its `.syncengine/` folder** either: no root id file, no
//!   generation file, no name-folding probe, no trash, no temp file; stale temp files and old
//!   trash folders there are not removed. To be sure no code path slips through, the engine
//!   also hands the run a read-only view of the protected client ([`ReadOnly`]), which refuses
//!   every write, delete, copy and rename with [`Error::PermissionDenied`].
//!
//! What protection costs: a protected root without an id file gets no identity from this run
//! (its volume id stands in where the backend has one, else a warning says the root cannot be
//! checked); a root's generation is not advanced, so an older copy of a protected root put back
//! later is not recognised as one (a warning says so when the run changes the base); and the
//! name-folding probe of a protected root that has no cached answer is made with reads only
//! ([`read_only_folding`]).
//!
//! # A backup that never touches the original
//! `SOURCE_BACKUP` downloads destination additions and modifications to the source. With the
//! source protected it becomes a pure one-way backup: new and changed source files are
//! uploaded, nothing ever comes back, and a file edited on the destination keeps that edit
//! (the source's differing version is not copied over it unless the source changes it again:
//! then it is a conflict, which the protected source wins, the destination's edit kept beside
//! it as a conflict copy). This differs from `rclone copy`, which overwrites a destination file
//! that differs from the source on every run.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures::StreamExt;
use unicode_normalization::UnicodeNormalization;

use crate::capabilities::Capabilities;
use crate::client::{
    ByteStream, DeleteOptions, EntryStream, PruneFn, ReadOptions, StorageClient, TransferOptions,
    WriteOptions,
};
use crate::entry::Entry;
use crate::error::{Error, Result, SyncError};
use crate::folding::Folding;
use crate::identity::Location;
use crate::ignore_rules::STATE_DIR_NAME;
use crate::mode::{Side, SyncMode};
use crate::pair::SyncPair;
use crate::path::RelPath;
use crate::plan::{Action, Plan};

/// How many protected actions a run names in its warning; the rest are counted.
pub const NAMED_PROTECTED: usize = 10;

/// The pair to run: `pair` itself when no side is protected, else a copy whose protected
/// client is wrapped in [`ReadOnly`].
///
/// # Errors
/// [`SyncError::Config`] when both sides are protected: nothing could be written anywhere,
/// which is what a dry run is for.
pub(crate) fn guard(pair: &SyncPair) -> std::result::Result<Option<SyncPair>, SyncError> {
    let protected = &pair.options.protected;
    if protected.contains(&Side::Source) && protected.contains(&Side::Destination) {
        return Err(SyncError::Config(
            "both sides are protected: the run could change nothing; to see what it would do \
             without changing anything, use a dry run (--dry-run)"
                .into(),
        ));
    }
    let Some(side) = protected.first().copied() else {
        return Ok(None);
    };
    let mut guarded = pair.clone();
    let wrapped: Arc<dyn StorageClient> = Arc::new(ReadOnly {
        inner: pair.client(side).clone(),
        side,
    });
    match side {
        Side::Source => guarded.source = wrapped,
        Side::Destination => guarded.destination = wrapped,
    }
    Ok(Some(guarded))
}

/// Whether `action` would change anything on `side` when carried out as planned (follow-up
/// copies the executor adds while it runs are checked on their own).
pub fn writes_to(action: &Action, side: Side) -> bool {
    match action {
        Action::Copy { from, .. } => from.other() == side,
        Action::Delete { side: s, .. } => *s == side,
        Action::Rename { seen_on, .. } => seen_on.other() == side,
        // The loser is renamed (or trashed) on its side and the winner written over it.
        Action::Conflict { winner, .. } => *winner != Some(side),
        Action::SetAside { kept_side, .. } => *kept_side == side,
        Action::MoveAside { side: s, share, .. } => *s == side || *share,
    }
}

/// Whether `mode` copies files from `side` to the other side.
fn copies_from(mode: SyncMode, side: Side) -> bool {
    match side {
        Side::Source => mode.allows_upload(),
        Side::Destination => mode.allows_download(),
    }
}

/// A short description of what `action` would have done on the protected side.
fn describe(action: &Action, protected: Side) -> String {
    let what = match action {
        Action::Copy { target: None, .. } => "create",
        Action::Copy { .. } => "overwrite",
        Action::Delete { .. } => "delete",
        Action::Rename { keep_old: true, .. } => "copy under a new name",
        Action::Rename { .. } => "rename",
        Action::Conflict { .. } => "settle a conflict",
        Action::SetAside { .. } => "set aside the kept copy",
        Action::MoveAside { side, .. } if *side == protected => "move aside for a type change",
        Action::MoveAside { .. } => "copy a moved-aside file",
    };
    format!("{} ({what})", action.path())
}

/// Takes out of `plan` every action that would change the `protected` side, under `mode`:
/// a conflict goes to the protected side where the mode copies from it; a type change's
/// moved-aside file stays on the other side unshared; everything else is dropped. Each
/// dropped action (or dropped part of one) counts in [`Plan::protected`], and one warning
/// names the first [`NAMED_PROTECTED`].
///
/// Dropping an action also drops its base update (the executor makes it only after the
/// action), so later runs report the same difference again.
pub fn protect_plan(plan: &mut Plan, protected: Side, mode: SyncMode) -> std::io::Result<()> {
    let mut named = Vec::new();
    let mut count = 0u64;
    let mut won = 0u64;
    let mut note = |action: &Action, named: &mut Vec<String>| {
        count += 1;
        tracing::info!(path = %action.path(), side = %protected, "protected: not changed");
        if named.len() < NAMED_PROTECTED {
            named.push(describe(action, protected));
        }
    };
    plan.actions.rewrite(|mut action| {
        if !writes_to(&action, protected) {
            return vec![action];
        }
        let goes_over = matches!(action, Action::Conflict { .. }) && copies_from(mode, protected);
        let unshare = matches!(&action, Action::MoveAside { side, .. } if *side != protected);
        if goes_over {
            if let Action::Conflict { winner, .. } = &mut action {
                *winner = Some(protected);
            }
            won += 1;
            vec![action]
        } else if unshare {
            // The file moves aside on the other side as planned (the protected side's folder
            // takes the path there); only its copy to the protected side is left out.
            note(&action, &mut named);
            if let Action::MoveAside { share, .. } = &mut action {
                *share = false;
            }
            vec![action]
        } else {
            note(&action, &mut named);
            Vec::new()
        }
    })?;
    plan.protected += count;
    if won > 0 {
        plan.warnings.push(format!(
            "{won} conflict(s) settled in favour of the protected {protected}: its version is \
             copied to the {}, whose own version is kept as the conflict loser there",
            protected.other()
        ));
    }
    if count > 0 {
        plan.warnings
            .push(protected_warning(protected, count, &named));
    }
    Ok(())
}

/// The warning naming what protection kept from being done.
pub(crate) fn protected_warning(protected: Side, count: u64, named: &[String]) -> String {
    let more = count.saturating_sub(named.len() as u64);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "{count} change(s) to the protected {protected} were not made (--protect {protected}): \
         {}{tail}; they are not recorded, so the next run reports them again",
        named.join(", ")
    )
}

/// How a protected root folds names, found with reads only: the probe of
/// [`crate::folding`] writes a file, which a protected root must not get.
///
/// # Behavior
/// Reads up to `limit` files of the root's listing (nothing below `.syncengine/`). Letter
/// case: two listed names that differ only in case prove the root keeps case apart; else the
/// first name with a letter is looked up (`stat`) in another case, which the listing does not
/// hold: found means the root folds case, not found means it keeps case apart. Unicode
/// normalisation likewise, with a name whose NFC and NFD forms differ. Where the listing
/// offers no such name (an empty root, names without letters or accents), the root is
/// assumed to **fold** that way: the collision check then treats names that differ only that
/// way as one name there, which leaves them alone (reported) rather than risk planning a
/// delete on the other side against a name the root holds under another spelling. Since the
/// protected root is never written, that costs nothing but such reports.
///
/// # Errors
/// The backend's error when the listing or a lookup fails.
pub async fn read_only_folding(client: &dyn StorageClient, limit: usize) -> Result<Folding> {
    let own = RelPath::new(STATE_DIR_NAME)?;
    let prune: PruneFn = Arc::new(move |dir: &RelPath| *dir == own);
    let mut listing = client.list_pruned(None, prune);
    let mut names = std::collections::HashSet::new();
    let mut case_folds = std::collections::HashMap::new();
    let mut case_proved_apart = false;
    let mut nfc_proved_apart = false;
    let mut nfc_folds = std::collections::HashMap::new();
    while let Some(item) = listing.next().await {
        let entry = match item {
            Ok(entry) => entry,
            Err(Error::Unlisted { .. }) => continue,
            Err(e) => return Err(e),
        };
        if entry
            .path
            .as_str()
            .starts_with(&format!("{STATE_DIR_NAME}/"))
        {
            continue;
        }
        let p = entry.path.as_str().to_owned();
        if case_folds
            .insert(p.to_lowercase(), p.clone())
            .is_some_and(|other| other != p)
        {
            case_proved_apart = true;
        }
        let nfc: String = p.nfc().collect();
        if nfc_folds
            .insert(nfc, p.clone())
            .is_some_and(|other| other != p)
        {
            nfc_proved_apart = true;
        }
        names.insert(p);
        if names.len() >= limit {
            break;
        }
    }
    drop(listing);
    let case_insensitive = if case_proved_apart {
        false
    } else {
        match names.iter().find_map(|p| {
            let twin = swap_last_case(p)?;
            (!names.contains(&twin)).then_some(twin)
        }) {
            Some(twin) => exists(client, &twin).await?,
            None => true,
        }
    };
    let normalization_insensitive = if nfc_proved_apart {
        false
    } else {
        match names.iter().find_map(|p| {
            let nfc: String = p.nfc().collect();
            let twin: String = if nfc == *p { p.nfd().collect() } else { nfc };
            (twin != *p && !names.contains(&twin)).then_some(twin)
        }) {
            Some(twin) => exists(client, &twin).await?,
            None => true,
        }
    };
    Ok(Folding {
        case_insensitive,
        normalization_insensitive,
    })
}

/// `path` with the case of its last segment swapped (upper to lower, lower to upper), when
/// that changes it.
fn swap_last_case(path: &str) -> Option<String> {
    let (dir, name) = match path.rsplit_once('/') {
        Some((dir, name)) => (Some(dir), name),
        None => (None, path),
    };
    let swapped: String = name
        .chars()
        .flat_map(|c| {
            if c.is_uppercase() {
                c.to_lowercase().collect::<Vec<_>>()
            } else {
                c.to_uppercase().collect::<Vec<_>>()
            }
        })
        .collect();
    if swapped == name || swapped.to_lowercase() != name.to_lowercase() {
        return None;
    }
    Some(match dir {
        Some(dir) => format!("{dir}/{swapped}"),
        None => swapped,
    })
}

/// Whether a file answers at `path` (a name that is no valid path answers no).
async fn exists(client: &dyn StorageClient, path: &str) -> Result<bool> {
    let Ok(path) = RelPath::new(path) else {
        return Ok(false);
    };
    match client.stat(&path).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// A read-only view of a protected side's client: reads, listings and lookups go to the
/// inner client; every write, delete, copy and rename fails with
/// [`Error::PermissionDenied`] naming the protection, and the housekeeping calls that would
/// change the root (stale temp removal, clean-up) do nothing.
///
/// The engine removes every action on a protected side from the plan before it runs
/// ([`protect_plan`]); this view is the second line: a code path that would write there
/// anyway fails instead of writing.
pub struct ReadOnly {
    inner: Arc<dyn StorageClient>,
    side: Side,
}

impl ReadOnly {
    /// Wraps the client of the protected `side`.
    pub fn new(inner: Arc<dyn StorageClient>, side: Side) -> Self {
        ReadOnly { inner, side }
    }

    fn refuse<T>(&self, path: &RelPath) -> Result<T> {
        tracing::debug!(side = %self.side, %path, "refused a write to the protected side");
        Err(Error::PermissionDenied {
            backend: self.inner.backend(),
            path: path.to_string(),
            source: Some(
                format!(
                    "the {} is protected (--protect {}): nothing is written to it",
                    self.side, self.side
                )
                .into(),
            ),
        })
    }
}

impl fmt::Display for ReadOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for ReadOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadOnly")
            .field("inner", &self.inner)
            .field("side", &self.side)
            .finish()
    }
}

#[async_trait]
impl StorageClient for ReadOnly {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn location(&self) -> Result<Location> {
        self.inner.location().await
    }

    async fn volume_id(&self) -> Result<Option<String>> {
        self.inner.volume_id().await
    }

    async fn root_exists(&self) -> Result<bool> {
        self.inner.root_exists().await
    }

    async fn check_access(&self) -> Result<()> {
        self.inner.check_access().await
    }

    fn skipped_count(&self) -> u64 {
        self.inner.skipped_count()
    }

    async fn sync_written(&self) -> Result<()> {
        Ok(())
    }

    async fn folder_permissions(&self, path: &RelPath) -> Result<Option<u32>> {
        self.inner.folder_permissions(path).await
    }

    fn local_root(&self) -> Option<std::path::PathBuf> {
        self.inner.local_root()
    }

    async fn remove_stale_temps(&self) -> Result<u64> {
        Ok(0)
    }

    async fn clean_up(
        &self,
        opts: &crate::cleanup::CleanupOptions,
    ) -> Result<crate::cleanup::CleanupReport> {
        Ok(crate::cleanup::CleanupReport::empty(opts))
    }

    async fn settle(&self, limit: std::time::Duration) {
        self.inner.settle(limit).await
    }

    async fn recorded_mtime(&self, listed: &Entry) -> Result<Option<SystemTime>> {
        self.inner.recorded_mtime(listed).await
    }

    fn list(&self, prefix: Option<&RelPath>) -> EntryStream {
        self.inner.list(prefix)
    }

    fn list_pruned(&self, prefix: Option<&RelPath>, prune: PruneFn) -> EntryStream {
        self.inner.list_pruned(prefix, prune)
    }

    async fn stat(&self, path: &RelPath) -> Result<Entry> {
        self.inner.stat(path).await
    }

    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        self.inner.read_opts(path, opts).await
    }

    async fn write_opts(
        &self,
        path: &RelPath,
        _body: ByteStream,
        _opts: WriteOptions,
    ) -> Result<Entry> {
        self.refuse(path)
    }

    async fn delete_opts(&self, path: &RelPath, _opts: DeleteOptions) -> Result<()> {
        self.refuse(path)
    }

    async fn copy_opts(
        &self,
        _from: &RelPath,
        to: &RelPath,
        _opts: TransferOptions,
    ) -> Result<Entry> {
        self.refuse(to)
    }

    async fn rename_opts(
        &self,
        from: &RelPath,
        _to: &RelPath,
        _opts: TransferOptions,
    ) -> Result<Entry> {
        self.refuse(from)
    }

    // Forwarded: another client of the same store may copy *from* this one server-side,
    // which reads it only. Copies *to* this one go through `copy_from_same_store` below.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        self.inner.as_any()
    }

    async fn copy_from_same_store(
        &self,
        _source: &dyn StorageClient,
        _from: &RelPath,
        _listed: &Entry,
        to: &RelPath,
        _opts: &WriteOptions,
    ) -> Result<Option<Entry>> {
        self.refuse(to)
    }

    async fn preserve(&self, _from: &RelPath, to: &RelPath) -> Result<Entry> {
        self.refuse(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::StorageClientExt;
    use crate::memory::MemoryClient;
    use bytes::Bytes;

    #[test]
    fn case_twins_swap_the_last_segment_only() {
        assert_eq!(swap_last_case("Dir/Readme").as_deref(), Some("Dir/rEADME"));
        assert_eq!(swap_last_case("a/123"), None);
        assert_eq!(swap_last_case("x"), Some("X".into()));
    }

    #[tokio::test]
    async fn the_read_only_view_refuses_every_change() {
        let inner = Arc::new(MemoryClient::new());
        let p = RelPath::new("a.txt").unwrap();
        inner.put(&p, Bytes::from("x")).await.unwrap();
        let ro = ReadOnly::new(inner.clone(), Side::Destination);
        assert_eq!(ro.read_to_bytes(&p).await.unwrap(), "x");
        let q = RelPath::new("b.txt").unwrap();
        assert!(matches!(
            ro.put(&q, Bytes::from("y")).await,
            Err(Error::PermissionDenied { .. })
        ));
        assert!(ro.delete(&p).await.is_err());
        assert!(ro.rename(&p, &q).await.is_err());
        assert!(
            ro.copy_opts(&p, &q, TransferOptions::default())
                .await
                .is_err()
        );
        assert!(ro.preserve(&p, &q).await.is_err());
        let files: Vec<_> = inner.files().into_keys().collect();
        assert_eq!(files, vec![p]);
    }

    #[tokio::test]
    async fn a_memory_root_is_found_to_keep_names_apart_without_a_write() {
        let client = MemoryClient::new();
        client
            .put(&RelPath::new("Photo.JPG").unwrap(), Bytes::new())
            .await
            .unwrap();
        client
            .put(&RelPath::new("caf\u{e9}.txt").unwrap(), Bytes::new())
            .await
            .unwrap();
        let folding = read_only_folding(&client, 1000).await.unwrap();
        assert_eq!(folding, Folding::default());
        assert_eq!(client.files().len(), 2, "nothing written");
    }

    #[tokio::test]
    async fn an_empty_root_is_assumed_to_fold() {
        let client = MemoryClient::new();
        let folding = read_only_folding(&client, 1000).await.unwrap();
        assert!(folding.case_insensitive && folding.normalization_insensitive);
        assert!(client.files().is_empty());
    }
}
