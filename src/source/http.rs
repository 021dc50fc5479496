//! The live upstream: an endless HTTP body, followed across any number of reconnects.

use std::time::Duration;

use rand::Rng;
use tracing::{info, warn};

use super::{Decoder, Frame, Source, SourceError};

/// How to follow the upstream.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The stream's URL.
    pub url: url::Url,
    /// Longest silence before the connection is considered stalled and replaced.
    pub read_timeout: Duration,
    /// First reconnect delay; doubles per failed attempt.
    pub backoff_min: Duration,
    /// Cap of the reconnect delay.
    pub backoff_max: Duration,
    /// Longest line; longer ones become failed messages.
    pub line_cap: usize,
}

/// An endless source over HTTP. It never ends by itself: every failure is logged with its
/// reason and followed by a reconnect after an exponential, jittered, capped delay.
pub struct HttpSource {
    client: reqwest::Client,
    settings: HttpSettings,
    response: Option<reqwest::Response>,
    decoder: Decoder,
    /// Connection attempts since data last arrived.
    attempt: u32,
    /// Connection attempts ever made, readable from outside.
    attempts: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The delay before reconnect attempt `attempt` (1-based): `min * 2^(attempt-1)`, capped at
/// `max`, then drawn uniformly from its upper half so that many workers do not reconnect in step.
pub fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let exp = min.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let ceiling = exp.min(max);
    let floor = ceiling / 2;
    if ceiling <= floor {
        return ceiling;
    }
    rand::rng().random_range(floor..=ceiling)
}

impl HttpSource {
    /// A source following `settings.url`; nothing is connected until the first read.
    pub fn new(settings: HttpSettings) -> HttpSource {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.read_timeout)
            .user_agent(concat!("chatstats/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        HttpSource {
            client,
            decoder: Decoder::new(settings.line_cap),
            settings,
            response: None,
            attempt: 0,
            attempts: Default::default(),
        }
    }

    /// A counter of the connection attempts this source has made (for monitoring and tests).
    pub fn attempts(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
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
            tokio::time::sleep(delay).await;
        }
        self.attempt = self.attempt.saturating_add(1);
        self.attempts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let request = self.client.get(self.settings.url.clone()).send();
        match tokio::time::timeout(self.settings.read_timeout, request).await {
            Ok(Ok(response)) if response.status().is_success() => {
                info!(url = %self.settings.url, status = response.status().as_u16(), "connected to the upstream");
                self.response = Some(response);
            }
            Ok(Ok(response)) => {
                self.lost(format!("the upstream answered {}", response.status()));
            }
            Ok(Err(err)) => self.lost(format!("cannot connect: {}", error_chain(&err))),
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

/// An error and its causes on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
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
                    self.attempt = 1;
                    self.decoder.push(&chunk, |f| out.push(f));
                    if !out.is_empty() {
                        return Ok(true);
                    }
                }
                Ok(Ok(None)) => self.lost("the upstream closed the stream".to_owned()),
                Ok(Err(err)) => self.lost(format!("read failed: {}", error_chain(&err))),
                Err(_) => self.lost(format!(
                    "stalled: no data for {} ms",
                    self.settings.read_timeout.as_millis()
                )),
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "HTTP stream {}",
            crate::config::mask_url(self.settings.url.as_str())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped_with_jitter_in_the_upper_half() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        for _ in 0..100 {
            let first = backoff(1, min, max);
            assert!(first >= Duration::from_millis(50) && first <= min);
            let third = backoff(3, min, max);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = backoff(40, min, max);
            assert!(late >= max / 2 && late <= max);
        }
    }
}
