//! The recipient's receive flow on arbitrary payments: decode, then every ticket through
//! sender check, recipient, rand, signature, win test, nonce and expiry. No panic, ever.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpe_pm::params::RecipientPolicy;
use lpe_pm::recipient::{Recipient, TicketContext};
use lpe_pm::wire::{Payment, decode_payment};
use lpe_pm::{Address, U256};

fuzz_target!(|data: &[u8]| {
    let Ok(payment) = <Payment as prost::Message>::decode(data) else {
        return;
    };
    let Ok(decoded) = decode_payment(&payment) else {
        return;
    };
    let Some(params) = decoded.params else { return };
    let mut r = Recipient::new(
        params.recipient,
        [0x5a; 32],
        RecipientPolicy::default(),
    );
    let ctx = TicketContext {
        seed: params.seed,
        expiration_block: params.expiration_block,
        price: decoded.price.unwrap_or_else(|| lpe_pm::BigRational::from_integer(1.into())),
    };
    // As the node receives a payment, then ticket by ticket.
    let _ = r.receive_payment(&decoded.tickets, &ctx, Ok(()), U256::from(1000u32));
    for (ticket, sig) in &decoded.tickets {
        let _ = r.receive(ticket, sig, &ctx, Ok(()), U256::from(1000u32));
        let _ = ticket.ev();
    }
    r.sweep_nonces(U256::MAX);
    let _ = Address::ZERO;
});
