//! Builds one stream's GStreamer pipeline: source → decode once → tee → N × (scale, encode)
//! → HLS, plus a snapshot tap.
//!
//! Every element is named `<role>` or `<rendition>-<role>` so bus messages say which part of
//! which rendition failed. The ladder is resolved when the source's caps are first known (a
//! live RTMP or RTSP source tells its size only once media flows), so the branches are added
//! from a caps probe on the source side of the tee.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::encoder::{self, EncoderKind};
use super::hls;
use super::spec::{self, H264Profile, ResolvedRendition, RtspTransport, SourceSpec, StreamSpec};

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

/// A built, not yet started pipeline.
pub struct StreamPipeline {
    pub pipeline: gst::Pipeline,
    /// Present for RTMP sources: FLV bytes are pushed here.
    pub appsrc: Option<gst_app::AppSrc>,
    pub counters: Arc<Counters>,
}

/// The RTMP source's input: FLV bytes pushed by the ingest server.
pub enum Input {
    None,
    Flv,
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
    let live = !matches!(spec.source, SourceSpec::Uri { .. });
    let b = Arc::new(Builder {
        pipeline: pipeline.downgrade(),
        spec: spec.clone(),
        ctx: ctx.clone(),
        counters: counters.clone(),
        live,
    });
    let mut appsrc = None;

