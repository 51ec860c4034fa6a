//! Operators and access: first-boot setup, sessions with CSRF, API tokens, roles enforced on
//! every route of the OpenAPI document, login throttling, and secrets stored only as hashes.

mod common;

use std::time::Duration;

use common::{ADMIN_PASSWORD, NodeProc, session_cookie};
use serde_json::{Value, json};

/// Every operation in the served OpenAPI document: (method, path, roles it requires).
fn operations(doc: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let roles = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|req| req.as_object().into_iter().flatten())
                .flat_map(|(_, scopes)| scopes.as_array().into_iter().flatten())
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect();
            ops.push((method.to_uppercase(), path.clone(), roles));
        }
    }
    ops
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "nosuchid")
        .replace("{name}", "nosuchuser")
}

fn token(node: &NodeProc, role: &str) -> String {
    let (status, v) = node.send(
        "POST",
        "/api/tokens",
        Some(&json!({"name": format!("{role} token"), "role": role}).to_string()),
    );
    assert_eq!(status, 201, "{v}");
    format!("Bearer {}", v["token"].as_str().expect("token"))
}

#[test]
fn every_route_in_the_openapi_document_enforces_its_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());
    let doc = node.call("GET", "/api/openapi.json", None, &[]);
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().unwrap_or("").starts_with("3."));
    let ops = operations(&doc.body);
    assert!(ops.len() >= 30, "only {} operations documented", ops.len());

    let viewer = token(&node, "viewer");
    let metrics = token(&node, "metrics");
    let public = [
        "/api/health",
        "/api/openapi.json",
        "/api/setup",
        "/api/auth/login",
        "/api/whip",
        "/api/whip/{session}",
    ];
    // Public routes with a credential of their own (WHIP: the stream key).
    let own_credential = ["/api/whip", "/api/whip/{session}"];
    for (method, path, roles) in &ops {
        let url = concrete(path);
        let body = (method != "GET" && method != "DELETE").then_some("{}");
        let anon = node.call(method, &url, body, &[]);
        if roles.is_empty() {
            assert!(
                public.contains(&path.as_str()),
                "{method} {path} is documented as public but is not on the public list"
            );
            if own_credential.contains(&path.as_str()) {
                // Its credential is a stream key or a session URL, not a sign-in: an admin's
                // token opens nothing there.
                let admin = node.call(
                    method,
                    &url,
                    body,
                    &[("authorization", &node.authorization())],
                );
                assert!(
                    matches!(admin.status, 401 | 404),
                    "{method} {path} with an API token: {}",
                    admin.status
                );
            } else {
                assert_ne!(anon.status, 401, "{method} {path} is public");
            }
            continue;
        }
        assert_eq!(anon.status, 401, "{method} {path} without credentials");
        assert_eq!(anon.body["error"]["code"], "unauthorized");
        assert!(anon.header("www-authenticate").is_some());

        let as_viewer = node.call(method, &url, body, &[("authorization", &viewer)]);
        if roles.iter().any(|r| r == "admin") {
            assert_eq!(as_viewer.status, 403, "{method} {path} as a viewer");
            assert_eq!(as_viewer.body["error"]["code"], "forbidden");
        } else {
            assert!(
                as_viewer.status != 401 && as_viewer.status != 403,
                "{method} {path} as a viewer: {}",
                as_viewer.status
            );
        }
        let as_metrics = node.call(method, &url, body, &[("authorization", &metrics)]);
        let expected = if roles.iter().all(|r| r == "metrics") {
            200
        } else {
            403
        };
        assert_eq!(
            as_metrics.status, expected,
            "{method} {path} with a metrics token"
        );
    }
    // A made-up token is nobody.
    let r = node.call(
        "GET",
        "/api/streams",
        None,
        &[("authorization", "Bearer lpe_not-a-token")],
    );
    assert_eq!(r.status, 401);
    // Unknown routes are 404 whoever asks; the HLS output stays public.
    assert_eq!(node.call("GET", "/api/nope", None, &[]).status, 404);
    assert_eq!(
        node.call("GET", "/hls/none/index.m3u8", None, &[]).status,
        404
    );
}

