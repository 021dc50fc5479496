//! Recorded messages: `GET /messages` (newest first, by room or nick, keyset pagination) and
//! `GET /messages/{id}`; and the live feed: `GET /live` (Server-Sent Events) and `GET /ws`
//! (WebSocket), each recorded message as it is recorded and the statistics once a second.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody, StoreUnavailable};
use super::query::Params;
use super::routes::TopBody;
use crate::detail::{Period, Scope};
use crate::message::TopList;
use crate::store::{Live, Store, unix_now};
use crate::timeline::now_ms;

/// Most messages of one page.
const MAX_PAGE: usize = 200;
/// Messages of one page unless `?limit=` says otherwise.
const DEFAULT_PAGE: usize = 50;

/// One recorded message.
#[allow(
    dead_code,
    reason = "only describes an answer for the OpenAPI document"
)]
#[derive(ToSchema)]
#[schema(example = json!({"id": "7c1e6a3e-5f0e-4c53-9a4e-1b3f5d2c9e10", "time": "2026-11-23T08:00:05.000Z",
    "room": "#kitchen", "nick": "alice", "body": "hello Kappa world", "emotes": ["Kappa"]}))]
pub(crate) struct HistoryMessage {
    /// The upstream `id` tag, or an id made up by the worker.
    id: String,
    /// The message's time (its `tmi-sent-ts` when usable), RFC 3339 with milliseconds.
    time: String,
    /// Its room ("" when it had none).
    room: String,
    /// Its nick ("" when it had none).
    nick: String,
    /// Its body.
    body: String,
    /// Its emote uses, in order.
    emotes: Vec<String>,
}

/// A page of `GET /messages`.
#[allow(
    dead_code,
    reason = "only describes an answer for the OpenAPI document"
)]
#[derive(ToSchema)]
#[schema(example = json!({"messages": [{"id": "fx-13", "time": "2026-11-23T08:04:59.000Z", "room": "#kitchen",
    "nick": "alice", "body": "Kappa KEKW", "emotes": ["Kappa", "KEKW"]}], "next": "r1795421099000-0"}))]
pub(crate) struct HistoryPageBody {
    /// Newest first (most recently recorded).
    messages: Vec<HistoryMessage>,
    /// The cursor of the next (older) page, for `?before=`; null on the last page.
    #[schema(required = true)]
    next: Option<String>,
}

/// Query of `/messages`.
#[allow(
    dead_code,
    reason = "only describes the query for the OpenAPI document"
)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Only messages in this room (with `nick`: that nick's messages in this room).
    #[param(min_length = 1)]
    room: Option<String>,
    /// Only messages by this nick. With `room`, a page reads at most 2,000 of the nick's
    /// messages, so it may hold fewer than `limit` while `next` is not null.
    #[param(min_length = 1)]
    nick: Option<String>,
    /// The `next` cursor of the previous page.
    #[param(min_length = 1)]
    before: Option<String>,
    /// Messages per page (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

/// Query of `/live` and `/ws`.
#[allow(
    dead_code,
    reason = "only describes the query for the OpenAPI document"
)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LiveQuery {
    /// Only messages in this room (the statistics stay those of everything).
    #[param(min_length = 1)]
    room: Option<String>,
}

/// A 400 of `/messages`.
#[allow(
    dead_code,
    reason = "only describes an answer for the OpenAPI document"
)]
#[derive(utoipa::IntoResponses)]
pub(crate) enum BadHistoryQuery {
    /// `limit` is not a whole number in 1..=200, `before` is not a cursor of this store's form,
    /// `room` or `nick` is empty, or a parameter of the statistics routes (`from`, `to`,
    /// `window`, `bucket`) is given. Unknown parameters are ignored, as Fastify does.
    #[response(status = 400, example = json!({"statusCode": 400, "error": "Bad Request", "message": "querystring/limit must be <= 200"}))]
    Invalid(ErrorBody),
}

/// Recorded messages, newest first, kept for `HISTORY_RETENTION` (24 h).
#[utoipa::path(get, path = "/messages", tag = "history", params(HistoryQuery),
    responses(
        (status = 200, description = "A page of messages, newest first; follow `next` with `?before=` (keyset pagination: every page costs the same)", body = HistoryPageBody),
        BadHistoryQuery, StoreUnavailable,
    ))]
