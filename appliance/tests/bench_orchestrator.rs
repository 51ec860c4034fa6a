//! The orchestrator benchmark (`bench/orchestrator.sh` runs it; ignored by a plain `cargo
//! test`). On a local EVM with a funded gateway, in one run:
//! 1. latency of a 2 s 1080p30 segment to 720p/480p/360p through `POST /segment` (with a
//!    ticket each), p50/p99, beside one `ffmpeg` process doing the same work per segment;
//! 2. the same segments paid from credit (no tickets) — the cost of validating payments;
//! 3. concurrent gateway sessions, each sending a tiny 2 s segment every 2 s: errors, p99, the
//!    node's peak RSS.
//!
//! `BENCH_SEGMENTS` (default 100) and `BENCH_SESSIONS` (default 50) set the sizes;
//! `BENCH_SMOKE=1` runs a few of each to show the procedure works.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::wire::{WireGateway, gateway_key, orchestrator, ts_segment};
use lpe_net::client::{SegmentInfo, segment_header};
use lpe_net::proto::{TranscodeOutcome, TranscodeResult, VideoProfile};
use prost::Message;

const PRESET: &str = "veryfast";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn smoke() -> bool {
    std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1")
}

fn ladder() -> Vec<VideoProfile> {
    [
        ("P720p30fps16x9", 1280, 720, 3_000_000),
        ("P480p30fps16x9", 854, 480, 1_600_000),
        ("P360p30fps16x9", 640, 360, 800_000),
    ]
    .into_iter()
    .map(|(name, width, height, bitrate)| VideoProfile {
        name: name.into(),
        width,
        height,
        bitrate,
        fps: 30,
        ..Default::default()
    })
    .collect()
}

/// One `/segment` exchange: the time until the whole result is in, and whether it is data.
fn submit(
    g: &mut WireGateway,
    seq: i64,
    data: &[u8],
    profiles: &[VideoProfile],
    pay: bool,
) -> (Duration, bool) {
    let payment = if pay {
        let b = g.batch(1);
        g.header(&b)
    } else {
        lpe_pm::wire::encode_payment_header(&lpe_pm::wire::Payment {
            sender: lpe_pm::sig::address_of(g.key.verifying_key()).to_vec(),
            expected_price: Some(g.price.clone()),
            ..Default::default()
        })
    };
    let seg = segment_header(
        &g.key,
        SegmentInfo {
            manifest_id: "bench".into(),
            seq,
            duration_ms: 2000,
            profiles: profiles.to_vec(),
            auth_token: g.token.clone(),
            capabilities: common::wire::transcoding_caps(),
        },
        data,
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let started = Instant::now();
    let res = agent
        .post(&format!("{}/segment", g.uri))
        .header("Livepeer-Segment", &seg)
        .header("Livepeer-Payment", &payment)
        .header("Content-Type", "video/MP2T")
        .send(data);
    let ok = match res {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let body = r.body_mut().read_to_vec().unwrap_or_default();
            let result = TranscodeResult::decode(body.as_slice()).map(|t| t.result);
            let ok = status == 200 && matches!(result, Ok(Some(TranscodeOutcome::Data(_))));
            if !ok {
                eprintln!("segment {seq}: {status} {}", String::from_utf8_lossy(&body));
            }
            ok
        }
        Err(e) => {
            eprintln!("segment {seq}: {e}");
            false
        }
    };
    (started.elapsed(), ok)
}

