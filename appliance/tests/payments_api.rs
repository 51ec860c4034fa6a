//! Payments through the node's own surfaces on a real EVM: gateway funding from the CLI and
//! the HTTP API, bad payments refused with go-livepeer's classes, storage failures (a locked
//! database, a full disk, a read-only data directory) that refuse the payment instead of
//! accepting it unrecorded, and the block watcher: no RPC per payment, outages survived.

mod common;

use std::process::Command;

use std::time::{Duration, Instant};

use common::RpcProxy;
use common::evm::{
    GATEWAY, ORCHESTRATOR, import_key, key, next_round, pm_env, start_orchestrator,
    start_payment_node, start_payment_node_with, start_payment_node_wrapped, world,
};
use common::wire::{WireGateway, funded_gateway, gateway_key};
use k256::ecdsa::SigningKey;
use lpe_pm::U256;
use lpe_pm::recipient::price_from_info;
use lpe_pm::sender::Sender;
use lpe_pm::wire::{PriceInfo, encode_payment_header, payment_for_batch};
use serde_json::{Value, json};

const PASSWORD: &str = "pw-for-tests";

fn cli(data: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livepeer-edge"));
    cmd.arg("pm").args(args).arg("--data-dir").arg(data);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout).unwrap_or(Value::String(stdout)),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_funds_from_the_cli_and_the_api() {
    let w = world(10_000).await;
    let dir = tempfile::tempdir().expect("tempdir");
    import_key(dir.path(), GATEWAY, PASSWORD);
    let controller = w.controller.to_string();
    let env = pm_env(&w.node.url, &controller, "gateway", PASSWORD);
    let eth = "1000000000000000000";
    let (code, v, err) = cli(
        dir.path(),
        &["fund", "--deposit", eth, "--reserve", "2000000000000000000"],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(v["tx_hash"].as_str().is_some_and(|h| h.len() == 66), "{v}");
    let (code, v, err) = cli(dir.path(), &["info"], &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["deposit"], eth);
    assert_eq!(v["reserve"], "2000000000000000000");
    assert_eq!(
        v["address"].as_str().map(str::to_lowercase),
        Some(key(GATEWAY).address().to_string().to_lowercase())
    );
    let (code, _, err) = cli(dir.path(), &["cancel-unlock"], &env);
    assert_eq!(code, 1);
    assert!(err.contains("no unlock request in progress"), "{err}");
    let (code, _, err) = cli(
        dir.path(),
        &["fund", "--deposit", "lots", "--reserve", "0"],
        &env,
    );
    assert_eq!(code, 1);
    assert!(err.contains("not an amount"), "{err}");

    let node = start_payment_node(dir.path(), &w.node.url, &controller, "gateway", PASSWORD);
    let (st, v) = node.get("/api/pm/wallet");
    assert_eq!(st, 200);
    assert_eq!(
        (v["role"].as_str(), v["deposit"].as_str()),
        (Some("gateway"), Some(eth))
    );
    assert!(!v.to_string().contains(PASSWORD));
    let (st, v) = node.send(
        "POST",
        "/api/pm/fund",
        Some(&json!({"deposit": "5", "reserve": "0"}).to_string()),
    );
    assert_eq!(st, 200, "{v}");
    let (_, v) = node.get("/api/pm/wallet");
    assert_eq!(v["deposit"], "1000000000000000005");
    let (_, events) = node.get("/api/events?limit=10");
    assert!(
        events
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["kind"] == "funding_changed"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("deposit 5 wei"))),
        "{events}"
    );
    let (st, v) = node.send(
        "POST",
        "/api/pm/fund",
        Some(&json!({"deposit": "-1", "reserve": "0"}).to_string()),
    );
    assert_eq!(
        (st, v["error"]["field"].as_str()),
        (422, Some("deposit")),
        "{v}"
    );
    let (st, v) = node.send("POST", "/api/pm/unlock", None);
    assert_eq!(st, 200, "{v}");
    let (st, v) = node.send("POST", "/api/pm/unlock", None);
    assert_eq!(
        (st, v["error"]["message"].as_str()),
        (409, Some("unlock already initiated")),
        "{v}"
    );
    let (st, v) = node.send("POST", "/api/pm/cancel-unlock", None);
    assert_eq!(st, 200, "{v}");
    let (_, v) = node.get("/api/pm/wallet");
    assert_eq!(v["withdraw_round"], "0");
    // Paying is for orchestrators: a gateway has no network port to pay at.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", node.net)).is_err(),
        "a gateway serves the orchestrator's port"
    );
}

