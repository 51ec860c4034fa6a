//! The in-process RTMP ingest server (`rtmp://<host>:1935/live/<stream-key>`).
//!
//! Protocol work is done by `lpe-rtmp` (sans-IO, bounded, returns errors); this module owns
//! the sockets, the limits that span connections, the stream-key check and the hand-over of a
//! publisher's media to the stream that owns the key. A connection that sends garbage, stalls,
//! trickles, or publishes with an unknown key is closed without touching any stream; a
//! connection's task failing, however it fails, ends that connection only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use lpe_rtmp::Media as RtmpMedia;
use lpe_rtmp::{Event, Limits, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use lpe_core::admission::Admissions;
pub use lpe_core::admission::ConnectionLimits;
use lpe_core::events::{EventBus, EventKind};

/// Time to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed between two complete messages: bytes that never add up to a message are not
/// progress, so a trickling client is closed as an idle one is.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes all connections together may hold in unfinished messages.
const TOTAL_BUFFERED: usize = 96 << 20;
/// The only RTMP application name publishers may use.
pub const APP_NAME: &str = "live";

/// A publisher handed to the stream that owns its key; the channel closes when it leaves.
pub struct Publisher {
    pub peer: SocketAddr,
    pub media: mpsc::Receiver<RtmpMedia>,
}

/// A WHIP publisher handed to the stream that owns its key: the client's SDP offer, where
/// the answer goes, and when the client leaves. The key stays busy while it is held.
pub struct WhipPublish {
    pub offer: String,
    pub answer: tokio::sync::oneshot::Sender<Result<String, String>>,
    pub leave: tokio::sync::watch::Receiver<bool>,
    pub guard: BusyGuard,
}

/// Where a pushed stream's publishers arrive: RTMP connections and WHIP sessions, one at a
/// time over both.
pub struct Publishers {
    pub rtmp: mpsc::Receiver<Publisher>,
    pub whip: mpsc::Receiver<WhipPublish>,
}

struct Slot {
    stream_id: String,
    tx: mpsc::Sender<Publisher>,
    whip: mpsc::Sender<WhipPublish>,
    busy: Arc<AtomicBool>,
    /// Tells the RTMP publisher holding the key that another one replaces it.
    replace: Option<watch::Sender<bool>>,
}

/// How long a publisher waits for the one it replaces to let go of the key.
const REPLACE_WAIT: Duration = Duration::from_secs(3);

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
    pub fn register(&self, key: &str, stream_id: &str) -> Publishers {
        let (tx, rx) = mpsc::channel(1);
        let (whip, whip_rx) = mpsc::channel(1);
        if let Ok(mut m) = self.inner.lock() {
            m.insert(
                key.to_string(),
                Slot {
                    stream_id: stream_id.to_string(),
                    tx,
                    whip,
                    busy: Arc::new(AtomicBool::new(false)),
                    replace: None,
                },
            );
        }
        Publishers {
            rtmp: rx,
            whip: whip_rx,
        }
    }

    /// Claims `key` for a WHIP publisher: the stream's id, where to hand the publish over,
    /// and the guard that keeps the key busy. A WHIP holder is never replaced.
    pub fn claim_whip(
        &self,
        key: &str,
    ) -> Result<(String, mpsc::Sender<WhipPublish>, BusyGuard), Refusal> {
        self.claim_for(key, |slot| {
            slot.replace = None;
            slot.whip.clone()
        })
    }

    pub fn unregister(&self, key: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.remove(key);
        }
    }

    /// Claims `key` for an RTMP publisher: as [`Self::claim_whip`], plus what tells this
    /// publisher that another replaces it. One that holds the key over RTMP is told to go and
    /// the key waited for: an encoder reconnects after its connection dropped, often before
    /// the old connection is seen to be gone.
    async fn claim_rtmp(&self, key: &str) -> Result<(String, RtmpHandover, BusyGuard), Refusal> {
        let deadline = Instant::now() + REPLACE_WAIT;
        let mut told = false;
        loop {
            let claimed = self.claim_for(key, |slot| {
                let (replace, replaced) = watch::channel(false);
                slot.replace = Some(replace);
                (slot.tx.clone(), replaced)
            });
            if !matches!(claimed, Err(Refusal::Busy)) {
                return claimed;
            }
            // Once told, the holder drops what it was told through before its key: keep
            // waiting for the key, not for another successful telling.
            told |= self.tell_holder_to_go(key);
            if !told || Instant::now() >= deadline {
                return claimed;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Tells the RTMP publisher holding `key` to go; false when none listens (the key is held
    /// over WHIP, or by no one).
    fn tell_holder_to_go(&self, key: &str) -> bool {
        let Ok(m) = self.inner.lock() else {
            return false;
        };
        m.get(key)
            .and_then(|slot| slot.replace.as_ref())
            .is_some_and(|r| r.send(true).is_ok())
    }

    /// Marks `key` busy for one publisher, over RTMP and WHIP alike; `handover` picks where
    /// that kind of publisher goes.
    fn claim_for<T>(
        &self,
        key: &str,
        handover: impl FnOnce(&mut Slot) -> T,
    ) -> Result<(String, T, BusyGuard), Refusal> {
        let mut m = self.inner.lock().map_err(|_| Refusal::UnknownKey)?;
        let slot = m.get_mut(key).ok_or(Refusal::UnknownKey)?;
        if slot.busy.swap(true, Ordering::SeqCst) {
            return Err(Refusal::Busy);
        }
        let guard = BusyGuard(slot.busy.clone());
        Ok((slot.stream_id.clone(), handover(slot), guard))
    }
}

/// Where an RTMP publisher goes, and what tells it that another replaces it.
type RtmpHandover = (mpsc::Sender<Publisher>, watch::Receiver<bool>);

/// Frees the key for the next publisher when the connection ends, however it ends.
pub struct BusyGuard(Arc<AtomicBool>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Bytes held in unfinished messages by all connections together; a connection's share is
/// returned when its [`Held`] drops.
#[derive(Default)]
struct Buffered(AtomicUsize);

struct Held {
    all: Arc<Buffered>,
    mine: usize,
}

impl Held {
    /// Records how many bytes the connection holds now; false when all connections together
    /// hold more than the node allows.
    fn hold(&mut self, bytes: usize) -> bool {
        let all = &self.all.0;
        if bytes >= self.mine {
            let grown = bytes - self.mine;
            self.mine = bytes;
            all.fetch_add(grown, Ordering::SeqCst) + grown <= TOTAL_BUFFERED
        } else {
            all.fetch_sub(self.mine - bytes, Ordering::SeqCst);
            self.mine = bytes;
            true
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.hold(0);
    }
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    listener: Arc<TcpListener>,
    registry: PublishRegistry,
    events: EventBus,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let admissions = Arc::new(Admissions::default());
    let buffered = Arc::new(Buffered::default());
    let mut refused_logged = false;
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
        let slot = match admissions.admit(peer.ip(), limits) {
            Ok(a) => a,
            Err(why) => {
                // Logged once per burst: a flood must not become a flood of log lines too.
                if !refused_logged {
                    tracing::warn!(%peer, "rtmp connection refused: {why}");
                    refused_logged = true;
                }
                continue;
            }
        };
        refused_logged = false;
        let registry = registry.clone();
        let events = events.clone();
        let shutdown = shutdown.clone();
        let held = Held {
            all: Arc::clone(&buffered),
            mine: 0,
        };
        // The connection runs in a task of its own: should it panic, the runtime ends that
        // task only, and the slot and the held bytes are returned as they drop.
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection(sock, peer, registry, &events, held, shutdown).await {
                tracing::info!(%peer, "rtmp connection closed: {e}");
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake not completed within {} s", HANDSHAKE_TIMEOUT.as_secs())]
    HandshakeTimeout,
    #[error("no complete message for {} s", PROGRESS_TIMEOUT.as_secs())]
    NoProgress,
    #[error("{0}")]
    Protocol(#[from] lpe_rtmp::Error),
    #[error("the node holds too many unfinished RTMP messages")]
    Memory,
    #[error("publish refused: {0}")]
    Refused(Refusal),
    #[error("RTMP playback is not offered")]
    Play,
    #[error("the stream stopped taking media")]
    StreamGone,
}

struct Publishing {
    stream_id: String,
    tx: mpsc::Sender<RtmpMedia>,
    /// Becomes true when another publisher takes the key over.
    replaced: watch::Receiver<bool>,
    _guard: BusyGuard,
}

/// Resolves when another publisher replaces this connection's (never without one).
async fn replaced(publishing: &mut Option<Publishing>) {
    if let Some(p) = publishing
        && p.replaced.wait_for(|r| *r).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

async fn connection(
    mut sock: TcpStream,
    peer: SocketAddr,
    registry: PublishRegistry,
    events: &EventBus,
    mut held: Held,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnError> {
    let _ = sock.set_nodelay(true);
    let mut session = Session::new(Limits::default());
    let mut publishing: Option<Publishing> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut happened = Vec::new();
    let handshake_deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut progress = (Instant::now(), 0u64);
    loop {
        let deadline = if session.handshake_done() {
            progress.0 + PROGRESS_TIMEOUT
        } else {
            handshake_deadline
        };
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, sock.read(&mut buf)) => r,
            _ = shutdown.changed() => return Ok(()),
            () = replaced(&mut publishing) => {
                tracing::info!(%peer, "rtmp publisher replaced by a new connection with its key");
                return Ok(());
            }
        };
        let n = match read {
            Ok(r) => r?,
            Err(_) if session.handshake_done() => return Err(ConnError::NoProgress),
            Err(_) => return Err(ConnError::HandshakeTimeout),
        };
        if n == 0 {
            if let Some(p) = &publishing {
                tracing::info!(%peer, stream = %p.stream_id, "rtmp publisher disconnected");
            }
            return Ok(());
        }
        let read = session.read(&buf[..n], &mut happened);
        if !held.hold(session.buffered()) {
            return Err(ConnError::Memory);
        }
        if session.messages() != progress.1 {
            progress = (Instant::now(), session.messages());
        }
        for ev in happened.drain(..) {
            if let Err(e) =
                on_event(ev, &mut session, &mut publishing, &registry, events, peer).await
            {
                // Flush the answer (a refusal) so the client can show it.
                let _ = sock.write_all(&session.take_output()).await;
                return Err(e);
            }
        }
        let out = session.take_output();
        if !out.is_empty() {
            sock.write_all(&out).await?;
        }
        read?;
    }
}

/// Acts on one session event; an error ends the connection.
async fn on_event(
    ev: Event,
    session: &mut Session,
    publishing: &mut Option<Publishing>,
    registry: &PublishRegistry,
    events: &EventBus,
    peer: SocketAddr,
) -> Result<(), ConnError> {
    match ev {
        Event::PublishRequested { app, key } => {
            let claimed = if app != APP_NAME {
                Err(Refusal::WrongApp(app))
            } else if publishing.is_some() {
                Err(Refusal::Busy)
            } else {
                registry.claim_rtmp(&key).await
            };
            let (tx, rx) = mpsc::channel(1024);
            let claimed = claimed.and_then(|(stream_id, (handover, replaced), guard)| {
                handover
                    .try_send(Publisher { peer, media: rx })
                    .map(|()| (stream_id, guard, replaced))
                    .map_err(|_| Refusal::Busy)
            });
            match claimed {
                Ok((stream_id, guard, replaced)) => {
                    tracing::info!(%peer, stream = %stream_id, key = %mask_key(&key), "rtmp publish accepted");
                    session.accept_publish(&mask_key(&key));
                    *publishing = Some(Publishing {
                        stream_id,
                        tx,
                        replaced,
                        _guard: guard,
                    });
                    Ok(())
                }
                Err(why) => {
                    tracing::warn!(%peer, key = %mask_key(&key), "rtmp publish refused: {why}");
                    events.emit(
                        None,
                        EventKind::RtmpRefused,
                        format!("publish from {peer} refused: {why}"),
                    );
                    session.reject_publish(&why.to_string());
                    Err(ConnError::Refused(why))
                }
            }
        }
        Event::Unpublished => {
            *publishing = None;
            Ok(())
        }
        Event::Media(media) => forward(publishing, media).await,
        Event::PlayRequested => Err(ConnError::Play),
    }
}

async fn forward(publishing: &Option<Publishing>, media: RtmpMedia) -> Result<(), ConnError> {
    let Some(p) = publishing.as_ref() else {
        return Ok(());
    };
    // Awaiting here applies TCP back-pressure to a publisher faster than its pipeline.
    p.tx.send(media).await.map_err(|_| ConnError::StreamGone)
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

/// The 13 bytes that open an FLV byte stream (header and PreviousTagSize0), announcing
/// video and, when the publisher sends it, audio.
pub fn flv_header(audio: bool) -> Vec<u8> {
    let flags = if audio { 0x05 } else { 0x01 };
    vec![
        b'F', b'L', b'V', 0x01, flags, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00,
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
    use bytes::Bytes;

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

    #[tokio::test]
    async fn a_publisher_replaces_the_one_holding_its_key_over_rtmp_not_over_whip() {
        let reg = PublishRegistry::default();
        let _rx = reg.register("key-12345678", "s1");
        assert!(matches!(
            reg.claim_rtmp("nope").await,
            Err(Refusal::UnknownKey)
        ));
        let Ok((_, (_, mut first_replaced), first_guard)) = reg.claim_rtmp("key-12345678").await
        else {
            panic!("the first claim failed");
        };
        // The second publisher tells the first to go, and has the key once it has gone.
        let second = tokio::spawn({
            let reg = reg.clone();
            async move {
                reg.claim_rtmp("key-12345678")
                    .await
                    .map(|(_, (_, r), g)| (g, r))
            }
        });
        first_replaced
            .wait_for(|r| *r)
            .await
            .expect("the first publisher is told");
        // It lets go of what told it first, then of the key: the second keeps waiting.
        drop(first_replaced);
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(first_guard);
        let (second_guard, second_replaced) =
            second.await.expect("task").expect("the second claim");
        assert!(!*second_replaced.borrow());
        // One that does not let go in time keeps the key.
        let started = Instant::now();
        assert!(matches!(
            reg.claim_rtmp("key-12345678").await,
            Err(Refusal::Busy)
        ));
        assert!(started.elapsed() >= REPLACE_WAIT, "{:?}", started.elapsed());
        drop((second_guard, second_replaced));
        // The same key, held over WHIP after RTMP publishers had it, is refused at once.
        let whip = reg.claim_whip("key-12345678").expect("whip");
        let started = Instant::now();
        assert!(matches!(
            reg.claim_rtmp("key-12345678").await,
            Err(Refusal::Busy)
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(whip);
    }
}
