//! [`Forwarding`]: a [`StorageClient`] that forwards every call to an inner client, except
//! the calls a test overrides in its [`Hooks`].
//!
//! A test double that changes one thing about a client — a barrier that fails, writes that
//! are counted, slowed down or lost, a read that breaks — implements [`Hooks`]: it names its
//! inner client ([`Hooks::inner`]) and overrides only the calls it changes; every other call
//! goes to the inner client unchanged. [`Forwarding`] turns it into a client.
//!
//! The calls that are built from other calls run over the [`Forwarding`] client itself, so
//! they pass through the hooks of the calls they make: [`list_pruned`](StorageClient::list_pruned)
//! and [`check_access`](StorageClient::check_access) are the [`StorageClient`] defaults, and
//! so is [`preserve`](StorageClient::preserve) unless [`Hooks::preserve`] says otherwise (a
//! `preserve` is then a `copy_opts`, or a read and a `write_opts`). The client takes part in
//! no same-store copy ([`as_any`](StorageClient::as_any) is `None`), which would write past
//! `write_opts`.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use async_trait::async_trait;
//! use bytes::Bytes;
//! use syncengine_core::testing::{Forwarding, Hooks};
//! use syncengine_core::{
//!     ByteStream, Entry, MemoryClient, RelPath, Result, StorageClient, StorageClientExt,
//!     WriteOptions,
//! };
//!
//! /// A memory client that counts its writes.
//! #[derive(Debug)]
//! struct CountingWrites {
//!     inner: MemoryClient,
//!     writes: AtomicU64,
//! }
//!
//! #[async_trait]
//! impl Hooks for CountingWrites {
//!     fn inner(&self) -> &dyn StorageClient {
//!         &self.inner
//!     }
//!     async fn write_opts(
//!         &self,
//!         path: &RelPath,
//!         body: ByteStream,
//!         opts: WriteOptions,
//!     ) -> Result<Entry> {
//!         self.writes.fetch_add(1, Ordering::SeqCst);
//!         self.inner.write_opts(path, body, opts).await
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let client = Arc::new(Forwarding::new(CountingWrites {
//!     inner: MemoryClient::new(),
//!     writes: AtomicU64::new(0),
//! }));
//! client.put(&RelPath::new("a.txt")?, Bytes::from("hello")).await?;
//! // `preserve` copies through the `copy_opts` call (forwarded here).
//! client.preserve(&RelPath::new("a.txt")?, &RelPath::new("b.txt")?).await?;
//! assert_eq!(client.read_to_bytes(&RelPath::new("b.txt")?).await?, "hello");
//! // The hooks' own fields, through the wrapper.
//! assert_eq!(client.writes.load(Ordering::SeqCst), 1);
//! assert!(client.to_string().starts_with("CountingWrites(MemoryClient("));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::ops::Deref;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::capabilities::Capabilities;
use crate::cleanup::{CleanupOptions, CleanupReport};
use crate::client::{
    ByteStream, DeleteOptions, EntryStream, ReadOptions, StorageClient, TransferOptions,
    WriteOptions, preserve_by_copy,
};
use crate::entry::Entry;
use crate::error::Result;
use crate::identity::Location;
use crate::path::RelPath;

/// The calls of a [`Forwarding`] client: each forwards to [`Hooks::inner`] unless the
/// implementation overrides it (see the [module docs](crate::testing::forwarding)).
///
/// Every method is the [`StorageClient`] method of the same name, with the same contract.
#[async_trait]
pub trait Hooks: Send + Sync + fmt::Debug + 'static {
    /// The client every call not overridden goes to.
    fn inner(&self) -> &dyn StorageClient;

    /// Writes the client's `Display` form: by default the name of the hooks' type and the
    /// inner client's, as in `CountingWrites(MemoryClient(3))`.
    ///
    /// # Errors
    /// Those of the formatter.
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", short_type_name::<Self>(), self.inner())
    }

    /// [`StorageClient::backend`]; the inner client's by default.
    fn backend(&self) -> &'static str {
        self.inner().backend()
    }

    /// [`StorageClient::capabilities`]; the inner client's by default.
    fn capabilities(&self) -> Capabilities {
        self.inner().capabilities()
    }

    /// [`StorageClient::location`]; the inner client's by default: a client seen through a
    /// test double is still the same storage.
    async fn location(&self) -> Result<Location> {
        self.inner().location().await
    }

    /// [`StorageClient::volume_id`]; forwards by default.
    async fn volume_id(&self) -> Result<Option<String>> {
        self.inner().volume_id().await
    }

    /// [`StorageClient::root_exists`]; forwards by default.
    async fn root_exists(&self) -> Result<bool> {
        self.inner().root_exists().await
    }

    /// [`StorageClient::skipped_count`]; forwards by default.
    fn skipped_count(&self) -> u64 {
        self.inner().skipped_count()
    }

    /// [`StorageClient::sync_written`]; forwards by default.
    async fn sync_written(&self) -> Result<()> {
        self.inner().sync_written().await
    }

    /// [`StorageClient::folder_permissions`]; forwards by default.
    async fn folder_permissions(&self, path: &RelPath) -> Result<Option<u32>> {
        self.inner().folder_permissions(path).await
    }

    /// [`StorageClient::local_root`]; forwards by default.
    fn local_root(&self) -> Option<PathBuf> {
        self.inner().local_root()
    }

    /// [`StorageClient::remove_stale_temps`]; forwards by default.
    async fn remove_stale_temps(&self) -> Result<u64> {
        self.inner().remove_stale_temps().await
    }

    /// [`StorageClient::clean_up`]; forwards by default.
    async fn clean_up(&self, opts: &CleanupOptions) -> Result<CleanupReport> {
        self.inner().clean_up(opts).await
    }

    /// [`StorageClient::settle`]; forwards by default.
    async fn settle(&self, limit: Duration) {
        self.inner().settle(limit).await
    }

    /// [`StorageClient::recorded_mtime`]; forwards by default.
    async fn recorded_mtime(&self, listed: &Entry) -> Result<Option<SystemTime>> {
        self.inner().recorded_mtime(listed).await
    }

    /// [`StorageClient::list`]; forwards by default.
    fn list(&self, prefix: Option<&RelPath>) -> EntryStream {
        self.inner().list(prefix)
    }

    /// [`StorageClient::stat`]; forwards by default.
    async fn stat(&self, path: &RelPath) -> Result<Entry> {
        self.inner().stat(path).await
    }

    /// [`StorageClient::read_opts`]; forwards by default.
    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        self.inner().read_opts(path, opts).await
    }

    /// [`StorageClient::write_opts`]; forwards by default.
    async fn write_opts(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        self.inner().write_opts(path, body, opts).await
    }

    /// [`StorageClient::delete_opts`]; forwards by default.
    async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> Result<()> {
        self.inner().delete_opts(path, opts).await
    }

    /// [`StorageClient::copy_opts`]; forwards by default.
    async fn copy_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.inner().copy_opts(from, to, opts).await
    }

    /// [`StorageClient::rename_opts`]; forwards by default.
    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.inner().rename_opts(from, to, opts).await
    }

    /// [`StorageClient::preserve`], where `client` is the [`Forwarding`] client itself. The
    /// default is the trait's, [`preserve_by_copy`] over `client`: the copy passes the hooks
    /// of `copy_opts` (or of `stat`, `read_opts` and `write_opts`). Override it to forward
    /// to the inner client's own (a hard link on local disk).
    async fn preserve(
        &self,
        client: &dyn StorageClient,
        from: &RelPath,
        to: &RelPath,
    ) -> Result<Entry> {
        preserve_by_copy(client, from, to).await
    }
}

