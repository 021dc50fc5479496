//! One room, one nick, and activity over time: `/stats/rooms/{room}`, `/stats/nicks/{nick}`,
//! `/stats/activity`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody, StoreUnavailable};
use super::query::{MAX_ACTIVITY_BUCKETS, Params, rfc3339};
use super::routes::{BadLimit, BadQuery, TopBody, TopEntry, periods, ranged};
use crate::detail::{Period, Scope, Seen};
use crate::message::TopList;
use crate::store::Store;
use crate::timeline::{
    Bucket, Covered, Granularity, MAX_FUTURE_MS, buckets_between, now_ms, readable,
};

/// `GET /stats/rooms/{room}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"room": "#kitchen", "messages": 7, "uniqueChatters": 5,
    "firstSeen": "2026-11-23T08:00:05.000Z", "lastSeen": "2026-11-23T08:04:59.000Z",
    "words": [{"Kappa": 6}, {"hello": 1}], "nicks": [{"alice": 3}, {"bob": 1}], "emotes": [{"Kappa": 5}]}))]
pub(crate) struct RoomSummary {
    /// The room, as received.
    room: String,
    /// Its messages, all time or in the range.
    messages: u64,
    /// Distinct nicks that wrote in it, all time or in the range (exact).
    unique_chatters: u64,
    /// Its earliest message time, all time (RFC 3339, milliseconds); null when unknown (data
    /// recorded with `STATISTICS=basic` or by the TypeScript service).
    #[schema(required = true)]
    first_seen: Option<String>,
    /// Its latest message time, all time; null when unknown.
    #[schema(required = true)]
    last_seen: Option<String>,
    /// Its top words, all time or in the range.
    #[schema(value_type = Vec<TopEntry>)]
    words: TopBody,
    /// Its top nicks.
    #[schema(value_type = Vec<TopEntry>)]
    nicks: TopBody,
    /// Its top emotes.
    #[schema(value_type = Vec<TopEntry>)]
    emotes: TopBody,
}

/// `GET /stats/nicks/{nick}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"nick": "alice", "messages": 4, "rank": 1,
    "firstSeen": "2026-11-23T08:00:05.000Z", "lastSeen": "2026-11-23T08:04:59.000Z",
    "rooms": [{"#kitchen": 3}, {"#garden": 1}], "words": [{"Kappa": 4}], "emotes": [{"Kappa": 4}]}))]
pub(crate) struct NickSummary {
    /// The nick, as received.
    nick: String,
    /// Its messages, all time.
    messages: u64,
    /// Its 1-based position in `/stats/nicks` order.
    #[schema(minimum = 1)]
    rank: u64,
    /// Its earliest message time (RFC 3339, milliseconds); null when unknown.
    #[schema(required = true)]
    first_seen: Option<String>,
    /// Its latest message time; null when unknown.
    #[schema(required = true)]
    last_seen: Option<String>,
    /// The rooms it wrote in most.
    #[schema(value_type = Vec<TopEntry>)]
    rooms: TopBody,
    /// Its top words.
    #[schema(value_type = Vec<TopEntry>)]
    words: TopBody,
    /// Its top emotes.
    #[schema(value_type = Vec<TopEntry>)]
    emotes: TopBody,
}

/// One bucket of `GET /stats/activity`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"time": "2026-11-23T08:00:00Z", "messages": 2}))]
pub(crate) struct ActivityPoint {
    /// The bucket's start (RFC 3339).
    time: String,
    /// Messages in it.
    messages: u64,
}

/// Query of `/stats/rooms/{room}`.
#[allow(
    dead_code,
    reason = "only describes the query for the OpenAPI document"
)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RoomQuery {
    /// How many entries each list holds (default 10).
    #[param(minimum = 1, maximum = 1000, example = 10)]
    limit: Option<u32>,
    /// Start of the range: RFC 3339 or Unix milliseconds (messages, chatters and lists cover
    /// it; firstSeen and lastSeen stay all-time).
    #[param(example = "2026-11-23T08:00:00Z")]
    from: Option<String>,
    /// End of the range (exclusive).
    #[param(example = "1795421100000")]
    to: Option<String>,
    /// The last `1m`, `5m`, `15m`, `1h`, `6h`, `24h`, `7d` or `30d`, up to now (not with
    /// `from` / `to`).
    #[param(example = "1h", value_type = Option<super::routes::WindowName>)]
    window: Option<String>,
}

