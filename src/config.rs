//! Settings: environment variables (also read from `.env`) and the equivalent flags.
//!
//! The variable names are the TypeScript service's, so its `.env` files keep working. Every
//! value is validated once, at start; a bad one stops the process with one line naming the
//! variable and what it expects.

use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

use crate::source::http::HttpSettings;
use crate::store::redis::RedisSettings;
use crate::worker::WorkerSettings;

/// How the upstream is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamMode {
    /// `CHAT_INTERFACE_URL` is an endless HTTP stream, followed across reconnects.
    Http,
    /// `CHAT_INTERFACE_URL` is a file path (or `-` for stdin), processed to its end.
    Text,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Logging settings (`RUST_LOG` sets the filter, default `info`).
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
}

/// Where Redis is and how data is kept there.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS); overrides
    /// REDIS_HOST and REDIS_PORT.
    #[arg(long, env = "REDIS_URL", value_name = "REDIS_URL", value_parser = parse_redis_url)]
    pub redis_url: Option<String>,
    /// Redis host, used when REDIS_URL is not set.
    #[arg(
        long,
        env = "REDIS_HOST",
        value_name = "REDIS_HOST",
        default_value = "localhost"
    )]
    pub redis_host: String,
    /// Redis port, used when REDIS_URL is not set.
    #[arg(
        long,
        env = "REDIS_PORT",
        value_name = "REDIS_PORT",
        default_value_t = 6379
    )]
    pub redis_port: u16,
    #[command(flatten)]
    pub data: DataArgs,
}

/// Settings shared by every store.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Prefix of every Redis key.
    #[arg(
        long,
        env = "REDIS_NAMESPACE",
        value_name = "REDIS_NAMESPACE",
        default_value = "chat-stats:"
    )]
    pub redis_namespace: String,
    /// Longest wait for a Redis reply, in milliseconds.
    #[arg(long, env = "REDIS_TIMEOUT_MS", value_name = "REDIS_TIMEOUT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub redis_timeout_ms: u64,
    /// Distinct failed payloads kept (the newest).
    #[arg(long, env = "FAILED_MESSAGES_MAX", value_name = "FAILED_MESSAGES_MAX", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub failed_messages_max: u64,
}

impl RedisArgs {
    /// The effective Redis URL: REDIS_URL, or one built from REDIS_HOST and REDIS_PORT.
    pub fn url(&self) -> String {
        match &self.redis_url {
            Some(url) => url.clone(),
            None => format!("redis://{}:{}", self.redis_host, self.redis_port),
        }
    }

    /// Settings of the Redis store.
    pub fn settings(&self) -> RedisSettings {
        self.data.redis_settings(self.url())
    }
}

impl DataArgs {
    /// Settings of a Redis store at `url`.
    pub fn redis_settings(&self, url: String) -> RedisSettings {
        RedisSettings {
            url,
            namespace: self.redis_namespace.clone(),
            timeout: Duration::from_millis(self.redis_timeout_ms),
            failed_cap: self.failed_messages_max as usize,
            second_ttl: SECOND_TTL,
        }
    }
}

/// Seconds a per-second message counter is kept.
pub const SECOND_TTL: u64 = 300;

/// Where the API listens and how it answers.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Address the API listens on.
    #[arg(
        long,
        env = "NODE_HOST",
        value_name = "NODE_HOST",
        default_value = "0.0.0.0"
    )]
    pub node_host: std::net::IpAddr,
    /// Port the API listens on.
    #[arg(
        long,
        env = "NODE_PORT",
        value_name = "NODE_PORT",
        default_value_t = 3000
    )]
    pub node_port: u16,
    /// Allowed CORS origins, comma-separated; `*` allows any, empty turns CORS off.
    #[arg(
        long,
        env = "CORS_ORIGIN",
        value_name = "CORS_ORIGIN",
        default_value = "*"
    )]
    pub cors_origin: String,
    /// How long top lists are cached and shared between requests, in milliseconds (0: off).
    #[arg(long, env = "STATS_CACHE_MS", value_name = "STATS_CACHE_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub stats_cache_ms: u64,
}

/// Where the upstream is and how it is followed.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Upstream stream URL (http mode) or file path, `-` for stdin (text mode).
    #[arg(long, env = "CHAT_INTERFACE_URL", value_name = "CHAT_INTERFACE_URL")]
    pub chat_interface_url: Option<String>,
    /// `http` or `text`.
    #[arg(
        long,
        env = "RESPONSE_STREAM_MODE",
        value_name = "RESPONSE_STREAM_MODE",
        default_value = "http",
        ignore_case = true
    )]
    pub response_stream_mode: StreamMode,
    /// Longest upstream line in bytes; a longer one becomes a failed message.
    #[arg(long, env = "MAX_LINE_BYTES", value_name = "MAX_LINE_BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(64..=(64 << 20)))]
    pub max_line_bytes: u64,
    /// Longest upstream silence before reconnecting, in milliseconds.
    #[arg(long, env = "READ_TIMEOUT_MS", value_name = "READ_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub read_timeout_ms: u64,
    /// First reconnect delay in milliseconds (doubles per failure, with jitter).
    #[arg(long, env = "RECONNECT_MIN_MS", value_name = "RECONNECT_MIN_MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay in milliseconds.
    #[arg(long, env = "RECONNECT_MAX_MS", value_name = "RECONNECT_MAX_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub reconnect_max_ms: u64,
}

