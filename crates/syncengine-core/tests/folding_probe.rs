//! The name-folding probe (issue 8, behaviour 9): a root whose client does not know for sure
//! how it treats `Readme`/`readme` or NFC/NFD `café` is probed in its `.syncengine/` folder,
//! the answer is cached with the root's identity, and collisions there are kept apart even
//! when the client declares a case-sensitive root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use syncengine_core::folding::{Folding, probe_dir, probe_folding};
use syncengine_core::identity::root_id_path;
use syncengine_core::testing::{Fault, FaultClient, FaultConfig, QuirkClient};
use syncengine_core::{
    AcceptNewRoot, MemoryClient, RelPath, StorageClient, StorageClientExt, SyncEngine, SyncError,
    SyncMode, SyncOptions, SyncPair, SyncStats,
};

const NFC: &str = "caf\u{e9}";
const NFD: &str = "cafe\u{301}";

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

async fn put(c: &MemoryClient, path: &str, data: &str) {
    c.put(&rel(path), Bytes::from(data.to_owned()))
        .await
        .unwrap();
}

fn text(c: &MemoryClient, path: &str) -> Option<String> {
    c.files()
        .get(&rel(path))
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Paths stored in `c` outside the engine's own folder.
fn user_paths(c: &MemoryClient) -> Vec<String> {
    c.files()
        .keys()
        .map(|p| p.as_str().to_string())
        .filter(|p| !p.starts_with(".syncengine"))
        .collect()
}

/// Probe files (anything in `.syncengine/probe/`) stored in `c`.
fn probe_files(c: &MemoryClient) -> Vec<String> {
    let dir = format!("{}/", probe_dir().unwrap());
    c.files()
        .keys()
        .map(|p| p.as_str().to_string())
        .filter(|p| p.starts_with(&dir))
        .collect()
}

/// A folding server behind a client that declares a root that keeps names apart.
fn undeclared(inner: &Arc<MemoryClient>, case: bool, nfc: bool) -> Arc<QuirkClient> {
    Arc::new(
        QuirkClient::new(inner.clone())
            .with_case_insensitive(case)
            .with_normalization_insensitive(nfc)
            .with_declared_folding(false),
    )
}

async fn run_with(
    engine: &SyncEngine,
    src: Arc<dyn StorageClient>,
    dst: Arc<dyn StorageClient>,
    mode: SyncMode,
    opts: SyncOptions,
) -> Result<SyncStats, SyncError> {
    engine
        .sync_pair(&SyncPair::new(src, dst, mode).with_options(opts))
        .await
}

fn probe_warnings(stats: &SyncStats) -> Vec<&String> {
    stats
        .warnings
        .iter()
        .filter(|w| w.contains("probe"))
        .collect()
}

/// A case-insensitive (resp. NFC/NFD-insensitive) server whose client declares it
/// sensitive, as destination and then as source: the probe finds the folding, both
/// colliding names are reported and kept apart, and nothing is copied onto the other or
/// deleted, in every mode; no probe file stays behind.
async fn undeclared_folding_is_probed_and_collisions_are_kept_apart(
    names: [&str; 2],
    case: bool,
    nfc: bool,
) {
    for folding_is_destination in [true, false] {
        let state = tempfile::tempdir().unwrap();
        let engine = SyncEngine::new(state.path());
        let plain = Arc::new(MemoryClient::new());
        let folded_inner = Arc::new(MemoryClient::new());
        let folded: Arc<dyn StorageClient> = undeclared(&folded_inner, case, nfc);
        assert!(!folded.capabilities().case_insensitive);
        assert!(!folded.capabilities().normalization_insensitive);
        put(&plain, &format!("docs/{}", names[0]), "first").await;
        put(&plain, &format!("docs/{}", names[1]), "second").await;
        put(&plain, "docs/other", "other").await;
        let (src, dst): (Arc<dyn StorageClient>, Arc<dyn StorageClient>) = if folding_is_destination
        {
            (plain.clone(), folded.clone())
        } else {
            (folded.clone(), plain.clone())
        };
        for (i, mode) in [
            SyncMode::TwoWay,
            SyncMode::TwoWay,
            SyncMode::SourceToDestination,
            SyncMode::DestinationToSource,
        ]
        .into_iter()
        .enumerate()
        {
            let stats = run_with(
                &engine,
                src.clone(),
                dst.clone(),
                mode,
                SyncOptions::default(),
            )
            .await
            .unwrap();
            let ctx = format!("run {i} ({mode:?}), folding destination {folding_is_destination}");
            assert_eq!(stats.unknown, 2, "{ctx}: {stats:?}");
            assert!(
                stats
                    .warnings
                    .iter()
                    .any(|w| w.contains(&format!("`docs/{}`", names[1]))),
                "{ctx}: the collision is named: {:?}",
                stats.warnings
            );
            assert!(probe_warnings(&stats).is_empty(), "{ctx}: {stats:?}");
            assert_eq!(user_paths(&folded_inner), ["docs/other"], "{ctx}");
            assert_eq!(
                text(&plain, &format!("docs/{}", names[0])).as_deref(),
                Some("first"),
                "{ctx}"
            );
            assert!(
                text(&plain, &format!("docs/{}", names[1])).is_some(),
                "{ctx}"
            );
            assert!(probe_files(&folded_inner).is_empty(), "{ctx}");
            put(&plain, &format!("docs/{}", names[1]), &format!("edit {i}")).await;
        }
    }
}

#[tokio::test]
async fn an_undeclared_case_insensitive_root_is_probed_and_readme_readme_kept_apart() {
    undeclared_folding_is_probed_and_collisions_are_kept_apart(["Readme", "readme"], true, false)
        .await;
}

#[tokio::test]
async fn an_undeclared_nfc_nfd_insensitive_root_is_probed_and_cafe_kept_apart() {
    undeclared_folding_is_probed_and_collisions_are_kept_apart([NFC, NFD], false, true).await;
}

#[tokio::test]
async fn the_probe_tells_each_kind_of_folding_and_leaves_nothing() {
    for (case, nfc) in [(false, false), (true, false), (false, true), (true, true)] {
        let inner = Arc::new(MemoryClient::new());
        let client = undeclared(&inner, case, nfc);
        let folding = probe_folding(client.as_ref()).await.unwrap();
        assert_eq!(
            folding,
            Folding {
                case_insensitive: case,
                normalization_insensitive: nfc
            }
        );
        assert!(inner.files().is_empty(), "{:?}", inner.files());
    }
}

/// The probe runs once per root identity: a second run makes no call on the probe folder
/// (each one would fail and be logged here), a root accepted anew is probed again, and a
/// probe that cannot write falls back to the declared folding with a warning.
#[tokio::test]
async fn the_probe_is_cached_with_the_root_identity() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    let dst_inner = Arc::new(MemoryClient::new());
    let quirk = undeclared(&dst_inner, true, false);
    put(&src, "Readme", "one").await;
    put(&src, "readme", "two").await;
    put(&src, "other", "three").await;

    let probe_part = format!("{}/", probe_dir().unwrap());
    let faulty = |failing: bool| {
        let fc = Arc::new(FaultClient::new(quirk.clone(), FaultConfig::none()));
        if failing {
            fc.fail_paths_containing(&probe_part, Fault::Error, 1000);
        }
        fc
    };
    let two_way = |dst: Arc<FaultClient>, opts: SyncOptions| {
        run_with(&engine, src.clone(), dst, SyncMode::TwoWay, opts)
    };

    // First run: probed, the collision found.
    let first = two_way(faulty(false), SyncOptions::default())
        .await
        .unwrap();
    assert_eq!((first.unknown, first.uploaded), (2, 1), "{first:?}");

    // Second run: every call on the probe folder would fail; none is made, and the cached
    // answer still finds the collision.
    let fc = faulty(true);
    let second = two_way(fc.clone(), SyncOptions::default()).await.unwrap();
    assert!(fc.injected().is_empty(), "probe calls: {:?}", fc.injected());
    assert_eq!(second.unknown, 2, "{second:?}");
    assert!(probe_warnings(&second).is_empty(), "{second:?}");

    // The destination is replaced (another id file) and accepted: probed again. The probe
    // cannot write here, so the run falls back to the declared folding and says so.
    dst_inner.delete(&root_id_path().unwrap()).await.unwrap();
    put(&dst_inner, root_id_path().unwrap().as_str(), "another-root").await;
    let fc = faulty(true);
    let refused = two_way(fc.clone(), SyncOptions::default()).await;
    assert!(
        matches!(refused, Err(SyncError::RootChanged { .. })),
        "{refused:?}"
    );
    let accepted = two_way(
        fc.clone(),
        SyncOptions::default()
            .with_accept_new_root(AcceptNewRoot::Destination)
            .with_dry_run(true),
    )
    .await
    .unwrap();
    assert!(!fc.injected().is_empty(), "the new root was not probed");
    let warnings = probe_warnings(&accepted);
    assert!(
        warnings.len() == 1
            && warnings[0].contains("could not probe")
            && warnings[0].contains("destination"),
        "{accepted:?}"
    );
    // Falling back to "keeps names apart", the dry run would copy one colliding name.
    assert_eq!(accepted.unknown, 0, "{accepted:?}");

    // Accepted for real with a probe that works: found folding, recorded with the new
    // identity; the run after makes no probe call again.
    let accepted = two_way(
        faulty(false),
        SyncOptions::default().with_accept_new_root(AcceptNewRoot::Destination),
    )
    .await
    .unwrap();
    assert_eq!(accepted.unknown, 2, "{accepted:?}");
    let fc = faulty(true);
    let after = two_way(fc.clone(), SyncOptions::default()).await.unwrap();
    assert!(fc.injected().is_empty(), "probe calls: {:?}", fc.injected());
    assert_eq!(after.unknown, 2, "{after:?}");
    assert!(probe_files(&dst_inner).is_empty());
    assert_eq!(user_paths(&dst_inner), ["other"]);
}

