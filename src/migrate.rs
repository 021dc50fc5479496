//! `chatstats-migrate`: moves the lasting statistics of one Redis into another — in practice
//! from a standalone Redis to a Redis Cluster, whose layout differs (README, "Redis Cluster").
//!
//! What lasts is moved: the all-time lists of everything (words, nicks, rooms, emotes), of each
//! room and of each nick, the first and last message times of rooms and nicks, the failed
//! payloads (oldest first, so the newest stay newest) and their total. Time buckets and the
//! history expire within their retention and are left behind. Members are written through the
//! target store's own calls ([`Store::apply`], [`Store::apply_detail`]), so they land in the
//! target's layout whatever it is. Workers must be stopped meanwhile; a target that already
//! holds statistics under the namespace is refused, so a migration is never applied twice.

use bytes::Bytes;
use fred::prelude::*;
use fred::types::scan::Scanner;
use futures::TryStreamExt;
use tracing::info;

use crate::detail::{Detail, Period, Place, Scope, Seen};
use crate::message::{Tally, TopList};
use crate::store::redis::RedisStore;
use crate::store::{Store, StoreError};

/// Members written per call.
const CHUNK: usize = 1000;

/// What was moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Members of lists, everything's, rooms' and nicks'.
    pub members: u64,
    /// Rooms and nicks whose first and last message times were moved.
    pub seen: u64,
    /// Failed payloads kept.
    pub failed: u64,
}

/// Moves the lasting statistics of `from` (a standalone Redis) into `to` (see the module docs).
pub async fn migrate(from: &RedisStore, to: &RedisStore) -> Result<Moved, StoreError> {
    check_sides(from, to).await?;
    let mut moved = Moved::default();
    moved.members += move_everythings_lists(from, to).await?;
    moved.members += move_rooms_and_nicks_lists(from, to).await?;
    moved.seen += move_first_and_last_times(from, to).await?;
    moved.failed += move_failed(from, to).await?;
    Ok(moved)
}

/// Refuses a source that is a cluster and a target that holds statistics already; checks first
/// that both answer, each named: the source is read with plain scans, which would wait for a
/// connection for ever (a refused password makes the client retry).
async fn check_sides(from: &RedisStore, to: &RedisStore) -> Result<(), StoreError> {
    if from.is_cluster() {
        return Err(StoreError::Unsupported(
            "the source must be a standalone Redis".to_owned(),
        ));
    }
    let side = |name: &'static str| {
        move |err: StoreError| match err {
            StoreError::Unreachable(cause) => {
                StoreError::Unreachable(format!("{cause} (the {name})"))
            }
            StoreError::Timeout(ms) => {
                StoreError::Unreachable(format!("no answer within {ms} ms (the {name})"))
            }
            other => other,
        }
    };
    from.top(TopList::Words, 1)
        .await
        .map_err(side("source, --from"))?;
    for list in TopList::ALL {
        let held = to.top(list, 1).await.map_err(side("target, --to"))?;
        if !held.is_empty() {
            return Err(StoreError::Unsupported(format!(
                "the target already holds {} under namespace {:?}: migrate into an empty namespace",
                list.name(),
                to.namespace()
            )));
        }
    }
    Ok(())
}

/// Everything's all-time lists: words, nicks and rooms as part 1's tallies, emotes as a detail.
async fn move_everythings_lists(from: &RedisStore, to: &RedisStore) -> Result<u64, StoreError> {
    let mut moved = 0;
    for list in TopList::ALL {
        let key = format!("{}{}", from.namespace(), list.name());
        moved += copy_list(from.client(), &key, |members| async move {
            if list == TopList::Emotes {
                return add_to(to, Scope::Global, list, members).await;
            }
            let mut tally = Tally::default();
            *match list {
                TopList::Words => &mut tally.words,
                TopList::Nicks => &mut tally.nicks,
                _ => &mut tally.rooms,
            } = members;
            to.apply(&tally, None).await.map(|_| ())
        })
        .await?;
    }
    Ok(moved)
}

