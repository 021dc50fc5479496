//! The Redis store: the TypeScript service's keys, one atomic script call per tally.
//!
//! Each tally is one `EVALSHA` of `lua/apply.lua`, each detail (statistics by room, nick, emote
//! and time) one of `lua/detail.lua`: a single round trip that is also atomic, so a message is
//! applied entirely or not at all, and the writer's sequence numbers are checked and recorded in
//! the same step (`lua/mark.lua`: a retried call whose first reply was lost is recognised and
//! skipped). Every key a script touches is passed in `KEYS`; the layout of `KEYS` and `ARGV` is
//! written at the top of each script. Hours and days are rolled up from minutes by
//! [`Store::maintain`] (`lua/rollup.lua`); top lists over several buckets are read without
//! merging them (`lua/top.lua`). A nick's all-time lists are written as one appended record per
//! nick and call, folded into its sorted sets past 4 KiB (`lua/records.lua`), and read as the
//! two summed (`lua/nick_top.lua`).
//!
//! Here: the connection, the scripts, and the [`Store`] trait's reads and writes. How tallies
//! and details become script calls is in `calls.rs`, the roll-up in `rollup.rs`, the live feed's
//! reader in `live.rs`, the inbox in `inbox.rs`, and Redis Cluster's shards in `shards.rs`.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use fred::prelude::*;
use fred::types::config::ReconnectPolicy;

use super::keys::Keys;
use super::{
    Entry, HistoryPage, LIVE_BACKLOG, Live, Mark, Profile, Store, StoreError, rank_entries,
};
use crate::detail::{Detail, Period, Scope, Seen};
use crate::message::{Tally, TopList};
use crate::telemetry::SecretUrl;
use crate::timeline::{Bucket, Granularity, Retention, Rolled, now_ms};

mod calls;
mod inbox;
mod live;
mod rollup;
mod shards;

pub(crate) use calls::parse_records;
pub use calls::{ApplyCalls, DetailCalls, ScriptCall};
use calls::{build_call, detail_call, list_letter};
pub use inbox::{GROUP, InboxEntry};
use live::{stream_entries, tail};
pub use shards::{DEFAULT_CLUSTER_SHARDS, RedisStore};

/// A Lua script, run by `EVALSHA` (its SHA1 computed once).
struct Script {
    text: &'static str,
    sha: OnceLock<String>,
}

impl Script {
    const fn new(text: &'static str) -> Script {
        Script {
            text,
            sha: OnceLock::new(),
        }
    }

    fn sha(&self) -> &str {
        self.sha
            .get_or_init(|| sha1_smol::Sha1::from(self.text).digest().to_string())
    }
}

/// Applies a tally of the all-time lists.
static APPLY: Script = Script::new(concat!(
    include_str!("lua/mark.lua"),
    include_str!("lua/apply.lua")
));
/// Applies a [`Detail`].
static DETAIL: Script = Script::new(concat!(
    include_str!("lua/mark.lua"),
    include_str!("lua/records.lua"),
    include_str!("lua/detail.lua")
));
/// The top of one of a nick's all-time lists, its pending increments included.
static NICK_TOP: Script = Script::new(concat!(
    include_str!("lua/records.lua"),
    include_str!("lua/nick_top.lua")
));
/// The top of several sorted sets summed.
static TOP: Script = Script::new(include_str!("lua/top.lua"));
/// The top of a room's all-time list and its minutes not folded into it yet.
static ROOM_TOP: Script = Script::new(concat!(
    include_str!("lua/unfolded.lua"),
    "local KEYS = unfolded(1)\n",
    include_str!("lua/top.lua")
));
/// A room's unique chatters of all time, its minutes not folded yet included.
static ROOM_CHATTERS: Script = Script::new(concat!(
    include_str!("lua/unfolded.lua"),
    "local KEYS = unfolded(0)\n",
    include_str!("lua/room_chatters.lua")
));
/// Fields of several hashes.
static FIELDS: Script = Script::new(include_str!("lua/fields.lua"));
/// Distinct members of several sorted sets.
static UNION_SIZE: Script = Script::new(include_str!("lua/union_size.lua"));
/// Rolls one scope's minutes up into an hour (or hours into a day).
static ROLLUP: Script = Script::new(include_str!("lua/rollup.lua"));
/// Marks an hour rolled up unless rooms still wait for it to fold their minutes.
static ROLLUP_DONE: Script = Script::new(include_str!("lua/rollup_done.lua"));
/// One page of the history.
static HISTORY: Script = Script::new(include_str!("lua/history.lua"));
/// One recorded message by id.
static MESSAGE: Script = Script::new(include_str!("lua/message.lua"));
/// How many members of one list rank above a member (Redis Cluster: a nick's rank).
static RANK: Script = Script::new(concat!(
    include_str!("lua/bytes.lua"),
    include_str!("lua/rank.lua")
));
/// Appends posted payloads to the inbox.
static INBOX_APPEND: Script = Script::new(concat!(
    include_str!("lua/mark.lua"),
    include_str!("lua/inbox_append.lua")
));

