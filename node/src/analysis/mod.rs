//! The AI tap of each stream, as the node runs it: the media engine asks [`Analyser::open`]
//! when a stream's run is built, and gets frame taps (and, in privacy mode, the mask its
//! outputs wait on). Each tap feeds a thread that hands frames to a detector process
//! (`lpe_ai::worker`) and turns answers into the mask's regions (faces) or tracked objects,
//! events, snapshots and detection rows (objects). A detector process that dies is
//! restarted with backoff; while it is down, privacy mode blanks the pictures.

mod snapshots;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lpe_ai::track::{Change, Observation, Tracker, TrackerConfig, ZoneShape};
use lpe_ai::worker::{Answer, Worker, WorkerCommand, WorkerSpec};
use lpe_core::events::{EventBus, EventKind, ObjectEvent, now_ms};
use lpe_core::spec::StreamSpec;
use lpe_media::analysis::{
    Analysis, AnalysisFrame, AnalysisRun, FrameTap, PrivacyMask, Region, TapStats,
};
use lpe_store::{DetectionRecord, Store};

pub use snapshots::Snapshots;

/// The longest a picture waits at the privacy gate for the face detector.
const PRIVACY_WAIT: Duration = Duration::from_secs(2);
/// End-to-end latencies kept per detector (for the percentiles).
const LATENCIES_KEPT: usize = 512;
/// The longest between two attempts to start a detector process.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A stream's detectors and mask, as its status shows them.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AnalysisView {
    /// Privacy mode's face detector.
    pub faces: Option<DetectorView>,
    /// The object detector.
    pub objects: Option<DetectorView>,
    pub privacy: Option<PrivacyView>,
    /// Objects seen now (started, not ended), by label.
    pub objects_now: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DetectorView {
    pub model: String,
    /// `starting`, `running` or `failed`.
    pub state: &'static str,
    /// The execution provider its session runs on.
    pub provider: Option<String>,
    pub error: Option<String>,
    /// Frames looked at, and dropped because the detector was busy.
    pub frames: u64,
    pub dropped: u64,
    /// Frames looked at per second, over the last few seconds.
    pub fps: f64,
    /// Mean time of the model's run alone.
    pub inference_ms: f64,
    /// From the picture reaching the tee to its answer (and events) handled, over the last
    /// 512 frames.
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PrivacyView {
    /// `covering` (faces covered in every output) or `blanked` (faces cannot be looked
    /// for: the pictures are black).
    pub state: &'static str,
    pub reason: Option<String>,
    /// Pictures let through covered, and blanked.
    pub covered: u64,
    pub blanked: u64,
    /// The mean time a picture waited at the gate for the face detector.
    pub delay_ms: f64,
}

/// What a stream's object detector sees in its latest picture (followed objects, started or
/// not): the live overlay's feed.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ObjectsNow {
    /// When the picture was taken (milliseconds since the Unix epoch); 0: nothing yet.
    pub ts_ms: u64,
    pub objects: Vec<ObjectNow>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ObjectNow {
    /// The detection's id once the object is an event (started).
    pub id: Option<String>,
    pub label: String,
    pub score: f32,
    /// `[x1, y1, x2, y2]`, normalised.
    pub bbox: [f32; 4],
    pub zones: Vec<String>,
}

/// A detection as the API lists it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DetectionView {
    #[serde(flatten)]
    pub detection: DetectionRecord,
    /// Present while the snapshot is kept.
    pub snapshot_url: Option<String>,
}

#[derive(Default)]
struct DetectorState {
    state: &'static str,
    provider: Option<String>,
    error: Option<String>,
}

/// One detector's counters, shared by its thread and the views.
struct DetectorStats {
    model: String,
    tap: Arc<TapStats>,
    state: Mutex<DetectorState>,
    frames: AtomicU64,
    inference_us: AtomicU64,
    latencies_us: Mutex<VecDeque<u64>>,
    /// When the last answers came (for the rate).
    answered_at: Mutex<VecDeque<Instant>>,
}

impl DetectorStats {
    fn new(model: &str, tap: Arc<TapStats>) -> Arc<Self> {
        Arc::new(Self {
            model: model.to_string(),
            tap,
            state: Mutex::new(DetectorState {
                state: "starting",
                ..Default::default()
            }),
            frames: AtomicU64::new(0),
            inference_us: AtomicU64::new(0),
            latencies_us: Mutex::default(),
            answered_at: Mutex::default(),
        })
    }

