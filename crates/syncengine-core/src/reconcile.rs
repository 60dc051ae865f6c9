//! The streaming three-way reconciler: merge-joins the two listings and the base by path,
//! classifies each path on each side, asks [`decide`] and builds the
//! [`Plan`].
//!
//! All three inputs arrive in canonical order, so the merge holds one entry per input at a
//! time: memory does not grow with the tree. Only changed paths become actions; only the
//! candidates for rename pairing (paths gone from one side, paths new on one side) are kept
//! until the end of the listing, where they are paired.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use futures::stream::BoxStream;

use crate::capabilities::Capabilities;
use crate::client::{EntryStream, StorageClient, StorageClientExt};
use crate::decide::{Change, Decision, Observation, Policy, Resolution, decide};
use crate::entry::{ContentHash, Entry, truncate_nanos};
use crate::error::SyncError;
use crate::mode::Side;
use crate::path::RelPath;
use crate::plan::{Action, Plan};
use crate::state::{BaseRecord, BaseUpdate, SideRecord};

/// The base as a stream of records in canonical order.
pub type BaseStream = BoxStream<'static, Result<BaseRecord, SyncError>>;

/// Plans one run of a pair.
pub struct Reconciler {
    policy: Policy,
    checksum: bool,
    source: Arc<dyn StorageClient>,
    destination: Arc<dyn StorageClient>,
    source_caps: Capabilities,
    destination_caps: Capabilities,
}

/// A path gone from `side` whose twin on the other side is unchanged: half of a rename.
struct Gone {
    side: Side,
    base: SideRecord,
    other_entry: Entry,
    /// Index of the delete on the other side in `plan.actions`, if the mode deletes it.
    delete_action: Option<usize>,
    matched: bool,
}

/// A path new on `side` and absent on the other: the other half of a rename. The entry is
/// the one in the copy action at `copy_action` (not cloned: on a first run every file is new).
struct Appeared {
    side: Side,
    copy_action: usize,
}

impl Reconciler {
    /// Creates a reconciler for two clients and a policy.
    pub fn new(
        policy: Policy,
        checksum: bool,
        source: Arc<dyn StorageClient>,
        destination: Arc<dyn StorageClient>,
    ) -> Self {
        let source_caps = source.capabilities();
        let destination_caps = destination.capabilities();
        Reconciler {
            policy,
            checksum,
            source,
            destination,
            source_caps,
            destination_caps,
        }
    }

    fn caps(&self, side: Side) -> &Capabilities {
        match side {
            Side::Source => &self.source_caps,
            Side::Destination => &self.destination_caps,
        }
    }

    fn client(&self, side: Side) -> &Arc<dyn StorageClient> {
        match side {
            Side::Source => &self.source,
            Side::Destination => &self.destination,
        }
    }

    /// Merge-joins the listings with the base and returns the plan.
    ///
    /// # Errors
    /// [`SyncError::Listing`] when either listing fails (nothing may be deleted on the basis
    /// of a partial listing), [`SyncError::State`] when reading the base fails.
    pub async fn plan(
        &self,
        mut source: EntryStream,
        mut destination: EntryStream,
        mut base: BaseStream,
    ) -> Result<Plan, SyncError> {
        let mut plan = Plan::default();
        let mut gone: Vec<Gone> = Vec::new();
        let mut appeared: Vec<Appeared> = Vec::new();

        let mut s_head = next_entry(&mut source, Side::Source).await?;
        let mut d_head = next_entry(&mut destination, Side::Destination).await?;
        let mut b_head = base.next().await.transpose()?;

        loop {
            let min: Option<RelPath> = [
                s_head.as_ref().map(|e| &e.path),
                d_head.as_ref().map(|e| &e.path),
                b_head.as_ref().map(|b| &b.path),
            ]
            .into_iter()
            .flatten()
            .min()
            .cloned();
            let Some(path) = min else { break };

            let s = if s_head.as_ref().is_some_and(|e| e.path == path) {
                plan.source_files += 1;
                std::mem::replace(&mut s_head, next_entry(&mut source, Side::Source).await?)
            } else {
                None
            };
            let d = if d_head.as_ref().is_some_and(|e| e.path == path) {
                plan.destination_files += 1;
                std::mem::replace(
                    &mut d_head,
                    next_entry(&mut destination, Side::Destination).await?,
                )
            } else {
                None
            };
            let b = if b_head.as_ref().is_some_and(|b| b.path == path) {
                plan.base_files += 1;
                match b_head.as_ref().and_then(|b| b.settled) {
                    Some(Side::Source) => plan.base_destination_files += 1,
                    Some(Side::Destination) => plan.base_source_files += 1,
                    None => {
                        plan.base_source_files += 1;
                        plan.base_destination_files += 1;
                    }
                }
                std::mem::replace(&mut b_head, base.next().await.transpose()?)
            } else {
                None
            };
            self.visit(path, s, d, b, &mut plan, &mut gone, &mut appeared)
                .await;
        }

        self.pair_renames(&mut plan, gone, appeared).await;
        Ok(plan)
    }

