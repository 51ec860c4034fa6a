//! Tickets: the hash the contract signs and checks, aux data, the win test and expected value.

use alloy_primitives::{Address, B256, U256, keccak256};
use num_rational::BigRational;
use serde::Serialize;

use crate::{MAX_WIN_PROB, to_bigint};

/// Round and block hash that bind a ticket to the chain (`auxData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ExpirationParams {
    pub creation_round: i64,
    pub creation_round_block_hash: B256,
}

impl ExpirationParams {
    /// `u256(creationRound) ‖ blockHash`, or empty when both are zero (go-livepeer's quirk:
    /// such a ticket hashes over 168 bytes and can never be redeemed).
    pub fn aux_data(&self) -> Vec<u8> {
        if self.creation_round == 0 && self.creation_round_block_hash == B256::ZERO {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(64);
        // Go's big.NewInt(round).Bytes() drops the sign; mirror it.
        out.extend_from_slice(&U256::from(self.creation_round.unsigned_abs()).to_be_bytes::<32>());
        out.extend_from_slice(self.creation_round_block_hash.as_slice());
        out
    }
}

/// A ticket as the contract sees it (plus the off-chain params that travel with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub recipient: Address,
    pub sender: Address,
    pub face_value: U256,
    pub win_prob: U256,
    pub sender_nonce: u32,
    pub recipient_rand_hash: B256,
    pub expiration: ExpirationParams,
}

impl Ticket {
    /// The preimage of the ticket hash: 232 bytes, or 168 when aux data is empty.
    pub fn preimage(&self) -> Vec<u8> {
        let aux = self.expiration.aux_data();
        let mut b = Vec::with_capacity(168 + aux.len());
        b.extend_from_slice(self.recipient.as_slice());
        b.extend_from_slice(self.sender.as_slice());
        b.extend_from_slice(&self.face_value.to_be_bytes::<32>());
        b.extend_from_slice(&self.win_prob.to_be_bytes::<32>());
        b.extend_from_slice(&U256::from(self.sender_nonce).to_be_bytes::<32>());
        b.extend_from_slice(self.recipient_rand_hash.as_slice());
        b.extend_from_slice(&aux);
        b
    }

    /// `keccak256(abi.encodePacked(recipient, sender, faceValue, winProb, senderNonce,
    /// recipientRandHash, auxData))`, as `TicketBroker.getTicketHash`.
    pub fn hash(&self) -> B256 {
        keccak256(self.preimage())
    }

    pub fn ev(&self) -> BigRational {
        expected_value(self.face_value, self.win_prob)
    }
}

/// `faceValue × winProb / (2^256 − 1)`, exact.
pub fn expected_value(face_value: U256, win_prob: U256) -> BigRational {
    BigRational::new(
        to_bigint(face_value) * to_bigint(win_prob),
        to_bigint(MAX_WIN_PROB),
    )
}

/// `keccak256(u256(recipientRand))`.
pub fn recipient_rand_hash(recipient_rand: U256) -> B256 {
    keccak256(recipient_rand.to_be_bytes::<32>())
}

