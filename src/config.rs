//! Settings: environment variables (also read from `.env`) and the equivalent flags.
//!
//! The variable names are the TypeScript service's, so its `.env` files keep working. Each flag
//! is declared once, with `#[arg(long, env)]`: the variable's name is the field's name in
//! capitals. Every value is validated once, at start; a bad one stops the process with one line
//! naming the variable and what it expects (exit code 2). This module only assembles the
//! settings types of each layer ([`HttpSettings`], [`RedisSettings`], [`WorkerSettings`],
//! [`ApiSettings`]) from the flags.

use std::num::NonZeroU32;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser, ValueEnum};

use std::sync::Arc;

use crate::api::{ApiSettings, IngestTokens, RateLimit, TrustedProxies};
use crate::emotes::EmoteNames;
use crate::message::Rules;
use crate::source::http::HttpSettings;
use crate::store::redis::RedisSettings;
use crate::telemetry::{LogFormat, SecretUrl};
use crate::timeline::Retention;
use crate::worker::WorkerSettings;

/// Variables whose values may hold a secret: never repeated in an error message.
const SECRET_VARIABLES: [&str; 6] = [
    "REDIS_URL",
    "REDIS_CLUSTER_NODES",
    "CHAT_INTERFACE_URL",
    "INGEST_TOKENS",
    "MIGRATE_FROM",
    "MIGRATE_TO",
];

/// How the upstream is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StreamMode {
    /// `CHAT_INTERFACE_URL` is an endless HTTP stream, followed across reconnects.
    Http,
    /// `CHAT_INTERFACE_URL` is a file path (or `-` for stdin), processed to its end.
    Text,
}

/// Settings every process has: logs and shutdown.
#[derive(Clone, Args)]
pub struct ProcessArgs {
    /// Log format: `pretty` (coloured on a terminal) or `json`.
    #[arg(long, env, default_value = "pretty", ignore_case = true)]
    pub(crate) log_format: LogFormat,
    /// After SIGTERM or SIGINT, the most milliseconds spent finishing work in progress
    /// (recording what was read, answering open requests) before exiting.
    #[arg(long, env, default_value_t = 8000, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub(crate) shutdown_timeout_ms: u64,
}

impl ProcessArgs {
    /// The shutdown timeout.
    pub(crate) fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

/// Where Redis is and how data is kept there.
#[derive(Clone, Args)]
pub(crate) struct RedisArgs {
    /// Redis URL (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS); overrides
    /// REDIS_HOST and REDIS_PORT. `redis-cluster://[user:password@]host:port[,host:port…]`
    /// (`rediss-cluster://` for TLS) selects Redis Cluster.
    #[arg(long, env, hide_env_values = true, value_parser = parse_redis_url)]
    pub(crate) redis_url: Option<SecretUrl>,
    /// Redis Cluster nodes, `[user:password@]host:port[,host:port…]` (some or all masters):
    /// selects Redis Cluster, like a `redis-cluster://` REDIS_URL (set one of the two).
    #[arg(long, env, hide_env_values = true)]
    pub(crate) redis_cluster_nodes: Option<String>,
    /// On Redis Cluster, the number of shards the keys are spread over. Fixed for the life of
    /// the data: data written with one number is not found with another.
    #[arg(long, env, default_value_t = crate::store::redis::DEFAULT_CLUSTER_SHARDS as u64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub(crate) redis_cluster_shards: u64,
    /// Redis host, when REDIS_URL is not set [default: localhost].
    #[arg(long, env)]
    pub(crate) redis_host: Option<String>,
    /// Redis port, when REDIS_URL is not set [default: 6379].
    #[arg(long, env, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) redis_port: Option<u16>,
    #[command(flatten)]
    pub(crate) data: DataArgs,
}

/// Settings shared by every store.
#[derive(Clone, Args)]
pub(crate) struct DataArgs {
    /// Prefix of every Redis key.
    #[arg(long, env, default_value = "chat-stats:")]
    pub(crate) redis_namespace: String,
    /// Longest wait for a Redis reply, in milliseconds.
    #[arg(long, env, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub(crate) redis_timeout_ms: u64,
    /// Distinct failed payloads kept (the newest).
    #[arg(long, env, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) failed_messages_max: u64,
    /// How long minute buckets of the statistics by time are kept (`7h`, `90m`, `1d`…; at
    /// least 2h: an hour is rolled up from its minutes once it has ended).
    #[arg(long, env, default_value = "7h", value_parser = parse_minute_retention)]
    pub(crate) minute_retention: Duration,
    /// How long hour buckets are kept (at least 26h: a day is rolled up from its hours once it
    /// has ended).
    #[arg(long, env, default_value = "49h", value_parser = parse_hour_retention)]
    pub(crate) hour_retention: Duration,
    /// How long day buckets are kept (at least 1d).
    #[arg(long, env, default_value = "35d", value_parser = parse_day_retention)]
    pub(crate) day_retention: Duration,
    /// How long recorded messages are kept for `GET /messages` (`0`: not kept; the live feed
    /// still works).
    #[arg(long, env, default_value = "24h", value_parser = parse_history_retention)]
    pub(crate) history_retention: Duration,
}

impl DataArgs {
    /// How long time buckets are kept.
    pub(crate) fn retention(&self) -> Retention {
        Retention {
            kept: [
                self.minute_retention,
                self.hour_retention,
                self.day_retention,
            ],
            history: self.history_retention,
        }
    }
}

impl DataArgs {
    /// Settings of a Redis store at `url` (standalone or cluster, `shards` on a cluster).
    pub(crate) fn settings_at(
        &self,
        url: SecretUrl,
        shards: u64,
    ) -> Result<RedisSettings, ConfigError> {
        let namespace = &self.redis_namespace;
        if url.expose().scheme().ends_with("-cluster") && namespace.contains(['{', '}']) {
            return Err(ConfigError::invalid(
                "REDIS_NAMESPACE",
                namespace,
                "a prefix without braces on Redis Cluster (braces would choose every key's hash slot)",
            ));
        }
        Ok(RedisSettings {
            url,
            cluster_shards: shards as usize,
            namespace: namespace.clone(),
            timeout: Duration::from_millis(self.redis_timeout_ms),
            failed_cap: self.failed_messages_max as usize,
            second_ttl: SECOND_TTL,
            retention: self.retention(),
        })
    }
}

/// Seconds a per-second message counter is kept.
pub(crate) const SECOND_TTL: u64 = 300;

impl RedisArgs {
    /// True when any of REDIS_URL, REDIS_HOST, REDIS_PORT is set.
    pub(crate) fn is_set(&self) -> bool {
        self.redis_url.is_some()
            || self.redis_cluster_nodes.is_some()
            || self.redis_host.is_some()
            || self.redis_port.is_some()
    }

