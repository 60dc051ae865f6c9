//! Name collisions: siblings that one side of the pair cannot keep apart.
//!
//! A side whose file system folds names ([`Capabilities::case_insensitive`],
//! [`Capabilities::normalization_insensitive`], as declared or as the probe of
//! [`crate::folding`] found) stores `Readme` and `readme`, or NFC and NFD
//! `café`, as one file. Copied there, such a pair lands on one file; on the next run one of
//! them seems to have vanished and would be deleted on the other side. So when either side
//! folds names, both listings pass through [`find_collisions`] (a pre-pass) and
//! [`mark_collisions`]: every name that collides with a sibling becomes an
//! [`Error::Unlisted`] item, an *unknown* path. The engine then
//! neither copies, deletes nor forgets anything at or below it on either side, reports it,
//! and the run ends with an error status until the user renames one of them.
//!
//! The pre-pass walks both listings merged, so it also finds a name on one side that folds
//! to an *unknown* name on the other (`A` against an `a` the listing could not see, a
//! symlink say): on a folding side the two are one name, and a copy of `A` would land on the
//! unknown `a` (see [`find_collisions`]). Unknown coverage (`crate::unknown`) compares
//! paths byte-wise and cannot see this, as `A` sorts before `a`.
//!
//! Memory: in canonical (byte-wise) order the members of one folder are contiguous but its
//! direct children are not (`a/b/c` sorts between `a/b` and `a/c`), so the pre-pass keeps one
//! map of folded names per folder on the current path (both sides' names in one map), and
//! drops a folder's map once the walk has left it: at most one folder's names per level. A
//! collision is only known at its second name, after the first was passed, hence a pre-pass
//! rather than buffering a whole subtree.
//! The engine runs none of this when neither side folds names (local Linux ↔ local Linux).
//!
//! [`Capabilities::case_insensitive`]: crate::Capabilities::case_insensitive
//! [`Capabilities::normalization_insensitive`]: crate::Capabilities::normalization_insensitive

use std::collections::{BTreeMap, HashMap, VecDeque};

use futures::StreamExt;
use unicode_normalization::UnicodeNormalization;

use crate::client::EntryStream;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::mode::Side;
use crate::path::RelPath;
use crate::plan::{Action, Plan};

/// The `backend` named in the unknown items raised here: they come from the engine.
const BACKEND: &str = "syncengine";

/// The key two names share when a folding side stores them as one file: lower case, then
/// Unicode NFC. NFC is what folding file systems compare (APFS and HFS+ treat NFC and NFD
/// alike); `unicode-normalization` is the maintained implementation of the Unicode
/// algorithm, which the standard library lacks. Folding both case and normalisation whatever
/// the side folds is conservative: at worst a pair is reported that one side could keep.
pub fn fold_name(name: &str) -> String {
    name.to_lowercase().nfc().collect()
}

/// Paths that collide with a sibling, each with the reason to report; sorted canonically.
pub type Collisions = BTreeMap<String, String>;

/// What the walk of one folder saw of one folded name, per side (source, destination).
#[derive(Default)]
struct Spellings {
    /// The name as first spelt on each side.
    first: [Option<Box<str>>; 2],
    /// A spelling on each side with an unknown path at or below it.
    unknown: [Option<Box<str>>; 2],
}

/// One listing item of the pre-pass: the side, the path, and whether it is unknown.
type Item = (Side, String, bool);

/// The next path of a listing with whether it is unknown, or `None` at its end. A listing
/// error other than an unknown item ends it early: the real listing meets the same error and
/// fails the run.
async fn next_path(listing: &mut EntryStream) -> Option<(String, bool)> {
    match listing.next().await? {
        Ok(entry) => Some((entry.path.into_string(), false)),
        Err(Error::Unlisted { path, .. }) => Some((path, true)),
        Err(_) => None,
    }
}

