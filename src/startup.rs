//! What each binary runs: its command line, one function that runs it until stopped, and the
//! [`main`] they share.
//!
//! The binaries in `src/bin/` are one line each: `startup::main(startup::run_worker)`. Tests
//! call the `run_*` functions directly, so they drive exactly what production runs.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::api::{self, AppState};
use crate::config::{
    self, ApiArgs, ConfigError, DataArgs, ProcessArgs, RedisArgs, SourceArgs, Upstream, WorkerArgs,
};
use crate::inbox::{self, InboxSettings};
use crate::sim::SimSource;
use crate::source::file::FileSource;
use crate::source::http::HttpSource;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::{Store, StoreError};
use crate::worker::{self, WorkerError, WorkerSettings};
use crate::{shutdown, telemetry};

/// Why a process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Invalid configuration (reported as one line, exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be set up.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The worker failed.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// A server (the API, the simulated stream, a worker's metrics) could not listen or serve.
    #[error("cannot serve {what} on {address}: {source}")]
    Listen {
        /// What was to be served there.
        what: &'static str,
        /// The address.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// An output file could not be written.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A task stopped unexpectedly (it panicked).
    #[error("the {task} stopped unexpectedly: {cause}")]
    Task {
        /// Which task.
        task: &'static str,
        /// The panic or cancellation.
        cause: String,
    },
}

/// A service's command line.
pub trait Service: Parser {
    /// The binary's name, for logs.
    const NAME: &'static str;
    /// Its logging and shutdown settings.
    fn process(&self) -> &ProcessArgs;
}

/// The `main` of every service binary: loads `.env` and the settings (a bad value: one line,
/// exit 2), starts telemetry, runs `run` until it ends or a signal stops it, and gives the exit
/// code: 0, 1 for a failure, 2 for invalid configuration.
pub fn main<C, F, Fut>(run: F) -> ExitCode
where
    C: Service,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), AppError>>,
{
    let cli = match config::load::<C>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{}: cannot start the async runtime: {err}", C::NAME);
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        if let Err(err) = telemetry::init(cli.process().log_format) {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
        telemetry::metrics::install();
        match run(cli, shutdown::on_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(AppError::Config(err)) => {
                eprintln!("{err}");
                ExitCode::from(2)
            }
            Err(err) => {
                error!(error = %err, "{} stopped", C::NAME);
                ExitCode::FAILURE
            }
        }
    });
    // A blocking read of stdin cannot be interrupted; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(500));
    code
}

const AFTER_HELP: &str =
    "Every option can be set by the environment variable named in capitals, also from a .env file.";

/// `chatstats-worker`: reads the upstream and records every message in Redis.
#[derive(Clone, Parser)]
#[command(name = "chatstats-worker", version, about = "Reads the upstream chat stream and records every message in Redis.", long_about = None, after_help = AFTER_HELP)]
pub struct WorkerCli {
    #[command(flatten)]
    pub(crate) source: SourceArgs,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    #[command(flatten)]
    pub(crate) worker: WorkerArgs,
    #[command(flatten)]
    pub(crate) process: ProcessArgs,
}

/// `chatstats-api`: serves the HTTP API from Redis.
#[derive(Clone, Parser)]
#[command(name = "chatstats-api", version, about = "Serves the chatstats HTTP API (statistics, history, live feed, dashboard) from Redis.", long_about = None, after_help = AFTER_HELP)]
pub struct ApiCli {
    #[command(flatten)]
    pub(crate) api: ApiArgs,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    #[command(flatten)]
    pub(crate) process: ProcessArgs,
}

