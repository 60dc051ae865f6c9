//! The error type every [`StorageClient`](crate::StorageClient) returns and the engine wraps.

/// A boxed error from a backend or the operating system.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in a form callers can match on.
///
/// Backends map their own errors into exactly one of these variants, keeping the original
/// error as `source`. The engine retries only errors for which [`Error::is_transient`] is true.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path does not exist.
    #[error("{backend}: not found: {path}")]
    NotFound {
        /// Backend name, e.g. `local` or `s3`.
        backend: &'static str,
        /// The path concerned, relative to the client's root.
        path: String,
        /// The backend's own error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A create-only write or a rename/copy without overwrite met an existing path.
    #[error("{backend}: already exists: {path}")]
    AlreadyExists {
        /// Backend name.
        backend: &'static str,
        /// The path concerned.
        path: String,
        /// The backend's own error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A conditional operation found a different version than expected.
    #[error("{backend}: precondition failed (changed since it was listed): {}", path_and_reason(path, source.as_ref()))]
    PreconditionFailed {
        /// Backend name.
        backend: &'static str,
        /// The path concerned.
        path: String,
        /// The backend's own error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend refused access.
    #[error("{backend}: permission denied: {}", path_and_reason(path, source.as_ref()))]
    PermissionDenied {
        /// Backend name.
        backend: &'static str,
        /// The path concerned.
        path: String,
        /// The backend's own error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A path failed validation (see [`RelPath`](crate::RelPath)).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path as given.
        path: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The backend cannot do this operation.
    #[error("{backend}: unsupported operation: {operation}")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// What was asked, e.g. `copy`.
        operation: &'static str,
    },
    /// A failure worth retrying: timeouts, connection resets, throttling, 5xx answers.
    #[error("{backend}: transient error on {path}: {source}")]
    Transient {
        /// Backend name.
        backend: &'static str,
        /// The path concerned (empty for whole-client operations).
        path: String,
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
    /// A listing could not tell what is at `path`: a symlink, a special file, a folder that
    /// could not be read or vanished while it was walked, a name that cannot be decoded.
    ///
    /// Unlike every other error, this one does **not** end a listing: it is the one
    /// non-terminal item a [`StorageClient::list`](crate::StorageClient::list) stream may
    /// yield, in canonical order (see [`Error::unlisted_key`]), and the listing goes on after
    /// it. The engine treats the path (and everything below it) as *unknown* for the run:
    /// nothing there is deleted on either side, nothing is copied into it, its base is kept,
    /// and the run reports it and ends with an error status. A consumer that collects a
    /// listing with `try_collect` stops at it, which is the safe reading.
    #[error("{backend}: could not list {}: {reason}", if path.is_empty() { "the root" } else { path.as_str() })]
    Unlisted {
        /// Backend name.
        backend: &'static str,
        /// The path concerned, relative to the client's root (empty only for the root itself
        /// with `contents_only`).
        path: String,
        /// Only the folder's contents are unknown (a member whose name could not be decoded):
        /// the folder itself was listed, and files may still be written into it; nothing below
        /// it is deleted. When false, `path` itself is unknown, with everything below it.
        contents_only: bool,
        /// Why, for the user: e.g. `a symlink (not followed)`.
        reason: String,
    },
    /// Anything else.
    #[error("{backend}: {}{source}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
    Other {
        /// Backend name.
        backend: &'static str,
        /// The path concerned (empty for whole-client operations).
        path: String,
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

/// The first error of type `T` in `err`'s chain of sources, `err` included. Unlike a walk of
/// [`source`](std::error::Error::source), it looks inside [`std::io::Error`]s, whose `source`
/// skips the error they wrap: TLS libraries (rustls) report through nested `io::Error`s, and
/// a backend that must tell a TLS failure (not transient: a retry meets the same certificate)
/// from a dropped connection looks for theirs with this.
pub fn find_in_chain<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

impl Error {
    /// Returns true when retrying the same operation may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient { .. })
    }

    /// Returns true for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Returns true for [`Error::Unlisted`], the one listing error that does not end a
    /// listing.
    pub fn is_unlisted(&self) -> bool {
        matches!(self, Error::Unlisted { .. })
    }

    /// Builds [`Error::Unlisted`] for a path that is unknown with everything below it.
    pub fn unlisted(
        backend: &'static str,
        path: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Unlisted {
            backend,
            path: path.into(),
            contents_only: false,
            reason: reason.into(),
        }
    }

    /// Builds [`Error::Unlisted`] for a folder (`""` for the root) some of whose members could
    /// not be named: nothing below it is deleted, but the folder itself is known.
    pub fn unlisted_contents(
        backend: &'static str,
        folder: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Unlisted {
            backend,
            path: folder.into(),
            contents_only: true,
            reason: reason.into(),
        }
    }

    /// The position of an [`Error::Unlisted`] item in a listing's canonical order, `None` for
    /// every other error.
    ///
    /// An unknown path sorts where a file of that name would (`a` comes before `a.txt`, so the
    /// engine knows it before it meets anything at or below `a`); a folder whose contents are
    /// unknown sorts as `folder/`, right before its first member (the root's as `""`, first).
    pub fn unlisted_key(&self) -> Option<String> {
        match self {
            Error::Unlisted {
                path,
                contents_only: true,
                ..
            } if !path.is_empty() => Some(format!("{path}/")),
            Error::Unlisted { path, .. } => Some(path.clone()),
            _ => None,
        }
    }

    /// Builds [`Error::NotFound`] without a source.
    pub fn not_found(backend: &'static str, path: impl Into<String>) -> Self {
        Error::NotFound {
            backend,
            path: path.into(),
            source: None,
        }
    }

    /// Builds [`Error::AlreadyExists`] without a source.
    pub fn already_exists(backend: &'static str, path: impl Into<String>) -> Self {
        Error::AlreadyExists {
            backend,
            path: path.into(),
            source: None,
        }
    }

    /// Builds [`Error::PreconditionFailed`] without a source.
    pub fn precondition_failed(backend: &'static str, path: impl Into<String>) -> Self {
        Error::PreconditionFailed {
            backend,
            path: path.into(),
            source: None,
        }
    }

    /// Builds [`Error::Other`] from a message.
    pub fn other(backend: &'static str, path: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Other {
            backend,
            path: path.into(),
            source: msg.into().into(),
        }
    }

    /// Builds [`Error::Transient`] from any error.
    pub fn transient(
        backend: &'static str,
        path: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Transient {
            backend,
            path: path.into(),
            source: source.into(),
        }
    }

    /// Maps an I/O error for `path` onto the matching variant.
    ///
    /// `NotFound`, `AlreadyExists` and `PermissionDenied` keep their meaning; interrupted,
    /// timed-out and connection errors are [`Error::Transient`]; the rest is [`Error::Other`].
    pub fn from_io(backend: &'static str, path: impl Into<String>, err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let path = path.into();
        let kind = err.kind();
        let source: BoxError = Box::new(err);
        match kind {
            K::NotFound => Error::NotFound {
                backend,
                path,
                source: Some(source),
            },
            K::AlreadyExists => Error::AlreadyExists {
                backend,
                path,
                source: Some(source),
            },
            K::PermissionDenied => Error::PermissionDenied {
                backend,
                path,
                source: Some(source),
            },
            K::Interrupted
            | K::TimedOut
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::ConnectionRefused
            | K::BrokenPipe
            | K::WouldBlock => Error::Transient {
                backend,
                path,
                source,
            },
            _ => Error::Other {
                backend,
                path,
                source,
            },
        }
    }
}

/// A path for a message (`the root` when it is the root), then the server's reason when
/// there is one: a refusal without its reason (`AccessDenied`, `AuthorizationFailure`, an
/// expired token) leaves the user guessing.
fn path_and_reason(path: &str, source: Option<&BoxError>) -> String {
    let path = if path.is_empty() || path == "." {
        "the root"
    } else {
        path
    };
    match source {
        // Redacted: a server's answer can quote the request's URL, SAS token included.
        Some(reason) => format!("{path} ({})", crate::redact::redact(&reason.to_string())),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_path_and_the_servers_reason() {
        let e = Error::PermissionDenied {
            backend: "azure",
            path: ".".into(),
            source: Some("403 AuthorizationFailure: signature mismatch".into()),
        };
        assert_eq!(
            e.to_string(),
            "azure: permission denied: the root (403 AuthorizationFailure: signature mismatch)"
        );
        let e = Error::PermissionDenied {
            backend: "local",
            path: "a/b".into(),
            source: None,
        };
        assert_eq!(e.to_string(), "local: permission denied: a/b");
        let e = Error::PermissionDenied {
            backend: "azure",
            path: "x".into(),
            source: Some("GET https://a.blob.core.windows.net/c?sv=1&sig=SECRETSIG failed".into()),
        };
        assert!(!e.to_string().contains("SECRETSIG"), "{e}");
    }

    /// A refused conditional operation says why where its maker knew: the trash copy that
    /// did not match the file, the save that landed during a delete. Only the plain
    /// "changed since it was listed" reached the user before.
    #[test]
    fn a_precondition_failure_says_why() {
        let e = Error::PreconditionFailed {
            backend: "local",
            path: "a/b".into(),
            source: Some("the file changed while it was kept in the trash; left alone".into()),
        };
        assert_eq!(
            e.to_string(),
            "local: precondition failed (changed since it was listed): a/b (the file changed \
             while it was kept in the trash; left alone)"
        );
        assert_eq!(
            Error::precondition_failed("s3", "x").to_string(),
            "s3: precondition failed (changed since it was listed): x"
        );
    }

    #[test]
    fn other_errors_name_a_path_only_when_there_is_one() {
        assert_eq!(
            Error::other("s3", "a/b", "boom").to_string(),
            "s3: a/b: boom"
        );
        assert_eq!(
            Error::other("s3", "", "no AWS credentials found").to_string(),
            "s3: no AWS credentials found"
        );
    }

    #[test]
    fn io_errors_map_to_variants() {
        let e = Error::from_io(
            "local",
            "a",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert!(e.is_not_found());
        let e = Error::from_io(
            "local",
            "a",
            std::io::Error::from(std::io::ErrorKind::TimedOut),
        );
        assert!(e.is_transient());
        let e = Error::from_io("local", "a", std::io::Error::other("boom"));
        assert!(matches!(e, Error::Other { .. }));
        assert_eq!(e.to_string(), "local: a: boom");
    }
}

/// Why a whole sync run failed or was stopped before it changed anything.
///
/// Per-file failures do not end a run: they are counted in
/// [`SyncStats::errors`](crate::SyncStats::errors). A `SyncError` means the run as a whole did
/// not complete; [`SyncError::is_safety_stop`] tells the stops that protect data (the CLI
/// exits 3 on them) from failures (exit 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Listing one side failed or ended early; nothing was changed.
    #[error("listing the {side} failed, so nothing was changed: {source}")]
    Listing {
        /// The side whose listing failed.
        side: crate::Side,
        /// The underlying error.
        #[source]
        source: Error,
    },
    /// The run would delete more than the allowed share of a side.
    #[error(
        "stopped before changing anything: the run would delete {would_delete} of {total} files \
         ({percent:.0}%) on the {side}, above the --max-delete limit of {limit}%; check that both \
         roots are right, then re-run with --force (or a higher --max-delete) if this is intended"
    )]
    MaxDelete {
        /// The side that would lose files.
        side: crate::Side,
        /// Files that would be deleted.
        would_delete: u64,
        /// Files on that side now.
        total: u64,
        /// `would_delete / total` in percent.
        percent: f64,
        /// The configured limit.
        limit: u8,
    },
    /// One side is empty, or its root folder is missing, although the pair synced with it
    /// before: an unmounted disk or a wrong path or prefix must not wipe the other side. The
    /// message says what to check first and which run restores the side from the other one.
    #[error("{}", empty_side_message(self))]
    EmptySide {
        /// The empty side.
        side: crate::Side,
        /// Files the base recorded for it.
        base_files: u64,
        /// The side's root as it prints itself (no secrets).
        root: String,
        /// The root folder does not exist at all (not only empty).
        missing: bool,
        /// The mode of the stopped run.
        mode: crate::SyncMode,
        /// The side the run protects ([`SyncOptions::with_protected`](crate::SyncOptions::with_protected)),
        /// if any: `--force` deletes nothing there.
        protected: Option<crate::Side>,
    },
    /// The root of a side the mode reads from does not exist, on a pair's first run: a typo
    /// in the path must not create an empty side that the other side then fills (or, in two-way,
    /// empties). Only a missing receiving root is created, and only on the pair's first run.
    /// Nothing was changed. The CLI exits 4, as for a missing bucket.
    #[error(
        "the {side} {root} does not exist, so nothing was changed; check the path (a typo?) or \
         create the folder. A {mode} run reads from the {side}: syncengine creates only a missing \
         {other}, and only on a pair's first run",
        other = side.other()
    )]
    MissingRoot {
        /// The side whose root is missing.
        side: crate::Side,
        /// The side's root as it prints itself (no secrets).
        root: String,
        /// The mode of the stopped run.
        mode: crate::SyncMode,
    },
    /// A root is not the storage the pair's state describes (another disk at the same path,
    /// another server behind the same URL, a re-created folder, a state file copied from
    /// another pair). Nothing was changed; accept the new root with
    /// [`SyncOptions::with_accept_new_root`](crate::SyncOptions::with_accept_new_root)
    /// (`--accept-new-root`).
    #[error("{}", crate::identity::root_changed_message(changes))]
    RootChanged {
        /// Each root that changed, with the recorded and the found identity.
        changes: Vec<crate::identity::RootChange>,
    },
    /// Another run of the same pair holds the lock.
    #[error(
        "another sync of this pair is running (lock {lock_path} is held); try again when it ends"
    )]
    Locked {
        /// The lock file.
        lock_path: String,
    },
    /// The state database failed.
    #[error("state store error: {0}")]
    State(String),
    /// The run was cancelled; the base is true for what was done.
    #[error("the run was cancelled")]
    Cancelled,
    /// The pair or options are unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A side could not be reached or logged into (see
    /// [`StorageClient::check_access`](crate::StorageClient::check_access)): a connection
    /// refused, a host not found, a TLS failure, wrong credentials, a missing bucket or
    /// container. The CLI exits 4 when found by the check before the run, 1 when found
    /// during it.
    ///
    /// Checked before anything else (`during_run` false): nothing was read or changed. Or
    /// found during the run (`during_run` true), when an action failed with a transient error
    /// and the side then failed the same check: no action was started after that, the ones
    /// in flight finished or failed, no deletion ran, and the base records only what was done.
    #[error(
        "{}",
        unreachable_message(*.side, .root, .source, *.during_run)
    )]
    Unreachable {
        /// The side that could not be reached.
        side: crate::Side,
        /// The client's root as it prints itself (no secrets).
        root: String,
        /// What the check met, with the server's own reason where it gave one.
        #[source]
        source: Error,
        /// The side was lost during the run, after actions had started.
        during_run: bool,
    },
    /// A storage error outside any single action (e.g. reading `.syncignore`).
    #[error("{side}: {source}")]
    Storage {
        /// The side concerned.
        side: crate::Side,
        /// The underlying error.
        #[source]
        source: Error,
    },
}

