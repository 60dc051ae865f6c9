//! [`IgnoreRules`]: which paths a sync leaves alone, in gitignore syntax.
//!
//! Rules come from `--exclude PATTERN` options ([`IgnoreRules::new`]) and from a
//! [`SYNCIGNORE_FILE`] at either root ([`IgnoreRules::add_file`]). They apply to both sides'
//! listings: an ignored path is never uploaded, downloaded or deleted on either side.
//!
//! ```
//! use syncengine_core::{IgnoreRules, RelPath};
//!
//! let mut rules = IgnoreRules::new(&["*.tmp".to_string()])?;
//! rules.add_file("source:.syncignore", "# build output\nbuild/\n!keep.tmp\n")?;
//!
//! let ignored = |p: &str| rules.is_ignored(&RelPath::new(p).unwrap());
//! assert!(ignored("notes/draft.tmp"));
//! assert!(ignored("build/a/b.o"));
//! assert!(!ignored("src/main.rs"));
//! // Our own state and temp files are ignored whatever the patterns say.
//! assert!(ignored(".syncengine/trash/20240101T000000Z/a.txt"));
//! assert!(ignored("docs/.syncengine-tmp-1234"));
//! // `.syncignore` itself syncs like any file.
//! assert!(!ignored(".syncignore"));
//! # Ok::<(), syncengine_core::Error>(())
//! ```
//!
//! # Behavior
//! - Syntax and matching are git's (`man gitignore`), through the `ignore` crate: `#`
//!   comments, blank lines, `!` negation, `/` anchoring to the root, a trailing `/` for
//!   directories only, `*`, `?`, `[...]` and `**`. Matching is case-sensitive.
//! - Within one source of rules the last matching pattern wins. Patterns given to
//!   [`IgnoreRules::new`] (the command line) take precedence over those of files, as git's
//!   command-line excludes do over `.gitignore`: a file's `!pattern` cannot re-include what
//!   `--exclude` excluded.
//! - A path is ignored when it, or any of its parent directories, is ignored. As in git, a
//!   file cannot be re-included when a parent directory is excluded (`build/` then
//!   `!build/keep.txt` still ignores `build/keep.txt`; write `build/*` to allow that).
//! - Include patterns ([`IgnoreRules::with_includes`], `--include`), when there are any,
//!   exclude every file that does not match one; excludes still apply to the files they
//!   let through (an exclude always wins). They never exclude a folder.
//! - Always ignored, whatever the patterns: the `.syncengine` folder at the root (trash and
//!   state) with everything under it (a root entry of that name, even a file, is left alone
//!   too, as it would collide with our folder), every path with a segment starting with
//!   [`TEMP_FILE_PREFIX`] (our in-flight temp files), and folders given to
//!   [`IgnoreRules::add_own_dir`] (the engine's state directory when it lies inside a synced
//!   local root).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{Error, Result};
use crate::mode::Side;
use crate::path::RelPath;

/// The name of the ignore file read at the root of either side.
pub const SYNCIGNORE_FILE: &str = ".syncignore";

/// The folder at the root of a side that holds the engine's own files (trash, and state if
/// the user puts it there). Never synced.
pub const STATE_DIR_NAME: &str = ".syncengine";

/// The name prefix of the temp files the engine writes before renaming them into place.
/// Never synced.
pub const TEMP_FILE_PREFIX: &str = ".syncengine-tmp-";

/// How long a temp file must have been left untouched before a listing may remove it as the
/// leftover of a killed write.
///
/// Another machine may be writing into the same remote root (laptop A ↔ S3 or SFTP ↔ laptop
/// B is a supported topology), and whether its process still runs cannot be known from here:
/// only age tells a dead write from a live one. A day covers slow uploads and clock skew.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The name of one of the engine's temp files: [`TEMP_FILE_PREFIX`] and `unique` as 16
/// lowercase hex digits. Backends pick `unique` (random, or a per-process counter).
///
/// ```
/// use syncengine_core::ignore_rules::{is_temp_file_name, temp_file_name};
///
/// assert_eq!(temp_file_name(0xab), ".syncengine-tmp-00000000000000ab");
/// assert!(is_temp_file_name(&temp_file_name(u64::MAX)));
/// ```
pub fn temp_file_name(unique: u64) -> String {
    format!("{TEMP_FILE_PREFIX}{unique:016x}")
}

/// True when `name` is exactly a name [`temp_file_name`] makes: a file that only resembles it
/// (another suffix, upper-case hex, a longer or shorter tail) is never taken for ours.
pub fn is_temp_file_name(name: &str) -> bool {
    name.strip_prefix(TEMP_FILE_PREFIX)
        .is_some_and(is_unique_tail)
}

/// What follows [`TEMP_FILE_PREFIX`] in the name of a temp folder ([`temp_dir_name`]).
const TEMP_DIR_TAG: &str = "anchor-";

