//! How tallies and details become script calls: the `KEYS` and `ARGV` of `lua/apply.lua` and
//! `lua/detail.lua`, whose layouts are written at the top of each script.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use fred::prelude::*;

use super::FOLD_GRACE_SECS;
use crate::detail::{Detail, Period, Place, Scope, Seen};
use crate::message::{Tally, TopList};
use crate::store::Mark;
use crate::store::keys::{Keys, activity_group_end_ms};
use crate::timeline::{Bucket, Granularity, MAX_FUTURE_MS, Retention};

/// The `KEYS` and `ARGV` of one call of the apply script.
pub struct ScriptCall {
    /// Every key the call touches.
    pub keys: Vec<Key>,
    /// The arguments.
    pub args: Vec<Value>,
}

/// Builds the apply script's calls for one namespace (public for the benchmarks).
pub struct ApplyCalls {
    keys: Keys,
    second_ttl: u64,
    failed_cap: usize,
}

impl ApplyCalls {
    /// Calls under `namespace`, with per-second counters kept `second_ttl` seconds and the
    /// newest `failed_cap` failed payloads.
    pub fn new(namespace: &str, second_ttl: u64, failed_cap: usize) -> ApplyCalls {
        ApplyCalls {
            keys: Keys::new(namespace),
            second_ttl,
            failed_cap,
        }
    }

    /// The call for `tally`.
    pub fn call(&self, tally: &Tally, mark: Option<&Mark>) -> ScriptCall {
        build_call(&self.keys, self.second_ttl, self.failed_cap, tally, mark)
    }
}

/// Builds the detail script's calls for one namespace (public for the benchmarks).
pub struct DetailCalls {
    keys: Keys,
    retention: Retention,
}

impl DetailCalls {
    /// Calls under `namespace`, keeping buckets as `retention` says.
    pub fn new(namespace: &str, retention: Retention) -> DetailCalls {
        DetailCalls {
            keys: Keys::new(namespace),
            retention,
        }
    }

    /// The call for `detail` at Unix millisecond `now_ms`.
    pub fn call(&self, detail: &Detail, mark: Option<&Mark>, now_ms: u64) -> ScriptCall {
        detail_call(&self.keys, &self.retention, detail, mark, now_ms)
    }
}

pub(super) fn build_call(
    keys: &Keys,
    second_ttl: u64,
    failed_cap: usize,
    tally: &Tally,
    mark: Option<&Mark>,
) -> ScriptCall {
    let mut call_keys = Vec::with_capacity(6 + tally.seconds.len());
    call_keys.push(Key::from(keys.writer(mark.map_or("", |m| &m.writer))));
    call_keys.extend(keys.fixed().iter().cloned().map(Key::from));
    call_keys.extend(
        tally
            .seconds
            .iter()
            .map(|&(second, _)| Key::from(keys.second(second))),
    );

    let pairs = tally.rooms.len() + tally.nicks.len() + tally.words.len();
    let mut args = Vec::with_capacity(7 + tally.seconds.len() + 2 * pairs + tally.failed.len());
    let int = |n: u64| Value::Integer(n as i64);
    let (seq, window) = mark.map_or((0, 1), |m| (m.seq, m.window.max(1)));
    args.push(int(seq));
    args.push(int(window));
    args.push(int(second_ttl));
    args.push(int(failed_cap as u64));
    args.push(int(tally.rooms.len() as u64));
    args.push(int(tally.nicks.len() as u64));
    args.push(int(tally.failed.len() as u64));
    args.extend(tally.seconds.iter().map(|&(_, n)| int(n)));
    for list in [&tally.rooms, &tally.nicks] {
        for (member, n) in list {
            args.push(int(*n));
            args.push(Value::Bytes(member.clone()));
        }
    }
    args.extend(tally.failed.iter().cloned().map(Value::Bytes));
    for (member, n) in &tally.words {
        args.push(int(*n));
        args.push(Value::Bytes(member.clone()));
    }
    ScriptCall {
        keys: call_keys,
        args,
    }
}

/// The fields of one activity hash: its expiry, and `field, n` pairs.
type ActivityGroup = (u64, Vec<(Value, u64)>);

