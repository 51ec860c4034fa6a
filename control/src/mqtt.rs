//! MQTT fleet control: a thin adapter between a broker and [`Node::submit`].
//!
//! Under `<prefix>/<device-id>/`: `status` (retained `online`/`offline`, the latter as Last
//! Will), `telemetry` (periodic), `state` (retained), `config/desired` (retained, from the
//! fleet), `cmd/<name>` → results, `events`. MQTT 5 first (correlation data and response
//! topics), 3.1.1 when the broker refuses 5. The bridge decodes `cmd/<name>` into a node
//! command under the request id; the node journals the id before "accepted" goes out, so a
//! repeated id gets the recorded result and the command never runs twice.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{LastWillProperties, Packet as Packet5, PublishProperties};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use crate::metrics::Counters;
use lpe_core::events::{EventKind, NodeEvent, now_ms};
use lpe_node::command::JournalState;
use lpe_node::config::BrokerAddress;
use lpe_node::{
    Actor, Command, CommandError, DesiredConfig, Envelope, JournalEntry, Node, Outcome, Reply,
};

/// Largest message either way (a snapshot result carries a JPEG).
const MAX_PACKET: usize = 4 << 20;

/// An incoming message, whichever protocol carried it.
struct Incoming {
    topic: String,
    payload: Bytes,
    response_topic: Option<String>,
    correlation: Option<Bytes>,
}

/// Where a command's results go.
#[derive(Clone)]
struct ReplyTo {
    topic: String,
    correlation: Option<Bytes>,
}

/// How hard a message is delivered: a command's progress (`accepted`, `in_progress`) is
/// best effort (QoS 0), everything else — its final result included — at least once (QoS 1).
#[derive(Clone, Copy)]
enum Delivery {
    BestEffort,
    AtLeastOnce,
}

/// The client half, MQTT 5 or 3.1.1.
#[derive(Clone)]
enum Link {
    V5(rumqttc::v5::AsyncClient),
    V4(rumqttc::AsyncClient),
}

impl Link {
    /// Queues a publish without waiting (the event loop sends it); `false` when the client's
    /// queue is full.
    fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
        reply: Option<&ReplyTo>,
        delivery: Delivery,
    ) -> bool {
        match self {
            Self::V5(c) => {
                let qos = match delivery {
                    Delivery::BestEffort => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
                    Delivery::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                };
                let props = PublishProperties {
                    correlation_data: reply.and_then(|r| r.correlation.clone()),
                    content_type: Some("application/json".into()),
                    ..Default::default()
                };
                c.try_publish_with_properties(topic, qos, retain, payload, props)
                    .is_ok()
            }
            Self::V4(c) => {
                let qos = match delivery {
                    Delivery::BestEffort => rumqttc::QoS::AtMostOnce,
                    Delivery::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
                };
                c.try_publish(topic, qos, retain, payload).is_ok()
            }
        }
    }

    fn subscribe(&self, filter: &str) -> bool {
        match self {
            Self::V5(c) => c
                .try_subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .is_ok(),
            Self::V4(c) => c.try_subscribe(filter, rumqttc::QoS::AtLeastOnce).is_ok(),
        }
    }

    /// Acknowledges an incoming message (QoS 1 and 2); `false` when the client's queue is
    /// full. A message from an earlier connection needs no ack: that session is gone.
    fn ack(&self, ack: &Ack) -> bool {
        match (self, ack) {
            (Self::V5(c), &Ack::V5(qos, pkid)) => {
                let mut p = rumqttc::v5::mqttbytes::v5::Publish::new("", qos, "", None);
                p.pkid = pkid;
                c.try_ack(&p).is_ok()
            }
            (Self::V4(c), &Ack::V4(qos, pkid)) => {
                let mut p = rumqttc::Publish::new("", qos, Vec::new());
                p.pkid = pkid;
                c.try_ack(&p).is_ok()
            }
            _ => true,
        }
    }

    fn disconnect(&self) {
        match self {
            Self::V5(c) => {
                let _ = c.try_disconnect();
            }
            Self::V4(c) => {
                let _ = c.try_disconnect();
            }
        }
    }
}

enum Loop {
    V5(Box<rumqttc::v5::EventLoop>),
    V4(Box<rumqttc::EventLoop>),
}

/// What acknowledges an incoming message: its QoS and packet id. The node acknowledges a
/// message once it has acted on it: a command after it is recorded and what it has to say so
/// far is queued, so the ack never delays a result.
enum Ack {
    V5(rumqttc::v5::mqttbytes::QoS, u16),
    V4(rumqttc::QoS, u16),
}

/// What the event loop reports.
enum Net {
    Connected,
    Message(Incoming, Ack),
    Other,
    /// The broker does not speak MQTT 5.
    WantsV4,
    Down(String),
}

