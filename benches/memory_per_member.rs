//! Memory per distinct member of the in-memory store, measured with a counting allocator.
//!
//! `cargo bench --bench memory_per_member`. Inserts 1,000,000 distinct 8-byte members into the
//! words list of a `MemoryStore` (in tallies of 10,000, each dropped after use) and divides the
//! growth of live heap bytes by the number of members. Then feeds a fresh store the statistics
//! by room, nick, emote and time of 60,000 simulator messages (five minutes of the built-in
//! stream, history off) and divides its growth by the number of messages: what `chatstats`
//! holds per message until the buckets' retention passes. Prints the figures; no timing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use bytes::Bytes;
use chatstats::detail::{Buckets, DetailBuilder};
use chatstats::message::{Rules, Tally, TopList};
use chatstats::sim::Generator;
use chatstats::store::Store;
use chatstats::store::memory::MemoryStore;
use chatstats::timeline::Retention;

/// The system allocator, counting live bytes (as requested) and their peak.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by as isize, Ordering::Relaxed) + by as isize;
    PEAK.fetch_max(live.max(0) as usize, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MEMBERS: usize = 1_000_000;
const PER_TALLY: usize = 10_000;
/// Sizes at which the figure is also printed: the hash map's capacity doubles at 7/8 load
/// (at 917,504 members here), so the cost per member is a sawtooth, highest just after a
/// doubling (1,000,000 is one such point).
const CHECKPOINTS: [usize; 5] = [250_000, 500_000, 750_000, 900_000, 1_000_000];

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Resident set size of this process in KiB (Linux), 0 elsewhere.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let store = MemoryStore::new(1000, 300);
    let before = live();
    let rss_before = rss_kib();
    for start in (0..MEMBERS).step_by(PER_TALLY) {
        let words = (start..start + PER_TALLY)
            .map(|i| (Bytes::from(format!("m{i:07}")), (i % 1000) as u64 + 1))
            .collect();
        store.apply_now(&Tally {
            words,
            ..Tally::default()
        });
        let members = start + PER_TALLY;
        if CHECKPOINTS.contains(&members) {
            println!(
                "memory_per_member: at {members:>9} members: {:.1} bytes per member (live heap)",
                (live() - before) as f64 / members as f64
            );
        }
    }
    let after = live();
    let rss_after = rss_kib();
    assert_eq!(store.len(TopList::Words), MEMBERS);
    let per_member = (after - before) as f64 / MEMBERS as f64;
    println!(
        "memory_per_member: {MEMBERS} distinct 8-byte members in MemoryStore (words list): \
         {:.1} MiB live heap, {per_member:.1} bytes per member (heap bytes requested; \
         allocator overhead excluded); peak live heap during the build {:.1} MiB",
        (after - before) as f64 / (1 << 20) as f64,
        PEAK.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
    );
    println!(
        "memory_per_member: resident set grew by {:.1} MiB, {:.1} bytes per member \
         (includes allocator overhead and freed-but-retained memory)",
        rss_after.saturating_sub(rss_before) as f64 / 1024.0,
        rss_after.saturating_sub(rss_before) as f64 * 1024.0 / MEMBERS as f64,
    );
    drop(store);
    detail_per_message();
}

/// Simulator messages fed to the statistics by room, nick, emote and time.
const MESSAGES: usize = 60_000;
/// Messages merged per detail (the worker merges what arrives while its last call runs).
const PER_DETAIL: usize = 500;

/// Live heap bytes per message of the statistics by room, nick, emote and time.
fn detail_per_message() {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // The simulator's clock runs at about 200 messages a second: these end about now.
    let mut generator = Generator::starting_at(42, now_ms - 6 * 60_000);
    let rules = Rules {
        full: true,
        ..Rules::basic(1000)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let retention = Retention::default();
    let store = MemoryStore::new(1000, 300).with_retention(retention);
    let mut builder = DetailBuilder::default();
    let before = live();
    for done in 1..=MESSAGES {
        let judged = rules.judge(&generator.next_payload(), now_ms);
        if let Some(message) = judged.message {
            builder.add(&message, true, None);
        }
        if done % PER_DETAIL == 0 {
            let detail = builder.take(now_ms, &retention, Buckets::All);
            runtime
                .block_on(store.apply_detail(&detail, None))
                .expect("the in-memory store");
        }
    }
    let grown = live() - before;
    println!(
        "memory_per_member: statistics by room, nick, emote and time of {MESSAGES} simulator \
         messages (history off) in MemoryStore: {:.1} MiB live heap, {:.0} bytes per message",
        grown as f64 / (1 << 20) as f64,
        grown as f64 / MESSAGES as f64,
    );
}