/// Query of `/stats/nicks/{nick}`.
#[allow(
    dead_code,
    reason = "only describes the query for the OpenAPI document"
)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct NickQuery {
    /// How many entries each list holds (default 10).
    #[param(minimum = 1, maximum = 1000, example = 10)]
    limit: Option<u32>,
}

/// Query of `/stats/activity`.
#[allow(
    dead_code,
    reason = "only describes the query for the OpenAPI document"
)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ActivityQuery {
    /// Bucket size: `1m`, `1h` or `1d` (default `1m`).
    #[param(example = "1m", value_type = Option<super::routes::BucketName>)]
    bucket: Option<String>,
    /// Start: RFC 3339 or Unix milliseconds; default 1 h (1m), 48 h (1h) or 30 days (1d)
    /// before `to`.
    #[param(example = "2026-11-23T08:00:00Z")]
    from: Option<String>,
    /// End (exclusive); default now.
    #[param(example = "2026-11-23T08:05:00Z")]
    to: Option<String>,
    /// Only messages in this room.
    #[param(example = "#kitchen")]
    room: Option<String>,
}

/// A 404 of `/stats/rooms/{room}`, written once for the OpenAPI document.
#[allow(
    dead_code,
    reason = "only describes an answer for the OpenAPI document"
)]
#[derive(utoipa::IntoResponses)]
pub(crate) enum RoomNeverSeen {
    /// No counted message was ever in this room.
    #[response(status = 404, example = json!({"statusCode": 404, "error": "Not Found", "message": "room #never was never seen"}))]
    NotFound(ErrorBody),
}

/// A 404 of `/stats/nicks/{nick}`.
#[allow(
    dead_code,
    reason = "only describes an answer for the OpenAPI document"
)]
#[derive(utoipa::IntoResponses)]
pub(crate) enum NickNeverSeen {
    /// No counted message was ever by this nick (an ignored nick never is).
    #[response(status = 404, example = json!({"statusCode": 404, "error": "Not Found", "message": "nick nobody was never seen"}))]
    NotFound(ErrorBody),
}

fn scope_of(kind: Seen, name: &str) -> Scope {
    let name = Bytes::copy_from_slice(name.as_bytes());
    match kind {
        Seen::Room => Scope::Room(name),
        Seen::Nick => Scope::Nick(name),
    }
}

/// One room: its messages, chatters, first and last message, top words, nicks and emotes.
#[utoipa::path(get, path = "/stats/rooms/{room}", tag = "stats", params(
        ("room" = String, Path, description = "The room, URL-encoded (`%23kitchen` for `#kitchen`)", example = "#kitchen"),
        RoomQuery),
    responses(
        (status = 200, description = "The room, all time or over a range (then with Range-From and Range-To)", body = RoomSummary,
            headers(
                ("Range-From" = String, description = "Ranged answers: start of the range covered (RFC 3339), the range asked widened to whole buckets"),
                ("Range-To" = String, description = "Ranged answers: end of the range covered (RFC 3339, exclusive)"),
            )),
        BadQuery, RoomNeverSeen, StoreUnavailable,
    ))]