    /// Which variables chose Redis, for the start line.
    pub(crate) fn chosen_by(&self) -> &'static str {
        if self.redis_url.is_some() {
            "REDIS_URL is set"
        } else if self.redis_cluster_nodes.is_some() {
            "REDIS_CLUSTER_NODES is set"
        } else {
            "REDIS_HOST or REDIS_PORT is set"
        }
    }

    /// The effective Redis URL: REDIS_URL, or one built from REDIS_HOST and REDIS_PORT.
    pub(crate) fn url(&self) -> Result<SecretUrl, ConfigError> {
        match (&self.redis_url, &self.redis_cluster_nodes) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::hidden(
                    "REDIS_CLUSTER_NODES",
                    "unset while REDIS_URL is set: set one of the two",
                ));
            }
            (Some(url), None) => return Ok(url.clone()),
            (None, Some(nodes)) => {
                // Its value may hold a password (`user:password@host:port,…`): never shown.
                return parse_redis_url(&format!("redis-cluster://{}", nodes.trim())).map_err(
                    |why| {
                        let problem = why.split("; expected").next().unwrap_or_default();
                        ConfigError::hidden(
                            "REDIS_CLUSTER_NODES",
                            format!("[user:password@]host:port[,host:port…] ({problem})"),
                        )
                    },
                );
            }
            (None, None) => {}
        }
        let host = self.redis_host.as_deref().unwrap_or("localhost").trim();
        let port = self.redis_port.unwrap_or(6379);
        let bracketed = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        SecretUrl::parse(&format!("redis://{bracketed}:{port}"))
            .ok()
            .filter(|u| u.expose().host_str().is_some_and(|h| !h.is_empty()))
            .ok_or_else(|| ConfigError::invalid("REDIS_HOST", host, "a host name or IP address"))
    }

    /// Settings of the Redis store.
    pub(crate) fn settings(&self) -> Result<RedisSettings, ConfigError> {
        self.data
            .settings_at(self.url()?, self.redis_cluster_shards)
    }
}

/// Where the API listens and how it answers.
#[derive(Clone, Args)]
pub(crate) struct ApiArgs {
    /// Address the API listens on: an IP address or a host name (`localhost`).
    #[arg(long, env, default_value = "0.0.0.0")]
    pub(crate) node_host: String,
    /// Port the API listens on.
    #[arg(long, env, default_value_t = 3000)]
    pub(crate) node_port: u16,
    /// Allowed CORS origins, comma-separated; `*` (alone) allows any, empty turns CORS off.
    #[arg(long, env, default_value = "*", value_parser = parse_cors_origin)]
    pub(crate) cors_origin: String,
    /// How long answers of the statistics routes are kept and shared between requests, in
    /// milliseconds: they are at most this stale (0: every answer read from the store).
    #[arg(long, env, default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub(crate) stats_cache_ms: u64,
    /// Milliseconds a connection may take to send a request's headers, and may stay idle
    /// between requests, before it is closed.
    #[arg(long, env, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub(crate) http_idle_timeout_ms: u64,
    /// Most open connections; past it, the longest-idle connection is closed for a new one.
    /// Also kept below the process's open-file limit.
    #[arg(long, env, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) max_connections: u64,
    /// Bearer tokens accepted by `POST /messages`, comma-separated, each at least 16 visible
    /// ASCII characters (`openssl rand -hex 32`); unset or empty: ingestion is disabled (403).
    #[arg(long, env, value_parser = IngestTokens::parse, hide_env_values = true)]
    pub(crate) ingest_tokens: Option<IngestTokens>,
    /// Requests of `POST /messages` per token: `200/s`, `600/m` or `10000/h`; unset or empty:
    /// no limit.
    #[arg(long, env, value_parser = parse_rate_limit)]
    pub(crate) ingest_rate_limit: Option<Blankable<RateLimit>>,
    /// Requests of `POST /messages` a token may send at once [default: the limit's amount per
    /// second, at least 1].
    #[arg(long, env, value_parser = parse_burst)]
    pub(crate) ingest_rate_burst: Option<Blankable<NonZeroU32>>,
    /// `GET` and `HEAD` requests per client IP address (IPv6: per /64): `100/s`, `600/m`…;
    /// unset or empty: no limit.
    #[arg(long, env, value_parser = parse_rate_limit)]
    pub(crate) read_rate_limit: Option<Blankable<RateLimit>>,
    /// Reads a client may send at once [default: the limit's amount per second, at least 1].
    #[arg(long, env, value_parser = parse_burst)]
    pub(crate) read_rate_burst: Option<Blankable<NonZeroU32>>,
    /// Proxies whose `X-Forwarded-For` names the client, comma-separated IP addresses or CIDR
    /// networks (`10.0.0.0/8,127.0.0.1`); unset: the TCP peer is the client.
    #[arg(long, env, value_parser = TrustedProxies::parse)]
    pub(crate) trusted_proxies: Option<TrustedProxies>,
}

