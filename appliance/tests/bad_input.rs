//! Bad input, each a test: the node answers with a clear error or status, loses nothing, and
//! keeps every other stream running.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{FfmpegPush, NodeProc, RawPublisher};
use serde_json::{Value, json};

/// A small always-on stream whose health proves the others were not disturbed.
fn bystander(node: &NodeProc) -> String {
    let s = node.create(json!({
        "name": "bystander",
        "source": {"kind": "test", "width": 320, "height": 240, "fps": 10},
        "ladder": [{"name": "source", "bitrate_kbps": 300}]
    }));
    let id = s["id"].as_str().expect("id").to_string();
    node.wait_state(&id, "running", Duration::from_secs(20));
    id
}

fn assert_undisturbed(node: &NodeProc, id: &str) {
    let (status, _) = node.get("/api/health");
    assert_eq!(status, 200);
    let (_, v) = node.get(&format!("/api/streams/{id}"));
    assert_eq!(v["status"]["state"], "running", "{v}");
    assert_eq!(v["status"]["reconnects"], 0, "{v}");
}

fn events(node: &NodeProc) -> Vec<Value> {
    node.get("/api/events?limit=200")
        .1
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The refusal is an open alert, for every operator, until one acknowledges it; routine
/// events are not alerts.
fn acknowledge_the_refusal(node: &NodeProc) {
    let list = |query: &str| {
        node.get(&format!("/api/events?{query}"))
            .1
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let open = list("alerts=open&limit=100");
    assert!(
        open.iter().all(|e| e["kind"] != "stream_created"),
        "{open:?}"
    );
    let refused = open
        .iter()
        .find(|e| e["kind"] == "rtmp_refused")
        .unwrap_or_else(|| panic!("the refusal is not an open alert: {open:?}"));
    assert!(refused["acknowledged_ms"].is_null(), "{refused}");
    let id = refused["id"].as_i64().expect("id");
    let (status, acked) = node.send("POST", &format!("/api/events/{id}/acknowledge"), None);
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["acknowledged_by"], "admin", "{acked}");
    let at = acked["acknowledged_ms"].as_u64().expect("when");
    assert!(
        at >= refused["ts_ms"].as_u64().unwrap_or(u64::MAX),
        "{acked}"
    );
    assert!(list("alerts=open&limit=100").iter().all(|e| e["id"] != id));
    let all = list("alerts=all&limit=100");
    let kept = all.iter().find(|e| e["id"] == id).expect("still listed");
    assert_eq!(kept["acknowledged_ms"], at, "{kept}");
    // Again: the first acknowledgement stands.
    let (status, again) = node.send("POST", &format!("/api/events/{id}/acknowledge"), None);
    assert_eq!(
        (status, &again["acknowledged_ms"]),
        (200, &acked["acknowledged_ms"])
    );
    let created = list("limit=200")
        .into_iter()
        .find(|e| e["kind"] == "stream_created")
        .expect("a stream_created event");
    let routine = created["id"].as_i64().expect("id");
    let (status, body) = node.send("POST", &format!("/api/events/{routine}/acknowledge"), None);
    assert_eq!(
        (status, &body["error"]["field"]),
        (409, &json!("event_id")),
        "{body}"
    );
    let (status, _) = node.send("POST", "/api/events/99999999/acknowledge", None);
    assert_eq!(status, 404);
    let (status, body) = node.get("/api/events?alerts=maybe");
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_query")),
        "{body}"
    );
}

