//! Pictures for analysis, and privacy mode's mask. This crate knows pictures, not models:
//! whoever wires the engine (the node's AI plane) implements [`Analysis`], and a run's
//! pipeline feeds it frames scaled and converted in GStreamer from the stream's one decode.
//!
//! Privacy mode puts a gate between the raw tee and every output: each picture waits there
//! until the face detector has looked at a picture at least as late as it (so faces found
//! before *and* after it are covered: boxes held forward and back), then its faces are
//! covered with their average colour. A picture the detector has not covered within
//! [`PrivacyMask::wait`] — the detector is down, stalled or gone — is blanked. So the outputs
//! never show a picture the detector has not vouched for.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;

use crate::spec::StreamSpec;

/// What the engine asks when a stream's run is built.
pub trait Analysis: Send + Sync {
    /// What the run's pictures should feed; `None`: nothing. May block (models are opened
    /// here); called off the async threads.
    fn open(&self, stream_id: &str, spec: &StreamSpec) -> Option<AnalysisRun>;

    /// The run `open` was asked for has ended.
    fn close(&self, stream_id: &str);
}

/// One run's analysis: frame taps and, in privacy mode, the mask every output goes through.
#[derive(Debug, Default)]
pub struct AnalysisRun {
    pub taps: Vec<FrameTap>,
    pub mask: Option<Arc<PrivacyMask>>,
}

/// Frames for one detector: at most `fps` a second, scaled to fit `width`×`height` with the
/// picture's aspect ratio kept, packed RGB. A frame the consumer is not ready for is dropped
/// and counted, never queued: a slow model never holds the video back.
#[derive(Debug)]
pub struct FrameTap {
    /// Names the branch's elements (`ai-<name>-…`).
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub frames: SyncSender<AnalysisFrame>,
    pub stats: Arc<TapStats>,
}

#[derive(Debug, Default)]
pub struct TapStats {
    /// Frames dropped because the detector was busy (those it took, it counts itself).
    pub dropped: AtomicU64,
}

/// A picture for a detector.
pub struct AnalysisFrame {
    /// The picture's timestamp (the same as the stream's raw picture it was scaled from).
    pub pts: Duration,
    /// When the picture reached the raw tee (for end-to-end latency).
    pub captured: Instant,
    pub width: u32,
    pub height: u32,
    /// Bytes per row (at least `3 × width`).
    pub stride: usize,
    data: gst::MappedBuffer<gst::buffer::Readable>,
}

impl AnalysisFrame {
    pub(crate) fn new(
        pts: Duration,
        captured: Instant,
        width: u32,
        height: u32,
        stride: usize,
        data: gst::MappedBuffer<gst::buffer::Readable>,
    ) -> Option<Self> {
        (stride >= width as usize * 3 && data.len() >= stride * height as usize).then_some(Self {
            pts,
            captured,
            width,
            height,
            stride,
            data,
        })
    }

    /// Packed RGB rows, `stride` bytes apart.
    pub fn rgb(&self) -> &[u8] {
        self.data.as_slice()
    }
}

impl std::fmt::Debug for AnalysisFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalysisFrame")
            .field("pts", &self.pts)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// A box to cover, normalised to the picture (0 to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl Region {
    /// The box grown by `share` of its size on every side.
    pub fn grown(&self, share: f32) -> Region {
        let (dx, dy) = ((self.x2 - self.x1) * share, (self.y2 - self.y1) * share);
        Region {
            x1: self.x1 - dx,
            y1: self.y1 - dy,
            x2: self.x2 + dx,
            y2: self.y2 + dy,
        }
    }

    /// In pixels of a `w`×`h` picture, clamped: `(x1, y1, x2, y2)`, end exclusive.
    fn pixels(&self, w: usize, h: usize) -> (usize, usize, usize, usize) {
        let px = |v: f32, n: usize| ((v.clamp(0.0, 1.0) * n as f32).round() as usize).min(n);
        let (x1, x2) = (px(self.x1, w), px(self.x2, w));
        let (y1, y2) = (px(self.y1, h), px(self.y2, h));
        (x1, y1, x2.max(x1), y2.max(y1))
    }
}

/// Faces are covered with a margin: a face moving between two looks stays inside.
pub const MARGIN: f32 = 0.15;

/// What a picture gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Cover {
    Regions(Vec<Region>),
    Blank,
}

#[derive(Debug)]
struct Look {
    pts: Duration,
    regions: Vec<Region>,
}

#[derive(Debug, Default)]
struct MaskState {
    looks: VecDeque<Look>,
    failure: Option<String>,
    closed: bool,
}

