//! Restreaming: a stream sent on to RTMP(S) destinations (YouTube, Facebook, a CDN), each
//! from one of its renditions, with the stream's audio.
//!
//! Every destination runs in a pipeline of its own — `appsrc ! h264parse ! flvmux !
//! rtmp2sink`, with an audio `appsrc ! aacparse` beside it — fed by copies of the stream's
//! encoded buffers (a pad probe hands them over by reference, no re-encode). A destination
//! that refuses, drops or stalls therefore fails alone: it is retried with backoff (2 s
//! doubling to 60 s) while the stream and the other destinations go on. Buffers it cannot take
//! in time are dropped (counted), and after a drop it waits for the next keyframe. Each
//! connection starts at a keyframe with its timestamps from zero.
//!
//! The stream key is part of the URL handed to `rtmp2sink` and nowhere else: error texts are
//! scrubbed of it before they reach the status, the log or an event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use lpe_core::events::{EventBus, EventKind, now_ms};
use lpe_core::spec::RestreamTarget;

/// Buffers queued for a destination before the newest are dropped (about 4 s of a 30 fps
/// stream with its audio).
const QUEUED: usize = 256;
const FIRST_RETRY: Duration = Duration::from_secs(2);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// A connection that delivered for this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);

/// One encoded buffer on its way to a destination.
#[derive(Debug, Clone)]
pub enum Packet {
    Video(gst::Caps, gst::Buffer),
    Audio(gst::Caps, gst::Buffer),
}

/// Where a destination is: the status, API and UI show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestreamState {
    /// Connecting, or waiting for the rendition's next keyframe.
    Connecting,
    Live,
    /// Failed; tried again after `retry_in_s`.
    Retrying,
    Disabled,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RestreamStatus {
    pub name: String,
    pub state: RestreamState,
    /// The rendition sent.
    pub rendition: String,
    pub kbps: f64,
    /// Connections lost or refused since the stream started.
    pub errors: u64,
    /// Buffers dropped because the destination could not take them in time.
    pub dropped: u64,
    pub last_error: Option<String>,
    /// Since when it is live, milliseconds since the Unix epoch.
    pub live_since_ms: Option<u64>,
    pub retry_in_s: Option<u64>,
}

/// The feeding side of a destination, held by the stream's pipeline: its probes copy
/// buffers here.
#[derive(Debug)]
pub struct Tap {
    pub rendition: String,
    tx: mpsc::Sender<Packet>,
    /// After a drop the destination waits for a keyframe; so does the tap, not to queue what
    /// would be thrown away.
    resync: std::sync::atomic::AtomicBool,
    /// The stream carries audio (known at build for RTMP, later for RTSP and files): each
    /// connection waits for its caps before it starts.
    pub audio: std::sync::atomic::AtomicBool,
    pub dropped: AtomicU64,
}

impl Tap {
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
}

/// The full RTMP URL of a target (server and key).
fn url(t: &RestreamTarget) -> String {
    if t.key.is_empty() {
        t.server.clone()
    } else {
        format!("{}/{}", t.server.trim_end_matches('/'), t.key)
    }
}

/// `text` with the target's key replaced.
fn scrub(t: &RestreamTarget, text: &str) -> String {
    if t.key.is_empty() {
        text.to_string()
    } else {
        text.replace(&t.key, "<key>")
    }
}

/// A destination with its tap, ready to run.
pub struct Destination {
    pub target: RestreamTarget,
    pub rendition: String,
    pub tap: Arc<Tap>,
    rx: mpsc::Receiver<Packet>,
    pub status: Arc<Mutex<RestreamStatus>>,
}

impl Destination {
    pub fn new(target: RestreamTarget, rendition: String, audio: bool) -> Self {
        let (tx, rx) = mpsc::channel(QUEUED);
        let status = RestreamStatus {
            name: target.name.clone(),
            state: if target.enabled {
                RestreamState::Connecting
            } else {
                RestreamState::Disabled
            },
            rendition: rendition.clone(),
            kbps: 0.0,
            errors: 0,
            dropped: 0,
            last_error: None,
            live_since_ms: None,
            retry_in_s: None,
        };
        Self {
            tap: Arc::new(Tap {
                rendition: rendition.clone(),
                tx,
                resync: std::sync::atomic::AtomicBool::new(true),
                audio: std::sync::atomic::AtomicBool::new(audio),
                dropped: AtomicU64::new(0),
            }),
            target,
            rendition,
            rx,
            status: Arc::new(Mutex::new(status)),
        }
    }

    fn update(&self, f: impl FnOnce(&mut RestreamStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
            s.dropped = self.tap.dropped.load(Ordering::Relaxed);
        }
    }

