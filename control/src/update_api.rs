//! `/api/system/update`: the slots and the current or last update, and updates started from
//! a bundle's URL or an upload. Both answer at once (202) with the accepted job; its progress
//! is read back from `GET /api/system/update` (and the fleet's `state`).
//! `/api/system/factory-reset`: the box erased and started as new.

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::{ApiError, AppState, By, ErrorBody};
use lpe_node::command::{Command, Outcome};
use lpe_node::update::{BundleSource, UpdateJob, UpdateRequest, UpdateView};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(update_status, update_from_url))
        .routes(routes!(update_upload))
        .routes(routes!(factory_reset))
}

/// The path whose body is streamed to disk instead of read whole (see `read_whole_body`).
pub const UPLOAD_PATH: &str = "/api/system/update/bundle";

/// Both slots (version, state, which one is booted and which boots next) and the current or
/// last update with its outcome.
#[utoipa::path(
    get,
    path = "/api/system/update",
    tag = "system",
    responses((status = 200, body = UpdateView)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn update_status(State(state): State<AppState>) -> Json<UpdateView> {
    Json(state.node.updater.view().await)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct FromUrl {
    /// Where the RAUC bundle is (http:// or https://).
    url: String,
    /// The bundle's SHA-256 (hex); checked before it is installed.
    sha256: Option<String>,
}

/// Starts an update from a bundle's URL: downloaded (resumed after an interruption, refused
/// before it starts when it would not fit), checked, installed to the other slot, rebooted
/// into. RAUC checks the bundle's signature against the image's CA.
#[utoipa::path(
    post,
    path = "/api/system/update",
    tag = "system",
    request_body = FromUrl,
    responses(
        (status = 202, body = UpdateJob),
        (status = 409, description = "An update is already running", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn update_from_url(
    State(state): State<AppState>,
    By(actor): By,
    body: Result<Json<FromUrl>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    start(
        &state,
        actor,
        UpdateRequest {
            source: BundleSource::Url(req.url),
            sha256: req.sha256,
        },
    )
    .await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    /// The bundle's SHA-256 (hex); checked before it is installed.
    sha256: Option<String>,
}

/// Starts an update from an uploaded bundle (the body, `application/octet-stream`), written
/// to the data partition first: refused when larger than the cap or than the free space.
#[utoipa::path(
    post,
    path = "/api/system/update/bundle",
    tag = "system",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 202, body = UpdateJob),
        (status = 409, description = "An update is already running", body = ErrorBody),
        (status = 413, description = "Larger than the cap", body = ErrorBody),
        (status = 507, description = "It does not fit on the data partition", body = ErrorBody),
    ),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn update_upload(
    State(state): State<AppState>,
    By(actor): By,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(q) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let updater = state.node.updater.clone();
    if updater.job().state.active() {
        return Ok(closing(ApiError::new(
            StatusCode::CONFLICT,
            "busy",
            "an update is already running",
        )));
    }
    let to = updater.upload_path();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Err(e) = receive(body, &to, length, updater.limits()).await {
        let _ = tokio::fs::remove_file(&to).await;
        return Ok(closing(e));
    }
    start(
        &state,
        actor,
        UpdateRequest {
            source: BundleSource::File(to),
            sha256: q.sha256,
        },
    )
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct FactoryReset {
    /// Keep the wallet's keystore (the node's account and its funds); default true.
    #[serde(default = "keep")]
    keep_keys: bool,
}

fn keep() -> bool {
    true
}

/// Erases the box: the node restarts and empties its data directory before it opens it
/// (streams, users, tokens, tickets, recordings' index, certificates), keeping the keystore
/// unless `keep_keys` is false. The box then needs first-boot setup again.
#[utoipa::path(
    post,
    path = "/api/system/factory-reset",
    tag = "system",
    request_body = FactoryReset,
    responses(
        (status = 202, description = "The node restarts and erases its data"),
        (status = 422, body = ErrorBody),
    ),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn factory_reset(
    State(state): State<AppState>,
    By(actor): By,
    body: Result<Json<FactoryReset>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    state
        .run(
            actor,
            Command::FactoryReset {
                keep_keys: req.keep_keys,
            },
        )
        .await?;
    Ok(StatusCode::ACCEPTED)
}

async fn start(
    state: &AppState,
    actor: lpe_node::command::Actor,
    request: UpdateRequest,
) -> Result<Response, ApiError> {
    match state.run(actor, Command::Update(request)).await? {
        Outcome::Update(job) => Ok((StatusCode::ACCEPTED, Json(*job)).into_response()),
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "unexpected outcome",
        )),
    }
}

/// The rest of a refused body is not read: the connection cannot carry another request.
fn closing(e: ApiError) -> Response {
    let mut res = e.into_response();
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

fn refusal(e: lpe_update::UpdateError) -> ApiError {
    use lpe_update::UpdateError as E;
    let status = match e {
        E::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        E::NoSpace { .. } => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, "bundle", e.to_string())
}

/// Writes the body to `to`; a declared length is checked against the cap and the free space
/// before a byte is written, and the bytes against the cap as they come.
async fn receive(
    body: Body,
    to: &std::path::Path,
    length: Option<u64>,
    limits: lpe_update::download::Limits,
) -> Result<(), ApiError> {
    let dir = to.parent().unwrap_or(std::path::Path::new("."));
    tokio::fs::create_dir_all(dir).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("cannot write the upload: {e}"),
        )
    })?;
    if let Some(len) = length {
        lpe_update::download::check_fits(dir, len, 0, limits).map_err(refusal)?;
    }
    let too_large = || {
        refusal(lpe_update::UpdateError::TooLarge {
            limit: limits.max_bytes,
        })
    };
    crate::upload::to_file(
        body,
        to,
        limits.max_bytes,
        too_large,
        "the body is empty: send the .raucb bundle",
    )
    .await
}
