//! Helpers shared by this crate's integration tests.

use syncengine_backend_local::LocalClient;
use syncengine_core::{Entry, RelPath, StorageClientExt};

/// `s` as a path relative to a root; panics on an invalid one.
pub fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// The listed entry of `path` on `client`, as the engine has it when it plans a copy.
pub async fn listed(client: &LocalClient, path: &str) -> Entry {
    client
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.path.as_str() == path)
        .unwrap_or_else(|| panic!("{path} is not listed"))
}
