//! WebRTC preview (WHEP) in headless Chromium against a real node: an RTMP push with a clock
//! burned into its picture, the browser's offer answered, the video decoded and the
//! glass-to-glass latency measured (push's frame time → frame shown). Viewers end with
//! DELETE; bad offers and stopped streams are refused with reasons.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ClockPush, NodeProc};
use serde_json::{Value, json};

/// One browser at a time: two nodes, two browsers and their media on two cores at once made
/// the tests measure the machine, not the node.
static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_browser() -> std::sync::MutexGuard<'static, ()> {
    ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_webrtc_viewer_plays_the_stream_within_a_second() {
    let _one = one_browser();
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());
    let s = node.create(json!({
        "name": "stage", "source": {"kind": "rtmp"},
        "ladder": [{"name": "source", "bitrate_kbps": 1500},
                   {"name": "360p", "height": 360, "bitrate_kbps": 800}],
    }));
    let id = s["id"].as_str().expect("id").to_string();
    let key = s["stream_key"].as_str().expect("key").to_string();

    // Not running yet: refused, with a reason.
    let r = node.call(
        "POST",
        &format!("/api/streams/{id}/whep"),
        Some("v=0\r\n"),
        &[("authorization", &node.authorization())],
    );
    assert!(matches!(r.status, 400 | 409), "{} {}", r.status, r.body);

    let (_push, t0) = ClockPush::start(&node.rtmp_url(&key));
    node.wait_state(&id, "running", Duration::from_secs(30));
    // An offer without H.264 is refused.
    let r = node.call(
        "POST",
        &format!("/api/streams/{id}/whep"),
        Some("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"),
        &[("authorization", &node.authorization())],
    );
    assert_eq!(r.status, 400, "{}", r.body);

    let (base, auth, t0) = (node.url(""), node.authorization(), t0.to_string());
    let result = common::browser_script(
        "whep.mjs",
        &[
            ("BASE_URL", &base),
            ("AUTHORIZATION", &auth),
            ("STREAM", &id),
            ("T0", &t0),
        ],
        &node,
    );
    let frames = result["frames"].as_u64().unwrap_or(0);
    assert!(frames >= 100, "only {frames} frames in 8 s: {result}");
    let p50 = result["latency_ms"]["p50"].as_i64().expect("p50");
    println!("WebRTC glass-to-glass latency: {result}");
    // The goal is ≤ 1 s; the bound also covers ffmpeg's start-up, counted as latency.
    assert!(
        (0..=1000).contains(&p50),
        "median latency {p50} ms: {result}"
    );
    // With sound: the stream's AAC encoded once to Opus for its viewers.
    let packets = result["audio"]["packets"].as_u64().unwrap_or(0);
    assert!(packets >= 100, "{packets} audio packets in 8 s: {result}");
    assert_eq!(result["audio"]["codec"], "audio/opus", "{result}");
    let bytes = result["audio"]["bytes"].as_u64().unwrap_or(0);
    assert!(bytes / packets >= 40, "packets of silence: {result}");
    // The viewer left with DELETE: none remain.
    let (st, _) = node.send(
        "DELETE",
        &format!("/api/streams/{id}/whep/nosuchsession"),
        None,
    );
    assert_eq!(st, 404);
}

/// WHIP ingest: headless Chromium publishes its fake camera and microphone (H.264 + Opus)
/// to a pushed stream; the ladder and its audio come out as from an RTMP push, a second publisher and a
/// wrong key are refused, and when the publisher leaves the stream waits for the next one.
#[test]
fn a_browser_publishes_over_whip() {
    let _one = one_browser();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());
    let s = node.create(json!({
        "name": "from the browser", "source": {"kind": "rtmp"},
        // A frame rate of its own: videorate on a browser's variable frame rate.
        "ladder": [{"name": "240p", "height": 240, "bitrate_kbps": 400, "fps": 15}],
    }));
    let id = s["id"].as_str().expect("id").to_string();
    let key = s["stream_key"].as_str().expect("key").to_string();
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
    let r = node.call(
        "POST",
        "/api/whip",
        Some(offer),
        &[("authorization", "Bearer not-the-key-at-all")],
    );
    assert_eq!(r.status, 401, "{}", r.body);

    let browser = Command::new("node")
        .arg(root.join("web-ui/tests/whip.mjs"))
        .env("BASE_URL", node.url(""))
        .env("KEY", &key)
        .env("SECONDS", "20")
        .current_dir(root.join("web-ui"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (Node.js)");
    let running = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        node.wait_state(&id, "running", Duration::from_secs(30));
        // One publisher at a time.
        let r = node.call(
            "POST",
            "/api/whip",
            Some(offer),
            &[("authorization", &format!("Bearer {key}"))],
        );
        assert_eq!(r.status, 409, "{}", r.body);
        let d = dir.path().join("hls").join(&id).join("240p");
        let deadline = std::time::Instant::now() + Duration::from_secs(45);
        while common::segments(&d.join("index.m3u8")).len() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "no segments from the WHIP publisher"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let video = common::probe_video(&d.join("index.m3u8"));
        assert_eq!(video["streams"][0]["height"], 240, "{video}");
        let audio = common::probe_audio(&d.join("index.m3u8"));
        assert_eq!(audio["streams"][0]["codec_name"], "aac", "{audio}");
    }));
    let out = browser.wait_with_output().expect("browser");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if let Err(e) = running {
        panic!(
            "{e:?}\nbrowser: {stdout}\n{}\nnode log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            node.log()
        );
    }
    let result: Value = stdout
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    assert_eq!(result["connected"], true, "{stdout}");
    assert_eq!(result["deleted"], 200, "{result}");
    // The browser offers VP8 first; H.264 is chosen, to pass through like an RTMP push.
    assert_eq!(result["video_codec"], "H264", "{result}");
    println!("WHIP publish: {result}");
    // The publisher left: the stream waits for the next one.
    node.wait_state(&id, "waiting", Duration::from_secs(15));
}