/// `POST /payment` on the node's network port with `header`: the status and go-livepeer's text.
fn pay(p: &WireGateway, header: &str) -> (u16, String) {
    let (st, body) = p.pay_header(header);
    (st, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payments_and_storage_failures_are_refused() {
    let w = world(10_000).await;
    let eth = U256::from(10u64).pow(U256::from(18u8));
    lpe_money::chain::ChainClient::connect(&w.node.url, w.controller, Some(key(GATEWAY)))
        .await
        .expect("gateway")
        .fund_deposit_and_reserve(eth, eth)
        .await
        .expect("fund");
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_orchestrator(dir.path(), &w.node.url, w.controller, PASSWORD);
    let mut p = paying(&node).await;
    let price = p.price.clone();

    // Not a payment at all: with no sender, the credentials cannot be the sender's.
    assert_eq!(pay(&p, ""), (403, "ErrSegSig\n".into()));
    let (st, v) = pay(&p, "%%%not base64");
    assert_eq!(st, 402, "{v}");
    assert!(v.starts_with("base64 decode error"), "{v}");
    let (st, v) = pay(&p, "/////w==");
    assert_eq!(st, 402, "{v}");
    assert!(v.starts_with("protobuf unmarshal error"), "{v}");

    // A good one, then the same again: the nonces are already seen (non-fatal).
    let batch = p.sender.create_batch(&p.session, 2).expect("batch");
    let header = encode_payment_header(&payment_for_batch(&batch, &price));
    let (st, v) = pay(&p, &header);
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        node.get("/api/pm/tickets").1["counts"]["received"].as_u64(),
        Some(2)
    );
    let (_, events) = node.get("/api/events?limit=20");
    assert!(
        events
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["kind"] == "ticket_won")),
        "{events}"
    );
    let (st, v) = pay(&p, &header);
    assert_eq!(st, 400, "{v}");
    assert!(
        v.contains("invalid ticket senderNonce: already seen"),
        "{v}"
    );

    // Params tampered with (faceValue changed and re-signed): fatal rand mismatch.
    let mut batch = p.sender.create_batch(&p.session, 1).expect("batch");
    let mut payment = payment_for_batch(&batch, &price);
    if let Some(tp) = payment.ticket_params.as_mut() {
        tp.face_value = lpe_pm::minbytes(batch.params.face_value + U256::from(1u8));
    }
    let (st, v) = pay(&p, &encode_payment_header(&payment));
    assert_eq!(
        (st, v.as_str()),
        (400, "invalid recipientRand for ticket recipientRandHash\n")
    );
    // A zero sender: the credentials are not its.
    batch.sender = lpe_pm::Address::ZERO;
    let (st, v) = pay(
        &p,
        &encode_payment_header(&payment_for_batch(&batch, &price)),
    );
    assert_eq!((st, v.as_str()), (403, "ErrSegSig\n"));

    // Storage fails (another process holds the database's write lock): the payment is
    // refused and nothing of it is recorded or credited.
    let (_, before) = node.get("/api/pm/tickets");
    let db = rusqlite::Connection::open(dir.path().join("node.db")).expect("db");
    db.execute_batch("BEGIN EXCLUSIVE;").expect("lock");
    let batch = p.sender.create_batch(&p.session, 3).expect("batch");
    let header = encode_payment_header(&payment_for_batch(&batch, &price));
    let (st, v) = pay(&p, &header);
    assert_eq!((st, v.as_str()), (503, "storage unavailable\n"));
    db.execute_batch("ROLLBACK;").expect("unlock");
    let (_, after) = node.get("/api/pm/tickets");
    assert_eq!(
        before["counts"], after["counts"],
        "a refused payment left a trace"
    );
    // Once storage is back, new tickets are accepted.
    let batch = p.sender.create_batch(&p.session, 1).expect("batch");
    let (st, v) = pay(
        &p,
        &encode_payment_header(&payment_for_batch(&batch, &price)),
    );
    assert_eq!(st, 200, "{v}");
}

