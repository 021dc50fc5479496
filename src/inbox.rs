//! The inbox consumer (`CHAT_INTERFACE_URL=inbox`): any number of workers share the Redis
//! stream `{ns}inbox` through the consumer group `chatstats`, each applying what it reads
//! exactly once.
//!
//! A worker reads a batch of new entries (`XREADGROUP`), judges each payload by the same rules
//! as an upstream's, and applies the batch's tally and detail in one call that also
//! acknowledges and deletes the entries, provided they are all still its own (see
//! [`crate::store::redis::InboxEntry`] and `lua/inbox_apply.lua`). Every [`CLAIM_EVERY`] it takes
//! over entries that another consumer left pending for longer than the claim idle time
//! (`XAUTOCLAIM`): a worker that died, or stalled, between reading and applying; batch after
//! batch while they come full. The stalled one, should it wake, finds its entries gone and
//! applies nothing. Every [`FORGET_EVERY`] it also removes from the group the consumers that
//! hold nothing and were idle for [`FORGET_IDLE`] (workers stopped or dead), so that restarts
//! do not grow the group's list of consumers without end.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::detail::{Buckets, DetailBuilder, HistoryEntry};
use crate::message::{Tally, TallyBuilder};
use crate::retry::backoff;
use crate::source::{Frame, Source};
use crate::store::redis::{InboxEntry, RedisStore};
use crate::store::{Mark, Store, StoreError};
use crate::telemetry::metrics;
use crate::timeline::now_ms;
use crate::worker::{Progress, WorkerError, WorkerSettings};

/// How often a consumer looks for entries that others left pending.
pub const CLAIM_EVERY: Duration = Duration::from_secs(5);

/// How often a consumer forgets the group's idle consumers that hold nothing.
pub const FORGET_EVERY: Duration = Duration::from_secs(60);

/// How long a consumer that holds nothing stays in the group, idle, before it is forgotten (a
/// live one comes back at its next read; one holding entries is never forgotten).
pub const FORGET_IDLE: Duration = Duration::from_secs(600);

/// How an inbox consumer reads.
#[derive(Debug, Clone)]
pub struct InboxSettings {
    /// This consumer's name in the group (unique per process).
    pub consumer: String,
    /// Most entries read and applied in one call.
    pub batch: usize,
    /// An entry pending with another consumer for this long is taken over.
    pub claim_idle: Duration,
    /// Longest wait for new entries in one read (kept below the store's timeout).
    pub block: Duration,
    /// Longest payload; a longer one is a failed message (MAX_LINE_BYTES).
    pub line_cap: usize,
}

/// Consumes the inbox until `shutdown`; then finishes the batch at hand, within the shutdown
/// timeout. Entries read but not applied stay pending, for another consumer to claim.
pub async fn consume(
    store: RedisStore,
    inbox: InboxSettings,
    settings: WorkerSettings,
    progress: Arc<Progress>,
    shutdown: CancellationToken,
) -> Result<Arc<Progress>, WorkerError> {
    let started = std::time::Instant::now();
    let ticker = crate::worker::spawn_progress(progress.clone(), settings.progress_interval);
    let housekeeping = crate::worker::spawn_maintenance(store.clone(), settings.rules.full);
    let mut consumer = Consumer {
        store,
        inbox,
        settings,
        progress,
    };
    let result = consumer.run(shutdown).await;
    ticker.abort();
    if let Some(housekeeping) = housekeeping {
        housekeeping.abort();
    }
    consumer.progress.log_line(&mut (started, 0));
    result.map(|()| consumer.progress)
}

struct Consumer {
    store: RedisStore,
    inbox: InboxSettings,
    settings: WorkerSettings,
    progress: Arc<Progress>,
}

