//! Restreaming: a node sends its stream on to an RTMP destination — here another node's RTMP
//! ingest, as it would YouTube's — with the stream's audio; the destination's key never
//! shows; a destination that goes away is retried while the stream goes on, and gets the
//! stream again when it is back.

mod common;

use std::time::{Duration, Instant};

use common::{FfmpegPush, NodeProc, probe_audio, probe_video, segments};
use serde_json::{Value, json};

fn restream(v: &Value) -> &Value {
    &v["status"]["restream"][0]
}

#[test]
fn a_stream_is_sent_on_and_survives_its_destination() {
    // The destination: a node with an RTMP stream.
    let bdir = tempfile::tempdir().expect("tempdir");
    let b = NodeProc::start(bdir.path());
    let bs = b.create(json!({"name": "from the venue", "source": {"kind": "rtmp"},
        "ladder": [{"name": "source", "bitrate_kbps": 1500}]}));
    let bid = bs["id"].as_str().expect("id").to_string();
    let bkey = bs["stream_key"].as_str().expect("key").to_string();
    let server = format!("rtmp://127.0.0.1:{}/live", b.rtmp);

    // The venue's node: an OBS push, its 360p rendition sent on to the destination.
    let adir = tempfile::tempdir().expect("tempdir");
    let a = NodeProc::start(adir.path());
    let as_ = a.create(json!({
        "name": "service", "source": {"kind": "rtmp"},
        "ladder": [{"name": "source", "bitrate_kbps": 1500},
                   {"name": "360p", "height": 360, "bitrate_kbps": 600}],
        "restream": [{"name": "B", "server": server, "key": bkey, "rendition": "360p"},
                     {"name": "later", "server": "rtmp://127.0.0.1:9/live", "key": "k-later", "enabled": false}],
    }));
    let aid = as_["id"].as_str().expect("id").to_string();
    let akey = as_["stream_key"].as_str().expect("key").to_string();
    // The destination's key is never shown.
    assert_eq!(as_["restream"][0]["has_key"], true, "{as_}");
    assert!(!as_.to_string().contains(&bkey), "{as_}");
    let _push = FfmpegPush::start(&a.rtmp_url(&akey), "1280x720", 90);
    let path = format!("/api/streams/{aid}");
    let v = a.wait_stream(
        &aid,
        "the destination never went live",
        Duration::from_secs(40),
        |v| restream(v)["state"] == "live",
    );
    assert_eq!(restream(&v)["rendition"], "360p", "{v}");
    assert_eq!(v["status"]["restream"][1]["state"], "disabled", "{v}");

    // The destination gets the 360p rendition with the stream's audio.
    b.wait_state(&bid, "running", Duration::from_secs(30));
    let hls = bdir.path().join("hls").join(&bid).join("source");
    let deadline = Instant::now() + Duration::from_secs(30);
    while segments(&hls.join("index.m3u8")).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "no segments at the destination: {:?} {}",
            std::fs::read_dir(bdir.path().join("hls").join(&bid))
                .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>()),
            b.get(&format!("/api/streams/{bid}")).1
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let video = probe_video(&hls.join("index.m3u8"));
    assert_eq!(video["streams"][0]["height"], 360, "{video}");
    let audio = probe_audio(&hls.join("index.m3u8"));
    assert_eq!(audio["streams"][0]["codec_name"], "aac", "{audio}");
    let (_, v) = a.get(&path);
    assert!(restream(&v)["kbps"].as_f64().unwrap_or(0.0) > 100.0, "{v}");

    // The destination goes away (its stream stopped: the publish ends and is refused):
    // retried, while the stream itself goes on.
    let (st, _) = b.send("POST", &format!("/api/streams/{bid}/stop"), None);
    assert_eq!(st, 200);
    let v = a.wait_stream(
        &aid,
        "the loss was never noticed",
        Duration::from_secs(30),
        |v| restream(v)["state"] == "retrying",
    );
    assert!(restream(&v)["errors"].as_u64().unwrap_or(0) >= 1, "{v}");
    assert!(restream(&v)["last_error"].is_string(), "{v}");
    assert_eq!(v["status"]["state"], "running", "{v}");
    let frames_then = v["status"]["renditions"][1]["fps"].as_f64().unwrap_or(0.0);
    assert!(
        frames_then > 20.0,
        "the stream stalled with its destination: {v}"
    );

    // Back: it is live again, without the stream restarting.
    let (st, _) = b.send("POST", &format!("/api/streams/{bid}/start"), None);
    assert_eq!(st, 200);
    let v = a.wait_stream(&aid, "never live again", Duration::from_secs(60), |v| {
        restream(v)["state"] == "live"
    });
    assert_eq!(v["status"]["reconnects"], 0, "{v}");
    b.wait_state(&bid, "running", Duration::from_secs(30));

    // The key is in no log and no event.
    assert!(!a.log().contains(&bkey), "the key is in the log");
    let (_, events) = a.get("/api/events?limit=200");
    assert!(
        !events.to_string().contains(&bkey),
        "the key is in an event"
    );
    assert!(
        events
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "restream_failed")),
        "{events}"
    );

    // An edit that leaves the key out keeps it.
    let (st, v) = a.send(
        "PATCH",
        &path,
        Some(
            &json!({"restream": [{"name": "B", "server": server, "rendition": "360p"}]})
                .to_string(),
        ),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["restream"][0]["has_key"], true, "{v}");
}
