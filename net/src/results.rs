//! `POST /transcodeResults`: a remote transcoder's answer to a task, checked in go-livepeer's
//! order with its status codes (W1.4), bounded (parts, bytes, time), and delivered only if it
//! comes from the address the task went to.

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;

use crate::remote::{RESULTS_AUTHORIZATION, RemoteRendition, RemoteTranscoders};
use crate::request::{MAX_PROFILES, plain};

/// How long a result's upload may take (a task waits at most 60 s for all of it).
const UPLOAD: Duration = Duration::from_secs(60);

pub async fn transcode_results(
    remote: &RemoteTranscoders,
    peer: IpAddr,
    headers: &HeaderMap,
    body: Body,
    max_part: usize,
) -> Response {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if text("Authorization") != RESULTS_AUTHORIZATION || !remote.authentic(text("Credentials")) {
        return plain(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let content_type = match text(header::CONTENT_TYPE.as_str()).parse::<mime::Mime>() {
        Ok(m) => m,
        Err(_) => return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "mime: no media type"),
    };
    let media_type = content_type.essence_str().to_ascii_lowercase();
    let Ok(task_id) = text("TaskId").parse::<i64>() else {
        return plain(StatusCode::BAD_REQUEST, "Invalid Task ID");
    };
    if media_type == "livepeer/transcoding-error" {
        let message =
            match tokio::time::timeout(UPLOAD, axum::body::to_bytes(body, 64 * 1024)).await {
                Ok(Ok(b)) => String::from_utf8_lossy(&b).into_owned(),
                _ => "unreadable error from the remote transcoder".into(),
            };
        remote.deliver(peer, task_id, Err(message));
        return plain(StatusCode::OK, "OK");
    }
    if text("Pixels").parse::<i64>().is_err() {
        return plain(StatusCode::BAD_REQUEST, "Invalid Pixels");
    }
    if media_type != "multipart/mixed" {
        return plain(StatusCode::OK, "OK");
    }
    let Some(boundary) = content_type.get_param(mime::BOUNDARY) else {
        return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "mime: no boundary");
    };
    let boundary = boundary.as_str().to_string();
    let parsed = tokio::time::timeout(UPLOAD, renditions(body, boundary, max_part)).await;
    let result = match parsed {
        Ok(r) => r,
        Err(_) => Err("the upload took too long".to_string()),
    };
    let failed = result.as_ref().err().cloned();
    remote.deliver(peer, task_id, result);
    match failed {
        Some(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &e),
        None => plain(StatusCode::OK, "OK"),
    }
}

/// The parts with a `Pixels` header, in order; at most one per profile (plus perceptual
/// hashes, which are read and dropped), each within `max_part` bytes.
async fn renditions(
    body: Body,
    boundary: String,
    max_part: usize,
) -> Result<Vec<RemoteRendition>, String> {
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .per_field(max_part as u64)
            .whole_stream((max_part as u64).saturating_mul(MAX_PROFILES as u64 + 1)),
    );
    let mut parts =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let mut out = Vec::new();
    let mut seen = 0usize;
    while let Some(mut part) = parts.next_field().await.map_err(|e| e.to_string())? {
        seen += 1;
        if seen > 2 * MAX_PROFILES {
            return Err("too many parts".into());
        }
        let pixels = part
            .headers()
            .get("Pixels")
            .map(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()));
        let octets = part
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == b"application/octet-stream");
        let mut data = Vec::new();
        while let Some(chunk) = part.chunk().await.map_err(|e| e.to_string())? {
            data.extend_from_slice(&chunk);
        }
        match pixels {
            Some(Some(pixels)) => {
                if out.len() >= MAX_PROFILES {
                    return Err("more renditions than profiles".into());
                }
                out.push(RemoteRendition {
                    data: Bytes::from(data),
                    pixels,
                });
            }
            Some(None) => return Err("invalid Pixels on a rendition".into()),
            // A perceptual hash follows its rendition; any other part is ignored.
            None if octets && out.is_empty() => return Err("Unknown perceptual hash".into()),
            None => {}
        }
    }
    Ok(out)
}
