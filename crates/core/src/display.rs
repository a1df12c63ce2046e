//! Recorded text made safe to print in a terminal.
//!
//! Statements and user names are written by the people being audited. Printed raw, their
//! escape sequences would erase or rewrite what an auditor reads, and a line break or a
//! bidirectional override would make one value look like another.

use std::borrow::Cow;
use std::fmt::Write;

/// Appends `text` to `out` with a backslash, a line feed and a carriage return written `\\`,
/// `\n` and `\r` (so that a line stays one value and every text can be read back exactly), and
/// any other control character but the tab, a line or paragraph separator (a line break to
/// many readers: Python's `splitlines`, JavaScript, some terminals), or a character that
/// reorders text on screen, as `\x1b`, `\u{2028}` or `\u{202e}`.
pub fn push_escaped(out: &mut String, text: &str) {
    // Runs of what is written as it is go in whole: a transcript's text is mostly such runs.
    let mut plain = 0;
    for (at, c) in text.char_indices() {
        if c == '\\' || needs_escape(c) {
            out.push_str(&text[plain..at]);
            match c {
                '\\' => out.push_str("\\\\"),
                c => push_char(out, c),
            }
            plain = at + c.len_utf8();
        }
    }
    out.push_str(&text[plain..]);
}

/// `text` for a table cell: written as [`push_escaped`] does, but for backslashes, which stay as
/// they are (`DOMAIN\user`), and tabs, written `\t` to keep the columns; borrowed when there is
/// nothing to write out.
pub fn printable(text: &str) -> Cow<'_, str> {
    cell(text, false)
}

/// `text` for a table cell that shows a statement: as [`printable`], but with backslashes
/// doubled, as [`push_escaped`] (the transcript) writes them, so that a `\n` the statement holds
/// (`E'a\nb'`) is told from a line break in it.
pub fn printable_exact(text: &str) -> Cow<'_, str> {
    cell(text, true)
}

fn cell(text: &str, backslashes: bool) -> Cow<'_, str> {
    if !text.chars().any(|c| c == '\t' || backslashes && c == '\\' || needs_escape(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\\' if backslashes => out.push_str("\\\\"),
            c => push_char(&mut out, c),
        }
    }
    Cow::Owned(out)
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c if !needs_escape(c) => out.push(c),
        c if c.is_ascii_control() => _ = write!(out, "\\x{:02x}", u32::from(c)),
        c => _ = write!(out, "\\u{{{:x}}}", u32::from(c)),
    }
}

/// Whether [`push_escaped`] writes `c` out: a control character but the tab, a line or
/// paragraph separator, or a character that reorders text on screen.
pub fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t') || matches!(c, '\u{2028}' | '\u{2029}') || is_bidi_control(c)
}

/// Unicode's Bidi_Control characters, which reorder the text around them.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_reordering_characters_are_written_out() {
        let text = "a\u{1b}[2J\u{7}b\u{8}\tz\u{7f}\u{85}\u{202e}é\\\r\n\u{2028}\u{2029}";
        let mut out = String::new();
        push_escaped(&mut out, text);
        assert_eq!(out, "a\\x1b[2J\\x07b\\x08\tz\\x7f\\u{85}\\u{202e}é\\\\\\r\\n\\u{2028}\\u{2029}");
        assert!(!out.contains(['\u{2028}', '\u{2029}']), "one line, to every reader");
        assert_eq!(printable(text), "a\\x1b[2J\\x07b\\x08\\tz\\x7f\\u{85}\\u{202e}é\\\\r\\n\\u{2028}\\u{2029}");
        assert!(matches!(printable("DOMAIN\\user é"), Cow::Borrowed(_)));
        assert_eq!(printable_exact("select E'a\\nb'\nselect\t1"), "select E'a\\\\nb'\\nselect\\t1");
        assert!(matches!(printable_exact("select 1"), Cow::Borrowed(_)));
    }
}