/// A [`StorageClient`] made of [`Hooks`]: every call goes to the hooks, which forward it to
/// their inner client unless they override it (see the
/// [module docs](crate::testing::forwarding)). It dereferences to the hooks, so a test reads
/// their fields (counters, switches) through the client.
#[derive(Debug)]
pub struct Forwarding<H>(H);

impl<H: Hooks> Forwarding<H> {
    /// The client whose calls `hooks` answers.
    pub fn new(hooks: H) -> Self {
        Forwarding(hooks)
    }
}

impl<H> Deref for Forwarding<H> {
    type Target = H;

    fn deref(&self) -> &H {
        &self.0
    }
}

/// As [`Hooks::describe`] writes it.
impl<H: Hooks> fmt::Display for Forwarding<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.describe(f)
    }
}

/// The last segment of `T`'s path, without generic arguments: `CountingWrites` for
/// `my_test::CountingWrites`.
fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let path = full.split('<').next().unwrap_or(full);
    path.rsplit("::").next().unwrap_or(path)
}

#[async_trait]
impl<H: Hooks> StorageClient for Forwarding<H> {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    async fn location(&self) -> Result<Location> {
        self.0.location().await
    }

    async fn volume_id(&self) -> Result<Option<String>> {
        self.0.volume_id().await
    }

    async fn root_exists(&self) -> Result<bool> {
        self.0.root_exists().await
    }

    fn skipped_count(&self) -> u64 {
        self.0.skipped_count()
    }

    async fn sync_written(&self) -> Result<()> {
        self.0.sync_written().await
    }

    async fn folder_permissions(&self, path: &RelPath) -> Result<Option<u32>> {
        self.0.folder_permissions(path).await
    }

    fn local_root(&self) -> Option<PathBuf> {
        self.0.local_root()
    }

    async fn remove_stale_temps(&self) -> Result<u64> {
        self.0.remove_stale_temps().await
    }

    async fn clean_up(&self, opts: &CleanupOptions) -> Result<CleanupReport> {
        self.0.clean_up(opts).await
    }

    async fn settle(&self, limit: Duration) {
        self.0.settle(limit).await
    }

    async fn recorded_mtime(&self, listed: &Entry) -> Result<Option<SystemTime>> {
        self.0.recorded_mtime(listed).await
    }

