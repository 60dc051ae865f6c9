//! The streaming three-way reconciler: merge-joins the two listings and the base by path,
//! classifies each path on each side, asks [`decide`] and builds the
//! [`Plan`].
//!
//! All three inputs arrive in canonical order, so the merge holds one entry per input at a
//! time: memory does not grow with the tree. Only changed paths become actions; only the
//! candidates for rename pairing (paths gone from one side, paths new on one side) are kept
//! until the end of the listing, where they are paired.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use futures::stream::BoxStream;

use crate::capabilities::Capabilities;
use crate::client::{EntryStream, StorageClient, StorageClientExt};
use crate::decide::{
    Change, Decision, Observation, Policy, Resolution, TypeChange, TypeDecision, decide,
    decide_type_change, kept_copy_stays,
};
use crate::entry::{ContentHash, Entry, md5_of_etag, truncate_nanos};
use crate::entry_filter::EntryFilter;
use crate::error::SyncError;
use crate::mode::Side;
use crate::path::RelPath;
use crate::plan::{Action, Plan};
use crate::spill::{Spill, SpillVec, spill_error};
use crate::state::{BaseRecord, BaseUpdate, SideRecord};
use crate::unknown::{Coverage, UnknownScopes, strongest};

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
    /// Size and age limits, decided per path (see [`Reconciler::with_filter`]).
    filter: EntryFilter,
    /// Where a long plan's temporary files go (see [`Reconciler::with_spill_dir`]).
    spill_dir: Option<std::path::PathBuf>,
    /// Paths to copy again to a side, in path order (see [`Reconciler::with_rewrites`]).
    rewrites: Vec<(RelPath, Side)>,
}

/// A path gone from `side` whose twin on the other side is unchanged: half of a rename.
#[derive(Clone)]
struct Gone {
    side: Side,
    base: SideRecord,
    other_entry: Entry,
    /// Index of the delete on the other side in `plan.actions`, if the mode deletes it.
    delete_action: Option<usize>,
    matched: bool,
    /// The kept copy of a settled deletion (the other side's absence is settled), which the
    /// mode leaves where it is: `other_entry` is then the record at the old path, not a file
    /// on the other side. Moved, it keeps its settlement under the new name.
    settled: bool,
}

/// A path new on `side` and absent on the other: the other half of a rename. The entry is
/// the one in the copy action at `copy_action` (not cloned: the action may live in the plan's
/// temporary file, and is read back only when a vanished file of its size waits for a pair).
/// None are kept on a first run (an empty base): nothing can have vanished, so no rename.
struct Appeared {
    side: Side,
    size: u64,
    copy_action: usize,
}

/// A file present on one side only, waiting until the merge has passed the folder of the same
/// name, to find out whether the other side holds a folder there (a type change).
struct PendingFile {
    /// The file, as listed on `file_side`.
    entry: Entry,
    file_side: Side,
    /// The decision about the file.
    decision: Decision,
    /// The side whose absence of the file the base records as settled.
    file_settled: Option<Side>,
    /// Index of the file's action in `plan.actions`, if it has one.
    action: Option<usize>,
    /// For a settled deletion ([`Decision::Settle`]): the index of its base update in
    /// `plan.state_updates` and the record it replaces. When the file then turns out to be
    /// a type change moved aside, the settlement is the move's to record once it is done,
    /// not the plan's: the old record is put back in its place, so a run interrupted before
    /// the move leaves the base as it was.
    settle_update: Option<(usize, BaseRecord)>,
    /// Whether each side (`[source, destination]`) holds something below `path/` now: a
    /// listed path, or an unknown one (see [`PendingFile::note_unknown_member`]).
    children_now: [bool; 2],
    /// Whether each side will hold something below `path/` once the plan has run.
    children_after: [bool; 2],
    /// Whether the path being visited lies below `path/`.
    visiting_child: bool,
}

impl PendingFile {
    /// Accounts for a path visited while this file waited: a child when it lies below the
    /// file's path (callers only pass paths that may be, see `may_hold_children_of`).
    fn note(&mut self, present: [bool; 2], decision: Decision) {
        if !self.visiting_child {
            return;
        }
        for side in [Side::Source, Side::Destination] {
            let i = side.index();
            let stays = present[i] && decision != Decision::Delete(side);
            let arrives = decision == Decision::Copy(side.other());
            self.children_now[i] |= present[i];
            self.children_after[i] |= stays || arrives;
        }
    }

    /// Accounts for an unknown path inside the folder of this file's name on `side` (below
    /// `path/`, or `path` itself with unknown members; see `crate::unknown`). Nothing below
    /// it may be listed, yet the side holds a folder there, now and after the run: an unknown
    /// path is never deleted. Without this, a folder whose only members are unknown (a
    /// symlink, an unreadable sub-folder, undecodable names) looked absent, and the file was
    /// copied onto it: an error on every run.
    fn note_unknown_member(&mut self, side: Side) {
        self.children_now[side.index()] = true;
        self.children_after[side.index()] = true;
    }
}

/// Tells the waiting files about the unknown paths `unknown` accepted since the last call
/// (while the listing's head moved on): each one inside a waiting file's folder name is a
/// member of that folder. Free while nothing new is unknown.
fn note_fresh_unknown(unknown: &mut UnknownScopes, pending: &mut [PendingFile]) {
    if !unknown.has_fresh() {
        return;
    }
    for waiting in pending.iter_mut() {
        if unknown.fresh_inside(&waiting.entry.path) {
            waiting.note_unknown_member(unknown.side());
        }
    }
    unknown.clear_fresh();
}

/// Which sides (`[source, destination]`) a base record counts a file on: both, or only the
/// kept side of a settled deletion.
fn base_sides(b: Option<&BaseRecord>) -> [bool; 2] {
    match b.and_then(|b| b.settled) {
        Some(Side::Source) => [false, true],
        Some(Side::Destination) => [true, false],
        None => [true, true],
    }
}

/// True when `path` lies below the folder `name/`.
fn is_below(name: &RelPath, path: &RelPath) -> bool {
    let (n, p) = (name.as_str().as_bytes(), path.as_str().as_bytes());
    p.len() > n.len() + 1 && p.starts_with(n) && p[n.len()] == b'/'
}

