//! chatstats turns a live chat stream into statistics — the most used words, the most active
//! nicks and rooms, messages per second, the messages that failed — kept in Redis (or in
//! memory) and served over an HTTP API compatible with the TypeScript service it succeeds.
//!
//! # Layout
//!
//! ```text
//!  upstream bytes ──► source::decode ──► message::Rules ──► worker ──► store ──► api
//!  (HTTP, file, sim)   frames, line cap    Tally + Message   window,    Redis or   axum +
//!                                          (detail: merged)  retries    memory     OpenAPI
//! ```
//!
//! - [`source`]: where the stream comes from ([`source::http`], [`source::file`]) and the
//!   framing decoder ([`source::decode`]).
//! - [`sim`]: the simulated Twitch-like chat stream, in process or served by `chatstats-sim`.
//! - [`message`]: the counting rules — what one payload adds to the all-time lists
//!   ([`message::Tally`]) and to the statistics by room, nick, emote and time
//!   ([`message::Message`]); [`detail`] merges the latter over a short interval.
//! - [`store`]: the [`store::Store`] trait, the Redis store and the in-memory store.
//! - [`worker`]: drives a source into a store, exactly once per call, with backpressure.
//! - [`inbox`]: workers sharing the Redis inbox (`CHAT_INTERFACE_URL=inbox`), each batch applied
//!   and acknowledged in one call; and forwarding an upstream into it.
//! - [`api`]: the HTTP routes, errors, the generated OpenAPI document, and the bounded server.
//! - [`config`], [`startup`]: settings from flags, environment and `.env`; what each binary runs.
//! - Leaves, which import nothing from the crate: [`telemetry`] (logs, and [`telemetry::SecretUrl`],
//!   the only holder of secrets), [`timeline`] (message time, buckets, ranges), [`emotes`],
//!   `dotenv` (`.env` files as Node's dotenv reads them), `retry` (backoff delays), `shutdown`
//!   (signals).
//!
//! Every import points down this list: `config` and `startup` assemble the layers, the layers
//! use only the leaves and the layers below them.

pub mod api;
pub mod config;
pub mod detail;
mod dotenv;
pub mod emotes;
pub mod inbox;
pub mod message;
pub mod migrate;
pub(crate) mod retry;
pub(crate) mod shutdown;
pub mod sim;
pub mod source;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod timeline;
pub mod worker;

/// The allocator of the binaries (each declares it with [`allocator!`]): jemalloc with
/// background threads returns freed memory to the system, so the API's RSS falls back after a
/// burst of thousands of connections instead of staying at its peak, as it does with glibc's
/// allocator. Benchmarks that count allocations keep their own.
pub use tikv_jemallocator::Jemalloc as Allocator;

/// Declares [`Allocator`] the binary's global allocator, with jemalloc's settings; freed pages
/// go back to the system within a second in both.
///
/// - `allocator!()`, for the worker and the tools: one arena and no thread caches. The worker
///   allocates from one thread at a time, and thread caches hold memory: its peak RSS in full
///   mode fell from 33.1 to 27.8–28.6 MB at the same rate (BENCHMARKS.md, "What the history
///   costs the worker").
/// - `allocator!(serving)`, for the API: jemalloc's arenas and thread caches. Every runtime
///   thread serves requests at once, and each request allocates a few dozen times; with one
///   locked arena, allocation took about a third of the API's CPU (BENCHMARKS.md, "The API's
///   allocator").
///
/// `_RJEM_MALLOC_CONF` in the environment still overrides them.
#[macro_export]
macro_rules! allocator {
    () => {
        $crate::allocator!(@conf b"narenas:1,tcache:false,dirty_decay_ms:1000,muzzy_decay_ms:0\0");
    };
    (serving) => {
        $crate::allocator!(@conf b"dirty_decay_ms:1000,muzzy_decay_ms:0\0");
    };
    (@conf $conf:literal) => {
        #[global_allocator]
        static ALLOCATOR: $crate::Allocator = $crate::Allocator;

        /// jemalloc's compiled-in settings (`malloc_conf`, with tikv-jemalloc's prefix): a
        /// pointer to a C string, as jemalloc reads it.
        #[allow(non_upper_case_globals)]
        #[unsafe(export_name = "_rjem_malloc_conf")]
        pub static malloc_conf: &[u8; $conf.len()] = $conf;
    };
}
