//! What only the Redis store has: namespaces, the TypeScript key layout, legacy data, outages.

use std::time::Duration;

use chatstats::message::TopList;
use chatstats::store::Store;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn namespaces_are_isolated_and_every_key_is_prefixed() {
    let redis = TestRedis::start();
    let (a, b) = (namespace(), namespace());
    record_bytes(
        &redis.store_in(&a),
        b"data: {\"room\":\"#a\",\"nick\":\"x\",\"body\":\"only a\"}\ndata: bad\n",
    )
    .await;
    record_bytes(
        &redis.store_in(&b),
        b"data: {\"room\":\"#b\",\"nick\":\"y\",\"body\":\"only b\"}\n",
    )
    .await;
    let words_a = redis.store_in(&a).top(TopList::Words, 10).await.unwrap();
    let words_b = redis.store_in(&b).top(TopList::Words, 10).await.unwrap();
    assert_eq!(words_a, vec![("only".to_owned(), 1), ("a".to_owned(), 1)]);
    assert_eq!(words_b, vec![("only".to_owned(), 1), ("b".to_owned(), 1)]);
    let keys = redis.cli(&["--raw", "KEYS", "*"]).unwrap();
    for key in keys.lines().filter(|k| !k.is_empty()) {
        assert!(
            key.starts_with(&a) || key.starts_with(&b),
            "key {key} outside the namespaces"
        );
    }
}

#[tokio::test]
async fn keys_follow_the_typescript_layout() {
    let redis = TestRedis::start();
    let ns = namespace();
    record_bytes(
        &redis.store_in(&ns),
        std::fs::read(fixture("multiple-messages.txt"))
            .unwrap()
            .as_slice(),
    )
    .await;
    let score = redis
        .cli(&["--raw", "ZSCORE", &format!("{ns}words"), "MEUBEL"])
        .unwrap();
    assert_eq!(score.trim(), "3");
    let score = redis
        .cli(&["--raw", "ZSCORE", &format!("{ns}nicks"), "slicyyyy"])
        .unwrap();
    assert_eq!(score.trim(), "3");
    let score = redis
        .cli(&["--raw", "ZSCORE", &format!("{ns}rooms"), "#sadparu"])
        .unwrap();
    assert_eq!(score.trim(), "2");
    let kind = redis
        .cli(&["--raw", "TYPE", &format!("{ns}failedMessages")])
        .unwrap();
    assert_eq!(kind.trim(), "zset");
}

#[tokio::test]
async fn data_written_by_the_typescript_service_is_read_and_kept() {
    let redis = TestRedis::start();
    let ns = namespace();
    redis
        .cli(&["ZINCRBY", &format!("{ns}words"), "5", "Kappa"])
        .unwrap();
    redis
        .cli(&["SADD", &format!("{ns}failedMessages"), "old one", "old two"])
        .unwrap();
    let store = redis.store_in(&ns);
    let mut failed = store.failed_messages(None).await.unwrap();
    failed.sort();
    assert_eq!(failed, vec!["old one", "old two"]);
    // The service kept no total: its failures count as the payloads it kept, before and after
    // the set is converted (and as `chatstats-migrate` carries them over).
    assert_eq!(store.failed_total().await.unwrap(), 2);
    record_bytes(&store, b"data: {\"body\":\"Kappa\"}\ndata: new bad\n").await;
    assert_eq!(store.failed_total().await.unwrap(), 3);
    assert_eq!(
        store.top(TopList::Words, 10).await.unwrap(),
        vec![("Kappa".to_owned(), 6)]
    );
    let failed = store.failed_messages(None).await.unwrap();
    assert_eq!(failed[0], "new bad");
    assert_eq!(failed.len(), 3);
}

/// The TypeScript service never bounded its failed set: converting one of 5,000 members keeps
/// the cap (1,000) of them, as the oldest, behind the new failure.
#[tokio::test]
async fn a_large_typescript_failed_set_is_converted_down_to_the_cap() {
    let redis = TestRedis::start();
    let ns = namespace();
    let key = format!("{ns}failedMessages");
    for chunk in 0..10 {
        let members: Vec<String> = (0..500)
            .map(|i| format!("old {}", chunk * 500 + i))
            .collect();
        let mut args = vec!["SADD", key.as_str()];
        args.extend(members.iter().map(String::as_str));
        redis.cli(&args).unwrap();
    }
    let store = redis.store_in(&ns);
    record_bytes(&store, b"data: new bad\n").await;
    let failed = store.failed_messages(None).await.unwrap();
    assert_eq!(failed.len(), 1000);
    assert_eq!(failed[0], "new bad");
    assert!(
        failed[1..].iter().all(|f| f.starts_with("old ")),
        "{failed:?}"
    );
    let distinct: std::collections::HashSet<&String> = failed.iter().collect();
    assert_eq!(distinct.len(), 1000);
    assert_eq!(store.failed_total().await.unwrap(), 5001);
}

