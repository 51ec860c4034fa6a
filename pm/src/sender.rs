//! The gateway's (sender's) side: one PM session per recipientRandHash, nonces from 1, and
//! signed ticket batches.

use std::collections::HashMap;

use alloy_primitives::{Address, U256};
use k256::ecdsa::SigningKey;

use crate::params::{Price, TicketParams};
use crate::recipient::session_id;
use crate::sig::{address_of, sign};
use crate::ticket::Ticket;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderError {
    #[error("unknown PM session {0}")]
    UnknownSession(String),
    #[error("PM session {0} has used every nonce")]
    NoncesExhausted(String),
}

/// One ticket of a batch, ready for the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTicket {
    pub ticket: Ticket,
    pub sig: [u8; 65],
}

/// Tickets for one payment, all under the same params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketBatch {
    pub params: TicketParams,
    pub price: Price,
    pub sender: Address,
    pub tickets: Vec<SignedTicket>,
}

struct Session {
    params: TicketParams,
    price: Price,
    nonce: u32,
}

/// A sender: its key and its sessions.
pub struct Sender {
    key: SigningKey,
    address: Address,
    sessions: HashMap<String, Session>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("address", &self.address)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl Sender {
    pub fn new(key: SigningKey) -> Self {
        let address = address_of(key.verifying_key());
        Self {
            key,
            address,
            sessions: HashMap::new(),
        }
    }

    pub fn address(&self) -> Address {
        self.address
    }

    /// Starts (or restarts) the session for these params; its id is the recipientRandHash.
    pub fn start_session(&mut self, params: TicketParams, price: Price) -> String {
        self.start_session_with_nonce(params, price, 0)
    }

    /// [`Sender::start_session`] going on from `nonce` (the last nonce used under these
    /// params), for a sender whose session state travels with the caller.
    pub fn start_session_with_nonce(
        &mut self,
        params: TicketParams,
        price: Price,
        nonce: u32,
    ) -> String {
        let id = session_id(params.recipient_rand_hash);
        self.sessions.insert(
            id.clone(),
            Session {
                params,
                price,
                nonce,
            },
        );
        id
    }

    /// The last nonce used in a session.
    pub fn nonce(&self, session: &str) -> Option<u32> {
        self.sessions.get(session).map(|s| s.nonce)
    }

    /// Creates `n` signed tickets; nonces are pre-incremented, so the first is 1.
    pub fn create_batch(&mut self, session: &str, n: u32) -> Result<TicketBatch, SenderError> {
        let s = self
            .sessions
            .get_mut(session)
            .ok_or_else(|| SenderError::UnknownSession(session.to_string()))?;
        let mut tickets = Vec::with_capacity(n as usize);
        for _ in 0..n {
            s.nonce = s
                .nonce
                .checked_add(1)
                .ok_or_else(|| SenderError::NoncesExhausted(session.to_string()))?;
            let ticket = Ticket {
                recipient: s.params.recipient,
                sender: self.address,
                face_value: s.params.face_value,
                win_prob: s.params.win_prob,
                sender_nonce: s.nonce,
                recipient_rand_hash: s.params.recipient_rand_hash,
                expiration: s.params.expiration,
            };
            let sig = sign(&self.key, ticket.hash().as_slice());
            tickets.push(SignedTicket { ticket, sig });
        }
        Ok(TicketBatch {
            params: s.params.clone(),
            price: s.price.clone(),
            sender: self.address,
            tickets,
        })
    }

    pub fn end_session(&mut self, session: &str) {
        self.sessions.remove(session);
    }

    /// The expiration block of a session's params (to refresh them in time).
    pub fn expiration_block(&self, session: &str) -> Option<U256> {
        self.sessions
            .get(session)
            .map(|s| s.params.expiration_block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::RecipientPolicy;
    use crate::recipient::{Recipient, TicketContext, price_from_info};
    use crate::ticket::ExpirationParams;
    use alloy_primitives::B256;

    #[test]
    fn a_sender_pays_a_recipient_end_to_end() {
        let o_key = SigningKey::from_slice(&[5u8; 32]).expect("key");
        let mut o = Recipient::new(
            address_of(o_key.verifying_key()),
            [1u8; 32],
            RecipientPolicy {
                ev: U256::from(100u64),
                redeem_gas: U256::from(1u64),
                tx_cost_multiplier: U256::from(1u64),
                max_face_value: U256::ZERO,
            },
        );
        let mut b = Sender::new(SigningKey::from_slice(&[6u8; 32]).expect("key"));
        let price = price_from_info(7, 2).expect("price");
        let exp = ExpirationParams {
            creation_round: 3,
            creation_round_block_hash: B256::repeat_byte(2),
        };
        let params = o
            .ticket_params(
                b.address(),
                &price,
                U256::from(1u8),
                U256::MAX,
                U256::from(50u8),
                exp,
                U256::from(99u8),
            )
            .expect("params");
        let sid = b.start_session(params.clone(), price.clone());
        let batch = b.create_batch(&sid, 5).expect("batch");
        let nonces: Vec<u32> = batch
            .tickets
            .iter()
            .map(|t| t.ticket.sender_nonce)
            .collect();
        assert_eq!(nonces, [1, 2, 3, 4, 5]);
        let ctx = TicketContext {
            seed: params.seed,
            expiration_block: params.expiration_block,
            price,
        };
        let mut wins = 0;
        for t in &batch.tickets {
            let r = o
                .receive(&t.ticket, &t.sig, &ctx, Ok(()), U256::from(51u8))
                .expect("accepted");
            wins += usize::from(r.won);
        }
        // faceValue = EV × 100 ⇒ winProb ≈ 1 %; the point here is acceptance, not luck.
        assert!(wins <= 5);
        assert!(b.create_batch("nope", 1).is_err());
    }
}