/// A setting that may be set to an empty value, which means "not set" (a `.env` template's
/// `NAME=`).
#[derive(Debug, Clone)]
pub(crate) struct Blankable<T>(Option<T>);

impl<T: Clone> Blankable<T> {
    fn get(value: &Option<Blankable<T>>) -> Option<T> {
        value.as_ref().and_then(|v| v.0.clone())
    }
}

fn parse_rate_limit(value: &str) -> Result<Blankable<RateLimit>, String> {
    RateLimit::parse(value).map(Blankable)
}

fn parse_burst(value: &str) -> Result<Blankable<NonZeroU32>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(Blankable(None));
    }
    match value.parse::<NonZeroU32>() {
        Ok(burst) if burst.get() <= 1_000_000 => Ok(Blankable(Some(burst))),
        _ => Err("expected a whole number from 1 to 1000000; empty for the default".to_owned()),
    }
}

/// `rate` with `burst` when one is set.
fn with_burst(rate: Option<RateLimit>, burst: Option<NonZeroU32>) -> Option<RateLimit> {
    rate.map(|rate| match burst {
        Some(burst) => rate.with_burst(burst),
        None => rate,
    })
}

impl ApiArgs {
    /// Settings of the API; `store_timeout` from the data settings.
    pub(crate) fn settings(&self, data: &DataArgs, process: &ProcessArgs) -> ApiSettings {
        ApiSettings {
            cors_origin: self.cors_origin.clone(),
            store_timeout: Duration::from_millis(data.redis_timeout_ms),
            cache: Duration::from_millis(self.stats_cache_ms),
            idle_timeout: Duration::from_millis(self.http_idle_timeout_ms),
            max_connections: self.max_connections as usize,
            shutdown_timeout: process.shutdown_timeout(),
            retention: data.retention(),
            ingest_tokens: self.ingest_tokens.clone().unwrap_or_default(),
            ingest_rate: with_burst(
                Blankable::get(&self.ingest_rate_limit),
                Blankable::get(&self.ingest_rate_burst),
            ),
            read_rate: with_burst(
                Blankable::get(&self.read_rate_limit),
                Blankable::get(&self.read_rate_burst),
            ),
            trusted_proxies: self.trusted_proxies.clone().unwrap_or_default(),
        }
    }

    /// The socket addresses NODE_HOST and NODE_PORT name (a host name may give several).
    pub(crate) async fn addresses(&self) -> Result<Vec<std::net::SocketAddr>, ConfigError> {
        resolve("NODE_HOST", &self.node_host, self.node_port).await
    }
}

/// The socket addresses `host` (the value of `variable`; IPv6 in brackets or not) and `port`
/// name: a host name may give several; none is a configuration error naming `variable`.
pub(crate) async fn resolve(
    variable: &'static str,
    host: &str,
    port: u16,
) -> Result<Vec<std::net::SocketAddr>, ConfigError> {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let expected = "an IP address or a host name that resolves";
    match tokio::net::lookup_host((host, port)).await {
        Ok(addresses) => {
            let addresses: Vec<_> = addresses.collect();
            if addresses.is_empty() {
                return Err(ConfigError::invalid(variable, host, expected));
            }
            Ok(addresses)
        }
        Err(_) => Err(ConfigError::invalid(variable, host, expected)),
    }
}

