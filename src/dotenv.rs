//! `.env` files read as the TypeScript service read them: with Node's `dotenv` (version 16)
//! rules, so that its files keep working unchanged.
//!
//! That is `NAME=value` (or `NAME: value`), optionally after `export`, with `#` comments; a
//! value is taken as it is written — `$` is not expanded, so a password holding `$word` stays
//! whole — and an unquoted value may hold spaces (`IGNORED_NICKS=nightbot, streamelements`),
//! trimmed at both ends and cut at a `#`. Quotes (`'`, `"` or `` ` ``) keep spaces and `#`, may
//! span lines, and in `"…"` a `\n` is a new line. A UTF-8 byte order mark and CRLF line ends are
//! accepted. (`dotenvy` expands `$` and refuses spaces in unquoted values: both would break such
//! files, silently for a password.)
//!
//! Unlike Node, which skips what it cannot read, a line that is neither blank, nor a comment,
//! nor an assignment — or a value with an unclosed quote — makes the whole file refused: one
//! mistyped line must not leave a service half-configured.

use std::sync::LazyLock;

use regex::Regex;

/// One assignment of Node's `dotenv` (`lib/main.js`, `LINE`), with whitespace around the name
/// kept to the line: the name, then the value as written. `~` stands for [`JS_SPACE`].
static LINE: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = r#"(?m)^~*(?:export~+)?([A-Za-z0-9_.-]+)(?:~*=~*?|:~+?)(~*'(?:\\'|[^'])*'|~*"(?:\\"|[^"])*"|~*`(?:\\`|[^`])*`|[^#\n]+)?~*(?:#.*)?$"#;
    Regex::new(&pattern.replace('~', JS_SPACE)).expect("the .env line pattern")
});

/// JavaScript's `\s` but for `\n` (the text's only line end once CRLF and CR are replaced): it
/// differs from Rust's, U+FEFF being in it and U+0085 not.
const JS_SPACE: &str = r"[\t\x0B\x0C\p{Zs}\x{2028}\x{2029}\x{FEFF}]";

/// True for what JavaScript's `trim()` removes (its `\s`).
fn js_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\x0B' | '\x0C' | '\r' | '\u{2028}' | '\u{2029}' | '\u{FEFF}'
    ) || (c.is_whitespace() && !c.is_control())
}

/// A line that is not an assignment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed {
    /// Its number, from 1.
    pub line: usize,
    /// The name it starts with, when it reads as one of ours (`REDIS_URL …`, upper case and
    /// more than one word): a lone word, or one in lower or mixed case, may be a pasted secret,
    /// and is not repeated.
    pub name: Option<String>,
}

/// The assignments of a `.env` file's text, in order (a name given twice appears twice: the
/// caller keeps the last, as Node does).
pub(crate) fn parse(text: &str) -> Result<Vec<(String, String)>, Malformed> {
    // Every line end JavaScript knows (U+2028 and U+2029 too) as `\n`.
    let text = text
        .replace("\r\n", "\n")
        .replace(['\r', '\u{2028}', '\u{2029}'], "\n");
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    let mut pairs = Vec::new();
    let mut read = 0;
    for found in LINE.captures_iter(&text) {
        let whole = found.get(0).expect("a match");
        check_gap(&text, read, whole.start(), line_of)?;
        read = whole.end();
        let name = found[1].to_owned();
        let raw = found
            .get(2)
            .map_or("", |v| v.as_str())
            .trim_matches(js_space);
        let malformed = || Malformed {
            line: line_of(whole.start()),
            name: shown(&name),
        };
        let value = match raw.chars().next() {
            Some(quote @ ('\'' | '"' | '`')) => {
                match raw.strip_prefix(quote).and_then(|r| r.strip_suffix(quote)) {
                    Some(inner) if quote == '"' => inner.replace("\\n", "\n").replace("\\r", "\r"),
                    Some(inner) => inner.to_owned(),
                    // Text after a closed quote: Node keeps the whole value as written
                    // (with `\n` read as in quotes when it starts with `"`).
                    None if raw[1..].contains(quote) && quote == '"' => {
                        raw.replace("\\n", "\n").replace("\\r", "\r")
                    }
                    None if raw[1..].contains(quote) => raw.to_owned(),
                    // A quote never closed: a mistake, not a value.
                    None => return Err(malformed()),
                }
            }
            _ => raw.to_owned(),
        };
        // The environment cannot hold a NUL (setting one would stop the process, printing it).
        if value.contains('\0') {
            return Err(malformed());
        }
        pairs.push((name, value));
    }
    check_gap(&text, read, text.len(), line_of)?;
    Ok(pairs)
}

/// `name` when it reads as a variable's name as ours are written (upper case, digits and `_`,
/// not too long), to be shown in an error; anything else may be a pasted secret.
fn shown(name: &str) -> Option<String> {
    let upper = name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    (upper && name.len() < 64).then(|| name.to_owned())
}

