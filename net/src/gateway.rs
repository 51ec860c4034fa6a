//! The gateway: offloaded streams' segments sent to orchestrators and paid with tickets, as an
//! on-chain go-livepeer broadcaster does it (`livepeer-wire.md` §2.5.2–§2.5.6, §2.11).
//!
//! Per stream, one session with one orchestrator: its info (ticket params, price, auth
//! token), a ticket session on those params, and the credit the tickets bought. Each segment:
//! tickets for its fee, `POST /segment`, every rendition downloaded, the data signature and
//! every rendition's pixel count checked by decoding; only then are the renditions handed to
//! the media engine. Any failure ends the session (an orchestrator that failed verification
//! is also blocked) and the media engine encodes that segment itself; the next segment looks
//! for an orchestrator again, after a backoff while none answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use lpe_node::views::{
    Offload, Offloaded, OrchestratorSpend, OutputProfile, SegmentJob, SegmentTranscoder,
};
use lpe_pm::balance::tickets_for_fee;
use lpe_pm::recipient::price_from_info;
use lpe_pm::sender::Sender;
use lpe_pm::sig::{self, SigningKey};
use lpe_pm::wire::{encode_payment_header, params_from_wire, payment_for_batch};
use lpe_pm::{Address, BigRational};
use prost::Message;

use crate::client::{self, SegmentInfo};
use crate::creds;
use crate::discovery::{Candidate, Discovery};
use crate::fee::{estimated_fee, transcoding_capabilities};
use crate::proto::{OrchestratorInfo, Payment, TranscodeOutcome, TranscodeResult, VideoProfile};
use crate::signer::RemoteSigner;

/// An orchestrator that failed verification stays out of the choice this long.
const BLOCK: Duration = Duration::from_secs(600);
/// First wait before looking for an orchestrator again after none answered; it doubles.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_CAP: Duration = Duration::from_secs(30);
/// go-livepeer's rendition download timeout.
const DOWNLOAD: Duration = Duration::from_secs(4);
/// Largest rendition downloaded.
const MAX_RENDITION: usize = 64 << 20;
/// One answered segment in this many, at random, has its renditions decoded; every other one
/// has its pictures counted from the bitstream, a small fraction of decoding's cost.
const DECODE_ONE_IN: u32 = 4;

/// The wire profile for one of the engine's outputs.
pub fn video_profile(p: &OutputProfile) -> VideoProfile {
    use lpe_core::spec::H264Profile;
    let (fps, fps_den) = p.fps.unwrap_or((0, 0));
    VideoProfile {
        name: p.name.clone(),
        width: p.width as i32,
        height: p.height as i32,
        bitrate: p.bitrate_bps.min(i32::MAX as u32) as i32,
        fps,
        fps_den,
        format: 0,
        profile: match p.profile {
            H264Profile::Baseline => 1,
            H264Profile::Main => 2,
            H264Profile::High => 3,
        },
        gop: p
            .gop
            .map(|g| g.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(0),
        encoder: 0,
        ..Default::default()
    }
}

/// Who signs the gateway's requests, segments and tickets.
pub enum Payer {
    /// This node's own key.
    Local(SigningKey),
    /// A node in the signer role, which holds the key and the deposit.
    Remote(RemoteSigner),
}

/// A stream's session with one orchestrator.
struct Session {
    uri: String,
    info: OrchestratorInfo,
    price: BigRational,
    /// The price when the session began: go-livepeer refuses to pay more than twice it.
    initial_price: BigRational,
    /// The ticket session when this node signs its own tickets (a remote signer keeps its own).
    tickets: Option<Tickets>,
    /// Segments whose renditions were verified.
    verified: u64,
}

struct Tickets {
    sender: Sender,
    pm_session: String,
    ev: BigRational,
    /// What the tickets sent bought and the work has not used yet.
    credit: BigRational,
}

/// A segment's headers, and what its tickets are worth.
struct Paid {
    segment: String,
    payment: String,
    tickets: u64,
    ev: BigRational,
}

/// Why a segment did not come back from the network.
struct Failure {
    message: String,
    /// The orchestrator's result failed verification: keep it out of the choice.
    block: bool,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            block: false,
        }
    }
    fn blocking(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            block: true,
        }
    }
}

