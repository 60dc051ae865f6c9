//! Red team 32: a delete kept in the trash by a copy (the move into the trash `Unsupported`,
//! as for a file on a filesystem mounted inside a local root) where the trash's filesystem
//! keeps times to the microsecond.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
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

/// A memory client that cannot move files into its trash, and whose trash copies keep their
/// time to the microsecond: a root on UDF, or on a FUSE filesystem (or NFSv2 share) that
/// sets times by `utimes(2)`, with a filesystem of nanoseconds mounted inside it.
#[derive(Debug)]
struct MicrosecondTrash {
    inner: Arc<MemoryClient>,
}

#[async_trait]
impl Hooks for MicrosecondTrash {
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
        _client: &dyn StorageClient,
        from: &RelPath,
        to: &RelPath,
    ) -> Result<Entry> {
        let kept = self.inner.preserve(from, to).await?;
        let Some(t) = kept.mtime else {
            return Ok(kept);
        };
        let since = t.duration_since(UNIX_EPOCH).unwrap();
        let micros = UNIX_EPOCH + Duration::from_micros(since.as_micros() as u64);
        self.inner.set_mtime(to, micros)?;
        self.inner.stat(to).await
    }
}

/// The file's time has nanoseconds; its trash copy keeps microseconds. The copy holds the
/// listed version, but `coarser_copy_of` knows only 100 ns, 10 ms, 1 s and 2 s: the delete
/// fails on every run ("changed while it was kept in the trash") and the file is never
/// deleted.
#[tokio::test]
async fn a_trash_copy_on_a_filesystem_of_microseconds_counts_as_the_version() {
    let state = tempfile::tempdir().unwrap();
    let s = Arc::new(MemoryClient::new());
    let disk = Arc::new(MemoryClient::new());
    let d = Arc::new(Forwarding::new(MicrosecondTrash {
        inner: disk.clone(),
    }));
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