impl Loop {
    async fn next(&mut self) -> Net {
        match self {
            Self::V5(l) => match l.poll().await {
                Ok(rumqttc::v5::Event::Incoming(Packet5::ConnAck(_))) => Net::Connected,
                Ok(rumqttc::v5::Event::Incoming(Packet5::Publish(p))) => {
                    let ack = Ack::V5(p.qos, p.pkid);
                    let props = p.properties.unwrap_or_default();
                    let msg = Incoming {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload,
                        response_topic: props.response_topic,
                        correlation: props.correlation_data,
                    };
                    Net::Message(msg, ack)
                }
                Ok(_) => Net::Other,
                Err(rumqttc::v5::ConnectionError::ConnectionRefused(
                    rumqttc::v5::mqttbytes::v5::ConnectReturnCode::UnsupportedProtocolVersion
                    | rumqttc::v5::mqttbytes::v5::ConnectReturnCode::RefusedProtocolVersion,
                )) => Net::WantsV4,
                Err(e) => Net::Down(e.to_string()),
            },
            Self::V4(l) => match l.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => Net::Connected,
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let ack = Ack::V4(p.qos, p.pkid);
                    Net::Message(
                        Incoming {
                            topic: p.topic,
                            payload: p.payload,
                            response_topic: None,
                            correlation: None,
                        },
                        ack,
                    )
                }
                Ok(_) => Net::Other,
                Err(e) => Net::Down(e.to_string()),
            },
        }
    }
}

/// Everything needed to (re)build a connection.
struct Settings {
    addr: BrokerAddress,
    client_id: String,
    base: String,
    credentials: Option<(String, String)>,
    tls: Option<rumqttc::TlsConfiguration>,
}

fn read_file(path: &str, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {path}: {e}"))
}

impl Settings {
    fn from(node: &Node, device_id: &str) -> Result<Self, String> {
        let m = &node.cfg.mqtt;
        let addr = BrokerAddress::parse(&m.url)?;
        let credentials = if m.username.is_empty() {
            None
        } else {
            let password = if m.password_file.is_empty() {
                std::env::var(PASSWORD_ENV).unwrap_or_default()
            } else {
                String::from_utf8(read_file(&m.password_file, "MQTT password file")?)
                    .map_err(|_| "the MQTT password file is not UTF-8".to_string())?
                    .trim_end_matches(['\r', '\n'])
                    .to_string()
            };
            Some((m.username.clone(), password))
        };
        let tls = if addr.tls {
            let client_auth = if m.client_cert.is_empty() {
                None
            } else {
                Some((
                    read_file(&m.client_cert, "client certificate")?,
                    read_file(&m.client_key, "client key")?,
                ))
            };
            let ca = if m.ca_file.is_empty() {
                // The system's trust store, as one PEM bundle.
                read_file("/etc/ssl/certs/ca-certificates.crt", "system CA bundle")?
            } else {
                read_file(&m.ca_file, "CA file")?
            };
            Some(rumqttc::TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth,
            })
        } else {
            None
        };
        Ok(Self {
            addr,
            client_id: format!("livepeer-edge-{device_id}"),
            base: format!("{}/{device_id}", m.prefix),
            credentials,
            tls,
        })
    }

    fn connect(&self, v5: bool) -> (Link, Loop) {
        let will_topic = format!("{}/status", self.base);
        let keep_alive = Duration::from_secs(15);
        if v5 {
            let mut o =
                rumqttc::v5::MqttOptions::new(&self.client_id, &self.addr.host, self.addr.port);
            o.set_keep_alive(keep_alive)
                .set_clean_start(true)
                .set_manual_acks(true)
                .set_max_packet_size(Some(MAX_PACKET as u32))
                // rumqttc sizes its in-flight table by this limit up front (64 Ki slots,
                // ~14 MB, by default); 100 in flight is plenty for a device.
                .set_outgoing_inflight_upper_limit(100)
                .set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
                    will_topic,
                    "offline",
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    true,
                    None::<LastWillProperties>,
                ));
            if let Some((u, p)) = &self.credentials {
                o.set_credentials(u, p);
            }
            if let Some(t) = &self.tls {
                o.set_transport(rumqttc::Transport::tls_with_config(t.clone()));
            }
            o.set_network_options(low_latency());
            let (c, l) = rumqttc::v5::AsyncClient::new(o, 1024);
            (Link::V5(c), Loop::V5(Box::new(l)))
        } else {
            let mut o = rumqttc::MqttOptions::new(&self.client_id, &self.addr.host, self.addr.port);
            o.set_keep_alive(keep_alive)
                .set_clean_session(true)
                .set_manual_acks(true)
                .set_max_packet_size(MAX_PACKET, MAX_PACKET)
                .set_last_will(rumqttc::LastWill::new(
                    will_topic,
                    "offline",
                    rumqttc::QoS::AtLeastOnce,
                    true,
                ));
            if let Some((u, p)) = &self.credentials {
                o.set_credentials(u, p);
            }
            if let Some(t) = &self.tls {
                o.set_transport(rumqttc::Transport::tls_with_config(t.clone()));
            }
            let (c, mut l) = rumqttc::AsyncClient::new(o, 1024);
            l.set_network_options(low_latency());
            (Link::V4(c), Loop::V4(Box::new(l)))
        }
    }
}

