//! `/api/recordings`: the timeline of a stream's recordings, playback as HLS VOD, clip
//! export, and the storage they use. Times are milliseconds since the Unix epoch.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::{ApiError, AppState, ErrorBody};
use lpe_node::views::recording::{self, Library, Part, Segment, Span};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(timeline))
        .routes(routes!(storage))
        .routes(routes!(playlist))
        .routes(routes!(part))
        .routes(routes!(export))
}

/// Segments listed at most in one timeline answer.
const MAX_LISTED: usize = 10_000;

fn library(node: &AppState) -> Result<Arc<Library>, ApiError> {
    node.recordings().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_recordings",
            "the recordings directory cannot be used; see the node's log",
        )
    })
}

fn bad_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
}

#[derive(Deserialize, utoipa::IntoParams)]
struct TimelineQuery {
    stream_id: String,
    /// Start of the range (default: 24 hours before `to`).
    from: Option<u64>,
    /// End of the range (default: now).
    to: Option<u64>,
}

/// What was recorded of a stream in a range.
#[derive(Serialize, utoipa::ToSchema)]
struct Timeline {
    stream_id: String,
    from_ms: u64,
    to_ms: u64,
    /// Stretches recorded without a gap.
    spans: Vec<Span>,
    /// The files, oldest first (at most 10 000; `truncated` says when there were more).
    segments: Vec<Segment>,
    truncated: bool,
    bytes: u64,
}

fn range(from: Option<u64>, to: Option<u64>) -> Result<(u64, u64), ApiError> {
    let to = to.unwrap_or_else(|| lpe_core::events::now_ms() + 60_000);
    let from = from.unwrap_or(to.saturating_sub(24 * 3600 * 1000));
    if from >= to {
        return Err(ApiError::invalid("from", "must be before `to`"));
    }
    if to - from > recording::MAX_RANGE_MS {
        return Err(ApiError::invalid("to", "a range covers at most 7 days"));
    }
    Ok((from, to))
}

