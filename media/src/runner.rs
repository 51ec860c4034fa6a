//! Supervision of one stream: build the pipeline, watch its bus, sample its counters, and on
//! source loss rebuild it with exponential backoff (capped at 30 s). A hardware encoder that
//! fails at run time is replaced by x264 for the rest of the stream's life.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::EngineShared;
use super::encoder::{self, EncoderKind};
use super::offload::{self, OffloadStatus, SegmentClosed};
use super::pipeline::{self, BuildContext, Counters, Input, SourceInfo};
use super::restream;
use super::rtmp::{self, Publisher, RtmpMedia, VideoCodec};
use super::spec::{SourceSpec, StreamSpec};
use lpe_core::events::EventKind;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A run that lasted this long resets the backoff.
const STABLE_RUN: Duration = Duration::from_secs(30);
/// No frame for this long on a running stream counts as source loss.
const STALL: Duration = Duration::from_secs(10);
/// No first frame within this long after start counts as a failed start.
const FIRST_FRAME: Duration = Duration::from_secs(20);
/// An RTMP publish must show video within this long.
const FIRST_VIDEO: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    Stopped,
    Starting,
    /// RTMP: no publisher yet.
    Waiting,
    Running,
    /// Lost its source; retrying (or, for RTMP, waiting for the publisher to return).
    Reconnecting,
    /// Refused its input (e.g. an unsupported codec); waits for a new attempt.
    Failed,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RenditionStatus {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub encoder: String,
    pub passthrough: bool,
    pub fps: f64,
    pub kbps: f64,
}

/// What the API, the UI and telemetry show about a stream.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct StreamStatus {
    pub state: StreamState,
    pub detail: Option<String>,
    pub last_error: Option<String>,
    pub reconnects: u64,
    /// Encoder used for encoded renditions in the current run.
    pub encoder: Option<String>,
    /// True once a hardware encoder failed and x264 took over.
    pub encoder_fallback: bool,
    pub source: Option<SourceInfo>,
    pub input_fps: f64,
    pub input_kbps: f64,
    pub dropped_frames: u64,
    pub renditions: Vec<RenditionStatus>,
    /// Renditions left out because they would exceed the source, with the reason.
    pub skipped_renditions: Vec<SkippedRendition>,
    pub running_since_ms: Option<u64>,
    /// Present when the stream is offloaded to the Livepeer network.
    pub offload: Option<OffloadStatus>,
    /// The stream's audio: what came in, and whether it was passed through or encoded to
    /// AAC; absent when the source has none.
    pub audio: Option<crate::pipeline::AudioInfo>,
    /// Each restream destination: live, connecting or retrying, its bitrate and errors.
    pub restream: Vec<restream::RestreamStatus>,
    /// The recorder's state; absent when the stream is not recorded.
    pub recording: Option<crate::recording::recorder::RecordingStatus>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SkippedRendition {
    pub name: String,
    pub reason: String,
}

impl RenditionStatus {
    /// Encoded or passed through by this node (not an offloaded stream's rendition from the
    /// network, which exists only as segment files).
    pub fn made_here(&self) -> bool {
        crate::pipeline::made_here(&self.encoder)
    }
}

impl StreamStatus {
    /// Whether the stream has (or, not running yet, may have) a low-latency rendition: only
    /// renditions made here are packaged in partial segments.
    pub fn has_low_latency(&self) -> bool {
        self.renditions.is_empty() || self.renditions.iter().any(RenditionStatus::made_here)
    }
}

impl Default for StreamStatus {
    fn default() -> Self {
        Self {
            state: StreamState::Stopped,
            detail: None,
            last_error: None,
            reconnects: 0,
            encoder: None,
            encoder_fallback: false,
            source: None,
            input_fps: 0.0,
            input_kbps: 0.0,
            dropped_frames: 0,
            renditions: Vec::new(),
            skipped_renditions: Vec::new(),
            running_since_ms: None,
            offload: None,
            audio: None,
            restream: Vec::new(),
            recording: None,
        }
    }
}

