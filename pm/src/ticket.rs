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

    /// Two real mainnet winning tickets from go-livepeer's own tests (`eth/backend_test.go`
    /// `TestNewTxLog`, `eth/helpers_test.go` `TestDecodeTxParams`): the recipientRand opens
    /// the hash, the ticket hash is the one computed from the 232-byte preimage, the signature
    /// recovers to the sender, and the ticket wins.
    #[test]
    fn the_two_mainnet_winning_tickets() {
        let sender: Address = "0x3eE860A4abA830AF84EbBCE2b381fc11DB8493e2"
            .parse()
            .expect("address");
        struct Case {
            recipient: &'static str,
            face_value: &'static str,
            win_prob: &'static str,
            nonce: u32,
            rand_hash: &'static str,
            round: i64,
            block_hash: &'static str,
            sig: &'static str,
            rand: &'static str,
            hash: &'static str,
        }
        let cases = [
            Case {
                recipient: "0x9C10672CEE058Fd658103d90872fE431bb6C0AFa",
                face_value: "24703611594215916",
                win_prob: "4687253472865791949219216447262131914283161967982656133076290000000000000000",
                nonce: 1,
                rand_hash: "0xd00ef48a6825d9ae93097ad55bc76057fb50afc203aa98fd4e01aa6576d71298",
                round: 1673,
                block_hash: "0xa9f81d59be53a90a12cb12f627aa9e87c505320bad20a98fd98d5ed23bfe9a54",
                sig: "5ff5265992f1a6563851d085f363b16ad65416baaee090ee368b59082437df7a0237214659511fc188d6a4ef57c988bb18faa3e99826c78e9e75eb29366745891b",
                rand: "21160157592767011607011497540409649304524524744605816319294275445072062630355",
                hash: "0x63d432158a2a3a15bdb5a87712e5cf0d1655d018a615d2e8806346536c0154c0",
            },
            Case {
                recipient: "0xa5E37e0BA14655e92DEff29F32adbc7D09b8a2cF",
                face_value: "10000000000000000",
                win_prob: "11579208923731619542357098500868790785326998466564056403945759000000000000",
                nonce: 14,
                rand_hash: "0x5309662eee5608da45aaefe60433adec052acab8683dd12d78aad8a0192b3bec",
                round: 1619,
                block_hash: "0xf3b1d2925fd1325a8a6ba8923fbe6de31dd93d9e85540eaf5a306f21177c3b8c",
                sig: "90cb8a9280386cc77e9f3473bb87530cf9a1dbe5625013a9ed16675ad7607c800bf4e32ee4cc6b9c785e1c786c9965831a8216c408b251f98d6c18bf1bf4d1621c",
                rand: "31838803992704255588716800748284438047369588248489535212488229909862636233406",
                hash: "0xd5104bbecf755deaa03acf83486f2414d749f5e9d98b9feb9a0ad3791413f7e4",
            },
        ];
        for c in cases {
            let ticket = Ticket {
                recipient: c.recipient.parse().expect("recipient"),
                sender,
                face_value: c.face_value.parse().expect("face value"),
                win_prob: c.win_prob.parse().expect("win prob"),
                sender_nonce: c.nonce,
                recipient_rand_hash: h(c.rand_hash),
                expiration: ExpirationParams {
                    creation_round: c.round,
                    creation_round_block_hash: h(c.block_hash),
                },
            };
            let rand: U256 = c.rand.parse().expect("rand");
            let sig = alloy_primitives::hex::decode(c.sig).expect("sig");
            assert_eq!(ticket.preimage().len(), 232);
            assert_eq!(ticket.hash(), h(c.hash));
            assert_eq!(recipient_rand_hash(rand), ticket.recipient_rand_hash);
            assert_eq!(
                crate::sig::recover(ticket.hash().as_slice(), &sig).expect("recovers"),
                sender
            );
            assert!(is_winning(&sig, rand, ticket.win_prob));
        }
    }
}
