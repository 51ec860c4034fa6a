//! Two nodes on loopback and a local EVM: a gateway whose RTMP stream is offloaded, and an
//! orchestrator that transcodes it for tickets, found by the gateway in the pool on chain
//! where the orchestrator published its service URI. The gateway's HLS ladder is made of the
//! orchestrator's renditions; the ticket wins are redeemed and the gateway's deposit falls by
//! exactly what the orchestrator earned; when the orchestrator dies the stream goes on from
//! local encoding, and it returns to the network when the orchestrator is back.

mod common;

use std::time::{Duration, Instant};

use common::evm::{GATEWAY, ORCHESTRATOR, import_key, start_payment_node_with, world};
use common::wire::{PASSWORD, funded_gateway, payment_node, pushed_stream};
use common::{NodeProc, free_port, probe_audio, probe_video, segments};
use lpe_pm::U256;
use serde_json::{Value, json};

fn wait(
    node: &NodeProc,
    path: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, v) = node.get(path);
        if ok(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}; last: {v}\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `ffprobe`'s start time and duration of a segment, seconds.
fn start_and_duration(path: &std::path::Path) -> (f64, f64) {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=start_time,duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .trim()
        .split(',')
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(v.len(), 2, "ffprobe {}: {text}", path.display());
    (v[0], v[1])
}

/// The segments of a rendition's playlist, each starting where the one before ended (within
/// 0.1 s): their start times and durations.
fn contiguous_segments(dir: &std::path::Path) -> Vec<(f64, f64)> {
    let times: Vec<(f64, f64)> = segments(&dir.join("index.m3u8"))
        .iter()
        .map(|s| start_and_duration(&dir.join(s)))
        .collect();
    assert!(times.len() >= 2, "{}: {times:?}", dir.display());
    for pair in times.windows(2) {
        let gap = pair[1].0 - (pair[0].0 + pair[0].1);
        assert!(
            gap.abs() < 0.1,
            "{}: {times:?}: a gap of {gap} s",
            dir.display()
        );
    }
    times
}

fn offload(v: &Value) -> &Value {
    &v["status"]["offload"]
}

