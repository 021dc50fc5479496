//! Redis key names, all in one place. Every key starts with the namespace, and every key a
//! script touches is built here and passed to it in `KEYS` (Redis's scripting rule, and what
//! Redis Cluster needs to route a call).
//!
//! | key | type | content |
//! |---|---|---|
//! | `{ns}words`, `{ns}nicks`, `{ns}rooms` | sorted set | member → count |
//! | `{ns}failedMessages` | sorted set | failed payload → order of its last arrival (newest kept) |
//! | `{ns}failedMessages:total` | string | failed messages ever recorded |
//! | `{ns}messagesPerSecond:{unix second}` | string | messages counted in that second; expires |
//! | `{ns}writer:{id}` | string | one worker's applied sequence numbers: the highest, and a bitmap of the window below it; fixed size; expires |
//! | `{ns}emotes` | sorted set | emote → uses, all time |
//! | `{ns}rooms:first`, `{ns}rooms:last`, `{ns}nicks:first`, `{ns}nicks:last` | sorted set | room or nick → its earliest / latest message time (Unix ms) |
//! | `{ns}{list}:{g}:{n}` | sorted set | a list of everything in bucket `n` of granularity `g` (`m`, `h`, `d`: Unix minutes, hours, days); expires |
//! | `{ns}activity:{g}:{n}` | hash | messages of everything per bucket of granularity `g`, grouped: minutes by hour, hours by day, days by 32-day block; expires |
//! | `{ns}room:{R}:{list}`, `{ns}room:{R}:{list}:{g}:{n}`, `{ns}room:{R}:activity:{g}:{n}` | sorted set, hash | the same for one room, all time and per bucket; the all-time lists lack the hours after the room's `folded` hour, whose minutes are added to them when read |
//! | `{ns}room:{R}:folded` | string | the last hour (Unix hours) of the room's minutes added to its all-time lists (`-1`: none yet); minutes of later hours are added by the hour's roll-up (`lua/rollup.lua`) |
//! | `{ns}folding:h:{n}` | set | rooms whose minutes of hour `n` wait for its roll-up to fold them; the hour is marked rolled up once it is empty (`lua/rollup_done.lua`); expires with the minutes |
//! | `{ns}nick:{N}:{list}` | sorted set | one nick's words, rooms and emotes, all time, except the increments still in its `pending` string |
//! | `{ns}nick:{N}:pending` | string | one nick's newest increments of those lists, one record per call appended (`lua/records.lua`), folded into them once it passes 4 KiB; read together with them |
//! | `{ns}rollup` | hash | the last hour (`h`) and day (`d`) rolled up for every scope, and the hour whose roll-up has begun (`c`) |
//! | `{ns}active:{g}:{n}` | set | the rooms with messages in an hour or a day, to roll up; expires |
//! | `{ns}history` | stream | recorded messages (field `m`: the entry's JSON, `r`: its room), trimmed to `HISTORY_RETENTION` (to 1,000 when it is 0: the live feed, expiring an hour after the end of the hour of its last write) |
//! | `{ns}room:{R}:history`, `{ns}nick:{N}:history` | stream | a room's or nick's messages: one row per worker call, its field `i` the ids of that call's entries in `{ns}history`, oldest first, space-separated (at most 100 a row); trimmed alike |
//! | `{ns}history:ids:{hour}` | hash | message id → entry id, for the messages recorded in that hour; expires |
//! | `{ns}rollup:lock` | string | held by the worker rolling up; expires |
//! | `{ns}{layout}:shards` | string | on Redis Cluster: the number of shards the data was written with (outside every shard) |
//! | `{ns}inbox:applied` | sorted set | on Redis Cluster, per shard: the ranges of inbox entry ids it applied (`first last`, ids zero-padded), until acknowledged, or a day |
//! | `{ns}inbox` | stream | payloads waiting for the workers (field `p`: the payload as received); the consumer group `chatstats` reads it, and an entry is acknowledged and deleted in the call that applies it |
//!
//! On Redis Cluster every shard has these keys under a namespace of its own, `{ns}{tag}:`,
//! which makes `tag` the hash tag of all of them (see `redis/shards.rs` for which shard holds
//! what); a room's and a nick's braces then only delimit the name.
//!
//! `{R}` and `{N}` are the room or nick in braces, with `%`, `{` and `}` percent-encoded: the
//! name is unambiguous whatever it holds, and in Redis Cluster the braces make it the hash tag,
//! so that all keys of one room live in one slot.
//! The TypeScript service kept `{ns}failedMessages` as a plain set (and no total: its members
//! count as the total); such a set is read as it
//! is and converted to the sorted set the first time a new failed message is recorded.

use std::borrow::Cow;

use crate::detail::{Scope, Seen};
use crate::message::TopList;
use crate::timeline::{Bucket, Granularity};

/// Key names of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    ns: String,
    /// Every message's keys, named once: words, nicks, rooms, failedMessages and its total.
    fixed: [bytes::Bytes; 5],
}

