//! [`Entry`]: what a listing or `stat` says about one file.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

    /// Returns the mtime as nanoseconds since the Unix epoch (negative before it).
    pub fn mtime_nanos(&self) -> Option<i64> {
        self.mtime.map(system_time_to_nanos)
    }
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
    fn hash_tokens_round_trip() {
        let h = ContentHash::Md5([7; 16]);
        assert_eq!(ContentHash::from_token(&h.to_token()), Some(h));
        assert_eq!(ContentHash::from_token("sha1:00"), None);
    }
}
