//! The command model: every change of state is a [`Command`] in an [`Envelope`] that says
//! who sent it and, when the sender may repeat it, under which request id. [`crate::Node`]
//! executes envelopes in one place ([`crate::Node::submit`]): a request id is journalled
//! before the command runs and answered from the journal when it comes again.

use serde::{Deserialize, Serialize};

use crate::StreamView;
use lpe_core::events::now_ms;
use lpe_core::spec::{SpecError, SpecPatch, StreamSpec};
use lpe_store::StoreError;

/// Who sent a command: for the journal, the logs and the events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A signed-in operator, or an API token acting for its owner.
    Operator { user: String },
    /// Whoever set the node up (before any operator exists).
    Setup,
    /// The fleet, over MQTT.
    Fleet,
    /// The command line on the box.
    Cli,
    /// A peer on the Livepeer network (a gateway paying this orchestrator).
    Peer { address: String },
    /// The node itself (first start, the fleet's desired configuration).
    Node,
    /// Someone at the box, through its button.
    Button,
}

impl Actor {
    /// Who it is in a record others read (an acknowledged alert): the user, or the kind.
    pub fn name(&self) -> String {
        match self {
            Actor::Operator { user } => user.clone(),
            Actor::Peer { address } => address.clone(),
            Actor::Setup => "setup".into(),
            Actor::Fleet => "fleet".into(),
            Actor::Cli => "cli".into(),
            Actor::Node => "node".into(),
            Actor::Button => "button".into(),
        }
    }
}

/// A command with its sender and, for senders that retry, its request id.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub actor: Actor,
    /// Unique per command from this sender; a repeat is answered from the journal.
    pub request_id: Option<String>,
    pub command: Command,
}

impl Envelope {
    /// A command no one will repeat (an HTTP request, a payment).
    pub fn once(actor: Actor, command: Command) -> Self {
        Self {
            actor,
            request_id: None,
            command,
        }
    }
}

/// Where a journalled command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JournalState {
    Accepted,
    InProgress,
    Succeeded,
    Failed,
}

/// A journalled command's record, as kept under its request id and as the fleet sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JournalEntry {
    pub request_id: Option<String>,
    pub command: String,
    pub state: JournalState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    pub ts_ms: u64,
}

impl JournalEntry {
    pub fn new(request_id: Option<&str>, command: &str, state: JournalState) -> Self {
        Self {
            request_id: request_id.map(str::to_string),
            command: command.to_string(),
            state,
            reason: None,
            result: None,
            ts_ms: now_ms(),
        }
    }

    pub fn failed(request_id: Option<&str>, command: &str, reason: impl Into<String>) -> Self {
        Self {
            reason: Some(reason.into()),
            ..Self::new(request_id, command, JournalState::Failed)
        }
    }