#[derive(Default)]
struct StreamState {
    session: Option<Session>,
    retry_at: Option<Instant>,
    backoff: Option<Duration>,
}

/// Where the gateway finds orchestrators.
pub enum Orchestrators {
    /// `net.orchestrators`.
    Listed(Vec<String>),
    /// The BondingManager's pool with the URIs published in the ServiceRegistry, as an
    /// on-chain go-livepeer gateway discovers; read again every [`POOL_REFRESH`].
    OnChain(Arc<lpe_node::Node>),
}

/// How long the pool read from the chain is used before it is read again.
pub const POOL_REFRESH: Duration = Duration::from_secs(600);
/// The most pool entries read.
const POOL_LIMIT: usize = 200;

pub struct Gateway {
    payer: Payer,
    address: Address,
    orchestrators: Orchestrators,
    pool: tokio::sync::Mutex<Option<(Instant, Vec<String>)>>,
    discovery: Discovery,
    http: reqwest::Client,
    verifier: SegmentTranscoder,
    streams: Mutex<HashMap<String, StreamState>>,
    spend: Mutex<BTreeMap<String, OrchestratorSpend>>,
}

impl Gateway {
    /// A gateway paying through `payer`, choosing among `orchestrators` those at or below
    /// `max_price` (wei per pixel); `verifier` checks the renditions' pixels.
    pub async fn new(
        payer: Payer,
        orchestrators: Orchestrators,
        max_price: Option<BigRational>,
        verifier: SegmentTranscoder,
    ) -> Result<Self, String> {
        let request = match &payer {
            Payer::Local(key) => client::orchestrator_request(key, None),
            Payer::Remote(r) => r.orchestrator_request().await?,
        };
        let address = Address::try_from(request.address.as_slice())
            .map_err(|_| "a malformed gateway address".to_string())?;
        Ok(Self {
            discovery: Discovery::with_request(request, transcoding_capabilities(), max_price),
            payer,
            address,
            orchestrators,
            pool: tokio::sync::Mutex::new(None),
            http: client::http()?,
            verifier,
            streams: Mutex::default(),
            spend: Mutex::default(),
        })
    }

    /// The account that pays (this node's, or the remote signer's).
    pub fn address(&self) -> Address {
        self.address
    }

    fn take_state(&self, stream: &str) -> StreamState {
        self.streams
            .lock()
            .ok()
            .and_then(|mut s| s.remove(stream))
            .unwrap_or_default()
    }

    fn put_state(&self, stream: &str, state: StreamState) {
        if let Ok(mut s) = self.streams.lock() {
            s.insert(stream.to_string(), state);
        }
    }

    fn spend(&self, uri: &str, f: impl FnOnce(&mut OrchestratorSpend)) {
        if let Ok(mut s) = self.spend.lock() {
            let row = s
                .entry(uri.to_string())
                .or_insert_with(|| OrchestratorSpend {
                    orchestrator: uri.to_string(),
                    ..Default::default()
                });
            f(row);
        }
    }

    /// The URIs to ask: the list, or the pool on chain (cached).
    async fn candidates(&self) -> Result<Vec<String>, String> {
        let node = match &self.orchestrators {
            Orchestrators::Listed(uris) => return Ok(uris.clone()),
            Orchestrators::OnChain(node) => node,
        };
        let mut pool = self.pool.lock().await;
        if let Some((at, uris)) = pool.as_ref()
            && at.elapsed() < POOL_REFRESH
        {
            return Ok(uris.clone());
        }
        let chain = node
            .chain()
            .map_err(|e| format!("on-chain discovery: {e}"))?;
        let found = chain
            .orchestrator_pool(POOL_LIMIT)
            .await
            .map_err(|e| format!("on-chain discovery: {e}"))?;
        let uris: Vec<String> = found
            .into_iter()
            .map(|(_, uri)| uri)
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .collect();
        tracing::info!(
            orchestrators = uris.len(),
            "transcoder pool read from the chain"
        );
        *pool = Some((Instant::now(), uris.clone()));
        Ok(uris)
    }

