//! Statistics by room, nick, emote and time, on both stores: the hand-checked part-2 fixture
//! (emote ranges in code points, bots, unusable timestamps), ranges and their headers, open
//! ends, widened ranges, windows, empty ranges, activity, and every 400 and 404.

use std::sync::Arc;

use chatstats::emotes::EmoteNames;
use chatstats::message::Rules;
use chatstats::source::file::FileSource;
use chatstats::store::Store;
use chatstats::timeline::now_ms;
use chatstats::worker::{self, WorkerSettings};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

contract!(
    the_part2_fixture_gives_exactly_its_expected_answers,
    ranged_answers_say_the_range_they_cover,
    a_range_longer_than_6_hours_starts_on_a_whole_hour,
    one_end_of_a_range_may_be_left_open,
    windows_end_now,
    a_range_without_messages_is_empty,
    activity_defaults_to_the_last_hour_by_minute_and_counts_every_message,
    bad_queries_are_refused_with_a_400,
    an_old_message_counts_in_every_bucket_still_kept,
    rooms_and_nicks_never_seen_are_404,
    basic_statistics_leave_the_detail_empty,
);

/// Where the fixture's times start (2026-11-23T08:00:00Z).
const FIXTURE_START_MS: u64 = 1_795_420_800_000;

/// The part-2 fixture with its message times moved to about ten minutes ago (whole minutes), so
/// that its minutes are kept; `offset` is what was added.
struct Fixture {
    stream: Vec<u8>,
    offset: u64,
    answers: serde_json::Map<String, Value>,
    recorded_from_ms: u64,
}

fn fixture() -> Fixture {
    let now = now_ms();
    let start = (now - 10 * 60_000) / 60_000 * 60_000;
    let offset = start - FIXTURE_START_MS;
    let text = std::fs::read_to_string(part2("stream.txt")).unwrap();
    // Move every usable-looking timestamp before 4000000000000 (not the one in year 2100).
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("tmi-sent-ts=") {
        let (head, tail) = rest.split_at(at + "tmi-sent-ts=".len());
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        match tail[..digits].parse::<u64>() {
            Ok(ts) if ts < 4_000_000_000_000 => out.push_str(&(ts + offset).to_string()),
            _ => out.push_str(&tail[..digits]),
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(part2("expected.json")).unwrap()).unwrap();
    Fixture {
        stream: out.into_bytes(),
        offset,
        answers: expected["answers"].as_object().unwrap().clone(),
        recorded_from_ms: now,
    }
}

/// The fixture's settings: IGNORED_NICKS=nightbot,streamelements and its emote names file.
fn full_rules() -> Rules {
    Rules {
        failed_max: 4096,
        full: true,
        history: true,
        ignored: Arc::new(Rules::ignored_nicks("nightbot,streamelements")),
        emote_names: Arc::new(EmoteNames::parse(
            &std::fs::read_to_string(part2("emote-names.txt")).unwrap(),
        )),
    }
}

/// Records `bytes` into `store` with `rules`, to the end.
async fn record_with<S: Store>(store: &S, bytes: &[u8], rules: Rules) {
    let source = FileSource::new(
        "test input",
        Box::new(std::io::Cursor::new(bytes.to_vec())),
        1 << 20,
    );
    let settings = WorkerSettings {
        rules,
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

async fn recorded<S: Store>(new: impl Fn() -> S) -> (TestApi, Fixture) {
    let fixture = fixture();
    let store = new();
    record_with(&store, &fixture.stream, full_rules()).await;
    (TestApi::spawn(store).await, fixture)
}

fn ms_to_rfc3339(ms: u64, millis: bool) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap();
    let text = at.format(&Rfc3339).unwrap();
    match (millis, text.split_once('.')) {
        (true, Some((secs, _))) => format!("{secs}.{:03}Z", at.millisecond()),
        (true, None) => format!("{}.{:03}Z", text.trim_end_matches('Z'), at.millisecond()),
        (false, _) => text,
    }
}

fn rfc3339_to_ms(text: &str) -> u64 {
    (time::OffsetDateTime::parse(text, &Rfc3339)
        .unwrap()
        .unix_timestamp_nanos()
        / 1_000_000) as u64
}

/// `path` with its `from` and `to` moved by `offset`, in the form they were given.
fn shift_query(path: &str, offset: u64) -> String {
    let Some((route, query)) = path.split_once('?') else {
        return path.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name @ ("from" | "to"), value)) => {
                let moved = match value.parse::<u64>() {
                    Ok(ms) => (ms + offset).to_string(),
                    Err(_) => ms_to_rfc3339(rfc3339_to_ms(value) + offset, false),
                };
                format!("{name}={moved}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{route}?{}", pairs.join("&"))
}

/// An expected answer with its times moved by `offset`.
fn shift_answer(value: &Value, offset: u64) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let moved = match (k.as_str(), v.as_str()) {
                        ("time", Some(t)) => json!(ms_to_rfc3339(rfc3339_to_ms(t) + offset, false)),
                        ("firstSeen" | "lastSeen", Some(t)) if !t.starts_with('<') => {
                            json!(ms_to_rfc3339(rfc3339_to_ms(t) + offset, true))
                        }
                        _ => shift_answer(v, offset),
                    };
                    (k.clone(), moved)
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| shift_answer(v, offset)).collect())
        }
        other => other.clone(),
    }
}

