//! The worker: drives a [`Source`] into a [`Store`], exactly once per message.
//!
//! A reader task pulls frames from the source into a small bounded queue; the worker judges
//! each frame ([`Tally::from_payload`]) and applies it with one store call, keeping up to
//! `window` calls in flight instead of awaiting each reply. When the window and the queue are
//! full, the reader stops reading: that is the backpressure that bounds memory while the store is
//! slow or away.
//!
//! Every tally carries a [`Mark`] (this worker's id and an increasing sequence number). When a
//! call fails, the worker stops taking input, lets the window settle, and re-applies the failed
//! tallies one by one in sequence order until they succeed; the store skips any whose first
//! attempt had in fact been applied. On shutdown the reader stops, everything already read is
//! recorded, and anything that could not be recorded is reported, never silently dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::message::{Tally, TallyBuilder};
use crate::source::{Frame, Source, SourceError};
use crate::store::{Mark, Store, StoreError, unix_now};

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Store calls in flight at most.
    pub window: usize,
    /// Chunks of frames read ahead of the store at most.
    pub queue: usize,
    /// Failed payloads are kept cut to this many bytes.
    pub failed_payload_max: usize,
    /// Period of the progress log line (zero: none).
    pub progress_interval: Duration,
    /// First retry delay after a failed store call; doubles up to `retry_max`.
    pub retry_min: Duration,
    /// Cap of the retry delay.
    pub retry_max: Duration,
    /// Coalescing: merge the tallies of all messages read within this interval into one store
    /// call (`None`: one call per message). Counts stay exact; only their grouping changes.
    pub flush_interval: Option<Duration>,
    /// Coalescing: a merged tally is sent once it holds this many messages, even early.
    pub flush_max_messages: usize,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            window: 128,
            queue: 16,
            failed_payload_max: 4096,
            progress_interval: Duration::from_secs(10),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            flush_interval: None,
            flush_max_messages: 10_000,
        }
    }
}

/// Why the worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The source failed for good (text mode only; a URL source never gives up).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Shutdown came while the store was unreachable: these messages were read, not recorded.
    #[error("{unrecorded} messages were read but could not be recorded before shutdown ({cause})")]
    Unrecorded {
        /// Messages (payloads) not recorded.
        unrecorded: u64,
        /// The last store error.
        cause: String,
    },
}

/// Counters of one worker run, readable while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Payloads read from the source.
    pub read: AtomicU64,
    /// Messages recorded (failed ones excluded).
    pub recorded: AtomicU64,
    /// Failed messages recorded.
    pub failed: AtomicU64,
    /// Store calls completed.
    pub calls: AtomicU64,
    /// Sum of store round-trip times, microseconds.
    pub rtt_micros: AtomicU64,
    /// Store calls that failed and were retried.
    pub retries: AtomicU64,
}

impl Progress {
    fn log_line(&self, since: &mut (Instant, u64)) {
        let recorded = self.recorded.load(Ordering::Relaxed);
        let calls = self.calls.load(Ordering::Relaxed).max(1);
        let elapsed = since.0.elapsed().as_secs_f64().max(1e-3);
        let rate = (recorded - since.1) as f64 / elapsed;
        *since = (Instant::now(), recorded);
        info!(
            messages = recorded,
            rate = format!("{rate:.0}/s"),
            failed = self.failed.load(Ordering::Relaxed),
            store_rtt_ms = format!(
                "{:.2}",
                self.rtt_micros.load(Ordering::Relaxed) as f64 / calls as f64 / 1000.0
            ),
            retries = self.retries.load(Ordering::Relaxed),
            "worker progress"
        );
    }
}

type Done = (u64, Tally, Result<bool, StoreError>, Duration);

