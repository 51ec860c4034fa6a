//! The Livepeer network, as go-livepeer speaks it: this node as an orchestrator that gateways
//! pay to transcode their segments.
//!
//! - `proto` — the `net/lp_rpc.proto` messages (prost).
//! - `creds` — what is signed and keyed: request signatures, segment credentials, auth
//!   tokens, the transcoded-data signature.

pub mod client;
pub mod creds;
pub mod fuzzing;
pub mod orchestrator;
pub mod proto;
pub mod request;
pub mod server;
pub mod sessions;
