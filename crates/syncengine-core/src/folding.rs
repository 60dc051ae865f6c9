//! Name folding: whether a root keeps apart names that differ only in letter case
//! (`Readme`/`readme`) or in Unicode normalisation (NFC/NFD `café`), found out by a probe.
//!
//! A client cannot always know: an SFTP or WebDAV server may sit on a case-insensitive disk
//! (Windows OpenSSH, IIS, a Samba-backed share), a local folder may be a FAT stick or a
//! casefolded ext4 directory. Where [`Capabilities::folding_known`] is false, the engine
//! asks the root itself, with nothing but [`StorageClient`] calls ([`probe_folding`]):
//!
//! 1. it writes one empty file, `.syncengine/probe/fold-<32 hex digits>-Aé` (NFC `é`), in the
//!    root's own folder (never synced, see [`is_always_ignored`]);
//! 2. it stats its *case twin* (`…-aé`) and its *NFD twin* (`…-Ae\u{301}`): a root that finds
//!    a twin stores both names as one file;
//! 3. it deletes what it wrote.
//!
//! A probe that cannot run (a read-only root, an error) gives no answer: the engine then uses
//! what the client declares and says so in a warning — it never takes a failed write for
//! "keeps names apart" silently. A probe file that a kill left behind matches the exact name
//! format above ([`is_probe_file`]); the next probe of that root removes it once it is older
//! than [`STALE_TEMP_AGE`] (another machine sharing the root may be probing right now), and
//! until then it is never synced: it lies in the root's `.syncengine/` folder.
//!
//! The result is cached in the pair's state with the root's identity
//! ([`RootIdentity`]): a steady-state run reads it from there and makes no probe call; a
//! root whose identity changed, or that the user accepted anew, is probed again. The engine
//! then hands the reconciler and executor the probed folding in place of the declared one
//! (see [`with_folding`]), so a case-insensitive server behind a client that claims
//! otherwise gets the collision protection of [`crate::collide`].
//!
//! [`is_always_ignored`]: crate::ignore_rules::is_always_ignored

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures::StreamExt;

use crate::capabilities::Capabilities;
use crate::client::{
    ByteStream, DeleteOptions, EntryStream, PruneFn, ReadOptions, StorageClient, StorageClientExt,
    TransferOptions, WriteMode, WriteOptions, bytes_stream,
};
use crate::collide::fold_name;
use crate::entry::Entry;
use crate::error::{Error, Result, SyncError};
use crate::identity::{Location, RootCheck, RootIdentity};
use crate::ignore_rules::{STALE_TEMP_AGE, STATE_DIR_NAME};
use crate::mode::Side;
use crate::pair::SyncPair;
use crate::path::RelPath;
use crate::state::StateStore;

/// The folder, inside a root's `.syncengine/`, that holds probe files while a probe runs.
pub const PROBE_DIR_NAME: &str = "probe";

/// How every probe file name starts.
const PROBE_PREFIX: &str = "fold-";

/// The end of the name the probe writes: an ASCII capital and an NFC `é`.
const WRITTEN: &str = "A\u{e9}";
/// The same name in lower case.
const CASE_TWIN: &str = "a\u{e9}";
/// The same name in NFD (`e` and a combining acute accent).
const NFD_TWIN: &str = "Ae\u{301}";

/// How a root treats names that differ only in letter case or Unicode normalisation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Folding {
    /// Names differing only in letter case name one file.
    pub case_insensitive: bool,
    /// Names differing only in Unicode normalisation name one file.
    pub normalization_insensitive: bool,
}

impl Folding {
    /// The folding a client declares in its capabilities.
    pub fn declared(caps: &Capabilities) -> Folding {
        Folding {
            case_insensitive: caps.case_insensitive,
            normalization_insensitive: caps.normalization_insensitive,
        }
    }

