//! The route handlers, each documented for the OpenAPI document.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody, StoreUnavailable};
use super::query::{Params, rfc3339};
use crate::detail::Period;
use crate::message::TopList;
use crate::store::{Entry, Store, unix_now};
use crate::timeline::{Covered, now_ms};

/// `GET /`: the service is up.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": true}))]
pub(crate) struct RootBody {
    /// Always true.
    pub status: bool,
}

/// `GET /stats`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"messagesPerSecond": 5012, "failedMessagesTotal": 12}))]
pub(crate) struct StatsBody {
    /// Messages recorded in the last complete second, by all workers.
    pub messages_per_second: u64,
    /// Failed messages recorded since the data began (duplicates included).
    pub failed_messages_total: u64,
}

/// `GET /healthcheck`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"status": "ok", "serverTimestamp": "2026-11-22T10:00:00.000Z", "redisStatus": "ready"}))]
pub(crate) struct HealthBody {
    /// `ok`, or `error` when the store is unreachable.
    pub status: String,
    /// The server's clock, RFC 3339.
    pub server_timestamp: String,
    /// `ready` (Redis answers), `in-memory`, or what is wrong.
    pub redis_status: String,
}

/// One top-list entry: an object with one key, the member, whose value is its count.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"Kappa": 161706}))]
pub(crate) struct TopEntry(pub BTreeMap<String, u64>);

/// Query of the top-list routes.
#[allow(
    dead_code,
    reason = "only describes the query for the OpenAPI document"
)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TopQuery {
    /// How many entries to answer (default 10).
    #[param(minimum = 1, maximum = 1000, example = 10)]
    pub limit: Option<u32>,
    /// Only messages in this room, exactly as received (`%23foo` for `#foo`). Not on
    /// `/stats/rooms`; not with `nick`.
    #[param(example = "#kitchen", min_length = 1)]
    pub room: Option<String>,
    /// Only messages by this nick; all-time only. Not on `/stats/nicks`; not with `room`, a
    /// range or a window.
    #[param(example = "alice", min_length = 1)]
    pub nick: Option<String>,
    /// Start of the range (inclusive): RFC 3339 or Unix milliseconds. Widened to whole minutes
    /// (whole hours past 6 h); omitted: as far back as anything is kept.
    #[param(example = "2026-11-23T08:01:00Z")]
    pub from: Option<String>,
    /// End of the range (exclusive): RFC 3339 or Unix milliseconds; omitted: now. Widened to a
    /// whole minute while the minutes there are kept (7 h by default), else to an hour or day.
    #[param(example = "1795420980000")]
    pub to: Option<String>,
    /// The last `1m`, `5m`, `15m`, `1h`, `6h`, `24h`, `7d` or `30d`, up to now. Not with `from` or
    /// `to`.
    #[param(example = "5m", value_type = Option<WindowName>)]
    pub window: Option<String>,
}

/// [`TopQuery`] without `room`: the query of `/stats/rooms` (a filter on its own list is a 400).
pub(crate) struct RoomsQuery;

/// [`TopQuery`] without `nick`: the query of `/stats/nicks`.
pub(crate) struct NicksQuery;

/// The parameters of [`TopQuery`] but `left_out`.
fn top_query_without(
    left_out: &str,
    parameter_in: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
) -> Vec<utoipa::openapi::path::Parameter> {
    TopQuery::into_params(parameter_in)
        .into_iter()
        .filter(|parameter| parameter.name != left_out)
        .collect()
}

impl IntoParams for RoomsQuery {
    fn into_params(
        parameter_in: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        top_query_without("room", parameter_in)
    }
}

impl IntoParams for NicksQuery {
    fn into_params(
        parameter_in: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        top_query_without("nick", parameter_in)
    }
}

/// A window: the range from that long ago up to now.
#[allow(
    dead_code,
    reason = "only describes a parameter for the OpenAPI document"
)]
#[derive(ToSchema)]
pub(crate) enum WindowName {
    #[schema(rename = "1m")]
    OneMinute,
    #[schema(rename = "5m")]
    FiveMinutes,
    #[schema(rename = "15m")]
    FifteenMinutes,
    #[schema(rename = "1h")]
    OneHour,
    #[schema(rename = "6h")]
    SixHours,
    #[schema(rename = "24h")]
    OneDay,
    #[schema(rename = "7d")]
    SevenDays,
    #[schema(rename = "30d")]
    ThirtyDays,
}

/// A bucket size of `/stats/activity`: a minute, an hour or a day.
#[allow(
    dead_code,
    reason = "only describes a parameter for the OpenAPI document"
)]
#[derive(ToSchema)]
pub(crate) enum BucketName {
    #[schema(rename = "1m")]
    Minute,
    #[schema(rename = "1h")]
    Hour,
    #[schema(rename = "1d")]
    Day,
}

