//! The generator: one event after another, each a pure function of the stream's seed and the
//! shared [`World`] — but for `tmi-sent-ts` on the live clock — written as the upstream frames
//! it.
//!
//! Tags are assembled by hand in buffers reused from one event to the next, so a generator
//! allocates nothing per event beyond its output; only the event's fields go through
//! `serde_json`, which does the JSON escaping.

use std::io::{self, Write};
use std::path::Path;
use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::bots::Piece;
use super::vocabulary::ENGLISH;
use super::world::{Nick, Room, WORLD, World};
use crate::timeline::now_ms;

/// `tmi-sent-ts` of the first event of [`Generator::new`], in Unix milliseconds (2022-01-03, as
/// in the contract's sample), so the same seed gives the same bytes whenever it runs.
pub const START_TS_MS: u64 = 1_641_241_341_776;
/// The latest start accepted for the synthetic clock: 9999-12-31T23:59:59.999Z.
pub const LATEST_START_MS: u64 = 253_402_300_799_999;
/// Milliseconds between two events on the synthetic clock: 1 to this.
const MAX_STEP_MS: u64 = 9;
/// How long before its generation an event on the live clock was "sent": 20 ms to 1.5 s, as
/// if it had crossed Twitch and the network.
const LAG_MS: (u64, u64) = (20, 1500);

/// Out of 10 000 events: malformed payloads (0.2%).
const MALFORMED_PER_10K: u32 = 20;
/// Out of 10 000 events: `CLEARCHAT` notices (0.5%).
const CLEARCHAT_PER_10K: u32 = 50;
/// Out of 10 000 events: `USERNOTICE` notices (0.5%).
const USERNOTICE_PER_10K: u32 = 50;
/// Out of 10 000 events: messages of chat bots (2% of the 9 880 messages).
const BOT_PER_10K: u32 = 198;
/// Bytes of generated stream handed out at once (file writes, HTTP chunks).
pub(super) const CHUNK_BYTES: usize = 64 * 1024;

/// Malformed lines that are not JSON at all. They stay in Rust, unlike the other lists, because
/// two of them are empty or only spaces, which a text file does not keep reliably.
const BARE_TEXT: &[&str] = &[
    "PING :tmi.twitch.tv",
    "hello chat",
    "<html><body>502 Bad Gateway</body></html>",
    "undefined",
    "[object Object]",
    "Kappa Kappa Kappa",
    "",
    "   ",
];

/// Malformed lines that are JSON but not an object, one per line of `words/not-objects.txt`.
static NOT_OBJECTS: LazyLock<Vec<&str>> =
    LazyLock::new(|| include_str!("words/not-objects.txt").lines().collect());

/// One upstream event as JSON: the upstream's fields, in its order.
#[derive(Serialize)]
struct Event<'a> {
    command: &'a str,
    room: &'a str,
    nick: &'a str,
    target: &'a str,
    body: &'a str,
    tags: &'a str,
}

/// Where an event's `tmi-sent-ts` comes from.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// A pure function of the seed: the next event's time, then 1 to [`MAX_STEP_MS`] ms more
    /// for each event.
    Synthetic { next: u64 },
    /// The wall clock when the event is generated, minus a lag in [`LAG_MS`].
    Live,
}

/// Seeded generator of simulated chat events.
///
/// The same seed gives the same events on every run and machine; different seeds give
/// different streams over the same nicks, rooms and words. On the synthetic clock
/// ([`Generator::new`], [`Generator::starting_at`]) that is the same sequence of bytes; on the
/// live clock ([`Generator::live`]) only `tmi-sent-ts` differs, following the wall clock. Both
/// clocks take the same one draw per event, so they give the same events for a seed. Generating
/// allocates nothing per event beyond the returned [`Bytes`] (which share one buffer per 64 KiB).
pub struct Generator {
    rng: StdRng,
    world: &'static World,
    clock: Clock,
    /// `tmi-sent-ts` of the event being generated.
    ts: u64,
    body: String,
    tags: String,
    /// Twitch emotes of the body being built: (emote id, first char, last char).
    emote_spans: Vec<(u32, u32, u32)>,
    scratch: Vec<u8>,
    pool: BytesMut,
}

impl Generator {
    /// A generator from `seed` on the synthetic clock from [`START_TS_MS`]: the same bytes
    /// whenever it runs.
    pub fn new(seed: u64) -> Generator {
        Generator::starting_at(seed, START_TS_MS)
    }

