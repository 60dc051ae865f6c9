//! Red team of the spilled plan (SpillVec): plans whose actions were edited or dropped
//! (held type changes, rename pairing) must run exactly what the pre-spill planner ran.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use syncengine_core::{
    MemoryClient, RelPath, StorageClientExt, SyncEngine, SyncMode, SyncOptions, SyncPair, SyncStats,
};

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

async fn put(c: &MemoryClient, path: &str, data: &str) {
    c.put(&rel(path), Bytes::from(data.to_owned()))
        .await
        .unwrap();
}

fn files(c: &MemoryClient) -> BTreeMap<String, String> {
    c.files()
        .iter()
        .map(|(p, b)| {
            (
                p.as_str().to_owned(),
                String::from_utf8_lossy(b).into_owned(),
            )
        })
        .collect()
}

async fn run(engine: &SyncEngine, s: &Arc<MemoryClient>, d: &Arc<MemoryClient>) -> SyncStats {
    let pair = SyncPair::new(s.clone(), d.clone(), SyncMode::SourceToDestination)
        .with_options(SyncOptions::default());
    engine.sync_pair(&pair).await.unwrap()
}

/// A mirror holds a type change (file `h` on the source, a folder `h/` with a member its
/// listing cannot see on the destination) and drops its copy from the plan; a rename found
/// in the same run (`old` → `r_b`) must still pair with its own new path, and every other
/// new file (`r_a`, of the same size) must still be copied. Reading the new paths' entries
/// back by position, not counting the dropped copy, paired `old` with `r_b` through `r_a`'s
/// slot and dropped `r_a`'s copy: the mirror never copied `r_a`.
#[tokio::test]
async fn a_held_type_change_does_not_shift_the_rename_candidates() {
    let state = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(state.path());
    let s = Arc::new(MemoryClient::new());
    let d = Arc::new(MemoryClient::new());
    put(&s, "old", "hello").await;
    let first = run(&engine, &s, &d).await;
    assert_eq!(first.errors, 0, "{:?}", first.error_messages);
    assert_eq!(files(&d).get("old").map(String::as_str), Some("hello"));

    // The destination holds a folder `h/` with a member it cannot list; the source a file `h`.
    put(&d, "h/u", "unseen").await;
    d.set_unlisted(&rel("h/u"), Some("permission denied"));
    put(&d, "h/v", "seen").await;
    put(&s, "h", "file").await;
    // The source renames `old` to `r_b` and adds `r_a` of the same size.
    s.delete(&rel("old")).await.unwrap();
    put(&s, "r_b", "hello").await;
    put(&s, "r_a", "world").await;

    let stats = run(&engine, &s, &d).await;
    let got = files(&d);
    assert_eq!(
        got.get("r_a").map(String::as_str),
        Some("world"),
        "{got:?} {stats:?}"
    );
    assert_eq!(
        got.get("r_b").map(String::as_str),
        Some("hello"),
        "{got:?} {stats:?}"
    );
    assert!(!got.contains_key("old"), "{got:?}");
    // The held type change is left alone on both sides.
    assert_eq!(
        got.get("h/u").map(String::as_str),
        Some("unseen"),
        "{got:?}"
    );
    assert_eq!(files(&s).get("h").map(String::as_str), Some("file"));
}
