//! [`Capabilities`]: the facts about a backend that the planner and conformance suite branch on.

use std::time::Duration;

use crate::entry::HashKind;
use crate::parallel_read::ParallelReads;

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
    /// An ETag in MD5 form (32 hex digits, no `-N` suffix: see
    /// [`md5_of_etag`](crate::entry::md5_of_etag)) is the MD5 of the content: true for S3
    /// objects written in one part without SSE-KMS/SSE-C. False where ETags are opaque version
    /// tokens (Azure, GCS, whose composite objects carry no marker, memory) or derived from
    /// size and mtime (Apache, nginx and wsgidav WebDAV): there an equal ETag says nothing
    /// about content, so it may nominate a rename but never confirm one, and it never verifies
    /// a transfer. Read it through [`Entry::content_hash`](crate::Entry::content_hash).
    pub etag_is_md5: bool,
    /// `Entry::file_id` is present and survives renames (inode).
    pub file_id: bool,
    /// `Entry::birth_time` is present where the storage keeps one (statx on local disk): it
    /// survives renames and is new for every new file, so together with `file_id` it tells a
    /// renamed file from a new one that reused a freed inode.
    pub birth_time: bool,
    /// Reads come from a local disk (no network), so hashing a file on demand is cheap: the
    /// engine hashes such files at any size to confirm a rename, and under `--checksum` hashes
    /// every file the listing gave no hash for.
    pub local_reads: bool,
    /// `copy` is done server-side (no bytes through the client).
    pub server_side_copy: bool,
    /// `rename` is a native, atomic move (not copy + delete).
    pub native_rename: bool,
    /// `WriteMode::Create` and `WriteMode::Update` are enforced by the backend.
    pub conditional_write: bool,
    /// Paths differing only in letter case name the same file.
    pub case_insensitive: bool,
    /// Paths that differ only in Unicode normalisation (NFC `café` vs NFD `cafe\u{301}`)
    /// name the same file (macOS file systems, some SMB/WebDAV servers).
    pub normalization_insensitive: bool,
    /// `case_insensitive` and `normalization_insensitive` are known for sure, so the engine
    /// does not probe the root (see [`crate::folding`]). True for object stores (S3, GCS,
    /// Azure), whose keys are exact byte strings, and for [`MemoryClient`](crate::MemoryClient).
    /// False (the default) wherever a server or disk decides: local disk, SFTP and WebDAV
    /// servers can fold names (a FAT stick, Windows OpenSSH, IIS, a Samba-backed share)
    /// whatever the client declares; the engine probes such roots once per root identity
    /// and uses what it found.
    pub folding_known: bool,
    /// The backend has real directories (they can exist empty and are removed when emptied).
    pub real_directories: bool,
    /// How many actions this backend keeps busy at once when the user named no number
    /// (`--transfers`): object stores answer each request after a round trip of their own,
    /// so small files upload many at a time (S3: 64); `None` keeps the caller's default.
    /// Memory does not grow with it where the backend bounds its buffers by itself (the S3
    /// client's shared upload budget). A hint for front ends such as the CLI, which take the
    /// larger of the two sides'; [`SyncOptions::transfers`](crate::SyncOptions) is what a
    /// run uses.
    pub preferred_transfers: Option<usize>,
    /// How many actions this backend keeps busy at once between two roots of its own kind
    /// (both sides report this backend and this number), when the user named none; counted
    /// like [`preferred_transfers`](Self::preferred_transfers), and only there. The local
    /// disk's: a kernel copy of a small file takes tens of microseconds, and with only a few
    /// in flight its blocking threads wait for the run to hand them the next one (a 100 000-
    /// file first copy took 4.4 s with 8 in flight, 3.8 s with 32). Between a local disk and
    /// a server it plays no part: the server's pace and buffers decide there.
    pub same_kind_transfers: Option<usize>,
    /// Large files are read as several ranges at once, with these settings
    /// ([`crate::parallel_read`]). Set only where a range read
    /// ([`ReadOptions::range`](crate::client::ReadOptions)) transfers just its range and a
    /// read honours [`ReadOptions::version`](crate::client::ReadOptions), so the ranges of one
    /// copy come from one version of the file or the copy fails. `None`: one stream per file.
    pub parallel_reads: Option<ParallelReads>,
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
            etag_is_md5: false,
            file_id: false,
            birth_time: false,
            local_reads: false,
            server_side_copy: false,
            native_rename: false,
            conditional_write: false,
            case_insensitive: false,
            normalization_insensitive: false,
            folding_known: false,
            real_directories: false,
            preferred_transfers: None,
            same_kind_transfers: None,
            parallel_reads: None,
        }
    }
}
