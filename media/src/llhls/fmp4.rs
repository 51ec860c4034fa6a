//! Just enough of ISO BMFF to cut `mp4mux`'s fragmented output into LL-HLS parts: top-level
//! boxes out of a byte stream, the tracks of a `moov`, and each `traf` of a `moof` (its
//! track, start, duration and whether it begins with a sync sample).
//!
//! The input is our own muxer's output, but it is still read with bounds checked
//! everywhere: a short or odd box is skipped, never indexed past its end.

/// Reads big-endian integers at offsets, `None` past the end.
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_be_bytes(a))
}

/// The boxes inside `data`, as `(type, payload)`; stops at the first malformed header.
pub fn children(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let (kind, header, size) = header(data.get(at..)?)?;
        let whole = data.get(at..at.checked_add(size)?)?;
        at += size;
        Some((kind, whole.get(header..)?))
    })
}

/// A box header at the start of `b`: its type, header length and whole size. `None` when
/// the header is incomplete or says less than itself.
pub fn header(b: &[u8]) -> Option<([u8; 4], usize, usize)> {
    let size32 = u32_at(b, 0)?;
    let kind: [u8; 4] = b.get(4..8)?.try_into().ok()?;
    let (header, size) = match size32 {
        1 => (16usize, usize::try_from(u64_at(b, 8)?).ok()?),
        // "To the end of the file": unusable in a stream; the caller waits forever, so refuse.
        0 => return None,
        n => (8usize, n as usize),
    };
    (size >= header).then_some((kind, header, size))
}

fn find<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    children(data).find(|(k, _)| k == kind).map(|(_, p)| p)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Track {
    pub id: u32,
    pub timescale: u32,
    pub video: bool,
    pub default_duration: u32,
    pub default_flags: u32,
}

/// The tracks a `moov` payload declares, with their `trex` defaults.
pub fn tracks(moov: &[u8]) -> Vec<Track> {
    let mut out = Vec::new();
    for (kind, trak) in children(moov) {
        if &kind != b"trak" {
            continue;
        }
        let Some(tkhd) = find(trak, b"tkhd") else {
            continue;
        };
        let id = match tkhd.first() {
            Some(1) => u32_at(tkhd, 20),
            _ => u32_at(tkhd, 12),
        };
        let Some(mdia) = find(trak, b"mdia") else {
            continue;
        };
        let timescale = find(mdia, b"mdhd").and_then(|m| match m.first() {
            Some(1) => u32_at(m, 20),
            _ => u32_at(m, 12),
        });
        let video = find(mdia, b"hdlr").and_then(|h| h.get(8..12)) == Some(b"vide");
        if let (Some(id), Some(timescale)) = (id, timescale.filter(|t| *t > 0)) {
            out.push(Track {
                id,
                timescale,
                video,
                default_duration: 0,
                default_flags: 0,
            });
        }
    }
    if let Some(mvex) = find(moov, b"mvex") {
        for (kind, trex) in children(mvex) {
            if &kind != b"trex" {
                continue;
            }
            if let Some(t) = u32_at(trex, 4).and_then(|id| out.iter_mut().find(|t| t.id == id)) {
                t.default_duration = u32_at(trex, 12).unwrap_or(0);
                t.default_flags = u32_at(trex, 20).unwrap_or(0);
            }
        }
    }
    out
}

/// One track's run in a `moof`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub track: Track,
    /// Start (`tfdt`) in the track's timescale.
    pub decode_time: u64,
    /// Sum of the samples' durations, in the track's timescale.
    pub duration: u64,
    pub starts_with_sync: bool,
}

impl Run {
    pub fn seconds(&self) -> f64 {
        self.duration as f64 / f64::from(self.track.timescale)
    }
}

/// A sample flag: the sample is not a sync sample.
const NON_SYNC: u32 = 0x0001_0000;

/// Each `traf` of a `moof` payload, for the tracks in `tracks`.
pub fn runs(moof: &[u8], tracks: &[Track]) -> Vec<Run> {
    let mut out = Vec::new();
    for (kind, traf) in children(moof) {
        if &kind != b"traf" {
            continue;
        }
        if let Some(run) = traf_run(traf, tracks) {
            out.push(run);
        }
    }
    out
}

