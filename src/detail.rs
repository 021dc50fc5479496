//! The statistics by room, nick, emote and time: what a batch of messages adds to them.
//!
//! A [`DetailBuilder`] merges the [`Message`]s of a short interval (`STATS_FLUSH_MS`, 50 ms by
//! default) and turns them into one [`Detail`]: increments of lists kept per scope (everything,
//! one room, one nick) and period (all time, or one minute, hour or day bucket), message counts
//! per bucket (activity), and the earliest and latest message time per room and nick. Merging
//! first is what keeps the cost bounded: in 50 ms of a busy stream a popular word is counted
//! once per bucket, not once per message. Buckets no longer kept ([`Retention`]) are left out;
//! all-time lists get every message, however old. A store that rolls hours and days up itself
//! (Redis) asks for minute buckets only, and for hours and days that have ended (late messages).

use std::collections::HashMap;
use std::hash::{BuildHasher as _, RandomState};

use bytes::Bytes;
use hashbrown::HashTable;
use rustc_hash::FxHashMap;

use crate::message::{Message, TopList};
use crate::timeline::{Bucket, Granularity, Retention, rfc3339};

/// Whose statistics a list is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every message.
    Global,
    /// The messages of one room (as received, untrimmed).
    Room(Bytes),
    /// The messages of one nick (all-time lists only).
    Nick(Bytes),
}

/// Over what time a list counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    /// Since the data began.
    AllTime,
    /// One bucket.
    Bucket(Bucket),
}

/// Where a list is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Place {
    /// Whose.
    pub scope: Scope,
    /// When.
    pub period: Period,
    /// Which list.
    pub list: TopList,
}

/// A room or a nick whose first and last message times are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seen {
    /// A room.
    Room,
    /// A nick.
    Nick,
}

/// One counted message as kept for the history and sent on the live feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Its id: the upstream `id` tag, else one made up.
    pub id: String,
    /// Its room (empty when blank), to filter by.
    pub room: Bytes,
    /// Its nick (empty when blank), to filter by.
    pub nick: Bytes,
    /// The entry as the API answers it: `{"id","time","room","nick","body","emotes":[…]}`.
    pub json: String,
}

impl HistoryEntry {
    /// The entry of `message`, whose id is `id()` when it has none of its own.
    pub fn of(message: &Message, id: impl FnOnce() -> String) -> HistoryEntry {
        /// The emotes of a message, each as often as it was used, as a JSON array.
        struct Emotes<'a>(&'a [(Bytes, u64)]);
        impl serde::Serialize for Emotes<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.iter().flat_map(|(e, n)| {
                    std::iter::repeat_n(String::from_utf8_lossy(e), *n as usize)
                }))
            }
        }
        #[derive(serde::Serialize)]
        struct Shape<'a> {
            id: &'a str,
            time: &'a str,
            room: &'a str,
            nick: &'a str,
            body: &'a str,
            emotes: Emotes<'a>,
        }
        let id = match &message.id {
            Some(own) => String::from_utf8_lossy(own).into_owned(),
            None => id(),
        };
        // Copies: the message's names are slices of its input buffer, which a detail held
        // for seconds would otherwise keep alive.
        let room = message
            .room
            .as_deref()
            .map(Bytes::copy_from_slice)
            .unwrap_or_default();
        let nick = message
            .nick
            .as_deref()
            .map(Bytes::copy_from_slice)
            .unwrap_or_default();
        let (room_text, nick_text) = (
            String::from_utf8_lossy(&room),
            String::from_utf8_lossy(&nick),
        );
        let body = String::from_utf8_lossy(&message.body);
        let time = rfc3339(message.time_ms, true);
        let shape = Shape {
            id: &id,
            time: &time,
            room: &room_text,
            nick: &nick_text,
            body: &body,
            emotes: Emotes(&message.emotes),
        };
        // Sized for the entry as it is when nothing needs escaping (most of them), so that
        // it is written without growing and kept without slack.
        let emotes: usize = message
            .emotes
            .iter()
            .map(|(e, n)| (e.len() + 3) * *n as usize)
            .sum();
        let texts = [shape.id, shape.time, shape.room, shape.nick, shape.body];
        let size = ENTRY_FRAME + texts.iter().map(|t| t.len()).sum::<usize>() + emotes;
        let mut json = Vec::with_capacity(size.saturating_sub(usize::from(emotes > 0)));
        let _ = serde_json::to_writer(&mut json, &shape);
        json.shrink_to_fit();
        HistoryEntry {
            id,
            room,
            nick,
            // serde_json writes UTF-8 only.
            json: String::from_utf8(json).unwrap_or_default(),
        }
    }
}

