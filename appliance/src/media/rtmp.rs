//! The in-process RTMP ingest server (`rtmp://<host>:1935/live/<stream-key>`).
//!
//! Protocol work is done by `rml_rtmp` (sans-IO); this module owns the sockets, the
//! stream-key check and the hand-over of a publisher's media to the stream that owns the key.
//! A connection that sends garbage, stalls in the handshake, or publishes with an unknown key is
//! closed without touching any stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::events::{EventBus, EventKind};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The only RTMP application name publishers may use.
pub const APP_NAME: &str = "live";

/// One audio or video message of a publish, as RTMP carries it (FLV tag bodies).
#[derive(Debug, Clone)]
pub enum RtmpMedia {
    Video { ts: u32, data: Bytes },
    Audio { ts: u32, data: Bytes },
}

/// A publisher handed to the stream that owns its key; the channel closes when it leaves.
pub struct Publisher {
    pub peer: SocketAddr,
    pub media: mpsc::Receiver<RtmpMedia>,
}

struct Slot {
    stream_id: String,
    tx: mpsc::Sender<Publisher>,
    busy: Arc<AtomicBool>,
}

/// Stream keys the node accepts, each bound to the stream that receives its publishers.
#[derive(Clone, Default)]
pub struct PublishRegistry {
    inner: Arc<Mutex<HashMap<String, Slot>>>,
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unknown stream key")]
    UnknownKey,
    #[error("the stream already has a publisher")]
    Busy,
    #[error("wrong application '{0}'; publish to rtmp://<host>/live/<stream-key>")]
    WrongApp(String),
}

/// Shows enough of a stream key to tell keys apart in logs without revealing it.
pub fn mask_key(key: &str) -> String {
    let head: String = key.chars().take(4).collect();
    format!("{head}…")
}

impl PublishRegistry {
    /// Binds `key` to a stream; returns where its publishers will arrive.
    pub fn register(&self, key: &str, stream_id: &str) -> mpsc::Receiver<Publisher> {
        let (tx, rx) = mpsc::channel(1);
        if let Ok(mut m) = self.inner.lock() {
            m.insert(
                key.to_string(),
                Slot {
                    stream_id: stream_id.to_string(),
                    tx,
                    busy: Arc::new(AtomicBool::new(false)),
                },
            );
        }
        rx
    }

    pub fn unregister(&self, key: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.remove(key);
        }
    }

    fn claim(&self, key: &str) -> Result<(String, mpsc::Sender<Publisher>, BusyGuard), Refusal> {
        let m = self.inner.lock().map_err(|_| Refusal::UnknownKey)?;
        let slot = m.get(key).ok_or(Refusal::UnknownKey)?;
        if slot.busy.swap(true, Ordering::SeqCst) {
            return Err(Refusal::Busy);
        }
        Ok((
            slot.stream_id.clone(),
            slot.tx.clone(),
            BusyGuard(slot.busy.clone()),
        ))
    }
}

/// Frees the key for the next publisher when the connection ends, however it ends.
struct BusyGuard(Arc<AtomicBool>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    registry: PublishRegistry,
    events: EventBus,
    max_connections: u32,
    mut shutdown: watch::Receiver<bool>,
) {
    let active = Arc::new(AtomicU32::new(0));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (sock, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("rtmp accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if active.load(Ordering::SeqCst) >= max_connections {
            tracing::warn!(%peer, "rtmp connection refused: {max_connections} connections open");
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let registry = registry.clone();
        let events = events.clone();
        let active = active.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(sock, peer, registry, &events, shutdown).await {
                tracing::info!(%peer, "rtmp connection closed: {e}");
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("handshake not completed within {} s", HANDSHAKE_TIMEOUT.as_secs())]
    HandshakeTimeout,
    #[error("no data for {} s", IDLE_TIMEOUT.as_secs())]
    Idle,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("publish refused: {0}")]
    Refused(Refusal),
    #[error("the stream stopped taking media")]
    StreamGone,
}

async fn handshake(sock: &mut TcpStream) -> Result<Vec<u8>, ConnError> {
    let mut hs = Handshake::new(PeerType::Server);
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Err(ConnError::Handshake("peer closed during handshake".into()));
        }
        match hs
            .process_bytes(&buf[..n])
            .map_err(|e| ConnError::Handshake(format!("{e:?}")))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                sock.write_all(&response_bytes).await?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                sock.write_all(&response_bytes).await?;
                return Ok(remaining_bytes);
            }
        }
    }
}

struct Publishing {
    key: String,
    stream_id: String,
    tx: mpsc::Sender<RtmpMedia>,
    _guard: BusyGuard,
}

