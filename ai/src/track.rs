//! Detections over time become objects: an IoU/centroid tracker with stable ids, zones, and
//! the minimum duration after which an object is an event. Pure: time is what the caller
//! says (the pictures' timestamps), so the tracker is exact under test and replay.
//!
//! Boxes are normalised to the picture (0 to 1), like the zones.

use std::time::Duration;

use crate::detect::BoundingBox;

/// What the detector saw of one object in one picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub label: String,
    pub score: f32,
    pub bbox: BoundingBox,
}

/// A named polygon, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneShape {
    pub name: String,
    pub points: Vec<(f32, f32)>,
}

impl ZoneShape {
    /// Whether `(x, y)` is inside (even-odd rule; a point on an edge may fall either way).
    pub fn contains(&self, x: f32, y: f32) -> bool {
        let p = &self.points;
        let mut inside = false;
        let mut j = p.len().wrapping_sub(1);
        for i in 0..p.len() {
            let (xi, yi) = p[i];
            let (xj, yj) = p[j];
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                inside = !inside;
            }
            j = i;
        }
        inside
    }
}

#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// How long an object must qualify (be seen, in a zone when there are zones) before it
    /// is started.
    pub min_duration: Duration,
    /// An object not matched for this long has ended.
    pub lost_after: Duration,
    pub zones: Vec<ZoneShape>,
}

/// Matched by overlap at least this much.
const IOU_MATCH: f32 = 0.3;
/// Or, failing overlap, by centres closer than this share of the track's box diagonal (a
/// small object moving fast between two looks overlaps nothing).
const CENTROID_MATCH: f32 = 0.75;
/// A score better by this much than the best so far makes a new best picture.
const BETTER_BY: f32 = 0.05;

#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// Stable for the object's life within this tracker.
    pub id: u64,
    pub label: String,
    /// Where it was last seen.
    pub bbox: BoundingBox,
    pub score: f32,
    pub best_score: f32,
    pub first_seen: Duration,
    pub last_seen: Duration,
    /// The zones the middle of its bottom edge is in, in the configuration's order.
    pub zones: Vec<String>,
    /// Whether `Started` was reported (and `Ended` will be).
    pub started: bool,
    qualifying_since: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Started,
    /// Entered or left a zone.
    Zones,
    /// Seen with a better score (a better picture of it).
    Better,
    Ended,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrackEvent {
    pub change: Change,
    pub track: Track,
}

/// What one update found.
#[derive(Debug, Default)]
pub struct Update {
    /// Events to publish, in order.
    pub events: Vec<TrackEvent>,
    /// Tracks (started or not) seen in this picture at their best so far: the picture is
    /// worth keeping as their snapshot.
    pub best_now: Vec<u64>,
}

