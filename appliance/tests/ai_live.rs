//! The AI tap on live streams, on a real node: a looped still with a known face (scikit-image's
//! `astronaut`) is pushed over RTMP, the shipped CenterFace runs in its detector process, and
//! - as the stream's object model, the face becomes one tracked object at the known box, with
//!   `object_started` on SSE and MQTT (Mosquitto), a detection row, a snapshot, the retained
//!   object counts and a Home Assistant occupancy sensor; the web UI (headless Chromium) draws
//!   its box over the preview, shows it on the Detections page and saves a zone drawn on the
//!   stream's picture;
//! - in privacy mode, the face is covered in the encoded rendition (the pixel variance inside
//!   its box falls by 90 % or more, the rest of the picture is unchanged), and when the
//!   detector process is killed the pictures are blanked, never sent uncovered, until it is
//!   back;
//! - a model that is not installed is an `ai_failed` event and the video runs on;
//! - a real one-class detector (the test graphs' ball detector, uploaded) follows GStreamer's
//!   moving test ball as it enters and leaves a zone, and recording on events keeps the
//!   stretches when it is in the zone, with their pre- and post-roll, and nothing between.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::NodeProc;
use common::mqtt::{Broker, Observer};
use serde_json::{Value, json};

/// One test's node at a time: detection and tracking run at a rate the test relies on (a
/// tracked ball keeps its identity only when its detector keeps up), and four nodes inferring
/// on two cores starve each other's detectors.
fn one_node_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The face in `astronaut` (512×512), as CenterFace finds it.
const FACE: [f32; 4] = [181.0, 58.0, 270.0, 178.0];
const SIZE: usize = 512;

fn astronaut(dir: &Path) -> PathBuf {
    let png = dir.join("astronaut.png");
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys; from skimage import data, io; io.imsave(sys.argv[1], data.astronaut())",
        ])
        .arg(&png)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    png
}

/// ffmpeg pushing the still at 10 fps for `seconds`; killed on drop.
struct StillPush(Child);

impl StillPush {
    fn start(png: &Path, url: &str, seconds: u32) -> Self {
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-loop", "1"])
            .args(["-framerate", "10", "-i"])
            .arg(png)
            .args(["-t", &seconds.to_string()])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ])
            .args(["-g", "10", "-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg");
        Self(child)
    }
}

