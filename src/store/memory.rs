//! The in-memory store: the same statistics as Redis, kept in this process.
//!
//! A top list is a map member → count plus an ordered set of `(count, member)`, so an update is
//! O(log n) and a top-k read walks k entries from the high end. The set orders equal counts by
//! member bytes, and reading it from the high end gives the descending byte order that Redis's
//! `ZREVRANGE` gives. Members are stored once and shared by both structures.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Entry, Mark, Store, StoreError};
use crate::message::{Tally, TopList};

/// A top list: counts by member, and the same entries ordered by count then member.
#[derive(Debug, Default)]
struct Ranking {
    counts: HashMap<Arc<str>, u64>,
    order: BTreeSet<(u64, Arc<str>)>,
}

impl Ranking {
    fn add(&mut self, member: &str, by: u64) {
        let (member, old) = match self.counts.get_key_value(member) {
            Some((key, &count)) => {
                let key = key.clone();
                self.order.remove(&(count, key.clone()));
                (key, count)
            }
            None => (Arc::from(member), 0),
        };
        self.order.insert((old + by, member.clone()));
        self.counts.insert(member, old + by);
    }

    fn top(&self, limit: usize) -> Vec<Entry> {
        self.order
            .iter()
            .rev()
            .take(limit)
            .map(|(count, member)| (member.to_string(), *count))
            .collect()
    }
}

/// Failed payloads, unique, the newest `cap` kept.
#[derive(Debug, Default)]
struct Failures {
    total: u64,
    by_payload: HashMap<Arc<[u8]>, u64>,
    by_order: BTreeMap<u64, Arc<[u8]>>,
}

impl Failures {
    fn add(&mut self, payload: &[u8], cap: usize) {
        self.total += 1;
        let payload: Arc<[u8]> = match self.by_payload.get_key_value(payload) {
            Some((key, order)) => {
                let key = key.clone();
                self.by_order.remove(order);
                key
            }
            None => payload.into(),
        };
        self.by_payload.insert(payload.clone(), self.total);
        self.by_order.insert(self.total, payload);
        while self.by_order.len() > cap {
            if let Some((_, oldest)) = self.by_order.pop_first() {
                self.by_payload.remove(&oldest);
            }
        }
    }
}

/// One writer's applied sequence numbers, by the rule of `lua/apply.lua`: the highest, and which
/// of the `window` numbers below it are applied (a ring of bits indexed by `seq % window`).
#[derive(Debug, Default)]
struct Applied {
    highest: u64,
    ring: Vec<bool>,
}

impl Applied {
    /// Records `seq`; false when it was applied before.
    fn admit(&mut self, seq: u64, window: u64) -> bool {
        let window = window.max(1);
        if self.ring.len() as u64 != window {
            *self = Applied {
                highest: 0,
                ring: vec![false; window as usize],
            };
        }
        let slot = |s: u64| (s % window) as usize;
        if seq + window <= self.highest {
            return false;
        }
        if seq <= self.highest {
            return !std::mem::replace(&mut self.ring[slot(seq)], true);
        }
        if self.highest == 0 || seq - self.highest >= window {
            self.ring.fill(false);
        } else {
            for skipped in self.highest + 1..seq {
                self.ring[slot(skipped)] = false;
            }
        }
        self.highest = seq;
        self.ring[slot(seq)] = true;
        true
    }
}

#[derive(Debug, Default)]
struct Inner {
    rankings: [Mutex<Ranking>; 3],
    seconds: Mutex<BTreeMap<u64, u64>>,
    failures: Mutex<Failures>,
    /// Per writer: its applied sequence numbers.
    writers: Mutex<HashMap<Arc<str>, Applied>>,
    /// Serialises whole applications, so a reader never sees half a tally.
    apply: Mutex<()>,
}

/// A [`Store`] in process memory. Clones share the same statistics.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
    failed_cap: usize,
    second_ttl: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these structures half-updated in a way that matters more
    // than losing the service, so keep serving.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryStore {
    /// An empty store keeping the newest `failed_cap` failed payloads and per-second counters
    /// for `second_ttl` seconds.
    pub fn new(failed_cap: usize, second_ttl: u64) -> MemoryStore {
        MemoryStore {
            inner: Arc::default(),
            failed_cap,
            second_ttl,
        }
    }

    /// Distinct members of a list.
    pub fn len(&self, list: TopList) -> usize {
        lock(&self.inner.rankings[list.index()]).counts.len()
    }

    /// Applies a tally without marks; the synchronous core of [`Store::apply`].
    pub fn apply_now(&self, tally: &Tally) {
        let _whole = lock(&self.inner.apply);
        for list in TopList::ALL {
            let incs = tally.list(list);
            if incs.is_empty() {
                continue;
            }
            let mut ranking = lock(&self.inner.rankings[list.index()]);
            for (member, by) in incs {
                ranking.add(&String::from_utf8_lossy(member), *by);
            }
        }
        if !tally.seconds.is_empty() {
            let mut seconds = lock(&self.inner.seconds);
            for &(second, n) in &tally.seconds {
                *seconds.entry(second).or_default() += n;
            }
            let newest = seconds.last_key_value().map(|(s, _)| *s).unwrap_or(0);
            let oldest_kept = newest.saturating_sub(self.second_ttl);
            while seconds
                .first_key_value()
                .is_some_and(|(s, _)| *s < oldest_kept)
            {
                seconds.pop_first();
            }
        }
        if !tally.failed.is_empty() {
            let mut failures = lock(&self.inner.failures);
            for payload in &tally.failed {
                failures.add(payload, self.failed_cap);
            }
        }
    }
}

impl Store for MemoryStore {
    async fn apply(&self, tally: &Tally, mark: Option<&Mark>) -> Result<bool, StoreError> {
        if let Some(mark) = mark {
            let mut writers = lock(&self.inner.writers);
            let applied = writers.entry(mark.writer.clone()).or_default();
            if !applied.admit(mark.seq, mark.window) {
                return Ok(false);
            }
        }
        self.apply_now(tally);
        Ok(true)
    }

    async fn top(&self, list: TopList, limit: usize) -> Result<Vec<Entry>, StoreError> {
        Ok(lock(&self.inner.rankings[list.index()]).top(limit))
    }

    async fn messages_in_second(&self, second: u64) -> Result<u64, StoreError> {
        Ok(lock(&self.inner.seconds).get(&second).copied().unwrap_or(0))
    }

    async fn failed_messages(&self, limit: Option<usize>) -> Result<Vec<String>, StoreError> {
        let failures = lock(&self.inner.failures);
        Ok(failures
            .by_order
            .values()
            .rev()
            .take(limit.unwrap_or(usize::MAX))
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect())
    }

    async fn failed_total(&self) -> Result<u64, StoreError> {
        Ok(lock(&self.inner.failures).total)
    }

    async fn health(&self) -> Result<String, StoreError> {
        Ok("in-memory".to_owned())
    }

    fn describe(&self) -> String {
        "the in-memory store (statistics are lost when the process stops)".to_owned()
    }
}
