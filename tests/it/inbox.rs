//! The inbox consumed by workers (`CHAT_INTERFACE_URL=inbox`): exactly once through a retried
//! call, a stalled consumer whose entries were claimed, and three worker processes of which
//! one is killed and one stalled mid-run.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use chatstats::detail::Detail;
use chatstats::message::{Tally, TopList};
use chatstats::store::Store;
use chatstats::store::redis::RedisStore;

use crate::helpers::*;

/// `n` payloads: nick `u{i % 37}`, room `#r{i % 5}`, a body of three words.
fn payloads(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            let json = serde_json::json!({
                "command": "", "room": format!("#r{}", i % 5), "nick": format!("u{}", i % 37),
                "target": "", "body": format!("hello w{} again", i % 11),
                "tags": format!("id=in-{i};emotes="),
            });
            Bytes::from(json.to_string())
        })
        .collect()
}

/// A text-mode upstream file of `payloads`, one `data:` line each.
fn upstream_file(payloads: &[Bytes]) -> tempfile::TempPath {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for payload in payloads {
        std::io::Write::write_all(&mut file, b"data: ").unwrap();
        std::io::Write::write_all(&mut file, payload).unwrap();
        std::io::Write::write_all(&mut file, b"\n").unwrap();
    }
    file.into_temp_path()
}

/// What `payloads(n)` must give: nick → messages.
fn expected_nicks(n: usize) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for i in 0..n {
        *out.entry(format!("u{}", i % 37)).or_default() += 1;
    }
    out
}

