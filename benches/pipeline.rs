//! Decode + parse + tokenize throughput on simulator output, the cost of building the Redis
//! script arguments of one message, and a coalescing worker's own work per message with
//! `STATISTICS=basic` and `full` (everything but the store).
//!
//! `cargo bench --bench pipeline`. The input is 20,000 simulated events (seed 42), generated
//! once, fed to the decoder in 64 KiB chunks as the file and HTTP sources do; every payload is
//! judged by the counting rules (`Tally::from_payload`). Two groups report the same work, one in
//! bytes/s and one in messages/s.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use chatstats::detail::{Buckets, DetailBuilder, HistoryEntry};
use chatstats::message::{Rules, Tally, TallyBuilder};
use chatstats::sim::Generator;
use chatstats::source::decode::{Decoder, Frame};
use chatstats::store::Mark;
use chatstats::store::redis::{ApplyCalls, DetailCalls};
use chatstats::timeline::Retention;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

// The binaries' allocator and settings: what the worker pays for each allocation.
chatstats::allocator!();

const EVENTS: usize = 20_000;
const CHUNK: usize = 64 * 1024;
const LINE_CAP: usize = 1 << 20;
const FAILED_MAX: usize = 4096;
const SECOND: u64 = 1_700_000_000;
/// The processing time of [`worker`]'s messages, Unix ms.
const NOW_MS: u64 = SECOND * 1000;

/// The framed stream of `EVENTS` simulated events.
fn stream() -> Vec<u8> {
    let mut generator = Generator::new(42);
    let mut out = Vec::with_capacity(EVENTS * 400);
    for _ in 0..EVENTS {
        generator.write_event(&mut out);
    }
    out
}

/// Every payload of `bytes`, as the decoder yields them.
fn payloads(bytes: &[u8]) -> Vec<Bytes> {
    let mut decoder = Decoder::new(LINE_CAP);
    let mut out = Vec::new();
    let mut take = |frame| {
        if let Frame::Payload(p) = frame {
            out.push(p)
        }
    };
    for chunk in bytes.chunks(CHUNK) {
        decoder.push(chunk, &mut take);
    }
    decoder.finish(&mut take);
    out
}

/// Decodes `bytes` in 64 KiB chunks; with `judge`, applies the counting rules to each frame.
/// Returns the number of frames (and of counted messages, to keep the work observable).
fn run(bytes: &[u8], judge: bool) -> (usize, u64) {
    let mut decoder = Decoder::new(LINE_CAP);
    let mut frames = 0;
    let mut messages = 0;
    let mut on_frame = |frame: Frame| {
        frames += 1;
        if judge {
            let tally = match frame {
                Frame::Payload(payload) => Tally::from_payload(&payload, SECOND, FAILED_MAX),
                Frame::Oversized(prefix) => Tally::failed(&prefix, FAILED_MAX),
            };
            messages += tally.messages();
            black_box(tally);
        } else {
            black_box(frame);
        }
    };
    for chunk in bytes.chunks(CHUNK) {
        decoder.push(black_box(chunk), &mut on_frame);
    }
    decoder.finish(&mut on_frame);
    (frames, messages)
}

fn pipeline(c: &mut Criterion) {
    let bytes = stream();
    let (frames, messages) = run(&bytes, true);
    assert_eq!(frames, EVENTS, "one payload per simulated event");
    eprintln!(
        "pipeline input: {EVENTS} events, {} bytes ({:.0} bytes/event), {messages} counted, {} failed",
        bytes.len(),
        bytes.len() as f64 / EVENTS as f64,
        frames as u64 - messages
    );

    let mut group = c.benchmark_group("pipeline_bytes");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("decode", |b| b.iter(|| run(&bytes, false)));
    group.bench_function("decode_parse_tokenize", |b| b.iter(|| run(&bytes, true)));
    group.finish();

    let mut group = c.benchmark_group("pipeline_messages");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("decode", |b| b.iter(|| run(&bytes, false)));
    group.bench_function("decode_parse_tokenize", |b| b.iter(|| run(&bytes, true)));
    let all = payloads(&bytes);
    group.bench_function("parse_tokenize", |b| {
        b.iter(|| {
            for payload in &all {
                black_box(Tally::from_payload(black_box(payload), SECOND, FAILED_MAX));
            }
        })
    });
    group.finish();
}

fn tallies() -> Vec<Tally> {
    payloads(&stream())
        .iter()
        .map(|p| Tally::from_payload(p, SECOND, FAILED_MAX))
        .collect()
}

