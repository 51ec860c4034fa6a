//! An orchestrator node's reward call on a local EVM: weighed against its fee, retried within
//! the round after a failure, sent with the pool hints the contract expects, once per round,
//! and shown in the API and to the fleet over MQTT.

mod common;

use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use common::NodeProc;
use common::evm::{BondingManager, Minter, ORCHESTRATOR, World, key, mine, set_active, set_paused};
use common::mqtt::{Broker, Observer};
use common::wire::payment_node;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

/// Blocks per round: long enough for a whole scenario to stay in one round (each transaction
/// mines a block), short enough to mine past.
const ROUND: u64 = 200;

fn reward(node: &NodeProc) -> Value {
    let (st, v) = node.get("/api/network/orchestrator");
    assert_eq!(st, 200, "{v}");
    v["reward"].clone()
}

fn wait_reward(node: &NodeProc, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = reward(node);
        if ok(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{what}; last: {r}\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The number of `kind` events recorded, once there are at least `n` (events reach the
/// store in batches) and no more came in a moment.
fn events(node: &NodeProc, kind: &str, n: usize) -> usize {
    let count = || {
        let (_, v) = node.get("/api/events?limit=1000");
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == kind)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    count()
}

async fn send<D: alloy::contract::CallDecoder>(
    call: alloy::contract::CallBuilder<&&alloy::providers::DynProvider, D>,
) {
    call.send()
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("receipt");
}

/// Three more transcoders around the orchestrator: A 1 000 000, O 100 000, B 100 000, C 50.
async fn pool(w: &World) -> (Address, Address) {
    let b = BondingManager::new(w.bonding, &w.admin);
    let (a, bb, c) = (
        Address::repeat_byte(0xaa),
        Address::repeat_byte(0xbb),
        Address::repeat_byte(0xcc),
    );
    for t in [a, bb, c] {
        send(b.register(t)).await;
    }
    for (t, stake) in [
        (key(ORCHESTRATOR).address(), 100_000u64),
        (a, 1_000_000),
        (bb, 100_000),
        (c, 50),
    ] {
        send(b.setStake(t, U256::from(stake))).await;
    }
    send(Minter::new(w.minter, &w.admin).setCurrentMintableTokens(U256::from(110_000u64))).await;
    (a, bb)
}

async fn stake(w: &World) -> U256 {
    BondingManager::new(w.bonding, &w.admin)
        .transcoderTotalStake(key(ORCHESTRATOR).address())
        .call()
        .await
        .expect("stake")
}

/// Mines to the first block of the next round without initializing it.
async fn to_next_round(w: &World) {
    let b = alloy::providers::Provider::get_block_number(&w.admin)
        .await
        .expect("block");
    mine(&w.admin, w.round_length - (b % w.round_length)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reward_is_called_once_a_round_with_exact_hints_and_retried_after_a_failure() {
    let w = common::evm::world(ROUND).await;
    pool(&w).await;
    let stake_before = stake(&w).await;
    let fast = [("LPE_PM_REWARD_POLL_MS", "300")];

    // A fee ceiling of one wei: the call is due, weighed and not sent.
    let mut env = fast.to_vec();
    env.push(("LPE_PM_REWARD_MAX_FEE", "1"));
    let (dir, mut node) = payment_node(&w, ORCHESTRATOR, "orchestrator", &env);
    let r = wait_reward(&node, "never skipped", |r| r["state"] == "skipped");
    assert!(
        r["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("above the 1 wei allowed"),
        "{r}"
    );
    // 110 000 × 100 000 / 1 200 050, rounded down.
    assert_eq!(r["estimated_reward"], "9166", "{r}");
    let fee: u128 = r["estimated_fee"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .expect("fee");
    assert!(fee > 1, "{r}");
    assert_eq!(
        events(&node, "reward_skipped", 1),
        1,
        "one event per round and reason"
    );
    assert_eq!(stake(&w).await, stake_before);
    node.kill();
    drop(dir);

    // The system paused: the attempt fails with the contract's reason and is retried; once
    // unpaused, the next poll of the same round calls it.
    set_paused(&w, true).await;
    let broker = Broker::start();
    let obs = Observer::connect(broker.port, &["livepeer-edge/o1/#"]);
    let mqtt_url = broker.url();
    let mut env = fast.to_vec();
    env.extend([
        ("LPE_MQTT_URL", mqtt_url.as_str()),
        ("LPE_MQTT_DEVICE_ID", "o1"),
        ("LPE_MQTT_TELEMETRY_SECONDS", "1"),
    ]);
    let (_dir, node) = payment_node(&w, ORCHESTRATOR, "orchestrator", &env);
    let r = wait_reward(&node, "never retried", |r| {
        r["state"] == "failed" && r["attempts"].as_u64().unwrap_or(0) >= 2
    });
    assert!(
        r["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("system is paused"),
        "{r}"
    );
    assert_eq!(events(&node, "reward_failed", 1), 1, "{r}");
    let round = r["current_round"].clone();
    set_paused(&w, false).await;
    let r = wait_reward(&node, "never called", |r| r["state"] == "done");
    assert_eq!(
        r["current_round"], round,
        "called in the round it failed in: {r}"
    );
    assert_eq!(r["last_round"], round, "{r}");
    assert_eq!(r["last_reward_round"], round, "{r}");
    assert_eq!(r["last_minted"], "9166", "{r}");
    assert!(
        r["last_tx"].as_str().unwrap_or_default().starts_with("0x"),
        "{r}"
    );
    assert_ne!(r["last_fee"], "0", "{r}");
    assert_eq!(stake(&w).await, stake_before + U256::from(9166u64));
    let bonding = BondingManager::new(w.bonding, &w.admin);
    assert!(
        bonding.lastRewardHintsExact().call().await.expect("hints"),
        "the hints named the orchestrator's neighbours after its reward"
    );
    assert_eq!(events(&node, "reward_called", 1), 1);

    // The fleet sees it: the event, the telemetry, and the on-chain status on request.
    obs.wait("livepeer-edge/o1/events", T, |m| {
        m.json()["kind"] == "reward_called"
    });
    obs.wait("livepeer-edge/o1/telemetry", T, |m| {
        m.json()["reward"]["last_minted"] == "9166"
    });
    obs.publish(
        "livepeer-edge/o1/cmd/orchestrator_status",
        &json!({"request_id": "s1"}).to_string(),
        false,
    );
    let done = obs
        .wait("livepeer-edge/o1/cmd/orchestrator_status/result", T, |m| {
            m.json()["state"] == "succeeded"
        })
        .json();
    let status = &done["result"];
    assert_eq!(status["in_pool"], true, "{done}");
    assert_eq!(status["active"], true, "{done}");
    assert_eq!(status["reward"]["state"], "done", "{done}");

    // Once per round: more polls in this round send nothing.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(events(&node, "reward_called", 1), 1);

    // A new round that is not initialized yet: waiting; initialized: called again.
    to_next_round(&w).await;
    let r = wait_reward(&node, "never waited for the round", |r| {
        r["state"] == "waiting"
    });
    assert_ne!(r["current_round"], round, "{r}");
    common::evm::initialize_round(&w).await;
    let r = wait_reward(&node, "never called in the new round", |r| {
        r["state"] == "done" && r["last_round"] != round
    });
    assert_eq!(r["last_round"], r["current_round"], "{r}");
    assert_eq!(events(&node, "reward_called", 2), 2);
    assert!(bonding.lastRewardHintsExact().call().await.expect("hints"));

    // Out of the active set: nothing to call.
    set_active(&w, key(ORCHESTRATOR).address(), false).await;
    common::evm::next_round(&w).await;
    wait_reward(&node, "never saw itself inactive", |r| {
        r["state"] == "not_active"
    });
    assert_eq!(events(&node, "reward_called", 2), 2);
}
