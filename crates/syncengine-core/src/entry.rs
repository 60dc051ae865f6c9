//! [`Entry`]: what a listing or `stat` says about one file.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::capabilities::Capabilities;
use crate::path::RelPath;

/// A content hash a backend knows or the engine computed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ContentHash {
    /// MD5 of the whole content (S3 single-part ETag, computed on local disk).
    Md5([u8; 16]),
}

impl ContentHash {
    /// Returns the kind of this hash.
    pub fn kind(&self) -> HashKind {
        match self {
            ContentHash::Md5(_) => HashKind::Md5,
        }
    }

    /// Returns the hash as lowercase hex, prefixed with its kind (`md5:…`).
    pub fn to_token(&self) -> String {
        match self {
            ContentHash::Md5(b) => format!("md5:{}", hex::encode(b)),
        }
    }

    /// Parses what [`ContentHash::to_token`] wrote.
    pub fn from_token(token: &str) -> Option<ContentHash> {
        let hexpart = token.strip_prefix("md5:")?;
        let mut out = [0u8; 16];
        hex::decode_to_slice(hexpart, &mut out).ok()?;
        Some(ContentHash::Md5(out))
    }
}

/// Kinds of content hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum HashKind {
    /// MD5.
    Md5,
}

/// One file as a backend sees it.
///
/// Only files are listed: directories are implied by the paths below them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// Path relative to the client's root.
    pub path: RelPath,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, as precise as the backend keeps it (see
    /// [`Capabilities::mtime_precision`](crate::Capabilities::mtime_precision)).
    pub mtime: Option<SystemTime>,
    /// Opaque version token that changes whenever the content changes (ETag, version id).
    pub etag: Option<String>,
    /// Content hash, where the backend has it for free.
    pub hash: Option<ContentHash>,
    /// A file identity that survives renames (the inode on local disk).
    pub file_id: Option<u64>,
    /// When the file was created (`statx` birth time on local disk): kept across renames and
    /// new for every new file, so it tells a renamed file from a new one that reused a freed
    /// `file_id`.
    pub birth_time: Option<SystemTime>,
    /// Unix permission bits (`0o7777`: the `rwx` bits plus setuid, setgid and sticky; never
    /// the file type), where the backend keeps them: local disk and SFTP. `None` on object
    /// stores and WebDAV.
    ///
    /// Metadata only: they are not part of the content token, so a change of permissions
    /// alone is not a change of the file and is not synced. The engine passes them to the
    /// write that creates a file on the other side ([`WriteOptions::permissions`]), so a
    /// private file does not become readable by others there.
    ///
    /// [`WriteOptions::permissions`]: crate::WriteOptions::permissions
    pub permissions: Option<u32>,
}

/// What tells one version of a file from the next, for a check before it is replaced or
/// removed: the size and modification time, and the version token (ETag) and file identity
/// (inode) where both the listing and the check know them.
///
/// Used by [`WriteMode::IfUnchanged`](crate::WriteMode::IfUnchanged) on backends without
/// version tokens (local disk, SFTP): the engine replaces a file only while it is still the
/// version it listed, so a file the user saved meanwhile is never overwritten.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use syncengine_core::{Entry, RelPath, Version};
///
/// let listed = Entry::new(RelPath::new("a.txt")?, 3).with_mtime(UNIX_EPOCH).with_file_id(7);
/// let version = Version::of(&listed);
/// assert!(version.matches(&listed));
/// // The user saved a new file of the same size by rename: another inode.
/// let saved = Entry::new(RelPath::new("a.txt")?, 3).with_mtime(UNIX_EPOCH).with_file_id(8);
/// assert!(!version.matches(&saved));
/// let touched = listed.clone().with_mtime(UNIX_EPOCH + Duration::from_secs(1));
/// assert!(!version.matches(&touched));
/// # Ok::<(), syncengine_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// Size in bytes.
    pub size: u64,
    /// Modification time.
    pub mtime: Option<SystemTime>,
    /// Version token, where the backend has one.
    pub etag: Option<String>,
    /// File identity (inode), where the backend has one.
    pub file_id: Option<u64>,
}

