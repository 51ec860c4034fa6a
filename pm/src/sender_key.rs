//! Signature checks against a sender's public key once it is known.
//!
//! A recipient hears from the same few senders for hours, so after a sender's key has been
//! recovered it pays to precompute multiples of it. Checking a signature then needs no
//! recovery: `R' = (z/s)·G + (r/s)·P` from two fixed-base tables is 64 point additions and no
//! doublings, against roughly 130 doublings and 70 additions plus a square root for a recovery.
//!
//! The check is exactly as strict as recovering and comparing addresses: it passes only when
//! `R'` equals the point `R` that the signature's `r` and `v` name, which is the case exactly
//! when recovery would return `P`. When it does not pass, the caller recovers as before and
//! reports go-livepeer's reason, so the fast path can only ever save work, never change an
//! answer.

use std::sync::OnceLock;

use alloy_primitives::B256;
use k256::elliptic_curve::PrimeField;
use k256::elliptic_curve::group::Curve;
use k256::elliptic_curve::ops::{BatchInvert, Reduce};
use k256::elliptic_curve::point::AffineCoordinates;
use k256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar, U256 as K256Uint};

const WINDOW_BITS: usize = 8;
const WINDOWS: usize = 256 / WINDOW_BITS;
const DIGITS: usize = (1 << WINDOW_BITS) - 1;

/// `d·2^(8j)·B` for every byte position `j` and non-zero byte value `d`: multiplying `B` by a
/// scalar is then one mixed addition per non-zero byte of the scalar. 8160 affine points.
pub struct FixedBaseTable {
    points: Vec<AffinePoint>,
}

impl FixedBaseTable {
    pub fn new(base: ProjectivePoint) -> Self {
        let mut multiples = Vec::with_capacity(WINDOWS * DIGITS);
        let mut window_base = base;
        for _ in 0..WINDOWS {
            let mut multiple = window_base;
            for _ in 0..DIGITS {
                multiples.push(multiple);
                multiple += window_base;
            }
            // 256 times this window's base is the next window's base.
            window_base = multiple;
        }
        let mut points = vec![AffinePoint::IDENTITY; multiples.len()];
        ProjectivePoint::batch_normalize(&multiples, &mut points);
        Self { points }
    }

    pub fn mul(&self, k: &Scalar) -> ProjectivePoint {
        let bytes = k.to_bytes();
        let mut acc = ProjectivePoint::IDENTITY;
        for (window, &digit) in bytes.iter().rev().enumerate() {
            if digit != 0 {
                acc += &self.points[window * DIGITS + usize::from(digit) - 1];
            }
        }
        acc
    }
}

/// The generator's table, computed once per process.
fn generator_table() -> &'static FixedBaseTable {
    static TABLE: OnceLock<FixedBaseTable> = OnceLock::new();
    TABLE.get_or_init(|| FixedBaseTable::new(ProjectivePoint::GENERATOR))
}

/// A sender's public key with its table.
pub struct SenderKey {
    table: FixedBaseTable,
}

impl SenderKey {
    /// From the 65-byte uncompressed SEC1 encoding that recovery returns.
    pub fn from_uncompressed(point: &[u8; 65]) -> Option<Self> {
        let key = k256::PublicKey::from_sec1_bytes(point).ok()?;
        Some(Self {
            table: FixedBaseTable::new(key.to_projective()),
        })
    }

