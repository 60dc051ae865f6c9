//! A base is used only for the storage it describes: pair ids follow each side's resolved
//! location, and each root's identity (its `.syncengine/root-id`) is recorded and checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use syncengine_core::state::{BaseRecord, BaseUpdate, SideRecord, StateStore};
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::{
    AcceptNewRoot, ByteStream, Entry, Error, MemoryClient, RelPath, Result, RootIdentity, Side,
    StorageClient, StorageClientExt, SyncEngine, SyncError, SyncMode, SyncOptions, SyncPair,
    WriteOptions,
};

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// The user's files (the engine's `.syncengine/` folder left out).
fn user_files(c: &MemoryClient) -> BTreeMap<String, Bytes> {
    c.files()
        .into_iter()
        .filter(|(p, _)| !p.as_str().starts_with(".syncengine/"))
        .map(|(p, b)| (p.to_string(), b))
        .collect()
}

async fn fill(c: &MemoryClient, names: impl IntoIterator<Item = String>) {
    for n in names {
        c.put(&rel(&n), Bytes::from(format!("content of {n}")))
            .await
            .unwrap();
    }
}

fn ten() -> Vec<String> {
    (0..10).map(|i| format!("f{i}.txt")).collect()
}

fn root_id(c: &MemoryClient) -> Option<String> {
    c.files()
        .get(&rel(".syncengine/root-id"))
        .map(|b| String::from_utf8_lossy(b).trim().to_owned())
}

/// Source with ten files, synced two-way to a destination "mounted" at `usb`.
async fn synced_pair(state: &std::path::Path) -> (Arc<MemoryClient>, Arc<MemoryClient>) {
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new().with_location("usb"));
    fill(&s, ten()).await;
    let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay);
    SyncEngine::new(state).sync_pair(&pair).await.unwrap();
    assert_eq!(user_files(&d).len(), 10);
    (s, d)
}

/// Another disk at the same mount point: six of the ten files, no id file of ours.
async fn replacement_disk() -> Arc<MemoryClient> {
    let d = Arc::new(MemoryClient::new().with_location("usb"));
    fill(&d, ten().into_iter().take(6)).await;
    d
}

#[tokio::test]
async fn pair_ids_follow_resolved_locations() {
    let a = Arc::new(MemoryClient::new());
    let b = Arc::new(MemoryClient::new());
    let c = Arc::new(MemoryClient::new());
    let ab = SyncPair::new(a.clone(), b.clone(), SyncMode::TwoWay);
    let ac = SyncPair::new(a.clone(), c.clone(), SyncMode::TwoWay);
    assert_ne!(ab.id().await.unwrap(), ac.id().await.unwrap());
    // Two storages behind one name share the id (the root identity tells them apart).
    let u1 = Arc::new(MemoryClient::new().with_location("usb"));
    let u2 = Arc::new(MemoryClient::new().with_location("usb"));
    assert_eq!(
        SyncPair::new(a.clone(), u1, SyncMode::TwoWay)
            .id()
            .await
            .unwrap(),
        SyncPair::new(a.clone(), u2, SyncMode::SourceBackup)
            .id()
            .await
            .unwrap(),
        "the mode is not part of the id"
    );
    assert_eq!(
        ab.locations().await.unwrap()[1],
        b.location().await.unwrap()
    );
    // An explicit id wins.
    assert_eq!(ab.clone().with_id("mine").id().await.unwrap(), "mine");
}

#[tokio::test]
async fn a_replaced_root_stops_the_run_and_deletes_nothing() {
    let state = tempfile::tempdir().unwrap();
    let (s, d) = synced_pair(state.path()).await;
    let recorded = root_id(&d).unwrap();
    let swapped = replacement_disk().await;
    let pair = SyncPair::new(s.clone(), swapped.clone(), SyncMode::TwoWay)
        .with_options(SyncOptions::default().with_force(true));
    let err = SyncEngine::new(state.path())
        .sync_pair(&pair)
        .await
        .unwrap_err();
    assert!(err.is_safety_stop(), "{err}");
    let SyncError::RootChanged { changes } = &err else {
        panic!("expected RootChanged, got {err}")
    };
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].side, Side::Destination);
    assert_eq!(changes[0].recorded, RootIdentity::IdFile(recorded.clone()));
    assert_eq!(changes[0].found, None);
    let msg = err.to_string();
    assert!(msg.contains(&recorded), "{msg}");
    assert!(msg.contains("--accept-new-root destination"), "{msg}");
    assert_eq!(user_files(&s).len(), 10, "the source lost files");
    assert_eq!(user_files(&swapped).len(), 6);
    assert_eq!(root_id(&swapped), None, "a stopped run wrote an id file");

    // A root that carries another pair's id file is named with both ids.
    let other = Arc::new(MemoryClient::new().with_location("usb"));
    fill(&other, ten().into_iter().take(6)).await;
    other
        .put(&rel(".syncengine/root-id"), Bytes::from("feedface\n"))
        .await
        .unwrap();
    let pair = SyncPair::new(s.clone(), other.clone(), SyncMode::SourceToDestination);
    let err = SyncEngine::new(state.path())
        .sync_pair(&pair)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("root id {recorded}")) && msg.contains("root id feedface"),
        "{msg}"
    );
    assert_eq!(user_files(&other).len(), 6);
}

