//! A clip of a stream's recordings as one MP4 file, without re-encoding.
//!
//! A reading thread demuxes the files that overlap the range one after the other (`filesrc
//! ! qtdemux`, into app sinks) and puts every buffer on the wall-clock timeline the file
//! names give (a gap between files stays a gap: the clip shows the time as it was). The clip
//! starts at the keyframe nearest to its start — within half a keyframe interval of it — and
//! ends at the last frame before its end. Buffers go across to a second pipeline, `appsrc !
//! h264parse ! mp4mux faststart ! filesink` (with the audio beside it), timestamped from the
//! clip's start, so the muxer only ever sees the clip.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::{Library, MAX_CLIP_MS};
use crate::tap;

/// Buffers held while the clip's first keyframe is chosen (more than a 10 s GOP at 60 fps
/// with its audio).
const HELD: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("nothing was recorded in that range")]
    NotFound,
    #[error("a clip is at most {} minutes long and ends after it starts", MAX_CLIP_MS / 60_000)]
    BadRange,
    #[error("another clip is being exported; try again when it is done")]
    Busy,
    #[error("the clip could not be made: {0}")]
    Failed(String),
}

/// A finished clip: an open file already unlinked from the disk (it goes when dropped).
pub struct Clip {
    pub file: std::fs::File,
    pub bytes: u64,
}