impl Drop for StillPush {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Events from `/api/events/stream`, each `(kind, data)`, read on a thread of their own.
fn sse(node: &NodeProc) -> mpsc::Receiver<(String, Value)> {
    let (tx, rx) = mpsc::channel();
    let url = node.url("/api/events/stream");
    let auth = node.authorization();
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        let Ok(res) = agent.get(&url).header("authorization", &auth).call() else {
            return;
        };
        let reader = std::io::BufReader::new(res.into_body().into_reader());
        let mut kind = String::new();
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if let Some(k) = line.strip_prefix("event: ") {
                kind = k.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                let v = serde_json::from_str(d).unwrap_or(Value::Null);
                if tx.send((kind.clone(), v)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

fn next_event(rx: &mpsc::Receiver<(String, Value)>, kind: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((k, v)) if k == kind => return v,
            Ok(_) => {}
            Err(_) => panic!("no {kind} event within {timeout:?}"),
        }
    }
}

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: [f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

/// The luma of the newest complete segment's last picture of rendition `source`.
fn rendition_luma(node_dir: &Path, id: &str, newer_than: u64) -> Vec<u8> {
    let dir = node_dir.join("hls").join(id).join("source");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let segments = common::segments(&dir.join("index.m3u8"));
        let fresh = segments.iter().rev().find(|s| {
            std::fs::metadata(dir.join(s))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .is_some_and(|t| t.as_millis() as u64 > newer_than)
        });
        if let Some(seg) = fresh {
            let out = Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-i"])
                .arg(dir.join(seg))
                .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
                .output()
                .expect("ffmpeg");
            let n = out.stdout.len();
            if n >= SIZE * SIZE && n.is_multiple_of(SIZE * SIZE) {
                return out.stdout[n - SIZE * SIZE..].to_vec();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no fresh segment in {}: {segments:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn jpeg_luma(jpeg: &[u8]) -> Vec<u8> {
    let mut child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i", "-"])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = jpeg.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("ffmpeg");
    let _ = writer.join();
    out.stdout
}

/// Mean and variance of the pixels inside (`inside`) or outside the box.
fn stats(luma: &[u8], width: usize, b: [f32; 4], inside: bool) -> (f64, f64) {
    let (mut n, mut sum, mut sq) = (0f64, 0f64, 0f64);
    for (i, v) in luma.iter().enumerate() {
        let (x, y) = ((i % width) as f32, (i / width) as f32);
        let within = x >= b[0] && x < b[2] && y >= b[1] && y < b[3];
        if within == inside {
            let v = f64::from(*v);
            n += 1.0;
            sum += v;
            sq += v * v;
        }
    }
    let mean = sum / n;
    (mean, sq / n - mean * mean)
}

/// The detector processes the node runs.
fn workers(node: &NodeProc) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-P", &node.pid().to_string(), "-f", "ai-worker"])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[test]
fn a_known_face_is_found_followed_and_covered_and_never_shown_when_the_detector_dies() {
    let _one = one_node_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let png = astronaut(dir.path());
    let broker = Broker::start();
    let mqtt = Observer::connect(broker.port, &["livepeer-edge/venue/#", "homeassistant/#"]);
    let url = broker.url();
    let ui = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web-ui/dist");
    let node = NodeProc::start_with(
        dir.path(),
        &[
            ("LPE_HTTP_UI_DIR", ui.to_str().expect("utf-8")),
            ("LPE_MQTT_URL", url.as_str()),
            ("LPE_MQTT_DEVICE_ID", "venue"),
            ("LPE_MQTT_HOMEASSISTANT", "true"),
            ("LPE_MQTT_TELEMETRY_SECONDS", "1"),
        ],
    );
    mqtt.wait("livepeer-edge/venue/status", Duration::from_secs(20), |m| {
        m.text() == "online"
    });
    let events = sse(&node);
    let created = node.create(json!({
        "name": "stage",
        "source": {"kind": "rtmp"},
        "ladder": [{"name": "source", "bitrate_kbps": 1500}],
        "ai": {"model": "centerface", "fps": 5, "min_duration_ms": 400},
    }));
    let id = created["id"].as_str().expect("id").to_string();
    let key = created["stream_key"].as_str().expect("key").to_string();
    let mut push = StillPush::start(&png, &node.rtmp_url(&key), 240);

    // One face, at the known box, on SSE and in the detections.
    let started = next_event(&events, "object_started", Duration::from_secs(60));
    let object = &started["object"];
    assert_eq!(object["label"], "face", "{started}");
    let bbox: Vec<f32> = object["bbox"]
        .as_array()
        .expect("bbox")
        .iter()
        .map(|v| v.as_f64().unwrap_or(-1.0) as f32 * SIZE as f32)
        .collect();
    let found = [bbox[0], bbox[1], bbox[2], bbox[3]];
    assert!(
        iou(found, FACE) >= 0.7,
        "face at {found:?}, expected {FACE:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let (st, list) = node.get(&format!("/api/detections?stream_id={id}"));
    assert_eq!(st, 200, "{list}");
    let list = list.as_array().expect("list").clone();
    assert_eq!(list.len(), 1, "exactly one face: {list:?}");
    assert_eq!(list[0]["id"], object["id"]);
    let snapshot = list[0]["snapshot_url"].as_str().expect("snapshot url");
    let (st, ct, jpeg) = node.get_bytes(snapshot);
    assert_eq!((st, ct.as_str()), (200, "image/jpeg"));
    assert!(jpeg.starts_with(&[0xff, 0xd8]), "a JPEG");
    let (_, faces) = node.get(&format!(
        "/api/detections?label=face&since={}",
        now_ms() + 60_000
    ));
    assert_eq!(faces, json!([]), "since filters");
    let v = node.wait_stream(&id, "detecting", Duration::from_secs(10), |v| {
        v["analysis"]["objects"]["frames"].as_u64().unwrap_or(0) > 5
    });
    let objects = &v["analysis"]["objects"];
    assert_eq!(objects["state"], "running", "{objects}");
    assert_eq!(objects["provider"], "CPU", "{objects}");
    assert!(
        objects["latency_ms_p50"].as_f64().unwrap_or(0.0) > 0.0,
        "{objects}"
    );

    // Prometheus.
    let (st, _, metrics) = node.get_bytes("/metrics");
    assert_eq!(st, 200);
    let metrics = String::from_utf8_lossy(&metrics);
    for line in [
        format!("lpe_ai_up{{stream=\"{id}\",detector=\"objects\"}} 1"),
        format!("lpe_ai_objects{{stream=\"{id}\",label=\"face\"}} 1"),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in\n{metrics}"
        );
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(&format!("lpe_ai_frames_total{{stream=\"{id}\""))),
        "{metrics}"
    );

    // The web UI: the box over the preview, the Detections page, a zone drawn and saved.
    let seen = common::browser_script(
        "ai.mjs",
        &[
            ("BASE_URL", &node.url("")),
            ("PASSWORD", common::ADMIN_PASSWORD),
            ("STREAM", &id),
        ],
        &node,
    );
    let on_screen: Vec<f32> = seen["box"]
        .as_array()
        .expect("box")
        .iter()
        .map(|v| v.as_f64().unwrap_or(-1.0) as f32)
        .collect();
    let s = SIZE as f32;
    let face = [
        FACE[0] / s,
        FACE[1] / s,
        (FACE[2] - FACE[0]) / s,
        (FACE[3] - FACE[1]) / s,
    ];
    for (got, want) in on_screen.iter().zip(face) {
        assert!(
            (got - want).abs() < 0.05,
            "overlay box {on_screen:?}, face at {face:?}"
        );
    }
    assert_eq!(seen["detections"], 1, "{seen}");
    assert!(seen["snapshot_width"].as_u64().unwrap_or(0) > 0, "{seen}");
    assert!(
        seen["models"].as_array().is_some_and(|m| m
            .iter()
            .any(|r| r.as_str().is_some_and(|r| r.contains("CenterFace")))),
        "{seen}"
    );
    assert_eq!(
        seen["no_detector_notice"], 1,
        "no object detector is installed: {seen}"
    );
    let (_, v) = node.get(&format!("/api/streams/{id}"));
    let zones = &v["ai"]["zones"];
    assert_eq!(zones[0]["name"], "stage", "{v}");
    assert_eq!(zones[0]["points"].as_array().map(Vec::len), Some(4), "{v}");
    assert_eq!(
        v["ai"]["model"], "centerface",
        "the edit kept the model: {v}"
    );
    // The edit restarted the stream, which dropped the publisher.
    drop(push);
    push = StillPush::start(&png, &node.rtmp_url(&key), 240);

    // The picture as the rendition carries it, before privacy mode.
    let before = rendition_luma(dir.path(), &id, now_ms());

    // Privacy mode alone (one detector process, the face detector).
    let (st, v) = node.send(
        "PATCH",
        &format!("/api/streams/{id}"),
        Some(&json!({"ai": {"model": null}, "privacy": {"blur_faces": true}}).to_string()),
    );
    assert_eq!(st, 200, "{v}");
    // The edit restarted the stream, which dropped the publisher.
    drop(push);
    let _push = StillPush::start(&png, &node.rtmp_url(&key), 240);
    // No object detector any more: its sensor is removed (an empty retained config).
    mqtt.wait(
        &format!("homeassistant/binary_sensor/venue/{id}_face/config"),
        Duration::from_secs(20),
        |m| m.payload.is_empty(),
    );
    let v = node.wait_stream(&id, "covering", Duration::from_secs(60), |v| {
        v["analysis"]["privacy"]["covered"].as_u64().unwrap_or(0) > 20
    });
    assert_eq!(v["analysis"]["privacy"]["state"], "covering", "{v}");
    let (_, _, metrics) = node.get_bytes("/metrics");
    assert!(
        String::from_utf8_lossy(&metrics)
            .lines()
            .any(|l| l.starts_with(&format!("lpe_privacy_covered_total{{stream=\"{id}\"}}"))),
    );
    let after = rendition_luma(dir.path(), &id, now_ms());
    let (_, var_before) = stats(&before, SIZE, FACE, true);
    let (_, var_after) = stats(&after, SIZE, FACE, true);
    eprintln!(
        "face box variance {var_before:.1} → {var_after:.1}; gate delay {} ms",
        v["analysis"]["privacy"]["delay_ms"]
    );
    assert!(
        var_after <= var_before * 0.1,
        "variance in the face box: {var_before:.1} before, {var_after:.1} covered"
    );
    // Outside the covered box (the face's, grown by the mask's margin and a little more for
    // the encoder's blocks), the picture is what it was.
    let grown = [
        FACE[0] - 40.0,
        FACE[1] - 40.0,
        FACE[2] + 40.0,
        FACE[3] + 40.0,
    ];
    let diff: Vec<u8> = before
        .iter()
        .zip(&after)
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let (mean_diff, _) = stats(&diff, SIZE, grown, false);
    eprintln!("outside the face: mean difference {mean_diff:.2}");
    assert!(
        mean_diff < 3.0,
        "outside the face the picture changed by {mean_diff:.2} on average"
    );
    let (_, var_out_before) = stats(&before, SIZE, grown, false);
    let (_, var_out_after) = stats(&after, SIZE, grown, false);
    assert!(
        (var_out_after / var_out_before - 1.0).abs() < 0.05,
        "variance outside: {var_out_before:.1} → {var_out_after:.1}"
    );

    // Kill the face detector: pictures are blanked, then covered again once it is back.
    let pids = workers(&node);
    assert_eq!(pids.len(), 1, "one detector process: {pids:?}");
    let killed = Command::new("kill")
        .args(["-KILL", &pids[0].to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    next_event(&events, "privacy_blanked", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, _, jpeg) = node.get_bytes(&format!("/api/streams/{id}/snapshot.jpg"));
        if st == 200 {
            let luma = jpeg_luma(&jpeg);
            let (mean, var) = stats(&luma, 640, [0.0, 0.0, 0.0, 0.0], false);
            if mean < 25.0 && var < 10.0 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the picture was never blanked");
        std::thread::sleep(Duration::from_millis(200));
    }
    next_event(&events, "privacy_restored", Duration::from_secs(30));
    let back = rendition_luma(dir.path(), &id, now_ms() + 500);
    let (_, var_back) = stats(&back, SIZE, FACE, true);
    let (mean_back, _) = stats(&back, SIZE, grown, false);
    assert!(mean_back > 40.0, "the picture is back");
    assert!(var_back <= var_before * 0.1, "and the face still covered");
    assert_eq!(workers(&node).len(), 1, "the detector was started again");
}

#[test]
fn a_missing_model_is_an_event_and_the_video_runs_on() {
    let _one = one_node_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let png = astronaut(dir.path());
    let node = NodeProc::start(dir.path());
    let created = node.create(json!({
        "name": "no model",
        "source": {"kind": "rtmp"},
        "ladder": [{"name": "source", "bitrate_kbps": 500}],
        "ai": {"model": "m-notinstalled"},
    }));
    let id = created["id"].as_str().expect("id").to_string();
    let key = created["stream_key"].as_str().expect("key").to_string();
    let _push = StillPush::start(&png, &node.rtmp_url(&key), 60);
    let v = node.wait_stream(&id, "encoding", Duration::from_secs(60), |v| {
        v["status"]["renditions"][0]["fps"].as_f64().unwrap_or(0.0) > 5.0
    });
    let objects = &v["analysis"]["objects"];
    assert_eq!(objects["state"], "failed", "{v}");
    assert!(
        objects["error"]
            .as_str()
            .is_some_and(|e| e.contains("not installed")),
        "{objects}"
    );
    let (_, events) = node.get(&format!("/api/events?stream_id={id}"));
    assert!(
        events
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["kind"] == "ai_failed")),
        "{events}"
    );
}

/// A node with the test graphs' ball detector uploaded (its model id), and its events.
fn ball_node(dir: &Path) -> (NodeProc, Value, mpsc::Receiver<(String, Value)>) {
    let graphs = common::test_graphs();
    let node = NodeProc::start(dir);
    let model = std::fs::read(graphs.path().join("ball.onnx")).expect("ball.onnx");
    let (st, m) = node.upload_model(
        "name=ball&kind=yolo&width=320&height=320&labels=ball",
        &model,
    );
    assert_eq!(st, 201, "{m}");
    let events = sse(&node);
    (node, m["id"].clone(), events)
}

#[test]
fn a_moving_ball_enters_and_leaves_a_zone() {
    let _one = one_node_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, model, events) = ball_node(dir.path());
    // The left half of the picture; the ball swings across the middle every few seconds.
    node.create(json!({
        "name": "ball",
        "source": {"kind": "test", "pattern": "ball", "width": 640, "height": 360, "fps": 30},
        "ladder": [{"name": "240p", "height": 240, "bitrate_kbps": 300}],
        "ai": {"model": model, "fps": 10, "min_duration_ms": 300,
               "zones": [{"name": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}]},
    }));
    let t = Duration::from_secs(60);
    let zones = |v: &Value| v["object"]["zones"].clone();
    let started = next_event(&events, "object_started", t);
    assert_eq!(started["object"]["label"], "ball", "{started}");
    assert_eq!(
        zones(&started),
        json!(["left"]),
        "started in the zone: {started}"
    );
    let b = &started["object"]["bbox"];
    let centre = (b[0].as_f64().unwrap_or(9.0) + b[2].as_f64().unwrap_or(9.0)) / 2.0;
    assert!(centre < 0.5, "in the left half: {started}");
    // It leaves, then comes back: zone changes of the same object.
    let mut seen = Vec::new();
    let deadline = Instant::now() + t;
    while seen.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = next_event(&events, "object_updated", left);
        if e["object"]["id"] != started["object"]["id"] {
            continue;
        }
        let z = zones(&e);
        if seen.last() != Some(&z) && (z == json!([]) || z == json!(["left"])) {
            seen.push(z);
        }
    }
    assert_eq!(
        seen,
        vec![json!([]), json!(["left"])],
        "left the zone, then entered it"
    );
}

#[test]
fn recording_on_events_keeps_the_ball_in_its_zone_with_pre_and_post_roll() {
    let _one = one_node_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, model, events) = ball_node(dir.path());
    // The left quarter: the ball swings through it for about a third of each 6.7 s swing.
    // A keyframe every half second, so the pre-roll starts close to where it is asked to.
    let created = node.create(json!({
        "name": "ball",
        "source": {"kind": "test", "pattern": "ball", "width": 640, "height": 360, "fps": 30},
        "ladder": [{"name": "240p", "height": 240, "bitrate_kbps": 300, "gop_frames": 15}],
        "ai": {"model": model, "fps": 10, "min_duration_ms": 300,
               "zones": [{"name": "left", "points": [[0, 0], [0.25, 0], [0.25, 1], [0, 1]]}]},
        "recording": {"mode": "events", "pre_roll_seconds": 1, "post_roll_seconds": 1},
    }));
    let id = created["id"].as_str().expect("id").to_string();
    let first = next_event(&events, "object_started", Duration::from_secs(60));
    // When it entered the zone and counted (it was followed, outside the zone, before).
    let counted = first["ts_ms"].as_u64().expect("ts");
    let began = now_ms();
    // Three swings.
    std::thread::sleep(Duration::from_secs(20));
    let v = node.get(&format!("/api/streams/{id}")).1;
    let state = v["status"]["recording"]["state"].clone();
    assert!(state == "waiting" || state == "recording", "{v}");
    let (st, v) = node.send("POST", &format!("/api/streams/{id}/stop"), None);
    assert_eq!(st, 200, "{v}");
    node.wait_state(&id, "stopped", Duration::from_secs(15));
    let ended = now_ms();
    let (st, t) = node.get(&format!(
        "/api/recordings?stream_id={id}&from={}&to={}",
        counted - 60_000,
        ended + 60_000
    ));
    assert_eq!(st, 200, "{t}");
    let spans: Vec<(u64, u64)> = t["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| {
            (
                s["from_ms"].as_u64().unwrap_or(0),
                s["to_ms"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(spans.len() >= 2, "a stretch per visit, gaps between: {t}");
    let (from, _) = spans[0];
    assert!(
        from + 700 <= counted && counted <= from + 4000,
        "the first stretch starts with its pre-roll: from {from}, object counted at {counted}; {spans:?}"
    );
    let recorded: u64 = spans.iter().map(|(a, b)| b - a).sum();
    let elapsed = ended - counted.min(began);
    assert!(
        recorded * 10 < elapsed * 9,
        "only the visits are kept: {recorded} ms of {elapsed} ms; {spans:?}"
    );
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1 + 300, "a gap between visits: {spans:?}");
    }
}