/// `chatstats-migrate`: moves the lasting statistics of a standalone Redis (all-time lists of
/// everything, rooms and nicks; first and last message times; failed messages) into a Redis
/// Cluster, or any other Redis, under the same namespace. Stop the workers first.
#[derive(Clone, Parser)]
#[command(name = "chatstats-migrate", version, about = "Moves the lasting statistics of a standalone Redis into a Redis Cluster (or another Redis). Stop the workers first.", long_about = None, after_help = AFTER_HELP)]
pub struct MigrateCli {
    /// The standalone Redis to read, `redis://[user:password@]host:port[/db]`.
    #[arg(long = "from", env = "MIGRATE_FROM", value_name = "MIGRATE_FROM", hide_env_values = true, value_parser = config::parse_redis_url)]
    pub(crate) from: telemetry::SecretUrl,
    /// The Redis to write, usually `redis-cluster://host:port[,host:port…]`; its namespace must
    /// hold no statistics yet.
    #[arg(long = "to", env = "MIGRATE_TO", value_name = "MIGRATE_TO", hide_env_values = true, value_parser = config::parse_redis_url)]
    pub(crate) to: telemetry::SecretUrl,
    /// On Redis Cluster, the number of shards the keys are spread over (as the services' own).
    #[arg(long, env, default_value_t = crate::store::redis::DEFAULT_CLUSTER_SHARDS as u64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub(crate) redis_cluster_shards: u64,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[command(flatten)]
    pub(crate) process: ProcessArgs,
}

impl Service for MigrateCli {
    const NAME: &'static str = "chatstats-migrate";
    fn process(&self) -> &ProcessArgs {
        &self.process
    }
}

/// Runs `chatstats-migrate` (see [`crate::migrate`]).
pub async fn run_migrate(cli: MigrateCli, shutdown: CancellationToken) -> Result<(), AppError> {
    let shards = cli.redis_cluster_shards;
    let from = RedisStore::connect(cli.data.settings_at(cli.from.clone(), shards)?)?;
    let to = RedisStore::connect(cli.data.settings_at(cli.to.clone(), shards)?)?;
    info!(from = %from.describe(), to = %to.describe(), "migrating");
    let moved = tokio::select! {
        moved = crate::migrate::migrate(&from, &to) => moved?,
        _ = shutdown.cancelled() => {
            return Err(StoreError::Unsupported("interrupted: the target may hold part of the data; delete its namespace before running again".to_owned()).into());
        }
    };
    info!(
        members = moved.members,
        seen = moved.seen,
        failed = moved.failed,
        "migrated"
    );
    Ok(())
}

/// The simulated stream of `chatstats` when no upstream is configured.
#[derive(Clone, Args)]
pub(crate) struct SimArgs {
    /// Simulated events per second when CHAT_INTERFACE_URL is not set (0: as fast as read).
    #[arg(long, env, default_value_t = 200.0, value_parser = config::parse_rate, allow_hyphen_values = true)]
    pub(crate) sim_rate: f64,
    /// Seed of the simulated stream.
    #[arg(long, env, default_value_t = 1)]
    pub(crate) sim_seed: u64,
}

/// `chatstats`: worker and API in one process; in-memory store unless Redis is configured,
/// simulated stream without CHAT_INTERFACE_URL.
#[derive(Clone, Parser)]
#[command(name = "chatstats", version, about, long_about = None,
    after_help = "Every option can be set by the environment variable named in capitals, also from a .env file.\n\
                  Without REDIS_URL, REDIS_CLUSTER_NODES, REDIS_HOST or REDIS_PORT the statistics are kept in memory; without CHAT_INTERFACE_URL a simulated stream is used.")]
pub struct ChatstatsCli {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    #[command(flatten)]
    pub(crate) source: SourceArgs,
    #[command(flatten)]
    pub(crate) sim: SimArgs,
    #[command(flatten)]
    pub(crate) api: ApiArgs,
    #[command(flatten)]
    pub(crate) worker: WorkerArgs,
    #[command(flatten)]
    pub(crate) process: ProcessArgs,
}

/// `chatstats-sim`: serves a simulated Twitch-like chat stream in the upstream's format
/// (`GET /`, an endless `text/event-stream` body), or writes a fixed number of its events to a
/// file.
#[derive(Clone, Parser)]
#[command(name = "chatstats-sim", version, about = "Serves a simulated Twitch-like chat stream in the upstream's format, or writes a number of its events to a file.", long_about = None,
    after_help = "Every option can be set by the environment variable named in capitals, also from a .env file.\n\
                  With --count, the same seed and start always give the same bytes. Served, every HTTP client gets the \
                  same events from the start of the stream, each sent at the current time (tmi-sent-ts follows the clock).")]
