//! Hostile input and lost state: each test reproduces a defect an outside adversarial run found
//! (a quadratic line, a lost watermark, connections that never end, junk answered with 200,
//! misleading errors) and holds the fix.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatstats::detail::{Period, Scope};
use chatstats::message::{Tally, TopList};
use chatstats::source::file::FileSource;
use chatstats::source::http::{HttpSettings, HttpSource};
use chatstats::store::{Mark, Store};
use chatstats::worker;

use crate::helpers::*;

/// One `data:` line whose body is about `bytes` long, of distinct words.
fn line_of_distinct_words(bytes: usize) -> Bytes {
    let mut body = String::with_capacity(bytes + 16);
    let mut i = 0u64;
    while body.len() < bytes {
        body.push_str(&format!("w{i:x} "));
        i += 1;
    }
    Bytes::from(format!(
        "data: {{\"room\":\"#r\",\"nick\":\"n\",\"body\":\"{body}\"}}\n"
    ))
}

#[tokio::test]
async fn sigterm_stops_a_worker_fed_megabyte_lines_of_distinct_words_within_10_s() {
    let redis = TestRedis::start();
    let upstream =
        FakeUpstream::start(vec![Behaviour::Endless(line_of_distinct_words(1 << 19))]).await;
    let ns = namespace();
    let mut child = Running(
        bin("chatstats-worker")
            .env("CHAT_INTERFACE_URL", upstream.url().as_str())
            .env("REDIS_URL", redis.url())
            .env("REDIS_NAMESPACE", &ns)
            .spawn()
            .unwrap(),
    );
    let store = redis.store_in(&ns);
    eventually(
        Duration::from_secs(30),
        "a huge line to be recorded",
        || async {
            store
                .top(TopList::Rooms, 1)
                .await
                .is_ok_and(|r| !r.is_empty())
        },
    )
    .await;
    let started = Instant::now();
    signal(&child.0, "TERM");
    let status = wait_with_deadline(&mut child.0, Duration::from_secs(10));
    assert!(started.elapsed() < Duration::from_secs(10));
    // Everything read is recorded (exit 0), or what was not is reported (exit 1): never hung.
    assert!(matches!(status.code(), Some(0 | 1)), "{status}");
}

