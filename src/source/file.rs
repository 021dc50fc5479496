//! Text mode: a file, or stdin, read once to its end.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Decoder, Frame, Source, SourceError};

const CHUNK: usize = 64 * 1024;

/// A finite source over a file or stdin (`-`).
pub struct FileSource {
    what: String,
    reader: Box<dyn AsyncRead + Send + Unpin>,
    decoder: Decoder,
    buf: Vec<u8>,
}

impl FileSource {
    /// Opens `path`, or stdin when `path` is `-`; lines longer than `line_cap` are oversized.
    pub async fn open(path: &str, line_cap: usize) -> Result<FileSource, SourceError> {
        let reader: Box<dyn AsyncRead + Send + Unpin> = if path == "-" {
            Box::new(tokio::io::stdin())
        } else {
            Box::new(
                tokio::fs::File::open(path)
                    .await
                    .map_err(|source| SourceError::Io {
                        what: path.to_owned(),
                        source,
                    })?,
            )
        };
        Ok(FileSource::new(path, reader, line_cap))
    }

    /// A source over any reader; `what` names it in logs and errors.
    pub fn new(
        what: &str,
        reader: Box<dyn AsyncRead + Send + Unpin>,
        line_cap: usize,
    ) -> FileSource {
        FileSource {
            what: if what == "-" {
                "stdin".to_owned()
            } else {
                what.to_owned()
            },
            reader,
            decoder: Decoder::new(line_cap),
            buf: vec![0; CHUNK],
        }
    }
}

impl Source for FileSource {
    async fn read(&mut self, out: &mut Vec<Frame>) -> Result<bool, SourceError> {
        let n = self
            .reader
            .read(&mut self.buf)
            .await
            .map_err(|source| SourceError::Io {
                what: self.what.clone(),
                source,
            })?;
        if n == 0 {
            self.decoder.finish(|f| out.push(f));
            return Ok(false);
        }
        self.decoder.push(&self.buf[..n], |f| out.push(f));
        Ok(true)
    }

    fn describe(&self) -> String {
        format!("text mode, reading {} to its end", self.what)
    }
}