pub(crate) async fn messages<S: Store>(
    State(state): State<AppState<S>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref())?;
    if params.is_ranged() || params.bucket.is_some() {
        return Err(ApiError::BadRequest(
            "querystring: /messages takes room, nick, before and limit only".to_owned(),
        ));
    }
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!(
            "querystring/limit must be <= {MAX_PAGE}"
        )));
    }
    // Both: the nick's messages, in that room only.
    let (scope, in_room) = match (&params.room, &params.nick) {
        (Some(room), Some(nick)) => (
            Scope::Nick(bytes::Bytes::copy_from_slice(nick.as_bytes())),
            Some(room.as_bytes()),
        ),
        _ => (params.scope(), None),
    };
    let page = state
        .timed(
            state
                .store
                .history(&scope, in_room, params.before.as_deref(), limit),
        )
        .await?;
    // The entries are JSON already: the page is written around them.
    let next = match page.next {
        Some(cursor) => serde_json::to_string(&cursor).unwrap_or_else(|_| "null".to_owned()),
        None => "null".to_owned(),
    };
    let body = format!(
        "{{\"messages\":[{}],\"next\":{next}}}",
        page.entries.join(",")
    );
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A 404 for a message not kept, written once for the OpenAPI document.
#[allow(
    dead_code,
    reason = "only describes an answer for the OpenAPI document"
)]
#[derive(utoipa::IntoResponses)]
pub(crate) enum NotKept {
    /// No message with this id is kept (it expired, or never was).
    #[response(status = 404, example = json!({"statusCode": 404, "error": "Not Found", "message": "message fx-99 is not kept"}))]
    NotFound(ErrorBody),
}

/// One recorded message, while it is kept.
#[utoipa::path(get, path = "/messages/{id}", tag = "history", params(
        ("id" = String, Path, description = "The message's id: its upstream `id` tag, or the one made up", example = "fx-13")),
    responses(
        (status = 200, description = "The message", body = HistoryMessage),
        (status = 400, description = "The id is not UTF-8 once percent-decoded", body = ErrorBody,
            example = json!({"statusCode": 400, "error": "Bad Request", "message": "params/id: Invalid UTF-8 in `id`"})),
        NotKept, StoreUnavailable,
    ))]
pub(crate) async fn message<S: Store>(
    State(state): State<AppState<S>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::BadRequest(format!("params/id: {e}")))?;
    let found = state.timed(state.store.message(&id)).await?;
    match found {
        Some(json) => Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response()),
        None => Err(ApiError::Unknown(format!("message {id} is not kept"))),
    }
}

/// The statistics sent once a second on the live feed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LiveStats {
    messages_per_second: u64,
    words: TopBody,
}

/// The live statistics of one API process: computed once a second by one task, started by
/// the first subscriber, for everyone.
#[derive(Default)]
pub(crate) struct LiveHub {
    stats: std::sync::OnceLock<watch::Receiver<StatsEvent>>,
}

