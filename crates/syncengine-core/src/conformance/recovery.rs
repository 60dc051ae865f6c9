//! What a user could get back after a fault: the helpers that backends' fault tests share
//! (a remote root's trash, every content anywhere), so that "no version lost" is checked the
//! same way on every backend.
//!
//! ```no_run
//! # async fn example(remote: &dyn syncengine_core::StorageClient, local: &std::path::Path) {
//! use syncengine_core::conformance::recovery::recoverable_contents;
//!
//! // … sync a local folder with `remote`, inject a fault, edit, run again …
//! let everywhere = recoverable_contents(remote, local).await;
//! assert!(everywhere.iter().any(|c| c == "version 1"), "version 1 was lost");
//! # }
//! ```

use std::path::Path;

use crate::client::{StorageClient, StorageClientExt};
use crate::path::RelPath;

/// The text at `path`, if it can be read.
pub async fn text_at(client: &dyn StorageClient, path: &RelPath) -> Option<String> {
    client
        .read_to_bytes(path)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The root's trash (`.syncengine/trash/`), as (path, text); empty when it cannot be listed.
pub async fn trash_contents(client: &dyn StorageClient) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(trash) = RelPath::new(".syncengine/trash") else {
        return out;
    };
    let Ok(listed) = client.list_all(Some(&trash)).await else {
        return out;
    };
    for e in listed {
        if let Some(text) = text_at(client, &e.path).await {
            out.push((e.path.to_string(), text));
        }
    }
    out
}

/// The text of every file below a local folder (the engine's folders included).
pub fn local_contents(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    out
}

/// Every content the user could get back: the remote's files and trash, the local files.
pub async fn recoverable_contents(remote: &dyn StorageClient, local_root: &Path) -> Vec<String> {
    let mut out: Vec<String> = trash_contents(remote)
        .await
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    for e in remote.list_all(None).await.unwrap_or_default() {
        if let Some(text) = text_at(remote, &e.path).await {
            out.push(text);
        }
    }
    out.extend(local_contents(local_root));
    out
}