    /// A generator from `seed` on the synthetic clock: the first event is sent at Unix
    /// millisecond `start_ms`, each next one 1 to 9 ms later. The same seed and start give the
    /// same bytes whenever they run; another start shifts every `tmi-sent-ts` by the difference.
    pub fn starting_at(seed: u64, start_ms: u64) -> Generator {
        Generator::with_clock(seed, Clock::Synthetic { next: start_ms })
    }

    /// A generator from `seed` on the live clock: each event is sent at the wall-clock time of
    /// its generation minus 20 to 1500 ms (drawn from the seed), so a reader records it in the
    /// current minute. Its events are those of [`Generator::new`] but for `tmi-sent-ts`.
    pub fn live(seed: u64) -> Generator {
        Generator::with_clock(seed, Clock::Live)
    }

    fn with_clock(seed: u64, clock: Clock) -> Generator {
        Generator {
            rng: StdRng::seed_from_u64(seed),
            world: &WORLD,
            clock,
            ts: 0,
            body: String::with_capacity(256),
            tags: String::with_capacity(512),
            emote_spans: Vec::with_capacity(16),
            scratch: Vec::with_capacity(1024),
            pool: BytesMut::new(),
        }
    }

    /// The next payload: the JSON text of one event (or a malformed line), without framing —
    /// exactly what the decoder yields for the `se-data:` line of [`Generator::write_event`].
    pub fn next_payload(&mut self) -> Bytes {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.write_payload(&mut scratch);
        if self.pool.capacity() < scratch.len() {
            self.pool = BytesMut::with_capacity(CHUNK_BYTES.max(scratch.len()));
        }
        self.pool.extend_from_slice(&scratch);
        self.scratch = scratch;
        self.pool.split().freeze()
    }

    /// Appends the next whole framed event to `out`: `event: privmsg`, `se-data: <payload>`
    /// and a blank line, with LF line ends.
    pub fn write_event(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: privmsg\nse-data: ");
        self.write_payload(out);
        out.extend_from_slice(b"\n\n");
    }

    /// Appends the next payload to `out`. A payload never holds a line end.
    fn write_payload(&mut self, out: &mut Vec<u8>) {
        self.tick();
        let kind = self.rng.random_range(0..10_000u32);
        let mut limit = MALFORMED_PER_10K;
        if kind < limit {
            return self.write_malformed(out);
        }
        limit += CLEARCHAT_PER_10K;
        if kind < limit {
            return self.write_clearchat(out);
        }
        limit += USERNOTICE_PER_10K;
        if kind < limit {
            return self.write_usernotice(out);
        }
        limit += BOT_PER_10K;
        if kind < limit {
            return self.write_bot_privmsg(out);
        }
        self.write_privmsg(out);
    }

    /// Sets the time of the next event. Takes one draw on either clock, so that the events
    /// themselves do not depend on the clock.
    fn tick(&mut self) {
        let draw: u64 = self.rng.random();
        // `draw` scaled to `0..n`.
        let scaled = |n: u64| ((u128::from(draw) * u128::from(n)) >> 64) as u64;
        self.ts = match &mut self.clock {
            Clock::Synthetic { next } => {
                let ts = *next;
                *next = ts.saturating_add(1 + scaled(MAX_STEP_MS));
                ts
            }
            Clock::Live => now_ms().saturating_sub(LAG_MS.0 + scaled(LAG_MS.1 - LAG_MS.0 + 1)),
        };
    }

    fn write_privmsg(&mut self, out: &mut Vec<u8>) {
        let world = self.world;
        let room = &world.rooms[world.room_zipf.sample(&mut self.rng)];
        let nick = &world.nicks[world.nick_zipf.sample(&mut self.rng)];
        self.build_body(room.language);
        let first_message = self.rng.random_bool(0.01);
        self.write_message(out, room, nick, first_message);
    }

    /// A chat bot's message, in any room: a line of `words/bot-lines.txt`.
    fn write_bot_privmsg(&mut self, out: &mut Vec<u8>) {
        let world = self.world;
        let room = &world.rooms[world.room_zipf.sample(&mut self.rng)];
        let bot = &world.bots.nicks[world.bots.nick_zipf.sample(&mut self.rng)];
        self.build_bot_body(room);
        self.write_message(out, room, bot, false);
    }

