//! [`RedisStore`]: the whole store on one standalone Redis, or spread over the shards of a Redis
//! Cluster.
//!
//! On a standalone Redis there is one [`Shard`], under `REDIS_NAMESPACE`: the TypeScript
//! service's keys, unchanged. On Redis Cluster (`REDIS_URL=redis-cluster://…`) there are
//! `REDIS_CLUSTER_SHARDS` shards; shard `k`'s keys are the same keys under the namespace
//! `{ns}{tag}:`, where `tag` is `k.j` for the smallest `j` that puts the tag in the `k`-th of as
//! many equal ranges of the 16,384 hash slots. The braces make `tag` the hash tag of every key of
//! the shard: a shard lives in one slot, so every script call of a shard is a single-slot call,
//! and the shards spread evenly over masters that own equal slot ranges. Then:
//!
//! - a member of a list for everything (a word, nick, room or emote, all time or in a bucket)
//!   is kept in shard `FNV-1a(member) % shards`: each member's whole count is in one shard, so
//!   the top of everything is the exact merge of the shards' tops;
//! - a room's (or a nick's) keys are all in the shard of its name, one hash tag;
//! - what is not a member of a list — messages per second, failed payloads, activity of
//!   everything, the history and its indexes, the inbox — is in shard 0, the home shard.
//!
//! A tally or detail is cut into one part per shard it touches, and each part is one atomic
//! call of the shard, recognised when retried by the shard's own writer mark (the same
//! sequence number in every shard): exactly once per shard. A call that fails is retried whole;
//! the shards that applied it skip it.

use std::sync::Arc;

use bytes::Bytes;
use fred::prelude::*;
use fred::types::Value;

use super::inbox::{InboxEntry, PartOutcome};
use super::{RANK, RedisSettings, ScriptCall, Shard, connect_client, describe_error};
use crate::detail::{Detail, Period, Scope, Seen};
use crate::message::{Tally, TopList};
use crate::store::{Entry, HistoryPage, Live, Mark, Profile, Store, StoreError, rank_entries};
use crate::timeline::{Bucket, Rolled};

/// Shards on Redis Cluster unless `REDIS_CLUSTER_SHARDS` says otherwise: a multiple of 2, 3, 4
/// and 6, so that as many masters share them evenly.
pub const DEFAULT_CLUSTER_SHARDS: usize = 12;

/// Redis Cluster's hash slots.
const SLOTS: usize = 16_384;

/// A [`Store`] on Redis: standalone, or Redis Cluster (see the module docs). Clones share one
/// client.
#[derive(Clone)]
pub struct RedisStore {
    shards: Arc<[Shard]>,
    cluster: bool,
    settings: Arc<RedisSettings>,
    /// Once checked: `None` when the data can be read, else why not. On Redis Cluster, whether
    /// it was written with this number of shards; standalone, whether Redis is a cluster node.
    layout: Arc<tokio::sync::OnceCell<Option<String>>>,
}

/// True when `url` asks for Redis Cluster.
fn is_cluster_url(url: &url::Url) -> bool {
    matches!(
        url.scheme(),
        "redis-cluster" | "rediss-cluster" | "valkey-cluster" | "valkeys-cluster"
    )
}

impl RedisStore {
    /// Creates the client and starts connecting in the background; never waits for Redis, so
    /// that a service can start (and report 503) while Redis is away.
    pub fn connect(settings: RedisSettings) -> Result<RedisStore, StoreError> {
        let cluster = is_cluster_url(settings.url.expose());
        if cluster && settings.namespace.contains(['{', '}']) {
            return Err(StoreError::Unsupported(
                "on Redis Cluster the namespace must not contain braces: they would choose the hash slot of every key".to_owned(),
            ));
        }
        let (client, last_error) = connect_client(&settings)?;
        let settings = Arc::new(settings);
        let namespaces = if cluster {
            shard_namespaces(&settings.namespace, settings.cluster_shards)
        } else {
            vec![settings.namespace.clone()]
        };
        let shards = namespaces
            .into_iter()
            .map(|ns| Shard::new(client.clone(), ns, settings.clone(), last_error.clone()))
            .collect();
        Ok(RedisStore {
            shards,
            cluster,
            settings,
            layout: Arc::default(),
        })
    }

