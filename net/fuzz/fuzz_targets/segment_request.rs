//! A gateway's `/segment` and `/payment` headers as a stranger sends them: payment decoding,
//! segment credentials, profiles, signature, capabilities and auth token
//! (`lpe_net::fuzzing::segment_request`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lpe_net::fuzzing::segment_request(data));