/// How long a room's minutes of an hour outlive their retention while they wait for the
/// hour's roll-up to add them to its all-time lists (a worker down that long loses them).
const FOLD_GRACE_SECS: u64 = 30 * 86_400;
/// Ids of an index read at most for one page of a nick's messages in one room.
const HISTORY_SCAN_IDS: usize = 2000;

/// How to reach Redis and how to keep data there.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL, with user and password if needed; `redis-cluster://` or
    /// `rediss-cluster://` (fred's form: `?node=host:port` for every further node) for Redis
    /// Cluster.
    pub url: SecretUrl,
    /// Key prefix.
    pub namespace: String,
    /// Longest wait for any command's reply.
    pub timeout: Duration,
    /// Distinct failed payloads kept (the newest).
    pub failed_cap: usize,
    /// Seconds a per-second message counter lives.
    pub second_ttl: u64,
    /// How long time buckets are kept.
    pub retention: Retention,
    /// On Redis Cluster, the number of shards the keys are spread over (see `shards.rs`); it
    /// must never change while data is kept. Ignored on a standalone Redis.
    pub cluster_shards: usize,
}

/// The keys of one namespace on one Redis client: the whole store on a standalone Redis, one
/// shard of it on Redis Cluster (see `shards.rs`). Clones share one connection, which also
/// keeps commands in order.
#[derive(Clone)]
pub(crate) struct Shard {
    client: Client,
    keys: Keys,
    settings: Arc<RedisSettings>,
    /// The last connection error, so that a call that times out while Redis cannot be reached
    /// says why (refused, wrong password…) instead of only "timeout".
    last_error: LastError,
    /// The live feed, read from the history stream by one task once someone subscribes.
    live: Arc<tokio::sync::OnceCell<tokio::sync::broadcast::Sender<Live>>>,
}

/// Where a client's last connection error is kept, for errors that would only say "timeout".
type LastError = Arc<Mutex<Option<String>>>;

/// Creates the client for `settings` (standalone or cluster, by the URL's scheme) and starts
/// connecting in the background; never waits for Redis, so that a service can start (and report
/// 503) while Redis is away. Returns the client and where its last connection error is kept.
fn connect_client(settings: &RedisSettings) -> Result<(Client, LastError), StoreError> {
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
    let last_error: LastError = Arc::default();
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
    keep_connected(&client);
    Ok((client, last_error))
}

