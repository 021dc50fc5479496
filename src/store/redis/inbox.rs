//! The inbox on Redis: a stream that `POST /messages` and forwarding workers append to, and
//! that the consumer group [`GROUP`] shares among any number of workers (`XREADGROUP`, and
//! `XAUTOCLAIM` of what a dead or stalled consumer left pending).
//!
//! Exactly once: a batch's tally and detail are applied, and its entries acknowledged and
//! deleted, by one script that first checks that every entry is still pending for the calling
//! consumer. There is no moment at which an entry is applied but not acknowledged; a consumer
//! that stalled and lost its entries to another finds them no longer its own and applies
//! nothing; a call retried after a lost reply finds them acknowledged and applies nothing.

use bytes::Bytes;
use fred::prelude::*;
use fred::types::Value;

use super::{Script, ScriptCall, Shard, build_call, detail_call, stream_entries};
use crate::detail::Detail;
use crate::message::Tally;
use crate::store::StoreError;
use crate::timeline::now_ms;

/// An inbox script: `mark.lua`, `records.lua`, `apply.lua` and `detail.lua` as the functions
/// `apply_part` and `detail_part`, `parts.lua` (which runs them), then the script's own text.
macro_rules! inbox_script {
    ($($text:expr),+) => {
        concat!(
            include_str!("../lua/mark.lua"),
            include_str!("../lua/records.lua"),
            "local function apply_part(KEYS, ARGV)\n",
            include_str!("../lua/apply.lua"),
            "\nend\nlocal function detail_part(KEYS, ARGV)\n",
            include_str!("../lua/detail.lua"),
            "\nend\n",
            include_str!("../lua/parts.lua"),
            $($text),+
        )
    };
}

/// The consumer group of every worker.
pub const GROUP: &str = "chatstats";

/// Applies a batch of inbox entries and acknowledges them (see the module docs).
static INBOX: Script = Script::new(inbox_script!(include_str!("../lua/inbox_apply.lua")));

/// On Redis Cluster: one shard's part of a batch of inbox entries (see the script).
static INBOX_SHARD: Script = Script::new(inbox_script!(
    include_str!("../lua/bytes.lua"),
    include_str!("../lua/inbox_shard.lua")
));

/// On Redis Cluster: acknowledges a batch once every shard applied its part.
static INBOX_ACK: Script = Script::new(include_str!("../lua/inbox_ack.lua"));
static INBOX_CONSUMERS: Script = Script::new(include_str!("../lua/inbox_consumers.lua"));

/// How a shard's part of inbox entries is applied on Redis Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartOutcome {
    /// Applied now.
    Applied,
    /// Applied before.
    Before,
    /// Some of the entries were applied by another call: nothing applied.
    Overlap,
}

/// One inbox entry: its id and its payload.
#[derive(Debug, Clone)]
pub struct InboxEntry {
    /// The stream entry id.
    pub id: String,
    /// The payload as it was appended (an entry chatstats did not append: its fields as
    /// text, which is not JSON); `None`: the entry has no fields.
    pub payload: Option<Bytes>,
}

impl Shard {
    /// Creates the inbox and its consumer group when they do not exist yet.
    pub async fn inbox_group(&self) -> Result<(), StoreError> {
        let created: Result<Value, Error> = self
            .client
            .xgroup_create(self.keys.inbox(), GROUP, "0", true)
            .await;
        match created {
            Err(err) if err.details().starts_with("BUSYGROUP") => Ok(()),
            other => other.map(|_| ()).map_err(|e| self.fail(e)),
        }
    }

    /// Up to `count` entries never delivered to any consumer, now delivered to `consumer`;
    /// waits up to `block_ms` for one.
    pub async fn inbox_read(
        &self,
        consumer: &str,
        count: usize,
        block_ms: u64,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let reply: Value = self
            .client
            .xreadgroup(
                GROUP,
                consumer,
                Some(count as u64),
                Some(block_ms),
                false,
                self.keys.inbox(),
                ">",
            )
            .await
            .map_err(|e| self.fail(e))?;
        Ok(stream_entries(reply)
            .into_iter()
            .map(|(id, fields)| InboxEntry {
                payload: payload_of(&id, fields),
                id,
            })
            .collect())
    }

    /// Up to `count` entries pending for longer than `min_idle_ms` with any consumer, now
    /// `consumer`'s: the work of a consumer that died or stalled.
    pub async fn inbox_claim(
        &self,
        consumer: &str,
        min_idle_ms: u64,
        count: usize,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let reply: Value = self
            .client
            .xautoclaim(
                self.keys.inbox(),
                GROUP,
                consumer,
                min_idle_ms,
                "0-0",
                Some(count as u64),
                false,
            )
            .await
            .map_err(|e| self.fail(e))?;
        // [next cursor, [entries], [ids deleted while pending]]
        let Value::Array(mut parts) = reply else {
            return Ok(Vec::new());
        };
        if parts.len() < 2 {
            return Ok(Vec::new());
        }
        let entries = parts.swap_remove(1);
        let wrapped = Value::Array(vec![Value::Array(vec![
            Value::from(self.keys.inbox()),
            entries,
        ])]);
        Ok(stream_entries(wrapped)
            .into_iter()
            .map(|(id, fields)| InboxEntry {
                payload: payload_of(&id, fields),
                id,
            })
            .collect())
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
        let now = now_ms();
        let call = || {
            let mut call = ScriptCall {
                keys: vec![Key::from(self.keys.inbox())],
                args: vec![
                    Value::from(GROUP),
                    Value::from(consumer),
                    Value::Integer(ids.len() as i64),
                ],
            };
            call.args
                .extend(ids.iter().map(|id| Value::from(id.as_str())));
            self.push_parts(&mut call, tally, detail, now);
            call
        };
        let applied: i64 = self.run(&INBOX, call).await?;
        Ok(applied == 1)
    }

