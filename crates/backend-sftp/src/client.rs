//! [`SftpClient`]: the [`StorageClient`] implementation.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, FuturesUnordered, StreamExt, TryStreamExt};
use russh_sftp::protocol::{FileAttributes, FileType, OpenFlags, Packet, StatusCode};
use syncengine_core::{
    ByteStream, Capabilities, DeleteOptions, Entry, EntryStream, Error, PruneFn, ReadOptions,
    RelPath, Result, StorageClient, TransferOptions, Version, WriteMode, WriteOptions,
};

use syncengine_core::cleanup::{
    CleanupOptions, CleanupReport, clean_up_temps, remove_in_background,
};
use syncengine_core::identity::Location;
use syncengine_core::ignore_rules::{StaleTemps, is_temp_dir_name, temp_dir_name, temp_file_name};
use syncengine_core::prune::prune_empty_parents;

use crate::config::SftpConfig;
use crate::conn::{Pool, Session};
use crate::error::{SftpError, to_core};
use crate::{BACKEND, TEMP_PREFIX};
use syncengine_core::path::{NAME_MAX, check_name_lengths};

/// Bytes of one file's reads or writes in flight at once: 64 requests of 32 KiB (what
/// rclone keeps in flight), or 8 of OpenSSH's 255 KiB. The SSH window (`conn::WINDOW_SIZE`)
/// holds several transfers' worth.
const IN_FLIGHT: usize = 2 * 1024 * 1024;

/// [`Inner::attrs_with_close`]: not known yet.
const ATTRS_UNKNOWN: u8 = 0;
/// [`Inner::attrs_with_close`]: the server keeps them.
const ATTRS_KEPT: u8 = 1;
/// [`Inner::attrs_with_close`]: the server refused or lost them; set by path after the close.
const ATTRS_LOST: u8 = 2;

/// Requests of `chunk` bytes in flight per read or write.
fn pipeline(chunk: usize) -> usize {
    (IN_FLIGHT / chunk.max(1)).clamp(4, 64)
}

/// A [`StorageClient`] for a directory on an SFTP server.
///
/// Build it with [`SftpBuilder`](crate::SftpBuilder). Cheap to clone: clones share the
/// connection pool. See the [crate docs](crate) for the behavior.
#[derive(Clone)]
pub struct SftpClient {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Arc<SftpConfig>,
    pool: Pool,
    /// Stale temp files the listings came across, removed when the engine asks.
    stale: StaleTemps,
    /// Set once a temp file came out of `open` with no permission bits beyond those the
    /// open asked for: the server honours them (less its umask), and later writes need not
    /// look (see `restrict_temp`).
    open_mode_honoured: AtomicBool,
    /// Whether the server keeps the attributes (mtime, permission bits) an `fsetstat` gives
    /// a temp file right before its close ([`ATTRS_UNKNOWN`], [`ATTRS_KEPT`] or
    /// [`ATTRS_LOST`]): the first write looks (one `lstat`); where they are kept, later
    /// writes send them with the close and save the round trip of a `setstat` by path.
    attrs_with_close: AtomicU8,
    /// The root's real path as the server resolves it (`realpath`), once known: what an
    /// [`Anchor`] checks a folder against.
    real_root: OnceLock<String>,
}

impl SftpClient {
    pub(crate) fn from_config(cfg: SftpConfig) -> Self {
        let cfg = Arc::new(cfg);
        SftpClient {
            inner: Arc::new(Inner {
                pool: Pool::new(cfg.clone()),
                cfg,
                stale: StaleTemps::default(),
                open_mode_honoured: AtomicBool::new(false),
                attrs_with_close: AtomicU8::new(ATTRS_UNKNOWN),
                real_root: OnceLock::new(),
            }),
        }
    }

    /// Returns the configuration (secrets redacted in its `Debug`).
    pub fn config(&self) -> &SftpConfig {
        &self.inner.cfg
    }

    /// Connects now (if not connected yet), verifying the host key and logging in, so that
    /// configuration problems show before the first real operation.
    ///
    /// # Errors
    /// [`Error::Transient`] when the server cannot be reached; [`Error::Other`] when the host
    /// key is not trusted (the message names its SHA256 fingerprint) or login fails.
    pub async fn check(&self) -> Result<()> {
        self.inner
            .pool
            .get()
            .await
            .map(|_| ())
            .map_err(|e| to_core(e, ""))
    }
}

impl fmt::Display for SftpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SftpClient({})", self.inner.cfg.url())
    }
}

impl fmt::Debug for SftpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpClient")
            .field("config", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// The server path of `rel` (or of the root for `None`).
    fn remote(&self, rel: Option<&RelPath>) -> String {
        let root = self.cfg.root.as_str();
        match rel {
            None if root.is_empty() => ".".to_owned(),
            None => root.to_owned(),
            Some(rel) if root.is_empty() => rel.as_str().to_owned(),
            Some(rel) => format!("{}/{}", root.trim_end_matches('/'), rel.as_str()),
        }
    }
}

/// Parent directory of a server path (`.` for a bare name).
fn remote_parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => ".",
    }
}

/// `name` in the server directory `dir`.
fn in_dir(dir: &str, name: &str) -> String {
    if dir == "." {
        name.to_owned()
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    }
}

/// A fresh upload temp name in `dir`: the core's exact temp format, which a later run may
/// remove once it is a day old.
fn temp_name(dir: &str) -> String {
    in_dir(dir, &temp_file_name(rand::random::<u64>()))
}

/// What follows [`TEMP_PREFIX`] in the name of a replaced file moved aside.
const ASIDE_TAG: &str = "old-";

/// A fresh name for moving the file at `to` aside while its replacement is renamed in:
/// `.syncengine-tmp-old-<16 hex>-<its name>`, so a listing that finds it left behind (a kill
/// between the renames) can report it at the path it was moved from; just
/// `.syncengine-tmp-old-<16 hex>` when the name would be too long. It never has the upload
/// temp format, so it is never removed automatically (it may be the only copy).
fn aside_path(to: &str) -> String {
    let name = to.rsplit('/').next().unwrap_or(to);
    let unique = format!("{TEMP_PREFIX}{ASIDE_TAG}{:016x}", rand::random::<u64>());
    let aside = if unique.len() + 1 + name.len() <= NAME_MAX {
        format!("{unique}-{name}")
    } else {
        unique
    };
    in_dir(remote_parent(to), &aside)
}

/// For the name of a file moved aside by [`aside_path`]: `Some(Some(name))` naming the file it
/// was moved from, `Some(None)` when its name does not say; `None` for any other name.
fn aside_target(name: &str) -> Option<Option<&str>> {
    let tail = name.strip_prefix(TEMP_PREFIX)?.strip_prefix(ASIDE_TAG)?;
    let (hex, rest) = (tail.get(..16)?, tail.get(16..)?);
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(rest.strip_prefix('-').filter(|t| !t.is_empty()))
}

fn to_system_time(secs: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(secs))
}

fn to_secs(t: SystemTime) -> u32 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
        Err(_) => 0,
    }
}

fn entry_from(path: RelPath, attrs: &FileAttributes) -> Entry {
    let mut entry = Entry::new(path, attrs.size.unwrap_or(0));
    if let Some(bits) = attrs.permissions {
        entry = entry.with_permissions(bits);
    }
    match attrs.mtime {
        Some(m) => entry.with_mtime(to_system_time(m)),
        None => entry,
    }
}

/// Makes sure the temp file just opened (`handle`) has no permission bits beyond `wanted`
/// before any content goes in: a server may ignore the bits given to `open` (the SFTP draft
/// leaves that to it). Bits beyond `wanted` are taken away (`fsetstat`), the umask's cuts
/// kept, and, when `wanted` are the file's final bits (`strict`; a checked replace asks for
/// owner-only bits until its lookup tells the real ones), checked again: a server that keeps
/// them anyway fails the write ([`SftpError::PermissionsIgnored`]). A server that has
/// honoured the bits of a private file
/// (no bits for group or others) is trusted from then on; one that merely matched common bits
/// (0644) is not.
async fn restrict_temp(
    inner: &Inner,
    s: &Session,
    handle: &str,
    wanted: u32,
    strict: bool,
) -> Result<(), SftpError> {
    if inner.open_mode_honoured.load(Ordering::Relaxed) {
        return Ok(());
    }
    let Some(got) = s.run(s.raw.fstat(handle)).await?.attrs.permissions else {
        // The server says nothing about permission bits: nothing to check or fix.
        return Ok(());
    };
    let got = got & 0o7777;
    if got & !wanted == 0 {
        if wanted & 0o077 == 0 {
            inner.open_mode_honoured.store(true, Ordering::Relaxed);
        }
        return Ok(());
    }
    tracing::debug!(
        got = format_args!("{got:o}"),
        wanted = format_args!("{wanted:o}"),
        "the server created the temp file with more permission bits than asked; narrowing"
    );
    let attrs = FileAttributes {
        permissions: Some(got & wanted),
        ..FileAttributes::empty()
    };
    s.run(s.raw.fsetstat(handle, attrs)).await?;
    let after = s
        .run(s.raw.fstat(handle))
        .await?
        .attrs
        .permissions
        .map_or(got, |p| p & 0o7777);
    if strict && after & !wanted != 0 {
        return Err(SftpError::PermissionsIgnored { got: after, wanted });
    }
    Ok(())
}

fn is_regular(attrs: &FileAttributes) -> bool {
    attrs.file_type() == FileType::File
}

fn is_dir(attrs: &FileAttributes) -> bool {
    attrs.file_type() == FileType::Dir
}

/// Encodes SSH strings for an extended request.
fn ssh_strings(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        let len = u32::try_from(p.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(p.as_bytes());
    }
    out
}

async fn lstat(s: &Session, path: &str) -> Result<FileAttributes, SftpError> {
    s.run(s.raw.lstat(path)).await.map(|a| a.attrs)
}

/// `lstat`, with "no such file" as `None`.
async fn lstat_opt(s: &Session, path: &str) -> Result<Option<FileAttributes>, SftpError> {
    match lstat(s, path).await {
        Ok(a) => Ok(Some(a)),
        Err(e) if e.is_no_such_file() => Ok(None),
        Err(e) => Err(e),
    }
}

