//! The simulated stream as a [`Source`], generated in process: the worker reads the same events
//! as from `chatstats-sim`, without a server or the network in between.

use super::generator::Generator;
use super::pacing::{MAX_BATCH, Pacer};
use crate::source::{Frame, Source, SourceError};

/// An endless source of simulated chat events, paced at a fixed rate.
///
/// Each read yields the events due by then (at most 1024) as [`Frame::Payload`]s — what the
/// decoder would yield from the framed stream of `chatstats-sim` with the same seed — and waits
/// for the next one when none is due. Event `k` is due `k / rate` seconds after the first read,
/// so the rate does not drift however late the reads are. The events are on the live clock
/// ([`Generator::live`]): their `tmi-sent-ts` is the time they are read, give or take 1.5 s, so
/// the statistics by time fill the current minutes.
pub struct SimSource {
    generator: Generator,
    /// Started at the first read, so time spent before the worker runs is not caught up.
    pacer: Option<Pacer>,
    rate: f64,
    seed: u64,
}

impl SimSource {
    /// A simulated stream from `seed` at `rate` events per second; 0 or less (or not finite)
    /// generates as fast as the stream is read.
    pub fn new(seed: u64, rate: f64) -> SimSource {
        SimSource {
            generator: Generator::live(seed),
            pacer: None,
            rate,
            seed,
        }
    }
}

impl Source for SimSource {
    /// Cancel-safe: the only wait comes before anything is generated or recorded, so a read
    /// dropped by `tokio::select!` loses no event.
    async fn read(&mut self, out: &mut Vec<Frame>) -> Result<bool, SourceError> {
        let rate = self.rate;
        let pacer = self.pacer.get_or_insert_with(|| Pacer::new(rate));
        let due = pacer.wait(MAX_BATCH).await;
        if pacer.unlimited() {
            // Never due-wait when unpaced: let other tasks run between batches.
            tokio::task::yield_now().await;
        }
        out.reserve(due as usize);
        for _ in 0..due {
            out.push(Frame::Payload(self.generator.next_payload()));
        }
        pacer.emitted(due);
        Ok(true)
    }

    fn describe(&self) -> String {
        if self.rate.is_finite() && self.rate > 0.0 {
            format!(
                "the built-in simulated stream ({} events/s, seed {})",
                self.rate, self.seed
            )
        } else {
            format!(
                "the built-in simulated stream (unpaced, seed {})",
                self.seed
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::sim::generator::{sent_ts, without_times};
    use crate::timeline::now_ms;

    /// Asserts that `frames` are the first payloads of `seed`'s stream (but for their times,
    /// which are on the live clock) and were sent within the last few seconds.
    fn assert_stream_of(seed: u64, frames: &[Frame]) {
        let mut generator = Generator::new(seed);
        let now = now_ms();
        let mut times = 0;
        for frame in frames {
            let Frame::Payload(payload) = frame else {
                panic!("not a payload: {frame:?}");
            };
            assert_eq!(
                without_times(payload),
                without_times(&generator.next_payload())
            );
            if let Some(ts) = sent_ts(payload) {
                assert!((now - 5000..=now).contains(&ts), "sent at {ts}, now {now}");
                times += 1;
            }
        }
        assert!(times * 10 >= frames.len() * 9, "{times} times");
    }

    #[tokio::test(start_paused = true)]
    async fn about_rate_frames_arrive_per_simulated_second() -> Result<(), SourceError> {
        let mut source = SimSource::new(1, 100.0);
        let mut frames = Vec::new();
        source.read(&mut frames).await?;
        let start = Instant::now();
        while Instant::now() - start < Duration::from_secs(1) {
            source.read(&mut frames).await?;
        }
        // Events at 0, 10 ms, …, 1 s.
        assert!(
            (99..=102).contains(&frames.len()),
            "{} frames",
            frames.len()
        );
        let mut reads = 0;
        while Instant::now() - start < Duration::from_secs(10) {
            source.read(&mut frames).await?;
            reads += 1;
        }
        assert!(reads > 100, "reads should wait for each event, not spin");
        assert!(
            (995..=1005).contains(&frames.len()),
            "{} frames",
            frames.len()
        );
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn frames_are_the_generators_payloads() -> Result<(), SourceError> {
        let mut source = SimSource::new(8, 1000.0);
        let mut frames = Vec::new();
        while frames.len() < 300 {
            source.read(&mut frames).await?;
        }
        assert_stream_of(8, &frames);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_read_loses_nothing() -> Result<(), SourceError> {
        let mut source = SimSource::new(3, 10.0);
        let mut frames = Vec::new();
        source.read(&mut frames).await?;
        // The next event is due in 100 ms: cancel the read waiting for it, several times.
        for _ in 0..5 {
            tokio::select! {
                _ = source.read(&mut frames) => panic!("nothing is due yet"),
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        while frames.len() < 3 {
            source.read(&mut frames).await?;
        }
        assert_stream_of(3, &frames);
        Ok(())
    }

    #[tokio::test]
    async fn unpaced_reads_return_full_batches() -> Result<(), SourceError> {
        let mut source = SimSource::new(2, 0.0);
        let mut frames = Vec::new();
        source.read(&mut frames).await?;
        assert_eq!(frames.len(), MAX_BATCH as usize);
        assert!(source.describe().contains("unpaced"));
        Ok(())
    }
}
