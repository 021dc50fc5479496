//! The in-memory store: the same statistics as Redis, kept in this process.
//!
//! A top list is a map member → count plus an ordered set of `(count, member)`, so an update is
//! O(log n) and a top-k read walks k entries from the high end. The set orders equal counts by
//! member bytes, and reading it from the high end gives the descending byte order that Redis's
//! `ZREVRANGE` gives. Members are stored once and shared by both structures; part 1's lists
//! are kept so. The statistics by room, nick, emote and time keep a plain map member number →
//! count per list instead ([`DetailState`]): most of their lists are time buckets, and a message
//! lands in a minute, an hour and a day, for everything and for its room, so they hold most of
//! the entries. Every name is stored once for all of them ([`Names`]). Buckets are dropped once
//! their retention has passed, as Redis expires them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::{Entry, HistoryPage, LIVE_BACKLOG, Live, Mark, Profile, Store, StoreError, unix_now};
use crate::detail::{Detail, HistoryEntry, Period, Place, Scope, Seen};
use crate::message::{Tally, TopList};
use crate::timeline::{Bucket, Granularity, Retention, Rolled};

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
    /// The message's id, shared with `History::by_id`.
    id: Arc<str>,
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
    by_id: HashMap<Arc<str>, u64>,
    next: u64,
}

impl History {
    fn keep(&mut self, entry: &HistoryEntry, now_ms: u64) {
        self.next += 1;
        let seq = self.next;
        let id: Arc<str> = entry.id.as_str().into();
        self.by_id.insert(id.clone(), seq);
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
            id,
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

/// Every name of the statistics by room, nick, emote and time (members, rooms and nicks),
/// stored once and numbered. Never shrinks: every name in it is also in an all-time list, which
/// keeps it anyway. Names come from the upstream, so this map keeps the standard hasher (its
/// random keys resist collisions made on purpose); the maps keyed by number use a fast one.
#[derive(Debug, Default)]
struct Names {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Names {
    /// The number of `name`, storing it the first time it is met.
    ///
    /// 32 bits: 2^32 names would take hundreds of gigabytes before they ran out (the last
    /// number would then be shared).
    fn id(&mut self, name: &[u8]) -> u32 {
        let name = String::from_utf8_lossy(name);
        if let Some(id) = self.ids.get(name.as_ref()) {
            return *id;
        }
        let Ok(id) = u32::try_from(self.names.len()) else {
            return u32::MAX;
        };
        let name: Arc<str> = Arc::from(name.as_ref());
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    /// The number of `name`, if it was ever stored.
    fn find(&self, name: &[u8]) -> Option<u32> {
        self.ids
            .get(String::from_utf8_lossy(name).as_ref())
            .copied()
    }

    fn name(&self, id: u32) -> &Arc<str> {
        &self.names[id as usize]
    }

    /// The numbered form of `scope`, its name stored the first time it is met.
    fn store_scope(&mut self, scope: &Scope) -> ScopeKey {
        match scope {
            Scope::Global => ScopeKey::Global,
            Scope::Room(name) => ScopeKey::Room(self.id(name)),
            Scope::Nick(name) => ScopeKey::Nick(self.id(name)),
        }
    }

    /// The numbered form of `scope`; `None` for a room or nick never stored.
    fn find_scope(&self, scope: &Scope) -> Option<ScopeKey> {
        Some(match scope {
            Scope::Global => ScopeKey::Global,
            Scope::Room(name) => ScopeKey::Room(self.find(name)?),
            Scope::Nick(name) => ScopeKey::Nick(self.find(name)?),
        })
    }
}

/// A [`Scope`] with its name numbered ([`Names`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ScopeKey {
    Global,
    Room(u32),
    Nick(u32),
}

/// A [`Place`] with its name numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ListKey {
    scope: ScopeKey,
    period: Period,
    list: TopList,
}

/// One list: member number ([`Names`]) → count, in 32 bits until a count needs more (8 bytes
/// an entry instead of 16).
#[derive(Debug)]
enum Counts {
    Narrow(FxHashMap<u32, u32>),
    Wide(FxHashMap<u32, u64>),
}

impl Default for Counts {
    fn default() -> Self {
        Counts::Narrow(FxHashMap::default())
    }
}

impl Counts {
    fn add(&mut self, id: u32, n: u64) {
        if let Counts::Narrow(narrow) = self {
            let count = narrow.entry(id).or_default();
            if let Some(sum) = u32::try_from(n).ok().and_then(|n| count.checked_add(n)) {
                *count = sum;
                return;
            }
            let wide = narrow.drain().map(|(id, n)| (id, u64::from(n))).collect();
            *self = Counts::Wide(wide);
        }
        if let Counts::Wide(wide) = self {
            let count = wide.entry(id).or_default();
            *count = count.saturating_add(n);
        }
    }

    fn len(&self) -> usize {
        match self {
            Counts::Narrow(narrow) => narrow.len(),
            Counts::Wide(wide) => wide.len(),
        }
    }

    /// Calls `each` with every member number and its count.
    fn for_each(&self, mut each: impl FnMut(u32, u64)) {
        match self {
            Counts::Narrow(narrow) => narrow.iter().for_each(|(id, n)| each(*id, u64::from(*n))),
            Counts::Wide(wide) => wide.iter().for_each(|(id, n)| each(*id, *n)),
        }
    }
}

/// The statistics by room, nick, emote and time.
///
/// Every list is a plain map, not a [`Ranking`]: most are time buckets, read whole (summed
/// over a range) or for a top picked in one pass, and most of the rest are a nick's few
/// members. Rankings here (an ordered set beside each map, a name per list) took about six
/// times the memory per message (a B-tree node is allocated whole even for a list of one;
/// BENCHMARKS.md) and bought only faster tops of the few large lists: a top-10 of a room's
/// 100,000 all-time words is now one pass of about 0.23 ms.
#[derive(Debug, Default)]
struct DetailState {
    names: Names,
    lists: FxHashMap<ListKey, Counts>,
    activity: FxHashMap<(ScopeKey, Bucket), u64>,
    seen: FxHashMap<(Seen, u32), (u64, u64)>,
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
        self.lists.retain(|key, _| match key.period {
            Period::AllTime => true,
            Period::Bucket(bucket) => retention.keeps(bucket, now_ms),
        });
        self.activity
            .retain(|(_, bucket), _| retention.keeps(*bucket, now_ms));
    }

    /// The list at `place`, if there is one.
    fn list(&self, place: &Place) -> Option<Stored<'_>> {
        let key = ListKey {
            scope: self.names.find_scope(&place.scope)?,
            period: place.period,
            list: place.list,
        };
        let counts = self.lists.get(&key)?;
        Some(Stored::Counted(counts, &self.names))
    }

