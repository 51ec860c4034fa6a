//! go-livepeer's remote-signer payment route, `POST /generate-live-payment` (§2.7.3): a
//! go-livepeer gateway without a key (`-remoteSignerUrl`) asks the signer to pay an
//! orchestrator for live work, and gets a `Livepeer-Payment`, segment credentials for an
//! empty segment, and the new session state, signed.
//!
//! The signer keeps nothing: each session's state (balance with the orchestrator, last nonce,
//! initial price, last update) travels in the blob it signs and the gateway sends back, so
//! signers can run side by side. As in go-livepeer, an older blob can be replayed (the signer
//! cannot tell); its cost is bounded by the 100-ticket cap per call. The checks, their order,
//! status codes (400, 480 refresh, 481 price, 482 no tickets) and texts are go-livepeer's.
//! Not taken over: the auth webhook (`-remoteSignerWebhookUrl`) — this signer authenticates
//! callers with its bearer token — though a `Signer-Auth-Id` header is pinned into the state
//! as go-livepeer pins it.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use lpe_pm::balance::tickets_for_fee;
use lpe_pm::recipient::{price_from_info, session_id};
use lpe_pm::sender::Sender;
use lpe_pm::sig::{self, SigningKey};
use lpe_pm::wire::{encode_payment_header, params_from_wire, payment_for_batch};
use lpe_pm::{Address, BigRational, U256};
use prost::Message;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::client;
use crate::proto::{Capabilities, OrchestratorInfo, SegData};
use crate::refusal::{MAX_TICKETS, Refusal};

/// go-livepeer's status for "ask the orchestrator for fresh info, then ask again".
pub const REFRESH_SESSION: u16 = 480;
/// An orchestrator price above a ceiling.
pub const PRICE_EXCEEDED: u16 = 481;
/// The session's credit already covers the call: nothing to pay now.
pub const NO_TICKETS: u16 = 482;
/// Sent with 480: where the gateway gets fresh info.
pub const REFRESH_URL_HEADER: &str = "Livepeer-Orchestrator-URL";
/// The caller's identity, pinned into the state.
pub const AUTH_ID_HEADER: &str = "Signer-Auth-Id";
/// An auth token is refreshed in the last tenth of its 30 minutes.
const AUTH_TOKEN_REFRESH: Duration = Duration::from_secs(180);
/// Live-video-to-video is billed as 1280×720 at 30 fps.
const LV2V_PIXELS_PER_SECOND: u64 = 1280 * 720 * 30;
/// What a first call pays for in advance: 60 s of lv2v, 10 s of `live`.
const LV2V_FIRST: f64 = 60.0;
const LIVE_FIRST: f64 = 10.0;

/// A signed state blob as go-livepeer encodes it (`[]byte` fields are base64).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SignedState {
    #[serde(rename = "State", alias = "state", default, with = "b64")]
    pub state: Vec<u8>,
    #[serde(rename = "Sig", alias = "sig", default, with = "b64")]
    pub sig: Vec<u8>,
}

/// `maxPrice`: a ceiling in wei per unit of the payment type.
#[derive(Debug, Deserialize)]
pub struct MaxPrice {
    pub price: serde_json::Value,
    #[serde(default)]
    pub currency: String,
    #[serde(default)]
    pub unit: String,
}

/// go-livepeer's `RemotePaymentRequest`.
#[derive(Debug, Deserialize)]
pub struct LivePaymentRequest {
    #[serde(default)]
    pub state: SignedState,
    /// Protobuf `OrchestratorInfo`.
    #[serde(default, with = "b64")]
    pub orchestrator: Vec<u8>,
    /// Go matches the untagged field case-insensitively.
    #[serde(
        default,
        rename = "ManifestID",
        alias = "manifestID",
        alias = "manifestId",
        alias = "manifestid"
    )]
    pub manifest_id: String,
    #[serde(default)]
    pub app: String,
    #[serde(default, rename = "inPixels")]
    pub in_pixels: i64,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default, rename = "maxPrice")]
    pub max_price: Option<MaxPrice>,
    /// Protobuf `Capabilities` for the segment credentials.
    #[serde(default, with = "b64")]
    pub capabilities: Vec<u8>,
}

