//! MQTT fleet control against a real Mosquitto broker: availability and Last Will, retained
//! state, telemetry, desired configuration, the command lifecycle, duplicate request ids,
//! bad requests, broker restarts and the node restarting itself.

mod common;

use std::time::Duration;

use common::NodeProc;
use common::mqtt::{Broker, Observer};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

fn start(dir: &std::path::Path, broker: &Broker, device: &str) -> NodeProc {
    let url = broker.url();
    NodeProc::start_with(
        dir,
        &[
            ("LPE_MQTT_URL", url.as_str()),
            ("LPE_MQTT_DEVICE_ID", device),
            ("LPE_MQTT_TELEMETRY_SECONDS", "1"),
        ],
    )
}

/// The results published for `request_id` on `topic`, in order.
fn results(obs: &Observer, topic: &str, request_id: &str) -> Vec<Value> {
    obs.on(topic)
        .into_iter()
        .map(|m| m.json())
        .filter(|v| v["request_id"] == request_id)
        .collect()
}

fn final_result(obs: &Observer, topic: &str, request_id: &str) -> Value {
    obs.wait(topic, T, |m| {
        let v = m.json();
        v["request_id"] == request_id && (v["state"] == "succeeded" || v["state"] == "failed")
    })
    .json()
}

#[test]
fn availability_state_telemetry_events_and_last_will() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let obs = Observer::connect(broker.port, &["livepeer-edge/box1/#"]);
    let mut node = start(dir.path(), &broker, "box1");
    obs.wait("livepeer-edge/box1/status", T, |m| m.text() == "online");
    let s = node.create(json!({"name": "bars", "source": {"kind": "test"},
        "recording": {"mode": "continuous"}}));
    let id = s["id"].as_str().expect("id").to_string();
    node.wait_state(&id, "running", T);

    // State is retained and follows the streams.
    let state = obs.wait("livepeer-edge/box1/state", T, |m| {
        m.json()["streams"].as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["id"] == id.as_str() && s["state"] == "running")
        })
    });
    assert_eq!(state.json()["device"]["name"], "test box");
    // Telemetry: device health, per-stream rates, payment counters.
    let t = obs.wait("livepeer-edge/box1/telemetry", T, |m| {
        m.json()["streams"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["fps"].as_f64().unwrap_or(0.0) > 0.0))
    });
    let t = t.json();
    assert!(t["tickets"]["won"].is_u64());
    // The recorder and the recordings' disk.
    let recording = &t["streams"][0]["recording"];
    assert!(
        ["starting", "recording"].contains(&recording["state"].as_str().unwrap_or("")),
        "{t}"
    );
    assert_eq!(t["recordings"]["disk_full"], false, "{t}");
    assert!(t["uptime_s"].is_u64());
    // Events: the stream came up.
    obs.wait("livepeer-edge/box1/events", T, |m| {
        m.json()["kind"] == "stream_up" && m.json()["stream_id"] == id.as_str()
    });

    // A newcomer sees the retained status and state at once.
    let late = Observer::connect(broker.port, &["livepeer-edge/box1/+"]);
    let status = late.wait("livepeer-edge/box1/status", T, |m| m.retain);
    assert_eq!(status.text(), "online");
    late.wait("livepeer-edge/box1/state", T, |m| m.retain);

    // SIGKILL: the broker publishes the Last Will.
    obs.clear();
    node.kill();
    obs.wait("livepeer-edge/box1/status", T, |m| m.text() == "offline");
    let late = Observer::connect(broker.port, &["livepeer-edge/box1/status"]);
    let status = late.wait("livepeer-edge/box1/status", T, |m| m.retain);
    assert_eq!(status.text(), "offline", "offline is retained");

    // A graceful stop says offline itself.
    let mut node = start(dir.path(), &broker, "box1");
    obs.wait("livepeer-edge/box1/status", T, |m| m.text() == "online");
    obs.clear();
    node.terminate();
    obs.wait("livepeer-edge/box1/status", T, |m| m.text() == "offline");
}