/// The detail script's call for `detail` at `now_ms` (layout at the top of `lua/detail.lua`).
///
/// Hour and day buckets are made by rolling up finer ones once the hour or day has ended
/// ([`RedisStore::roll_up`]), not written per message: their increments are left out while the
/// bucket has not ended (its minutes carry them). A late message, for an hour or a day that has
/// ended, goes into it directly as well: a roll-up still to come replaces the bucket with the
/// sum of its finer ones, which hold the message too, and a roll-up that is done, skipped
/// (finer buckets no longer kept) or did not include its room leaves the write standing.
///
/// The groups go in this order: lists, each room's `f` group for an hour followed by its
/// minutes of that hour (the script needs the `f` group first), the rooms to roll up, activity,
/// first and last seen, nicks' records, and the history (which the script needs last).
pub(super) fn detail_call(
    keys: &Keys,
    retention: &Retention,
    detail: &Detail,
    mark: Option<&Mark>,
    now_ms: u64,
) -> ScriptCall {
    let mut call = DetailCall::new(keys, retention, detail, mark, now_ms);
    let (records, folds) = call.lists();
    let folding = call.folds(folds);
    call.rooms_to_roll_up(&folding);
    call.activity();
    call.seen();
    call.records(records);
    call.history();
    call.call
}

/// A room's minute lists of one hour, by (room, hour): with [`Detail::folds`] they stand for its
/// all-time increments too, and are written after the room's `f` group for the hour.
type Folds<'a> = BTreeMap<(&'a Scope, u64), Vec<&'a (Place, Vec<(Bytes, u64)>)>>;

/// One detail call being built, group by group.
struct DetailCall<'a> {
    keys: &'a Keys,
    retention: &'a Retention,
    detail: &'a Detail,
    now_ms: u64,
    call: ScriptCall,
}