    async fn discover(&self) -> Result<Option<Candidate>, String> {
        let uris = self.candidates().await?;
        let found = self.discovery.query(&uris, 1).await;
        Ok(Discovery::select(&found).cloned())
    }

    fn open(&self, c: Candidate) -> Result<Session, String> {
        let tickets = match &self.payer {
            Payer::Remote(_) => None,
            Payer::Local(key) => {
                let tp = c.info.ticket_params.as_ref().ok_or("no ticket params")?;
                let params = params_from_wire(tp).map_err(|e| e.to_string())?;
                let ev = lpe_pm::ticket::expected_value(params.face_value, params.win_prob);
                let mut sender = Sender::new(key.clone());
                let pm_session = sender.start_session(params, c.price.clone());
                Some(Tickets {
                    sender,
                    pm_session,
                    ev,
                    credit: BigRational::from_integer(0.into()),
                })
            }
        };
        Ok(Session {
            uri: c.uri,
            info: c.info,
            initial_price: c.price.clone(),
            price: c.price,
            tickets,
            verified: 0,
        })
    }

    /// Leaves a stream with no session and no new look for `backoff`: what stays behind if
    /// the media engine gives up on a segment (drops this future) while discovery or the
    /// segment is still under way.
    fn hold(&self, stream: &str, backoff: Duration) {
        self.put_state(
            stream,
            StreamState {
                session: None,
                retry_at: Some(Instant::now() + backoff),
                backoff: Some(backoff),
            },
        );
    }

    async fn offload(&self, job: SegmentJob) -> Result<Offloaded, String> {
        let state = self.take_state(&job.stream_id);
        let mut session = match state.session {
            Some(s) => s,
            None => {
                if let Some(at) = state.retry_at
                    && at > Instant::now()
                {
                    let wait = at.saturating_duration_since(Instant::now());
                    self.put_state(&job.stream_id, state);
                    return Err(format!(
                        "no orchestrator available; looking again in {} s",
                        wait.as_secs().max(1)
                    ));
                }
                let backoff = state
                    .backoff
                    .map_or(RETRY_FIRST, |b| (b * 2).min(RETRY_CAP));
                self.hold(&job.stream_id, backoff);
                match self.discover().await?.map(|c| self.open(c)) {
                    Some(Ok(s)) => s,
                    Some(Err(e)) => return Err(e),
                    None => return Err("no orchestrator answered acceptably".into()),
                }
            }
        };
        self.hold(&job.stream_id, RETRY_FIRST);
        match self.send(&mut session, &job).await {
            Ok(done) => {
                self.put_state(
                    &job.stream_id,
                    StreamState {
                        session: Some(session),
                        ..Default::default()
                    },
                );
                Ok(done)
            }
            Err(f) => {
                tracing::info!(stream = %job.stream_id, orchestrator = %session.uri, "segment failed: {}", f.message);
                self.spend(&session.uri, |s| {
                    s.failures += 1;
                    s.last_error = Some(f.message.clone());
                });
                if f.block {
                    self.discovery.block(&session.info, BLOCK);
                }
                self.end_session(session).await;
                Err(f.message)
            }
        }
    }