/// Reads both listings (source, destination) in one merged walk and returns each side's
/// colliding paths. `side_note` completes the reasons, e.g. "on the destination, which
/// folds letter case".
///
/// # Behavior
/// - Two names of one folder on one side that fold alike collide (`Readme`, `readme`).
/// - A name on one side collides with a name of the same folder on the other side that folds
///   alike but is spelt otherwise when the other one is unknown, or has an unknown path below
///   it: `A` (or `A/x`) against an `a` the listing could not see (a symlink, an unreadable
///   folder, a folder with such members). On a side that folds, `A` *is* that unknown `a`: a
///   copy of `A` would be written through it (a symlink may lead outside the root) or over a
///   file nobody saw, and a side that lacks `A` only seems to have deleted it. The other
///   way round (the unknown name on the plain side), the folding side's `A` could not be
///   held apart from it once copied there. Only the listed name is marked (the unknown one
///   is unknown already), so nothing at or below it is copied or deleted on either side.
///   Unknown coverage itself (`crate::unknown`) compares paths byte-wise: in canonical
///   order `A` sorts before `a`, so the walk of the reconciler may meet `A` before the
///   unknown `a`, which is why the pre-pass finds these.
///
/// Memory: one map of folded names per folder on the current path, shared by both sides, as
/// described in the [module docs](self).
pub async fn find_collisions(listings: [EntryStream; 2], side_note: &str) -> [Collisions; 2] {
    let [mut source, mut destination] = listings;
    // One level per folder on the current path: (folder prefix, folded name → spellings).
    let mut stack: Vec<(String, HashMap<String, Spellings>)> = Vec::new();
    let mut found = [Collisions::new(), Collisions::new()];
    let mut heads = [
        next_path(&mut source).await,
        next_path(&mut destination).await,
    ];
    loop {
        // The side whose head sorts first (the source on a tie).
        let i = match (&heads[0], &heads[1]) {
            (None, None) => break,
            (Some(_), None) => 0,
            (None, Some(_)) => 1,
            (Some((s, _)), Some((d, _))) => usize::from(d.as_bytes() < s.as_bytes()),
        };
        let next = match i {
            0 => next_path(&mut source).await,
            _ => next_path(&mut destination).await,
        };
        let Some((path, unknown)) = std::mem::replace(&mut heads[i], next) else {
            break;
        };
        let side = [Side::Source, Side::Destination][i];
        visit_names(&mut stack, &mut found, (side, path, unknown), side_note);
    }
    found
}

/// Takes in the names of one path of the merged walk (see [`find_collisions`]).
fn visit_names(
    stack: &mut Vec<(String, HashMap<String, Spellings>)>,
    found: &mut [Collisions; 2],
    (side, path, unknown): Item,
    side_note: &str,
) {
    if path.is_empty() {
        return;
    }
    let (x, y) = match side {
        Side::Source => (0, 1),
        Side::Destination => (1, 0),
    };
    let other = side.other();
    let mut prefix = String::new();
    for (level, name) in path.split('/').enumerate() {
        if stack.len() > level && stack[level].0 != prefix {
            stack.truncate(level);
        }
        if stack.len() == level {
            stack.push((prefix.clone(), HashMap::new()));
        }
        let seen = stack[level].1.entry(fold_name(name)).or_default();
        // Two spellings on one side.
        match seen.first[x].as_deref() {
            None => seen.first[x] = Some(name.into()),
            Some(first) if first != name => {
                let a = format!("{prefix}{first}");
                let b = format!("{prefix}{name}");
                found[x].entry(a.clone()).or_insert_with(|| {
                    format!("name collides with `{b}` {side_note}; rename one of them")
                });
                found[x].entry(b).or_insert_with(|| {
                    format!("name collides with `{a}` {side_note}; rename one of them")
                });
            }
            Some(_) => {}
        }
        // Every name on the way to an unknown path has an unknown path at or below it.
        if unknown && seen.unknown[x].is_none() {
            seen.unknown[x] = Some(name.into());
        }
        let crossing = |found: &mut Collisions, mine: String, theirs: String, holder: Side| {
            found.entry(mine).or_insert_with(|| {
                format!(
                    "name collides with `{theirs}`, which the {holder} could not list (or not \
                     all of it), {side_note}; rename one of them"
                )
            });
        };
        // This name against an unknown spelling on the other side.
        if let Some(theirs) = seen.unknown[y].as_deref().filter(|t| *t != name) {
            crossing(
                &mut found[x],
                format!("{prefix}{name}"),
                format!("{prefix}{theirs}"),
                other,
            );
        }
        // This unknown name against the other side's spelling (a second spelling there
        // collides on that side already).
        if unknown && let Some(theirs) = seen.first[y].as_deref().filter(|t| *t != name) {
            crossing(
                &mut found[y],
                format!("{prefix}{theirs}"),
                format!("{prefix}{name}"),
                side,
            );
        }
        prefix.push_str(name);
        prefix.push('/');
    }
}