async fn nicks(store: &RedisStore) -> BTreeMap<String, u64> {
    store
        .top(TopList::Nicks, 1000)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn tally_of(entries: &[chatstats::store::redis::InboxEntry]) -> Tally {
    let mut builder = chatstats::message::TallyBuilder::default();
    for entry in entries {
        let payload = entry.payload.clone().unwrap();
        builder.add(Tally::from_payload(&payload, 1, 4096));
    }
    builder.take()
}

#[tokio::test]
async fn a_retried_call_and_a_stalled_consumer_apply_nothing_twice() {
    let redis = TestRedis::start();
    let ns = namespace();
    let store = redis.store_in(&ns);
    store.inbox_group().await.unwrap();
    store.append_inbox(&payloads(10), None).await.unwrap();

    // Consumer a reads the ten entries, then stalls; b takes them over.
    let read = store.inbox_read("a", 100, 10).await.unwrap();
    assert_eq!(read.len(), 10);
    let claimed = store.inbox_claim("b", 0, 100).await.unwrap();
    assert_eq!(claimed.len(), 10, "b takes over what a left pending");
    let ids: Vec<String> = read.iter().map(|e| e.id.clone()).collect();
    let tally = tally_of(&read);
    let none = Detail::default();
    assert!(
        !store.inbox_apply("a", &ids, &tally, &none).await.unwrap(),
        "a's entries are b's now: a applies nothing"
    );
    assert!(store.inbox_apply("b", &ids, &tally, &none).await.unwrap());
    assert!(
        !store.inbox_apply("b", &ids, &tally, &none).await.unwrap(),
        "the same call again (a lost reply retried) applies nothing"
    );
    assert_eq!(nicks(&store).await, expected_nicks(10));
    assert_eq!(backlog(&redis, &ns), (0, 0), "acknowledged and deleted");
}

#[tokio::test]
async fn on_redis_cluster_a_batch_and_the_entries_taken_over_from_it_apply_once() {
    let Some(cluster) = crate::cluster::TestCluster::shared() else {
        return;
    };
    let none = Detail::default();
    for applied_first in ["a", "b"] {
        let store = cluster.store();
        store.inbox_group().await.unwrap();
        store.append_inbox(&payloads(10), None).await.unwrap();
        // Consumer a reads the ten entries, then stalls; b takes them over.
        let read = store.inbox_read("a", 100, 10).await.unwrap();
        assert_eq!(read.len(), 10);
        let claimed = store.inbox_claim("b", 0, 100).await.unwrap();
        assert_eq!(claimed.len(), 10, "b takes over what a left pending");
        let ids: Vec<String> = read.iter().map(|e| e.id.clone()).collect();
        let tally = tally_of(&read);
        let batch = || store.inbox_apply("a", &ids, &tally, &none);
        let take_over = || async {
            for entry in &claimed {
                let tally = tally_of(std::slice::from_ref(entry));
                assert!(
                    store
                        .inbox_take_over("b", &entry.id, &tally, &none)
                        .await
                        .unwrap(),
                    "b acknowledges what it took over"
                );
            }
        };
        if applied_first == "a" {
            // a's shards apply its batch (they cannot see the inbox), but a cannot
            // acknowledge it; b then finds every entry applied and only acknowledges.
            assert!(!batch().await.unwrap(), "a's entries are b's now");
            take_over().await;
        } else {
            // b applies the entries one by one first; a's late batch overlaps and applies
            // nothing.
            take_over().await;
            assert!(!batch().await.unwrap(), "a's entries were b's");
        }
        assert_eq!(
            nicks(&store).await,
            expected_nicks(10),
            "{applied_first} first"
        );
        assert_eq!(backlog_of(&store).await, (0, 0), "acknowledged and deleted");
    }
}

fn inbox_worker(redis: &TestRedis, ns: &str) -> Running {
    inbox_worker_at(&redis.url(), ns)
}

/// An inbox worker process on the Redis (or Redis Cluster) at `url`.
fn inbox_worker_at(url: &str, ns: &str) -> Running {
    Running(
        bin("chatstats-worker")
            .env("CHAT_INTERFACE_URL", "inbox")
            .env("REDIS_URL", url)
            .env("REDIS_NAMESPACE", ns)
            .env("INBOX_BATCH", "50")
            .env("INBOX_CLAIM_IDLE_MS", "1000")
            .env("STATISTICS", "full")
            .spawn()
            .unwrap(),
    )
}

/// Entries still in the inbox, and entries read but not acknowledged.
fn backlog(redis: &TestRedis, ns: &str) -> (u64, u64) {
    let key = format!("{ns}inbox");
    // `(integer) 12`, or `1) (integer) 12` for the first line of XPENDING's summary.
    let number = |text: Option<String>| {
        text.and_then(|t| t.split_whitespace().last().and_then(|w| w.parse().ok()))
            .unwrap_or(u64::MAX)
    };
    let len = number(redis.cli(&["XLEN", &key]));
    let pending = redis
        .cli(&["XPENDING", &key, "chatstats"])
        .map(|t| t.lines().next().unwrap_or("").to_owned());
    (len, number(pending))
}

/// Entries still in the inbox, and entries read but not acknowledged, asked through `store`
/// (on Redis Cluster the inbox is in the home shard).
async fn backlog_of(store: &RedisStore) -> (u64, u64) {
    use fred::interfaces::StreamsInterface;
    let key = format!("{}inbox", store.namespaces()[0]);
    let len: u64 = store.client().xlen(&key).await.unwrap_or(u64::MAX);
    let summary: fred::types::Value = store
        .client()
        .xpending(&key, "chatstats", ())
        .await
        .unwrap_or(fred::types::Value::Null);
    let pending = match summary {
        fred::types::Value::Array(parts) => parts
            .first()
            .and_then(fred::types::Value::as_u64)
            .unwrap_or(u64::MAX),
        _ => u64::MAX,
    };
    (len, pending)
}

#[tokio::test]
async fn three_workers_one_killed_and_one_stalled_give_exact_totals() {
    let redis = TestRedis::start();
    three_workers_one_killed_and_one_stalled(&redis.url(), redis.store_in(&namespace())).await;
}

#[tokio::test]
async fn on_redis_cluster_three_workers_one_killed_and_one_stalled_give_exact_totals() {
    let Some(cluster) = crate::cluster::TestCluster::shared() else {
        return;
    };
    three_workers_one_killed_and_one_stalled(&cluster.url(), cluster.store()).await;
}

async fn three_workers_one_killed_and_one_stalled(url: &str, store: RedisStore) {
    const N: usize = 20_000;
    let ns = store.namespace().to_owned();
    store.inbox_group().await.unwrap();
    for chunk in payloads(N).chunks(1000) {
        store.append_inbox(chunk, None).await.unwrap();
    }
    let mut killed = inbox_worker_at(url, &ns);
    let stalled = inbox_worker_at(url, &ns);
    let _steady = inbox_worker_at(url, &ns);

    eventually(
        Duration::from_secs(60),
        "the workers to be mid-run",
        || async {
            let (left, _) = backlog_of(&store).await;
            left < (N as u64) * 3 / 4
        },
    )
    .await;
    signal(&stalled.0, "STOP");
    killed.0.kill().unwrap();
    let _ = killed.0.wait();

    eventually(
        Duration::from_secs(90),
        "the inbox to be consumed to the end",
        || async { backlog_of(&store).await == (0, 0) },
    )
    .await;
    // The stalled worker wakes: whatever it held was claimed, and it applies none of it.
    signal(&stalled.0, "CONT");
    store.append_inbox(&payloads(1), None).await.unwrap();
    eventually(Duration::from_secs(30), "the last entry", || async {
        backlog_of(&store).await == (0, 0)
    })
    .await;
    let mut want = expected_nicks(N);
    *want.get_mut("u0").unwrap() += 1;
    assert_eq!(
        nicks(&store).await,
        want,
        "every entry applied exactly once"
    );
    let messages = store.top(TopList::Rooms, 10).await.unwrap();
    let total: u64 = messages.iter().map(|(_, n)| n).sum();
    assert_eq!(total, N as u64 + 1);
    // The detail and the history went with them, once.
    let (status, page) = {
        let api = TestApi::spawn(store.clone()).await;
        api.get("/stats/rooms/%23r0").await
    };
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"], (N / 5 + 1) as u64);
}

/// A dead consumer's entries are taken over batch after batch while batches come full, not one
/// batch per claim period: 1,000 entries in batches of 50 would take 20 periods of 5 s.
#[tokio::test]
async fn a_dead_consumers_many_batches_are_taken_over_at_once() {
    const N: usize = 1_000;
    let redis = TestRedis::start();
    let ns = namespace();
    let store = redis.store_in(&ns);
    store.inbox_group().await.unwrap();
    store.append_inbox(&payloads(N), None).await.unwrap();
    // Read and never applied: a consumer that died.
    assert_eq!(store.inbox_read("dead", N, 10).await.unwrap().len(), N);
    let _worker = inbox_worker_at(&redis.url(), &ns);
    // The worker's first claim finds them idle for less than its 1 s, its second one 5 s
    // later takes them; one batch per 5 s would take 100 s.
    eventually(
        Duration::from_secs(40),
        "the dead consumer's entries to be taken over and applied",
        || async { backlog(&redis, &ns) == (0, 0) },
    )
    .await;
    assert_eq!(nicks(&store).await, expected_nicks(N));
}

/// Records `file` with a worker process: into the inbox (`FORWARD_TO_INBOX`) or directly.
fn record_file(redis: &TestRedis, ns: &str, file: &std::path::Path, forward: bool) {
    let mut worker = bin("chatstats-worker")
        .env("CHAT_INTERFACE_URL", file)
        .env("RESPONSE_STREAM_MODE", "text")
        .env("REDIS_URL", redis.url())
        .env("REDIS_NAMESPACE", ns)
        .env("FORWARD_TO_INBOX", if forward { "true" } else { "false" })
        .spawn()
        .unwrap();
    let status = wait_with_deadline(&mut worker, Duration::from_secs(60));
    assert!(status.success(), "worker: {status}");
}

#[tokio::test]
async fn a_marked_append_retried_is_appended_once() {
    let redis = TestRedis::start();
    let ns = namespace();
    let store = redis.store_in(&ns);
    let mark = |seq| chatstats::store::Mark {
        writer: "forwarder".into(),
        seq,
        window: 64,
    };
    store
        .append_inbox(&payloads(10), Some(&mark(1)))
        .await
        .unwrap();
    store
        .append_inbox(&payloads(10), Some(&mark(1)))
        .await
        .unwrap();
    store
        .append_inbox(&payloads(5), Some(&mark(2)))
        .await
        .unwrap();
    let length = redis
        .cli(&["--raw", "XLEN", &format!("{ns}inbox")])
        .unwrap();
    assert_eq!(length.trim(), "15");
}

/// The forwarder's first append times out while Redis is paused, and Redis runs it once the
/// pause ends: its retries must not append the batch again.
#[tokio::test]
async fn a_forwarded_batch_whose_reply_was_lost_is_appended_once() {
    let redis = TestRedis::start();
    let ns = namespace();
    let file = upstream_file(&payloads(20));
    let forward = |ns: &str| {
        let mut forwarder = bin("chatstats-worker")
            .env("CHAT_INTERFACE_URL", &file)
            .env("RESPONSE_STREAM_MODE", "text")
            .env("REDIS_URL", redis.url())
            .env("REDIS_NAMESPACE", ns)
            .env("REDIS_TIMEOUT_MS", "200")
            .env("FORWARD_TO_INBOX", "true")
            .spawn()
            .unwrap();
        let status = wait_with_deadline(&mut forwarder, Duration::from_secs(30));
        assert!(status.success(), "forwarder: {status}");
    };
    // Once without a pause, so that Redis has the script: a call by its hash that times out is
    // then run when the pause ends (an unknown one would fail with NOSCRIPT instead).
    forward(&namespace());
    redis.cli(&["CLIENT", "PAUSE", "1000", "WRITE"]).unwrap();
    forward(&ns);
    let length = redis
        .cli(&["--raw", "XLEN", &format!("{ns}inbox")])
        .unwrap();
    assert_eq!(length.trim(), "20", "each payload once");
}

#[tokio::test]
async fn one_forwarding_reader_and_two_inbox_workers_count_what_one_worker_counts() {
    let redis = TestRedis::start();
    // Every upstream fixture in one stream: messages, bad JSON, blanks, non-ASCII.
    let mut stream = Vec::new();
    for name in [
        "multiple-messages.txt",
        "improper-json.txt",
        "non-ascii.txt",
        "empty-body.txt",
        "empty-nick.txt",
        "empty-room.txt",
        "duplicate-words-counted.txt",
    ] {
        stream.extend(std::fs::read(fixture(name)).unwrap());
        stream.extend_from_slice(b"\n\n");
    }
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, &stream).unwrap();
    let file = file.into_temp_path();
    let direct = namespace();
    record_file(&redis, &direct, &file, false);

    let shared = namespace();
    let _a = inbox_worker(&redis, &shared);
    let _b = inbox_worker(&redis, &shared);
    record_file(&redis, &shared, &file, true);
    eventually(
        Duration::from_secs(30),
        "the inbox to be consumed",
        || async { backlog(&redis, &shared) == (0, 0) },
    )
    .await;

    let (one, two) = (redis.store_in(&direct), redis.store_in(&shared));
    for list in [TopList::Words, TopList::Nicks, TopList::Rooms] {
        let want = one.top(list, 1000).await.unwrap();
        assert!(!want.is_empty());
        assert_eq!(two.top(list, 1000).await.unwrap(), want, "{list:?}");
    }
    let failed = one.failed_total().await.unwrap();
    assert!(failed > 0, "the fixture has failed payloads");
    assert_eq!(two.failed_total().await.unwrap(), failed);
    let mut kept = one.failed_messages(None).await.unwrap();
    let mut forwarded = two.failed_messages(None).await.unwrap();
    kept.sort();
    forwarded.sort();
    assert_eq!(forwarded, kept);
}

