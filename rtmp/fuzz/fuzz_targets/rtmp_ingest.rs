//! The whole RTMP ingest path as a stranger reaches it: handshake, chunk stream, AMF0 commands
//! and the publish conversation, fed in reads of the sizes a network would give.
//!
//! Input layout: one byte choosing the read size, one byte choosing how publishes are
//! answered, then the bytes of the connection. Small limits make the limit paths reachable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpe_rtmp::{Event, Limits, Session};

fuzz_target!(|data: &[u8]| {
    let [split, answers, bytes @ ..] = data else {
        return;
    };
    let read_size = usize::from(*split).max(1) * 7;
    let mut session = Session::new(Limits {
        max_message_len: 1 << 20,
        max_buffered: 1 << 20,
        max_chunk_streams: 8,
    });
    let mut events = Vec::new();
    let mut publishes = 0u32;
    for read in bytes.chunks(read_size) {
        let result = session.read(read, &mut events);
        assert!(session.buffered() <= 1 << 20);
        for ev in events.drain(..) {
            if let Event::PublishRequested { key, .. } = ev {
                if (answers >> (publishes % 8)) & 1 == 1 {
                    session.accept_publish(&key);
                } else {
                    session.reject_publish("refused");
                }
                publishes += 1;
            }
        }
        let _ = session.take_output();
        if result.is_err() {
            return;
        }
    }
});
