//! Chat bots: who they are (`words/bots.txt`) and what they say (`words/bot-lines.txt`).
//!
//! Bots write in every room, with the tags of a moderator that never changes its badges, and
//! their lines are commands, rules, reminders and point counts rather than chat — usually
//! without emotes. The service leaves them out of its statistics when they are listed in
//! `IGNORED_NICKS`, which is what they are here to exercise.

use super::vocabulary::{Vocabulary, Zipf};
use super::world::Nick;

/// The bots, most active first, one per line: display name (the login is its lowercase),
/// user id, badges, color. The ids are plausible, not authoritative.
const BOTS: &str = include_str!("words/bots.txt");

/// What bots say, most frequent first, one line each. `{nick}` stands for a chatter's login,
/// `{room}` for the room's name without `#`, `{n}` for a number; a word that is one of
/// Twitch's own emotes is listed in the `emotes` tag.
const LINES: &str = include_str!("words/bot-lines.txt");

/// Zipf exponent of bots and of their lines: a few do most of the talking.
const EXPONENT: f64 = 1.0;

/// A piece of a bot's line.
#[derive(Debug, PartialEq)]
pub(super) enum Piece {
    /// Literal text.
    Text(Box<str>),
    /// One of Twitch's own emotes: its id and name.
    Emote(u32, Box<str>),
    /// A chatter's login.
    Nick,
    /// The room's name without `#`.
    Room,
    /// A number.
    Number,
}

/// The bots and their lines, with the Zipf laws that pick them.
pub(super) struct Bots {
    pub(super) nicks: Vec<Nick>,
    pub(super) nick_zipf: Zipf,
    pub(super) lines: Vec<Vec<Piece>>,
    pub(super) line_zipf: Zipf,
}

impl Bots {
    /// The bots of [`BOTS`] and the lines of [`LINES`], with the Twitch emotes of `emotes`.
    pub(super) fn new(emotes: &Vocabulary) -> Bots {
        let nicks: Vec<Nick> = BOTS.lines().filter_map(bot).collect();
        let lines: Vec<Vec<Piece>> = LINES
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| pieces(line, emotes))
            .collect();
        Bots {
            nick_zipf: Zipf::new(nicks.len(), EXPONENT),
            nicks,
            line_zipf: Zipf::new(lines.len(), EXPONENT),
            lines,
        }
    }
}

/// A bot from a line of [`BOTS`]: `Display user-id badges color`.
fn bot(line: &str) -> Option<Nick> {
    let mut fields = line.split_whitespace();
    let display = fields.next()?;
    let user_id = fields.next()?.parse().ok()?;
    let badges = fields.next()?;
    let color = fields.next().unwrap_or_default();
    let moderator = badges.split(',').any(|b| b.starts_with("moderator/"));
    Some(Nick {
        login: display.to_lowercase().into(),
        display: display.into(),
        head: format!("badge-info=;badges={badges};color={color};display-name={display};").into(),
        moderator,
        subscriber: false,
        user_id,
    })
}

/// The pieces of a line of [`LINES`]: placeholders, emotes, and the text between them.
fn pieces(line: &str, emotes: &Vocabulary) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    fn flush(text: &mut String, pieces: &mut Vec<Piece>) {
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(text).into()));
        }
    }
    for (i, word) in line.split(' ').enumerate() {
        if i > 0 {
            text.push(' ');
        }
        if let Some(id) = emotes
            .words
            .iter()
            .find(|w| &*w.text == word)
            .and_then(|w| w.emote)
        {
            flush(&mut text, &mut pieces);
            pieces.push(Piece::Emote(id, word.into()));
            continue;
        }
        let mut rest = word;
        while let Some(open) = rest.find('{') {
            let placeholder = [
                ("{nick}", Piece::Nick),
                ("{room}", Piece::Room),
                ("{n}", Piece::Number),
            ]
            .into_iter()
            .find(|(name, _)| rest[open..].starts_with(name));
            match placeholder {
                Some((name, piece)) => {
                    text.push_str(&rest[..open]);
                    flush(&mut text, &mut pieces);
                    pieces.push(piece);
                    rest = &rest[open + name.len()..];
                }
                None => {
                    text.push_str(&rest[..=open]);
                    rest = &rest[open + 1..];
                }
            }
        }
        text.push_str(rest);
    }
    flush(&mut text, &mut pieces);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typo in `bots.txt` would silently drop a bot.
    #[test]
    fn every_bot_line_is_a_bot_with_a_fixed_id_and_moderator_tags() {
        let emotes = Vocabulary::emotes();
        let bots = Bots::new(&emotes);
        assert_eq!(bots.nicks.len(), BOTS.lines().count());
        let logins: Vec<&str> = bots.nicks.iter().map(|n| &*n.login).collect();
        assert_eq!(
            logins,
            [
                "nightbot",
                "streamelements",
                "streamlabs",
                "moobot",
                "fossabot",
                "wizebot"
            ]
        );
        for nick in &bots.nicks {
            assert!(nick.moderator, "{}", nick.login);
            assert!(nick.head.contains("moderator/1"), "{}", nick.head);
            assert!(
                nick.head
                    .ends_with(&format!(";display-name={};", nick.display)),
                "{}",
                nick.head
            );
            assert!(nick.display.chars().next().is_some_and(char::is_uppercase));
        }
        let mut ids: Vec<u64> = bots.nicks.iter().map(|n| n.user_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), bots.nicks.len());
    }

    /// An unknown placeholder would be sent as is; a line over 15 words would be longer than
    /// any chatter's.
    #[test]
    fn every_line_parses_into_known_pieces() {
        let emotes = Vocabulary::emotes();
        let bots = Bots::new(&emotes);
        assert_eq!(bots.lines.len(), LINES.lines().count());
        for (line, pieces) in LINES.lines().zip(&bots.lines) {
            assert!((1..=15).contains(&line.split(' ').count()), "{line}");
            for piece in pieces {
                if let Piece::Text(text) = piece {
                    assert!(!text.contains(['{', '}']), "{line}: {text}");
                }
            }
        }
        assert_eq!(
            bots.lines[2],
            [
                Piece::Text("@".into()),
                Piece::Nick,
                Piece::Text(" you have ".into()),
                Piece::Number,
                Piece::Text(" points".into()),
            ]
        );
        let with_emotes = bots
            .lines
            .iter()
            .filter(|p| p.iter().any(|p| matches!(p, Piece::Emote(..))))
            .count();
        assert!(
            (1..=bots.lines.len() / 4).contains(&with_emotes),
            "{with_emotes} lines with emotes"
        );
    }
}