/// Where the upstream is and how it is followed.
#[derive(Clone, Args)]
pub(crate) struct SourceArgs {
    /// Upstream stream URL (http mode) or file path, `-` for stdin (text mode), or `inbox`:
    /// consume the Redis inbox with the other workers.
    #[arg(long, env, hide_env_values = true)]
    pub(crate) chat_interface_url: Option<String>,
    /// `http` or `text`.
    #[arg(long, env, default_value = "http", ignore_case = true)]
    pub(crate) response_stream_mode: StreamMode,
    /// Longest upstream line in bytes; a longer one becomes a failed message.
    #[arg(long, env, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(64..=(64 << 20)))]
    pub(crate) max_line_bytes: u64,
    /// Longest upstream silence before reconnecting, in milliseconds.
    #[arg(long, env, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub(crate) read_timeout_ms: u64,
    /// First reconnect delay in milliseconds (doubles per failure, with jitter).
    #[arg(long, env, default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub(crate) reconnect_min_ms: u64,
    /// Longest reconnect delay in milliseconds.
    #[arg(long, env, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub(crate) reconnect_max_ms: u64,
}

/// How the worker records messages.
#[derive(Clone, Args)]
pub(crate) struct WorkerArgs {
    /// Store calls in flight at once (one per message, or per merged batch).
    #[arg(long, env, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=8192))]
    pub(crate) in_flight: u64,
    /// Failed payloads are kept cut to this many bytes.
    #[arg(long, env, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(16..=(1 << 20)))]
    pub(crate) failed_payload_max_bytes: u64,
    /// Coalescing mode for backfills and firehoses: merge the counts of all messages read within
    /// this many milliseconds into one Redis call (0: off, one call per message). Exact either way.
    #[arg(long, env, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub(crate) flush_interval_ms: u64,
    /// Coalescing mode: a merged call carries at most this many messages.
    #[arg(long, env, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) flush_max_messages: u64,
    /// Seconds between progress log lines (0: none).
    #[arg(long, env, default_value_t = 10)]
    pub(crate) progress_interval_secs: u64,
    /// `full`: statistics by room, nick, emote and time too; `basic`: the all-time lists only
    /// (the TypeScript service's work, at its speed).
    #[arg(long, env, default_value = "full", ignore_case = true)]
    pub(crate) statistics: Statistics,
    /// Nicks (bots) left out of every statistic but messages per second; comma-separated,
    /// any case.
    #[arg(long, env, default_value = "")]
    pub(crate) ignored_nicks: String,
    /// A file of third-party emote names (BTTV, FFZ, 7TV), one per line, counted as emotes
    /// (empty: none).
    #[arg(long, env, default_value = "")]
    pub(crate) emote_names_file: String,
    /// `chatstats-worker` only: serve its Prometheus metrics at `GET /metrics` on this address
    /// (`0.0.0.0:9100`); `chatstats` and `chatstats-api` serve them on the API's port.
    #[arg(long, env)]
    pub(crate) metrics_addr: Option<String>,
    /// The statistics by room, nick, emote and time of the messages read within this many
    /// milliseconds are merged into one store call (they lag by at most this much).
    #[arg(long, env, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) stats_flush_ms: u64,
    /// `CHAT_INTERFACE_URL=inbox`: most inbox entries read and applied in one call.
    #[arg(long, env, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=5_000))]
    pub(crate) inbox_batch: u64,
    /// `CHAT_INTERFACE_URL=inbox`: milliseconds an entry may stay pending with a consumer
    /// before another takes it over (the consumer is taken for dead or stalled).
    #[arg(long, env, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    pub(crate) inbox_claim_idle_ms: u64,
    /// `chatstats-worker`: append the upstream's payloads to the Redis inbox instead of applying
    /// them, so that one reader feeds the workers that consume the inbox.
    #[arg(long, env, default_value = "false", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub(crate) forward_to_inbox: bool,
}

/// Which statistics the worker gathers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Statistics {
    /// The all-time lists, messages per second and failed messages only.
    Basic,
    /// Also the statistics by room, nick, emote and time.
    Full,
}

impl WorkerArgs {
    /// The counting rules: reads EMOTE_NAMES_FILE.
    pub(crate) fn rules(&self) -> Result<Rules, ConfigError> {
        let file = Some(self.emote_names_file.trim())
            .filter(|p| !p.is_empty())
            .map(std::path::Path::new);
        let emote_names = match file {
            None => EmoteNames::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|err| {
                    ConfigError::invalid(
                        "EMOTE_NAMES_FILE",
                        &path.display().to_string(),
                        format!("a readable file of emote names, one per line ({err})"),
                    )
                })?;
                EmoteNames::parse(&text)
            }
        };
        Ok(Rules {
            failed_max: self.failed_payload_max_bytes as usize,
            full: self.statistics == Statistics::Full,
            ignored: Arc::new(Rules::ignored_nicks(&self.ignored_nicks)),
            emote_names: Arc::new(emote_names),
            // The history and the live feed come with the full statistics.
            history: self.statistics == Statistics::Full,
        })
    }

    /// The worker's settings.
    pub(crate) fn settings(
        &self,
        process: &ProcessArgs,
        data: &DataArgs,
    ) -> Result<WorkerSettings, ConfigError> {
        Ok(WorkerSettings {
            rules: self.rules()?,
            retention: data.retention(),
            detail_interval: Duration::from_millis(self.stats_flush_ms),
            window: self.in_flight as usize,
            progress_interval: Duration::from_secs(self.progress_interval_secs),
            flush_interval: (self.flush_interval_ms > 0)
                .then(|| Duration::from_millis(self.flush_interval_ms)),
            flush_max_messages: self.flush_max_messages as usize,
            shutdown_timeout: process.shutdown_timeout(),
            ..WorkerSettings::default()
        })
    }
}

