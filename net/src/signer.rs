//! Signing without a hot wallet: a node in the `signer` role holds the key and the deposit,
//! and gateways that hold no key ask it to sign for them.
//!
//! Routes, plain HTTP on `net.listen` as go-livepeer's remote signer serves them (§2.7):
//! - `POST /sign-orchestrator-info` — go-livepeer's: the GetOrchestrator signature, as
//!   `{"address":"0x…","signature":"0x…"}`.
//! - `POST /generate-live-payment` — go-livepeer's: live payments for a go-livepeer gateway
//!   without a key (`live_payment`).
//! - `POST /sign-segment` — this project's own, because go-livepeer's signer can only pay for
//!   live video (its segment credentials always cover an empty segment). Body
//!   `{"orchestrator":"<base64 OrchestratorInfo>","segment":"<base64 SegData, unsigned>"}`;
//!   answer `{"segment":"<Livepeer-Segment>","payment":"<Livepeer-Payment>","tickets":n}`.
//!   The signer prices the segment with go-livepeer's fee estimate (§2.5.6) at the
//!   orchestrator's price, sends tickets for what its credit with that orchestrator session
//!   does not cover, and books the estimate as spent (it never sees the renditions, so it
//!   cannot book the exact pixels; the estimate's 2 % margin is what that costs).
//!
//! Every route wants `Authorization: Bearer <token>` when a token is configured; the node
//! refuses to serve on a non-loopback address without one (as go-livepeer's signer does since
//! unauthenticated signers were fixed). Its state — ticket sessions and credit — lives in
//! memory, bounded, and idle sessions are forgotten after ten minutes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lpe_pm::balance::tickets_for_fee;
use lpe_pm::recipient::{price_from_info, session_id};
use lpe_pm::sender::Sender;
use lpe_pm::sig::{self, SigningKey};
use lpe_pm::wire::{encode_payment_header, params_from_wire, payment_for_batch};
use lpe_pm::{Address, BigRational};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::client;
use crate::fee::estimated_fee;
use crate::proto::{OrchestratorInfo, OrchestratorRequest, Payment, SegData};
use crate::refusal::{MAX_TICKETS, Refusal};

/// Ticket sessions (one per orchestrator session) kept at once.
const MAX_SESSIONS: usize = 10_000;
/// An idle session is forgotten after this.
const IDLE: Duration = Duration::from_secs(600);
/// Largest request body.
pub const MAX_BODY: usize = 256 * 1024;

/// The token gateways present, from `net.signer_token_file` or this variable.
pub const TOKEN_ENV: &str = "LPE_NET_SIGNER_TOKEN";

/// One orchestrator session's account at the signer.
struct Account {
    /// The ticket session (the params' recipientRandHash) whose nonces the sender tracks.
    pm_session: String,
    credit: BigRational,
    initial_price: BigRational,
    used: Instant,
}

pub struct Signer {
    key: SigningKey,
    token: Option<String>,
    max_price: Option<BigRational>,
    /// Where the chain's latest L1 block is read (live payments refuse expired params).
    node: Option<Arc<lpe_node::Node>>,
    /// The last L1 block read, and when.
    l1_block: tokio::sync::Mutex<Option<(Instant, lpe_pm::U256)>>,
    sender: Mutex<Sender>,
    /// Keyed by (recipient, auth session id).
    accounts: Mutex<HashMap<(Address, String), Account>>,
}

#[derive(Serialize, Deserialize)]
pub struct OrchestratorInfoSignature {
    pub address: String,
    pub signature: String,
}

#[derive(Serialize, Deserialize)]
pub struct SegmentRequest {
    /// Base64 protobuf `OrchestratorInfo`, as the orchestrator last sent it.
    pub orchestrator: String,
    /// Base64 protobuf `SegData` without its signature.
    pub segment: String,
}

#[derive(Serialize, Deserialize)]
pub struct SignedSegment {
    /// The `Livepeer-Segment` header.
    pub segment: String,
    /// The `Livepeer-Payment` header.
    pub payment: String,
    pub tickets: u64,
}