    /// Adds `members` to the list at `place`.
    fn add(&mut self, place: &Place, members: &[(Bytes, u64)]) {
        let key = ListKey {
            scope: self.names.store_scope(&place.scope),
            period: place.period,
            list: place.list,
        };
        let counts = self.lists.entry(key).or_default();
        for (member, n) in members {
            counts.add(self.names.id(member), *n);
        }
    }
}

/// A list as it is kept: ranked (part 1's lists) or plain counts (the statistics by room, nick,
/// emote and time).
enum Stored<'a> {
    Ranked(&'a Ranking),
    Counted(&'a Counts, &'a Names),
}

impl Stored<'_> {
    /// Calls `each` with every member and its count.
    fn each(&self, mut each: impl FnMut(&Arc<str>, u64)) {
        match self {
            Stored::Ranked(ranking) => ranking.counts.iter().for_each(|(m, n)| each(m, *n)),
            Stored::Counted(counts, names) => counts.for_each(|id, n| each(names.name(id), n)),
        }
    }

    fn top(&self, limit: usize) -> Vec<Entry> {
        match self {
            Stored::Ranked(ranking) => ranking.top(limit),
            Stored::Counted(counts, names) => {
                let mut all = Vec::with_capacity(counts.len());
                counts.for_each(|id, n| all.push((names.name(id), n)));
                top_of(all, limit)
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Stored::Ranked(ranking) => ranking.counts.len(),
            Stored::Counted(counts, _) => counts.len(),
        }
    }
}