async fn the_part2_fixture_gives_exactly_its_expected_answers<S: Store>(new: impl Fn() -> S) {
    let (api, fixture) = recorded(new).await;
    for (path, want) in &fixture.answers {
        let url = shift_query(path, fixture.offset);
        let (status, mut body) = api.get(&url).await;
        if let Some(text) = want.as_str() {
            assert!(text.starts_with("404"), "{path}: {text}");
            assert_eq!(status, 404, "{path}: {body}");
            assert_eq!(body["statusCode"], 404, "{path}");
            continue;
        }
        assert_eq!(status, 200, "{url}: {body}");
        let mut want = shift_answer(want, fixture.offset);
        // A room whose last message had no usable time was last seen when it was processed.
        if want["lastSeen"]
            .as_str()
            .is_some_and(|t| t.starts_with('<'))
        {
            let seen = rfc3339_to_ms(body["lastSeen"].as_str().unwrap());
            assert!(
                seen >= fixture.recorded_from_ms / 1000 * 1000 && seen <= now_ms(),
                "{path}: lastSeen {seen} is the processing time"
            );
            want["lastSeen"] = body["lastSeen"].take();
            body["lastSeen"] = want["lastSeen"].clone();
        }
        assert_eq!(body, want, "{url}");
    }
}

/// GET `path` with its headers.
async fn get_ranged(api: &TestApi, path: &str) -> (u16, Value, Option<u64>, Option<u64>) {
    let response = api.client.get(api.url(path)).send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(rfc3339_to_ms)
    };
    let (from, to) = (header("range-from"), header("range-to"));
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        from,
        to,
    )
}

async fn ranged_answers_say_the_range_they_cover<S: Store>(new: impl Fn() -> S) {
    let (api, fixture) = recorded(new).await;
    let start = FIXTURE_START_MS + fixture.offset;
    // 08:01:30 .. 08:02:10 widens to 08:01 .. 08:03.
    let path = format!(
        "/stats/words?from={}&to={}",
        start + 90_000,
        start + 130_000
    );
    let (status, body, from, to) = get_ranged(&api, &path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((from, to), (Some(start + 60_000), Some(start + 180_000)));
    assert_eq!(
        body,
        json!([{"Kappa": 3}, {"KEKW": 2}, {"ㅋㅋㅋ": 1}, {"lol": 1}, {"PogChamp": 1}])
    );
    // All-time answers carry no range.
    let (_, _, from, to) = get_ranged(&api, "/stats/words").await;
    assert_eq!((from, to), (None, None));
}

async fn a_range_longer_than_6_hours_starts_on_a_whole_hour<S: Store>(new: impl Fn() -> S) {
    let (api, _) = recorded(new).await;
    let now = now_ms();
    let path = format!("/stats/emotes?from={}", now - 7 * 3_600_000 - 123_456);
    let (status, body, from, to) = get_ranged(&api, &path).await;
    assert_eq!(status, 200, "{body}");
    let (from, to) = (from.unwrap(), to.unwrap());
    assert_eq!(from % 3_600_000, 0, "from on an hour");
    assert_eq!(to % 60_000, 0, "to on a minute: the end is exact");
    assert!(from <= now - 7 * 3_600_000 - 123_456 && to >= now && to < now + 60_000);
    let (_, all_time) = api.get("/stats/emotes").await;
    assert_eq!(body, all_time, "the range holds every message");
}

async fn one_end_of_a_range_may_be_left_open<S: Store>(new: impl Fn() -> S) {
    let (api, fixture) = recorded(new).await;
    let start = FIXTURE_START_MS + fixture.offset;
    // Open start: as far back as anything is kept, a long range, so its start is widened to a
    // whole day; its end stays exact to the minute.
    let now = now_ms();
    let (status, body, from, to) = get_ranged(&api, &format!("/stats/nicks?to={now}")).await;
    assert_eq!(status, 200, "{body}");
    let (from, to) = (from.unwrap(), to.unwrap());
    assert!(from % 86_400_000 == 0 && to % 60_000 == 0 && to >= now && to < now + 60_000);
    assert!(now - from >= 35 * 86_400_000 - 3_600_000, "everything kept");
    assert_eq!(body, api.get("/stats/nicks").await.1);
    // Up to 08:03: nothing after it (dave, with the processing time, is later), as from the
    // fixture's start to 08:03.
    let up_to = format!("/stats/nicks?to={}", start + 180_000);
    let (status, body, _, to) = get_ranged(&api, &up_to).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(to, Some(start + 180_000));
    let bounded = format!("/stats/nicks?from={start}&to={}", start + 180_000);
    assert_eq!(body, get_ranged(&api, &bounded).await.1);
    assert_eq!(sorted_members(&body), ["alice", "bob", "carol"], "{body}");
    // From 08:04: erin at 08:04:00, alice at 08:04:59, the three with the processing time.
    let (_, body, from, _) =
        get_ranged(&api, &format!("/stats/nicks?from={}", start + 240_000)).await;
    assert_eq!(from, Some(start + 240_000));
    assert_eq!(
        body,
        json!([{"gina": 1}, {"frank": 1}, {"erin": 1}, {"dave": 1}, {"alice": 1}])
    );
}

/// The members of a top-list answer, sorted.
fn sorted_members(body: &Value) -> Vec<String> {
    let mut members: Vec<String> = body
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e.as_object().unwrap().keys().cloned())
        .collect();
    members.sort();
    members
}

