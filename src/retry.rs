//! Retry delays: exponential, capped and jittered, shared by every loop that waits to try again
//! (upstream reconnects, store retries).

use std::time::Duration;

use rand::Rng;

/// The delay before attempt `attempt` (1-based): `min * 2^(attempt-1)`, capped at `max`, then
/// drawn uniformly from its upper half so that many workers do not retry in step; never below
/// `min` (the first attempt waits exactly `min`).
pub(crate) fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let exp = min.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let ceiling = exp.min(max);
    let floor = (ceiling / 2).max(min).min(ceiling);
    if ceiling <= floor {
        return ceiling;
    }
    rand::rng().random_range(floor..=ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped_with_jitter_in_the_upper_half() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        for _ in 0..100 {
            assert_eq!(backoff(1, min, max), min);
            let second = backoff(2, min, max);
            assert!(second >= min && second <= Duration::from_millis(200));
            let third = backoff(3, min, max);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = backoff(40, min, max);
            assert!(late >= max / 2 && late <= max);
        }
    }
}
