//! One rendition's LL-HLS media playlist, kept in memory: segments made of parts, the
//! initialisation sections they refer to, and the blocking a client's `_HLS_msn`/`_HLS_part`
//! asks for.
//!
//! Invariants: media sequence numbers only grow, also across runs of the stream (a new run
//! starts a segment with `EXT-X-DISCONTINUITY` and its own `EXT-X-MAP`); a segment starts
//! at a sync sample unless its source went [`RUNAWAY`] segment durations without one; what
//! is kept is bounded by [`KEEP`] segments.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

/// Complete segments kept (older ones are dropped with their parts).
pub const KEEP: usize = 6;
/// A segment this many target durations long is closed even without a sync sample to start
/// the next one (a source whose keyframes stopped must not grow one without bound).
const RUNAWAY: f64 = 6.0;

#[derive(Debug, Clone)]
struct Part {
    data: Bytes,
    seconds: f64,
    independent: bool,
}

#[derive(Debug, Clone)]
struct Segment {
    msn: u64,
    init: u64,
    discontinuity: bool,
    /// Wall-clock time of its first sample, milliseconds since the Unix epoch.
    date_ms: u64,
    parts: Vec<Part>,
    complete: bool,
}

impl Segment {
    fn seconds(&self) -> f64 {
        self.parts.iter().map(|p| p.seconds).sum()
    }
}

#[derive(Debug, Default)]
struct State {
    inits: Vec<(u64, Bytes)>,
    current_init: Option<u64>,
    segments: VecDeque<Segment>,
    /// Chunks (audio fragments) waiting for the video fragment that ends their part.
    pending: Vec<Bytes>,
    /// The next segment follows a new run of the muxer.
    discontinuity_next: bool,
    /// Discontinuities that left the playlist (`EXT-X-DISCONTINUITY-SEQUENCE`).
    discontinuities_gone: u64,
    longest: f64,
}

/// Changes of a playlist, seen from one request.
pub struct Changes(watch::Receiver<u64>);

impl Changes {
    /// Waits for a change since the last one seen (or since [`Playlist::watch`]) or `until`;
    /// `false` at the deadline.
    pub async fn next(&mut self, until: tokio::time::Instant) -> bool {
        tokio::time::timeout_at(until, self.0.changed())
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// What a blocking request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    Yes,
    NotYet,
    /// More than two segments ahead of the playlist: refused (400), as the spec says.
    TooFar,
}

pub struct Playlist {
    state: Mutex<State>,
    /// Bumped at every change; blocked requests wait on it.
    version: watch::Sender<u64>,
    pub part_target: Duration,
    pub segment_target: Duration,
}

impl Playlist {
    pub fn new(part_target: Duration, segment_target: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            version: watch::channel(0).0,
            part_target,
            segment_target,
        }
    }