fn is_at_or_below(path: &str, top: &str) -> bool {
    path == top
        || (path.len() > top.len() && path.starts_with(top) && path.as_bytes()[top.len()] == b'/')
}

/// Passes a canonically ordered listing through, replacing each colliding path (and
/// everything below it) by one [`Error::Unlisted`] item at the place where it sorts.
pub fn mark_collisions(listing: EntryStream, collisions: Collisions) -> EntryStream {
    if collisions.is_empty() {
        return listing;
    }
    struct State {
        input: EntryStream,
        pending: VecDeque<(String, String)>,
        active: Option<String>,
        out: VecDeque<Result<Entry>>,
        done: bool,
    }
    impl State {
        /// Emits the pending unknown paths that sort at or before `upto` (all with `None`).
        fn release(&mut self, upto: Option<&str>) {
            while let Some((path, _)) = self.pending.front() {
                if upto.is_some_and(|p| path.as_bytes() > p.as_bytes()) {
                    break;
                }
                let Some((path, reason)) = self.pending.pop_front() else {
                    break;
                };
                if self
                    .active
                    .as_deref()
                    .is_some_and(|a| is_at_or_below(&path, a))
                {
                    continue;
                }
                self.out
                    .push_back(Err(Error::unlisted(BACKEND, path.clone(), reason)));
                self.active = Some(path);
            }
        }
    }
    let state = State {
        input: listing,
        pending: collisions.into_iter().collect(),
        active: None,
        out: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.out.pop_front() {
                return Some((item, st));
            }
            if st.done {
                return None;
            }
            match st.input.next().await {
                None => {
                    st.release(None);
                    st.done = true;
                }
                Some(item) => {
                    let path = match &item {
                        Ok(entry) => Some(entry.path.as_str().to_string()),
                        Err(Error::Unlisted { path, .. }) => Some(path.clone()),
                        Err(_) => None,
                    };
                    if let Some(path) = path {
                        st.release(Some(&path));
                        if st
                            .active
                            .as_deref()
                            .is_some_and(|a| is_at_or_below(&path, a))
                        {
                            continue;
                        }
                    }
                    st.out.push_back(item);
                }
            }
        }
    })
    .boxed()
}

/// Most crossing collisions named one by one in a run's warnings; the rest are counted.
const MAX_NAMED: usize = 20;