impl Keys {
    /// Keys under namespace `ns` (e.g. `chat-stats:`).
    pub(crate) fn new(ns: impl Into<String>) -> Keys {
        let ns = ns.into();
        let fixed = [
            format!("{ns}words"),
            format!("{ns}nicks"),
            format!("{ns}rooms"),
            format!("{ns}failedMessages"),
            format!("{ns}failedMessages:total"),
        ]
        .map(bytes::Bytes::from);
        Keys { ns, fixed }
    }

    /// The keys every tally touches, already named: words, nicks, rooms, failedMessages and
    /// failedMessages:total.
    pub(crate) fn fixed(&self) -> &[bytes::Bytes; 5] {
        &self.fixed
    }

    /// The namespace.
    pub(crate) fn namespace(&self) -> &str {
        &self.ns
    }

    /// The sorted set of a top list.
    pub(crate) fn top(&self, list: TopList) -> String {
        format!("{}{}", self.ns, list.name())
    }

    /// The kept failed payloads.
    pub(crate) fn failed(&self) -> String {
        format!("{}failedMessages", self.ns)
    }

    /// The failed-message counter.
    pub(crate) fn failed_total(&self) -> String {
        format!("{}failedMessages:total", self.ns)
    }

    /// The message counter of one Unix second.
    pub(crate) fn second(&self, second: u64) -> String {
        format!("{}messagesPerSecond:{second}", self.ns)
    }

    /// The applied sequence numbers of one writer (one worker process).
    pub(crate) fn writer(&self, writer: &str) -> String {
        format!("{}writer:{writer}", self.ns)
    }

    /// The all-time list of `scope` (the part-1 lists for everything).
    pub(crate) fn list(&self, scope: &Scope, list: TopList) -> String {
        self.scoped(scope, &[list.name()])
    }

    /// The last hour whose minutes a room's all-time lists hold (`lua/rollup.lua`).
    pub(crate) fn folded(&self, room: &Scope) -> String {
        self.scoped(room, &["folded"])
    }

    /// A nick's increments of its all-time lists not folded into them yet (`lua/records.lua`).
    pub(crate) fn pending(&self, nick: &Scope) -> String {
        self.scoped(nick, &["pending"])
    }

    /// A list of `scope` in one bucket.
    pub(crate) fn bucket_list(&self, scope: &Scope, list: TopList, bucket: Bucket) -> String {
        let mut digits = itoa::Buffer::new();
        let letter = bucket.granularity.letter_str();
        let number = digits.format(bucket.number);
        self.scoped(scope, &[list.name(), ":", letter, ":", number])
    }

    /// The hash holding the message counts of `scope` for a group of buckets, and the field
    /// of `bucket` in it.
    pub(crate) fn activity(&self, scope: &Scope, bucket: Bucket) -> (String, String) {
        let group = activity_group(bucket);
        let mut digits = itoa::Buffer::new();
        let letter = group.granularity.letter_str();
        let number = digits.format(group.number);
        (
            self.scoped(scope, &["activity:", letter, ":", number]),
            bucket.number.to_string(),
        )
    }

    /// The earliest (`last == false`) or latest message times of rooms or nicks.
    pub(crate) fn seen(&self, kind: Seen, last: bool) -> String {
        let what = match kind {
            Seen::Room => "rooms",
            Seen::Nick => "nicks",
        };
        let end = if last { "last" } else { "first" };
        format!("{}{what}:{end}", self.ns)
    }

    /// The last hour and day rolled up for every scope (hash fields `h`, `d`).
    pub(crate) fn rollup(&self) -> String {
        format!("{}rollup", self.ns)
    }

    /// Held by the one worker rolling up at a time.
    pub(crate) fn rollup_lock(&self) -> String {
        format!("{}rollup:lock", self.ns)
    }

    /// The rooms whose minutes of `hour` wait for its roll-up to fold them (`lua/detail.lua`
    /// adds, `lua/rollup.lua` removes): the hour is marked rolled up only once it is empty.
    pub(crate) fn folding(&self, hour: u64) -> String {
        format!(
            "{}folding:{}",
            self.ns,
            bucket_suffix(Granularity::Hour, hour)
        )
    }

    /// The rooms with messages in `bucket` (an hour or a day), to roll up.
    pub(crate) fn active(&self, bucket: Bucket) -> String {
        format!(
            "{}active:{}",
            self.ns,
            bucket_suffix(bucket.granularity, bucket.number)
        )
    }

    /// The recorded messages (everything: a stream of the entries), or a room's or nick's
    /// index of them (a stream of the entries' ids in the first).
    pub(crate) fn history(&self, scope: &Scope) -> String {
        self.scoped(scope, &["history"])
    }

    /// The inbox: payloads waiting for the workers (`POST /messages`, `FORWARD_TO_INBOX`),
    /// consumed by the consumer group `chatstats`.
    pub(crate) fn inbox(&self) -> String {
        format!("{}inbox", self.ns)
    }

