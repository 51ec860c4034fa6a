//! System updates, on the update engine the box carries (RAUC) — never an engine of our own.
//!
//! - [`rauc`]: RAUC's D-Bus service (`de.pengutronix.rauc.Installer`): install a bundle and
//!   follow its progress, read the slots, mark the booted slot good or bad. Nothing here parses
//!   RAUC's command-line output.
//! - [`download`]: fetching a bundle over HTTP(S) to the data partition: refused before a byte
//!   is written when it would not fit, resumed where an interrupted download stopped, bounded
//!   by a size cap, and checked against the SHA-256 the requester gave.
//!
//! This crate knows nothing of the node: the node's update command drives it.

pub mod download;
pub mod rauc;

/// Why an update step failed, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("the update service cannot be reached: {0}")]
    Bus(String),
    #[error("the update was refused: {0}")]
    Refused(String),
    #[error("the download failed: {0}")]
    Download(String),
    #[error("the bundle needs {needed} bytes and {available} are free")]
    NoSpace { needed: u64, available: u64 },
    #[error("the bundle is larger than the {limit} bytes allowed")]
    TooLarge { limit: u64 },
    #[error("the bundle's SHA-256 is {actual}, not the {expected} asked for")]
    Checksum { expected: String, actual: String },
    #[error("{0}")]
    Io(String),
}
