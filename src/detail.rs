//! The statistics by room, nick, emote and time: what a batch of messages adds to them.
//!
//! A [`DetailBuilder`] merges the [`Message`]s of a short interval (`STATS_FLUSH_MS`, 50 ms by
//! default) and turns them into one [`Detail`]: increments of lists kept per scope (everything,
//! one room, one nick) and period (all time, or one minute, hour or day bucket), message counts
//! per bucket (activity), and the earliest and latest message time per room and nick. Merging
//! first is what keeps the cost bounded: in 50 ms of a busy stream a popular word is counted
//! once per bucket, not once per message. Buckets no longer kept ([`Retention`]) are left out;
//! all-time lists get every message, however old.

use std::collections::HashMap;

use bytes::Bytes;

use crate::message::{Message, TopList};
use crate::timeline::{Bucket, Granularity, Retention};

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

/// Increments of the statistics by room, nick, emote and time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    /// List increments, by place.
    pub lists: Vec<(Place, Vec<(Bytes, u64)>)>,
    /// Messages counted per scope and bucket.
    pub activity: Vec<(Scope, Bucket, u64)>,
    /// Earliest and latest message time (Unix ms) per room and nick.
    pub seen: Vec<(Seen, Bytes, u64, u64)>,
    /// Messages merged into this detail.
    pub messages: u64,
}

impl Detail {
    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty() && self.activity.is_empty() && self.seen.is_empty()
    }

    /// How many members it writes: the measure of a store call's work.
    pub fn members(&self) -> usize {
        self.lists.iter().map(|(_, m)| m.len()).sum::<usize>()
            + self.activity.len()
            + self.seen.len()
    }

    /// The same increments in parts of at most `max` members each, so that one store call's
    /// work stays bounded. A place's increments may be cut across parts.
    pub fn split(self, max: usize) -> Vec<Detail> {
        let max = max.max(1);
        if self.members() <= max {
            return vec![self];
        }
        let mut parts = vec![Detail {
            messages: self.messages,
            ..Detail::default()
        }];
        let mut room = max;
        for (place, members) in self.lists {
            let mut members = members.into_iter().peekable();
            while members.peek().is_some() {
                if room == 0 {
                    parts.push(Detail::default());
                    room = max;
                }
                let chunk: Vec<_> = members.by_ref().take(room).collect();
                room -= chunk.len();
                if let Some(part) = parts.last_mut() {
                    part.lists.push((place.clone(), chunk));
                }
            }
        }
        for item in self.activity {
            if room == 0 {
                parts.push(Detail::default());
                room = max;
            }
            room -= 1;
            if let Some(part) = parts.last_mut() {
                part.activity.push(item);
            }
        }
        for item in self.seen {
            if room == 0 {
                parts.push(Detail::default());
                room = max;
            }
            room -= 1;
            if let Some(part) = parts.last_mut() {
                part.seen.push(item);
            }
        }
        parts
    }
}

/// Counts by member.
type Counts = HashMap<Bytes, u64>;

fn add_all(counts: &mut Counts, members: &[(Bytes, u64)]) {
    for (member, n) in members {
        *counts.entry(member.clone()).or_default() += n;
    }
}

/// What the messages of one scope (everything, or a room) did in one minute.
#[derive(Debug, Default)]
struct Minute {
    messages: u64,
    /// Per list, by [`TopList::index`].
    lists: [Counts; 4],
}

/// Merges messages into one [`Detail`].
#[derive(Debug, Default)]
pub struct DetailBuilder {
    /// Per scope (`None`: everything, else a room) and message minute.
    minutes: HashMap<(Option<Bytes>, u64), Minute>,
    /// Per nick, per list.
    nicks: HashMap<Bytes, [Counts; 4]>,
    seen: HashMap<(Seen, Bytes), (u64, u64)>,
    messages: u64,
}