pub struct SimCli {
    /// Address to listen on. The default accepts local clients only; a container needs 0.0.0.0
    /// (docker-compose.yml passes it).
    #[arg(long = "host", env = "SIM_HOST", default_value = "127.0.0.1")]
    pub(crate) sim_host: String,
    /// Port to listen on.
    #[arg(long = "port", env = "SIM_PORT", default_value_t = 7000)]
    pub(crate) sim_port: u16,
    /// Events per second per connection; 0 streams as fast as the client reads.
    #[arg(long = "rate", env = "SIM_RATE", default_value_t = 200.0, value_parser = config::parse_rate, allow_hyphen_values = true)]
    pub(crate) sim_rate: f64,
    /// Seed of the stream.
    #[arg(long = "seed", env = "SIM_SEED", default_value_t = 1)]
    pub(crate) sim_seed: u64,
    /// Write exactly this many framed events to --out and exit, instead of serving.
    #[arg(long = "count", env = "SIM_COUNT")]
    pub(crate) sim_count: Option<u64>,
    /// File written with --count (`-` for stdout).
    #[arg(long = "out", env = "SIM_OUT", default_value = "-")]
    pub(crate) sim_out: String,
    /// With --count: the first event's tmi-sent-ts, in Unix milliseconds (each next one comes
    /// 1 to 9 ms later). The default is 2022-01-03; a time in the last hours puts the messages
    /// in minutes the service still keeps. A served stream follows the clock instead.
    #[arg(long = "start-ms", env = "SIM_START_MS", default_value_t = crate::sim::START_TS_MS,
          value_parser = clap::value_parser!(u64).range(0..=crate::sim::LATEST_START_MS), allow_hyphen_values = true)]
    pub(crate) sim_start_ms: u64,
    #[command(flatten)]
    pub(crate) process: ProcessArgs,
}

impl Service for SimCli {
    const NAME: &'static str = "chatstats-sim";
    fn process(&self) -> &ProcessArgs {
        &self.process
    }
}

/// Runs `chatstats-sim`: writes `--count` events and returns, or serves until `shutdown`.
pub async fn run_sim(cli: SimCli, shutdown: CancellationToken) -> Result<(), AppError> {
    if let Some(count) = cli.sim_count {
        let (out, seed, start_ms) = (cli.sim_out.clone(), cli.sim_seed, cli.sim_start_ms);
        let written = tokio::task::spawn_blocking(move || {
            crate::sim::write_file(&out, count, seed, start_ms)
        })
        .await;
        return match joined("writer", written)? {
            Ok(()) => {
                info!(count, seed, start_ms, out = %cli.sim_out, "events written");
                Ok(())
            }
            // A reader that stops early (`| head`) is not an error.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe && cli.sim_out == "-" => {
                Ok(())
            }
            Err(source) => Err(AppError::Output {
                path: cli.sim_out,
                source,
            }),
        };
    }
    if cli.sim_start_ms != crate::sim::START_TS_MS {
        tracing::warn!(
            start_ms = cli.sim_start_ms,
            "SIM_START_MS (--start-ms) applies to --count only; the served stream follows the clock"
        );
    }
    let host = cli.sim_host.trim();
    let address = format!("{host}:{}", cli.sim_port);
    config::resolve("SIM_HOST", host, cli.sim_port).await?;
    let listener = TcpListener::bind((host, cli.sim_port))
        .await
        .map_err(|source| AppError::Listen {
            what: "the simulated stream",
            address: address.clone(),
            source,
        })?;
    let settings = crate::sim::SimSettings {
        rate: cli.sim_rate,
        seed: cli.sim_seed,
    };
    crate::sim::serve(listener, settings, shutdown)
        .await
        .map_err(|source| AppError::Listen {
            what: "the simulated stream",
            address,
            source,
        })
}

