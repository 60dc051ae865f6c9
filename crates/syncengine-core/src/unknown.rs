//! Unknown paths: what a listing could not see, and how the reconciler keeps away from it.
//!
//! A listing reports a path it could not see into (a symlink, a special file, an unreadable
//! folder, a name it could not decode, a sub-folder that failed to list) as an
//! [`Error::Unlisted`] item in canonical order, and goes on. Leaving it out would make the
//! files below it look deleted, and the engine would delete the other side's copies.
//!
//! The reconciler feeds each side's unlisted items into an [`UnknownScopes`] as it streams,
//! and asks it about every path it visits. Because an unknown path sorts where a file of that
//! name would, and a folder with undecodable members sorts as `folder/`, the scope is known
//! before the first path it covers; scopes the walk has passed are dropped, so memory stays
//! bounded by how deeply unknown names nest, not by the size of the tree.
//!
//! # Behavior
//! - A path at or below an unknown path ([`Coverage::Full`]) is left entirely alone for the
//!   run: nothing is deleted or copied there on either side (a copy *into* it could write
//!   through a symlink or over a file nobody saw), and its base record is kept as it was.
//! - A path below a folder whose contents are only partly known ([`Coverage::NoDelete`]):
//!   known files copy as usual, but nothing is deleted on either side and no base record is
//!   removed (the "missing" file may be the one whose name could not be decoded), and it does
//!   not take part in rename pairing.
//! - Every unknown path is counted and reported with its reason; the run then ends with an
//!   error status (exit 1 in the CLI), while the rest of the tree syncs.
//! - An unknown path inside a folder `x` (below `x/`, or `x` itself when only some of its
//!   members are unknown) shows that the side holds a folder `x`, although no path below `x/`
//!   may be listed at all: a file `x` on the other side is then a type change
//!   ([`UnknownScopes::has_inside`], [`UnknownScopes::fresh_inside`]). The unknown member
//!   counts as a member of the folder now and after the run (it is never deleted), so the
//!   folder keeps the path where both are to stay.
//! - Coverage compares paths byte-wise. On a side that folds names, `A` is the same name as
//!   an unknown `a`, but sorts before it, so the walk may meet `A` first: when either side
//!   folds, the collision pre-pass ([`crate::collide::find_collisions`]) makes a name that
//!   folds to an unknown one on the other side unknown itself, before the walk starts.

use crate::error::Error;
use crate::mode::Side;
use crate::path::RelPath;

/// Most unknown paths named one by one in a run's warnings; the rest are counted.
pub const MAX_NAMED_UNKNOWN: usize = 50;

/// How an unknown scope covers a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// The path is at or below an unknown path: no action, base kept.
    Full,
    /// The path is below a folder with unknown members: no delete, no base removal.
    NoDelete,
}

#[derive(Clone, Debug)]
struct Scope {
    path: String,
    contents_only: bool,
}

impl Scope {
    fn covers(&self, path: &str) -> bool {
        if self.path.is_empty() {
            return true;
        }
        let below = path.len() > self.path.len()
            && path.starts_with(self.path.as_str())
            && path.as_bytes()[self.path.len()] == b'/';
        below || (!self.contents_only && path == self.path)
    }

    /// True when this unknown path lies inside the folder `name`: strictly below `name/`, or
    /// `name` itself when some of its members are unknown (it is a folder then).
    fn inside(&self, name: &str) -> bool {
        let below = self.path.len() > name.len() + 1
            && self.path.starts_with(name)
            && self.path.as_bytes()[name.len()] == b'/';
        below || (self.contents_only && self.path == name)
    }

    /// True once the walk, now at `path`, has passed everything this scope covers.
    fn passed(&self, path: &str) -> bool {
        if self.path.is_empty() {
            return false;
        }
        // Everything below `P/` sorts right after `P/`, contiguously.
        let dir = format!("{}/", self.path);
        path.as_bytes() > dir.as_bytes() && !path.starts_with(dir.as_str())
    }
}

