//! Recorded messages and the live feed, on both stores: pages newest first whose cursor reaches
//! every message once, room and nick filters, look-up by id, HISTORY_RETENTION=0, every 400;
//! `/live` and `/ws` with a room filter, a slow client told what it lost, worker and API as
//! separate processes, and 500 subscribers with one that never reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatstats::message::Rules;
use chatstats::source::file::FileSource;
use chatstats::store::Store;
use chatstats::store::redis::{RedisSettings, RedisStore};
use chatstats::timeline::{Retention, now_ms};
use chatstats::worker::{self, WorkerSettings};
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

contract!(
    pages_are_newest_first_and_their_cursor_reaches_every_message_once,
    room_and_nick_filter_the_history_and_its_pages,
    a_message_is_found_by_its_id_and_an_unknown_id_is_404,
    bad_history_and_live_queries_are_refused_with_a_400,
    the_live_feed_sends_each_message_of_its_room_and_stats_every_second,
    the_websocket_sends_the_same_updates_as_text_frames,
    a_slow_live_client_is_told_how_many_messages_it_lost,
);

const ROOMS: [&str; 3] = ["#a", "#b", "#c"];

/// `n` messages, numbered from `first`: room `ROOMS[i % 3]`, nick `n{i % 5}`, id `h-{i}`, with
/// a body of `body_len` bytes at least, and times in the last minute.
fn chat(first: usize, n: usize, body_len: usize) -> Vec<u8> {
    let now = now_ms();
    let mut out = String::new();
    for i in first..first + n {
        let mut body = format!("word{i} hello");
        if body.len() < body_len {
            body.push(' ');
            body.push_str(&"x".repeat(body_len - body.len()));
        }
        let payload = serde_json::json!({
            "command": "", "room": ROOMS[i % 3], "nick": format!("n{}", i % 5), "target": "",
            "body": body,
            "tags": format!("badge-info=;badges=;emotes=;id=h-{i:05};tmi-sent-ts={};user-type=", now - 30_000 + i as u64),
        });
        out.push_str(&format!("event: privmsg\nse-data: {payload}\n\n"));
    }
    out.into_bytes()
}

fn id(i: usize) -> String {
    format!("h-{i:05}")
}

fn history_rules() -> Rules {
    Rules {
        full: true,
        history: true,
        ..worker_settings().rules
    }
}

/// Records `bytes` into `store` with history on, to the end.
async fn record<S: Store>(store: &S, bytes: Vec<u8>) {
    let source = FileSource::new("test input", Box::new(std::io::Cursor::new(bytes)), 1 << 20);
    let settings = WorkerSettings {
        rules: history_rules(),
        ..worker_settings()
    };
    worker::run(
        store.clone(),
        source,
        settings,
        Arc::default(),
        CancellationToken::new(),
    )
    .await
    .expect("worker run");
}

fn ids_of(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Every id of `path`, page after page, following `next`; checks each page's size.
async fn every_page(api: &TestApi, path: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut before: Option<String> = None;
    let joiner = if path.contains('?') { '&' } else { '?' };
    loop {
        let url = match &before {
            None => format!("{path}{joiner}limit={limit}"),
            Some(cursor) => format!("{path}{joiner}limit={limit}&before={cursor}"),
        };
        let (status, page) = api.get(&url).await;
        assert_eq!(status, 200, "{url}: {page}");
        let got = ids_of(&page);
        assert!(got.len() <= limit, "{url}: {} messages", got.len());
        ids.extend(got.iter().cloned());
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(got.len(), limit, "a page before the last is full: {url}");
                before = Some(next.to_owned());
            }
            None => {
                assert!(page["next"].is_null(), "{page}");
                return ids;
            }
        }
    }
}

