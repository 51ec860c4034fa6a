//! Builds one stream's GStreamer pipeline: source → decode once → tee → N × (scale, encode)
//! → HLS, plus a snapshot tap.
//!
//! Every element is named `<role>` or `<rendition>-<role>` so bus messages say which part of
//! which rendition failed. The ladder is resolved when the source's caps are first known (a
//! live RTMP or RTSP source tells its size only once media flows), so the branches are added
//! from a caps probe on the source side of the tee.
//!
//! `source` builds what comes before the raw tee (one module per way in, decoding once);
//! `output` is everything fed from it — the HLS ladder and the snapshot tap today, and the
//! place for the AI tap and the network segmenter.

mod audio;
mod output;
mod source;

pub use audio::{AudioInfo, LEVEL, ensure_opus, loudest_rms};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::encoder::{self, EncoderKind};
use super::spec::{self, ResolvedRendition, RtspTransport, SourceSpec, SrtMode, StreamSpec};

/// Everything a pipeline needs besides the stream's own spec.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// `<data>/hls/<stream-id>`.
    pub hls_dir: PathBuf,
    /// Distinguishes segment files of successive runs so a restart never overwrites a segment
    /// a player may still be fetching.
    pub run_id: String,
    pub segment_seconds: u32,
    pub max_segments: u32,
    pub max_bytes: u64,
    /// Encoder element for encoded renditions.
    pub encoder: String,
    pub x264_preset: String,
    pub x264_tune: String,
    /// Cut the source into segments for the Livepeer network instead of encoding the ladder
    /// (the offload module).
    pub offload: bool,
    /// Measure the audio's level (for silence detection).
    pub watch_silence: bool,
    /// The AI plane's frame taps and privacy mask for this run.
    pub analysis: Option<Arc<crate::analysis::AnalysisRun>>,
}

impl BuildContext {
    /// Privacy mode: every output passes the mask, so nothing is passed through.
    fn private(&self) -> bool {
        self.analysis.as_ref().is_some_and(|a| a.mask.is_some())
    }
}

/// Counters shared between streaming threads (pad probes) and the supervisor.
#[derive(Debug, Default)]
pub struct Counters {
    pub in_frames: AtomicU64,
    pub in_bytes: AtomicU64,
    pub dropped: AtomicU64,
    pub source: Mutex<Option<SourceInfo>>,
    pub renditions: Mutex<Vec<Arc<RenditionCounters>>>,
    /// Renditions skipped because they would exceed the source, with the reason.
    pub skipped: Mutex<Vec<(String, String)>>,
    /// The snapshot branch's sink; its `last-sample` is the newest JPEG.
    pub snapshot: Mutex<Option<gst::Element>>,
    /// An offloaded stream's ladder, once the source's caps are known.
    pub(crate) offload_ladder: Mutex<Option<Arc<OffloadLadder>>>,
    /// The stream's audio, once a source said it has some.
    pub audio: Mutex<Option<AudioInfo>>,
    pub audio_bytes: AtomicU64,
    /// Feeds of restream destinations and the recorder; set before the pipeline plays.
    pub taps: Mutex<Vec<Arc<crate::tap::Tap>>>,
    /// Every restream target's status (enabled or not), in the spec's order.
    pub restream_status: Mutex<Vec<Arc<Mutex<crate::restream::RestreamStatus>>>>,
    /// The recorder's status, when the stream is to be recorded.
    pub recording_status: Mutex<Option<Arc<Mutex<crate::recording::recorder::RecordingStatus>>>>,
    /// The largest rendition (what a destination without a rendition is sent).
    pub top_rendition: Mutex<Option<String>>,
    /// The pipeline, for branches made while it runs (the Opus encode for WebRTC).
    pub(crate) pipeline: Mutex<Option<gst::glib::WeakRef<gst::Pipeline>>>,
}

impl Counters {
    /// Whether the stream's renditions carry audio (its audio tee exists).
    pub(crate) fn has_audio(&self) -> bool {
        self.pipeline
            .lock()
            .ok()
            .and_then(|p| p.as_ref().and_then(|w| w.upgrade()))
            .is_some_and(|p| audio::expected(&p))
    }

