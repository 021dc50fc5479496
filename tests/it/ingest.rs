//! `POST /messages` on a real Redis: payloads appended to `{ns}inbox` byte for byte and in
//! order, a bad batch refused whole, size caps, bearer tokens (401, 403, never logged), content
//! types, the in-memory store's 503, and the rate limits (per token on ingestion, per client IP
//! on reads, `X-Forwarded-For` only from trusted proxies); configuration errors.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatstats::api::{ApiSettings, IngestTokens, RateLimit, TrustedProxies};
use chatstats::store::redis::RedisStore;
use fred::prelude::*;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

const TOKEN: &str = "IngestProbeToken-0123456789abcdef";
const OTHER_TOKEN: &str = "IngestProbeToken-fedcba9876543210";
const NDJSON: &str = "application/x-ndjson";
const JSON: &str = "application/json";

/// Ingestion enabled with [`TOKEN`] and [`OTHER_TOKEN`].
fn with_tokens(settings: &mut ApiSettings) {
    settings.ingest_tokens = IngestTokens::parse(&format!("{TOKEN},{OTHER_TOKEN}")).unwrap();
}

/// A Redis store under a namespace of its own, and that namespace.
fn store(redis: &TestRedis) -> (RedisStore, String) {
    let ns = namespace();
    (redis.store_in(&ns), ns)
}

/// The payloads of `{ns}inbox`, oldest first.
async fn inbox(store: &RedisStore, ns: &str) -> Vec<Bytes> {
    let entries: Vec<(String, HashMap<String, Bytes>)> = store
        .client()
        .xrange(format!("{ns}inbox"), "-", "+", None)
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|(_, mut fields)| fields.remove("p").expect("field p"))
        .collect()
}

/// POSTs `body` to `/messages` with `token` and `content_type`: status, headers, JSON body.
async fn post(
    api: &TestApi,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, HeaderMap, Value) {
    let mut request = api.client.post(api.url("/messages")).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// `n` NDJSON payloads numbered from `first`, one per line.
fn batch(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("{{\"room\":\"#kitchen\",\"nick\":\"n{i}\",\"body\":\"message {i}\"}}\n"))
        .collect()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header: {headers:?}"))
}

#[tokio::test]
async fn a_json_object_is_appended_byte_for_byte() {
    let redis = TestRedis::start();
    let (store, ns) = store(&redis);
    let api = TestApi::spawn_with(store.clone(), with_tokens).await;
    // Spacing and escapes a re-serialization would change.
    let payload = r##"{"command":"", "room" : "#kitchen","nick":"alice","target":"","body":"h\u00e9llo  Kappa","tags":"id=x;tmi-sent-ts=1795420805000"}"##;
    let (status, _, body) = post(&api, Some(TOKEN), Some(JSON), format!("{payload}\r\n")).await;
    assert_eq!((status, body), (202, json!({"accepted": 1})));
    assert_eq!(inbox(&store, &ns).await, [Bytes::from(payload)]);
    // A charset parameter is fine; an array is not an object.
    let with_charset = "application/json; charset=utf-8";
    let (status, _, _) = post(&api, Some(TOKEN), Some(with_charset), "{}").await;
    assert_eq!(status, 202);
    let (status, _, body) = post(&api, Some(TOKEN), Some(JSON), "[1,2]").await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "body: not a JSON object");
    assert_eq!(inbox(&store, &ns).await.len(), 2);
}

