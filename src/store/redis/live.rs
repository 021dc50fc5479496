//! The live feed of a Redis store: one task follows the history stream and broadcasts each new
//! entry to the API's subscribers (`/live`, `/ws`), whichever process recorded it.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::config::ReconnectPolicy;

use super::{Live, RedisSettings, keep_connected};

/// Follows the history stream with a connection of its own (a blocking read would hold up the
/// shared one) and sends every new entry to `sender`, for as long as anyone listens.
pub(super) async fn tail(
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
pub(super) fn stream_entries(reply: Value) -> Vec<(String, Vec<(bytes::Bytes, bytes::Bytes)>)> {
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
