//! API errors, mapped to HTTP in one place, in the TypeScript (Fastify) service's JSON shape:
//! `{"statusCode": 404, "error": "Not Found", "message": "Route GET:/nope not found"}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// The error body of every non-2xx answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"statusCode": 400, "error": "Bad Request", "message": "querystring/limit must be <= 1000"}))]
pub struct ErrorBody {
    /// The HTTP status code.
    pub status_code: u16,
    /// The status text.
    pub error: String,
    /// What went wrong.
    pub message: String,
}

/// An error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request parameter is invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such route (404).
    #[error("Route {method}:{path} not found")]
    NotFound {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The store failed or did not answer (503).
    #[error("statistics are unavailable: the store did not answer")]
    Store(#[from] StoreError),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The Fastify-shaped body for `status` with `message`.
pub fn body(status: StatusCode, message: String) -> ErrorBody {
    ErrorBody {
        status_code: status.as_u16(),
        error: status.canonical_reason().unwrap_or("Error").to_owned(),
        message,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Store(cause) = &self {
            // The cause is logged, not shown: clients get a stable message.
            tracing::warn!(error = %cause, "store unavailable for a request");
        }
        (status, Json(body(status, self.to_string()))).into_response()
    }
}
