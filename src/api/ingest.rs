//! `POST /messages`: payloads posted over REST, appended to the Redis Stream `{ns}inbox`, from
//! which workers consume them.
//!
//! A request is checked in order of cost, so that a refused one costs little: a bearer token
//! given (401), ingestion configured (403), the token one of them (401), its rate limit (429),
//! its content type (415); only then is its body read, at most [`MAX_INGEST_BODY_BYTES`] of it (413), and every
//! payload checked to be a JSON object (400 naming the line) before anything is appended. The
//! batch is appended in one atomic store call: all of it or none.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody, MAX_INGEST_BODY_BYTES};
use crate::store::Store;
use crate::telemetry::metrics;

/// Most payloads of one NDJSON batch.
pub(crate) const MAX_BATCH: usize = 1000;

/// `202` of `POST /messages`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"accepted": 2}))]
pub(crate) struct AcceptedBody {
    /// Payloads appended to the inbox.
    pub accepted: usize,
}

/// One upstream payload (`se-data` JSON): any JSON object is accepted and stored as sent; these
/// are the fields the counting rules read, as strings (a missing or non-string one reads as
/// `""`, so no value is refused).
#[allow(
    dead_code,
    reason = "only describes the request body for the OpenAPI document"
)]
#[derive(ToSchema)]
#[schema(example = json!({"command": "", "room": "#kitchen", "nick": "alice", "target": "", "body": "hello Kappa", "tags": "id=fx-1;tmi-sent-ts=1795420805000"}))]
pub(crate) struct IngestPayload {
    /// IRC command (a string).
    command: Option<serde_json::Value>,
    /// The room (a string).
    room: Option<serde_json::Value>,
    /// The nick (a string).
    nick: Option<serde_json::Value>,
    /// IRC target (a string).
    target: Option<serde_json::Value>,
    /// The message text (a string).
    body: Option<serde_json::Value>,
    /// IRCv3 tags, `key=value;…` (`id`, `tmi-sent-ts`, `emotes`; a string).
    tags: Option<serde_json::Value>,
}

/// Posted bodies: one payload or a batch of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `application/json`: the body is one payload.
    Json,
    /// `application/x-ndjson`: one payload per line.
    Ndjson,
}

/// The request body's description, with the NDJSON example. The example is in the text rather
/// than the media type's `example`: OpenAPI tools that cannot send NDJSON (schemathesis) would
/// otherwise fail on it.
const NDJSON_DESCRIPTION: &str = r##"One payload (`application/json`), or up to 1,000 of them, one per line (`application/x-ndjson`; blank lines are skipped); at most 1 MiB. Each must be a JSON object; it is stored byte for byte. An NDJSON batch:

```
{"command":"","room":"#kitchen","nick":"alice","target":"","body":"hello Kappa","tags":"id=fx-1;tmi-sent-ts=1795420805000"}
{"command":"","room":"#kitchen","nick":"bob","target":"","body":"hi alice","tags":"id=fx-2;tmi-sent-ts=1795420806000"}
```"##;