async fn pages_are_newest_first_and_their_cursor_reaches_every_message_once<S: Store>(
    new: impl Fn() -> S,
) {
    let store = new();
    record(&store, chat(0, 230, 0)).await;
    let api = TestApi::spawn(store).await;

    let (status, first) = api.get("/messages").await;
    assert_eq!(status, 200, "{first}");
    let want: Vec<String> = (0..230).rev().map(id).collect();
    assert_eq!(
        ids_of(&first),
        want[..50],
        "the default page is the newest 50"
    );
    let newest = &first["messages"][0];
    let mut fields: Vec<&str> = newest
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["body", "emotes", "id", "nick", "room", "time"]);
    assert_eq!(newest["room"], "#b");
    assert_eq!(newest["nick"], "n4");
    assert!(
        newest["body"]
            .as_str()
            .unwrap()
            .starts_with("word229 hello")
    );
    assert!(newest["time"].as_str().unwrap().ends_with('Z'), "{newest}");

    assert_eq!(every_page(&api, "/messages", 100).await, want);
    assert_eq!(every_page(&api, "/messages", 1).await[..5], want[..5]);
    assert_eq!(every_page(&api, "/messages", 200).await, want);
}

async fn room_and_nick_filter_the_history_and_its_pages<S: Store>(new: impl Fn() -> S) {
    let store = new();
    record(&store, chat(0, 230, 0)).await;
    let api = TestApi::spawn(store).await;

    let in_b: Vec<String> = (0..230).rev().filter(|i| i % 3 == 1).map(id).collect();
    assert_eq!(every_page(&api, "/messages?room=%23b", 7).await, in_b);
    let by_n2: Vec<String> = (0..230).rev().filter(|i| i % 5 == 2).map(id).collect();
    assert_eq!(every_page(&api, "/messages?nick=n2", 10).await, by_n2);
    // Both: the nick's messages in that room.
    let n2_in_b: Vec<String> = (0..230)
        .rev()
        .filter(|i| i % 5 == 2 && i % 3 == 1)
        .map(id)
        .collect();
    assert_eq!(
        every_page(&api, "/messages?room=%23b&nick=n2", 4).await,
        n2_in_b
    );
    let (_, none) = api.get("/messages?room=%23nowhere&nick=n2").await;
    assert_eq!(none["messages"], serde_json::json!([]));

    let (status, none) = api.get("/messages?room=%23nowhere").await;
    assert_eq!(status, 200);
    assert_eq!(none, serde_json::json!({"messages": [], "next": null}));
}

async fn a_message_is_found_by_its_id_and_an_unknown_id_is_404<S: Store>(new: impl Fn() -> S) {
    let store = new();
    record(&store, chat(0, 20, 0)).await;
    let api = TestApi::spawn(store).await;

    let (status, found) = api.get("/messages/h-00007").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["id"], "h-00007");
    assert_eq!(found["room"], "#b");
    assert_eq!(found["nick"], "n2");
    assert_eq!(found["body"], "word7 hello");
    assert_eq!(found["emotes"], serde_json::json!([]));

    let (status, missing) = api.get("/messages/h-99999").await;
    assert_eq!(status, 404);
    assert_eq!(missing["statusCode"], 404);
    assert_eq!(missing["error"], "Not Found");
}

