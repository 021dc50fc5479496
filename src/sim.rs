//! The simulated Twitch-like chat stream: a deterministic generator of upstream events, the
//! pacing shared by the in-process source and the HTTP server, and the `chatstats-sim` server.
//!
//! The stream looks like the real upstream (see the product contract): every event is
//!
//! ```text
//! event: privmsg
//! se-data: {"command":"","room":"#room","nick":"someone","target":"","body":"hello chat","tags":"…"}
//!
//! ```
//!
//! Words, nicks and rooms follow Zipf laws over fixed lists (built once per process from a
//! fixed internal seed, so they never depend on the stream's seed); bodies mix English, Turkish,
//! Portuguese, German, Korean, Japanese, Russian, emoji and Twitch emotes, each room having one
//! main language. About 1% of events are `CLEARCHAT` / `USERNOTICE` notices with an empty room
//! or nick, and about 0.2% of payloads are malformed (truncated JSON, bare text, JSON that is
//! not an object, trailing garbage, invalid UTF-8), because the real stream has such lines and
//! the counting rules must cope with them.
//!
//! Everything is a pure function of the seed: `tmi-sent-ts` starts at [`START_TS_MS`] and
//! advances by a step drawn from the same random generator, never from the clock, so one seed
//! gives the same bytes on every run and machine (for one `Cargo.lock`: the random generator
//! is [`StdRng`], whose stream `rand` may change between major versions).

use std::convert::Infallible;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// `tmi-sent-ts` of the first event, in Unix milliseconds (2022-01-03, as in the contract's
/// sample), so the same seed gives the same bytes whenever it runs.
pub const START_TS_MS: u64 = 1_641_241_341_776;

/// Zipf exponent of words (within a language), emotes and emoji.
const WORD_EXPONENT: f64 = 1.1;
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
/// Out of 10 000 events: malformed payloads (0.2%).
const MALFORMED_PER_10K: u32 = 20;
/// Out of 10 000 events: `CLEARCHAT` notices (0.5%).
const CLEARCHAT_PER_10K: u32 = 50;
/// Out of 10 000 events: `USERNOTICE` notices (0.5%).
const USERNOTICE_PER_10K: u32 = 50;
/// Bytes of generated stream handed out at once (file writes, HTTP chunks).
const CHUNK_BYTES: usize = 64 * 1024;
/// Events per [`crate::source::sim::SimSource`] read, and per HTTP chunk, at most.
pub(crate) const MAX_BATCH: u64 = 1024;

// ---------------------------------------------------------------------------------------------
// The fixed lists
// ---------------------------------------------------------------------------------------------

/// The main languages of rooms, in the order of [`LANGUAGES`].
const LANGUAGES: [LanguageSpec; 7] = [
    LanguageSpec {
        weight: 45,
        size: 1000,
        head: EN_WORDS,
        syllables: &[
            "ba", "be", "bo", "ca", "co", "da", "de", "di", "fa", "fi", "ga", "go", "ha", "he",
            "ja", "ka", "ke", "la", "le", "li", "lo", "ma", "me", "mi", "mo", "na", "ne", "no",
            "pa", "pe", "po", "ra", "re", "ri", "ro", "sa", "se", "si", "so", "ta", "te", "ti",
            "to", "wa", "we", "ya", "yo", "ck", "ng", "st", "th", "sh", "er", "in", "on", "ly",
        ],
    },
    LanguageSpec {
        weight: 10,
        size: 350,
        head: TR_WORDS,
        syllables: &[
            "ba", "ça", "da", "ğı", "ka", "la", "ma", "na", "şe", "tü", "yö", "lı", "ri", "sı",
            "ke", "ler", "lar", "dı", "mı", "ğu", "öz", "ün", "ış", "ge", "çi", "ya", "ko", "em",
        ],
    },
    LanguageSpec {
        weight: 12,
        size: 350,
        head: PT_WORDS,
        syllables: &[
            "ção", "ões", "ão", "nh", "lh", "ma", "pa", "ra", "de", "que", "ga", "to", "ba", "çã",
            "é", "ê", "va", "mo", "ri", "do", "ta", "le", "bo", "ci", "nu", "sé",
        ],
    },
    LanguageSpec {
        weight: 10,
        size: 350,
        head: DE_WORDS,
        syllables: &[
            "ge", "ber", "schl", "ung", "keit", "ä", "ü", "ö", "ß", "ch", "en", "sch", "str", "au",
            "ei", "ie", "ter", "lich", "zu", "ver", "ma", "no", "ra", "hel", "wa",
        ],
    },
    LanguageSpec {
        weight: 8,
        size: 250,
        head: KO_WORDS,
        syllables: &[],
    },
    LanguageSpec {
        weight: 7,
        size: 250,
        head: JA_WORDS,
        syllables: &[],
    },
    LanguageSpec {
        weight: 8,
        size: 350,
        head: RU_WORDS,
        syllables: &[
            "ра", "ко", "ни", "ма", "ло", "ве", "ст", "то", "да", "ны", "ки", "пр", "ш", "ж", "щи",
            "ль", "ся", "ть", "ую", "ем", "ох", "ба", "зы", "чё",
        ],
    },
];

/// Index of English in [`LANGUAGES`].
const ENGLISH: usize = 0;
/// Index of Korean in [`LANGUAGES`] (synthetic words are Hangul syllables).
const KOREAN: usize = 4;
/// Index of Japanese in [`LANGUAGES`] (synthetic words are kana).
const JAPANESE: usize = 5;

struct LanguageSpec {
    /// Share of rooms speaking it (out of 100).
    weight: u32,
    /// Words in its vocabulary: `head`, then elongations and syllable words.
    size: usize,
    /// Common words, most frequent first.
    head: &'static str,
    /// Syllables of synthetic rare words (Korean and Japanese use Unicode blocks instead).
    syllables: &'static [&'static str],
}

const EN_WORDS: &str = r#"lol the i you is a it to that this and what no yes he chat so of in just
like me my we are was be not do can get go gg why lmao bro omg wtf true real good bad on for with
have it's i'm don't they what's how when who all now one that's nice haha xd XD ez W L ratio based
cringe clip streamer stream game play playing won lost win lose dead actually literally never
always again here there he's she's u ur y pls plz thanks ty love hate man dude guys bruh sus fr
ngl tbh imo idk idc lmfao rofl ok okay yeah yep nope oh ah hmm wait what? why? !uptime !discord
!followage !sr !song :) :( :D ;) \o/ ¯\_(ツ)_/¯ "clip" @everyone first hi hello hey bye gn gm
morning night song music mod mods ban banned timeout vod sub subs prime bits hype boss fight run
speedrun chat's LETSGO let's insane crazy clean huge big small fast slow better worse best worst
more less time today tomorrow yesterday week year back left right up down out off still even only
really very much many some any every other new old last next same different https://youtu.be/dQw4w9WgXcQ"#;

