//! Reliability of the money plane: a gateway streams payments full of winning tickets to a
//! node that is SIGKILLed at random moments (between and during requests) and restarted; in
//! the end every winning ticket the node acknowledged is redeemed on chain exactly once.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::evm::{GATEWAY, ORCHESTRATOR, import_key, key, mine, start_payment_node, world};
use common::wire::WireGateway;
use k256::ecdsa::SigningKey;
use lpe_money::chain::ChainClient;
use lpe_pm::{B256, U256};

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
    let start = || {
        start_payment_node(
            dir.path(),
            &w.node.url,
            &controller,
            "orchestrator",
            PASSWORD,
        )
    };
    let mut node = start();
    let gateway_key = SigningKey::from_slice(&hex::decode(GATEWAY).expect("hex")).expect("key");
    let mut rng = Rng(0xdead_10cc);
    let mut acked: HashSet<B256> = HashSet::new();
    let mut kills = 0;
    let mut session: Option<WireGateway> = None;
    let started = Instant::now();
    while acked.len() < WINNERS {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "too slow: {} acked",
            acked.len()
        );
        if session.is_none() {
            match WireGateway::open(&node.net_url(), gateway_key.clone()).await {
                Ok(g) => {
                    assert_eq!(g.params().win_prob, U256::MAX, "every ticket should win");
                    session = Some(g);
                }
                Err(_) => {
                    node = start();
                    continue;
                }
            }
        }
        let Some(gateway) = session.as_mut() else {
            continue;
        };
        let batch = gateway.batch(1 + (rng.next() % 4) as u32);
        let header = gateway.header(&batch);
        // Sometimes the node dies while this very request is in flight.
        let killer = rng.next().is_multiple_of(6).then(|| {
            let pid = node.pid();
            let delay = Duration::from_micros(rng.next() % 20_000);
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                kill9(pid);
            })
        });
        let (status, _) = gateway.pay_header(&header);
        if let Some(k) = killer {
            let _ = k.join();
            kills += 1;
            node = start();
            session = None; // a restarted node has a new secret: fresh params
        }
        // A 200 acknowledges every ticket of the batch (each one wins).
        if status == 200 {
            for t in &batch.tickets {
                acked.insert(t.ticket.hash());
            }
        } else {
            session = None;
        }
        // And sometimes between requests.
        if rng.next().is_multiple_of(9) {
            kill9(node.pid());
            kills += 1;
            node = start();
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