    /// The underlying client, for tests and tools.
    pub fn client(&self) -> &Client {
        &self.home().client
    }

    /// True on Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The namespace (`REDIS_NAMESPACE`).
    pub fn namespace(&self) -> &str {
        &self.settings.namespace
    }

    /// The namespace of every shard's keys, shard 0 first (one on a standalone Redis).
    pub fn namespaces(&self) -> Vec<String> {
        self.shards
            .iter()
            .map(|s| s.keys.namespace().to_owned())
            .collect()
    }

    /// On Redis Cluster, waits (at most the command timeout) until the client knows the
    /// cluster's slots — before that, fred refuses every command ("missing cluster routing
    /// state"), where a standalone client queues them — and checks once that the data was
    /// written with as many shards as this process has: with another number every member
    /// would be looked for in the wrong shard.
    async fn ready(&self) -> Result<(), StoreError> {
        if !self.cluster {
            return self.standalone_ready().await;
        }
        let home = self.home();
        if !matches!(home.client.state(), ClientState::Connected) {
            // Half the timeout at most, so that a cluster it cannot connect to (a wrong
            // password, every master down) is reported with the reason before the caller's own
            // timeout says only that the store did not answer.
            let wait = self.settings.timeout / 2;
            let cause = match tokio::time::timeout(wait, home.client.wait_for_connect()).await {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(home.last_error().unwrap_or_else(|| describe_error(&err))),
                Err(_) => home.last_error(),
            };
            if let Some(cause) = cause {
                return Err(StoreError::Unreachable(cause));
            }
        }
        if self.layout.get().is_none() {
            // A failure to check is not kept: the next call checks again.
            let mismatch = self.check_layout().await?;
            let _ = self.layout.set(mismatch);
        }
        match self.layout.get() {
            Some(Some(why)) => Err(StoreError::Unsupported(why.clone())),
            _ => Ok(()),
        }
    }

    /// On a standalone URL, `Ok` unless Redis turned out to be a node of a Redis Cluster: its
    /// scripts would fail (`CROSSSLOT`) and its reads wait on redirections until they time out,
    /// so every call says instead which URL to give. Asked once, when the client is connected
    /// (before, asking would only delay the call's own report of why Redis is away).
    async fn standalone_ready(&self) -> Result<(), StoreError> {
        if self.layout.get().is_none()
            && matches!(self.home().client.state(), ClientState::Connected)
            && let Ok(node) = self.home().cluster_node().await
        {
            let _ = self.layout.set(node.then(|| {
                "this Redis is a node of a Redis Cluster: give its nodes as REDIS_URL=redis-cluster://host:port[,host:port…] (or REDIS_CLUSTER_NODES)".to_owned()
            }));
        }
        match self.layout.get() {
            Some(Some(why)) => Err(StoreError::Unsupported(why.clone())),
            _ => Ok(()),
        }
    }

    /// Records this process's number of shards in `{ns}{layout}:shards` (a hash tag of its
    /// own, the same whatever the number) if none is recorded; `Some(why)` when another number
    /// is.
    async fn check_layout(&self) -> Result<Option<String>, StoreError> {
        let key = format!("{}{{layout}}:shards", self.settings.namespace);
        let shards = self.shards.len() as u64;
        let home = self.home();
        let _: Option<String> = home
            .client
            .set(&key, shards, None, Some(SetOptions::NX), false)
            .await
            .map_err(|e| home.fail(e))?;
        let recorded: Option<u64> = home.client.get(&key).await.map_err(|e| home.fail(e))?;
        Ok(match recorded {
            Some(recorded) if recorded != shards => Some(format!(
                "the data under namespace {:?} was written with REDIS_CLUSTER_SHARDS={recorded}; this process has {shards}: set it to {recorded}",
                self.settings.namespace
            )),
            _ => None,
        })
    }

    /// The minute lists of `room`'s `list` that its all-time list does not hold yet (added
    /// to it at their hour's roll-up), on a standalone Redis.
    pub(crate) async fn unfolded_lists(
        &self,
        room: &Scope,
        list: TopList,
    ) -> Result<Vec<String>, StoreError> {
        let shard = self.home();
        let hours = shard.unfolded_hours(room).await?.unwrap_or_default();
        shard.unfolded_keys(room, list, &hours).await
    }

