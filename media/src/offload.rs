//! Offloaded streams: the source is cut into MPEG-TS segments (the passthrough, or one local
//! encode of the top rendition), and each segment's other renditions come from an
//! orchestrator on the Livepeer network — or, when none is available, too dear, or its result
//! fails verification, from this node's own encoder, for that very segment. Either way the
//! renditions land in the stream's HLS ladder, so players never learn where they came from.
//!
//! This crate knows nothing of the network: whoever wires the engine installs an [`Offload`]
//! (the gateway) with [`crate::MediaEngine::set_offload`]. Without one, every segment is
//! encoded locally.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::EngineShared;
use crate::hls::SegmentRing;
use crate::pipeline::{Counters, OffloadLadder, RenditionCounters};
use crate::transcode::{OutputProfile, SegmentTranscoder};
use lpe_core::events::EventKind;
use lpe_core::spec::ResolvedRendition;

/// One source segment to transcode elsewhere.
#[derive(Debug, Clone)]
pub struct SegmentJob {
    pub stream_id: String,
    /// Counts from 0 for each run of the stream.
    pub seq: u64,
    pub duration: Duration,
    /// H.264 in MPEG-TS.
    pub data: Arc<Vec<u8>>,
    pub profiles: Vec<OutputProfile>,
}

/// A segment's renditions as an orchestrator returned them, verified.
#[derive(Debug, Clone)]
pub struct Offloaded {
    /// One per profile, in profile order.
    pub renditions: Vec<Vec<u8>>,
    /// Decoded pixels of each rendition (frames × width × height).
    pub pixels: Vec<u64>,
    /// Who transcoded the segment (the orchestrator's URI).
    pub by: String,
}

/// Transcoding somewhere else: the gateway side of the Livepeer network.
pub trait Offload: Send + Sync {
    /// The segment's renditions, verified; an error sends the segment to the local encoder.
    fn transcode(&self, job: SegmentJob) -> BoxFuture<'_, Result<Offloaded, String>>;
    /// The stream stopped: its sessions can end.
    fn end(&self, stream_id: &str) -> BoxFuture<'_, ()>;
    /// What was spent, per orchestrator.
    fn spend(&self) -> Vec<OrchestratorSpend>;
}

/// One orchestrator's account at the gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OrchestratorSpend {
    pub orchestrator: String,
    /// Segments sent (answered or not).
    pub segments: u64,
    pub tickets: u64,
    /// Expected value of the tickets sent, wei (an exact fraction as text).
    pub ev_spent_wei: String,
    /// Pixels of verified renditions.
    pub pixels: u64,
    /// Its last price, wei per pixel (an exact fraction as text).
    pub price_wei_per_pixel: String,
    pub failures: u64,
    pub last_error: Option<String>,
}

/// Where an offloaded stream's renditions come from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OffloadMode {
    /// No segment yet.
    Starting,
    /// From an orchestrator.
    Network,
    /// From this node's encoder.
    Local,
}

/// An offloaded stream's view in its status.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OffloadStatus {
    pub mode: OffloadMode,
    /// The orchestrator that transcoded the last segment.
    pub orchestrator: Option<String>,
    pub segments_network: u64,
    pub segments_local: u64,
    /// Segments dropped because transcoding fell behind the source.
    pub segments_dropped: u64,
    /// Why the last segment was encoded locally.
    pub last_fallback: Option<String>,
    /// Milliseconds the last segment took, from being taken up (after any wait in the queue)
    /// to its renditions in the playlists.
    pub last_segment_ms: u64,
}

impl OffloadStatus {
    pub(crate) fn starting() -> Self {
        Self {
            mode: OffloadMode::Starting,
            orchestrator: None,
            segments_network: 0,
            segments_local: 0,
            segments_dropped: 0,
            last_fallback: None,
            last_segment_ms: 0,
        }
    }
}

/// What the worker does with each segment: the ladder in playlist order, each rendition with
/// its index among the profiles sent out (`None` for the rendition the segment itself is).
struct OffloadPlan {
    renditions: Vec<(ResolvedRendition, Option<usize>)>,
    profiles: Vec<OutputProfile>,
    counters: Vec<Arc<RenditionCounters>>,
}