#[tokio::test]
async fn what_ingestion_accepts_the_worker_counts_and_what_it_refuses_fails() {
    let redis = TestRedis::start();
    let (store, _) = store(&redis);
    let api = TestApi::spawn_with(store, with_tokens).await;
    // JSON objects as `JSON.parse` reads them (the TypeScript service counted each): a key
    // given twice, escaped lone surrogates, fields of any type.
    let objects = [
        r##"{"room":"#a","body":"x","room":"#b"}"##,
        r##"{"room":"#a","body":"a\ud83d b"}"##,
        r##"{"nick":"\udc00x","\ud800":1}"##,
        r##"{"body":{"deep":[1,2,{"x":null}]},"tags":7}"##,
    ];
    let not_objects = ["[1]", "\"text\"", r#"{"body":"x""#, "{} {}", r#"{"a":1,}"#];
    for (payloads, status) in [(&objects[..], 202), (&not_objects[..], 400)] {
        for payload in payloads {
            let (got, _, body) = post(&api, Some(TOKEN), Some(JSON), *payload).await;
            assert_eq!(got, status, "{payload}: {body}");
            let tally = chatstats::message::Tally::from_payload(&Bytes::from(*payload), 1, 4096);
            assert_eq!(tally.messages(), u64::from(status == 202), "{payload}");
            assert_eq!(tally.failed.is_empty(), status == 202, "{payload}");
        }
    }
}

#[tokio::test]
async fn an_ndjson_batch_is_appended_whole_and_in_order() {
    let redis = TestRedis::start();
    let (store, ns) = store(&redis);
    let api = TestApi::spawn_with(store.clone(), with_tokens).await;
    let lines = batch(0, 500);
    // CRLF line endings and blank lines are fine; the last line needs no line ending.
    let mut body = String::from("\n");
    for (i, line) in lines.lines().enumerate() {
        body.push_str(line);
        body.push_str(match i % 50 {
            49 => "\n  \n",
            n if n % 7 == 0 => "\r\n",
            _ => "\n",
        });
    }
    let body = body.trim_end().to_owned();
    let (status, _, answer) = post(&api, Some(TOKEN), Some(NDJSON), body).await;
    assert_eq!((status, answer), (202, json!({"accepted": 500})));
    let stored = inbox(&store, &ns).await;
    let expected: Vec<Bytes> = lines.lines().map(|l| Bytes::from(l.to_owned())).collect();
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn a_batch_with_a_bad_line_is_refused_whole_naming_the_line() {
    let redis = TestRedis::start();
    let (store, ns) = store(&redis);
    let api = TestApi::spawn_with(store.clone(), with_tokens).await;
    let (status, _, _) = post(&api, Some(TOKEN), Some(NDJSON), batch(0, 1)).await;
    assert_eq!(status, 202);
    for bad in ["[1,2]", "not json", "{\"unterminated\": 1"] {
        let body = format!("{}{bad}\n{}", batch(1, 2), batch(3, 2));
        let (status, _, answer) = post(&api, Some(TOKEN), Some(NDJSON), body).await;
        assert_eq!(
            (status, answer),
            (
                400,
                json!({"statusCode": 400, "error": "Bad Request", "message": "body/line 3: not a JSON object"})
            ),
            "{bad}"
        );
    }
    // Blank lines count in the numbering.
    let body = format!("{}\n\n12\n", batch(1, 1));
    let (_, _, answer) = post(&api, Some(TOKEN), Some(NDJSON), body).await;
    assert_eq!(answer["message"], "body/line 4: not a JSON object");
    for empty in ["", "\n \r\n"] {
        let (status, _, answer) = post(&api, Some(TOKEN), Some(NDJSON), empty).await;
        assert_eq!((status, &answer["message"]), (400, &json!("body: empty")));
    }
    assert_eq!(inbox(&store, &ns).await.len(), 1, "nothing more appended");
}

#[tokio::test]
async fn bodies_over_1_mib_or_1000_payloads_are_refused_with_a_413() {
    let redis = TestRedis::start();
    let (store, ns) = store(&redis);
    let api = TestApi::spawn_with(store.clone(), with_tokens).await;
    // 1,001 payloads.
    let (status, _, answer) = post(&api, Some(TOKEN), Some(NDJSON), batch(0, 1001)).await;
    assert_eq!(status, 413);
    assert_eq!(answer["message"], "a batch holds at most 1000 payloads");
    // Exactly 1,000 is fine, and a body near 1 MiB too.
    let (status, _, _) = post(&api, Some(TOKEN), Some(NDJSON), batch(0, 1000)).await;
    assert_eq!(status, 202);
    let big = format!("{{\"body\":\"{}\"}}", "x".repeat((1 << 20) - 20));
    let (status, _, _) = post(&api, Some(TOKEN), Some(JSON), big).await;
    assert_eq!(status, 202);
    // Over 1 MiB, sent chunked (no Content-Length).
    let chunk = Bytes::from(format!("{{\"body\":\"{}\"}}\n", "y".repeat(65_000)));
    let chunks = (0..17).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let (status, _, answer) = post(&api, Some(TOKEN), Some(NDJSON), stream).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(
        answer["message"],
        "request bodies are limited to 1048576 bytes"
    );
    // Over 1 MiB declared: refused before the body is read.
    let head = format!(
        "POST /messages HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: {NDJSON}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        (1 << 20) + 1
    );
    let mut tcp = tokio::net::TcpStream::connect(api.address).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert_eq!(inbox(&store, &ns).await.len(), 1001);
}

#[tokio::test]
async fn a_body_that_stops_or_trickles_gets_a_408_and_appends_nothing() {
    let redis = TestRedis::start();
    let (store, ns) = store(&redis);
    let api = TestApi::spawn_with(store.clone(), |settings| {
        with_tokens(settings);
        settings.idle_timeout = Duration::from_millis(300);
    })
    .await;
    // The head of a POST declaring `length` bytes, and the first of them.
    let head = |length: usize, first: &str| {
        format!(
            "POST /messages HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: {JSON}\r\ncontent-length: {length}\r\n\r\n{first}"
        )
    };
    let answer = |reader: tokio::net::tcp::OwnedReadHalf| async move {
        let mut reader = reader;
        let mut reply = vec![0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut reply))
            .await
            .expect("an answer before the deadline")
            .unwrap();
        String::from_utf8_lossy(&reply[..n]).into_owned()
    };
    // 100 bytes declared, 8 sent, then nothing.
    let mut tcp = tokio::net::TcpStream::connect(api.address).await.unwrap();
    tcp.write_all(head(100, "{\"body\":").as_bytes())
        .await
        .unwrap();
    let (reader, _writer) = tcp.into_split();
    let reply = answer(reader).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("the body stalled"), "{reply}");
    // One byte every 100 ms: never stalled for 300 ms, never whole.
    let mut tcp = tokio::net::TcpStream::connect(api.address).await.unwrap();
    tcp.write_all(head(1000, "{").as_bytes()).await.unwrap();
    let (reader, mut writer) = tcp.into_split();
    let trickle = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(100));
        while writer.write_all(b" ").await.is_ok() {
            interval.tick().await;
        }
    });
    let reply = answer(reader).await;
    trickle.abort();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("took longer than 900 ms"), "{reply}");
    assert!(inbox(&store, &ns).await.is_empty());
}