/// Lines of words never seen before (10,000 each) fill a detail long before its 4,000
/// messages: it is sent at its entry cap and the reading waits, so the worker's memory stays
/// bounded (without the cap, these 30 lines took it to 165 MB) and every count is exact.
#[tokio::test]
async fn wide_lines_of_new_words_keep_a_full_workers_memory_bounded() {
    const LINES: usize = 30;
    const WORDS: usize = 10_000;
    let redis = TestRedis::start();
    let ns = namespace();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for line in 0..LINES {
        let body: Vec<String> = (0..WORDS).map(|k| format!("l{line}w{k}")).collect();
        let payload = serde_json::json!({"room": "#wide", "nick": "big", "body": body.join(" ")});
        writeln!(file, "data: {payload}").unwrap();
    }
    let file = file.into_temp_path();
    let mut child = bin("chatstats-worker")
        .env("RESPONSE_STREAM_MODE", "text")
        .env("CHAT_INTERFACE_URL", &file)
        .env("REDIS_URL", redis.url())
        .env("REDIS_NAMESPACE", &ns)
        .env("HISTORY_RETENTION", "0")
        .spawn()
        .unwrap();
    // The peak so far, read until the process ends (it only grows).
    let status_file = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not finish in time"
        );
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok());
            peak_kib = peak_kib.max(hwm.unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    eprintln!("worker peak RSS over {LINES} lines of {WORDS} new words: {peak_kib} KiB");
    assert!(peak_kib < 100 * 1024, "peak RSS {peak_kib} KiB");
    // The room's minutes of this hour are not folded into its all-time lists yet: each word,
    // said once, is in one of its word lists (all time or a minute).
    let keys = redis
        .cli(&["--raw", "KEYS", &format!("{ns}room:{{#wide}}:words*")])
        .unwrap();
    let distinct: usize = keys
        .lines()
        .filter(|k| !k.is_empty())
        .map(|k| {
            let card = redis.cli(&["--raw", "ZCARD", k]).unwrap();
            card.trim().parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(distinct, LINES * WORDS);
    let store = redis.store_in(&ns);
    let room = Scope::Room(Bytes::from_static(b"#wide"));
    let all = [Period::AllTime];
    let words = store.top_in(TopList::Words, &room, &all, 5).await.unwrap();
    assert_eq!(words.len(), 5);
    assert!(words.iter().all(|(_, n)| *n == 1));
    let nicks = store.top_in(TopList::Nicks, &room, &all, 10).await.unwrap();
    assert_eq!(nicks, vec![("big".to_owned(), LINES as u64)]);
}

#[tokio::test]
async fn a_lost_sequence_state_never_grows_a_key_per_message() {
    let redis = TestRedis::start();
    let ns = namespace();
    let store = redis.store_in(&ns);
    let tally = Tally {
        words: vec![("x".into(), 1)],
        ..Tally::default()
    };
    let mark = |seq| Mark {
        writer: "w".into(),
        seq,
        window: 16,
    };
    for seq in 1..=10 {
        assert!(store.apply(&tally, Some(&mark(seq))).await.unwrap());
    }
    // Redis forgets the writer (a restart without persistence, eviction, expiry).
    redis.cli(&["DEL", &format!("{ns}writer:w")]).unwrap();
    for seq in 11..=3000 {
        assert!(store.apply(&tally, Some(&mark(seq))).await.unwrap());
    }
    let keys = redis.cli(&["KEYS", &format!("{ns}writer*")]).unwrap();
    assert_eq!(keys.lines().count(), 1, "one key per writer: {keys}");
    let size = redis.cli(&["STRLEN", &format!("{ns}writer:w")]).unwrap();
    assert!(
        size.trim()
            .trim_start_matches("(integer) ")
            .parse::<u64>()
            .unwrap()
            <= 8 + 2,
        "fixed size: {size}"
    );
    // Retries are still recognised: an old number, a recent one; a new one applies.
    assert!(!store.apply(&tally, Some(&mark(5))).await.unwrap());
    assert!(!store.apply(&tally, Some(&mark(2995))).await.unwrap());
    assert!(store.apply(&tally, Some(&mark(3001))).await.unwrap());
    assert_eq!(
        store.top(TopList::Words, 1).await.unwrap(),
        vec![("x".to_owned(), 3001)]
    );
}

#[tokio::test]
async fn a_redis_restart_without_persistence_leaves_only_fixed_size_writer_keys() {
    let redis = Arc::new(TestRedis::start());
    let ns = namespace();
    let store = redis.store_in(&ns);
    let input: String = (0..40_000)
        .map(|i| {
            format!(
                "data: {{\"room\":\"#r{}\",\"nick\":\"n\",\"body\":\"a b\"}}\n",
                i % 7
            )
        })
        .collect();
    let progress = Arc::new(worker::Progress::default());
    let source = FileSource::new("test", Box::new(std::io::Cursor::new(input)), 1 << 20);
    let run = RunningWorker::spawn(store, source, worker_settings(), progress.clone());
    eventually(Duration::from_secs(30), "a third of the input", || async {
        progress.recorded.load(Ordering::Relaxed) > 13_000
    })
    .await;
    redis.restart();
    eventually(Duration::from_secs(60), "the rest of the input", || async {
        run.is_finished()
    })
    .await;
    run.stop().await.unwrap();
    let keys = redis.cli(&["KEYS", &format!("{ns}writer*")]).unwrap();
    assert_eq!(keys.lines().count(), 1, "{keys}");
    let key = keys
        .lines()
        .next()
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap()
        .to_owned();
    let size = redis.cli(&["STRLEN", &key]).unwrap();
    let size: u64 = size
        .trim()
        .trim_start_matches("(integer) ")
        .parse()
        .unwrap();
    assert!(size <= 8 + 128 / 8, "{size} bytes");
}

#[tokio::test]
async fn a_client_that_sends_half_a_request_or_nothing_is_disconnected() {
    let api = TestApi::spawn_with(memory_store(), |s| {
        s.idle_timeout = Duration::from_millis(300)
    })
    .await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for sent in [&b"GET / HTTP/1.1\r\nHost: x\r\n"[..], b""] {
        let mut socket = tokio::net::TcpStream::connect(api.address).await.unwrap();
        socket.write_all(sent).await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest));
        assert!(
            closed.await.is_ok(),
            "after sending {sent:?}: closed by the server within 5 s"
        );
    }
}

