//! What every HTTP handler shares: the state it reaches ([`AppState`]), the JSON body
//! extractor ([`ApiJson`]) and errors as values ([`ApiError`], rendered as
//! `{"error":{"code":…,"message":…,"field":…}}` with the matching status).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::metrics::Counters;
use lpe_node::auth::Principal;
use lpe_node::{Actor, Command, CommandError, Envelope, Node, Outcome, Reply};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// For 429: when to try again.
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after_s: None,
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

/// Every error the API returns has this shape.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ErrorDetail {
    /// Stable, machine-readable (`not_found`, `invalid`, `unauthorized`, …).
    code: String,
    message: String,
    /// The offending field, when one is to blame.
    field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
            },
        };
        let mut res = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"livepeer-edge\""),
            );
        }
        if let Some(s) = self.retry_after_s {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::NotFound(_) => Self::not_found(e.to_string()),
            CommandError::Invalid(s) => Self::invalid(s.field, s.message),
            CommandError::Conflict { field, message } => Self {
                field,
                ..Self::new(StatusCode::CONFLICT, "conflict", message)
            },
            CommandError::Auth(e) => e.into(),
            CommandError::PaymentsOff => {
                Self::new(StatusCode::CONFLICT, "payments_off", e.to_string())
            }
            CommandError::ChainNotReady => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "payments_unavailable",
                e.to_string(),
            ),
            CommandError::Chain(c) => chain_error(c),
            CommandError::NotOrchestrator(_) => {
                Self::new(StatusCode::CONFLICT, "not_orchestrator", e.to_string())
            }
            CommandError::Unavailable(m) => Self::new(StatusCode::NOT_FOUND, "unavailable", m),
            CommandError::Payment(p) => payment_error(p),
            CommandError::Storage(e) => {
                tracing::error!("storage failure: {e}");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage",
                    "the node could not record the change; nothing was applied",
                )
            }
        }
    }
}

/// JSON body extractor whose failures are API errors, not axum's plain-text rejections.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => {
                let status = rejection.status();
                let code = match rejection {
                    JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
                    _ => "invalid_json",
                };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

/// What every handler reaches: the node (its commands and queries) and the transports'
/// counters.
#[derive(Clone)]
pub struct AppState {
    pub(crate) node: Arc<Node>,
    pub(crate) counters: Arc<Counters>,
}

impl AppState {
    /// Runs one command for `actor`. HTTP requests carry no request id: each runs once.
    pub(crate) async fn run(
        &self,
        actor: Actor,
        command: Command,
    ) -> Result<Outcome, CommandError> {
        match self
            .node
            .submit(Envelope::once(actor, command), |_| {})
            .await?
        {
            Reply::Ran(result) => result,
            Reply::Repeat(entry) => Err(CommandError::Conflict {
                field: None,
                message: format!("request {:?} was handled already", entry.request_id),
            }),
        }
    }
}

/// Who sends a request's commands: the signed-in operator (or the owner of the token used),
/// else whoever is setting the node up.
pub struct By(pub Actor);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for By {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(By(match parts.extensions.get::<Principal>() {
            Some(p) => Actor::Operator {
                user: p.user.clone(),
            },
            None => Actor::Setup,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

pub(crate) fn chain_error(e: lpe_node::views::ChainError) -> ApiError {
    match e {
        lpe_node::views::ChainError::Reverted(reason) => {
            ApiError::new(StatusCode::CONFLICT, "reverted", reason)
        }
        other => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "chain", other.to_string()),
    }
}

fn payment_error(e: lpe_node::views::PaymentError) -> ApiError {
    use lpe_node::views::PaymentError;
    match e {
        PaymentError::Malformed(m) => ApiError::new(StatusCode::PAYMENT_REQUIRED, "bad_payment", m),
        PaymentError::Rejected { message, fatal } => ApiError::new(
            StatusCode::BAD_REQUEST,
            if fatal {
                "ticket_rejected_fatal"
            } else {
                "ticket_rejected"
            },
            message,
        ),
        PaymentError::Storage(e) => {
            tracing::error!("payment refused, storage failed: {e}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage",
                "the payment could not be recorded and was not accepted",
            )
        }
        PaymentError::Chain(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "chain", m),
    }
}
