//! The Redis store: the TypeScript service's keys, one atomic script call per tally.
//!
//! Each tally is one `EVALSHA` of `lua/apply.lua`: a single round trip that is also atomic, so a
//! message is applied entirely or not at all, and the writer's sequence watermark is checked and
//! moved in the same step (a retried call whose first reply was lost is recognised and skipped).
//! Script arguments: `ns, writer, seq, second-ttl, failed-cap, #seconds, #rooms, #nicks,
//! #failed`, then `second, n` pairs, `n, room` pairs, `n, nick` pairs, failed payloads, and
//! `n, word` pairs to the end.

use std::time::Duration;

use fred::prelude::*;
use fred::types::config::ReconnectPolicy;

use super::keys::Keys;
use super::{Entry, Mark, Store, StoreError};
use crate::message::{Tally, TopList};

const APPLY_SCRIPT: &str = include_str!("lua/apply.lua");

/// How to reach Redis and how to keep data there.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL, with user and password if needed.
    pub url: String,
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
    sha: std::sync::Arc<str>,
    settings: std::sync::Arc<RedisSettings>,
}

impl RedisStore {
    /// Creates the client and starts connecting in the background; never waits for Redis, so
    /// that a service can start (and report 503) while Redis is away.
    pub fn connect(settings: RedisSettings) -> Result<RedisStore, StoreError> {
        let mut config = Config::from_url(&settings.url)?;
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
        client.connect();
        let sha = sha1_smol::Sha1::from(APPLY_SCRIPT).digest().to_string();
        Ok(RedisStore {
            client,
            keys: Keys::new(settings.namespace.clone()),
            sha: sha.into(),
            settings: settings.into(),
        })
    }

    /// The key names in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The underlying client, for tests and tools.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The arguments of one `EVALSHA` of the apply script (layout in the module docs).
pub fn script_args(
    namespace: &str,
    second_ttl: u64,
    failed_cap: usize,
    tally: &Tally,
    mark: Option<&Mark>,
) -> Vec<Value> {
    let pairs = tally.seconds.len() + tally.rooms.len() + tally.nicks.len() + tally.words.len();
    let mut args = Vec::with_capacity(9 + 2 * pairs + tally.failed.len());
    let int = |n: usize| Value::Integer(n as i64);
    args.push(Value::String(namespace.into()));
    match mark {
        Some(mark) => {
            args.push(Value::String(mark.writer.as_ref().into()));
            args.push(Value::Integer(mark.seq as i64));
        }
        None => {
            args.push(Value::String("".into()));
            args.push(Value::Integer(0));
        }
    }
    args.push(Value::Integer(second_ttl as i64));
    args.push(int(failed_cap));
    args.push(int(tally.seconds.len()));
    args.push(int(tally.rooms.len()));
    args.push(int(tally.nicks.len()));
    args.push(int(tally.failed.len()));
    for &(second, n) in &tally.seconds {
        args.push(Value::Integer(second as i64));
        args.push(Value::Integer(n as i64));
    }
    for list in [&tally.rooms, &tally.nicks] {
        for (member, n) in list {
            args.push(Value::Integer(*n as i64));
            args.push(Value::Bytes(member.clone()));
        }
    }
    args.extend(tally.failed.iter().cloned().map(Value::Bytes));
    for (member, n) in &tally.words {
        args.push(Value::Integer(*n as i64));
        args.push(Value::Bytes(member.clone()));
    }
    args
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
        let args = || {
            script_args(
                self.keys.namespace(),
                settings.second_ttl,
                settings.failed_cap,
                tally,
                mark,
            )
        };
        let reply: Result<i64, _> = self.client.evalsha(&*self.sha, (), args()).await;
        let applied = match reply {
            // First use on this server, or Redis restarted: EVAL runs the call and caches the
            // script, with no separate load step for a window of calls to queue behind.
            Err(err) if err.details().starts_with("NOSCRIPT") => {
                self.client.eval(APPLY_SCRIPT, (), args()).await?
            }
            other => other?,
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
            .await?;
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
        let count: Option<u64> = self.client.get(self.keys.second(second)).await?;
        Ok(count.unwrap_or(0))
    }

    async fn failed_messages(&self) -> Result<Vec<String>, StoreError> {
        let key = self.keys.failed();
        let kind: String = self.client.r#type(&key).await?;
        let members: Vec<Value> = match kind.as_str() {
            "zset" => self.client.zrevrange(&key, 0, -1, false).await?,
            "set" => self.client.smembers(&key).await?,
            "none" => Vec::new(),
            other => return Err(StoreError::Data(format!("{key} is a {other}"))),
        };
        Ok(members.into_iter().map(text).collect())
    }

    async fn failed_total(&self) -> Result<u64, StoreError> {
        let total: Option<u64> = self.client.get(self.keys.failed_total()).await?;
        Ok(total.unwrap_or(0))
    }

    async fn health(&self) -> Result<String, StoreError> {
        let _: String = self.client.ping(None).await?;
        Ok("ready".to_owned())
    }

    fn describe(&self) -> String {
        format!(
            "redis at {} (namespace {:?})",
            crate::config::mask_url(&self.settings.url),
            self.keys.namespace()
        )
    }
}