    fn set(&self, state: &'static str, provider: Option<String>, error: Option<String>) {
        if let Ok(mut s) = self.state.lock() {
            s.state = state;
            if provider.is_some() {
                s.provider = provider;
            }
            s.error = error;
        }
    }

    fn answered(&self, inference_us: u64, captured: Instant) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.inference_us.fetch_add(inference_us, Ordering::Relaxed);
        if let Ok(mut l) = self.latencies_us.lock() {
            if l.len() >= LATENCIES_KEPT {
                l.pop_front();
            }
            l.push_back(captured.elapsed().as_micros() as u64);
        }
        if let Ok(mut a) = self.answered_at.lock() {
            if a.len() >= 32 {
                a.pop_front();
            }
            a.push_back(Instant::now());
        }
    }

    /// Answers per second over the last ones, if they are recent.
    fn fps(&self) -> f64 {
        let Ok(a) = self.answered_at.lock() else {
            return 0.0;
        };
        match (a.front(), a.back()) {
            (Some(first), Some(last))
                if a.len() > 1 && last.elapsed() < Duration::from_secs(5) && last > first =>
            {
                (a.len() - 1) as f64 / last.duration_since(*first).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    fn view(&self) -> DetectorView {
        let frames = self.frames.load(Ordering::Relaxed);
        let (state, provider, error) = self
            .state
            .lock()
            .map(|s| (s.state, s.provider.clone(), s.error.clone()))
            .unwrap_or(("failed", None, None));
        let mut l: Vec<u64> = self
            .latencies_us
            .lock()
            .map(|l| l.iter().copied().collect())
            .unwrap_or_default();
        l.sort_unstable();
        let pct = |p: usize| {
            l.get((l.len() * p / 100).min(l.len().saturating_sub(1)))
                .map_or(0.0, |v| *v as f64 / 1000.0)
        };
        DetectorView {
            model: self.model.clone(),
            state,
            provider,
            error,
            frames,
            dropped: self.tap.dropped.load(Ordering::Relaxed),
            fps: self.fps(),
            inference_ms: if frames == 0 {
                0.0
            } else {
                self.inference_us.load(Ordering::Relaxed) as f64 / frames as f64 / 1000.0
            },
            latency_ms_p50: pct(50),
            latency_ms_p99: pct(99),
        }
    }
}

/// Objects seen now by label, shared by a stream's object detector and the views.
type Counts = Arc<Mutex<BTreeMap<String, u32>>>;

#[derive(Clone, Default)]
struct StreamAnalysis {
    faces: Option<Arc<DetectorStats>>,
    objects: Option<Arc<DetectorStats>>,
    mask: Option<Arc<PrivacyMask>>,
    counts: Counts,
}

/// Implements the media engine's [`Analysis`] for the node.
pub struct Analyser {
    plane: Arc<crate::ai::AiPlane>,
    worker: WorkerCommand,
    events: EventBus,
    store: Arc<Store>,
    snapshots: Option<Arc<Snapshots>>,
    streams: Mutex<HashMap<String, StreamAnalysis>>,
    /// Each stream's latest objects, for overlays; kept across runs so a viewer's
    /// subscription outlives a restart.
    live: Mutex<HashMap<String, tokio::sync::watch::Sender<ObjectsNow>>>,
    /// Fired while a stream recorded on events sees an object that counts.
    triggers: lpe_media::RecordingTriggers,
}

impl Analyser {
    pub fn new(
        plane: Arc<crate::ai::AiPlane>,
        cfg: &crate::config::Config,
        events: EventBus,
        store: Arc<Store>,
        triggers: lpe_media::RecordingTriggers,
    ) -> Arc<Self> {
        let snapshots = match Snapshots::open(
            cfg.data_dir.join("snapshots"),
            cfg.ai.snapshots_kept as usize,
            u64::from(cfg.ai.snapshots_megabytes) << 20,
        ) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::error!("snapshots directory: {e}; objects will have no snapshots");
                None
            }
        };
        let program = std::env::current_exe().unwrap_or_else(|_| "livepeer-edge".into());
        Arc::new(Self {
            plane,
            worker: WorkerCommand {
                program,
                args: vec!["ai-worker".into()],
            },
            events,
            store,
            snapshots,
            streams: Mutex::default(),
            live: Mutex::default(),
            triggers,
        })
    }

    /// Follows what a stream's object detector sees, picture by picture.
    pub fn watch_objects(&self, stream_id: &str) -> tokio::sync::watch::Receiver<ObjectsNow> {
        self.live_sender(stream_id).subscribe()
    }

    fn live_sender(&self, stream_id: &str) -> tokio::sync::watch::Sender<ObjectsNow> {
        let Ok(mut live) = self.live.lock() else {
            return tokio::sync::watch::channel(ObjectsNow::default()).0;
        };
        // One small entry per stream ever analysed or watched (streams are few).
        live.entry(stream_id.to_string())
            .or_insert_with(|| tokio::sync::watch::channel(ObjectsNow::default()).0)
            .clone()
    }

    /// Objects a stream's detector sees now (started, not ended), by label; empty when it
    /// runs none.
    pub fn object_counts(&self, stream_id: &str) -> BTreeMap<String, u32> {
        self.streams
            .lock()
            .ok()
            .and_then(|s| s.get(stream_id).map(|a| a.counts.clone()))
            .and_then(|c| c.lock().ok().map(|c| c.clone()))
            .unwrap_or_default()
    }

    /// The labels a stream's "detected" sensors report (Home Assistant): those configured,
    /// else `person` when its model knows people, else the model's first labels; empty
    /// without a model.
    pub fn sensed_labels(&self, ai: &lpe_core::spec::AnalysisSpec) -> Vec<String> {
        const MAX_SENSORS: usize = 8;
        let Some(model) = &ai.model else {
            return Vec::new();
        };
        if !ai.labels.is_empty() {
            return ai.labels.iter().take(MAX_SENSORS).cloned().collect();
        }
        let labels = self
            .plane
            .worker_spec(model)
            .map(|w| w.descriptor.labels)
            .unwrap_or_default();
        if labels.iter().any(|l| l == "person") {
            vec!["person".into()]
        } else {
            labels.into_iter().take(MAX_SENSORS).collect()
        }
    }

    /// What a stream's detectors and mask are doing; `None` when it has none.
    pub fn view(&self, stream_id: &str) -> Option<AnalysisView> {
        let s = self.streams.lock().ok()?.get(stream_id)?.clone();
        Some(AnalysisView {
            objects_now: s.counts.lock().map(|c| c.clone()).unwrap_or_default(),
            faces: s.faces.as_ref().map(|d| d.view()),
            objects: s.objects.as_ref().map(|d| d.view()),
            privacy: s.mask.as_ref().map(|m| {
                let failure = m.failure();
                let covered = m.covered.load(Ordering::Relaxed);
                PrivacyView {
                    state: if failure.is_some() {
                        "blanked"
                    } else {
                        "covering"
                    },
                    reason: failure,
                    covered,
                    blanked: m.blanked.load(Ordering::Relaxed),
                    delay_ms: if covered == 0 {
                        0.0
                    } else {
                        m.waited_us.load(Ordering::Relaxed) as f64 / covered as f64 / 1000.0
                    },
                }
            }),
        })
    }

    pub fn detection_view(&self, detection: DetectionRecord) -> DetectionView {
        let snapshot_url = self
            .snapshot(&detection.id)
            .map(|_| format!("/api/detections/{}/snapshot.jpg", detection.id));
        DetectionView {
            detection,
            snapshot_url,
        }
    }

    /// A detection's snapshot file, when kept.
    pub fn snapshot(&self, detection_id: &str) -> Option<std::path::PathBuf> {
        self.snapshots.as_ref()?.path(detection_id)
    }

    /// Starts a detector thread for `model_id`; its frames come through the returned tap.
    fn detector(
        &self,
        stream_id: &str,
        name: &str,
        model_id: &str,
        fps: u32,
        handle: impl FnOnce(&WorkerSpec) -> Box<dyn Handler>,
    ) -> Result<(FrameTap, Arc<DetectorStats>), String> {
        let spec = self.plane.worker_spec(model_id)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let tap_stats = Arc::new(TapStats::default());
        let stats = DetectorStats::new(model_id, tap_stats.clone());
        let tap = FrameTap {
            name: name.to_string(),
            width: spec.descriptor.width,
            height: spec.descriptor.height,
            fps,
            frames: tx,
            stats: tap_stats,
        };
        let handler = handle(&spec);
        let run = DetectorRun {
            stream_id: stream_id.to_string(),
            command: self.worker.clone(),
            spec,
            stats: stats.clone(),
            events: self.events.clone(),
        };
        std::thread::Builder::new()
            .name(format!("ai-{name}"))
            .spawn(move || run.run(rx, handler))
            .map_err(|e| format!("cannot start a detector thread: {e}"))?;
        Ok((tap, stats))
    }
}