impl OffloadPlan {
    fn new(ladder: &OffloadLadder) -> Self {
        let mut profiles = Vec::new();
        let renditions = ladder
            .renditions
            .iter()
            .map(|(r, is_source)| {
                if *is_source {
                    (r.clone(), None)
                } else {
                    profiles.push(profile_of(r));
                    (r.clone(), Some(profiles.len() - 1))
                }
            })
            .collect();
        Self {
            renditions,
            profiles,
            counters: ladder.counters.clone(),
        }
    }
}

fn profile_of(r: &ResolvedRendition) -> OutputProfile {
    OutputProfile {
        name: r.spec.name.clone(),
        width: r.width,
        height: r.height,
        bitrate_bps: r.spec.bitrate_kbps.saturating_mul(1000),
        fps: Some((r.fps.0.max(1) as u32, r.fps.1.max(1) as u32)),
        gop: None,
        profile: r.spec.profile,
    }
}

/// A source segment closed by the segmenter.
#[derive(Debug)]
pub(crate) struct SegmentClosed {
    pub path: PathBuf,
    pub duration: Duration,
}

/// Segments waiting for their renditions; beyond this the newest is dropped (counted).
pub(crate) const QUEUED_SEGMENTS: usize = 3;

/// The offload view the worker keeps and the stream's status shows.
pub(crate) type SharedStatus = Arc<std::sync::Mutex<OffloadStatus>>;

pub(crate) struct Worker {
    pub id: String,
    pub shared: Arc<EngineShared>,
    pub status: SharedStatus,
    pub counters: Arc<Counters>,
    pub hls_dir: PathBuf,
    pub run_id: String,
    pub ring: u32,
    pub local: SegmentTranscoder,
}

