//! The body of the `segment_request` fuzz target, kept here so the tests replay the committed
//! corpus through exactly what the fuzzer runs: a stranger's `Livepeer-Payment` and
//! `Livepeer-Segment` headers through every check before any state is touched.

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
}