    fn change<T>(&self, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        let out = self.state.lock().ok().map(|mut s| f(&mut s));
        self.version.send_modify(|v| *v += 1);
        out
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> Option<T> {
        self.state.lock().ok().map(|s| f(&s))
    }

    /// A new run of the muxer with its initialisation section (`ftyp` + `moov`): the open
    /// segment ends, the next one is a discontinuity with this section as its map.
    pub fn begin(&self, init: Bytes) {
        self.change(|s| {
            let id = s.inits.last().map_or(0, |(id, _)| id + 1);
            s.inits.push((id, init));
            s.current_init = Some(id);
            s.pending.clear();
            if let Some(last) = s.segments.back_mut() {
                last.complete = true;
                s.discontinuity_next = true;
            }
            s.segments.retain(|seg| !seg.parts.is_empty());
        });
    }

    /// An audio fragment (`moof` + `mdat`): it joins the part the next video fragment ends.
    pub fn push_audio(&self, chunk: Bytes) {
        if let Ok(mut s) = self.state.lock()
            && s.current_init.is_some()
            && s.pending.len() < 64
        {
            s.pending.push(chunk);
        }
    }

    /// A video fragment of `seconds` ends a part. `sync`: it starts with a sync sample (a
    /// segment may start here); `ends_gop`: the next video sample is a sync sample (the
    /// segment may end with this part, so the preload hint names the right next part).
    pub fn push_video(&self, chunk: Bytes, seconds: f64, sync: bool, ends_gop: bool, now_ms: u64) {
        let target = self.segment_target.as_secs_f64();
        let long_enough = |seg: &Segment| seg.seconds() + 1e-6 >= target / 2.0;
        self.change(|s| {
            let Some(init) = s.current_init else {
                return;
            };
            if let Some(last) = s.segments.back_mut()
                && !last.complete
                && (sync && long_enough(last) || last.seconds() >= target * RUNAWAY)
            {
                last.complete = true;
                let length = last.seconds();
                s.longest = s.longest.max(length);
            }
            if s.segments.back().is_none_or(|l| l.complete) {
                let msn = s.segments.back().map_or(0, |l| l.msn + 1);
                let discontinuity = std::mem::take(&mut s.discontinuity_next);
                s.segments.push_back(Segment {
                    msn,
                    init,
                    discontinuity,
                    date_ms: now_ms.saturating_sub((seconds * 1000.0) as u64),
                    parts: Vec::new(),
                    complete: false,
                });
            }
            let mut data = Vec::new();
            for c in s.pending.drain(..) {
                data.extend_from_slice(&c);
            }
            data.extend_from_slice(&chunk);
            let Some(open) = s.segments.back_mut() else {
                return;
            };
            open.parts.push(Part {
                data: Bytes::from(data),
                seconds,
                independent: sync,
            });
            if ends_gop && long_enough(open) {
                open.complete = true;
            }
            let done = open.complete;
            let length = open.seconds();
            if done {
                s.longest = s.longest.max(length);
            }
            while s.segments.iter().filter(|g| g.complete).count() > KEEP {
                if let Some(old) = s.segments.pop_front()
                    && old.discontinuity
                {
                    s.discontinuities_gone += 1;
                }
            }
            let used: Vec<u64> = s.segments.iter().map(|g| g.init).collect();
            s.inits
                .retain(|(id, _)| used.contains(id) || Some(*id) == s.current_init);
        });
    }

    /// A watcher of changes. Taken before looking at the playlist, so that a change between
    /// the look and the wait is not missed.
    pub fn watch(&self) -> Changes {
        Changes(self.version.subscribe())
    }

    /// Whether the playlist holds segment `msn` (complete), or its part `part` (or a later
    /// one) when `part` is given.
    pub fn ready(&self, msn: u64, part: Option<u64>) -> Ready {
        self.read(|s| {
            let Some(last) = s.segments.back() else {
                return if msn > 2 {
                    Ready::TooFar
                } else {
                    Ready::NotYet
                };
            };
            if msn > last.msn + 2 {
                return Ready::TooFar;
            }
            let have = match part {
                None => s.segments.iter().any(|g| g.msn >= msn && g.complete),
                Some(p) => {
                    // The newest part published, as (msn, index).
                    // A part past a complete segment's last is the next segment's first, which
                    // the order of (msn, index) pairs says too.
                    let newest = (last.msn, (last.parts.len() as u64).saturating_sub(1));
                    !last.parts.is_empty() && newest >= (msn, p)
                }
            };
            if have { Ready::Yes } else { Ready::NotYet }
        })
        .unwrap_or(Ready::NotYet)
    }

    /// Whether `(msn, part)` is the part the playlist hints at (the next one to come).
    pub fn is_next(&self, msn: u64, part: u64) -> bool {
        self.read(|s| next_part(s) == Some((msn, part)))
            .unwrap_or(false)
    }

    pub fn part(&self, msn: u64, part: u64) -> Option<Bytes> {
        self.read(|s| {
            s.segments
                .iter()
                .find(|g| g.msn == msn)
                .and_then(|g| g.parts.get(part as usize))
                .map(|p| p.data.clone())
        })
        .flatten()
    }

    /// A complete segment: its parts in order.
    pub fn segment(&self, msn: u64) -> Option<Bytes> {
        self.read(|s| {
            let g = s.segments.iter().find(|g| g.msn == msn && g.complete)?;
            let mut data = Vec::with_capacity(g.parts.iter().map(|p| p.data.len()).sum());
            for p in &g.parts {
                data.extend_from_slice(&p.data);
            }
            Some(Bytes::from(data))
        })
        .flatten()
    }

    pub fn init(&self, id: u64) -> Option<Bytes> {
        self.read(|s| {
            s.inits
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(_, b)| b.clone())
        })
        .flatten()
    }

    /// Bytes held (parts and initialisation sections).
    pub fn bytes(&self) -> usize {
        self.read(|s| {
            s.segments
                .iter()
                .flat_map(|g| g.parts.iter())
                .map(|p| p.data.len())
                .sum::<usize>()
                + s.inits.iter().map(|(_, b)| b.len()).sum::<usize>()
        })
        .unwrap_or(0)
    }