fn redis_args(c: &mut Criterion) {
    let tallies = tallies();
    let writer: Arc<str> = "0123456789abcdef".into();
    let calls = ApplyCalls::new("chat-stats:", 300, 1000);
    let mut group = c.benchmark_group("redis_script_args");
    group.throughput(Throughput::Elements(tallies.len() as u64));
    group.bench_function("per_message", |b| {
        b.iter(|| {
            for (seq, tally) in tallies.iter().enumerate() {
                let mark = Mark {
                    writer: writer.clone(),
                    seq: seq as u64 + 1,
                    window: 128,
                };
                black_box(calls.call(tally, Some(&mark)));
            }
        })
    });
    group.finish();

    // Coalescing: merging the tallies of a batch into one (what FLUSH_INTERVAL_MS does).
    let mut group = c.benchmark_group("coalesce");
    group.throughput(Throughput::Elements(tallies.len() as u64));
    group.bench_function("merge_20000_tallies", |b| {
        b.iter_batched(
            || tallies.clone(),
            |tallies| {
                let mut builder = TallyBuilder::default();
                for tally in tallies {
                    builder.add(tally);
                }
                black_box(builder.take())
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// The widest input the default caps allow: one 1 MiB line of distinct words, judged and cut
/// into bounded store calls. Linear in its words (it was quadratic: ~20 s of CPU).
fn widest_line(c: &mut Criterion) {
    let mut body = String::new();
    let mut i = 0u64;
    while body.len() < (1 << 20) - 64 {
        body.push_str(&format!("w{i:x} "));
        i += 1;
    }
    let payload = Bytes::from(format!(r##"{{"room":"#r","nick":"n","body":"{body}"}}"##));
    let mut group = c.benchmark_group("widest_line");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.bench_function("one_1MiB_line_of_distinct_words", |b| {
        b.iter(|| {
            let tally = Tally::from_payload(black_box(&payload), SECOND, FAILED_MAX);
            black_box(tally.split(4096))
        })
    });
    group.finish();
}

/// A coalescing worker's own work on `payloads` (`FLUSH_INTERVAL_MS=50` over a file, where
/// its batches fill up: 4,000 messages a detail), without the store: each payload judged and its
/// tally merged; with `full`, the message's history entry made and its statistics merged; per
/// 4,000 messages the merged tally's call, and the detail taken, cut into parts of 1,024
/// members and each part's call built, as `chatstats-worker` sends them. The messages are of the
/// last two minutes, so every minute bucket is kept. Returns the members of the calls built.
fn coalescing_worker(payloads: &[Bytes], full: bool) -> usize {
    const BATCH: usize = 4_000;
    let rules = Rules {
        full,
        history: full,
        ..Rules::basic(FAILED_MAX)
    };
    let writer: Arc<str> = "0123456789abcdef".into();
    let applies = ApplyCalls::new("chat-stats:", 300, 1000);
    let details = DetailCalls::new("chat-stats:", Retention::default());
    let mut tallies = TallyBuilder::default();
    let mut builder = DetailBuilder::default();
    let mut seq = 0;
    let mut written = 0;
    let mut mark = || {
        seq += 1;
        Mark {
            writer: writer.clone(),
            seq,
            window: 128,
        }
    };
    for (i, payload) in payloads.iter().enumerate() {
        let judged = rules.judge(payload, NOW_MS);
        if let Some(message) = judged.message {
            let entry = HistoryEntry::of(&message, || format!("{writer}-{i:x}"));
            builder.add(&message, true, Some(entry));
        }
        tallies.add(judged.tally);
        if (i + 1) % BATCH == 0 || i + 1 == payloads.len() {
            written += applies.call(&tallies.take(), Some(&mark())).args.len();
            if !builder.is_empty() {
                let detail = builder.take(NOW_MS, &Retention::default(), Buckets::Rollups);
                for part in detail.split(1024) {
                    written += details.call(&part, Some(&mark()), NOW_MS).args.len();
                }
            }
        }
    }
    written
}

/// The worker's own work per message, basic and full, in one run: their ratio bounds what any
/// store can give `STATISTICS=full` (BENCHMARKS.md, "The worker's own ceiling").
fn worker(c: &mut Criterion) {
    let mut generator = Generator::starting_at(42, NOW_MS - 120_000);
    let payloads: Vec<Bytes> = (0..EVENTS).map(|_| generator.next_payload()).collect();
    let mut group = c.benchmark_group("coalescing_worker");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("basic", |b| {
        b.iter(|| coalescing_worker(black_box(&payloads), false))
    });
    group.bench_function("full", |b| {
        b.iter(|| coalescing_worker(black_box(&payloads), true))
    });
    group.finish();
}

criterion_group!(benches, pipeline, redis_args, widest_line, worker);
criterion_main!(benches);
