//! The node: owns the store, the media engine and the event bus, and executes every change
//! of state as a [`Command`] in one place. The HTTP API (and later MQTT and the CLI) are thin
//! adapters that build commands and render outcomes.

pub mod ai;
pub mod alerts;
pub mod analysis;
pub mod auth;
pub mod command;
pub mod config;
pub mod device;
pub mod hardware;
pub mod logs;
pub mod payments;
pub mod reset;
pub mod transcoding;
pub mod update;

use command::JournalState;
pub use command::{
    Actor, Command, CommandError, DesiredConfig, DesiredReport, Envelope, Funding, JournalEntry,
    Outcome, Reply,
};

/// The other planes' types as the transports see them: views, records and errors.
pub mod views {
    pub use lpe_ai::registry::{MAX_MODEL_BYTES, Model};
    pub use lpe_ai::session::{Descriptor, ModelKind};
    pub use lpe_ai::yolo::Layout;

    /// A name for an upload's staging file.
    pub fn random_upload_name() -> String {
        lpe_core::ids::random_string(lpe_core::ids::ID_ALPHABET, 16)
    }
    pub use crate::OrchestratorView;
    pub use crate::transcoding::TranscoderView;
    pub use lpe_media::encoder::EncoderInventory;
    pub use lpe_media::llhls;
    pub use lpe_media::offload::{Offload, Offloaded, OrchestratorSpend, SegmentJob};
    pub use lpe_media::onvif;
    pub use lpe_media::recording;
    pub use lpe_media::runner::{StreamState, StreamStatus};
    pub use lpe_media::transcode::{
        OutputProfile, Rendition, SegmentTranscoder, TranscodeError, Transcoded,
    };
    pub use lpe_media::webrtc::{WhepError, WhipError};
    pub use lpe_money::chain::{ChainClient, ChainError, Mined, OrchestratorStatus};
    pub use lpe_money::payments::{Orchestrator, PaymentError, PaymentReceipt};
    pub use lpe_money::reward::{RewardState, RewardStatus};
    pub use lpe_money::watcher::HeadView;
    pub use lpe_store::{
        DetectionQuery, StoredEvent, TicketCounts, TicketRecord, TokenRecord, UserRecord,
    };
}

use std::sync::Arc;
use std::time::Instant;

use lpe_core::ids::{ID_ALPHABET, random_string};
use serde::Serialize;

use crate::config::Config;
use alerts::{AlertFilter, alert_kinds};
use lpe_core::events::{EventBus, EventKind, NodeEvent, now_ms};
use lpe_core::spec::{SourceSpec, SpecError, StreamSpec, TestPattern, default_ladder};
use lpe_media::MediaEngine;
use lpe_media::runner::{StreamState, StreamStatus};
use lpe_store::{Store, StoreError, StoredStream};

/// A stream as the API and MQTT show it. Secrets (RTSP passwords, RTMP stream keys) are
/// never included, except the stream key in the answer to the admin who created the
/// stream or rotated its key.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StreamView {
    pub id: String,
    pub name: String,
    pub source: SourceView,
    pub ladder: Vec<lpe_core::spec::RenditionSpec>,
    pub encoder: Option<String>,
    pub enabled: bool,
    /// Transcoded by orchestrators on the Livepeer network (the status says by whom).
    pub offload: bool,
    /// Where the stream is sent on, without the keys (the status says how each is doing).
    pub restream: Vec<RestreamView>,
    pub recording: lpe_core::spec::RecordingSpec,
    pub ai: lpe_core::spec::AnalysisSpec,
    pub privacy: lpe_core::spec::PrivacySpec,
    pub status: StreamStatus,
    /// The stream's detectors and privacy mask, while it runs with any.
    pub analysis: Option<crate::analysis::AnalysisView>,
    pub hls_url: String,
    /// Low-latency HLS of the renditions made here (an offloaded stream's passthrough or top
    /// encode; absent when `hls.part_milliseconds` is 0, or when every rendition of the
    /// running stream comes from the network).
    pub llhls_url: Option<String>,
    pub snapshot_url: String,
    /// For RTMP sources: the application path publishers use (`/live`).
    pub rtmp_app: Option<String>,
    /// The stream key, only in the answer to its creation or rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_key: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// The account as an orchestrator, as the API, UI and fleet see it: its standing on chain and,
/// when this node calls reward, where this round's call stands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrchestratorView {
    #[serde(flatten)]
    pub on_chain: lpe_money::chain::OrchestratorStatus,
    pub reward: Option<lpe_money::reward::RewardStatus>,
}

/// Destinations given without a key keep the one stored under the same name.
fn keep_restream_keys(old: &StreamSpec, new: &mut StreamSpec) {
    for t in new.restream.iter_mut().filter(|t| t.key.is_empty()) {
        if let Some(o) = old.restream.iter().find(|o| o.name == t.name) {
            t.key.clone_from(&o.key);
        }
    }
}

/// A restream destination as views show it: without its key.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RestreamView {
    pub name: String,
    pub server: String,
    pub rendition: Option<String>,
    pub enabled: bool,
    /// Whether a stream key is stored.
    pub has_key: bool,
}

impl RestreamView {
    fn of(t: &lpe_core::spec::RestreamTarget) -> Self {
        Self {
            name: t.name.clone(),
            server: t.server.clone(),
            rendition: t.rendition.clone(),
            enabled: t.enabled,
            has_key: !t.key.is_empty(),
        }
    }
}

/// A stream's source as views show it: the spec without its secrets, and whether each is
/// set.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SourceView {
    #[serde(flatten)]
    pub spec: SourceSpec,
    /// RTSP sources: whether a password is stored; SRT: whether a passphrase is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_password: Option<bool>,
    /// RTMP sources: whether a stream key is set (always, once created); SRT: whether a
    /// stream id is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_stream_key: Option<bool>,
}

impl SourceView {
    fn of(source: &SourceSpec) -> Self {
        let mut spec = source.clone();
        let (mut has_password, mut has_stream_key) = (None, None);
        match &mut spec {
            SourceSpec::Rtsp { password, .. } => {
                has_password = Some(password.as_deref().is_some_and(|p| !p.is_empty()));
                *password = None;
            }
            SourceSpec::Rtmp { stream_key } => {
                has_stream_key = Some(!stream_key.is_empty());
                stream_key.clear();
            }
            SourceSpec::Srt {
                passphrase,
                stream_id,
                ..
            } => {
                has_password = Some(passphrase.is_some());
                has_stream_key = Some(stream_id.is_some());
                *passphrase = None;
                *stream_id = None;
            }
            _ => {}
        }
        Self {
            spec,
            has_password,
            has_stream_key,
        }
    }
}

