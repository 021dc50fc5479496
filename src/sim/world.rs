//! The world every stream shares: the vocabularies, the nicks with the tags that do not change
//! between their messages, the chat bots, and the rooms with their main language.
//!
//! It is built once per process from a fixed seed, so it never depends on a stream's seed: two
//! streams differ in what is said, not in who is there.

use std::collections::HashSet;
use std::sync::LazyLock;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::bots::Bots;
use super::vocabulary::{ENGLISH, LANGUAGES, Vocabulary, Zipf};

/// Zipf exponent of nicks: flatter than words, so no single chatter dominates every room.
const NICK_EXPONENT: f64 = 0.9;
/// Zipf exponent of rooms: a few big channels carry much of the traffic.
const ROOM_EXPONENT: f64 = 1.0;
/// Distinct nicks.
const NICKS: usize = 4000;
/// Distinct rooms.
const ROOMS: usize = 300;
/// Weights of body lengths 1..=15 words (mean 6.46 words).
const LENGTH_WEIGHTS: [u32; 15] = [9, 9, 9, 9, 9, 9, 8, 8, 7, 6, 5, 4, 3, 3, 2];

/// Twitch's default name colors (a nick that never chose one has none).
const COLORS: &[&str] = &[
    "#FF0000", "#0000FF", "#008000", "#B22222", "#FF7F50", "#9ACD32", "#FF4500", "#2E8B57",
    "#DAA520", "#D2691E", "#5F9EA0", "#1E90FF", "#FF69B4", "#8A2BE2", "#00FF7F",
];

/// A chatter and the parts of its tags that do not change between its messages.
pub(super) struct Nick {
    pub(super) login: Box<str>,
    pub(super) display: Box<str>,
    /// `badge-info=…;badges=…;color=…;display-name=…;`
    pub(super) head: Box<str>,
    pub(super) moderator: bool,
    pub(super) subscriber: bool,
    pub(super) user_id: u64,
}

/// A channel and its main language.
pub(super) struct Room {
    pub(super) name: Box<str>,
    pub(super) id: u64,
    /// Index in [`LANGUAGES`].
    pub(super) language: usize,
}

/// Everything a generator draws from, with the Zipf laws that rank it.
pub(super) struct World {
    /// One per [`LANGUAGES`], in its order.
    pub(super) languages: Vec<Vocabulary>,
    pub(super) emotes: Vocabulary,
    pub(super) emoji: Vocabulary,
    pub(super) nicks: Vec<Nick>,
    pub(super) nick_zipf: Zipf,
    pub(super) rooms: Vec<Room>,
    pub(super) room_zipf: Zipf,
    /// The chat bots and their lines.
    pub(super) bots: Bots,
    /// Cumulative [`LENGTH_WEIGHTS`].
    pub(super) lengths: [u32; 15],
}

/// The world, shared by every generator (it does not depend on the stream's seed).
pub(super) static WORLD: LazyLock<World> = LazyLock::new(World::build);

/// The pieces logins are made of, from `words/nick-*.txt`.
struct NickParts {
    prefixes: Vec<&'static str>,
    cores: Vec<&'static str>,
    syllables: Vec<&'static str>,
}

impl NickParts {
    fn new() -> NickParts {
        NickParts {
            prefixes: include_str!("words/nick-prefixes.txt")
                .split_whitespace()
                .collect(),
            cores: include_str!("words/nick-cores.txt")
                .split_whitespace()
                .collect(),
            syllables: include_str!("words/nick-syllables.txt")
                .split_whitespace()
                .collect(),
        }
    }
}

/// A uniform choice: nick parts and colors have no rank, unlike words.
fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

impl World {
    fn build() -> World {
        // A fixed seed: the world is part of the simulator, not of one stream. Everything
        // below draws from it in a fixed order, which is why reordering these steps changes
        // every stream.
        let mut rng = StdRng::seed_from_u64(0x5EED_C4A7_5747_5000);
        let languages = LANGUAGES
            .iter()
            .map(|language| Vocabulary::language(language, &mut rng))
            .collect();
        let emotes = Vocabulary::emotes();
        let emoji = Vocabulary::emoji();
        // Draws nothing from `rng`.
        let bots = Bots::new(&emotes);
        let parts = NickParts::new();
        let nicks = Self::nicks(&parts, &mut rng);
        let rooms = Self::rooms(&parts, &mut rng);
        let mut lengths = [0; 15];
        let mut acc = 0;
        for (slot, weight) in lengths.iter_mut().zip(LENGTH_WEIGHTS) {
            acc += weight;
            *slot = acc;
        }
        World {
            languages,
            emotes,
            emoji,
            nick_zipf: Zipf::new(nicks.len(), NICK_EXPONENT),
            nicks,
            room_zipf: Zipf::new(rooms.len(), ROOM_EXPONENT),
            rooms,
            bots,
            lengths,
        }
    }

