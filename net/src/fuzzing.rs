//! The bodies of the fuzz targets, kept here so the tests replay the committed corpora through
//! exactly what the fuzzer runs: `segment_request` — a stranger's `Livepeer-Payment` and
//! `Livepeer-Segment` headers through every check before any state is touched;
//! `sign_segment` — a gateway's request to a signer; `live_payment` — a go-livepeer
//! gateway's `/generate-live-payment` request, with states the signer signed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::creds::TokenKey;
use crate::proto::Capabilities;
use crate::request;

/// Input layout: one mode byte. Even: the rest is a SegData protobuf (base64-encoded into the
/// header, so the fuzzer works on the message, not on base64). Odd: the next byte splits the
/// rest into the payment header's text and the segment header's text.
pub fn segment_request(data: &[u8]) {
    let [mode, rest @ ..] = data else {
        return;
    };
    let tokens = TokenKey::new([7; 32]);
    let offered = Capabilities::from_ids(crate::proto::capability::TRANSCODING);
    let (payment, segment) = if mode % 2 == 0 {
        (String::new(), STANDARD.encode(rest))
    } else {
        let [split, rest @ ..] = rest else {
            return;
        };
        let at = usize::from(*split).min(rest.len());
        (
            String::from_utf8_lossy(&rest[..at]).into_owned(),
            String::from_utf8_lossy(&rest[at..]).into_owned(),
        )
    };
    if let Ok(c) = request::check(&payment, &segment, &tokens, &offered, 1_767_225_600) {
        // Whatever passed is within the limits the service relies on.
        assert!(c.profiles.len() <= request::MAX_PROFILES);
        assert!(
            c.profiles
                .iter()
                .all(|p| p.width <= 7680 && p.height <= 7680)
        );
    }
}

/// The body of the `sign_segment` fuzz target: what a gateway may send a signer. Input
/// layout: two length bytes (big-endian) split the rest into an `OrchestratorInfo` and a
/// `SegData` protobuf, as the route decodes them from base64.
pub fn sign_segment(data: &[u8]) {
    use prost::Message;
    let [hi, lo, rest @ ..] = data else {
        return;
    };
    let at = (usize::from(*hi) << 8 | usize::from(*lo)).min(rest.len());
    let (Ok(info), Ok(seg)) = (
        crate::proto::OrchestratorInfo::decode(&rest[..at]),
        crate::proto::SegData::decode(&rest[at..]),
    ) else {
        return;
    };
    let key = lpe_pm::sig::SigningKey::from_slice(&[7; 32]).expect("a valid key");
    let signer = crate::signer::Signer::new(key, None, None);
    if let Ok(signed) = signer.sign_segment(&info, seg) {
        assert!(signed.tickets <= crate::refusal::MAX_TICKETS);
    }
}

/// The body of the `live_payment` fuzz target. Input layout: a mode byte and two length
/// bytes. Even mode: the rest is the route's JSON body. Odd mode: the rest is split into an
/// `OrchestratorInfo` protobuf and a state, which is signed by the signer's key so that the
/// fuzzer reaches past the signature into the state's JSON; the mode also picks the payment
/// type.
pub fn live_payment(data: &[u8]) {
    use crate::live_payment::{LivePaymentRequest, SignedState, decode_request, generate};
    let [mode, hi, lo, rest @ ..] = data else {
        return;
    };
    let key = lpe_pm::sig::SigningKey::from_slice(&[7; 32]).expect("a valid key");
    let req = if mode % 2 == 0 {
        let Ok(req) = decode_request(rest) else {
            return;
        };
        req
    } else {
        let at = (usize::from(*hi) << 8 | usize::from(*lo)).min(rest.len());
        let (info, state) = rest.split_at(at);
        LivePaymentRequest {
            state: SignedState {
                state: state.to_vec(),
                sig: if state.is_empty() {
                    Vec::new()
                } else {
                    lpe_pm::sig::sign(&key, state).to_vec()
                },
            },
            orchestrator: info.to_vec(),
            manifest_id: "m".into(),
            app: String::new(),
            in_pixels: i64::from(*hi),
            kind: ["lv2v", "live", "fixed", ""][usize::from(mode / 2 % 4)].into(),
            max_price: None,
            capabilities: Vec::new(),
        }
    };
    let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a valid time");
    let headers = axum::http::HeaderMap::new();
    if let Ok(r) = generate(
        &key,
        None,
        &headers,
        req,
        Some(lpe_pm::U256::from(10u8)),
        now,
    ) {
        let payment = lpe_pm::wire::decode_payment_header(&r.payment).expect("a payment");
        assert!(payment.ticket_sender_params.len() as u64 <= crate::refusal::MAX_TICKETS);
        assert!(
            lpe_pm::sig::verify(
                lpe_pm::sig::address_of(key.verifying_key()),
                &r.state.state,
                &r.state.sig
            )
            .is_ok()
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_corpus_runs_clean() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/segment_request");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("corpus") {
            let data = std::fs::read(entry.expect("entry").path()).expect("read");
            super::segment_request(&data);
            n += 1;
        }
        assert!(n >= 4, "the corpus holds the seeds");
    }

    #[test]
    fn the_signers_committed_corpus_runs_clean() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/sign_segment");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("corpus") {
            let data = std::fs::read(entry.expect("entry").path()).expect("read");
            super::sign_segment(&data);
            n += 1;
        }
        assert!(n >= 2, "the corpus holds the seeds");
    }

    #[test]
    fn the_live_payment_corpus_runs_clean() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/live_payment");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("corpus") {
            let data = std::fs::read(entry.expect("entry").path()).expect("read");
            super::live_payment(&data);
            n += 1;
        }
        assert!(n >= 2, "the corpus holds the seeds");
    }
}
