//! What is signed and keyed on the wire, byte for byte as go-livepeer does it: the
//! orchestrator request signature, segment credentials, auth tokens, the transcoded-data
//! signature and the Ping reply.

use hmac::{Hmac, Mac};
use lpe_pm::sig::{self, SigError};
use lpe_pm::{Address, B256};
use sha2::Sha256;

use crate::proto::{AuthToken, SegData};

fn keccak(bytes: &[u8]) -> B256 {
    lpe_pm::keccak256(bytes)
}

/// The message a gateway signs to ask for an orchestrator's info: keccak256 of its EIP-55
/// address string.
pub fn request_message(address: Address) -> B256 {
    keccak(address.to_checksum(None).as_bytes())
}

/// `OrchestratorRequest.address` as go-livepeer reads it: the last 20 bytes, left-padded.
pub fn request_address(bytes: &[u8]) -> Address {
    let mut a = [0u8; 20];
    let take = bytes.len().min(20);
    a[20 - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    Address::from(a)
}

/// go-livepeer's `BytesToHash`: short input left-padded, long input keeps its last 32 bytes.
pub fn bytes_to_hash(bytes: &[u8]) -> [u8; 32] {
    let mut h = [0u8; 32];
    let take = bytes.len().min(32);
    h[32 - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    h
}

/// `SegTranscodingMetadata.Flatten`: manifest id ‖ u256(|seq|) ‖ hash ‖ hex of the first four
/// bytes of keccak256 of each profile name.
pub fn segment_flatten(manifest_id: &[u8], seq: i64, hash: &[u8], names: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(manifest_id.len() + 64 + 8 * names.len());
    out.extend_from_slice(manifest_id);
    let mut s = [0u8; 32];
    s[24..].copy_from_slice(&seq.unsigned_abs().to_be_bytes());
    out.extend_from_slice(&s);
    out.extend_from_slice(&bytes_to_hash(hash));
    let mut prefix = Vec::with_capacity(4 * names.len());
    for n in names {
        prefix.extend_from_slice(&keccak(n.as_bytes())[..4]);
    }
    out.extend_from_slice(hex::encode(prefix).as_bytes());
    out
}

/// The digest a segment's signature is made over.
pub fn segment_digest(seg: &SegData, names: &[&str]) -> B256 {
    keccak(&segment_flatten(
        &seg.manifest_id,
        seg.seq,
        &seg.hash,
        names,
    ))
}

/// Checks a segment's signature against the payment's sender.
pub fn verify_segment(seg: &SegData, names: &[&str], sender: Address) -> Result<(), SigError> {
    sig::verify(sender, segment_digest(seg, names).as_slice(), &seg.sig)
}

/// The transcoded-data signature's message: keccak256 of the renditions' keccak256s in order.
pub fn transcoded_digest<'a>(renditions: impl IntoIterator<Item = &'a [u8]>) -> B256 {
    let mut all = Vec::new();
    for r in renditions {
        all.extend_from_slice(keccak(r).as_slice());
    }
    keccak(&all)
}

/// Auth tokens: HMAC-SHA256 under a secret drawn once per process from the OS.
pub struct TokenKey([u8; 32]);

/// Why an auth token was refused (go-livepeer's texts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing auth token")]
    Missing,
    #[error("invalid auth token")]
    Invalid,
    #[error("expired auth token")]
    Expired,
}

impl TokenKey {
    pub fn new(secret: [u8; 32]) -> Self {
        Self(secret)
    }

    /// HMAC(secret, session id ‖ minbytes(expiration)).
    pub fn mac(&self, session_id: &str, expiration: i64) -> [u8; 32] {
        mac_with(&self.0, session_id, expiration)
    }

    pub fn issue(&self, session_id: String, expiration: i64) -> AuthToken {
        AuthToken {
            token: self.mac(&session_id, expiration).to_vec(),
            session_id,
            expiration,
        }
    }