#[test]
fn rtmp_garbage_half_handshakes_and_bad_publishes_are_contained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());
    let by = bystander(&node);
    let rtmp = node.create(
        json!({"name": "ingest", "source": {"kind": "rtmp", "stream_key": "good-key-123"}}),
    );
    let rtmp_id = rtmp["id"].as_str().expect("id").to_string();

    // Garbage bytes instead of a handshake: the connection is closed.
    let mut s = TcpStream::connect(("127.0.0.1", node.rtmp)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _ = s.write_all(&garbage);
    let mut buf = [0u8; 8192];
    let mut closed = false;
    for _ in 0..10 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(closed, "garbage connection stayed open");

    // A handshake that stops half-way is dropped after the handshake timeout.
    let mut half = TcpStream::connect(("127.0.0.1", node.rtmp)).expect("connect");
    half.write_all(&[3u8]).expect("c0");
    half.write_all(&[0u8; 700]).expect("part of c1");
    half.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let started = Instant::now();
    let mut total = 0;
    loop {
        match half.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(19),
        "half handshake never dropped ({total} bytes read)"
    );

    // Unknown stream key: refused, and said so in the events.
    let push = FfmpegPush::start(&node.rtmp_url("no-such-key-999"), "320x240", 3);
    let (status, _) = push.wait();
    assert!(
        !status.success(),
        "publish with an unknown key was accepted"
    );
    assert!(events(&node).iter().any(|e| e["kind"] == "rtmp_refused"));
    acknowledge_the_refusal(&node);
    // A wrong application name is refused too.
    let err = RawPublisher::publish(node.rtmp, "other-app", "good-key-123").err();
    assert!(err.is_some(), "publish to a wrong app was accepted");

    // H.265 over FLV (codec id 12), then Enhanced RTMP HEVC: a clear status, no crash.
    for first in [
        vec![0x1c, 0x00, 0, 0, 0],
        vec![0x90, b'h', b'v', b'c', b'1'],
    ] {
        let mut p = RawPublisher::publish(node.rtmp, "live", "good-key-123").expect("publish");
        let mut tag = first.clone();
        tag.extend_from_slice(&[0u8; 32]);
        p.video(0, tag).expect("send");
        let v = node.wait_state(&rtmp_id, "failed", Duration::from_secs(10));
        let err = v["status"]["last_error"].as_str().unwrap_or("");
        assert!(err.contains("H.265"), "{v}");
        drop(p);
        // the key is free again for the next publisher
        std::thread::sleep(Duration::from_millis(500));
    }

    // Audio only (AAC tags, no video): refused with a status saying why.
    let mut p = RawPublisher::publish(node.rtmp, "live", "good-key-123").expect("publish");
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut ts = 0;
    let mut failed = Value::Null;
    while Instant::now() < deadline {
        if p.audio(ts, vec![0xaf, 0x01, 0x21, 0x10, 0x04, 0x60])
            .is_err()
        {
            break;
        }
        ts += 23;
        let (_, v) = node.get(&format!("/api/streams/{rtmp_id}"));
        if v["status"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("audio-only"))
        {
            failed = v;
            break;
        }
        std::thread::sleep(Duration::from_millis(23));
    }
    assert_eq!(failed["status"]["state"], "failed", "{failed}");
    drop(p);

    // After all that a good publisher still gets through.
    std::thread::sleep(Duration::from_millis(500));
    let push = FfmpegPush::start(&node.rtmp_url("good-key-123"), "320x240", 6);
    node.wait_state(&rtmp_id, "running", Duration::from_secs(20));
    drop(push);
    assert_undisturbed(&node, &by);
}

#[test]
fn dead_sources_reconnect_with_a_reason_and_disturb_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());
    let by = bystander(&node);
    // An RTSP server that accepts the connection and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    let s = node.create(json!({
        "name": "mute camera",
        "source": {"kind": "rtsp", "url": format!("rtsp://127.0.0.1:{port}/stream")}
    }));
    let id = s["id"].as_str().expect("id").to_string();
    let v = node.wait_stream(
        &id,
        "reconnecting with an error",
        Duration::from_secs(40),
        |v| v["status"]["state"] == "reconnecting" && v["status"]["last_error"].is_string(),
    );
    assert!(v["status"]["reconnects"].as_u64() >= Some(1), "{v}");

    // A file that does not exist.
    let s = node.create(
        json!({"name": "missing file", "source": {"kind": "uri", "uri": "/nonexistent/clip.mp4"}}),
    );
    let id = s["id"].as_str().expect("id").to_string();
    let v = node.wait_stream(&id, "reconnecting", Duration::from_secs(20), |v| {
        v["status"]["state"] == "reconnecting"
    });
    assert!(v["status"]["last_error"].is_string(), "{v}");
    assert_undisturbed(&node, &by);
}

