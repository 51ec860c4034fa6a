//! The RTMP chunk stream: messages cut into chunks, interleaved over chunk stream ids.
//!
//! The decoder never trusts a length before the bytes arrive: a message's buffer grows with
//! its chunks, a message longer than the limit is refused at its header, and the bytes held in
//! partial messages of all chunk streams together are bounded. All timestamp arithmetic wraps,
//! as RTMP timestamps do.

use std::collections::HashMap;

use bytes::Bytes;

use crate::Error;

/// The chunk size every RTMP peer starts with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Message type ids the chunk layer handles itself.
const SET_CHUNK_SIZE: u8 = 1;
const ABORT: u8 = 2;

/// Bounds on what one peer may make the decoder hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest message accepted (RTMP allows 16 MiB - 1).
    pub max_message_len: u32,
    /// Bytes held in unfinished messages, all chunk streams together.
    pub max_buffered: usize,
    /// Distinct chunk stream ids in use at once.
    pub max_chunk_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_len: 8 << 20,
            max_buffered: 9 << 20,
            max_chunk_streams: 32,
        }
    }
}

/// One complete message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub type_id: u8,
    pub stream_id: u32,
    pub timestamp: u32,
    pub payload: Bytes,
}

#[derive(Default)]
struct ChunkStream {
    timestamp: u32,
    /// The last timestamp field (a delta, or for a type 0 header the absolute value, as
    /// FFmpeg and librtmp read it) that a type 3 header starting a message repeats.
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    partial: Option<Vec<u8>>,
}

