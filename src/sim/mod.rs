//! The simulated Twitch-like chat stream: a seeded generator of upstream events, served by
//! `chatstats-sim` over HTTP, written to files, or read in process by [`SimSource`].
//!
//! The stream looks like the real upstream (see the product contract): every event is
//!
//! ```text
//! event: privmsg
//! se-data: {"command":"","room":"#room","nick":"someone","target":"","body":"hello chat","tags":"…"}
//!
//! ```
//!
//! Words, nicks and rooms follow Zipf laws over fixed lists (built once per process from a
//! fixed internal seed, so they never depend on the stream's seed); bodies mix English, Turkish,
//! Portuguese, German, Korean, Japanese, Russian, emoji and Twitch emotes, each room having one
//! main language. About 2% of messages come from chat bots (Nightbot, StreamElements,
//! Streamlabs, Moobot, Fossabot, Wizebot: `words/bots.txt`), in any room, with fixed user ids
//! and moderator badges, saying the lines of `words/bot-lines.txt` (`!commands`, rules, point
//! counts), usually without emotes — the nicks a deployment lists in `IGNORED_NICKS`. About 1%
//! of events are `CLEARCHAT` / `USERNOTICE` notices with an empty room or nick, and about 0.2%
//! of payloads are malformed (truncated JSON, bare text, JSON that is not an object, trailing
//! garbage, invalid UTF-8), because the real stream has such lines and the counting rules must
//! cope with them.
//!
//! # What is deterministic, and what follows the clock
//!
//! The events are a pure function of the seed: who says what where, every tag but
//! `tmi-sent-ts` (for one `Cargo.lock`: the random generator is
//! [`StdRng`](rand::rngs::StdRng), whose stream `rand` may change between major versions).
//! `tmi-sent-ts` comes from one of two clocks, which take the same draws, so a seed gives the
//! same events on both (as long as the times have as many digits, 13 from 2001 to 2286: where
//! a truncated line is cut depends on its length):
//!
//! - the **synthetic** clock ([`Generator::new`], [`Generator::starting_at`], files written
//!   with `--count`): the first event is sent at a chosen Unix millisecond
//!   ([`START_TS_MS`], 2022-01-03, unless `--start-ms` says otherwise) and each next one 1 to
//!   9 ms later, by a step drawn from the seed. One seed and start give the same bytes on every
//!   run and machine; another start shifts every time by the difference (a benchmark writes
//!   its file an hour back so that its messages land in minutes the service still keeps).
//! - the **live** clock ([`Generator::live`], the HTTP server and [`SimSource`]): each event is
//!   sent at the wall-clock time of its generation minus a lag of 20 to 1500 ms drawn from the
//!   seed, so a worker reading the stream records its messages in the current minutes (and
//!   never more than 5 minutes ahead, which the service would not believe). Times on this
//!   clock are not in order, as on Twitch, where they come from many servers.
//!
//! # Layout
//!
//! ```text
//!  words/*.txt ─┬─► vocabulary ─┬─► world ─► generator ─┬─► write_file  fixture files (synthetic clock)
//!               │   Zipf laws   │   nicks,   events,    ├─► server      chatstats-sim ┐ paced by pacing,
//!               └─► bots ───────┘   rooms,   tags,      └─► source      SimSource     ┘ live clock
//!                   bots, lines     bots     clocks
//! ```
//!
//! - `vocabulary`: the word lists of `words/` (compiled in) and the Zipf law that samples them.
//! - `bots`: the chat bots and their lines, from `words/bots.txt` and `words/bot-lines.txt`.
//! - `world`: the nicks, bots, rooms and per-language vocabularies, built once from a fixed seed.
//! - `generator`: [`Generator`], one event at a time from a seed on either clock, and
//!   [`write_file`].
//! - `pacing`: the drift-free schedule the server and [`SimSource`] share.
//! - `server`: [`serve`], the endless `text/event-stream` of `chatstats-sim`.
//! - `source`: [`SimSource`], the stream generated inside the worker.
//!
//! The bytes of a seed's stream (on the synthetic clock, from a given start) are part of the
//! contract with fixtures and benchmarks: the order and content of every word list and the
//! order of every random draw are load-bearing.

mod bots;
mod generator;
mod pacing;
mod server;
mod source;
mod vocabulary;
mod world;

pub(crate) use generator::write_file;
pub use generator::{Generator, LATEST_START_MS, START_TS_MS};
pub(crate) use server::{SimSettings, serve};
pub(crate) use source::SimSource;