    match (&spec.source, input) {
        (
            SourceSpec::Test {
                width,
                height,
                fps,
                pattern,
            },
            _,
        ) => {
            let src = gst::ElementFactory::make("videotestsrc")
                .name("source")
                .property("is-live", true)
                .build()
                .map_err(|_| BuildError::MissingElement("videotestsrc".into()))?;
            src.set_property_from_str("pattern", pattern.gst_nick());
            let caps = gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", *width as i32)
                .field("height", *height as i32)
                .field("framerate", gst::Fraction::new(*fps as i32, 1))
                .build();
            let filter = make("capsfilter", "source-caps")?;
            filter.set_property("caps", &caps);
            pipeline
                .add_many([&src, &filter])
                .map_err(|e| BuildError::Link(e.to_string()))?;
            link(&[&src, &filter])?;
            let mut last = filter;
            // A running clock makes a frozen preview obvious; optional (needs pango).
            if let Ok(clock) = make("clockoverlay", "source-clock") {
                clock.set_property_from_str("halignment", "right");
                clock.set_property_from_str("valignment", "bottom");
                pipeline
                    .add(&clock)
                    .map_err(|e| BuildError::Link(e.to_string()))?;
                link(&[&last, &clock])?;
                last = clock;
            }
            let pad = last
                .static_pad("src")
                .ok_or_else(|| BuildError::Link("test source has no src pad".into()))?;
            attach_raw(&b, &pipeline, &pad, "raw")?;
        }
        (
            SourceSpec::V4l2 {
                device,
                width,
                height,
                fps,
            },
            _,
        ) => {
            let info = lpe_drivers::camera::probe(Path::new(device))
                .map_err(|e| BuildError::Source(e.to_string()))?;
            let n =
                lpe_drivers::camera::negotiate(&info, *width, *height, *fps).ok_or_else(|| {
                    BuildError::Source(format!(
                        "camera {device} offers no H.264, MJPEG or YUYV format"
                    ))
                })?;
            let src = make("v4l2src", "source")?;
            src.set_property("device", device);
            let rate = gst::Fraction::new(n.fps_num as i32, n.fps_den.max(1) as i32);
            let caps_name = match n.format {
                lpe_drivers::camera::PixelFormat::H264 => "video/x-h264",
                lpe_drivers::camera::PixelFormat::Mjpeg => "image/jpeg",
                lpe_drivers::camera::PixelFormat::Yuyv => "video/x-raw",
            };
            let mut caps = gst::Caps::builder(caps_name)
                .field("width", n.width as i32)
                .field("height", n.height as i32)
                .field("framerate", rate);
            if n.format == lpe_drivers::camera::PixelFormat::Yuyv {
                caps = caps.field("format", "YUY2");
            }
            let filter = make("capsfilter", "source-caps")?;
            filter.set_property("caps", caps.build());
            pipeline
                .add_many([&src, &filter])
                .map_err(|e| BuildError::Link(e.to_string()))?;
            link(&[&src, &filter])?;
            let pad = filter
                .static_pad("src")
                .ok_or_else(|| BuildError::Link("camera has no src pad".into()))?;
            match n.format {
                lpe_drivers::camera::PixelFormat::H264 => attach_h264(&b, &pipeline, &pad)?,
                lpe_drivers::camera::PixelFormat::Mjpeg => {
                    let dec = make("jpegdec", "source-jpegdec")?;
                    pipeline
                        .add(&dec)
                        .map_err(|e| BuildError::Link(e.to_string()))?;
                    link(&[&filter, &dec])?;
                    let pad = dec
                        .static_pad("src")
                        .ok_or_else(|| BuildError::Link("jpegdec has no src pad".into()))?;
                    attach_raw(&b, &pipeline, &pad, "raw")?;
                }
                lpe_drivers::camera::PixelFormat::Yuyv => attach_raw(&b, &pipeline, &pad, "raw")?,
            }
        }
        (SourceSpec::Rtmp { .. }, Input::Flv) => {
            let caps = gst::Caps::builder("video/x-flv").build();
            let src = gst_app::AppSrc::builder()
                .name("source")
                .caps(&caps)
                .is_live(true)
                .format(gst::Format::Bytes)
                .max_bytes(16 * 1024 * 1024)
                .block(false)
                .build();
            let demux = make("flvdemux", "source-demux")?;
            pipeline
                .add_many([src.upcast_ref::<gst::Element>(), &demux])
                .map_err(|e| BuildError::Link(e.to_string()))?;
            link(&[src.upcast_ref(), &demux])?;
            let bb = b.clone();
            demux.connect_pad_added(move |_demux, pad| {
                let Some(pipeline) = bb.pipeline() else {
                    return;
                };
                let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
                let is_video = caps
                    .structure(0)
                    .is_some_and(|s| s.name().starts_with("video/"));
                let result = if is_video {
                    attach_h264(&bb, &pipeline, pad)
                } else {
                    discard(&pipeline, pad, "audio")
                };
                if let Err(e) = result {
                    post_error(&pipeline, &e.to_string());
                }
            });
            appsrc = Some(src);
        }
        (SourceSpec::Rtmp { .. }, Input::None) => {
            return Err(BuildError::Source("RTMP source without a publisher".into()));
        }
        (
            SourceSpec::Rtsp {
                url,
                username,
                password,
                transport,
                latency_ms,
            },
            _,
        ) => {
            let src = make("rtspsrc", "source")?;
            src.set_property("location", url);
            src.set_property("latency", *latency_ms);
            src.set_property_from_str(
                "protocols",
                match transport {
                    RtspTransport::Tcp => "tcp",
                    RtspTransport::Udp => "udp",
                },
            );
            // Give up on a server that never answers instead of waiting forever.
            src.set_property("tcp-timeout", 5_000_000u64);
            src.set_property("timeout", 5_000_000u64);
            src.set_property("retry", 2u32);
            if let Some(u) = username {
                src.set_property("user-id", u);
            }
            if let Some(p) = password {
                src.set_property("user-pw", p);
            }
            pipeline
                .add(&src)
                .map_err(|e| BuildError::Link(e.to_string()))?;
            let bb = b.clone();
            src.connect_pad_added(move |_src, pad| {
                let Some(pipeline) = bb.pipeline() else {
                    return;
                };
                let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
                let Some(s) = caps.structure(0) else { return };
                let media = s.get::<&str>("media").unwrap_or("");
                let encoding = s.get::<&str>("encoding-name").unwrap_or("");
                let result = if media != "video" {
                    discard(&pipeline, pad, "rtp")
                } else if encoding.eq_ignore_ascii_case("H264") {
                    depay_h264(&bb, &pipeline, pad)
                } else {
                    decode_any(&bb, &pipeline, pad, "rtp")
                };
                if let Err(e) = result {
                    post_error(&pipeline, &e.to_string());
                }
            });
        }
        (SourceSpec::Uri { uri }, _) => {
            let uri = if uri.starts_with('/') {
                gst::glib::filename_to_uri(uri, None)
                    .map_err(|e| BuildError::Source(format!("{uri}: {e}")))?
                    .to_string()
            } else {
                uri.clone()
            };
            let src = make("urisourcebin", "source")?;
            src.set_property("uri", &uri);
            let parse = make("parsebin", "source-parse")?;
            pipeline
                .add_many([&src, &parse])
                .map_err(|e| BuildError::Link(e.to_string()))?;
            let parse_weak = parse.downgrade();
            src.connect_pad_added(move |_src, pad| {
                if let Some(parse) = parse_weak.upgrade()
                    && let Some(sink) = parse.static_pad("sink")
                    && !sink.is_linked()
                {
                    let _ = pad.link(&sink);
                }
            });
            let bb = b.clone();
            parse.connect_pad_added(move |_p, pad| {
                let Some(pipeline) = bb.pipeline() else {
                    return;
                };
                let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
                let name = caps
                    .structure(0)
                    .map(|s| s.name().to_string())
                    .unwrap_or_default();
                let result = if name == "video/x-h264" {
                    attach_h264(&bb, &pipeline, pad)
                } else if name.starts_with("video/") || name.starts_with("image/") {
                    decode_any(&bb, &pipeline, pad, "file")
                } else {
                    discard(&pipeline, pad, "other")
                };
                if let Err(e) = result {
                    post_error(&pipeline, &e.to_string());
                }
            });
        }
    }

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

fn depay_h264(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
) -> Result<(), BuildError> {
    let depay = make("rtph264depay", &unique(pipeline, "source-depay"))?;
    add_linked(pipeline, &[&depay])?;
    let sink = depay
        .static_pad("sink")
        .ok_or_else(|| BuildError::Link("depay has no sink pad".into()))?;
    pad.link(&sink)
        .map_err(|e| BuildError::Link(format!("rtsp → depay: {e:?}")))?;
    let src = depay
        .static_pad("src")
        .ok_or_else(|| BuildError::Link("depay has no src pad".into()))?;
    attach_h264(b, pipeline, &src)
}

/// Decodes anything that is not H.264 (H.265, MJPEG, VP8…); every rendition is then encoded.
fn decode_any(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    what: &str,
) -> Result<(), BuildError> {
    let dec = make(
        "decodebin",
        &unique(pipeline, &format!("source-decode-{what}")),
    )?;
    add_linked(pipeline, &[&dec])?;
    let bb = b.clone();
    dec.connect_pad_added(move |_d, pad| {
        let Some(pipeline) = bb.pipeline() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let raw = caps.structure(0).is_some_and(|s| s.name() == "video/x-raw");
        let result = if raw {
            attach_raw(&bb, &pipeline, pad, "raw")
        } else {
            discard(&pipeline, pad, "decoded")
        };
        if let Err(e) = result {
            post_error(&pipeline, &e.to_string());
        }
    });
    let sink = dec
        .static_pad("sink")
        .ok_or_else(|| BuildError::Link("decodebin has no sink pad".into()))?;
    pad.link(&sink)
        .map_err(|e| BuildError::Link(format!("→ decodebin: {e:?}")))?;
    Ok(())
}

/// Source-side H.264: parsed to Annex B access units and teed to the passthrough rendition
/// and to the decoder feeding the scaled renditions.
fn attach_h264(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
) -> Result<(), BuildError> {
    if pipeline.by_name("h264-tee").is_some() {
        // A second video track: only the first one is used.
        return discard(pipeline, pad, "video");
    }
    let parse = make("h264parse", "h264-parse")?;
    parse.set_property("config-interval", -1i32);
    let filter = make("capsfilter", "h264-caps")?;
    filter.set_property(
        "caps",
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .build(),
    );
    let tee = make("tee", "h264-tee")?;
    add_linked(pipeline, &[&parse, &filter, &tee])?;
    let sink = parse
        .static_pad("sink")
        .ok_or_else(|| BuildError::Link("h264parse has no sink pad".into()))?;
    pad.link(&sink)
        .map_err(|e| BuildError::Link(format!("source → h264parse: {e:?}")))?;

    let out = filter
        .static_pad("src")
        .ok_or_else(|| BuildError::Link("capsfilter has no src pad".into()))?;
    let counters = b.counters.clone();
    out.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buf) = info.buffer() {
            counters.in_frames.fetch_add(1, Ordering::Relaxed);
            counters
                .in_bytes
                .fetch_add(buf.size() as u64, Ordering::Relaxed);
        }
        gst::PadProbeReturn::Ok
    });
    let bb = b.clone();
    on_first_caps(&out, move |caps| {
        let Some(pipeline) = bb.pipeline() else {
            return;
        };
        if let Err(e) = setup_h264_branches(&bb, &pipeline, caps) {
            post_error(&pipeline, &e.to_string());
        }
    });
    Ok(())
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

