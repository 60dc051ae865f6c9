//! Removing the folders that a delete or a move leaves empty, on backends with real folders
//! ([`Capabilities::real_directories`](crate::Capabilities::real_directories)).
//!
//! Every such backend walks up the same way: from the folder that held the path, bottom up,
//! each folder removed only if it is empty, the walk stopping at the first one that is not
//! removed (not empty, or an error), never the root itself. How one folder is removed "only
//! if empty" is the backend's own (an `rmdir`, an ETag-conditioned `DELETE`, …); the walk
//! lives here once.
//!
//! ```
//! use syncengine_core::RelPath;
//! use syncengine_core::prune::prune_empty_parents;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let path = RelPath::new("a/b/c/file.txt").unwrap();
//! let mut asked = Vec::new();
//! prune_empty_parents(&path, |dir| {
//!     let removed = dir.as_str() != "a"; // "a" still holds something
//!     asked.push(dir.into_string());
//!     async move { Ok::<_, std::convert::Infallible>(removed) }
//! })
//! .await
//! .unwrap();
//! assert_eq!(asked, ["a/b/c", "a/b", "a"]);
//! # });
//! ```

use std::future::Future;

use crate::RelPath;

/// Asks `remove_if_empty` to remove each folder above `path`, bottom up, and stops at the
/// first one it did not remove (`Ok(false)`: not empty, gone wrong quietly) or at an error,
/// which it returns. The root (the client's root folder) is never asked about.
///
/// # Errors
/// The first error `remove_if_empty` returns.
pub async fn prune_empty_parents<F, Fut, E>(path: &RelPath, mut remove_if_empty: F) -> Result<(), E>
where
    F: FnMut(RelPath) -> Fut,
    Fut: Future<Output = Result<bool, E>>,
{
    let mut dir = path.parent();
    while let Some(d) = dir {
        let next = d.parent();
        if !remove_if_empty(d).await? {
            break;
        }
        dir = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_top_level_path_asks_about_nothing_and_errors_stop_the_walk() {
        let mut asked = 0;
        prune_empty_parents(&RelPath::new("file").unwrap(), |_| {
            asked += 1;
            async { Ok::<_, ()>(true) }
        })
        .await
        .unwrap();
        assert_eq!(asked, 0, "the root is never pruned");

        let mut asked = Vec::new();
        let got = prune_empty_parents(&RelPath::new("x/y/z/f").unwrap(), |d| {
            asked.push(d.into_string());
            let n = asked.len();
            async move { if n == 2 { Err("refused") } else { Ok(true) } }
        })
        .await;
        assert_eq!(got, Err("refused"));
        assert_eq!(
            asked,
            ["x/y/z", "x/y"],
            "nothing above the failed folder is asked"
        );
    }
}
