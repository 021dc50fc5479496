//! The chat message: how one upstream payload is judged and what it adds to the statistics.
//!
//! This module is the counting rules (README.md, "Counting rules") in code. [`Rules::judge`]
//! classifies a payload: failed, or counted — its [`Tally`] (room, nick, words: the all-time
//! lists, applied at once) and, with the full statistics, its [`Message`] (its time, room,
//! nick, words and emotes: what the statistics by room, nick, emote and time are built from).
//! [`TallyBuilder`] folds the tallies of many messages into one, so that one store call can
//! carry a whole batch.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::emotes::{EmoteNames, emotes_in};
use crate::timeline::message_time;

/// A top list kept by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopList {
    /// Words of message bodies.
    Words = 0,
    /// Nicks of message authors.
    Nicks,
    /// Rooms (channels) the messages were sent to.
    Rooms,
    /// Emotes used in message bodies.
    Emotes,
}

impl TopList {
    /// Every top list, in a fixed order.
    pub const ALL: [TopList; 4] = [
        TopList::Words,
        TopList::Nicks,
        TopList::Rooms,
        TopList::Emotes,
    ];

    /// The all-time lists every message updates at once (the TypeScript service's).
    pub const IMMEDIATE: [TopList; 3] = [TopList::Words, TopList::Nicks, TopList::Rooms];

    /// The list's position in [`TopList::ALL`], for per-list arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The list's name in routes and Redis keys (`words`, `nicks`, `rooms`, `emotes`).
    pub fn name(self) -> &'static str {
        match self {
            TopList::Words => "words",
            TopList::Nicks => "nicks",
            TopList::Rooms => "rooms",
            TopList::Emotes => "emotes",
        }
    }
}

/// What one message, or a batch of messages, adds to the statistics.
///
/// Members are UTF-8 text held as [`Bytes`]; when a payload has no JSON escapes they are
/// slices of the payload itself, so building a tally copies nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Messages counted, per Unix second of processing time.
    pub seconds: Vec<(u64, u64)>,
    /// Increments of the words list.
    pub words: Vec<(Bytes, u64)>,
    /// Increments of the nicks list.
    pub nicks: Vec<(Bytes, u64)>,
    /// Increments of the rooms list.
    pub rooms: Vec<(Bytes, u64)>,
    /// Raw payloads that could not be processed, each at most the configured length.
    pub failed: Vec<Bytes>,
}

/// The fields of a payload that the counting rules read. Other fields are ignored, and a field
/// given twice takes its last value: a payload reads as `JSON.parse` reads it (the TypeScript
/// service's reading), so no JSON object fails.
#[derive(Default)]
struct Payload<'a> {
    room: Text<'a>,
    nick: Text<'a>,
    body: Text<'a>,
    tags: Text<'a>,
}

impl Payload<'_> {
    /// The payload read from a JSON object, or `None` when `text` is not one. An escaped lone
    /// surrogate (`"\ud83d"` alone: valid JSON, but no Unicode scalar) reads as U+FFFD, as the
    /// TypeScript service stored it (Node encodes a lone surrogate to UTF-8 as U+FFFD).
    fn read(text: &str) -> Option<Payload<'_>> {
        // A derived struct would also accept a JSON array; the rules want an object.
        if !text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{')
        {
            return None;
        }
        match serde_json::from_str::<Payload>(text) {
            Ok(payload) => Some(payload),
            Err(_) => {
                let replaced = without_lone_surrogates(text)?;
                let payload = serde_json::from_str::<Payload>(&replaced).ok()?;
                Some(payload.into_owned())
            }
        }
    }

    fn into_owned(self) -> Payload<'static> {
        let own = |text: Text| Text(text.0.into_owned().into());
        Payload {
            room: own(self.room),
            nick: own(self.nick),
            body: own(self.body),
            tags: own(self.tags),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Payload<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PayloadVisitor;
        impl<'de> Visitor<'de> for PayloadVisitor {
            type Value = Payload<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut payload = Payload::default();
                while let Some(Text(key)) = map.next_key::<Text>()? {
                    let field = match key.as_ref() {
                        "room" => &mut payload.room,
                        "nick" => &mut payload.nick,
                        "body" => &mut payload.body,
                        "tags" => &mut payload.tags,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *field = map.next_value()?;
                }
                Ok(payload)
            }
        }
        deserializer.deserialize_map(PayloadVisitor)
    }
}