fn setup_h264_branches(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    caps: &gst::CapsRef,
) -> Result<(), BuildError> {
    let (w, h, fps) = caps_geometry(caps);
    set_source(b, w, h, fps, "h264");
    let (resolved, skipped) = resolve(b, w, h, fps, true);
    let tee = pipeline
        .by_name("h264-tee")
        .ok_or_else(|| BuildError::Link("h264 tee is gone".into()))?;
    for r in resolved.iter().filter(|r| r.passthrough) {
        passthrough_branch(b, pipeline, &tee, r)?;
    }
    let encoded: Vec<ResolvedRendition> = resolved
        .iter()
        .filter(|r| !r.passthrough)
        .cloned()
        .collect();
    // Decode once for the encoded renditions and the snapshot.
    let queue = live_queue(b, pipeline, "decode-queue", true)?;
    let dec = make("avdec_h264", "decode")?;
    add_linked(pipeline, &[&queue, &dec])?;
    tee.link(&queue)
        .map_err(|e| BuildError::Link(format!("h264 tee → decoder: {e}")))?;
    let raw_tee = make("tee", "raw-tee")?;
    add_linked(pipeline, &[&raw_tee])?;
    link(&[&dec, &raw_tee])?;
    let mut all = resolved.clone();
    encode_all(b, pipeline, &raw_tee, &encoded)?;
    snapshot_branch(b, pipeline, &raw_tee)?;
    all.sort_by_key(|r| std::cmp::Reverse(r.height));
    write_master(b, &all, &skipped);
    Ok(())
}

