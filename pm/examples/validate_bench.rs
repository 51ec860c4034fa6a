//! Ticket validation throughput on one core: decode the `Livepeer-Payment` header, hash each
//! ticket, check its signature (recovery for a new sender, its key's table once it is a
//! regular one), run the win test and the nonce check — the recipient's whole receive path,
//! through `Recipient::receive_payment` as the node calls it. Prints tickets per second. Used
//! by `bench/tickets.sh`.

use std::time::Instant;

use k256::ecdsa::SigningKey;
use lpe_pm::params::RecipientPolicy;
use lpe_pm::recipient::{Recipient, TicketContext};
use lpe_pm::sender::Sender;
use lpe_pm::sig::address_of;
use lpe_pm::ticket::ExpirationParams;
use lpe_pm::wire::{
    PriceInfo, decode_payment, decode_payment_header, encode_payment_header, payment_for_batch,
};
use lpe_pm::{B256, U256};

fn main() {
    let tickets: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let per_payment = 10u32;
    let o_key = SigningKey::from_slice(&[0x21; 32]).expect("key");
    let policy = RecipientPolicy {
        ev: U256::from(1_000_000u64),
        redeem_gas: U256::from(1_200_000u64),
        tx_cost_multiplier: U256::from(100u64),
        max_face_value: U256::ZERO,
    };
    let issuer = Recipient::new(address_of(o_key.verifying_key()), [9; 32], policy.clone());
    let price = lpe_pm::recipient::price_from_info(1200, 1).expect("price");
    let exp = ExpirationParams {
        creation_round: 4000,
        creation_round_block_hash: B256::repeat_byte(0x44),
    };
    // Setup (not timed): payments of 10 tickets, each batch under fresh params so no nonce
    // set reaches the 600 cap.
    let mut headers = Vec::new();
    let mut sender = Sender::new(SigningKey::from_slice(&[0x31; 32]).expect("key"));
    for i in 0..tickets / per_payment {
        let params = issuer
            .ticket_params(
                sender.address(),
                &price,
                U256::from(1_000_000_000u64),
                U256::MAX,
                U256::from(1000u64),
                exp,
                U256::from(i + 1),
            )
            .expect("params");
        let sid = sender.start_session(params, price.clone());
        let batch = sender.create_batch(&sid, per_payment).expect("batch");
        headers.push(encode_payment_header(&payment_for_batch(
            &batch,
            &PriceInfo {
                price_per_unit: 1200,
                pixels_per_unit: 1,
                ..Default::default()
            },
        )));
    }
    let mut recipient = Recipient::new(issuer.address, [9; 32], policy);
    let l1 = U256::from(1001u64);
    let start = Instant::now();
    let mut accepted = 0u64;
    let mut wins = 0u64;
    for h in &headers {
        let p = decode_payment_header(h).expect("decode");
        let d = decode_payment(&p).expect("shape");
        let params = d.params.expect("params");
        let ctx = TicketContext {
            seed: params.seed,
            expiration_block: params.expiration_block,
            price: d.price.expect("price"),
        };
        for r in recipient.receive_payment(&d.tickets, &ctx, Ok(()), l1) {
            let r = r.expect("valid ticket");
            accepted += 1;
            wins += u64::from(r.won);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"tickets\": {accepted}, \"seconds\": {secs:.4}, \"per_second\": {:.1}, \"wins\": {wins}}}",
        accepted as f64 / secs
    );
}