/// `stat` (symlinks followed), with "no such file" as `None`.
async fn stat_opt(s: &Session, path: &str) -> Result<Option<FileAttributes>, SftpError> {
    match s.run(s.raw.stat(path)).await {
        Ok(a) => Ok(Some(a.attrs)),
        Err(e) if e.is_no_such_file() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates the root folder `dir` and its missing ancestors, by their plain paths (the root is
/// the user's choice, not checked: it may be a symlink to a folder); an existing directory
/// is fine.
async fn mkdir_all(s: &Session, dir: &str) -> Result<(), SftpError> {
    let mut missing: Vec<&str> = Vec::new();
    let mut cur = dir;
    // Walk up until a directory exists, then create downwards.
    loop {
        if cur == "/" || cur == "." || cur.is_empty() {
            break;
        }
        match s.run(s.raw.mkdir(cur, FileAttributes::empty())).await {
            Ok(_) => break,
            Err(e) => match stat_opt(s, cur).await? {
                Some(a) if is_dir(&a) => break,
                Some(_) => {
                    return Err(SftpError::Message(format!(
                        "{cur} exists and is not a directory"
                    )));
                }
                None => {
                    let parent = remote_parent(cur);
                    if parent == cur {
                        return Err(e);
                    }
                    missing.push(cur);
                    cur = parent;
                }
            },
        }
    }
    for d in missing.into_iter().rev() {
        if let Err(e) = s.run(s.raw.mkdir(d, FileAttributes::empty())).await {
            match stat_opt(s, d).await? {
                Some(a) if is_dir(&a) => {}
                _ => return Err(e),
            }
        }
    }
    Ok(())
}

/// Creates the folder `dir` below the root and its missing ancestors; an existing folder is
/// fine. Each missing folder is made through an [`Anchor`] in its parent (none for a folder
/// in the root), so a symlink swapped in for a folder on the way cannot make it create a
/// folder outside the root. A write's `opts` give the new folders their bits
/// ([`WriteOptions::folder_mode`], by depth), else the server's default.
async fn mkdir_anchored(
    inner: &Inner,
    s: &Session,
    dir: &RelPath,
    opts: Option<&WriteOptions>,
) -> Result<(), SftpError> {
    let mut missing = Vec::new();
    let mut cur = Some(dir.clone());
    loop {
        let Some(d) = cur else {
            // Nothing below the root exists: nor, maybe, the root.
            mkdir_all(s, &inner.remote(None)).await?;
            break;
        };
        let remote = inner.remote(Some(&d));
        match lstat_opt(s, &remote).await? {
            Some(attrs) if is_dir(&attrs) => break,
            Some(attrs) if attrs.file_type() == FileType::Symlink => {
                return Err(SftpError::SymlinkedFolder {
                    link: d.to_string(),
                });
            }
            Some(_) => {
                return Err(SftpError::Message(format!(
                    "{remote} exists and is not a directory"
                )));
            }
            None => {
                cur = d.parent();
                missing.push(d);
            }
        }
    }
    for d in missing.into_iter().rev() {
        let a = anchor_parent(inner, s, &d).await?;
        let at = anchored(inner, a.as_ref(), &d);
        let depth = d.as_str().matches('/').count();
        let attrs = FileAttributes {
            permissions: opts.and_then(|o| o.folder_mode(depth)),
            ..FileAttributes::empty()
        };
        let made = s.run(s.raw.mkdir(at.as_str(), attrs)).await;
        release(inner, s, [a]).await;
        if let Err(e) = made {
            match lstat_opt(s, &inner.remote(Some(&d))).await? {
                // Made meanwhile by another request.
                Some(attrs) if is_dir(&attrs) => {}
                _ => return Err(e),
            }
        }
    }
    Ok(())
}

/// Pins `rel`'s parent folder ([`anchor_parent`]), creating it first
/// ([`mkdir_anchored`]) when it is missing; a concurrent delete may prune a folder just made,
/// so that is tried a few times.
async fn pin_parent(
    inner: &Inner,
    s: &Session,
    rel: &RelPath,
    opts: Option<&WriteOptions>,
) -> Result<Option<Anchor>, SftpError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match anchor_parent(inner, s, rel).await {
            Err(e) if e.is_no_such_file() && attempt < 4 => {
                if let Some(dir) = rel.parent() {
                    mkdir_anchored(inner, s, &dir, opts).await?;
                }
            }
            Err(SftpError::NotAFile) => {
                let dir = rel
                    .parent()
                    .map(|d| inner.remote(Some(&d)))
                    .unwrap_or_default();
                return Err(SftpError::Message(format!(
                    "{dir} exists and is not a directory"
                )));
            }
            other => return other,
        }
    }
}

/// The plain server path of a path made through an anchor (`<folder>/<anchor>/../<name>`
/// becomes `<folder>/<name>`), for messages: the anchor is gone once the operation ends.
fn unanchored(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    let mut out: Vec<&str> = Vec::with_capacity(parts.len());
    let mut i = 0;
    while i < parts.len() {
        if is_temp_dir_name(parts[i]) && parts.get(i + 1) == Some(&"..") {
            i += 2;
            continue;
        }
        out.push(parts[i]);
        i += 1;
    }
    out.join("/")
}

/// [`unanchored`] for the file an error names as left aside.
fn unanchor_error(e: SftpError) -> SftpError {
    match e {
        SftpError::LeftAside { aside, why } => SftpError::LeftAside {
            aside: unanchored(&aside),
            why,
        },
        e => e,
    }
}

async fn posix_rename(s: &Session, from: &str, to: &str) -> Result<(), SftpError> {
    let reply = s
        .run(
            s.raw
                .extended("posix-rename@openssh.com", ssh_strings(&[from, to])),
        )
        .await?;
    status_ok(reply)
}

fn status_ok(reply: Packet) -> Result<(), SftpError> {
    match reply {
        Packet::Status(st) if st.status_code == StatusCode::Ok => Ok(()),
        Packet::Status(st) => Err(SftpError::Sftp(st.into())),
        _ => Err(SftpError::Message(
            "unexpected reply to an extended request".into(),
        )),
    }
}

/// A replace that went through. The version it replaced may still sit at its aside name:
/// [`Replaced::finish`] removes it (callers overlap that with their next request).
#[must_use = "the replaced version moved aside is still to be removed (Replaced::finish)"]
struct Replaced {
    aside: Option<String>,
}

impl Replaced {
    /// Nothing was moved aside.
    const CLEAN: Replaced = Replaced { aside: None };

    /// Removes the replaced version moved aside, if any. A failure only leaves it, and
    /// listings report it at the path it was moved from.
    async fn finish(self, s: &Session) {
        if let Some(aside) = self.aside {
            remove_aside(s, &aside).await;
        }
    }
}

/// Moves `from` onto `to`, replacing `to` if it exists.
///
/// Without `expected` this is one `posix-rename` (atomic) where the server offers it, else
/// the portable [`replace_unchecked`]. With `expected` (a checked replace) it is
/// [`replace_checked`], with or without `posix-rename`: nothing the caller's check did not
/// see is replaced.
async fn rename_replace(
    s: &Session,
    from: &str,
    to: &str,
    expected: Option<(&RelPath, &Version)>,
) -> Result<Replaced, SftpError> {
    match expected {
        Some((rel, version)) => replace_checked(s, from, to, rel, version).await,
        None if s.posix_rename => posix_rename(s, from, to).await.map(|()| Replaced::CLEAN),
        None => replace_unchecked(s, from, to).await,
    }
}

/// The checked replace: `to` is grabbed (renamed to a fresh [`aside_path`]), the grabbed file
/// must be the `expected` version, `from` goes in only where nothing is, and the grabbed file
/// is removed (by [`Replaced::finish`]) only then.
///
/// - The grab is a `posix-rename` where the server offers one: atomic, so a save racing it is
///   either grabbed (and seen) or left at `to` after it. OpenSSH's plain rename is a link and
///   an unlink of `to`, which would remove a file saved between the two; it is used only
///   where nothing else is offered.
/// - A grabbed file that is not `expected` (a save that landed after the caller's check) is
///   put back and the replace fails with [`SftpError::Changed`].
/// - `from` goes in with a no-replace rename ([`rename_onto_absent`], after the lookup that
///   found `to` free): a save that took the name after the grab is not replaced; the grabbed
///   version then cannot go back either, and stays aside.
/// - Whatever cannot be put back stays at its aside name, which the error names
///   ([`SftpError::LeftAside`]) and listings report at `to` (the engine leaves the path alone).
///
/// Round trips: the grab, one for looking up the grabbed file and `to` together, the rename
/// in; the removal of the grabbed file is left to the caller to overlap.
async fn replace_checked(
    s: &Session,
    from: &str,
    to: &str,
    rel: &RelPath,
    version: &Version,
) -> Result<Replaced, SftpError> {
    let aside = aside_path(to);
    let grabbed = if s.posix_rename {
        posix_rename(s, to, &aside).await
    } else {
        s.run(s.raw.rename(to, aside.as_str())).await.map(|_| ())
    };
    match grabbed {
        Ok(()) => {}
        // Gone since the caller's check: not the expected version any more.
        Err(e) if e.is_no_such_file() => return Err(SftpError::Changed),
        Err(e) => return Err(e),
    }
    // From here the aside file may be the only copy of what was at `to`. Both lookups are
    // independent of each other, so they share one round trip.
    let (moved, there) = tokio::join!(lstat_opt(s, &aside), lstat_opt(s, to));
    let moved = match moved {
        Ok(Some(attrs)) => attrs,
        // Nothing we moved aside is there any more: nothing to put back.
        Ok(None) => return Err(SftpError::Changed),
        Err(e) => {
            return Err(SftpError::LeftAside {
                aside,
                why: format!("it could not be checked after it was moved aside ({e})"),
            });
        }
    };
    let taken = match there {
        Ok(there) => there.is_some(),
        Err(e) => {
            let why = "its replacement was not renamed in";
            return Err(put_back(s, aside, to, e, why).await);
        }
    };
    if !(is_regular(&moved) && version.matches(&entry_from(rel.clone(), &moved))) {
        // Saved after the caller's check: put it back, never over a newer file.
        let why = "it changed since it was listed";
        return Err(put_back(s, aside, to, SftpError::Changed, why).await);
    }
    let placed = if taken {
        Err(SftpError::Exists)
    } else {
        rename_onto_absent(s, from, to).await
    };
    match placed {
        Ok(()) => Ok(Replaced { aside: Some(aside) }),
        // A file saved at `to` since the grab: left there, and the replace refused.
        Err(SftpError::Exists) => {
            let why = "a file saved at its name after it was moved aside was not replaced";
            Err(put_back(s, aside, to, SftpError::Changed, why).await)
        }
        Err(e) => {
            let why = format!("its replacement could not be renamed in ({})", refusal(&e));
            Err(put_back(s, aside, to, e, &why).await)
        }
    }
}

/// Puts the grabbed file at `aside` back at `to` (never over a file there) and returns
/// `outcome`; where it cannot go back, the [`SftpError::LeftAside`] that names it.
async fn put_back(
    s: &Session,
    aside: String,
    to: &str,
    outcome: SftpError,
    why: &str,
) -> SftpError {
    match rename_noreplace(s, &aside, to).await {
        Ok(()) => outcome,
        Err(back) => left_aside(aside, why, &back),
    }
}

/// The error for a replaced file that stays at `aside` because putting it back failed.
fn left_aside(aside: String, why: &str, back: &SftpError) -> SftpError {
    SftpError::LeftAside {
        aside,
        why: format!("{why}, and it could not be put back ({})", refusal(back)),
    }
}

/// The portable replace without a version check (plain overwrites, renames over a file).
async fn replace_unchecked(s: &Session, from: &str, to: &str) -> Result<Replaced, SftpError> {
    let first = match s.run(s.raw.rename(from, to)).await {
        Ok(_) => return Ok(Replaced::CLEAN),
        Err(e) => e,
    };
    // SFTP v3 rename refuses an existing target (OpenSSH): move the old file aside first.
    if lstat_opt(s, to).await?.is_none() {
        return Err(first);
    }
    let aside = aside_path(to);
    s.run(s.raw.rename(to, aside.as_str())).await?;
    match s.run(s.raw.rename(from, to)).await {
        Ok(_) => Ok(Replaced { aside: Some(aside) }),
        Err(e) => {
            let why = format!("its replacement could not be renamed in ({e})");
            Err(put_back(s, aside, to, e, &why).await)
        }
    }
}

/// Removes a replaced file moved aside once its replacement is in place. A failure only
/// leaves it, and listings report it at the path it was moved from.
async fn remove_aside(s: &Session, aside: &str) {
    if let Err(e) = s.run(s.raw.remove(aside)).await {
        tracing::warn!(path = %aside, "could not remove the replaced file: {e}");
    }
}

/// Why a rename was refused, for a message.
fn refusal(e: &SftpError) -> String {
    match e {
        SftpError::Exists => "a new file took its place".to_owned(),
        e => e.to_string(),
    }
}

/// Moves `from` to `to` only if `to` does not exist ([`SftpError::Exists`] otherwise).
///
/// A plain SFTP v3 rename refuses an existing target on OpenSSH (it links, then unlinks), so
/// there this is race-free; servers whose plain rename replaces (rclone's) get
/// check-then-rename. `hardlink@openssh.com` is not used: rclone's server answers OK
/// without creating the link, and a following unlink would lose the file.
async fn rename_noreplace(s: &Session, from: &str, to: &str) -> Result<(), SftpError> {
    if lstat_opt(s, to).await?.is_some() {
        return Err(SftpError::Exists);
    }
    rename_onto_absent(s, from, to).await
}

/// The rename of [`rename_noreplace`], once a lookup found `to` free: a plain SFTP rename
/// (refused onto an existing name on OpenSSH; a refusal with a file at `to` is
/// [`SftpError::Exists`]).
async fn rename_onto_absent(s: &Session, from: &str, to: &str) -> Result<(), SftpError> {
    match s.run(s.raw.rename(from, to)).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_connection_error() => Err(e),
        Err(e) => {
            if lstat_opt(s, to).await?.is_some() {
                return Err(SftpError::Exists);
            }
            Err(e)
        }
    }
}