    /// Copies a rendition's encoded buffers to the taps on it. Taps come and go while the
    /// stream runs (a WebRTC viewer joins), so the list is read per buffer.
    pub(crate) fn tap_video(self: &Arc<Self>, pad: &gst::Pad, rendition: &str) {
        let counters = Arc::clone(self);
        let rendition = rendition.to_string();
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Ok(taps) = counters.taps.lock() else {
                return gst::PadProbeReturn::Ok;
            };
            if taps.is_empty() {
                return gst::PadProbeReturn::Ok;
            }
            let is_top = counters
                .top_rendition
                .lock()
                .ok()
                .is_some_and(|t| t.as_deref() == Some(rendition.as_str()));
            let mut on_this = taps
                .iter()
                .filter(|t| t.rendition == rendition || (t.rendition.is_empty() && is_top))
                .peekable();
            if on_this.peek().is_none() {
                return gst::PadProbeReturn::Ok;
            }
            if let (Some(buf), Some(caps)) = (info.buffer(), pad.current_caps())
                && let Some(buf) = running_time(pad, buf)
            {
                for t in on_this {
                    t.offer(crate::tap::Packet::Video(caps.clone(), buf.clone()));
                }
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// Copies the stream's audio to every tap. The audio tee is made while the pipeline is
    /// built, before the taps are known, so the list is read per buffer.
    pub(crate) fn tap_audio(self: &Arc<Self>, pad: &gst::Pad) {
        if let Ok(taps) = self.taps.lock() {
            for t in taps.iter() {
                t.audio.store(true, Ordering::Relaxed);
            }
        }
        let counters = Arc::clone(self);
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Ok(taps) = counters.taps.lock() else {
                return gst::PadProbeReturn::Ok;
            };
            if let (false, Some(buf), Some(caps)) =
                (taps.is_empty(), info.buffer(), pad.current_caps())
                && let Some(buf) = running_time(pad, buf)
            {
                for t in taps.iter().filter(|t| !t.opus) {
                    t.offer(crate::tap::Packet::Audio(caps.clone(), buf.clone()));
                }
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// Copies the stream's Opus audio to the taps that take Opus (WebRTC viewers).
    pub(crate) fn tap_opus(self: &Arc<Self>, pad: &gst::Pad) {
        let counters = Arc::clone(self);
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Ok(taps) = counters.taps.lock() else {
                return gst::PadProbeReturn::Ok;
            };
            if let (Some(buf), Some(caps)) = (info.buffer(), pad.current_caps()) {
                for t in taps.iter().filter(|t| t.opus) {
                    t.offer(crate::tap::Packet::Audio(caps.clone(), buf.clone()));
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
}

/// The encoder a rendition of an offloaded stream made by the network is listed with.
pub(crate) const NETWORK_ENCODER: &str = "offload";

/// An offloaded stream's ladder as the builder resolved it (what the offload worker follows).
#[derive(Debug, Clone)]
pub(crate) struct OffloadLadder {
    /// In playlist order, each with whether the source segment itself is that rendition.
    pub renditions: Vec<(ResolvedRendition, bool)>,
    pub counters: Vec<Arc<RenditionCounters>>,
}

#[derive(Debug, Clone, serde::Serialize, PartialEq, utoipa::ToSchema)]
pub struct SourceInfo {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub codec: String,
}

#[derive(Debug)]
pub struct RenditionCounters {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub encoder: String,
    pub passthrough: bool,
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
}

/// Whether a rendition listed with `encoder` is encoded or passed through by this node, so
/// its buffers can be tapped; an offloaded stream's renditions from the network exist only as
/// the offload worker's files.
pub(crate) fn made_here(encoder: &str) -> bool {
    encoder != NETWORK_ENCODER
}

impl RenditionCounters {
    pub(crate) fn made_here(&self) -> bool {
        made_here(&self.encoder)
    }
}

/// A copy of `buf` (sharing its memory) with its timestamps in running time, the one clock
/// every branch shares: encoders shift theirs (x264enc starts at 1000 hours, with a segment
/// that says so), so raw buffer timestamps of video and audio do not compare.
fn running_time(pad: &gst::Pad, buf: &gst::Buffer) -> Option<gst::Buffer> {
    let ev = pad.sticky_event::<gst::event::Segment>(0)?;
    let segment = ev.segment().downcast_ref::<gst::ClockTime>()?.clone();
    let mut out = buf.copy();
    let b = out.make_mut();
    b.set_pts(buf.pts().and_then(|t| segment.to_running_time(t)));
    b.set_dts(buf.dts().and_then(|t| segment.to_running_time(t)));
    Some(out)
}

/// A built, not yet started pipeline.
pub struct StreamPipeline {
    pub pipeline: gst::Pipeline,
    /// Present for RTMP sources: FLV bytes are pushed here.
    pub appsrc: Option<gst_app::AppSrc>,
    pub counters: Arc<Counters>,
}

/// A pushed stream's input: FLV bytes from the RTMP ingest server, or RTP from a WHIP
/// publisher; with whether the publisher sends audio.
pub enum Input {
    None,
    Flv {
        audio: bool,
    },
    /// A WHIP publisher, whose offer says whether it sends audio.
    Whip {
        audio: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("GStreamer element {0} is not installed")]
    MissingElement(String),
    #[error("{0}")]
    Source(String),
    #[error("cannot link {0}")]
    Link(String),
}

pub(crate) fn make(factory: &str, name: &str) -> Result<gst::Element, BuildError> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| BuildError::MissingElement(factory.to_string()))
}

/// Whether `r` may be scaled from `parent`'s scaled frames rather than from the source (the
/// ladder's cascade): `parent` is larger, and its frames come at the source's rate or at the
/// very rate `r` asks for (a parent with another forced rate would pass that rate on).
pub(crate) fn can_scale_from(parent: &ResolvedRendition, r: &ResolvedRendition) -> bool {
    parent.height > r.height
        && parent.width >= r.width
        && (parent.spec.fps.is_none() || (r.spec.fps.is_some() && parent.fps == r.fps))
}

/// `videoscale ! [videorate] ! videoconvert ! caps`: raw frames at the rendition's size (and
/// rate, when it sets one) in the encoder's input `format`.
pub(crate) fn scale_chain(
    r: &ResolvedRendition,
    format: &str,
    n: &str,
) -> Result<Vec<gst::Element>, BuildError> {
    let mut raw_caps = gst::Caps::builder("video/x-raw")
        .field("format", format)
        .field("width", r.width as i32)
        .field("height", r.height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1));
    let mut chain = vec![make("videoscale", &format!("{n}-scale"))?];
    if r.spec.fps.is_some() {
        chain.push(make("videorate", &format!("{n}-rate"))?);
        raw_caps = raw_caps.field("framerate", gst::Fraction::new(r.fps.0, r.fps.1));
    }
    chain.push(make("videoconvert", &format!("{n}-convert"))?);
    let filter = make("capsfilter", &format!("{n}-raw-caps"))?;
    filter.set_property("caps", raw_caps.build());
    chain.push(filter);
    Ok(chain)
}

/// `encoder ! [profile caps] ! h264parse` on the given encoder element, and the raw format
/// that encoder takes. The last element is the parser.
pub(crate) fn encode_chain(
    encoder: &str,
    r: &ResolvedRendition,
    x264_preset: &str,
    x264_tune: &str,
    n: &str,
) -> Result<(Vec<gst::Element>, &'static str), BuildError> {
    let (mut chain, format) = encoder::encoder_chain(encoder, r, x264_preset, x264_tune, n)
        .map_err(BuildError::Source)?;
    if EncoderKind::from_element(encoder) == Some(EncoderKind::X264) {
        let profile = make("capsfilter", &format!("{n}-profile"))?;
        profile.set_property(
            "caps",
            gst::Caps::builder("video/x-h264")
                .field("profile", r.spec.profile.caps_name())
                .build(),
        );
        chain.push(profile);
    }
    chain.push(make("h264parse", &format!("{n}-parse"))?);
    Ok((chain, format))
}

fn link(chain: &[&gst::Element]) -> Result<(), BuildError> {
    gst::Element::link_many(chain.iter().copied()).map_err(|e| {
        let names: Vec<String> = chain.iter().map(|e| e.name().to_string()).collect();
        BuildError::Link(format!("{}: {e}", names.join(" → ")))
    })
}

/// Reports a failure from a streaming-thread callback on the pipeline's bus, where the
/// supervisor sees it like any other element error.
fn post_error(pipeline: &gst::Pipeline, msg: &str) {
    let _ = pipeline.post_message(
        gst::message::Error::builder(gst::CoreError::Negotiation, msg)
            .src(pipeline)
            .build(),
    );
}

/// Frames a raw-video queue of a live source holds before it drops the oldest.
const RAW_QUEUE_FRAMES: u32 = 6;

/// Frames it holds, blocking, for a file, which is read as fast as the encoders go: with room
/// for half a second a branch whose encoder briefly falls behind does not stall its siblings
/// at once, which kept both cores busier with fewer thread wake-ups (4–7 % less CPU for a
/// 1080p ladder, about 20 MB more memory while a file is transcoded).
const FILE_RAW_QUEUE_FRAMES: u32 = 16;

/// Shared state of the branch builder, captured by pad callbacks.
struct Builder {
    pipeline: gst::glib::WeakRef<gst::Pipeline>,
    spec: StreamSpec,
    ctx: BuildContext,
    counters: Arc<Counters>,
    live: bool,
}

impl Builder {
    fn pipeline(&self) -> Option<gst::Pipeline> {
        self.pipeline.upgrade()
    }
}

/// Builds the pipeline for `spec`. Sources whose caps are only known once media flows get
/// their branches added later, from the streaming thread.
pub fn build(
    stream_id: &str,
    spec: &StreamSpec,
    ctx: &BuildContext,
    input: Input,
) -> Result<StreamPipeline, BuildError> {
    let pipeline = gst::Pipeline::with_name(&format!("stream-{stream_id}"));
    let counters = Arc::new(Counters::default());
    if let Ok(mut p) = counters.pipeline.lock() {
        *p = Some(pipeline.downgrade());
    }
    let live = !matches!(spec.source, SourceSpec::Uri { .. });
    let b = Arc::new(Builder {
        pipeline: pipeline.downgrade(),
        spec: spec.clone(),
        ctx: ctx.clone(),
        counters: counters.clone(),
        live,
    });

    let appsrc = source::attach(&b, &pipeline, spec, input)?;

    Ok(StreamPipeline {
        pipeline,
        appsrc,
        counters,
    })
}

fn add_linked(pipeline: &gst::Pipeline, chain: &[&gst::Element]) -> Result<(), BuildError> {
    pipeline
        .add_many(chain.iter().copied())
        .map_err(|e| BuildError::Link(e.to_string()))?;
    link(chain)?;
    for e in chain {
        e.sync_state_with_parent()
            .map_err(|_| BuildError::Link(format!("{} cannot start", e.name())))?;
    }
    Ok(())
}

fn unique(pipeline: &gst::Pipeline, base: &str) -> String {
    let mut i = 0;
    loop {
        let name = if i == 0 {
            base.to_string()
        } else {
            format!("{base}{i}")
        };
        if pipeline.by_name(&name).is_none() {
            return name;
        }
        i += 1;
    }
}

/// Sinks a pad the node does not use (audio, data) so it does not stall the demuxer.
fn discard(pipeline: &gst::Pipeline, pad: &gst::Pad, what: &str) -> Result<(), BuildError> {
    let sink = make("fakesink", &unique(pipeline, &format!("discard-{what}")))?;
    sink.set_property("sync", false);
    sink.set_property("async", false);
    add_linked(pipeline, &[&sink])?;
    let sinkpad = sink
        .static_pad("sink")
        .ok_or_else(|| BuildError::Link("fakesink has no sink pad".into()))?;
    pad.link(&sinkpad)
        .map_err(|e| BuildError::Link(format!("discard: {e:?}")))?;
    Ok(())
}

/// Lets through at most one buffer per `interval` of their timestamps, calling `kept` with
/// each one let through; drops buffers without a timestamp. Not `videorate drop-only`: fed
/// frames without durations (a variable frame rate, as WebRTC publishers send) it fails an
/// assertion that aborts the process.
fn thin_by_time<F>(pad: &gst::Pad, interval: gst::ClockTime, kept: F)
where
    F: Fn(gst::ClockTime) + Send + Sync + 'static,
{
    let last = Mutex::new(None::<gst::ClockTime>);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(pts) = info.buffer().and_then(|b| b.pts()) else {
            return gst::PadProbeReturn::Drop;
        };
        let Ok(mut last) = last.lock() else {
            return gst::PadProbeReturn::Drop;
        };
        match *last {
            Some(t) if pts >= t && pts - t < interval => gst::PadProbeReturn::Drop,
            _ => {
                *last = Some(pts);
                kept(pts);
                gst::PadProbeReturn::Ok
            }
        }
    });
}

/// Calls `f` once, with the first caps that carry a picture size.
fn on_first_caps<F>(pad: &gst::Pad, f: F)
where
    F: Fn(&gst::CapsRef) + Send + Sync + 'static,
{
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(ev) = info.event()
            && let gst::EventView::Caps(c) = ev.view()
        {
            let caps = c.caps();
            if caps
                .structure(0)
                .is_some_and(|s| s.get::<i32>("width").is_ok())
            {
                f(caps);
                return gst::PadProbeReturn::Remove;
            }
        }
        gst::PadProbeReturn::Ok
    });
}