fn expect_invalid(node: &NodeProc, body: Value, field: &str) {
    let (status, v) = node.send("POST", "/api/streams", Some(&body.to_string()));
    assert_eq!(status, 422, "{body} → {v}");
    assert_eq!(v["error"]["field"], field, "{body} → {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[test]
fn api_rejects_bad_streams_with_field_level_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());
    let test_src = json!({"kind": "test", "width": 640, "height": 360, "fps": 30});
    let rung = |extra: Value| {
        let mut r = json!({"name": "r", "height": 240, "bitrate_kbps": 500});
        if let (Some(r), Some(e)) = (r.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                r.insert(k.clone(), v.clone());
            }
        }
        r
    };
    expect_invalid(
        &node,
        json!({"name": "x", "source": test_src, "ladder": [rung(json!({"height": 241}))]}),
        "ladder[0].height",
    );
    expect_invalid(
        &node,
        json!({"name": "x", "source": test_src, "ladder": [rung(json!({"width": 425}))]}),
        "ladder[0].width",
    );
    expect_invalid(
        &node,
        json!({"name": "x", "source": test_src, "ladder": [rung(json!({"fps": 0}))]}),
        "ladder[0].fps",
    );
    expect_invalid(
        &node,
        json!({"name": "x", "source": test_src, "ladder": [rung(json!({"bitrate_kbps": 0}))]}),
        "ladder[0].bitrate_kbps",
    );
    expect_invalid(
        &node,
        json!({"name": "x", "source": test_src, "ladder": [rung(json!({"height": 720}))]}),
        "ladder[0].height",
    );
    expect_invalid(
        &node,
        json!({"name": "x", "source": test_src, "ladder": []}),
        "ladder",
    );
    expect_invalid(
        &node,
        json!({"name": "x", "source": {"kind": "v4l2", "device": "/dev/video-none"}}),
        "source.device",
    );
    expect_invalid(
        &node,
        json!({"name": "x", "source": {"kind": "rtsp", "url": "http://cam/"}}),
        "source.url",
    );
    expect_invalid(
        &node,
        json!({"name": "x", "source": {"kind": "rtmp", "stream_key": "short"}}),
        "source.stream_key",
    );
    expect_invalid(
        &node,
        json!({"name": "x", "source": {"kind": "test"}, "encoder": "nvh264enc"}),
        "encoder",
    );
    expect_invalid(
        &node,
        json!({"name": "x", "source": {"kind": "teleport"}}),
        "source.kind",
    );
    expect_invalid(
        &node,
        json!({"name": "x", "source": test_src, "colour": "red"}),
        "colour",
    );
    expect_invalid(
        &node,
        json!({"name": "x", "source": {"kind": "test", "width": "wide"}}),
        "source",
    );
    expect_invalid(&node, json!({"name": "", "source": test_src}), "name");

    // Not JSON at all.
    let (status, v) = node.send("POST", "/api/streams", Some("{not json"));
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_json");

    // Duplicate stream keys conflict.
    node.create(json!({"name": "a", "source": {"kind": "rtmp", "stream_key": "same-key-123"}, "enabled": false}));
    let (status, v) = node.send(
        "POST",
        "/api/streams",
        Some(
            &json!({"name": "b", "source": {"kind": "rtmp", "stream_key": "same-key-123"}})
                .to_string(),
        ),
    );
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["field"], "source.stream_key");

    // An update that fails validation changes nothing.
    let s = node.create(json!({"name": "keep", "source": test_src, "enabled": false}));
    let id = s["id"].as_str().expect("id");
    let (status, _) = node.send(
        "PATCH",
        &format!("/api/streams/{id}"),
        Some(&json!({"ladder": [rung(json!({"bitrate_kbps": 0}))]}).to_string()),
    );
    assert_eq!(status, 422);
    let (_, after) = node.get(&format!("/api/streams/{id}"));
    assert_eq!(after["ladder"], s["ladder"]);
    let (status, v) = node.send(
        "PATCH",
        &format!("/api/streams/{id}"),
        Some(&json!({"name": "renamed"}).to_string()),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["name"], "renamed");

    // Unknown things are 404 with the JSON error shape.
    let (status, v) = node.get("/api/streams/nope");
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "not_found");
    let (status, _) = node.get("/api/nothing-here");
    assert_eq!(status, 404);
    let (status, v) = node.get(&format!("/api/streams/{id}/snapshot.jpg"));
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "no_picture");

    let (status, enc) = node.get("/api/encoders");
    assert_eq!(status, 200);
    assert_eq!(enc["preferred"], "x264enc");
    let (status, cams) = node.get("/api/cameras");
    assert_eq!(status, 200);
    assert!(cams.is_array());
}