/// The same work by one ffmpeg process: decode once, scale and encode each profile.
fn ffmpeg_once(input: &Path, out: &Path) -> Duration {
    let started = Instant::now();
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(input)
        .args([
            "-filter_complex",
            "[0:v]split=3[a][b][c];[a]scale=1280:720[o1];[b]scale=854:480[o2];[c]scale=640:360[o3]",
        ])
        .args([
            "-map", "[o1]", "-c:v", "libx264", "-preset", PRESET, "-b:v", "3000k", "-f", "mpegts",
        ])
        .arg(out.join("720.ts"))
        .args([
            "-map", "[o2]", "-c:v", "libx264", "-preset", PRESET, "-b:v", "1600k", "-f", "mpegts",
        ])
        .arg(out.join("480.ts"))
        .args([
            "-map", "[o3]", "-c:v", "libx264", "-preset", PRESET, "-b:v", "800k", "-f", "mpegts",
        ])
        .arg(out.join("360.ts"))
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    started.elapsed()
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/orchestrator.sh"]
async fn orchestrator_benchmark() {
    let segments = if smoke() {
        3
    } else {
        env_usize("BENCH_SEGMENTS", 100)
    };
    let sessions = if smoke() {
        4
    } else {
        env_usize("BENCH_SESSIONS", 50)
    };
    if smoke() {
        println!("smoke run: the procedure works; these figures mean nothing");
    }
    let max = (sessions + 8).to_string();
    let (_w, dir, node) = orchestrator(&[
        ("LPE_MEDIA_X264_PRESET", PRESET),
        ("LPE_NET_MAX_SESSIONS", &max),
        ("LPE_LOG_LEVEL", "warn"),
    ])
    .await;
    let uri = node.net_url();
    let segment = ts_segment(dir.path(), "1920x1080", "veryfast", 60);
    let input = dir.path().join("1920x1080.ts");
    let ladder = ladder();

    // 1 and 2: interleaved with ffmpeg, so all three see the same machine (BENCH_ONLY=sessions
    // skips them).
    let only_sessions = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "sessions");
    let segments = if only_sessions { 0 } else { segments };
    let mut g = WireGateway::open(&uri, gateway_key())
        .await
        .expect("session");
    // Credit for the segments sent without tickets: one ticket's worth must stay on account.
    let prepaid = g.batch(2);
    g.pay(&prepaid).expect("prepaid credit");
    let (mut paid, mut credit, mut ff) = (Vec::new(), Vec::new(), Vec::new());
    let mut failures = 0;
    // The order turns each round: whatever runs right after ffmpeg finds caches it evicted,
    // and a fixed order gave that cost to the paid segments alone.
    for seq in 0..segments as i64 {
        for turn in 0..3 {
            match (seq + turn) % 3 {
                0 => {
                    let (t, ok) = submit(&mut g, 2 * seq, &segment, &ladder, true);
                    failures += usize::from(!ok);
                    paid.push(t);
                }
                1 => {
                    let (t, ok) = submit(&mut g, 2 * seq + 1, &segment, &ladder, false);
                    failures += usize::from(!ok);
                    credit.push(t);
                }
                _ => ff.push(ffmpeg_once(&input, dir.path())),
            }
        }
    }
    if !only_sessions {
        let (p50, p99) = (percentile(&mut paid, 0.5), percentile(&mut paid, 0.99));
        let (c50, c99) = (percentile(&mut credit, 0.5), percentile(&mut credit, 0.99));
        let (f50, f99) = (percentile(&mut ff, 0.5), percentile(&mut ff, 0.99));
        println!("2 s 1080p30 segment -> 720p/480p/360p, x264 {PRESET}, {segments} segments");
        println!(
            "  node /segment with a ticket: p50 {:>7.0} ms  p99 {:>7.0} ms",
            ms(p50),
            ms(p99)
        );
        println!(
            "  node /segment from credit:   p50 {:>7.0} ms  p99 {:>7.0} ms",
            ms(c50),
            ms(c99)
        );
        println!(
            "  ffmpeg, one process each:    p50 {:>7.0} ms  p99 {:>7.0} ms",
            ms(f50),
            ms(f99)
        );
        println!(
            "  ratio node/ffmpeg (p50):     {:>7.2}  (goal <= 1.0; real time < 2000 ms)",
            ms(p50) / ms(f50)
        );
        println!(
            "  payment overhead (p50):      {:>+7.1} %  (goal <= 2 %)",
            (ms(p50) / ms(c50) - 1.0) * 100.0
        );
        println!("  failed segments:             {failures}");
    }

    // 3: concurrent sessions, tiny segments, one small rendition each.
    let tiny = ts_segment(dir.path(), "320x180", "veryfast", 60);
    let small = vec![VideoProfile {
        name: "P144p30fps16x9".into(),
        width: 256,
        height: 144,
        bitrate: 200_000,
        fps: 30,
        ..Default::default()
    }];
    let per_session = if smoke() { 2 } else { 10 };
    let mut gateways = Vec::new();
    // Discovery is rate limited per address (10/s): a gateway opening many sessions waits.
    while gateways.len() < sessions {
        match WireGateway::open(&uri, gateway_key()).await {
            Ok(g) => gateways.push(g),
            Err(e) if e.contains("too many requests") => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("session: {e}"),
        }
    }
    let started = Instant::now();
    let handles: Vec<_> = gateways
        .into_iter()
        .map(|mut g| {
            let (tiny, small) = (tiny.clone(), small.clone());
            std::thread::spawn(move || {
                // Live pacing: one 2 s segment every 2 s per session, as a gateway sends them.
                let start = Instant::now();
                (0..per_session as u32)
                    .map(|seq| {
                        let due = Duration::from_secs(2) * seq;
                        std::thread::sleep(due.saturating_sub(start.elapsed()));
                        submit(&mut g, i64::from(seq), &tiny, &small, true)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("session thread"));
    }
    let wall = started.elapsed();
    let errors = all.iter().filter(|(_, ok)| !ok).count();
    let mut times: Vec<Duration> = all.iter().map(|(t, _)| *t).collect();
    println!(
        "{sessions} concurrent sessions x {per_session} tiny segments: {} done in {:.1} s, {errors} errors, p50 {:.0} ms, p99 {:.0} ms, node peak RSS over the whole run {} MB",
        all.len(),
        wall.as_secs_f64(),
        ms(percentile(&mut times, 0.5)),
        ms(percentile(&mut times, 0.99)),
        common::proc_status_kb(node.pid(), "VmHWM") / 1024
    );
    assert_eq!(failures + errors, 0, "failed exchanges: {}", node.log());
}