    /// Presence, HMAC, then expiry at `now` (unix seconds), in go-livepeer's order.
    pub fn check<'a>(
        &self,
        token: Option<&'a AuthToken>,
        now: i64,
    ) -> Result<&'a AuthToken, TokenError> {
        let t = self.authentic(token)?;
        if now > t.expiration {
            return Err(TokenError::Expired);
        }
        Ok(t)
    }

    /// Presence and HMAC only (`EndTranscodingSession` ignores expiry).
    pub fn authentic<'a>(&self, token: Option<&'a AuthToken>) -> Result<&'a AuthToken, TokenError> {
        let t = token.ok_or(TokenError::Missing)?;
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).map_err(|_| TokenError::Invalid)?;
        m.update(t.session_id.as_bytes());
        m.update(&minbytes_i64(t.expiration));
        m.verify_slice(&t.token).map_err(|_| TokenError::Invalid)?;
        Ok(t)
    }
}

fn mac_with(secret: &[u8], session_id: &str, expiration: i64) -> [u8; 32] {
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes a key of any length.
        Err(_) => return [0; 32],
    };
    m.update(session_id.as_bytes());
    m.update(&minbytes_i64(expiration));
    m.finalize().into_bytes().into()
}

/// `big.NewInt(v).Bytes()`: the absolute value, minimal big-endian.
fn minbytes_i64(v: i64) -> Vec<u8> {
    let b = v.unsigned_abs().to_be_bytes();
    let skip = b.iter().take_while(|&&x| x == 0).count();
    b[skip..].to_vec()
}

#[cfg(test)]
mod tests {
    //! Known answers of `livepeer-wire.md` §2.8.
    use super::*;
    use crate::proto::{Capabilities, OrchestratorRequest, VideoProfile};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use k256::ecdsa::SigningKey;
    use prost::Message;

    const B_KEY: &str = "fad9c8855b740a0b7ed4c221dbad0f33a83a49cad6b3fe8d5817ac83d38b6a19";
    const O_KEY: &str = "17b8db9dfbb0a408a0e0c4d4f24e825dd9416cc9d54dd7687c9ef2899ed1acab";

    fn key(h: &str) -> SigningKey {
        SigningKey::from_slice(&hex::decode(h).expect("hex")).expect("key")
    }

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    #[test]
    fn flatten_matches_go_livepeer() {
        let mut hash = b"browns".to_vec();
        hash.resize(32, 0);
        let f = segment_flatten(
            b"abcdef",
            1234,
            &hash,
            &["P144p30fps16x9", "P240p30fps16x9"],
        );
        assert_eq!(f.len(), 86);
        assert!(f.ends_with(b"fca40bf9c0a6517a"));
        assert_eq!(
            hex::encode(keccak(&f)),
            "08a398e7e7a5a545b0b07d9e7e1eab52b4131e0df1621bd53ee6e7550a15465b"
        );
    }

    #[test]
    fn f1_orchestrator_request() {
        let b = key(B_KEY);
        let addr = sig::address_of(b.verifying_key());
        assert_eq!(
            addr.to_checksum(None),
            "0x96216849c49358B10257cb55b28eA603c874b05E"
        );
        let msg = request_message(addr);
        assert_eq!(
            hex::encode(msg),
            "ee96633aed042ac52aa7069ecf77197b72b4eaf865c41905e4e184b7b2a54799"
        );
        let s = sig::sign(&b, msg.as_slice());
        assert_eq!(
            hex::encode(s),
            "a224e17c21555def269cf7f7c379a974b62870990c56c1ea81e6aeac3c5758be2a3e1bf6419b39e2d245d7e309d02a492f5b9a5e7b9f8479c71dfbc24af8398d1b"
        );
        let req = OrchestratorRequest {
            address: addr.to_vec(),
            sig: s.to_vec(),
            capabilities: None,
            ignore_capacity_check: false,
        };
        let mut want = h("0a1496216849c49358b10257cb55b28ea603c874b05e1241");
        want.extend_from_slice(&s);
        assert_eq!(req.encode_to_vec(), want);
        let with_caps = OrchestratorRequest {
            capabilities: Some(Capabilities {
                constraints: Some(Default::default()),
                ..Capabilities::from_ids(&[0, 1, 12])
            }),
            ..req
        };
        want.extend_from_slice(&h("1a060a0283202a00"));
        assert_eq!(with_caps.encode_to_vec(), want);
        assert_eq!(request_address(&with_caps.address), addr);
    }