    /// True when the root folds names in any way.
    pub fn folds(self) -> bool {
        self.case_insensitive || self.normalization_insensitive
    }

    /// Writes this folding into `caps`, which then know it for sure.
    pub fn apply(self, caps: &mut Capabilities) {
        caps.case_insensitive = self.case_insensitive;
        caps.normalization_insensitive = self.normalization_insensitive;
        caps.folding_known = true;
    }
}

impl fmt::Display for Folding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            match (self.case_insensitive, self.normalization_insensitive) {
                (false, false) => "keeps letter case and Unicode normalisation apart",
                (true, false) => "folds letter case",
                (false, true) => "folds Unicode normalisation",
                (true, true) => "folds letter case and Unicode normalisation",
            },
        )
    }
}

/// `.syncengine/probe`, the folder probe files are written to.
///
/// # Errors
/// None in practice (a valid constant path); typed so no code path can panic.
pub fn probe_dir() -> Result<RelPath> {
    RelPath::new(format!("{STATE_DIR_NAME}/{PROBE_DIR_NAME}"))
}

/// The three names of one probe: the file written, its case twin and its NFD twin.
fn probe_names(token: &str) -> Result<[RelPath; 3]> {
    let dir = probe_dir()?;
    let name = |end: &str| RelPath::new(format!("{dir}/{PROBE_PREFIX}{token}-{end}"));
    Ok([name(WRITTEN)?, name(CASE_TWIN)?, name(NFD_TWIN)?])
}

/// True for a probe file, by its exact name format: `.syncengine/probe/fold-` at the root,
/// 32 lower-case hex digits, `-`, and `Aé` in any case and normalisation (a folding root may
/// store it under a twin's spelling).
pub fn is_probe_file(path: &RelPath) -> bool {
    let Ok(dir) = probe_dir() else {
        return false;
    };
    let Some(rest) = path
        .as_str()
        .strip_prefix(dir.as_str())
        .and_then(|r| r.strip_prefix('/'))
        .and_then(|r| r.strip_prefix(PROBE_PREFIX))
    else {
        return false;
    };
    let Some((token, end)) = rest.split_once('-') else {
        return false;
    };
    token.len() == 32
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && fold_name(end) == fold_name(WRITTEN)
}

/// Removes the probe files a killed probe left in `client`'s root, once older than
/// [`STALE_TEMP_AGE`]; returns how many it removed. Other files in the probe folder stay.
///
/// # Errors
/// The backend's error when the folder cannot be listed or a file cannot be deleted.
pub async fn remove_stale_probes(client: &dyn StorageClient) -> Result<u64> {
    let now = SystemTime::now();
    let dir = probe_dir()?;
    let mut stale = Vec::new();
    let mut listing = client.list(Some(&dir));
    while let Some(item) = listing.next().await {
        let entry = match item {
            Ok(entry) => entry,
            // Something in the folder the listing cannot see is not ours to judge.
            Err(Error::Unlisted { .. }) => continue,
            Err(e) => return Err(e),
        };
        let old = entry
            .mtime
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        if old && is_probe_file(&entry.path) {
            stale.push(entry.path);
        }
    }
    let removed = stale.len() as u64;
    for path in stale {
        client.delete(&path).await?;
    }
    Ok(removed)
}