impl Consumer {
    async fn run(&mut self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let mut failures = 0;
        // Claim first: a restarted worker picks up what its predecessor left.
        let mut next_claim = tokio::time::Instant::now();
        let mut next_forget = tokio::time::Instant::now();
        info!(consumer = %self.inbox.consumer, "consuming the inbox");
        while !shutdown.is_cancelled() {
            if let Err(err) = self.store.inbox_group().await {
                warn!(error = %err, "cannot create the inbox's consumer group; retrying");
                failures += 1;
                if !pause(&shutdown, self.delay(failures)).await {
                    break;
                }
                continue;
            }
            if tokio::time::Instant::now() >= next_forget {
                next_forget = tokio::time::Instant::now() + FORGET_EVERY;
                self.forget_idle_consumers().await;
            }
            let claiming = tokio::time::Instant::now() >= next_claim;
            let read = if claiming {
                next_claim = tokio::time::Instant::now() + CLAIM_EVERY;
                let idle = self.inbox.claim_idle.as_millis() as u64;
                self.store
                    .inbox_claim(&self.inbox.consumer, idle, self.inbox.batch)
                    .await
            } else {
                let block = self.inbox.block.as_millis() as u64;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    read = self.store.inbox_read(&self.inbox.consumer, self.inbox.batch, block) => read,
                }
            };
            let entries = match read {
                Ok(entries) => entries,
                Err(err) => {
                    warn!(error = %err, "cannot read the inbox; retrying");
                    failures += 1;
                    if !pause(&shutdown, self.delay(failures)).await {
                        break;
                    }
                    continue;
                }
            };
            failures = 0;
            if entries.is_empty() {
                continue;
            }
            if claiming {
                info!(
                    entries = entries.len(),
                    "took over entries another consumer left pending"
                );
                if entries.len() >= self.inbox.batch {
                    // A full batch: more may wait. Take them at once, not one batch per
                    // CLAIM_EVERY (a dead consumer's 5,000 entries took 50 s in batches of 500).
                    next_claim = tokio::time::Instant::now();
                }
            }
            if claiming && self.store.is_cluster() {
                // On Redis Cluster entries taken over are applied one by one (see
                // `RedisStore::inbox_take_over`).
                for entry in entries {
                    self.apply(vec![entry], true, &shutdown).await?;
                }
            } else {
                self.apply(entries, false, &shutdown).await?;
            }
        }
        Ok(())
    }

    /// Forgets the idle consumers that hold nothing; a failure waits for the next time.
    async fn forget_idle_consumers(&self) {
        let idle = FORGET_IDLE.as_millis() as u64;
        match (self.store)
            .inbox_forget_consumers(&self.inbox.consumer, idle)
            .await
        {
            Ok(0) => {}
            Ok(forgotten) => info!(forgotten, "forgot idle inbox consumers holding nothing"),
            Err(err) => debug!(error = %err, "cannot forget idle inbox consumers"),
        }
    }

    /// Applies one batch, retrying until it is applied, found not ours, or the shutdown
    /// timeout passes (the entries then stay pending: nothing is lost).
    async fn apply(
        &mut self,
        entries: Vec<InboxEntry>,
        taken_over: bool,
        shutdown: &CancellationToken,
    ) -> Result<(), WorkerError> {
        let n = entries.len() as u64;
        self.progress.read.fetch_add(n, Ordering::Relaxed);
        let (ids, tally, detail) = self.judge(entries);
        let (messages, failed) = (tally.messages(), tally.failed.len() as u64);
        let mut failures = 0;
        let mut deadline = None;
        loop {
            let started = std::time::Instant::now();
            let consumer = &self.inbox.consumer;
            let outcome = match ids.as_slice() {
                [id] if taken_over => {
                    self.store
                        .inbox_take_over(consumer, id, &tally, &detail)
                        .await
                }
                _ => {
                    self.store
                        .inbox_apply(consumer, &ids, &tally, &detail)
                        .await
                }
            };
            let rtt = started.elapsed();
            metrics::store_call("inbox", rtt);
            match outcome {
                Ok(true) => {
                    self.progress
                        .recorded
                        .fetch_add(messages, Ordering::Relaxed);
                    self.progress.failed.fetch_add(failed, Ordering::Relaxed);
                    self.progress.calls.fetch_add(1, Ordering::Relaxed);
                    self.progress
                        .rtt_micros
                        .fetch_add(rtt.as_micros() as u64, Ordering::Relaxed);
                    metrics::messages_recorded(messages);
                    metrics::failed_messages(failed);
                    return Ok(());
                }
                Ok(false) => {
                    // Claimed by another consumer while this one was slow, or applied by a
                    // call whose reply was lost: either way, not to be applied again.
                    debug!(
                        entries = n,
                        "entries no longer ours: left to their new owner"
                    );
                    return Ok(());
                }
                Err(err) => {
                    self.progress.retries.fetch_add(1, Ordering::Relaxed);
                    metrics::store_retry();
                    if shutdown.is_cancelled() {
                        let at = *deadline.get_or_insert_with(|| {
                            tokio::time::Instant::now() + self.settings.shutdown_timeout
                        });
                        if tokio::time::Instant::now() >= at {
                            return Err(unrecorded(n, &err));
                        }
                    }
                    warn!(error = %err, entries = n, "cannot apply inbox entries; retrying");
                    failures += 1;
                    tokio::time::sleep(self.delay(failures)).await;
                }
            }
        }
    }

    /// The wait after the `failures`-th failure in a row.
    fn delay(&self, failures: u32) -> Duration {
        backoff(failures, self.settings.retry_min, self.settings.retry_max)
    }

    /// The ids, the merged tally and the detail of a batch.
    fn judge(&self, entries: Vec<InboxEntry>) -> (Vec<String>, Tally, crate::detail::Detail) {
        let now = now_ms();
        let mut tallies = TallyBuilder::default();
        let mut details = DetailBuilder::default();
        let mut ids = Vec::with_capacity(entries.len());
        for InboxEntry { id, payload } in entries {
            // An entry with no fields left: acknowledged, not counted.
            if let Some(payload) = payload {
                tallies.add(self.judge_one(&id, payload, now, &mut details));
            }
            ids.push(id);
        }
        let buckets = if self.store.rolls_up() {
            Buckets::Rollups
        } else {
            Buckets::All
        };
        let detail = details.take(now, &self.settings.retention, buckets);
        (ids, tallies.take(), detail)
    }

    fn judge_one(&self, id: &str, payload: Bytes, now: u64, details: &mut DetailBuilder) -> Tally {
        let rules = &self.settings.rules;
        if payload.len() > self.inbox.line_cap {
            return Tally::failed(&payload, rules.failed_max);
        }
        let judged = rules.judge(&payload, now);
        if let Some(message) = judged.message {
            // The same made-up id whoever applies the entry: it is the entry's.
            let entry = rules
                .history
                .then(|| HistoryEntry::of(&message, || format!("inbox-{id}")));
            details.add(&message, rules.full, entry);
        }
        judged.tally
    }
}

