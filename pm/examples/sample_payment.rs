//! Prints a valid `Livepeer-Payment` header (base64) with a few signed tickets, made with fixed
//! test keys — a sample to try `livepeer-edge ticket inspect` on, and a fuzzing seed.
//! Usage: `cargo run -p lpe-pm --example sample_payment [tickets] [--raw]` (`--raw`: protobuf).

use std::io::Write;

use k256::ecdsa::SigningKey;
use lpe_pm::params::RecipientPolicy;
use lpe_pm::recipient::{Recipient, price_from_info};
use lpe_pm::sender::Sender;
use lpe_pm::sig::address_of;
use lpe_pm::ticket::ExpirationParams;
use lpe_pm::wire::{PriceInfo, encode_payment_header, payment_for_batch};
use lpe_pm::{B256, U256};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = args.iter().find_map(|a| a.parse().ok()).unwrap_or(3u32);
    let raw = args.iter().any(|a| a == "--raw");
    let o_key = SigningKey::from_slice(&[0x0a; 32]).expect("fixed key");
    let o = Recipient::new(
        address_of(o_key.verifying_key()),
        [0x0b; 32],
        RecipientPolicy::default(),
    );
    let mut b = Sender::new(SigningKey::from_slice(&[0x0c; 32]).expect("fixed key"));
    let price = price_from_info(1200, 1).expect("price");
    let exp = ExpirationParams {
        creation_round: 3500,
        creation_round_block_hash: B256::repeat_byte(0x0d),
    };
    let params = o
        .ticket_params(
            b.address(),
            &price,
            U256::from(100_000_000u64),
            U256::MAX,
            U256::from(20_000_000u64),
            exp,
            U256::from(42u8),
        )
        .expect("params");
    let sid = b.start_session(params, price);
    let batch = b.create_batch(&sid, n).expect("batch");
    let payment = payment_for_batch(
        &batch,
        &PriceInfo {
            price_per_unit: 1200,
            pixels_per_unit: 1,
            ..Default::default()
        },
    );
    if raw {
        let _ = std::io::stdout().write_all(&prost::Message::encode_to_vec(&payment));
    } else {
        println!("{}", encode_payment_header(&payment));
    }
}