/// Between two assignments only blank lines and comments may stand.
fn check_gap(
    text: &str,
    from: usize,
    to: usize,
    line_of: impl Fn(usize) -> usize,
) -> Result<(), Malformed> {
    let mut at = from;
    for line in text[from..to].split_inclusive('\n') {
        let content = line.trim_matches(js_space);
        if !content.is_empty() && !content.starts_with('#') {
            let start = content
                .strip_prefix("export ")
                .unwrap_or(content)
                .trim_start_matches(js_space);
            let end = start
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(start.len());
            let more = !start[end..].trim_matches(js_space).is_empty();
            return Err(Malformed {
                line: line_of(at + (line.len() - line.trim_start_matches(js_space).len())),
                name: shown(&start[..end]).filter(|_| more),
            });
        }
        at += line.len();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
    }

    fn one(text: &str) -> String {
        let pairs = read(text);
        assert_eq!(pairs.len(), 1, "{text:?}: {pairs:?}");
        pairs[0].1.clone()
    }

    #[test]
    fn values_read_as_nodes_dotenv_reads_them() {
        // What `require('dotenv').parse(…)` (16.6.1) gives for each line.
        for (line, value) in [
            ("A=plain", "plain"),
            ("A = spaced ", "spaced"),
            (
                "A=redis://bob:pa$word@127.0.0.1:6379",
                "redis://bob:pa$word@127.0.0.1:6379",
            ),
            ("A=\"pa$word ${HOME}\"", "pa$word ${HOME}"),
            ("A='single $x # kept'", "single $x # kept"),
            ("A=`back tick`", "back tick"),
            ("A=nightbot, streamelements", "nightbot, streamelements"),
            ("A=value # a comment", "value"),
            ("A=value#cut", "value"),
            ("A=\"quoted # kept\" # comment", "quoted # kept"),
            ("A=\"two\\nlines\"", "two\nlines"),
            ("A='no\\nescape'", "no\\nescape"),
            ("A=", ""),
            ("A=''", ""),
            ("export A=exported", "exported"),
            ("  export   A=indented", "indented"),
            ("A: colon", "colon"),
            ("REDIS_URL=redis://x_y", "redis://x_y"),
            ("_UNDER_SCORE_=x", "x"),
            ("my-var.x=dash", "dash"),
            ("A==equals", "=equals"),
            ("A=\"x\" y", "\"x\" y"),
            ("A='x'\"y\"", "'x'\"y\""),
            ("A=\"a\\nb\" c", "\"a\nb\" c"),
            ("A='x'\u{2028}", "x"),
            ("A=a\u{feff}", "a"),
            ("A=\u{feff}a", "a"),
            ("A=a\u{85}", "a\u{85}"),
            ("\u{feff}\u{feff}A=two marks", "two marks"),
        ] {
            assert_eq!(one(line), value, "{line:?}");
        }
    }

    #[test]
    fn the_repositorys_own_env_files_read_whole() {
        for name in [".env", ".env.docker"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
            let pairs = read(&std::fs::read_to_string(path).unwrap());
            let value = |key: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(value("REDIS_NAMESPACE"), Some("chat-stats:"), "{name}");
            assert_eq!(value("NODE_PORT"), Some("3000"), "{name}");
            // The repository's `.env` keeps the statistics at the contract's defaults; a
            // deployment's (`.env.docker`) leaves the usual bots out.
            let bots = value("IGNORED_NICKS").is_some_and(|v| v.contains("nightbot"));
            assert_eq!(bots, name == ".env.docker", "{name}");
        }
    }

    #[test]
    fn files_with_comments_crlf_a_bom_and_multi_line_values() {
        let text = "\u{feff}# a comment\r\nA=1\r\n\r\n   # indented comment\r\nB=\"x\r\ny\"\r\nC=3\n\u{feff}D=joined";
        assert_eq!(
            read(text),
            [("A", "1"), ("B", "x\ny"), ("C", "3"), ("D", "joined")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(read("A=1\nA=2\n").len(), 2, "both kept, in order");
        assert!(read("").is_empty());
        assert!(read("\n# only\n\n").is_empty());
    }

    #[test]
    fn a_line_that_is_no_assignment_is_refused_with_its_number() {
        for (text, line, name) in [
            ("A=1\nlonely\n", 2, None),
            ("A=1\n\nREDIS_URL redis://x\n", 3, Some("REDIS_URL")),
            ("A=1\nB='unclosed\nC=3\n", 2, Some("B")),
            ("A=\"open\n", 1, Some("A")),
            ("=value\n", 1, None),
            ("A=1\n  B:x\n", 2, Some("B")),
            // A pasted token with more after it is not repeated either.
            ("A=1\nghp_S3cretToken continued\n", 2, None),
            ("A=pass\0word\n", 1, Some("A")),
            // Only an upper-case name is repeated.
            ("s3cretT0KEN=\"oops\n", 1, None),
        ] {
            let name = name.map(str::to_owned);
            assert_eq!(parse(text), Err(Malformed { line, name }), "{text:?}");
        }
    }
}
