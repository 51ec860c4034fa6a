//! The orchestrator's side of go-livepeer's protocol: `GetOrchestrator`, `Ping` and
//! `EndTranscodingSession` (gRPC), `POST /segment`, `POST /payment` and rendition downloads
//! (HTTP), with go-livepeer's checks in its order and its status codes and texts
//! (`livepeer-wire.md` §2.3–2.6) — except where its behaviour is unsafe (§2.9): a payment
//! without tickets credits nothing and work is charged at this node's price, not the price a
//! gateway claims.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use lpe_core::admission::RateLimit;
use lpe_node::Node;
use lpe_node::command::{Actor, Command, CommandError, Envelope, Outcome, Reply};
use lpe_node::views::{OutputProfile, PaymentError, SegmentTranscoder};
use lpe_pm::Address;
use lpe_pm::wire::Payment;
use prost::Message;

use crate::creds::{self, TokenKey};
use crate::proto::{
    AuthToken, Capabilities, OrchestratorInfo, OrchestratorRequest, PaymentResult, PingPong,
    PriceInfo, TranscodeData, TranscodeOutcome, TranscodeResult, TranscodedSegmentData, capability,
};
use crate::remote::{RemoteRendition, RemoteTranscoders};
use crate::request::{self, Checked, Refusal, plain};
use crate::sessions::{self, Sessions};

/// An auth token's life (go-livepeer: 30 min).
const TOKEN_LIFE_SECONDS: i64 = 30 * 60;

pub struct Settings {
    /// Without a trailing slash: gateways append `/segment`.
    pub service_uri: String,
    pub max_sessions: usize,
    pub max_segment_bytes: usize,
    /// What remote transcoders must present to attach; none: they are refused.
    pub transcoder_secret: Option<String>,
}

/// Per-address request rates: anyone may call the orchestrator's routes.
pub struct PeerRates {
    /// A gateway asks for info at start, on refresh and every 25 minutes.
    pub discovery: RateLimit,
    /// A segment or payment every 2 s per stream: 50 a second is many streams.
    pub work: RateLimit,
}

pub struct OrchestratorService {
    pub rates: PeerRates,
    /// Segments transcoded here at once (one per core): the rest wait their turn, so memory
    /// stays bounded however many sessions run.
    work: tokio::sync::Semaphore,
    pub remote: Arc<RemoteTranscoders>,
    node: Arc<Node>,
    settings: Settings,
    tokens: TokenKey,
    sessions: Sessions,
    capabilities: Capabilities,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::fill(&mut b);
    b
}