#[tokio::test]
async fn an_accepted_root_plans_no_deletions_then_runs_normally() {
    let state = tempfile::tempdir().unwrap();
    let (s, _d) = synced_pair(state.path()).await;
    // The new disk also holds a file of its own that a mirror would delete.
    let swapped = replacement_disk().await;
    fill(&swapped, ["extra.txt".to_owned()]).await;
    let engine = SyncEngine::new(state.path());
    for mode in [SyncMode::TwoWay, SyncMode::SourceToDestination] {
        let pair = SyncPair::new(s.clone(), swapped.clone(), mode)
            .with_options(SyncOptions::default().with_accept_new_root(AcceptNewRoot::Destination));
        let dry = engine
            .sync_pair(
                &pair
                    .clone()
                    .with_options(pair.options.clone().with_dry_run(true)),
            )
            .await
            .unwrap();
        assert_eq!(dry.deleted_source + dry.deleted_destination, 0, "{mode}");
        assert_eq!(root_id(&swapped), None, "a dry run wrote an id file");
    }
    let pair = SyncPair::new(s.clone(), swapped.clone(), SyncMode::SourceToDestination)
        .with_options(SyncOptions::default().with_accept_new_root(AcceptNewRoot::Destination));
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.deleted_source + stats.deleted_destination, 0);
    assert_eq!(stats.uploaded, 4, "the four missing files are copied");
    assert!(
        stats.warnings.iter().any(|w| w.contains("accepted")),
        "{:?}",
        stats.warnings
    );
    assert_eq!(user_files(&s).len(), 10);
    assert_eq!(user_files(&swapped).len(), 11, "extra.txt was deleted");
    let new_id = root_id(&swapped).expect("the accepted root got an id file");

    // The next run is an ordinary one: identity matches, the mirror removes the extra file.
    let pair = SyncPair::new(s.clone(), swapped.clone(), SyncMode::SourceToDestination);
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.deleted_destination, 1);
    assert_eq!(user_files(&swapped), user_files(&s));
    assert_eq!(root_id(&swapped), Some(new_id));
    // And a deletion on the source now propagates (the base is live again).
    s.delete(&rel("f0.txt")).await.unwrap();
    let stats = engine.sync_pair(&pair).await.unwrap();
    assert_eq!(stats.deleted_destination, 1);
    assert_eq!(user_files(&swapped).len(), 9);
}

/// A type change the accepted run would make needs a deletion first (the folder `d/` on the
/// destination where the new source has a file `d`): the copy waits with the deletion
/// instead of failing on a path that is still taken, and the run says why.
#[tokio::test]
async fn an_accepted_run_postpones_type_changes_with_their_deletions() {
    let state = tempfile::tempdir().unwrap();
    let s = Arc::new(
        MemoryClient::new()
            .with_location("work")
            .with_disk_folders(),
    );
    let d = Arc::new(MemoryClient::new().with_location("usb").with_disk_folders());
    fill(&s, ten()).await;
    fill(&d, ["d/a.txt".to_owned()]).await;
    let engine = SyncEngine::new(state.path());
    let mirror = SyncMode::SourceToDestination;
    let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay);
    engine.sync_pair(&pair).await.unwrap();

    // Another disk at the source's mount point, with a file `d` where the folder was.
    let new_source = Arc::new(
        MemoryClient::new()
            .with_location("work")
            .with_disk_folders(),
    );
    fill(&new_source, ten()).await;
    fill(&new_source, ["d".to_owned()]).await;
    let accept = SyncOptions::default().with_accept_new_root(AcceptNewRoot::Source);
    let accepted = SyncPair::new(new_source.clone(), d.clone(), mirror).with_options(accept);
    let stats = engine.sync_pair(&accepted).await.unwrap();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(stats.deleted_destination, 0, "{stats:?}");
    assert!(
        d.files().contains_key(&rel("d/a.txt")),
        "the folder was deleted"
    );
    assert!(
        stats.warnings.iter().any(|w| w.contains("type changes")),
        "{:?}",
        stats.warnings
    );
    // The next ordinary run makes the type change (the old folder's file to the trash).
    let stats = engine
        .sync_pair(&SyncPair::new(new_source.clone(), d.clone(), mirror))
        .await
        .unwrap();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(user_files(&d), user_files(&new_source));
}