#[tokio::test]
async fn the_api_answers_503_while_redis_is_down_and_recovers_by_itself() {
    let redis = TestRedis::start();
    let store = redis.store();
    record_bytes(&store, b"data: {\"body\":\"hi\"}\n").await;
    let api = TestApi::spawn(store).await;
    assert_eq!(api.get("/healthcheck").await.0, 200);
    assert_eq!(api.get("/stats/words").await, (200, json!([{"hi": 1}])));

    // Stall Redis: every call must answer 503 quickly, never hang.
    let pid = redis.pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    for path in [
        "/stats/words",
        "/stats",
        "/stats/failedMessages",
        "/stats/rooms",
    ] {
        let started = std::time::Instant::now();
        let (status, body) = api.get(path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["statusCode"], 503);
        assert_eq!(body["error"], "Service Unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path} took {:?}",
            started.elapsed()
        );
    }
    let (status, body) = api.get("/healthcheck").await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "error");
    assert!(
        body["redisStatus"]
            .as_str()
            .unwrap()
            .starts_with("unreachable"),
        "{body}"
    );

    assert!(
        std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    eventually(Duration::from_secs(2), "the API to recover", || async {
        api.get("/stats/words").await == (200, json!([{"hi": 1}]))
    })
    .await;
    assert_eq!(api.get("/healthcheck").await.0, 200);
}

#[tokio::test]
async fn the_api_comes_back_within_2_s_of_a_redis_restart() {
    let redis = TestRedis::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = redis.store();
    record_bytes(&store, b"data: {\"body\":\"kept\"}\n").await;
    let api = TestApi::spawn(store).await;
    assert_eq!(api.get("/stats/words").await, (200, json!([{"kept": 1}])));
    redis.kill();
    let started = std::time::Instant::now();
    let (status, body) = api.get("/stats/words").await;
    assert_eq!(status, 503, "{body}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(api.get("/healthcheck").await.0, 503);
    redis.respawn();
    eventually(Duration::from_secs(2), "the API to come back", || async {
        api.get("/stats/words").await == (200, json!([{"kept": 1}]))
    })
    .await;
    assert_eq!(api.get("/healthcheck").await.0, 200);
}

#[tokio::test]
async fn the_api_starts_and_answers_503_when_redis_was_never_there() {
    let store = unreachable_store(Duration::from_millis(500));
    let api = TestApi::spawn(store).await;
    let (status, body) = api.get("/stats/words").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(api.get("/healthcheck").await.0, 503);
    assert_eq!(api.get("/").await, (200, json!({"status": true})));
}

/// A message at `time_ms` in `room` by `nick` with `words`.
fn message(time_ms: u64, room: &str, nick: &str, words: &[&str]) -> chatstats::message::Message {
    let mut counts: Vec<(bytes::Bytes, u64)> = Vec::new();
    for w in words {
        match counts.iter_mut().find(|(m, _)| m == w.as_bytes()) {
            Some((_, n)) => *n += 1,
            None => counts.push((bytes::Bytes::copy_from_slice(w.as_bytes()), 1)),
        }
    }
    chatstats::message::Message {
        time_ms,
        room: Some(bytes::Bytes::copy_from_slice(room.as_bytes())),
        nick: Some(bytes::Bytes::copy_from_slice(nick.as_bytes())),
        words: counts,
        emotes: Vec::new(),
        id: None,
        body: bytes::Bytes::new(),
    }
}

#[tokio::test]
async fn hours_and_days_are_rolled_up_exactly_and_late_messages_join_them() {
    use chatstats::detail::{Buckets, DetailBuilder, Period, Scope};
    use chatstats::message::TopList;
    use chatstats::timeline::{Bucket, Granularity, Retention, now_ms};

    let redis = TestRedis::start();
    // Minutes kept two days, so that yesterday's hours can be rolled up into its day.
    let retention = Retention {
        kept: [
            Duration::from_secs(2 * 86_400),
            Duration::from_secs(8 * 86_400),
            Duration::from_secs(35 * 86_400),
        ],
        ..Retention::default()
    };
    let store =
        chatstats::store::redis::RedisStore::connect(chatstats::store::redis::RedisSettings {
            retention,
            ..redis_settings(&redis)
        })
        .unwrap();
    let now = now_ms();
    let hour = Bucket::of(Granularity::Hour, now - 30 * 3_600_000);
    let day = Bucket::of(Granularity::Day, hour.start_ms());
    let room = Scope::Room(bytes::Bytes::from_static(b"#a"));
    let apply = |messages: Vec<chatstats::message::Message>| {
        let store = store.clone();
        async move {
            let mut builder = DetailBuilder::default();
            for m in &messages {
                builder.add(m, true, None);
            }
            let detail = builder.take(now_ms(), &retention, Buckets::Rollups);
            assert!(store.apply_detail(&detail, None).await.unwrap());
        }
    };
    apply(vec![
        message(hour.start_ms() + 1_000, "#a", "x", &["hi", "Kappa"]),
        message(hour.start_ms() + 61_000, "#a", "y", &["hi"]),
        message(hour.start_ms() + 3_599_000, "#b", "x", &["yo"]),
        message(now, "#a", "z", &["now"]),
    ])
    .await;
    let in_hour = [Period::Bucket(hour)];
    let in_minutes: Vec<Period> = chatstats::timeline::children(hour)
        .into_iter()
        .map(Period::Bucket)
        .collect();
    let by_minutes = store
        .top_in(TopList::Words, &room, &in_minutes, 10)
        .await
        .unwrap();
    assert_eq!(
        by_minutes,
        vec![("hi".to_owned(), 2), ("Kappa".to_owned(), 1)]
    );
    // The hour has ended: its messages went into it directly as well (the roll-up will
    // replace it with the sum of its minutes, the same).
    assert_eq!(
        store
            .top_in(TopList::Words, &room, &in_hour, 10)
            .await
            .unwrap(),
        by_minutes
    );
    // Housekeeping rolls up, a few hours per call, until yesterday's day is done.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while store.rolled().await.unwrap().day < day.number {
        assert!(
            std::time::Instant::now() < deadline,
            "roll-ups did not get there"
        );
        store.maintain(now_ms()).await.unwrap();
    }
    assert_eq!(
        store
            .top_in(TopList::Words, &room, &in_hour, 10)
            .await
            .unwrap(),
        by_minutes
    );
    assert_eq!(
        store
            .top_in(TopList::Nicks, &Scope::Global, &[Period::Bucket(day)], 10)
            .await
            .unwrap(),
        vec![("x".to_owned(), 2), ("y".to_owned(), 1)]
    );
    assert_eq!(
        store.activity(&room, &[hour, day]).await.unwrap(),
        vec![2, 2]
    );
    // A late message for that hour joins the rolled-up hour and day at once.
    apply(vec![message(hour.start_ms() + 120_000, "#a", "y", &["hi"])]).await;
    assert_eq!(
        store
            .top_in(TopList::Words, &room, &in_hour, 10)
            .await
            .unwrap(),
        vec![("hi".to_owned(), 3), ("Kappa".to_owned(), 1)]
    );
    assert_eq!(
        store.activity(&room, &[hour, day]).await.unwrap(),
        vec![3, 3]
    );
    assert_eq!(
        store
            .top_in(TopList::Words, &room, &[Period::Bucket(day)], 10)
            .await
            .unwrap(),
        vec![("hi".to_owned(), 3), ("Kappa".to_owned(), 1)]
    );
    // A late message in a room that had none in that hour when it was rolled up: its hour
    // and day hold it.
    let quiet = Scope::Room(bytes::Bytes::from_static(b"#quiet"));
    apply(vec![message(
        hour.start_ms() + 180_000,
        "#quiet",
        "q",
        &["late"],
    )])
    .await;
    for period in [Period::Bucket(hour), Period::Bucket(day)] {
        assert_eq!(
            store
                .top_in(TopList::Words, &quiet, &[period], 10)
                .await
                .unwrap(),
            vec![("late".to_owned(), 1)],
            "{period:?}"
        );
    }
    assert_eq!(
        store.activity(&quiet, &[hour, day]).await.unwrap(),
        vec![1, 1]
    );
}

