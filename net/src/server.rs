//! One port, two protocols, as go-livepeer serves them (§2.1.1): a request is gRPC when it is
//! HTTP/2 with a `Content-Type` starting `application/grpc`; everything else is HTTP. TLS with
//! a self-signed certificate kept in `<data>/net/` (ALPN `h2`, `http/1.1`), or plain HTTP/1.1
//! and HTTP/2 with prior knowledge (h2c) for an `http://` service URI.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Version, header};
use axum::response::Response;
use axum::routing::{any, get, post};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use lpe_http::PeerAddr;
use tonic::server::{Grpc, ServerStreamingService, UnaryService};
use tonic_prost::ProstCodec;

use crate::orchestrator::OrchestratorService;
use crate::proto::{
    EndTranscodingSessionRequest, EndTranscodingSessionResponse, NotifySegment,
    OrchestratorRequest, PingPong, RegisterRequest,
};
use crate::request::plain;

type Service = Arc<OrchestratorService>;

fn too_many(grpc: bool) -> Response {
    if grpc {
        tonic::Status::resource_exhausted("too many requests from this address")
            .into_http::<Body>()
            .map(Body::new)
    } else {
        plain(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests from this address",
        )
    }
}

/// Largest gRPC message taken (an OrchestratorRequest is ~100 bytes).
const MAX_GRPC_MESSAGE: usize = 64 * 1024;

pub fn router(service: Service) -> Router {
    Router::new()
        .route("/segment", any(segment))
        .route("/payment", any(payment))
        .route("/stream/{session}/{rendition}/{file}", get(rendition))
        .route("/stream/{session}/{file}", get(input))
        .route("/transcodeResults", any(transcode_results))
        .route(
            "/net.Transcoder/RegisterTranscoder",
            post(register_transcoder),
        )
        .route("/net.Orchestrator/GetOrchestrator", post(get_orchestrator))
        .route("/net.Orchestrator/Ping", post(ping))
        .route(
            "/net.Orchestrator/EndTranscodingSession",
            post(end_transcoding_session),
        )
        .fallback(fallback)
        .with_state(service)
}

fn is_grpc(req: &Request) -> bool {
    req.version() == Version::HTTP_2
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

async fn fallback(req: Request) -> Response {
    if is_grpc(&req) {
        tonic::Status::unimplemented("")
            .into_http::<Body>()
            .map(Body::new)
    } else {
        plain(StatusCode::NOT_FOUND, "404 page not found")
    }
}

async fn segment(
    State(s): State<Service>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if s.rates.work.take(peer.ip()).is_err() {
        return too_many(false);
    }
    s.segment(peer.ip().to_string(), headers, body).await
}

async fn payment(
    State(s): State<Service>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
) -> Response {
    if s.rates.work.take(peer.ip()).is_err() {
        return too_many(false);
    }
    s.payment(peer.ip().to_string(), headers).await
}

async fn rendition(
    State(s): State<Service>,
    Path((session, rendition, file)): Path<(String, String, String)>,
) -> Response {
    s.rendition(&session, &rendition, &file)
}

/// A segment given to a remote transcoder (`<seq>.tempfile`).
async fn input(
    State(s): State<Service>,
    Path((session, file)): Path<(String, String)>,
) -> Response {
    s.rendition(&session, "", &file)
}

async fn transcode_results(
    State(s): State<Service>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let max = s.max_segment_bytes();
    crate::results::transcode_results(&s.remote, peer.ip(), &headers, body, max).await
}

/// `RegisterTranscoder`: the tasks stream to the transcoder for as long as it stays.
struct Register(Service, std::net::IpAddr);

impl ServerStreamingService<RegisterRequest> for Register {
    type Response = NotifySegment;
    type ResponseStream = BoxStream<'static, Result<NotifySegment, tonic::Status>>;
    type Future = BoxFuture<'static, Result<tonic::Response<Self::ResponseStream>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<RegisterRequest>) -> Self::Future {
        let (s, ip) = (self.0.clone(), self.1);
        Box::pin(async move {
            let (registration, tasks) = s
                .remote
                .register(ip, request.into_inner())
                .map_err(|e| tonic::Status::unknown(e.to_string()))?;
            // The registration lives as long as the stream: when the transcoder goes, the
            // stream is dropped and so is it.
            let stream = futures::stream::unfold(
                (registration, tasks),
                |(registration, mut tasks)| async move {
                    let task = tasks.recv().await?;
                    Some((Ok(task), (registration, tasks)))
                },
            );
            Ok(tonic::Response::new(
                Box::pin(stream) as Self::ResponseStream
            ))
        })
    }
}

