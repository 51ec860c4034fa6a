//! Test harness: runs the real `livepeer-edge` binary on loopback ports it picks, with its own
//! data directory, and talks to it over HTTP; publishes with ffmpeg or a raw RTMP client.
#![allow(dead_code)]

pub mod evm;
pub mod mqtt;
pub mod wire;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Kills a child started with `process_group(0)` and everything it started, then reaps it.
pub fn kill_group(child: &mut Child) {
    // SAFETY: kill(2) with a negative pid signals the child's own process group only.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
}

/// The `name=value` part of a reply's `Set-Cookie` for the session.
pub fn session_cookie(r: &Reply) -> Option<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .filter_map(|(_, v)| v.split(';').next())
        .find(|kv| kv.starts_with("lpe_session="))
        .map(str::to_string)
}

/// `out`, once its command is seen to have succeeded (else a panic with its stderr).
pub fn succeeded(out: std::process::Output, what: &str) -> std::process::Output {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A `/proc/<pid>/status` figure in kB (`VmRSS`, `VmHWM`, …).
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub struct NodeProc {
    child: Option<Child>,
    pub http: u16,
    pub rtmp: u16,
    /// The Livepeer network port (served while the role earns).
    pub net: u16,
    pub dir: PathBuf,
    agent: ureq::Agent,
    /// `Bearer <admin token>`, made through first-boot setup and kept in the data directory
    /// across restarts.
    auth: String,
}

/// A reply: status, headers (lower-case names) and the body as JSON (or a JSON string).
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub const ADMIN_PASSWORD: &str = "correct horse battery";

impl NodeProc {
    /// Starts a node on `dir` (kept between restarts) and waits for `/api/health`.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_wrapped(dir, env, &[])
    }

    /// Starts the node through `wrapper` (a command that ends by running its arguments, such
    /// as `unshare -m sh -c '...; exec "$@"' sh`).
    pub fn start_wrapped(dir: &Path, env: &[(&str, &str)], wrapper: &[&str]) -> Self {
        Self::spawn(dir, env, wrapper, true)
    }

    /// Starts a node and leaves first-boot setup (and credentials) to the test.
    pub fn start_without_setup(dir: &Path) -> Self {
        Self::spawn(dir, &[], &[], false)
    }

    pub fn start_without_setup_with(dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn(dir, env, &[], false)
    }

    fn spawn(dir: &Path, env: &[(&str, &str)], wrapper: &[&str], setup: bool) -> Self {
        // A port found free can be taken before the node binds it (another test's outgoing
        // connection gets an ephemeral port from the same range): then try other ports.
        for _ in 0..3 {
            if let Some(node) = Self::try_spawn(dir, env, wrapper, setup) {
                return node;
            }
        }
        panic!("the node found its ports taken three times");
    }

    fn try_spawn(dir: &Path, env: &[(&str, &str)], wrapper: &[&str], setup: bool) -> Option<Self> {
        let http = free_port();
        let rtmp = free_port();
        let net = free_port();
        let log_start = std::fs::metadata(dir.join("node.log")).map_or(0, |m| m.len()) as usize;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))
            .expect("log file");
        let bin = env!("CARGO_BIN_EXE_livepeer-edge");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("run")
            .arg("--data-dir")
            .arg(dir)
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{http}"))
            .arg("--rtmp-listen")
            .arg(format!("127.0.0.1:{rtmp}"))
            .env("LPE_NET_LISTEN", format!("127.0.0.1:{net}"))
            // Plain HTTP/2 and HTTP/1.1 (h2c) unless a test asks for TLS (an empty URI).
            .env("LPE_NET_SERVICE_URI", format!("http://127.0.0.1:{net}"))
            .env("LPE_MEDIA_DEMO_STREAM", "false")
            .env("LPE_MEDIA_X264_PRESET", "ultrafast")
            .env("LPE_LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start livepeer-edge");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into();
        let node = Self {
            child: Some(child),
            http,
            rtmp,
            net,
            dir: dir.to_path_buf(),
            agent,
            auth: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut node = node;
        loop {
            // Up: it answers, healthy (200) or not able to work (503).
            if let Ok((200 | 503, _)) = node.try_get("/api/health") {
                if setup {
                    node.auth = format!("Bearer {}", node.admin_token());
                }
                return Some(node);
            }
            let exited = node
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited
                && node
                    .log()
                    .get(log_start..)
                    .is_some_and(|l| l.contains("Address already in use"))
            {
                node.child = None;
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "node did not come up: {}",
                node.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    /// The `Authorization` header value the node's requests carry (for a thread of a test's
    /// own that polls the node).
    pub fn authorization(&self) -> String {
        self.auth.clone()
    }

    /// The orchestrator's service URI as the test nodes set it (h2c).
    pub fn net_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.net)
    }

    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.rtmp)
    }

    /// The setup code the node printed last.
    pub fn setup_code(&self) -> Option<String> {
        let log = self.log();
        let i = log.rfind("setup code ")?;
        Some(log[i + 11..].chars().take(11).collect())
    }

    /// An admin API token: made once through first-boot setup, then reused from the data dir.
    fn admin_token(&self) -> String {
        let file = self.dir.join("admin-token");
        if let Ok(t) = std::fs::read_to_string(&file) {
            return t;
        }
        let code = self.setup_code().expect("a setup code in the log");
        let body = serde_json::json!({
            "code": code, "password": ADMIN_PASSWORD, "device_name": "test box", "role": "off"
        });
        let r = self.call("POST", "/api/setup", Some(&body.to_string()), &[]);
        assert_eq!(r.status, 200, "setup failed: {}", r.body);
        let cookie = session_cookie(&r).expect("session cookie");
        let csrf = r.body["csrf_token"].as_str().expect("csrf").to_string();
        let r = self.call(
            "POST",
            "/api/tokens",
            Some(r#"{"name":"tests","role":"admin"}"#),
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        );
        assert_eq!(r.status, 201, "token failed: {}", r.body);
        let token = r.body["token"].as_str().expect("token").to_string();
        std::fs::write(&file, &token).expect("write token");
        token
    }

    /// One request with exactly the headers given (no credentials unless passed).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body.unwrap_or("").to_string()).expect("request");
        let mut res = self
            .agent
            .run(req)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()));
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let text = res.body_mut().read_to_string().unwrap_or_default();
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    /// The admin credentials the harness uses, as a header.
    pub fn admin_auth(&self) -> (&'static str, &str) {
        ("authorization", &self.auth)
    }

    fn try_get(&self, path: &str) -> Result<(u16, Value), ureq::Error> {
        let mut res = self
            .agent
            .get(&self.url(path))
            .header("authorization", &self.auth)
            .call()?;
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string()?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.try_get(path).expect("GET")
    }

    pub fn get_bytes(&self, path: &str) -> (u16, String, Vec<u8>) {
        let mut res = self
            .agent
            .get(&self.url(path))
            .header("authorization", &self.auth)
            .call()
            .expect("GET");
        let status = res.status().as_u16();
        let ct = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = res.body_mut().read_to_vec().unwrap_or_default();
        (status, ct, body)
    }

    pub fn send(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let r = self.call(method, path, body, &[("authorization", &self.auth)]);
        (r.status, r.body)
    }

    /// Uploads a model (`POST /api/ai/models?{query}`, the file as the body).
    pub fn upload_model(&self, query: &str, body: &[u8]) -> (u16, Value) {
        let url = self.url(&format!("/api/ai/models?{query}"));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut res = agent
            .post(&url)
            .header("authorization", &self.auth)
            .header("content-type", "application/octet-stream")
            .send(body)
            .expect("POST");
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn create(&self, body: Value) -> Value {
        let (status, v) = self.send("POST", "/api/streams", Some(&body.to_string()));
        assert_eq!(status, 201, "create failed: {v}");
        v
    }

    /// Polls a stream until `pred` holds for it.
    pub fn wait_stream(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, v) = self.get(&format!("/api/streams/{id}"));
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "stream {id} never became {what}; last: {v}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        self.wait_stream(id, state, timeout, |v| v["status"]["state"] == state)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGTERM, then waits for the process to exit.
    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether `/api/health` answers 200 now.
    pub fn healthy(&self) -> bool {
        matches!(self.try_get("/api/health"), Ok((200, _)))
    }

    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running node");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An ffmpeg publisher of a synthetic H.264 + AAC stream; killed on drop.
pub struct FfmpegPush(Child);

impl FfmpegPush {
    pub fn start(url: &str, size: &str, seconds: u32) -> Self {
        Self::start_with_audio(url, size, seconds, "sine=frequency=440:sample_rate=44100")
    }

    /// A push whose audio is the lavfi source (and filters) `audio`.
    pub fn start_with_audio(url: &str, size: &str, seconds: u32, audio: &str) -> Self {
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args([
                "-f",
                "lavfi",
                "-i",
                &format!("testsrc2=size={size}:rate=30"),
            ])
            .args(["-f", "lavfi", "-i", audio])
            .args(["-t", &seconds.to_string()])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ])
            .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
            .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ffmpeg");
        Self(child)
    }

    /// Waits for ffmpeg to end; returns its status and what it printed.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let status = self.0.wait().expect("ffmpeg wait");
        let mut err = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    }
}