/// Privacy mode's state for one run, shared by the face detector (which publishes what it
/// found) and the gate in front of the outputs (which waits for it).
#[derive(Debug)]
pub struct PrivacyMask {
    state: Mutex<MaskState>,
    changed: Condvar,
    /// The longest a picture waits for the look that covers it.
    pub wait: Duration,
    pub covered: AtomicU64,
    pub blanked: AtomicU64,
    /// Total time pictures waited at the gate, in microseconds (with `covered`, the mean
    /// delay privacy mode adds).
    pub waited_us: AtomicU64,
}

/// Looks kept, by picture time: enough for the object detector's snapshots to find theirs.
const LOOKS_KEPT: Duration = Duration::from_secs(5);

impl PrivacyMask {
    pub fn new(wait: Duration) -> Self {
        Self {
            state: Mutex::default(),
            changed: Condvar::new(),
            wait,
            covered: AtomicU64::new(0),
            blanked: AtomicU64::new(0),
            waited_us: AtomicU64::new(0),
        }
    }

    /// The face detector's answer for the picture at `pts`.
    pub fn publish(&self, pts: Duration, regions: Vec<Region>) {
        if let Ok(mut s) = self.state.lock() {
            s.failure = None;
            if s.looks.back().is_some_and(|l| l.pts > pts) {
                // Timestamps went back (a source restarted its clock): older looks say
                // nothing about the new pictures.
                s.looks.clear();
            }
            s.looks.push_back(Look { pts, regions });
            while s
                .looks
                .front()
                .is_some_and(|l| pts.saturating_sub(l.pts) > LOOKS_KEPT)
            {
                s.looks.pop_front();
            }
        }
        self.changed.notify_all();
    }

    /// Faces cannot be looked for: every picture is blanked until the next `publish`.
    pub fn fail(&self, why: impl Into<String>) {
        if let Ok(mut s) = self.state.lock() {
            s.failure = Some(why.into());
        }
        self.changed.notify_all();
    }

    /// Why pictures are blanked, if they are.
    pub fn failure(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.failure.clone())
    }

    /// The run ended: nothing waits any more.
    pub fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.closed = true;
        }
        self.changed.notify_all();
    }

    /// The regions covering the picture at `pts`, once the detector has looked at a picture
    /// at least as late; `Blank` when that does not happen within `wait` or the detector
    /// failed. Counted: this is the gate's call.
    pub fn cover(&self, pts: Duration) -> Cover {
        let start = Instant::now();
        match self.look(pts) {
            Some(regions) => {
                self.covered.fetch_add(1, Ordering::Relaxed);
                self.waited_us
                    .fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                Cover::Regions(regions)
            }
            None => {
                self.blanked.fetch_add(1, Ordering::Relaxed);
                Cover::Blank
            }
        }
    }

    /// The regions to cover in the picture at `pts` (those of the looks just before and
    /// after it), waiting at most `wait` for the look after it; `None` when the detector
    /// failed, the run ended or the wait ran out.
    pub fn look(&self, pts: Duration) -> Option<Vec<Region>> {
        let deadline = Instant::now() + self.wait;
        let mut s = self.state.lock().ok()?;
        loop {
            if s.failure.is_some() || s.closed {
                return None;
            }
            if let Some(after) = s.looks.iter().position(|l| l.pts >= pts) {
                let mut regions = s.looks[after].regions.clone();
                if after > 0 {
                    regions.extend_from_slice(&s.looks[after - 1].regions);
                }
                return Some(regions);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            s = self.changed.wait_timeout(s, deadline - now).ok()?.0;
        }
    }
}

/// Covers each region of a packed RGB picture with its average colour.
pub fn cover_rgb(rgb: &mut [u8], width: usize, height: usize, stride: usize, regions: &[Region]) {
    for r in regions {
        let (x1, y1, x2, y2) = r.grown(MARGIN).pixels(width, height);
        for c in 0..3 {
            fill_mean(rgb, stride, 3, c, (x1, y1, x2, y2));
        }
    }
}

/// Sets the `c`-th of every `step` bytes in the rectangle to their mean.
fn fill_mean(
    plane: &mut [u8],
    stride: usize,
    step: usize,
    c: usize,
    (x1, y1, x2, y2): (usize, usize, usize, usize),
) {
    if x2 <= x1 || y2 <= y1 {
        return;
    }
    let (mut sum, mut n) = (0u64, 0u64);
    for y in y1..y2 {
        for x in x1..x2 {
            if let Some(v) = plane.get(y * stride + x * step + c) {
                sum += u64::from(*v);
                n += 1;
            }
        }
    }
    let Some(mean) = (sum + n / 2).checked_div(n) else {
        return;
    };
    for y in y1..y2 {
        for x in x1..x2 {
            if let Some(v) = plane.get_mut(y * stride + x * step + c) {
                *v = mean as u8;
            }
        }
    }
}