/// The length of a history entry's JSON around its texts:
/// `{"id":"","time":"","room":"","nick":"","body":"","emotes":[]}`.
const ENTRY_FRAME: usize = 61;

/// Writes of one history entry: the entry, its room's and nick's indexes, its id.
const HISTORY_WRITES: usize = 4;

/// Increments of the statistics by room, nick, emote and time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    /// List increments, by place.
    pub lists: Vec<(Place, Vec<(Bytes, u64)>)>,
    /// Messages counted per scope and bucket.
    pub activity: Vec<(Scope, Bucket, u64)>,
    /// Earliest and latest message time (Unix ms) per room and nick.
    pub seen: Vec<(Seen, Bytes, u64, u64)>,
    /// Messages kept for the history and the live feed, in the order they were read.
    pub history: Vec<HistoryEntry>,
    /// Messages merged into this detail.
    pub messages: u64,
    /// A room's increments of its written minutes are left out of its all-time lists
    /// ([`Buckets::Rollups`]): the roll-up of their hour adds the room's minutes to them. The
    /// store writes them to all time as well where those lists already hold that hour: it was
    /// rolled up already (a message taken after its hour ended), or the room's data predates
    /// folding (Redis checks, atomically with the roll-up).
    pub folds: bool,
}

impl Detail {
    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
            && self.activity.is_empty()
            && self.seen.is_empty()
            && self.history.is_empty()
    }

    /// How many members it writes: the measure of a store call's work (a history entry is a
    /// few writes).
    pub fn members(&self) -> usize {
        self.lists.iter().map(|(_, m)| m.len()).sum::<usize>()
            + self.activity.len()
            + self.seen.len()
            + HISTORY_WRITES * self.history.len()
    }

    /// The same increments in parts of about `max` members each, so that one store call's
    /// work stays bounded. A list's bucket increments are cut only between units: one member's
    /// increments of one list and scope within one UTC day (its minutes, hours and day) always
    /// go in one part, and so do a scope's message counts within one day. Redis writes a late
    /// message into its ended hour and day as well as into its minute, and a roll-up replaces
    /// an hour with the merge of its minutes: one running between two calls that carried the
    /// minute and the hour apart would count the message twice. (A unit larger than `max`, at
    /// most 1,465 buckets, makes a part of its own.)
    pub fn split(mut self, max: usize) -> Vec<Detail> {
        let max = max.max(1);
        if self.members() <= max {
            return vec![self];
        }
        let mut parts = Parts::new(max, self.messages, self.folds);
        let mut lists = std::mem::take(&mut self.lists);
        for (p, (place, members)) in lists.iter_mut().enumerate() {
            if place.period == Period::AllTime {
                let total = members.len();
                for (member, n) in std::mem::take(members) {
                    parts.make_room(1);
                    parts.list(place, p, total, member, n);
                }
            }
        }
        // The bucket lists by group (scope, list, day): the places a unit can span.
        let mut ranks: HashMap<&Scope, u32> = HashMap::new();
        let mut groups: Vec<((u32, TopList, u64), usize)> = Vec::new();
        for (p, (place, _)) in lists.iter().enumerate() {
            let Some(day) = day_of_period(place.period) else {
                continue;
            };
            let next = ranks.len() as u32;
            let scope = *ranks.entry(&place.scope).or_insert(next);
            groups.push(((scope, place.list, day), p));
        }
        groups.sort_unstable();
        // Within a group, one row per increment (member hash, place, member), sorted so that
        // a unit's rows are adjacent (a hash collision only joins two units). One group's rows
        // at a time, and each group's increments freed once placed: a detail holds hundreds
        // of thousands of them in a backfill.
        let mut rows: Vec<(u64, u32, u32)> = Vec::new();
        for group in groups.chunk_by(|a, b| a.0 == b.0) {
            rows.clear();
            for &(_, p) in group {
                for (m, (member, _)) in lists[p].1.iter().enumerate() {
                    rows.push((hash(member), p as u32, m as u32));
                }
            }
            rows.sort_unstable();
            for run in rows.chunk_by(|a, b| a.0 == b.0) {
                parts.make_room(run.len());
                for &(_, p, m) in run {
                    let (place, members) = &mut lists[p as usize];
                    let total = members.len();
                    let (member, n) = std::mem::take(&mut members[m as usize]);
                    parts.list(place, p as usize, total, member, n);
                }
            }
            for &(_, p) in group {
                lists[p].1 = Vec::new();
            }
        }
        self.activity
            .sort_by(|a, b| (&a.0, day_of(a.1)).cmp(&(&b.0, day_of(b.1))));
        for run in self
            .activity
            .chunk_by(|a, b| a.0 == b.0 && day_of(a.1) == day_of(b.1))
        {
            parts.make_room(run.len());
            parts.current().activity.extend_from_slice(run);
        }
        for item in self.seen {
            parts.make_room(1);
            parts.current().seen.push(item);
        }
        for entry in self.history {
            parts.make_room(HISTORY_WRITES);
            parts.current().history.push(entry);
        }
        parts.finish()
    }
}

