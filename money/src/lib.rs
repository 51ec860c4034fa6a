//! The money plane: the account keystore (`wallet`), the only JSON-RPC client (`chain`), the
//! chain head and sender cache (`watcher`), an orchestrator's payments and redemption queue
//! (`payments`) and its once-a-round reward call (`reward`, with the pool's arithmetic in
//! `pool`). The ticket rules themselves are `lpe-pm`'s, which does no I/O.
//!
//! Knows nothing of media, MQTT or HTTP: it is told about payments and reports events.

pub mod chain;
pub mod payments;
pub mod pool;
pub mod reward;
pub mod wallet;
pub mod watcher;