    /// The media playlist; `None` until the first part is published.
    pub fn render(&self) -> Option<String> {
        let part_target = self.part_target.as_secs_f64();
        let configured = self.segment_target.as_secs_f64();
        self.read(|s| {
            let first = s.segments.front()?;
            let target = s.longest.max(configured).round().max(1.0) as u64;
            let mut out = String::with_capacity(4096);
            let _ = write!(
                out,
                "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{target}\n\
                 #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}\n\
                 #EXT-X-PART-INF:PART-TARGET={part_target:.3}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
                part_target * 3.0,
                first.msn
            );
            if s.discontinuities_gone > 0 {
                let _ = writeln!(
                    out,
                    "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                    s.discontinuities_gone
                );
            }
            // Parts are listed for the segments in the last three target durations.
            let total: f64 = s.segments.iter().map(Segment::seconds).sum();
            let mut start = 0.0;
            let mut map = None;
            for g in &s.segments {
                let seconds = g.seconds();
                if g.discontinuity && map.is_some() {
                    out.push_str("#EXT-X-DISCONTINUITY\n");
                }
                if map != Some(g.init) {
                    let _ = writeln!(out, "#EXT-X-MAP:URI=\"init-{}.mp4\"", g.init);
                    map = Some(g.init);
                }
                let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339(g.date_ms));
                if start + seconds > total - 3.0 * target as f64 {
                    for (i, p) in g.parts.iter().enumerate() {
                        let _ = writeln!(
                            out,
                            "#EXT-X-PART:DURATION={:.5},URI=\"{}.{i}.mp4\"{}",
                            p.seconds,
                            g.msn,
                            if p.independent {
                                ",INDEPENDENT=YES"
                            } else {
                                ""
                            }
                        );
                    }
                }
                if g.complete {
                    let _ = write!(out, "#EXTINF:{seconds:.5},\n{}.mp4\n", g.msn);
                }
                start += seconds;
            }
            if let Some((msn, part)) = next_part(s) {
                let _ = writeln!(
                    out,
                    "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{msn}.{part}.mp4\""
                );
            }
            Some(out)
        })
        .flatten()
    }
}

fn next_part(s: &State) -> Option<(u64, u64)> {
    let last = s.segments.back()?;
    Some(if last.complete {
        (last.msn + 1, 0)
    } else {
        (last.msn, last.parts.len() as u64)
    })
}

fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    let (h, mi, sec, milli) = (t.hour(), t.minute(), t.second(), t.millisecond());
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playlist() -> Playlist {
        Playlist::new(Duration::from_millis(500), Duration::from_secs(2))
    }

    /// Pushes `gops` GOPs of 2 s, 4 parts of 0.5 s each with an audio chunk before each.
    fn feed(p: &Playlist, gops: usize) {
        for _ in 0..gops {
            for i in 0..4 {
                p.push_audio(Bytes::from_static(b"a"));
                p.push_video(Bytes::from_static(b"v"), 0.5, i == 0, i == 3, 1_000_000);
            }
        }
    }

    #[test]
    fn nothing_is_served_before_the_first_part() {
        let p = playlist();
        assert!(p.render().is_none());
        p.push_video(Bytes::from_static(b"v"), 0.5, true, false, 0);
        assert!(
            p.render().is_none(),
            "no part without an initialisation section"
        );
        assert_eq!(p.ready(0, Some(0)), Ready::NotYet);
        assert_eq!(p.ready(3, None), Ready::TooFar);
    }

    #[test]
    fn segments_close_at_the_gop_and_parts_carry_the_audio_before_them() {
        let p = playlist();
        p.begin(Bytes::from_static(b"init"));
        feed(&p, 2);
        let text = p.render().expect("playlist");
        assert!(
            text.contains("#EXT-X-PART-INF:PART-TARGET=0.500\n"),
            "{text}"
        );
        assert!(text.contains("PART-HOLD-BACK=1.500"), "{text}");
        assert!(text.contains("#EXT-X-MAP:URI=\"init-0.mp4\"\n"), "{text}");
        assert!(text.contains("#EXT-X-PART:DURATION=0.50000,URI=\"0.0.mp4\",INDEPENDENT=YES\n"));
        assert!(text.contains("#EXT-X-PART:DURATION=0.50000,URI=\"1.3.mp4\"\n"));
        assert!(text.contains("#EXTINF:2.00000,\n1.mp4\n"), "{text}");
        // Both segments are complete, so the hint names the next segment's first part.
        assert!(
            text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"2.0.mp4\"\n"),
            "{text}"
        );
        assert!(p.is_next(2, 0));
        assert_eq!(p.part(0, 1).as_deref(), Some(&b"av"[..]));
        assert_eq!(p.segment(1).as_deref(), Some(&b"avavavav"[..]));
        assert_eq!(p.segment(2), None);
    }

    #[test]
    fn blocking_requests_are_answered_when_the_part_exists() {
        let p = playlist();
        p.begin(Bytes::from_static(b"init"));
        feed(&p, 1);
        p.push_video(Bytes::from_static(b"v"), 0.5, true, false, 0);
        assert_eq!(p.ready(1, Some(0)), Ready::Yes);
        assert_eq!(p.ready(1, Some(1)), Ready::NotYet);
        assert_eq!(p.ready(1, None), Ready::NotYet);
        assert_eq!(p.ready(0, None), Ready::Yes);
        assert_eq!(
            p.ready(0, Some(7)),
            Ready::Yes,
            "past its last part: the next segment's first"
        );
        assert_eq!(p.ready(3, None), Ready::NotYet);
        assert_eq!(p.ready(4, None), Ready::TooFar);
    }

    #[test]
    fn a_segment_closes_late_when_the_gop_end_was_not_known() {
        let p = playlist();
        p.begin(Bytes::from_static(b"init"));
        for i in 0..4 {
            p.push_video(Bytes::from_static(b"v"), 0.5, i == 0, false, 0);
        }
        assert!(p.is_next(0, 4));
        p.push_video(Bytes::from_static(b"v"), 0.5, true, false, 0);
        let text = p.render().expect("playlist");
        assert!(
            text.contains("#EXTINF:2.00000,\n0.mp4\n#EXT-X-PROGRAM-DATE-TIME"),
            "{text}"
        );
        assert!(text.contains("URI=\"1.0.mp4\",INDEPENDENT=YES"), "{text}");
    }

    #[test]
    fn a_new_run_is_a_discontinuity_with_its_own_map_and_old_segments_leave() {
        let p = playlist();
        p.begin(Bytes::from_static(b"init-a"));
        feed(&p, 1);
        p.push_video(Bytes::from_static(b"v"), 0.5, true, false, 0);
        p.begin(Bytes::from_static(b"init-b"));
        feed(&p, 1);
        let text = p.render().expect("playlist");
        assert!(
            text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-1.mp4\"\n"),
            "{text}"
        );
        assert!(
            text.contains("#EXTINF:0.50000,\n1.mp4\n"),
            "the cut segment is complete: {text}"
        );
        assert!(text.contains("URI=\"2.0.mp4\",INDEPENDENT=YES"), "{text}");
        assert_eq!(p.init(1).as_deref(), Some(&b"init-b"[..]));
        feed(&p, KEEP + 2);
        let text = p.render().expect("playlist");
        assert_eq!(text.matches("#EXTINF").count(), KEEP, "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
        assert_eq!(p.init(0), None, "an unused map is dropped");
        // Parts are listed only for the last three target durations (3 segments of 2 s).
        assert_eq!(text.matches("#EXT-X-PART:").count(), 12, "{text}");
    }

    #[test]
    fn a_source_without_keyframes_still_gets_bounded_segments() {
        let p = playlist();
        p.begin(Bytes::from_static(b"init"));
        p.push_video(Bytes::from_static(b"v"), 0.5, true, false, 0);
        for _ in 0..40 {
            p.push_video(Bytes::from_static(b"v"), 0.5, false, false, 0);
        }
        let text = p.render().expect("playlist");
        assert!(text.contains("#EXTINF:12.00000,\n0.mp4\n"), "{text}");
        assert!(text.contains("#EXT-X-TARGETDURATION:12\n"), "{text}");
    }

    #[tokio::test]
    async fn a_change_between_looking_and_waiting_is_not_missed() {
        let p = playlist();
        let mut changes = p.watch();
        // The part is published after the request looked and before it waits.
        p.begin(Bytes::from_static(b"init"));
        let soon = || tokio::time::Instant::now() + Duration::from_millis(50);
        assert!(changes.next(soon()).await);
        assert!(!changes.next(soon()).await, "nothing new since");
    }

    #[test]
    fn program_dates_are_rfc3339() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
