//! Fuzzing the decoder and the counting rules with arbitrary bytes: no panic, and the
//! invariants hold. `cargo test` runs a few hundred cases; `scripts/fuzz.sh` runs many more
//! (PROPTEST_CASES) in a separate, longer run.

use bytes::Bytes;
use chatstats::message::Tally;
use chatstats::source::decode::{Decoder, Frame};
use proptest::prelude::*;

/// Bytes that look like the upstream often enough to reach deep paths.
fn upstreamish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"se-data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"event: privmsg\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"{\"room\":\"#r\",\"nick\":\"n\",\"body\":\"".to_vec()),
        Just(b"\"}".to_vec()),
        Just(b"\\u00e9\\ud800\\\"".to_vec()),
        Just("ㅋㅋ Kappa\u{3000}x".as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn no_input_panics_the_decoder_or_the_counting_rules(
        input in upstreamish(),
        cap in 8usize..200,
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut decoder = Decoder::new(cap);
        let mut frames = Vec::new();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        points.sort_unstable();
        let mut start = 0;
        for p in points.into_iter().chain([input.len()]) {
            decoder.push(&input[start..p], |f| frames.push(f));
            prop_assert!(decoder.pending() <= cap + 2);
            start = p;
        }
        decoder.finish(|f| frames.push(f));
        for frame in frames {
            let (payload, oversized) = match frame {
                Frame::Payload(p) => (p, false),
                Frame::Oversized(p) => (p, true),
            };
            prop_assert!(payload.len() <= cap);
            let tally = if oversized { Tally::failed(&payload, 64) } else { Tally::from_payload(&payload, 1, 64) };
            // Either failed (kept, cut) or counted once, never both.
            prop_assert!(tally.failed.len() + tally.seconds.len() == 1);
            prop_assert!(tally.failed.iter().all(|f| f.len() <= 64));
            for (word, n) in &tally.words {
                prop_assert!(*n >= 1 && !word.is_empty());
                let word = std::str::from_utf8(word).expect("words are UTF-8");
                prop_assert!(!word.contains(char::is_whitespace));
            }
        }
    }

    #[test]
    fn any_bytes_as_a_payload_are_judged_without_panic(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
        let tally = Tally::from_payload(&Bytes::from(raw), 1, 1 << 20);
        prop_assert!(tally.failed.len() + tally.seconds.len() == 1);
    }
}
