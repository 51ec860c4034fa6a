//! The node as a go-livepeer orchestrator on a real EVM, driven as a go-livepeer gateway
//! drives one (`livepeer-wire.md` §2.11): GetOrchestrator over gRPC, a real H.264 segment with
//! a ticket to `/segment`, the renditions downloaded, their pixels counted by decoding and
//! their signature checked; then the negative cases with go-livepeer's status codes and texts.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::evm::{ORCHESTRATOR, import_key, start_payment_node_with, world};
use common::wire::{WireGateway, decoded, funded_gateway, gateway_key, orchestrator, ts_segment};
use lpe_net::client;
use lpe_net::proto::{Capabilities, TranscodeOutcome, TranscodeResult, VideoProfile, capability};
use lpe_pm::recipient::price_from_info;
use lpe_pm::sender::Sender;
use lpe_pm::wire::{encode_payment_header, params_from_wire, payment_for_batch};
use prost::Message;

const PASSWORD: &str = "pw-for-tests";

fn profiles() -> Vec<VideoProfile> {
    vec![
        VideoProfile {
            name: "P240p30fps16x9".into(),
            width: 426,
            height: 240,
            bitrate: 600_000,
            fps: 30,
            ..Default::default()
        },
        VideoProfile {
            name: "P360p30fps16x9".into(),
            width: 640,
            height: 360,
            bitrate: 1_200_000,
            fps: 30,
            ..Default::default()
        },
    ]
}

fn caps() -> Capabilities {
    Capabilities {
        constraints: Some(Default::default()),
        ..Capabilities::from_ids(&[capability::H264, capability::MPEGTS, capability::AUTH_TOKEN])
    }
}

fn post(url: &str, seg: &str, pay: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let res = agent
        .post(url)
        .header("Livepeer-Segment", seg)
        .header("Livepeer-Payment", pay)
        .header("Content-Type", "video/MP2T")
        .send(body);
    match res {
        Ok(mut res) => {
            let st = res.status().as_u16();
            (st, res.body_mut().read_to_vec().unwrap_or_default())
        }
        // The node closed the connection before the upload ended (status 0).
        Err(e) => (0, e.to_string().into_bytes()),
    }
}