/// The day number a bucket lies in.
fn day_of(bucket: Bucket) -> u64 {
    Bucket::of(Granularity::Day, bucket.start_ms()).number
}

/// The day number a period lies in (none for all time).
fn day_of_period(period: Period) -> Option<u64> {
    match period {
        Period::AllTime => None,
        Period::Bucket(bucket) => Some(day_of(bucket)),
    }
}

fn hash(member: &[u8]) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(member)
}

/// The parts [`Detail::split`] fills, one after another.
struct Parts {
    parts: Vec<Detail>,
    /// The split detail's [`Detail::folds`].
    folds: bool,
    /// Members the last part may still take.
    room: usize,
    max: usize,
    /// Where the increments of each place (by its index in the detail) are in the last
    /// part's lists.
    places: HashMap<usize, usize>,
}

impl Parts {
    fn new(max: usize, messages: u64, folds: bool) -> Parts {
        let first = Detail {
            messages,
            folds,
            ..Detail::default()
        };
        Parts {
            parts: vec![first],
            folds,
            room: max,
            max,
            places: HashMap::new(),
        }
    }

    /// Starts a new part unless the last one has room for `members` or is empty.
    fn make_room(&mut self, members: usize) {
        if members > self.room && !self.current().is_empty() {
            self.trim();
            self.parts.push(Detail {
                folds: self.folds,
                ..Detail::default()
            });
            self.room = self.max;
            self.places.clear();
        }
        self.room = self.room.saturating_sub(members);
    }

    /// Drops the last part's slack: its lists were sized for what they might take, and the
    /// slack would add up over a detail.
    fn trim(&mut self) {
        for (_, increments) in &mut self.current().lists {
            increments.shrink_to_fit();
        }
    }

    /// The parts, filled.
    fn finish(mut self) -> Vec<Detail> {
        self.trim();
        self.parts
    }

    fn current(&mut self) -> &mut Detail {
        let last = self.parts.len() - 1;
        &mut self.parts[last]
    }

    /// Adds one increment of `place` (the detail's `index`-th, which has `total` increments)
    /// to the last part.
    fn list(&mut self, place: &Place, index: usize, total: usize, member: Bytes, n: u64) {
        let last = self.parts.len() - 1;
        let lists = &mut self.parts[last].lists;
        // As many as the place has, or the part can still take: no growing one at a time.
        let room = total.min(self.room + 1);
        let at = *self.places.entry(index).or_insert_with(|| {
            lists.push((place.clone(), Vec::with_capacity(room)));
            lists.len() - 1
        });
        lists[at].1.push((member, n));
    }
}

/// Which buckets a builder derives from the minutes of its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buckets {
    /// Minute, hour and day buckets: the store writes every bucket (in memory).
    All,
    /// Minute buckets, and hour and day buckets only where they have ended: the store rolls
    /// hours and days up from minutes itself (Redis), and late messages join them directly.
    Rollups,
}

/// The distinct members (rooms, nicks, words, emotes) of one batch, each stored once and known
/// by a number from then on. Their text is kept back to back in one buffer: a batch has
/// thousands of names, and one allocation for all of them costs far less than one each.
#[derive(Debug, Default)]
struct Names {
    /// Every name, in the order of their numbers.
    text: Vec<u8>,
    /// Where each name ends in `text`.
    ends: Vec<usize>,
    /// The numbers, found by a hash of the name under this process's random key (names come
    /// from the stream: a fixed key would invite hash flooding).
    ids: HashTable<u32>,
    hasher: RandomState,
}