/// The runner's shared face: status for readers, live counters for snapshots.
#[derive(Default)]
pub struct StreamRuntime {
    pub status: Mutex<StreamStatus>,
    pub counters: Mutex<Option<Arc<Counters>>>,
    /// The low-latency HLS renditions, kept across runs.
    pub low_latency: Arc<crate::llhls::Renditions>,
}

impl StreamRuntime {
    fn update(&self, f: impl FnOnce(&mut StreamStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// Shows the stream as starting (or waiting for its publisher) before its task runs.
    pub fn set_starting(&self, waits_for_publisher: bool) {
        self.update(|s| {
            s.state = if waits_for_publisher {
                StreamState::Waiting
            } else {
                StreamState::Starting
            };
        });
    }

    pub fn snapshot(&self) -> StreamStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }
    fn step(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_CAP);
        d
    }
    fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
}

/// How one run of the pipeline ended.
enum RunEnd {
    Stopped,
    SourceEnded,
    Failed {
        message: String,
        encoder_failed: bool,
    },
}

/// Runs the stream until `stop` turns true.
pub(super) async fn run(
    id: String,
    spec: StreamSpec,
    shared: Arc<EngineShared>,
    rt: Arc<StreamRuntime>,
    mut stop: watch::Receiver<bool>,
    mut publishers: Option<rtmp::Publishers>,
) {
    let mut backoff = Backoff::new();
    let mut fallback = false;
    let events = &shared.events;
    loop {
        if *stop.borrow() {
            break;
        }
        // A pushed stream: wait for a publisher — RTMP (checked for what it sends before
        // anything is built) or WHIP.
        let mut publisher = None;
        let mut whip = None;
        let mut first_tags = Vec::new();
        if let Some(rx) = publishers.as_mut() {
            rt.update(|s| {
                if s.state != StreamState::Failed {
                    s.state = StreamState::Waiting;
                }
                s.detail = Some("waiting for a publisher (RTMP or WHIP)".into());
                s.running_since_ms = None;
            });
            let arrived = tokio::select! {
                p = rx.rtmp.recv() => match p { Some(p) => Arrived::Rtmp(p), None => break },
                w = rx.whip.recv() => match w { Some(w) => Arrived::Whip(w), None => break },
                _ = stop.changed() => break,
            };
            match arrived {
                Arrived::Whip(w) => whip = Some(w),
                Arrived::Rtmp(mut p) => match first_video(&mut p).await {
                    Ok(tags) => {
                        first_tags = tags;
                        publisher = Some(p);
                    }
                    Err(why) => {
                        events.emit(Some(&id), EventKind::StreamError, why.clone());
                        rt.update(|s| {
                            s.state = StreamState::Failed;
                            s.last_error = Some(why);
                            s.detail = Some("publish refused; waiting for a new publisher".into());
                        });
                        continue;
                    }
                },
            }
        }

        let encoder_name = if fallback {
            encoder::SOFTWARE.to_string()
        } else {
            spec.encoder
                .clone()
                .unwrap_or_else(|| shared.inventory.preferred.clone())
        };
        let ctx = BuildContext {
            hls_dir: shared.cfg.hls_root.join(&id),
            run_id: format!("{:x}", lpe_core::events::now_ms()),
            segment_seconds: shared.cfg.segment_seconds,
            max_segments: shared.cfg.max_segments,
            max_bytes: shared.cfg.max_bytes_per_stream,
            encoder: encoder_name.clone(),
            x264_preset: shared.cfg.x264_preset.clone(),
            x264_tune: shared.cfg.x264_tune.clone(),
            offload: spec.offload,
            watch_silence: shared.cfg.silence.is_some(),
            analysis: open_analysis(&id, &spec, &shared).await,
        };
        let input = if publisher.is_some() {
            Input::Flv {
                audio: first_tags
                    .iter()
                    .any(|m| matches!(m, RtmpMedia::Audio { .. })),
            }
        } else if let Some(w) = &whip {
            Input::Whip {
                audio: crate::webrtc::offers_audio(&w.offer),
            }
        } else {
            Input::None
        };
        rt.update(|s| {
            s.state = StreamState::Starting;
            s.detail = None;
            s.encoder = Some(encoder_name.clone());
            s.encoder_fallback = fallback;
        });
        let started = Instant::now();
        let end = match pipeline::build(&id, &spec, &ctx, input) {
            Err(e) => RunEnd::Failed {
                message: e.to_string(),
                encoder_failed: false,
            },
            Ok(built) => {
                if let Ok(mut c) = rt.counters.lock() {
                    *c = Some(built.counters.clone());
                }
                let feeder = match (built.appsrc.clone(), publisher.take(), whip.take()) {
                    (Some(src), Some(p), _) => Some(tokio::spawn(feed(src, p, first_tags))),
                    (_, _, Some(w)) => Some(tokio::spawn(crate::webrtc::publish(
                        built.pipeline.clone(),
                        w,
                    ))),
                    _ => None,
                };
                let consumers = start_consumers(&id, &spec, &built, &shared, &rt);
                let (segments, worker) = if spec.offload {
                    let offload_status: offload::SharedStatus =
                        Arc::new(Mutex::new(OffloadStatus::starting()));
                    let (tx, rx) = mpsc::channel(offload::QUEUED_SEGMENTS);
                    let worker = offload::Worker {
                        id: id.clone(),
                        shared: shared.clone(),
                        status: offload_status.clone(),
                        counters: built.counters.clone(),
                        hls_dir: ctx.hls_dir.clone(),
                        run_id: ctx.run_id.clone(),
                        ring: crate::hls::ring_size(
                            &spec.ladder,
                            ctx.segment_seconds,
                            ctx.max_segments,
                            ctx.max_bytes,
                        ),
                        local: crate::transcode::SegmentTranscoder {
                            encoder: encoder_name.clone(),
                            x264_preset: ctx.x264_preset.clone(),
                            timeout: Duration::from_secs(30),
                        },
                    };
                    (
                        Some((tx, offload_status)),
                        Some(tokio::spawn(worker.run(rx))),
                    )
                } else {
                    (None, None)
                };
                let end = watch_run(
                    &id,
                    &built,
                    &rt,
                    &shared,
                    &mut stop,
                    segments.as_ref().map(|(tx, status)| (tx, status)),
                    srt_listener(&spec),
                )
                .await;
                if let Some(analysis) = &ctx.analysis {
                    if let Some(mask) = &analysis.mask {
                        mask.close();
                    }
                    if let Some(plane) = shared.analysis.read().ok().and_then(|a| a.clone()) {
                        plane.close(&id);
                    }
                }
                if let Some(f) = feeder {
                    f.abort();
                }
                if let Some(w) = worker {
                    w.abort();
                }
                consumers.stop().await;
                teardown(built.pipeline, matches!(end, RunEnd::Stopped)).await;
                if let Ok(mut c) = rt.counters.lock() {
                    *c = None;
                }
                end
            }
        };
        if started.elapsed() >= STABLE_RUN {
            backoff.reset();
        }
        // A pushed stream waits for its publisher to come back; a pulled one is retried.
        let lost = if publishers.is_some() {
            StreamState::Waiting
        } else {
            StreamState::Reconnecting
        };
        match end {
            RunEnd::Stopped => break,
            // An SRT listener's caller left: listen again at once, as an RTMP stream waits
            // for its next publisher (unless the run was too short to have had a caller).
            RunEnd::SourceEnded
                if srt_listener(&spec).is_some() && started.elapsed() >= Duration::from_secs(2) =>
            {
                events.emit(Some(&id), EventKind::StreamDown, "the SRT caller left");
                rt.update(|s| {
                    s.state = StreamState::Waiting;
                    s.detail = Some("waiting for the next SRT caller".into());
                    s.input_fps = 0.0;
                    s.input_kbps = 0.0;
                });
                continue;
            }
            RunEnd::SourceEnded => {
                events.emit(Some(&id), EventKind::StreamDown, "source ended");
                rt.update(|s| {
                    s.reconnects += 1;
                    s.state = lost;
                    s.input_fps = 0.0;
                    s.input_kbps = 0.0;
                });
            }
            RunEnd::Failed {
                message,
                encoder_failed,
            } => {
                let hw = EncoderKind::from_element(&encoder_name).is_some_and(|k| k.is_hardware());
                if encoder_failed && hw && !fallback {
                    fallback = true;
                    events.emit(
                        Some(&id),
                        EventKind::EncoderFallback,
                        format!("hardware encoder {encoder_name} failed ({message}); switching to x264enc"),
                    );
                }
                events.emit(Some(&id), EventKind::StreamDown, message.clone());
                rt.update(|s| {
                    s.reconnects += 1;
                    s.state = lost;
                    s.last_error = Some(message);
                    s.input_fps = 0.0;
                    s.input_kbps = 0.0;
                });
            }
        }
        if publishers.is_some() {
            continue; // the next publisher decides when to start again
        }
        let wait = if fallback && started.elapsed() < Duration::from_secs(1) {
            Duration::ZERO
        } else {
            backoff.step()
        };
        rt.update(|s| s.detail = Some(format!("retrying in {} s", wait.as_secs())));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => break,
        }
    }
    if spec.offload {
        let offload = shared.offload.read().ok().and_then(|o| o.clone());
        if let Some(o) = offload {
            o.end(&id).await;
        }
    }
    rt.update(|s| {
        *s = StreamStatus {
            reconnects: s.reconnects,
            last_error: s.last_error.clone(),
            ..StreamStatus::default()
        };
    });
}

