//! Redis Cluster: a local cluster of three masters, and what only cluster mode has to prove —
//! the same answers as one Redis, every key on a shard's hash tag, keys spread over the masters,
//! exactly once through connection kills and a master restart, the binaries with a cluster URL.
//!
//! The tests need `redis-cli --cluster` (Redis 5 or newer). Without it they are skipped with a
//! note, except on CI (`CI` set), where they fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatstats::detail::{Period, Scope, Seen};
use chatstats::message::{Rules, TopList};
use chatstats::sim::Generator;
use chatstats::source::file::FileSource;
use chatstats::store::redis::{RedisSettings, RedisStore};
use chatstats::store::{Entry, Profile, Store};
use chatstats::timeline::{Bucket, Granularity, now_ms};
use chatstats::worker::{self, Progress, WorkerSettings};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// The slots of a Redis Cluster.
const SLOTS: usize = 16384;

/// Runs a `redis-server` (the arguments after the first three) in the background and kills it
/// once the test process (`$1`) is gone, then removes its directory (`$3`); exits when the
/// server dies. The server's process id goes to the file `$2`.
const WRAPPER: &str = r#"t=$1; pidfile=$2; dir=$3; shift 3
"$@" &
r=$!
echo "$r" > "$pidfile"
while kill -0 "$t" 2>/dev/null && kill -0 "$r" 2>/dev/null; do sleep 0.5; done
if ! kill -0 "$t" 2>/dev/null; then kill -9 "$r" 2>/dev/null; wait "$r"; rm -rf "$dir"; fi"#;

/// One master of a [`TestCluster`]: a `redis-server` run by the `sh` of [`WRAPPER`], with its
/// own directory (append-only file, `nodes.conf`, log).
struct Node {
    port: u16,
    bus_port: u16,
    dir: tempfile::TempDir,
    wrapper: Mutex<Child>,
}

impl Node {
    fn spawn(port: u16, bus_port: u16) -> Node {
        let dir = tempfile::tempdir().expect("temporary directory");
        let wrapper = spawn_node(port, bus_port, dir.path());
        Node {
            port,
            bus_port,
            dir,
            wrapper: wrapper.into(),
        }
    }

    /// Starts the server again with the same port, directory and `nodes.conf`.
    fn respawn(&self) {
        *self.wrapper.lock().unwrap() = spawn_node(self.port, self.bus_port, self.dir.path());
    }