#[tokio::test]
async fn sigterm_stops_an_idle_inbox_worker_with_exit_0() {
    let redis = TestRedis::start();
    let ns = namespace();
    let mut worker = inbox_worker(&redis, &ns);
    // The group exists once the worker has started consuming.
    eventually(Duration::from_secs(20), "the consumer group", || async {
        redis
            .cli(&["XINFO", "GROUPS", &format!("{ns}inbox")])
            .is_some_and(|groups| groups.contains("chatstats"))
    })
    .await;
    signal(&worker.0, "TERM");
    let status = wait_with_deadline(&mut worker.0, Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

/// The `worker progress` line of `logs` (JSON), with the most messages.
fn progress_line(logs: &str) -> Option<serde_json::Value> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["message"] == "worker progress")
        .max_by_key(|line| line["messages"].as_u64())
}

/// A forwarder and an inbox consumer each log the periodic line of every worker: messages
/// (forwarded, or applied) and the round trip of their Redis calls.
#[tokio::test]
async fn a_forwarder_and_an_inbox_worker_log_their_progress_and_round_trips() {
    let redis = TestRedis::start();
    let ns = namespace();
    let file = upstream_file(&payloads(20));
    let forwarder = bin("chatstats-worker")
        .env("CHAT_INTERFACE_URL", &file)
        .env("RESPONSE_STREAM_MODE", "text")
        .env("REDIS_URL", redis.url())
        .env("REDIS_NAMESPACE", &ns)
        .env("FORWARD_TO_INBOX", "true")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(forwarder.status.success(), "forwarder: {forwarder:?}");
    let logs = String::from_utf8_lossy(&forwarder.stdout).into_owned()
        + &String::from_utf8_lossy(&forwarder.stderr);
    let line = progress_line(&logs).unwrap_or_else(|| panic!("no progress line: {logs}"));
    assert_eq!(line["messages"], 20, "{line}");
    assert!(line["store_rtt_ms"].as_f64() > Some(0.0), "{line}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = std::fs::File::create(&path).unwrap();
    let _consumer = Running(
        bin("chatstats-worker")
            .env("CHAT_INTERFACE_URL", "inbox")
            .env("REDIS_URL", redis.url())
            .env("REDIS_NAMESPACE", &ns)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("PROGRESS_INTERVAL_SECS", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    eventually(
        Duration::from_secs(20),
        "a progress line of the 20 messages applied, with their round trip",
        || async {
            let logs = std::fs::read_to_string(&path).unwrap_or_default();
            progress_line(&logs).is_some_and(|line| {
                line["messages"] == 20 && line["store_rtt_ms"].as_f64() > Some(0.0)
            })
        },
    )
    .await;
}

/// Stopped workers leave their names in the group: those holding nothing, idle long enough,
/// are forgotten; one holding entries is kept, whatever its idle time.
#[tokio::test]
async fn idle_consumers_holding_nothing_are_forgotten_and_holders_kept() {
    let redis = TestRedis::start();
    let ns = namespace();
    let store = redis.store_in(&ns);
    store.append_inbox(&payloads(3), None).await.unwrap();
    store.inbox_group().await.unwrap();
    let inbox = format!("{ns}inbox");
    let read = store.inbox_read("holder", 2, 0).await.unwrap();
    assert_eq!(read.len(), 2);
    for name in ["gone-1", "gone-2", "me"] {
        redis
            .cli(&["XGROUP", "CREATECONSUMER", &inbox, "chatstats", name])
            .unwrap();
    }
    let consumers = || {
        let text = redis
            .cli(&["--raw", "XINFO", "CONSUMERS", &inbox, "chatstats"])
            .unwrap();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let mut names: Vec<String> = lines
            .windows(2)
            .filter(|pair| pair[0] == "name")
            .map(|pair| pair[1].clone())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        store.inbox_forget_consumers("me", 3_600_000).await.unwrap(),
        0,
        "none idle for an hour"
    );
    assert_eq!(consumers(), ["gone-1", "gone-2", "holder", "me"]);
    assert_eq!(store.inbox_forget_consumers("me", 0).await.unwrap(), 2);
    assert_eq!(consumers(), ["holder", "me"]);
    // The holder's entries are still pending, for a claim.
    let claimed = store.inbox_claim("me", 0, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
}

/// An entry that chatstats did not append (no payload field `p`) is recorded as a failed
/// message naming it, not acknowledged without a trace.
#[tokio::test]
async fn a_foreign_inbox_entry_is_a_failed_message() {
    let redis = TestRedis::start();
    let ns = namespace();
    let store = redis.store_in(&ns);
    store.inbox_group().await.unwrap();
    let inbox = format!("{ns}inbox");
    redis.cli(&["XADD", &inbox, "*", "x", "by-hand"]).unwrap();
    let _consumer = inbox_worker_at(&redis.url(), &ns);
    eventually(
        Duration::from_secs(20),
        "the entry as a failed message",
        || async { store.failed_total().await.unwrap() == 1 },
    )
    .await;
    let failed = store.failed_messages(Some(10)).await.unwrap();
    assert!(
        failed
            .iter()
            .any(|f| f.contains("without a payload field p: x=by-hand")),
        "{failed:?}"
    );
    assert_eq!(store.top(TopList::Words, 10).await.unwrap(), vec![]);
}