#[tokio::test]
async fn a_compressed_body_gets_a_415_and_a_byte_order_mark_is_dropped() {
    let redis = TestRedis::start();
    let (store, ns) = store(&redis);
    let api = TestApi::spawn_with(store.clone(), with_tokens).await;
    for coding in ["gzip", "br"] {
        let response = api
            .client
            .post(api.url("/messages"))
            .bearer_auth(TOKEN)
            .header("content-type", JSON)
            .header("content-encoding", coding)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{coding}");
    }
    let (status, _, _) = post(&api, Some(TOKEN), Some(JSON), "\u{feff}{\"a\":1}").await;
    assert_eq!(status, 202);
    let (status, _, _) = post(&api, Some(TOKEN), Some(NDJSON), "\u{feff}{\"b\":1}\n{}").await;
    assert_eq!(status, 202);
    // Files joined: a mark before a later line too.
    let joined = "{\"c\":1}\r\n\u{feff}{\"d\":1}\n";
    let (status, _, _) = post(&api, Some(TOKEN), Some(NDJSON), joined).await;
    assert_eq!(status, 202);
    let (status, _, answer) = post(&api, Some(TOKEN), Some(JSON), "\u{feff} \n").await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (400, Some("body: empty"))
    );
    let stored = inbox(&store, &ns).await;
    assert_eq!(
        stored,
        [
            &b"{\"a\":1}"[..],
            b"{\"b\":1}",
            b"{}",
            b"{\"c\":1}",
            b"{\"d\":1}"
        ]
    );
}