/// Credentials for a 2 s segment with the two test profiles.
fn seg_header(
    key: &k256::ecdsa::SigningKey,
    manifest: &str,
    seq: i64,
    data: &[u8],
    token: lpe_net::proto::AuthToken,
) -> String {
    let info = client::SegmentInfo {
        manifest_id: manifest.into(),
        seq,
        duration_ms: 2000,
        profiles: profiles(),
        auth_token: token,
        capabilities: caps(),
    };
    client::segment_header(key, info, data)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_pays_for_a_transcoded_segment() {
    // The test nodes' service URI is plain http (h2c): gRPC and HTTP/1.1 on one port.
    let (_w, dir, node) = orchestrator(&[]).await;
    let uri = node.net_url();
    let gk = gateway_key();

    // GetOrchestrator, with and without capabilities.
    let ch = client::connect(&uri).await.expect("channel");
    let info =
        client::get_orchestrator(ch.clone(), client::orchestrator_request(&gk, Some(caps())))
            .await
            .expect("info");
    assert_eq!(info.transcoder, uri);
    let token = info.auth_token.clone().expect("auth token");
    assert_eq!(token.session_id.len(), 8);
    let price = info.price_info.clone().expect("price");
    assert_ne!(price.pixels_per_unit, 0);
    assert_eq!(info.address.len(), 20);
    assert!(caps().subset_of(info.capabilities.as_ref().expect("caps")));
    let tp = info.ticket_params.clone().expect("ticket params");
    client::get_orchestrator(ch.clone(), client::orchestrator_request(&gk, None))
        .await
        .expect("info without capabilities");
    let mut bad = client::orchestrator_request(&gk, Some(caps()));
    bad.sig[5] ^= 1;
    let err = client::get_orchestrator(ch.clone(), bad)
        .await
        .expect_err("bad signature");
    assert!(
        err.message().contains("orchestrator req sig check failed"),
        "{err}"
    );

    // Discovery as a gateway does it: a dead candidate is skipped, a price ceiling below the
    // node's filters it out, a blocked orchestrator is not chosen.
    use lpe_net::discovery::Discovery;
    let candidates = [uri.clone(), "http://127.0.0.1:1".to_string()];
    let d = Discovery::new(gk.clone(), caps(), None);
    let found = d.query(&candidates, 2).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        Discovery::select(&found).map(|c| c.uri.clone()),
        Some(uri.clone())
    );
    d.block(&found[0].info, std::time::Duration::from_secs(60));
    assert!(
        d.query(&candidates, 2).await.is_empty(),
        "a blocked orchestrator"
    );
    let zero = lpe_pm::BigRational::from_integer(0.into());
    let cheap = Discovery::new(gk.clone(), caps(), Some(zero));
    assert!(
        cheap.query(&candidates, 2).await.is_empty(),
        "above the ceiling"
    );

    // One segment with one ticket (a ticket's EV covers far more than its pixels here).
    let data = ts_segment(dir.path(), "640x360", "ultrafast", 30);
    let mut sender = Sender::new(gk.clone());
    let params = params_from_wire(&tp).expect("params");
    let session = sender.start_session(
        params,
        price_from_info(price.price_per_unit, price.pixels_per_unit).expect("price"),
    );
    let batch = sender.create_batch(&session, 1).expect("batch");
    let payment = encode_payment_header(&payment_for_batch(&batch, &price));
    let seg = seg_header(&gk, "manifest1", 0, &data, token.clone());
    let started = std::time::Instant::now();
    let (st, body) = post(&format!("{uri}/segment"), &seg, &payment, &data);
    assert_eq!(st, 200, "{}", text(&body));
    let took = started.elapsed();
    let result = TranscodeResult::decode(body.as_slice()).expect("TranscodeResult");
    assert_eq!(result.seq, 0);
    assert_eq!(
        result.info.as_ref().and_then(|i| i.auth_token.clone()),
        Some(token.clone()),
        "the refreshed info keeps the token"
    );
    let Some(TranscodeOutcome::Data(td)) = result.result else {
        panic!("no data: {:?}", result.result);
    };
    assert_eq!(td.segments.len(), 2);
    let mut renditions = Vec::new();
    for (s, p) in td.segments.iter().zip(profiles()) {
        let got = ureq::get(&s.url)
            .call()
            .expect("rendition")
            .body_mut()
            .read_to_vec()
            .expect("bytes");
        let (frames, w, h) = decoded(&got, dir.path());
        assert_eq!((w, h), (p.width as u64, p.height as u64));
        assert_eq!(s.pixels as u64, frames * w * h, "{}", s.url);
        assert_eq!(frames, 60);
        renditions.push(got);
    }
    let digest = lpe_net::creds::transcoded_digest(renditions.iter().map(Vec::as_slice));
    let signer = lpe_pm::sig::recover(digest.as_slice(), &td.sig).expect("sig");
    assert_eq!(signer.to_vec(), info.address);
    println!("segment transcoded and answered in {} ms", took.as_millis());

    // The winning ticket is on record.
    let (_, tickets) = node.get("/api/pm/tickets");
    assert_eq!(tickets["counts"]["received"].as_u64(), Some(1), "{tickets}");

    // Negative cases, each on a fresh request. A payment without tickets still names its
    // sender, whose key the segment's signature is checked against.
    let ticketless = encode_payment_header(&lpe_pm::wire::Payment {
        sender: lpe_pm::sig::address_of(gk.verifying_key()).to_vec(),
        expected_price: Some(price.clone()),
        ..Default::default()
    });
    let url = format!("{uri}/segment");
    let (st, b) = post(&url, &seg, "%%%", &data);
    assert_eq!(st, 402, "{}", text(&b));
    assert!(text(&b).starts_with("base64 decode error"), "{}", text(&b));
    // The same payment again: its nonce was seen.
    let (st, b) = post(&url, &seg, &payment, &data);
    assert_eq!(
        (st, text(&b).contains("already seen")),
        (400, true),
        "{}",
        text(&b)
    );
    // A flipped signature byte.
    let mut raw = STANDARD.decode(&seg).expect("b64");
    let mut sd = lpe_net::proto::SegData::decode(raw.as_slice()).expect("segdata");
    sd.sig[3] ^= 1;
    raw = sd.encode_to_vec();
    let (st, b) = post(&url, &STANDARD.encode(&raw), "", &data);
    assert_eq!((st, text(&b)), (403, "ErrSegSig\n".to_string()));
    // A token byte flipped, an expiry moved.
    let mut t = token.clone();
    t.token[0] ^= 1;
    let s2 = seg_header(&gk, "manifest1", 1, &data, t);
    let (st, b) = post(
        &url,
        &s2,
        &encode_payment_header(&payment_for_batch(
            &sender.create_batch(&session, 1).expect("batch"),
            &price,
        )),
        &data,
    );
    assert_eq!((st, text(&b)), (403, "invalid auth token\n".to_string()));
    let mut t = token.clone();
    t.expiration += 1;
    let s2 = seg_header(&gk, "manifest1", 1, &data, t);
    let (st, b) = post(&url, &s2, &ticketless, &data);
    assert_eq!((st, text(&b)), (403, "invalid auth token\n".to_string()));
    // A body that is not what was signed.
    let s3 = seg_header(&gk, "manifest1", 2, &data, token.clone());
    // (Credit left from the first segment is below one ticket's worth: a gateway pays again.)
    let mut one_ticket = || {
        encode_payment_header(&payment_for_batch(
            &sender.create_batch(&session, 1).expect("batch"),
            &price,
        ))
    };
    let (st, b) = post(&url, &s3, &one_ticket(), &data[..data.len() - 188]);
    assert_eq!((st, text(&b)), (403, "Forbidden\n".to_string()));
    // A new session with no tickets: no credit, no work.
    let fresh =
        client::get_orchestrator(ch.clone(), client::orchestrator_request(&gk, Some(caps())))
            .await
            .expect("info");
    let s4 = seg_header(
        &gk,
        "manifest2",
        0,
        &data,
        fresh.auth_token.clone().expect("token"),
    );
    let (st, b) = post(&url, &s4, &ticketless, &data);
    assert_eq!((st, text(&b)), (400, "Insufficient balance\n".to_string()));
    // Seed altered: the recipientRand no longer matches.
    let mut p = lpe_pm::wire::decode_payment_header(&one_ticket()).expect("payment");
    if let Some(tp) = p.ticket_params.as_mut() {
        tp.seed = vec![1, 2, 3];
    }
    let s5 = seg_header(&gk, "manifest1", 3, &data, token.clone());
    let (st, b) = post(&url, &s5, &encode_payment_header(&p), &data);
    assert_eq!(st, 400, "{}", text(&b));
    assert!(text(&b).contains("invalid recipientRand"), "{}", text(&b));
    // Corrupt MPEG-TS: a 200 whose result is an error, and the node goes on.
    let garbage = vec![0x47u8; 188 * 50];
    let s6 = seg_header(&gk, "manifest1", 4, &garbage, token.clone());
    let (st, b) = post(&url, &s6, &one_ticket(), &garbage);
    assert_eq!(st, 200, "{}", text(&b));
    let r = TranscodeResult::decode(b.as_slice()).expect("result");
    assert!(
        matches!(r.result, Some(TranscodeOutcome::Error(_))),
        "{r:?}"
    );

    // Ending the session: the renditions go with it.
    client::end_transcoding_session(ch.clone(), Some(token.clone()))
        .await
        .expect("end");
    let gone = ureq::get(&td.segments[0].url).call();
    assert!(gone.is_err(), "a rendition outlived its session");
    let err = client::end_transcoding_session(ch, None)
        .await
        .expect_err("no token");
    assert!(err.message().contains("Invalid auth token"), "{err}");
    let (st, _) = node.get("/api/health");
    assert_eq!(st, 200);
}