    /// The headers for a segment: credentials signed and tickets for its fee, by this node's
    /// key (with the credit bookkeeping of §2.5.6) or by the remote signer.
    async fn pay(
        &self,
        s: &mut Session,
        job: &SegmentJob,
        profiles: &[VideoProfile],
    ) -> Result<Paid, Failure> {
        let token = s
            .info
            .auth_token
            .clone()
            .ok_or_else(|| Failure::new("no auth token"))?;
        let seg = client::segment_data(
            SegmentInfo {
                manifest_id: job.stream_id.clone(),
                seq: job.seq as i64,
                duration_ms: job.duration.as_millis().min(i32::MAX as u128) as i32,
                profiles: profiles.to_vec(),
                auth_token: token,
                capabilities: transcoding_capabilities(),
            },
            &job.data,
        );
        let key = match &self.payer {
            Payer::Remote(r) => {
                let signed = r.sign_segment(&s.info, &seg).await.map_err(Failure::new)?;
                let ev = s
                    .info
                    .ticket_params
                    .as_ref()
                    .and_then(|tp| params_from_wire(tp).ok())
                    .map(|p| lpe_pm::ticket::expected_value(p.face_value, p.win_prob))
                    .unwrap_or_default();
                return Ok(Paid {
                    segment: signed.segment,
                    payment: signed.payment,
                    tickets: signed.tickets,
                    ev,
                });
            }
            Payer::Local(key) => key,
        };
        let t = s
            .tickets
            .as_mut()
            .ok_or_else(|| Failure::new("no ticket session"))?;
        let fee = estimated_fee(profiles, job.duration, &s.price);
        let (n, bought) = tickets_for_fee(&fee, &t.ev, &t.credit);
        let price_info = s.info.price_info.clone().unwrap_or_default();
        let payment = if n == 0 {
            Payment {
                sender: self.address.to_vec(),
                expected_price: Some(price_info),
                ..Default::default()
            }
        } else {
            let n = u32::try_from(n).map_err(|_| Failure::new("the fee needs too many tickets"))?;
            let batch = t
                .sender
                .create_batch(&t.pm_session, n)
                .map_err(|e| Failure::new(e.to_string()))?;
            payment_for_batch(&batch, &price_info)
        };
        t.credit += bought;
        Ok(Paid {
            segment: client::signed_segment(key, seg),
            payment: encode_payment_header(&payment),
            tickets: n,
            ev: t.ev.clone(),
        })
    }

