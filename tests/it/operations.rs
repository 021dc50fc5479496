//! What an operator meets: no secret in any log line, a drop-in `.env`, readable logs and
//! errors that name their cause.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use chatstats::message::TopList;
use chatstats::store::Store;

use crate::helpers::*;

const UPSTREAM_KEY: &str = "LeakProbeUpstreamKey1";
const REDIS_PASSWORD: &str = "LeakProbeRedisPass2";

/// Runs `command` with its logs going to a file until `done` holds for the log text (or 20 s
/// pass), requesting `poke` (if any) meanwhile; stops it and returns the logs.
async fn logs_until(
    mut command: Command,
    poke: Option<&str>,
    done: impl Fn(&str) -> bool,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let file = std::fs::File::create(&path).unwrap();
    let child = Running(
        command
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap(),
    );
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the expected log lines",
        || async {
            if let Some(url) = poke {
                let _ = client.get(url).send().await;
            }
            done(&read())
        },
    )
    .await;
    signal(&child.0, "TERM");
    drop(child);
    read()
}

fn leaks(logs: &str) -> Vec<&str> {
    logs.lines()
        .filter(|l| l.contains(UPSTREAM_KEY) || l.contains(REDIS_PASSWORD))
        .collect()
}

#[tokio::test]
async fn no_secret_reaches_the_logs_whatever_the_upstream_and_redis_do() {
    // Redis with a password: once given the wrong one, once the right one.
    let redis = TestRedis::start_with(&["--appendonly", "no", "--requirepass", REDIS_PASSWORD]);
    let wrong = format!("redis://:{REDIS_PASSWORD}x@127.0.0.1:{}", redis.port);
    let right = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}", redis.port);
    // An upstream that flaps: events, a close, a 503, a stall.
    let upstream = FakeUpstream::start(vec![
        Behaviour::SendThenClose(Bytes::from_static(b"data: {\"body\":\"one\"}\n")),
        Behaviour::Status(503),
        Behaviour::SendThenStall(Bytes::from_static(b"data: {\"body\":\"two\"}\n")),
    ])
    .await;
    let flapping = format!("{}s?key={UPSTREAM_KEY}", upstream.url());
    let down = format!("http://127.0.0.1:{}/s?key={UPSTREAM_KEY}", free_port());
    for format in ["pretty", "json"] {
        for (upstream, redis_url) in [(&down, &wrong), (&flapping, &right)] {
            let mut command = bin("chatstats-worker");
            command
                .env("CHAT_INTERFACE_URL", upstream)
                .env("REDIS_URL", redis_url)
                .env("RUST_LOG", "debug")
                .env("LOG_FORMAT", format)
                .env("RECONNECT_MIN_MS", "10")
                .env("RECONNECT_MAX_MS", "50")
                .env("READ_TIMEOUT_MS", "300");
            let logs = logs_until(command, None, |logs| {
                logs.matches("reconnecting to the upstream").count() >= 3
            })
            .await;
            assert!(logs.contains("***"), "the masked URL is shown: {logs}");
            assert_eq!(leaks(&logs), Vec::<&str>::new(), "{format} {upstream}");
        }
        // The API and chatstats with the password, Redis refusing it, a 503 served.
        for name in ["chatstats-api", "chatstats"] {
            let port = free_port();
            let mut command = bin(name);
            command
                .env("REDIS_URL", &wrong)
                .env("NODE_HOST", "127.0.0.1")
                .env("NODE_PORT", port.to_string())
                .env("RUST_LOG", "debug")
                .env("LOG_FORMAT", format);
            let url = format!("http://127.0.0.1:{port}/stats/words");
            let logs = logs_until(command, Some(&url), |logs| {
                logs.contains("store unavailable for a request")
            })
            .await;
            assert_eq!(leaks(&logs), Vec::<&str>::new(), "{name} {format}");
        }
    }
}

#[tokio::test]
async fn node_host_may_be_a_host_name() {
    let redis = TestRedis::start();
    let port = free_port();
    let _api = Running(
        bin("chatstats-api")
            .env("NODE_HOST", "localhost")
            .env("NODE_PORT", port.to_string())
            .env("REDIS_URL", redis.url())
            .spawn()
            .unwrap(),
    );
    let root = format!("http://localhost:{port}/");
    eventually(Duration::from_secs(15), "the API on localhost", || async {
        reqwest::get(&root).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}

/// A command run in `dir`, where a `.env` can be placed.
fn bin_in(name: &str, dir: &Path) -> Command {
    let mut command = bin(name);
    command.current_dir(dir);
    command
}

#[test]
fn a_malformed_env_file_stops_the_process_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "# the TypeScript service's file, broken\nNODE_PORT=3999\nREDIS_URL='redis://u:p@h\nNODE_HOST=localhost\n",
    )
    .unwrap();
    let out = bin_in("chatstats-api", dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(".env line 3"), "{err}");
    assert!(!err.contains("u:p@h"), "the value is not shown: {err}");
}

