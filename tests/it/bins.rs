//! The binaries as a user runs them: configuration errors, --help, text mode, signals.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chatstats::message::TopList;
use chatstats::store::Store;

use crate::helpers::*;

/// A command for one of the binaries, run outside the repo so no `.env` is picked up.
fn bin(name: &str) -> Command {
    let path = match name {
        "chatstats" => env!("CARGO_BIN_EXE_chatstats"),
        "chatstats-worker" => env!("CARGO_BIN_EXE_chatstats-worker"),
        "chatstats-api" => env!("CARGO_BIN_EXE_chatstats-api"),
        other => panic!("unknown binary {other}"),
    };
    let mut command = Command::new(path);
    command
        .current_dir(std::env::temp_dir())
        .env("RUST_LOG", "warn")
        .env_remove("REDIS_URL")
        .env_remove("CHAT_INTERFACE_URL");
    command
}

fn wait_with_deadline(
    child: &mut std::process::Child,
    limit: Duration,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_binary_explains_itself_with_help() {
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
fn a_bad_value_stops_the_process_with_one_line_naming_the_variable() {
    for (name, var, value) in [
        ("chatstats-api", "NODE_PORT", "eighty"),
        ("chatstats-api", "REDIS_URL", "http://nope"),
        ("chatstats-worker", "RESPONSE_STREAM_MODE", "carrier-pigeon"),
        ("chatstats", "LOG_FORMAT", "xml"),
    ] {
        let out = bin(name)
            .env(var, value)
            .env("CHAT_INTERFACE_URL", "http://127.0.0.1:9/")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name} {var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(var), "names {var}: {err}");
        assert!(!err.contains("panicked"), "{err}");
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
    assert_eq!(store.failed_messages().await.unwrap().len(), 2);
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
    eventually(
        Duration::from_secs(15),
        "the message to be recorded",
        || async {
            store
                .top(TopList::Words, 10)
                .await
                .is_ok_and(|w| w.len() == 3)
        },
    )
    .await;
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
