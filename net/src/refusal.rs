//! What a signer answers when it will not sign, shared by its routes: go-livepeer's error
//! envelope with a status (and, for a 480, a header), and the ticket cap.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The most tickets one call may cost (go-livepeer's signer refuses more than 100).
pub const MAX_TICKETS: u64 = 100;

/// A refusal: status and text, as JSON `{"error":{"message":…}}` (go-livepeer's envelope).
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    /// A header the answer carries (go-livepeer's 480 names where to refresh).
    pub header: Option<(&'static str, String)>,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            header: None,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.header = Some((name, value.to_string()));
        self
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(serde_json::json!({"error": {"message": self.message}})),
        )
            .into_response();
        if let Some((name, value)) = self.header
            && let Ok(v) = axum::http::HeaderValue::from_str(&value)
        {
            res.headers_mut().insert(name, v);
        }
        res
    }
}
