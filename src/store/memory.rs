//! The in-memory store: the same statistics as Redis, kept in this process.
//!
//! A top list is a map member → count plus an ordered set of `(count, member)`, so an update is
//! O(log n) and a top-k read walks k entries from the high end. The set orders equal counts by
//! member bytes, and reading it from the high end gives the descending byte order that Redis's
//! `ZREVRANGE` gives. Members are stored once and shared by both structures. The statistics by
//! room, nick, emote and time are rankings too, one per [`Place`]; buckets are dropped once
//! their retention has passed, as Redis expires them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{
    Entry, HistoryPage, LIVE_BACKLOG, Live, Mark, Profile, Store, StoreError, rank_entries,
    unix_now,
};
use crate::detail::{Detail, HistoryEntry, Period, Place, Scope, Seen};
use crate::message::{Tally, TopList};
use crate::timeline::{Bucket, Retention, Rolled};

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

    fn count(&self, member: &str) -> Option<u64> {
        self.counts.get(member).copied()
    }

    /// The 1-based position of `member` in `ZREVRANGE` order.
    fn rank(&self, member: &str) -> Option<u64> {
        let count = self.count(member)?;
        let above = self.order.range((count, Arc::from(member))..).count();
        Some(above as u64)
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

/// One writer's applied sequence numbers, by the rule of `lua/mark.lua`: the highest, and which
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
    detail: Mutex<DetailState>,
    history: Mutex<History>,
    live: LiveSender,
}

/// The live feed's sender (a `Default` one, so that `Inner` can derive it).
#[derive(Debug)]
struct LiveSender(tokio::sync::broadcast::Sender<Live>);

impl Default for LiveSender {
    fn default() -> Self {
        LiveSender(tokio::sync::broadcast::channel(LIVE_BACKLOG).0)
    }
}

/// One kept message.
#[derive(Debug)]
struct Kept {
    seq: u64,
    recorded_ms: u64,
    id: String,
    room: Bytes,
    json: Arc<str>,
}

/// The most recorded messages this process keeps, whatever `HISTORY_RETENTION` says: a day of
/// the built-in stream would otherwise hold gigabytes of the process's memory (Redis keeps what
/// the retention says; size it there).
const MAX_KEPT: usize = 500_000;

/// The recorded messages, oldest first, numbered; and per room and nick their numbers.
#[derive(Debug, Default)]
struct History {
    kept: VecDeque<Kept>,
    by_scope: HashMap<Scope, VecDeque<u64>>,
    by_id: HashMap<String, u64>,
    next: u64,
}

impl History {
    fn keep(&mut self, entry: &HistoryEntry, now_ms: u64) {
        self.next += 1;
        let seq = self.next;
        self.by_id.insert(entry.id.clone(), seq);
        for scope in [
            Scope::Room(entry.room.clone()),
            Scope::Nick(entry.nick.clone()),
        ] {
            if !matches!(&scope, Scope::Room(n) | Scope::Nick(n) if n.is_empty()) {
                self.by_scope.entry(scope).or_default().push_back(seq);
            }
        }
        self.kept.push_back(Kept {
            seq,
            recorded_ms: now_ms,
            id: entry.id.clone(),
            room: entry.room.clone(),
            json: entry.json.as_str().into(),
        });
    }

    /// Drops what was recorded before `oldest_ms`, and the oldest past the `cap` newest.
    fn trim(&mut self, oldest_ms: u64, cap: usize) {
        while self
            .kept
            .front()
            .is_some_and(|k| k.recorded_ms < oldest_ms || self.kept.len() > cap)
        {
            if let Some(gone) = self.kept.pop_front() {
                if self.by_id.get(&gone.id) == Some(&gone.seq) {
                    self.by_id.remove(&gone.id);
                }
            }
        }
        let first = self.kept.front().map_or(self.next + 1, |k| k.seq);
        self.by_scope.retain(|_, seqs| {
            while seqs.front().is_some_and(|s| *s < first) {
                seqs.pop_front();
            }
            !seqs.is_empty()
        });
    }

    fn get(&self, seq: u64) -> Option<&Kept> {
        let first = self.kept.front()?.seq;
        self.kept.get(seq.checked_sub(first)? as usize)
    }
}

/// The statistics by room, nick, emote and time.
#[derive(Debug, Default)]
struct DetailState {
    lists: HashMap<Place, Ranking>,
    activity: HashMap<(Scope, Bucket), u64>,
    seen: HashMap<(Seen, Bytes), (u64, u64)>,
    /// The minute of the last sweep of expired buckets.
    swept_minute: u64,
}

impl DetailState {
    /// Drops the buckets no longer kept at `now_ms` (at most once a minute).
    fn sweep(&mut self, now_ms: u64, retention: &Retention) {
        let minute = now_ms / 60_000;
        if minute == self.swept_minute {
            return;
        }
        self.swept_minute = minute;
        self.lists.retain(|place, _| match place.period {
            Period::AllTime => true,
            Period::Bucket(bucket) => retention.keeps(bucket, now_ms),
        });
        self.activity
            .retain(|(_, bucket), _| retention.keeps(*bucket, now_ms));
    }
}

