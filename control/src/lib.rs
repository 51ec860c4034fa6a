//! The control plane: the HTTP API and its OpenAPI document, the accept loop and TLS, MQTT
//! fleet control and metrics. Transports decode a request into a node command or query and
//! encode the answer; the state they keep is their own connection bookkeeping and counters.

pub mod ai_api;
pub mod api;
pub mod auth_api;
pub mod detections_api;
pub mod http;
pub mod llhls_api;
pub mod metrics;
pub mod mqtt;
pub mod onvif_api;
pub mod recordings_api;
pub mod update_api;
mod upload;