/// Runs the worker until the source ends (text mode) or `shutdown` is cancelled, then records
/// everything already read and returns the run's counters.
pub async fn run<S: Store, R: Source>(
    store: S,
    source: R,
    settings: WorkerSettings,
    progress: Arc<Progress>,
    shutdown: CancellationToken,
) -> Result<Arc<Progress>, WorkerError> {
    let started = Instant::now();
    let writer: Arc<str> = format!("{:016x}", rand::random::<u64>()).into();
    info!(source = %source.describe(), store = %store.describe(), %writer, window = settings.window, "worker started");
    let (tx, mut rx) = mpsc::channel::<Vec<Frame>>(settings.queue.max(1));
    let reader = tokio::spawn(read_source(source, tx, shutdown.clone()));
    let ticker = spawn_progress(progress.clone(), settings.progress_interval);

    let mut in_flight = FuturesUnordered::new();
    let mut to_retry: Vec<(u64, Tally)> = Vec::new();
    let mut last_error = String::new();
    let mut pending: std::collections::VecDeque<Frame> = Default::default();
    let mut second = 0;
    let mut seq = 0u64;
    let mut input_open = true;
    let mut batch = TallyBuilder::default();
    let mut flush_at: Option<tokio::time::Instant> = None;

    let result = loop {
        if !to_retry.is_empty() && in_flight.is_empty() {
            if let Err(unrecorded) = retry_in_order(
                &store,
                &writer,
                &mut to_retry,
                &settings,
                &progress,
                &shutdown,
                &mut last_error,
            )
            .await
            {
                // Every frame is one message (a payload or an over-long line).
                let unread = batch.len() as u64 + pending.len() as u64;
                let queued = drain_count(&mut rx).await;
                break Err(WorkerError::Unrecorded {
                    unrecorded: unrecorded + unread + queued,
                    cause: last_error.clone(),
                });
            }
        }
        let accepting = to_retry.is_empty() && in_flight.len() < settings.window.max(1);
        if accepting && let Some(frame) = pending.pop_front() {
            let tally = match frame {
                Frame::Payload(payload) => {
                    Tally::from_payload(&payload, second, settings.failed_payload_max)
                }
                Frame::Oversized(prefix) => {
                    warn!(
                        kept_bytes = prefix.len(),
                        "line over the length cap: recorded as a failed message"
                    );
                    Tally::failed(&prefix, settings.failed_payload_max)
                }
            };
            if !tally.failed.is_empty() {
                debug!(payload = %String::from_utf8_lossy(&tally.failed[0]), "failed message");
            }
            progress.read.fetch_add(1, Ordering::Relaxed);
            match settings.flush_interval {
                None => {
                    seq += 1;
                    in_flight.push(apply(store.clone(), writer.clone(), seq, tally));
                }
                Some(interval) => {
                    batch.add(tally);
                    if batch.len() >= settings.flush_max_messages.max(1) {
                        seq += 1;
                        in_flight.push(apply(store.clone(), writer.clone(), seq, batch.take()));
                        flush_at = None;
                    } else if flush_at.is_none() {
                        flush_at = Some(tokio::time::Instant::now() + interval);
                    }
                }
            }
            continue;
        }
        // A partial merged tally goes out when its interval ends, or at once when input ended.
        let due = flush_at.is_some_and(|at| at <= tokio::time::Instant::now())
            || (!input_open && pending.is_empty());
        if accepting && !batch.is_empty() && due {
            seq += 1;
            in_flight.push(apply(store.clone(), writer.clone(), seq, batch.take()));
            flush_at = None;
            continue;
        }
        if !input_open
            && pending.is_empty()
            && in_flight.is_empty()
            && to_retry.is_empty()
            && batch.is_empty()
        {
            break Ok(());
        }
        tokio::select! {
            Some((seq, tally, outcome, rtt)) = in_flight.next(), if !in_flight.is_empty() => {
                match outcome {
                    Ok(_) => record(&progress, &tally, rtt),
                    Err(err) => {
                        if to_retry.is_empty() {
                            warn!(error = %err, "store call failed: pausing input to retry in order");
                        }
                        last_error = err.to_string();
                        progress.retries.fetch_add(1, Ordering::Relaxed);
                        to_retry.push((seq, tally));
                    }
                }
            }
            frames = rx.recv(), if accepting && input_open => match frames {
                Some(frames) => {
                    second = unix_now();
                    pending.extend(frames);
                }
                None => input_open = false,
            },
            _ = tokio::time::sleep_until(flush_at.unwrap_or_else(tokio::time::Instant::now)), if flush_at.is_some() && accepting => {}
        }
    };
    ticker.abort();
    progress.log_line(&mut (started, 0));
    result?;
    match reader.await {
        Ok(Err(err)) => Err(err.into()),
        _ => Ok(progress),
    }
}