impl Service for WorkerCli {
    const NAME: &'static str = "chatstats-worker";
    fn process(&self) -> &ProcessArgs {
        &self.process
    }
}

impl Service for ApiCli {
    const NAME: &'static str = "chatstats-api";
    fn process(&self) -> &ProcessArgs {
        &self.process
    }
}

impl Service for ChatstatsCli {
    const NAME: &'static str = "chatstats";
    fn process(&self) -> &ProcessArgs {
        &self.process
    }
}

async fn bind(api: &ApiArgs) -> Result<TcpListener, AppError> {
    let addresses = api.addresses().await?;
    TcpListener::bind(&addresses[..])
        .await
        .map_err(|source| AppError::Listen {
            what: "the API",
            address: format!("{}:{}", api.node_host, api.node_port),
            source,
        })
}

/// `chatstats` (one process) is not given the inbox: it is a fleet's, `chatstats-worker`'s.
fn inbox_refused() -> AppError {
    ConfigError::invalid(
        "CHAT_INTERFACE_URL",
        "inbox",
        "an HTTP upstream or a file: the inbox is consumed by chatstats-worker",
    )
    .into()
}

/// Runs the worker on `store` over `upstream` (the simulated stream when `None`).
async fn drive<S: Store>(
    store: S,
    upstream: Option<Upstream>,
    sim: &SimArgs,
    settings: WorkerSettings,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let progress = Arc::default();
    match upstream {
        Some(Upstream::Http(http)) => {
            worker::run(store, HttpSource::new(http), settings, progress, shutdown).await?;
        }
        Some(Upstream::Inbox { .. }) => {
            // Refused by `run_chatstats` at start already.
            return Err(inbox_refused());
        }
        Some(Upstream::Text { path, line_cap }) => {
            let source = FileSource::open(&path, line_cap)
                .await
                .map_err(WorkerError::from)?;
            worker::run(store, source, settings, progress, shutdown).await?;
        }
        None => {
            let source = SimSource::new(sim.sim_seed, sim.sim_rate);
            worker::run(store, source, settings, progress, shutdown).await?;
        }
    }
    Ok(())
}

/// Runs `chatstats-worker` until the text-mode input is recorded or `shutdown` is cancelled.
pub async fn run_worker(cli: WorkerCli, shutdown: CancellationToken) -> Result<(), AppError> {
    let upstream = cli.source.upstream()?.ok_or_else(|| {
        ConfigError::missing(
            "CHAT_INTERFACE_URL",
            "the upstream URL (or a file path, `-` for stdin, with RESPONSE_STREAM_MODE=text)",
        )
    })?;
    if let Some(address) = &cli.worker.metrics_addr {
        serve_metrics(address, shutdown.clone()).await?;
    }
    let store = RedisStore::connect(cli.redis.settings()?)?;
    let settings = cli.worker.settings(&cli.process, &cli.redis.data)?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        upstream = %upstream,
        store = %store.describe(),
        statistics = ?cli.worker.statistics,
        history_retention = ?cli.redis.data.history_retention,
        in_flight = settings.window,
        flush_interval_ms = cli.worker.flush_interval_ms,
        stats_flush_ms = cli.worker.stats_flush_ms,
        forward_to_inbox = cli.worker.forward_to_inbox,
        metrics_addr = cli.worker.metrics_addr.as_deref().unwrap_or("-"),
        max_line_bytes = cli.source.max_line_bytes,
        read_timeout_ms = cli.source.read_timeout_ms,
        shutdown_timeout_ms = cli.process.shutdown_timeout_ms,
        "chatstats-worker starting"
    );
    let sim = SimArgs {
        sim_rate: 0.0,
        sim_seed: 0,
    };
    if cli.worker.forward_to_inbox {
        let forwarded = match upstream {
            Upstream::Http(http) => {
                inbox::forward(store, HttpSource::new(http), &settings, shutdown).await?
            }
            Upstream::Text { path, line_cap } => {
                let source = FileSource::open(&path, line_cap)
                    .await
                    .map_err(WorkerError::from)?;
                inbox::forward(store, source, &settings, shutdown).await?
            }
            Upstream::Inbox { .. } => {
                return Err(ConfigError::invalid(
                    "CHAT_INTERFACE_URL",
                    "inbox",
                    "an HTTP upstream or a file with FORWARD_TO_INBOX=true (the inbox cannot feed itself)",
                )
                .into());
            }
        };
        info!(forwarded, "chatstats-worker stopped");
        return Ok(());
    }
    if let Upstream::Inbox { line_cap } = upstream {
        let inbox = InboxSettings {
            consumer: consumer_name(),
            batch: cli.worker.inbox_batch as usize,
            claim_idle: Duration::from_millis(cli.worker.inbox_claim_idle_ms),
            // A blocked read must end before the store's timeout would fail it.
            block: Duration::from_millis(cli.redis.data.redis_timeout_ms / 2)
                .max(Duration::from_millis(1)),
            line_cap,
        };
        inbox::consume(store, inbox, settings, Arc::default(), shutdown).await?;
        return Ok(());
    }
    drive(store, Some(upstream), &sim, settings, shutdown).await
}

