//! The data plane: sources, the encoder probe, ladders, HLS output, snapshots and the
//! supervision of every stream's pipeline.
//!
//! Invariant: this crate knows nothing of payments, MQTT or the store (its dependencies say
//! so). It takes stream specs and its own [`MediaConfig`], and reports status and events;
//! persistence is the caller's business.

pub mod analysis;
pub mod encoder;
pub mod hls;
pub mod llhls;
pub mod offload;
pub mod onvif;
pub mod pipeline;
pub mod recording;
pub mod restream;
pub mod rtmp;
pub mod runner;
pub mod tap;
pub mod transcode;
pub mod webrtc;

use lpe_core::spec;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use encoder::EncoderInventory;
use lpe_core::events::EventBus;
use rtmp::PublishRegistry;
use runner::{StreamRuntime, StreamStatus};
use spec::StreamSpec;

/// What the engine is told by whoever wires it (the node, from its configuration).
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Each stream's HLS output goes to `<hls_root>/<stream id>/`.
    pub hls_root: PathBuf,
    /// Target segment duration; encoders place a keyframe at each boundary.
    pub segment_seconds: u32,
    /// Segments kept per rendition (the ring).
    pub max_segments: u32,
    /// Upper bound for one stream's segments, all renditions together.
    pub max_bytes_per_stream: u64,
    pub x264_preset: String,
    pub x264_tune: String,
    /// When a stream's audio counts as silent; `None`: not watched.
    pub silence: Option<Silence>,
    /// Where recordings are written (may be another filesystem than the data directory).
    pub recordings_root: PathBuf,
    pub retention: recording::Retention,
    /// Low-latency HLS part duration; `None`: no low-latency HLS.
    pub part: Option<Duration>,
}

/// Audio below `below_db` (RMS, dBFS) for `after` is silence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Silence {
    pub after: std::time::Duration,
    pub below_db: f64,
}

/// What every stream runner shares.
pub struct EngineShared {
    pub cfg: MediaConfig,
    pub inventory: EncoderInventory,
    pub events: EventBus,
    /// Where offloaded streams send their segments; none: they encode locally.
    pub offload: std::sync::RwLock<Option<Arc<dyn offload::Offload>>>,
    /// What runs' pictures feed (the AI plane); none: nothing.
    pub analysis: std::sync::RwLock<Option<Arc<dyn analysis::Analysis>>>,
    /// `None` when the recordings directory could not be made.
    pub recordings: Option<Arc<recording::Library>>,
    /// The triggers of streams recorded on events.
    pub triggers: RecordingTriggers,
}

/// What starts (and extends) the recording of streams recorded on events: their detector
/// fires it as long as it sees an object that counts.
#[derive(Clone, Default)]
pub struct RecordingTriggers(Arc<Mutex<HashMap<String, watch::Sender<u64>>>>);

