//! The orchestrator's (recipient's) side: recipientRand derivation, issuing params, and the
//! receive flow with go-livepeer's checks, order, messages and fatal/non-fatal classes.

use std::collections::{HashMap, HashSet};

use alloy_primitives::{Address, B256, U256};
use hmac::{Hmac, Mac};
use num_bigint::BigInt;
use num_rational::BigRational;
use sha2::Sha256;

use crate::minbytes;
use crate::params::{
    self, PARAMS_EXPIRATION_BLOCKS, ParamsError, Price, RecipientPolicy, TicketParams,
};
use crate::sender_key::SenderKey;
use crate::sig;
use crate::ticket::{ExpirationParams, Ticket, is_winning, recipient_rand_hash};

/// Distinct nonces accepted per recipientRand.
pub const MAX_SENDER_NONCES: usize = 600;

/// Why a ticket was refused. `fatal` errors abort the whole payment; non-fatal ones stop
/// crediting this ticket and the ones after it (go-livepeer's `acceptable`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReceiveError {
    pub message: String,
    pub fatal: bool,
    /// The ticket won even though it was refused (it must still be redeemed when it won and
    /// the refusal was only about crediting, e.g. expired params).
    pub won: bool,
}

impl ReceiveError {
    fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            fatal: true,
            won: false,
        }
    }
    fn non_fatal(message: impl Into<String>, won: bool) -> Self {
        Self {
            message: message.into(),
            fatal: false,
            won,
        }
    }
}

/// The result of receiving one good ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub won: bool,
    pub recipient_rand: U256,
    /// The PM session (recipientRandHash, hex) this ticket belongs to.
    pub session_id: String,
}

/// Everything about a ticket the recipient needs besides the ticket itself.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketContext {
    pub seed: U256,
    pub expiration_block: U256,
    pub price: Price,
}

/// The inputs of the last recipientRand derivation and its result: all tickets of a payment
/// share them, so the HMAC runs once per payment instead of once per ticket.
type RandMemo = (
    (Address, U256, U256, U256, U256, Price, ExpirationParams),
    U256,
);

struct NonceSet {
    seen: HashSet<u32>,
    expiration_block: U256,
}

/// Good tickets a sender must have sent before its key gets a table (about 0.7 MB and a few
/// milliseconds to build), so one-off senders cannot make the recipient build tables.
const KEY_TABLE_AFTER: u32 = 32;
/// Senders with a table at most; later ones are checked by recovery alone.
const MAX_KEY_TABLES: usize = 8;
/// Senders whose good tickets are counted at most.
const MAX_COUNTED_SENDERS: usize = 1024;

enum KnownSender {
    Counting(u32),
    Keyed(Box<SenderKey>),
}

/// The recipient's state: its secret, its policy, the nonces seen per recipientRand and the
/// keys of regular senders.
pub struct Recipient {
    pub address: Address,
    secret: [u8; 32],
    pub policy: RecipientPolicy,
    nonces: HashMap<U256, NonceSet>,
    last_rand: Option<RandMemo>,
    senders: HashMap<Address, KnownSender>,
    key_tables: usize,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipient")
            .field("address", &self.address)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// `minbytes(x)` of a signed big integer, as Go's `big.Int.Bytes()` (the sign is dropped).
fn minbytes_int(v: &BigInt) -> Vec<u8> {
    let (_, mag) = v.to_bytes_be();
    if mag == [0] { Vec::new() } else { mag }
}

impl Recipient {
    /// `secret` must come from a CSPRNG; it never leaves this struct.
    pub fn new(address: Address, secret: [u8; 32], policy: RecipientPolicy) -> Self {
        Self {
            address,
            secret,
            policy,
            nonces: HashMap::new(),
            last_rand: None,
            senders: HashMap::new(),
            key_tables: 0,
        }
    }

