//! The live upstream: an endless HTTP body, followed across any number of reconnects.
//!
//! Every failure is logged with its reason and followed by a reconnect after an exponential,
//! jittered, capped delay ([`crate::retry::backoff`]). The delay goes back to its minimum only
//! once a connection has delivered a real event (a JSON payload): an upstream that answers 200
//! with something else — a maintenance page, a body in an encoding we cannot read — is retried
//! ever more slowly instead of several times a second. Compressed bodies (`gzip`, `br`,
//! `deflate`) are decoded; an HTML page or an unknown `Content-Encoding` is refused with
//! a reason that says so. The URL may carry a key: it is a [`SecretUrl`], and reqwest's errors
//! are stripped of it before they are shown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use tracing::{info, warn};

use super::{Decoder, Frame, Source, SourceError};
use crate::retry::backoff;
use crate::telemetry::SecretUrl;

/// How to follow the upstream.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The stream's URL.
    pub url: SecretUrl,
    /// Longest silence before the connection is considered stalled and replaced.
    pub read_timeout: Duration,
    /// First reconnect delay; doubles per failed attempt.
    pub backoff_min: Duration,
    /// Cap of the reconnect delay.
    pub backoff_max: Duration,
    /// Longest line; longer ones become failed messages.
    pub line_cap: usize,
}

/// An endless source over HTTP. It never ends by itself.
pub struct HttpSource {
    client: reqwest::Client,
    settings: HttpSettings,
    response: Option<reqwest::Response>,
    decoder: Decoder,
    /// Connection attempts since a connection last delivered an event.
    attempt: u32,
    /// Connection attempts ever made, readable from outside.
    attempts: Arc<AtomicU64>,
}

/// Follows up to 10 redirects, but not to a URL carrying credentials (`user:password@`): the
/// HTTP client's own debug log would show them as it connects, and an upstream has no business
/// handing out passwords.
fn follow_without_credentials(attempt: reqwest::redirect::Attempt) -> reqwest::redirect::Action {
    let url = attempt.url();
    if !url.username().is_empty() || url.password().is_some() {
        attempt.error("the upstream redirected to a URL with credentials; not followed")
    } else if attempt.previous().len() >= 10 {
        attempt.error("too many redirects")
    } else {
        attempt.follow()
    }
}

impl HttpSource {
    /// A source following `settings.url`; nothing is connected until the first read.
    pub fn new(settings: HttpSettings) -> HttpSource {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.read_timeout)
            .user_agent(concat!("chatstats/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(
                follow_without_credentials,
            ))
            // The URL's query may hold a key: never sent on to where a redirect leads.
            .referer(false)
            .build()
            .unwrap_or_default();
        HttpSource {
            client,
            decoder: Decoder::new(settings.line_cap),
            settings,
            response: None,
            attempt: 0,
            attempts: Arc::default(),
        }
    }

    /// A counter of the connection attempts this source has made (for monitoring and tests).
    pub fn attempts(&self) -> Arc<AtomicU64> {
        self.attempts.clone()
    }

    async fn connect(&mut self) {
        if self.attempt > 0 {
            let delay = backoff(
                self.attempt,
                self.settings.backoff_min,
                self.settings.backoff_max,
            );
            info!(
                attempt = self.attempt,
                delay_ms = delay.as_millis() as u64,
                "reconnecting to the upstream"
            );
            crate::telemetry::metrics::upstream_reconnect();
            tokio::time::sleep(delay).await;
        }
        self.attempt = self.attempt.saturating_add(1);
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let request = self.client.get(self.settings.url.expose().clone()).send();
        match tokio::time::timeout(self.settings.read_timeout, request).await {
            Ok(Ok(response)) => match refusal(&response) {
                None => {
                    info!(url = %self.settings.url, status = response.status().as_u16(), "connected to the upstream");
                    self.response = Some(response);
                }
                Some(reason) => self.lost(reason),
            },
            Ok(Err(err)) => self.lost(format!("cannot connect: {}", error_chain(err))),
            Err(_) => self.lost(format!(
                "no answer within {} ms",
                self.settings.read_timeout.as_millis()
            )),
        }
    }

    fn lost(&mut self, reason: String) {
        let partial = self.decoder.pending();
        warn!(%reason, partial_line_bytes = partial, "upstream connection lost");
        self.response = None;
        self.decoder.reset();
    }
}

/// Why an answer is not the stream, if it is not.
fn refusal(response: &reqwest::Response) -> Option<String> {
    let status = response.status();
    if !status.is_success() {
        return Some(format!("the upstream answered {status}"));
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
    };
    // reqwest removes the header of every encoding it decodes; any left is one it cannot.
    if let Some(encoding) = header(CONTENT_ENCODING).filter(|e| !e.is_empty() && e != "identity") {
        return Some(format!(
            "the upstream answered {status} with Content-Encoding {encoding}, which cannot be decoded"
        ));
    }
    if let Some(kind) = header(CONTENT_TYPE).filter(|t| t.starts_with("text/html")) {
        return Some(format!(
            "the upstream answered {status} with an HTML page ({kind}), not an event stream"
        ));
    }
    None
}

/// A reqwest error and its causes on one line, without the request URL (it may hold a key).
fn error_chain(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// True when `frames` hold a real event: a payload that is a JSON object (or starts like one).
fn has_event(frames: &[Frame]) -> bool {
    frames.iter().any(|f| match f {
        Frame::Payload(p) => p.trim_ascii_start().first() == Some(&b'{'),
        Frame::Oversized(_) => false,
    })
}

impl Source for HttpSource {
    async fn read(&mut self, out: &mut Vec<Frame>) -> Result<bool, SourceError> {
        loop {
            let Some(response) = self.response.as_mut() else {
                self.connect().await;
                continue;
            };
            match tokio::time::timeout(self.settings.read_timeout, response.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    let before = out.len();
                    self.decoder.push(&chunk, |f| out.push(f));
                    if has_event(&out[before..]) {
                        // Events flow: the next reconnect waits only the minimum delay.
                        self.attempt = 1;
                    }
                    if !out.is_empty() {
                        return Ok(true);
                    }
                }
                Ok(Ok(None)) => self.lost("the upstream closed the stream".to_owned()),
                Ok(Err(err)) => self.lost(format!("read failed: {}", error_chain(err))),
                Err(_) => self.lost(format!(
                    "stalled: no data for {} ms",
                    self.settings.read_timeout.as_millis()
                )),
            }
        }
    }

    fn describe(&self) -> String {
        format!("HTTP stream {}", self.settings.url)
    }
}
