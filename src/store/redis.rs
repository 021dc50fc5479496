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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use fred::prelude::*;
use fred::types::config::ReconnectPolicy;

use super::keys::{Keys, activity_group_end_ms};
use super::{
    Entry, HistoryPage, LIVE_BACKLOG, Live, Mark, Profile, Store, StoreError, rank_entries,
};
use crate::detail::{Detail, HistoryEntry, Period, Place, Scope, Seen};
use crate::message::{Tally, TopList};
use crate::telemetry::SecretUrl;
use crate::timeline::{Bucket, Granularity, MAX_FUTURE_MS, Retention, Rolled, children, now_ms};

mod inbox;
mod shards;

pub use inbox::{GROUP, InboxEntry};
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

/// How long after an hour (or day) ends its roll-up waits: longer than any message can take
/// from being read to being applied, and than clock differences between workers.
const SETTLE_MS: u64 = 120_000;
/// How long a room's minutes of an hour outlive their retention while they wait for the
/// hour's roll-up to add them to its all-time lists (a worker down that long loses them).
const FOLD_GRACE_SECS: u64 = 30 * 86_400;
/// At most this many hours (and days) are rolled up per call of [`Store::maintain`].
const ROLLUPS_PER_CALL: u64 = 6;
/// Index rows read at most for one page of a nick's messages in one room.
const HISTORY_SCAN_ROWS: usize = 2000;

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
}

