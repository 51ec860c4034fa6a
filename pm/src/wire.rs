//! go-livepeer's wire encoding of payments (`proto/lp_pm.proto`): protobuf messages, the
//! `Livepeer-Payment` header (standard padded base64 of a Payment), and strict conversion to
//! tickets. Malformed input is an error value, never a panic.

use alloy_primitives::{Address, B256, U256};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;

use crate::params::{Price, TicketParams as Params};
use crate::recipient::price_from_info;
use crate::ticket::{ExpirationParams, Ticket};
use crate::{minbytes, u256_from_be};

#[derive(Clone, PartialEq, Message)]
pub struct TicketParams {
    #[prost(bytes = "vec", tag = "1")]
    pub recipient: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub face_value: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub win_prob: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub recipient_rand_hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub seed: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub expiration_block: Vec<u8>,
    #[prost(message, optional, tag = "7")]
    pub expiration_params: Option<TicketExpirationParams>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TicketSenderParams {
    #[prost(uint32, tag = "1")]
    pub sender_nonce: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub sig: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TicketExpirationParams {
    #[prost(int64, tag = "1")]
    pub creation_round: i64,
    #[prost(bytes = "vec", tag = "2")]
    pub creation_round_block_hash: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PriceInfo {
    #[prost(int64, tag = "1")]
    pub price_per_unit: i64,
    #[prost(int64, tag = "2")]
    pub pixels_per_unit: i64,
    #[prost(uint32, tag = "3")]
    pub capability: u32,
    #[prost(string, tag = "4")]
    pub constraint: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Payment {
    #[prost(message, optional, tag = "1")]
    pub ticket_params: Option<TicketParams>,
    #[prost(bytes = "vec", tag = "2")]
    pub sender: Vec<u8>,
    #[prost(message, optional, tag = "3")]
    pub expiration_params: Option<TicketExpirationParams>,
    #[prost(message, repeated, tag = "4")]
    pub ticket_sender_params: Vec<TicketSenderParams>,
    #[prost(message, optional, tag = "5")]
    pub expected_price: Option<PriceInfo>,
}

/// Largest header accepted: 600 tickets of ~75 bytes each, with room to spare.
pub const MAX_HEADER_BYTES: usize = 128 * 1024;
/// More tickets than a recipient accepts per params can only be abuse.
pub const MAX_TICKETS: usize = 600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("payment header is {0} bytes; at most {MAX_HEADER_BYTES} are accepted")]
    TooLarge(usize),
    #[error("payment header is not base64: {0}")]
    Base64(String),
    #[error("payment is not a protobuf Payment: {0}")]
    Protobuf(String),
    #[error("{0} tickets in one payment; at most {MAX_TICKETS}")]
    TooManyTickets(usize),
    #[error("{field} must be {expected} bytes, got {got}")]
    Length {
        field: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{0} is longer than 32 bytes")]
    Overflow(&'static str),
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("pixels per unit is 0")]
    ZeroPixelsPerUnit,
}

/// Decodes a `Livepeer-Payment` header value.
pub fn decode_payment_header(header: &str) -> Result<Payment, WireError> {
    let header = header.trim();
    if header.len() > MAX_HEADER_BYTES {
        return Err(WireError::TooLarge(header.len()));
    }
    let bytes = STANDARD
        .decode(header)
        .map_err(|e| WireError::Base64(e.to_string()))?;
    let payment =
        Payment::decode(bytes.as_slice()).map_err(|e| WireError::Protobuf(e.to_string()))?;
    if payment.ticket_sender_params.len() > MAX_TICKETS {
        return Err(WireError::TooManyTickets(
            payment.ticket_sender_params.len(),
        ));
    }
    Ok(payment)
}

pub fn encode_payment_header(p: &Payment) -> String {
    STANDARD.encode(p.encode_to_vec())
}

fn address(field: &'static str, b: &[u8]) -> Result<Address, WireError> {
    if b.len() != 20 {
        return Err(WireError::Length {
            field,
            expected: 20,
            got: b.len(),
        });
    }
    Ok(Address::from_slice(b))
}

fn hash32(field: &'static str, b: &[u8]) -> Result<B256, WireError> {
    if b.len() != 32 {
        return Err(WireError::Length {
            field,
            expected: 32,
            got: b.len(),
        });
    }
    Ok(B256::from_slice(b))
}

fn int(field: &'static str, b: &[u8]) -> Result<U256, WireError> {
    u256_from_be(b).ok_or(WireError::Overflow(field))
}

fn expiration(e: &TicketExpirationParams) -> Result<ExpirationParams, WireError> {
    let hash = if e.creation_round_block_hash.is_empty() {
        B256::ZERO
    } else {
        hash32("creation_round_block_hash", &e.creation_round_block_hash)?
    };
    Ok(ExpirationParams {
        creation_round: e.creation_round,
        creation_round_block_hash: hash,
    })
}

/// A payment checked for shape and turned into typed values.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedPayment {
    pub sender: Address,
    /// `None` when the payment carries no ticket params (price 0 / off-chain).
    pub params: Option<Params>,
    pub price: Option<Price>,
    /// One per TicketSenderParams: the ticket and its signature bytes (unchecked length).
    pub tickets: Vec<(Ticket, Vec<u8>)>,
}

/// Checks field sizes and builds the tickets of a payment.
pub fn decode_payment(p: &Payment) -> Result<DecodedPayment, WireError> {
    let sender = address("sender", &p.sender)?;
    let Some(tp) = &p.ticket_params else {
        return Ok(DecodedPayment {
            sender,
            params: None,
            price: None,
            tickets: Vec::new(),
        });
    };
    // The sender puts the expiration params in field 3; the orchestrator's own copy may ride
    // in the params (field 7). Field 3 wins, as in go-livepeer.
    let exp = p
        .expiration_params
        .as_ref()
        .or(tp.expiration_params.as_ref())
        .ok_or(WireError::Missing("expiration_params"))?;
    let exp = expiration(exp)?;
    let params = Params {
        expiration: exp,
        ..params_from_wire(tp)?
    };
    let price = match &p.expected_price {
        Some(pi) => Some(
            price_from_info(pi.price_per_unit, pi.pixels_per_unit)
                .ok_or(WireError::ZeroPixelsPerUnit)?,
        ),
        None => None,
    };
    let tickets = p
        .ticket_sender_params
        .iter()
        .map(|tsp| {
            (
                Ticket {
                    recipient: params.recipient,
                    sender,
                    face_value: params.face_value,
                    win_prob: params.win_prob,
                    sender_nonce: tsp.sender_nonce,
                    recipient_rand_hash: params.recipient_rand_hash,
                    expiration: exp,
                },
                tsp.sig.clone(),
            )
        })
        .collect();
    Ok(DecodedPayment {
        sender,
        params: Some(params),
        price,
        tickets,
    })
}

/// Params as the orchestrator sent them (OrchestratorInfo.ticket_params), checked for shape.
pub fn params_from_wire(tp: &TicketParams) -> Result<Params, WireError> {
    let exp = tp
        .expiration_params
        .as_ref()
        .map(expiration)
        .transpose()?
        .unwrap_or_default();
    Ok(Params {
        recipient: address("ticket_params.recipient", &tp.recipient)?,
        face_value: int("ticket_params.face_value", &tp.face_value)?,
        win_prob: int("ticket_params.win_prob", &tp.win_prob)?,
        recipient_rand_hash: hash32("ticket_params.recipient_rand_hash", &tp.recipient_rand_hash)?,
        seed: int("ticket_params.seed", &tp.seed)?,
        expiration_block: int("ticket_params.expiration_block", &tp.expiration_block)?,
        expiration: exp,
    })
}

/// The wire form of params as the orchestrator sends them (fields 1–7).
pub fn params_to_wire(p: &Params) -> TicketParams {
    TicketParams {
        recipient: p.recipient.to_vec(),
        face_value: minbytes(p.face_value),
        win_prob: minbytes(p.win_prob),
        recipient_rand_hash: p.recipient_rand_hash.to_vec(),
        seed: minbytes(p.seed),
        expiration_block: minbytes(p.expiration_block),
        expiration_params: Some(expiration_to_wire(&p.expiration)),
    }
}

pub fn expiration_to_wire(e: &ExpirationParams) -> TicketExpirationParams {
    TicketExpirationParams {
        creation_round: e.creation_round,
        creation_round_block_hash: e.creation_round_block_hash.to_vec(),
    }
}

/// A Payment as go-livepeer's sender builds it: params fields 1–6 only, expiration params
/// in field 3, one TicketSenderParams per ticket, the price the params came with.
pub fn payment_for_batch(batch: &crate::sender::TicketBatch, price: &PriceInfo) -> Payment {
    let mut tp = params_to_wire(&batch.params);
    tp.expiration_params = None;
    Payment {
        ticket_params: Some(tp),
        sender: batch.sender.to_vec(),
        expiration_params: Some(expiration_to_wire(&batch.params.expiration)),
        ticket_sender_params: batch
            .tickets
            .iter()
            .map(|t| TicketSenderParams {
                sender_nonce: t.ticket.sender_nonce,
                sig: t.sig.to_vec(),
            })
            .collect(),
        expected_price: Some(price.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_headers_are_errors() {
        assert!(matches!(
            decode_payment_header("***"),
            Err(WireError::Base64(_))
        ));
        assert!(matches!(
            decode_payment_header(&STANDARD.encode([0xff, 0xff, 0xff])),
            Err(WireError::Protobuf(_))
        ));
        let big = "A".repeat(MAX_HEADER_BYTES + 4);
        assert!(matches!(
            decode_payment_header(&big),
            Err(WireError::TooLarge(_))
        ));
        let many = Payment {
            ticket_sender_params: vec![TicketSenderParams::default(); MAX_TICKETS + 1],
            ..Default::default()
        };
        assert!(matches!(
            decode_payment_header(&encode_payment_header(&many)),
            Err(WireError::TooManyTickets(601))
        ));
        // a truncated encoding
        let p = Payment {
            sender: vec![1; 20],
            ..Default::default()
        };
        let enc = p.encode_to_vec();
        assert!(Payment::decode(&enc[..enc.len() - 3]).is_err());
    }

    #[test]
    fn shape_errors_name_the_field() {
        let p = Payment {
            sender: vec![1; 19],
            ..Default::default()
        };
        assert_eq!(
            decode_payment(&p).unwrap_err().to_string(),
            "sender must be 20 bytes, got 19"
        );
        let p = Payment {
            sender: vec![1; 20],
            ticket_params: Some(TicketParams {
                recipient: vec![2; 20],
                face_value: vec![1; 33],
                ..Default::default()
            }),
            expiration_params: Some(TicketExpirationParams::default()),
            ..Default::default()
        };
        assert_eq!(
            decode_payment(&p).unwrap_err(),
            WireError::Overflow("ticket_params.face_value")
        );
        let p = Payment {
            sender: vec![1; 20],
            ticket_params: Some(TicketParams::default()),
            ..Default::default()
        };
        assert_eq!(
            decode_payment(&p).unwrap_err(),
            WireError::Missing("expiration_params")
        );
    }
}