/// go-livepeer's `RemotePaymentResponse`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LivePaymentResponse {
    pub payment: String,
    #[serde(rename = "segCreds")]
    pub seg_creds: String,
    pub state: SignedState,
}

/// go-livepeer's `RemotePaymentState`, field for field (untagged Go fields keep their names).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct State {
    #[serde(rename = "StateID")]
    state_id: String,
    #[serde(rename = "PMSessionID")]
    pm_session_id: String,
    #[serde(with = "time::serde::rfc3339")]
    last_update: OffsetDateTime,
    orchestrator_address: Address,
    app: String,
    auth_expiry: i64,
    sender_nonce: u32,
    balance: String,
    initial_price_per_unit: i64,
    initial_pixels_per_unit: i64,
    #[serde(rename = "Type")]
    kind: String,
    sequence_number: u64,
    #[serde(rename = "AuthID")]
    auth_id: String,
}

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    /// Go's `[]byte`: a base64 string, or `null` for none.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(Vec::new()),
            Some(s) => STANDARD.decode(s).map_err(serde::de::Error::custom),
        }
    }
}

fn refusal(status: u16, text: impl Into<String>) -> Refusal {
    Refusal::new(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        text,
    )
}

fn bad(text: impl Into<String>) -> Refusal {
    refusal(400, text)
}

/// A decimal or fraction as Go's `big.Rat.SetString` reads it: `3`, `-1.25`, `2.5e-3`, `7/2`.
pub fn parse_rational(s: &str) -> Option<BigRational> {
    let s = s.trim();
    if let Some((n, d)) = s.split_once('/') {
        let n: lpe_pm::BigInt = n.trim().parse().ok()?;
        let d: lpe_pm::BigInt = d.trim().parse().ok()?;
        return (d != 0.into()).then(|| BigRational::new(n, d));
    }
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    if !(-1000..=1000).contains(&exp) {
        return None;
    }
    let (negative, digits) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole
            .chars()
            .chain(frac.chars())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let mut n: lpe_pm::BigInt = format!("0{whole}{frac}").parse().ok()?;
    if negative {
        n = -n;
    }
    let scale = exp - frac.len() as i32;
    let ten = lpe_pm::BigInt::from(10);
    Some(if scale >= 0 {
        BigRational::from_integer(n * ten.pow(scale.unsigned_abs()))
    } else {
        BigRational::new(n, ten.pow(scale.unsigned_abs()))
    })
}

/// `maxPrice` as a ceiling: positive, in wei, in the payment type's unit.
fn ceiling(max: &MaxPrice, kind: &str) -> Result<BigRational, String> {
    let text = match &max.price {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => String::new(),
    };
    let price = parse_rational(&text)
        .filter(|p| *p > BigRational::from_integer(0.into()))
        .ok_or("maxPrice.price must be a positive decimal")?;
    if !max.currency.trim().eq_ignore_ascii_case("wei") {
        return Err("maxPrice.currency must be wei".into());
    }
    let unit = match kind {
        "live" => "seconds",
        "lv2v" => "720p-pixel-seconds",
        "fixed" => "fixed",
        _ => return Err("maxPrice requires payment type live, lv2v, or fixed".into()),
    };
    if !max.unit.trim().eq_ignore_ascii_case(unit) {
        return Err(format!(
            "maxPrice.unit must be {unit} for payment type {kind}"
        ));
    }
    Ok(price)
}