fn count(v: &Value, field: &str) -> u64 {
    offload(v)[field].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offloaded_stream_is_transcoded_and_paid_for_and_survives_its_orchestrator() {
    let w = world(10_000).await;
    let gateway_chain = funded_gateway(&w).await;
    let gateway_address = common::evm::key(GATEWAY).address();
    let deposit_before = gateway_chain
        .sender_info(gateway_address)
        .await
        .expect("sender info")
        .deposit;
    let (url, controller) = (w.node.url.clone(), w.controller.to_string());

    // The orchestrator on a port of its own, so that it can come back at the same address.
    let odir = tempfile::tempdir().expect("tempdir");
    import_key(odir.path(), ORCHESTRATOR, PASSWORD);
    let oport = free_port();
    let ouri = format!("http://127.0.0.1:{oport}");
    let oenv = [
        ("LPE_NET_LISTEN", format!("127.0.0.1:{oport}")),
        ("LPE_NET_SERVICE_URI", ouri.clone()),
    ];
    let oenv: Vec<(&str, &str)> = oenv.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let start_orchestrator = || {
        start_payment_node_with(
            odir.path(),
            &url,
            &controller,
            "orchestrator",
            PASSWORD,
            &[],
            &oenv,
        )
    };
    let mut orch = start_orchestrator();
    // It publishes its service URI on chain, where the gateway finds it.
    let cli = |command: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_livepeer-edge"))
            .args(["orchestrator", command, "--data-dir"])
            .arg(odir.path())
            .envs(common::evm::pm_env(
                &url,
                &controller,
                "orchestrator",
                PASSWORD,
            ))
            .env("LPE_NET_SERVICE_URI", &ouri)
            .output()
            .expect("livepeer-edge orchestrator");
        let out = common::succeeded(out, command);
        serde_json::from_slice::<Value>(&out.stdout).expect("json")
    };
    let status = cli("status");
    assert_eq!(status["published_service_uri"], "", "{status}");
    assert_eq!(status["in_pool"], true, "{status}");
    assert_eq!(status["price_per_unit"], 1, "{status}");
    assert!(cli("register")["tx_hash"].is_string());
    let status = cli("status");
    assert_eq!(status["published_service_uri"], ouri.as_str(), "{status}");
    assert_eq!(status["published_matches"], true, "{status}");
    // The same from the API the UI shows.
    let (st, mut api) = orch.get("/api/network/orchestrator");
    assert_eq!(st, 200, "{api}");
    // With no stake bonded on this chain there is nothing to mint: the reward call is not
    // sent (the command line does not run it, so it has no reward state).
    assert!(
        ["starting", "skipped"].contains(&api["reward"]["state"].as_str().unwrap_or_default()),
        "{api}"
    );
    if let Some(o) = api.as_object_mut() {
        o.remove("reward");
    }
    assert_eq!(api, status);

    // The gateway lists no orchestrator: it discovers on chain.
    let (gdir, gateway) = payment_node(&w, GATEWAY, "gateway", &[]);
    let ladder = json!([
        {"name": "source", "bitrate_kbps": 1000},
        {"name": "240p", "height": 240, "bitrate_kbps": 400},
        {"name": "144p", "height": 144, "bitrate_kbps": 200}
    ]);
    // Its passthrough is sent on to a second stream of the gateway's own, recorded and
    // packaged as LL-HLS; a destination asking for a rendition the network makes is told it
    // gets none.
    let relay = gateway.create(json!({"name": "relay", "source": {"kind": "rtmp"},
        "ladder": [{"name": "source", "bitrate_kbps": 1000}]}));
    let relay_id = relay["id"].as_str().expect("id").to_string();
    let server = format!("rtmp://127.0.0.1:{}/live", gateway.rtmp);
    let s = gateway.create(json!({
        "name": "offloaded", "source": {"kind": "rtmp"}, "offload": true, "ladder": ladder,
        "restream": [{"name": "relay", "server": server, "key": relay["stream_key"]},
                     {"name": "small", "server": server, "key": "k-none", "rendition": "240p"}],
        "recording": {"mode": "continuous"},
    }));
    let id = s["id"].as_str().expect("id").to_string();
    let key = s["stream_key"].as_str().expect("key");
    let _push = common::FfmpegPush::start(&gateway.rtmp_url(key), "640x360", 300);
    let path = format!("/api/streams/{id}");

    // The ladder comes from the orchestrator.
    let v = wait(
        &gateway,
        &path,
        "no segment came from the orchestrator",
        Duration::from_secs(60),
        |v| count(v, "segments_network") >= 3,
    );
    assert_eq!(offload(&v)["mode"], "network", "{v}");
    assert_eq!(offload(&v)["orchestrator"], ouri.as_str(), "{v}");
    // The publisher's audio is carried: in the segments sent, and so in every rendition.
    assert_eq!(v["status"]["audio"]["codec"], "aac", "{v}");
    assert!(v["status"]["audio"]["ignored"].is_null(), "{v}");
    let hls = gdir.path().join("hls").join(&id);
    let master = std::fs::read_to_string(hls.join("index.m3u8")).expect("master");
    assert!(master.contains("mp4a.40.2"), "{master}");
    for (name, w, h) in [("source", 640, 360), ("240p", 426, 240), ("144p", 256, 144)] {
        assert!(master.contains(&format!("{name}/index.m3u8")), "{master}");
        let playlist = hls.join(name).join("index.m3u8");
        let segs = segments(&playlist);
        assert!(segs.len() >= 2, "{name}: {segs:?}");
        let newest = hls.join(name).join(&segs[segs.len() - 1]);
        let a = probe_audio(&newest);
        assert_eq!(a["streams"][0]["codec_name"], "aac", "{name}: {a}");
        let p = probe_video(&newest);
        let st = &p["streams"][0];
        assert_eq!(
            (
                st["codec_name"].as_str(),
                st["width"].as_u64(),
                st["height"].as_u64()
            ),
            (Some("h264"), Some(w), Some(h)),
            "{name}: {p}"
        );
        let secs: f64 = p["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0);
        assert!((1.5..=2.6).contains(&secs), "{name}: a segment of {secs} s");
    }
    // The orchestrator's renditions follow each other on the source's timeline.
    let dir = hls.join("240p");
    let times = contiguous_segments(&dir);
    // (Any source segment: the newest one's rendition may still be on its way back.)
    let source_starts: Vec<f64> = segments(&hls.join("source").join("index.m3u8"))
        .iter()
        .map(|seg| start_and_duration(&hls.join("source").join(seg)).0)
        .collect();
    assert!(
        times
            .iter()
            .any(|(t, _)| source_starts.iter().any(|s| (t - s).abs() < 0.1)),
        "240p {times:?} vs source {source_starts:?}"
    );

    // The passthrough reached the relay stream, with its sound, and is being recorded.
    gateway.wait_state(&relay_id, "running", Duration::from_secs(30));
    let v = wait(
        &gateway,
        &path,
        "the passthrough was neither sent on nor recorded",
        Duration::from_secs(30),
        |v| {
            v["status"]["restream"][0]["state"] == "live"
                && v["status"]["recording"]["state"] == "recording"
        },
    );
    assert_eq!(v["status"]["restream"][0]["rendition"], "source", "{v}");
    assert!(
        v["status"]["restream"][1]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("made by the network")),
        "{v}"
    );
    let relayed = gdir.path().join("hls").join(&relay_id).join("source");
    let deadline = Instant::now() + Duration::from_secs(30);
    while segments(&relayed.join("index.m3u8")).len() < 2 {
        assert!(Instant::now() < deadline, "no relayed segments");
        std::thread::sleep(Duration::from_millis(200));
    }
    let a = probe_audio(&relayed.join("index.m3u8"));
    assert_eq!(a["streams"][0]["codec_name"], "aac", "{a}");
    assert_eq!(
        probe_video(&relayed.join("index.m3u8"))["streams"][0]["height"],
        360
    );

    // Its low-latency preview is the passthrough, packaged here.
    let llhls = v["llhls_url"].as_str().expect("llhls_url").to_string();
    let (st, _, master) = gateway.get_bytes(&llhls);
    let master = String::from_utf8(master).expect("utf-8");
    assert_eq!(st, 200, "{master}");
    assert!(master.contains("source/index.m3u8"), "{master}");
    assert!(!master.contains("240p/"), "{master}");
    let media = llhls.replace("index.m3u8", "source/index.m3u8");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, _, text) = gateway.get_bytes(&media);
        let text = String::from_utf8_lossy(&text).to_string();
        if st == 200 && text.contains("#EXT-X-PART:") {
            assert!(text.contains("#EXT-X-PRELOAD-HINT"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no parts: {st} {text}");
        std::thread::sleep(Duration::from_millis(300));
    }

    // A WebRTC viewer cannot be given a rendition the network makes (it exists only as
    // files); the passthrough it can.
    let r = gateway.call(
        "POST",
        &format!("/api/streams/{id}/whep?rendition=240p"),
        Some("v=0\r\n"),
        &[("authorization", &gateway.authorization())],
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.to_string().contains("240p"), "{}", r.body);

    // The orchestrator did the work: its sessions served these renditions.
    let (_, spend) = gateway.get("/api/network/spend");
    let row = &spend["orchestrators"][0];
    assert_eq!(row["orchestrator"], ouri.as_str(), "{spend}");
    assert!(row["segments"].as_u64().unwrap_or(0) >= 3, "{spend}");
    assert!(row["tickets"].as_u64().unwrap_or(0) >= 1, "{spend}");
    assert!(row["pixels"].as_u64().unwrap_or(0) > 0, "{spend}");

    // The orchestrator dies: local encoding takes over, no segment lost.
    let before = gateway.get(&path).1;
    orch.kill();
    let v = wait(
        &gateway,
        &path,
        "never fell back to local encoding",
        Duration::from_secs(30),
        |v| offload(v)["mode"] == "local" && count(v, "segments_local") >= 2,
    );
    assert!(count(&v, "segments_dropped") <= 1, "{v}");
    let (_, events) = gateway.get(&format!("/api/events?stream_id={id}&limit=50"));
    assert!(events.to_string().contains("offload_fallback"), "{events}");
    // Every segment got its renditions, from the network or from here.
    assert!(
        !events.to_string().contains("could not be transcoded"),
        "{events}"
    );
    let p = probe_video(
        &hls.join("240p").join(
            segments(&hls.join("240p").join("index.m3u8"))
                .last()
                .expect("segment"),
        ),
    );
    assert_eq!(p["streams"][0]["height"], 240, "{p}");
    // No gap where the network's segments end and the local ones begin: the 240p playlist
    // now spans both, on one timeline.
    let network_seen = count(&before, "segments_network");
    assert!(network_seen >= 3, "{before}");
    contiguous_segments(&hls.join("240p"));

    // Back: offloaded again.
    orch = start_orchestrator();
    let network_before = count(&v, "segments_network");
    let v = wait(
        &gateway,
        &path,
        "never returned to the network",
        Duration::from_secs(90),
        |v| offload(v)["mode"] == "network" && count(v, "segments_network") > network_before,
    );
    let (_, events) = gateway.get(&format!("/api/events?stream_id={id}&limit=50"));
    assert!(
        events.to_string().contains("offload_resumed"),
        "{v}\n{events}"
    );
    assert_eq!(gateway.get("/api/health").0, 200);
    // The passthrough was recorded through the fallback and back: its files are listed.
    let now = lpe_core::events::now_ms();
    let (st, t) = gateway.get(&format!(
        "/api/recordings?stream_id={id}&from={}&to={}",
        now - 3_600_000,
        now + 60_000
    ));
    assert_eq!(st, 200, "{t}");
    assert!(
        t["segments"].as_array().is_some_and(|s| !s.is_empty()),
        "{t}"
    );

    // Every ticket wins here: once the stream stops they are all redeemed, and the gateway's
    // deposit has fallen by exactly what the orchestrator earned.
    settle(&w, &gateway, &id, &orch, &gateway_chain, deposit_before).await;
    let (_, spend) = gateway.get("/api/network/spend");
    println!("gateway spend: {spend}");
    drop(orch);
}

/// The gateway holds no key: a node in the signer role signs its requests, segments and
/// tickets, and the signer's deposit pays the orchestrator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_a_key_pays_through_a_signer() {
    let w = world(10_000).await;
    let signer_chain = funded_gateway(&w).await;
    let signer_address = common::evm::key(GATEWAY).address();
    let deposit_before = signer_chain
        .sender_info(signer_address)
        .await
        .expect("sender info")
        .deposit;
    const TOKEN: &str = "fleet-signer-token";

    let (_odir, orch) = payment_node(&w, ORCHESTRATOR, "orchestrator", &[]);
    // The signer holds the funded account.
    let (_sdir, signer) = payment_node(&w, GATEWAY, "signer", &[("LPE_NET_SIGNER_TOKEN", TOKEN)]);
    // Without the token it signs nothing.
    let (st, _) = http_post(
        &format!("{}/sign-orchestrator-info", signer.net_url()),
        None,
    );
    assert_eq!(st, 401);
    let (st, body) = http_post(
        &format!("{}/sign-orchestrator-info", signer.net_url()),
        Some(TOKEN),
    );
    assert_eq!(st, 200, "{body}");
    let address = signer_address.to_string();
    assert_eq!(body["address"], address.as_str(), "{body}");

    // The gateway: no keystore, no chain.
    let gdir = tempfile::tempdir().expect("tempdir");
    let signer_url = signer.net_url();
    let gateway = NodeProc::start_with(
        gdir.path(),
        &[
            ("LPE_PM_ROLE", "gateway"),
            ("LPE_NET_ORCHESTRATORS", &orch.net_url()),
            ("LPE_NET_REMOTE_SIGNER_URL", &signer_url),
            ("LPE_NET_SIGNER_TOKEN", TOKEN),
        ],
    );
    // No passthrough: every rendition comes from the network.
    let ladder = json!([{"name": "240p", "height": 240, "bitrate_kbps": 400}]);
    let (id, _push) = pushed_stream(&gateway, "signed elsewhere", true, ladder, "640x360", 300);
    let path = format!("/api/streams/{id}");
    let v = wait(
        &gateway,
        &path,
        "no segment came from the orchestrator",
        Duration::from_secs(60),
        |v| count(v, "segments_network") >= 2,
    );
    assert_eq!(offload(&v)["orchestrator"], orch.net_url().as_str(), "{v}");
    // Nothing is made here, so nothing is packaged for low latency, and none is offered.
    assert!(v["llhls_url"].is_null(), "{v}");
    let hls = gdir.path().join("hls").join(&id).join("240p");
    let segs = segments(&hls.join("index.m3u8"));
    let p = probe_video(&hls.join(segs.last().expect("a segment")));
    assert_eq!(p["streams"][0]["height"], 240, "{p}");
    assert!(
        !gdir.path().join("keystore").exists()
            || std::fs::read_dir(gdir.path().join("keystore"))
                .map(|mut d| d.next().is_none())
                .unwrap_or(true),
        "the gateway's data directory holds a key"
    );

    let (_, health) = gateway.get("/api/health");
    assert_eq!(health["checks"]["chain"]["status"], "ok", "{health}");

    // A go-livepeer gateway without a key paying for live work through the same signer:
    // GetOrchestrator signed by the signer, then /generate-live-payment, then the payment
    // and segment credentials it returns at the orchestrator's /payment — twice, the second
    // time from the signed state the first call returned.
    let info = live_info(&signer, TOKEN, &orch).await;
    let mut state = json!({"State": null, "Sig": null});
    for call in 0..2 {
        let (st, body) = live_payment(&signer, TOKEN, &info, &state);
        assert_eq!(st, 200, "call {call}: {body}");
        let (st, text) = orchestrator_payment(&orch, &body);
        assert_eq!(st, 200, "call {call}: {text}");
        state = body["state"].clone();
        std::thread::sleep(Duration::from_millis(1100));
    }
    // Without the token: refused.
    let (st, _) = http_post_json(
        &format!("{}/generate-live-payment", signer.net_url()),
        None,
        &json!({}),
    );
    assert_eq!(st, 401);

    // The tickets were the signer's: redeemed, they come out of its deposit.
    let t = settle(&w, &gateway, &id, &orch, &signer_chain, deposit_before).await;
    assert!(
        t["tickets"]
            .as_array()
            .is_some_and(|all| all.iter().all(|r| r["sender"] == address.as_str())),
        "{t}"
    );
}

