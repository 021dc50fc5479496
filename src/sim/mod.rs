//! The simulated Twitch-like chat stream: a deterministic generator of upstream events, served
//! by `chatstats-sim` over HTTP, written to files, or read in process by [`SimSource`].
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
//! main language. About 1% of events are `CLEARCHAT` / `USERNOTICE` notices with an empty room
//! or nick, and about 0.2% of payloads are malformed (truncated JSON, bare text, JSON that is
//! not an object, trailing garbage, invalid UTF-8), because the real stream has such lines and
//! the counting rules must cope with them.
//!
//! Everything is a pure function of the seed: `tmi-sent-ts` starts at [`generator::START_TS_MS`] and
//! advances by a step drawn from the same random generator, never from the clock, so one seed
//! gives the same bytes on every run and machine (for one `Cargo.lock`: the random generator
//! is [`StdRng`](rand::rngs::StdRng), whose stream `rand` may change between major versions).
//!
//! # Layout
//!
//! ```text
//!  words/*.txt ─► vocabulary ─► world ─► generator ─┬─► write_file   fixture files
//!                 Zipf laws     nicks,   events,    ├─► server       chatstats-sim, paced by pacing
//!                               rooms    tags       └─► source       SimSource, paced by pacing
//! ```
//!
//! - `vocabulary`: the word lists of `words/` (compiled in) and the Zipf law that samples them.
//! - `world`: the nicks, rooms and per-language vocabularies, built once from a fixed seed.
//! - `generator`: [`Generator`], one event at a time from a seed, and [`write_file`].
//! - `pacing`: the drift-free schedule the server and [`SimSource`] share.
//! - `server`: [`serve`], the endless `text/event-stream` of `chatstats-sim`.
//! - `source`: [`SimSource`], the stream generated inside the worker.
//!
//! The bytes of a seed's stream are part of the contract with fixtures and benchmarks: the
//! order and content of every word list and the order of every random draw are load-bearing.

mod generator;
mod pacing;
mod server;
mod source;
mod vocabulary;
mod world;

pub use generator::Generator;
pub(crate) use generator::write_file;
pub(crate) use server::{SimSettings, serve};
pub(crate) use source::SimSource;
