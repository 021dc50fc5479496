//! Worker → Redis → API, end to end over HTTP, with upstreams that misbehave on purpose.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::helpers::*;

/// The multiple-messages fixture as a stream, cut in two at a line boundary.
fn fixture_halves() -> (Bytes, Bytes) {
    let mut text = std::fs::read_to_string(fixture("multiple-messages.txt")).unwrap();
    text.push('\n');
    let cut = text
        .match_indices("\nevent:")
        .nth(5)
        .map(|(i, _)| i + 1)
        .unwrap();
    (
        Bytes::from(text[..cut].to_owned()),
        Bytes::from(text[cut..].to_owned()),
    )
}

/// Polls the API until it answers exactly what expected.json says for multiple-messages.txt.
async fn assert_api_reaches_fixture_answers(api: &TestApi) {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let want = &expected["multiple-messages.txt"];
    eventually(
        Duration::from_secs(15),
        "the API to show the fixture's counts",
        || async {
            for path in ["/stats/words", "/stats/nicks", "/stats/rooms"] {
                if api.get(path).await.1 != want[path] {
                    return false;
                }
            }
            api.get("/stats/failedMessages")
                .await
                .1
                .as_array()
                .map(Vec::len)
                == want["/stats/failedMessages#len"]
                    .as_u64()
                    .map(|n| n as usize)
        },
    )
    .await;
    // Exact, not "at least": nothing was counted twice across reconnects.
    for path in ["/stats/words", "/stats/nicks", "/stats/rooms"] {
        assert_eq!(api.get(path).await.1, want[path], "{path}");
    }
}

/// A worker following `upstream` into a Redis of its own, and the API over that Redis.
async fn follow(
    upstream: &FakeUpstream,
    read_timeout: Duration,
) -> (TestRedis, TestApi, RunningWorker) {
    let redis = TestRedis::start();
    let store = redis.store();
    let api = TestApi::spawn(store.clone()).await;
    let source = http_source(upstream.url(), read_timeout);
    let run = RunningWorker::spawn(store, source, worker_settings(), Arc::default());
    (redis, api, run)
}

#[tokio::test]
async fn an_upstream_that_closes_mid_stream_then_answers_4xx_and_5xx_loses_nothing() {
    let (first, second) = fixture_halves();
    let mut cut_short = first.to_vec();
    cut_short.extend_from_slice(b"event: privmsg\nse-data: {\"body\":\"never compl");
    let upstream = FakeUpstream::start(vec![
        Behaviour::SendThenClose(cut_short.into()),
        Behaviour::Status(503),
        Behaviour::Status(404),
        Behaviour::Status(500),
        Behaviour::SendThenStall(second),
    ])
    .await;
    let (_redis, api, run) = follow(&upstream, Duration::from_secs(10)).await;

    assert_api_reaches_fixture_answers(&api).await;
    assert!(upstream.connections.load(Ordering::SeqCst) >= 5);
    let (_, words) = api.get("/stats/words?limit=1000").await;
    assert!(
        !words.to_string().contains("never"),
        "a partial line at a close is not a message"
    );
    assert!(!run.is_finished(), "a URL worker never stops by itself");
    let progress = run.stop().await.unwrap();
    assert_eq!(
        progress.recorded.load(Ordering::Relaxed),
        10,
        "the 10 well-formed messages, each once"
    );
}

#[tokio::test]
async fn a_stalled_upstream_is_detected_and_replaced() {
    let (first, second) = fixture_halves();
    let upstream = FakeUpstream::start(vec![
        Behaviour::SendThenStall(first),
        Behaviour::SendThenStall(second),
    ])
    .await;
    let (_redis, api, run) = follow(&upstream, Duration::from_millis(300)).await;

    assert_api_reaches_fixture_answers(&api).await;
    assert!(upstream.connections.load(Ordering::SeqCst) >= 2);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn an_upstream_that_refuses_connections_is_retried_until_it_serves() {
    // Reserve a port, release it, and only start serving there later.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let redis = TestRedis::start();
    let store = redis.store();
    let source = http_source(
        url::Url::parse(&format!("http://{address}/")).unwrap(),
        Duration::from_secs(5),
    );
    let attempts = source.attempts();
    let run = RunningWorker::spawn(store.clone(), source, worker_settings(), Arc::default());
    eventually(
        Duration::from_secs(10),
        "connections to be refused a few times",
        || async { attempts.load(Ordering::Relaxed) >= 3 },
    )
    .await;
    let (first, second) = fixture_halves();
    let mut all = first.to_vec();
    all.extend_from_slice(&second);
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let all = all.clone();
            async move { all }
        }),
    );
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let api = TestApi::spawn(store).await;
    // The upstream closes after each full send, so the worker reconnects and reads it again:
    // counts grow by whole copies of the fixture, never by partial ones.
    eventually(
        Duration::from_secs(10),
        "the first copy to be counted",
        || async {
            api.get("/stats/words?limit=1")
                .await
                .1
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
    )
    .await;
    run.stop().await.unwrap();
    let (_, words) = api.get("/stats/words?limit=1").await;
    let meubel = words[0]["MEUBEL"].as_u64().unwrap();
    assert_eq!(meubel % 3, 0, "whole copies only: {words}");
}