/// Where the stream comes from, validated.
#[derive(Debug, Clone)]
pub(crate) enum Upstream {
    /// An endless HTTP stream.
    Http(HttpSettings),
    /// The Redis inbox, shared with other workers (`CHAT_INTERFACE_URL=inbox`).
    Inbox {
        /// Longest payload.
        line_cap: usize,
    },
    /// A file path or `-`, read to its end.
    Text {
        /// The path, or `-` for stdin.
        path: String,
        /// Longest line.
        line_cap: usize,
    },
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Http(http) => write!(f, "HTTP stream {}", http.url),
            Upstream::Inbox { .. } => f.write_str("the Redis inbox (consumer group chatstats)"),
            Upstream::Text { path, .. } if path == "-" => f.write_str("text mode, stdin"),
            Upstream::Text { path, .. } => write!(f, "text mode, {path}"),
        }
    }
}

impl SourceArgs {
    /// The upstream, or `None` when CHAT_INTERFACE_URL is not set.
    pub(crate) fn upstream(&self) -> Result<Option<Upstream>, ConfigError> {
        let Some(location) = self
            .chat_interface_url
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        else {
            return Ok(None);
        };
        let line_cap = self.max_line_bytes as usize;
        if location.trim().eq_ignore_ascii_case("inbox") {
            return Ok(Some(Upstream::Inbox { line_cap }));
        }
        Ok(Some(match self.response_stream_mode {
            StreamMode::Text => {
                // Checked before the start line, as every other value; not opened here: a
                // named pipe would wait for its writer.
                let unreadable = |why: String| {
                    let expected = format!("in text mode, a file to read, or - for stdin ({why})");
                    // A URL given in text mode by mistake may carry a key or a password: not
                    // repeated (nor a path that looks like one).
                    if location.contains("://") || location.contains(['?', '@']) {
                        ConfigError::hidden("CHAT_INTERFACE_URL", expected)
                    } else {
                        ConfigError::invalid("CHAT_INTERFACE_URL", location, expected)
                    }
                };
                match std::fs::metadata(location) {
                    _ if location == "-" => {}
                    Ok(meta) if meta.is_dir() => {
                        return Err(unreadable("it is a directory".to_owned()));
                    }
                    Ok(_) => {}
                    Err(err) => return Err(unreadable(err.to_string())),
                }
                Upstream::Text {
                    path: location.to_owned(),
                    line_cap,
                }
            }
            StreamMode::Http => {
                let url = SecretUrl::parse(location)
                    .ok()
                    .filter(|u| matches!(u.expose().scheme(), "http" | "https"))
                    .ok_or_else(|| ConfigError::hidden("CHAT_INTERFACE_URL", "an http:// or https:// URL (or set RESPONSE_STREAM_MODE=text for a file)"))?;
                if self.reconnect_min_ms > self.reconnect_max_ms {
                    return Err(ConfigError::invalid(
                        "RECONNECT_MIN_MS",
                        &self.reconnect_min_ms.to_string(),
                        "a value not above RECONNECT_MAX_MS",
                    ));
                }
                Upstream::Http(HttpSettings {
                    url,
                    read_timeout: Duration::from_millis(self.read_timeout_ms),
                    backoff_min: Duration::from_millis(self.reconnect_min_ms),
                    backoff_max: Duration::from_millis(self.reconnect_max_ms),
                    line_cap,
                })
            }
        }))
    }
}

/// A configuration error found after parsing (values that depend on each other, names that
/// must resolve).
#[derive(Debug, thiserror::Error)]
#[error("invalid {name}{value}: expected {expected}")]
pub struct ConfigError {
    name: &'static str,
    /// `="…"`, or empty when the value is not shown.
    value: String,
    expected: std::borrow::Cow<'static, str>,
}

impl ConfigError {
    /// `name` holds `value`, which is not `expected`.
    pub(crate) fn invalid(
        name: &'static str,
        value: &str,
        expected: impl Into<std::borrow::Cow<'static, str>>,
    ) -> ConfigError {
        ConfigError {
            name,
            value: format!("={value:?}"),
            expected: expected.into(),
        }
    }

    /// `name` is invalid and its value may hold a secret, so it is not shown.
    pub(crate) fn hidden(
        name: &'static str,
        expected: impl Into<std::borrow::Cow<'static, str>>,
    ) -> ConfigError {
        ConfigError {
            name,
            value: " (value not shown: it may hold a secret)".to_owned(),
            expected: expected.into(),
        }
    }

    /// A required variable is missing.
    pub(crate) fn missing(name: &'static str, expected: &'static str) -> ConfigError {
        ConfigError {
            name,
            value: " (not set)".to_owned(),
            expected: expected.into(),
        }
    }
}

fn parse_retention(value: &str) -> Result<Duration, String> {
    retention_at_least(value, Duration::from_secs(60), "1m", "")
}

/// An hour is rolled up from its minutes once it has ended (and settled): every minute of the
/// hour must still be kept then, or the hour would miss what expired (RELIABILITY.md).
fn parse_minute_retention(value: &str) -> Result<Duration, String> {
    let why = " (an hour is rolled up from its minutes once it has ended)";
    retention_at_least(value, Duration::from_secs(2 * 3_600), "2h", why)
}