/// `text` (JSON) with every escaped lone surrogate replaced by `\ufffd`, or `None` when it has
/// none. A backslash is only valid inside a JSON string, so every one starts an escape: `\u`
/// and four hex digits, or a backslash and one character.
fn without_lone_surrogates(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let unit = |at: usize| -> Option<u16> {
        if bytes.get(at..at + 2)? != b"\\u" {
            return None;
        }
        let hex = std::str::from_utf8(bytes.get(at + 2..at + 6)?).ok()?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u16::from_str_radix(hex, 16).ok()
    };
    let (mut out, mut copied, mut at) = (None::<String>, 0, 0);
    while at < bytes.len() {
        if bytes[at] != b'\\' {
            at += 1;
            continue;
        }
        match unit(at) {
            Some(0xD800..=0xDBFF) if matches!(unit(at + 6), Some(0xDC00..=0xDFFF)) => at += 12,
            Some(0xD800..=0xDFFF) => {
                let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                out.push_str(&text[copied..at]);
                out.push_str("\\ufffd");
                at += 6;
                copied = at;
            }
            _ => at += 2,
        }
    }
    out.map(|mut out| {
        out.push_str(&text[copied..]);
        out
    })
}

/// The values of `names` in Twitch IRC tags `k=v;k=v` (the first of each), read in one pass:
/// a message's tags are a few hundred bytes, and three of them are wanted.
fn tag_values<'t, const N: usize>(tags: &'t str, names: [&str; N]) -> [Option<&'t str>; N] {
    let mut found = [None; N];
    let mut missing = N;
    for pair in tags.split(';') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        if let Some(i) = names.iter().position(|name| *name == key)
            && found[i].is_none()
        {
            found[i] = Some(value);
            missing -= 1;
            if missing == 0 {
                break;
            }
        }
    }
    found
}

/// A string field that reads as "" when it is missing or not a string.
#[derive(Default)]
struct Text<'a>(std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(v.to_owned().into()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(v.into()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Text::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text::default())
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

/// The member bytes of `text`: a slice of `payload` when `text` points into it, else a copy.
fn member(payload: &Bytes, text: &str) -> Bytes {
    let range = payload.as_ptr_range();
    if range.contains(&text.as_ptr()) {
        payload.slice_ref(text.as_bytes())
    } else {
        Bytes::copy_from_slice(text.as_bytes())
    }
}

/// Counts the occurrences of each word of one message in O(n): a chat line has a handful of
/// words, which a scan of the short list finds fastest, but the caps allow a line of millions of
/// distinct words, so past [`WordCounts::SCAN_LIMIT`] of them an index takes over.
#[derive(Default)]
struct WordCounts<'t> {
    counts: Vec<(&'t str, u64)>,
    index: HashMap<&'t str, usize>,
}

impl<'t> WordCounts<'t> {
    /// Distinct words up to which a linear scan is used.
    const SCAN_LIMIT: usize = 16;

    fn add(&mut self, word: &'t str) {
        if self.counts.len() < Self::SCAN_LIMIT {
            match self.counts.iter_mut().find(|(w, _)| *w == word) {
                Some((_, n)) => *n += 1,
                None => self.counts.push((word, 1)),
            }
            return;
        }
        if self.index.is_empty() {
            self.index = self
                .counts
                .iter()
                .enumerate()
                .map(|(i, (w, _))| (*w, i))
                .collect();
        }
        match self.index.get(word) {
            Some(&i) => self.counts[i].1 += 1,
            None => {
                self.index.insert(word, self.counts.len());
                self.counts.push((word, 1));
            }
        }
    }

    /// The counts, as members of `payload`.
    fn into_members(self, payload: &Bytes) -> Vec<(Bytes, u64)> {
        self.counts
            .into_iter()
            .map(|(w, n)| (member(payload, w), n))
            .collect()
    }
}

