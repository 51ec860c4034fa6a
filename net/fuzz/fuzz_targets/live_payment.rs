//! What a go-livepeer gateway sends a signer's `/generate-live-payment`, with states signed by
//! the signer (`lpe_net::fuzzing::live_payment`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lpe_net::fuzzing::live_payment(data));