#[tokio::test]
async fn a_valid_bearer_token_is_required_and_ingestion_is_off_without_tokens() {
    let redis = TestRedis::start();
    let (store, ns) = store(&redis);
    let api = TestApi::spawn_with(store.clone(), with_tokens).await;
    let (status, headers, answer) = post(&api, None, Some(JSON), "{}").await;
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "www-authenticate"), "Bearer");
    assert_eq!(answer["statusCode"], 401);
    for wrong in [
        &TOKEN[..TOKEN.len() - 1],
        "IngestProbeToken-0123456789abcdeF",
        "x",
    ] {
        let (status, headers, answer) = post(&api, Some(wrong), Some(JSON), "{}").await;
        assert_eq!(status, 401, "{wrong}");
        assert!(header(&headers, "www-authenticate").starts_with("Bearer"));
        assert!(!answer.to_string().contains(wrong), "not echoed: {answer}");
    }
    let basic = api
        .client
        .post(api.url("/messages"))
        .basic_auth(TOKEN, None::<&str>)
        .header("content-type", JSON)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    // Either token works.
    for token in [TOKEN, OTHER_TOKEN] {
        let (status, _, _) = post(&api, Some(token), Some(JSON), "{}").await;
        assert_eq!(status, 202);
    }
    assert_eq!(inbox(&store, &ns).await.len(), 2);
    // No INGEST_TOKENS: 403 to every POST, with a token or without (DESIGN: "Unset → POST
    // answers 403").
    let off = TestApi::spawn(store.clone()).await;
    for token in [None, Some(TOKEN)] {
        let (status, _, answer) = post(&off, token, Some(JSON), "{}").await;
        assert_eq!(
            (status, answer),
            (
                403,
                json!({"statusCode": 403, "error": "Forbidden", "message": "ingestion disabled: set INGEST_TOKENS"})
            ),
            "{token:?}"
        );
    }
    assert_eq!(inbox(&store, &ns).await.len(), 2);
}

#[tokio::test]
async fn other_content_types_get_a_415_and_other_methods_a_405() {
    let redis = TestRedis::start();
    let (store, ns) = store(&redis);
    let api = TestApi::spawn_with(store.clone(), with_tokens).await;
    for content_type in [Some("text/plain"), Some("application/jsonl"), None] {
        let (status, headers, answer) = post(&api, Some(TOKEN), content_type, "{}").await;
        assert_eq!(status, 415, "{content_type:?}");
        assert_eq!(answer["error"], "Unsupported Media Type");
        assert!(header(&headers, "accept-post").contains(NDJSON));
    }
    let put = api.client.put(api.url("/messages")).send().await.unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(header(put.headers(), "allow"), "GET, HEAD, POST");
    let put = api.client.put(api.url("/stats")).send().await.unwrap();
    assert_eq!(header(put.headers(), "allow"), "GET, HEAD");
    // The history is still served on the same path.
    let (status, _) = api.get("/messages").await;
    assert_eq!(status, 200);
    assert!(inbox(&store, &ns).await.is_empty());
}

#[tokio::test]
async fn the_in_memory_store_cannot_ingest() {
    let api = TestApi::spawn_with(memory_store(), with_tokens).await;
    let (status, _, answer) = post(&api, Some(TOKEN), Some(JSON), "{}").await;
    assert_eq!(
        (status, answer),
        (
            503,
            json!({"statusCode": 503, "error": "Service Unavailable", "message": "ingestion needs Redis: set REDIS_URL"})
        )
    );
}

