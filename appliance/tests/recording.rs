//! Recording: a stream recorded to another directory than the data directory, its timeline,
//! playback as HLS VOD, a clip exported and measured with ffprobe, retention within a size
//! budget, and a disk that fills while the stream keeps running.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{FfmpegPush, NodeProc, segments};
use serde_json::{Value, json};

/// A file of `seconds` of 320×240 video (a keyframe every 2 s) with AAC audio.
fn clip(path: &Path, seconds: u32, bitrate: &str) {
    let made = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args([
            "-b:v",
            bitrate,
            "-g",
            "50",
            "-keyint_min",
            "50",
            "-sc_threshold",
            "0",
        ])
        .args(["-c:a", "aac", "-b:a", "64k"])
        .arg(path)
        .status()
        .expect("ffmpeg");
    assert!(made.success());
}

fn ffprobe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn wait_event(node: &NodeProc, id: &str, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, events) = node.get(&format!("/api/events?stream_id={id}&limit=50"));
        if events
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["message"] == what || e["kind"] == what))
        {
            return;
        }
        assert!(Instant::now() < deadline, "no {what}: {events}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for a file stream's end and stops it there (a file that ended is played again).
fn stop_at_end(node: &NodeProc, id: &str) {
    wait_event(node, id, "source ended", Duration::from_secs(90));
    let (st, v) = node.send("POST", &format!("/api/streams/{id}/stop"), None);
    assert_eq!(st, 200, "{v}");
    node.wait_state(id, "stopped", Duration::from_secs(15));
}

fn timeline(node: &NodeProc, id: &str) -> Value {
    let now = now_ms();
    let (st, v) = node.get(&format!(
        "/api/recordings?stream_id={id}&from={}&to={}",
        now - 3_600_000,
        now + 3_600_000
    ));
    assert_eq!(st, 200, "{v}");
    v
}

#[test]
fn a_recorded_stream_plays_back_and_exports_a_clip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = tempfile::tempdir().expect("recordings");
    let file = dir.path().join("three-minutes.mp4");
    clip(&file, 180, "300k");
    let node = NodeProc::start_with(
        dir.path(),
        &[("LPE_RECORDING_DIR", rec.path().to_str().expect("utf-8"))],
    );
    let s = node.create(json!({
        "name": "service", "source": {"kind": "uri", "uri": file.to_str().expect("utf-8")},
        "ladder": [{"name": "source", "bitrate_kbps": 300}],
        "recording": {"mode": "continuous"},
    }));
    let id = s["id"].as_str().expect("id").to_string();
    assert_eq!(s["recording"]["mode"], "continuous", "{s}");
    // A file is read as fast as it goes; its recording is three minutes of timeline.
    stop_at_end(&node, &id);

    let t = timeline(&node, &id);
    let spans = t["spans"].as_array().expect("spans");
    assert_eq!(spans.len(), 1, "one stretch without a gap: {t}");
    let (from, to) = (
        spans[0]["from_ms"].as_u64().expect("from"),
        spans[0]["to_ms"].as_u64().expect("to"),
    );
    let seconds = (to - from) as f64 / 1000.0;
    assert!((seconds - 180.0).abs() <= 1.5, "recorded {seconds} s: {t}");
    let files = t["segments"].as_array().expect("segments");
    assert!(
        (17..=19).contains(&files.len()),
        "{} files: {t}",
        files.len()
    );
    // The files are in the recordings directory, not the data directory.
    assert!(rec.path().join(&id).is_dir());
    assert!(!dir.path().join("recordings").exists());

    // A 30 s clip from the middle, not starting on a keyframe.
    let start = from + 60_700;
    let (st, ct, mp4) = node.get_bytes(&format!(
        "/api/recordings/{id}/export.mp4?from={start}&to={}",
        start + 30_000
    ));
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&mp4));
    assert_eq!(ct, "video/mp4");
    let out = dir.path().join("clip.mp4");
    std::fs::write(&out, &mp4).expect("write clip");
    let probe = ffprobe(&out);
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("duration");
    assert!(
        (duration - 30.0).abs() <= 1.0,
        "clip of {duration} s: {probe}"
    );
    let codecs: Vec<&str> = probe["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| s["codec_name"].as_str())
        .collect();
    assert!(
        codecs.contains(&"h264") && codecs.contains(&"aac"),
        "{probe}"
    );

    // Playback: an HLS VOD playlist of fragmented MP4; its first file, put together from
    // its two parts, plays.
    let (st, ct, text) = node.get_bytes(&format!(
        "/api/recordings/{id}/playlist.m3u8?from={}&to={}",
        from + 20_000,
        from + 50_000
    ));
    assert_eq!(st, 200);
    assert_eq!(ct, "application/vnd.apple.mpegurl");
    let text = String::from_utf8(text).expect("utf-8");
    assert!(
        text.contains("#EXT-X-PLAYLIST-TYPE:VOD") && text.ends_with("#EXT-X-ENDLIST\n"),
        "{text}"
    );
    let extinf: f64 = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
        .sum();
    assert!((30.0..=50.0).contains(&extinf), "{extinf} s listed: {text}");
    let uri = |prefix: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(prefix)
                    .map(|u| u.trim_end_matches('"').to_string())
            })
            .expect("a uri")
    };
    let init = uri("#EXT-X-MAP:URI=\"");
    let media = text
        .lines()
        .find(|l| l.starts_with("files/") && l.ends_with("part=media"))
        .expect("a media uri")
        .to_string();
    let mut joined = Vec::new();
    for part in [&init, &media] {
        let (st, ct, bytes) = node.get_bytes(&format!("/api/recordings/{id}/{part}"));
        assert_eq!((st, ct.as_str()), (200, "video/mp4"), "{part}");
        joined.extend(bytes);
    }
    assert_eq!(&joined[4..8], b"ftyp");
    let first = dir.path().join("first.mp4");
    std::fs::write(&first, &joined).expect("write");
    let probe = ffprobe(&first);
    let d: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("duration");
    assert!((9.0..=12.5).contains(&d), "first file {d} s: {probe}");

    // Bad requests are refused, with reasons; nothing outside the recordings is served.
    let (st, _) = node.get(&format!("/api/recordings?stream_id={id}&from=10&to=5"));
    assert_eq!(st, 422);
    let (st, _) = node.get(&format!(
        "/api/recordings/{id}/files/..%2F..%2Fnode.log?part=init"
    ));
    assert_eq!(st, 404);
    let (st, _) = node.get(&format!(
        "/api/recordings/{id}/export.mp4?from={from}&to={}",
        from + 3 * 3_600_000
    ));
    assert_eq!(st, 422);
    let (st, _) = node.get(&format!(
        "/api/recordings/{id}/playlist.m3u8?from=1000&to=2000"
    ));
    assert_eq!(st, 404);
}