/// Turns a chunk stream into messages.
pub struct Decoder {
    limits: Limits,
    chunk_size: u32,
    streams: HashMap<u32, ChunkStream>,
    /// An incomplete chunk header (at most 18 bytes).
    header: Vec<u8>,
    /// The chunk whose payload is being read: its stream id and the bytes still to come.
    in_chunk: Option<(u32, u32)>,
    buffered: usize,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
            header: Vec::with_capacity(18),
            in_chunk: None,
            buffered: 0,
        }
    }

    /// Bytes held in unfinished messages.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Reads `input`, appending each message it completes to `out`.
    pub fn decode(&mut self, mut input: &[u8], out: &mut Vec<Message>) -> Result<(), Error> {
        loop {
            if let Some((csid, left)) = self.in_chunk {
                if input.is_empty() {
                    return Ok(());
                }
                let n = (left as usize).min(input.len());
                let (payload, rest) = input.split_at(n);
                input = rest;
                self.payload(csid, payload, left - n as u32, out)?;
                continue;
            }
            let need = self.header_len();
            if self.header.len() < need {
                if input.is_empty() {
                    return Ok(());
                }
                let n = (need - self.header.len()).min(input.len());
                self.header.extend_from_slice(&input[..n]);
                input = &input[n..];
                continue;
            }
            let header = std::mem::take(&mut self.header);
            let started = self.start_chunk(&header);
            self.header = header;
            self.header.clear();
            if let Some(done) = started? {
                out.push(done);
            }
        }
    }

    /// How long the header being read is, as far as its bytes so far tell.
    fn header_len(&self) -> usize {
        let h = &self.header;
        let Some(&b0) = h.first() else { return 1 };
        let basic = match b0 & 0x3f {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        if h.len() < basic {
            return basic;
        }
        let fmt = b0 >> 6;
        let msg = [11, 7, 3, 0][fmt as usize];
        if h.len() < basic + msg {
            return basic + msg;
        }
        let extended = if fmt == 3 {
            let csid = chunk_stream_id(h);
            self.streams.get(&csid).is_some_and(|s| s.extended)
        } else {
            h[basic..basic + 3] == [0xff, 0xff, 0xff]
        };
        basic + msg + if extended { 4 } else { 0 }
    }

    /// Applies a complete chunk header; a zero-length message completes at once.
    fn start_chunk(&mut self, h: &[u8]) -> Result<Option<Message>, Error> {
        let fmt = h[0] >> 6;
        let csid = chunk_stream_id(h);
        let basic = match h[0] & 0x3f {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        let m = &h[basic..];
        if !self.streams.contains_key(&csid) {
            if fmt != 0 {
                return Err(Error::Protocol(
                    "chunk refers to a chunk stream with no header",
                ));
            }
            if self.streams.len() >= self.limits.max_chunk_streams {
                return Err(Error::Limit("too many chunk streams"));
            }
        }
        let max_len = self.limits.max_message_len;
        let s = self.streams.entry(csid).or_default();
        let continuing = s.partial.is_some();
        if continuing && fmt != 3 {
            return Err(Error::Protocol(
                "new message header before the last one ended",
            ));
        }
        let u24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let ext = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        match fmt {
            0..=2 => {
                let field = u24(&m[0..3]);
                s.extended = field == 0x00ff_ffff;
                let ts = if s.extended {
                    ext(basic + [11, 7, 3][fmt as usize])
                } else {
                    field
                };
                if fmt <= 1 {
                    s.length = u24(&m[3..6]);
                    s.type_id = m[6];
                }
                if fmt == 0 {
                    s.stream_id = u32::from_le_bytes([m[7], m[8], m[9], m[10]]);
                    s.timestamp = ts;
                } else {
                    s.timestamp = s.timestamp.wrapping_add(ts);
                }
                s.delta = ts;
            }
            _ if !continuing => s.timestamp = s.timestamp.wrapping_add(s.delta),
            _ => {}
        }
        if !continuing {
            if s.length > max_len {
                return Err(Error::Limit("message longer than the limit"));
            }
            if s.length == 0 {
                return Ok(Some(Message {
                    type_id: s.type_id,
                    stream_id: s.stream_id,
                    timestamp: s.timestamp,
                    payload: Bytes::new(),
                }));
            }
            s.partial = Some(Vec::with_capacity((s.length as usize).min(64 << 10)));
        }
        let have = s.partial.as_ref().map_or(0, Vec::len) as u32;
        let left = (s.length - have).min(self.chunk_size);
        self.in_chunk = Some((csid, left));
        Ok(None)
    }

    fn payload(
        &mut self,
        csid: u32,
        bytes: &[u8],
        left: u32,
        out: &mut Vec<Message>,
    ) -> Result<(), Error> {
        if self.buffered + bytes.len() > self.limits.max_buffered {
            return Err(Error::Limit("too many bytes held in unfinished messages"));
        }
        self.in_chunk = (left > 0).then_some((csid, left));
        let Some(s) = self.streams.get_mut(&csid) else {
            return Err(Error::Protocol("payload for an unknown chunk stream"));
        };
        let Some(partial) = s.partial.as_mut() else {
            return Err(Error::Protocol("payload outside a message"));
        };
        partial.extend_from_slice(bytes);
        self.buffered += bytes.len();
        if partial.len() < s.length as usize {
            return Ok(());
        }
        let payload = s.partial.take().unwrap_or_default();
        self.buffered -= payload.len();
        let msg = Message {
            type_id: s.type_id,
            stream_id: s.stream_id,
            timestamp: s.timestamp,
            payload: Bytes::from(payload),
        };
        match (msg.type_id, msg.stream_id) {
            (SET_CHUNK_SIZE, 0) => {
                let size = read_u32(&msg.payload)? & 0x7fff_ffff;
                if size == 0 {
                    return Err(Error::Protocol("chunk size 0"));
                }
                self.chunk_size = size;
            }
            (ABORT, 0) => {
                let target = read_u32(&msg.payload)?;
                if let Some(t) = self.streams.get_mut(&target) {
                    if let Some(p) = t.partial.take() {
                        self.buffered -= p.len();
                    }
                    if self.in_chunk.is_some_and(|(c, _)| c == target) {
                        self.in_chunk = None;
                    }
                }
            }
            _ => out.push(msg),
        }
        Ok(())
    }
}

fn chunk_stream_id(h: &[u8]) -> u32 {
    match h[0] & 0x3f {
        0 => 64 + u32::from(h[1]),
        1 => 64 + u32::from(h[1]) + 256 * u32::from(h[2]),
        id => u32::from(id),
    }
}

fn read_u32(b: &[u8]) -> Result<u32, Error> {
    b.get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(Error::Protocol("control message too short"))
}

/// Writes messages as chunks: a type 0 header, then type 3 headers for the rest.
pub struct Encoder {
    chunk_size: usize,
}

impl Default for Encoder {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE as usize,
        }
    }
}

