//! Logging: `tracing` with a `RUST_LOG` filter (default `info`), pretty or JSON lines, and the
//! guarantee that no secret reaches a log line.
//!
//! Secrets enter the process in URLs (`CHAT_INTERFACE_URL` may carry its key in the query,
//! `REDIS_URL` a password). They are held by [`SecretUrl`], which only ever displays itself
//! masked, so no log line written by chatstats can show them. Dependencies log too (reqwest,
//! hyper and fred at `debug`), and their messages may embed a URL; so every secret a
//! [`SecretUrl`] holds is also registered with the log writer, which masks it in every line
//! before the line is written, whatever its level or format.

pub mod metrics;

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, PoisonError, RwLock};

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal only).
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber, filtered by `RUST_LOG` ([`DEFAULT_FILTER`] when unset or
/// empty). Safe to call more than once (later calls do nothing). A `RUST_LOG` that does not
/// parse is an error, not a silent default: its directives were meant to apply.
pub fn init(format: LogFormat) -> Result<(), String> {
    let filter = match std::env::var_os("RUST_LOG") {
        Some(spec) if !spec.is_empty() => {
            let text = spec.to_string_lossy();
            EnvFilter::builder()
                .parse(&text)
                .map_err(|err| format!("invalid RUST_LOG={text:?}: {err}"))?
        }
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr);
    let _ = match format {
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

/// The log filter without `RUST_LOG`: `info`, but for fred's warning that a page of a `ZSCAN`
/// found no caller. That is a read the API gave up at `REDIS_TIMEOUT_MS` (answered 503, and
/// logged as such): one more line per such request, up to hundreds a second under load.
pub const DEFAULT_FILTER: &str = "info,fred::protocol::responders=error";

/// The text that replaces a secret in logs.
pub(crate) const MASK: &str = "***";

/// Secrets shorter than this are not masked in free text: masking every `a` of a log line
/// would make it unreadable while protecting nothing worth protecting.
const MIN_SECRET_LEN: usize = 3;

/// Every secret seen so far, longest first, so that a secret containing another is masked whole.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers `secret` so that the log writer masks it wherever it appears (the URLs' secrets,
/// and the API's bearer tokens).
pub(crate) fn register(secret: &str) {
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(PoisonError::into_inner);
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_owned());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every registered secret replaced by [`MASK`].
pub(crate) fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(PoisonError::into_inner);
    let mut out = std::borrow::Cow::Borrowed(text);
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = std::borrow::Cow::Owned(out.replace(secret.as_str(), MASK));
        }
    }
    out
}

/// A URL that may carry secrets: a password, or a key in its query string. It displays (and
/// debug-prints) itself masked — `https://up.example/s?key=***`, `redis://user:***@host:6379` —
/// and gives the real URL only through [`SecretUrl::expose`], for the one call that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl {
    url: url::Url,
    masked: String,
}

impl SecretUrl {
    /// Wraps `url` and registers its secrets with the log writer.
    pub fn new(url: url::Url) -> SecretUrl {
        if let Some(password) = url.password() {
            register(password);
            register(&percent_decoded(password));
        }
        // A user name without a password is how a token is often given (`https://TOKEN@host`).
        if url.password().is_none() && !url.username().is_empty() {
            register(url.username());
            register(&percent_decoded(url.username()));
        }
        if let Some(fragment) = url.fragment() {
            register(fragment);
        }
        for (key, value) in url.query_pairs() {
            if is_secret(&url, &key) {
                register(&value);
            }
        }
        if let Some(query) = url.query() {
            for pair in query.split('&') {
                let (key, value) = pair.split_once('=').unwrap_or(("", pair));
                if is_secret(&url, key) {
                    register(value);
                }
            }
        }
        let masked = mask(&url);
        SecretUrl { url, masked }
    }

    /// Parses `text` as a URL.
    pub fn parse(text: &str) -> Result<SecretUrl, url::ParseError> {
        url::Url::parse(text).map(SecretUrl::new)
    }

