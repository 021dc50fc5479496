//! The HTTP API: the TypeScript service's routes and shapes, documented by OpenAPI.
//!
//! [`router`] builds the whole application so tests can call it without a socket; [`serve`]
//! runs it on a listener until shutdown with timeouts, a connection cap and a bounded drain
//! ([`server`]).

mod auth;
mod cache;
mod dashboard;
pub(crate) mod error;
mod history;
mod ingest;
mod query;
mod rate;
pub(crate) mod routes;
mod server;
mod summary;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use self::auth::IngestTokens;
pub use self::rate::{RateLimit, TrustedProxies};
use crate::store::{Store, StoreError};
use crate::telemetry::metrics;
use crate::timeline::{Covered, Retention, Rolled, cover};

/// The OpenAPI document, generated from the route handlers and their types.
#[derive(OpenApi)]
#[openapi(
    info(title = "chatstats", description = "Statistics of a live chat stream: top words, nicks, rooms and emotes — all time, per room, per nick and per time range — activity over time, messages per second, failed messages."),
    paths(routes::root, routes::healthcheck, routes::metrics, dashboard::dashboard, documentation, documentation_json, routes::stats, routes::words, routes::nicks, routes::rooms, routes::emotes,
        summary::room, summary::nick, summary::activity, routes::failed_messages,
        history::messages, history::message, history::live, history::ws, ingest::post),
    components(schemas(routes::WindowName, routes::BucketName, routes::RootBody, routes::StatsBody, routes::HealthBody, routes::TopEntry, error::ErrorBody,
        summary::RoomSummary, summary::NickSummary, summary::ActivityPoint,
        history::HistoryMessage, history::HistoryPageBody, ingest::AcceptedBody, ingest::IngestPayload)),
    modifiers(&BearerAuth, &ReadConventions),
    tags((name = "stats", description = "Statistics"), (name = "history", description = "Recorded messages and the live feed"),
        (name = "ingestion", description = "Posting messages to the inbox the workers consume"),
        (name = "service", description = "Service status"))
)]
pub(crate) struct ApiDoc;

/// Declares what every read shares rather than repeating it per route: `429` when
/// `READ_RATE_LIMIT` is set (with `Retry-After`), and on the statistics routes the `ETag` of
/// a 200, `If-None-Match` and its `304`.
struct ReadConventions;

impl utoipa::Modify for ReadConventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{
            ContentBuilder, HeaderBuilder, Ref, RefOr, Required, ResponseBuilder, Type,
            schema::ObjectBuilder,
        };
        let text = || ObjectBuilder::new().schema_type(Type::String).build();
        let limited = ResponseBuilder::new()
            .description("Over READ_RATE_LIMIT (only when it is set); retry after Retry-After seconds")
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer).build())
                    .description(Some("Seconds until a request would be accepted"))
                    .build(),
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .example(Some(serde_json::json!({"statusCode": 429, "error": "Too Many Requests", "message": "rate limit exceeded: retry in 1 s"})))
                    .build(),
            )
            .build();
        let not_modified = ResponseBuilder::new()
            .description("Not modified: If-None-Match names the answer's current ETag; no body")
            .build();
        let etag = HeaderBuilder::new()
            .schema(text())
            .description(Some("A weak validator of the answer, for If-None-Match"))
            .build();
        let if_none_match = ParameterBuilder::new()
            .name("If-None-Match")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "An ETag of an earlier answer: 304 while it is still the answer",
            ))
            .schema(Some(text()))
            .example(Some(serde_json::json!("W/\"5e0c1d2a3b4c5d6e00000041\"")))
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            let Some(get) = item.get.as_mut() else {
                continue;
            };
            let responses = &mut get.responses.responses;
            responses
                .entry("429".to_owned())
                .or_insert_with(|| RefOr::T(limited.clone()));
            if path.starts_with("/stats") {
                if let Some(RefOr::T(ok)) = responses.get_mut("200") {
                    ok.headers.insert("ETag".to_owned(), etag.clone());
                }
                responses
                    .entry("304".to_owned())
                    .or_insert_with(|| RefOr::T(not_modified.clone()));
                get.parameters
                    .get_or_insert_with(Vec::new)
                    .push(if_none_match.clone());
            }
        }
    }
}

/// Declares the `bearer` security scheme of `POST /messages` (`INGEST_TOKENS`).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("One of INGEST_TOKENS"))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// How the API answers.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Allowed CORS origins; `*` any; empty: CORS off.
    pub cors_origin: String,
    /// Longest wait for the store per call.
    pub store_timeout: Duration,
    /// How long top lists are cached between requests (zero: off).
    pub cache: Duration,
    /// How long a connection may take to send a request's headers, or stay idle.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// After shutdown, how long open requests may take to finish.
    pub shutdown_timeout: Duration,
    /// How long time buckets are kept (which buckets a range is answered from).
    pub retention: Retention,
    /// Bearer tokens accepted by `POST /messages`; none: ingestion disabled (403).
    pub ingest_tokens: IngestTokens,
    /// Requests of `POST /messages` per token; `None`: no limit.
    pub ingest_rate: Option<RateLimit>,
    /// `GET` and `HEAD` requests per client IP; `None`: no limit.
    pub read_rate: Option<RateLimit>,
    /// Peers whose `X-Forwarded-For` names the client (for `read_rate`).
    pub trusted_proxies: TrustedProxies,
}

