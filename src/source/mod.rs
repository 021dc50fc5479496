//! Upstreams: where the chat stream comes from, decoded into [`Frame`]s.
//!
//! A [`Source`] hands out frames a chunk at a time. [`file::FileSource`] reads a file or stdin to
//! its end (text mode); [`http::HttpSource`] follows an endless HTTP body and reconnects whenever
//! it breaks; [`crate::sim::SimSource`] generates the simulated stream in process.

pub mod decode;
pub mod file;
pub mod http;

use std::future::Future;

pub use decode::{Decoder, Frame};

/// Why a source cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file or stdin could not be read.
    #[error("cannot read {what}: {source}")]
    Io {
        /// The path, or `stdin`.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A stream of upstream frames.
pub trait Source: Send + 'static {
    /// Reads more of the stream and appends the frames it completes to `out`. Returns `false`
    /// once a finite source has ended; an endless source only returns `true`.
    fn read(
        &mut self,
        out: &mut Vec<Frame>,
    ) -> impl Future<Output = Result<bool, SourceError>> + Send;

    /// What this source is, for logs.
    fn describe(&self) -> String;
}
