//! The node's HTTP listeners, whatever they serve (the operator's API, the Livepeer network's
//! port): `serve` is the accept loop with connection slots, header timeouts and a graceful
//! drain; `tls` the listener that completes TLS handshakes concurrently and the self-signed
//! certificate kept in the data directory.

pub mod serve;
pub mod tls;

pub use serve::{Limits, serve};
pub use tls::{PeerAddr, TlsListener};