/// The name of one of the engine's temp folders: [`TEMP_FILE_PREFIX`], `anchor-` and `unique`
/// as 16 lowercase hex digits. A backend without `openat` (SFTP) creates such an empty folder
/// for the length of one operation, to pin the folder it works in; a killed run can leave
/// one behind, and it counts as a temp file for removal ([`StaleTemps::consider_dir`]):
/// removed only while empty, never with what it holds.
///
/// ```
/// use syncengine_core::ignore_rules::{is_temp_dir_name, is_temp_file_name, temp_dir_name};
///
/// assert_eq!(temp_dir_name(0xab), ".syncengine-tmp-anchor-00000000000000ab");
/// assert!(is_temp_dir_name(&temp_dir_name(7)) && !is_temp_file_name(&temp_dir_name(7)));
/// ```
pub fn temp_dir_name(unique: u64) -> String {
    format!("{TEMP_FILE_PREFIX}{TEMP_DIR_TAG}{unique:016x}")
}

/// True when `name` is exactly a name [`temp_dir_name`] makes (like [`is_temp_file_name`]).
pub fn is_temp_dir_name(name: &str) -> bool {
    name.strip_prefix(TEMP_FILE_PREFIX)
        .and_then(|tail| tail.strip_prefix(TEMP_DIR_TAG))
        .is_some_and(is_unique_tail)
}

/// 16 lowercase hex digits.
fn is_unique_tail(tail: &str) -> bool {
    tail.len() == 16
        && tail
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The one rule for removing left-behind temp files, used by every backend that writes them
/// (local disk, SFTP, WebDAV): true only when `name` has the exact temp format (of a file,
/// or of a temp folder, [`temp_dir_name`]; the backend checks which the entry is) and
/// `last_change` (the newest time the backend knows for the file: modification, and status
/// change where it has one) is older than [`STALE_TEMP_AGE`] before `now`.
///
/// A file without a known time, or with a time in the future, is never stale. Backends only
/// collect candidates while listing ([`StaleTemps`]); the engine removes them after a run
/// that is not a dry run (see
/// [`StorageClient::remove_stale_temps`](crate::StorageClient::remove_stale_temps)).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use syncengine_core::ignore_rules::{is_stale_temp, temp_file_name};
///
/// let now = SystemTime::now();
/// let old = now - Duration::from_secs(25 * 3600);
/// assert!(is_stale_temp(&temp_file_name(7), Some(old), now));
/// assert!(!is_stale_temp(&temp_file_name(7), Some(now - Duration::from_secs(3600)), now));
/// assert!(!is_stale_temp(".syncengine-tmp-notes.txt", Some(old), now));
/// assert!(!is_stale_temp(&temp_file_name(7), None, now));
/// ```
pub fn is_stale_temp(name: &str, last_change: Option<SystemTime>, now: SystemTime) -> bool {
    (is_temp_file_name(name) || is_temp_dir_name(name))
        && last_change
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > STALE_TEMP_AGE)
}

/// Temp files a backend's listings found, by the backend's own location string, with the
/// newest time the backend knows for each, until they are asked for: stale ones (see
/// [`is_stale_temp`]) by the engine after a run ([`take`](Self::take)), any older than a
/// chosen age by a clean-up ([`take_older_than`](Self::take_older_than), see
/// [`StorageClient::clean_up`](crate::StorageClient::clean_up)).
///
/// Only names in the exact temp format ([`is_temp_file_name`]) with a known time are kept.
/// Listings never remove anything themselves: a dry run lists too, and must change nothing.
#[derive(Debug, Default)]
pub struct StaleTemps(Mutex<BTreeMap<String, SystemTime>>);

impl StaleTemps {
    /// Notes `location` (a path or URL in the backend's own terms) when `name` has the exact
    /// temp format and `last_change` is known; returns whether it is stale by
    /// [`is_stale_temp`] (and so will be removed after the run).
    pub fn consider(
        &self,
        location: impl Into<String>,
        name: &str,
        last_change: Option<SystemTime>,
    ) -> bool {
        self.note(location.into(), name, last_change, is_temp_file_name(name))
    }

    /// [`consider`](Self::consider) for a folder: notes `location` when `name` has the exact
    /// temp-folder format ([`temp_dir_name`]). Only for an entry the backend knows to be a
    /// folder, and one whose removal takes only an empty folder (SFTP's `rmdir`): a user
    /// folder that merely has such a name must never be removed with its contents.
    pub fn consider_dir(
        &self,
        location: impl Into<String>,
        name: &str,
        last_change: Option<SystemTime>,
    ) -> bool {
        self.note(location.into(), name, last_change, is_temp_dir_name(name))
    }