    /// Shard 0: what is not a member of a list.
    pub(crate) fn home(&self) -> &Shard {
        &self.shards[0]
    }

    /// The shard of a member of a list for everything, or of a room's or nick's keys.
    fn owner(&self, name: &[u8]) -> &Shard {
        &self.shards[self.shard_of(name)]
    }

    fn shard_of(&self, name: &[u8]) -> usize {
        if self.shards.len() == 1 {
            0
        } else {
            (fnv1a(name) % self.shards.len() as u64) as usize
        }
    }

    /// The shard of `scope`'s own keys, or `None` for everything.
    fn scope_owner(&self, scope: &Scope) -> Option<&Shard> {
        match scope {
            Scope::Global => None,
            Scope::Room(name) | Scope::Nick(name) => Some(self.owner(name)),
        }
    }

    /// `tally` cut into one part per shard.
    fn split_tally(&self, tally: &Tally) -> Vec<Tally> {
        let mut parts = vec![Tally::default(); self.shards.len()];
        parts[0].seconds = tally.seconds.clone();
        parts[0].failed = tally.failed.clone();
        for (member, n) in &tally.words {
            parts[self.shard_of(member)]
                .words
                .push((member.clone(), *n));
        }
        for (member, n) in &tally.nicks {
            parts[self.shard_of(member)]
                .nicks
                .push((member.clone(), *n));
        }
        for (member, n) in &tally.rooms {
            parts[self.shard_of(member)]
                .rooms
                .push((member.clone(), *n));
        }
        parts
    }

    /// `detail` cut into one part per shard (see the module docs for what goes where).
    pub(crate) fn split_detail(&self, detail: &Detail) -> Vec<Detail> {
        let mut parts = vec![
            Detail {
                messages: detail.messages,
                folds: detail.folds,
                ..Detail::default()
            };
            self.shards.len()
        ];
        for (place, members) in &detail.lists {
            match &place.scope {
                Scope::Global => {
                    let mut cut: Vec<Vec<(Bytes, u64)>> = vec![Vec::new(); self.shards.len()];
                    for (member, n) in members {
                        cut[self.shard_of(member)].push((member.clone(), *n));
                    }
                    for (k, members) in cut.into_iter().enumerate() {
                        if !members.is_empty() {
                            parts[k].lists.push((place.clone(), members));
                        }
                    }
                }
                Scope::Room(name) | Scope::Nick(name) => {
                    let k = self.shard_of(name);
                    parts[k].lists.push((place.clone(), members.clone()));
                }
            }
        }
        for (scope, bucket, n) in &detail.activity {
            let k = match scope {
                Scope::Global => 0,
                Scope::Room(name) | Scope::Nick(name) => self.shard_of(name),
            };
            parts[k].activity.push((scope.clone(), *bucket, *n));
        }
        for seen in &detail.seen {
            parts[self.shard_of(&seen.1)].seen.push(seen.clone());
        }
        parts[0].history = detail.history.clone();
        parts
    }

    /// Runs `apply` on every shard whose part is not empty, together; true when any applied.
    async fn on_parts<P, F, Fut>(
        &self,
        parts: Vec<P>,
        empty: impl Fn(&P) -> bool,
        apply: F,
    ) -> Result<bool, StoreError>
    where
        F: Fn(Shard, P) -> Fut,
        Fut: Future<Output = Result<bool, StoreError>>,
    {
        let calls = parts
            .into_iter()
            .zip(self.shards.iter())
            .filter(|(part, _)| !empty(part))
            .map(|(part, shard)| apply(shard.clone(), part));
        let applied = futures::future::try_join_all(calls).await?;
        Ok(applied.into_iter().any(|a| a))
    }

    /// The top of everything: the merge of every shard's top (each member is in one shard).
    async fn merged_top(
        &self,
        list: TopList,
        periods: &[Period],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let tops = futures::future::try_join_all(
            self.shards
                .iter()
                .map(|s| s.top_in(list, &Scope::Global, periods, limit)),
        )
        .await?;
        Ok(rank_entries(tops.into_iter().flatten().collect(), limit))
    }

