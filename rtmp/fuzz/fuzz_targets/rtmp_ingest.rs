//! The whole RTMP ingest path as a stranger reaches it: handshake, chunk stream, AMF0 commands
//! and the publish conversation, fed in reads of the sizes a network would give
//! (`lpe_rtmp::fuzzing::connection`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lpe_rtmp::fuzzing::connection(data));