/// Drops from `plan` the copies that would put two names a folding side cannot keep apart
/// onto it, one from each side: `a` new on the source and `A` new on a destination that folds
/// case (or `a` and `A/x`: a file and a folder of one folded name). Neither listing alone
/// shows the collision, so [`find_collisions`] cannot; the copy onto the folding side would
/// fail on the other name (or, on a server that does not refuse it, replace it), and the
/// copy the other way would leave the plain side holding both. Each such name is instead an
/// unknown path on its side for this run (counted in the plan's `*_unknown`, named in a
/// warning): nothing at or below it is copied, and the run ends with an error status until
/// the user renames one. `folds` says per side (source, destination) whether it folds names;
/// `side_note` completes the reason as for [`find_collisions`].
///
/// Only additions are compared (copies with no target, and the new names of renames): a name
/// both sides hold is the same name on both, and one side's listing shows any collision it
/// has. A rename whose new name collides leaves that name alone and becomes the delete of
/// its old name (a backup mode's rename, which keeps the old name, is dropped).
///
/// # Errors
/// When the plan's spilled actions cannot be read back or written again.
pub fn drop_crossing_collisions(
    plan: &mut Plan,
    folds: [bool; 2],
    side_note: &str,
) -> std::io::Result<()> {
    for (i, folding) in [Side::Source, Side::Destination].into_iter().enumerate() {
        if !folds[i] {
            continue;
        }
        // Folded name → the names, spelled as listed, new on the folding side (any level:
        // `A/x` brings the folder `A`): its additions and the new names of its renames.
        let mut theirs: HashMap<String, Vec<String>> = HashMap::new();
        for action in plan.actions.iter() {
            let action = action?;
            let Some((from_folding, path)) = new_name(&action) else {
                continue;
            };
            if from_folding != folding {
                continue;
            }
            for prefix in prefixes(path.as_str()) {
                let spelled = theirs.entry(fold_name(prefix)).or_default();
                if !spelled.iter().any(|s| s == prefix) {
                    spelled.push(prefix.to_string());
                }
            }
        }
        if theirs.is_empty() {
            continue;
        }
        // Pairs (name on the plain side, name on the folding side) that collide.
        let mut clashes: BTreeMap<String, String> = BTreeMap::new();
        for action in plan.actions.iter() {
            let action = action?;
            let Some((from, path)) = new_name(&action) else {
                continue;
            };
            if from == folding {
                continue;
            }
            for prefix in prefixes(path.as_str()) {
                if let Some(other) = theirs
                    .get(&fold_name(prefix))
                    .and_then(|names| names.iter().find(|n| n.as_str() != prefix))
                {
                    clashes.insert(prefix.to_string(), other.clone());
                    break;
                }
            }
        }
        if clashes.is_empty() {
            continue;
        }
        let plain = folding.other();
        let on_folding: std::collections::BTreeSet<String> = clashes.values().cloned().collect();
        let hidden = |from: Side, p: &str| {
            if from == folding {
                on_folding.iter().any(|top| is_at_or_below(p, top))
            } else {
                clashes.keys().any(|top| is_at_or_below(p, top))
            }
        };
        // Rare (only when names cross): the list is rebuilt rather than edited in place.
        plan.actions.rewrite(|a| match a {
            Action::Copy {
                from,
                ref entry,
                target: None,
            } if hidden(from, entry.path.as_str()) => Vec::new(),
            // The new name is left alone like an addition; the old name goes as the
            // renaming side deleted it (a backup mode's rename keeps it anyway).
            Action::Rename {
                seen_on,
                from,
                to,
                keep_old,
            } if hidden(seen_on, to.path.as_str()) => {
                if keep_old {
                    Vec::new()
                } else {
                    vec![Action::Delete {
                        side: seen_on.other(),
                        entry: from,
                    }]
                }
            }
            other => vec![other],
        })?;
        let (plain_count, folding_count) = (clashes.len() as u64, on_folding.len() as u64);
        match plain {
            Side::Source => {
                plan.source_unknown += plain_count;
                plan.destination_unknown += folding_count;
            }
            Side::Destination => {
                plan.destination_unknown += plain_count;
                plan.source_unknown += folding_count;
            }
        }
        for (mine, other) in clashes.iter().take(MAX_NAMED) {
            tracing::warn!(path = %mine, other = %other, "name collision across sides");
            plan.warnings.push(format!(
                "{mine:?} on the {plain} and {other:?} on the {folding} are one name {side_note}; \
                 neither was copied (nothing at or below them) this run; rename one of them"
            ));
        }
        if clashes.len() > MAX_NAMED {
            plan.warnings.push(format!(
                "{} more names on the {plain} collide with names on the {folding}",
                clashes.len() - MAX_NAMED
            ));
        }
    }
    Ok(())
}

/// The name an action brings new to the side it writes, with the side it comes from: an
/// addition's path, or a rename's new name.
fn new_name(action: &Action) -> Option<(Side, &RelPath)> {
    match action {
        Action::Copy {
            from,
            entry,
            target: None,
        } => Some((*from, &entry.path)),
        Action::Rename { seen_on, to, .. } => Some((*seen_on, &to.path)),
        _ => None,
    }
}