const TR_WORDS: &str = "ve bir bu ne çok değil evet hayır abi kanka yok var güzel oyun naber selam
merhaba teşekkürler aynen tamam şimdi niye neden nasıl ama gibi ben sen o biz hocam reis helal
olsun yaa ağla ölürüm gülmekten şaka iyi kötü saçma harika maç gol kardeşim hadi bakalım öyle böyle
çünkü işte şu daha en her hiç ıyy kız adam yayın yayıncı sohbet izle izliyorum geldim gittim ağır
sıkıldım uyku günaydın geceler";

const PT_WORDS: &str = "kkkkk que não sim é o a de eu você mano kkk rsrs muito bom boa noite dia
tarde obrigado valeu tá está jogo jogar cara caramba nossa gente galera aqui ali agora depois então
mas porque também coração ação irmão lindo vamos bora gol sério verdade mentira quem onde quando
como isso essa esse ele ela nós eles tudo nada aí né pô saudade feliz triste maluco doido";

const DE_WORDS: &str = "ich du der die das und ist nicht ja nein was wie warum gut schlecht Spiel
spielen Hallo Servus Moin Grüße schön Mädchen für über Straße heißt müssen können wirklich genau
alter digga krass geil Ehrenmann läuft Brudi hä oder aber auch noch schon mal jetzt heute morgen
danke bitte Kopf Zuschauer Stream wer wo wann mein dein sein Glückwunsch Größe Fußball Tor
Mannschaft Bier";

const KO_WORDS: &str = "ㅋㅋㅋ ㅋㅋㅋㅋ ㅋㅋ ㅎㅎ ㅠㅠ ㅜㅜ ㄷㄷ ㄹㅇ ㅇㅇ 안녕하세요 안녕 감사합니다 고마워 진짜 대박 와 헐
뭐야 아니 네 응 좋아 사랑해 오빠 언니 형 게임 방송 채팅 왜 어디 누구 미쳤다 개웃기네 레전드 ㅋㅋㅋㅋㅋㅋ 화이팅
잘자 배고파 졸려 오늘 내일";

const JA_WORDS: &str = "www 草 wwwww こんにちは こんばんは ありがとう かわいい すごい やばい おはよう おやすみ うん
はい いいえ なに なんで 本当 ほんと マジ ゲーム 配信 初見 888 8888 おつかれ おめでとう 笑 好き 大好き 神 えぐい
それな わかる ですね です 日本 東京 ナイス がんばれ きた ｗｗｗ";

const RU_WORDS: &str = "привет да нет что как это не и в я ты он она мы они хорошо плохо спасибо
пожалуйста игра стрим чат ахаха ахахах лол кек жиза круто бро брат давай почему когда где кто
сейчас потом очень ну вот тоже уже ещё всё блин капец имба топ изи гг го норм ладно понятно реально
красава";

/// Emotes, most used first, with their Twitch emote id when they are Twitch's own (the others
/// are third-party emotes, which the `emotes` tag does not list). The ids are plausible, not
/// authoritative.
const EMOTES: &[(&str, Option<u32>)] = &[
    ("KEKW", None),
    ("LUL", Some(425_618)),
    ("Kappa", Some(25)),
    ("OMEGALUL", None),
    ("PogChamp", Some(88)),
    ("monkaS", None),
    ("Pog", None),
    ("4Head", Some(354)),
    ("PepeHands", None),
    ("Sadge", None),
    ("LULW", None),
    ("BibleThump", Some(86)),
    ("Kreygasm", Some(41)),
    ("PepeLaugh", None),
    ("POGGERS", None),
    ("monkaW", None),
    ("EZ", None),
    ("Clap", None),
    ("ResidentSleeper", Some(245)),
    ("NotLikeThis", Some(58_765)),
    ("TriHard", Some(120_232)),
    ("WutFace", Some(28_087)),
    ("SeemsGood", Some(64_138)),
    ("DansGame", Some(33)),
    ("FailFish", Some(360)),
    ("HeyGuys", Some(30_259)),
    ("5Head", None),
    ("AYAYA", None),
    ("catJAM", None),
    ("FeelsBadMan", None),
    ("FeelsGoodMan", None),
    ("FeelsStrongMan", None),
    ("widepeepoHappy", None),
    ("peepoHappy", None),
    ("WeirdChamp", None),
    ("COPIUM", None),
    ("Aware", None),
    ("xdd", None),
    ("gachiGASM", None),
    ("SwiftRage", Some(34)),
    ("BabyRage", Some(22_639)),
    ("CoolCat", Some(58_127)),
    ("VoHiYo", Some(81_274)),
    ("PJSalt", Some(36)),
    ("MrDestructoid", Some(28)),
    ("Jebaited", Some(114_836)),
    ("CoolStoryBob", Some(123_171)),
    ("cmonBruh", Some(84_608)),
    ("KappaPride", Some(55_338)),
    ("BloodTrail", Some(69)),
    ("TwitchUnity", Some(196_892)),
    ("Keepo", Some(1902)),
    ("haHAA", None),
    ("monkaHmm", None),
    ("PauseChamp", None),
    ("Pepega", None),
    ("D:", None),
    ("<3", Some(9)),
];

const EMOJI: &str =
    "😂 🤣 ❤️ 🔥 👍 😭 💀 🙏 😎 🥺 👀 🤔 😳 💯 🎉 🐐 👑 😡 🤡 ✨ 🇹🇷 🇧🇷 🇩🇪 🇰🇷 🇯🇵 🇷🇺 👋🏽
👨‍👩‍👧 🏳️‍🌈 🫡 🥲 😅 🙃 😴 🤯";

/// Characters that chatters repeat at the end of a word.
const ELONGATED: &str = "aeiouyıöüãáéóksw8!?аеиоуыэюяёхㅋㅎㅠㅜㄷｗー";

const NICK_PREFIXES: &[&str] = &[
    "xx", "the", "real", "its", "mr", "lil", "big", "dark", "not", "im", "just", "sir", "captain",
    "dr", "king", "queen", "baby", "super", "mega", "ultra", "pro", "noob", "sad", "happy",
    "crazy", "lazy", "salty", "spicy", "sleepy",
];