/// Removes the directories above `rel` that are now empty, up to (not including) the root.
/// Each goes through an [`Anchor`] in its parent (none for a folder in the root), so a
/// symlink swapped in on the way cannot make it remove an empty folder outside the root.
/// Anchors a killed operation left in one (noted stale by this run's listing) do not keep it:
/// they are removed (only while empty) and the folder tried again. A folder already gone (a
/// concurrent delete pruned it) counts as pruned: the one above is tried.
async fn prune_parents(inner: &Inner, s: &Session, rel: &RelPath) {
    let walk = prune_empty_parents(rel, |dir| async move {
        Ok::<_, std::convert::Infallible>(prune_one(inner, s, &dir).await)
    });
    let Ok(()) = walk.await;
}

/// Removes the folder `dir` if it is empty (see [`prune_parents`]); true when it is gone.
async fn prune_one(inner: &Inner, s: &Session, dir: &RelPath) -> bool {
    let Ok(a) = anchor_parent(inner, s, dir).await else {
        return false;
    };
    let at = anchored(inner, a.as_ref(), dir);
    let mut removed = s.run(s.raw.rmdir(at.as_str())).await;
    if removed.is_err() {
        let remote = inner.remote(Some(dir));
        let stale = inner.stale.take_stale_where(|location| {
            remote_parent(location) == remote
                && is_temp_dir_name(location.rsplit('/').next().unwrap_or(""))
        });
        if !stale.is_empty() {
            // By their plain paths: their names are unique (see `Anchor::release`).
            futures::future::join_all(stale.iter().map(|a| s.run(s.raw.rmdir(a.as_str())))).await;
            removed = s.run(s.raw.rmdir(at.as_str())).await;
        }
    }
    release(inner, s, [a]).await;
    match removed {
        Ok(_) => true,
        Err(e) => e.is_no_such_file(),
    }
}

/// Whether the folder at `location` holds anything (an unreadable one counts as holding
/// something: it is not known to be an empty anchor).
async fn folder_holds_something(s: &Session, location: &str) -> bool {
    let Ok(handle) = s.run(s.raw.opendir(location)).await.map(|h| h.handle) else {
        return true;
    };
    let listed = s.run(s.raw.readdir(handle.as_str())).await;
    let _ = s.run(s.raw.close(handle)).await;
    match listed {
        Ok(name) => name
            .files
            .iter()
            .any(|f| f.filename != "." && f.filename != ".."),
        // An empty folder answers its first read with end-of-file.
        Err(SftpError::Sftp(russh_sftp::client::error::Error::Status(st))) => {
            st.status_code != StatusCode::Eof
        }
        Err(_) => true,
    }
}

/// Removes a left-behind temp file or anchor folder at the server path `location` (as a
/// listing noted it); false when it was gone already. An anchor is removed with `rmdir`
/// (only while empty), and nothing above it: a folder it leaves empty may be the user's
/// own empty folder, which the engine cannot tell from one an interrupted delete would have
/// pruned. (A delete's own prune removes stale anchors in the folder it empties, see
/// [`prune_one`].)
async fn remove_temp(s: &Session, location: &str) -> Result<bool, SftpError> {
    let name = location.rsplit('/').next().unwrap_or(location);
    if !is_temp_dir_name(name) {
        return match s.run(s.raw.remove(location)).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_no_such_file() => Ok(false),
            Err(e) => Err(e),
        };
    }
    match s.run(s.raw.rmdir(location)).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_no_such_file() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Refuses `rel` when a folder on its way below the root is a symlink
/// ([`SftpError::SymlinkedFolder`]): nothing is written, moved or deleted through one, since
/// it may lead outside the root. The folders are looked up with `lstat`, all in one round
/// trip; from the first missing one on, the caller creates real folders. The root itself may
/// be a symlink; the last component is the caller's business. A symlink made between this
/// check and the operation is not caught.
async fn check_no_symlinked_folder(
    inner: &Inner,
    s: &Session,
    rel: &RelPath,
) -> Result<(), SftpError> {
    let Some((folders, _)) = rel.as_str().rsplit_once('/') else {
        return Ok(());
    };
    let mut prefixes = Vec::new();
    for (i, c) in folders.char_indices() {
        if c == '/' {
            prefixes.push(&folders[..i]);
        }
    }
    prefixes.push(folders);
    let remotes: Vec<String> = prefixes
        .iter()
        .map(|p| {
            let root = inner.remote(None);
            if root == "." {
                (*p).to_owned()
            } else {
                format!("{}/{p}", root.trim_end_matches('/'))
            }
        })
        .collect();
    let found = futures::future::join_all(remotes.iter().map(|r| lstat_opt(s, r))).await;
    for (prefix, found) in prefixes.iter().zip(found) {
        match found? {
            Some(attrs) if attrs.file_type() == FileType::Symlink => {
                return Err(SftpError::SymlinkedFolder {
                    link: (*prefix).to_owned(),
                });
            }
            Some(_) => {}
            None => return Ok(()),
        }
    }
    Ok(())
}

/// A folder below the root pinned for one operation, so that a symlink swapped in for it
/// (or for a folder above it) between the check and the operation cannot redirect the
/// operation outside the root.
///
/// SFTP has no `openat`: every request names a path the server resolves anew, and a check
/// (`lstat` of each folder on the way) and the operation are separate requests. An anchor
/// closes that gap for the paths it hands out:
///
/// 1. it creates a fresh, uniquely named empty folder (`.syncengine-tmp-anchor-<hex>`) in the
///    folder, and, in the same round trip, asks the server for its real path (`realpath` of
///    `<anchor>/.`, which fails unless the anchor is found at the end of the walk). Only if
///    that is the root's real path followed by the folder's relative path and the anchor
///    name was the anchor made in the real folder inside the root (no component on the walk
///    was a symlink when it was resolved). Otherwise the anchor is removed where it really
///    landed and the operation refused.
/// 2. the operation then names its files as `<anchor>/../<name>`. The server's file system
///    resolves `..` from the anchor to the folder holding it, whatever path led there, and a
///    folder swapped in for it holds no such anchor (the name is unique), so every one of
///    the operation's system calls reaches the verified folder or fails with "no such file".
///    This also covers OpenSSH's plain rename, which is three calls (lstat, link, unlink).
/// 3. [`Anchor::release`] removes the anchor (also through its own `..`).
///
/// The anchor can land outside the root for a moment (a swap between the check and its
/// `mkdir`): an empty folder of ours, removed at once by its real path.
struct Anchor {
    /// The anchor folder's server path, as created.
    path: String,
}

