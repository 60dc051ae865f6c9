//! A delete whose move into the trash the backend cannot make (`Unsupported`: a file on a
//! filesystem mounted inside a local root, whose trash is on the root's filesystem) keeps
//! the file in the trash by `preserve` (a link, or a flushed copy), then deletes it — only if
//! it is still the version listed, and only if the trash holds that version.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use syncengine_core::client::TransferOptions;
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::{
    Entry, Error, MemoryClient, RelPath, Result, StorageClient, StorageClientExt, SyncEngine,
    SyncMode, SyncPair,
};

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// A memory client that cannot move files into its trash, as a local root cannot move a file
/// on a filesystem mounted inside it into the root's trash; and, when `save_after_preserve`
/// is set, a user saves a new version of the file right after the engine kept it there.
/// With `trash_micros`, its trash copies keep their time to the microsecond only (a root on
/// UDF, or on a FUSE filesystem or NFSv2 share that sets times by `utimes(2)`).
#[derive(Debug)]
struct NoTrashMoves {
    inner: Arc<MemoryClient>,
    save_after_preserve: AtomicBool,
    trash_micros: bool,
}

#[async_trait]
impl Hooks for NoTrashMoves {
    fn inner(&self) -> &dyn StorageClient {
        &*self.inner
    }
    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        if to.as_str().starts_with(".syncengine/trash/") {
            return Err(Error::Unsupported {
                backend: "memory",
                operation: "move across filesystems",
            });
        }
        self.inner.rename_opts(from, to, opts).await
    }
    async fn preserve(
        &self,
        client: &dyn StorageClient,
        from: &RelPath,
        to: &RelPath,
    ) -> Result<Entry> {
        let kept = self.inner.preserve(from, to).await;
        if self.save_after_preserve.swap(false, Ordering::SeqCst) {
            // A new version with another size: no clock tick is needed to tell it apart.
            client
                .put(from, Bytes::from("saved meanwhile, longer"))
                .await?;
        }
        let kept = kept?;
        let Some(t) = kept.mtime.filter(|_| self.trash_micros) else {
            return Ok(kept);
        };
        let since = t.duration_since(UNIX_EPOCH).unwrap();
        let micros = UNIX_EPOCH + Duration::from_micros(since.as_micros() as u64);
        self.inner.set_mtime(to, micros)?;
        self.inner.stat(to).await
    }
}

/// A destination disk and, over it, the client the engine uses: one whose trash moves are
/// refused ([`NoTrashMoves`]), its trash copies keeping microseconds when `trash_micros`.
fn destination(trash_micros: bool) -> (Arc<MemoryClient>, Arc<Forwarding<NoTrashMoves>>) {
    let disk = Arc::new(MemoryClient::new());
    let d = Arc::new(Forwarding::new(NoTrashMoves {
        inner: disk.clone(),
        save_after_preserve: AtomicBool::new(false),
        trash_micros,
    }));
    (disk, d)
}

/// Synced `a.txt` and `b.txt` to the destination (wrapped in [`NoTrashMoves`]), then deleted
/// `a.txt` at the source: the next mirror run deletes it at the destination.
async fn deleted_at_source() -> (
    tempfile::TempDir,
    Arc<MemoryClient>,
    Arc<MemoryClient>,
    Arc<Forwarding<NoTrashMoves>>,
) {
    let state = tempfile::tempdir().unwrap();
    let s = Arc::new(MemoryClient::new());
    let (disk, d) = destination(false);
    s.put(&rel("a.txt"), Bytes::from("old a")).await.unwrap();
    s.put(&rel("b.txt"), Bytes::from("b")).await.unwrap();
    let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::SourceToDestination);
    SyncEngine::new(state.path())
        .sync_pair(&pair)
        .await
        .unwrap();
    s.delete(&rel("a.txt")).await.unwrap();
    (state, s, disk, d)
}

fn trashed(disk: &MemoryClient, name: &str) -> Vec<Bytes> {
    disk.files()
        .into_iter()
        .filter(|(p, _)| p.as_str().starts_with(".syncengine/trash/") && p.file_name() == name)
        .map(|(_, body)| body)
        .collect()
}

#[tokio::test]
async fn a_delete_the_trash_cannot_take_by_a_move_keeps_a_copy_there() {
    let (state, s, disk, d) = deleted_at_source().await;
    let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::SourceToDestination);
    let stats = SyncEngine::new(state.path())
        .sync_pair(&pair)
        .await
        .expect("the delete goes through the copy in the trash");
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert!(!disk.files().contains_key(&rel("a.txt")), "deleted");
    assert_eq!(trashed(&disk, "a.txt"), vec![Bytes::from("old a")]);
    // The base forgot it: the next run has nothing to do.
    let again = SyncEngine::new(state.path())
        .sync_pair(&pair)
        .await
        .unwrap();
    assert_eq!(again.errors, 0, "{again:?}");
    assert!(!disk.files().contains_key(&rel("a.txt")));
    assert_eq!(trashed(&disk, "a.txt").len(), 1, "no second copy");
}

#[tokio::test]
async fn a_version_saved_after_the_trash_copy_is_not_deleted() {
    let (state, s, disk, d) = deleted_at_source().await;
    d.save_after_preserve.store(true, Ordering::SeqCst);
    let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::SourceToDestination);
    let stats = SyncEngine::new(state.path())
        .sync_pair(&pair)
        .await
        .unwrap();
    assert_eq!(stats.errors, 1, "the delete fails: {stats:?}");
    assert_eq!(
        disk.files().get(&rel("a.txt")),
        Some(&Bytes::from("saved meanwhile, longer")),
        "the new version stays"
    );
    assert_eq!(
        trashed(&disk, "a.txt"),
        vec![Bytes::from("old a")],
        "the trash keeps the version listed"
    );
}

/// Red team 32: the file's time has nanoseconds; its trash copy keeps microseconds. The copy
/// holds the listed version, but `coarser_copy_of` knew only 100 ns, 10 ms, 1 s and 2 s: the
/// delete failed on every run ("changed while it was kept in the trash") and the file was
/// never deleted.
#[tokio::test]
async fn a_trash_copy_on_a_filesystem_of_microseconds_counts_as_the_version() {
    let state = tempfile::tempdir().unwrap();
    let s = Arc::new(MemoryClient::new());
    let (disk, d) = destination(true);
    s.put(&rel("a.txt"), Bytes::from("only copy of a"))
        .await
        .unwrap();
    s.set_mtime(
        &rel("a.txt"),
        UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
    )
    .unwrap();
    for name in ["k1", "k2", "k3"] {
        s.put(&rel(name), Bytes::from(name)).await.unwrap();
    }
    let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::SourceToDestination);
    let engine = SyncEngine::new(state.path());
    let first = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(first.errors, 0, "{first:?}");
    assert_eq!(
        disk.stat(&rel("a.txt")).await.unwrap().mtime,
        Some(UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789)),
        "the destination keeps nanoseconds"
    );
    s.delete(&rel("a.txt")).await.unwrap();
    let second = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(second.errors, 0, "the delete goes through: {second:?}");
    assert!(!disk.files().contains_key(&rel("a.txt")), "deleted");
}
