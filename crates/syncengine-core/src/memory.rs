//! MemoryClient (in progress).
