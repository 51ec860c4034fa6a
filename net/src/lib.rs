//! The Livepeer network, as go-livepeer speaks it: this node as an orchestrator that gateways
//! pay to transcode their segments, and as a gateway that pays orchestrators to transcode its
//! offloaded streams (`gateway`).
//!
//! - `proto` — the `net/lp_rpc.proto` messages (prost).
//! - `creds` — what is signed and keyed: request signatures, segment credentials, auth
//!   tokens, the transcoded-data signature.

pub mod client;
pub mod creds;
pub mod discovery;
pub mod fee;
pub mod fuzzing;
pub mod gateway;
pub mod live_payment;
pub mod orchestrator;
pub mod proto;
pub mod refusal;
pub mod remote;
pub mod request;
pub mod results;
pub mod server;
pub mod sessions;
pub mod signer;
pub mod tls_client;
pub mod transcoder;

/// The secret remote transcoders present, when `net.transcoder_secret_file` is not set.
pub const TRANSCODER_SECRET_ENV: &str = "LPE_NET_TRANSCODER_SECRET";
/// The orchestrator's secret for the transcoder role, when `net.orchestrator_secret_file` is
/// not set.
pub const ORCHESTRATOR_SECRET_ENV: &str = "LPE_NET_ORCHESTRATOR_SECRET";