impl Drop for FfmpegPush {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ffprobe` facts about the first video stream of a file or playlist.
pub fn probe_video(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height:format=duration",
        ])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// `ffprobe`'s view of a file's first audio stream: codec, sample rate, channels, and its
/// duration (`Null` fields when there is none).
pub fn probe_audio(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0"])
        .args([
            "-show_entries",
            "stream=codec_name,profile,sample_rate,channels,duration",
        ])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The segment file names of a media playlist.
pub fn segments(playlist: &Path) -> Vec<String> {
    std::fs::read_to_string(playlist)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// A minimal RTMP publisher (handshake, connect, publish, raw tags) for inputs ffmpeg cannot
/// produce: H.265 over FLV, audio only.
pub struct RawPublisher {
    sock: TcpStream,
    session: rml_rtmp::sessions::ClientSession,
}

impl RawPublisher {
    /// Connects and asks to publish; `Err` carries the server's refusal or the I/O error.
    pub fn publish(port: u16, app: &str, key: &str) -> Result<Self, String> {
        use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
        use rml_rtmp::sessions::{
            ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
            PublishRequestType,
        };
        let mut sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut hs = Handshake::new(PeerType::Client);
        let p0p1 = hs
            .generate_outbound_p0_and_p1()
            .map_err(|e| format!("{e:?}"))?;
        sock.write_all(&p0p1).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 8192];
        let leftover = loop {
            let n = sock.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed during handshake".into());
            }
            match hs.process_bytes(&buf[..n]).map_err(|e| format!("{e:?}"))? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    sock.write_all(&response_bytes).map_err(|e| e.to_string())?
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    sock.write_all(&response_bytes).map_err(|e| e.to_string())?;
                    break remaining_bytes;
                }
            }
        };
        let (mut session, initial) =
            ClientSession::new(ClientSessionConfig::new()).map_err(|e| format!("{e:?}"))?;
        let this_send = |sock: &mut TcpStream,
                         r: Vec<ClientSessionResult>|
         -> Result<Vec<ClientSessionEvent>, String> {
            let mut events = Vec::new();
            for r in r {
                match r {
                    ClientSessionResult::OutboundResponse(p) => {
                        sock.write_all(&p.bytes).map_err(|e| e.to_string())?
                    }
                    ClientSessionResult::RaisedEvent(e) => events.push(e),
                    _ => {}
                }
            }
            Ok(events)
        };
        this_send(&mut sock, initial)?;
        let r = session
            .request_connection(app.to_string())
            .map_err(|e| format!("{e:?}"))?;
        this_send(&mut sock, vec![r])?;
        let mut input = leftover;
        let mut published = false;
        let mut connected = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !published {
            if Instant::now() > deadline {
                return Err("no answer to publish".into());
            }
            if input.is_empty() {
                let n = sock.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("server closed the connection".into());
                }
                input.extend_from_slice(&buf[..n]);
            }
            let results = session.handle_input(&input).map_err(|e| format!("{e:?}"))?;
            input.clear();
            for ev in this_send(&mut sock, results)? {
                match ev {
                    ClientSessionEvent::ConnectionRequestAccepted if !connected => {
                        connected = true;
                        let r = session
                            .request_publishing(key.to_string(), PublishRequestType::Live)
                            .map_err(|e| format!("{e:?}"))?;
                        this_send(&mut sock, vec![r])?;
                    }
                    ClientSessionEvent::PublishRequestAccepted => published = true,
                    ClientSessionEvent::ConnectionRequestRejected { description } => {
                        return Err(format!("connect rejected: {description}"));
                    }
                    other => {
                        let text = format!("{other:?}");
                        if text.contains("BadName") || text.contains("error") {
                            return Err(text);
                        }
                    }
                }
            }
        }
        Ok(Self { sock, session })
    }

    pub fn video(&mut self, ts: u32, data: Vec<u8>) -> Result<(), String> {
        let r = self
            .session
            .publish_video_data(data.into(), rml_rtmp::time::RtmpTimestamp::new(ts), false)
            .map_err(|e| format!("{e:?}"))?;
        self.write(r)
    }

    pub fn audio(&mut self, ts: u32, data: Vec<u8>) -> Result<(), String> {
        let r = self
            .session
            .publish_audio_data(data.into(), rml_rtmp::time::RtmpTimestamp::new(ts), false)
            .map_err(|e| format!("{e:?}"))?;
        self.write(r)
    }

    fn write(&mut self, r: rml_rtmp::sessions::ClientSessionResult) -> Result<(), String> {
        if let rml_rtmp::sessions::ClientSessionResult::OutboundResponse(p) = r {
            self.sock.write_all(&p.bytes).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// A TCP proxy in front of a JSON-RPC node: records the method of every request that passes
/// and can be cut (refusing and dropping connections) to stage an outage.
pub struct RpcProxy {
    pub port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    methods: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl RpcProxy {
    pub fn start(upstream: u16) -> Self {
        use std::sync::atomic::Ordering;
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let methods = Arc::new(Mutex::new(Vec::new()));
        let (d, m) = (Arc::clone(&down), Arc::clone(&methods));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if d.load(Ordering::SeqCst) {
                    continue; // dropped: the caller sees the connection closed
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let pump = |mut from: TcpStream, mut to: TcpStream, record: bool| {
                    let (d, m) = (Arc::clone(&d), Arc::clone(&m));
                    std::thread::spawn(move || {
                        let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
                        let mut buf = [0u8; 16384];
                        let mut text = String::new();
                        loop {
                            if d.load(Ordering::SeqCst) {
                                break;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if record {
                                        text.push_str(&String::from_utf8_lossy(&buf[..n]));
                                        while let Some(i) = text.find("\"method\":\"") {
                                            let rest = &text[i + 10..];
                                            let Some(end) = rest.find('"') else { break };
                                            let name = rest[..end].to_string();
                                            text = rest[end..].to_string();
                                            m.lock().expect("methods").push(name);
                                        }
                                    }
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break,
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                };
                if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) {
                    pump(client, server, true);
                    pump(s2, c2, false);
                }
            }
        });
        Self {
            port,
            down,
            methods,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every JSON-RPC method seen so far, in order.
    pub fn methods(&self) -> Vec<String> {
        self.methods.lock().expect("methods").clone()
    }
}

/// A 640×360 push with a tone, whose top row shows the frame's time in milliseconds, bit k a
/// 16 px box.
pub struct ClockPush(Child);

impl ClockPush {
    pub fn start(url: &str) -> (Self, u64) {
        let boxes: Vec<String> = (0..20)
            .map(|k| {
                format!(
                    "drawbox=x={}:y=0:w=16:h=16:color=white:t=fill:enable='mod(floor(t*1000/{}),2)'",
                    k * 16,
                    1u64 << k
                )
            })
            .collect();
        let t0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // The clock is the time since `t0` at which ffmpeg's real-time source began: its
        // timestamps are shifted by the wall time from `t0` to its filters' start, so that
        // ffmpeg's own launch and RTMP connect (0.2 s here warm, 0.54 s with the page cache
        // dropped, more right after the image build) are not counted as latency. Audio is
        // shifted alike to stay in sync.
        let shift = format!("PTS-STARTPTS+(RTCSTART-{t0}000)/(TB*1000000)");
        let filter = format!(
            "setpts={shift},drawbox=x=0:y=0:w=320:h=16:color=black:t=fill,{}",
            boxes.join(",")
        );
        let audio_filter = format!("asetpts={shift}");
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", "60", "-vf", &filter])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args(["-pix_fmt", "yuv420p", "-g", "30"])
            .args(["-af", &audio_filter])
            .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg");
        (Self(child), t0)
    }
}

impl Drop for ClockPush {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The ONNX graphs `ai/tests/graphs.py` builds (known outputs, a ball detector), in a
/// directory of their own.
pub fn test_graphs() -> tempfile::TempDir {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(root.join("target/pyenv/bin/python"))
        .arg(root.join("ai/tests/graphs.py"))
        .arg(dir.path())
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// Runs a browser script of `web-ui/tests/` (headless Chromium, from `web-ui/` so its
/// packages resolve) with `env`, and returns the JSON line it printed; a failure panics with
/// its output and the node's log.
pub fn browser_script(script: &str, env: &[(&str, &str)], node: &NodeProc) -> Value {
    let ui = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web-ui");
    let out = Command::new("node")
        .arg(ui.join("tests").join(script))
        .envs(env.iter().copied())
        .current_dir(&ui)
        .output()
        .expect("node (Node.js)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}\nnode log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    stdout
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{script} printed no JSON result:\n{stdout}"))
}
