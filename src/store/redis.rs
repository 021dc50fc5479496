//! The Redis store: the TypeScript service's keys, one atomic script call per tally.
//!
//! Each tally is one `EVALSHA` of `lua/apply.lua`: a single round trip that is also atomic, so a
//! message is applied entirely or not at all, and the writer's sequence numbers are checked and
//! recorded in the same step (a retried call whose first reply was lost is recognised and
//! skipped). Every key the script touches is passed in `KEYS`; the layout of `KEYS` and `ARGV`
//! is written at the top of the script.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fred::prelude::*;
use fred::types::config::ReconnectPolicy;

use super::keys::Keys;
use super::{Entry, Mark, Store, StoreError};
use crate::message::{Tally, TopList};
use crate::telemetry::SecretUrl;

const APPLY_SCRIPT: &str = include_str!("lua/apply.lua");

/// How to reach Redis and how to keep data there.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL, with user and password if needed.
    pub url: SecretUrl,
    /// Key prefix.
    pub namespace: String,
    /// Longest wait for any command's reply.
    pub timeout: Duration,
    /// Distinct failed payloads kept (the newest).
    pub failed_cap: usize,
    /// Seconds a per-second message counter lives.
    pub second_ttl: u64,
}

/// A [`Store`] on Redis. Clones share one connection, which also keeps commands in order.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    keys: Keys,
    sha: Arc<str>,
    settings: Arc<RedisSettings>,
    /// The last connection error, so that a call that times out while Redis cannot be reached
    /// says why (refused, wrong password…) instead of only "timeout".
    last_error: Arc<Mutex<Option<String>>>,
}

impl RedisStore {
    /// Creates the client and starts connecting in the background; never waits for Redis, so
    /// that a service can start (and report 503) while Redis is away.
    pub fn connect(settings: RedisSettings) -> Result<RedisStore, StoreError> {
        let mut config = Config::from_url(settings.url.expose().as_str())?;
        config.fail_fast = false;
        let timeout = settings.timeout;
        let client = Builder::from_config(config)
            .with_performance_config(|perf| perf.default_command_timeout = timeout)
            .with_connection_config(|conn| {
                conn.connection_timeout = timeout;
                conn.internal_command_timeout = timeout;
                // Retries are the worker's job: it knows which tallies may be re-sent.
                conn.max_command_attempts = 1;
            })
            // Reconnect forever, at most 1 s apart: service is back within ~1 s of Redis.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 1_000, 2))
            .build()?;
        let last_error: Arc<Mutex<Option<String>>> = Arc::default();
        let errors = last_error.clone();
        client.on_error(move |(error, _)| {
            *errors.lock().unwrap_or_else(PoisonError::into_inner) = Some(describe_error(&error));
            async { Ok(()) }
        });
        let connected = last_error.clone();
        client.on_reconnect(move |_| {
            *connected.lock().unwrap_or_else(PoisonError::into_inner) = None;
            async { Ok(()) }
        });
        client.connect();
        let sha = sha1_smol::Sha1::from(APPLY_SCRIPT).digest().to_string();
        Ok(RedisStore {
            client,
            keys: Keys::new(settings.namespace.clone()),
            sha: sha.into(),
            settings: settings.into(),
            last_error,
        })
    }

    /// The underlying client, for tests and tools.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `err` in the store's terms: a timeout while Redis cannot be reached is reported with the
    /// reason it cannot be reached.
    fn fail(&self, err: Error) -> StoreError {
        let unreachable = !matches!(self.client.state(), ClientState::Connected);
        if unreachable && matches!(err.kind(), ErrorKind::Timeout | ErrorKind::Canceled) {
            let cause = self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(cause) = cause {
                return StoreError::Unreachable(cause);
            }
        }
        StoreError::Redis(err)
    }
}

/// A connection error as an operator reads it: `connection refused`, `WRONGPASS …`.
fn describe_error(err: &Error) -> String {
    let details = err.details().trim();
    match err.kind() {
        ErrorKind::IO if details.contains("Connection refused") => {
            format!("connection refused ({details})")
        }
        ErrorKind::Auth => format!("authentication failed: {details}"),
        _ if details.is_empty() => format!("{:?}", err.kind()),
        _ => details.to_owned(),
    }
}

/// The `KEYS` and `ARGV` of one call of the apply script.
pub struct ScriptCall {
    /// Every key the call touches.
    pub keys: Vec<Key>,
    /// The arguments.
    pub args: Vec<Value>,
}

/// The apply script's call for `tally` under `namespace` (public for the benchmarks).
pub fn script_call(
    namespace: &str,
    second_ttl: u64,
    failed_cap: usize,
    tally: &Tally,
    mark: Option<&Mark>,
) -> ScriptCall {
    build_call(&Keys::new(namespace), second_ttl, failed_cap, tally, mark)
}