/// The node. Transports see its configuration, its event bus, the device-health history and
/// the supervisor; everything else is reached through [`Node::submit`] (changes) and the
/// read methods below (views), never through a handle that could change state.
pub struct Node {
    pub cfg: Config,
    store: Arc<Store>,
    media: MediaEngine,
    pub events: EventBus,
    started: Instant,
    /// Set once the chain is reachable when the node runs as an orchestrator.
    orchestrator: tokio::sync::OnceCell<Arc<lpe_money::payments::Orchestrator>>,
    /// The chain, with the node's account, once reachable (gateway or orchestrator).
    chain: tokio::sync::OnceCell<lpe_money::chain::ChainClient>,
    /// This node as a remote transcoder, once the transcoder runs (`net.orchestrator_addr`).
    transcoder: std::sync::OnceLock<Arc<crate::transcoding::TranscoderStats>>,
    /// The reward call's state, once it runs (an orchestrator with `pm.reward`).
    reward: std::sync::OnceLock<tokio::sync::watch::Receiver<lpe_money::reward::RewardStatus>>,
    auth: crate::auth::Auth,
    /// Device health: the latest sample and the last hour.
    pub device: Arc<crate::device::DeviceHistory>,
    logs: Arc<crate::logs::LogControl>,
    /// The long-lived tasks and their health.
    pub subsystems: lpe_core::supervisor::Supervisor,
    /// Sending `true` stops the node gracefully.
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Set when the stop is a restart.
    restart: std::sync::atomic::AtomicBool,
    /// Flush requests to the event recorder, once it runs.
    event_flush: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<FlushRequest>>,
    /// Inference: the runtime and the models.
    pub ai: Arc<crate::ai::AiPlane>,
    /// The AI tap of each stream: detectors, privacy masks, objects.
    pub analyser: Arc<crate::analysis::Analyser>,
    /// System updates (RAUC) and the booted slot's health verdict.
    pub updater: Arc<crate::update::Updater>,
    /// The status LED and the button.
    pub hardware: Arc<crate::hardware::Hardware>,
}

/// How long the event recorder gathers events before writing them in one transaction, so a
/// burst costs a few writes and the writes stay off the paths that emit events.
const EVENT_BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(100);
/// A batch this large is written at once. Small, because the recorder holds the store's lock
/// while it writes and a fleet command's claim waits behind it: a batch of 32 takes ~0.1 ms
/// (mostly the commit), where 256 took up to 0.5 ms.
const EVENT_BATCH_MAX: usize = 32;

type FlushRequest = tokio::sync::oneshot::Sender<()>;

/// What a system update's bundle may take of the data partition: a root slot's image is about
/// 1.5 GB, so 4 GiB is generous; 256 MiB stays free for the store and the recordings' index.
const UPDATE_LIMITS: lpe_update::download::Limits = lpe_update::download::Limits {
    max_bytes: 4 << 30,
    keep_free: 256 << 20,
};

/// The device id made at first start when none is configured.
const META_DEVICE_ID: &str = "device_id";

/// The desired-configuration version last applied (its JSON text).
pub const META_DESIRED_VERSION: &str = "desired_version";

fn new_id() -> String {
    random_string(ID_ALPHABET, 10)
}

fn new_stream_key() -> String {
    random_string(
        b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789",
        24,
    )
}

/// The planes a node is made of that are started before it: each takes a while to open
/// (migrations, encoder probes, a runtime library), so they open side by side.
pub struct Planes {
    pub store: Arc<Store>,
    pub ai: crate::ai::AiPlane,
    pub media: MediaEngine,
}

impl Node {
    pub fn new(
        cfg: Config,
        Planes { store, ai, media }: Planes,
        events: EventBus,
        logs: Arc<crate::logs::LogControl>,
        subsystems: lpe_core::supervisor::Supervisor,
        shutdown: tokio::sync::watch::Sender<bool>,
    ) -> Arc<Self> {
        let ai = Arc::new(ai);
        let analyser = crate::analysis::Analyser::new(
            ai.clone(),
            &cfg,
            events.clone(),
            store.clone(),
            media.recording_triggers(),
        );
        media.set_analysis(Some(analyser.clone()));
        let updater = Arc::new(crate::update::Updater::new(
            store.clone(),
            events.clone(),
            &cfg.data_dir,
            UPDATE_LIMITS,
        ));
        Arc::new(Self {
            updater,
            hardware: Default::default(),
            ai,
            analyser,
            cfg,
            store,
            media,
            events,
            started: Instant::now(),
            orchestrator: tokio::sync::OnceCell::new(),
            chain: tokio::sync::OnceCell::new(),
            reward: std::sync::OnceLock::new(),
            transcoder: std::sync::OnceLock::new(),
            auth: crate::auth::Auth::new(),
            device: Default::default(),
            logs,
            subsystems,
            shutdown,
            restart: std::sync::atomic::AtomicBool::new(false),
            event_flush: std::sync::OnceLock::new(),
        })
    }

    /// Executes one envelope — the only way in for every transport. With a request id, the
    /// id is journalled before the command runs (`on_accepted` is told once it is) and its
    /// final entry after; a request id seen before is answered from the journal and the
    /// command does not run again.
    pub async fn submit(
        &self,
        envelope: Envelope,
        on_accepted: impl FnOnce(&JournalEntry),
    ) -> Result<Reply, CommandError> {
        let Envelope {
            actor,
            request_id,
            command,
        } = envelope;
        let name = command.name();
        tracing::debug!(
            command = name,
            ?actor,
            request_id = request_id.as_deref(),
            "command"
        );
        let Some(rid) = request_id else {
            return Ok(Reply::Ran(self.execute(command, &actor, None).await));
        };
        let accepted = JournalEntry::new(Some(&rid), name, JournalState::Accepted);
        let (id, entry) = (rid.clone(), accepted.json());
        let claimed = self
            .store
            .write(move |w| w.claim_command(&id, name, &entry, now_ms()))
            .await?;
        if !claimed {
            let stored = self.store.command_result(&rid)?.unwrap_or_default();
            let entry = serde_json::from_str(&stored).unwrap_or_else(|_| {
                JournalEntry::failed(Some(&rid), name, "the recorded result is unreadable")
            });
            return Ok(Reply::Repeat(entry));
        }
        on_accepted(&accepted);
        let result = self.execute(command, &actor, Some(&rid)).await;
        // Only "accepted" (the claim) and the final state are written: a command cut short
        // by a crash is marked failed at the next start (`Store::fail_unfinished_commands`).
        let done = JournalEntry::finished(Some(&rid), name, &result);
        let entry = done.json();
        let recorded = self
            .store
            .write(move |w| w.set_command_result(&rid, &entry));
        if let Err(e) = recorded.await {
            tracing::warn!("cannot record the result of command {name}: {e}");
        }
        Ok(Reply::Ran(result))
    }