/// A top list as the TypeScript service answered it: an array of one-key objects. Serialized
/// straight from the entries, without an intermediate JSON tree (this is the hottest route).
pub(crate) struct TopBody(pub(crate) Vec<Entry>);

impl Serialize for TopBody {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct One<'a>(&'a Entry);
        impl Serialize for One<'_> {
            fn serialize<Ser: serde::Serializer>(
                &self,
                serializer: Ser,
            ) -> Result<Ser::Ok, Ser::Error> {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(&self.0.0, &self.0.1)?;
                map.end()
            }
        }
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for entry in &self.0 {
            seq.serialize_element(&One(entry))?;
        }
        seq.end()
    }
}

async fn top<S: Store>(
    state: &AppState<S>,
    list: TopList,
    query: Option<String>,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref())?;
    params.check_top(list)?;
    let (limit, scope, now) = (params.limit(), params.scope(), now_ms());
    let retention = &state.settings.retention;
    let Some((from, to)) = params.range(now, retention)? else {
        let entries = state
            .timed(state.store.top_in(list, &scope, &[Period::AllTime], limit))
            .await?;
        return Ok(Json(TopBody(entries)).into_response());
    };
    let covered = state.cover(from, to, now).await?;
    let periods = periods(&covered);
    let entries = state
        .timed(state.store.top_in(list, &scope, &periods, limit))
        .await?;
    Ok(ranged(&covered, Json(TopBody(entries))))
}

/// The periods of a covered range.
pub(crate) fn periods(covered: &Covered) -> Vec<Period> {
    covered.buckets.iter().map(|b| Period::Bucket(*b)).collect()
}

/// `body` with the `Range-From` and `Range-To` headers of the range it covers.
pub(crate) fn ranged(covered: &Covered, body: impl IntoResponse) -> Response {
    let header =
        |ms| HeaderValue::from_str(&rfc3339(ms, false)).unwrap_or(HeaderValue::from_static(""));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(RANGE_FROM, header(covered.from_ms));
    headers.insert(RANGE_TO, header(covered.to_ms));
    response
}

/// The header naming where a ranged answer's range starts.
pub(crate) const RANGE_FROM: HeaderName = HeaderName::from_static("range-from");
/// The header naming where a ranged answer's range ends (exclusive).
pub(crate) const RANGE_TO: HeaderName = HeaderName::from_static("range-to");

/// A 400 for a bad query, written once for the OpenAPI document.
#[allow(
    dead_code,
    reason = "only describes an answer for the OpenAPI document"
)]
#[derive(utoipa::IntoResponses)]
pub(crate) enum BadQuery {
    /// A parameter is malformed (a limit outside 1..=1000, a time that is neither RFC 3339 nor
    /// Unix milliseconds, an unknown window), or parameters are combined that cannot be
    /// (`room` with `nick`, `window` with `from`/`to`, `nick` with a range, a filter on its own
    /// list), or `from` is not before `to`.
    #[response(status = 400, example = json!({"statusCode": 400, "error": "Bad Request", "message": "querystring/window must be one of 1m, 5m, 15m, 1h, 6h, 24h, 7d, 30d"}))]
    Invalid(ErrorBody),
}

/// A 400 of a route whose only parameter is `limit`.
#[allow(
    dead_code,
    reason = "only describes an answer for the OpenAPI document"
)]
#[derive(utoipa::IntoResponses)]
pub(crate) enum BadLimit {
    /// `limit` is not a whole number in 1..=1000; on `/stats/nicks/{nick}` (all time only),
    /// also a range, a window, `room`, `nick` or `bucket`.
    #[response(status = 400, example = json!({"statusCode": 400, "error": "Bad Request", "message": "querystring/limit must be <= 1000"}))]
    Invalid(ErrorBody),
}

/// Declares the handler of one top-list route and its OpenAPI description.
macro_rules! top_list_route {
    ($(#[doc = $doc:literal])* $name:ident, $path:literal, $query:ty, $list:expr, $example:expr) => {
        $(#[doc = $doc])*
        #[utoipa::path(get, path = $path, tag = "stats", params($query),
            responses(
                (status = 200, description = "Highest count first; equal counts in descending byte order. All time, or over a range (then with Range-From and Range-To)", body = [TopEntry],
                    headers(
                        ("Range-From" = String, description = "Ranged answers: start of the range covered (RFC 3339), the range asked widened to whole buckets"),
                        ("Range-To" = String, description = "Ranged answers: end of the range covered (RFC 3339, exclusive)"),
                    ),
                    example = $example),
                BadQuery, StoreUnavailable,
            ))]
        pub(crate) async fn $name<S: Store>(
            State(state): State<AppState<S>>,
            RawQuery(q): RawQuery,
        ) -> Result<Response, ApiError> {
            top(&state, $list, q).await
        }
    };
}