/// The contract's win test: `uint256(keccak256(sig ‖ u256(recipientRand))) < winProb`.
pub fn is_winning(sig: &[u8], recipient_rand: U256, win_prob: U256) -> bool {
    let mut b = Vec::with_capacity(sig.len() + 32);
    b.extend_from_slice(sig);
    b.extend_from_slice(&recipient_rand.to_be_bytes::<32>());
    U256::from_be_bytes(keccak256(b).0) < win_prob
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_traits::ToPrimitive;

    fn h(s: &str) -> B256 {
        s.parse().expect("hex")
    }

    fn t(
        recipient: Address,
        fv: u64,
        wp: u64,
        nonce: u32,
        rrh: B256,
        exp: ExpirationParams,
    ) -> Ticket {
        Ticket {
            recipient,
            sender: Address::ZERO,
            face_value: U256::from(fv),
            win_prob: U256::from(wp),
            sender_nonce: nonce,
            recipient_rand_hash: rrh,
            expiration: exp,
        }
    }

    /// go-livepeer pm/ticket_test.go TestHash.
    #[test]
    fn upstream_hash_vectors() {
        let z = Address::ZERO;
        let none = ExpirationParams::default();
        let rh = h("0x41b1a0649752af1b28b3dc29a1556eee781e4a4c3a1f7f53f90fa834de098c4d");
        let cases = [
            (
                t(z, 0, 0, 4294967295, B256::ZERO, none),
                "e1393fc7f6de093780674022f96cb8e3872235167d037c04d554e58c0e63d280",
            ),
            (
                t(z, 0, 0, 1, B256::ZERO, none),
                "ce0918ba94518293e9712effbe5fca4f1f431089833a5b8c257cb1e024595f68",
            ),
            (
                t(z, 1, 500, 0, B256::ZERO, none),
                "87ef13f2d37e4d5352a01d3c77b8179d80e0887f1953bfabfd0bfd7b0f689ddd",
            ),
            (
                t(z, 500, 1, 0, B256::ZERO, none),
                "aa4b35071043587992ac8b9dd1b2cf1d8311130e6458cf0b2342484e21af5f5b",
            ),
            (
                t(
                    "0x73AEd7b5dEb30222fa896f399d46cC99c7BEe57F"
                        .parse()
                        .expect("addr"),
                    0,
                    0,
                    0,
                    B256::ZERO,
                    none,
                ),
                "81e353ae39046e2b77b9f996abbaeed527fda559b61ef90f299c4499dd508ccc",
            ),
            (
                t(z, 0, 0, 0, rh, none),
                "be5eaf9a49a39540b9bb02f1a21904f61324a29819e2c032824bfaa10c100b17",
            ),
            (
                t(
                    z,
                    0,
                    0,
                    0,
                    B256::ZERO,
                    ExpirationParams {
                        creation_round: 10,
                        creation_round_block_hash: rh,
                    },
                ),
                "e502907c16036ab3d11b78c5a2e93c20f3d6415c67f91de4ed01348182b3b2e2",
            ),
        ];
        for (ticket, want) in cases {
            assert_eq!(hex::encode(ticket.hash()), want, "{ticket:?}");
        }
        assert_eq!(cases_len_168(), 168);
    }

    fn cases_len_168() -> usize {
        t(
            Address::ZERO,
            0,
            0,
            0,
            B256::ZERO,
            ExpirationParams::default(),
        )
        .preimage()
        .len()
    }

    /// go-livepeer pm/ticket_test.go TestAuxData.
    #[test]
    fn upstream_aux_data_vectors() {
        let hash = h("0x7624778dedc75f8b322b9fa1632a610d40b85e106c7d9bf0e743a9ce291b9c6f");
        let a = ExpirationParams {
            creation_round: 5,
            creation_round_block_hash: hash,
        }
        .aux_data();
        assert_eq!(a.len(), 64);
        assert_eq!(a[31], 5);
        assert_eq!(&a[32..], hash.as_slice());
        let a = ExpirationParams {
            creation_round: 0,
            creation_round_block_hash: hash,
        }
        .aux_data();
        assert_eq!(&a[..32], &[0u8; 32]);
        let a = ExpirationParams {
            creation_round: 5,
            creation_round_block_hash: B256::ZERO,
        }
        .aux_data();
        assert_eq!(a[31], 5);
        assert_eq!(&a[32..], &[0u8; 32]);
        assert!(ExpirationParams::default().aux_data().is_empty());
        let full = t(
            Address::ZERO,
            0,
            0,
            0,
            B256::ZERO,
            ExpirationParams {
                creation_round: 5,
                creation_round_block_hash: hash,
            },
        );
        assert_eq!(full.preimage().len(), 232);
    }

    /// pm/validator_test.go: sig "foo", rand 10.
    #[test]
    fn win_test_edges() {
        assert!(!is_winning(b"foo", U256::from(10), U256::ZERO));
        assert!(is_winning(b"foo", U256::from(10), MAX_WIN_PROB));
    }

    #[test]
    fn ev_is_exact() {
        let half = MAX_WIN_PROB / U256::from(2);
        let ev = expected_value(U256::from(1000), half);
        assert_eq!(ev.round().to_integer().to_i64(), Some(500));
        assert_eq!(
            expected_value(U256::from(1000), MAX_WIN_PROB),
            BigRational::from_integer(1000.into())
        );
        assert_eq!(
            expected_value(U256::ZERO, MAX_WIN_PROB),
            BigRational::from_integer(0.into())
        );
    }
}
