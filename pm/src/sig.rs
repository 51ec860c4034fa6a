//! EIP-191 `personal_sign` signatures: 65 bytes `r ‖ s ‖ v`, v ∈ {27, 28}, low s — signed and
//! checked as go-livepeer does, with its rejection reasons.

use alloy_primitives::{Address, B256, U256, keccak256};
pub use k256::ecdsa::SigningKey;
use k256::ecdsa::{RecoveryId, VerifyingKey};

/// secp256k1 n / 2: an `s` above it is malleable and refused.
const HALF_N: U256 = U256::from_be_bytes([
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("invalid signature length")]
    Length,
    #[error("signature s value too high")]
    HighS,
    #[error("v must be 27 or 28")]
    V,
    #[error("invalid signature")]
    Unrecoverable,
    #[error("signature does not match the sender")]
    WrongSigner,
}

/// `keccak256("\x19Ethereum Signed Message:\n" ‖ decimal(len(msg)) ‖ msg)`.
pub fn personal_hash(msg: &[u8]) -> B256 {
    let mut b = format!("\x19Ethereum Signed Message:\n{}", msg.len()).into_bytes();
    b.extend_from_slice(msg);
    keccak256(b)
}

pub fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    Address::from_slice(&keccak256(&point.as_bytes()[1..])[12..])
}

/// Signs `msg` as `personal_sign`: deterministic (RFC 6979), low s, v 27/28.
pub fn sign(key: &SigningKey, msg: &[u8]) -> [u8; 65] {
    let digest = personal_hash(msg);
    let mut out = [0u8; 65];
    // Signing a 32-byte prehash with a valid key does not fail; the fallback is unreachable
    // but keeps this function total.
    if let Ok((sig, recid)) = key.sign_prehash_recoverable(digest.as_slice()) {
        let (sig, recid) = match sig.normalize_s() {
            Some(low) => (
                low,
                RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced()),
            ),
            None => (sig, recid),
        };
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = 27 + recid.to_byte();
    }
    out
}

/// go-livepeer's checks before any curve arithmetic: 65 bytes, low s, v 27 or 28.
pub fn precheck(sig: &[u8]) -> Result<&[u8; 65], SigError> {
    let sig: &[u8; 65] = sig.try_into().map_err(|_| SigError::Length)?;
    if U256::from_be_slice(&sig[32..64]) > HALF_N {
        return Err(SigError::HighS);
    }
    if sig[64] != 27 && sig[64] != 28 {
        return Err(SigError::V);
    }
    Ok(sig)
}

/// Recovers the signer of a `personal_sign` signature, with go-livepeer's checks first.
pub fn recover(msg: &[u8], sig: &[u8]) -> Result<Address, SigError> {
    recover_key(msg, sig).map(|(address, _)| address)
}

/// As [`recover`], also returning the signer's public key (65 bytes, uncompressed SEC1).
pub fn recover_key(msg: &[u8], sig: &[u8]) -> Result<(Address, [u8; 65]), SigError> {
    let sig = precheck(sig)?;
    let recid =
        secp256k1::ecdsa::RecoveryId::try_from(i32::from(sig[64] - 27)).map_err(|_| SigError::V)?;
    let signature = secp256k1::ecdsa::RecoverableSignature::from_compact(&sig[..64], recid)
        .map_err(|_| SigError::Unrecoverable)?;
    let digest = personal_hash(msg);
    let key = secp256k1::SECP256K1
        .recover_ecdsa(secp256k1::Message::from_digest(digest.0), &signature)
        .map_err(|_| SigError::Unrecoverable)?;
    let point = key.serialize_uncompressed();
    Ok((Address::from_slice(&keccak256(&point[1..])[12..]), point))
}

/// Checks that `sig` over `msg` was made by `addr`.
pub fn verify(addr: Address, msg: &[u8], sig: &[u8]) -> Result<(), SigError> {
    if recover(msg, sig)? == addr {
        Ok(())
    } else {
        Err(SigError::WrongSigner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// go-livepeer crypto/verify_test.go.
    #[test]
    fn upstream_verify_vectors() {
        let addr: Address = "0x3BadDb1eeE2105893136A3F96c8a963E9C6309d6"
            .parse()
            .expect("addr");
        let msg = hex::decode("b7da355477356fc4c47fcabcf232dc77a6db9b07b7e48b76261cc55cc8fbabb3")
            .expect("hex");
        let sig = hex::decode("206443228e8f784bc3a122de0d85eb3ebff82d6a79cca26c7eeb907099a6404f6dff57bc6828f28bd6cd073c89d94cf3364204679ed8365fa45b5ee6af19a9841c").expect("hex");
        assert_eq!(verify(addr, &msg, &sig), Ok(()));
        let high = hex::decode("e742ff452d41413616a5bf43fe15dd88294e983d3d36206c2712f39083d638bde0a0fc89be718fbc1033e1d30d78be1c68081562ed2e97af876f286f3453231d1b").expect("hex");
        assert_eq!(verify(addr, &msg, &high), Err(SigError::HighS));
        assert_eq!(verify(addr, &msg, &sig[..64]), Err(SigError::Length));
        let mut v0 = sig.clone();
        v0[64] = 0;
        assert_eq!(verify(addr, &msg, &v0), Err(SigError::V));
        assert_eq!(
            verify(Address::ZERO, &msg, &sig),
            Err(SigError::WrongSigner)
        );
    }

    #[test]
    fn sign_then_recover_round_trips_with_low_s() {
        for i in 1u8..=20 {
            let key = SigningKey::from_slice(&[i; 32]).expect("key");
            let addr = address_of(key.verifying_key());
            let msg = [i.wrapping_mul(7); 32];
            let sig = sign(&key, &msg);
            assert!(sig[64] == 27 || sig[64] == 28);
            assert!(U256::from_be_slice(&sig[32..64]) <= HALF_N);
            assert_eq!(recover(&msg, &sig), Ok(addr));
            assert_eq!(sign(&key, &msg), sig, "deterministic");
        }
    }
}
