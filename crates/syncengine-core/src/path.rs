//! [`RelPath`]: a validated path relative to a client's root, ordered byte-wise.

use std::borrow::Borrow;
use std::fmt;

use crate::error::{Error, Result};

/// Decodes the `%XX` escapes of one URL component: a user name, a password, a path.
///
/// Every backend and the command line decode location URLs with this one function, so a
/// name means the same everywhere. A `%` that is not followed by two hex digits is kept as
/// written, as the `url` crate and browsers do.
///
/// ```
/// use syncengine_core::path::percent_decode;
///
/// assert_eq!(percent_decode("my%20photos/%C3%A9t%C3%A9").unwrap(), "my photos/été");
/// assert_eq!(percent_decode("100%").unwrap(), "100%");
/// assert!(percent_decode("%FF").is_err());
/// ```
///
/// # Errors
/// [`NotUtf8`] when the decoded bytes are not UTF-8. The error does not repeat the text,
/// which may be a password.
pub fn percent_decode(component: &str) -> std::result::Result<String, NotUtf8> {
    percent_encoding::percent_decode_str(component)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| NotUtf8)
}

/// A percent-encoded URL component that does not decode to UTF-8 (see [`percent_decode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8;

impl fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("its %-escapes do not decode to UTF-8")
    }
}

impl std::error::Error for NotUtf8 {}

/// The longest file name (one path segment), in bytes, that common filesystems accept (ext4,
/// XFS, btrfs, APFS; NTFS counts 255 UTF-16 units, which is never fewer bytes).
pub const NAME_MAX: usize = 255;

/// A validated, `/`-separated path relative to a storage client's root.
///
/// Every path the engine handles passes through [`RelPath::new`], so a `RelPath` is never
/// empty, never absolute and never escapes the root:
///
/// - no leading or trailing `/`, no empty segments (`a//b`);
/// - no `.` or `..` segments;
/// - no NUL bytes.
///
/// Ordering is the byte-wise order of the UTF-8 string ("canonical order"): listings, the
/// state store and the reconciler all agree on it, which is what lets the reconciler merge
/// them in one pass.
///
/// ```
/// use syncengine_core::RelPath;
///
/// let p = RelPath::new("photos/2024/cat.jpg").unwrap();
/// assert_eq!(p.file_name(), "cat.jpg");
/// assert_eq!(p.parent().unwrap().as_str(), "photos/2024");
/// assert!(RelPath::new("../etc/passwd").is_err());
/// // canonical order: "a/b" sorts after "a.b" because '/' (0x2f) > '.' (0x2e)
/// assert!(RelPath::new("a.b").unwrap() < RelPath::new("a/b").unwrap());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RelPath(String);

impl RelPath {
    /// Validates `path` and wraps it.
    ///
    /// # Errors
    /// [`Error::InvalidPath`] when the path is empty, absolute, has empty, `.` or `..`
    /// segments, a trailing `/`, or contains a NUL byte.
    pub fn new(path: impl Into<String>) -> Result<Self> {
        let path = path.into();
        match validate(&path) {
            Ok(()) => Ok(RelPath(path)),
            Err(reason) => Err(Error::InvalidPath { path, reason }),
        }
    }

