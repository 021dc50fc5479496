//! Test helpers: a real `redis-server` per test, fake upstreams, the API on a real socket.

/// Runs the same test bodies against Redis, Redis Cluster (a local 3-master cluster shared by
/// the tests, each in a namespace of its own) and the in-memory store (the store contract):
/// each named body is an `async fn(new: impl Fn() -> S)` given a factory of empty stores.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_redis {
            $(
                #[tokio::test]
                async fn $name() {
                    let redis = crate::helpers::TestRedis::start();
                    super::$name(|| redis.store()).await;
                }
            )*
        }
        mod on_cluster {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(cluster) = crate::cluster::TestCluster::shared() else {
                        return;
                    };
                    super::$name(|| cluster.store()).await;
                }
            )*
        }
        mod in_memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::helpers::memory_store).await;
                }
            )*
        }
    };
}

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use chatstats::api::{self, ApiSettings, AppState};
use chatstats::source::file::FileSource;
use chatstats::source::http::{HttpSettings, HttpSource};
use chatstats::store::Store;
use chatstats::store::memory::MemoryStore;
use chatstats::store::redis::{RedisSettings, RedisStore};
use chatstats::telemetry::SecretUrl;
use chatstats::worker::{self, Progress, WorkerSettings};
use tokio_util::sync::CancellationToken;

/// A `redis-server` of this test's own, on a free port, stopped (and its directory removed)
/// on drop.
pub struct TestRedis {
    child: std::sync::Mutex<Child>,
    pub port: u16,
    extra: Vec<String>,
    dir: tempfile::TempDir,
}

fn spawn_server(port: u16, dir: &Path, extra: &[String]) -> Child {
    let spawned = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => child,
        Err(err) => panic!(
            "cannot start redis-server ({err}); install it (apt-get install redis-server) and put it on PATH"
        ),
    }
}

impl TestRedis {
    /// Starts a server without persistence and waits until it answers PING.
    pub fn start() -> TestRedis {
        TestRedis::start_with(&["--appendonly", "no"])
    }

    /// Starts a server with extra arguments (e.g. `--appendonly yes`).
    pub fn start_with(extra: &[&str]) -> TestRedis {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temporary directory");
            let port = free_port();
            let child = spawn_server(port, dir.path(), &extra);
            let redis = TestRedis {
                child: child.into(),
                port,
                extra: extra.clone(),
                dir,
            };
            if redis.wait_ready(Duration::from_secs(10)) {
                return redis;
            }
        }
        panic!("redis-server did not start on a free port after 5 attempts");
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and directory.
    pub fn restart(&self) {
        self.kill();
        self.respawn();
    }

    /// Kills the server (SIGKILL); [`TestRedis::respawn`] starts it again.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again on the same port and directory, and waits until it answers.
    pub fn respawn(&self) {
        *self.child.lock().unwrap() = spawn_server(self.port, self.dir.path(), &self.extra);
        assert!(
            self.wait_ready(Duration::from_secs(10)),
            "redis-server did not come back"
        );
    }

