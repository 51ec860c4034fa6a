//! `livepeer-edge ticket inspect`: stable JSON for good headers, one-line errors (exit 1) for
//! bad ones.

use std::process::Command;

use k256::ecdsa::SigningKey;
use lpe_pm::U256;
use lpe_pm::params::RecipientPolicy;
use lpe_pm::recipient::{Recipient, TicketContext, price_from_info};
use lpe_pm::sender::Sender;
use lpe_pm::sig::address_of;
use lpe_pm::ticket::ExpirationParams;
use lpe_pm::wire::{PriceInfo, encode_payment_header, payment_for_batch};

fn inspect(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_livepeer-edge"))
        .args(["ticket", "inspect"])
        .args(args)
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inspects_a_real_payment() {
    let o_key = SigningKey::from_slice(&[0x11; 32]).expect("key");
    let o = Recipient::new(
        address_of(o_key.verifying_key()),
        [0x22; 32],
        RecipientPolicy {
            ev: U256::from(1_000_000u64),
            redeem_gas: U256::from(1_200_000u64),
            tx_cost_multiplier: U256::from(100u64),
            max_face_value: U256::ZERO,
        },
    );
    let mut b = Sender::new(SigningKey::from_slice(&[0x33; 32]).expect("key"));
    let price = price_from_info(1200, 1).expect("price");
    let exp = ExpirationParams {
        creation_round: 3400,
        creation_round_block_hash: lpe_pm::B256::repeat_byte(0x5a),
    };
    let params = o
        .ticket_params(
            b.address(),
            &price,
            U256::from(100_000_000u64),
            U256::MAX,
            U256::from(20_000_000u64),
            exp,
            U256::from(0xdead_beefu64),
        )
        .expect("params");
    let ctx = TicketContext {
        seed: params.seed,
        expiration_block: params.expiration_block,
        price: price.clone(),
    };
    let rand = o.recipient_rand(b.address(), params.face_value, params.win_prob, &ctx, &exp);
    let sid = b.start_session(params.clone(), price);
    let batch = b.create_batch(&sid, 2).expect("batch");
    let header = encode_payment_header(&payment_for_batch(
        &batch,
        &PriceInfo {
            price_per_unit: 1200,
            pixels_per_unit: 1,
            ..Default::default()
        },
    ));
    let (code, out, err) = inspect(&[&header, "--recipient-rand", &format!("{rand:#x}")]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["sender"].as_str().map(str::to_lowercase),
        Some(b.address().to_string().to_lowercase())
    );
    assert_eq!(v["recipient_rand_matches"], true);
    assert_eq!(
        v["ticket_params"]["face_value"],
        params.face_value.to_string()
    );
    assert_eq!(v["ticket_params"]["creation_round"], 3400);
    assert_eq!(v["expected_price"]["price_per_unit"], 1200);
    let tickets = v["tickets"].as_array().expect("tickets");
    assert_eq!(tickets.len(), 2);
    for (i, t) in tickets.iter().enumerate() {
        assert_eq!(t["nonce"], i + 1);
        assert_eq!(t["signature_valid"], true, "{t}");
        assert_eq!(
            t["ticket_hash"],
            format!("{:#x}", batch.tickets[i].ticket.hash())
        );
        assert!(t["win"].is_boolean());
        assert!(t["ev"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // Without the rand there is no win verdict.
    let (code, out, _) = inspect(&[&header]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(v["tickets"][0]["win"].is_null());
}

#[test]
fn malformed_headers_exit_1_with_one_line() {
    for bad in ["%%%", "AAAA", "/////w=="] {
        let (code, out, err) = inspect(&[bad]);
        assert_eq!(code, 1, "{bad:.20}: {out}{err}");
        assert!(out.is_empty());
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    // Headers too large for argv go through stdin; absurd sizes are refused.
    let mut child = Command::new(env!("CARGO_BIN_EXE_livepeer-edge"))
        .args(["ticket", "inspect", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    std::io::Write::write_all(
        &mut child.stdin.take().expect("stdin"),
        "QUFB".repeat(50_000).as_bytes(),
    )
    .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most"));

    let (code, _, err) = inspect(&["AAAA", "--recipient-rand", "xyz"]);
    assert_eq!(code, 1);
    assert!(err.contains("recipient-rand"), "{err}");
}
