//! Test helpers shared by the executor tests.

pub mod faulty;