impl Anchor {
    /// The server path of `name` in the anchored folder, bound to it (`<anchor>/../name`).
    fn at(&self, name: &str) -> String {
        format!("{}/../{name}", self.path)
    }

    /// Removes the anchor, by its plain path: its name is unique, so whatever folder that
    /// path leads to, only the anchor can be removed. A swap can hide it for a moment; the
    /// removal is retried for a while (about a second), then the empty folder is left, with
    /// a temporary name that listings skip and note: once stale, a later run removes it
    /// (`remove_temp`). When the connection died (a dead server, a cut link), the removal
    /// goes through a new one from `inner`'s pool.
    async fn release(self, inner: &Inner, s: &Session) {
        let mut fresh: Option<Arc<Session>> = None;
        for attempt in 0..200u32 {
            let s = fresh.as_deref().unwrap_or(s);
            match s.run(s.raw.rmdir(self.path.as_str())).await {
                Ok(_) => return,
                Err(e) if e.is_no_such_file() && attempt < 199 => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) if e.is_connection_error() && fresh.is_none() => {
                    match inner.pool.get().await {
                        Ok(new) => fresh = Some(new),
                        Err(e) => {
                            tracing::warn!(path = %self.path, "could not reconnect to remove an anchor folder: {e}");
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %self.path, "could not remove an anchor folder: {e}");
                    return;
                }
            }
        }
    }
}

/// The root's real path as the server resolves it, cached.
async fn real_root(inner: &Inner, s: &Session) -> Result<String, SftpError> {
    if let Some(root) = inner.real_root.get() {
        return Ok(root.clone());
    }
    let root = realpath(s, &inner.remote(None)).await?;
    Ok(inner.real_root.get_or_init(|| root).clone())
}

/// The server's `realpath` of `path`.
async fn realpath(s: &Session, path: &str) -> Result<String, SftpError> {
    let name = s.run(s.raw.realpath(path)).await?;
    name.files
        .into_iter()
        .next()
        .map(|f| f.filename)
        .ok_or_else(|| SftpError::Message(format!("no real path for {path}")))
}

/// Pins the folder `dir` below the root ([`Anchor`]); `None` for the root itself (the
/// user's choice: not checked). "No such file" when the folder does not exist;
/// [`SftpError::SymlinkedFolder`] when the anchor did not land in the real folder inside the
/// root (a symlinked folder on the way, or one swapped in meanwhile).
async fn anchor(inner: &Inner, s: &Session, dir: &RelPath) -> Result<Anchor, SftpError> {
    let root = real_root(inner, s).await?;
    let name = temp_dir_name(rand::random::<u64>());
    let path = in_dir(&inner.remote(Some(dir)), &name);
    let probe = format!("{path}/.");
    let attrs = FileAttributes {
        permissions: Some(0o700),
        ..FileAttributes::empty()
    };
    // One round trip: the server answers in order, so the lookups see the new folder. The
    // server's realpath walks the path one `lstat` at a time, each resolving it anew: a
    // folder swapped for a symlink between two of those steps makes one lookup report the
    // inside path for an anchor that landed outside (seen against OpenSSH under a swapping
    // loop). Each lookup that follows must be fooled again by a swap of its own.
    let (made, real, again, third) = tokio::join!(
        s.run(s.raw.mkdir(path.as_str(), attrs)),
        realpath(s, &probe),
        realpath(s, &probe),
        realpath(s, &probe)
    );
    if let Err(e) = made {
        if e.is_connection_error() || e.is_no_such_file() {
            return Err(e);
        }
        // Servers differ in what they answer for a folder that is a file (rclone: "file
        // already exists"): no folder there is a missing file below it.
        return match lstat_opt(s, &inner.remote(Some(dir))).await? {
            Some(attrs) if is_dir(&attrs) => Err(e),
            _ => Err(SftpError::NotAFile),
        };
    }
    let expected = format!("{}/{dir}/{name}", root.trim_end_matches('/'));
    let found_inside = |r: &Result<String, SftpError>| r.as_ref().is_ok_and(|r| *r == expected);
    if found_inside(&again) && found_inside(&third) && found_inside(&real) {
        return Ok(Anchor { path });
    }
    // Where a lookup found it elsewhere (a failed lookup: the anchor was not where it went,
    // a swap between the requests).
    let elsewhere = [real, again, third]
        .into_iter()
        .find_map(|r| r.ok().filter(|r| *r != expected));
    // The anchor is not (provably) in the folder inside the root: remove it where it landed
    // (by its real path where a lookup found one) and refuse.
    match elsewhere {
        Some(real) => match s.run(s.raw.rmdir(real.as_str())).await {
            Ok(_) => {}
            Err(_) => Anchor { path }.release(inner, s).await,
        },
        None => Anchor { path }.release(inner, s).await,
    }
    let found = match dir.join("x") {
        Ok(inside) => check_no_symlinked_folder(inner, s, &inside).await.err(),
        Err(_) => None,
    };
    let link = match found {
        Some(SftpError::SymlinkedFolder { link }) => link,
        _ => dir.to_string(),
    };
    Err(SftpError::SymlinkedFolder { link })
}

/// The server path of `rel` through `anchor` (its parent folder's), or the plain path for a
/// file in the root.
fn anchored(inner: &Inner, anchor: Option<&Anchor>, rel: &RelPath) -> String {
    match anchor {
        Some(a) => a.at(rel.file_name()),
        None => inner.remote(Some(rel)),
    }
}

/// Pins `rel`'s parent folder ([`anchor`]); `None` for a file in the root.
async fn anchor_parent(
    inner: &Inner,
    s: &Session,
    rel: &RelPath,
) -> Result<Option<Anchor>, SftpError> {
    match rel.parent() {
        Some(dir) => anchor(inner, s, &dir).await.map(Some),
        None => Ok(None),
    }
}

/// Releases the anchors (in one round trip).
async fn release(inner: &Inner, s: &Session, anchors: impl IntoIterator<Item = Option<Anchor>>) {
    futures::future::join_all(anchors.into_iter().flatten().map(|a| a.release(inner, s))).await;
}

async fn stat_entry(inner: &Inner, s: &Session, rel: &RelPath) -> Result<Entry, SftpError> {
    let attrs = lstat(s, &inner.remote(Some(rel))).await?;
    if !is_regular(&attrs) {
        return Err(SftpError::NotAFile);
    }
    Ok(entry_from(rel.clone(), &attrs))
}

/// Refuses a name the engine must not write here: our temporary names, and names longer
/// than a server's file system holds (the core's one rule, [`check_name_lengths`]).
fn check_name(rel: &RelPath) -> Result<()> {
    if rel.file_name().starts_with(TEMP_PREFIX) {
        return Err(Error::InvalidPath {
            path: rel.to_string(),
            reason: format!("names starting with {TEMP_PREFIX} are reserved for temporary files"),
        });
    }
    check_name_lengths(rel, NAME_MAX)
}

/// A temporary upload file: closed and removed when dropped unless committed.
struct TempFile {
    inner: Arc<Inner>,
    session: Arc<Session>,
    /// Its plain path: removed by it after a cancellation (the anchor may be gone then; the
    /// name is unique, see `Anchor::release`).
    path: String,
    /// Its path through the write's anchor (see `write_pinned`), held while the write runs:
    /// a failed write removes it by this one, which a swap cannot hide.
    pinned: String,
    handle: Option<String>,
    armed: bool,
}

impl TempFile {
    /// Removes the file now (after a failed write), through a fresh session if this one died.
    async fn discard(mut self) {
        self.armed = false;
        cleanup(
            self.inner.clone(),
            self.session.clone(),
            self.handle.take(),
            self.pinned.clone(),
        )
        .await;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // The write was cancelled (its future dropped): clean up in the background.
        let job = cleanup(
            self.inner.clone(),
            self.session.clone(),
            self.handle.take(),
            self.path.clone(),
        );
        remove_in_background(&self.path, job);
    }
}

async fn cleanup(inner: Arc<Inner>, session: Arc<Session>, handle: Option<String>, path: String) {
    if session.is_alive() {
        if let Some(h) = handle {
            let _ = session.run(session.raw.close(h)).await;
        }
        match remove_hidden(&session, &path).await {
            Ok(_) => return,
            Err(e) if e.is_no_such_file() => return,
            Err(e) if !e.is_connection_error() => {
                tracing::warn!(%path, "could not remove a temporary file: {e}");
                return;
            }
            Err(_) => {}
        }
    }
    // The connection died mid-write: reconnect to remove the temporary file.
    drop(session);
    match inner.pool.get().await {
        Ok(s) => match remove_hidden(&s, &path).await {
            Ok(_) => {}
            Err(e) if e.is_no_such_file() => {}
            Err(e) => tracing::warn!(%path, "could not remove a temporary file: {e}"),
        },
        Err(e) => tracing::warn!(%path, "could not reconnect to remove a temporary file: {e}"),
    }
}

/// Removes the file at `path`, which a swap of a folder on its way (see [`Anchor`]) may hide
/// for a moment: "no such file" is retried for a while (about a second), as
/// [`Anchor::release`] does.
async fn remove_hidden(s: &Session, path: &str) -> Result<(), SftpError> {
    let mut attempt = 0u32;
    loop {
        match s.run(s.raw.remove(path)).await {
            Err(e) if e.is_no_such_file() && attempt < 199 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            done => return done.map(|_| ()),
        }
    }
}

/// An open remote file being read; closed when the last reader drops it.
struct OpenFile {
    session: Arc<Session>,
    handle: String,
}

