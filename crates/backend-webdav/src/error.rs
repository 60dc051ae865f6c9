//! This backend's own failures and the one mapping from them into the core [`Error`].

use reqwest::StatusCode;
use syncengine_core::Error;

use crate::multistatus::ParseError;

/// Backend name used in errors and logs.
pub(crate) const BACKEND: &str = "webdav";

/// What went wrong talking to the server, before it is mapped into the core error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DavError {
    /// The server answered with an unexpected status.
    #[error("{method} {url}: HTTP {status}")]
    Status {
        method: &'static str,
        url: String,
        status: StatusCode,
    },
    /// The request could not be sent or the answer not read (connection, timeout, body).
    #[error("{method} {url}: {source}")]
    Http {
        method: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// A PROPFIND answer that could not be used.
    #[error("PROPFIND {url}: {source}")]
    Parse {
        url: String,
        #[source]
        source: ParseError,
    },
    /// The server said something that breaks the protocol or this backend's invariants.
    #[error("{0}")]
    Protocol(String),
    /// A parent collection vanished between our check and the request; a retry recreates it.
    #[error("{0}")]
    Vanished(String),
    /// The TLS connection failed (a certificate that does not check out, most often): not
    /// transient, a retry meets the same certificate.
    #[error(
        "{method} {url}: TLS failed: {reason}. If the server's certificate is signed by your \
         own CA, trust it with {env}=<PEM file> (WebDavBuilder::with_ca_file) or SSL_CERT_FILE; \
         certificate checks are never turned off",
        env = crate::builder::ENV_CA_FILE
    )]
    Tls {
        method: &'static str,
        url: String,
        reason: String,
    },
    /// Basic credentials would have gone over plain http, and the user has not opted in.
    #[error(
        "{method} {url}: refusing to send the password with HTTP Basic authentication over \
         plain http:// (anyone on the network path could read it). Use webdavs:// (https), or \
         a server that offers Digest authentication; on a network you trust (such as \
         loopback) opt in with {env}=1 (WebDavBuilder::with_allow_insecure_basic)",
        env = crate::builder::ENV_ALLOW_INSECURE_BASIC
    )]
    InsecureBasic { method: &'static str, url: String },
    /// An answer's body ended before its length (or ran past it): a retry reads it whole.
    #[error("{0}")]
    Truncated(String),
    /// An upload went [`Timeouts::idle`](syncengine_core::timeouts::Timeouts::idle) without
    /// progress: transient.
    #[error("{method} {url}: {source}")]
    Stalled {
        method: &'static str,
        url: String,
        #[source]
        source: syncengine_core::stall::Stalled,
    },
    /// A request whose body streamed (and cannot be replayed) met a new authentication
    /// challenge; it is cached, so a retry answers it.
    #[error("{method} {url}: the server asked for authentication anew after the body was sent")]
    Rechallenged { method: &'static str, url: String },
}

/// The TLS error somewhere in `err`'s chain of sources, if any (rustls reports through
/// nested `std::io::Error`s, which [`find_in_chain`] looks into).
pub(crate) fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    syncengine_core::error::find_in_chain::<rustls::Error>(err).map(ToString::to_string)
}

/// What the failed request was trying to do, where one status means different things.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ctx {
    /// No special meaning.
    Plain,
    /// Looking up one path (stat, read, delete): a parent that is a file makes Apache answer
    /// 400 or 409, and a server that redirects a collection to `name/` answers 3xx. All three
    /// mean "no file here", like ENOTDIR on local disk.
    Lookup,
    /// A COPY/MOVE/write without overwrite: 412 means the target exists.
    NoOverwrite,
}

/// Maps a failure on `path` (relative to the client root) into the core error. The only place
/// HTTP statuses become core error variants.
pub(crate) fn map_error(err: DavError, path: &str, ctx: Ctx) -> Error {
    let path = path.to_owned();
    let status = match &err {
        DavError::Status { status, .. } => Some(*status),
        _ => None,
    };
    let transient = match &err {
        DavError::Http { source, .. } => {
            // No content coding is enabled, so a decode error is a body the connection cut
            // short of its length (hyper's incomplete message): a retry reads it whole.
            source.is_timeout()
                || source.is_connect()
                || source.is_request()
                || source.is_body()
                || source.is_decode()
        }
        DavError::Vanished(_)
        | DavError::Truncated(_)
        | DavError::Rechallenged { .. }
        | DavError::Stalled { .. } => true,
        _ => false,
    };
    let source: syncengine_core::BoxError = Box::new(err);
    match status.map(|s| s.as_u16()) {
        Some(404) => Error::NotFound {
            backend: BACKEND,
            path,
            source: Some(source),
        },
        Some(400 | 409 | 300..=399) if ctx == Ctx::Lookup => Error::NotFound {
            backend: BACKEND,
            path,
            source: Some(source),
        },
        Some(412) if ctx == Ctx::NoOverwrite => Error::AlreadyExists {
            backend: BACKEND,
            path,
            source: Some(source),
        },
        Some(412) => Error::PreconditionFailed {
            backend: BACKEND,
            path,
            source: Some(source),
        },
        Some(401 | 403) => Error::PermissionDenied {
            backend: BACKEND,
            path,
            source: Some(source),
        },
        Some(408 | 429 | 500..=599) => Error::Transient {
            backend: BACKEND,
            path,
            source,
        },
        _ if transient => Error::Transient {
            backend: BACKEND,
            path,
            source,
        },
        _ => Error::Other {
            backend: BACKEND,
            path,
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> DavError {
        DavError::Status {
            method: "GET",
            url: "http://h/x".into(),
            status: StatusCode::from_u16(code).unwrap(),
        }
    }

    #[test]
    fn statuses_map_per_style() {
        let m = |code, ctx| map_error(status(code), "x", ctx);
        assert!(matches!(m(404, Ctx::Plain), Error::NotFound { .. }));
        assert!(matches!(
            m(412, Ctx::Plain),
            Error::PreconditionFailed { .. }
        ));
        assert!(matches!(
            m(412, Ctx::NoOverwrite),
            Error::AlreadyExists { .. }
        ));
        assert!(matches!(m(401, Ctx::Plain), Error::PermissionDenied { .. }));
        assert!(matches!(m(403, Ctx::Plain), Error::PermissionDenied { .. }));
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(m(code, Ctx::Plain).is_transient(), "{code}");
        }
        assert!(matches!(m(409, Ctx::Plain), Error::Other { .. }));
        assert!(matches!(m(409, Ctx::Lookup), Error::NotFound { .. }));
        assert!(matches!(m(400, Ctx::Lookup), Error::NotFound { .. }));
        assert!(matches!(m(301, Ctx::Lookup), Error::NotFound { .. }));
        assert!(map_error(DavError::Vanished("gone".into()), "x", Ctx::Plain).is_transient());
        let again = DavError::Rechallenged {
            method: "PUT",
            url: "http://h/x".into(),
        };
        assert!(map_error(again, "x", Ctx::Plain).is_transient());
        assert!(matches!(
            map_error(DavError::Protocol("bad".into()), "x", Ctx::Plain),
            Error::Other { .. }
        ));
    }
}