impl Names {
    /// The number of `name`, copying it the first time it is met.
    fn id(&mut self, name: &[u8]) -> u32 {
        let Names {
            text,
            ends,
            ids,
            hasher,
        } = self;
        let hash = hasher.hash_one(name);
        if let Some(id) = ids.find(hash, |&id| text[span(ends, id)] == *name) {
            return *id;
        }
        let id = ends.len() as u32;
        text.extend_from_slice(name);
        ends.push(text.len());
        let (text, ends) = (&*text, &*ends);
        ids.insert_unique(hash, id, |&id| hasher.hash_one(&text[span(ends, id)]));
        id
    }

    /// The names, for reading: each is then a slice of one shared buffer.
    fn freeze(self) -> FrozenNames {
        FrozenNames {
            text: Bytes::from(self.text),
            ends: self.ends,
        }
    }
}

/// [`Names`] done with: names by number.
struct FrozenNames {
    text: Bytes,
    ends: Vec<usize>,
}

impl FrozenNames {
    fn get(&self, id: u32) -> Bytes {
        self.text.slice(span(&self.ends, id))
    }
}

/// Where name `id` is in a names buffer whose names end at `ends`.
fn span(ends: &[usize], id: u32) -> std::ops::Range<usize> {
    let id = id as usize;
    let start = if id == 0 { 0 } else { ends[id - 1] };
    start..ends[id]
}

/// A scope by number: everything, a room or a nick (`Names` ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum ScopeId {
    Global,
    Room(u32),
    Nick(u32),
}

/// All time, or a minute.
const ALL_TIME: u64 = u64::MAX;

/// A minute's periods, and whether a room's increments of it skip all time ([`Detail::folds`]).
type Periods = (Vec<Period>, bool);

/// One count of the batch: a scope, a minute (or [`ALL_TIME`] for a nick's lists), a list and
/// a member.
type CountKey = (ScopeId, u64, u8, u32);

/// Merges messages into one [`Detail`]. Members are numbered as they come, so that a message
/// costs a few hash-map increments of small integer keys, and each distinct member one copy.
#[derive(Debug, Default)]
pub struct DetailBuilder {
    names: Names,
    counts: FxHashMap<CountKey, u64>,
    /// Messages per scope (everything, or a room) and minute.
    messages_by_minute: FxHashMap<(ScopeId, u64), u64>,
    seen: FxHashMap<(Seen, u32), (u64, u64)>,
    history: Vec<HistoryEntry>,
    messages: u64,
}

impl DetailBuilder {
    /// Adds one message: to the statistics when `stats`, to the history with `entry`.
    pub fn add(&mut self, message: &Message, stats: bool, entry: Option<HistoryEntry>) {
        self.messages += 1;
        self.history.extend(entry);
        if stats {
            self.add_stats(message);
        }
    }

    fn add_stats(&mut self, message: &Message) {
        let minute = message.time_ms / Granularity::Minute.ms();
        let room = message.room.as_ref().map(|r| self.names.id(r));
        let nick = message.nick.as_ref().map(|n| self.names.id(n));
        let mut scopes = [Some(ScopeId::Global), room.map(ScopeId::Room)];
        for (list, members) in [
            (TopList::Words, &message.words),
            (TopList::Emotes, &message.emotes),
        ] {
            for (member, n) in members {
                let id = self.names.id(member);
                for scope in scopes.iter().flatten() {
                    *self
                        .counts
                        .entry((*scope, minute, list as u8, id))
                        .or_default() += n;
                }
                if let Some(nick) = nick {
                    let key = (ScopeId::Nick(nick), ALL_TIME, list as u8, id);
                    *self.counts.entry(key).or_default() += n;
                }
            }
        }
        if let Some(nick) = nick {
            for scope in scopes.iter().flatten() {
                let key = (*scope, minute, TopList::Nicks as u8, nick);
                *self.counts.entry(key).or_default() += 1;
            }
            if let Some(room) = room {
                let key = (ScopeId::Nick(nick), ALL_TIME, TopList::Rooms as u8, room);
                *self.counts.entry(key).or_default() += 1;
            }
        }
        if let Some(room) = room {
            let key = (ScopeId::Global, minute, TopList::Rooms as u8, room);
            *self.counts.entry(key).or_default() += 1;
        }
        for scope in scopes.iter_mut().flatten() {
            *self.messages_by_minute.entry((*scope, minute)).or_default() += 1;
        }
        let t = message.time_ms;
        for (kind, id) in [(Seen::Room, room), (Seen::Nick, nick)] {
            if let Some(id) = id {
                let span = self.seen.entry((kind, id)).or_insert((t, t));
                *span = (span.0.min(t), span.1.max(t));
            }
        }
    }

