//! Reliability of the money plane: a gateway streams payments full of winning tickets to a
//! node that is SIGKILLed at random moments (between and during requests) and restarted; in
//! the end every winning ticket the node acknowledged is redeemed on chain exactly once.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use common::evm::{GATEWAY, ORCHESTRATOR, import_key, key, mine, start_payment_node, world};
use k256::ecdsa::SigningKey;
use lpe_money::chain::ChainClient;
use lpe_pm::recipient::price_from_info;
use lpe_pm::sender::Sender;
use lpe_pm::wire::{PriceInfo, encode_payment_header, params_from_wire, payment_for_batch};
use lpe_pm::{B256, U256};
use serde_json::json;

const PASSWORD: &str = "orchestrator-pass";
const WINNERS: usize = 200;

/// splitmix64, seeded: the kill schedule is random but reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
}

fn kill9(pid: u32) {
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_winners_are_redeemed_exactly_once_across_sigkills() {
    let w = world(10_000).await;
    let gateway_chain = ChainClient::connect(&w.node.url, w.controller, Some(key(GATEWAY)))
        .await
        .expect("gateway");
    let eth = U256::from(10u64).pow(U256::from(18u8));
    gateway_chain
        .fund_deposit_and_reserve(eth * U256::from(5u8), eth * U256::from(5u8))
        .await
        .expect("fund");

    let dir = tempfile::tempdir().expect("tempdir");
    import_key(dir.path(), ORCHESTRATOR, PASSWORD);
    let controller = w.controller.to_string();
    let mut node = start_payment_node(
        dir.path(),
        &w.node.url,
        &controller,
        "orchestrator",
        PASSWORD,
    );
    let mut sender =
        Sender::new(SigningKey::from_slice(&hex::decode(GATEWAY).expect("hex")).expect("key"));
    let mut rng = Rng(0xdead_10cc);
    let mut acked: HashSet<B256> = HashSet::new();
    let mut kills = 0;
    let mut session: Option<String> = None;
    let started = Instant::now();
    while acked.len() < WINNERS {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "too slow: {} acked",
            acked.len()
        );
        if session.is_none() {
            let (st, v) = node.send(
                "POST",
                "/api/pm/ticket-params",
                Some(&json!({"sender": sender.address().to_string()}).to_string()),
            );
            if st != 200 {
                node = start_payment_node(
                    dir.path(),
                    &w.node.url,
                    &controller,
                    "orchestrator",
                    PASSWORD,
                );
                continue;
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v["ticket_params"].as_str().expect("params"))
                .expect("base64");
            let wire: lpe_pm::wire::TicketParams =
                prost::Message::decode(bytes.as_slice()).expect("protobuf");
            let params = params_from_wire(&wire).expect("params");
            assert_eq!(params.win_prob, U256::MAX, "every ticket should win");
            let price = price_from_info(
                v["price_per_unit"].as_i64().expect("ppu"),
                v["pixels_per_unit"].as_i64().expect("pxu"),
            )
            .expect("price");
            session = Some(sender.start_session(params, price));
        }
        let sid = session.clone().expect("session");
        let batch = sender
            .create_batch(&sid, 1 + (rng.next() % 4) as u32)
            .expect("batch");
        let header = encode_payment_header(&payment_for_batch(
            &batch,
            &PriceInfo {
                price_per_unit: 1,
                pixels_per_unit: 1,
                ..Default::default()
            },
        ));
        // Sometimes the node dies while this very request is in flight.
        let killer = rng.next().is_multiple_of(6).then(|| {
            let pid = node.pid();
            let delay = Duration::from_micros(rng.next() % 20_000);
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                kill9(pid);
            })
        });
        let url = node.url("/payment");
        let result = ureq::post(&url)
            .header("Livepeer-Payment", &header)
            .send_empty();
        if let Some(k) = killer {
            let _ = k.join();
            kills += 1;
            node = start_payment_node(
                dir.path(),
                &w.node.url,
                &controller,
                "orchestrator",
                PASSWORD,
            );
            session = None; // a restarted node has a new secret: fresh params
        }
        match result {
            Ok(mut res) => {
                let v: serde_json::Value = res.body_mut().read_json().expect("receipt");
                assert_eq!(v["won"].as_u64(), Some(batch.tickets.len() as u64), "{v}");
                for t in &batch.tickets {
                    acked.insert(t.ticket.hash());
                }
            }
            Err(_) => session = None,
        }
        // And sometimes between requests.
        if rng.next().is_multiple_of(9) {
            kill9(node.pid());
            kills += 1;
            node = start_payment_node(
                dir.path(),
                &w.node.url,
                &controller,
                "orchestrator",
                PASSWORD,
            );
            session = None;
        }
    }
    assert!(kills >= 5, "only {kills} kills");

    // Let every params set expire (L1 block = block number here), then wait for redemption.
    mine(&w.admin, 50).await;
    let orch_chain = ChainClient::connect(&w.node.url, w.controller, None)
        .await
        .expect("chain");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let mut unused = 0;
        for h in &acked {
            if !orch_chain.is_used(*h).await.expect("usedTickets") {
                unused += 1;
            }
        }
        if unused == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{unused} acknowledged winners never redeemed: {}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Exactly once: one WinningTicketRedeemed per (sender, nonce, session), no failures.
    let events = orch_chain
        .redeemed_events(key(ORCHESTRATOR).address(), 0)
        .await
        .expect("events");
    let mut per_tx: HashMap<B256, usize> = HashMap::new();
    for e in &events {
        *per_tx.entry(e.3).or_default() += 1;
    }
    assert!(
        events.len() >= acked.len(),
        "{} events for {} winners",
        events.len(),
        acked.len()
    );
    assert!(per_tx.values().all(|&n| n == 1));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = node.get("/api/pm/tickets?limit=1000");
        let c = &v["counts"];
        if c["pending"] == 0 {
            assert_eq!(c["failed"], 0, "{v}");
            assert_eq!(c["redeemed"].as_u64(), Some(events.len() as u64), "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "queue never drained: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
