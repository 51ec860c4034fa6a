//! `/llhls/<stream>/…`: low-latency HLS, served from memory. Public like `/hls` (what a
//! viewer plays), and outside the OpenAPI document for the same reason.
//!
//! - `index.m3u8`: the master playlist (the variants of `/hls` packaged here: all of them, or
//!   an offloaded stream's passthrough alone — the network's renditions arrive a segment at
//!   a time);
//! - `<rendition>/index.m3u8[?_HLS_msn=N[&_HLS_part=M]]`: the media playlist, held until
//!   segment `N` (part `M`) exists — blocking playlist reload;
//! - `<rendition>/init-<k>.mp4`, `<n>.mp4`, `<n>.<m>.mp4`: initialisation sections,
//!   segments and parts; the part the playlist's preload hint names is held until it exists.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::http::{ApiError, AppState};
use lpe_node::views::llhls::{Playlist, Ready};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/llhls/{stream}/index.m3u8", get(master))
        .route("/llhls/{stream}/{rendition}/{file}", get(rendition_file))
}

const PLAYLIST: &str = "application/vnd.apple.mpegurl";

fn plain(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn not_found() -> Response {
    ApiError::not_found("no such low-latency HLS file").into_response()
}

fn answer(
    content_type: &'static str,
    cache: &'static str,
    body: impl Into<axum::body::Body>,
) -> Response {
    let mut res = (StatusCode::OK, body.into()).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res
}

/// The master playlist: the one `/hls` has (its variants' URIs are relative), less the
/// variants not packaged here, while the stream has low-latency renditions.
async fn master(State(state): State<AppState>, Path(stream): Path<String>) -> Response {
    let names = state.node.low_latency_renditions(&stream);
    if !plain(&stream) || names.is_empty() {
        return not_found();
    }
    let file = state.node.hls_root().join(&stream).join("index.m3u8");
    match tokio::fs::read_to_string(&file).await {
        Ok(text) => answer(PLAYLIST, "no-cache", only_variants(&text, &names)),
        Err(_) => not_found(),
    }
}

/// A master playlist with only the variants whose URI is `<name>/index.m3u8` for one of
/// `names` (each variant is its `#EXT-X-STREAM-INF` line and the URI after it).
fn only_variants(master: &str, names: &[String]) -> String {
    let mut out = String::with_capacity(master.len());
    let mut pending: Option<&str> = None;
    for line in master.lines() {
        if line.starts_with("#EXT-X-STREAM-INF") {
            pending = Some(line);
            continue;
        }
        if let Some(inf) = pending.take() {
            let kept = line
                .strip_suffix("/index.m3u8")
                .is_some_and(|n| names.iter().any(|name| name == n));
            if kept {
                out.push_str(inf);
                out.push('\n');
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::only_variants;

    #[test]
    fn only_the_named_variants_are_kept() {
        let master = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
            #EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=640x360,CODECS=\"avc1.64001e,mp4a.40.2\"\n\
            source/index.m3u8\n\
            #EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=426x240\n240p/index.m3u8\n";
        let kept = only_variants(master, &["source".to_string()]);
        assert_eq!(
            kept,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=640x360,CODECS=\"avc1.64001e,mp4a.40.2\"\n\
             source/index.m3u8\n"
        );
        let all = only_variants(master, &["source".to_string(), "240p".to_string()]);
        assert_eq!(all, master);
        // A variant without its URI line is dropped, and nothing panics on odd input.
        assert_eq!(only_variants("#EXT-X-STREAM-INF:X", &[]), "");
        assert_eq!(only_variants("", &[]), "");
    }
}

#[derive(Deserialize)]
struct Blocking {
    #[serde(rename = "_HLS_msn")]
    msn: Option<u64>,
    #[serde(rename = "_HLS_part")]
    part: Option<u64>,
}

/// How long a blocked request is held: three target durations, as the spec bounds it.
fn hold(p: &Playlist) -> tokio::time::Instant {
    tokio::time::Instant::now() + p.segment_target * 3
}

async fn rendition_file(
    State(state): State<AppState>,
    Path((stream, rendition, file)): Path<(String, String, String)>,
    query: Result<Query<Blocking>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !plain(&stream) || !plain(&rendition) {
        return not_found();
    }
    let Some(p) = state.node.low_latency(&stream, &rendition) else {
        return not_found();
    };
    if file == "index.m3u8" {
        let Ok(Query(q)) = query else {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "_HLS_msn and _HLS_part are numbers",
            )
            .into_response();
        };
        return media_playlist(&p, q).await;
    }
    let Some(stem) = file.strip_suffix(".mp4") else {
        return not_found();
    };
    if let Some(id) = stem.strip_prefix("init-") {
        return match id.parse().ok().and_then(|id| p.init(id)) {
            Some(b) => answer("video/mp4", "max-age=3600", b),
            None => not_found(),
        };
    }
    let mut numbers = stem.splitn(2, '.').map(str::parse::<u64>);
    match (numbers.next(), numbers.next()) {
        (Some(Ok(msn)), None) => match p.segment(msn) {
            Some(b) => answer("video/mp4", "max-age=60", b),
            None => not_found(),
        },
        (Some(Ok(msn)), Some(Ok(part))) => {
            let until = hold(&p);
            let mut changes = p.watch();
            loop {
                if let Some(b) = p.part(msn, part) {
                    return answer("video/mp4", "max-age=60", b);
                }
                // Only the hinted part is waited for; anything else is gone or never was.
                if !p.is_next(msn, part) || !changes.next(until).await {
                    return not_found();
                }
            }
        }
        _ => not_found(),
    }
}

async fn media_playlist(p: &Arc<Playlist>, q: Blocking) -> Response {
    if q.part.is_some() && q.msn.is_none() {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "_HLS_part needs _HLS_msn",
        )
        .into_response();
    }
    if let Some(msn) = q.msn {
        let until = hold(p);
        let mut changes = p.watch();
        loop {
            match p.ready(msn, q.part) {
                Ready::Yes => break,
                Ready::TooFar => {
                    return ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "too_far",
                        "_HLS_msn is more than two segments past the playlist",
                    )
                    .into_response();
                }
                Ready::NotYet => {
                    if !changes.next(until).await {
                        return ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not_yet",
                            "the segment asked for did not come in time",
                        )
                        .into_response();
                    }
                }
            }
        }
    }
    match p.render() {
        Some(text) => answer(PLAYLIST, "no-cache", text),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "the rendition has no part yet",
        )
        .into_response(),
    }
}
