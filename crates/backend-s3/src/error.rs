//! The crate's private error type and its one mapping into the core [`Error`].

use std::error::Error as StdError;

use syncengine_core::Error;

use crate::config::StoreKind;

/// What can go wrong inside this backend, before it is mapped for the engine.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// An error from object_store.
    Store(object_store::Error),
    /// A configuration the builder rejects.
    Config(String),
    /// The store's cargo feature is not compiled in.
    FeatureOff(StoreKind),
    /// A key the server returned that is not a valid relative path.
    BadKey { key: String, reason: String },
    /// Credentials that were given but cannot be used (a key file that does not parse):
    /// the side cannot be logged into, which is not a usage error.
    #[cfg(feature = "gcs")]
    Login(String),
}

impl StoreError {
    /// Maps this error onto the core [`Error`]: the one place where that happens.
    ///
    /// Timeouts, connection failures, 429 and 5xx answers are [`Error::Transient`], so the
    /// engine retries them (object_store has already retried each request a few times).
    pub(crate) fn into_core(self, backend: &'static str, path: &str) -> Error {
        use object_store::Error as E;
        let path = path.to_owned();
        let err = match self {
            StoreError::Store(e) => e,
            StoreError::Config(msg) => return Error::other(backend, path, msg),
            StoreError::FeatureOff(kind) => {
                return Error::Unsupported {
                    backend: kind.backend(),
                    operation: match kind {
                        StoreKind::S3 => "s3 (cargo feature `s3` is off)",
                        StoreKind::Azure => "azure (cargo feature `azure` is off)",
                        StoreKind::Gcs => "gcs (cargo feature `gcs` is off)",
                    },
                };
            }
            #[cfg(feature = "gcs")]
            StoreError::Login(msg) => {
                return Error::PermissionDenied {
                    backend,
                    path,
                    source: Some(msg.into()),
                };
            }
            StoreError::BadKey { key, reason } => {
                return Error::InvalidPath {
                    path: key,
                    reason: format!("{backend} returned a key that is not a valid path: {reason}"),
                };
            }
        };
        #[cfg(feature = "s3")]
        if let E::Generic { source, .. } = &err
            && let Some(c) = source.downcast_ref::<crate::aws_profile::CredentialsUnavailable>()
        {
            // Our own message, whole: what was tried and the fix.
            return Error::other(backend, path, c.0.clone());
        }
        // A TLS failure (an untrusted certificate, an `https://` endpoint that speaks plain
        // HTTP) reaches us as a connection error, which would pass for transient: retried,
        // then the side taken for unreachable. Every retry meets the same failure: say so.
        if let Some(tls) = syncengine_core::error::find_in_chain::<rustls::Error>(&err) {
            let reason = tls.to_string();
            return Error::Other {
                backend,
                path,
                source: format!(
                    "TLS failed: {reason} ({err}). Check that the endpoint really speaks \
                     https (one that speaks plain HTTP is given as http://) and that this \
                     machine trusts its certificate; a retry meets the same failure"
                )
                .into(),
            };
        }
        match err {
            E::NotFound { .. } => Error::NotFound {
                backend,
                path,
                source: Some(Box::new(err)),
            },
            E::AlreadyExists { .. } => Error::AlreadyExists {
                backend,
                path,
                source: Some(Box::new(err)),
            },
            E::Precondition { .. } => Error::PreconditionFailed {
                backend,
                path,
                source: Some(Box::new(err)),
            },
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => Error::PermissionDenied {
                backend,
                path,
                source: Some(Box::new(err)),
            },
            E::InvalidPath { source } => Error::InvalidPath {
                path,
                reason: source.to_string(),
            },
            E::NotSupported { .. } | E::NotImplemented { .. } => Error::Unsupported {
                backend,
                operation: "this operation",
            },
            other if is_transient(&other) => Error::Transient {
                backend,
                path,
                source: Box::new(other),
            },
            other => Error::Other {
                backend,
                path,
                source: Box::new(other),
            },
        }
    }
}

/// True for errors a later attempt may not meet: timeouts, connection failures, throttling
/// and server errors. object_store does not export its retry error type, so the HTTP status
/// is read from the error text (`... status code: 503 ...`), and the transport failure kind
/// from [`object_store::client::HttpError`] in the source chain.
fn is_transient(err: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<HttpError>()
            && matches!(
                h.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            )
        {
            return true;
        }
        if let Some(status) = status_in_text(&e.to_string()) {
            return status == 429 || status == 408 || (500..600).contains(&status);
        }
        cur = e.source();
    }
    false
}

/// Finds the HTTP status object_store writes into its messages ("status code: 503").
fn status_in_text(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(msg: &str) -> StoreError {
        StoreError::Store(object_store::Error::Generic {
            store: "S3",
            source: msg.to_owned().into(),
        })
    }

    #[test]
    fn maps_variants() {
        let nf = StoreError::Store(object_store::Error::NotFound {
            path: "k".into(),
            source: "gone".into(),
        });
        assert!(nf.into_core("s3", "k").is_not_found());
        let pre = StoreError::Store(object_store::Error::Precondition {
            path: "k".into(),
            source: "etag".into(),
        });
        assert!(matches!(
            pre.into_core("s3", "k"),
            Error::PreconditionFailed { .. }
        ));
        let e = generic("Server returned non-2xx status code: 503 Service Unavailable: slow down");
        assert!(e.into_core("s3", "k").is_transient());
        let e = generic("Server returned non-2xx status code: 400 Bad Request: nope");
        assert!(matches!(e.into_core("s3", "k"), Error::Other { .. }));
    }
}