#[test]
fn first_boot_setup_sessions_csrf_users_and_throttling() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Start without the harness's setup so the first boot is walked by hand.
    let mut node = NodeProc::start_without_setup(dir.path());
    let status = node.call("GET", "/api/setup", None, &[]);
    assert_eq!(status.body["required"], true, "{}", status.body);
    assert_eq!(node.call("GET", "/api/streams", None, &[]).status, 401);
    let code = node.setup_code().expect("setup code printed");
    assert_eq!(code.len(), 11, "code '{code}'");

    let setup = |code: &str, password: &str, role: &str| {
        json!({"code": code, "password": password, "device_name": "Main hall", "role": role})
            .to_string()
    };
    let r = node.call(
        "POST",
        "/api/setup",
        Some(&setup("AAAAA-AAAAA", ADMIN_PASSWORD, "off")),
        &[],
    );
    assert_eq!(r.status, 401, "wrong code: {}", r.body);
    let r = node.call(
        "POST",
        "/api/setup",
        Some(&setup(&code, "short", "off")),
        &[],
    );
    assert_eq!(
        (r.status, r.body["error"]["field"].clone()),
        (422, json!("password"))
    );
    let r = node.call(
        "POST",
        "/api/setup",
        Some(&setup(&code, ADMIN_PASSWORD, "miner")),
        &[],
    );
    assert_eq!(
        (r.status, r.body["error"]["field"].clone()),
        (422, json!("role"))
    );
    let r = node.call(
        "POST",
        "/api/setup",
        Some(&setup(&code.to_lowercase(), ADMIN_PASSWORD, "orchestrator")),
        &[],
    );
    assert_eq!(r.status, 200, "setup: {}", r.body);
    let set_cookie = r.header("set-cookie").expect("cookie").to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    assert_eq!(
        r.body["device"],
        json!({"name": "Main hall", "role": "orchestrator"})
    );
    let again = node.call(
        "POST",
        "/api/setup",
        Some(&setup(&code, ADMIN_PASSWORD, "off")),
        &[],
    );
    assert_eq!(again.status, 409, "the code is one-time");

    // Cookie session: reads work; unsafe methods need the CSRF token.
    let cookie = session_cookie(&r).expect("session");
    let csrf = r.body["csrf_token"].as_str().expect("csrf").to_string();
    let stream = json!({"name": "pattern", "source": {"kind": "test"}, "enabled": false});
    assert_eq!(
        node.call("GET", "/api/streams", None, &[("cookie", &cookie)])
            .status,
        200
    );
    let no_csrf = node.call(
        "POST",
        "/api/streams",
        Some(&stream.to_string()),
        &[("cookie", &cookie)],
    );
    assert_eq!(
        (no_csrf.status, no_csrf.body["error"]["code"].clone()),
        (403, json!("csrf"))
    );
    let bad_csrf = node.call(
        "POST",
        "/api/streams",
        Some(&stream.to_string()),
        &[("cookie", &cookie), ("x-csrf-token", "forged")],
    );
    assert_eq!(bad_csrf.status, 403);
    let ok = node.call(
        "POST",
        "/api/streams",
        Some(&stream.to_string()),
        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
    let admin_session = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];

    // A viewer can look but not touch.
    let r = node.call(
        "POST",
        "/api/users",
        Some(r#"{"name":"op","password":"viewer password","role":"viewer"}"#),
        &admin_session,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let dup = node.call(
        "POST",
        "/api/users",
        Some(r#"{"name":"op","password":"viewer password","role":"viewer"}"#),
        &admin_session,
    );
    assert_eq!(dup.status, 409);
    let login = node.call(
        "POST",
        "/api/auth/login",
        Some(r#"{"username":"op","password":"viewer password"}"#),
        &[],
    );
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.body["role"], "viewer");
    let op_cookie = session_cookie(&login).expect("cookie");
    let op_csrf = login.body["csrf_token"].as_str().expect("csrf").to_string();
    assert_eq!(
        node.call("GET", "/api/streams", None, &[("cookie", &op_cookie)])
            .status,
        200
    );
    let denied = node.call(
        "POST",
        "/api/streams",
        Some(&stream.to_string()),
        &[("cookie", &op_cookie), ("x-csrf-token", &op_csrf)],
    );
    assert_eq!(denied.status, 403);
    // The last admin cannot be removed.
    let r = node.call("DELETE", "/api/users/admin", None, &admin_session);
    assert_eq!(r.status, 409, "{}", r.body);

    // Logout ends the session.
    let out = node.call(
        "POST",
        "/api/auth/logout",
        None,
        &[("cookie", &op_cookie), ("x-csrf-token", &op_csrf)],
    );
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap_or("").contains("Max-Age=0"));
    assert_eq!(
        node.call("GET", "/api/streams", None, &[("cookie", &op_cookie)])
            .status,
        401
    );

    // Secrets at rest are hashes only; nothing secret reached the log.
    let tok = node.call(
        "POST",
        "/api/tokens",
        Some(r#"{"name":"fleet","role":"admin"}"#),
        &admin_session,
    );
    let secret = tok.body["token"].as_str().expect("token").to_string();
    let listed = node.call("GET", "/api/tokens", None, &admin_session);
    assert!(!listed.body.to_string().contains(&secret));
    node.terminate();
    let db = rusqlite_dump(&dir.path().join("node.db"));
    assert!(db.contains("$argon2id$"), "passwords are argon2id");
    // (The CSRF token is stored to compare against; it is not a credential.)
    for s in [
        ADMIN_PASSWORD,
        "viewer password",
        &secret,
        &code,
        &cookie[12..],
    ] {
        assert!(!db.contains(s), "a secret is stored in clear");
    }
    let log = std::fs::read_to_string(dir.path().join("node.log")).expect("log");
    for s in [ADMIN_PASSWORD, "viewer password", &secret, &cookie[12..]] {
        assert!(!log.contains(s), "a secret reached the log");
    }

    // After setup, a restart prints no new code and setup stays closed.
    let node = NodeProc::start_without_setup(dir.path());
    assert_eq!(
        node.call("GET", "/api/setup", None, &[]).body["required"],
        false
    );
    assert_eq!(node.log().matches("setup code").count(), 1);

    // Throttling: five failures lock the user name for the address they came from.
    for _ in 0..5 {
        let r = node.call(
            "POST",
            "/api/auth/login",
            Some(&json!({"username": "admin", "password": "guess"}).to_string()),
            &[],
        );
        assert_eq!(r.status, 401);
    }
    let blocked = node.call(
        "POST",
        "/api/auth/login",
        Some(&json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string()),
        &[],
    );
    assert_eq!(blocked.status, 429, "{}", blocked.body);
    let wait: u64 = blocked
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(wait > 0 && wait <= 300);
    // Nobody can lock another user out: the right password from another address gets in
    // (after the slow-down for a name under attack).
    let login = format!(r#"{{"username":"admin","password":"{ADMIN_PASSWORD}"}}"#);
    let started = std::time::Instant::now();
    let (status, text) = curl_k(&[
        "--interface",
        "127.0.0.2",
        "-H",
        "content-type: application/json",
        "-d",
        &login,
        &node.url("/api/auth/login"),
    ]);
    assert_eq!(status, 200, "{text}");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "no slow-down"
    );
    // Other names from the first address still work, until the address has made 20
    // attempts in all.
    let other_user = node.call(
        "POST",
        "/api/auth/login",
        Some(r#"{"username":"op","password":"viewer password"}"#),
        &[],
    );
    assert_eq!(other_user.status, 200, "{}", other_user.body);
    let mut statuses = Vec::new();
    for i in 0..16 {
        let r = node.call(
            "POST",
            "/api/auth/login",
            Some(&json!({"username": format!("nobody{i}"), "password": "guess"}).to_string()),
            &[],
        );
        statuses.push(r.status);
    }
    // Earlier failures of this test from the same address count too.
    let failed = statuses.iter().take_while(|s| **s == 401).count();
    assert!((1..=15).contains(&failed), "{statuses:?}");
    assert!(statuses[failed..].iter().all(|s| *s == 429), "{statuses:?}");
}

/// Every value in the database as text, for searching.
fn rusqlite_dump(path: &std::path::Path) -> String {
    use rusqlite::types::ValueRef;
    let db = rusqlite::Connection::open(path).expect("database");
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .expect("tables");
    let mut dump = String::new();
    for table in tables {
        let mut st = db
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .expect("select");
        let columns = st.column_count();
        let mut rows = st.query([]).expect("rows");
        while let Some(row) = rows.next().expect("row") {
            for i in 0..columns {
                match row.get_ref(i).expect("value") {
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        dump.push_str(&String::from_utf8_lossy(t))
                    }
                    ValueRef::Integer(n) => dump.push_str(&n.to_string()),
                    ValueRef::Real(x) => dump.push_str(&x.to_string()),
                    ValueRef::Null => {}
                }
                dump.push('\n');
            }
        }
    }
    dump
}

#[test]
fn metrics_and_device_health_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());
    let s = node.create(json!({"name": "bars", "source": {"kind": "test"}}));
    let id = s["id"].as_str().expect("id").to_string();
    node.wait_state(&id, "running", std::time::Duration::from_secs(20));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let metrics = token(&node, "metrics");
    let r = node.call("GET", "/metrics", None, &[("authorization", &metrics)]);
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain")
    );
    let text = r.body.as_str().expect("text").to_string();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no '{prefix}' in\n{text}"))
    };
    assert_eq!(
        value(&format!("lpe_stream_up{{stream=\"{id}\",name=\"bars\"}}")),
        1.0
    );
    assert!(value(&format!("lpe_stream_input_fps{{stream=\"{id}\"}}")) > 0.0);
    assert!(text.contains(&format!(
        "lpe_stream_encoder_info{{stream=\"{id}\",encoder=\"x264enc\""
    )));
    assert!(
        value("lpe_http_requests_total{method=\"GET\",route=\"/api/streams/{id}\",status=\"200\"}")
            >= 1.0
    );
    assert_eq!(value("lpe_tickets_won_total"), 0.0);
    assert_eq!(value("lpe_mqtt_connected"), 0.0);
    // Every sample line parses as `name{labels} value`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let v = line.rsplit(' ').next().expect("value");
        assert!(v.parse::<f64>().is_ok(), "bad sample line: {line}");
    }

    // Device health: sampled every 5 s; no GPU on this machine is said so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let device = loop {
        let (status, d) = node.get("/api/device");
        assert_eq!(status, 200);
        if !d["stats"].is_null() {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "no device sample");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(device["identity"]["name"], "test box");
    assert_eq!(device["stats"]["gpu"]["source"], "not_present");
    assert!(device["stats"]["memory_total_bytes"].as_u64().unwrap_or(0) > 0);
    assert!(device["stats"]["disk"]["total_bytes"].as_u64().unwrap_or(0) > 0);
    let (_, history) = node.get("/api/device/history");
    assert!(!history.as_array().expect("points").is_empty());
    assert!(
        text.contains("lpe_device_cpu_percent")
            || node
                .get("/metrics")
                .1
                .as_str()
                .unwrap_or("")
                .contains("lpe_device_cpu_percent")
    );
}