#[tokio::test]
async fn sigterm_stops_the_api_within_10_s_while_a_client_holds_half_a_request() {
    let redis = TestRedis::start();
    let port = free_port();
    let mut child = Running(
        bin("chatstats-api")
            .env("NODE_HOST", "127.0.0.1")
            .env("NODE_PORT", port.to_string())
            .env("REDIS_URL", redis.url())
            .env("HTTP_IDLE_TIMEOUT_MS", "3600000")
            .spawn()
            .unwrap(),
    );
    let root = format!("http://127.0.0.1:{port}/");
    eventually(Duration::from_secs(15), "the API to answer", || async {
        reqwest::get(&root).await.is_ok()
    })
    .await;
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let busy = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = Instant::now();
    signal(&child.0, "TERM");
    let status = wait_with_deadline(&mut child.0, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(busy);
}

#[tokio::test]
async fn silent_sockets_beyond_the_open_file_limit_do_not_stop_the_healthcheck() {
    let redis = TestRedis::start();
    let port = free_port();
    let api = std::env!("CARGO_BIN_EXE_chatstats-api");
    let _child = Running(
        bin("sh")
            .args(["-c", &format!("ulimit -n 256 && exec '{api}'")])
            .env("NODE_HOST", "127.0.0.1")
            .env("NODE_PORT", port.to_string())
            .env("REDIS_URL", redis.url())
            .spawn()
            .unwrap(),
    );
    let health = format!("http://127.0.0.1:{port}/healthcheck");
    eventually(Duration::from_secs(15), "the API to answer", || async {
        reqwest::get(&health).await.is_ok()
    })
    .await;
    // Many more silent connections than the process may have files open.
    let silent: Vec<TcpStream> = (0..600)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(silent.len() > 300, "{} connected", silent.len());
    healthcheck_answers(&health).await;
    drop(silent);
}

/// Waits up to 10 s for `health` (a `/healthcheck` URL) to answer 200, each try within 2 s.
async fn healthcheck_answers(health: &str) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "/healthcheck to answer 200",
        || async {
            client
                .get(health)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
}

#[tokio::test]
async fn unread_live_feeds_at_the_connection_cap_do_not_stop_the_healthcheck() {
    const CAP: usize = 20;
    let api = TestApi::spawn_with(memory_store(), |s| s.max_connections = CAP).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // As many feeds as the cap allows, each read up to its first bytes, then never again.
    let mut feeds = Vec::new();
    for _ in 0..CAP {
        let mut socket = tokio::net::TcpStream::connect(api.address).await.unwrap();
        socket
            .write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut head))
            .await
            .expect("the feed answers")
            .unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        feeds.push(socket);
    }
    let health = format!("http://{}/healthcheck", api.address);
    for _ in 0..3 {
        healthcheck_answers(&health).await;
    }
    drop(feeds);
}