    /// Writes a message of `nick` in `room` whose body is `self.body`.
    fn write_message(&mut self, out: &mut Vec<u8>, room: &Room, nick: &Nick, first_message: bool) {
        let id = (self.rng.random::<u64>(), self.rng.random::<u64>());
        let tags = &mut self.tags;
        start_tags(tags, &nick.head, &mut self.emote_spans);
        tags.push_str(if first_message {
            ";first-msg=1;flags=;id="
        } else {
            ";first-msg=0;flags=;id="
        });
        push_uuid(tags, id);
        tags.push_str(if nick.moderator {
            ";mod=1;returning-chatter=0;room-id="
        } else {
            ";mod=0;returning-chatter=0;room-id="
        });
        push_u64(tags, room.id);
        tags.push_str(if nick.subscriber {
            ";subscriber=1;tmi-sent-ts="
        } else {
            ";subscriber=0;tmi-sent-ts="
        });
        push_u64(tags, self.ts);
        tags.push_str(";turbo=0;user-id=");
        push_u64(tags, nick.user_id);
        tags.push_str(if nick.moderator {
            ";user-type=mod"
        } else {
            ";user-type="
        });
        write_json(
            out,
            &Event {
                command: "",
                room: &room.name,
                nick: &nick.login,
                target: "",
                body: &self.body,
                tags: &self.tags,
            },
        );
    }

    /// A timeout, a ban or a cleared chat: no room and no nick; the channel is the target and
    /// the banned user the body, as the real stream sends them.
    fn write_clearchat(&mut self, out: &mut Vec<u8>) {
        let world = self.world;
        let room = &world.rooms[world.room_zipf.sample(&mut self.rng)];
        let nick = &world.nicks[world.nick_zipf.sample(&mut self.rng)];
        let what = self.rng.random_range(0..10);
        let tags = &mut self.tags;
        tags.clear();
        let body = if what < 9 {
            if what < 7 {
                tags.push_str("ban-duration=");
                let duration = [1, 10, 60, 300, 600, 3600, 86_400][self.rng.random_range(0..7)];
                push_u64(tags, duration);
                tags.push(';');
            }
            tags.push_str("room-id=");
            push_u64(tags, room.id);
            tags.push_str(";target-user-id=");
            push_u64(tags, nick.user_id);
            &nick.login
        } else {
            tags.push_str("room-id=");
            push_u64(tags, room.id);
            ""
        };
        tags.push_str(";tmi-sent-ts=");
        push_u64(tags, self.ts);
        write_json(
            out,
            &Event {
                command: "CLEARCHAT",
                room: "",
                nick: "",
                target: &room.name,
                body,
                tags: &self.tags,
            },
        );
    }

    /// A subscription, gift or raid notice: sent by the server, so no nick; the subscriber's
    /// own message, if any, is the body.
    fn write_usernotice(&mut self, out: &mut Vec<u8>) {
        let world = self.world;
        let room = &world.rooms[world.room_zipf.sample(&mut self.rng)];
        let nick = &world.nicks[world.nick_zipf.sample(&mut self.rng)];
        let other = &world.nicks[world.nick_zipf.sample(&mut self.rng)];
        let kind = self.rng.random_range(0..4);
        // Raids carry no message; subscribers write one about half of the time.
        let with_message = kind != 3 && self.rng.random_bool(0.5);
        if with_message {
            self.build_body(room.language);
        } else {
            self.body.clear();
            self.emote_spans.clear();
        }
        let months = self.rng.random_range(2..40u64);
        let viewers = self.rng.random_range(2..5000u64);
        let id = (self.rng.random::<u64>(), self.rng.random::<u64>());
        let tags = &mut self.tags;
        start_tags(tags, &nick.head, &mut self.emote_spans);
        tags.push_str(";flags=;id=");
        push_uuid(tags, id);
        tags.push_str(";login=");
        tags.push_str(&nick.login);
        tags.push_str(if nick.moderator {
            ";mod=1;msg-id="
        } else {
            ";mod=0;msg-id="
        });
        // Twitch escapes spaces in tag values as `\s`.
        match kind {
            0 => {
                tags.push_str("sub;msg-param-sub-plan=1000;room-id=");
                push_u64(tags, room.id);
                tags.push_str(";subscriber=1;system-msg=");
                tags.push_str(&nick.display);
                tags.push_str("\\ssubscribed\\sat\\sTier\\s1.");
            }
            1 => {
                tags.push_str("resub;msg-param-cumulative-months=");
                push_u64(tags, months);
                tags.push_str(";msg-param-sub-plan=1000;room-id=");
                push_u64(tags, room.id);
                tags.push_str(";subscriber=1;system-msg=");
                tags.push_str(&nick.display);
                tags.push_str("\\ssubscribed\\sat\\sTier\\s1.\\sThey've\\ssubscribed\\sfor\\s");
                push_u64(tags, months);
                tags.push_str("\\smonths!");
            }
            2 => {
                tags.push_str("subgift;msg-param-recipient-user-name=");
                tags.push_str(&other.login);
                tags.push_str(";msg-param-sub-plan=1000;room-id=");
                push_u64(tags, room.id);
                tags.push_str(";subscriber=1;system-msg=");
                tags.push_str(&nick.display);
                tags.push_str("\\sgifted\\sa\\sTier\\s1\\ssub\\sto\\s");
                tags.push_str(&other.display);
                tags.push('!');
            }
            _ => {
                tags.push_str("raid;msg-param-viewerCount=");
                push_u64(tags, viewers);
                tags.push_str(";room-id=");
                push_u64(tags, room.id);
                tags.push_str(";subscriber=0;system-msg=");
                push_u64(tags, viewers);
                tags.push_str("\\sraiders\\sfrom\\s");
                tags.push_str(&nick.display);
                tags.push_str("\\shave\\sjoined!");
            }
        }
        tags.push_str(";tmi-sent-ts=");
        push_u64(tags, self.ts);
        tags.push_str(";user-id=");
        push_u64(tags, nick.user_id);
        tags.push_str(";user-type=");
        write_json(
            out,
            &Event {
                command: "USERNOTICE",
                room: &room.name,
                nick: "",
                target: "",
                body: &self.body,
                tags: &self.tags,
            },
        );
    }