/// Raw video from a camera, a test pattern or a decoder: every rendition is encoded.
fn attach_raw(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    name: &str,
) -> Result<(), BuildError> {
    if pipeline.by_name("raw-tee").is_some() {
        return discard(pipeline, pad, "video");
    }
    let tee = make("tee", &format!("{name}-tee"))?;
    add_linked(pipeline, &[&tee])?;
    let sink = tee
        .static_pad("sink")
        .ok_or_else(|| BuildError::Link("tee has no sink pad".into()))?;
    let counters = b.counters.clone();
    sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if info.buffer().is_some() {
            counters.in_frames.fetch_add(1, Ordering::Relaxed);
        }
        gst::PadProbeReturn::Ok
    });
    let bb = b.clone();
    on_first_caps(&sink, move |caps| {
        let Some(pipeline) = bb.pipeline() else {
            return;
        };
        if let Err(e) = setup_raw_branches(&bb, &pipeline, caps) {
            post_error(&pipeline, &e.to_string());
        }
    });
    pad.link(&sink)
        .map_err(|e| BuildError::Link(format!("source → tee: {e:?}")))?;
    Ok(())
}

fn setup_raw_branches(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    caps: &gst::CapsRef,
) -> Result<(), BuildError> {
    let (w, h, fps) = caps_geometry(caps);
    let codec = caps
        .structure(0)
        .and_then(|s| s.get::<&str>("format").ok())
        .unwrap_or("raw")
        .to_ascii_lowercase();
    set_source(b, w, h, fps, &format!("raw/{codec}"));
    let (resolved, skipped) = resolve(b, w, h, fps, false);
    let tee = pipeline
        .by_name("raw-tee")
        .ok_or_else(|| BuildError::Link("raw tee is gone".into()))?;
    encode_all(b, pipeline, &tee, &resolved)?;
    snapshot_branch(b, pipeline, &tee)?;
    write_master(b, &resolved, &skipped);
    Ok(())
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
    let (resolved, skipped) =
        spec::resolve_ladder(&b.spec.ladder, w, h, fps, h264, b.ctx.segment_seconds);
    if let Ok(mut s) = b.counters.skipped.lock() {
        s.clone_from(&skipped);
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

fn rendition_counters(b: &Builder, r: &ResolvedRendition, encoder: &str) -> Arc<RenditionCounters> {
    let c = Arc::new(RenditionCounters {
        name: r.spec.name.clone(),
        width: r.width,
        height: r.height,
        encoder: encoder.to_string(),
        passthrough: r.passthrough,
        frames: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    if let Ok(mut v) = b.counters.renditions.lock() {
        v.push(c.clone());
    }
    c
}

fn count_output(pad: &gst::Pad, c: Arc<RenditionCounters>) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buf) = info.buffer() {
            c.frames.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(buf.size() as u64, Ordering::Relaxed);
        }
        gst::PadProbeReturn::Ok
    });
}

