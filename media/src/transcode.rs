//! One segment in, its renditions out: what an orchestrator does with a gateway's MPEG-TS
//! segment. The segment is demuxed and decoded once; each profile is scaled, encoded on the
//! node's encoder and muxed to MPEG-TS in memory. The segment's AAC audio is copied into every
//! rendition untouched, as go-livepeer's transcoder copies it.
//!
//! The pixel count of a rendition is what a go-livepeer gateway recomputes by decoding it
//! (frames × width × height): frames are counted at the encoder's output, which is exactly what
//! the muxer writes. A segment that is not H.264 in MPEG-TS, or that the decoder refuses, is an
//! error for that segment alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::pipeline::{BuildError, make};
use lpe_core::spec::{H264Profile, RenditionSpec, ResolvedRendition};

/// Largest rendition kept in memory; more is an encoder gone wrong (go-livepeer's own cap on a
/// whole segment is 300 MB; a rendition of a 2 s segment is a few megabytes).
const MAX_RENDITION_BYTES: usize = 64 * 1024 * 1024;
/// Keyframe interval of a profile without one: x264's default, which go-livepeer leaves in
/// place when a profile's GOP is 0. A segment shorter than that is one GOP (its first picture
/// is its only keyframe), and no time goes into keyframes a gateway did not ask for.
const DEFAULT_GOP_FRAMES: u32 = 250;
/// Largest frame a profile may ask for (8K).
pub const MAX_DIMENSION: u32 = 7680;

/// One output a gateway asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputProfile {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub bitrate_bps: u32,
    /// Frames per second as num/den; `None` keeps the source's rate.
    pub fps: Option<(u32, u32)>,
    /// Keyframe interval; `None`: x264's default (250 frames), as go-livepeer leaves it.
    pub gop: Option<Duration>,
    pub profile: H264Profile,
}

/// A segment's renditions, and the pixels decoded from its input (frames × width × height,
/// which a remote transcoder reports beside the renditions').
#[derive(Debug, Clone)]
pub struct Transcoded {
    pub renditions: Vec<Rendition>,
    pub decoded_pixels: u64,
}

/// One encoded rendition.
#[derive(Debug, Clone)]
pub struct Rendition {
    /// MPEG-TS bytes.
    pub data: Vec<u8>,
    pub frames: u64,
    /// frames × width × height: what a gateway verifies by decoding.
    pub pixels: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("{0}")]
    Profile(String),
    #[error("the segment has no H.264 video")]
    NoVideo,
    #[error("{0}")]
    Pipeline(String),
    #[error("the segment could not be decoded: {0}")]
    Input(String),
    #[error("transcoding took longer than {0} s")]
    Timeout(u64),
}

/// Why a rendition's reported pixels were not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PixelCheckError {
    #[error("PixelMismatch: {reported} reported, {decoded} decoded")]
    Mismatch { reported: u64, decoded: u64 },
    #[error("a rendition does not decode: {0}")]
    Undecodable(TranscodeError),
}

impl From<BuildError> for TranscodeError {
    fn from(e: BuildError) -> Self {
        TranscodeError::Pipeline(e.to_string())
    }
}

/// How segments are transcoded: the encoder (the probe's best working one) and x264's speed.
#[derive(Debug, Clone)]
pub struct SegmentTranscoder {
    pub encoder: String,
    pub x264_preset: String,
    pub timeout: Duration,
}

impl OutputProfile {
    fn check(&self) -> Result<(), TranscodeError> {
        let bad = |why: String| Err(TranscodeError::Profile(format!("{}: {why}", self.name)));
        if self.width < 2 || self.height < 2 {
            return bad(format!("{}x{} is too small", self.width, self.height));
        }
        if self.width > MAX_DIMENSION || self.height > MAX_DIMENSION {
            return bad(format!("{}x{} is too large", self.width, self.height));
        }
        if let Some((n, d)) = self.fps
            && (n == 0 || d == 0 || n / d > 240)
        {
            return bad(format!("frame rate {n}/{d}"));
        }
        Ok(())
    }

    /// The rendition this profile asks for.
    fn resolve(&self) -> ResolvedRendition {
        let rate = self.fps.unwrap_or((30, 1));
        let gop_frames = match self.gop {
            Some(g) => ((g.as_millis() as u64 * u64::from(rate.0)) / (1000 * u64::from(rate.1)))
                .clamp(1, 600) as u32,
            None => DEFAULT_GOP_FRAMES,
        };
        let (n, d) = rate;
        ResolvedRendition {
            spec: RenditionSpec {
                name: self.name.clone(),
                width: Some(self.width),
                height: Some(self.height),
                bitrate_kbps: (self.bitrate_bps / 1000).max(1),
                fps: self.fps.map(|(n, d)| n / d.max(1)),
                gop_frames: Some(gop_frames),
                profile: self.profile,
            },
            width: self.width,
            height: self.height,
            fps: (n as i32, d as i32),
            passthrough: false,
            gop_frames,
        }
    }
}

struct Output {
    mux: gst::Element,
    data: Arc<Mutex<Vec<u8>>>,
    frames: Arc<AtomicU64>,
    overflow: Arc<std::sync::atomic::AtomicBool>,
    area: u64,
}

