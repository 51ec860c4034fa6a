//! The HTTP server loop: hyper's connection builder with the limits `axum::serve` has no
//! setting for. A connection beyond `http.max_connections` is closed at once; a connection
//! that takes longer than `http.header_timeout_seconds` to send a request's headers, or sits
//! idle that long between requests, is closed (hyper's header timer runs while a keep-alive
//! connection waits for its next request). Both plain TCP and TLS listeners are served.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

use crate::tls::PeerAddr;
use lpe_core::admission::{Admissions, ConnectionLimits};

/// How long open requests may run on after shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections: ConnectionLimits,
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` completes, then lets open requests finish for up
/// to [`DRAIN`].
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: Limits,
    stop: impl std::future::Future<Output = ()>,
) where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout);
    let admissions = Arc::new(Admissions::default());
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    let mut refused_logged = false;
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let slot = match admissions.admit(peer.ip(), limits.connections) {
            Ok(slot) => slot,
            Err(why) => {
                // Logged once per burst: a flood must not become a flood of log lines too.
                if !refused_logged {
                    tracing::warn!(%peer, "HTTP connection refused: {why}");
                    refused_logged = true;
                }
                drop(io);
                continue;
            }
        };
        refused_logged = false;
        let app = app.clone();
        let service = tower::service_fn(
            move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.oneshot(req).await.into_response_infallible()) }
            },
        );
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "HTTP connection ended: {e}");
            }
            drop(slot);
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!(
            "HTTP connections still open after {} s; closing them",
            DRAIN.as_secs()
        );
    }
}

/// `Router`'s error type is `Infallible`; this unwraps it.
trait IntoResponseInfallible {
    fn into_response_infallible(self) -> axum::response::Response;
}

impl IntoResponseInfallible for Result<axum::response::Response, Infallible> {
    fn into_response_infallible(self) -> axum::response::Response {
        match self {
            Ok(r) => r,
            Err(e) => match e {},
        }
    }
}