/// A day is rolled up from its hours once its last hour is: the day's hours must be kept a
/// day and the last hour's roll-up.
fn parse_hour_retention(value: &str) -> Result<Duration, String> {
    let why = " (a day is rolled up from its hours once it has ended)";
    retention_at_least(value, Duration::from_secs(26 * 3_600), "26h", why)
}

fn parse_day_retention(value: &str) -> Result<Duration, String> {
    retention_at_least(value, Duration::from_secs(86_400), "1d", "")
}

fn retention_at_least(
    value: &str,
    least: Duration,
    least_text: &str,
    why: &str,
) -> Result<Duration, String> {
    let kept = humantime::parse_duration(value.trim())
        .map_err(|e| format!("{e}; expected a duration such as 7h, 90m or 35d"))?;
    if kept < least || kept > Duration::from_secs(10 * 366 * 86_400) {
        return Err(format!(
            "expected a duration between {least_text} and 10 years{why}"
        ));
    }
    Ok(kept)
}

/// `*` alone, or origins (`https://example.com`, `http://localhost:8080`), comma-separated:
/// each as a browser sends it in `Origin` (a trailing `/` and upper-case letters are put right),
/// since anything else — a path, a space, no scheme — could never match one.
fn parse_cors_origin(value: &str) -> Result<String, String> {
    if value.trim().is_empty() || value.trim() == "*" {
        return Ok(value.to_owned());
    }
    let origins: Vec<&str> = value.split(',').map(str::trim).collect();
    if origins.contains(&"*") {
        return Err("`*` allows every origin and cannot be listed with others".to_owned());
    }
    let expected = "expected `*`, or origins such as https://example.com, comma-separated";
    let mut normalized = Vec::with_capacity(origins.len());
    for origin in origins {
        let parsed = url::Url::parse(origin).map_err(|_| expected.to_owned())?;
        let bare = parsed.path() == "/"
            && parsed.query().is_none()
            && parsed.fragment().is_none()
            && parsed.username().is_empty()
            && parsed.password().is_none();
        if !bare || !parsed.origin().is_tuple() {
            return Err(format!(
                "{expected} (scheme, host and port only: no path, query or credentials)"
            ));
        }
        normalized.push(parsed.origin().ascii_serialization());
    }
    Ok(normalized.join(","))
}

fn parse_history_retention(value: &str) -> Result<Duration, String> {
    match value.trim() {
        "0" => Ok(Duration::ZERO),
        other => parse_retention(other),
    }
}

pub(crate) fn parse_redis_url(value: &str) -> Result<SecretUrl, String> {
    let value = value.trim();
    for scheme in ["redis-cluster", "rediss-cluster"] {
        if let Some(rest) = value
            .strip_prefix(scheme)
            .and_then(|r| r.strip_prefix("://"))
        {
            return parse_cluster_url(scheme, rest);
        }
    }
    // `localhost:6379` reads as a URL of scheme `localhost`: say what is missing instead.
    if !value.contains("://") {
        return Err("no scheme; expected redis://[user:password@]host:port".to_owned());
    }
    let url = SecretUrl::parse(value)
        .map_err(|e| format!("not a URL ({e}); expected redis://[user:password@]host:port"))?;
    let path = url.expose().path().trim_start_matches('/');
    if !path.is_empty() && !path.bytes().all(|b| b.is_ascii_digit()) {
        return Err(
            "the path is not a database number; expected redis://host:port[/db]".to_owned(),
        );
    }
    if !path.is_empty() && path.parse::<u8>().is_err() {
        return Err("the database number is out of range; expected 0 to 255".to_owned());
    }
    match url.expose().scheme() {
        "redis" | "rediss" if url.expose().host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        "redis" | "rediss" => Err("the URL has no host; expected redis://host:port".to_owned()),
        other => Err(format!(
            "scheme {other}:// is not supported; expected redis://, rediss:// or redis-cluster://"
        )),
    }
}

/// `redis-cluster://[user:password@]host:port[,host:port…]` (after the scheme: `rest`) in
/// fred's form, `redis-cluster://[user:password@]host:port?node=host:port…`.
fn parse_cluster_url(scheme: &str, rest: &str) -> Result<SecretUrl, String> {
    let expected = format!("expected {scheme}://[user:password@]host:port[,host:port…]");
    let rest = rest.trim_end_matches('/');
    let (user, nodes) = match rest.rsplit_once('@') {
        Some((user, nodes)) => (Some(user), nodes),
        None => (None, rest),
    };
    let nodes: Vec<&str> = nodes.split(',').map(str::trim).collect();
    // A node is named by its place in the list, never by its text: a password or token
    // written in the wrong place must not reach the error.
    for (place, node) in nodes.iter().enumerate() {
        let place = place + 1;
        let parsed = url::Url::parse(&format!("redis://{node}"))
            .map_err(|e| format!("node {place} is not host:port ({e}); {expected}"))?;
        let plain = parsed.path().is_empty() || parsed.path() == "/";
        if parsed.host_str().is_none_or(str::is_empty)
            || parsed.port().is_none()
            || !plain
            || parsed.query().is_some()
        {
            return Err(format!("node {place} is not host:port; {expected}"));
        }
    }
    let mut text = format!("{scheme}://");
    if let Some(user) = user {
        text.push_str(user);
        text.push('@');
    }
    text.push_str(nodes[0]);
    for (i, node) in nodes[1..].iter().enumerate() {
        text.push(if i == 0 { '?' } else { '&' });
        text.push_str("node=");
        text.push_str(node);
    }
    SecretUrl::parse(&text).map_err(|e| format!("not a URL ({e}); {expected}"))
}