    /// The final record of a command that ran.
    pub fn finished(
        request_id: Option<&str>,
        command: &str,
        result: &Result<Outcome, CommandError>,
    ) -> Self {
        match result {
            Ok(o) => {
                let summary = o.summary();
                Self {
                    result: (!summary.is_null()).then_some(summary),
                    ..Self::new(request_id, command, JournalState::Succeeded)
                }
            }
            Err(e) => Self::failed(request_id, command, e.reason()),
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The answer to a submitted envelope.
#[derive(Debug)]
pub enum Reply {
    /// The command ran now.
    Ran(Result<Outcome, CommandError>),
    /// The request id was seen before: its journal entry, the command not run again.
    Repeat(JournalEntry),
}

/// A change of state.
#[derive(Debug, Clone)]
pub enum Command {
    CreateStream(StreamSpec),
    /// A whole new spec; secrets it leaves out are kept.
    ReplaceStream {
        id: String,
        spec: StreamSpec,
    },
    PatchStream {
        id: String,
        patch: SpecPatch,
    },
    DeleteStream {
        id: String,
    },
    StartStream {
        id: String,
    },
    StopStream {
        id: String,
    },
    RestartStream {
        id: String,
    },
    /// A new stream key for an RTMP stream; the old one stops working at once.
    RotateStreamKey {
        id: String,
    },
    /// Setup, sessions, users and API tokens.
    Auth(crate::auth::AuthCommand),
    /// A fleet's desired configuration (`config/desired`), applied whole or not at all.
    ApplyDesired(DesiredConfig),
    SetLogLevel(String),
    /// Stops gracefully and starts again (the process re-executes itself).
    RestartNode,
    /// Erases the data directory at a restart (the keystore kept when `keep_keys`): every
    /// stream, user, ticket and recording index goes; the box starts as new.
    FactoryReset {
        keep_keys: bool,
    },
    /// A gateway's TicketBroker funding, sent from the node's account.
    Funding(Funding),
    /// A fleet's request for a stream's current picture (a read, journalled like the fleet's
    /// other commands so a repeated request id is answered, not run twice).
    Snapshot {
        id: String,
    },
    /// The account as an orchestrator on chain, with the reward call's state (a read).
    OrchestratorStatus,
    /// A gateway's payment (the decoded `Livepeer-Payment` header), as an orchestrator
    /// receives it.
    ReceivePayment {
        payment: Box<lpe_pm::wire::Payment>,
        /// The balance it credits: the gateway's session with this node.
        session: String,
    },
    /// Work done for a gateway's session, charged at this node's price for that gateway.
    ChargeWork {
        sender: lpe_pm::Address,
        session: String,
        pixels: u64,
    },
    /// A system update: a RAUC bundle from a URL or an upload, installed to the other slot.
    /// Answered at once with the accepted job; the job goes on in the background.
    Update(crate::update::UpdateRequest),
    /// A gateway's session ended: what is left of its balance is forgotten.
    EndPeerSession {
        sender: lpe_pm::Address,
        session: String,
    },
    /// An alert seen to: it leaves the open alerts, with who acknowledged it and when (the
    /// first acknowledgement stands).
    AcknowledgeAlert {
        event_id: i64,
    },
}

impl Command {
    /// The command's name in journals, logs and fleet topics (`cmd/<name>`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateStream(_) => "stream_create",
            Command::ReplaceStream { .. } => "stream_replace",
            Command::PatchStream { .. } => "stream_patch",
            Command::DeleteStream { .. } => "stream_delete",
            Command::StartStream { .. } => "stream_start",
            Command::StopStream { .. } => "stream_stop",
            Command::RestartStream { .. } => "stream_restart",
            Command::RotateStreamKey { .. } => "stream_key_rotate",
            Command::Auth(_) => "auth",
            Command::ApplyDesired(_) => "config_desired",
            Command::SetLogLevel(_) => "log_level",
            Command::RestartNode => "restart",
            Command::FactoryReset { .. } => "factory_reset",
            Command::Funding(_) => "funding",
            Command::Snapshot { .. } => "snapshot",
            Command::OrchestratorStatus => "orchestrator_status",
            Command::ReceivePayment { .. } => "payment",
            Command::ChargeWork { .. } => "charge_work",
            Command::EndPeerSession { .. } => "peer_session_end",
            Command::Update(_) => "update",
            Command::AcknowledgeAlert { .. } => "alert_acknowledge",
        }
    }
}

/// TicketBroker funding transactions.
#[derive(Debug, Clone)]
pub enum Funding {
    DepositAndReserve {
        deposit: lpe_pm::U256,
        reserve: lpe_pm::U256,
    },
    Unlock,
    CancelUnlock,
    Withdraw,
    /// Publish the orchestrator's service URI in the ServiceRegistry.
    ServiceUri(String),
}

impl Funding {
    /// Sends the transaction from the chain client's account and says what it did: the one
    /// place funding is carried out, for the node's command and the offline command line.
    pub async fn send(
        self,
        chain: &lpe_money::chain::ChainClient,
    ) -> Result<(String, lpe_money::chain::Mined), lpe_money::chain::ChainError> {
        Ok(match self {
            Funding::DepositAndReserve { deposit, reserve } => (
                format!("funded deposit {deposit} wei and reserve {reserve} wei"),
                chain.fund_deposit_and_reserve(deposit, reserve).await?,
            ),
            Funding::Unlock => ("unlock started".into(), chain.unlock().await?),
            Funding::CancelUnlock => ("unlock cancelled".into(), chain.cancel_unlock().await?),
            Funding::Withdraw => (
                "deposit and reserve withdrawn".into(),
                chain.withdraw().await?,
            ),
            Funding::ServiceUri(uri) => (
                format!("service URI {uri} published"),
                chain.set_service_uri(&uri).await?,
            ),
        })
    }
}

/// What applying a desired configuration did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DesiredReport {
    pub version: serde_json::Value,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deleted: Vec<String>,
    /// True when this version was already applied (a retained message seen again).
    pub unchanged: bool,
}

/// What a command did, typed per command family.
#[derive(Debug)]
pub enum Outcome {
    Stream(Box<StreamView>),
    Deleted,
    Auth(crate::auth::AuthOutcome),
    Desired(DesiredReport),
    Mined(lpe_money::chain::Mined),
    LogLevel(String),
    /// The node stops and starts again shortly after answering.
    Restarting,
    Snapshot {
        stream_id: String,
        jpeg: Vec<u8>,
    },
    Payment(lpe_money::payments::PaymentReceipt),
    Orchestrator(Box<crate::OrchestratorView>),
    Update(Box<crate::update::UpdateJob>),
    Alert(Box<lpe_store::StoredEvent>),
    Done,
}

