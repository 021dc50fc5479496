//! The simulated stream, generated in process (see [`crate::sim`]).

use super::{Frame, Source, SourceError};

/// An endless source of simulated chat events.
pub struct SimSource {
    generator: crate::sim::Generator,
}

impl SimSource {
    /// A simulated stream from `seed`.
    pub fn new(seed: u64, _rate: f64) -> SimSource {
        SimSource {
            generator: crate::sim::Generator::new(seed),
        }
    }
}

impl Source for SimSource {
    async fn read(&mut self, out: &mut Vec<Frame>) -> Result<bool, SourceError> {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        out.push(Frame::Payload(self.generator.next_payload()));
        Ok(true)
    }

    fn describe(&self) -> String {
        "the built-in simulated stream".to_owned()
    }
}
