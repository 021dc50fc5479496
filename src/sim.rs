//! The simulated Twitch-like chat stream (placeholder until the simulator lands).

use bytes::Bytes;

/// Deterministic generator of chat payloads.
pub struct Generator {
    n: u64,
}

impl Generator {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Generator {
        Generator { n: seed }
    }

    /// The next payload.
    pub fn next_payload(&mut self) -> Bytes {
        self.n += 1;
        Bytes::from(format!(
            r##"{{"command":"","room":"#sim","nick":"user{}","target":"","body":"Kappa hello","tags":""}}"##,
            self.n % 7
        ))
    }
}
