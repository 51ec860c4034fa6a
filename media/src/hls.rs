//! HLS output on disk: the master playlist, the bounded segment ring, and clean-up.
//!
//! Each rendition has its own directory with `index.m3u8` and segments written by
//! `hlssink2`; the master playlist at `<stream>/index.m3u8` lists the renditions.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::spec::{RenditionSpec, ResolvedRendition};

/// Segments kept per rendition: the configured count, shrunk so that the whole ladder's
/// segments fit in `max_bytes` at the ladder's nominal bitrates, never below 3.
pub fn ring_size(
    ladder: &[RenditionSpec],
    segment_seconds: u32,
    max_segments: u32,
    max_bytes: u64,
) -> u32 {
    let total_kbps: u64 = ladder.iter().map(|r| u64::from(r.bitrate_kbps)).sum();
    // Segments of a VBR stream overshoot their nominal size; budget 1.5× for it.
    let per_segment = total_kbps * 1000 / 8 * u64::from(segment_seconds) * 3 / 2;
    let fit = max_bytes.checked_div(per_segment).unwrap_or(u64::MAX);
    let fit = u32::try_from(fit).unwrap_or(u32::MAX);
    fit.min(max_segments).max(3)
}

/// Removes the segments and the playlist a previous run left behind in a rendition directory,
/// so no player is sent to a segment that is gone.
pub fn remove_stale_segments(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if (name.starts_with("seg-") && name.ends_with(".ts")) || name == "index.m3u8" {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Writes `text` to `dir/name` atomically (write then rename).
fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
    }
    std::fs::rename(&tmp, dir.join(name))
}

struct RingEntry {
    file: String,
    seconds: f64,
    discontinuity: bool,
}

/// A rendition's live playlist written segment by segment, for renditions that arrive as
/// whole segments (an offloaded stream's, from an orchestrator or the local fallback) rather
/// than from `hlssink2`. Keeps the last `keep` segments and deletes older files.
pub struct SegmentRing {
    dir: PathBuf,
    run_id: String,
    keep: usize,
    entries: VecDeque<RingEntry>,
    /// Media sequence number of the first entry.
    sequence: u64,
    /// Discontinuities that left the playlist (`#EXT-X-DISCONTINUITY-SEQUENCE`).
    discontinuities: u64,
    next: u64,
}

impl SegmentRing {
    /// A ring in `dir` (created; stale segments of earlier runs removed).
    pub fn new(dir: PathBuf, run_id: &str, keep: u32) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        remove_stale_segments(&dir);
        Ok(Self {
            dir,
            run_id: run_id.to_string(),
            keep: keep.max(3) as usize,
            entries: VecDeque::new(),
            sequence: 0,
            discontinuities: 0,
            next: 0,
        })
    }

    /// Adds a segment of `seconds` and rewrites the playlist. `discontinuity` marks a
    /// segment encoded elsewhere than the one before it.
    pub fn push(&mut self, data: &[u8], seconds: f64, discontinuity: bool) -> std::io::Result<()> {
        let file = format!("seg-{}-{:05}.ts", self.run_id, self.next);
        self.next += 1;
        write_atomic(&self.dir, &file, data)?;
        self.entries.push_back(RingEntry {
            file,
            seconds,
            discontinuity: discontinuity && !self.entries.is_empty(),
        });
        while self.entries.len() > self.keep {
            if let Some(old) = self.entries.pop_front() {
                self.sequence += 1;
                if old.discontinuity {
                    self.discontinuities += 1;
                }
                let _ = std::fs::remove_file(self.dir.join(old.file));
            }
        }
        write_atomic(&self.dir, "index.m3u8", self.playlist().as_bytes())
    }

    pub fn playlist(&self) -> String {
        let target = self
            .entries
            .iter()
            .map(|e| e.seconds.ceil() as u64)
            .max()
            .unwrap_or(1)
            .max(1);
        let mut s = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
            self.sequence
        );
        if self.discontinuities > 0 {
            s.push_str(&format!(
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
                self.discontinuities
            ));
        }
        for e in &self.entries {
            if e.discontinuity {
                s.push_str("#EXT-X-DISCONTINUITY\n");
            }
            s.push_str(&format!("#EXTINF:{:.3},\n{}\n", e.seconds, e.file));
        }
        s
    }
}