fn run_node(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livepeer-edge"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_fails_start_up_with_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("edge.toml");
    std::fs::write(&cfg, "[hls\nsegment_seconds = ").expect("write");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let (code, err) = run_node(
        &[
            "run",
            "--config",
            cfg.to_str().expect("utf-8"),
            "--data-dir",
            data,
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not valid TOML"), "{err}");

    std::fs::write(&cfg, "[hls]\nsegment_seconds = 0\n").expect("write");
    let (code, err) = run_node(
        &[
            "run",
            "--config",
            cfg.to_str().expect("utf-8"),
            "--data-dir",
            data,
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("hls.segment_seconds") && err.contains("allowed: 1 to 30"),
        "{err}"
    );

    let (code, err) = run_node(
        &["run", "--data-dir", data],
        &[("LPE_HTTP_LISTEN", "nowhere")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("http.listen"), "{err}");

    let (code, err) = run_node(
        &["run", "--data-dir", data],
        &[("LPE_MEDIA_MAX_STREAMS", "many")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("media.max_streams"), "{err}");

    // The effective configuration prints with every layer applied.
    let (code, _) = run_node(
        &["config", "--data-dir", data],
        &[("LPE_HLS_MAX_SEGMENTS", "5")],
    );
    assert_eq!(code, 0);
}

/// An RTMP connection that has completed the plain handshake.
fn rtmp_after_handshake(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut hello = vec![3u8];
    hello.extend_from_slice(&[7u8; 1536]);
    s.write_all(&hello).expect("c0 c1");
    let mut answer = vec![0u8; 1 + 2 * 1536];
    s.read_exact(&mut answer).expect("s0 s1 s2");
    s.write_all(&[7u8; 1536]).expect("c2");
    s
}

fn rtmp_header0(csid: u8, len: u32, type_id: u8, stream_id: u32) -> Vec<u8> {
    let mut h = vec![csid, 0, 0, 0];
    h.extend_from_slice(&len.to_be_bytes()[1..]);
    h.push(type_id);
    h.extend_from_slice(&stream_id.to_le_bytes());
    h
}

/// A message in 128-byte chunks.
fn rtmp_message(csid: u8, type_id: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = rtmp_header0(csid, payload.len() as u32, type_id, stream_id);
    for (i, c) in payload.chunks(128).enumerate() {
        if i > 0 {
            b.push(0xc0 | csid);
        }
        b.extend_from_slice(c);
    }
    b
}

/// Sends `bytes` and waits for the server to close the connection or go quiet.
fn send_and_drain(port: u16, bytes: &[u8]) {
    let mut s = rtmp_after_handshake(port);
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

/// Is the connection closed by the server within `within`?
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                );
            }
        }
    }
}

#[test]
fn hostile_rtmp_connections_never_end_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start_with(dir.path(), &[("LPE_RTMP_MAX_CONNECTIONS_PER_ADDRESS", "3")]);
    let by = bystander(&node);

    // A trickle of one byte every few seconds is not progress: closed after 30 s without a
    // complete message, however steady the bytes.
    let port = node.rtmp;
    let trickle = std::thread::spawn(move || {
        let mut s = rtmp_after_handshake(port);
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let started = Instant::now();
        let header = rtmp_header0(3, 100, 20, 0);
        let mut buf = [0u8; 4096];
        for b in header.iter().chain(std::iter::repeat(&0u8)) {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            match s.read(&mut buf) {
                Ok(0) => break,
                Err(e)
                    if e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut =>
                {
                    break;
                }
                _ => {}
            }
            if started.elapsed() > Duration::from_secs(60) {
                return None;
            }
            std::thread::sleep(Duration::from_secs(3));
        }
        Some(started.elapsed())
    });

    // The four inputs that ended the node when its RTMP parser panicked on them.
    let amf_string = |v: &str| {
        let mut b = vec![0x02];
        b.extend_from_slice(&(v.len() as u16).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
        b
    };
    send_and_drain(node.rtmp, &rtmp_header0(3, 0, 0x14, 0));
    send_and_drain(
        node.rtmp,
        &rtmp_message(4, 18, 1, &amf_string("@setDataFrame")),
    );
    let mut interleaved = rtmp_header0(2, 4, 1, 0);
    interleaved.extend_from_slice(&65_536u32.to_be_bytes());
    interleaved.extend(rtmp_header0(4, 70_000, 9, 1));
    interleaved.extend(vec![0u8; 65_536]);
    interleaved.extend(rtmp_header0(5, 5_000, 9, 1));
    interleaved.extend(vec![0u8; 5_000]);
    send_and_drain(node.rtmp, &interleaved);
    let mut nested = amf_string("connect");
    for _ in 0..200_000 {
        nested.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
    }
    send_and_drain(node.rtmp, &rtmp_message(3, 20, 0, &nested));
    assert_undisturbed(&node, &by);

    // A message longer than the node takes is refused at its header.
    let mut big = rtmp_after_handshake(node.rtmp);
    big.write_all(&rtmp_header0(4, (16 << 20) - 1, 9, 1))
        .expect("header");
    assert!(
        closed_within(&mut big, Duration::from_secs(5)),
        "16 MiB message accepted"
    );

    // Per-address cap: the trickler holds one slot; two more fit, the next is closed at once.
    let held: Vec<TcpStream> = (0..2).map(|_| rtmp_after_handshake(node.rtmp)).collect();
    let mut extra = TcpStream::connect(("127.0.0.1", node.rtmp)).expect("connect");
    assert!(
        closed_within(&mut extra, Duration::from_secs(5)),
        "per-address cap not applied"
    );
    drop(held);

    let took = trickle
        .join()
        .expect("trickle thread")
        .expect("trickler never closed");
    assert!(
        took >= Duration::from_secs(25) && took < Duration::from_secs(45),
        "trickler closed after {took:?}"
    );
    assert_undisturbed(&node, &by);
    // A publisher still gets in after all that.
    let rtmp = node.create(
        json!({"name": "after", "source": {"kind": "rtmp", "stream_key": "after-key-123"}}),
    );
    let push = FfmpegPush::start(&node.rtmp_url("after-key-123"), "320x240", 6);
    node.wait_state(
        rtmp["id"].as_str().expect("id"),
        "running",
        Duration::from_secs(20),
    );
    drop(push);
}

#[test]
fn invented_http_methods_do_not_grow_the_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());
    let http_port: u16 = node
        .url("/")
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("port");
    for i in 0..300 {
        let mut s = TcpStream::connect(("127.0.0.1", http_port)).expect("connect");
        let _ = write!(
            s,
            "INVENTED{i} /api/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        );
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let (status, _, body) = node.get_bytes("/metrics");
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains("INVENTED"), "a method became a label");
    assert!(
        text.contains("method=\"other\""),
        "invented methods not counted"
    );
}