/// A probe whose write fails (a read-only root, a hostile server) never passes for "keeps
/// names apart" silently: the run says it could not probe and uses what the client declares.
#[tokio::test]
async fn a_probe_that_cannot_write_falls_back_with_a_warning() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    put(&src, "a", "a").await;
    let dst_inner = Arc::new(MemoryClient::new());
    let fc = Arc::new(FaultClient::new(
        undeclared(&dst_inner, true, false),
        FaultConfig::none(),
    ));
    fc.fail_paths_containing(&format!("{}/", probe_dir().unwrap()), Fault::Error, 1000);
    let stats = run_with(
        &engine,
        src.clone(),
        fc.clone(),
        SyncMode::TwoWay,
        SyncOptions::default(),
    )
    .await
    .unwrap();
    let warnings = probe_warnings(&stats);
    assert_eq!(warnings.len(), 1, "{stats:?}");
    assert!(
        warnings[0].contains("could not probe whether the destination root")
            && warnings[0].contains("assuming what the backend declares"),
        "{}",
        warnings[0]
    );
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    // Nothing cached: the next run tries again.
    let again = run_with(&engine, src, fc, SyncMode::TwoWay, SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(probe_warnings(&again).len(), 1, "{again:?}");
}

/// A dry run on a new root writes nothing into it, not even a probe file, and says that the
/// real run will probe.
#[tokio::test]
async fn a_dry_run_on_a_new_root_writes_no_probe() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src = Arc::new(MemoryClient::new());
    put(&src, "Readme", "one").await;
    let dst_inner = Arc::new(MemoryClient::new());
    let fc = Arc::new(FaultClient::new(
        undeclared(&dst_inner, true, false),
        FaultConfig::none(),
    ));
    fc.fail_paths_containing(&format!("{}/", probe_dir().unwrap()), Fault::Error, 1000);
    let stats = run_with(
        &engine,
        src,
        fc.clone(),
        SyncMode::TwoWay,
        SyncOptions::default().with_dry_run(true),
    )
    .await
    .unwrap();
    assert!(fc.injected().is_empty(), "{:?}", fc.injected());
    assert!(dst_inner.files().is_empty(), "{:?}", dst_inner.files());
    assert!(
        stats
            .warnings
            .iter()
            .any(|w| w.contains("dry run did not probe") && w.contains("real run probes")),
        "{stats:?}"
    );
}

