//! Emotes of a message: the Twitch `emotes` tag, and third-party emote names.
//!
//! The tag is `ID:S-E,S-E/ID2:S-E`: `S` and `E` are inclusive, 0-based offsets in **code
//! points** into the body (not bytes, not UTF-16 units: an emoji before an emote counts as
//! one). Each valid range is one use of the emote named by the body's text at that range; a
//! range outside the body, or with `S > E`, is ignored. Words listed as third-party emotes
//! (BTTV, FFZ, 7TV; `EMOTE_NAMES_FILE`) count once per occurrence, unless that occurrence is a
//! tag range (it was counted already; a range covering part of it, or more, is another emote).
//! Offsets are ASCII digits only. Work is linear in the body and the tag, plus a logarithmic
//! factor per range and word, however hostile either is. The module is a leaf.

use std::collections::HashSet;

/// Third-party emote names, compared exactly (case matters, as in chat).
#[derive(Debug, Clone, Default)]
pub struct EmoteNames(HashSet<Box<str>>);

impl EmoteNames {
    /// The names of `text`: one per line; blank lines and lines starting with `#` are skipped,
    /// surrounding whitespace is trimmed, and a byte order mark at its start is dropped.
    pub fn parse(text: &str) -> EmoteNames {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        EmoteNames(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(Box::from)
                .collect(),
        )
    }

    /// How many names there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, word: &str) -> bool {
        self.0.contains(word)
    }
}

/// The code-point ranges `(start, end)`, inclusive, of a Twitch `emotes` tag; malformed parts
/// are skipped.
fn tag_ranges(tag: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    for emote in tag.split('/') {
        let Some((_, spans)) = emote.split_once(':') else {
            continue;
        };
        for span in spans.split(',') {
            let offset = |text: &str| {
                let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
                digits.then(|| text.parse::<usize>().ok()).flatten()
            };
            let parsed = span
                .split_once('-')
                .and_then(|(s, e)| Some((offset(s)?, offset(e)?)));
            if let Some((start, end)) = parsed
                && start <= end
            {
                ranges.push((start, end));
            }
        }
    }
    ranges
}