    /// Whether `sig` is `sender`'s `personal_sign` of `msg`, exactly as recovering the signer
    /// and comparing addresses decides; a known sender's key answers without recovery.
    fn signed_by(&mut self, sender: Address, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig65) = sig::precheck(sig) else {
            return false;
        };
        if let Some(KnownSender::Keyed(key)) = self.senders.get(&sender)
            && key.signed(&[(sig::personal_hash(msg), sig65)]) == [true]
        {
            return true;
        }
        match sig::recover_key(msg, sig) {
            Ok((signer, point)) if signer == sender => {
                self.count_good_ticket(sender, &point);
                true
            }
            _ => false,
        }
    }

    fn count_good_ticket(&mut self, sender: Address, point: &[u8; 65]) {
        if self.senders.len() >= MAX_COUNTED_SENDERS && !self.senders.contains_key(&sender) {
            return;
        }
        let entry = self
            .senders
            .entry(sender)
            .or_insert(KnownSender::Counting(0));
        if let KnownSender::Counting(n) = entry {
            *n = n.saturating_add(1);
            if *n >= KEY_TABLE_AFTER
                && self.key_tables < MAX_KEY_TABLES
                && let Some(key) = SenderKey::from_uncompressed(point)
            {
                *entry = KnownSender::Keyed(Box::new(key));
                self.key_tables += 1;
            }
        }
    }