pub(crate) async fn room<S: Store>(
    State(state): State<AppState<S>>,
    room: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let Path(room) = room.map_err(|e| ApiError::BadRequest(format!("params/room: {e}")))?;
    let params = Params::parse(q.as_deref())?;
    if params.room.is_some() || params.nick.is_some() || params.bucket.is_some() {
        return Err(ApiError::BadRequest(
            "querystring: /stats/rooms/{room} takes limit, from, to and window only".to_owned(),
        ));
    }
    params.check_range()?;
    let store = &state.store;
    let profile = state
        .timed(store.profile(Seen::Room, &room))
        .await?
        .ok_or_else(|| ApiError::Unknown(format!("room {room} was never seen")))?;
    let (limit, now) = (params.limit(), now_ms());
    let scope = scope_of(Seen::Room, &room);
    let covered = match params.range(now, &state.settings.retention)? {
        Some((from, to)) => Some(state.cover(from, to, now).await?),
        None => None,
    };
    let periods = covered.as_ref().map_or(vec![Period::AllTime], periods);
    let messages = async {
        match &covered {
            None => Ok(profile.messages),
            Some(c) => Ok(state
                .timed(store.activity(&scope, &c.buckets))
                .await?
                .iter()
                .sum()),
        }
    };
    let (messages, unique, words, nicks, emotes) = tokio::try_join!(
        messages,
        state.timed(store.unique_chatters(&room, &periods)),
        state.timed(store.top_in(TopList::Words, &scope, &periods, limit)),
        state.timed(store.top_in(TopList::Nicks, &scope, &periods, limit)),
        state.timed(store.top_in(TopList::Emotes, &scope, &periods, limit)),
    )?;
    let body = Json(RoomSummary {
        room,
        messages,
        unique_chatters: unique,
        first_seen: profile.first_ms.map(|ms| rfc3339(ms, true)),
        last_seen: profile.last_ms.map(|ms| rfc3339(ms, true)),
        words: TopBody(words),
        nicks: TopBody(nicks),
        emotes: TopBody(emotes),
    });
    Ok(match &covered {
        Some(covered) => ranged(covered, body),
        None => body.into_response(),
    })
}

/// One nick, all time: its messages, rank, first and last message, rooms, words and emotes.
#[utoipa::path(get, path = "/stats/nicks/{nick}", tag = "stats", params(
        ("nick" = String, Path, description = "The nick, URL-encoded", example = "alice"),
        NickQuery),
    responses(
        (status = 200, description = "The nick, all time", body = NickSummary),
        BadLimit, NickNeverSeen, StoreUnavailable,
    ))]
pub(crate) async fn nick<S: Store>(
    State(state): State<AppState<S>>,
    nick: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> Result<Json<NickSummary>, ApiError> {
    let Path(nick) = nick.map_err(|e| ApiError::BadRequest(format!("params/nick: {e}")))?;
    let params = Params::parse(q.as_deref())?;
    if params.is_ranged()
        || params.room.is_some()
        || params.nick.is_some()
        || params.bucket.is_some()
    {
        return Err(ApiError::BadRequest(
            "querystring: /stats/nicks/{nick} is all-time and takes limit only".to_owned(),
        ));
    }
    let store = &state.store;
    let profile = state
        .timed(store.profile(Seen::Nick, &nick))
        .await?
        .ok_or_else(|| ApiError::Unknown(format!("nick {nick} was never seen")))?;
    let limit = params.limit();
    let scope = scope_of(Seen::Nick, &nick);
    let all = [Period::AllTime];
    let (rooms, words, emotes) = tokio::try_join!(
        state.timed(store.top_in(TopList::Rooms, &scope, &all, limit)),
        state.timed(store.top_in(TopList::Words, &scope, &all, limit)),
        state.timed(store.top_in(TopList::Emotes, &scope, &all, limit)),
    )?;
    Ok(Json(NickSummary {
        nick,
        messages: profile.messages,
        rank: profile.rank.unwrap_or(0),
        first_seen: profile.first_ms.map(|ms| rfc3339(ms, true)),
        last_seen: profile.last_ms.map(|ms| rfc3339(ms, true)),
        rooms: TopBody(rooms),
        words: TopBody(words),
        emotes: TopBody(emotes),
    }))
}

/// A 400 of `/stats/activity`.
#[allow(
    dead_code,
    reason = "only describes an answer for the OpenAPI document"
)]
#[derive(utoipa::IntoResponses)]
pub(crate) enum BadActivityQuery {
    /// `bucket` is not `1m`, `1h` or `1d`, a time is neither RFC 3339 nor Unix
    /// milliseconds, `from` is not before `to`, the range holds more than 1,440 buckets, or a
    /// parameter of the other statistics routes (`nick`, `window`, `limit`) is given. Unknown
    /// parameters are ignored, as the TypeScript service's Fastify does.
    #[response(status = 400, example = json!({"statusCode": 400, "error": "Bad Request", "message": "querystring/bucket must be one of 1m, 1h, 1d"}))]
    Invalid(ErrorBody),
}