async fn bad_history_and_live_queries_are_refused_with_a_400<S: Store>(new: impl Fn() -> S) {
    let store = new();
    record(&store, chat(0, 5, 0)).await;
    let api = TestApi::spawn(store).await;
    for path in [
        "/messages?limit=0",
        "/messages?limit=201",
        "/messages?limit=many",
        "/messages?before=not-a-cursor",
        "/messages?before=r",
        "/messages?before=m",
        "/messages?before=r0-0",
        "/messages?room=%23a&before=r0-0",
        "/messages?nick=n1&before=r0-0",
        "/messages?before=r%2B1-0",
        "/messages?window=5m",
        "/messages?from=0",
        "/live?nick=n1",
        "/live?window=5m",
        "/ws?limit=3",
        "/ws",
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["statusCode"], 400, "{path}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

/// Server-Sent Events read from a response, event by event.
struct Events {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl Events {
    async fn open(url: &str) -> Events {
        let response = reqwest::get(url).await.expect("GET /live");
        assert_eq!(response.status(), 200);
        let kind = response.headers()[reqwest::header::CONTENT_TYPE].clone();
        assert_eq!(kind, "text/event-stream");
        Events {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event (name and JSON data), waiting at most `limit`.
    async fn next(&mut self, limit: Duration) -> (String, Value) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = "message".to_owned();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        name = n.trim().to_owned();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let value = serde_json::from_str(&data).expect("event data is JSON");
                return (name, value);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("no event in time")
                .expect("the feed ended")
                .expect("the feed failed");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Waits for the first `stats` event: from then on the subscription is surely in place.
    async fn until_stats(&mut self) -> Value {
        loop {
            let (name, data) = self.next(Duration::from_secs(10)).await;
            if name == "stats" {
                return data;
            }
        }
    }

    /// The next `n` messages, skipping statistics.
    async fn messages(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} of {n} messages came in time",
                out.len()
            );
            let (name, data) = self.next(left).await;
            match name.as_str() {
                "message" => out.push(data),
                "stats" => {}
                other => panic!("unexpected event {other}: {data}"),
            }
        }
        out
    }
}

fn assert_stats(stats: &Value) {
    assert!(stats["messagesPerSecond"].is_u64(), "{stats}");
    assert!(
        stats["words"].as_array().is_some_and(|w| w.len() <= 10),
        "{stats}"
    );
}

async fn the_live_feed_sends_each_message_of_its_room_and_stats_every_second<S: Store>(
    new: impl Fn() -> S,
) {
    let store = new();
    let api = TestApi::spawn(store.clone()).await;
    let mut all = Events::open(&api.url("/live")).await;
    let mut in_b = Events::open(&api.url("/live?room=%23b")).await;
    assert_stats(&all.until_stats().await);
    in_b.until_stats().await;

    record(&store, chat(0, 30, 0)).await;
    let got: Vec<Value> = all.messages(30).await;
    let ids: Vec<&str> = got.iter().map(|m| m["id"].as_str().unwrap()).collect();
    let want: Vec<String> = (0..30).map(id).collect();
    assert_eq!(ids, want, "every message, in recording order");
    assert_eq!(got[4]["nick"], "n4");
    assert_eq!(got[4]["body"], "word4 hello");

    let got_b = in_b.messages(10).await;
    for (m, i) in got_b.iter().zip((0..30).filter(|i| i % 3 == 1)) {
        assert_eq!(m["id"], id(i), "{m}");
        assert_eq!(m["room"], "#b");
    }
    // The statistics go on once a second and now count the words of the last minute.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = all.until_stats().await;
        assert_stats(&stats);
        if stats["words"][0]["hello"] == 30 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stats never counted the words: {stats}"
        );
    }
}

async fn the_websocket_sends_the_same_updates_as_text_frames<S: Store>(new: impl Fn() -> S) {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message as Frame;
    let store = new();
    let api = TestApi::spawn(store.clone()).await;
    let url = format!("ws://{}/ws?room=%23c", api.address);
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("WebSocket handshake");
    let mut next = async || loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("no frame in time")
            .expect("the socket closed")
            .expect("the socket failed");
        if let Frame::Text(text) = frame {
            let value: Value = serde_json::from_str(&text).expect("a JSON frame");
            return value;
        }
    };
    loop {
        let frame = next().await;
        if frame["event"] == "stats" {
            assert_stats(&frame["data"]);
            break;
        }
    }
    record(&store, chat(0, 9, 0)).await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let frame = next().await;
        match frame["event"].as_str() {
            Some("message") => got.push(frame["data"]["id"].as_str().unwrap().to_owned()),
            Some("stats") => {}
            _ => panic!("unexpected frame {frame}"),
        }
    }
    assert_eq!(got, [id(2), id(5), id(8)]);
    // What a client sends is dropped; a frame past 4 KiB closes the connection instead of
    // being buffered, saying why (1009, "message too big").
    socket
        .send(Frame::Text("x".repeat(5000).into()))
        .await
        .expect("send");
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match socket.next().await {
                Some(Ok(Frame::Close(close))) => return close.map(|c| u16::from(c.code)),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert_eq!(
        closed.expect("a 5,000-byte frame left the connection open"),
        Some(1009),
        "closed without saying why"
    );
}