    /// `recipientRand = uint256(HMAC-SHA256(secret, seed ‖ sender ‖ faceValue ‖ winProb ‖
    /// expirationBlock ‖ price.num ‖ price.den ‖ auxData))`, every integer in minimal bytes.
    pub fn recipient_rand(
        &self,
        sender: Address,
        face_value: U256,
        win_prob: U256,
        ctx: &TicketContext,
        expiration: &ExpirationParams,
    ) -> U256 {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.secret) {
            Ok(m) => m,
            // HMAC accepts keys of any length.
            Err(_) => return U256::ZERO,
        };
        mac.update(&minbytes(ctx.seed));
        mac.update(sender.as_slice());
        mac.update(&minbytes(face_value));
        mac.update(&minbytes(win_prob));
        mac.update(&minbytes(ctx.expiration_block));
        mac.update(&minbytes_int(ctx.price.numer()));
        mac.update(&minbytes_int(ctx.price.denom()));
        mac.update(&expiration.aux_data());
        U256::from_be_slice(&mac.finalize().into_bytes())
    }

    /// Issues params to `sender` for `price`. `seed` is fresh randomness from the caller.
    #[allow(clippy::too_many_arguments)]
    pub fn ticket_params(
        &self,
        sender: Address,
        price: &Price,
        gas_price: U256,
        max_float: U256,
        last_seen_l1_block: U256,
        expiration: ExpirationParams,
        seed: U256,
    ) -> Result<TicketParams, ParamsError> {
        let face_value = params::face_value(&self.policy, price, gas_price, max_float)?;
        let win_prob = params::win_prob(face_value, self.policy.ev);
        let expiration_block =
            last_seen_l1_block.saturating_add(U256::from(PARAMS_EXPIRATION_BLOCKS));
        let ctx = TicketContext {
            seed,
            expiration_block,
            price: price.clone(),
        };
        let rand = self.recipient_rand(sender, face_value, win_prob, &ctx, &expiration);
        Ok(TicketParams {
            recipient: self.address,
            face_value,
            win_prob,
            recipient_rand_hash: recipient_rand_hash(rand),
            seed,
            expiration_block,
            expiration,
        })
    }

    /// Receives one ticket (§1.13 step 4): sender check (fatal), recipient, sender ≠ 0,
    /// recipientRand, signature, win test, nonce, params expiry.
    pub fn receive(
        &mut self,
        ticket: &Ticket,
        sig_bytes: &[u8],
        ctx: &TicketContext,
        sender_check: Result<(), String>,
        last_seen_l1_block: U256,
    ) -> Result<Received, ReceiveError> {
        self.receive_one(
            ticket,
            sig_bytes,
            ctx,
            sender_check,
            last_seen_l1_block,
            false,
        )
    }

    /// Whether `ticket` names this recipient and carries the recipientRandHash this recipient
    /// derives for it from `ctx`: the checks that cost no signature recovery and no chain
    /// state. A ticket failing them is refused by [`Recipient::receive`] whatever the sender's
    /// state, so a caller may skip looking that state up.
    pub fn made_from_our_params(&self, ticket: &Ticket, ctx: &TicketContext) -> bool {
        ticket.recipient == self.address
            && ticket.sender != Address::ZERO
            && recipient_rand_hash(self.recipient_rand(
                ticket.sender,
                ticket.face_value,
                ticket.win_prob,
                ctx,
                &ticket.expiration,
            )) == ticket.recipient_rand_hash
    }

    /// Receives a payment's tickets in order, each exactly as [`Recipient::receive`] would,
    /// and stops after the first refusal (the last entry is then that refusal). The
    /// signatures of a known sender are checked together first.
    pub fn receive_payment(
        &mut self,
        tickets: &[(Ticket, Vec<u8>)],
        ctx: &TicketContext,
        sender_check: Result<(), String>,
        last_seen_l1_block: U256,
    ) -> Vec<Result<Received, ReceiveError>> {
        let shown = self.shown_by_known_key(tickets);
        let mut out = Vec::with_capacity(tickets.len());
        for ((ticket, sig), shown) in tickets.iter().zip(shown) {
            let got = self.receive_one(
                ticket,
                sig,
                ctx,
                sender_check.clone(),
                last_seen_l1_block,
                shown,
            );
            let refused = got.is_err();
            out.push(got);
            if refused {
                break;
            }
        }
        out
    }

    /// For each ticket, whether its signature is shown to be its sender's by the sender's
    /// known key (`false`: not known, or not shown — recovery decides).
    fn shown_by_known_key(&self, tickets: &[(Ticket, Vec<u8>)]) -> Vec<bool> {
        let mut shown = vec![false; tickets.len()];
        let Some((first, _)) = tickets.first() else {
            return shown;
        };
        let Some(KnownSender::Keyed(key)) = self.senders.get(&first.sender) else {
            return shown;
        };
        let mut items = Vec::with_capacity(tickets.len());
        let mut at = Vec::with_capacity(tickets.len());
        for (i, (ticket, sig)) in tickets.iter().enumerate() {
            if ticket.sender == first.sender
                && let Ok(sig) = sig::precheck(sig)
            {
                items.push((sig::personal_hash(ticket.hash().as_slice()), sig));
                at.push(i);
            }
        }
        for (i, verdict) in at.into_iter().zip(key.signed(&items)) {
            shown[i] = verdict;
        }
        shown
    }

    /// [`Recipient::receive`], with `signature_shown` when the signature is already known to
    /// be the sender's.
    fn receive_one(
        &mut self,
        ticket: &Ticket,
        sig_bytes: &[u8],
        ctx: &TicketContext,
        sender_check: Result<(), String>,
        last_seen_l1_block: U256,
        signature_shown: bool,
    ) -> Result<Received, ReceiveError> {
        let inputs = (
            ticket.sender,
            ticket.face_value,
            ticket.win_prob,
            ctx.seed,
            ctx.expiration_block,
            ctx.price.clone(),
            ticket.expiration,
        );
        let rand = match &self.last_rand {
            Some((k, r)) if *k == inputs => *r,
            _ => {
                let r = self.recipient_rand(
                    ticket.sender,
                    ticket.face_value,
                    ticket.win_prob,
                    ctx,
                    &ticket.expiration,
                );
                self.last_rand = Some((inputs, r));
                r
            }
        };
        sender_check.map_err(ReceiveError::fatal)?;
        if ticket.recipient != self.address {
            return Err(ReceiveError::fatal("invalid ticket recipient"));
        }
        if ticket.sender == Address::ZERO {
            return Err(ReceiveError::fatal("invalid ticket sender"));
        }
        if recipient_rand_hash(rand) != ticket.recipient_rand_hash {
            return Err(ReceiveError::fatal(
                "invalid recipientRand for ticket recipientRandHash",
            ));
        }
        if !signature_shown && !self.signed_by(ticket.sender, ticket.hash().as_slice(), sig_bytes) {
            return Err(ReceiveError::non_fatal("invalid ticket signature", false));
        }
        let won = is_winning(sig_bytes, rand, ticket.win_prob);
        self.note_nonce(rand, ticket, ctx.expiration_block)
            .map_err(|m| ReceiveError::non_fatal(m, won))?;
        if ctx.expiration_block <= last_seen_l1_block {
            return Err(ReceiveError::non_fatal("TicketParams expired", won));
        }
        Ok(Received {
            won,
            recipient_rand: rand,
            session_id: format!("{:#x}", ticket.recipient_rand_hash),
        })
    }

    fn note_nonce(
        &mut self,
        rand: U256,
        ticket: &Ticket,
        expiration_block: U256,
    ) -> Result<(), String> {
        let set = self.nonces.entry(rand).or_insert_with(|| NonceSet {
            seen: HashSet::new(),
            expiration_block,
        });
        if set.seen.contains(&ticket.sender_nonce) {
            return Err(format!(
                "invalid ticket senderNonce: already seen sender={} nonce={}",
                ticket.sender, ticket.sender_nonce
            ));
        }
        if set.seen.len() >= MAX_SENDER_NONCES {
            return Err(format!(
                "invalid ticket senderNonce: too many values sender={} nonce={}",
                ticket.sender, ticket.sender_nonce
            ));
        }
        set.seen.insert(ticket.sender_nonce);
        Ok(())
    }

    /// Forgets nonce sets whose params have expired.
    pub fn sweep_nonces(&mut self, last_seen_l1_block: U256) {
        self.nonces
            .retain(|_, s| s.expiration_block > last_seen_l1_block);
    }

    pub fn tracked_sessions(&self) -> usize {
        self.nonces.len()
    }
}

