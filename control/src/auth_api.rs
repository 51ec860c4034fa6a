//! The HTTP face of [`lpe_node::auth`]: the access guard in front of every route, and the setup,
//! login, user and token routes.
//!
//! The guard reads what each route needs from the OpenAPI document itself (its security
//! requirements name the role), so the document cannot promise less protection than the
//! server enforces; an `/api` route missing from the document needs the admin role.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use crate::http::{ApiError, ApiJson, AppState, By, ErrorBody};
use lpe_http::PeerAddr;
use lpe_node::Actor;
use lpe_node::auth::{
    Access, AuthCommand, AuthError, AuthOutcome, CSRF_HEADER, DeviceIdentity, Principal, Role,
    SESSION_COOKIE, SetupRequest, same_secret,
};
use lpe_node::views::TokenRecord;
use lpe_node::{Command, CommandError, Node, Outcome};

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let msg = e.to_string();
        match e {
            AuthError::Invalid(m, field) => ApiError::invalid(field, m),
            AuthError::BadCredentials | AuthError::BadSetupCode => {
                ApiError::new(StatusCode::UNAUTHORIZED, "bad_credentials", msg)
            }
            AuthError::Throttled(s) => ApiError {
                retry_after_s: Some(s),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "throttled", msg)
            },
            AuthError::SetupDone => ApiError::new(StatusCode::CONFLICT, "setup_done", msg),
            AuthError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            AuthError::NotFound(m) => ApiError::not_found(m),
            AuthError::Storage(e) => CommandError::Storage(e).into(),
            AuthError::Hash => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg),
            AuthError::Busy => ApiError {
                retry_after_s: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", msg)
            },
        }
    }
}

/// The OpenAPI document, rendered once.
pub struct DocJson(String);

impl DocJson {
    pub fn new(doc: &utoipa::openapi::OpenApi) -> Self {
        Self(doc.to_json().unwrap_or_else(|_| "{}".into()))
    }
}

/// What each (method, route) needs, read from the OpenAPI document.
#[derive(Clone)]
pub struct Guard {
    node: Arc<Node>,
    policy: Arc<HashMap<(Method, String), Access>>,
}

/// Reads the access each operation needs from its security requirements: none → public;
/// otherwise the strongest role named (`admin` > `viewer` > `metrics`).
pub fn policy(doc: &utoipa::openapi::OpenApi) -> HashMap<(Method, String), Access> {
    let json = serde_json::to_value(doc).unwrap_or_default();
    let mut map = HashMap::new();
    let Some(paths) = json.get("paths").and_then(|p| p.as_object()) else {
        return map;
    };
    for (path, item) in paths {
        let Some(ops) = item.as_object() else {
            continue;
        };
        for (method, op) in ops {
            let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            let roles: Vec<String> = op
                .get("security")
                .and_then(|s| s.as_array())
                .into_iter()
                .flatten()
                .filter_map(|req| req.as_object())
                .flat_map(|req| req.values())
                .filter_map(|scopes| scopes.as_array())
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect();
            let access = if roles.iter().any(|r| r == "admin") {
                Access::Admin
            } else if roles.iter().any(|r| r == "viewer") {
                Access::Viewer
            } else if roles.iter().any(|r| r == "metrics") {
                Access::Metrics
            } else {
                Access::Public
            };
            map.insert((method, path.clone()), access);
        }
    }
    map
}

impl Guard {
    pub fn new(node: Arc<Node>, doc: &utoipa::openapi::OpenApi) -> Self {
        Self {
            node,
            policy: Arc::new(policy(doc)),
        }
    }

    fn access(&self, method: &Method, matched: Option<&str>, path: &str) -> Access {
        // HEAD is served by GET routes.
        let method = if method == Method::HEAD {
            Method::GET
        } else {
            method.clone()
        };
        if let Some(route) = matched
            && let Some(a) = self.policy.get(&(method, route.to_string()))
        {
            return *a;
        }
        // Deny by default under the API; the HLS output and the web UI's files are public.
        if path.starts_with("/api/") || path == "/payment" || path == "/metrics" {
            if matched.is_some() {
                Access::Admin
            } else {
                // No route matched: let the fallback answer 404.
                Access::Public
            }
        } else {
            Access::Public
        }
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// The access guard: resolves the caller, checks the route's role and, for cookie sessions,
/// the CSRF token on unsafe methods; hands the [`Principal`] to the handler. It runs before
/// any body is read: a refused request's body is never buffered, and the connection it came
/// on is closed rather than drained.
pub async fn authorize(
    State(guard): State<Guard>,
    matched: Option<MatchedPath>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    match admit(&guard, matched, req).await {
        Ok(Admitted::Public(req)) => next.run(req).await,
        Ok(Admitted::Caller(req)) => next.run(req).await,
        Err(refusal) => {
            let mut res = refusal.into_response();
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            res
        }
    }
}

enum Admitted {
    /// A public route: no caller looked up.
    Public(Request),
    /// The request, carrying its [`Principal`].
    Caller(Request),
}

async fn admit(
    guard: &Guard,
    matched: Option<MatchedPath>,
    mut req: Request,
) -> Result<Admitted, ApiError> {
    let access = guard.access(
        req.method(),
        matched.as_ref().map(|m| m.as_str()),
        req.uri().path(),
    );
    // Public routes (the HLS output, the UI's files, login, peers' payments) act on no one's
    // authority: the caller is not looked up for them.
    if access == Access::Public {
        return Ok(Admitted::Public(req));
    }
    let found = match guard
        .node
        .principal(bearer(req.headers()), cookie(req.headers(), SESSION_COOKIE))
        .await
    {
        Ok(p) => p,
        Err(e) => return Err(ApiError::from(CommandError::Storage(e))),
    };
    let Some(p) = found else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in, or send an API token as 'Authorization: Bearer <token>'",
        ));
    };
    if !access.allows(p.role) {
        let role = if access == Access::Admin {
            "admin"
        } else {
            "viewer"
        };
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs the {role} role"),
        ));
    }
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method && let Some(expected) = &p.csrf {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same_secret(sent, expected) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong X-CSRF-Token header for a cookie session",
            ));
        }
    }
    req.extensions_mut().insert(p);
    Ok(Admitted::Caller(req))
}