/// Shared state of the handlers. Every request gets a clone (axum's `State`): one reference
/// count, whatever the state holds.
pub struct AppState<S>(Arc<Shared<S>>);

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState(self.0.clone())
    }
}

impl<S> std::ops::Deref for AppState<S> {
    type Target = Shared<S>;

    fn deref(&self) -> &Shared<S> {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared<S> {
    store: S,
    settings: ApiSettings,
    /// The store's rolled-up horizon, read at most once a second (it only moves forward, and
    /// a stale one only makes a range read from finer buckets).
    rolled: std::sync::Mutex<Option<(std::time::Instant, Rolled)>>,
    /// The live statistics, shared by every subscriber.
    live: history::LiveHub,
    /// Cancelled when the API shuts down: live feeds end.
    closing: CancellationToken,
    /// The rate limiters.
    limits: Arc<rate::Limiters>,
}

impl<S: Store> AppState<S> {
    /// State over `store`.
    pub fn new(store: S, settings: ApiSettings) -> AppState<S> {
        AppState(Arc::new(Shared {
            store,
            limits: rate::Limiters::new(&settings).into(),
            settings,
            rolled: std::sync::Mutex::default(),
            live: history::LiveHub::default(),
            closing: CancellationToken::new(),
        }))
    }

    /// Which hour and day buckets can be read.
    async fn rolled(&self) -> Result<Rolled, StoreError> {
        let lock = || {
            self.rolled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some((at, rolled)) = *lock()
            && at.elapsed() < Duration::from_secs(1)
        {
            return Ok(rolled);
        }
        let rolled = self.timed(self.store.rolled()).await?;
        *lock() = Some((std::time::Instant::now(), rolled));
        Ok(rolled)
    }

    /// The buckets that answer `[from, to)` at `now`.
    async fn cover(&self, from: u64, to: u64, now: u64) -> Result<Covered, StoreError> {
        let rolled = self.rolled().await?;
        Ok(cover(from, to, now, &self.settings.retention, &rolled))
    }

    /// `call`, failing with a timeout error when the store takes too long.
    async fn timed<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.settings.store_timeout;
        let started = std::time::Instant::now();
        // A timeout while Redis cannot be reached says why (refused, wrong password…).
        let result = tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(match self.store.unreachable() {
                Some(cause) => StoreError::Unreachable(cause),
                None => StoreError::Timeout(limit.as_millis() as u64),
            })
        });
        metrics::store_call("read", started.elapsed());
        result
    }
}

/// Counts each request of a route in the metrics, by its pattern (`/stats/rooms/{room}`).
async fn count_request(
    route: axum::extract::MatchedPath,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let route = route.as_str().to_owned();
    let response = next.run(request).await;
    metrics::api_request(route, response.status().as_u16(), started.elapsed());
    response
}

fn cors(origins: &str) -> Option<CorsLayer> {
    let origins = origins.trim();
    if origins.is_empty() {
        return None;
    }
    let allow = if origins == "*" {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .split(',')
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    // As `@fastify/cors` by default: the headers a preflight asks for are allowed (a bearer
    // token for `POST /messages`, `If-None-Match`); the headers of ranged and conditional
    // answers are readable by the page.
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::OPTIONS])
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers([
                HeaderName::from_static("range-from"),
                HeaderName::from_static("range-to"),
                header::ETAG,
                header::RETRY_AFTER,
            ]),
    )
}

/// The whole application: routes, documentation, 404s, CORS, limits.
pub fn router<S: Store>(state: AppState<S>) -> Router {
    crate::telemetry::metrics::ingestion_series(&ingest::REJECTION_REASONS);
    let cors = cors(&state.settings.cors_origin);
    let cache = Arc::new(cache::ResponseCache::new(state.settings.cache));
    let limits = state.limits.clone();
    let docs = SwaggerUi::new("/documentation").url("/documentation/json", ApiDoc::openapi());
    let api = Router::new()
        .route("/", get(routes::root))
        .route("/healthcheck", get(routes::healthcheck::<S>))
        .route("/stats", get(routes::stats::<S>))
        .route("/stats/words", get(routes::words::<S>))
        .route("/stats/nicks", get(routes::nicks::<S>))
        .route("/stats/rooms", get(routes::rooms::<S>))
        .route("/stats/emotes", get(routes::emotes::<S>))
        .route("/stats/rooms/{room}", get(summary::room::<S>))
        .route("/stats/nicks/{nick}", get(summary::nick::<S>))
        .route("/stats/activity", get(summary::activity::<S>))
        .route("/metrics", get(routes::metrics))
        .route("/dashboard", get(dashboard::dashboard))
        .route(
            "/messages",
            get(history::messages::<S>).post(ingest::post::<S>),
        )
        .route("/messages/{id}", get(history::message::<S>))
        .route("/live", get(history::live::<S>))
        .route("/ws", get(history::ws::<S>))
        .route("/stats/failedMessages", get(routes::failed_messages::<S>))
        .route_layer(axum::middleware::from_fn(count_request))
        .with_state(state)
        .merge(
            Router::from(docs.clone())
                .layer(axum::middleware::from_fn_with_state(
                    Router::from(docs),
                    docs_page,
                ))
                .layer(axum::middleware::from_fn(error::json_not_found)),
        )
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn(error::guard))
        .layer(axum::middleware::from_fn_with_state(cache, cache::layer))
        .layer(axum::middleware::from_fn(cache::conditional))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            rate::read_limit,
        ))
        // Outside every layer that answers: the rate limit's 429 too.
        .layer(axum::middleware::map_response(json_charset))
        .layer(TraceLayer::new_for_http())
        // Large answers (top 1,000 lists, failed messages) compressed for clients that ask.
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn(head_as_compressed));
    match cors {
        Some(cors) => api.layer(cors),
        None => api,
    }
}