    /// Messages added so far.
    pub fn len(&self) -> u64 {
        self.messages
    }

    /// Entries held so far: distinct counts and history entries (what the builder's memory
    /// grows with: a message of thousands of distinct words adds thousands).
    pub fn entries(&self) -> usize {
        self.counts.len() + self.history.len()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// The periods a minute's counts go to at `now_ms`: all time (unless `immediate`), and the
    /// buckets still kept that `buckets` asks for; and whether a room's counts skip all time,
    /// for its hour's roll-up to add them ([`Detail::folds`]: the minute is written. Whether
    /// the hour has ended says nothing of whether it was rolled up yet; the store knows).
    fn periods(minute: u64, now_ms: u64, retention: &Retention, buckets: Buckets) -> Periods {
        let mut periods = vec![Period::AllTime];
        let mut folds = false;
        for granularity in Granularity::ALL {
            let bucket = Bucket::of(granularity, minute * Granularity::Minute.ms());
            let wanted = granularity == Granularity::Minute
                || buckets == Buckets::All
                || bucket.end_ms() <= now_ms;
            if wanted && retention.keeps(bucket, now_ms) {
                periods.push(Period::Bucket(bucket));
                folds |= granularity == Granularity::Minute && buckets == Buckets::Rollups;
            }
        }
        (periods, folds)
    }

    /// The merged detail at `now_ms`, with the buckets still kept (and wanted: `buckets`); the
    /// builder is left empty.
    pub fn take(&mut self, now_ms: u64, retention: &Retention, buckets: Buckets) -> Detail {
        let mut grouped: FxHashMap<(ScopeId, Period, u8), FxHashMap<u32, u64>> =
            FxHashMap::default();
        let mut periods_of: FxHashMap<u64, Periods> = FxHashMap::default();
        for ((scope, minute, list, member), n) in self.counts.drain() {
            let (periods, folds): (&[Period], _) = if minute == ALL_TIME {
                (&[Period::AllTime], false)
            } else {
                let (periods, folds) = periods_of
                    .entry(minute)
                    .or_insert_with(|| Self::periods(minute, now_ms, retention, buckets));
                (periods, *folds)
            };
            for &period in periods {
                // All-time words, nicks and rooms of everything are the immediate lists; a
                // room's minutes stand for its all time when they are to be folded.
                let skipped = match scope {
                    ScopeId::Global => list != TopList::Emotes as u8,
                    ScopeId::Room(_) => folds,
                    ScopeId::Nick(_) => false,
                };
                if period == Period::AllTime && skipped {
                    continue;
                }
                *grouped
                    .entry((scope, period, list))
                    .or_default()
                    .entry(member)
                    .or_default() += n;
            }
        }
        let names = std::mem::take(&mut self.names).freeze();
        let names = &names;
        let scope_of = |scope: ScopeId| match scope {
            ScopeId::Global => Scope::Global,
            ScopeId::Room(id) => Scope::Room(names.get(id)),
            ScopeId::Nick(id) => Scope::Nick(names.get(id)),
        };
        let mut lists: Vec<(Place, Vec<(Bytes, u64)>)> = grouped
            .into_iter()
            .map(|((scope, period, list), members)| {
                let place = Place {
                    scope: scope_of(scope),
                    period,
                    list: TopList::ALL[list as usize],
                };
                let members = members
                    .into_iter()
                    .map(|(id, n)| (names.get(id), n))
                    .collect();
                (place, members)
            })
            .collect();
        let mut activity: FxHashMap<(ScopeId, Bucket), u64> = FxHashMap::default();
        for ((scope, minute), n) in self.messages_by_minute.drain() {
            let periods = periods_of
                .entry(minute)
                .or_insert_with(|| Self::periods(minute, now_ms, retention, buckets));
            for period in periods.0.iter() {
                if let Period::Bucket(bucket) = period {
                    *activity.entry((scope, *bucket)).or_default() += n;
                }
            }
        }
        let mut activity: Vec<(Scope, Bucket, u64)> = activity
            .into_iter()
            .map(|((scope, bucket), n)| (scope_of(scope), bucket, n))
            .collect();
        let mut seen: Vec<(Seen, Bytes, u64, u64)> = self
            .seen
            .drain()
            .map(|((kind, id), (first, last))| (kind, names.get(id), first, last))
            .collect();
        // A stable order: the same input gives the same calls.
        lists.sort_by(|a, b| a.0.cmp(&b.0));
        activity.sort();
        seen.sort();
        let detail = Detail {
            lists,
            activity,
            seen,
            history: std::mem::take(&mut self.history),
            messages: self.messages,
            folds: buckets == Buckets::Rollups,
        };
        self.messages = 0;
        detail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(time_ms: u64, room: &str, nick: &str, words: &[&str], emotes: &[&str]) -> Message {
        let counts = |items: &[&str]| {
            let mut out: Vec<(Bytes, u64)> = Vec::new();
            for item in items {
                match out.iter_mut().find(|(m, _)| m == item.as_bytes()) {
                    Some((_, n)) => *n += 1,
                    None => out.push((Bytes::copy_from_slice(item.as_bytes()), 1)),
                }
            }
            out
        };
        let present = |s: &str| (!s.is_empty()).then(|| Bytes::copy_from_slice(s.as_bytes()));
        Message {
            time_ms,
            room: present(room),
            nick: present(nick),
            words: counts(words),
            emotes: counts(emotes),
            id: None,
            body: Bytes::new(),
        }
    }

    fn find(detail: &Detail, scope: Scope, period: Period, list: TopList) -> Vec<(String, u64)> {
        let mut found: Vec<(String, u64)> = detail
            .lists
            .iter()
            .filter(|(p, _)| p.scope == scope && p.period == period && p.list == list)
            .flat_map(|(_, m)| {
                m.iter()
                    .map(|(b, n)| (String::from_utf8_lossy(b).into_owned(), *n))
            })
            .collect();
        found.sort();
        found
    }

    const NOW: u64 = 1_795_420_800_000;

    #[test]
    fn a_history_entry_is_the_messages_json_escaped_where_it_must_be() {
        let mut m = message(NOW + 7, "#a", "x", &[], &["Kappa", "Kappa", "한"]);
        m.body = Bytes::from_static("😀 \"Kappa\" Kappa 한 \\ \n".as_bytes());
        let entry = HistoryEntry::of(&m, || "made-up".to_owned());
        let expected = serde_json::json!({
            "id": "made-up",
            "time": rfc3339(NOW + 7, true),
            "room": "#a",
            "nick": "x",
            "body": "😀 \"Kappa\" Kappa 한 \\ \n",
            "emotes": ["Kappa", "Kappa", "한"],
        });
        let written: serde_json::Value = serde_json::from_str(&entry.json).unwrap();
        assert_eq!(written, expected);
        assert!(
            entry.json.starts_with(r#"{"id":"made-up","time":"#)
                && entry.json.ends_with(r#""emotes":["Kappa","Kappa","한"]}"#),
            "the fields in the API's order: {}",
            entry.json
        );
        assert_eq!(
            entry.json.capacity(),
            entry.json.len(),
            "kept without slack"
        );
        // Nothing to escape, no emotes, its own id: sized exactly from the start.
        let mut plain = message(NOW, "", "", &[], &[]);
        plain.id = Some(Bytes::from_static(b"abc"));
        let entry = HistoryEntry::of(&plain, || unreachable!("it has an id"));
        assert_eq!(entry.id, "abc");
        assert_eq!(
            entry.json,
            format!(
                r#"{{"id":"abc","time":"{}","room":"","nick":"","body":"","emotes":[]}}"#,
                rfc3339(NOW, true)
            )
        );
    }

    #[test]
    fn a_batch_is_merged_per_scope_and_bucket() {
        let mut builder = DetailBuilder::default();
        builder.add(
            &message(NOW - 1000, "#a", "x", &["hi", "Kappa"], &["Kappa"]),
            true,
            None,
        );
        builder.add(&message(NOW - 500, "#a", "y", &["hi"], &[]), true, None);
        builder.add(&message(NOW - 400, "#b", "x", &["yo"], &[]), true, None);
        let detail = builder.take(NOW, &Retention::default(), Buckets::All);
        let minute = Period::Bucket(Bucket::of(Granularity::Minute, NOW - 1000));
        let hour = Period::Bucket(Bucket::of(Granularity::Hour, NOW - 1000));
        let room_a = Scope::Room(Bytes::from_static(b"#a"));
        assert_eq!(
            find(&detail, Scope::Global, minute, TopList::Words),
            vec![("Kappa".into(), 1), ("hi".into(), 2), ("yo".into(), 1)]
        );
        assert_eq!(
            find(&detail, room_a.clone(), hour, TopList::Nicks),
            vec![("x".into(), 1), ("y".into(), 1)]
        );
        assert_eq!(
            find(&detail, room_a, Period::AllTime, TopList::Emotes),
            vec![("Kappa".into(), 1)]
        );
        assert_eq!(
            find(&detail, Scope::Global, Period::AllTime, TopList::Emotes),
            vec![("Kappa".into(), 1)]
        );
        assert!(
            find(&detail, Scope::Global, Period::AllTime, TopList::Words).is_empty(),
            "all-time words of everything are the immediate list"
        );
        assert_eq!(
            find(
                &detail,
                Scope::Nick(Bytes::from_static(b"x")),
                Period::AllTime,
                TopList::Rooms
            ),
            vec![("#a".into(), 1), ("#b".into(), 1)]
        );
        let global_minute: u64 = detail
            .activity
            .iter()
            .filter(|(s, b, _)| *s == Scope::Global && b.granularity == Granularity::Minute)
            .map(|(_, _, n)| n)
            .sum();
        assert_eq!(global_minute, 3);
        assert!(detail.seen.contains(&(
            Seen::Nick,
            Bytes::from_static(b"x"),
            NOW - 1000,
            NOW - 400
        )));
    }

    #[test]
    fn a_rooms_counts_of_its_written_minutes_are_left_to_their_hours_roll_up() {
        let mut builder = DetailBuilder::default();
        let gone = Bucket::of(Granularity::Hour, NOW - 30 * 86_400_000);
        // The current hour, one that ended (perhaps not rolled up yet: the store tells), and
        // one whose minutes are no longer kept.
        for (time, word) in [
            (NOW + 1_000, "now"),
            (NOW - 1_000, "ended"),
            (gone.start_ms(), "gone"),
        ] {
            builder.add(&message(time, "#a", "x", &[word], &[]), true, None);
        }
        let room = Scope::Room(Bytes::from_static(b"#a"));
        let minute = |time: u64| Period::Bucket(Bucket::of(Granularity::Minute, time));
        let rollups = builder.take(NOW + 2_000, &Retention::default(), Buckets::Rollups);
        assert!(rollups.folds);
        assert_eq!(
            find(&rollups, room.clone(), Period::AllTime, TopList::Words),
            vec![("gone".into(), 1)],
            "with no minute written, there is nothing to fold: counted at once"
        );
        for (time, word) in [(NOW + 1_000, "now"), (NOW - 1_000, "ended")] {
            let got = find(&rollups, room.clone(), minute(time), TopList::Words);
            assert_eq!(got, vec![(word.into(), 1)]);
        }
        let nick = Scope::Nick(Bytes::from_static(b"x"));
        let nicks_words = find(&rollups, nick, Period::AllTime, TopList::Words);
        assert_eq!(
            nicks_words.len(),
            3,
            "a nick's lists have no roll-up to wait for"
        );
        // Nor has the in-memory store.
        builder.add(&message(NOW + 1_000, "#a", "x", &["now"], &[]), true, None);
        let all = builder.take(NOW + 2_000, &Retention::default(), Buckets::All);
        assert!(!all.folds);
        assert_eq!(
            find(&all, room, Period::AllTime, TopList::Words),
            vec![("now".into(), 1)]
        );
    }

    #[test]
    fn a_message_older_than_a_retention_counts_all_time_but_not_in_that_bucket() {
        let mut builder = DetailBuilder::default();
        let old = NOW - 30 * 3_600_000;
        builder.add(&message(old, "#a", "x", &["old"], &[]), true, None);
        let detail = builder.take(NOW, &Retention::default(), Buckets::All);
        let room = Scope::Room(Bytes::from_static(b"#a"));
        assert_eq!(
            find(&detail, room.clone(), Period::AllTime, TopList::Words),
            vec![("old".into(), 1)]
        );
        let granularities: Vec<Granularity> = detail
            .lists
            .iter()
            .filter_map(|(p, _)| match p.period {
                Period::Bucket(b) => Some(b.granularity),
                Period::AllTime => None,
            })
            .collect();
        assert!(!granularities.contains(&Granularity::Minute));
        assert!(
            granularities.contains(&Granularity::Hour) && granularities.contains(&Granularity::Day)
        );
    }

    #[test]
    fn split_parts_are_bounded_and_add_up() {
        let mut builder = DetailBuilder::default();
        for i in 0..50 {
            builder.add(
                &message(
                    NOW - 1000,
                    "#a",
                    &format!("n{i}"),
                    &["w", &format!("u{i}")],
                    &[],
                ),
                true,
                None,
            );
        }
        let detail = builder.take(NOW, &Retention::default(), Buckets::All);
        let total = detail.members();
        let parts = detail.clone().split(64);
        assert!(parts.iter().all(|p| p.members() <= 64));
        assert_eq!(parts.iter().map(Detail::members).sum::<usize>(), total);
        assert_eq!(parts[0].messages, 50);
    }

    #[test]
    fn a_members_minutes_hours_and_day_are_never_cut_apart() {
        // Late messages over three ended hours of two days: each goes to its minute, hour and
        // day. A roll-up between two parts that cut one member's minute from its hour would
        // count it twice on Redis.
        let midnight = NOW.next_multiple_of(86_400_000);
        let mut builder = DetailBuilder::default();
        for i in 0..300u64 {
            // 00:53–00:59, 23:53–23:59 and 22:53–22:59 around `midnight`.
            let time = midnight + 3_600_000 - 3_600_000 * (i % 3) - 60_000 * (i % 7) - 1000;
            let room = format!("#r{}", i % 4);
            let word = format!("w{}", i % 23);
            builder.add(
                &message(time, &room, &format!("n{}", i % 9), &[&word, "x"], &["E"]),
                true,
                None,
            );
        }
        // 00:59:59.5: the hours before midnight have ended (and their day), 00:00 not; the
        // rooms' counts of every hour are to fold.
        let now = midnight + 3_599_500;
        let detail = builder.take(now, &Retention::default(), Buckets::Rollups);
        assert!(detail.lists.iter().any(|(p, _)| matches!(
            p.period,
            Period::Bucket(b) if b.granularity == Granularity::Day
        )));
        assert!(detail.folds);
        let total = detail.members();
        for max in [1, 7, 64, 500] {
            let parts = detail.clone().split(max);
            assert!(parts.len() > 1, "{max}");
            assert_eq!(parts.iter().map(Detail::members).sum::<usize>(), total);
            let mut part_of: HashMap<(Scope, TopList, u64, Bytes), usize> = HashMap::new();
            for (k, part) in parts.iter().enumerate() {
                for (place, members) in &part.lists {
                    let Some(day) = day_of_period(place.period) else {
                        continue;
                    };
                    for (member, _) in members {
                        let unit = (place.scope.clone(), place.list, day, member.clone());
                        assert_eq!(*part_of.entry(unit.clone()).or_insert(k), k, "{unit:?} cut");
                    }
                }
                // Over `max` only when one unit is larger: here at most 14 minutes, 2 hours
                // and a day.
                assert!(part.members() <= max.max(17), "{max}: {}", part.members());
                assert!(part.folds);
            }
            let mut merged: Vec<(Place, Vec<(Bytes, u64)>)> = Vec::new();
            for part in parts {
                for (place, members) in part.lists {
                    for (member, n) in members {
                        merged.push((place.clone(), vec![(member, n)]));
                    }
                }
            }
            let flat = |lists: &[(Place, Vec<(Bytes, u64)>)]| {
                let mut out: Vec<(Place, Bytes, u64)> = lists
                    .iter()
                    .flat_map(|(p, m)| m.iter().map(|(b, n)| (p.clone(), b.clone(), *n)))
                    .collect();
                out.sort();
                out
            };
            assert_eq!(flat(&merged), flat(&detail.lists), "{max}");
        }
    }
}