fn caller(principal: Option<Extension<Principal>>) -> Result<Principal, ApiError> {
    principal
        .map(|Extension(p)| p)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "sign in first"))
}

async fn run(node: &AppState, actor: Actor, cmd: AuthCommand) -> Result<AuthOutcome, ApiError> {
    match node.run(actor, Command::Auth(cmd)).await? {
        Outcome::Auth(o) => Ok(o),
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "unexpected outcome",
        )),
    }
}

/// The signed-in user as the UI sees it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub user: String,
    pub role: Role,
    /// Echo in `X-CSRF-Token` on every unsafe request made with the session cookie.
    pub csrf_token: Option<String>,
    pub device: DeviceIdentity,
}

fn session_response(node: &Node, o: AuthOutcome, secure: bool) -> Result<Response, ApiError> {
    let AuthOutcome::Session {
        user,
        role,
        session_id,
        csrf,
        max_age_s,
    } = o
    else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "unexpected outcome",
        ));
    };
    let cookie = format!(
        "{SESSION_COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    );
    let device = node.device_identity().map_err(CommandError::from)?;
    let mut res = Json(SessionView {
        user,
        role,
        csrf_token: Some(csrf),
        device,
    })
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

/// `GET /api/openapi.json`: this document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "node",
    responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json(Extension(doc): Extension<Arc<DocJson>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        doc.0.clone(),
    )
        .into_response()
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SetupStatus {
    /// True until an admin exists; the setup code is then on the node's console.
    pub required: bool,
    pub device: DeviceIdentity,
}

#[utoipa::path(get, path = "/api/setup", tag = "auth",
    responses((status = 200, body = SetupStatus)))]
pub async fn setup_status(State(node): State<AppState>) -> Result<Json<SetupStatus>, ApiError> {
    Ok(Json(SetupStatus {
        required: node.setup_required().map_err(CommandError::from)?,
        device: node.device_identity().map_err(CommandError::from)?,
    }))
}

/// First-boot setup: the one-time code, the admin password, the device's name and role.
/// Answers like a login (a session cookie) so the UI goes straight on.
#[utoipa::path(post, path = "/api/setup", tag = "auth", request_body = SetupRequest,
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn setup(
    State(node): State<AppState>,
    By(actor): By,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    ApiJson(req): ApiJson<SetupRequest>,
) -> Result<Response, ApiError> {
    let o = run(
        &node,
        actor.clone(),
        AuthCommand::Setup {
            req,
            ip: Some(peer.ip()),
        },
    )
    .await?;
    tracing::info!("first-boot setup done");
    session_response(&node, o, node.cfg.http.tls)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionView, description = "sets the session cookie"),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(node): State<AppState>,
    By(actor): By,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let name = req.username.clone();
    let o = run(
        &node,
        actor.clone(),
        AuthCommand::Login {
            username: req.username,
            password: req.password,
            ip: Some(peer.ip()),
        },
    )
    .await
    .inspect_err(|e| {
        if e.status == StatusCode::UNAUTHORIZED || e.status == StatusCode::TOO_MANY_REQUESTS {
            tracing::warn!(user = %name, from = %peer.ip(), "login refused: {}", e.message);
        }
    })?;
    session_response(&node, o, node.cfg.http.tls)
}

