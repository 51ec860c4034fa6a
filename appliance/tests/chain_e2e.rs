//! Chain tests on a real local EVM (hardhat 2 via npm) with this project's Solidity contracts
//! (`chain-tests/contracts`): tickets made by `lpe-pm` are received, detected as winners and
//! redeemed through the node's chain client; each failure path surfaces the contract's exact
//! revert string.

mod common;

use alloy::primitives::U256;
use alloy::providers::Provider;
use common::evm::{BondingManager, GATEWAY, ORCHESTRATOR, World, key, next_round, world};
use k256::ecdsa::SigningKey;
use lpe_money::chain::{ChainClient, ChainError};
use lpe_pm::params::{RecipientPolicy, TicketParams};
use lpe_pm::recipient::{Recipient, TicketContext, price_from_info};
use lpe_pm::sender::Sender;

struct Parties {
    gateway_chain: ChainClient,
    orch_chain: ChainClient,
    orch: Recipient,
    gateway: Sender,
}

async fn parties(w: &World) -> Parties {
    let gateway_chain = ChainClient::connect(&w.node.url, w.controller, Some(key(GATEWAY)))
        .await
        .expect("gateway connects");
    let orch_chain = ChainClient::connect(&w.node.url, w.controller, Some(key(ORCHESTRATOR)))
        .await
        .expect("orchestrator connects");
    let face = U256::from(10u64).pow(U256::from(15u8));
    // faceValue == EV ⇒ winProb = 2^256 − 1: every ticket wins, so every path is exercised.
    let orch = Recipient::new(
        key(ORCHESTRATOR).address(),
        [0x77; 32],
        RecipientPolicy {
            ev: face,
            redeem_gas: U256::from(1u8),
            tx_cost_multiplier: U256::from(1u8),
            max_face_value: face,
        },
    );
    let gateway =
        Sender::new(SigningKey::from_slice(&hex::decode(GATEWAY).expect("hex")).expect("key"));
    Parties {
        gateway_chain,
        orch_chain,
        orch,
        gateway,
    }
}

async fn issue_params(p: &Parties, seed: u64) -> (TicketParams, TicketContext) {
    let exp = p
        .orch_chain
        .expiration_params()
        .await
        .expect("expiration params");
    let l1 = p.orch_chain.latest_block().await.expect("l1 block").1;
    let price = price_from_info(1, 1).expect("price");
    let gas = p.orch_chain.gas_price().await.expect("gas price");
    let params = p
        .orch
        .ticket_params(
            p.gateway.address(),
            &price,
            gas,
            U256::MAX,
            l1,
            exp,
            U256::from(seed),
        )
        .expect("params");
    let ctx = TicketContext {
        seed: params.seed,
        expiration_block: params.expiration_block,
        price,
    };
    (params, ctx)
}

