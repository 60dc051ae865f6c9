//! S3 listings of large trees split by prefix and listed concurrently, in key order.
//!
//! One `ListObjectsV2` listing hands out 1000 keys per request, each request waiting for the
//! one before (its continuation token), so a million keys are a thousand round trips in a
//! row. Keys that share a prefix ending in `/` form one contiguous run in key order, so a
//! listing can be cut there and the runs listed at once:
//!
//! 1. the root is listed with `delimiter=/`: its own keys, and its "folders" (common
//!    prefixes) in key order; when it has few folders (one page, fewer than
//!    [`EXPAND_BELOW`]), each folder is listed with the delimiter in turn, one level deeper,
//!    so that a tree with a handful of top-level folders still splits into many parts;
//! 2. each folder left is listed whole (no delimiter, all pages) by a task of its own, up to
//!    `concurrency` at once, each holding at most [`PAGES_AHEAD`] pages it has not handed
//!    on;
//! 3. the parts are handed on in key order: the keys of a folder come where the folder
//!    sorts among its siblings and the parent's own keys, which is exactly where a
//!    sequential listing puts them. A server that lists in byte order therefore gives the
//!    same entries in the same order either way (tests/split_list.rs compares both).
//!
//! Memory stays bounded: at most `concurrency + 1` folders are being listed, each with at
//! most [`PAGES_AHEAD`] + 1 pages in hand. A folder's listing may be empty: SeaweedFS keeps a
//! folder whose objects were deleted, and names it as a common prefix. Folder names are
//! decoded like keys (`encoding-type=url`: S3 encodes `CommonPrefixes` as it encodes keys);
//! tests/split_list.rs checks folder names with `+`, `%`, a space and Unicode on moto and
//! SeaweedFS.

use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use crate::big_copy::BigCopy;
use crate::raw_list::{RawObject, RawPage, generic};

/// A root with fewer folders than this (all in its first page) is split one level deeper.
pub(crate) const EXPAND_BELOW: usize = 64;

/// Pages a folder's task lists ahead of the one being handed on.
const PAGES_AHEAD: usize = 1;

/// A run of the listing, in key order.
enum Part {
    /// Keys listed by a delimiter listing (a folder's own keys).
    Objects(Vec<RawObject>),
    /// A folder (ending with `/`), to be listed whole.
    Folder(String),
}

/// One page of a delimiter listing as parts in key order: its keys and its folders merged
/// (each list is in key order on a server that lists in byte order).
fn parts_of(page: RawPage) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut objects = page.objects.into_iter().peekable();
    let mut run = Vec::new();
    for folder in page.prefixes {
        while let Some(o) = objects.next_if(|o| o.key.as_bytes() < folder.as_bytes()) {
            run.push(o);
        }
        if !run.is_empty() {
            parts.push(Part::Objects(std::mem::take(&mut run)));
        }
        parts.push(Part::Folder(folder));
    }
    run.extend(objects);
    if !run.is_empty() {
        parts.push(Part::Objects(run));
    }
    parts
}

/// The pages of the delimiter listing of `prefix` from `from` on, as parts: `Some(None)`
/// from the first page, `Some(Some(token))` from the page of `token`, `None`: nothing.
fn delimited(
    s3: Arc<BigCopy>,
    prefix: String,
    from: Option<Option<String>>,
) -> BoxStream<'static, object_store::Result<Part>> {
    stream::try_unfold(from, move |from| {
        let s3 = s3.clone();
        let prefix = prefix.clone();
        async move {
            let Some(token) = from else {
                return Ok::<_, object_store::Error>(None);
            };
            let page = s3
                .list_page_delimited(&prefix, token.as_deref(), true)
                .await?;
            let next = page.next.clone().map(Some);
            Ok(Some((
                stream::iter(parts_of(page).into_iter().map(Ok)),
                next,
            )))
        }
    })
    .try_flatten()
    .boxed()
}

