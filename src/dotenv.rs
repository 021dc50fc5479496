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
/// kept to the line: the name, then the value as written.
static LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?m)^[^\S\n]*(?:export[^\S\n]+)?([A-Za-z0-9_.-]+)(?:[^\S\n]*=[^\S\n]*?|:[^\S\n]+?)([^\S\n]*'(?:\\'|[^'])*'|[^\S\n]*"(?:\\"|[^"])*"|[^\S\n]*`(?:\\`|[^`])*`|[^#\n]+)?[^\S\n]*(?:#.*)?$"#,
    )
    .expect("the .env line pattern")
});

/// A line that is not an assignment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed {
    /// Its number, from 1.
    pub line: usize,
    /// The name it starts with, when it looks like `NAME …` (more than one word: a lone word
    /// may be a pasted secret, and is not repeated).
    pub name: Option<String>,
}

/// The assignments of a `.env` file's text, in order (a name given twice appears twice: the
/// caller keeps the last, as Node does).
pub(crate) fn parse(text: &str) -> Result<Vec<(String, String)>, Malformed> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    let mut pairs = Vec::new();
    let mut read = 0;
    for found in LINE.captures_iter(&text) {
        let whole = found.get(0).expect("a match");
        check_gap(&text, read, whole.start(), line_of)?;
        read = whole.end();
        let name = found[1].to_owned();
        let raw = found.get(2).map_or("", |v| v.as_str()).trim();
        let value = match raw.chars().next() {
            Some(quote @ ('\'' | '"' | '`')) => {
                let Some(inner) = raw.strip_prefix(quote).and_then(|r| r.strip_suffix(quote))
                else {
                    return Err(Malformed {
                        line: line_of(whole.start()),
                        name: Some(name),
                    });
                };
                match quote {
                    '"' => inner.replace("\\n", "\n").replace("\\r", "\r"),
                    _ => inner.to_owned(),
                }
            }
            _ => raw.to_owned(),
        };
        pairs.push((name, value));
    }
    check_gap(&text, read, text.len(), line_of)?;
    Ok(pairs)
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
        let content = line.trim();
        if !content.is_empty() && !content.starts_with('#') {
            let start = content
                .strip_prefix("export ")
                .unwrap_or(content)
                .trim_start();
            let end = start
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
                .unwrap_or(start.len());
            let name = (end > 0 && end < 64 && !start[end..].trim().is_empty())
                .then(|| start[..end].to_owned());
            return Err(Malformed {
                line: line_of(at + (line.len() - line.trim_start().len())),
                name,
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
            ("my-var.x=dash", "dash"),
            ("A==equals", "=equals"),
        ] {
            assert_eq!(one(line), value, "{line:?}");
        }
    }

    #[test]
    fn files_with_comments_crlf_a_bom_and_multi_line_values() {
        let text = "\u{feff}# a comment\r\nA=1\r\n\r\n   # indented comment\r\nB=\"x\r\ny\"\r\nC=3";
        assert_eq!(
            read(text),
            [("A", "1"), ("B", "x\ny"), ("C", "3")].map(|(k, v)| (k.to_owned(), v.to_owned()))
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
        ] {
            let name = name.map(str::to_owned);
            assert_eq!(parse(text), Err(Malformed { line, name }), "{text:?}");
        }
    }
}