/// Command results are small and answer a waiting operator: send them at once rather than
/// letting Nagle's algorithm hold them for the peer's delayed ACK (~40 ms).
fn low_latency() -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

/// The environment variable holding the broker password when `mqtt.password_file` is empty.
pub const PASSWORD_ENV: &str = "LPE_MQTT_PASSWORD";

const COMMANDS: &[&str] = &[
    "stream_start",
    "stream_stop",
    "stream_restart",
    "snapshot",
    "restart",
    "log_level",
    "orchestrator_status",
    "update",
    "alert_acknowledge",
];

/// A command's request, parsed: the id and the arguments object.
fn parse_request(
    name: &str,
    msg: &Incoming,
) -> Result<(String, serde_json::Map<String, Value>), Box<JournalEntry>> {
    let correlation = msg
        .correlation
        .as_ref()
        .map(|c| match std::str::from_utf8(c) {
            Ok(s) => s.to_string(),
            Err(_) => hex::encode(c),
        });
    let body: Result<Value, _> = if msg.payload.is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_slice(&msg.payload)
    };
    let body = match body {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            return Err(Box::new(JournalEntry::failed(
                correlation.as_deref(),
                name,
                "the request must be a JSON object",
            )));
        }
        Err(e) => {
            return Err(Box::new(JournalEntry::failed(
                correlation.as_deref(),
                name,
                format!("malformed JSON: {e}"),
            )));
        }
    };
    let request_id = match (correlation, body.get("request_id")) {
        (Some(c), _) => c,
        (None, Some(Value::String(s))) if !s.is_empty() && s.len() <= 200 => s.clone(),
        (None, Some(_)) => {
            return Err(Box::new(JournalEntry::failed(
                None,
                name,
                "request_id must be a string of 1 to 200 characters",
            )));
        }
        (None, None) => {
            return Err(Box::new(JournalEntry::failed(
                None,
                name,
                "a request id is required (MQTT 5 correlation data, or a request_id field)",
            )));
        }
    };
    Ok((request_id, body))
}

fn string_arg(args: &serde_json::Map<String, Value>, key: &str) -> Result<String, String> {
    match args.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(format!("'{key}' must be a non-empty string")),
        None => Err(format!("'{key}' is required")),
    }
}

/// The fleet's command `name` with its arguments, as a node command.
fn decode(name: &str, args: &serde_json::Map<String, Value>) -> Result<Command, String> {
    Ok(match name {
        "stream_start" => Command::StartStream {
            id: string_arg(args, "stream_id")?,
        },
        "stream_stop" => Command::StopStream {
            id: string_arg(args, "stream_id")?,
        },
        "stream_restart" => Command::RestartStream {
            id: string_arg(args, "stream_id")?,
        },
        "snapshot" => Command::Snapshot {
            id: string_arg(args, "stream_id")?,
        },
        "log_level" => Command::SetLogLevel(string_arg(args, "level")?),
        "orchestrator_status" => Command::OrchestratorStatus,
        "restart" => Command::RestartNode,
        // A bundle by URL; the job's progress is in `state` (`update`).
        "update" => Command::Update(lpe_node::update::UpdateRequest {
            source: lpe_node::update::BundleSource::Url(string_arg(args, "url")?),
            sha256: match args.get("sha256") {
                None | Some(Value::Null) => None,
                Some(_) => Some(string_arg(args, "sha256")?),
            },
        }),
        "alert_acknowledge" => Command::AcknowledgeAlert {
            event_id: args
                .get("event_id")
                .and_then(Value::as_i64)
                .ok_or("'event_id' is required: an integer")?,
        },
        other => {
            return Err(format!(
                "unknown command '{other}'; known: {}",
                COMMANDS.join(", ")
            ));
        }
    })
}

/// A command's result on its way out: where, what, how hard.
type Outgoing = (ReplyTo, Vec<u8>, Delivery);

/// Publishes results from commands through the bridge's loop.
type Outbox = mpsc::UnboundedSender<Outgoing>;