/// The parts of the listing of `prefix`: its delimiter listing, each of its folders listed
/// with the delimiter too when it has few (see [`EXPAND_BELOW`]).
fn parts(s3: Arc<BigCopy>, prefix: String) -> BoxStream<'static, object_store::Result<Part>> {
    let top = async move {
        let first = s3.list_page_delimited(&prefix, None, true).await?;
        let expand = first.next.is_none() && first.prefixes.len() < EXPAND_BELOW;
        let next = first.next.clone().map(Some);
        let first_parts = stream::iter(parts_of(first).into_iter().map(Ok));
        let parts: BoxStream<'static, object_store::Result<Part>> = if expand {
            first_parts
                .map_ok(move |part| match part {
                    Part::Folder(f) => delimited(s3.clone(), f, Some(None)),
                    objects => stream::once(async move { Ok(objects) }).boxed(),
                })
                .try_flatten()
                .boxed()
        } else {
            first_parts.chain(delimited(s3, prefix, next)).boxed()
        };
        Ok::<_, object_store::Error>(parts)
    };
    stream::once(top).try_flatten().boxed()
}

/// The whole listing of `folder`, by a task of its own that lists up to [`PAGES_AHEAD`]
/// pages ahead of what is taken; the task ends when the stream is dropped.
fn folder_pages(
    s3: Arc<BigCopy>,
    folder: String,
) -> BoxStream<'static, object_store::Result<Vec<RawObject>>> {
    let (tx, rx) = mpsc::channel(PAGES_AHEAD);
    let name = folder.clone();
    let task = tokio::spawn(async move {
        let mut token: Option<String> = None;
        loop {
            let page = match s3.list_page(&folder, token.as_deref()).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            token = page.next;
            if tx.send(Ok(page.objects)).await.is_err() || token.is_none() {
                return;
            }
        }
    });
    let task = AbortOnDropHandle::new(task);
    stream::unfold(Some((rx, task)), move |state| {
        let name = name.clone();
        async move {
            let (mut rx, task) = state?;
            match rx.recv().await {
                Some(item) => Some((item, Some((rx, task)))),
                // The task ended: normally after its last page; a panic would end the
                // folder early, so it is an error, never a shorter listing.
                None => match task.await {
                    Ok(()) => None,
                    Err(e) => Some((
                        Err(generic(format!("the listing of {name:?} failed: {e}"))),
                        None,
                    )),
                },
            }
        }
    })
    .boxed()
}

/// Every object under `prefix` (which is empty or ends with `/`), in the order a
/// sequential listing gives, in batches; up to `concurrency` folders are listed at once.
pub(crate) fn split_listing(
    s3: Arc<BigCopy>,
    prefix: String,
    concurrency: usize,
) -> BoxStream<'static, object_store::Result<Vec<RawObject>>> {
    parts(s3.clone(), prefix)
        .map_ok(move |part| {
            let s3 = s3.clone();
            async move {
                Ok::<_, object_store::Error>(match part {
                    Part::Objects(objects) => stream::once(async move { Ok(objects) }).boxed(),
                    Part::Folder(folder) => folder_pages(s3, folder),
                })
            }
        })
        .try_buffered(concurrency.max(1))
        .try_flatten()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn object(key: &str) -> RawObject {
        RawObject {
            key: key.into(),
            size: 1,
            last_modified: Utc::now(),
            e_tag: None,
            lossy: false,
        }
    }

    #[test]
    fn a_page_merges_keys_and_folders_in_key_order() {
        let page = RawPage {
            objects: ["a", "a-b", "a.b", "a0", "b", "é"].map(object).to_vec(),
            prefixes: vec!["a/".into(), "b/".into(), "z/".into()],
            next: None,
        };
        let shown: Vec<String> = parts_of(page)
            .into_iter()
            .map(|p| match p {
                Part::Objects(o) => o
                    .iter()
                    .map(|o| o.key.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                Part::Folder(f) => format!("[{f}]"),
            })
            .collect();
        assert_eq!(shown, ["a,a-b,a.b", "[a/]", "a0,b", "[b/]", "[z/]", "é"]);
    }
}