fn traf_run(traf: &[u8], tracks: &[Track]) -> Option<Run> {
    let tfhd = find(traf, b"tfhd")?;
    let flags = u32_at(tfhd, 0)? & 0x00ff_ffff;
    let id = u32_at(tfhd, 4)?;
    let track = *tracks.iter().find(|t| t.id == id)?;
    let mut at = 8usize;
    if flags & 0x01 != 0 {
        at += 8;
    }
    if flags & 0x02 != 0 {
        at += 4;
    }
    let mut default_duration = track.default_duration;
    if flags & 0x08 != 0 {
        default_duration = u32_at(tfhd, at)?;
        at += 4;
    }
    if flags & 0x10 != 0 {
        at += 4;
    }
    let mut default_flags = track.default_flags;
    if flags & 0x20 != 0 {
        default_flags = u32_at(tfhd, at)?;
    }
    let decode_time = find(traf, b"tfdt")
        .and_then(|t| match t.first() {
            Some(1) => u64_at(t, 4),
            _ => u32_at(t, 4).map(u64::from),
        })
        .unwrap_or(0);
    let mut duration = 0u64;
    let mut first_flags = None;
    for (kind, trun) in children(traf) {
        if &kind != b"trun" {
            continue;
        }
        let flags = u32_at(trun, 0)? & 0x00ff_ffff;
        let count = u32_at(trun, 4)?;
        let mut at = 8usize;
        if flags & 0x001 != 0 {
            at += 4;
        }
        let mut run_first = None;
        if flags & 0x004 != 0 {
            run_first = Some(u32_at(trun, at)?);
            at += 4;
        }
        let per_sample = [0x100u32, 0x200, 0x400, 0x800]
            .iter()
            .filter(|f| flags & **f != 0)
            .count()
            * 4;
        for i in 0..count as usize {
            let mut field = at.checked_add(i.checked_mul(per_sample)?)?;
            let d = if flags & 0x100 != 0 {
                let d = u32_at(trun, field)?;
                field += 4;
                d
            } else {
                default_duration
            };
            if flags & 0x200 != 0 {
                field += 4;
            }
            if i == 0 && first_flags.is_none() {
                first_flags = Some(if flags & 0x400 != 0 {
                    u32_at(trun, field)?
                } else {
                    run_first.unwrap_or(default_flags)
                });
            }
            duration += u64::from(d);
        }
    }
    Some(Run {
        track,
        decode_time,
        duration,
        starts_with_sync: first_flags.is_some_and(|f| f & NON_SYNC == 0),
    })
}

/// A whole box: its type and its bytes, header included.
pub type WholeBox = ([u8; 4], Vec<u8>);

/// Cuts a byte stream into whole top-level boxes, holding what is incomplete.
#[derive(Default)]
pub struct Splitter {
    pending: Vec<u8>,
}

/// The largest box accepted (a `mdat` of one part of a high-rate source is a few MB).
pub const MAX_BOX: usize = 64 << 20;