#[test]
fn desired_configuration_round_trip() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let obs = Observer::connect(broker.port, &["livepeer-edge/box2/#"]);
    let node = start(dir.path(), &broker, "box2");
    obs.wait("livepeer-edge/box2/status", T, |m| m.text() == "online");
    let desired = "livepeer-edge/box2/config/desired";
    let state = "livepeer-edge/box2/state";

    obs.publish(
        desired,
        &json!({"version": 1, "log_level": "debug", "streams": [
            {"id": "cam-a", "name": "Camera A", "source": {"kind": "test"}},
            {"id": "push", "name": "OBS", "source": {"kind": "rtmp"}, "enabled": false}
        ]})
        .to_string(),
        true,
    );
    let s = obs.wait(state, T, |m| m.json()["desired"]["status"] == "applied");
    let s = s.json();
    assert_eq!(s["desired"]["applied_version"], 1);
    assert_eq!(s["log_level"], "debug");
    let reported = s["streams"].as_array().expect("streams");
    let cam = reported
        .iter()
        .find(|x| x["id"] == "cam-a")
        .expect("cam-a reported");
    assert_eq!(cam["source"]["kind"], "test");
    assert!(cam["ladder"].as_array().is_some_and(|l| !l.is_empty()));
    let (_, streams) = node.get("/api/streams");
    let ids: Vec<&str> = streams
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{streams}");
    assert!(ids.contains(&"cam-a") && ids.contains(&"push"));
    // The stream key is a secret: neither the retained state nor the API shows it.
    let pushed = reported
        .iter()
        .find(|x| x["id"] == "push")
        .expect("push reported");
    assert_eq!(
        pushed["source"],
        json!({"kind": "rtmp", "has_stream_key": true})
    );
    let (_, push) = node.get("/api/streams/push");
    assert!(push["source"].get("stream_key").is_none(), "{push}");
    assert!(push.get("stream_key").is_none(), "{push}");
    let key = stored_stream_key(dir.path(), "push");

    // An invalid version changes nothing and says which field is wrong.
    obs.clear();
    obs.publish(
        desired,
        &json!({"version": 2, "streams": [
            {"id": "cam-a", "name": "Camera A", "source": {"kind": "test"},
             "ladder": [{"name": "x", "width": 7, "height": 720, "bitrate_kbps": 100}]}
        ]})
        .to_string(),
        true,
    );
    let s = obs.wait(state, T, |m| m.json()["desired"]["status"] == "rejected");
    let s = s.json();
    assert_eq!(s["desired"]["version"], 2);
    assert_eq!(s["desired"]["applied_version"], 1);
    assert!(
        s["desired"]["field"]
            .as_str()
            .unwrap_or("")
            .starts_with("streams[0].ladder[0]"),
        "{s}"
    );
    assert_eq!(node.get("/api/streams/push").0, 200, "nothing was removed");

    // Malformed JSON and wrong types are rejected the same way.
    obs.clear();
    obs.publish(desired, "{not json", true);
    let s = obs.wait(state, T, |m| m.json()["desired"]["status"] == "rejected");
    assert!(
        s.json()["desired"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("malformed JSON")
    );
    obs.clear();
    obs.publish(desired, r#"{"version": 3, "streams": {"id": "x"}}"#, true);
    let s = obs.wait(state, T, |m| m.json()["desired"]["status"] == "rejected");
    assert_eq!(s.json()["desired"]["field"], "streams");

    // Version 4 drops a stream and keeps the other's RTMP key.
    obs.clear();
    obs.publish(
        desired,
        &json!({"version": "v4", "streams": [
            {"id": "push", "name": "OBS main", "source": {"kind": "rtmp"}, "enabled": false}
        ]})
        .to_string(),
        true,
    );
    let s = obs.wait(state, T, |m| m.json()["desired"]["status"] == "applied");
    assert_eq!(s.json()["desired"]["deleted"], json!(["cam-a"]));
    assert_eq!(node.get("/api/streams/cam-a").0, 404);
    let (_, push) = node.get("/api/streams/push");
    assert_eq!(push["name"], "OBS main");
    assert_eq!(stored_stream_key(dir.path(), "push"), key);
}

#[test]
fn commands_run_once_report_their_lifecycle_and_refuse_bad_requests() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let obs = Observer::connect(broker.port, &["livepeer-edge/box3/#", "replies/#"]);
    let node = start(dir.path(), &broker, "box3");
    obs.wait("livepeer-edge/box3/status", T, |m| m.text() == "online");
    let s = node.create(json!({"name": "bars", "source": {"kind": "test"}}));
    let id = s["id"].as_str().expect("id").to_string();
    node.wait_state(&id, "running", T);
    let cmd = |name: &str| format!("livepeer-edge/box3/cmd/{name}");
    let res = |name: &str| format!("livepeer-edge/box3/cmd/{name}/result");

    // accepted → in_progress → succeeded, with the request_id field (MQTT 3-style).
    obs.publish(
        &cmd("stream_stop"),
        &json!({"request_id": "r1", "stream_id": id}).to_string(),
        false,
    );
    let done = final_result(&obs, &res("stream_stop"), "r1");
    assert_eq!(done["state"], "succeeded", "{done}");
    let states: Vec<Value> = results(&obs, &res("stream_stop"), "r1")
        .iter()
        .map(|v| v["state"].clone())
        .collect();
    assert_eq!(
        states,
        vec![json!("accepted"), json!("in_progress"), json!("succeeded")]
    );
    assert_eq!(node.get(&format!("/api/streams/{id}")).1["enabled"], false);

    // The same request id again: the stored result, and the command does not run.
    node.send("POST", &format!("/api/streams/{id}/start"), None);
    obs.clear();
    obs.publish(
        &cmd("stream_stop"),
        &json!({"request_id": "r1", "stream_id": id}).to_string(),
        false,
    );
    let again = final_result(&obs, &res("stream_stop"), "r1");
    assert_eq!(again["state"], "succeeded");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        results(&obs, &res("stream_stop"), "r1").len(),
        1,
        "only the stored result"
    );
    assert_eq!(
        node.get(&format!("/api/streams/{id}")).1["enabled"],
        true,
        "a repeated request id must not run again"
    );

    // A system update: accepted at once, its job followed in the API; this machine has no
    // RAUC, so the job fails with the reason. Its request id repeated starts nothing.
    // The stream started above settles first, so that only the job's events can republish
    // the fleet's state below.
    node.wait_state(&id, "running", T);
    std::thread::sleep(Duration::from_millis(600));
    obs.clear();
    let update = json!({"request_id": "up1", "url": "http://127.0.0.1:9/next.raucb"}).to_string();
    obs.publish(&cmd("update"), &update, false);
    let done = final_result(&obs, &res("update"), "up1");
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["state"], "accepted", "{done}");
    let started = done["result"]["started_ms"].clone();
    let deadline = std::time::Instant::now() + T;
    let job = loop {
        let (_, v) = node.get("/api/system/update");
        if v["job"]["state"] == "failed" {
            break v["job"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job never ended: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        job["reason"]
            .as_str()
            .is_some_and(|r| r.contains("update service")),
        "{job}"
    );
    assert_eq!(
        job["request_id"], "up1",
        "the job forgot its request: {job}"
    );
    // The fleet's retained state follows the job.
    obs.wait("livepeer-edge/box3/state", T, |m| {
        m.json()["update"]["job"]["state"] == "failed"
    });
    obs.clear();
    obs.publish(&cmd("update"), &update, false);
    let again = final_result(&obs, &res("update"), "up1");
    assert_eq!(again["result"]["started_ms"], started, "{again}");
    std::thread::sleep(Duration::from_millis(500));
    let (_, v) = node.get("/api/system/update");
    assert_eq!(
        v["job"]["started_ms"], started,
        "a repeated request id started a job: {v}"
    );
    assert_eq!(v["job"]["state"], "failed", "{v}");

    // The failed update is an open alert; the fleet acknowledges it, as itself.
    let (_, open) = node.get("/api/events?alerts=open");
    let alert = open
        .as_array()
        .and_then(|a| a.iter().find(|e| e["kind"] == "update_failed").cloned())
        .unwrap_or_else(|| panic!("no open update_failed alert: {open}"));
    obs.publish(
        &cmd("alert_acknowledge"),
        &json!({"request_id": "ack1", "event_id": alert["id"]}).to_string(),
        false,
    );
    let done = final_result(&obs, &res("alert_acknowledge"), "ack1");
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["acknowledged_by"], "fleet", "{done}");
    let (_, open) = node.get("/api/events?alerts=open");
    assert!(
        open.as_array()
            .is_some_and(|a| a.iter().all(|e| e["id"] != alert["id"])),
        "{open}"
    );
    obs.publish(
        &cmd("alert_acknowledge"),
        &json!({"request_id": "ack2", "event_id": "x"}).to_string(),
        false,
    );
    let refused = final_result(&obs, &res("alert_acknowledge"), "ack2");
    assert_eq!(refused["state"], "failed", "{refused}");

    // MQTT 5: correlation data and a response topic.
    obs.request(
        &cmd("stream_restart"),
        &json!({"stream_id": id}).to_string(),
        "replies/ops",
        "corr-7",
    );
    let reply = obs.wait("replies/ops", T, |m| m.json()["state"] == "succeeded");
    assert_eq!(reply.correlation.as_deref(), Some(&b"corr-7"[..]));
    assert_eq!(reply.json()["request_id"], "corr-7");

    // Snapshot: a JPEG in the result.
    node.wait_state(&id, "running", T);
    std::thread::sleep(Duration::from_secs(1));
    obs.publish(
        &cmd("snapshot"),
        &json!({"request_id": "snap", "stream_id": id}).to_string(),
        false,
    );
    let snap = final_result(&obs, &res("snapshot"), "snap");
    assert_eq!(snap["state"], "succeeded", "{snap}");
    assert!(
        snap["result"]["data_base64"]
            .as_str()
            .unwrap_or("")
            .starts_with("/9j/")
    );

    // Log level.
    obs.publish(
        &cmd("log_level"),
        r#"{"request_id":"lv","level":"debug"}"#,
        false,
    );
    assert_eq!(
        final_result(&obs, &res("log_level"), "lv")["state"],
        "succeeded"
    );
    obs.wait("livepeer-edge/box3/state", T, |m| {
        m.json()["log_level"] == "debug"
    });

    // Bad requests fail with a reason and change nothing.
    let before = node.get(&format!("/api/streams/{id}")).1;
    for (name, body, rid, reason) in [
        ("stream_stop", "{oops", None, "malformed JSON"),
        (
            "stream_stop",
            r#"{"stream_id":"x"}"#,
            None,
            "request id is required",
        ),
        (
            "stream_stop",
            r#"{"request_id":"b1","stream_id":5}"#,
            Some("b1"),
            "'stream_id' must be",
        ),
        (
            "stream_stop",
            r#"{"request_id":"b2"}"#,
            Some("b2"),
            "'stream_id' is required",
        ),
        (
            "stream_stop",
            r#"{"request_id":"b3","stream_id":"nope"}"#,
            Some("b3"),
            "no stream",
        ),
        (
            "self_destruct",
            r#"{"request_id":"b4"}"#,
            Some("b4"),
            "unknown command",
        ),
        (
            "log_level",
            r#"{"request_id":"b5","level":"loud=["}"#,
            Some("b5"),
            "not a level",
        ),
    ] {
        obs.clear();
        obs.publish(&cmd(name), body, false);
        let r = obs
            .wait(&res(name), T, |m| m.json()["state"] == "failed")
            .json();
        assert_eq!(
            r["request_id"],
            rid.map(Value::from).unwrap_or(Value::Null),
            "{r}"
        );
        assert!(
            r["reason"].as_str().unwrap_or("").contains(reason),
            "{name} {body}: {r}"
        );
    }
    let after = node.get(&format!("/api/streams/{id}")).1;
    assert_eq!(before["enabled"], after["enabled"]);
    assert_eq!(before["updated_ms"], after["updated_ms"]);

    // A burst, published without waiting: every command is acknowledged to the broker, which
    // would otherwise stop delivering at its in-flight limit (Mosquitto's default is 20).
    obs.clear();
    let burst = 60;
    for i in 0..burst {
        let level = if i % 2 == 0 { "info" } else { "warn" };
        obs.publish(
            &cmd("log_level"),
            &json!({"request_id": format!("burst-{i}"), "level": level}).to_string(),
            false,
        );
    }
    for i in 0..burst {
        let r = final_result(&obs, &res("log_level"), &format!("burst-{i}"));
        assert_eq!(r["state"], "succeeded", "{r}");
    }
}