    fn note(
        &self,
        location: String,
        name: &str,
        last_change: Option<SystemTime>,
        format_ok: bool,
    ) -> bool {
        let Some(time) = last_change.filter(|_| format_ok) else {
            return false;
        };
        self.lock().insert(location, time);
        is_stale_temp(name, last_change, SystemTime::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SystemTime>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the stale locations (untouched for [`STALE_TEMP_AGE`]) for which `pick` is
    /// true, leaving every other one noted: for a backend that removes some before the run
    /// ends (a temp folder that keeps an emptied folder from being removed).
    pub fn take_stale_where(&self, pick: impl Fn(&str) -> bool) -> Vec<String> {
        let now = SystemTime::now();
        let mut noted = self.lock();
        let taken: Vec<String> = noted
            .iter()
            .filter(|(location, t)| {
                now.duration_since(**t).is_ok_and(|d| d > STALE_TEMP_AGE) && pick(location)
            })
            .map(|(location, _)| location.clone())
            .collect();
        for location in &taken {
            noted.remove(location);
        }
        taken
    }

    /// Takes the stale locations (untouched for [`STALE_TEMP_AGE`]), forgetting every noted
    /// one (a younger one is noted again by the next listing).
    pub fn take(&self) -> Vec<String> {
        self.take_older_than(STALE_TEMP_AGE)
            .into_iter()
            .map(|(location, _)| location)
            .collect()
    }

    /// Takes the locations untouched for longer than `age`, with their last change,
    /// forgetting every noted one. A time in the future is never old.
    pub fn take_older_than(&self, age: Duration) -> Vec<(String, SystemTime)> {
        let noted = std::mem::take(&mut *self.lock());
        let now = SystemTime::now();
        noted
            .into_iter()
            .filter(|(_, t)| now.duration_since(*t).is_ok_and(|d| d > age))
            .collect()
    }
}

/// The `backend` name used in errors about ignore patterns.
const ERROR_SOURCE: &str = "ignore";

/// Gitignore-syntax rules that decide which paths a sync leaves alone.
///
/// See the [module docs](self) for the syntax and precedence.
#[derive(Clone, Debug)]
pub struct IgnoreRules {
    /// Patterns from the command line / API: they win over file patterns.
    explicit: Gitignore,
    /// Builder of the file patterns, kept so that further files can be added.
    files_builder: GitignoreBuilder,
    /// Patterns from `.syncignore` files, in the order the files were added.
    files: Gitignore,
    /// Folders holding the engine's own files besides `.syncengine/` (a state directory
    /// inside a synced root): never synced, whatever the patterns say.
    own_dirs: Vec<RelPath>,
    /// Sides whose root had no readable `.syncignore` when the rules were loaded.
    missing_files: Vec<Side>,
    /// Include patterns ([`IgnoreRules::with_includes`]): when there are any, a file is synced
    /// only if it or one of its folders matches one.
    includes: Gitignore,
}

impl Default for IgnoreRules {
    /// Rules without user patterns: only the engine's own files are ignored.
    fn default() -> Self {
        IgnoreRules {
            explicit: Gitignore::empty(),
            files_builder: builder(),
            files: Gitignore::empty(),
            own_dirs: Vec::new(),
            missing_files: Vec::new(),
            includes: Gitignore::empty(),
        }
    }
}

impl IgnoreRules {
    /// Builds rules from gitignore-syntax patterns, one pattern each (e.g. `--exclude`
    /// options). Blank patterns and `#` comments are allowed and ignored.
    ///
    /// # Errors
    /// [`Error::Other`] naming the pattern when one does not parse (e.g. `[z-a]`) or
    /// contains a line break.
    pub fn new(patterns: &[String]) -> Result<IgnoreRules> {
        let mut b = builder();
        for pattern in patterns {
            if pattern.contains(['\n', '\r']) {
                return Err(Error::other(
                    ERROR_SOURCE,
                    "--exclude",
                    format!("invalid ignore pattern {pattern:?}: contains a line break"),
                ));
            }
            add_line(&mut b, None, pattern, "--exclude")?;
        }
        let explicit = build(&b, "--exclude")?;
        Ok(IgnoreRules {
            explicit,
            ..IgnoreRules::default()
        })
    }

    /// Limits the rules to files matching `patterns` (rclone's `--include`): with at least one
    /// pattern, a file is synced only when it, or one of its parent folders, matches one;
    /// every other file is excluded as if by an exclude pattern. Folders are still traversed
    /// (an include never prunes a folder), and excludes still apply on top: a file must be
    /// included *and* not excluded.
    ///
    /// Patterns use the gitignore syntax of excludes: `*.jpg` matches at any depth, a pattern
    /// with a `/` (`photos/*.jpg`, `/todo.txt`) is anchored at the root, `photos/` includes
    /// everything below every folder of that name, `**` crosses folders.
    ///
    /// ```
    /// use syncengine_core::{IgnoreRules, RelPath};
    ///
    /// let rules = IgnoreRules::new(&["tmp/".to_string()])?
    ///     .with_includes(&["*.jpg".to_string(), "/docs/".to_string()])?;
    /// let ignored = |p: &str| rules.is_ignored(&RelPath::new(p).unwrap());
    /// assert!(!ignored("a/b/cat.jpg") && !ignored("docs/x/notes.txt"));
    /// assert!(ignored("notes.txt") && ignored("a/docs/notes.txt"));
    /// // An exclude wins over an include.
    /// assert!(ignored("tmp/cat.jpg"));
    /// // Folders are not pruned by includes: their included files must be found.
    /// assert!(!rules.is_ignored_dir(&RelPath::new("a/b").unwrap()));
    /// # Ok::<(), syncengine_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Other`] naming the pattern when one does not parse, contains a line break,
    /// or starts with `!` (an include cannot be negated: exclude the files instead; write
    /// `\!` for a name that starts with `!`).
    pub fn with_includes(mut self, patterns: &[String]) -> Result<IgnoreRules> {
        let mut b = builder();
        for pattern in patterns {
            let problem = if pattern.contains(['\n', '\r']) {
                Some("contains a line break")
            } else if pattern.starts_with('!') {
                Some("an include cannot be negated; exclude those files with --exclude instead")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(Error::other(
                    ERROR_SOURCE,
                    "--include",
                    format!("invalid include pattern {pattern:?}: {problem}"),
                ));
            }
            add_line(&mut b, None, pattern, "--include")?;
        }
        self.includes = build(&b, "--include")?;
        Ok(self)
    }

    /// Notes that `side`'s root had no `.syncignore` to read. A listing that then shows one
    /// there that it cannot read either (a symlink, a special file) means rules the run does
    /// not have: the engine stops rather than sync, or delete, what they may exclude.
    pub(crate) fn note_missing_file(&mut self, side: Side) {
        self.missing_files.push(side);
    }

    /// True when [`note_missing_file`](Self::note_missing_file) was called for `side`.
    pub(crate) fn file_missing(&self, side: Side) -> bool {
        self.missing_files.contains(&side)
    }

    /// Adds the rules of a `.syncignore` file, given its text. `origin` names the file in
    /// error messages (e.g. `source:.syncignore`). Rules of files added later win over
    /// earlier ones where both match.
    ///
    /// # Errors
    /// [`Error::Other`] naming the origin, line number and pattern when a line does not
    /// parse. On error the rules are left as they were.
    pub fn add_file(&mut self, origin: &str, contents: &str) -> Result<()> {
        let mut b = self.files_builder.clone();
        for (i, line) in contents.lines().enumerate() {
            let at = format!("{origin}:{}", i + 1);
            add_line(&mut b, Some(PathBuf::from(origin)), line, &at)?;
        }
        self.files = build(&b, origin)?;
        self.files_builder = b;
        Ok(())
    }

    /// Marks `dir` (and everything below it) as the engine's own, like `.syncengine/`: the
    /// engine does this for its state directory when it lies inside a synced local root.
    pub fn add_own_dir(&mut self, dir: RelPath) {
        self.own_dirs.push(dir);
    }

    /// Returns true for the engine's own files: `.syncengine/`, temp files, and folders given
    /// to [`IgnoreRules::add_own_dir`]. They are left out of a sync without being counted as
    /// skipped.
    pub fn is_own(&self, path: &RelPath) -> bool {
        is_always_ignored(path) || self.own_dirs.iter().any(|d| path == d || path.is_below(d))
    }

    /// Returns true when the file at `path` is ignored, by the engine's own rules or because
    /// it or one of its parent directories matches the patterns.
    pub fn is_ignored(&self, path: &RelPath) -> bool {
        self.ignored(path, false)
    }

    /// Returns true when the directory at `path` and everything below it is ignored, so a
    /// listing need not descend into it.
    pub fn is_ignored_dir(&self, path: &RelPath) -> bool {
        self.ignored(path, true)
    }

    fn ignored(&self, path: &RelPath, is_dir: bool) -> bool {
        self.is_own(path) || self.matches_patterns(path, is_dir)
    }

    /// Returns true when the user's patterns exclude `path` (a file, or a directory when
    /// `is_dir`) or one of its parent directories, or when includes are set and the file
    /// matches none (includes never exclude a directory); the engine's own files are not
    /// considered. A listing filter that has already called [`IgnoreRules::is_own`] asks this.
    pub fn matches_patterns(&self, path: &RelPath, is_dir: bool) -> bool {
        if !is_dir && !self.included(path) {
            return true;
        }
        if self.explicit.is_empty() && self.files.is_empty() {
            return false;
        }
        let s = path.as_str();
        // Parents top-down: an excluded directory cannot have anything re-included below it.
        let parents = s.match_indices('/').map(|(i, _)| &s[..i]);
        for parent in parents {
            if self.matched(Path::new(parent), true).is_ignore() {
                return true;
            }
        }
        self.matched(Path::new(s), is_dir).is_ignore()
    }

    /// True when there are no includes, or the file at `path` or one of its parent folders
    /// matches one.
    fn included(&self, path: &RelPath) -> bool {
        if self.includes.is_empty() {
            return true;
        }
        let s = path.as_str();
        s.match_indices('/')
            .map(|(i, _)| &s[..i])
            .any(|parent| self.includes.matched(Path::new(parent), true).is_ignore())
            || self.includes.matched(Path::new(s), false).is_ignore()
    }

    fn matched(&self, path: &Path, is_dir: bool) -> Match<()> {
        match self.explicit.matched(path, is_dir) {
            Match::None => self.files.matched(path, is_dir).map(|_| ()),
            m => m.map(|_| ()),
        }
    }
}

/// True for the engine's own files, which no pattern can re-include: the root's `.syncengine`
/// entry, every `.syncengine/` folder below the root, and temp files.
///
/// A `.syncengine/` folder below the root belongs to another pair whose root lies inside this
/// one (`~/photos` synced on its own while `~` is synced elsewhere). Its `root-id` and trash
/// are that pair's: copying them would publish its trash as user files and give the copy the
/// inner root's identity, so a copy put in place of the inner root would not be recognised.
/// Ignored paths are never deleted either, so the inner pair's folder is left alone on both
/// sides. A plain file named `.syncengine` below the root is an ordinary user file.
pub fn is_always_ignored(path: &RelPath) -> bool {
    // Both the state folder's name and the temp prefix contain it: one substring search
    // settles the common case (a path that is neither) without splitting the path.
    debug_assert!(TEMP_FILE_PREFIX.starts_with(STATE_DIR_NAME));
    if !path.as_str().contains(STATE_DIR_NAME) {
        return false;
    }
    let mut segments = path.segments().peekable();
    if segments.peek() == Some(&STATE_DIR_NAME) {
        return true;
    }
    while let Some(segment) = segments.next() {
        if segment.starts_with(TEMP_FILE_PREFIX)
            || (segment == STATE_DIR_NAME && segments.peek().is_some())
        {
            return true;
        }
    }
    false
}

fn builder() -> GitignoreBuilder {
    // Root "." makes the matcher take our relative paths as they are, without stripping.
    GitignoreBuilder::new(".")
}

fn add_line(b: &mut GitignoreBuilder, from: Option<PathBuf>, line: &str, at: &str) -> Result<()> {
    b.add_line(from, line).map(|_| ()).map_err(|e| {
        Error::other(
            ERROR_SOURCE,
            at,
            format!("invalid ignore pattern {:?}: {e}", line.trim_end()),
        )
    })
}

fn build(b: &GitignoreBuilder, at: &str) -> Result<Gitignore> {
    b.build()
        .map_err(|e| Error::other(ERROR_SOURCE, at, format!("cannot build ignore rules: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        match RelPath::new(s) {
            Ok(p) => p,
            Err(e) => panic!("bad test path {s:?}: {e}"),
        }
    }

    fn rules(patterns: &[&str]) -> IgnoreRules {
        let owned: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        match IgnoreRules::new(&owned) {
            Ok(r) => r,
            Err(e) => panic!("bad test patterns {patterns:?}: {e}"),
        }
    }

    fn from_file(contents: &str) -> IgnoreRules {
        let mut r = IgnoreRules::default();
        if let Err(e) = r.add_file(SYNCIGNORE_FILE, contents) {
            panic!("bad test file: {e}");
        }
        r
    }

    #[track_caller]
    fn assert_ignored(r: &IgnoreRules, yes: &[&str], no: &[&str]) {
        for s in yes {
            assert!(r.is_ignored(&p(s)), "{s:?} should be ignored");
        }
        for s in no {
            assert!(!r.is_ignored(&p(s)), "{s:?} should not be ignored");
        }
    }

    #[test]
    fn no_patterns_ignore_only_our_own_files() {
        let r = IgnoreRules::default();
        assert_ignored(
            &r,
            &[
                ".syncengine/trash/t/a.txt",
                ".syncengine",
                "a/.syncengine-tmp-x",
            ],
            &["a.txt", "dir/b/c.o", SYNCIGNORE_FILE, ".gitignore"],
        );
        assert_ignored(&rules(&[]), &[".syncengine/state.db"], &["a.txt"]);
    }

    #[test]
    fn basename_pattern_matches_at_any_depth() {
        let r = rules(&["*.o"]);
        assert_ignored(&r, &["a.o", "x/y/z.o"], &["a.c", "x/y/z.oo", "o"]);
    }

    #[test]
    fn anchored_pattern_matches_only_at_the_root() {
        let r = rules(&["/todo.txt"]);
        assert_ignored(&r, &["todo.txt"], &["notes/todo.txt"]);
    }

    #[test]
    fn pattern_with_slash_is_relative_to_the_root() {
        let r = rules(&["doc/*.pdf"]);
        assert_ignored(&r, &["doc/a.pdf"], &["x/doc/a.pdf", "doc/sub/a.pdf"]);
    }

    #[test]
    fn dir_only_pattern_ignores_everything_below_but_not_a_file_of_that_name() {
        let r = rules(&["build/"]);
        assert_ignored(
            &r,
            &["build/a/b.o", "build/x", "src/build/y"],
            &["build", "src/build", "builder/x"],
        );
        assert!(r.is_ignored_dir(&p("build")));
        assert!(r.is_ignored_dir(&p("src/build")));
        assert!(!r.is_ignored_dir(&p("src")));
    }

    #[test]
    fn name_pattern_ignores_a_directory_of_that_name_and_its_contents() {
        let r = rules(&["node_modules"]);
        assert_ignored(
            &r,
            &["node_modules", "web/node_modules/a/b.js"],
            &["web/a.js"],
        );
    }

    #[test]
    fn double_star_patterns() {
        let r = rules(&["**/cache/**", "a/**/z.txt"]);
        assert_ignored(
            &r,
            &["cache/x", "p/q/cache/r/s", "a/z.txt", "a/b/c/z.txt"],
            &["cache", "p/cache", "b/a/z.txt", "a/b/z.txt.bak"],
        );
        let r = rules(&["logs/**"]);
        assert_ignored(&r, &["logs/a", "logs/b/c"], &["logs", "x/logs/a"]);
    }

    #[test]
    fn negation_re_includes_a_file() {
        let r = rules(&["*.log", "!keep.log"]);
        assert_ignored(&r, &["a.log", "d/b.log"], &["keep.log", "d/keep.log"]);
        // Order matters: the last matching pattern wins.
        let r = rules(&["!keep.log", "*.log"]);
        assert_ignored(&r, &["keep.log"], &[]);
    }

    #[test]
    fn negation_cannot_re_include_below_an_excluded_directory() {
        let r = rules(&["build/", "!build/keep.txt"]);
        assert_ignored(&r, &["build/keep.txt", "build/other"], &[]);
        // Excluding the contents instead of the directory allows it, as in git.
        let r = rules(&["build/*", "!build/keep.txt"]);
        assert_ignored(&r, &["build/other", "build/sub/x"], &["build/keep.txt"]);
    }

    #[test]
    fn file_comments_blank_lines_and_escapes() {
        let r = from_file(
            "# a comment\n\n   \n*.bak\n\\#literal\n\\!bang\ntrailing.txt   \r\n/anchored\n",
        );
        assert_ignored(
            &r,
            &[
                "x.bak",
                "d/x.bak",
                "#literal",
                "!bang",
                "trailing.txt",
                "anchored",
            ],
            &["# a comment", "a comment", "d/anchored", "x.bakk"],
        );
    }

    #[test]
    fn file_supports_negation_anchoring_dirs_and_double_star() {
        let r = from_file("target/\n/secret.env\n*.tmp\n!important.tmp\n**/gen/**\n");
        assert_ignored(
            &r,
            &["target/debug/app", "secret.env", "a.tmp", "x/gen/y.rs"],
            &["sub/secret.env", "important.tmp", "target", "gen"],
        );
    }

    #[test]
    fn later_files_override_earlier_ones() {
        let mut r = from_file("*.log\n");
        assert!(r.is_ignored(&p("a.log")));
        assert!(r.add_file("destination:.syncignore", "!a.log\n").is_ok());
        assert_ignored(&r, &["b.log"], &["a.log"]);
    }

    #[test]
    fn explicit_patterns_win_over_file_negations() {
        let mut r = rules(&["*.iso"]);
        assert!(r.add_file(SYNCIGNORE_FILE, "!big.iso\nnotes.txt\n").is_ok());
        assert_ignored(&r, &["big.iso", "a.iso", "notes.txt"], &["a.txt"]);
        // An explicit negation likewise overrides a file's exclusion.
        let mut r = rules(&["!notes.txt"]);
        assert!(r.add_file(SYNCIGNORE_FILE, "*.txt\n").is_ok());
        assert_ignored(&r, &["a.txt"], &["notes.txt"]);
    }

    #[test]
    fn state_folder_and_temp_files_are_always_ignored() {
        let r = rules(&[
            "!.syncengine",
            "!.syncengine/",
            "!.syncengine/**",
            "!*",
            "!**/.syncengine-tmp-*",
        ]);
        assert_ignored(
            &r,
            &[
                ".syncengine",
                ".syncengine/trash/20240101T000000Z/a.txt",
                ".syncengine/state.db",
                ".syncengine-tmp-abc",
                "a/b/.syncengine-tmp-abc",
                "a/.syncengine-tmp-dir/c.txt",
            ],
            &["a.txt"],
        );
        assert!(r.is_ignored_dir(&p(".syncengine")));
    }

    #[test]
    fn engine_folders_below_the_root_are_ours_but_lookalikes_are_not() {
        let r = IgnoreRules::default();
        // A nested pair's root-id and trash (red-team R4): never synced by an outer pair.
        assert_ignored(
            &r,
            &["sub/.syncengine/x", "a/b/.syncengine/root-id"],
            &[
                "sub/.syncengine",
                ".syncengine2/x",
                ".syncengine.txt",
                "x.syncengine-tmp-1",
            ],
        );
    }

    #[test]
    fn own_dirs_are_ignored_whatever_the_patterns() {
        let mut r = rules(&["!**"]);
        r.add_own_dir(p("home/.local/state/syncengine"));
        assert!(r.is_own(&p("home/.local/state/syncengine/ab.db-wal")));
        assert!(r.is_ignored(&p("home/.local/state/syncengine/ab.lock")));
        assert!(r.is_ignored_dir(&p("home/.local/state/syncengine")));
        assert!(!r.is_ignored(&p("home/.local/state/syncengine2/x")));
        assert!(!r.is_ignored_dir(&p("home/.local/state")));
    }

    #[test]
    fn only_the_exact_temp_format_old_enough_is_stale() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let old = Some(now - 25 * hour);
        let name = temp_file_name(0x0123_4567_89ab_cdef);
        assert_eq!(name, ".syncengine-tmp-0123456789abcdef");
        assert!(is_stale_temp(&name, old, now));
        // Younger than a day: maybe another machine's write in progress.
        assert!(!is_stale_temp(&name, Some(now - 23 * hour), now));
        assert!(!is_stale_temp(&name, Some(now + hour), now));
        assert!(!is_stale_temp(&name, None, now));
        // Names that only resemble the format are never ours to remove.
        for other in [
            ".syncengine-tmp-0123456789ABCDEF",
            ".syncengine-tmp-0123456789abcde",
            ".syncengine-tmp-0123456789abcdef0",
            ".syncengine-tmp-0123456789abcdeg",
            ".syncengine-tmp-old-0123456789abcdef",
            ".syncengine-tmp-0123456789abcdef.txt",
            "x.syncengine-tmp-0123456789abcdef",
            ".syncengine-tmp-",
        ] {
            assert!(!is_stale_temp(other, old, now), "{other}");
        }
        let found = StaleTemps::default();
        assert!(found.consider("/r/a", &name, old));
        assert!(!found.consider("/r/b", &name, Some(now)));
        assert!(found.consider("/r/a", &name, old));
        assert_eq!(found.take(), vec!["/r/a".to_string()]);
        assert!(found.take().is_empty());
    }

    #[test]
    fn temp_folders_are_noted_only_as_folders_in_their_exact_format() {
        let now = SystemTime::now();
        let old = Some(now - Duration::from_secs(25 * 3600));
        let anchor = temp_dir_name(0x0123_4567_89ab_cdef);
        assert_eq!(anchor, ".syncengine-tmp-anchor-0123456789abcdef");
        assert!(is_stale_temp(&anchor, old, now));
        for other in [
            ".syncengine-tmp-anchor-0123456789ABCDEF",
            ".syncengine-tmp-anchor-0123456789abcde",
            ".syncengine-tmp-anchor-",
            ".syncengine-tmp-anchors-0123456789abcdef",
        ] {
            assert!(!is_temp_dir_name(other), "{other}");
        }
        let found = StaleTemps::default();
        // A file with a temp folder's name, or a folder with a temp file's: not ours.
        assert!(!found.consider("/r/f", &anchor, old));
        assert!(!found.consider_dir("/r/d", &temp_file_name(1), old));
        assert!(found.consider_dir("/r/a/x", &anchor, old));
        assert!(found.consider_dir("/r/b/x", &anchor, old));
        assert!(!found.consider_dir("/r/c/x", &anchor, Some(now)));
        assert_eq!(
            found.take_stale_where(|l| l.starts_with("/r/a/")),
            ["/r/a/x"]
        );
        assert!(
            found
                .take_stale_where(|l| l.starts_with("/r/a/"))
                .is_empty()
        );
        assert_eq!(found.take(), ["/r/b/x"]);
    }

    #[test]
    fn syncignore_is_synced_unless_the_user_says_otherwise() {
        let r = from_file("*.tmp\n");
        assert_ignored(&r, &[], &[SYNCIGNORE_FILE, "sub/.syncignore"]);
        let r = from_file(".syncignore\n");
        assert_ignored(&r, &[SYNCIGNORE_FILE], &[]);
        assert_eq!(SYNCIGNORE_FILE, ".syncignore");
    }

    #[test]
    fn invalid_explicit_pattern_is_an_error_naming_it() {
        let err = match IgnoreRules::new(&["ok".to_string(), "[z-a]".to_string()]) {
            Ok(_) => panic!("invalid range accepted"),
            Err(e) => e,
        };
        assert!(matches!(err, Error::Other { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("[z-a]") && msg.contains("--exclude"), "{msg}");

        let err = IgnoreRules::new(&["a\nb".to_string()]).err();
        assert!(err.is_some_and(|e| e.to_string().contains("line break")));
    }

    #[test]
    fn invalid_file_line_is_an_error_naming_origin_and_line_and_keeps_the_rules() {
        let mut r = from_file("*.log\n");
        let err = match r.add_file("source:.syncignore", "*.bak\n\n[z-a]\n") {
            Ok(()) => panic!("invalid range accepted"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(
            msg.contains("source:.syncignore:3") && msg.contains("[z-a]"),
            "{msg}"
        );
        // Nothing of the failed file was applied.
        assert_ignored(&r, &["a.log"], &["a.bak"]);
    }

    fn with_includes(r: IgnoreRules, includes: &[&str]) -> IgnoreRules {
        let owned: Vec<String> = includes.iter().map(|s| s.to_string()).collect();
        match r.with_includes(&owned) {
            Ok(r) => r,
            Err(e) => panic!("bad test includes {includes:?}: {e}"),
        }
    }

    #[test]
    fn includes_keep_only_matching_files_at_any_depth_and_never_prune_folders() {
        let r = with_includes(IgnoreRules::default(), &["*.jpg", "*.png"]);
        assert_ignored(
            &r,
            &["a.txt", "x/y/notes.md", SYNCIGNORE_FILE, "jpg", "a.jpg.bak"],
            &["a.jpg", "x/y/z/b.png", "a b/ü.jpg"],
        );
        for dir in ["x", "x/y", "photos.jpg"] {
            assert!(!r.is_ignored_dir(&p(dir)), "{dir} pruned");
        }
        // The engine's own files stay out even when a pattern matches them.
        let r = with_includes(IgnoreRules::default(), &["*"]);
        assert_ignored(&r, &[".syncengine/root-id", "a/.syncengine-tmp-1"], &["a"]);
    }

    #[test]
    fn anchored_and_folder_includes() {
        let r = with_includes(IgnoreRules::default(), &["/top.txt", "docs/*.md", "keep/"]);
        assert_ignored(
            &r,
            &[
                "x/top.txt",
                "x/docs/a.md",
                "docs/sub/a.md",
                "keep",
                "keeper/a",
            ],
            &["top.txt", "docs/a.md", "keep/a", "x/keep/b/c"],
        );
        let r = with_includes(IgnoreRules::default(), &["photos/**"]);
        assert_ignored(
            &r,
            &["a/photos/x", "photos"],
            &["photos/x", "photos/y/z.jpg"],
        );
    }

    #[test]
    fn an_exclude_wins_over_an_include_from_either_source() {
        let mut r = with_includes(rules(&["tmp/", "secret*"]), &["*.jpg"]);
        assert_ignored(&r, &["tmp/a.jpg", "x/secret.jpg", "a.txt"], &["a.jpg"]);
        assert!(r.add_file(SYNCIGNORE_FILE, "raw/\n!a.txt\n").is_ok());
        // A file's negation cannot include what the includes leave out.
        assert_ignored(&r, &["raw/b.jpg", "a.txt"], &["b.jpg"]);
    }

    #[test]
    fn invalid_or_negated_include_is_an_error_naming_it() {
        for (bad, says) in [
            ("!*.jpg", "cannot be negated"),
            ("[z-a]", "[z-a]"),
            ("a\nb", "line break"),
        ] {
            let err = match IgnoreRules::default().with_includes(&[bad.to_string()]) {
                Ok(_) => panic!("{bad:?} accepted"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(says) && err.contains("--include"), "{err}");
        }
        // An escaped `!` is a name.
        let r = with_includes(IgnoreRules::default(), &["\\!bang"]);
        assert_ignored(&r, &["bang"], &["!bang"]);
    }

    #[test]
    fn matching_is_case_sensitive_and_handles_hostile_names() {
        let r = rules(&["*.JPG", "what?", "a b/"]);
        assert_ignored(
            &r,
            &["x.JPG", "what!", "a b/c", "ünï/what?"],
            &["x.jpg", "what", "a b", "it's"],
        );
    }
}