    fn list(&self, prefix: Option<&RelPath>) -> EntryStream {
        self.0.list(prefix)
    }

    async fn stat(&self, path: &RelPath) -> Result<Entry> {
        self.0.stat(path).await
    }

    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        self.0.read_opts(path, opts).await
    }

    async fn write_opts(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        self.0.write_opts(path, body, opts).await
    }

    async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> Result<()> {
        self.0.delete_opts(path, opts).await
    }

    async fn copy_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.0.copy_opts(from, to, opts).await
    }

    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.0.rename_opts(from, to, opts).await
    }

    async fn preserve(&self, from: &RelPath, to: &RelPath) -> Result<Entry> {
        self.0.preserve(self, from, to).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use bytes::Bytes;

    use super::*;
    use crate::client::StorageClientExt;
    use crate::memory::MemoryClient;

    /// Counts the calls of two hooks; forwards everything, `preserve` to the inner client's
    /// own when `forward_preserve` is set.
    #[derive(Debug)]
    struct Counting {
        inner: Arc<MemoryClient>,
        writes: AtomicU64,
        copies: AtomicU64,
        forward_preserve: bool,
    }

    impl Counting {
        fn new(inner: Arc<MemoryClient>, forward_preserve: bool) -> Forwarding<Counting> {
            Forwarding::new(Counting {
                inner,
                writes: AtomicU64::new(0),
                copies: AtomicU64::new(0),
                forward_preserve,
            })
        }
    }

    #[async_trait]
    impl Hooks for Counting {
        fn inner(&self) -> &dyn StorageClient {
            &*self.inner
        }
        fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "counting {}", self.inner)
        }
        async fn write_opts(
            &self,
            path: &RelPath,
            body: ByteStream,
            opts: WriteOptions,
        ) -> Result<Entry> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.inner.write_opts(path, body, opts).await
        }
        async fn copy_opts(
            &self,
            from: &RelPath,
            to: &RelPath,
            opts: TransferOptions,
        ) -> Result<Entry> {
            self.copies.fetch_add(1, Ordering::SeqCst);
            self.inner.copy_opts(from, to, opts).await
        }
        async fn preserve(
            &self,
            client: &dyn StorageClient,
            from: &RelPath,
            to: &RelPath,
        ) -> Result<Entry> {
            if self.forward_preserve {
                self.inner.preserve(from, to).await
            } else {
                preserve_by_copy(client, from, to).await
            }
        }
    }

    /// Forwards everything.
    #[derive(Debug)]
    struct Plain(MemoryClient);

    impl Hooks for Plain {
        fn inner(&self) -> &dyn StorageClient {
            &self.0
        }
    }

    #[test]
    fn shows_the_hooks_type_and_the_inner_client_by_default() {
        let client = Forwarding::new(Plain(MemoryClient::new()));
        assert_eq!(client.to_string(), format!("Plain({})", client.0.0));
        assert_eq!(short_type_name::<Forwarding<Plain>>(), "Forwarding");
    }

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[tokio::test]
    async fn forwards_what_is_not_overridden_and_derived_calls_pass_the_hooks() {
        let inner = Arc::new(MemoryClient::new().with_location("shared"));
        let client = Counting::new(inner.clone(), false);
        client.put(&p("a"), Bytes::from("one")).await.unwrap();
        assert_eq!(inner.read_to_bytes(&p("a")).await.unwrap(), "one");
        // Forwarded: rename, stat, listing, location, backend, capabilities.
        client.rename(&p("a"), &p("b")).await.unwrap();
        assert_eq!(client.stat(&p("b")).await.unwrap().size, 3);
        assert_eq!(client.list_all(None).await.unwrap().len(), 1);
        assert_eq!(
            client.location().await.unwrap(),
            inner.location().await.unwrap()
        );
        assert_eq!(client.backend(), inner.backend());
        assert_eq!(client.capabilities(), inner.capabilities());
        assert_eq!(client.to_string(), format!("counting {inner}"));
        // Derived: preserve goes through the copy hook, not past it.
        client.preserve(&p("b"), &p("c")).await.unwrap();
        assert_eq!(inner.read_to_bytes(&p("c")).await.unwrap(), "one");
        assert_eq!(client.copies.load(Ordering::SeqCst), 1);
        assert_eq!(client.writes.load(Ordering::SeqCst), 1);
        assert!(client.as_any().is_none());
        client.check_access().await.unwrap();
        assert!(client.root_exists().await.unwrap());
    }

    /// A `preserve` hook that forwards reaches the inner client's own, past the wrapper's
    /// copy hook.
    #[tokio::test]
    async fn a_preserve_hook_may_forward_to_the_inner_client() {
        let inner = Arc::new(MemoryClient::new());
        inner.put(&p("a"), Bytes::from("one")).await.unwrap();
        let client = Counting::new(inner.clone(), true);
        client.preserve(&p("a"), &p("b")).await.unwrap();
        assert_eq!(inner.read_to_bytes(&p("b")).await.unwrap(), "one");
        assert_eq!(client.copies.load(Ordering::SeqCst), 0);
    }
}
