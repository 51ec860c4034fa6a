//! Which recordings go, oldest first: those past their age, those over the recordings'
//! budget (a share of their filesystem and a byte count), and — whatever the rest says —
//! as many as it takes to keep `min_free_bytes` free on the disk. When nothing is left to
//! delete and the disk is still that full, recorders stop writing (live streaming goes on)
//! until space comes back.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{Library, Segment};

/// How long and how much is kept.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Retention {
    /// Files older than this many days are deleted; 0: kept until space is needed.
    pub max_age_days: u32,
    /// The share of their filesystem recordings may use, in percent (1–100).
    pub max_disk_percent: u8,
    /// Bytes recordings may use; 0: only the share applies.
    pub max_bytes: u64,
    /// Free space kept on the recordings' filesystem.
    pub min_free_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age_days: 30,
            max_disk_percent: 80,
            max_bytes: 0,
            min_free_bytes: 1 << 30,
        }
    }
}

/// The size of a filesystem and its space left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    pub total: u64,
    pub available: u64,
}

impl DiskSpace {
    pub fn of(path: &std::path::Path) -> Option<Self> {
        let s = rustix::fs::statvfs(path).ok()?;
        Some(Self {
            total: s.f_blocks.saturating_mul(s.f_frsize),
            available: s.f_bavail.saturating_mul(s.f_frsize),
        })
    }
}

/// What one pass deleted, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RetentionReport {
    pub deleted_files: u64,
    pub deleted_bytes: u64,
    /// Deleted before their age or budget said so, to keep the disk from filling.
    pub purged_files: u64,
    /// Nothing is left to delete and the disk is still too full.
    pub disk_full: bool,
}

impl Library {
    /// One pass of retention at `now_ms`, with the filesystem as it is.
    pub fn enforce(&self, now_ms: u64) -> RetentionReport {
        let disk = DiskSpace::of(self.root()).unwrap_or(DiskSpace {
            total: 0,
            available: u64::MAX,
        });
        self.enforce_on(now_ms, disk)
    }

    /// One pass with the filesystem's size and space as `disk` says (freed bytes are
    /// counted as available again).
    pub fn enforce_on(&self, now_ms: u64, disk: DiskSpace) -> RetentionReport {
        let r = &self.retention;
        let mut report = RetentionReport::default();
        // Each step lists files only when it has something to do: a pass runs every 10 s,
        // and a day of one stream is 8640 files.
        if r.max_age_days > 0 {
            let cutoff = now_ms.saturating_sub(u64::from(r.max_age_days) * 86_400_000);
            let cutoff_day = super::day_of(cutoff);
            let due = self.streams().iter().any(|s| {
                self.days(s)
                    .first()
                    .is_some_and(|(day, _)| *day <= cutoff_day)
            });
            if due {
                self.delete_oldest(&mut report, |_, s, _| s.end_ms() < cutoff);
            }
        }
        let share = u128::from(disk.total) * u128::from(r.max_disk_percent.clamp(1, 100)) / 100;
        let mut budget = u64::try_from(share).unwrap_or(u64::MAX);
        if r.max_bytes > 0 {
            budget = budget.min(r.max_bytes);
        }
        if (disk.total > 0 || r.max_bytes > 0) && self.bytes() > budget {
            self.delete_oldest(&mut report, |lib, _, _| lib.bytes() > budget);
        }
        let before = report.deleted_files;
        let short = |report: &RetentionReport| {
            disk.available.saturating_add(report.deleted_bytes) < r.min_free_bytes
        };
        let relieved = !short(&report) || self.delete_oldest(&mut report, |_, _, rep| short(rep));
        report.purged_files = report.deleted_files - before;
        report.disk_full = !relieved;
        self.disk_full.store(report.disk_full, Ordering::Relaxed);
        report
    }

    /// Deletes finished files, oldest first across all streams, while `more` says so.
    /// `false`: files ran out first.
    fn delete_oldest(
        &self,
        report: &mut RetentionReport,
        mut more: impl FnMut(&Library, &Segment, &RetentionReport) -> bool,
    ) -> bool {
        loop {
            // Each stream's oldest day with finished files; their files, merged.
            let mut batch: Vec<(String, Segment)> = Vec::new();
            for stream in self.streams() {
                for (day, dir) in self.days(&stream) {
                    let finished: Vec<Segment> = super::files(&dir)
                        .into_iter()
                        .filter_map(|f| f.finished(&day))
                        .collect();
                    if !finished.is_empty() {
                        batch.extend(finished.into_iter().map(|s| (stream.clone(), s)));
                        break;
                    }
                }
            }
            if batch.is_empty() {
                return false;
            }
            batch.sort_by_key(|(_, s)| s.start_ms);
            let mut progressed = false;
            for (stream, seg) in &batch {
                if !more(self, seg, report) {
                    return true;
                }
                if self.delete(stream, seg) {
                    progressed = true;
                    report.deleted_files += 1;
                    report.deleted_bytes += seg.bytes;
                }
            }
            if !progressed {
                return false;
            }
        }
    }
}

/// Applies retention every [`super::FILE_SECONDS`], forever; purges are events. A full disk
/// is not one here: each recorder it pauses says so, naming its stream, and a disk too small
/// for the free-space floor pauses nothing while no stream records.
pub async fn keep(library: std::sync::Arc<Library>, events: lpe_core::events::EventBus) {
    use lpe_core::events::{EventKind, now_ms};
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(super::FILE_SECONDS));
    loop {
        tick.tick().await;
        let lib = library.clone();
        let Ok(report) = tokio::task::spawn_blocking(move || lib.enforce(now_ms())).await else {
            continue;
        };
        if report.deleted_files > 0 {
            tracing::info!(
                files = report.deleted_files,
                bytes = report.deleted_bytes,
                purged = report.purged_files,
                "retention deleted recordings"
            );
        }
        if report.purged_files > 0 {
            events.emit(
                None,
                EventKind::RecordingsPurged,
                format!(
                    "{} recording files deleted early to keep {} MB free on the recordings disk",
                    report.purged_files,
                    library.retention().min_free_bytes / 1_000_000
                ),
            );
        }
    }
}
