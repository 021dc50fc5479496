//! A short-lived cache of whole answers of the statistics routes (`STATS_CACHE_MS`), and their
//! validators: every `200` of a `/stats` route carries a weak `ETag` (a hash of its body), and
//! a request whose `If-None-Match` names it gets `304 Not Modified` without the body.
//!
//! Dashboards poll the same few URLs; answering them from memory for a few tens of
//! milliseconds costs a handful of Redis calls per second instead of one per request, and makes
//! those routes about as cheap as `GET /`. Concurrent requests for the same URL while it is
//! being fetched share the one fetch. Only `200` answers are kept; the cache holds at most
//! [`MAX_ENTRIES`] URLs. With `STATS_CACHE_MS=0` every answer is read from the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::OnceCell;

/// Most URLs kept at once.
const MAX_ENTRIES: usize = 4096;
/// Largest answer kept.
const MAX_BODY: usize = 16 << 20;

/// An answer as kept.
#[derive(Clone)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

struct Slot {
    created: Instant,
    answer: Arc<OnceCell<Answer>>,
}

/// The answers of the statistics routes, by URL.
pub(crate) struct ResponseCache {
    ttl: Duration,
    slots: Mutex<HashMap<String, Slot>>,
}

impl ResponseCache {
    /// A cache keeping answers for `ttl` (zero: off).
    pub(crate) fn new(ttl: Duration) -> ResponseCache {
        ResponseCache {
            ttl,
            slots: Mutex::default(),
        }
    }

    /// The cell of `url`'s current answer at `now`, new when there is none or it is too old.
    /// An answer still being read is never too old: a slow one (a range over hundreds of
    /// thousands of flat counts takes seconds) is read once for everyone who asks meanwhile,
    /// not once more every `ttl`.
    fn slot(&self, url: &str, now: Instant) -> Arc<OnceCell<Answer>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = |s: &Slot| {
            now.saturating_duration_since(s.created) < self.ttl || !s.answer.initialized()
        };
        if let Some(slot) = slots.get(url).filter(|s| fresh(s)) {
            return slot.answer.clone();
        }
        if slots.len() >= MAX_ENTRIES {
            slots.retain(|_, s| fresh(s));
            if slots.len() >= MAX_ENTRIES {
                slots.clear();
            }
        }
        let answer = Arc::new(OnceCell::new());
        let slot = Slot {
            created: now,
            answer: answer.clone(),
        };
        slots.insert(url.to_owned(), slot);
        answer
    }

    /// Forgets `url`'s answer if it is still `answer` (a failed one must not be served again).
    fn forget(&self, url: &str, answer: &Arc<OnceCell<Answer>>) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots
            .get(url)
            .is_some_and(|s| Arc::ptr_eq(&s.answer, answer))
        {
            slots.remove(url);
        }
    }
}

/// Serves `GET /stats…` from the cache when it is on.
pub(crate) async fn layer(
    State(cache): State<Arc<ResponseCache>>,
    request: Request,
    next: Next,
) -> Response {
    let cacheable = !cache.ttl.is_zero()
        && request.method() == Method::GET
        && request.uri().path().starts_with("/stats");
    if !cacheable {
        return next.run(request).await;
    }
    let url = request.uri().to_string();
    let cell = cache.slot(&url, Instant::now());
    let answer = cell
        .get_or_init(|| async move {
            let (parts, body) = next.run(request).await.into_parts();
            let body = axum::body::to_bytes(body, MAX_BODY)
                .await
                .unwrap_or_default();
            let mut headers = parts.headers;
            if parts.status == StatusCode::OK {
                headers.insert(header::ETAG, etag(&body));
            }
            Answer {
                status: parts.status,
                headers,
                body,
            }
        })
        .await
        .clone();
    if answer.status != StatusCode::OK {
        cache.forget(&url, &cell);
    }
    answer.into_response()
}

/// A weak validator of `body` (weak: the same answer may be sent compressed or not).
fn etag(body: &[u8]) -> HeaderValue {
    use std::hash::{Hash, Hasher};
    let mut hasher = rustc_hash::FxHasher::default();
    body.hash(&mut hasher);
    let value = format!("W/\"{:016x}{:08x}\"", hasher.finish(), body.len());
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("W/\"0\""))
}

/// Answers `304 Not Modified` when a `/stats` request's `If-None-Match` names the answer's
/// `ETag`; adds the `ETag` when the cache is off. A `HEAD` is answered as the `GET` it stands
/// for, without the body: the same `ETag`, the same 304.
pub(crate) async fn conditional(mut request: Request, next: Next) -> Response {
    let head = request.method() == Method::HEAD;
    let stats =
        (head || request.method() == Method::GET) && request.uri().path().starts_with("/stats");
    if !stats {
        return next.run(request).await;
    }
    if head {
        *request.method_mut() = Method::GET;
    }
    let wanted = request.headers().get(header::IF_NONE_MATCH).cloned();
    let response = validate(wanted, next.run(request).await).await;
    if head {
        // The length the GET's body would have (RFC 9110 9.3.2), not the empty body's.
        let (mut parts, body) = response.into_parts();
        let length = axum::body::HttpBody::size_hint(&body).exact();
        if let Some(length) = length.filter(|_| parts.status != StatusCode::NOT_MODIFIED) {
            parts.headers.insert(header::CONTENT_LENGTH, length.into());
        }
        return Response::from_parts(parts, Body::empty());
    }
    response
}

/// `response` with its `ETag`, or a 304 when `wanted` (`If-None-Match`) names it.
async fn validate(wanted: Option<HeaderValue>, response: Response) -> Response {
    if response.status() != StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let body = match parts.headers.get(header::ETAG) {
        Some(_) => body,
        None => {
            let bytes = axum::body::to_bytes(body, MAX_BODY)
                .await
                .unwrap_or_default();
            parts.headers.insert(header::ETAG, etag(&bytes));
            Body::from(bytes)
        }
    };
    let tag = parts.headers.get(header::ETAG).cloned();
    let matches =
        match (wanted, tag) {
            (Some(wanted), Some(tag)) => wanted
                .to_str()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .any(|w| {
                    w == "*"
                        || w.trim_start_matches("W/")
                            == tag.to_str().unwrap_or("").trim_start_matches("W/")
                }),
            _ => false,
        };
    if matches {
        // The length a 200 would have had (RFC 9110 8.6): otherwise a HEAD's 304 would get the
        // empty body's `Content-Length: 0` from the router.
        let length = axum::body::HttpBody::size_hint(&body).exact();
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_TYPE);
        match length {
            Some(length) => parts.headers.insert(header::CONTENT_LENGTH, length.into()),
            None => parts.headers.remove(header::CONTENT_LENGTH),
        };
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_being_read_is_shared_however_long_it_takes() {
        let cache = ResponseCache::new(Duration::from_millis(50));
        let start = Instant::now();
        let reading = cache.slot("/stats/words?window=1h", start);
        let later = start + Duration::from_secs(3);
        let asked = cache.slot("/stats/words?window=1h", later);
        assert!(Arc::ptr_eq(&reading, &asked), "one read for both");
        // Once read, the answer ages as before.
        let answer = Answer {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"[]"),
        };
        reading.set(answer).ok().unwrap();
        let again = cache.slot("/stats/words?window=1h", later);
        assert!(
            !Arc::ptr_eq(&reading, &again),
            "an old answer is read again"
        );
        assert!(Arc::ptr_eq(
            &again,
            &cache.slot("/stats/words?window=1h", later)
        ));
    }
}