/// A [`Store`] in process memory. Clones share the same statistics.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
    failed_cap: usize,
    second_ttl: u64,
    retention: Retention,
    /// The most recorded messages kept ([`MAX_KEPT`]).
    history_cap: usize,
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
            retention: Retention::default(),
            history_cap: MAX_KEPT,
        }
    }

    /// The same store, keeping at most the `cap` most recently recorded messages (by default
    /// [`MAX_KEPT`]) however recent the others are.
    pub fn with_history_cap(self, cap: usize) -> MemoryStore {
        MemoryStore {
            history_cap: cap,
            ..self
        }
    }

    /// The same store, keeping time buckets for `retention`.
    pub fn with_retention(self, retention: Retention) -> MemoryStore {
        MemoryStore { retention, ..self }
    }

    /// Records `mark`; false when it was applied before (the rule of `lua/mark.lua`).
    fn admit(&self, mark: Option<&Mark>) -> bool {
        let Some(mark) = mark else {
            return true;
        };
        let mut writers = lock(&self.inner.writers);
        let applied = writers.entry(mark.writer.clone()).or_default();
        applied.admit(mark.seq, mark.window)
    }

    /// When the oldest message still kept was recorded (Unix ms): what is older is gone
    /// whether or not a new message trimmed it.
    fn oldest_kept_ms(&self) -> u64 {
        (unix_now() * 1000).saturating_sub(self.retention.history.as_millis() as u64)
    }

    /// Applies a detail without marks; the synchronous core of [`Store::apply_detail`].
    fn apply_detail_now(&self, detail: &Detail) {
        let now = unix_now() * 1000;
        if !detail.history.is_empty() {
            let kept = self.retention.history.as_millis() as u64;
            let mut history = lock(&self.inner.history);
            for entry in &detail.history {
                if kept > 0 {
                    history.keep(entry, now);
                }
                let live = Live {
                    room: entry.room.clone(),
                    json: entry.json.as_str().into(),
                };
                // No subscriber is not an error.
                let _ = self.inner.live.0.send(live);
            }
            history.trim(now.saturating_sub(kept), self.history_cap);
        }
        let mut state = lock(&self.inner.detail);
        state.sweep(now, &self.retention);
        for (place, members) in &detail.lists {
            if let Period::Bucket(bucket) = place.period
                && !self.retention.keeps(bucket, now)
            {
                continue;
            }
            let ranking = state.lists.entry(place.clone()).or_default();
            for (member, n) in members {
                ranking.add(&String::from_utf8_lossy(member), *n);
            }
        }
        for (scope, bucket, n) in &detail.activity {
            if self.retention.keeps(*bucket, now) {
                *state.activity.entry((scope.clone(), *bucket)).or_default() += n;
            }
        }
        for (kind, name, first, last) in &detail.seen {
            let span = state
                .seen
                .entry((*kind, name.clone()))
                .or_insert((*first, *last));
            *span = (span.0.min(*first), span.1.max(*last));
        }
    }

    /// Runs `read` on the ranking of `list` of `scope` in `period`, if there is one.
    fn with_ranking<T>(
        &self,
        list: TopList,
        scope: &Scope,
        period: &Period,
        read: impl FnOnce(&Ranking) -> T,
    ) -> Option<T> {
        if *scope == Scope::Global && *period == Period::AllTime && list != TopList::Emotes {
            return Some(read(&lock(&self.inner.rankings[list.index()])));
        }
        let place = Place {
            scope: scope.clone(),
            period: *period,
            list,
        };
        let state = lock(&self.inner.detail);
        state.lists.get(&place).map(read)
    }

    /// Distinct members of an all-time list.
    pub fn len(&self, list: TopList) -> usize {
        self.with_ranking(list, &Scope::Global, &Period::AllTime, |r| r.counts.len())
            .unwrap_or(0)
    }

    /// Applies a tally without marks; the synchronous core of [`Store::apply`].
    pub fn apply_now(&self, tally: &Tally) {
        let _whole = lock(&self.inner.apply);
        for list in TopList::IMMEDIATE {
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
        let admitted = self.admit(mark);
        if admitted {
            self.apply_now(tally);
        }
        Ok(admitted)
    }

    async fn apply_detail(&self, detail: &Detail, mark: Option<&Mark>) -> Result<bool, StoreError> {
        let admitted = self.admit(mark);
        if admitted {
            self.apply_detail_now(detail);
        }
        Ok(admitted)
    }

    async fn top_in(
        &self,
        list: TopList,
        scope: &Scope,
        periods: &[Period],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        if let [period] = periods {
            return Ok(self
                .with_ranking(list, scope, period, |r| r.top(limit))
                .unwrap_or_default());
        }
        let mut sums: HashMap<Arc<str>, u64> = HashMap::new();
        for period in periods {
            self.with_ranking(list, scope, period, |r| {
                for (member, n) in &r.counts {
                    *sums.entry(member.clone()).or_default() += n;
                }
            });
        }
        let entries = sums.into_iter().map(|(m, n)| (m.to_string(), n)).collect();
        Ok(rank_entries(entries, limit))
    }

    async fn activity(&self, scope: &Scope, buckets: &[Bucket]) -> Result<Vec<u64>, StoreError> {
        let state = lock(&self.inner.detail);
        Ok(buckets
            .iter()
            .map(|b| {
                state
                    .activity
                    .get(&(scope.clone(), *b))
                    .copied()
                    .unwrap_or(0)
            })
            .collect())
    }

    async fn profile(&self, kind: Seen, name: &str) -> Result<Option<Profile>, StoreError> {
        let list = match kind {
            Seen::Room => TopList::Rooms,
            Seen::Nick => TopList::Nicks,
        };
        let (messages, rank) = {
            let ranking = lock(&self.inner.rankings[list.index()]);
            (ranking.count(name), ranking.rank(name))
        };
        let Some(messages) = messages else {
            return Ok(None);
        };
        let key = (kind, Bytes::copy_from_slice(name.as_bytes()));
        let seen = lock(&self.inner.detail).seen.get(&key).copied();
        Ok(Some(Profile {
            messages,
            first_ms: seen.map(|(first, _)| first),
            last_ms: seen.map(|(_, last)| last),
            rank: (kind == Seen::Nick).then_some(rank).flatten(),
        }))
    }

    async fn unique_chatters(&self, room: &str, periods: &[Period]) -> Result<u64, StoreError> {
        let scope = Scope::Room(Bytes::copy_from_slice(room.as_bytes()));
        let mut nicks: HashSet<Arc<str>> = HashSet::new();
        for period in periods {
            self.with_ranking(TopList::Nicks, &scope, period, |r| {
                nicks.extend(r.counts.keys().cloned());
            });
        }
        Ok(nicks.len() as u64)
    }

    fn rolls_up(&self) -> bool {
        false
    }

    async fn history(
        &self,
        scope: &Scope,
        in_room: Option<&[u8]>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let before = match before {
            None => u64::MAX,
            Some(cursor) => cursor
                .strip_prefix('m')
                .and_then(|n| u64::from_str_radix(n, 16).ok())
                .ok_or_else(|| StoreError::Cursor(cursor.to_owned()))?,
        };
        let mut history = lock(&self.inner.history);
        history.trim(self.oldest_kept_ms(), self.history_cap);
        let older: Vec<u64> = match scope {
            Scope::Global => {
                let upto = history.kept.partition_point(|k| k.seq < before);
                history
                    .kept
                    .range(..upto)
                    .rev()
                    .take(limit + 1)
                    .map(|k| k.seq)
                    .collect()
            }
            other => match history.by_scope.get(other) {
                None => Vec::new(),
                Some(seqs) => {
                    let upto = seqs.partition_point(|s| *s < before);
                    let in_room = |seq: &u64| {
                        in_room.is_none_or(|room| {
                            history.get(*seq).is_some_and(|k| k.room.as_ref() == room)
                        })
                    };
                    seqs.range(..upto)
                        .rev()
                        .filter(|seq| in_room(seq))
                        .take(limit + 1)
                        .copied()
                        .collect()
                }
            },
        };
        let more = older.len() > limit;
        let page: Vec<u64> = older.into_iter().take(limit).collect();
        Ok(HistoryPage {
            entries: page
                .iter()
                .filter_map(|seq| history.get(*seq).map(|k| k.json.to_string()))
                .collect(),
            next: page.last().filter(|_| more).map(|seq| format!("m{seq:x}")),
        })
    }

    async fn message(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut history = lock(&self.inner.history);
        history.trim(self.oldest_kept_ms(), self.history_cap);
        Ok(history
            .by_id
            .get(id)
            .and_then(|seq| history.get(*seq))
            .map(|k| k.json.to_string()))
    }

    async fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Live> {
        self.inner.live.0.subscribe()
    }

    async fn rolled(&self) -> Result<Rolled, StoreError> {
        // Every bucket is written directly.
        Ok(Rolled::ALL)
    }

    async fn maintain(&self, _now_ms: u64) -> Result<(), StoreError> {
        Ok(())
    }

    async fn top(&self, list: TopList, limit: usize) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .with_ranking(list, &Scope::Global, &Period::AllTime, |r| r.top(limit))
            .unwrap_or_default())
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

    async fn append_inbox(
        &self,
        _payloads: &[bytes::Bytes],
        _mark: Option<&Mark>,
    ) -> Result<(), StoreError> {
        // The inbox is a queue shared by processes that must outlive any of them: Redis only.
        Err(StoreError::Unsupported(
            "ingestion needs Redis: set REDIS_URL".to_owned(),
        ))
    }

    async fn health(&self) -> Result<String, StoreError> {
        Ok("in-memory".to_owned())
    }

    fn describe(&self) -> String {
        "the in-memory store (statistics are lost when the process stops)".to_owned()
    }
}