impl<'a> DetailCall<'a> {
    /// The call with its mark (writer key, sequence number, window) and nothing else yet.
    fn new(
        keys: &'a Keys,
        retention: &'a Retention,
        detail: &'a Detail,
        mark: Option<&Mark>,
        now_ms: u64,
    ) -> DetailCall<'a> {
        let (seq, window) = mark.map_or((0, 1), |m| (m.seq, m.window.max(1)));
        // Room for every group's key and arguments: a call carries thousands of them, and
        // growing these vectors one doubling at a time copies them over and over.
        let groups = detail.lists.len() + detail.activity.len() + 2 * detail.seen.len();
        let mut call = ScriptCall {
            keys: Vec::with_capacity(1 + groups + 2 * detail.history.len()),
            args: Vec::with_capacity(2 + 4 * groups + detail.members()),
        };
        call.keys
            .push(Key::from(keys.writer(mark.map_or("", |m| &m.writer))));
        call.args.push(Value::Integer(seq as i64));
        call.args.push(Value::Integer(window as i64));
        DetailCall {
            keys,
            retention,
            detail,
            now_ms,
            call,
        }
    }

    /// Whether `bucket` is written now: a minute always, an hour or a day only once it has
    /// ended (until then its minutes carry the increments, and its roll-up makes it).
    fn written(&self, bucket: Bucket) -> bool {
        bucket.granularity == Granularity::Minute || bucket.end_ms() <= self.now_ms
    }

    /// The lists' groups, all but a nick's all-time lists (returned as one record per nick)
    /// and, with [`Detail::folds`], a room's minutes (returned by room and hour).
    fn lists(&mut self) -> (BTreeMap<&'a Scope, Vec<u8>>, Folds<'a>) {
        let (keys, retention) = (self.keys, self.retention);
        let mut records: BTreeMap<&Scope, Vec<u8>> = BTreeMap::new();
        let mut folds: Folds = BTreeMap::new();
        for item in &self.detail.lists {
            let (place, members) = item;
            if let (true, Scope::Room(_), Period::Bucket(b)) =
                (self.detail.folds, &place.scope, place.period)
                && b.granularity == Granularity::Minute
            {
                let hour = Bucket::of(Granularity::Hour, b.start_ms()).number;
                folds.entry((&place.scope, hour)).or_default().push(item);
                continue;
            }
            match place.period {
                Period::AllTime if matches!(place.scope, Scope::Nick(_)) => {
                    let record = records.entry(&place.scope).or_default();
                    for (member, n) in members {
                        push_increment(record, place.list, member, *n);
                    }
                }
                Period::AllTime => push_group(
                    &mut self.call,
                    keys.list(&place.scope, place.list),
                    "z",
                    0,
                    members,
                ),
                Period::Bucket(bucket) => {
                    if !self.written(bucket) {
                        continue;
                    }
                    let key = keys.bucket_list(&place.scope, place.list, bucket);
                    let expiry = retention.expiry_secs(bucket);
                    push_group(&mut self.call, key, "z", expiry, members);
                }
            }
        }
        (records, folds)
    }

    /// Each room's `f` group for an hour, followed by its minutes of that hour (`zmw`, `zmn`,
    /// `zme`: the script adds them to all time as well where it must). Returns the hours.
    fn folds(&mut self, folds: Folds<'a>) -> BTreeSet<u64> {
        let (keys, retention) = (self.keys, self.retention);
        let folding: BTreeSet<u64> = folds.keys().map(|(_, hour)| *hour).collect();
        let int = |n: u64| Value::Integer(n as i64);
        for ((room, hour), minutes) in folds {
            let Scope::Room(name) = room else {
                continue;
            };
            let call = &mut self.call;
            call.keys.push(Key::from(keys.folded(room)));
            call.keys.push(Key::from(keys.rollup()));
            for list in [TopList::Words, TopList::Nicks, TopList::Emotes] {
                call.keys.push(Key::from(keys.list(room, list)));
            }
            call.keys.push(Key::from(keys.folding(hour)));
            let legacy = (self.now_ms + MAX_FUTURE_MS) / Granularity::Hour.ms();
            let hour_bucket = Bucket {
                granularity: Granularity::Hour,
                number: hour,
            };
            // As long as the hour's last minute may wait.
            let folding_expiry = retention.expiry_secs(Bucket::of(
                Granularity::Minute,
                hour_bucket.end_ms() - Granularity::Minute.ms(),
            )) + FOLD_GRACE_SECS;
            call.args.extend([
                Value::from_static_str("f"),
                int(hour),
                int(legacy),
                int(FOLD_GRACE_SECS),
                Value::Bytes(name.clone()),
                int(folding_expiry),
            ]);
            for (place, members) in minutes {
                let Period::Bucket(bucket) = place.period else {
                    continue;
                };
                let op = match place.list {
                    TopList::Words => "zmw",
                    TopList::Nicks => "zmn",
                    _ => "zme",
                };
                let key = keys.bucket_list(room, place.list, bucket);
                push_group(call, key, op, retention.expiry_secs(bucket), members);
            }
        }
        folding
    }

    /// The rooms with messages in each hour and day, for its roll-up (`s` groups). `folding`:
    /// the hours whose minutes wait for their roll-up to fold them.
    fn rooms_to_roll_up(&mut self, folding: &BTreeSet<u64>) {
        let retention = self.retention;
        let mut active: BTreeMap<Bucket, Vec<(Value, u64)>> = BTreeMap::new();
        for (scope, bucket, _) in &self.detail.activity {
            if let (Scope::Room(room), Granularity::Minute) = (scope, bucket.granularity) {
                for g in [Granularity::Hour, Granularity::Day] {
                    active
                        .entry(Bucket::of(g, bucket.start_ms()))
                        .or_default()
                        .push((Value::Bytes(room.clone()), 1));
                }
            }
        }
        for (bucket, rooms) in active {
            // Kept until its finer buckets are gone: no roll-up after that; and while a room's
            // minutes wait for its roll-up to fold them, as long as they do.
            let finer = match bucket.granularity {
                Granularity::Hour => Granularity::Minute,
                _ => Granularity::Hour,
            };
            let mut expiry =
                (bucket.end_ms() + retention.of(finer).as_millis() as u64).div_ceil(1000);
            if bucket.granularity == Granularity::Hour && folding.contains(&bucket.number) {
                expiry += FOLD_GRACE_SECS;
            }
            push_group(
                &mut self.call,
                self.keys.active(bucket),
                "s",
                expiry,
                &rooms,
            );
        }
    }

    /// The message counts per bucket, as fields of the activity hashes (`h` groups).
    fn activity(&mut self) {
        let mut hashes: BTreeMap<String, ActivityGroup> = BTreeMap::new();
        for (scope, bucket, n) in &self.detail.activity {
            if !self.written(*bucket) {
                continue;
            }
            let (key, field) = self.keys.activity(scope, *bucket);
            let kept = self.retention.of(bucket.granularity).as_millis() as u64;
            let expiry = (activity_group_end_ms(*bucket) + kept).div_ceil(1000);
            let entry = hashes.entry(key).or_insert((expiry, Vec::new()));
            entry.1.push((Value::from(field), *n));
        }
        for (key, (expiry, pairs)) in hashes {
            push_group(&mut self.call, key, "h", expiry, &pairs);
        }
    }

    /// The earliest and latest message times of rooms and nicks (`lt` and `gt` groups).
    fn seen(&mut self) {
        let detail = self.detail;
        for kind in [Seen::Room, Seen::Nick] {
            let of_kind = || detail.seen.iter().filter(move |s| s.0 == kind);
            if of_kind().next().is_none() {
                continue;
            }
            let firsts: Vec<(Bytes, u64)> = of_kind()
                .map(|(_, name, first, _)| (name.clone(), *first))
                .collect();
            push_group(
                &mut self.call,
                self.keys.seen(kind, false),
                "lt",
                0,
                &firsts,
            );
            let lasts: Vec<(Bytes, u64)> = of_kind()
                .map(|(_, name, _, last)| (name.clone(), *last))
                .collect();
            push_group(&mut self.call, self.keys.seen(kind, true), "gt", 0, &lasts);
        }
    }

    /// A nick's all-time increments as one record (`a` groups, `lua/records.lua`).
    fn records(&mut self, records: BTreeMap<&'a Scope, Vec<u8>>) {
        for (nick, record) in records {
            self.call.keys.push(Key::from(self.keys.pending(nick)));
            for list in [TopList::Words, TopList::Rooms, TopList::Emotes] {
                self.call.keys.push(Key::from(self.keys.list(nick, list)));
            }
            self.call.args.push(Value::from_static_str("a"));
            self.call.args.push(Value::Bytes(record.into()));
        }
    }

    /// The history group, last: the entries, the hour's ids hash and the room and nick index
    /// streams (layout at the top of `lua/detail.lua`).
    fn history(&mut self) {
        let (keys, entries, now_ms) = (self.keys, &self.detail.history, self.now_ms);
        if entries.is_empty() {
            return;
        }
        let call = &mut self.call;
        let kept = self.retention.history.as_millis() as u64;
        let hour = now_ms / Granularity::Hour.ms();
        call.keys.push(Key::from(keys.history(&Scope::Global)));
        call.keys.push(Key::from(keys.history_ids(hour)));
        // Not kept: the live feed's last 1,000 linger an hour past their hour, then go.
        let linger = if kept == 0 {
            Granularity::Hour.ms()
        } else {
            kept
        };
        let expiry = ((hour + 1) * Granularity::Hour.ms() + linger).div_ceil(1000);
        let minid = if kept == 0 {
            0
        } else {
            now_ms.saturating_sub(kept).max(1)
        };
        call.args.push(Value::from_static_str("x"));
        call.args.push(Value::Integer(expiry as i64));
        call.args.push(Value::from(minid.to_string()));
        call.args.push(Value::Integer(entries.len() as i64));
        // A call's entries share few rooms and nicks: each index key is named once.
        let mut indexes: HashMap<(char, &[u8]), Key> = HashMap::new();
        for entry in entries {
            call.args.push(Value::from(entry.json.as_str()));
            call.args.push(Value::from(entry.id.as_str()));
            call.args.push(Value::Bytes(entry.room.clone()));
            let kept_in = |name: &bytes::Bytes| kept > 0 && !name.is_empty();
            for (flag, name) in [('r', &entry.room), ('n', &entry.nick)] {
                if kept_in(name) {
                    let key = indexes.entry((flag, name)).or_insert_with(|| {
                        let scope = match flag {
                            'r' => Scope::Room(name.clone()),
                            _ => Scope::Nick(name.clone()),
                        };
                        Key::from(keys.history(&scope))
                    });
                    call.keys.push(key.clone());
                }
            }
            let flags = match (kept_in(&entry.room), kept_in(&entry.nick)) {
                (true, true) => "rn",
                (true, false) => "r",
                (false, true) => "n",
                (false, false) => "-",
            };
            call.args.push(Value::from_static_str(flags));
        }
    }
}

