//! Exact credit balances: the orchestrator's ledger per (sender, session) and the gateway's
//! per (recipient, session), and how many tickets cover a fee.

use std::collections::HashMap;

use alloy_primitives::Address;
use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{Signed, Zero};

/// Balances keyed by (counterparty, session/manifest id), in wei as exact rationals.
#[derive(Debug, Default, Clone)]
pub struct Balances {
    entries: HashMap<(Address, String), BigRational>,
}

impl Balances {
    pub fn credit(&mut self, who: Address, session: &str, amount: &BigRational) {
        let e = self
            .entries
            .entry((who, session.to_string()))
            .or_insert_with(BigRational::zero);
        *e += amount;
    }

    pub fn debit(&mut self, who: Address, session: &str, amount: &BigRational) {
        let e = self
            .entries
            .entry((who, session.to_string()))
            .or_insert_with(BigRational::zero);
        *e -= amount;
    }

    pub fn balance(&self, who: Address, session: &str) -> BigRational {
        self.entries
            .get(&(who, session.to_string()))
            .cloned()
            .unwrap_or_else(BigRational::zero)
    }

    /// Takes all of a positive balance (the gateway reserves existing credit before a request).
    pub fn reserve(&mut self, who: Address, session: &str) -> BigRational {
        match self.entries.get_mut(&(who, session.to_string())) {
            Some(e) if e.is_positive() => std::mem::replace(e, BigRational::zero()),
            _ => BigRational::zero(),
        }
    }

    pub fn remove(&mut self, who: Address, session: &str) {
        self.entries.remove(&(who, session.to_string()));
    }
}

/// Tickets a gateway sends to cover `fee` given `existing` credit, and the credit they add:
/// `min_credit = max(fee, ticket_ev)`; none when existing ≥ min_credit; otherwise
/// `n = ceil((min_credit − existing) / ticket_ev)`.
pub fn tickets_for_fee(
    fee: &BigRational,
    ticket_ev: &BigRational,
    existing: &BigRational,
) -> (u64, BigRational) {
    if !ticket_ev.is_positive() {
        return (0, BigRational::zero());
    }
    let min_credit = if fee > ticket_ev { fee } else { ticket_ev };
    if existing >= min_credit {
        return (0, BigRational::zero());
    }
    let need = (min_credit - existing) / ticket_ev;
    let n: BigInt = Integer::div_ceil(need.numer(), need.denom());
    let n = u64::try_from(n).unwrap_or(u64::MAX);
    let credit = ticket_ev * BigRational::from_integer(n.into());
    (n, credit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: i64, d: i64) -> BigRational {
        BigRational::new(n.into(), d.into())
    }

    #[test]
    fn ledger_is_exact() {
        let mut b = Balances::default();
        let a = Address::repeat_byte(1);
        for _ in 0..3 {
            b.credit(a, "s", &r(1, 3));
        }
        assert_eq!(b.balance(a, "s"), r(1, 1));
        b.debit(a, "s", &r(5, 2));
        assert_eq!(b.balance(a, "s"), r(-3, 2));
        assert_eq!(b.reserve(a, "s"), r(0, 1));
        b.credit(a, "s", &r(2, 1));
        assert_eq!(b.reserve(a, "s"), r(1, 2));
        assert_eq!(b.balance(a, "s"), r(0, 1));
    }

    #[test]
    fn tickets_cover_the_fee() {
        assert_eq!(
            tickets_for_fee(&r(10, 1), &r(3, 1), &r(0, 1)),
            (4, r(12, 1))
        );
        assert_eq!(tickets_for_fee(&r(10, 1), &r(3, 1), &r(4, 1)), (2, r(6, 1)));
        assert_eq!(tickets_for_fee(&r(1, 1), &r(3, 1), &r(3, 1)), (0, r(0, 1)));
        assert_eq!(tickets_for_fee(&r(1, 1), &r(3, 1), &r(0, 1)), (1, r(3, 1)));
        assert_eq!(tickets_for_fee(&r(7, 2), &r(7, 4), &r(0, 1)), (2, r(7, 2)));
    }
}
