//! `/api/ai`: what the node can run — the ONNX Runtime it loaded and its providers, the
//! models shipped and uploaded — and model uploads, checked before they are kept.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::{ApiError, AppState, ErrorBody};
use lpe_node::ai::{AiView, UploadError};
use lpe_node::views::{Descriptor, Layout, MAX_MODEL_BYTES, Model, ModelKind};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(upload))
        .routes(routes!(remove))
}

/// The path whose body is streamed to disk instead of read whole (see `read_whole_body`).
pub const UPLOAD_PATH: &str = "/api/ai/models";

/// The runtime (library, version, providers built in, threads) and the models.
#[utoipa::path(
    get,
    path = "/api/ai",
    tag = "ai",
    responses((status = 200, body = AiView)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn status(State(state): State<AppState>) -> Result<Json<AiView>, ApiError> {
    // The registry is read from disk.
    let ai = state.node.ai.clone();
    tokio::task::spawn_blocking(move || ai.view())
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    name: String,
    kind: ModelKind,
    /// Input size the model is fed, multiples of 32.
    width: u32,
    height: u32,
    /// Class names in index order, comma-separated (YOLO).
    labels: Option<String>,
    min_score: Option<f32>,
    nms_iou: Option<f32>,
    /// The YOLO layout; absent: told from the output's shape.
    layout: Option<Layout>,
}

/// Uploads an ONNX model (the body, `application/octet-stream`, at most 512 MiB). It is
/// opened and run once before it is kept: a model that cannot work is refused now, with the
/// reason, never when a stream needs it.
#[utoipa::path(
    post,
    path = "/api/ai/models",
    tag = "ai",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, body = Model),
        (status = 413, description = "Larger than 512 MiB", body = ErrorBody),
        (status = 422, description = "The model cannot work as described (field `file`) or the description is wrong", body = ErrorBody),
        (status = 429, description = "Another upload is being checked", body = ErrorBody),
        (status = 503, description = "Inference is unavailable here", body = ErrorBody),
    ),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn upload(
    State(state): State<AppState>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(q) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let labels: Vec<String> = q
        .labels
        .map(|l| {
            l.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let descriptor = Descriptor {
        name: q.name,
        kind: q.kind,
        width: q.width,
        height: q.height,
        labels,
        min_score: q.min_score.unwrap_or(0.25),
        nms_iou: q.nms_iou.unwrap_or(0.45),
        layout: q.layout,
    };
    descriptor
        .validate()
        .map_err(|e| ApiError::invalid("descriptor", e))?;
    let ai = state.node.ai.clone();
    let staging = ai
        .staging(&lpe_node::views::random_upload_name())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the models directory cannot be used",
            )
        })?;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("models are limited to {} MiB", MAX_MODEL_BYTES >> 20),
        )
    };
    let received = crate::upload::to_file(
        body,
        &staging,
        MAX_MODEL_BYTES,
        too_large,
        "the body is empty: send the .onnx file",
    )
    .await;
    if let Err(e) = received {
        let _ = tokio::fs::remove_file(&staging).await;
        let mut res = e.into_response();
        // The rest of the body is not read: the connection cannot carry another request.
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(res);
    }
    match ai.add(staging, descriptor).await {
        Ok(model) => Ok((StatusCode::CREATED, Json(model)).into_response()),
        Err(UploadError::Unavailable(why)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("inference is unavailable: {why}"),
        )),
        Err(UploadError::Busy) => {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                UploadError::Busy.to_string(),
            );
            e.retry_after_s = Some(10);
            Err(e)
        }
        Err(UploadError::Refused(why)) => Err(ApiError::invalid("file", why)),
    }
}

/// Removes an uploaded model (shipped ones stay).
#[utoipa::path(
    delete,
    path = "/api/ai/models/{id}",
    tag = "ai",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ai = state.node.ai.clone();
    let removed = tokio::task::spawn_blocking(move || ai.remove(&id))
        .await
        .unwrap_or(false);
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no uploaded model with this id"))
    }
}