/// A probe file a killed probe left behind is never synced, and the next probe of that root
/// removes it once it is a day old (a younger one may be another machine's probe).
#[tokio::test]
async fn a_probe_file_left_by_a_kill_is_never_synced_and_removed_later() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let src_inner = Arc::new(MemoryClient::new());
    let dir = probe_dir().unwrap();
    let old = format!("{dir}/fold-0123456789abcdef0123456789abcdef-A\u{e9}");
    let young = format!("{dir}/fold-1123456789abcdef0123456789abcdef-A\u{e9}");
    put(&src_inner, &old, "").await;
    put(&src_inner, &young, "").await;
    src_inner
        .set_mtime(
            &rel(&old),
            SystemTime::now() - Duration::from_secs(3 * 86_400),
        )
        .unwrap();
    put(&src_inner, "a", "a").await;
    let src = undeclared(&src_inner, false, false);
    let dst = Arc::new(MemoryClient::new());
    let stats = run_with(
        &engine,
        src,
        dst.clone(),
        SyncMode::TwoWay,
        SyncOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    assert!(probe_warnings(&stats).is_empty(), "{stats:?}");
    assert_eq!(probe_files(&src_inner), [young]);
    assert!(probe_files(&dst).is_empty());
    assert_eq!(user_paths(&dst), ["a"]);
}