/// A pair whose base holds no files (every file deleted and synced) still knows its roots:
/// another disk at the source's mount point stops the run, instead of a mirror deleting that
/// disk's files (red team 9, finding 01).
#[tokio::test]
async fn a_replaced_root_is_stopped_also_when_the_base_is_empty() {
    let state = tempfile::tempdir().unwrap();
    let s = Arc::new(MemoryClient::new().with_location("work"));
    let d = Arc::new(MemoryClient::new().with_location("usb"));
    fill(&s, ["f.txt".to_owned()]).await;
    let engine = SyncEngine::new(state.path());
    let two_way = SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay)
        .with_options(SyncOptions::default().with_force(true));
    engine.sync_pair(&two_way).await.unwrap();
    s.delete(&rel("f.txt")).await.unwrap();
    engine.sync_pair(&two_way).await.unwrap();
    assert!(user_files(&d).is_empty());

    let other_disk = Arc::new(MemoryClient::new().with_location("work"));
    fill(
        &other_disk,
        ["o1".to_owned(), "o2".to_owned(), "o3".to_owned()],
    )
    .await;
    let mirror = SyncPair::new(other_disk.clone(), d.clone(), SyncMode::DestinationToSource)
        .with_options(SyncOptions::default().with_force(true));
    match engine.sync_pair(&mirror).await {
        Err(SyncError::RootChanged { changes }) => assert_eq!(changes[0].side, Side::Source),
        other => panic!("another disk was synced as the source: {other:?}"),
    }
    assert_eq!(
        user_files(&other_disk).len(),
        3,
        "the other disk lost files"
    );
}

#[tokio::test]
async fn a_state_file_copied_from_another_pair_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let (a_src, a_dst) = synced_pair(state.path()).await;
    let a_id = SyncPair::new(a_src.clone(), a_dst.clone(), SyncMode::TwoWay)
        .id()
        .await
        .unwrap();

    let b_src = Arc::new(MemoryClient::new());
    let b_dst = Arc::new(MemoryClient::new());
    fill(&b_src, ten().into_iter().skip(4)).await;
    let b = SyncPair::new(b_src.clone(), b_dst.clone(), SyncMode::TwoWay);
    engine.sync_pair(&b).await.unwrap();
    let b_id = b.id().await.unwrap();
    std::fs::copy(
        StateStore::file_for(state.path(), &a_id),
        StateStore::file_for(state.path(), &b_id),
    )
    .unwrap();
    let err = engine.sync_pair(&b).await.unwrap_err();
    let SyncError::RootChanged { changes } = &err else {
        panic!("expected RootChanged, got {err}")
    };
    assert_eq!(changes.len(), 2, "{err}");
    assert!(err.to_string().contains("--accept-new-root both"), "{err}");
    assert_eq!(user_files(&b_src).len(), 6);
    assert_eq!(user_files(&b_dst).len(), 6);
}

#[tokio::test]
async fn explicit_pair_ids_are_checked_too() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    fill(&s, ten()).await;
    engine
        .sync_pair(&SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay).with_id("backup"))
        .await
        .unwrap();
    // The same explicit id on another destination.
    let other = replacement_disk().await;
    let err = engine
        .sync_pair(&SyncPair::new(s.clone(), other.clone(), SyncMode::TwoWay).with_id("backup"))
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::RootChanged { .. }), "{err}");
    assert_eq!(user_files(&s).len(), 10);
}

#[tokio::test]
async fn a_dry_run_writes_no_id_file_and_no_state() {
    let state = tempfile::tempdir().unwrap();
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    fill(&s, ten()).await;
    let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay)
        .with_options(SyncOptions::default().with_dry_run(true));
    let stats = SyncEngine::new(state.path())
        .sync_pair(&pair)
        .await
        .unwrap();
    assert_eq!(stats.uploaded, 10);
    assert_eq!(root_id(&s), None);
    assert_eq!(root_id(&d), None);
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0);
}

/// The id older versions used: a hash of the clients' display strings.
fn older_id(s: &dyn StorageClient, d: &dyn StorageClient) -> String {
    let mut h = Sha256::new();
    h.update(s.to_string().as_bytes());
    h.update(b"\n");
    h.update(d.to_string().as_bytes());
    hex::encode(&h.finalize()[..12])
}

