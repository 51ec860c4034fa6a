//! The development image, booted: `image/build.sh` builds it (the dev-profile node, the Debian
//! tree from its cache), QEMU boots it under software emulation on a copy-on-write overlay,
//! and the node is reached through a forwarded loopback port, as a venue's installer would:
//! the setup code read off the serial console, first-boot setup over HTTP.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::mqtt::{Broker, Observer};
use common::{free_port, kill_group, succeeded};

/// Firmware → GRUB → kernel → the node listening, under TCG on two cores (about 35 s here).
const BOOT: Duration = Duration::from_secs(300);

/// The box's disk: larger than the image (5.1 GiB), as the medium it is flashed to is, so
/// the data partition grows into the rest at the first boot.
const MEDIUM_GIB: u64 = 16;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// Builds the image once per test binary (a rebuild after a node change takes seconds).
fn image() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let started = Instant::now();
            let out = Command::new(repo().join("image/build.sh"))
                .env("IMAGE_PROFILE", "dev")
                .stdin(Stdio::null())
                .output()
                .expect("image/build.sh");
            let out = succeeded(out, "image/build.sh");
            eprintln!("image built: {:.0} s", started.elapsed().as_secs_f64());
            let disk = String::from_utf8_lossy(&out.stdout).trim().to_string();
            repo().join(disk)
        })
        .clone()
}

/// One box running the image: QEMU in its own process group, killed with everything it
/// started when dropped. Its disk (an overlay) and firmware variables live in `_dir` across
/// power cycles.
struct Vm {
    qemu: Child,
    http: u16,
    rtmp: u16,
    /// The node's Livepeer network port (8935 in the guest).
    net: u16,
    disk: PathBuf,
    /// `VM_GUESTFWD` for run-vm.sh.
    forwards: String,
    console: PathBuf,
    _dir: tempfile::TempDir,
}

impl Vm {
    fn boot(disk: &Path) -> Self {
        Self::boot_with(disk, &[])
    }

    /// Boots with `forwards`: (guest port, host port) pairs the guest reaches at
    /// 10.0.2.100, services on the host's loopback.
    fn boot_with(disk: &Path, forwards: &[(u16, u16)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let forwards = forwards
            .iter()
            .map(|(guest, host)| format!("{guest}={host}"))
            .collect::<Vec<_>>()
            .join(" ");
        let (http, rtmp, net) = (free_port(), free_port(), free_port());
        let console = dir.path().join("console.log");
        Self {
            qemu: start_qemu(dir.path(), disk, [http, rtmp, net], &forwards, &console),
            http,
            rtmp,
            net,
            disk: disk.to_path_buf(),
            forwards,
            console,
            _dir: dir,
        }
    }

    /// A power cut: QEMU is killed, every device with it, and started again on the same disk
    /// and firmware variables. What the guest had not flushed is lost as on a box whose
    /// power goes; nothing of the old machine's state (CPUs, devices, timers) carries over.
    fn power_cycle(&mut self) {
        kill_group(&mut self.qemu);
        self.qemu = start_qemu(
            self._dir.path(),
            &self.disk,
            [self.http, self.rtmp, self.net],
            &self.forwards,
            &self.console,
        );
    }

    /// Boots the box again once the guest reset it. QEMU runs with `-action reboot=shutdown`:
    /// a reset, the guest's own or the watchdog's, ends it, and a new QEMU boots the same disk
    /// and firmware variables, as the box's own reset would. Under TCG a reset inside one
    /// QEMU has hung before the firmware or the kernel printed anything (twice in a few dozen
    /// resets); a fresh QEMU never has. Any other end of QEMU fails the test, with its words.
    fn revive(&mut self) {
        match self.qemu.try_wait() {
            Ok(Some(status)) if status.success() => self.power_cycle(),
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = self.qemu.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("QEMU ended ({status}): {err}\n{}", tail(&self.console()));
            }
            _ => {}
        }
    }