impl OpenFile {
    /// Reads `len` bytes at `offset`, following short reads; less only at end of file.
    async fn read_full(&self, offset: u64, len: usize) -> Result<Bytes, SftpError> {
        let mut buf = BytesMut::with_capacity(len);
        while buf.len() < len {
            let at = offset + buf.len() as u64;
            let want = u32::try_from(len - buf.len()).unwrap_or(u32::MAX);
            match self
                .session
                .run(self.session.raw.read(self.handle.as_str(), at, want))
                .await
            {
                Ok(data) if data.data.is_empty() => break,
                Ok(data) => buf.extend_from_slice(&data.data),
                Err(SftpError::Sftp(russh_sftp::client::error::Error::Status(st)))
                    if st.status_code == StatusCode::Eof =>
                {
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(buf.freeze())
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        if !self.session.is_alive() {
            return;
        }
        let session = self.session.clone();
        let handle = std::mem::take(&mut self.handle);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = session.run(session.raw.close(handle)).await;
            });
        }
    }
}

/// One directory's children, sorted for the canonical order, being walked.
struct Frame {
    dir: Option<RelPath>,
    children: std::vec::IntoIter<Child>,
    /// Members of probed sub-directories waiting for their `Descend` step (see [`Step`]).
    probed: Vec<(String, Members)>,
}

/// One step of a directory's walk. A directory `d` is read when the walk reaches the name
/// `d` (so a failure is reported there, before `d.txt`) and entered at `d/`.
enum Step {
    File(FileAttributes),
    Probe,
    Descend,
    Unknown(Cow<'static, str>),
}

struct Child {
    name: String,
    /// The sort key: the name, with `/` appended for a `Descend` step.
    key: Vec<u8>,
    step: Step,
}

/// Up to three of `names`, and how many more.
fn name_some(names: Vec<String>) -> String {
    let n = names.len();
    let mut out = names.into_iter().take(3).collect::<Vec<_>>().join(", ");
    if n > 3 {
        out.push_str(&format!(" and {} more", n - 3));
    }
    out
}

/// Reports each replaced file left aside in a directory (a replace killed between its renames,
/// or whose removal failed) at the path it was moved from: that path becomes unknown, so the
/// engine neither deletes the other side's copy (the path may look deleted) nor writes there
/// until the user has put the file back or removed it. A file listed at that path is reported
/// as unknown instead; a folder's probe too (its walk is then skipped). Returns the aside files
/// whose names do not say where they came from (or name no valid path), for the caller to
/// report as the directory's partly unknown contents.
fn place_asides(
    children: &mut Vec<Child>,
    asides: Vec<(Option<String>, String)>,
    dir: Option<&RelPath>,
    remote: &str,
) -> Vec<String> {
    let mut unplaced = Vec::new();
    for (target, aside) in asides {
        let at = in_dir(remote, &aside);
        let target = target.filter(|t| {
            let path = match dir {
                Some(d) => format!("{d}/{t}"),
                None => t.clone(),
            };
            !t.contains(['/', '\u{FFFD}']) && RelPath::new(path).is_ok()
        });
        let Some(target) = target else {
            unplaced.push(at);
            continue;
        };
        tracing::warn!(path = %at, "a replaced file was left aside by an interrupted replace");
        let why = format!(
            "an interrupted replace left a version of it at {at} (it may be the only copy): \
             rename that file back to this name, or remove it once that version is not needed"
        );
        let existing = children
            .iter_mut()
            .find(|c| c.name == target && !matches!(c.step, Step::Descend));
        match existing {
            Some(Child {
                step: Step::Unknown(reason),
                ..
            }) => *reason = format!("{reason}; {why}").into(),
            Some(child) => child.step = Step::Unknown(why.into()),
            None => children.push(Child {
                key: target.as_bytes().to_vec(),
                name: target,
                step: Step::Unknown(why.into()),
            }),
        }
    }
    unplaced
}

/// One directory's members, sorted, and why some could not be named (if so).
struct Members {
    children: Vec<Child>,
    unnamed: Option<String>,
}

struct Walk {
    inner: Arc<Inner>,
    session: Arc<Session>,
    stack: Vec<Frame>,
    /// Folders never read (see `StorageClient::list_pruned`).
    prune: Option<PruneFn>,
}

impl Walk {
    /// Reads one directory, sorted: files by name, directories by `name/` (and probed at
    /// `name`). Symlinks and other non-files become unknown steps; names that are not UTF-8
    /// (the SFTP client decodes them lossily, with U+FFFD) or not valid path segments make the
    /// directory's contents partly unknown; our temporary files are left out.
    async fn read_dir(&self, dir: Option<&RelPath>) -> Result<Option<Members>, SftpError> {
        let s = &self.session;
        let remote = self.inner.remote(dir);
        let handle = match s.run(s.raw.opendir(remote.as_str())).await {
            Ok(h) => h.handle,
            // Removed while we listed: nothing below it any more.
            Err(e) if e.is_no_such_file() => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut children = Vec::new();
        let mut unnamed = Vec::new();
        // Folders with a temp name that hold something: not an anchor of ours (always
        // empty), so the user's, and reported rather than skipped in silence.
        let mut reserved = Vec::new();
        // Replaced files a replace moved aside and did not remove: (the name they were moved
        // from, if it says, their own name).
        let mut asides: Vec<(Option<String>, String)> = Vec::new();
        let result = loop {
            match s.run(s.raw.readdir(handle.as_str())).await {
                Ok(name) => {
                    for f in name.files {
                        if f.filename == "." || f.filename == ".." {
                            continue;
                        }
                        if let Some(target) = aside_target(&f.filename) {
                            asides.push((target.map(str::to_owned), f.filename.clone()));
                            continue;
                        }
                        if f.filename.starts_with(TEMP_PREFIX) {
                            // Uploads set the access time to now (see `write_opts`), so the
                            // newer of the two times tells when a writer last touched it.
                            let newest = [f.attrs.mtime, f.attrs.atime]
                                .into_iter()
                                .flatten()
                                .max()
                                .map(to_system_time);
                            let location =
                                format!("{}/{}", remote.trim_end_matches('/'), f.filename);
                            if is_dir(&f.attrs) {
                                // An anchor an interrupted operation left (see `Anchor`),
                                // when empty. Its age is its mtime only: looking into it
                                // (here, or any `find`) sets its access time.
                                if folder_holds_something(s, &location).await {
                                    reserved.push(format!("{:?}", f.filename));
                                } else {
                                    let made = f.attrs.mtime.map(to_system_time);
                                    self.inner.stale.consider_dir(location, &f.filename, made);
                                }
                            } else {
                                self.inner.stale.consider(location, &f.filename, newest);
                            }
                            continue;
                        }
                        let child_path = match dir {
                            Some(d) => format!("{d}/{}", f.filename),
                            None => f.filename.clone(),
                        };
                        let valid = !f.filename.contains(['/', '\u{FFFD}'])
                            && RelPath::new(&child_path).is_ok();
                        if !valid {
                            tracing::warn!(path = %child_path, "a name that cannot be synced");
                            unnamed.push(format!("{:?}", f.filename));
                            continue;
                        }
                        let kind = f.attrs.file_type();
                        let mut key = f.filename.as_bytes().to_vec();
                        let step = match kind {
                            FileType::File => Step::File(f.attrs),
                            FileType::Dir => {
                                let mut dkey = key.clone();
                                dkey.push(b'/');
                                children.push(Child {
                                    name: f.filename.clone(),
                                    key: dkey,
                                    step: Step::Descend,
                                });
                                Step::Probe
                            }
                            FileType::Symlink => Step::Unknown("a symlink (not followed)".into()),
                            _ => Step::Unknown("a special file (socket, FIFO or device)".into()),
                        };
                        key.shrink_to_fit();
                        children.push(Child {
                            name: f.filename,
                            key,
                            step,
                        });
                    }
                }
                Err(SftpError::Sftp(russh_sftp::client::error::Error::Status(st)))
                    if st.status_code == StatusCode::Eof =>
                {
                    break Ok(());
                }
                Err(e) => break Err(e),
            }
        };
        let _ = s.run(s.raw.close(handle)).await;
        result?;
        let unplaced = place_asides(&mut children, asides, dir, &remote);
        children.sort_by(|a, b| a.key.cmp(&b.key));
        let mut why = Vec::new();
        if !unnamed.is_empty() {
            why.push(format!(
                "names that are not UTF-8 or not valid paths: {}",
                name_some(unnamed)
            ));
        }
        if !reserved.is_empty() {
            why.push(format!(
                "folders with files in them whose names start with {TEMP_PREFIX}, which this \
                 engine reserves for its temporary files and never syncs (rename them): {}",
                name_some(reserved)
            ));
        }
        if !unplaced.is_empty() {
            why.push(format!(
                "files moved aside by an interrupted replace, whose names do not say which file \
                 they were (each may be the only copy of a file here; rename it back or remove \
                 it): {}",
                name_some(unplaced)
            ));
        }
        let unnamed = (!why.is_empty()).then(|| why.join("; "));
        Ok(Some(Members { children, unnamed }))
    }

    /// Enters a directory: its members become the next frame, after an unlisted item for
    /// the members it could not name, if any.
    fn enter(&mut self, dir: Option<RelPath>, members: Members) -> Option<Error> {
        let unnamed = members.unnamed.map(|why| {
            Error::unlisted_contents(BACKEND, dir.as_ref().map_or("", RelPath::as_str), why)
        });
        self.stack.push(Frame {
            dir,
            children: members.children.into_iter(),
            probed: Vec::new(),
        });
        unnamed
    }

    /// Yields the next file (or unlisted item) in canonical order.
    async fn next(&mut self) -> Result<Option<Result<Entry, Error>>, SftpError> {
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(child) = frame.children.next() else {
                self.stack.pop();
                continue;
            };
            let path = match &frame.dir {
                Some(d) => format!("{d}/{}", child.name),
                None => child.name.clone(),
            };
            let rel = RelPath::new(path).map_err(|e| SftpError::Message(e.to_string()))?;
            match child.step {
                Step::File(attrs) => return Ok(Some(Ok(entry_from(rel, &attrs)))),
                Step::Unknown(why) => {
                    return Ok(Some(Err(Error::unlisted(BACKEND, rel.as_str(), why))));
                }
                // A pruned folder is never read; without a probe its `Descend` is skipped.
                Step::Probe if self.prune.as_ref().is_some_and(|prune| prune(&rel)) => {}
                Step::Probe => {
                    let why = match self.read_dir(Some(&rel)).await {
                        Ok(Some(members)) => {
                            if let Some(frame) = self.stack.last_mut() {
                                frame.probed.push((child.name, members));
                            }
                            continue;
                        }
                        Ok(None) => "vanished while it was listed".to_owned(),
                        // A broken connection fails the listing; a folder the server will not
                        // list is unknown, and the rest of the tree goes on.
                        Err(e) if e.is_connection_error() => return Err(e),
                        Err(e) => format!("a folder that cannot be read: {e}"),
                    };
                    return Ok(Some(Err(Error::unlisted(BACKEND, rel.as_str(), why))));
                }
                Step::Descend => {
                    let Some(i) = frame.probed.iter().rposition(|(n, _)| *n == child.name) else {
                        // The probe reported the directory as unlisted.
                        continue;
                    };
                    let (_, members) = frame.probed.swap_remove(i);
                    if let Some(unlisted) = self.enter(Some(rel), members) {
                        return Ok(Some(Err(unlisted)));
                    }
                }
            }
        }
    }
}

/// Starts a walk; also returns the unlisted item for the start directory's undecodable
/// members, if any, to yield first.
async fn start_walk(
    inner: Arc<Inner>,
    prefix: Option<RelPath>,
    prune: Option<PruneFn>,
) -> Result<Option<(Walk, Option<Error>)>, SftpError> {
    let session = inner.pool.get().await?;
    let start = inner.remote(prefix.as_ref());
    // The root may itself be a symlink to a directory; a prefix below it is a plain path.
    let attrs = match &prefix {
        None => match session.run(session.raw.stat(start.as_str())).await {
            Ok(a) => Some(a.attrs),
            Err(e) if e.is_no_such_file() => None,
            Err(e) => return Err(e),
        },
        Some(_) => lstat_opt(&session, &start).await?,
    };
    match attrs {
        Some(a) if is_dir(&a) => {}
        None => return Ok(None),
        Some(_) if prefix.is_some() => return Ok(None),
        Some(_) => {
            return Err(SftpError::Message(format!(
                "the root {start} is not a directory"
            )));
        }
    }
    let mut walk = Walk {
        inner,
        session,
        stack: Vec::new(),
        prune,
    };
    let mut first = None;
    if let Some(members) = walk.read_dir(prefix.as_ref()).await? {
        first = walk.enter(prefix, members);
    }
    Ok(Some((walk, first)))
}

enum ListState {
    Start(Arc<Inner>, Option<RelPath>, Option<PruneFn>),
    Walking(Walk),
    Done,
}

impl SftpClient {
    /// The canonical-order walk behind `list` and `list_pruned`.
    fn walk(&self, prefix: Option<&RelPath>, prune: Option<PruneFn>) -> EntryStream {
        let path_for_errors = prefix.map(|p| p.to_string()).unwrap_or_default();
        let state = ListState::Start(self.inner.clone(), prefix.cloned(), prune);
        stream::unfold(state, move |state| {
            let path_for_errors = path_for_errors.clone();
            async move {
                let mut walk = match state {
                    ListState::Done => return None,
                    ListState::Walking(w) => w,
                    ListState::Start(inner, prefix, prune) => {
                        match start_walk(inner, prefix, prune).await {
                            Ok(Some((w, Some(unlisted)))) => {
                                return Some((Err(unlisted), ListState::Walking(w)));
                            }
                            Ok(Some((w, None))) => w,
                            Ok(None) => return None,
                            Err(e) => {
                                return Some((Err(to_core(e, &path_for_errors)), ListState::Done));
                            }
                        }
                    }
                };
                match walk.next().await {
                    Ok(Some(item)) => Some((item, ListState::Walking(walk))),
                    Ok(None) => None,
                    Err(e) => Some((Err(to_core(e, &path_for_errors)), ListState::Done)),
                }
            }
        })
        .boxed()
    }
}

#[async_trait]
impl StorageClient for SftpClient {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    /// `sftp://<host:port>/<canonical path>`: the server resolves the root (`realpath`), so a
    /// relative root names the login directory it really is (another user's home is another
    /// path), and a symlinked root its target. A root that does not exist yet is resolved
    /// through the login directory (relative) or taken as written (absolute).
    async fn location(&self) -> Result<Location> {
        let cfg = &self.inner.cfg;
        let session = self.inner.pool.get().await.map_err(|e| to_core(e, ""))?;
        let root = self.inner.remote(None);
        let realpath = |path: String| async {
            session
                .run(session.raw.realpath(path))
                .await
                .ok()
                .and_then(|name| name.files.into_iter().next())
                .map(|f| f.filename)
        };
        let path = match realpath(root.clone()).await {
            Some(path) => path,
            None if root.starts_with('/') => root,
            None => match realpath(".".to_owned()).await {
                Some(home) => format!("{}/{root}", home.trim_end_matches('/')),
                None => {
                    return Err(Error::other(
                        BACKEND,
                        root,
                        "the server resolves neither the root nor the login directory",
                    ));
                }
            },
        };
        Ok(Location::new("sftp", cfg.host_port(), path))
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.ordered_listing = true;
        caps.set_mtime = true;
        // SFTP v3 carries whole seconds.
        caps.mtime_precision = Duration::from_secs(1);
        caps.listed_hash = None;
        caps.etag = false;
        caps.file_id = false;
        caps.server_side_copy = false;
        caps.native_rename = true;
        caps.conditional_write = false;
        // What the server's disk does is unknown here (Windows OpenSSH folds letter case):
        // the engine probes the root (`folding_known` stays false).
        caps.case_insensitive = false;
        caps.real_directories = true;
        // Each range checks the size and mtime of the handle it opened (see `read_opts`).
        caps.parallel_reads = self.inner.cfg.parallel_reads.clone();
        caps
    }

