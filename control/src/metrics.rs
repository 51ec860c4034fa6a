//! Prometheus metrics: counters the transports bump, and the text exposition rendered from
//! them plus the node's live state (streams, tickets, device) at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use lpe_node::Node;

/// Counters kept by the transports. Everything else is read when scraped.
#[derive(Default)]
pub struct Counters {
    /// (method, route template, status) → requests.
    http: Mutex<BTreeMap<(String, String, u16), u64>>,
    pub mqtt_connected: AtomicU64,
    pub mqtt_connects: AtomicU64,
    pub mqtt_published: AtomicU64,
    pub mqtt_received: AtomicU64,
    pub mqtt_dropped: AtomicU64,
    /// (command, final state) → count.
    mqtt_commands: Mutex<BTreeMap<(String, String), u64>>,
}

/// HTTP methods counted by name; any other method string a client invents is `other`.
const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// `value` when it is one of `known`, else `other`: every label set stays as small as the
/// lists the node itself defines, whatever clients send.
fn bounded<'a>(value: &'a str, known: &[&'a str]) -> &'a str {
    known
        .iter()
        .copied()
        .find(|k| *k == value)
        .unwrap_or("other")
}

impl Counters {
    /// `route` must be a route template (or another label from a fixed set), never a path.
    pub fn http_request(&self, method: &str, route: &str, status: u16) {
        let method = bounded(method, HTTP_METHODS);
        // Statuses outside 100..=599 are not HTTP; fold them into one label.
        let status = if (100..=599).contains(&status) {
            status
        } else {
            0
        };
        if let Ok(mut m) = self.http.lock() {
            *m.entry((method.to_string(), route.to_string(), status))
                .or_default() += 1;
        }
    }

    /// `known` lists the command names the node defines.
    pub fn mqtt_command(&self, name: &str, known: &[&str], outcome: &str) {
        let name = bounded(name, known);
        if let Ok(mut m) = self.mqtt_commands.lock() {
            *m.entry((name.to_string(), outcome.to_string()))
                .or_default() += 1;
        }
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A label value escaped as the exposition format wants.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
            return;
        }
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
            .collect();
        let _ = writeln!(self.0, "{name}{{{}}} {value}", l.join(","));
    }
}

/// Labels of objects exported per stream, at most (a model may know thousands).
const MAX_OBJECT_LABELS: usize = 100;

/// Per stream and detector (`faces`, `objects`): rate, drops, inference time, end-to-end
/// latency; objects seen now by label; privacy mode's gate.
fn ai_metrics(o: &mut Out, streams: &[lpe_node::StreamView]) {
    let detectors = || {
        streams
            .iter()
            .filter_map(|s| s.analysis.as_ref().map(|a| (s, a)))
            .flat_map(|(s, a)| {
                [("faces", &a.faces), ("objects", &a.objects)]
                    .into_iter()
                    .filter_map(move |(k, d)| d.as_ref().map(|d| (s.id.as_str(), k, d)))
            })
    };
    type Field = fn(&lpe_node::analysis::DetectorView) -> f64;
    let families: [(&str, &str, &str, Field); 6] = [
        (
            "lpe_ai_up",
            "gauge",
            "1 while the detector process runs.",
            |d| f64::from(u8::from(d.state == "running")),
        ),
        (
            "lpe_ai_frames_total",
            "counter",
            "Frames the detector looked at in this run.",
            |d| d.frames as f64,
        ),
        (
            "lpe_ai_dropped_frames_total",
            "counter",
            "Frames dropped because the detector was busy, in this run.",
            |d| d.dropped as f64,
        ),
        ("lpe_ai_fps", "gauge", "Frames looked at per second.", |d| {
            d.fps
        }),
        (
            "lpe_ai_inference_ms",
            "gauge",
            "Mean time of the model's run.",
            |d| d.inference_ms,
        ),
        (
            "lpe_ai_latency_p50_ms",
            "gauge",
            "Median time from a picture reaching the tee to its answer handled (events published).",
            |d| d.latency_ms_p50,
        ),
    ];
    for (name, kind, help, field) in families {
        o.family(name, kind, help);
        for (stream, detector, d) in detectors() {
            o.sample(
                name,
                &[("stream", stream), ("detector", detector)],
                field(d),
            );
        }
    }
    o.family(
        "lpe_ai_latency_p99_ms",
        "gauge",
        "99th percentile of the same.",
    );
    for (stream, detector, d) in detectors() {
        o.sample(
            "lpe_ai_latency_p99_ms",
            &[("stream", stream), ("detector", detector)],
            d.latency_ms_p99,
        );
    }
    o.family(
        "lpe_ai_objects",
        "gauge",
        "Objects a stream's detector sees now, by label.",
    );
    for s in streams {
        for (label, n) in s
            .analysis
            .iter()
            .flat_map(|a| &a.objects_now)
            .take(MAX_OBJECT_LABELS)
        {
            o.sample("lpe_ai_objects", &[("stream", &s.id), ("label", label)], n);
        }
    }
    let privacy = || {
        streams.iter().filter_map(|s| {
            s.analysis
                .as_ref()
                .and_then(|a| a.privacy.as_ref())
                .map(|p| (s, p))
        })
    };
    o.family(
        "lpe_privacy_covered_total",
        "counter",
        "Pictures let out by privacy mode's gate with their faces covered, in this run.",
    );
    for (s, p) in privacy() {
        o.sample("lpe_privacy_covered_total", &[("stream", &s.id)], p.covered);
    }
    o.family(
        "lpe_privacy_blanked_total",
        "counter",
        "Pictures privacy mode blanked because faces could not be looked for, in this run.",
    );
    for (s, p) in privacy() {
        o.sample("lpe_privacy_blanked_total", &[("stream", &s.id)], p.blanked);
    }
    o.family(
        "lpe_privacy_delay_ms",
        "gauge",
        "Mean time a picture waited at the gate for the face detector.",
    );
    for (s, p) in privacy() {
        o.sample("lpe_privacy_delay_ms", &[("stream", &s.id)], p.delay_ms);
    }
}