const NICK_CORES: &[&str] = &[
    "gamer", "ninja", "wolf", "fox", "cat", "dog", "pepe", "kappa", "frog", "pixel", "shadow",
    "ghost", "tiger", "panda", "potato", "tomato", "cookie", "bacon", "pizza", "taco", "dragon",
    "knight", "wizard", "rogue", "sniper", "legend", "hero", "ace", "storm", "blaze", "frost",
    "viper", "raven", "hawk", "bear", "lion", "duck", "goose", "moose", "otter", "sloth", "koala",
    "cheese", "noodle", "waffle", "pancake", "muffin", "beans", "toast", "mango", "lemon",
    "cherry", "kiwi", "melon", "mehmet", "ayse", "emre", "joao", "lucas", "gabriel", "felipe",
    "hans", "jonas", "lukas", "minho", "jisoo", "hyun", "yuki", "haruto", "sakura", "dmitry",
    "ivan", "sasha", "olga", "vlad", "dash", "zed", "kai", "leo", "max", "nova", "luna", "milo",
    "ruby",
];

const NICK_SYLLABLES: &[&str] = &[
    "ka", "ri", "to", "zu", "mo", "xi", "ra", "ne", "lo", "vi", "da", "sh", "qu", "ze", "py", "ko",
];

const COLORS: &[&str] = &[
    "#FF0000", "#0000FF", "#008000", "#B22222", "#FF7F50", "#9ACD32", "#FF4500", "#2E8B57",
    "#DAA520", "#D2691E", "#5F9EA0", "#1E90FF", "#FF69B4", "#8A2BE2", "#00FF7F",
];

const BARE_TEXT: &[&str] = &[
    "PING :tmi.twitch.tv",
    "hello chat",
    "<html><body>502 Bad Gateway</body></html>",
    "undefined",
    "[object Object]",
    "Kappa Kappa Kappa",
    "",
    "   ",
];

const NOT_OBJECTS: &[&str] = &[
    "[1,2]",
    "[]",
    "\"just a string\"",
    "42",
    "null",
    "true",
    "[{\"room\":\"#sim\",\"nick\":\"someone\",\"body\":\"hi\"}]",
];

// ---------------------------------------------------------------------------------------------
// The world: every list, built once per process
// ---------------------------------------------------------------------------------------------

/// A Zipf law over ranks `0..n`, sampled with one 64-bit draw: rank `i` is the first whose
/// cumulative threshold is at least the draw. A guide table (the first candidate rank of each
/// of 2n or more equal slices of the draws) makes that a step or two instead of a binary search.
struct Zipf {
    thresholds: Vec<u64>,
    guide: Vec<u32>,
    shift: u32,
}