#[test]
fn broker_restart_and_node_restart_republish_retained_state() {
    let mut broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(dir.path(), &broker, "box4");
    let obs = Observer::connect(broker.port, &["livepeer-edge/box4/#"]);
    obs.wait("livepeer-edge/box4/status", T, |m| m.text() == "online");

    // The broker loses everything; the node reconnects and says it all again.
    broker.restart();
    let late = Observer::connect(broker.port, &["livepeer-edge/box4/#"]);
    let status = late.wait("livepeer-edge/box4/status", Duration::from_secs(40), |m| {
        m.text() == "online"
    });
    assert_eq!(status.text(), "online");
    late.wait("livepeer-edge/box4/state", T, |m| {
        m.retain || !m.json().is_null()
    });
    // Events sent while the broker was away were queued and delivered.
    // (`mqtt_disconnected` is emitted while there is no broker, so it can only arrive queued.)
    late.wait("livepeer-edge/box4/events", T, |m| {
        m.json()["kind"] == "mqtt_disconnected"
    });

    // The node restarts itself on command and comes back.
    let pid = node.pid();
    late.clear();
    late.publish(
        "livepeer-edge/box4/cmd/restart",
        r#"{"request_id":"boot-1"}"#,
        false,
    );
    let done = final_result(&late, "livepeer-edge/box4/cmd/restart/result", "boot-1");
    assert_eq!(done["state"], "succeeded");
    late.wait("livepeer-edge/box4/status", T, |m| m.text() == "offline");
    late.wait("livepeer-edge/box4/status", T, |m| m.text() == "online");
    assert_eq!(node.pid(), pid, "the process re-executed itself");
    let deadline = std::time::Instant::now() + T;
    while !node.healthy() {
        assert!(
            std::time::Instant::now() < deadline,
            "node did not come back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn mqtt_3_1_1_carries_the_same_control() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let obs = Observer::connect(broker.port, &["livepeer-edge/old/#"]);
    let url = broker.url();
    let mut node = NodeProc::start_with(
        dir.path(),
        &[
            ("LPE_MQTT_URL", url.as_str()),
            ("LPE_MQTT_DEVICE_ID", "old"),
            ("LPE_MQTT_PROTOCOL", "3.1.1"),
            ("LPE_MQTT_HOMEASSISTANT", "true"),
        ],
    );
    obs.wait("livepeer-edge/old/status", T, |m| m.text() == "online");
    assert!(node.log().contains("MQTT connected (3.1.1)"));
    obs.publish(
        "livepeer-edge/old/config/desired",
        r#"{"version": 9, "streams": [{"id": "s1", "name": "S1", "source": {"kind": "test"}, "enabled": false}]}"#,
        true,
    );
    obs.wait("livepeer-edge/old/state", T, |m| {
        m.json()["desired"]["applied_version"] == 9
    });
    obs.publish(
        "livepeer-edge/old/cmd/stream_start",
        r#"{"request_id": "go", "stream_id": "s1"}"#,
        false,
    );
    let r = final_result(&obs, "livepeer-edge/old/cmd/stream_start/result", "go");
    assert_eq!(r["state"], "succeeded", "{r}");
    // Home Assistant discovery for venue integrators.
    let ha = Observer::connect(broker.port, &["homeassistant/#"]);
    let online = ha.wait("homeassistant/binary_sensor/old/online/config", T, |m| {
        m.retain
    });
    assert_eq!(online.json()["state_topic"], "livepeer-edge/old/status");
    ha.wait("homeassistant/sensor/old/cpu/config", T, |m| m.retain);
    node.kill();
    obs.wait("livepeer-edge/old/status", T, |m| m.text() == "offline");
}

#[test]
fn tls_with_a_client_certificate_and_a_password() {
    let broker = Broker::start_tls();
    let tls = broker.tls.as_ref().expect("tls listener");
    let dir = tempfile::tempdir().expect("tempdir");
    let obs = Observer::connect(broker.port, &["livepeer-edge/secure/#"]);
    let url = format!("mqtts://127.0.0.1:{}", tls.port);
    let path = |p: &std::path::Path| p.to_str().expect("utf-8").to_string();
    let (ca, cert, key, pw) = (
        path(&tls.ca),
        path(&tls.client_cert),
        path(&tls.client_key),
        path(&tls.password_file),
    );
    let mut node = NodeProc::start_with(
        dir.path(),
        &[
            ("LPE_MQTT_URL", url.as_str()),
            ("LPE_MQTT_DEVICE_ID", "secure"),
            ("LPE_MQTT_CA_FILE", ca.as_str()),
            ("LPE_MQTT_CLIENT_CERT", cert.as_str()),
            ("LPE_MQTT_CLIENT_KEY", key.as_str()),
            ("LPE_MQTT_USERNAME", "edge"),
            ("LPE_MQTT_PASSWORD_FILE", pw.as_str()),
        ],
    );
    obs.wait("livepeer-edge/secure/status", T, |m| m.text() == "online");
    obs.publish(
        "livepeer-edge/secure/cmd/log_level",
        r#"{"request_id":"tls-1","level":"info"}"#,
        false,
    );
    let r = final_result(&obs, "livepeer-edge/secure/cmd/log_level/result", "tls-1");
    assert_eq!(r["state"], "succeeded");
    // The password never leaves the process in clear: not in the log, not in any message.
    assert!(!node.log().contains("fleet-secret"));
    assert!(obs.all().iter().all(|m| !m.text().contains("fleet-secret")));
    node.terminate();

    // A wrong password is refused by the broker; the node keeps running and retrying.
    let bad = dir.path().join("wrong-password");
    std::fs::write(&bad, "nope").expect("write");
    let dir2 = tempfile::tempdir().expect("tempdir");
    let bad = path(&bad);
    let node = NodeProc::start_with(
        dir2.path(),
        &[
            ("LPE_MQTT_URL", url.as_str()),
            ("LPE_MQTT_DEVICE_ID", "secure2"),
            ("LPE_MQTT_CA_FILE", ca.as_str()),
            ("LPE_MQTT_CLIENT_CERT", cert.as_str()),
            ("LPE_MQTT_CLIENT_KEY", key.as_str()),
            ("LPE_MQTT_USERNAME", "edge"),
            ("LPE_MQTT_PASSWORD_FILE", bad.as_str()),
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(node.healthy());
    let (_, mqtt) = node.get("/api/mqtt");
    assert_eq!(mqtt["connected"], false, "{mqtt}");
}

/// A stream's key as stored: the only place a test can read it after creation.
fn stored_stream_key(dir: &std::path::Path, id: &str) -> String {
    let db = rusqlite::Connection::open(dir.join("node.db")).expect("database");
    let spec: String = db
        .query_row("SELECT spec FROM streams WHERE id = ?1", [id], |r| r.get(0))
        .expect("stream row");
    let spec: Value = serde_json::from_str(&spec).expect("spec");
    spec["source"]["stream_key"]
        .as_str()
        .expect("key")
        .to_string()
}
