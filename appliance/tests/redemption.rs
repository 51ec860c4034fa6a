//! The redemption queue against a real EVM, driven through the node's own payment route: a
//! revert that can pass later (a paused protocol) leaves the ticket waiting and it is
//! redeemed once the cause is gone; the amount recorded is what the broker transferred, not
//! the face value; a node outside the active set waits; a ticket past the broker's validity
//! period is marked expired.

mod common;

use std::time::{Duration, Instant};

use common::NodeProc;
use common::evm::{
    GATEWAY, ORCHESTRATOR, World, key, mine, next_round, set_active, set_paused,
    start_orchestrator, world,
};
use common::wire::WireGateway;
use lpe_money::chain::ChainClient;
use lpe_pm::U256;
use serde_json::Value;

const PASSWORD: &str = "redeem-pass";

/// Pays the node `n` winning tickets from the gateway on fresh params, through its network
/// port as a go-livepeer gateway would.
async fn pay_winners(node: &NodeProc, n: u32) {
    let key =
        k256::ecdsa::SigningKey::from_slice(&hex::decode(GATEWAY).expect("hex")).expect("key");
    let mut gateway = WireGateway::open(&node.net_url(), key)
        .await
        .expect("the orchestrator's info");
    assert_eq!(gateway.params().win_prob, U256::MAX, "every ticket wins");
    let batch = gateway.batch(n);
    gateway.pay(&batch).expect("payment");
}

fn tickets(node: &NodeProc) -> Value {
    node.get("/api/pm/tickets?limit=100").1
}

async fn wait_for(node: &NodeProc, what: &str, mut ok: impl FnMut(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = tickets(node);
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v}\n{}", node.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn expire_params(w: &World) {
    // Params live a few blocks (the L1 block is the block number here).
    mine(&w.admin, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_through_transient_reverts_records_what_arrived_and_expires_old_tickets() {
    let w = world(10_000).await;
    let eth = U256::from(10u64).pow(U256::from(18u8));
    let milli = eth / U256::from(1000u32);
    let gateway = ChainClient::connect(&w.node.url, w.controller, Some(key(GATEWAY)))
        .await
        .expect("gateway");
    // A deposit of 15 milli-ETH for tickets of 10: the second winner finds only 5 left.
    gateway
        .fund_deposit_and_reserve(milli * U256::from(15u8), U256::ZERO)
        .await
        .expect("fund");
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_orchestrator(dir.path(), &w.node.url, w.controller, PASSWORD);
    pay_winners(&node, 2).await;

    // Paused: "system is paused" is not final; the tickets wait.
    set_paused(&w, true).await;
    expire_params(&w).await;
    let v = wait_for(&node, "tickets never deferred", |v| {
        v["tickets"].as_array().is_some_and(|t| {
            t.len() == 2
                && t.iter().all(|t| {
                    t["state"] == "pending"
                        && t["reason"]
                            .as_str()
                            .is_some_and(|r| r.contains("system is paused"))
                })
        })
    })
    .await;
    assert_eq!(v["counts"]["failed"], 0, "{v}");

    // Unpaused: both are redeemed, each recorded with what the broker transferred.
    set_paused(&w, false).await;
    let v = wait_for(&node, "tickets never redeemed", |v| {
        v["counts"]["redeemed"] == 2
    })
    .await;
    let mut amounts: Vec<String> = v["tickets"]
        .as_array()
        .expect("tickets")
        .iter()
        .map(|t| t["amount"].as_str().unwrap_or("none").to_string())
        .collect();
    amounts.sort();
    assert_eq!(
        amounts,
        vec![
            (milli * U256::from(10u8)).to_string(),
            (milli * U256::from(5u8)).to_string()
        ],
        "{v}"
    );

    assert_eq!(
        v["counts"]["earned"],
        (milli * U256::from(15u8)).to_string(),
        "earnings are what arrived: {v}"
    );

    // Out of the active set, the node waits rather than redeem (the reserve would pay it
    // nothing); back in, the ticket is redeemed.
    gateway
        .fund_deposit_and_reserve(milli * U256::from(10u8), U256::ZERO)
        .await
        .expect("fund");
    set_active(&w, key(ORCHESTRATOR).address(), false).await;
    pay_winners(&node, 1).await;
    expire_params(&w).await;
    wait_for(&node, "an inactive recipient did not wait", |v| {
        v["tickets"].as_array().is_some_and(|t| {
            t.iter().any(|t| {
                t["state"] == "pending"
                    && t["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("not an active transcoder"))
            })
        })
    })
    .await;
    set_active(&w, key(ORCHESTRATOR).address(), true).await;
    wait_for(&node, "never redeemed once active", |v| {
        v["counts"]["redeemed"] == 3
    })
    .await;

    // A ticket that waits past the broker's validity period (2 rounds) is marked expired.
    gateway
        .fund_deposit_and_reserve(milli * U256::from(20u8), U256::ZERO)
        .await
        .expect("fund");
    pay_winners(&node, 1).await;
    set_paused(&w, true).await;
    expire_params(&w).await;
    wait_for(&node, "third ticket never deferred", |v| {
        v["tickets"].as_array().is_some_and(|t| {
            t.iter().any(|t| {
                t["state"] == "pending"
                    && t["reason"].as_str().is_some_and(|r| r.contains("paused"))
            })
        })
    })
    .await;
    set_paused(&w, false).await;
    next_round(&w).await;
    next_round(&w).await;
    let v = wait_for(&node, "ticket never expired", |v| {
        v["counts"]["expired"] == 1
    })
    .await;
    assert_eq!(v["counts"]["failed"], 0, "{v}");
    assert_eq!(v["counts"]["redeemed"], 3, "{v}");
}