/// `GET /documentation`, in the document (the page is served by `utoipa-swagger-ui`).
#[utoipa::path(get, path = "/documentation", tag = "service",
    responses((status = 200, description = "The Swagger UI (HTML) of this document", content_type = "text/html")))]
#[allow(dead_code)]
fn documentation() {}

/// `GET /documentation/json`, in the document itself.
#[utoipa::path(get, path = "/documentation/json", tag = "service",
    responses((status = 200, description = "This OpenAPI document", content_type = "application/json", body = Object,
        example = json!({"openapi": "3.1.0", "info": {"title": "chatstats"}, "paths": {}}))))]
#[allow(dead_code)]
fn documentation_json() {}

/// `GET /documentation` answers the Swagger UI page itself (200), not a redirect to
/// `/documentation/` as `utoipa-swagger-ui` does: a client that does not follow redirects gets
/// the page. Its assets are named relative to `/documentation/`, hence the `<base>`.
async fn docs_page(
    axum::extract::State(docs): axum::extract::State<Router>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if request.uri().path() != "/documentation" {
        return next.run(request).await;
    }
    // Routing is done (to the redirect): the page is asked of the Swagger UI's own routes.
    *request.uri_mut() = axum::http::Uri::from_static("/documentation/");
    let Ok(response) = tower::ServiceExt::oneshot(docs, request).await;
    if response.status() != axum::http::StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(page) = axum::body::to_bytes(body, 1 << 20).await else {
        return axum::response::IntoResponse::into_response(axum::response::Redirect::to(
            "/documentation/",
        ));
    };
    let page = String::from_utf8_lossy(&page).replacen(
        "<head>",
        "<head>\n    <base href=\"/documentation/\">",
        1,
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(page))
}

/// JSON answers say `application/json; charset=utf-8`, as the TypeScript service's (Fastify's)
/// did: clients written against it see the same header.
async fn json_charset(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    if headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()) == Some(b"application/json") {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    response
}

/// A `HEAD` answer stands for the `GET` answer, which is compressed, without a length, when the
/// client accepts a coding and the answer is not tiny (the compression layer's rule: more than
/// 32 bytes). The layer compresses a `HEAD` answer only when it still has its body; the cached
/// ones come without it, and their `Content-Length` would be the uncompressed one. Leave the
/// length out then (RFC 9110 9.3.2 allows it: the `GET` sends none either), and say the answer
/// varies with `Accept-Encoding`, as the `GET`'s does.
async fn head_as_compressed(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let compressible = request.method() == Method::HEAD
        && request
            .headers()
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .any(accepts_a_coding);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if compressible && !headers.contains_key(header::CONTENT_ENCODING) && length > Some(32) {
        headers.remove(header::CONTENT_LENGTH);
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
        // An empty body of unknown length: with an empty one of known length the server
        // would say `Content-Length: 0`.
        *response.body_mut() = axum::body::Body::from_stream(futures::stream::empty::<
            Result<bytes::Bytes, std::convert::Infallible>,
        >());
    }
    response
}

/// Whether an `Accept-Encoding` value accepts a coding the compression layer uses (`gzip`,
/// `br`, `deflate` or `*`, with a weight above 0).
fn accepts_a_coding(value: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    value.split(',').any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default().to_ascii_lowercase();
        let weight = parts
            .find_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
        matches!(name.as_str(), "gzip" | "br" | "deflate" | "*") && weight > 0.0
    })
}

/// Serves the API on `listener` until `shutdown` is cancelled, then drains open requests
/// within the shutdown timeout.
pub async fn serve<S: Store>(
    listener: TcpListener,
    state: AppState<S>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, docs = %format!("http://{address}/documentation"), "API listening");
    let settings = &state.settings;
    let limits = server::Limits {
        idle_timeout: settings.idle_timeout,
        max_connections: settings.max_connections,
        shutdown_timeout: settings.shutdown_timeout,
    };
    // Live feeds end when the API shuts down, so that the drain does not wait for them.
    let closing = state.closing.clone();
    tokio::spawn(rate::sweep(state.limits.clone(), closing.clone()));
    let stop = shutdown.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        closing.cancel();
    });
    server::serve(listener, router(state), limits, shutdown).await
}