    /// A line the counting rules must reject: never an object, never a line end.
    fn write_malformed(&mut self, out: &mut Vec<u8>) {
        let start = out.len();
        match self.rng.random_range(0..6) {
            0 => {
                // Truncated JSON (possibly in the middle of a UTF-8 sequence).
                self.write_privmsg(out);
                // A serialized event is far longer than 2 bytes: keep 1 to len - 1 of them.
                let len = out.len() - start;
                let keep = self.rng.random_range(1..len.max(2));
                out.truncate(start + keep);
            }
            1 => {
                let text = BARE_TEXT[self.rng.random_range(0..BARE_TEXT.len())];
                out.extend_from_slice(text.as_bytes());
            }
            2 => {
                let text = NOT_OBJECTS[self.rng.random_range(0..NOT_OBJECTS.len())];
                out.extend_from_slice(text.as_bytes());
            }
            3 => {
                // An object followed by garbage.
                self.write_privmsg(out);
                out.extend_from_slice(b"}garbage");
            }
            4 => {
                // A body that is not UTF-8: a stray continuation byte, a cut sequence or 0xFF.
                self.write_privmsg(out);
                let at = memchr::memmem::find(&out[start..], b"\"body\":\"")
                    .map(|i| start + i + 8)
                    .unwrap_or(out.len());
                let bad: &[u8] = match self.rng.random_range(0..3) {
                    0 => b"\xff",
                    1 => b"\xc3(",
                    _ => b"\x80abc",
                };
                out.splice(at..at, bad.iter().copied());
            }
            _ => {
                // Bare text: the words of a message without its JSON.
                self.build_body(ENGLISH);
                out.extend_from_slice(self.body.as_bytes());
            }
        }
    }

    /// Builds a message body into `self.body` for a room speaking `language`, and its Twitch
    /// emotes into `self.emote_spans`.
    fn build_body(&mut self, language: usize) {
        let world = self.world;
        self.body.clear();
        self.emote_spans.clear();
        let draw = self.rng.random_range(0..world.lengths[14]);
        let words = world.lengths.partition_point(|&c| c <= draw) + 1;
        // Emote spam: one emote repeated (`LUL LUL LUL`).
        let spam = self
            .rng
            .random_bool(0.06)
            .then(|| world.emotes.sample(&mut self.rng));
        let mut position = 0u32;
        for i in 0..words {
            if i > 0 {
                self.body.push(' ');
                position += 1;
            }
            let word = match spam {
                Some(emote) => emote,
                None => {
                    let r = self.rng.random_range(0..1000u32);
                    if r < 230 {
                        world.emotes.sample(&mut self.rng)
                    } else if r < 260 {
                        world.emoji.sample(&mut self.rng)
                    } else if r < 275 {
                        // A mention.
                        let nick = &world.nicks[world.nick_zipf.sample(&mut self.rng)];
                        self.body.push('@');
                        self.body.push_str(&nick.login);
                        position += 1 + nick.login.len() as u32;
                        continue;
                    } else if r < 380 && language != ENGLISH {
                        world.languages[ENGLISH].sample(&mut self.rng)
                    } else {
                        world.languages[language].sample(&mut self.rng)
                    }
                }
            };
            self.body.push_str(&word.text);
            if let Some(id) = word.emote {
                self.emote_spans
                    .push((id, position, position + word.chars - 1));
            }
            position += word.chars;
        }
    }