    /// On Redis Cluster: applies this shard's part of the entries `first..=last` (stream ids)
    /// unless it was applied before; `taken_over`: one entry taken over from another consumer.
    pub(crate) async fn inbox_part(
        &self,
        first: &str,
        last: &str,
        taken_over: bool,
        tally: &Tally,
        detail: &Detail,
    ) -> Result<PartOutcome, StoreError> {
        let now = now_ms();
        let (first, last) = (padded_id(first)?, padded_id(last)?);
        // Ranges are kept a day: far longer than any consumer can stall mid-batch unnoticed.
        let oldest = format!("{:020}", now.saturating_sub(86_400_000));
        let call = || {
            let mut call = ScriptCall {
                keys: vec![Key::from(self.keys.inbox_applied())],
                args: vec![
                    Value::from(if taken_over { "t" } else { "b" }),
                    Value::from(first.as_str()),
                    Value::from(last.as_str()),
                    Value::from(oldest.as_str()),
                ],
            };
            self.push_parts(&mut call, tally, detail, now);
            call
        };
        let outcome: i64 = self.run(&INBOX_SHARD, call).await?;
        Ok(match outcome {
            1 => PartOutcome::Applied,
            2 => PartOutcome::Before,
            _ => PartOutcome::Overlap,
        })
    }

    /// On Redis Cluster: forgets the range of a batch acknowledged (no call can apply its
    /// entries again); a range left behind is dropped after a day anyway.
    pub(crate) async fn inbox_forget(&self, first: &str, last: &str) -> Result<(), StoreError> {
        let range = format!("{} {}", padded_id(first)?, padded_id(last)?);
        let _: i64 = self
            .client
            .zrem(self.keys.inbox_applied(), range)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Forgets the group's consumers other than `caller` that hold no pending entry and were
    /// idle for `min_idle_ms` at least (`lua/inbox_consumers.lua`); returns how many.
    pub(crate) async fn inbox_forget_consumers(
        &self,
        caller: &str,
        min_idle_ms: u64,
    ) -> Result<u64, StoreError> {
        let call = || ScriptCall {
            keys: vec![Key::from(self.keys.inbox())],
            args: vec![
                Value::from(GROUP),
                Value::from(min_idle_ms.to_string()),
                Value::from(caller),
            ],
        };
        let forgotten: i64 = self.run(&INBOX_CONSUMERS, call).await?;
        Ok(forgotten.max(0) as u64)
    }

    /// On Redis Cluster: acknowledges and deletes the entries `ids` if they are all still
    /// `consumer`'s.
    pub(crate) async fn inbox_ack(
        &self,
        consumer: &str,
        ids: &[String],
    ) -> Result<bool, StoreError> {
        let call = || ScriptCall {
            keys: vec![Key::from(self.keys.inbox())],
            args: [GROUP, consumer]
                .into_iter()
                .chain(ids.iter().map(String::as_str))
                .map(Value::from)
                .collect(),
        };
        let acked: i64 = self.run(&INBOX_ACK, call).await?;
        Ok(acked == 1)
    }

    /// Appends the tally's and the detail's calls to `call`, each as its number of keys, its
    /// number of arguments and its arguments (`lua/inbox_apply.lua`).
    fn push_parts(&self, call: &mut ScriptCall, tally: &Tally, detail: &Detail, now: u64) {
        let settings = &self.settings;
        let parts = [
            (!tally.is_empty()).then(|| {
                build_call(
                    &self.keys,
                    settings.second_ttl,
                    settings.failed_cap,
                    tally,
                    None,
                )
            }),
            (!detail.is_empty())
                .then(|| detail_call(&self.keys, &settings.retention, detail, None, now)),
        ];
        for part in parts {
            let part = part.unwrap_or(ScriptCall {
                keys: Vec::new(),
                args: Vec::new(),
            });
            call.args.push(Value::Integer(part.keys.len() as i64));
            call.args.push(Value::Integer(part.args.len() as i64));
            call.keys.extend(part.keys);
            call.args.extend(part.args);
        }
    }
}

/// A stream id `ms-seq` with both numbers zero-padded to 20 digits: byte order is id order.
fn padded_id(id: &str) -> Result<String, StoreError> {
    id.split_once('-')
        .and_then(|(ms, seq)| Some((ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?)))
        .map(|(ms, seq)| format!("{ms:020}-{seq:020}"))
        .ok_or_else(|| StoreError::Data(format!("{id:?} is not a stream id")))
}

/// The payload of entry `id`: its `p` field. An entry with other fields only was not appended
/// by chatstats (`XADD` by hand, another program): its fields, as text, make a payload that is
/// not JSON, so that it is recorded as a failed message (`/stats/failedMessages`) rather than
/// acknowledged without a trace. `None`: no fields at all.
fn payload_of(id: &str, fields: Vec<(Bytes, Bytes)>) -> Option<Bytes> {
    if fields.is_empty() {
        return None;
    }
    if let Some((_, payload)) = fields.iter().find(|(name, _)| name.as_ref() == b"p") {
        return Some(payload.clone());
    }
    let text: Vec<String> = fields
        .iter()
        .map(|(name, value)| {
            format!(
                "{}={}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(value)
            )
        })
        .collect();
    tracing::warn!(
        entry = id,
        "an inbox entry without a payload field `p`: recorded as a failed message"
    );
    Some(Bytes::from(format!(
        "inbox entry {id} without a payload field p: {}",
        text.join(" ")
    )))
}
