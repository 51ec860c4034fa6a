//! ONVIF discovery against a camera of our own (tests/onvif_responder.py) inside a network
//! namespace the test creates, joined to the host by a veth pair: the node's probe goes out
//! on the veth only, the camera answers, and its profiles are read with a UsernameToken.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{NodeProc, kill_group};
use serde_json::json;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace with the camera in it, and the veth pair to the host; removed on drop.
struct CameraLan {
    netns: String,
    host_if: String,
    camera: String,
    responder: Option<Child>,
}

impl CameraLan {
    fn start(user: &str, password: &str) -> Self {
        // Unique per process and per test: the tests of this file run at once.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 60;
        let pid = std::process::id() % 100_000;
        let netns = format!("lpe-onvif-{pid}-{i}");
        let host_if = format!("lpeo{pid}{i}h");
        let peer_if = format!("lpeo{pid}{i}c");
        let subnet = pid % 250;
        let host = format!("10.213.{subnet}.{}", i * 4 + 1);
        let camera = format!("10.213.{subnet}.{}", i * 4 + 2);
        let mut lan = Self {
            netns: netns.clone(),
            host_if: host_if.clone(),
            camera: camera.clone(),
            responder: None,
        };
        ip(&["netns", "add", &netns]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
        ]);
        ip(&["link", "set", &peer_if, "netns", &netns]);
        ip(&["addr", "add", &format!("{host}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{camera}/30"),
            "dev",
            &peer_if,
        ]);
        ip(&["-n", &netns, "link", "set", &peer_if, "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/onvif_responder.py");
        let mut child = {
            use std::os::unix::process::CommandExt;
            Command::new("ip")
                .args([
                    "netns", "exec", &netns, "python3", script, &camera, "8080", user, password,
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .process_group(0)
                .spawn()
                .expect("responder")
        };
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        lan.responder = Some(child);
        assert_eq!(line.trim(), "ready", "the camera did not start");
        lan
    }
}

impl Drop for CameraLan {
    fn drop(&mut self) {
        if let Some(mut c) = self.responder.take() {
            kill_group(&mut c);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

#[test]
fn a_camera_on_the_chosen_lan_is_found_and_its_rtsp_urls_read() {
    let lan = CameraLan::start("operator", "s3cret&<pass>");
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());

    let (status, list) = node.get("/api/onvif/interfaces");
    assert_eq!(status, 200, "{list}");
    let ours = list
        .as_array()
        .and_then(|l| l.iter().find(|i| i["name"] == lan.host_if.as_str()))
        .unwrap_or_else(|| panic!("{} not listed: {list}", lan.host_if));
    // The host's end of the pair is the address just below the camera's.
    let camera: std::net::Ipv4Addr = lan.camera.parse().expect("ip");
    let host = std::net::Ipv4Addr::from(u32::from(camera) - 1);
    assert_eq!(ours["ipv4"], json!([host.to_string()]), "{list}");

    let asked = Instant::now();
    let (status, found) = node.send(
        "POST",
        "/api/onvif/discover",
        Some(&json!({"interface": lan.host_if, "timeout_ms": 1500}).to_string()),
    );
    assert_eq!(status, 200, "{found}");
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
    let devices = found["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1, "{found}");
    let d = &devices[0];
    assert_eq!(
        d["endpoint"],
        "urn:uuid:5a1e0000-0000-4000-a000-00000000c0de"
    );
    assert_eq!(d["address"], lan.camera.as_str());
    assert_eq!(d["name"], "Stage Left");
    assert_eq!(d["hardware"], "TestCam-2");
    assert_eq!(d["location"], "hall");
    let xaddr = d["xaddrs"][0].as_str().expect("xaddr").to_string();
    assert_eq!(
        xaddr,
        format!("http://{}:8080/onvif/device_service", lan.camera)
    );

    // Wrong credentials: the camera's refusal, on the password field.
    let (status, err) = node.send(
        "POST",
        "/api/onvif/camera",
        Some(&json!({"xaddr": xaddr, "username": "operator", "password": "guess"}).to_string()),
    );
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["field"], "password", "{err}");

    let (status, cam) = node.send(
        "POST",
        "/api/onvif/camera",
        Some(
            &json!({"xaddr": xaddr, "username": "operator", "password": "s3cret&<pass>"})
                .to_string(),
        ),
    );
    assert_eq!(status, 200, "{cam}");
    assert_eq!(cam["info"]["manufacturer"], "Test & Co");
    assert_eq!(cam["info"]["model"], "TestCam-2");
    let profiles = cam["profiles"].as_array().expect("profiles");
    assert_eq!(profiles.len(), 2, "{cam}");
    let main = &profiles[0];
    assert_eq!(main["token"], "main");
    assert_eq!(main["name"], "mainStream");
    assert_eq!(main["encoding"], "H264");
    assert_eq!(
        (main["width"].as_u64(), main["height"].as_u64()),
        (Some(1920), Some(1080))
    );
    assert_eq!(main["fps"], 25);
    // The media service the camera named by another address was asked where the camera
    // answered; the URL it gave comes without the credentials it carried.
    assert_eq!(
        main["rtsp_url"],
        format!("rtsp://{}:554/Streaming/101", lan.camera),
        "{cam}"
    );
    assert_eq!(
        profiles[1]["rtsp_url"],
        format!("rtsp://{}:554/Streaming/102", lan.camera)
    );
    assert!(!cam.to_string().contains("leak"), "{cam}");

    // The stream the UI makes of it keeps the credentials in its own fields.
    let s = node.create(json!({
        "name": "stage left",
        "source": {"kind": "rtsp", "url": main["rtsp_url"], "username": "operator", "password": "s3cret&<pass>"},
        "enabled": false,
    }));
    assert_eq!(s["source"]["has_password"], true, "{s}");
    assert!(!s.to_string().contains("s3cret"), "{s}");

    // Refusals: no such interface, a bad address, a bad listening time; nothing reached.
    for (body, field) in [
        (json!({"interface": "nosuch0"}), "interface"),
        (
            json!({"interface": lan.host_if, "timeout_ms": 60000}),
            "timeout_ms",
        ),
    ] {
        let (status, err) = node.send("POST", "/api/onvif/discover", Some(&body.to_string()));
        assert_eq!(
            (status, err["error"]["field"].as_str()),
            (422, Some(field)),
            "{err}"
        );
    }
    for xaddr in [
        "file:///etc/passwd",
        "https://x/",
        "http://user:pw@10.0.0.1/",
    ] {
        let (status, err) = node.send(
            "POST",
            "/api/onvif/camera",
            Some(&json!({"xaddr": xaddr}).to_string()),
        );
        assert_eq!(
            (status, err["error"]["field"].as_str()),
            (422, Some("xaddr")),
            "{err}"
        );
    }
    // A camera that is not there: a gateway error within the HTTP timeout.
    let asked = Instant::now();
    let (status, err) = node.send(
        "POST",
        "/api/onvif/camera",
        Some(
            &json!({"xaddr": format!("http://{}:8081/onvif/device_service", lan.camera)})
                .to_string(),
        ),
    );
    assert_eq!(status, 502, "{err}");
    assert!(asked.elapsed() < Duration::from_secs(7));
    assert!(node.healthy());
}

/// The same camera found from the stream editor in the browser, credentials typed once.
#[test]
fn the_stream_editor_finds_the_camera_and_keeps_its_credentials() {
    let lan = CameraLan::start("viewer1", "ui-pass-42");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let ui = root.join("web-ui/dist");
    let node = NodeProc::start_with(
        dir.path(),
        &[("LPE_HTTP_UI_DIR", ui.to_str().expect("utf-8"))],
    );
    let (base, iface) = (node.url(""), lan.host_if.clone());
    let filled = common::browser_script(
        "onvif.mjs",
        &[
            ("BASE_URL", &base),
            ("PASSWORD", common::ADMIN_PASSWORD),
            ("IFACE", &iface),
            ("CAMERA_USER", "viewer1"),
            ("CAMERA_PASSWORD", "ui-pass-42"),
        ],
        &node,
    );
    let url = format!("rtsp://{}:554/Streaming/102", lan.camera);
    assert_eq!(filled["url"], url.as_str(), "{filled}");
    assert_eq!(filled["name"], "TestCam-2 subStream", "{filled}");
    let (_, streams) = node.get("/api/streams");
    let s = streams
        .as_array()
        .and_then(|l| l.iter().find(|s| s["source"]["url"] == url.as_str()))
        .unwrap_or_else(|| panic!("no stream with {url}: {streams}"));
    assert_eq!(s["source"]["username"], "viewer1");
    assert_eq!(s["source"]["has_password"], true);
}