top_list_route!(
    /// The most used words.
    words, "/stats/words", TopQuery, TopList::Words, json!([{"Kappa": 161706}, {"LUL": 77443}])
);
top_list_route!(
    /// The most active nicks.
    nicks, "/stats/nicks", NicksQuery, TopList::Nicks, json!([{"slicyyyy": 3}, {"moczark": 2}])
);
top_list_route!(
    /// The most active rooms.
    rooms, "/stats/rooms", RoomsQuery, TopList::Rooms, json!([{"#slicyyyon60fps": 3}, {"#sadparu": 2}])
);
top_list_route!(
    /// The most used emotes: Twitch emotes (the `emotes` tag) and third-party ones
    /// (`EMOTE_NAMES_FILE`).
    emotes, "/stats/emotes", TopQuery, TopList::Emotes, json!([{"Kappa": 6}, {"KEKW": 4}])
);

/// Messages per second.
#[utoipa::path(get, path = "/stats", tag = "stats",
    responses(
        (status = 200, description = "Messages recorded in the last complete second, by all workers", body = StatsBody),
        StoreUnavailable,
    ))]
pub(crate) async fn stats<S: Store>(
    State(state): State<AppState<S>>,
) -> Result<Json<StatsBody>, ApiError> {
    let last_second = unix_now().saturating_sub(1);
    let store = &state.store;
    let (mps, failed) = tokio::try_join!(
        state.timed(store.messages_in_second(last_second)),
        state.timed(store.failed_total())
    )?;
    Ok(Json(StatsBody {
        messages_per_second: mps,
        failed_messages_total: failed,
    }))
}

/// Query of `/stats/failedMessages`.
#[allow(
    dead_code,
    reason = "only describes the query for the OpenAPI document"
)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FailedQuery {
    /// How many payloads to answer, newest first (default: all that are kept).
    #[param(minimum = 1, maximum = 1000, example = 50)]
    pub limit: Option<u32>,
}

/// The failed messages.
#[utoipa::path(get, path = "/stats/failedMessages", tag = "stats", params(FailedQuery),
    responses(
        (status = 200, description = "Raw payloads that could not be processed, unique, newest first (the newest FAILED_MESSAGES_MAX are kept)",
            body = [String], example = json!(["{\"room\":\"99\",\"body\":<you actually hear", "not json"])),
        BadLimit, StoreUnavailable,
    ))]
pub(crate) async fn failed_messages<S: Store>(
    State(state): State<AppState<S>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<String>>, ApiError> {
    let limit = Params::parse(q.as_deref())?.limit;
    Ok(Json(state.timed(state.store.failed_messages(limit)).await?))
}

/// Health of the service and its store.
#[utoipa::path(get, path = "/healthcheck", tag = "service",
    responses(
        (status = 200, description = "The store answers", body = HealthBody),
        (status = 503, description = "The store is unreachable", body = HealthBody,
            example = json!({"status": "error", "serverTimestamp": "2026-11-22T10:00:00.000Z", "redisStatus": "unreachable: the store did not answer within 1000 ms"})),
    ))]
pub(crate) async fn healthcheck<S: Store>(State(state): State<AppState<S>>) -> Response {
    // Milliseconds, as the TypeScript service's `toISOString()` gave them.
    let now = rfc3339(now_ms(), true);
    let (code, status, redis_status) = match state.timed(state.store.health()).await {
        Ok(status) => (StatusCode::OK, "ok", status),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "error",
            format!("unreachable: {err}"),
        ),
    };
    let body = HealthBody {
        status: status.to_owned(),
        server_timestamp: now,
        redis_status,
    };
    (code, Json(body)).into_response()
}

/// Prometheus metrics of this process: messages, failed messages, upstream reconnects, store
/// retries, calls in flight, store call latency and API latency per route (histograms).
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format, version 0.0.4", body = String, content_type = "text/plain",
        example = json!("# TYPE chatstats_messages_total counter\nchatstats_messages_total 120345\n"))))]
pub(crate) async fn metrics() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::metrics::render(),
    )
        .into_response()
}

/// The service answers.
#[utoipa::path(get, path = "/", tag = "service",
    responses((status = 200, description = "Always", body = RootBody)))]
pub(crate) async fn root() -> Json<RootBody> {
    Json(RootBody { status: true })
}

/// Any route that does not exist.
pub(crate) async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound {
        method: method.to_string(),
        path: target(&uri),
    }
}

/// A request's path with its query (`/nope?x=1`), as Fastify's 404 message names it.
pub(crate) fn target(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned())
}

/// A method a route does not serve (every route serves GET and HEAD).
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}