impl Outcome {
    /// The outcome as a journal (and a fleet) records it: small, no secrets, no picture.
    pub fn summary(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Outcome::Stream(v) => json!({"stream_id": v.id, "state": v.status.state}),
            Outcome::Desired(r) => serde_json::to_value(r).unwrap_or_default(),
            Outcome::Mined(m) => json!({"tx_hash": format!("{:#x}", m.tx_hash), "block": m.block}),
            Outcome::LogLevel(level) => json!({"level": level}),
            Outcome::Restarting => json!({"restarting": true}),
            Outcome::Snapshot { stream_id, jpeg } => json!({
                "stream_id": stream_id,
                "content_type": "image/jpeg",
                "bytes": jpeg.len(),
            }),
            Outcome::Payment(r) => serde_json::to_value(r).unwrap_or_default(),
            Outcome::Orchestrator(s) => serde_json::to_value(s).unwrap_or_default(),
            Outcome::Update(j) => serde_json::to_value(j).unwrap_or_default(),
            Outcome::Alert(e) => serde_json::to_value(e).unwrap_or_default(),
            Outcome::Deleted | Outcome::Auth(_) | Outcome::Done => serde_json::Value::Null,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no stream with id '{0}'")]
    NotFound(String),
    #[error("{0}")]
    Invalid(SpecError),
    #[error("{message}")]
    Conflict {
        field: Option<String>,
        message: String,
    },
    #[error("storage failed: {0}")]
    Storage(#[from] StoreError),
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthError),
    /// Payments are off in the configuration (not a failure).
    #[error("payments are off on this node (pm.role = off)")]
    PaymentsOff,
    /// Payments are on, but the chain has not been reached yet.
    #[error("the chain is not reachable yet")]
    ChainNotReady,
    #[error("{0}")]
    Chain(#[from] lpe_money::chain::ChainError),
    /// Payments are on, but this node only pays (`pm.role`).
    #[error("this node is a {0}, not an orchestrator")]
    NotOrchestrator(lpe_core::role::NetworkRole),
    #[error("{0}")]
    Payment(#[from] lpe_money::payments::PaymentError),
    /// A read found nothing to show (a stream without a picture yet).
    #[error("{0}")]
    Unavailable(String),
}

impl CommandError {
    /// One line for a journal or a fleet: the field first when there is one.
    pub fn reason(&self) -> String {
        match self {
            CommandError::Invalid(s) => format!("{}: {}", s.field, s.message),
            other => other.to_string(),
        }
    }
}

/// A fleet's desired configuration, decoded: which streams exist (by the fleet's ids), and
/// the log level. Whether it can be applied is the node's to check.
#[derive(Debug, Clone)]
pub struct DesiredConfig {
    /// A non-negative integer or a non-empty string; the same version is applied once.
    pub version: serde_json::Value,
    /// `None` leaves the streams alone; `Some` is the whole list.
    pub streams: Option<Vec<(String, StreamSpec)>>,
    pub log_level: Option<String>,
}

impl DesiredConfig {
    /// Decodes `{version, streams: [{id, ...spec}], log_level}`, naming the failing field
    /// (`streams[2].source.url`).
    pub fn from_json(doc: serde_json::Value) -> Result<Self, SpecError> {
        let serde_json::Value::Object(mut doc) = doc else {
            return Err(SpecError::new(
                "body",
                "a desired configuration is a JSON object",
            ));
        };
        let version = doc.remove("version").unwrap_or(serde_json::Value::Null);
        if !(version.is_u64()
            || version
                .as_str()
                .is_some_and(|v| !v.is_empty() && v.len() <= 128))
        {
            return Err(SpecError::new(
                "version",
                "required: a non-negative integer or a non-empty string",
            ));
        }
        let streams = doc.remove("streams");
        let log_level = match doc.remove("log_level") {
            None => None,
            Some(serde_json::Value::String(l)) => Some(l),
            Some(_) => return Err(SpecError::new("log_level", "must be a string")),
        };
        if let Some(k) = doc.keys().next() {
            return Err(SpecError::new(
                k.clone(),
                "unknown key; allowed: version, streams, log_level",
            ));
        }
        let streams = match streams {
            None => None,
            Some(serde_json::Value::Array(list)) => {
                let mut out: Vec<(String, StreamSpec)> = Vec::with_capacity(list.len());
                for (i, mut item) in list.into_iter().enumerate() {
                    let at =
                        |f: &str| format!("streams[{i}]{}{f}", if f.is_empty() { "" } else { "." });
                    let id = match item.as_object_mut().and_then(|o| o.remove("id")) {
                        Some(serde_json::Value::String(id)) if valid_id(&id) => id,
                        _ => {
                            return Err(SpecError::new(
                                at("id"),
                                "required: 1 to 64 of a-z, 0-9, '-' and '_'",
                            ));
                        }
                    };
                    if out.iter().any(|(w, _)| *w == id) {
                        return Err(SpecError::new(at("id"), format!("'{id}' is listed twice")));
                    }
                    let spec = StreamSpec::from_json(item)
                        .map_err(|s| SpecError::new(at(&s.field), s.message))?;
                    out.push((id, spec));
                }
                Some(out)
            }
            Some(_) => return Err(SpecError::new("streams", "must be an array of streams")),
        };
        Ok(Self {
            version,
            streams,
            log_level,
        })
    }
}

/// A fleet's stream id: 1 to 64 of a-z, 0-9, '-' and '_'.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
