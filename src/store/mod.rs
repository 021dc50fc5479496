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

use crate::message::{Tally, TopList};

/// A top-list entry: member and count.
pub type Entry = (String, u64);

/// Identifies one application of a tally, so that a retried one is recognised and applied once.
///
/// A writer promises never to have a call in flight `window` or more sequence numbers below its
/// newest one; the store then needs only the highest applied number and a `window`-bit map
/// below it to recognise every retry (see `lua/apply.lua`), a fixed size whatever happens.
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

    /// Checks that the store answers; returns a short status such as `ready`.
    fn health(&self) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// What this store is, for logs (`redis://localhost:6379/ (namespace chat-stats:)`).
    fn describe(&self) -> String;
}

/// The current Unix time in whole seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
