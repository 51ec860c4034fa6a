//! Ticket parameters: how an orchestrator chooses faceValue and winProb (go-livepeer
//! pm/recipient.go), and how a sender checks the params it receives (pm/sender.go).

use alloy_primitives::{Address, B256, U256};
use num_rational::BigRational;
use num_traits::Signed;
use serde::Serialize;

use crate::ticket::{ExpirationParams, expected_value};
use crate::{MAX_WIN_PROB, to_bigint};

/// L1 blocks a set of params stays valid for.
pub const PARAMS_EXPIRATION_BLOCKS: u64 = 40;
/// A sender refuses params with this many blocks or fewer left.
pub const PARAMS_EXPIRY_BUFFER: u64 = 1;
/// faceValue floor = EV × this when the transaction cost is below EV.
pub const EV_MULTIPLIER: u64 = 100;
/// Gas price assumed by the affordability check (3 gwei).
pub const AVG_GAS_PRICE: u64 = 3_000_000_000;

/// Price per pixel in wei as a reduced rational (pricePerUnit / pixelsPerUnit).
pub type Price = BigRational;

/// Parameters an orchestrator issues to a sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketParams {
    pub recipient: Address,
    pub face_value: U256,
    pub win_prob: U256,
    pub recipient_rand_hash: B256,
    /// Opaque to the sender; echoed back with every ticket.
    pub seed: U256,
    /// L1 block number after which the params are expired.
    pub expiration_block: U256,
    pub expiration: ExpirationParams,
}

/// The orchestrator's ticket policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientPolicy {
    /// Expected value per ticket, wei (go-livepeer -ticketEV, default 8e9).
    pub ev: U256,
    /// Gas for one redemption (1 200 000 on Arbitrum).
    pub redeem_gas: U256,
    /// faceValue = txCost × this (100).
    pub tx_cost_multiplier: U256,
    /// Cap on faceValue; zero means none.
    pub max_face_value: U256,
}

impl Default for RecipientPolicy {
    fn default() -> Self {
        Self {
            ev: U256::from(8_000_000_000u64),
            redeem_gas: U256::from(1_200_000u64),
            tx_cost_multiplier: U256::from(100u64),
            max_face_value: U256::ZERO,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("insufficient sender reserve")]
    InsufficientReserve,
}

/// faceValue for a sender (§1.10 steps 1–6). `max_float` is what the sender's reserve and
/// deposit can cover for us.
pub fn face_value(
    policy: &RecipientPolicy,
    price: &Price,
    gas_price: U256,
    max_float: U256,
) -> Result<U256, ParamsError> {
    if !price.is_positive() {
        return Ok(U256::ZERO);
    }
    let tx_cost = policy.redeem_gas.saturating_mul(gas_price);
    let mut fv = tx_cost.saturating_mul(policy.tx_cost_multiplier);
    if fv < policy.ev {
        fv = policy.ev.saturating_mul(U256::from(EV_MULTIPLIER));
    }
    if fv > max_float {
        fv = max_float;
    }
    if !policy.max_face_value.is_zero() && fv > policy.max_face_value {
        fv = policy.max_face_value;
    }
    let avg_cost = policy.redeem_gas.saturating_mul(U256::from(AVG_GAS_PRICE));
    if fv < policy.ev || (fv < tx_cost && fv < avg_cost) {
        return Err(ParamsError::InsufficientReserve);
    }
    Ok(fv)
}

/// winProb for a faceValue: `EV × ceil((2^256 − 1) / faceValue)`, so the realised EV is at
/// least the configured one (§1.10 step 7).
pub fn win_prob(face_value: U256, ev: U256) -> U256 {
    if face_value.is_zero() {
        return U256::ZERO;
    }
    if face_value == ev {
        return MAX_WIN_PROB;
    }
    let x = MAX_WIN_PROB / face_value;
    let ceil = if (MAX_WIN_PROB % face_value).is_zero() {
        x
    } else {
        x + U256::from(1u8)
    };
    ev.saturating_mul(ceil)
}

/// A sender's view of its own on-chain funds (TicketBroker.getSenderInfo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SenderInfo {
    pub deposit: U256,
    pub withdraw_round: U256,
    pub reserve: U256,
}

