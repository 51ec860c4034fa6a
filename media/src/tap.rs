//! Encoded buffers of a running stream handed to pipelines of their own: what restreaming
//! and recording are fed with.
//!
//! A pad probe on a rendition's parser (and on the audio tee) copies each buffer — by
//! reference, no re-encode — into a [`Tap`]'s bounded queue. The consumer runs its own
//! pipeline ([`Feed`]: `appsrc ! h264parse`, `appsrc ! aacparse`, into whatever muxer and
//! sink it wants), so a consumer that stalls or fails never holds the stream up: a full queue
//! drops the newest buffer (counted), and after a drop the tap waits for the next keyframe.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::{mpsc, watch};

/// Buffers queued for a consumer before the newest are dropped (about 4 s of a 30 fps
/// stream with its audio).
pub const QUEUED: usize = 256;

/// One encoded buffer, its timestamps in the stream's running time.
#[derive(Debug, Clone)]
pub enum Packet {
    Video(gst::Caps, gst::Buffer),
    Audio(gst::Caps, gst::Buffer),
}

impl Packet {
    pub fn size(&self) -> u64 {
        match self {
            Packet::Video(_, b) | Packet::Audio(_, b) => b.size() as u64,
        }
    }
}

/// The feeding side, held by the stream's pipeline: its probes copy buffers here.
#[derive(Debug)]
pub struct Tap {
    /// The rendition taken; empty: the largest one.
    pub rendition: String,
    tx: mpsc::Sender<Packet>,
    /// After a drop the consumer waits for a keyframe; so does the tap, not to queue what
    /// would be thrown away.
    resync: AtomicBool,
    /// The stream carries audio (known at build for RTMP, later for RTSP and files): each
    /// consumer waits for its caps before it starts.
    pub audio: AtomicBool,
    /// Takes the stream's audio as Opus (a WebRTC viewer) instead of AAC.
    pub opus: bool,
    pub dropped: AtomicU64,
}

impl Tap {
    /// A tap on `rendition` and the queue its consumer reads.
    pub fn new(rendition: String, audio: bool) -> (Arc<Tap>, mpsc::Receiver<Packet>) {
        Self::with_opus(rendition, audio, false)
    }

    /// A tap whose audio is the stream's Opus encode when `opus`.
    pub fn with_opus(
        rendition: String,
        audio: bool,
        opus: bool,
    ) -> (Arc<Tap>, mpsc::Receiver<Packet>) {
        let (tx, rx) = mpsc::channel(QUEUED);
        let tap = Tap {
            rendition,
            tx,
            resync: AtomicBool::new(true),
            audio: AtomicBool::new(audio),
            opus,
            dropped: AtomicU64::new(0),
        };
        (Arc::new(tap), rx)
    }

    /// Hands a buffer over without waiting; a full queue drops it.
    pub fn offer(&self, packet: Packet) {
        if let Packet::Video(_, b) = &packet
            && self.resync.load(Ordering::Relaxed)
        {
            if b.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                return;
            }
            self.resync.store(false, Ordering::Relaxed);
        }
        if self.tx.try_send(packet).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.resync.store(true, Ordering::Relaxed);
        }
    }

    /// Makes the tap wait for a keyframe again (the consumer threw buffers away).
    pub fn resync(&self) {
        self.resync.store(true, Ordering::Relaxed);
    }
}

/// What a consumer starts from: a keyframe with its caps, the audio caps when the stream has
/// audio, and what came in between.
pub struct Start {
    pub video_caps: gst::Caps,
    pub keyframe: gst::Buffer,
    pub audio_caps: Option<gst::Caps>,
    pub early: Vec<Packet>,
}

/// Waits for a keyframe and, when the stream has audio, up to 2 s more for the audio's caps.
/// `None`: the stream ended or `stop` was set.
pub async fn start(
    tap: &Tap,
    rx: &mut mpsc::Receiver<Packet>,
    stop: &mut watch::Receiver<bool>,
) -> Option<Start> {
    let (video_caps, keyframe) = loop {
        tokio::select! {
            p = rx.recv() => match p? {
                Packet::Video(caps, b) if !b.flags().contains(gst::BufferFlags::DELTA_UNIT) => break (caps, b),
                _ => {}
            },
            _ = stop.changed() => return None,
        }
    };
    let mut early = Vec::new();
    let mut audio_caps = None;
    if tap.audio.load(Ordering::Relaxed) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while audio_caps.is_none() && early.len() < QUEUED {
            tokio::select! {
                p = rx.recv() => {
                    let p = p?;
                    if let Packet::Audio(c, _) = &p {
                        audio_caps = Some(c.clone());
                    }
                    early.push(p);
                }
                _ = tokio::time::sleep_until(deadline) => break,
                _ = stop.changed() => return None,
            }
        }
    }
    Some(Start {
        video_caps,
        keyframe,
        audio_caps,
        early,
    })
}