    /// Returns the path as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the last segment of the path.
    pub fn file_name(&self) -> &str {
        match self.0.rfind('/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// Returns the parent path, or `None` for a path of one segment.
    pub fn parent(&self) -> Option<RelPath> {
        self.0.rfind('/').map(|i| RelPath(self.0[..i].to_owned()))
    }

    /// Returns the segments of the path.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Appends `child` (one or more segments) to this path.
    ///
    /// # Errors
    /// [`Error::InvalidPath`] when `child` is not a valid relative path.
    pub fn join(&self, child: &str) -> Result<RelPath> {
        RelPath::new(format!("{}/{}", self.0, child))
    }

    /// Returns true when `self` lies strictly below the directory `prefix`.
    ///
    /// `a/b` is below `a`; `ab` and `a` are not.
    pub fn is_below(&self, prefix: &RelPath) -> bool {
        self.0.len() > prefix.0.len()
            && self.0.starts_with(&prefix.0)
            && self.0.as_bytes()[prefix.0.len()] == b'/'
    }

    /// Returns the path with `suffix` inserted before the extension of its file name.
    ///
    /// `docs/report.pdf` with `.conflict-x` gives `docs/report.conflict-x.pdf`; a name
    /// without an extension (or a dot-file like `.bashrc`) gets the suffix at the end.
    pub fn with_stem_suffix(&self, suffix: &str) -> Result<RelPath> {
        let name = self.file_name();
        let dir_len = self.0.len() - name.len();
        let (stem, ext) = match name.rfind('.') {
            Some(i) if i > 0 => (&name[..i], &name[i..]),
            _ => (name, ""),
        };
        RelPath::new(format!("{}{}{}{}", &self.0[..dir_len], stem, suffix, ext))
    }

    /// Returns the path with `suffix` inserted before the extension of its file name, the
    /// file name cut to at most `max_name_bytes` bytes.
    ///
    /// Like [`RelPath::with_stem_suffix`], but a name that would grow past the limit (most
    /// filesystems allow [`NAME_MAX`] bytes per name) keeps its extension and the whole
    /// suffix and loses the end of its stem, cut at a character boundary. When the suffix
    /// and extension alone leave no room, the extension counts as part of the stem.
    ///
    /// ```
    /// use syncengine_core::RelPath;
    ///
    /// let long = format!("d/{}.pdf", "é".repeat(100)); // a 204-byte name
    /// let p = RelPath::new(long).unwrap();
    /// let c = p.with_stem_suffix_max(".conflict-20240101T000000Z-source", 200).unwrap();
    /// assert!(c.file_name().len() <= 200);
    /// assert!(c.file_name().ends_with("é.conflict-20240101T000000Z-source.pdf"));
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidPath`] when `suffix` alone does not fit in `max_name_bytes`.
    pub fn with_stem_suffix_max(&self, suffix: &str, max_name_bytes: usize) -> Result<RelPath> {
        self.suffixed(suffix, max_name_bytes, true)
    }

    /// Returns the path with `suffix` appended to its file name, the file name cut to at
    /// most `max_name_bytes` bytes (the end of the name gives way, as in
    /// [`RelPath::with_stem_suffix_max`]): for a name whose last dot starts no extension.
    ///
    /// ```
    /// use syncengine_core::RelPath;
    ///
    /// let p = RelPath::new("d/notes.conflict-20240101T000000Z-source").unwrap();
    /// let c = p.with_name_suffix_max(".conflict-20240202T000000Z-destination", 255).unwrap();
    /// assert_eq!(
    ///     c.as_str(),
    ///     "d/notes.conflict-20240101T000000Z-source.conflict-20240202T000000Z-destination"
    /// );
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidPath`] when `suffix` alone does not fit in `max_name_bytes`.
    pub fn with_name_suffix_max(&self, suffix: &str, max_name_bytes: usize) -> Result<RelPath> {
        self.suffixed(suffix, max_name_bytes, false)
    }

    fn suffixed(&self, suffix: &str, max_name_bytes: usize, keep_ext: bool) -> Result<RelPath> {
        let name = self.file_name();
        let dir_len = self.0.len() - name.len();
        let (mut stem, mut ext) = match name.rfind('.') {
            Some(i) if i > 0 && keep_ext => (&name[..i], &name[i..]),
            _ => (name, ""),
        };
        if suffix.len() + ext.len() >= max_name_bytes {
            (stem, ext) = (name, "");
        }
        let Some(room) = max_name_bytes.checked_sub(suffix.len() + ext.len()) else {
            return Err(Error::InvalidPath {
                path: self.0.clone(),
                reason: format!("the suffix {suffix:?} is longer than a file name may be"),
            });
        };
        let mut cut = stem.len().min(room);
        while !stem.is_char_boundary(cut) {
            cut -= 1;
        }
        RelPath::new(format!(
            "{}{}{}{}",
            &self.0[..dir_len],
            &stem[..cut],
            suffix,
            ext
        ))
    }

    /// Consumes the path and returns the inner string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Refuses `path` when one of its names is longer than `max_name_bytes` bytes: the one rule
/// backends that keep names in a file system (WebDAV, SFTP: [`NAME_MAX`] on common file
/// systems) apply before they write, so a file is refused with its own error instead of
/// failing on the server half-way (a temp file renamed to a name the server cannot create).
///
/// ```
/// use syncengine_core::RelPath;
/// use syncengine_core::path::{NAME_MAX, check_name_lengths};
///
/// assert!(check_name_lengths(&RelPath::new("a/b.txt").unwrap(), NAME_MAX).is_ok());
/// let long = RelPath::new(format!("a/{}", "x".repeat(256))).unwrap();
/// assert!(check_name_lengths(&long, NAME_MAX).is_err());
/// ```
///
/// # Errors
/// [`Error::InvalidPath`] naming the segment's length, the limit and the fix (a shorter name).
pub fn check_name_lengths(path: &RelPath, max_name_bytes: usize) -> Result<()> {
    match path.segments().find(|s| s.len() > max_name_bytes) {
        None => Ok(()),
        Some(long) => Err(Error::InvalidPath {
            path: path.as_str().to_owned(),
            reason: format!(
                "a name of {} bytes is longer than the {max_name_bytes} bytes this storage can                  hold (the file is not written); give it a shorter name",
                long.len()
            ),
        }),
    }
}

fn validate(path: &str) -> std::result::Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    if path.starts_with('/') {
        return Err("absolute path".into());
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err("empty segment (leading, trailing or double '/')".into()),
            "." | ".." => return Err(format!("'{segment}' segment")),
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for RelPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for RelPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for RelPath {
    type Error = Error;
    fn try_from(value: &str) -> Result<Self> {
        RelPath::new(value)
    }
}

impl TryFrom<String> for RelPath {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        RelPath::new(value)
    }
}

impl std::str::FromStr for RelPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RelPath::new(s)
    }
}

impl<'de> serde::Deserialize<'de> for RelPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RelPath::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_invalid_paths() {
        for bad in ["", "/a", "a/", "a//b", ".", "..", "a/../b", "./a", "a\0b"] {
            assert!(RelPath::new(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn accepts_hostile_but_valid_names() {
        for ok in [
            "a b",
            "it's",
            "q\"uote",
            "#hash",
            "what?",
            "ünïcødé/日本",
            "a\\b",
            "..a",
            "a..",
        ] {
            assert_eq!(RelPath::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn orders_bytewise() {
        let mut v: Vec<RelPath> = ["a/b", "a-b", "a.b", "a b", "a0", "aB", "é", "z", "a~"]
            .into_iter()
            .map(|s| RelPath::new(s).unwrap())
            .collect();
        v.sort();
        let got: Vec<&str> = v.iter().map(|p| p.as_str()).collect();
        assert_eq!(
            got,
            ["a b", "a-b", "a.b", "a/b", "a0", "aB", "a~", "z", "é"]
        );
    }

    #[test]
    fn prefix_boundaries() {
        let a = RelPath::new("a").unwrap();
        assert!(RelPath::new("a/b").unwrap().is_below(&a));
        assert!(!RelPath::new("ab").unwrap().is_below(&a));
        assert!(!a.is_below(&a));
    }

    #[test]
    fn stem_suffix() {
        let p = RelPath::new("d/report.pdf").unwrap();
        assert_eq!(p.with_stem_suffix(".x").unwrap().as_str(), "d/report.x.pdf");
        let p = RelPath::new(".bashrc").unwrap();
        assert_eq!(p.with_stem_suffix(".x").unwrap().as_str(), ".bashrc.x");
        let p = RelPath::new("Makefile").unwrap();
        assert_eq!(p.with_stem_suffix(".x").unwrap().as_str(), "Makefile.x");
    }

    #[test]
    fn stem_suffix_max_fits_the_name_limit() {
        let suffix = ".conflict-20240101T000000Z-destination-2";
        // Short names are unchanged.
        let p = RelPath::new("d/report.pdf").unwrap();
        assert_eq!(
            p.with_stem_suffix_max(suffix, NAME_MAX).unwrap(),
            p.with_stem_suffix(suffix).unwrap()
        );
        // A 250-byte name keeps its extension and the suffix; the stem is cut.
        let name = format!("{}.txt", "a".repeat(246));
        let p = RelPath::new(format!("dir/{name}")).unwrap();
        let c = p.with_stem_suffix_max(suffix, NAME_MAX).unwrap();
        assert_eq!(c.file_name().len(), NAME_MAX);
        assert!(c.as_str().starts_with("dir/aaaa"));
        assert!(c.file_name().ends_with(&format!("{suffix}.txt")), "{c}");
        // Multi-byte characters are never split.
        let p = RelPath::new(format!("{}.md", "日".repeat(84))).unwrap(); // 255 bytes
        let c = p.with_stem_suffix_max(suffix, NAME_MAX).unwrap();
        assert!(c.file_name().len() <= NAME_MAX);
        assert!(c.file_name().ends_with(&format!("日{suffix}.md")), "{c}");
        // An "extension" too long to keep counts as stem.
        let p = RelPath::new(format!("x.{}", "e".repeat(250))).unwrap();
        let c = p.with_stem_suffix_max(suffix, NAME_MAX).unwrap();
        assert_eq!(c.file_name().len(), NAME_MAX);
        assert!(c.file_name().starts_with("x.eee") && c.file_name().ends_with(suffix));
        // A suffix that cannot fit at all is an error, not an invalid name.
        assert!(p.with_stem_suffix_max(suffix, 10).is_err());
    }
}