fn build_call(
    keys: &Keys,
    second_ttl: u64,
    failed_cap: usize,
    tally: &Tally,
    mark: Option<&Mark>,
) -> ScriptCall {
    let mut call_keys = Vec::with_capacity(6 + tally.seconds.len());
    call_keys.push(Key::from(keys.writer(mark.map_or("", |m| &m.writer))));
    for list in [TopList::Words, TopList::Nicks, TopList::Rooms] {
        call_keys.push(Key::from(keys.top(list)));
    }
    call_keys.push(Key::from(keys.failed()));
    call_keys.push(Key::from(keys.failed_total()));
    call_keys.extend(
        tally
            .seconds
            .iter()
            .map(|&(second, _)| Key::from(keys.second(second))),
    );

    let pairs = tally.rooms.len() + tally.nicks.len() + tally.words.len();
    let mut args = Vec::with_capacity(7 + tally.seconds.len() + 2 * pairs + tally.failed.len());
    let int = |n: u64| Value::Integer(n as i64);
    let (seq, window) = mark.map_or((0, 1), |m| (m.seq, m.window.max(1)));
    args.push(int(seq));
    args.push(int(window));
    args.push(int(second_ttl));
    args.push(int(failed_cap as u64));
    args.push(int(tally.rooms.len() as u64));
    args.push(int(tally.nicks.len() as u64));
    args.push(int(tally.failed.len() as u64));
    args.extend(tally.seconds.iter().map(|&(_, n)| int(n)));
    for list in [&tally.rooms, &tally.nicks] {
        for (member, n) in list {
            args.push(int(*n));
            args.push(Value::Bytes(member.clone()));
        }
    }
    args.extend(tally.failed.iter().cloned().map(Value::Bytes));
    for (member, n) in &tally.words {
        args.push(int(*n));
        args.push(Value::Bytes(member.clone()));
    }
    ScriptCall {
        keys: call_keys,
        args,
    }
}

/// Text of a reply value; Redis data is bytes, so invalid UTF-8 is replaced, not rejected.
fn text(value: Value) -> String {
    match value.into_bytes() {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => String::new(),
    }
}

impl Store for RedisStore {
    async fn apply(&self, tally: &Tally, mark: Option<&Mark>) -> Result<bool, StoreError> {
        if tally.is_empty() {
            return Ok(true);
        }
        let settings = &self.settings;
        let call = || {
            build_call(
                &self.keys,
                settings.second_ttl,
                settings.failed_cap,
                tally,
                mark,
            )
        };
        let ScriptCall { keys, args } = call();
        let reply: Result<i64, _> = self.client.evalsha(&*self.sha, keys, args).await;
        let applied = match reply {
            // First use on this server, or Redis restarted: EVAL runs the call and caches the
            // script, with no separate load step for a window of calls to queue behind.
            Err(err) if err.details().starts_with("NOSCRIPT") => {
                let ScriptCall { keys, args } = call();
                self.client
                    .eval(APPLY_SCRIPT, keys, args)
                    .await
                    .map_err(|e| self.fail(e))?
            }
            other => other.map_err(|e| self.fail(e))?,
        };
        Ok(applied == 1)
    }

    async fn top(&self, list: TopList, limit: usize) -> Result<Vec<Entry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let reply: Vec<Value> = self
            .client
            .zrevrange(self.keys.top(list), 0, limit as i64 - 1, true)
            .await
            .map_err(|e| self.fail(e))?;
        let mut entries = Vec::with_capacity(reply.len() / 2);
        let mut values = reply.into_iter();
        while let (Some(member), Some(score)) = (values.next(), values.next()) {
            let count = score
                .as_f64()
                .ok_or_else(|| StoreError::Data(format!("score {score:?} is not a number")))?;
            entries.push((text(member), count.max(0.0) as u64));
        }
        Ok(entries)
    }

    async fn messages_in_second(&self, second: u64) -> Result<u64, StoreError> {
        let count: Option<u64> = self
            .client
            .get(self.keys.second(second))
            .await
            .map_err(|e| self.fail(e))?;
        Ok(count.unwrap_or(0))
    }

    async fn failed_messages(&self, limit: Option<usize>) -> Result<Vec<String>, StoreError> {
        let key = self.keys.failed();
        let kind: String = self.client.r#type(&key).await.map_err(|e| self.fail(e))?;
        if limit == Some(0) {
            return Ok(Vec::new());
        }
        let stop = limit.map_or(-1, |n| n as i64 - 1);
        let members: Vec<Value> = match kind.as_str() {
            "zset" => self.client.zrevrange(&key, 0, stop, false).await,
            "set" => match limit {
                None => self.client.smembers(&key).await,
                Some(n) => self.client.srandmember(&key, Some(n)).await,
            },
            "none" => Ok(Vec::new()),
            other => return Err(StoreError::Data(format!("{key} is a {other}"))),
        }
        .map_err(|e| self.fail(e))?;
        Ok(members.into_iter().map(text).collect())
    }

    async fn failed_total(&self) -> Result<u64, StoreError> {
        let total: Option<u64> = self
            .client
            .get(self.keys.failed_total())
            .await
            .map_err(|e| self.fail(e))?;
        Ok(total.unwrap_or(0))
    }

    async fn health(&self) -> Result<String, StoreError> {
        let _: String = self.client.ping(None).await.map_err(|e| self.fail(e))?;
        Ok("ready".to_owned())
    }

    fn describe(&self) -> String {
        format!(
            "redis at {} (namespace {:?})",
            self.settings.url,
            self.keys.namespace()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_a_call_touches_is_in_keys_and_under_the_namespace() {
        let tally = Tally {
            seconds: vec![(10, 2), (11, 1)],
            words: vec![("a".into(), 1)],
            failed: vec!["x".into()],
            ..Tally::default()
        };
        let mark = Mark {
            writer: "w1".into(),
            seq: 5,
            window: 128,
        };
        let call = script_call("ns:", 300, 1000, &tally, Some(&mark));
        let keys: Vec<String> = call
            .keys
            .iter()
            .map(|k| String::from_utf8_lossy(k.as_bytes()).into_owned())
            .collect();
        assert_eq!(
            keys,
            [
                "ns:writer:w1",
                "ns:words",
                "ns:nicks",
                "ns:rooms",
                "ns:failedMessages",
                "ns:failedMessages:total",
                "ns:messagesPerSecond:10",
                "ns:messagesPerSecond:11"
            ]
        );
        assert_eq!(call.args[0], Value::Integer(5));
        assert_eq!(call.args[1], Value::Integer(128));
    }
}
