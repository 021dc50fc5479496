//! The worker: drives a [`Source`] into a [`Store`], exactly once per message.
//!
//! A reader task pulls frames from the source into a small bounded queue. The worker judges
//! each frame ([`Tally::from_payload`]), cuts what it adds into parts of bounded size
//! ([`Tally::split`]) and applies each part with one store call, keeping a [`Window`] of calls
//! in flight instead of awaiting each reply. When the window and the queue are full, the reader
//! stops reading: that is the backpressure that bounds memory while the store is slow or away.
//!
//! Every call carries a [`Mark`]: this worker's id and an increasing sequence number. The window
//! never spans more than `window` sequence numbers between the oldest call not yet acknowledged
//! and the newest, which is what lets the store recognise retries with fixed-size state. When a
//! call fails, the worker stops sending, lets the window settle, and re-applies the failed calls
//! one by one in sequence order ([`Retries`]) until they succeed; the store skips any whose first
//! attempt had in fact been applied. In coalescing mode a [`Coalescer`] merges the tallies read
//! within an interval into one. The statistics by room, nick, emote and time of the messages
//! read within `detail_interval` are merged by a [`DetailBuilder`] (for longer while the last
//! detail still waits to be sent: [`DETAIL_MAX_MESSAGES`]) and applied as one more call (cut
//! into bounded parts), numbered and retried like the others. At most two of those parts
//! are in flight at once, so that the per-message calls sent meanwhile are not queued in Redis
//! behind a whole detail.
//!
//! On shutdown the reader stops, and everything already read is recorded within
//! `shutdown_timeout`; what could not be recorded by then is counted and reported, never
//! silently dropped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::detail::{Buckets, Detail, DetailBuilder, HistoryEntry};
use crate::message::{Rules, Tally, TallyBuilder};
use crate::retry::backoff;
use crate::source::{Frame, Source, SourceError};
use crate::store::{Mark, Store, StoreError};
use crate::telemetry::metrics;
use crate::timeline::{Retention, now_ms};

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Store calls in flight at most, and the most sequence numbers they may span.
    pub window: usize,
    /// Chunks of frames read ahead of the store at most.
    pub queue: usize,
    /// The counting rules.
    pub rules: Rules,
    /// How long time buckets are kept (buckets already expired are not written).
    pub retention: Retention,
    /// The statistics by room, nick, emote and time of the messages read within this interval
    /// are merged into one call.
    pub detail_interval: Duration,
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
    /// Most members one store call writes; a bigger tally is applied in several calls.
    pub call_members_max: usize,
    /// After shutdown, how long the worker may take to record what it has read.
    pub shutdown_timeout: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            window: 128,
            queue: 16,
            rules: Rules::basic(4096),
            retention: Retention::default(),
            detail_interval: Duration::from_millis(50),
            progress_interval: Duration::from_secs(10),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            flush_interval: None,
            flush_max_messages: 10_000,
            call_members_max: 4096,
            shutdown_timeout: Duration::from_secs(8),
        }
    }
}

/// Why the worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The source failed for good (text mode only; a URL source never gives up).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Shutdown came while messages were still unrecorded (the store unreachable, or more read
    /// than it could take within the shutdown timeout).
    #[error("{unrecorded} messages were read but not confirmed recorded before shutdown ({cause})")]
    Unrecorded {
        /// Messages (and failed payloads) read and not confirmed recorded.
        unrecorded: u64,
        /// Why: the last store error, or the timeout.
        cause: String,
    },
    /// The task reading the source panicked.
    #[error("the upstream reader stopped unexpectedly: {0}")]
    Reader(String),
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
    pub(crate) fn log_line(&self, since: &mut (Instant, u64)) {
        let recorded = self.recorded.load(Ordering::Relaxed);
        let calls = self.calls.load(Ordering::Relaxed).max(1);
        let elapsed = since.0.elapsed().as_secs_f64().max(1e-3);
        let rate = (recorded - since.1) as f64 / elapsed;
        *since = (Instant::now(), recorded);
        let rtt_ms = self.rtt_micros.load(Ordering::Relaxed) as f64 / calls as f64 / 1000.0;
        info!(
            messages = recorded,
            rate_per_sec = rate.round(),
            failed = self.failed.load(Ordering::Relaxed),
            store_rtt_ms = (rtt_ms * 100.0).round() / 100.0,
            retries = self.retries.load(Ordering::Relaxed),
            "worker progress"
        );
    }

    fn record(&self, work: &Work, rtt: Duration) {
        let kind = match work {
            Work::Tally(tally) => {
                self.recorded.fetch_add(tally.messages(), Ordering::Relaxed);
                self.failed
                    .fetch_add(tally.failed.len() as u64, Ordering::Relaxed);
                metrics::messages_recorded(tally.messages());
                metrics::failed_messages(tally.failed.len() as u64);
                "tally"
            }
            Work::Detail(_) => "detail",
        };
        metrics::store_call(kind, rtt);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.rtt_micros
            .fetch_add(rtt.as_micros() as u64, Ordering::Relaxed);
    }
}