fn passthrough_branch(
    b: &Builder,
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    r: &ResolvedRendition,
) -> Result<(), BuildError> {
    let n = &r.spec.name;
    let queue = live_queue(b, pipeline, &format!("{n}-queue"), true)?;
    let sink = hls_sink(b, pipeline, r)?;
    add_linked(pipeline, &[&queue])?;
    tee.link(&queue)
        .map_err(|e| BuildError::Link(format!("h264 tee → {n}: {e}")))?;
    let qsrc = queue
        .static_pad("src")
        .ok_or_else(|| BuildError::Link("queue has no src pad".into()))?;
    count_output(&qsrc, rendition_counters(b, r, "passthrough"));
    link_to_hls(&queue, &sink, n)
}

fn hls_sink(
    b: &Builder,
    pipeline: &gst::Pipeline,
    r: &ResolvedRendition,
) -> Result<gst::Element, BuildError> {
    let n = &r.spec.name;
    let dir = b.ctx.hls_dir.join(n);
    std::fs::create_dir_all(&dir)
        .map_err(|e| BuildError::Source(format!("cannot create {}: {e}", dir.display())))?;
    hls::remove_stale_segments(&dir);
    let ring = hls::ring_size(
        &b.spec.ladder,
        b.ctx.segment_seconds,
        b.ctx.max_segments,
        b.ctx.max_bytes,
    );
    let sink = make("hlssink2", &format!("{n}-hls"))?;
    sink.set_property(
        "location",
        dir.join(format!("seg-{}-%05d.ts", b.ctx.run_id))
            .display()
            .to_string(),
    );
    sink.set_property(
        "playlist-location",
        dir.join("index.m3u8").display().to_string(),
    );
    sink.set_property("target-duration", b.ctx.segment_seconds);
    sink.set_property("max-files", ring);
    sink.set_property("playlist-length", ring.saturating_sub(1).max(2));
    // The sink joins a pipeline that is already playing. Without this its preroll would make
    // the pipeline lose its state and pause the live source, while an element that holds a
    // frame back (videorate) waits for the next one: a deadlock.
    sink.set_property("async-handling", true);
    // Encoders place a keyframe every segment by their GOP; asking for extra keyframes at
    // wall-clock boundaries would split segments off-phase with the GOP.
    sink.set_property("send-keyframe-requests", false);
    pipeline
        .add(&sink)
        .map_err(|e| BuildError::Link(e.to_string()))?;
    sink.sync_state_with_parent()
        .map_err(|_| BuildError::Link(format!("{n}-hls cannot start")))?;
    Ok(sink)
}