/// A consumer name unique to this process: host, process id and a random part.
fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Serves `GET /metrics` of a worker on `address` until `shutdown` (METRICS_ADDR).
async fn serve_metrics(address: &str, shutdown: CancellationToken) -> Result<(), AppError> {
    if tokio::net::lookup_host(address).await.is_err() {
        return Err(
            ConfigError::invalid("METRICS_ADDR", address, "host:port, e.g. 0.0.0.0:9100").into(),
        );
    }
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| AppError::Listen {
            what: "the worker's metrics",
            address: address.to_owned(),
            source,
        })?;
    info!(address = %bound_address(&listener), "worker metrics at /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async { telemetry::metrics::render() }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
    Ok(())
}

/// Runs `chatstats-api` until `shutdown` is cancelled.
pub async fn run_api(cli: ApiCli, shutdown: CancellationToken) -> Result<(), AppError> {
    let store = RedisStore::connect(cli.redis.settings()?)?;
    let listener = bind(&cli.api).await?;
    let settings = cli.api.settings(&cli.redis.data, &cli.process);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        store = %store.describe(),
        listen = %bound_address(&listener),
        cors = %cli.api.cors_origin,
        stats_cache_ms = cli.api.stats_cache_ms,
        http_idle_timeout_ms = cli.api.http_idle_timeout_ms,
        max_connections = cli.api.max_connections,
        history_retention = ?cli.redis.data.history_retention,
        ingest_tokens = settings.ingest_tokens.len(),
        ingest_rate_limit = %display_limit(settings.ingest_rate.as_ref()),
        read_rate_limit = %display_limit(settings.read_rate.as_ref()),
        trusted_proxies = ?settings.trusted_proxies,
        "chatstats-api starting"
    );
    api::serve(listener, AppState::new(store, settings), shutdown)
        .await
        .map_err(|source| AppError::Listen {
            what: "the API",
            address: format!("{}:{}", cli.api.node_host, cli.api.node_port),
            source,
        })
}

/// Runs `chatstats` (worker and API in one process) until `shutdown` is cancelled. In text mode
/// the API keeps serving after the file is recorded, so the results can be queried.
pub async fn run_chatstats(cli: ChatstatsCli, shutdown: CancellationToken) -> Result<(), AppError> {
    let upstream = cli.source.upstream()?;
    // The inbox is a fleet's: consumed and fed by `chatstats-worker`, refused here before
    // anything starts.
    if let Some(Upstream::Inbox { .. }) = upstream {
        return Err(inbox_refused());
    }
    if cli.worker.forward_to_inbox {
        return Err(ConfigError::invalid(
            "FORWARD_TO_INBOX",
            "true",
            "false: chatstats-worker forwards to the inbox, chatstats applies what it reads",
        )
        .into());
    }
    let listener = bind(&cli.api).await?;
    if cli.redis.is_set() {
        let store = RedisStore::connect(cli.redis.settings()?)?;
        run_both(
            store,
            cli.redis.chosen_by(),
            upstream,
            &cli,
            listener,
            shutdown,
        )
        .await
    } else {
        let store = MemoryStore::new(
            cli.redis.data.failed_messages_max as usize,
            config::SECOND_TTL,
        )
        .with_retention(cli.redis.data.retention());
        let why = "none of REDIS_URL, REDIS_CLUSTER_NODES, REDIS_HOST, REDIS_PORT is set";
        run_both(store, why, upstream, &cli, listener, shutdown).await
    }
}