#[derive(Debug)]
pub struct Tracker {
    cfg: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Self {
            cfg,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    /// The objects being followed (started or not).
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    fn zones_of(&self, b: &BoundingBox) -> Vec<String> {
        let (x, y) = ((b.x1 + b.x2) / 2.0, b.y2);
        self.cfg
            .zones
            .iter()
            .filter(|z| z.contains(x, y))
            .map(|z| z.name.clone())
            .collect()
    }

    /// Takes the observations of the picture at `t` (later than the previous one's).
    pub fn update(&mut self, t: Duration, observations: Vec<Observation>) -> Update {
        let mut out = Update::default();
        // Greedy assignment by affinity: overlap first, then closeness of centres.
        let mut pairs = Vec::new();
        for (ti, tr) in self.tracks.iter().enumerate() {
            for (oi, o) in observations.iter().enumerate() {
                if o.label != tr.label {
                    continue;
                }
                let iou = tr.bbox.iou(&o.bbox);
                let affinity = if iou >= IOU_MATCH {
                    1.0 + iou
                } else {
                    let d = centre_distance(&tr.bbox, &o.bbox);
                    let limit = CENTROID_MATCH * diagonal(&tr.bbox);
                    if d < limit { 1.0 - d / limit } else { continue }
                };
                pairs.push((affinity, ti, oi));
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_taken = vec![false; self.tracks.len()];
        let mut obs_of: Vec<Option<usize>> = vec![None; observations.len()];
        for (_, ti, oi) in pairs {
            if track_taken[ti] || obs_of[oi].is_some() {
                continue;
            }
            track_taken[ti] = true;
            obs_of[oi] = Some(ti);
        }
        for (oi, o) in observations.into_iter().enumerate() {
            let zones = self.zones_of(&o.bbox);
            match obs_of[oi] {
                Some(ti) => {
                    let tr = &mut self.tracks[ti];
                    let better = o.score >= tr.best_score + BETTER_BY;
                    let zones_changed = zones != tr.zones;
                    tr.bbox = o.bbox;
                    tr.score = o.score;
                    tr.last_seen = t;
                    tr.zones = zones;
                    if better {
                        tr.best_score = o.score;
                        out.best_now.push(tr.id);
                    }
                    if tr.started && zones_changed {
                        out.events.push(TrackEvent {
                            change: Change::Zones,
                            track: tr.clone(),
                        });
                    } else if tr.started && better {
                        out.events.push(TrackEvent {
                            change: Change::Better,
                            track: tr.clone(),
                        });
                    }
                }
                None => {
                    let id = self.next_id;
                    self.next_id += 1;
                    out.best_now.push(id);
                    self.tracks.push(Track {
                        id,
                        label: o.label,
                        bbox: o.bbox,
                        score: o.score,
                        best_score: o.score,
                        first_seen: t,
                        last_seen: t,
                        zones,
                        started: false,
                        qualifying_since: None,
                    });
                }
            }
        }
        let has_zones = !self.cfg.zones.is_empty();
        let (min, lost) = (self.cfg.min_duration, self.cfg.lost_after);
        let mut kept = Vec::with_capacity(self.tracks.len());
        for mut tr in std::mem::take(&mut self.tracks) {
            if t.saturating_sub(tr.last_seen) >= lost {
                if tr.started {
                    out.events.push(TrackEvent {
                        change: Change::Ended,
                        track: tr,
                    });
                }
                continue;
            }
            let qualifies = tr.last_seen == t && (!has_zones || !tr.zones.is_empty());
            if qualifies {
                let since = *tr.qualifying_since.get_or_insert(t);
                if !tr.started && t.saturating_sub(since) >= min {
                    tr.started = true;
                    out.events.push(TrackEvent {
                        change: Change::Started,
                        track: tr.clone(),
                    });
                }
            } else if tr.last_seen == t {
                tr.qualifying_since = None;
            }
            kept.push(tr);
        }
        self.tracks = kept;
        out
    }

    /// Ends every started object (the stream stopped).
    pub fn finish(&mut self) -> Vec<TrackEvent> {
        std::mem::take(&mut self.tracks)
            .into_iter()
            .filter(|t| t.started)
            .map(|track| TrackEvent {
                change: Change::Ended,
                track,
            })
            .collect()
    }
}

fn centre_distance(a: &BoundingBox, b: &BoundingBox) -> f32 {
    let dx = (a.x1 + a.x2 - b.x1 - b.x2) / 2.0;
    let dy = (a.y1 + a.y2 - b.y1 - b.y2) / 2.0;
    (dx * dx + dy * dy).sqrt()
}

fn diagonal(b: &BoundingBox) -> f32 {
    let (w, h) = (b.x2 - b.x1, b.y2 - b.y1);
    (w * w + h * h).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(x: f32, y: f32, w: f32, h: f32) -> BoundingBox {
        BoundingBox {
            x1: x,
            y1: y,
            x2: x + w,
            y2: y + h,
        }
    }

    fn obs(label: &str, score: f32, b: BoundingBox) -> Observation {
        Observation {
            label: label.into(),
            score,
            bbox: b,
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn cfg(zones: Vec<ZoneShape>) -> TrackerConfig {
        TrackerConfig {
            min_duration: ms(400),
            lost_after: ms(1000),
            zones,
        }
    }

    fn changes(u: &Update) -> Vec<(Change, u64)> {
        u.events.iter().map(|e| (e.change, e.track.id)).collect()
    }

    #[test]
    fn ids_hold_while_objects_move_and_cross() {
        let mut t = Tracker::new(cfg(vec![]));
        // Two people walking past each other, one a little nearer the camera; their boxes
        // overlap as they pass and never swap ids.
        let mut ids = Vec::new();
        for step in 0..10u64 {
            let f = step as f32 * 0.05;
            let u = t.update(
                ms(step * 200),
                vec![
                    obs("person", 0.9, bx(0.1 + f, 0.4, 0.1, 0.3)),
                    obs("person", 0.8, bx(0.8 - f, 0.55, 0.1, 0.3)),
                ],
            );
            let _ = u;
            let mut now: Vec<(u64, f32)> =
                t.tracks().iter().map(|tr| (tr.id, tr.bbox.x1)).collect();
            now.sort_by_key(|p| p.0);
            ids.push(now);
        }
        for (step, now) in ids.iter().enumerate() {
            assert_eq!(now.len(), 2, "step {step}: {now:?}");
            let f = step as f32 * 0.05;
            assert!((now[0].1 - (0.1 + f)).abs() < 1e-6, "step {step}: {now:?}");
            assert!((now[1].1 - (0.8 - f)).abs() < 1e-6, "step {step}: {now:?}");
        }
    }

    #[test]
    fn a_fast_small_object_is_followed_by_its_centre() {
        let mut t = Tracker::new(cfg(vec![]));
        t.update(ms(0), vec![obs("ball", 0.9, bx(0.10, 0.5, 0.05, 0.05))]);
        // Moved a box width and a half: no overlap, but close.
        t.update(ms(200), vec![obs("ball", 0.9, bx(0.13, 0.5, 0.05, 0.05))]);
        assert_eq!(t.tracks().len(), 1);
        // Far away: another object.
        t.update(ms(400), vec![obs("ball", 0.9, bx(0.80, 0.5, 0.05, 0.05))]);
        assert_eq!(t.tracks().iter().map(|t| t.id).max(), Some(2));
    }

    #[test]
    fn labels_never_match_each_other() {
        let mut t = Tracker::new(cfg(vec![]));
        t.update(ms(0), vec![obs("person", 0.9, bx(0.1, 0.1, 0.2, 0.2))]);
        t.update(ms(200), vec![obs("car", 0.9, bx(0.1, 0.1, 0.2, 0.2))]);
        assert_eq!(t.tracks().len(), 2);
    }

    #[test]
    fn started_after_min_duration_and_ended_when_lost() {
        let mut t = Tracker::new(cfg(vec![]));
        let b = bx(0.2, 0.2, 0.2, 0.2);
        let u = t.update(ms(0), vec![obs("person", 0.6, b)]);
        assert!(u.events.is_empty());
        assert_eq!(u.best_now, vec![1]);
        assert!(
            t.update(ms(200), vec![obs("person", 0.6, b)])
                .events
                .is_empty()
        );
        let u = t.update(ms(400), vec![obs("person", 0.62, b)]);
        assert_eq!(changes(&u), vec![(Change::Started, 1)]);
        assert!(u.best_now.is_empty(), "0.62 is not better by 0.05");
        let u = t.update(ms(600), vec![obs("person", 0.9, b)]);
        assert_eq!(changes(&u), vec![(Change::Better, 1)]);
        assert_eq!(u.best_now, vec![1]);
        // Not seen: still alive until lost_after.
        assert!(t.update(ms(1400), vec![]).events.is_empty());
        let u = t.update(ms(1600), vec![]);
        assert_eq!(changes(&u), vec![(Change::Ended, 1)]);
        assert_eq!(u.events[0].track.best_score, 0.9);
        assert!(t.tracks().is_empty());
    }

    #[test]
    fn a_flicker_shorter_than_min_duration_is_never_an_event() {
        let mut t = Tracker::new(cfg(vec![]));
        let b = bx(0.2, 0.2, 0.2, 0.2);
        t.update(ms(0), vec![obs("person", 0.6, b)]);
        t.update(ms(200), vec![obs("person", 0.6, b)]);
        for step in 2..10 {
            assert!(t.update(ms(step * 200), vec![]).events.is_empty());
        }
        assert!(t.tracks().is_empty());
        assert!(t.finish().is_empty());
    }

    #[test]
    fn zones_gate_starting_and_report_entering_and_leaving() {
        // The left half of the picture.
        let door = ZoneShape {
            name: "door".into(),
            points: vec![(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)],
        };
        let mut t = Tracker::new(cfg(vec![door]));
        // A box moving left to right along a row; its bottom-middle is the anchor.
        let at = |x: f32| obs("person", 0.7, bx(x, 0.3, 0.1, 0.2));
        // Outside (anchor at 0.65, 0.7): followed, never started.
        for step in 0..4 {
            let u = t.update(ms(step * 200), vec![at(0.6 - step as f32 * 0.02)]);
            assert!(u.events.is_empty());
        }
        // Crosses into the zone at x = 0.42 (anchor 0.47): starts after min_duration there.
        assert!(t.update(ms(800), vec![at(0.42)]).events.is_empty());
        assert!(t.update(ms(1000), vec![at(0.41)]).events.is_empty());
        let u = t.update(ms(1200), vec![at(0.40)]);
        assert_eq!(changes(&u), vec![(Change::Started, 1)]);
        assert_eq!(u.events[0].track.zones, vec!["door".to_string()]);
        // Leaves: an update with no zones.
        let u = t.update(ms(1400), vec![at(0.47)]);
        assert_eq!(changes(&u), vec![(Change::Zones, 1)]);
        assert!(u.events[0].track.zones.is_empty());
        // Comes back.
        let u = t.update(ms(1600), vec![at(0.40)]);
        assert_eq!(changes(&u), vec![(Change::Zones, 1)]);
        assert_eq!(t.finish().len(), 1);
    }

    #[test]
    fn polygon_contains_is_even_odd() {
        // A "U": the notch is outside.
        let u = ZoneShape {
            name: "u".into(),
            points: vec![
                (0.0, 0.0),
                (0.3, 0.0),
                (0.3, 0.7),
                (0.7, 0.7),
                (0.7, 0.0),
                (1.0, 0.0),
                (1.0, 1.0),
                (0.0, 1.0),
            ],
        };
        assert!(u.contains(0.1, 0.5));
        assert!(u.contains(0.5, 0.9));
        assert!(!u.contains(0.5, 0.3));
        assert!(!u.contains(1.2, 0.5));
    }
}
