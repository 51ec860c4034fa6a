//! Restreaming: a stream sent on to RTMP(S) destinations (YouTube, Facebook, a CDN), each
//! from one of its renditions, with the stream's audio.
//!
//! Every destination runs in a pipeline of its own — the tap's [`Feed`] into `flvmux !
//! rtmp2sink` — fed by copies of the stream's encoded buffers (no re-encode). A destination
//! that refuses, drops or stalls therefore fails alone: it is retried with backoff (2 s
//! doubling to 60 s) while the stream and the other destinations go on. Buffers it cannot take
//! in time are dropped (counted), and after a drop it waits for the next keyframe. Each
//! connection starts at a keyframe with its timestamps from zero.
//!
//! The stream key is part of the URL handed to `rtmp2sink` and nowhere else: error texts are
//! scrubbed of it before they reach the status, the log or an event.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use lpe_core::events::{EventBus, EventKind, now_ms};
use lpe_core::spec::RestreamTarget;

use crate::tap::{self, Feed, Packet, Tap};

const FIRST_RETRY: Duration = Duration::from_secs(2);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// A connection that delivered for this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);

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
        let (tap, rx) = Tap::new(rendition.clone(), audio);
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
            tap,
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
            self.tap.resync();
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
        let Some(start) = tap::start(&self.tap, &mut self.rx, stop).await else {
            return Ok(());
        };
        let sender = sender(&self.target, &start)?;
        let bus = sender.pipeline.bus().ok_or("no bus")?;
        let mut messages = bus.stream();
        use futures::StreamExt;
        let result = async {
            sender.play(start)?;
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
                            sender.push(p)?;
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

/// One connection's pipeline: the feed into `flvmux ! rtmp2sink`.
fn sender(t: &RestreamTarget, start: &tap::Start) -> Result<Feed, String> {
    let mux = tap::make("flvmux", "mux")?;
    mux.set_property("streamable", true);
    let sink = tap::make("rtmp2sink", "sink")?;
    sink.set_property("location", url(t));
    sink.set_property("async-connect", false);
    sink.set_property("sync", false);
    sink.set_property("timeout", 10u32);
    let pipeline = gst::Pipeline::with_name("restream");
    pipeline
        .add_many([&mux, &sink])
        .map_err(|e| e.to_string())?;
    mux.link(&sink).map_err(|e| format!("flvmux → sink: {e}"))?;
    Feed::build(pipeline, start, |_, parser, audio| {
        let pad = if audio { "audio" } else { "video" };
        parser
            .link_pads(None, &mux, Some(pad))
            .map_err(|e| format!("{pad} → flvmux: {e}"))
    })
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
