//! Pacing shared by the in-process [`SimSource`](super::SimSource) and the HTTP server: both
//! must deliver the same events at the same rate, so they share one schedule.

use std::time::Duration;

use tokio::time::Instant;

/// Events per [`SimSource`](super::SimSource) read, and per HTTP chunk, at most.
pub(crate) const MAX_BATCH: u64 = 1024;

/// When events are due at a fixed rate, without drift: event `k` is due at `start + k / rate`,
/// whatever the delays of the reads in between.
///
/// A reader that falls far behind (the consumer was stalled) catches up by at most one second
/// of events (or [`MAX_BATCH`]), and the schedule then moves on from there, rather than a burst
/// of everything it missed.
#[derive(Debug)]
pub(crate) struct Pacer {
    rate: Option<f64>,
    start: Instant,
    emitted: u64,
}

impl Pacer {
    /// A schedule of `rate` events per second from now; unlimited when `rate` is not a positive
    /// finite number.
    pub(crate) fn new(rate: f64) -> Pacer {
        Pacer {
            rate: (rate.is_finite() && rate > 0.0).then_some(rate),
            start: Instant::now(),
            emitted: 0,
        }
    }

    /// True when events are not paced.
    pub(crate) fn unlimited(&self) -> bool {
        self.rate.is_none()
    }

    /// Events due at `now` and not yet emitted, at most `cap` (`cap` when unlimited).
    pub(crate) fn due(&mut self, now: Instant, cap: u64) -> u64 {
        let Some(rate) = self.rate else {
            return cap;
        };
        let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
        // `as` saturates: an absurd rate gives u64::MAX, never a panic.
        let total = ((elapsed * rate).floor() as u64).saturating_add(1);
        let behind = total.saturating_sub(self.emitted);
        let max_lag = (rate.ceil() as u64).max(MAX_BATCH);
        if behind > max_lag {
            let skip = Duration::try_from_secs_f64((behind - max_lag) as f64 / rate)
                .unwrap_or(Duration::ZERO);
            self.start = self.start.checked_add(skip).unwrap_or(now).min(now);
            return max_lag.min(cap);
        }
        behind.min(cap)
    }

    /// Records that `n` events were emitted.
    pub(crate) fn emitted(&mut self, n: u64) {
        self.emitted += n;
    }

    /// When the next event is due (`None` when unlimited).
    pub(crate) fn next_at(&self) -> Option<Instant> {
        let rate = self.rate?;
        let offset = Duration::try_from_secs_f64(self.emitted as f64 / rate)
            .unwrap_or(Duration::from_secs(86_400 * 365));
        Some(
            self.start
                .checked_add(offset)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400)),
        )
    }

    /// Waits until at least one event is due and returns how many are, at most `cap`.
    /// Cancel-safe: nothing changes until the wait is over.
    pub(crate) async fn wait(&mut self, cap: u64) -> u64 {
        let due = self.due(Instant::now(), cap);
        if due > 0 {
            return due;
        }
        if let Some(at) = self.next_at() {
            tokio::time::sleep_until(at).await;
        }
        // Woken at the due time of the next event: it is due even if rounding says otherwise.
        self.due(Instant::now(), cap).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pacer_keeps_the_rate_without_drift() {
        let mut pacer = Pacer::new(100.0);
        let start = Instant::now();
        let mut emitted = 0;
        while Instant::now() - start < Duration::from_secs(10) {
            let n = pacer.wait(MAX_BATCH).await;
            pacer.emitted(n);
            emitted += n;
        }
        // Events at 0, 10 ms, …, 10 s.
        assert_eq!(emitted, 1001);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_reader_catches_up_by_at_most_a_second() {
        let mut pacer = Pacer::new(10_000.0);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(pacer.due(Instant::now(), u64::MAX), 10_000);
        assert_eq!(pacer.due(Instant::now(), 100), 100);
        pacer.emitted(10_000);
        assert!(pacer.due(Instant::now(), u64::MAX) <= 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!((999..=1001).contains(&pacer.due(Instant::now(), u64::MAX)));
        let mut pacer = Pacer::new(0.0);
        assert_eq!(pacer.wait(7).await, 7);
        assert!(pacer.next_at().is_none());
    }
}