/// Opens `/live` on a raw socket and reads until the first `stats` event: the subscription is
/// then in place, and the socket is left unread.
async fn unread_subscriber(address: std::net::SocketAddr) -> tokio::net::TcpStream {
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    socket
        .write_all(b"GET /live HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains("event: stats") {
        let n = tokio::time::timeout_at(deadline, socket.read(&mut chunk))
            .await
            .expect("no stats event in time")
            .unwrap();
        assert!(n > 0, "the feed closed");
        seen.extend_from_slice(&chunk[..n]);
    }
    socket
}

async fn a_slow_live_client_is_told_how_many_messages_it_lost<S: Store>(new: impl Fn() -> S) {
    let store = new();
    let api = TestApi::spawn(store.clone()).await;
    let mut slow = unread_subscriber(api.address).await;

    // 3,000 messages of 8 KiB: far more than the socket buffers and the feed's backlog hold.
    record(&store, chat(0, 3_000, 8 * 1024)).await;
    let mut seen = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let dropped = loop {
        let n = tokio::time::timeout_at(deadline, slow.read(&mut chunk))
            .await
            .expect("no lagged event in time")
            .unwrap();
        assert!(n > 0, "the feed closed");
        seen.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some(at) = text.find("event: lagged\ndata: ") {
            let rest = &text[at + "event: lagged\ndata: ".len()..];
            if let Some(end) = rest.find('\n') {
                let data: Value = serde_json::from_str(&rest[..end]).unwrap();
                break data["dropped"].as_u64().expect("dropped");
            }
        }
        // Keep only the tail: the events before the notice are not needed.
        if seen.len() > 1 << 20 {
            seen.drain(..seen.len() - 64);
        }
    };
    assert!(dropped > 0 && dropped < 3_000, "dropped {dropped}");
}

async fn history_retention_zero_keeps_no_message<S: Store>(store: S) {
    record(&store, chat(0, 20, 0)).await;
    let api = TestApi::spawn(store).await;
    let (status, page) = api.get("/messages").await;
    assert_eq!(status, 200);
    assert_eq!(page, serde_json::json!({"messages": [], "next": null}));
    let (status, _) = api.get("/messages/h-00003").await;
    assert_eq!(status, 404);
    let (status, stats) = api.get("/stats/nicks").await;
    assert_eq!(status, 200);
    let counts: Vec<&Value> = stats
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e.as_object().unwrap().values())
        .collect();
    assert_eq!(
        counts,
        [&Value::from(4); 5],
        "the statistics are kept: {stats}"
    );
}

fn no_history() -> Retention {
    Retention {
        history: Duration::ZERO,
        ..Retention::default()
    }
}

#[tokio::test]
async fn history_retention_zero_keeps_no_message_in_memory() {
    history_retention_zero_keeps_no_message(memory_store().with_retention(no_history())).await;
}

/// A Redis store on `redis` keeping buckets and messages for `retention`.
fn redis_keeping(redis: &TestRedis, retention: Retention) -> RedisStore {
    RedisStore::connect(RedisSettings {
        retention,
        ..redis_settings(redis)
    })
    .expect("store")
}