#[test]
fn schemathesis_finds_no_server_error_in_the_documented_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());
    let (_, auth) = node.admin_auth();
    let out = std::process::Command::new("schemathesis")
        .args(["run", &node.url("/api/openapi.json")])
        .args(["--header", &format!("Authorization: {auth}")])
        .args(["--checks", "not_a_server_error", "--max-examples", "20"])
        // Endless event streams are no request/response pairs to fuzz.
        .args(["--exclude-path", "/api/events/stream"])
        .args(["--exclude-path", "/api/streams/{id}/objects"])
        // Camera discovery and queries send traffic to the LAN or to any address they are
        // given; tests stay off real networks (tests/onvif.rs covers them in a namespace).
        .args(["--exclude-path", "/api/onvif/discover"])
        .args(["--exclude-path", "/api/onvif/camera"])
        // A factory reset erases the node under test (tests/image_vm.rs resets the image).
        .args(["--exclude-path", "/api/system/factory-reset"])
        .env("NO_COLOR", "1")
        // SDP bodies (WebRTC offers) are text.
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", concat!(env!("CARGO_MANIFEST_DIR"), "/tests"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // Its cache goes to the test's own directory, not the source tree.
        .current_dir(dir.path())
        .output()
        .expect("schemathesis (scripts/deps.sh installs it into target/pyenv)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("Tested: "), "{report}");
    assert!(node.healthy(), "the node survived the fuzzing");
}

