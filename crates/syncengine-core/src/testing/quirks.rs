//! [`QuirkClient`]: a [`StorageClient`] wrapper that gives any client the name rules of real
//! filesystems that the inner client lacks.
//!
//! - **Case-insensitive names** ([`QuirkClient::with_case_insensitive`]): a path that differs
//!   from a stored one only in letter case names the stored file (as on macOS and Windows
//!   disks, and some SFTP and WebDAV servers): writing `README` where `readme` is replaces
//!   `readme`'s content under the name `readme`.
//! - **Exclusive file and folder names** ([`QuirkClient::with_exclusive_names`]): a file cannot
//!   be written where a folder is (a file below that path exists) nor below a file, as on every
//!   disk; `MemoryClient` alone lets `a` and `a/x` both be files.
//! - **Remote reads** ([`QuirkClient::with_remote_reads`]): the client reports
//!   [`Capabilities::local_reads`] off, like a network backend, so the engine does not hash
//!   its files on demand where that is only cheap on local disk (`--checksum`).
//!
//! Names are resolved by listing the inner client, so the wrapper suits small test trees. A
//! new file whose folder exists under another case is stored under the case given.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use syncengine_core::testing::QuirkClient;
//! use syncengine_core::{MemoryClient, RelPath, StorageClientExt};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let inner = Arc::new(MemoryClient::new());
//! let disk = QuirkClient::new(inner.clone())
//!     .with_case_insensitive(true)
//!     .with_exclusive_names(true);
//! disk.put(&RelPath::new("readme")?, Bytes::from("one")).await?;
//! disk.put(&RelPath::new("README")?, Bytes::from("two")).await?;
//! assert_eq!(inner.files().len(), 1);
//! assert_eq!(inner.read_to_bytes(&RelPath::new("readme")?).await?, "two");
//! assert!(disk.put(&RelPath::new("readme/x")?, Bytes::from("3")).await.is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures::StreamExt;

use crate::capabilities::Capabilities;
use crate::client::{
    ByteStream, DeleteOptions, EntryStream, ReadOptions, StorageClient, TransferOptions,
    WriteOptions,
};
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::path::RelPath;

/// A wrapper that adds case-insensitive and exclusive file/folder names to any client (see
/// the [module docs](crate::testing::quirks)).
pub struct QuirkClient {
    inner: Arc<dyn StorageClient>,
    case_insensitive: bool,
    normalization_insensitive: bool,
    exclusive_names: bool,
    remote_reads: bool,
    /// The folding is reported in the capabilities (the default).
    declared: bool,
}

impl QuirkClient {
    /// Wraps `inner` with no quirk switched on.
    pub fn new(inner: Arc<dyn StorageClient>) -> Self {
        QuirkClient {
            inner,
            case_insensitive: false,
            normalization_insensitive: false,
            exclusive_names: false,
            remote_reads: false,
            declared: true,
        }
    }

    /// Reports [`Capabilities::local_reads`] off (when `on`): the engine then treats the
    /// client like a network backend, whose files `--checksum` never downloads to hash.
    pub fn with_remote_reads(mut self, on: bool) -> Self {
        self.remote_reads = on;
        self
    }

    /// Makes names that differ only in letter case name the same file (and reports the
    /// capability).
    pub fn with_case_insensitive(mut self, on: bool) -> Self {
        self.case_insensitive = on;
        self
    }

    /// Makes names that differ only in Unicode normalisation (NFC/NFD) name the same file (and
    /// reports the capability), as on macOS.
    pub fn with_normalization_insensitive(mut self, on: bool) -> Self {
        self.normalization_insensitive = on;
        self
    }

    /// Whether the capabilities report the folding switched on above (`true`, the default).
    /// With `false` they report the inner client's flags, but not as known for sure
    /// ([`Capabilities::folding_known`] false): a case-insensitive server behind a client that
    /// declares a case-sensitive one (Windows OpenSSH, IIS WebDAV), which the engine must
    /// find out by probing.
    pub fn with_declared_folding(mut self, on: bool) -> Self {
        self.declared = on;
        self
    }

    /// The key under which this client stores `path`.
    fn fold(&self, path: &str) -> String {
        let s = if self.case_insensitive {
            path.to_lowercase()
        } else {
            path.to_string()
        };
        if self.normalization_insensitive {
            unicode_normalization::UnicodeNormalization::nfc(s.as_str()).collect()
        } else {
            s
        }
    }

    /// Refuses files where a folder is and below a file.
    pub fn with_exclusive_names(mut self, on: bool) -> Self {
        self.exclusive_names = on;
        self
    }

    /// The wrapped client.
    pub fn inner(&self) -> &Arc<dyn StorageClient> {
        &self.inner
    }

    /// The stored path that `path` names: itself, or a stored path equal but for case.
    async fn resolve(&self, path: &RelPath) -> Result<RelPath> {
        if !self.case_insensitive && !self.normalization_insensitive {
            return Ok(path.clone());
        }
        let folded = self.fold(path.as_str());
        // The whole tree: folder names fold too (`D/x` names `d/x`).
        let mut listing = self.inner.list(None);
        while let Some(entry) = listing.next().await {
            let entry = match entry {
                Ok(entry) => entry,
                // What the listing cannot see (a symlink, an unreadable folder) names nothing
                // here; the rest of the tree still resolves.
                Err(Error::Unlisted { .. }) => continue,
                Err(e) => return Err(e),
            };
            if self.fold(entry.path.as_str()) == folded {
                return Ok(entry.path);
            }
        }
        Ok(path.clone())
    }

