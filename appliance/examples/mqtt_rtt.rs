//! MQTT command round trip, node against an echo baseline, on one broker in one run.
//!
//! `mqtt_rtt <broker port> <device topic base> <n>` sends `n` `log_level` commands (alternating
//! `info` and `warn`, so each one changes the level) to the node
//! (publish → the final `succeeded` result received) and `n` messages through an echo made of
//! `mosquitto_sub | mosquitto_pub -l` (publish → the echo received), alternating, one at a
//! time, and prints p50/p99 of both and their ratio.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{Client, Event, MqttOptions};

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: mqtt_rtt <broker port> <topic base> <n>");
        std::process::exit(2);
    }
    let port: u16 = args[1].parse().expect("port");
    let base = args[2].clone();
    let n: usize = args[3].parse().expect("n");

    let mut opts = MqttOptions::new("mqtt-rtt-bench", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    opts.set_network_options(net);
    let (client, mut conn) = Client::new(opts, 64);
    let (tx, rx) = mpsc::channel::<(String, Vec<u8>)>();
    std::thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    if tx.send((topic, p.payload.to_vec())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("bench client: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    });
    let result_topic = format!("{base}/cmd/log_level/result");
    client
        .subscribe(&result_topic, QoS::AtLeastOnce)
        .expect("subscribe");
    client
        .subscribe("bench/echo/out", QoS::AtLeastOnce)
        .expect("subscribe");
    std::thread::sleep(Duration::from_millis(500));

    let wait_for = |pred: &dyn Fn(&str, &[u8]) -> bool| -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok((t, p)) if pred(&t, &p) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    };

    let mut node = Vec::with_capacity(n);
    let mut echo = Vec::with_capacity(n);
    for i in 0..n {
        // The node: a command, until its final result.
        let rid = format!("bench-{}-{i}", std::process::id());
        // Alternate, so that every command changes the level for real.
        let level = if i % 2 == 0 { "info" } else { "warn" };
        let body = format!(r#"{{"request_id":"{rid}","level":"{level}"}}"#);
        let t0 = Instant::now();
        client
            .publish(
                format!("{base}/cmd/log_level"),
                QoS::AtLeastOnce,
                false,
                body,
            )
            .expect("publish");
        let needle = format!(r#""request_id":"{rid}","command":"log_level","state":"succeeded""#);
        assert!(
            wait_for(&|t, p| t == result_topic && String::from_utf8_lossy(p).contains(&needle)),
            "no result for {rid}"
        );
        node.push(t0.elapsed().as_secs_f64() * 1000.0);

        // The baseline: a message through the echo.
        let msg = format!("echo-{i}");
        let t0 = Instant::now();
        client
            .publish("bench/echo/in", QoS::AtLeastOnce, false, msg.clone())
            .expect("publish");
        assert!(
            wait_for(&|t, p| t == "bench/echo/out" && p == msg.as_bytes()),
            "no echo for {msg}"
        );
        echo.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    node.sort_by(|a, b| a.total_cmp(b));
    echo.sort_by(|a, b| a.total_cmp(b));
    let (n50, n99) = (pct(&node, 0.50), pct(&node, 0.99));
    let (e50, e99) = (pct(&echo, 0.50), pct(&echo, 0.99));
    println!("commands: {n}");
    println!("node command round trip  p50 {n50:.2} ms  p99 {n99:.2} ms");
    println!("mosquitto echo baseline  p50 {e50:.2} ms  p99 {e99:.2} ms");
    println!(
        "ratio node/baseline      p50 {:.2}x  p99 {:.2}x  (goal: p99 <= 2x)",
        n50 / e50,
        n99 / e99
    );
}