async fn connection(
    mut sock: TcpStream,
    peer: SocketAddr,
    registry: PublishRegistry,
    events: &EventBus,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnError> {
    let _ = sock.set_nodelay(true);
    let remaining = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut sock))
        .await
        .map_err(|_| ConnError::HandshakeTimeout)??;
    let (mut session, initial) = ServerSession::new(ServerSessionConfig::new())
        .map_err(|e| ConnError::Protocol(format!("{e:?}")))?;
    let mut publishing: Option<Publishing> = None;
    let mut pending = initial;
    let mut input = remaining;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !input.is_empty() {
            let results = session
                .handle_input(&input)
                .map_err(|e| ConnError::Protocol(format!("{e:?}")))?;
            pending.extend(results);
            input.clear();
        }
        while !pending.is_empty() {
            let batch = std::mem::take(&mut pending);
            for r in batch {
                match r {
                    ServerSessionResult::OutboundResponse(p) => sock.write_all(&p.bytes).await?,
                    ServerSessionResult::RaisedEvent(ev) => {
                        let (results, close) =
                            on_event(ev, &mut session, &mut publishing, &registry, events, peer)
                                .await;
                        if let Some(why) = close {
                            // Flush the answer (a rejection) so the client can show it.
                            for r in results {
                                if let ServerSessionResult::OutboundResponse(p) = r {
                                    let _ = sock.write_all(&p.bytes).await;
                                }
                            }
                            return Err(why);
                        }
                        pending.extend(results);
                    }
                    ServerSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
        }
        let read = tokio::select! {
            r = tokio::time::timeout(IDLE_TIMEOUT, sock.read(&mut buf)) => r,
            _ = shutdown.changed() => return Ok(()),
        };
        let n = read.map_err(|_| ConnError::Idle)??;
        if n == 0 {
            if let Some(p) = &publishing {
                tracing::info!(%peer, stream = %p.stream_id, "rtmp publisher disconnected");
            }
            return Ok(());
        }
        input.extend_from_slice(&buf[..n]);
    }
}

/// Handles one session event: the results to send, and a reason to close if the connection
/// must end.
async fn on_event(
    ev: ServerSessionEvent,
    session: &mut ServerSession,
    publishing: &mut Option<Publishing>,
    registry: &PublishRegistry,
    events: &EventBus,
    peer: SocketAddr,
) -> (Vec<ServerSessionResult>, Option<ConnError>) {
    let proto = |e: rml_rtmp::sessions::ServerSessionError| ConnError::Protocol(format!("{e:?}"));
    let answer =
        |r: Result<Vec<ServerSessionResult>, rml_rtmp::sessions::ServerSessionError>| match r {
            Ok(v) => (v, None),
            Err(e) => (Vec::new(), Some(proto(e))),
        };
    match ev {
        ServerSessionEvent::ConnectionRequested { request_id, .. } => {
            answer(session.accept_request(request_id))
        }
        ServerSessionEvent::PublishStreamRequested {
            request_id,
            app_name,
            stream_key,
            ..
        } => {
            let claimed = if app_name != APP_NAME {
                Err(Refusal::WrongApp(app_name.clone()))
            } else if publishing.is_some() {
                Err(Refusal::Busy)
            } else {
                registry.claim(&stream_key)
            };
            let (tx, rx) = mpsc::channel(1024);
            let claimed = claimed.and_then(|(stream_id, handover, guard)| {
                handover
                    .try_send(Publisher { peer, media: rx })
                    .map(|()| (stream_id, guard))
                    .map_err(|_| Refusal::Busy)
            });
            match claimed {
                Ok((stream_id, guard)) => {
                    tracing::info!(%peer, stream = %stream_id, key = %mask_key(&stream_key), "rtmp publish accepted");
                    *publishing = Some(Publishing {
                        key: stream_key,
                        stream_id,
                        tx,
                        _guard: guard,
                    });
                    answer(session.accept_request(request_id))
                }
                Err(why) => {
                    tracing::warn!(%peer, key = %mask_key(&stream_key), "rtmp publish refused: {why}");
                    events.emit(
                        None,
                        EventKind::RtmpRefused,
                        format!("publish from {peer} refused: {why}"),
                    );
                    let results = session
                        .reject_request(request_id, "NetStream.Publish.BadName", &why.to_string())
                        .unwrap_or_default();
                    (results, Some(ConnError::Refused(why)))
                }
            }
        }
        ServerSessionEvent::PublishStreamFinished { .. } => {
            *publishing = None;
            (Vec::new(), None)
        }
        ServerSessionEvent::VideoDataReceived {
            stream_key,
            data,
            timestamp,
            ..
        } => {
            forward(
                publishing,
                &stream_key,
                RtmpMedia::Video {
                    ts: timestamp.value,
                    data,
                },
            )
            .await
        }
        ServerSessionEvent::AudioDataReceived {
            stream_key,
            data,
            timestamp,
            ..
        } => {
            forward(
                publishing,
                &stream_key,
                RtmpMedia::Audio {
                    ts: timestamp.value,
                    data,
                },
            )
            .await
        }
        ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
            let results = session
                .reject_request(
                    request_id,
                    "NetStream.Play.Failed",
                    "playback is served over HLS",
                )
                .unwrap_or_default();
            (
                results,
                Some(ConnError::Protocol("RTMP playback is not offered".into())),
            )
        }
        _ => (Vec::new(), None),
    }
}