/// One store call's increments.
#[derive(Debug)]
enum Work {
    /// Of the all-time lists, messages per second and failed messages.
    Tally(Tally),
    /// Of the statistics by room, nick, emote and time.
    Detail(Detail),
}

impl Work {
    /// Messages (and failed payloads) it records; a detail's messages are counted by their
    /// tallies.
    fn weight(&self) -> u64 {
        match self {
            Work::Tally(tally) => tally.messages() + tally.failed.len() as u64,
            Work::Detail(_) => 0,
        }
    }

    /// Members it writes.
    fn members(&self) -> usize {
        match self {
            Work::Tally(tally) => tally.members(),
            Work::Detail(detail) => detail.members(),
        }
    }

    /// Messages whose statistics by room, nick, emote and time it carries.
    fn detail_messages(&self) -> u64 {
        match self {
            Work::Detail(detail) => detail.messages,
            Work::Tally(_) => 0,
        }
    }

    async fn apply<S: Store>(&self, store: &S, mark: &Mark) -> Result<bool, StoreError> {
        match self {
            Work::Tally(tally) => store.apply(tally, Some(mark)).await,
            Work::Detail(detail) => store.apply_detail(detail, Some(mark)).await,
        }
    }
}

/// Most messages one detail merges in per-message mode. The builder merges for
/// `detail_interval`, and longer while the previous detail's parts still wait to be sent: the
/// further Redis falls behind, the fewer writes each message costs, since a popular word is
/// written once per detail instead of once per 50 ms. Once the builder holds this many, no more
/// frames are judged until the previous detail is sent, which bounds the worker's memory to one
/// detail waiting and one being built (4,000: 14.8 list writes per message instead of 21.2 at
/// 50 ms, worker RSS 28 MB; 6,000 went over 30 MB; BENCHMARKS.md).
const DETAIL_MAX_MESSAGES: u64 = 4_000;
/// In coalescing mode frames are judged far faster than Redis applies them, so a detail reaches
/// this many messages within its interval anyway and is sent when full; frames stop being
/// judged while more than [`DETAIL_MEMBERS_WAITING`] members of details wait instead.
const COALESCING_DETAIL_MAX_MESSAGES: u64 = 4_000;
/// Most entries one detail merges, whatever its number of messages: messages of thousands of
/// distinct words each reach it long before [`DETAIL_MAX_MESSAGES`] (4,000 simulated messages
/// hold 46,787, history entries included). Past it the detail is sent and, while it waits, no
/// more frames are judged: the worker's memory stays bounded however wide the lines, and the
/// reader stops reading (backpressure) instead.
const DETAIL_MAX_ENTRIES: usize = 100_000;
/// Coalescing mode: most members of details waiting to be sent before no more frames are
/// judged (holding a whole detail back, as per-message mode does, only adds memory there).
const DETAIL_MEMBERS_WAITING: usize = 64 * DETAIL_CALL_MEMBERS;
/// Most members written by the calls in flight together: about 0.05 s of Redis's work, well
/// inside any store timeout.
const MEMBERS_IN_FLIGHT: usize = 16_384;
/// Most members of one call of a detail: about 0.3 ms of Redis's work. A message's own call
/// sent while details are applied waits behind at most [`DETAIL_CALLS_IN_FLIGHT`] of these:
/// 1,024 gave an end-to-end p99 of 11–13 ms at 5,000 messages/s, 128 gives 3.7–4.0 ms, at the
/// same full-mode rate (BENCHMARKS.md).
const DETAIL_CALL_MEMBERS: usize = 128;
/// Most members of one call of a detail in per-message mode while Redis is far behind: the
/// detail merged half of [`DETAIL_MAX_MESSAGES`] or of [`DETAIL_MAX_ENTRIES`]. The per-message
/// calls queue then anyway, and a call's own work (its mark, a key's expiry, a room's fold
/// check) weighs less in larger parts: over a file read at full speed, 1.02 `EVALSHA` per full
/// message instead of 1.14 and 4% fewer commands; a steady stream's details stay at
/// [`DETAIL_CALL_MEMBERS`] (BENCHMARKS.md, "Larger detail parts while Redis is far behind").
const DETAIL_CALL_MEMBERS_BEHIND: usize = 1024;
/// Most calls of details in flight at once: one running in Redis, one queued behind it, not
/// every part of a 50 ms detail (about 50 parts at 5,000 messages/s).
const DETAIL_CALLS_IN_FLIGHT: usize = 2;
/// In coalescing mode the tallies wait for their interval anyway, and a detail merges up to
/// [`DETAIL_MAX_MESSAGES`]: its parts are larger, since small parts two at a time would leave
/// Redis waiting on round trips (128 members: 2,186 calls/s and 14,500 messages/s in
/// coalescing full mode, against 19,000–20,500 with 1,024).
const COALESCING_DETAIL_CALL_MEMBERS: usize = 1024;
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
    let (tx, rx) = mpsc::channel::<Vec<Frame>>(settings.queue.max(1));
    let reader = tokio::spawn(read_source(source, tx, shutdown.clone()));
    let ticker = spawn_progress(progress.clone(), settings.progress_interval);
    let full = settings.rules.full;
    let housekeeping = spawn_maintenance(store.clone(), full);
    let result = Worker::new(store.clone(), writer, settings, progress.clone())
        .drive(rx, &shutdown)
        .await;
    ticker.abort();
    if let Some(housekeeping) = housekeeping {
        housekeeping.abort();
    }
    if full && result.is_ok() && !shutdown.is_cancelled() {
        // A finished input (text mode): roll up all it completed, rather than leave it to the
        // next worker (one housekeeping run rolls up a few hours and days: a backfill of days
        // takes several).
        catch_up(&store).await;
    }
    progress.log_line(&mut (started, 0));
    let read = reader.await;
    result?;
    match read {
        Ok(Ok(())) => Ok(progress),
        Ok(Err(err)) => Err(err.into()),
        Err(err) => Err(WorkerError::Reader(err.to_string())),
    }
}

