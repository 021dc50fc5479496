//! The upstream framing: turns a byte stream, cut into chunks anywhere, into payloads.
//!
//! Lines end with LF or CRLF. `se-data:` and `data:` lines carry a payload (one optional space
//! after the colon is dropped, as in SSE); a line that starts with `{` is a bare NDJSON payload;
//! `:` lines are comments; blank lines and other fields (`event:`, `id:`, `retry:`) carry nothing.
//! A UTF-8 byte order mark before a line is dropped (SSE drops one at the stream's start; a file
//! saved by a Windows editor, or files joined, carry one there).
//! A line longer than the cap is not buffered: its first `cap` bytes are kept and the rest of it
//! is skipped, so memory stays bounded whatever arrives; when its line end comes, a payload line
//! becomes one [`Frame::Oversized`] of its payload's first bytes (its field and byte order mark
//! dropped, as for any payload), and any other line is skipped, as at any length. A line cut
//! off by a disconnect ([`Decoder::reset`]) yields nothing, however long: the upstream resends
//! what it resends, and a partial line is not a message.

use bytes::{Buf, Bytes, BytesMut};

/// One unit the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A payload, to be judged by the counting rules.
    Payload(Bytes),
    /// A payload line longer than the cap: its payload's first bytes (the line's up to the cap).
    Oversized(Bytes),
}

/// Incremental decoder of the upstream framing with a cap on line length.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    cap: usize,
    /// While skipping the rest of an over-long line: its first `cap` bytes.
    oversized: Option<Bytes>,
    /// Bytes of `buf` already searched for a line end.
    scanned: usize,
}

impl Decoder {
    /// A decoder that treats lines longer than `cap` bytes (line end excluded) as oversized.
    pub fn new(cap: usize) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            cap: cap.max(1),
            oversized: None,
            scanned: 0,
        }
    }

    /// Feeds one chunk and hands every frame it completes to `out`, in order.
    pub fn push(&mut self, mut chunk: &[u8], mut out: impl FnMut(Frame)) {
        while !chunk.is_empty() {
            if self.oversized.is_some() {
                match memchr::memchr(b'\n', chunk) {
                    Some(i) => {
                        if let Some(prefix) = self.oversized.take() {
                            oversized(prefix, &mut out);
                        }
                        chunk = &chunk[i + 1..];
                    }
                    None => return,
                }
                continue;
            }
            // Take at most what can still complete a line within the cap (+2 for CRLF).
            let room = (self.cap + 2).saturating_sub(self.buf.len()).max(1);
            let take = chunk.len().min(room);
            self.buf.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            self.drain_lines(&mut out);
            if self.buf.len() > self.cap + 1 {
                // No line end within the cap: the line is oversized; skip to its end.
                let prefix = self.buf.split_to(self.cap).freeze();
                self.buf.clear();
                self.scanned = 0;
                self.oversized = Some(prefix);
            }
        }
    }

    /// Ends a finite stream (a file): a last line without a line end is decoded as if it had
    /// one.
    pub fn finish(&mut self, out: impl FnMut(Frame)) {
        if let Some(prefix) = self.oversized.take() {
            oversized(prefix, out);
        } else if !self.buf.is_empty() {
            let line = self.buf.split().freeze();
            decode_line(line, self.cap, out);
        }
        self.reset();
    }

    /// Bytes of an unfinished line held now (a partial line at a disconnect is dropped).
    pub fn pending(&self) -> usize {
        self.buf.len() + self.oversized.as_ref().map_or(0, Bytes::len)
    }

    /// Forgets any unfinished line, e.g. when a connection drops mid-line.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.scanned = 0;
        self.oversized = None;
    }

    fn drain_lines(&mut self, out: &mut impl FnMut(Frame)) {
        while let Some(i) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
            let end = self.scanned + i;
            let mut line = self.buf.split_to(end + 1);
            line.truncate(end);
            self.scanned = 0;
            decode_line(line.freeze(), self.cap, &mut *out);
        }
        self.scanned = self.buf.len();
    }
}

/// U+FEFF in UTF-8.
const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// Decodes one complete line (its LF removed).
fn decode_line(mut line: Bytes, cap: usize, mut out: impl FnMut(Frame)) {
    if line.last() == Some(&b'\r') {
        line.truncate(line.len() - 1);
    }
    if line.len() > cap {
        line.truncate(cap);
        return oversized(line, out);
    }
    if let Some(payload) = payload_of(line) {
        out(Frame::Payload(payload));
    }
}

/// The first `cap` bytes of an over-long line: a frame when it is a payload line.
fn oversized(prefix: Bytes, mut out: impl FnMut(Frame)) {
    if let Some(payload) = payload_of(prefix) {
        out(Frame::Oversized(payload));
    }
}

