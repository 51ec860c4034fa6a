//! The HTTP API (JSON) and the HLS file server. A thin adapter: requests become
//! [`Command`]s or reads; errors are values rendered as
//! `{"error":{"code":…,"message":…,"field":…}}` with the matching status.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};

use serde::{Deserialize, Serialize};
use tower_http::services::ServeDir;

use crate::http::{ApiError, ApiJson, AppState, By, ErrorBody, chain_error};
use crate::metrics::Counters;
use lpe_core::spec::StreamSpec;
use lpe_core::supervisor::{TaskHealth, TaskState};
use lpe_node::alerts::AlertFilter;
use lpe_node::{Actor, Command, CommandError, Funding, Node, Outcome};

/// An API error as a value.

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Livepeer Edge node API",
        description = "Streams, device, payments and operators of one Livepeer Edge node. \
            Security requirements list the role a route needs (`viewer` or `admin`); a route \
            without one is public."
    ),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                lpe_node::auth::SESSION_COOKIE,
                "Session cookie from /api/auth/login; unsafe methods also need the \
                 X-CSRF-Token header",
            ))),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("API token from /api/tokens"))
                    .build(),
            ),
        );
    }
}

/// Every guarded operation can be refused by the guard the same two ways; say so once here
/// rather than on each route.
fn document_refusals(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let refused = |why: &str| {
        ResponseBuilder::new()
            .description(why)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                let r = &mut op.responses.responses;
                r.entry("401".into())
                    .or_insert_with(|| refused("not signed in").into());
                r.entry("403".into()).or_insert_with(|| {
                    refused("the role is too low, or the CSRF token is missing").into()
                });
            }
        }
    }
}

/// The API's routes and their OpenAPI document, built together so neither can list a route
/// the other lacks.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use super::auth_api as a;
    use utoipa::OpenApi;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    let api = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(a::openapi_json))
        .routes(routes!(a::setup_status, a::setup))
        .routes(routes!(a::login))
        .routes(routes!(a::logout))
        .routes(routes!(a::me))
        .routes(routes!(a::change_own_password))
        .routes(routes!(a::list_users, a::create_user))
        .routes(routes!(a::delete_user))
        .routes(routes!(a::set_user_password))
        .routes(routes!(a::list_tokens, a::create_token))
        .routes(routes!(a::delete_token))
        .routes(routes!(list_streams, create_stream))
        .routes(routes!(
            get_stream,
            replace_stream,
            patch_stream,
            delete_stream
        ))
        .routes(routes!(start_stream))
        .routes(routes!(stop_stream))
        .routes(routes!(rotate_stream_key))
        .routes(routes!(snapshot))
        .routes(routes!(whep))
        .routes(routes!(whep_leave))
        .routes(routes!(whip))
        .routes(routes!(whip_end))
        .routes(routes!(device))
        .routes(routes!(device_history))
        .routes(routes!(metrics))
        .routes(routes!(cameras))
        .routes(routes!(microphones))
        .routes(routes!(encoders))
        .routes(routes!(events))
        .routes(routes!(acknowledge_event))
        .routes(routes!(event_stream))
        .routes(routes!(logs, set_log_level))
        .routes(routes!(mqtt_status))
        .routes(routes!(tickets))
        .routes(routes!(chain_head))
        .routes(routes!(network_spend))
        .routes(routes!(orchestrator_status))
        .routes(routes!(transcoder_status))
        .routes(routes!(wallet_view))
        .routes(routes!(fund))
        .routes(routes!(unlock))
        .routes(routes!(cancel_unlock))
        .routes(routes!(withdraw))
        .merge(super::recordings_api::routes())
        .merge(super::onvif_api::routes())
        .merge(super::ai_api::routes())
        .merge(super::detections_api::routes())
        .merge(super::update_api::routes());
    let (router, mut doc) = api.split_for_parts();
    document_refusals(&mut doc);
    (router, doc)
}

/// The OpenAPI document of every route, as `/api/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// Where the web UI's files are: configured, installed beside the binary, or the build output
/// of a source checkout.
pub fn ui_dir(cfg: &lpe_node::config::Config) -> Option<std::path::PathBuf> {
    if !cfg.http.ui_dir.is_empty() {
        return Some(cfg.http.ui_dir.clone().into());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("../share/livepeer-edge/ui")));
    beside
        .into_iter()
        .chain([std::path::PathBuf::from("web-ui/dist")])
        .find(|d| d.join("index.html").is_file())
}