/// Answer of one stat of the probe: found, not found, or the error.
fn found(result: Result<Entry>) -> Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Probes how `client`'s root treats names that differ only in letter case or Unicode
/// normalisation (see the [module docs](self)): one empty file written in
/// `.syncengine/probe/`, three stats, and the file deleted again. Stale probe files of
/// killed probes are removed first ([`remove_stale_probes`]).
///
/// # Behavior
/// A root that does not find the file under the very name it was written with (it changed
/// the name on the way) is reported as folding both: names do not round-trip there, and the
/// collision check is the safe side. The file is deleted whatever the stats answered; a
/// failed delete leaves one empty file that a later probe removes.
///
/// # Errors
/// The backend's error when the probe file cannot be written or a stat fails with anything
/// but not-found; an error when the written file cannot be found under any of its names.
pub async fn probe_folding(client: &dyn StorageClient) -> Result<Folding> {
    if let Err(e) = remove_stale_probes(client).await {
        tracing::debug!("removing stale probe files of {client} failed: {e}");
    }
    let token = hex::encode(rand::random::<[u8; 16]>());
    let [written, case_twin, nfd_twin] = probe_names(&token)?;
    let opts = WriteOptions::default()
        .with_mode(WriteMode::Create)
        .with_size_hint(0);
    client
        .write_opts(&written, bytes_stream(bytes::Bytes::new()), opts)
        .await?;
    let answers = async {
        Ok::<_, Error>((
            found(client.stat(&written).await)?,
            found(client.stat(&case_twin).await)?,
            found(client.stat(&nfd_twin).await)?,
        ))
    }
    .await;
    // Deleted before the answers are judged, so an error leaves nothing either. Where the
    // written name was not found, the file may sit under a twin's name.
    let mut leftover = Vec::new();
    let round_trips = matches!(answers, Ok((true, _, _)));
    for path in [&written, &case_twin, &nfd_twin] {
        if let Err(e) = client.delete(path).await {
            leftover.push(format!("{path}: {e}"));
        }
        if round_trips {
            break;
        }
    }
    if !leftover.is_empty() {
        tracing::warn!(
            "the name-folding probe of {client} could not remove its file ({}); a later probe \
             removes it, and it is never synced",
            leftover.join("; ")
        );
    }
    let (same, case, nfd) = answers?;
    if !same && !case && !nfd {
        return Err(Error::other(
            client.backend(),
            written.as_str(),
            "the probe file was written but cannot be found under its name",
        ));
    }
    Ok(Folding {
        case_insensitive: case || !same,
        normalization_insensitive: nfd || !same,
    })
}

/// `client` as seen with `folding` in place of the folding it declares: every call goes to
/// `client`; only [`capabilities`](StorageClient::capabilities) differ. The engine hands this
/// to the reconciler and executor, which read the folding from the capabilities.
pub fn with_folding(client: Arc<dyn StorageClient>, folding: Folding) -> Arc<dyn StorageClient> {
    let mut caps = client.capabilities();
    if caps.folding_known && Folding::declared(&caps) == folding {
        return client;
    }
    folding.apply(&mut caps);
    Arc::new(Folded {
        inner: client,
        caps,
    })
}

/// See [`with_folding`]. Every method of [`StorageClient`] is forwarded, defaults included,
/// so the wrapper behaves as the inner client in all but its capabilities.
struct Folded {
    inner: Arc<dyn StorageClient>,
    caps: Capabilities,
}

impl fmt::Display for Folded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for Folded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Folded")
            .field("inner", &self.inner)
            .field("case_insensitive", &self.caps.case_insensitive)
            .field(
                "normalization_insensitive",
                &self.caps.normalization_insensitive,
            )
            .finish()
    }
}

#[async_trait]
impl StorageClient for Folded {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
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

    fn skipped_count(&self) -> u64 {
        self.inner.skipped_count()
    }

    async fn sync_written(&self) -> Result<()> {
        self.inner.sync_written().await
    }

    fn local_root(&self) -> Option<std::path::PathBuf> {
        self.inner.local_root()
    }

    async fn remove_stale_temps(&self) -> Result<u64> {
        self.inner.remove_stale_temps().await
    }

    async fn clean_up(
        &self,
        opts: &crate::cleanup::CleanupOptions,
    ) -> Result<crate::cleanup::CleanupReport> {
        self.inner.clean_up(opts).await
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
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        self.inner.write_opts(path, body, opts).await
    }

    async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> Result<()> {
        self.inner.delete_opts(path, opts).await
    }