/// The payload a line carries, if it carries one: after `se-data:` or `data:` (and one space),
/// or the line itself when it starts with `{`; a byte order mark before it dropped.
fn payload_of(mut line: Bytes) -> Option<Bytes> {
    if line.starts_with(BYTE_ORDER_MARK) {
        line.advance(BYTE_ORDER_MARK.len());
    }
    let field_len = if line.starts_with(b"se-data:") {
        8
    } else if line.starts_with(b"data:") {
        5
    } else if line.first() == Some(&b'{') {
        return Some(line);
    } else {
        return None;
    };
    line.advance(field_len);
    if line.first() == Some(&b' ') {
        line.advance(1);
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_chunks(chunks: &[&[u8]], cap: usize) -> Vec<Frame> {
        let mut d = Decoder::new(cap);
        let mut frames = Vec::new();
        for c in chunks {
            d.push(c, |f| frames.push(f));
        }
        d.finish(|f| frames.push(f));
        frames
    }

    fn payload(s: &str) -> Frame {
        Frame::Payload(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn data_fields_bare_json_and_crlf_yield_payloads() {
        let input = b"event: privmsg\r\nse-data: {\"a\":1}\r\n\r\n: comment\ndata:{\"b\":2}\nid: 5\nretry: 10\n{\"c\":3}\nevent: x\n";
        assert_eq!(
            decode_chunks(&[input], 1024),
            vec![
                payload("{\"a\":1}"),
                payload("{\"b\":2}"),
                payload("{\"c\":3}")
            ]
        );
    }

    #[test]
    fn a_last_line_without_line_end_is_decoded_at_finish() {
        assert_eq!(decode_chunks(&[b"data: x"], 64), vec![payload("x")]);
        assert_eq!(
            decode_chunks(&[b"\xEF\xBB\xBFdata: x\n\xEF\xBB", b"\xBF{\"y\":1}\n"], 64),
            vec![payload("x"), payload("{\"y\":1}")],
            "a byte order mark before a line is dropped"
        );
    }

    #[test]
    fn empty_data_is_an_empty_payload() {
        assert_eq!(decode_chunks(&[b"data:\n"], 64), vec![payload("")]);
    }

    #[test]
    fn an_over_long_line_becomes_one_oversized_frame_and_reading_goes_on() {
        let long = format!("data: {}\ndata: ok\n", "x".repeat(100));
        let frames = decode_chunks(&[long.as_bytes()], 16);
        assert_eq!(
            frames,
            vec![Frame::Oversized(Bytes::from("xxxxxxxxxx")), payload("ok")]
        );
    }

    #[test]
    fn an_over_long_line_is_a_frame_only_when_it_carries_a_payload() {
        let lines = format!(
            "se-data: {{{x}\n\u{feff}{{{x}\n: {x}\nevent: {x}\n{x}\ndata: ok\n",
            x = "x".repeat(100)
        );
        let frames = decode_chunks(&[lines.as_bytes()], 16);
        assert_eq!(
            frames,
            vec![
                Frame::Oversized(Bytes::from("{xxxxxx")),
                Frame::Oversized(Bytes::from("{xxxxxxxxxxxx")),
                payload("ok")
            ]
        );
    }

    #[test]
    fn an_over_long_line_cut_off_by_a_disconnect_yields_nothing() {
        let mut d = Decoder::new(16);
        let mut frames = Vec::new();
        d.push(format!("data: {}", "x".repeat(100)).as_bytes(), |f| {
            frames.push(f)
        });
        d.reset();
        d.push(b"data: ok\n", |f| frames.push(f));
        assert_eq!(frames, vec![payload("ok")]);
    }

    #[test]
    fn an_over_long_last_line_of_a_file_is_one_oversized_frame() {
        let frames = decode_chunks(&[format!("data: {}", "x".repeat(100)).as_bytes()], 16);
        assert_eq!(frames, vec![Frame::Oversized(Bytes::from("xxxxxxxxxx"))]);
    }

    #[test]
    fn a_line_of_exactly_the_cap_is_kept() {
        let line = format!("data: {}\n", "y".repeat(10));
        assert_eq!(
            decode_chunks(&[line.as_bytes()], 16),
            vec![payload(&"y".repeat(10))]
        );
        let crlf = format!("data: {}\r\n", "y".repeat(10));
        assert_eq!(
            decode_chunks(&[crlf.as_bytes()], 16),
            vec![payload(&"y".repeat(10))]
        );
    }

    #[test]
    fn memory_stays_bounded_by_the_cap() {
        let mut d = Decoder::new(1000);
        d.push(b"data: ", |_| {});
        let chunk = vec![b'z'; 64 * 1024];
        let mut n = 0;
        for _ in 0..100 {
            d.push(&chunk, |_| n += 1);
            assert!(d.pending() <= 1002);
        }
        d.push(b"\n", |_| n += 1);
        assert_eq!(n, 1, "one oversized frame, once its line ended");
    }

    fn arb_stream() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            "[a-z{}\":, ]{0,40}".prop_map(|s| format!("se-data: {s}")),
            "[a-z{}\":, ]{0,40}".prop_map(|s| format!("data:{s}")),
            "[a-z{}\":, ]{0,40}".prop_map(|s| format!("{{{s}")),
            "[a-z: ]{0,20}".prop_map(|s| format!("event: {s}")),
            "[a-z ]{0,20}".prop_map(|s| format!(":{s}")),
            Just(String::new()),
            "[a-z]{50,90}".prop_map(|s| format!("data: {s}")),
        ];
        let end = prop_oneof![Just("\n"), Just("\r\n")];
        proptest::collection::vec((line, end), 0..30).prop_map(|lines| {
            lines
                .into_iter()
                .flat_map(|(l, e)| format!("{l}{e}").into_bytes())
                .collect()
        })
    }

    proptest! {
        #[test]
        fn frames_do_not_depend_on_how_the_bytes_are_chunked(
            stream in arb_stream(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
            invalid in any::<bool>(),
        ) {
            let mut stream = stream;
            if invalid && !stream.is_empty() {
                let at = stream.len() / 2;
                stream.insert(at, 0xff);
            }
            let whole = decode_chunks(&[&stream], 48);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut start = 0;
            for p in points {
                chunks.push(&stream[start..p]);
                start = p;
            }
            chunks.push(&stream[start..]);
            prop_assert_eq!(decode_chunks(&chunks, 48), whole);
        }
    }
}