/// What one counted message adds to the statistics by room, nick, emote and time.
///
/// Members are slices of the payload (or copies, when JSON escapes changed the text), like a
/// [`Tally`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its time (Unix ms): `tmi-sent-ts` when usable, else the processing time.
    pub time_ms: u64,
    /// Its room, when not blank.
    pub room: Option<Bytes>,
    /// Its nick, when not blank.
    pub nick: Option<Bytes>,
    /// Its words and their occurrences (the tally's).
    pub words: Vec<(Bytes, u64)>,
    /// Its emotes and their uses.
    pub emotes: Vec<(Bytes, u64)>,
    /// Its upstream id (the `id` tag), if it has one.
    pub id: Option<Bytes>,
    /// Its body, as received.
    pub body: Bytes,
}

/// What judging one payload gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// Its effect on the all-time lists, messages per second and failed messages.
    pub tally: Tally,
    /// Its effect on the statistics by room, nick, emote and time, and its history entry:
    /// counted messages only, with the full statistics or the history on, never for ignored
    /// nicks.
    pub message: Option<Message>,
}

/// The counting rules, with their settings.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Failed payloads are kept cut to this many bytes.
    pub failed_max: usize,
    /// Whether the statistics by room, nick, emote and time are gathered (`STATISTICS=full`).
    pub full: bool,
    /// Nicks left out of every statistic but messages per second, trimmed and lowercase.
    pub ignored: Arc<HashSet<String>>,
    /// Third-party emote names.
    pub emote_names: Arc<EmoteNames>,
    /// Whether counted messages are kept for the history and the live feed.
    pub history: bool,
}

impl Rules {
    /// Part 1's rules: all-time lists only, nobody ignored.
    pub fn basic(failed_max: usize) -> Rules {
        Rules {
            failed_max,
            ..Rules::default()
        }
    }

    /// The ignored-nick set of a comma-separated list (`IGNORED_NICKS`).
    pub fn ignored_nicks(list: &str) -> HashSet<String> {
        list.split(',')
            .map(|n| n.trim().to_lowercase())
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// Judges one payload processed at Unix millisecond `processed_ms`.
    ///
    /// A payload that is not UTF-8 or not a JSON object is a failed message: its raw text, cut
    /// to `failed_max` bytes, is kept and nothing else is counted. A message from an ignored
    /// nick counts toward messages per second only.
    pub fn judge(&self, payload: &Bytes, processed_ms: u64) -> Judged {
        let parsed = std::str::from_utf8(payload).ok().and_then(Payload::read);
        let Some(parsed) = parsed else {
            return Judged {
                tally: Tally::failed(payload, self.failed_max),
                message: None,
            };
        };
        let mut tally = Tally {
            seconds: vec![(processed_ms / 1000, 1)],
            ..Tally::default()
        };
        let (room, nick) = (parsed.room.0.as_ref(), parsed.nick.0.as_ref());
        if !self.ignored.is_empty() && self.ignored.contains(&nick.trim().to_lowercase()) {
            return Judged {
                tally,
                message: None,
            };
        }
        let present = |text: &str| (!text.trim().is_empty()).then(|| member(payload, text));
        let (room, nick) = (present(room), present(nick));
        tally.rooms.extend(room.iter().map(|r| (r.clone(), 1)));
        tally.nicks.extend(nick.iter().map(|n| (n.clone(), 1)));
        let body = parsed.body.0.as_ref();
        let mut words = WordCounts::default();
        for word in body.split_whitespace() {
            words.add(word);
        }
        tally.words = words.into_members(payload);
        if !self.full && !self.history {
            return Judged {
                tally,
                message: None,
            };
        }
        let [emote_tag, sent, id] =
            tag_values(parsed.tags.0.as_ref(), ["emotes", "tmi-sent-ts", "id"]);
        let mut emotes = WordCounts::default();
        for emote in emotes_in(body, emote_tag, &self.emote_names) {
            emotes.add(emote);
        }
        let message = Message {
            time_ms: message_time(sent, processed_ms),
            room,
            nick,
            words: tally.words.clone(),
            emotes: emotes.into_members(payload),
            id: id.filter(|id| !id.is_empty()).map(|id| member(payload, id)),
            body: member(payload, body),
        };
        Judged {
            tally,
            message: Some(message),
        }
    }
}

impl Tally {
    /// Judges one payload by part 1's rules, as processed during Unix second `second`.
    pub fn from_payload(payload: &Bytes, second: u64, failed_max: usize) -> Tally {
        Rules::basic(failed_max).judge(payload, second * 1000).tally
    }