    async fn copy_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.inner.copy_opts(from, to, opts).await
    }

    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.inner.rename_opts(from, to, opts).await
    }

    async fn preserve(&self, from: &RelPath, to: &RelPath) -> Result<Entry> {
        self.inner.preserve(from, to).await
    }

    async fn folder_permissions(&self, path: &RelPath) -> Result<Option<u32>> {
        self.inner.folder_permissions(path).await
    }

    // The wrapper changes names' folding, never content: a same-store copy from or to it is
    // the inner client's.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        self.inner.as_any()
    }

    async fn copy_from_same_store(
        &self,
        source: &dyn StorageClient,
        from: &RelPath,
        listed: &Entry,
        to: &RelPath,
        opts: &WriteOptions,
    ) -> Result<Option<Entry>> {
        self.inner
            .copy_from_same_store(source, from, listed, to, opts)
            .await
    }
}

/// How many files of a protected root's listing its read-only probe looks at
/// ([`read_only_folding`](crate::protect::read_only_folding)).
const READ_ONLY_PROBE_FILES: usize = 10_000;

/// The folding each side of a run uses, and what the engine must tell the user about it.
pub(crate) struct RunFolding {
    /// The pair's clients, each wrapped with its probed folding where that differs from what
    /// it declares ([`with_folding`]).
    pub(crate) clients: [Arc<dyn StorageClient>; 2],
    /// Probes that could not run.
    pub(crate) warnings: Vec<String>,
}

