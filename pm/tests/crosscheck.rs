//! Cross-check against an independent implementation (PyPI eth-keys, eth-abi, eth-hash):
//! random tickets hashed, signed, recovered and win-tested by both, byte for byte.

use std::io::Write;
use std::process::{Command, Stdio};

use k256::ecdsa::SigningKey;
use lpe_pm::sig::{address_of, sign};
use lpe_pm::ticket::{ExpirationParams, Ticket, is_winning, recipient_rand_hash};
use lpe_pm::{Address, B256, U256};

/// splitmix64: a seeded generator so a failing case can be reproduced.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        for chunk in b.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        b
    }
    fn u256(&mut self) -> U256 {
        // Mix small and full-width values: minimal encodings matter at the edges.
        match self.next() % 4 {
            0 => U256::from(self.next() % 1000),
            1 => U256::MAX - U256::from(self.next() % 3),
            _ => U256::from_be_bytes(self.bytes::<32>()),
        }
    }
}

#[test]
fn agrees_with_eth_keys_and_eth_abi_on_random_tickets() {
    let mut rng = Rng(0x5eed_1234);
    let mut lines = String::new();
    for i in 0..300 {
        let key = loop {
            if let Ok(k) = SigningKey::from_slice(&rng.bytes::<32>()) {
                break k;
            }
        };
        let sender = address_of(key.verifying_key());
        let expiration = if i % 10 == 0 {
            ExpirationParams::default()
        } else {
            ExpirationParams {
                creation_round: (rng.next() % 1_000_000) as i64,
                creation_round_block_hash: B256::from(rng.bytes::<32>()),
            }
        };
        let rand = rng.u256();
        let t = Ticket {
            recipient: Address::from(rng.bytes::<20>()),
            sender,
            face_value: rng.u256(),
            win_prob: rng.u256(),
            sender_nonce: rng.next() as u32,
            recipient_rand_hash: recipient_rand_hash(rng.u256()),
            expiration,
        };
        let hash = t.hash();
        let sig = sign(&key, hash.as_slice());
        let case = serde_json::json!({
            "key": format!("0x{}", hex::encode(key.to_bytes())),
            "recipient": t.recipient.to_string(),
            "sender": sender.to_string(),
            "face_value": t.face_value.to_string(),
            "win_prob": t.win_prob.to_string(),
            "nonce": t.sender_nonce,
            "rrh": format!("{:#x}", t.recipient_rand_hash),
            "round": t.expiration.creation_round,
            "block_hash": format!("{:#x}", t.expiration.creation_round_block_hash),
            "hash": format!("{hash:#x}"),
            "sig": format!("0x{}", hex::encode(sig)),
            "rand": rand.to_string(),
            "rand_hash": format!("{:#x}", recipient_rand_hash(rand)),
            "win": is_winning(&sig, rand, t.win_prob),
        });
        lines.push_str(&case.to_string());
        lines.push('\n');
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/crosscheck.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("write cases");
    let out = child.wait_with_output().expect("python result");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "independent implementation disagrees:\n{text}"
    );
    assert!(text.contains("300 cases, 0 disagreements"), "{text}");
}
