//! One stream's recorder: the tap's [`Feed`] into `splitmuxsink` with a fragmenting
//! `mp4mux`, a file every [`FILE_SECONDS`], each named by its wall-clock start and renamed
//! with its duration when it closes.
//!
//! It fails alone, like a restream destination: a write error (a full or vanished disk)
//! ends the file and is retried with backoff while the stream runs on; when retention
//! reports the disk full, it stops writing until space comes back.
//!
//! On events ([`EventMode`]) it keeps the last pre-roll seconds in memory (from a keyframe)
//! while it waits; a trigger (an object seen) writes them and what follows, until the
//! post-roll has passed since the last trigger; then the file closes and it waits again.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use lpe_core::events::{EventBus, EventKind, now_ms};

use super::{FILE_SECONDS, Library, day_of};
use crate::tap::{self, Feed, Packet, Tap};

const FIRST_RETRY: Duration = Duration::from_secs(2);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// A session that recorded for this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);
/// How long a stopping recorder waits for its last file to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    /// Waiting for the rendition's next keyframe.
    Starting,
    Recording,
    /// Failed; tried again after `retry_in_s`.
    Retrying,
    /// Not writing: the recordings' disk is full and retention found nothing to delete.
    DiskFull,
    /// Recording on events: waiting for one, the last pre-roll seconds kept in memory.
    Waiting,
    /// The stream is not recorded (off, or not possible for this stream).
    Off,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RecordingStatus {
    pub state: RecordingState,
    /// The rendition recorded.
    pub rendition: String,
    /// Files finished since the stream started.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Buffers dropped because the disk could not take them in time.
    pub dropped: u64,
    pub last_error: Option<String>,
    /// Since when it records, milliseconds since the Unix epoch.
    pub since_ms: Option<u64>,
    pub retry_in_s: Option<u64>,
}

impl RecordingStatus {
    pub fn off(rendition: String, why: Option<String>) -> Self {
        Self {
            state: RecordingState::Off,
            rendition,
            files: 0,
            bytes: 0,
            dropped: 0,
            last_error: why,
            since_ms: None,
            retry_in_s: None,
        }
    }
}

pub struct Recorder {
    stream: String,
    pub tap: Arc<Tap>,
    rx: mpsc::Receiver<Packet>,
    library: Arc<Library>,
    pub status: Arc<Mutex<RecordingStatus>>,
    /// Where the stream's recorded timeline ends: a session never starts before it, so files
    /// never overlap — not when a file is read faster than real time, nor when the clock
    /// steps back (a box without a battery-backed clock before NTP answers).
    timeline_end: std::sync::atomic::AtomicU64,
    events: Option<EventMode>,
}

/// Recording on events: how much before and after, and the triggers.
pub struct EventMode {
    pub pre_roll: Duration,
    pub post_roll: Duration,
    /// Changes at each trigger (an object seen).
    pub trigger: watch::Receiver<u64>,
}

/// The most pre-roll kept in memory, whatever its seconds hold.
const PRE_ROLL_BYTES: u64 = 64 << 20;

/// Why a session ended.
enum Ended {
    /// The stream stopped or ended: done.
    Stopped,
    /// Recording on events: the post-roll passed; wait for the next event.
    Paused,
    /// Retention reported the disk full.
    DiskFull,
    Failed(String),
}

impl Recorder {
    pub fn new(stream: &str, rendition: String, audio: bool, library: Arc<Library>) -> Self {
        let (tap, rx) = Tap::new(rendition.clone(), audio);
        let mut status = RecordingStatus::off(rendition, None);
        status.state = RecordingState::Starting;
        Self {
            stream: stream.to_string(),
            tap,
            rx,
            library,
            status: Arc::new(Mutex::new(status)),
            timeline_end: std::sync::atomic::AtomicU64::new(0),
            events: None,
        }
    }

    /// Records only around events.
    pub fn on_events(mut self, mode: EventMode) -> Self {
        self.events = Some(mode);
        self
    }

    fn update(&self, f: impl FnOnce(&mut RecordingStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
            s.dropped = self.tap.dropped.load(Relaxed);
        }
    }