impl Encoder {
    /// Takes effect for messages written after the Set Chunk Size that announced it.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.max(1) as usize;
    }

    pub fn write(&self, csid: u8, msg: &Message, out: &mut Vec<u8>) {
        debug_assert!((2..64).contains(&csid));
        let len = msg.payload.len().min(0x00ff_ffff);
        let ts = msg.timestamp.min(0x00ff_fffe);
        out.push(csid & 0x3f);
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        out.push(msg.type_id);
        out.extend_from_slice(&msg.stream_id.to_le_bytes());
        for (i, chunk) in msg.payload[..len].chunks(self.chunk_size).enumerate() {
            if i > 0 {
                out.push(0xc0 | (csid & 0x3f));
            }
            out.extend_from_slice(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header0(csid: u8, ts: u32, len: u32, type_id: u8, stream_id: u32) -> Vec<u8> {
        let mut h = vec![csid];
        h.extend_from_slice(&ts.to_be_bytes()[1..]);
        h.extend_from_slice(&len.to_be_bytes()[1..]);
        h.push(type_id);
        h.extend_from_slice(&stream_id.to_le_bytes());
        h
    }

    fn decode_bytewise(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<Message>, Error> {
        let mut out = Vec::new();
        for b in bytes {
            d.decode(std::slice::from_ref(b), &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn round_trip_through_encoder_in_any_split() {
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let msg = Message {
            type_id: 9,
            stream_id: 1,
            timestamp: 40,
            payload: Bytes::from(payload),
        };
        let mut bytes = Vec::new();
        Encoder::default().write(6, &msg, &mut bytes);
        let mut out = Vec::new();
        Decoder::new(Limits::default())
            .decode(&bytes, &mut out)
            .expect("decodes");
        assert_eq!(out, vec![msg.clone()]);
        let out = decode_bytewise(&mut Decoder::new(Limits::default()), &bytes).expect("decodes");
        assert_eq!(out, vec![msg]);
    }

    #[test]
    fn interleaved_chunk_streams_and_deltas() {
        // Two messages of 200 bytes interleaved on csid 4 and 5, then a type 2 and a type 3
        // header starting new messages with a delta.
        let mut b = header0(4, 1000, 200, 9, 1);
        b.extend_from_slice(&[1u8; 128]);
        b.extend(header0(5, 1010, 200, 8, 1));
        b.extend_from_slice(&[2u8; 128]);
        b.push(0xc4);
        b.extend_from_slice(&[1u8; 72]);
        b.push(0xc5);
        b.extend_from_slice(&[2u8; 72]);
        b.extend_from_slice(&[0x84, 0, 0, 33]);
        b.extend_from_slice(&[3u8; 128]);
        b.push(0xc4);
        b.extend_from_slice(&[3u8; 72]);
        b.push(0xc4);
        b.extend_from_slice(&[4u8; 128]);
        b.push(0xc4);
        b.extend_from_slice(&[4u8; 72]);
        let out = decode_bytewise(&mut Decoder::new(Limits::default()), &b).expect("decodes");
        let got: Vec<(u8, u32, usize)> = out
            .iter()
            .map(|m| (m.type_id, m.timestamp, m.payload.len()))
            .collect();
        assert_eq!(
            got,
            vec![
                (9, 1000, 200),
                (8, 1010, 200),
                (9, 1033, 200),
                (9, 1066, 200)
            ]
        );
    }

    #[test]
    fn extended_timestamps() {
        let mut b = header0(4, 0xff_ffff, 130, 9, 1);
        b.extend_from_slice(&0x0100_0000u32.to_be_bytes());
        b.extend_from_slice(&[0u8; 128]);
        b.push(0xc4);
        b.extend_from_slice(&0x0100_0000u32.to_be_bytes());
        b.extend_from_slice(&[0u8; 2]);
        let out = decode_bytewise(&mut Decoder::new(Limits::default()), &b).expect("decodes");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].timestamp, 0x0100_0000);
    }

    #[test]
    fn set_chunk_size_and_abort() {
        let mut b = header0(2, 0, 4, 1, 0);
        b.extend_from_slice(&4096u32.to_be_bytes());
        b.extend(header0(4, 0, 3000, 9, 1));
        b.extend_from_slice(&[0u8; 3000]);
        // The first chunk of a 5000-byte message on csid 6, then an abort of it.
        b.extend(header0(6, 0, 5000, 9, 1));
        b.extend_from_slice(&[0u8; 4096]);
        let mut d = Decoder::new(Limits::default());
        let mut out = Vec::new();
        d.decode(&b, &mut out).expect("decodes");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload.len(), 3000);
        assert_eq!(d.buffered(), 4096);
        let mut abort = header0(2, 0, 4, 2, 0);
        abort.extend_from_slice(&6u32.to_be_bytes());
        // csid 6 takes a new message after the abort.
        abort.extend(header0(6, 7, 2, 9, 1));
        abort.extend_from_slice(&[5, 5]);
        let mut out = Vec::new();
        d.decode(&abort, &mut out).expect("decodes");
        assert_eq!(d.buffered(), 0);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].timestamp, out[0].payload.len()), (7, 2));
    }

    #[test]
    fn the_four_reported_triggers_of_the_old_parser_are_handled() {
        // Interleaved: the first 65 536-byte chunk of a 70 000-byte message on csid 4, then a
        // 5 000-byte message on csid 5.
        let mut b = header0(2, 0, 4, 1, 0);
        b.extend_from_slice(&65_536u32.to_be_bytes());
        b.extend(header0(4, 0, 70_000, 9, 1));
        b.extend(vec![0u8; 65_536]);
        b.extend(header0(5, 0, 5_000, 9, 1));
        b.extend(vec![0u8; 5_000]);
        let mut out = Vec::new();
        let mut d = Decoder::new(Limits::default());
        d.decode(&b, &mut out).expect("decodes");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload.len(), 5_000);
        assert_eq!(d.buffered(), 65_536);
    }

    #[test]
    fn limits_are_errors() {
        let b = header0(4, 0, 9 << 20, 9, 1);
        let mut out = Vec::new();
        assert!(matches!(
            Decoder::new(Limits::default()).decode(&b, &mut out),
            Err(Error::Limit(_))
        ));
        let limits = Limits {
            max_message_len: 1000,
            max_buffered: 1500,
            max_chunk_streams: 2,
        };
        let mut b = Vec::new();
        for csid in 3..5u8 {
            b.extend(header0(csid, 0, 1000, 9, 1));
            b.extend_from_slice(&[0u8; 128]);
        }
        let mut d = Decoder::new(limits);
        d.decode(&b, &mut out).expect("two streams");
        assert!(matches!(
            d.decode(&header0(5, 0, 10, 9, 1), &mut out),
            Err(Error::Limit(_))
        ));
        let mut d = Decoder::new(limits);
        let mut b = header0(2, 0, 4, 1, 0);
        b.extend_from_slice(&1000u32.to_be_bytes());
        b.extend(header0(3, 0, 1000, 9, 1));
        b.extend_from_slice(&[0u8; 999]);
        b.extend(header0(4, 0, 1000, 9, 1));
        b.extend_from_slice(&[0u8; 999]);
        assert!(matches!(d.decode(&b, &mut out), Err(Error::Limit(_))));
        // A continuation for a chunk stream never opened.
        assert!(Decoder::new(limits).decode(&[0xc7, 0], &mut out).is_err());
    }
}
