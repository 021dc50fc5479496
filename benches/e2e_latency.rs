//! End-to-end latency: from the upstream sending a message to its counts being visible in Redis.
//!
//! Serves an HTTP upstream on 127.0.0.1 (a random port) that streams simulated events at a
//! steady rate; every `E2E_PROBE_MS` one event carries a unique word `probe<N>` in its body, and
//! the instant its chunk is handed to the HTTP body is recorded. A separate Redis client polls
//! `ZSCORE {ns}words probe<N>` until the word appears; the latency is the time between the two
//! (resolution: one ZSCORE round trip). The upstream spawns `chatstats-worker` in HTTP mode
//! against it, runs for `E2E_SECONDS`, and prints p50/p90/p99/max.
//!
//! Run by `scripts/bench.sh`, or by hand:
//!
//! ```sh
//! cargo build --release --bin chatstats-worker
//! E2E_REDIS_URL=redis://127.0.0.1:6390 cargo bench --bench e2e_latency
//! ```
//!
//! Environment: `E2E_REDIS_URL` (required; without it the bench is skipped), `E2E_WORKER`
//! (default `target/release/chatstats-worker`), `E2E_NAMESPACE` (`e2e:`), `E2E_RATE` (5000
//! messages/s), `E2E_SECONDS` (20), `E2E_WARMUP_SECONDS` (2), `E2E_PROBE_MS` (10),
//! `E2E_UPSTREAM_NODELAY` / `E2E_POLLER_NODELAY` (1; 0 leaves Nagle's algorithm on for the
//! bench's own sockets, which adds 10–40 ms stalls to the tail: for diagnosis only). Any other
//! variable (e.g. `IN_FLIGHT`, `FLUSH_INTERVAL_MS`) reaches the worker unchanged.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use bytes::Bytes;
use chatstats::sim::Generator;
use fred::prelude::*;
use fred::types::config::TcpConfig;
use futures::SinkExt;
use tokio::sync::Notify;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the upstream and the poller share.
struct Shared {
    rate: f64,
    probe_every: Duration,
    /// Probes are sent only while this is true (after the warm-up, until the end).
    probing: AtomicBool,
    /// Probes sent and not yet seen in Redis: id → send instant.
    pending: Mutex<BTreeMap<u64, Instant>>,
    /// Set when a probe is sent.
    sent: Notify,
    next_probe: AtomicU64,
    /// Events streamed (all connections) and when the first one was.
    emitted: AtomicU64,
    started: Mutex<Option<Instant>>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, BoxError> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{name}: cannot parse `{text}`").into()),
        Err(_) => Ok(default),
    }
}

fn probe_payload(id: u64) -> String {
    format!(
        r##"{{"command":"","room":"#bench-probe","nick":"prober","target":"","body":"probe{id} LUL","tags":""}}"##
    )
}

/// One connection's stream: events due at `rate`, in chunks written about every millisecond.
async fn stream(State(shared): State<Arc<Shared>>) -> Response {
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        // Live timestamps: the worker records these messages in the current minutes.
        let mut generator = Generator::live(7);
        let start = Instant::now();
        shared.started.lock().unwrap().get_or_insert(start);
        let mut emitted = 0u64;
        let mut next_probe_at = start;
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let now = Instant::now();
            let due = (now.duration_since(start).as_secs_f64() * shared.rate) as u64 + 1;
            let n = due.saturating_sub(emitted);
            if n == 0 {
                continue;
            }
            let mut buf = Vec::with_capacity(n as usize * 512);
            let mut probe = None;
            let probing = shared.probing.load(Ordering::Relaxed);
            for _ in 0..n {
                if probing && probe.is_none() && now >= next_probe_at {
                    let id = shared.next_probe.fetch_add(1, Ordering::Relaxed);
                    buf.extend_from_slice(b"event: privmsg\nse-data: ");
                    buf.extend_from_slice(probe_payload(id).as_bytes());
                    buf.extend_from_slice(b"\n\n");
                    probe = Some(id);
                    next_probe_at = (next_probe_at + shared.probe_every).max(now);
                } else {
                    generator.write_event(&mut buf);
                }
            }
            if let Some(id) = probe {
                shared.pending.lock().unwrap().insert(id, Instant::now());
                shared.sent.notify_one();
            }
            if tx.send(Ok(Bytes::from(buf))).await.is_err() {
                return;
            }
            emitted += n;
            shared.emitted.fetch_add(n, Ordering::Relaxed);
        }
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(rx),
    )
        .into_response()
}