impl Worker {
    /// Turns closed source segments into the ladder's segments until the channel closes.
    pub async fn run(self, mut segments: mpsc::Receiver<SegmentClosed>) {
        let mut rings: HashMap<String, SegmentRing> = HashMap::new();
        let mut last_origin: Option<String> = None;
        let mut seq = 0u64;
        let mut plan: Option<OffloadPlan> = None;
        while let Some(closed) = segments.recv().await {
            let data = match std::fs::read(&closed.path) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(stream = %self.id, "segment {}: {e}", closed.path.display());
                    continue;
                }
            };
            let _ = std::fs::remove_file(&closed.path);
            // The ladder is resolved once the source's caps are known, before its first
            // segment closes.
            if plan.is_none() {
                plan = self
                    .counters
                    .offload_ladder
                    .lock()
                    .ok()
                    .and_then(|l| l.as_deref().map(OffloadPlan::new));
            }
            let Some(plan) = plan.as_ref() else { continue };
            let started = Instant::now();
            let data = Arc::new(data);
            let (renditions, origin, fallback) =
                match self.transcode(plan, seq, closed.duration, &data).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(stream = %self.id, seq, "segment lost: {e}");
                        self.shared.events.emit(
                            Some(&self.id),
                            EventKind::StreamError,
                            format!("segment {seq} could not be transcoded: {e}"),
                        );
                        seq += 1;
                        continue;
                    }
                };
            seq += 1;
            let changed = last_origin.as_ref().is_some_and(|o| *o != origin);
            if origin != SOURCE {
                self.announce(last_origin.as_deref(), &origin, fallback.as_deref());
            }
            let seconds = closed.duration.as_secs_f64();
            for (i, (r, idx)) in plan.renditions.iter().enumerate() {
                let (bytes, frames) = match idx {
                    None => (data.as_slice(), (seconds * fps(r)).round() as u64),
                    Some(k) => match renditions.get(*k) {
                        Some((b, f)) => (b.as_slice(), *f),
                        None => continue,
                    },
                };
                let ring = match rings.entry(r.spec.name.clone()) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        match SegmentRing::new(
                            self.hls_dir.join(&r.spec.name),
                            &self.run_id,
                            self.ring,
                        ) {
                            Ok(ring) => v.insert(ring),
                            Err(e) => {
                                tracing::warn!(stream = %self.id, "rendition {}: {e}", r.spec.name);
                                continue;
                            }
                        }
                    }
                };
                // Transcoders keep the source's timeline, but each encoder has its own
                // stream parameters: a change of origin is a discontinuity to a player.
                if let Err(e) = ring.push(bytes, seconds, changed && idx.is_some()) {
                    tracing::warn!(stream = %self.id, "rendition {}: {e}", r.spec.name);
                }
                if idx.is_some()
                    && let Some(c) = plan.counters.get(i)
                {
                    c.frames.fetch_add(frames, Ordering::Relaxed);
                    c.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
            }
            if origin == SOURCE {
                continue;
            }
            let network = origin != LOCAL;
            let ms = started.elapsed().as_millis() as u64;
            if let Ok(mut o) = self.status.lock() {
                o.mode = if network {
                    OffloadMode::Network
                } else {
                    OffloadMode::Local
                };
                if network {
                    o.segments_network += 1;
                    o.orchestrator = Some(origin.clone());
                } else {
                    o.segments_local += 1;
                    o.last_fallback.clone_from(&fallback);
                }
                o.last_segment_ms = ms;
            }
            last_origin = Some(origin);
        }
    }

    /// The segment's renditions (bytes and frames, in profile order), where they came from,
    /// and why not from the network when they did not.
    async fn transcode(
        &self,
        plan: &OffloadPlan,
        seq: u64,
        duration: Duration,
        data: &Arc<Vec<u8>>,
    ) -> Result<(Vec<(Vec<u8>, u64)>, String, Option<String>), String> {
        if plan.profiles.is_empty() {
            return Ok((Vec::new(), SOURCE.into(), None));
        }
        let offload = self.shared.offload.read().ok().and_then(|o| o.clone());
        let why = match offload {
            None => "no Livepeer gateway is running".to_string(),
            Some(o) => {
                let job = SegmentJob {
                    stream_id: self.id.clone(),
                    seq,
                    duration,
                    data: data.clone(),
                    profiles: plan.profiles.clone(),
                };
                match tokio::time::timeout(network_budget(duration), o.transcode(job)).await {
                    Ok(Ok(done)) if done.renditions.len() == plan.profiles.len() => {
                        let frames =
                            plan.profiles.iter().zip(&done.pixels).map(|(p, px)| {
                                px / (u64::from(p.width) * u64::from(p.height)).max(1)
                            });
                        let out = done.renditions.into_iter().zip(frames).collect();
                        return Ok((out, done.by, None));
                    }
                    Ok(Ok(_)) => "the orchestrator returned the wrong number of renditions".into(),
                    Ok(Err(e)) => e,
                    Err(_) => format!(
                        "no result within {} ms",
                        network_budget(duration).as_millis()
                    ),
                }
            }
        };
        let (local, data, profiles) = (self.local.clone(), data.clone(), plan.profiles.clone());
        let done = tokio::task::spawn_blocking(move || local.transcode(&data, &profiles))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let out = done
            .renditions
            .into_iter()
            .map(|r| (r.data, r.frames))
            .collect();
        Ok((out, LOCAL.into(), Some(why)))
    }

    fn announce(&self, before: Option<&str>, now: &str, fallback: Option<&str>) {
        let was_network = before.is_some_and(|b| b != LOCAL);
        if now == LOCAL && (was_network || before.is_none()) {
            self.shared.events.emit(
                Some(&self.id),
                EventKind::OffloadFallback,
                format!(
                    "encoding locally: {}",
                    fallback.unwrap_or("no orchestrator")
                ),
            );
        } else if now != LOCAL && !was_network {
            self.shared.events.emit(
                Some(&self.id),
                EventKind::OffloadResumed,
                format!("segments transcoded by {now}"),
            );
        }
    }
}

/// The origin of locally encoded segments.
const LOCAL: &str = "local";
/// The origin of a segment with nothing to transcode (the ladder is the source alone).
const SOURCE: &str = "source";

/// How long a segment may spend on the network before it is encoded locally instead: one and
/// a half times its duration (an orchestrator transcodes a 2 s 1080p segment in about 1.4 s
/// here), so that even then the ladder falls at most one segment behind.
fn network_budget(duration: Duration) -> Duration {
    (duration * 3 / 2).max(Duration::from_secs(2))
}

fn fps(r: &ResolvedRendition) -> f64 {
    f64::from(r.fps.0) / f64::from(r.fps.1.max(1))
}