    /// For each `(digest, sig)` — sig already checked for length, low s and v ∈ {27, 28} —
    /// whether it names this key with the recovery id it carries. `false` means "not shown",
    /// not "invalid": recover to find out why. Checking a payment's tickets together shares
    /// one scalar inversion and one field inversion among them.
    pub fn signed(&self, items: &[(B256, &[u8; 65])]) -> Vec<bool> {
        let mut shown = vec![false; items.len()];
        // r and s must be in [1, n − 1], as recovery requires.
        let scalar = |bytes: &[u8]| {
            let mut b = [0u8; 32];
            b.copy_from_slice(bytes);
            Option::<Scalar>::from(Scalar::from_repr(FieldBytes::from(b)))
                .filter(|k| !bool::from(k.is_zero()))
        };
        let candidates: Vec<(usize, Scalar, Scalar)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, (_, sig))| Some((i, scalar(&sig[..32])?, scalar(&sig[32..64])?)))
            .collect();
        let ss: Vec<Scalar> = candidates.iter().map(|&(_, _, s)| s).collect();
        // Every s⁻¹ from one inversion (Montgomery's trick); an empty batch fails.
        let Some(s_inv) =
            Option::<Vec<Scalar>>::from(<Scalar as BatchInvert<[Scalar]>>::batch_invert(&ss))
        else {
            return shown;
        };
        let points: Vec<ProjectivePoint> = candidates
            .iter()
            .zip(&s_inv)
            .map(|(&(i, r, _), k)| {
                // The digest as a scalar, reduced mod n as libsecp256k1 does.
                let z = <Scalar as Reduce<K256Uint>>::reduce_bytes(&FieldBytes::from(items[i].0.0));
                generator_table().mul(&(z * k)) + self.table.mul(&(r * k))
            })
            .collect();
        let mut affine = vec![AffinePoint::IDENTITY; points.len()];
        ProjectivePoint::batch_normalize(&points, &mut affine);
        for (&(i, _, _), a) in candidates.iter().zip(&affine) {
            let sig = items[i].1;
            // v 27 names the R with even y, 28 the one with odd y; R's x is r itself.
            shown[i] = *a != AffinePoint::IDENTITY
                && a.x()[..] == sig[..32]
                && bool::from(a.y_is_odd()) == (sig[64] == 28);
        }
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sig::{personal_hash, recover_key, sign};
    use k256::ecdsa::SigningKey;

    #[test]
    fn the_table_multiplies_like_the_group() {
        let table = FixedBaseTable::new(ProjectivePoint::GENERATOR);
        for seed in [1u64, 2, 255, 256, 65_537, u64::MAX] {
            let k = Scalar::from(seed) * Scalar::from(seed.wrapping_mul(0x9e37_79b9));
            assert_eq!(
                table.mul(&k).to_affine(),
                (ProjectivePoint::GENERATOR * k).to_affine()
            );
        }
        assert_eq!(
            table.mul(&-Scalar::ONE).to_affine(),
            (-ProjectivePoint::GENERATOR).to_affine()
        );
        assert_eq!(table.mul(&Scalar::ZERO), ProjectivePoint::IDENTITY);
    }

    #[test]
    fn signed_agrees_with_recovery() {
        let key = SigningKey::from_slice(&[7u8; 32]).expect("key");
        let other = SigningKey::from_slice(&[8u8; 32]).expect("key");
        let msg = [0x5a; 32];
        let sig = sign(&key, &msg);
        let (_, point) = recover_key(&msg, &sig).expect("recover");
        let sender = SenderKey::from_uncompressed(&point).expect("key");
        let digest = personal_hash(&msg);
        // Another message, another signer, the other recovery id, r or s out of range: not
        // shown; each verdict is its own, whatever the others in the batch are.
        let by_other = sign(&other, &msg);
        let mut flipped = sig;
        flipped[64] ^= 27 ^ 28;
        let mut zero_r = sig;
        zero_r[..32].fill(0);
        let mut big_s = sig;
        big_s[32..64].fill(0xff);
        let second = sign(&key, &[0x11; 32]);
        let items = [
            (digest, &sig),
            (personal_hash(&[0x5b; 32]), &sig),
            (digest, &by_other),
            (digest, &flipped),
            (digest, &zero_r),
            (digest, &big_s),
            (personal_hash(&[0x11; 32]), &second),
        ];
        assert_eq!(
            sender.signed(&items),
            [true, false, false, false, false, false, true]
        );
        assert_eq!(sender.signed(&items[..1]), [true]);
        assert_eq!(sender.signed(&items[4..6]), [false, false]);
        assert!(sender.signed(&[]).is_empty());
    }
}
