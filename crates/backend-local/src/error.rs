//! The one mapping from local I/O failures into the core [`Error`].

use std::io;

use syncengine_core::Error;

/// Backend name used in errors and logs.
pub(crate) const BACKEND: &str = "local";

/// Maps an I/O error on `path` (relative to the root) into the core error.
///
/// Beyond [`Error::from_io`]: "not a directory" means a parent of `path` is a file, so there is
/// no file at `path` either — `NotFound`, which keeps `stat`, `read` and `delete` of such a
/// path consistent with a plain missing one.
pub(crate) fn map_io(path: &str, err: io::Error) -> Error {
    match err.kind() {
        io::ErrorKind::NotADirectory => Error::NotFound {
            backend: BACKEND,
            path: path.to_owned(),
            source: Some(Box::new(err)),
        },
        _ => Error::from_io(BACKEND, path, err),
    }
}

/// Returns a closure mapping I/O errors on `path`, for `map_err`.
pub(crate) fn io_on(path: &str) -> impl FnOnce(io::Error) -> Error + '_ {
    move |err| map_io(path, err)
}