    async fn remove_stale_temps(&self) -> Result<u64> {
        let found = self.inner.stale.take();
        if found.is_empty() {
            return Ok(0);
        }
        let s = self.inner.pool.get().await.map_err(|e| to_core(e, ""))?;
        let mut removed = 0;
        for path in found {
            match remove_temp(&s, &path).await {
                Ok(true) => {
                    tracing::info!(%path, "removed a temp file untouched for a day");
                    removed += 1;
                }
                Ok(false) => {}
                Err(e) => return Err(to_core(e, &path)),
            }
        }
        Ok(removed)
    }

    /// The engine's temp files and left-behind anchor folders (removed only while empty,
    /// and the folders above them that this leaves empty) anywhere under the root (trash
    /// folders excepted) untouched (modified or read) for longer than the given age, by the core's
    /// [`clean_up_temps`](syncengine_core::cleanup::clean_up_temps).
    async fn clean_up(&self, opts: &CleanupOptions) -> Result<CleanupReport> {
        clean_up_temps(self, &self.inner.stale, opts, |path| async move {
            let s = self.inner.pool.get().await.map_err(|e| to_core(e, ""))?;
            remove_temp(&s, &path).await.map_err(|e| to_core(e, &path))
        })
        .await
    }

    fn list(&self, prefix: Option<&RelPath>) -> EntryStream {
        self.walk(prefix, None)
    }

    fn list_pruned(&self, prefix: Option<&RelPath>, prune: PruneFn) -> EntryStream {
        self.walk(prefix, Some(prune))
    }

    /// A `stat` of the root (symlinks followed: the root may be one): "no such file" is a
    /// missing root.
    async fn root_exists(&self) -> Result<bool> {
        let s = self.inner.pool.get().await.map_err(|e| to_core(e, ""))?;
        stat_opt(&s, &self.inner.remote(None))
            .await
            .map(|found| found.is_some())
            .map_err(|e| to_core(e, ""))
    }

    async fn stat(&self, path: &RelPath) -> Result<Entry> {
        let s = self
            .inner
            .pool
            .get()
            .await
            .map_err(|e| to_core(e, path.as_str()))?;
        stat_entry(&self.inner, &s, path)
            .await
            .map_err(|e| to_core(e, path.as_str()))
    }

    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        let err = |e: SftpError| to_core(e, path.as_str());
        let s = self.inner.pool.get().await.map_err(err)?;
        let remote = self.inner.remote(Some(path));
        let handle = s
            .run(
                s.raw
                    .open(remote.as_str(), OpenFlags::READ, FileAttributes::empty()),
            )
            .await
            .map_err(err)?
            .handle;
        let file = Arc::new(OpenFile {
            session: s.clone(),
            handle,
        });
        let attrs = s
            .run(s.raw.fstat(file.handle.as_str()))
            .await
            .map_err(err)?
            .attrs;
        if !is_regular(&attrs) {
            return Err(err(SftpError::NotAFile));
        }
        // The handle reads the file it opened, whatever is renamed over the path later: its
        // size and mtime are those of the version asked for, or nothing is read.
        if let Some(version) = &opts.version
            && !version.matches(&entry_from(path.clone(), &attrs))
        {
            return Err(err(SftpError::Changed));
        }
        let size = attrs.size.unwrap_or(0);
        let (start, end) = match opts.range {
            Some(r) => (r.start.min(size), r.end.min(size)),
            None => (0, size),
        };
        let end = end.max(start);
        let chunk = s.read_chunk as u64;
        let depth = pipeline(s.read_chunk);
        let offsets = (0..(end - start).div_ceil(chunk)).map(move |i| {
            let at = start + i * chunk;
            (at, (end - at).min(chunk) as usize)
        });
        let path_owned = path.to_string();
        let body = stream::iter(offsets)
            .map(move |(at, len)| {
                let file = file.clone();
                async move {
                    let data = file.read_full(at, len).await?;
                    if data.len() < len {
                        // EOF before the size the file had when opened: it shrank while read.
                        return Err(SftpError::EndedEarly {
                            expected: end - start,
                            got: at - start + data.len() as u64,
                        });
                    }
                    Ok(data)
                }
            })
            .buffered(depth)
            .map_err(move |e| to_core(e, &path_owned))
            .try_filter(|b| futures::future::ready(!b.is_empty()));
        Ok(stop_after_error(body))
    }