    /// Builds a bot's message for `room` into `self.body`, and its Twitch emotes into
    /// `self.emote_spans`: a line, its placeholders filled in.
    fn build_bot_body(&mut self, room: &Room) {
        let world = self.world;
        self.body.clear();
        self.emote_spans.clear();
        let line = &world.bots.lines[world.bots.line_zipf.sample(&mut self.rng)];
        let mut position = 0u32;
        for piece in line {
            let start = self.body.len();
            match piece {
                Piece::Text(text) => self.body.push_str(text),
                Piece::Emote(_, name) => self.body.push_str(name),
                Piece::Nick => {
                    let nick = &world.nicks[world.nick_zipf.sample(&mut self.rng)];
                    self.body.push_str(&nick.login);
                }
                Piece::Room => self.body.push_str(room.name.trim_start_matches('#')),
                Piece::Number => push_u64(&mut self.body, self.rng.random_range(1..10_000)),
            }
            let chars = self.body[start..].chars().count() as u32;
            if let Piece::Emote(id, _) = piece {
                self.emote_spans.push((*id, position, position + chars - 1));
            }
            position += chars;
        }
    }
}

/// Writes `event` as JSON. Serializing strings into a `Vec` cannot fail.
fn write_json(out: &mut Vec<u8>, event: &Event<'_>) {
    if let Err(err) = serde_json::to_writer(&mut *out, event) {
        // Unreachable: a Vec accepts every write and every field is a string.
        debug_assert!(false, "cannot serialize an event: {err}");
    }
}

/// Starts an event's tags: the nick's own (badges, colour, display name…), then the emote
/// ranges of the body just built.
fn start_tags(tags: &mut String, head: &str, spans: &mut Vec<(u32, u32, u32)>) {
    tags.clear();
    tags.push_str(head);
    tags.push_str("emotes=");
    push_emotes(tags, spans);
}

/// Appends the `emotes` tag value, `id:start-end,start-end/id:start-end`, grouped by emote in
/// order of first use, and empties `spans`.
fn push_emotes(tags: &mut String, spans: &mut Vec<(u32, u32, u32)>) {
    let mut first_group = true;
    for i in 0..spans.len() {
        let id = spans[i].0;
        if spans[..i].iter().any(|s| s.0 == id) {
            continue;
        }
        if !first_group {
            tags.push('/');
        }
        first_group = false;
        push_u64(tags, u64::from(id));
        tags.push(':');
        let mut first_span = true;
        for &(_, from, to) in spans[i..].iter().filter(|s| s.0 == id) {
            if !first_span {
                tags.push(',');
            }
            first_span = false;
            push_u64(tags, u64::from(from));
            tags.push('-');
            push_u64(tags, u64::from(to));
        }
    }
    spans.clear();
}