pub fn router(node: Arc<Node>, counters: Arc<Counters>) -> Router {
    let hls = ServeDir::new(node.hls_root());
    let (api, doc) = routes();
    let guard = super::auth_api::Guard::new(Arc::clone(&node), &doc);
    let root = node.hls_root().to_path_buf();
    let hls = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn(move |req: Request, next| {
            confine_to(root.clone(), req, next)
        }))
        .service(hls);
    let api = api
        .nest_service("/hls", hls)
        .merge(super::llhls_api::router());
    let api = match ui_dir(&node.cfg) {
        Some(dir) => {
            tracing::info!("web UI from {}", dir.display());
            let files = ServeDir::new(&dir)
                .fallback(tower_http::services::ServeFile::new(dir.join("index.html")));
            api.fallback(move |req: Request| {
                let files = files.clone();
                async move {
                    let p = req.uri().path();
                    if p.starts_with("/api/") || p.starts_with("/hls/") || p.starts_with("/llhls/")
                    {
                        return ApiError::not_found("no such route").into_response();
                    }
                    use tower::ServiceExt;
                    match files.oneshot(req).await {
                        Ok(res) => res.into_response(),
                        Err(e) => match e {},
                    }
                }
            })
        }
        None => {
            tracing::warn!("web UI files not found (http.ui_dir); serving the API only");
            api.fallback(|| async { ApiError::not_found("no such route") })
        }
    };
    api.layer(axum::middleware::from_fn(ui_headers))
        .layer(axum::middleware::from_fn(read_whole_body))
        .layer(axum::middleware::from_fn_with_state(
            guard,
            super::auth_api::authorize,
        ))
        .layer(axum::Extension(Arc::new(super::auth_api::DocJson::new(
            &doc,
        ))))
        .layer(axum::middleware::from_fn(hls_headers))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&counters),
            count_requests,
        ))
        .with_state(AppState { node, counters })
}

/// The largest request body a signed-in caller may send.
const MAX_BODY: usize = 1 << 20;
/// The largest body of a public route (login, setup): whoever sends it has
/// proven nothing yet.
const MAX_PUBLIC_BODY: usize = 64 << 10;

/// Reads the whole request body once the guard has let the request through (its refusals
/// close the connection instead), so a body is never left half-read on a keep-alive
/// connection whether or not the handler wanted it; an oversized body is refused once, here.
async fn read_whole_body(req: Request, next: axum::middleware::Next) -> Response {
    // Model and bundle uploads are streamed to disk by their handlers, which bound them.
    if req.method() == axum::http::Method::POST
        && [super::ai_api::UPLOAD_PATH, super::update_api::UPLOAD_PATH].contains(&req.uri().path())
    {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let limit = if parts
        .extensions
        .get::<lpe_node::auth::Principal>()
        .is_some()
    {
        MAX_BODY
    } else {
        MAX_PUBLIC_BODY
    };
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Err(_) => {
            let mut res = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request bodies are limited to {limit} bytes"),
            )
            .into_response();
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            res
        }
    }
}

/// Counts every request by route template (bounded cardinality) and status.
async fn count_requests(
    State(counters): State<Arc<Counters>>,
    matched: Option<axum::extract::MatchedPath>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let method = req.method().to_string();
    let route = match &matched {
        Some(m) if m.as_str().starts_with("/hls") => "/hls".to_string(),
        Some(m) if m.as_str().starts_with("/llhls") => "/llhls".to_string(),
        Some(m) => m.as_str().to_string(),
        None => "unmatched".to_string(),
    };
    let res = next.run(req).await;
    counters.http_request(&method, &route, res.status().as_u16());
    res
}

/// The UI talks to no host but this one, and is never framed by another site.
async fn ui_headers(req: Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    let api = path.starts_with("/api/") || path.starts_with("/hls/") || path.starts_with("/llhls/");
    let mut res = next.run(req).await;
    if api {
        return res;
    }
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
             worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// Serves only what the node wrote under `root`: a path with escapes, or one that passes
/// through a symbolic link, is not found (the file server would follow a link anywhere).
async fn confine_to(
    root: std::path::PathBuf,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    let mut at = root;
    // The node names its files in plain ASCII; an escaped path is none of its own.
    let plain = !path.contains('%');
    let mut inside = plain;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if !inside || part == ".." || part == "." {
            inside = false;
            break;
        }
        at.push(part);
        inside = std::fs::symlink_metadata(&at).is_ok_and(|m| !m.file_type().is_symlink());
    }
    if !inside {
        return ApiError::not_found("no such HLS file").into_response();
    }
    next.run(req).await
}

/// HLS content types as players expect them, and no caching of playlists (they change
/// every segment).
async fn hls_headers(req: Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path().to_string();
    let mut res = next.run(req).await;
    if !res.status().is_success() || !path.starts_with("/hls/") {
        return res;
    }
    let headers = res.headers_mut();
    if path.ends_with(".m3u8") {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.apple.mpegurl"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    } else if path.ends_with(".ts") {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
    }
    res
}

/// The node's health: `ok`, `degraded` (it works, but a part needs attention) or `down` (it
/// cannot do its job: no store or no working encoder), which answers 503.
#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    status: HealthState,
    version: &'static str,
    uptime_s: u64,
    streams: StreamCounts,
    encoder: String,
    hardware_encoder: bool,
    /// Each subsystem on its own.
    checks: HealthChecks,
    /// Every supervised task: state, restarts, last failure.
    tasks: Vec<TaskHealth>,
}

#[derive(Serialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum HealthState {
    Ok,
    Degraded,
    Down,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Check {
    status: HealthState,
    detail: String,
}

