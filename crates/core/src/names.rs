//! The shape of the names people and machines are known by, checked alike
//! where they are registered (the control plane) and where they are given
//! (the connector's startup packet).

use crate::display;

/// The longest email, machine name, group or external id, in characters.
pub const MAX_NAME_LEN: usize = 200;
/// PostgreSQL's identifier limit, which role names share.
pub const MAX_ROLE_LEN: usize = 63;

/// A human's email: one `@` with text on both sides, no spaces or control
/// characters, at most [`MAX_NAME_LEN`] characters.
pub fn is_email(email: &str) -> bool {
    let shaped = match email.split_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !domain.contains('@'),
        None => false,
    };
    shaped && within_limit(email) && !email.chars().any(blank)
}

/// A machine's name: no `@` (connections append `@<role>` to it, and a
/// handle with an `@` is a human's email), no spaces or control characters.
pub fn is_machine_name(name: &str) -> bool {
    !name.is_empty() && within_limit(name) && !name.contains('@') && !name.chars().any(blank)
}

/// A label (a group, an external id, an end user's name): not blank, no
/// spaces at either end, printable, at most [`MAX_NAME_LEN`] characters.
pub fn is_label(value: &str) -> bool {
    !value.is_empty() && value.trim() == value && is_display_name(value)
}

/// Whether `text` has no control character, nor one that reorders text on
/// screen (a bidirectional override) or shows as nothing: names are read by
/// auditors, and such a character makes one name look like another.
pub fn is_printable(text: &str) -> bool {
    !text.chars().any(unprintable)
}

/// A person's display name: printable, at most [`MAX_NAME_LEN`] characters (empty: none).
pub fn is_display_name(name: &str) -> bool {
    within_limit(name) && is_printable(name)
}

fn within_limit(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN || name.chars().count() <= MAX_NAME_LEN
}

/// A native role name: identifier-sized, without spaces, quotes or `@`
/// (which separates it in connection user names).
pub fn is_role_name(role: &str) -> bool {
    let bad = |c: char| blank(c) || matches!(c, '@' | '"' | '\'');
    !role.is_empty() && role.len() <= MAX_ROLE_LEN && !role.chars().any(bad)
}

fn blank(c: char) -> bool {
    c.is_whitespace() || unprintable(c)
}

fn unprintable(c: char) -> bool {
    c.is_control() || display::needs_escape(c) || is_invisible(c)
}

/// Unicode's format and default-ignorable characters, which show as nothing: `alice\u{200b}@x`
/// would read as `alice@x`.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fff8}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(is_email("alice@example.com"));
        for bad in ["alice", "@example.com", "alice@", "a@b@c", "a b@c", "a@b\nc", "a\u{1b}@b"] {
            assert!(!is_email(bad), "{bad:?}");
        }
        assert!(!is_email(&format!("{}@example.com", "a".repeat(MAX_NAME_LEN))));
        assert!(!is_email("\u{202e}moc.elpmaxe@ecila"), "a bidirectional override");
        for invisible in ["alice\u{200b}@example.com", "al\u{ad}ice@example.com", "\u{feff}alice@example.com"] {
            assert!(!is_email(invisible), "{invisible:?}");
        }
    }

    #[test]
    fn labels_count_characters_and_are_printable() {
        assert!(is_label("dba") && is_label("Ana María"));
        assert!(is_label(&"é".repeat(MAX_NAME_LEN)));
        for bad in ["", " dba", "dba ", "a\tb", "a\nb", "bot\u{202e}x", "a\u{2066}b", &"é".repeat(MAX_NAME_LEN + 1)] {
            assert!(!is_label(bad), "{bad:?}");
        }
        assert!(is_machine_name(&"é".repeat(MAX_NAME_LEN)) && !is_machine_name("bot\u{202e}x"));
        assert!(is_display_name("") && is_display_name("Ana María") && is_display_name(&"é".repeat(MAX_NAME_LEN)));
        assert!(!is_display_name(&"é".repeat(MAX_NAME_LEN + 1)) && !is_display_name("Ana\u{200b}"));
    }

    #[test]
    fn machine_names() {
        assert!(is_machine_name("etl-nightly"));
        for bad in ["", "etl@x", "etl nightly", "etl\nINFO fake"] {
            assert!(!is_machine_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn role_names() {
        assert!(is_role_name("analyst"));
        for bad in ["", "a b", "a@b", "a\"b", "a'b", "a\tb"] {
            assert!(!is_role_name(bad), "{bad:?}");
        }
        assert!(!is_role_name(&"r".repeat(MAX_ROLE_LEN + 1)));
    }
}