    /// Executes one command: validate, persist, then act. Nothing is acted on that was not
    /// committed first. `request_id` is the sender's, kept by what outlives the call (an
    /// update's job); `actor` is named where a record says who did it.
    async fn execute(
        &self,
        cmd: Command,
        actor: &Actor,
        request_id: Option<&str>,
    ) -> Result<Outcome, CommandError> {
        match cmd {
            Command::AcknowledgeAlert { event_id } => {
                self.flush_events().await;
                let missing = || CommandError::Unavailable(format!("no event with id {event_id}"));
                let event = self.store.event(event_id)?.ok_or_else(missing)?;
                if !alert_kinds().contains(&event.kind.as_str()) {
                    return Err(CommandError::Conflict {
                        field: Some("event_id".into()),
                        message: format!("a {} event is not an alert", event.kind),
                    });
                }
                let (by, now) = (actor.name(), now_ms());
                let acknowledged = self
                    .store
                    .write(move |w| w.acknowledge_event(event_id, &by, now))
                    .await?
                    .ok_or_else(missing)?;
                Ok(Outcome::Alert(Box::new(acknowledged)))
            }
            Command::Auth(c) => Ok(Outcome::Auth(self.auth.execute(&self.store, c).await?)),
            Command::CreateStream(mut spec) => {
                self.complete(&mut spec);
                self.check(None, &spec)?;
                let (existing, _) = self.store.list_streams()?;
                if existing.len() >= self.cfg.media.max_streams as usize {
                    return Err(CommandError::Conflict {
                        field: None,
                        message: format!(
                            "this node runs at most {} streams (media.max_streams)",
                            self.cfg.media.max_streams
                        ),
                    });
                }
                let id = new_id();
                let created = format!("stream '{}' created", spec.name);
                self.add_stream(&id, spec, created).await?;
                self.view_with_key(&id)
            }
            Command::ReplaceStream { id, mut spec } => {
                let old = self.get(&id)?;
                self.keep_secrets(&old.spec, &mut spec);
                self.complete(&mut spec);
                self.apply(&id, spec).await
            }
            Command::PatchStream { id, patch } => {
                let old = self.get(&id)?;
                let mut spec = old.spec.patched(patch).map_err(CommandError::Invalid)?;
                // A patch replaces the destination list whole (RFC 7386 arrays), keys and all.
                keep_restream_keys(&old.spec, &mut spec);
                self.complete(&mut spec);
                self.apply(&id, spec).await
            }
            Command::DeleteStream { id } => {
                self.get(&id)?;
                let gone = id.clone();
                self.store.write(move |w| w.delete_stream(&gone)).await?;
                self.media.remove(&id).await;
                self.events
                    .emit(Some(&id), EventKind::StreamDeleted, "stream deleted");
                Ok(Outcome::Deleted)
            }
            Command::StartStream { id } => self.set_enabled(&id, true).await,
            Command::StopStream { id } => self.set_enabled(&id, false).await,
            Command::RestartStream { id } => {
                let s = self.get(&id)?;
                if !s.spec.enabled {
                    return Err(CommandError::Conflict {
                        field: None,
                        message: format!("stream '{id}' is stopped; start it instead"),
                    });
                }
                self.media.stop(&id).await;
                self.media.start(&id, &s.spec).await;
                self.view(&id).map(|v| Outcome::Stream(Box::new(v)))
            }
            Command::RotateStreamKey { id } => {
                let old = self.get(&id)?;
                let mut spec = old.spec;
                let SourceSpec::Rtmp { stream_key } = &mut spec.source else {
                    return Err(CommandError::Conflict {
                        field: Some("source.kind".into()),
                        message: format!("stream '{id}' is not an RTMP input"),
                    });
                };
                *stream_key = new_stream_key();
                self.apply(&id, spec).await?;
                self.view_with_key(&id)
            }
            Command::ApplyDesired(doc) => self.apply_desired(doc).await,
            Command::Funding(f) => {
                if self.cfg.pm.role.is_off() {
                    return Err(CommandError::PaymentsOff);
                }
                let chain = self.chain.get().ok_or(CommandError::ChainNotReady)?;
                let (what, mined) = f.send(chain).await?;
                self.events.emit(
                    None,
                    EventKind::FundingChanged,
                    format!("{what} (tx {:#x}, block {})", mined.tx_hash, mined.block),
                );
                Ok(Outcome::Mined(mined))
            }
            Command::SetLogLevel(level) => {
                if self.logs.level() == level {
                    // Nothing changes: no filter rebuild, no event.
                    return Ok(Outcome::LogLevel(level));
                }
                self.logs
                    .set_level(&level)
                    .map_err(|m| CommandError::Invalid(SpecError::new("level", m)))?;
                self.events.emit(
                    None,
                    EventKind::SettingsChanged,
                    format!("log level set to {level}"),
                );
                Ok(Outcome::LogLevel(level))
            }
            Command::RestartNode => {
                self.restart_soon("restart requested");
                Ok(Outcome::Restarting)
            }
            Command::FactoryReset { keep_keys } => {
                let dir = self.cfg.data_dir.clone();
                tokio::task::spawn_blocking(move || crate::reset::request(&dir, keep_keys))
                    .await
                    .map_err(|e| CommandError::Unavailable(e.to_string()))?
                    .map_err(|e| {
                        CommandError::Unavailable(format!("cannot ask for the reset: {e}"))
                    })?;
                self.restart_soon(if keep_keys {
                    "factory reset: the data is erased at the restart, the keystore kept"
                } else {
                    "factory reset: the data and the keystore are erased at the restart"
                });
                Ok(Outcome::Restarting)
            }
            Command::Snapshot { id } => {
                self.get(&id)?;
                let jpeg = self.media.snapshot(&id).ok_or_else(|| {
                    CommandError::Unavailable(
                        "the stream has no picture yet; it is not running or has not produced a frame"
                            .into(),
                    )
                })?;
                Ok(Outcome::Snapshot {
                    stream_id: id,
                    jpeg,
                })
            }
            Command::OrchestratorStatus => Ok(Outcome::Orchestrator(Box::new(
                self.orchestrator_status().await?,
            ))),
            Command::ChargeWork {
                sender,
                session,
                pixels,
            } => {
                self.orchestrator()?.debit(sender, &session, pixels);
                Ok(Outcome::Done)
            }
            Command::Update(request) => {
                let running = self
                    .list()?
                    .into_iter()
                    .filter(|s| s.status.state == crate::views::StreamState::Running)
                    .map(|s| s.id)
                    .collect();
                use crate::update::NotStarted;
                let job = self
                    .updater
                    .start(request, request_id.map(str::to_string), running)
                    .map_err(|e| match e {
                        NotStarted::Invalid(e) => CommandError::Invalid(e),
                        NotStarted::Busy(message) => CommandError::Conflict {
                            field: None,
                            message,
                        },
                        NotStarted::Unavailable(why) => CommandError::Unavailable(why),
                    })?;
                Ok(Outcome::Update(Box::new(job)))
            }
            Command::EndPeerSession { sender, session } => {
                self.orchestrator()?.forget(sender, &session);
                Ok(Outcome::Done)
            }
            Command::ReceivePayment { payment, session } => {
                let orchestrator = self.orchestrator()?;
                let receipt = orchestrator
                    .receive(&self.store, &payment, &session)
                    .await?;
                if receipt.won > 0 {
                    self.events.emit(
                        None,
                        EventKind::TicketWon,
                        format!(
                            "{} winning ticket(s) from {:#x} recorded",
                            receipt.won, receipt.sender
                        ),
                    );
                }
                Ok(Outcome::Payment(receipt))
            }
        }
    }