#[tokio::test]
async fn while_redis_does_not_answer_the_live_feed_says_so_instead_of_repeating_stats() {
    let redis = TestRedis::start();
    let api = TestApi::spawn(redis.store()).await;
    let mut live = Events::open(&api.url("/live")).await;
    assert_stats(&live.until_stats().await);
    redis.signal("STOP");
    let deadline = Instant::now() + Duration::from_secs(20);
    let reason = loop {
        let (event, data) = live.next(Duration::from_secs(20)).await;
        if event == "unavailable" {
            break data;
        }
        assert!(
            Instant::now() < deadline,
            "no unavailable event: last {event} {data}"
        );
    };
    assert!(
        reason["message"]
            .as_str()
            .is_some_and(|m| m.contains("unavailable")),
        "{reason}"
    );
    // A client connecting now is told at once, not given the last figures.
    let mut late = Events::open(&api.url("/live")).await;
    let (event, _) = late.next(Duration::from_secs(20)).await;
    assert_eq!(event, "unavailable");
    redis.signal("CONT");
    assert_stats(&live.until_stats().await);
}

#[tokio::test]
async fn history_retention_zero_keeps_no_message_on_redis() {
    let redis = TestRedis::start();
    let store = redis_keeping(&redis, no_history());
    let key = format!("{}history", store.namespace());
    history_retention_zero_keeps_no_message(store).await;
    // What Redis holds for the live feed expires an hour after the end of the hour, workers
    // gone or not.
    let number = |args: &[&str]| -> i64 { redis.cli(args).unwrap().trim().parse().unwrap() };
    assert_eq!(number(&["--raw", "XLEN", &key]), 20);
    let ttl = number(&["--raw", "TTL", &key]);
    assert!((3_600..=7_200).contains(&ttl), "TTL {ttl}");
}