impl Analysis for Analyser {
    fn open(&self, stream_id: &str, spec: &StreamSpec) -> Option<AnalysisRun> {
        let mut run = AnalysisRun::default();
        let mut state = StreamAnalysis::default();
        if spec.privacy.blur_faces {
            let mask = Arc::new(PrivacyMask::new(PRIVACY_WAIT));
            let m = mask.clone();
            let faces = self.detector(
                stream_id,
                "faces",
                lpe_ai::registry::CENTERFACE,
                spec.ai.fps,
                |_| {
                    Box::new(Faces {
                        mask: m,
                        down: false,
                    })
                },
            );
            match faces {
                Ok((tap, stats)) => {
                    run.taps.push(tap);
                    state.faces = Some(stats);
                }
                Err(why) => {
                    let why = format!("faces cannot be looked for: {why}");
                    self.events
                        .emit(Some(stream_id), EventKind::PrivacyBlanked, why.clone());
                    mask.fail(why);
                }
            }
            run.mask = Some(mask.clone());
            state.mask = Some(mask);
        }
        if let Some(model) = &spec.ai.model {
            let objects = self.detector(stream_id, "objects", model, spec.ai.fps, |ws| {
                Box::new(Objects::new(
                    self,
                    stream_id,
                    spec,
                    ws,
                    state.mask.clone(),
                    state.counts.clone(),
                    self.live_sender(stream_id),
                ))
            });
            match objects {
                Ok((tap, stats)) => {
                    run.taps.push(tap);
                    state.objects = Some(stats);
                }
                Err(why) => {
                    self.events.emit(
                        Some(stream_id),
                        EventKind::AiFailed,
                        format!("objects are not detected: {why}"),
                    );
                    let stats = DetectorStats::new(model, Arc::default());
                    stats.set("failed", None, Some(why));
                    state.objects = Some(stats);
                }
            }
        }
        if let Ok(mut s) = self.streams.lock() {
            if state.faces.is_none() && state.objects.is_none() && state.mask.is_none() {
                s.remove(stream_id);
            } else {
                s.insert(stream_id.to_string(), state);
            }
        }
        (!run.taps.is_empty() || run.mask.is_some()).then_some(run)
    }

