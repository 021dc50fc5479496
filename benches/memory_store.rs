//! The in-memory store: updates per second, and top-10 reads at 1,000,000 distinct members.
//!
//! `cargo bench --bench memory_store`. Updates apply simulator tallies (about 6 words, a nick
//! and a room each) to a long-lived store, so the vocabulary is warm as in steady state. The
//! top-10 read runs on a store holding 1,000,000 distinct words with varied counts. A room's
//! all-time words are read from a list of 100,000 (the statistics by room keep plain counts
//! and pick a top in one pass over them).

use std::hint::black_box;

use bytes::Bytes;
use chatstats::detail::{Detail, Period, Place, Scope};
use chatstats::message::{Tally, TopList};
use chatstats::sim::Generator;
use chatstats::store::Store;
use chatstats::store::memory::MemoryStore;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const TALLIES: usize = 20_000;
const MEMBERS: usize = 1_000_000;

fn sim_tallies() -> Vec<Tally> {
    let mut generator = Generator::new(42);
    (0..TALLIES)
        .map(|_| Tally::from_payload(&generator.next_payload(), 1_700_000_000, 4096))
        .collect()
}

/// A store whose words list holds `MEMBERS` distinct members with varied counts.
fn big_store() -> MemoryStore {
    let store = MemoryStore::new(1000, 300);
    for start in (0..MEMBERS).step_by(10_000) {
        let words = (start..start + 10_000)
            .map(|i| {
                // Counts 1..=100_000, scattered (a multiplicative hash of i), with many ties.
                let count = (i as u64).wrapping_mul(2_654_435_761) % 100_000 + 1;
                (Bytes::from(format!("w{i:07}")), count)
            })
            .collect();
        store.apply_now(&Tally {
            words,
            ..Tally::default()
        });
    }
    assert_eq!(store.len(TopList::Words), MEMBERS);
    store
}

fn updates(c: &mut Criterion) {
    let tallies = sim_tallies();
    let words: usize = tallies.iter().map(|t| t.words.len()).sum();
    eprintln!(
        "memory_store updates: {TALLIES} tallies, {:.2} distinct words per tally",
        words as f64 / TALLIES as f64
    );
    let store = MemoryStore::new(1000, 300);
    for tally in &tallies {
        store.apply_now(tally);
    }
    let mut group = c.benchmark_group("memory_store_updates");
    group.throughput(Throughput::Elements(TALLIES as u64));
    group.bench_function("apply_now_sim_tallies", |b| {
        b.iter(|| {
            for tally in &tallies {
                store.apply_now(black_box(tally));
            }
        })
    });
    group.finish();
}

fn top(c: &mut Criterion) {
    let store = big_store();
    let top = futures::executor::block_on(store.top(TopList::Words, 10)).expect("top");
    eprintln!("memory_store top-10 of {MEMBERS} members: {top:?}");
    let mut group = c.benchmark_group("memory_store_top_1m_members");
    for limit in [10, 1000] {
        group.bench_function(format!("top_{limit}"), |b| {
            b.iter(|| futures::executor::block_on(store.top(TopList::Words, black_box(limit))))
        });
    }
    group.finish();
}

const ROOM_MEMBERS: usize = 100_000;

fn room_top(c: &mut Criterion) {
    let store = MemoryStore::new(1000, 300);
    let room = Scope::Room(Bytes::from_static(b"#room"));
    let members = (0..ROOM_MEMBERS)
        .map(|i| {
            let count = (i as u64).wrapping_mul(2_654_435_761) % 100_000 + 1;
            (Bytes::from(format!("w{i:07}")), count)
        })
        .collect();
    let place = Place {
        scope: room.clone(),
        period: Period::AllTime,
        list: TopList::Words,
    };
    let detail = Detail {
        lists: vec![(place, members)],
        ..Detail::default()
    };
    futures::executor::block_on(store.apply_detail(&detail, None)).expect("apply");
    let mut group = c.benchmark_group("memory_store_room_100k_members");
    for limit in [10, 1000] {
        group.bench_function(format!("top_{limit}"), |b| {
            b.iter(|| {
                futures::executor::block_on(store.top_in(
                    TopList::Words,
                    &room,
                    &[Period::AllTime],
                    black_box(limit),
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, updates, top, room_top);
criterion_main!(benches);