async fn paying(node: &common::NodeProc) -> WireGateway {
    WireGateway::open(&node.net_url(), gateway_key())
        .await
        .expect("the orchestrator's info")
}

const PRICE: PriceInfo = PriceInfo {
    price_per_unit: 1,
    pixels_per_unit: 1,
    capability: 0,
    constraint: String::new(),
};

fn wait_until(what: &str, node: &common::NodeProc, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: {}", node.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn has_event(node: &common::NodeProc, kind: &str) -> bool {
    let (_, v) = node.get("/api/events?limit=200");
    v.as_array()
        .is_some_and(|a| a.iter().any(|e| e["kind"] == kind))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_make_no_rpc_calls_and_survive_chain_outages() {
    let w = world(10_000).await;
    let gateway = funded_gateway(&w).await;
    let proxy = RpcProxy::start(w.node.port);
    let dir = tempfile::tempdir().expect("tempdir");
    import_key(dir.path(), ORCHESTRATOR, PASSWORD);
    let controller = w.controller.to_string();
    // The reward call reads the chain on its own schedule; what is measured here is what
    // payments read.
    let node = start_payment_node_with(
        dir.path(),
        &proxy.url(),
        &controller,
        "orchestrator",
        PASSWORD,
        &[],
        &[("LPE_PM_REWARD", "false")],
    );
    let mut p = paying(&node).await;
    let first = p.sender.create_batch(&p.session, 1).expect("batch");
    let (st, v) = pay(
        &p,
        &encode_payment_header(&payment_for_batch(&first, &PRICE)),
    );
    assert_eq!(st, 200, "{v}");

    // Steady state: the watcher polls for blocks; payments themselves call nothing.
    let before = proxy.methods().len();
    for _ in 0..20 {
        let b = p.sender.create_batch(&p.session, 1).expect("batch");
        let (st, v) = pay(&p, &encode_payment_header(&payment_for_batch(&b, &PRICE)));
        assert_eq!(st, 200, "{v}");
    }
    let during = proxy.methods()[before..].to_vec();
    assert!(
        during.iter().all(|m| m == "eth_getBlockByNumber"),
        "RPC calls made while receiving payments: {during:?}"
    );
    // What costs nothing is checked first: payments from strangers who copied another
    // sender's params are refused without a sender lookup, and asking for params again
    // reads nothing from the chain.
    let copied = p.params();
    let before = proxy.methods().len();
    for i in 0..40u8 {
        let key = SigningKey::from_slice(&[i + 1; 32]).expect("a stranger's key");
        let mut stranger = Sender::new(key.clone());
        let session = stranger.start_session(copied.clone(), price_from_info(1, 1).expect("price"));
        let b = stranger.create_batch(&session, 1).expect("batch");
        // The stranger signs its own credentials, with the gateway's session token.
        let as_stranger = WireGateway {
            key,
            sender: stranger,
            session,
            uri: p.uri.clone(),
            info: p.info.clone(),
            token: p.token.clone(),
            price: p.price.clone(),
        };
        let (st, v) = pay(
            &as_stranger,
            &encode_payment_header(&payment_for_batch(&b, &PRICE)),
        );
        assert_eq!(st, 400, "{v}");
    }
    for _ in 0..5 {
        paying(&node).await;
    }
    let during = proxy.methods()[before..].to_vec();
    assert!(
        during.iter().all(|m| m == "eth_getBlockByNumber"),
        "RPC calls for strangers' payments or repeated params: {during:?}"
    );
    // A replayed payment is refused, and its tickets are not counted as received.
    let received = node.get("/api/pm/tickets").1["counts"]["received"].clone();
    let b = p.sender.create_batch(&p.session, 1).expect("batch");
    let header = encode_payment_header(&payment_for_batch(&b, &PRICE));
    assert_eq!(pay(&p, &header).0, 200);
    assert_eq!(pay(&p, &header).0, 400, "a replay was accepted");
    let after = node.get("/api/pm/tickets").1["counts"]["received"].clone();
    assert_eq!(
        after.as_u64(),
        received.as_u64().map(|r| r + 1),
        "{received} then {after}"
    );

    let (st, v) = node.get("/api/pm/chain");
    assert_eq!((st, v["reachable"].as_bool()), (200, Some(true)), "{v}");
    assert!(v["head"]["block"].as_u64().is_some_and(|b| b > 0), "{v}");

    // An outage is reported, payments go on against the last head, and recovery is reported.
    proxy.set_down(true);
    wait_until("outage never noticed", &node, || {
        node.get("/api/pm/chain").1["reachable"] == false
    });
    assert!(has_event(&node, "chain_unavailable"));
    let (st, h) = node.get("/api/health");
    assert_eq!(st, 200, "{h}");
    assert_eq!(h["checks"]["chain"]["status"], "degraded", "{h}");
    let b = p.sender.create_batch(&p.session, 1).expect("batch");
    let (st, v) = pay(&p, &encode_payment_header(&payment_for_batch(&b, &PRICE)));
    assert_eq!(st, 200, "{v}");
    proxy.set_down(false);
    wait_until("recovery never noticed", &node, || {
        node.get("/api/pm/chain").1["reachable"] == true
    });
    assert!(has_event(&node, "chain_recovered"));

    // The sender unlocks: the Unlock event drops the cached state; once the unlock is a
    // round away, new tickets are refused.
    gateway.unlock().await.expect("unlock");
    let round = node.get("/api/pm/chain").1["head"]["last_initialized_round"].clone();
    next_round(&w).await;
    wait_until("new round never seen", &node, || {
        node.get("/api/pm/chain").1["head"]["last_initialized_round"] != round
    });
    let mut p = paying(&node).await;
    let b = p.sender.create_batch(&p.session, 1).expect("batch");
    let (st, v) = pay(&p, &encode_payment_header(&payment_for_batch(&b, &PRICE)));
    assert_eq!(st, 400, "{v}");
    assert!(v.contains("unlock"), "{v}");
}

/// Runs the node in its own mount namespace with a small tmpfs as its data directory, the
/// files of `stage` copied in; with `read_only` the tmpfs is made read-only before the start.
fn tmpfs_wrapper(mount: &std::path::Path, stage: &std::path::Path, read_only: bool) -> Vec<String> {
    let ro = if read_only {
        " && mount -o remount,ro \"$1\""
    } else {
        ""
    };
    vec![
        "unshare".into(),
        "-m".into(),
        "sh".into(),
        "-c".into(),
        format!(
            "mount -t tmpfs -o size=4m lpe-test \"$1\" && cp -a \"$2\"/. \"$1\"/{ro} && shift 2 && exec \"$@\""
        ),
        "sh".into(),
        mount.display().to_string(),
        stage.display().to_string(),
    ]
}

fn in_node_namespace(node: &common::NodeProc, script: &str) -> std::process::Output {
    Command::new("nsenter")
        .args(["-t", &node.pid().to_string(), "-m", "sh", "-c", script])
        .output()
        .expect("nsenter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_payments_and_loses_no_acknowledged_ticket() {
    let w = world(10_000).await;
    funded_gateway(&w).await;
    let stage = tempfile::tempdir().expect("stage");
    import_key(stage.path(), ORCHESTRATOR, PASSWORD);
    let mount = tempfile::tempdir().expect("mount point");
    let wrapper = tmpfs_wrapper(mount.path(), stage.path(), false);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let controller = w.controller.to_string();
    let node = start_payment_node_wrapped(
        mount.path(),
        &w.node.url,
        &controller,
        "orchestrator",
        PASSWORD,
        &wrapper,
    );
    let mut p = paying(&node).await;
    let pay_batch = |p: &mut WireGateway| {
        let b = p.sender.create_batch(&p.session, 5).expect("batch");
        let hashes: Vec<String> = b
            .tickets
            .iter()
            .map(|t| format!("{:#x}", t.ticket.hash()))
            .collect();
        let (st, v) = pay(p, &encode_payment_header(&payment_for_batch(&b, &PRICE)));
        (st, v, hashes)
    };
    // Winners acknowledged before the disk fills must survive it.
    let mut acknowledged = Vec::new();
    for _ in 0..3 {
        let (st, v, hashes) = pay_batch(&mut p);
        assert_eq!(st, 200, "{v}");
        acknowledged.extend(hashes);
    }
    let data = mount.path().display().to_string();
    let fill = in_node_namespace(
        &node,
        &format!("cat /dev/zero > '{data}/fill'; df '{data}'"),
    );
    assert!(
        String::from_utf8_lossy(&fill.stdout).contains("100%"),
        "the disk did not fill: {}",
        String::from_utf8_lossy(&fill.stdout)
    );

    // Pay until storage refuses; every acknowledged winner must be on disk.
    let mut refused = None;
    for _ in 0..200 {
        let (st, v, hashes) = pay_batch(&mut p);
        match (st, v.as_str()) {
            (200, _) => acknowledged.extend(hashes),
            (503, "storage unavailable\n") => {
                refused = Some(hashes);
                break;
            }
            other => panic!("unexpected answer {other:?}: {v}"),
        }
    }
    let refused = refused.expect("a full disk never refused a payment");
    assert!(
        node.log().contains("storage failed"),
        "log: {:?}",
        node.log()
    );

    // What is on disk: copy the database out of the namespace and read it.
    let copy = tempfile::tempdir().expect("copy");
    common::succeeded(
        in_node_namespace(
            &node,
            &format!(
                "rm '{data}/fill' && cp '{data}/node.db' '{data}/node.db-wal' '{}/'",
                copy.path().display()
            ),
        ),
        "copying the database out",
    );
    let db = rusqlite::Connection::open(copy.path().join("node.db")).expect("db copy");
    let on_disk: std::collections::HashSet<String> = db
        .prepare("SELECT ticket_hash FROM winning_tickets")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("hashes");
    for h in &acknowledged {
        assert!(
            on_disk.contains(h),
            "acknowledged ticket {h} is not on disk"
        );
    }
    for h in &refused {
        assert!(!on_disk.contains(h), "refused ticket {h} was recorded");
    }

    // Space is back: the refused tickets are not credited, new ones are accepted.
    let b = p.sender.create_batch(&p.session, 1).expect("batch");
    let (st, v) = pay(&p, &encode_payment_header(&payment_for_batch(&b, &PRICE)));
    assert_eq!(st, 200, "{v}");
}

#[test]
fn a_read_only_data_dir_stops_the_node_with_a_clear_error() {
    let stage = tempfile::tempdir().expect("stage");
    let mount = tempfile::tempdir().expect("mount point");
    let wrapper = tmpfs_wrapper(mount.path(), stage.path(), true);
    let out = Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .arg(env!("CARGO_BIN_EXE_livepeer-edge"))
        .args(["run", "--data-dir"])
        .arg(mount.path())
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--rtmp-listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is not writable") && err.contains("Read-only file system"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_chosen_at_setup_applies_when_the_configuration_leaves_it_off() {
    let w = world(10_000).await;
    let dir = tempfile::tempdir().expect("tempdir");
    import_key(dir.path(), ORCHESTRATOR, PASSWORD);
    let controller = w.controller.to_string();
    let env = pm_env(&w.node.url, &controller, "off", PASSWORD);
    let node = common::NodeProc::start_without_setup_with(dir.path(), &env);
    let code = node.setup_code().expect("code");
    let setup = node.call(
        "POST",
        "/api/setup",
        Some(
            &json!({"code": code, "password": common::ADMIN_PASSWORD,
                "device_name": "earner", "role": "both"})
            .to_string(),
        ),
        &[],
    );
    assert_eq!(setup.status, 200, "{}", setup.body);
    let cookie = common::session_cookie(&setup).expect("cookie");
    let csrf = setup.body["csrf_token"].as_str().expect("csrf").to_string();
    // Off until restarted: payments were not configured at start.
    let r = node.call("GET", "/api/pm/wallet", None, &[("cookie", &cookie)]);
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (409, json!("payments_off"))
    );
    let t = node.call(
        "POST",
        "/api/tokens",
        Some(r#"{"name":"t","role":"admin"}"#),
        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
    );
    std::fs::write(
        dir.path().join("admin-token"),
        t.body["token"].as_str().expect("token"),
    )
    .expect("token file");
    drop(node);

    // After a restart the node earns (and can fund) as chosen.
    let node = common::NodeProc::start_with(dir.path(), &env);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // The orchestrator's chain view exists only when the node earns.
    let (st, v) = loop {
        let (st, v) = node.get("/api/pm/chain");
        if st == 200 || std::time::Instant::now() > deadline {
            break (st, v);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["reachable"], true, "{v}");
    assert!(node.log().contains("payments role both (chosen at setup)"));
    let (_, wallet) = node.get("/api/pm/wallet");
    assert_eq!(wallet["role"], "both");
}
