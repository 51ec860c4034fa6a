//! A sans-IO RTMP server for publishers (OBS, FFmpeg, hardware encoders): the handshake, the
//! chunk stream, AMF0 commands and the publish conversation.
//!
//! Everything here reads bytes a stranger sent before any stream key was checked, so every
//! path returns an [`Error`] instead of panicking, every buffer is bounded by
//! [`chunk::Limits`], and nothing recurses deeper than [`amf0::MAX_DEPTH`]. The fuzz target
//! in `fuzz/` drives [`Session`] with arbitrary bytes.
//!
//! Deliberately absent: playback (the node serves HLS), the digest ("complex") handshake that
//! only Flash Player needed, AMF3 values (commands arrive as AMF0 from every encoder in use;
//! an AMF3 command message's leading format byte is skipped), and aggregate messages.

pub mod amf0;
pub mod chunk;
pub mod fuzzing;
mod handshake;
mod session;

pub use chunk::Limits;
pub use session::{Event, Media, Session};

/// Why a connection must end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("handshake: {0}")]
    Handshake(&'static str),
    #[error("protocol: {0}")]
    Protocol(&'static str),
    #[error("AMF0: {0}")]
    Amf(&'static str),
    #[error("limit: {0}")]
    Limit(&'static str),
}