#[tokio::test]
async fn websockets_count_toward_the_connection_cap() {
    use futures::StreamExt;
    const CAP: usize = 10;
    let api = TestApi::spawn_with(memory_store(), |s| s.max_connections = CAP).await;
    let url = format!("ws://{}/ws", api.address);
    let mut sockets = Vec::new();
    for _ in 0..3 * CAP {
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("a WebSocket");
        sockets.push(socket);
    }
    // Each new one closed an older one, saying why (1013): at most CAP are still open.
    let (mut open, mut told) = (0, 0);
    for mut socket in sockets {
        let closed = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match socket.next().await {
                    Some(Ok(frame)) if !frame.is_close() => continue,
                    Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(close)))) => {
                        return u16::from(close.code) == 1013;
                    }
                    _ => return false,
                }
            }
        });
        match closed.await {
            Err(_) => open += 1,
            Ok(said_why) => told += usize::from(said_why),
        }
    }
    assert!(told > 0, "no WebSocket was told why it was closed");
    assert!(open <= CAP, "{open} WebSockets open at a cap of {CAP}");
    let (status, _) = api.get("/healthcheck").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_upstream_answering_an_html_page_is_retried_ever_more_slowly() {
    let page =
        Bytes::from_static(b"<!DOCTYPE html>\n<html><body>Down for maintenance</body></html>\n");
    let upstream = FakeUpstream::start(vec![Behaviour::Respond(
        vec![("content-type", "text/html; charset=utf-8")],
        page,
    )])
    .await;
    let source = HttpSource::new(HttpSettings {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_secs(5),
        ..http_settings(upstream.url(), Duration::from_secs(5))
    });
    let attempts = source.attempts();
    let store = memory_store();
    let started = Instant::now();
    let run = RunningWorker::spawn(store.clone(), source, worker_settings(), Arc::default());
    eventually(
        Duration::from_secs(30),
        "six connection attempts",
        || async { attempts.load(Ordering::Relaxed) >= 6 },
    )
    .await;
    // Delays of attempts 1..5 are at least 25, 50, 100, 200 and 400 ms (jitter keeps the upper
    // half); a reset after each page would keep them near 50 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(775),
        "{:?}",
        started.elapsed()
    );
    run.stop().await.unwrap();
    assert_eq!(store.failed_total().await.unwrap(), 0);
}

#[tokio::test]
async fn a_gzip_encoded_stream_is_decoded() {
    use flate2::write::GzEncoder;
    let mut gzip = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&std::fs::read(fixture("multiple-messages.txt")).unwrap())
        .unwrap();
    let body = Bytes::from(gzip.finish().unwrap());
    let upstream = FakeUpstream::start(vec![
        Behaviour::Respond(vec![("content-encoding", "gzip")], body),
        Behaviour::SendThenStall(Bytes::new()),
    ])
    .await;
    let store = memory_store();
    let source = http_source(upstream.url(), Duration::from_secs(30));
    let run = RunningWorker::spawn(store.clone(), source, worker_settings(), Arc::default());
    eventually(Duration::from_secs(10), "the decoded events", || async {
        store.top(TopList::Words, 1).await.unwrap() == vec![("MEUBEL".to_owned(), 3)]
    })
    .await;
    run.stop().await.unwrap();
    let plain = memory_store();
    record_bytes(
        &plain,
        &std::fs::read(fixture("multiple-messages.txt")).unwrap(),
    )
    .await;
    assert_eq!(
        store.failed_total().await.unwrap(),
        plain.failed_total().await.unwrap()
    );
}

#[tokio::test]
async fn an_over_long_line_cut_off_by_a_close_is_never_a_failed_message() {
    let mut cut = b"data: ".to_vec();
    cut.extend(std::iter::repeat_n(b'x', 50_000));
    let upstream = FakeUpstream::start(vec![Behaviour::SendThenClose(Bytes::from(cut))]).await;
    let source = HttpSource::new(HttpSettings {
        line_cap: 16 * 1024,
        ..http_settings(upstream.url(), Duration::from_secs(5))
    });
    let attempts = source.attempts();
    let store = memory_store();
    let run = RunningWorker::spawn(store.clone(), source, worker_settings(), Arc::default());
    eventually(Duration::from_secs(20), "four connections", || async {
        attempts.load(Ordering::Relaxed) >= 4
    })
    .await;
    run.stop().await.unwrap();
    assert_eq!(store.failed_total().await.unwrap(), 0);
}