    /// A failed message whose raw text is `raw`, cut to at most `max` bytes.
    pub fn failed(raw: &Bytes, max: usize) -> Tally {
        Tally {
            failed: vec![raw.slice(..raw.len().min(max))],
            ..Tally::default()
        }
    }

    /// Messages counted (failed ones excluded).
    pub fn messages(&self) -> u64 {
        self.seconds.iter().map(|(_, n)| n).sum()
    }

    /// How many members (per-second counters, list increments, failed payloads) it writes: the
    /// measure of a store call's work.
    pub fn members(&self) -> usize {
        self.seconds.len()
            + self.words.len()
            + self.nicks.len()
            + self.rooms.len()
            + self.failed.len()
    }

    /// The same increments cut into parts of at most `max` members each, in order, so that the
    /// work of one store call stays bounded whatever one message (or batch) holds. The parts
    /// add up to exactly this tally; the messages it counts are in the first part.
    pub fn split(self, max: usize) -> Vec<Tally> {
        let max = max.max(1);
        if self.members() <= max {
            return vec![self];
        }
        fn spread<T>(
            items: Vec<T>,
            parts: &mut Vec<Tally>,
            max: usize,
            field: fn(&mut Tally) -> &mut Vec<T>,
        ) {
            for item in items {
                if parts.last().is_none_or(|p| p.members() >= max) {
                    parts.push(Tally::default());
                }
                if let Some(part) = parts.last_mut() {
                    field(part).push(item);
                }
            }
        }
        let mut parts = Vec::with_capacity(self.members() / max + 1);
        spread(self.seconds, &mut parts, max, |t| &mut t.seconds);
        spread(self.rooms, &mut parts, max, |t| &mut t.rooms);
        spread(self.nicks, &mut parts, max, |t| &mut t.nicks);
        spread(self.failed, &mut parts, max, |t| &mut t.failed);
        spread(self.words, &mut parts, max, |t| &mut t.words);
        parts
    }

    /// True when the tally changes nothing.
    pub fn is_empty(&self) -> bool {
        self.seconds.is_empty()
            && self.failed.is_empty()
            && self.words.is_empty()
            && self.nicks.is_empty()
            && self.rooms.is_empty()
    }

    /// The increments of one all-time list (emotes are not counted at once: none).
    pub fn list(&self, list: TopList) -> &[(Bytes, u64)] {
        match list {
            TopList::Words => &self.words,
            TopList::Nicks => &self.nicks,
            TopList::Rooms => &self.rooms,
            TopList::Emotes => &[],
        }
    }
}

/// Folds many tallies into one with the same total effect (used to coalesce a batch).
#[derive(Debug, Default)]
pub struct TallyBuilder {
    seconds: HashMap<u64, u64>,
    lists: [HashMap<Bytes, u64>; 3],
    failed: Vec<Bytes>,
    messages: usize,
}

impl TallyBuilder {
    /// Adds one tally. Members new to the batch are copied, so that a batch holds no slices of
    /// the input chunks it was built from and those can be freed while it waits in flight.
    pub fn add(&mut self, tally: Tally) {
        self.messages += 1;
        for (second, n) in tally.seconds {
            *self.seconds.entry(second).or_default() += n;
        }
        for (i, incs) in [tally.words, tally.nicks, tally.rooms]
            .into_iter()
            .enumerate()
        {
            for (member, n) in incs {
                match self.lists[i].get_mut(&member) {
                    Some(count) => *count += n,
                    None => {
                        self.lists[i].insert(Bytes::copy_from_slice(&member), n);
                    }
                }
            }
        }
        self.failed
            .extend(tally.failed.iter().map(|f| Bytes::copy_from_slice(f)));
    }