impl Version {
    /// The version `entry` describes.
    pub fn of(entry: &Entry) -> Self {
        Version {
            size: entry.size,
            mtime: entry.mtime,
            etag: entry.etag.clone(),
            file_id: entry.file_id,
        }
    }

    /// Whether `now` (a fresh `stat`) is still this version. A token that only one side knows
    /// is not compared.
    pub fn matches(&self, now: &Entry) -> bool {
        fn agree<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
            a.is_none() || b.is_none() || a == b
        }
        self.size == now.size
            && self.mtime == now.mtime
            && agree(&self.etag, &now.etag)
            && agree(&self.file_id, &now.file_id)
    }
}

impl Entry {
    /// Creates an entry with only a path and a size.
    pub fn new(path: RelPath, size: u64) -> Self {
        Entry {
            path,
            size,
            mtime: None,
            etag: None,
            hash: None,
            file_id: None,
            birth_time: None,
            permissions: None,
        }
    }

    /// Sets the modification time.
    pub fn with_mtime(mut self, mtime: SystemTime) -> Self {
        self.mtime = Some(mtime);
        self
    }

    /// Sets the version token.
    pub fn with_etag(mut self, etag: impl Into<String>) -> Self {
        self.etag = Some(etag.into());
        self
    }

    /// Sets the content hash.
    pub fn with_hash(mut self, hash: ContentHash) -> Self {
        self.hash = Some(hash);
        self
    }

    /// Sets the file identity.
    pub fn with_file_id(mut self, id: u64) -> Self {
        self.file_id = Some(id);
        self
    }

    /// Sets the birth (creation) time.
    pub fn with_birth_time(mut self, birth: SystemTime) -> Self {
        self.birth_time = Some(birth);
        self
    }

    /// Sets the Unix permission bits (kept as `bits & 0o7777`).
    pub fn with_permissions(mut self, bits: u32) -> Self {
        self.permissions = Some(bits & 0o7777);
        self
    }

    /// Returns the mtime as nanoseconds since the Unix epoch (negative before it).
    pub fn mtime_nanos(&self) -> Option<i64> {
        self.mtime.map(system_time_to_nanos)
    }

    /// Returns the birth time as nanoseconds since the Unix epoch.
    pub fn birth_nanos(&self) -> Option<i64> {
        self.birth_time.map(system_time_to_nanos)
    }

    /// Returns a hash of this entry's content that the listing gave for free: [`Entry::hash`],
    /// or else the ETag read as an MD5 where `caps` says the backend's ETags are MD5s
    /// ([`Capabilities::etag_is_md5`]; never a multipart `…-N` ETag, see [`md5_of_etag`]).
    ///
    /// This is the one place where an ETag may stand for content: everywhere else an ETag is
    /// only a version token, which servers may derive from size and mtime (Apache, nginx).
    pub fn content_hash(&self, caps: &Capabilities) -> Option<ContentHash> {
        match (&self.hash, &self.etag) {
            (Some(h), _) => Some(h.clone()),
            (None, Some(tag)) if caps.etag_is_md5 => md5_of_etag(tag),
            _ => None,
        }
    }
}

/// The one form in which backends store an ETag in an [`Entry`], so that a listing, a `stat`
/// and a write's answer agree on the same version: surrounding blanks trimmed, weakness
/// dropped, always quoted.
///
/// Servers differ in how they spell one ETag: Azure lists it bare and returns it quoted from
/// `HEAD` and `PUT`; wsgidav sends it unquoted in `PROPFIND` and quoted in headers; Apache
/// marks it weak (`W/`) for about a second after a write, then strong, with the same value.
///
/// ```
/// use syncengine_core::entry::normalize_etag;
///
/// assert_eq!(normalize_etag("0x8D1"), "\"0x8D1\"");
/// assert_eq!(normalize_etag("\"abc\""), "\"abc\"");
/// assert_eq!(normalize_etag(" W/\"abc\" "), "\"abc\"");
/// ```
pub fn normalize_etag(raw: &str) -> String {
    let t = raw.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    if t.starts_with('"') {
        t.to_owned()
    } else {
        format!("\"{t}\"")
    }
}