#[utoipa::path(
    get,
    path = "/api/recordings",
    tag = "recordings",
    params(TimelineQuery),
    responses((status = 200, body = Timeline), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn timeline(
    State(node): State<AppState>,
    query: Result<Query<TimelineQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Timeline>, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let (from, to) = range(q.from, q.to)?;
    let lib = library(&node)?;
    if lib.stream_dir(&q.stream_id).is_none() {
        return Err(ApiError::invalid("stream_id", "is not a stream id"));
    }
    let id = q.stream_id.clone();
    let mut segments = tokio::task::spawn_blocking(move || lib.segments(&id, from, to))
        .await
        .unwrap_or_default();
    let spans = recording::spans(&segments);
    let bytes = segments.iter().map(|s| s.bytes).sum();
    let truncated = segments.len() > MAX_LISTED;
    segments.truncate(MAX_LISTED);
    Ok(Json(Timeline {
        stream_id: q.stream_id,
        from_ms: from,
        to_ms: to,
        spans,
        segments,
        truncated,
        bytes,
    }))
}

/// The recordings' disk and what retention keeps.
#[derive(Serialize, utoipa::ToSchema)]
struct Storage {
    /// Bytes of all finished recordings.
    bytes: u64,
    /// The filesystem holding them.
    disk_total_bytes: Option<u64>,
    disk_available_bytes: Option<u64>,
    /// Recording is paused: the disk is full and nothing is left to delete.
    disk_full: bool,
    retention: recording::Retention,
    /// Streams with recordings (including removed streams whose recordings are kept).
    streams: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/api/recordings/storage",
    tag = "recordings",
    responses((status = 200, body = Storage), (status = 503, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn storage(State(node): State<AppState>) -> Result<Json<Storage>, ApiError> {
    let lib = library(&node)?;
    let view = tokio::task::spawn_blocking(move || {
        let disk = recording::DiskSpace::of(lib.root());
        Storage {
            bytes: lib.bytes(),
            disk_total_bytes: disk.map(|d| d.total),
            disk_available_bytes: disk.map(|d| d.available),
            disk_full: lib.disk_full(),
            retention: lib.retention().clone(),
            streams: lib.streams(),
        }
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(Json(view))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct RangeQuery {
    from: u64,
    to: u64,
}

#[utoipa::path(
    get,
    path = "/api/recordings/{stream_id}/playlist.m3u8",
    tag = "recordings",
    params(("stream_id" = String, Path), RangeQuery),
    responses(
        (status = 200, content_type = "application/vnd.apple.mpegurl", body = String, description = "an HLS VOD playlist of the files overlapping the range"),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn playlist(
    State(node): State<AppState>,
    Path(stream_id): Path<String>,
    query: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let (from, to) = range(Some(q.from), Some(q.to))?;
    let lib = library(&node)?;
    let id = stream_id.clone();
    let text = tokio::task::spawn_blocking(move || {
        lib.vod_playlist(&id, from, to, |name, part| {
            let part = match part {
                Part::Init => "init",
                Part::Media => "media",
            };
            format!("files/{name}?part={part}")
        })
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| ApiError::not_found("nothing was recorded in that range"))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.apple.mpegurl"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        text,
    )
        .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
struct PartQuery {
    /// `init` (the initialisation section) or `media` (the fragments).
    part: String,
}

#[utoipa::path(
    get,
    path = "/api/recordings/{stream_id}/files/{day}/{file}",
    tag = "recordings",
    params(("stream_id" = String, Path), ("day" = String, Path), ("file" = String, Path), PartQuery),
    responses((status = 200, content_type = "video/mp4", body = Vec<u8>), (status = 404, body = ErrorBody)),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn part(
    State(node): State<AppState>,
    Path((stream_id, day, file)): Path<(String, String, String)>,
    query: Result<Query<PartQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Query(q) = query.map_err(bad_query)?;
    let part = match q.part.as_str() {
        "init" => Part::Init,
        "media" => Part::Media,
        _ => return Err(ApiError::invalid("part", "must be init or media")),
    };
    let lib = library(&node)?;
    let gone = || ApiError::not_found("no such recording (retention may have deleted it)");
    let path = lib
        .file(&stream_id, &format!("{day}/{file}"))
        .ok_or_else(gone)?;
    let at = path.clone();
    let (start, end) = tokio::task::spawn_blocking(move || recording::part_range(&at, part))
        .await
        .map_err(|_| gone())?
        .map_err(|_| gone())?;
    let mut f = tokio::fs::File::open(&path).await.map_err(|_| gone())?;
    f.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|_| gone())?;
    let len = end - start;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(f.take(len)));
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("video/mp4")),
            (header::CONTENT_LENGTH, HeaderValue::from(len)),
            // A finished file never changes.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=86400, immutable"),
            ),
        ],
        body,
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/recordings/{stream_id}/export.mp4",
    tag = "recordings",
    params(("stream_id" = String, Path), RangeQuery),
    responses(
        (status = 200, content_type = "video/mp4", body = Vec<u8>, description = "the clip, starting at the keyframe nearest to `from`"),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "another clip is being exported")),
    security(("session" = ["viewer"]), ("token" = ["viewer"]))
)]
async fn export(
    State(node): State<AppState>,
    Path(stream_id): Path<String>,
    query: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    use recording::ExportError as E;
    let Query(q) = query.map_err(bad_query)?;
    let lib = library(&node)?;
    if lib.stream_dir(&stream_id).is_none() {
        return Err(ApiError::not_found("no such stream"));
    }
    let clip = lib
        .export(&stream_id, q.from, q.to)
        .await
        .map_err(|e| match e {
            E::NotFound => ApiError::not_found(e.to_string()),
            E::BadRange => ApiError::invalid("to", e.to_string()),
            E::Busy => ApiError {
                retry_after_s: Some(5),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", e.to_string())
            },
            E::Failed(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "export_failed",
                e.to_string(),
            ),
        })?;
    let name = format!(
        "attachment; filename=\"{stream_id}-{}.mp4\"",
        recording::rfc3339(q.from).replace(':', "-")
    );
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(clip.file),
    ));
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("video/mp4")),
            (header::CONTENT_LENGTH, HeaderValue::from(clip.bytes)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&name).unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        body,
    )
        .into_response())
}