/// A call's outcome: its sequence number, its work, the result and the round-trip time.
type Done = (u64, Work, Result<bool, StoreError>, Duration);

/// The store calls in flight, and the sequence numbers they span.
struct Window<S> {
    store: S,
    writer: Arc<str>,
    span: u64,
    next_seq: u64,
    /// Sent and not yet acknowledged: in flight or waiting to be retried.
    unfinished: BTreeSet<u64>,
    /// Messages (and failed payloads) carried by the calls in flight.
    in_flight_weight: u64,
    /// Messages whose details are carried by the calls in flight.
    in_flight_details: u64,
    /// Members written by the calls in flight.
    in_flight_members: usize,
    /// Calls of details in flight.
    in_flight_detail_calls: usize,
    in_flight: FuturesUnordered<Pin<Box<dyn Future<Output = Done> + Send>>>,
}

impl<S: Store> Window<S> {
    fn new(store: S, writer: Arc<str>, span: usize) -> Self {
        Window {
            store,
            writer,
            span: span.max(1) as u64,
            next_seq: 1,
            unfinished: BTreeSet::new(),
            in_flight_weight: 0,
            in_flight_details: 0,
            in_flight_members: 0,
            in_flight_detail_calls: 0,
            in_flight: FuturesUnordered::new(),
        }
    }

    /// True when a call of `members` keeps the window within its span, and the work queued in
    /// Redis within [`MEMBERS_IN_FLIGHT`] (a queue of big calls would outlast the store
    /// timeout).
    fn has_room(&self, members: usize) -> bool {
        let oldest = self.unfinished.first().copied().unwrap_or(self.next_seq);
        let queued = self.in_flight_members + members;
        self.next_seq - oldest < self.span
            && (self.in_flight.is_empty() || queued <= MEMBERS_IN_FLIGHT)
    }