    fn console(&self) -> String {
        std::fs::read(&self.console)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    /// Waits for `/api/health` to answer 200; on a timeout, QEMU's end or the console's tail
    /// says why.
    fn wait_healthy(&mut self) -> (Duration, serde_json::Value) {
        let started = Instant::now();
        let agent = agent();
        loop {
            if let Ok(mut r) = agent.get(self.url("/api/health")).call()
                && r.status() == 200
                && let Ok(v) = r.body_mut().read_json::<serde_json::Value>()
            {
                return (started.elapsed(), v);
            }
            self.revive();
            assert!(
                started.elapsed() < BOOT,
                "the node was not healthy after {} s; the console:\n{}\n{}",
                BOOT.as_secs(),
                tail(&self.console()),
                self.esp_report()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The ESP as the disk holds it now, for a boot that stops before the node answers
    /// (GRUB reads its menu and environment from there): fsck.fat's verdict, read-only, and
    /// the environment block's text. The ESP is where image/build.sh puts it: 64 MiB from 1 MiB.
    fn esp_report(&self) -> String {
        let esp = self._dir.path().join("esp.raw");
        let overlay = self._dir.path().join("overlay.qcow2");
        let copy = Command::new("qemu-img")
            .args([
                "dd",
                "-U",
                "-f",
                "qcow2",
                "-O",
                "raw",
                "bs=512",
                "skip=2048",
            ])
            // qemu-img dd's count includes the skipped blocks.
            .args(["count=133120", &format!("if={}", overlay.display())])
            .arg(format!("of={}", esp.display()))
            .output();
        if !matches!(&copy, Ok(o) if o.status.success()) {
            return format!("the ESP could not be read: {copy:?}");
        }
        let fsck = Command::new("fsck.fat").arg("-n").arg(&esp).output();
        let grubenv = Command::new("mtype")
            .args(["-i", &esp.display().to_string(), "::/EFI/BOOT/grubenv"])
            .output();
        let text = |o: std::io::Result<std::process::Output>| match o {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout).trim_end_matches('#'),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => e.to_string(),
        };
        format!(
            "the ESP: fsck.fat -n:\n{}\ngrubenv:\n{}",
            text(fsck),
            text(grubenv)
        )
    }

    /// The setup code the console shows (the node's warning, forwarded by journald).
    fn setup_code(&self) -> Option<String> {
        let console = self.console();
        let i = console.rfind("setup code ")?;
        Some(console[i + 11..].chars().take(11).collect())
    }
}

/// QEMU through run-vm.sh on `disk` with its state in `state` (overlay, firmware variables,
/// sockets), the node's HTTP, RTMP and network ports forwarded from `ports`, the console
/// appended to `console` (one file across the box's boots), a reset ending QEMU (see
/// `Vm::revive`).
fn start_qemu(state: &Path, disk: &Path, ports: [u16; 3], forwards: &str, console: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    let [http, rtmp, net] = ports;
    Command::new(repo().join("image/run-vm.sh"))
        .env("VM_STATE", state)
        .env("IMAGE_DISK", disk)
        .env("HTTP_PORT", http.to_string())
        .env("RTMP_PORT", rtmp.to_string())
        .env("NET_PORT", net.to_string())
        .env("VM_GUESTFWD", forwards)
        .env("VM_DISK_SIZE", format!("{MEDIUM_GIB}G"))
        .args([
            "-chardev",
            &format!("file,id=console,append=on,path={}", console.display()),
        ])
        .args(["-serial", "chardev:console", "-monitor", "none"])
        .args(["-action", "reboot=shutdown"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("qemu")
}

impl Drop for Vm {
    fn drop(&mut self) {
        kill_group(&mut self.qemu);
    }
}

/// A client patient enough for emulation: argon2id over a code and a password takes seconds
/// per hash under TCG.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(90)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Sends `body` with the request `what` names; the answer's JSON, which must be a success.
fn send_json(
    request: ureq::RequestBuilder<ureq::typestate::WithBody>,
    auth: &str,
    what: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let mut r = request
        .header("authorization", auth)
        .send_json(body)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = r.status();
    let v: serde_json::Value = r.body_mut().read_json().unwrap_or_default();
    assert!(status.is_success(), "{what}: {status} {v}");
    v
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A JSON-lines QEMU socket: the monitor (QMP) or the guest agent.
struct QemuSocket {
    stream: std::io::BufReader<std::os::unix::net::UnixStream>,
}

impl QemuSocket {
    /// Connects once QEMU made the socket.
    fn connect(path: &Path) -> Self {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{}: {e}", path.display());
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        Self {
            stream: std::io::BufReader::new(stream),
        }
    }

    fn send(&mut self, message: &serde_json::Value) {
        use std::io::Write;
        let mut line = message.to_string();
        line.push('\n');
        self.stream
            .get_mut()
            .write_all(line.as_bytes())
            .expect("write to QEMU");
    }

    /// The next reply (`return` or `error`), skipping the monitor's events; none on a quiet
    /// socket.
    fn reply(&mut self) -> Option<serde_json::Value> {
        use std::io::BufRead;
        loop {
            let mut line = Vec::new();
            match self.stream.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            // Anything that is not a JSON reply (the agent's 0xff delimiter, a greeting).
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_matches(|c: char| c == '\u{fffd}' || c.is_whitespace());
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(text)
                && (v.get("return").is_some() || v.get("error").is_some())
            {
                return Some(v);
            }
        }
    }

    fn call(&mut self, execute: &str, arguments: serde_json::Value) -> serde_json::Value {
        self.send(&serde_json::json!({"execute": execute, "arguments": arguments}));
        let reply = self
            .reply()
            .unwrap_or_else(|| panic!("{execute}: no answer"));
        assert!(reply.get("error").is_none(), "{execute}: {reply}");
        reply["return"].clone()
    }
}

/// The monitor: keys pressed on the VM's keyboard.
struct Monitor(QemuSocket);

impl Monitor {
    fn connect(state: &Path) -> Self {
        let mut s = QemuSocket::connect(&state.join("qmp.sock"));
        s.send(&serde_json::json!({"execute": "qmp_capabilities"}));
        s.reply().expect("QMP capabilities");
        Self(s)
    }

    fn key(&mut self, qcode: &str, down: bool) {
        self.0.call(
            "input-send-event",
            serde_json::json!({"events": [{"type": "key", "data": {
                "down": down, "key": {"type": "qcode", "data": qcode}}}]}),
        );
    }

    /// Holds a key down for `held`.
    fn press(&mut self, qcode: &str, held: Duration) {
        self.key(qcode, true);
        std::thread::sleep(held);
        self.key(qcode, false);
    }

    /// Waits up to `timeout` for QEMU's event `name` (events before the call included, since
    /// replies skip them).
    fn event(&mut self, name: &str, timeout: Duration) -> serde_json::Value {
        use std::io::BufRead;
        let deadline = Instant::now() + timeout;
        loop {
            assert!(Instant::now() < deadline, "no {name} event in {timeout:?}");
            let mut line = Vec::new();
            match self.0.stream.read_until(b'\n', &mut line) {
                Ok(0) => panic!("QEMU's monitor closed before {name}"),
                // The socket's read timeout: nothing yet.
                Err(_) => continue,
                Ok(_) => {}
            }
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line)
                && v["event"] == name
            {
                return v;
            }
        }
    }
}

/// The guest agent: commands run as root inside the guest.
struct Guest {
    socket: QemuSocket,
    /// Sync ids used so far: each sync waits for its own.
    syncs: u64,
}

impl Guest {
    /// Waits for the agent to answer (it starts with the guest's services).
    fn connect(state: &Path) -> Self {
        let mut guest = Self {
            socket: QemuSocket::connect(&state.join("qga.sock")),
            syncs: 0,
        };
        guest.sync();
        guest
    }

    /// Waits until the agent answers, dropping replies to the syncs it was too early for
    /// (QEMU takes the socket's questions before the guest's agent runs).
    fn sync(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.syncs += 1;
            let id = self.syncs;
            self.socket
                .send(&serde_json::json!({"execute": "guest-sync", "arguments": {"id": id}}));
            // Replies to earlier syncs may come first.
            while let Some(v) = self.socket.reply() {
                if v["return"] == id {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the guest agent never answered");
        }
    }

    /// Runs `script` with `/bin/sh`; its exit code and output.
    fn sh(&mut self, script: &str) -> (i64, String) {
        use base64::Engine;
        let pid = self.socket.call(
            "guest-exec",
            serde_json::json!({"path": "/bin/sh", "arg": ["-c", script], "capture-output": true}),
        )["pid"]
            .clone();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let st = self
                .socket
                .call("guest-exec-status", serde_json::json!({"pid": pid}));
            if st["exited"] == true {
                let text = |key: &str| {
                    let b64 = st[key].as_str().unwrap_or_default();
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap_or_default();
                    String::from_utf8_lossy(&bytes).into_owned()
                };
                return (
                    st["exitcode"].as_i64().unwrap_or(-1),
                    text("out-data") + &text("err-data"),
                );
            }
            assert!(Instant::now() < deadline, "`{script}` did not end");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `script`, which must succeed; its output.
    fn ok(&mut self, script: &str) -> String {
        let (code, out) = self.sh(script);
        assert_eq!(code, 0, "`{script}` failed: {out}");
        out
    }
}

/// The status LED as the kernel shows it, sampled every 250 ms for 3 s: `0`s and `1`s.
fn led_samples(guest: &mut Guest) -> String {
    guest
        .ok("for i in $(seq 12); do cat /sys/class/leds/input*::scrolllock/brightness; sleep 0.25; done")
        .split_whitespace()
        .collect()
}

/// The LED, the button and the I2C sensor of the test: the VM's PS/2 keyboard (its scroll
/// lock LED is an LED class device, its keys an evdev device) and `i2c-stub` holding an
/// LM75's temperature register. Named to the node in a runtime drop-in, as a board's would
/// be in its configuration; the button is F12 (key code 88), the keyboard's other keys not.
const HARDWARE_DROP_IN: &str = r#"mkdir -p /run/systemd/system/livepeer-edge.service.d
cat > /run/systemd/system/livepeer-edge.service.d/hardware.conf <<'END'
[Service]
Environment="LPE_HARDWARE_STATUS_LED=scrolllock" "LPE_HARDWARE_BUTTON=AT Translated Set 2 keyboard" "LPE_HARDWARE_BUTTON_KEY=88" "LPE_HARDWARE_I2C_TEMPERATURE_SENSORS=SMBus stub driver@0x48"
END
systemctl daemon-reload
systemctl restart livepeer-edge"#;

/// 42.5 °C in an LM75's register (0x2A80, most significant byte first) as an SMBus word.
const LM75_42_5: &str = "0x802a";

/// The image's per-commit test, the only one in the default suite: the image builds, boots
/// under emulation to a healthy node on slot A, the console names the box's address and a
/// setup code, and that code sets the box up over the forwarded port. One boot: everything
/// that takes a reboot, an update or minutes of driving is in the full suite.
#[test]
fn the_image_boots_to_a_healthy_node_set_up_with_its_consoles_code() {
    let disk = image();
    let mut vm = Vm::boot(&disk);
    let (took, health) = vm.wait_healthy();
    eprintln!("boot to a healthy node: {:.0} s", took.as_secs_f64());
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["checks"]["store"]["status"], "ok", "{health}");
    // The console names the device's address, in the setup line and in the login banner
    // (which getty may show after the node is up).
    let code = vm.wait_setup_code(0);
    assert!(
        vm.console()
            .contains("open http://10.0.2.15/ and enter the setup code"),
        "{}",
        tail(&vm.console())
    );
    vm.wait_console("banner with the address", Duration::from_secs(60), |c| {
        c.contains("Open http://10.0.2.15/").then_some(())
    });
    let auth = vm.admin_token_with(&code);
    // Booted from A, the slot the image was flashed with, and RAUC answers over D-Bus.
    let update = vm.wait_job(&auth, &["idle"], Duration::from_secs(30));
    assert!(update["unavailable"].is_null(), "{update}");
    assert_eq!(update["system"]["booted"], "A", "{update}");
    assert!(!slot(&update, "A").is_null(), "{update}");
    assert!(!slot(&update, "B").is_null(), "{update}");
    let device = vm.get_json(&auth, "/api/device");
    assert_eq!(device["identity"]["name"], "venue box", "{device}");
    // The data partition (1 GiB in the image) took the rest of the medium at this first boot,
    // and its filesystem with it: room for recordings above the free-space floor.
    let storage = vm.get_json(&auth, "/api/recordings/storage");
    // Its share of the medium is all but the ESP and the two 2 GiB root slots: over half.
    let total = storage["disk_total_bytes"].as_u64().unwrap_or(0);
    assert!(total > (MEDIUM_GIB << 30) / 2, "{storage}");
    assert_eq!(storage["disk_full"], false, "{storage}");
}

#[test]
#[ignore = "the full VM suite (scripts/test-vm.sh): the image built and booted under emulation"]
fn the_image_drives_its_hardware_camera_and_watchdog() {
    let disk = image();
    let mut vm = Vm::boot(&disk);
    vm.wait_healthy();
    let first_code = vm.wait_setup_code(0);

    // The kernel's drivers: a virtual camera, an LM75 on a stub I2C bus.
    let mut guest = Guest::connect(vm.state());
    let mut monitor = Monitor::connect(vm.state());
    guest.ok(&format!(
        "modprobe vivid && modprobe i2c-stub chip_addr=0x48 && \
         bus=$(grep -l 'SMBus stub driver' /sys/class/i2c-dev/*/name | sed 's|.*/i2c-\\([0-9]*\\)/name|\\1|') && \
         i2cset -y \"$bus\" 0x48 0 {LM75_42_5} w"
    ));
    let seen = vm.console().matches("setup code ").count();
    guest.ok(HARDWARE_DROP_IN);
    vm.wait_healthy();
    let restarted_code = vm.wait_setup_code(seen);
    assert_ne!(restarted_code, first_code, "a restart issues a new code");

    // Before setup the LED blinks (on and off a second each): the node took it from the
    // keyboard's trigger.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = led_samples(&mut guest);
        if seen.contains('0') && seen.contains('1') {
            break;
        }
        assert!(Instant::now() < deadline, "the LED never blinked: {seen}");
    }
    let trigger = guest.ok("cat /sys/class/leds/input*::scrolllock/trigger");
    assert!(trigger.contains("[none]"), "{trigger}");

    // Another key on the keyboard is not the button.
    let seen = vm.console().matches("setup code ").count();
    monitor.press("a", Duration::from_millis(300));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        vm.console().matches("setup code ").count(),
        seen,
        "a key other than the button's gave a setup code"
    );
    // A short press shows a new setup code on the console; the one before stops working.
    monitor.press("f12", Duration::from_millis(300));
    let pressed_code = vm.wait_setup_code(seen);
    assert_ne!(pressed_code, restarted_code);

    let agent = agent();
    let r = agent
        .get(vm.url("/api/setup"))
        .call()
        .expect("setup status");
    assert_eq!(r.status(), 200);
    let setup = |code: &str| {
        agent
            .post(vm.url("/api/setup"))
            .send_json(serde_json::json!({
                "code": code, "password": common::ADMIN_PASSWORD,
                "device_name": "venue box", "role": "off"
            }))
    };
    let wrong = setup("AAAAA-AAAAA").expect("setup");
    assert_ne!(wrong.status(), 200, "a wrong setup code was accepted");
    let replaced = setup(&restarted_code).expect("setup");
    assert_ne!(replaced.status(), 200, "a replaced setup code was accepted");
    let auth = vm.admin_token_with(&pressed_code);
    let again = setup(&pressed_code).expect("setup");
    assert_ne!(again.status(), 200, "the setup code worked twice");

    // Set up and running: the LED is on, steadily.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = led_samples(&mut guest);
        if !seen.contains('0') && seen.len() == 12 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the LED never settled on: {seen}"
        );
    }

    // The device view: the LED and the button found, the sensor's temperature beside the
    // kernel's own.
    let deadline = Instant::now() + Duration::from_secs(60);
    let device = loop {
        let d = vm.get_json(&auth, "/api/device");
        let lm75 = d["stats"]["temperatures"].as_array().and_then(|t| {
            t.iter()
                .find(|t| t["label"] == "lm75 SMBus stub driver@0x48")
                .cloned()
        });
        if let Some(t) = lm75 {
            assert_eq!(t["celsius"], 42.5, "{d}");
            break d;
        }
        assert!(Instant::now() < deadline, "no LM75 reading: {d}");
        std::thread::sleep(Duration::from_secs(2));
    };
    let hw = &device["hardware"];
    assert!(
        hw["status_led"]
            .as_str()
            .is_some_and(|n| n.ends_with("::scrolllock")),
        "{hw}"
    );
    assert_eq!(hw["button"], "AT Translated Set 2 keyboard", "{hw}");
    assert_eq!(hw["showing"], "running", "{hw}");

    // On-device inference: the image's ONNX Runtime loads, and its built-in face model is
    // there for privacy mode. (Running it here is not: ONNX Runtime's AVX2 kernels under TCG
    // take most of a minute for one 128×96 picture.)
    let ai = vm.get_json(&auth, "/api/ai");
    assert!(ai["runtime"]["error"].is_null(), "{ai}");
    assert!(
        ai["runtime"]["library"]
            .as_str()
            .is_some_and(|l| l.contains("libonnxruntime.so")),
        "{ai}"
    );
    assert!(
        ai["models"].as_array().is_some_and(|m| m
            .iter()
            .any(|m| m["builtin"] == true && m["descriptor"]["kind"] == "centerface")),
        "{ai}"
    );

    // A camera from vivid: listed, captured, encoded into an HLS rendition.
    let cameras = vm.get_json(&auth, "/api/cameras");
    let camera = cameras
        .as_array()
        .and_then(|c| c.iter().find(|c| c["driver"] == "vivid").cloned())
        .unwrap_or_else(|| panic!("vivid is not among the cameras: {cameras}"));
    let started = Instant::now();
    let stream = vm.post_json(
        &auth,
        "/api/streams",
        serde_json::json!({
            "name": "vivid",
            "source": {"kind": "v4l2", "device": camera["path"], "width": 640, "height": 360, "fps": 30},
            "ladder": [{"name": "180p", "height": 180, "bitrate_kbps": 200}],
        }),
    );
    let id = stream["id"].as_str().expect("stream id").to_string();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let playlist = agent
            .get(vm.url(&format!("/hls/{id}/180p/index.m3u8")))
            .call()
            .ok()
            .filter(|r| r.status() == 200)
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default();
        if playlist.matches("#EXTINF").count() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no HLS from the camera: {}",
            vm.get_json(&auth, &format!("/api/streams/{id}"))
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!(
        "V4L2 camera to two HLS segments: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let rss = guest.ok("grep VmRSS /proc/$(systemctl show -P MainPID livepeer-edge)/status");
    eprintln!(
        "the node's memory with the test pattern and the camera streaming: {}",
        rss.trim()
    );

    // The watchdog: systemd armed the hardware one; a node that stops its heartbeats is
    // killed and started again.
    let watchdog =
        guest.ok("cat /sys/class/watchdog/watchdog0/state /sys/class/watchdog/watchdog0/timeout");
    assert_eq!(
        watchdog.split_whitespace().collect::<Vec<_>>(),
        ["active", "30"],
        "{watchdog}"
    );
    let pid = guest
        .ok("systemctl show -P MainPID livepeer-edge")
        .trim()
        .to_string();
    guest.ok(&format!("kill -STOP {pid}"));
    let stopped = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let now = guest
            .ok("systemctl show -P MainPID livepeer-edge")
            .trim()
            .to_string();
        if now != pid && now != "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the silent node was never restarted"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    vm.wait_healthy();
    eprintln!(
        "heartbeats stopped to a healthy node again: {:.0} s",
        stopped.elapsed().as_secs_f64()
    );
    let journal =
        guest.ok("journalctl -u livepeer-edge -o cat | grep -c 'Watchdog timeout' || true");
    assert!(
        journal.trim().parse::<u32>().unwrap_or(0) >= 1,
        "systemd did not name its watchdog: {journal}"
    );

    // Holding the button 10 s arms a factory reset and shows it; a press confirms it; the
    // box restarts erased, back to first-boot setup with a new code.
    let seen = vm.console().matches("setup code ").count();
    monitor.press("f12", Duration::from_secs(11));
    let armed = vm.get_json(&auth, "/api/device");
    assert_eq!(armed["hardware"]["showing"], "reset_armed", "{armed}");
    assert!(
        vm.console().contains("factory reset armed"),
        "{}",
        tail(&vm.console())
    );
    monitor.press("f12", Duration::from_millis(300));
    vm.wait_setup_code(seen);
    vm.wait_healthy();
    let mut r = agent
        .get(vm.url("/api/setup"))
        .call()
        .expect("setup status");
    let setup_status: serde_json::Value = r.body_mut().read_json().expect("setup status");
    assert_eq!(setup_status["required"], true, "{setup_status}");
    let r = agent
        .get(vm.url("/api/streams"))
        .header("authorization", &auth)
        .call()
        .expect("streams");
    assert_eq!(r.status(), 401, "the erased box still knows the old token");

    // PID 1 itself stops: systemd's crash handler freezes it on SIGSEGV, nothing feeds the
    // hardware watchdog any more, and the watchdog resets the box, which comes back.
    guest.ok("kill -SEGV 1");
    let frozen = Instant::now();
    let event = monitor.event("WATCHDOG", Duration::from_secs(180));
    assert_eq!(event["data"]["action"], "reset", "{event}");
    let reset = frozen.elapsed();
    vm.wait_healthy();
    eprintln!(
        "PID 1 frozen to the watchdog's reset: {:.0} s, to a healthy node: {:.0} s",
        reset.as_secs_f64(),
        frozen.elapsed().as_secs_f64()
    );
}

impl Vm {
    /// First-boot setup with the console's code, then an admin API token.
    fn admin_token(&self) -> String {
        let code = self.wait_setup_code(0);
        self.admin_token_with(&code)
    }

    /// The setup code the console shows once it has shown more than `seen` of them.
    fn wait_setup_code(&self, seen: usize) -> String {
        self.wait_console("new setup code", Duration::from_secs(90), |console| {
            if console.matches("setup code ").count() > seen {
                self.setup_code()
            } else {
                None
            }
        })
    }

    /// Polls the console until `found` finds what it looks for, `what` naming it on a timeout.
    fn wait_console<T>(
        &self,
        what: &str,
        timeout: Duration,
        found: impl Fn(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let console = self.console();
            if let Some(t) = found(&console) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} on the console:\n{}",
                tail(&console)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// First-boot setup with `code`, then an admin API token.
    fn admin_token_with(&self, code: &str) -> String {
        let agent = agent();
        let mut r = agent
            .post(self.url("/api/setup"))
            .send_json(serde_json::json!({
                "code": code, "password": common::ADMIN_PASSWORD,
                "device_name": "venue box", "role": "off"
            }))
            .expect("setup");
        assert_eq!(r.status(), 200, "setup failed");
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|kv| kv.starts_with("lpe_session="))
            .expect("session cookie")
            .to_string();
        let body: serde_json::Value = r.body_mut().read_json().expect("setup body");
        let csrf = body["csrf_token"].as_str().expect("csrf").to_string();
        let mut r = agent
            .post(self.url("/api/tokens"))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .send_json(serde_json::json!({"name": "tests", "role": "admin"}))
            .expect("token");
        assert_eq!(r.status(), 201, "token failed");
        let body: serde_json::Value = r.body_mut().read_json().expect("token body");
        format!("Bearer {}", body["token"].as_str().expect("token"))
    }

    /// QEMU's sockets and the overlay.
    fn state(&self) -> &Path {
        self._dir.path()
    }

    fn get_json(&self, auth: &str, path: &str) -> serde_json::Value {
        let mut r = agent()
            .get(self.url(path))
            .header("authorization", auth)
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.status(), 200, "GET {path}");
        r.body_mut().read_json().expect("JSON")
    }

    fn post_json(&self, auth: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        send_json(
            agent().post(self.url(path)),
            auth,
            &format!("POST {path}"),
            body,
        )
    }

    fn patch_json(&self, auth: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        send_json(
            agent().patch(self.url(path)),
            auth,
            &format!("PATCH {path}"),
            body,
        )
    }

    /// Shrinks the first start's demo stream (a 720p30 test pattern with tone, encoded to a
    /// four-rendition ladder) to a 180p10 pattern with one rendition. Under TCG the full one
    /// keeps both emulated cores busy (196 % CPU; 36 % for the small one) and everything else
    /// in the box waits for it: a 388 MB bundle uploaded in 36 s and installed in 137 s
    /// beside it, in 17 s and 51 s beside the small one. A stream still runs, so an
    /// update's health check still waits for the running streams to come back.
    fn quiet_demo(&self, auth: &str) {
        let streams = self.get_json(auth, "/api/streams");
        let demo = streams
            .as_array()
            .and_then(|s| s.iter().find(|s| s["source"]["kind"] == "test"))
            .unwrap_or_else(|| panic!("no demo stream: {streams}"));
        let id = demo["id"].as_str().expect("stream id");
        self.patch_json(
            auth,
            &format!("/api/streams/{id}"),
            serde_json::json!({
                "source": {"width": 320, "height": 180, "fps": 10, "tone": false},
                "ladder": [{"name": "source", "bitrate_kbps": 300}],
            }),
        );
    }

    fn update_status(&self, auth: &str) -> Option<serde_json::Value> {
        let mut r = agent()
            .get(self.url("/api/system/update"))
            .header("authorization", auth)
            .call()
            .ok()?;
        (r.status() == 200)
            .then(|| r.body_mut().read_json().ok())
            .flatten()
    }

    /// Uploads a bundle; the accepted job.
    fn upload(&self, auth: &str, bundle: &Path) -> serde_json::Value {
        let mut file = std::fs::File::open(bundle).expect("bundle");
        let size = file.metadata().expect("bundle size").len();
        // Hundreds of megabytes through QEMU's user network into an emulated guest: 60 to
        // over 90 s here, seconds on a box.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(600)))
            .http_status_as_error(false)
            .build()
            .into();
        let started = Instant::now();
        let mut r = agent
            .post(self.url("/api/system/update/bundle"))
            .header("authorization", auth)
            .header("content-type", "application/octet-stream")
            .header("content-length", size.to_string())
            .send(ureq::SendBody::from_reader(&mut file))
            .expect("upload");
        let status = r.status();
        let body: serde_json::Value = r.body_mut().read_json().unwrap_or_default();
        assert_eq!(status, 202, "upload refused: {body}");
        eprintln!(
            "a {} MB bundle uploaded in {:.0} s",
            size / 1_000_000,
            started.elapsed().as_secs_f64()
        );
        body
    }

    /// Polls the update until its job is in one of `states` (across a reboot).
    fn wait_job(&mut self, auth: &str, states: &[&str], timeout: Duration) -> serde_json::Value {
        self.wait_update(auth, &format!("{states:?}"), timeout, |v| {
            states.iter().any(|s| v["job"]["state"] == *s)
        })
    }

    /// Polls the update's status (job and slots) until `reached`, named `what` on a timeout;
    /// a reset of the box on the way boots it again.
    fn wait_update(
        &mut self,
        auth: &str,
        what: &str,
        timeout: Duration,
        reached: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.update_status(auth)
                && reached(&v)
            {
                return v;
            }
            self.revive();
            assert!(
                Instant::now() < deadline,
                "the update never reached {what}: {:?}\n{}",
                self.update_status(auth),
                tail(&self.console())
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

/// Serves the files of a directory over HTTP on the host's loopback (GET, whole files), as a
/// venue's update server would: what the guest downloads bundles from.
struct FileServer {
    port: u16,
}

impl FileServer {
    fn start(dir: &Path) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let _ = serve_file(conn, &dir);
                });
            }
        });
        Self { port }
    }
}