    /// Sends to the destination until `stop`, reconnecting with backoff.
    pub async fn run(mut self, stream: String, events: EventBus, mut stop: watch::Receiver<bool>) {
        let mut wait = FIRST_RETRY;
        loop {
            self.update(|s| {
                s.state = RestreamState::Connecting;
                s.retry_in_s = None;
            });
            let started = Instant::now();
            let outcome = self.connection(&stream, &events, &mut stop).await;
            self.update(|s| {
                s.kbps = 0.0;
                s.live_since_ms = None;
            });
            let why = match outcome {
                Ok(()) => return,
                Err(why) => why,
            };
            if started.elapsed() >= STABLE {
                wait = FIRST_RETRY;
            }
            let why = scrub(&self.target, &why);
            tracing::warn!(stream = %stream, destination = %self.target.name, "restream failed: {why}");
            events.emit(
                Some(&stream),
                EventKind::RestreamFailed,
                format!(
                    "{}: {why}; retrying in {} s",
                    self.target.name,
                    wait.as_secs()
                ),
            );
            self.update(|s| {
                s.state = RestreamState::Retrying;
                s.errors += 1;
                s.last_error = Some(why);
                s.retry_in_s = Some(wait.as_secs());
            });
            // Buffers keep coming meanwhile: thrown away, so the next connection starts
            // fresh at a keyframe.
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    p = self.rx.recv() => if p.is_none() { return },
                    _ = stop.changed() => return,
                }
            }
            self.tap.resync.store(true, Ordering::Relaxed);
            wait = (wait * 2).min(MAX_RETRY);
        }
    }

    /// One connection: the pipeline built, fed until it fails (`Err`) or the stream ends
    /// (`Ok`).
    async fn connection(
        &mut self,
        stream: &str,
        events: &EventBus,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        // Wait for a keyframe before connecting: a destination is never sent a broken GOP.
        // With audio, its caps are needed too; what comes meanwhile is kept.
        let mut early: Vec<Packet> = Vec::new();
        let mut audio_caps = None;
        let first = loop {
            tokio::select! {
                p = self.rx.recv() => match p {
                    None => return Ok(()),
                    Some(Packet::Video(caps, b)) if !b.flags().contains(gst::BufferFlags::DELTA_UNIT) => break (caps, b),
                    Some(_) => {}
                },
                _ = stop.changed() => return Ok(()),
            }
        };
        if self.tap.audio.load(Ordering::Relaxed) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while audio_caps.is_none() && early.len() < QUEUED {
                tokio::select! {
                    p = self.rx.recv() => match p {
                        None => return Ok(()),
                        Some(p) => {
                            if let Packet::Audio(c, _) = &p {
                                audio_caps = Some(c.clone());
                            }
                            early.push(p);
                        }
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = stop.changed() => return Ok(()),
                }
            }
        }
        let sender = Sender::build(&self.target, &first.0, audio_caps.as_ref())?;
        let base = first
            .1
            .dts()
            .or(first.1.pts())
            .unwrap_or(gst::ClockTime::ZERO);
        let bus = sender.pipeline.bus().ok_or("no bus")?;
        let mut messages = bus.stream();
        use futures::StreamExt;
        let result = async {
            sender
                .pipeline
                .set_state(gst::State::Playing)
                .map_err(|e| format!("cannot start: {e}"))?;
            sender.push_video(&first.0, first.1, base)?;
            for p in early {
                sender.push(p, base)?;
            }
            let mut bytes = 0u64;
            let mut sampled = (Instant::now(), 0u64);
            let mut live = false;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    p = self.rx.recv() => match p {
                        None => return Ok(()),
                        Some(p) => {
                            bytes += p.size();
                            sender.push(p, base)?;
                        }
                    },
                    m = messages.next() => match m.as_ref().map(|m| m.view()) {
                        None => return Err("the pipeline's bus closed".to_string()),
                        Some(gst::MessageView::Error(e)) => {
                            return Err(e.error().to_string());
                        }
                        Some(gst::MessageView::Eos(_)) => return Err("the connection ended".to_string()),
                        _ => {}
                    },
                    _ = tick.tick() => {
                        let (at, before) = sampled;
                        let kbps = (bytes - before) as f64 * 8.0 / 1000.0 / at.elapsed().as_secs_f64().max(0.001);
                        sampled = (Instant::now(), bytes);
                        let connected = sender.pipeline.current_state() == gst::State::Playing && bytes > 0;
                        if connected && !live {
                            live = true;
                            events.emit(Some(stream), EventKind::RestreamLive, format!("{}: live", self.target.name));
                        }
                        self.update(|s| {
                            s.kbps = (kbps * 100.0).round() / 100.0;
                            if live && s.state != RestreamState::Live {
                                s.state = RestreamState::Live;
                                s.live_since_ms = Some(now_ms());
                            }
                        });
                    }
                    _ = stop.changed() => return Ok(()),
                }
            }
        }
        .await;
        sender.stop().await;
        result
    }
}