fn reverted<T: std::fmt::Debug>(r: Result<T, ChainError>) -> String {
    match r {
        Err(ChainError::Reverted(s)) => s,
        other => panic!("expected a revert, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_redeem_on_a_real_evm_and_failures_carry_revert_strings() {
    let w = world(20).await;
    let mut p = parties(&w).await;
    let eth = U256::from(10u64).pow(U256::from(18u8));
    p.gateway_chain
        .fund_deposit_and_reserve(eth, eth)
        .await
        .expect("fund");
    let info = p
        .gateway_chain
        .sender_info(p.gateway.address())
        .await
        .expect("info");
    assert_eq!(
        (info.deposit, info.reserve, info.withdraw_round),
        (eth, eth, U256::ZERO)
    );

    // Tickets sent, received, won, redeemed.
    let (params, ctx) = issue_params(&p, 1).await;
    let sid = p.gateway.start_session(params.clone(), ctx.price.clone());
    let batch = p.gateway.create_batch(&sid, 3).expect("batch");
    let l1 = p.orch_chain.latest_block().await.expect("l1").1;
    let fees = BondingManager::new(w.bonding, &w.admin);
    let start_block = w.admin.get_block_number().await.expect("block");
    let mut redeemed = Vec::new();
    for t in &batch.tickets {
        let r = p
            .orch
            .receive(&t.ticket, &t.sig, &ctx, Ok(()), l1)
            .expect("accepted");
        assert!(r.won);
        let before = fees.fees(p.orch.address).call().await.expect("fees");
        let mined = p
            .orch_chain
            .redeem(&t.ticket, &t.sig, r.recipient_rand)
            .await
            .expect("redeemed");
        assert!(mined.mined.block > 0);
        let after = fees.fees(p.orch.address).call().await.expect("fees");
        assert_eq!(after - before, params.face_value);
        // What the broker transferred, read from the receipt.
        assert_eq!(mined.paid, params.face_value);
        assert!(p.orch_chain.is_used(t.ticket.hash()).await.expect("used"));
        redeemed.push((t.clone(), r.recipient_rand));
    }
    let events = p
        .orch_chain
        .redeemed_events(p.orch.address, start_block)
        .await
        .expect("events");
    let nonces: Vec<U256> = events.iter().map(|e| e.2).collect();
    assert_eq!(nonces, [U256::from(1u8), U256::from(2u8), U256::from(3u8)]);
    assert!(
        events
            .iter()
            .all(|e| e.0 == p.gateway.address() && e.1 == params.face_value)
    );

    // Used ticket.
    let (t, rand) = &redeemed[0];
    assert_eq!(
        reverted(p.orch_chain.redeem(&t.ticket, &t.sig, *rand).await),
        "ticket is used"
    );

    // Fresh tickets for the remaining paths.
    let batch = p.gateway.create_batch(&sid, 4).expect("batch");
    let rand = p
        .orch
        .receive(
            &batch.tickets[0].ticket,
            &batch.tickets[0].sig,
            &ctx,
            Ok(()),
            l1,
        )
        .expect("ok")
        .recipient_rand;
    // Rand mismatch.
    assert_eq!(
        reverted(
            p.orch_chain
                .redeem(
                    &batch.tickets[0].ticket,
                    &batch.tickets[0].sig,
                    rand + U256::from(1u8)
                )
                .await
        ),
        "recipientRand does not match recipientRandHash"
    );
    // Bad signature: another signer.
    let mut sig = batch.tickets[1].sig;
    sig[5] ^= 0x01;
    let msg = reverted(
        p.orch_chain
            .redeem(&batch.tickets[1].ticket, &sig, rand)
            .await,
    );
    assert!(
        msg == "invalid signature over ticket hash" || msg == "ECDSA: invalid signature",
        "{msg}"
    );
    // High s.
    let mut sig = batch.tickets[1].sig;
    sig[32] = 0xff;
    assert_eq!(
        reverted(
            p.orch_chain
                .redeem(&batch.tickets[1].ticket, &sig, rand)
                .await
        ),
        "ECDSA: invalid signature 's' value"
    );
    // 64-byte signature.
    assert_eq!(
        reverted(
            p.orch_chain
                .redeem(&batch.tickets[1].ticket, &sig[..64], rand)
                .await
        ),
        "INVALID_SIGNATURE_LENGTH"
    );

    // Not a winner: params with winProb 0.
    let mut losing = params.clone();
    losing.win_prob = U256::ZERO;
    let lsid = p.gateway.start_session(losing, ctx.price.clone());
    let lb = p.gateway.create_batch(&lsid, 1).expect("batch");
    assert_eq!(
        reverted(
            p.orch_chain
                .redeem(&lb.tickets[0].ticket, &lb.tickets[0].sig, rand)
                .await
        ),
        "ticket did not win"
    );

    // Expired: two rounds later the creation round is out of the validity period.
    next_round(&w).await;
    next_round(&w).await;
    assert_eq!(
        reverted(
            p.orch_chain
                .redeem(&batch.tickets[2].ticket, &batch.tickets[2].sig, rand)
                .await
        ),
        "ticket is expired"
    );

    // Sender unlocked: unlock, wait out the unlock period, then a fresh winning ticket.
    assert_eq!(
        reverted(p.gateway_chain.cancel_unlock().await),
        "no unlock request in progress"
    );
    p.gateway_chain.unlock().await.expect("unlock");
    assert_eq!(
        reverted(p.gateway_chain.unlock().await),
        "unlock already initiated"
    );
    next_round(&w).await;
    next_round(&w).await;
    let (params2, ctx2) = issue_params(&p, 2).await;
    let sid2 = p.gateway.start_session(params2, ctx2.price.clone());
    let b2 = p.gateway.create_batch(&sid2, 1).expect("batch");
    let l1 = p.orch_chain.latest_block().await.expect("l1").1;
    let r = p
        .orch
        .receive(&b2.tickets[0].ticket, &b2.tickets[0].sig, &ctx2, Ok(()), l1)
        .expect("ok");
    assert_eq!(
        reverted(
            p.orch_chain
                .redeem(&b2.tickets[0].ticket, &b2.tickets[0].sig, r.recipient_rand)
                .await
        ),
        "sender is unlocked"
    );
    // A sender may lock again by funding: that revert is retried, not final.
    assert!(!lpe_money::chain::revert_is_permanent("sender is unlocked"));

    // The gateway takes its money back.
    next_round(&w).await;
    let before = p
        .gateway_chain
        .balance(p.gateway.address())
        .await
        .expect("balance");
    p.gateway_chain.withdraw().await.expect("withdraw");
    let after = p
        .gateway_chain
        .balance(p.gateway.address())
        .await
        .expect("balance");
    assert!(after > before);
    assert_eq!(
        reverted(p.gateway_chain.withdraw().await),
        "sender deposit and reserve are zero"
    );
}