/// Finds the folding of each side of a run: what the client declares where its capabilities
/// know it for sure, else the result cached with the root's identity, else a probe (recorded
/// with the identity, except in a dry run, which records nothing). A dry run probes only a
/// root that already has its id file (so its `.syncengine/` folder exists): on a new root it
/// would have to create that folder.
///
/// # Errors
/// [`SyncError::State`] when the cache cannot be read or written. A failed probe is a
/// warning, not an error.
pub(crate) async fn resolve(
    pair: &SyncPair,
    roots: &RootCheck,
    store: &StateStore,
    dry_run: bool,
) -> Result<RunFolding, SyncError> {
    let mut warnings = Vec::new();
    let mut clients = Vec::with_capacity(2);
    for side in [Side::Source, Side::Destination] {
        let client = pair.client(side).clone();
        let caps = client.capabilities();
        if caps.folding_known {
            clients.push(client);
            continue;
        }
        let identity = roots.identity(side).cloned();
        let accepted = roots.accepted_sides.contains(&side);
        let cached = match &identity {
            Some(identity) if !accepted => {
                let store = store.clone();
                let token = identity.to_token();
                blocking(move || {
                    Ok(store
                        .root_folding(side)?
                        .filter(|(recorded, _)| *recorded == token)
                        .map(|(_, folding)| folding))
                })
                .await?
            }
            _ => None,
        };
        let folding = if let Some(folding) = cached {
            folding
        } else if dry_run && !matches!(identity, Some(RootIdentity::IdFile(_))) {
            let declared = Folding::declared(&caps);
            warnings.push(format!(
                "this dry run did not probe whether the {side} root {client} keeps names apart \
                 that differ only in letter case or Unicode normalisation (the root has no \
                 {STATE_DIR_NAME}/ folder yet); it assumes what the backend declares (it \
                 {declared}); the real run probes it"
            ));
            declared
        } else {
            // A protected root gets no probe file: it is probed with reads only, and the
            // answer (which may be an assumption) is not cached.
            let protected = pair.options.is_protected(side);
            let probed = if protected {
                crate::protect::read_only_folding(client.as_ref(), READ_ONLY_PROBE_FILES).await
            } else {
                // In a task of its own: a run cancelled meanwhile is dropped where it waits
                // (`SyncEngine::sync_pair`), and the probe, dropped between its write and its
                // delete, left its file for good (the next probe, under a new name, removes
                // only files older than a day, and a cached answer probes no more). Left to
                // itself, it ends as it would have: its file deleted.
                let (backend, client) = (client.backend(), client.clone());
                tokio::spawn(async move { probe_folding(client.as_ref()).await })
                    .await
                    .unwrap_or_else(|e| {
                        Err(Error::other(
                            backend,
                            "",
                            format!("the name-folding probe failed: {e}"),
                        ))
                    })
            };
            match probed {
                Ok(folding) => {
                    tracing::info!(%side, "the root {client} {folding}");
                    if let (false, false, Some(identity)) = (dry_run, protected, &identity) {
                        let store = store.clone();
                        let token = identity.to_token();
                        blocking(move || store.record_root_folding(side, &token, folding)).await?;
                    }
                    folding
                }
                Err(e) => {
                    let declared = Folding::declared(&caps);
                    warnings.push(format!(
                        "could not probe whether the {side} root {client} keeps names apart \
                         that differ only in letter case or Unicode normalisation ({e}); \
                         assuming what the backend declares (it {declared}), so names that \
                         collide there may go unnoticed"
                    ));
                    declared
                }
            }
        };
        // Nothing after this reads `folding_known`: a root that folds as its backend declares
        // keeps its client as it is (no wrapper on every call of the run).
        if Folding::declared(&caps) == folding {
            clients.push(client);
        } else {
            clients.push(with_folding(client, folding));
        }
    }
    let destination = clients.pop();
    let source = clients.pop();
    match (source, destination) {
        (Some(source), Some(destination)) => Ok(RunFolding {
            clients: [source, destination],
            warnings,
        }),
        // Two pushes above, one per side.
        _ => Err(SyncError::State("folding: a side is missing".into())),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryClient;

    #[test]
    fn probe_names_have_the_exact_format() {
        let token = "0123456789abcdef0123456789abcdef";
        for name in probe_names(token).unwrap() {
            assert!(is_probe_file(&name), "{name}");
        }
        let dir = probe_dir().unwrap();
        for odd in [
            format!("{dir}/fold-{token}-Ab"),
            format!("{dir}/fold-0123-A\u{e9}"),
            format!("{dir}/fold-0123456789ABCDEF0123456789ABCDEF-A\u{e9}"),
            format!("{dir}/x/fold-{token}-A\u{e9}"),
            format!("{STATE_DIR_NAME}/fold-{token}-A\u{e9}"),
            format!("a/{dir}/fold-{token}-A\u{e9}"),
        ] {
            assert!(
                !is_probe_file(&RelPath::new(odd.as_str()).unwrap()),
                "{odd}"
            );
        }
    }

    #[tokio::test]
    async fn a_memory_root_keeps_names_apart_and_keeps_no_probe_file() {
        let client = MemoryClient::new();
        let folding = probe_folding(&client).await.unwrap();
        assert_eq!(folding, Folding::default());
        assert!(client.files().is_empty(), "{:?}", client.files());
    }

    #[tokio::test]
    async fn stale_probe_files_go_and_young_ones_stay() {
        let client = MemoryClient::new();
        let [old, young, _] = probe_names("00000000000000000000000000000000").unwrap();
        let young = RelPath::new(young.as_str().replace("fold-0", "fold-1")).unwrap();
        let other = RelPath::new(format!("{}/notes", probe_dir().unwrap())).unwrap();
        for p in [&old, &young, &other] {
            client.put(p, bytes::Bytes::new()).await.unwrap();
        }
        client
            .set_mtime(&old, SystemTime::now() - STALE_TEMP_AGE * 2)
            .unwrap();
        client
            .set_mtime(&other, SystemTime::now() - STALE_TEMP_AGE * 2)
            .unwrap();
        assert_eq!(remove_stale_probes(&client).await.unwrap(), 1);
        let left: Vec<RelPath> = client.files().into_keys().collect();
        assert_eq!(left, vec![young, other]);
    }
}