/// Stops the stream, mines past the expiry of the params the tickets were made on, waits
/// until the orchestrator has redeemed every winner, and checks that the payer's deposit fell
/// by exactly what it earned. The orchestrator's ticket list.
async fn settle(
    w: &common::evm::World,
    gateway: &NodeProc,
    stream: &str,
    orch: &NodeProc,
    payer: &lpe_money::chain::ChainClient,
    deposit_before: U256,
) -> Value {
    let (st, _) = gateway.send("POST", &format!("/api/streams/{stream}/stop"), None);
    assert_eq!(st, 200);
    common::evm::mine(&w.admin, 50).await;
    let t = wait(
        orch,
        "/api/pm/tickets",
        "tickets not all redeemed",
        Duration::from_secs(60),
        |v| {
            let c = &v["counts"];
            c["pending"] == 0
                && c["redeemed"].as_u64().unwrap_or(0) >= 1
                && c["redeemed"] == c["won"]
        },
    );
    let earned: U256 = t["counts"]["earned"]
        .as_str()
        .expect("earned")
        .parse()
        .expect("wei");
    let payer_address = payer.account().expect("the payer's account");
    let deposit_after = payer
        .sender_info(payer_address)
        .await
        .expect("sender info")
        .deposit;
    assert_eq!(deposit_before - deposit_after, earned, "{t}");
    t
}