fn link_to_hls(from: &gst::Element, sink: &gst::Element, n: &str) -> Result<(), BuildError> {
    let src = from
        .static_pad("src")
        .ok_or_else(|| BuildError::Link(format!("{n}: no src pad")))?;
    let video = sink
        .request_pad_simple("video")
        .ok_or_else(|| BuildError::Link(format!("{n}: hlssink2 has no video pad")))?;
    src.link(&video)
        .map_err(|e| BuildError::Link(format!("{n} → hlssink2: {e:?}")))?;
    Ok(())
}

/// Adds the encoded renditions, largest first. Each one is scaled from the smallest already
/// scaled rendition that is larger than it (a cascade: 1080p → 720p → 480p, 360p) rather than
/// from the source, which saves most of the scaling work of the lower rungs.
fn encode_all(
    b: &Builder,
    pipeline: &gst::Pipeline,
    source_tee: &gst::Element,
    renditions: &[ResolvedRendition],
) -> Result<(), BuildError> {
    let mut order: Vec<&ResolvedRendition> = renditions.iter().filter(|r| !r.passthrough).collect();
    order.sort_by_key(|r| std::cmp::Reverse(r.height));
    let mut scaled: Vec<(&ResolvedRendition, gst::Element)> = Vec::new();
    for r in order {
        // A parent with a forced frame rate would pass its rate on; only full-rate ones qualify.
        let parent = scaled
            .iter()
            .rev()
            .find(|(p, _)| p.spec.fps.is_none() && p.height > r.height && p.width >= r.width)
            .map(|(_, tee)| tee.clone())
            .unwrap_or_else(|| source_tee.clone());
        let tee = encode_branch(b, pipeline, &parent, r)?;
        scaled.push((r, tee));
    }
    Ok(())
}