/// True when `path` sorts between `name` and the end of `name/`'s subtree: it starts with
/// `name` followed by a byte up to `/` (`name-1`, `name.txt`, `name/x`). Such paths come
/// before the merge has seen all of `name/`.
fn may_hold_children_of(name: &RelPath, path: &RelPath) -> bool {
    let (n, p) = (name.as_str().as_bytes(), path.as_str().as_bytes());
    p.len() > n.len() && p.starts_with(n) && p[n.len()] <= b'/'
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
            filter: EntryFilter::default(),
            spill_dir: None,
            rewrites: Vec::new(),
        }
    }

    /// Puts the temporary files of a long plan ([`SpillVec`]) in `dir` (the engine passes
    /// its state directory: on disk, where the system's temporary folder may be memory).
    /// Without it, or where `dir` refuses them, they go to the system's temporary folder.
    pub fn with_spill_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.spill_dir = Some(dir.into());
        self
    }

    /// An empty list whose temporary file goes where this reconciler's do.
    fn spill_vec<T: Spill>(&self) -> SpillVec<T> {
        match &self.spill_dir {
            Some(dir) => SpillVec::new().in_dir(dir),
            None => SpillVec::new(),
        }
    }

    /// Leaves alone every path whose file fails `filter` on either side (see
    /// [`crate::entry_filter`]): no action, no base update, counted in [`Plan::skipped`].
    /// Such a file is never half of a rename.
    pub fn with_filter(mut self, filter: EntryFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Copies each `(path, side)` of `rewrites` to `side` again where the plan would leave
    /// the two sides' files as they are (neither changed since the base, or both hold the
    /// same version): the copy an interrupted run made there was followed by a failed flush,
    /// so the file may hold what the disk lost while it reads back whole from the page cache
    /// (see [`crate::exec::recover_intents`]). Where a side changed the plan stands as it is
    /// (an edit wins as any edit does), and nothing is written to a side the mode does not
    /// write to. Counted in [`Plan::copied_again`]. Such a copy is never the old name of a
    /// rename either: moved to the new name, it would carry what the disk may have lost.
    ///
    /// `rewrites` must be in path order, as [`crate::exec::Recovered::suspects`] are.
    pub fn with_rewrites(mut self, rewrites: Vec<(RelPath, Side)>) -> Self {
        self.rewrites = rewrites;
        self
    }

    /// The side `path` is to be copied to again, if any (see [`Reconciler::with_rewrites`]).
    fn rewrite_of(&self, path: &RelPath) -> Option<Side> {
        let at = self.rewrites.binary_search_by(|(p, _)| p.cmp(path)).ok()?;
        Some(self.rewrites[at].1)
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
        source: EntryStream,
        destination: EntryStream,
        mut base: BaseStream,
    ) -> Result<Plan, SyncError> {
        let mut plan = Plan {
            actions: self.spill_vec(),
            state_updates: self.spill_vec(),
            ..Plan::default()
        };
        // Kept in a temporary file like the plan: a run that finds a tenth of a million files
        // deleted has a hundred thousand of them. Read back only when new paths of their sizes
        // appeared.
        let mut gone: SpillVec<Gone> = self.spill_vec();
        let mut appeared: Vec<Appeared> = Vec::new();
        let mut pending: Vec<PendingFile> = Vec::new();
        let mut held: Vec<usize> = Vec::new();

        let mut source = self.with_checksums(source, Side::Source);
        let mut destination = self.with_checksums(destination, Side::Destination);
        // What each listing could not see (see `crate::unknown`).
        let mut s_unknown = UnknownScopes::new(Side::Source);
        let mut d_unknown = UnknownScopes::new(Side::Destination);
        let mut s_head = next_entry(&mut source, &mut s_unknown).await?;
        let mut d_head = next_entry(&mut destination, &mut d_unknown).await?;
        let mut b_head = base.next().await.transpose()?;
        // Without a base nothing vanished, so no new path can be half of a rename: none is
        // kept as a candidate, and a first run's memory does not grow with the tree.
        let no_base = b_head.is_none();

        loop {
            // Between paths no index into the plan's last actions is held for editing: the
            // list may write them out here.
            plan.actions.relieve().map_err(spill_error)?;
            plan.state_updates.relieve().map_err(spill_error)?;
            gone.relieve().map_err(spill_error)?;
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
                std::mem::replace(&mut s_head, next_entry(&mut source, &mut s_unknown).await?)
            } else {
                None
            };
            let d = if d_head.as_ref().is_some_and(|e| e.path == path) {
                plan.destination_files += 1;
                std::mem::replace(
                    &mut d_head,
                    next_entry(&mut destination, &mut d_unknown).await?,
                )
            } else {
                None
            };
            let b = if b_head.as_ref().is_some_and(|b| b.path == path) {
                plan.base_files += 1;
                let [on_source, on_destination] = base_sides(b_head.as_ref());
                plan.base_source_files += u64::from(on_source);
                plan.base_destination_files += u64::from(on_destination);
                std::mem::replace(&mut b_head, base.next().await.transpose()?)
            } else {
                None
            };
            // Unknown paths read while the heads moved on may be members of a waiting file's
            // folder name, which no listed path below it shows (and the walk may pass them
            // before the file is settled): taken note of at once.
            note_fresh_unknown(&mut s_unknown, &mut pending);
            note_fresh_unknown(&mut d_unknown, &mut pending);
            // Type changes: a file `x` waits until the merge has passed `x/`, which sorts after
            // `x-1`, `x.txt`… (so only a chain of such names ever waits).
            self.resolve_passed(Some(&path), &mut pending, &mut plan, &mut held);
            // Unknown paths (see `crate::unknown`): a guard around `visit`, so the decision
            // logic stays unaware of them. A fully covered path is left alone; a file waiting
            // for its folder's contents still learns that something is there.
            let s_cover = s_unknown.coverage(&path);
            let d_cover = d_unknown.coverage(&path);
            let cover = strongest(s_cover, d_cover);
            if cover == Some(Coverage::Full) {
                let present = [
                    s.is_some() || s_cover == Some(Coverage::Full),
                    d.is_some() || d_cover == Some(Coverage::Full),
                ];
                for waiting in &mut pending {
                    waiting.visiting_child = is_below(&waiting.entry.path, &path);
                    waiting.note(present, Decision::Nothing);
                }
                continue;
            }
            let present = [s.is_some(), d.is_some()];
            // A file too large or too young on either side: left alone on both, base kept,
            // like a path the listing could not see (a file waiting for its folder still
            // learns that something is there).
            if !self.filter.admits_path([s.as_ref(), d.as_ref()]) {
                plan.skipped += 1;
                // Not part of the run, as an excluded path is not: the safety rules' counts
                // leave it out, so filtered files cannot dilute the max-delete percentage.
                plan.source_files -= u64::from(s.is_some());
                plan.destination_files -= u64::from(d.is_some());
                if b.is_some() {
                    let [on_source, on_destination] = base_sides(b.as_ref());
                    plan.base_files -= 1;
                    plan.base_source_files -= u64::from(on_source);
                    plan.base_destination_files -= u64::from(on_destination);
                }
                for waiting in &mut pending {
                    waiting.visiting_child = is_below(&waiting.entry.path, &path);
                    waiting.note(present, Decision::Nothing);
                }
                continue;
            }
            let one_sided = match (&s, &d) {
                (Some(e), None) => Some((Side::Source, e.clone())),
                (None, Some(e)) => Some((Side::Destination, e.clone())),
                _ => None,
            };
            let file_settled = b.as_ref().and_then(|b| b.settled);
            for waiting in &mut pending {
                waiting.visiting_child = is_below(&waiting.entry.path, &path);
            }
            let before = plan.actions.next_index();
            let marks = (before, plan.state_updates.next_index(), gone.next_index());
            let old_base = if one_sided.is_some() { b.clone() } else { None };
            let mut decision = self
                .visit(path, s, d, b, &mut plan, &mut gone, &mut appeared)
                .await;
            if cover == Some(Coverage::NoDelete) {
                spare_deletes(marks, &mut plan, &mut gone, &mut appeared).map_err(spill_error)?;
                if matches!(decision, Decision::Delete(_)) {
                    decision = Decision::Nothing;
                }
            }
            if no_base {
                appeared.clear();
            }
            let action = (plan.actions.next_index() > before).then_some(before);
            for waiting in &mut pending {
                waiting.note(present, decision);
            }
            if let Some((file_side, entry)) = one_sided.filter(|_| cover.is_none()) {
                let settle_update = match (decision, old_base) {
                    (Decision::Settle(_), Some(old))
                        if plan.state_updates.next_index() == marks.1 + 1 =>
                    {
                        Some((marks.1, old))
                    }
                    _ => None,
                };
                let mut waiting = PendingFile {
                    entry,
                    file_side,
                    decision,
                    file_settled,
                    action,
                    settle_update,
                    children_now: [false; 2],
                    children_after: [false; 2],
                    visiting_child: false,
                };
                // Unknown members of a folder of this name read before the file came up
                // (another side's head moved past them): they sort after the file, so the
                // walk has not dropped them yet; those read later come as fresh ones.
                for unknown in [&s_unknown, &d_unknown] {
                    if unknown.has_inside(&waiting.entry.path) {
                        waiting.note_unknown_member(unknown.side());
                    }
                }
                pending.push(waiting);
            }
        }
        if plan.copied_again > 0 {
            plan.warnings.push(format!(
                "{} files an earlier run copied before its flush failed are copied again: \
                 the disk may have lost them while they still read back whole. The versions \
                 they replace go to the trash (or backup dir) as any replaced file does, and \
                 may be damaged: check one before you restore it",
                plan.copied_again
            ));
        }
        plan.source_unknown = s_unknown.count;
        plan.destination_unknown = d_unknown.count;
        let named = (s_unknown.messages.len() + d_unknown.messages.len()) as u64;
        plan.warnings.append(&mut s_unknown.messages);
        plan.warnings.append(&mut d_unknown.messages);
        let total = s_unknown.count + d_unknown.count;
        if total > named {
            plan.warnings.push(format!(
                "…and {} more paths that could not be listed (left alone)",
                total - named
            ));
        }
        self.resolve_passed(None, &mut pending, &mut plan, &mut held);

        self.pair_renames(&mut plan, gone, appeared, &held)
            .await
            .map_err(spill_error)?;
        Ok(plan)
    }

    /// Settles every waiting file whose folder name the merge has passed (all of them when
    /// `next` is `None`, the end of the listings).
    ///
    /// The indices of actions the type changes take back ([`TypeDecision::Hold`]) go to
    /// `held`: they are dropped once the plan is complete, as indices into `plan.actions`
    /// must stay valid until then.
    fn resolve_passed(
        &self,
        next: Option<&RelPath>,
        pending: &mut Vec<PendingFile>,
        plan: &mut Plan,
        held: &mut Vec<usize>,
    ) {
        while let Some(top) = pending.last() {
            if next.is_some_and(|p| may_hold_children_of(&top.entry.path, p)) {
                break;
            }
            let Some(waiting) = pending.pop() else { break };
            self.resolve_type_change(waiting, plan, held);
        }
    }

    fn resolve_type_change(&self, waiting: PendingFile, plan: &mut Plan, held: &mut Vec<usize>) {
        let f = waiting.file_side;
        let folder_side = f.other();
        // Only a clean type change: the file on one side, a folder (and no file) on the other.
        if !waiting.children_now[folder_side.index()] || waiting.children_now[f.index()] {
            return;
        }
        let change = TypeChange {
            file_side: f,
            file_decision: waiting.decision,
            file_settled: waiting.file_settled,
            folder_after: waiting.children_after,
        };
        match decide_type_change(&self.policy, &change) {
            TypeDecision::Proceed => {}
            TypeDecision::Hold => {
                held.extend(waiting.action);
                let w = format!(
                    "{:?}: a file on the {f} and a folder on the {folder_side} holding what its \
                     listing could not see; a mirror cannot replace that folder, so both are \
                     left alone this run",
                    waiting.entry.path.as_str()
                );
                tracing::warn!(path = %waiting.entry.path, "type change held: the folder has unknown members");
                plan.warnings.push(w);
            }
            TypeDecision::MoveAside { share, settled } => {
                if let Some((i, old)) = waiting.settle_update {
                    match plan.state_updates.get_mut(i) {
                        Some(slot) => {
                            if matches!(slot, BaseUpdate::Put(r) if r.path == waiting.entry.path) {
                                *slot = BaseUpdate::Put(old);
                            }
                        }
                        // Written out meanwhile: the index is the one update the file's
                        // visit made (`settle_update`), its settlement.
                        None => plan.state_updates.replace(i, BaseUpdate::Put(old)),
                    }
                }
                let aside = Action::MoveAside {
                    side: f,
                    entry: waiting.entry,
                    share,
                    settled,
                };
                match waiting.action {
                    Some(i) => plan.actions.replace(i, aside),
                    None => {
                        plan.actions.push(aside);
                    }
                }
            }
        }
    }

    /// Decides one path and adds what it needs to the plan (at most one action); returns the
    /// decision.
    #[allow(clippy::too_many_arguments)]
    async fn visit(
        &self,
        path: RelPath,
        mut s: Option<Entry>,
        mut d: Option<Entry>,
        b: Option<BaseRecord>,
        plan: &mut Plan,
        gone: &mut SpillVec<Gone>,
        appeared: &mut Vec<Appeared>,
    ) -> Decision {
        // A side whose absence the base settled is classified as if it had no base: absent
        // (still) or added (a new file at the path).
        let sc = classify(
            s.as_ref(),
            self.recorded(b.as_ref(), Side::Source).as_deref(),
            &self.source_caps,
        );
        let dc = classify(
            d.as_ref(),
            self.recorded(b.as_ref(), Side::Destination).as_deref(),
            &self.destination_caps,
        );
        let settled = b.as_ref().and_then(|b| b.settled);
        let mut obs = Observation::new(sc, dc);
        obs.settled = settled;
        // Both changed, or a new file met the kept copy of a settled deletion: is it the same?
        let settled_meets_kept = settled.is_some_and(|x| obs.change(x) == Change::Added);
        if let (Some(se), Some(de)) = (&mut s, &mut d)
            && ((sc.is_changed() && dc.is_changed()) || settled_meets_kept)
        {
            obs.contents_equal = self.contents_equal(se, de).await;
            if obs.contents_equal != Some(true) {
                // A conflict: compare the files' own times, which some listings lack.
                obs.newer = self.newer_recorded(se, de).await;
            }
        }

        let mut decision = decide(&self.policy, &obs);
        if let Some(written) = self.rewrite_of(&path)
            && s.is_some()
            && d.is_some()
            && matches!(decision, Decision::Nothing | Decision::Record)
            && self.policy.mode.copies_to(written)
        {
            decision = Decision::Copy(written.other());
            plan.copied_again += 1;
        }
        self.add_to_plan(decision, path, s, d, b, sc, dc, plan, gone, appeared);
        decision
    }

    #[allow(clippy::too_many_arguments)]
    fn add_to_plan(
        &self,
        decision: Decision,
        path: RelPath,
        s: Option<Entry>,
        d: Option<Entry>,
        b: Option<BaseRecord>,
        sc: Change,
        dc: Change,
        plan: &mut Plan,
        gone: &mut SpillVec<Gone>,
        appeared: &mut Vec<Appeared>,
    ) {
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
            Decision::Forget => {
                plan.state_updates.push(BaseUpdate::Remove(path.clone()));
                // The kept copy of a settled deletion left its path on the kept side: it may
                // have moved there (a tidied backup drive), and a mode that leaves such copies
                // where they are must not take it for a new file under its new name.
                if let Some(base) = &b
                    && let Some(absent) = base.settled
                    && s.is_none()
                    && d.is_none()
                    && kept_copy_stays(self.policy.mode, absent)
                {
                    let record = base.side(absent.other()).clone();
                    gone.push(Gone {
                        side: absent.other(),
                        other_entry: record.to_entry(path.clone()),
                        base: record,
                        delete_action: None,
                        matched: false,
                        settled: true,
                    });
                }
            }
            Decision::Copy(from) => {
                let (entry, target) = match from {
                    Side::Source => (s.clone(), d.clone()),
                    Side::Destination => (d.clone(), s.clone()),
                };
                if let Some(entry) = entry {
                    let index = plan.actions.next_index();
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
                            size: entry.size,
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
                    let index = plan.actions.next_index();
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
        gone: &mut SpillVec<Gone>,
    ) {
        let (side, other_entry, record) = match (sc, dc) {
            (Change::Deleted, Change::Unchanged) => (Side::Source, d, &base.source),
            (Change::Unchanged, Change::Deleted) => (Side::Destination, s, &base.destination),
            _ => return,
        };
        // A copy a failed flush covered is not moved to the new name: it may be what the
        // disk lost. It is deleted, and the new name copied.
        if self.rewrite_of(&base.path) == Some(side.other()) {
            return;
        }
        if let Some(other_entry) = other_entry {
            gone.push(Gone {
                side,
                base: record.clone(),
                other_entry: other_entry.clone(),
                delete_action,
                matched: false,
                settled: false,
            });
        }
    }

    /// Pairs paths that vanished from a side with paths that appeared on the same side, and
    /// turns each pair's delete + copy into one rename on the other side.
    ///
    /// # Behavior
    /// A pair needs proof that the new path holds the vanished file's bytes: equal content
    /// hashes, or the same file id *and* birth time with unchanged size and mtime (a renamed
    /// file keeps both; a new file that reused a freed inode has a new birth time). An equal
    /// inode without birth times, or an equal ETag that is not a content hash (Apache derives
    /// its ETags from size and mtime), only nominates: then content decides, hashed where
    /// that is cheap (see [`REMOTE_HASH_LIMIT`]). Without proof the delete + copy stay, which
    /// is safe: the deleted version goes to the trash.
    ///
    /// Also drops the actions at the indices `held` (type changes a mirror leaves alone),
    /// which take no part in pairing.
    async fn pair_renames(
        &self,
        plan: &mut Plan,
        gone: SpillVec<Gone>,
        mut appeared: Vec<Appeared>,
        held: &[usize],
    ) -> std::io::Result<()> {
        for &i in held {
            plan.actions.remove(i);
        }
        if gone.is_empty() || appeared.is_empty() {
            return Ok(());
        }
        appeared.retain(|a| !held.contains(&a.copy_action));
        // Only vanished files of a new path's size can have moved there.
        let sizes: std::collections::HashSet<(Side, u64)> =
            appeared.iter().map(|a| (a.side, a.size)).collect();
        let mut candidates = Vec::new();
        for g in gone.into_items() {
            let g = g?;
            if sizes.contains(&(g.side, g.base.size)) {
                candidates.push(g);
            }
        }
        let mut gone = candidates;
        let mut by_size: HashMap<(Side, u64), Vec<usize>> = HashMap::new();
        for (i, g) in gone.iter().enumerate() {
            by_size.entry((g.side, g.base.size)).or_default().push(i);
        }
        // Only new paths of a vanished file's size can be its new name: their entries are
        // read back from the plan in one pass (in index order, as `appeared` is).
        appeared.retain(|a| by_size.contains_key(&(a.side, a.size)));
        let mut entries: HashMap<usize, Entry> = HashMap::new();
        if !appeared.is_empty() {
            // By the indices the actions were pushed with: removed ones (held type changes)
            // shift nothing.
            let mut wanted = appeared.iter().map(|a| a.copy_action).peekable();
            for item in plan.actions.iter_indexed() {
                let (i, action) = item?;
                while wanted.next_if(|&w| w < i).is_some() {}
                let Some(&next) = wanted.peek() else { break };
                if i != next {
                    continue;
                }
                wanted.next();
                if let Action::Copy { entry, .. } = &*action {
                    entries.insert(i, entry.clone());
                }
            }
        }
        // Each vanished file's content hash, looked up or computed at most once.
        let mut old_hashes: Vec<Option<Option<ContentHash>>> = vec![None; gone.len()];
        let mut renames = Vec::new();
        for a in appeared {
            let Some(entry) = entries.remove(&a.copy_action) else {
                continue;
            };
            let Some(candidates) = by_size.get(&(a.side, entry.size)) else {
                continue;
            };
            let mut new_hash: Option<Option<ContentHash>> = None;
            let mut found = None;
            for &gi in candidates {
                let g = &gone[gi];
                // A file and a path below its own name (`x` and `x/y`) are a type change,
                // never a rename: no disk can move one into the other.
                if g.matched
                    || is_below(&g.other_entry.path, &entry.path)
                    || is_below(&entry.path, &g.other_entry.path)
                {
                    continue;
                }
                match self.same_identity(&entry, &g.base, a.side) {
                    Identity::Same => {
                        found = Some(gi);
                        break;
                    }
                    Identity::Different => continue,
                    Identity::Unknown => {}
                }
                if new_hash.is_none() {
                    new_hash = Some(self.cheap_hash(a.side, &entry).await);
                }
                let Some(Some(new)) = &new_hash else {
                    // No cheap hash of the new file: only metadata can confirm a candidate.
                    continue;
                };
                if old_hashes[gi].is_none() {
                    // A settled kept copy has no copy on the other side to hash.
                    old_hashes[gi] = Some(if g.settled {
                        record_content_hash(&g.base, self.caps(a.side))
                    } else {
                        self.old_hash(g, a.side).await
                    });
                }
                if old_hashes[gi].as_ref().and_then(|h| h.as_ref()) == Some(new) {
                    found = Some(gi);
                    break;
                }
            }
            let Some(gi) = found else { continue };
            let g = &mut gone[gi];
            g.matched = true;
            plan.actions.remove(a.copy_action);
            if g.settled {
                // Nothing to rename on the other side, which deleted it for good: the new name
                // inherits the settlement, and the copy back is dropped.
                plan.state_updates
                    .push(BaseUpdate::Put(BaseRecord::settled_absence(
                        entry.path.clone(),
                        g.side.other(),
                        SideRecord::from_entry(&entry),
                    )));
                continue;
            }
            if let Some(di) = g.delete_action {
                plan.actions.remove(di);
            }
            renames.push(Action::Rename {
                seen_on: a.side,
                from: g.other_entry.clone(),
                to: entry,
                keep_old: g.delete_action.is_none(),
            });
        }
        for rename in renames {
            plan.actions.push(rename);
        }
        Ok(())
    }

    /// What metadata alone tells about whether `now` (a new path on `side`) is the file the
    /// base recorded as `old` (a path that vanished from `side`).
    fn same_identity(&self, now: &Entry, old: &SideRecord, side: Side) -> Identity {
        let caps = self.caps(side);
        if now.size != old.size {
            return Identity::Different;
        }
        if let (Some(a), Some(b)) = (now.content_hash(caps), record_content_hash(old, caps))
            && a.kind() == b.kind()
        {
            return if a == b {
                Identity::Same
            } else {
                Identity::Different
            };
        }
        // The same inode with the same birth time is the same file, and an unchanged mtime
        // says it was not written since. Without birth times the inode may have been freed
        // and reused (ext4 hands a freed number to the next new file), so it only nominates.
        // A new file could share a birth time only if it was born within one clock tick of
        // the old one, across the whole previous run that listed the old one; backends whose
        // birth times repeat more easily than that do not claim the capability.
        //
        // Under `--checksum` a file the listing hashed is judged by its content even so: the
        // base had no hash to compare (a run without `--checksum` recorded it), and an edit
        // that kept size and mtime while the file moved is what `--checksum` is asked to see.
        // `old_hash` finds the old content's hash on the other side's untouched copy.
        let listed_hash = self.checksum && now.hash.is_some();
        if !listed_hash
            && caps.file_id
            && caps.birth_time
            && now.file_id.is_some()
            && now.file_id == old.file_id
            && let (Some(a), Some(b)) = (now.birth_nanos(), old.birth_nanos)
            && a == b
            && let (Some(a), Some(b)) = (now.mtime_nanos(), old.mtime_nanos)
            && truncate_nanos(a, caps.mtime_precision) == truncate_nanos(b, caps.mtime_precision)
        {
            return Identity::Same;
        }
        // Everything else — an equal inode, an equal ETag that is not a digest — leaves it
        // to the content.
        Identity::Unknown
    }

    /// The content hash of `entry` on `side`: the one the listing gave, else computed where
    /// that is cheap. `None` when neither.
    async fn cheap_hash(&self, side: Side, entry: &Entry) -> Option<ContentHash> {
        if let Some(h) = entry.content_hash(self.caps(side)) {
            return Some(h);
        }
        if !self.caps(side).local_reads && entry.size > REMOTE_HASH_LIMIT {
            return None;
        }
        match self.client(side).md5_of(entry).await {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(%side, path = %entry.path, error = %e, "could not hash a rename candidate");
                None
            }
        }
    }

    /// The hash of the version that vanished from `side`: recorded in the base, else that of
    /// the other side's untouched copy (in sync with it), listed or cheaply computed.
    async fn old_hash(&self, g: &Gone, side: Side) -> Option<ContentHash> {
        if let Some(h) = record_content_hash(&g.base, self.caps(side)) {
            return Some(h);
        }
        self.cheap_hash(side.other(), &g.other_entry).await
    }

    /// Whether two present versions hold the same bytes: by size, then by content hashes —
    /// listed ones where both sides have them, else computed. Equal size and mtime are not
    /// enough: two edits of one file can agree on both and still differ, and calling them
    /// equal would drop one of them. Only paths both sides changed get here, so the cost is
    /// bounded by the number of double edits. `None` when the hashes could not be had (the
    /// caller then treats the pair as different: a conflict, whose loser is kept).
    ///
    /// A hash computed here is kept in the entry: the copy's intent then names the content
    /// (so a crash cannot make the next run take the loser, of the same size and mtime, for
    /// the winner's landed copy), and the base records it.
    async fn contents_equal(&self, s: &mut Entry, d: &mut Entry) -> Option<bool> {
        if s.size != d.size {
            return Some(false);
        }
        if s.size == 0 {
            return Some(true);
        }
        let listed_s = s.content_hash(&self.source_caps);
        let listed_d = d.content_hash(&self.destination_caps);
        if let (Some(a), Some(b)) = (&listed_s, &listed_d)
            && a.kind() == b.kind()
        {
            return Some(a == b);
        }
        let a = match listed_s {
            Some(h) => h,
            None => match self.source.md5_of(s).await {
                Ok(h) => {
                    s.hash = Some(h.clone());
                    h
                }
                Err(e) => {
                    tracing::warn!(path = %s.path, error = %e, "could not hash source file");
                    return None;
                }
            },
        };
        let b = match listed_d {
            Some(h) if h.kind() == a.kind() => h,
            _ => match self.destination.md5_of(d).await {
                Ok(h) => {
                    if d.hash.is_none() {
                        d.hash = Some(h.clone());
                    }
                    h
                }
                Err(e) => {
                    tracing::warn!(path = %d.path, error = %e, "could not hash destination file");
                    return None;
                }
            },
        };
        Some(a == b)
    }

    /// Under `--checksum`, gives every listed file of a side whose reads are local a content
    /// hash (computed when the listing has none), so an edit that keeps size and mtime shows
    /// against the hash recorded in the base. Other sides keep the hashes they list (S3's
    /// MD5 ETags): downloading every remote file on every run is not what `--checksum` asks
    /// for (rclone does not either).
    fn with_checksums(&self, listing: EntryStream, side: Side) -> EntryStream {
        let caps = self.caps(side).clone();
        if !self.checksum || !caps.local_reads {
            return listing;
        }
        let client = self.client(side).clone();
        let filter = self.filter.clone();
        listing
            .map(move |item| {
                let client = client.clone();
                let caps = caps.clone();
                // A file the filter leaves alone is not read just to be hashed.
                let wanted = item.as_ref().is_ok_and(|e| filter.admits(e));
                async move {
                    let mut entry = item?;
                    if wanted && entry.content_hash(&caps).is_none() {
                        match client.md5_of(&entry).await {
                            Ok(h) => entry.hash = Some(h),
                            // A file that vanished or cannot be read since it was listed
                            // keeps to size and mtime; its copy, if any, reports the error.
                            Err(e) => tracing::warn!(
                                %side, path = %entry.path, error = %e, "could not hash for --checksum"
                            ),
                        }
                    }
                    Ok(entry)
                }
            })
            .buffered(CHECKSUM_HASHES_IN_FLIGHT)
            .boxed()
    }
}