    fn nicks(parts: &NickParts, rng: &mut StdRng) -> Vec<Nick> {
        let mut nicks = Vec::with_capacity(NICKS);
        let mut seen = HashSet::new();
        while nicks.len() < NICKS {
            let login = Self::login(parts, rng);
            if seen.contains(&login) {
                continue;
            }
            seen.insert(login.clone());
            nicks.push(Self::nick(login, rng));
        }
        nicks
    }

    /// A Twitch login: lowercase ASCII letters, digits and `_`, 4 to 25 characters.
    fn login(parts: &NickParts, rng: &mut StdRng) -> String {
        let mut login = String::new();
        match rng.random_range(0..10) {
            0..=2 => {
                login.push_str(pick(rng, &parts.prefixes));
                if rng.random_bool(0.5) {
                    login.push('_');
                }
                login.push_str(pick(rng, &parts.cores));
            }
            3..=5 => login.push_str(pick(rng, &parts.cores)),
            6..=7 => {
                for _ in 0..rng.random_range(2..5) {
                    login.push_str(pick(rng, &parts.syllables));
                }
                if rng.random_bool(0.3) {
                    // A doubled letter, as in `dashh_u`.
                    if let Some(last) = login.chars().last() {
                        login.push(last);
                    }
                }
            }
            _ => {
                login.push_str(pick(rng, &parts.cores));
                login.push('_');
                login.push_str(pick(rng, &parts.cores));
            }
        }
        match rng.random_range(0..10) {
            0..=3 => {
                let digits = rng.random_range(1..5);
                for _ in 0..digits {
                    login.push(char::from(b'0' + rng.random_range(0..10u8)));
                }
            }
            4 => login.push_str("tv"),
            5 => login.push_str("_ttv"),
            6 => {
                login.push('_');
                login.push(char::from(b'a' + rng.random_range(0..26u8)));
            }
            _ => {}
        }
        while login.len() < 4 {
            login.push('_');
        }
        login.truncate(25);
        login
    }

    fn nick(login: String, rng: &mut StdRng) -> Nick {
        let display = match rng.random_range(0..10) {
            0..=4 => {
                let mut chars = login.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            }
            5..=6 => login
                .split('_')
                .map(|part| {
                    let mut chars = part.chars();
                    chars
                        .next()
                        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("_"),
            _ => login.clone(),
        };
        let moderator = rng.random_bool(0.02);
        let vip = !moderator && rng.random_bool(0.02);
        let months = if rng.random_bool(0.3) {
            rng.random_range(1..60u32)
        } else {
            0
        };
        let mut badges = Vec::new();
        if moderator {
            badges.push("moderator/1".to_owned());
        }
        if vip {
            badges.push("vip/1".to_owned());
        }
        if months > 0 {
            let tier = [48, 36, 24, 12, 9, 6, 3, 2, 0]
                .into_iter()
                .find(|&t| t <= months)
                .unwrap_or(0);
            badges.push(format!("subscriber/{tier}"));
        }
        if rng.random_bool(0.1) {
            badges.push("premium/1".to_owned());
        } else if rng.random_bool(0.05) {
            badges.push(format!(
                "bits/{}",
                [100, 1000, 5000][rng.random_range(0..3)]
            ));
        }
        let badge_info = if months > 0 {
            format!("subscriber/{months}")
        } else {
            String::new()
        };
        let color = if rng.random_bool(0.15) {
            ""
        } else {
            pick(rng, COLORS)
        };
        let head = format!(
            "badge-info={badge_info};badges={};color={color};display-name={display};",
            badges.join(",")
        );
        Nick {
            login: login.into(),
            display: display.into(),
            head: head.into(),
            moderator,
            subscriber: months > 0,
            user_id: rng.random_range(10_000_000..999_999_999),
        }
    }

    /// Rooms are named like logins; each speaks one language, drawn by [`LANGUAGES`] weight.
    fn rooms(parts: &NickParts, rng: &mut StdRng) -> Vec<Room> {
        let total: u32 = LANGUAGES.iter().map(|l| l.weight).sum();
        let mut rooms = Vec::with_capacity(ROOMS);
        let mut seen = HashSet::new();
        while rooms.len() < ROOMS {
            let mut name = String::from("#");
            name.push_str(&Self::login(parts, rng));
            if seen.contains(&name) {
                continue;
            }
            seen.insert(name.clone());
            let mut draw = rng.random_range(0..total);
            let language = LANGUAGES
                .iter()
                .position(|l| {
                    if draw < l.weight {
                        true
                    } else {
                        draw -= l.weight;
                        false
                    }
                })
                .unwrap_or(ENGLISH);
            rooms.push(Room {
                name: name.into(),
                id: rng.random_range(10_000_000..999_999_999),
                language,
            });
        }
        rooms
    }
}
