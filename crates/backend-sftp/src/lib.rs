//! SFTP backend for syncengine: an [`SftpClient`] keeps a directory on an SSH server in sync.
//!
//! ```no_run
//! use bytes::Bytes;
//! use syncengine_backend_sftp::SftpBuilder;
//! use syncengine_core::{RelPath, StorageClientExt};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Key, passphrase, password and known_hosts may also come from SYNCENGINE_SFTP_* variables.
//! let client = SftpBuilder::from_env()
//!     .with_url("sftp://me@nas.local:2222/srv/notes")
//!     .with_key_file("/home/me/.ssh/id_ed25519")
//!     .build()?;
//! client.put(&RelPath::new("todo.txt")?, Bytes::from("milk")).await?;
//! let listed = client.list_all(None).await?;
//! assert_eq!(listed[0].path.as_str(), "todo.txt");
//! # Ok(())
//! # }
//! ```
//!
//! # Behavior
//! - **SSH** is [`russh`] (pure Rust, `ring` crypto) with [`russh_sftp`] on top.
//! - **Host keys are verified** against a known_hosts file (default `~/.ssh/known_hosts`;
//!   plain, `[host]:port` and hashed `|1|…` entries). An unknown or changed key is an error
//!   whose message names the key's SHA256 fingerprint. Trust on first use (append an unknown
//!   key to known_hosts) happens only when asked for with
//!   [`SftpBuilder::with_trust_on_first_use`] or `SYNCENGINE_SFTP_TOFU=1`; a *changed* key is
//!   refused even then, and so is a key of a type not recorded for a host that known_hosts
//!   does record (with keys of other types): no second key is added for a known host. Wildcard patterns and `@cert-authority` lines are not understood.
//! - **Authentication**: the configured key file (`SYNCENGINE_SFTP_KEY`, optionally with
//!   `SYNCENGINE_SFTP_KEY_PASSPHRASE`), else `~/.ssh/id_{ed25519,ecdsa,rsa}`; then the keys of
//!   the ssh-agent at `SSH_AUTH_SOCK`; then a password, only when one was given explicitly
//!   (`SYNCENGINE_SFTP_PASSWORD`, the URL, or [`SftpBuilder::with_password`]).
//! - **Sessions**: up to 4 SFTP channels (configurable) over one SSH connection, opened on
//!   demand; requests are pipelined within a channel. A dropped connection is noticed and the
//!   next operation reconnects; connection failures are `Error::Transient`.
//! - **Listing** walks the tree depth-first, sorting each directory's children by name, a
//!   directory as `name/`, so entries come in canonical order. Entries carry size and mtime
//!   (whole seconds: SFTP v3). What the walk cannot see is reported, never left out:
//!   symlinks, devices and sockets, and sub-directories the server will not list (or that
//!   vanish while walked) are `Error::Unlisted` items at their place in canonical order; a
//!   directory holding names that are not UTF-8 or not valid paths is reported as
//!   `Error::Unlisted { contents_only: true, .. }`. A replaced file left aside by an
//!   interrupted replace (see below) makes the path it was moved from unknown, the message
//!   naming the aside file, until the user renames it back or removes it (one whose name does
//!   not say where it came from makes its directory's contents partly unknown). The engine
//!   leaves all of them alone on both sides.
//!   A failure of the root or of the connection ends the listing with an error.
//! - **Transfers** use the request size the server states in `limits@openssh.com` (OpenSSH:
//!   255 KiB), else 32 KiB, with about 2 MiB of a file's requests in flight. The client
//!   prefers AES-GCM ciphers (OpenSSH's ChaCha20-Poly1305, russh's first choice, is several
//!   times slower on the server side), allows 64 KiB SSH packets and an 8 MiB window.
//! - **Writes** go to a temporary sibling `.syncengine-tmp-<random>`, get their mtime (and
//!   permission bits) with an `fsetstat` sent right after the last write and before the
//!   close, in the same round trip (the first write of a client checks with an `lstat` that
//!   the server kept them; one that did not, or refused the `fsetstat`, gets a `setstat` by
//!   path after the close from then on, as every checked replace does), and are renamed into
//!   place. An unchecked replace (`WriteMode::Overwrite`, a
//!   rename over a file) is one `posix-rename@openssh.com` where the server offers it (atomic);
//!   otherwise, and for every checked replace (below), the old file is renamed aside (to
//!   `.syncengine-tmp-old-<hex>-<its name>`), the new one renamed in, and only then is the old
//!   one removed (put back, never over a newer file, if the second rename fails; an error that
//!   cannot put it back names the aside file). A failed,
//!   cancelled or disconnected write removes its temporary file (through a new connection if
//!   the old one died) and leaves the old content. Temporary files are never listed, so a name
//!   starting with `.syncengine-tmp-` cannot be written (`InvalidPath`). The temp's access
//!   time is set to now with its mtime, so until the rename it never looks stale; a temp left
//!   by a killed write is removed by `remove_stale_temps` (after a run, never in a dry run)
//!   once both times are a day old (the core's `is_stale_temp`). A file moved aside
//!   (`.syncengine-tmp-old-…`) and left there (a kill between the renames) is never removed
//!   automatically, it may be the only copy: listings report it (see Listing).
//! - `WriteMode::Create` and `rename` without overwrite check that the target is absent, then
//!   do a plain SFTP rename, which OpenSSH itself refuses onto an existing name (race-free
//!   there; a server whose plain rename replaces leaves a small race window).
//!   `hardlink@openssh.com` is not used: rclone's server acknowledges it without linking.
//!   `WriteMode::Update` is `Unsupported` (no version token to compare and swap);
//!   `WriteMode::IfUnchanged` (every overwrite the engine makes) checks the target's size and
//!   mtime after the upload, right before the rename, and leaves a file saved meanwhile in
//!   place (`PreconditionFailed`). Then it grabs the file: a `posix-rename` to its aside name
//!   where the server offers one (atomic, so a racing save is either grabbed or left at the
//!   path; OpenSSH's plain rename is a link and an unlink that could remove a file saved in
//!   between), else a plain rename. The grabbed file is checked again: a save that landed
//!   after the first check is put back (`PreconditionFailed`). The new file goes in with a
//!   no-replace rename, so a file saved at the path after the grab is not replaced either
//!   (the grabbed version then stays aside: the error names it and listings report the path).
//!   Only the checked version is removed. SFTP v3 gives no inode: a version is its size and
//!   whole-second mtime. The price: the path is missing for two round trips (between the grab
//!   and the rename in), and an overwrite takes two round trips more than one `posix-rename`
//!   (measured through a 20 ms proxy: 8.5 round trips for a small file, 6.6 before; without
//!   `posix-rename` 8.5 instead of 11). On a server whose plain rename replaces (rclone's) the
//!   rename in is check-then-rename: a save reaching the path in the round trip between that
//!   lookup and the rename is still replaced; rclone's server also does not see files changed
//!   behind its back (not through rclone) until its directory cache expires, and there a save
//!   anywhere between the grab and the rename in is replaced.
//! - **Overwrites keep the file's permission bits** (`0o777`; setuid, setgid and sticky are
//!   dropped), so a private file's new content is never readable by others: the temp file is
//!   created with them (a checked replace's temp owner-only, `0o600`, until the lookup right
//!   before the rename tells them; no extra round trip) and set to them exactly with its
//!   mtime. A server that reports no permission bits leaves a checked replace at `0o600`.
//! - **Permissions of new files**: listings and `stat` carry each file's permission bits
//!   (`Entry::permissions`). A new file is created with the bits the write asks for
//!   (`WriteOptions::permissions`, `0o777` of them: the engine passes the source file's, so
//!   a `0o600` key stays private and a `0o755` script stays executable), less the server's
//!   umask; without them, the server's default. The temp file is created with those bits,
//!   never given more: the first write of a client looks at what the server made of them
//!   (one `fstat`) and takes away any bits beyond them before content goes in (a server may
//!   ignore the bits of an open); once a server has honoured them, it is not asked again.
//!   A change of permissions alone is not a change of the file and is not synced.
//! - **Symlinked folders inside the root** are never written, moved or deleted through:
//!   every write (with the folders it creates), delete (with the pruning of emptied
//!   folders), rename and trash link first looks up each existing folder on the path below
//!   the root (`lstat`, all in one round trip, skipped for files at the root), and a symlink
//!   among them fails the operation with an error naming it (such a folder may lead outside
//!   the root). A symlinked root itself is resolved and used.
//!
//!   SFTP has no `openat`: the lookup and the operation are separate requests, and a folder
//!   swapped for a symlink between them used to redirect the operation (a test swapping a
//!   folder in a tight loop saw 248 of 600 files outside the root deleted or moved into the
//!   trash, `tests/symlink_swap.rs`). **Deletes, renames (trash moves included), writes (the
//!   temp file's creation, attributes and rename into place), hard links (`preserve`),
//!   folder creation and the pruning of emptied folders** therefore go through an *anchor*: a fresh, uniquely named empty folder
//!   (`.syncengine-tmp-anchor-<hex>`) made in the file's folder, whose real path
//!   (`realpath`, same round trip) must be the root's real path plus the folder's relative
//!   path; the operation then names the file `<anchor>/../<name>`. The server's file system
//!   resolves `..` from the anchor to the folder that holds it, and a swapped-in folder holds
//!   no such anchor, so each system call of the operation (OpenSSH's plain rename is three:
//!   lstat, link, unlink) reaches the verified folder or fails with "no such file". The
//!   anchor is removed afterwards. A new folder is made as `<anchor in its parent>/../<name>`,
//!   an emptied one removed the same way (nothing is anchored in the root itself: the
//!   user's choice). Cost: two more round trips per delete or rename (making the anchor with
//!   its lookup, removing it; both ends of a rename share them), one more per write into a
//!   folder (the removal shares the write's last lookup), two more per pruning attempt of a
//!   folder below a folder, plus one `realpath` of the root per client. A failed write removes
//!   its temp through the anchor, retrying while a swap hides it. Residual risks:
//!   - the anchor itself can land in a swapped-in folder outside the root for a moment: an
//!     empty folder of ours, removed at once by its real path (retried for about a second;
//!     if the swap hides it all that time, it stays, empty, with a name listings skip);
//!     an anchor left by a kill or a dead server is the core's temp-folder format
//!     (`temp_dir_name`): `remove_stale_temps` and `clean_up` remove it once it is as old as
//!     a stale temp file (only while empty, with `rmdir`), then the folders above it that
//!     this leaves empty, and the pruning of an emptied folder removes a stale one inside it
//!     (one this run's listing noted), so a folder deleted on the other side does not stay;
//!   - the anchor pins the folder the run found inside the root: if that very folder is
//!     moved out of the root and a symlink to it put in its place, it is still operated on;
//!   - servers that resolve paths themselves instead of the OS (rclone's: a virtual tree
//!     that cleans `..` textually) gain nothing from the anchor; they are as before;
//!   - a write cancelled mid-way (its future dropped) removes its temp by its plain path and
//!     leaves its anchor (an empty folder, removed once stale, see above).
//! - **Reads** fetch the size the file has when it is opened; data that ends (EOF) before
//!   that size (the file shrank while read) fails the read with `Error::Transient`, never a
//!   short body.
//! - **Deletes** of a missing file are `Ok`; directories a delete or rename leaves empty are
//!   removed, up to (not including) the root.
//! - `copy` is `Unsupported` (no server-side copy in SFTP v3); `rename` is native.
//! - **Paths**: the URL's path is absolute on the server (`/srv/x`); `/~/x` is relative to the
//!   login directory. Servers with a virtual root (rclone's) see `/x` as below their root.

mod builder;
mod client;
mod config;
mod conn;
mod error;

pub use builder::{
    ENV_KEY, ENV_KEY_PASSPHRASE, ENV_KNOWN_HOSTS, ENV_PASSWORD, ENV_TOFU, SftpBuilder,
};
pub use client::SftpClient;
pub use config::SftpConfig;

/// URL scheme of this backend (`sftp://user@host:port/path`).
pub const SCHEME: &str = "sftp";

/// Prefix of the temporary files of in-progress writes; never listed.
pub const TEMP_PREFIX: &str = syncengine_core::ignore_rules::TEMP_FILE_PREFIX;

/// Backend name in errors and logs.
pub(crate) const BACKEND: &str = "sftp";
