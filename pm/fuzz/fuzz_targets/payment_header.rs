//! The `Livepeer-Payment` header decoder and the inspect report: any input, no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpe_pm::U256;

fuzz_target!(|data: &[u8]| {
    // As a header string (base64 path) …
    let text = String::from_utf8_lossy(data);
    let _ = lpe_pm::inspect::inspect(&text, Some(U256::from(7u8)));
    // … and as raw protobuf (the bytes after base64).
    use prost_free::decode;
    decode(data);
});

mod prost_free {
    use lpe_pm::wire::{Payment, decode_payment, encode_payment_header};

    pub fn decode(data: &[u8]) {
        let header = base64_std(data);
        if let Ok(p) = lpe_pm::wire::decode_payment_header(&header) {
            let _ = decode_payment(&p);
            // Round trip: what decodes must re-encode to something that decodes the same.
            let again = lpe_pm::wire::decode_payment_header(&encode_payment_header(&p))
                .expect("re-encoded payment decodes");
            assert_eq!(again, p);
            let _: &Payment = &again;
        }
    }

    fn base64_std(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
        for chunk in data.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            out.push(A[(n >> 18) as usize & 63] as char);
            out.push(A[(n >> 12) as usize & 63] as char);
            out.push(if chunk.len() > 1 { A[(n >> 6) as usize & 63] as char } else { '=' });
            out.push(if chunk.len() > 2 { A[n as usize & 63] as char } else { '=' });
        }
        out
    }
}