/// `curl -k` against the node; (status, headers + body).
fn curl_k(args: &[&str]) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-sk", "-i", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_https(dir: &std::path::Path, port: u16) -> Killed {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))
        .expect("log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_livepeer-edge"))
        .args(["run", "--data-dir"])
        .arg(dir)
        .args(["--http-listen", &format!("127.0.0.1:{port}")])
        .args([
            "--rtmp-listen",
            &format!("127.0.0.1:{}", common::free_port()),
        ])
        .env("LPE_HTTP_TLS", "true")
        .env("LPE_MEDIA_DEMO_STREAM", "false")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start");
    let node = Killed(child);
    let url = format!("https://127.0.0.1:{port}/api/health");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while curl_k(&[&url]).0 != 200 {
        assert!(std::time::Instant::now() < deadline, "HTTPS never came up");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    node
}

#[test]
fn https_with_a_certificate_made_on_first_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    // A data directory someone made readable for all is closed up at start.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let port = common::free_port();
    let node = start_https(dir.path(), port);
    let base = format!("https://127.0.0.1:{port}");
    let cert = dir.path().join("tls/cert.pem");
    let key = dir.path().join("tls/key.pem");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(
        mode(&key),
        0o600,
        "the private key is for the node's eyes only"
    );
    assert_eq!(mode(dir.path()), 0o700, "the data directory is private");
    for f in ["node.db", "node.db-wal", "node.db-shm"] {
        assert_eq!(mode(&dir.path().join(f)), 0o600, "{f} is private");
    }
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("DNS:localhost") && text.contains("IP Address:127.0.0.1"),
        "{text}"
    );

    // Plain HTTP on the HTTPS port is not served.
    assert_eq!(
        curl_k(&[&format!("http://127.0.0.1:{port}/api/health")]).0,
        0
    );
    // A client that connects and says nothing delays no one.
    let _stalled = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let t0 = std::time::Instant::now();
    assert_eq!(curl_k(&[&format!("{base}/api/health")]).0, 200);
    assert!(t0.elapsed() < std::time::Duration::from_secs(2));

    // The session cookie is Secure under TLS.
    let log = std::fs::read_to_string(dir.path().join("node.log")).expect("log");
    let code: String = log[log.rfind("setup code ").expect("code") + 11..]
        .chars()
        .take(11)
        .collect();
    let body =
        json!({"code": code, "password": ADMIN_PASSWORD, "device_name": "tls box", "role": "off"});
    let (status, reply) = curl_k(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        &body.to_string(),
        &format!("{base}/api/setup"),
    ]);
    assert_eq!(status, 200, "{reply}");
    let cookie_line = reply
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("cookie");
    assert!(cookie_line.contains("; Secure"), "{cookie_line}");

    // A restart keeps the certificate.
    let before = std::fs::read(&cert).expect("cert");
    drop(node);
    let _node = start_https(dir.path(), port);
    assert_eq!(std::fs::read(&cert).expect("cert"), before);
}