fn check(status: HealthState, detail: impl Into<String>) -> Check {
    Check {
        status,
        detail: detail.into(),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct HealthChecks {
    store: Check,
    media: Check,
    encoders: Check,
    mqtt: Check,
    chain: Check,
    /// The supervised tasks: degraded while one is failing.
    subsystems: Check,
}

impl HealthChecks {
    fn worst(&self) -> HealthState {
        [
            &self.store,
            &self.media,
            &self.encoders,
            &self.mqtt,
            &self.chain,
            &self.subsystems,
        ]
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(HealthState::Ok)
    }
}

#[derive(Serialize, Default, utoipa::ToSchema)]
struct StreamCounts {
    total: usize,
    running: usize,
    reconnecting: usize,
    failed: usize,
}

#[utoipa::path(
    get,
    path = "/api/health",
    tag = "node",
    responses((status = 200, body = Health), (status = 503, body = Health))
)]
async fn health(State(node): State<AppState>) -> Response {
    let (streams, store) = match node.list() {
        Ok(s) => (s, check(HealthState::Ok, "readable")),
        Err(e) => (
            Vec::new(),
            check(
                HealthState::Down,
                format!("the database cannot be read: {e}"),
            ),
        ),
    };
    let mut counts = StreamCounts {
        total: streams.len(),
        ..Default::default()
    };
    for s in &streams {
        use lpe_node::views::StreamState;
        match s.status.state {
            StreamState::Running => counts.running += 1,
            StreamState::Reconnecting => counts.reconnecting += 1,
            StreamState::Failed => counts.failed += 1,
            _ => {}
        }
    }
    let media = if counts.failed + counts.reconnecting > 0 {
        check(
            HealthState::Degraded,
            format!(
                "{} failed, {} reconnecting of {} streams",
                counts.failed, counts.reconnecting, counts.total
            ),
        )
    } else {
        check(
            HealthState::Ok,
            format!("{} of {} streams running", counts.running, counts.total),
        )
    };
    let inv = node.encoders();
    let encoders = match inv.working().len() {
        0 => check(HealthState::Down, "no encoder works"),
        n => check(
            HealthState::Ok,
            format!("{n} working; streams use {}", inv.preferred),
        ),
    };
    let mqtt = if node.cfg.mqtt.url.is_empty() {
        check(HealthState::Ok, "not configured")
    } else if node
        .counters
        .mqtt_connected
        .load(std::sync::atomic::Ordering::Relaxed)
        == 1
    {
        check(HealthState::Ok, "connected")
    } else {
        check(HealthState::Degraded, "not connected to the broker")
    };
    let watcher_reachable = node.orchestrator().ok().map(|o| o.watcher().reachable());
    let chain = if node.cfg.pm.role.is_off() {
        check(HealthState::Ok, "payments off")
    } else if node.cfg.keyless_gateway() {
        check(
            HealthState::Ok,
            "paying through the remote signer; no chain needed",
        )
    } else if node.chain().is_err() {
        check(HealthState::Degraded, "the chain is not reachable yet")
    } else if watcher_reachable == Some(false) {
        check(
            HealthState::Degraded,
            "the chain is out of reach; payments use the last head seen",
        )
    } else {
        check(HealthState::Ok, "connected")
    };
    let tasks = node.subsystems.health();
    let failing: Vec<String> = tasks
        .iter()
        .filter(|t| matches!(t.state, TaskState::Restarting | TaskState::Failed))
        .map(|t| {
            format!(
                "{} {}: {}",
                t.name,
                if t.state == TaskState::Failed {
                    "failed"
                } else {
                    "restarting"
                },
                t.last_error.as_deref().unwrap_or("")
            )
        })
        .collect();
    let subsystems = if failing.is_empty() {
        check(HealthState::Ok, format!("{} supervised tasks", tasks.len()))
    } else {
        check(HealthState::Degraded, failing.join("; "))
    };
    let checks = HealthChecks {
        store,
        media,
        encoders,
        mqtt,
        chain,
        subsystems,
    };
    let status = checks.worst();
    let body = Health {
        status,
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: node.uptime().as_secs(),
        streams: counts,
        encoder: inv.preferred.clone(),
        hardware_encoder: inv.has_hardware(),
        checks,
        tasks,
    };
    let code = if status == HealthState::Down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

/// A stream as returned by the API: the node's view plus, for RTMP sources, the server URL
/// publishers use (OBS's "Server") and, in the answer that shows the key, the full push URL.
#[derive(Serialize, utoipa::ToSchema)]
struct StreamOut {
    #[serde(flatten)]
    view: lpe_node::StreamView,
    rtmp_server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtmp_url: Option<String>,
}

fn push_server(node: &Node, headers: &HeaderMap, app: &Option<String>) -> Option<String> {
    let app = app.as_ref()?;
    let host = if !node.cfg.rtmp.public_host.is_empty() {
        node.cfg.rtmp.public_host.clone()
    } else {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| {
                // Strip the HTTP port; keep an IPv6 literal intact.
                match h.rfind(':') {
                    Some(i) if !h[i..].contains(']') => h[..i].to_string(),
                    _ => h.to_string(),
                }
            })
            .unwrap_or_else(|| node.cfg.rtmp.listen.ip().to_string())
    };
    Some(format!(
        "rtmp://{host}:{}{app}",
        node.cfg.rtmp.listen.port()
    ))
}