    /// Records until `stop`, restarting with backoff after failures.
    pub async fn run(mut self, events: EventBus, mut stop: watch::Receiver<bool>) {
        let mut wait = FIRST_RETRY;
        let mut announced_full = false;
        loop {
            if let Some(dir) = self.library.stream_dir(&self.stream) {
                let lib = self.library.clone();
                let id = self.stream.clone();
                let end = tokio::task::spawn_blocking(move || {
                    recover(&dir);
                    lib.timeline_end(&id)
                })
                .await
                .ok()
                .flatten();
                if let Some(end) = end {
                    self.timeline_end.fetch_max(end, Relaxed);
                }
            }
            if self.library.disk_full() {
                if !announced_full {
                    announced_full = true;
                    events.emit(
                        Some(&self.stream),
                        EventKind::RecordingFailed,
                        "the recordings disk is full; recording resumes when space is freed",
                    );
                }
                self.update(|s| {
                    s.state = RecordingState::DiskFull;
                    s.since_ms = None;
                });
                if !self.discard_for(Duration::from_secs(2), &mut stop).await {
                    return;
                }
                continue;
            }
            announced_full = false;
            let pre_roll = if self.events.is_some() {
                self.update(|s| {
                    s.state = RecordingState::Waiting;
                    s.retry_in_s = None;
                });
                match self.wait_for_event(&mut stop).await {
                    Some(ring) => Some(ring),
                    None => return,
                }
            } else {
                None
            };
            self.update(|s| {
                s.state = RecordingState::Starting;
                s.retry_in_s = None;
            });
            let started = Instant::now();
            let ended = self.session(&mut stop, pre_roll).await;
            self.update(|s| s.since_ms = None);
            let why = match ended {
                Ended::Stopped => return,
                Ended::DiskFull => continue,
                Ended::Paused => {
                    wait = FIRST_RETRY;
                    continue;
                }
                Ended::Failed(why) => why,
            };
            if started.elapsed() >= STABLE {
                wait = FIRST_RETRY;
            }
            tracing::warn!(stream = %self.stream, "recording failed: {why}");
            events.emit(
                Some(&self.stream),
                EventKind::RecordingFailed,
                format!("{why}; retrying in {} s", wait.as_secs()),
            );
            self.update(|s| {
                s.state = RecordingState::Retrying;
                s.last_error = Some(why);
                s.retry_in_s = Some(wait.as_secs());
            });
            if !self.discard_for(wait, &mut stop).await {
                return;
            }
            wait = (wait * 2).min(MAX_RETRY);
        }
    }