fn serve_file(mut conn: std::net::TcpStream, dir: &Path) -> std::io::Result<()> {
    use std::io::{BufRead, Write};
    let mut reader = std::io::BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let name = request
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    let file = (!name.contains('/') && !name.is_empty())
        .then(|| std::fs::File::open(dir.join(&name)).ok())
        .flatten();
    let Some(mut file) = file else {
        return conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
    };
    let len = file.metadata()?.len();
    write!(
        conn,
        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
    )?;
    std::io::copy(&mut file, &mut conn)?;
    Ok(())
}

/// A bundle for the image's compatible, signed by a CA the image does not trust.
fn foreign_bundle(dir: &Path) -> PathBuf {
    let run = |cmd: &mut Command, what: &str| {
        succeeded(cmd.output().expect(what), what);
    };
    let (key, cert) = (dir.join("other.key.pem"), dir.join("other.cert.pem"));
    run(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=Not the vendor"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        "openssl",
    );
    let content = dir.join("content");
    std::fs::create_dir_all(&content).expect("dir");
    let image = content.join("rootfs.ext4");
    run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&image)
            .arg("8M"),
        "mkfs.ext4",
    );
    // Incompressible bytes beside it: RAUC refuses a bundle whose squashfs is one block.
    let noise: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(content.join("padding.bin"), noise).expect("padding");
    std::fs::write(
        content.join("manifest.raucm"),
        "[update]\ncompatible=livepeer-edge-x86_64-dev\nversion=9.9.9\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.ext4\n",
    )
    .expect("manifest");
    let bundle = dir.join("foreign.raucb");
    run(
        Command::new("rauc")
            .arg("bundle")
            .arg(format!("--cert={}", cert.display()))
            .arg(format!("--key={}", key.display()))
            .arg(format!("--keyring={}", cert.display()))
            .arg(&content)
            .arg(&bundle),
        "rauc bundle",
    );
    bundle
}