/// Every `LPE_…` name the README documents is accepted by the node: the secrets and the
/// configuration file are read where they are used, and never printed.
#[test]
fn every_documented_environment_variable_is_accepted() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    let mut names: Vec<&str> = readme
        .match_indices("LPE_")
        .map(|(i, _)| {
            let rest = &readme[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        // `LPE_` alone introduces the LPE_<SECTION>_<KEY> pattern.
        .filter(|n| n.len() > 4 && !n.ends_with('_'))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.contains(&"LPE_MQTT_PASSWORD"), "{names:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("edge.toml");
    std::fs::write(&cfg, "[hls]\nsegment_seconds = 3\n").expect("write");
    for name in names {
        let value = match name {
            "LPE_CONFIG" => cfg.to_str().expect("utf-8").to_string(),
            _ => "documented-secret-value".to_string(),
        };
        let out = Command::new(env!("CARGO_BIN_EXE_livepeer-edge"))
            .arg("config")
            .env(name, &value)
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains("documented-secret-value"),
            "{name} printed: {text}"
        );
        if name == "LPE_CONFIG" {
            assert!(text.contains("segment_seconds = 3"), "{text}");
        }
    }
}

#[test]
fn hls_serves_nothing_through_a_symbolic_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("secret.ts"), "not for viewers").expect("write");
    let hls = dir.path().join("hls");
    std::fs::create_dir_all(hls.join("real")).expect("hls dir");
    std::fs::write(hls.join("real/seg.ts"), "segment").expect("write");
    std::os::unix::fs::symlink(outside.path(), hls.join("linked-dir")).expect("symlink");
    std::os::unix::fs::symlink(outside.path().join("secret.ts"), hls.join("real/linked.ts"))
        .expect("symlink");
    assert_eq!(node.get_bytes("/hls/real/seg.ts").0, 200);
    for path in [
        "/hls/linked-dir/secret.ts",
        "/hls/real/linked.ts",
        "/hls/real/%73eg.ts",
    ] {
        let (status, _, body) = node.get_bytes(path);
        assert_eq!(status, 404, "{path}: {}", String::from_utf8_lossy(&body));
    }
}