/// A consumer's pipeline: `appsrc name=video ! h264parse` and, with audio, `appsrc
/// name=audio ! aacparse`, linked to pads of the consumer's own elements. Timestamps are
/// rebased so the first keyframe is at zero.
pub struct Feed {
    pub pipeline: gst::Pipeline,
    video: gst_app::AppSrc,
    audio: Option<gst_app::AppSrc>,
    base: gst::ClockTime,
}

/// Makes an element, or says which one is missing.
pub fn make(factory: &str, name: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| format!("GStreamer element {factory} is not installed"))
}

/// Links a parser's src pad to a new request pad of `sink` (a muxer's `video_%u`, …).
pub fn link_to_request_pad(
    parser: &gst::Element,
    sink: &gst::Element,
    template: &str,
) -> Result<(), String> {
    let sinkpad = sink
        .request_pad_simple(template)
        .ok_or_else(|| format!("{} has no {template} pad", sink.name()))?;
    parser
        .static_pad("src")
        .ok_or("the parser has no src pad")?
        .link(&sinkpad)
        .map(|_| ())
        .map_err(|e| format!("{template}: {e:?}"))
}

impl Feed {
    /// Builds the sources and parsers in `pipeline`, then links them with `link(parser,
    /// is_audio)`, which adds the consumer's elements and links the parser's src pad to them.
    pub fn build(
        pipeline: gst::Pipeline,
        start: &Start,
        mut link: impl FnMut(&gst::Pipeline, &gst::Element, bool) -> Result<(), String>,
    ) -> Result<Self, String> {
        let appsrc = |name: &str, caps: &gst::Caps| {
            let src = gst_app::AppSrc::builder()
                .name(name)
                .caps(caps)
                .is_live(true)
                .format(gst::Format::Time)
                .max_bytes(8 * 1024 * 1024)
                .block(false)
                .build();
            src.set_property_from_str("leaky-type", "downstream");
            src
        };
        let video = appsrc("video", &start.video_caps);
        let parse = make("h264parse", "video-parse")?;
        pipeline
            .add_many([video.upcast_ref(), &parse])
            .map_err(|e| e.to_string())?;
        video
            .link(&parse)
            .map_err(|e| format!("video → parse: {e}"))?;
        link(&pipeline, &parse, false)?;
        let audio = match &start.audio_caps {
            Some(caps) => {
                let src = appsrc("audio", caps);
                let parse = make("aacparse", "audio-parse")?;
                pipeline
                    .add_many([src.upcast_ref(), &parse])
                    .map_err(|e| e.to_string())?;
                src.link(&parse)
                    .map_err(|e| format!("audio → parse: {e}"))?;
                link(&pipeline, &parse, true)?;
                Some(src)
            }
            None => None,
        };
        let base = start
            .keyframe
            .dts()
            .or(start.keyframe.pts())
            .unwrap_or(gst::ClockTime::ZERO);
        Ok(Self {
            pipeline,
            video,
            audio,
            base,
        })
    }

    /// Where the first keyframe was in the stream's running time.
    pub fn base(&self) -> gst::ClockTime {
        self.base
    }

    fn rebase(&self, b: gst::Buffer) -> Option<gst::Buffer> {
        let mut b = b;
        let m = b.make_mut();
        if let Some(p) = m.pts() {
            m.set_pts(p.checked_sub(self.base)?);
        }
        if let Some(d) = m.dts() {
            m.set_dts(d.checked_sub(self.base));
        }
        Some(b)
    }

    /// Plays the pipeline and pushes what `start` holds.
    pub fn play(&self, start: Start) -> Result<(), String> {
        self.pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("cannot start: {e}"))?;
        self.push(Packet::Video(start.video_caps, start.keyframe))?;
        for p in start.early {
            self.push(p)?;
        }
        Ok(())
    }

    pub fn push(&self, p: Packet) -> Result<(), String> {
        match p {
            Packet::Video(caps, b) => {
                if self.video.caps().as_ref() != Some(&caps) {
                    self.video.set_caps(Some(&caps));
                }
                if let Some(b) = self.rebase(b) {
                    self.video
                        .push_buffer(b)
                        .map_err(|e| format!("the pipeline does not take video: {e:?}"))?;
                }
                Ok(())
            }
            Packet::Audio(_, b) => {
                // Audio from before the first keyframe has no place here.
                if let (Some(audio), Some(b)) = (&self.audio, self.rebase(b)) {
                    audio
                        .push_buffer(b)
                        .map_err(|e| format!("the pipeline does not take audio: {e:?}"))?;
                }
                Ok(())
            }
        }
    }

    /// Ends the input; the consumer finishes what it holds (a recorder closes its file).
    pub fn end(&self) {
        let _ = self.video.end_of_stream();
        if let Some(a) = &self.audio {
            let _ = a.end_of_stream();
        }
    }

    pub async fn stop(self) {
        let pipeline = self.pipeline;
        let _ = tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Null)).await;
    }
}
