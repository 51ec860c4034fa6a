//! `/api/onvif`: IP cameras on the local network. Discovery goes out on the interface the
//! operator names and nowhere else; a camera found is asked for its profiles with the
//! credentials the operator gives once (the UI then puts them in the RTSP stream it makes).
//! Admin only: these routes send traffic on the LAN and carry camera passwords.

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::{ApiError, ApiJson, AppState, ErrorBody};
use lpe_node::views::onvif::{self, Camera, Device, Interface, OnvifError};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(interfaces))
        .routes(routes!(discover))
        .routes(routes!(camera))
}

/// Discoveries and camera queries running at once; more answer 429.
static RUNNING: Semaphore = Semaphore::const_new(2);

fn busy() -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "busy",
        "two camera searches are already running; try again in a few seconds",
    );
    e.retry_after_s = Some(5);
    e
}

fn error(e: OnvifError) -> ApiError {
    let message = e.to_string();
    match e {
        OnvifError::NoSuchInterface(_) => ApiError::invalid("interface", message),
        OnvifError::BadAddress(_) => ApiError::invalid("xaddr", message),
        OnvifError::NotAuthorized(_) => ApiError::invalid("password", message),
        OnvifError::Socket(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
        OnvifError::Unreachable(..) | OnvifError::NotOnvif(_) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "camera_error", message)
        }
    }
}

/// The interfaces a search can be sent on (IPv4, loopback excepted).
#[utoipa::path(
    get,
    path = "/api/onvif/interfaces",
    tag = "device",
    responses((status = 200, body = [Interface])),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn interfaces() -> Json<Vec<Interface>> {
    Json(
        tokio::task::spawn_blocking(onvif::interfaces)
            .await
            .unwrap_or_default(),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DiscoverRequest {
    /// The interface whose LAN is searched (`GET /api/onvif/interfaces`).
    interface: String,
    /// How long to listen for answers, 500 to 10 000 ms (default 3000).
    timeout_ms: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Discovered {
    interface: String,
    devices: Vec<Device>,
}

/// Sends a WS-Discovery probe for ONVIF video transmitters on one interface and lists the
/// cameras that answer.
#[utoipa::path(
    post,
    path = "/api/onvif/discover",
    tag = "device",
    request_body = DiscoverRequest,
    responses(
        (status = 200, body = Discovered),
        (status = 422, description = "No such interface", body = ErrorBody),
        (status = 429, description = "Two searches already running", body = ErrorBody),
    ),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn discover(ApiJson(req): ApiJson<DiscoverRequest>) -> Result<Json<Discovered>, ApiError> {
    let wait = req.timeout_ms.unwrap_or(3000);
    if !(500..=10_000).contains(&wait) {
        return Err(ApiError::invalid("timeout_ms", "must be 500 to 10000"));
    }
    let _permit = RUNNING.try_acquire().map_err(|_| busy())?;
    let devices = onvif::discover(&req.interface, std::time::Duration::from_millis(wait))
        .await
        .map_err(error)?;
    Ok(Json(Discovered {
        interface: req.interface,
        devices,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CameraRequest {
    /// The camera's device service (`xaddrs` of a discovered device).
    xaddr: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// Asks a camera who it is and for its media profiles with their RTSP URLs (without the
/// credentials, which go in the stream's own fields).
#[utoipa::path(
    post,
    path = "/api/onvif/camera",
    tag = "device",
    request_body = CameraRequest,
    responses(
        (status = 200, body = Camera),
        (status = 422, description = "A bad address, or the camera refused the credentials (field `password`)", body = ErrorBody),
        (status = 502, description = "The camera cannot be reached or does not speak ONVIF", body = ErrorBody),
    ),
    security(("session" = ["admin"]), ("token" = ["admin"]))
)]
async fn camera(ApiJson(req): ApiJson<CameraRequest>) -> Result<Json<Camera>, ApiError> {
    if req.username.len() > 128 || req.password.len() > 128 {
        return Err(ApiError::invalid(
            "password",
            "user names and passwords are at most 128 bytes",
        ));
    }
    let _permit = RUNNING.try_acquire().map_err(|_| busy())?;
    onvif::camera(&req.xaddr, &req.username, &req.password)
        .await
        .map(Json)
        .map_err(error)
}