impl Library {
    /// Cuts `[from, to)` of a stream's recordings into one MP4 file.
    pub async fn export(
        self: &Arc<Self>,
        stream: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Clip, ExportError> {
        if to_ms <= from_ms || to_ms - from_ms > MAX_CLIP_MS {
            return Err(ExportError::BadRange);
        }
        let _permit = self
            .exporting
            .try_acquire()
            .map_err(|_| ExportError::Busy)?;
        let segments = self.segments(stream, from_ms, to_ms);
        if segments.is_empty() {
            return Err(ExportError::NotFound);
        }
        let files: Vec<(PathBuf, u64)> = segments
            .iter()
            .filter_map(|s| Some((self.file(stream, &s.name)?, s.start_ms)))
            .collect();
        let (start, stop) = (
            gst::ClockTime::from_mseconds(from_ms),
            gst::ClockTime::from_mseconds(to_ms),
        );
        let out = self
            .root()
            .join(format!(".export-{}-{}.mp4", stream, std::process::id()));
        let job = out.clone();
        let made = tokio::task::spawn_blocking(move || cut(&files, start, stop, &job))
            .await
            .map_err(|e| ExportError::Failed(e.to_string()))
            .and_then(|r| r.map_err(ExportError::Failed));
        let opened = made.and_then(|()| {
            let file = std::fs::File::open(&out).map_err(|e| ExportError::Failed(e.to_string()))?;
            let bytes = file
                .metadata()
                .map_err(|e| ExportError::Failed(e.to_string()))?
                .len();
            Ok(Clip { file, bytes })
        });
        let _ = std::fs::remove_file(&out);
        opened
    }
}

/// One buffer read from the recordings, its timestamps wall-clock time (since the epoch).
struct Read {
    video: bool,
    caps: gst::Caps,
    buffer: gst::Buffer,
}

/// The reading side's buffers, until the last file is read or reading fails.
struct Input {
    rx: std_mpsc::Receiver<Option<Read>>,
}

impl Input {
    fn next(&mut self) -> Option<Read> {
        self.rx.recv_timeout(Duration::from_secs(10)).ok().flatten()
    }
}

fn cut(
    files: &[(PathBuf, u64)],
    start: gst::ClockTime,
    stop: gst::ClockTime,
    out: &Path,
) -> Result<(), String> {
    let (tx, rx) = std_mpsc::sync_channel::<Option<Read>>(256);
    let files = files.to_vec();
    let reading = std::thread::Builder::new()
        .name("recording-read".into())
        .spawn(move || read_all(&files, &tx))
        .map_err(|e| e.to_string())?;
    let mut input = Input { rx };
    let result = write(&mut input, start, stop, out);
    // A reading thread blocked on a full channel is released by its closing.
    drop(input);
    let _ = reading.join();
    result
}

/// Reads each file in turn, then sends `None`. Stops early when the writer is gone.
fn read_all(files: &[(PathBuf, u64)], tx: &std_mpsc::SyncSender<Option<Read>>) {
    for (path, start_ms) in files {
        if let Err(e) = read_file(path, *start_ms, tx) {
            tracing::warn!("export: {}: {e}", path.display());
            if e == GONE {
                return;
            }
        }
    }
    let _ = tx.send(None);
}

const GONE: &str = "the writer stopped";

/// `filesrc ! qtdemux`, each pad into an app sink that sends its buffers with wall-clock
/// timestamps: the file's first buffer is at `start_ms`.
fn read_file(
    path: &Path,
    start_ms: u64,
    tx: &std_mpsc::SyncSender<Option<Read>>,
) -> Result<(), &'static str> {
    let pipeline = gst::Pipeline::with_name("recording-export-read");
    let src = tap::make("filesrc", "src").map_err(|_| "no filesrc")?;
    src.set_property("location", path.to_str().ok_or("path")?);
    let demux = tap::make("qtdemux", "demux").map_err(|_| "no qtdemux")?;
    pipeline
        .add_many([&src, &demux])
        .map_err(|_| "cannot build")?;
    src.link(&demux).map_err(|_| "cannot link")?;
    let zero: Arc<std::sync::Mutex<Option<gst::ClockTime>>> = Arc::default();
    let wall = gst::ClockTime::from_mseconds(start_ms);
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let weak = pipeline.downgrade();
    let (tx2, gone2) = (tx.clone(), gone.clone());
    demux.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let video = pad.name().starts_with("video");
        if !video && !pad.name().starts_with("audio") {
            return;
        }
        let sink = gst_app::AppSink::builder().sync(false).build();
        let (tx, zero, gone) = (tx2.clone(), zero.clone(), gone2.clone());
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let (Some(mut buffer), Some(caps)) =
                        (sample.buffer_owned(), sample.caps_owned())
                    else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let segment = sample
                        .segment()
                        .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
                    let running = |t: Option<gst::ClockTime>| {
                        t.and_then(|t| segment.as_ref().map_or(Some(t), |s| s.to_running_time(t)))
                    };
                    let (pts, dts) = (running(buffer.pts()), running(buffer.dts()));
                    let first = zero
                        .lock()
                        .ok()
                        .and_then(|mut z| pts.map(|p| *z.get_or_insert(p)));
                    let Some(first) = first else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let on_wall = |t: gst::ClockTime| (wall + t).checked_sub(first);
                    {
                        let b = buffer.make_mut();
                        b.set_pts(pts.and_then(on_wall));
                        b.set_dts(dts.and_then(on_wall));
                    }
                    if tx
                        .send(Some(Read {
                            video,
                            caps,
                            buffer,
                        }))
                        .is_err()
                    {
                        gone.store(true, std::sync::atomic::Ordering::Relaxed);
                        return Err(gst::FlowError::Eos);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        if pipeline.add(&sink).is_ok() {
            let _ = sink.sync_state_with_parent();
            if let Some(sinkpad) = sink.static_pad("sink") {
                let _ = pad.link(&sinkpad);
            }
        }
    });
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "cannot read")?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(60),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let _ = pipeline.set_state(gst::State::Null);
    if gone.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(GONE);
    }
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => Ok(()),
        Some(gst::MessageView::Error(_)) => Err("unreadable"),
        _ => Err("not read in time"),
    }
}

/// Takes buffers from `rx`, chooses the first keyframe, and writes `[first keyframe, stop)`
/// to `out`.
fn write(
    input: &mut Input,
    start: gst::ClockTime,
    stop: gst::ClockTime,
    out: &Path,
) -> Result<(), String> {
    let time = |r: &Read| r.buffer.pts().unwrap_or(gst::ClockTime::ZERO);
    let is_key = |r: &Read| r.video && !r.buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
    // Hold from the last keyframe at or before `start` until the first one after it; then
    // begin at whichever is nearer.
    let mut held: Vec<Read> = Vec::new();
    let mut audio_caps: Option<gst::Caps> = None;
    let first = loop {
        let Some(r) = input.next() else {
            if held.iter().any(|r| r.video) {
                break held;
            }
            return Err("the recordings hold no video for that range".into());
        };
        if !r.video && audio_caps.is_none() {
            audio_caps = Some(r.caps.clone());
        }
        if is_key(&r) {
            let t = time(&r);
            if t <= start {
                held.clear();
            } else {
                let before = held.first().filter(|h| is_key(h)).map(time);
                match before {
                    Some(b) if start - b <= t - start => {
                        held.push(r);
                        break held;
                    }
                    _ => break vec![r],
                }
            }
        }
        if held.len() >= HELD {
            return Err("the recordings have no keyframe near the clip's start".into());
        }
        held.push(r);
    };
    // `first` begins at the chosen keyframe (audio before it is dropped below).
    let zero = first
        .iter()
        .find(|r| is_key(r))
        .map(time)
        .ok_or("the recordings have no keyframe near the clip's start")?;
    let video_caps = first
        .iter()
        .find(|r| r.video)
        .map(|r| r.caps.clone())
        .ok_or("no video")?;
    let w = Writer::build(out, &video_caps, audio_caps.as_ref())?;
    let mut video_done = false;
    let mut pending = first.into_iter();
    while let Some(r) = pending.next().or_else(|| input.next()) {
        let t = time(&r);
        if t >= stop {
            if r.video {
                video_done = true;
            }
            if video_done {
                break;
            }
            continue;
        }
        if t < zero {
            continue;
        }
        w.push(r, zero)?;
    }
    w.finish()
}