    /// The server's process id, once the wrapper has written it.
    fn server_pid(&self) -> Option<String> {
        let file = self.dir.path().join("redis.pid");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(pid) = std::fs::read_to_string(&file) {
                let pid = pid.trim();
                if !pid.is_empty() {
                    return Some(pid.to_owned());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills the server (SIGKILL) and waits until its wrapper has seen it die (and reaped it).
    fn kill(&self) {
        if let Some(pid) = self.server_pid() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        let _ = std::fs::remove_file(self.dir.path().join("redis.pid"));
        let mut wrapper = self.wrapper.lock().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = wrapper.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = wrapper.kill();
        let _ = wrapper.wait();
    }

    /// The last lines of the server's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }
}

fn spawn_node(port: u16, bus_port: u16, dir: &Path) -> Child {
    let path = |name: &str| dir.join(name).into_os_string();
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(WRAPPER)
        .arg("chatstats-test-cluster-node")
        .arg(std::process::id().to_string())
        .arg(path("redis.pid"))
        .arg(dir)
        .arg("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--cluster-port", &bus_port.to_string()])
        .args(["--cluster-enabled", "yes", "--cluster-config-file"])
        .arg(path("nodes.conf"))
        .args(["--cluster-node-timeout", "2000"])
        .args(["--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(path("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => child,
        Err(err) => panic!("cannot run sh to start redis-server ({err})"),
    }
}

/// A Redis Cluster of three masters on free loopback ports, holding all 16384 slots, with
/// persistence (`appendfsync always`: what was acknowledged survives a SIGKILL).
///
/// [`TestCluster::shared`] gives the one cluster of the test process, for tests that each use a
/// namespace of their own; [`TestCluster::start`] one of the test's own, stopped on drop, for
/// tests that kill connections or restart masters.
pub struct TestCluster {
    nodes: Vec<Node>,
    owned: bool,
}

impl TestCluster {
    /// Whether `redis-cli` is there and has `--cluster` (Redis 5 or newer). Its help exits 1,
    /// so the help text itself is looked for.
    pub fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            Command::new("redis-cli")
                .args(["--cluster", "help"])
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|out| {
                    let text = [out.stdout, out.stderr].concat();
                    String::from_utf8_lossy(&text).contains("Cluster Manager Commands")
                })
        })
    }

    /// The cluster of this test process, started by the first test that asks, shared by all.
    /// Its servers die with the test process (a static is never dropped). `None` when
    /// `redis-cli --cluster` is not available and `CI` is not set.
    pub fn shared() -> Option<&'static TestCluster> {
        static SHARED: OnceLock<Option<TestCluster>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                if !TestCluster::available() {
                    return unavailable();
                }
                Some(TestCluster::launch(false))
            })
            .as_ref()
    }

    /// A cluster of the caller's own, stopped (and its directories removed) on drop. `None`
    /// when `redis-cli --cluster` is not available and `CI` is not set.
    pub fn start() -> Option<TestCluster> {
        if !TestCluster::available() {
            return unavailable();
        }
        Some(TestCluster::launch(true))
    }

    /// Starts the cluster, on new ports each time, up to 3 times.
    fn launch(owned: bool) -> TestCluster {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match TestCluster::try_launch(owned) {
                Ok(cluster) => return cluster,
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "the Redis Cluster did not start in 3 attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    fn try_launch(owned: bool) -> Result<TestCluster, String> {
        let ports = distinct_free_ports(6);
        let cluster = TestCluster {
            nodes: (0..3)
                .map(|i| Node::spawn(ports[2 * i], ports[2 * i + 1]))
                .collect(),
            owned,
        };
        for node in 0..3 {
            if !cluster.wait_ping(node, Duration::from_secs(10)) {
                return Err(cluster.failure(&format!(
                    "master {node} (port {}) did not answer PING; is redis-server installed?",
                    cluster.nodes[node].port
                )));
            }
        }
        let mut create = Command::new("redis-cli");
        create
            .args(["--cluster", "create"])
            .args(cluster.addresses())
            .args(["--cluster-replicas", "0", "--cluster-yes"]);
        match output_within(&mut create, Duration::from_secs(30)) {
            Some(out) if out.status.success() => {}
            Some(out) => {
                return Err(cluster.failure(&format!(
                    "redis-cli --cluster create failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            None => return Err(cluster.failure("redis-cli --cluster create did not finish")),
        }
        cluster
            .wait_ok(Duration::from_secs(30))
            .map_err(|state| cluster.failure(&state))?;
        Ok(cluster)
    }

    /// `why`, with the end of every master's log.
    fn failure(&self, why: &str) -> String {
        let mut text = why.to_owned();
        for (i, node) in self.nodes.iter().enumerate() {
            text.push_str(&format!(
                "\nmaster {i} (port {}) log:\n{}",
                node.port,
                node.log_tail()
            ));
        }
        text
    }

    fn wait_ping(&self, node: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self
                .cli(node, &["PING"])
                .is_some_and(|r| r.trim() == "PONG")
            {
                return true;
            }
            if let Ok(Some(_)) = self.nodes[node].wrapper.lock().unwrap().try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits until every master says `cluster_state:ok` and its `CLUSTER SLOTS` covers all
    /// 16384 slots; on timeout, what the masters said last.
    fn wait_ok(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let mut state = Vec::new();
            for node in 0..self.nodes.len() {
                let info = self
                    .cli(node, &["--raw", "CLUSTER", "INFO"])
                    .unwrap_or_default();
                let covered = self
                    .cli(node, &["--no-raw", "CLUSTER", "SLOTS"])
                    .map_or(0, |slots| slots_covered(&slots));
                if !info.contains("cluster_state:ok") || covered != SLOTS {
                    let line = info.lines().next().unwrap_or("no answer").trim().to_owned();
                    state.push(format!("master {node}: {line}, {covered} slots covered"));
                }
            }
            if state.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the cluster was not ok after {limit:?}: {}",
                    state.join("; ")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The masters' ports, in the order of the URLs.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    fn addresses(&self) -> Vec<String> {
        self.ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// `redis-cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`: what users put in `REDIS_URL`.
    pub fn url(&self) -> String {
        format!("redis-cluster://{}", self.addresses().join(","))
    }

    /// `redis-cluster://127.0.0.1:P1?node=127.0.0.1:P2&node=127.0.0.1:P3`: fred's own form.
    pub fn fred_url(&self) -> String {
        let addresses = self.addresses();
        let others: Vec<String> = addresses[1..].iter().map(|a| format!("node={a}")).collect();
        format!("redis-cluster://{}?{}", addresses[0], others.join("&"))
    }

    /// Settings of a store on this cluster under a namespace of its own, in as many shards as
    /// the binaries use by default (12), so that a test's store reads what a binary wrote.
    pub fn settings(&self) -> RedisSettings {
        settings_at(&self.fred_url())
    }

    /// A store on this cluster under a namespace of its own.
    pub fn store(&self) -> RedisStore {
        self.store_in(&namespace())
    }

    /// A store on this cluster under `ns`.
    pub fn store_in(&self, ns: &str) -> RedisStore {
        RedisStore::connect(RedisSettings {
            namespace: ns.to_owned(),
            ..self.settings()
        })
        .expect("cluster store")
    }

    /// Runs a command with `redis-cli -c` on master `node` and returns its output.
    pub fn cli(&self, node: usize, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &self.nodes[node].port.to_string(), "--no-raw"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Kills every client connection on every master (`CLIENT KILL TYPE normal`), the stores'
    /// included.
    pub fn kill_clients(&self) {
        for node in 0..self.nodes.len() {
            let _ = self.cli(node, &["CLIENT", "KILL", "TYPE", "normal"]);
        }
    }

    /// Kills master `node` (SIGKILL), starts it again with the same port, directory and
    /// `nodes.conf`, and waits until the cluster is ok again. Only for a cluster of the test's
    /// own ([`TestCluster::start`]).
    pub fn restart(&self, node: usize) {
        assert!(
            self.owned,
            "restart a cluster of the test's own (TestCluster::start), not the shared one"
        );
        self.nodes[node].kill();
        self.nodes[node].respawn();
        assert!(
            self.wait_ping(node, Duration::from_secs(10)),
            "{}",
            self.failure(&format!("master {node} did not come back"))
        );
        if let Err(state) = self.wait_ok(Duration::from_secs(30)) {
            panic!("{}", self.failure(&state));
        }
    }

    /// The keys matching `pattern` on master `node`.
    pub fn keys_on(&self, node: usize, pattern: &str) -> Vec<String> {
        self.cli(node, &["--raw", "KEYS", pattern])
            .unwrap_or_default()
            .lines()
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The keys matching `pattern` on every master, one after the other.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        (0..self.nodes.len())
            .flat_map(|node| self.keys_on(node, pattern))
            .collect()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.kill();
        }
    }
}

/// What [`TestCluster::shared`] and [`TestCluster::start`] do without `redis-cli --cluster`:
/// fail on CI, else say once that the cluster tests are skipped.
fn unavailable() -> Option<TestCluster> {
    if std::env::var("CI").is_ok_and(|ci| !ci.is_empty()) {
        panic!(
            "redis-cli --cluster is needed for the cluster tests (Redis 5 or newer: apt-get install redis-server); CI is set, so they fail instead of being skipped"
        );
    }
    static SKIP: Once = Once::new();
    // Straight to stderr: the test harness would capture `eprintln!`.
    SKIP.call_once(|| {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "note: the Redis Cluster tests are skipped: redis-cli --cluster is not available (Redis 5 or newer: apt-get install redis-server)"
        );
    });
    None
}

/// `n` different free loopback ports.
fn distinct_free_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < n {
        let port = free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// Runs `command` to its end and returns its output; kills it and gives `None` after `limit`.
fn output_within(command: &mut Command, limit: Duration) -> Option<std::process::Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + limit;
    while child.try_wait().ok()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().ok()
}

/// How many slots the ranges of a `CLUSTER SLOTS` answer (as `redis-cli --no-raw` prints it)
/// cover. A range opens an entry of the top-level array (`1) 1) (integer) 0`) and its end is
/// on the next line (`   2) (integer) 5460`).
fn slots_covered(answer: &str) -> usize {
    let mut covered = vec![false; SLOTS];
    let mut lines = answer.lines();
    while let Some(line) = lines.next() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [index, "1)", "(integer)", start] = words[..] else {
            continue;
        };
        if !index.ends_with(')') {
            continue;
        }
        let Some(next) = lines.next() else { break };
        let Ok(start) = start.parse::<usize>() else {
            continue;
        };
        let end = match next.split_whitespace().collect::<Vec<_>>()[..] {
            ["2)", "(integer)", end] => end.parse::<usize>().ok(),
            _ => None,
        };
        if let Some(end) = end {
            for slot in covered.iter_mut().take(end + 1).skip(start) {
                *slot = true;
            }
        }
    }
    covered.iter().filter(|c| **c).count()
}

#[test]
fn slots_are_read_from_a_cluster_slots_answer() {
    let answer = "1) 1) (integer) 0\n   2) (integer) 99\n   3) 1) \"127.0.0.1\"\n      2) (integer) 7000\n      3) \"id\"\n      4) (empty array)\n2) 1) (integer) 200\n   2) (integer) 16383\n   3) 1) \"\"\n      2) (integer) 7001\n      3) \"id\"\n";
    assert_eq!(slots_covered(answer), 16384 - 100);
    assert_eq!(slots_covered(""), 0);
}

/// `count` events of the simulated chat (words, nicks and rooms in several scripts, emotes,
/// bots, some malformed payloads) from `seed`, the first sent at the start of the minute ten
/// minutes ago; and that start.
fn sim_stream(count: usize, seed: u64) -> (Vec<u8>, u64) {
    let start = (now_ms() - 10 * 60_000) / 60_000 * 60_000;
    let mut generator = Generator::starting_at(seed, start);
    let mut out = Vec::new();
    for _ in 0..count {
        generator.write_event(&mut out);
    }
    (out, start)
}

/// Worker settings for tests with `STATISTICS=full` and the history, as the binaries run.
fn full_settings() -> WorkerSettings {
    WorkerSettings {
        rules: Rules {
            failed_max: 4096,
            full: true,
            history: true,
            ..Rules::default()
        },
        ..worker_settings()
    }
}

fn file_source(bytes: &[u8]) -> FileSource {
    FileSource::new(
        "test input",
        Box::new(std::io::Cursor::new(bytes.to_vec())),
        1 << 20,
    )
}

/// Records `bytes` into `store` with [`full_settings`], to the end.
async fn record_full<S: Store>(store: &S, bytes: &[u8]) {
    worker::run(
        store.clone(),
        file_source(bytes),
        full_settings(),
        Arc::default(),
        CancellationToken::new(),
    )
    .await
    .expect("worker run");
}

/// What the statistics of a store are compared on: the whole all-time lists and failed
/// messages, and the statistics by room, nick and time of the names in a [`Probe`].
#[derive(Debug, PartialEq)]
struct Snapshot {
    lists: Vec<(String, Vec<Entry>)>,
    failed: Vec<String>,
    failed_total: u64,
    profiles: Vec<(String, Option<Profile>)>,
    chatters: Vec<(String, u64)>,
    activity: Vec<u64>,
}

/// The rooms, nicks and minutes a [`Snapshot`] looks into.
struct Probe {
    rooms: Vec<String>,
    nicks: Vec<String>,
    minutes: Vec<Bucket>,
}

impl Probe {
    /// No detail: the all-time lists and failed messages only.
    fn none() -> Probe {
        Probe {
            rooms: Vec::new(),
            nicks: Vec::new(),
            minutes: Vec::new(),
        }
    }

    /// The 3 busiest rooms, the 3 busiest nicks and the last one of `store`, and the first two
    /// minutes from `start_ms`.
    async fn of<S: Store>(store: &S, start_ms: u64) -> Probe {
        let names = |entries: Vec<Entry>| entries.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        let rooms = names(store.top(TopList::Rooms, 3).await.unwrap());
        let all = store.top(TopList::Nicks, 10_000).await.unwrap();
        let mut nicks = names(all.iter().take(3).cloned().collect());
        nicks.extend(all.last().map(|(n, _)| n.clone()));
        assert!(
            rooms.len() == 3 && nicks.len() == 4,
            "the input has rooms and nicks"
        );
        let minutes = vec![
            Bucket::of(Granularity::Minute, start_ms),
            Bucket::of(Granularity::Minute, start_ms + 60_000),
        ];
        Probe {
            rooms,
            nicks,
            minutes,
        }
    }
}

async fn snapshot<S: Store>(store: &S, probe: &Probe) -> Snapshot {
    let mut lists = Vec::new();
    for list in TopList::ALL {
        lists.push((
            format!("all-time {}", list.name()),
            store.top(list, 10_000).await.unwrap(),
        ));
    }
    let minutes: Vec<Period> = probe.minutes.iter().copied().map(Period::Bucket).collect();
    if !minutes.is_empty() {
        for list in TopList::ALL {
            lists.push((
                format!("{} in the first two minutes", list.name()),
                store
                    .top_in(list, &Scope::Global, &minutes, 1000)
                    .await
                    .unwrap(),
            ));
        }
    }
    for room in &probe.rooms {
        let scope = Scope::Room(Bytes::copy_from_slice(room.as_bytes()));
        for list in [TopList::Words, TopList::Nicks, TopList::Emotes] {
            lists.push((
                format!("{} of room {room}", list.name()),
                store
                    .top_in(list, &scope, &[Period::AllTime], 100)
                    .await
                    .unwrap(),
            ));
        }
        lists.push((
            format!("words of room {room} in the first two minutes"),
            store
                .top_in(TopList::Words, &scope, &minutes, 100)
                .await
                .unwrap(),
        ));
    }
    for nick in &probe.nicks {
        let scope = Scope::Nick(Bytes::copy_from_slice(nick.as_bytes()));
        for list in [TopList::Words, TopList::Rooms] {
            lists.push((
                format!("{} of nick {nick}", list.name()),
                store
                    .top_in(list, &scope, &[Period::AllTime], 100)
                    .await
                    .unwrap(),
            ));
        }
    }
    let mut failed = store.failed_messages(None).await.unwrap();
    failed.sort();
    let mut profiles = Vec::new();
    for nick in &probe.nicks {
        profiles.push((
            format!("nick {nick}"),
            store.profile(Seen::Nick, nick).await.unwrap(),
        ));
    }
    let mut chatters = Vec::new();
    for room in &probe.rooms {
        profiles.push((
            format!("room {room}"),
            store.profile(Seen::Room, room).await.unwrap(),
        ));
        chatters.push((
            room.clone(),
            store
                .unique_chatters(room, &[Period::AllTime])
                .await
                .unwrap(),
        ));
    }
    Snapshot {
        lists,
        failed,
        failed_total: store.failed_total().await.unwrap(),
        profiles,
        chatters,
        activity: store
            .activity(&Scope::Global, &probe.minutes)
            .await
            .unwrap(),
    }
}

/// Panics with the first difference between two top lists: where, the entries there, and the
/// members whose counts differ.
fn assert_same_list(what: &str, got: &[Entry], want: &[Entry]) {
    if got == want {
        return;
    }
    let at = got.iter().zip(want).position(|(g, w)| g != w);
    let counts: std::collections::HashMap<&str, u64> =
        want.iter().map(|(m, n)| (m.as_str(), *n)).collect();
    let differing: Vec<String> = got
        .iter()
        .filter(|(m, n)| counts.get(m.as_str()) != Some(n))
        .take(10)
        .map(|(m, n)| format!("{m:?}: got {n}, want {:?}", counts.get(m.as_str())))
        .collect();
    panic!(
        "{what}: {} entries, want {}; first difference at {at:?}: got {:?}, want {:?}; counts that differ: {differing:?}",
        got.len(),
        want.len(),
        at.map(|i| &got[i]),
        at.map(|i| &want[i]),
    );
}

/// Asserts that `got` equals `want`, field by field with precise messages; `context` says what
/// is compared.
fn assert_same(context: &str, got: &Snapshot, want: &Snapshot) {
    assert_eq!(got.lists.len(), want.lists.len());
    for ((what, got), (_, want)) in got.lists.iter().zip(&want.lists) {
        assert_same_list(&format!("{context}: {what}"), got, want);
    }
    assert_eq!(
        got.failed_total, want.failed_total,
        "{context}: failed total"
    );
    assert_eq!(got.failed, want.failed, "{context}: failed messages");
    assert_eq!(got.profiles, want.profiles, "{context}: profiles");
    assert_eq!(got.chatters, want.chatters, "{context}: unique chatters");
    assert_eq!(got.activity, want.activity, "{context}: activity by minute");
    assert_eq!(got, want, "{context}");
}

#[tokio::test]
async fn cluster_counts_equal_standalone_for_the_fixture() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let redis = TestRedis::start();
    // Every upstream fixture, as part 1's contract test records them.
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let files = expected
        .as_object()
        .unwrap()
        .keys()
        .filter(|name| !name.starts_with('_'));
    for file in files {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let (one, many) = (redis.store(), cluster.store());
        record_bytes(&one, &bytes).await;
        record_bytes(&many, &bytes).await;
        assert_same(
            file,
            &snapshot(&many, &Probe::none()).await,
            &snapshot(&one, &Probe::none()).await,
        );
    }
    // The simulated chat, with the statistics by room, nick and time.
    let (input, start) = sim_stream(4000, 7);
    let (one, many) = (redis.store(), cluster.store());
    record_full(&one, &input).await;
    record_full(&many, &input).await;
    let probe = Probe::of(&one, start).await;
    let want = snapshot(&one, &probe).await;
    let empty: Vec<&String> = want
        .lists
        .iter()
        .filter(|(what, entries)| {
            entries.is_empty() && (what.starts_with("all-time") || what.contains("two minutes"))
        })
        .map(|(what, _)| what)
        .collect();
    assert!(empty.is_empty(), "lists without entries: {empty:?}");
    assert!(want.failed_total > 0, "the input has malformed payloads");
    assert_same("simulated chat", &snapshot(&many, &probe).await, &want);
}

#[tokio::test]
async fn every_cluster_key_carries_a_shard_hash_tag() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let ns = namespace();
    let store = cluster.store_in(&ns);
    let (input, start) = sim_stream(2000, 3);
    record_full(&store, &input).await;
    // Reads and housekeeping may create keys too.
    let probe = Probe::of(&store, start).await;
    snapshot(&store, &probe).await;
    store.maintain(now_ms()).await.unwrap();
    let pattern = format!("{ns}*");
    let per_node: Vec<Vec<String>> = (0..3).map(|n| cluster.keys_on(n, &pattern)).collect();
    let keys: Vec<&String> = per_node.iter().flatten().collect();
    assert!(!keys.is_empty(), "the recording wrote keys under {ns}");
    for key in &keys {
        let rest = key.strip_prefix(&ns).unwrap();
        let tag = rest
            .strip_prefix('{')
            .and_then(|r| r.split_once('}'))
            .map(|(tag, _)| tag);
        assert!(
            tag.is_some_and(|t| !t.is_empty()),
            "key {key:?} does not start with the namespace followed by a shard's hash tag {{…}}"
        );
    }
    let used = per_node.iter().filter(|keys| !keys.is_empty()).count();
    assert!(
        used >= 2,
        "keys are spread over the masters: {:?} keys per master",
        per_node.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(
        cluster.keys(&pattern).len(),
        keys.len(),
        "keys() is every master's keys"
    );
}

/// Runs a worker over 20,000 simulated events on `cluster` while `fault` runs (until the token
/// is cancelled, once the worker has finished), then compares with the in-memory store's
/// statistics of the same input.
async fn exactly_once_through<F, Fut>(cluster: Arc<TestCluster>, seed: u64, fault: F)
where
    F: FnOnce(Arc<TestCluster>, Arc<Progress>, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (input, start) = sim_stream(20_000, seed);
    let expected = memory_store();
    record_full(&expected, &input).await;
    let store = cluster.store();
    let progress = Arc::new(Progress::default());
    let run = RunningWorker::spawn(
        store.clone(),
        file_source(&input),
        full_settings(),
        progress.clone(),
    );
    let finished = CancellationToken::new();
    let faults = tokio::spawn(fault(cluster.clone(), progress.clone(), finished.clone()));
    let started = Instant::now();
    while !run.is_finished() {
        let count = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the worker did not record the whole input within 300 s: {} read, {} recorded, {} failed, {} calls, {} retries",
            count(&progress.read),
            count(&progress.recorded),
            count(&progress.failed),
            count(&progress.calls),
            count(&progress.retries),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    finished.cancel();
    faults.await.expect("the fault task does not panic");
    let progress = run.stop().await.expect("the worker records everything");
    assert!(
        progress.retries.load(Ordering::Relaxed) > 0,
        "the fault was felt"
    );
    let probe = Probe::of(&expected, start).await;
    assert_same(
        "cluster against the in-memory store",
        &snapshot(&store, &probe).await,
        &snapshot(&expected, &probe).await,
    );
}

#[tokio::test]
async fn exactly_once_through_connection_kills() {
    // A cluster of its own: killing every connection of the shared one would fail the calls
    // of the other tests.
    let Some(cluster) = TestCluster::start() else {
        return;
    };
    exactly_once_through(
        Arc::new(cluster),
        11,
        |cluster, progress, finished| async move {
            // Every ~50 ms, once the worker has recorded 200 more messages since the last kill:
            // killed every 50 ms regardless, the store is mostly reconnecting (~100-200 ms
            // each time) and the run takes many minutes.
            let mut pace = tokio::time::interval(Duration::from_millis(50));
            let mut kills = 0;
            let mut last = 0;
            while !finished.is_cancelled() {
                tokio::select! {
                    _ = finished.cancelled() => {}
                    _ = pace.tick() => {
                        let recorded = progress.recorded.load(Ordering::Relaxed);
                        if recorded < last + 200 {
                            continue;
                        }
                        last = recorded;
                        let cluster = cluster.clone();
                        tokio::task::spawn_blocking(move || cluster.kill_clients())
                            .await
                            .unwrap();
                        kills += 1;
                    }
                }
            }
            assert!(kills >= 20, "only {kills} kills before the worker finished");
        },
    )
    .await;
}

#[tokio::test]
async fn exactly_once_through_a_master_restart() {
    let Some(cluster) = TestCluster::start() else {
        return;
    };
    exactly_once_through(
        Arc::new(cluster),
        13,
        |cluster, progress, _finished| async move {
            eventually(
                Duration::from_secs(120),
                "the worker to get a third of the way",
                || async { progress.recorded.load(Ordering::Relaxed) > 6000 },
            )
            .await;
            tokio::task::spawn_blocking(move || cluster.restart(1))
                .await
                .unwrap();
        },
    )
    .await;
}

#[tokio::test]
async fn the_binaries_run_in_cluster_mode() {
    // A cluster URL without hosts stops both binaries at start.
    for name in ["chatstats-worker", "chatstats-api"] {
        let out = bin(name)
            .env("REDIS_URL", "redis-cluster://")
            .env("CHAT_INTERFACE_URL", "http://127.0.0.1:9/")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: one line: {err}");
        assert!(err.contains("REDIS_URL"), "{name} names REDIS_URL: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }

    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = sim_stream(3000, 5);
    let file = dir.path().join("stream.txt");
    std::fs::write(&file, &input).unwrap();
    let ns = namespace();
    let log = |name: &str| -> (PathBuf, Stdio) {
        let path = dir.path().join(name);
        let stdio = std::fs::File::create(&path).unwrap().into();
        (path, stdio)
    };
    let (worker_log, worker_stderr) = log("worker.log");
    let mut worker = bin("chatstats-worker")
        .env("RESPONSE_STREAM_MODE", "text")
        .env("CHAT_INTERFACE_URL", &file)
        .env("REDIS_URL", cluster.url())
        .env("REDIS_NAMESPACE", &ns)
        .stdout(Stdio::null())
        .stderr(worker_stderr)
        .spawn()
        .unwrap();
    let status = wait_with_deadline(&mut worker, Duration::from_secs(120));
    assert!(
        status.success(),
        "the worker records the file and exits 0: {status}; its stderr: {}",
        std::fs::read_to_string(&worker_log).unwrap_or_default()
    );

    let expected = memory_store();
    record_full(&expected, &input).await;
    let top_room = expected.top(TopList::Rooms, 1).await.unwrap()[0].0.clone();
    let top_nick = expected.top(TopList::Nicks, 1).await.unwrap()[0].0.clone();
    let memory_api = TestApi::spawn(expected).await;

    let port = free_port();
    let (api_log, api_stderr) = log("api.log");
    let _api = Running(
        bin("chatstats-api")
            .env("NODE_HOST", "127.0.0.1")
            .env("NODE_PORT", port.to_string())
            .env("REDIS_URL", cluster.url())
            .env("REDIS_NAMESPACE", &ns)
            .env("STATS_CACHE_MS", "0")
            .stderr(api_stderr)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(20), "the API to be healthy", || async {
        get_json(&format!("{base}/healthcheck"))
            .await
            .is_some_and(|h| h["status"] == "ok")
    })
    .await;
    let room = url::form_urlencoded::byte_serialize(top_room.as_bytes()).collect::<String>();
    let nick = url::form_urlencoded::byte_serialize(top_nick.as_bytes()).collect::<String>();
    let paths = [
        "/stats/words?limit=1000".to_owned(),
        "/stats/nicks?limit=1000".to_owned(),
        "/stats/rooms?limit=1000".to_owned(),
        "/stats/emotes?limit=1000".to_owned(),
        format!("/stats/words?room={room}&limit=100"),
        format!("/stats/rooms/{room}"),
        format!("/stats/nicks/{nick}"),
    ];
    let client = reqwest::Client::new();
    for path in &paths {
        let (status, want) = memory_api.get(path).await;
        assert_eq!(status, 200, "{path} on the in-memory store: {want}");
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        let got_status = response.status().as_u16();
        let got: serde_json::Value = response.json().await.unwrap_or_default();
        assert_eq!(
            got_status,
            200,
            "{path}: {got}; the API's stderr: {}",
            std::fs::read_to_string(&api_log).unwrap_or_default()
        );
        assert_eq!(
            got, want,
            "{path}: the cluster's answer, then the expected one"
        );
    }
    let mut failed = get_json(&format!("{base}/stats/failedMessages?limit=1000"))
        .await
        .expect("failed messages");
    let (_, mut want_failed) = memory_api.get("/stats/failedMessages?limit=1000").await;
    for list in [&mut failed, &mut want_failed] {
        if let Some(items) = list.as_array_mut() {
            items.sort_by_key(|v| v.to_string());
        }
    }
    assert_eq!(failed, want_failed, "the failed messages");
}

#[tokio::test]
async fn a_process_with_another_number_of_shards_is_refused_not_misled() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let ns = namespace();
    let twelve = cluster.store_in(&ns);
    let tally = chatstats::message::Tally {
        words: vec![(Bytes::from_static(b"Kappa"), 3)],
        ..Default::default()
    };
    twelve.apply(&tally, None).await.unwrap();
    let six = RedisStore::connect(RedisSettings {
        namespace: ns.clone(),
        cluster_shards: 6,
        ..cluster.settings()
    })
    .unwrap();
    let err = six.top(TopList::Words, 10).await.unwrap_err().to_string();
    assert!(
        err.contains("REDIS_CLUSTER_SHARDS=12"),
        "the error says which number to set: {err}"
    );
    assert!(six.apply(&tally, None).await.is_err(), "nothing is written");
    assert_eq!(
        twelve.top(TopList::Words, 10).await.unwrap(),
        vec![("Kappa".to_owned(), 3)]
    );
}

#[tokio::test]
async fn a_cluster_refusing_the_password_is_reported_as_such() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    // A user of its own on every master (ACLs are per server), so that the other tests' default
    // user keeps connecting without a password.
    for node in 0..3 {
        let answer = cluster.cli(
            node,
            &[
                "ACL",
                "SETUSER",
                "guarded",
                "on",
                ">the-pass",
                "~*",
                "+@all",
            ],
        );
        assert!(
            answer.is_some_and(|a| a.contains("OK")),
            "ACL SETUSER on master {node}"
        );
    }
    let url = cluster.fred_url().replacen(
        "redis-cluster://",
        "redis-cluster://guarded:not-the-pass@",
        1,
    );
    let store = RedisStore::connect(settings_at(&url)).unwrap();
    let api = TestApi::spawn(store).await;
    eventually(
        Duration::from_secs(10),
        "a 503 naming the refused password",
        || async {
            let (status, body) = api.get("/healthcheck").await;
            let reason = body["redisStatus"].as_str().unwrap_or_default().to_owned();
            status == 503 && reason.contains("WRONGPASS")
        },
    )
    .await;
    let (_, body) = api.get("/healthcheck").await;
    assert!(!body.to_string().contains("not-the-pass"), "{body}");
}

/// `CLUSTER NODES` of master `port`, as redis-cli prints it to a pipe (one line per node).
fn cluster_nodes(port: u16) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "CLUSTER", "NODES"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A slot migrating between masters (resharding, adding a master) answers `ASK` for keys the
/// source no longer has: with one attempt per command, fred ends its connection task on that,
/// and every later call timed out for good. The store now starts it again: once the slot has
/// moved, calls succeed without restarting the process.
#[tokio::test]
async fn calls_succeed_again_after_a_slot_migrates_between_masters() {
    // A cluster of its own: a slot in migration would disturb the other tests.
    let Some(cluster) = TestCluster::start() else {
        return;
    };
    let store = cluster.store();
    store
        .top(TopList::Words, 10)
        .await
        .expect("the cluster answers");
    let ports = cluster.ports();
    let slot: u16 = cluster
        .cli(0, &["CLUSTER", "KEYSLOT", "{0.13}"])
        .unwrap()
        .trim()
        .trim_start_matches("(integer) ")
        .parse()
        .unwrap();
    // The master serving the slot, and another.
    let nodes = cluster_nodes(ports[0]);
    let owns = |line: &str| {
        line.split_whitespace().skip(8).any(|range| {
            let (from, to) = range.split_once('-').unwrap_or((range, range));
            from.parse::<u16>().is_ok_and(|f| f <= slot)
                && to.parse::<u16>().is_ok_and(|t| slot <= t)
        })
    };
    let id_at = |line: &str| line.split_whitespace().next().unwrap().to_owned();
    let port_at = |line: &str| -> u16 {
        let address = line.split_whitespace().nth(1).unwrap();
        address.split(['@', ':']).nth(1).unwrap().parse().unwrap()
    };
    let source = nodes.lines().find(|l| owns(l)).expect("the slot's master");
    let target = nodes.lines().find(|l| !l.is_empty() && !owns(l)).unwrap();
    let (source_id, source_port) = (id_at(source), port_at(source));
    let (target_id, target_port) = (id_at(target), port_at(target));
    let on = |port: u16, args: &[&str]| {
        let status = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{args:?} on {port}");
    };
    let slot_text = slot.to_string();
    on(
        target_port,
        &["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &source_id],
    );
    on(
        source_port,
        &["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &target_id],
    );
    // The namespace is new: the source has none of its keys in the slot, so it answers ASK.
    let _ = store.top(TopList::Words, 10).await;
    for port in &ports {
        on(
            *port,
            &["CLUSTER", "SETSLOT", &slot_text, "NODE", &target_id],
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.top(TopList::Words, 10).await {
            Ok(_) => break,
            Err(err) => assert!(
                Instant::now() < deadline,
                "calls still fail after the slot moved: {err}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