/// A sender's spending limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderLimits {
    /// Max EV of one ticket, wei (default 3e12).
    pub max_ticket_ev: U256,
    /// Max EV of one batch, wei (default 2e13).
    pub max_total_ev: U256,
    /// faceValue must be ≤ deposit / this.
    pub deposit_multiplier: u64,
}

impl Default for SenderLimits {
    fn default() -> Self {
        Self {
            max_ticket_ev: U256::from(3_000_000_000_000u64),
            max_total_ev: U256::from(20_000_000_000_000u64),
            deposit_multiplier: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderParamsError {
    #[error("missing ticket params")]
    Missing,
    #[error("ticket params expired")]
    Expired,
    #[error("ticket faceValue too low")]
    FaceValueTooLow,
    #[error("ticket EV higher than max ticket EV")]
    TicketEvTooHigh,
    #[error("no sender deposit")]
    NoDeposit,
    #[error("no sender reserve")]
    NoReserve,
    #[error("sender is unlocking")]
    Unlocking,
    #[error("total ticket EV higher than max total ticket EV")]
    TotalEvTooHigh,
    #[error("ticket faceValue higher than max faceValue")]
    FaceValueTooHigh,
}

/// The sender's checks on params received for `n` tickets (§1.12).
pub fn validate_for_sender(
    params: Option<&TicketParams>,
    n: u32,
    last_seen_l1_block: U256,
    info: &SenderInfo,
    last_initialized_round: U256,
    limits: &SenderLimits,
) -> Result<(), SenderParamsError> {
    let p = params.ok_or(SenderParamsError::Missing)?;
    if p.expiration_block.is_zero()
        || p.expiration_block <= last_seen_l1_block
        || p.expiration_block - last_seen_l1_block <= U256::from(PARAMS_EXPIRY_BUFFER)
    {
        return Err(SenderParamsError::Expired);
    }
    let ev = expected_value(p.face_value, p.win_prob);
    if !ev.is_positive() {
        return Ok(());
    }
    if ev >= BigRational::from_integer(to_bigint(p.face_value)) {
        return Err(SenderParamsError::FaceValueTooLow);
    }
    if ev > BigRational::from_integer(to_bigint(limits.max_ticket_ev)) {
        return Err(SenderParamsError::TicketEvTooHigh);
    }
    if info.deposit.is_zero() {
        return Err(SenderParamsError::NoDeposit);
    }
    if info.reserve.is_zero() {
        return Err(SenderParamsError::NoReserve);
    }
    if !info.withdraw_round.is_zero()
        && info.withdraw_round <= last_initialized_round.saturating_add(U256::from(1u8))
    {
        return Err(SenderParamsError::Unlocking);
    }
    if ev * BigRational::from_integer(n.into())
        > BigRational::from_integer(to_bigint(limits.max_total_ev))
    {
        return Err(SenderParamsError::TotalEvTooHigh);
    }
    let multiplier = U256::from(limits.deposit_multiplier.max(1));
    if p.face_value > info.deposit / multiplier {
        return Err(SenderParamsError::FaceValueTooHigh);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigInt;

    fn policy() -> RecipientPolicy {
        RecipientPolicy {
            ev: U256::from(5u8),
            redeem_gas: U256::from(10_000u64),
            tx_cost_multiplier: U256::from(100u64),
            max_face_value: U256::ZERO,
        }
    }

    fn one() -> Price {
        BigRational::from_integer(BigInt::from(1))
    }

    /// go-livepeer pm/recipient_test.go TestTicketParams.
    #[test]
    fn upstream_face_value_and_win_prob() {
        let p = policy();
        let fv = face_value(&p, &one(), U256::from(100u64), U256::MAX).expect("fv");
        assert_eq!(fv, U256::from(100_000_000u64));
        assert_eq!(
            win_prob(fv, p.ev).to_string(),
            "5789604461865809771178549250434395392663499233282028201972879200395660"
        );
        let fv = face_value(&p, &one(), U256::from(777u64), U256::MAX).expect("fv");
        assert_eq!(fv, U256::from(777_000_000u64));
        assert_eq!(
            win_prob(fv, p.ev).to_string(),
            "745122839364969082519761808292714979750772102095499125093034646125570"
        );
        let fv = face_value(&p, &one(), U256::from(1u64), U256::from(10_001u64)).expect("fv");
        assert_eq!(fv, U256::from(10_001u64));
        assert_eq!(
            win_prob(fv, p.ev).to_string(),
            "57890255593098787833002192285115442382396752657554526567072084795477017120"
        );
        assert_eq!(
            face_value(&p, &one(), U256::from(1u64), U256::from(4u64)),
            Err(ParamsError::InsufficientReserve)
        );
        let zero = BigRational::from_integer(BigInt::from(0));
        assert_eq!(
            face_value(&p, &zero, U256::from(1u64), U256::MAX),
            Ok(U256::ZERO)
        );
        let neg = BigRational::from_integer(BigInt::from(-1));
        assert_eq!(
            face_value(&p, &neg, U256::from(1u64), U256::MAX),
            Ok(U256::ZERO)
        );
        assert_eq!(win_prob(U256::ZERO, p.ev), U256::ZERO);
        assert_eq!(win_prob(p.ev, p.ev), MAX_WIN_PROB);
    }

    #[test]
    fn max_face_value_caps() {
        let mut p = policy();
        p.max_face_value = U256::from(2_000_000u64);
        let fv = face_value(&p, &one(), U256::from(100u64), U256::MAX).expect("fv");
        assert_eq!(fv, U256::from(2_000_000u64));
        // A cap below the transaction cost makes the ticket unaffordable to redeem.
        p.max_face_value = U256::from(50_000u64);
        assert_eq!(
            face_value(&p, &one(), U256::from(100u64), U256::MAX),
            Err(ParamsError::InsufficientReserve)
        );
    }

    #[test]
    fn sender_validation_rules() {
        let p = policy();
        let fv = U256::from(100_000_000u64);
        let params = TicketParams {
            recipient: Address::ZERO,
            face_value: fv,
            win_prob: win_prob(fv, p.ev),
            recipient_rand_hash: B256::ZERO,
            seed: U256::from(7u8),
            expiration_block: U256::from(140u64),
            expiration: ExpirationParams::default(),
        };
        let info = SenderInfo {
            deposit: U256::from(1_000_000_000u64),
            withdraw_round: U256::ZERO,
            reserve: U256::from(1u8),
        };
        let limits = SenderLimits::default();
        let ok = |l1: u64, info: &SenderInfo, n: u32, limits: &SenderLimits| {
            validate_for_sender(
                Some(&params),
                n,
                U256::from(l1),
                info,
                U256::from(10u8),
                limits,
            )
        };
        assert_eq!(ok(100, &info, 1, &limits), Ok(()));
        assert_eq!(ok(139, &info, 1, &limits), Err(SenderParamsError::Expired));
        assert_eq!(ok(200, &info, 1, &limits), Err(SenderParamsError::Expired));
        let mut i = info;
        i.withdraw_round = U256::from(11u8);
        assert_eq!(ok(100, &i, 1, &limits), Err(SenderParamsError::Unlocking));
        i.withdraw_round = U256::from(12u8);
        assert_eq!(ok(100, &i, 1, &limits), Ok(()));
        let mut i = info;
        i.deposit = U256::from(10u8);
        assert_eq!(
            ok(100, &i, 1, &limits),
            Err(SenderParamsError::FaceValueTooHigh)
        );
        let tight = SenderLimits {
            max_total_ev: U256::from(9u8),
            ..limits.clone()
        };
        assert_eq!(
            ok(100, &info, 2, &tight),
            Err(SenderParamsError::TotalEvTooHigh)
        );
        let mut max = params.clone();
        max.win_prob = MAX_WIN_PROB;
        assert_eq!(
            validate_for_sender(
                Some(&max),
                1,
                U256::from(100u8),
                &info,
                U256::from(10u8),
                &limits
            ),
            Err(SenderParamsError::FaceValueTooLow)
        );
        assert_eq!(
            validate_for_sender(None, 1, U256::from(100u8), &info, U256::from(10u8), &limits),
            Err(SenderParamsError::Missing)
        );
    }
}
