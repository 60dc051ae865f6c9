//! syncengine facade (placeholder until the engine lands).
pub use syncengine_core::*;