    /// Creates the inbox and its consumer group when they do not exist yet.
    pub async fn inbox_group(&self) -> Result<(), StoreError> {
        self.ready().await?;
        self.home().inbox_group().await
    }

    /// Up to `count` entries never delivered to any consumer, now delivered to `consumer`;
    /// waits up to `block_ms` for one.
    pub async fn inbox_read(
        &self,
        consumer: &str,
        count: usize,
        block_ms: u64,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        self.ready().await?;
        self.home().inbox_read(consumer, count, block_ms).await
    }

    /// Up to `count` entries pending for longer than `min_idle_ms` with any consumer, now
    /// `consumer`'s: the work of a consumer that died or stalled.
    pub async fn inbox_claim(
        &self,
        consumer: &str,
        min_idle_ms: u64,
        count: usize,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        self.ready().await?;
        self.home().inbox_claim(consumer, min_idle_ms, count).await
    }

    /// Forgets the inbox group's consumers other than `caller` that hold nothing and were
    /// idle for `min_idle_ms` at least; returns how many.
    pub async fn inbox_forget_consumers(
        &self,
        caller: &str,
        min_idle_ms: u64,
    ) -> Result<u64, StoreError> {
        self.ready().await?;
        self.home()
            .inbox_forget_consumers(caller, min_idle_ms)
            .await
    }

    /// Applies `tally` and `detail`, the whole effect of the entries `ids`, and acknowledges
    /// and deletes the entries — if they are all still `consumer`'s. False: they were not
    /// (applied before, or claimed by another consumer), and nothing was applied.
    pub async fn inbox_apply(
        &self,
        consumer: &str,
        ids: &[String],
        tally: &Tally,
        detail: &Detail,
    ) -> Result<bool, StoreError> {
        self.ready().await?;
        if !self.cluster {
            return self.home().inbox_apply(consumer, ids, tally, detail).await;
        }
        self.cluster_inbox_apply(consumer, ids, tally, detail, false)
            .await
    }

    /// Applies and acknowledges one entry taken over from a consumer that died or stalled,
    /// like [`RedisStore::inbox_apply`]. On Redis Cluster, entries taken over are applied one
    /// by one: some shards may have applied the batch they were in, some not.
    pub async fn inbox_take_over(
        &self,
        consumer: &str,
        id: &str,
        tally: &Tally,
        detail: &Detail,
    ) -> Result<bool, StoreError> {
        self.ready().await?;
        let ids = [id.to_owned()];
        if !self.cluster {
            return self.home().inbox_apply(consumer, &ids, tally, detail).await;
        }
        self.cluster_inbox_apply(consumer, &ids, tally, detail, true)
            .await
    }

    /// On Redis Cluster, a batch of inbox entries: every shard applies its part at most once
    /// (`lua/inbox_shard.lua`), then the batch is acknowledged if still this consumer's.
    /// A shard that finds some entries applied by another call (they were taken over while
    /// this consumer stalled) applies nothing; the batch is then left pending, and taken over
    /// entry by entry later, which is exact: each shard applies an entry taken over only when
    /// no batch applied it there.
    async fn cluster_inbox_apply(
        &self,
        consumer: &str,
        ids: &[String],
        tally: &Tally,
        detail: &Detail,
        taken_over: bool,
    ) -> Result<bool, StoreError> {
        let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
            return Ok(true);
        };
        let parts = self.parts(tally, detail);
        let called: Vec<usize> = parts
            .iter()
            .enumerate()
            .filter(|(_, (t, d))| !t.is_empty() || !d.is_empty())
            .map(|(k, _)| k)
            .collect();
        let outcomes = futures::future::try_join_all(called.iter().map(|&k| {
            let (tally, detail) = &parts[k];
            self.shards[k].inbox_part(first, last, taken_over, tally, detail)
        }))
        .await?;
        if outcomes.contains(&PartOutcome::Overlap) {
            tracing::warn!(
                entries = ids.len(),
                "inbox entries were taken over while this consumer was slow: left pending, to be taken over one by one"
            );
            return Ok(false);
        }
        let acked = self.home().inbox_ack(consumer, ids).await?;
        if acked && !taken_over {
            // Acknowledged: no call can apply these entries again.
            let forgotten = futures::future::join_all(
                called
                    .iter()
                    .map(|&k| self.shards[k].inbox_forget(first, last)),
            )
            .await;
            if let Some(Err(err)) = forgotten.into_iter().find(Result::is_err) {
                tracing::debug!(error = %err, "an applied range stays until it expires");
            }
        }
        Ok(acked)
    }

    /// Every shard's part of a batch of inbox entries.
    fn parts(&self, tally: &Tally, detail: &Detail) -> Vec<(Tally, Detail)> {
        self.split_tally(tally)
            .into_iter()
            .zip(self.split_detail(detail))
            .collect()
    }
}

