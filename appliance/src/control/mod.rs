//! The control plane: authentication, the HTTP API and its OpenAPI document, MQTT fleet
//! control and metrics. Transports are thin adapters over [`crate::node::Command`]; they own
//! no state.

pub mod api;
pub mod auth;
pub mod auth_api;
pub mod device;
pub mod http_server;
pub mod metrics;
pub mod mqtt;
pub mod tls;