    async fn write_opts(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        check_name(path)?;
        let err = |e: SftpError| to_core(e, path.as_str());
        let create_only = match &opts.mode {
            WriteMode::Overwrite | WriteMode::IfUnchanged(_) => false,
            WriteMode::Create => true,
            WriteMode::Update(_) => {
                return Err(Error::Unsupported {
                    backend: BACKEND,
                    operation: "conditional write (WriteMode::Update)",
                });
            }
            _ => {
                return Err(Error::Unsupported {
                    backend: BACKEND,
                    operation: "this write mode",
                });
            }
        };
        let s = self.inner.pool.get().await.map_err(err)?;
        let target = self.inner.remote(Some(path));
        // A checked replace looks the target up right before the rename (below); the others
        // now, in the same round trip as the lookup of the folders on the way.
        let checked_replace = matches!(opts.mode, WriteMode::IfUnchanged(_));
        let (checked, existing) =
            tokio::join!(check_no_symlinked_folder(&self.inner, &s, path), async {
                if checked_replace {
                    Ok(None)
                } else {
                    lstat_opt(&s, &target).await
                }
            });
        checked.map_err(err)?;
        let existing = existing.map_err(err)?;
        if create_only && existing.is_some() {
            return Err(err(SftpError::Exists));
        }
        // An overwrite keeps the file's permission bits (not setuid/setgid/sticky), so a
        // private file's new content is never readable by others: the temp is created with
        // them (a checked replace: owner-only until its lookup tells them) and set to them
        // exactly with the mtime. A new file is created with the bits asked for (the
        // source's), which the server cuts by its umask; none asked: the server's default.
        let mode = existing
            .filter(is_regular)
            .and_then(|attrs| attrs.permissions)
            .map(|perm| perm & 0o777);
        let create_mode = if checked_replace {
            Some(0o600)
        } else {
            mode.or(opts.permissions.map(|bits| bits & 0o777))
        };
        // Every request that creates or replaces goes through the pinned folder (created,
        // anchored, first if missing): a symlink swapped in for it, or for a folder above it,
        // since the check cannot make the write create its temp, or put the file, outside
        // the root.
        let mut anchor = pin_parent(&self.inner, &s, path, Some(&opts))
            .await
            .map_err(err)?;
        let outcome = self
            .write_pinned(&s, path, body, &opts, &mut anchor, create_mode, mode)
            .await;
        // Released here unless `write_pinned` did (overlapped with its last lookup).
        release(&self.inner, &s, [anchor]).await;
        outcome
    }

    async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> Result<()> {
        self.delete_file(path, opts.report_missing).await
    }

    async fn copy_opts(
        &self,
        _from: &RelPath,
        _to: &RelPath,
        _opts: TransferOptions,
    ) -> Result<Entry> {
        Err(Error::Unsupported {
            backend: BACKEND,
            operation: "copy",
        })
    }

    async fn preserve(&self, from: &RelPath, to: &RelPath) -> Result<Entry> {
        self.preserve_file(from, to).await
    }

    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.rename_file(from, to, opts).await
    }
}

impl SftpClient {
    /// The rest of [`write_opts`](StorageClient::write_opts) once the target's folder is
    /// pinned by `anchor` (`None` in the root): the temp file is created, given its
    /// attributes and renamed into place through it. Once the file is in place, the anchor
    /// is taken and released in the round trip of the last lookup.
    #[allow(clippy::too_many_arguments)]
    async fn write_pinned(
        &self,
        s: &Arc<Session>,
        path: &RelPath,
        body: ByteStream,
        opts: &WriteOptions,
        pinned: &mut Option<Anchor>,
        create_mode: Option<u32>,
        mut mode: Option<u32>,
    ) -> Result<Entry> {
        let err = |e: SftpError| to_core(e, path.as_str());
        let s = s.clone();
        let create_only = matches!(opts.mode, WriteMode::Create);
        let checked_replace = matches!(opts.mode, WriteMode::IfUnchanged(_));
        let anchor = pinned.as_ref();
        let target = anchored(&self.inner, anchor, path);
        let dir = remote_parent(&self.inner.remote(Some(path))).to_owned();
        // The temp's plain path, for removing it after a cancellation (its name is unique,
        // see `Anchor::release`), and the pinned one every request uses.
        let temp_plain = temp_name(&dir);
        let temp_file = temp_plain.rsplit('/').next().unwrap_or(&temp_plain);
        let temp_path = match anchor {
            Some(a) => a.at(temp_file),
            None => temp_plain.clone(),
        };
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE;
        let create_attrs = FileAttributes {
            permissions: create_mode,
            ..FileAttributes::empty()
        };
        let mut opened = s
            .run(s.raw.open(temp_path.as_str(), flags, create_attrs.clone()))
            .await;
        if anchor.is_none() && opened.as_ref().is_err_and(SftpError::is_no_such_file) {
            // A file in a root that does not exist yet.
            mkdir_all(&s, &dir).await.map_err(err)?;
            opened = s
                .run(s.raw.open(temp_path.as_str(), flags, create_attrs))
                .await;
        }
        let handle = opened.map_err(err)?.handle;
        let mut temp = TempFile {
            inner: self.inner.clone(),
            session: s.clone(),
            path: temp_plain.clone(),
            pinned: temp_path.clone(),
            handle: Some(handle.clone()),
            armed: true,
        };
        if let Some(wanted) = create_mode
            && let Err(e) = restrict_temp(&self.inner, &s, &handle, wanted, !checked_replace).await
        {
            temp.discard().await;
            return Err(err(e));
        }

        // The temp's final attributes: its permission bits and, with the mtime, an access
        // time of now (until the rename below, a temp whose mtime is the source's, often
        // old, must not look stale to another machine).
        let attrs_of = |mode: Option<u32>| {
            let mut attrs = FileAttributes {
                permissions: mode,
                ..FileAttributes::empty()
            };
            if let Some(mtime) = opts.mtime {
                attrs.atime = Some(to_secs(SystemTime::now()));
                attrs.mtime = Some(to_secs(mtime));
            }
            (attrs.permissions.is_some() || attrs.mtime.is_some()).then_some(attrs)
        };
        // They go out with the close (one round trip less) unless a checked replace must
        // first look at the target for its bits, or the server was seen to drop them.
        let with_close = if checked_replace
            || self.inner.attrs_with_close.load(Ordering::Relaxed) == ATTRS_LOST
        {
            None
        } else {
            attrs_of(mode)
        };
        let uploaded = match upload(&s, &handle, body, with_close.clone()).await {
            Ok(uploaded) => uploaded,
            Err(failed) => {
                if failed.closed {
                    temp.handle = None;
                }
                temp.discard().await;
                return Err(match failed.error {
                    UploadError::Body(e) => e,
                    UploadError::Sftp(e) => err(e),
                });
            }
        };
        temp.handle = None;
        let finished = async {
            let attrs_done = match (&with_close, uploaded.attrs_set) {
                (Some(sent), Some(Ok(()))) => {
                    match self.inner.attrs_with_close.load(Ordering::Relaxed) {
                        ATTRS_KEPT => true,
                        _ => {
                            // The first time: does the server keep what it was given?
                            let got = lstat(&s, &temp_path).await?;
                            let kept = sent.mtime.is_none_or(|m| got.mtime == Some(m))
                                && sent.permissions.is_none_or(|p| {
                                    got.permissions.is_none_or(|g| g & 0o777 == p & 0o777)
                                });
                            let verdict = if kept { ATTRS_KEPT } else { ATTRS_LOST };
                            self.inner
                                .attrs_with_close
                                .store(verdict, Ordering::Relaxed);
                            kept
                        }
                    }
                }
                (Some(_), Some(Err(e))) => {
                    if e.is_connection_error() {
                        return Err(e);
                    }
                    tracing::debug!("fsetstat of a temp file failed ({e}); setting by path");
                    self.inner
                        .attrs_with_close
                        .store(ATTRS_LOST, Ordering::Relaxed);
                    false
                }
                _ => false,
            };
            if let WriteMode::IfUnchanged(expected) = &opts.mode {
                // Checked once the body is on the server, right before the temp gets its
                // attributes and is renamed: a file the user saved meanwhile is left in
                // place, nothing moved. `replace_checked` then checks the file it grabs again
                // (a save after this lookup).
                let now = lstat_opt(&s, &target).await?.filter(|attrs| {
                    is_regular(attrs) && expected.matches(&entry_from(path.clone(), attrs))
                });
                let Some(now) = now else {
                    return Err(SftpError::Changed);
                };
                mode = now.permissions.map(|perm| perm & 0o777);
            }
            if !attrs_done && let Some(attrs) = attrs_of(mode) {
                s.run(s.raw.setstat(temp_path.as_str(), attrs)).await?;
            }
            let expected = match &opts.mode {
                WriteMode::IfUnchanged(version) => Some((path, version)),
                _ => None,
            };
            let place = || async {
                if create_only {
                    rename_noreplace(&s, &temp_path, &target)
                        .await
                        .map(|()| Replaced::CLEAN)
                } else {
                    rename_replace(&s, &temp_path, &target, expected).await
                }
            };
            match place().await {
                // Seen on rclone's server under concurrent writes into a new folder: the
                // folder made by another request is not visible yet. Wait a moment, retry.
                Err(e) if e.is_no_such_file() => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    place().await
                }
                placed => placed,
            }
        }
        .await;
        let replaced = match finished {
            Ok(replaced) => replaced,
            Err(e) => {
                temp.discard().await;
                return Err(err(unanchor_error(e)));
            }
        };
        temp.armed = false;
        let written = async {
            // The same lag can hide the file just renamed into place for a moment.
            let mut tries = 0u64;
            loop {
                match stat_entry(&self.inner, &s, path).await {
                    Err(e) if e.is_no_such_file() && tries < 3 => {
                        tries += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
                    }
                    entry => return entry.map_err(err),
                }
            }
        };
        // The replaced version's removal shares its round trip with the lookup.
        let anchor = pinned.take();
        let ((), written, ()) = tokio::join!(
            replaced.finish(&s),
            written,
            release(&self.inner, &s, [anchor])
        );
        written
    }

    /// [`delete_opts`](StorageClient::delete_opts).
    /// Deletes the file at `path`; a missing one is `Ok`, or `NotFound` when
    /// `report_missing`.
    async fn delete_file(&self, path: &RelPath, report_missing: bool) -> Result<()> {
        let err = |e: SftpError| to_core(e, path.as_str());
        let missing = || {
            if report_missing {
                Err(Error::not_found(BACKEND, path.as_str()))
            } else {
                Ok(())
            }
        };
        let s = self.inner.pool.get().await.map_err(err)?;
        check_no_symlinked_folder(&self.inner, &s, path)
            .await
            .map_err(err)?;
        // The removal goes through the pinned folder: a symlink swapped in for it since the
        // check cannot send it outside the root.
        let anchor = match anchor_parent(&self.inner, &s, path).await {
            Ok(anchor) => anchor,
            // No folder: no file to delete.
            Err(e) if e.is_no_such_file() || matches!(e, SftpError::NotAFile) => return missing(),
            Err(e) => return Err(err(e)),
        };
        let remote = anchored(&self.inner, anchor.as_ref(), path);
        let removed = s.run(s.raw.remove(remote.as_str())).await;
        release(&self.inner, &s, [anchor]).await;
        match removed {
            Ok(_) => {
                prune_parents(&self.inner, &s, path).await;
                Ok(())
            }
            Err(e) if e.is_no_such_file() => missing(),
            Err(e) => Err(err(e)),
        }
    }

    /// `hardlink@openssh.com` where the server offers it, checked afterwards (rclone's server
    /// answers OK without making the link); else a copy through the client.
    async fn preserve_file(&self, from: &RelPath, to: &RelPath) -> Result<Entry> {
        check_name(to)?;
        let err = |e: SftpError| to_core(e, from.as_str());
        let err_to = |e: SftpError| to_core(e, to.as_str());
        let s = self.inner.pool.get().await.map_err(err)?;
        let (from_ok, to_ok) = tokio::join!(
            check_no_symlinked_folder(&self.inner, &s, from),
            check_no_symlinked_folder(&self.inner, &s, to)
        );
        from_ok.map_err(err)?;
        to_ok.map_err(err_to)?;
        if s.hardlink {
            let source = stat_entry(&self.inner, &s, from).await.map_err(err)?;
            if lstat_opt(&s, &self.inner.remote(Some(to)))
                .await
                .map_err(err_to)?
                .is_some()
            {
                return Err(err_to(SftpError::Exists));
            }
            // Both ends through their pinned folders (see `rename_file`).
            let from_anchor = anchor_parent(&self.inner, &s, from).await.map_err(err)?;
            let to_anchor = match pin_parent(&self.inner, &s, to, None).await {
                Ok(a) => a,
                Err(e) => {
                    release(&self.inner, &s, [from_anchor]).await;
                    return Err(err_to(e));
                }
            };
            let remote_from = anchored(&self.inner, from_anchor.as_ref(), from);
            let remote_to = anchored(&self.inner, to_anchor.as_ref(), to);
            let linked = s
                .run(s.raw.extended(
                    "hardlink@openssh.com",
                    ssh_strings(&[remote_from.as_str(), remote_to.as_str()]),
                ))
                .await
                .and_then(status_ok);
            release(&self.inner, &s, [from_anchor, to_anchor]).await;
            match linked {
                Ok(()) => match stat_entry(&self.inner, &s, to).await {
                    Ok(entry) if entry.size == source.size => return Ok(entry),
                    other => tracing::debug!(
                        path = %to,
                        "hardlink@openssh.com answered OK but made no usable link ({other:?}); copying"
                    ),
                },
                Err(e) => tracing::debug!(path = %to, "hardlink@openssh.com failed ({e}); copying"),
            }
        }
        syncengine_core::client::preserve_by_copy(self, from, to).await
    }

    /// [`rename_opts`](StorageClient::rename_opts).
    async fn rename_file(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        check_name(to)?;
        let err = |e: SftpError| to_core(e, from.as_str());
        let err_to = |e: SftpError| to_core(e, to.as_str());
        let s = self.inner.pool.get().await.map_err(err)?;
        let (from_ok, to_ok, source) = tokio::join!(
            check_no_symlinked_folder(&self.inner, &s, from),
            check_no_symlinked_folder(&self.inner, &s, to),
            stat_entry(&self.inner, &s, from)
        );
        from_ok.map_err(err)?;
        to_ok.map_err(err_to)?;
        source.map_err(err)?;
        if from == to {
            return stat_entry(&self.inner, &s, to).await.map_err(err_to);
        }
        // Both ends go through their pinned folders: a symlink swapped in for either since
        // the checks cannot make the move take a file from outside the root, nor put one
        // there.
        let (from_anchor, to_anchor) = tokio::join!(
            anchor_parent(&self.inner, &s, from),
            pin_parent(&self.inner, &s, to, None)
        );
        let (from_anchor, to_anchor) = match (from_anchor, to_anchor) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), t) => {
                release(&self.inner, &s, [t.ok().flatten()]).await;
                return Err(err(e));
            }
            (Ok(f), Err(e)) => {
                release(&self.inner, &s, [f]).await;
                return Err(err_to(e));
            }
        };
        let remote_from = anchored(&self.inner, from_anchor.as_ref(), from);
        let remote_to = anchored(&self.inner, to_anchor.as_ref(), to);
        let moved = async {
            if opts.overwrite {
                rename_replace(&s, &remote_from, &remote_to, None)
                    .await?
                    .finish(&s)
                    .await;
                Ok(())
            } else {
                rename_noreplace(&s, &remote_from, &remote_to).await
            }
        }
        .await;
        release(&self.inner, &s, [from_anchor, to_anchor]).await;
        moved.map_err(|e| err_to(unanchor_error(e)))?;
        prune_parents(&self.inner, &s, from).await;
        stat_entry(&self.inner, &s, to).await.map_err(err_to)
    }
}