/// Every room's and nick's all-time lists, with what they have not folded in yet: a nick's
/// pending increments and a room's minutes of hours not rolled up.
async fn move_rooms_and_nicks_lists(from: &RedisStore, to: &RedisStore) -> Result<u64, StoreError> {
    let (ns, client) = (from.namespace(), from.client());
    let mut moved = 0;
    for kind in ["room", "nick"] {
        for key in scan_keys(client, &format!("{ns}{kind}:{{*")).await? {
            if let Some(nick) = pending_nick(ns, kind, &key) {
                moved += copy_pending(client, to, nick, &key).await?;
            } else if let Some(room) = folded_room(ns, kind, &key) {
                for list in [TopList::Words, TopList::Nicks, TopList::Emotes] {
                    for minute in from.unfolded_lists(&room, list).await? {
                        moved += copy_list(client, &minute, |members| {
                            add_to(to, room.clone(), list, members)
                        })
                        .await?;
                    }
                }
            } else if let Some((scope, list)) = scoped_list(ns, kind, &key) {
                moved += copy_list(client, &key, |members| {
                    add_to(to, scope.clone(), list, members)
                })
                .await?;
            }
        }
    }
    Ok(moved)
}

/// The first and last message times of rooms and nicks; returns how many rooms and nicks.
async fn move_first_and_last_times(from: &RedisStore, to: &RedisStore) -> Result<u64, StoreError> {
    let (ns, client) = (from.namespace(), from.client());
    let mut moved = 0;
    for (kind, name) in [(Seen::Room, "rooms"), (Seen::Nick, "nicks")] {
        let firsts = read_list(client, &format!("{ns}{name}:first")).await?;
        let lasts: std::collections::HashMap<Bytes, u64> =
            read_list(client, &format!("{ns}{name}:last"))
                .await?
                .into_iter()
                .collect();
        for chunk in firsts.chunks(CHUNK) {
            let detail = Detail {
                seen: chunk
                    .iter()
                    .map(|(who, first)| {
                        let last = lasts.get(who).copied().unwrap_or(*first);
                        (kind, who.clone(), *first, last)
                    })
                    .collect(),
                ..Detail::default()
            };
            to.apply_detail(&detail, None).await?;
            moved += chunk.len() as u64;
        }
    }
    Ok(moved)
}

/// The failed payloads, oldest first (so the newest stay newest), and the total; returns how
/// many payloads.
async fn move_failed(from: &RedisStore, to: &RedisStore) -> Result<u64, StoreError> {
    let mut failed = from.failed_messages(None).await?;
    failed.reverse();
    for chunk in failed.chunks(CHUNK) {
        let tally = Tally {
            failed: chunk.iter().map(|f| Bytes::from(f.clone())).collect(),
            ..Tally::default()
        };
        to.apply(&tally, None).await?;
    }
    let total = from.failed_total().await?;
    let missing = total.saturating_sub(to.failed_total().await?);
    if missing > 0 {
        let key = format!("{}failedMessages:total", to.namespaces()[0]);
        let _: i64 = to.client().incr_by(key, missing as i64).await?;
    }
    Ok(failed.len() as u64)
}

/// Adds `members` to `scope`'s all-time `list` in `to`.
async fn add_to(
    to: &RedisStore,
    scope: Scope,
    list: TopList,
    members: Vec<(Bytes, u64)>,
) -> Result<(), StoreError> {
    let place = Place {
        scope,
        period: Period::AllTime,
        list,
    };
    to.apply_detail(&one_list(place, members), None)
        .await
        .map(|_| ())
}

/// A detail of increments of one list.
fn one_list(place: Place, members: Vec<(Bytes, u64)>) -> Detail {
    Detail {
        lists: vec![(place, members)],
        ..Detail::default()
    }
}

/// The nick of a key `{ns}nick:{N}:pending` (increments not folded into its lists yet).
fn pending_nick(ns: &str, kind: &str, key: &str) -> Option<Scope> {
    let rest = key
        .strip_prefix(ns)?
        .strip_prefix(kind)?
        .strip_prefix(":{")?;
    let (escaped, tail) = rest.split_once('}')?;
    (kind == "nick" && tail == ":pending").then(|| Scope::Nick(Bytes::from(unescape(escaped))))
}

/// Adds a nick's pending increments (`key`) to its lists in `to`; returns how many there were.
async fn copy_pending(
    client: &Client,
    to: &RedisStore,
    nick: Scope,
    key: &str,
) -> Result<u64, StoreError> {
    let text: Option<Bytes> = client.get(key).await?;
    let Some(increments) = text.as_deref().and_then(crate::store::redis::parse_records) else {
        return Ok(0);
    };
    let count = increments.len() as u64;
    let mut lists: Vec<(Place, Vec<(Bytes, u64)>)> = Vec::new();
    for (list, member, n) in increments {
        match lists.iter_mut().find(|(place, _)| place.list == list) {
            Some((_, members)) => members.push((member, n)),
            None => lists.push((
                Place {
                    scope: nick.clone(),
                    period: Period::AllTime,
                    list,
                },
                vec![(member, n)],
            )),
        }
    }
    for part in (Detail {
        lists,
        ..Detail::default()
    })
    .split(CHUNK)
    {
        to.apply_detail(&part, None).await?;
    }
    Ok(count)
}