/// Handles one `cmd/<name>` message: dedupe by request id, record, run, report.
async fn handle_command(
    node: Arc<Node>,
    counters: Arc<Counters>,
    name: String,
    msg: Incoming,
    base: String,
    out: Outbox,
) {
    let reply = ReplyTo {
        topic: msg
            .response_topic
            .clone()
            .unwrap_or_else(|| format!("{base}/cmd/{name}/result")),
        correlation: msg.correlation.clone(),
    };
    let send = |r: &JournalEntry| {
        let delivery = match r.state {
            JournalState::Accepted | JournalState::InProgress => Delivery::BestEffort,
            _ => Delivery::AtLeastOnce,
        };
        let _ = out.send((reply.clone(), r.json().into_bytes(), delivery));
    };
    let (request_id, args) = match parse_request(&name, &msg) {
        Ok(v) => v,
        Err(r) => {
            counters.mqtt_command(&name, COMMANDS, "failed");
            send(&r);
            return;
        }
    };
    let rid = Some(request_id.as_str());
    let command = match decode(&name, &args) {
        Ok(c) => c,
        Err(reason) => {
            counters.mqtt_command(&name, COMMANDS, "failed");
            send(&JournalEntry::failed(rid, &name, reason));
            return;
        }
    };
    let envelope = Envelope {
        actor: Actor::Fleet,
        request_id: Some(request_id.clone()),
        command,
    };
    // The node journals the id before the command runs; "accepted" goes out once it has.
    let accepted = |entry: &JournalEntry| {
        send(entry);
        send(&JournalEntry::new(rid, &name, JournalState::InProgress));
    };
    let done = match node.submit(envelope, accepted).await {
        Ok(Reply::Repeat(entry)) => {
            send(&entry);
            return;
        }
        Ok(Reply::Ran(result)) => {
            let mut done = JournalEntry::finished(rid, &name, &result);
            // The picture goes to the fleet, not into the journal.
            if let (Ok(Outcome::Snapshot { jpeg, .. }), Some(Value::Object(o))) =
                (&result, &mut done.result)
            {
                o.insert(
                    "data_base64".into(),
                    base64::engine::general_purpose::STANDARD
                        .encode(jpeg)
                        .into(),
                );
            }
            done
        }
        Err(e) => JournalEntry::failed(
            rid,
            &name,
            format!("the node could not record the command: {e}"),
        ),
    };
    counters.mqtt_command(&name, COMMANDS, state_name(done.state));
    send(&done);
}

fn state_name(s: JournalState) -> &'static str {
    match s {
        JournalState::Accepted => "accepted",
        JournalState::InProgress => "in_progress",
        JournalState::Succeeded => "succeeded",
        JournalState::Failed => "failed",
    }
}

/// Runs a command as far as it goes without waiting, here on the bridge's task, and hands
/// the rest to a task of its own. Most commands (a log level, a stream that is already in
/// the wanted state, a refusal) finish in microseconds, and two hops between tasks would
/// cost more than the command; one that waits (a pipeline starting, the node restarting)
/// goes on in the background, so the bridge never waits for it.
fn run_command(command: impl Future<Output = ()> + Send + 'static) {
    let mut command = Box::pin(command);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if command.as_mut().poll(&mut cx).is_pending() {
        // The task polls it again at once, registering its own waker.
        tokio::spawn(command);
    }
}

/// The reported state (retained).
fn state_doc(node: &Node, desired: &Value) -> Value {
    let streams: Vec<Value> = node
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            // The configuration as applied (secrets such as RTSP passwords are never in a
            // view), and how it runs.
            json!({
                "id": s.id, "name": s.name, "enabled": s.enabled, "source": s.source,
                "ladder": s.ladder, "restream": s.restream, "recording": s.recording,
                "state": s.status.state,
                "encoder": s.status.encoder, "last_error": s.status.last_error,
            })
        })
        .collect();
    let (job, slots) = node.updater.summary();
    let update = json!({"job": job, "slots": slots});
    json!({
        "ts_ms": now_ms(),
        "version": env!("CARGO_PKG_VERSION"),
        "device": node.device_identity().ok(),
        "log_level": node.log_level(),
        "desired": desired,
        "streams": streams,
        "update": update,
    })
}