/// Polls Redis for the pending probes until `stop`; returns the latencies seen.
async fn poll(
    client: Client,
    key: String,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Result<Vec<Duration>, BoxError> {
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let pending: Vec<(u64, Instant)> = shared
            .pending
            .lock()
            .unwrap()
            .iter()
            .map(|(id, at)| (*id, *at))
            .collect();
        if pending.is_empty() {
            let _ = tokio::time::timeout(Duration::from_millis(50), shared.sent.notified()).await;
            continue;
        }
        let replies = futures::future::join_all(
            pending
                .iter()
                .map(|(id, _)| client.zscore::<Option<f64>, _, _>(&key, format!("probe{id}"))),
        )
        .await;
        let seen_at = Instant::now();
        let mut map = shared.pending.lock().unwrap();
        for ((id, sent_at), reply) in pending.into_iter().zip(replies) {
            if reply?.is_some() {
                map.remove(&id);
                latencies.push(seen_at.duration_since(sent_at));
            }
        }
    }
    Ok(latencies)
}

fn stop_worker(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// How late a 1 ms sleep wakes up, sampled until `stop`: a measure of how busy the machine's
/// scheduler is (on a quiet machine, tens of microseconds).
fn scheduler_jitter(stop: &AtomicBool) -> Vec<Duration> {
    let mut late = Vec::with_capacity(64 * 1024);
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        late.push(start.elapsed().saturating_sub(Duration::from_millis(1)));
    }
    if late.is_empty() {
        late.push(Duration::ZERO);
    }
    late
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

async fn run(redis_url: String) -> Result<(), BoxError> {
    let worker = std::env::var("E2E_WORKER").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/release/chatstats-worker"
        )
        .to_owned()
    });
    if !std::path::Path::new(&worker).is_file() {
        return Err(format!(
            "no worker binary at {worker}: run `cargo build --release --bin chatstats-worker` or set E2E_WORKER"
        )
        .into());
    }
    let namespace: String = env_or("E2E_NAMESPACE", "e2e:".to_owned())?;
    let rate: f64 = env_or("E2E_RATE", 5000.0)?;
    let seconds: f64 = env_or("E2E_SECONDS", 20.0)?;
    let warmup: f64 = env_or("E2E_WARMUP_SECONDS", 2.0)?;
    let probe_ms: u64 = env_or("E2E_PROBE_MS", 10)?;
    // For diagnosis only: 0 leaves Nagle's algorithm on for the bench's upstream / poller.
    let upstream_nodelay = env_or("E2E_UPSTREAM_NODELAY", 1u8)? != 0;
    let poller_nodelay = env_or("E2E_POLLER_NODELAY", 1u8)? != 0;

    // TCP_NODELAY on the bench's own sockets, so that Nagle's algorithm on this side (a small
    // write held back until the previous one is acknowledged) is not counted as latency.
    let client = Builder::from_config(Config::from_url(&redis_url)?)
        .with_connection_config(|conn| {
            conn.tcp = TcpConfig {
                nodelay: Some(poller_nodelay),
                ..TcpConfig::default()
            }
        })
        .build()?;
    client.init().await?;
    let key = format!("{namespace}words");

    let shared = Arc::new(Shared {
        rate,
        probe_every: Duration::from_millis(probe_ms),
        probing: AtomicBool::new(false),
        pending: Mutex::default(),
        sent: Notify::new(),
        next_probe: AtomicU64::new(0),
        emitted: AtomicU64::new(0),
        started: Mutex::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let app = Router::new()
        .route("/", get(stream))
        .with_state(shared.clone());
    let listener = listener.tap_io(move |tcp| {
        let _ = tcp.set_nodelay(upstream_nodelay);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let child = Command::new(&worker)
        .env("REDIS_URL", &redis_url)
        .env("REDIS_NAMESPACE", &namespace)
        .env("CHAT_INTERFACE_URL", &url)
        .env("RESPONSE_STREAM_MODE", "http")
        .env("PROGRESS_INTERVAL_SECS", "0")
        .env(
            "RUST_LOG",
            std::env::var("E2E_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {worker}: {e}"))?;
    let pid = child.id();

    let stop = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(poll(client.clone(), key, shared.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    if shared.started.lock().unwrap().is_none() {
        stop_worker(child);
        return Err("the worker did not connect to the upstream during the warm-up".into());
    }
    let emitted_before = shared.emitted.load(Ordering::Relaxed);
    let window_start = Instant::now();
    let jitter_stop = Arc::new(AtomicBool::new(false));
    let jitter = {
        let stop = jitter_stop.clone();
        std::thread::spawn(move || scheduler_jitter(&stop))
    };
    shared.probing.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    shared.probing.store(false, Ordering::Relaxed);
    jitter_stop.store(true, Ordering::Relaxed);
    let mut jitter = jitter.join().map_err(|_| "the jitter thread panicked")?;
    jitter.sort();
    let window = window_start.elapsed().as_secs_f64();
    let emitted = shared.emitted.load(Ordering::Relaxed) - emitted_before;
    // Let a tick that read `probing` before it changed finish, then the last probes land.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && !shared.pending.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut latencies = poller.await??;
    let sent = shared.next_probe.load(Ordering::Relaxed);
    let missing = sent as usize - latencies.len();
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
    stop_worker(child);
    let _ = client.quit().await;

    if latencies.is_empty() {
        return Err(format!("no probe was seen in Redis ({sent} sent)").into());
    }
    latencies.sort();
    let mean = latencies.iter().sum::<Duration>().as_secs_f64() * 1000.0 / latencies.len() as f64;
    println!(
        "e2e_latency: {emitted} events in {window:.1} s = {:.0} msg/s (target {rate:.0}); \
         probes sent {sent}, seen {}, missing {missing}; worker peak RSS {} KB",
        emitted as f64 / window,
        latencies.len(),
        rss_kib.map(|k| k.to_string()).unwrap_or_else(|| "?".into()),
    );
    println!(
        "e2e_latency: latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  mean {mean:.3}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    println!(
        "e2e_latency: scheduler jitter (oversleep of a 1 ms sleep in this process, {} samples) ms  \
         p50 {:.3}  p99 {:.3}  max {:.3}",
        jitter.len(),
        percentile(&jitter, 0.50),
        percentile(&jitter, 0.99),
        percentile(&jitter, 1.0),
    );
    // One line for scripts.
    println!(
        "E2E rate={:.0} probes={} missing={missing} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} \
         jitter_p99_ms={:.3} jitter_max_ms={:.3}",
        emitted as f64 / window,
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        percentile(&jitter, 0.99),
        percentile(&jitter, 1.0),
    );
    if missing > 0 {
        let ids: Vec<u64> = shared.pending.lock().unwrap().keys().copied().collect();
        return Err(format!("{missing} probes never appeared in Redis: {ids:?}").into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let Ok(redis_url) = std::env::var("E2E_REDIS_URL") else {
        println!(
            "e2e_latency: skipped (set E2E_REDIS_URL to a Redis of your own, or run scripts/bench.sh)"
        );
        return ExitCode::SUCCESS;
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("e2e_latency: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(redis_url)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("e2e_latency: {err}");
            ExitCode::FAILURE
        }
    }
}
