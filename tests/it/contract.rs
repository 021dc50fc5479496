//! The store contract: the same test bodies run against Redis and the in-memory store, so the
//! two can never drift apart. Each body gets a factory of empty stores.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chatstats::message::{Tally, TopList};
use chatstats::store::{Mark, Store, unix_now};
use serde_json::{Value, json};

use crate::helpers::*;

contract!(
    each_upstream_fixture_gives_exactly_its_expected_answers,
    equal_counts_are_ordered_by_descending_bytes,
    words_keep_case_punctuation_and_any_script,
    failed_payloads_are_kept_once_and_all_are_counted,
    only_the_newest_failed_payloads_are_kept,
    failed_messages_honour_a_limit_newest_first,
    messages_per_second_is_the_last_complete_second,
    concurrent_writers_add_up_exactly,
    a_retried_tally_is_applied_once,
    limit_selects_how_many_entries_are_answered,
    retries_arriving_out_of_order_are_each_applied_once,
);

fn words(list: &[(&str, u64)]) -> Vec<(Bytes, u64)> {
    list.iter()
        .map(|(w, n)| (Bytes::copy_from_slice(w.as_bytes()), *n))
        .collect()
}

fn entries(list: &[(String, u64)]) -> Value {
    Value::Array(list.iter().map(|(m, n)| json!({ m.as_str(): n })).collect())
}

async fn each_upstream_fixture_gives_exactly_its_expected_answers<S: Store>(new: impl Fn() -> S) {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let files = expected
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| !name.starts_with('_'));
    for (file, answers) in files {
        let store = new();
        record_bytes(&store, &std::fs::read(fixture(file)).unwrap()).await;
        let api = TestApi::spawn(store).await;
        for (path, want) in answers.as_object().unwrap() {
            match path.strip_suffix("#len") {
                Some(path) => {
                    let (status, body) = api.get(path).await;
                    assert_eq!(status, 200, "{file} {path}");
                    assert_eq!(
                        body.as_array().map(Vec::len),
                        want.as_u64().map(|n| n as usize),
                        "{file} {path}: {body}"
                    );
                }
                None => {
                    let (status, body) = api.get(path).await;
                    assert_eq!(status, 200, "{file} {path}");
                    assert_eq!(&body, want, "{file} {path}");
                }
            }
        }
    }
}

async fn equal_counts_are_ordered_by_descending_bytes<S: Store>(new: impl Fn() -> S) {
    let store = new();
    let tally = Tally {
        words: words(&[("b", 1), ("a", 1), ("ä", 1), ("B", 1), ("c", 2), ("ab", 1)]),
        ..Tally::default()
    };
    store.apply(&tally, None).await.unwrap();
    let top = store.top(TopList::Words, 10).await.unwrap();
    assert_eq!(
        entries(&top),
        json!([{"c": 2}, {"ä": 1}, {"b": 1}, {"ab": 1}, {"a": 1}, {"B": 1}])
    );
}

async fn words_keep_case_punctuation_and_any_script<S: Store>(new: impl Fn() -> S) {
    let store = new();
    let input = "data: {\"room\":\"#r\",\"nick\":\"n\",\"body\":\"MEUBEL meubel Oooh? ㅋㅋㅋ 😀 başkan\\u3000Привет\"}\n";
    record_bytes(&store, input.as_bytes()).await;
    let mut top: Vec<String> = store
        .top(TopList::Words, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(w, _)| w)
        .collect();
    top.sort();
    let mut want = vec![
        "MEUBEL",
        "meubel",
        "Oooh?",
        "ㅋㅋㅋ",
        "😀",
        "başkan",
        "Привет",
    ];
    want.sort();
    assert_eq!(top, want);
}

async fn failed_payloads_are_kept_once_and_all_are_counted<S: Store>(new: impl Fn() -> S) {
    let store = new();
    record_bytes(&store, b"data: nope\ndata: nope\ndata: [1]\ndata: nope\n").await;
    let mut failed = store.failed_messages(None).await.unwrap();
    failed.sort();
    assert_eq!(failed, vec!["[1]", "nope"]);
    assert_eq!(store.failed_total().await.unwrap(), 4);
    assert!(store.top(TopList::Words, 10).await.unwrap().is_empty());
    assert_eq!(
        store.messages_in_second(unix_now()).await.unwrap()
            + store.messages_in_second(unix_now() - 1).await.unwrap(),
        0
    );
}

async fn only_the_newest_failed_payloads_are_kept<S: Store>(new: impl Fn() -> S) {
    let store = new();
    let input: String = (0..1010).map(|i| format!("data: bad {i}\n")).collect();
    record_bytes(&store, input.as_bytes()).await;
    let failed = store.failed_messages(None).await.unwrap();
    assert_eq!(failed.len(), 1000);
    assert_eq!(failed[0], "bad 1009", "newest first");
    assert!(!failed.contains(&"bad 9".to_owned()) && failed.contains(&"bad 10".to_owned()));
    assert_eq!(store.failed_total().await.unwrap(), 1010);
}

