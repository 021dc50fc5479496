//! Where statistics are kept: the [`Store`] trait and its two implementations.
//!
//! [`redis::RedisStore`] is the production store, compatible with the TypeScript service's keys
//! ([`keys`]). [`memory::MemoryStore`] keeps the same statistics in process, with the same
//! semantics and the same top-list order, for the one-command demo and for tests. The contract
//! test suite runs the same test bodies against both.

mod keys;
pub mod memory;
pub mod redis;

use std::future::Future;
use std::sync::Arc;

use crate::detail::{Detail, Period, Scope, Seen};
use crate::message::{Tally, TopList};
use crate::timeline::{Bucket, Rolled};

/// A top-list entry: member and count.
pub type Entry = (String, u64);

/// What is known of one room or nick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Its messages: its count in the all-time rooms or nicks list.
    pub messages: u64,
    /// Its earliest message time (Unix ms); `None` when only the all-time lists know it
    /// (recorded with `STATISTICS=basic`, or by the TypeScript service).
    pub first_ms: Option<u64>,
    /// Its latest message time (Unix ms).
    pub last_ms: Option<u64>,
    /// A nick's 1-based position in the nicks list (`None` for rooms).
    pub rank: Option<u64>,
}

/// A page of the history, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// The entries, as the API answers them (JSON objects).
    pub entries: Vec<String>,
    /// Where the next (older) page starts, if there is one: an opaque cursor.
    pub next: Option<String>,
}

/// A recorded message as the live feed sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// Its room, to filter by.
    pub room: bytes::Bytes,
    /// The entry, as the API answers it (a JSON object).
    pub json: Arc<str>,
}

/// Live messages waiting to be read by one subscriber at most; a slower one loses the oldest.
pub const LIVE_BACKLOG: usize = 1024;

/// Orders entries as the top lists are ordered — highest count first, equal counts by member
/// in descending byte order (Redis's `ZREVRANGE`) — and keeps the first `limit`.
pub fn rank_entries(mut entries: Vec<Entry>, limit: usize) -> Vec<Entry> {
    entries.sort_unstable_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| b.0.as_bytes().cmp(a.0.as_bytes()))
    });
    entries.truncate(limit);
    entries
}

/// Identifies one application of a tally, so that a retried one is recognised and applied once.
///
/// A writer promises never to have a call in flight `window` or more sequence numbers below its
/// newest one; the store then needs only the highest applied number and a `window`-bit map
/// below it to recognise every retry (see `lua/mark.lua`), a fixed size whatever happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The writer (one per worker process).
    pub writer: Arc<str>,
    /// Increasing sequence number of the tally within that writer, from 1.
    pub seq: u64,
    /// The writer's window: the most sequence numbers it spans with calls in flight.
    pub window: u64,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer in time, though it is connected.
    #[error("the store did not answer within {0} ms")]
    Timeout(u64),
    /// The store cannot be reached; the cause is the last connection error (refused, wrong
    /// password, unknown host…).
    #[error("cannot reach redis: {0}")]
    Unreachable(String),
    /// The store answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// The store holds data of an unexpected shape.
    #[error("unexpected data in the store: {0}")]
    Data(String),
    /// A history cursor that this store did not give.
    #[error("not a cursor of this history: {0}")]
    Cursor(String),
    /// This store cannot do what was asked (the in-memory store has no inbox): the reason, for
    /// the client.
    #[error("{0}")]
    Unsupported(String),
}

/// Storage of the statistics, shared by any number of workers and API instances.
///
/// Implementations are cheap to clone handles onto shared state.
pub trait Store: Clone + Send + Sync + 'static {
    /// Applies `tally` atomically. With a `mark`, a tally whose (writer, sequence number) was
    /// applied before is skipped — its first reply was lost, or it arrived twice — in whatever
    /// order retries arrive; returns whether it was applied.
    fn apply(
        &self,
        tally: &Tally,
        mark: Option<&Mark>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Applies increments of the statistics by room, nick, emote and time atomically; with a
    /// `mark`, at most once, like [`Store::apply`].
    fn apply_detail(
        &self,
        detail: &Detail,
        mark: Option<&Mark>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The `limit` highest counts of `list` in `scope`, summed over `periods`: highest first,
    /// ties in descending byte order.
    fn top_in(
        &self,
        list: TopList,
        scope: &Scope,
        periods: &[Period],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send;

    /// Messages counted in `scope` during each of `buckets`.
    fn activity(
        &self,
        scope: &Scope,
        buckets: &[Bucket],
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send;

    /// What is known of the room or nick `name`; `None` when it was never seen.
    fn profile(
        &self,
        kind: Seen,
        name: &str,
    ) -> impl Future<Output = Result<Option<Profile>, StoreError>> + Send;

    /// Distinct nicks that wrote in `room` during `periods` (all time: `[Period::AllTime]`).
    fn unique_chatters(
        &self,
        room: &str,
        periods: &[Period],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The recorded messages of `scope` (everything, a room or a nick), newest first: at most
    /// `limit`, older than the cursor `before` when given. With `in_room`, a nick's messages
    /// in that room only; such a page may hold fewer than `limit` with a cursor to go on from
    /// (its cost is bounded, not its yield).
    fn history(
        &self,
        scope: &Scope,
        in_room: Option<&[u8]>,
        before: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<HistoryPage, StoreError>> + Send;

    /// The recorded message whose id is `id`, while it is kept.
    fn message(&self, id: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Every message recorded from now on, by any worker (a slow reader loses the oldest).
    /// Resolves once the feed is in place: a message recorded after that is received.
    fn subscribe(&self) -> impl Future<Output = tokio::sync::broadcast::Receiver<Live>> + Send;

    /// True when the store rolls hour and day buckets up from minutes itself (Redis), so that
    /// writers send minutes only (and late messages for hours and days that ended).
    fn rolls_up(&self) -> bool;

    /// Which hour and day buckets can be read (see [`Rolled`]).
    fn rolled(&self) -> impl Future<Output = Result<Rolled, StoreError>> + Send;

    /// Housekeeping a worker runs every few seconds: Redis rolls up the minutes of hours (and
    /// the hours of days) that ended into their buckets. Any number of workers may call it.
    fn maintain(&self, now_ms: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The `limit` highest counts of `list`: highest first, ties in descending byte order.
    fn top(
        &self,
        list: TopList,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send;

    /// Messages counted during Unix second `second`, by all writers.
    fn messages_in_second(
        &self,
        second: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The kept failed payloads, newest first; at most `limit` of them (`None`: all).
    fn failed_messages(
        &self,
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// How many failed messages were ever recorded (duplicates included).
    fn failed_total(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Appends `payloads` (raw JSON objects, as posted) to the inbox that workers consume, in
    /// order and atomically: all of them or none; with a `mark`, at most once per mark (a
    /// retry of a call that was appended though its reply was lost appends nothing). Never
    /// trims the inbox: only its consumers may drop what they have acknowledged.
    fn append_inbox(
        &self,
        payloads: &[bytes::Bytes],
        mark: Option<&Mark>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Checks that the store answers; returns a short status such as `ready`.
    fn health(&self) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// What this store is, for logs (`redis://localhost:6379/ (namespace chat-stats:)`).
    fn describe(&self) -> String;

    /// Why the store cannot be reached now, when that is known (not connected, and the last
    /// connection attempt said why): what a call that timed out reports.
    fn unreachable(&self) -> Option<String> {
        None
    }
}

/// The current Unix time in whole seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
