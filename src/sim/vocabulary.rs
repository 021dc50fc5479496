//! Words and their Zipf laws: each room language's vocabulary, the emotes and the emoji.
//!
//! The lists live in `words/*.txt` (read at compile time) rather than in Rust, so they can be
//! read and edited as text. Their order is their frequency rank and they are sampled from a
//! fixed seed, so editing a list — even reordering it — changes every generated stream.

use std::collections::HashSet;

use rand::Rng;
use rand::rngs::StdRng;

/// Zipf exponent of words (within a language), emotes and emoji.
const WORD_EXPONENT: f64 = 1.1;

/// Characters that chatters repeat at the end of a word.
const ELONGATED: &str = "aeiouyıöüãáéóksw8!?аеиоуыэюяёхㅋㅎㅠㅜㄷｗー";

/// Emotes, most used first, one per line: the name, then the Twitch emote id when it is one of
/// Twitch's own (the others are third-party emotes, which the `emotes` tag does not list). The
/// ids are plausible, not authoritative.
const EMOTES: &str = include_str!("words/emotes.txt");

/// Emoji, most used first, separated by whitespace (some are several code points joined by
/// U+200D, which is not whitespace).
const EMOJI: &str = include_str!("words/emoji.txt");

/// The main languages of rooms. The order matters beyond [`ENGLISH`]: vocabularies are built
/// in this order from one random generator.
pub(super) const LANGUAGES: [Language; 7] = [
    Language {
        weight: 45,
        size: 1000,
        head: include_str!("words/en.txt"),
        script: Script::Syllables(include_str!("words/en-syllables.txt")),
    },
    Language {
        weight: 10,
        size: 350,
        head: include_str!("words/tr.txt"),
        script: Script::Syllables(include_str!("words/tr-syllables.txt")),
    },
    Language {
        weight: 12,
        size: 350,
        head: include_str!("words/pt.txt"),
        script: Script::Syllables(include_str!("words/pt-syllables.txt")),
    },
    Language {
        weight: 10,
        size: 350,
        head: include_str!("words/de.txt"),
        script: Script::Syllables(include_str!("words/de-syllables.txt")),
    },
    Language {
        weight: 8,
        size: 250,
        head: include_str!("words/ko.txt"),
        script: Script::Hangul,
    },
    Language {
        weight: 7,
        size: 250,
        head: include_str!("words/ja.txt"),
        script: Script::Kana,
    },
    Language {
        weight: 8,
        size: 350,
        head: include_str!("words/ru.txt"),
        script: Script::Syllables(include_str!("words/ru-syllables.txt")),
    },
];

/// Index of English in [`LANGUAGES`]: English words show up in every room, and in bare-text
/// malformed lines.
pub(super) const ENGLISH: usize = 0;

/// A room language.
pub(super) struct Language {
    /// Share of rooms speaking it (out of 100).
    pub(super) weight: u32,
    /// Words in its vocabulary: `head`, then elongations and synthetic words.
    size: usize,
    /// Common words, most frequent first, separated by whitespace.
    head: &'static str,
    /// How its synthetic rare words are spelt.
    script: Script,
}

/// How a language's synthetic rare words are spelt.
enum Script {
    /// From these syllables (separated by whitespace).
    Syllables(&'static str),
    /// From random Hangul syllables: listing them would take thousands of entries.
    Hangul,
    /// From random hiragana or katakana.
    Kana,
}

/// A Zipf law over ranks `0..n`, sampled with one 64-bit draw: rank `i` is the first whose
/// cumulative threshold is at least the draw. A guide table (the first candidate rank of each
/// of 2n or more equal slices of the draws) makes that a step or two instead of a binary search.
pub(super) struct Zipf {
    thresholds: Vec<u64>,
    guide: Vec<u32>,
    shift: u32,
}

impl Zipf {
    /// The law of rank `k` (from 1) weighing `k^-exponent`, over at least one rank.
    pub(super) fn new(n: usize, exponent: f64) -> Zipf {
        let n = n.max(1);
        let weights: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-exponent)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let mut thresholds: Vec<u64> = weights
            .iter()
            .map(|w| {
                acc += w;
                // `as` saturates, so the top of the range stays within u64.
                (acc / total * 18_446_744_073_709_551_616.0) as u64
            })
            .collect();
        if let Some(last) = thresholds.last_mut() {
            *last = u64::MAX;
        }
        let slices = (2 * n).next_power_of_two();
        let shift = 64 - slices.trailing_zeros();
        let mut guide = Vec::with_capacity(slices);
        let mut rank = 0;
        for slice in 0..slices as u64 {
            let low = slice << shift;
            while thresholds[rank] < low {
                rank += 1;
            }
            guide.push(rank as u32);
        }
        Zipf {
            thresholds,
            guide,
            shift,
        }
    }

    /// A rank, from one draw of `rng`.
    pub(super) fn sample(&self, rng: &mut StdRng) -> usize {
        let u: u64 = rng.random();
        let mut rank = self.guide[(u >> self.shift) as usize] as usize;
        while self.thresholds[rank] < u {
            rank += 1;
        }
        rank
    }
}

/// One word: its text, its length in characters (for the `emotes` tag positions) and its
/// Twitch emote id, if it is one.
pub(super) struct Word {
    pub(super) text: Box<str>,
    pub(super) chars: u32,
    pub(super) emote: Option<u32>,
}

impl Word {
    fn new(text: &str, emote: Option<u32>) -> Word {
        Word {
            chars: text.chars().count() as u32,
            text: text.into(),
            emote,
        }
    }
}