#[test]
fn stream_secrets_are_kept_on_edit_and_never_shown_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());
    let s = node.create(json!({"name": "obs", "source": {"kind": "rtmp"}, "enabled": true}));
    let id = s["id"].as_str().expect("id").to_string();
    let key = s["stream_key"].as_str().expect("key once").to_string();

    // An edit that leaves the key out (as every client must, never having seen it) keeps it.
    let (status, v) = node.send(
        "PUT",
        &format!("/api/streams/{id}"),
        Some(&json!({"name": "obs renamed", "source": {"kind": "rtmp"}}).to_string()),
    );
    assert_eq!(status, 200, "{v}");
    assert!(v.get("stream_key").is_none(), "{v}");
    assert!(
        RawPublisher::publish(node.rtmp, "live", &key).is_ok(),
        "the key changed on PUT"
    );
    std::thread::sleep(Duration::from_millis(300));

    // Rotation: a new key, shown once; the old one is refused.
    let (status, r) = node.send("POST", &format!("/api/streams/{id}/stream-key"), None);
    assert_eq!(status, 200, "{r}");
    let new_key = r["stream_key"].as_str().expect("new key").to_string();
    assert_ne!(new_key, key);
    assert!(
        r["rtmp_url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&new_key)),
        "{r}"
    );
    assert!(
        RawPublisher::publish(node.rtmp, "live", &key).is_err(),
        "old key still works"
    );
    assert!(RawPublisher::publish(node.rtmp, "live", &new_key).is_ok());

    // Credentials written into an RTSP URL are moved out of it and never echoed.
    let cam = node.create(json!({"name": "cam", "enabled": false,
        "source": {"kind": "rtsp", "url": "rtsp://admin:s3cret%21@127.0.0.1:9/stream"}}));
    let text = cam.to_string();
    assert!(!text.contains("s3cret"), "{text}");
    assert_eq!(cam["source"]["url"], "rtsp://127.0.0.1:9/stream");
    assert_eq!(cam["source"]["username"], "admin");
    assert_eq!(cam["source"]["has_password"], true);
    // A merge patch of the name changes the name only.
    let cam_id = cam["id"].as_str().expect("id");
    let (status, patched) = node.send(
        "PATCH",
        &format!("/api/streams/{cam_id}"),
        Some(r#"{"name":"cam 2"}"#),
    );
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["name"], "cam 2");
    for field in ["source", "ladder", "encoder", "enabled"] {
        assert_eq!(patched[field], cam[field], "{field} changed on PATCH");
    }
    let (_, all) = node.get("/api/streams");
    let all = all.to_string();
    assert!(!all.contains("s3cret") && !all.contains(&new_key), "{all}");
}