async fn windows_end_now<S: Store>(new: impl Fn() -> S) {
    let (api, _) = recorded(new).await;
    // The last minute holds only the messages that took the processing time.
    let (status, body, from, to) = get_ranged(&api, "/stats/words?window=1m").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        sorted_members(&body),
        ["bad", "from", "future", "hi", "the", "ts"]
    );
    let (from, to) = (from.unwrap(), to.unwrap());
    assert!(to > now_ms() - 1000 && to - from <= 120_000);
    // The last hour holds everything.
    let (_, hour, _, _) = get_ranged(&api, "/stats/rooms?window=1h").await;
    assert_eq!(hour, json!([{"#kitchen": 7}, {"#garden": 5}]));
}

/// A backfill: messages older than the minutes' retention (7 h by default) still count in the
/// hours (49 h) and days (35 d) that are kept, for everything and for their room.
async fn an_old_message_counts_in_every_bucket_still_kept<S: Store>(new: impl Fn() -> S) {
    let now = now_ms();
    let mut stream = String::new();
    for (hours_ago, word) in [
        (0.05, "recent"),
        (3.0, "threeh"),
        (10.0, "tenh"),
        (72.0, "threed"),
        (240.0, "tend"),
    ] {
        let payload = json!({
            "command": "", "room": "#r", "nick": format!("n{word}"), "target": "", "body": word,
            "tags": format!("tmi-sent-ts={}", now - (hours_ago * 3_600_000.0) as u64),
        });
        stream.push_str(&format!("event: privmsg\nse-data: {payload}\n\n"));
    }
    let store = new();
    record_with(&store, stream.as_bytes(), full_rules()).await;
    let api = TestApi::spawn(store).await;
    for (window, want) in [
        ("24h", vec!["recent", "tenh", "threeh"]),
        ("7d", vec!["recent", "tenh", "threed", "threeh"]),
        ("30d", vec!["recent", "tend", "tenh", "threed", "threeh"]),
    ] {
        for filter in ["", "&room=%23r"] {
            let path = format!("/stats/words?window={window}{filter}");
            let (status, body, _, _) = get_ranged(&api, &path).await;
            assert_eq!(status, 200, "{path}: {body}");
            assert_eq!(sorted_members(&body), want, "{path}");
        }
    }
    let (_, summary) = api.get("/stats/rooms/%23r?window=7d").await;
    assert_eq!(summary["messages"], 4, "{summary}");
}

