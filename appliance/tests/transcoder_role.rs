//! A node as the remote transcoder of another node's orchestrator, as go-livepeer's remote
//! transcoders attach (`livepeer-wire-workers.md` W1): a gateway's segment is transcoded on
//! the transcoder and billed by the pixels it reported; without it (gone, or gone mid-task)
//! the orchestrator transcodes itself; a wrong secret is refused; the orchestrator's
//! certificate is pinned on first use. A gateway node's offloaded stream goes the same way:
//! gateway → orchestrator → transcoder.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::NodeProc;
use common::evm::GATEWAY;
use common::wire::{
    WireGateway, decoded, gateway_key, orchestrator, payment_node, pushed_stream, ts_segment,
};
use lpe_net::client::{self, SegmentInfo};
use lpe_net::proto::{TranscodeOutcome, TranscodeResult, VideoProfile};
use prost::Message;

const SECRET: &str = "a-long-transcoder-secret";

fn wait_for(what: &str, node: &NodeProc, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: {}", node.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One segment through the orchestrator: the result's renditions and their pixels, checked
/// by decoding.
async fn one_segment(
    g: &mut WireGateway,
    http: &client::HttpClient,
    seq: i64,
    data: &[u8],
    dir: &std::path::Path,
) -> Vec<i64> {
    let profiles = vec![VideoProfile {
        name: "P240p30fps16x9".into(),
        width: 426,
        height: 240,
        bitrate: 600_000,
        fps: 30,
        ..Default::default()
    }];
    let batch = g.batch(1);
    let seg = client::segment_header(
        &g.key,
        SegmentInfo {
            manifest_id: "m".into(),
            seq,
            duration_ms: 2000,
            profiles,
            auth_token: g.token.clone(),
            capabilities: common::wire::transcoding_caps(),
        },
        data,
    );
    let (st, body) = client::post_segment(http, &g.uri, &seg, &g.header(&batch), data.to_vec())
        .await
        .expect("segment");
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let r = TranscodeResult::decode(body.as_ref()).expect("result");
    let Some(TranscodeOutcome::Data(d)) = r.result else {
        panic!("no data: {:?}", r.result);
    };
    let mut pixels = Vec::new();
    for s in &d.segments {
        let bytes = http
            .get(&s.url)
            .send()
            .await
            .expect("rendition")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(s.pixels as u64, decoded(&bytes, dir).0 * 426 * 240);
        pixels.push(s.pixels);
    }
    pixels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_transcodes_for_another_nodes_orchestrator() {
    // TLS (an empty service URI): go-livepeer's transcoders speak only TLS.
    let (w, _odir, orch) = orchestrator(&[
        ("LPE_NET_SERVICE_URI", ""),
        ("LPE_NET_TRANSCODER_SECRET", SECRET),
    ])
    .await;
    let addr = format!("127.0.0.1:{}", orch.net);
    let uri = format!("https://{addr}");

    // A wrong secret is refused (and said so in the transcoder's health).
    let bad = tempfile::tempdir().expect("tempdir");
    let intruder = NodeProc::start_with(
        bad.path(),
        &[
            ("LPE_NET_ORCHESTRATOR_ADDR", &addr),
            ("LPE_NET_ORCHESTRATOR_SECRET", "guess"),
        ],
    );
    wait_for("the wrong secret was not refused", &intruder, || {
        intruder.log().contains("invalid secret")
    });
    drop(intruder);

    let tdir = tempfile::tempdir().expect("tempdir");
    let transcoder = NodeProc::start_with(
        tdir.path(),
        &[
            ("LPE_NET_ORCHESTRATOR_ADDR", &addr),
            ("LPE_NET_ORCHESTRATOR_SECRET", SECRET),
        ],
    );
    wait_for("the transcoder never attached", &orch, || {
        orch.log().contains("remote transcoder attached")
    });
    let pin = std::fs::read_to_string(tdir.path().join("net/orchestrator.pin")).expect("pinned");
    assert_eq!(pin.trim().len(), 64);

    let data = ts_segment(tdir.path(), "640x360", "ultrafast", 30);
    let http = client::http().expect("client");
    let mut g = WireGateway::open(&uri, gateway_key())
        .await
        .expect("session");
    let pixels = one_segment(&mut g, &http, 0, &data, tdir.path()).await;
    assert_eq!(pixels, vec![60 * 426 * 240]);
    // A transcoder was attached and did not fail: the work was its.
    assert!(
        !orch.log().contains("transcoding here"),
        "{}",
        transcoder.log()
    );
    assert!(!transcoder.log().contains("transcoding task failed"));
    let (_, health) = transcoder.get("/api/health");
    assert!(health.to_string().contains("transcoder"), "{health}");
    // What it did, as its API (and the dashboard) shows it.
    let (st, t) = transcoder.get("/api/network/transcoder");
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["orchestrator"], addr.as_str(), "{t}");
    assert_eq!(t["attached"], true, "{t}");
    assert_eq!(t["segments"], 1, "{t}");
    assert_eq!(t["pixels"], 60 * 426 * 240, "{t}");
    assert_eq!(
        (t["errors"].clone(), t["in_flight"].clone()),
        (0.into(), 0.into()),
        "{t}"
    );
    assert_eq!(orch.get("/api/network/transcoder").0, 404);

    // A gateway node's offloaded stream: its segments reach the transcoder through the
    // orchestrator, and come back verified (pixels by decoding, the orchestrator's signature).
    let (_gdir, gateway) = payment_node(&w, GATEWAY, "gateway", &[("LPE_NET_ORCHESTRATORS", &uri)]);
    let ladder = serde_json::json!([
        {"name": "source", "bitrate_kbps": 1000},
        {"name": "240p", "height": 240, "bitrate_kbps": 400}
    ]);
    let (id, push) = pushed_stream(&gateway, "via a transcoder", true, ladder, "640x360", 60);
    gateway.wait_stream(&id, "offloaded", Duration::from_secs(60), |v| {
        v["status"]["offload"]["segments_network"]
            .as_u64()
            .unwrap_or(0)
            >= 2
    });
    drop(push);
    drop(gateway);
    assert!(
        !orch.log().contains("transcoding here"),
        "{}",
        transcoder.log()
    );

    // Killed in the middle of a task (seen in flight in its own API): the segment is still
    // answered, by the orchestrator itself.
    let before = orch.log().matches("transcoding here").count();
    let pid = transcoder.pid();
    let (api, auth) = (
        transcoder.url("/api/network/transcoder"),
        transcoder.authorization(),
    );
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let busy = in_flight(&api, &auth);
            if busy > 0 {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    });
    let pixels = one_segment(&mut g, &http, 1, &data, tdir.path()).await;
    assert_eq!(pixels, vec![60 * 426 * 240]);
    assert!(
        killer.join().expect("killer"),
        "the task was never seen in flight"
    );
    assert!(
        orch.log().matches("transcoding here").count() > before,
        "the orchestrator did not take the task over: {}",
        orch.log()
    );
    drop(transcoder);
    let pixels = one_segment(&mut g, &http, 2, &data, tdir.path()).await;
    assert_eq!(pixels, vec![60 * 426 * 240]);
    assert!(
        orch.log().contains("remote transcoder detached"),
        "{}",
        orch.log()
    );
}

/// Tasks in flight on a transcoder node (0 when it does not answer).
fn in_flight(url: &str, auth: &str) -> u64 {
    ureq::get(url)
        .header("authorization", auth)
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_json::<serde_json::Value>().ok())
        .and_then(|v| v["in_flight"].as_u64())
        .unwrap_or(0)
}
