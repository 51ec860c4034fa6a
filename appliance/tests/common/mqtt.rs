//! A real Mosquitto broker on a loopback port, and an MQTT 5 test client that records every
//! message it sees.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{Client, Event, MqttOptions};

pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// A second listener that wants TLS with a client certificate and a password.
    pub tls: Option<TlsListener>,
}

/// The TLS listener's port and the files a client needs.
pub struct TlsListener {
    pub port: u16,
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub password_file: PathBuf,
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    super::succeeded(out, &format!("openssl {args:?}"));
}

impl Broker {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = Self {
            child: None,
            port: super::free_port(),
            dir,
            tls: None,
        };
        b.spawn();
        b
    }

    /// A broker with a plain anonymous listener and a TLS one that wants a client certificate
    /// signed by a test CA and the user `edge` with password `fleet-secret`.
    pub fn start_tls() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ]);
        openssl(d, &ca);
        for (name, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(d.join(format!("{name}.ext")), ext).expect("ext");
            let mut req = vec!["req"];
            req.extend(ec);
            let (key, csr, crt, extf, subj) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
                format!("{name}.ext"),
                format!("/CN={name}"),
            );
            req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(d, &req);
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &crt,
                    "-days",
                    "2",
                    "-extfile",
                    &extf,
                ],
            );
        }
        let passwd = d.join("passwd");
        std::fs::write(&passwd, "").expect("passwd");
        let out = Command::new("mosquitto_passwd")
            .args(["-b"])
            .arg(&passwd)
            .args(["edge", "fleet-secret"])
            .output()
            .expect("mosquitto_passwd");
        super::succeeded(out, "mosquitto_passwd");
        let password_file = d.join("client-password");
        std::fs::write(&password_file, "fleet-secret\n").expect("password");
        let tls = TlsListener {
            port: super::free_port(),
            ca: d.join("ca.crt"),
            client_cert: d.join("client.crt"),
            client_key: d.join("client.key"),
            password_file,
        };
        let mut b = Self {
            child: None,
            port: super::free_port(),
            dir,
            tls: Some(tls),
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let conf: PathBuf = self.dir.path().join("mosquitto.conf");
        let d = self.dir.path().display();
        // Started as root, mosquitto would switch to its own user, who cannot read the test's
        // private files; keep it as whoever runs the tests.
        let me = Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let mut text = format!(
            "user {me}\nper_listener_settings true\npersistence false\n\
             listener {} 127.0.0.1\nallow_anonymous true\n",
            self.port
        );
        if let Some(t) = &self.tls {
            text += &format!(
                "listener {} 127.0.0.1\nallow_anonymous false\npassword_file {d}/passwd\n\
                 cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n\
                 require_certificate true\n",
                t.port
            );
        }
        std::fs::write(&conf, text).expect("write conf");
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).expect("log");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto (Debian package mosquitto)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let ports = [Some(self.port), self.tls.as_ref().map(|t| t.port)];
        while ports
            .iter()
            .flatten()
            .any(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
        {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start: {}",
                std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the broker (losing every retained message) and starts it on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub retain: bool,
    pub correlation: Option<Bytes>,
}

impl Message {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

/// A test client subscribed to `filters`, recording what arrives.
pub struct Observer {
    client: Client,
    seen: Arc<Mutex<Vec<Message>>>,
}

impl Observer {
    pub fn connect(port: u16, filters: &[&str]) -> Self {
        let id = format!("observer-{}", super::free_port());
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(Some(4 << 20));
        let (client, mut conn) = Client::new(opts, 256);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let m = Message {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload,
                            retain: p.retain,
                            correlation: p.properties.and_then(|pp| pp.correlation_data),
                        };
                        if let Ok(mut s) = sink.lock() {
                            s.push(m);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("observer connected");
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).expect("subscribe");
        }
        Self { client, seen }
    }

    pub fn publish(&self, topic: &str, payload: &str, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
            .expect("publish");
    }

    /// MQTT 5 request/response: a response topic and correlation data.
    pub fn request(&self, topic: &str, payload: &str, response_topic: &str, correlation: &str) {
        let props = PublishProperties {
            response_topic: Some(response_topic.into()),
            correlation_data: Some(Bytes::from(correlation.to_string())),
            ..Default::default()
        };
        self.client
            .publish_with_properties(
                topic,
                QoS::AtLeastOnce,
                false,
                payload.as_bytes().to_vec(),
                props,
            )
            .expect("publish");
    }

    pub fn all(&self) -> Vec<Message> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Ok(mut s) = self.seen.lock() {
            s.clear();
        }
    }

    /// Waits for a message on `topic` that satisfies `pred`.
    pub fn wait(&self, topic: &str, timeout: Duration, pred: impl Fn(&Message) -> bool) -> Message {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.all().into_iter().find(|m| m.topic == topic && pred(m)) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no matching message on {topic}; seen: {:?}",
                self.all()
                    .iter()
                    .map(|m| (m.topic.clone(), m.text()))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Messages on `topic`, in arrival order.
    pub fn on(&self, topic: &str) -> Vec<Message> {
        self.all()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }
}