fn telemetry_doc(node: &Node) -> Value {
    let streams: Vec<Value> = node
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id, "state": s.status.state, "fps": s.status.input_fps,
                "kbps": s.status.input_kbps, "dropped_frames": s.status.dropped_frames,
                "reconnects": s.status.reconnects, "encoder": s.status.encoder,
                "renditions": s.status.renditions.iter().map(|r| json!({
                    "name": r.name, "fps": r.fps, "kbps": r.kbps
                })).collect::<Vec<_>>(),
                "audio": s.status.audio,
                "restream": s.status.restream.iter().map(|r| json!({
                    "name": r.name, "state": r.state, "kbps": r.kbps, "errors": r.errors,
                    "last_error": r.last_error,
                })).collect::<Vec<_>>(),
                "recording": s.status.recording.as_ref().map(|r| json!({
                    "state": r.state, "files": r.files, "bytes": r.bytes, "dropped": r.dropped,
                    "last_error": r.last_error,
                })),
                "analysis": s.analysis,
            })
        })
        .collect();
    json!({
        "ts_ms": now_ms(),
        "uptime_s": node.uptime().as_secs(),
        "device": node.device.latest(),
        "streams": streams,
        "tickets": node.ticket_counts().ok(),
        "reward": node.reward_status(),
        "transcoder": node.transcoder_view(),
        "ai": node.ai.runtime(),
        "recordings": node.recordings().map(|r| json!({
            "bytes": r.bytes(), "disk_full": r.disk_full(),
        })),
    })
}

/// Home Assistant discovery: a connectivity sensor, per-device gauges, and per stream with
/// an object detector an occupancy sensor per label it senses ("person detected").
fn homeassistant(
    node: &Node,
    topics: &Topics,
    device_id: &str,
    name: &str,
) -> Vec<(String, Value)> {
    let device = json!({"identifiers": [device_id], "name": name, "manufacturer": "Livepeer Edge",
        "sw_version": env!("CARGO_PKG_VERSION")});
    let mut out = vec![(
        format!("homeassistant/binary_sensor/{device_id}/online/config"),
        json!({"name": "Online", "unique_id": format!("{device_id}_online"),
            "state_topic": topics.status, "payload_on": "online",
            "payload_off": "offline", "device_class": "connectivity", "device": device}),
    )];
    for (key, label, unit, tmpl) in [
        (
            "cpu",
            "CPU",
            "%",
            "{{ value_json.device.cpu_percent | round(1) }}",
        ),
        (
            "memory",
            "Memory used",
            "B",
            "{{ value_json.device.memory_used_bytes }}",
        ),
        ("uptime", "Uptime", "s", "{{ value_json.uptime_s }}"),
    ] {
        out.push((
            format!("homeassistant/sensor/{device_id}/{key}/config"),
            json!({"name": label, "unique_id": format!("{device_id}_{key}"),
                "state_topic": topics.telemetry, "unit_of_measurement": unit,
                "value_template": tmpl, "availability_topic": topics.status,
                "device": device}),
        ));
    }
    for s in node.list().unwrap_or_default() {
        for label in node.analyser.sensed_labels(&s.ai) {
            // Labels and ids become topic levels and ids: only their safe characters.
            let key: String = format!("{}_{label}", s.id)
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let label_json = serde_json::to_string(&label).unwrap_or_default();
            out.push((
                format!("homeassistant/binary_sensor/{device_id}/{key}/config"),
                json!({"name": format!("{} {label} detected", s.name),
                    "unique_id": format!("{device_id}_{key}"),
                    "state_topic": topics.objects(&s.id),
                    "value_template": format!(
                        "{{{{ 'ON' if (value_json.counts[{label_json}] | default(0)) > 0 else 'OFF' }}}}"
                    ),
                    "device_class": "occupancy", "availability_topic": topics.status,
                    "device": device}),
            ));
        }
    }
    out
}

/// Publishes the Home Assistant configs (retained) and removes, with an empty retained
/// message, those published before that are no longer wanted (a stream deleted, its detector
/// or labels changed).
fn discovery(
    node: &Node,
    (link, counters): (&Link, &Counters),
    topics: &Topics,
    device_id: &str,
    published: &mut std::collections::HashSet<String>,
) {
    let publish = |topic: &str, payload: Vec<u8>| {
        if link.publish(topic, payload, true, None, Delivery::AtLeastOnce) {
            Counters::bump(&counters.mqtt_published);
        } else {
            Counters::bump(&counters.mqtt_dropped);
        }
    };
    let name = node
        .device_identity()
        .map(|d| d.name)
        .unwrap_or_else(|_| device_id.to_string());
    let now: std::collections::HashSet<String> = homeassistant(node, topics, device_id, &name)
        .into_iter()
        .map(|(topic, cfg)| {
            publish(&topic, cfg.to_string().into_bytes());
            topic
        })
        .collect();
    for gone in published.difference(&now) {
        publish(gone, Vec::new());
    }
    *published = now;
}

/// A stream's retained object counts.
fn objects_doc(node: &Node, stream_id: &str) -> Vec<u8> {
    json!({"ts_ms": now_ms(), "counts": node.analyser.object_counts(stream_id)})
        .to_string()
        .into_bytes()
}