/// The first `limit` of `entries` in top-list order (as [`super::rank_entries`]), picked without
/// ordering the rest or copying their names.
fn top_of(mut all: Vec<(&Arc<str>, u64)>, limit: usize) -> Vec<Entry> {
    let order = |a: &(&Arc<str>, u64), b: &(&Arc<str>, u64)| {
        b.1.cmp(&a.1)
            .then_with(|| b.0.as_bytes().cmp(a.0.as_bytes()))
    };
    if limit == 0 {
        return Vec::new();
    }
    if all.len() > limit {
        all.select_nth_unstable_by(limit - 1, order);
        all.truncate(limit);
    }
    all.sort_unstable_by(order);
    all.into_iter()
        .map(|(member, n)| (member.to_string(), n))
        .collect()
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
            if let Period::Bucket(bucket) = place.period {
                // There is no roll-up here: what a room's minutes stand for goes to all time
                // at once.
                if detail.folds
                    && bucket.granularity == Granularity::Minute
                    && matches!(place.scope, Scope::Room(_))
                {
                    let all_time = Place {
                        period: Period::AllTime,
                        ..place.clone()
                    };
                    state.add(&all_time, members);
                }
                if !self.retention.keeps(bucket, now) {
                    continue;
                }
            }
            state.add(place, members);
        }
        for (scope, bucket, n) in &detail.activity {
            if self.retention.keeps(*bucket, now) {
                let scope = state.names.store_scope(scope);
                *state.activity.entry((scope, *bucket)).or_default() += n;
            }
        }
        for (kind, name, first, last) in &detail.seen {
            let name = state.names.id(name);
            let span = state.seen.entry((*kind, name)).or_insert((*first, *last));
            *span = (span.0.min(*first), span.1.max(*last));
        }
    }

    /// Runs `read` on `list` of `scope` in `period`, if there is one.
    fn with_list<T>(
        &self,
        list: TopList,
        scope: &Scope,
        period: &Period,
        read: impl FnOnce(Stored<'_>) -> T,
    ) -> Option<T> {
        if *scope == Scope::Global && *period == Period::AllTime && list != TopList::Emotes {
            return Some(read(Stored::Ranked(&lock(
                &self.inner.rankings[list.index()],
            ))));
        }
        let place = Place {
            scope: scope.clone(),
            period: *period,
            list,
        };
        let state = lock(&self.inner.detail);
        state.list(&place).map(read)
    }

    /// Distinct members of an all-time list.
    pub fn len(&self, list: TopList) -> usize {
        self.with_list(list, &Scope::Global, &Period::AllTime, |l| l.len())
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
                .with_list(list, scope, period, |l| l.top(limit))
                .unwrap_or_default());
        }
        let mut sums: HashMap<Arc<str>, u64> = HashMap::new();
        for period in periods {
            self.with_list(list, scope, period, |l| {
                l.each(|member, n| {
                    let sum = sums.entry(member.clone()).or_default();
                    *sum = sum.saturating_add(n);
                })
            });
        }
        Ok(top_of(sums.iter().map(|(m, n)| (m, *n)).collect(), limit))
    }

    async fn activity(&self, scope: &Scope, buckets: &[Bucket]) -> Result<Vec<u64>, StoreError> {
        let state = lock(&self.inner.detail);
        let scope = state.names.find_scope(scope);
        Ok(buckets
            .iter()
            .map(|b| {
                scope
                    .and_then(|scope| state.activity.get(&(scope, *b)))
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
        let seen = {
            let state = lock(&self.inner.detail);
            let name = state.names.find(name.as_bytes());
            name.and_then(|name| state.seen.get(&(kind, name)).copied())
        };
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
            self.with_list(TopList::Nicks, &scope, period, |l| {
                l.each(|nick, _| {
                    nicks.insert(nick.clone());
                })
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
            .with_list(list, &Scope::Global, &Period::AllTime, |l| l.top(limit))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `top_of` picks what sorting everything picks, ties (by member bytes, descending)
    /// included, at every limit.
    #[test]
    fn a_top_picked_in_one_pass_matches_a_full_sort() {
        // Counts 1..=7 over 2,000 members: many ties, cut at every limit below.
        let members: Vec<(Arc<str>, u64)> = (0u64..2_000)
            .map(|i| {
                let count = i.wrapping_mul(2_654_435_761) % 7 + 1;
                (Arc::from(format!("m{:x}", i.wrapping_mul(40_503))), count)
            })
            .collect();
        let all: Vec<Entry> = members.iter().map(|(m, n)| (m.to_string(), *n)).collect();
        for limit in [0, 1, 2, 10, 299, 1_000, 1_999, 2_000, 5_000] {
            let picked = top_of(members.iter().map(|(m, n)| (m, *n)).collect(), limit);
            assert_eq!(
                picked,
                super::super::rank_entries(all.clone(), limit),
                "limit {limit}"
            );
        }
    }

    /// Counts stay exact past 32 bits: the list widens, keeping every other count.
    #[test]
    fn a_count_past_32_bits_widens_its_list_and_stays_exact() {
        let big = u64::from(u32::MAX);
        for (first, second) in [(3, big), (big, 1), (1, big * 5), (big * 5, 0)] {
            let mut counts = Counts::default();
            counts.add(7, 2);
            counts.add(1, first);
            counts.add(1, second);
            let mut all: Vec<(u32, u64)> = Vec::new();
            counts.for_each(|id, n| all.push((id, n)));
            all.sort();
            assert_eq!(all, vec![(1, first + second), (7, 2)], "{first} + {second}");
            assert_eq!(counts.len(), 2);
        }
        let mut narrow = Counts::default();
        narrow.add(1, 5);
        assert!(matches!(narrow, Counts::Narrow(_)));
    }

    /// A detail made for Redis's roll-ups ([`Detail::folds`]) leaves a room's all time to its
    /// minutes: here, with no roll-up, they count for all time at once.
    #[test]
    fn a_rooms_minutes_left_to_a_roll_up_count_for_all_time_at_once() {
        use crate::detail::{Buckets, DetailBuilder};
        use crate::message::Message;

        let store = MemoryStore::new(100, 60);
        let room = Bytes::from_static(b"#a");
        let message = Message {
            time_ms: unix_now() * 1000,
            room: Some(room.clone()),
            nick: Some(Bytes::from_static(b"x")),
            words: vec![(Bytes::from_static(b"hi"), 2)],
            emotes: Vec::new(),
            id: None,
            body: Bytes::new(),
        };
        let mut builder = DetailBuilder::default();
        builder.add(&message, true, None);
        let detail = builder.take(message.time_ms, &Retention::default(), Buckets::Rollups);
        assert!(detail.folds);
        store.apply_detail_now(&detail);
        let place = Place {
            scope: Scope::Room(room),
            period: Period::AllTime,
            list: TopList::Words,
        };
        let state = lock(&store.inner.detail);
        let top = state.list(&place).map(|l| l.top(10));
        assert_eq!(top, Some(vec![("hi".to_owned(), 2)]));
    }

    /// A room's list, a nick's and a bucket's are found by name after they are stored, and a
    /// name never stored finds nothing (and stores nothing).
    #[test]
    fn lists_are_found_by_the_names_they_were_stored_under() {
        let mut state = DetailState::default();
        let place = |scope: Scope| Place {
            scope,
            period: Period::AllTime,
            list: TopList::Words,
        };
        let room = place(Scope::Room(Bytes::from_static(b"#a")));
        let nick = place(Scope::Nick(Bytes::from_static(b"#a")));
        state.add(&room, &[(Bytes::from_static(b"hi"), 2)]);
        state.add(&room, &[(Bytes::from_static(b"hi"), 3)]);
        state.add(&nick, &[(Bytes::from_static(b"yo"), 1)]);
        let top = |place: &Place| state.list(place).map(|l| l.top(10));
        assert_eq!(top(&room), Some(vec![("hi".to_owned(), 5)]));
        assert_eq!(top(&nick), Some(vec![("yo".to_owned(), 1)]));
        assert_eq!(top(&place(Scope::Room(Bytes::from_static(b"#b")))), None);
        assert_eq!(state.names.names.len(), 3);
    }
}