/// Parses an event rate: a finite number of events per second, 0 or more (0: unpaced).
pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!(
            "expected events per second, a number of 0 or more (0: as fast as possible), got `{text}`"
        )),
    }
}

/// Loads `.env` from the working directory (a missing file is fine) and parses the command
/// line and environment. `--help` and `--version` are printed; anything wrong is printed as
/// one line. Either way the caller gets the exit code to stop with.
pub fn load<T: Parser>() -> Result<T, ExitCode> {
    // `--help` and `--version` are answered even when `.env` is broken: they help fix it.
    let asks_help = std::env::args()
        .skip(1)
        .any(|arg| matches!(arg.as_str(), "--help" | "-h" | "--version" | "-V"));
    if let Err(line) = load_dotenv(std::path::Path::new(".env")) {
        eprintln!("{line}");
        if !asks_help {
            return Err(ExitCode::from(2));
        }
    }
    forget_empty_variables(&T::command());
    T::try_parse().map_err(|err| match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{}", one_line(&err));
            ExitCode::from(2)
        }
    })
}

/// Variables whose empty value means something: CORS off, keys without a prefix.
const MEANINGFUL_WHEN_EMPTY: [&str; 2] = ["CORS_ORIGIN", "REDIS_NAMESPACE"];

/// Unsets every variable of `command` that is set to "" (but those of
/// [`MEANINGFUL_WHEN_EMPTY`]): `REDIS_URL=` in a `.env` file means no URL, as the TypeScript
/// service's `process.env.REDIS_URL || …` read it, not an invalid one.
fn forget_empty_variables(command: &clap::Command) {
    for name in command.get_arguments().filter_map(|arg| arg.get_env()) {
        let empty = std::env::var_os(name).is_some_and(|value| value.is_empty());
        if empty && !MEANINGFUL_WHEN_EMPTY.iter().any(|keep| name == *keep) {
            // SAFETY: as in `load_dotenv`: at start, before any other thread exists.
            unsafe { std::env::remove_var(name) };
        }
    }
}

/// Applies a `.env` file (read as the TypeScript service's `dotenv` read it: see
/// [`crate::dotenv`]): all of it, or — when any line is malformed — none of it, with one line
/// naming the file and the line, never the value. The real environment wins over the file.
pub(crate) fn load_dotenv(path: &std::path::Path) -> Result<(), String> {
    let shown = path.display();
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map_err(|_| format!("cannot read {shown}: it is not UTF-8 text"))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(format!("cannot read {shown}: {err}")),
    };
    let pairs = crate::dotenv::parse(&text).map_err(|bad| {
        let name = bad.name.map_or_else(String::new, |n| format!(" ({n})"));
        format!(
            "{shown} line {}{name}: cannot parse this line (expected NAME=value, a comment or a blank line; a quote left open?); nothing from the file was applied",
            bad.line
        )
    })?;
    // A name given twice takes its last value, as Node's dotenv (the TypeScript service) does.
    let pairs: std::collections::HashMap<String, String> = pairs.into_iter().collect();
    for (name, value) in pairs {
        if std::env::var_os(&name).is_none() {
            // SAFETY: called at start, before any other thread exists (the runtime is not
            // built yet), so nothing reads the environment concurrently.
            unsafe { std::env::set_var(name, value) };
        }
    }
    Ok(())
}