impl Splitter {
    /// Appends `data` and returns each box completed, header included. `Err`: a box claims to
    /// be larger than [`MAX_BOX`] or its header is malformed; the stream cannot be followed.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<WholeBox>, String> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            if self.pending.len() < 16 && u32_at(&self.pending, 0) == Some(1) {
                break;
            }
            if self.pending.len() < 8 {
                break;
            }
            let Some((kind, _, size)) = header(&self.pending) else {
                return Err("malformed box header in the muxer's output".into());
            };
            if size > MAX_BOX {
                return Err(format!("a {size}-byte box is larger than allowed"));
            }
            if self.pending.len() < size {
                break;
            }
            let rest = self.pending.split_off(size);
            out.push((kind, std::mem::replace(&mut self.pending, rest)));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(payload);
        v
    }

    fn full(version: u8, flags: u32, rest: &[u8]) -> Vec<u8> {
        let mut v = ((u32::from(version) << 24) | flags).to_be_bytes().to_vec();
        v.extend_from_slice(rest);
        v
    }

    fn be(parts: &[u32]) -> Vec<u8> {
        parts.iter().flat_map(|p| p.to_be_bytes()).collect()
    }

    fn moov() -> Vec<u8> {
        let trak = |id: u32, scale: u32, handler: &[u8; 4]| {
            let tkhd = bx(b"tkhd", &full(0, 7, &be(&[0, 0, id, 0, 0])));
            let mdhd = bx(b"mdhd", &full(0, 0, &be(&[0, 0, scale, 0])));
            let mut h = be(&[0]);
            h.extend_from_slice(handler);
            let hdlr = bx(b"hdlr", &full(0, 0, &h));
            let mdia = bx(b"mdia", &[mdhd, hdlr].concat());
            bx(b"trak", &[tkhd, mdia].concat())
        };
        let trex =
            |id: u32, dur: u32, flags: u32| bx(b"trex", &full(0, 0, &be(&[id, 1, dur, 0, flags])));
        let mvex = bx(
            b"mvex",
            &[trex(1, 3000, NON_SYNC), trex(2, 1024, 0)].concat(),
        );
        [trak(1, 90_000, b"vide"), trak(2, 48_000, b"soun"), mvex].concat()
    }

    #[test]
    fn tracks_come_with_their_defaults() {
        let t = tracks(&moov());
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0],
            Track {
                id: 1,
                timescale: 90_000,
                video: true,
                default_duration: 3000,
                default_flags: NON_SYNC
            }
        );
        assert!(!t[1].video);
        assert_eq!(t[1].default_duration, 1024);
    }

    #[test]
    fn a_run_with_first_sample_flags_and_default_durations() {
        let t = tracks(&moov());
        // tfhd: track 1, default duration 3000 (flag 0x08).
        let tfhd = bx(b"tfhd", &full(0, 0x08, &be(&[1, 3000])));
        let tfdt = bx(b"tfdt", &full(1, 0, &[0, 0, 0, 0, 0, 1, 0x5f, 0x90]));
        // trun: 15 samples, data offset, first sample flags = sync, sizes per sample.
        let mut trun = be(&[15, 100, 0x0200_0000]);
        trun.extend(be(&[10; 15]));
        let trun = bx(b"trun", &full(0, 0x001 | 0x004 | 0x200, &trun));
        let traf = bx(b"traf", &[tfhd, tfdt, trun].concat());
        let moof = [bx(b"mfhd", &full(0, 0, &be(&[1]))), traf].concat();
        let r = runs(&moof, &t);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].decode_time, 90_000);
        assert_eq!(r[0].duration, 45_000);
        assert!((r[0].seconds() - 0.5).abs() < 1e-9);
        assert!(r[0].starts_with_sync);
    }

    #[test]
    fn a_run_with_per_sample_durations_and_flags() {
        let t = tracks(&moov());
        let tfhd = bx(b"tfhd", &full(0, 0, &be(&[1])));
        let trun = full(0, 0x100 | 0x400, &be(&[2, 3000, NON_SYNC, 3003, NON_SYNC]));
        let traf = bx(b"traf", &[tfhd, bx(b"trun", &trun)].concat());
        let r = runs(&traf, &t);
        assert_eq!(r[0].duration, 6003);
        assert!(!r[0].starts_with_sync);
        // Audio: trex defaults (flags 0 = sync).
        let tfhd = bx(b"tfhd", &full(0, 0, &be(&[2])));
        let traf = bx(
            b"traf",
            &[tfhd, bx(b"trun", &full(0, 0, &be(&[4])))].concat(),
        );
        let r = runs(&traf, &t);
        assert_eq!(r[0].duration, 4096);
        assert!(r[0].starts_with_sync && !r[0].track.video);
    }

    #[test]
    fn truncated_and_lying_boxes_are_skipped() {
        let t = tracks(&moov());
        // A trun claiming 1000 samples with none present.
        let tfhd = bx(b"tfhd", &full(0, 0, &be(&[1])));
        let traf = bx(
            b"traf",
            &[tfhd, bx(b"trun", &full(0, 0x100, &be(&[1000])))].concat(),
        );
        assert!(runs(&traf, &t).is_empty());
        // Headers that say less than themselves, or are cut.
        assert_eq!(children(&[0, 0, 0, 4, b'm', b'o', b'o', b'f']).count(), 0);
        assert_eq!(children(&[0, 0, 0, 9, b'm']).count(), 0);
        assert!(tracks(&[0xff; 40]).is_empty());
    }

    #[test]
    fn the_splitter_returns_whole_boxes_across_pushes() {
        let a = bx(b"moof", &[1, 2, 3]);
        let b = bx(b"mdat", &[9; 20]);
        let stream = [a.clone(), b.clone()].concat();
        let mut s = Splitter::default();
        let mut got = Vec::new();
        for chunk in stream.chunks(5) {
            got.extend(s.push(chunk).expect("push"));
        }
        assert_eq!(got, vec![(*b"moof", a), (*b"mdat", b)]);
        let mut s = Splitter::default();
        assert!(s.push(&[0, 0, 0, 3, b'x', b'x', b'x', b'x']).is_err());
        assert!(s.push(&[]).is_err(), "a broken stream stays broken");
    }
}