impl DetailBuilder {
    /// Adds one message. Its members are copied, so that the builder holds no slices of the
    /// input it was read from.
    pub fn add(&mut self, message: &Message) {
        self.messages += 1;
        let owned = |m: &Bytes| Bytes::copy_from_slice(m);
        let minute = message.time_ms / Granularity::Minute.ms();
        let room = message.room.as_ref().map(owned);
        let nick = message.nick.as_ref().map(owned);
        let words: Vec<(Bytes, u64)> = message.words.iter().map(|(w, n)| (owned(w), *n)).collect();
        let emotes: Vec<(Bytes, u64)> =
            message.emotes.iter().map(|(e, n)| (owned(e), *n)).collect();
        let mut scopes = vec![None];
        scopes.extend(room.clone().map(Some));
        for scope in scopes {
            let is_room = scope.is_some();
            let counts = self.minutes.entry((scope, minute)).or_default();
            counts.messages += 1;
            add_all(&mut counts.lists[TopList::Words.index()], &words);
            add_all(&mut counts.lists[TopList::Emotes.index()], &emotes);
            if let Some(nick) = &nick {
                *counts.lists[TopList::Nicks.index()]
                    .entry(nick.clone())
                    .or_default() += 1;
            }
            if let (false, Some(room)) = (is_room, &room) {
                *counts.lists[TopList::Rooms.index()]
                    .entry(room.clone())
                    .or_default() += 1;
            }
        }
        if let Some(nick) = &nick {
            let lists = self.nicks.entry(nick.clone()).or_default();
            add_all(&mut lists[TopList::Words.index()], &words);
            add_all(&mut lists[TopList::Emotes.index()], &emotes);
            if let Some(room) = &room {
                *lists[TopList::Rooms.index()]
                    .entry(room.clone())
                    .or_default() += 1;
            }
        }
        let t = message.time_ms;
        for (kind, name) in [(Seen::Room, room), (Seen::Nick, nick)] {
            if let Some(name) = name {
                let span = self.seen.entry((kind, name)).or_insert((t, t));
                *span = (span.0.min(t), span.1.max(t));
            }
        }
    }

    /// Messages added so far.
    pub fn len(&self) -> u64 {
        self.messages
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// The merged detail, with the buckets still kept at `now_ms`; the builder is left empty.
    pub fn take(&mut self, now_ms: u64, retention: &Retention) -> Detail {
        let mut lists: HashMap<Place, Counts> = HashMap::new();
        let mut activity: HashMap<(Scope, Bucket), u64> = HashMap::new();
        for ((room, minute), counts) in self.minutes.drain() {
            let scope = room.map_or(Scope::Global, Scope::Room);
            let mut periods = vec![Period::AllTime];
            for granularity in Granularity::ALL {
                let bucket = Bucket::of(granularity, minute * Granularity::Minute.ms());
                if retention.keeps(bucket, now_ms) {
                    periods.push(Period::Bucket(bucket));
                    *activity.entry((scope.clone(), bucket)).or_default() += counts.messages;
                }
            }
            for list in TopList::ALL {
                let members = &counts.lists[list.index()];
                if members.is_empty() {
                    continue;
                }
                for period in &periods {
                    // All-time words, nicks and rooms of everything are the immediate lists.
                    let immediate = scope == Scope::Global && list != TopList::Emotes;
                    if *period == Period::AllTime && immediate {
                        continue;
                    }
                    let place = Place {
                        scope: scope.clone(),
                        period: *period,
                        list,
                    };
                    let merged = lists.entry(place).or_default();
                    for (member, n) in members {
                        *merged.entry(member.clone()).or_default() += n;
                    }
                }
            }
        }
        for (nick, counts) in self.nicks.drain() {
            for (list, members) in TopList::ALL.into_iter().zip(counts) {
                if members.is_empty() {
                    continue;
                }
                let place = Place {
                    scope: Scope::Nick(nick.clone()),
                    period: Period::AllTime,
                    list,
                };
                lists.insert(place, members);
            }
        }
        let mut detail = Detail {
            lists: lists
                .into_iter()
                .map(|(place, counts)| (place, counts.into_iter().collect()))
                .collect(),
            activity: activity
                .into_iter()
                .map(|((scope, bucket), n)| (scope, bucket, n))
                .collect(),
            seen: self
                .seen
                .drain()
                .map(|((kind, name), (first, last))| (kind, name, first, last))
                .collect(),
            messages: self.messages,
        };
        // A stable order: the same input gives the same calls.
        detail.lists.sort_by(|a, b| a.0.cmp(&b.0));
        detail.activity.sort();
        detail.seen.sort();
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
    fn a_batch_is_merged_per_scope_and_bucket() {
        let mut builder = DetailBuilder::default();
        builder.add(&message(
            NOW - 1000,
            "#a",
            "x",
            &["hi", "Kappa"],
            &["Kappa"],
        ));
        builder.add(&message(NOW - 500, "#a", "y", &["hi"], &[]));
        builder.add(&message(NOW - 400, "#b", "x", &["yo"], &[]));
        let detail = builder.take(NOW, &Retention::default());
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
    fn a_message_older_than_a_retention_counts_all_time_but_not_in_that_bucket() {
        let mut builder = DetailBuilder::default();
        let old = NOW - 3 * 86_400_000;
        builder.add(&message(old, "#a", "x", &["old"], &[]));
        let detail = builder.take(NOW, &Retention::default());
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
            builder.add(&message(
                NOW - 1000,
                "#a",
                &format!("n{i}"),
                &["w", &format!("u{i}")],
                &[],
            ));
        }
        let detail = builder.take(NOW, &Retention::default());
        let total = detail.members();
        let parts = detail.clone().split(64);
        assert!(parts.iter().all(|p| p.members() <= 64));
        assert_eq!(parts.iter().map(Detail::members).sum::<usize>(), total);
        assert_eq!(parts[0].messages, 50);
    }
}
