//! The route handlers, each documented for the OpenAPI document.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody, StoreUnavailable};
use crate::message::TopList;
use crate::store::{Entry, Store, unix_now};

/// Top lists answer 10 entries unless `?limit=` says otherwise.
pub(crate) const DEFAULT_LIMIT: usize = 10;
/// Largest accepted `?limit=`.
pub(crate) const MAX_LIMIT: usize = 1000;

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
#[schema(example = json!({"status": "ok", "serverTimestamp": "2026-11-22T10:00:00Z", "redisStatus": "ready"}))]
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
pub(crate) struct LimitQuery {
    /// How many entries to answer (default 10).
    #[param(minimum = 1, maximum = 1000, example = 10)]
    pub limit: Option<u32>,
}

/// Reads `?limit=` (`None` when absent), answering in Fastify's validation wording when it is
/// invalid.
fn limit(query: Option<&str>) -> Result<Option<usize>, ApiError> {
    let raw = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "limit")
        .last()
        .map(|(_, v)| v.into_owned());
    let Some(raw) = raw else {
        return Ok(None);
    };
    let n: i128 = raw
        .trim()
        .parse()
        .map_err(|_| ApiError::BadRequest("querystring/limit must be integer".to_owned()))?;
    if n < 1 {
        return Err(ApiError::BadRequest(
            "querystring/limit must be >= 1".to_owned(),
        ));
    }
    if n > MAX_LIMIT as i128 {
        return Err(ApiError::BadRequest(format!(
            "querystring/limit must be <= {MAX_LIMIT}"
        )));
    }
    Ok(Some(n as usize))
}

/// A top list as the TypeScript service answered it: an array of one-key objects. Serialized
/// straight from the entries, without an intermediate JSON tree (this is the hottest route).
pub(crate) struct TopBody(Vec<Entry>);

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
) -> Result<Json<TopBody>, ApiError> {
    let limit = limit(query.as_deref())?.unwrap_or(DEFAULT_LIMIT);
    Ok(Json(TopBody(state.top(list, limit).await?)))
}

/// A 400 for a bad `?limit=`, written once for the OpenAPI document.
#[allow(
    dead_code,
    reason = "only describes an answer for the OpenAPI document"
)]
#[derive(utoipa::IntoResponses)]
pub(crate) enum BadLimit {
    /// The limit is not an integer in 1..=1000.
    #[response(status = 400, example = json!({"statusCode": 400, "error": "Bad Request", "message": "querystring/limit must be <= 1000"}))]
    Invalid(ErrorBody),
}

/// Declares the handler of one top-list route and its OpenAPI description.
macro_rules! top_list_route {
    ($(#[doc = $doc:literal])* $name:ident, $path:literal, $list:expr, $example:expr) => {
        $(#[doc = $doc])*
        #[utoipa::path(get, path = $path, tag = "stats", params(LimitQuery),
            responses(
                (status = 200, description = "Highest count first; equal counts in descending byte order", body = [TopEntry], example = $example),
                BadLimit, StoreUnavailable,
            ))]
        pub(crate) async fn $name<S: Store>(
            State(state): State<AppState<S>>,
            RawQuery(q): RawQuery,
        ) -> Result<Json<TopBody>, ApiError> {
            top(&state, $list, q).await
        }
    };
}

top_list_route!(
    /// The most used words.
    words, "/stats/words", TopList::Words, json!([{"Kappa": 161706}, {"LUL": 77443}])
);
top_list_route!(
    /// The most active nicks.
    nicks, "/stats/nicks", TopList::Nicks, json!([{"slicyyyy": 3}, {"moczark": 2}])
);
top_list_route!(
    /// The most active rooms.
    rooms, "/stats/rooms", TopList::Rooms, json!([{"#slicyyyon60fps": 3}, {"#sadparu": 2}])
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
    let limit = limit(q.as_deref())?;
    Ok(Json(state.timed(state.store.failed_messages(limit)).await?))
}

/// Health of the service and its store.
#[utoipa::path(get, path = "/healthcheck", tag = "service",
    responses(
        (status = 200, description = "The store answers", body = HealthBody),
        (status = 503, description = "The store is unreachable", body = HealthBody,
            example = json!({"status": "error", "serverTimestamp": "2026-11-22T10:00:00Z", "redisStatus": "unreachable: the store did not answer within 1000 ms"})),
    ))]
pub(crate) async fn healthcheck<S: Store>(State(state): State<AppState<S>>) -> Response {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
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
        path: uri.path().to_owned(),
    }
}

/// A method a route does not serve (every route serves GET and HEAD).
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_validated_in_fastify_words() {
        assert_eq!(limit(None).unwrap(), None);
        assert_eq!(limit(Some("limit=1000")).unwrap(), Some(1000));
        assert_eq!(limit(Some("x=1&limit=%203")).unwrap(), Some(3));
        let msg = |q: &str| limit(Some(q)).unwrap_err().to_string();
        assert_eq!(msg("limit=0"), "querystring/limit must be >= 1");
        assert_eq!(msg("limit=1001"), "querystring/limit must be <= 1000");
        assert_eq!(msg("limit=abc"), "querystring/limit must be integer");
        assert_eq!(
            msg("limit=99999999999999999999999999999999999999999"),
            "querystring/limit must be integer"
        );
    }
}
