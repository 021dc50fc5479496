//! What each binary runs: its command line, and one function that runs it until stopped.
//!
//! The binaries in `src/bin/` only parse ([`crate::config::parse`]), start telemetry and call
//! one of the `run_*` functions here, so tests drive exactly what production runs.

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::api::{self, ApiSettings, AppState};
use crate::config::{
    ApiArgs, ConfigError, DataArgs, LogArgs, RedisArgs, SourceArgs, Upstream, WorkerArgs,
};
use crate::source::file::FileSource;
use crate::source::http::HttpSource;
use crate::source::sim::SimSource;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::{Store, StoreError};
use crate::worker::{self, Progress, WorkerError};

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
    /// The API could not listen or serve.
    #[error("cannot serve the API on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// `chatstats-worker`: reads the upstream and records every message in Redis.
#[derive(Debug, Clone, Parser)]
#[command(name = "chatstats-worker", version, about, long_about = None,
    after_help = "Every option can be set by the environment variable named in capitals, also from a .env file.")]
pub struct WorkerCli {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// `chatstats-api`: serves the HTTP API from Redis.
#[derive(Debug, Clone, Parser)]
#[command(name = "chatstats-api", version, about, long_about = None,
    after_help = "Every option can be set by the environment variable named in capitals, also from a .env file.")]
pub struct ApiCli {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// The simulated stream of `chatstats` when no upstream is configured.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Simulated events per second when CHAT_INTERFACE_URL is not set.
    #[arg(long, env = "SIM_RATE", value_name = "SIM_RATE", default_value_t = 200.0,
          value_parser = crate::config::parse_rate, allow_hyphen_values = true)]
    pub sim_rate: f64,
    /// Seed of the simulated stream.
    #[arg(long, env = "SIM_SEED", value_name = "SIM_SEED", default_value_t = 1)]
    pub sim_seed: u64,
}

/// `chatstats`: worker and API in one process; in-memory store without REDIS_URL, simulated
/// stream without CHAT_INTERFACE_URL.
#[derive(Debug, Clone, Parser)]
#[command(name = "chatstats", version, about, long_about = None,
    after_help = "Every option can be set by the environment variable named in capitals, also from a .env file.\n\
                  Without REDIS_URL the statistics are kept in memory; without CHAT_INTERFACE_URL a simulated stream is used.")]
