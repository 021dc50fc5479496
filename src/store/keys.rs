//! Redis key names, all in one place. Every key starts with the namespace.
//!
//! | key | type | content |
//! |---|---|---|
//! | `{ns}words`, `{ns}nicks`, `{ns}rooms` | sorted set | member → count |
//! | `{ns}failedMessages` | sorted set | failed payload → order of its last arrival (newest kept) |
//! | `{ns}failedMessages:total` | string | failed messages ever recorded |
//! | `{ns}messagesPerSecond:{unix second}` | string | messages counted in that second; expires |
//! | `{ns}writer:{id}` | string | one worker's watermark: every sequence number up to it is applied (a trailing `+` while the set below has members); expires |
//! | `{ns}writer:{id}:above` | sorted set | that worker's applied sequence numbers above the watermark (normally empty); expires |
//!
//! The TypeScript service kept `{ns}failedMessages` as a plain set; such a set is read as it
//! is and converted to the sorted set the first time a new failed message is recorded.

use crate::message::TopList;

/// Key names of one namespace.
#[derive(Debug, Clone)]
pub struct Keys {
    ns: String,
}

impl Keys {
    /// Keys under namespace `ns` (e.g. `chat-stats:`).
    pub fn new(ns: impl Into<String>) -> Keys {
        Keys { ns: ns.into() }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The sorted set of a top list.
    pub fn top(&self, list: TopList) -> String {
        format!("{}{}", self.ns, list.name())
    }

    /// The kept failed payloads.
    pub fn failed(&self) -> String {
        format!("{}failedMessages", self.ns)
    }

    /// The failed-message counter.
    pub fn failed_total(&self) -> String {
        format!("{}failedMessages:total", self.ns)
    }

    /// The message counter of one Unix second.
    pub fn second(&self, second: u64) -> String {
        format!("{}messagesPerSecond:{second}", self.ns)
    }
}