/// The room or nick and the list of an all-time key `{ns}{kind}:{R}:{list}` (`None` for its
/// other keys: buckets, activity, history…).
fn scoped_list(ns: &str, kind: &str, key: &str) -> Option<(Scope, TopList)> {
    let rest = key
        .strip_prefix(ns)?
        .strip_prefix(kind)?
        .strip_prefix(":{")?;
    // Braces in a name are escaped: the first `}` closes it.
    let (escaped, list) = rest.split_once('}')?;
    let list = match (kind, list) {
        (_, ":words") => TopList::Words,
        (_, ":emotes") => TopList::Emotes,
        ("room", ":nicks") => TopList::Nicks,
        ("nick", ":rooms") => TopList::Rooms,
        _ => return None,
    };
    let name = Bytes::from(unescape(escaped));
    Some(match kind {
        "room" => (Scope::Room(name), list),
        _ => (Scope::Nick(name), list),
    })
}

/// The room whose `folded` hour `key` is (`{ns}room:{R}:folded`).
fn folded_room(ns: &str, kind: &str, key: &str) -> Option<Scope> {
    let rest = key
        .strip_prefix(ns)?
        .strip_prefix(kind)?
        .strip_prefix(":{")?;
    let (escaped, "folded") = rest.split_once("}:")? else {
        return None;
    };
    (kind == "room").then(|| Scope::Room(Bytes::from(unescape(escaped))))
}

/// A name as it was before `%`, `{` and `}` were percent-encoded in key names.
fn unescape(escaped: &str) -> String {
    escaped
        .replace("%7B", "{")
        .replace("%7D", "}")
        .replace("%25", "%")
}

/// Every key matching `pattern`.
async fn scan_keys(client: &Client, pattern: &str) -> Result<Vec<String>, StoreError> {
    let mut keys = Vec::new();
    let mut pages = std::pin::pin!(client.scan_buffered(pattern, Some(1000), None));
    while let Some(key) = pages.try_next().await? {
        if let Some(key) = key.into_string() {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Every member of the sorted set `key` with its score, in pages.
async fn read_list(client: &Client, key: &str) -> Result<Vec<(Bytes, u64)>, StoreError> {
    // A scan may give a member twice (while Redis rehashes): each once, by member.
    let mut out = std::collections::BTreeMap::new();
    let mut pages = std::pin::pin!(client.zscan(key, "*", Some(CHUNK as u32)));
    while let Some(mut page) = pages.try_next().await? {
        for (member, score) in page.take_results().unwrap_or_default() {
            if let Some(member) = member.into_bytes() {
                out.insert(member, score.max(0.0) as u64);
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Copies the sorted set `key` in chunks through `write`; returns the members copied.
async fn copy_list<F, Fut>(client: &Client, key: &str, write: F) -> Result<u64, StoreError>
where
    F: Fn(Vec<(Bytes, u64)>) -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    let members = read_list(client, key).await?;
    let mut copied = 0;
    for chunk in members.chunks(CHUNK) {
        write(chunk.to_vec()).await?;
        copied += chunk.len() as u64;
    }
    if copied > 0 {
        info!(key, members = copied, "moved");
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_time_keys_of_rooms_and_nicks_are_recognised() {
        let room = |name: &str| Scope::Room(Bytes::from(name.to_owned()));
        assert_eq!(
            scoped_list("ns:", "room", "ns:room:{#a%7Db}:words"),
            Some((room("#a}b"), TopList::Words))
        );
        assert_eq!(
            scoped_list("ns:", "nick", "ns:nick:{bob}:rooms"),
            Some((Scope::Nick(Bytes::from_static(b"bob")), TopList::Rooms))
        );
        for other in [
            "ns:room:{#a}:words:m:123",
            "ns:room:{#a}:activity:m:1",
            "ns:room:{#a}:history",
            "ns:room:{#a}:rooms",
        ] {
            assert_eq!(scoped_list("ns:", "room", other), None, "{other}");
        }
    }
}