/// Follows the history stream with a connection of its own (a blocking read would hold up the
/// shared one) and sends every new entry to `sender`, for as long as anyone listens.
async fn tail(
    settings: Arc<RedisSettings>,
    stream: String,
    sender: tokio::sync::broadcast::Sender<Live>,
    started: tokio::sync::oneshot::Sender<()>,
) {
    const BLOCK_MS: u64 = 2_000;
    let client = Config::from_url(settings.url.expose().as_str()).and_then(|mut config| {
        config.fail_fast = false;
        Builder::from_config(config)
            .with_performance_config(|perf| {
                perf.default_command_timeout = Duration::from_millis(BLOCK_MS) + settings.timeout;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 1_000, 2))
            .build()
    });
    let Ok(client) = client else {
        return;
    };
    keep_connected(&client);
    // Start after the newest entry now, by its id: "$" would be read again at every retry, and
    // miss what was added between the subscription and the first read.
    let mut last = loop {
        let newest: Result<Value, Error> =
            client.xrevrange(stream.as_str(), "+", "-", Some(1)).await;
        match newest {
            Ok(reply) => break newest_id(reply).unwrap_or_else(|| "0-0".to_owned()),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    let _ = started.send(());
    loop {
        let read: Result<Value, Error> = client
            .xread(Some(500), Some(BLOCK_MS), stream.as_str(), last.as_str())
            .await;
        match read {
            Ok(reply) => {
                for (id, fields) in stream_entries(reply) {
                    last = id;
                    let field = |name: &str| {
                        fields
                            .iter()
                            .find(|(n, _)| n.as_ref() == name.as_bytes())
                            .map(|(_, v)| v.clone())
                    };
                    if let Some(json) = field("m") {
                        let live = Live {
                            room: field("r").unwrap_or_default(),
                            json: String::from_utf8_lossy(&json).into(),
                        };
                        let _ = sender.send(live);
                    }
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The id of the one entry of an `XREVRANGE … COUNT 1` reply.
fn newest_id(reply: Value) -> Option<String> {
    match reply {
        Value::Array(mut entries) => match entries.pop()? {
            Value::Array(mut entry) if !entry.is_empty() => entry.swap_remove(0).into_string(),
            _ => None,
        },
        _ => None,
    }
}

/// The entries of an `XREAD` reply: id and field-value pairs (RESP2 arrays or RESP3 maps).
fn stream_entries(reply: Value) -> Vec<(String, Vec<(bytes::Bytes, bytes::Bytes)>)> {
    let streams: Vec<Value> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(map) => map.inner().into_values().collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for entries in streams {
        let Value::Array(entries) = entries else {
            continue;
        };
        for entry in entries {
            let Value::Array(mut parts) = entry else {
                continue;
            };
            if parts.len() != 2 {
                continue;
            }
            let fields = parts.pop();
            let id = parts.pop().and_then(|v| v.into_bytes());
            let (Some(id), Some(Value::Array(fields))) = (id, fields) else {
                continue;
            };
            let mut pairs = Vec::with_capacity(fields.len() / 2);
            let mut values = fields.into_iter();
            while let (Some(name), Some(value)) = (values.next(), values.next()) {
                if let (Some(name), Some(value)) = (name.into_bytes(), value.into_bytes()) {
                    pairs.push((name, value));
                }
            }
            out.push((String::from_utf8_lossy(&id).into_owned(), pairs));
        }
    }
    out
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

/// The `KEYS` and `ARGV` of one call of the apply script.
pub struct ScriptCall {
    /// Every key the call touches.
    pub keys: Vec<Key>,
    /// The arguments.
    pub args: Vec<Value>,
}

/// Builds the apply script's calls for one namespace (public for the benchmarks).
pub struct ApplyCalls {
    keys: Keys,
    second_ttl: u64,
    failed_cap: usize,
}

impl ApplyCalls {
    /// Calls under `namespace`, with per-second counters kept `second_ttl` seconds and the
    /// newest `failed_cap` failed payloads.
    pub fn new(namespace: &str, second_ttl: u64, failed_cap: usize) -> ApplyCalls {
        ApplyCalls {
            keys: Keys::new(namespace),
            second_ttl,
            failed_cap,
        }
    }

    /// The call for `tally`.
    pub fn call(&self, tally: &Tally, mark: Option<&Mark>) -> ScriptCall {
        build_call(&self.keys, self.second_ttl, self.failed_cap, tally, mark)
    }
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
    call_keys.extend(keys.fixed().iter().cloned().map(Key::from));
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

impl Shard {
    /// Rolls up the hours, then the days, that ended at least [`SETTLE_MS`] ago and are not
    /// rolled up yet: for everything and for each room active in them, their finer buckets are
    /// merged into theirs, then the hour (day) is marked rolled for every scope. Hours whose
    /// minutes are no longer kept are skipped: there is nothing left to roll up.
    async fn roll_up(&self, now_ms: u64) -> Result<(), StoreError> {
        let retention = &self.settings.retention;
        for granularity in [Granularity::Hour, Granularity::Day] {
            let finer = match granularity {
                Granularity::Hour => Granularity::Minute,
                _ => Granularity::Hour,
            };
            let mut rolled_here = 0;
            while rolled_here < ROLLUPS_PER_CALL {
                rolled_here += 1;
                let rolled = self.rolled().await?;
                let (last, ready) = match granularity {
                    Granularity::Hour => (rolled.hour, u64::MAX),
                    // A day rolls up once all its hours have.
                    _ => (
                        rolled.day,
                        ((rolled.hour + 1) * Granularity::Hour.ms() / Granularity::Day.ms())
                            .saturating_sub(1),
                    ),
                };
                // The first one whose finer buckets are all still kept; before it, rooms'
                // minutes may still wait to be folded (an hour's for as long as the grace).
                let kept_from = now_ms.saturating_sub(retention.of(finer).as_millis() as u64);
                let first_kept = kept_from.div_ceil(granularity.ms());
                // (Nothing rolled up yet: nothing waits, as `lua/detail.lua` marks the hour
                // before its first minutes to fold as rolled.)
                let first = match granularity {
                    Granularity::Hour if last > 0 => {
                        first_kept.saturating_sub(FOLD_GRACE_SECS * 1000 / granularity.ms())
                    }
                    _ => first_kept,
                };
                let next = Bucket {
                    granularity,
                    number: (last + 1).max(first),
                };
                if next.end_ms() + SETTLE_MS > now_ms || next.number > ready {
                    break;
                }
                if !self.roll_up_bucket(next, next.number >= first_kept).await? {
                    // Nothing to fold in an hour no longer kept: not one of this call's.
                    rolled_here -= 1;
                }
            }
        }
        Ok(())
    }

    /// Rolls up one hour or day for every scope, then marks it rolled. An hour whose minutes
    /// are no longer `kept` is rolled up only for the rooms whose minutes wait to be folded
    /// into their all-time lists. False when there was nothing to roll up in such an hour.
    async fn roll_up_bucket(&self, bucket: Bucket, kept: bool) -> Result<bool, StoreError> {
        if bucket.granularity == Granularity::Hour {
            // Begun: from now on a room joins the hour's `folding` set no more
            // (`lua/detail.lua`), so the rooms listed next are all that wait.
            let _: () = self
                .client
                .hset(self.keys.rollup(), ("c", bucket.number))
                .await
                .map_err(|e| self.fail(e))?;
        }
        let active = self.keys.active(bucket);
        let rooms: Vec<Value> = self
            .client
            .smembers(&active)
            .await
            .map_err(|e| self.fail(e))?;
        let mut scopes = Vec::new();
        if kept {
            scopes.push(Scope::Global);
        }
        scopes.extend(
            rooms
                .into_iter()
                .filter_map(Value::into_bytes)
                .map(Scope::Room),
        );
        for scope in &scopes {
            self.roll_up_scope(scope, bucket, kept).await?;
        }
        if bucket.granularity == Granularity::Hour && !scopes.is_empty() {
            // Its rooms are folded: the set lasts as long as their minutes now.
            let minutes = self.settings.retention.of(Granularity::Minute).as_millis() as u64;
            let expiry = (bucket.end_ms() + minutes).div_ceil(1000);
            let _: () = self
                .client
                .expire_at(&active, expiry as i64, None)
                .await
                .map_err(|e| self.fail(e))?;
        }
        let field = bucket.granularity.letter().to_string();
        if bucket.granularity != Granularity::Hour {
            let _: () = self
                .client
                .hset(self.keys.rollup(), (field, bucket.number))
                .await
                .map_err(|e| self.fail(e))?;
        } else if !self.mark_hour_rolled(bucket, kept).await? {
            // Not marked: the hour is rolled up again (a few times per call at most).
            return Ok(true);
        }
        tracing::debug!(bucket = ?bucket, scopes = scopes.len(), "rolled up");
        Ok(kept || !scopes.is_empty())
    }

    /// Marks `hour` rolled up once no room waits for it to fold its minutes
    /// (`lua/rollup_done.lua`); a room that still does is rolled up first. (None should: no
    /// room joins the waiting ones once the roll-up has begun, before it lists the hour's
    /// rooms.) False when some still waited after a few rounds: the next run goes on.
    async fn mark_hour_rolled(&self, hour: Bucket, kept: bool) -> Result<bool, StoreError> {
        for _ in 0..10 {
            let call = || ScriptCall {
                keys: vec![
                    Key::from(self.keys.rollup()),
                    Key::from(self.keys.folding(hour.number)),
                ],
                args: vec![Value::from("h"), Value::Integer(hour.number as i64)],
            };
            let waiting: Vec<Value> = self.run(&ROLLUP_DONE, call).await?;
            if waiting.is_empty() {
                return Ok(true);
            }
            for room in waiting.into_iter().filter_map(Value::into_bytes) {
                self.roll_up_scope(&Scope::Room(room), hour, kept).await?;
            }
        }
        tracing::debug!(?hour, "rooms keep waiting for the roll-up");
        Ok(false)
    }

    async fn roll_up_scope(
        &self,
        scope: &Scope,
        bucket: Bucket,
        kept: bool,
    ) -> Result<(), StoreError> {
        let lists: &[TopList] = match scope {
            Scope::Global => &TopList::ALL,
            _ => &[TopList::Words, TopList::Nicks, TopList::Emotes],
        };
        let sources = children(bucket);
        // A room's hour adds its minutes to its all-time lists (`lua/rollup.lua`).
        let fold = matches!(scope, Scope::Room(_)) && bucket.granularity == Granularity::Hour;
        let call = || {
            let (write, _) = self.keys.activity(scope, bucket);
            let (read, _) = self.keys.activity(scope, sources[0]);
            let mut keys = vec![Key::from(write), Key::from(read)];
            let mut args = vec![
                Value::Integer(bucket.number as i64),
                Value::Integer(self.settings.retention.expiry_secs(bucket) as i64),
                Value::Integer(lists.len() as i64),
            ];
            for list in lists {
                keys.push(Key::from(self.keys.bucket_list(scope, *list, bucket)));
                keys.extend(
                    sources
                        .iter()
                        .map(|s| Key::from(self.keys.bucket_list(scope, *list, *s))),
                );
                args.push(Value::Integer(sources.len() as i64));
            }
            if let (true, Scope::Room(name)) = (fold, scope) {
                keys.push(Key::from(self.keys.folded(scope)));
                keys.extend(lists.iter().map(|l| Key::from(self.keys.list(scope, *l))));
                keys.push(Key::from(self.keys.folding(bucket.number)));
                args.push(Value::from("fold"));
                args.push(Value::from(if kept { "1" } else { "0" }));
                let first = self.settings.retention.expiry_secs(sources[0]);
                args.push(Value::Integer(first as i64));
                args.push(Value::Bytes(name.clone()));
            }
            ScriptCall { keys, args }
        };
        let _: i64 = self.run(&ROLLUP, call).await?;
        Ok(())
    }

    /// The hours of a room's minutes that its all-time lists may not hold yet: after its
    /// `folded` hour and the last hour rolled up, up to its latest message's. `None` when it
    /// has no `folded` hour (its all-time lists hold everything).
    async fn unfolded_hours(&self, room: &Scope) -> Result<Option<Vec<u64>>, StoreError> {
        let Scope::Room(name) = room else {
            return Ok(None);
        };
        let pipeline = self.client.pipeline();
        let queued = async {
            let _: () = pipeline.get(self.keys.folded(room)).await?;
            let _: () = pipeline.hget(self.keys.rollup(), "h").await?;
            let _: () = pipeline
                .zscore(self.keys.seen(Seen::Room, true), name.clone())
                .await?;
            let _: () = pipeline
                .zscore(self.keys.seen(Seen::Room, false), name.clone())
                .await?;
            pipeline.all::<Vec<Value>>().await
        };
        let values = queued.await.map_err(|e| self.fail(e))?;
        let number = |i: usize| {
            values
                .get(i)
                .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
        };
        let (Some(folded), Some(last_ms)) = (number(0), number(2)) else {
            return Ok(None);
        };
        let after = folded.max(number(1).unwrap_or(-1.0));
        let first = if after < 0.0 { 0 } else { after as u64 + 1 };
        let first_seen = number(3).unwrap_or(0.0).max(0.0) as u64 / Granularity::Hour.ms();
        let first = first.max(first_seen);
        let last = last_ms.max(0.0) as u64 / Granularity::Hour.ms();
        Ok(Some((first..=last).collect()))
    }

    /// The names of `room`'s minute lists of `list` in `hours` (see [`Shard::unfolded_hours`])
    /// after its `folded` hour, for a reader that nothing writes meanwhile (a migration).
    async fn unfolded_keys(
        &self,
        room: &Scope,
        list: TopList,
        hours: &[u64],
    ) -> Result<Vec<String>, StoreError> {
        let folded: Option<i64> = self
            .client
            .get(self.keys.folded(room))
            .await
            .map_err(|e| self.fail(e))?;
        let Some(folded) = folded else {
            return Ok(Vec::new());
        };
        Ok(hours
            .iter()
            .filter(|hour| **hour as i64 > folded)
            .flat_map(|hour| {
                children(Bucket {
                    granularity: Granularity::Hour,
                    number: *hour,
                })
            })
            .map(|minute| self.keys.bucket_list(room, list, minute))
            .collect())
    }

    /// The call of `lua/unfolded.lua` for `list` of `room` over its minutes of `hours`, with
    /// `own` as the script's own argument.
    fn unfolded_call(&self, list: TopList, room: &Scope, hours: &[u64], own: Value) -> ScriptCall {
        let mut keys = vec![
            Key::from(self.keys.folded(room)),
            Key::from(self.keys.list(room, list)),
        ];
        let mut args = vec![own];
        for hour in hours {
            let bucket = Bucket {
                granularity: Granularity::Hour,
                number: *hour,
            };
            for minute in children(bucket) {
                keys.push(Key::from(self.keys.bucket_list(room, list, minute)));
                args.push(Value::Integer(*hour as i64));
            }
        }
        ScriptCall { keys, args }
    }

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

/// The fields of one activity hash: its expiry, and `field, n` pairs.
type ActivityGroup = (u64, Vec<(Value, u64)>);

/// The detail script's call for `detail` at `now_ms` (layout at the top of `lua/detail.lua`).
///
/// Hour and day buckets are made by rolling up finer ones once the hour or day has ended
/// ([`RedisStore::roll_up`]), not written per message: their increments are left out while the
/// bucket has not ended (its minutes carry them). A late message, for an hour or a day that has
/// ended, goes into it directly as well: a roll-up still to come replaces the bucket with the
/// sum of its finer ones, which hold the message too, and a roll-up that is done, skipped
/// (finer buckets no longer kept) or did not include its room leaves the write standing.
fn detail_call(
    keys: &Keys,
    retention: &Retention,
    detail: &Detail,
    mark: Option<&Mark>,
    now_ms: u64,
) -> ScriptCall {
    let (seq, window) = mark.map_or((0, 1), |m| (m.seq, m.window.max(1)));
    let writer = Key::from(keys.writer(mark.map_or("", |m| &m.writer)));
    let mut call = ScriptCall {
        keys: vec![writer],
        args: vec![Value::Integer(seq as i64), Value::Integer(window as i64)],
    };
    let int = |n: u64| Value::Integer(n as i64);
    // Hour and day buckets: none before they end (their roll-up makes them).
    let written = |bucket: Bucket| -> bool {
        bucket.granularity == Granularity::Minute || bucket.end_ms() <= now_ms
    };
    let mut active: BTreeMap<Bucket, Vec<Value>> = BTreeMap::new();
    // A nick's all-time lists: one record of its increments (`lua/records.lua`).
    let mut records: BTreeMap<&Scope, Vec<u8>> = BTreeMap::new();
    let pairs = |members: &[(bytes::Bytes, u64)]| -> Vec<(Value, u64)> {
        members
            .iter()
            .map(|(m, n)| (Value::Bytes(m.clone()), *n))
            .collect()
    };
    // With `Detail::folds`, a room's minutes by hour: they stand for its all-time increments
    // too, and are written after the room's `f` group for the hour (`lua/detail.lua`).
    type Lists<'a> = Vec<&'a (Place, Vec<(bytes::Bytes, u64)>)>;
    let mut folds: BTreeMap<(&Scope, u64), Lists> = BTreeMap::new();
    for item in &detail.lists {
        let (place, members) = item;
        if let (true, Scope::Room(_), Period::Bucket(b)) =
            (detail.folds, &place.scope, place.period)
            && b.granularity == Granularity::Minute
        {
            let hour = Bucket::of(Granularity::Hour, b.start_ms()).number;
            folds.entry((&place.scope, hour)).or_default().push(item);
            continue;
        }
        let pairs = || pairs(members);
        match place.period {
            Period::AllTime if matches!(place.scope, Scope::Nick(_)) => {
                let record = records.entry(&place.scope).or_default();
                for (member, n) in members {
                    push_increment(record, place.list, member, *n);
                }
            }
            Period::AllTime => push_group(
                &mut call,
                keys.list(&place.scope, place.list),
                "z",
                0,
                pairs(),
            ),
            Period::Bucket(bucket) => {
                if !written(bucket) {
                    continue;
                }
                let key = keys.bucket_list(&place.scope, place.list, bucket);
                push_group(&mut call, key, "z", retention.expiry_secs(bucket), pairs());
            }
        }
    }
    for (scope, bucket, _) in &detail.activity {
        if let (Scope::Room(room), Granularity::Minute) = (scope, bucket.granularity) {
            // The rooms to roll up: those with messages in the hour and the day.
            for g in [Granularity::Hour, Granularity::Day] {
                active
                    .entry(Bucket::of(g, bucket.start_ms()))
                    .or_default()
                    .push(Value::Bytes(room.clone()));
            }
        }
    }
    let folding: BTreeSet<u64> = folds.keys().map(|(_, hour)| *hour).collect();
    for ((room, hour), minutes) in folds {
        let Scope::Room(name) = room else {
            continue;
        };
        call.keys.push(Key::from(keys.folded(room)));
        call.keys.push(Key::from(keys.rollup()));
        for list in [TopList::Words, TopList::Nicks, TopList::Emotes] {
            call.keys.push(Key::from(keys.list(room, list)));
        }
        call.keys.push(Key::from(keys.folding(hour)));
        let legacy = (now_ms + MAX_FUTURE_MS) / Granularity::Hour.ms();
        let hour_bucket = Bucket {
            granularity: Granularity::Hour,
            number: hour,
        };
        // As long as the hour's last minute may wait.
        let folding_expiry = retention.expiry_secs(Bucket::of(
            Granularity::Minute,
            hour_bucket.end_ms() - Granularity::Minute.ms(),
        )) + FOLD_GRACE_SECS;
        call.args.extend([
            Value::from("f"),
            int(hour),
            int(legacy),
            int(FOLD_GRACE_SECS),
            Value::Bytes(name.clone()),
            int(folding_expiry),
        ]);
        // The script adds them to all time as well where it must.
        for (place, members) in minutes {
            let Period::Bucket(bucket) = place.period else {
                continue;
            };
            let op = match place.list {
                TopList::Words => "zmw",
                TopList::Nicks => "zmn",
                _ => "zme",
            };
            let key = keys.bucket_list(room, place.list, bucket);
            push_group(
                &mut call,
                key,
                op,
                retention.expiry_secs(bucket),
                pairs(members),
            );
        }
    }
    for (bucket, rooms) in active {
        // Kept until its finer buckets are gone: no roll-up after that; and while a room's
        // minutes wait for its roll-up to fold them, as long as they do.
        let finer = match bucket.granularity {
            Granularity::Hour => Granularity::Minute,
            _ => Granularity::Hour,
        };
        let mut expiry = (bucket.end_ms() + retention.of(finer).as_millis() as u64).div_ceil(1000);
        if bucket.granularity == Granularity::Hour && folding.contains(&bucket.number) {
            expiry += FOLD_GRACE_SECS;
        }
        let pairs = rooms.into_iter().map(|room| (room, 1)).collect();
        push_group(&mut call, keys.active(bucket), "s", expiry, pairs);
    }
    // Activity fields grouped by hash.
    let mut hashes: BTreeMap<String, ActivityGroup> = BTreeMap::new();
    for (scope, bucket, n) in &detail.activity {
        if !written(*bucket) {
            continue;
        }
        let (key, field) = keys.activity(scope, *bucket);
        let kept = retention.of(bucket.granularity).as_millis() as u64;
        let expiry = (activity_group_end_ms(*bucket) + kept).div_ceil(1000);
        let entry = hashes.entry(key).or_insert((expiry, Vec::new()));
        entry.1.push((Value::from(field), *n));
    }
    for (key, (expiry, pairs)) in hashes {
        push_group(&mut call, key, "h", expiry, pairs);
    }
    for kind in [Seen::Room, Seen::Nick] {
        let of_kind = || detail.seen.iter().filter(move |s| s.0 == kind);
        if of_kind().next().is_none() {
            continue;
        }
        let firsts = of_kind()
            .map(|(_, name, first, _)| (Value::Bytes(name.clone()), *first))
            .collect();
        push_group(&mut call, keys.seen(kind, false), "lt", 0, firsts);
        let lasts = of_kind()
            .map(|(_, name, _, last)| (Value::Bytes(name.clone()), *last))
            .collect();
        push_group(&mut call, keys.seen(kind, true), "gt", 0, lasts);
    }
    for (nick, record) in records {
        call.keys.push(Key::from(keys.pending(nick)));
        for list in [TopList::Words, TopList::Rooms, TopList::Emotes] {
            call.keys.push(Key::from(keys.list(nick, list)));
        }
        call.args.push(Value::from("a"));
        call.args.push(Value::Bytes(record.into()));
    }
    if !detail.history.is_empty() {
        history_group(&mut call, keys, retention, &detail.history, now_ms);
    }
    call
}

/// Adds one group of `lua/detail.lua` to `call`: its key, operation, expiry and pairs.
/// Increments of 1 (most of them) go without their count: half the arguments to convert.
fn push_group(
    call: &mut ScriptCall,
    key: String,
    op: &'static str,
    expiry: u64,
    pairs: Vec<(Value, u64)>,
) {
    let int = |n: u64| Value::Integer(n as i64);
    let (ones, others): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(_, n)| *n == 1);
    call.keys.push(Key::from(key));
    call.args.push(Value::from(op));
    call.args.push(int(expiry));
    call.args.push(int(ones.len() as u64));
    call.args.push(int(others.len() as u64));
    call.args.extend(ones.into_iter().map(|(member, _)| member));
    for (member, n) in others {
        call.args.push(member);
        call.args.push(int(n));
    }
}

/// The letter of `list` in a nick's pending records (`lua/records.lua`).
fn list_letter(list: TopList) -> char {
    match list {
        TopList::Words => 'w',
        TopList::Nicks => 'n',
        TopList::Rooms => 'r',
        TopList::Emotes => 'e',
    }
}

/// Appends one increment to a nick's record: `<letter><length>:<member><count>;`.
fn push_increment(record: &mut Vec<u8>, list: TopList, member: &[u8], count: u64) {
    use std::io::Write;
    let _ = write!(record, "{}{}:", list_letter(list), member.len());
    record.extend_from_slice(member);
    let _ = write!(record, "{count};");
}

/// The increments of a nick's pending records, per list, in order (`lua/records.lua`); `None`
/// when the text is not such records.
pub(crate) fn parse_records(text: &[u8]) -> Option<Vec<(TopList, bytes::Bytes, u64)>> {
    let number = |digits: &[u8]| std::str::from_utf8(digits).ok()?.parse::<u64>().ok();
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((&letter, after)) = rest.split_first() {
        let list = [TopList::Words, TopList::Rooms, TopList::Emotes]
            .into_iter()
            .find(|l| list_letter(*l) as u8 == letter)?;
        let colon = after.iter().position(|b| *b == b':')?;
        let len = number(&after[..colon])? as usize;
        let member = after.get(colon + 1..colon + 1 + len)?;
        let tail = &after[colon + 1 + len..];
        let semi = tail.iter().position(|b| *b == b';')?;
        out.push((
            list,
            bytes::Bytes::copy_from_slice(member),
            number(&tail[..semi])?,
        ));
        rest = &tail[semi + 1..];
    }
    Some(out)
}

/// The history group of a detail call, last (layout at the top of `lua/detail.lua`).
fn history_group(
    call: &mut ScriptCall,
    keys: &Keys,
    retention: &Retention,
    entries: &[HistoryEntry],
    now_ms: u64,
) {
    let kept = retention.history.as_millis() as u64;
    let hour = now_ms / Granularity::Hour.ms();
    call.keys.push(Key::from(keys.history(&Scope::Global)));
    call.keys.push(Key::from(keys.history_ids(hour)));
    // Not kept: the live feed's last 1,000 linger an hour past their hour, then go.
    let linger = if kept == 0 {
        Granularity::Hour.ms()
    } else {
        kept
    };
    let expiry = ((hour + 1) * Granularity::Hour.ms() + linger).div_ceil(1000);
    let minid = if kept == 0 {
        0
    } else {
        now_ms.saturating_sub(kept).max(1)
    };
    call.args.push(Value::from("x"));
    call.args.push(Value::Integer(expiry as i64));
    call.args.push(Value::from(minid.to_string()));
    call.args.push(Value::Integer(entries.len() as i64));
    for entry in entries {
        call.args.push(Value::from(entry.json.as_str()));
        call.args.push(Value::from(entry.id.as_str()));
        call.args.push(Value::Bytes(entry.room.clone()));
        let mut flags = String::new();
        for (flag, scope) in [
            ('r', Scope::Room(entry.room.clone())),
            ('n', Scope::Nick(entry.nick.clone())),
        ] {
            if kept > 0 && !matches!(&scope, Scope::Room(n) | Scope::Nick(n) if n.is_empty()) {
                flags.push(flag);
                call.keys.push(Key::from(keys.history(&scope)));
            }
        }
        if flags.is_empty() {
            flags.push('-');
        }
        call.args.push(Value::from(flags));
    }
}

/// A history cursor of this store: `r` and a stream entry id (never `0-0`, below every id).
fn stream_id(cursor: &str) -> Option<&str> {
    let id = cursor.strip_prefix('r')?;
    let (ms, seq) = id.split_once('-')?;
    let number = |text: &str| {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
    };
    let (ms, seq) = (number(ms)?, number(seq)?);
    (ms > 0 || seq > 0).then_some(id)
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
        let start = match before {
            None => "+".to_owned(),
            Some(cursor) => {
                let id = stream_id(cursor).ok_or_else(|| StoreError::Cursor(cursor.to_owned()))?;
                format!("({id}")
            }
        };
        if self.settings.retention.history.is_zero() {
            // History off: the stream holds only the live feed's last messages.
            return Ok(HistoryPage::default());
        }
        let indexed = *scope != Scope::Global;
        // A nick's messages in one room: its index read, the other rooms' entries skipped, at
        // most HISTORY_SCAN_ROWS rows per page (a page may then hold fewer than `limit`, with
        // a cursor to go on from).
        let rows_to_read = match in_room {
            Some(_) => HISTORY_SCAN_ROWS.max(limit + 1),
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
                Value::Integer(rows_to_read as i64),
                Value::from(if indexed { "1" } else { "0" }),
                Value::from(oldest.to_string()),
                Value::Bytes(
                    in_room
                        .map(bytes::Bytes::copy_from_slice)
                        .unwrap_or_default(),
                ),
                Value::Integer(limit as i64 + 1),
            ],
        };
        let mut reply: Vec<Value> = self.run(&HISTORY, call).await?;
        let rows = reply.pop().and_then(|v| v.as_u64()).unwrap_or(0) as usize;
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
        // More after this page: an entry past `limit`, or every row allowed read without
        // reaching it (go on after the last row read).
        let next = if more {
            last
        } else if rows == rows_to_read {
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
        let call = ApplyCalls::new("ns:", 300, 1000).call(&tally, Some(&mark));
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

    #[test]
    fn a_nicks_record_reads_back_whatever_its_members_hold() {
        let members: [&[u8]; 5] = [b"w1", b"a:1;", b"", "한;:".as_bytes(), b"12;3:"];
        let mut record = Vec::new();
        for (i, member) in members.iter().enumerate() {
            let list = [TopList::Words, TopList::Rooms, TopList::Emotes][i % 3];
            push_increment(&mut record, list, member, i as u64 + 1);
        }
        let read = parse_records(&record).unwrap();
        assert_eq!(read.len(), members.len());
        for (i, (list, member, n)) in read.iter().enumerate() {
            assert_eq!(
                *list,
                [TopList::Words, TopList::Rooms, TopList::Emotes][i % 3]
            );
            assert_eq!(&member[..], members[i]);
            assert_eq!(*n, i as u64 + 1);
        }
        assert_eq!(parse_records(b"w2:ab"), None);
        assert_eq!(parse_records(b"x1:a1;"), None);
        assert_eq!(parse_records(b""), Some(Vec::new()));
    }
}