    /// One segment through `session`: pay, send, download, verify, book the credit.
    async fn send(&self, s: &mut Session, job: &SegmentJob) -> Result<Offloaded, Failure> {
        let profiles: Vec<VideoProfile> = job.profiles.iter().map(video_profile).collect();
        if s.price > &s.initial_price * BigRational::from_integer(2.into()) {
            return Err(Failure::new(
                "Orchestrator price has more than doubled since the session began",
            ));
        }
        if let Some(max) = self.discovery.max_price()
            && s.price > *max
        {
            return Err(Failure::new(format!(
                "price {} above the maximum {}",
                lpe_pm::rational_string(&s.price),
                lpe_pm::rational_string(max)
            )));
        }
        let paid = self.pay(s, job, &profiles).await?;
        // Counted as spent once sent: answered or not, the tickets may have reached it.
        self.spend(&s.uri, |sp| {
            sp.segments += 1;
            sp.tickets += paid.tickets;
            sp.ev_spent_wei = lpe_pm::rational_string(
                &(sp.ev_spent_wei.parse::<BigRational>().unwrap_or_default()
                    + &paid.ev * BigRational::from_integer(paid.tickets.into())),
            );
            sp.price_wei_per_pixel = lpe_pm::rational_string(&s.price);
        });
        // Any failure ends the session, and its credit with it: what go-livepeer gives back
        // for a segment that got no answer matters only to a session that goes on.
        let (status, body) = client::post_segment(
            &self.http,
            &s.info.transcoder,
            &paid.segment,
            &paid.payment,
            job.data.as_ref().clone(),
        )
        .await
        .map_err(|e| Failure::new(format!("no answer: {e}")))?;
        if status != 200 {
            // The orchestrator's text, as much as a status line should show.
            let text: String = String::from_utf8_lossy(&body)
                .trim()
                .chars()
                .take(200)
                .collect();
            return Err(Failure::new(format!("{status} {text}")));
        }
        let result = TranscodeResult::decode(body.as_ref())
            .map_err(|e| Failure::new(format!("an unreadable TranscodeResult: {e}")))?;
        let data = match result.result {
            Some(TranscodeOutcome::Data(d)) => d,
            Some(TranscodeOutcome::Error(e)) => return Err(Failure::new(e)),
            None => return Err(Failure::new("UnknownResponse")),
        };
        if data.segments.len() != profiles.len() {
            return Err(Failure::blocking(format!(
                "{} renditions for {} profiles",
                data.segments.len(),
                profiles.len()
            )));
        }
        let mut renditions = Vec::with_capacity(data.segments.len());
        for seg in &data.segments {
            renditions.push(self.download(&seg.url).await?);
        }
        // go-livepeer checks against the refreshed info when there is one.
        let info = result.info.as_ref().unwrap_or(&s.info);
        self.check_signature(info, &renditions, &data.sig)?;
        // A session's first segment is always decoded, so an orchestrator whose renditions do
        // not decode is dropped at once; after it, the orchestrator cannot tell which are.
        let decode = s.verified == 0 || rand::random_ratio(1, DECODE_ONE_IN);
        let mut pixels = Vec::with_capacity(renditions.len());
        for (bytes, seg) in renditions.iter().zip(&data.segments) {
            let (verifier, bytes, reported) = (self.verifier.clone(), bytes.clone(), seg.pixels);
            let reported = u64::try_from(reported)
                .map_err(|_| Failure::blocking(format!("PixelMismatch: {reported} reported")))?;
            let verified = tokio::task::spawn_blocking(move || {
                verifier.verify_pixels(&bytes, reported, decode)
            })
            .await
            .map_err(|e| Failure::new(e.to_string()))?
            .map_err(|e| Failure::blocking(e.to_string()))?;
            pixels.push(verified);
        }
        s.verified += 1;
        let used: u64 = pixels.iter().sum();
        if let Some(t) = s.tickets.as_mut() {
            t.credit -= &s.price * BigRational::from_integer(used.into());
        }
        self.spend(&s.uri, |sp| sp.pixels += used);
        if let Some(info) = result.info {
            self.adopt(s, info);
        }
        Ok(Offloaded {
            renditions,
            pixels,
            by: s.uri.clone(),
        })
    }

    /// Takes an orchestrator's refreshed info: new ticket params are a new ticket session
    /// (nonces restart); a new auth session starts without credit.
    fn adopt(&self, s: &mut Session, info: OrchestratorInfo) {
        let params = info
            .ticket_params
            .as_ref()
            .and_then(|tp| params_from_wire(tp).ok());
        let price = info
            .price_info
            .as_ref()
            .and_then(|p| price_from_info(p.price_per_unit, p.pixels_per_unit));
        let (Some(params), Some(price)) = (params, price) else {
            return;
        };
        let same_session = info.auth_token.as_ref().map(|t| &t.session_id)
            == s.info.auth_token.as_ref().map(|t| &t.session_id);
        if let Some(t) = s.tickets.as_mut() {
            if !same_session {
                t.credit = BigRational::from_integer(0.into());
            }
            t.sender.end_session(&t.pm_session);
            t.ev = lpe_pm::ticket::expected_value(params.face_value, params.win_prob);
            t.pm_session = t.sender.start_session(params, price.clone());
        }
        s.price = price;
        s.info = info;
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>, Failure> {
        let res = self
            .http
            .get(url)
            .timeout(DOWNLOAD)
            .send()
            .await
            .map_err(|e| Failure::new(format!("download {url}: {e}")))?;
        if !res.status().is_success() {
            return Err(Failure::new(format!("download {url}: {}", res.status())));
        }
        client::bounded_body(res, MAX_RENDITION)
            .await
            .map_err(|e| match e {
                client::BodyError::TooLarge(_) => Failure::blocking(format!("{url}: {e}")),
                client::BodyError::Read(_) => Failure::new(format!("download {url}: {e}")),
            })
    }

    /// `TranscodeData.sig` against the orchestrator's address (the ticket recipient when the
    /// address is all zeros; unchecked when absent, as go-livepeer does).
    fn check_signature(
        &self,
        info: &OrchestratorInfo,
        renditions: &[Vec<u8>],
        sig: &[u8],
    ) -> Result<(), Failure> {
        let address = if info.address.is_empty() {
            return Ok(());
        } else if info.address.iter().all(|b| *b == 0) {
            info.ticket_params
                .as_ref()
                .map(|t| t.recipient.clone())
                .unwrap_or_default()
        } else {
            info.address.clone()
        };
        let address = Address::try_from(address.as_slice())
            .map_err(|_| Failure::blocking("a malformed orchestrator address"))?;
        let digest = creds::transcoded_digest(renditions.iter().map(Vec::as_slice));
        sig::verify(address, digest.as_slice(), sig)
            .map_err(|_| Failure::blocking("PM Check Failed: the renditions' signature"))
    }

    async fn end_session(&self, s: Session) {
        let token = s.info.auth_token.clone();
        let ending = async {
            let ch = client::connect(&s.info.transcoder).await?;
            client::end_transcoding_session(ch, token)
                .await
                .map_err(|e| e.message().to_string())
        };
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), ending).await {
            tracing::debug!(orchestrator = %s.uri, "EndTranscodingSession: {e}");
        }
    }
}