#[test]
fn tokens_die_with_their_user_and_password_changes_need_the_current_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());
    let (k, v) = node.admin_auth();
    let admin = [(k, v)];
    let r = node.call(
        "POST",
        "/api/users",
        Some(r#"{"name":"second","password":"second admin pw","role":"admin"}"#),
        &admin,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // The second admin signs in and makes a token.
    let login = node.call(
        "POST",
        "/api/auth/login",
        Some(r#"{"username":"second","password":"second admin pw"}"#),
        &[],
    );
    assert_eq!(login.status, 200);
    let cookie = session_cookie(&login).expect("cookie");
    let csrf = login.body["csrf_token"].as_str().expect("csrf").to_string();
    let as_second = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let t = node.call(
        "POST",
        "/api/tokens",
        Some(r#"{"name":"script","role":"admin"}"#),
        &as_second,
    );
    assert_eq!(t.status, 201, "{}", t.body);
    assert_eq!(t.body["owner"], "second");
    let bearer = format!("Bearer {}", t.body["token"].as_str().expect("token"));
    let by_token = [("authorization", bearer.as_str())];
    assert_eq!(node.call("GET", "/api/users", None, &by_token).status, 200);

    // Changing one's password needs the current one.
    let change = |current: &str, revoke: bool| {
        node.call(
            "PUT",
            "/api/auth/password",
            Some(
                &json!({"current_password": current, "password": "a new password", "revoke_tokens": revoke})
                    .to_string(),
            ),
            &as_second,
        )
        .status
    };
    assert_eq!(change("not it", false), 401);
    let missing = node.call(
        "PUT",
        "/api/auth/password",
        Some(r#"{"password":"a new password"}"#),
        &as_second,
    );
    assert_eq!(missing.status, 422, "{}", missing.body);
    assert_eq!(node.call("GET", "/api/users", None, &by_token).status, 200);

    // Removing the user ends the token: it cannot make a new admin.
    let r = node.call("DELETE", "/api/users/second", None, &admin);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(node.call("GET", "/api/users", None, &by_token).status, 401);
    let r = node.call(
        "POST",
        "/api/users",
        Some(r#"{"name":"mallory","password":"mallory password","role":"admin"}"#),
        &by_token,
    );
    assert_eq!(r.status, 401);
}

#[test]
fn a_burst_of_wrong_passwords_is_bounded_in_cpu_and_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());
    let pid = node.pid();
    let before = common::proc_status_kb(pid, "VmRSS");
    // 100 concurrent wrong logins, each for a different name from a different address: the
    // throttle lets them all through, so only the bound on concurrent hashing holds them.
    let url = node.url("/api/auth/login");
    let workers: Vec<_> = (0..100)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body = format!(r#"{{"username":"u{i}","password":"wrong password"}}"#);
                let out = std::process::Command::new("curl")
                    .args([
                        "-s",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                        "--max-time",
                        "20",
                    ])
                    .args([
                        "--interface",
                        &format!("127.0.{}.{}", 1 + i / 200, 2 + i % 200),
                    ])
                    .args(["-H", "content-type: application/json", "-d", &body, &url])
                    .output()
                    .expect("curl");
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
        })
        .collect();
    let codes: Vec<String> = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();
    let busy = codes.iter().filter(|c| *c == "503").count();
    let refused = codes.iter().filter(|c| *c == "401").count();
    assert_eq!(busy + refused, 100, "{codes:?}");
    assert!(busy > 50, "hashing was not bounded: {codes:?}");
    std::thread::sleep(Duration::from_secs(1));
    let after = common::proc_status_kb(pid, "VmRSS");
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} kB to {after} kB"
    );
    assert!(node.healthy());
}