/// The content hash a base record holds for its side: the recorded hash, else the recorded
/// ETag where the backend's ETags are MD5s.
fn record_content_hash(r: &SideRecord, caps: &Capabilities) -> Option<ContentHash> {
    match (&r.hash, &r.etag) {
        (Some(h), _) => Some(h.clone()),
        (None, Some(tag)) if caps.etag_is_md5 => md5_of_etag(tag),
        _ => None,
    }
}

/// Files up to this size are hashed over the network to confirm a rename (64 MiB: a second
/// or so on a fast link). Bigger files are hashed on demand only where reads are local
/// ([`Capabilities::local_reads`]); elsewhere an unconfirmed rename is planned as delete +
/// add, which is safe because the deleted version goes to the trash.
pub const REMOTE_HASH_LIMIT: u64 = 64 * 1024 * 1024;

/// Files a `--checksum` listing hashes at once.
const CHECKSUM_HASHES_IN_FLIGHT: usize = 4;

/// What metadata tells about a rename candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Identity {
    /// Proven the same, unchanged file: a rename.
    Same,
    /// Proven another file, or the file changed: no rename.
    Different,
    /// Not told by metadata (an inode or an ETag nominates at most): content decides.
    Unknown,
}

/// The next entry of a listing; unlisted items on the way go into `unknown`.
async fn next_entry(
    stream: &mut EntryStream,
    unknown: &mut UnknownScopes,
) -> Result<Option<Entry>, SyncError> {
    while let Some(item) = stream.next().await {
        match unknown.accept(item) {
            Ok(Some(entry)) => return Ok(Some(entry)),
            Ok(None) => {}
            Err(source) => {
                return Err(SyncError::Listing {
                    side: unknown.side(),
                    source,
                });
            }
        }
    }
    Ok(None)
}