impl SegmentTranscoder {
    /// Transcodes `segment` (MPEG-TS) to every profile, in profile order. Blocking: run it on a
    /// blocking thread.
    pub fn transcode(
        &self,
        segment: &[u8],
        profiles: &[OutputProfile],
    ) -> Result<Transcoded, TranscodeError> {
        self.run(segment, profiles, true)
    }

    /// `segment` through `appsrc ! tsdemux ! h264parse ! <decoder or AU caps> ! tee`, then
    /// one branch per profile. Without `decode` the pictures are counted as access units
    /// (one per frame) with the size their sequence header gives, and nothing is decoded.
    fn run(
        &self,
        segment: &[u8],
        profiles: &[OutputProfile],
        decode: bool,
    ) -> Result<Transcoded, TranscodeError> {
        for p in profiles {
            p.check()?;
        }
        let pipeline = gst::Pipeline::with_name("segment");
        let src = make("appsrc", "segment-src")?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| TranscodeError::Pipeline("appsrc is not an AppSrc".into()))?;
        src.set_caps(Some(
            &gst::Caps::builder("video/mpegts")
                .field("systemstream", true)
                .build(),
        ));
        src.set_format(gst::Format::Bytes);
        let demux = make("tsdemux", "segment-demux")?;
        let parse = make("h264parse", "segment-parse")?;
        let decode = if decode {
            make("avdec_h264", "segment-decode")?
        } else {
            let au = make("capsfilter", "segment-access-units")?;
            au.set_property(
                "caps",
                gst::Caps::builder("video/x-h264")
                    .field("alignment", "au")
                    .build(),
            );
            au
        };
        let tee = make("tee", "segment-raw")?;
        let decoded = Arc::new(AtomicU64::new(0));
        if let Some(pad) = tee.static_pad("sink") {
            let decoded = decoded.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
                let area = pad
                    .current_caps()
                    .and_then(|c| {
                        let s = c.structure(0)?;
                        Some(
                            s.get::<i32>("width").ok()? as u64
                                * s.get::<i32>("height").ok()? as u64,
                        )
                    })
                    .unwrap_or(0);
                decoded.fetch_add(area, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        }
        let elements = [
            src.upcast_ref::<gst::Element>(),
            &demux,
            &parse,
            &decode,
            &tee,
        ];
        pipeline
            .add_many(elements)
            .map_err(|e| TranscodeError::Pipeline(e.to_string()))?;
        src.link(&demux)
            .map_err(|e| TranscodeError::Pipeline(format!("appsrc → tsdemux: {e}")))?;
        gst::Element::link_many([&parse, &decode, &tee])
            .map_err(|e| TranscodeError::Pipeline(format!("h264parse → decoder: {e}")))?;
        if profiles.is_empty() {
            // Only read (or decoded), to count its pixels.
            let sink = make("fakesink", "segment-decoded")?;
            sink.set_property("sync", false);
            pipeline
                .add(&sink)
                .map_err(|e| TranscodeError::Pipeline(e.to_string()))?;
            tee.link(&sink)
                .map_err(|e| TranscodeError::Pipeline(format!("tee → fakesink: {e}")))?;
        }
        // Largest first, each scaled from the smallest larger one that qualifies (the live
        // ladder's cascade): scaling from 1080p three times was most of the gap to ffmpeg.
        let resolved: Vec<ResolvedRendition> =
            profiles.iter().map(OutputProfile::resolve).collect();
        let mut order: Vec<usize> = (0..resolved.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(resolved[i].height));
        let mut scaled: Vec<(usize, gst::Element)> = Vec::with_capacity(order.len());
        let mut outputs: Vec<Option<Output>> = (0..resolved.len()).map(|_| None).collect();
        for i in order {
            let parent = scaled
                .iter()
                .rev()
                .find(|(j, _)| crate::pipeline::can_scale_from(&resolved[*j], &resolved[i]))
                .map_or_else(|| tee.clone(), |(_, t)| t.clone());
            let (output, scaled_tee) = self.branch(&pipeline, &parent, i, &resolved[i])?;
            outputs[i] = Some(output);
            scaled.push((i, scaled_tee));
        }
        let outputs: Vec<Output> = outputs.into_iter().flatten().collect();
        // Counting or decoding alone has no muxers: nothing to scan the input for.
        let audio = if !outputs.is_empty() && has_aac(segment) {
            let muxers: Vec<&gst::Element> = outputs.iter().map(|o| &o.mux).collect();
            Some(audio_branch(&pipeline, &muxers)?)
        } else {
            None
        };
        // The demuxer starts running time at the segment's first picture; the muxers add
        // their constant 3600 s. Shifting running time by the input's first timestamp keeps
        // the input's timeline in every rendition (less that constant when the input already
        // carries it, as MPEG-TS from GStreamer does), so consecutive segments' renditions
        // play on without a jump and line up with the source, as go-livepeer's do.
        let first_pts = (!outputs.is_empty())
            .then(|| first_video_pts(segment))
            .flatten();
        if let (Some(pts), Some(pad)) = (first_pts, parse.static_pad("sink")) {
            let ns = pts.saturating_mul(100_000) / 9;
            let muxer_base = 3600 * gst::ClockTime::SECOND.nseconds();
            let offset = if ns >= muxer_base {
                ns - muxer_base
            } else {
                ns
            };
            let offset = i64::try_from(offset).unwrap_or(0);
            pad.set_offset(offset);
            if let Some(pad) = audio.as_ref().and_then(|a| a.static_pad("sink")) {
                pad.set_offset(offset);
            }
        }
        let linked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (parse, linked) = (parse.downgrade(), linked.clone());
            let weak_audio = audio.as_ref().map(|a| a.downgrade());
            let audio = weak_audio.clone();
            demux.connect_pad_added(move |_, pad| {
                let caps = pad.current_caps();
                let name = caps
                    .as_ref()
                    .and_then(|c| c.structure(0).map(|s| s.name().to_string()));
                let target = match name.as_deref() {
                    Some("video/x-h264") if !linked.load(Ordering::SeqCst) => parse.upgrade(),
                    Some("audio/mpeg") if is_aac(caps.as_ref()) => {
                        audio.as_ref().and_then(|a| a.upgrade())
                    }
                    _ => None,
                };
                let Some(sink) = target.and_then(|t| t.static_pad("sink")) else {
                    return;
                };
                if sink.is_linked() || pad.link(&sink).is_err() {
                    return;
                }
                if name.as_deref() == Some("video/x-h264") {
                    linked.store(true, Ordering::SeqCst);
                }
            });
            // Audio the segment announced but the demuxer did not give as AAC ends here, so
            // that the muxers do not wait for it.
            let audio = weak_audio;
            demux.connect_no_more_pads(move |_| {
                if let Some(sink) = audio
                    .as_ref()
                    .and_then(|a| a.upgrade())
                    .and_then(|a| a.static_pad("sink"))
                    && !sink.is_linked()
                {
                    sink.send_event(gst::event::Eos::new());
                }
            });
        }
        // A segment without H.264 ends at the demuxer: nothing downstream would see its end.
        let ended_without_video = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Some(pad) = demux.static_pad("sink") {
            let (ended, linked) = (ended_without_video.clone(), linked.clone());
            pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
                if let Some(gst::PadProbeData::Event(e)) = &info.data
                    && e.type_() == gst::EventType::Eos
                    && !linked.load(Ordering::SeqCst)
                {
                    ended.store(true, Ordering::SeqCst);
                }
                gst::PadProbeReturn::Ok
            });
        }

        let bus = pipeline
            .bus()
            .ok_or_else(|| TranscodeError::Pipeline("pipeline without a bus".into()))?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| TranscodeError::Pipeline("the segment pipeline cannot start".into()))?;
        let pushed = src
            .push_buffer(gst::Buffer::from_slice(segment.to_vec()))
            .and_then(|_| src.end_of_stream());
        let result = match pushed {
            Err(e) => Err(TranscodeError::Input(format!("{e:?}"))),
            Ok(_) => wait(&bus, self.timeout, &ended_without_video),
        };
        let _ = pipeline.set_state(gst::State::Null);
        result?;
        if !linked.load(Ordering::SeqCst) {
            return Err(TranscodeError::NoVideo);
        }
        let renditions = outputs
            .into_iter()
            .map(|o| {
                if o.overflow.load(Ordering::SeqCst) {
                    return Err(TranscodeError::Pipeline(format!(
                        "a rendition exceeded {MAX_RENDITION_BYTES} bytes"
                    )));
                }
                let frames = o.frames.load(Ordering::SeqCst);
                let data =
                    std::mem::take(&mut *o.data.lock().map_err(|_| {
                        TranscodeError::Pipeline("rendition buffer poisoned".into())
                    })?);
                Ok(Rendition {
                    data,
                    frames,
                    pixels: frames.saturating_mul(o.area),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Transcoded {
            renditions,
            decoded_pixels: decoded.load(Ordering::SeqCst),
        })
    }

    /// The pixels a decoder sees in `segment` (decoded frames × width × height): what a
    /// go-livepeer gateway checks against an orchestrator's reported count. Blocking.
    pub fn decoded_pixels(&self, segment: &[u8]) -> Result<u64, TranscodeError> {
        self.run(segment, &[], true).map(|t| t.decoded_pixels)
    }

    /// The pixels `segment`'s H.264 stream holds (access units × the size its sequence header
    /// gives), read without decoding: a small fraction of decoding's cost. It equals
    /// [`Self::decoded_pixels`] for a stream that decodes; a stream whose pictures do not
    /// decode is caught only by decoding. Blocking.
    pub fn counted_pixels(&self, segment: &[u8]) -> Result<u64, TranscodeError> {
        self.run(segment, &[], false).map(|t| t.decoded_pixels)
    }

    /// Checks a rendition's `reported` pixels as a go-livepeer gateway does (frames × size).
    /// Its pictures are counted from the bitstream, and decoded too when `decode` is asked or
    /// when the count disagrees: an orchestrator is never blamed on a count alone. Returns the
    /// verified pixels. Blocking.
    pub fn verify_pixels(
        &self,
        rendition: &[u8],
        reported: u64,
        decode: bool,
    ) -> Result<u64, PixelCheckError> {
        if !decode && self.counted_pixels(rendition).ok() == Some(reported) {
            return Ok(reported);
        }
        let decoded = self
            .decoded_pixels(rendition)
            .map_err(PixelCheckError::Undecodable)?;
        if decoded != reported {
            return Err(PixelCheckError::Mismatch { reported, decoded });
        }
        Ok(decoded)
    }

    /// `queue ! videoscale ! [videorate] ! videoconvert ! caps ! tee` (the scaled frames, also
    /// fed to smaller renditions; returned) then `queue ! encoder ! h264parse ! mpegtsmux !
    /// appsink`, frames counted at the encoder's output (the segment's audio joins the muxer
    /// later, from [`audio_branch`]).
    fn branch(
        &self,
        pipeline: &gst::Pipeline,
        upstream: &gst::Element,
        i: usize,
        r: &ResolvedRendition,
    ) -> Result<(Output, gst::Element), TranscodeError> {
        let n = format!("out{i}");
        let (encoded, format) =
            crate::pipeline::encode_chain(&self.encoder, r, &self.x264_preset, "", &n)?;
        let mut scaling = vec![make("queue", &format!("{n}-queue"))?];
        scaling.extend(crate::pipeline::scale_chain(r, format, &n)?);
        let scaled_tee = make("tee", &format!("{n}-scaled"))?;
        scaling.push(scaled_tee.clone());
        // Frames are counted at the encoder's output: one buffer per encoded frame.
        let enc = encoded
            .iter()
            .find(|e| e.name().ends_with("-enc"))
            .cloned()
            .ok_or_else(|| TranscodeError::Pipeline("no encoder in the chain".into()))?;
        let mut elements = vec![make("queue", &format!("{n}-enc-queue"))?];
        elements.extend(encoded);
        let mux = make("mpegtsmux", &format!("{n}-mux"))?;
        elements.push(mux.clone());
        let sink = make("appsink", &format!("{n}-sink"))?
            .downcast::<gst_app::AppSink>()
            .map_err(|_| TranscodeError::Pipeline("appsink is not an AppSink".into()))?;
        sink.set_sync(false);
        elements.push(sink.clone().upcast());
        for chain in [&scaling, &elements] {
            pipeline
                .add_many(chain.iter())
                .map_err(|e| TranscodeError::Pipeline(e.to_string()))?;
            gst::Element::link_many(chain.iter())
                .map_err(|e| TranscodeError::Pipeline(format!("{n}: {e}")))?;
        }
        scaled_tee
            .link(&elements[0])
            .map_err(|e| TranscodeError::Pipeline(format!("{n} scaled → encoder: {e}")))?;
        upstream
            .link(&scaling[0])
            .map_err(|e| TranscodeError::Pipeline(format!("→ {n}: {e}")))?;

        let frames = Arc::new(AtomicU64::new(0));
        if let Some(pad) = enc.static_pad("src") {
            let frames = frames.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                frames.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        }
        let data = Arc::new(Mutex::new(Vec::new()));
        let overflow = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (data, overflow) = (data.clone(), overflow.clone());
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |s| {
                        let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        let buf = sample.buffer().ok_or(gst::FlowError::Error)?;
                        let map = buf.map_readable().map_err(|_| gst::FlowError::Error)?;
                        let mut out = data.lock().map_err(|_| gst::FlowError::Error)?;
                        if out.len() + map.len() > MAX_RENDITION_BYTES {
                            overflow.store(true, Ordering::SeqCst);
                            return Err(gst::FlowError::Error);
                        }
                        out.extend_from_slice(&map);
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        let output = Output {
            mux,
            data,
            frames,
            overflow,
            area: u64::from(r.width) * u64::from(r.height),
        };
        Ok((output, scaled_tee))
    }
}

/// `aacparse ! tee` with a `queue` to each rendition's muxer: the segment's AAC, copied. The
/// queues are unbounded in time: the demuxer feeds audio and video from one thread, and an
/// encoder holding frames back (x264's lookahead) must not leave it blocked on a full audio
/// queue. The segment's own size bounds them.
fn audio_branch(
    pipeline: &gst::Pipeline,
    muxers: &[&gst::Element],
) -> Result<gst::Element, TranscodeError> {
    let parse = make("aacparse", "segment-audio")?;
    let tee = make("tee", "segment-audio-tee")?;
    pipeline
        .add_many([&parse, &tee])
        .map_err(|e| TranscodeError::Pipeline(e.to_string()))?;
    parse
        .link(&tee)
        .map_err(|e| TranscodeError::Pipeline(format!("aacparse → tee: {e}")))?;
    for (i, mux) in muxers.iter().enumerate() {
        let queue = make("queue", &format!("out{i}-audio-queue"))?;
        queue.set_property("max-size-buffers", 0u32);
        queue.set_property("max-size-bytes", 0u32);
        queue.set_property("max-size-time", 0u64);
        pipeline
            .add(&queue)
            .map_err(|e| TranscodeError::Pipeline(e.to_string()))?;
        let sink = mux
            .request_pad_simple("sink_%d")
            .ok_or_else(|| TranscodeError::Pipeline("mpegtsmux gave no audio pad".into()))?;
        tee.link(&queue)
            .map_err(|e| TranscodeError::Pipeline(format!("audio tee → out{i}: {e}")))?;
        queue
            .static_pad("src")
            .ok_or_else(|| TranscodeError::Pipeline("queue has no src pad".into()))?
            .link(&sink)
            .map_err(|e| TranscodeError::Pipeline(format!("audio → out{i}: {e:?}")))?;
    }
    Ok(parse)
}

fn is_aac(caps: Option<&gst::Caps>) -> bool {
    caps.and_then(|c| c.structure(0).map(|s| s.get::<i32>("mpegversion").ok()))
        .flatten()
        .is_some_and(|v| v == 2 || v == 4)
}

/// Whether an MPEG-TS segment carries AAC: a PES packet of an audio stream id (0xC0–0xDF)
/// starts in it with an ADTS frame (sync word, layer 0; MPEG-1 audio has another layer).
pub fn has_aac(ts: &[u8]) -> bool {
    ts.chunks_exact(188).filter_map(pes_payload).any(|pes| {
        if pes.len() < 9 || pes[..3] != [0, 0, 1] || pes[3] & 0xE0 != 0xC0 {
            return false;
        }
        let header = 9 + usize::from(pes[8]);
        pes.get(header..header + 2)
            .is_some_and(|adts| adts[0] == 0xFF && adts[1] & 0xF6 == 0xF0)
    })
}

/// The payload of a transport packet that starts a PES packet.
fn pes_payload(pkt: &[u8]) -> Option<&[u8]> {
    if pkt[0] != 0x47 || pkt[1] & 0x40 == 0 {
        return None; // not synchronised, or no PES starts here
    }
    let payload = match (pkt[3] >> 4) & 0x3 {
        0x1 => 4,
        0x3 => 5 + usize::from(pkt[4]),
        _ => return None,
    };
    pkt.get(payload..)
}

/// The earliest presentation time (90 kHz) of the video PES packets in an MPEG-TS segment:
/// the first picture shown. `None` when there is none (the demuxer will say why).
pub fn first_video_pts(ts: &[u8]) -> Option<u64> {
    let mut first: Option<u64> = None;
    for pes in ts.chunks_exact(188).filter_map(pes_payload) {
        // A video PES (stream id 0xE0–0xEF) whose header carries a PTS.
        if pes.len() < 14 || pes[..3] != [0, 0, 1] || pes[3] & 0xF0 != 0xE0 || pes[7] & 0x80 == 0 {
            continue;
        }
        let p = &pes[9..14];
        let pts = (u64::from(p[0] >> 1) & 0x7) << 30
            | u64::from(p[1]) << 22
            | u64::from(p[2] >> 1) << 15
            | u64::from(p[3]) << 7
            | u64::from(p[4] >> 1);
        first = Some(first.map_or(pts, |f: u64| f.min(pts)));
    }
    first
}

/// Waits for end of stream; an error names the element that failed.
fn wait(
    bus: &gst::Bus,
    timeout: Duration,
    ended_without_video: &std::sync::atomic::AtomicBool,
) -> Result<(), TranscodeError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if ended_without_video.load(Ordering::SeqCst) {
            return Err(TranscodeError::NoVideo);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(TranscodeError::Timeout(timeout.as_secs()));
        }
        let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(left.min(Duration::from_millis(20)).as_millis() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => return Ok(()),
            gst::MessageView::Error(e) => {
                let from = e
                    .src()
                    .map(|s| s.name().to_string())
                    .unwrap_or_else(|| "pipeline".into());
                return Err(if from.starts_with("segment") {
                    TranscodeError::Input(format!("{from}: {}", e.error()))
                } else {
                    TranscodeError::Pipeline(format!("{from}: {}", e.error()))
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipeline from `description` and its appsink named `out`.
    fn with_sink(description: &str) -> (gst::Pipeline, gst_app::AppSink) {
        gst::init().expect("gstreamer");
        let pipeline = gst::parse::launch(description)
            .expect("pipeline")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        let sink = pipeline
            .by_name("out")
            .expect("out")
            .downcast::<gst_app::AppSink>()
            .expect("appsink");
        (pipeline, sink)
    }

    /// A real 2 s H.264 MPEG-TS segment from a test pattern.
    pub(crate) fn segment(width: u32, height: u32, frames: u32) -> Vec<u8> {
        let (pipeline, sink) = with_sink(&format!(
            "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width={width},height={height},framerate=30/1 \
             ! x264enc speed-preset=ultrafast key-int-max=30 ! h264parse ! mpegtsmux ! appsink name=out sync=false"
        ));
        pipeline.set_state(gst::State::Playing).expect("play");
        let mut out = Vec::new();
        while let Ok(s) = sink.pull_sample() {
            out.extend_from_slice(&s.buffer().expect("buffer").map_readable().expect("map"));
        }
        pipeline.set_state(gst::State::Null).expect("stop");
        out
    }

    /// `appsrc name=src ! tsdemux ! h264parse ! <rest>` playing `ts`, already at its end.
    fn demuxed(ts: &[u8], rest: &str) -> (gst::Pipeline, gst_app::AppSink) {
        let (pipeline, sink) = with_sink(&format!(
            "appsrc name=src caps=video/mpegts,systemstream=true ! tsdemux ! h264parse ! {rest}"
        ));
        let src = pipeline
            .by_name("src")
            .expect("src")
            .downcast::<gst_app::AppSrc>()
            .expect("appsrc");
        pipeline.set_state(gst::State::Playing).expect("play");
        src.push_buffer(gst::Buffer::from_slice(ts.to_vec()))
            .expect("push");
        src.end_of_stream().expect("eos");
        (pipeline, sink)
    }

    /// Decodes an MPEG-TS rendition: (frames, width, height), as a gateway's check does.
    fn decode(ts: &[u8]) -> (u64, u32, u32) {
        let (pipeline, sink) = demuxed(ts, "avdec_h264 ! appsink name=out sync=false");
        let (mut frames, mut w, mut h) = (0, 0, 0);
        while let Ok(s) = sink.pull_sample() {
            frames += 1;
            let st = s.caps().and_then(|c| c.structure(0).map(|s| s.to_owned()));
            if let Some(st) = st {
                w = st.get::<i32>("width").unwrap_or(0) as u32;
                h = st.get::<i32>("height").unwrap_or(0) as u32;
            }
        }
        pipeline.set_state(gst::State::Null).expect("stop");
        (frames, w, h)
    }

    /// Pictures and keyframes of an MPEG-TS rendition's H.264 stream, read without decoding.
    fn keyframes(ts: &[u8]) -> (u64, u64) {
        let (pipeline, sink) = demuxed(
            ts,
            "video/x-h264,alignment=au ! appsink name=out sync=false",
        );
        let (mut pictures, mut keys) = (0, 0);
        while let Ok(s) = sink.pull_sample() {
            pictures += 1;
            if s.buffer()
                .is_some_and(|b| !b.flags().contains(gst::BufferFlags::DELTA_UNIT))
            {
                keys += 1;
            }
        }
        pipeline.set_state(gst::State::Null).expect("stop");
        (pictures, keys)
    }

    fn transcoder() -> SegmentTranscoder {
        gst::init().expect("gstreamer");
        SegmentTranscoder {
            encoder: "x264enc".into(),
            x264_preset: "ultrafast".into(),
            timeout: Duration::from_secs(30),
        }
    }

    fn profile(name: &str, width: u32, height: u32, fps: Option<(u32, u32)>) -> OutputProfile {
        OutputProfile {
            name: name.into(),
            width,
            height,
            bitrate_bps: 600_000,
            fps,
            gop: None,
            profile: H264Profile::Main,
        }
    }

    #[test]
    fn a_profile_without_a_gop_keys_only_the_segments_first_picture() {
        // go-livepeer leaves the encoder's keyframe interval alone when a profile's GOP is 0;
        // one set in milliseconds is kept.
        let input = segment(320, 180, 60);
        let every_second = OutputProfile {
            gop: Some(Duration::from_secs(1)),
            ..profile("P144p30fps", 256, 144, None)
        };
        let done = transcoder()
            .transcode(
                &input,
                &[profile("P144p30fps", 256, 144, None), every_second],
            )
            .expect("transcode");
        let counts: Vec<(u64, u64)> = done.renditions.iter().map(|r| keyframes(&r.data)).collect();
        assert_eq!(counts, vec![(60, 1), (60, 2)]);
    }

    #[test]
    fn reported_pixels_are_what_decoding_the_rendition_finds() {
        let input = segment(640, 360, 60);
        let done = transcoder()
            .transcode(
                &input,
                &[
                    profile("P144p15fps", 256, 144, Some((15, 1))),
                    profile("P240p30fps16x9", 426, 240, Some((30, 1))),
                    // Scaled from the 240p rendition's frames (same rate), not the source.
                    profile("P180p30fps16x9", 320, 180, Some((30, 1))),
                ],
            )
            .expect("transcodes");
        assert_eq!(done.decoded_pixels, 60 * 640 * 360);
        let out = done.renditions;
        assert_eq!(out.len(), 3);
        for (r, (w, h)) in out.iter().zip([(256, 144), (426, 240), (320, 180)]) {
            let (frames, dw, dh) = decode(&r.data);
            assert_eq!((dw, dh), (w, h));
            assert_eq!(r.frames, frames);
            assert_eq!(r.pixels, frames * u64::from(w) * u64::from(h));
            assert_eq!(
                transcoder().decoded_pixels(&r.data).expect("decodes"),
                r.pixels
            );
            assert_eq!(
                transcoder().counted_pixels(&r.data).expect("reads"),
                r.pixels
            );
            assert!(frames > 0);
        }
        assert_eq!((out[1].frames, out[2].frames), (60, 60));
        assert!(
            out[0].frames >= 29 && out[0].frames <= 31,
            "{}",
            out[0].frames
        );
    }

    #[test]
    fn a_rung_is_scaled_from_a_larger_one_at_its_rate_or_the_sources() {
        use crate::pipeline::can_scale_from;
        let r = |w, h, fps| profile("r", w, h, fps).resolve();
        let (at30, at15) = (Some((30, 1)), Some((15, 1)));
        assert!(can_scale_from(&r(1280, 720, at30), &r(854, 480, at30)));
        assert!(can_scale_from(&r(1280, 720, None), &r(854, 480, at15)));
        assert!(!can_scale_from(&r(1280, 720, at15), &r(854, 480, at30)));
        assert!(!can_scale_from(&r(1280, 720, at30), &r(854, 480, None)));
        assert!(!can_scale_from(&r(854, 480, None), &r(1280, 720, None)));
        assert!(!can_scale_from(&r(640, 480, None), &r(854, 360, None)));
    }

    #[test]
    fn counting_access_units_finds_what_decoding_finds() {
        // ffmpeg's x264 with B-frames and AAC beside the video: pictures arrive out of order.
        let t = transcoder();
        let input = ffmpeg_segment(Some("aac"), None);
        let decoded = t.decoded_pixels(&input).expect("decodes");
        assert_eq!(decoded, 60 * 320 * 240);
        assert_eq!(t.counted_pixels(&input).expect("reads"), decoded);
        let audio_only = t.counted_pixels(&ffmpeg_audio_only());
        assert!(
            matches!(
                audio_only,
                Err(TranscodeError::NoVideo | TranscodeError::Input(_))
            ),
            "{audio_only:?}"
        );
    }

    #[test]
    fn reported_pixels_are_counted_or_decoded_and_an_inflated_claim_is_refused_either_way() {
        let t = transcoder();
        let rendition = segment(320, 240, 30);
        let honest = 30 * 320 * 240;
        for decode in [false, true] {
            assert_eq!(
                t.verify_pixels(&rendition, honest, decode).expect("honest"),
                honest
            );
            let inflated = t.verify_pixels(&rendition, honest + 320 * 240, decode);
            assert!(
                matches!(inflated, Err(PixelCheckError::Mismatch { decoded, .. }) if decoded == honest),
                "{inflated:?}"
            );
        }
        assert_eq!(t.counted_pixels(&rendition).expect("reads"), honest);
        assert!(matches!(
            t.verify_pixels(&[0x47; 188 * 4], 0, false),
            Err(PixelCheckError::Undecodable(_))
        ));
    }

    /// 2 s of AAC alone in MPEG-TS.
    fn ffmpeg_audio_only() -> Vec<u8> {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("audio.ts");
        let st = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-f", "lavfi", "-i"])
            .args(["sine=frequency=1000:sample_rate=48000", "-t", "2"])
            .args(["-c:a", "aac", "-f", "mpegts"])
            .arg(&f)
            .status()
            .expect("ffmpeg");
        assert!(st.success());
        std::fs::read(&f).expect("segment")
    }

    /// The earliest stream start of an MPEG-TS file, seconds (ffprobe's).
    fn start_time(ts: &[u8]) -> f64 {
        probe_streams(ts)
            .iter()
            .map(|s| s.3)
            .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn renditions_keep_the_inputs_timeline() {
        // GStreamer's muxer puts the stream at 3600 s: renditions start where the input does.
        let input = segment(320, 240, 30);
        let first = first_video_pts(&input).expect("a PTS");
        assert!((start_time(&input) - first as f64 / 90_000.0).abs() < 0.001);
        let done = transcoder()
            .transcode(&input, &[profile("a", 160, 120, Some((30, 1)))])
            .expect("transcodes");
        let out = &done.renditions[0].data;
        assert!(
            (start_time(out) - start_time(&input)).abs() < 0.05,
            "{} vs {}",
            start_time(out),
            start_time(&input)
        );
        // ffmpeg's segments start near zero: the renditions carry them 3600 s later, all of
        // them the same, so consecutive ones still follow each other.
        for offset in [10.0f64, 12.0] {
            let input = ffmpeg_segment(None, Some(offset));
            let done = transcoder()
                .transcode(&input, &[profile("a", 160, 120, Some((30, 1)))])
                .expect("transcodes");
            let shift = start_time(&done.renditions[0].data) - start_time(&input);
            assert!((shift - 3600.0).abs() < 0.05, "shifted by {shift}");
        }
    }

    /// A 2 s 320x240 MPEG-TS segment from ffmpeg, with a tone in `audio_codec` when given,
    /// its timestamps offset by `offset` seconds when given.
    fn ffmpeg_segment(audio_codec: Option<&str>, offset: Option<f64>) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("segment.ts");
        let mut ffmpeg = std::process::Command::new("ffmpeg");
        ffmpeg
            .args(["-loglevel", "error", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=320x240:rate=30");
        if let Some(codec) = audio_codec {
            ffmpeg
                .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"])
                .args(["-c:a", codec]);
        }
        if let Some(offset) = offset {
            ffmpeg.args(["-output_ts_offset", &offset.to_string()]);
        }
        let st = ffmpeg
            .args(["-t", "2", "-c:v", "libx264", "-g", "30", "-f", "mpegts"])
            .arg(&f)
            .status()
            .expect("ffmpeg");
        assert!(st.success());
        std::fs::read(&f).expect("segment")
    }

    /// `ffprobe`'s streams of an MPEG-TS file: (codec type, codec, duration, start time), in
    /// seconds.
    fn probe_streams(ts: &[u8]) -> Vec<(String, String, f64, f64)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("probe.ts");
        std::fs::write(&f, ts).expect("write");
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-show_entries"])
            .args(["stream=codec_type,codec_name,duration,start_time"])
            .args(["-of", "json"])
            .arg(&f)
            .output()
            .expect("ffprobe");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v["streams"]
            .as_array()
            .expect("streams")
            .iter()
            .map(|s| {
                (
                    s["codec_type"].as_str().unwrap_or_default().to_string(),
                    s["codec_name"].as_str().unwrap_or_default().to_string(),
                    seconds(&s["duration"]),
                    seconds(&s["start_time"]),
                )
            })
            .collect()
    }

    fn seconds(v: &serde_json::Value) -> f64 {
        v.as_str().and_then(|d| d.parse().ok()).unwrap_or(0.0)
    }

    /// Audio start less video start.
    fn av_offset(streams: &[(String, String, f64, f64)]) -> f64 {
        let start = |kind: &str| {
            streams
                .iter()
                .find(|s| s.0 == kind)
                .map(|s| s.3)
                .expect("stream")
        };
        start("audio") - start("video")
    }

    #[test]
    fn the_segments_aac_is_copied_into_every_rendition() {
        let input = ffmpeg_segment(Some("aac"), None);
        assert!(has_aac(&input));
        assert!(!has_aac(&segment(160, 120, 10)));
        let done = transcoder()
            .transcode(
                &input,
                &[
                    profile("a", 160, 120, Some((30, 1))),
                    profile("b", 96, 72, Some((15, 1))),
                ],
            )
            .expect("transcodes");
        let offset_in = av_offset(&probe_streams(&input));
        for r in &done.renditions {
            let streams = probe_streams(&r.data);
            // Shifted together: the audio keeps its place against the picture.
            let drift = (av_offset(&streams) - offset_in).abs();
            assert!(drift <= 0.04, "A/V moved by {drift} s: {streams:?}");
            let audio: Vec<_> = streams.iter().filter(|s| s.0 == "audio").collect();
            assert_eq!(audio.len(), 1, "{streams:?}");
            assert_eq!(audio[0].1, "aac", "{streams:?}");
            assert!((1.8..=2.2).contains(&audio[0].2), "{streams:?}");
            // The audio does not count as pixels.
            let (frames, w, h) = decode(&r.data);
            assert_eq!(r.pixels, frames * u64::from(w) * u64::from(h));
        }
        // Audio that is not AAC is left out, and the segment is still transcoded.
        let input = ffmpeg_segment(Some("mp2"), None);
        assert!(!has_aac(&input));
        let done = transcoder()
            .transcode(&input, &[profile("a", 160, 120, Some((30, 1)))])
            .expect("transcodes");
        let streams = probe_streams(&done.renditions[0].data);
        assert_eq!(streams.len(), 1, "{streams:?}");
        assert_eq!(streams[0].0, "video", "{streams:?}");
    }

    #[test]
    fn the_first_pts_and_the_audio_are_read_from_any_bytes_without_a_panic() {
        let seg = segment(160, 120, 10);
        assert!(first_video_pts(&seg).is_some());
        assert_eq!(first_video_pts(&[]), None);
        assert_eq!(first_video_pts(&[0x47; 188 * 3]), None);
        // Mutated and cut copies of a real segment (xorshift, fixed seed).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..5000 {
            let mut s = seg.clone();
            for _ in 0..8 {
                let r = next();
                let i = r as usize % s.len();
                s[i] = (r >> 40) as u8;
            }
            let cut = next() as usize % s.len();
            let _ = first_video_pts(&s);
            let _ = first_video_pts(&s[cut..]);
            let _ = has_aac(&s[cut..]);
        }
    }

    #[test]
    fn garbage_is_an_error_of_the_segment() {
        let t = transcoder();
        let err = t
            .transcode(&[0x47; 188 * 20], &[profile("a", 320, 240, None)])
            .expect_err("no video");
        assert!(
            matches!(err, TranscodeError::NoVideo | TranscodeError::Input(_)),
            "{err}"
        );
        let mut bad = segment(320, 240, 30);
        // Keep the container, ruin the video.
        for b in bad.iter_mut().skip(400).step_by(7) {
            *b ^= 0x5a;
        }
        // Either decoded around the damage or refused; never a hang or a panic.
        let _ = t.transcode(&bad, &[profile("a", 160, 120, None)]);
        let _ = t.counted_pixels(&bad);
        assert!(t.counted_pixels(&[]).is_err());
        assert!(t.counted_pixels(&[0x47; 188 * 20]).is_err());
        let err = t
            .transcode(&[], &[profile("a", 160, 120, None)])
            .expect_err("empty");
        assert!(
            matches!(err, TranscodeError::NoVideo | TranscodeError::Input(_)),
            "{err}"
        );
        let err = t
            .transcode(&bad, &[profile("huge", 10_000, 120, None)])
            .expect_err("too large");
        assert!(matches!(err, TranscodeError::Profile(_)), "{err}");
    }
}
