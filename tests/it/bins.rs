//! The binaries as a user runs them: configuration errors, --help, text mode, signals.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chatstats::message::TopList;
use chatstats::store::Store;

use crate::helpers::*;

#[test]
fn every_binary_explains_itself_with_help() {
    for name in ["chatstats-sim", "chatstats-migrate"] {
        let out = bin(name).arg("--help").output().unwrap();
        assert!(out.status.success(), "{name} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            !help.starts_with("Turns a live chat stream"),
            "{name} describes itself, not the service: {help}"
        );
    }
    for name in ["chatstats", "chatstats-worker", "chatstats-api"] {
        let out = bin(name).arg("--help").output().unwrap();
        assert!(out.status.success(), "{name} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("REDIS_NAMESPACE"),
            "{name} --help names the variables: {help}"
        );
    }
}

#[test]
fn a_broken_env_file_stops_a_run_but_not_help_or_version() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "SIM_COUNT=3\nnot an assignment\n").unwrap();
    for arg in ["--help", "--version"] {
        let out = bin("chatstats-sim")
            .arg(arg)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{arg}: {out:?}");
        assert!(!out.stdout.is_empty(), "{arg} printed");
    }
    let out = bin("chatstats-sim")
        .args(["--count", "1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(".env line 2"));
}

#[test]
fn a_bad_value_stops_the_process_with_one_line_naming_the_variable() {
    for (name, var, value) in [
        ("chatstats-api", "NODE_PORT", "eighty"),
        ("chatstats-api", "REDIS_URL", "http://nope"),
        ("chatstats-worker", "RESPONSE_STREAM_MODE", "carrier-pigeon"),
        ("chatstats", "LOG_FORMAT", "xml"),
        ("chatstats-worker", "METRICS_ADDR", "abc"),
        ("chatstats-api", "REDIS_URL", "redis://127.0.0.1:9/abc"),
        ("chatstats-api", "REDIS_PORT", "0"),
        ("chatstats-sim", "SIM_HOST", "bad!host"),
        (
            "chatstats-migrate",
            "MIGRATE_FROM",
            "redis://:s3cretpw@127.0.0.1:notaport",
        ),
        ("chatstats", "FORWARD_TO_INBOX", "true"),
        ("chatstats", "CHAT_INTERFACE_URL", "inbox"),
        ("chatstats-api", "RUST_LOG", "info,chatstats=notalevel"),
        (
            "chatstats-api",
            "REDIS_CLUSTER_NODES",
            "127.0.0.1:7000,noport",
        ),
        // A secret in a node list, wherever it is written, is not repeated.
        (
            "chatstats-api",
            "REDIS_CLUSTER_NODES",
            "u:s3cretpw@127.0.0.1:7000,bad",
        ),
        ("chatstats-worker", "REDIS_CLUSTER_NODES", "bad?x=s3cretpw"),
        (
            "chatstats-api",
            "REDIS_URL",
            "redis-cluster://127.0.0.1:7000?password=s3cretpw",
        ),
        (
            "chatstats",
            "REDIS_URL",
            "redis-cluster://127.0.0.1:7000,h:x?token=s3cretpw",
        ),
        // A roll-up needs every finer bucket of the hour (day) it merges.
        ("chatstats", "MINUTE_RETENTION", "10m"),
        ("chatstats-worker", "HOUR_RETENTION", "3h"),
        ("chatstats-api", "DAY_RETENTION", "1h"),
        ("chatstats-api", "CORS_ORIGIN", "http://a.example,*"),
        // Origins a browser could never send.
        ("chatstats-api", "CORS_ORIGIN", "https://a.example/path"),
        ("chatstats", "CORS_ORIGIN", "not an origin"),
        ("chatstats-api", "CORS_ORIGIN", "https://user:pw@a.example"),
        (
            "chatstats-api",
            "REDIS_URL",
            "redis://:s3cretpw@127.0.0.1:9/99999",
        ),
        // Before the start line: checked before anything is said or served.
        ("chatstats", "EMOTE_NAMES_FILE", "/nonexistent/emotes.txt"),
        (
            "chatstats-worker",
            "CHAT_INTERFACE_URL",
            "/nonexistent/stream.txt",
        ),
        ("chatstats", "CHAT_INTERFACE_URL", "/"),
        // A URL in text mode by mistake: its key is not repeated.
        (
            "chatstats-worker",
            "CHAT_INTERFACE_URL",
            "https://up.example/?key=s3cretpw",
        ),
        (
            "chatstats",
            "CHAT_INTERFACE_URL",
            "/no/stream.txt?key=s3cretpw",
        ),
        // clap drops control characters from the value it shows: still masked.
        (
            "chatstats-api",
            "REDIS_URL",
            "redis://bob:s3cret\x7fpw@127.0.0.1:notaport",
        ),
        ("chatstats", "INGEST_TOKENS", "s3cretpw0123456789\x01,short"),
    ] {
        // Text mode, for the file of CHAT_INTERFACE_URL; the other cases name no file.
        let text = var == "CHAT_INTERFACE_URL" && value != "inbox";
        let out = bin(name)
            .env("RESPONSE_STREAM_MODE", if text { "text" } else { "http" })
            .env("CHAT_INTERFACE_URL", "http://127.0.0.1:9/")
            .env("NODE_PORT", "0")
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name} {var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(var), "names {var}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!err.contains("s3cretpw"), "the password is repeated: {err}");
    }
    let out = bin("chatstats-worker").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CHAT_INTERFACE_URL"));
}

#[tokio::test]
async fn the_worker_in_text_mode_records_a_file_and_exits_0() {
    let redis = TestRedis::start();
    let ns = namespace();
    let mut child = bin("chatstats-worker")
        .env("RESPONSE_STREAM_MODE", "text")
        .env("CHAT_INTERFACE_URL", fixture("multiple-messages.txt"))
        .env("REDIS_URL", redis.url())
        .env("REDIS_NAMESPACE", &ns)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_with_deadline(&mut child, Duration::from_secs(20));
    assert!(status.success(), "{status}");
    let store = redis.store_in(&ns);
    assert_eq!(
        store.top(TopList::Words, 1).await.unwrap(),
        vec![("MEUBEL".to_owned(), 3)]
    );
    assert_eq!(store.failed_messages(None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn with_basic_statistics_the_worker_writes_part_ones_keys_only() {
    let redis = TestRedis::start();
    let ns = namespace();
    let mut child = bin("chatstats-worker")
        .env("RESPONSE_STREAM_MODE", "text")
        .env("CHAT_INTERFACE_URL", part2("stream.txt"))
        .env("REDIS_URL", redis.url())
        .env("REDIS_NAMESPACE", &ns)
        .env("STATISTICS", "basic")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_with_deadline(&mut child, Duration::from_secs(20));
    assert!(status.success(), "{status}");
    let keys = redis.cli(&["--raw", "KEYS", "*"]).unwrap();
    let mut seen = Vec::new();
    for key in keys.lines().filter(|k| !k.is_empty()) {
        let rest = key.strip_prefix(ns.as_str()).unwrap_or(key);
        let part_one = [
            "words",
            "nicks",
            "rooms",
            "failedMessages",
            "failedMessages:total",
        ]
        .contains(&rest)
            || rest.starts_with("messagesPerSecond:")
            || rest.starts_with("writer:");
        assert!(part_one, "STATISTICS=basic wrote {key}");
        seen.push(rest.to_owned());
    }
    assert!(seen.iter().any(|k| k == "words"), "{seen:?}");
    // The housekeeping of the full statistics never ran: it would have taken its lock.
    let stats = redis.cli(&["INFO", "commandstats"]).unwrap();
    assert!(!stats.contains("cmdstat_set:"), "{stats}");
}

#[tokio::test]
async fn the_worker_reads_stdin_with_a_dash() {
    let redis = TestRedis::start();
    let ns = namespace();
    let mut child = bin("chatstats-worker")
        .env("RESPONSE_STREAM_MODE", "text")
        .env("CHAT_INTERFACE_URL", "-")
        .env("REDIS_URL", redis.url())
        .env("REDIS_NAMESPACE", &ns)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"{\"room\":\"#r\",\"nick\":\"n\",\"body\":\"ndjson works\"}\r\n")
            .unwrap();
    }
    let status = wait_with_deadline(&mut child, Duration::from_secs(20));
    assert!(status.success());
    let words = redis.store_in(&ns).top(TopList::Words, 10).await.unwrap();
    assert_eq!(
        words,
        vec![("works".to_owned(), 1), ("ndjson".to_owned(), 1)]
    );
}

#[tokio::test]
async fn sigterm_stops_an_http_worker_cleanly_with_exit_0() {
    let redis = TestRedis::start();
    let upstream = FakeUpstream::start(vec![Behaviour::SendThenStall(bytes::Bytes::from_static(
        b"data: {\"body\":\"before the signal\"}\n",
    ))])
    .await;
    let ns = namespace();
    let mut child = bin("chatstats-worker")
        .env("CHAT_INTERFACE_URL", upstream.url().as_str())
        .env("REDIS_URL", redis.url())
        .env("REDIS_NAMESPACE", &ns)
        .spawn()
        .unwrap();
    let store = redis.store_in(&ns);
    until_members(&store, TopList::Words, 3).await;
    let started = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = wait_with_deadline(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn chatstats_with_no_configuration_serves_live_statistics_within_seconds() {
    let port = free_port();
    let _app = Running(
        bin("chatstats")
            .env("NODE_HOST", "127.0.0.1")
            .env("NODE_PORT", port.to_string())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    eventually(
        Duration::from_secs(15),
        "non-empty words and a positive rate",
        || async {
            let words = get_json(&format!("{base}/stats/words")).await;
            let stats = get_json(&format!("{base}/stats")).await;
            words.is_some_and(|w| w.as_array().is_some_and(|a| a.len() == 10))
                && stats.is_some_and(|s| s["messagesPerSecond"].as_u64().is_some_and(|n| n > 0))
        },
    )
    .await;
    let doc = get_json(&format!("{base}/documentation/json"))
        .await
        .unwrap();
    assert!(doc["paths"]["/stats/words"].is_object());
}

#[tokio::test]
async fn chatstats_in_text_mode_keeps_serving_the_results_after_the_file() {
    let port = free_port();
    let mut app = Running(
        bin("chatstats")
            .env("NODE_HOST", "127.0.0.1")
            .env("NODE_PORT", port.to_string())
            .env("RESPONSE_STREAM_MODE", "text")
            .env("CHAT_INTERFACE_URL", fixture("multiple-messages.txt"))
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}/stats/words?limit=1");
    eventually(Duration::from_secs(15), "the file's counts", || async {
        get_json(&url).await == Some(serde_json::json!([{"MEUBEL": 3}]))
    })
    .await;
    assert!(
        app.0.try_wait().unwrap().is_none(),
        "still serving after the file"
    );
    assert!(
        Command::new("kill")
            .args(["-INT", &app.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(wait_with_deadline(&mut app.0, Duration::from_secs(10)).success());
}

#[tokio::test]
async fn a_worker_fed_by_chatstats_sim_over_http_fills_redis() {
    let redis = TestRedis::start();
    let port = free_port();
    let _sim = Running(
        bin("chatstats-sim")
            .args(["--port", &port.to_string(), "--rate", "2000"])
            .spawn()
            .unwrap(),
    );
    let ns = namespace();
    let _worker = Running(
        bin("chatstats-worker")
            .env("CHAT_INTERFACE_URL", format!("http://127.0.0.1:{port}/"))
            .env("REDIS_URL", redis.url())
            .env("REDIS_NAMESPACE", &ns)
            .env("RECONNECT_MIN_MS", "20")
            .spawn()
            .unwrap(),
    );
    let store = redis.store_in(&ns);
    eventually(
        Duration::from_secs(20),
        "Redis to fill from the simulator",
        || async {
            store
                .top(TopList::Nicks, 10)
                .await
                .is_ok_and(|n| n.len() == 10)
                && store
                    .top(TopList::Rooms, 10)
                    .await
                    .is_ok_and(|r| r.len() == 10)
                && store
                    .top(TopList::Words, 10)
                    .await
                    .is_ok_and(|w| w.len() == 10)
        },
    )
    .await;
}

#[tokio::test]
async fn sigterm_stops_the_api_with_exit_0() {
    let redis = TestRedis::start();
    let port = free_port();
    let mut api = Running(
        bin("chatstats-api")
            .env("NODE_HOST", "127.0.0.1")
            .env("NODE_PORT", port.to_string())
            .env("REDIS_URL", redis.url())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}/healthcheck");
    eventually(Duration::from_secs(15), "the API to answer", || async {
        get_json(&url).await.is_some_and(|h| h["status"] == "ok")
    })
    .await;
    assert!(
        Command::new("kill")
            .args(["-TERM", &api.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(wait_with_deadline(&mut api.0, Duration::from_secs(10)).success());
}