#[tokio::test]
async fn a_roll_up_between_the_calls_of_one_detail_counts_nothing_twice() {
    let redis = TestRedis::start();
    roll_up_between_calls(|| redis.store_in(&namespace())).await;
}

#[tokio::test]
async fn on_redis_cluster_a_roll_up_between_the_calls_of_one_detail_counts_nothing_twice() {
    let Some(cluster) = crate::cluster::TestCluster::shared() else {
        return;
    };
    roll_up_between_calls(|| cluster.store_in(&namespace())).await;
}

/// A backfill of an ended hour (its minutes still kept) merged into one detail, cut into
/// calls; the hour is rolled up between two of them, at every possible cut, each in a store
/// of its own from `store`.
async fn roll_up_between_calls(store: impl Fn() -> chatstats::store::redis::RedisStore) {
    use chatstats::detail::{Buckets, DetailBuilder, Period, Scope};
    use chatstats::timeline::{Bucket, Granularity, Retention, children, now_ms};
    use std::collections::BTreeMap;

    let now = now_ms();
    let hour = Bucket::of(Granularity::Hour, now - 3 * 3_600_000);
    let mut builder = DetailBuilder::default();
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for i in 0..40u64 {
        let room = ["#a", "#b"][(i % 2) as usize];
        let words = [format!("w{}", i % 5), format!("v{}", i % 3)];
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let time = hour.start_ms() + 60_000 * (i % 9) + i;
        builder.add(
            &message(time, room, &format!("n{}", i % 4), &words),
            true,
            None,
        );
        for word in &words {
            *expected
                .entry((room.to_owned(), (*word).to_owned()))
                .or_default() += 1;
        }
    }
    let detail = builder.take(now, &Retention::default(), Buckets::Rollups);
    let parts = detail.split(16);
    assert!(parts.len() >= 4, "{} parts", parts.len());
    let minutes: Vec<Period> = children(hour).into_iter().map(Period::Bucket).collect();
    for cut in 1..parts.len() {
        let store = store();
        for part in &parts[..cut] {
            assert!(store.apply_detail(part, None).await.unwrap());
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while store.rolled().await.unwrap().hour < hour.number {
            assert!(std::time::Instant::now() < deadline, "not rolled up");
            store.maintain(now_ms()).await.unwrap();
        }
        for part in &parts[cut..] {
            assert!(store.apply_detail(part, None).await.unwrap());
        }
        for room in ["#a", "#b"] {
            let scope = Scope::Room(bytes::Bytes::copy_from_slice(room.as_bytes()));
            let want: BTreeMap<String, u64> = expected
                .iter()
                .filter(|((r, _), _)| r == room)
                .map(|((_, w), n)| (w.clone(), *n))
                .collect();
            for periods in [&[Period::Bucket(hour)][..], &minutes] {
                let got: BTreeMap<String, u64> = store
                    .top_in(TopList::Words, &scope, periods, 1000)
                    .await
                    .unwrap()
                    .into_iter()
                    .collect();
                assert_eq!(
                    got,
                    want,
                    "{room}, cut after part {cut}, {} buckets",
                    periods.len()
                );
            }
        }
        let global: u64 = store
            .top_in(
                TopList::Words,
                &Scope::Global,
                &[Period::Bucket(hour)],
                1000,
            )
            .await
            .unwrap()
            .iter()
            .map(|(_, n)| n)
            .sum();
        assert_eq!(global, 80, "cut after part {cut}");
    }
}

/// The 40 minute buckets that start 50 minutes before `now_ms`: the first, and all of them.
fn forty_minutes_before(
    now_ms: u64,
) -> (chatstats::timeline::Bucket, Vec<chatstats::detail::Period>) {
    use chatstats::detail::Period;
    use chatstats::timeline::{Bucket, Granularity};

    let first = Bucket::of(Granularity::Minute, now_ms - 50 * 60_000);
    let minutes = (0..40)
        .map(|i| {
            Period::Bucket(Bucket::of(
                Granularity::Minute,
                first.start_ms() + i * 60_000,
            ))
        })
        .collect();
    (first, minutes)
}

/// `top.lua` answers a top list over many buckets without merging them (the threshold
/// algorithm, with ZMSCORE batches, and ZUNION past a work budget); the in-memory store sums
/// them plainly. Skewed and flat vocabularies (many equal counts) over 40 minutes, every k;
/// the larger ones (most words said once or twice) take the ZUNION path, or past its limit the
/// paged one, with many ties at k.
#[tokio::test]
async fn the_top_of_many_buckets_matches_a_plain_sum() {
    use chatstats::detail::{Buckets, DetailBuilder, Scope};
    use chatstats::timeline::{Retention, now_ms};
    use rand::{Rng, SeedableRng};

    let redis = TestRedis::start();
    let retention = Retention::default();
    let now = now_ms();
    let (first, minutes) = forty_minutes_before(now);
    for (seed, vocabulary, skewed, messages) in [
        (1, 3_000, true, 6_000),
        (2, 40, false, 6_000),
        (3, 400, false, 6_000),
        (4, 30_000, false, 6_000),
        // Past top.lua's MERGE_LIMIT (20,000 members in all): summed from ZSCAN pages.
        (5, 1_000_000, false, 12_000),
    ] {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let store = redis.store_in(&namespace());
        let memory = memory_store();
        let (mut in_redis, mut in_memory) = (DetailBuilder::default(), DetailBuilder::default());
        for i in 0..messages {
            let words: Vec<String> = (0..rng.random_range(1..6))
                .map(|_| {
                    let draw: f64 = rng.random();
                    let rank = if skewed {
                        (draw.powi(3) * vocabulary as f64) as u64
                    } else {
                        (draw * vocabulary as f64) as u64
                    };
                    format!("w{rank}")
                })
                .collect();
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let time = first.start_ms() + (i % 40) * 60_000 + rng.random_range(0..60_000);
            let m = message(time, "#a", "x", &words);
            in_redis.add(&m, true, None);
            in_memory.add(&m, true, None);
            // Details of 2,000 messages, as a worker merges them: one call stays well within
            // the store's timeout on a busy machine.
            if i % 2_000 == 1_999 || i + 1 == messages {
                let detail = in_redis.take(now, &retention, Buckets::Rollups);
                assert!(store.apply_detail(&detail, None).await.unwrap());
                let detail = in_memory.take(now, &retention, Buckets::All);
                assert!(memory.apply_detail(&detail, None).await.unwrap());
            }
        }
        for k in [1, 3, 10, 50, 200] {
            let expected = memory
                .top_in(TopList::Words, &Scope::Global, &minutes, k)
                .await
                .unwrap();
            assert_eq!(expected.len(), k.min(vocabulary as usize));
            let answered = store
                .top_in(TopList::Words, &Scope::Global, &minutes, k)
                .await
                .unwrap();
            assert_eq!(answered, expected, "seed {seed}, k {k}");
        }
    }
}

/// A room's distinct chatters over many buckets (`union_size.lua`), against the plain count.
#[tokio::test]
async fn unique_chatters_over_many_buckets_are_counted_exactly() {
    use std::collections::HashSet;

    use chatstats::detail::{Buckets, DetailBuilder};
    use chatstats::timeline::{Retention, now_ms};

    let redis = TestRedis::start();
    let store = redis.store_in(&namespace());
    let retention = Retention::default();
    let now = now_ms();
    let (first, minutes) = forty_minutes_before(now);
    let mut builder = DetailBuilder::default();
    let (mut chatters, mut in_second_minute) = (HashSet::new(), HashSet::new());
    for i in 0..3_000u64 {
        // Nicks recur across minutes; #b's are not #a's.
        let (room, nick) = if i % 5 == 0 {
            ("#b", format!("b{}", i % 97))
        } else {
            ("#a", format!("n{}", (i * 7919) % 1_201))
        };
        if room == "#a" {
            chatters.insert(nick.clone());
            if i % 40 == 1 {
                in_second_minute.insert(nick.clone());
            }
        }
        let time = first.start_ms() + (i % 40) * 60_000 + (i % 60) * 1_000;
        builder.add(&message(time, room, &nick, &["hi"]), true, None);
    }
    let detail = builder.take(now, &retention, Buckets::Rollups);
    assert!(store.apply_detail(&detail, None).await.unwrap());
    assert_eq!(
        store.unique_chatters("#a", &minutes).await.unwrap(),
        chatters.len() as u64
    );
    // One bucket is its size (`ZCARD`).
    assert_eq!(
        store.unique_chatters("#a", &minutes[1..2]).await.unwrap(),
        in_second_minute.len() as u64
    );
    assert_eq!(store.unique_chatters("#c", &minutes).await.unwrap(), 0);
}

/// A nick's all-time lists are written as appended records (`records.lua`), folded into its
/// sorted sets past 4 KiB, and read as the two summed (`nick_top.lua`): against the in-memory
/// store, for a nick folded several times with some still pending, a nick with nothing but
/// pending records, and members that look like the records' own syntax.
#[tokio::test]
async fn a_nicks_lists_read_exactly_while_records_are_pending_and_after_folds() {
    use chatstats::detail::{Buckets, DetailBuilder, Period, Scope};
    use chatstats::timeline::{Retention, now_ms};
    use rand::{Rng, SeedableRng};

    let redis = TestRedis::start();
    let ns = namespace();
    let store = redis.store_in(&ns);
    let memory = memory_store();
    let retention = Retention::default();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let odd = ["a:1;", "12;3:", ";", "::", "한국어", "{x}", "%7B", "w3;w"];
    for call in 0..300u64 {
        let (mut in_redis, mut in_memory) = (DetailBuilder::default(), DetailBuilder::default());
        for i in 0..3u64 {
            // A flat vocabulary: many equal counts at every k.
            let words: Vec<String> = (0..rng.random_range(1..8))
                .map(|_| match rng.random_range(0..10) {
                    0 => odd[rng.random_range(0..odd.len())].to_owned(),
                    _ => format!("w{}", rng.random_range(0..60)),
                })
                .collect();
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let room = format!("#r{}", rng.random_range(0..5));
            let mut m = message(now_ms(), &room, "heavy", &words);
            m.emotes = vec![(
                bytes::Bytes::from(format!("E{}", rng.random_range(0..4))),
                rng.random_range(1..3),
            )];
            in_redis.add(&m, true, None);
            in_memory.add(&m, true, None);
            if call == 0 && i == 0 {
                let m = message(now_ms(), "#r1", "light", &["only", "once", "12;3:"]);
                in_redis.add(&m, true, None);
                in_memory.add(&m, true, None);
            }
        }
        let detail = in_redis.take(now_ms(), &retention, Buckets::Rollups);
        assert!(store.apply_detail(&detail, None).await.unwrap());
        let detail = in_memory.take(now_ms(), &retention, Buckets::All);
        assert!(memory.apply_detail(&detail, None).await.unwrap());
    }
    // Both ways of keeping a nick's lists are in use.
    let number = |args: &[&str]| -> u64 { redis.cli(args).unwrap().trim().parse().unwrap() };
    let key = |nick: &str, what: &str| format!("{ns}nick:{{{nick}}}:{what}");
    let strlen = |nick: &str| number(&["--raw", "STRLEN", &key(nick, "pending")]);
    let zcard = |nick: &str| number(&["--raw", "ZCARD", &key(nick, "words")]);
    assert!((1..=4096).contains(&strlen("heavy")), "{}", strlen("heavy"));
    assert!(zcard("heavy") > 0);
    assert!(strlen("light") > 0);
    assert_eq!(zcard("light"), 0);
    for nick in ["heavy", "light", "nobody"] {
        let scope = Scope::Nick(bytes::Bytes::from(nick));
        for list in [TopList::Words, TopList::Rooms, TopList::Emotes] {
            for k in [1, 3, 10, 50, 500] {
                let expected = memory
                    .top_in(list, &scope, &[Period::AllTime], k)
                    .await
                    .unwrap();
                let answered = store
                    .top_in(list, &scope, &[Period::AllTime], k)
                    .await
                    .unwrap();
                assert_eq!(answered, expected, "{nick} {list:?} k {k}");
            }
        }
    }
    let everything = memory
        .top_in(
            TopList::Words,
            &Scope::Nick(bytes::Bytes::from("heavy")),
            &[Period::AllTime],
            500,
        )
        .await
        .unwrap();
    assert!(
        everything.iter().any(|(w, _)| w == "12;3:"),
        "{everything:?}"
    );
}

/// The ids of one call's history entries are set by one `HSET` per 500 (`detail.lua`): every
/// one of 1,201 entries in a single call is found by its id.
#[tokio::test]
async fn every_id_of_a_large_history_call_is_found() {
    use chatstats::detail::{Buckets, DetailBuilder, HistoryEntry};
    use chatstats::timeline::{Retention, now_ms};

    let redis = TestRedis::start();
    let store = redis.store_in(&namespace());
    let retention = Retention::default();
    let mut builder = DetailBuilder::default();
    for i in 0..1_201u64 {
        let m = message(now_ms(), "#a", &format!("n{}", i % 7), &["hi"]);
        let entry = HistoryEntry::of(&m, || format!("id-{i}"));
        builder.add(&m, true, Some(entry));
    }
    let detail = builder.take(now_ms(), &retention, Buckets::Rollups);
    assert_eq!(detail.history.len(), 1_201);
    assert!(store.apply_detail(&detail, None).await.unwrap());
    for i in [0, 1, 499, 500, 501, 999, 1_000, 1_200] {
        let found = store.message(&format!("id-{i}")).await.unwrap();
        let json: serde_json::Value = serde_json::from_str(&found.expect("found")).unwrap();
        assert_eq!(json["id"], format!("id-{i}"));
    }
    assert_eq!(store.message("id-1201").await.unwrap(), None);
}

/// A backfill of days no longer kept by the hour is written into its day directly; before any
/// roll-up (a fresh namespace, the worker gone) `/stats/activity?bucket=1d` reads that day, as
/// the top lists do, instead of its expired hours.
#[tokio::test]
async fn a_backfilled_day_shows_in_activity_before_any_roll_up() {
    use chatstats::detail::{Buckets, DetailBuilder};
    use chatstats::timeline::{Bucket, Granularity, Retention, now_ms};

    let redis = TestRedis::start();
    let store = redis.store();
    let now = now_ms();
    let day = Bucket::of(Granularity::Day, now - 3 * 86_400_000);
    let mut builder = DetailBuilder::default();
    for i in 0..5 {
        let m = message(day.start_ms() + 3_600_000 + i, "#bf", "n", &["w"]);
        builder.add(&m, true, None);
    }
    let detail = builder.take(now, &Retention::default(), Buckets::Rollups);
    assert!(store.apply_detail(&detail, None).await.unwrap());
    let api = TestApi::spawn(store).await;
    let (from, to) = (day.start_ms(), day.end_ms());
    for room in ["", "&room=%23bf"] {
        let (status, body) = api
            .get(&format!(
                "/stats/activity?bucket=1d&from={from}&to={to}{room}"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body[0]["messages"], 5, "room {room:?}: {body}");
        let (_, words) = api
            .get(&format!("/stats/words?from={from}&to={to}{room}"))
            .await;
        assert_eq!(words, json!([{"w": 5}]), "room {room:?}");
    }
}

/// A room's all-time lists get its messages of an hour that has not ended at that hour's
/// roll-up (`rollup.lua` folds its minutes in), and read exactly before and after: a new room,
/// a room whose all-time lists were written before folding existed (their hour is counted at
/// once), and a room first seen after the hour was rolled up (counted at once).
#[tokio::test]
async fn a_rooms_all_time_lists_read_exactly_before_and_after_its_minutes_are_folded() {
    use std::collections::BTreeMap;

    use chatstats::detail::{Buckets, DetailBuilder, Period, Scope};
    use chatstats::timeline::{Bucket, Granularity, Retention, now_ms};

    let redis = TestRedis::start();
    let ns = namespace();
    let store = redis.store_in(&ns);
    let retention = Retention::default();
    let now = now_ms();
    let hour = Bucket::of(Granularity::Hour, now);
    let room = |name: &str| Scope::Room(bytes::Bytes::copy_from_slice(name.as_bytes()));
    let mut expected: BTreeMap<(String, TopList), BTreeMap<String, u64>> = BTreeMap::new();
    // Written as the service did before folding: straight into the all-time lists.
    redis.cli(&["ZINCRBY", &format!("{ns}room:{{#old}}:words"), "5", "hi"]);
    redis.cli(&["ZINCRBY", &format!("{ns}room:{{#old}}:nicks"), "5", "elder"]);
    *expected
        .entry(("#old".into(), TopList::Words))
        .or_default()
        .entry("hi".into())
        .or_default() += 5;
    *expected
        .entry(("#old".into(), TopList::Nicks))
        .or_default()
        .entry("elder".into())
        .or_default() += 5;
    let apply = |rooms: &[&str], from: u64, expected: &mut BTreeMap<_, BTreeMap<String, u64>>| {
        let mut builder = DetailBuilder::default();
        for i in from..from + 60 {
            let name = rooms[(i % rooms.len() as u64) as usize];
            let nick = format!("n{}", i % 7);
            let words = [format!("w{}", i % 5), "hi".to_owned()];
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            // Within the hour, none of it in the future.
            let time = hour.start_ms() + (i * 1_000) % (now - hour.start_ms() + 1);
            builder.add(&message(time, name, &nick, &words), true, None);
            for w in &words {
                *expected
                    .entry((name.to_owned(), TopList::Words))
                    .or_default()
                    .entry((*w).to_owned())
                    .or_default() += 1;
            }
            *expected
                .entry((name.to_owned(), TopList::Nicks))
                .or_default()
                .entry(nick)
                .or_default() += 1;
        }
        builder.take(now_ms(), &retention, Buckets::Rollups)
    };
    let all = [Period::AllTime];
    let check = |expected: BTreeMap<(String, TopList), BTreeMap<String, u64>>,
                 when: &'static str| {
        let store = store.clone();
        async move {
            for ((name, list), want) in &expected {
                let got: BTreeMap<String, u64> = store
                    .top_in(*list, &room(name), &all, 1000)
                    .await
                    .unwrap()
                    .into_iter()
                    .collect();
                assert_eq!(&got, want, "{name} {list:?}, {when}");
                if *list == TopList::Nicks {
                    assert_eq!(
                        store.unique_chatters(name, &all).await.unwrap(),
                        want.len() as u64,
                        "{name}, {when}"
                    );
                }
            }
        }
    };
    let detail = apply(&["#new", "#old"], 0, &mut expected);
    assert!(store.apply_detail(&detail, None).await.unwrap());
    let cli = |args: &[&str]| {
        let out = redis.cli(args).unwrap();
        out.trim().trim_matches('"').to_owned()
    };
    let raw = |name: &str| cli(&["ZSCORE", &format!("{ns}room:{{{name}}}:words"), "hi"]);
    assert_eq!(raw("#new"), "(nil)", "not in its all-time list yet");
    assert_eq!(raw("#old"), "35", "a room from before: at once");
    check(expected.clone(), "before the roll-up").await;

    // The hour's roll-up (as it will run once the hour has ended).
    let later = hour.end_ms() + 3_600_000;
    while store.rolled().await.unwrap().hour < hour.number {
        store.maintain(later).await.unwrap();
    }
    assert_eq!(raw("#new"), "30", "folded");
    assert_eq!(raw("#old"), "35", "counted once");
    let folded = cli(&["GET", &format!("{ns}room:{{#new}}:folded")]);
    assert_eq!(folded, hour.number.to_string());
    check(expected.clone(), "after the roll-up").await;
    // Rolled up again: nothing changes.
    cli(&[
        "HSET",
        &format!("{ns}rollup"),
        "h",
        &(hour.number - 1).to_string(),
    ]);
    while store.rolled().await.unwrap().hour < hour.number {
        store.maintain(later).await.unwrap();
    }
    check(expected.clone(), "after a second roll-up").await;

    // More of the same hour, and a room first seen now: counted at once.
    let detail = apply(&["#new", "#late"], 60, &mut expected);
    assert!(store.apply_detail(&detail, None).await.unwrap());
    assert_eq!(raw("#new"), "60");
    assert_eq!(raw("#late"), "30");
    check(expected, "after more messages").await;
}

/// A room's messages of an hour that has ended, taken before that hour is rolled up (the last
/// moments of an hour reach Redis after it ends), are in its minutes that the roll-up folds:
/// counted once in the room's all-time lists, before the roll-up and after it. A room first
/// seen that way folds its next hour's minutes too.
#[tokio::test]
async fn a_rooms_messages_taken_after_their_hour_ended_are_folded_once() {
    use chatstats::detail::{Buckets, DetailBuilder, Period, Scope};
    use chatstats::timeline::{Bucket, Granularity, Retention, now_ms};

    let redis = TestRedis::start();
    let ns = namespace();
    let store = redis.store_in(&ns);
    let retention = Retention::default();
    let hour = Bucket::of(Granularity::Hour, now_ms());
    let room = |name: &str| Scope::Room(bytes::Bytes::copy_from_slice(name.as_bytes()));
    let all = [Period::AllTime];
    let take = |time: u64, rooms: &[&str], at: u64| {
        let mut builder = DetailBuilder::default();
        for name in rooms {
            builder.add(&message(time, name, "nick", &["hi"]), true, None);
        }
        builder.take(at, &retention, Buckets::Rollups)
    };
    let hi = |name: &'static str| {
        let store = store.clone();
        async move {
            let top = store.top_in(TopList::Words, &room(name), &all, 10).await;
            top.unwrap()
                .into_iter()
                .find(|(w, _)| w == "hi")
                .map(|(_, n)| n)
        }
    };
    // While the hour runs: #on's minutes wait for the roll-up.
    let early = hour.start_ms() + 1_000;
    let detail = take(early, &["#on"], early + 1_000);
    assert!(store.apply_detail(&detail, None).await.unwrap());
    // Its last second, taken after it ended and before its roll-up (2 min later at the
    // earliest): for #on, and for #first, which it is the first message of.
    let last = hour.end_ms() - 1_000;
    let detail = take(last, &["#on", "#first"], hour.end_ms() + 1_000);
    assert!(store.apply_detail(&detail, None).await.unwrap());
    assert_eq!(hi("#on").await, Some(2), "before the roll-up");
    assert_eq!(hi("#first").await, Some(1), "before the roll-up");

    let later = hour.end_ms() + 3_600_000;
    while store.rolled().await.unwrap().hour < hour.number {
        store.maintain(later).await.unwrap();
    }
    assert_eq!(hi("#on").await, Some(2), "after the roll-up");
    assert_eq!(hi("#first").await, Some(1), "after the roll-up");

    // The next hour, not ended: #first's minutes wait for its roll-up, as #on's do.
    let next = hour.end_ms() + 1_000;
    let detail = take(next, &["#on", "#first"], next + 1_000);
    assert!(store.apply_detail(&detail, None).await.unwrap());
    let raw = |name: &str| {
        let key = format!("{ns}room:{{{name}}}:words");
        redis
            .cli(&["ZSCORE", &key, "hi"])
            .unwrap()
            .trim()
            .trim_matches('"')
            .to_owned()
    };
    assert_eq!(raw("#on"), "2", "not in its all-time list yet");
    assert_eq!(raw("#first"), "1", "not in its all-time list yet");
    assert_eq!(hi("#on").await, Some(3));
    assert_eq!(hi("#first").await, Some(2));
}

