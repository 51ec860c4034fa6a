use super::*;

const DAY: u64 = 86_400_000;
/// 2026-11-26T00:00:00Z.
const T0: u64 = 1_795_651_200_000;

/// A library in a temporary directory with `files` (stream, start, duration, bytes) as
/// finished files of junk.
fn library(
    retention: Retention,
    files: &[(&str, u64, u64, usize)],
) -> (tempfile::TempDir, Arc<Library>) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (stream, start, dur, bytes) in files {
        let day = dir.path().join(stream).join(day_of(*start));
        std::fs::create_dir_all(&day).expect("day");
        std::fs::write(day.join(format!("{start}-{dur}.mp4")), vec![0u8; *bytes]).expect("file");
    }
    let lib = Library::open(dir.path().to_path_buf(), retention).expect("open");
    let expected: u64 = files.iter().map(|f| f.3 as u64).sum();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while lib.bytes() != expected && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (dir, lib)
}

fn no_limits() -> Retention {
    Retention {
        max_age_days: 0,
        max_disk_percent: 100,
        max_bytes: 0,
        min_free_bytes: 0,
    }
}

const ROOMY: DiskSpace = DiskSpace {
    total: 1 << 40,
    available: 1 << 39,
};

#[test]
fn days_and_times_are_utc() {
    assert_eq!(day_of(T0), "2026-11-26");
    assert_eq!(day_of(T0 - 1), "2026-11-25");
    assert_eq!(rfc3339(T0 + 3_723_045), "2026-11-26T01:02:03.045Z");
}

#[test]
fn the_disk_is_measured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DiskSpace::of(dir.path()).expect("statvfs");
    assert!(
        d.total > 0 && d.available > 0 && d.available <= d.total,
        "{d:?}"
    );
}

#[test]
fn files_are_listed_by_range_across_days_and_merged_into_spans() {
    let end_of_day = T0 - 5_000;
    let (_d, lib) = library(
        no_limits(),
        &[
            ("a", end_of_day, 10_000, 10),
            ("a", end_of_day + 10_000, 10_000, 10),
            ("a", T0 + 60_000, 10_000, 10),
            ("b", T0, 10_000, 10),
        ],
    );
    assert_eq!(lib.bytes(), 40);
    let all = lib.segments("a", T0 - DAY, T0 + DAY);
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].name, format!("2026-11-25/{end_of_day}-10000.mp4"));
    assert_eq!(
        spans(&all),
        vec![
            Span {
                from_ms: end_of_day,
                to_ms: end_of_day + 20_000
            },
            Span {
                from_ms: T0 + 60_000,
                to_ms: T0 + 70_000
            },
        ]
    );
    // Overlap, not containment: a file that began before the range counts.
    assert_eq!(lib.segments("a", T0 + 1_000, T0 + 2_000).len(), 1);
    assert!(lib.segments("a", T0 + 20_000, T0 + 60_000).is_empty());
    assert_eq!(lib.streams(), vec!["a".to_string(), "b".to_string()]);
}

#[test]
fn only_recording_file_names_resolve_to_paths() {
    let (_d, lib) = library(no_limits(), &[]);
    assert!(
        lib.file("a", "2026-11-26/1795651200000-10000.mp4")
            .is_some()
    );
    for bad in [
        "../x/1-2.mp4",
        "2026-11-26/../../etc/passwd",
        "2026-11-26/1795651200000.mp4",
        "2026-11-26/1-2.mp4/..",
        "2026-11-26/a-b.mp4",
        "2026-11-26/1-2.ts",
    ] {
        assert!(lib.file("a", bad).is_none(), "{bad}");
    }
    assert!(lib.file("../a", "2026-11-26/1-2.mp4").is_none());
    assert!(lib.stream_dir("").is_none());
}

#[test]
fn the_playlist_is_vod_with_a_map_per_file() {
    let (_d, lib) = library(
        no_limits(),
        &[("a", T0, 10_000, 10), ("a", T0 + 10_000, 9_960, 10)],
    );
    let text = lib
        .vod_playlist("a", T0, T0 + 20_000, |name, part| {
            format!("{name}#{part:?}")
        })
        .expect("playlist");
    assert!(
        text.starts_with("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n"),
        "{text}"
    );
    assert!(text.contains("#EXT-X-TARGETDURATION:10\n"), "{text}");
    assert_eq!(text.matches("#EXT-X-MAP:URI=").count(), 2);
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
    assert!(
        text.contains("#EXT-X-PROGRAM-DATE-TIME:2026-11-26T00:00:10.000Z\n#EXTINF:9.960,\n"),
        "{text}"
    );
    assert!(text.ends_with("#EXT-X-ENDLIST\n"));
    assert!(
        lib.vod_playlist("a", T0 + DAY, T0 + DAY + 1, |_, _| String::new())
            .is_none()
    );
}

