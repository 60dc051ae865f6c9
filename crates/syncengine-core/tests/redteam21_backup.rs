//! Red team 21: a file deleted or overwritten with a backup dir (`--backup-dir`, or a trash
//! dir on another client) is first copied there; that copy is then all that is left of the
//! version. It must be durable before the original goes: the run's barriers flush only the
//! two sides (`write_batch`), never the backup dir's client, whose disk may be another one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::testing::{Fault, FaultClient, FaultConfig, Op};
use syncengine_core::{
    MemoryClient, Recovery, RelPath, Side, StorageClientExt, SyncEngine, SyncMode, SyncOptions,
    SyncPair,
};

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// The backup dir's disk cannot flush (its barrier fails): the old version of x.txt must
/// stay at its path, deleted (`edit` false) or overwritten (`edit` true) on the source. Its
/// barrier not being called at all fails the same way.
#[tokio::test]
async fn the_backup_copy_is_flushed_before_the_original_goes() {
    for edit in [false, true] {
        let state = tempfile::tempdir().unwrap();
        let s = Arc::new(MemoryClient::new());
        let d = Arc::new(MemoryClient::new());
        s.put(&rel("x.txt"), Bytes::from_static(b"old"))
            .await
            .unwrap();
        // Others, so that one deletion is not most of the side (--max-delete).
        for i in 0..9 {
            s.put(&rel(&format!("other{i}.txt")), Bytes::from_static(b"o"))
                .await
                .unwrap();
        }
        SyncEngine::new(state.path())
            .sync_pair(&SyncPair::new(
                s.clone(),
                d.clone(),
                SyncMode::SourceToDestination,
            ))
            .await
            .unwrap();
        if edit {
            s.put(&rel("x.txt"), Bytes::from_static(b"a new version"))
                .await
                .unwrap();
        } else {
            s.delete(&rel("x.txt")).await.unwrap();
        }
        let backup = Arc::new(FaultClient::new(
            Arc::new(MemoryClient::new()),
            FaultConfig::none(),
        ));
        backup.fail_next(Op::SyncWritten, Fault::Error);
        let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::SourceToDestination).with_options(
            SyncOptions::default()
                .with_recovery(Side::Destination, Recovery::BackupDir(backup.clone())),
        );
        let result = SyncEngine::new(state.path()).sync_pair(&pair).await;
        let flushed = !backup.injected().is_empty();
        let at_path = d.files().get(&rel("x.txt")).cloned();
        assert_eq!(
            at_path.as_deref(),
            Some(&b"old"[..]),
            "edit {edit}: the old version left its path ({result:?}) while its backup copy was \
             never made durable (the backup dir's barrier was called: {flushed})"
        );
    }
}