/// The mode that restores `side` from the other side without deleting anything there: a
/// mirror run towards `side`. Forced, because `side` is empty.
pub fn restoring_mode(side: crate::Side) -> crate::SyncMode {
    match side {
        crate::Side::Source => crate::SyncMode::DestinationToSource,
        crate::Side::Destination => crate::SyncMode::SourceToDestination,
    }
}

/// The message of [`SyncError::EmptySide`]: what was found, what to check first, how to get
/// the files back, and only then what `--force` would do in this mode.
fn empty_side_message(e: &SyncError) -> String {
    let SyncError::EmptySide {
        side,
        base_files,
        root,
        missing,
        mode,
        protected,
    } = e
    else {
        return String::new();
    };
    let (side, other) = (*side, side.other());
    let found = if *missing {
        "does not exist"
    } else {
        "is empty"
    };
    let held = if *base_files == 0 {
        "was synced with this pair before".to_owned()
    } else {
        format!("held {base_files} files at the last sync")
    };
    let mut msg = format!(
        "stopped before changing anything: the {side} ({root}) {found} but {held}. First check that its disk or share is mounted and that the path \
         or prefix is right, then run again."
    );
    // What --force does in this mode, for the side that looks emptied.
    let deletes_other = match side {
        crate::Side::Source => mode.allows_destination_delete(),
        crate::Side::Destination => mode.allows_source_delete(),
    };
    // Nothing of the side flows to the other one in this mode: it only receives.
    let receives_only = match side {
        crate::Side::Source => !mode.allows_upload() && !mode.allows_destination_delete(),
        crate::Side::Destination => !mode.allows_download() && !mode.allows_source_delete(),
    };
    if receives_only {
        msg.push_str(&format!(
            " If the {side}'s files really are gone, re-run with --force: this {mode} run then \
             copies the {other}'s files back to it and deletes nothing on the {other}."
        ));
        if *protected == Some(side) {
            msg.push_str(&format!(
                " The {side} is protected: that run needs to be made without --protect {side}."
            ));
        }
    } else {
        let restore = restoring_mode(side);
        msg.push_str(&format!(
            " If the {side}'s files really are gone and you want them back, restore them from \
             the {other}, which still has them: run the same pair with --mode {restore} --force \
             (it writes only to the {side} and deletes nothing on the {other})."
        ));
        if *protected == Some(side) {
            msg.push_str(&format!(
                " The {side} is protected: that run, and --force in {mode}, need the run \
                 without --protect {side}, which lets it write to the {side}."
            ));
        } else if *protected == Some(other) {
            msg.push_str(&format!(
                " The {other} is protected: --force in {mode} deletes nothing there (its \
                 copies are counted as protected, and this stop comes back until the {side} \
                 is restored)."
            ));
        } else if deletes_other {
            msg.push_str(&format!(
                " Only if the {side} was emptied on purpose, re-run with --force in {mode}: that \
                 deletes the {other}'s copies too (they go to its trash)."
            ));
        } else {
            msg.push_str(&format!(
                " Only if the {side} was emptied on purpose, re-run with --force in {mode}: the \
                 {other} keeps its copies and the pair records them as deleted on the {side}."
            ));
        }
    }
    msg
}

/// The message of [`SyncError::Unreachable`].
fn unreachable_message(side: crate::Side, root: &str, source: &Error, during_run: bool) -> String {
    if during_run {
        format!(
            "cannot reach the {side} ({root}) any more: {source}. The run stopped: what was \
             done before is recorded and nothing more was started (no further deletion); run \
             again once it can be reached"
        )
    } else {
        format!(
            "cannot reach the {side} ({root}): {source}. Check the address, the credentials and \
             that the bucket, container or share exists; nothing was changed"
        )
    }
}

impl SyncError {
    /// True for the stops that protect data: max-delete, empty side, lock held, a changed
    /// root.
    pub fn is_safety_stop(&self) -> bool {
        matches!(
            self,
            SyncError::MaxDelete { .. }
                | SyncError::EmptySide { .. }
                | SyncError::Locked { .. }
                | SyncError::RootChanged { .. }
        )
    }

    /// True when a side could not be reached or logged into ([`SyncError::Unreachable`]), or
    /// the root of a side the mode reads from does not exist on a pair's first run
    /// ([`SyncError::MissingRoot`]): the CLI's exit status 4.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SyncError::Unreachable { .. } | SyncError::MissingRoot { .. }
        )
    }
}
