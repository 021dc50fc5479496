//! API errors, mapped to HTTP in one place, in the TypeScript (Fastify) service's JSON shape:
//! `{"statusCode": 404, "error": "Not Found", "message": "Route GET:/nope not found"}`.

use axum::Json;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// The error body of every non-2xx answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"statusCode": 400, "error": "Bad Request", "message": "querystring/limit must be <= 1000"}))]
pub(crate) struct ErrorBody {
    /// The HTTP status code.
    pub status_code: u16,
    /// The status text.
    pub error: String,
    /// What went wrong.
    pub message: String,
}

/// An error answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// A request parameter is invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such route (404).
    #[error("Route {method}:{path} not found")]
    NotFound {
        /// The request method.
        method: String,
        /// The request target: its path and query, as Fastify's message gives it.
        path: String,
    },
    /// A room or nick that was never seen (404).
    #[error("{0}")]
    Unknown(String),
    /// The route exists but not for this method (405).
    #[error("Method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The store failed or did not answer (503): the reason it cannot be reached when known
    /// (as `/healthcheck` shows it), else that it did not answer in time.
    #[error("{}", unavailable_message(.0))]
    Store(StoreError),
    /// The store cannot do what was asked, by its nature (503, the reason shown).
    #[error("{0}")]
    Unavailable(String),
    /// No credentials, or wrong ones (401, with `WWW-Authenticate: Bearer`).
    #[error("{message}")]
    Unauthorized {
        /// What is wrong.
        message: String,
        /// A token was given but is not valid (RFC 6750's `error="invalid_token"`).
        invalid_token: bool,
    },
    /// The action is not enabled (403).
    #[error("{0}")]
    Forbidden(String),
    /// The body is too large (413).
    #[error("{0}")]
    TooLarge(String),
    /// The body stopped arriving (408).
    #[error("{0}")]
    RequestTimeout(String),
    /// The body's content type is not one the route reads (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The client is over its rate limit (429, with `Retry-After`).
    #[error("rate limit exceeded: retry in {retry_after} s")]
    TooManyRequests {
        /// Whole seconds until a request would be accepted (at least 1).
        retry_after: u64,
    },
}

/// The message of a 503 for want of the store.
fn unavailable_message(error: &StoreError) -> String {
    match error {
        StoreError::Unreachable(cause) => {
            format!("the store is unavailable: cannot reach Redis ({cause}); try again shortly")
        }
        _ => "the store is unavailable: Redis did not answer in time; try again shortly".to_owned(),
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            // A cursor is the client's input: refusing it is a 400, not an outage.
            StoreError::Cursor(cursor) => ApiError::BadRequest(format!(
                "querystring/before is not a cursor of this history: {cursor:.64}"
            )),
            StoreError::Unsupported(what) => ApiError::Unavailable(what),
            other => ApiError::Store(other),
        }
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } | ApiError::Unknown(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Store(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The headers the status calls for: `Allow` (405), `WWW-Authenticate` (401),
    /// `Retry-After` (429), `Accept-Post` (415).
    fn headers(&self) -> Option<(header::HeaderName, header::HeaderValue)> {
        use header::HeaderValue;
        match self {
            ApiError::MethodNotAllowed { path, .. } => {
                Some((header::ALLOW, HeaderValue::from_static(allowed(path))))
            }
            ApiError::Unauthorized { invalid_token, .. } => {
                let challenge = if *invalid_token {
                    "Bearer error=\"invalid_token\""
                } else {
                    "Bearer"
                };
                Some((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                ))
            }
            ApiError::TooManyRequests { retry_after } => {
                Some((header::RETRY_AFTER, HeaderValue::from(*retry_after)))
            }
            ApiError::UnsupportedMediaType(_) => Some((
                header::HeaderName::from_static("accept-post"),
                HeaderValue::from_static("application/json, application/x-ndjson"),
            )),
            _ => None,
        }
    }
}

/// The methods a known route serves: every route GET and HEAD, `/messages` POST too.
fn allowed(path: &str) -> &'static str {
    if path == "/messages" {
        "GET, HEAD, POST"
    } else {
        "GET, HEAD"
    }
}