/// A price per pixel from the wire's PriceInfo (reduced; `pixels_per_unit` must not be 0).
pub fn price_from_info(price_per_unit: i64, pixels_per_unit: i64) -> Option<Price> {
    if pixels_per_unit == 0 {
        return None;
    }
    Some(BigRational::new(
        price_per_unit.into(),
        pixels_per_unit.into(),
    ))
}

/// The session id go-livepeer uses for a recipientRandHash.
pub fn session_id(recipient_rand_hash: B256) -> String {
    format!("{recipient_rand_hash:#x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sig::{address_of, sign};
    use k256::ecdsa::SigningKey;

    fn setup() -> (Recipient, SigningKey, Address, TicketParams, Price) {
        let o_key = SigningKey::from_slice(&[9u8; 32]).expect("key");
        let o_addr = address_of(o_key.verifying_key());
        let policy = RecipientPolicy {
            ev: U256::from(1_000u64),
            redeem_gas: U256::from(10u64),
            tx_cost_multiplier: U256::from(100u64),
            max_face_value: U256::ZERO,
        };
        let r = Recipient::new(o_addr, [42u8; 32], policy);
        let b_key = SigningKey::from_slice(&[3u8; 32]).expect("key");
        let b_addr = address_of(b_key.verifying_key());
        let price = price_from_info(1000, 3).expect("price");
        let exp = ExpirationParams {
            creation_round: 7,
            creation_round_block_hash: B256::repeat_byte(0xab),
        };
        let params = r
            .ticket_params(
                b_addr,
                &price,
                U256::from(1u8),
                U256::MAX,
                U256::from(100u8),
                exp,
                U256::from(123456u64),
            )
            .expect("params");
        (r, b_key, b_addr, params, price)
    }

    fn ticket(p: &TicketParams, sender: Address, nonce: u32) -> Ticket {
        Ticket {
            recipient: p.recipient,
            sender,
            face_value: p.face_value,
            win_prob: p.win_prob,
            sender_nonce: nonce,
            recipient_rand_hash: p.recipient_rand_hash,
            expiration: p.expiration,
        }
    }

    #[test]
    fn receive_accepts_good_tickets_and_refuses_bad_ones_with_the_right_class() {
        let (mut r, key, sender, p, price) = setup();
        let ctx = TicketContext {
            seed: p.seed,
            expiration_block: p.expiration_block,
            price: price.clone(),
        };
        let l1 = U256::from(101u8);
        let t1 = ticket(&p, sender, 1);
        let s1 = sign(&key, t1.hash().as_slice());
        let ok = r.receive(&t1, &s1, &ctx, Ok(()), l1).expect("accepted");
        assert_eq!(ok.session_id, session_id(p.recipient_rand_hash));

        // replayed nonce: non-fatal
        let e = r.receive(&t1, &s1, &ctx, Ok(()), l1).unwrap_err();
        assert!(!e.fatal && e.message.contains("already seen"), "{e:?}");

        // faceValue changed: the rand no longer matches (fatal)
        let mut t = ticket(&p, sender, 2);
        t.face_value += U256::from(1u8);
        let s = sign(&key, t.hash().as_slice());
        let e = r.receive(&t, &s, &ctx, Ok(()), l1).unwrap_err();
        assert_eq!(
            (e.fatal, e.message.as_str()),
            (true, "invalid recipientRand for ticket recipientRandHash")
        );

        // a different price echoed back: fatal too
        let other = TicketContext {
            price: price_from_info(1, 1).expect("p"),
            ..ctx.clone()
        };
        let t = ticket(&p, sender, 3);
        let s = sign(&key, t.hash().as_slice());
        assert!(r.receive(&t, &s, &other, Ok(()), l1).unwrap_err().fatal);

        // not us
        let mut t = ticket(&p, sender, 4);
        t.recipient = Address::repeat_byte(1);
        assert_eq!(
            r.receive(&t, &s, &ctx, Ok(()), l1).unwrap_err().message,
            "invalid ticket recipient"
        );
        // zero sender
        let t = ticket(&p, Address::ZERO, 5);
        assert_eq!(
            r.receive(&t, &s, &ctx, Ok(()), l1).unwrap_err().message,
            "invalid ticket sender"
        );
        // sender check (e.g. unlocking) is fatal and first
        let t = ticket(&p, sender, 6);
        let e = r
            .receive(&t, &s, &ctx, Err("sender is unlocking".into()), l1)
            .unwrap_err();
        assert!(e.fatal);
        // bad signature: non-fatal
        let t = ticket(&p, sender, 7);
        let e = r.receive(&t, &s1, &ctx, Ok(()), l1).unwrap_err();
        assert_eq!(
            (e.fatal, e.message.as_str()),
            (false, "invalid ticket signature")
        );
        // expired params: non-fatal
        let t = ticket(&p, sender, 8);
        let s = sign(&key, t.hash().as_slice());
        let e = r
            .receive(&t, &s, &ctx, Ok(()), p.expiration_block)
            .unwrap_err();
        assert_eq!(
            (e.fatal, e.message.as_str()),
            (false, "TicketParams expired")
        );
    }

    #[test]
    fn a_payment_is_received_exactly_as_its_tickets_one_by_one() {
        let (mut fast, key, sender, p, price) = setup();
        let (mut slow, ..) = setup();
        let other = SigningKey::from_slice(&[4u8; 32]).expect("key");
        let ctx = TicketContext {
            seed: p.seed,
            expiration_block: p.expiration_block,
            price,
        };
        let l1 = U256::from(101u8);
        let good = |nonce: u32| {
            let t = ticket(&p, sender, nonce);
            let sig = sign(&key, t.hash().as_slice()).to_vec();
            (t, sig)
        };
        // Enough good tickets for the sender's key to get its table in `fast`; `slow` never
        // sees that many, so it decides every signature by recovery.
        let warmup: Vec<_> = (1..=KEY_TABLE_AFTER + 1).map(good).collect();
        assert!(
            fast.receive_payment(&warmup, &ctx, Ok(()), l1)
                .iter()
                .all(Result::is_ok)
        );
        assert!(matches!(
            fast.senders.get(&sender),
            Some(KnownSender::Keyed(_))
        ));
        // Each kind of bad signature, after good tickets, must end the payment exactly where
        // and as ticket-by-ticket receiving does.
        let mut nonce = 100;
        type Corruption<'a> = Box<dyn Fn(&mut Vec<u8>, &Ticket) + 'a>;
        let mut corruptions: Vec<Corruption> = vec![
            Box::new(|_, _| {}),
            Box::new(|sig, _| sig[64] ^= 27 ^ 28),
            Box::new(|sig, t| *sig = sign(&other, t.hash().as_slice()).to_vec()),
            Box::new(|sig, _| sig.truncate(64)),
            Box::new(|sig, _| sig[..32].fill(0)),
            Box::new(|sig, _| sig[32..64].fill(0xff)),
            Box::new(|sig, _| sig[5] ^= 1),
        ];
        // A high-s twin of a good signature: valid as ECDSA, refused by go-livepeer.
        corruptions.push(Box::new(|sig, _| {
            let s = U256::from_be_slice(&sig[32..64]);
            let n = U256::from_str_radix(
                "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
                16,
            )
            .expect("n");
            sig[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
            sig[64] ^= 27 ^ 28;
        }));
        for corrupt in &corruptions {
            let mut payment: Vec<_> = (0..4).map(|i| good(nonce + i)).collect();
            nonce += 10;
            let (t, sig) = &mut payment[2];
            corrupt(sig, t);
            let one_by_one: Vec<_> = payment
                .iter()
                .map(|(t, sig)| slow.receive(t, sig, &ctx, Ok(()), l1))
                .scan(false, |stopped, r| {
                    (!*stopped).then(|| {
                        *stopped = r.is_err();
                        r
                    })
                })
                .collect();
            assert_eq!(fast.receive_payment(&payment, &ctx, Ok(()), l1), one_by_one);
        }
        assert!(matches!(
            slow.senders.get(&sender),
            Some(KnownSender::Counting(n)) if *n < KEY_TABLE_AFTER
        ));
    }

    #[test]
    fn nonce_cap_is_600_per_rand_and_expires() {
        let (mut r, key, sender, p, price) = setup();
        let ctx = TicketContext {
            seed: p.seed,
            expiration_block: p.expiration_block,
            price,
        };
        let l1 = U256::from(101u8);
        for n in 1..=600u32 {
            let t = ticket(&p, sender, n);
            let s = sign(&key, t.hash().as_slice());
            r.receive(&t, &s, &ctx, Ok(()), l1).expect("accepted");
        }
        let t = ticket(&p, sender, 601);
        let s = sign(&key, t.hash().as_slice());
        let e = r.receive(&t, &s, &ctx, Ok(()), l1).unwrap_err();
        assert!(!e.fatal && e.message.contains("too many values"), "{e:?}");
        assert_eq!(r.tracked_sessions(), 1);
        r.sweep_nonces(p.expiration_block);
        assert_eq!(r.tracked_sessions(), 0);
    }

    #[test]
    fn price_is_reduced_and_zero_pixels_refused() {
        let p = price_from_info(10, 4).expect("price");
        assert_eq!(
            (p.numer().clone(), p.denom().clone()),
            (BigInt::from(5), BigInt::from(2))
        );
        assert!(price_from_info(1, 0).is_none());
        let zero = price_from_info(0, 5).expect("price");
        assert!(minbytes_int(zero.numer()).is_empty());
        assert_eq!(minbytes_int(zero.denom()), vec![1]);
    }
}
