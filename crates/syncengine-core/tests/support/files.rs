//! What a `MemoryClient` holds, as sorted (path, content) pairs: shared by the tests that
//! compare sides after runs. Included with `#[path = "support/files.rs"] mod files;`.
// Each test file uses what it needs of these.
#![allow(dead_code)]

use syncengine_core::MemoryClient;

/// Every stored file with its content, the engine's own `.syncengine/` folder included.
pub fn all_files(c: &MemoryClient) -> Vec<(String, String)> {
    let mut v: Vec<_> = c
        .files()
        .iter()
        .map(|(p, b)| {
            (
                p.as_str().to_owned(),
                String::from_utf8_lossy(b).into_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The user's files: everything but the engine's own `.syncengine/` folder.
pub fn user_files(c: &MemoryClient) -> Vec<(String, String)> {
    all_files(c)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(".syncengine"))
        .collect()
}

/// `s` as a path (a test's literal: it must be valid).
pub fn rel(s: &str) -> syncengine_core::RelPath {
    syncengine_core::RelPath::new(s).unwrap()
}

/// Stores `data` at `path`, as a user's write would.
pub async fn put(c: &MemoryClient, path: &str, data: &str) {
    use syncengine_core::StorageClientExt;
    c.put(&rel(path), bytes::Bytes::from(data.to_owned()))
        .await
        .unwrap();
}

/// The content at `path`, if a file is there.
pub fn text(c: &MemoryClient, path: &str) -> Option<String> {
    c.files()
        .get(&rel(path))
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// The state database in `state` (one pair per test).
pub fn state_db(state: &std::path::Path) -> std::path::PathBuf {
    let dbs: Vec<_> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "db"))
        .collect();
    assert_eq!(dbs.len(), 1, "{dbs:?}");
    dbs.into_iter().next().unwrap()
}