/// One encoded rendition: `queue ! videoscale ! [videorate] ! videoconvert ! caps ! tee`
/// (the scaled frames, also fed to smaller renditions) then `queue ! encoder ! h264parse !
/// hlssink2`. Returns the tee of scaled frames.
fn encode_branch(
    b: &Builder,
    pipeline: &gst::Pipeline,
    upstream: &gst::Element,
    r: &ResolvedRendition,
) -> Result<gst::Element, BuildError> {
    let n = &r.spec.name;
    let (enc_chain, format) =
        encoder::encoder_chain(&b.ctx.encoder, r, &b.ctx.x264_preset, &b.ctx.x264_tune, n)
            .map_err(BuildError::Source)?;
    let queue = live_queue(b, pipeline, &format!("{n}-queue"), false)?;
    let scale = make("videoscale", &format!("{n}-scale"))?;
    let convert = make("videoconvert", &format!("{n}-convert"))?;
    let mut raw_caps = gst::Caps::builder("video/x-raw")
        .field("format", format)
        .field("width", r.width as i32)
        .field("height", r.height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1));
    let mut scaling: Vec<gst::Element> = vec![queue, scale];
    if r.spec.fps.is_some() {
        scaling.push(make("videorate", &format!("{n}-rate"))?);
        raw_caps = raw_caps.field("framerate", gst::Fraction::new(r.fps.0, r.fps.1));
    }
    scaling.push(convert);
    let filter = make("capsfilter", &format!("{n}-raw-caps"))?;
    filter.set_property("caps", raw_caps.build());
    scaling.push(filter);
    let scaled_tee = make("tee", &format!("{n}-scaled"))?;
    scaling.push(scaled_tee.clone());

    let mut encoding: Vec<gst::Element> =
        vec![live_queue(b, pipeline, &format!("{n}-enc-queue"), false)?];
    encoding.extend(enc_chain);
    if EncoderKind::from_element(&b.ctx.encoder) == Some(EncoderKind::X264) {
        let profile = make("capsfilter", &format!("{n}-profile"))?;
        profile.set_property(
            "caps",
            gst::Caps::builder("video/x-h264")
                .field("profile", profile_caps(r.spec.profile))
                .build(),
        );
        encoding.push(profile);
    }
    let parse = make("h264parse", &format!("{n}-parse"))?;
    encoding.push(parse.clone());

    let sink = hls_sink(b, pipeline, r)?;
    add_linked(pipeline, &encoding.iter().collect::<Vec<_>>())?;
    link_to_hls(&parse, &sink, n)?;
    let psrc = parse
        .static_pad("src")
        .ok_or_else(|| BuildError::Link("h264parse has no src pad".into()))?;
    count_output(&psrc, rendition_counters(b, r, &b.ctx.encoder));
    add_linked(pipeline, &scaling.iter().collect::<Vec<_>>())?;
    scaled_tee
        .link(&encoding[0])
        .map_err(|e| BuildError::Link(format!("{n} scaled → encoder: {e}")))?;
    upstream
        .link(&scaling[0])
        .map_err(|e| BuildError::Link(format!("→ {n}: {e}")))?;
    Ok(scaled_tee)
}

fn profile_caps(p: H264Profile) -> &'static str {
    p.caps_name()
}

/// At most one JPEG a second, scaled to 640 wide, kept as the appsink's last sample.
fn snapshot_branch(
    b: &Builder,
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
) -> Result<(), BuildError> {
    let queue = make("queue", "snapshot-queue")?;
    queue.set_property_from_str("leaky", "downstream");
    queue.set_property("max-size-buffers", 1u32);
    let rate = make("videorate", "snapshot-rate")?;
    rate.set_property("drop-only", true);
    rate.set_property("max-rate", 1i32);
    let scale = make("videoscale", "snapshot-scale")?;
    let convert = make("videoconvert", "snapshot-convert")?;
    let filter = make("capsfilter", "snapshot-caps")?;
    filter.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", 640i32)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build(),
    );
    let enc = make("jpegenc", "snapshot-enc")?;
    enc.set_property("quality", 80i32);
    // A fakesink keeping its last sample, not an appsink: an appsink nobody pulls from holds
    // back its end-of-stream, and the pipeline would never report that a file ended.
    let sink = make("fakesink", "snapshot-sink")?;
    sink.set_property("sync", false);
    sink.set_property("async", false);
    sink.set_property("enable-last-sample", true);
    add_linked(
        pipeline,
        &[&queue, &rate, &scale, &convert, &filter, &enc, &sink],
    )?;
    tee.link(&queue)
        .map_err(|e| BuildError::Link(format!("tee → snapshot: {e}")))?;
    if let Ok(mut s) = b.counters.snapshot.lock() {
        *s = Some(sink);
    }
    Ok(())
}

fn write_master(b: &Builder, renditions: &[ResolvedRendition], skipped: &[(String, String)]) {
    for (name, why) in skipped {
        tracing::info!(rendition = %name, "rendition skipped: {why}");
    }
    if let Err(e) = hls::write_master(&b.ctx.hls_dir, renditions) {
        tracing::warn!("cannot write master playlist: {e}");
    }
}