    fn close(&self, stream_id: &str) {
        if let Ok(mut s) = self.streams.lock() {
            s.remove(stream_id);
        }
    }
}

/// What a detector thread does with answers.
trait Handler: Send {
    fn answer(&mut self, frame: &AnalysisFrame, answer: Answer);
    /// The detector process is down (`why`), or (`None`) up again.
    fn down(&mut self, stream_id: &str, events: &EventBus, why: Option<&str>);
    /// The run ended.
    fn finish(&mut self) {}
}

struct DetectorRun {
    stream_id: String,
    command: WorkerCommand,
    spec: WorkerSpec,
    stats: Arc<DetectorStats>,
    events: EventBus,
}

impl DetectorRun {
    /// Until the run ends (the tap's sender is dropped): start the process, hand it frames,
    /// and when it fails, report it and start it again after a backoff.
    fn run(mut self, rx: Receiver<AnalysisFrame>, mut handler: Box<dyn Handler>) {
        let mut backoff = Duration::from_secs(1);
        let mut down = false;
        'run: loop {
            self.stats.set("starting", None, None);
            let mut provider = None;
            let failure = match Worker::spawn(&self.command, &self.spec) {
                Err(e) => e.to_string(),
                Ok(mut worker) => {
                    provider = Some(worker.ready.provider.clone());
                    tracing::info!(
                        stream = self.stream_id,
                        model = self.stats.model,
                        provider = worker.ready.provider,
                        pid = worker.pid,
                        "detector running"
                    );
                    self.stats
                        .set("running", Some(worker.ready.provider.clone()), None);
                    loop {
                        let Ok(frame) = rx.recv() else {
                            break 'run;
                        };
                        match worker.detect(
                            frame.pts,
                            frame.width,
                            frame.height,
                            frame.stride,
                            frame.rgb(),
                        ) {
                            Ok(answer) => {
                                if down {
                                    down = false;
                                    handler.down(&self.stream_id, &self.events, None);
                                }
                                backoff = Duration::from_secs(1);
                                let inference_us = answer.inference_us;
                                handler.answer(&frame, answer);
                                self.stats.answered(inference_us, frame.captured);
                            }
                            Err(e) => break e.to_string(),
                        }
                    }
                }
            };
            tracing::warn!(
                stream = self.stream_id,
                model = self.stats.model,
                "detector failed: {failure}; restarting in {} s",
                backoff.as_secs()
            );
            // A GPU provider that fails while running is not used again for this model: the
            // next one that opens it takes over.
            if let Some(p) = provider.filter(|p| p != "CPU") {
                self.events.emit(
                    Some(&self.stream_id),
                    EventKind::AiFailed,
                    format!(
                        "{} failed on {p} ({failure}); falling back to the next provider",
                        self.stats.model
                    ),
                );
                self.spec.avoid_providers.push(p);
            }
            self.stats.set("failed", None, Some(failure.clone()));
            if !down {
                down = true;
                handler.down(&self.stream_id, &self.events, Some(&failure));
            }
            // Wait out the backoff, dropping the frames that come meanwhile; end with the run.
            let until = Instant::now() + backoff;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                if let Err(RecvTimeoutError::Disconnected) = rx.recv_timeout(left) {
                    break 'run;
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        handler.finish();
    }
}

/// Privacy mode's face detector: answers become the mask's regions.
struct Faces {
    mask: Arc<PrivacyMask>,
    down: bool,
}

impl Handler for Faces {
    fn answer(&mut self, frame: &AnalysisFrame, answer: Answer) {
        let (w, h) = (frame.width as f32, frame.height as f32);
        let regions = answer
            .detections
            .iter()
            .map(|d| Region {
                x1: d.bbox.x1 / w,
                y1: d.bbox.y1 / h,
                x2: d.bbox.x2 / w,
                y2: d.bbox.y2 / h,
            })
            .collect();
        self.mask.publish(frame.pts, regions);
    }