    /// The real URL, secrets included: only for the call that connects, never for a message.
    pub(crate) fn expose(&self) -> &url::Url {
        &self.url
    }
}

fn percent_decoded(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Whether the query parameter `key` of `url` may hold a secret: any may, except the node
/// list of a Redis Cluster URL (`redis-cluster://a:7000?node=b:7001`), which names addresses.
fn is_secret(url: &url::Url, key: &str) -> bool {
    !(url.scheme().ends_with("-cluster") && key == "node")
}

/// `url` with its password (or its user name when it has no password: a token), its fragment
/// and every secret query value replaced by [`MASK`].
fn mask(url: &url::Url) -> String {
    let mut masked = url.clone();
    if masked.password().is_some() {
        let _ = masked.set_password(Some(MASK));
    } else if !masked.username().is_empty() {
        let _ = masked.set_username(MASK);
    }
    if masked.fragment().is_some() {
        masked.set_fragment(Some(MASK));
    }
    if masked.query().is_some() {
        let names: Vec<String> = masked
            .query_pairs()
            .map(|(k, v)| match is_secret(url, &k) {
                true => format!("{k}={MASK}"),
                false => format!("{k}={v}"),
            })
            .collect();
        masked.set_query(Some(&names.join("&")));
    }
    masked.to_string()
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.masked)
    }
}

/// The log writer: standard error, each line passed through [`redact`] first.
struct RedactingStderr;

/// One log record being formatted; written (redacted) when dropped, in one `write` call so that
/// lines of concurrent tasks do not interleave.
struct RedactingLine {
    buf: Vec<u8>,
}

impl Write for RedactingLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactingLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let line = redact(&text);
        static STDERR: Mutex<()> = Mutex::new(());
        let _one_at_a_time = STDERR.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingLine;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingLine {
            buf: Vec::with_capacity(256),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_url_shows_only_its_masked_form() {
        let url = SecretUrl::parse("https://up.example/s?key=abc123&x=1").unwrap();
        assert_eq!(url.to_string(), "https://up.example/s?key=***&x=***");
        assert!(!format!("{url:?}").contains("abc123"));
        assert_eq!(url.expose().query(), Some("key=abc123&x=1"));
        let redis = SecretUrl::parse("redis://user:s3cr%40t@host:6379/0").unwrap();
        assert_eq!(redis.to_string(), "redis://user:***@host:6379/0");
        // A cluster's nodes are addresses, not secrets; its password is.
        let cluster =
            SecretUrl::parse("redis-cluster://:pw@a:7000?node=b:7001&node=c:7002").unwrap();
        assert_eq!(
            cluster.to_string(),
            "redis-cluster://:***@a:7000?node=b:7001&node=c:7002"
        );
        let plain = SecretUrl::parse("redis://host:6379").unwrap();
        assert_eq!(plain.to_string(), "redis://host:6379");
    }

    #[test]
    fn a_lone_user_name_and_a_fragment_are_masked() {
        let url =
            SecretUrl::parse("https://T0KENuser@up.example/s#access_token=T0KENfrag").unwrap();
        assert_eq!(url.to_string(), "https://***@up.example/s#***");
        let url = SecretUrl::parse("redis://bob:S3CRETpw@h:6379").unwrap();
        assert_eq!(url.to_string(), "redis://bob:***@h:6379");
        assert!(!redact("connect T0KENuser failed").contains("T0KENuser"));
    }

    #[test]
    fn registered_secrets_are_masked_in_any_text() {
        let _ = SecretUrl::parse("http://h/?token=tok-9f8e7d&a=b").unwrap();
        let _ = SecretUrl::parse("redis://u:pa%24%24word@h").unwrap();
        assert_eq!(
            redact("GET http://h/?token=tok-9f8e7d failed"),
            "GET http://h/?token=*** failed"
        );
        assert_eq!(redact("auth pa$$word"), "auth ***");
        assert_eq!(redact("auth pa%24%24word"), "auth ***");
        // One-letter values are not masked in free text.
        assert_eq!(redact("a b"), "a b");
    }
}