async fn run_both<S: Store>(
    store: S,
    store_chosen_because: &str,
    upstream: Option<Upstream>,
    cli: &ChatstatsCli,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    // Read first (EMOTE_NAMES_FILE): a bad setting stops the process before it says it starts.
    let settings = cli.worker.settings(&cli.process, &cli.redis.data)?;
    let source = match &upstream {
        Some(upstream) => upstream.to_string(),
        None => format!(
            "the built-in simulated stream ({} events/s, seed {})",
            cli.sim.sim_rate, cli.sim.sim_seed
        ),
    };
    let address = display_address(&listener);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        store = %store.describe(),
        store_chosen_because,
        source = %source,
        api = %format!("http://{address}/"),
        swagger_ui = %format!("http://{address}/documentation"),
        "chatstats starting"
    );
    let text_mode = matches!(upstream, Some(Upstream::Text { .. }));
    let api_settings = cli.api.settings(&cli.redis.data, &cli.process);
    let mut api = tokio::spawn(api::serve(
        listener,
        AppState::new(store.clone(), api_settings),
        shutdown.clone(),
    ));
    let sim = cli.sim.clone();
    let stop = shutdown.clone();
    let kept = store.clone();
    let full = settings.rules.full;
    let mut worker =
        tokio::spawn(async move { drive(store, upstream, &sim, settings, stop).await });
    // Whichever stops first decides: a failed worker stops the API, and the other way round.
    let listen_error = |source| AppError::Listen {
        what: "the API",
        address: address.clone(),
        source,
    };
    let worked = tokio::select! {
        worked = &mut worker => joined("worker", worked).and_then(|r| r),
        served = &mut api => {
            shutdown.cancel();
            let served = joined("API", served).and_then(|r| r.map_err(listen_error));
            let worked = joined("worker", worker.await).and_then(|r| r);
            return served.and(worked);
        }
    };
    // While the API serves a recorded file, hours and days go on being rolled up as they end
    // (with Redis, reads of an hour whose minutes expired before its roll-up would miss them).
    let mut housekeeping = None;
    match &worked {
        Ok(()) if text_mode && !shutdown.is_cancelled() => {
            info!("input recorded; the API keeps serving the results until stopped (Ctrl-C)");
            housekeeping = crate::worker::spawn_maintenance(kept, full);
        }
        Ok(()) => {}
        Err(_) => shutdown.cancel(),
    }
    let served = joined("API", api.await).and_then(|r| r.map_err(listen_error));
    if let Some(housekeeping) = housekeeping {
        housekeeping.abort();
    }
    worked.and(served)
}

/// The result of a joined task, a panic becoming an [`AppError::Task`].
fn joined<T>(task: &'static str, joined: Result<T, tokio::task::JoinError>) -> Result<T, AppError> {
    joined.map_err(|err| AppError::Task {
        task,
        cause: err.to_string(),
    })
}

/// The address `listener` is bound to, as bound (`0.0.0.0:3000`): the effective setting.
fn bound_address(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string())
}

/// The address to open `listener`'s service at: `localhost` for an unspecified one.
fn display_address(listener: &TcpListener) -> String {
    match listener.local_addr() {
        Ok(addr) if addr.ip().is_unspecified() => format!("localhost:{}", addr.port()),
        Ok(addr) => addr.to_string(),
        Err(_) => "?".to_owned(),
    }
}

/// A rate limit as configured, `off` when there is none.
fn display_limit(limit: Option<&crate::api::RateLimit>) -> String {
    limit.map_or_else(|| "off".to_owned(), ToString::to_string)
}
