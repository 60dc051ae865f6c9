//! [`Capabilities`]: the facts about a backend that the planner and conformance suite branch on.

use std::time::Duration;

use crate::entry::HashKind;

/// What a storage client can do. Plain facts; the engine branches on these, never on names.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// `list` yields paths in canonical (byte-wise) order. When false the engine sorts the
    /// listing itself with bounded memory; when true it still checks the order as it streams.
    pub ordered_listing: bool,
    /// `write` can set the modification time given in [`WriteOptions::mtime`](crate::WriteOptions).
    pub set_mtime: bool,
    /// The precision at which modification times are kept and compared.
    pub mtime_precision: Duration,
    /// A content hash the backend reports in listings at no extra cost.
    pub listed_hash: Option<HashKind>,
    /// `Entry::etag` is present and changes whenever the content changes.
    pub etag: bool,
    /// `Entry::file_id` is present and survives renames (inode).
    pub file_id: bool,
    /// `copy` is done server-side (no bytes through the client).
    pub server_side_copy: bool,
    /// `rename` is a native, atomic move (not copy + delete).
    pub native_rename: bool,
    /// `WriteMode::Create` and `WriteMode::Update` are enforced by the backend.
    pub conditional_write: bool,
    /// Paths differing only in letter case name the same file.
    pub case_insensitive: bool,
    /// The backend has real directories (they can exist empty and are removed when emptied).
    pub real_directories: bool,
}

impl Default for Capabilities {
    /// The most conservative capabilities: nothing is promised.
    fn default() -> Self {
        Capabilities {
            ordered_listing: false,
            set_mtime: false,
            mtime_precision: Duration::from_secs(1),
            listed_hash: None,
            etag: false,
            file_id: false,
            server_side_copy: false,
            native_rename: false,
            conditional_write: false,
            case_insensitive: false,
            real_directories: false,
        }
    }
}