/// Reads an ETag as the MD5 of the content, when it has the form of one: 32 hex digits,
/// optionally quoted, never weak (`W/…`) and never with a multipart suffix (`…-N`, the MD5 of
/// the parts' MD5s, not of the content).
///
/// Whether a backend's ETags are MD5s at all is a capability
/// ([`Capabilities::etag_is_md5`]); this function only checks the form.
pub fn md5_of_etag(etag: &str) -> Option<ContentHash> {
    let hexpart = etag.trim();
    if hexpart.starts_with("W/") {
        return None;
    }
    let hexpart = hexpart.strip_prefix('"').unwrap_or(hexpart);
    let hexpart = hexpart.strip_suffix('"').unwrap_or(hexpart);
    if hexpart.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    hex::decode_to_slice(hexpart, &mut out).ok()?;
    Some(ContentHash::Md5(out))
}

/// Converts a [`SystemTime`] to nanoseconds since the Unix epoch, saturating.
pub fn system_time_to_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// Converts nanoseconds since the Unix epoch back to a [`SystemTime`].
pub fn nanos_to_system_time(n: i64) -> SystemTime {
    if n >= 0 {
        UNIX_EPOCH + Duration::from_nanos(n as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(n.unsigned_abs())
    }
}

/// Truncates nanoseconds to a precision (1 s precision turns 1.7 s into 1 s).
pub fn truncate_nanos(n: i64, precision: Duration) -> i64 {
    let p = i64::try_from(precision.as_nanos())
        .unwrap_or(i64::MAX)
        .max(1);
    n.div_euclid(p) * p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_round_trip() {
        for n in [0i64, 1, 1_700_000_000_123_456_789, -5_000_000_001] {
            assert_eq!(system_time_to_nanos(nanos_to_system_time(n)), n);
        }
        assert_eq!(
            truncate_nanos(1_700_000_000, Duration::from_secs(1)),
            1_000_000_000
        );
        assert_eq!(truncate_nanos(-1, Duration::from_secs(1)), -1_000_000_000);
    }

    #[test]
    fn etags_count_as_md5_only_in_md5_form_and_where_the_capability_says_so() {
        let md5 = "9e107d9d372bb6826bd81d3542a419d6";
        assert!(md5_of_etag(&format!("\"{md5}\"")).is_some());
        assert!(md5_of_etag(md5).is_some());
        assert_eq!(md5_of_etag(&format!("\"{md5}-4\"")), None, "multipart");
        assert_eq!(md5_of_etag(&format!("W/\"{md5}\"")), None, "weak");
        assert_eq!(md5_of_etag("\"0x8DBF1234567890A\""), None, "Azure");
        assert_eq!(md5_of_etag("\"1000-6610c2376bbe1\""), None, "Apache");

        let e = Entry::new(RelPath::new("a").unwrap(), 1).with_etag(format!("\"{md5}\""));
        let mut caps = Capabilities::default();
        assert_eq!(
            e.content_hash(&caps),
            None,
            "an ETag is a version token by default"
        );
        caps.etag_is_md5 = true;
        assert_eq!(e.content_hash(&caps), md5_of_etag(md5));
        let listed = e.clone().with_hash(ContentHash::Md5([1; 16]));
        assert_eq!(listed.content_hash(&caps), Some(ContentHash::Md5([1; 16])));
    }

    #[test]
    fn hash_tokens_round_trip() {
        let h = ContentHash::Md5([7; 16]);
        assert_eq!(ContentHash::from_token(&h.to_token()), Some(h));
        assert_eq!(ContentHash::from_token("sha1:00"), None);
    }
}