    fn wait_ready(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.lock().unwrap().try_wait() {
                return false;
            }
            // A server with a password answers NOAUTH: it is up.
            if self
                .cli(&["PING"])
                .is_some_and(|r| r.trim() == "PONG" || r.contains("NOAUTH"))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Runs a command with `redis-cli` and returns its output.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--no-raw"])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A Redis store on this server under a namespace of its own.
    pub fn store(&self) -> RedisStore {
        self.store_in(&namespace())
    }

    /// A Redis store on this server under `ns`.
    pub fn store_in(&self, ns: &str) -> RedisStore {
        RedisStore::connect(RedisSettings {
            namespace: ns.to_owned(),
            ..redis_settings(self)
        })
        .expect("redis store")
    }

    /// The process id of the server (for SIGSTOP/SIGCONT).
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Sends a signal (`STOP`, `CONT`, …) to the server.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Settings of a store on `redis` under a namespace of its own.
pub fn redis_settings(redis: &TestRedis) -> RedisSettings {
    settings_at(&redis.url())
}

/// Settings of a store at `url` (standalone, or fred's `redis-cluster://` form) under a
/// namespace of its own, with the binaries' defaults.
pub fn settings_at(url: &str) -> RedisSettings {
    RedisSettings {
        url: SecretUrl::parse(url).expect("url"),
        namespace: namespace(),
        timeout: Duration::from_millis(1000),
        failed_cap: 1000,
        second_ttl: 300,
        retention: Default::default(),
        cluster_shards: chatstats::store::redis::DEFAULT_CLUSTER_SHARDS,
    }
}

/// A Redis store pointed at a port where nothing listens, answering within `timeout`.
pub fn unreachable_store(timeout: Duration) -> RedisStore {
    RedisStore::connect(RedisSettings {
        timeout,
        ..settings_at(&format!("redis://127.0.0.1:{}", free_port()))
    })
    .expect("redis store")
}

/// Waits until `list` of `store` has `n` members.
pub async fn until_members<S: Store>(store: &S, list: chatstats::message::TopList, n: usize) {
    eventually(
        Duration::from_secs(15),
        "the messages to be recorded",
        || async { store.top(list, 1000).await.is_ok_and(|w| w.len() == n) },
    )
    .await;
}

/// A namespace no other test uses.
pub fn namespace() -> String {
    format!("test:{:016x}:", rand::random::<u64>())
}

/// A fresh in-memory store.
pub fn memory_store() -> MemoryStore {
    MemoryStore::new(1000, 300)
}

/// Worker settings for tests: no progress lines, fast retries.
pub fn worker_settings() -> WorkerSettings {
    WorkerSettings {
        progress_interval: Duration::ZERO,
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(3),
        ..WorkerSettings::default()
    }
}

/// The repo's copy of the upstream fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upstream")
        .join(name)
}

/// The repo's copy of the part-2 fixtures.
pub fn part2(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/part2")
        .join(name)
}

/// Records `bytes` (as a text-mode file would be) into `store`, to the end.
pub async fn record_bytes<S: Store>(store: &S, bytes: &[u8]) -> Arc<Progress> {
    let reader = Box::new(std::io::Cursor::new(bytes.to_vec()));
    let source = FileSource::new("test input", reader, 1 << 20);
    worker::run(
        store.clone(),
        source,
        worker_settings(),
        Arc::default(),
        CancellationToken::new(),
    )
    .await
    .expect("worker run")
}

/// API settings for tests.
pub fn api_settings() -> ApiSettings {
    ApiSettings {
        cors_origin: "*".to_owned(),
        store_timeout: Duration::from_millis(1000),
        cache: Duration::ZERO,
        idle_timeout: Duration::from_secs(10),
        max_connections: 1000,
        shutdown_timeout: Duration::from_secs(5),
        retention: Default::default(),
        ingest_tokens: Default::default(),
        ingest_rate: None,
        read_rate: None,
        trusted_proxies: Default::default(),
    }
}

/// The API over `store` on a real socket; stopped when the returned token is cancelled.
pub struct TestApi {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub stop: CancellationToken,
}

impl TestApi {
    pub async fn spawn<S: Store>(store: S) -> TestApi {
        TestApi::spawn_with(store, |_| {}).await
    }

