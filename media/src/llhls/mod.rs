//! Low-latency HLS: every rendition of a stream packaged a second time, in memory, as
//! fragmented MP4 parts of [`MediaConfig::part_ms`](crate::MediaConfig) with blocking
//! playlist reload and preload hints.
//!
//! The disk HLS output (`hls.rs`, MPEG-TS from `hlssink2`) stays what plain players and
//! the offload path use; this is a second view of the same encodes, fed by taps, so it costs
//! a muxer per rendition and no encode. Code map: [`fmp4`] reads the muxer's boxes,
//! [`playlist`] is the pure playlist state, [`packager`] the GStreamer side.

pub mod fmp4;
pub mod packager;
pub mod playlist;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

pub use playlist::{Playlist, Ready};

use crate::pipeline::Counters;
use crate::tap::Tap;

/// A stream's low-latency renditions by name; they outlive a run so that media sequence
/// numbers keep growing across restarts.
#[derive(Default)]
pub struct Renditions {
    by_name: Mutex<BTreeMap<String, Arc<Playlist>>>,
}

impl Renditions {
    pub fn get(&self, rendition: &str) -> Option<Arc<Playlist>> {
        self.by_name.lock().ok()?.get(rendition).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn playlist(&self, rendition: &str, part: Duration, segment: Duration) -> Arc<Playlist> {
        let Ok(mut m) = self.by_name.lock() else {
            return Arc::new(Playlist::new(part, segment));
        };
        m.entry(rendition.to_string())
            .or_insert_with(|| Arc::new(Playlist::new(part, segment)))
            .clone()
    }

    /// Forgets renditions a new run no longer has (a changed ladder).
    fn keep_only(&self, names: &[String]) {
        if let Ok(mut m) = self.by_name.lock() {
            m.retain(|k, _| names.contains(k));
        }
    }
}

/// Packages each rendition of the run made here as it appears (renditions of pushed and
/// network sources are made once their caps are known) until `stop`. An offloaded stream's
/// renditions from the network are left out: they arrive a whole segment at a time.
pub async fn attach(
    stream: String,
    counters: Arc<Counters>,
    renditions: Arc<Renditions>,
    part: Duration,
    segment: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut started: Vec<String> = Vec::new();
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let names: Vec<String> = counters
            .renditions
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|c| c.made_here())
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let new: Vec<String> = names
            .iter()
            .filter(|n| !started.contains(n))
            .cloned()
            .collect();
        for name in &new {
            let audio = counters.has_audio();
            let (tap, rx) = Tap::new(name.clone(), audio);
            if let Ok(mut taps) = counters.taps.lock() {
                taps.push(tap.clone());
            }
            let playlist = renditions.playlist(name, part, segment);
            tasks.push(tokio::spawn(packager::run(
                stream.clone(),
                tap,
                rx,
                playlist,
                stop.clone(),
            )));
            started.push(name.clone());
        }
        if !new.is_empty() {
            renditions.keep_only(&started);
        }
    }
    for t in tasks {
        let _ = t.await;
    }
}