/// A segment from `g`, paid with one ticket of its session.
fn send_segment(g: &mut WireGateway, seq: i64, data: &[u8]) -> (u16, Vec<u8>) {
    let batch = g.batch(1);
    let seg = seg_header(
        &g.key,
        &g.token.session_id.clone(),
        seq,
        data,
        g.token.clone(),
    );
    post(&format!("{}/segment", g.uri), &seg, &g.header(&batch), data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_segment_sizes_and_slow_uploads_are_bounded() {
    let (_w, dir, node) = orchestrator(&[
        ("LPE_NET_MAX_SESSIONS", "2"),
        ("LPE_NET_MAX_SEGMENT_MEGABYTES", "1"),
    ])
    .await;
    let uri = node.net_url();
    let data = ts_segment(dir.path(), "640x360", "ultrafast", 30);

    // Two sessions run; a third is capped, at the segment and at discovery.
    let mut one = WireGateway::open(&uri, gateway_key()).await.expect("one");
    let mut two = WireGateway::open(&uri, gateway_key()).await.expect("two");
    let mut three = WireGateway::open(&uri, gateway_key()).await.expect("three");
    assert_eq!(send_segment(&mut one, 0, &data).0, 200);
    assert_eq!(send_segment(&mut two, 0, &data).0, 200);
    let (st, b) = send_segment(&mut three, 0, &data);
    assert_eq!((st, text(&b)), (403, "OrchestratorCapped\n".to_string()));
    let err = WireGateway::open(&uri, gateway_key())
        .await
        .err()
        .expect("capped");
    assert!(err.contains("OrchestratorCapped"), "{err}");
    let ch = client::connect(&uri).await.expect("channel");
    client::end_transcoding_session(ch.clone(), Some(one.token.clone()))
        .await
        .expect("end");
    assert_eq!(send_segment(&mut three, 0, &data).0, 200, "room again");

    // Oversized segments are refused without holding them: memory stays flat.
    let pid = node.pid();
    let before = common::proc_status_kb(pid, "VmRSS");
    let big = vec![0x47u8; 8 << 20];
    for seq in 1..6 {
        // Refused at the size limit: 500, or the connection closed under the upload.
        let (st, b) = send_segment(&mut two, seq, &big);
        assert!(st == 500 || st == 0, "{st} {}", text(&b));
    }
    let after = common::proc_status_kb(pid, "VmRSS");
    assert!(
        after < before + 30_000,
        "RSS grew from {before} kB to {after} kB on refused segments"
    );

    // A slow upload is cut off after its deadline (8 s for a 2 s segment) and disturbs
    // no one meanwhile.
    use std::io::{Read, Write};
    let batch = two.batch(1);
    let seg = seg_header(&two.key, "slow", 9, &data, two.token.clone());
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", node.net)).expect("connect");
    write!(
        slow,
        "POST /segment HTTP/1.1\r\nHost: x\r\nLivepeer-Segment: {seg}\r\nLivepeer-Payment: {}\r\n\
         Content-Type: video/MP2T\r\nContent-Length: {}\r\n\r\n",
        two.header(&batch),
        data.len()
    )
    .expect("headers");
    slow.write_all(&data[..100]).expect("a little");
    let started = std::time::Instant::now();
    let quick = client::get_orchestrator(
        ch.clone(),
        client::orchestrator_request(&gateway_key(), None),
    );
    let quick = tokio::time::timeout(std::time::Duration::from_secs(3), quick).await;
    assert!(
        matches!(quick, Ok(Err(_)) | Ok(Ok(_))),
        "discovery stalled behind a slow upload"
    );
    let mut answer = String::new();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    let mut buf = [0u8; 512];
    while let Ok(n) = slow.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.push_str(&String::from_utf8_lossy(&buf[..n]));
        if answer.contains("\r\n\r\n") {
            break;
        }
    }
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer:?}");
    assert!(
        waited >= std::time::Duration::from_secs(7) && waited < std::time::Duration::from_secs(15),
        "cut off after {waited:?}"
    );
    let (st, _) = node.get("/api/health");
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_h2_and_a_certificate_kept_across_restarts() {
    let w = world(10_000).await;
    funded_gateway(&w).await;
    let dir = tempfile::tempdir().expect("tempdir");
    import_key(dir.path(), ORCHESTRATOR, PASSWORD);
    let start = |extra: &'static [(&'static str, &'static str)]| {
        let mut env = vec![("LPE_NET_SERVICE_URI", "")];
        env.extend_from_slice(extra);
        let node = start_payment_node_with(
            dir.path(),
            &w.node.url,
            &w.controller.to_string(),
            "orchestrator",
            PASSWORD,
            &[],
            &env,
        );
        (
            node,
            std::fs::read(dir.path().join("net/cert.pem")).expect("certificate"),
        )
    };
    let (node, first) = start(&[]);
    let uri = format!("https://127.0.0.1:{}", node.net);
    let ch = client::connect(&uri).await.expect("TLS channel (ALPN h2)");
    let info = client::get_orchestrator(ch, client::orchestrator_request(&gateway_key(), None))
        .await
        .expect("info over TLS");
    assert_eq!(info.transcoder, uri);
    let mode = std::fs::metadata(dir.path().join("net/key.pem"))
        .expect("key")
        .permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.mode() & 0o777, 0o600);
    drop(node);
    let (node, again) = start(&[]);
    assert_eq!(first, again, "the certificate changed on restart");
    drop(node);
    let (_node, renewed) = start(&[("LPE_NET_NEW_CERTIFICATE", "true")]);
    assert_ne!(first, renewed, "a new certificate was asked for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_can_have_a_price_of_its_own() {
    let config = tempfile::tempdir().expect("tempdir");
    let file = config.path().join("node.toml");
    let gateway = lpe_pm::sig::address_of(gateway_key().verifying_key());
    std::fs::write(
        &file,
        format!("[pm.price_per_gateway]\n\"{gateway}\" = [3, 2]\n"),
    )
    .expect("config");
    let path = file.display().to_string();
    let (_w, _dir, node) = orchestrator(&[("LPE_CONFIG", &path)]).await;
    let g = WireGateway::open(&node.net_url(), gateway_key())
        .await
        .expect("session");
    assert_eq!((g.price.price_per_unit, g.price.pixels_per_unit), (3, 2));
}