impl OrchestratorService {
    pub fn new(node: Arc<Node>, settings: Settings) -> Self {
        let mut capabilities = Capabilities::from_ids(capability::TRANSCODING);
        capabilities.version = env!("CARGO_PKG_VERSION").to_string();
        capabilities.constraints = Some(Default::default());
        Self {
            rates: PeerRates {
                discovery: RateLimit::new(10, 20),
                work: RateLimit::new(50, 100),
            },
            remote: Arc::new(RemoteTranscoders::new(settings.transcoder_secret.clone())),
            work: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            ),
            node,
            settings,
            tokens: TokenKey::new(random_bytes()),
            sessions: Sessions::default(),
            capabilities,
        }
    }

    pub fn max_segment_bytes(&self) -> usize {
        self.settings.max_segment_bytes
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    fn money(&self) -> Result<Arc<lpe_node::views::Orchestrator>, CommandError> {
        self.node.orchestrator()
    }

    /// This node's info for `sender`: fresh ticket params at this node's price, the given
    /// auth token, the capabilities; hardware only when the request asked with none.
    async fn info(&self, sender: Address, token: AuthToken) -> Result<OrchestratorInfo, String> {
        let money = self.money().map_err(|e| e.to_string())?;
        let (params, (ppu, ppx)) = money
            .ticket_params(sender)
            .await
            .map_err(|e| e.to_string())?;
        Ok(OrchestratorInfo {
            transcoder: self.settings.service_uri.clone(),
            ticket_params: Some(lpe_pm::wire::params_to_wire(&params)),
            price_info: Some(PriceInfo {
                price_per_unit: ppu,
                pixels_per_unit: ppx,
                capability: 0,
                constraint: String::new(),
            }),
            address: money.address().to_vec(),
            capabilities: Some(self.capabilities.clone()),
            auth_token: Some(token),
            ..Default::default()
        })
    }

    /// `GetOrchestrator` (§2.3.1): signature, capacity, then the info with a new session.
    pub async fn get_orchestrator(
        &self,
        req: OrchestratorRequest,
    ) -> Result<OrchestratorInfo, tonic::Status> {
        let addr = creds::request_address(&req.address);
        if lpe_pm::sig::verify(addr, creds::request_message(addr).as_slice(), &req.sig).is_err() {
            return Err(tonic::Status::unknown(
                "Invalid orchestrator request: orchestrator req sig check failed",
            ));
        }
        if self.sessions.live() >= self.settings.max_sessions {
            return Err(tonic::Status::unknown(
                "Invalid orchestrator request: OrchestratorCapped",
            ));
        }
        let session = hex::encode(random_bytes::<4>());
        let token = self.tokens.issue(session, now() + TOKEN_LIFE_SECONDS);
        self.info(addr, token).await.map_err(tonic::Status::unknown)
    }

    /// `Ping`: the value's keccak256, signed.
    pub fn ping(&self, req: PingPong) -> Result<PingPong, tonic::Status> {
        let money = self
            .money()
            .map_err(|e| tonic::Status::unknown(e.to_string()))?;
        Ok(PingPong {
            value: money
                .sign(lpe_pm::keccak256(&req.value).as_slice())
                .to_vec(),
        })
    }

    /// `EndTranscodingSession`: an authentic token (expired or not) ends its session.
    pub async fn end_session(&self, token: Option<&AuthToken>) -> Result<(), tonic::Status> {
        let t = self
            .tokens
            .authentic(token)
            .map_err(|_| tonic::Status::unknown("Invalid auth token"))?;
        if let Some(sender) = self.sessions.end(&t.session_id) {
            self.ended(sender, &t.session_id).await;
        }
        Ok(())
    }

    /// Ends idle sessions; run periodically.
    pub async fn sweep(&self) {
        for (id, sender) in self.sessions.sweep(sessions::IDLE) {
            tracing::debug!(session = %id, "transcoding session idle; ended");
            self.ended(sender, &id).await;
        }
    }

    /// A session ended: its transcoder is told and its balance forgotten.
    async fn ended(&self, sender: Address, session: &str) {
        self.remote.end_session(session);
        let command = Command::EndPeerSession {
            sender,
            session: session.to_string(),
        };
        if let Err(e) = self.run(&format!("{sender:#x}"), command).await {
            tracing::debug!(%session, "session balance not forgotten: {e}");
        }
    }

    /// A command from a peer (its address, or its account), run by the node.
    async fn run(&self, peer: &str, command: Command) -> Result<Outcome, CommandError> {
        let envelope = Envelope::once(
            Actor::Peer {
                address: peer.to_string(),
            },
            command,
        );
        match self.node.submit(envelope, |_| {}).await? {
            Reply::Ran(result) => result,
            Reply::Repeat(_) => Err(CommandError::Unavailable("a repeated command".into())),
        }
    }

    /// Steps 1–8 of §2.5.3, shared by `/segment` and `/payment`.
    fn check_headers(&self, headers: &HeaderMap) -> Result<Checked, Refusal> {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let c = request::check(
            text("Livepeer-Payment"),
            text("Livepeer-Segment"),
            &self.tokens,
            &self.capabilities,
            now(),
        )?;
        // 8. Room for the session.
        if !self
            .sessions
            .has_room_for(&c.token.session_id, self.settings.max_sessions)
        {
            return Err(Refusal::new(StatusCode::FORBIDDEN, "OrchestratorCapped"));
        }
        Ok(c)
    }

    /// Step 10: the payment through the node (winners durable before it returns).
    async fn take_payment(
        &self,
        peer: &str,
        payment: Payment,
        session: &str,
    ) -> Result<(), Refusal> {
        if payment.ticket_params.is_none() {
            return Ok(());
        }
        let command = Command::ReceivePayment {
            payment: Box::new(payment),
            session: session.to_string(),
        };
        match self.run(peer, command).await {
            Ok(Outcome::Payment(_)) => Ok(()),
            Err(e) => Err(payment_refusal(e)),
            Ok(_) => Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
            )),
        }
    }

    /// Steps 1–11 of `/segment`: the headers, the payment, the refreshed info, the credit.
    async fn admit(
        &self,
        peer: &str,
        headers: &HeaderMap,
    ) -> Result<(Checked, OrchestratorInfo), Response> {
        let c = self
            .check_headers(headers)
            .map_err(IntoResponse::into_response)?;
        let session = c.token.session_id.clone();
        // 10, then 9: the payment, then the refreshed info. go-livepeer makes the info first,
        // which reads the sender's state from the chain; taken first, a payment not made from
        // this node's params is refused before anything is looked up for its sender.
        if let Err(r) = self.take_payment(peer, c.payment.clone(), &session).await {
            return Err(r.into_response());
        }
        let info = match self.info(c.sender, c.token.clone()).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("cannot make ticket params: {e}");
                return Err(plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error",
                ));
            }
        };
        // 11. Enough credit for one ticket's worth of work, whatever the gateway claims the
        // price is (a ticketless payment cannot make the work free).
        if let Ok(money) = self.money() {
            let (ppu, _) = money.price_for(c.sender);
            if ppu > 0 && money.balance(c.sender, &session) < *money.ticket_ev() {
                return Err(plain(StatusCode::BAD_REQUEST, "Insufficient balance"));
            }
        }
        Ok((c, info))
    }

    /// `POST /segment` (§2.5.3).
    pub async fn segment(
        self: Arc<Self>,
        peer: String,
        headers: HeaderMap,
        body: Body,
    ) -> Response {
        let (c, info) = match self.admit(&peer, &headers).await {
            Ok(admitted) => admitted,
            Err(refusal) => {
                discard(body).await;
                return refusal;
            }
        };
        let session = c.token.session_id.clone();
        // 12. The body, bounded in size and in time: as long as a go-livepeer gateway waits
        // for the whole exchange (4 × the segment's duration, at least 8 s), at most 60 s.
        let limit = self.settings.max_segment_bytes;
        let duration = match c.seg.duration {
            d if d > 0 => Duration::from_millis(d as u64),
            _ => Duration::from_secs(2),
        };
        let deadline = (duration * 4).clamp(Duration::from_secs(8), Duration::from_secs(60));
        let data = match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
            Ok(Ok(d)) => d,
            Ok(Err(_)) | Err(_) => {
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
        };
        if headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == b"application/vnd+livepeer.uri")
        {
            // No external store is offered, so a gateway has no reason to send a URI.
            return plain(StatusCode::BAD_REQUEST, "BadRequest");
        }
        // 14. The hash.
        if creds::bytes_to_hash(&c.seg.hash) != *lpe_pm::keccak256(&data) {
            return plain(StatusCode::FORBIDDEN, "Forbidden");
        }
        // 15–17. 200 at once; the result follows when the work is done.
        let seq = c.seg.seq;
        let work = async move {
            let result = self
                .transcode(&session, c.sender, &c.seg, data, c.profiles, deadline)
                .await;
            let reply = TranscodeResult {
                seq,
                result: Some(result),
                info: Some(info),
            };
            Ok::<_, std::convert::Infallible>(Bytes::from(reply.encode_to_vec()))
        };
        // A one-item body: the headers go out now, the result when the work is done.
        Response::new(Body::from_stream(futures::stream::once(work)))
    }

    async fn transcode(
        &self,
        session: &str,
        sender: Address,
        seg: &crate::proto::SegData,
        data: Bytes,
        profiles: Vec<OutputProfile>,
        deadline: Duration,
    ) -> TranscodeOutcome {
        let seq = seg.seq;
        let (turn, waiting) = match self
            .sessions
            .open(session, sender, self.settings.max_sessions)
        {
            Ok(s) => s,
            Err(_) => return TranscodeOutcome::Error("OrchestratorCapped".into()),
        };
        use std::sync::atomic::Ordering;
        if waiting.fetch_add(1, Ordering::SeqCst) >= sessions::QUEUE {
            waiting.fetch_sub(1, Ordering::SeqCst);
            return TranscodeOutcome::Error("OrchestratorBusy".into());
        }
        let _turn = turn.lock().await;
        waiting.fetch_sub(1, Ordering::SeqCst);
        let names: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
        let renditions = match self
            .remote_transcode(session, seg, data.clone(), profiles.len(), deadline)
            .await
        {
            Some(r) => r,
            None => {
                let Ok(_slot) = self.work.acquire().await else {
                    return TranscodeOutcome::Error("OrchestratorBusy".into());
                };
                let transcoder: SegmentTranscoder = self.node.segment_transcoder();
                let done =
                    tokio::task::spawn_blocking(move || transcoder.transcode(&data, &profiles))
                        .await;
                match done {
                    Ok(Ok(t)) => t
                        .renditions
                        .into_iter()
                        .map(|r| RemoteRendition {
                            data: Bytes::from(r.data),
                            pixels: r.pixels,
                        })
                        .collect(),
                    Ok(Err(e)) => return TranscodeOutcome::Error(e.to_string()),
                    Err(_) => return TranscodeOutcome::Error("transcoding failed".into()),
                }
            }
        };
        let pixels: u64 = renditions.iter().map(|r| r.pixels).sum();
        let charge = Command::ChargeWork {
            sender,
            session: session.to_string(),
            pixels,
        };
        if let Err(e) = self.run(&format!("{sender:#x}"), charge).await {
            return TranscodeOutcome::Error(e.to_string());
        }
        let Ok(money) = self.money() else {
            return TranscodeOutcome::Error("payments are not running".into());
        };
        if renditions.iter().any(|r| r.data.len() < 25) {
            return TranscodeOutcome::Error("ZeroSegments".into());
        }
        let digest = creds::transcoded_digest(renditions.iter().map(|r| r.data.as_ref()));
        let mut segments = Vec::with_capacity(renditions.len());
        for (name, r) in names.iter().zip(renditions) {
            let file = format!("{seq}.ts");
            segments.push(TranscodedSegmentData {
                url: format!(
                    "{}/stream/{session}/{name}/{file}",
                    self.settings.service_uri
                ),
                pixels: i64::try_from(r.pixels).unwrap_or(i64::MAX),
                perceptual_hash_url: String::new(),
            });
            self.sessions.keep(session, name, file, r.data);
        }
        TranscodeOutcome::Data(TranscodeData {
            segments,
            sig: money.sign(digest.as_slice()).to_vec(),
        })
    }

    /// The segment on a remote transcoder, when one is attached and answers in time with a
    /// rendition per profile; `None`: transcode it here. The input is served to it from this
    /// session's store at `/stream/<session>/<seq>.tempfile`.
    async fn remote_transcode(
        &self,
        session: &str,
        seg: &crate::proto::SegData,
        data: Bytes,
        profiles: usize,
        deadline: Duration,
    ) -> Option<Vec<RemoteRendition>> {
        if self.remote.attached() == 0 {
            return None;
        }
        let file = format!("{}.tempfile", seg.seq);
        self.sessions.keep(session, "", file.clone(), data);
        let url = format!("{}/stream/{session}/{file}", self.settings.service_uri);
        // The transcoder sees the gateway's metadata without its hash and signature.
        let task = crate::proto::SegData {
            hash: vec![0; 32],
            sig: Vec::new(),
            duration: if seg.duration > 0 { seg.duration } else { 2000 },
            ..seg.clone()
        };
        let orch_id = self
            .money()
            .map(|m| m.address().to_checksum(None))
            .unwrap_or_else(|_| "offchain".into());
        match self
            .remote
            .transcode(session, url, task, orch_id, deadline)
            .await?
        {
            Ok(r) if r.len() == profiles => Some(r),
            Ok(r) => {
                tracing::warn!(
                    "remote transcoder returned {} renditions for {profiles} profiles; transcoding here",
                    r.len()
                );
                None
            }
            Err(e) => {
                tracing::warn!("remote transcoder failed ({e}); transcoding here");
                None
            }
        }
    }

    /// `POST /payment` (§2.6.1): credit without work, answered with refreshed info.
    pub async fn payment(self: Arc<Self>, peer: String, headers: HeaderMap) -> Response {
        let c = match self.check_headers(&headers) {
            Ok(c) => c,
            Err(r) => return r.into_response(),
        };
        // Credited to the manifest the gateway names, as go-livepeer does (its session id
        // when it names none); taken before the refreshed info is made, as on /segment.
        let manifest = match String::from_utf8(c.seg.manifest_id.clone()) {
            Ok(m) if !m.is_empty() => m,
            _ => c.token.session_id.clone(),
        };
        if let Err(r) = self.take_payment(&peer, c.payment, &manifest).await {
            return r.into_response();
        }
        let info = match self.info(c.sender, c.token.clone()).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("cannot make ticket params: {e}");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
        };
        (
            StatusCode::OK,
            PaymentResult { info: Some(info) }.encode_to_vec(),
        )
            .into_response()
    }

    /// `GET /stream/{session}/{rendition}/{file}`.
    pub fn rendition(&self, session: &str, rendition: &str, file: &str) -> Response {
        match self.sessions.rendition(session, rendition, file) {
            Some(data) => (
                [
                    (header::CONTENT_TYPE, "video/mp2t"),
                    (header::CACHE_CONTROL, "max-age=5"),
                ],
                data,
            )
                .into_response(),
            None => plain(StatusCode::NOT_FOUND, "ErrNotFound"),
        }
    }
}

fn payment_refusal(e: CommandError) -> Refusal {
    match e {
        CommandError::Payment(PaymentError::Rejected { message, .. })
        | CommandError::Payment(PaymentError::Malformed(message)) => {
            Refusal::new(StatusCode::BAD_REQUEST, message)
        }
        CommandError::Payment(PaymentError::Storage(e)) => {
            // Nothing of the payment was taken; the gateway may pay again later.
            tracing::error!("payment refused, storage failed: {e}");
            Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
        }
        other => Refusal::new(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}

/// Reads and drops what is left of a refused request's body (up to 1 MiB, for at most 2 s), so
/// a gateway still writing its segment reads the refusal instead of a reset connection.
async fn discard(body: Body) {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut left: usize = 1 << 20;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while left > 0 {
            match body.frame().await {
                Some(Ok(frame)) => {
                    let n = frame.data_ref().map_or(0, |d| d.len());
                    left = left.saturating_sub(n.max(1));
                }
                _ => return,
            }
        }
    })
    .await;
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            service_uri: String::new(),
            max_sessions: 10,
            max_segment_bytes: 32 << 20,
            transcoder_secret: None,
        }
    }
}