impl RecordingTriggers {
    /// An object was seen on `stream_id`: record (with its pre-roll), or record on.
    pub fn fire(&self, stream_id: &str) {
        if let Ok(t) = self.0.lock()
            && let Some(tx) = t.get(stream_id)
        {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The trigger a run's recorder waits on (replacing the previous run's).
    pub(crate) fn register(&self, stream_id: &str) -> watch::Receiver<u64> {
        let (tx, rx) = watch::channel(0);
        if let Ok(mut t) = self.0.lock() {
            t.insert(stream_id.to_string(), tx);
        }
        rx
    }
}

/// A WebRTC viewer: its stream, and how to end it.
struct Viewer {
    stream: String,
    stop: watch::Sender<bool>,
}

struct Entry {
    rt: Arc<StreamRuntime>,
    task: Option<(watch::Sender<bool>, JoinHandle<()>, Option<String>)>,
}

/// Starts, stops and reports on streams. One runner task per running stream.
pub struct MediaEngine {
    shared: Arc<EngineShared>,
    registry: PublishRegistry,
    streams: Mutex<HashMap<String, Entry>>,
    viewers: Arc<Mutex<HashMap<String, Viewer>>>,
    /// WHIP publishers by session id: their stream, and how to make them leave.
    publishers: Mutex<HashMap<String, (String, watch::Sender<bool>)>>,
}

/// Initialises GStreamer once per process; safe to call repeatedly.
pub fn init() -> Result<(), String> {
    gst::init().map_err(|e| format!("GStreamer failed to initialise: {e}"))
}

impl MediaEngine {
    pub fn new(cfg: MediaConfig, inventory: EncoderInventory, events: EventBus) -> Self {
        let recordings =
            match recording::Library::open(cfg.recordings_root.clone(), cfg.retention.clone()) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::error!(
                        "recordings directory {}: {e}; streams will not be recorded",
                        cfg.recordings_root.display()
                    );
                    None
                }
            };
        Self {
            shared: Arc::new(EngineShared {
                cfg,
                inventory,
                events,
                offload: std::sync::RwLock::new(None),
                analysis: std::sync::RwLock::new(None),
                recordings,
                triggers: RecordingTriggers::default(),
            }),
            registry: PublishRegistry::default(),
            streams: Mutex::new(HashMap::new()),
            viewers: Arc::default(),
            publishers: Mutex::default(),
        }
    }

    pub fn registry(&self) -> PublishRegistry {
        self.registry.clone()
    }

    /// Installs (or, with `None`, removes) the network transcoding offloaded streams use;
    /// takes effect at their next segment.
    pub fn set_offload(&self, offload: Option<Arc<dyn offload::Offload>>) {
        if let Ok(mut o) = self.shared.offload.write() {
            *o = offload;
        }
    }

    /// What the AI plane fires when a stream recorded on events sees an object.
    pub fn recording_triggers(&self) -> RecordingTriggers {
        self.shared.triggers.clone()
    }

    /// Installs what runs' pictures feed; takes effect at each stream's next run.
    pub fn set_analysis(&self, analysis: Option<Arc<dyn analysis::Analysis>>) {
        if let Ok(mut a) = self.shared.analysis.write() {
            *a = analysis;
        }
    }

    /// The gateway's spending per orchestrator; empty without a gateway.
    pub fn offload_spend(&self) -> Vec<offload::OrchestratorSpend> {
        let offload = self.shared.offload.read().ok().and_then(|o| o.clone());
        offload.map(|o| o.spend()).unwrap_or_default()
    }

    pub fn inventory(&self) -> &EncoderInventory {
        &self.shared.inventory
    }

    /// The recordings, when their directory could be made.
    pub fn recordings(&self) -> Option<Arc<recording::Library>> {
        self.shared.recordings.clone()
    }

    /// Applies retention every [`recording::FILE_SECONDS`] until the process ends.
    pub async fn keep_recordings(&self) {
        let Some(library) = self.recordings() else {
            return;
        };
        recording::keep(library, self.shared.events.clone()).await
    }

    pub fn hls_root(&self) -> &std::path::Path {
        &self.shared.cfg.hls_root
    }

    /// (Re)starts a stream with `spec`.
    pub async fn start(&self, id: &str, spec: &StreamSpec) {
        self.stop(id).await;
        let (stop_tx, stop_rx) = watch::channel(false);
        let key = runner::rtmp_key(spec).map(str::to_string);
        let publishers = key.as_deref().map(|k| self.registry.register(k, id));
        let rt = self.runtime(id);
        rt.set_starting(key.is_some());
        let task = tokio::spawn(runner::run(
            id.to_string(),
            spec.clone(),
            self.shared.clone(),
            rt.clone(),
            stop_rx,
            publishers,
        ));
        if let Ok(mut m) = self.streams.lock() {
            m.insert(
                id.to_string(),
                Entry {
                    rt,
                    task: Some((stop_tx, task, key)),
                },
            );
        }
    }

    fn runtime(&self, id: &str) -> Arc<StreamRuntime> {
        self.streams
            .lock()
            .ok()
            .and_then(|m| m.get(id).map(|e| e.rt.clone()))
            .unwrap_or_default()
    }

    /// Stops a stream and waits (up to 10 s) for its playlists to be finalised.
    pub async fn stop(&self, id: &str) {
        let task = self
            .streams
            .lock()
            .ok()
            .and_then(|mut m| m.get_mut(id).and_then(|e| e.task.take()));
        if let Some((stop, handle, key)) = task {
            if let Some(k) = key {
                self.registry.unregister(&k);
            }
            let _ = stop.send(true);
            let abort = handle.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), handle)
                .await
                .is_err()
            {
                tracing::warn!(stream = id, "stream did not stop within 10 s; aborting it");
                abort.abort();
            }
        }
    }

    /// Stops a stream, forgets it and removes its HLS output.
    pub async fn remove(&self, id: &str) {
        self.stop(id).await;
        if let Ok(mut m) = self.streams.lock() {
            m.remove(id);
        }
        let dir = self.shared.cfg.hls_root.join(id);
        if dir.starts_with(&self.shared.cfg.hls_root)
            && id.chars().all(|c| c.is_ascii_alphanumeric())
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    pub fn status(&self, id: &str) -> StreamStatus {
        self.streams
            .lock()
            .ok()
            .and_then(|m| m.get(id).map(|e| e.rt.snapshot()))
            .unwrap_or_default()
    }

    /// A stream's low-latency HLS rendition, while it has one.
    pub fn low_latency(&self, id: &str, rendition: &str) -> Option<Arc<llhls::Playlist>> {
        self.streams
            .lock()
            .ok()?
            .get(id)?
            .rt
            .low_latency
            .get(rendition)
    }

    /// The names of a stream's low-latency HLS renditions.
    pub fn low_latency_renditions(&self, id: &str) -> Vec<String> {
        self.streams
            .lock()
            .ok()
            .and_then(|m| m.get(id).map(|e| e.rt.low_latency.names()))
            .unwrap_or_default()
    }

    /// The newest snapshot JPEG of a running stream.
    pub fn snapshot(&self, id: &str) -> Option<Vec<u8>> {
        let rt = self.streams.lock().ok()?.get(id)?.rt.clone();
        let counters = rt.counters.lock().ok()?.clone()?;
        let sink = counters.snapshot.lock().ok()?.clone()?;
        let sample = sink.property::<Option<gst::Sample>>("last-sample")?;
        let buffer = sample.buffer()?;
        let map = buffer.map_readable().ok()?;
        Some(map.as_slice().to_vec())
    }

    /// A WebRTC viewer of a running stream: negotiates `offer` and starts feeding it
    /// `rendition` (default: the smallest encoded one); returns the session's id and the SDP
    /// answer.
    pub async fn whep(
        &self,
        stream: &str,
        offer: &str,
        rendition: Option<&str>,
    ) -> Result<(String, String), webrtc::WhepError> {
        use webrtc::WhepError;
        if self.viewers.lock().map(|v| v.len()).unwrap_or(usize::MAX) >= webrtc::MAX_VIEWERS {
            return Err(WhepError::Full);
        }
        let counters = self
            .streams
            .lock()
            .ok()
            .and_then(|m| m.get(stream).map(|e| e.rt.clone()))
            .and_then(|rt| rt.counters.lock().ok().and_then(|c| c.clone()))
            .ok_or(WhepError::NotRunning)?;
        let renditions: Vec<(String, u32, bool)> = counters
            .renditions
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|r| r.made_here())
                    .map(|r| (r.name.clone(), r.height, r.passthrough))
                    .collect()
            })
            .unwrap_or_default();
        let chosen = match rendition {
            Some(r) if renditions.iter().any(|(n, ..)| n == r) => r.to_string(),
            Some(r) => return Err(WhepError::NoRendition(r.to_string())),
            // Encoded here with the node's settings (no B-frames, a keyframe per segment):
            // the smallest such one; a passed-through source only when there is nothing else.
            None => renditions
                .iter()
                .filter(|(_, _, passthrough)| !passthrough)
                .min_by_key(|(_, h, _)| *h)
                .or(renditions.first())
                .map(|(n, ..)| n.clone())
                .ok_or(WhepError::NotRunning)?,
        };
        let audio = pipeline::ensure_opus(&counters);
        let (mut session, answer) = webrtc::answer(offer, chosen, audio).await?;
        let tap = session.tap.take().ok_or(WhepError::NotRunning)?;
        let weak = Arc::downgrade(&tap);
        if let Ok(mut taps) = counters.taps.lock() {
            taps.push(tap);
        }
        let id = lpe_core::ids::random_string(lpe_core::ids::ID_ALPHABET, 16);
        let (stop, stop_rx) = watch::channel(false);
        if let Ok(mut v) = self.viewers.lock() {
            v.insert(
                id.clone(),
                Viewer {
                    stream: stream.to_string(),
                    stop,
                },
            );
        }
        let viewers = Arc::clone(&self.viewers);
        let session_id = id.clone();
        tokio::spawn(async move {
            session.run(stop_rx).await;
            if let Ok(mut taps) = counters.taps.lock() {
                taps.retain(|t| !std::ptr::eq(Arc::as_ptr(t), weak.as_ptr()));
            }
            if let Ok(mut v) = viewers.lock() {
                v.remove(&session_id);
            }
        });
        Ok((id, answer))
    }

    /// A WHIP publisher for the pushed stream whose key is `key`: hands its offer to the
    /// stream's runner and returns the session's id and the SDP answer.
    pub async fn whip(
        &self,
        key: &str,
        offer: &str,
    ) -> Result<(String, String), webrtc::WhipError> {
        use webrtc::WhipError;
        if offer.len() > 64 * 1024 {
            return Err(WhipError::BadOffer("larger than 64 KiB".into()));
        }
        let (stream, handover, guard) = self.registry.claim_whip(key).map_err(|e| match e {
            rtmp::Refusal::Busy => WhipError::Busy,
            _ => WhipError::UnknownKey,
        })?;
        let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
        let (leave, leave_rx) = watch::channel(false);
        handover
            .try_send(rtmp::WhipPublish {
                offer: offer.to_string(),
                answer: answer_tx,
                leave: leave_rx,
                guard,
            })
            .map_err(|_| WhipError::Busy)?;
        let answer = tokio::time::timeout(Duration::from_secs(15), answer_rx)
            .await
            .map_err(|_| WhipError::Failed("no answer in time".into()))?
            .map_err(|_| WhipError::Failed("the stream stopped".into()))?
            .map_err(WhipError::Failed)?;
        let id = lpe_core::ids::random_string(lpe_core::ids::ID_ALPHABET, 16);
        if let Ok(mut p) = self.publishers.lock() {
            // Sessions whose run ended are gone from the runner; their senders are closed.
            p.retain(|_, (_, l)| !l.is_closed());
            p.insert(id.clone(), (stream, leave));
        }
        Ok((id, answer))
    }

    /// Ends a WHIP publisher's session; false when there is none by that id.
    pub fn whip_end(&self, session: &str) -> bool {
        let left = self
            .publishers
            .lock()
            .ok()
            .and_then(|mut p| p.remove(session));
        match left {
            Some((_, leave)) => {
                let _ = leave.send(true);
                true
            }
            None => false,
        }
    }

    /// Ends a WebRTC viewer of `stream`; false when there is no such viewer.
    pub fn whep_end(&self, stream: &str, session: &str) -> bool {
        let Ok(mut v) = self.viewers.lock() else {
            return false;
        };
        match v.get(session) {
            Some(s) if s.stream == stream => {
                if let Some(s) = v.remove(session) {
                    let _ = s.stop.send(true);
                }
                true
            }
            _ => false,
        }
    }

    /// WebRTC viewers of `stream`.
    pub fn whep_viewers(&self, stream: &str) -> usize {
        self.viewers
            .lock()
            .map(|v| v.values().filter(|s| s.stream == stream).count())
            .unwrap_or(0)
    }

    /// Stops every stream concurrently; playlists are finalised.
    pub async fn shutdown(&self) {
        let ids: Vec<String> = self
            .streams
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        futures::future::join_all(ids.iter().map(|id| self.stop(id))).await;
    }
}