/// Adds one group of `lua/detail.lua` to `call`: its key, operation, expiry and pairs.
/// Increments of 1 (most of them) go without their count: half the arguments to convert.
fn push_group<M: Clone + Into<Value>>(
    call: &mut ScriptCall,
    key: String,
    op: &'static str,
    expiry: u64,
    pairs: &[(M, u64)],
) {
    let int = |n: u64| Value::Integer(n as i64);
    let ones = pairs.iter().filter(|(_, n)| *n == 1).count();
    let others = pairs.len() - ones;
    call.keys.push(Key::from(key));
    call.args.reserve(4 + ones + 2 * others);
    call.args.push(Value::from_static_str(op));
    call.args.push(int(expiry));
    call.args.push(int(ones as u64));
    call.args.push(int(others as u64));
    let one = pairs.iter().filter(|(_, n)| *n == 1);
    call.args
        .extend(one.map(|(member, _)| member.clone().into()));
    for (member, n) in pairs.iter().filter(|(_, n)| *n != 1) {
        call.args.push(member.clone().into());
        call.args.push(int(*n));
    }
}

/// The letter of `list` in a nick's pending records (`lua/records.lua`).
pub(super) fn list_letter(list: TopList) -> char {
    match list {
        TopList::Words => 'w',
        TopList::Nicks => 'n',
        TopList::Rooms => 'r',
        TopList::Emotes => 'e',
    }
}