enum UploadError {
    /// The body stream failed: returned as is.
    Body(Error),
    /// Writing to the server failed.
    Sftp(SftpError),
}

/// How an upload ended: the handle closed, and what became of the attributes sent with it.
struct Uploaded {
    /// The answer to the `fsetstat` sent after the last write (`None`: none was sent).
    attrs_set: Option<Result<(), SftpError>>,
}

/// A failed upload, and whether the handle was closed (the close went out with the last
/// writes): a closed handle must not be closed again, its id may name another file by then.
struct UploadFailed {
    error: UploadError,
    closed: bool,
}

type Pending<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SftpError>> + Send + 'a>>;

/// Polls `request` once, so that it goes out now (russh-sftp sends a request when it is
/// first polled); the answer is awaited later. `Err` holds an answer that came at once.
fn send_now(mut request: Pending<'_>) -> Result<Pending<'_>, Result<(), SftpError>> {
    let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
    match request.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(done) => Err(done),
        std::task::Poll::Pending => Ok(request),
    }
}

/// Streams `body` into the open handle, writes of the server's write size in flight
/// ([`pipeline`]), then closes the handle. `attrs`, when given, go out as an `fsetstat`
/// right after the last write and before the close, in the same round trip: the server
/// handles the requests on one handle in order, so the times set are not touched by a write.
async fn upload(
    s: &Session,
    handle: &str,
    mut body: ByteStream,
    attrs: Option<FileAttributes>,
) -> Result<Uploaded, UploadFailed> {
    let open = |error| UploadFailed {
        error,
        closed: false,
    };
    let chunk_len = s.write_chunk;
    let depth = pipeline(chunk_len);
    let mut offset = 0u64;
    let mut pending = BytesMut::new();
    let mut inflight: FuturesUnordered<Pending<'_>> = FuturesUnordered::new();
    let mut body_done = false;
    loop {
        // Send every full chunk we have (and the rest at the end), keeping the pipeline bounded.
        while pending.len() >= chunk_len || (body_done && !pending.is_empty()) {
            if inflight.len() >= depth
                && let Some(r) = inflight.next().await
            {
                r.map_err(|e| open(UploadError::Sftp(e)))?;
            }
            let take = pending.len().min(chunk_len);
            let piece = pending.split_to(take).to_vec();
            let at = offset;
            offset += piece.len() as u64;
            let write: Pending<'_> =
                Box::pin(async move { s.run(s.raw.write(handle, at, piece)).await.map(|_| ()) });
            match send_now(write) {
                Ok(sent) => inflight.push(sent),
                Err(answered) => answered.map_err(|e| open(UploadError::Sftp(e)))?,
            }
        }
        if body_done {
            break;
        }
        // Drive writes in flight while waiting for the next body chunk.
        let next = {
            let mut next_chunk = body.next();
            loop {
                if inflight.is_empty() {
                    break next_chunk.await;
                }
                tokio::select! {
                    chunk = &mut next_chunk => break chunk,
                    Some(r) = inflight.next() => r.map_err(|e| open(UploadError::Sftp(e)))?,
                }
            }
        };
        match next {
            Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(open(UploadError::Body(e))),
            None => body_done = true,
        }
    }
    // Every write is on its way: the attributes and the close follow in the same round trip.
    let writes = async {
        let mut first_error = None;
        while let Some(r) = inflight.next().await {
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    };
    let set = async {
        match attrs {
            Some(attrs) => Some(s.run(s.raw.fsetstat(handle, attrs)).await.map(|_| ())),
            None => None,
        }
    };
    let (written, attrs_set, closed) = tokio::join!(writes, set, s.run(s.raw.close(handle)));
    let failed = |e| UploadFailed {
        error: UploadError::Sftp(e),
        closed: true,
    };
    written.map_err(failed)?;
    closed.map_err(failed)?;
    Ok(Uploaded { attrs_set })
}

/// Ends a byte stream after its first error, as the contract asks.
fn stop_after_error(s: impl futures::Stream<Item = Result<Bytes>> + Send + 'static) -> ByteStream {
    let mut failed = false;
    s.take_while(move |r| {
        let keep = !failed;
        failed = failed || r.is_err();
        futures::future::ready(keep)
    })
    .boxed()
}
