//! The publish conversation of one connection, as a state machine over bytes.

use bytes::Bytes;

use crate::Error;
use crate::amf0::{self, Amf0, object};
use crate::chunk::{Decoder, Encoder, Limits, Message};
use crate::handshake::{Handshake, Progress};

/// The chunk size the server announces for what it sends.
const OUT_CHUNK_SIZE: u32 = 4096;
/// The acknowledgement window and peer bandwidth the server announces.
const WINDOW: u32 = 2_500_000;

const CSID_CONTROL: u8 = 2;
const CSID_COMMAND: u8 = 3;

mod kind {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ACK: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const COMMAND_AMF3: u8 = 17;
    pub const COMMAND_AMF0: u8 = 20;
}

/// One audio or video message of a publish, as RTMP carries it (FLV tag bodies).
#[derive(Debug, Clone, PartialEq)]
pub enum Media {
    Video { ts: u32, data: Bytes },
    Audio { ts: u32, data: Bytes },
}

/// What the peer did that the server must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Answer with [`Session::accept_publish`] or [`Session::reject_publish`]; media sent
    /// before the answer is dropped.
    PublishRequested {
        app: String,
        key: String,
    },
    Media(Media),
    /// The publisher ended its publish (the connection may stay open).
    Unpublished,
    /// The peer asked to play, which the server refuses.
    PlayRequested,
}

#[derive(Debug, PartialEq)]
enum State {
    Handshake,
    Connected,
    PublishPending { stream_id: u32 },
    Publishing { stream_id: u32 },
}

/// One server-side connection.
pub struct Session {
    handshake: Option<Handshake>,
    decoder: Decoder,
    encoder: Encoder,
    state: State,
    app: Option<String>,
    next_stream_id: u32,
    out: Vec<u8>,
    /// Bytes received, for acknowledgements.
    received: u64,
    acked: u64,
    ack_window: u32,
    /// Messages completed: progress that a trickle of bytes cannot fake.
    messages: u64,
}

impl Session {
    pub fn new(limits: Limits) -> Self {
        Self {
            handshake: Some(Handshake::default()),
            decoder: Decoder::new(limits),
            encoder: Encoder::default(),
            state: State::Handshake,
            app: None,
            next_stream_id: 1,
            out: Vec::new(),
            received: 0,
            acked: 0,
            ack_window: 0,
            messages: 0,
        }
    }

    /// Reads bytes from the peer, appending what they mean to `events`. After an error the
    /// connection must be closed.
    pub fn read(&mut self, mut input: &[u8], events: &mut Vec<Event>) -> Result<(), Error> {
        if let Some(hs) = self.handshake.as_mut() {
            match hs.read(input, &mut self.out)? {
                Progress::Pending => return Ok(()),
                Progress::Done(used) => {
                    input = &input[used..];
                    self.handshake = None;
                    self.state = State::Connected;
                }
            }
        }
        self.received += input.len() as u64;
        let mut messages = Vec::new();
        self.decoder.decode(input, &mut messages)?;
        for m in messages {
            self.messages += 1;
            self.message(m, events)?;
        }
        if self.ack_window > 0 && self.received - self.acked >= u64::from(self.ack_window) {
            self.acked = self.received;
            // The sequence number wraps, as the protocol's 32-bit counter does.
            let seq = (self.received & 0xffff_ffff) as u32;
            self.send_control(kind::ACK, &seq.to_be_bytes());
        }
        Ok(())
    }