/// Appends one increment to a nick's record: `<letter><length>:<member><count>;`.
fn push_increment(record: &mut Vec<u8>, list: TopList, member: &[u8], count: u64) {
    let mut number = itoa::Buffer::new();
    record.push(list_letter(list) as u8);
    record.extend_from_slice(number.format(member.len()).as_bytes());
    record.push(b':');
    record.extend_from_slice(member);
    record.extend_from_slice(number.format(count).as_bytes());
    record.push(b';');
}

/// The increments of a nick's pending records, per list, in order (`lua/records.lua`); `None`
/// when the text is not such records.
pub(crate) fn parse_records(text: &[u8]) -> Option<Vec<(TopList, bytes::Bytes, u64)>> {
    let number = |digits: &[u8]| std::str::from_utf8(digits).ok()?.parse::<u64>().ok();
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((&letter, after)) = rest.split_first() {
        let list = [TopList::Words, TopList::Rooms, TopList::Emotes]
            .into_iter()
            .find(|l| list_letter(*l) as u8 == letter)?;
        let colon = after.iter().position(|b| *b == b':')?;
        let len = number(&after[..colon])? as usize;
        let member = after.get(colon + 1..colon + 1 + len)?;
        let tail = &after[colon + 1 + len..];
        let semi = tail.iter().position(|b| *b == b';')?;
        out.push((
            list,
            bytes::Bytes::copy_from_slice(member),
            number(&tail[..semi])?,
        ));
        rest = &tail[semi + 1..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_a_call_touches_is_in_keys_and_under_the_namespace() {
        let tally = Tally {
            seconds: vec![(10, 2), (11, 1)],
            words: vec![("a".into(), 1)],
            failed: vec!["x".into()],
            ..Tally::default()
        };
        let mark = Mark {
            writer: "w1".into(),
            seq: 5,
            window: 128,
        };
        let call = ApplyCalls::new("ns:", 300, 1000).call(&tally, Some(&mark));
        let keys: Vec<String> = call
            .keys
            .iter()
            .map(|k| String::from_utf8_lossy(k.as_bytes()).into_owned())
            .collect();
        assert_eq!(
            keys,
            [
                "ns:writer:w1",
                "ns:words",
                "ns:nicks",
                "ns:rooms",
                "ns:failedMessages",
                "ns:failedMessages:total",
                "ns:messagesPerSecond:10",
                "ns:messagesPerSecond:11"
            ]
        );
        assert_eq!(call.args[0], Value::Integer(5));
        assert_eq!(call.args[1], Value::Integer(128));
    }

    #[test]
    fn a_nicks_record_reads_back_whatever_its_members_hold() {
        let members: [&[u8]; 5] = [b"w1", b"a:1;", b"", "한;:".as_bytes(), b"12;3:"];
        let mut record = Vec::new();
        for (i, member) in members.iter().enumerate() {
            let list = [TopList::Words, TopList::Rooms, TopList::Emotes][i % 3];
            push_increment(&mut record, list, member, i as u64 + 1);
        }
        let read = parse_records(&record).unwrap();
        assert_eq!(read.len(), members.len());
        for (i, (list, member, n)) in read.iter().enumerate() {
            assert_eq!(
                *list,
                [TopList::Words, TopList::Rooms, TopList::Emotes][i % 3]
            );
            assert_eq!(&member[..], members[i]);
            assert_eq!(*n, i as u64 + 1);
        }
        assert_eq!(parse_records(b"w2:ab"), None);
        assert_eq!(parse_records(b"x1:a1;"), None);
        assert_eq!(parse_records(b""), Some(Vec::new()));
    }
}
