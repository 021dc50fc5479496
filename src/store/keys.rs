//! Redis key names, all in one place. Every key starts with the namespace, and every key a
//! script touches is built here and passed to it in `KEYS` (Redis's scripting rule, and what
//! Redis Cluster needs to route a call).
//!
//! | key | type | content |
//! |---|---|---|
//! | `{ns}words`, `{ns}nicks`, `{ns}rooms` | sorted set | member → count |
//! | `{ns}failedMessages` | sorted set | failed payload → order of its last arrival (newest kept) |
//! | `{ns}failedMessages:total` | string | failed messages ever recorded |
//! | `{ns}messagesPerSecond:{unix second}` | string | messages counted in that second; expires |
//! | `{ns}writer:{id}` | string | one worker's applied sequence numbers: the highest, and a bitmap of the window below it; fixed size; expires |
//!
//! The TypeScript service kept `{ns}failedMessages` as a plain set; such a set is read as it
//! is and converted to the sorted set the first time a new failed message is recorded.

use crate::message::TopList;

/// Key names of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    ns: String,
}

impl Keys {
    /// Keys under namespace `ns` (e.g. `chat-stats:`).
    pub(crate) fn new(ns: impl Into<String>) -> Keys {
        Keys { ns: ns.into() }
    }

    /// The namespace.
    pub(crate) fn namespace(&self) -> &str {
        &self.ns
    }

    /// The sorted set of a top list.
    pub(crate) fn top(&self, list: TopList) -> String {
        format!("{}{}", self.ns, list.name())
    }

    /// The kept failed payloads.
    pub(crate) fn failed(&self) -> String {
        format!("{}failedMessages", self.ns)
    }

    /// The failed-message counter.
    pub(crate) fn failed_total(&self) -> String {
        format!("{}failedMessages:total", self.ns)
    }

    /// The message counter of one Unix second.
    pub(crate) fn second(&self, second: u64) -> String {
        format!("{}messagesPerSecond:{second}", self.ns)
    }

    /// The applied sequence numbers of one writer (one worker process).
    pub(crate) fn writer(&self, writer: &str) -> String {
        format!("{}writer:{writer}", self.ns)
    }
}