    #[allow(clippy::too_many_arguments)]
    async fn visit(
        &self,
        path: RelPath,
        s: Option<Entry>,
        d: Option<Entry>,
        b: Option<BaseRecord>,
        plan: &mut Plan,
        gone: &mut Vec<Gone>,
        appeared: &mut Vec<Appeared>,
    ) {
        // A side whose absence the base settled is classified as if it had no base: absent
        // (still) or added (a new file at the path).
        let sc = classify(
            s.as_ref(),
            b.as_ref().and_then(|b| b.present(Side::Source)),
            &self.source_caps,
        );
        let dc = classify(
            d.as_ref(),
            b.as_ref().and_then(|b| b.present(Side::Destination)),
            &self.destination_caps,
        );
        let settled = b.as_ref().and_then(|b| b.settled);
        let mut obs = Observation::new(sc, dc);
        obs.settled = settled;
        // Both changed, or a new file met the kept copy of a settled deletion: is it the same?
        let settled_meets_kept = settled.is_some_and(|x| obs.change(x) == Change::Added);
        if let (Some(se), Some(de)) = (&s, &d)
            && ((sc.is_changed() && dc.is_changed()) || settled_meets_kept)
        {
            obs.contents_equal = self.contents_equal(se, de).await;
            if obs.contents_equal != Some(true) {
                // A conflict: compare the files' own times, which some listings lack.
                obs.newer = self.newer_recorded(se, de).await;
            }
        }

        let decision = decide(&self.policy, &obs);
        match decision {
            Decision::Nothing => {
                // Refresh metadata the base holds for unchanged files (e.g. a new inode after
                // an editor's save-by-rename with identical size and mtime), without a write
                // on the common no-change path.
                if let (Some(se), Some(de), Some(base)) = (&s, &d, &b)
                    && sc == Change::Unchanged
                    && dc == Change::Unchanged
                    && !(base.source.describes(se) && base.destination.describes(de))
                {
                    plan.state_updates.push(BaseUpdate::Put(BaseRecord::new(
                        path.clone(),
                        SideRecord::from_entry(se),
                        SideRecord::from_entry(de),
                    )));
                }
                // Half of a backup-mode rename: the kept side moved a file whose backup stays.
                if let Some(base) = &b {
                    self.note_gone(sc, dc, &s, &d, base, None, gone);
                }
            }
            Decision::Record => {
                if let (Some(se), Some(de)) = (&s, &d) {
                    plan.state_updates.push(BaseUpdate::Put(BaseRecord::new(
                        path.clone(),
                        SideRecord::from_entry(se),
                        SideRecord::from_entry(de),
                    )));
                }
            }
            Decision::Settle(absent) => {
                let kept = match absent {
                    Side::Source => &d,
                    Side::Destination => &s,
                };
                if let Some(kept) = kept {
                    let already = b.as_ref().is_some_and(|base| {
                        base.settled == Some(absent) && base.side(absent.other()).describes(kept)
                    });
                    if !already {
                        plan.state_updates
                            .push(BaseUpdate::Put(BaseRecord::settled_absence(
                                path.clone(),
                                absent,
                                SideRecord::from_entry(kept),
                            )));
                    }
                }
                // Half of a backup-mode rename: the kept side moved a file whose backup stays.
                if let Some(base) = &b {
                    self.note_gone(sc, dc, &s, &d, base, None, gone);
                }
            }
            Decision::SetAside(kept) => {
                let (kept_entry, new_entry) = match kept {
                    Side::Source => (s, d),
                    Side::Destination => (d, s),
                };
                if let (Some(kept_entry), Some(new_entry)) = (kept_entry, new_entry) {
                    plan.actions.push(Action::SetAside {
                        kept_side: kept,
                        kept: kept_entry,
                        new: new_entry,
                    });
                }
            }
            Decision::Forget => plan.state_updates.push(BaseUpdate::Remove(path.clone())),
            Decision::Copy(from) => {
                let (entry, target) = match from {
                    Side::Source => (s.clone(), d.clone()),
                    Side::Destination => (d.clone(), s.clone()),
                };
                if let Some(entry) = entry {
                    let index = plan.actions.len();
                    let change = match from {
                        Side::Source => sc,
                        Side::Destination => dc,
                    };
                    let other = match from {
                        Side::Source => dc,
                        Side::Destination => sc,
                    };
                    if change == Change::Added && other == Change::Absent {
                        appeared.push(Appeared {
                            side: from,
                            copy_action: index,
                        });
                    }
                    plan.actions.push(Action::Copy {
                        from,
                        entry,
                        target,
                    });
                }
            }
            Decision::Delete(side) => {
                let entry = match side {
                    Side::Source => s.clone(),
                    Side::Destination => d.clone(),
                };
                if let Some(entry) = entry {
                    let index = plan.actions.len();
                    plan.actions.push(Action::Delete { side, entry });
                    if let Some(base) = &b {
                        self.note_gone(sc, dc, &s, &d, base, Some(index), gone);
                    }
                }
            }
            Decision::Conflict(resolution) => {
                if let (Some(se), Some(de)) = (s, d) {
                    plan.actions.push(Action::Conflict {
                        source: se,
                        destination: de,
                        winner: match resolution {
                            Resolution::Winner(w) => Some(w),
                            Resolution::KeepBoth => None,
                        },
                    });
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn note_gone(
        &self,
        sc: Change,
        dc: Change,
        s: &Option<Entry>,
        d: &Option<Entry>,
        base: &BaseRecord,
        delete_action: Option<usize>,
        gone: &mut Vec<Gone>,
    ) {
        let (side, other_entry, record) = match (sc, dc) {
            (Change::Deleted, Change::Unchanged) => (Side::Source, d, &base.source),
            (Change::Unchanged, Change::Deleted) => (Side::Destination, s, &base.destination),
            _ => return,
        };
        if let Some(other_entry) = other_entry {
            gone.push(Gone {
                side,
                base: record.clone(),
                other_entry: other_entry.clone(),
                delete_action,
                matched: false,
            });
        }
    }

    /// Pairs paths that vanished from a side with paths that appeared on the same side with
    /// the same identity (inode) or content (size + hash/etag), and turns each pair's
    /// delete + copy into one rename on the other side.
    async fn pair_renames(&self, plan: &mut Plan, mut gone: Vec<Gone>, appeared: Vec<Appeared>) {
        if gone.is_empty() || appeared.is_empty() {
            return;
        }
        let mut by_size: HashMap<(Side, u64), Vec<usize>> = HashMap::new();
        for (i, g) in gone.iter().enumerate() {
            by_size.entry((g.side, g.base.size)).or_default().push(i);
        }
        let mut removed = vec![false; plan.actions.len()];
        // Each vanished file's content hash, computed at most once.
        let mut old_hashes: Vec<Option<Option<ContentHash>>> = vec![None; gone.len()];
        let mut renames = Vec::new();
        for a in appeared {
            let Some(Action::Copy { entry, .. }) = plan.actions.get(a.copy_action) else {
                continue;
            };
            let entry = entry.clone();
            let Some(candidates) = by_size.get(&(a.side, entry.size)) else {
                continue;
            };
            let mut computed: Option<Option<ContentHash>> = None;
            let mut found = None;
            for &gi in candidates {
                let g = &gone[gi];
                if g.matched {
                    continue;
                }
                if self.same_identity(&entry, &g.base, a.side) {
                    found = Some(gi);
                    break;
                }
                // Fall back to content: the new file's hash against the old version's, which
                // the base may know, or else the other side's untouched copy of it (hashed
                // there: it was in sync with the vanished file).
                if computed.is_none() {
                    computed = Some(match &entry.hash {
                        Some(h) => Some(h.clone()),
                        None => self.client(a.side).md5(&entry.path).await.ok(),
                    });
                }
                let Some(Some(new_hash)) = &computed else {
                    continue;
                };
                if old_hashes[gi].is_none() {
                    old_hashes[gi] = Some(match (&g.base.hash, &g.other_entry.hash) {
                        (Some(h), _) | (None, Some(h)) => Some(h.clone()),
                        (None, None) => self
                            .client(a.side.other())
                            .md5(&g.other_entry.path)
                            .await
                            .ok(),
                    });
                }
                if old_hashes[gi].as_ref().and_then(|h| h.as_ref()) == Some(new_hash) {
                    found = Some(gi);
                    break;
                }
            }
            let Some(gi) = found else { continue };
            let g = &mut gone[gi];
            g.matched = true;
            removed[a.copy_action] = true;
            if let Some(di) = g.delete_action {
                removed[di] = true;
            }
            renames.push(Action::Rename {
                seen_on: a.side,
                from: g.other_entry.clone(),
                to: entry,
                keep_old: g.delete_action.is_none(),
            });
        }
        if renames.is_empty() {
            return;
        }
        let mut i = 0;
        plan.actions.retain(|_| {
            let keep = !removed[i];
            i += 1;
            keep
        });
        plan.actions.extend(renames);
    }

    fn same_identity(&self, now: &Entry, old: &SideRecord, side: Side) -> bool {
        if now.size != old.size {
            return false;
        }
        if self.caps(side).file_id
            && now.file_id.is_some()
            && now.file_id == old.file_id
            && now.mtime_nanos() == old.mtime_nanos
        {
            return true;
        }
        if let (Some(a), Some(b)) = (&now.hash, &old.hash) {
            return a == b;
        }
        matches!((&now.etag, &old.etag), (Some(a), Some(b)) if a == b)
    }

    /// Whether two present versions hold the same bytes: by size, then hashes, then (unless
    /// `--checksum`) equal mtimes, else by hashing both. `None` when that could not be told.
    async fn contents_equal(&self, s: &Entry, d: &Entry) -> Option<bool> {
        if s.size != d.size {
            return Some(false);
        }
        if s.size == 0 {
            return Some(true);
        }
        if let (Some(a), Some(b)) = (&s.hash, &d.hash)
            && a.kind() == b.kind()
        {
            return Some(a == b);
        }
        if !self.checksum
            && let (Some(a), Some(b)) = (s.mtime_nanos(), d.mtime_nanos())
        {
            let p = self
                .source_caps
                .mtime_precision
                .max(self.destination_caps.mtime_precision);
            if truncate_nanos(a, p) == truncate_nanos(b, p) {
                return Some(true);
            }
        }
        let a = match &s.hash {
            Some(h) => h.clone(),
            None => match self.source.md5(&s.path).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(path = %s.path, error = %e, "could not hash source file");
                    return None;
                }
            },
        };
        let b = match &d.hash {
            Some(h) if h.kind() == a.kind() => h.clone(),
            _ => match self.destination.md5(&d.path).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(path = %d.path, error = %e, "could not hash destination file");
                    return None;
                }
            },
        };
        Some(a == b)
    }
}

