//! Alerts: the events an operator must see until someone acknowledges them
//! ([`lpe_core::events::ALERTS`], `Command::AcknowledgeAlert`). The acknowledgement is kept
//! with the event in the store, so every browser, operator and fleet sees the same open
//! alerts.

use serde::Deserialize;

/// Which alerts an event listing is narrowed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertFilter {
    /// Every alert, acknowledged or not.
    All,
    /// Alerts no one has acknowledged.
    Open,
}

/// The alerts' kinds as the store keeps them.
pub(crate) fn alert_kinds() -> Vec<&'static str> {
    lpe_core::events::ALERTS
        .iter()
        .map(|k| k.as_str())
        .collect()
}