/// The namespaces of `count` shards under `ns` (see the module docs).
fn shard_namespaces(ns: &str, count: usize) -> Vec<String> {
    let count = count.clamp(1, SLOTS);
    (0..count)
        .map(|k| {
            let (low, high) = (k * SLOTS / count, (k + 1) * SLOTS / count);
            let tag = (0u64..)
                .map(|j| format!("{k}.{j}"))
                .find(|tag| {
                    let slot = fred::util::redis_keyslot(tag.as_bytes()) as usize;
                    (low..high).contains(&slot)
                })
                .unwrap_or_default();
            format!("{ns}{{{tag}}}:")
        })
        .collect()
}

/// 64-bit FNV-1a: small, fast and fixed forever (a member's shard must never change).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Store for RedisStore {
    async fn apply(&self, tally: &Tally, mark: Option<&Mark>) -> Result<bool, StoreError> {
        self.ready().await?;
        if !self.cluster {
            return self.home().apply(tally, mark).await;
        }
        self.on_parts(
            self.split_tally(tally),
            Tally::is_empty,
            |shard, part| async move { shard.apply(&part, mark).await },
        )
        .await
    }

    async fn apply_detail(&self, detail: &Detail, mark: Option<&Mark>) -> Result<bool, StoreError> {
        self.ready().await?;
        if !self.cluster {
            return self.home().apply_detail(detail, mark).await;
        }
        self.on_parts(
            self.split_detail(detail),
            Detail::is_empty,
            |shard, part| async move { shard.apply_detail(&part, mark).await },
        )
        .await
    }

    async fn top_in(
        &self,
        list: TopList,
        scope: &Scope,
        periods: &[Period],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.ready().await?;
        match self.scope_owner(scope) {
            _ if !self.cluster => self.home().top_in(list, scope, periods, limit).await,
            Some(shard) => shard.top_in(list, scope, periods, limit).await,
            None => self.merged_top(list, periods, limit).await,
        }
    }

    async fn activity(&self, scope: &Scope, buckets: &[Bucket]) -> Result<Vec<u64>, StoreError> {
        self.ready().await?;
        self.scope_owner(scope)
            .unwrap_or(self.home())
            .activity(scope, buckets)
            .await
    }

    async fn profile(&self, kind: Seen, name: &str) -> Result<Option<Profile>, StoreError> {
        self.ready().await?;
        let owner = self.owner(name.as_bytes());
        let Some(mut profile) = owner.profile(kind, name).await? else {
            return Ok(None);
        };
        if self.cluster && kind == Seen::Nick {
            // One plus the nicks ranked above it, in every shard.
            let above = futures::future::try_join_all(
                self.shards
                    .iter()
                    .map(|s| s.ranked_above(TopList::Nicks, profile.messages, name)),
            )
            .await?;
            profile.rank = Some(1 + above.into_iter().sum::<u64>());
        }
        Ok(Some(profile))
    }

    async fn unique_chatters(&self, room: &str, periods: &[Period]) -> Result<u64, StoreError> {
        self.ready().await?;
        self.owner(room.as_bytes())
            .unique_chatters(room, periods)
            .await
    }

    async fn history(
        &self,
        scope: &Scope,
        in_room: Option<&[u8]>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        self.ready().await?;
        self.home().history(scope, in_room, before, limit).await
    }

    async fn message(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.ready().await?;
        self.home().message(id).await
    }

    async fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Live> {
        self.home().subscribe().await
    }

    fn rolls_up(&self) -> bool {
        true
    }

    async fn rolled(&self) -> Result<Rolled, StoreError> {
        self.ready().await?;
        // What every shard has rolled up (asked of all of them together: the windowed routes
        // ask for it).
        let all = futures::future::try_join_all(self.shards.iter().map(Shard::rolled)).await?;
        Ok(all.into_iter().fold(Rolled::ALL, |low, rolled| Rolled {
            hour: low.hour.min(rolled.hour),
            day: low.day.min(rolled.day),
        }))
    }

    async fn maintain(&self, now_ms: u64) -> Result<(), StoreError> {
        self.ready().await?;
        for shard in self.shards.iter() {
            shard.maintain(now_ms).await?;
        }
        Ok(())
    }

    async fn top(&self, list: TopList, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.ready().await?;
        if !self.cluster {
            return self.home().top(list, limit).await;
        }
        self.merged_top(list, &[Period::AllTime], limit).await
    }

    async fn messages_in_second(&self, second: u64) -> Result<u64, StoreError> {
        self.ready().await?;
        self.home().messages_in_second(second).await
    }

    async fn failed_messages(&self, limit: Option<usize>) -> Result<Vec<String>, StoreError> {
        self.ready().await?;
        self.home().failed_messages(limit).await
    }

    async fn failed_total(&self) -> Result<u64, StoreError> {
        self.ready().await?;
        self.home().failed_total().await
    }

    async fn append_inbox(
        &self,
        payloads: &[Bytes],
        mark: Option<&Mark>,
    ) -> Result<(), StoreError> {
        self.ready().await?;
        self.home().append_inbox(payloads, mark).await
    }

    async fn health(&self) -> Result<String, StoreError> {
        self.ready().await?;
        if !self.cluster {
            return self.home().health().await;
        }
        // Every shard answers (each from the master that holds its slot): a master down is a
        // store down, since the top of everything needs them all.
        futures::future::try_join_all(self.shards.iter().map(Shard::reachable)).await?;
        Ok("ready".to_owned())
    }

    fn unreachable(&self) -> Option<String> {
        self.home().unreachable()
    }

    fn describe(&self) -> String {
        if self.cluster {
            format!(
                "redis cluster at {} (namespace {:?}, {} shards)",
                self.settings.url,
                self.settings.namespace,
                self.shards.len()
            )
        } else {
            self.home().describe()
        }
    }
}