    /// The API with settings changed by `adjust`.
    pub async fn spawn_with<S: Store>(store: S, adjust: impl FnOnce(&mut ApiSettings)) -> TestApi {
        let mut settings = api_settings();
        adjust(&mut settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        tokio::spawn(api::serve(
            listener,
            AppState::new(store, settings),
            stop.clone(),
        ));
        TestApi {
            address,
            client: reqwest::Client::new(),
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// GET `path`: status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Polls `check` until it returns true or `limit` passes; panics with `what` on timeout.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How a fake upstream behaves on each connection (counted from 0).
#[derive(Clone)]
pub enum Behaviour {
    /// Answer this status with an empty body.
    Status(u16),
    /// Send these bytes, then close the connection.
    SendThenClose(Bytes),
    /// Send these bytes, then keep the connection open without sending anything.
    SendThenStall(Bytes),
    /// Answer 200 with these headers and this body, then close.
    Respond(Vec<(&'static str, &'static str)>, Bytes),
    /// Send these bytes again and again, as fast as the client reads, forever.
    Endless(Bytes),
}

/// A local upstream that misbehaves on purpose: connection `i` gets `script[i]` (the last one
/// repeats).
pub struct FakeUpstream {
    pub address: SocketAddr,
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    stop: CancellationToken,
}

impl FakeUpstream {
    pub async fn start(script: Vec<Behaviour>) -> FakeUpstream {
        use std::sync::atomic::Ordering;
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = connections.clone();
        let script = Arc::new(script);
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let behaviour = script[n.min(script.len() - 1)].clone();
                async move {
                    match behaviour {
                        Behaviour::Status(code) => Response::builder()
                            .status(code)
                            .body(Body::empty())
                            .unwrap_or_default(),
                        Behaviour::SendThenClose(bytes) => Response::new(Body::from(bytes)),
                        Behaviour::Respond(headers, bytes) => {
                            let mut response = Response::builder();
                            for (name, value) in headers {
                                response = response.header(name, value);
                            }
                            response.body(Body::from(bytes)).unwrap_or_default()
                        }
                        Behaviour::Endless(bytes) => {
                            let stream = futures::stream::repeat_with(move || {
                                Ok::<_, std::io::Error>(bytes.clone())
                            });
                            Response::new(Body::from_stream(stream))
                        }
                        Behaviour::SendThenStall(bytes) => {
                            let stream =
                                futures::stream::once(
                                    async move { Ok::<_, std::io::Error>(bytes) },
                                )
                                .chain(futures::stream::pending());
                            Response::new(Body::from_stream(stream))
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let done = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(done.cancelled_owned())
                .await;
        });
        FakeUpstream {
            address,
            connections,
            stop,
        }
    }

    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}/", self.address)).expect("url")
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

use futures::StreamExt as _;

/// HTTP source settings with test-speed reconnects (10–100 ms) and the given read timeout.
pub fn http_settings(url: url::Url, read_timeout: Duration) -> HttpSettings {
    HttpSettings {
        url: SecretUrl::new(url),
        read_timeout,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        line_cap: 1 << 20,
    }
}

/// An HTTP source with test-speed reconnects (10–100 ms) and the given read timeout.
pub fn http_source(url: url::Url, read_timeout: Duration) -> HttpSource {
    HttpSource::new(http_settings(url, read_timeout))
}

/// A worker running in a task of its own.
pub struct RunningWorker {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<Arc<Progress>, worker::WorkerError>>,
}

impl RunningWorker {
    /// Starts `worker::run` with test settings, reporting into `progress`.
    pub fn spawn<S: Store, R: chatstats::source::Source>(
        store: S,
        source: R,
        settings: WorkerSettings,
        progress: Arc<Progress>,
    ) -> RunningWorker {
        let stop = CancellationToken::new();
        let task = tokio::spawn(worker::run(store, source, settings, progress, stop.clone()));
        RunningWorker { stop, task }
    }

    /// True once the worker has returned.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Signals shutdown and returns the worker's result; panics unless it comes within 10 s.
    pub async fn stop(self) -> Result<Arc<Progress>, worker::WorkerError> {
        self.stop_within(Duration::from_secs(10)).await
    }

    /// Signals shutdown and returns the worker's result; panics unless it comes within `limit`.
    pub async fn stop_within(self, limit: Duration) -> Result<Arc<Progress>, worker::WorkerError> {
        self.stop.cancel();
        tokio::time::timeout(limit, self.task)
            .await
            .unwrap_or_else(|_| panic!("the worker stops within {limit:?} of shutdown"))
            .expect("the worker task does not panic")
    }
}

/// A command for one of the binaries (or any program), run outside the repository so that no
/// `.env` is picked up, with no Redis or upstream from the caller's environment.
pub fn bin(name: &str) -> Command {
    let path = match name {
        "chatstats" => env!("CARGO_BIN_EXE_chatstats"),
        "chatstats-worker" => env!("CARGO_BIN_EXE_chatstats-worker"),
        "chatstats-api" => env!("CARGO_BIN_EXE_chatstats-api"),
        "chatstats-sim" => env!("CARGO_BIN_EXE_chatstats-sim"),
        "chatstats-migrate" => env!("CARGO_BIN_EXE_chatstats-migrate"),
        other => other,
    };
    let mut command = Command::new(path);
    command
        .current_dir(std::env::temp_dir())
        .env("RUST_LOG", "warn")
        .env_remove("REDIS_URL")
        .env_remove("REDIS_HOST")
        .env_remove("REDIS_PORT")
        .env_remove("CHAT_INTERFACE_URL")
        .env_remove("LOG_FORMAT");
    command
}

/// Waits for `child` to exit; kills it and panics after `limit`.
pub fn wait_with_deadline(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a signal (`TERM`, `INT`…) to a child process.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on loopback")
}

/// A child process killed on drop, so a failed assertion leaves no process behind.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `url` as JSON; `None` on any failure.
pub async fn get_json(url: &str) -> Option<serde_json::Value> {
    reqwest::get(url).await.ok()?.json().await.ok()
}