fn record(progress: &Progress, tally: &Tally, rtt: Duration) {
    progress
        .recorded
        .fetch_add(tally.messages(), Ordering::Relaxed);
    progress
        .failed
        .fetch_add(tally.failed.len() as u64, Ordering::Relaxed);
    progress.calls.fetch_add(1, Ordering::Relaxed);
    progress
        .rtt_micros
        .fetch_add(rtt.as_micros() as u64, Ordering::Relaxed);
}

async fn apply<S: Store>(store: S, writer: Arc<str>, seq: u64, tally: Tally) -> Done {
    let started = Instant::now();
    let outcome = store.apply(&tally, Some(&Mark { writer, seq })).await;
    (seq, tally, outcome, started.elapsed())
}

/// Re-applies failed tallies one at a time in sequence order until all succeed, waiting (with
/// backoff) only after a failed attempt. On shutdown, makes one last attempt; if the store still
/// fails, gives up and returns how many messages stay unrecorded.
async fn retry_in_order<S: Store>(
    store: &S,
    writer: &Arc<str>,
    to_retry: &mut Vec<(u64, Tally)>,
    settings: &WorkerSettings,
    progress: &Progress,
    shutdown: &CancellationToken,
    last_error: &mut String,
) -> Result<(), u64> {
    to_retry.sort_by_key(|(seq, _)| *seq);
    let mut failures = 0;
    while let Some((seq, tally)) = to_retry.first() {
        if failures > 0 {
            if shutdown.is_cancelled() {
                let unrecorded = to_retry
                    .iter()
                    .map(|(_, t)| t.messages() + t.failed.len() as u64)
                    .sum();
                error!(unrecorded, error = %last_error, "shutdown while the store is unreachable");
                return Err(unrecorded);
            }
            let delay =
                crate::source::http::backoff(failures, settings.retry_min, settings.retry_max);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        let started = Instant::now();
        let mark = Mark {
            writer: writer.clone(),
            seq: *seq,
        };
        match store.apply(tally, Some(&mark)).await {
            Ok(_) => {
                record(progress, tally, started.elapsed());
                to_retry.remove(0);
                failures = 0;
                if to_retry.is_empty() {
                    info!("store reachable again: resuming input");
                }
            }
            Err(err) => {
                failures += 1;
                progress.retries.fetch_add(1, Ordering::Relaxed);
                if failures % 10 == 1 {
                    warn!(error = %err, attempt = failures, waiting = to_retry.len(), "store still failing: retrying");
                }
                *last_error = err.to_string();
            }
        }
    }
    Ok(())
}

/// Counts (and drops) the payloads still queued; used only when giving up at shutdown.
async fn drain_count(rx: &mut mpsc::Receiver<Vec<Frame>>) -> u64 {
    let mut n = 0;
    while let Some(batch) = rx.recv().await {
        n += batch.len() as u64;
    }
    n
}

async fn read_source<R: Source>(
    mut source: R,
    tx: mpsc::Sender<Vec<Frame>>,
    shutdown: CancellationToken,
) -> Result<(), SourceError> {
    loop {
        let mut batch = Vec::new();
        let more = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            more = source.read(&mut batch) => more?,
        };
        if !batch.is_empty() && tx.send(batch).await.is_err() {
            return Ok(());
        }
        if !more {
            return Ok(());
        }
    }
}

fn spawn_progress(progress: Arc<Progress>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if every.is_zero() {
            return;
        }
        let mut since = (Instant::now(), 0);
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            progress.log_line(&mut since);
        }
    })
}
