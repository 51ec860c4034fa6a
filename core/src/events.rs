//! The node's event bus: every observable change is published here once; the store, the
//! HTTP API (and later MQTT and metrics) subscribe.

use serde::Serialize;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    NodeStarted,
    NodeStopping,
    StreamCreated,
    StreamUpdated,
    StreamDeleted,
    StreamUp,
    StreamDown,
    StreamError,
    EncoderFallback,
    RenditionSkipped,
    RtmpRefused,
    TicketRedeemed,
    TicketFailed,
    ChainUnavailable,
    ChainRecovered,
    SettingsChanged,
    TicketWon,
    MqttConnected,
    MqttDisconnected,
    FundingChanged,
    /// An offloaded stream's segments are encoded locally (no orchestrator, or one failed).
    OffloadFallback,
    /// An offloaded stream's segments go to an orchestrator again.
    OffloadResumed,
    /// The orchestrator's reward call for the round was mined.
    RewardCalled,
    /// The reward call failed; it is tried again while the round lasts.
    RewardFailed,
    /// The reward call is due but not worth its fee now.
    RewardSkipped,
    /// A stream's audio has been silent for `media.silence_seconds`.
    AudioSilent,
    /// A silent stream's audio has sound again.
    AudioRestored,
    /// A restream destination is receiving the stream.
    RestreamLive,
    /// A restream destination failed; it is retried with backoff.
    RestreamFailed,
    /// A stream's recorder failed (it is retried with backoff) or stopped writing because
    /// the disk is full.
    RecordingFailed,
    /// Retention deleted recordings early to keep the disk from filling.
    RecordingsPurged,
    /// A tracked object has been seen for the stream's minimum duration (in a zone, when
    /// the stream has zones).
    ObjectStarted,
    /// A tracked object entered or left a zone, or was seen better (a new best snapshot).
    ObjectUpdated,
    /// A tracked object has not been seen for a while, or left every zone.
    ObjectEnded,
    /// A stream's detector failed (a model that stopped working, a provider that failed and
    /// was replaced by the next one); the message says what runs instead.
    AiFailed,
    /// Privacy mode cannot look for faces: the stream's pictures are blanked.
    PrivacyBlanked,
    /// Privacy mode looks for faces again: the pictures are shown, blurred.
    PrivacyRestored,
    /// A system update was installed to the other slot; the box reboots into it.
    UpdateInstalled,
    /// The updated slot runs, healthy, and is marked good.
    UpdateSucceeded,
    /// A system update failed or was rolled back; the message says why.
    UpdateFailed,
}

/// The events an operator must see until someone acknowledges them: something failed or
/// needs a person. Recoveries and routine events are not among them.
pub const ALERTS: &[EventKind] = &[
    EventKind::StreamDown,
    EventKind::StreamError,
    EventKind::EncoderFallback,
    EventKind::RtmpRefused,
    EventKind::TicketFailed,
    EventKind::ChainUnavailable,
    EventKind::MqttDisconnected,
    EventKind::RewardFailed,
    EventKind::AudioSilent,
    EventKind::RestreamFailed,
    EventKind::RecordingFailed,
    EventKind::RecordingsPurged,
    EventKind::AiFailed,
    EventKind::PrivacyBlanked,
    EventKind::UpdateFailed,
];

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeStarted => "node_started",
            Self::NodeStopping => "node_stopping",
            Self::StreamCreated => "stream_created",
            Self::StreamUpdated => "stream_updated",
            Self::StreamDeleted => "stream_deleted",
            Self::StreamUp => "stream_up",
            Self::StreamDown => "stream_down",
            Self::StreamError => "stream_error",
            Self::EncoderFallback => "encoder_fallback",
            Self::RenditionSkipped => "rendition_skipped",
            Self::RtmpRefused => "rtmp_refused",
            Self::TicketRedeemed => "ticket_redeemed",
            Self::TicketFailed => "ticket_failed",
            Self::ChainUnavailable => "chain_unavailable",
            Self::ChainRecovered => "chain_recovered",
            Self::SettingsChanged => "settings_changed",
            Self::TicketWon => "ticket_won",
            Self::MqttConnected => "mqtt_connected",
            Self::MqttDisconnected => "mqtt_disconnected",
            Self::FundingChanged => "funding_changed",
            Self::OffloadFallback => "offload_fallback",
            Self::OffloadResumed => "offload_resumed",
            Self::RewardCalled => "reward_called",
            Self::RewardFailed => "reward_failed",
            Self::RewardSkipped => "reward_skipped",
            Self::AudioSilent => "audio_silent",
            Self::AudioRestored => "audio_restored",
            Self::RestreamLive => "restream_live",
            Self::RestreamFailed => "restream_failed",
            Self::RecordingFailed => "recording_failed",
            Self::RecordingsPurged => "recordings_purged",
            Self::ObjectStarted => "object_started",
            Self::ObjectUpdated => "object_updated",
            Self::ObjectEnded => "object_ended",
            Self::AiFailed => "ai_failed",
            Self::PrivacyBlanked => "privacy_blanked",
            Self::PrivacyRestored => "privacy_restored",
            Self::UpdateInstalled => "update_installed",
            Self::UpdateSucceeded => "update_succeeded",
            Self::UpdateFailed => "update_failed",
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeEvent {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    pub stream_id: Option<String>,
    pub kind: EventKind,
    pub message: String,
    /// The object of `object_*` events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectEvent>,
}

/// A tracked object as its events carry it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ObjectEvent {
    /// The detection's id: `GET /api/detections` lists it, its snapshot is at
    /// `/api/detections/{id}/snapshot.jpg`.
    pub id: String,
    pub label: String,
    /// The best score it was seen with.
    pub score: f32,
    /// Where it is now: `[x1, y1, x2, y2]`, normalised to the picture.
    pub bbox: [f32; 4],
    /// The zones it is in now.
    pub zones: Vec<String>,
    /// When it was first seen (milliseconds since the Unix epoch).
    pub started_ms: u64,
    /// When it was last seen, for `object_ended`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// Whether a snapshot was kept.
    pub snapshot: bool,
}

/// Cloneable handle to the bus. Emitting never blocks; slow subscribers miss old events
/// (they see a `Lagged` count) rather than holding up the data plane.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<NodeEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Self { tx }
    }

    pub fn emit(&self, stream_id: Option<&str>, kind: EventKind, message: impl Into<String>) {
        self.emit_object(stream_id, kind, message, None);
    }

    /// Emits an event about a tracked object.
    pub fn emit_object(
        &self,
        stream_id: Option<&str>,
        kind: EventKind,
        message: impl Into<String>,
        object: Option<ObjectEvent>,
    ) {
        let message = message.into();
        tracing::info!(
            stream = stream_id.unwrap_or("-"),
            kind = kind.as_str(),
            "{message}"
        );
        let _ = self.tx.send(NodeEvent {
            ts_ms: now_ms(),
            stream_id: stream_id.map(str::to_string),
            kind,
            message,
            object,
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.tx.subscribe()
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