/// The once-a-second event: `stats` and its JSON, or `unavailable` and why (the store did not
/// answer: no figure is better than the last one repeated as if it were current).
type StatsEvent = (&'static str, Arc<str>);

impl LiveHub {
    fn stats<S: Store>(&self, state: &AppState<S>) -> watch::Receiver<StatsEvent> {
        self.stats
            .get_or_init(|| {
                let (sender, receiver) = watch::channel(("stats", Arc::from("{}")));
                let state = state.clone();
                tokio::spawn(async move {
                    let mut ticks = tokio::time::interval(Duration::from_secs(1));
                    loop {
                        ticks.tick().await;
                        if sender.receiver_count() == 0 && sender.is_closed() {
                            return;
                        }
                        let _ = sender.send(match live_stats(&state).await {
                            Ok(stats) => ("stats", stats),
                            Err(err) => ("unavailable", unavailable(&err)),
                        });
                    }
                });
                receiver
            })
            .clone()
    }
}

/// `{"messagesPerSecond": n, "words": [top 10 of the last minute]}`.
async fn live_stats<S: Store>(state: &AppState<S>) -> Result<Arc<str>, ApiError> {
    let now = now_ms();
    let store = &state.store;
    let covered = state.cover(now.saturating_sub(60_000), now, now).await?;
    let periods: Vec<Period> = covered.buckets.iter().map(|b| Period::Bucket(*b)).collect();
    let (mps, words) = tokio::try_join!(
        state.timed(store.messages_in_second(unix_now().saturating_sub(1))),
        state.timed(store.top_in(TopList::Words, &Scope::Global, &periods, 10)),
    )?;
    let stats = LiveStats {
        messages_per_second: mps,
        words: TopBody(words),
    };
    Ok(serde_json::to_string(&stats).unwrap_or_default().into())
}

/// `{"message": "…"}`: why the statistics of this second are missing (a 503's text: no
/// internals).
fn unavailable(err: &ApiError) -> Arc<str> {
    serde_json::json!({ "message": err.to_string() })
        .to_string()
        .into()
}

/// What a live subscriber receives, in order.
enum Update {
    Message(Arc<str>),
    /// `stats` or `unavailable`, and its JSON.
    Stats(StatsEvent),
    Lagged(u64),
}

/// The updates for one subscriber: messages of `room` (or all), statistics once a second, and
/// a `lagged` notice when it read too slowly and lost messages; ends at shutdown.
async fn updates<S: Store>(
    state: &AppState<S>,
    room: Option<String>,
) -> impl Stream<Item = Update> + Send + use<S> {
    let messages = state.store.subscribe().await;
    let stats = state.live.stats(state);
    let closing = state.closing.clone();
    futures::stream::unfold(
        (messages, stats, room, closing),
        |(mut messages, mut stats, room, closing)| async move {
            loop {
                let update = tokio::select! {
                    _ = closing.cancelled() => return None,
                    received = messages.recv() => match received {
                        Ok(Live { room: of, json }) => {
                            if room.as_ref().is_some_and(|r| r.as_bytes() != of.as_ref()) {
                                continue;
                            }
                            Update::Message(json)
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => Update::Lagged(n),
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    changed = stats.changed() => match changed {
                        Ok(()) => Update::Stats(stats.borrow_and_update().clone()),
                        Err(_) => return None,
                    },
                };
                return Some((update, (messages, stats, room, closing)));
            }
        },
    )
}

fn live_room(query: Option<&str>) -> Result<Option<String>, ApiError> {
    let params = Params::parse(query)?;
    if params.nick.is_some() || params.is_ranged() || params.limit.is_some() {
        return Err(ApiError::BadRequest(
            "querystring: the live feed takes room only".to_owned(),
        ));
    }
    Ok(params.room)
}

/// The live feed as Server-Sent Events: `event: message` for each recorded message (the
/// `/messages` shape), `event: stats` once a second (`{"messagesPerSecond": n, "words": [top
/// 10 of the last minute]}`) — or, for a second whose statistics the store did not answer,
/// `event: unavailable` (`{"message": "…"}`) — and `event: lagged` (`{"dropped": n}`) when the
/// client read too slowly and lost messages. Works whichever process records the messages.
#[utoipa::path(get, path = "/live", tag = "history", params(LiveQuery),
    responses(
        (status = 200, description = "An endless `text/event-stream`: events `message`, `stats` (once a second), `unavailable` (`{\"message\": \"…\"}` instead of `stats` while the store does not answer) and `lagged`", content_type = "text/event-stream", body = String,
            example = json!("event: message\ndata: {\"id\":\"fx-13\",\"time\":\"2026-11-23T08:04:59.000Z\",\"room\":\"#kitchen\",\"nick\":\"alice\",\"body\":\"Kappa KEKW\",\"emotes\":[\"Kappa\",\"KEKW\"]}\n\nevent: stats\ndata: {\"messagesPerSecond\":200,\"words\":[{\"KEKW\":120}]}\n\n")),
        (status = 400, description = "A filter of the statistics routes other than `room` (`nick`, `from`, `to`, `window`, `limit`), or an empty `room`", body = ErrorBody,
            example = json!({"statusCode": 400, "error": "Bad Request", "message": "querystring: the live feed takes room only"})),
    ))]
pub(crate) async fn live<S: Store>(
    State(state): State<AppState<S>>,
    RawQuery(q): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let room = live_room(q.as_deref())?;
    let events = futures::StreamExt::map(updates(&state, room).await, |update| {
        Ok(match update {
            Update::Message(json) => Event::default().event("message").data(&*json),
            Update::Stats((event, json)) => Event::default().event(event).data(&*json),
            Update::Lagged(n) => Event::default()
                .event("lagged")
                .data(format!("{{\"dropped\":{n}}}")),
        })
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The live feed over a WebSocket: the same updates as `/live`, each a text frame
/// `{"event": "message" | "stats" | "unavailable" | "lagged", "data": {…}}`. Messages from
/// the client are ignored; one larger than 4 KiB closes the connection (code 1009).
#[utoipa::path(get, path = "/ws", tag = "history", params(LiveQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; then text frames `{\"event\": \"message\"|\"stats\"|\"unavailable\"|\"lagged\", \"data\": {…}}`"),
        (status = 400, description = "Not a WebSocket upgrade, a filter of the statistics routes other than `room` (`nick`, `from`, `to`, `window`, `limit`), or an empty `room`", body = ErrorBody,
            example = json!({"statusCode": 400, "error": "Bad Request", "message": "querystring: the live feed takes room only"})),
    ))]
pub(crate) async fn ws<S: Store>(
    State(state): State<AppState<S>>,
    RawQuery(q): RawQuery,
    close: Option<axum::Extension<super::server::ConnectionClose>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let room = live_room(q.as_deref())?;
    let upgrade =
        upgrade.map_err(|e| ApiError::BadRequest(format!("headers: {}", e.body_text())))?;
    let updates = updates(&state, room).await;
    // The connection cap may close the socket for a new connection: this says when.
    let close = close.map_or_else(CancellationToken::new, |c| c.0.0.clone());
    // The feed only pushes: what a client sends is read and dropped, so a frame larger than a
    // ping or a close closes the connection instead of being buffered (16 MiB by default).
    // What it sends is gathered in 4 KiB, not the default 128 KiB per socket that thousands of
    // unread sockets held (a frame is written whole whatever this says).
    Ok(upgrade
        .max_frame_size(WS_MAX_RECEIVED)
        .max_message_size(WS_MAX_RECEIVED)
        .write_buffer_size(WS_WRITE_BUFFER)
        .on_upgrade(move |socket| forward(socket, updates, close)))
}

/// Bytes a `/ws` socket gathers before writing them.
const WS_WRITE_BUFFER: usize = 4096;

/// The largest frame or message `/ws` accepts from a client.
const WS_MAX_RECEIVED: usize = 4096;

/// True when a WebSocket read failed on a frame or message past [`WS_MAX_RECEIVED`].
fn too_large(err: &axum::Error) -> bool {
    std::error::Error::source(err)
        .and_then(|e| e.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}

async fn forward(
    mut socket: WebSocket,
    updates: impl Stream<Item = Update> + Send + 'static,
    close: CancellationToken,
) {
    use futures::StreamExt;
    let mut updates = std::pin::pin!(updates);
    loop {
        tokio::select! {
            // The connection cap closed it for a new connection: say so (1013, "try again
            // later"), if the client still reads.
            _ = close.cancelled() => {
                let frame = Frame::Close(Some(axum::extract::ws::CloseFrame {
                    code: 1013,
                    reason: "the connection limit was reached; try again later".into(),
                }));
                let _ = tokio::time::timeout(Duration::from_millis(100), socket.send(frame)).await;
                return;
            }
            update = updates.next() => {
                let Some(update) = update else { break };
                let (event, data): (&str, std::borrow::Cow<'_, str>) = match &update {
                    Update::Message(json) => ("message", json.as_ref().into()),
                    Update::Stats((event, json)) => (event, json.as_ref().into()),
                    Update::Lagged(n) => ("lagged", format!("{{\"dropped\":{n}}}").into()),
                };
                let frame = format!("{{\"event\":\"{event}\",\"data\":{data}}}");
                if socket.send(Frame::Text(frame.into())).await.is_err() {
                    break;
                }
            }
            received = socket.recv() => match received {
                Some(Err(err)) if too_large(&err) => {
                    let frame = Frame::Close(Some(axum::extract::ws::CloseFrame {
                        code: 1009,
                        reason: "a client's frame is limited to 4 KiB".into(),
                    }));
                    let _ = tokio::time::timeout(Duration::from_millis(100), socket.send(frame)).await;
                    return;
                }
                Some(Ok(Frame::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.send(Frame::Close(None)).await;
}