/// Messages are gone once their retention has passed, even when no newer message trimmed them.
async fn a_message_is_gone_once_its_retention_has_passed<S: Store>(store: S) {
    record(&store, chat(0, 5, 0)).await;
    let api = TestApi::spawn(store).await;
    let (status, page) = api.get("/messages").await;
    assert_eq!(status, 200);
    assert_eq!(ids_of(&page).len(), 5, "kept at first: {page}");
    assert_eq!(api.get("/messages/h-00003").await.0, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, page) = api.get("/messages").await;
        let (_, by_room) = api.get("/messages?room=%23b").await;
        let (status, _) = api.get("/messages/h-00003").await;
        if ids_of(&page).is_empty() && ids_of(&by_room).is_empty() && status == 404 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still served after its retention: {page} / {by_room} / {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn short_history() -> Retention {
    Retention {
        history: Duration::from_secs(2),
        ..Retention::default()
    }
}

#[tokio::test]
async fn a_message_is_gone_once_its_retention_has_passed_in_memory() {
    a_message_is_gone_once_its_retention_has_passed(memory_store().with_retention(short_history()))
        .await;
}

#[tokio::test]
async fn a_message_is_gone_once_its_retention_has_passed_on_redis() {
    let redis = TestRedis::start();
    a_message_is_gone_once_its_retention_has_passed(redis_keeping(&redis, short_history())).await;
}

/// The in-memory store keeps at most its cap of messages (500,000 by default), the newest,
/// whatever the retention: its process's memory stays bounded.
#[tokio::test]
async fn the_in_memory_history_keeps_only_its_newest_messages_past_its_cap() {
    let store = memory_store().with_history_cap(10);
    record(&store, chat(0, 30, 0)).await;
    let api = TestApi::spawn(store).await;
    let (status, page) = api.get("/messages?limit=200").await;
    assert_eq!(status, 200);
    let want: Vec<String> = (20..30).rev().map(id).collect();
    assert_eq!(ids_of(&page), want, "{page}");
    assert_eq!(api.get(&format!("/messages/{}", id(19))).await.0, 404);
    assert_eq!(api.get(&format!("/messages/{}", id(20))).await.0, 200);
    let (_, in_b) = api.get("/messages?room=%23b&limit=200").await;
    assert!(ids_of(&in_b).iter().all(|i| want.contains(i)), "{in_b}");
}

/// A nick's messages in a room that its newest 2,000 messages elsewhere hide: the first page
/// reads those 2,000 rows, holds nothing and gives a cursor; the next finds the message.
#[tokio::test]
async fn a_nick_in_a_room_pages_on_past_its_other_rooms_on_redis() {
    let redis = TestRedis::start();
    let store = redis.store_in(&namespace());
    let now = now_ms();
    let mut stream = String::new();
    for i in 0..2_501u64 {
        let room = if i == 0 { "#b" } else { "#a" };
        let payload = serde_json::json!({
            "command": "", "room": room, "nick": "x", "target": "", "body": format!("m{i}"),
            "tags": format!("id=s-{i:05};tmi-sent-ts={}", now - 30_000 + i),
        });
        stream.push_str(&format!("event: privmsg\nse-data: {payload}\n\n"));
    }
    record(&store, stream.into_bytes()).await;
    let api = TestApi::spawn(store).await;
    let (status, first) = api.get("/messages?room=%23b&nick=x&limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(first["messages"], serde_json::json!([]), "{first}");
    let cursor = first["next"].as_str().expect("a cursor to go on from");
    let (_, second) = api
        .get(&format!(
            "/messages?room=%23b&nick=x&limit=10&before={cursor}"
        ))
        .await;
    assert_eq!(ids_of(&second), ["s-00000"], "{second}");
    assert!(second["next"].is_null(), "{second}");
    // Full pages when the room holds enough: 10 of #a, newest first.
    let (_, page) = api.get("/messages?room=%23a&nick=x&limit=10").await;
    let want: Vec<String> = (2_491..2_501).rev().map(|i| format!("s-{i:05}")).collect();
    assert_eq!(ids_of(&page), want);
}

/// Writes `bytes` to a file of its own, for a worker process to read.
fn stream_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, bytes).unwrap();
    file
}

/// An API process on `redis` under `ns`, and its address.
fn api_process(redis: &TestRedis, ns: &str) -> (Running, String) {
    let port = free_port();
    let api = Running(
        bin("chatstats-api")
            .env("REDIS_URL", redis.url())
            .env("REDIS_NAMESPACE", ns)
            .env("NODE_HOST", "127.0.0.1")
            .env("NODE_PORT", port.to_string())
            .spawn()
            .unwrap(),
    );
    (api, format!("127.0.0.1:{port}"))
}

async fn wait_for_api(base: &str) {
    let health = format!("http://{base}/healthcheck");
    eventually(Duration::from_secs(15), "the API to answer", || async {
        get_json(&health).await.is_some()
    })
    .await;
}

/// A worker process recording `file` into `redis` under `ns`, to its end.
fn record_in_process(redis: &TestRedis, ns: &str, file: &tempfile::NamedTempFile) {
    let mut worker = bin("chatstats-worker")
        .env("CHAT_INTERFACE_URL", file.path())
        .env("RESPONSE_STREAM_MODE", "text")
        .env("REDIS_URL", redis.url())
        .env("REDIS_NAMESPACE", ns)
        .spawn()
        .unwrap();
    let status = wait_with_deadline(&mut worker, Duration::from_secs(60));
    assert!(status.success(), "worker: {status}");
}

#[tokio::test]
async fn the_live_feed_and_history_work_when_worker_and_api_are_separate_processes() {
    let redis = TestRedis::start();
    let ns = namespace();
    let (_api, base) = api_process(&redis, &ns);
    wait_for_api(&base).await;
    let mut live = Events::open(&format!("http://{base}/live")).await;
    live.until_stats().await;

    let file = stream_file(&chat(0, 100, 0));
    record_in_process(&redis, &ns, &file);
    let got = live.messages(100).await;
    let ids: Vec<&str> = got.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, (0..100).map(id).collect::<Vec<_>>());

    let page = get_json(&format!("http://{base}/messages?limit=3"))
        .await
        .unwrap();
    assert_eq!(ids_of(&page), [id(99), id(98), id(97)]);
}