    fn mark(&self, seq: u64) -> Mark {
        Mark {
            writer: self.writer.clone(),
            seq,
            window: self.span,
        }
    }

    /// Sends `work` as the next call.
    fn send(&mut self, work: Work) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unfinished.insert(seq);
        self.in_flight_weight += work.weight();
        self.in_flight_details += work.detail_messages();
        self.in_flight_members += work.members();
        self.in_flight_detail_calls += usize::from(matches!(work, Work::Detail(_)));
        let (store, mark) = (self.store.clone(), self.mark(seq));
        self.in_flight.push(Box::pin(async move {
            let started = Instant::now();
            let outcome = work.apply(&store, &mark).await;
            (seq, work, outcome, started.elapsed())
        }));
        metrics::calls_in_flight(self.in_flight.len());
    }

    fn acknowledge(&mut self, seq: u64) {
        self.unfinished.remove(&seq);
    }
}

/// Failed calls waiting to be re-applied, in sequence order, one at a time.
#[derive(Default)]
struct Retries {
    waiting: BTreeMap<u64, Work>,
    /// Failed attempts since the last success.
    failures: u32,
    last_error: String,
}

impl Retries {
    fn add(&mut self, seq: u64, work: Work, err: &StoreError) {
        if self.waiting.is_empty() {
            warn!(error = %err, "store call failed: pausing input to retry in order");
        }
        self.last_error = err.to_string();
        self.waiting.insert(seq, work);
    }

    /// Re-applies the oldest waiting call once, after a backoff delay if the last attempt
    /// failed.
    async fn retry_oldest<S: Store>(
        &mut self,
        window: &mut Window<S>,
        settings: &WorkerSettings,
        progress: &Progress,
    ) {
        let Some((&seq, work)) = self.waiting.first_key_value() else {
            return;
        };
        if self.failures > 0 {
            tokio::time::sleep(backoff(
                self.failures,
                settings.retry_min,
                settings.retry_max,
            ))
            .await;
        }
        let started = Instant::now();
        match work.apply(&window.store, &window.mark(seq)).await {
            Ok(_) => {
                progress.record(work, started.elapsed());
                window.acknowledge(seq);
                self.waiting.remove(&seq);
                self.failures = 0;
                if self.waiting.is_empty() {
                    info!("store reachable again: resuming input");
                }
            }
            Err(err) => {
                self.failures += 1;
                progress.retries.fetch_add(1, Ordering::Relaxed);
                metrics::store_retry();
                if self.failures % 10 == 1 {
                    warn!(error = %err, attempt = self.failures, waiting = self.waiting.len(), "store still failing: retrying");
                }
                self.last_error = err.to_string();
            }
        }
    }
}

/// Coalescing mode: the tallies read within one interval, merged.
struct Coalescer {
    batch: TallyBuilder,
    interval: Duration,
    max_messages: usize,
    flush_at: Option<tokio::time::Instant>,
}

impl Coalescer {
    /// Adds `tally`; returns the merged tally when the batch is full.
    fn add(&mut self, tally: Tally) -> Option<Tally> {
        self.batch.add(tally);
        if self.batch.len() >= self.max_messages.max(1) {
            return self.take();
        }
        self.flush_at
            .get_or_insert_with(|| tokio::time::Instant::now() + self.interval);
        None
    }

    /// The merged tally, when it is due (its interval ended, or `now` is asked for).
    fn take_due(&mut self, now: bool) -> Option<Tally> {
        let due = self
            .flush_at
            .is_some_and(|at| at <= tokio::time::Instant::now());
        (due || now).then(|| self.take()).flatten()
    }

    fn take(&mut self) -> Option<Tally> {
        self.flush_at = None;
        (!self.batch.is_empty()).then(|| self.batch.take())
    }
}

/// The state of one worker run.
struct Worker<S> {
    settings: WorkerSettings,
    progress: Arc<Progress>,
    window: Window<S>,
    retries: Retries,
    coalescer: Option<Coalescer>,
    /// Frames read and not judged yet.
    pending: VecDeque<Frame>,
    /// Tallies judged (and merged, when coalescing) waiting for room in the window.
    ready: VecDeque<Work>,
    /// Parts of merged details waiting for room in the window, and their members.
    details_ready: VecDeque<Detail>,
    details_ready_members: usize,
    /// The statistics by room, nick, emote and time being merged, and when they are due.
    details: DetailBuilder,
    details_due: Option<tokio::time::Instant>,
    /// The Unix millisecond the frames being judged were read at.
    read_ms: u64,
    /// History entries given an id of this writer's so far.
    made_up_ids: u64,
    input_open: bool,
}