/// Messages per bucket over a range: every bucket in order, zeros included.
#[utoipa::path(get, path = "/stats/activity", tag = "stats", params(ActivityQuery),
    responses(
        (status = 200, description = "One entry per bucket, oldest first (at most 1,440), with Range-From and Range-To", body = [ActivityPoint],
            headers(
                ("Range-From" = String, description = "Start of the range covered (RFC 3339): the first bucket's start"),
                ("Range-To" = String, description = "End of the range covered (RFC 3339, exclusive): the last bucket's end"),
            ),
            example = json!([{"time": "2026-11-23T08:00:00Z", "messages": 2}, {"time": "2026-11-23T08:01:00Z", "messages": 0}])),
        BadActivityQuery, StoreUnavailable,
    ))]
pub(crate) async fn activity<S: Store>(
    State(state): State<AppState<S>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref())?;
    if params.nick.is_some() || params.window_ms.is_some() || params.limit.is_some() {
        return Err(ApiError::BadRequest(
            "querystring: /stats/activity takes bucket, from, to and room only".to_owned(),
        ));
    }
    params.check_range()?;
    let granularity = params.bucket.unwrap_or(Granularity::Minute);
    let to = params.to_ms.unwrap_or_else(now_ms);
    let span = match granularity {
        Granularity::Minute => 3_600_000,
        Granularity::Hour => 48 * 3_600_000,
        Granularity::Day => 30 * 86_400_000,
    };
    let from = params.from_ms.unwrap_or(to.saturating_sub(span));
    if from >= to {
        return Err(ApiError::BadRequest(
            match (params.from_ms, params.to_ms) {
                (None, _) => "querystring/to must be after 1970-01-01T00:00:00Z",
                (Some(_), None) => {
                    "querystring/from must be before now (querystring/to, when omitted)"
                }
                (Some(_), Some(_)) => "querystring/from must be before querystring/to",
            }
            .to_owned(),
        ));
    }
    let count = (to - 1) / granularity.ms() - from / granularity.ms() + 1;
    if count > MAX_ACTIVITY_BUCKETS {
        return Err(ApiError::BadRequest(format!(
            "the range holds {count} buckets of 1{}; at most {MAX_ACTIVITY_BUCKETS} are answered",
            granularity.letter()
        )));
    }
    let buckets = buckets_between(granularity, from, to);
    let scope = params.scope();
    // A bucket is read as a top list over it would be (`timeline::readable`): not rolled up
    // yet, it is the sum of the finer ones it is made of, as long as they are kept.
    let rolled = state.rolled().await?;
    let now = now_ms();
    let horizon = now.saturating_add(MAX_FUTURE_MS);
    let retention = &state.settings.retention;
    let parts: Vec<Vec<Bucket>> = buckets
        .iter()
        .map(|bucket| {
            let mut read = Vec::new();
            readable(*bucket, horizon, now, retention, &rolled, &mut read);
            read
        })
        .collect();
    let flat: Vec<Bucket> = parts.iter().flatten().copied().collect();
    let mut counts = state
        .timed(state.store.activity(&scope, &flat))
        .await?
        .into_iter();
    let counts: Vec<u64> = parts
        .iter()
        .map(|p| counts.by_ref().take(p.len()).sum())
        .collect();
    let points: Vec<ActivityPoint> = buckets
        .iter()
        .zip(counts)
        .map(|(bucket, messages)| ActivityPoint {
            time: rfc3339(bucket.start_ms(), false),
            messages,
        })
        .collect();
    let covered = Covered {
        from_ms: buckets.first().map_or(from, |b| b.start_ms()),
        to_ms: buckets.last().map_or(to, |b| b.end_ms()),
        buckets,
    };
    Ok(ranged(&covered, Json(points)))
}