    /// Number of tallies added so far.
    pub fn len(&self) -> usize {
        self.messages
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// The merged tally; the builder is left empty.
    pub fn take(&mut self) -> Tally {
        let mut lists = std::mem::take(&mut self.lists).map(|m| m.into_iter().collect::<Vec<_>>());
        self.messages = 0;
        Tally {
            seconds: self.seconds.drain().collect(),
            words: std::mem::take(&mut lists[0]),
            nicks: std::mem::take(&mut lists[1]),
            rooms: std::mem::take(&mut lists[2]),
            failed: std::mem::take(&mut self.failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_its_first_pair_of_exactly_that_name() {
        let tags = "id-x=1;emotes;id=;tmi-sent-ts=5;emotes=25:0-4;id=2;tmi-sent-ts=6";
        assert_eq!(
            tag_values(tags, ["emotes", "tmi-sent-ts", "id", "color"]),
            [Some("25:0-4"), Some("5"), Some(""), None]
        );
        assert_eq!(tag_values("", ["id"]), [None]);
        assert_eq!(tag_values("a=b=c", ["a"]), [Some("b=c")]);
    }

    fn tally(json: &str) -> Tally {
        Tally::from_payload(&Bytes::copy_from_slice(json.as_bytes()), 7, 100)
    }

    fn names(list: &[(Bytes, u64)]) -> Vec<(String, u64)> {
        list.iter()
            .map(|(m, n)| (String::from_utf8(m.to_vec()).unwrap(), *n))
            .collect()
    }

    #[test]
    fn a_message_counts_its_room_nick_and_each_word_occurrence() {
        let t = tally(r##"{"room":"#r","nick":"n","body":"rgb  rgb\trgb Kappa"}"##);
        assert_eq!(t.seconds, vec![(7, 1)]);
        assert_eq!(names(&t.rooms), vec![("#r".into(), 1)]);
        assert_eq!(names(&t.nicks), vec![("n".into(), 1)]);
        assert_eq!(
            names(&t.words),
            vec![("rgb".into(), 3), ("Kappa".into(), 1)]
        );
        assert!(t.failed.is_empty());
    }

    #[test]
    fn blank_rooms_and_nicks_are_not_counted_but_others_are_kept_untrimmed() {
        let t = tally(r##"{"room":"  ","nick":" x ","body":""}"##);
        assert!(t.rooms.is_empty());
        assert_eq!(names(&t.nicks), vec![(" x ".into(), 1)]);
        assert!(t.words.is_empty());
        assert_eq!(t.messages(), 1);
    }

    #[test]
    fn missing_or_non_string_fields_read_as_empty() {
        let t = tally(r##"{"room":5,"nick":null,"body":{"a":[1,2]},"tags":"x=y"}"##);
        assert_eq!(t.messages(), 1);
        assert!(t.rooms.is_empty() && t.nicks.is_empty() && t.words.is_empty());
        assert_eq!(tally("{}").messages(), 1);
    }

    #[test]
    fn escaped_text_is_unescaped_and_unicode_whitespace_splits_words() {
        let t = tally(r##"{"body":"caf\u00e9\u3000ㅋㅋ\nOooh?"}"##);
        assert_eq!(
            names(&t.words),
            vec![("café".into(), 1), ("ㅋㅋ".into(), 1), ("Oooh?".into(), 1)]
        );
    }

    #[test]
    fn payloads_that_are_not_utf8_json_objects_fail_with_their_raw_text() {
        for raw in [
            &b"[1,2]"[..],
            b"\"text\"",
            b"{\"body\":",
            b"{\"body\":\"\xff\"}",
            b"nope",
            b"",
        ] {
            let t = Tally::from_payload(&Bytes::copy_from_slice(raw), 1, 100);
            assert_eq!(t.failed, vec![Bytes::copy_from_slice(raw)], "{raw:?}");
            assert!(t.seconds.is_empty() && t.words.is_empty());
        }
    }

    #[test]
    fn a_field_given_twice_takes_its_last_value_as_json_parse_does() {
        let t = tally(r##"{"room":"#a","body":"one","room":"#b","nick":"x","body":"two two"}"##);
        assert_eq!(t.messages(), 1);
        assert_eq!(names(&t.rooms), vec![("#b".into(), 1)]);
        assert_eq!(names(&t.words), vec![("two".into(), 2)]);
        assert!(t.failed.is_empty());
    }

    #[test]
    fn an_escaped_lone_surrogate_reads_as_the_replacement_character() {
        // As Node stored it: JSON.parse keeps the lone surrogate, its UTF-8 encoding is U+FFFD.
        let t = tally(
            r##"{"room":"#r","nick":"n\udc00","body":"a\ud83d b \ud83d\ude00 \\ud800 c\ud800\u0041"}"##,
        );
        assert!(t.failed.is_empty(), "{t:?}");
        assert_eq!(names(&t.nicks), vec![("n\u{fffd}".into(), 1)]);
        assert_eq!(
            names(&t.words),
            vec![
                ("a\u{fffd}".into(), 1),
                ("b".into(), 1),
                ("\u{1f600}".into(), 1),
                ("\\ud800".into(), 1),
                ("c\u{fffd}A".into(), 1),
            ]
        );
        assert_eq!(
            without_lone_surrogates(r#"{"body":"\ud83d\ude00 \\ud800"}"#),
            None
        );
    }

    #[test]
    fn failed_payloads_are_cut_to_the_configured_length() {
        let t = Tally::from_payload(&Bytes::from_static(b"not json at all"), 1, 3);
        assert_eq!(t.failed, vec![Bytes::from_static(b"not")]);
    }

    #[test]
    fn a_line_of_many_distinct_words_is_counted_in_linear_time() {
        // 200,000 distinct words: a quadratic count would take minutes, this takes milliseconds.
        let body: Vec<String> = (0..200_000).map(|i| format!("w{i}")).collect();
        let json = format!(r#"{{"body":"{} w7 w199999"}}"#, body.join(" "));
        let started = std::time::Instant::now();
        let t = tally(&json);
        assert_eq!(t.words.len(), 200_000);
        let count = |w: &str| {
            t.words
                .iter()
                .find(|(m, _)| m == w.as_bytes())
                .map(|(_, n)| *n)
        };
        assert_eq!(
            (count("w7"), count("w199999"), count("w8")),
            (Some(2), Some(2), Some(1))
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn split_parts_are_bounded_and_add_up_to_the_whole() {
        let t = tally(r##"{"room":"#r","nick":"n","body":"a b c d e f g"}"##);
        let parts = t.clone().split(3);
        assert!(parts.iter().all(|p| p.members() <= 3), "{parts:?}");
        assert_eq!(parts.iter().map(Tally::members).sum::<usize>(), t.members());
        assert_eq!(parts.iter().map(Tally::messages).sum::<u64>(), 1);
        assert_eq!(parts[0].seconds, vec![(7, 1)]);
        let words: Vec<_> = parts.iter().flat_map(|p| p.words.clone()).collect();
        assert_eq!(words, t.words);
        assert_eq!(t.clone().split(100), vec![t]);
    }

    #[test]
    fn merged_tallies_add_up() {
        let mut b = TallyBuilder::default();
        b.add(tally(r##"{"room":"#a","nick":"n","body":"x y"}"##));
        b.add(tally(r##"{"room":"#a","nick":"m","body":"x"}"##));
        b.add(tally("oops"));
        assert_eq!(b.len(), 3);
        let t = b.take();
        assert_eq!(t.seconds, vec![(7, 2)]);
        let mut words = names(&t.words);
        words.sort();
        assert_eq!(words, vec![("x".into(), 2), ("y".into(), 1)]);
        assert_eq!(names(&t.rooms), vec![("#a".into(), 2)]);
        assert_eq!(t.failed.len(), 1);
        assert!(b.is_empty());
    }
}