/// Covers the regions of an I420 frame (each plane with its own mean), or blanks it.
pub(crate) fn apply_i420(
    frame: &mut gstreamer_video::VideoFrameRef<&mut gst::BufferRef>,
    cover: &Cover,
) {
    use gstreamer_video::prelude::*;
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    for plane in 0..3u32 {
        let (pw, ph) = if plane == 0 {
            (w, h)
        } else {
            (w.div_ceil(2), h.div_ceil(2))
        };
        let stride = frame.plane_stride()[plane as usize].max(0) as usize;
        let Ok(data) = frame.plane_data_mut(plane) else {
            continue;
        };
        match cover {
            Cover::Blank => {
                // Black: Y 16, chroma neutral.
                let v = if plane == 0 { 16 } else { 128 };
                for row in data.chunks_mut(stride.max(1)).take(ph) {
                    let end = pw.min(row.len());
                    row[..end].fill(v);
                }
            }
            Cover::Regions(regions) => {
                for r in regions {
                    let rect = r.grown(MARGIN).pixels(pw, ph);
                    fill_mean(data, stride, 1, 0, rect);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(x: f32) -> Region {
        Region {
            x1: x,
            y1: 0.2,
            x2: x + 0.1,
            y2: 0.4,
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn a_picture_gets_the_looks_on_both_sides_of_it() {
        let m = PrivacyMask::new(ms(50));
        m.publish(ms(0), vec![region(0.1)]);
        m.publish(ms(200), vec![region(0.3)]);
        assert_eq!(m.cover(ms(0)), Cover::Regions(vec![region(0.1)]));
        assert_eq!(
            m.cover(ms(100)),
            Cover::Regions(vec![region(0.3), region(0.1)])
        );
        assert_eq!(
            m.cover(ms(200)),
            Cover::Regions(vec![region(0.3), region(0.1)])
        );
        // Not looked at yet, and nothing comes: blanked after the wait.
        let t = Instant::now();
        assert_eq!(m.cover(ms(300)), Cover::Blank);
        assert!(t.elapsed() >= ms(50));
        assert_eq!(m.blanked.load(Ordering::Relaxed), 1);
        assert_eq!(m.covered.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_picture_waits_for_the_look_that_covers_it() {
        let m = Arc::new(PrivacyMask::new(Duration::from_secs(5)));
        let detector = {
            let m = m.clone();
            std::thread::spawn(move || {
                std::thread::sleep(ms(100));
                m.publish(ms(40), vec![region(0.5)]);
            })
        };
        let t = Instant::now();
        assert_eq!(m.cover(ms(33)), Cover::Regions(vec![region(0.5)]));
        assert!(t.elapsed() >= ms(90) && t.elapsed() < ms(2000));
        let _ = detector.join();
    }

    #[test]
    fn a_failed_detector_blanks_at_once_until_it_looks_again() {
        let m = PrivacyMask::new(Duration::from_secs(5));
        m.publish(ms(0), vec![]);
        m.fail("the model stopped");
        let t = Instant::now();
        assert_eq!(m.cover(ms(0)), Cover::Blank);
        assert!(t.elapsed() < ms(1000));
        assert_eq!(m.look(ms(0)), None);
        m.publish(ms(100), vec![]);
        assert_eq!(m.cover(ms(50)), Cover::Regions(vec![]));
        m.close();
        assert_eq!(m.cover(ms(500)), Cover::Blank);
    }

    #[test]
    fn cover_rgb_leaves_no_detail_inside_and_none_outside_touched() {
        let (w, h) = (40usize, 20usize);
        let mut rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let before = rgb.clone();
        let r = Region {
            x1: 0.25,
            y1: 0.25,
            x2: 0.5,
            y2: 0.75,
        };
        cover_rgb(&mut rgb, w, h, w * 3, &[r]);
        let (x1, y1, x2, y2) = r.grown(MARGIN).pixels(w, h);
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                let inside = (x1..x2).contains(&x) && (y1..y2).contains(&y);
                if inside {
                    let first = (y1 * w + x1) * 3;
                    assert_eq!(rgb[i..i + 3], rgb[first..first + 3]);
                } else {
                    assert_eq!(rgb[i..i + 3], before[i..i + 3]);
                }
            }
        }
    }
}