/// The node's own topics under `<prefix>/<device-id>`, spelled once.
struct Topics {
    status: String,
    state: String,
    events: String,
    telemetry: String,
    desired: String,
    /// `…/cmd/`, followed by the command's name.
    cmd: String,
    /// `…/objects/`, followed by a stream's id: what its detector sees now (retained).
    objects: String,
}

impl Topics {
    fn new(base: &str) -> Self {
        Self {
            status: format!("{base}/status"),
            state: format!("{base}/state"),
            events: format!("{base}/events"),
            telemetry: format!("{base}/telemetry"),
            desired: format!("{base}/config/desired"),
            cmd: format!("{base}/cmd/"),
            objects: format!("{base}/objects/"),
        }
    }

    fn objects(&self, stream_id: &str) -> String {
        format!("{}{stream_id}", self.objects)
    }
}

/// Runs the bridge until shutdown: connects (MQTT 5, else 3.1.1), keeps the retained status
/// and state current, publishes telemetry and events, and serves commands and desired
/// configurations. Broker outages are retried with backoff and never stop the node.
pub async fn run(node: Arc<Node>, counters: Arc<Counters>, mut shutdown: watch::Receiver<bool>) {
    let id = node.device_id().await;
    let settings = match Settings::from(&node, &id) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("MQTT disabled: {e}");
            return;
        }
    };
    let base = settings.base.clone();
    let topics = Topics::new(&base);
    tracing::info!(broker = %node.cfg.mqtt.url, topics = %base, "MQTT fleet control");
    let mut events = node.events.subscribe();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let mut queue: VecDeque<Vec<u8>> = VecDeque::new();
    let queue_cap = node.cfg.mqtt.offline_queue as usize;
    let mut v5 = node.cfg.mqtt.protocol != "3.1.1";
    let (mut link, mut eventloop) = settings.connect(v5);
    let mut connected = false;
    let mut backoff = Duration::from_millis(500);
    let mut telemetry = tokio::time::interval(Duration::from_secs(u64::from(
        node.cfg.mqtt.telemetry_seconds,
    )));
    telemetry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state_due: Option<tokio::time::Instant> = None;
    // Home Assistant configs published, so that those of streams gone can be removed.
    let mut discovered: std::collections::HashSet<String> = Default::default();
    let mut desired_status = json!(null);
    // A desired configuration is applied off the bridge's loop (stopping a stream can take
    // seconds), newest first: a version that arrives while one is applied replaces any still
    // waiting, as the broker's retained message does.
    let (desired_tx, mut desired_rx) = watch::channel(Bytes::new());
    let (status_tx, mut status_rx) = watch::channel(json!(null));
    let desired_worker = {
        let node = Arc::clone(&node);
        AbortOnDrop(tokio::spawn(async move {
            while desired_rx.changed().await.is_ok() {
                let payload = desired_rx.borrow_and_update().clone();
                let status = apply_desired(&node, &payload).await;
                if status_tx.send(status).is_err() {
                    return;
                }
            }
        }))
    };

    let publish = |link: &Link,
                   topic: &str,
                   payload: Vec<u8>,
                   retain: bool,
                   reply: Option<&ReplyTo>,
                   delivery: Delivery| {
        if link.publish(topic, payload, retain, reply, delivery) {
            Counters::bump(&counters.mqtt_published);
        } else {
            Counters::bump(&counters.mqtt_dropped);
        }
    };
    let publish_results = |link: &Link, out_rx: &mut mpsc::UnboundedReceiver<Outgoing>| {
        while let Ok((reply, payload, delivery)) = out_rx.try_recv() {
            publish(link, &reply.topic, payload, false, Some(&reply), delivery);
        }
    };

    loop {
        let state_timer = async {
            match state_due {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // Results first: a command's answer never waits behind telemetry or events.
            biased;
            Some((reply, payload, delivery)) = out_rx.recv() => {
                publish(&link, &reply.topic, payload, false, Some(&reply), delivery);
                publish_results(&link, &mut out_rx);
            }
            Ok(()) = status_rx.changed() => {
                desired_status = status_rx.borrow_and_update().clone();
                state_due = Some(tokio::time::Instant::now());
            }
            net = eventloop.next() => match net {
                Net::Connected => {
                    connected = true;
                    backoff = Duration::from_millis(500);
                    Counters::bump(&counters.mqtt_connects);
                    counters.mqtt_connected.store(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!("MQTT connected ({})", if v5 { "5" } else { "3.1.1" });
                    node.events.emit(None, EventKind::MqttConnected, format!("connected to {}", node.cfg.mqtt.url));
                    publish(&link, &topics.status, b"online".to_vec(), true, None, Delivery::AtLeastOnce);
                    link.subscribe(&format!("{}+", topics.cmd));
                    link.subscribe(&topics.desired);
                    if node.cfg.mqtt.homeassistant {
                        discovery(&node, (&link, &counters), &topics, &id, &mut discovered);
                    }
                    let state = state_doc(&node, &desired_status);
                    publish(&link, &topics.state, state.to_string().into_bytes(), true, None, Delivery::AtLeastOnce);
                    for s in node.list().unwrap_or_default().iter().filter(|s| s.ai.model.is_some()) {
                        publish(&link, &topics.objects(&s.id), objects_doc(&node, &s.id), true, None, Delivery::AtLeastOnce);
                    }
                    while let Some(e) = queue.pop_front() {
                        publish(&link, &topics.events, e, false, None, Delivery::AtLeastOnce);
                    }
                    telemetry.reset_immediately();
                }
                Net::Message(msg, ack) => {
                    Counters::bump(&counters.mqtt_received);
                    if msg.topic == topics.desired {
                        desired_tx.send_replace(msg.payload.clone());
                    } else if let Some(name) = msg.topic.strip_prefix(topics.cmd.as_str()) {
                        run_command(handle_command(
                            Arc::clone(&node),
                            Arc::clone(&counters),
                            name.to_string(),
                            msg,
                            base.clone(),
                            out_tx.clone(),
                        ));
                        // What the command has to say so far goes out before the ack.
                        publish_results(&link, &mut out_rx);
                    }
                    if !link.ack(&ack) {
                        Counters::bump(&counters.mqtt_dropped);
                    }
                }
                Net::Other => {}
                Net::WantsV4 => {
                    tracing::info!("the broker does not speak MQTT 5; using 3.1.1");
                    v5 = false;
                    (link, eventloop) = settings.connect(v5);
                }
                Net::Down(reason) => {
                    if connected {
                        tracing::warn!("MQTT connection lost: {reason}");
                        node.events.emit(None, EventKind::MqttDisconnected, reason.clone());
                    } else {
                        tracing::debug!("MQTT connect failed: {reason}");
                    }
                    connected = false;
                    counters.mqtt_connected.store(0, std::sync::atomic::Ordering::Relaxed);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            },
            ev = events.recv() => match ev {
                Ok(e) => {
                    let body = event_json(&e);
                    if connected {
                        publish(&link, &topics.events, body, false, None, Delivery::AtLeastOnce);
                    } else {
                        if queue.len() == queue_cap {
                            queue.pop_front();
                            Counters::bump(&counters.mqtt_dropped);
                        }
                        queue.push_back(body);
                    }
                    if let (true, Some(stream)) = (
                        connected && matches!(e.kind, EventKind::ObjectStarted | EventKind::ObjectEnded),
                        &e.stream_id,
                    ) {
                        let doc = objects_doc(&node, stream);
                        publish(&link, &topics.objects(stream), doc, true, None, Delivery::AtLeastOnce);
                    }
                    if connected
                        && node.cfg.mqtt.homeassistant
                        && matches!(e.kind, EventKind::StreamCreated | EventKind::StreamUpdated | EventKind::StreamDeleted)
                    {
                        discovery(&node, (&link, &counters), &topics, &id, &mut discovered);
                    }
                    if affects_state(e.kind) && state_due.is_none() {
                        // Coalesce bursts of changes into one retained state update.
                        state_due = Some(tokio::time::Instant::now() + Duration::from_millis(250));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    counters.mqtt_dropped.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = telemetry.tick(), if connected => {
                let t = telemetry_doc(&node);
                publish(&link, &topics.telemetry, t.to_string().into_bytes(), false, None, Delivery::AtLeastOnce);
            }
            _ = state_timer => {
                state_due = None;
                if connected {
                    let state = state_doc(&node, &desired_status);
                    publish(&link, &topics.state, state.to_string().into_bytes(), true, None, Delivery::AtLeastOnce);
                    for s in node.list().unwrap_or_default().iter().filter(|s| s.ai.model.is_some()) {
                        publish(&link, &topics.objects(&s.id), objects_doc(&node, &s.id), true, None, Delivery::AtLeastOnce);
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    // A graceful stop says "offline" itself (the Last Will covers crashes).
    if connected {
        publish(
            &link,
            &topics.status,
            b"offline".to_vec(),
            true,
            None,
            Delivery::AtLeastOnce,
        );
        link.disconnect();
        let drain = async {
            loop {
                if let Net::Down(_) = eventloop.next().await {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    }
    drop(desired_worker);
    counters
        .mqtt_connected
        .store(0, std::sync::atomic::Ordering::Relaxed);
}

fn affects_state(kind: EventKind) -> bool {
    use EventKind::*;
    matches!(
        kind,
        StreamCreated
            | StreamUpdated
            | StreamDeleted
            | StreamUp
            | StreamDown
            | StreamError
            | EncoderFallback
            | SettingsChanged
            | UpdateInstalled
            | UpdateSucceeded
            | UpdateFailed
    )
}

fn event_json(e: &NodeEvent) -> Vec<u8> {
    serde_json::to_vec(e).unwrap_or_default()
}

/// Ends a task when its owner goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Applies a desired configuration; returns what `state.desired` reports.
async fn apply_desired(node: &Node, payload: &[u8]) -> Value {
    if payload.is_empty() {
        // The fleet cleared its retained message: nothing to apply.
        return json!(null);
    }
    let doc: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            return json!({"status": "rejected", "error": format!("malformed JSON: {e}"), "field": null,
                "applied_version": applied_version(node)});
        }
    };
    let version = doc.get("version").cloned().unwrap_or(Value::Null);
    let result = match DesiredConfig::from_json(doc) {
        Err(e) => Err(CommandError::Invalid(e)),
        Ok(desired) => {
            let envelope = Envelope::once(Actor::Fleet, Command::ApplyDesired(desired));
            match node.submit(envelope, |_| {}).await {
                Ok(Reply::Ran(result)) => result,
                Ok(Reply::Repeat(_)) => return json!(null),
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(Outcome::Desired(r)) => {
            tracing::info!(version = %r.version, created = r.created.len(), updated = r.updated.len(),
                deleted = r.deleted.len(), "desired configuration applied");
            json!({"status": "applied", "version": r.version, "applied_version": r.version,
                "created": r.created, "updated": r.updated, "deleted": r.deleted})
        }
        Ok(_) => json!(null),
        Err(e) => {
            let (field, error) = match e {
                CommandError::Invalid(s) => (Some(s.field), s.message),
                other => (None, other.to_string()),
            };
            tracing::warn!("desired configuration {version} rejected: {error}");
            json!({"status": "rejected", "version": version, "error": error, "field": field,
                "applied_version": applied_version(node)})
        }
    }
}

fn applied_version(node: &Node) -> Value {
    node.desired_version()
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_run_here_until_they_wait() {
        use std::sync::atomic::{AtomicBool, Ordering};
        // A command that never waits has finished when `run_command` returns.
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        run_command(async move { flag.store(true, Ordering::SeqCst) });
        assert!(ran.load(Ordering::SeqCst));
        // One that waits goes on in a task of its own and is woken there.
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let before = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&before);
        run_command(async move {
            flag.store(true, Ordering::SeqCst);
            let _ = wait.await;
            let _ = done.send(());
        });
        assert!(
            before.load(Ordering::SeqCst),
            "it ran up to its first wait here"
        );
        go.send(()).expect("the command is still waiting");
        tokio::time::timeout(Duration::from_secs(5), finished)
            .await
            .expect("the task finished the command")
            .expect("finished");
    }

    #[test]
    fn broker_urls() {
        assert_eq!(
            BrokerAddress::parse("mqtt://127.0.0.1:1884"),
            Ok(BrokerAddress {
                tls: false,
                host: "127.0.0.1".into(),
                port: 1884
            })
        );
        assert_eq!(
            BrokerAddress::parse("mqtts://broker.example").map(|b| b.port),
            Ok(8883)
        );
        assert_eq!(
            BrokerAddress::parse("mqtt://[::1]:1883").map(|b| b.host),
            Ok("::1".into())
        );
        assert!(BrokerAddress::parse("http://x").is_err());
        assert!(BrokerAddress::parse("mqtt://:1883").is_err());
        assert!(BrokerAddress::parse("mqtt://h:99999").is_err());
    }

    fn msg(payload: &str, correlation: Option<&str>) -> Incoming {
        Incoming {
            topic: "p/d/cmd/x".into(),
            payload: Bytes::from(payload.to_string()),
            response_topic: None,
            correlation: correlation.map(|c| Bytes::from(c.to_string())),
        }
    }

    #[test]
    fn requests_need_an_id_and_an_object() {
        assert!(parse_request("x", &msg(r#"{"request_id":"a"}"#, None)).is_ok());
        assert_eq!(
            parse_request("x", &msg("{}", Some("corr")))
                .map(|r| r.0)
                .ok(),
            Some("corr".to_string())
        );
        let e = parse_request("x", &msg("{}", None)).expect_err("no id");
        assert!(e.reason.unwrap_or_default().contains("request id"));
        let e = parse_request("x", &msg("{nope", None)).expect_err("bad json");
        assert!(e.reason.unwrap_or_default().contains("malformed JSON"));
        let e = parse_request("x", &msg("[1]", None)).expect_err("not an object");
        assert_eq!(e.state, JournalState::Failed);
        let e = parse_request("x", &msg(r#"{"request_id":5}"#, None)).expect_err("number");
        assert!(e.reason.unwrap_or_default().contains("request_id"));
    }
}