impl Offload for Gateway {
    fn transcode(&self, job: SegmentJob) -> BoxFuture<'_, Result<Offloaded, String>> {
        Box::pin(self.offload(job))
    }

    fn end(&self, stream_id: &str) -> BoxFuture<'_, ()> {
        let state = self.take_state(stream_id);
        Box::pin(async move {
            if let Some(s) = state.session {
                self.end_session(s).await;
            }
        })
    }

    fn spend(&self) -> Vec<OrchestratorSpend> {
        self.spend
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Runs the gateway while the node runs: unlocks the account, installs the gateway in the
/// media engine for offloaded streams, and removes it at shutdown.
pub async fn run(
    node: Arc<lpe_node::Node>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let net = node.cfg.net.clone();
    let payer = if net.remote_signer_url.is_empty() {
        let key = lpe_node::payments::unlock_account(&node.cfg)
            .await
            .map_err(|e| format!("the gateway {e}"))?;
        Payer::Local(key)
    } else {
        let token = lpe_node::config::secret(&net.signer_token_file, crate::signer::TOKEN_ENV)?;
        Payer::Remote(RemoteSigner::new(&net.remote_signer_url, token)?)
    };
    let orchestrators = if net.orchestrators.is_empty() {
        Orchestrators::OnChain(Arc::clone(&node))
    } else {
        Orchestrators::Listed(net.orchestrators.clone())
    };
    let gateway = Gateway::new(
        payer,
        orchestrators,
        crate::fee::max_price(net.max_price_per_unit, net.max_price_pixels_per_unit),
        node.segment_transcoder(),
    )
    .await?;
    tracing::info!(
        address = %gateway.address(),
        orchestrators = if net.orchestrators.is_empty() { "on chain".to_string() } else { net.orchestrators.join(", ") },
        "gateway ready for offloaded streams"
    );
    node.set_offload(Some(Arc::new(gateway)));
    let _ = stop.wait_for(|v| *v).await;
    node.set_offload(None);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_go_out_as_go_livepeer_reads_them() {
        let p = OutputProfile {
            name: "720p".into(),
            width: 1280,
            height: 720,
            bitrate_bps: 3_000_000,
            fps: Some((30, 1)),
            gop: None,
            profile: lpe_core::spec::H264Profile::Main,
        };
        let v = video_profile(&p);
        assert_eq!(
            (v.width, v.height, v.bitrate, v.fps, v.fps_den),
            (1280, 720, 3_000_000, 30, 1)
        );
        assert_eq!((v.profile, v.format, v.encoder, v.gop), (2, 0, 0, 0));
        let back = crate::request::output_profile(&v).expect("reads back");
        assert_eq!(
            (back.width, back.height, back.fps),
            (1280, 720, Some((30, 1)))
        );
    }
}
