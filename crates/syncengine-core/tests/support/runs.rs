//! Running the engine on two memory clients, for the red-team tests. Included with
//! `#[path = "support/runs.rs"] mod runs;`.
// Each test file uses what it needs of these.
#![allow(dead_code)]

use std::sync::Arc;

use syncengine_core::testing::{Fault, FaultClient, Op};
use syncengine_core::{
    MemoryClient, Recovery, RelPath, Side, StorageClient, SyncEngine, SyncMode, SyncOptions,
    SyncPair, SyncStats,
};

/// Trash on both sides (the default of the CLI) and two attempts per call.
pub fn options() -> SyncOptions {
    SyncOptions::default()
        .with_recovery(Side::Source, Recovery::Trash)
        .with_recovery(Side::Destination, Recovery::Trash)
        .with_attempts(2)
}

/// One run of `engine` on the pair in `mode`; panics when the run fails as a whole.
pub async fn run(
    engine: &SyncEngine,
    source: Arc<dyn StorageClient>,
    destination: Arc<dyn StorageClient>,
    mode: SyncMode,
    opts: SyncOptions,
) -> SyncStats {
    engine
        .sync_pair(&SyncPair::new(source, destination, mode).with_options(opts))
        .await
        .unwrap()
}

/// Paths on `c` (engine folder left out) whose content is exactly `body`.
pub fn holding(c: &MemoryClient, body: &str) -> Vec<String> {
    super::files::user_files(c)
        .into_iter()
        .filter(|(_, b)| b == body)
        .map(|(p, _)| p)
        .collect()
}

/// Makes every attempt (of two) of the next write of `path` through `fd` fail transiently:
/// the upload of a set aside over a flaky link that outlasts the retries.
pub fn fail_writes_of(fd: &Arc<FaultClient>, path: &str) {
    let weak = Arc::downgrade(fd);
    fd.before(
        Op::Write,
        super::files::rel(path),
        Arc::new(move |_: &RelPath| {
            if let Some(fd) = weak.upgrade() {
                fd.fail_next(Op::Write, Fault::Transient);
                fd.fail_next(Op::Write, Fault::Transient);
            }
        }),
    );
}

/// Source-backup: `kept` is backed up from the source at `x` (beside another file), deleted
/// on the source (a settled deletion: the destination keeps it), and then a `new`, unrelated
/// file appears at `x` on the source (a camera restarting at `IMG_0001.JPG`). The next run
/// sets the kept copy aside.
pub async fn kept_copy_meets_a_new_file(
    engine: &SyncEngine,
    src: &Arc<MemoryClient>,
    dst: &Arc<MemoryClient>,
    kept: &str,
    new: &str,
) {
    use syncengine_core::StorageClientExt;
    let sb = SyncMode::SourceBackup;
    super::files::put(src, "x", kept).await;
    super::files::put(src, "other", "another file").await;
    run(engine, src.clone(), dst.clone(), sb, options()).await;
    src.delete(&super::files::rel("x")).await.unwrap();
    let settled = run(engine, src.clone(), dst.clone(), sb, options()).await;
    assert!(settled.is_noop(), "{settled:?}");
    super::files::put(src, "x", new).await;
}

/// A source-backup run after [`kept_copy_meets_a_new_file`] in which every attempt to upload
/// the new `x` fails transiently: the set aside leaves its spare copy behind and the run
/// counts that one error.
pub async fn failed_set_aside(
    engine: &SyncEngine,
    src: &Arc<MemoryClient>,
    dst: &Arc<MemoryClient>,
) {
    let fd = Arc::new(FaultClient::new(
        dst.clone(),
        syncengine_core::testing::FaultConfig::none(),
    ));
    fail_writes_of(&fd, "x");
    let failed = run(
        engine,
        src.clone(),
        fd.clone(),
        SyncMode::SourceBackup,
        options(),
    )
    .await;
    assert_eq!(failed.errors, 1, "{failed:?}; {:?}", fd.injected());
}

/// [`failed_set_aside`], then the one spare conflict copy it left on `dst` holding `kept`.
pub async fn the_spare(
    engine: &SyncEngine,
    src: &Arc<MemoryClient>,
    dst: &Arc<MemoryClient>,
    kept: &str,
) -> RelPath {
    failed_set_aside(engine, src, dst).await;
    let spares: Vec<String> = holding(dst, kept)
        .into_iter()
        .filter(|p| p != "x")
        .collect();
    assert_eq!(spares.len(), 1, "{:?}", super::files::user_files(dst));
    super::files::rel(&spares[0])
}

/// What a spare conflict copy that is *not* the kept file must come to (red teams 6 and 7):
/// two more source-backup runs later the pair is idle, `x` holds `new`, the kept file
/// (`kept`) is on the backup exactly once, the spare still holds `spare_body` where it is,
/// and the kept file did not come back to the source. `context` starts every message.
#[allow(clippy::too_many_arguments)]
pub async fn assert_spare_left_alone(
    engine: &SyncEngine,
    src: &Arc<MemoryClient>,
    dst: &Arc<MemoryClient>,
    spare: &RelPath,
    kept: &str,
    new: &str,
    spare_body: &str,
    context: &str,
) {
    let sb = SyncMode::SourceBackup;
    run(engine, src.clone(), dst.clone(), sb, options()).await;
    let last = run(engine, src.clone(), dst.clone(), sb, options()).await;
    assert!(last.is_noop(), "{context}: {last:?}");
    assert_eq!(
        super::files::text(dst, "x").as_deref(),
        Some(new),
        "{context}"
    );
    assert_eq!(
        holding(dst, kept).len(),
        1,
        "{context}: the kept file should be on the backup once: {:?}",
        super::files::user_files(dst)
    );
    assert_eq!(
        holding(dst, spare_body),
        vec![spare.as_str().to_owned()],
        "{context}: the spare stays where it is"
    );
    assert!(
        holding(src, kept).is_empty(),
        "{context}: the deleted file came back"
    );
}