#[tokio::test]
async fn state_under_the_older_id_is_adopted() {
    let state = tempfile::tempdir().unwrap();
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    fill(&s, ten()).await;
    fill(&d, ten()).await;
    // What an older version left: a completed base keyed by the display-string id, and no
    // root identities (nor id files on the roots).
    let old = older_id(s.as_ref(), d.as_ref());
    {
        let store = StateStore::open(state.path(), &old).unwrap();
        let mut ups = Vec::new();
        for e in s.list_all(None).await.unwrap() {
            let de = d.stat(&e.path).await.unwrap();
            ups.push(BaseUpdate::Put(BaseRecord::new(
                e.path.clone(),
                SideRecord::from_entry(&e),
                SideRecord::from_entry(&de),
            )));
        }
        store.apply(&ups).unwrap();
        store.mark_completed().unwrap();
    }
    let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay);
    let new = pair.id().await.unwrap();
    assert_ne!(new, old);
    // A deletion propagates only with the base: proof that it was kept.
    d.delete(&rel("f3.txt")).await.unwrap();
    let stats = SyncEngine::new(state.path())
        .sync_pair(&pair)
        .await
        .unwrap();
    assert_eq!(stats.deleted_source, 1, "{stats:?}");
    assert!(!StateStore::file_for(state.path(), &old).exists());
    assert!(StateStore::file_for(state.path(), &new).exists());
    // The first run recorded both roots: replacing one now stops the run.
    assert!(root_id(&s).is_some() && root_id(&d).is_some());
    let store = StateStore::open(state.path(), &new).unwrap();
    assert_eq!(
        store.root_identity(Side::Destination).unwrap(),
        Some(RootIdentity::IdFile(root_id(&d).unwrap()))
    );
}

/// A client whose root refuses writes to the engine's folder (a read-only root), with or
/// without a volume id.
#[derive(Debug)]
struct ReadOnlyRoot {
    inner: Arc<MemoryClient>,
    volume: Option<String>,
}

#[async_trait]
impl Hooks for ReadOnlyRoot {
    fn inner(&self) -> &dyn StorageClient {
        &*self.inner
    }
    fn backend(&self) -> &'static str {
        "readonly"
    }
    async fn volume_id(&self) -> Result<Option<String>> {
        Ok(self.volume.clone())
    }
    async fn write_opts(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        if path.as_str().starts_with(".syncengine/") {
            return Err(Error::PermissionDenied {
                backend: "readonly",
                path: path.to_string(),
                source: None,
            });
        }
        self.inner.write_opts(path, body, opts).await
    }
}

#[tokio::test]
async fn read_only_roots_fall_back_to_the_volume_id_or_warn() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let store_a = Arc::new(MemoryClient::new().with_location("ro"));
    fill(&store_a, ten()).await;
    let d = Arc::new(MemoryClient::new());
    let ro = |inner: &Arc<MemoryClient>, volume: &str| -> Arc<dyn StorageClient> {
        Arc::new(Forwarding::new(ReadOnlyRoot {
            inner: inner.clone(),
            volume: Some(volume.to_owned()),
        }))
    };
    let pair = SyncPair::new(
        ro(&store_a, "vol-A"),
        d.clone(),
        SyncMode::SourceToDestination,
    );
    engine.sync_pair(&pair).await.unwrap();
    let id = pair.id().await.unwrap();
    let store = StateStore::open(state.path(), &id).unwrap();
    assert_eq!(
        store.root_identity(Side::Source).unwrap(),
        Some(RootIdentity::Volume("vol-A".into()))
    );
    drop(store);
    engine.sync_pair(&pair).await.unwrap();

    // Another volume behind the same name is a changed root.
    let store_b = Arc::new(MemoryClient::new().with_location("ro"));
    fill(&store_b, ten().into_iter().take(3)).await;
    let swapped = SyncPair::new(
        ro(&store_b, "vol-B"),
        d.clone(),
        SyncMode::SourceToDestination,
    )
    .with_options(SyncOptions::default().with_force(true));
    let err = engine.sync_pair(&swapped).await.unwrap_err();
    assert!(
        err.to_string().contains("volume id vol-A") && err.to_string().contains("volume id vol-B"),
        "{err}"
    );
    assert_eq!(user_files(&d).len(), 10);

    // Without a volume id the run warns and goes on.
    let state2 = tempfile::tempdir().unwrap();
    let bare: Arc<dyn StorageClient> = Arc::new(Forwarding::new(ReadOnlyRoot {
        inner: store_a.clone(),
        volume: None,
    }));
    let stats = SyncEngine::new(state2.path())
        .sync_pair(&SyncPair::new(
            bare,
            Arc::new(MemoryClient::new()),
            SyncMode::SourceToDestination,
        ))
        .await
        .unwrap();
    assert!(
        stats
            .warnings
            .iter()
            .any(|w| w.contains("cannot write the source's identity file")),
        "{:?}",
        stats.warnings
    );
    assert_eq!(stats.uploaded, 10);
}

