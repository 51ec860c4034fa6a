//! The control plane: the HTTP API (and, later, authentication, the web UI, MQTT and
//! metrics). Transports are thin adapters over [`crate::node::Command`]; they own no state.

pub mod api;