/// A clap error as one line that names the variable: `invalid LOG_FORMAT="x": expected one of
/// pretty|json`. Values of variables that may hold secrets are not repeated.
fn one_line(err: &clap::Error) -> String {
    let text = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let variable = text(ContextKind::InvalidArg).map(|arg| {
        // `--log-format <LOG_FORMAT>` → LOG_FORMAT
        arg.split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .map_or(arg.clone(), |(name, _)| name.to_owned())
    });
    let value = text(ContextKind::InvalidValue);
    let valid = match err.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(values)) if !values.is_empty() => Some(values.join("|")),
        _ => None,
    };
    // A URL with credentials is a secret whatever variable or argument holds it.
    let secret = variable
        .as_deref()
        .is_some_and(|v| SECRET_VARIABLES.contains(&v))
        || value
            .as_deref()
            .is_some_and(|v| v.contains("://") && v.contains('@'));
    let first_line = || {
        let rendered = err.render().to_string();
        let line = rendered
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid configuration")
            .trim_start_matches("error: ")
            .to_owned();
        if !secret {
            return line;
        }
        // clap quotes the value (`invalid value '…' for '--redis-url <REDIS_URL>': why`): all
        // between the quotes is masked, found by position, since clap drops control characters
        // from the value it shows.
        const START: &str = "invalid value '";
        match (line.find(START), line.rfind("' for '")) {
            (Some(start), Some(end)) if end >= start + START.len() => {
                format!("{}***{}", &line[..start + START.len()], &line[end..])
            }
            _ => format!(
                "invalid {} (value not shown: it may hold a secret)",
                variable.as_deref().unwrap_or("value")
            ),
        }
    };
    if err.kind() == ErrorKind::MissingRequiredArgument
        && let Some(ContextValue::Strings(missing)) = err.get(ContextKind::InvalidArg)
    {
        // `--from <MIGRATE_FROM>`: the option, or the variable in brackets.
        return format!("missing {}", missing.join(", "));
    }
    match (&variable, &value, &valid) {
        (Some(variable), Some(value), Some(valid)) => {
            format!("invalid {variable}={value:?}: expected one of {valid} (any case)")
        }
        _ => first_line(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_are_checked() {
        assert!(parse_redis_url("rediss://u:p@example:6380/1").is_ok());
        assert!(
            parse_redis_url("http://x")
                .unwrap_err()
                .contains("redis://")
        );
        assert!(parse_redis_url("nonsense").is_err());
        for bare in ["localhost:6379", "127.0.0.1:6379", "redis-host"] {
            assert!(parse_redis_url(bare).unwrap_err().starts_with("no scheme"));
        }
        assert!(parse_redis_url("redis://127.0.0.1:6379/abc").is_err());
        assert!(parse_redis_url("redis://127.0.0.1:6379/").is_ok());
    }

    #[test]
    fn cluster_urls_list_their_nodes() {
        let url = parse_redis_url("redis-cluster://u:p@a:7000,b:7001, c:7002").unwrap();
        assert_eq!(
            url.expose().as_str(),
            "redis-cluster://u:p@a:7000?node=b:7001&node=c:7002"
        );
        assert!(parse_redis_url("redis-cluster://a:7000").is_ok());
        for bad in [
            "redis-cluster://",
            "redis-cluster://a:7000,",
            "redis-cluster://a:x",
            "redis-cluster://a:7000?password=s3cret",
            "redis-cluster://a:7000,b:x?token=s3cret",
        ] {
            let err = parse_redis_url(bad).unwrap_err();
            assert!(err.contains("host:port"), "{bad}: {err}");
            assert!(!err.contains("s3cret"), "{bad}: {err}");
        }
        let err = parse_redis_url("redis-cluster://a:7000,b:x").unwrap_err();
        assert!(err.starts_with("node 2 is not host:port"), "{err}");
    }

    #[test]
    fn a_malformed_env_file_is_refused_whole_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "# comment\nCHATSTATS_TEST_FIRST=1\n\nCHATSTATS_TEST_BAD='unclosed\n",
        )
        .unwrap();
        let err = load_dotenv(&path).unwrap_err();
        assert!(err.contains(".env line 4"), "{err}");
        assert!(err.contains("CHATSTATS_TEST_BAD"), "{err}");
        assert!(
            std::env::var_os("CHATSTATS_TEST_FIRST").is_none(),
            "nothing applied"
        );
    }

    #[test]
    fn cors_origins_are_taken_as_a_browser_sends_them() {
        for (given, kept) in [
            ("*", "*"),
            ("", ""),
            ("https://A.Example/", "https://a.example"),
            (
                "http://localhost:8080, https://b.example",
                "http://localhost:8080,https://b.example",
            ),
            ("https://b.example:443", "https://b.example"),
        ] {
            assert_eq!(parse_cors_origin(given).as_deref(), Ok(kept), "{given}");
        }
        for refused in [
            "a.example",
            "https://a.example/x",
            "https://a.example?q",
            "null",
            "x y",
        ] {
            assert!(parse_cors_origin(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_name_given_twice_in_an_env_file_takes_its_last_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "CHATSTATS_TEST_TWICE=first\nCHATSTATS_TEST_TWICE=last\n",
        )
        .unwrap();
        load_dotenv(&path).unwrap();
        assert_eq!(std::env::var("CHATSTATS_TEST_TWICE").unwrap(), "last");
    }

    #[test]
    fn a_malformed_env_line_is_named_without_its_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        for (text, name) in [
            (
                "A=1\nB=2\nC=3\nREDIS_URL=\"redis://:s3cret@127.0.0.1:7721\nD=4\n",
                "REDIS_URL",
            ),
            (
                "A=1\nB=2\nC=3\nREDIS_URL redis://:s3cret@127.0.0.1:7721\n",
                "REDIS_URL",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = load_dotenv(&path).unwrap_err();
            assert!(err.contains(".env line 4"), "{err}");
            assert!(err.contains(&format!("({name})")), "{err}");
            assert!(!err.contains("s3cret"), "the value is repeated: {err}");
        }
        // A lone word (a token pasted on a line of its own) is not repeated either.
        std::fs::write(&path, "A=1\nB=2\nC=3\ns3cretToken\n").unwrap();
        let err = load_dotenv(&path).unwrap_err();
        assert!(err.contains(".env line 4"), "{err}");
        assert!(!err.contains("s3cret"), "the line is repeated: {err}");
    }
}