async fn failed_messages_honour_a_limit_newest_first<S: Store>(new: impl Fn() -> S) {
    let store = new();
    record_bytes(&store, b"data: bad 1\ndata: bad 2\ndata: bad 3\n").await;
    let api = TestApi::spawn(store).await;
    let (status, body) = api.get("/stats/failedMessages?limit=2").await;
    assert_eq!((status, body), (200, json!(["bad 3", "bad 2"])));
    let (_, body) = api.get("/stats/failedMessages").await;
    assert_eq!(body, json!(["bad 3", "bad 2", "bad 1"]));
    let (status, body) = api.get("/stats/failedMessages?limit=0").await;
    assert_eq!(status, 400, "{body}");
}

async fn messages_per_second_is_the_last_complete_second<S: Store>(new: impl Fn() -> S) {
    let store = new();
    let now = unix_now();
    let tally = Tally {
        seconds: vec![(now - 1, 7), (now - 2, 3)],
        ..Tally::default()
    };
    store.apply(&tally, None).await.unwrap();
    assert_eq!(store.messages_in_second(now - 1).await.unwrap(), 7);
    assert_eq!(store.messages_in_second(now - 2).await.unwrap(), 3);
    assert_eq!(store.messages_in_second(now).await.unwrap(), 0);
    let api = TestApi::spawn(store).await;
    // The API reads the second before "now"; the test may straddle a second boundary.
    let (status, body) = api.get("/stats").await;
    assert_eq!(status, 200);
    let mps = body["messagesPerSecond"].as_u64().unwrap();
    assert!(mps == 7 || (unix_now() != now && mps == 0), "{body}");
}

async fn concurrent_writers_add_up_exactly<S: Store>(new: impl Fn() -> S) {
    let store = new();
    let second = unix_now();
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let writer: Arc<str> = format!("w{writer}").into();
            for seq in 1..=250u64 {
                let tally = Tally {
                    seconds: vec![(second, 1)],
                    words: words(&[("Kappa", 1), ("LUL", 2)]),
                    nicks: words(&[(&format!("n{writer}"), 1)]),
                    ..Tally::default()
                };
                store
                    .apply(
                        &tally,
                        Some(&Mark {
                            writer: writer.clone(),
                            seq,
                            window: 128,
                        }),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        entries(&store.top(TopList::Words, 10).await.unwrap()),
        json!([{"LUL": 2000}, {"Kappa": 1000}])
    );
    assert_eq!(store.top(TopList::Nicks, 10).await.unwrap().len(), 4);
    assert_eq!(store.messages_in_second(second).await.unwrap(), 1000);
}

async fn a_retried_tally_is_applied_once<S: Store>(new: impl Fn() -> S) {
    let store = new();
    let tally = Tally {
        words: words(&[("once", 1)]),
        ..Tally::default()
    };
    let mark = |seq| Mark {
        writer: "w".into(),
        seq,
        window: 128,
    };
    assert!(store.apply(&tally, Some(&mark(1))).await.unwrap());
    assert!(!store.apply(&tally, Some(&mark(1))).await.unwrap());
    assert!(store.apply(&tally, Some(&mark(2))).await.unwrap());
    assert!(!store.apply(&tally, Some(&mark(1))).await.unwrap());
    let other = Mark {
        writer: "other".into(),
        seq: 1,
        window: 128,
    };
    assert!(store.apply(&tally, Some(&other)).await.unwrap());
    assert_eq!(
        entries(&store.top(TopList::Words, 10).await.unwrap()),
        json!([{"once": 3}])
    );
}

async fn limit_selects_how_many_entries_are_answered<S: Store>(new: impl Fn() -> S) {
    let store = new();
    let list: Vec<(String, u64)> = (0..1200)
        .map(|i| (format!("w{i:04}"), 1 + i as u64))
        .collect();
    let tally = Tally {
        words: list
            .iter()
            .map(|(w, n)| (Bytes::from(w.clone()), *n))
            .collect(),
        ..Tally::default()
    };
    store.apply(&tally, None).await.unwrap();
    let api = TestApi::spawn(store).await;
    let (_, body) = api.get("/stats/words").await;
    assert_eq!(body.as_array().unwrap().len(), 10);
    assert_eq!(body[0], json!({"w1199": 1200}));
    let (_, body) = api.get("/stats/words?limit=3").await;
    assert_eq!(
        body,
        json!([{"w1199": 1200}, {"w1198": 1199}, {"w1197": 1198}])
    );
    let (_, body) = api.get("/stats/words?limit=1000").await;
    assert_eq!(body.as_array().unwrap().len(), 1000);
    let (status, body) = api.get("/stats/nicks?limit=1001").await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"statusCode": 400, "error": "Bad Request", "message": "querystring/limit must be <= 1000"})
        )
    );
    let _ = Duration::ZERO;
}

async fn retries_arriving_out_of_order_are_each_applied_once<S: Store>(new: impl Fn() -> S) {
    let store = new();
    let tally = Tally {
        words: words(&[("x", 1)]),
        ..Tally::default()
    };
    let mark = |seq| Mark {
        writer: "w".into(),
        seq,
        window: 128,
    };
    // 1 applied, 2 lost, 3 and 4 applied on a new connection, then 2 retried, 3 retried.
    for (seq, applied) in [
        (1, true),
        (3, true),
        (4, true),
        (2, true),
        (3, false),
        (2, false),
        (5, true),
        (4, false),
    ] {
        assert_eq!(
            store.apply(&tally, Some(&mark(seq))).await.unwrap(),
            applied,
            "seq {seq}"
        );
    }
    assert_eq!(
        entries(&store.top(TopList::Words, 10).await.unwrap()),
        json!([{"x": 5}])
    );
}