async fn next_entry(stream: &mut EntryStream, side: Side) -> Result<Option<Entry>, SyncError> {
    stream
        .next()
        .await
        .transpose()
        .map_err(|source| SyncError::Listing { side, source })
}

/// Classifies one side of one path against the base.
pub fn classify(now: Option<&Entry>, base: Option<&SideRecord>, caps: &Capabilities) -> Change {
    match (now, base) {
        (None, None) => Change::Absent,
        (Some(_), None) => Change::Added,
        (None, Some(_)) => Change::Deleted,
        (Some(e), Some(r)) => {
            if same_version(e, r, caps) {
                Change::Unchanged
            } else {
                Change::Modified
            }
        }
    }
}

/// True when `e` is the version the base recorded: equal hashes (when both are known) win
/// over everything; then the etag; then size and mtime at the backend's precision.
fn same_version(e: &Entry, r: &SideRecord, caps: &Capabilities) -> bool {
    if e.size != r.size {
        return false;
    }
    if let (Some(a), Some(b)) = (&e.hash, &r.hash)
        && a.kind() == b.kind()
    {
        return a == b;
    }
    if let (Some(a), Some(b)) = (&e.etag, &r.etag) {
        return a == b;
    }
    match (e.mtime_nanos(), r.mtime_nanos) {
        (Some(a), Some(b)) => {
            truncate_nanos(a, caps.mtime_precision) == truncate_nanos(b, caps.mtime_precision)
        }
        // Neither etag, hash nor mtime: size is all we can go by.
        _ => true,
    }
}

impl Reconciler {
    /// Which side's version was modified last, by the times recorded with the files.
    async fn newer_recorded(&self, s: &Entry, d: &Entry) -> Option<Side> {
        let st = match self.source.recorded_mtime(s).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(path = %s.path, error = %e, "could not read the source mtime");
                s.mtime
            }
        };
        let dt = match self.destination.recorded_mtime(d).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(path = %d.path, error = %e, "could not read the destination mtime");
                d.mtime
            }
        };
        newer(st, dt)
    }
}

fn newer(s: Option<SystemTime>, d: Option<SystemTime>) -> Option<Side> {
    match (s, d) {
        (Some(a), Some(b)) if a > b => Some(Side::Source),
        (Some(a), Some(b)) if b > a => Some(Side::Destination),
        _ => None,
    }
}
