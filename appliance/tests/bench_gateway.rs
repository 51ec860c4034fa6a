//! The gateway benchmark (`bench/gateway.sh` runs it; ignored by a plain `cargo test`). Two
//! nodes on a local EVM: a gateway holding the funded account and an orchestrator. The same
//! RTMP stream (1080p30, x264 `veryfast` ladder 720p/480p/360p beside the passthrough) runs
//! twice on the gateway: offloaded, then encoded locally; each time the gateway process's CPU
//! seconds over the same span are measured (and the orchestrator's, for the offloaded run).
//!
//! `BENCH_SECONDS` (default 60) sets the span; `BENCH_SMOKE=1` runs a small stream briefly to
//! show the procedure works.

mod common;

use std::time::{Duration, Instant};

use common::NodeProc;
use common::evm::{GATEWAY, ORCHESTRATOR, world};
use common::wire::{funded_gateway, payment_node, pushed_stream};
use serde_json::json;

fn smoke() -> bool {
    std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1")
}

/// User + system CPU seconds a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    // SAFETY: sysconf only reads a constant of the running system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

struct Run {
    gateway_cpu: f64,
    orchestrator_cpu: f64,
    network: u64,
    local: u64,
    dropped_frames: u64,
}

/// One stream on `gateway` for `seconds` after a warm-up: the CPU both nodes used meanwhile.
fn measure(gateway: &NodeProc, orch: &NodeProc, offload: bool, size: &str, seconds: u64) -> Run {
    let ladder = json!([
        {"name": "source", "bitrate_kbps": 6000},
        {"name": "720p", "height": 720, "bitrate_kbps": 3000},
        {"name": "480p", "height": 480, "bitrate_kbps": 1600},
        {"name": "360p", "height": 360, "bitrate_kbps": 800}
    ]);
    let warm_up = 8;
    let name = if offload { "offloaded" } else { "local" };
    let (id, _push) = pushed_stream(
        gateway,
        name,
        offload,
        ladder,
        size,
        (warm_up + seconds + 10) as u32,
    );
    let path = format!("/api/streams/{id}");
    gateway.wait_state(&id, "running", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(warm_up));
    let before = gateway.get(&path).1;
    let (g0, o0) = (cpu_seconds(gateway.pid()), cpu_seconds(orch.pid()));
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let (g1, o1) = (cpu_seconds(gateway.pid()), cpu_seconds(orch.pid()));
    let took = started.elapsed().as_secs_f64();
    let after = gateway.get(&path).1;
    let count = |v: &serde_json::Value, f: &str| v["status"]["offload"][f].as_u64().unwrap_or(0);
    let run = Run {
        gateway_cpu: (g1 - g0) * seconds as f64 / took,
        orchestrator_cpu: (o1 - o0) * seconds as f64 / took,
        network: count(&after, "segments_network") - count(&before, "segments_network"),
        local: count(&after, "segments_local") - count(&before, "segments_local"),
        dropped_frames: after["status"]["dropped_frames"].as_u64().unwrap_or(0),
    };
    if let Some(why) = after["status"]["offload"]["last_fallback"].as_str() {
        println!(
            "  ({} stream: last local fallback: {why})",
            if offload { "offloaded" } else { "local" }
        );
    }
    let (st, _) = gateway.send("DELETE", &path, None);
    assert_eq!(st, 204);
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/gateway.sh"]
async fn gateway_benchmark() {
    let (size, seconds) = if smoke() {
        ("854x480", 6)
    } else {
        let s = std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60);
        ("1920x1080", s)
    };
    let w = world(100_000).await;
    funded_gateway(&w).await;
    let preset = ("LPE_MEDIA_X264_PRESET", "veryfast");
    let (_odir, orch) = payment_node(&w, ORCHESTRATOR, "orchestrator", &[preset]);
    let ouri = orch.net_url();
    let (_gdir, gateway) = payment_node(
        &w,
        GATEWAY,
        "gateway",
        &[preset, ("LPE_NET_ORCHESTRATORS", &ouri)],
    );

    let offloaded = measure(&gateway, &orch, true, size, seconds);
    let local = measure(&gateway, &orch, false, size, seconds);
    let ratio = offloaded.gateway_cpu / local.gateway_cpu.max(1e-9);
    println!(
        "gateway benchmark: {size} 30 fps RTMP, ladder 720p/480p/360p (x264 veryfast) + passthrough, {seconds} s measured per mode"
    );
    println!(
        "  offloaded: gateway {:.1} CPU-s ({:.0} % of a core), orchestrator {:.1} CPU-s; segments {} from the network, {} encoded locally",
        offloaded.gateway_cpu,
        offloaded.gateway_cpu / seconds as f64 * 100.0,
        offloaded.orchestrator_cpu,
        offloaded.network,
        offloaded.local
    );
    println!(
        "  local:     gateway {:.1} CPU-s ({:.0} % of a core), frames dropped {}",
        local.gateway_cpu,
        local.gateway_cpu / seconds as f64 * 100.0,
        local.dropped_frames
    );
    println!("  offloaded/local gateway CPU: {ratio:.3} (goal <= 0.25)");
    assert!(offloaded.network > 0, "no segment was offloaded");
    drop(gateway);
    drop(orch);
}