/// The whole exposition.
pub fn render(node: &Node, c: &Counters) -> String {
    let mut o = Out(String::with_capacity(8192));
    o.family("lpe_build_info", "gauge", "The node's version.");
    o.sample(
        "lpe_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    o.family(
        "lpe_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
    );
    o.sample("lpe_uptime_seconds", &[], node.uptime().as_secs());

    let streams = node.list().unwrap_or_default();
    o.family("lpe_stream_up", "gauge", "1 when the stream is running.");
    for s in &streams {
        let up = u8::from(s.status.state == lpe_node::views::StreamState::Running);
        o.sample("lpe_stream_up", &[("stream", &s.id), ("name", &s.name)], up);
    }
    o.family(
        "lpe_stream_input_fps",
        "gauge",
        "Frames per second read from the source.",
    );
    for s in &streams {
        o.sample(
            "lpe_stream_input_fps",
            &[("stream", &s.id)],
            s.status.input_fps,
        );
    }
    o.family(
        "lpe_stream_input_kbps",
        "gauge",
        "Source bitrate in kbit/s.",
    );
    for s in &streams {
        o.sample(
            "lpe_stream_input_kbps",
            &[("stream", &s.id)],
            s.status.input_kbps,
        );
    }
    o.family(
        "lpe_stream_dropped_frames_total",
        "counter",
        "Frames dropped by the pipeline in this run.",
    );
    for s in &streams {
        o.sample(
            "lpe_stream_dropped_frames_total",
            &[("stream", &s.id)],
            s.status.dropped_frames,
        );
    }
    o.family(
        "lpe_stream_reconnects_total",
        "counter",
        "Source reconnections.",
    );
    for s in &streams {
        o.sample(
            "lpe_stream_reconnects_total",
            &[("stream", &s.id)],
            s.status.reconnects,
        );
    }
    o.family(
        "lpe_stream_encoder_info",
        "gauge",
        "The encoder each stream uses (1).",
    );
    for s in &streams {
        if let Some(enc) = &s.status.encoder {
            let fallback = if s.status.encoder_fallback {
                "true"
            } else {
                "false"
            };
            o.sample(
                "lpe_stream_encoder_info",
                &[("stream", &s.id), ("encoder", enc), ("fallback", fallback)],
                1,
            );
        }
    }
    ai_metrics(&mut o, &streams);
    o.family(
        "lpe_rendition_fps",
        "gauge",
        "Frames per second out of each rendition.",
    );
    for s in &streams {
        for r in &s.status.renditions {
            o.sample(
                "lpe_rendition_fps",
                &[("stream", &s.id), ("rendition", &r.name)],
                r.fps,
            );
        }
    }
    o.family(
        "lpe_rendition_kbps",
        "gauge",
        "Bitrate out of each rendition in kbit/s.",
    );
    for s in &streams {
        for r in &s.status.renditions {
            o.sample(
                "lpe_rendition_kbps",
                &[("stream", &s.id), ("rendition", &r.name)],
                r.kbps,
            );
        }
    }

    if let Ok(t) = node.ticket_counts() {
        for (name, v, help) in [
            (
                "lpe_tickets_received_total",
                t.received,
                "Tickets received.",
            ),
            ("lpe_tickets_won_total", t.won, "Winning tickets received."),
            (
                "lpe_tickets_redeemed_total",
                t.redeemed,
                "Winning tickets redeemed on chain.",
            ),
            (
                "lpe_tickets_failed_total",
                t.failed,
                "Winning tickets that could not be redeemed.",
            ),
        ] {
            o.family(name, "counter", help);
            o.sample(name, &[], v);
        }
        o.family(
            "lpe_tickets_pending",
            "gauge",
            "Winning tickets waiting for redemption.",
        );
        o.sample("lpe_tickets_pending", &[], t.pending);
    }

    if let Some(d) = node.device.latest() {
        o.family("lpe_device_cpu_percent", "gauge", "CPU busy share, 0-100.");
        o.sample("lpe_device_cpu_percent", &[], d.cpu_percent);
        o.family("lpe_device_memory_used_bytes", "gauge", "Memory in use.");
        o.sample("lpe_device_memory_used_bytes", &[], d.memory_used_bytes);
        o.family(
            "lpe_device_memory_total_bytes",
            "gauge",
            "Memory installed.",
        );
        o.sample("lpe_device_memory_total_bytes", &[], d.memory_total_bytes);
        if let Some(disk) = &d.disk {
            o.family(
                "lpe_device_disk_available_bytes",
                "gauge",
                "Free space for the data directory.",
            );
            o.sample("lpe_device_disk_available_bytes", &[], disk.available_bytes);
        }
        o.family(
            "lpe_device_temperature_celsius",
            "gauge",
            "Temperature sensors.",
        );
        for t in &d.temperatures {
            o.sample(
                "lpe_device_temperature_celsius",
                &[("sensor", &t.label)],
                t.celsius,
            );
        }
        if let Some(u) = d.gpu.utilization_percent {
            o.family("lpe_device_gpu_percent", "gauge", "GPU busy share, 0-100.");
            o.sample("lpe_device_gpu_percent", &[], u);
        }
    }

    o.family(
        "lpe_http_requests_total",
        "counter",
        "HTTP requests by route and status.",
    );
    if let Ok(m) = c.http.lock() {
        for ((method, route, status), n) in m.iter() {
            o.sample(
                "lpe_http_requests_total",
                &[
                    ("method", method),
                    ("route", route),
                    ("status", &status.to_string()),
                ],
                n,
            );
        }
    }
    for (name, v, kind, help) in [
        (
            "lpe_mqtt_connected",
            &c.mqtt_connected,
            "gauge",
            "1 while connected to the broker.",
        ),
        (
            "lpe_mqtt_connects_total",
            &c.mqtt_connects,
            "counter",
            "Connections made to the broker.",
        ),
        (
            "lpe_mqtt_published_total",
            &c.mqtt_published,
            "counter",
            "Messages published.",
        ),
        (
            "lpe_mqtt_received_total",
            &c.mqtt_received,
            "counter",
            "Messages received.",
        ),
        (
            "lpe_mqtt_dropped_total",
            &c.mqtt_dropped,
            "counter",
            "Events dropped from a full offline queue.",
        ),
    ] {
        o.family(name, kind, help);
        o.sample(name, &[], v.load(Ordering::Relaxed));
    }
    o.family(
        "lpe_mqtt_commands_total",
        "counter",
        "Fleet commands by final state.",
    );
    if let Ok(m) = c.mqtt_commands.lock() {
        for ((name, state), n) in m.iter() {
            o.sample(
                "lpe_mqtt_commands_total",
                &[("command", name), ("state", state)],
                n,
            );
        }
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        let mut o = Out(String::new());
        o.sample("m", &[("name", "a \"quoted\"\\ name\n")], 1);
        assert_eq!(o.0, "m{name=\"a \\\"quoted\\\"\\\\ name\\n\"} 1\n");
    }

    #[test]
    fn invented_methods_and_commands_share_one_label() {
        let c = Counters::default();
        for i in 0..1000 {
            c.http_request(&format!("M{i}"), "unmatched", 405);
            c.http_request("GET", "unmatched", 1000 + i);
            c.mqtt_command(&format!("cmd{i}"), &["snapshot"], "failed");
        }
        c.http_request("GET", "/api/health", 200);
        let http = c.http.lock().expect("lock");
        assert_eq!(http.len(), 3, "{http:?}");
        assert!(http.contains_key(&("other".to_string(), "unmatched".to_string(), 405)));
        assert_eq!(c.mqtt_commands.lock().expect("lock").len(), 1);
    }
}
