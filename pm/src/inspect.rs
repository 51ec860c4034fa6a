//! `livepeer-edge ticket inspect`: everything a `Livepeer-Payment` header says, checked.
//! The JSON shape is stable; fields are only ever added.

use alloy_primitives::{Address, U256};
use serde::Serialize;

use crate::sig;
use crate::ticket::{is_winning, recipient_rand_hash};
use crate::wire::{WireError, decode_payment, decode_payment_header};

#[derive(Debug, Serialize)]
pub struct Report {
    pub sender: Address,
    pub recipient: Option<Address>,
    pub ticket_params: Option<ParamsReport>,
    pub expected_price: Option<PriceReport>,
    /// With `--recipient-rand`: whether it hashes to the params' recipientRandHash.
    pub recipient_rand_matches: Option<bool>,
    pub tickets: Vec<TicketReport>,
}

#[derive(Debug, Serialize)]
pub struct ParamsReport {
    pub face_value: String,
    pub win_prob: String,
    pub recipient_rand_hash: String,
    pub seed: String,
    pub expiration_block: String,
    pub creation_round: i64,
    pub creation_round_block_hash: String,
}

#[derive(Debug, Serialize)]
pub struct PriceReport {
    pub price_per_unit: i64,
    pub pixels_per_unit: i64,
}

#[derive(Debug, Serialize)]
pub struct TicketReport {
    pub nonce: u32,
    pub ticket_hash: String,
    /// The address the signature recovers to, when it recovers at all.
    pub signer: Option<Address>,
    pub signature_valid: bool,
    /// Why the signature is not valid (go-livepeer's reason).
    pub signature_error: Option<String>,
    /// Expected value in wei, exact (`numerator/denominator`, or an integer).
    pub ev: String,
    /// With `--recipient-rand`: whether the ticket wins.
    pub win: Option<bool>,
}

/// Decodes and checks a header. `recipient_rand` adds the win test.
pub fn inspect(header: &str, recipient_rand: Option<U256>) -> Result<Report, WireError> {
    let payment = decode_payment_header(header)?;
    let decoded = decode_payment(&payment)?;
    let params = decoded.params.as_ref();
    let mut tickets = Vec::new();
    for (ticket, sig_bytes) in &decoded.tickets {
        let hash = ticket.hash();
        let recovered = sig::recover(hash.as_slice(), sig_bytes);
        let (signer, signature_error) = match recovered {
            Ok(a) if a == decoded.sender => (Some(a), None),
            Ok(a) => (Some(a), Some(sig::SigError::WrongSigner.to_string())),
            Err(e) => (None, Some(e.to_string())),
        };
        tickets.push(TicketReport {
            nonce: ticket.sender_nonce,
            ticket_hash: format!("{hash:#x}"),
            signer,
            signature_valid: signature_error.is_none(),
            signature_error,
            ev: crate::rational_string(&ticket.ev()),
            win: recipient_rand.map(|r| is_winning(sig_bytes, r, ticket.win_prob)),
        });
    }
    Ok(Report {
        sender: decoded.sender,
        recipient: params.map(|p| p.recipient),
        recipient_rand_matches: match (recipient_rand, params) {
            (Some(r), Some(p)) => Some(recipient_rand_hash(r) == p.recipient_rand_hash),
            _ => None,
        },
        ticket_params: params.map(|p| ParamsReport {
            face_value: p.face_value.to_string(),
            win_prob: p.win_prob.to_string(),
            recipient_rand_hash: format!("{:#x}", p.recipient_rand_hash),
            seed: p.seed.to_string(),
            expiration_block: p.expiration_block.to_string(),
            creation_round: p.expiration.creation_round,
            creation_round_block_hash: format!("{:#x}", p.expiration.creation_round_block_hash),
        }),
        expected_price: payment.expected_price.as_ref().map(|p| PriceReport {
            price_per_unit: p.price_per_unit,
            pixels_per_unit: p.pixels_per_unit,
        }),
        tickets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::RecipientPolicy;
    use crate::recipient::{Recipient, price_from_info};
    use crate::sender::Sender;
    use crate::sig::address_of;
    use crate::ticket::ExpirationParams;
    use crate::wire::{PriceInfo, encode_payment_header, payment_for_batch};
    use alloy_primitives::B256;
    use k256::ecdsa::SigningKey;

    #[test]
    fn inspect_reports_signers_ev_and_wins() {
        let o_key = SigningKey::from_slice(&[8u8; 32]).expect("key");
        let o = Recipient::new(
            address_of(o_key.verifying_key()),
            [4u8; 32],
            RecipientPolicy {
                ev: U256::from(1000u64),
                redeem_gas: U256::from(1u64),
                tx_cost_multiplier: U256::from(1u64),
                max_face_value: U256::ZERO,
            },
        );
        let mut b = Sender::new(SigningKey::from_slice(&[2u8; 32]).expect("key"));
        let price = price_from_info(3, 1).expect("price");
        let exp = ExpirationParams {
            creation_round: 9,
            creation_round_block_hash: B256::repeat_byte(7),
        };
        let params = o
            .ticket_params(
                b.address(),
                &price,
                U256::from(1u8),
                U256::MAX,
                U256::from(10u8),
                exp,
                U256::from(5u8),
            )
            .expect("params");
        let ctx = crate::recipient::TicketContext {
            seed: params.seed,
            expiration_block: params.expiration_block,
            price: price.clone(),
        };
        let rand = o.recipient_rand(b.address(), params.face_value, params.win_prob, &ctx, &exp);
        let sid = b.start_session(params.clone(), price);
        let batch = b.create_batch(&sid, 3).expect("batch");
        let mut payment = payment_for_batch(
            &batch,
            &PriceInfo {
                price_per_unit: 3,
                pixels_per_unit: 1,
                ..Default::default()
            },
        );
        payment.ticket_sender_params[1].sig[64] = 29;
        let header = encode_payment_header(&payment);
        let r = inspect(&header, Some(rand)).expect("report");
        assert_eq!(r.sender, b.address());
        assert_eq!(r.recipient, Some(o.address));
        assert_eq!(r.recipient_rand_matches, Some(true));
        assert_eq!(r.tickets.len(), 3);
        assert!(r.tickets[0].signature_valid);
        assert_eq!(
            r.tickets[1].signature_error.as_deref(),
            Some("v must be 27 or 28")
        );
        assert!(r.tickets.iter().all(|t| t.win.is_some()));
        assert_eq!(r.ticket_params.as_ref().map(|p| p.creation_round), Some(9));
        let json = serde_json::to_value(&r).expect("json");
        assert!(
            json["tickets"][0]["ticket_hash"]
                .as_str()
                .is_some_and(|h| h.len() == 66)
        );
        assert!(inspect("not base64!", None).is_err());
    }
}