fn http_port(node: &NodeProc) -> u16 {
    node.url("/")
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("port")
}

/// `GET /api/health` from a given local address; the status, or 0 when refused.
fn health_from(source: &str, port: u16) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(["--interface", source])
        .arg(format!("http://127.0.0.1:{port}/api/health"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

#[test]
fn slow_idle_and_unauthenticated_http_clients_are_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start_with(
        dir.path(),
        &[
            ("LPE_HTTP_MAX_CONNECTIONS", "40"),
            ("LPE_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "20"),
            ("LPE_HTTP_HEADER_TIMEOUT_SECONDS", "3"),
        ],
    );
    let port = http_port(&node);
    // 30 slowloris connections from one address: 20 are held until the header timeout,
    // the rest are closed at once; another address is still served.
    let mut slow: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            let _ = s.write_all(b"GET /api/health HTTP/1.1\r\nhost: x\r\nx-slow: ");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        health_from("127.0.0.2", port),
        200,
        "another address was locked out"
    );
    let started = Instant::now();
    let closed = slow
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_secs(6)))
        .filter(|closed| *closed)
        .count();
    assert_eq!(closed, 30, "slow connections left open");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    // An idle keep-alive connection is closed after the same time.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    idle.write_all(b"GET /api/health HTTP/1.1\r\nhost: x\r\n\r\n")
        .expect("request");
    let mut buf = [0u8; 4096];
    assert!(idle.read(&mut buf).expect("response") > 0);
    assert!(
        closed_within(&mut idle, Duration::from_secs(6)),
        "idle connection kept"
    );

    // A refused request's body is not waited for: the answer comes before the body.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(
        b"POST /api/streams HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 1000000\r\n\r\n",
    )
    .expect("headers");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let n = s.read(&mut buf).expect("an answer before the body");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert!(node.healthy());
}

#[test]
fn health_reports_each_subsystem_and_503_when_the_node_cannot_work() {
    // A broker that is not there: the node works, MQTT needs attention.
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start_with(dir.path(), &[("LPE_MQTT_URL", "mqtt://127.0.0.1:9")]);
    let (status, h) = node.get("/api/health");
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["checks"]["mqtt"]["status"], "degraded", "{h}");
    for ok in ["store", "encoders", "chain", "media", "subsystems"] {
        assert_eq!(h["checks"][ok]["status"], "ok", "{ok}: {h}");
    }
    let tasks: Vec<(&str, &str)> = h["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or(""),
                t["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        tasks,
        [
            ("device", "running"),
            ("hardware", "running"),
            ("mqtt", "running"),
            ("retention", "running"),
            ("rtmp", "running")
        ],
        "{h}"
    );
    drop(node);

    // Payments that cannot start (no keystore): that subsystem fails and is retried; the rest
    // of the node works on.
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start_with(
        dir.path(),
        &[
            ("LPE_PM_ROLE", "orchestrator"),
            ("LPE_PM_ETH_URL", "http://127.0.0.1:9"),
        ],
    );
    let mut h = serde_json::Value::Null;
    for _ in 0..50 {
        h = node.get("/api/health").1;
        if h["checks"]["subsystems"]["status"] == "degraded" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(h["status"], "degraded", "{h}");
    let detail = h["checks"]["subsystems"]["detail"].as_str().unwrap_or("");
    assert!(
        detail.starts_with("payments restarting: payments disabled: cannot unlock the account"),
        "{h}"
    );
    assert!(node.healthy());
    drop(node);

    // Only an encoder this machine lacks: the node cannot transcode, and says so with 503.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("edge.toml");
    std::fs::write(&cfg, "[media]\nencoder_candidates = [\"nvv4l2h264enc\"]\n").expect("write");
    let node = NodeProc::start_with(dir.path(), &[("LPE_CONFIG", cfg.to_str().expect("utf-8"))]);
    let (status, h) = node.get("/api/health");
    assert_eq!(status, 503, "{h}");
    assert_eq!(h["status"], "down", "{h}");
    assert_eq!(h["checks"]["encoders"]["status"], "down", "{h}");
}