/// A bundle of `version`, signed by the development CA the image trusts, with `overlay`'s
/// files over its root.
fn bundle(version: &str, overlay: Option<&Path>) -> PathBuf {
    let out = repo().join("target/image").join(version);
    let mut build = Command::new(repo().join("image/build.sh"));
    build
        .env("IMAGE_PROFILE", "dev")
        .env("IMAGE_OUT", &out)
        .env("IMAGE_VERSION", version)
        .stdin(Stdio::null());
    if let Some(o) = overlay {
        build.env("IMAGE_OVERLAY", o);
    }
    let built = build.output().expect("image/build.sh");
    succeeded(built, &format!("image/build.sh ({version})"));
    // Only the bundle is needed: the disk and the root image are gigabytes.
    for f in ["disk.img", "rootfs.ext4", "data.ext4", "esp.vfat"] {
        let _ = std::fs::remove_file(out.join(f));
    }
    out.join("update.raucb")
}

/// A version whose node cannot start: its configuration names a setting that does not exist.
fn broken_bundle(scratch: &Path) -> PathBuf {
    let overlay = scratch.join("overlay");
    let config = overlay.join("etc/livepeer-edge/config.toml");
    std::fs::create_dir_all(config.parent().expect("dir")).expect("overlay");
    std::fs::write(
        &config,
        "data_dir = \"/var/lib/livepeer-edge\"\nno_such_setting = true\n",
    )
    .expect("config");
    bundle("0.1.0-broken", Some(&overlay))
}