    fn down(&mut self, stream_id: &str, events: &EventBus, why: Option<&str>) {
        match why {
            Some(why) => {
                self.mask.fail(why);
                if !self.down {
                    events.emit(
                        Some(stream_id),
                        EventKind::PrivacyBlanked,
                        format!("faces cannot be looked for ({why}): the pictures are blanked"),
                    );
                }
                self.down = true;
            }
            None => {
                self.down = false;
                events.emit(
                    Some(stream_id),
                    EventKind::PrivacyRestored,
                    "faces are looked for again: the pictures are shown, faces covered",
                );
            }
        }
    }
}

/// The object detector: answers are tracked; objects become events, rows and snapshots.
struct Objects {
    stream_id: String,
    /// Detection ids are `<stream>-<run>-<track>`.
    run: String,
    labels: Vec<String>,
    min_score: f32,
    tracker: Tracker,
    /// The best picture of each followed object (JPEG), until it is started or lost.
    best: HashMap<u64, Vec<u8>>,
    /// The last frame's time on both clocks, for objects ended at the run's end.
    last: Option<(Duration, u64)>,
    mask: Option<Arc<PrivacyMask>>,
    counts: Counts,
    live: tokio::sync::watch::Sender<ObjectsNow>,
    /// Recording on events: the labels that trigger it (empty: any) and the triggers.
    record_on: Option<(Vec<String>, lpe_media::RecordingTriggers)>,
    zones_empty: bool,
    events: EventBus,
    store: Arc<Store>,
    snapshots: Option<Arc<Snapshots>>,
}

impl Objects {
    fn new(
        a: &Analyser,
        stream_id: &str,
        spec: &StreamSpec,
        ws: &WorkerSpec,
        mask: Option<Arc<PrivacyMask>>,
        counts: Counts,
        live: tokio::sync::watch::Sender<ObjectsNow>,
    ) -> Self {
        let zones = spec
            .ai
            .zones
            .iter()
            .map(|z| ZoneShape {
                name: z.name.trim().to_string(),
                points: z.points.iter().map(|p| (p[0], p[1])).collect(),
            })
            .collect();
        let interval = Duration::from_millis(1000 / u64::from(spec.ai.fps.max(1)));
        Self {
            stream_id: stream_id.to_string(),
            run: format!("{:x}", now_ms()),
            labels: spec
                .ai
                .labels
                .iter()
                .map(|l| l.trim().to_string())
                .collect(),
            min_score: spec.ai.min_score.unwrap_or(ws.descriptor.min_score),
            tracker: Tracker::new(TrackerConfig {
                min_duration: Duration::from_millis(u64::from(spec.ai.min_duration_ms)),
                lost_after: (interval * 5).max(Duration::from_secs(2)),
                zones,
            }),
            best: HashMap::new(),
            last: None,
            mask,
            counts,
            live,
            zones_empty: spec.ai.zones.is_empty(),
            record_on: (spec.recording.mode == lpe_core::spec::RecordingMode::Events)
                .then(|| (spec.recording.labels.clone(), a.triggers.clone())),
            events: a.events.clone(),
            store: a.store.clone(),
            snapshots: a.snapshots.clone(),
        }
    }