/// The Fastify-shaped body for `status` with `message`.
pub(crate) fn body(status: StatusCode, message: String) -> ErrorBody {
    ErrorBody {
        status_code: status.as_u16(),
        error: status.canonical_reason().unwrap_or("Error").to_owned(),
        message,
    }
}

/// The cause of a 503, carried from the handler to [`guard`], which logs it with the route.
#[derive(Debug, Clone)]
struct StoreFailure(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(body(status, self.to_string()))).into_response();
        if let ApiError::Store(cause) = &self {
            // The cause is logged (by `guard`, which knows the route), not shown: clients get a
            // stable message.
            response
                .extensions_mut()
                .insert(StoreFailure(cause.to_string()));
        }
        if let Some((name, value)) = self.headers() {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// Longest request target accepted (path and query).
pub(crate) const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header bytes accepted (names and values).
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest declared request body accepted, but for `POST /messages` (no other route reads a
/// body).
pub(crate) const MAX_BODY_BYTES: u64 = 64 * 1024;
/// Largest body of `POST /messages`, declared or not.
pub(crate) const MAX_INGEST_BODY_BYTES: u64 = 1 << 20;

/// An error answer with `status` and `message`, in the error shape.
fn reject(status: StatusCode, message: String) -> Response {
    (status, Json(body(status, message))).into_response()
}

/// A 503 answer of any data route, written once for the OpenAPI document.
#[allow(
    dead_code,
    reason = "only describes an answer for the OpenAPI document"
)]
#[derive(utoipa::IntoResponses)]
pub(crate) enum StoreUnavailable {
    /// The store is unreachable or slower than REDIS_TIMEOUT_MS.
    #[response(status = 503, example = json!({"statusCode": 503, "error": "Service Unavailable", "message": "the store is unavailable: Redis did not answer in time; try again shortly"}))]
    Unavailable(ErrorBody),
}

/// Rejects oversized requests before routing, in the error shape (414, 431, 413), and logs
/// every answer that failed for want of the store, naming its route.
pub(crate) async fn guard(request: Request, next: Next) -> Response {
    let route = format!("{} {}", request.method(), request.uri().path());
    if let Some(rejected) = oversized(&request) {
        return rejected;
    }
    let response = next.run(request).await;
    if let Some(StoreFailure(cause)) = response.extensions().get::<StoreFailure>() {
        tracing::warn!(%route, error = %cause, "store unavailable for a request");
    }
    response
}

/// Answers a 404 that has no body (the Swagger UI's unknown files) in the error shape.
pub(crate) async fn json_not_found(request: Request, next: Next) -> Response {
    let (method, path) = (
        request.method().to_string(),
        crate::api::routes::target(request.uri()),
    );
    let response = next.run(request).await;
    if response.status() == StatusCode::NOT_FOUND
        && response.headers().get(header::CONTENT_TYPE).is_none()
    {
        return ApiError::NotFound { method, path }.into_response();
    }
    response
}

/// The 414, 431 or 413 answer for an oversized request, if it is one.
fn oversized(request: &Request) -> Option<Response> {
    let uri = request.uri().to_string().len();
    if uri > MAX_URI_BYTES {
        let message = format!("request target of {uri} bytes exceeds {MAX_URI_BYTES}");
        return Some(reject(StatusCode::URI_TOO_LONG, message));
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers > MAX_HEADER_BYTES {
        let message = format!("headers of {headers} bytes exceed {MAX_HEADER_BYTES}");
        return Some(reject(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, message));
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = body_limit(request);
    if declared.is_some_and(|n| n > limit) {
        if limit == MAX_INGEST_BODY_BYTES {
            crate::telemetry::metrics::ingest_rejected("too_large");
        }
        let message = format!("request bodies are limited to {limit} bytes");
        return Some(reject(StatusCode::PAYLOAD_TOO_LARGE, message));
    }
    None
}

/// The largest body `request`'s route reads.
fn body_limit(request: &Request) -> u64 {
    if request.method() == axum::http::Method::POST && request.uri().path() == "/messages" {
        MAX_INGEST_BODY_BYTES
    } else {
        MAX_BODY_BYTES
    }
}