/// An older copy of a root put back in its place (a restored backup, a rolled-back snapshot,
/// a copied folder: the same root id) is recognised by the generation the last run left in
/// the root: the run stops before changing anything, and the newer side is not rolled back.
#[tokio::test]
async fn an_older_copy_of_a_root_stops_the_run() {
    let state = tempfile::tempdir().unwrap();
    let (s, d) = synced_pair(state.path()).await;
    let backup = d.files();
    assert!(
        backup
            .keys()
            .any(|p| p.as_str().starts_with(".syncengine/generation/")),
        "no generation file after a run: {:?}",
        backup.keys().collect::<Vec<_>>()
    );
    // Work goes on after the backup was taken.
    s.put(&rel("f0.txt"), Bytes::from("edited after the backup"))
        .await
        .unwrap();
    s.put(&rel("new.txt"), Bytes::from("added after the backup"))
        .await
        .unwrap();
    let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay);
    SyncEngine::new(state.path())
        .sync_pair(&pair)
        .await
        .unwrap();

    // The destination is replaced by the backup, engine folder and all.
    let restored = Arc::new(MemoryClient::new().with_location("usb"));
    for (path, body) in backup {
        restored.put(&path, body).await.unwrap();
    }
    let before = user_files(&s);
    let pair = SyncPair::new(s.clone(), restored.clone(), SyncMode::TwoWay);
    match SyncEngine::new(state.path()).sync_pair(&pair).await {
        Err(SyncError::RootChanged { changes }) => {
            assert_eq!(changes.len(), 1, "{changes:?}");
            assert!(changes[0].older_copy, "{changes:?}");
            assert_eq!(changes[0].side, Side::Destination);
        }
        other => panic!("an older copy of the destination was synced: {other:?}"),
    }
    assert_eq!(user_files(&s), before, "the source was changed");

    // Accepted, it deletes nothing and rolls nothing back on the source.
    let accepted = SyncPair::new(s.clone(), restored.clone(), SyncMode::TwoWay)
        .with_options(SyncOptions::default().with_accept_new_root(AcceptNewRoot::Destination));
    SyncEngine::new(state.path())
        .sync_pair(&accepted)
        .await
        .unwrap();
    assert_eq!(
        s.read_to_bytes(&rel("new.txt")).await.unwrap(),
        Bytes::from("added after the backup")
    );
    // And the runs after it are normal.
    let pair = SyncPair::new(s.clone(), restored.clone(), SyncMode::TwoWay);
    SyncEngine::new(state.path())
        .sync_pair(&pair)
        .await
        .unwrap();
}

/// Generations: older copies of a root, and the setups that must not look like one.
#[cfg(feature = "testing")]
mod generations {
    use super::*;
    use syncengine_core::testing::{Fault, FaultClient, FaultConfig};

    /// The destination's files as a restorable copy: every path, engine folder included.
    fn snapshot(c: &MemoryClient) -> BTreeMap<RelPath, Bytes> {
        c.files()
    }

    async fn restore(files: BTreeMap<RelPath, Bytes>, location: &str) -> Arc<MemoryClient> {
        let restored = Arc::new(MemoryClient::new().with_location(location));
        for (path, body) in files {
            restored.put(&path, body).await.unwrap();
        }
        restored
    }

    fn generation_file(c: &MemoryClient) -> Option<(RelPath, Bytes)> {
        c.files()
            .into_iter()
            .find(|(p, _)| p.as_str().starts_with(".syncengine/generation/"))
    }

    /// A copy of a root taken while a run was changing it (an hourly snapshot, a backup job)
    /// holds the generation that run wrote at its start; once the run has ended, that copy is
    /// older than the root and is recognised as such (red-team R1).
    #[tokio::test]
    async fn a_copy_taken_during_a_run_is_an_older_copy_once_the_run_ended() {
        let state = tempfile::tempdir().unwrap();
        let (s, d) = synced_pair(state.path()).await;
        s.put(
            &rel("a-first.txt"),
            Bytes::from("copied before the snapshot"),
        )
        .await
        .unwrap();
        s.put(&rel("z-last.txt"), Bytes::from("copied after the snapshot"))
            .await
            .unwrap();
        let faulty = Arc::new(FaultClient::new(d.clone(), FaultConfig::none()));
        let taken: Arc<std::sync::Mutex<Option<BTreeMap<RelPath, Bytes>>>> = Arc::default();
        let (d2, taken2) = (d.clone(), taken.clone());
        faulty.at_body_end(
            rel("z-last.txt"),
            Arc::new(move |_| *taken2.lock().unwrap() = Some(snapshot(&d2))),
        );
        let pair = SyncPair::new(s.clone(), faulty, SyncMode::TwoWay)
            .with_options(SyncOptions::default().with_transfers(1));
        let stats = SyncEngine::new(state.path())
            .sync_pair(&pair)
            .await
            .unwrap();
        assert_eq!(stats.uploaded, 2, "{stats:?}");
        let during = taken
            .lock()
            .unwrap()
            .take()
            .expect("the snapshot was taken");
        assert!(during.contains_key(&rel("a-first.txt")), "taken mid-run");
        assert!(!during.contains_key(&rel("z-last.txt")), "taken mid-run");

        let restored = restore(during, "usb").await;
        let before = user_files(&s);
        let pair = SyncPair::new(s.clone(), restored, SyncMode::TwoWay);
        match SyncEngine::new(state.path()).sync_pair(&pair).await {
            Err(SyncError::RootChanged { changes }) => {
                assert!(changes[0].older_copy, "{changes:?}");
                assert_eq!(changes[0].side, Side::Destination);
            }
            other => panic!("a mid-run copy of the destination was synced: {other:?}"),
        }
        assert_eq!(
            user_files(&s),
            before,
            "z-last.txt must not be deleted on the source"
        );
    }