/// `a`, `a/b`, `a/b/c` for `a/b/c`.
fn prefixes(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(|(i, _)| i)
        .chain([path.len()])
        .map(move |end| &path[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::RelPath;
    use futures::stream;

    fn listing(paths: &[&str]) -> EntryStream {
        let items: Vec<Result<Entry>> = paths
            .iter()
            .map(|p| Ok(Entry::new(RelPath::new(*p).unwrap(), 1)))
            .collect();
        stream::iter(items).boxed()
    }

    async fn marked(paths: &[&str]) -> (Collisions, Vec<String>) {
        let [found, _] = find_collisions(
            [listing(paths), stream::empty().boxed()],
            "on a folding side",
        )
        .await;
        let out: Vec<String> = mark_collisions(listing(paths), found.clone())
            .map(|item| match item {
                Ok(e) => e.path.into_string(),
                Err(Error::Unlisted { path, .. }) => format!("?{path}"),
                Err(e) => format!("!{e}"),
            })
            .collect()
            .await;
        (found, out)
    }

    #[tokio::test]
    async fn nested_collision_with_interleaved_entries() {
        let nfd = "d/cafe\u{301}";
        let mut paths = vec![
            "a",
            "d/Readme",
            "d/Zeta",
            "d/b/c",
            "d/b/readme",
            "d/café",
            "d/readme",
            "d/x",
            "e",
        ];
        paths.push(nfd);
        paths.sort_unstable();
        let (found, out) = marked(&paths).await;
        assert_eq!(
            found.keys().cloned().collect::<Vec<_>>(),
            ["d/Readme", "d/café", nfd, "d/readme"]
                .map(String::from)
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        );
        assert!(found["d/Readme"].contains("`d/readme`"));
        // `d/b/readme` is in another folder than `d/Readme`: no collision.
        let mut expected: Vec<String> = paths
            .iter()
            .map(|p| {
                if found.contains_key(*p) {
                    format!("?{p}")
                } else {
                    (*p).to_string()
                }
            })
            .collect();
        expected.dedup();
        assert_eq!(out, expected);
    }

    #[tokio::test]
    async fn colliding_folders_hide_their_contents() {
        let (found, out) = marked(&["A!x", "A/one", "A/two", "B", "a/three", "b"]).await;
        assert_eq!(found.len(), 4, "{found:?}");
        // `A` sorts before `A!x`, where a file of that name would.
        assert_eq!(out, ["?A", "A!x", "?B", "?a", "?b"]);
    }

    /// A listing of `paths` in canonical order; `?p` is an unknown path `p`.
    fn with_unknown(paths: &[&str]) -> EntryStream {
        let mut items: Vec<(String, Result<Entry>)> = paths
            .iter()
            .map(|p| match p.strip_prefix('?') {
                Some(u) => (u.to_string(), Err(Error::unlisted("t", u, "a symlink"))),
                None => (p.to_string(), Ok(Entry::new(RelPath::new(*p).unwrap(), 1))),
            })
            .collect();
        items.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        stream::iter(items.into_iter().map(|(_, item)| item)).boxed()
    }

    #[tokio::test]
    async fn names_folding_to_an_unknown_name_on_the_other_side_collide() {
        // `A` sorts before `a` and `Q` before `q`: found whichever comes first, at any depth,
        // for a name with an unknown path below it too (`c/d` has `c`), and only where the
        // spellings differ (`m`, `s`).
        let source = ["A", "b/X", "C/y", "caf\u{e9}", "m", "?q", "?s"];
        let destination = ["?a", "?b/x", "?c/d", "?cafe\u{301}", "Q/z", "m", "s"];
        let [s, d] = find_collisions(
            [with_unknown(&source), with_unknown(&destination)],
            "on a folding side",
        )
        .await;
        assert_eq!(s.keys().collect::<Vec<_>>(), ["A", "C", "b/X", "caf\u{e9}"]);
        assert_eq!(d.keys().collect::<Vec<_>>(), ["Q"]);
        assert!(
            s["A"].contains("`a`, which the destination could not list"),
            "{s:?}"
        );
        assert!(
            d["Q"].contains("`q`, which the source could not list"),
            "{d:?}"
        );
        // The same with the sides swapped.
        let [s, d] = find_collisions(
            [with_unknown(&destination), with_unknown(&source)],
            "on a folding side",
        )
        .await;
        assert_eq!(d.keys().collect::<Vec<_>>(), ["A", "C", "b/X", "caf\u{e9}"]);
        assert_eq!(s.keys().collect::<Vec<_>>(), ["Q"]);
        // Marked, `A` hides all of itself, and the unknown `a` stays as it was.
        let out: Vec<String> = mark_collisions(with_unknown(&["A", "A/x", "?a"]), {
            let mut c = Collisions::new();
            c.insert("A".into(), "why".into());
            c
        })
        .map(|item| match item {
            Ok(e) => e.path.into_string(),
            Err(Error::Unlisted { path, .. }) => format!("?{path}"),
            Err(e) => format!("!{e}"),
        })
        .collect()
        .await;
        assert_eq!(out, ["?A", "?a"]);
    }

    #[tokio::test]
    async fn no_collision_passes_everything() {
        let paths = ["Readme", "a/Readme", "a/b", "b/readme"];
        let (found, out) = marked(&paths).await;
        assert!(found.is_empty());
        assert_eq!(out, paths);
    }
}