    /// Fails when a file at `path` cannot exist: a folder is there, or a parent is a file.
    async fn check_names(&self, path: &RelPath) -> Result<()> {
        if !self.exclusive_names {
            return Ok(());
        }
        if let Some(entry) = self.inner.list(Some(path)).next().await {
            entry?;
            return Err(Error::other(
                self.inner.backend(),
                path.as_str(),
                "is a folder (a file cannot replace it)",
            ));
        }
        let mut parent = path.parent();
        while let Some(p) = parent {
            match self.inner.stat(&p).await {
                Ok(_) => {
                    return Err(Error::other(
                        self.inner.backend(),
                        path.as_str(),
                        format!("{p} is a file, not a folder"),
                    ));
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            parent = p.parent();
        }
        Ok(())
    }
}

impl fmt::Display for QuirkClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for QuirkClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuirkClient")
            .field("inner", &self.inner)
            .field("case_insensitive", &self.case_insensitive)
            .field("normalization_insensitive", &self.normalization_insensitive)
            .field("exclusive_names", &self.exclusive_names)
            .field("remote_reads", &self.remote_reads)
            .field("declared", &self.declared)
            .finish()
    }
}

#[async_trait]
impl StorageClient for QuirkClient {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = self.inner.capabilities();
        if self.declared {
            caps.case_insensitive |= self.case_insensitive;
            caps.normalization_insensitive |= self.normalization_insensitive;
        } else {
            caps.folding_known = false;
        }
        caps.local_reads &= !self.remote_reads;
        caps
    }

    fn skipped_count(&self) -> u64 {
        self.inner.skipped_count()
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

    async fn location(&self) -> Result<crate::identity::Location> {
        self.inner.location().await
    }

    async fn volume_id(&self) -> Result<Option<String>> {
        self.inner.volume_id().await
    }

    async fn root_exists(&self) -> Result<bool> {
        self.inner.root_exists().await
    }

    async fn sync_written(&self) -> Result<()> {
        self.inner.sync_written().await
    }

    async fn recorded_mtime(&self, listed: &Entry) -> Result<Option<SystemTime>> {
        self.inner.recorded_mtime(listed).await
    }

    fn list(&self, prefix: Option<&RelPath>) -> EntryStream {
        self.inner.list(prefix)
    }

    async fn stat(&self, path: &RelPath) -> Result<Entry> {
        let path = self.resolve(path).await?;
        self.inner.stat(&path).await
    }

    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        let path = self.resolve(path).await?;
        self.inner.read_opts(&path, opts).await
    }

    async fn write_opts(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        let path = self.resolve(path).await?;
        self.check_names(&path).await?;
        self.inner.write_opts(&path, body, opts).await
    }

    async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> Result<()> {
        let path = self.resolve(path).await?;
        self.inner.delete_opts(&path, opts).await
    }

    async fn copy_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        let from = self.resolve(from).await?;
        let to = self.resolve(to).await?;
        self.check_names(&to).await?;
        self.inner.copy_opts(&from, &to, opts).await
    }

    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        let from = self.resolve(from).await?;
        let to = self.resolve(to).await?;
        self.check_names(&to).await?;
        self.inner.rename_opts(&from, &to, opts).await
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::client::StorageClientExt;
    use crate::memory::MemoryClient;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[tokio::test]
    async fn case_insensitive_names_share_one_file() {
        let inner = Arc::new(MemoryClient::new());
        let c = QuirkClient::new(inner.clone()).with_case_insensitive(true);
        assert!(c.capabilities().case_insensitive);
        c.put(&p("d/Readme.md"), Bytes::from("1")).await.unwrap();
        c.put(&p("d/README.md"), Bytes::from("2")).await.unwrap();
        assert_eq!(inner.files().len(), 1);
        assert_eq!(c.read_to_bytes(&p("d/readme.MD")).await.unwrap(), "2");
        assert!(c.stat(&p("D/readme.md")).await.is_ok());
        c.rename(&p("d/readme.md"), &p("e")).await.unwrap();
        assert!(inner.files().contains_key(&p("e")));
        c.delete(&p("E")).await.unwrap();
        assert!(inner.files().is_empty());
    }

    #[tokio::test]
    async fn sensitive_by_default() {
        let inner = Arc::new(MemoryClient::new());
        let c = QuirkClient::new(inner.clone());
        c.put(&p("a"), Bytes::from("1")).await.unwrap();
        c.put(&p("A"), Bytes::from("2")).await.unwrap();
        assert_eq!(inner.files().len(), 2);
        c.put(&p("a/x"), Bytes::from("3")).await.unwrap();
    }

    #[tokio::test]
    async fn exclusive_names_refuse_files_over_folders_and_below_files() {
        let inner = Arc::new(MemoryClient::new());
        let c = QuirkClient::new(inner.clone()).with_exclusive_names(true);
        c.put(&p("a/b/c"), Bytes::from("1")).await.unwrap();
        assert!(c.put(&p("a"), Bytes::from("2")).await.is_err());
        assert!(c.put(&p("a/b"), Bytes::from("2")).await.is_err());
        assert!(c.put(&p("a/b/c/d"), Bytes::from("2")).await.is_err());
        c.put(&p("f"), Bytes::from("3")).await.unwrap();
        assert!(c.rename(&p("a/b/c"), &p("f/x")).await.is_err());
        assert!(
            c.copy_opts(&p("f"), &p("a"), TransferOptions::default())
                .await
                .is_err()
        );
        c.put(&p("a/b/e"), Bytes::from("4")).await.unwrap();
        assert_eq!(inner.files().len(), 3);
    }
}