async fn forward(
    publishing: &Option<Publishing>,
    key: &str,
    media: RtmpMedia,
) -> (Vec<ServerSessionResult>, Option<ConnError>) {
    let Some(p) = publishing.as_ref().filter(|p| p.key == key) else {
        return (Vec::new(), None);
    };
    // Awaiting here applies TCP back-pressure to a publisher faster than its pipeline.
    match p.tx.send(media).await {
        Ok(()) => (Vec::new(), None),
        Err(_) => (Vec::new(), Some(ConnError::StreamGone)),
    }
}

/// The video codec an FLV video tag body announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    H265,
    Av1,
    Vp9,
    Other(u8),
}

impl std::fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::H264 => write!(f, "H.264"),
            Self::H265 => write!(f, "H.265 (HEVC)"),
            Self::Av1 => write!(f, "AV1"),
            Self::Vp9 => write!(f, "VP9"),
            Self::Other(id) => write!(f, "FLV codec id {id}"),
        }
    }
}

/// Reads the codec from the first byte(s) of an FLV video tag, including the Enhanced RTMP
/// extended header (`0x80` bit, then a FourCC) that OBS uses for HEVC and AV1.
pub fn video_codec(data: &[u8]) -> Option<VideoCodec> {
    let first = *data.first()?;
    if first & 0x80 != 0 {
        let fourcc = data.get(1..5)?;
        return Some(match fourcc {
            b"hvc1" => VideoCodec::H265,
            b"av01" => VideoCodec::Av1,
            b"vp09" => VideoCodec::Vp9,
            b"avc1" => VideoCodec::H264,
            _ => VideoCodec::Other(first & 0x0f),
        });
    }
    Some(match first & 0x0f {
        7 => VideoCodec::H264,
        12 => VideoCodec::H265,
        id => VideoCodec::Other(id),
    })
}

/// The 13 bytes that open an FLV byte stream (header and PreviousTagSize0).
pub fn flv_header() -> Vec<u8> {
    vec![
        b'F', b'L', b'V', 0x01, 0x05, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00,
    ]
}

/// One FLV tag with its trailing PreviousTagSize.
pub fn flv_tag(media: &RtmpMedia) -> Vec<u8> {
    let (kind, ts, data) = match media {
        RtmpMedia::Audio { ts, data } => (8u8, *ts, data),
        RtmpMedia::Video { ts, data } => (9u8, *ts, data),
    };
    let len = data.len().min(0x00ff_ffff) as u32;
    let mut out = Vec::with_capacity(11 + len as usize + 4);
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&(ts & 0x00ff_ffff).to_be_bytes()[1..]);
    out.push((ts >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&data[..len as usize]);
    out.extend_from_slice(&(11 + len).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_detection() {
        assert_eq!(video_codec(&[0x17, 0x00]), Some(VideoCodec::H264));
        assert_eq!(video_codec(&[0x1c, 0x00]), Some(VideoCodec::H265));
        assert_eq!(
            video_codec(&[0x90, b'h', b'v', b'c', b'1']),
            Some(VideoCodec::H265)
        );
        assert_eq!(video_codec(&[0x90, b'a', b'v']), None);
        assert_eq!(video_codec(&[]), None);
    }

    #[test]
    fn flv_tag_layout() {
        let t = flv_tag(&RtmpMedia::Video {
            ts: 0x0102_0304,
            data: Bytes::from_static(&[1, 2, 3]),
        });
        assert_eq!(t.len(), 11 + 3 + 4);
        assert_eq!(t[0], 9);
        assert_eq!(&t[1..4], &[0, 0, 3]);
        assert_eq!(&t[4..8], &[0x02, 0x03, 0x04, 0x01]);
        assert_eq!(&t[14..], &14u32.to_be_bytes());
    }

    #[test]
    fn registry_refuses_unknown_and_busy_keys() {
        let reg = PublishRegistry::default();
        let _rx = reg.register("key-12345678", "s1");
        assert!(matches!(reg.claim("nope"), Err(Refusal::UnknownKey)));
        let first = reg.claim("key-12345678");
        assert!(first.is_ok());
        assert!(matches!(reg.claim("key-12345678"), Err(Refusal::Busy)));
        drop(first);
        assert!(reg.claim("key-12345678").is_ok());
    }
}
