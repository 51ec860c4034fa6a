//! The web UI in headless Chromium (Playwright through playwright-core), served by a real node
//! from the built assets in `web-ui/dist`: setup, sign-in, adding an RTMP stream, a playing
//! preview, device charts, a phone-sized layout. Screenshots land in
//! `target/ui-artifacts/`.

mod common;

use std::path::PathBuf;
use std::process::Command;

#[test]
fn an_operator_sets_up_the_box_and_watches_a_stream_in_the_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let ui = root.join("web-ui");
    assert!(
        ui.join("dist/index.html").is_file(),
        "build the UI first (scripts/deps.sh runs `npm run build` in web-ui/)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ui_dir = ui.join("dist");
    let node = common::NodeProc::start_without_setup_with(
        dir.path(),
        &[("LPE_HTTP_UI_DIR", ui_dir.to_str().expect("utf-8"))],
    );
    let code = node.setup_code().expect("setup code");
    let artifacts = root.join("target/ui-artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    let out = Command::new("node")
        .arg(ui.join("tests/e2e.mjs"))
        .env("BASE_URL", node.url(""))
        .env("SETUP_CODE", &code)
        .env("ARTIFACTS", &artifacts)
        .current_dir(&ui)
        .output()
        .expect("node (Node.js)");
    assert!(
        out.status.success(),
        "browser walk failed (screenshots in {}):\n{}\n{}\nnode log:\n{}",
        artifacts.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    // What the walk measured (the preview's recovery after a reconnect).
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    let shots = std::fs::read_dir(&artifacts).expect("artifacts").count();
    assert!(shots >= 8, "only {shots} screenshots");
}