/// The orchestrator's info for a gateway whose GetOrchestrator request the signer signed.
async fn live_info(signer: &NodeProc, token: &str, orch: &NodeProc) -> Vec<u8> {
    let (st, body) = http_post(
        &format!("{}/sign-orchestrator-info", signer.net_url()),
        Some(token),
    );
    assert_eq!(st, 200, "{body}");
    let hex_field =
        |k: &str| hex::decode(body[k].as_str().expect(k).trim_start_matches("0x")).expect("hex");
    let req = lpe_net::proto::OrchestratorRequest {
        address: hex_field("address"),
        sig: hex_field("signature"),
        ..Default::default()
    };
    let ch = lpe_net::client::connect(&orch.net_url())
        .await
        .expect("connect");
    let info = lpe_net::client::get_orchestrator(ch, req)
        .await
        .expect("GetOrchestrator with the signer's signature");
    prost::Message::encode_to_vec(&info)
}

/// `POST /generate-live-payment` as a go-livepeer gateway sends it (lv2v).
fn live_payment(signer: &NodeProc, token: &str, info: &[u8], state: &Value) -> (u16, Value) {
    use base64::Engine;
    http_post_json(
        &format!("{}/generate-live-payment", signer.net_url()),
        Some(token),
        &json!({
            "state": state,
            "orchestrator": base64::engine::general_purpose::STANDARD.encode(info),
            "ManifestID": "live-stream-1",
            "type": "lv2v",
            "inPixels": 0,
            "capabilities": null,
        }),
    )
}

/// The signer's payment and credentials at the orchestrator's `/payment`.
fn orchestrator_payment(orch: &NodeProc, live: &Value) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    match agent
        .post(&format!("{}/payment", orch.net_url()))
        .header(
            "Livepeer-Payment",
            live["payment"].as_str().expect("payment"),
        )
        .header(
            "Livepeer-Segment",
            live["segCreds"].as_str().expect("segCreds"),
        )
        .send_empty()
    {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

fn http_post_json(url: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.post(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    match req.send_json(body) {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_json().unwrap_or(Value::Null),
        ),
        Err(e) => (0, Value::String(e.to_string())),
    }
}

/// A POST without a body (the signer's info route takes none; it reads `null` as none).
fn http_post(url: &str, token: Option<&str>) -> (u16, Value) {
    http_post_json(url, token, &Value::Null)
}