/// The port of an SRT listener source.
fn srt_listener(spec: &StreamSpec) -> Option<u16> {
    match &spec.source {
        SourceSpec::Srt {
            mode: crate::spec::SrtMode::Listener,
            port,
            ..
        } => *port,
        _ => None,
    }
}

/// A publisher of a pushed stream, as it arrived.
enum Arrived {
    Rtmp(Publisher),
    Whip(rtmp::WhipPublish),
}

/// What one run feeds besides its HLS output — restream destinations, the recorder and the
/// low-latency packagers — running while it lasts.
struct Consumers {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Consumers {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts a destination task for each enabled restream target and the recorder when the
/// stream is recorded (their taps are in the pipeline's counters before it plays); the
/// stream's status lists every target and the recorder.
fn start_consumers(
    id: &str,
    spec: &StreamSpec,
    built: &pipeline::StreamPipeline,
    shared: &Arc<EngineShared>,
    rt: &StreamRuntime,
) -> Consumers {
    use crate::recording::recorder::{Recorder, RecordingStatus};
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut statuses = Vec::new();
    let audio = built.pipeline.by_name("audio-tee").is_some();
    let mut taps = Vec::new();
    for t in &spec.restream {
        let dest =
            restream::Destination::new(t.clone(), t.rendition.clone().unwrap_or_default(), audio);
        statuses.push(dest.status.clone());
        if !t.enabled {
            continue;
        }
        taps.push(dest.tap.clone());
        tasks.push(tokio::spawn(dest.run(
            id.to_string(),
            shared.events.clone(),
            stop_rx.clone(),
        )));
    }
    if spec.recording.mode != crate::spec::RecordingMode::Off {
        let rendition = spec.recording.rendition.clone().unwrap_or_default();
        let status = match &shared.recordings {
            None => Arc::new(Mutex::new(RecordingStatus::off(
                rendition,
                Some("the recordings directory cannot be used (see the log)".into()),
            ))),
            Some(library) => {
                let mut recorder = Recorder::new(id, rendition, audio, library.clone());
                if spec.recording.mode == crate::spec::RecordingMode::Events {
                    recorder = recorder.on_events(crate::recording::recorder::EventMode {
                        pre_roll: Duration::from_secs(u64::from(spec.recording.pre_roll_seconds)),
                        post_roll: Duration::from_secs(u64::from(spec.recording.post_roll_seconds)),
                        trigger: shared.triggers.register(id),
                    });
                }
                let status = recorder.status.clone();
                taps.push(recorder.tap.clone());
                tasks.push(tokio::spawn(
                    recorder.run(shared.events.clone(), stop_rx.clone()),
                ));
                status
            }
        };
        if let Ok(mut s) = built.counters.recording_status.lock() {
            *s = Some(status);
        }
    }
    if let Ok(mut t) = built.counters.taps.lock() {
        t.extend(taps);
    }
    if let Some(part) = shared.cfg.part {
        tasks.push(tokio::spawn(crate::llhls::attach(
            id.to_string(),
            built.counters.clone(),
            rt.low_latency.clone(),
            part,
            Duration::from_secs(u64::from(shared.cfg.segment_seconds)),
            stop_rx.clone(),
        )));
    }
    if let Ok(mut s) = built.counters.restream_status.lock() {
        *s = statuses;
    }
    Consumers { stop, tasks }
}

/// What this run's pictures feed, asked of the AI plane off the async threads. Privacy mode
/// without an answer still gets a mask — a failed one, so the outputs are blanked.
async fn open_analysis(
    id: &str,
    spec: &StreamSpec,
    shared: &Arc<EngineShared>,
) -> Option<Arc<crate::analysis::AnalysisRun>> {
    use crate::analysis::{AnalysisRun, PrivacyMask};
    if spec.offload {
        return None;
    }
    let plane = shared.analysis.read().ok().and_then(|a| a.clone());
    let mut run = match plane {
        Some(plane) => {
            let (id, spec) = (id.to_string(), spec.clone());
            tokio::task::spawn_blocking(move || plane.open(&id, &spec))
                .await
                .ok()
                .flatten()
        }
        None => None,
    };
    if spec.privacy.blur_faces && run.as_ref().is_none_or(|r| r.mask.is_none()) {
        let mask = PrivacyMask::new(Duration::from_secs(2));
        mask.fail("faces cannot be looked for: the AI plane is not running");
        run.get_or_insert_with(AnalysisRun::default).mask = Some(Arc::new(mask));
    }
    run.map(Arc::new)
}

/// Waits for the publisher's first video tag (and a moment more for its audio); refuses
/// audio-only and non-H.264 publishes.
async fn first_video(p: &mut Publisher) -> Result<Vec<RtmpMedia>, String> {
    let mut tags = Vec::new();
    let deadline = tokio::time::Instant::now() + FIRST_VIDEO;
    loop {
        let next = tokio::time::timeout_at(deadline, p.media.recv()).await;
        match next {
            Err(_) => {
                let audio = tags.iter().any(|t| matches!(t, RtmpMedia::Audio { .. }));
                return Err(if audio {
                    "audio-only publish refused: the stream needs a video track (H.264)".into()
                } else {
                    format!(
                        "no video from the publisher within {} s",
                        FIRST_VIDEO.as_secs()
                    )
                });
            }
            Ok(None) => return Err("publisher left before sending video".into()),
            Ok(Some(m)) => match &m {
                RtmpMedia::Audio { .. } => {
                    if tags.len() < 1000 {
                        tags.push(m);
                    }
                }
                RtmpMedia::Video { data, .. } => match rtmp::video_codec(data) {
                    Some(VideoCodec::H264) => {
                        tags.push(m);
                        await_audio(p, &mut tags).await;
                        return Ok(tags);
                    }
                    Some(other) => {
                        return Err(format!(
                            "unsupported video codec {other} in RTMP publish; publish H.264"
                        ));
                    }
                    None => {}
                },
            },
        }
    }
}

/// How long after the first video a publisher's audio may start and still be in the
/// renditions (the pipeline's muxers are made with or without audio).
const AUDIO_GRACE: Duration = Duration::from_millis(700);

/// Holds the start a moment for audio when none came before the first video (encoders send
/// their audio header just after the video's), keeping every tag meanwhile.
async fn await_audio(p: &mut Publisher, tags: &mut Vec<RtmpMedia>) {
    let has_audio = |t: &[RtmpMedia]| t.iter().any(|m| matches!(m, RtmpMedia::Audio { .. }));
    let deadline = tokio::time::Instant::now() + AUDIO_GRACE;
    while !has_audio(tags) && tags.len() < 1000 {
        match tokio::time::timeout_at(deadline, p.media.recv()).await {
            Ok(Some(m)) => tags.push(m),
            Ok(None) | Err(_) => return,
        }
    }
}

/// Pushes the publisher's media into the pipeline as an FLV byte stream; ends the stream
/// (EOS) when the publisher leaves.
async fn feed(src: gstreamer_app::AppSrc, mut p: Publisher, first: Vec<RtmpMedia>) {
    let push = |bytes: Vec<u8>| src.push_buffer(gst::Buffer::from_mut_slice(bytes)).is_ok();
    let audio = first.iter().any(|m| matches!(m, RtmpMedia::Audio { .. }));
    if !push(rtmp::flv_header(audio)) {
        return;
    }
    for m in &first {
        if !push(rtmp::flv_tag(m)) {
            return;
        }
    }
    while let Some(m) = p.media.recv().await {
        if !push(rtmp::flv_tag(&m)) {
            return;
        }
    }
    tracing::debug!(peer = %p.peer, "publisher gone; ending the stream");
    let _ = src.end_of_stream();
}

async fn watch_run(
    id: &str,
    built: &pipeline::StreamPipeline,
    rt: &StreamRuntime,
    shared: &EngineShared,
    stop: &mut watch::Receiver<bool>,
    offload: Option<(&mpsc::Sender<SegmentClosed>, &offload::SharedStatus)>,
    // An SRT listener waits for its caller as long as it takes (the port it listens on).
    listener: Option<u16>,
) -> RunEnd {
    let (pipeline, counters) = (&built.pipeline, &built.counters);
    let Some(bus) = pipeline.bus() else {
        return RunEnd::Failed {
            message: "pipeline has no bus".into(),
            encoder_failed: false,
        };
    };
    let mut messages = bus.stream();
    if pipeline.set_state(gst::State::Playing).is_err() {
        // The reason follows as an error message on the bus; read it below.
        tracing::debug!(stream = id, "pipeline refused to start");
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let started = Instant::now();
    let mut last_frames = 0u64;
    let mut last_progress = Instant::now();
    let mut sampler = Sampler::default();
    let mut up = false;
    let mut fragment_start: Option<u64> = None;
    let mut silence = SilenceWatch::default();
    loop {
        tokio::select! {
            _ = stop.changed() => return RunEnd::Stopped,
            msg = messages.next() => {
                let Some(msg) = msg else {
                    return RunEnd::Failed { message: "pipeline bus closed".into(), encoder_failed: false };
                };
                match msg.view() {
                    gst::MessageView::Eos(_) => return RunEnd::SourceEnded,
                    gst::MessageView::Error(e) => {
                        let src = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                        let detail = e.debug().map(|d| d.to_string()).unwrap_or_default();
                        tracing::debug!(stream = id, element = %src, "{detail}");
                        let encoder_failed = src.ends_with("-enc") && src != "snapshot-enc";
                        return RunEnd::Failed {
                            message: format!("{src}: {}", e.error()),
                            encoder_failed,
                        };
                    }
                    // Branches are added while playing; their latency must be accounted for.
                    gst::MessageView::Latency(_) => {
                        let _ = pipeline.recalculate_latency();
                    }
                    gst::MessageView::Element(e) => {
                        let from_level = msg.src().is_some_and(|s| s.name() == crate::pipeline::LEVEL);
                        if let (true, Some(st), Some(limits)) = (from_level, e.structure(), shared.cfg.silence) {
                            if let Some(db) = crate::pipeline::loudest_rms(st) {
                                silence.level(id, db, limits, counters, &shared.events);
                            }
                        } else if let (Some((tx, status)), Some(st)) = (offload, e.structure()) {
                            forward_fragment(st, tx, &mut fragment_start, status);
                        }
                    }
                    gst::MessageView::Warning(w) => {
                        let src = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                        tracing::warn!(stream = id, element = %src, "{}", w.error());
                    }
                    _ => {}
                }
            }
            _ = tick.tick() => {
                let frames = counters.in_frames.load(Ordering::Relaxed);
                if frames > last_frames {
                    last_frames = frames;
                    last_progress = Instant::now();
                    if !up {
                        up = true;
                        shared.events.emit(Some(id), EventKind::StreamUp, "receiving frames");
                        rt.update(|s| {
                            s.state = StreamState::Running;
                            s.detail = None;
                            s.running_since_ms = Some(lpe_core::events::now_ms());
                        });
                    }
                } else if up && last_progress.elapsed() >= STALL {
                    return RunEnd::Failed { message: format!("no frames for {} s", STALL.as_secs()), encoder_failed: false };
                } else if let (false, Some(port)) = (up, listener) {
                    rt.update(|s| {
                        if s.state != StreamState::Waiting {
                            s.state = StreamState::Waiting;
                            s.detail = Some(format!("waiting for an SRT caller on UDP port {port}"));
                        }
                    });
                } else if !up && started.elapsed() >= FIRST_FRAME {
                    return RunEnd::Failed { message: format!("no frames within {} s of starting", FIRST_FRAME.as_secs()), encoder_failed: false };
                }
                sampler.sample(counters, rt);
                if let Some(o) = offload.and_then(|(_, status)| status.lock().ok().map(|o| o.clone())) {
                    rt.update(|s| s.offload = Some(o));
                }
            }
        }
    }
}

/// Watches a stream's audio level for silence: below the limit for its whole duration, the
/// audio is silent (one event); above it again, restored (one event).
#[derive(Default)]
struct SilenceWatch {
    quiet_since: Option<Instant>,
    silent: bool,
}

impl SilenceWatch {
    fn level(
        &mut self,
        id: &str,
        db: f64,
        limits: crate::Silence,
        counters: &Counters,
        events: &lpe_core::events::EventBus,
    ) {
        if db < limits.below_db {
            let since = *self.quiet_since.get_or_insert_with(Instant::now);
            if !self.silent && since.elapsed() >= limits.after {
                self.silent = true;
                events.emit(
                    Some(id),
                    EventKind::AudioSilent,
                    format!(
                        "no sound for {} s (level {db:.0} dBFS): is the mixer muted?",
                        limits.after.as_secs()
                    ),
                );
            }
        } else {
            self.quiet_since = None;
            if self.silent {
                self.silent = false;
                events.emit(
                    Some(id),
                    EventKind::AudioRestored,
                    format!("sound again (level {db:.0} dBFS)"),
                );
            }
        }
        if let Ok(mut a) = counters.audio.lock()
            && let Some(a) = a.as_mut()
        {
            a.level_db = Some((db * 10.0).round() / 10.0);
            a.silent = self.silent;
        }
    }
}

/// Hands a segment the segmenter closed to the offload worker; its duration is the running
/// time between the fragment's opening and closing messages.
fn forward_fragment(
    st: &gst::StructureRef,
    tx: &mpsc::Sender<SegmentClosed>,
    fragment_start: &mut Option<u64>,
    status: &offload::SharedStatus,
) {
    let at = st
        .get::<gst::ClockTime>("running-time")
        .ok()
        .map(|t| t.nseconds());
    match st.name().as_str() {
        "splitmuxsink-fragment-opened" => *fragment_start = at,
        "splitmuxsink-fragment-closed" => {
            let ns = at
                .zip(*fragment_start)
                .map(|(end, start)| end.saturating_sub(start))
                .unwrap_or(0);
            let closed = SegmentClosed {
                path: st.get::<String>("location").unwrap_or_default().into(),
                duration: Duration::from_nanos(ns),
            };
            if let Err(mpsc::error::TrySendError::Full(c)) = tx.try_send(closed) {
                // Transcoding fell behind the source: the newest segment is dropped.
                let _ = std::fs::remove_file(&c.path);
                if let Ok(mut o) = status.lock() {
                    o.segments_dropped += 1;
                }
            }
        }
        _ => {}
    }
}

/// Turns counters into rates once a second.
#[derive(Default)]
struct Sampler {
    at: Option<Instant>,
    in_frames: u64,
    in_bytes: u64,
    audio_bytes: u64,
    rend: Vec<(u64, u64)>,
}

impl Sampler {
    fn sample(&mut self, c: &Counters, rt: &StreamRuntime) {
        let now = Instant::now();
        let dt = self
            .at
            .map(|a| now.duration_since(a).as_secs_f64())
            .unwrap_or(0.0);
        self.at = Some(now);
        let frames = c.in_frames.load(Ordering::Relaxed);
        let bytes = c.in_bytes.load(Ordering::Relaxed);
        let rate = |now: u64, before: u64| {
            if dt > 0.0 {
                (now.saturating_sub(before)) as f64 / dt
            } else {
                0.0
            }
        };
        let input_fps = rate(frames, self.in_frames);
        let input_kbps = rate(bytes, self.in_bytes) * 8.0 / 1000.0;
        self.in_frames = frames;
        self.in_bytes = bytes;
        let rends: Vec<_> = c.renditions.lock().map(|r| r.clone()).unwrap_or_default();
        self.rend.resize(rends.len(), (0, 0));
        let mut out = Vec::with_capacity(rends.len());
        for (i, r) in rends.iter().enumerate() {
            let f = r.frames.load(Ordering::Relaxed);
            let b = r.bytes.load(Ordering::Relaxed);
            let (pf, pb) = self.rend[i];
            out.push(RenditionStatus {
                name: r.name.clone(),
                width: r.width,
                height: r.height,
                encoder: r.encoder.clone(),
                passthrough: r.passthrough,
                fps: round2(rate(f, pf)),
                kbps: round2(rate(b, pb) * 8.0 / 1000.0),
            });
            self.rend[i] = (f, b);
        }
        let source = c.source.lock().ok().and_then(|s| s.clone());
        let audio_bytes = c.audio_bytes.load(Ordering::Relaxed);
        let audio = c.audio.lock().ok().and_then(|a| a.clone()).map(|mut a| {
            a.kbps = round2(rate(audio_bytes, self.audio_bytes) * 8.0 / 1000.0);
            a
        });
        self.audio_bytes = audio_bytes;
        let top = c
            .top_rendition
            .lock()
            .ok()
            .and_then(|t| t.clone())
            .unwrap_or_default();
        let restream: Vec<restream::RestreamStatus> = c
            .restream_status
            .lock()
            .map(|all| {
                all.iter()
                    .filter_map(|s| s.lock().ok().map(|s| s.clone()))
                    .map(|mut s| {
                        if s.rendition.is_empty() {
                            s.rendition.clone_from(&top);
                        }
                        s
                    })
                    .collect()
            })
            .unwrap_or_default();
        let recording = c
            .recording_status
            .lock()
            .ok()
            .and_then(|r| r.as_ref().and_then(|r| r.lock().ok().map(|r| r.clone())))
            .map(|mut r| {
                if r.rendition.is_empty() {
                    r.rendition.clone_from(&top);
                }
                r
            });
        let skipped = c
            .skipped
            .lock()
            .map(|s| {
                s.iter()
                    .map(|(name, reason)| SkippedRendition {
                        name: name.clone(),
                        reason: reason.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let dropped = c.dropped.load(Ordering::Relaxed);
        rt.update(|s| {
            s.input_fps = round2(input_fps);
            s.input_kbps = round2(input_kbps);
            s.renditions = out;
            s.source = source;
            s.audio = audio;
            s.restream = restream;
            s.recording = recording;
            s.skipped_renditions = skipped;
            s.dropped_frames = dropped;
        });
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Stops a pipeline. On a requested stop it first sends EOS so that every HLS playlist is
/// finalised (its last segment written, `#EXT-X-ENDLIST` appended).
async fn teardown(pipeline: gst::Pipeline, graceful: bool) {
    let _ = tokio::task::spawn_blocking(move || {
        if graceful && pipeline.current_state() == gst::State::Playing {
            pipeline.send_event(gst::event::Eos::new());
            if let Some(bus) = pipeline.bus() {
                let _ = bus.timed_pop_filtered(
                    gst::ClockTime::from_seconds(5),
                    &[gst::MessageType::Eos, gst::MessageType::Error],
                );
            }
        }
        let _ = pipeline.set_state(gst::State::Null);
    })
    .await;
}

/// Which publisher channel a stream needs.
pub(super) fn rtmp_key(spec: &StreamSpec) -> Option<&str> {
    match &spec.source {
        SourceSpec::Rtmp { stream_key } => Some(stream_key),
        _ => None,
    }
}