#[tokio::test]
async fn ingestion_is_rate_limited_per_token() {
    let redis = TestRedis::start();
    let (store, _) = store(&redis);
    let api = TestApi::spawn_with(store, |settings| {
        with_tokens(settings);
        let limit = RateLimit::parse("2/s").unwrap().unwrap();
        assert_eq!(limit.burst(), 2);
        settings.ingest_rate = Some(limit);
    })
    .await;
    // The burst of 2 goes through; requests faster than 2/s then get a 429.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut accepted = 0;
    let (headers, answer) = loop {
        assert!(Instant::now() < deadline, "no 429 within 10 s");
        let (status, headers, answer) = post(&api, Some(TOKEN), Some(JSON), "{}").await;
        match status {
            202 => accepted += 1,
            429 => break (headers, answer),
            other => panic!("{other}: {answer}"),
        }
    };
    assert!(accepted >= 2, "the burst is allowed: {accepted}");
    let retry_after: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    assert_eq!(answer["statusCode"], 429);
    assert_eq!(answer["error"], "Too Many Requests");
    // The other token has a budget of its own.
    let (status, _, _) = post(&api, Some(OTHER_TOKEN), Some(JSON), "{}").await;
    assert_eq!(status, 202);
}

/// GETs `/` with `forwarded_for` until a 429; how many were answered before it.
async fn reads_until_limited(api: &TestApi, forwarded_for: Option<&str>) -> usize {
    for answered in 0..10 {
        let mut request = api.client.get(api.url("/"));
        if let Some(address) = forwarded_for {
            request = request.header("x-forwarded-for", address);
        }
        let response = request.send().await.unwrap();
        if response.status() == 429 {
            let retry_after: u64 = header(response.headers(), "retry-after").parse().unwrap();
            assert!(retry_after >= 1);
            let kind = header(response.headers(), "content-type");
            assert_eq!(kind, "application/json; charset=utf-8");
            let answer: Value = response.json().await.unwrap();
            assert_eq!(answer["statusCode"], 429);
            return answered;
        }
        assert_eq!(response.status(), 200);
    }
    panic!("no 429 after 10 reads");
}

/// Reads limited to 1 per minute with a burst of 2: deterministic whatever the machine's speed.
fn read_limited(settings: &mut ApiSettings, trusted: &str) {
    let limit = RateLimit::parse("1/m").unwrap().unwrap();
    settings.read_rate = Some(limit.with_burst(2.try_into().unwrap()));
    settings.trusted_proxies = TrustedProxies::parse(trusted).unwrap();
}

#[tokio::test]
async fn reads_are_rate_limited_per_client_ip() {
    let api = TestApi::spawn_with(memory_store(), |s| read_limited(s, "")).await;
    assert_eq!(reads_until_limited(&api, None).await, 2);
    // An untrusted peer's X-Forwarded-For is ignored: still the peer's budget.
    assert_eq!(reads_until_limited(&api, Some("203.0.113.1")).await, 0);
    // POST is not a read.
    let (status, _, _) = post(&api, Some(TOKEN), Some(JSON), "{}").await;
    assert_eq!(status, 403);
    // Off by default.
    let open = TestApi::spawn(memory_store()).await;
    for _ in 0..20 {
        assert_eq!(open.get("/").await.0, 200);
    }
}

#[tokio::test]
async fn forwarded_for_names_the_client_behind_a_trusted_proxy() {
    let api = TestApi::spawn_with(memory_store(), |s| read_limited(s, "127.0.0.1")).await;
    assert_eq!(reads_until_limited(&api, Some("203.0.113.1")).await, 2);
    assert_eq!(
        reads_until_limited(&api, Some("203.0.113.2")).await,
        2,
        "another client, another budget"
    );
    // The right-most untrusted hop is the client: what came before it may be forged.
    assert_eq!(
        reads_until_limited(&api, Some("198.51.100.1, 203.0.113.2, 127.0.0.1")).await,
        0
    );
    // Without the header the proxy itself is the client.
    assert_eq!(reads_until_limited(&api, None).await, 2);
}