pub struct ChatstatsCli {
    /// Redis URL; without it, statistics are kept in memory.
    #[arg(long, env = "REDIS_URL", value_name = "REDIS_URL")]
    pub redis_url: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub sim: SimArgs,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

fn api_settings(api: &ApiArgs, data: &DataArgs) -> ApiSettings {
    ApiSettings {
        cors_origin: api.cors_origin.clone(),
        store_timeout: Duration::from_millis(data.redis_timeout_ms),
        cache: Duration::from_millis(api.stats_cache_ms),
    }
}

async fn bind(api: &ApiArgs) -> Result<TcpListener, AppError> {
    let address = std::net::SocketAddr::new(api.node_host, api.node_port);
    TcpListener::bind(address)
        .await
        .map_err(|source| AppError::Listen {
            address: address.to_string(),
            source,
        })
}

/// `args` for the start log line, with secrets masked.
fn masked(args: impl std::fmt::Debug, secrets: &[Option<&String>]) -> String {
    let mut shown = format!("{args:?}");
    for secret in secrets.iter().flatten() {
        shown = shown.replace(secret.as_str(), &crate::config::mask_url(secret));
    }
    shown
}

/// Runs the worker on `store` over `upstream` (the simulated stream when `None`).
pub async fn drive<S: Store>(
    store: S,
    upstream: Option<Upstream>,
    sim: &SimArgs,
    settings: worker::WorkerSettings,
    progress: Arc<Progress>,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    match upstream {
        Some(Upstream::Http(http)) => {
            worker::run(store, HttpSource::new(http), settings, progress, shutdown).await?;
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
    let settings = cli.redis.settings();
    info!(version = env!("CARGO_PKG_VERSION"), upstream = ?upstream_label(&upstream), redis = %crate::config::mask_url(&settings.url),
          namespace = %settings.namespace, in_flight = cli.worker.in_flight,
          config = %masked(&cli, &[cli.redis.redis_url.as_ref(), cli.source.chat_interface_url.as_ref()]), "chatstats-worker starting");
    let store = RedisStore::connect(settings)?;
    let sim = SimArgs {
        sim_rate: 0.0,
        sim_seed: 0,
    };
    drive(
        store,
        Some(upstream),
        &sim,
        cli.worker.settings(),
        Arc::default(),
        shutdown,
    )
    .await
}

/// Runs `chatstats-api` until `shutdown` is cancelled.
pub async fn run_api(cli: ApiCli, shutdown: CancellationToken) -> Result<(), AppError> {
    let settings = cli.redis.settings();
    info!(version = env!("CARGO_PKG_VERSION"), redis = %crate::config::mask_url(&settings.url), namespace = %settings.namespace,
          host = %cli.api.node_host, port = cli.api.node_port, cors = %cli.api.cors_origin,
          config = %masked(&cli, &[cli.redis.redis_url.as_ref()]), "chatstats-api starting");
    let store = RedisStore::connect(settings)?;
    let listener = bind(&cli.api).await?;
    let state = AppState::new(store, api_settings(&cli.api, &cli.redis.data));
    api::serve(listener, state, shutdown)
        .await
        .map_err(|source| AppError::Listen {
            address: format!("{}:{}", cli.api.node_host, cli.api.node_port),
            source,
        })
}

/// Runs `chatstats` (worker and API in one process) until `shutdown` is cancelled. In text mode
/// the API keeps serving after the file is recorded, so the results can be queried.
pub async fn run_chatstats(cli: ChatstatsCli, shutdown: CancellationToken) -> Result<(), AppError> {
    let upstream = cli.source.upstream()?;
    let listener = bind(&cli.api).await?;
    let docs = format!("http://{}/documentation", display_address(&listener));
    let settings = api_settings(&cli.api, &cli.data);
    let source = match &upstream {
        Some(u) => upstream_label(u),
        None => format!(
            "the built-in simulated stream ({} events/s, seed {})",
            cli.sim.sim_rate, cli.sim.sim_seed
        ),
    };
    match cli.redis_url.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(url) => {
            let url = crate::config::parse_redis_url(url)
                .map_err(|e| ConfigError::invalid("REDIS_URL", url, e))?;
            let store = RedisStore::connect(cli.data.redis_settings(url))?;
            info!(version = env!("CARGO_PKG_VERSION"), store = %store.describe(), %source, swagger_ui = %docs,
                  config = %masked(&cli, &[cli.redis_url.as_ref(), cli.source.chat_interface_url.as_ref()]), "chatstats starting");
            run_both(store, upstream, &cli, settings, listener, shutdown).await
        }
        None => {
            let store = MemoryStore::new(
                cli.data.failed_messages_max as usize,
                crate::config::SECOND_TTL,
            );
            info!(version = env!("CARGO_PKG_VERSION"), store = %store.describe(), %source, swagger_ui = %docs,
                  config = %masked(&cli, &[cli.redis_url.as_ref(), cli.source.chat_interface_url.as_ref()]), "chatstats starting");
            run_both(store, upstream, &cli, settings, listener, shutdown).await
        }
    }
}

async fn run_both<S: Store>(
    store: S,
    upstream: Option<Upstream>,
    cli: &ChatstatsCli,
    settings: ApiSettings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let text_mode = matches!(upstream, Some(Upstream::Text { .. }));
    let api = tokio::spawn(api::serve(
        listener,
        AppState::new(store.clone(), settings),
        shutdown.clone(),
    ));
    let worked = drive(
        store,
        upstream,
        &cli.sim,
        cli.worker.settings(),
        Arc::default(),
        shutdown.clone(),
    )
    .await;
    if worked.is_ok() && text_mode && !shutdown.is_cancelled() {
        info!("input recorded; the API keeps serving the results until stopped (Ctrl-C)");
    }
    if worked.is_err() {
        shutdown.cancel();
    }
    let served = api.await;
    worked?;
    match served {
        Ok(Err(source)) => Err(AppError::Listen {
            address: "the API".to_owned(),
            source,
        }),
        _ => Ok(()),
    }
}

fn display_address(listener: &TcpListener) -> String {
    match listener.local_addr() {
        Ok(addr) if addr.ip().is_unspecified() => format!("localhost:{}", addr.port()),
        Ok(addr) => addr.to_string(),
        Err(_) => "?".to_owned(),
    }
}

fn upstream_label(upstream: &Upstream) -> String {
    match upstream {
        Upstream::Http(http) => {
            format!("HTTP stream {}", crate::config::mask_url(http.url.as_str()))
        }
        Upstream::Text { path, .. } => {
            format!("text mode, {}", if path == "-" { "stdin" } else { path })
        }
    }
}
