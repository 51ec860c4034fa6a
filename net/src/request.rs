//! What a gateway's headers on `/segment` and `/payment` say, checked in go-livepeer's order
//! with its status codes and texts (§2.5.3 steps 1–7): stateless, so the fuzzer reaches all of
//! it. Capacity, payment and work are the service's.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lpe_node::views::OutputProfile;
use lpe_pm::Address;
use lpe_pm::wire::{Payment, WireError, decode_payment_header};
use prost::Message;
use std::time::Duration;

use crate::creds::{self, TokenKey};
use crate::proto::{AuthToken, Capabilities, SegData, VideoProfile};

/// Largest `Livepeer-Segment` header (a SegData with a few profiles is under 1 kB).
pub const MAX_SEGMENT_HEADER: usize = 16 * 1024;
/// Profiles one segment may ask for.
pub const MAX_PROFILES: usize = 8;
/// go-livepeer's longest segment: 5 minutes.
pub const MAX_DURATION_MS: i32 = 300_000;

/// go-livepeer's `http.Error`: the text and a newline, as plain text.
pub fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response()
}

/// A refusal on the way to the work, with go-livepeer's status and text.
pub struct Refusal(pub StatusCode, pub String);

impl Refusal {
    pub fn new(status: StatusCode, text: impl Into<String>) -> Self {
        Self(status, text.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        plain(self.0, &self.1)
    }
}

/// What the header checks of `/segment` and `/payment` establish.
pub struct Checked {
    pub payment: Payment,
    pub sender: Address,
    pub seg: SegData,
    pub token: AuthToken,
    pub profiles: Vec<OutputProfile>,
}

/// Steps 1–7: the payment header, the segment's credentials, profiles and duration, the
/// signature by the payment's sender, capabilities against `offered`, the auth token at `now`.
pub fn check(
    payment_header: &str,
    segment_header: &str,
    tokens: &TokenKey,
    offered: &Capabilities,
    now: i64,
) -> Result<Checked, Refusal> {
    // 1. The payment: an empty header is an empty payment.
    let payment = match payment_header {
        "" => Payment::default(),
        h => decode_payment_header(h).map_err(|e| {
            let why = match e {
                WireError::Base64(m) => format!("base64 decode error: {m}"),
                WireError::Protobuf(m) => format!("protobuf unmarshal error: {m}"),
                other => other.to_string(),
            };
            Refusal::new(StatusCode::PAYMENT_REQUIRED, why)
        })?,
    };
    // 2–3. The segment's credentials.
    let seg_header = segment_header;
    if seg_header.len() > MAX_SEGMENT_HEADER {
        return Err(Refusal::new(StatusCode::FORBIDDEN, "ErrorSegEncoding"));
    }
    let raw = STANDARD
        .decode(seg_header.trim())
        .map_err(|_| Refusal::new(StatusCode::FORBIDDEN, "ErrorSegEncoding"))?;
    let seg = SegData::decode(raw.as_slice())
        .map_err(|e| Refusal::new(StatusCode::FORBIDDEN, e.to_string()))?;
    // 4. Profiles and duration.
    let wire_profiles = if !seg.full_profiles3.is_empty() {
        &seg.full_profiles3
    } else if !seg.full_profiles2.is_empty() {
        &seg.full_profiles2
    } else {
        &seg.full_profiles
    };
    if wire_profiles.len() > MAX_PROFILES {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("too many profiles: at most {MAX_PROFILES}"),
        ));
    }
    let profiles = wire_profiles
        .iter()
        .map(output_profile)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Refusal::new(StatusCode::FORBIDDEN, e))?;
    if seg.duration < 0 || seg.duration > MAX_DURATION_MS {
        return Err(Refusal::new(StatusCode::FORBIDDEN, "invalid duration"));
    }
    // 5. The signature, by the payment's sender (all zeros when there is none).
    let sender = Address::try_from(payment.sender.as_slice()).unwrap_or(Address::ZERO);
    let names: Vec<&str> = wire_profiles.iter().map(|p| p.name.as_str()).collect();
    creds::verify_segment(&seg, &names, sender)
        .map_err(|_| Refusal::new(StatusCode::FORBIDDEN, "ErrSegSig"))?;
    // 6. Capabilities: what the gateway needs must be offered here.
    if let Some(caps) = &seg.capabilities
        && !caps.subset_of(offered)
    {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "incompatible capabilities",
        ));
    }
    // 7. The auth token.
    let token = tokens
        .check(seg.auth_token.as_ref(), now)
        .map_err(|e| Refusal::new(StatusCode::FORBIDDEN, e.to_string()))?
        .clone();
    Ok(Checked {
        payment,
        sender,
        seg,
        token,
        profiles,
    })
}

/// A wire profile as the media engine's, refused with go-livepeer's texts.
pub fn output_profile(p: &VideoProfile) -> Result<OutputProfile, String> {
    if p.format != 0 {
        return Err(if p.format == 1 {
            "MP4 output is not offered".into()
        } else {
            "unrecognized profile output format".into()
        });
    }
    use lpe_core::spec::H264Profile;
    let profile = match p.profile {
        0 | 3 => H264Profile::High,
        1 => H264Profile::Baseline,
        2 => H264Profile::Main,
        4 => H264Profile::High,
        _ => return Err("unrecognized encoder profile".into()),
    };
    match p.encoder {
        0 => {}
        1..=3 => return Err("only H.264 output is offered".into()),
        _ => return Err("unrecognized video codec".into()),
    }
    let (width, height) = (
        u32::try_from(p.width).unwrap_or(0),
        u32::try_from(p.height).unwrap_or(0),
    );
    if width == 0 || height == 0 {
        return Err(format!("profile {}: no resolution", p.name));
    }
    let name = if p.name.is_empty() {
        format!("net_{}x{}_{}", p.width, p.height, p.bitrate)
    } else {
        p.name.clone()
    };
    if name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    {
        return Err(format!("profile name {name:?} is not usable in a URL"));
    }
    Ok(OutputProfile {
        name,
        width,
        height,
        bitrate_bps: u32::try_from(p.bitrate).unwrap_or(0).max(1000),
        fps: (p.fps > 0).then_some((p.fps, p.fps_den.max(1))),
        gop: (p.gop > 0).then(|| Duration::from_millis(p.gop as u64)),
        profile,
    })
}