async fn a_range_without_messages_is_empty<S: Store>(new: impl Fn() -> S) {
    let (api, _) = recorded(new).await;
    let now = now_ms();
    let path = format!(
        "/stats/words?room=%23kitchen&from={}&to={}",
        now - 3 * 3_600_000,
        now - 2 * 3_600_000
    );
    let (status, body, from, to) = get_ranged(&api, &path).await;
    assert_eq!((status, body), (200, json!([])));
    assert!(from.is_some() && to.is_some());
}

async fn activity_defaults_to_the_last_hour_by_minute_and_counts_every_message<S: Store>(
    new: impl Fn() -> S,
) {
    let (api, _) = recorded(new).await;
    for (query, buckets) in [
        ("", 60..=61),
        ("?bucket=1h", 48..=49),
        ("?bucket=1d", 30..=31),
    ] {
        let (status, body) = api.get(&format!("/stats/activity{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        let points = body.as_array().unwrap();
        assert!(
            buckets.contains(&points.len()),
            "{query}: {} buckets",
            points.len()
        );
        let total: u64 = points.iter().map(|p| p["messages"].as_u64().unwrap()).sum();
        assert_eq!(total, 12, "{query}: every counted message, bots left out");
    }
    let (_, body) = api.get("/stats/activity?room=%23garden").await;
    let total: u64 = body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["messages"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 5);
}

async fn bad_queries_are_refused_with_a_400<S: Store>(new: impl Fn() -> S) {
    let (api, _) = recorded(new).await;
    for path in [
        "/stats/words?room=%23kitchen&nick=alice",
        "/stats/words?window=5m&from=1795420800000",
        "/stats/words?window=5m&to=1795420800000",
        "/stats/words?nick=alice&window=5m",
        "/stats/emotes?nick=alice&from=1795420800000",
        "/stats/rooms?room=%23kitchen",
        "/stats/nicks?nick=alice",
        "/stats/words?from=1795420900000&to=1795420800000",
        "/stats/words?from=1795420800000&to=1795420800000",
        "/stats/words?from=yesterday",
        "/stats/words?to=2026-13-01T00:00:00Z",
        "/stats/words?window=2h",
        "/stats/words?room=",
        "/stats/words?limit=0",
        "/stats/emotes?limit=1001",
        "/stats/words?bucket=1m",
        "/stats/rooms/%23kitchen?window=5m&from=1795420800000",
        "/stats/rooms/%23kitchen?nick=alice",
        "/stats/nicks/alice?window=1h",
        "/stats/nicks/alice?room=%23kitchen",
        "/stats/activity?bucket=5m",
        "/stats/activity?bucket=1m&from=1795000000000&to=1795420800000",
        "/stats/activity?from=1795420900000&to=1795420800000",
        "/stats/activity?nick=alice",
        "/stats/activity?window=1h",
        "/stats/words?to=9999-12-31T23:59:59Z",
        "/stats/activity?bucket=1d&to=253402300799999",
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"], "Bad Request", "{path}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{path}"
        );
    }
    // A 400 names what the client sent, not a default it did not.
    for (path, names) in [
        ("/stats/words?from=4000000000000", "before now"),
        ("/stats/activity?from=4000000000000", "before now"),
        ("/stats/activity?bucket=1h&to=0", "querystring/to"),
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{path}: {message}");
    }
}

async fn rooms_and_nicks_never_seen_are_404<S: Store>(new: impl Fn() -> S) {
    let (api, _) = recorded(new).await;
    for path in [
        "/stats/rooms/%23never",
        "/stats/nicks/nobody",
        "/stats/nicks/Nightbot",
        "/stats/nicks/STREAMELEMENTS",
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"], "Not Found");
    }
}

async fn basic_statistics_leave_the_detail_empty<S: Store>(new: impl Fn() -> S) {
    let fixture = fixture();
    let store = new();
    record_with(&store, &fixture.stream, Rules::basic(4096)).await;
    let api = TestApi::spawn(store).await;
    assert_eq!(api.get("/stats/emotes").await, (200, json!([])));
    assert_eq!(api.get("/stats/words?window=1h").await, (200, json!([])));
    // Part 1 as it always was: bots are counted.
    let (_, nicks) = api.get("/stats/nicks?limit=20").await;
    let names = sorted_members(&nicks);
    assert!(names.iter().any(|n| n == "Nightbot") && names.iter().any(|n| n == "STREAMELEMENTS"));
    // A room known from the all-time lists only: no first and last message.
    let (status, room) = api.get("/stats/rooms/%23kitchen").await;
    assert_eq!(status, 200, "{room}");
    assert_eq!(
        (room["firstSeen"].clone(), room["lastSeen"].clone()),
        (Value::Null, Value::Null)
    );
}