fn bad(text: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, text.into())
}

impl Signer {
    pub fn new(key: SigningKey, token: Option<String>, max_price: Option<BigRational>) -> Self {
        Self {
            sender: Mutex::new(Sender::new(key.clone())),
            key,
            token,
            max_price,
            node: None,
            l1_block: Default::default(),
            accounts: Mutex::default(),
        }
    }

    /// Reads the chain through `node` (once it is reachable) to tell expired ticket params.
    pub fn with_chain(mut self, node: Arc<lpe_node::Node>) -> Self {
        self.node = Some(node);
        self
    }

    /// The chain's latest L1 block, read at most every few seconds; `None` while the chain
    /// cannot be read (the orchestrator still refuses expired params itself).
    async fn l1_block(&self) -> Option<lpe_pm::U256> {
        const FRESH: Duration = Duration::from_secs(5);
        let mut cached = self.l1_block.lock().await;
        if let Some((at, block)) = *cached
            && at.elapsed() < FRESH
        {
            return Some(block);
        }
        let chain = self.node.as_ref()?.chain().ok()?;
        let (_, l1) = tokio::time::timeout(FRESH, chain.latest_block())
            .await
            .ok()?
            .ok()?;
        *cached = Some((Instant::now(), l1));
        Some(l1)
    }

    pub fn address(&self) -> Address {
        sig::address_of(self.key.verifying_key())
    }

    fn authorised(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if lpe_core::secret::same_secret(given, token) {
            Ok(())
        } else {
            Err(Refusal::new(StatusCode::UNAUTHORIZED, "unauthorized"))
        }
    }

    /// Signs `seg` and pays for it at `info`'s price.
    pub fn sign_segment(
        &self,
        info: &OrchestratorInfo,
        mut seg: SegData,
    ) -> Result<SignedSegment, Refusal> {
        let price_info = info
            .price_info
            .clone()
            .filter(|p| p.price_per_unit > 0 && p.pixels_per_unit > 0)
            .ok_or_else(|| bad("missing or zero priceInfo"))?;
        let price = price_from_info(price_info.price_per_unit, price_info.pixels_per_unit)
            .ok_or_else(|| bad("missing or zero priceInfo"))?;
        let tp = info
            .ticket_params
            .as_ref()
            .ok_or_else(|| bad("missing ticketParams in OrchestratorInfo"))?;
        let params = params_from_wire(tp).map_err(|e| bad(e.to_string()))?;
        let token = info
            .auth_token
            .clone()
            .ok_or_else(|| bad("missing auth token in OrchestratorInfo"))?;
        if seg.auth_token.as_ref() != Some(&token) {
            return Err(bad("the segment's auth token is not the orchestrator's"));
        }
        if seg.full_profiles.is_empty() || seg.full_profiles.len() > 16 {
            return Err(bad("a segment needs 1 to 16 profiles"));
        }
        if seg.duration <= 0 || seg.duration > 300_000 {
            return Err(bad("invalid duration"));
        }
        if seg.hash.len() != 32 {
            return Err(bad("the segment hash must be 32 bytes"));
        }
        if let Some(max) = &self.max_price
            && price > *max
        {
            return Err(Refusal::new(
                StatusCode::from_u16(481).unwrap_or(StatusCode::BAD_REQUEST),
                format!(
                    "price {} above the maximum {}",
                    lpe_pm::rational_string(&price),
                    lpe_pm::rational_string(max)
                ),
            ));
        }
        let fee = estimated_fee(
            &seg.full_profiles,
            Duration::from_millis(seg.duration as u64),
            &price,
        );
        let ev = lpe_pm::ticket::expected_value(params.face_value, params.win_prob);
        let key = (params.recipient, token.session_id.clone());
        let pm_session = session_id(params.recipient_rand_hash);
        let mut accounts = self
            .accounts
            .lock()
            .map_err(|_| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "poisoned"))?;
        let mut sender = self
            .sender
            .lock()
            .map_err(|_| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "poisoned"))?;
        let now = Instant::now();
        accounts.retain(|_, a| {
            let keep = now.duration_since(a.used) < IDLE;
            if !keep {
                sender.end_session(&a.pm_session);
            }
            keep
        });
        if !accounts.contains_key(&key) && accounts.len() >= MAX_SESSIONS {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many sessions",
            ));
        }
        let account = accounts.entry(key).or_insert_with(|| Account {
            pm_session: String::new(),
            credit: BigRational::from_integer(0.into()),
            initial_price: price.clone(),
            used: now,
        });
        if price > &account.initial_price * BigRational::from_integer(2.into()) {
            return Err(Refusal::new(
                StatusCode::from_u16(481).unwrap_or(StatusCode::BAD_REQUEST),
                "Orchestrator price has more than doubled",
            ));
        }
        // New ticket params (every refreshed info has them) start a new ticket session.
        if account.pm_session != pm_session {
            sender.end_session(&account.pm_session);
            account.pm_session = sender.start_session(params, price.clone());
        }
        let (n, bought) = tickets_for_fee(&fee, &ev, &account.credit);
        if n > MAX_TICKETS {
            return Err(bad(format!("the segment would cost {n} tickets")));
        }
        let payment = if n == 0 {
            Payment {
                sender: self.address().to_vec(),
                expected_price: Some(price_info),
                ..Default::default()
            }
        } else {
            let batch = sender
                .create_batch(&account.pm_session, n as u32)
                .map_err(|e| bad(e.to_string()))?;
            payment_for_batch(&batch, &price_info)
        };
        account.credit = &account.credit + bought - fee;
        account.used = now;
        seg.sig.clear();
        Ok(SignedSegment {
            segment: client::signed_segment(&self.key, seg),
            payment: encode_payment_header(&payment),
            tickets: n,
        })
    }
}

