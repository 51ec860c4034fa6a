//! The development image, booted: `image/build.sh` builds it (the dev-profile node, the Debian
//! tree from its cache), QEMU boots it under software emulation on a copy-on-write overlay,
//! and the node is reached through a forwarded loopback port, as a venue's installer would:
//! the setup code read off the serial console, first-boot setup over HTTP.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, kill_group, succeeded};

/// Firmware → GRUB → kernel → the node listening, under TCG on two cores (about 60 s here).
const BOOT: Duration = Duration::from_secs(300);

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
            let out = Command::new(repo().join("image/build.sh"))
                .env("IMAGE_PROFILE", "dev")
                .stdin(Stdio::null())
                .output()
                .expect("image/build.sh");
            let out = succeeded(out, "image/build.sh");
            let disk = String::from_utf8_lossy(&out.stdout).trim().to_string();
            repo().join(disk)
        })
        .clone()
}

/// One boot of the image: QEMU in its own process group, killed with everything it started
/// when dropped.
struct Vm {
    qemu: Child,
    http: u16,
    console: PathBuf,
    _dir: tempfile::TempDir,
}

impl Vm {
    fn boot(disk: &Path) -> Self {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let http = free_port();
        let rtmp = free_port();
        let console = dir.path().join("console.log");
        let mut qemu = Command::new(repo().join("image/run-vm.sh"));
        qemu.env("VM_STATE", dir.path())
            .env("IMAGE_DISK", disk)
            .env("HTTP_PORT", http.to_string())
            .env("RTMP_PORT", rtmp.to_string())
            .args(["-serial", &format!("file:{}", console.display())])
            .args(["-monitor", "none"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let qemu = qemu.spawn().expect("qemu");
        Self {
            qemu,
            http,
            console,
            _dir: dir,
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
            if let Ok(Some(status)) = self.qemu.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.qemu.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("QEMU ended ({status}): {err}\n{}", tail(&self.console()));
            }
            assert!(
                started.elapsed() < BOOT,
                "the node was not healthy after {} s; the console:\n{}",
                BOOT.as_secs(),
                tail(&self.console())
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The setup code the console shows (the node's warning, forwarded by journald).
    fn setup_code(&self) -> Option<String> {
        let console = self.console();
        let i = console.rfind("setup code ")?;
        Some(console[i + 11..].chars().take(11).collect())
    }
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

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn the_image_boots_to_a_healthy_node_and_first_boot_setup() {
    let disk = image();
    let mut vm = Vm::boot(&disk);
    let (took, health) = vm.wait_healthy();
    eprintln!("boot to a healthy node: {:.0} s", took.as_secs_f64());
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["checks"]["store"]["status"], "ok", "{health}");

    // The console names the device's address and, until setup is done, the setup code.
    let console = vm.console();
    assert!(
        console.contains("Open http://10.0.2.15/"),
        "{}",
        tail(&console)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(c) = vm.setup_code() {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "no setup code on the console:\n{}",
            tail(&vm.console())
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    let agent = agent();
    let r = agent
        .get(vm.url("/api/setup"))
        .call()
        .expect("setup status");
    assert_eq!(r.status(), 200);
    // A wrong code is refused; the console's is taken once.
    let setup = |code: &str| {
        agent
            .post(vm.url("/api/setup"))
            .send_json(serde_json::json!({
                "code": code, "password": common::ADMIN_PASSWORD,
                "device_name": "venue box", "role": "off"
            }))
    };
    let wrong = setup("AAAA-AAAA-A").expect("setup");
    assert_ne!(wrong.status(), 200, "a wrong setup code was accepted");
    let r = setup(&code).expect("setup");
    assert_eq!(r.status(), 200, "setup with the console's code failed");
    let again = setup(&code).expect("setup");
    assert_ne!(again.status(), 200, "the setup code worked twice");
    let r = agent
        .post(vm.url("/api/auth/login"))
        .send_json(serde_json::json!({
            "username": "admin", "password": common::ADMIN_PASSWORD
        }))
        .expect("login");
    assert_eq!(r.status(), 200, "the admin cannot log in");
}

impl Vm {
    /// First-boot setup with the console's code, then an admin API token.
    fn admin_token(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let code = loop {
            if let Some(c) = self.setup_code() {
                break c;
            }
            assert!(Instant::now() < deadline, "no setup code on the console");
            std::thread::sleep(Duration::from_millis(500));
        };
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
        let mut r = agent()
            .post(self.url("/api/system/update/bundle"))
            .header("authorization", auth)
            .header("content-type", "application/octet-stream")
            .header("content-length", size.to_string())
            .send(ureq::SendBody::from_reader(&mut file))
            .expect("upload");
        let status = r.status();
        let body: serde_json::Value = r.body_mut().read_json().unwrap_or_default();
        assert_eq!(status, 202, "upload refused: {body}");
        body
    }

    /// Polls the update until its job is in one of `states` (across a reboot).
    fn wait_job(&self, auth: &str, states: &[&str], timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.update_status(auth)
                && states.iter().any(|s| v["job"]["state"] == *s)
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "the update never reached {states:?}: {:?}\n{}",
                self.update_status(auth),
                tail(&self.console())
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }
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

/// The next version's bundle, signed by the development CA the image trusts.
fn next_bundle() -> PathBuf {
    let out = repo().join("target/image/next");
    let built = Command::new(repo().join("image/build.sh"))
        .env("IMAGE_PROFILE", "dev")
        .env("IMAGE_OUT", &out)
        .env("IMAGE_VERSION", "0.1.0-next")
        .stdin(Stdio::null())
        .output()
        .expect("image/build.sh");
    succeeded(built, "image/build.sh (next)");
    out.join("update.raucb")
}

#[test]
#[ignore = "the full VM suite (scripts/test-vm.sh): an update takes minutes under emulation"]
fn an_update_boots_the_other_slot_and_a_foreign_bundle_changes_nothing() {
    let disk = image();
    let next = next_bundle();
    let scratch = tempfile::tempdir().expect("tempdir");
    let foreign = foreign_bundle(scratch.path());
    let mut vm = Vm::boot(&disk);
    vm.wait_healthy();
    let auth = vm.admin_token();
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

    // The next version: installed to B, booted, marked good there.
    let started = Instant::now();
    vm.upload(&auth, &next);
    let done = vm.wait_job(&auth, &["succeeded", "failed"], Duration::from_secs(900));
    eprintln!(
        "upload + install + reboot + health: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(done["job"]["state"], "succeeded", "{done}");
    assert_eq!(done["system"]["booted"], "B", "{done}");
    let b = done["system"]["slots"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["bootname"] == "B"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(b["boot_status"], "good", "{done}");
    assert_eq!(b["bundle_version"], "0.1.0-next", "{done}");
}