/// Waits `delay`, or less when shutdown comes first (then false).
async fn pause(shutdown: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

fn unrecorded(n: u64, err: &StoreError) -> WorkerError {
    WorkerError::Unrecorded {
        unrecorded: n,
        cause: format!("{err}; the entries stay in the inbox for another consumer"),
    }
}

/// Most payloads appended in one call when forwarding.
const FORWARD_BATCH: usize = 1_000;

/// The forwarder's window of sequence numbers (`Mark::window`): it has one call in flight.
const FORWARD_WINDOW: u64 = 64;

/// `FORWARD_TO_INBOX=true`: reads `source` and appends its payloads, as read, to the inbox for
/// the consumers, instead of applying them; until the source ends (text mode) or `shutdown`.
/// Payloads that are not messages go too: the consumers count them as failed, as a worker
/// reading the upstream would. Returns how many were forwarded.
pub async fn forward<R: Source>(
    store: RedisStore,
    mut source: R,
    settings: &WorkerSettings,
    shutdown: CancellationToken,
) -> Result<u64, WorkerError> {
    info!(source = %source.describe(), "forwarding the upstream to the inbox");
    // The periodic line counts payloads forwarded as its messages (they are judged by the
    // consumers: none fails here), and the round trips of the appends.
    let started = std::time::Instant::now();
    let progress = Arc::new(Progress::default());
    let ticker = crate::worker::spawn_progress(progress.clone(), settings.progress_interval);
    let result = forward_all(&store, &mut source, settings, &progress, &shutdown).await;
    ticker.abort();
    progress.log_line(&mut (started, 0));
    let forwarded = result?;
    info!(forwarded, "forwarding ended");
    Ok(forwarded)
}

async fn forward_all<R: Source>(
    store: &RedisStore,
    source: &mut R,
    settings: &WorkerSettings,
    progress: &Progress,
    shutdown: &CancellationToken,
) -> Result<u64, WorkerError> {
    let mut forwarded = 0;
    // Each batch is marked, so that a retry of one appended while its reply was lost (Redis
    // stalled past REDIS_TIMEOUT_MS) does not append it twice. One call at a time: a small
    // window suffices.
    let writer: Arc<str> = format!("{:016x}", rand::random::<u64>()).into();
    let mut seq = 0;
    loop {
        let mut frames = Vec::new();
        let more = tokio::select! {
            _ = shutdown.cancelled() => break,
            more = source.read(&mut frames) => more?,
        };
        let payloads: Vec<Bytes> = frames
            .into_iter()
            .map(|frame| match frame {
                Frame::Payload(payload) => payload,
                // Its first bytes: not JSON, so a failed message downstream, as here.
                Frame::Oversized(prefix) => prefix,
            })
            .collect();
        for batch in payloads.chunks(FORWARD_BATCH) {
            seq += 1;
            let mark = Mark {
                writer: writer.clone(),
                seq,
                window: FORWARD_WINDOW,
            };
            append(store, batch, &mark, settings, progress, shutdown).await?;
            forwarded += batch.len() as u64;
        }
        if !more {
            break;
        }
    }
    Ok(forwarded)
}

/// Appends one batch, retrying until it is appended or the shutdown timeout passes.
async fn append(
    store: &RedisStore,
    batch: &[Bytes],
    mark: &Mark,
    settings: &WorkerSettings,
    progress: &Progress,
    shutdown: &CancellationToken,
) -> Result<(), WorkerError> {
    let mut failures = 0;
    let mut deadline = None;
    let n = batch.len() as u64;
    progress.read.fetch_add(n, Ordering::Relaxed);
    loop {
        let started = std::time::Instant::now();
        let err = match store.append_inbox(batch, Some(mark)).await {
            Ok(()) => {
                progress.recorded.fetch_add(n, Ordering::Relaxed);
                progress.calls.fetch_add(1, Ordering::Relaxed);
                let rtt = started.elapsed().as_micros() as u64;
                progress.rtt_micros.fetch_add(rtt, Ordering::Relaxed);
                return Ok(());
            }
            Err(err) => err,
        };
        progress.retries.fetch_add(1, Ordering::Relaxed);
        metrics::store_retry();
        if shutdown.is_cancelled() {
            let at = *deadline
                .get_or_insert_with(|| tokio::time::Instant::now() + settings.shutdown_timeout);
            if tokio::time::Instant::now() >= at {
                return Err(WorkerError::Unrecorded {
                    unrecorded: batch.len() as u64,
                    cause: format!("{err}; they were not forwarded to the inbox"),
                });
            }
        }
        warn!(error = %err, payloads = batch.len(), "cannot append to the inbox; retrying");
        failures += 1;
        tokio::time::sleep(backoff(failures, settings.retry_min, settings.retry_max)).await;
    }
}