impl Packet {
    fn size(&self) -> u64 {
        match self {
            Packet::Video(_, b) | Packet::Audio(_, b) => b.size() as u64,
        }
    }
}

/// One connection's pipeline.
struct Sender {
    pipeline: gst::Pipeline,
    video: gst_app::AppSrc,
    audio: Option<gst_app::AppSrc>,
}

impl Sender {
    /// `video ! h264parse ! flvmux ! rtmp2sink`, and `audio ! aacparse ! flvmux` when the
    /// audio's caps are known.
    fn build(
        t: &RestreamTarget,
        video_caps: &gst::Caps,
        audio_caps: Option<&gst::Caps>,
    ) -> Result<Self, String> {
        let make = |f: &str, n: &str| {
            gst::ElementFactory::make(f)
                .name(n)
                .build()
                .map_err(|_| format!("GStreamer element {f} is not installed"))
        };
        let pipeline = gst::Pipeline::with_name("restream");
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
        let video = appsrc("video", video_caps);
        let parse = make("h264parse", "video-parse")?;
        let mux = make("flvmux", "mux")?;
        mux.set_property("streamable", true);
        let sink = make("rtmp2sink", "sink")?;
        sink.set_property("location", url(t));
        sink.set_property("async-connect", false);
        sink.set_property("sync", false);
        sink.set_property("timeout", 10u32);
        pipeline
            .add_many([video.upcast_ref(), &parse, &mux, &sink])
            .map_err(|e| e.to_string())?;
        video
            .link(&parse)
            .map_err(|e| format!("video → parse: {e}"))?;
        parse
            .link_pads(None, &mux, Some("video"))
            .map_err(|e| format!("parse → flvmux: {e}"))?;
        mux.link(&sink).map_err(|e| format!("flvmux → sink: {e}"))?;
        let audio = match audio_caps {
            Some(caps) => {
                let src = appsrc("audio", caps);
                let parse = make("aacparse", "audio-parse")?;
                pipeline
                    .add_many([src.upcast_ref(), &parse])
                    .map_err(|e| e.to_string())?;
                src.link(&parse)
                    .map_err(|e| format!("audio → parse: {e}"))?;
                parse
                    .link_pads(None, &mux, Some("audio"))
                    .map_err(|e| format!("audio → flvmux: {e}"))?;
                Some(src)
            }
            None => None,
        };
        Ok(Self {
            pipeline,
            video,
            audio,
        })
    }

    fn rebase(b: gst::Buffer, base: gst::ClockTime) -> Option<gst::Buffer> {
        let mut b = b;
        let m = b.make_mut();
        if let Some(p) = m.pts() {
            m.set_pts(p.checked_sub(base)?);
        }
        if let Some(d) = m.dts() {
            m.set_dts(d.checked_sub(base));
        }
        Some(b)
    }

    fn push_video(
        &self,
        caps: &gst::Caps,
        b: gst::Buffer,
        base: gst::ClockTime,
    ) -> Result<(), String> {
        if self.video.caps().as_ref() != Some(caps) {
            self.video.set_caps(Some(caps));
        }
        if let Some(b) = Self::rebase(b, base) {
            self.video
                .push_buffer(b)
                .map_err(|e| format!("the connection does not take video: {e:?}"))?;
        }
        Ok(())
    }

    fn push(&self, p: Packet, base: gst::ClockTime) -> Result<(), String> {
        match p {
            Packet::Video(caps, b) => self.push_video(&caps, b, base),
            Packet::Audio(_, b) => {
                // Audio from before the first keyframe has no place in this connection.
                if let (Some(audio), Some(b)) = (&self.audio, Self::rebase(b, base)) {
                    audio
                        .push_buffer(b)
                        .map_err(|e| format!("the connection does not take audio: {e:?}"))?;
                }
                Ok(())
            }
        }
    }

    async fn stop(self) {
        let pipeline = self.pipeline;
        let _ = tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Null)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_appended_and_scrubbed() {
        let t = RestreamTarget {
            name: "yt".into(),
            server: "rtmp://a.rtmp.youtube.com/live2/".into(),
            key: "s3cr-et".into(),
            rendition: None,
            enabled: true,
        };
        assert_eq!(url(&t), "rtmp://a.rtmp.youtube.com/live2/s3cr-et");
        assert_eq!(
            scrub(
                &t,
                "could not connect to rtmp://a.rtmp.youtube.com/live2/s3cr-et"
            ),
            "could not connect to rtmp://a.rtmp.youtube.com/live2/<key>"
        );
    }
}