/// Takes back what one visit planned below a folder with unknown members: its deletes, its
/// base removals, and its part in rename pairing (see `crate::unknown`).
fn spare_deletes(
    (actions, updates, gone_mark): (usize, usize, usize),
    plan: &mut Plan,
    gone: &mut SpillVec<Gone>,
    appeared: &mut Vec<Appeared>,
) -> std::io::Result<()> {
    let tail: Vec<Action> = plan.actions.split_off_memory(actions)?;
    let mut new_index = Vec::with_capacity(tail.len());
    for action in tail {
        if action.is_delete() {
            new_index.push(None);
        } else {
            new_index.push(Some(plan.actions.next_index()));
            plan.actions.push(action);
        }
    }
    for update in plan.state_updates.split_off_memory(updates)? {
        if !matches!(update, BaseUpdate::Remove(_)) {
            plan.state_updates.push(update);
        }
    }
    drop(gone.split_off_memory(gone_mark)?);
    appeared.retain_mut(|a| {
        if a.copy_action < actions {
            return true;
        }
        match new_index.get(a.copy_action - actions).copied().flatten() {
            Some(i) => {
                a.copy_action = i;
                true
            }
            None => false,
        }
    });
    Ok(())
}

impl Spill for Gone {
    fn encode(&self, out: &mut Vec<u8>) {
        Side::encode(&self.side, out);
        self.base.encode(out);
        self.other_entry.encode(out);
        self.delete_action.map(|i| i as u64).encode(out);
        out.push(u8::from(self.matched) | (u8::from(self.settled) << 1));
    }