/// The writing half: `appsrc ! h264parse ! mp4mux faststart=true ! filesink`.
struct Writer {
    pipeline: gst::Pipeline,
    video: gst_app::AppSrc,
    audio: Option<gst_app::AppSrc>,
}

impl Writer {
    fn build(
        out: &Path,
        video_caps: &gst::Caps,
        audio_caps: Option<&gst::Caps>,
    ) -> Result<Self, String> {
        let pipeline = gst::Pipeline::with_name("recording-export-write");
        let appsrc = |name: &str, caps: &gst::Caps| {
            gst_app::AppSrc::builder()
                .name(name)
                .caps(caps)
                .format(gst::Format::Time)
                .block(true)
                .max_bytes(16 * 1024 * 1024)
                .build()
        };
        let mux = tap::make("mp4mux", "mux")?;
        mux.set_property("faststart", true);
        let sink = tap::make("filesink", "sink")?;
        sink.set_property("location", out.to_str().ok_or("path")?);
        sink.set_property("sync", false);
        pipeline
            .add_many([&mux, &sink])
            .map_err(|e| e.to_string())?;
        mux.link(&sink).map_err(|e| e.to_string())?;
        let branch = |name: &str,
                      caps: &gst::Caps,
                      parser: &str,
                      pad: &str|
         -> Result<gst_app::AppSrc, String> {
            let src = appsrc(name, caps);
            let parse = tap::make(parser, &format!("{name}-parse"))?;
            pipeline
                .add_many([src.upcast_ref(), &parse])
                .map_err(|e| e.to_string())?;
            src.link(&parse).map_err(|e| e.to_string())?;
            parse
                .link_pads(None, &mux, Some(pad))
                .map_err(|e| format!("{name} → mp4mux: {e}"))?;
            Ok(src)
        };
        let video = branch("video", video_caps, "h264parse", "video_0")?;
        let audio = match audio_caps {
            Some(c) => Some(branch("audio", c, "aacparse", "audio_0")?),
            None => None,
        };
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("cannot write the clip: {e}"))?;
        Ok(Self {
            pipeline,
            video,
            audio,
        })
    }

    fn push(&self, r: Read, zero: gst::ClockTime) -> Result<(), String> {
        let mut b = r.buffer;
        {
            let m = b.make_mut();
            m.set_pts(m.pts().map(|t| t.saturating_sub(zero)));
            m.set_dts(m.dts().and_then(|t| t.checked_sub(zero)));
        }
        let src = if r.video {
            Some(&self.video)
        } else {
            self.audio.as_ref()
        };
        if let Some(src) = src {
            src.push_buffer(b)
                .map_err(|e| format!("the clip writer stopped: {e:?}"))?;
        }
        Ok(())
    }

    /// Ends the input and waits for the file to be complete.
    fn finish(self) -> Result<(), String> {
        let _ = self.video.end_of_stream();
        if let Some(a) = &self.audio {
            let _ = a.end_of_stream();
        }
        let bus = self.pipeline.bus().ok_or("no bus")?;
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let _ = self.pipeline.set_state(gst::State::Null);
        match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => Ok(()),
            Some(gst::MessageView::Error(e)) => Err(e.error().to_string()),
            _ => Err("the clip was not finished in time".into()),
        }
    }
}
