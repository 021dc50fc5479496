//! Prometheus metrics: what the worker and the API count, rendered as text for `GET /metrics`.
//!
//! Failures are events that also count (the vector model): every place that logs a reconnect,
//! a retry or a failed message also increments its counter here. Histograms use fixed buckets
//! (seconds), so they aggregate across processes.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Buckets of the latency histograms, in seconds: 0.1 ms to 5 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The name of the thread that folds them.
const UPKEEP_THREAD: &str = "metrics-upkeep";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle). `None` when
/// another recorder was installed first.
///
/// A histogram keeps each recorded sample until upkeep folds it into the buckets; a scrape
/// does it, but a process nobody scrapes (a worker without `METRICS_ADDR`) would keep one
/// sample per store call or request for ever: 3.5 MB per 200,000 messages. A thread of its
/// own runs the upkeep every [`UPKEEP_EVERY`], whether or not a runtime is running.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name(UPKEEP_THREAD.into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(err) = spawned {
                // The metrics still work; only scrapes fold the samples then.
                tracing::warn!(error = %err, "cannot start the metrics upkeep thread");
            }
            // Every series is exported from the start, at zero until something happens: a
            // scrape tells "none yet" from "not measured".
            for name in [
                "chatstats_messages_total",
                "chatstats_failed_messages_total",
                "chatstats_upstream_reconnects_total",
                "chatstats_store_retries_total",
            ] {
                counter!(name).increment(0);
            }
            gauge!("chatstats_store_calls_in_flight").set(0.0);
            Some(handle)
        })
        .as_ref()
}

/// The current metrics in Prometheus's text format.
pub fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}

/// Messages recorded (failed ones excluded).
pub(crate) fn messages_recorded(n: u64) {
    counter!("chatstats_messages_total").increment(n);
}

/// Failed messages recorded.
pub(crate) fn failed_messages(n: u64) {
    counter!("chatstats_failed_messages_total").increment(n);
}

/// A reconnect to the upstream.
pub(crate) fn upstream_reconnect() {
    counter!("chatstats_upstream_reconnects_total").increment(1);
}

/// A store call that failed and will be retried.
pub(crate) fn store_retry() {
    counter!("chatstats_store_retries_total").increment(1);
}

/// Store calls in flight now.
pub(crate) fn calls_in_flight(n: usize) {
    gauge!("chatstats_store_calls_in_flight").set(n as f64);
}

/// One store call (`kind`: the worker's `tally` or `detail`, the API's `read`) and how long it
/// took.
pub(crate) fn store_call(kind: &'static str, took: Duration) {
    histogram!("chatstats_store_call_seconds", "kind" => kind).record(took.as_secs_f64());
}

/// One API request: its route (the matched pattern, `/stats/rooms/{room}`), status and time.
pub(crate) fn api_request(route: String, status: u16, took: Duration) {
    histogram!("chatstats_http_request_seconds", "route" => route, "status" => status.to_string())
        .record(took.as_secs_f64());
}

/// Payloads accepted by `POST /messages` (appended to the inbox).
pub(crate) fn ingested(n: u64) {
    counter!("chatstats_ingested_total").increment(n);
}

/// The ingestion series at zero, for a process that serves `POST /messages` (`reasons`: every
/// label of the refusals), so that a scrape tells "none yet" from "not measured".
pub(crate) fn ingestion_series(reasons: &[&'static str]) {
    counter!("chatstats_ingested_total").increment(0);
    for reason in reasons {
        counter!("chatstats_ingest_rejected_total", "reason" => *reason).increment(0);
    }
}

/// A `POST /messages` request refused, by why (`unauthorized`, `rate_limited`, `invalid`…).
pub(crate) fn ingest_rejected(reason: &'static str) {
    counter!("chatstats_ingest_rejected_total", "reason" => reason).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without its upkeep, every sample of a histogram stays in memory until a scrape.
    #[test]
    fn installing_the_recorder_starts_its_upkeep() {
        assert!(install().is_some());
        // A thread names itself once it runs: poll, with a deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let names: Vec<String> = std::fs::read_dir("/proc/self/task")
                .expect("the threads of this process")
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect();
            if names.iter().any(|n| n == UPKEEP_THREAD) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no upkeep thread among {names:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