/// One side's unknown paths that may still cover what the reconciler visits next, plus the
/// run's report of them.
#[derive(Debug)]
pub struct UnknownScopes {
    side: Side,
    active: Vec<Scope>,
    /// Scopes accepted since the reconciler last took note of them ([`Self::clear_fresh`]):
    /// a file waiting for the merge to pass its folder name learns from them that the other
    /// side's folder has members, even after the walk has dropped them from `active`.
    fresh: Vec<Scope>,
    /// Unknown paths reported on this side.
    pub count: u64,
    /// One warning per unknown path, up to [`MAX_NAMED_UNKNOWN`].
    pub messages: Vec<String>,
}

impl UnknownScopes {
    /// An empty set for `side`.
    pub fn new(side: Side) -> Self {
        UnknownScopes {
            side,
            active: Vec::new(),
            fresh: Vec::new(),
            count: 0,
            messages: Vec::new(),
        }
    }

    /// The side these scopes belong to.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Takes in a listing item: returns the entry, or `None` after recording an
    /// [`Error::Unlisted`] item.
    ///
    /// # Errors
    /// Any other error, unchanged.
    pub fn accept<T>(&mut self, item: Result<T, Error>) -> Result<Option<T>, Error> {
        match item {
            Ok(v) => Ok(Some(v)),
            Err(Error::Unlisted {
                path,
                contents_only,
                reason,
                ..
            }) => {
                self.count += 1;
                if self.messages.len() < MAX_NAMED_UNKNOWN {
                    let what = match (path.is_empty(), contents_only) {
                        (true, _) => format!("the {} root", self.side),
                        (false, true) => format!("{path:?} (some of its contents)"),
                        (false, false) => format!("{path:?}"),
                    };
                    self.messages.push(format!(
                        "{what} on the {} could not be listed ({reason}); nothing at or below it \
                         was deleted or overwritten on either side this run",
                        self.side
                    ));
                }
                tracing::warn!(side = %self.side, path, reason, "unknown path");
                let scope = Scope {
                    path,
                    contents_only,
                };
                self.fresh.push(scope.clone());
                self.active.push(scope);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// How this side's unknown paths cover `path`, if they do. Call with paths in canonical
    /// order: scopes the walk has passed are dropped.
    pub fn coverage(&mut self, path: &RelPath) -> Option<Coverage> {
        if self.active.is_empty() {
            return None;
        }
        let p = path.as_str();
        self.active.retain(|s| !s.passed(p));
        let mut cover = None;
        for s in &self.active {
            if s.covers(p) {
                if !s.contents_only {
                    return Some(Coverage::Full);
                }
                cover = Some(Coverage::NoDelete);
            }
        }
        cover
    }
}

impl UnknownScopes {
    /// True when an unknown path the walk has not passed lies inside the folder `name`
    /// (strictly below `name/`, or `name` itself with unknown members): this side holds a
    /// folder `name`. Asked when a file `name` of the other side starts to wait for the merge
    /// to pass `name/`; every scope inside `name/` sorts after `name`, so none accepted before
    /// has been passed yet. Free while nothing is unknown.
    pub fn has_inside(&self, name: &RelPath) -> bool {
        if self.active.is_empty() {
            return false;
        }
        self.active.iter().any(|s| s.inside(name.as_str()))
    }

    /// True when an unknown path accepted since the last [`Self::clear_fresh`] lies inside
    /// the folder `name` (see [`Self::has_inside`]): for files already waiting when it was
    /// read.
    pub fn fresh_inside(&self, name: &RelPath) -> bool {
        self.fresh.iter().any(|s| s.inside(name.as_str()))
    }

    /// True when unknown paths were accepted since the last [`Self::clear_fresh`].
    pub fn has_fresh(&self) -> bool {
        !self.fresh.is_empty()
    }

    /// Forgets the freshly accepted unknown paths (they stay in force for coverage).
    pub fn clear_fresh(&mut self) {
        self.fresh.clear();
    }
}

/// The stronger of two coverages.
pub fn strongest(a: Option<Coverage>, b: Option<Coverage>) -> Option<Coverage> {
    match (a, b) {
        (Some(Coverage::Full), _) | (_, Some(Coverage::Full)) => Some(Coverage::Full),
        (Some(Coverage::NoDelete), _) | (_, Some(Coverage::NoDelete)) => Some(Coverage::NoDelete),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rp(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn scopes_cover_at_and_below_and_expire() {
        let mut u = UnknownScopes::new(Side::Source);
        assert_eq!(
            u.accept::<()>(Err(Error::unlisted("t", "x", "a symlink")))
                .unwrap(),
            None
        );
        assert_eq!(u.coverage(&rp("x")), Some(Coverage::Full));
        assert_eq!(u.coverage(&rp("x-1")), None, "a sibling, not below");
        assert_eq!(u.coverage(&rp("x.txt")), None);
        assert_eq!(u.coverage(&rp("x/a")), Some(Coverage::Full));
        assert_eq!(u.coverage(&rp("x/z/z")), Some(Coverage::Full));
        assert_eq!(u.coverage(&rp("x0")), None);
        assert!(u.active.is_empty(), "passed scopes are dropped");
        assert_eq!(u.count, 1);
        assert!(u.messages[0].contains("\"x\""), "{:?}", u.messages);
    }

    #[test]
    fn contents_only_scopes_spare_the_folder() {
        let mut u = UnknownScopes::new(Side::Destination);
        u.accept::<()>(Err(Error::unlisted_contents("t", "d", "bad name")))
            .unwrap();
        assert_eq!(u.coverage(&rp("d")), None);
        assert_eq!(u.coverage(&rp("d/a")), Some(Coverage::NoDelete));
        let mut root = UnknownScopes::new(Side::Source);
        root.accept::<()>(Err(Error::unlisted_contents("t", "", "bad name")))
            .unwrap();
        assert_eq!(root.coverage(&rp("zzz/y")), Some(Coverage::NoDelete));
        assert!(root.messages[0].contains("root"));
    }

    #[test]
    fn unknown_members_make_a_folder() {
        let mut u = UnknownScopes::new(Side::Source);
        assert!(!u.has_inside(&rp("x")) && !u.has_fresh());
        u.accept::<()>(Err(Error::unlisted("t", "x/sub", "a symlink")))
            .unwrap();
        u.accept::<()>(Err(Error::unlisted_contents("t", "y", "bad name")))
            .unwrap();
        u.accept::<()>(Err(Error::unlisted("t", "z", "a symlink")))
            .unwrap();
        u.accept::<()>(Err(Error::unlisted_contents("t", "", "bad name")))
            .unwrap();
        for (name, inside) in [
            ("x", true),
            ("x/sub", false),
            ("x/s", false),
            ("xx", false),
            ("y", true),
            ("z", false),
            ("a", false),
        ] {
            assert_eq!(u.has_inside(&rp(name)), inside, "{name}");
            assert_eq!(u.fresh_inside(&rp(name)), inside, "{name}");
        }
        // Passed scopes leave `active`, but stay fresh until the reconciler took note.
        assert_eq!(u.coverage(&rp("x0")), Some(Coverage::NoDelete));
        assert!(!u.has_inside(&rp("x")));
        assert!(u.fresh_inside(&rp("x")));
        u.clear_fresh();
        assert!(!u.has_fresh() && !u.fresh_inside(&rp("y")));
        assert!(u.has_inside(&rp("y")), "still active");
    }

    #[test]
    fn other_errors_pass() {
        let mut u = UnknownScopes::new(Side::Source);
        assert!(u.accept::<()>(Err(Error::other("t", "", "boom"))).is_err());
        assert_eq!(u.accept(Ok(5)).unwrap(), Some(5));
        assert_eq!(
            strongest(Some(Coverage::NoDelete), Some(Coverage::Full)),
            Some(Coverage::Full)
        );
    }
}