/// The emote uses of a message, in order of appearance: the tag's ranges, then third-party
/// names. Each item is the emote's text, a slice of `body`.
pub fn emotes_in<'b>(body: &'b str, tag: Option<&str>, names: &EmoteNames) -> Vec<&'b str> {
    let mut ranges = tag.map(tag_ranges).unwrap_or_default();
    let mut found = Vec::new();
    if !ranges.is_empty() {
        if body.is_ascii() {
            // Code points are bytes.
            ranges.retain(|&(_, end)| end < body.len());
            ranges.sort_unstable();
            found.extend(ranges.iter().map(|&(start, end)| &body[start..=end]));
        } else {
            // Byte offset of each code point, and the body's end.
            let offsets: Vec<usize> = body
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(body.len()))
                .collect();
            let chars = offsets.len() - 1;
            ranges.retain(|&(_, end)| end < chars);
            ranges.sort_unstable();
            found.extend(
                ranges
                    .iter()
                    .map(|&(start, end)| &body[offsets[start]..offsets[end + 1]]),
            );
        }
    }
    if names.is_empty() {
        return found;
    }
    // Code-point offset of each word, counted as the words come (they come in order).
    let (mut byte_at, mut char_at) = (0, 0);
    for word in body.split_whitespace() {
        let start_byte = word.as_ptr() as usize - body.as_ptr() as usize;
        char_at += body[byte_at..start_byte].chars().count();
        byte_at = start_byte;
        if names.contains(word) {
            let span = (char_at, char_at + word.chars().count() - 1);
            if ranges.binary_search(&span).is_err() {
                found.push(word);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &str) -> EmoteNames {
        EmoteNames::parse(list)
    }

    #[test]
    fn ranges_count_code_points_so_emoji_and_hangul_before_an_emote_do_not_shift_it() {
        let none = EmoteNames::default();
        assert_eq!(
            emotes_in("😂 Kappa LUL", Some("25:2-6/425618:8-10"), &none),
            vec!["Kappa", "LUL"]
        );
        assert_eq!(
            emotes_in("ㅋㅋㅋ Kappa Kappa", Some("25:4-8,10-14"), &none),
            vec!["Kappa", "Kappa"]
        );
        assert_eq!(
            emotes_in("Straße héllo Kappa", Some("25:13-17"), &none),
            vec!["Kappa"]
        );
    }

    #[test]
    fn ranges_outside_the_body_or_reversed_or_malformed_are_ignored() {
        let none = EmoteNames::default();
        assert_eq!(
            emotes_in("PogChamp", Some("305954156:0-7/88:20-30"), &none),
            vec!["PogChamp"]
        );
        assert!(emotes_in("abc", Some("1:2-1/x/2:a-b/3:0-3/:/4:"), &none).is_empty());
        for not_digits in ["25:+0-1", "25:0-1 ", "25: 0-1", "25:0-+1", "25:-1"] {
            assert!(
                emotes_in("hello world", Some(not_digits), &none).is_empty(),
                "{not_digits}"
            );
        }
        assert!(emotes_in("Kappa", Some(""), &none).is_empty());
    }

    #[test]
    fn third_party_names_count_per_occurrence_unless_already_a_tag_range() {
        let kekw = names("# BTTV\nKEKW\n\n  OMEGALUL  \n");
        assert_eq!(kekw.len(), 2);
        assert_eq!(
            emotes_in("KEKW KEKW lol", Some(""), &kekw),
            vec!["KEKW", "KEKW"]
        );
        assert_eq!(
            emotes_in("LUL KEKW", Some("425618:0-2"), &kekw),
            vec!["LUL", "KEKW"]
        );
        // A tag range on a listed name is one use, not two.
        assert_eq!(emotes_in("😂 KEKW", Some("9:2-5"), &kekw), vec!["KEKW"]);
        // A range over part of a listed name is another emote: the name counts too.
        assert_eq!(
            emotes_in("KEKW KEKW", Some("9:0-1"), &kekw),
            vec!["KE", "KEKW", "KEKW"]
        );
        assert_eq!(
            emotes_in("KEKW", Some("9:0-3,0-3"), &kekw),
            vec!["KEKW", "KEKW"]
        );
        // A byte order mark before the first name (a file saved by a Windows editor).
        let bom = names("\u{feff}KEKW\nPog\n");
        assert_eq!(emotes_in("KEKW Pog", None, &bom), vec!["KEKW", "Pog"]);
        assert_eq!(emotes_in("kekw", None, &kekw), Vec::<&str>::new());
    }

    proptest::proptest! {
        /// Whatever the body (ASCII, which takes a shortcut, or not), a range is the text of
        /// its code points.
        #[test]
        fn a_range_is_the_text_of_its_code_points(
            body in "[a-z ]{0,12}|[a-zé😂한 ]{0,12}",
            spans in proptest::collection::vec((0usize..14, 0usize..14), 0..4),
        ) {
            let tag: Vec<String> = spans.iter().map(|(s, e)| format!("{s}-{e}")).collect();
            let tag = format!("25:{}", tag.join(","));
            let chars: Vec<char> = body.chars().collect();
            let mut expected: Vec<(usize, usize)> = spans
                .iter()
                .copied()
                .filter(|&(s, e)| s <= e && e < chars.len())
                .collect();
            expected.sort_unstable();
            let expected: Vec<String> = expected
                .iter()
                .map(|&(s, e)| chars[s..=e].iter().collect())
                .collect();
            let found = emotes_in(&body, Some(&tag), &EmoteNames::default());
            proptest::prop_assert_eq!(found, expected);
        }
    }

    #[test]
    fn a_hostile_tag_and_body_take_linear_time() {
        let body = "KEKW ".repeat(100_000);
        let tag: String = (0..100_000)
            .map(|i| format!("{}-{}", i * 5, i * 5 + 3))
            .collect::<Vec<_>>()
            .join(",");
        let found = emotes_in(&body, Some(&format!("1:{tag}")), &names("KEKW"));
        assert_eq!(found.len(), 100_000, "each occurrence once");
    }
}