#[test]
fn retention_keeps_recordings_within_their_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("two-minutes.mp4");
    // About 3.8 MB of recordings for a budget of 2 MB.
    clip(&file, 120, "250k");
    let node = NodeProc::start_with(dir.path(), &[("LPE_RECORDING_MAX_MEGABYTES", "2")]);
    let s = node.create(json!({
        "name": "budget", "source": {"kind": "uri", "uri": file.to_str().expect("utf-8")},
        "ladder": [{"name": "source", "bitrate_kbps": 250}],
        "recording": {"mode": "continuous"},
    }));
    let id = s["id"].as_str().expect("id").to_string();
    stop_at_end(&node, &id);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, storage) = node.get("/api/recordings/storage");
        let bytes = storage["bytes"].as_u64().expect("bytes");
        if bytes <= 2_000_000 {
            assert!(bytes > 1_000_000, "more was deleted than needed: {storage}");
            break;
        }
        assert!(Instant::now() < deadline, "over budget: {storage}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The oldest went: what is left is the end of the recording, without a gap.
    let t = timeline(&node, &id);
    let spans = t["spans"].as_array().expect("spans");
    assert_eq!(spans.len(), 1, "{t}");
    let kept = (spans[0]["to_ms"].as_u64().expect("to")
        - spans[0]["from_ms"].as_u64().expect("from")) as f64
        / 1000.0;
    assert!((30.0..100.0).contains(&kept), "{kept} s kept: {t}");
    let on_disk: u64 = walk(&dir.path().join("recordings"));
    assert!(on_disk <= 2_000_000, "{on_disk} bytes on disk");
}

fn walk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

/// Recordings on a small filesystem of their own that fills up: the oldest are purged to
/// keep space free, a write that finds the disk full is retried, and the live stream never
/// stops.
#[test]
fn a_full_recordings_disk_never_stops_live_streaming() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = tempfile::tempdir().expect("mount point");
    let wrapper = [
        "unshare",
        "-m",
        "sh",
        "-c",
        "mount -t tmpfs -o size=12m lpe-recordings \"$1\" && shift && exec \"$@\"",
        "sh",
        mount.path().to_str().expect("utf-8"),
    ];
    let node = NodeProc::start_wrapped(
        dir.path(),
        &[
            ("LPE_RECORDING_DIR", mount.path().to_str().expect("utf-8")),
            ("LPE_RECORDING_MIN_FREE_MEGABYTES", "3"),
            ("LPE_RECORDING_MAX_DISK_PERCENT", "95"),
        ],
        &wrapper,
    );
    let s = node.create(json!({
        "name": "venue", "source": {"kind": "rtmp"},
        "ladder": [{"name": "source", "bitrate_kbps": 2000}],
        "recording": {"mode": "continuous"},
    }));
    let id = s["id"].as_str().expect("id").to_string();
    let key = s["stream_key"].as_str().expect("key").to_string();
    let _push = FfmpegPush::start(&node.rtmp_url(&key), "640x360", 70);
    node.wait_state(&id, "running", Duration::from_secs(30));
    // A few Mbit/s into 12 MB: the disk fills several times over.
    let playlist = dir
        .path()
        .join("hls")
        .join(&id)
        .join("source")
        .join("index.m3u8");
    let mut last_segment = String::new();
    let mut stalled_since = Instant::now();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(55) {
        let newest = segments(&playlist).last().cloned().unwrap_or_default();
        if newest != last_segment {
            last_segment = newest;
            stalled_since = Instant::now();
        }
        assert!(
            stalled_since.elapsed() < Duration::from_secs(8),
            "live HLS stopped while the recordings disk was full: {}",
            node.get(&format!("/api/streams/{id}")).1
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, v) = node.get(&format!("/api/streams/{id}"));
    assert_eq!(v["status"]["state"], "running", "{v}");
    let (_, events) = node.get("/api/events?limit=200");
    let purged = events
        .as_array()
        .is_some_and(|a| a.iter().any(|e| e["kind"] == "recordings_purged"));
    assert!(purged, "no purge: {events}");
    // Recording goes on after the purges: files keep being finished.
    let files = v["status"]["recording"]["files"].as_u64().unwrap_or(0);
    assert!(files >= 4, "{v}\nnode log:\n{}", node.log());
    let t = timeline(&node, &id);
    assert!(
        !t["segments"].as_array().expect("segments").is_empty(),
        "{t}"
    );
}