/// Starts `client`'s connection task, and starts it again whenever it ends on an error. fred
/// ends that task on some routing errors (an `ASK` redirection while a Redis Cluster slot
/// migrates, with one attempt per command), and every later command then timed out for good:
/// a worker stalled until restarted. Once started again, commands queued meanwhile are sent.
fn keep_connected(client: &Client) {
    let client = client.clone();
    tokio::spawn(async move {
        loop {
            match client.connect().await {
                Ok(Err(err)) if !err.is_canceled() => {
                    tracing::warn!(error = %describe_error(&err), "the Redis connection stopped; connecting again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => return,
            }
        }
    });
}

impl Shard {
    /// The shard of `client` whose keys start with `namespace`.
    fn new(
        client: Client,
        namespace: String,
        settings: Arc<RedisSettings>,
        last_error: LastError,
    ) -> Shard {
        Shard {
            client,
            keys: Keys::new(namespace),
            settings,
            last_error,
            live: Arc::default(),
        }
    }

    /// Runs `script` with `call`'s keys and arguments: `EVALSHA`, or `EVAL` when Redis does not
    /// know the script yet (first use, or Redis restarted), which also caches it, with no
    /// separate load step for a window of calls to queue behind.
    async fn run<R: FromValue>(
        &self,
        script: &Script,
        call: impl Fn() -> ScriptCall,
    ) -> Result<R, StoreError> {
        let ScriptCall { keys, args } = call();
        match self.client.evalsha(script.sha(), keys, args).await {
            Err(err) if err.details().starts_with("NOSCRIPT") => {
                let ScriptCall { keys, args } = call();
                self.client
                    .eval(script.text, keys, args)
                    .await
                    .map_err(|e| self.fail(e))
            }
            other => other.map_err(|e| self.fail(e)),
        }
    }

    /// The key of `list` of `scope` in `period`.
    fn place_key(&self, list: TopList, scope: &Scope, period: &Period) -> Key {
        Key::from(match period {
            Period::AllTime => self.keys.list(scope, list),
            Period::Bucket(bucket) => self.keys.bucket_list(scope, list, *bucket),
        })
    }

    /// Why the client is not connected, when a connection attempt said why.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Why Redis cannot be reached, when the client is not connected and knows why.
    pub(crate) fn unreachable(&self) -> Option<String> {
        match self.client.state() {
            ClientState::Connected => None,
            _ => self.last_error(),
        }
    }

    /// `err` in the store's terms: a timeout while Redis cannot be reached is reported with the
    /// reason it cannot be reached.
    fn fail(&self, err: Error) -> StoreError {
        if matches!(err.kind(), ErrorKind::Timeout | ErrorKind::Canceled) {
            if let Some(cause) = self.unreachable() {
                return StoreError::Unreachable(cause);
            }
        }
        StoreError::Redis(err)
    }

    /// Whether this Redis runs in cluster mode (`INFO cluster`).
    pub(crate) async fn cluster_node(&self) -> Result<bool, StoreError> {
        let info: String = self
            .client
            .info(Some(fred::types::InfoKind::Cluster))
            .await
            .map_err(|e| self.fail(e))?;
        Ok(info.lines().any(|line| line.trim() == "cluster_enabled:1"))
    }
}

/// A connection error as an operator reads it: `connection refused`, `WRONGPASS …`.
pub(crate) fn describe_error(err: &Error) -> String {
    let details = err.details().trim();
    match err.kind() {
        // An I/O error's details are its debug form (`Os { code: 111, kind: ConnectionRefused,
        // message: "Connection refused" }`): its message is what a reader wants.
        // A custom one's (`Custom { kind: Uncategorized, error: "failed to lookup address
        // information: …" }`, a host that does not resolve) is its `error`.
        ErrorKind::IO => match details
            .split_once("message: \"")
            .or_else(|| details.split_once("error: \""))
        {
            Some((_, rest)) => rest
                .split_once('"')
                .map_or(rest, |(message, _)| message)
                .to_lowercase(),
            None => details.to_owned(),
        },
        ErrorKind::Auth => format!("authentication failed: {details}"),
        _ if details.is_empty() => format!("{:?}", err.kind()),
        _ => details.to_owned(),
    }
}

impl Shard {
    /// The `limit` best sums over the sorted sets `keys`, each read in pages (`ZSCAN`) and
    /// summed here: Redis answers other clients between the pages. The sums are of scores as
    /// each page read them, so a set written meanwhile counts as of that moment.
    async fn top_from_pages(&self, keys: &[Key], limit: usize) -> Result<Vec<Entry>, StoreError> {
        use fred::types::scan::Scanner;
        use futures::TryStreamExt;
        let mut sums: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
        for key in keys {
            // A scan may give a member twice (while Redis rehashes): each once per set.
            let mut scores: std::collections::HashMap<String, f64> =
                std::collections::HashMap::new();
            let mut pages = std::pin::pin!(self.client.zscan(key.clone(), "*", Some(1000)));
            while let Some(mut page) = pages.try_next().await.map_err(|e| self.fail(e))? {
                for (member, score) in page.take_results().unwrap_or_default() {
                    scores.insert(text(member), score);
                }
            }
            for (member, score) in scores {
                *sums.entry(member).or_default() += score;
            }
        }
        let entries = sums
            .into_iter()
            .map(|(member, sum)| (member, sum.max(0.0) as u64))
            .collect();
        Ok(rank_entries(entries, limit))
    }

    /// The `limit` highest of one sorted set, in `ZREVRANGE` order.
    async fn top_of(&self, key: Key, limit: usize) -> Result<Vec<Entry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let reply: Vec<Value> = self
            .client
            .zrevrange(key, 0, limit as i64 - 1, true)
            .await
            .map_err(|e| self.fail(e))?;
        entries(reply)
    }
}

/// `member, score, member, score…` as entries.
fn entries(reply: Vec<Value>) -> Result<Vec<Entry>, StoreError> {
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

/// A history cursor of this store: `r` and a stream entry id (never `0-0`, below every id),
/// then, within a row of a room's or nick's index, `~` and the position (2 or more) whose ids
/// before it come next (`lua/history.lua`).
fn cursor_position(cursor: &str) -> Option<(&str, Option<u64>)> {
    let number = |text: &str| {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
    };
    let rest = cursor.strip_prefix('r')?;
    let (id, within) = match rest.split_once('~') {
        Some((id, position)) => (id, Some(number(position).filter(|p| *p >= 2)?)),
        None => (rest, None),
    };
    let (ms, seq) = id.split_once('-')?;
    let (ms, seq) = (number(ms)?, number(seq)?);
    (ms > 0 || seq > 0).then_some((id, within))
}

/// Text of a reply value; Redis data is bytes, so invalid UTF-8 is replaced, not rejected.
fn text(value: Value) -> String {
    match value.into_bytes() {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => String::new(),
    }
}

impl Store for Shard {
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
        let applied: i64 = self.run(&APPLY, call).await?;
        Ok(applied == 1)
    }

    async fn apply_detail(&self, detail: &Detail, mark: Option<&Mark>) -> Result<bool, StoreError> {
        if detail.is_empty() {
            return Ok(true);
        }
        let now = now_ms();
        let call = || detail_call(&self.keys, &self.settings.retention, detail, mark, now);
        let applied: i64 = self.run(&DETAIL, call).await?;
        Ok(applied == 1)
    }

    async fn top_in(
        &self,
        list: TopList,
        scope: &Scope,
        periods: &[Period],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        if limit == 0 || periods.is_empty() {
            return Ok(Vec::new());
        }
        if let (Scope::Nick(_), [Period::AllTime]) = (scope, periods) {
            let call = || ScriptCall {
                keys: vec![
                    self.place_key(list, scope, &Period::AllTime),
                    Key::from(self.keys.pending(scope)),
                ],
                args: vec![
                    Value::from(list_letter(list).to_string()),
                    Value::Integer(limit as i64),
                ],
            };
            let reply: Vec<Value> = self.run(&NICK_TOP, call).await?;
            return Ok(rank_entries(entries(reply)?, limit));
        }
        if let (Scope::Room(_), [Period::AllTime]) = (scope, periods)
            && let Some(hours) = self.unfolded_hours(scope).await?
        {
            let call = || self.unfolded_call(list, scope, &hours, Value::Integer(limit as i64));
            let reply: Vec<Value> = self.run(&ROOM_TOP, call).await?;
            if let [_] = reply.as_slice() {
                // Too many members for one call: read in pages, again should an hour be
                // folded meanwhile (its minutes would count twice).
                let mut hours = hours;
                loop {
                    let keys = self.unfolded_call(list, scope, &hours, Value::Null).keys;
                    let top = self.top_from_pages(&keys[1..], limit).await?;
                    let now = self.unfolded_hours(scope).await?.unwrap_or_default();
                    if now.first() == hours.first() {
                        return Ok(top);
                    }
                    hours = now;
                }
            }
            return Ok(rank_entries(entries(reply)?, limit));
        }
        if let [period] = periods {
            return self
                .top_of(self.place_key(list, scope, period), limit)
                .await;
        }
        let call = || ScriptCall {
            keys: periods
                .iter()
                .map(|p| self.place_key(list, scope, p))
                .collect(),
            args: vec![Value::Integer(limit as i64)],
        };
        let reply: Vec<Value> = self.run(&TOP, call).await?;
        if let [members] = reply.as_slice() {
            // Too many members to merge in one call without holding Redis up (`top.lua`).
            tracing::debug!(members = ?members, "a top list merged from pages");
            let keys: Vec<Key> = periods
                .iter()
                .map(|p| self.place_key(list, scope, p))
                .collect();
            return self.top_from_pages(&keys, limit).await;
        }
        Ok(rank_entries(entries(reply)?, limit))
    }

    async fn activity(&self, scope: &Scope, buckets: &[Bucket]) -> Result<Vec<u64>, StoreError> {
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        // Fields grouped by their hash, in bucket order (buckets come oldest first, and a
        // hash holds consecutive buckets).
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for bucket in buckets {
            let (key, field) = self.keys.activity(scope, *bucket);
            match groups.last_mut() {
                Some((last, fields)) if *last == key => fields.push(field),
                _ => groups.push((key, vec![field])),
            }
        }
        let call = || {
            let mut args = Vec::new();
            for (_, fields) in &groups {
                args.push(Value::Integer(fields.len() as i64));
                args.extend(fields.iter().map(|f| Value::from(f.as_str())));
            }
            ScriptCall {
                keys: groups.iter().map(|(k, _)| Key::from(k.as_str())).collect(),
                args,
            }
        };
        let reply: Vec<Value> = self.run(&FIELDS, call).await?;
        Ok(reply.into_iter().map(|v| v.as_u64().unwrap_or(0)).collect())
    }

    async fn profile(&self, kind: Seen, name: &str) -> Result<Option<Profile>, StoreError> {
        let list = match kind {
            Seen::Room => TopList::Rooms,
            Seen::Nick => TopList::Nicks,
        };
        let pipeline = self.client.pipeline();
        let queued = async {
            let _: () = pipeline.zscore(self.keys.top(list), name).await?;
            let _: () = pipeline.zscore(self.keys.seen(kind, false), name).await?;
            let _: () = pipeline.zscore(self.keys.seen(kind, true), name).await?;
            let _: () = pipeline.zrevrank(self.keys.top(list), name, false).await?;
            pipeline.all::<Vec<Value>>().await
        };
        let values = queued.await.map_err(|e| self.fail(e))?;
        let number = |i: usize| values.get(i).and_then(Value::as_f64);
        let Some(messages) = number(0) else {
            return Ok(None);
        };
        Ok(Some(Profile {
            messages: messages.max(0.0) as u64,
            first_ms: number(1).map(|ms| ms as u64),
            last_ms: number(2).map(|ms| ms as u64),
            rank: match kind {
                Seen::Nick => number(3).map(|r| r as u64 + 1),
                Seen::Room => None,
            },
        }))
    }

    async fn unique_chatters(&self, room: &str, periods: &[Period]) -> Result<u64, StoreError> {
        if periods.is_empty() {
            return Ok(0);
        }
        let scope = Scope::Room(bytes::Bytes::copy_from_slice(room.as_bytes()));
        if let [Period::AllTime] = periods
            && let Some(hours) = self.unfolded_hours(&scope).await?
        {
            let call = || {
                let mut call = self.unfolded_call(TopList::Nicks, &scope, &hours, Value::Null);
                call.args.remove(0);
                call
            };
            let count: i64 = self.run(&ROOM_CHATTERS, call).await?;
            return Ok(count.max(0) as u64);
        }
        let call = || ScriptCall {
            keys: periods
                .iter()
                .map(|p| self.place_key(TopList::Nicks, &scope, p))
                .collect(),
            args: Vec::new(),
        };
        let count: i64 = self.run(&UNION_SIZE, call).await?;
        Ok(count.max(0) as u64)
    }

    fn rolls_up(&self) -> bool {
        true
    }

    async fn history(
        &self,
        scope: &Scope,
        in_room: Option<&[u8]>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let indexed = *scope != Scope::Global;
        // Past a row (exclusive), or within one of an index (inclusive, from a position).
        let (start, within) = match before {
            None => ("+".to_owned(), 0),
            Some(cursor) => match cursor_position(cursor) {
                Some((id, Some(within))) if indexed => (id.to_owned(), within),
                Some((id, _)) => (format!("({id}"), 0),
                None => return Err(StoreError::Cursor(cursor.to_owned())),
            },
        };
        if self.settings.retention.history.is_zero() {
            // History off: the stream holds only the live feed's last messages.
            return Ok(HistoryPage::default());
        }
        // A nick's messages in one room: its index read, the other rooms' entries skipped, at
        // most HISTORY_SCAN_IDS ids per page (a page may then hold fewer than `limit`, with
        // a cursor to go on from).
        let to_read = match in_room {
            Some(_) => HISTORY_SCAN_IDS.max(limit + 1),
            None => limit + 1,
        };
        // What was recorded before the retention is gone, even while no new message has
        // trimmed the stream.
        let oldest = now_ms().saturating_sub(self.settings.retention.history.as_millis() as u64);
        let call = || ScriptCall {
            keys: vec![
                Key::from(self.keys.history(scope)),
                Key::from(self.keys.history(&Scope::Global)),
            ],
            args: vec![
                Value::from(start.as_str()),
                Value::Integer(to_read as i64),
                Value::from(if indexed { "1" } else { "0" }),
                Value::from(oldest.to_string()),
                Value::Bytes(
                    in_room
                        .map(bytes::Bytes::copy_from_slice)
                        .unwrap_or_default(),
                ),
                Value::Integer(limit as i64 + 1),
                Value::Integer(within as i64),
            ],
        };
        let mut reply: Vec<Value> = self.run(&HISTORY, call).await?;
        let read = reply.pop().and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        let last_read = reply.pop().map(text).filter(|id| !id.is_empty());
        let mut entries = Vec::with_capacity(limit);
        let mut last = None;
        let mut more = false;
        let mut values = reply.into_iter();
        while let (Some(id), Some(json)) = (values.next(), values.next()) {
            if entries.len() == limit {
                more = true;
                break;
            }
            last = Some(text(id));
            entries.push(text(json));
        }
        // More after this page: an entry past `limit`, or every row (id) allowed read without
        // reaching it (go on after the last one read).
        let next = if more {
            last
        } else if read == to_read {
            last_read
        } else {
            None
        };
        Ok(HistoryPage {
            entries,
            next: next.map(|id| format!("r{id}")),
        })
    }

    async fn message(&self, id: &str) -> Result<Option<String>, StoreError> {
        let kept = self.settings.retention.history.as_millis() as u64;
        if kept == 0 {
            return Ok(None);
        }
        let now = now_ms();
        let hour = Granularity::Hour.ms();
        let call = || {
            let mut keys: Vec<Key> = (now.saturating_sub(kept) / hour..=now / hour)
                .rev()
                .map(|h| Key::from(self.keys.history_ids(h)))
                .collect();
            keys.push(Key::from(self.keys.history(&Scope::Global)));
            ScriptCall {
                keys,
                args: vec![
                    Value::from(id),
                    Value::from(now.saturating_sub(kept).to_string()),
                ],
            }
        };
        let found: Option<String> = self.run(&MESSAGE, call).await?;
        Ok(found)
    }

    async fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Live> {
        self.live
            .get_or_init(|| async {
                let (sender, _) = tokio::sync::broadcast::channel(LIVE_BACKLOG);
                let (started, start) = tokio::sync::oneshot::channel();
                tokio::spawn(tail(
                    self.settings.clone(),
                    self.keys.history(&Scope::Global),
                    sender.clone(),
                    started,
                ));
                // Wait (a bounded time: Redis may be down) until the tail knows where the
                // stream ends, so that what is recorded from now on is received.
                let _ = tokio::time::timeout(self.settings.timeout, start).await;
                sender
            })
            .await
            .subscribe()
    }

    async fn rolled(&self) -> Result<Rolled, StoreError> {
        let values: Vec<Option<u64>> = self
            .client
            .hmget(self.keys.rollup(), vec!["h", "d"])
            .await
            .map_err(|e| self.fail(e))?;
        let at = |i: usize| values.get(i).copied().flatten().unwrap_or(0);
        Ok(Rolled {
            hour: at(0),
            day: at(1),
        })
    }

    async fn maintain(&self, now_ms: u64) -> Result<(), StoreError> {
        // One worker rolls up at a time; the lock expires should it die.
        let lock = self.keys.rollup_lock();
        let token = format!("{:016x}", rand::random::<u64>());
        let taken: Option<String> = self
            .client
            .set(
                &lock,
                token.as_str(),
                Some(Expiration::PX(60_000)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(|e| self.fail(e))?;
        if taken.is_none() {
            return Ok(());
        }
        let rolled = self.roll_up(now_ms).await;
        let _: Result<i64, _> = self
            .client
            .eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                vec![lock],
                vec![token],
            )
            .await;
        rolled
    }

    async fn top(&self, list: TopList, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.top_of(Key::from(self.keys.top(list)), limit).await
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
        if let Some(total) = total {
            return Ok(total);
        }
        // No total yet: nothing failed, or the TypeScript service's set, which counts as the
        // payloads it kept (as it will once converted).
        let key = self.keys.failed();
        let kind: String = self.client.r#type(&key).await.map_err(|e| self.fail(e))?;
        if kind != "set" {
            return Ok(0);
        }
        self.client.scard(&key).await.map_err(|e| self.fail(e))
    }

    async fn append_inbox(
        &self,
        payloads: &[bytes::Bytes],
        mark: Option<&Mark>,
    ) -> Result<(), StoreError> {
        if payloads.is_empty() {
            return Ok(());
        }
        // One script call: atomic, so a batch is never half-appended, and at most once per mark
        // (`lua/inbox_append.lua`).
        let call = || {
            let mut keys = vec![Key::from(self.keys.inbox())];
            let mut args = Vec::with_capacity(payloads.len() + 2);
            match mark {
                Some(mark) => {
                    keys.push(Key::from(self.keys.writer(&mark.writer)));
                    args.push(Value::from(mark.seq as i64));
                    args.push(Value::from(mark.window as i64));
                }
                None => args.extend([Value::from(0), Value::from(0)]),
            }
            args.extend(payloads.iter().cloned().map(Value::Bytes));
            ScriptCall { keys, args }
        };
        let appended: i64 = self.run(&INBOX_APPEND, call).await?;
        if appended != payloads.len() as i64 {
            return Err(StoreError::Data(format!(
                "the inbox script appended {appended} of {} payloads",
                payloads.len()
            )));
        }
        Ok(())
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
    fn a_history_cursor_is_a_row_id_and_maybe_a_position_in_the_row() {
        assert_eq!(cursor_position("r17-0"), Some(("17-0", None)));
        assert_eq!(cursor_position("r17-3~5"), Some(("17-3", Some(5))));
        assert_eq!(cursor_position("r0-1"), Some(("0-1", None)));
        for bad in [
            "17-0",
            "r0-0",
            "r17",
            "r-1-0",
            "r17-0~",
            "r17-0~1",
            "r17-0~x",
            "r17-0~2~3",
            "r 7-0",
        ] {
            assert_eq!(cursor_position(bad), None, "{bad}");
        }
    }

    #[test]
    fn connection_errors_read_as_their_message() {
        for (details, read) in [
            (
                "Os { code: 111, kind: ConnectionRefused, message: \"Connection refused\" }",
                "connection refused",
            ),
            (
                "Custom { kind: Uncategorized, error: \"failed to lookup address information: Name or service not known\" }",
                "failed to lookup address information: name or service not known",
            ),
        ] {
            let err = Error::new(ErrorKind::IO, details);
            assert_eq!(describe_error(&err), read);
        }
    }
}
