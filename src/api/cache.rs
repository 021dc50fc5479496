//! A short-lived cache of whole answers of the statistics routes (`STATS_CACHE_MS`).
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
use axum::http::{HeaderMap, Method, StatusCode};
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

    /// The cell of `url`'s current answer, new when there is none or it is too old.
    fn slot(&self, url: &str) -> Arc<OnceCell<Answer>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get(url)
            && slot.created.elapsed() < self.ttl
        {
            return slot.answer.clone();
        }
        if slots.len() >= MAX_ENTRIES {
            slots.retain(|_, s| s.created.elapsed() < self.ttl);
            if slots.len() >= MAX_ENTRIES {
                slots.clear();
            }
        }
        let answer = Arc::new(OnceCell::new());
        let slot = Slot {
            created: Instant::now(),
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
    let cell = cache.slot(&url);
    let answer = cell
        .get_or_init(|| async move {
            let (parts, body) = next.run(request).await.into_parts();
            let body = axum::body::to_bytes(body, MAX_BODY)
                .await
                .unwrap_or_default();
            Answer {
                status: parts.status,
                headers: parts.headers,
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