    /// A root whose new generation cannot be written is not changed: the run stops before its
    /// first change there, since an older copy of that root could no longer be told apart
    /// (red-team R2).
    #[tokio::test]
    async fn a_root_whose_generation_cannot_be_written_is_not_changed() {
        let state = tempfile::tempdir().unwrap();
        let (s, d) = synced_pair(state.path()).await;
        let (generation, _) = generation_file(&d).expect("a generation file");
        s.put(&rel("new.txt"), Bytes::from("new")).await.unwrap();
        let faulty = Arc::new(FaultClient::new(d.clone(), FaultConfig::none()));
        faulty.fail_path(&generation, Fault::WriteBodyError, 100);
        let before = user_files(&d);
        let pair = SyncPair::new(s.clone(), faulty, SyncMode::TwoWay);
        match SyncEngine::new(state.path()).sync_pair(&pair).await {
            Err(SyncError::Storage { side, .. }) => assert_eq!(side, Side::Destination),
            other => panic!("the run went on without a generation: {other:?}"),
        }
        assert_eq!(user_files(&d), before, "the destination was changed");
        // Once the root is writable again, the run goes through.
        let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay);
        let stats = SyncEngine::new(state.path())
            .sync_pair(&pair)
            .await
            .unwrap();
        assert_eq!(stats.uploaded, 1, "{stats:?}");
    }

    /// Two machines whose sync folders have the same path share one remote root (laptop A ↔
    /// NAS ↔ laptop B): same pair id, two states. Each keeps its own generation in the shared
    /// root, so neither calls it an older copy (red-team F1; F2 is the same with two state
    /// folders on one machine).
    #[tokio::test]
    async fn two_states_of_one_pair_keep_their_generations_apart() {
        let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let laptop_a = Arc::new(MemoryClient::new().with_location("home/me/Sync"));
        let laptop_b = Arc::new(MemoryClient::new().with_location("home/me/Sync"));
        let nas = Arc::new(MemoryClient::new().with_location("nas"));
        let (a, b) = (
            SyncEngine::new(state_a.path()),
            SyncEngine::new(state_b.path()),
        );
        for round in 0..3 {
            laptop_a
                .put(&rel(&format!("a{round}.txt")), Bytes::from("from a"))
                .await
                .unwrap();
            a.sync_pair(&SyncPair::new(
                laptop_a.clone(),
                nas.clone(),
                SyncMode::TwoWay,
            ))
            .await
            .unwrap_or_else(|e| panic!("round {round}, laptop A: {e}"));
            laptop_b
                .put(&rel(&format!("b{round}.txt")), Bytes::from("from b"))
                .await
                .unwrap();
            b.sync_pair(&SyncPair::new(
                laptop_b.clone(),
                nas.clone(),
                SyncMode::TwoWay,
            ))
            .await
            .unwrap_or_else(|e| panic!("round {round}, laptop B: {e}"));
        }
        let generations = nas
            .files()
            .into_keys()
            .filter(|p| p.as_str().starts_with(".syncengine/generation/"))
            .count();
        assert_eq!(generations, 2, "one generation file per state");
        assert_eq!(user_files(&laptop_b).len(), 6);
    }

    /// A laptop restored as a whole, sync folder and state from one backup: the NAS is *ahead*
    /// of that state, not an older copy. The run goes on (with a warning) and brings the laptop
    /// forward; nothing on the NAS is rolled back (red-team F3).
    #[tokio::test]
    async fn a_state_restored_with_its_root_goes_on_and_rolls_nothing_back() {
        let state = tempfile::tempdir().unwrap();
        let s = Arc::new(MemoryClient::new().with_location("home/me/Sync"));
        let d = Arc::new(MemoryClient::new().with_location("nas"));
        fill(&s, ten()).await;
        let engine = SyncEngine::new(state.path());
        engine
            .sync_pair(&SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay))
            .await
            .unwrap();
        // The backup: the laptop's folder and its state folder.
        let laptop_backup = snapshot(&s);
        let state_backup = tempfile::tempdir().unwrap();
        for f in std::fs::read_dir(state.path()).unwrap() {
            let f = f.unwrap();
            if f.file_type().unwrap().is_file() {
                std::fs::copy(f.path(), state_backup.path().join(f.file_name())).unwrap();
            }
        }
        // More work, synced to the NAS.
        s.put(&rel("f0.txt"), Bytes::from("edited after the backup"))
            .await
            .unwrap();
        s.put(&rel("new.txt"), Bytes::from("added after the backup"))
            .await
            .unwrap();
        engine
            .sync_pair(&SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay))
            .await
            .unwrap();
        // The laptop dies; folder and state come back from the backup.
        let laptop = restore(laptop_backup, "home/me/Sync").await;
        let restored = SyncEngine::new(state_backup.path());
        let pair = SyncPair::new(laptop.clone(), d.clone(), SyncMode::TwoWay);
        assert_eq!(
            pair.id().await.unwrap(),
            SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay)
                .id()
                .await
                .unwrap()
        );
        let stats = restored.sync_pair(&pair).await.unwrap();
        assert!(
            stats
                .warnings
                .iter()
                .any(|w| w.contains("later generation")),
            "{:?}",
            stats.warnings
        );
        assert_eq!(
            d.read_to_bytes(&rel("f0.txt")).await.unwrap(),
            Bytes::from("edited after the backup"),
            "the NAS was rolled back"
        );
        assert_eq!(
            laptop.read_to_bytes(&rel("f0.txt")).await.unwrap(),
            Bytes::from("edited after the backup")
        );
        assert!(user_files(&laptop).contains_key("new.txt"));
        // The runs after it are normal.
        restored.sync_pair(&pair).await.unwrap();
    }

    /// A run that changes nothing writes no generation: a no-change run stays free of writes.
    #[tokio::test]
    async fn a_run_that_changes_nothing_writes_no_generation() {
        let state = tempfile::tempdir().unwrap();
        let (s, d) = synced_pair(state.path()).await;
        let before = (generation_file(&s), generation_file(&d));
        assert!(before.0.is_some() && before.1.is_some(), "{before:?}");
        let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay);
        let stats = SyncEngine::new(state.path())
            .sync_pair(&pair)
            .await
            .unwrap();
        assert_eq!(stats.uploaded + stats.downloaded, 0, "{stats:?}");
        assert_eq!((generation_file(&s), generation_file(&d)), before);
    }

    /// Ten files on `work`, mirrored (source-to-destination) once to `usb`.
    async fn mirrored_pair(
        state: &std::path::Path,
    ) -> (Arc<MemoryClient>, Arc<MemoryClient>, SyncEngine) {
        let s = Arc::new(MemoryClient::new().with_location("work"));
        let d = Arc::new(MemoryClient::new().with_location("usb"));
        fill(&s, ten()).await;
        let engine = SyncEngine::new(state);
        engine
            .sync_pair(&SyncPair::new(
                s.clone(),
                d.clone(),
                SyncMode::SourceToDestination,
            ))
            .await
            .unwrap();
        (s, d, engine)
    }

    /// A mirror never reads the side it overwrites: an older copy of its destination (a
    /// restored snapshot) is mirrored again, while an older copy of its source, which it
    /// reads, still stops the run (red-team F5).
    #[tokio::test]
    async fn an_older_copy_of_a_mirror_destination_is_mirrored_again() {
        let state = tempfile::tempdir().unwrap();
        let (s, d, engine) = mirrored_pair(state.path()).await;
        let mirror = SyncMode::SourceToDestination;
        let (old_d, old_s) = (snapshot(&d), snapshot(&s));
        s.put(&rel("f0.txt"), Bytes::from("edited")).await.unwrap();
        s.put(&rel("new.txt"), Bytes::from("new")).await.unwrap();
        engine
            .sync_pair(&SyncPair::new(s.clone(), d.clone(), mirror))
            .await
            .unwrap();

        let restored = restore(old_d, "usb").await;
        let stats = engine
            .sync_pair(&SyncPair::new(s.clone(), restored.clone(), mirror))
            .await
            .unwrap();
        assert!(
            stats.warnings.iter().any(|w| w.contains("older copy")),
            "{:?}",
            stats.warnings
        );
        assert_eq!(user_files(&restored), user_files(&s));

        // The source is what a mirror reads: an older copy of it would roll the destination
        // back, so it stops.
        let old_source = restore(old_s, "work").await;
        match engine
            .sync_pair(&SyncPair::new(old_source, restored.clone(), mirror))
            .await
        {
            Err(SyncError::RootChanged { changes }) => {
                assert!(
                    changes[0].older_copy && changes[0].side == Side::Source,
                    "{changes:?}"
                )
            }
            other => panic!("an older copy of the mirror's source was synced: {other:?}"),
        }
    }

    /// An accepted run deletes nothing in any mode: also when the side accepted is an older
    /// copy of a mirror's destination, which the mirror would otherwise bring up to date
    /// (deleting its extras). The accepted copy is current from then on, and the next
    /// ordinary run mirrors as usual (red team 8).
    #[tokio::test]
    async fn an_accepted_older_copy_of_a_mirror_destination_loses_nothing() {
        let state = tempfile::tempdir().unwrap();
        let (s, d, engine) = mirrored_pair(state.path()).await;
        let mirror = SyncMode::SourceToDestination;
        let old_d = snapshot(&d);
        s.delete(&rel("f0.txt")).await.unwrap();
        s.delete(&rel("f1.txt")).await.unwrap();
        engine
            .sync_pair(&SyncPair::new(s.clone(), d.clone(), mirror))
            .await
            .unwrap();

        let restored = restore(old_d, "usb").await;
        let accept = SyncOptions::default().with_accept_new_root(AcceptNewRoot::Destination);
        let accepted = SyncPair::new(s.clone(), restored.clone(), mirror).with_options(accept);
        let stats = engine.sync_pair(&accepted).await.unwrap();
        assert_eq!(stats.deleted_destination, 0, "{stats:?}");
        assert_eq!(
            user_files(&restored).len(),
            10,
            "the accepted copy lost files"
        );
        assert!(
            stats.warnings.iter().any(|w| w.contains("accepted")),
            "{:?}",
            stats.warnings
        );

        // The same flag again has nothing left to accept: it says so, and the run mirrors.
        let stats = engine.sync_pair(&accepted).await.unwrap();
        assert!(
            stats.warnings.iter().any(|w| w.contains("has no effect")),
            "{:?}",
            stats.warnings
        );
        assert_eq!(stats.deleted_destination, 2, "{stats:?}");
        assert_eq!(user_files(&restored), user_files(&s));
    }

    /// A run that changes only the base (the same edit made on both sides) moves the
    /// generation on: a copy of a root taken before it is an older copy under the new base,
    /// not current (red team 9, finding 05: the restored copy rolled the other side back).
    #[tokio::test]
    async fn a_run_that_changes_only_the_base_moves_the_generation_on() {
        let state = tempfile::tempdir().unwrap();
        let (s, d) = synced_pair(state.path()).await;
        let old_d = snapshot(&d);
        let edit = Bytes::from("the same edit on both sides");
        let mtime = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        for side in [&s, &d] {
            side.put(&rel("f0.txt"), edit.clone()).await.unwrap();
            side.set_mtime(&rel("f0.txt"), mtime).unwrap();
        }
        let engine = SyncEngine::new(state.path());
        let stats = engine
            .sync_pair(&SyncPair::new(s.clone(), d.clone(), SyncMode::TwoWay))
            .await
            .unwrap();
        assert_eq!(stats.uploaded + stats.downloaded, 0, "{stats:?}");

        let restored = restore(old_d, "usb").await;
        match engine
            .sync_pair(&SyncPair::new(s.clone(), restored, SyncMode::TwoWay))
            .await
        {
            Err(SyncError::RootChanged { changes }) => {
                assert!(changes[0].older_copy, "{changes:?}")
            }
            other => panic!("a copy from before the run was taken for current: {other:?}"),
        }
        assert_eq!(s.read_to_bytes(&rel("f0.txt")).await.unwrap(), edit);
    }

    /// An accepted run that is cancelled (or killed) after recording the new root keeps its
    /// promise on the next run, with or without the flag: nothing is deleted until an accepted
    /// run ends normally; then the mode's deletions resume (red team 9, finding 07).
    #[tokio::test]
    async fn an_interrupted_accepted_run_still_deletes_nothing_on_the_next_run() {
        let state = tempfile::tempdir().unwrap();
        let (s, _d) = synced_pair(state.path()).await;
        let swapped = replacement_disk().await;
        fill(&swapped, ["extra.txt".to_owned()]).await;
        let mirror = SyncMode::SourceToDestination;
        let cancel = tokio_util::sync::CancellationToken::new();
        let faulty = Arc::new(FaultClient::new(swapped.clone(), FaultConfig::none()));
        let token = cancel.clone();
        faulty.at_body_end(rel("f6.txt"), Arc::new(move |_| token.cancel()));
        let accept = SyncOptions::default()
            .with_accept_new_root(AcceptNewRoot::Destination)
            .with_transfers(1);
        let interrupted = SyncEngine::new(state.path())
            .with_cancellation(cancel)
            .sync_pair(&SyncPair::new(s.clone(), faulty, mirror).with_options(accept))
            .await;
        assert!(interrupted.is_err(), "{interrupted:?}");
        assert!(swapped.files().contains_key(&rel("extra.txt")));

        let engine = SyncEngine::new(state.path());
        let pair = SyncPair::new(s.clone(), swapped.clone(), mirror);
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(stats.deleted_destination, 0, "{stats:?}");
        assert!(
            stats.warnings.iter().any(|w| w.contains("did not finish")),
            "{:?}",
            stats.warnings
        );
        assert!(swapped.files().contains_key(&rel("extra.txt")));
        // That run ended normally: the next is an ordinary mirror run.
        let stats = engine.sync_pair(&pair).await.unwrap();
        assert_eq!(stats.deleted_destination, 1, "{stats:?}");
        assert_eq!(user_files(&swapped), user_files(&s));
    }
}
