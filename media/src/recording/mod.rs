//! Recording: streams written to disk as fragmented MP4 files, the timeline over them,
//! playback as HLS VOD, clip export, and retention.
//!
//! Layout, the only index there is (nothing to get out of step with the files):
//!
//! ```text
//! <root>/<stream id>/<YYYY-MM-DD, UTC>/<start ms>-<duration ms>.mp4   finished
//! <root>/<stream id>/<YYYY-MM-DD, UTC>/<start ms>.mp4                 being written
//! ```
//!
//! Each file is about [`FILE_SECONDS`] long, starts at a keyframe, and is fragmented (a
//! fragment a second), so a power cut loses at most the last second: a file left without
//! its duration is measured and renamed when the stream's recorder next starts.
//!
//! `recorder` writes one stream's files (fed by a [`crate::tap::Tap`], never holding the
//! stream up); `retention` deletes the oldest files by age, by the recordings' share of the
//! disk and, before the disk fills, in an emergency purge; `export` cuts a clip; this module
//! lists, measures and serves what is on disk.

mod export;
pub mod recorder;
mod retention;

pub use export::ExportError;
pub use retention::{DiskSpace, Retention, RetentionReport, keep};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

/// Target length of one file; files are cut at the first keyframe after it.
pub const FILE_SECONDS: u64 = 10;
/// The longest range one timeline or playlist request covers.
pub const MAX_RANGE_MS: u64 = 7 * 24 * 3600 * 1000;
/// The longest clip an export makes.
pub const MAX_CLIP_MS: u64 = 2 * 3600 * 1000;
/// Files further apart than this are separate spans of the timeline.
const SPAN_GAP_MS: u64 = 1500;

/// One finished file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Segment {
    /// Milliseconds since the Unix epoch.
    pub start_ms: u64,
    pub duration_ms: u64,
    pub bytes: u64,
    /// `<day>/<file>`, relative to the stream's directory.
    pub name: String,
}

impl Segment {
    pub fn end_ms(&self) -> u64 {
        self.start_ms + self.duration_ms
    }
}

/// A stretch of time recorded without a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Span {
    pub from_ms: u64,
    pub to_ms: u64,
}

/// Where recordings live and how much of the disk they hold.
pub struct Library {
    root: PathBuf,
    retention: Retention,
    /// Bytes of all finished files (counted at start, kept up to date since).
    bytes: AtomicU64,
    /// Set by the emergency purge when nothing is left to delete and the disk is still too
    /// full: recorders stop writing until it clears.
    disk_full: AtomicBool,
    exporting: tokio::sync::Semaphore,
}

