//! Hardware access for Livepeer Edge.
//!
//! This crate knows nothing of the node: it reports what hardware exists and how to talk to it,
//! and every function degrades to "not present" when the hardware is missing.

pub mod button;
pub mod camera;
pub mod led;
pub mod lm75;
pub mod microphone;
pub mod system;