#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    responses((status = 204, description = "the session is ended and the cookie cleared"),
        (status = 401, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"])))]
pub async fn logout(
    State(node): State<AppState>,
    By(actor): By,
    principal: Option<Extension<Principal>>,
) -> Result<Response, ApiError> {
    let p = caller(principal)?;
    if let Some(session) = p.session {
        run(&node, actor.clone(), AuthCommand::Logout { session }).await?;
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("lpe_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(res)
}

#[utoipa::path(get, path = "/api/auth/me", tag = "auth",
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"])))]
pub async fn me(
    State(node): State<AppState>,
    principal: Option<Extension<Principal>>,
) -> Result<Json<SessionView>, ApiError> {
    let p = caller(principal)?;
    Ok(Json(SessionView {
        user: p.name,
        role: p.role,
        csrf_token: p.csrf,
        device: node.device_identity().map_err(CommandError::from)?,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordRequest {
    pub password: String,
    /// Also revoke the user's API tokens.
    #[serde(default)]
    pub revoke_tokens: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ChangePasswordRequest {
    /// The password in use now.
    pub current_password: String,
    pub password: String,
    /// Also revoke the user's API tokens.
    #[serde(default)]
    pub revoke_tokens: bool,
}

/// A signed-in user changes their own password, giving the current one (their sessions
/// end; a wrong current password counts as a failed login).
#[utoipa::path(put, path = "/api/auth/password", tag = "auth", request_body = ChangePasswordRequest,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"])))]
pub async fn change_own_password(
    State(node): State<AppState>,
    By(actor): By,
    principal: Option<Extension<Principal>>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    ApiJson(req): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let p = caller(principal)?;
    if p.session.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_user",
            "an API token has no password; sign in as the user",
        ));
    }
    run(
        &node,
        actor.clone(),
        AuthCommand::ChangeOwnPassword {
            name: p.name,
            current: req.current_password,
            password: req.password,
            revoke_tokens: req.revoke_tokens,
            ip: Some(peer.0.ip()),
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub name: String,
    pub role: String,
    pub created_ms: u64,
}

#[utoipa::path(get, path = "/api/users", tag = "auth",
    responses((status = 200, body = [UserView]), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"])))]
pub async fn list_users(State(node): State<AppState>) -> Result<Json<Vec<UserView>>, ApiError> {
    let users = node.users().map_err(CommandError::from)?;
    Ok(Json(
        users
            .into_iter()
            .map(|u| UserView {
                name: u.name,
                role: u.role,
                created_ms: u.created_ms,
            })
            .collect(),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    /// `admin` or `viewer`.
    pub role: String,
}

#[utoipa::path(post, path = "/api/users", tag = "auth", request_body = NewUser,
    responses((status = 201), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"])))]
pub async fn create_user(
    State(node): State<AppState>,
    By(actor): By,
    ApiJson(req): ApiJson<NewUser>,
) -> Result<StatusCode, ApiError> {
    run(
        &node,
        actor.clone(),
        AuthCommand::CreateUser {
            name: req.name,
            password: req.password,
            role: req.role,
        },
    )
    .await?;
    Ok(StatusCode::CREATED)
}

#[utoipa::path(delete, path = "/api/users/{name}", tag = "auth",
    params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"])))]
pub async fn delete_user(
    State(node): State<AppState>,
    By(actor): By,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    run(&node, actor.clone(), AuthCommand::DeleteUser { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/api/users/{name}/password", tag = "auth",
    params(("name" = String, Path)), request_body = PasswordRequest,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"])))]
pub async fn set_user_password(
    State(node): State<AppState>,
    By(actor): By,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<PasswordRequest>,
) -> Result<StatusCode, ApiError> {
    run(
        &node,
        actor.clone(),
        AuthCommand::SetPassword {
            name,
            password: req.password,
            revoke_tokens: req.revoke_tokens,
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/tokens", tag = "auth",
    responses((status = 200, body = [TokenRecord]), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"])))]
pub async fn list_tokens(State(node): State<AppState>) -> Result<Json<Vec<TokenRecord>>, ApiError> {
    Ok(Json(node.tokens().map_err(CommandError::from)?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    pub name: String,
    /// `admin`, `viewer` or `metrics` (may only scrape `/metrics`).
    pub role: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub record: TokenRecord,
    /// The token itself, shown this once; the node keeps only its hash.
    pub token: String,
}

#[utoipa::path(post, path = "/api/tokens", tag = "auth", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"])))]
pub async fn create_token(
    State(node): State<AppState>,
    By(actor): By,
    principal: Option<Extension<Principal>>,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<Response, ApiError> {
    let owner = caller(principal)?.user;
    match run(
        &node,
        actor.clone(),
        AuthCommand::CreateToken {
            name: req.name,
            role: req.role,
            owner,
        },
    )
    .await?
    {
        AuthOutcome::Token { record, token } => {
            Ok((StatusCode::CREATED, Json(CreatedToken { record, token })).into_response())
        }
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "unexpected outcome",
        )),
    }
}

#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "auth",
    params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"])))]
pub async fn delete_token(
    State(node): State<AppState>,
    By(actor): By,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    run(&node, actor.clone(), AuthCommand::DeleteToken { id }).await?;
    Ok(StatusCode::NO_CONTENT)
}
