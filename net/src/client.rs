//! The gateway's side of the calls, as a go-livepeer broadcaster makes them: a gRPC channel to
//! an orchestrator (TLS without certificate checks, as go-livepeer dials, or h2c for
//! `http://`), `GetOrchestrator`, and the signed `Livepeer-Segment` header.

use std::sync::Arc;
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

/// Accepts any certificate: go-livepeer's gateways do (`InsecureSkipVerify`); the
/// orchestrator is authenticated by its signatures, not its certificate.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A gRPC channel to the orchestrator at `uri` (`https://host:port` or `http://host:port`).
pub async fn connect(uri: &str) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(uri.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(CONNECT);
    if uri.starts_with("http://") {
        return endpoint.connect().await.map_err(|e| e.to_string());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    endpoint
        .connect_with_connector(tower::service_fn(move |uri: tonic::codegen::http::Uri| {
            let connector = connector.clone();
            async move {
                let host = uri.host().unwrap_or("localhost").to_string();
                let port = uri.port_u16().unwrap_or(443);
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                let name =
                    rustls::pki_types::ServerName::try_from(host).map_err(std::io::Error::other)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| e.to_string())
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

/// The `Livepeer-Segment` header for `segment`, signed by `key` (field 33 profiles, as a
/// go-livepeer gateway sends MPEG-TS outputs at integer rates).
pub fn segment_header(key: &SigningKey, info: SegmentInfo, segment: &[u8]) -> String {
    let mut seg = SegData {
        manifest_id: info.manifest_id.into_bytes(),
        seq: info.seq,
        hash: lpe_pm::keccak256(segment).to_vec(),
        profiles: b"invalid".to_vec(),
        duration: info.duration_ms,
        capabilities: Some(info.capabilities),
        auth_token: Some(info.auth_token),
        full_profiles: info.profiles,
        ..Default::default()
    };
    let names: Vec<&str> = seg.full_profiles.iter().map(|p| p.name.as_str()).collect();
    let digest = creds::segment_digest(&seg, &names);
    seg.sig = sig::sign(key, digest.as_slice()).to_vec();
    STANDARD.encode(seg.encode_to_vec())
}

pub use reqwest::Client as HttpClient;

/// An HTTP client for an orchestrator's routes as go-livepeer's gateway makes them: TLS
/// without certificate checks, HTTP/2 or HTTP/1.1.
pub fn http() -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
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
    let body = res.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, body))
}
