//! The worker against Redis faults and in coalescing mode: totals stay exact.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chatstats::message::TopList;
use chatstats::source::file::FileSource;
use chatstats::store::Store;
use chatstats::worker::{self, WorkerSettings};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// A deterministic stream of `n` messages with repeated words, nicks and rooms, and some
/// failed payloads.
fn stream(n: usize) -> Vec<u8> {
    let mut out = String::new();
    let mut x: u64 = 12345;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..n {
        if i % 97 == 0 {
            out.push_str(&format!("data: {{\"broken\": {}\n", i % 5));
            continue;
        }
        let words: Vec<String> = (0..1 + next() % 8)
            .map(|_| format!("w{}", next() % (1 + next() % 300)))
            .collect();
        out.push_str(&format!(
            "event: privmsg\nse-data: {{\"room\":\"#r{}\",\"nick\":\"n{}\",\"body\":\"{}\"}}\n\n",
            next() % 20,
            next() % 50,
            words.join(" ")
        ));
    }
    out.into_bytes()
}

async fn snapshot<S: Store>(store: &S) -> Vec<Vec<(String, u64)>> {
    let mut lists = Vec::new();
    for list in TopList::ALL {
        lists.push(store.top(list, 1000).await.unwrap());
    }
    let mut failed: Vec<(String, u64)> = store
        .failed_messages(None)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f, 0))
        .collect();
    failed.sort();
    lists.push(failed);
    lists.push(vec![(
        "failed total".to_owned(),
        store.failed_total().await.unwrap(),
    )]);
    lists
}