fn caps_geometry(caps: &gst::CapsRef) -> (u32, u32, (i32, i32)) {
    let s = caps.structure(0);
    let w = s.and_then(|s| s.get::<i32>("width").ok()).unwrap_or(0);
    let h = s.and_then(|s| s.get::<i32>("height").ok()).unwrap_or(0);
    let fps = s
        .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
        .map(|f| (f.numer(), f.denom()))
        .unwrap_or((0, 1));
    (w.max(0) as u32, h.max(0) as u32, fps)
}

fn fps_f64(fps: (i32, i32)) -> f64 {
    if fps.1 > 0 {
        f64::from(fps.0) / f64::from(fps.1)
    } else {
        0.0
    }
}

fn set_source(b: &Builder, w: u32, h: u32, fps: (i32, i32), codec: &str) {
    if let Ok(mut s) = b.counters.source.lock() {
        *s = Some(SourceInfo {
            width: w,
            height: h,
            fps: fps_f64(fps),
            codec: codec.to_string(),
        });
    }
}

fn resolve(
    b: &Builder,
    w: u32,
    h: u32,
    fps: (i32, i32),
    h264: bool,
) -> (Vec<ResolvedRendition>, Vec<(String, String)>) {
    let h264 = h264 && !b.ctx.private();
    let (resolved, skipped) =
        spec::resolve_ladder(&b.spec.ladder, w, h, fps, h264, b.ctx.segment_seconds);
    if let Ok(mut s) = b.counters.skipped.lock() {
        s.clone_from(&skipped);
    }
    if let Ok(mut top) = b.counters.top_rendition.lock() {
        *top = resolved
            .iter()
            .max_by_key(|r| (r.height, r.passthrough))
            .map(|r| r.spec.name.clone());
    }
    (resolved, skipped)
}

/// A queue between the tee and a branch. On live sources it drops the oldest frames when the
/// branch falls behind, so one slow encoder never stalls the source or the other renditions;
/// the drops are counted.
fn live_queue(
    b: &Builder,
    pipeline: &gst::Pipeline,
    name: &str,
    compressed: bool,
) -> Result<gst::Element, BuildError> {
    let q = make("queue", &unique(pipeline, name))?;
    q.set_property("max-size-bytes", 0u32);
    // Raw-frame queues hold a few frames (a 1080p frame is 3 MB; a second of them per branch
    // would cost more memory than the rest of the node); the compressed one holds a second.
    if compressed {
        q.set_property("max-size-buffers", 0u32);
        q.set_property("max-size-time", gst::ClockTime::SECOND.nseconds());
    } else {
        let frames = if b.live {
            RAW_QUEUE_FRAMES
        } else {
            FILE_RAW_QUEUE_FRAMES
        };
        q.set_property("max-size-buffers", frames);
        q.set_property("max-size-time", 0u64);
    }
    if b.live {
        q.set_property_from_str("leaky", "downstream");
        let counters = b.counters.clone();
        q.connect("overrun", false, move |_| {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            None
        });
    }
    Ok(q)
}