    /// The picture as a JPEG, faces covered in privacy mode (none when they cannot be).
    fn jpeg(&self, frame: &AnalysisFrame) -> Option<Vec<u8>> {
        let (w, h) = (frame.width as usize, frame.height as usize);
        let mut rgb = Vec::with_capacity(w * h * 3);
        for row in frame.rgb().chunks(frame.stride).take(h) {
            rgb.extend_from_slice(row.get(..w * 3)?);
        }
        if let Some(mask) = &self.mask {
            let regions = mask.look(frame.pts)?;
            lpe_media::analysis::cover_rgb(&mut rgb, w, h, w * 3, &regions);
        }
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 85)
            .encode(
                &rgb,
                u16::try_from(w).ok()?,
                u16::try_from(h).ok()?,
                jpeg_encoder::ColorType::Rgb,
            )
            .ok()?;
        Some(out)
    }

    fn detection_id(&self, track: u64) -> String {
        format!("{}-{}-{track}", self.stream_id, self.run)
    }

    fn publish(&mut self, change: Change, track: &lpe_ai::track::Track, pts: Duration, wall: u64) {
        let id = self.detection_id(track.id);
        let at = |t: Duration| wall.saturating_sub(pts.saturating_sub(t).as_millis() as u64);
        let mut snapshot = self
            .snapshots
            .as_ref()
            .is_some_and(|s| s.path(&id).is_some());
        if matches!(change, Change::Started | Change::Better)
            && let (Some(jpeg), Some(store)) = (self.best.remove(&track.id), &self.snapshots)
        {
            match store.put(&id, &jpeg) {
                Ok(()) => snapshot = true,
                Err(e) => tracing::warn!("snapshot {id}: {e}"),
            }
        }
        let b = track.bbox;
        let ended_ms = (change == Change::Ended).then(|| at(track.last_seen));
        let record = DetectionRecord {
            id: id.clone(),
            stream_id: self.stream_id.clone(),
            label: track.label.clone(),
            score: track.best_score,
            bbox: [b.x1, b.y1, b.x2, b.y2],
            zones: track.zones.clone(),
            started_ms: at(track.first_seen),
            updated_ms: ended_ms.unwrap_or(wall),
            ended_ms,
            snapshot,
        };
        let (kind, what) = match change {
            Change::Started => (EventKind::ObjectStarted, "seen"),
            Change::Zones => (
                EventKind::ObjectUpdated,
                if track.zones.is_empty() {
                    "left its zones"
                } else {
                    "moved between zones"
                },
            ),
            Change::Better => (EventKind::ObjectUpdated, "seen better"),
            Change::Ended => (EventKind::ObjectEnded, "gone"),
        };
        if let Ok(mut counts) = self.counts.lock() {
            match change {
                Change::Started => *counts.entry(track.label.clone()).or_default() += 1,
                Change::Ended => {
                    if let Some(n) = counts.get_mut(&track.label) {
                        *n = n.saturating_sub(1);
                    }
                }
                Change::Zones | Change::Better => {}
            }
        }
        let row = record.clone();
        if let Err(e) = self.store.write_blocking(move |w| w.put_detection(&row)) {
            tracing::warn!("detection {id}: {e}");
        }
        let zones = if record.zones.is_empty() {
            String::new()
        } else {
            format!(" in {}", record.zones.join(", "))
        };
        self.events.emit_object(
            Some(&self.stream_id),
            kind,
            format!("{} {what}{zones} (score {:.2})", record.label, record.score),
            Some(ObjectEvent {
                id: record.id,
                label: record.label,
                score: record.score,
                bbox: record.bbox,
                zones: record.zones,
                started_ms: record.started_ms,
                ended_ms: record.ended_ms,
                snapshot: record.snapshot,
            }),
        );
    }
}

