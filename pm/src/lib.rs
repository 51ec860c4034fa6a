//! Livepeer probabilistic micropayments (PM), bit for bit compatible with go-livepeer and the
//! TicketBroker contract.
//!
//! Invariant: this crate is pure. It does no I/O, reads no clock and draws no randomness;
//! block numbers, gas prices, seeds and keys are arguments. Money is exact: `U256` for on-chain
//! integers, `BigRational` for expected values and balances.

pub mod balance;
pub mod inspect;
pub mod params;
pub mod recipient;
pub mod sender;
pub mod sender_key;
pub mod sig;
pub mod ticket;
pub mod wire;

pub use alloy_primitives::{Address, B256, U256, keccak256};
pub use num_bigint::{BigInt, BigUint};
pub use num_rational::BigRational;

/// `2^256 − 1`: winProb is the numerator of a fraction over this.
pub const MAX_WIN_PROB: U256 = U256::MAX;

/// Minimal big-endian bytes, as Go's `big.Int.Bytes()` (zero → empty).
pub fn minbytes(v: U256) -> Vec<u8> {
    let b = v.to_be_bytes::<32>();
    let first = b.iter().position(|&x| x != 0).unwrap_or(32);
    b[first..].to_vec()
}

/// Parses minimal (or any ≤ 32-byte) big-endian bytes; longer input is refused.
pub fn u256_from_be(bytes: &[u8]) -> Option<U256> {
    if bytes.len() > 32 {
        return None;
    }
    let mut b = [0u8; 32];
    b[32 - bytes.len()..].copy_from_slice(bytes);
    Some(U256::from_be_bytes(b))
}

/// An exact amount as text: `n` when whole, else `n/d` (lowest terms).
pub fn rational_string(r: &BigRational) -> String {
    if r.is_integer() {
        r.numer().to_string()
    } else {
        format!("{}/{}", r.numer(), r.denom())
    }
}

pub fn to_biguint(v: U256) -> BigUint {
    BigUint::from_bytes_be(&v.to_be_bytes::<32>())
}

pub fn to_bigint(v: U256) -> BigInt {
    BigInt::from(to_biguint(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minbytes_matches_go_big_int_bytes() {
        assert!(minbytes(U256::ZERO).is_empty());
        assert_eq!(minbytes(U256::from(1u8)), vec![1]);
        assert_eq!(minbytes(U256::from(256u16)), vec![1, 0]);
        assert_eq!(u256_from_be(&[1, 0]), Some(U256::from(256u16)));
        assert_eq!(u256_from_be(&[0u8; 33]), None);
    }
}