impl<S: Store> Worker<S> {
    fn new(store: S, writer: Arc<str>, settings: WorkerSettings, progress: Arc<Progress>) -> Self {
        let coalescer = settings.flush_interval.map(|interval| Coalescer {
            batch: TallyBuilder::default(),
            interval,
            max_messages: settings.flush_max_messages,
            flush_at: None,
        });
        Worker {
            window: Window::new(store, writer, settings.window),
            settings,
            progress,
            retries: Retries::default(),
            coalescer,
            pending: VecDeque::new(),
            ready: VecDeque::new(),
            details_ready: VecDeque::new(),
            details_ready_members: 0,
            details: DetailBuilder::default(),
            details_due: None,
            read_ms: 0,
            made_up_ids: 0,
            input_open: true,
        }
    }

    /// Runs until the input ended and everything is recorded, or until the shutdown timeout.
    async fn drive(
        &mut self,
        mut input: mpsc::Receiver<Vec<Frame>>,
        shutdown: &CancellationToken,
    ) -> Result<(), WorkerError> {
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            if deadline.is_some_and(|d| d <= tokio::time::Instant::now()) {
                return Err(self.give_up(&mut input).await);
            }
            if !self.retries.waiting.is_empty() {
                if self.window.in_flight.is_empty() {
                    let retry =
                        self.retries
                            .retry_oldest(&mut self.window, &self.settings, &self.progress);
                    tokio::select! {
                        _ = retry => {}
                        _ = shutdown.cancelled(), if deadline.is_none() => {
                            deadline = Some(self.deadline());
                        }
                        _ = sleep_until(deadline) => {}
                    }
                    continue;
                }
            } else if self.step() {
                continue;
            }
            if self.is_done() {
                return Ok(());
            }
            let accepting = self.accepting();
            // A held detail waits for a completed call, not for its time.
            let details_due = self.details_due.filter(|_| !self.detail_held());
            let flush_at = [
                self.coalescer.as_ref().and_then(|c| c.flush_at),
                details_due,
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                Some(done) = self.window.in_flight.next(), if !self.window.in_flight.is_empty() => {
                    self.complete(done);
                }
                frames = input.recv(), if accepting && self.input_open => match frames {
                    Some(frames) => {
                        self.read_ms = now_ms();
                        self.pending.extend(frames);
                    }
                    None => self.input_open = false,
                },
                // A flush can only happen once what waits for the window is sent.
                _ = sleep_until(flush_at), if flush_at.is_some() && self.ready.is_empty() => {}
                _ = shutdown.cancelled(), if deadline.is_none() => {
                    deadline = Some(self.deadline());
                }
                _ = sleep_until(deadline) => {}
            }
        }
    }

    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.settings.shutdown_timeout
    }

    /// True when more input may be taken: nothing waits for a retry and little waits to be sent.
    fn accepting(&self) -> bool {
        self.retries.waiting.is_empty() && self.pending.is_empty() && self.ready.is_empty()
    }

    fn is_done(&self) -> bool {
        !self.input_open
            && self.pending.is_empty()
            && self.ready.is_empty()
            && self.details_ready.is_empty()
            && self.window.in_flight.is_empty()
            && self.retries.waiting.is_empty()
            && self.coalescer.as_ref().is_none_or(|c| c.batch.is_empty())
            && self.details.is_empty()
    }

    /// Does one piece of work that needs no waiting; false when there is none.
    fn step(&mut self) -> bool {
        let detail_members = self.details_ready.front().map_or(0, Detail::members);
        if !self.details_ready.is_empty()
            && self.window.in_flight_detail_calls < DETAIL_CALLS_IN_FLIGHT
            && self.window.has_room(detail_members)
        {
            if let Some(part) = self.details_ready.pop_front() {
                self.details_ready_members -= detail_members;
                self.window.send(Work::Detail(part));
            }
            return true;
        }
        let next_members = self.ready.front().map_or(0, Work::members);
        if !self.ready.is_empty() && self.window.has_room(next_members) {
            if let Some(part) = self.ready.pop_front() {
                self.window.send(part);
            }
            return true;
        }
        if !self.ready.is_empty() {
            return false;
        }
        let judging = if self.coalescer.is_some() {
            // The frames read with it go on into a merge past its message count (fewer writes
            // per message), never past its entries.
            self.details.entries() < DETAIL_MAX_ENTRIES
                && self.details_ready_members <= DETAIL_MEMBERS_WAITING
        } else {
            // A full builder waits for the detail before it to be sent, and the frames with it.
            !self.detail_full()
        };
        if let Some(frame) = judging.then(|| self.pending.pop_front()).flatten() {
            let tally = self.judge(frame);
            match self.coalescer.as_mut() {
                None => self.queue(tally),
                Some(coalescer) => {
                    if let Some(merged) = coalescer.add(tally) {
                        self.queue(merged);
                    }
                }
            }
            return true;
        }
        let input_ended = !self.input_open;
        if let Some(merged) = self
            .coalescer
            .as_mut()
            .and_then(|c| c.take_due(input_ended))
        {
            self.queue(merged);
            return true;
        }
        let details_due = self
            .details_due
            .is_some_and(|at| at <= tokio::time::Instant::now());
        if !self.details.is_empty() && (details_due || input_ended) && !self.detail_held() {
            // Redis is far behind when the builder merged half of all it may while the
            // details before it waited to be sent (a steady stream's 50 ms are far fewer).
            let behind = 2 * self.details.len() >= DETAIL_MAX_MESSAGES
                || 2 * self.details.entries() >= DETAIL_MAX_ENTRIES;
            self.details_due = None;
            let buckets = if self.window.store.rolls_up() {
                Buckets::Rollups
            } else {
                Buckets::All
            };
            let detail = self
                .details
                .take(now_ms(), &self.settings.retention, buckets);
            // Smaller parts than the tallies': each runs in Redis between per-message calls,
            // so its size is the delay it adds to them; unless those calls queue anyway.
            let part = if self.coalescer.is_some() {
                COALESCING_DETAIL_CALL_MEMBERS
            } else if behind {
                DETAIL_CALL_MEMBERS_BEHIND
            } else {
                DETAIL_CALL_MEMBERS
            };
            let max = self.settings.call_members_max.min(part);
            for part in detail.split(max) {
                self.details_ready_members += part.members();
                self.details_ready.push_back(part);
            }
            return true;
        }
        false
    }

    /// Per-message mode: while the last detail's parts still wait to be sent, Redis is behind,
    /// and the builder goes on merging instead of sending ([`DETAIL_MAX_MESSAGES`]).
    fn detail_held(&self) -> bool {
        self.coalescer.is_none() && !self.details_ready.is_empty()
    }

    /// True when the builder holds all one detail may merge: [`DETAIL_MAX_MESSAGES`] (or
    /// [`COALESCING_DETAIL_MAX_MESSAGES`]) messages, or [`DETAIL_MAX_ENTRIES`] entries.
    fn detail_full(&self) -> bool {
        let max_messages = if self.coalescer.is_some() {
            COALESCING_DETAIL_MAX_MESSAGES
        } else {
            DETAIL_MAX_MESSAGES
        };
        self.details.len() >= max_messages || self.details.entries() >= DETAIL_MAX_ENTRIES
    }

    fn queue(&mut self, tally: Tally) {
        let max = self.settings.call_members_max;
        self.ready
            .extend(tally.split(max).into_iter().map(Work::Tally));
    }

    /// What one frame adds to the all-time lists; its details go to the builder.
    fn judge(&mut self, frame: Frame) -> Tally {
        self.progress.read.fetch_add(1, Ordering::Relaxed);
        let rules = &self.settings.rules;
        let tally = match frame {
            Frame::Payload(payload) => {
                let judged = rules.judge(&payload, self.read_ms);
                if let Some(message) = judged.message {
                    let (stats, history) = (rules.full, rules.history);
                    let entry = history.then(|| {
                        // Messages without an upstream id get this writer's id and a number.
                        self.made_up_ids += 1;
                        let (writer, n) = (&self.window.writer, self.made_up_ids);
                        HistoryEntry::of(&message, || format!("{writer}-{n:x}"))
                    });
                    self.details.add(&message, stats, entry);
                    if self.detail_full() {
                        self.details_due = Some(tokio::time::Instant::now());
                    } else if self.details_due.is_none() {
                        self.details_due =
                            Some(tokio::time::Instant::now() + self.settings.detail_interval);
                    }
                }
                judged.tally
            }
            Frame::Oversized(prefix) => {
                let max = rules.failed_max;
                warn!(
                    kept_bytes = prefix.len().min(max),
                    "line over the length cap: recorded as a failed message"
                );
                Tally::failed(&prefix, max)
            }
        };
        if let Some(failed) = tally.failed.first() {
            debug!(payload = %String::from_utf8_lossy(failed), "failed message");
        }
        tally
    }

    fn complete(&mut self, (seq, work, outcome, rtt): Done) {
        self.window.in_flight_weight -= work.weight();
        self.window.in_flight_details -= work.detail_messages();
        self.window.in_flight_members -= work.members();
        self.window.in_flight_detail_calls -= usize::from(matches!(work, Work::Detail(_)));
        metrics::calls_in_flight(self.window.in_flight.len());
        match outcome {
            Ok(_) => {
                self.progress.record(&work, rtt);
                self.window.acknowledge(seq);
            }
            Err(err) => {
                self.progress.retries.fetch_add(1, Ordering::Relaxed);
                metrics::store_retry();
                self.retries.add(seq, work, &err);
            }
        }
    }

    /// Stops at the shutdown deadline: counts what was read and not confirmed recorded.
    async fn give_up(&mut self, input: &mut mpsc::Receiver<Vec<Frame>>) -> WorkerError {
        let mut unrecorded = self.pending.len() as u64;
        unrecorded += self.ready.iter().map(Work::weight).sum::<u64>();
        unrecorded += self.retries.waiting.values().map(Work::weight).sum::<u64>();
        let details = self.details.len()
            + self.window.in_flight_details
            + self.details_ready.iter().map(|d| d.messages).sum::<u64>()
            + self
                .ready
                .iter()
                .chain(self.retries.waiting.values())
                .map(Work::detail_messages)
                .sum::<u64>();
        if let Some(coalescer) = self.coalescer.as_ref() {
            unrecorded += coalescer.batch.len() as u64;
        }
        // Calls still in flight may yet be applied, but nothing confirms it.
        unrecorded += self.window.in_flight_weight;
        // The reader stops at shutdown; what it had queued was read and is not recorded.
        while let Some(frames) = input.recv().await {
            unrecorded += frames.len() as u64;
        }
        let mut cause = if self.retries.waiting.is_empty() {
            format!(
                "not done within the shutdown timeout of {} ms",
                self.settings.shutdown_timeout.as_millis()
            )
        } else {
            self.retries.last_error.clone()
        };
        if details > 0 {
            cause.push_str(&format!(
                "; the statistics by room, nick, emote and time of {details} messages were not confirmed either"
            ));
        }
        WorkerError::Unrecorded { unrecorded, cause }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
        // Not cancelled by shutdown: what was read is handed over, to be recorded or counted.
        if !batch.is_empty() && tx.send(batch).await.is_err() {
            return Ok(());
        }
        if !more {
            return Ok(());
        }
    }
}