/// Resident and peak memory of process `pid`, in KiB, from /proc.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Counts `event: message` in a feed until it has seen `n`; says `ready` once its first
/// `stats` event came (its subscription is then in place).
async fn count_messages(url: String, n: usize, ready: tokio::sync::mpsc::Sender<()>) -> usize {
    let mut body = reqwest::get(&url).await.unwrap().bytes_stream();
    let mut ready = Some(ready);
    let (mut seen, mut carry) = (0, Vec::new());
    while seen < n {
        let Some(Ok(chunk)) = body.next().await else {
            break;
        };
        carry.extend_from_slice(&chunk);
        // Count whole events only; an incomplete one stays for the next chunk.
        let Some(end) = carry.windows(2).rposition(|w| w == b"\n\n") else {
            continue;
        };
        let events: Vec<u8> = carry.drain(..end + 2).collect();
        let text = String::from_utf8_lossy(&events);
        if text.contains("event: stats\n") {
            if let Some(ready) = ready.take() {
                let _ = ready.send(()).await;
            }
        }
        seen += text.matches("event: message\n").count();
    }
    seen
}

/// 500 subscribers of one API process, one of which never reads: everyone else gets every
/// message, and the process's memory stays bounded (its figures are printed).
#[tokio::test]
async fn five_hundred_subscribers_with_one_that_never_reads_leave_memory_bounded() {
    const READERS: usize = 499;
    const MESSAGES: usize = 1_000;
    let redis = TestRedis::start();
    let ns = namespace();
    let (api, base) = api_process(&redis, &ns);
    wait_for_api(&base).await;
    let address: std::net::SocketAddr = base.parse().unwrap();
    let _never_reads = unread_subscriber(address).await;
    let (ready, mut readied) = tokio::sync::mpsc::channel(READERS);
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let url = format!("http://{base}/live");
            tokio::spawn(count_messages(url, MESSAGES, ready.clone()))
        })
        .collect();
    drop(ready);
    for _ in 0..READERS {
        tokio::time::timeout(Duration::from_secs(30), readied.recv())
            .await
            .expect("every subscriber to be in place in time")
            .expect("a subscriber failed");
    }
    let pid = api.0.id();
    let (before, _) = rss_kib(pid);

    let file = stream_file(&chat(0, MESSAGES, 200));
    record_in_process(&redis, &ns, &file);
    for reader in readers {
        let seen = tokio::time::timeout(Duration::from_secs(120), reader)
            .await
            .expect("a reader did not get every message in time")
            .unwrap();
        assert_eq!(seen, MESSAGES);
    }
    let (after, peak) = rss_kib(pid);
    eprintln!(
        "API RSS with 500 subscribers (one never reading): {before} KiB before, {after} KiB after {MESSAGES} messages, peak {peak} KiB"
    );
    assert!(peak < 300 * 1024, "peak RSS {peak} KiB");
    let health = get_json(&format!("http://{base}/healthcheck")).await;
    assert!(health.is_some(), "the API still answers");
}

#[tokio::test]
async fn every_history_key_on_redis_expires_with_the_history() {
    let redis = TestRedis::start();
    let ns = namespace();
    let store = redis.store_in(&ns);
    record(&store, chat(0, 30, 0)).await;
    let keys = redis
        .cli(&["--scan", "--pattern", &format!("{ns}*history*")])
        .unwrap();
    let keys: Vec<&str> = keys.lines().map(|l| l.trim().trim_matches('"')).collect();
    // The stream, one id hash, and the indexes of 3 rooms and 5 nicks.
    assert_eq!(keys.len(), 1 + 1 + 3 + 5, "{keys:?}");
    let day = 24 * 3600;
    for key in keys {
        let ttl: i64 = redis
            .cli(&["TTL", key])
            .and_then(|t| t.split_whitespace().last().and_then(|n| n.parse().ok()))
            .unwrap();
        assert!(ttl > day && ttl <= day + 3600 + 5, "{key}: TTL {ttl}");
    }
}