#[test]
fn the_init_section_ends_at_the_first_fragment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f.mp4");
    let mut bytes = Vec::new();
    for (kind, len) in [
        (b"ftyp", 24u32),
        (b"moov", 100),
        (b"moof", 40),
        (b"mdat", 50),
    ] {
        bytes.extend(len.to_be_bytes());
        bytes.extend(kind);
        bytes.extend(vec![0u8; len as usize - 8]);
    }
    std::fs::write(&path, &bytes).expect("write");
    assert_eq!(part_range(&path, Part::Init).expect("init"), (0, 124));
    assert_eq!(part_range(&path, Part::Media).expect("media"), (124, 214));
    // A file without fragments, or with a box that claims to be smaller than its header.
    std::fs::write(&path, &bytes[..124]).expect("write");
    assert!(part_range(&path, Part::Init).is_err());
    let mut broken = bytes.clone();
    broken[24..28].copy_from_slice(&3u32.to_be_bytes());
    std::fs::write(&path, &broken).expect("write");
    assert!(part_range(&path, Part::Init).is_err());
}

#[test]
fn age_deletes_what_ended_before_the_cutoff() {
    let r = Retention {
        max_age_days: 1,
        ..no_limits()
    };
    let (_d, lib) = library(
        r,
        &[
            ("a", T0 - 2 * DAY, 10_000, 10),
            ("a", T0 - DAY - 20_000, 10_000, 10),
            ("a", T0 - DAY - 5_000, 10_000, 10),
            ("b", T0 - 3 * DAY, 10_000, 10),
        ],
    );
    let report = lib.enforce_on(T0, ROOMY);
    assert_eq!(report.deleted_files, 3, "{report:?}");
    assert_eq!(report.purged_files, 0);
    let left = lib.segments("a", T0 - 3 * DAY, T0);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].start_ms, T0 - DAY - 5_000);
    assert_eq!(lib.bytes(), 10);
    // Emptied days go with their files.
    assert_eq!(lib.days("b").len(), 0);
}

#[test]
fn the_budget_deletes_the_oldest_across_streams() {
    let r = Retention {
        max_bytes: 250,
        ..no_limits()
    };
    let (_d, lib) = library(
        r,
        &[
            ("a", T0, 10_000, 100),
            ("b", T0 + 5_000, 10_000, 100),
            ("a", T0 + 10_000, 10_000, 100),
            ("b", T0 + 15_000, 10_000, 100),
        ],
    );
    let report = lib.enforce_on(T0 + 60_000, ROOMY);
    assert_eq!((report.deleted_files, report.deleted_bytes), (2, 200));
    assert_eq!(lib.bytes(), 200);
    assert_eq!(lib.segments("a", T0, T0 + DAY)[0].start_ms, T0 + 10_000);
    assert_eq!(lib.segments("b", T0, T0 + DAY)[0].start_ms, T0 + 15_000);
    // The share of the disk counts too: 10 % of 1000 bytes.
    let r = Retention {
        max_disk_percent: 10,
        ..no_limits()
    };
    let (_d, lib) = library(r, &[("a", T0, 10_000, 60), ("a", T0 + 10_000, 10_000, 60)]);
    let report = lib.enforce_on(
        T0,
        DiskSpace {
            total: 1000,
            available: 500,
        },
    );
    assert_eq!(report.deleted_files, 1);
    assert!(!report.disk_full);
}

#[test]
fn a_nearly_full_disk_purges_and_then_says_it_is_full() {
    let r = Retention {
        min_free_bytes: 150,
        ..no_limits()
    };
    let (_d, lib) = library(
        r.clone(),
        &[("a", T0, 10_000, 100), ("a", T0 + 10_000, 10_000, 100)],
    );
    // 100 bytes free: the oldest file is enough.
    let report = lib.enforce_on(
        T0,
        DiskSpace {
            total: 10_000,
            available: 100,
        },
    );
    assert_eq!((report.deleted_files, report.purged_files), (1, 1));
    assert!(!report.disk_full && !lib.disk_full());
    // Nothing free and one file left: deleting it is not enough.
    let report = lib.enforce_on(
        T0,
        DiskSpace {
            total: 10_000,
            available: 0,
        },
    );
    assert_eq!(report.purged_files, 1);
    assert!(report.disk_full && lib.disk_full());
    // Space came back.
    let report = lib.enforce_on(
        T0,
        DiskSpace {
            total: 10_000,
            available: 1_000,
        },
    );
    assert!(!report.disk_full && !lib.disk_full());
    // Files being written are never deleted.
    let (d, lib) = library(r, &[]);
    let day = d.path().join("a").join(day_of(T0));
    std::fs::create_dir_all(&day).expect("day");
    std::fs::write(day.join(format!("{T0}.mp4")), b"open").expect("write");
    let report = lib.enforce_on(
        T0,
        DiskSpace {
            total: 10_000,
            available: 0,
        },
    );
    assert_eq!(report.deleted_files, 0);
    assert!(day.join(format!("{T0}.mp4")).exists());
}

/// A disk below the free-space floor, with nothing recording: retention notes it (the API
/// shows it) and raises no event, since no recorder is paused; a paused recorder says so
/// itself, naming its stream.
#[tokio::test]
async fn a_disk_below_the_floor_is_no_event_while_nothing_records() {
    let (_d, lib) = library(
        Retention {
            min_free_bytes: u64::MAX,
            ..no_limits()
        },
        &[],
    );
    let bus = lpe_core::events::EventBus::new();
    let mut events = bus.subscribe();
    let keeper = tokio::spawn(keep(lib.clone(), bus.clone()));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !lib.disk_full() {
        assert!(tokio::time::Instant::now() < deadline, "never found full");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    keeper.abort();
    assert!(
        matches!(
            events.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty)
        ),
        "an event with nothing recording"
    );
}
