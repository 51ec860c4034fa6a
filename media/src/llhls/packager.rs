//! One rendition's LL-HLS packager: the tap's [`Feed`] into a fragmenting `mp4mux` (a
//! fragment per part target, and one at every keyframe) and an `appsink` whose output is cut
//! into boxes and handed to the rendition's [`Playlist`].
//!
//! Like the recorder it runs in its own pipeline and fails alone: an error ends the session,
//! which starts again from the next keyframe (a discontinuity in the playlist).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::{mpsc, watch};

use super::fmp4::{self, Splitter, Track};
use super::playlist::Playlist;
use crate::tap::{self, Feed, Packet, Tap};

const RETRY: Duration = Duration::from_secs(2);

/// Feeds `playlist` from `tap` until `stop`, starting again after failures.
pub async fn run(
    stream: String,
    tap: Arc<Tap>,
    mut rx: mpsc::Receiver<Packet>,
    playlist: Arc<Playlist>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match session(&tap, &mut rx, &playlist, &mut stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(stream = %stream, rendition = %tap.rendition, "low-latency HLS: {e}; starting again");
            }
        }
        let deadline = tokio::time::Instant::now() + RETRY;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                p = rx.recv() => if p.is_none() { return },
                _ = stop.changed() => return,
            }
        }
        tap.resync();
    }
}

/// What the appsink's callback keeps between buffers.
struct Cutter {
    splitter: Splitter,
    /// `ftyp` until the `moov` that completes the initialisation section.
    init: Vec<u8>,
    tracks: Vec<Track>,
    moof: Option<(Vec<u8>, Vec<fmp4::Run>)>,
    /// Decode times (ns from the feed's first keyframe) of keyframes fed in and not yet
    /// matched to the end of a fragment.
    keyframes: Arc<Mutex<VecDeque<u64>>>,
    /// The muxer's decode time of the first keyframe, ns.
    zero: Option<u64>,
    playlist: Arc<Playlist>,
}

impl Cutter {
    fn take(&mut self, data: &[u8]) -> Result<(), String> {
        for (kind, whole) in self.splitter.push(data)? {
            match &kind {
                b"ftyp" => self.init = whole,
                b"moov" => {
                    let (_, header, _) =
                        fmp4::header(&whole).ok_or("the muxer wrote a malformed moov")?;
                    self.tracks = fmp4::tracks(whole.get(header..).unwrap_or_default());
                    if !self.tracks.iter().any(|t| t.video) {
                        return Err("the muxer's moov has no video track".into());
                    }
                    let mut init = std::mem::take(&mut self.init);
                    init.extend_from_slice(&whole);
                    self.playlist.begin(Bytes::from(init));
                }
                b"moof" => {
                    let (_, header, _) =
                        fmp4::header(&whole).ok_or("the muxer wrote a malformed moof")?;
                    let runs = fmp4::runs(whole.get(header..).unwrap_or_default(), &self.tracks);
                    self.moof = Some((whole, runs));
                }
                b"mdat" => {
                    let Some((mut chunk, runs)) = self.moof.take() else {
                        continue;
                    };
                    chunk.extend_from_slice(&whole);
                    self.fragment(Bytes::from(chunk), &runs);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn fragment(&mut self, chunk: Bytes, runs: &[fmp4::Run]) {
        let Some(video) = runs.iter().find(|r| r.track.video) else {
            self.playlist.push_audio(chunk);
            return;
        };
        let ns = |t: u64| {
            (u128::from(t) * 1_000_000_000 / u128::from(video.track.timescale.max(1))) as u64
        };
        let start = ns(video.decode_time);
        let zero = *self.zero.get_or_insert(start);
        let end = ns(video.decode_time + video.duration).saturating_sub(zero);
        // Does a keyframe fed in start where this fragment ends? Then the muxer cut here for
        // it, and a segment may end with this part.
        let ends_gop = self.keyframes.lock().is_ok_and(|mut k| {
            while k.front().is_some_and(|t| *t + 2_000_000 < end) {
                k.pop_front();
            }
            k.front().is_some_and(|t| t.abs_diff(end) <= 2_000_000)
        });
        self.playlist.push_video(
            chunk,
            video.seconds(),
            video.starts_with_sync,
            ends_gop,
            lpe_core::events::now_ms(),
        );
    }
}

async fn session(
    tap: &Tap,
    rx: &mut mpsc::Receiver<Packet>,
    playlist: &Arc<Playlist>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let Some(start) = tap::start(tap, rx, stop).await else {
        return Ok(());
    };
    let keyframes = Arc::new(Mutex::new(VecDeque::new()));
    let feed = packager(&start, playlist, playlist.part_target, keyframes.clone())?;
    let bus = feed.pipeline.bus().ok_or("the packager has no bus")?;
    let mut messages = bus.stream();
    let base = feed.base();
    let note_keyframe = |p: &Packet| {
        if let Packet::Video(_, b) = p
            && !b.flags().contains(gst::BufferFlags::DELTA_UNIT)
            && let Some(t) = b.dts().or(b.pts()).and_then(|t| t.checked_sub(base))
            && let Ok(mut k) = keyframes.lock()
            && k.len() < 64
        {
            k.push_back(t.nseconds());
        }
    };
    if let Ok(mut k) = keyframes.lock() {
        k.push_back(0);
    }
    let result = async {
        feed.play(start)?;
        loop {
            tokio::select! {
                p = rx.recv() => match p {
                    None => return Ok(()),
                    Some(p) => {
                        note_keyframe(&p);
                        feed.push(p)?;
                    }
                },
                m = messages.next() => match m.as_ref().map(|m| m.view()) {
                    None => return Err("the packager's bus closed".to_string()),
                    Some(gst::MessageView::Error(e)) => return Err(e.error().to_string()),
                    Some(gst::MessageView::Eos(_)) => return Ok(()),
                    Some(_) => {}
                },
                _ = stop.changed() => return Ok(()),
            }
        }
    }
    .await;
    feed.stop().await;
    result
}

/// `appsrc ! h264parse` (and `appsrc ! aacparse`) `! mp4mux ! appsink`.
fn packager(
    start: &tap::Start,
    playlist: &Arc<Playlist>,
    part: Duration,
    keyframes: Arc<Mutex<VecDeque<u64>>>,
) -> Result<Feed, String> {
    let mux = tap::make("mp4mux", "mux")?;
    mux.set_property("fragment-duration", part.as_millis() as u32);
    mux.set_property("streamable", true);
    let sink = gst_app::AppSink::builder()
        .name("parts")
        .sync(false)
        .async_(false)
        .max_buffers(256)
        .build();
    let cutter = Mutex::new(Cutter {
        splitter: Splitter::default(),
        init: Vec::new(),
        tracks: Vec::new(),
        moof: None,
        keyframes,
        zero: None,
        playlist: playlist.clone(),
    });
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                let mut cutter = cutter.lock().map_err(|_| gst::FlowError::Error)?;
                cutter.take(&map).map_err(|e| {
                    tracing::warn!("low-latency HLS: {e}");
                    gst::FlowError::Error
                })?;
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let pipeline = gst::Pipeline::with_name("llhls");
    pipeline
        .add_many([&mux, sink.upcast_ref()])
        .map_err(|e| e.to_string())?;
    mux.link(&sink).map_err(|e| format!("mux → sink: {e}"))?;
    Feed::build(pipeline, start, |_, parser, audio| {
        tap::link_to_request_pad(parser, &mux, if audio { "audio_%u" } else { "video_%u" })
    })
}