async fn sign_orchestrator_info(
    State(signer): State<Arc<Signer>>,
    headers: HeaderMap,
) -> Result<Json<OrchestratorInfoSignature>, Refusal> {
    signer.authorised(&headers)?;
    let req = client::orchestrator_request(&signer.key, None);
    Ok(Json(OrchestratorInfoSignature {
        address: signer.address().to_string(),
        signature: format!("0x{}", hex::encode(req.sig)),
    }))
}

async fn sign_segment(
    State(signer): State<Arc<Signer>>,
    headers: HeaderMap,
    body: Result<Json<SegmentRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SignedSegment>, Refusal> {
    signer.authorised(&headers)?;
    let Json(req) = body.map_err(|e| bad(e.body_text()))?;
    let info = STANDARD
        .decode(req.orchestrator.as_bytes())
        .ok()
        .and_then(|b| OrchestratorInfo::decode(b.as_slice()).ok())
        .ok_or_else(|| bad("orchestrator: not a base64 OrchestratorInfo"))?;
    let seg = STANDARD
        .decode(req.segment.as_bytes())
        .ok()
        .and_then(|b| SegData::decode(b.as_slice()).ok())
        .ok_or_else(|| bad("segment: not a base64 SegData"))?;
    signer.sign_segment(&info, seg).map(Json)
}

async fn generate_live_payment(
    State(signer): State<Arc<Signer>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<crate::live_payment::LivePaymentResponse>, Refusal> {
    signer.authorised(&headers)?;
    let req = crate::live_payment::decode_request(&body)?;
    let l1_block = signer.l1_block().await;
    crate::live_payment::generate(
        &signer.key,
        signer.max_price.as_ref(),
        &headers,
        req,
        l1_block,
        time::OffsetDateTime::now_utc(),
    )
    .map(Json)
}

/// The signer's routes.
pub fn router(signer: Arc<Signer>) -> axum::Router {
    use axum::routing::post;
    axum::Router::new()
        .route("/sign-orchestrator-info", post(sign_orchestrator_info))
        .route("/sign-segment", post(sign_segment))
        .route("/generate-live-payment", post(generate_live_payment))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(signer)
}

/// A gateway's connection to a signer.
pub struct RemoteSigner {
    url: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl RemoteSigner {
    pub fn new(url: &str, token: Option<String>) -> Result<Self, String> {
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            token,
            http: client::http()?,
        })
    }

    async fn post<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        route: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, String> {
        let mut req = self
            .http
            .post(format!("{}{route}", self.url))
            .timeout(timeout)
            .json(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.map_err(|e| format!("signer: {e}"))?;
        let status = res.status();
        let bytes = client::bounded_body(res, MAX_BODY)
            .await
            .map_err(|e| format!("signer: {e}"))?;
        if !status.is_success() {
            let text = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(format!("signer: {} {text}", status.as_u16()));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("signer: {e}"))
    }

    /// The GetOrchestrator request signed by the signer's key (asked once, at start).
    pub async fn orchestrator_request(&self) -> Result<OrchestratorRequest, String> {
        let r: OrchestratorInfoSignature = self
            .post("/sign-orchestrator-info", &(), Duration::from_secs(30))
            .await?;
        let address: Address = r
            .address
            .parse()
            .map_err(|_| "signer: a malformed address".to_string())?;
        let sig = hex::decode(r.signature.trim_start_matches("0x"))
            .map_err(|_| "signer: a malformed signature".to_string())?;
        let signer = sig::recover(crate::creds::request_message(address).as_slice(), &sig).ok();
        if signer != Some(address) {
            return Err("signer: the signature is not the address's".into());
        }
        Ok(OrchestratorRequest {
            address: address.to_vec(),
            sig,
            capabilities: None,
            ignore_capacity_check: false,
        })
    }

    /// `seg` signed and paid for at `info`'s price.
    pub async fn sign_segment(
        &self,
        info: &OrchestratorInfo,
        seg: &SegData,
    ) -> Result<SignedSegment, String> {
        let req = SegmentRequest {
            orchestrator: STANDARD.encode(info.encode_to_vec()),
            segment: STANDARD.encode(seg.encode_to_vec()),
        };
        self.post("/sign-segment", &req, Duration::from_secs(5))
            .await
    }
}

/// Serves the signer role on `tcp` until shutdown: unlocks the account (the keystore's key
/// derivation runs here, once), and refuses a non-loopback address without a token.
pub async fn start(
    node: Arc<lpe_node::Node>,
    tcp: tokio::net::TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let net = &node.cfg.net;
    let token = lpe_node::config::secret(&net.signer_token_file, TOKEN_ENV)?;
    if token.is_none() && !net.listen.ip().is_loopback() {
        return Err(format!(
            "the signer would serve {} without authentication: set net.signer_token_file or {TOKEN_ENV}, or listen on a loopback address",
            net.listen
        ));
    }
    let key = lpe_node::payments::unlock_account(&node.cfg)
        .await
        .map_err(|e| format!("the signer {e}"))?;
    let signer = Arc::new(
        Signer::new(
            key,
            token,
            crate::fee::max_price(net.max_price_per_unit, net.max_price_pixels_per_unit),
        )
        .with_chain(Arc::clone(&node)),
    );
    tracing::info!(address = %signer.address(), listen = %net.listen, "signing for gateways");
    let limits = lpe_http::Limits {
        connections: lpe_core::admission::ConnectionLimits {
            total: 512,
            per_address: 64,
        },
        header_timeout: Duration::from_secs(20),
    };
    let stop = async move {
        let _ = shutdown.wait_for(|v| *v).await;
    };
    Ok(tokio::spawn(lpe_http::serve(
        tcp,
        router(signer),
        limits,
        stop,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{AuthToken, PriceInfo, TicketParams, VideoProfile};

    fn key(b: u8) -> SigningKey {
        SigningKey::from_slice(&[b; 32]).expect("key")
    }

    /// An orchestrator's info with ticket params whose EV is `ev` wei (faceValue 1000 × ev,
    /// winProb 1/1000).
    fn info(price: i64) -> OrchestratorInfo {
        let max = lpe_pm::U256::MAX;
        let win_prob = max / lpe_pm::U256::from(1000u32);
        OrchestratorInfo {
            transcoder: "http://o.example:8935".into(),
            ticket_params: Some(TicketParams {
                recipient: vec![7; 20],
                face_value: lpe_pm::minbytes(lpe_pm::U256::from(1_000_000_000u64)),
                win_prob: lpe_pm::minbytes(win_prob),
                recipient_rand_hash: vec![9; 32],
                seed: vec![1],
                expiration_block: lpe_pm::minbytes(lpe_pm::U256::from(100u32)),
                expiration_params: Some(Default::default()),
            }),
            price_info: Some(PriceInfo {
                price_per_unit: price,
                pixels_per_unit: 1,
                ..Default::default()
            }),
            address: vec![7; 20],
            auth_token: Some(AuthToken {
                token: vec![1; 32],
                session_id: "abcd1234".into(),
                expiration: 4_000_000_000,
            }),
            ..Default::default()
        }
    }

    fn segment(info: &OrchestratorInfo) -> SegData {
        client::segment_data(
            client::SegmentInfo {
                manifest_id: "stream".into(),
                seq: 0,
                duration_ms: 2000,
                profiles: vec![VideoProfile {
                    name: "p".into(),
                    width: 100,
                    height: 100,
                    fps: 30,
                    ..Default::default()
                }],
                auth_token: info.auth_token.clone().expect("token"),
                capabilities: crate::fee::transcoding_capabilities(),
            },
            b"segment bytes",
        )
    }

    #[test]
    fn segments_are_signed_and_paid_with_credit_carried_over() {
        let signer = Signer::new(key(3), None, None);
        let info = info(1);
        // 100×100×30×2 px × 1.02 ≈ 612 000 wei; one ticket (EV ≈ 1 000 000) covers it.
        let first = signer.sign_segment(&info, segment(&info)).expect("signed");
        assert_eq!(first.tickets, 1);
        let p = lpe_pm::wire::decode_payment_header(&first.payment).expect("payment");
        assert_eq!(p.sender, signer.address().to_vec());
        assert_eq!(p.ticket_sender_params[0].sender_nonce, 1);
        let seg = SegData::decode(STANDARD.decode(&first.segment).expect("b64").as_slice())
            .expect("segdata");
        crate::creds::verify_segment(&seg, &["p"], signer.address()).expect("signed by it");
        // The credit left covers nothing more than 0.39 of a segment: the next one pays again,
        // with the next nonce.
        let second = signer.sign_segment(&info, segment(&info)).expect("signed");
        assert_eq!(second.tickets, 1);
        let p = lpe_pm::wire::decode_payment_header(&second.payment).expect("payment");
        assert_eq!(p.ticket_sender_params[0].sender_nonce, 2);
    }

    #[test]
    fn refusals() {
        let signer = Signer::new(
            key(3),
            Some("t0ken".into()),
            Some(BigRational::from_integer(1.into())),
        );
        let mut h = HeaderMap::new();
        assert!(signer.authorised(&h).is_err());
        h.insert("authorization", "Bearer wrong".parse().expect("header"));
        assert!(signer.authorised(&h).is_err());
        h.insert("authorization", "Bearer t0ken".parse().expect("header"));
        assert!(signer.authorised(&h).is_ok());
        let dear = info(2);
        let Err(Refusal { status: st, .. }) = signer.sign_segment(&dear, segment(&dear)) else {
            panic!("a price above the ceiling was paid");
        };
        assert_eq!(st.as_u16(), 481);
        let ok = info(1);
        let mut other = segment(&ok);
        other.auth_token = Some(AuthToken::default());
        assert!(signer.sign_segment(&ok, other).is_err());
        let mut long = segment(&ok);
        long.duration = 0;
        assert!(signer.sign_segment(&ok, long).is_err());
    }
}