    #[test]
    fn f2_auth_tokens() {
        assert_eq!(
            hex::encode(mac_with(b"foo", "bar", 100)),
            "e896e58f32128ad59566fbef0ae8d4b702f6f08cdfe3f17b544696016f5e5423"
        );
        let secret: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
        let k = TokenKey::new(secret);
        assert_eq!(
            hex::encode(k.mac("f1405ced", 1767225600)),
            "e0b2c5d81cd8163e81f2812d47db554134e4b62ce1c4f8cd79faf394a74da0c0"
        );
        assert_eq!(
            hex::encode(k.mac("f1405ced", 0)),
            "7572d5770ca10194221ec40663e909308f3819cb2f19e3639496e639253fdcd6"
        );
        let t = k.issue("f1405ced".into(), 1767225600);
        assert!(k.check(Some(&t), 1767225600).is_ok());
        assert_eq!(k.check(Some(&t), 1767225601), Err(TokenError::Expired));
        assert_eq!(k.check(None, 0), Err(TokenError::Missing));
        let mut moved = t.clone();
        moved.expiration += 1;
        assert_eq!(k.check(Some(&moved), 0), Err(TokenError::Invalid));
        let mut flipped = t;
        flipped.token[3] ^= 1;
        assert_eq!(k.authentic(Some(&flipped)), Err(TokenError::Invalid));
    }