    /// Throws buffers away for `wait`; `false`: stop, or the stream ended.
    async fn discard_for(&mut self, wait: Duration, stop: &mut watch::Receiver<bool>) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                p = self.rx.recv() => if p.is_none() { return false },
                _ = stop.changed() => return false,
            }
        }
        self.tap.resync();
        true
    }

    /// Keeps the last pre-roll seconds (from a keyframe) until a trigger; `None`: stop, or
    /// the stream ended.
    async fn wait_for_event(&mut self, stop: &mut watch::Receiver<bool>) -> Option<Vec<Packet>> {
        let mode = self.events.as_mut()?;
        mode.trigger.borrow_and_update();
        let pre_roll = mode.pre_roll;
        // Without a sender (the stream's detector gone) nothing triggers: the stream alone
        // is waited on.
        let mut live = true;
        let mut ring = PreRoll::default();
        loop {
            tokio::select! {
                p = self.rx.recv() => ring.push(p?, pre_roll),
                t = mode.trigger.changed(), if live => match t {
                    Ok(()) => break,
                    Err(_) => live = false,
                },
                _ = stop.changed() => return None,
            }
        }
        Some(ring.take())
    }

    /// One pipeline, from a keyframe (the pre-roll's first, when there is one) until it fails,
    /// the stream stops, or (on events) the post-roll has passed since the last trigger.
    async fn session(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        pre_roll: Option<Vec<Packet>>,
    ) -> Ended {
        let Some(dir) = self.library.stream_dir(&self.stream) else {
            return Ended::Failed("the stream id cannot name a directory".into());
        };
        let (start, behind) = match pre_roll.and_then(start_of) {
            Some(s) => s,
            None => match tap::start(&self.tap, &mut self.rx, stop).await {
                Some(s) => (s, Duration::ZERO),
                None => return Ended::Stopped,
            },
        };
        // The first keyframe came in just now (or, from a pre-roll, `behind` ago): the
        // wall-clock time of the file timeline's zero (a live source's buffers arrive within
        // a frame or two of their capture).
        let now = now_ms().saturating_sub(behind.as_millis() as u64);
        let end = self.timeline_end.load(Relaxed);
        // A timeline more than a day ahead is the clock's fault, not the source's.
        let wall_zero = if end > now + 86_400_000 {
            now
        } else {
            now.max(end)
        };
        let feed = match writer(&dir, wall_zero, &start) {
            Ok(f) => f,
            Err(e) => return Ended::Failed(e),
        };
        let Some(bus) = feed.pipeline.bus() else {
            return Ended::Failed("the recording pipeline has no bus".into());
        };
        let mut messages = bus.stream();
        let mut opened: HashMap<String, u64> = HashMap::new();
        let result = async {
            feed.play(start)?;
            self.update(|s| {
                s.state = RecordingState::Recording;
                s.since_ms = Some(now_ms());
                s.last_error = None;
            });
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let post_roll = self.events.as_ref().map(|m| m.post_roll);
            let mut until = post_roll.map(|p| tokio::time::Instant::now() + p);
            let mut trigger = self.events.as_ref().map(|m| m.trigger.clone());
            loop {
                let paused = async {
                    match until {
                        Some(u) => tokio::time::sleep_until(u).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    p = self.rx.recv() => match p {
                        None => return Ok(Ended::Stopped),
                        Some(p) => feed.push(p)?,
                    },
                    t = async { trigger.as_mut()?.changed().await.ok() }, if trigger.is_some() => {
                        match (t, post_roll) {
                            (Some(()), Some(p)) => until = Some(tokio::time::Instant::now() + p),
                            // The trigger's sender is gone: finish the post-roll.
                            _ => trigger = None,
                        }
                    }
                    _ = paused => return Ok(Ended::Paused),
                    m = messages.next() => match m {
                        None => return Err("the recording pipeline's bus closed".to_string()),
                        Some(m) => if self.on_message(&m, &mut opened)? {
                            return Err("the recording pipeline ended".to_string());
                        },
                    },
                    _ = tick.tick() => {
                        if self.library.disk_full() {
                            return Ok(Ended::DiskFull);
                        }
                        self.update(|_| {});
                    }
                    _ = stop.changed() => return Ok(Ended::Stopped),
                }
            }
        }
        .await;
        // Close the open file properly: end the input and wait for the muxer to finish.
        let result = match result {
            Ok(ended) => {
                feed.end();
                let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
                loop {
                    tokio::select! {
                        m = messages.next() => match m {
                            Some(m) => match self.on_message(&m, &mut opened) {
                                Ok(false) => {}
                                Ok(true) => break,
                                Err(e) => { tracing::warn!(stream = %self.stream, "closing a recording: {e}"); break }
                            },
                            None => break,
                        },
                        _ = tokio::time::sleep_until(deadline) => {
                            tracing::warn!(stream = %self.stream, "a recording did not close within {} s", CLOSE_TIMEOUT.as_secs());
                            break;
                        }
                    }
                }
                ended
            }
            Err(e) => Ended::Failed(e),
        };
        feed.stop().await;
        result
    }

    /// Handles a message of the writing pipeline: `Ok(true)` at its end.
    fn on_message(
        &self,
        m: &gst::Message,
        opened: &mut HashMap<String, u64>,
    ) -> Result<bool, String> {
        match m.view() {
            gst::MessageView::Error(e) => Err(format!(
                "{}{}",
                e.error(),
                e.debug()
                    .map(|d| format!(" ({})", d.lines().next().unwrap_or("")))
                    .unwrap_or_default()
            )),
            gst::MessageView::Eos(_) => Ok(true),
            gst::MessageView::Element(el) => {
                let Some(s) = el.structure() else {
                    return Ok(false);
                };
                let location = s.get::<String>("location").ok();
                let rt = s.get::<u64>("running-time").ok();
                match (s.name().as_str(), location, rt) {
                    ("splitmuxsink-fragment-opened", Some(l), Some(rt)) => {
                        opened.insert(l, rt);
                    }
                    ("splitmuxsink-fragment-closed", Some(l), Some(rt)) => {
                        let from = opened.remove(&l).unwrap_or(0);
                        let ms = rt.saturating_sub(from) / 1_000_000;
                        let start = Path::new(&l)
                            .file_stem()
                            .and_then(|s| s.to_str())
                            .and_then(|s| s.parse::<u64>().ok());
                        if let Some(start) = start {
                            self.timeline_end.fetch_max(start + ms, Relaxed);
                        }
                        if let Some(bytes) = finish(Path::new(&l), ms) {
                            self.library.finished(bytes);
                            self.update(|s| {
                                s.files += 1;
                                s.bytes += bytes;
                            });
                        }
                    }
                    _ => {}
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }
}

/// The last pre-roll seconds of the stream, from a keyframe: at most [`PRE_ROLL_BYTES`].
#[derive(Default)]
struct PreRoll {
    packets: VecDeque<Packet>,
    bytes: u64,
}

fn is_keyframe(p: &Packet) -> bool {
    matches!(p, Packet::Video(_, b) if !b.flags().contains(gst::BufferFlags::DELTA_UNIT))
}

fn pts(p: &Packet) -> Option<gst::ClockTime> {
    match p {
        Packet::Video(_, b) | Packet::Audio(_, b) => b.pts(),
    }
}

impl PreRoll {
    fn push(&mut self, p: Packet, keep: Duration) {
        self.bytes += p.size();
        let newest = pts(&p);
        self.packets.push_back(p);
        let Some(newest) = newest else { return };
        let horizon = newest.saturating_sub(gst::ClockTime::from_nseconds(keep.as_nanos() as u64));
        // Drop whole GOPs from the front while the next keyframe is still old enough to start
        // the pre-roll, or while the bytes are over budget.
        loop {
            let next_key = self
                .packets
                .iter()
                .skip(1)
                .position(is_keyframe)
                .map(|i| i + 1);
            let front_is_key = self.packets.front().is_some_and(is_keyframe);
            let drop_to = match next_key {
                Some(k) if !front_is_key => Some(k),
                Some(k)
                    if self.bytes > PRE_ROLL_BYTES
                        || self
                            .packets
                            .get(k)
                            .and_then(pts)
                            .is_some_and(|t| t <= horizon) =>
                {
                    Some(k)
                }
                // No keyframe to start from, and over budget: nothing here is worth keeping.
                None if self.bytes > PRE_ROLL_BYTES => Some(self.packets.len()),
                _ => None,
            };
            let Some(k) = drop_to else { break };
            for p in self.packets.drain(..k) {
                self.bytes -= p.size();
            }
        }
    }

    /// From the first keyframe (nothing when none came).
    fn take(mut self) -> Vec<Packet> {
        while self.packets.front().is_some_and(|p| !is_keyframe(p)) {
            self.packets.pop_front();
        }
        self.packets.into()
    }
}

/// A session's start from a pre-roll, and how far behind the newest packet its keyframe is.
fn start_of(ring: Vec<Packet>) -> Option<(tap::Start, Duration)> {
    let newest = ring.iter().rev().find_map(pts)?;
    let mut it = ring.into_iter();
    let Some(Packet::Video(video_caps, keyframe)) = it.next() else {
        return None;
    };
    let behind = keyframe
        .pts()
        .map(|t| Duration::from_nanos(newest.saturating_sub(t).nseconds()))
        .unwrap_or_default();
    let early: Vec<Packet> = it.collect();
    let audio_caps = early.iter().find_map(|p| match p {
        Packet::Audio(c, _) => Some(c.clone()),
        Packet::Video(..) => None,
    });
    Some((
        tap::Start {
            video_caps,
            keyframe,
            audio_caps,
            early,
        },
        behind,
    ))
}

/// The writing pipeline: the feed into `splitmuxsink` (`mp4mux`, a fragment a second).
fn writer(dir: &Path, wall_zero: u64, start: &tap::Start) -> Result<Feed, String> {
    let mux = tap::make("mp4mux", "mux")?;
    mux.set_property("fragment-duration", 1000u32);
    let sink = tap::make("splitmuxsink", "split")?;
    sink.set_property("muxer", &mux);
    sink.set_property("max-size-time", FILE_SECONDS * 1_000_000_000);
    let dir = dir.to_path_buf();
    sink.connect("format-location-full", false, move |args| {
        let pts = args
            .get(2)
            .and_then(|v| v.get::<gst::Sample>().ok())
            .and_then(|s| s.buffer().and_then(|b| b.pts()))
            .map(|t| t.mseconds())
            .unwrap_or(0);
        let start = wall_zero + pts;
        let day = dir.join(day_of(start));
        if let Err(e) = std::fs::create_dir_all(&day) {
            tracing::warn!("cannot create {}: {e}", day.display());
        }
        Some(
            day.join(format!("{start}.mp4"))
                .to_string_lossy()
                .to_string()
                .to_value(),
        )
    });
    let pipeline = gst::Pipeline::with_name("recorder");
    pipeline.add(&sink).map_err(|e| e.to_string())?;
    Feed::build(pipeline, start, |_, parser, audio| {
        tap::link_to_request_pad(parser, &sink, if audio { "audio_%u" } else { "video" })
    })
}

/// Renames a closed file to carry its duration; its size, or `None` when it could not be.
fn finish(path: &Path, ms: u64) -> Option<u64> {
    let stem = path.file_stem()?.to_str()?;
    let named = path.with_file_name(format!("{stem}-{ms}.mp4"));
    if ms == 0 {
        let _ = std::fs::remove_file(path);
        return None;
    }
    std::fs::rename(path, &named).ok()?;
    Some(std::fs::metadata(&named).ok()?.len())
}

/// Files a crash left without their duration, in a stream's newest two days: measured and
/// renamed, or deleted when nothing in them plays.
fn recover(stream_dir: &Path) {
    let mut days: Vec<PathBuf> = std::fs::read_dir(stream_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(super::is_day)
        })
        .collect();
    days.sort();
    for day in days.iter().rev().take(2) {
        for f in super::files(day) {
            if f.duration_ms.is_some() {
                continue;
            }
            let path = day.join(&f.file);
            match measure(&path) {
                Some(ms) if ms > 0 => {
                    if finish(&path, ms).is_some() {
                        tracing::info!("recovered {} ({ms} ms)", path.display());
                    }
                }
                _ => {
                    tracing::warn!("{} holds nothing playable; deleted", path.display());
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
}

/// How long the video in a fragmented MP4 file plays (up to its last whole fragment), by
/// demuxing it to the end.
pub fn measure(path: &Path) -> Option<u64> {
    let pipeline = gst::Pipeline::with_name("recording-measure");
    let src = tap::make("filesrc", "src").ok()?;
    src.set_property("location", path.to_str()?);
    let demux = tap::make("qtdemux", "demux").ok()?;
    let sink = tap::make("fakesink", "sink").ok()?;
    sink.set_property("sync", false);
    sink.set_property("enable-last-sample", true);
    pipeline.add_many([&src, &demux, &sink]).ok()?;
    src.link(&demux).ok()?;
    let sinkpad = sink.static_pad("sink")?;
    demux.connect_pad_added(move |_, pad| {
        if pad.name().starts_with("video") && !sinkpad.is_linked() {
            let _ = pad.link(&sinkpad);
        }
    });
    pipeline.set_state(gst::State::Playing).ok()?;
    let bus = pipeline.bus()?;
    let _ = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(10),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let end = sink
        .property::<Option<gst::Sample>>("last-sample")
        .and_then(|s| {
            let b = s.buffer()?;
            Some(b.pts()? + b.duration().unwrap_or(gst::ClockTime::ZERO))
        });
    let _ = pipeline.set_state(gst::State::Null);
    end.map(|t| t.mseconds())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(ms: u64, key: bool, size: usize) -> Packet {
        let mut b = gst::Buffer::with_size(size).expect("buffer");
        {
            let b = b.make_mut();
            b.set_pts(gst::ClockTime::from_mseconds(ms));
            if !key {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        Packet::Video(gst::Caps::new_empty_simple("video/x-h264"), b)
    }

    #[test]
    fn the_pre_roll_starts_at_the_last_keyframe_old_enough() {
        let _ = gst::init();
        let mut ring = PreRoll::default();
        // 10 s at 10 fps, a keyframe every second; the first packet is no keyframe.
        for i in 1..100u64 {
            ring.push(packet(i * 100, i % 10 == 0, 10), Duration::from_secs(2));
        }
        let kept = ring.take();
        // The newest is 9.9 s: the last keyframe at or before 7.9 s is at 7 s.
        assert_eq!(pts(&kept[0]), Some(gst::ClockTime::from_mseconds(7000)));
        assert!(is_keyframe(&kept[0]));
        assert_eq!(kept.len(), 30);
        let (start, behind) = start_of(kept).expect("start");
        assert_eq!(behind, Duration::from_millis(2900));
        assert_eq!(start.early.len(), 29);
        assert!(start.audio_caps.is_none());
    }

    #[test]
    fn the_pre_roll_keeps_to_its_byte_budget() {
        let _ = gst::init();
        let mut ring = PreRoll::default();
        let big = (PRE_ROLL_BYTES / 20) as usize;
        for i in 0..100u64 {
            ring.push(packet(i * 100, i % 10 == 0, big), Duration::from_secs(30));
            assert!(
                ring.bytes <= PRE_ROLL_BYTES + big as u64 * 10,
                "{}",
                ring.bytes
            );
        }
        let kept = ring.take();
        assert!(is_keyframe(&kept[0]));
        // Without keyframes, nothing is kept once the budget is passed.
        let mut ring = PreRoll::default();
        for i in 0..30u64 {
            ring.push(packet(i * 100, false, big), Duration::from_secs(30));
        }
        assert!(ring.bytes <= PRE_ROLL_BYTES);
        assert!(ring.take().is_empty());
    }
}