impl Handler for Objects {
    fn answer(&mut self, frame: &AnalysisFrame, answer: Answer) {
        let (w, h) = (frame.width as f32, frame.height as f32);
        let observations = answer
            .detections
            .into_iter()
            .filter(|d| d.score >= self.min_score)
            .filter(|d| self.labels.is_empty() || self.labels.contains(&d.label))
            .map(|d| Observation {
                label: d.label,
                score: d.score,
                bbox: lpe_ai::detect::BoundingBox {
                    x1: d.bbox.x1 / w,
                    y1: d.bbox.y1 / h,
                    x2: d.bbox.x2 / w,
                    y2: d.bbox.y2 / h,
                },
            })
            .collect();
        let wall = now_ms().saturating_sub(frame.captured.elapsed().as_millis() as u64);
        self.last = Some((frame.pts, wall));
        let update = self.tracker.update(frame.pts, observations);
        if !update.best_now.is_empty()
            && let Some(jpeg) = self.jpeg(frame)
        {
            for id in &update.best_now {
                self.best.insert(*id, jpeg.clone());
            }
        }
        let alive: Vec<u64> = self.tracker.tracks().iter().map(|t| t.id).collect();
        self.best.retain(|id, _| alive.contains(id));
        for ev in update.events {
            self.publish(ev.change, &ev.track, frame.pts, wall);
        }
        // Recording on events: an object that counts (started; in a zone when there are
        // zones) seen in this picture keeps the recording going.
        if let Some((labels, triggers)) = &self.record_on {
            let zoned = !self.zones_empty;
            let counts = self.tracker.tracks().iter().any(|t| {
                t.started
                    && t.last_seen == frame.pts
                    && (!zoned || !t.zones.is_empty())
                    && (labels.is_empty() || labels.contains(&t.label))
            });
            if counts {
                triggers.fire(&self.stream_id);
            }
        }
        // Objects seen in this picture (not those only remembered).
        let objects = self
            .tracker
            .tracks()
            .iter()
            .filter(|t| t.last_seen == frame.pts)
            .map(|t| ObjectNow {
                id: t.started.then(|| self.detection_id(t.id)),
                label: t.label.clone(),
                score: t.score,
                bbox: [t.bbox.x1, t.bbox.y1, t.bbox.x2, t.bbox.y2],
                zones: t.zones.clone(),
            })
            .collect();
        self.live.send_replace(ObjectsNow {
            ts_ms: wall,
            objects,
        });
    }

    fn down(&mut self, stream_id: &str, events: &EventBus, why: Option<&str>) {
        match why {
            Some(why) => events.emit(
                Some(stream_id),
                EventKind::AiFailed,
                format!("the object detector failed ({why}); it is restarted"),
            ),
            None => tracing::info!(stream = stream_id, "object detector running again"),
        }
    }

    fn finish(&mut self) {
        let (pts, wall) = self.last.unwrap_or((Duration::ZERO, now_ms()));
        for ev in self.tracker.finish() {
            self.publish(ev.change, &ev.track, pts, wall);
        }
        self.live.send_replace(ObjectsNow {
            ts_ms: now_ms(),
            objects: Vec::new(),
        });
    }
}