/// Pays for one live call. `l1_block` is the chain's latest L1 block when known (ticket
/// params at or before it are expired and call for a refresh).
pub fn generate(
    key: &SigningKey,
    configured_max: Option<&BigRational>,
    headers: &HeaderMap,
    req: LivePaymentRequest,
    l1_block: Option<U256>,
    now: OffsetDateTime,
) -> Result<LivePaymentResponse, Refusal> {
    let me = sig::address_of(key.verifying_key());
    if req.orchestrator.is_empty() {
        return Err(bad("missing orchestrator"));
    }
    let info = OrchestratorInfo::decode(req.orchestrator.as_slice())
        .map_err(|e| bad(format!("orchestrator: {e}")))?;
    let price_info = info
        .price_info
        .clone()
        .filter(|p| p.price_per_unit != 0 && p.pixels_per_unit != 0)
        .ok_or_else(|| bad("missing or zero priceInfo"))?;
    let tp = info
        .ticket_params
        .as_ref()
        .ok_or_else(|| bad("missing ticketParams in OrchestratorInfo"))?;
    let orchestrator = Address::try_from(info.address.as_slice()).unwrap_or(Address::ZERO);

    let has_state = !req.state.state.is_empty() || !req.state.sig.is_empty();
    let mut state = if has_state {
        if sig::verify(me, &req.state.state, &req.state.sig).is_err() {
            return Err(bad("invalid sig"));
        }
        let mut s: State =
            serde_json::from_slice(&req.state.state).map_err(|_| bad("invalid state"))?;
        if s.orchestrator_address != orchestrator {
            return Err(bad("orchestratorAddress mismatch"));
        }
        if s.app != req.app {
            return Err(bad("app mismatch"));
        }
        if !s.kind.is_empty() && s.kind != req.kind {
            return Err(bad("job type mismatch"));
        }
        s.kind = req.kind.clone();
        s.sequence_number = s.sequence_number.saturating_add(1);
        s
    } else {
        State {
            state_id: lpe_core::ids::random_string(lpe_core::ids::ID_ALPHABET, 8),
            pm_session_id: String::new(),
            last_update: OffsetDateTime::UNIX_EPOCH,
            orchestrator_address: orchestrator,
            app: req.app.clone(),
            auth_expiry: 0,
            sender_nonce: 0,
            balance: String::new(),
            initial_price_per_unit: price_info.price_per_unit,
            initial_pixels_per_unit: price_info.pixels_per_unit,
            kind: req.kind.clone(),
            sequence_number: 0,
            auth_id: String::new(),
        }
    };
    let manifest_id = match (req.manifest_id.as_str(), has_state) {
        ("", true) => return Err(bad("missing manifestID")),
        ("", false) => lpe_core::ids::random_string(lpe_core::ids::ID_ALPHABET, 8),
        (m, _) => m.to_string(),
    };
    let capabilities = if req.capabilities.is_empty() {
        None
    } else {
        Some(
            Capabilities::decode(req.capabilities.as_slice())
                .map_err(|e| bad(format!("capabilities: {e}")))?,
        )
    };
    let params = params_from_wire(tp).map_err(|e| {
        bad(format!(
            "failed to derive ticket params from OrchestratorInfo: {e}"
        ))
    })?;
    let balance = if state.balance.is_empty() {
        BigRational::from_integer(0.into())
    } else {
        parse_rational(&state.balance).unwrap_or_else(|| BigRational::from_integer(0.into()))
    };
    let pm_session = session_id(params.recipient_rand_hash);
    let nonce = if state.pm_session_id == pm_session {
        state.sender_nonce
    } else {
        0
    };

    // Fresh info first: a token about to expire, or params the chain has passed.
    let token = info.auth_token.clone().ok_or_else(|| {
        bad("remote signer could not check whether to refresh session: missing auth token")
    })?;
    let expired_params = l1_block.is_some_and(|b| params.expiration_block <= b);
    let refresh_at = token.expiration - AUTH_TOKEN_REFRESH.as_secs() as i64;
    if now.unix_timestamp() > refresh_at || expired_params {
        return Err(
            refusal(REFRESH_SESSION, "refresh session for remote signer")
                .with_header(REFRESH_URL_HEADER, &info.transcoder),
        );
    }

    let last_update = if state.last_update.unix_timestamp() <= 0 {
        now
    } else {
        state.last_update
    };
    let elapsed = (now - last_update).as_seconds_f64();
    let units: i64 = match req.kind.as_str() {
        "lv2v" => {
            let secs = if elapsed <= 0.0 { LV2V_FIRST } else { elapsed };
            (LV2V_PIXELS_PER_SECOND as f64 * secs) as i64
        }
        "live" => {
            let secs = if elapsed <= 0.0 { LIVE_FIRST } else { elapsed };
            secs.ceil() as i64
        }
        "fixed" => 1,
        "" => req.in_pixels,
        _ => return Err(bad("invalid job type")),
    };
    if units <= 0 {
        return Err(bad("missing billable unit or job type"));
    }

    let price = price_from_info(price_info.price_per_unit, price_info.pixels_per_unit)
        .ok_or_else(|| bad("missing or zero priceInfo"))?;
    let requested = req
        .max_price
        .as_ref()
        .map(|m| ceiling(m, &req.kind))
        .transpose()
        .map_err(bad)?;
    let initial = price_from_info(state.initial_price_per_unit, state.initial_pixels_per_unit);
    if has_state && (state.initial_price_per_unit <= 0 || state.initial_pixels_per_unit <= 0) {
        return Err(bad("invalid initial price in state"));
    }
    let ceilings = [
        ("configured maximum price", configured_max.cloned()),
        ("request maxPrice", requested),
        (
            "initial session price",
            initial.clone().filter(|_| has_state),
        ),
    ];
    if let Some((source, limit)) = ceilings
        .iter()
        .filter_map(|(s, p)| p.as_ref().map(|p| (s, p)))
        .min_by(|a, b| a.1.cmp(b.1))
        && price > *limit
    {
        return Err(refusal(
            PRICE_EXCEEDED,
            format!(
                "orchestrator price {} exceeds {source} ceiling {}",
                lpe_pm::rational_string(&price),
                lpe_pm::rational_string(limit)
            ),
        ));
    }

    // The fee at the session's initial price; tickets for what the credit does not cover.
    let initial = initial.ok_or_else(|| bad("invalid initial price in state"))?;
    let fee = BigRational::from_integer(units.into()) * &initial;
    let ev = lpe_pm::ticket::expected_value(params.face_value, params.win_prob);
    let (n, bought) = tickets_for_fee(&fee, &ev, &balance);
    if n == 0 {
        return Err(refusal(NO_TICKETS, "no tickets"));
    }
    if n > MAX_TICKETS {
        return Err(bad(format!(
            "numTickets {n} exceeds maximum of {MAX_TICKETS}"
        )));
    }
    let mut sender = Sender::new(key.clone());
    let session = sender.start_session_with_nonce(params, price, nonce);
    let batch = sender
        .create_batch(&session, n as u32)
        .map_err(|e| refusal(500, e.to_string()))?;
    let payment = payment_for_batch(&batch, &price_info);
    let seg = SegData {
        manifest_id: manifest_id.into_bytes(),
        seq: 0,
        hash: lpe_pm::keccak256([]).to_vec(),
        capabilities,
        auth_token: Some(token),
        ..Default::default()
    };
    let seg_creds = client::signed_segment(key, seg);

    state.balance = lpe_pm::rational_string(&(balance + bought - fee));
    state.last_update = now;
    state.pm_session_id = session.clone();
    state.sender_nonce = sender.nonce(&session).unwrap_or(nonce);
    if let Some(id) = headers
        .get(AUTH_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        && state.auth_id != id
    {
        if !state.auth_id.is_empty() {
            return Err(refusal(500, "remote signer auth ID changed"));
        }
        state.auth_id = id.to_string();
    }
    let state_bytes = serde_json::to_vec(&state).map_err(|e| refusal(500, e.to_string()))?;
    let state_sig = sig::sign(key, &state_bytes).to_vec();
    Ok(LivePaymentResponse {
        payment: encode_payment_header(&payment),
        seg_creds,
        state: SignedState {
            state: state_bytes,
            sig: state_sig,
        },
    })
}

/// The request body as JSON, for the signer's route (a malformed body is go-livepeer's 400).
pub fn decode_request(body: &[u8]) -> Result<LivePaymentRequest, Refusal> {
    serde_json::from_slice(body).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{AuthToken, PriceInfo, TicketParams};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    fn key() -> SigningKey {
        SigningKey::from_slice(&[5; 32]).expect("key")
    }

    const NOW: i64 = 1_800_000_000;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW + secs).expect("time")
    }

    /// An orchestrator at `price_per_unit` wei per 1000 pixels, ticket EV exactly 1 000 000
    /// wei (faceValue 10^6, every ticket wins), params expiring at block 100, token valid
    /// 30 min.
    fn info(price_per_unit: i64, rand_hash: u8) -> Vec<u8> {
        OrchestratorInfo {
            transcoder: "https://o.example:8935".into(),
            address: vec![7; 20],
            ticket_params: Some(TicketParams {
                recipient: vec![7; 20],
                face_value: lpe_pm::minbytes(U256::from(1_000_000u64)),
                win_prob: lpe_pm::minbytes(U256::MAX),
                recipient_rand_hash: vec![rand_hash; 32],
                seed: vec![1],
                expiration_block: lpe_pm::minbytes(U256::from(100u32)),
                expiration_params: Some(Default::default()),
            }),
            price_info: Some(PriceInfo {
                price_per_unit,
                pixels_per_unit: 1000,
                ..Default::default()
            }),
            auth_token: Some(AuthToken {
                token: vec![1; 32],
                session_id: "s".into(),
                expiration: NOW + 1800,
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn request(info: Vec<u8>, state: Option<&SignedState>) -> LivePaymentRequest {
        LivePaymentRequest {
            state: state
                .map(|s| SignedState {
                    state: s.state.clone(),
                    sig: s.sig.clone(),
                })
                .unwrap_or_default(),
            orchestrator: info,
            manifest_id: "stream-1".into(),
            app: "app".into(),
            in_pixels: 0,
            kind: "lv2v".into(),
            max_price: None,
            capabilities: Vec::new(),
        }
    }

    fn pay(req: LivePaymentRequest, now: OffsetDateTime) -> Result<LivePaymentResponse, Refusal> {
        generate(
            &key(),
            None,
            &HeaderMap::new(),
            req,
            Some(U256::from(50u8)),
            now,
        )
    }

    fn status(r: Result<LivePaymentResponse, Refusal>) -> (u16, String) {
        match r {
            Ok(_) => (200, String::new()),
            Err(e) => (e.status.as_u16(), e.message),
        }
    }

    fn nonces(r: &LivePaymentResponse) -> Vec<u32> {
        lpe_pm::wire::decode_payment_header(&r.payment)
            .expect("payment")
            .ticket_sender_params
            .iter()
            .map(|t| t.sender_nonce)
            .collect()
    }

    fn state(r: &LivePaymentResponse) -> serde_json::Value {
        serde_json::from_slice(&r.state.state).expect("state json")
    }

    #[test]
    fn a_session_is_paid_call_by_call_from_its_signed_state() {
        // First call: 60 s of 1280×720×30 at 1/1000 wei per pixel = 1 658 880 wei: 2 tickets.
        let first = pay(request(info(1, 9), None), at(0)).expect("first");
        assert_eq!(nonces(&first), vec![1, 2]);
        let s = state(&first);
        assert_eq!(s["Balance"], "341120", "{s}");
        assert_eq!(s["SenderNonce"], 2);
        assert_eq!(s["SequenceNumber"], 0);
        assert_eq!(s["PMSessionID"], format!("0x{}", "09".repeat(32)));
        sig::verify(
            sig::address_of(key().verifying_key()),
            &first.state.state,
            &first.state.sig,
        )
        .expect("the state is signed by the signer");
        let p = lpe_pm::wire::decode_payment_header(&first.payment).expect("payment");
        assert_eq!(p.sender, sig::address_of(key().verifying_key()).to_vec());
        let seg = SegData::decode(STANDARD.decode(&first.seg_creds).expect("b64").as_slice())
            .expect("segdata");
        assert_eq!(seg.manifest_id, b"stream-1");
        assert_eq!(seg.hash, lpe_pm::keccak256([]).to_vec());
        crate::creds::verify_segment(&seg, &[], sig::address_of(key().verifying_key()))
            .expect("credentials signed by the signer");

        // 2 s later: 55 296 wei due, the credit is below one ticket's EV: one more ticket,
        // the next nonce.
        let second = pay(request(info(1, 9), Some(&first.state)), at(2)).expect("second");
        assert_eq!(nonces(&second), vec![3]);
        assert_eq!(state(&second)["Balance"], "1285824");
        assert_eq!(state(&second)["SequenceNumber"], 1);
        // 1 s later the credit covers it: 482.
        let third = pay(request(info(1, 9), Some(&second.state)), at(3));
        assert_eq!(status(third), (NO_TICKETS, "no tickets".into()));
        // New ticket params (the orchestrator refreshed): nonces start over.
        let fresh = pay(request(info(1, 4), Some(&second.state)), at(100)).expect("fresh");
        assert_eq!(nonces(&fresh)[0], 1);
    }

    #[test]
    fn states_cannot_be_forged_or_reused_elsewhere() {
        let first = pay(request(info(1, 9), None), at(0)).expect("first");
        let mut forged = SignedState {
            state: first.state.state.clone(),
            sig: first.state.sig.clone(),
        };
        let text = String::from_utf8(forged.state.clone()).expect("utf8");
        forged.state = text.replace("341120", "999999999").into_bytes();
        let r = pay(request(info(1, 9), Some(&forged)), at(2));
        assert_eq!(status(r), (400, "invalid sig".into()));

        let mut other_app = request(info(1, 9), Some(&first.state));
        other_app.app = "other".into();
        assert_eq!(status(pay(other_app, at(2))), (400, "app mismatch".into()));
        let mut other_type = request(info(1, 9), Some(&first.state));
        other_type.kind = "live".into();
        assert_eq!(
            status(pay(other_type, at(2))),
            (400, "job type mismatch".into())
        );
        let mut no_manifest = request(info(1, 9), Some(&first.state));
        no_manifest.manifest_id.clear();
        assert_eq!(
            status(pay(no_manifest, at(2))),
            (400, "missing manifestID".into())
        );
    }

    #[test]
    fn refreshes_ceilings_and_limits() {
        // A token in its last three minutes, or params the chain has passed: 480 naming the
        // orchestrator.
        let late = pay(request(info(1, 9), None), at(1800 - 179));
        let Err(e) = late else {
            panic!("paid on a stale token")
        };
        assert_eq!(e.status.as_u16(), REFRESH_SESSION);
        assert_eq!(
            e.header,
            Some((REFRESH_URL_HEADER, "https://o.example:8935".to_string()))
        );
        let expired = generate(
            &key(),
            None,
            &HeaderMap::new(),
            request(info(1, 9), None),
            Some(U256::from(100u8)),
            at(0),
        );
        assert_eq!(status(expired).0, REFRESH_SESSION);

        // Ceilings: the signer's, the request's, the session's first price.
        let cap = BigRational::new(1.into(), 2000.into());
        let r = generate(
            &key(),
            Some(&cap),
            &HeaderMap::new(),
            request(info(1, 9), None),
            None,
            at(0),
        );
        assert_eq!(status(r).0, PRICE_EXCEEDED);
        let mut capped = request(info(1, 9), None);
        capped.max_price = Some(MaxPrice {
            price: serde_json::json!("0.0005"),
            currency: "WEI".into(),
            unit: "720p-pixel-seconds".into(),
        });
        assert_eq!(status(pay(capped, at(0))).0, PRICE_EXCEEDED);
        let mut wrong_unit = request(info(1, 9), None);
        wrong_unit.max_price = Some(MaxPrice {
            price: serde_json::json!(1),
            currency: "wei".into(),
            unit: "seconds".into(),
        });
        assert_eq!(
            status(pay(wrong_unit, at(0))),
            (
                400,
                "maxPrice.unit must be 720p-pixel-seconds for payment type lv2v".into()
            )
        );
        let first = pay(request(info(1, 9), None), at(0)).expect("first");
        let doubled = pay(request(info(2, 9), Some(&first.state)), at(2));
        assert_eq!(status(doubled).0, PRICE_EXCEEDED);

        // Units: fixed is one unit, live whole seconds, none at all is refused; no more than
        // 100 tickets in one call.
        let mut fixed = request(info(1_000_000, 9), None);
        fixed.kind = "fixed".into();
        // 1 unit × 1000 wei: below one ticket's EV, so one ticket.
        assert_eq!(nonces(&pay(fixed, at(0)).expect("fixed")), vec![1]);
        let mut nothing = request(info(1, 9), None);
        nothing.kind.clear();
        assert_eq!(
            status(pay(nothing, at(0))),
            (400, "missing billable unit or job type".into())
        );
        let mut unknown = request(info(1, 9), None);
        unknown.kind = "batch".into();
        assert_eq!(
            status(pay(unknown, at(0))),
            (400, "invalid job type".into())
        );
        let greedy = pay(request(info(1000, 9), None), at(0));
        assert_eq!(
            status(greedy),
            (400, "numTickets 1659 exceeds maximum of 100".into())
        );
    }

    #[test]
    fn requests_decode_as_go_livepeer_sends_them() {
        let body = serde_json::json!({
            "state": {"State": null, "Sig": null},
            "orchestrator": STANDARD.encode(info(1, 9)),
            "ManifestID": "m",
            "inPixels": 5,
            "type": "",
            "capabilities": null,
        });
        let req = decode_request(body.to_string().as_bytes()).expect("decoded");
        assert!(req.state.state.is_empty() && req.state.sig.is_empty());
        assert_eq!((req.manifest_id.as_str(), req.in_pixels), ("m", 5));
        assert!(decode_request(b"{\"orchestrator\": 5}").is_err());
        assert!(decode_request(b"not json").is_err());
    }

    /// Writes the `live_payment` fuzz target's seeds (a paid first call in both input modes,
    /// and a follow-up call from its state) into `LPE_WRITE_FUZZ_SEEDS`: a tool, not a check.
    #[test]
    #[ignore = "writes fuzz seeds: LPE_WRITE_FUZZ_SEEDS=<dir> cargo test -- --ignored fuzz_seeds"]
    fn fuzz_seeds() {
        let dir =
            std::env::var("LPE_WRITE_FUZZ_SEEDS").expect("LPE_WRITE_FUZZ_SEEDS names a directory");
        let info = info(1, 9);
        let json = serde_json::json!({
            "state": {"State": null, "Sig": null},
            "orchestrator": STANDARD.encode(&info),
            "ManifestID": "m",
            "type": "lv2v",
        });
        let mut first = vec![0u8, 0, 0];
        first.extend_from_slice(json.to_string().as_bytes());
        let len = info.len() as u16;
        let mut framed = vec![1u8, (len >> 8) as u8, len as u8];
        framed.extend_from_slice(&info);
        // The fuzz target's framed requests have no app.
        let mut first_call = request(info.clone(), None);
        first_call.app.clear();
        let paid = pay(first_call, at(-100)).expect("paid");
        let mut follow = framed.clone();
        follow.extend_from_slice(&paid.state.state);
        for (name, seed) in [("seed-0", first), ("seed-1", framed), ("seed-2", follow)] {
            std::fs::write(std::path::Path::new(&dir).join(name), seed).expect("seed");
        }
    }

    #[test]
    fn rationals_as_go_reads_them() {
        let r = |n: i64, d: i64| Some(BigRational::new(n.into(), d.into()));
        assert_eq!(parse_rational("3"), r(3, 1));
        assert_eq!(parse_rational("-1.25"), r(-5, 4));
        assert_eq!(parse_rational("2.5e-3"), r(1, 400));
        assert_eq!(parse_rational("1e3"), r(1000, 1));
        assert_eq!(parse_rational(" 7/2 "), r(7, 2));
        assert_eq!(parse_rational(".5"), r(1, 2));
        for bad in ["", "x", "1/0", "1e99999", "1.2.3", "--1"] {
            assert_eq!(parse_rational(bad), None, "{bad}");
        }
    }
}