/// Runs the store's housekeeping ([`Store::maintain`]: rolling up hours and days) every
/// [`MAINTENANCE_INTERVAL`]; a failure is retried at the next tick. Only the full statistics
/// have anything to roll up: with `STATISTICS=basic` (`full == false`) nothing runs, and the
/// worker writes part 1's keys only.
pub(crate) fn spawn_maintenance<S: Store>(store: S, full: bool) -> Option<JoinHandle<()>> {
    if !full {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(MAINTENANCE_INTERVAL);
        loop {
            ticks.tick().await;
            if let Err(err) = store.maintain(now_ms()).await {
                debug!(error = %err, "housekeeping failed; retried at the next tick");
            }
        }
    }))
}

/// Runs the store's housekeeping until it has nothing left to roll up (or fails).
async fn catch_up<S: Store>(store: &S) {
    // Bounded: each run rolls up at least one hour while there is one to roll up, and what
    // is kept holds a bounded number of hours.
    for _ in 0..10_000 {
        let before = store.rolled().await;
        if let Err(err) = store.maintain(now_ms()).await {
            debug!(error = %err, "housekeeping after the input failed");
            return;
        }
        match (before, store.rolled().await) {
            (Ok(before), Ok(after)) if before != after => {}
            _ => return,
        }
    }
}

