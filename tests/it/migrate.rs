//! `chatstats-migrate`: what a standalone Redis holds for good, moved to a Redis Cluster, gives
//! the same all-time answers there; a second run into the same namespace is refused.

use std::io::Read;
use std::time::Duration;

use chatstats::detail::{Period, Scope, Seen};
use chatstats::message::TopList;
use chatstats::store::Store;
use chatstats::store::redis::RedisStore;

use crate::helpers::*;

/// Every upstream fixture and the part-2 stream (emotes, bots) in one file.
fn stream_file() -> tempfile::TempPath {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut stream = Vec::new();
    for name in [
        "upstream/multiple-messages.txt",
        "upstream/improper-json.txt",
        "upstream/non-ascii.txt",
        "upstream/duplicate-words-counted.txt",
        "part2/stream.txt",
    ] {
        stream.extend(std::fs::read(root.join(name)).unwrap());
        stream.extend_from_slice(b"\n\n");
    }
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, &stream).unwrap();
    file.into_temp_path()
}

/// Everything the migration promises to move, as one comparable value.
async fn lasting(store: &RedisStore) -> Vec<String> {
    let mut out = Vec::new();
    for list in TopList::ALL {
        out.push(format!(
            "{list:?} {:?}",
            store.top(list, 100_000).await.unwrap()
        ));
    }
    let all = [Period::AllTime];
    for (room, _) in store.top(TopList::Rooms, 100_000).await.unwrap() {
        let scope = Scope::Room(room.clone().into());
        for list in [TopList::Words, TopList::Nicks, TopList::Emotes] {
            let top = store.top_in(list, &scope, &all, 100_000).await.unwrap();
            out.push(format!("room {room} {list:?} {top:?}"));
        }
        let profile = store.profile(Seen::Room, &room).await.unwrap();
        out.push(format!("room {room} {profile:?}"));
    }
    for (nick, _) in store.top(TopList::Nicks, 100_000).await.unwrap() {
        let scope = Scope::Nick(nick.clone().into());
        for list in [TopList::Words, TopList::Rooms, TopList::Emotes] {
            let top = store.top_in(list, &scope, &all, 100_000).await.unwrap();
            out.push(format!("nick {nick} {list:?} {top:?}"));
        }
        let profile = store.profile(Seen::Nick, &nick).await.unwrap();
        out.push(format!("nick {nick} {profile:?}"));
    }
    out.push(format!("failed {}", store.failed_total().await.unwrap()));
    out.push(format!("{:?}", store.failed_messages(None).await.unwrap()));
    out
}

fn migrate(from: &str, to: &str, ns: &str) -> (std::process::ExitStatus, String) {
    let mut child = bin("chatstats-migrate")
        .env("MIGRATE_FROM", from)
        .env("MIGRATE_TO", to)
        .env("REDIS_NAMESPACE", ns)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_deadline(&mut child, Duration::from_secs(60));
    let mut out = String::new();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read>),
    ]
    .into_iter()
    .flatten()
    {
        let mut pipe = pipe;
        let _ = pipe.read_to_string(&mut out);
    }
    (status, out)
}

#[tokio::test]
async fn a_standalone_redis_moved_to_a_cluster_gives_the_same_lasting_answers() {
    let Some(cluster) = crate::cluster::TestCluster::shared() else {
        return;
    };
    let redis = TestRedis::start();
    let ns = namespace();
    let file = stream_file();
    let mut worker = bin("chatstats-worker")
        .env("CHAT_INTERFACE_URL", &file)
        .env("RESPONSE_STREAM_MODE", "text")
        .env("REDIS_URL", redis.url())
        .env("REDIS_NAMESPACE", &ns)
        .env("STATISTICS", "full")
        .spawn()
        .unwrap();
    let status = wait_with_deadline(&mut worker, Duration::from_secs(60));
    assert!(status.success(), "worker: {status}");
    let before = lasting(&redis.store_in(&ns)).await;
    assert!(
        before.len() > 20,
        "the stream has rooms and nicks: {before:?}"
    );

    let (status, out) = migrate(&redis.url(), &cluster.url(), &ns);
    assert!(status.success(), "migrate: {status}\n{out}");
    let moved = cluster.store_in(&ns);
    assert!(moved.is_cluster());
    let after = lasting(&moved).await;
    for (want, got) in before.iter().zip(&after) {
        assert_eq!(got, want);
    }
    assert_eq!(after.len(), before.len());

    // Once only: the namespace now holds statistics.
    let (status, out) = migrate(&redis.url(), &cluster.url(), &ns);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("already holds"), "{out}");
    assert_eq!(
        lasting(&moved).await,
        before,
        "the refused run wrote nothing"
    );
}

#[test]
fn a_source_or_target_that_refuses_the_password_stops_the_migration_at_once() {
    let guarded = TestRedis::start_with(&["--appendonly", "no", "--requirepass", "right-pass"]);
    let open = TestRedis::start();
    let wrong = format!("redis://:wrong-pass-42@127.0.0.1:{}", guarded.port);
    let open = open.url();
    for (from, to, side) in [
        (&wrong, &open, "(the source, --from)"),
        (&open, &wrong, "(the target, --to)"),
    ] {
        let started = std::time::Instant::now();
        let (status, out) = migrate(from, to, &namespace());
        assert_eq!(status.code(), Some(1), "{out}");
        assert!(out.contains("WRONGPASS") && out.contains(side), "{out}");
        assert!(
            !out.contains("wrong-pass-42"),
            "the password is repeated: {out}"
        );
        assert!(started.elapsed() < Duration::from_secs(20), "{out}");
    }
}
