//! Identifiers people read out and secrets people paste.

use rand::Rng;

/// Lower-case letters and digits without look-alikes (no l, o, 0, 1): ids people read out.
pub const ID_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// `len` characters drawn uniformly from `alphabet`.
pub fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}