/// Writes `index.m3u8` atomically (write then rename) so a player never reads half a file.
/// Writes `index.m3u8` listing `renditions`; `audio` is the RFC 6381 codec of the audio muxed
/// into each of them, if any.
pub fn write_master(
    dir: &Path,
    renditions: &[ResolvedRendition],
    audio: Option<&str>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let text = master_playlist(renditions, audio);
    let tmp = dir.join(".index.m3u8.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join("index.m3u8"))
}

/// The H.264 level (as the two hex digits of `avc1.PPCCLL`) a size and rate need.
fn level_hex(width: u32, height: u32, fps: f64) -> &'static str {
    let mbs = f64::from(width.div_ceil(16) * height.div_ceil(16)) * fps.max(1.0);
    match mbs {
        m if m <= 40_500.0 => "1e",  // 3.0
        m if m <= 108_000.0 => "1f", // 3.1
        m if m <= 245_760.0 => "28", // 4.0
        m if m <= 522_240.0 => "32", // 5.0
        _ => "33",                   // 5.1
    }
}

/// AAC's share of each variant's bandwidth, bits per second.
const AUDIO_BANDWIDTH: u64 = 128_000;

pub fn master_playlist(renditions: &[ResolvedRendition], audio: Option<&str>) -> String {
    let mut s = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for r in renditions {
        let fps = f64::from(r.fps.0) / f64::from(r.fps.1.max(1));
        let audio_bandwidth = if audio.is_some() { AUDIO_BANDWIDTH } else { 0 };
        let bandwidth = (u64::from(r.spec.bitrate_kbps) * 1000 + audio_bandwidth) * 11 / 10;
        let audio_codec = audio.map(|a| format!(",{a}")).unwrap_or_default();
        s.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={}x{},CODECS=\"{}{}{audio_codec}\",FRAME-RATE={fps:.3},NAME=\"{}\"\n{}/index.m3u8\n",
            r.width,
            r.height,
            r.spec.profile.rfc6381(),
            level_hex(r.width, r.height, fps),
            r.spec.name,
            r.spec.name,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::spec::{default_ladder, resolve_ladder};
    use super::*;

    #[test]
    fn ring_shrinks_to_the_byte_budget() {
        let ladder = default_ladder(); // 10 900 kbps in all
        assert_eq!(ring_size(&ladder, 2, 8, 1 << 30), 8);
        // 2 s of the ladder ≈ 2.7 MB, ×1.5 ≈ 4.1 MB: 20 MB fits 4.
        assert_eq!(ring_size(&ladder, 2, 8, 20_000_000), 4);
        assert_eq!(ring_size(&ladder, 2, 8, 1), 3);
    }

    #[test]
    fn the_ring_keeps_the_newest_segments_and_counts_what_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ring = SegmentRing::new(dir.path().to_path_buf(), "r", 3).expect("ring");
        for i in 0..5 {
            ring.push(b"ts", 2.0, i == 1).expect("push");
        }
        let files: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".ts"))
            .collect();
        assert_eq!(files.len(), 3);
        let text = std::fs::read_to_string(dir.path().join("index.m3u8")).expect("playlist");
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"), "{text}");
        // The discontinuity before segment 1 left with segment 1.
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
        assert!(text.ends_with("#EXTINF:2.000,\nseg-r-00004.ts\n"), "{text}");
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"));
    }

    #[test]
    fn master_lists_every_rendition() {
        let (r, _) = resolve_ladder(&default_ladder(), 1920, 1080, (30, 1), true, 2);
        let m = master_playlist(&r, None);
        assert!(m.starts_with("#EXTM3U\n"));
        assert_eq!(m.matches("#EXT-X-STREAM-INF").count(), 4);
        assert!(m.contains("RESOLUTION=1920x1080,CODECS=\"avc1.640028\""));
        assert!(m.contains("360p/index.m3u8"));
        // With audio muxed in: its codec beside the video's, its bitrate in the bandwidth.
        let m = master_playlist(&r, Some("mp4a.40.2"));
        assert_eq!(m.matches(",mp4a.40.2\"").count(), 4, "{m}");
        assert!(m.contains("CODECS=\"avc1.640028,mp4a.40.2\""), "{m}");
    }
}