    fn f3_segment() -> SegData {
        let body = b"livepeer-edge test segment";
        SegData {
            manifest_id: b"f1405ced".to_vec(),
            seq: 7,
            hash: keccak(body).to_vec(),
            profiles: b"invalid".to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn f3_segment_credentials() {
        let b = key(B_KEY);
        let mut seg = f3_segment();
        assert_eq!(
            hex::encode(&seg.hash),
            "0c6a8dd5fd94bb410903b46b7ebe6d0e59f29b59b570971b8e5298e24ec7ad51"
        );
        let names = ["P240p30fps16x9", "P360p30fps16x9"];
        let d = segment_digest(&seg, &names);
        assert_eq!(
            hex::encode(d),
            "06a96b99f6ede2ea840af128abc345950bb8ccc70864a648f6cf2ecf126bf12c"
        );
        seg.sig = sig::sign(&b, d.as_slice()).to_vec();
        assert_eq!(
            hex::encode(&seg.sig),
            "1a613adb9f6ab585966d30e9357d444b86d7439059afa424096ba62bd68147ed2584fc3b8fccdcf0513266d9560f0d6a4f788578fd6068f49d90715d90bcf2f71c"
        );
        let sender = sig::address_of(b.verifying_key());
        assert!(verify_segment(&seg, &names, sender).is_ok());
        assert!(verify_segment(&seg, &names[..1], sender).is_err());

        // The full header decodes to the same message, profiles in field 33.
        let header = "CghmMTQwNWNlZBAHGiAMao3V/ZS7QQkDtGt+vm0OWfKbWbVwlxuOUpjiTsetUSIHaW52YWxpZCpBGmE6259qtYWWbTDpNX1ES4bXQ5BZr6QkCWumK9aBR+0lhPw7j8zc8FEyZtlWDw1qT3iFeP1gaPSdkHFdkLzy9xww0A86BgoCgyAqAEIyCiDgssXYHNgWPoHygS1H21VBNOS2LOHE+M15+vOUp02gwBIIZjE0MDVjZWQYgPLWygaKAiGCAQ5QMjQwcDMwZnBzMTZ4OYgBqgOQAfABmAHAzySgAR6KAiGCAQ5QMzYwcDMwZnBzMTZ4OYgBgAWQAegCmAGAn0mgAR4=";
        let bytes = STANDARD.decode(header).expect("base64");
        assert_eq!(bytes.len(), 257);
        let full = SegData::decode(bytes.as_slice()).expect("SegData");
        assert_eq!(full.sig, seg.sig);
        assert_eq!(full.duration, 2000);
        let secret: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
        assert!(
            TokenKey::new(secret)
                .check(full.auth_token.as_ref(), 1767225600)
                .is_ok()
        );
        let p: Vec<&VideoProfile> = full.full_profiles.iter().collect();
        assert_eq!(
            p.iter()
                .map(|p| (p.name.as_str(), p.width, p.height, p.bitrate, p.fps))
                .collect::<Vec<_>>(),
            vec![
                ("P240p30fps16x9", 426, 240, 600_000, 30),
                ("P360p30fps16x9", 640, 360, 1_200_000, 30)
            ]
        );
        // Re-encoded, it is byte for byte what go-livepeer sent.
        assert_eq!(full.encode_to_vec(), bytes);
    }

    #[test]
    fn f3b_empty_segment_and_f3p_ticketless_payment() {
        let b = key(B_KEY);
        let seg = SegData {
            manifest_id: b"f1405ced".to_vec(),
            seq: 0,
            hash: keccak(b"").to_vec(),
            ..Default::default()
        };
        let d = segment_digest(&seg, &[]);
        assert_eq!(
            hex::encode(d),
            "cd0a2cc58145c4670c2a062a9def5cc856f9f2557098a40f797513f00659c43e"
        );
        assert_eq!(
            hex::encode(sig::sign(&b, d.as_slice())),
            "bb4d74daaadcc8ae67ff95a9939855545b4081c3469e76b5b93e128f5b41fbcb607b40a9ddfb371f9a1d85edc42fe345fd68f4909bacd3c85338a3c610b8fe7b1c"
        );
        let p = lpe_pm::wire::decode_payment_header("EhSWIWhJxJNYsQJXy1WyjqYDyHSwXioFCLAJEAE=")
            .expect("payment");
        assert_eq!(p.sender, sig::address_of(b.verifying_key()).to_vec());
        let price = p.expected_price.expect("price");
        assert_eq!((price.price_per_unit, price.pixels_per_unit), (1200, 1));
        assert!(p.ticket_params.is_none());
    }

    #[test]
    fn f4_transcoded_data_and_f5_ping() {
        let o = key(O_KEY);
        assert_eq!(
            sig::address_of(o.verifying_key()).to_checksum(None),
            "0xB1e4D31CfFF9a6cD17B34C9b1A70fAA235EC09CF"
        );
        let d = transcoded_digest([&b"rendition-1"[..], &b"rendition-2"[..]]);
        assert_eq!(
            hex::encode(d),
            "c8360cb33f341105d820fe68bd814baf8e01949ba0ddd4412e4f72d4e36ed406"
        );
        assert_eq!(
            hex::encode(sig::sign(&o, d.as_slice())),
            "a0fcbd83ef07332a16c216bb5c77bd785640b186252bcb1b2dab0550c09232087201362c352d137f621e08f4346bccb3280dd10f33f58987dcf1340af03768de1b"
        );
        let ping = keccak(&[0u8; 32]);
        assert_eq!(
            hex::encode(sig::sign(&o, ping.as_slice())),
            "21c482688edf439fb9e40a15e9920b8ef97314a12e57383ba9dae67de0c8e04b0a7a5f0fb64fdb6452fe2ffbada2796316a79259bb5d1393d355af8a9a2bd7381b"
        );
    }

    #[test]
    fn request_address_takes_the_last_20_bytes() {
        let a = request_address(&[1u8; 25]);
        assert_eq!(a, Address::from([1u8; 20]));
        let short = request_address(&[7u8; 3]);
        assert_eq!(&short.as_slice()[17..], &[7, 7, 7]);
        assert_eq!(bytes_to_hash(&[9u8; 40]), [9u8; 32]);
    }
}
