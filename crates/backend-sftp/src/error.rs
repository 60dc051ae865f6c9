//! The backend's own errors and their one mapping into the core [`Error`].

use russh_sftp::client::error::Error as SftpProtoError;
use russh_sftp::protocol::StatusCode;
use syncengine_core::Error;

use crate::BACKEND;

/// What can go wrong inside this backend, before it becomes a core [`Error`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum SftpError {
    /// TCP connect, SSH handshake or channel setup failed: worth a retry.
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },
    /// The server's host key is not trusted. Never retried.
    #[error("{0}")]
    HostKey(String),
    /// No authentication method was accepted. Never retried.
    #[error("{0}")]
    Auth(String),
    /// An SFTP request failed (a status from the server, or the channel died).
    #[error("{0}")]
    Sftp(#[from] SftpProtoError),
    /// The path exists but is not a regular file (a directory, a symlink…).
    #[error("not a regular file")]
    NotAFile,
    /// A create-only commit met an existing target.
    #[error("target exists")]
    Exists,
    /// A checked replace found another version (or nothing) at the target.
    #[error("the file changed since it was listed")]
    Changed,
    /// A replace failed half-way: the file that was at the path could not be put back and
    /// stays at the aside name (it may be the only copy of that version).
    #[error("{why}; that version is kept at {aside} (it may be its only copy)")]
    LeftAside { aside: String, why: String },
    /// A folder on the path below the root is a symlink: nothing is written, moved or deleted
    /// through it. Never retried.
    #[error(
        "{link:?} is a symlink: nothing is written, moved or deleted through a symlinked folder \
         inside the root (it may lead outside it); replace the link by the folder it points to \
         (or, for a folder of your own, exclude it)"
    )]
    SymlinkedFolder { link: String },
    /// The server's data ended (EOF) before the size the file had when it was opened: the
    /// file shrank while it was read. Worth a retry.
    #[error(
        "the file ended after {got} bytes, before its size of {expected} (it changed while it was read)"
    )]
    EndedEarly { expected: u64, got: u64 },
    /// The server keeps a new file's permission bits more open than the source's, even when
    /// told to narrow them (`rclone serve sftp` applies its own `--file-perms`): the content
    /// is not written, so a private file never becomes readable by others. Never retried.
    #[error(
        "the server keeps new files at mode {got:04o}, more open than the source's {wanted:04o},          even when asked to narrow them; the file is not written so that it does not become          readable by others. Make the server keep permission bits (rclone serve sftp:          --file-perms 0600), or exclude the file"
    )]
    PermissionsIgnored { got: u32, wanted: u32 },
    /// Anything else, as a message.
    #[error("{0}")]
    Message(String),
}

impl SftpError {
    /// True when the failure means the connection (not the request) is broken.
    pub(crate) fn is_connection_error(&self) -> bool {
        match self {
            SftpError::Connect { .. } => true,
            SftpError::Sftp(e) => proto_is_connection_error(e),
            _ => false,
        }
    }

    /// True when the server answered "no such file".
    pub(crate) fn is_no_such_file(&self) -> bool {
        matches!(self, SftpError::Sftp(SftpProtoError::Status(s)) if s.status_code == StatusCode::NoSuchFile)
    }
}

/// True for SFTP client errors that mean the channel or connection is gone.
pub(crate) fn proto_is_connection_error(e: &SftpProtoError) -> bool {
    match e {
        SftpProtoError::IO(_) | SftpProtoError::Timeout => true,
        // "session closed", "sender dropped", SendError/RecvError: the channel's task ended.
        SftpProtoError::UnexpectedBehavior(_) => true,
        SftpProtoError::Status(s) => matches!(
            s.status_code,
            StatusCode::NoConnection | StatusCode::ConnectionLost
        ),
        _ => false,
    }
}

/// Maps a backend error for `path` into the core [`Error`]: the one place this happens.
pub(crate) fn to_core(err: SftpError, path: &str) -> Error {
    let path = path.to_owned();
    match err {
        SftpError::NotAFile => Error::NotFound {
            backend: BACKEND,
            path,
            source: Some(Box::new(err)),
        },
        SftpError::Exists => Error::AlreadyExists {
            backend: BACKEND,
            path,
            source: None,
        },
        SftpError::Changed => Error::PreconditionFailed {
            backend: BACKEND,
            path,
            source: None,
        },
        SftpError::Sftp(SftpProtoError::Status(ref s)) => match s.status_code {
            StatusCode::NoSuchFile => Error::NotFound {
                backend: BACKEND,
                path,
                source: Some(Box::new(err)),
            },
            StatusCode::PermissionDenied => Error::PermissionDenied {
                backend: BACKEND,
                path,
                source: Some(Box::new(err)),
            },
            StatusCode::NoConnection | StatusCode::ConnectionLost => {
                Error::transient(BACKEND, path, err)
            }
            _ => Error::Other {
                backend: BACKEND,
                path,
                source: Box::new(err),
            },
        },
        e @ SftpError::EndedEarly { .. } => Error::transient(BACKEND, path, e),
        e if e.is_connection_error() => Error::transient(BACKEND, path, e),
        // Host key and authentication failures are configuration problems: a retry cannot
        // fix them, and their message (with the fingerprint) must reach the user's screen.
        e => Error::Other {
            backend: BACKEND,
            path,
            source: Box::new(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh_sftp::protocol::Status;

    fn status(code: StatusCode) -> SftpError {
        SftpError::Sftp(SftpProtoError::Status(Status {
            id: 1,
            status_code: code,
            error_message: "x".into(),
            language_tag: "en".into(),
        }))
    }

    #[test]
    fn statuses_map_to_core_variants() {
        assert!(to_core(status(StatusCode::NoSuchFile), "a").is_not_found());
        assert!(matches!(
            to_core(status(StatusCode::PermissionDenied), "a"),
            Error::PermissionDenied { .. }
        ));
        assert!(to_core(status(StatusCode::ConnectionLost), "a").is_transient());
        assert!(matches!(
            to_core(status(StatusCode::Failure), "a"),
            Error::Other { .. }
        ));
        assert!(to_core(SftpError::Sftp(SftpProtoError::Timeout), "a").is_transient());
        assert!(
            to_core(
                SftpError::Connect {
                    target: "h:22".into(),
                    message: "refused".into()
                },
                ""
            )
            .is_transient()
        );
        let e = to_core(SftpError::HostKey("SHA256:abc".into()), "");
        assert!(!e.is_transient());
        assert!(e.to_string().contains("SHA256:abc"), "{e}");
    }
}