impl Library {
    /// A library at `root` (created); its usage is counted in the background.
    pub fn open(root: PathBuf, retention: Retention) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&root)?;
        let lib = Self {
            root,
            retention,
            bytes: AtomicU64::new(0),
            disk_full: AtomicBool::new(false),
            exporting: tokio::sync::Semaphore::new(1),
        };
        let lib = Arc::new(lib);
        // Months of 10 s files are hundreds of thousands of them: counted on a thread of its
        // own, not in the node's start-up. Until then the budget sees less than there is; the
        // free-space purge reads the filesystem and is never misled.
        let counting = Arc::clone(&lib);
        let spawned = std::thread::Builder::new()
            .name("recordings-count".into())
            .spawn(move || {
                let total: u64 = counting
                    .streams()
                    .iter()
                    .flat_map(|s| counting.days(s))
                    .flat_map(|(_, dir)| files(&dir))
                    .map(|f| f.bytes)
                    .sum();
                counting.bytes.fetch_add(total, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            tracing::warn!("recordings are not counted: {e}");
        }
        Ok(lib)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// Bytes of all finished recordings.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed)
    }

    /// The directory of a stream's recordings; `None` for an id that is not one.
    pub fn stream_dir(&self, stream: &str) -> Option<PathBuf> {
        (!stream.is_empty()
            && stream.len() <= 64
            && stream.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| self.root.join(stream))
    }

    /// Ids of the streams with a recordings directory.
    pub fn streams(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| self.stream_dir(n).is_some())
            .collect();
        ids.sort();
        ids
    }

    /// A stream's day directories, oldest first.
    fn days(&self, stream: &str) -> Vec<(String, PathBuf)> {
        let Some(dir) = self.stream_dir(stream) else {
            return Vec::new();
        };
        let mut days: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                is_day(&name).then(|| (name, e.path()))
            })
            .collect();
        days.sort();
        days
    }

    /// A stream's finished files that overlap `[from, to)`, in time order. The range is
    /// clamped to [`MAX_RANGE_MS`].
    pub fn segments(&self, stream: &str, from_ms: u64, to_ms: u64) -> Vec<Segment> {
        let to_ms = to_ms.min(from_ms.saturating_add(MAX_RANGE_MS));
        // A file starts at most a file's length (plus a keyframe interval) before the day
        // of its end, so the day before `from` is looked at too.
        let first = day_of(from_ms.saturating_sub(3600 * 1000));
        let last = day_of(to_ms);
        let mut out: Vec<Segment> = self
            .days(stream)
            .into_iter()
            .filter(|(d, _)| *d >= first && *d <= last)
            .flat_map(|(d, dir)| files(&dir).into_iter().filter_map(move |f| f.finished(&d)))
            .filter(|s| s.start_ms < to_ms && s.end_ms() > from_ms)
            .collect();
        out.sort_by_key(|s| s.start_ms);
        out
    }

    /// Where a stream's newest finished file ends.
    pub fn timeline_end(&self, stream: &str) -> Option<u64> {
        let (day, dir) = self.days(stream).pop()?;
        files(&dir)
            .into_iter()
            .filter_map(|f| f.finished(&day))
            .map(|s| s.end_ms())
            .max()
    }

    /// The path of a stream's file, for `name` as [`Segment::name`] has it; `None` for
    /// anything else.
    pub fn file(&self, stream: &str, name: &str) -> Option<PathBuf> {
        let (day, file) = name.split_once('/')?;
        let stem = file.strip_suffix(".mp4")?;
        let (start, dur) = stem.split_once('-')?;
        let ok = is_day(day)
            && !start.is_empty()
            && !dur.is_empty()
            && start.len() <= 20
            && dur.len() <= 20
            && start.chars().chain(dur.chars()).all(|c| c.is_ascii_digit());
        ok.then(|| self.stream_dir(stream))
            .flatten()
            .map(|d| d.join(day).join(file))
    }

    /// An HLS VOD playlist of a stream's files overlapping `[from, to)`: fragmented MP4,
    /// each file its own initialisation section and one media segment, with its wall-clock
    /// time (`#EXT-X-PROGRAM-DATE-TIME`). `uri(name, part)` makes each part's URL.
    pub fn vod_playlist(
        &self,
        stream: &str,
        from_ms: u64,
        to_ms: u64,
        uri: impl Fn(&str, Part) -> String,
    ) -> Option<String> {
        let segments = self.segments(stream, from_ms, to_ms);
        if segments.is_empty() {
            return None;
        }
        let target = segments
            .iter()
            .map(|s| s.duration_ms.div_ceil(1000))
            .max()
            .unwrap_or(1)
            .max(1);
        let mut out = format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n"
        );
        for (i, s) in segments.iter().enumerate() {
            // Every file's timestamps start at zero.
            if i > 0 {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            out.push_str(&format!(
                "#EXT-X-MAP:URI=\"{}\"\n#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{:.3},\n{}\n",
                uri(&s.name, Part::Init),
                rfc3339(s.start_ms),
                s.duration_ms as f64 / 1000.0,
                uri(&s.name, Part::Media),
            ));
        }
        out.push_str("#EXT-X-ENDLIST\n");
        Some(out)
    }

    /// Deletes a finished file and uncounts it.
    fn delete(&self, stream: &str, seg: &Segment) -> bool {
        let Some(path) = self.file(stream, &seg.name) else {
            return false;
        };
        if std::fs::remove_file(&path).is_err() {
            return false;
        }
        self.bytes.fetch_sub(
            seg.bytes.min(self.bytes.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        if let Some(day) = path.parent() {
            // Fails while the day still has files, as it should.
            let _ = std::fs::remove_dir(day);
        }
        true
    }

    /// Counts a file a recorder finished.
    fn finished(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Removes a stream's recordings.
    pub fn remove_stream(&self, stream: &str) {
        let Some(dir) = self.stream_dir(stream) else {
            return;
        };
        let bytes: u64 = self
            .days(stream)
            .iter()
            .flat_map(|(_, d)| files(d))
            .map(|f| f.bytes)
            .sum();
        if std::fs::remove_dir_all(dir).is_ok() {
            self.bytes.fetch_sub(
                bytes.min(self.bytes.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
    }
}

/// The two parts of a recorded file an HLS player fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `ftyp` and `moov`: the initialisation section.
    Init,
    /// The fragments.
    Media,
}

/// The byte range of `part` in a fragmented MP4 file: the initialisation section runs up to
/// the first `moof`. Reads top-level box headers only, at most 64 of them.
pub fn part_range(file: &Path, part: Part) -> std::io::Result<(u64, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file)?;
    let len = f.metadata()?.len();
    let mut at = 0u64;
    for _ in 0..64 {
        if at + 8 > len {
            break;
        }
        f.seek(SeekFrom::Start(at))?;
        let mut head = [0u8; 16];
        f.read_exact(&mut head[..8])?;
        let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = &head[4..8];
        if kind == b"moof" {
            return Ok(match part {
                Part::Init => (0, at),
                Part::Media => (at, len),
            });
        }
        let size = match size32 {
            0 => break,
            1 => {
                f.read_exact(&mut head[8..16])?;
                u64::from_be_bytes([
                    head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15],
                ])
            }
            n => u64::from(n),
        };
        if size < 8 {
            break;
        }
        at = at.saturating_add(size);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "not a fragmented MP4 file",
    ))
}

/// Merges segments into the spans of time they cover.
pub fn spans(segments: &[Segment]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for s in segments {
        match out.last_mut() {
            Some(last) if s.start_ms <= last.to_ms + SPAN_GAP_MS => {
                last.to_ms = last.to_ms.max(s.end_ms());
            }
            _ => out.push(Span {
                from_ms: s.start_ms,
                to_ms: s.end_ms(),
            }),
        }
    }
    out
}

/// A file in a day directory, as its name and size say.
struct DayFile {
    start_ms: u64,
    /// `None`: still being written, or left so by a crash.
    duration_ms: Option<u64>,
    bytes: u64,
    file: String,
}

impl DayFile {
    fn finished(self, day: &str) -> Option<Segment> {
        Some(Segment {
            start_ms: self.start_ms,
            duration_ms: self.duration_ms?,
            bytes: self.bytes,
            name: format!("{day}/{}", self.file),
        })
    }
}

fn files(dir: &Path) -> Vec<DayFile> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            let stem = file.strip_suffix(".mp4")?;
            let (start, dur) = match stem.split_once('-') {
                Some((s, d)) => (s.parse().ok()?, Some(d.parse().ok()?)),
                None => (stem.parse().ok()?, None),
            };
            let bytes = e.metadata().ok()?.len();
            Some(DayFile {
                start_ms: start,
                duration_ms: dur,
                bytes,
                file,
            })
        })
        .collect()
}

fn is_day(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// The UTC day of a time, `YYYY-MM-DD`.
pub fn day_of(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(ms / 1000).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// A time as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        day_of(ms),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests;