async fn register_transcoder(
    State(s): State<Service>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    req: Request,
) -> Response {
    if !is_grpc(&req) {
        return plain(StatusCode::NOT_FOUND, "404 page not found");
    }
    if !s.remote.accepts_any() || s.rates.discovery.take(peer.ip()).is_err() {
        return tonic::Status::unknown("invalid secret")
            .into_http::<Body>()
            .map(Body::new);
    }
    let mut grpc = Grpc::new(ProstCodec::<NotifySegment, RegisterRequest>::default())
        .max_decoding_message_size(MAX_GRPC_MESSAGE);
    grpc.server_streaming(Register(s, peer.ip()), req)
        .await
        .map(Body::new)
}

/// A unary gRPC method from an async function of the service.
struct Unary<F>(Service, F);

impl<F, Req, Resp, Fut> UnaryService<Req> for Unary<F>
where
    F: Fn(Service, Req) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Resp, tonic::Status>> + Send + 'static,
    Req: Send + 'static,
{
    type Response = Resp;
    type Future = BoxFuture<'static, Result<tonic::Response<Resp>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        let (s, f) = (self.0.clone(), self.1.clone());
        Box::pin(async move { f(s, request.into_inner()).await.map(tonic::Response::new) })
    }
}

async fn unary<Req, Resp, F, Fut>(s: Service, req: Request, f: F) -> Response
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: Fn(Service, Req) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Resp, tonic::Status>> + Send + 'static,
{
    if !is_grpc(&req) {
        return plain(StatusCode::NOT_FOUND, "404 page not found");
    }
    let mut grpc =
        Grpc::new(ProstCodec::<Resp, Req>::default()).max_decoding_message_size(MAX_GRPC_MESSAGE);
    grpc.unary(Unary(s, f), req).await.map(Body::new)
}

async fn get_orchestrator(
    State(s): State<Service>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    req: Request,
) -> Response {
    if s.rates.discovery.take(peer.ip()).is_err() {
        return too_many(true);
    }
    unary(s, req, |s: Service, r: OrchestratorRequest| async move {
        s.get_orchestrator(r).await
    })
    .await
}

async fn ping(State(s): State<Service>, req: Request) -> Response {
    unary(s, req, |s: Service, r: PingPong| async move { s.ping(r) }).await
}

async fn end_transcoding_session(State(s): State<Service>, req: Request) -> Response {
    unary(
        s,
        req,
        |s: Service, r: EndTranscodingSessionRequest| async move {
            s.end_session(r.auth_token.as_ref())
                .await
                .map(|()| EndTranscodingSessionResponse {})
        },
    )
    .await
}

/// Ends idle sessions every few seconds until `stop`.
pub async fn sweep_sessions(s: Service, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => s.sweep().await,
            () = &mut stop => return,
        }
    }
}

/// Serves the orchestrator's port on `tcp` until `shutdown` turns true: TLS (certificate in
/// `<data>/net/`) unless the service URI is `http://`.
pub fn start(
    node: Arc<lpe_node::Node>,
    tcp: tokio::net::TcpListener,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let cfg = &node.cfg;
    let service_uri = cfg.service_uri();
    let host = url::Url::parse(&service_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string));
    let tls = service_uri.starts_with("https://");
    let settings = crate::orchestrator::Settings {
        service_uri: service_uri.clone(),
        max_sessions: cfg.net.max_sessions as usize,
        max_segment_bytes: (cfg.net.max_segment_megabytes as usize) << 20,
        transcoder_secret: lpe_node::config::secret(
            &cfg.net.transcoder_secret_file,
            crate::TRANSCODER_SECRET_ENV,
        )?,
    };
    let tls_config = if tls {
        let mut names = lpe_http::tls::local_names(cfg.net.listen);
        names.extend(host);
        Some(lpe_http::tls::server_config(
            &cfg.data_dir.join("net"),
            &names,
            cfg.net.new_certificate,
        )?)
    } else {
        None
    };
    let limits = lpe_http::Limits {
        // A gateway runs all its streams from one address, one connection each.
        connections: lpe_core::admission::ConnectionLimits {
            total: 512,
            per_address: 256,
        },
        header_timeout: Duration::from_secs(20),
    };
    let service = Arc::new(OrchestratorService::new(Arc::clone(&node), settings));
    let app = router(Arc::clone(&service));
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    tokio::spawn(sweep_sessions(service, stopped(shutdown.clone())));
    tracing::info!(%service_uri, listen = %cfg.net.listen, "orchestrator serving gateways");
    Ok(match tls_config {
        Some(tls) => {
            let listener = lpe_http::TlsListener::new(tcp, tls).map_err(|e| e.to_string())?;
            tokio::spawn(lpe_http::serve(listener, app, limits, stopped(shutdown)))
        }
        None => tokio::spawn(lpe_http::serve(tcp, app, limits, stopped(shutdown))),
    })
}