/// How the worker records messages.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Store calls (one per message) in flight at most.
    #[arg(long, env = "IN_FLIGHT", value_name = "IN_FLIGHT", default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub in_flight: u64,
    /// Failed payloads are kept cut to this many bytes.
    #[arg(long, env = "FAILED_PAYLOAD_MAX_BYTES", value_name = "FAILED_PAYLOAD_MAX_BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(16..=(1 << 20)))]
    pub failed_payload_max_bytes: u64,
    /// Coalescing mode for backfills and firehoses: merge the counts of all messages read within
    /// this many milliseconds into one Redis call (0: off, one call per message). Exact either way.
    #[arg(long, env = "FLUSH_INTERVAL_MS", value_name = "FLUSH_INTERVAL_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub flush_interval_ms: u64,
    /// Coalescing mode: a merged call carries at most this many messages.
    #[arg(long, env = "FLUSH_MAX_MESSAGES", value_name = "FLUSH_MAX_MESSAGES", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub flush_max_messages: u64,
    /// Seconds between progress log lines (0: none).
    #[arg(
        long,
        env = "PROGRESS_INTERVAL_SECS",
        value_name = "PROGRESS_INTERVAL_SECS",
        default_value_t = 10
    )]
    pub progress_interval_secs: u64,
}

impl WorkerArgs {
    /// The worker's settings.
    pub fn settings(&self) -> WorkerSettings {
        WorkerSettings {
            window: self.in_flight as usize,
            failed_payload_max: self.failed_payload_max_bytes as usize,
            progress_interval: Duration::from_secs(self.progress_interval_secs),
            flush_interval: (self.flush_interval_ms > 0)
                .then(|| Duration::from_millis(self.flush_interval_ms)),
            flush_max_messages: self.flush_max_messages as usize,
            ..WorkerSettings::default()
        }
    }
}

/// Where the stream comes from, validated.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// An endless HTTP stream.
    Http(HttpSettings),
    /// A file path or `-`, read to its end.
    Text {
        /// The path, or `-` for stdin.
        path: String,
        /// Longest line.
        line_cap: usize,
    },
}

impl SourceArgs {
    /// The upstream, or `None` when CHAT_INTERFACE_URL is not set.
    pub fn upstream(&self) -> Result<Option<Upstream>, ConfigError> {
        let Some(location) = self
            .chat_interface_url
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        else {
            return Ok(None);
        };
        let line_cap = self.max_line_bytes as usize;
        Ok(Some(match self.response_stream_mode {
            StreamMode::Text => Upstream::Text {
                path: location.to_owned(),
                line_cap,
            },
            StreamMode::Http => {
                let url = url::Url::parse(location)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| ConfigError::invalid("CHAT_INTERFACE_URL", location, "an http:// or https:// URL (or set RESPONSE_STREAM_MODE=text for a file)"))?;
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

/// A configuration error found after parsing (values that depend on each other).
#[derive(Debug, thiserror::Error)]
#[error("invalid {name}={value:?}: expected {expected}")]
pub struct ConfigError {
    name: &'static str,
    value: String,
    expected: std::borrow::Cow<'static, str>,
}

impl ConfigError {
    /// `name` holds `value`, which is not `expected`.
    pub fn invalid(
        name: &'static str,
        value: &str,
        expected: impl Into<std::borrow::Cow<'static, str>>,
    ) -> ConfigError {
        ConfigError {
            name,
            value: mask_url(value),
            expected: expected.into(),
        }
    }

    /// A required variable is missing.
    pub fn missing(name: &'static str, expected: &'static str) -> ConfigError {
        ConfigError {
            name,
            value: String::new(),
            expected: expected.into(),
        }
    }
}

pub(crate) fn parse_redis_url(value: &str) -> Result<String, String> {
    let url = url::Url::parse(value)
        .map_err(|e| format!("not a URL ({e}); expected redis://[user:password@]host:port"))?;
    match url.scheme() {
        "redis" | "rediss" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(value.to_owned()),
        "redis" | "rediss" => Err("the URL has no host; expected redis://host:port".to_owned()),
        other => Err(format!(
            "scheme {other}:// is not supported; expected redis:// or rediss://"
        )),
    }
}

/// Parses an event rate: a finite number of events per second, 0 or more (0: unpaced).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!(
            "expected events per second, a number of 0 or more (0: as fast as possible), got `{text}`"
        )),
    }
}

/// `url` with any password replaced by `***`, for logs.
/// Query values are masked too: upstream URLs often carry their key there.
pub fn mask_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let names: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let masked: Vec<String> = names.iter().map(|k| format!("{k}=***")).collect();
        parsed.set_query(Some(&masked.join("&")));
    }
    parsed.to_string()
}

/// Parses the command line and environment (after loading `.env`). `--help` and `--version`
/// print and exit 0; any error prints one line naming the variable and exits 2.
pub fn parse<T: Parser>() -> T {
    // A missing .env is normal; a malformed one is worth saying, but not fatal.
    if let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        eprintln!("warning: .env ignored: {err}");
    }
    match T::try_parse() {
        Ok(args) => args,
        Err(err) => match err.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                err.exit()
            }
            _ => {
                let rendered = err.render().to_string();
                let line = rendered
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("invalid configuration");
                eprintln!("{}", line.trim_start_matches("error: "));
                std::process::exit(2);
            }
        },
    }
}

/// Prints a configuration error as one line and exits 2.
pub fn fail(err: impl std::fmt::Display) -> ! {
    eprintln!("{err}");
    std::process::exit(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_url("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(mask_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(
            mask_url("https://up.example/s?key=abc&x=1"),
            "https://up.example/s?key=***&x=***"
        );
        assert_eq!(mask_url("stream.txt"), "stream.txt");
    }

    #[test]
    fn redis_urls_are_checked() {
        assert!(parse_redis_url("rediss://u:p@example:6380/1").is_ok());
        assert!(
            parse_redis_url("http://x")
                .unwrap_err()
                .contains("redis://")
        );
        assert!(parse_redis_url("nonsense").is_err());
    }
}