/// A standalone URL given a node of a Redis Cluster: every call says which URL to give,
/// instead of timing out on redirections or failing on `CROSSSLOT` without a word.
#[tokio::test]
async fn a_cluster_node_behind_a_standalone_url_is_reported_as_such() {
    let redis = TestRedis::start_with(&["--appendonly", "no", "--cluster-enabled", "yes"]);
    let ns = namespace();
    let store = redis.store_in(&ns);
    let api = TestApi::spawn(store.clone()).await;
    eventually(
        Duration::from_secs(10),
        "a 503 naming the URL to give",
        || async {
            let (status, body) = api.get("/healthcheck").await;
            let reason = body["redisStatus"].as_str().unwrap_or_default().to_owned();
            status == 503 && reason.contains("redis-cluster://")
        },
    )
    .await;
    let (status, body) = api.get("/stats/words").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("node of a Redis Cluster"),
        "{body}"
    );
    let err = store
        .apply(
            &Tally::from_payload(
                &Bytes::from_static(br##"{"room":"#r","nick":"n","body":"hi"}"##),
                1,
                64,
            ),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("redis-cluster://"), "{err}");
}

#[tokio::test]
async fn a_wrong_redis_password_is_reported_as_such() {
    let redis = TestRedis::start_with(&["--appendonly", "no", "--requirepass", "right-pass"]);
    let store =
        chatstats::store::redis::RedisStore::connect(chatstats::store::redis::RedisSettings {
            url: chatstats::telemetry::SecretUrl::parse(&format!(
                "redis://:wrong-pass@127.0.0.1:{}",
                redis.port
            ))
            .unwrap(),
            ..redis_settings(&redis)
        })
        .unwrap();
    let api = TestApi::spawn(store).await;
    eventually(
        Duration::from_secs(10),
        "a 503 naming the password",
        || async {
            let (status, body) = api.get("/healthcheck").await;
            let reason = body["redisStatus"].as_str().unwrap_or_default().to_owned();
            status == 503 && (reason.contains("WRONGPASS") || reason.contains("authentication"))
        },
    )
    .await;
    let (_, body) = api.get("/healthcheck").await;
    assert!(!body.to_string().contains("wrong-pass"), "{body}");
    // A route that needs the store says so too (while the client knows it is not connected:
    // it connects again and again, and fails each time), and no more.
    eventually(
        Duration::from_secs(10),
        "a 503 naming the cause",
        || async {
            let (status, body) = api.get("/stats/words").await;
            let message = body["message"].as_str().unwrap_or_default().to_owned();
            assert!(!message.contains("wrong-pass"), "{body}");
            status == 503
                && message.contains("cannot reach Redis")
                && (message.contains("WRONGPASS") || message.contains("authentication"))
        },
    )
    .await;
}

#[tokio::test]
async fn a_refused_redis_connection_is_reported_as_refused() {
    let store = unreachable_store(Duration::from_millis(500));
    let api = TestApi::spawn(store).await;
    eventually(Duration::from_secs(10), "a 503 saying refused", || async {
        let (status, body) = api.get("/healthcheck").await;
        status == 503
            && body["redisStatus"]
                .as_str()
                .is_some_and(|r| r.contains("refused"))
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "a 503 naming the cause",
        || async {
            let (status, body) = api.get("/stats/words?window=1h").await;
            let message = body["message"].as_str().unwrap_or_default().to_owned();
            status == 503 && message.contains("cannot reach Redis (") && message.contains("refused")
        },
    )
    .await;
}

#[tokio::test]
async fn unknown_documentation_paths_answer_in_the_error_shape() {
    let api = TestApi::spawn(memory_store()).await;
    let (status, body) = api.get("/documentation/nope.js").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        serde_json::json!({"statusCode": 404, "error": "Not Found", "message": "Route GET:/documentation/nope.js not found"})
    );
}