#[tokio::test]
async fn a_typescript_env_file_is_used_as_is() {
    let redis = TestRedis::start();
    let ns = namespace();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "CHAT_INTERFACE_URL={}\nRESPONSE_STREAM_MODE=text\nNODE_HOST=localhost\nNODE_PORT={port}\n\
             REDIS_HOST=127.0.0.1\nREDIS_PORT={}\nREDIS_NAMESPACE={ns}\n",
            fixture("multiple-messages.txt").display(),
            redis.port
        ),
    )
    .unwrap();
    let mut worker = bin_in("chatstats-worker", dir.path()).spawn().unwrap();
    assert!(wait_with_deadline(&mut worker, Duration::from_secs(20)).success());
    let _api = Running(bin_in("chatstats-api", dir.path()).spawn().unwrap());
    let words = format!("http://localhost:{port}/stats/words?limit=1");
    eventually(Duration::from_secs(15), "the API to answer", || async {
        get_json(&words).await == Some(serde_json::json!([{"MEUBEL": 3}]))
    })
    .await;
}

#[tokio::test]
async fn an_env_file_is_read_as_nodes_dotenv_read_it() {
    // Written on Windows (a byte order mark, CRLF), with a `$` that is not a variable, a list
    // with spaces left unquoted and variables left empty: Node's dotenv read all of it.
    let redis = TestRedis::start();
    let ns = format!("{}$HOME:", namespace());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "\u{feff}# the TypeScript service's file\r\nCHAT_INTERFACE_URL={}\r\n\
             RESPONSE_STREAM_MODE=text\r\nREDIS_URL=\r\nREDIS_HOST=127.0.0.1\r\nREDIS_PORT={}\r\n\
             REDIS_NAMESPACE={ns}\r\nIGNORED_NICKS=slicyyyy, moczark\r\nLOG_FORMAT=\r\n",
            fixture("multiple-messages.txt").display(),
            redis.port
        ),
    )
    .unwrap();
    let out = bin_in("chatstats-worker", dir.path())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The namespace kept its `$HOME`; both nicks of the list were left out.
    let nicks = redis.store_in(&ns).top(TopList::Nicks, 1).await.unwrap();
    assert_eq!(nicks, vec![("zexvy".to_owned(), 1)]);
}

#[tokio::test]
async fn chatstats_uses_the_redis_that_redis_host_and_port_name() {
    let redis = TestRedis::start();
    let ns = namespace();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let _app = Running(
        bin("chatstats")
            .env("REDIS_HOST", "127.0.0.1")
            .env("REDIS_PORT", redis.port.to_string())
            .env("REDIS_NAMESPACE", &ns)
            .env("NODE_HOST", "127.0.0.1")
            .env("NODE_PORT", port.to_string())
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let store = redis.store_in(&ns);
    eventually(
        Duration::from_secs(20),
        "simulated messages in Redis",
        || async {
            store
                .top(TopList::Words, 1)
                .await
                .is_ok_and(|w| !w.is_empty())
        },
    )
    .await;
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("REDIS_HOST or REDIS_PORT is set"), "{logs}");
}

#[tokio::test]
async fn logs_are_plain_text_off_a_terminal_with_each_setting_a_field() {
    let redis = TestRedis::start();
    let out = bin("chatstats-worker")
        .env("RESPONSE_STREAM_MODE", "text")
        .env("CHAT_INTERFACE_URL", fixture("multiple-messages.txt"))
        .env("REDIS_URL", redis.url())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(!logs.contains('\u{1b}'), "no ANSI codes in a pipe: {logs}");
    let start = logs
        .lines()
        .find(|l| l.contains("chatstats-worker starting"))
        .unwrap();
    for field in [
        "in_flight=128",
        "max_line_bytes=1048576",
        "upstream=text mode",
    ] {
        assert!(start.contains(field), "{field} in {start}");
    }
    assert!(
        !start.contains("Args {") && !start.contains("Cli {"),
        "{start}"
    );
}

/// A file that exists (so it passes the check at start) but fails when read: EIO on Linux.
const UNREADABLE: &str = "/proc/self/mem";

#[test]
fn log_format_is_case_insensitive_and_errors_name_the_allowed_values() {
    let out = bin("chatstats-worker")
        .env("LOG_FORMAT", "JSON")
        .env("RUST_LOG", "info")
        .env("RESPONSE_STREAM_MODE", "text")
        .env("CHAT_INTERFACE_URL", UNREADABLE)
        .env("REDIS_URL", format!("redis://127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let logs = String::from_utf8_lossy(&out.stderr);
    for line in logs.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "JSON line: {line}"
        );
    }
    let out = bin("chatstats-worker")
        .env("LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("LOG_FORMAT") && err.contains("pretty|json"),
        "{err}"
    );
}

#[tokio::test]
async fn a_503_is_logged_with_its_route() {
    let port = free_port();
    let mut command = bin("chatstats-api");
    command
        .env("REDIS_URL", format!("redis://127.0.0.1:{}", free_port()))
        .env("REDIS_TIMEOUT_MS", "200")
        .env("NODE_HOST", "127.0.0.1")
        .env("NODE_PORT", port.to_string());
    let url = format!("http://127.0.0.1:{port}/stats/nicks");
    // The first request may come before the first connection attempt failed; once it has,
    // the cause is named.
    let refused = |l: &str| l.contains("store unavailable") && l.contains("refused");
    let logs = logs_until(command, Some(&url), |logs| logs.lines().any(refused)).await;
    let line = logs.lines().find(|l| refused(l)).unwrap();
    assert!(line.contains("GET /stats/nicks"), "{line}");
}

#[test]
fn chatstats_exits_non_zero_when_its_worker_fails() {
    let out = bin("chatstats")
        .env("RESPONSE_STREAM_MODE", "text")
        .env("CHAT_INTERFACE_URL", UNREADABLE)
        .env("NODE_HOST", "127.0.0.1")
        .env("NODE_PORT", free_port().to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(UNREADABLE));
}
