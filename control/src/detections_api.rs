//! `/api/detections`: the objects streams' detectors followed, and their snapshots; and
//! `/api/streams/{id}/objects`, what a stream's detector sees picture by picture.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::{ApiError, AppState, ErrorBody};
use lpe_node::analysis::{DetectionView, ObjectsNow};
use lpe_node::views::DetectionQuery;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_detections))
        .routes(routes!(detection_snapshot))
        .routes(routes!(objects_now))
}

/// Server-sent events: what the stream's object detector sees, once per picture it looks at
/// (`event: objects`, an [`ObjectsNow`]); the current state first. For overlays on the
/// preview; the objects' events are on `/api/events/stream`.
#[utoipa::path(
    get,
    path = "/api/streams/{id}/objects",
    tag = "streams",
    params(("id" = String, Path, description = "stream id")),
    responses(
        (status = 200, content_type = "text/event-stream", body = ObjectsNow, description = "one event per picture looked at"),
        (status = 404, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn objects_now(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    state.node.view(&id)?;
    let rx = state.node.analyser.watch_objects(&id);
    let stream = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let now = rx.borrow_and_update().clone();
        let ev = Event::default()
            .event("objects")
            .json_data(&now)
            .unwrap_or_default();
        Some((Ok::<_, std::convert::Infallible>(ev), (rx, false)))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    stream_id: Option<String>,
    label: Option<String>,
    /// Started at or after, milliseconds since the Unix epoch.
    since: Option<u64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

/// Objects followed, newest first.
#[utoipa::path(
    get,
    path = "/api/detections",
    tag = "ai",
    params(ListQuery),
    responses((status = 200, body = [DetectionView]), (status = 400, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn list_detections(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<DetectionView>>, ApiError> {
    let Query(q) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let node = state.node.clone();
    tokio::task::spawn_blocking(move || {
        node.detections(&DetectionQuery {
            stream_id: q.stream_id.as_deref(),
            label: q.label.as_deref(),
            since_ms: q.since,
            limit: q.limit.unwrap_or(100).min(1000),
        })
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map(Json)
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()))
}

/// The best picture of a detected object (faces covered when its stream is in privacy
/// mode).
#[utoipa::path(
    get,
    path = "/api/detections/{id}/snapshot.jpg",
    tag = "ai",
    params(("id" = String, Path, description = "detection id")),
    responses((status = 200, content_type = "image/jpeg", body = Vec<u8>), (status = 404, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn detection_snapshot(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let gone = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no snapshot is kept for this detection",
        )
    };
    let path = state.node.analyser.snapshot(&id).ok_or_else(gone)?;
    let jpeg = tokio::fs::read(path).await.map_err(|_| gone())?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=3600"),
            ),
        ],
        jpeg,
    )
        .into_response())
}