impl Shard {
    /// Checks that the master holding this shard's slot answers.
    async fn reachable(&self) -> Result<(), StoreError> {
        let _: i64 = self
            .client
            .exists(self.keys.rollup())
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// How many members of `list` (for everything) rank above `member` with `count`.
    async fn ranked_above(
        &self,
        list: TopList,
        count: u64,
        member: &str,
    ) -> Result<u64, StoreError> {
        let call = || ScriptCall {
            keys: vec![Key::from(self.keys.top(list))],
            args: vec![Value::from(count.to_string()), Value::from(member)],
        };
        let above: i64 = self.run(&RANK, call).await?;
        Ok(above.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_tags_spread_evenly_over_the_slots() {
        let namespaces = shard_namespaces("cs:", 12);
        assert_eq!(namespaces.len(), 12);
        for (k, ns) in namespaces.iter().enumerate() {
            let tag = ns
                .strip_prefix("cs:{")
                .and_then(|rest| rest.strip_suffix("}:"))
                .expect("cs:{tag}:");
            let slot = fred::util::redis_keyslot(format!("{ns}words").as_bytes()) as usize;
            assert_eq!(slot, fred::util::redis_keyslot(tag.as_bytes()) as usize);
            assert!(
                (k * SLOTS / 12..(k + 1) * SLOTS / 12).contains(&slot),
                "{ns}"
            );
        }
        // Fixed forever: data written by one version is found by the next.
        assert_eq!(namespaces, shard_namespaces("cs:", 12));
        assert_eq!(fnv1a(b"Kappa"), fnv1a(b"Kappa"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
