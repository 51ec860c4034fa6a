//! The body of the `rtmp_ingest` fuzz target, kept here so the tests replay the committed
//! corpus through exactly what the fuzzer runs.

use crate::{Event, Limits, Session};

/// Limits small enough that the fuzzer reaches every limit path.
pub const LIMITS: Limits = Limits {
    max_message_len: 1 << 20,
    max_buffered: 1 << 20,
    max_chunk_streams: 8,
};

/// Drives one connection. Input layout: one byte choosing the read size, one byte choosing
/// how publishes are answered, then the bytes of the connection. Panics only if an
/// invariant of the session breaks.
pub fn connection(data: &[u8]) {
    let [split, answers, bytes @ ..] = data else {
        return;
    };
    let read_size = usize::from(*split).max(1) * 7;
    let mut session = Session::new(LIMITS);
    let mut events = Vec::new();
    let mut publishes = 0u32;
    for read in bytes.chunks(read_size) {
        let result = session.read(read, &mut events);
        assert!(session.buffered() <= LIMITS.max_buffered);
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
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_corpus_runs_clean() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/rtmp_ingest");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("corpus") {
            let data = std::fs::read(entry.expect("entry").path()).expect("read");
            super::connection(&data);
            n += 1;
        }
        assert!(n >= 5, "the corpus holds the seeds");
    }
}
