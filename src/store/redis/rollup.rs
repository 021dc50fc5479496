//! The roll-up of a Redis store: hours from minutes and days from hours, once they have ended
//! (`lua/rollup.lua`); a room's hour also adds its minutes to the room's all-time lists. And
//! the minutes a room's all-time lists may not hold yet, for readers that add them.

use fred::prelude::*;

use super::{FOLD_GRACE_SECS, ROLLUP, ROLLUP_DONE, ScriptCall, Shard};
use crate::detail::{Scope, Seen};
use crate::message::TopList;
use crate::store::{Store, StoreError};
use crate::timeline::{Bucket, Granularity, children};

/// How long after an hour (or day) ends its roll-up waits: longer than any message can take
/// from being read to being applied, and than clock differences between workers.
const SETTLE_MS: u64 = 120_000;
/// At most this many hours (and days) are rolled up per call of [`Store::maintain`].
const ROLLUPS_PER_CALL: u64 = 6;

impl Shard {
    /// Rolls up the hours, then the days, that ended at least [`SETTLE_MS`] ago and are not
    /// rolled up yet: for everything and for each room active in them, their finer buckets are
    /// merged into theirs, then the hour (day) is marked rolled for every scope. Hours whose
    /// minutes are no longer kept are skipped: there is nothing left to roll up.
    pub(super) async fn roll_up(&self, now_ms: u64) -> Result<(), StoreError> {
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
    pub(super) async fn unfolded_hours(
        &self,
        room: &Scope,
    ) -> Result<Option<Vec<u64>>, StoreError> {
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
    pub(super) async fn unfolded_keys(
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
    pub(super) fn unfolded_call(
        &self,
        list: TopList,
        room: &Scope,
        hours: &[u64],
        own: Value,
    ) -> ScriptCall {
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
}