    fn decode(input: &mut &[u8]) -> std::io::Result<Self> {
        let side = Side::decode(input)?;
        let base = SideRecord::decode(input)?;
        let other_entry = Entry::decode(input)?;
        let delete_action = Option::<u64>::decode(input)?
            .map(usize::try_from)
            .transpose()
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
        let (flags, rest) = input
            .split_first()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
        *input = rest;
        Ok(Gone {
            side,
            base,
            other_entry,
            delete_action,
            matched: flags & 1 != 0,
            settled: flags & 2 != 0,
        })
    }
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
    /// What the base records of `side`, if present there. Under `--checksum` a side
    /// recorded without a hash (by a run without `--checksum`, on a backend that lists none)
    /// takes the other side's recorded hash: a record describes both sides holding the same
    /// content, so that hash was this side's too, and an edit that kept size and mtime is
    /// seen against it.
    fn recorded<'a>(&self, b: Option<&'a BaseRecord>, side: Side) -> Option<Cow<'a, SideRecord>> {
        let b = b?;
        let own = b.present(side)?;
        if self.checksum
            && own.hash.is_none()
            && let Some(hash) = b.present(side.other()).and_then(|o| o.hash.clone())
        {
            return Some(Cow::Owned(SideRecord {
                hash: Some(hash),
                ..own.clone()
            }));
        }
        Some(Cow::Borrowed(own))
    }

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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use async_trait::async_trait;
    use bytes::Bytes;
    use futures::stream;

    use super::*;
    use crate::client::{
        ByteStream, DeleteOptions, ReadOptions, StorageClientExt, TransferOptions, WriteOptions,
    };
    use crate::error::Error;
    use crate::memory::MemoryClient;
    use crate::mode::SyncMode;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn t(nanos: i64) -> SystemTime {
        crate::entry::nanos_to_system_time(nanos)
    }

    const MTIME: i64 = 1_600_000_000_000_000_000;

    /// A listed file with size, mtime, and optional inode/birth time; no hash, no etag.
    fn file(path: &str, size: u64, ino: Option<u64>, birth: Option<i64>) -> Entry {
        let mut e = Entry::new(p(path), size).with_mtime(t(MTIME));
        e.file_id = ino;
        e.birth_time = birth.map(t);
        e
    }

    fn base(e: &Entry) -> BaseRecord {
        BaseRecord {
            path: e.path.clone(),
            source: SideRecord::from_entry(e),
            destination: SideRecord::from_entry(e),
            settled: None,
        }
    }

    fn listing(entries: Vec<Entry>) -> EntryStream {
        stream::iter(entries.into_iter().map(Ok)).boxed()
    }

    fn base_stream(records: Vec<BaseRecord>) -> BaseStream {
        stream::iter(records.into_iter().map(Ok)).boxed()
    }

    /// A memory client holding `files`; the listings the tests feed the reconciler are their
    /// own, so the client only serves the reads a hash needs.
    async fn holding(files: &[(&str, &str)]) -> Arc<dyn StorageClient> {
        let c = MemoryClient::new();
        for (path, body) in files {
            c.put(&p(path), Bytes::from(body.to_string()))
                .await
                .unwrap();
        }
        Arc::new(c)
    }

    fn reconciler(
        checksum: bool,
        source: Arc<dyn StorageClient>,
        destination: Arc<dyn StorageClient>,
    ) -> Reconciler {
        Reconciler::new(Policy::new(SyncMode::TwoWay), checksum, source, destination)
    }

    fn renames(plan: &Plan) -> usize {
        plan.actions
            .to_vec()
            .unwrap()
            .iter()
            .filter(|a| matches!(a, Action::Rename { .. }))
            .count()
    }

    /// Sets up "a was in sync on both sides; on the source a is gone and b appeared", with
    /// the given listed `old` and `new` source entries, and returns the plan.
    async fn plan_move(
        old: Entry,
        new: Entry,
        source: Arc<dyn StorageClient>,
        destination: Arc<dyn StorageClient>,
    ) -> Plan {
        let mut kept = old.clone();
        kept.file_id = None;
        kept.birth_time = None;
        let mut record = base(&old);
        record.destination = SideRecord::from_entry(&kept);
        reconciler(false, source, destination)
            .plan(
                listing(vec![new]),
                listing(vec![kept]),
                base_stream(vec![record]),
            )
            .await
            .unwrap()
    }

    /// A new file that reused the vanished file's inode, with the same size and mtime but a
    /// new birth time and other content, is not a rename: the old code carried the old
    /// content to the new name.
    #[tokio::test]
    async fn a_reused_inode_with_a_new_birth_time_is_not_a_rename() {
        let plan = plan_move(
            file("a", 3, Some(7), Some(100)),
            file("b", 3, Some(7), Some(200)),
            holding(&[("b", "new")]).await,
            holding(&[("a", "old")]).await,
        )
        .await;
        assert_eq!(renames(&plan), 0, "{:?}", plan.actions);
        assert_eq!(
            plan.actions.len(),
            2,
            "copy b, delete a: {:?}",
            plan.actions
        );
    }

    /// Without birth times an inode only nominates: content decides either way.
    #[tokio::test]
    async fn an_inode_without_birth_times_only_nominates() {
        let plan = plan_move(
            file("a", 3, Some(7), None),
            file("b", 3, Some(7), None),
            holding(&[("b", "new")]).await,
            holding(&[("a", "old")]).await,
        )
        .await;
        assert_eq!(renames(&plan), 0, "{:?}", plan.actions);
        let plan = plan_move(
            file("a", 3, Some(7), None),
            file("b", 3, Some(7), None),
            holding(&[("b", "old")]).await,
            holding(&[("a", "old")]).await,
        )
        .await;
        assert_eq!(renames(&plan), 1, "same bytes: a rename {:?}", plan.actions);
    }

    /// Inode and birth time together confirm a rename without reading a byte: neither
    /// client holds the files, so any hash attempt would fail and no rename would be found.
    #[tokio::test]
    async fn inode_and_birth_time_confirm_a_rename_without_reading() {
        let plan = plan_move(
            file("a", 3, Some(7), Some(100)),
            file("b", 3, Some(7), Some(100)),
            holding(&[]).await,
            holding(&[]).await,
        )
        .await;
        assert_eq!(renames(&plan), 1, "{:?}", plan.actions);
        assert_eq!(plan.actions.len(), 1);
        // A renamed file written since (mtime moved) is not a pure rename.
        let mut edited = file("b", 3, Some(7), Some(100));
        edited.mtime = Some(t(MTIME + 1));
        let plan = plan_move(
            file("a", 3, Some(7), Some(100)),
            edited,
            holding(&[]).await,
            holding(&[]).await,
        )
        .await;
        assert_eq!(renames(&plan), 0, "{:?}", plan.actions);
    }

    /// An equal ETag that is not a content hash (Apache: size and mtime) only nominates.
    #[tokio::test]
    async fn an_etag_that_is_not_a_digest_only_nominates() {
        let tag = "\"3-5f5e1000\"";
        let old = file("a", 3, None, None).with_etag(tag);
        let new = file("b", 3, None, None).with_etag(tag);
        let plan = plan_move(
            old.clone(),
            new.clone(),
            holding(&[("b", "new")]).await,
            holding(&[("a", "old")]).await,
        )
        .await;
        assert_eq!(renames(&plan), 0, "{:?}", plan.actions);
        let plan = plan_move(
            old,
            new,
            holding(&[("b", "old")]).await,
            holding(&[("a", "old")]).await,
        )
        .await;
        assert_eq!(renames(&plan), 1, "{:?}", plan.actions);
    }

    /// A [`MemoryClient`] whose reads pretend to cross a network (`local_reads: false`);
    /// counts the reads.
    #[derive(Debug)]
    struct Remote(MemoryClient, std::sync::atomic::AtomicU64);

    #[async_trait]
    impl StorageClient for Remote {
        fn backend(&self) -> &'static str {
            "remote-memory"
        }
        fn capabilities(&self) -> Capabilities {
            let mut caps = self.0.capabilities();
            caps.local_reads = false;
            caps
        }
        fn list(&self, prefix: Option<&RelPath>) -> EntryStream {
            self.0.list(prefix)
        }
        async fn stat(&self, path: &RelPath) -> crate::Result<Entry> {
            self.0.stat(path).await
        }
        async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> crate::Result<ByteStream> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.0.read_opts(path, opts).await
        }
        async fn write_opts(
            &self,
            path: &RelPath,
            body: ByteStream,
            opts: WriteOptions,
        ) -> crate::Result<Entry> {
            self.0.write_opts(path, body, opts).await
        }
        async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> crate::Result<()> {
            self.0.delete_opts(path, opts).await
        }
        async fn copy_opts(
            &self,
            from: &RelPath,
            to: &RelPath,
            opts: TransferOptions,
        ) -> crate::Result<Entry> {
            self.0.copy_opts(from, to, opts).await
        }
        async fn rename_opts(
            &self,
            from: &RelPath,
            to: &RelPath,
            opts: TransferOptions,
        ) -> crate::Result<Entry> {
            self.0.rename_opts(from, to, opts).await
        }
    }

    impl fmt::Display for Remote {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Remote({})", self.0)
        }
    }

    /// Over the network, files above [`REMOTE_HASH_LIMIT`] are not read to hash them for a
    /// rename: delete + add instead. At or below it they are read (and a read whose length is
    /// not the listed size gives no hash, so no rename).
    #[tokio::test]
    async fn remote_files_are_hashed_for_renames_only_below_the_bound() {
        let remote = |files: &'static [(&'static str, &'static str)]| async move {
            let c = MemoryClient::new();
            for (path, body) in files {
                c.put(&p(path), Bytes::from(*body)).await.unwrap();
            }
            Arc::new(Remote(c, Default::default()))
        };
        // The listed sizes are what the bound looks at; the stored bytes are shorter, so a
        // read is made at or below the bound but cannot confirm.
        for (size, reads) in [(REMOTE_HASH_LIMIT, true), (REMOTE_HASH_LIMIT + 1, false)] {
            let (source, destination) = (
                remote(&[("b", "same")]).await,
                remote(&[("a", "same")]).await,
            );
            let plan = plan_move(
                file("a", size, None, None),
                file("b", size, None, None),
                source.clone(),
                destination.clone(),
            )
            .await;
            assert_eq!(renames(&plan), 0, "size {size}: {:?}", plan.actions);
            let read = source.1.load(std::sync::atomic::Ordering::SeqCst)
                + destination.1.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(read > 0, reads, "size {size}: {read} reads");
        }
        // Listed sizes that are the stored ones: the hashes confirm the rename.
        let plan = plan_move(
            file("a", 4, None, None),
            file("b", 4, None, None),
            remote(&[("b", "same")]).await,
            remote(&[("a", "same")]).await,
        )
        .await;
        assert_eq!(renames(&plan), 1, "{:?}", plan.actions);
    }

    /// Both sides changed to the same size and mtime but different bytes: a conflict, found
    /// by hashing (the old code called them equal and recorded one side's version for both).
    #[tokio::test]
    async fn double_edits_with_equal_size_and_mtime_are_hashed() {
        let old = file("a", 3, None, None);
        let mut record = base(&old);
        record.source.mtime_nanos = Some(MTIME - 5);
        record.destination.mtime_nanos = Some(MTIME - 5);
        let plan = |s: &'static str, d: &'static str, record: BaseRecord| async move {
            reconciler(
                false,
                holding(&[("a", s)]).await,
                holding(&[("a", d)]).await,
            )
            .plan(
                listing(vec![file("a", 3, None, None)]),
                listing(vec![file("a", 3, None, None)]),
                base_stream(vec![record]),
            )
            .await
            .unwrap()
        };
        let differ = plan("one", "two", record.clone()).await;
        assert!(
            matches!(
                differ.actions.to_vec().unwrap().as_slice(),
                [Action::Conflict { .. }]
            ),
            "{:?}",
            differ.actions
        );
        let same = plan("one", "one", record).await;
        assert!(same.actions.is_empty(), "{:?}", same.actions);
        assert_eq!(same.state_updates.len(), 1, "recorded as synced");
    }

    /// `--checksum` sees an edit that kept size and mtime, against the hash in the base;
    /// without it the listing (no hash on this side) cannot, and nothing is read.
    #[tokio::test]
    async fn checksum_sees_edits_that_keep_size_and_mtime() {
        let old = file("a", 3, None, None);
        let mut record = base(&old);
        let md5 = |s: &str| ContentHash::Md5(md5::Md5::digest(s.as_bytes()).into());
        record.source.hash = Some(md5("old"));
        let plan = |checksum: bool, record: BaseRecord| {
            let old = old.clone();
            async move {
                reconciler(
                    checksum,
                    holding(&[("a", "new")]).await,
                    holding(&[("a", "old")]).await,
                )
                .plan(
                    listing(vec![old.clone()]),
                    listing(vec![old]),
                    base_stream(vec![record]),
                )
                .await
                .unwrap()
            }
        };
        let with = plan(true, record.clone()).await;
        assert!(
            matches!(
                with.actions.to_vec().unwrap().as_slice(),
                [Action::Copy {
                    from: Side::Source,
                    ..
                }]
            ),
            "{:?}",
            with.actions
        );
        let without = plan(false, record).await;
        assert!(without.actions.is_empty(), "{:?}", without.actions);
    }

    /// A file `x` on the source meets a destination folder `x` whose members all have names
    /// that cannot be read (`x` reported with `contents_only`, sorting as `x/`): a type
    /// change, whether the unknown item is read before the file comes up (`a` taken) or
    /// while it waits (`x.txt` taken). The folder keeps the path; the file is moved aside.
    #[tokio::test]
    async fn a_folder_with_only_unreadable_names_is_a_type_change() {
        let unreadable = || {
            Err(Error::unlisted_contents(
                "t",
                "x",
                "names that cannot be read",
            ))
        };
        let before: Vec<Result<Entry, Error>> = vec![
            Ok(file("a", 1, None, None)),
            unreadable(),
            Ok(file("z", 1, None, None)),
        ];
        let after: Vec<Result<Entry, Error>> = vec![Ok(file("x.txt", 1, None, None)), unreadable()];
        for destination in [before, after] {
            let plan = reconciler(false, holding(&[]).await, holding(&[]).await)
                .plan(
                    listing(vec![file("x", 3, None, None)]),
                    stream::iter(destination).boxed(),
                    base_stream(vec![]),
                )
                .await
                .unwrap();
            assert_eq!(plan.destination_unknown, 1);
            let all = plan.actions.to_vec().unwrap();
            let x: Vec<&Action> = all.iter().filter(|a| a.path().as_str() == "x").collect();
            assert!(
                matches!(
                    x.as_slice(),
                    [Action::MoveAside {
                        side: Side::Source,
                        share: true,
                        ..
                    }]
                ),
                "{:?}",
                plan.actions
            );
        }
    }

    #[test]
    fn birth_times_are_read_back_as_given() {
        let e = file("a", 1, Some(1), Some(5));
        assert_eq!(e.birth_nanos(), Some(5));
        assert_eq!(SideRecord::from_entry(&e).to_entry(p("a")), e);
        assert_eq!(
            t(MTIME).duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_nanos(MTIME as u64)
        );
    }

    use md5::Digest;
    use std::fmt;
}