fn out(node: &Node, headers: &HeaderMap, view: lpe_node::StreamView) -> StreamOut {
    let rtmp_server = push_server(node, headers, &view.rtmp_app);
    let rtmp_url = rtmp_server
        .as_ref()
        .zip(view.stream_key.as_ref())
        .map(|(server, key)| format!("{server}/{key}"));
    StreamOut {
        view,
        rtmp_server,
        rtmp_url,
    }
}

fn outcome(node: &Node, headers: &HeaderMap, o: Outcome) -> Response {
    match o {
        Outcome::Stream(v) => Json(out(node, headers, *v)).into_response(),
        Outcome::Deleted
        | Outcome::Auth(_)
        | Outcome::Done
        | Outcome::LogLevel(_)
        | Outcome::Restarting => StatusCode::NO_CONTENT.into_response(),
        Outcome::Snapshot { jpeg, .. } => {
            ([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response()
        }
        Outcome::Payment(r) => Json(r).into_response(),
        Outcome::Orchestrator(s) => Json(s).into_response(),
        Outcome::Update(j) => (StatusCode::ACCEPTED, Json(j)).into_response(),
        Outcome::Desired(r) => Json(r).into_response(),
        Outcome::Mined(m) => tx_view(m).into_response(),
        Outcome::Alert(e) => Json(e).into_response(),
    }
}

#[utoipa::path(
    get,
    path = "/api/streams",
    tag = "streams",
    responses((status = 200, body = [StreamOut])),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn list_streams(
    State(node): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<StreamOut>>, ApiError> {
    let views = node.list()?;
    Ok(Json(
        views.into_iter().map(|v| out(&node, &headers, v)).collect(),
    ))
}

#[utoipa::path(
    post,
    path = "/api/streams",
    tag = "streams",
    request_body = StreamSpec,
    responses((status = 201, body = StreamOut), (status = 422, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn create_stream(
    State(node): State<AppState>,
    By(actor): By,
    headers: HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let spec = StreamSpec::from_json(body).map_err(CommandError::Invalid)?;
    let o = node.run(actor, Command::CreateStream(spec)).await?;
    let mut res = outcome(&node, &headers, o);
    *res.status_mut() = StatusCode::CREATED;
    Ok(res)
}

#[utoipa::path(
    get,
    path = "/api/streams/{id}",
    tag = "streams",
    params(("id" = String, Path, description = "stream id")),
    responses((status = 200, body = StreamOut), (status = 404, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn get_stream(
    State(node): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<StreamOut>, ApiError> {
    Ok(Json(out(&node, &headers, node.view(&id)?)))
}

#[utoipa::path(
    put,
    path = "/api/streams/{id}",
    tag = "streams",
    params(("id" = String, Path, description = "stream id")),
    request_body = StreamSpec,
    responses((status = 200, body = StreamOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn replace_stream(
    State(node): State<AppState>,
    By(actor): By,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let spec = StreamSpec::from_json(body).map_err(CommandError::Invalid)?;
    let o = node.run(actor, Command::ReplaceStream { id, spec }).await?;
    Ok(outcome(&node, &headers, o))
}

#[utoipa::path(
    patch,
    path = "/api/streams/{id}",
    tag = "streams",
    params(("id" = String, Path, description = "stream id")),
    request_body(content = Object, description = "A JSON merge patch (RFC 7386) of the stream's spec: members to change, null to remove."),
    responses((status = 200, body = StreamOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn patch_stream(
    State(node): State<AppState>,
    By(actor): By,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let serde_json::Value::Object(patch) = patch else {
        return Err(ApiError::invalid(
            "body",
            "a patch is a JSON object (RFC 7386)",
        ));
    };
    let o = node.run(actor, Command::PatchStream { id, patch }).await?;
    Ok(outcome(&node, &headers, o))
}

#[utoipa::path(
    delete,
    path = "/api/streams/{id}",
    tag = "streams",
    params(("id" = String, Path, description = "stream id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn delete_stream(
    State(node): State<AppState>,
    By(actor): By,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let o = node.run(actor, Command::DeleteStream { id }).await?;
    Ok(outcome(&node, &headers, o))
}

#[utoipa::path(
    post,
    path = "/api/streams/{id}/start",
    tag = "streams",
    params(("id" = String, Path, description = "stream id")),
    responses((status = 200, body = StreamOut), (status = 404, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn start_stream(
    State(node): State<AppState>,
    By(actor): By,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let o = node.run(actor, Command::StartStream { id }).await?;
    Ok(outcome(&node, &headers, o))
}

/// A new stream key for an RTMP input, shown in this answer only; the old key stops working
/// and a publisher using it is refused from its next connection.
#[utoipa::path(
    post,
    path = "/api/streams/{id}/stream-key",
    tag = "streams",
    params(("id" = String, Path, description = "stream id")),
    responses((status = 200, body = StreamOut), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn rotate_stream_key(
    State(node): State<AppState>,
    By(actor): By,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let o = node.run(actor, Command::RotateStreamKey { id }).await?;
    Ok(outcome(&node, &headers, o))
}

#[utoipa::path(
    post,
    path = "/api/streams/{id}/stop",
    tag = "streams",
    params(("id" = String, Path, description = "stream id")),
    responses((status = 200, body = StreamOut), (status = 404, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn stop_stream(
    State(node): State<AppState>,
    By(actor): By,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let o = node.run(actor, Command::StopStream { id }).await?;
    Ok(outcome(&node, &headers, o))
}

#[utoipa::path(
    get,
    path = "/api/streams/{id}/snapshot.jpg",
    tag = "streams",
    params(("id" = String, Path, description = "stream id")),
    responses((status = 200, content_type = "image/jpeg", body = Vec<u8>), (status = 404, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn snapshot(
    State(node): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    node.view(&id)?;
    // A stream that is not producing has no current representation (RFC 9110's 404); it
    // is the stream's state, not the server, that is unavailable.
    let jpeg = node.snapshot(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_picture",
            "the stream has no picture yet; it is not running or has not produced a frame",
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        jpeg,
    )
        .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
struct WhepQuery {
    /// The rendition to watch; absent: the smallest one encoded here.
    rendition: Option<String>,
}

/// WebRTC preview (WHEP, RFC 9725): the body is the browser's SDP offer (H.264, no trickle
/// ICE); the answer comes back with the session's URL in `Location`. The rendition is sent as
/// it is encoded, with no encode per viewer.
#[utoipa::path(
    post,
    path = "/api/streams/{id}/whep",
    tag = "streams",
    params(("id" = String, Path, description = "stream id"), WhepQuery),
    request_body(content = String, content_type = "application/sdp"),
    responses(
        (status = 201, content_type = "application/sdp", body = String, description = "the SDP answer; `Location` is the session"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the stream is not running"),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn whep(
    State(node): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<WhepQuery>, axum::extract::rejection::QueryRejection>,
    offer: String,
) -> Result<Response, ApiError> {
    use lpe_node::views::WhepError as W;
    let Query(q) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    node.view(&id)?;
    let (session, answer) = node
        .whep(&id, &offer, q.rendition.as_deref())
        .await
        .map_err(|e| match e {
            W::BadOffer(_) | W::NoH264 => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_offer", e.to_string())
            }
            W::NotRunning => ApiError::new(StatusCode::CONFLICT, "not_running", e.to_string()),
            W::NoRendition(_) => ApiError::invalid("rendition", e.to_string()),
            W::Full => ApiError {
                retry_after_s: Some(10),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "full", e.to_string())
            },
            W::Failed(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "webrtc", e.to_string())
            }
        })?;
    Ok(sdp_answer(
        &format!("/api/streams/{id}/whep/{session}"),
        answer,
    ))
}

/// `201 Created` with an SDP answer and the session's URL: how WHIP and WHEP answer.
fn sdp_answer(location: &str, answer: String) -> Response {
    (
        StatusCode::CREATED,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/sdp"),
            ),
            (
                header::LOCATION,
                HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/")),
            ),
        ],
        answer,
    )
        .into_response()
}

/// WHIP ingest (RFC 9725): an encoder (OBS 30+, a browser) publishes to a pushed stream over
/// WebRTC. Public like RTMP ingest: the stream's key, sent as `Authorization: Bearer <key>`,
/// is the credential. The body is the publisher's SDP offer; the answer comes back with the
/// session's URL in `Location` (DELETE it to stop publishing).
#[utoipa::path(
    post,
    path = "/api/whip",
    tag = "streams",
    request_body(content = String, content_type = "application/sdp"),
    responses(
        (status = 201, content_type = "application/sdp", body = String, description = "the SDP answer; `Location` is the session"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the stream already has a publisher"),
        (status = 500, body = ErrorBody)),
)]
async fn whip(
    State(node): State<AppState>,
    headers: HeaderMap,
    offer: String,
) -> Result<Response, ApiError> {
    use lpe_node::views::WhipError as W;
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the stream's key as 'Authorization: Bearer <stream key>'",
        )
    };
    if key.is_empty() {
        return Err(refused());
    }
    let (session, answer) = node.whip(key, &offer).await.map_err(|e| match e {
        W::UnknownKey => refused(),
        W::BadOffer(_) => ApiError::new(StatusCode::BAD_REQUEST, "bad_offer", e.to_string()),
        W::Busy => ApiError::new(StatusCode::CONFLICT, "busy", e.to_string()),
        W::Failed(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "webrtc", e.to_string()),
    })?;
    Ok(sdp_answer(&format!("/api/whip/{session}"), answer))
}

/// Stops a WHIP publisher; the session's URL is its credential.
#[utoipa::path(
    delete,
    path = "/api/whip/{session}",
    tag = "streams",
    params(("session" = String, Path)),
    responses((status = 200, description = "stopped"), (status = 404, body = ErrorBody)),
)]
async fn whip_end(
    State(node): State<AppState>,
    Path(session): Path<String>,
) -> Result<StatusCode, ApiError> {
    if node.whip_end(&session) {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found("no such WHIP session"))
    }
}

/// Ends a WebRTC viewer.
#[utoipa::path(
    delete,
    path = "/api/streams/{id}/whep/{session}",
    tag = "streams",
    params(("id" = String, Path, description = "stream id"), ("session" = String, Path)),
    responses((status = 200, description = "ended"), (status = 404, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn whep_leave(
    State(node): State<AppState>,
    Path((id, session)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if node.whep_end(&id, &session) {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found("no such WebRTC session"))
    }
}

/// The device: identity, version, uptime and the latest health sample.
#[derive(Serialize, utoipa::ToSchema)]
struct DeviceView {
    identity: lpe_node::auth::DeviceIdentity,
    version: &'static str,
    node_uptime_s: u64,
    /// `null` until the first sample (a few seconds after start).
    stats: Option<lpe_drivers::system::DeviceStats>,
    encoder: String,
    hardware_encoder: bool,
    /// The status LED and the button, as found.
    hardware: lpe_node::hardware::HardwareView,
}

#[utoipa::path(get, path = "/api/device", tag = "device",
    responses((status = 200, body = DeviceView)),
    security(("session" = ["viewer"]), ("token" = ["viewer"])))]
async fn device(State(node): State<AppState>) -> Result<Json<DeviceView>, ApiError> {
    let inv = node.encoders();
    Ok(Json(DeviceView {
        identity: node.device_identity().map_err(CommandError::from)?,
        version: env!("CARGO_PKG_VERSION"),
        node_uptime_s: node.uptime().as_secs(),
        stats: node.device.latest(),
        encoder: inv.preferred.clone(),
        hardware_encoder: inv.has_hardware(),
        hardware: node.hardware.view(),
    }))
}

/// The last hour of device health, one point every 5 s.
#[utoipa::path(get, path = "/api/device/history", tag = "device",
    responses((status = 200, body = [lpe_node::device::DevicePoint])),
    security(("session" = ["viewer"]), ("token" = ["viewer"])))]
async fn device_history(State(node): State<AppState>) -> Json<Vec<lpe_node::device::DevicePoint>> {
    Json(node.device.points())
}

/// Prometheus text exposition (any signed-in role, or a `metrics` token).
#[utoipa::path(get, path = "/metrics", tag = "node",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String)),
    security(("session" = ["metrics"]), ("token" = ["metrics"])))]
async fn metrics(State(node): State<AppState>) -> Response {
    let text = tokio::task::spawn_blocking(move || crate::metrics::render(&node, &node.counters))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/api/cameras",
    tag = "device",
    responses((status = 200, body = [lpe_drivers::camera::CameraInfo])),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn cameras() -> Json<Vec<lpe_drivers::camera::CameraInfo>> {
    let list = tokio::task::spawn_blocking(lpe_drivers::camera::discover)
        .await
        .unwrap_or_default();
    Json(list)
}

/// ALSA capture devices, each with the camera it belongs to (a USB camera's microphone).
#[utoipa::path(
    get,
    path = "/api/microphones",
    tag = "device",
    responses((status = 200, body = [lpe_drivers::microphone::Microphone])),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn microphones() -> Json<Vec<lpe_drivers::microphone::Microphone>> {
    let list = tokio::task::spawn_blocking(lpe_drivers::microphone::discover)
        .await
        .unwrap_or_default();
    Json(list)
}

#[utoipa::path(
    get,
    path = "/api/encoders",
    tag = "device",
    responses((status = 200, body = lpe_node::views::EncoderInventory)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn encoders(State(node): State<AppState>) -> Json<lpe_node::views::EncoderInventory> {
    Json(node.encoders().clone())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EventQuery {
    stream_id: Option<String>,
    /// Only alerts: `all`, or `open` (those not yet acknowledged).
    #[param(inline)]
    alerts: Option<AlertFilter>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

/// The newest events, newest first; with `alerts`, only alerts (`open`: those no one has
/// acknowledged yet).
#[utoipa::path(
    get,
    path = "/api/events",
    tag = "node",
    params(EventQuery),
    responses((status = 200, body = [lpe_node::views::StoredEvent]), (status = 400, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn events(
    State(node): State<AppState>,
    query: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<lpe_node::views::StoredEvent>>, ApiError> {
    let Query(q) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100).min(1000);
    let events = node
        .recent_events(q.stream_id.as_deref(), q.alerts, limit)
        .await
        .map_err(CommandError::from)?;
    Ok(Json(events))
}

/// Acknowledges an alert for every operator: it leaves the open alerts. The first
/// acknowledgement stands; acknowledging again answers the event as it is.
#[utoipa::path(
    post,
    path = "/api/events/{id}/acknowledge",
    tag = "node",
    params(("id" = i64, Path, description = "event id")),
    responses((status = 200, body = lpe_node::views::StoredEvent), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the event is not an alert (`conflict`)")),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn acknowledge_event(
    State(node): State<AppState>,
    By(actor): By,
    headers: HeaderMap,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path(event_id) = id.map_err(|_| ApiError::not_found("no such event"))?;
    let o = node
        .run(actor, Command::AcknowledgeAlert { event_id })
        .await?;
    Ok(outcome(&node, &headers, o))
}

/// Server-sent events: every node event as it happens (`event: <kind>`, JSON data).
#[utoipa::path(get, path = "/api/events/stream", tag = "node",
    responses((status = 200, content_type = "text/event-stream", description = "events as they happen")),
    security(("session" = ["viewer"]), ("token" = ["viewer"])))]
async fn event_stream(State(node): State<AppState>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let rx = node.events.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    let ev = Event::default()
                        .event(e.kind.as_str())
                        .json_data(&e)
                        .unwrap_or_default();
                    return Some((Ok::<_, std::convert::Infallible>(ev), rx));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Deserialize)]
struct LogQuery {
    lines: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct LogView {
    level: String,
    lines: Vec<String>,
}

/// The node's recent log lines (newest last) and its level.
#[utoipa::path(get, path = "/api/logs", tag = "node",
    params(("lines" = Option<usize>, Query, description = "how many (default 200, at most 2000)")),
    responses((status = 200, body = LogView), (status = 400, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"])))]
async fn logs(
    State(node): State<AppState>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LogView>, ApiError> {
    let Query(q) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    Ok(Json(LogView {
        level: node.log_level(),
        lines: node.recent_log_lines(q.lines.unwrap_or(200).min(2000)),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct LogLevelRequest {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a filter directive.
    level: String,
}

/// Changes the log level while the node runs (not kept across restarts).
#[utoipa::path(put, path = "/api/logs", tag = "node", request_body = LogLevelRequest,
    responses((status = 204), (status = 422, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"])))]
async fn set_log_level(
    State(node): State<AppState>,
    By(actor): By,
    ApiJson(req): ApiJson<LogLevelRequest>,
) -> Result<StatusCode, ApiError> {
    node.run(actor, Command::SetLogLevel(req.level)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
struct MqttView {
    enabled: bool,
    /// The broker, as configured (credentials are never shown).
    url: String,
    connected: bool,
    device_id: Option<String>,
    topics: Option<String>,
    protocol: String,
    telemetry_seconds: u32,
    homeassistant: bool,
}

/// The fleet connection (configured in the `mqtt` section of the configuration).
#[utoipa::path(get, path = "/api/mqtt", tag = "node",
    responses((status = 200, body = MqttView)),
    security(("session" = ["viewer"]), ("token" = ["viewer"])))]
async fn mqtt_status(State(node): State<AppState>) -> Json<MqttView> {
    let m = &node.cfg.mqtt;
    let device_id = node.known_device_id();
    Json(MqttView {
        enabled: !m.url.is_empty(),
        url: m.url.clone(),
        connected: node
            .counters
            .mqtt_connected
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1,
        topics: device_id.as_ref().map(|d| format!("{}/{d}/", m.prefix)),
        device_id,
        protocol: m.protocol.clone(),
        telemetry_seconds: m.telemetry_seconds,
        homeassistant: m.homeassistant,
    })
}

/// `GET /api/pm/chain`: the block watcher's last head and whether the chain is reachable.
#[utoipa::path(
    get,
    path = "/api/pm/chain",
    tag = "payments",
    responses((status = 200, body = lpe_node::views::HeadView), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn chain_head(
    State(node): State<AppState>,
) -> Result<Json<lpe_node::views::HeadView>, ApiError> {
    Ok(Json(node.orchestrator()?.watcher().view()))
}

#[derive(Serialize, utoipa::ToSchema)]
struct SpendResponse {
    /// Per orchestrator: segments and tickets sent, expected value spent, verified pixels,
    /// price and failures. Empty when the node is not a gateway.
    orchestrators: Vec<lpe_node::views::OrchestratorSpend>,
}

/// `GET /api/network/spend`: what the gateway spent on each orchestrator (each offloaded
/// stream's status says where its renditions came from).
#[utoipa::path(
    get,
    path = "/api/network/spend",
    tag = "payments",
    responses((status = 200, body = SpendResponse)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn network_spend(State(node): State<AppState>) -> Json<SpendResponse> {
    Json(SpendResponse {
        orchestrators: node.offload_spend(),
    })
}

/// `GET /api/network/orchestrator`: this account as an orchestrator on chain — the service
/// URI it published beside the one it serves, pool membership, activity — and, when the
/// node calls reward, where this round's call stands.
#[utoipa::path(
    get,
    path = "/api/network/orchestrator",
    tag = "payments",
    responses((status = 200, body = lpe_node::views::OrchestratorView), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn orchestrator_status(
    State(node): State<AppState>,
) -> Result<Json<lpe_node::views::OrchestratorView>, ApiError> {
    Ok(Json(node.orchestrator_status().await?))
}

/// `GET /api/network/transcoder`: this node as the remote transcoder of an orchestrator
/// (`net.orchestrator_addr`) — attached or not, tasks in flight, segments, pixels, errors.
#[utoipa::path(
    get,
    path = "/api/network/transcoder",
    tag = "payments",
    responses((status = 200, body = lpe_node::views::TranscoderView), (status = 404, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn transcoder_status(
    State(node): State<AppState>,
) -> Result<Json<lpe_node::views::TranscoderView>, ApiError> {
    node.transcoder_view().map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_a_transcoder",
            "this node does not transcode for an orchestrator (net.orchestrator_addr is not set)",
        )
    })
}

#[derive(Deserialize)]
struct TicketQuery {
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TicketsResponse {
    counts: lpe_node::views::TicketCounts,
    tickets: Vec<lpe_node::views::TicketRecord>,
}

#[utoipa::path(
    get,
    path = "/api/pm/tickets",
    tag = "payments",
    params(("limit" = Option<u32>, Query)),
    responses((status = 200, body = TicketsResponse), (status = 400, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn tickets(
    State(node): State<AppState>,
    query: Result<Query<TicketQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TicketsResponse>, ApiError> {
    let Query(q) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let counts = node.ticket_counts().map_err(CommandError::from)?;
    let tickets = node
        .recent_tickets(q.limit.unwrap_or(100).min(1000))
        .map_err(CommandError::from)?;
    Ok(Json(TicketsResponse { counts, tickets }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct WalletView {
    role: lpe_core::role::NetworkRole,
    #[schema(value_type = Option<String>)]
    address: Option<lpe_pm::Address>,
    /// Wei, decimal strings.
    balance: String,
    deposit: String,
    reserve: String,
    withdraw_round: String,
}

#[utoipa::path(
    get,
    path = "/api/pm/wallet",
    tag = "payments",
    responses((status = 409, body = ErrorBody, description = "payments are off, or this is not an orchestrator"), (status = 200, body = WalletView), (status = 503, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn wallet_view(State(node): State<AppState>) -> Result<Json<WalletView>, ApiError> {
    let c = node.chain()?;
    let address = c.account().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_account", "no account")
    })?;
    let balance = c.balance(address).await.map_err(chain_error)?;
    let info = c.sender_info(address).await.map_err(chain_error)?;
    Ok(Json(WalletView {
        role: node.cfg.pm.role,
        address: Some(address),
        balance: balance.to_string(),
        deposit: info.deposit.to_string(),
        reserve: info.reserve.to_string(),
        withdraw_round: info.withdraw_round.to_string(),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct FundRequest {
    /// Wei, decimal strings (amounts exceed JSON's safe integers).
    deposit: String,
    reserve: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TxView {
    tx_hash: String,
    block: u64,
}

fn tx_view(m: lpe_node::views::Mined) -> Json<TxView> {
    Json(TxView {
        tx_hash: format!("{:#x}", m.tx_hash),
        block: m.block,
    })
}

#[utoipa::path(
    post,
    path = "/api/pm/fund",
    tag = "payments",
    request_body = FundRequest,
    responses((status = 200, body = TxView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn fund(
    State(node): State<AppState>,
    By(actor): By,
    ApiJson(req): ApiJson<FundRequest>,
) -> Result<Json<TxView>, ApiError> {
    let amount = |field: &str, v: &str| -> Result<lpe_pm::U256, ApiError> {
        v.parse().map_err(|_| {
            ApiError::invalid(
                field,
                format!("'{v}' is not an amount in wei (a decimal integer)"),
            )
        })
    };
    let deposit = amount("deposit", &req.deposit)?;
    let reserve = amount("reserve", &req.reserve)?;
    funding(
        &node,
        actor,
        Funding::DepositAndReserve { deposit, reserve },
    )
    .await
}

async fn funding(node: &AppState, actor: Actor, f: Funding) -> Result<Json<TxView>, ApiError> {
    match node.run(actor, Command::Funding(f)).await? {
        Outcome::Mined(m) => Ok(tx_view(m)),
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "unexpected outcome",
        )),
    }
}

#[utoipa::path(
    post,
    path = "/api/pm/unlock",
    tag = "payments",
    responses((status = 200, body = TxView), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn unlock(State(node): State<AppState>, By(actor): By) -> Result<Json<TxView>, ApiError> {
    funding(&node, actor, Funding::Unlock).await
}

#[utoipa::path(
    post,
    path = "/api/pm/cancel-unlock",
    tag = "payments",
    responses((status = 200, body = TxView), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn cancel_unlock(
    State(node): State<AppState>,
    By(actor): By,
) -> Result<Json<TxView>, ApiError> {
    funding(&node, actor, Funding::CancelUnlock).await
}

#[utoipa::path(
    post,
    path = "/api/pm/withdraw",
    tag = "payments",
    responses((status = 200, body = TxView), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn withdraw(State(node): State<AppState>, By(actor): By) -> Result<Json<TxView>, ApiError> {
    funding(&node, actor, Funding::Withdraw).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The web UI's TypeScript types are generated from `web-ui/openapi.json` when it is
    /// built; the file must be the document this code serves. `livepeer-edge openapi >
    /// web-ui/openapi.json` brings it up to date.
    #[test]
    fn the_ui_builds_from_the_current_openapi_document() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-ui/openapi.json");
        let current = openapi().to_pretty_json().expect("document") + "\n";
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == current,
            "web-ui/openapi.json is stale: run `livepeer-edge openapi > web-ui/openapi.json`"
        );
    }
}