/// Appends `v` in decimal.
fn push_u64(out: &mut String, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

/// Appends a UUID (version 4 layout) made of the bits `hi` and `lo`.
fn push_uuid(out: &mut String, (hi, lo): (u64, u64)) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hi = (hi & !0xF000) | 0x4000;
    let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    let mut text = [b'-'; 36];
    let mut at = 0;
    for value in [hi, lo] {
        for nibble in 0..16 {
            if matches!(at, 8 | 13 | 18 | 23) {
                at += 1;
            }
            text[at] = HEX[((value >> (60 - 4 * nibble)) & 0xF) as usize];
            at += 1;
        }
    }
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// Writes exactly `count` framed events from `seed` to `out`, the first sent at Unix
/// millisecond `start_ms` (on the synthetic clock: the same arguments give the same bytes).
pub fn write_events<W: Write>(mut out: W, count: u64, seed: u64, start_ms: u64) -> io::Result<()> {
    let mut generator = Generator::starting_at(seed, start_ms);
    let mut buf = Vec::with_capacity(CHUNK_BYTES + 4096);
    for _ in 0..count {
        generator.write_event(&mut buf);
        if buf.len() >= CHUNK_BYTES {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()
}

/// Writes exactly `count` framed events from `seed`, the first sent at Unix millisecond
/// `start_ms`, to the file `path` (created or truncated), or to stdout when `path` is `-`: a
/// fixture for text mode (`RESPONSE_STREAM_MODE=text`) or for replaying a stream byte for byte.
pub fn write_file(path: impl AsRef<Path>, count: u64, seed: u64, start_ms: u64) -> io::Result<()> {
    let path = path.as_ref();
    if path == Path::new("-") {
        write_events(io::stdout().lock(), count, seed, start_ms)
    } else {
        write_events(std::fs::File::create(path)?, count, seed, start_ms)
    }
}

/// `payload` with the value of every `tmi-sent-ts` tag removed, to compare streams whose
/// events are the same but not their times (the live clock's with the synthetic one's).
#[cfg(test)]
pub(super) fn without_times(payload: &[u8]) -> Vec<u8> {
    const TAG: &[u8] = b"tmi-sent-ts=";
    let mut out = Vec::with_capacity(payload.len());
    let mut rest = payload;
    while let Some(at) = memchr::memmem::find(rest, TAG) {
        out.extend_from_slice(&rest[..at + TAG.len()]);
        rest = &rest[at + TAG.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        rest = &rest[digits..];
    }
    out.extend_from_slice(rest);
    out
}

/// The `tmi-sent-ts` of a payload that is a whole event.
#[cfg(test)]
pub(super) fn sent_ts(payload: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    value["tags"]
        .as_str()?
        .split(';')
        .find_map(|t| t.strip_prefix("tmi-sent-ts="))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::source::decode::{Decoder, Frame};

    fn events(seed: u64, count: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut generator = Generator::new(seed);
        for _ in 0..count {
            generator.write_event(&mut out);
        }
        out
    }

    fn is_object(payload: &[u8]) -> bool {
        matches!(
            serde_json::from_slice::<serde_json::Value>(payload),
            Ok(serde_json::Value::Object(_))
        )
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        assert_eq!(events(7, 2000), events(7, 2000));
        let mut a = Generator::new(7);
        let mut b = Generator::new(7);
        for _ in 0..2000 {
            assert_eq!(a.next_payload(), b.next_payload());
        }
    }

    #[test]
    fn different_seeds_give_different_streams() {
        assert_ne!(events(1, 100), events(2, 100));
    }

    #[test]
    fn framing_yields_exactly_the_payloads() {
        let stream = events(3, 500);
        let mut frames = Vec::new();
        let mut decoder = Decoder::new(64 * 1024);
        decoder.push(&stream, |f| frames.push(f));
        decoder.finish(|f| frames.push(f));
        let mut generator = Generator::new(3);
        let expected: Vec<Frame> = (0..500)
            .map(|_| Frame::Payload(generator.next_payload()))
            .collect();
        assert_eq!(frames, expected);
    }

    #[test]
    fn about_two_per_mille_of_payloads_are_malformed_and_the_rest_are_whole_events() {
        let mut generator = Generator::new(11);
        let mut malformed = 0;
        let mut notices = 0;
        let mut words = 0usize;
        let mut bodies = 0usize;
        let mut last_ts = 0u64;
        for _ in 0..100_000 {
            let payload = generator.next_payload();
            assert!(!payload.contains(&b'\n') && !payload.contains(&b'\r'));
            if !is_object(&payload) {
                malformed += 1;
                continue;
            }
            let value: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
            let field = |name: &str| value[name].as_str().map(str::to_owned);
            let (Some(command), Some(room), Some(nick), Some(body), Some(tags)) = (
                field("command"),
                field("room"),
                field("nick"),
                field("body"),
                field("tags"),
            ) else {
                panic!("a field is missing: {value}");
            };
            let ts: u64 = tags
                .split(';')
                .find_map(|t| t.strip_prefix("tmi-sent-ts="))
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("no tmi-sent-ts in {tags}"));
            assert!(ts > last_ts);
            last_ts = ts;
            if command.is_empty() {
                assert!(!room.is_empty() && !nick.is_empty());
                let n = body.split_whitespace().count();
                assert!((1..=15).contains(&n), "{n} words: {body}");
                words += n;
                bodies += 1;
                assert!(tags.contains(";id="), "{tags}");
            } else {
                assert!(room.is_empty() || nick.is_empty());
                notices += 1;
            }
        }
        assert!((120..=300).contains(&malformed), "{malformed} malformed");
        assert!((700..=1300).contains(&notices), "{notices} notices");
        let average = words as f64 / bodies as f64;
        assert!((5.0..=8.0).contains(&average), "{average} words per body");
    }

    #[test]
    fn words_follow_a_zipf_law_across_scripts() {
        let mut generator = Generator::new(5);
        let mut counts = std::collections::HashMap::<String, u64>::new();
        for _ in 0..50_000 {
            let payload = generator.next_payload();
            let Ok(serde_json::Value::Object(map)) =
                serde_json::from_slice::<serde_json::Value>(&payload)
            else {
                continue;
            };
            if let Some(body) = map.get("body").and_then(|b| b.as_str()) {
                for word in body.split_whitespace() {
                    *counts.entry(word.to_owned()).or_default() += 1;
                }
            }
        }
        assert!(counts.len() > 1500, "{} distinct words", counts.len());
        for sample in [
            "Kappa",
            "KEKW",
            "ㅋㅋㅋ",
            "www",
            "привет",
            "çok",
            "não",
            "nicht",
        ] {
            assert!(counts.contains_key(sample), "{sample} never appears");
        }
        let mut ranked: Vec<u64> = counts.into_values().collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        // Heavy head, long tail: the top 10 words outnumber the 500 after rank 100.
        let head: u64 = ranked[..10].iter().sum();
        let tail: u64 = ranked[100..600].iter().sum();
        assert!(head > tail / 2, "head {head}, tail {tail}");
    }

    #[test]
    fn emote_positions_point_at_the_emotes() {
        let mut generator = Generator::new(9);
        let mut checked = 0;
        for _ in 0..5000 {
            let payload = generator.next_payload();
            let Ok(serde_json::Value::Object(map)) =
                serde_json::from_slice::<serde_json::Value>(&payload)
            else {
                continue;
            };
            let (Some(body), Some(tags)) = (
                map.get("body").and_then(|b| b.as_str()),
                map.get("tags").and_then(|t| t.as_str()),
            ) else {
                continue;
            };
            let Some(emotes) = tags
                .split(';')
                .find_map(|t| t.strip_prefix("emotes="))
                .filter(|e| !e.is_empty())
            else {
                continue;
            };
            let chars: Vec<char> = body.chars().collect();
            for group in emotes.split('/') {
                let (id, spans) = group.split_once(':').unwrap_or_default();
                let name = WORLD
                    .emotes
                    .words
                    .iter()
                    .find(|w| w.emote.map(|i| i.to_string()).as_deref() == Some(id))
                    .map(|w| &*w.text)
                    .unwrap_or_else(|| panic!("unknown emote id {id}"));
                for span in spans.split(',') {
                    let (from, to) = span.split_once('-').unwrap_or_default();
                    let (from, to): (usize, usize) =
                        (from.parse().unwrap_or(0), to.parse().unwrap_or(0));
                    let text: String = chars[from..=to].iter().collect();
                    assert_eq!(text, name, "{body} / {emotes}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 100);
    }

    #[test]
    fn write_file_writes_exactly_count_events_and_is_reproducible() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let a = dir.path().join("a.txt");
        let b = dir.path().join("b.txt");
        write_file(&a, 1000, 42, START_TS_MS)?;
        write_file(&b, 1000, 42, START_TS_MS)?;
        let a = std::fs::read(a)?;
        assert_eq!(a, std::fs::read(b)?);
        assert_eq!(a, events(42, 1000));
        let lines = a.split(|&b| b == b'\n');
        assert_eq!(lines.filter(|l| l.starts_with(b"se-data: ")).count(), 1000);
        // Another start: reproducible too, and the same events at other times.
        let start = now_ms() - 3_600_000;
        let c = dir.path().join("c.txt");
        let d = dir.path().join("d.txt");
        write_file(&c, 1000, 42, start)?;
        write_file(&d, 1000, 42, start)?;
        let c = std::fs::read(c)?;
        assert_eq!(c, std::fs::read(d)?);
        assert_ne!(c, a);
        assert_eq!(without_times(&c), without_times(&a));
        Ok(())
    }

    /// The logins and user ids of the bots, from the world.
    fn bots() -> HashMap<String, u64> {
        WORLD
            .bots
            .nicks
            .iter()
            .map(|n| (n.login.to_string(), n.user_id))
            .collect()
    }

    #[test]
    fn about_two_percent_of_messages_are_from_bots_in_any_room() {
        let bots = bots();
        let mut generator = Generator::new(12);
        let (mut messages, mut from_bots, mut with_emotes) = (0u32, 0u32, 0u32);
        let mut rooms = HashSet::new();
        let mut seen = HashMap::<String, u32>::new();
        for _ in 0..100_000 {
            let payload = generator.next_payload();
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(&payload) else {
                continue;
            };
            let (Some(""), Some(nick), Some(room), Some(body), Some(tags)) = (
                value["command"].as_str(),
                value["nick"].as_str(),
                value["room"].as_str(),
                value["body"].as_str(),
                value["tags"].as_str(),
            ) else {
                continue;
            };
            messages += 1;
            let Some(&user_id) = bots.get(nick) else {
                continue;
            };
            from_bots += 1;
            rooms.insert(room.to_owned());
            *seen.entry(nick.to_owned()).or_default() += 1;
            let tag = |name: &str| {
                tags.split(';')
                    .find_map(|t| t.strip_prefix(name)?.strip_prefix('='))
                    .unwrap_or_else(|| panic!("no {name} in {tags}"))
            };
            assert_eq!(tag("user-id"), user_id.to_string(), "{tags}");
            assert_eq!(tag("display-name").to_lowercase(), nick, "{tags}");
            assert_ne!(tag("display-name"), nick, "capitalized: {tags}");
            assert!(tag("badges").contains("moderator/1"), "{tags}");
            assert_eq!((tag("mod"), tag("user-type")), ("1", "mod"), "{tags}");
            assert_eq!(tag("first-msg"), "0", "{tags}");
            assert!(!body.contains(['{', '}']), "{body}");
            assert!(
                (1..=15).contains(&body.split_whitespace().count()),
                "{body}"
            );
            with_emotes += u32::from(!tag("emotes").is_empty());
        }
        let share = f64::from(from_bots) / f64::from(messages);
        assert!(
            (0.017..=0.023).contains(&share),
            "{from_bots} of {messages} messages"
        );
        assert_eq!(seen.len(), bots.len(), "every bot speaks: {seen:?}");
        assert!(seen["nightbot"] > seen["wizebot"], "{seen:?}");
        assert!(rooms.len() > 50, "bots in {} rooms", rooms.len());
        assert!(
            with_emotes > 0 && with_emotes * 5 < from_bots,
            "{with_emotes} of {from_bots} bot messages with emotes"
        );
    }

    #[test]
    fn the_live_clock_follows_the_wall_clock_and_changes_nothing_else() {
        let mut live = Generator::live(13);
        let mut synthetic = Generator::new(13);
        let mut times = 0;
        for _ in 0..5000 {
            let before = now_ms();
            let payload = live.next_payload();
            let after = now_ms();
            if let Some(ts) = sent_ts(&payload) {
                assert!(
                    (before - 1500..=after - 20).contains(&ts),
                    "{ts} not 20-1500 ms before {before}..{after}"
                );
                times += 1;
            }
            let expected = synthetic.next_payload();
            assert_eq!(without_times(&payload), without_times(&expected));
        }
        assert!(times > 4900, "{times} events with a time");
    }

    #[test]
    fn starting_at_shifts_every_time() {
        let shift = 40 * 86_400_000 + 123;
        let mut a = Generator::new(14);
        let mut b = Generator::starting_at(14, START_TS_MS + shift);
        for i in 0..3000 {
            let (x, y) = (a.next_payload(), b.next_payload());
            if i == 0 {
                // The first event is sent exactly at the start.
                assert_eq!(sent_ts(&x), Some(START_TS_MS));
            }
            assert_eq!(without_times(&x), without_times(&y));
            if let (Some(tx), Some(ty)) = (sent_ts(&x), sent_ts(&y)) {
                assert_eq!(ty - tx, shift);
            }
        }
        assert_eq!(events(14, 500), {
            let mut out = Vec::new();
            let mut generator = Generator::starting_at(14, START_TS_MS);
            for _ in 0..500 {
                generator.write_event(&mut out);
            }
            out
        });
    }
}