    /// Stops the node shortly, as a restart (the process re-executes itself).
    fn restart_soon(&self, why: &str) {
        self.restart
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.events.emit(None, EventKind::NodeStopping, why);
        // Let the caller report success before the transports close.
        let tx = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let _ = tx.send(true);
        });
    }

    /// Where someone at the box opens its UI: each IPv4 address when the node listens on all
    /// of them, the port left out when it is the scheme's own.
    pub fn console_urls(&self) -> Vec<String> {
        let listen = self.cfg.http.listen;
        let scheme = if self.cfg.http.tls { "https" } else { "http" };
        let port = match (self.cfg.http.tls, listen.port()) {
            (false, 80) | (true, 443) => String::new(),
            (_, p) => format!(":{p}"),
        };
        let hosts: Vec<String> = if listen.ip().is_unspecified() {
            lpe_drivers::system::ipv4_interfaces()
                .into_iter()
                .flat_map(|(_, addrs)| addrs)
                .map(|a| a.to_string())
                .collect()
        } else {
            vec![listen.ip().to_string()]
        };
        let hosts = if hosts.is_empty() {
            vec![listen.ip().to_string()]
        } else {
            hosts
        };
        hosts
            .into_iter()
            .map(|h| format!("{scheme}://{h}{port}/"))
            .collect()
    }

    /// On the console (warnings reach it): a new first-boot setup code while no administrator
    /// exists (the previous one stops working); once one does, the box's address when
    /// `when_set_up`.
    pub async fn announce_setup(&self, when_set_up: bool) {
        let urls = self.console_urls().join(" or ");
        match crate::auth::Auth::issue_setup_code(&self.store).await {
            Ok(Some(code)) => {
                tracing::warn!("first-boot setup: open {urls} and enter the setup code {code}")
            }
            Ok(None) if when_set_up => tracing::warn!("this box is set up; open {urls}"),
            Ok(None) => {}
            Err(e) => tracing::error!("cannot issue a setup code: {e}"),
        }
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Whether the stop under way is a restart.
    pub fn restart_requested(&self) -> bool {
        self.restart.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn device_identity(&self) -> Result<crate::auth::DeviceIdentity, StoreError> {
        crate::auth::Auth::device(&self.store)
    }

    pub fn setup_required(&self) -> Result<bool, StoreError> {
        crate::auth::Auth::setup_required(&self.store)
    }

    /// The caller behind a bearer token or a session cookie, if any.
    pub async fn principal(
        &self,
        bearer: Option<&str>,
        cookie: Option<&str>,
    ) -> Result<Option<crate::auth::Principal>, StoreError> {
        crate::auth::Auth::principal(&self.store, bearer, cookie).await
    }

    pub fn users(&self) -> Result<Vec<lpe_store::UserRecord>, StoreError> {
        self.store.list_users()
    }

    pub fn tokens(&self) -> Result<Vec<lpe_store::TokenRecord>, StoreError> {
        self.store.list_tokens()
    }

    pub fn ticket_counts(&self) -> Result<lpe_store::TicketCounts, StoreError> {
        self.store.ticket_counts()
    }

    pub fn recent_tickets(&self, limit: u32) -> Result<Vec<lpe_store::TicketRecord>, StoreError> {
        self.store.recent_tickets(limit)
    }

    /// The desired-configuration version last applied (its JSON text), if any.
    pub fn desired_version(&self) -> Option<String> {
        self.store.get_meta(META_DESIRED_VERSION).ok().flatten()
    }

    /// Where each stream's HLS output is written.
    pub fn hls_root(&self) -> &std::path::Path {
        self.media.hls_root()
    }

    /// A stream's low-latency HLS rendition, while it has one.
    pub fn low_latency(
        &self,
        stream: &str,
        rendition: &str,
    ) -> Option<Arc<lpe_media::llhls::Playlist>> {
        self.media.low_latency(stream, rendition)
    }

    /// The names of a stream's low-latency HLS renditions.
    pub fn low_latency_renditions(&self, stream: &str) -> Vec<String> {
        self.media.low_latency_renditions(stream)
    }

    /// The recordings; `None` when their directory could not be made.
    pub fn recordings(&self) -> Option<Arc<lpe_media::recording::Library>> {
        self.media.recordings()
    }

    /// Applies recording retention until the process ends.
    pub async fn keep_recordings(&self) {
        self.media.keep_recordings().await
    }

    pub fn encoders(&self) -> &lpe_media::encoder::EncoderInventory {
        self.media.inventory()
    }

    /// The stream's latest picture (JPEG), if it has produced one.
    pub fn snapshot(&self, id: &str) -> Option<Vec<u8>> {
        self.media.snapshot(id)
    }

    /// A WebRTC (WHEP) viewer of a running stream: its session id and the SDP answer.
    pub async fn whep(
        &self,
        id: &str,
        offer: &str,
        rendition: Option<&str>,
    ) -> Result<(String, String), lpe_media::webrtc::WhepError> {
        self.media.whep(id, offer, rendition).await
    }

    /// A WHIP publisher for the pushed stream whose key is `key`: its session id and the SDP
    /// answer.
    pub async fn whip(
        &self,
        key: &str,
        offer: &str,
    ) -> Result<(String, String), lpe_media::webrtc::WhipError> {
        self.media.whip(key, offer).await
    }

    /// Stops a WHIP publisher; false when there is no such session.
    pub fn whip_end(&self, session: &str) -> bool {
        self.media.whip_end(session)
    }

    /// Ends a WebRTC viewer; false when there is none by that id on that stream.
    pub fn whep_end(&self, id: &str, session: &str) -> bool {
        self.media.whep_end(id, session)
    }

    pub fn log_level(&self) -> String {
        self.logs.level()
    }

    pub fn recent_log_lines(&self, n: usize) -> Vec<String> {
        self.logs.ring.tail(n)
    }

    /// The chain client with the node's account, once payments reached the chain.
    pub fn chain(&self) -> Result<lpe_money::chain::ChainClient, CommandError> {
        if self.cfg.pm.role.is_off() {
            return Err(CommandError::PaymentsOff);
        }
        self.chain.get().cloned().ok_or(CommandError::ChainNotReady)
    }

    /// Marks the journalled commands the last run did not finish as failed, so a repeat of
    /// one is answered "failed", not left "accepted". Runs before any transport starts.
    pub async fn close_unfinished_commands(&self) {
        let closed = self.store.write(|w| {
            w.fail_unfinished_commands(
                "interrupted by a restart of the node; it may or may not have taken effect",
            )
        });
        match closed.await {
            Ok(0) => {}
            Ok(n) => tracing::warn!("{n} command(s) were cut short by the last stop"),
            Err(e) => tracing::warn!("cannot close unfinished commands: {e}"),
        }
    }

    /// The device id the fleet knows this node by, if it is known yet: configured, or made
    /// at an earlier start.
    pub fn known_device_id(&self) -> Option<String> {
        if !self.cfg.mqtt.device_id.is_empty() {
            return Some(self.cfg.mqtt.device_id.clone());
        }
        self.store.get_meta(META_DEVICE_ID).ok().flatten()
    }

    /// The device id: configured, or made once and kept.
    pub async fn device_id(&self) -> String {
        if let Some(id) = self.known_device_id() {
            return id;
        }
        let id = format!("lpe-{}", random_string(ID_ALPHABET, 10));
        let kept = id.clone();
        if let Err(e) = self
            .store
            .write(move |w| w.set_meta(META_DEVICE_ID, &kept))
            .await
        {
            tracing::warn!("cannot keep the device id: {e}");
        }
        id
    }

    /// Installs (or removes) the gateway offloaded streams send their segments to.
    pub fn set_offload(&self, offload: Option<Arc<dyn lpe_media::offload::Offload>>) {
        self.media.set_offload(offload);
    }

    /// What the gateway spent on each orchestrator; empty when it does not run.
    pub fn offload_spend(&self) -> Vec<lpe_media::offload::OrchestratorSpend> {
        self.media.offload_spend()
    }

    /// How a gateway's segment is transcoded: on the encoder probe's best working encoder.
    pub fn segment_transcoder(&self) -> lpe_media::transcode::SegmentTranscoder {
        lpe_media::transcode::SegmentTranscoder {
            encoder: self.media.inventory().preferred.clone(),
            x264_preset: self.cfg.media.x264_preset.clone(),
            timeout: std::time::Duration::from_secs(30),
        }
    }

    /// The account as an orchestrator on chain — the service URI it published beside the one
    /// it serves, pool membership, activity — and the reward call's state.
    pub async fn orchestrator_status(&self) -> Result<OrchestratorView, CommandError> {
        let on_chain = self
            .chain()?
            .orchestrator_status(
                &self.cfg.service_uri(),
                (self.cfg.pm.price_per_unit, self.cfg.pm.pixels_per_unit),
            )
            .await?;
        Ok(OrchestratorView {
            on_chain,
            reward: self.reward_status(),
        })
    }

    /// The remote transcoder's counters, for the transcoder to update (made on first use).
    pub fn transcoder_stats(&self) -> Arc<crate::transcoding::TranscoderStats> {
        Arc::clone(self.transcoder.get_or_init(Default::default))
    }

    /// This node as a remote transcoder; `None` when it is not one.
    pub fn transcoder_view(&self) -> Option<crate::transcoding::TranscoderView> {
        self.transcoder.get().map(|t| t.view())
    }

    /// Where the orchestrator's reward call stands; `None` when it does not run.
    pub fn reward_status(&self) -> Option<lpe_money::reward::RewardStatus> {
        self.reward.get().map(|r| r.borrow().clone())
    }

    /// The orchestrator's payment handling, once payments run and the chain was reached.
    pub fn orchestrator(&self) -> Result<Arc<lpe_money::payments::Orchestrator>, CommandError> {
        if self.cfg.pm.role.is_off() {
            return Err(CommandError::PaymentsOff);
        }
        if self.chain.get().is_none() {
            return Err(CommandError::ChainNotReady);
        }
        if !self.cfg.pm.earns() {
            return Err(CommandError::NotOrchestrator(self.cfg.pm.role));
        }
        self.orchestrator
            .get()
            .cloned()
            .ok_or(CommandError::ChainNotReady)
    }

    /// Validates a whole desired configuration, then converges the streams to it. Nothing is
    /// changed when any part is invalid; the error names the failing field
    /// (`streams[2].ladder[0].height`).
    async fn apply_desired(&self, desired: DesiredConfig) -> Result<Outcome, CommandError> {
        let invalid =
            |field: String, msg: String| CommandError::Invalid(SpecError::new(field, msg));
        let DesiredConfig {
            version,
            streams,
            log_level: level,
        } = desired;
        let applied = self.store.get_meta(META_DESIRED_VERSION)?;
        if applied.as_deref() == Some(version.to_string().as_str()) {
            return Ok(Outcome::Desired(DesiredReport {
                version,
                created: vec![],
                updated: vec![],
                deleted: vec![],
                unchanged: true,
            }));
        }
        if let Some(l) = &level {
            crate::logs::parse_level(l).map_err(|m| invalid("log_level".into(), m))?;
        }
        // Validate every stream before touching any: the rules PUT uses, field names
        // prefixed with the stream's place in the list.
        let mut wanted: Vec<(String, StreamSpec)> = Vec::new();
        if let Some(list) = &streams {
            if list.len() > self.cfg.media.max_streams as usize {
                return Err(invalid(
                    "streams".into(),
                    format!(
                        "this node runs at most {} streams (media.max_streams)",
                        self.cfg.media.max_streams
                    ),
                ));
            }
            for (i, (id, spec)) in list.iter().enumerate() {
                let at = |f: &str| format!("streams[{i}].{f}");
                let mut spec = spec.clone();
                if let Ok(old) = self.get(id) {
                    self.keep_secrets(&old.spec, &mut spec);
                }
                self.complete(&mut spec);
                self.check_alone(&spec).map_err(|e| match e {
                    CommandError::Invalid(s) => invalid(at(&s.field), s.message),
                    other => other,
                })?;
                let key = |s: &StreamSpec| match &s.source {
                    SourceSpec::Rtmp { stream_key } => Some(stream_key.clone()),
                    _ => None,
                };
                if key(&spec).is_some() && wanted.iter().any(|(_, w)| key(w) == key(&spec)) {
                    return Err(invalid(
                        at("source.stream_key"),
                        "another stream in this configuration uses this stream key".into(),
                    ));
                }
                wanted.push((id.clone(), spec));
            }
        }
        // Apply: the store first, then the pipelines.
        let mut report = DesiredReport {
            version: version.clone(),
            created: vec![],
            updated: vec![],
            deleted: vec![],
            unchanged: false,
        };
        if streams.is_some() {
            let (existing, _) = self.store.list_streams()?;
            for s in &existing {
                if !wanted.iter().any(|(id, _)| *id == s.id) {
                    let gone = s.id.clone();
                    self.store.write(move |w| w.delete_stream(&gone)).await?;
                    self.media.remove(&s.id).await;
                    self.events.emit(
                        Some(&s.id),
                        EventKind::StreamDeleted,
                        "removed by the fleet",
                    );
                    report.deleted.push(s.id.clone());
                }
            }
            for (id, spec) in wanted {
                match existing.iter().find(|s| s.id == id) {
                    Some(old) if old.spec == spec => {}
                    Some(_) => {
                        self.apply(&id, spec).await?;
                        report.updated.push(id);
                    }
                    None => {
                        let created = format!("stream '{}' created by the fleet", spec.name);
                        self.add_stream(&id, spec, created).await?;
                        report.created.push(id);
                    }
                }
            }
        }
        if let Some(level) = level {
            self.logs
                .set_level(&level)
                .map_err(|m| invalid("log_level".into(), m))?;
        }
        let applied = version.to_string();
        self.store
            .write(move |w| w.set_meta(META_DESIRED_VERSION, &applied))
            .await?;
        self.events.emit(
            None,
            EventKind::SettingsChanged,
            format!("desired configuration {version} applied"),
        );
        Ok(Outcome::Desired(report))
    }

    /// Stores a new stream, says so, and starts it when enabled.
    async fn add_stream(
        &self,
        id: &str,
        spec: StreamSpec,
        created: String,
    ) -> Result<(), CommandError> {
        let (at, stored) = (id.to_string(), spec.clone());
        self.store
            .write(move |w| w.insert_stream(&at, &stored, now_ms()))
            .await?;
        self.events
            .emit(Some(id), EventKind::StreamCreated, created);
        if spec.enabled {
            self.media.start(id, &spec).await;
        }
        Ok(())
    }

    async fn set_enabled(&self, id: &str, enabled: bool) -> Result<Outcome, CommandError> {
        let mut s = self.get(id)?;
        s.spec.enabled = enabled;
        let (at, spec) = (id.to_string(), s.spec.clone());
        self.store
            .write(move |w| w.update_stream(&at, &spec, now_ms()))
            .await?;
        if enabled {
            self.media.start(id, &s.spec).await;
        } else {
            self.media.stop(id).await;
        }
        self.view(id).map(|v| Outcome::Stream(Box::new(v)))
    }

    async fn apply(&self, id: &str, spec: StreamSpec) -> Result<Outcome, CommandError> {
        self.check(Some(id), &spec)?;
        let (at, new) = (id.to_string(), spec.clone());
        let updated = self
            .store
            .write(move |w| w.update_stream(&at, &new, now_ms()))
            .await?;
        if !updated {
            return Err(CommandError::NotFound(id.to_string()));
        }
        self.events.emit(
            Some(id),
            EventKind::StreamUpdated,
            format!("stream '{}' updated", spec.name),
        );
        if spec.enabled {
            self.media.start(id, &spec).await;
        } else {
            self.media.stop(id).await;
        }
        self.view(id).map(|v| Outcome::Stream(Box::new(v)))
    }

    fn get(&self, id: &str) -> Result<StoredStream, CommandError> {
        self.store
            .get_stream(id)?
            .ok_or_else(|| CommandError::NotFound(id.to_string()))
    }

    /// Fills in what the operator may leave out (a new RTMP stream key), and moves
    /// credentials written into an RTSP URL into their own fields.
    fn complete(&self, spec: &mut StreamSpec) {
        spec.name = spec.name.trim().to_string();
        if let SourceSpec::Rtsp {
            url,
            username,
            password,
            ..
        } = &mut spec.source
            && let Some((bare, user, pass)) = lpe_core::spec::split_credentials(url)
        {
            *url = bare;
            if username.is_none() {
                *username = user;
            }
            if password.is_none() {
                *password = pass;
            }
        }
        spec.fit_default_ladder();
        if let SourceSpec::Rtmp { stream_key } = &mut spec.source
            && stream_key.is_empty()
        {
            *stream_key = new_stream_key();
        }
    }

    /// An update that omits a secret keeps the stored one (views never show secrets): the
    /// RTSP password, the RTMP stream key, each restream destination's key (by name). One
    /// rule for PUT, PATCH and the fleet's desired configuration.
    fn keep_secrets(&self, old: &StreamSpec, new: &mut StreamSpec) {
        keep_restream_keys(old, new);
        match (&old.source, &mut new.source) {
            (
                SourceSpec::Rtsp {
                    password: old_pw, ..
                },
                SourceSpec::Rtsp {
                    password: new_pw, ..
                },
            ) if new_pw.is_none() => new_pw.clone_from(old_pw),
            (
                SourceSpec::Rtmp {
                    stream_key: old_key,
                },
                SourceSpec::Rtmp { stream_key },
            ) if stream_key.is_empty() => stream_key.clone_from(old_key),
            (
                SourceSpec::Srt {
                    passphrase: old_pass,
                    stream_id: old_id,
                    ..
                },
                SourceSpec::Srt {
                    passphrase,
                    stream_id,
                    ..
                },
            ) => {
                if passphrase.is_none() {
                    passphrase.clone_from(old_pass);
                }
                if stream_id.is_none() {
                    stream_id.clone_from(old_id);
                }
            }
            _ => {}
        }
    }

    /// Validation that needs the node's state: spec rules, the encoder inventory, unique
    /// stream keys, device presence.
    fn check(&self, id: Option<&str>, spec: &StreamSpec) -> Result<(), CommandError> {
        self.check_alone(spec)?;
        if let SourceSpec::Rtmp { stream_key } = &spec.source {
            let (all, _) = self.store.list_streams()?;
            let clash = all.iter().any(|s| {
                Some(s.id.as_str()) != id
                    && matches!(&s.spec.source, SourceSpec::Rtmp { stream_key: k } if k == stream_key)
            });
            if clash {
                return Err(CommandError::Conflict {
                    field: Some("source.stream_key".into()),
                    message: "another stream already uses this stream key".into(),
                });
            }
        }
        if let SourceSpec::Srt {
            mode: lpe_core::spec::SrtMode::Listener,
            port: Some(port),
            ..
        } = &spec.source
        {
            let (all, _) = self.store.list_streams()?;
            let clash = all.iter().any(|s| {
                Some(s.id.as_str()) != id
                    && matches!(&s.spec.source, SourceSpec::Srt { mode: lpe_core::spec::SrtMode::Listener, port: Some(p), .. } if p == port)
            });
            if clash {
                return Err(CommandError::Conflict {
                    field: Some("source.port".into()),
                    message: format!("another stream already listens on SRT port {port}"),
                });
            }
        }
        Ok(())
    }

    /// The checks a spec must pass whatever else exists: spec rules, the encoder inventory,
    /// device presence.
    fn check_alone(&self, spec: &StreamSpec) -> Result<(), CommandError> {
        spec.validate().map_err(CommandError::Invalid)?;
        if let Some(enc) = &spec.encoder
            && !self.media.inventory().works(enc)
        {
            return Err(CommandError::Invalid(SpecError::new(
                "encoder",
                format!(
                    "encoder '{enc}' is not available on this device; available: {}",
                    self.media.inventory().working().join(", ")
                ),
            )));
        }
        if let SourceSpec::V4l2 { device, .. } = &spec.source
            && !std::path::Path::new(device).exists()
        {
            return Err(CommandError::Invalid(SpecError::new(
                "source.device",
                format!("{device} does not exist; GET /api/cameras lists the cameras found"),
            )));
        }
        Ok(())
    }

    pub fn view(&self, id: &str) -> Result<StreamView, CommandError> {
        let s = self.get(id)?;
        Ok(self.render(&s))
    }

    /// The view with the stream key: for the answer to a creation or a rotation only.
    fn view_with_key(&self, id: &str) -> Result<Outcome, CommandError> {
        let s = self.get(id)?;
        let mut v = self.render(&s);
        if let SourceSpec::Rtmp { stream_key } = &s.spec.source {
            v.stream_key = Some(stream_key.clone());
        }
        Ok(Outcome::Stream(Box::new(v)))
    }

    pub fn list(&self) -> Result<Vec<StreamView>, CommandError> {
        let (all, bad) = self.store.list_streams()?;
        for e in bad {
            tracing::warn!("{e}");
        }
        Ok(all.iter().map(|s| self.render(s)).collect())
    }

    fn render(&self, s: &StoredStream) -> StreamView {
        let source = SourceView::of(&s.spec.source);
        let rtmp_app = matches!(s.spec.source, SourceSpec::Rtmp { .. })
            .then(|| format!("/{}", lpe_media::rtmp::APP_NAME));
        let mut status = self.media.status(&s.id);
        if !s.spec.enabled {
            status.state = StreamState::Stopped;
        }
        let llhls_url = (self.cfg.hls.part_milliseconds > 0 && status.has_low_latency())
            .then(|| format!("/llhls/{}/index.m3u8", s.id));
        StreamView {
            id: s.id.clone(),
            name: s.spec.name.clone(),
            source,
            ladder: s.spec.ladder.clone(),
            encoder: s.spec.encoder.clone(),
            enabled: s.spec.enabled,
            offload: s.spec.offload,
            restream: s.spec.restream.iter().map(RestreamView::of).collect(),
            recording: s.spec.recording.clone(),
            ai: s.spec.ai.clone(),
            privacy: s.spec.privacy.clone(),
            status,
            analysis: self.analyser.view(&s.id),
            hls_url: format!("/hls/{}/index.m3u8", s.id),
            llhls_url,
            snapshot_url: format!("/api/streams/{}/snapshot.jpg", s.id),
            rtmp_app,
            stream_key: None,
            created_ms: s.created_ms,
            updated_ms: s.updated_ms,
        }
    }

    /// On first start: a stream for the first camera found, or a test-pattern demo stream
    /// when there is no camera. Then every enabled stream is started. While no admin exists,
    /// a setup code is issued (and logged).
    pub async fn boot(&self) -> Result<(), StoreError> {
        // Until an admin exists, whoever is at the console gets a one-time code.
        self.announce_setup(false).await;
        if self.store.get_meta("bootstrapped")?.is_none() {
            let cameras = lpe_drivers::camera::discover();
            let first = cameras
                .iter()
                .find_map(|c| lpe_drivers::camera::negotiate(c, 1280, 720, 30).map(|n| (c, n)));
            let spec = match first {
                Some((cam, n)) => Some(StreamSpec {
                    name: if cam.name.is_empty() {
                        "Camera".into()
                    } else {
                        cam.name.clone()
                    },
                    source: SourceSpec::V4l2 {
                        device: cam.path.clone(),
                        width: n.width,
                        height: n.height,
                        fps: (n.fps_num / n.fps_den.max(1)).max(1),
                        // The camera's own microphone, when it has one.
                        audio_device: lpe_drivers::microphone::of_camera(
                            &lpe_drivers::microphone::discover(),
                            &cam.path,
                        )
                        .map(|m| m.device.clone()),
                    },
                    ladder: default_ladder(),
                    encoder: None,
                    enabled: true,
                    offload: false,
                    restream: Vec::new(),
                    recording: Default::default(),
                    ai: Default::default(),
                    privacy: Default::default(),
                }),
                None if self.cfg.media.demo_stream => Some(StreamSpec {
                    name: "Demo (test pattern)".into(),
                    source: SourceSpec::Test {
                        width: 1280,
                        height: 720,
                        fps: 30,
                        pattern: TestPattern::Smpte,
                        tone: true,
                    },
                    ladder: default_ladder(),
                    encoder: None,
                    enabled: true,
                    offload: false,
                    restream: Vec::new(),
                    recording: Default::default(),
                    ai: Default::default(),
                    privacy: Default::default(),
                }),
                None => None,
            };
            if let Some(mut spec) = spec {
                spec.fit_default_ladder();
                let id = new_id();
                {
                    let (id, spec) = (id.clone(), spec.clone());
                    self.store
                        .write(move |w| w.insert_stream(&id, &spec, now_ms()))
                        .await?;
                }
                self.events.emit(
                    Some(&id),
                    EventKind::StreamCreated,
                    format!("first start: created stream '{}'", spec.name),
                );
            }
            self.store
                .write(|w| w.set_meta("bootstrapped", "1"))
                .await?;
        }
        let (all, bad) = self.store.list_streams()?;
        for e in bad {
            tracing::error!("{e}; the stream is skipped");
        }
        for s in all.iter().filter(|s| s.spec.enabled) {
            self.media.start(&s.id, &s.spec).await;
        }
        Ok(())
    }

    /// Persists every event from the bus until the bus closes, in batches gathered for up to
    /// [`EVENT_BATCH_WINDOW`]; [`Node::flush_events`] writes what has been emitted at once.
    pub fn spawn_event_recorder(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        use tokio::sync::broadcast::error::{RecvError, TryRecvError};
        let node = self.clone();
        let mut rx = self.events.subscribe();
        let (flush, mut requests) = tokio::sync::mpsc::unbounded_channel::<FlushRequest>();
        if self.event_flush.set(flush).is_err() {
            tracing::warn!("the event recorder runs already");
        }
        let write = move |pending: &mut Vec<NodeEvent>| {
            // A flush can gather more than a batch; it is written a batch at a time too.
            let batches: Vec<Vec<NodeEvent>> =
                pending.chunks(EVENT_BATCH_MAX).map(<[_]>::to_vec).collect();
            pending.clear();
            let node = Arc::clone(&node);
            async move {
                for batch in batches {
                    let n = batch.len();
                    if let Err(e) = node.store.write(move |w| w.insert_events(&batch)).await {
                        tracing::warn!("cannot record {n} event(s): {e}");
                    }
                }
            }
        };
        tokio::spawn(async move {
            let mut pending = Vec::new();
            let mut due: Option<tokio::time::Instant> = None;
            loop {
                let timer = async {
                    match due {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Ok(ev) => {
                            pending.push(ev);
                            due.get_or_insert_with(|| tokio::time::Instant::now() + EVENT_BATCH_WINDOW);
                            if pending.len() >= EVENT_BATCH_MAX {
                                write(&mut pending).await;
                                due = None;
                            }
                        }
                        Err(RecvError::Lagged(n)) => {
                            tracing::warn!("event recorder missed {n} events");
                        }
                        Err(RecvError::Closed) => {
                            write(&mut pending).await;
                            return;
                        }
                    },
                    _ = timer => {
                        write(&mut pending).await;
                        due = None;
                    }
                    Some(ack) = requests.recv() => {
                        // Everything emitted before the request is already in the channel.
                        loop {
                            match rx.try_recv() {
                                Ok(ev) => pending.push(ev),
                                Err(TryRecvError::Lagged(n)) => {
                                    tracing::warn!("event recorder missed {n} events");
                                }
                                Err(_) => break,
                            }
                        }
                        write(&mut pending).await;
                        due = None;
                        let _ = ack.send(());
                    }
                }
            }
        })
    }

    /// Waits until every event emitted before the call is in the store (at once when no
    /// recorder runs).
    pub async fn flush_events(&self) {
        let (ack, done) = tokio::sync::oneshot::channel();
        if let Some(flush) = self.event_flush.get()
            && flush.send(ack).is_ok()
        {
            let _ = done.await;
        }
    }

    /// The newest recorded events (of `stream_id`, only alerts when `alerts` says which),
    /// newest first, including all emitted before the call.
    pub async fn recent_events(
        &self,
        stream_id: Option<&str>,
        alerts: Option<AlertFilter>,
        limit: u32,
    ) -> Result<Vec<lpe_store::StoredEvent>, StoreError> {
        self.flush_events().await;
        let kinds = alert_kinds();
        self.store.recent_events(
            &lpe_store::EventFilter {
                stream_id,
                kinds: alerts.map(|_| kinds.as_slice()),
                unacknowledged: alerts == Some(AlertFilter::Open),
            },
            limit,
        )
    }

    /// Objects the AI plane followed, newest first, with their snapshots' URLs.
    pub fn detections(
        &self,
        q: &lpe_store::DetectionQuery,
    ) -> Result<Vec<crate::analysis::DetectionView>, StoreError> {
        Ok(self
            .store
            .detections(q)?
            .into_iter()
            .map(|d| self.analyser.detection_view(d))
            .collect())
    }

    pub async fn shutdown(&self) {
        self.events.emit(
            None,
            EventKind::NodeStopping,
            "shutting down; finalising playlists",
        );
        self.media.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_keys_have_the_right_shape() {
        assert_eq!(new_id().len(), 10);
        assert!(lpe_core::spec::is_stream_key(&new_stream_key()));
    }
}