/// Rooms written while their hour is being rolled up (after the roll-up listed the hour's
/// rooms) are rolled up too before the hour is marked rolled up: every message counts once in
/// its room's all-time lists, whenever it came.
#[tokio::test]
async fn rooms_written_during_their_hours_roll_up_are_folded_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use chatstats::detail::{Buckets, DetailBuilder, Period, Scope};
    use chatstats::timeline::{Bucket, Granularity, Retention, now_ms};

    let redis = TestRedis::start();
    let store = redis.store_in(&namespace());
    let hour = Bucket::of(Granularity::Hour, now_ms());
    let apply = |room: String, time: u64, at: u64| {
        let store = store.clone();
        async move {
            let mut builder = DetailBuilder::default();
            builder.add(&message(time, &room, "nick", &["hi"]), true, None);
            let detail = builder.take(at, &Retention::default(), Buckets::Rollups);
            assert!(store.apply_detail(&detail, None).await.unwrap());
        }
    };
    // Many rooms for the roll-up to go through, written while the hour ran.
    let early = hour.start_ms() + 1_000;
    for i in 0..200 {
        apply(format!("#p{i}"), early, early + 1_000).await;
    }
    // The roll-up, and meanwhile new rooms with messages of the hour's last second, taken
    // after it ended, until it is done.
    let done = Arc::new(AtomicBool::new(false));
    let rolling = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let later = hour.end_ms() + 3_600_000;
            while store.rolled().await.unwrap().hour < hour.number {
                store.maintain(later).await.unwrap();
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let count = |name: String| {
        let store = store.clone();
        async move {
            let room = Scope::Room(bytes::Bytes::from(name));
            store
                .top_in(TopList::Words, &room, &[Period::AllTime], 10)
                .await
                .unwrap()
        }
    };
    let mut late = 0;
    while !done.load(Ordering::SeqCst) && late < 5_000 {
        let name = format!("#n{late}");
        apply(name.clone(), hour.end_ms() - 1_000, hour.end_ms() + 1_000).await;
        // Exact at once too, whatever the roll-up is doing.
        assert_eq!(
            count(name.clone()).await,
            vec![("hi".to_owned(), 1)],
            "{name}"
        );
        late += 1;
    }
    rolling.await.unwrap();
    assert!(late > 0);
    let rooms: Vec<String> = (0..200)
        .map(|i| format!("#p{i}"))
        .chain((0..late).map(|i| format!("#n{i}")))
        .collect();
    for round in ["after the roll-up", "after another housekeeping run"] {
        for name in &rooms {
            let top = count(name.clone()).await;
            assert_eq!(top, vec![("hi".to_owned(), 1)], "{name}, {round}");
        }
        store.maintain(hour.end_ms() + 3_600_000).await.unwrap();
    }
}
