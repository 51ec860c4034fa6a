//! The vocabulary every plane of the node shares, and nothing that does I/O beyond a channel:
//! the event bus, what a stream is (`spec`), connection admission, identifiers.
//!
//! Every other node crate depends on this one; it depends on none of them.

pub mod admission;
pub mod events;
pub mod ids;
pub mod role;
pub mod secret;
pub mod spec;
pub mod supervisor;