    /// On Redis Cluster, the ranges of inbox entry ids a shard applied.
    pub(crate) fn inbox_applied(&self) -> String {
        format!("{}inbox:applied", self.ns)
    }

    /// Message id → the id of its entry in the history, for messages recorded in one hour.
    pub(crate) fn history_ids(&self, hour: u64) -> String {
        format!("{}history:ids:{hour}", self.ns)
    }

    /// A key of `scope`: `{ns}` for everything, `{ns}room:{R}:` or `{ns}nick:{N}:` (the name
    /// escaped, see the module docs), followed by `rest` (`{ns}words`, `{ns}room:{R}:words`).
    /// Built in one allocation of its exact size: a worker call names thousands of keys, and
    /// its `fred` key then takes the text as it is.
    fn scoped(&self, scope: &Scope, rest: &[&str]) -> String {
        let (kind, name) = match scope {
            Scope::Global => ("", None),
            Scope::Room(name) => ("room:{", Some(escaped(name))),
            Scope::Nick(name) => ("nick:{", Some(escaped(name))),
        };
        let name_len = name.as_ref().map_or(0, |n| n.len() + 2);
        let rest_len: usize = rest.iter().map(|p| p.len()).sum();
        let mut out = String::with_capacity(self.ns.len() + kind.len() + name_len + rest_len);
        out.push_str(&self.ns);
        out.push_str(kind);
        if let Some(name) = &name {
            out.push_str(name);
            out.push_str("}:");
        }
        for piece in rest {
            out.push_str(piece);
        }
        out
    }
}

/// A room's or nick's name as its keys spell it: `%`, `{` and `}` percent-encoded (invalid
/// UTF-8 replaced), borrowed when nothing changes.
fn escaped(name: &[u8]) -> Cow<'_, str> {
    let text = String::from_utf8_lossy(name);
    if !text.contains(['%', '{', '}']) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for ch in text.chars() {
        match ch {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            other => out.push(other),
        }
    }
    Cow::Owned(out)
}

/// `m:29590346`: a bucket in key names.
fn bucket_suffix(granularity: Granularity, number: u64) -> String {
    format!("{}:{number}", granularity.letter())
}

/// The bucket whose activity hash holds `bucket`'s count: minutes by hour, hours by day, days
/// by blocks of 32 days (few fields per hash, each hash expiring with its newest field).
pub(crate) fn activity_group(bucket: Bucket) -> Bucket {
    let minutes = match bucket.granularity {
        Granularity::Minute => 60,
        Granularity::Hour => 60 * 24,
        Granularity::Day => 60 * 24 * 32,
    };
    let group_ms = minutes * Granularity::Minute.ms();
    Bucket {
        granularity: bucket.granularity,
        number: bucket.start_ms() / group_ms,
    }
}

/// When the activity hash of `bucket`'s group is last written: its newest bucket's end.
pub(crate) fn activity_group_end_ms(bucket: Bucket) -> u64 {
    let group = activity_group(bucket);
    let size = match bucket.granularity {
        Granularity::Minute => 60,
        Granularity::Hour => 60 * 24,
        Granularity::Day => 60 * 24 * 32,
    } * Granularity::Minute.ms();
    (group.number + 1) * size
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn room_names_are_escaped_into_one_unambiguous_hash_tag() {
        let keys = Keys::new("ns:");
        let room = |s: &'static str| Scope::Room(Bytes::from_static(s.as_bytes()));
        assert_eq!(
            keys.list(&room("#foo"), TopList::Words),
            "ns:room:{#foo}:words"
        );
        assert_eq!(
            keys.list(&room("a}:b{%"), TopList::Nicks),
            "ns:room:{a%7D:b%7B%25}:nicks"
        );
        let bucket = Bucket::of(Granularity::Minute, 1_795_420_805_000);
        assert_eq!(
            keys.bucket_list(&room("#foo"), TopList::Emotes, bucket),
            "ns:room:{#foo}:emotes:m:29923680"
        );
        assert_eq!(
            keys.bucket_list(&Scope::Global, TopList::Words, bucket),
            "ns:words:m:29923680"
        );
        assert_eq!(
            keys.activity(&Scope::Global, bucket),
            ("ns:activity:m:498728".to_owned(), "29923680".to_owned())
        );
        assert_eq!(keys.list(&Scope::Global, TopList::Rooms), "ns:rooms");
        assert_eq!(
            keys.activity(&room("#foo"), bucket).0,
            "ns:room:{#foo}:activity:m:498728"
        );
        assert_eq!(keys.history(&Scope::Global), "ns:history");
        let nick = Scope::Nick(Bytes::from_static(b"x{y"));
        assert_eq!(keys.history(&nick), "ns:nick:{x%7By}:history");
        assert_eq!(keys.pending(&nick), "ns:nick:{x%7By}:pending");
        assert_eq!(keys.folded(&room("#foo")), "ns:room:{#foo}:folded");
        assert_eq!(keys.seen(Seen::Nick, true), "ns:nicks:last");
    }
}
