//! The worker against Redis faults and in coalescing mode: totals stay exact.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chatstats::message::TopList;
use chatstats::source::file::FileSource;
use chatstats::store::Store;
use chatstats::worker::{self, WorkerSettings};
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
        .failed_messages()
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
) -> Arc<worker::Progress> {
    let source = FileSource::new("test input", Box::new(std::io::Cursor::new(input)), 1 << 20);
    worker::run(
        store.clone(),
        source,
        settings,
        Arc::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap()
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
    let progress = run_with(&coalesced, input, settings).await;
    assert_eq!(snapshot(&coalesced).await, snapshot(&expected).await);
    assert!(
        progress.calls.load(Ordering::Relaxed) < 100,
        "merged into few calls"
    );
}

/// Runs the worker on Redis over `input` while `fault` runs, then compares with the in-memory
/// result of the same input.
async fn exact_through<F, Fut>(input: Vec<u8>, fault: F)
where
    F: FnOnce(Arc<TestRedis>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let expected = memory_store();
    record_bytes(&expected, &input).await;
    let redis = Arc::new(TestRedis::start());
    let store = redis.store();
    let faults = tokio::spawn(fault(redis.clone()));
    let progress = run_with(&store, input, worker_settings()).await;
    faults.await.unwrap();
    assert_eq!(snapshot(&store).await, snapshot(&expected).await);
    assert!(
        progress.retries.load(Ordering::Relaxed) > 0,
        "the fault was felt"
    );
}

#[tokio::test]
async fn totals_are_exact_when_redis_connections_are_killed() {
    exact_through(stream(30_000), |redis| async move {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let _ = redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        }
    })
    .await;
}

#[tokio::test]
async fn totals_are_exact_when_redis_stalls_for_seconds() {
    exact_through(stream(30_000), |redis| async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let pid = redis.pid().to_string();
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap();
    })
    .await;
}