    /// Bytes to send to the peer; empties the queue.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Bytes held in unfinished messages.
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// Complete messages received so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    pub fn handshake_done(&self) -> bool {
        self.handshake.is_none()
    }

    pub fn is_publishing(&self) -> bool {
        matches!(self.state, State::Publishing { .. })
    }

    pub fn accept_publish(&mut self, key: &str) {
        if let State::PublishPending { stream_id } = self.state {
            // User control: Stream Begin.
            let mut begin = vec![0, 0];
            begin.extend_from_slice(&stream_id.to_be_bytes());
            self.send_control(kind::USER_CONTROL, &begin);
            self.status(
                stream_id,
                "status",
                "NetStream.Publish.Start",
                &format!("{key} is now published"),
            );
            self.state = State::Publishing { stream_id };
        }
    }

    pub fn reject_publish(&mut self, description: &str) {
        if let State::PublishPending { stream_id } = self.state {
            self.status(stream_id, "error", "NetStream.Publish.BadName", description);
            self.state = State::Connected;
        }
    }

    fn message(&mut self, m: Message, events: &mut Vec<Event>) -> Result<(), Error> {
        match m.type_id {
            kind::WINDOW_ACK_SIZE => {
                let b = m
                    .payload
                    .get(..4)
                    .ok_or(Error::Protocol("short window size"))?;
                self.ack_window = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            }
            // Ping request: answer with a ping response carrying the same time.
            kind::USER_CONTROL if m.payload.len() >= 6 && m.payload[..2] == [0, 6] => {
                let mut pong = vec![0, 7];
                pong.extend_from_slice(&m.payload[2..6]);
                self.send_control(kind::USER_CONTROL, &pong);
            }
            kind::AUDIO | kind::VIDEO if self.publishing_on(m.stream_id) => {
                let (ts, data) = (m.timestamp, m.payload);
                events.push(Event::Media(if m.type_id == kind::VIDEO {
                    Media::Video { ts, data }
                } else {
                    Media::Audio { ts, data }
                }));
            }
            kind::COMMAND_AMF0 => self.command(&m.payload, m.stream_id, events)?,
            kind::COMMAND_AMF3 => {
                if let Some(body) = m.payload.get(1..) {
                    self.command(body, m.stream_id, events)?;
                }
            }
            // Metadata (@setDataFrame), acknowledgements, bandwidth, aggregates: nothing to do.
            _ => {}
        }
        Ok(())
    }

    fn command(
        &mut self,
        body: &[u8],
        stream_id: u32,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        let values = amf0::decode_all(body)?;
        let mut values = values.into_iter();
        let Some(Amf0::String(name)) = values.next() else {
            return Err(Error::Protocol("command without a name"));
        };
        let txn = values.next().and_then(|v| v.as_number()).unwrap_or(0.0);
        let command_object = values.next();
        let args: Vec<Amf0> = values.collect();
        match name.as_str() {
            "connect" => {
                if self.app.is_some() {
                    return Err(Error::Protocol("connect sent twice"));
                }
                let app = command_object
                    .as_ref()
                    .and_then(|o| o.get("app"))
                    .and_then(Amf0::as_str)
                    .ok_or(Error::Protocol("connect without an app"))?;
                // Some encoders append a slash or a query to the application name.
                let app = app.split(['?', '/']).next().unwrap_or_default().to_string();
                self.app = Some(app);
                self.send_control(kind::WINDOW_ACK_SIZE, &WINDOW.to_be_bytes());
                let mut bw = WINDOW.to_be_bytes().to_vec();
                bw.push(2); // dynamic
                self.send_control(kind::SET_PEER_BANDWIDTH, &bw);
                self.send_control(kind::SET_CHUNK_SIZE, &OUT_CHUNK_SIZE.to_be_bytes());
                self.encoder.set_chunk_size(OUT_CHUNK_SIZE);
                self.send_command(
                    0,
                    &[
                        Amf0::String("_result".into()),
                        Amf0::Number(txn),
                        object([
                            ("fmsVer", Amf0::String("FMS/3,0,1,123".into())),
                            ("capabilities", Amf0::Number(31.0)),
                        ]),
                        object([
                            ("level", Amf0::String("status".into())),
                            ("code", Amf0::String("NetConnection.Connect.Success".into())),
                            ("description", Amf0::String("Connection succeeded.".into())),
                            ("objectEncoding", Amf0::Number(0.0)),
                        ]),
                    ],
                );
            }
            "createStream" => {
                self.require_connect()?;
                let id = self.next_stream_id;
                if id > 8 {
                    return Err(Error::Limit("too many streams on one connection"));
                }
                self.next_stream_id += 1;
                self.result(txn, Amf0::Number(f64::from(id)));
            }
            "releaseStream" | "FCPublish" => {
                self.require_connect()?;
                if txn > 0.0 {
                    self.result(txn, Amf0::Undefined);
                }
            }
            "publish" => {
                self.require_connect()?;
                if stream_id == 0 || stream_id >= self.next_stream_id {
                    return Err(Error::Protocol("publish on a stream that was not created"));
                }
                if self.state != State::Connected {
                    return Err(Error::Protocol("publish while already publishing"));
                }
                let key = args
                    .first()
                    .and_then(Amf0::as_str)
                    .ok_or(Error::Protocol("publish without a stream name"))?
                    .to_string();
                self.state = State::PublishPending { stream_id };
                events.push(Event::PublishRequested {
                    app: self.app.clone().unwrap_or_default(),
                    key,
                });
            }
            "play" => {
                self.require_connect()?;
                self.status(
                    stream_id,
                    "error",
                    "NetStream.Play.Failed",
                    "playback is served over HLS",
                );
                events.push(Event::PlayRequested);
            }
            "FCUnpublish" | "deleteStream" | "closeStream" => {
                if matches!(
                    self.state,
                    State::Publishing { .. } | State::PublishPending { .. }
                ) {
                    self.state = State::Connected;
                    events.push(Event::Unpublished);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn publishing_on(&self, stream_id: u32) -> bool {
        self.state == State::Publishing { stream_id }
    }

    fn require_connect(&self) -> Result<(), Error> {
        if self.app.is_none() {
            return Err(Error::Protocol("command before connect"));
        }
        Ok(())
    }

    fn result(&mut self, txn: f64, value: Amf0) {
        self.send_command(
            0,
            &[
                Amf0::String("_result".into()),
                Amf0::Number(txn),
                Amf0::Null,
                value,
            ],
        );
    }

    fn status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        self.send_command(
            stream_id,
            &[
                Amf0::String("onStatus".into()),
                Amf0::Number(0.0),
                Amf0::Null,
                object([
                    ("level", Amf0::String(level.into())),
                    ("code", Amf0::String(code.into())),
                    ("description", Amf0::String(description.into())),
                ]),
            ],
        );
    }

    fn send_command(&mut self, stream_id: u32, values: &[Amf0]) {
        let mut body = Vec::new();
        for v in values {
            amf0::encode(v, &mut body);
        }
        self.send(CSID_COMMAND, kind::COMMAND_AMF0, stream_id, body);
    }

    fn send_control(&mut self, type_id: u8, body: &[u8]) {
        self.send(CSID_CONTROL, type_id, 0, body.to_vec());
    }

    fn send(&mut self, csid: u8, type_id: u8, stream_id: u32, body: Vec<u8>) {
        let msg = Message {
            type_id,
            stream_id,
            timestamp: 0,
            payload: Bytes::from(body),
        };
        self.encoder.write(csid, &msg, &mut self.out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Decoder;

    /// A publisher's side of the conversation, built from the crate's own encoders.
    struct Client {
        enc: Encoder,
        out: Vec<u8>,
    }

    impl Client {
        fn handshake() -> Self {
            let mut out = vec![3u8];
            out.extend_from_slice(&[7u8; 2 * crate::handshake::PACKET]);
            Self {
                enc: Encoder::default(),
                out,
            }
        }

        fn command(&mut self, stream_id: u32, values: &[Amf0]) -> &mut Self {
            let mut body = Vec::new();
            for v in values {
                amf0::encode(v, &mut body);
            }
            self.raw(3, 20, stream_id, body)
        }

        fn raw(&mut self, csid: u8, type_id: u8, stream_id: u32, body: Vec<u8>) -> &mut Self {
            let msg = Message {
                type_id,
                stream_id,
                timestamp: 0,
                payload: Bytes::from(body),
            };
            self.enc.write(csid, &msg, &mut self.out);
            self
        }
    }

    fn s(v: &str) -> Amf0 {
        Amf0::String(v.into())
    }

    fn publish_conversation(key: &str) -> Client {
        let mut c = Client::handshake();
        c.command(
            0,
            &[
                s("connect"),
                Amf0::Number(1.0),
                object([("app", s("live"))]),
            ],
        )
        .command(
            0,
            &[s("releaseStream"), Amf0::Number(2.0), Amf0::Null, s(key)],
        )
        .command(0, &[s("createStream"), Amf0::Number(3.0), Amf0::Null])
        .command(
            1,
            &[
                s("publish"),
                Amf0::Number(4.0),
                Amf0::Null,
                s(key),
                s("live"),
            ],
        );
        c
    }

    /// Commands the server sent, by name and the status code they carry.
    fn replies(bytes: &[u8]) -> Vec<(String, Option<String>)> {
        let body = &bytes[1 + 2 * crate::handshake::PACKET..];
        let mut msgs = Vec::new();
        let mut d = Decoder::new(Limits::default());
        // The server's Set Chunk Size is honoured by the decoder itself.
        d.decode(body, &mut msgs).expect("server output decodes");
        msgs.iter()
            .filter(|m| m.type_id == 20)
            .map(|m| {
                let v = amf0::decode_all(&m.payload).expect("amf");
                let code = v.get(3).and_then(|o| o.get("code")).and_then(Amf0::as_str);
                (
                    v[0].as_str().unwrap_or("").to_string(),
                    code.map(str::to_string),
                )
            })
            .collect()
    }

    #[test]
    fn publish_accepted_then_media_then_unpublish() {
        let mut session = Session::new(Limits::default());
        let mut c = publish_conversation("abc");
        let mut events = Vec::new();
        session.read(&c.out, &mut events).expect("reads");
        assert_eq!(
            events,
            vec![Event::PublishRequested {
                app: "live".into(),
                key: "abc".into()
            }]
        );
        session.accept_publish("abc");
        let out = session.take_output();
        let r = replies(&out);
        assert_eq!(
            r[0],
            (
                "_result".into(),
                Some("NetConnection.Connect.Success".into())
            )
        );
        assert_eq!(
            r.last().cloned(),
            Some(("onStatus".into(), Some("NetStream.Publish.Start".into())))
        );
        c.out.clear();
        c.raw(6, 9, 1, vec![0x17, 0, 0, 0, 0])
            .raw(4, 8, 1, vec![0xaf, 1]);
        c.command(
            1,
            &[
                s("deleteStream"),
                Amf0::Number(5.0),
                Amf0::Null,
                Amf0::Number(1.0),
            ],
        );
        let mut events = Vec::new();
        session.read(&c.out, &mut events).expect("reads");
        assert!(matches!(events[0], Event::Media(Media::Video { .. })));
        assert!(matches!(events[1], Event::Media(Media::Audio { .. })));
        assert_eq!(events[2], Event::Unpublished);
    }

    #[test]
    fn rejected_publish_says_why_and_drops_media() {
        let mut session = Session::new(Limits::default());
        let mut c = publish_conversation("nope");
        c.raw(6, 9, 1, vec![0x17, 0]);
        let mut events = Vec::new();
        session.read(&c.out, &mut events).expect("reads");
        session.reject_publish("unknown stream key");
        assert_eq!(events.len(), 1);
        let r = replies(&session.take_output());
        assert_eq!(
            r.last().cloned(),
            Some(("onStatus".into(), Some("NetStream.Publish.BadName".into())))
        );
    }

    #[test]
    fn the_reported_amf_triggers_are_errors_or_ignored() {
        // A command message with an empty body.
        let mut c = Client::handshake();
        c.raw(3, 20, 0, Vec::new());
        assert!(
            Session::new(Limits::default())
                .read(&c.out, &mut Vec::new())
                .is_err()
        );
        // A command with fewer than three values.
        let mut c = Client::handshake();
        c.command(0, &[s("connect")]);
        assert!(
            Session::new(Limits::default())
                .read(&c.out, &mut Vec::new())
                .is_err()
        );
        // A data message holding only "@setDataFrame".
        let mut c = Client::handshake();
        let mut body = Vec::new();
        amf0::encode(&s("@setDataFrame"), &mut body);
        c.raw(4, 18, 1, body);
        assert!(
            Session::new(Limits::default())
                .read(&c.out, &mut Vec::new())
                .is_ok()
        );
        // 200 000 nested strict arrays in one command.
        let mut c = Client::handshake();
        let mut body = Vec::new();
        amf0::encode(&s("connect"), &mut body);
        for _ in 0..200_000 {
            body.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        c.raw(3, 20, 0, body);
        assert!(
            Session::new(Limits::default())
                .read(&c.out, &mut Vec::new())
                .is_err()
        );
    }

    #[test]
    fn ping_and_acknowledgement() {
        let mut c = Client::handshake();
        c.raw(2, 5, 0, 100u32.to_be_bytes().to_vec());
        c.raw(2, 4, 0, vec![0, 6, 0, 0, 0, 9]);
        c.raw(5, 18, 1, vec![0u8; 200]);
        let mut session = Session::new(Limits::default());
        session.read(&c.out, &mut Vec::new()).expect("reads");
        let out = session.take_output();
        let mut msgs = Vec::new();
        Decoder::new(Limits::default())
            .decode(&out[1 + 2 * crate::handshake::PACKET..], &mut msgs)
            .expect("decodes");
        assert!(
            msgs.iter()
                .any(|m| m.type_id == 4 && m.payload[..] == [0, 7, 0, 0, 0, 9])
        );
        assert!(msgs.iter().any(|m| m.type_id == 3));
    }
}