/// Appends chat payloads to the inbox, for the workers to count.
#[utoipa::path(post, path = "/messages", tag = "ingestion", operation_id = "ingest",
    request_body(
        description = NDJSON_DESCRIPTION,
        content(
            (IngestPayload = "application/json"),
            (String = "application/x-ndjson"),
        )),
    responses(
        (status = 202, description = "Every payload was appended to the inbox stream, in order", body = AcceptedBody),
        (status = 400, description = "A payload is not a JSON object (the message names its line), or the body is empty; nothing was appended", body = ErrorBody,
            example = json!({"statusCode": 400, "error": "Bad Request", "message": "body/line 3: not a JSON object"})),
        (status = 401, description = "Ingestion is enabled, and the request has no bearer token or one that is not among INGEST_TOKENS", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`")),
            example = json!({"statusCode": 401, "error": "Unauthorized", "message": "a bearer token is required: Authorization: Bearer <token>"})),
        (status = 403, description = "Ingestion is disabled: INGEST_TOKENS is not set (whatever the request holds)", body = ErrorBody,
            example = json!({"statusCode": 403, "error": "Forbidden", "message": "ingestion disabled: set INGEST_TOKENS"})),
        (status = 413, description = "The body is over 1 MiB, or holds more than 1,000 payloads", body = ErrorBody,
            example = json!({"statusCode": 413, "error": "Payload Too Large", "message": "request bodies are limited to 1048576 bytes"})),
        (status = 408, description = "The body stopped arriving: no byte for HTTP_IDLE_TIMEOUT_MS; nothing was appended", body = ErrorBody,
            example = json!({"statusCode": 408, "error": "Request Timeout", "message": "the body stalled: no byte for 10000 ms"})),
        (status = 415, description = "The content type is neither application/json nor application/x-ndjson", body = ErrorBody,
            example = json!({"statusCode": 415, "error": "Unsupported Media Type", "message": "content-type must be application/json or application/x-ndjson"})),
        (status = 429, description = "The token is over INGEST_RATE_LIMIT", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait")),
            example = json!({"statusCode": 429, "error": "Too Many Requests", "message": "rate limit exceeded: retry in 1 s"})),
        (status = 503, description = "Redis is unreachable or slower than REDIS_TIMEOUT_MS (the batch may have been appended), or the service runs without Redis", body = ErrorBody,
            example = json!({"statusCode": 503, "error": "Service Unavailable", "message": "ingestion needs Redis: set REDIS_URL"})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn post<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match ingest(&state, &headers, body).await {
        Ok(accepted) => {
            metrics::ingested(accepted as u64);
            (StatusCode::ACCEPTED, Json(AcceptedBody { accepted })).into_response()
        }
        Err(error) => {
            metrics::ingest_rejected(reason(&error));
            error.into_response()
        }
    }
}

/// Checks, reads and appends one request's payloads; how many were appended.
async fn ingest<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    body: Body,
) -> Result<usize, ApiError> {
    let token = state.settings.ingest_tokens.authorize(headers)?;
    state.limits.check_ingest(token)?;
    let format = format(headers)?;
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|coding| !coding.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(ApiError::UnsupportedMediaType(
            "content-encoding is not supported: send the body uncompressed".to_owned(),
        ));
    }
    let stall = state.settings.idle_timeout;
    let body = read(body, declared_length(headers), stall).await?;
    let payloads = match format {
        Format::Json => vec![single(body)?],
        Format::Ndjson => lines(&body)?,
    };
    // Not marked: a client that retries after a 503 decides (README).
    state
        .timed(state.store.append_inbox(&payloads, None))
        .await?;
    Ok(payloads.len())
}

/// The metrics label of a refusal.
/// Every reason [`reason`] gives: the labels of `chatstats_ingest_rejected_total`.
pub(crate) const REJECTION_REASONS: [&str; 8] = [
    "disabled",
    "unauthorized",
    "rate_limited",
    "unsupported_media_type",
    "too_large",
    "stalled",
    "invalid",
    "unavailable",
];

fn reason(error: &ApiError) -> &'static str {
    match error {
        ApiError::Forbidden(_) => "disabled",
        ApiError::Unauthorized { .. } => "unauthorized",
        ApiError::TooManyRequests { .. } => "rate_limited",
        ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
        ApiError::TooLarge(_) => "too_large",
        ApiError::RequestTimeout(_) => "stalled",
        ApiError::BadRequest(_) => "invalid",
        _ => "unavailable",
    }
}

/// The body's format, from its content type (parameters such as `charset` ignored).
fn format(headers: &HeaderMap) -> Result<Format, ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(Format::Json),
        Some("application/x-ndjson") => Ok(Format::Ndjson),
        _ => Err(ApiError::UnsupportedMediaType(
            "content-type must be application/json or application/x-ndjson".to_owned(),
        )),
    }
}

/// The declared `Content-Length`, if any.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The whole body, refused (413) as soon as it passes [`MAX_INGEST_BODY_BYTES`], whether it
/// declared its length or not (chunked), and given up (408) when no byte of it arrives for
/// `stall` (HTTP_IDLE_TIMEOUT_MS), or when it is not whole within [`BODY_STALLS`] × `stall`: a
/// stalled or trickling client does not hold the connection. A byte order mark before it is
/// dropped.
async fn read(
    body: Body,
    declared: Option<usize>,
    stall: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let whole = stall * BODY_STALLS;
    let late = || {
        ApiError::RequestTimeout(format!(
            "the body took longer than {} ms to arrive",
            whole.as_millis()
        ))
    };
    let body = tokio::time::timeout(whole, read_stalling(body, declared, stall))
        .await
        .map_err(|_| late())??;
    let body = match body.strip_prefix("\u{feff}".as_bytes()) {
        Some(rest) => body.slice_ref(rest),
        None => body,
    };
    if body.trim_ascii().is_empty() {
        return Err(ApiError::BadRequest("body: empty".to_owned()));
    }
    Ok(body)
}

/// A request body has at most this many times HTTP_IDLE_TIMEOUT_MS to arrive whole.
const BODY_STALLS: u32 = 3;

/// [`read`] without its deadline for the whole body.
async fn read_stalling(
    body: Body,
    declared: Option<usize>,
    stall: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let limit = MAX_INGEST_BODY_BYTES as usize;
    let too_large = || ApiError::TooLarge(format!("request bodies are limited to {limit} bytes"));
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(0));
    let mut chunks = body.into_data_stream();
    let stalled = || {
        ApiError::RequestTimeout(format!(
            "the body stalled: no byte for {} ms",
            stall.as_millis()
        ))
    };
    while let Some(chunk) = tokio::time::timeout(stall, chunks.next())
        .await
        .map_err(|_| stalled())?
    {
        let chunk = chunk.map_err(|_| ApiError::BadRequest("body: cannot be read".to_owned()))?;
        if buffer.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

/// An `application/json` body: one payload, kept without its surrounding whitespace.
fn single(body: Bytes) -> Result<Bytes, ApiError> {
    let payload = body.slice_ref(body.trim_ascii());
    if !is_json_object(&payload) {
        return Err(ApiError::BadRequest("body: not a JSON object".to_owned()));
    }
    Ok(payload)
}

/// An NDJSON body's payloads, each the exact bytes of its line without the line ending (and
/// without a byte order mark before it, as an upstream line: files saved by a Windows editor
/// and joined carry one there); blank lines skipped. 400 naming the first line (from 1) that is
/// not a JSON object, 413 past [`MAX_BATCH`] payloads.
fn lines(body: &Bytes) -> Result<Vec<Bytes>, ApiError> {
    let mut payloads = Vec::new();
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        if line.trim_ascii().is_empty() {
            continue;
        }
        if !is_json_object(line) {
            let number = index + 1;
            return Err(ApiError::BadRequest(format!(
                "body/line {number}: not a JSON object"
            )));
        }
        if payloads.len() == MAX_BATCH {
            return Err(ApiError::TooLarge(format!(
                "a batch holds at most {MAX_BATCH} payloads"
            )));
        }
        payloads.push(body.slice_ref(line));
    }
    Ok(payloads)
}

/// True when `bytes` is UTF-8 holding exactly one JSON object (whitespace around it allowed).
fn is_json_object(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok()
        && bytes.trim_ascii_start().first() == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_objects_are_payloads() {
        for good in [&b"{}"[..], b" {\"a\":[1,{}]} ", b"{\"body\":\"\xc3\xa9\"}"] {
            assert!(is_json_object(good), "{good:?}");
        }
        for bad in [
            &b"[1,2]"[..],
            b"not json",
            b"\"text\"",
            b"{\"a\":1}{}",
            b"{\"a\":1",
            b"{\"body\":\"\xff\"}",
            b"12",
        ] {
            assert!(!is_json_object(bad), "{bad:?}");
        }
    }

    #[test]
    fn ndjson_lines_are_kept_exactly_and_numbered_from_one() {
        let body = Bytes::from_static(b"{\"a\":1}\r\n\n  \n{ \"b\" : 2 }  \n");
        let payloads = lines(&body).unwrap();
        assert_eq!(payloads, [&b"{\"a\":1}"[..], &b"{ \"b\" : 2 }  "[..]]);
        let bad = Bytes::from_static(b"{}\n\n[1,2]\n");
        match lines(&bad) {
            Err(ApiError::BadRequest(message)) => {
                assert_eq!(message, "body/line 3: not a JSON object")
            }
            other => panic!("{other:?}"),
        }
        let many = Bytes::from("{}\n".repeat(MAX_BATCH + 1));
        assert!(matches!(lines(&many), Err(ApiError::TooLarge(_))));
        assert_eq!(
            lines(&Bytes::from("{}\n".repeat(MAX_BATCH))).unwrap().len(),
            MAX_BATCH
        );
    }

    #[test]
    fn content_types_are_matched_by_their_essence() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            format(&headers)
        };
        assert_eq!(
            with("application/json; charset=utf-8").ok(),
            Some(Format::Json)
        );
        assert_eq!(with("Application/X-NDJSON").ok(), Some(Format::Ndjson));
        assert!(with("text/plain").is_err());
        assert!(format(&HeaderMap::new()).is_err());
    }
}
