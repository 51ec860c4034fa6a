//! What a gateway sends a signer: an orchestrator's info and an unsigned segment, priced,
//! paid for and signed (`lpe_net::fuzzing::sign_segment`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lpe_net::fuzzing::sign_segment(data));
