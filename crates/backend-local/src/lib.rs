//! Local-disk backend (in progress).