impl Zipf {
    fn new(n: usize, exponent: f64) -> Zipf {
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

    fn sample(&self, rng: &mut StdRng) -> usize {
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
struct Word {
    text: Box<str>,
    chars: u32,
    emote: Option<u32>,
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
struct Vocabulary {
    words: Vec<Word>,
    zipf: Zipf,
}

impl Vocabulary {
    fn new(words: Vec<Word>) -> Vocabulary {
        Vocabulary {
            zipf: Zipf::new(words.len(), WORD_EXPONENT),
            words,
        }
    }

    fn sample(&self, rng: &mut StdRng) -> &Word {
        &self.words[self.zipf.sample(rng)]
    }
}

/// A chatter and the parts of its tags that do not change between its messages.
struct Nick {
    login: Box<str>,
    display: Box<str>,
    /// `badge-info=…;badges=…;color=…;display-name=…;`
    head: Box<str>,
    moderator: bool,
    subscriber: bool,
    user_id: u64,
}

/// A channel and its main language.
struct Room {
    name: Box<str>,
    id: u64,
    language: usize,
}

struct World {
    languages: Vec<Vocabulary>,
    emotes: Vocabulary,
    emoji: Vocabulary,
    nicks: Vec<Nick>,
    nick_zipf: Zipf,
    rooms: Vec<Room>,
    room_zipf: Zipf,
    /// Cumulative [`LENGTH_WEIGHTS`].
    lengths: [u32; 15],
}

/// The lists, shared by every generator (they do not depend on the stream's seed).
static WORLD: LazyLock<World> = LazyLock::new(World::build);

/// Pushes `text` to `list` unless `seen` has it (`seen` only answers membership, so the order of
/// `list` stays deterministic).
fn add_unique(
    list: &mut Vec<Word>,
    seen: &mut std::collections::HashSet<Box<str>>,
    text: &str,
) -> bool {
    if text.is_empty() || text.chars().any(char::is_whitespace) || seen.contains(text) {
        return false;
    }
    seen.insert(text.into());
    list.push(Word::new(text, None));
    true
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

impl World {
    fn build() -> World {
        // A fixed seed: the lists are part of the simulator, not of one stream.
        let mut rng = StdRng::seed_from_u64(0x5EED_C4A7_5747_5000);
        let languages = LANGUAGES
            .iter()
            .enumerate()
            .map(|(index, spec)| Vocabulary::new(Self::vocabulary(index, spec, &mut rng)))
            .collect();
        let emotes = Vocabulary::new(
            EMOTES
                .iter()
                .map(|&(text, id)| Word::new(text, id))
                .collect(),
        );
        let emoji = Vocabulary::new(
            EMOJI
                .split_whitespace()
                .map(|e| Word::new(e, None))
                .collect(),
        );
        let nicks = Self::nicks(&mut rng);
        let rooms = Self::rooms(&mut rng);
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
            lengths,
        }
    }

    /// A language's words: its common words, then a tail of elongations of common words
    /// (`noooo`, `ㅋㅋㅋㅋㅋ`) and synthetic words in its script.
    fn vocabulary(index: usize, spec: &LanguageSpec, rng: &mut StdRng) -> Vec<Word> {
        let mut words = Vec::with_capacity(spec.size);
        let mut seen = std::collections::HashSet::new();
        for w in spec.head.split_whitespace() {
            add_unique(&mut words, &mut seen, w);
        }
        let head = words.len();
        let head_zipf = Zipf::new(head, WORD_EXPONENT);
        let mut attempts = 0;
        while words.len() < spec.size && attempts < spec.size * 100 {
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
                Self::synthetic(index, spec, rng)
            };
            add_unique(&mut words, &mut seen, &word);
        }
        words
    }

    fn synthetic(index: usize, spec: &LanguageSpec, rng: &mut StdRng) -> String {
        let syllables = rng.random_range(2..5);
        let mut w = String::new();
        for _ in 0..syllables {
            match index {
                KOREAN => {
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
                JAPANESE => {
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
                _ => w.push_str(pick(rng, spec.syllables)),
            }
        }
        w
    }

    fn nicks(rng: &mut StdRng) -> Vec<Nick> {
        let mut nicks = Vec::with_capacity(NICKS);
        let mut seen = std::collections::HashSet::new();
        while nicks.len() < NICKS {
            let login = Self::login(rng);
            if seen.contains(&login) {
                continue;
            }
            seen.insert(login.clone());
            nicks.push(Self::nick(login, rng));
        }
        nicks
    }

    /// A Twitch login: lowercase ASCII letters, digits and `_`, 4 to 25 characters.
    fn login(rng: &mut StdRng) -> String {
        let mut login = String::new();
        match rng.random_range(0..10) {
            0..=2 => {
                login.push_str(pick(rng, NICK_PREFIXES));
                if rng.random_bool(0.5) {
                    login.push('_');
                }
                login.push_str(pick(rng, NICK_CORES));
            }
            3..=5 => login.push_str(pick(rng, NICK_CORES)),
            6..=7 => {
                for _ in 0..rng.random_range(2..5) {
                    login.push_str(pick(rng, NICK_SYLLABLES));
                }
                if rng.random_bool(0.3) {
                    // A doubled letter, as in `dashh_u`.
                    if let Some(last) = login.chars().last() {
                        login.push(last);
                    }
                }
            }
            _ => {
                login.push_str(pick(rng, NICK_CORES));
                login.push('_');
                login.push_str(pick(rng, NICK_CORES));
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

    fn rooms(rng: &mut StdRng) -> Vec<Room> {
        let total: u32 = LANGUAGES.iter().map(|l| l.weight).sum();
        let mut rooms = Vec::with_capacity(ROOMS);
        let mut seen = std::collections::HashSet::new();
        while rooms.len() < ROOMS {
            let mut name = String::from("#");
            name.push_str(&Self::login(rng));
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

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

/// One upstream event as JSON: the upstream's fields, in its order.
#[derive(Serialize)]
struct Event<'a> {
    command: &'a str,
    room: &'a str,
    nick: &'a str,
    target: &'a str,
    body: &'a str,
    tags: &'a str,
}

/// Deterministic generator of simulated chat events.
///
/// The same seed gives the same sequence of bytes on every run and machine; different seeds
/// give different streams over the same nicks, rooms and words. Generating allocates nothing
/// per event beyond the returned [`Bytes`] (which share one buffer per 64 KiB).
pub struct Generator {
    rng: StdRng,
    world: &'static World,
    /// `tmi-sent-ts` of the last event.
    ts: u64,
    body: String,
    tags: String,
    /// Twitch emotes of the body being built: (emote id, first char, last char).
    emote_spans: Vec<(u32, u32, u32)>,
    scratch: Vec<u8>,
    pool: BytesMut,
}

impl Generator {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: StdRng::seed_from_u64(seed),
            world: &WORLD,
            ts: START_TS_MS,
            body: String::with_capacity(256),
            tags: String::with_capacity(512),
            emote_spans: Vec::with_capacity(16),
            scratch: Vec::with_capacity(1024),
            pool: BytesMut::new(),
        }
    }

    /// The next payload: the JSON text of one event (or a malformed line), without framing —
    /// exactly what the decoder yields for the `se-data:` line of [`Generator::write_event`].
    pub fn next_payload(&mut self) -> Bytes {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.write_payload(&mut scratch);
        if self.pool.capacity() < scratch.len() {
            self.pool = BytesMut::with_capacity(CHUNK_BYTES.max(scratch.len()));
        }
        self.pool.extend_from_slice(&scratch);
        self.scratch = scratch;
        self.pool.split().freeze()
    }

    /// Appends the next whole framed event to `out`: `event: privmsg`, `se-data: <payload>`
    /// and a blank line, with LF line ends.
    pub fn write_event(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: privmsg\nse-data: ");
        self.write_payload(out);
        out.extend_from_slice(b"\n\n");
    }

    /// Appends the next payload to `out`. A payload never holds a line end.
    fn write_payload(&mut self, out: &mut Vec<u8>) {
        self.ts += self.rng.random_range(1..=9);
        let kind = self.rng.random_range(0..10_000u32);
        if kind < MALFORMED_PER_10K {
            self.write_malformed(out);
        } else if kind < MALFORMED_PER_10K + CLEARCHAT_PER_10K {
            self.write_clearchat(out);
        } else if kind < MALFORMED_PER_10K + CLEARCHAT_PER_10K + USERNOTICE_PER_10K {
            self.write_usernotice(out);
        } else {
            self.write_privmsg(out);
        }
    }

    fn write_privmsg(&mut self, out: &mut Vec<u8>) {
        let world = self.world;
        let room = &world.rooms[world.room_zipf.sample(&mut self.rng)];
        let nick = &world.nicks[world.nick_zipf.sample(&mut self.rng)];
        self.build_body(room.language);
        let first_message = self.rng.random_bool(0.01);
        let id = (self.rng.random::<u64>(), self.rng.random::<u64>());
        let tags = &mut self.tags;
        tags.clear();
        tags.push_str(&nick.head);
        tags.push_str("emotes=");
        push_emotes(tags, &mut self.emote_spans);
        tags.push_str(if first_message {
            ";first-msg=1;flags=;id="
        } else {
            ";first-msg=0;flags=;id="
        });
        push_uuid(tags, id);
        tags.push_str(if nick.moderator {
            ";mod=1;returning-chatter=0;room-id="
        } else {
            ";mod=0;returning-chatter=0;room-id="
        });
        push_u64(tags, room.id);
        tags.push_str(if nick.subscriber {
            ";subscriber=1;tmi-sent-ts="
        } else {
            ";subscriber=0;tmi-sent-ts="
        });
        push_u64(tags, self.ts);
        tags.push_str(";turbo=0;user-id=");
        push_u64(tags, nick.user_id);
        tags.push_str(if nick.moderator {
            ";user-type=mod"
        } else {
            ";user-type="
        });
        write_json(
            out,
            &Event {
                command: "",
                room: &room.name,
                nick: &nick.login,
                target: "",
                body: &self.body,
                tags: &self.tags,
            },
        );
    }

    /// A timeout, a ban or a cleared chat: no room and no nick; the channel is the target and
    /// the banned user the body, as the real stream sends them.
    fn write_clearchat(&mut self, out: &mut Vec<u8>) {
        let world = self.world;
        let room = &world.rooms[world.room_zipf.sample(&mut self.rng)];
        let nick = &world.nicks[world.nick_zipf.sample(&mut self.rng)];
        let what = self.rng.random_range(0..10);
        let tags = &mut self.tags;
        tags.clear();
        let body = if what < 9 {
            if what < 7 {
                tags.push_str("ban-duration=");
                let duration = [1, 10, 60, 300, 600, 3600, 86_400][self.rng.random_range(0..7)];
                push_u64(tags, duration);
                tags.push(';');
            }
            tags.push_str("room-id=");
            push_u64(tags, room.id);
            tags.push_str(";target-user-id=");
            push_u64(tags, nick.user_id);
            &nick.login
        } else {
            tags.push_str("room-id=");
            push_u64(tags, room.id);
            ""
        };
        tags.push_str(";tmi-sent-ts=");
        push_u64(tags, self.ts);
        write_json(
            out,
            &Event {
                command: "CLEARCHAT",
                room: "",
                nick: "",
                target: &room.name,
                body,
                tags: &self.tags,
            },
        );
    }

    /// A subscription, gift or raid notice: sent by the server, so no nick; the subscriber's
    /// own message, if any, is the body.
    fn write_usernotice(&mut self, out: &mut Vec<u8>) {
        let world = self.world;
        let room = &world.rooms[world.room_zipf.sample(&mut self.rng)];
        let nick = &world.nicks[world.nick_zipf.sample(&mut self.rng)];
        let other = &world.nicks[world.nick_zipf.sample(&mut self.rng)];
        let kind = self.rng.random_range(0..4);
        // Raids carry no message; subscribers write one about half of the time.
        let with_message = kind != 3 && self.rng.random_bool(0.5);
        if with_message {
            self.build_body(room.language);
        } else {
            self.body.clear();
            self.emote_spans.clear();
        }
        let months = self.rng.random_range(2..40u64);
        let viewers = self.rng.random_range(2..5000u64);
        let id = (self.rng.random::<u64>(), self.rng.random::<u64>());
        let tags = &mut self.tags;
        tags.clear();
        tags.push_str(&nick.head);
        tags.push_str("emotes=");
        push_emotes(tags, &mut self.emote_spans);
        tags.push_str(";flags=;id=");
        push_uuid(tags, id);
        tags.push_str(";login=");
        tags.push_str(&nick.login);
        tags.push_str(if nick.moderator {
            ";mod=1;msg-id="
        } else {
            ";mod=0;msg-id="
        });
        // Twitch escapes spaces in tag values as `\s`.
        match kind {
            0 => {
                tags.push_str("sub;msg-param-sub-plan=1000;room-id=");
                push_u64(tags, room.id);
                tags.push_str(";subscriber=1;system-msg=");
                tags.push_str(&nick.display);
                tags.push_str("\\ssubscribed\\sat\\sTier\\s1.");
            }
            1 => {
                tags.push_str("resub;msg-param-cumulative-months=");
                push_u64(tags, months);
                tags.push_str(";msg-param-sub-plan=1000;room-id=");
                push_u64(tags, room.id);
                tags.push_str(";subscriber=1;system-msg=");
                tags.push_str(&nick.display);
                tags.push_str("\\ssubscribed\\sat\\sTier\\s1.\\sThey've\\ssubscribed\\sfor\\s");
                push_u64(tags, months);
                tags.push_str("\\smonths!");
            }
            2 => {
                tags.push_str("subgift;msg-param-recipient-user-name=");
                tags.push_str(&other.login);
                tags.push_str(";msg-param-sub-plan=1000;room-id=");
                push_u64(tags, room.id);
                tags.push_str(";subscriber=1;system-msg=");
                tags.push_str(&nick.display);
                tags.push_str("\\sgifted\\sa\\sTier\\s1\\ssub\\sto\\s");
                tags.push_str(&other.display);
                tags.push('!');
            }
            _ => {
                tags.push_str("raid;msg-param-viewerCount=");
                push_u64(tags, viewers);
                tags.push_str(";room-id=");
                push_u64(tags, room.id);
                tags.push_str(";subscriber=0;system-msg=");
                push_u64(tags, viewers);
                tags.push_str("\\sraiders\\sfrom\\s");
                tags.push_str(&nick.display);
                tags.push_str("\\shave\\sjoined!");
            }
        }
        tags.push_str(";tmi-sent-ts=");
        push_u64(tags, self.ts);
        tags.push_str(";user-id=");
        push_u64(tags, nick.user_id);
        tags.push_str(";user-type=");
        write_json(
            out,
            &Event {
                command: "USERNOTICE",
                room: &room.name,
                nick: "",
                target: "",
                body: &self.body,
                tags: &self.tags,
            },
        );
    }

    /// A line the counting rules must reject: never an object, never a line end.
    fn write_malformed(&mut self, out: &mut Vec<u8>) {
        let start = out.len();
        match self.rng.random_range(0..6) {
            0 => {
                // Truncated JSON (possibly in the middle of a UTF-8 sequence).
                self.write_privmsg(out);
                // A serialized event is far longer than 2 bytes: keep 1 to len - 1 of them.
                let len = out.len() - start;
                let keep = self.rng.random_range(1..len.max(2));
                out.truncate(start + keep);
            }
            1 => {
                let text = BARE_TEXT[self.rng.random_range(0..BARE_TEXT.len())];
                out.extend_from_slice(text.as_bytes());
            }
            2 => {
                let text = NOT_OBJECTS[self.rng.random_range(0..NOT_OBJECTS.len())];
                out.extend_from_slice(text.as_bytes());
            }
            3 => {
                // An object followed by garbage.
                self.write_privmsg(out);
                out.extend_from_slice(b"}garbage");
            }
            4 => {
                // A body that is not UTF-8: a stray continuation byte, a cut sequence or 0xFF.
                self.write_privmsg(out);
                let at = memchr::memmem::find(&out[start..], b"\"body\":\"")
                    .map(|i| start + i + 8)
                    .unwrap_or(out.len());
                let bad: &[u8] = match self.rng.random_range(0..3) {
                    0 => b"\xff",
                    1 => b"\xc3(",
                    _ => b"\x80abc",
                };
                out.splice(at..at, bad.iter().copied());
            }
            _ => {
                // Bare text: the words of a message without its JSON.
                self.build_body(ENGLISH);
                out.extend_from_slice(self.body.as_bytes());
            }
        }
    }

    /// Builds a message body into `self.body` for a room speaking `language`, and its Twitch
    /// emotes into `self.emote_spans`.
    fn build_body(&mut self, language: usize) {
        let world = self.world;
        self.body.clear();
        self.emote_spans.clear();
        let draw = self.rng.random_range(0..world.lengths[14]);
        let words = world.lengths.partition_point(|&c| c <= draw) + 1;
        // Emote spam: one emote repeated (`LUL LUL LUL`).
        let spam = self
            .rng
            .random_bool(0.06)
            .then(|| world.emotes.sample(&mut self.rng));
        let mut position = 0u32;
        for i in 0..words {
            if i > 0 {
                self.body.push(' ');
                position += 1;
            }
            let word = match spam {
                Some(emote) => emote,
                None => {
                    let r = self.rng.random_range(0..1000u32);
                    if r < 230 {
                        world.emotes.sample(&mut self.rng)
                    } else if r < 260 {
                        world.emoji.sample(&mut self.rng)
                    } else if r < 275 {
                        // A mention.
                        let nick = &world.nicks[world.nick_zipf.sample(&mut self.rng)];
                        self.body.push('@');
                        self.body.push_str(&nick.login);
                        position += 1 + nick.login.len() as u32;
                        continue;
                    } else if r < 380 && language != ENGLISH {
                        world.languages[ENGLISH].sample(&mut self.rng)
                    } else {
                        world.languages[language].sample(&mut self.rng)
                    }
                }
            };
            self.body.push_str(&word.text);
            if let Some(id) = word.emote {
                self.emote_spans
                    .push((id, position, position + word.chars - 1));
            }
            position += word.chars;
        }
    }
}

/// Writes `event` as JSON. Serializing strings into a `Vec` cannot fail.
fn write_json(out: &mut Vec<u8>, event: &Event<'_>) {
    if let Err(err) = serde_json::to_writer(&mut *out, event) {
        // Unreachable: a Vec accepts every write and every field is a string.
        debug_assert!(false, "cannot serialize an event: {err}");
    }
}

/// Appends the `emotes` tag value, `id:start-end,start-end/id:start-end`, grouped by emote in
/// order of first use, and empties `spans`.
fn push_emotes(tags: &mut String, spans: &mut Vec<(u32, u32, u32)>) {
    let mut first_group = true;
    for i in 0..spans.len() {
        let id = spans[i].0;
        if spans[..i].iter().any(|s| s.0 == id) {
            continue;
        }
        if !first_group {
            tags.push('/');
        }
        first_group = false;
        push_u64(tags, u64::from(id));
        tags.push(':');
        let mut first_span = true;
        for &(_, from, to) in spans[i..].iter().filter(|s| s.0 == id) {
            if !first_span {
                tags.push(',');
            }
            first_span = false;
            push_u64(tags, u64::from(from));
            tags.push('-');
            push_u64(tags, u64::from(to));
        }
    }
    spans.clear();
}

/// Appends `v` in decimal.
fn push_u64(out: &mut String, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

/// Appends a UUID (version 4 layout) made of the bits `hi` and `lo`.
fn push_uuid(out: &mut String, (hi, lo): (u64, u64)) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hi = (hi & !0xF000) | 0x4000;
    let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    let mut text = [b'-'; 36];
    let mut at = 0;
    for value in [hi, lo] {
        for nibble in 0..16 {
            if matches!(at, 8 | 13 | 18 | 23) {
                at += 1;
            }
            text[at] = HEX[((value >> (60 - 4 * nibble)) & 0xF) as usize];
            at += 1;
        }
    }
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

// ---------------------------------------------------------------------------------------------
// Pacing
// ---------------------------------------------------------------------------------------------

/// When events are due at a fixed rate, without drift: event `k` is due at `start + k / rate`,
/// whatever the delays of the reads in between.
///
/// A reader that falls far behind (the consumer was stalled) catches up by at most one second
/// of events (or [`MAX_BATCH`]), and the schedule then moves on from there, rather than a burst
/// of everything it missed.
#[derive(Debug)]
pub(crate) struct Pacer {
    rate: Option<f64>,
    start: Instant,
    emitted: u64,
}

impl Pacer {
    /// A schedule of `rate` events per second from now; unlimited when `rate` is not a positive
    /// finite number.
    pub(crate) fn new(rate: f64) -> Pacer {
        Pacer {
            rate: (rate.is_finite() && rate > 0.0).then_some(rate),
            start: Instant::now(),
            emitted: 0,
        }
    }

    /// True when events are not paced.
    pub(crate) fn unlimited(&self) -> bool {
        self.rate.is_none()
    }

    /// Events due at `now` and not yet emitted, at most `cap` (`cap` when unlimited).
    pub(crate) fn due(&mut self, now: Instant, cap: u64) -> u64 {
        let Some(rate) = self.rate else {
            return cap;
        };
        let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
        // `as` saturates: an absurd rate gives u64::MAX, never a panic.
        let total = ((elapsed * rate).floor() as u64).saturating_add(1);
        let behind = total.saturating_sub(self.emitted);
        let max_lag = (rate.ceil() as u64).max(MAX_BATCH);
        if behind > max_lag {
            let skip = Duration::try_from_secs_f64((behind - max_lag) as f64 / rate)
                .unwrap_or(Duration::ZERO);
            self.start = self.start.checked_add(skip).unwrap_or(now).min(now);
            return max_lag.min(cap);
        }
        behind.min(cap)
    }

    /// Records that `n` events were emitted.
    pub(crate) fn emitted(&mut self, n: u64) {
        self.emitted += n;
    }

    /// When the next event is due (`None` when unlimited).
    pub(crate) fn next_at(&self) -> Option<Instant> {
        let rate = self.rate?;
        let offset = Duration::try_from_secs_f64(self.emitted as f64 / rate)
            .unwrap_or(Duration::from_secs(86_400 * 365));
        Some(
            self.start
                .checked_add(offset)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400)),
        )
    }

    /// Waits until at least one event is due and returns how many are, at most `cap`.
    /// Cancel-safe: nothing changes until the wait is over.
    pub(crate) async fn wait(&mut self, cap: u64) -> u64 {
        let due = self.due(Instant::now(), cap);
        if due > 0 {
            return due;
        }
        if let Some(at) = self.next_at() {
            tokio::time::sleep_until(at).await;
        }
        // Woken at the due time of the next event: it is due even if rounding says otherwise.
        self.due(Instant::now(), cap).max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// Files and the HTTP server
// ---------------------------------------------------------------------------------------------

/// Writes exactly `count` framed events from `seed` to `out`.
pub fn write_events<W: Write>(mut out: W, count: u64, seed: u64) -> io::Result<()> {
    let mut generator = Generator::new(seed);
    let mut buf = Vec::with_capacity(CHUNK_BYTES + 4096);
    for _ in 0..count {
        generator.write_event(&mut buf);
        if buf.len() >= CHUNK_BYTES {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()
}

/// Writes exactly `count` framed events from `seed` to the file `path` (created or
/// truncated), or to stdout when `path` is `-`: a fixture for text mode
/// (`RESPONSE_STREAM_MODE=text`) or for replaying a stream byte for byte.
pub fn write_file(path: impl AsRef<Path>, count: u64, seed: u64) -> io::Result<()> {
    let path = path.as_ref();
    if path == Path::new("-") {
        write_events(io::stdout().lock(), count, seed)
    } else {
        write_events(std::fs::File::create(path)?, count, seed)
    }
}

/// How the simulated upstream server streams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimSettings {
    /// Events per second per connection; 0 (or less) streams as fast as the client reads.
    pub rate: f64,
    /// Seed of every connection's stream: each connection starts the same stream from the
    /// beginning, so all clients see the same events.
    pub seed: u64,
}

#[derive(Clone)]
struct ServerState {
    settings: SimSettings,
    shutdown: CancellationToken,
}

/// Serves the simulated upstream on `listener` until `shutdown` is cancelled: `GET /` answers
/// `text/event-stream` with a body that never ends, one stream per connection from
/// `settings.seed`, paced at `settings.rate`. On shutdown every open body is ended, so the
/// server stops promptly instead of waiting for endless responses.
pub async fn serve(
    listener: TcpListener,
    settings: SimSettings,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let address = listener.local_addr()?;
    info!(%address, rate = settings.rate, seed = settings.seed, url = %format!("http://{address}/"),
          "simulated chat stream listening");
    let app = Router::new()
        .route("/", get(stream_events))
        .with_state(ServerState {
            settings,
            shutdown: shutdown.clone(),
        });
    // Paced events go out in small chunks: without TCP_NODELAY, Nagle's algorithm holds them
    // back for tens of milliseconds (measured: 25-36 ms stalls in the latency benchmark).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}

/// Logs when a client's stream ends, however it ends.
struct Connection {
    peer: SocketAddr,
    events: u64,
}

impl Drop for Connection {
    fn drop(&mut self) {
        info!(peer = %self.peer, events = self.events, "client disconnected");
    }
}

/// One connection's stream: its own generator and schedule.
struct ChunkStream {
    generator: Generator,
    pacer: Pacer,
    connection: Connection,
}

impl ChunkStream {
    /// The next chunk: the events due now (all that fit in 64 KiB when unpaced).
    async fn next_chunk(&mut self) -> Bytes {
        let due = self.pacer.wait(MAX_BATCH).await;
        let mut buf = Vec::with_capacity(if self.pacer.unlimited() {
            CHUNK_BYTES + 4096
        } else {
            (due as usize).min(256) * 512
        });
        let mut written = 0;
        while written < due && buf.len() < CHUNK_BYTES {
            self.generator.write_event(&mut buf);
            written += 1;
        }
        self.pacer.emitted(written);
        self.connection.events += written;
        Bytes::from(buf)
    }
}

async fn stream_events(
    State(state): State<ServerState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    info!(%peer, "client connected");
    let stream = ChunkStream {
        generator: Generator::new(state.settings.seed),
        pacer: Pacer::new(state.settings.rate),
        connection: Connection { peer, events: 0 },
    };
    let chunks = futures::stream::unfold(stream, |mut stream| async move {
        let chunk = stream.next_chunk().await;
        Some((Ok::<_, Infallible>(chunk), stream))
    })
    .take_until(state.shutdown.cancelled_owned());
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::decode::{Decoder, Frame};

    fn events(seed: u64, count: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut generator = Generator::new(seed);
        for _ in 0..count {
            generator.write_event(&mut out);
        }
        out
    }

    fn is_object(payload: &[u8]) -> bool {
        matches!(
            serde_json::from_slice::<serde_json::Value>(payload),
            Ok(serde_json::Value::Object(_))
        )
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        assert_eq!(events(7, 2000), events(7, 2000));
        let mut a = Generator::new(7);
        let mut b = Generator::new(7);
        for _ in 0..2000 {
            assert_eq!(a.next_payload(), b.next_payload());
        }
    }

    #[test]
    fn different_seeds_give_different_streams() {
        assert_ne!(events(1, 100), events(2, 100));
    }

    #[test]
    fn framing_yields_exactly_the_payloads() {
        let stream = events(3, 500);
        let mut frames = Vec::new();
        let mut decoder = Decoder::new(64 * 1024);
        decoder.push(&stream, |f| frames.push(f));
        decoder.finish(|f| frames.push(f));
        let mut generator = Generator::new(3);
        let expected: Vec<Frame> = (0..500)
            .map(|_| Frame::Payload(generator.next_payload()))
            .collect();
        assert_eq!(frames, expected);
    }

    #[test]
    fn about_two_per_mille_of_payloads_are_malformed_and_the_rest_are_whole_events() {
        let mut generator = Generator::new(11);
        let mut malformed = 0;
        let mut notices = 0;
        let mut words = 0usize;
        let mut bodies = 0usize;
        let mut last_ts = 0u64;
        for _ in 0..100_000 {
            let payload = generator.next_payload();
            assert!(!payload.contains(&b'\n') && !payload.contains(&b'\r'));
            if !is_object(&payload) {
                malformed += 1;
                continue;
            }
            let value: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
            let field = |name: &str| value[name].as_str().map(str::to_owned);
            let (Some(command), Some(room), Some(nick), Some(body), Some(tags)) = (
                field("command"),
                field("room"),
                field("nick"),
                field("body"),
                field("tags"),
            ) else {
                panic!("a field is missing: {value}");
            };
            let ts: u64 = tags
                .split(';')
                .find_map(|t| t.strip_prefix("tmi-sent-ts="))
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("no tmi-sent-ts in {tags}"));
            assert!(ts > last_ts);
            last_ts = ts;
            if command.is_empty() {
                assert!(!room.is_empty() && !nick.is_empty());
                let n = body.split_whitespace().count();
                assert!((1..=15).contains(&n), "{n} words: {body}");
                words += n;
                bodies += 1;
                assert!(tags.contains(";id="), "{tags}");
            } else {
                assert!(room.is_empty() || nick.is_empty());
                notices += 1;
            }
        }
        assert!((120..=300).contains(&malformed), "{malformed} malformed");
        assert!((700..=1300).contains(&notices), "{notices} notices");
        let average = words as f64 / bodies as f64;
        assert!((5.0..=8.0).contains(&average), "{average} words per body");
    }

    #[test]
    fn words_follow_a_zipf_law_across_scripts() {
        let mut generator = Generator::new(5);
        let mut counts = std::collections::HashMap::<String, u64>::new();
        for _ in 0..50_000 {
            let payload = generator.next_payload();
            let Ok(serde_json::Value::Object(map)) =
                serde_json::from_slice::<serde_json::Value>(&payload)
            else {
                continue;
            };
            if let Some(body) = map.get("body").and_then(|b| b.as_str()) {
                for word in body.split_whitespace() {
                    *counts.entry(word.to_owned()).or_default() += 1;
                }
            }
        }
        assert!(counts.len() > 1500, "{} distinct words", counts.len());
        for sample in [
            "Kappa",
            "KEKW",
            "ㅋㅋㅋ",
            "www",
            "привет",
            "çok",
            "não",
            "nicht",
        ] {
            assert!(counts.contains_key(sample), "{sample} never appears");
        }
        let mut ranked: Vec<u64> = counts.into_values().collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        // Heavy head, long tail: the top 10 words outnumber the 500 after rank 100.
        let head: u64 = ranked[..10].iter().sum();
        let tail: u64 = ranked[100..600].iter().sum();
        assert!(head > tail / 2, "head {head}, tail {tail}");
    }

    #[test]
    fn emote_positions_point_at_the_emotes() {
        let mut generator = Generator::new(9);
        let mut checked = 0;
        for _ in 0..5000 {
            let payload = generator.next_payload();
            let Ok(serde_json::Value::Object(map)) =
                serde_json::from_slice::<serde_json::Value>(&payload)
            else {
                continue;
            };
            let (Some(body), Some(tags)) = (
                map.get("body").and_then(|b| b.as_str()),
                map.get("tags").and_then(|t| t.as_str()),
            ) else {
                continue;
            };
            let Some(emotes) = tags
                .split(';')
                .find_map(|t| t.strip_prefix("emotes="))
                .filter(|e| !e.is_empty())
            else {
                continue;
            };
            let chars: Vec<char> = body.chars().collect();
            for group in emotes.split('/') {
                let (id, spans) = group.split_once(':').unwrap_or_default();
                let name = EMOTES
                    .iter()
                    .find(|(_, i)| i.map(|i| i.to_string()).as_deref() == Some(id))
                    .map(|(n, _)| *n)
                    .unwrap_or_else(|| panic!("unknown emote id {id}"));
                for span in spans.split(',') {
                    let (from, to) = span.split_once('-').unwrap_or_default();
                    let (from, to): (usize, usize) =
                        (from.parse().unwrap_or(0), to.parse().unwrap_or(0));
                    let text: String = chars[from..=to].iter().collect();
                    assert_eq!(text, name, "{body} / {emotes}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 100);
    }

    #[test]
    fn write_file_writes_exactly_count_events_and_is_reproducible() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let a = dir.path().join("a.txt");
        let b = dir.path().join("b.txt");
        write_file(&a, 1000, 42)?;
        write_file(&b, 1000, 42)?;
        let a = std::fs::read(a)?;
        assert_eq!(a, std::fs::read(b)?);
        assert_eq!(a, events(42, 1000));
        let lines = a.split(|&b| b == b'\n');
        assert_eq!(lines.filter(|l| l.starts_with(b"se-data: ")).count(), 1000);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_keeps_the_rate_without_drift() {
        let mut pacer = Pacer::new(100.0);
        let start = Instant::now();
        let mut emitted = 0;
        while Instant::now() - start < Duration::from_secs(10) {
            let n = pacer.wait(MAX_BATCH).await;
            pacer.emitted(n);
            emitted += n;
        }
        // Events at 0, 10 ms, …, 10 s.
        assert_eq!(emitted, 1001);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_reader_catches_up_by_at_most_a_second() {
        let mut pacer = Pacer::new(10_000.0);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(pacer.due(Instant::now(), u64::MAX), 10_000);
        assert_eq!(pacer.due(Instant::now(), 100), 100);
        pacer.emitted(10_000);
        assert!(pacer.due(Instant::now(), u64::MAX) <= 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!((999..=1001).contains(&pacer.due(Instant::now(), u64::MAX)));
        let mut pacer = Pacer::new(0.0);
        assert_eq!(pacer.wait(7).await, 7);
        assert!(pacer.next_at().is_none());
    }

    async fn read_some(url: &str, at_least: usize) -> Result<(String, Vec<u8>), reqwest::Error> {
        let mut response = reqwest::get(url).await?.error_for_status()?;
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut body = Vec::new();
        while body.len() < at_least {
            match response.chunk().await? {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => break,
            }
        }
        Ok((content_type, body))
    }

    #[tokio::test]
    async fn the_server_streams_decodable_events_and_stops_on_shutdown()
    -> Result<(), Box<dyn std::error::Error>> {
        for rate in [0.0, 2000.0] {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("http://{}/", listener.local_addr()?);
            let shutdown = CancellationToken::new();
            let server = tokio::spawn(serve(
                listener,
                SimSettings { rate, seed: 4 },
                shutdown.clone(),
            ));
            let (content_type, body) =
                tokio::time::timeout(Duration::from_secs(20), read_some(&url, 8 * 1024)).await??;
            assert_eq!(content_type, "text/event-stream");
            assert!(body.len() >= 8 * 1024, "{} bytes", body.len());
            // Every client sees the same stream: the file's, from the start.
            let expected = events(4, 200);
            assert_eq!(body[..8 * 1024], expected[..8 * 1024]);
            let mut payloads = Vec::new();
            let mut decoder = Decoder::new(64 * 1024);
            decoder.push(&body, |f| payloads.push(f));
            assert!(payloads.len() >= 10);
            let objects = payloads
                .iter()
                .filter(|f| matches!(f, Frame::Payload(p) if is_object(p)))
                .count();
            assert!(
                objects * 10 >= payloads.len() * 9,
                "{objects} of {}",
                payloads.len()
            );
            // A second client gets the same bytes.
            let (_, again) =
                tokio::time::timeout(Duration::from_secs(20), read_some(&url, 8 * 1024)).await??;
            assert_eq!(again[..8 * 1024], body[..8 * 1024]);
            shutdown.cancel();
            tokio::time::timeout(Duration::from_secs(10), server).await???;
        }
        Ok(())
    }
}