#[tokio::test]
async fn accepted_and_refused_payloads_are_counted_in_the_metrics() {
    let redis = TestRedis::start();
    let (store, _) = store(&redis);
    let api = TestApi::spawn_with(store, with_tokens).await;
    // Installs the process's recorder before anything is counted.
    let _ = api.client.get(api.url("/metrics")).send().await.unwrap();
    let (status, _, _) = post(&api, Some(TOKEN), Some(NDJSON), batch(0, 3)).await;
    assert_eq!(status, 202);
    let (status, _, _) = post(&api, None, Some(JSON), "{}").await;
    assert_eq!(status, 401);
    let metrics = api
        .client
        .get(api.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("chatstats_ingested_total"), "{metrics}");
    assert!(
        metrics.contains("chatstats_ingest_rejected_total{reason=\"unauthorized\"}"),
        "{metrics}"
    );
}

#[test]
fn bad_ingestion_settings_stop_the_process_naming_the_variable() {
    for (var, value) in [
        ("INGEST_RATE_LIMIT", "fast"),
        ("INGEST_RATE_LIMIT", "0/s"),
        ("INGEST_RATE_BURST", "0"),
        ("READ_RATE_LIMIT", "100/d"),
        ("READ_RATE_BURST", "many"),
        ("TRUSTED_PROXIES", "10.0.0.0/8,proxy.local"),
        ("INGEST_TOKENS", "ShortSecret1"),
    ] {
        let out = bin("chatstats-api").env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(var), "names {var}: {err}");
        if var == "INGEST_TOKENS" {
            assert!(!err.contains(value), "the token is not repeated: {err}");
        }
    }
    // Empty values are "not set", as in a `.env` template.
    let out = bin("chatstats-api")
        .env("INGEST_RATE_LIMIT", "")
        .env("READ_RATE_BURST", "")
        .env("TRUSTED_PROXIES", "")
        .env("INGEST_TOKENS", "")
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    // --help does not show the tokens' value from the environment.
    let out = bin("chatstats-api")
        .env("INGEST_TOKENS", TOKEN)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("INGEST_TOKENS"), "{help}");
    assert!(!help.contains(TOKEN), "{help}");
}

#[tokio::test]
async fn no_token_reaches_the_logs() {
    let redis = TestRedis::start();
    let wrong = "WrongProbeToken-00000000000000000";
    for format in ["pretty", "json"] {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let file = std::fs::File::create(&path).unwrap();
        let _api = Running(
            bin("chatstats-api")
                .env("REDIS_URL", redis.url())
                .env("REDIS_NAMESPACE", namespace())
                .env("INGEST_TOKENS", format!("{OTHER_TOKEN},{TOKEN}"))
                .env("INGEST_RATE_LIMIT", "1/m")
                .env("NODE_HOST", "127.0.0.1")
                .env("NODE_PORT", port.to_string())
                .env("RUST_LOG", "debug")
                .env("LOG_FORMAT", format)
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .unwrap(),
        );
        let url = format!("http://127.0.0.1:{port}/messages");
        let client = reqwest::Client::new();
        let send = |token: &'static str| {
            client
                .post(&url)
                .bearer_auth(token)
                .header("content-type", JSON)
                .body("{\"body\":\"hi\"}")
                .send()
        };
        eventually(Duration::from_secs(15), "the API to answer", || async {
            send(wrong).await.is_ok_and(|r| r.status() == 401)
        })
        .await;
        // Accepted, then over the rate limit.
        assert_eq!(send(TOKEN).await.unwrap().status(), 202);
        assert_eq!(send(TOKEN).await.unwrap().status(), 429);
        let read = || std::fs::read_to_string(&path).unwrap_or_default();
        eventually(
            Duration::from_secs(10),
            "the requests in the logs",
            || async { read().matches("finished processing request").count() >= 3 },
        )
        .await;
        let logs = read();
        for secret in [TOKEN, OTHER_TOKEN, wrong] {
            assert!(!logs.contains(secret), "{format}: {secret} in {logs}");
        }
    }
}