#[test]
fn a_factory_reset_erases_the_node_but_keeps_its_keystore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());
    let auth = node.authorization();
    node.create(
        json!({"name": "gone after the reset", "source": {"kind": "rtmp"}, "enabled": false}),
    );
    // A keystore as the wallet keeps it.
    let key = dir.path().join("keystore/UTC--2026-11-27T00-00-00Z--0000");
    std::fs::create_dir_all(key.parent().expect("dir")).expect("keystore");
    std::fs::write(&key, "{}").expect("key");

    let viewer_only = node.call(
        "POST",
        "/api/system/factory-reset",
        Some("{}"),
        &[("authorization", &token(&node, "viewer"))],
    );
    assert_eq!(viewer_only.status, 403);
    let r = node.call(
        "POST",
        "/api/system/factory-reset",
        Some(r#"{"keep_keys": true}"#),
        &[("authorization", &auth)],
    );
    assert_eq!(r.status, 202, "{}", r.body);

    // The node restarts itself, erased: first-boot setup again, the old token refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let setup = ureq::get(node.url("/api/setup"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<Value>().ok());
        if setup.is_some_and(|v| v["required"] == true) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node never came back erased: {}",
            node.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let old = node.call("GET", "/api/streams", None, &[("authorization", &auth)]);
    assert_eq!(old.status, 401, "{}", old.body);
    assert!(key.exists(), "the keystore was erased");
    assert!(!dir.path().join("factory-reset").exists());
}