fn sha256_of(file: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(file)
        .output()
        .expect("sha256sum");
    let out = succeeded(out, "sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn slot<'a>(status: &'a serde_json::Value, bootname: &str) -> &'a serde_json::Value {
    status["system"]["slots"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["bootname"] == bootname))
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
#[ignore = "the full VM suite (scripts/test-vm.sh): an update takes minutes under emulation"]
fn updates_boot_the_other_slot_roll_back_and_refuse_foreign_bundles() {
    let disk = image();
    let next = bundle("0.1.0-next", None);
    let scratch = tempfile::tempdir().expect("tempdir");
    let broken = broken_bundle(scratch.path());
    let foreign = foreign_bundle(scratch.path());
    // The fleet's broker and the venue's update server, on the host.
    let broker = Broker::start();
    let files = FileServer::start(next.parent().expect("bundle dir"));
    let mut vm = Vm::boot_with(&disk, &[(1883, broker.port), (8000, files.port)]);
    vm.wait_healthy();
    let auth = vm.admin_token();
    vm.quiet_demo(&auth);
    // The box's own settings, on its data partition: they outlive the root it updates.
    let mut guest = Guest::connect(vm.state());
    guest.ok(
        "printf 'LPE_MQTT_URL=mqtt://10.0.2.100:1883\\nLPE_MQTT_DEVICE_ID=venue\\n' > /var/lib/livepeer-edge/node.env \
         && systemctl restart livepeer-edge",
    );
    let mqtt = Observer::connect(broker.port, &["livepeer-edge/venue/#"]);
    mqtt.wait(
        "livepeer-edge/venue/status",
        Duration::from_secs(120),
        |m| m.text() == "online",
    );
    let before = vm.wait_job(&auth, &["idle"], Duration::from_secs(30));
    assert_eq!(before["system"]["booted"], "A", "{before}");

    // Signed by someone else: refused by RAUC, nothing changes.
    vm.upload(&auth, &foreign);
    let refused = vm.wait_job(&auth, &["failed"], Duration::from_secs(120));
    let reason = refused["job"]["reason"].as_str().unwrap_or_default();
    // RAUC's own words for why: the job carries its last error or its failed step (which
    // one depends on when RAUC sets them); its log, on the console, names the signature.
    assert!(reason.contains("failed"), "{refused}");
    assert!(
        vm.console().contains("signature verification failed"),
        "RAUC did not refuse the signature:\n{}",
        tail(&vm.console())
    );
    assert_eq!(refused["system"]["booted"], "A", "{refused}");
    assert_eq!(refused["system"]["primary"], "A", "{refused}");
    let untouched = refused["system"]["slots"]
        .as_array()
        .is_some_and(|s| s.iter().all(|s| s["bundle_version"].is_null()));
    assert!(untouched, "a slot took the foreign bundle: {refused}");

    // The next version, asked for by the fleet: downloaded from the update server, checked
    // against its SHA-256, installed to B, booted, marked good there.
    let sha256 = sha256_of(&next);
    let request = serde_json::json!({
        "request_id": "next-1", "url": "http://10.0.2.100:8000/update.raucb", "sha256": sha256,
    })
    .to_string();
    let started = Instant::now();
    mqtt.publish("livepeer-edge/venue/cmd/update", &request, false);
    let done = vm.wait_job(&auth, &["succeeded", "failed"], Duration::from_secs(900));
    eprintln!(
        "download + install + reboot + health: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(done["job"]["request_id"], "next-1", "{done}");
    // The fleet sees the new version in the box's state, from B.
    mqtt.wait("livepeer-edge/venue/state", Duration::from_secs(120), |m| {
        let u = &m.json()["update"];
        u["job"]["state"] == "succeeded"
            && u["slots"]["booted"] == "B"
            && u["slots"]["slots"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["bundle_version"] == "0.1.0-next"))
    });
    // The same request again is answered from the journal and starts nothing.
    mqtt.clear();
    mqtt.publish("livepeer-edge/venue/cmd/update", &request, false);
    let again = mqtt
        .wait(
            "livepeer-edge/venue/cmd/update/result",
            Duration::from_secs(60),
            |m| m.json()["request_id"] == "next-1",
        )
        .json();
    assert_eq!(again["state"], "succeeded", "{again}");
    std::thread::sleep(Duration::from_secs(3));
    let after = vm.wait_job(&auth, &["succeeded"], Duration::from_secs(30));
    assert_eq!(
        after["job"]["started_ms"], done["job"]["started_ms"],
        "{after}"
    );
    assert_eq!(done["job"]["state"], "succeeded", "{done}");
    assert_eq!(done["system"]["booted"], "B", "{done}");
    let b = slot(&done, "B");
    assert_eq!(b["boot_status"], "good", "{done}");
    assert_eq!(b["bundle_version"], "0.1.0-next", "{done}");

    // The power goes as B runs, then twice in a row as B's kernel starts (GRUB has counted
    // the try; B has not marked itself good yet): the box does not go back to the older
    // version in A. GRUB boots B a third time and B marks itself good there.
    let started = Instant::now();
    let [a_before, b_before] = boots(&vm.console());
    for _ in 0..3 {
        let before: usize = boots(&vm.console()).iter().sum();
        vm.power_cycle();
        vm.wait_console("a kernel starting", BOOT, |console| {
            (boots(console).iter().sum::<usize>() > before).then_some(())
        });
    }
    vm.wait_healthy();
    let remarked = vm.wait_update(
        &auth,
        "B booted and marked good again",
        Duration::from_secs(120),
        |v| v["system"]["booted"] == "B" && slot(v, "B")["boot_status"] == "good",
    );
    eprintln!(
        "two cuts before the mark to B marked good again: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        slot(&remarked, "B")["bundle_version"],
        "0.1.0-next",
        "{remarked}"
    );
    assert_eq!(slot(&remarked, "A")["boot_status"], "good", "{remarked}");
    assert_eq!(
        boots(&vm.console()),
        [a_before, b_before + 3],
        "boots of A and B: B three times, A not at all"
    );

    // A version whose node cannot start: installed to A, booted three times (five failed
    // starts reboot the box; GRUB passes over a slot after three tries never marked good),
    // and reported failed from B, which runs again; A is marked bad.
    let started = Instant::now();
    let [a_before, b_before] = boots(&vm.console());
    vm.upload(&auth, &broken);
    let rolled = vm.wait_job(&auth, &["succeeded", "failed"], Duration::from_secs(1200));
    eprintln!(
        "upload + install + three failed boots + rollback: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(rolled["job"]["state"], "failed", "{rolled}");
    let reason = rolled["job"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("rolled back"), "{rolled}");
    assert_eq!(rolled["system"]["booted"], "B", "{rolled}");
    assert_eq!(slot(&rolled, "A")["boot_status"], "bad", "{rolled}");
    assert_eq!(slot(&rolled, "B")["boot_status"], "good", "{rolled}");
    assert_eq!(
        boots(&vm.console()),
        [a_before + 3, b_before + 1],
        "boots of A and B: the broken A three times, then B"
    );
}

/// How many times the box booted slots A and B, as its kernels' command lines on `console`
/// say.
fn boots(console: &str) -> [usize; 2] {
    ["rauc.slot=A", "rauc.slot=B"].map(|slot| {
        console
            .lines()
            .filter(|l| l.contains("Command line:") && l.split_whitespace().any(|w| w == slot))
            .count()
    })
}

/// One acknowledged or attempted change of the power-cut test.
enum Change {
    Created { id: String, name: String },
    Renamed { id: String, name: String },
}

/// Creates and renames disabled streams until `stop`: the changes the node acknowledged, and
/// the one in flight when the power went (it may or may not have landed).
fn write_until(
    vm_http: u16,
    auth: &str,
    cut: usize,
    stop: &std::sync::atomic::AtomicBool,
    known: &[String],
) -> (Vec<Change>, Option<Change>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let url = |p: &str| format!("http://127.0.0.1:{vm_http}{p}");
    let mut ids: Vec<String> = known.to_vec();
    let mut acked = Vec::new();
    let mut n = 0usize;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        n += 1;
        let name = format!("cut {cut} change {n}");
        // Mostly renames once there is something to rename: the same rows change again and
        // again, across cuts.
        if ids.is_empty() || n.is_multiple_of(3) {
            let sent = agent
                .post(url("/api/streams"))
                .header("authorization", auth)
                .send_json(serde_json::json!({
                    "name": name, "source": {"kind": "rtmp"}, "enabled": false
                }));
            match sent {
                Ok(mut r) if r.status() == 201 => {
                    let v: serde_json::Value = r.body_mut().read_json().unwrap_or_default();
                    let id = v["id"].as_str().unwrap_or_default().to_string();
                    ids.push(id.clone());
                    acked.push(Change::Created { id, name });
                }
                // An answer lost with the power: the stream may exist; it is looked for by name.
                _ => {
                    return (
                        acked,
                        Some(Change::Created {
                            id: String::new(),
                            name,
                        }),
                    );
                }
            }
        } else {
            let id = ids[n % ids.len()].clone();
            let sent = agent
                .patch(url(&format!("/api/streams/{id}")))
                .header("authorization", auth)
                .send_json(serde_json::json!({"name": name}));
            match sent {
                Ok(r) if r.status() == 200 => acked.push(Change::Renamed { id, name }),
                _ => return (acked, Some(Change::Renamed { id, name })),
            }
        }
    }
    (acked, None)
}

/// Makes the guest's node an orchestrator on the host's chain (reached at 10.0.2.100:8545):
/// the orchestrator account's key imported into its keystore, the payment settings in the
/// box's own `node.env` (plain HTTP/2 on the network port, as the host reaches it), the node
/// restarted; returns once it takes payments.
fn earn_in_guest(vm: &mut Vm, guest: &mut Guest, auth: &str, controller: &str) {
    guest.ok(&format!(
        "umask 077 && printf %s {key} > /run/orchestrator.key \
         && chown livepeer-edge /run/orchestrator.key \
         && runuser -u livepeer-edge -- env LPE_WALLET_PASSWORD={password} livepeer-edge wallet import \
            --private-key-file /run/orchestrator.key --data-dir /var/lib/livepeer-edge \
         && rm /run/orchestrator.key",
        key = common::evm::ORCHESTRATOR,
        password = common::wire::PASSWORD,
    ));
    let settings: String = common::evm::pm_env(
        "http://10.0.2.100:8545",
        controller,
        "orchestrator",
        common::wire::PASSWORD,
    )
    .into_iter()
    .chain([(
        "LPE_NET_SERVICE_URI",
        &*format!("http://127.0.0.1:{}", vm.net),
    )])
    .map(|(k, v)| format!("{k}={v}\\n"))
    .collect();
    guest.ok(&format!(
        "umask 077 && printf '{settings}' > /var/lib/livepeer-edge/node.env \
         && systemctl restart livepeer-edge"
    ));
    vm.wait_healthy();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = agent()
            .get(vm.url("/api/pm/chain"))
            .header("authorization", auth)
            .call()
            .map(|r| r.status().as_u16());
        if matches!(status, Ok(200)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the guest's orchestrator never took payments: {status:?}\n{}",
            tail(&vm.console())
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A gateway's ticket session on the guest's orchestrator at `net`, once it takes payments
/// (after a boot, a new one: the node's params change when it starts).
fn open_gateway(rt: &tokio::runtime::Runtime, net: u16) -> common::wire::WireGateway {
    let url = format!("http://127.0.0.1:{net}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // A node that vanishes mid-answer never says so: each try is bounded.
        let open = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(20),
                common::wire::WireGateway::open(&url, common::wire::gateway_key()),
            )
            .await
        });
        match open {
            Ok(Ok(g)) => {
                assert_eq!(g.params().win_prob, lpe_pm::U256::MAX, "every ticket wins");
                return g;
            }
            other => assert!(
                Instant::now() < deadline,
                "no ticket session on the guest's orchestrator: {:?}",
                other.map(|r| r.err())
            ),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Pays through `gateway` until `stop`, in batches of one to three winning tickets: the
/// hashes of the tickets the node acknowledged (a 200 acknowledges a whole batch). A payment
/// cut short by the power is not counted: it may or may not have landed.
fn pay_until(
    mut gateway: common::wire::WireGateway,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<lpe_pm::B256> {
    let mut acked = Vec::new();
    let mut n = 0u32;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        n += 1;
        let batch = gateway.batch(1 + n % 3);
        let (status, _) = gateway.pay_header(&gateway.header(&batch));
        if status != 200 {
            break;
        }
        acked.extend(batch.tickets.iter().map(|t| t.ticket.hash()));
    }
    acked
}

#[test]
#[ignore = "the full VM suite (scripts/test-vm.sh): every cut is a boot under emulation"]
fn power_cuts_lose_no_acknowledged_change_or_ticket_and_never_corrupt_the_store() {
    let cuts: usize = std::env::var("VM_POWER_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let disk = image();
    // The chain on the host, the gateway's deposit and reserve on it (every ticket wins,
    // a hundredth of an ETH each: five ETH last twenty cuts).
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let chain = rt.block_on(common::evm::world(10_000));
    rt.block_on(common::wire::funded_gateway_with(&chain, 5));
    let mut vm = Vm::boot_with(&disk, &[(8545, chain.node.port)]);
    vm.wait_healthy();
    let auth = vm.admin_token();
    vm.quiet_demo(&auth);
    let mut guest = Guest::connect(vm.state());
    earn_in_guest(&mut vm, &mut guest, &auth, &chain.controller.to_string());
    let mut tickets: std::collections::HashSet<lpe_pm::B256> = Default::default();
    // What the node acknowledged: each stream's name as last acknowledged.
    let mut names: std::collections::BTreeMap<String, String> = Default::default();
    let mut acknowledged = 0usize;
    // splitmix64, seeded: the moments of the cuts are random but reproducible.
    let mut seed = 0x5eed_cafe_u64;
    let mut next = move || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for cut in 1..=cuts {
        let cycle = Instant::now();
        // The session is opened before the cut's clock starts: the window is all payments.
        let gateway = open_gateway(&rt, vm.net);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (stop, auth, http) = (stop.clone(), auth.clone(), vm.http);
            let known: Vec<String> = names.keys().cloned().collect();
            std::thread::spawn(move || write_until(http, &auth, cut, &stop, &known))
        };
        let payer = {
            let stop = stop.clone();
            std::thread::spawn(move || pay_until(gateway, &stop))
        };
        // The power goes while changes are being written: 0.5 to 4 s into them.
        std::thread::sleep(Duration::from_millis(500 + next() % 3500));
        vm.power_cycle();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (acked, in_flight) = writer.join().expect("writer");
        tickets.extend(payer.join().expect("payer"));
        acknowledged += acked.len();
        for change in acked {
            match change {
                Change::Created { id, name } | Change::Renamed { id, name } => {
                    names.insert(id, name);
                }
            }
        }

        let (boot, _) = vm.wait_healthy();
        let mut guest = Guest::connect(vm.state());
        let check = guest.ok(
            "runuser -u livepeer-edge -- livepeer-edge check-store --config /etc/livepeer-edge/config.toml",
        );
        assert_eq!(check.trim(), "ok", "after cut {cut}: {check}");
        let streams = vm.get_json(&auth, "/api/streams");
        let now: std::collections::BTreeMap<String, String> = streams
            .as_array()
            .expect("streams")
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap_or_default().to_string(),
                    s["name"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        for (id, name) in &names {
            let found = now.get(id);
            let landed = match &in_flight {
                Some(Change::Renamed { id: i, name: n }) if i == id => found == Some(n),
                _ => false,
            };
            assert!(
                found == Some(name) || landed,
                "after cut {cut}: stream {id} is {found:?}, acknowledged as {name:?}"
            );
        }
        // A rename in flight that landed is what the stream is called now.
        if let Some(Change::Renamed { id, name }) = &in_flight
            && now.get(id) == Some(name)
        {
            names.insert(id.clone(), name.clone());
        }
        // A create in flight that landed is a stream like the others from now on.
        if let Some(Change::Created { name, .. }) = &in_flight
            && let Some((id, _)) = now.iter().find(|(_, n)| *n == name)
        {
            names.insert(id.clone(), name.clone());
        }
        eprintln!(
            "cut {cut}/{cuts}: {} streams as acknowledged ({acknowledged} changes, {} winning tickets so far), store ok; \
             {:.0} s, {:.0} s of it the boot to a healthy node",
            names.len(),
            tickets.len(),
            cycle.elapsed().as_secs_f64(),
            boot.as_secs_f64(),
        );
    }
    assert!(
        acknowledged >= cuts,
        "only {acknowledged} changes acknowledged in {cuts} cuts"
    );
    assert!(
        tickets.len() >= cuts,
        "only {} winning tickets acknowledged in {cuts} cuts",
        tickets.len()
    );

    // Every winning ticket the node acknowledged is redeemed, once the params it was issued
    // under expire (L1 block = block number on this chain).
    rt.block_on(common::evm::mine(&chain.admin, 50));
    let broker = rt
        .block_on(lpe_money::chain::ChainClient::connect(
            &chain.node.url,
            chain.controller,
            None,
        ))
        .expect("chain");
    let started = Instant::now();
    loop {
        let unused = tickets
            .iter()
            .filter(|h| !rt.block_on(broker.is_used(**h)).expect("usedTickets"))
            .count();
        if unused == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{unused} of {} acknowledged winning tickets never redeemed",
            tickets.len()
        );
        std::thread::sleep(Duration::from_secs(5));
    }
    eprintln!(
        "{} acknowledged winning tickets redeemed on chain {} s after the last cut",
        tickets.len(),
        started.elapsed().as_secs()
    );
}
