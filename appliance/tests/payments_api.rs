//! Payments through the node's own surfaces on a real EVM: gateway funding from the CLI and
//! the HTTP API, bad payments refused with go-livepeer's classes, and a storage failure that
//! refuses the payment instead of accepting it unrecorded.

mod common;

use std::process::Command;

use base64::Engine;
use common::evm::{GATEWAY, ORCHESTRATOR, import_key, key, pm_env, start_payment_node, world};
use k256::ecdsa::SigningKey;
use lpe_pm::U256;
use lpe_pm::recipient::price_from_info;
use lpe_pm::sender::Sender;
use lpe_pm::wire::{PriceInfo, encode_payment_header, params_from_wire, payment_for_batch};
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
    // Paying is for orchestrators: a gateway has no /payment.
    let (st, _) = node.send("POST", "/payment", None);
    assert_eq!(st, 503);
}

struct Paying {
    sender: Sender,
    session: String,
}

fn params(node: &common::NodeProc, sender: &mut Sender) -> String {
    let (st, v) = node.send(
        "POST",
        "/api/pm/ticket-params",
        Some(&json!({"sender": sender.address().to_string()}).to_string()),
    );
    assert_eq!(st, 200, "{v}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["ticket_params"].as_str().expect("params"))
        .expect("base64");
    let wire: lpe_pm::wire::TicketParams =
        prost::Message::decode(bytes.as_slice()).expect("protobuf");
    let p = params_from_wire(&wire).expect("params");
    sender.start_session(p, price_from_info(1, 1).expect("price"))
}

fn pay(node: &common::NodeProc, header: &str) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut res = agent
        .post(&node.url("/payment"))
        .header("Livepeer-Payment", header)
        .send_empty()
        .expect("request");
    let st = res.status().as_u16();
    (st, res.body_mut().read_json().unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payments_and_storage_failures_are_refused() {
    let w = world(10_000).await;
    let eth = U256::from(10u64).pow(U256::from(18u8));
    livepeer_edge::chain::ChainClient::connect(&w.node.url, w.controller, Some(key(GATEWAY)))
        .await
        .expect("gateway")
        .fund_deposit_and_reserve(eth, eth)
        .await
        .expect("fund");
    let dir = tempfile::tempdir().expect("tempdir");
    import_key(dir.path(), ORCHESTRATOR, PASSWORD);
    let node = start_payment_node(
        dir.path(),
        &w.node.url,
        &w.controller.to_string(),
        "orchestrator",
        PASSWORD,
    );
    let mut sender =
        Sender::new(SigningKey::from_slice(&hex::decode(GATEWAY).expect("hex")).expect("key"));
    let sid = params(&node, &mut sender);
    let mut p = Paying {
        sender,
        session: sid,
    };
    let price = PriceInfo {
        price_per_unit: 1,
        pixels_per_unit: 1,
        ..Default::default()
    };

    // Not a payment at all.
    let (st, v) = node.send("POST", "/payment", None);
    assert_eq!((st, v["error"]["code"].as_str()), (402, Some("no_payment")));
    assert_eq!(pay(&node, "%%%not base64").0, 402);
    assert_eq!(pay(&node, "/////w==").0, 402);

    // A good one, then the same again: the nonces are already seen (non-fatal).
    let batch = p.sender.create_batch(&p.session, 2).expect("batch");
    let header = encode_payment_header(&payment_for_batch(&batch, &price));
    let (st, v) = pay(&node, &header);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["won"], 2);
    let (st, v) = pay(&node, &header);
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("ticket_rejected")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("already seen")),
        "{v}"
    );

    // Params tampered with (faceValue changed and re-signed): fatal rand mismatch.
    let mut batch = p.sender.create_batch(&p.session, 1).expect("batch");
    let mut payment = payment_for_batch(&batch, &price);
    if let Some(tp) = payment.ticket_params.as_mut() {
        tp.face_value = lpe_pm::minbytes(batch.params.face_value + U256::from(1u8));
    }
    let (st, v) = pay(&node, &encode_payment_header(&payment));
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("ticket_rejected_fatal")),
        "{v}"
    );
    // A zero sender.
    batch.sender = lpe_pm::Address::ZERO;
    let (st, v) = pay(
        &node,
        &encode_payment_header(&payment_for_batch(&batch, &price)),
    );
    assert_eq!(
        (st, v["error"]["message"].as_str()),
        (400, Some("invalid ticket sender")),
        "{v}"
    );

    // Storage fails (another process holds the database's write lock): the payment is
    // refused and nothing of it is recorded or credited.
    let (_, before) = node.get("/api/pm/tickets");
    let db = rusqlite::Connection::open(dir.path().join("node.db")).expect("db");
    db.execute_batch("BEGIN EXCLUSIVE;").expect("lock");
    let batch = p.sender.create_batch(&p.session, 3).expect("batch");
    let header = encode_payment_header(&payment_for_batch(&batch, &price));
    let (st, v) = pay(&node, &header);
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (503, Some("storage")),
        "{v}"
    );
    db.execute_batch("ROLLBACK;").expect("unlock");
    let (_, after) = node.get("/api/pm/tickets");
    assert_eq!(
        before["counts"], after["counts"],
        "a refused payment left a trace"
    );
    // Once storage is back, new tickets are accepted.
    let batch = p.sender.create_batch(&p.session, 1).expect("batch");
    let (st, v) = pay(
        &node,
        &encode_payment_header(&payment_for_batch(&batch, &price)),
    );
    assert_eq!(st, 200, "{v}");
}
