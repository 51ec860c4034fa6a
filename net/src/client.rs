//! The gateway's side of the calls, as a go-livepeer broadcaster makes them: a gRPC channel to
//! an orchestrator (TLS without certificate checks, as go-livepeer dials, or h2c for
//! `http://`), `GetOrchestrator`, and the signed `Livepeer-Segment` header.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lpe_pm::sig::{self, SigningKey};
use prost::Message;
use tokio_rustls::rustls;
use tonic::transport::{Channel, Endpoint};

use crate::creds;
use crate::proto::{
    AuthToken, Capabilities, EndTranscodingSessionRequest, EndTranscodingSessionResponse,
    OrchestratorInfo, OrchestratorRequest, SegData, VideoProfile,
};

/// go-livepeer's dial timeout.
const CONNECT: Duration = Duration::from_secs(3);

/// go-livepeer's gateways accept any certificate (`InsecureSkipVerify`): the orchestrator is
/// authenticated by its signatures, not its certificate.
fn any_certificate(alpn: &[&[u8]]) -> Result<rustls::ClientConfig, String> {
    crate::tls_client::config(|_| Ok(()), alpn)
}

/// A gRPC channel to the orchestrator at `uri` (`https://host:port` or `http://host:port`).
pub async fn connect(uri: &str) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(uri.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(CONNECT);
    if uri.starts_with("http://") {
        return endpoint.connect().await.map_err(|e| e.to_string());
    }
    crate::tls_client::channel(uri, any_certificate(&[b"h2"])?, CONNECT, None).await
}

async fn unary<Req, Resp>(ch: Channel, path: &'static str, req: Req) -> Result<Resp, tonic::Status>
where
    Req: Message + Send + Sync + 'static,
    Resp: Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(
        tonic::Request::new(req),
        path,
        tonic_prost::ProstCodec::<Req, Resp>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// The request a gateway with `key` makes, signed.
pub fn orchestrator_request(key: &SigningKey, caps: Option<Capabilities>) -> OrchestratorRequest {
    let address = sig::address_of(key.verifying_key());
    OrchestratorRequest {
        address: address.to_vec(),
        sig: sig::sign(key, creds::request_message(address).as_slice()).to_vec(),
        capabilities: caps,
        ignore_capacity_check: false,
    }
}

pub async fn get_orchestrator(
    ch: Channel,
    req: OrchestratorRequest,
) -> Result<OrchestratorInfo, tonic::Status> {
    unary(ch, "/net.Orchestrator/GetOrchestrator", req).await
}

pub async fn end_transcoding_session(
    ch: Channel,
    token: Option<AuthToken>,
) -> Result<(), tonic::Status> {
    unary::<_, EndTranscodingSessionResponse>(
        ch,
        "/net.Orchestrator/EndTranscodingSession",
        EndTranscodingSessionRequest { auth_token: token },
    )
    .await
    .map(|_| ())
}

/// What a segment's credentials say besides its bytes.
pub struct SegmentInfo {
    pub manifest_id: String,
    pub seq: i64,
    pub duration_ms: i32,
    pub profiles: Vec<VideoProfile>,
    pub auth_token: AuthToken,
    pub capabilities: Capabilities,
}

/// The credentials for `segment`, unsigned (field 33 profiles, as a go-livepeer gateway sends
/// MPEG-TS outputs at integer rates).
pub fn segment_data(info: SegmentInfo, segment: &[u8]) -> SegData {
    SegData {
        manifest_id: info.manifest_id.into_bytes(),
        seq: info.seq,
        hash: lpe_pm::keccak256(segment).to_vec(),
        profiles: b"invalid".to_vec(),
        duration: info.duration_ms,
        capabilities: Some(info.capabilities),
        auth_token: Some(info.auth_token),
        full_profiles: info.profiles,
        ..Default::default()
    }
}

/// The `Livepeer-Segment` header: `seg` signed by `key`.
pub fn signed_segment(key: &SigningKey, mut seg: SegData) -> String {
    let names: Vec<&str> = seg.full_profiles.iter().map(|p| p.name.as_str()).collect();
    let digest = creds::segment_digest(&seg, &names);
    seg.sig = sig::sign(key, digest.as_slice()).to_vec();
    STANDARD.encode(seg.encode_to_vec())
}

/// The `Livepeer-Segment` header for `segment`, signed by `key`.
pub fn segment_header(key: &SigningKey, info: SegmentInfo, segment: &[u8]) -> String {
    signed_segment(key, segment_data(info, segment))
}

pub use reqwest::Client as HttpClient;

/// An HTTP client for an orchestrator's routes as go-livepeer's gateway makes them: TLS
/// without certificate checks, HTTP/2 or HTTP/1.1.
pub fn http() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(any_certificate(&[b"h2", b"http/1.1"])?)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())
}

/// `POST {transcoder}/segment`: the status and the body.
pub async fn post_segment(
    http: &reqwest::Client,
    transcoder: &str,
    segment_header: &str,
    payment_header: &str,
    data: Vec<u8>,
) -> Result<(u16, bytes::Bytes), String> {
    let res = http
        .post(format!("{transcoder}/segment"))
        .header("Livepeer-Segment", segment_header)
        .header("Livepeer-Payment", payment_header)
        .header("Content-Type", "video/MP2T")
        .timeout(Duration::from_secs(30))
        .body(data)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let body = bounded_body(res, MAX_ANSWER)
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, body.into()))
}

/// An orchestrator's answer to a segment (a `TranscodeResult` or an error text) is small.
const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("an answer over {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Read(String),
}

/// A response's body, refused beyond `max` bytes whether or not it declared a length.
pub async fn bounded_body(mut res: reqwest::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    if res.content_length().is_some_and(|l| l > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| BodyError::Read(e.to_string()))?
    {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