/// Words ranked by frequency with their Zipf law.
pub(super) struct Vocabulary {
    pub(super) words: Vec<Word>,
    zipf: Zipf,
}

impl Vocabulary {
    fn new(words: Vec<Word>) -> Vocabulary {
        Vocabulary {
            zipf: Zipf::new(words.len(), WORD_EXPONENT),
            words,
        }
    }

    /// The emotes of [`EMOTES`].
    pub(super) fn emotes() -> Vocabulary {
        Vocabulary::new(
            EMOTES
                .lines()
                .filter_map(|line| {
                    let mut fields = line.split_whitespace();
                    let name = fields.next()?;
                    Some(Word::new(
                        name,
                        fields.next().and_then(|id| id.parse().ok()),
                    ))
                })
                .collect(),
        )
    }

    /// The emoji of [`EMOJI`].
    pub(super) fn emoji() -> Vocabulary {
        Vocabulary::new(
            EMOJI
                .split_whitespace()
                .map(|e| Word::new(e, None))
                .collect(),
        )
    }

    /// A language's words: its common words, then a tail of elongations of common words
    /// (`noooo`, `ㅋㅋㅋㅋㅋ`) and synthetic words in its script, drawn from `rng`.
    pub(super) fn language(language: &Language, rng: &mut StdRng) -> Vocabulary {
        let mut words = Vec::with_capacity(language.size);
        let mut seen = HashSet::new();
        for w in language.head.split_whitespace() {
            add_unique(&mut words, &mut seen, w);
        }
        let head = words.len();
        let head_zipf = Zipf::new(head, WORD_EXPONENT);
        let syllables: Vec<&str> = match language.script {
            Script::Syllables(text) => text.split_whitespace().collect(),
            Script::Hangul | Script::Kana => Vec::new(),
        };
        let mut attempts = 0;
        while words.len() < language.size && attempts < language.size * 100 {
            attempts += 1;
            let word = if rng.random_bool(0.3) {
                // An elongated common word: its last vowel or laugh character repeated
                // (`noooo`, `kkkkkkk`, `ㅋㅋㅋㅋㅋ`).
                let base = &words[head_zipf.sample(rng)].text;
                let Some(last) = base.chars().last().filter(|&c| ELONGATED.contains(c)) else {
                    continue;
                };
                let mut w = base.to_string();
                for _ in 0..rng.random_range(1..6) {
                    w.push(last);
                }
                w
            } else {
                synthetic(&language.script, &syllables, rng)
            };
            add_unique(&mut words, &mut seen, &word);
        }
        Vocabulary::new(words)
    }

    /// A word, most often a frequent one.
    pub(super) fn sample(&self, rng: &mut StdRng) -> &Word {
        &self.words[self.zipf.sample(rng)]
    }
}

/// Pushes `text` to `list` unless `seen` has it (`seen` only answers membership, so the order of
/// `list` stays deterministic).
fn add_unique(list: &mut Vec<Word>, seen: &mut HashSet<Box<str>>, text: &str) -> bool {
    if text.is_empty() || text.chars().any(char::is_whitespace) || seen.contains(text) {
        return false;
    }
    seen.insert(text.into());
    list.push(Word::new(text, None));
    true
}

/// A rare word of 2 to 4 syllables in `script` (`syllables` are those of
/// [`Script::Syllables`]).
fn synthetic(script: &Script, syllables: &[&str], rng: &mut StdRng) -> String {
    let count = rng.random_range(2..5);
    let mut w = String::new();
    for _ in 0..count {
        match script {
            Script::Hangul => {
                // A Hangul syllable: initial (19) × medial (21) × final (28, 0 = none).
                let initial = rng.random_range(0..19u32);
                let medial = rng.random_range(0..21u32);
                let last = if rng.random_bool(0.4) {
                    rng.random_range(1..28u32)
                } else {
                    0
                };
                let code = 0xAC00 + (initial * 21 + medial) * 28 + last;
                w.extend(char::from_u32(code));
            }
            Script::Kana => {
                // Hiragana, sometimes katakana with a long-vowel mark.
                if rng.random_bool(0.7) {
                    w.extend(char::from_u32(rng.random_range(0x3042..0x3093u32)));
                } else {
                    w.extend(char::from_u32(rng.random_range(0x30A2..0x30F3u32)));
                    if rng.random_bool(0.2) {
                        w.push('ー');
                    }
                }
            }
            Script::Syllables(_) => w.push_str(syllables[rng.random_range(0..syllables.len())]),
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typo in `emotes.txt` would silently turn an emote into a third-party one.
    #[test]
    fn every_emote_line_is_a_name_and_an_optional_id() {
        for line in EMOTES.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(matches!(fields.len(), 1 | 2), "{line:?}");
            if let Some(id) = fields.get(1) {
                assert!(id.parse::<u32>().is_ok(), "{line:?}");
            }
        }
        let emotes = Vocabulary::emotes();
        assert_eq!(emotes.words.len(), EMOTES.lines().count());
        assert_eq!(
            emotes.words.iter().filter(|w| w.emote.is_some()).count(),
            28
        );
    }

    /// Synthetic words need syllables; an empty file would panic at the first draw.
    #[test]
    fn every_language_has_words_and_a_script() {
        for language in &LANGUAGES {
            assert!(language.head.split_whitespace().count() > 20);
            if let Script::Syllables(text) = language.script {
                assert!(text.split_whitespace().count() > 10);
            }
        }
    }
}