/// How often the worker runs the store's housekeeping.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(10);

pub(crate) fn spawn_progress(progress: Arc<Progress>, every: Duration) -> JoinHandle<()> {
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::memory::MemoryStore;

    /// A message of three members (its second, nick and word), so that the own calls of a
    /// whole detail's messages fit in the members allowed in flight at once.
    fn frame(i: usize) -> Frame {
        Frame::Payload(Bytes::from(format!(
            r##"{{"nick":"n{}","body":"w{}"}}"##,
            i % 7,
            i % 11
        )))
    }

    /// Messages whose details are in flight or waiting to be sent.
    fn details_sent<S: Store>(worker: &Worker<S>) -> u64 {
        worker.window.in_flight_details
            + worker.details_ready.iter().map(|d| d.messages).sum::<u64>()
    }

    /// A full worker's settings, with room in the window for every message's own call: they
    /// are never polled here.
    fn full_settings() -> WorkerSettings {
        WorkerSettings {
            rules: Rules {
                full: true,
                ..Rules::basic(4096)
            },
            window: 2 * DETAIL_MAX_MESSAGES as usize,
            ..WorkerSettings::default()
        }
    }

    /// Parts of details waiting to be sent: their number and their largest, in members.
    fn waiting_parts<S: Store>(worker: &Worker<S>) -> (usize, usize) {
        let largest = worker.details_ready.iter().map(Detail::members).max();
        (worker.details_ready.len(), largest.unwrap_or(0))
    }

    #[tokio::test]
    async fn a_detail_merged_while_redis_is_far_behind_goes_in_larger_parts() {
        // Two distinct words per message: a detail of n messages has thousands of members.
        let wide = |i: usize| {
            Frame::Payload(Bytes::from(format!(
                r##"{{"nick":"n{}","body":"w{i} x{i}"}}"##,
                i % 7
            )))
        };
        let settings = full_settings();
        for (messages, part) in [
            // A steady stream's detail: small parts, each a short delay to the messages' calls.
            (300, DETAIL_CALL_MEMBERS),
            // Merged while the details before it waited: those calls queue anyway.
            (DETAIL_MAX_MESSAGES as usize / 2, DETAIL_CALL_MEMBERS_BEHIND),
        ] {
            let store = MemoryStore::new(100, 3600);
            let mut worker = Worker::new(store, "test".into(), settings.clone(), Arc::default());
            worker.pending.extend((0..messages).map(wide));
            // The input ended: the detail is taken as soon as every frame is judged.
            worker.input_open = false;
            while worker.step() {}
            assert!(worker.details.is_empty(), "the detail was taken");
            let (waiting, largest) = waiting_parts(&worker);
            assert!(waiting >= 2, "{messages} messages: {waiting} parts waiting");
            assert!(
                largest <= part && largest > part / 2,
                "{messages} messages: parts of up to {largest} members, not about {part}"
            );
        }
    }

    #[tokio::test]
    async fn a_detail_merges_on_while_the_last_one_waits_to_be_sent() {
        let settings = full_settings();
        let store = MemoryStore::new(100, 3600);
        let mut worker = Worker::new(store, "test".into(), settings, Arc::default());
        // Three parts of an earlier detail: two go in flight (not polled yet), one waits.
        worker
            .details_ready
            .extend(std::iter::repeat_n(Detail::default(), 3));
        let frames = DETAIL_MAX_MESSAGES as usize + 500;
        worker.pending.extend((0..frames).map(frame));
        while worker.step() {}
        assert_eq!(worker.details_ready.len(), 1, "the third part still waits");
        assert_eq!(
            worker.details.len(),
            DETAIL_MAX_MESSAGES,
            "merged up to the cap"
        );
        assert_eq!(worker.pending.len(), 500, "no frame judged beyond the cap");

        // Once the earlier parts are sent, the merged messages go as one detail, and judging
        // resumes.
        while details_sent(&worker) == 0 {
            let done = worker
                .window
                .in_flight
                .next()
                .await
                .expect("a call in flight");
            worker.complete(done);
            while worker.step() {}
        }
        assert_eq!(details_sent(&worker), DETAIL_MAX_MESSAGES);
        assert!(worker.pending.is_empty());
        assert_eq!(worker.details.len(), 500);
    }
}