async fn run_with<S: Store>(
    store: &S,
    input: Vec<u8>,
    settings: WorkerSettings,
    progress: Arc<worker::Progress>,
) -> Arc<worker::Progress> {
    let source = FileSource::new("test input", Box::new(std::io::Cursor::new(input)), 1 << 20);
    worker::run(
        store.clone(),
        source,
        settings,
        progress,
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

/// Waits until the worker has recorded more than `n` messages (faults strike mid-run).
async fn until_recorded(progress: &worker::Progress, n: u64) {
    eventually(
        Duration::from_secs(20),
        "the worker to get that far",
        || async { progress.recorded.load(Ordering::Relaxed) > n },
    )
    .await;
}

#[tokio::test]
async fn coalescing_mode_gives_exactly_the_same_statistics() {
    let input = stream(5000);
    let expected = memory_store();
    record_bytes(&expected, &input).await;
    let redis = TestRedis::start();
    let coalesced = redis.store();
    let settings = WorkerSettings {
        flush_interval: Some(Duration::from_millis(5)),
        flush_max_messages: 700,
        ..worker_settings()
    };
    let progress = run_with(&coalesced, input, settings, Arc::default()).await;
    assert_eq!(snapshot(&coalesced).await, snapshot(&expected).await);
    assert!(
        progress.calls.load(Ordering::Relaxed) < 100,
        "merged into few calls"
    );
}

/// Runs the worker on Redis over `input` while `fault` runs, then compares with the in-memory
/// result of the same input.
async fn exact_through<F, Fut>(redis: TestRedis, input: Vec<u8>, fault: F)
where
    F: FnOnce(Arc<TestRedis>, Arc<worker::Progress>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let expected = memory_store();
    record_bytes(&expected, &input).await;
    let redis = Arc::new(redis);
    let store = redis.store();
    let progress = Arc::new(worker::Progress::default());
    let faults = tokio::spawn(fault(redis.clone(), progress.clone()));
    let progress = run_with(&store, input, worker_settings(), progress).await;
    faults.await.unwrap();
    assert_eq!(snapshot(&store).await, snapshot(&expected).await);
    assert!(
        progress.retries.load(Ordering::Relaxed) > 0,
        "the fault was felt"
    );
}

#[tokio::test]
async fn totals_are_exact_when_redis_connections_are_killed() {
    exact_through(
        TestRedis::start(),
        stream(30_000),
        |redis, progress| async move {
            for k in 1..=5 {
                until_recorded(&progress, k * 4000).await;
                let _ = redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
            }
        },
    )
    .await;
}

#[tokio::test]
async fn totals_are_exact_when_redis_stalls_for_seconds() {
    exact_through(
        TestRedis::start(),
        stream(30_000),
        |redis, progress| async move {
            until_recorded(&progress, 3000).await;
            redis.signal("STOP");
            tokio::time::sleep(Duration::from_secs(3)).await; // the outage itself
            redis.signal("CONT");
        },
    )
    .await;
}

#[tokio::test]
async fn totals_are_exact_across_a_redis_restart_with_persistence() {
    let redis = TestRedis::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    exact_through(redis, stream(30_000), |redis, progress| async move {
        until_recorded(&progress, 3000).await;
        tokio::task::spawn_blocking(move || redis.restart())
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn hostile_upstream_bytes_are_survived_and_complete_payloads_counted_exactly() {
    use bytes::Bytes;
    let mut first = Vec::new();
    first.extend_from_slice(
        b"event: privmsg\nse-data: {\"room\":\"#a\",\"nick\":\"n\",\"body\":\"alpha\"}\n\n",
    );
    first.extend_from_slice(b"\x00\x01\xfe\xff garbage that is no field\r\n");
    first.extend_from_slice(b"data: {\"body\":\"\xff\xfe not utf-8\"}\n");
    first.extend_from_slice(b"se-data: ");
    first.extend(std::iter::repeat_n(b'x', 3 << 20));
    first.extend_from_slice(b"\n");
    first.extend_from_slice(b"{\"room\":\"#a\",\"nick\":\"m\",\"body\":\"beta\"}\n");
    first.extend_from_slice(b"event: privmsg\nse-data: {\"room\":\"#a\",\"body\":\"cut at the cl");
    let second = Bytes::from_static(b"data: {\"room\":\"#b\",\"nick\":\"n\",\"body\":\"gamma\"}\n");
    let upstream = FakeUpstream::start(vec![
        Behaviour::SendThenClose(first.into()),
        Behaviour::SendThenStall(second),
    ])
    .await;
    let redis = TestRedis::start();
    let store = redis.store();
    let run = RunningWorker::spawn(
        store.clone(),
        http_source(upstream.url(), Duration::from_secs(10)),
        worker_settings(),
        Arc::default(),
    );
    until_members(&store, TopList::Words, 3).await;
    let progress = run.stop().await.unwrap();
    let mut words = store.top(TopList::Words, 10).await.unwrap();
    words.sort();
    assert_eq!(
        words,
        vec![
            ("alpha".to_owned(), 1),
            ("beta".to_owned(), 1),
            ("gamma".to_owned(), 1)
        ]
    );
    assert_eq!(
        store.top(TopList::Rooms, 10).await.unwrap(),
        vec![("#a".to_owned(), 2), ("#b".to_owned(), 1)]
    );
    assert_eq!(
        store.failed_total().await.unwrap(),
        2,
        "invalid UTF-8 and the over-long line"
    );
    let failed = store.failed_messages(None).await.unwrap();
    assert!(
        failed.iter().all(|f| f.len() <= 4096),
        "kept payloads are cut"
    );
    assert_eq!(progress.recorded.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn while_redis_is_stalled_the_worker_stops_reading_the_upstream() {
    use std::sync::atomic::AtomicU64;
    let chunk = bytes::Bytes::from(stream(2000));
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let (chunk, counter) = (chunk.clone(), counter.clone());
            let endless = futures::stream::repeat(()).map(move |_| {
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Ok::<_, std::io::Error>(chunk.clone())
            });
            async move { axum::body::Body::from_stream(endless) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let redis = TestRedis::start();
    let store = redis.store();
    let progress = Arc::new(worker::Progress::default());
    // Production retry delays: recovery must not crawl once Redis is back. The drain at the
    // end gets longer than production's 8 s: a debug build among the whole suite drains the
    // messages read meanwhile at a few hundred per second.
    let worker_settings = WorkerSettings {
        progress_interval: Duration::ZERO,
        shutdown_timeout: Duration::from_secs(30),
        ..WorkerSettings::default()
    };
    let run = RunningWorker::spawn(
        store.clone(),
        http_source(url, Duration::from_secs(30)),
        worker_settings,
        progress.clone(),
    );
    eventually(Duration::from_secs(10), "recording to start", || async {
        progress.recorded.load(Ordering::Relaxed) > 1000
    })
    .await;
    redis.signal("STOP");
    // Let the window, the queue and the socket buffers fill, then check nothing more is read.
    let mut last = sent.load(Ordering::Relaxed);
    let mut steady = 0;
    eventually(
        Duration::from_secs(20),
        "reading from the upstream to stop",
        || {
            let now = sent.load(Ordering::Relaxed);
            steady = if now == last { steady + 1 } else { 0 };
            last = now;
            async move { steady >= 25 }
        },
    )
    .await;
    let read_while_stalled = progress.read.load(Ordering::Relaxed);
    redis.signal("CONT");
    // 20,000 messages: a crawl (one retry delay per message or per window) would take minutes;
    // the deadline leaves room for a debug build on a busy machine.
    eventually(
        Duration::from_secs(20),
        "recording to resume at full speed",
        || async { progress.recorded.load(Ordering::Relaxed) > read_while_stalled + 20_000 },
    )
    .await;
    // Within the drain's own deadline (above), not the 10 s of an idle worker: 7–9 s here
    // alone, more among the whole suite.
    run.stop_within(Duration::from_secs(35)).await.unwrap();
    let read = progress.read.load(Ordering::Relaxed);
    let done = progress.recorded.load(Ordering::Relaxed) + progress.failed.load(Ordering::Relaxed);
    assert_eq!(read, done, "everything read was recorded before exit");
}

#[tokio::test]
async fn shutdown_during_an_outage_reports_what_could_not_be_recorded() {
    let redis = TestRedis::start();
    let store = redis.store();
    redis.signal("STOP");
    let source = FileSource::new(
        "test input",
        Box::new(std::io::Cursor::new(stream(500))),
        1 << 20,
    );
    let progress = Arc::new(worker::Progress::default());
    let run = RunningWorker::spawn(store, source, worker_settings(), progress.clone());
    // Shut down once calls have failed, i.e. while the worker is retrying.
    eventually(Duration::from_secs(10), "store calls to fail", || async {
        progress.retries.load(Ordering::Relaxed) > 0
    })
    .await;
    let started = std::time::Instant::now();
    let outcome = run.stop().await;
    redis.signal("CONT");
    match outcome {
        Err(worker::WorkerError::Unrecorded { unrecorded, .. }) => {
            // One count, consistent with what was read: every message of the input is either
            // recorded or reported (the whole input fits one read).
            let recorded =
                progress.recorded.load(Ordering::Relaxed) + progress.failed.load(Ordering::Relaxed);
            assert_eq!(unrecorded + recorded, 500, "{unrecorded} + {recorded}")
        }
        other => panic!("expected an unrecorded report, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Serves `app` on a free loopback port; returns its address.
async fn serve_on_loopback(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// An upstream answering `path` with a 302 to `location`.
fn redirecting(path: &str, location: String) -> axum::Router {
    axum::Router::new().route(
        path,
        axum::routing::get(move || {
            let location = location.clone();
            async move {
                (
                    axum::http::StatusCode::FOUND,
                    [(axum::http::header::LOCATION, location)],
                )
            }
        }),
    )
}

/// Reads `url` with an HTTP source, in a task of its own, until aborted; the source's
/// connection attempts so far are readable from the counter returned.
fn keep_reading(
    url: url::Url,
) -> (
    tokio::task::JoinHandle<()>,
    Arc<std::sync::atomic::AtomicU64>,
) {
    use chatstats::source::Source;
    let mut source = http_source(url, Duration::from_secs(5));
    let attempts = source.attempts();
    let reading = tokio::spawn(async move {
        let mut out = Vec::new();
        loop {
            let _ = source.read(&mut out).await;
        }
    });
    (reading, attempts)
}

/// An upstream that redirects to a URL with credentials is not followed there (the HTTP
/// client's debug log would show them as it connects): the worker reconnects to the URL it
/// was given instead.
#[tokio::test]
async fn a_redirect_to_a_url_with_credentials_is_not_followed() {
    use std::sync::atomic::AtomicU64;

    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let target = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            async { "" }
        }),
    );
    let target = serve_on_loopback(target).await;
    let upstream =
        serve_on_loopback(redirecting("/", format!("http://user:s3cret@{target}/"))).await;
    let (reading, attempts) =
        keep_reading(url::Url::parse(&format!("http://{upstream}/")).unwrap());
    eventually(
        Duration::from_secs(20),
        "a second connection attempt",
        || {
            let attempts = attempts.clone();
            async move { attempts.load(Ordering::Relaxed) >= 2 }
        },
    )
    .await;
    reading.abort();
    assert_eq!(hits.load(Ordering::Relaxed), 0, "the redirect was followed");
}

/// A plain redirect is followed, but the upstream URL (its query may hold a key) is not sent
/// on as `Referer`.
#[tokio::test]
async fn a_followed_redirect_does_not_carry_the_upstream_url_as_referer() {
    let referers = Arc::new(std::sync::Mutex::new(Vec::<Option<String>>::new()));
    let seen = referers.clone();
    let target = axum::Router::new().route(
        "/",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let referer = headers
                .get("referer")
                .map(|v| v.to_str().unwrap_or("?").to_owned());
            seen.lock().unwrap().push(referer);
            async { "" }
        }),
    );
    let target = serve_on_loopback(target).await;
    let upstream = serve_on_loopback(redirecting("/start", format!("http://{target}/"))).await;
    let url = url::Url::parse(&format!("http://{upstream}/start?key=s3cret")).unwrap();
    let (reading, _) = keep_reading(url);
    eventually(
        Duration::from_secs(20),
        "the redirect to be followed",
        || {
            let referers = referers.clone();
            async move { !referers.lock().unwrap().is_empty() }
        },
    )
    .await;
    reading.abort();
    assert_eq!(referers.lock().unwrap()[0], None, "a Referer was sent");
}
