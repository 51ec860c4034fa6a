//! The server side of the plain RTMP handshake: C0 C1 in, S0 S1 S2 out, C2 in.

use crate::Error;

const VERSION: u8 = 3;
pub const PACKET: usize = 1536;

pub enum Progress {
    /// More bytes are needed.
    Pending,
    /// The handshake is over; the bytes after C2 belong to the chunk stream.
    Done(usize),
}

#[derive(Default)]
pub struct Handshake {
    got: Vec<u8>,
    answered: bool,
}

impl Handshake {
    /// Reads `input`; writes S0 S1 S2 to `out` once C1 is complete.
    pub fn read(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Progress, Error> {
        let total = 1 + 2 * PACKET;
        let n = (total - self.got.len()).min(input.len());
        self.got.extend_from_slice(&input[..n]);
        if self.got.first().is_some_and(|&v| v != VERSION) {
            return Err(Error::Handshake("not RTMP version 3"));
        }
        if !self.answered && self.got.len() > PACKET {
            out.push(VERSION);
            // S1: time, zero (a plain handshake: no digest, which FFmpeg and librtmp accept
            // from a server), random bytes.
            out.extend_from_slice(&[0u8; 8]);
            let mut random = [0u8; PACKET - 8];
            rand::fill(&mut random[..]);
            out.extend_from_slice(&random);
            // S2 echoes C1.
            out.extend_from_slice(&self.got[1..=PACKET]);
            self.answered = true;
        }
        if self.got.len() == total {
            return Ok(Progress::Done(n));
        }
        Ok(Progress::Pending)
    }
}
