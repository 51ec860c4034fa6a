//! Request bodies streamed to a file — model and bundle uploads — bounded as they come, so
//! neither is ever held in memory nor allowed past its cap.

use axum::body::Body;
use axum::http::StatusCode;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::http::ApiError;

/// Writes `body` to `to` (0600, replacing what was there) and syncs it; `too_large` is the
/// refusal once more than `max_bytes` came, `empty` the hint when nothing came.
pub(crate) async fn to_file(
    body: Body,
    to: &std::path::Path,
    max_bytes: u64,
    too_large: impl Fn() -> ApiError,
    empty: &str,
) -> Result<(), ApiError> {
    let cannot_write = |e: std::io::Error| {
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "disk",
            format!("cannot write the upload: {e}"),
        )
    };
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(to)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("cannot write the upload: {e}"),
            )
        })?;
    let mut stream = body.into_data_stream();
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "body",
                format!("the upload broke off: {e}"),
            )
        })?;
        written += chunk.len() as u64;
        if written > max_bytes {
            return Err(too_large());
        }
        file.write_all(&chunk).await.map_err(cannot_write)?;
    }
    if written == 0 {
        return Err(ApiError::invalid("file", empty));
    }
    file.sync_all().await.map_err(cannot_write)
}
